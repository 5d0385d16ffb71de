/* Unit tests of the migration's YAML file (src/migration/config.h): the
 * write/read round trip (non-UTF-8 strings as !!binary, strings that need
 * escaping), refused files (missing fields, newer format, invalid YAML
 * with its line, foreign files) and the atomic write (no temporary file
 * left; a failed write leaves the old file intact). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration/config.h"
#include "treemig.h"
#include "util/buf.h"

/* A temporary folder per test, removed (with what is in it) afterwards. */
struct fixture {
    char dir[64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/treemig-config-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static void remove_all(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_all(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    remove_all(f->dir);
    free(f);
    return 0;
}

static void path_in(const struct fixture *f, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", f->dir, name);
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

/* The whole content of a file (malloc'd, NUL-terminated), or NULL. */
static char *read_text(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *s;
    long n;
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, fp), (size_t)n);
    s[n] = '\0';
    fclose(fp);
    return s;
}

/* Number of names in dir that hold ".tmp." (temporary files). */
static int temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static const char *const EXCLUDES[] = {
    "*.tmp",
    "/logs/*",
    "quote\"in",
    "back\\slash\\\\",
    "\"\"",
    "caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x8c\xb3",
    "tab\there\x7f",
    "colon: [x] #not a comment",
    "- dash",
    "null",
    "~",
    "123",
    "true",
    "'single'",
    " leading and trailing space ",
    "!!binary",
    "%YAML",
};
#define N_EXCLUDES (sizeof EXCLUDES / sizeof *EXCLUDES)

static void fill(struct tm__config *c)
{
    size_t i;
    memset(c, 0, sizeof *c);
    c->version = TM_CONFIG_VERSION;
    assert_int_equal(tm__config_set(&c->id, "0123456789abcdef0123456789abcdef"), 0);
    assert_int_equal(tm__config_set(&c->created, "2024-01-02T03:04:05Z"), 0);
    assert_int_equal(tm__config_set(&c->updated, "2024-01-02T03:04:06Z"), 0);
    assert_int_equal(tm__config_set(&c->phase, "suspended"), 0);
    assert_int_equal(tm__config_set(&c->suspended_from, "discovering"), 0);
    assert_int_equal(tm__config_set(&c->database, "/var/lib/tm/state \"1\".db"), 0);
    /* not UTF-8: written as !!binary */
    assert_int_equal(tm__config_set(&c->source, "/data/old\xff\xfe dir/\x80"), 0);
    assert_int_equal(tm__config_set(&c->destination,
                                    "/mnt/new \"quoted\" back\\slash \xc3\xa9\n"), 0);
    c->src_round = 7;
    c->dst_round = 5;
    c->workers = 16;
    c->lead = 2;
    c->retries = 0;
    c->excludes = calloc(N_EXCLUDES, sizeof *c->excludes);
    assert_non_null(c->excludes);
    for (i = 0; i < N_EXCLUDES; i++) {
        assert_int_equal(tm__config_set(&c->excludes[i], EXCLUDES[i]), 0);
        c->n_excludes++;
    }
}

static void assert_same(const struct tm__config *a, const struct tm__config *b)
{
    size_t i;
    assert_int_equal(a->version, b->version);
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->created, b->created);
    assert_string_equal(a->updated, b->updated);
    assert_string_equal(a->phase, b->phase);
    if (a->suspended_from || b->suspended_from) {
        assert_non_null(a->suspended_from);
        assert_non_null(b->suspended_from);
        assert_string_equal(a->suspended_from, b->suspended_from);
    }
    assert_string_equal(a->database, b->database);
    assert_string_equal(a->source, b->source);
    assert_string_equal(a->destination, b->destination);
    assert_int_equal(a->src_round, b->src_round);
    assert_int_equal(a->dst_round, b->dst_round);
    assert_int_equal(a->workers, b->workers);
    assert_int_equal(a->lead, b->lead);
    assert_int_equal(a->retries, b->retries);
    assert_int_equal(a->n_excludes, b->n_excludes);
    for (i = 0; i < a->n_excludes; i++)
        assert_string_equal(a->excludes[i], b->excludes[i]);
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    struct tm__config c, back;
    struct tm__buf err = TM__BUF_INIT;
    struct stat st;
    char path[256], *text;

    fill(&c);
    memset(&back, 0, sizeof back);
    path_in(f, "m.yaml", path, sizeof path);
    assert_int_equal(tm__config_write(path, &c, &err), 0);
    assert_int_equal(err.len, 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(temp_files(f->dir), 0);

    text = read_text(path);
    assert_non_null(text);
    /* the non-UTF-8 source is !!binary, the UTF-8 destination a quoted
     * string; newline and control characters are escaped, so every line of
     * the file is one key or one list item */
    assert_non_null(strstr(text, "\nsource: !!binary \""));
    assert_null(strstr(text, "destination: !!binary"));
    assert_non_null(strstr(text, "\ndestination: \"/mnt/new \\\"quoted\\\" back\\\\slash "));
    assert_null(strstr(text, "\t"));
    assert_non_null(strstr(text, "treemig: 1\n"));
    free(text);

    assert_int_equal(tm__config_read(path, &back, &err), 0);
    assert_int_equal(err.len, 0);
    assert_same(&c, &back);

    /* reading into a filled struct releases what it held first */
    assert_int_equal(tm__config_read(path, &back, &err), 0);
    assert_same(&c, &back);

    tm__config_release(&back);
    tm__config_release(&c);
    assert_null(c.id);
    assert_null(c.excludes);
    assert_int_equal(c.n_excludes, 0);
    tm__buf_release(&err);
}

static void test_binary_padding_and_edges(void **state)
{
    /* non-UTF-8 strings of every length mod 3 (base64 padding), overlong
     * and surrogate encodings, and a valid 4-byte character */
    static const char *const values[] = {
        "\xff", "\xff\xfe", "\xff\xfe\xfd", "a\xff", "\xc0\xaf", "\xed\xa0\x80",
        "\xf4\x90\x80\x80", "ok \xf0\x9f\x98\x80", "\xc3", "/x/\xe2\x82",
    };
    struct fixture *f = *state;
    struct tm__buf err = TM__BUF_INIT;
    char path[256];
    size_t i;

    path_in(f, "bin.yaml", path, sizeof path);
    for (i = 0; i < sizeof values / sizeof *values; i++) {
        struct tm__config c, back;
        fill(&c);
        memset(&back, 0, sizeof back);
        assert_int_equal(tm__config_set(&c.source, values[i]), 0);
        assert_int_equal(tm__config_set(&c.excludes[0], values[i]), 0);
        assert_int_equal(tm__config_set(&c.suspended_from, NULL), 0);
        assert_int_equal(tm__config_write(path, &c, &err), 0);
        assert_int_equal(tm__config_read(path, &back, &err), 0);
        assert_same(&c, &back);
        assert_null(back.suspended_from);
        tm__config_release(&c);
        tm__config_release(&back);
    }
    tm__buf_release(&err);
}

/* Found by fuzz/fuzz_config.c: characters that YAML does not keep as
 * themselves in a double-quoted scalar were written raw: NEL read back as
 * a space, and C1 controls, U+FFFE and U+FFFF made the file unreadable
 * (libyaml refuses them). They are escaped now, and LS, PS and the byte
 * order mark too (line breaks and a mark in YAML 1.1). */
static void test_yaml_special_characters(void **state)
{
    static const char *const values[] = {
        "a\xc2\x85" "b", "a\xe2\x80\xa8" "b", "a\xe2\x80\xa9" "b",
        "\xef\xbb\xbf" "bom", "\xc2\x80\xc2\x9f", "\xef\xbf\xbe\xef\xbf\xbf",
        "del\x7f tab\t", "\xc2\xa0" "nbsp \xe2\x80\x8b zwsp",
    };
    struct fixture *f = *state;
    struct tm__buf err = TM__BUF_INIT;
    char path[256];
    size_t i;

    path_in(f, "special.yaml", path, sizeof path);
    for (i = 0; i < sizeof values / sizeof *values; i++) {
        struct tm__config c, back;
        fill(&c);
        memset(&back, 0, sizeof back);
        assert_int_equal(tm__config_set(&c.id, values[i]), 0);
        assert_int_equal(tm__config_set(&c.excludes[0], values[i]), 0);
        assert_int_equal(tm__config_write(path, &c, &err), 0);
        if (tm__config_read(path, &back, &err) != 0)
            fail_msg("value %zu does not read back: %s", i, err.buf);
        assert_same(&c, &back);
        tm__config_release(&c);
        tm__config_release(&back);
    }
    tm__buf_release(&err);
}

static void test_no_excludes(void **state)
{
    struct fixture *f = *state;
    struct tm__config c, back;
    struct tm__buf err = TM__BUF_INIT;
    char path[256], *text;
    size_t i;

    fill(&c);
    memset(&back, 0, sizeof back);
    for (i = 0; i < c.n_excludes; i++)
        free(c.excludes[i]);
    c.n_excludes = 0;
    path_in(f, "none.yaml", path, sizeof path);
    assert_int_equal(tm__config_write(path, &c, &err), 0);
    text = read_text(path);
    assert_non_null(strstr(text, "excludes: []"));
    free(text);
    assert_int_equal(tm__config_read(path, &back, &err), 0);
    assert_int_equal(back.n_excludes, 0);
    tm__config_release(&c);
    tm__config_release(&back);
    tm__buf_release(&err);
}

/* Reads text from a file; expects rc and a message holding each of the
 * NULL-terminated words and the file's path. */
static void expect_refused(const struct fixture *f, const char *text, int rc, ...)
{
    struct tm__config c;
    struct tm__buf err = TM__BUF_INIT;
    char path[256], *before, *after;
    const char *w;
    va_list ap;

    memset(&c, 0, sizeof c);
    path_in(f, "bad.yaml", path, sizeof path);
    write_text(path, text);
    before = read_text(path);
    assert_int_equal(tm__config_read(path, &c, &err), rc);
    assert_true(err.len > 0);
    assert_non_null(strstr(err.buf, path));
    va_start(ap, rc);
    while ((w = va_arg(ap, const char *)) != NULL) {
        if (!strstr(err.buf, w))
            fail_msg("message '%s' does not hold '%s'", err.buf, w);
    }
    va_end(ap);
    /* nothing is left half-read, and the file is not touched */
    assert_null(c.id);
    assert_null(c.excludes);
    after = read_text(path);
    assert_string_equal(before, after);
    free(before);
    free(after);
    tm__buf_release(&err);
}

/* A valid file as treemig writes it; the refusal tests edit it. */
static const char valid[] =
    "# comment\n"
    "treemig: 1\n"
    "migration:\n"
    "  id: \"0123456789abcdef0123456789abcdef\"\n"
    "  created: \"2024-01-02T03:04:05Z\"\n"
    "  updated: \"2024-01-02T03:04:06Z\"\n"
    "phase: \"discovering\"\n"
    "database: \"/tmp/state.db\"\n"
    "source: \"/src\"\n"
    "destination: \"/dst\"\n"
    "rounds:\n"
    "  src: 1\n"
    "  dst: 0\n"
    "options:\n"
    "  workers: 4\n"
    "  lead: 3\n"
    "  retries: 3\n"
    "  excludes:\n"
    "    - \"*.tmp\"\n";

/* base with the line starting with `key` (after its indentation) replaced
 * by `line` (or dropped when line is NULL). */
static char *edit(const char *base, const char *key, const char *line)
{
    struct tm__buf b = TM__BUF_INIT;
    const char *p = base;
    size_t klen = strlen(key);
    while (*p) {
        const char *nl = strchr(p, '\n');
        const char *s = p;
        size_t n = (size_t)(nl - p) + 1;
        while (*s == ' ')
            s++;
        if (strncmp(s, key, klen) == 0 && (s[klen] == ':' || s[klen] == ' ')) {
            if (line) {
                assert_int_equal(tm__buf_add(&b, p, (size_t)(s - p)), 0);
                assert_int_equal(tm__buf_addf(&b, "%s\n", line), 0);
            }
        } else {
            assert_int_equal(tm__buf_add(&b, p, n), 0);
        }
        p += n;
    }
    return tm__buf_detach(&b, NULL);
}

/* The valid file's text, edited. */
static char *edited(const char *key, const char *line)
{
    return edit(valid, key, line);
}

static void test_valid_reference_text(void **state)
{
    /* the hand-written text that the refusal tests edit is itself valid */
    struct fixture *f = *state;
    struct tm__config c;
    struct tm__buf err = TM__BUF_INIT;
    char path[256], *text = edited("nothing", NULL);

    memset(&c, 0, sizeof c);
    path_in(f, "ok.yaml", path, sizeof path);
    write_text(path, text);
    assert_int_equal(tm__config_read(path, &c, &err), 0);
    assert_string_equal(c.phase, "discovering");
    assert_int_equal(c.n_excludes, 1);
    assert_string_equal(c.excludes[0], "*.tmp");
    assert_null(c.suspended_from);
    tm__config_release(&c);
    free(text);
    tm__buf_release(&err);
}

static void test_missing_fields(void **state)
{
    static const char *const required[] = { "id", "phase", "database", "source",
                                            "destination" };
    static const char *const numbers[] = { "src", "dst", "workers", "lead", "retries" };
    struct fixture *f = *state;
    size_t i;
    for (i = 0; i < sizeof required / sizeof *required; i++) {
        char *text = edited(required[i], NULL);
        char want[64];
        snprintf(want, sizeof want, "missing '%s'", required[i]);
        expect_refused(f, text, TM_ECORRUPT, want, NULL);
        free(text);
        /* null is missing too */
        snprintf(want, sizeof want, "%s: null", required[i]);
        text = edited(required[i], want);
        snprintf(want, sizeof want, "missing '%s'", required[i]);
        expect_refused(f, text, TM_ECORRUPT, want, NULL);
        free(text);
    }
    for (i = 0; i < sizeof numbers / sizeof *numbers; i++) {
        char *text = edited(numbers[i], NULL);
        char want[64];
        snprintf(want, sizeof want, "'%s'", numbers[i]);
        expect_refused(f, text, TM_ECORRUPT, want, NULL);
        free(text);
    }
    expect_refused(f, "treemig: 1\nphase: \"x\"\n", TM_ECORRUPT,
                   "missing 'migration', 'rounds' or 'options'", NULL);
}

static void test_bad_values(void **state)
{
    struct fixture *f = *state;
    char *text;

    text = edited("workers", "workers: 0");
    expect_refused(f, text, TM_ECORRUPT, "'workers' must be a whole number", "line 15", NULL);
    free(text);
    text = edited("workers", "workers: 4x");
    expect_refused(f, text, TM_ECORRUPT, "'workers'", NULL);
    free(text);
    text = edited("lead", "lead: -1");
    expect_refused(f, text, TM_ECORRUPT, "'lead'", NULL);
    free(text);
    text = edited("retries", "retries: 99999999999999999999");
    expect_refused(f, text, TM_ECORRUPT, "'retries'", NULL);
    free(text);
    text = edited("-", NULL);
    {
        char *t2 = edit(text, "excludes", "excludes: \"*.tmp\"");
        expect_refused(f, t2, TM_ECORRUPT, "'excludes' must be a list", NULL);
        free(t2);
    }
    free(text);
    text = edited("source", "source: [\"a\", \"b\"]");
    expect_refused(f, text, TM_ECORRUPT, "'source' must be a string", NULL);
    free(text);
    text = edited("source", "source: !!binary \"not base64 !\"");
    expect_refused(f, text, TM_ECORRUPT, "not valid base64", NULL);
    free(text);
    text = edited("source", "source: \"a\\0b\"");
    expect_refused(f, text, TM_ECORRUPT, "NUL", NULL);
    free(text);
    text = edited("-", "- \"\"");
    expect_refused(f, text, TM_ECORRUPT, "exclude", NULL);
    free(text);
    /* found by fuzz/fuzz_config.c: an exclude that decodes to nothing was
     * accepted (and written back as "", which is then refused), and a bad
     * base64 exclude leaked its copy */
    text = edited("-", "- !!binary \"/==\"");
    expect_refused(f, text, TM_ECORRUPT, "exclude must be a non-empty string", NULL);
    free(text);
    text = edited("-", "- !!binary \"!!\"");
    expect_refused(f, text, TM_ECORRUPT, "'excludes' is not valid base64", NULL);
    free(text);
}

static void test_newer_version(void **state)
{
    struct fixture *f = *state;
    char *text = edited("treemig", "treemig: 2");
    expect_refused(f, text, TM_ESCHEMA, "newer", NULL);
    free(text);
    text = edited("treemig", "treemig: 99");
    expect_refused(f, text, TM_ESCHEMA, "newer", "99", NULL);
    free(text);
    text = edited("treemig", "treemig: 0");
    expect_refused(f, text, TM_ECORRUPT, "'treemig'", NULL);
    free(text);
}

static void test_invalid_yaml_names_the_line(void **state)
{
    struct fixture *f = *state;
    /* an unclosed flow sequence opened on line 3 */
    expect_refused(f, "treemig: 1\nmigration:\n  id: [\"x\"\n", TM_ECORRUPT, "not valid YAML",
                   "line ", NULL);
    /* a mapping value where none is allowed, on line 4 */
    expect_refused(f, "treemig: 1\nphase: \"x\"\ndatabase: \"y\"\nsource: a: b\n", TM_ECORRUPT,
                   "not valid YAML", "line 4", NULL);
    /* bad indentation on line 5 */
    expect_refused(f, "# c\ntreemig: 1\nmigration:\n  id: \"x\"\n created: \"y\"\n",
                   TM_ECORRUPT, "not valid YAML", "line 5", NULL);
    /* an unterminated quoted string */
    expect_refused(f, "treemig: 1\nphase: \"open\n", TM_ECORRUPT, "not valid YAML", NULL);
    /* not UTF-8 outside a string */
    expect_refused(f, "treemig: 1\nphase: \xff\xfe\n", TM_ECORRUPT, "not valid YAML", NULL);
}

static void test_foreign_files(void **state)
{
    struct fixture *f = *state;
    expect_refused(f, "foo: 1\n", TM_ECORRUPT, "not a treemig migration file", NULL);
    expect_refused(f, "- a\n- b\n", TM_ECORRUPT, "not a treemig migration file", NULL);
    expect_refused(f, "just a string\n", TM_ECORRUPT, "not a treemig migration file", NULL);
    expect_refused(f, "", TM_ECORRUPT, "empty", NULL);
    expect_refused(f, "# only a comment\n", TM_ECORRUPT, "empty", NULL);
    expect_refused(f, "treemig: one\n", TM_ECORRUPT, "'treemig'", NULL);
}

static void test_missing_file(void **state)
{
    struct fixture *f = *state;
    struct tm__config c;
    struct tm__buf err = TM__BUF_INIT;
    char path[256];
    memset(&c, 0, sizeof c);
    path_in(f, "does-not-exist.yaml", path, sizeof path);
    assert_int_equal(tm__config_read(path, &c, &err), TM_ENODB);
    assert_non_null(strstr(err.buf, path));
    assert_int_equal(access(path, F_OK), -1);
    tm__buf_release(&err);
}

static void test_write_replaces_atomically(void **state)
{
    struct fixture *f = *state;
    struct tm__config c, back;
    struct tm__buf err = TM__BUF_INIT;
    char path[256], *text;

    fill(&c);
    memset(&back, 0, sizeof back);
    path_in(f, "m.yaml", path, sizeof path);
    /* an existing, longer file is replaced whole (no tail left behind) */
    text = malloc(100000);
    assert_non_null(text);
    memset(text, '#', 99999);
    text[99999] = '\0';
    write_text(path, text);
    free(text);
    assert_int_equal(tm__config_write(path, &c, &err), 0);
    assert_int_equal(tm__config_read(path, &back, &err), 0);
    assert_same(&c, &back);
    text = read_text(path);
    assert_true(strlen(text) < 5000);
    free(text);
    assert_int_equal(temp_files(f->dir), 0);
    /* rewriting many times leaves one file and no temporary file */
    for (c.src_round = 0; c.src_round < 50; c.src_round++)
        assert_int_equal(tm__config_write(path, &c, &err), 0);
    assert_int_equal(tm__config_read(path, &back, &err), 0);
    assert_int_equal(back.src_round, 49);
    assert_int_equal(temp_files(f->dir), 0);
    tm__config_release(&c);
    tm__config_release(&back);
    tm__buf_release(&err);
}

static void test_failed_write_keeps_old_file(void **state)
{
    struct fixture *f = *state;
    struct tm__config c, back;
    struct tm__buf err = TM__BUF_INIT;
    char path[256], tmp[300], *before, *after;

    fill(&c);
    memset(&back, 0, sizeof back);
    path_in(f, "keep.yaml", path, sizeof path);
    assert_int_equal(tm__config_write(path, &c, &err), 0);
    before = read_text(path);

    /* the temporary file's name is taken by a folder: the write fails
     * before the rename (works as root too) */
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_equal(mkdir(tmp, 0700), 0);
    assert_int_equal(tm__config_set(&c.phase, "discovered"), 0);
    assert_int_not_equal(tm__config_write(path, &c, &err), 0);
    assert_true(err.len > 0);
    assert_non_null(strstr(err.buf, path));
    after = read_text(path);
    assert_string_equal(before, after);
    free(after);
    assert_int_equal(tm__config_read(path, &back, &err), 0);
    assert_string_equal(back.phase, "suspended");
    assert_int_equal(rmdir(tmp), 0);

    /* the target is a folder: the rename fails; the temporary file is
     * removed */
    tm__buf_reset(&err);
    path_in(f, "a-folder.yaml", path, sizeof path);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_not_equal(tm__config_write(path, &c, &err), 0);
    assert_non_null(strstr(err.buf, path));
    assert_int_equal(temp_files(f->dir), 0);

    tm__config_release(&c);
    tm__config_release(&back);
    free(before);
    tm__buf_release(&err);
}

static void test_write_into_missing_folder(void **state)
{
    struct fixture *f = *state;
    struct tm__config c;
    struct tm__buf err = TM__BUF_INIT;
    char path[256], dir[256];

    fill(&c);
    path_in(f, "no/such/folder/m.yaml", path, sizeof path);
    assert_int_not_equal(tm__config_write(path, &c, &err), 0);
    assert_true(err.len > 0);
    /* the message names where it tried to write */
    path_in(f, "no/such/folder/m.yaml", dir, sizeof dir);
    assert_non_null(strstr(err.buf, dir));
    path_in(f, "no", dir, sizeof dir);
    assert_int_equal(access(dir, F_OK), -1);
    assert_int_equal(temp_files(f->dir), 0);
    tm__config_release(&c);
    tm__buf_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_padding_and_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_yaml_special_characters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_excludes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_valid_reference_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_yaml_names_the_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_replaces_atomically, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_keeps_old_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_into_missing_folder, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
