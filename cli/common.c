/*
 * common.c - what every command of the treemig CLI shares: exit codes from
 * errors, usage errors, number parsing. Uses only treemig.h.
 */
#include "commands.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "treemig%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'treemig %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
    return EXIT_USAGE;
}

int exit_code_for(int err)
{
    switch (err) {
    case 0:
        return EXIT_OK;
    case TM_ELOCKED:
        return EXIT_LOCKED;
    case TM_ESTOPPED:
        return EXIT_INTERRUPTED;
    case TM_EROOT:
    case TM_EOVERLAP:
    case TM_EMISMATCH:
    case TM_EINVAL:
    case TM_ENODB:
    case TM_EPHASE:
    case TM_EBADSPEC:
    case TM_EAUTH: /* credentials refused (S3) */
        return EXIT_USAGE;
    default:
        return EXIT_FATAL;
    }
}

int report_error(const char *cmd, tm_migration *m, int err)
{
    const char *msg = tm_migration_errmsg(m);
    fprintf(stderr, "treemig %s: %s\n", cmd, msg && *msg ? msg : tm_strerror(err));
    return exit_code_for(err);
}

/* Parses a whole decimal number in [lo, hi]. */
int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int sopt_add(struct sopt_list *l, const char *cmd, const char *kv)
{
    if (!*kv || *kv == '=' || strchr(kv, '\n'))
        return usage_error(cmd, "-o takes KEY=VALUE (or KEY alone for a flag), "
                           "not '%s'", kv);
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        const char **p = realloc(l->kv, nc * sizeof *p);
        if (!p)
            return EXIT_FATAL;
        l->kv = p;
        l->cap = nc;
    }
    l->kv[l->n++] = kv;
    return 0;
}

#define SOPT_KEY(id, name, arg, key, help) key,
static const char *const sopt_keys[] = { TM_STORAGE_ALIASES(SOPT_KEY) NULL };

int sopt_alias(struct sopt_list *l, const char *cmd, int c, const char *arg)
{
    const char *key;
    char **p, *kv;
    size_t n;
    int rc;
    if (c <= SOPT_BASE || c >= SOPT_END)
        return usage_error(cmd, "unknown or incomplete option");
    key = sopt_keys[c - SOPT_BASE - 1];
    n = strlen(key) + (arg ? strlen(arg) + 2 : 1);
    p = realloc(l->owned, (l->n_owned + 1) * sizeof *p);
    if (!p || !(kv = malloc(n))) {
        if (p)
            l->owned = p;
        return EXIT_FATAL;
    }
    l->owned = p;
    snprintf(kv, n, "%s%s%s", key, arg ? "=" : "", arg ? arg : "");
    l->owned[l->n_owned++] = kv;
    rc = sopt_add(l, cmd, kv);
    return rc;
}

void sopt_release(struct sopt_list *l)
{
    size_t i;
    for (i = 0; i < l->n_owned; i++)
        free(l->owned[i]);
    free(l->owned);
    free(l->kv);
    memset(l, 0, sizeof *l);
}

int sopt_apply(tm_migration *m, const struct sopt_list *l, const char *cmd)
{
    int rc;
    if (!l->n)
        return 0;
    rc = tm_migration_set_storage_options(m, l->kv, l->n);
    return rc ? report_error(cmd, m, rc) : 0;
}
