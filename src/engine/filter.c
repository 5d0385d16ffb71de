/*
 * filter.c - the filters of discovery, written as rsync users write them:
 * glob patterns with '*', '**', '?', '[...]' and '\' escapes, matched as
 * rsync matches them (anchored with a leading '/', against the name when
 * the pattern holds no '/' and no '**', else against the end of the path;
 * a trailing '/' matches folders only; "dir/" + "***" matches dir and what
 * is below it), and an ordered list of rules ("- GLOB" exclude, "+ GLOB"
 * include, a bare GLOB exclude) of which the first that matches decides.
 * Pure functions on the caller's data, any thread.
 */
#include "engine/engine.h"

#include "util/util.h"

#include <stdio.h>
#include <string.h>

/* 1 when the class at p (just after its '[') matches ch; *end gets the
 * position after its ']'. The pattern was checked: the class is closed. */
static int class_match(const char *p, const char *pe, unsigned char ch,
                       const char **end)
{
    int neg = 0, hit = 0, first = 1;
    if (p < pe && (*p == '!' || *p == '^')) {
        neg = 1;
        p++;
    }
    while (p < pe && (first || *p != ']')) {
        unsigned char lo = (unsigned char)*p, hi;
        first = 0;
        if (lo == '\\' && p + 1 < pe)
            lo = (unsigned char)*++p;
        p++;
        hi = lo;
        if (p + 1 < pe && *p == '-' && p[1] != ']') {
            hi = (unsigned char)p[1];
            p += 2;
            if (hi == '\\' && p < pe)
                hi = (unsigned char)*p++;
        }
        if (ch >= lo && ch <= hi)
            hit = 1;
    }
    *end = p < pe ? p + 1 : p;
    return ch != '/' && hit != neg;
}

/* 1 when the whole of s..se matches the pattern p..pe. */
static int glob_match(const char *p, const char *pe, const char *s, const char *se)
{
    while (p < pe) {
        if (*p == '*') {
            int dbl = p + 1 < pe && p[1] == '*';
            while (p < pe && *p == '*')
                p++;
            if (p == pe)
                return dbl || !memchr(s, '/', (size_t)(se - s));
            for (;; s++) {
                if (glob_match(p, pe, s, se))
                    return 1;
                if (s == se || (!dbl && *s == '/'))
                    return 0;
            }
        }
        if (s == se)
            return 0;
        if (*p == '?') {
            if (*s == '/')
                return 0;
            p++;
        } else if (*p == '[') {
            const char *end;
            if (!class_match(p + 1, pe, (unsigned char)*s, &end))
                return 0;
            p = end;
        } else {
            if (*p == '\\' && p + 1 < pe)
                p++;
            if (*p != *s)
                return 0;
            p++;
        }
        s++;
    }
    return s == se;
}

int tm__glob_check(const char *g, char *why, size_t len)
{
    const char *p = g;
    size_t n = strlen(g);
    if (!n || strchr(g, '\n')) {
        snprintf(why, len, "a pattern must be non-empty and hold no newline");
        return TM_EINVAL;
    }
    while (*p) {
        if (*p == '\\') {
            if (!p[1]) {
                snprintf(why, len, "'%s' ends with a lone '\\'", g);
                return TM_EINVAL;
            }
            p += 2;
        } else if (*p == '[') {
            const char *q = p + 1;
            if (*q == '!' || *q == '^')
                q++;
            if (*q == ']')
                q++;
            while (*q && *q != ']') {
                if (*q == '\\' && q[1])
                    q++;
                q++;
            }
            if (!*q) {
                snprintf(why, len, "'%s' has a '[' without its ']' (write \\[ for "
                         "a literal one)", g);
                return TM_EINVAL;
            }
            p = q + 1;
        } else if (*p == '*' && p[1] == '*' && p[2] == '*') {
            /* '***' only as rsync has it: "dir/" + "***" at the end */
            size_t k = 0;
            while (p[k] == '*')
                k++;
            if (k != 3 || p[3] || p == g || p[-1] != '/') {
                snprintf(why, len, "'%s': '***' is supported only at the end, after "
                         "a '/' (dir/***: the folder and everything below it)", g);
                return TM_EINVAL;
            }
            p += 3;
        } else {
            p++;
        }
    }
    if (!strcmp(g, "/") || !strcmp(g, "//")) {
        snprintf(why, len, "'%s' would match the root, which is never filtered", g);
        return TM_EINVAL;
    }
    return 0;
}

