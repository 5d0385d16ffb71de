/* Unit tests of the buffer, the error table, name checks, filters and the
 * comparison of two leaves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapter/adapter.h"
#include "engine/engine.h"
#include "store/store.h"
#include "treemig.h"
#include "util/buf.h"

static void test_buf_grows_and_detaches(void **state)
{
    struct tm__buf b = TM__BUF_INIT;
    size_t len, i;
    char *s;
    (void)state;
    assert_string_equal(b.buf, "");
    for (i = 0; i < 1000; i++)
        assert_int_equal(tm__buf_addf(&b, "%zu,", i % 10), 0);
    assert_int_equal(b.len, 2000);
    assert_int_equal(b.buf[2000], '\0');
    s = tm__buf_detach(&b, &len);
    assert_int_equal(len, 2000);
    assert_memory_equal(s, "0,1,2,", 6);
    assert_string_equal(b.buf, "");
    free(s);
    tm__buf_release(&b);
}

static void test_json_escapes_invalid_utf8(void **state)
{
    struct tm__buf b = TM__BUF_INIT;
    (void)state;
    assert_int_equal(tm__buf_add_json(&b, "a\"b\n\xff\xc3\xa9", 7), 0);
    assert_string_equal(b.buf, "\"a\\\"b\\u000a\\u00ff\xc3\xa9\"");
    tm__buf_reset(&b);
    /* an overlong encoding of '/' is not UTF-8 */
    assert_int_equal(tm__buf_add_json(&b, "\xc0\xaf", 2), 0);
    assert_string_equal(b.buf, "\"\\u00c0\\u00af\"");
    tm__buf_release(&b);
}

/* UTF-8 checked whole, wherever a bad byte is among runs of ASCII (read
 * eight bytes at a time) */
static void test_utf8_valid(void **state)
{
    char b[40];
    size_t at, n;
    (void)state;
    assert_int_equal(tm__utf8_valid("", 0), 1);
    assert_int_equal(tm__utf8_valid("a\0b", 3), 1);
    for (n = 1; n <= sizeof b; n++)
        for (at = 0; at < n; at++) {
            memset(b, 'a', n);
            assert_int_equal(tm__utf8_valid(b, n), 1);
            b[at] = (char)0xff;
            assert_int_equal(tm__utf8_valid(b, n), 0);
            b[at] = (char)0xc3; /* a sequence cut by the end, or by 'a' */
            assert_int_equal(tm__utf8_valid(b, n), 0);
            if (at + 1 < n) {
                b[at + 1] = (char)0xa9; /* é, then ASCII again */
                assert_int_equal(tm__utf8_valid(b, n), 1);
                b[at + 1] = (char)0x80 | 0x2f; /* fine as a continuation */
                assert_int_equal(tm__utf8_valid(b, n), 1);
                b[at] = (char)0xc0; /* overlong '/' */
                assert_int_equal(tm__utf8_valid(b, n), 0);
            }
        }
}

static void test_path_join(void **state)
{
    struct tm__buf b = TM__BUF_INIT;
    (void)state;
    assert_int_equal(tm__path_join(&b, "/", 1, "a", 1), 0);
    assert_string_equal(b.buf, "/a");
    assert_int_equal(tm__path_join(&b, "/a/b", 4, "c d", 3), 0);
    assert_string_equal(b.buf, "/a/b/c d");
    tm__buf_release(&b);
}

static void test_error_table(void **state)
{
    (void)state;
    assert_int_equal(TM_EACCES, -EACCES);
    assert_string_equal(tm_err_name(TM_EACCES), "EACCES");
    assert_string_equal(tm_err_name(TM_ELOCKED), "ELOCKED");
    assert_string_equal(tm_strerror(TM_ELOCKED),
                        "state file is in use by another process");
    assert_string_equal(tm_strerror(0), "success");
    assert_string_equal(tm_strerror(-99999), "unknown error");
    assert_string_equal(tm_err_name(-99999), "UNKNOWN");
}

/* The phases are written to the state file and the YAML file by these
 * names (docs/state-file.md): the table must spell them exactly, and
 * parsing must give the phase back. */
