/* Unit tests of src/util/secret.c: SipHash-2-4 against its reference
 * vectors, the names of temporary files, times that do not fit in
 * nanoseconds, and their comparison (issue 18). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/engine.h"
#include "store/store.h"
#include "treemig.h"
#include "util/util.h"

/* The reference vectors of the SipHash paper (key 00..0f, message 00..n-1):
 * the first, the 8th, the 15th and the 16th of the 64. */
static void test_siphash_vectors(void **state)
{
    unsigned char key[TM_KEY_LEN], msg[64];
    int i;
    (void)state;
    for (i = 0; i < TM_KEY_LEN; i++)
        key[i] = (unsigned char)i;
    for (i = 0; i < 64; i++)
        msg[i] = (unsigned char)i;
    assert_int_equal(tm__siphash(key, msg, 0), 0x726fdb47dd0e0e31ULL);
    assert_int_equal(tm__siphash(key, msg, 7), 0xab0200f58b01d137ULL);
    assert_int_equal(tm__siphash(key, msg, 8), 0x93f5f5799a932462ULL);
    assert_int_equal(tm__siphash(key, msg, 15), 0xa129ca6149be45e5ULL);
}

static void test_tmp_names(void **state)
{
    unsigned char k1[TM_KEY_LEN] = { 1 }, k2[TM_KEY_LEN] = { 2 };
    char a[TM_TMP_NAME_MAX], b[TM_TMP_NAME_MAX], c[TM_TMP_NAME_MAX];
    char d[TM_TMP_NAME_MAX], small[20];
    (void)state;
    assert_int_equal(tm__tmp_name(k1, "/x/file", 0, a, sizeof a), 0);
    assert_int_equal(strlen(a), 9 + 32 + 4);
    assert_memory_equal(a, ".treemig.", 9);
    assert_string_equal(a + 41, ".tmp");
    assert_true(tm__tmp_name_like(a, strlen(a)));
    /* the same inputs give the same name (a crashed run's names can be
     * found again); any other key, path or attempt another */
    assert_int_equal(tm__tmp_name(k1, "/x/file", 0, b, sizeof b), 0);
    assert_string_equal(a, b);
    assert_int_equal(tm__tmp_name(k2, "/x/file", 0, b, sizeof b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(tm__tmp_name(k1, "/x/filf", 0, c, sizeof c), 0);
    assert_string_not_equal(a, c);
    assert_int_equal(tm__tmp_name(k1, "/x/file", 1, d, sizeof d), 0);
    assert_string_not_equal(a, d);
    assert_int_equal(tm__tmp_name(k1, "/x/file", 0, small, sizeof small),
                     TM_ENAMETOOLONG);
    /* earlier versions' names look like temporaries too; others do not */
    assert_true(tm__tmp_name_like(".treemig.0123456789abcdef.tmp", 29));
    assert_false(tm__tmp_name_like(".treemig.0123456789abcdeg.tmp", 29));
    assert_false(tm__tmp_name_like(".treemig.0123456789ABCDEF.tmp", 29));
    assert_false(tm__tmp_name_like(".treemig.creating", 17));
    assert_false(tm__tmp_name_like(".treemig..tmp", 13));
    assert_false(tm__tmp_name_like("treemig.0123456789abcdef.tmp", 28));
}

static void test_times_that_do_not_fit(void **state)
{
    (void)state;
    assert_int_equal(tm__ts_to_ns(0, 0), 0);
    assert_int_equal(tm__ts_to_ns(-1, 999999999), -1);
    assert_int_equal(tm__ts_to_ns(9223372036LL, 854775806), INT64_MAX - 1);
    /* the last nanosecond that fits is the mark itself: out of range */
    assert_int_equal(tm__ts_to_ns(9223372036LL, 854775807), TM_MTIME_MAX);
    assert_int_equal(tm__ts_to_ns(9223372037LL, 0), TM_MTIME_MAX);
    assert_int_equal(tm__ts_to_ns(INT64_MAX, 999999999), TM_MTIME_MAX);
    assert_int_equal(tm__ts_to_ns(-9223372036LL, -854775806), INT64_MIN + 2);
    assert_int_equal(tm__ts_to_ns(-9223372037LL, 0), TM_MTIME_MIN);
    assert_int_equal(tm__ts_to_ns(INT64_MIN, 0), TM_MTIME_MIN);
    assert_int_equal(tm__ts_to_ns(-9223372037LL, 145224192), TM_MTIME_MIN);
    assert_true(tm__mtime_out_of_range(TM_MTIME_MAX));
    assert_true(tm__mtime_out_of_range(TM_MTIME_MIN));
    assert_false(tm__mtime_out_of_range(INT64_MAX - 1));
    assert_false(tm__mtime_out_of_range(0));
    /* a time that did not fit never compares equal, not even to itself */
    assert_int_equal(tm__compare_leaf(5, TM_MTIME_MAX, 5, TM_MTIME_MAX, 1), CF_MTIME);
    assert_int_not_equal(tm__compare_leaf(5, TM_MTIME_MIN, 5, TM_MTIME_MIN, 1000),
                         CF_NONE);
    assert_int_equal(tm__compare_leaf(5, 7, 5, 7, 1), CF_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vectors),
        cmocka_unit_test(test_tmp_names),
        cmocka_unit_test(test_times_that_do_not_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