/* 1 when the whole of s..se is the literal pattern p..pe. */
static int lit_match(const char *p, const char *pe, const char *s, const char *se)
{
    return pe - p == se - s && !memcmp(p, s, (size_t)(pe - p));
}

/* 1 when s..se matches p..pe: a glob, or with lit a literal string. */
static int pat_match(int lit, const char *p, const char *pe, const char *s,
                     const char *se)
{
    return lit ? lit_match(p, pe, s, se) : glob_match(p, pe, s, se);
}

/* 1 when the pattern p (pl bytes, no trailing '/' and no "/" "***") matches
 * the node at path (root-relative, starting with '/') named name. With
 * rsync, a pattern without '*', '?' or '[' is a literal string, its
 * backslashes too (as rsync); else a backslash escapes. */
static int match_one(const char *p, size_t pl, const char *path, const char *name,
                     int rsync)
{
    const char *pe = p + pl, *rel = path[0] == '/' ? path + 1 : path;
    const char *re = rel + strlen(rel), *s;
    int has_slash = memchr(p, '/', pl) != NULL, wild2 = 0, lit = rsync;
    size_t i;
    for (i = 0; lit && i < pl; i++)
        if (p[i] == '*' || p[i] == '?' || p[i] == '[')
            lit = 0;
    for (i = 0; i + 1 < pl; i++)
        if (p[i] == '*' && p[i + 1] == '*')
            wild2 = 1;
    if (p[0] == '/') /* anchored at the root */
        return pat_match(lit, p + 1, pe, rel, re);
    if (!has_slash && !wild2)
        return pat_match(lit, p, pe, name, name + strlen(name));
    /* against the end of the path, starting after any '/'; a pattern
     * that starts with "**" may also take the root's '/' (as rsync) */
    if (wild2 && p[0] == '*' && p[1] == '*' && rel > path &&
        glob_match(p, pe, path, re))
        return 1;
    for (s = rel;;) {
        if (pat_match(lit, p, pe, s, re))
            return 1;
        s = memchr(s, '/', (size_t)(re - s));
        if (!s)
            return 0;
        s++;
    }
}

static int node_match(const char *g, const char *path, const char *name,
                      int is_folder, int rsync)
{
    size_t n = strlen(g);
    int dir_only = 0;
    if (n >= 4 && !strcmp(g + n - 4, "/***"))
        /* the folder itself, or anything below it */
        return match_one(g, n - 4, path, name, rsync) ||
               (n - 4 == 0 ? 1 : match_one(g, n - 1, path, name, rsync));
    while (n > 1 && g[n - 1] == '/') {
        dir_only = 1;
        n--;
    }
    if (dir_only && !is_folder)
        return 0;
    return match_one(g, n, path, name, rsync);
}

int tm__glob_match_node(const char *g, const char *path, const char *name,
                        int is_folder)
{
    return node_match(g, path, name, is_folder, 0);
}

const char *tm__filter_rule(const char *rule, int *include)
{
    *include = 0;
    if ((rule[0] == '+' || rule[0] == '-') && rule[1] == ' ') {
        *include = rule[0] == '+';
        return rule + 2;
    }
    return rule;
}

int tm__filter_check(const char *rule, char *why, size_t len)
{
    int inc;
    const char *g = tm__filter_rule(rule, &inc);
    return tm__glob_check(g, why, len);
}

int tm__filter_eval(const char *const *rules, size_t n, const char *path,
                    const char *name, int is_folder)
{
    size_t i;
    for (i = 0; i < n; i++) {
        int inc;
        const char *g = tm__filter_rule(rules[i], &inc);
        if (node_match(g, path, name, is_folder, 1))
            return inc ? 1 : -1;
    }
    return 0;
}

int tm__filter_match(const char *const *globs, size_t n, const char *path,
                     const char *name)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (tm__glob_match_node(globs[i], path, name, 1))
            return 1;
    return 0;
}