static void test_phase_names(void **state)
{
    static const char *const want[PH_COUNT] = { "", "roots-set", "discovering",
                                                "discovered", "copying", "copied",
                                                "verified", "suspended" };
    int i;
    (void)state;
    for (i = 0; i < PH_COUNT; i++) {
        assert_string_equal(tm__phase_name((enum tm__phase)i), want[i]);
        assert_int_equal(tm__phase_parse(want[i]), i);
    }
    assert_int_equal(tm__phase_parse(NULL), PH_NONE);
    assert_int_equal(tm__phase_parse("copy"), PH_UNKNOWN);
    assert_int_equal(tm__phase_parse("Copying"), PH_UNKNOWN);
    assert_string_equal(tm__phase_name(PH_UNKNOWN), "");
    assert_string_equal(tm__phase_name(PH_COUNT), "");
}

static void test_name_valid(void **state)
{
    (void)state;
    assert_true(tm__name_valid("a", 1));
    assert_true(tm__name_valid("\xff\xfe", 2));
    assert_true(tm__name_valid("line\nbreak", 10));
    assert_false(tm__name_valid("", 0));
    assert_false(tm__name_valid(".", 1));
    assert_false(tm__name_valid("..", 2));
    assert_true(tm__name_valid("...", 3));
    assert_false(tm__name_valid("a/b", 3));
    assert_false(tm__name_valid("a\0b", 3));
}

static void test_filter(void **state)
{
    const char *globs[] = { "*.tmp", "/logs/*", "cache" };
    (void)state;
    assert_true(tm__filter_match(globs, 3, "/x/y/file.tmp", "file.tmp"));
    assert_true(tm__filter_match(globs, 3, "/logs/a", "a"));
    assert_false(tm__filter_match(globs, 3, "/logs/a/b", "b"));
    assert_true(tm__filter_match(globs, 3, "/deep/cache", "cache"));
    assert_false(tm__filter_match(globs, 3, "/deep/cached", "cached"));
    assert_false(tm__filter_match(globs, 0, "/a.tmp", "a.tmp"));
}

/* The rules of discover (filter.c): rsync's matching and order. */
static void test_filter_rules(void **state)
{
    const char *r1[] = { "+ keep/", "- *.log", "+ *.c", "- /src/**.o" };
    const char *r2[] = { "+ */", "+ *.txt", "- *" };
    char why[256];
    (void)state;
    assert_int_equal(tm__filter_eval(r1, 4, "/a/keep", "keep", 1), 1);
    assert_int_equal(tm__filter_eval(r1, 4, "/a/keep", "keep", 0), 0);
    assert_int_equal(tm__filter_eval(r1, 4, "/x.log", "x.log", 0), -1);
    assert_int_equal(tm__filter_eval(r1, 4, "/src/a/b/c.o", "c.o", 0), -1);
    assert_int_equal(tm__filter_eval(r1, 4, "/lib/c.o", "c.o", 0), 0);
    assert_int_equal(tm__filter_eval(r2, 3, "/a/b", "b", 1), 1);
    assert_int_equal(tm__filter_eval(r2, 3, "/a/b.txt", "b.txt", 0), 1);
    assert_int_equal(tm__filter_eval(r2, 3, "/a/b.c", "b.c", 0), -1);
    /* '**' at the start also takes the root's '/'; '*' never crosses one */
    assert_true(tm__glob_match_node("**/b", "/b", "b", 1));
    assert_false(tm__glob_match_node("/**/b", "/b", "b", 1));
    assert_false(tm__glob_match_node("*/a", "/a", "a", 1));
    assert_true(tm__glob_match_node("*/a", "/x/a", "a", 1));
    assert_true(tm__glob_match_node("cache/*", "/d/cache/x", "x", 0));
    assert_true(tm__glob_match_node("d/***", "/d", "d", 1));
    assert_true(tm__glob_match_node("d/***", "/d/e/f", "f", 0));
    assert_false(tm__glob_match_node("d/***", "/dd", "dd", 1));
    assert_true(tm__glob_match_node("[!a-c]x", "/dx", "dx", 0));
    assert_false(tm__glob_match_node("[!a-c]x", "/bx", "bx", 0));
    /* a pattern without a wildcard is literal for rsync, '\' too */
    {
        const char *lit[] = { "- \\#h" };
        const char *esc[] = { "- \\#h*" };
        assert_int_equal(tm__filter_eval(lit, 1, "/#h", "#h", 0), 0);
        assert_int_equal(tm__filter_eval(lit, 1, "/\\#h", "\\#h", 0), -1);
        assert_int_equal(tm__filter_eval(esc, 1, "/#hx", "#hx", 0), -1);
    }
    assert_int_equal(tm__filter_check("- a[b", why, sizeof why), TM_EINVAL);
    assert_int_equal(tm__filter_check("+ a/***/b", why, sizeof why), TM_EINVAL);
    assert_int_equal(tm__filter_check("ab\\", why, sizeof why), TM_EINVAL);
    assert_int_equal(tm__filter_check("/", why, sizeof why), TM_EINVAL);
    assert_int_equal(tm__filter_check("- ", why, sizeof why), TM_EINVAL);
    assert_int_equal(tm__filter_check("a/***", why, sizeof why), 0);
}

