/*
 * fuzz_path.c - libFuzzer target of what normalises and checks paths and
 * names: tm__path_norm (review --path), tm__path_absolute (the state file's
 * and the YAML file's paths), tm__name_valid, tm__path_join, tm__utf8_seq
 * and tm__buf_add_json.
 *
 * Input: any bytes; the text up to the first NUL is the path. Asserts:
 *  - tm__path_norm: starts with '/', holds no "//", ends with '/' only
 *    when it is "/", keeps the input's non-empty components in order (so it
 *    never makes a "." or ".." of its own), and normalises to itself;
 *  - tm__path_absolute (run in a scratch folder with a subfolder and a
 *    symlink): an absolute path whose folder part is canonical (normalises
 *    to itself, no "." or ".." component), names the same folder as the
 *    input's folder part (same device and inode), and whose last component
 *    is the input's; or the input unchanged, and only when the input is
 *    "/NAME", or its folder part does not resolve, or is already canonical
 *    (realpath gives it back). A relative name never comes back as it was:
 *    LLVMFuzzerInitialize checks "name" -> SCRATCH/name before any input;
 *  - tm__name_valid: exactly 1 to 1020 bytes, not "." or "..", no '/' or
 *    NUL; a valid name joined to a normalised folder gives a normalised
 *    path;
 *  - tm__utf8_seq agrees with Table 3-7 of the Unicode standard (well
 *    formed byte sequences) and the code point re-encodes to the same bytes;
 *  - tm__buf_add_json gives a JSON string of printable ASCII or UTF-8 that
 *    decodes back to the input when the input is UTF-8.
 * Single-threaded.
 */
#include "fuzz.h"
#include "adapter/adapter.h"
#include "migration/migration_int.h"
#include "util/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);

static char scratch[64]; /* the folder tm__path_absolute runs in */

static void cleanup(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/l", scratch);
    unlink(p);
    snprintf(p, sizeof p, "%s/a/b", scratch);
    rmdir(p);
    snprintf(p, sizeof p, "%s/a", scratch);
    rmdir(p);
    rmdir(scratch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    (void)argc;
    (void)argv;
    snprintf(scratch, sizeof scratch, "%s/fuzz_path.XXXXXX", tmp && *tmp &&
             strlen(tmp) < 32 ? tmp : "/tmp");
    CHECK(mkdtemp(scratch));
    CHECK(chdir(scratch) == 0);
    CHECK(mkdir("a", 0755) == 0 && mkdir("a/b", 0755) == 0);
    CHECK(symlink("a/b", "l") == 0);
    atexit(cleanup);
    {
        /* before any input: a relative name is made absolute in the
         * canonical working folder (a stub that returns its input fails) */
        char *real = realpath(".", NULL), *abs = tm__path_absolute("name"), want[4200];
        CHECK(real && abs);
        snprintf(want, sizeof want, "%s/name", real);
        CHECK(!strcmp(abs, want));
        free(abs);
        abs = tm__path_absolute("l/name");
        snprintf(want, sizeof want, "%s/a/b/name", real);
        CHECK(abs && !strcmp(abs, want));
        free(abs);
        free(real);
    }
    return 0;
}

/* The next component of *p (skipping '/'), its length in *len; NULL at the end. */
static const char *next_comp(const char **p, size_t *len)
{
    const char *c = *p;
    while (*c == '/')
        c++;
    if (!*c)
        return NULL;
    *len = strcspn(c, "/");
    *p = c + *len;
    return c;
}

static int is_dot_comp(const char *s)
{
    const char *p = s, *c;
    size_t n;
    while ((c = next_comp(&p, &n)) != NULL)
        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return 1;
    return 0;
}

static void check_norm(const char *in)
{
    struct tm__buf out = TM__BUF_INIT, again = TM__BUF_INIT;
    const char *p = in, *q, *a, *b;
    size_t na, nb;
    CHECK(tm__path_norm(&out, in) == 0);
    CHECK(out.buf[0] == '/' && strlen(out.buf) == out.len);
    CHECK(!strstr(out.buf, "//"));
    CHECK(out.len == 1 || out.buf[out.len - 1] != '/');
    /* the same components, in the same order */
    q = out.buf;
    for (;;) {
        a = next_comp(&p, &na);
        b = next_comp(&q, &nb);
        CHECK(!a == !b);
        if (!a)
            break;
        CHECK(na == nb && !memcmp(a, b, na));
    }
    if (!is_dot_comp(in))
        CHECK(!is_dot_comp(out.buf));
    CHECK(tm__path_norm(&again, out.buf) == 0);
    CHECK(again.len == out.len && !strcmp(again.buf, out.buf));
    tm__buf_release(&out);
    tm__buf_release(&again);
}

/* The folder part of path (up to its last '/'; "." when it has none, "/"
 * when that slash is the first byte). */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *d;
    if (!slash)
        d = strdup(".");
    else if (slash == path)
        d = strdup("/");
    else
        d = strndup(path, (size_t)(slash - path));
    CHECK(d);
    return d;
}

