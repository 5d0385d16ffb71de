/*
 * fuzz_glob.c - libFuzzer target of the exclude globs (tm__filter_match in
 * src/engine/compare.c, glibc's fnmatch underneath).
 *
 * Input: pattern, path and name separated by NUL bytes; without a name the
 * last component of the path is the name. Asserts, beside "no crash, no
 * hang":
 *  - "*" matches every node;
 *  - a pattern without '*', '?', '[' or '\' matches exactly the name (or,
 *    with a '/', exactly the path);
 *  - the name with every byte escaped by '\' matches the name, and the
 *    path with every byte but '/' escaped matches the path;
 *  - a list of globs matches when one of its globs does.
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
    CHECK(match1("*", path, name) == 1);
    if (!strpbrk(pattern, "*?[\\") && *pattern) {
        if (strchr(pattern, '/'))
            CHECK(m == (strcmp(pattern, path) == 0));
        else
            CHECK(m == (strcmp(pattern, name) == 0));
    }
    if (*name && !strchr(name, '/')) {
        e = escaped(name, 0);
        CHECK(match1(e, path, name) == 1);
        free(e);
    }
    if (strchr(path, '/')) {
        e = escaped(path, 1);
        CHECK(match1(e, path, name) == 1);
        free(e);
    }
    globs[0] = "\\";  /* matches nothing */
    globs[1] = pattern;
    globs[2] = "[";
    n = 3;
    CHECK(tm__filter_match(globs, n, path, name) ==
          (m || match1(globs[0], path, name) || match1(globs[2], path, name)));
    free(in);
    return 0;
}
