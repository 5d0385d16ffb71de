/*
 * common.c - what every command of the treemig CLI shares: exit codes from
 * errors, usage errors (one line naming the option, with a suggestion for
 * a misspelt one), number parsing. Uses only treemig.h. Runs on the main
 * thread.
 */
#include "commands.h"

#include <errno.h>
#include <getopt.h>
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
    fprintf(stderr, "treemig %s: %s%s\n", cmd, msg && *msg ? msg : tm_strerror(err),
            err == TM_ENODB ? " (--db FILE names the state file; the default is "
                              "treemig.db in the current folder)" : "");
    return exit_code_for(err);
}

/* The edit distance of a and b (insertions, deletions, substitutions and
 * swaps of two neighbours), capped at 9 for long strings. */
static int distance(const char *a, const char *b)
{
    enum { MAXL = 64 };
    int d[MAXL + 1][MAXL + 1];
    size_t la = strlen(a), lb = strlen(b), i, j;
    if (la > MAXL || lb > MAXL)
        return 9;
    for (i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (i = 1; i <= la; i++)
        for (j = 1; j <= lb; j++) {
            int v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < v)
                v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

const char *suggest(const char *word, const char *const *names, size_t n)
{
    const char *best = NULL;
    int best_d = 3;
    size_t i, len = strlen(word);
    for (i = 0; i < n; i++) {
        int dd = distance(word, names[i]);
        /* a short word is only near a name at distance 1 */
        if (dd < best_d && (len > 3 || dd <= 1)) {
            best_d = dd;
            best = names[i];
        }
    }
    return best;
}

int option_error(const char *cmd, int argc, char **argv,
                 const struct option *opts)
{
    const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
    const char *names[256], *eq;
    char name[128];
    size_t n = 0, len, i, n_prefix = 0;
    const struct option *match = NULL, *prefix = NULL;

    if (strncmp(arg, "--", 2) == 0) {
        eq = strchr(arg + 2, '=');
        len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (len >= sizeof name)
            len = sizeof name - 1;
        memcpy(name, arg + 2, len);
        name[len] = '\0';
        for (i = 0; opts[i].name && n < sizeof names / sizeof *names; i++) {
            names[n++] = opts[i].name;
            if (strcmp(opts[i].name, name) == 0)
                match = &opts[i];
            else if (len && strncmp(opts[i].name, name, len) == 0) {
                n_prefix++;
                prefix = &opts[i];
            }
        }
        if (!match && n_prefix == 1)
            match = prefix; /* getopt takes a unique abbreviation */
        /* optopt is the value of a long option that lacked its value; a
         * different one means a short option after this argument */
        if (!optopt || (match && match->val == optopt)) {
            if (match && match->has_arg == required_argument && !eq)
                return usage_error(cmd, "option '--%s' needs a value",
                                   match->name);
            if (match && match->has_arg == no_argument && eq)
                return usage_error(cmd, "option '--%s' takes no value",
                                   match->name);
            if (!match && n_prefix > 1)
                return usage_error(cmd, "option '--%s' is ambiguous (the start "
                                   "of %zu options)", name, n_prefix);
            {
                const char *s = suggest(name, names, n);
                if (s)
                    return usage_error(cmd, "unrecognized option '--%s'; did you "
                                       "mean '--%s'?", name, s);
            }
            return usage_error(cmd, "unrecognized option '--%s'", name);
        }
    }
    /* a short option: getopt put it in optopt */
    for (i = 0; opts[i].name; i++)
        if (optopt && opts[i].val == optopt &&
            opts[i].has_arg == required_argument)
            return usage_error(cmd, "option '-%c' needs a value", optopt);
    return usage_error(cmd, "unrecognized option '-%c'", optopt ? optopt : '?');
}

int option_refused(const char *cmd, const struct option *opts, int c)
{
    const struct option *o;
    for (o = opts; o->name; o++)
        if (o->val == c)
            return usage_error(cmd, "unrecognized option '--%s'", o->name);
    return usage_error(cmd, "unrecognized option");
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

int parse_rate(const char *s, double *out)
{
    static const char units[] = "BKMGTP";
    const char *u, *p;
    char *end;
    double v, mult = 1024; /* no unit: KiB/s, as rsync's --bwlimit */
    errno = 0;
    if (!*s || *s == '-' || *s == '+')
        return -1;
    v = strtod(s, &end);
    if (errno || end == s || v < 0 || v != v)
        return -1;
    p = end;
    if (*p) {
        u = strchr(units, p[0] >= 'a' && p[0] <= 'z' ? p[0] - 32 : p[0]);
        if (!u || !*u)
            return -1;
        mult = 1;
        if (*u != 'B') {
            int i, n = (int)(u - units);
            int si = p[1] == 'B' || p[1] == 'b'; /* KB: 1000, K and KiB: 1024 */
            for (i = 0; i < n; i++)
                mult *= si ? 1000 : 1024;
            p++;
            if (*p == 'i' && (p[1] == 'B' || p[1] == 'b'))
                p += 2;
            else if (si)
                p++;
        } else {
            p++;
        }
        if (!strcmp(p, "/s"))
            p += 2;
        if (*p)
            return -1;
    }
    if (v * mult > 1e15)
        return -1;
    *out = v * mult;
    return 0;
}

int parse_tps(const char *s, double *out)
{
    char *end;
    double v;
    errno = 0;
    if (!*s || *s == '-' || *s == '+')
        return -1;
    v = strtod(s, &end);
    if (errno || end == s || *end || v < 0 || v != v || v > 1e9)
        return -1;
    *out = v;
    return 0;
}

int is_pg_uri(const char *db)
{
    return strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0;
}