static void test_mtime_within(void **state)
{
    (void)state;
    /* whole seconds, as rsync: 10.9 s and 12.0 s are 2 s apart */
    assert_true(tm__mtime_within(10900000000, 12000000000, 2000000000));
    assert_false(tm__mtime_within(10900000000, 13000000000, 2000000000));
    assert_false(tm__mtime_within(10, 10, 0));
}

static void test_compare_leaf(void **state)
{
    (void)state;
    assert_int_equal(tm__compare_leaf(10, 5000, 10, 5000, 1), CF_NONE);
    assert_int_equal(tm__compare_leaf(10, 5000, 11, 5000, 1), CF_SIZE);
    assert_int_equal(tm__compare_leaf(10, 5000, 10, 6000, 1), CF_DST_NEWER);
    assert_int_equal(tm__compare_leaf(10, 6000, 10, 5000, 1), CF_MTIME);
    /* at 1 s precision, times within the same second are equal */
    assert_int_equal(tm__compare_leaf(1, 2000000001, 1, 2999999999, 1000000000),
                     CF_NONE);
    assert_int_equal(tm__compare_leaf(1, 1999999999, 1, 2000000000, 1000000000),
                     CF_DST_NEWER);
    /* before the epoch too */
    assert_int_equal(tm__compare_leaf(1, -1, 1, -999999999, 1000000000), CF_NONE);
}

static int add(struct tm__listing *l, const char *name, int type)
{
    struct tm__entry e = { name, strlen(name), type, 7, 9, 0644, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    return tm__listing_add(l, &e);
}

static void test_listing_sort_find(void **state)
{
    struct tm__listing l = TM__LISTING_INIT;
    const char *names[] = { "b", "a\xff", "a", "ab", "\xc3\xa9" };
    size_t i;
    (void)state;
    assert_int_equal(tm__listing_sort(&l), 0); /* empty: no array at all */
    assert_null(tm__listing_find(&l, "a", 1));
    for (i = 0; i < 5; i++)
        assert_int_equal(add(&l, names[i], TM_T_FILE), 0);
    assert_int_equal(tm__listing_sort(&l), 0);
    /* SQLite's BINARY order: bytes, then length */
    assert_string_equal(l.arena.buf + l.v[0].name_off, "a");
    assert_string_equal(l.arena.buf + l.v[1].name_off, "ab");
    assert_string_equal(l.arena.buf + l.v[2].name_off, "a\xff");
    assert_string_equal(l.arena.buf + l.v[3].name_off, "b");
    for (i = 0; i < 5; i++) {
        const struct tm__ent *x = tm__listing_find(&l, names[i], strlen(names[i]));
        assert_non_null(x);
        assert_int_equal(x->name_len, strlen(names[i]));
        assert_int_equal(x->size, 7);
    }
    assert_null(tm__listing_find(&l, "a\0", 2));
    assert_null(tm__listing_find(&l, "c", 1));
    assert_int_equal(add(&l, "ab", TM_T_FOLDER), 0);
    assert_int_equal(tm__listing_sort(&l), TM_EBADNAME);
    tm__listing_reset(&l);
    assert_int_equal(l.n, 0);
    tm__listing_release(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_grows_and_detaches),
        cmocka_unit_test(test_json_escapes_invalid_utf8),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_path_join),
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_phase_names),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_filter_rules),
        cmocka_unit_test(test_mtime_within),
        cmocka_unit_test(test_compare_leaf),
        cmocka_unit_test(test_listing_sort_find),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