static void check_absolute(const char *in)
{
    struct tm__buf norm = TM__BUF_INIT;
    char *abs, *dir, *slash, *in_dir, *real;
    const char *base;
    struct stat a, b;
    if (strlen(in) > 512)
        return;
    abs = tm__path_absolute(in);
    CHECK(abs);
    in_dir = folder_of(in);
    if (strcmp(abs, in) != 0) {
        CHECK(abs[0] == '/');
        base = strrchr(in, '/') ? strrchr(in, '/') + 1 : in;
        slash = strrchr(abs, '/');
        CHECK(!strcmp(slash + 1, base));
        dir = strndup(abs, (size_t)(slash - abs));
        CHECK(dir);
        if (*dir) {
            CHECK(tm__path_norm(&norm, dir) == 0);
            CHECK(!strcmp(norm.buf, dir));
            CHECK(!is_dot_comp(dir));
        }
        /* the same folder as the input's */
        CHECK(stat(*dir ? dir : "/", &a) == 0);
        CHECK(stat(in_dir, &b) == 0);
        CHECK(a.st_dev == b.st_dev && a.st_ino == b.st_ino);
        free(dir);
    } else {
        /* kept as given: "/NAME", a folder that does not resolve, or one
         * that is canonical already */
        CHECK(in[0] == '/' || strchr(in, '/'));
        real = realpath(in_dir, NULL);
        CHECK(!real || (in[0] == '/' && !strcmp(real, in_dir)));
        free(real);
    }
    free(in_dir);
    free(abs);
    tm__buf_release(&norm);
}

static void check_name(const char *s, size_t n)
{
    struct tm__buf j = TM__BUF_INIT, norm = TM__BUF_INIT;
    int valid = tm__name_valid(s, n);
    int expect = n >= 1 && n <= 1020 && !(n == 1 && s[0] == '.') &&
                 !(n == 2 && s[0] == '.' && s[1] == '.') && !memchr(s, '/', n) &&
                 !memchr(s, '\0', n);
    CHECK(valid == expect);
    if (valid) {
        CHECK(tm__path_join(&j, "/", 1, s, n) == 0);
        CHECK(tm__path_norm(&norm, j.buf) == 0);
        CHECK(j.len == norm.len && !strcmp(j.buf, norm.buf));
        CHECK(tm__path_join(&j, "/a/b", 4, s, n) == 0);
        CHECK(tm__path_norm(&norm, j.buf) == 0);
        CHECK(j.len == norm.len && !strcmp(j.buf, norm.buf));
    }
    tm__buf_release(&j);
    tm__buf_release(&norm);
}

/* Length of the well-formed UTF-8 sequence at s (Unicode Table 3-7), or 0. */
static size_t table37(const unsigned char *s, size_t n)
{
    unsigned char b = s[0], lo = 0x80, hi = 0xBF;
    size_t len, i;
    if (b <= 0x7F)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        len = 2;
    else if (b >= 0xE0 && b <= 0xEF)
        len = 3;
    else if (b >= 0xF0 && b <= 0xF4)
        len = 4;
    else
        return 0;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
    if (n < len)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

static size_t encode(uint32_t cp, unsigned char *o)
{
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Returns 1 when all of s is UTF-8. */
static int check_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0, k;
    int all = 1;
    while (i < n) {
        uint32_t cp = 0xFFFFFFFF;
        unsigned char re[4];
        k = tm__utf8_seq(s + i, n - i, &cp);
        CHECK(k == table37(s + i, n - i));
        if (k) {
            CHECK(cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF));
            CHECK(encode(cp, re) == k && !memcmp(re, s + i, k));
            i += k;
        } else {
            all = 0;
            i++;
        }
    }
    return all;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Checks the JSON string of s and, when s is UTF-8, that it decodes to s. */
static void check_json(const char *s, size_t n, int utf8)
{
    struct tm__buf b = TM__BUF_INIT, dec = TM__BUF_INIT;
    const unsigned char *p;
    size_t i, k;
    CHECK(tm__buf_add_json(&b, s, n) == 0);
    p = (const unsigned char *)b.buf;
    CHECK(b.len >= 2 && p[0] == '"' && p[b.len - 1] == '"');
    for (i = 1; i < b.len - 1;) {
        if (p[i] == '\\') {
            const char *simple = "\"\\/bfnrt", *hit;
            CHECK(i + 1 < b.len - 1);
            if (p[i + 1] == 'u') {
                uint32_t v = 0;
                unsigned char enc[4];
                CHECK(i + 5 < b.len - 1);
                for (k = 2; k < 6; k++) {
                    int h = hexval(p[i + k]);
                    CHECK(h >= 0);
                    v = v * 16 + (uint32_t)h;
                }
                CHECK(!(v >= 0xD800 && v <= 0xDFFF)); /* never a surrogate pair */
                CHECK(tm__buf_add(&dec, enc, encode(v, enc)) == 0);
                i += 6;
                continue;
            }
            hit = strchr(simple, p[i + 1]);
            CHECK(hit && *hit);
            CHECK(tm__buf_addch(&dec, "\"\\/\b\f\n\r\t"[hit - simple]) == 0);
            i += 2;
            continue;
        }
        CHECK(p[i] >= 0x20 && p[i] != 0x7f && p[i] != '"');
        k = tm__utf8_seq(p + i, b.len - 1 - i, NULL);
        CHECK(k > 0);
        CHECK(tm__buf_add(&dec, p + i, k) == 0);
        i += k;
    }
    if (utf8)
        CHECK(dec.len == n && !memcmp(dec.buf, s, n));
    tm__buf_release(&b);
    tm__buf_release(&dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in;
    int utf8;
    if (size > 4096)
        return 0;
    in = malloc(size + 1);
    CHECK(in);
    memcpy(in, data, size);
    in[size] = '\0';
    check_norm(in);
    check_absolute(in);
    check_name((const char *)data, size);
    utf8 = check_utf8(data, size);
    check_json((const char *)data, size, utf8);
    free(in);
    return 0;
}
