/* Unit tests of the local adapter's write safety (issue 18) on a real
 * folder under /tmp: with a known run key the test can put things under
 * the very names the adapter will try for a temporary (a hard link to a
 * file outside, a FIFO, a symlink, a folder) and check that none of them
 * is opened, truncated, followed or removed, that a crash's leftover is
 * removed only when it is of the node's type, that folder attributes are
 * never set through a symlink put in the folder's place, and that a file's
 * attributes are changed in place only on the very file compared (never
 * through a symlink, never on a file with another link, never on a file
 * that changed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter/adapter.h"
#include "treemig.h"
#include "util/util.h"

/* What open_write needs of a file of size bytes (no attributes known). */
static const struct tm__wattr *wa(int64_t size)
{
    static _Thread_local struct tm__wattr w;
    memset(&w, 0, sizeof w);
    w.size = size;
    w.uid = w.gid = -1;
    return &w;
}

struct fixture {
    char top[64];       /* mkdtemp: the root is top/root, outside is top/out */
    char root[96];      /* the adapter's root */
    char victim[160];   /* a file outside the root */
    struct tm__adapter *a;
    unsigned char key[TM_KEY_LEN];
};

static const char victim_text[] = "outside the root: never to change\n";

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n;
    assert_non_null(f);
    n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    char out[128], err[256];
    int i;
    assert_non_null(fx);
    snprintf(fx->top, sizeof fx->top, "/tmp/treemig-unit-XXXXXX");
    assert_non_null(mkdtemp(fx->top));
    snprintf(fx->root, sizeof fx->root, "%s/root", fx->top);
    snprintf(out, sizeof out, "%s/out", fx->top);
    snprintf(fx->victim, sizeof fx->victim, "%s/victim", out);
    assert_int_equal(mkdir(fx->root, 0755), 0);
    assert_int_equal(mkdir(out, 0755), 0);
    put_file(fx->victim, victim_text);
    assert_int_equal(tm__local_open(fx->root, &fx->a, err, sizeof err), 0);
    for (i = 0; i < TM_KEY_LEN; i++)
        fx->key[i] = (unsigned char)(0xa0 + i);
    tm__adapter_set_tmp_key(fx->a, fx->key);
    *state = fx;
    return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    tm__adapter_close(fx->a);
    chmod(fx->top, 0755);
    nftw(fx->top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* The path (under the root) of attempt n's temporary for the node at rel. */
static void tmp_path(const struct fixture *fx, const char *rel, int n, char *out,
                     size_t len)
{
    char name[TM_TMP_NAME_MAX];
    assert_int_equal(tm__tmp_name(fx->key, rel, n, name, sizeof name), 0);
    snprintf(out, len, "%s/%s", fx->root, name);
}

static void check_victim(const struct fixture *fx)
{
    char buf[256];
    struct stat st;
    read_file(fx->victim, buf, sizeof buf);
    assert_string_equal(buf, victim_text);
    assert_int_equal(stat(fx->victim, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
}

static void test_taken_names_are_never_opened(void **state)
{
    struct fixture *fx = *state;
    struct tm__aerr ae;
    char p[3][256], real[256], buf[64], t3[256];
    struct tm__wfile *w;
    struct stat st;
    tmp_path(fx, "/f", 0, p[0], sizeof p[0]);
    tmp_path(fx, "/f", 1, p[1], sizeof p[1]);
    tmp_path(fx, "/f", 2, p[2], sizeof p[2]);
    tmp_path(fx, "/f", 3, t3, sizeof t3);
    assert_int_equal(link(fx->victim, p[0]), 0);      /* a hard link outside */
    assert_int_equal(mkfifo(p[1], 0644), 0);          /* would hang an open */
    assert_int_equal(symlink(fx->victim, p[2]), 0);   /* would be followed */
    assert_int_equal(tm__adapter_open_write(fx->a, "/f", wa(0), &w, &ae), 0);
    assert_int_equal(tm__adapter_write(w, "new bytes", 9, &ae), 9);
    assert_int_equal(lstat(t3, &st), 0);              /* the 4th name */
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(tm__adapter_commit(w, 1600000000123456789LL, 0640, TM_NOREPLACE, &ae), 0);
    snprintf(real, sizeof real, "%s/f", fx->root);
    read_file(real, buf, sizeof buf);
    assert_string_equal(buf, "new bytes");
    assert_int_equal(stat(real, &st), 0);
    assert_int_equal(st.st_mtim.tv_sec, 1600000000);
    assert_int_equal(st.st_mtim.tv_nsec, 123456789);
    check_victim(fx);
    assert_int_equal(lstat(p[0], &st), 0);
    assert_int_equal(st.st_nlink, 2);                 /* still the hard link */
    assert_int_equal(lstat(p[1], &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(lstat(p[2], &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(lstat(t3, &st), -1);             /* renamed away */
    /* with every name taken, nothing is written at all */
    assert_int_equal(mkdir(t3, 0755), 0);
    assert_int_not_equal(tm__adapter_open_write(fx->a, "/f", wa(0), &w, &ae), 0);
    read_file(real, buf, sizeof buf);
    assert_string_equal(buf, "new bytes");
    check_victim(fx);
}

static void test_noreplace_keeps_what_is_there(void **state)
{
    struct fixture *fx = *state;
    struct tm__aerr ae;
    char real[256], buf[64];
    struct tm__wfile *w;
    snprintf(real, sizeof real, "%s/g", fx->root);
    put_file(real, "made after discovery");
    assert_int_equal(tm__adapter_open_write(fx->a, "/g", wa(0), &w, &ae), 0);
    assert_int_equal(tm__adapter_write(w, "copy", 4, &ae), 4);
    assert_int_equal(tm__adapter_commit(w, 1600000000000000000LL, 0644, TM_NOREPLACE, &ae),
                     TM_EEXIST);
    read_file(real, buf, sizeof buf);
    assert_string_equal(buf, "made after discovery");
    /* nor does a symlink's */
    assert_int_equal(tm__adapter_symlink(fx->a, "/g", "elsewhere", 1600000000000000000LL,
                                    TM_NOREPLACE, &ae), TM_EEXIST);
    read_file(real, buf, sizeof buf);
    assert_string_equal(buf, "made after discovery");
}

static void test_symlink_temporary(void **state)
{
    struct fixture *fx = *state;
    struct tm__aerr ae;
    char p0[256], real[256], target[64];
    struct stat st;
    ssize_t n;
    tmp_path(fx, "/l", 0, p0, sizeof p0);
    assert_int_equal(mkfifo(p0, 0644), 0);
    assert_int_equal(tm__adapter_symlink(fx->a, "/l", "somewhere", 1600000000000000007LL,
                                    TM_NOREPLACE, &ae), 0);
    snprintf(real, sizeof real, "%s/l", fx->root);
    n = readlink(real, target, sizeof target - 1);
    assert_int_equal(n, 9);
    target[n] = '\0';
    assert_string_equal(target, "somewhere");
    assert_int_equal(lstat(real, &st), 0);
    assert_int_equal(st.st_mtim.tv_nsec, 7);
    assert_int_equal(lstat(p0, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
}

static void test_remove_tmp_only_its_own_type(void **state)
{
    struct fixture *fx = *state;
    struct tm__aerr ae;
    char p0[256], p1[256], p2[256];
    struct stat st;
    tmp_path(fx, "/big", 0, p0, sizeof p0);
    tmp_path(fx, "/big", 1, p1, sizeof p1);
    tmp_path(fx, "/big", 2, p2, sizeof p2);
    put_file(p0, "half a file a crash left");
    assert_int_equal(mkdir(p1, 0755), 0);
    assert_int_equal(symlink(fx->victim, p2), 0);
    assert_int_equal(tm__adapter_remove_tmp(fx->a, "/big", TM_T_FILE, fx->key, &ae), 1);
    assert_int_equal(lstat(p0, &st), -1);
    assert_int_equal(lstat(p1, &st), 0);              /* a folder: kept */
    assert_int_equal(lstat(p2, &st), 0);              /* a symlink: kept */
    check_victim(fx);
    /* another key's names are not this run's */
    put_file(p0, "again");
    fx->key[0] ^= 1;
    assert_int_equal(tm__adapter_remove_tmp(fx->a, "/big", TM_T_FILE, fx->key, &ae), 0);
    fx->key[0] ^= 1;
    assert_int_equal(lstat(p0, &st), 0);
}

static void test_set_attr_never_through_a_symlink(void **state)
{
    struct fixture *fx = *state;
    struct tm__aerr ae;
    char d[256], out[128];
    struct stat st;
    snprintf(out, sizeof out, "%s/out", fx->top);
    snprintf(d, sizeof d, "%s/d", fx->root);
    assert_int_equal(symlink(out, d), 0);     /* a folder swapped for a symlink */
    assert_int_equal(tm__adapter_set_attr(fx->a, "/d", 1600000000000000000LL, 0700, &ae),
                     TM_ENOTDIR);
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_int_equal(unlink(d), 0);
    /* a real folder, even of mode 0, gets both */
    assert_int_equal(mkdir(d, 0), 0);
    assert_int_equal(tm__adapter_set_attr(fx->a, "/d", 1600000000000000042LL, 0751, &ae), 0);
    assert_int_equal(stat(d, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0751);
    assert_int_equal(st.st_mtim.tv_nsec, 42);
    /* a time that did not fit is never set as another */
    assert_int_equal(tm__adapter_set_attr(fx->a, "/d", TM_MTIME_MAX, 0751, &ae), TM_ETIMERANGE);
}

/* What set_leaf_attr expects of the node at path as lstat sees it now. */
static struct tm__leaf_attr leaf_now(const char *path, int type, uint32_t mode)
{
    struct tm__leaf_attr w;
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    memset(&w, 0, sizeof w);
    w.type = type;
    w.size = st.st_size;
    w.mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    w.mode = mode;
    return w;
}

static void test_set_leaf_attr_only_the_file_compared(void **state)
{
    struct fixture *fx = *state;
    struct tm__leaf_attr w;
    struct tm__aerr ae;
    char f[256], l[256], h[256];
    struct stat st;
    snprintf(f, sizeof f, "%s/f", fx->root);
    snprintf(l, sizeof l, "%s/l", fx->root);
    snprintf(h, sizeof h, "%s/h", fx->root);
    /* the file compared: its mode changes, its content and mtime stay */
    put_file(f, "content");
    assert_int_equal(chmod(f, 0600), 0);
    w = leaf_now(f, TM_T_FILE, 0644);
    assert_int_equal(tm__adapter_set_leaf_attr(fx->a, "/f", &w, &ae), 0);
    assert_int_equal(lstat(f, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(st.st_size, 7);
    assert_int_equal((int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec,
                     w.mtime);
    /* another mtime (1 ns) or size than compared: TM_ECHANGED, untouched */
    w.mode = 0640;
    w.mtime++;
    assert_int_equal(tm__adapter_set_leaf_attr(fx->a, "/f", &w, &ae), TM_ECHANGED);
    w.mtime--;
    w.size++;
    assert_int_equal(tm__adapter_set_leaf_attr(fx->a, "/f", &w, &ae), TM_ECHANGED);
    assert_int_equal(lstat(f, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    /* a symlink to a file outside, at a file's name: never followed, even
     * when the caller expects what the target is */
    assert_int_equal(chmod(fx->victim, 0644), 0);
    assert_int_equal(symlink(fx->victim, l), 0);
    w = leaf_now(fx->victim, TM_T_FILE, 0600);
    assert_int_equal(tm__adapter_set_leaf_attr(fx->a, "/l", &w, &ae), TM_ECHANGED);
    assert_int_equal(stat(fx->victim, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    /* as a symlink it is itself: no mode to set, the target untouched */
    w = leaf_now(l, TM_T_SYMLINK, 0600);
    assert_int_equal(tm__adapter_set_leaf_attr(fx->a, "/l", &w, &ae), 0);
    assert_int_equal(stat(fx->victim, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    /* a hard link to a file outside: another link, not changed in place */
    assert_int_equal(link(fx->victim, h), 0);
    assert_int_equal(lstat(h, &st), 0);
    w = leaf_now(h, TM_T_FILE, (st.st_mode & 07777) ^ 0044);
    assert_int_equal(tm__adapter_set_leaf_attr(fx->a, "/h", &w, &ae), TM_ECHANGED);
    assert_non_null(strstr(ae.msg, "links"));
    {
        struct stat now;
        assert_int_equal(stat(fx->victim, &now), 0);
        assert_int_equal(now.st_mode, st.st_mode);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_taken_names_are_never_opened, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_noreplace_keeps_what_is_there, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_symlink_temporary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_tmp_only_its_own_type, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_set_attr_never_through_a_symlink, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_set_leaf_attr_only_the_file_compared,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
