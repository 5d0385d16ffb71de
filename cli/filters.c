/*
 * filters.c - what the CLI reads for discovery's filters and comparison:
 * the rules of --exclude, --include, --exclude-from and --include-from in
 * the order given (first match wins, as rsync), sizes with units
 * (--min-size, --max-size) and ages with units (--min-age, --max-age).
 * Uses only treemig.h; runs on the main thread.
 */
#include "commands.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void rules_release(struct rule_list *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Appends a rule made of prefix and pattern (len bytes). */
static int rules_push(struct rule_list *l, const char *prefix, const char *pat,
                      size_t len)
{
    size_t pl = strlen(prefix);
    char *r;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        char **p = realloc(l->v, nc * sizeof *p);
        if (!p)
            return -1;
        l->v = p;
        l->cap = nc;
    }
    r = malloc(pl + len + 1);
    if (!r)
        return -1;
    memcpy(r, prefix, pl);
    memcpy(r + pl, pat, len);
    r[pl + len] = '\0';
    l->v[l->n++] = r;
    return 0;
}

/* The prefix that makes pat (len bytes) a rule of the kind asked: a
 * pattern that starts with "+ " or "- " says its own kind (as rsync). */
static const char *rule_prefix(const char *pat, size_t len, int include)
{
    if (len >= 2 && (pat[0] == '+' || pat[0] == '-') && pat[1] == ' ')
        return "";
    return include ? "+ " : "";
}

int rules_add(struct rule_list *l, const char *cmd, const char *opt,
              const char *pat, int include)
{
    size_t len = strlen(pat);
    if (!len || strchr(pat, '\n'))
        return usage_error(cmd, "%s takes a non-empty pattern without newlines", opt);
    if (rules_push(l, rule_prefix(pat, len, include), pat, len))
        return EXIT_FATAL;
    return 0;
}

int rules_read(struct rule_list *l, const char *cmd, const char *opt,
               const char *path, int include)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "re") : stdin;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int code = 0;
    if (!f) {
        int e = errno;
        return usage_error(cmd, "%s: cannot open %s: %s", opt, path,
                           e == ENOENT ? "no such file" : tm_strerror(-e));
    }
    while (!code && (n = getline(&line, &cap, f)) >= 0) {
        size_t len = (size_t)n;
        lineno++;
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        if (len && line[len - 1] == '\r')
            line[--len] = '\0';
        if (!len || line[0] == '#' || line[0] == ';')
            continue;
        if (strlen(line) != len) {
            code = usage_error(cmd, "%s: %s line %ld holds a NUL byte", opt, path,
                               lineno);
        } else if (!strcmp(line, "!")) {
            code = usage_error(cmd, "%s: %s line %ld: '!' (clear the list) is not "
                               "supported", opt, path, lineno);
        } else if (rules_push(l, rule_prefix(line, len, include), line, len)) {
            code = EXIT_FATAL;
        }
    }
    if (!code && ferror(f))
        code = usage_error(cmd, "%s: cannot read %s", opt, path);
    free(line);
    if (f != stdin)
        fclose(f);
    return code;
}

/* Parses a whole number with a unit from units (name, factor; NULL name
 * ends it; "" is no unit): 0, or -1. */
struct unit {
    const char *name; /* as written (any case) */
    int64_t factor;   /* what one of it is */
};

static int parse_units(const char *s, const struct unit *u, int64_t *out)
{
    char *end;
    long long v;
    size_t i;
    if (!*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -1;
    for (i = 0; u[i].name; i++)
        if (!strcasecmp(end, u[i].name)) {
            if (v > INT64_MAX / u[i].factor)
                return -1;
            *out = (int64_t)v * u[i].factor;
            return 0;
        }
    return -1;
}

int parse_size(const char *s, int64_t *out)
{
    static const struct unit u[] = {
        { "", 1 }, { "b", 1 },
        { "k", 1024 }, { "kib", 1024 }, { "kb", 1000 },
        { "m", 1024 * 1024 }, { "mib", 1024 * 1024 }, { "mb", 1000000 },
        { "g", 1024LL * 1024 * 1024 }, { "gib", 1024LL * 1024 * 1024 },
        { "gb", 1000000000LL },
        { "t", 1024LL * 1024 * 1024 * 1024 }, { "tib", 1024LL * 1024 * 1024 * 1024 },
        { "tb", 1000000000000LL },
        { NULL, 0 },
    };
    return parse_units(s, u, out);
}

int parse_age(const char *s, int64_t *out)
{
    /* "m" is minutes, as rclone; months and years are not units */
    static const struct unit u[] = {
        { "", 1 }, { "s", 1 }, { "m", 60 }, { "h", 3600 }, { "d", 86400 },
        { "w", 7 * 86400 }, { NULL, 0 },
    };
    return parse_units(s, u, out);
}
