/*
 * fuzz_glob.c - libFuzzer target of the filter globs (tm__filter_match and
 * tm__filter_eval in src/engine/filter.c, rsync's syntax).
 *
 * Input: pattern, path and name separated by NUL bytes; without a name the
 * last component of the path is the name. Asserts, beside "no crash, no
 * hang":
 *  - "*" and "**" match every node whose name holds no '/';
 *  - a pattern without '*', '?', '[' or '\' (nor a trailing '/') matches
 *    exactly the name; with a leading '/', exactly the path; with a '/'
 *    elsewhere, the end of the path after a '/';
 *  - the name with every byte escaped by '\' matches the name, and the
 *    path with every byte but '/' escaped matches the path;
 *  - a list of globs matches when one of its globs does, and as rules
 *    (each "- GLOB") they exclude exactly then.
 * Single-threaded, C locale (the CLI never calls setlocale).
 */
#include "fuzz.h"
#include "engine/engine.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int match1(const char *glob, const char *path, const char *name)
{
    const char *g[1] = { glob };
    return tm__filter_match(g, 1, path, name);
}

/* s with every byte escaped by '\', '/' too unless keep_slash. */
static char *escaped(const char *s, int keep_slash)
{
    size_t n = strlen(s), i, o = 0;
    char *e = malloc(2 * n + 1);
    CHECK(e);
    for (i = 0; i < n; i++) {
        if (!(keep_slash && s[i] == '/'))
            e[o++] = '\\';
        e[o++] = s[i];
    }
    e[o] = '\0';
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in, *pattern, *path, *name, *e, *slash;
    const char *globs[3];
    size_t n;
    int m;

    if (size > 1024)
        return 0;
    in = malloc(size + 3);
    CHECK(in);
    memcpy(in, data, size);
    in[size] = in[size + 1] = in[size + 2] = '\0';
    pattern = in;
    path = pattern + strlen(pattern) + 1;
    if (path > in + size)
        path = in + size + 1; /* "" */
    name = path + strlen(path) + 1;
    if (name > in + size || !*name) {
        slash = strrchr(path, '/');
        name = slash ? slash + 1 : path;
    }

    m = match1(pattern, path, name);
    CHECK(m == 0 || m == 1);
    if (!strchr(name, '/'))
        CHECK(match1("*", path, name) == 1);
    if (*path == '/')
        CHECK(match1("**", path, name) == 1);
    n = strlen(pattern);
    if (!strpbrk(pattern, "*?[\\") && n && pattern[n - 1] != '/') {
        if (pattern[0] == '/') {
            CHECK(m == (strcmp(pattern + 1, path + (*path == '/')) == 0));
        } else if (strchr(pattern, '/')) {
            size_t pl = strlen(path);
            const char *rel = path + (*path == '/');
            int end = (pl > n && path[pl - n - 1] == '/' &&
                       !strcmp(path + pl - n, pattern)) || !strcmp(rel, pattern);
            CHECK(m == end);
        } else {
            CHECK(m == (strcmp(pattern, name) == 0));
        }
    }
    if (*name && !strchr(name, '/')) {
        e = escaped(name, 0);
        CHECK(match1(e, path, name) == 1);
        free(e);
    }
    if (strchr(path, '/') && path[strlen(path) - 1] != '/' && !strstr(path, "//") &&
        *path == '/') {
        e = escaped(path, 1);
        CHECK(match1(e, path, name) == 1);
        free(e);
    }
    globs[0] = "\\";  /* matches nothing */
    globs[1] = pattern;
    globs[2] = "[";
    n = 3;
    m = m || match1(globs[0], path, name) || match1(globs[2], path, name);
    CHECK(tm__filter_match(globs, n, path, name) == m);
    /* discover's rules read a pattern without '*', '?' or '[' literally,
     * backslashes included (as rsync); the globs above unescape them: the
     * two agree where no backslash is in play */
    if (!strchr(pattern, '\\') && !strchr(path, '\\') && !strchr(name, '\\')) {
        char *r = malloc(strlen(pattern) + 3);
        const char *rules[3] = { "- \\", r, "- [" };
        CHECK(r);
        r[0] = '-';
        r[1] = ' ';
        memcpy(r + 2, pattern, strlen(pattern) + 1);
        CHECK(tm__filter_eval(rules, 3, path, name, 1) == (m ? -1 : 0));
        free(r);
    }
    free(in);
    return 0;
}
