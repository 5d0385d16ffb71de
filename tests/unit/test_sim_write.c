/* Unit tests of the sim adapter's write side (src/adapter/sim.c,
 * sim_overlay.c): reading generated contents, writing generated and
 * literal bytes, the merged listing, the refusals, symlinks and folder
 * attributes, the overlay file's replay (also of a torn tail), badname=
 * and writers on many threads at once (run it under TSan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The detail of the last adapter call (each thread its own). */
static _Thread_local struct tm__aerr ae_;

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter/adapter.h"
#include "adapter/sim.h"
#include "treemig.h"

/* What open_write needs of a file of size bytes (no attributes known). */
static const struct tm__wattr *wa(int64_t size)
{
    static _Thread_local struct tm__wattr w;
    memset(&w, 0, sizeof w);
    w.size = size;
    w.uid = w.gid = -1;
    return &w;
}

#define SRC "seed=5,depth=3,folders=3,files=4,size=20000,empty=0"
#define DST SRC ",world=dst,keep=0.7,csize=0.2,cmtime=0.1,ctype=0.05"

static struct tm__adapter *open_sim(const char *params)
{
    struct tm__adapter *a = NULL;
    char err[256];
    int rc = tm__sim_open(params, &a, err, sizeof err);
    if (rc)
        fail_msg("tm__sim_open(%s): %s", params, err);
    return a;
}

/* ------------------------------------------------------------ listings */

struct ent {
    char name[256];
    int type;
    int64_t size, mtime;
    uint32_t mode;
};

struct ents {
    struct ent v[4096];
    size_t n;
};

static int collect(void *ctx, const struct tm__entry *e)
{
    struct ents *l = ctx;
    struct ent *x;
    assert_true(l->n < 4096);
    x = &l->v[l->n++];
    assert_true(e->name_len < sizeof x->name);
    memcpy(x->name, e->name, e->name_len);
    x->name[e->name_len] = 0;
    x->type = e->type;
    x->size = e->size;
    x->mtime = e->mtime;
    x->mode = e->mode;
    return 0;
}

static const struct ent *find(const struct ents *l, const char *name)
{
    size_t i, hits = 0;
    const struct ent *r = NULL;
    for (i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0) {
            r = &l->v[i];
            hits++;
        }
    assert_true(hits <= 1); /* never listed twice */
    return r;
}

static void list(struct tm__adapter *a, const char *path, struct ents *l)
{
    struct tm__aerr ae;
    l->n = 0;
    assert_int_equal(tm__adapter_list(a, path, collect, l, &ae), 0);
}

/* ------------------------------------------------------------ files */

/* Reads the whole file at path into a malloc'd buffer. */
static unsigned char *slurp(struct tm__adapter *a, const char *path,
                            int64_t *size)
{
    struct tm__rfile *f;
    struct tm__entry st;
    unsigned char *b;
    int64_t n = 0, got;
    assert_int_equal(tm__adapter_open_read(a, path, &f, &st, &ae_), 0);
    b = malloc((size_t)st.size + 1);
    assert_non_null(b);
    while ((got = tm__adapter_read(f, b + n, 3000, &ae_)) > 0)
        n += got;
    assert_int_equal(got, 0);
    assert_int_equal(n, st.size);
    tm__adapter_close_read(f);
    *size = n;
    return b;
}

/* Writes data (in odd-sized pieces) to path and commits it. */
static int put_file(struct tm__adapter *a, const char *path,
                    const unsigned char *data, int64_t n, int64_t mtime,
                    unsigned flags)
{
    struct tm__wfile *f;
    int64_t off = 0;
    int rc = tm__adapter_open_write(a, path, wa(0), &f, &ae_);
    if (rc)
        return rc;
    while (off < n) {
        int64_t k = n - off < 777 ? n - off : 777;
        assert_int_equal(tm__adapter_write(f, data + off, (size_t)k, &ae_), k);
        off += k;
    }
    return tm__adapter_commit(f, mtime, 0640, flags, &ae_);
}

/* The first file of the source root with its size. */
static void first_file(struct tm__adapter *src, char *path, int64_t *size)
{
    struct ents l;
    size_t i;
    list(src, "/", &l);
    for (i = 0; i < l.n; i++)
        if (l.v[i].type == TM_T_FILE && l.v[i].size > 100) {
            snprintf(path, 300, "/%s", l.v[i].name);
            *size = l.v[i].size;
            return;
        }
    fail_msg("no file in the source root");
}

static void test_generated_content(void **state)
{
    struct tm__adapter *src = open_sim(SRC);
    struct tm__adapter *src2 = open_sim(SRC);
    char path[300];
    int64_t size, n1, n2;
    unsigned char *a, *b, head[8], expect[64];
    uint64_t id = 0;
    (void)state;
    first_file(src, path, &size);
    a = slurp(src, path, &n1);
    b = slurp(src2, path, &n2); /* another adapter: the same bytes */
    assert_int_equal(n1, size);
    assert_int_equal(n2, size);
    assert_memory_equal(a, b, (size_t)size);
    /* bytes 0..7 are the content id; any offset gives the same stream */
    memcpy(head, a, 8);
    for (int i = 7; i >= 0; i--)
        id = (id << 8) | head[i];
    tm__sim_content(id, 37, expect, sizeof expect);
    assert_memory_equal(a + 37, expect, sizeof expect);
    free(a);
    free(b);
    tm__adapter_close(src);
    tm__adapter_close(src2);
}

static void test_copy_between_sims(void **state)
{
    struct tm__adapter *src = open_sim(SRC), *dst = open_sim(DST);
    char path[300];
    int64_t size, n, n2;
    unsigned char *a, *b;
    struct tm__entry st;
    struct ents l;
    const struct ent *x;
    (void)state;
    first_file(src, path, &size);
    a = slurp(src, path, &n);
    assert_int_equal(put_file(dst, path, a, n, 1234567890123LL, 0), 0);
    assert_int_equal(tm__adapter_stat(dst, path, &st, &ae_), 0);
    assert_int_equal(st.type, TM_T_FILE);
    assert_int_equal(st.size, size);
    assert_int_equal(st.mtime, 1234567890123LL);
    assert_int_equal(st.mode, 0640);
    b = slurp(dst, path, &n2);
    assert_int_equal(n2, n);
    assert_memory_equal(a, b, (size_t)n);
    list(dst, "/", &l);
    x = find(&l, path + 1);
    assert_non_null(x);
    assert_int_equal(x->size, size);
    assert_int_equal(x->mtime, 1234567890123LL);
    free(a);
    free(b);
    tm__adapter_close(src);
    tm__adapter_close(dst);
}

/* copy_from between sims moves (id, size), not bytes; the result reads
 * back as the same stream. */
static void test_copy_from(void **state)
{
    struct tm__adapter *src = open_sim(SRC), *dst = open_sim(DST);
    struct tm__rfile *in;
    struct tm__wfile *out;
    struct tm__entry st;
    char path[300];
    int64_t size, n1, n2;
    unsigned char *a, *b;
    (void)state;
    first_file(src, path, &size);
    assert_int_equal(tm__adapter_open_read(src, path, &in, &st, &ae_), 0);
    assert_int_equal(tm__adapter_open_write(dst, "/copied", wa(0), &out, &ae_), 0);
    assert_int_equal(tm__adapter_copy_from(out, in, size, &ae_), size);
    assert_int_equal(tm__adapter_commit(out, 5, 0644, 0, &ae_), 0);
    tm__adapter_close_read(in);
    a = slurp(src, path, &n1);
    b = slurp(dst, "/copied", &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, (size_t)n1);
    free(a);
    free(b);
    tm__adapter_close(src);
    tm__adapter_close(dst);
}

static void test_literal_bytes(void **state)
{
    struct tm__adapter *src = open_sim(SRC), *dst = open_sim(DST);
    unsigned char small[5] = { 1, 2, 3, 4, 5 }, *big, *gen, *back;
    char path[300];
    int64_t size, n, i;
    (void)state;
    /* fewer than 8 bytes */
    assert_int_equal(put_file(dst, "/small", small, 5, 1, 0), 0);
    back = slurp(dst, "/small", &n);
    assert_int_equal(n, 5);
    assert_memory_equal(back, small, 5);
    free(back);
    /* an empty file */
    assert_int_equal(put_file(dst, "/empty", small, 0, 1, 0), 0);
    back = slurp(dst, "/empty", &n);
    assert_int_equal(n, 0);
    free(back);
    /* arbitrary bytes */
    big = malloc(100000);
    for (i = 0; i < 100000; i++)
        big[i] = (unsigned char)(i * 7 + i / 256);
    assert_int_equal(put_file(dst, "/big", big, 100000, 1, 0), 0);
    back = slurp(dst, "/big", &n);
    assert_int_equal(n, 100000);
    assert_memory_equal(back, big, 100000);
    free(back);
    /* a generated stream that diverges after 5000 bytes */
    first_file(src, path, &size);
    gen = slurp(src, path, &n);
    assert_true(n > 5001);
    gen[5000] ^= 0xff;
    assert_int_equal(put_file(dst, "/diverged", gen, n, 1, 0), 0);
    back = slurp(dst, "/diverged", &size);
    assert_int_equal(size, n);
    assert_memory_equal(back, gen, (size_t)n);
    free(back);
    free(gen);
    free(big);
    tm__adapter_close(src);
    tm__adapter_close(dst);
}

static void test_refusals(void **state)
{
    struct tm__adapter *dst = open_sim(DST);
    struct tm__wfile *f;
    struct ents l;
    unsigned char b[10] = { 0 };
    char dir[300] = "", file[300] = "";
    size_t i;
    (void)state;
    list(dst, "/", &l);
    for (i = 0; i < l.n; i++) {
        if (l.v[i].type == TM_T_FOLDER && !dir[0])
            snprintf(dir, sizeof dir, "/%s", l.v[i].name);
        if (l.v[i].type == TM_T_FILE && !file[0])
            snprintf(file, sizeof file, "/%s", l.v[i].name);
    }
    assert_true(dir[0] && file[0]);
    assert_int_equal(put_file(dst, dir, b, 10, 1, 0), TM_EISDIR);
    assert_int_equal(put_file(dst, file, b, 10, 1, TM_NOREPLACE), TM_EEXIST);
    assert_int_equal(put_file(dst, "/nope/x", b, 10, 1, 0), TM_ENOENT);
    assert_int_equal(tm__adapter_mkdir(dst, file, &ae_), TM_EEXIST);
    assert_int_equal(tm__adapter_mkdir(dst, dir, &ae_), 0); /* there already */
    assert_int_equal(tm__adapter_mkdir(dst, "/a/b", &ae_), TM_ENOENT);
    /* an aborted write leaves nothing */
    assert_int_equal(tm__adapter_open_write(dst, "/aborted", wa(0), &f, &ae_), 0);
    assert_int_equal(tm__adapter_write(f, b, 10, &ae_), 10);
    tm__adapter_abort(f);
    list(dst, "/", &l);
    assert_null(find(&l, "aborted"));
    tm__adapter_close(dst);
}

/* ------------------------------------------------------------ listings */

static void test_merged_listing(void **state)
{
    struct tm__adapter *dst = open_sim(DST);
    struct ents before, after, sub;
    const struct ent *x;
    unsigned char b[100];
    char path[300] = "", dir[256] = "", sub_path[300];
    size_t i;
    (void)state;
    memset(b, 'x', sizeof b);
    list(dst, "/", &before);
    for (i = 0; i < before.n; i++) {
        if (before.v[i].type == TM_T_FILE && !path[0])
            snprintf(path, sizeof path, "/%s", before.v[i].name);
        if (before.v[i].type == TM_T_FOLDER && !dir[0])
            snprintf(dir, sizeof dir, "%s", before.v[i].name);
    }
    assert_true(path[0] && dir[0]);
    /* replace a generated file, add a file and a folder with a file, and
     * write into a generated folder (which must not be listed twice) */
    assert_int_equal(put_file(dst, path, b, 100, 42, 0), 0);
    assert_int_equal(put_file(dst, "/new", b, 10, 43, 0), 0);
    assert_int_equal(tm__adapter_mkdir(dst, "/newdir", &ae_), 0);
    assert_int_equal(put_file(dst, "/newdir/f", b, 3, 44, 0), 0);
    snprintf(sub_path, sizeof sub_path, "/%s/written", dir);
    assert_int_equal(put_file(dst, sub_path, b, 7, 45, 0), 0);
    list(dst, "/", &after);
    assert_int_equal(after.n, before.n + 2);
    x = find(&after, path + 1);
    assert_non_null(x);
    assert_int_equal(x->size, 100);
    assert_int_equal(x->mtime, 42);
    x = find(&after, "newdir");
    assert_non_null(x);
    assert_int_equal(x->type, TM_T_FOLDER);
    x = find(&after, dir);
    assert_non_null(x);
    assert_int_equal(x->type, TM_T_FOLDER);
    list(dst, "/newdir", &sub);
    assert_int_equal(sub.n, 1);
    assert_string_equal(sub.v[0].name, "f");
    snprintf(path, sizeof path, "/%s", dir);
    list(dst, path, &sub);
    assert_non_null(find(&sub, "written"));
    tm__adapter_close(dst);
}

static void test_symlink_and_attrs(void **state)
{
    struct tm__adapter *dst = open_sim(DST);
    struct tm__buf t = TM__BUF_INIT;
    struct tm__entry st;
    struct ents l;
    const struct ent *x;
    char dir[300] = "";
    size_t i;
    (void)state;
    assert_int_equal(tm__adapter_symlink(dst, "/link", "../target dir", 77, 0, &ae_), 0);
    assert_int_equal(tm__adapter_readlink(dst, "/link", &t, &ae_), 0);
    assert_string_equal(t.buf, "../target dir");
    assert_int_equal(tm__adapter_stat(dst, "/link", &st, &ae_), 0);
    assert_int_equal(st.type, TM_T_SYMLINK);
    assert_int_equal(st.size, 13);
    assert_int_equal(st.mtime, 77);
    assert_int_equal(tm__adapter_symlink(dst, "/link", "x", 1, TM_NOREPLACE, &ae_), TM_EEXIST);
    list(dst, "/", &l);
    for (i = 0; i < l.n && !dir[0]; i++)
        if (l.v[i].type == TM_T_FOLDER)
            snprintf(dir, sizeof dir, "/%s", l.v[i].name);
    assert_int_equal(tm__adapter_set_attr(dst, dir, 99, 0711, &ae_), 0);
    assert_int_equal(tm__adapter_stat(dst, dir, &st, &ae_), 0);
    assert_int_equal(st.mode, 0711);
    assert_int_equal(st.mtime, 99);
    assert_int_equal(tm__adapter_set_attr(dst, dir, TM_MTIME_KEEP, 0700, &ae_), 0);
    list(dst, "/", &l);
    x = find(&l, dir + 1);
    assert_non_null(x);
    assert_int_equal(x->mode, 0700);
    assert_int_equal(x->mtime, 99);
    tm__buf_release(&t);
    tm__adapter_close(dst);
}

/* ------------------------------------------------------------ the file */

static void tmpname(char *out, size_t len, const char *tag)
{
    snprintf(out, len, "/tmp/tm-ovl-%d-%s", (int)getpid(), tag);
    unlink(out);
}

static void test_overlay_file(void **state)
{
    char file[200], params[400], err[256];
    struct tm__adapter *dst, *bad = NULL;
    unsigned char b[50];
    struct ents l1, l2;
    struct stat st;
    int fd;
    (void)state;
    memset(b, 'q', sizeof b);
    tmpname(file, sizeof file, "replay");
    snprintf(params, sizeof params, DST ",overlay=%s", file);
    dst = open_sim(params);
    assert_int_equal(tm__adapter_mkdir(dst, "/w", &ae_), 0);
    assert_int_equal(put_file(dst, "/w/one", b, 50, 5, 0), 0);
    assert_int_equal(put_file(dst, "/w/two", b, 20, 6, 0), 0);
    assert_int_equal(tm__adapter_sync(dst, &ae_), 0);
    list(dst, "/w", &l1);
    tm__adapter_close(dst);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* replayed by a new process's adapter */
    dst = open_sim(params);
    list(dst, "/w", &l2);
    assert_int_equal(l2.n, 2);
    assert_int_equal(l1.n, 2);
    assert_non_null(find(&l2, "one"));
    assert_int_equal(find(&l2, "two")->size, 20);
    tm__adapter_close(dst);

    /* a torn record at the end (the process died inside write()) is cut */
    fd = open(file, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\x50\0\0\0garbage", 11), 11);
    close(fd);
    dst = open_sim(params);
    list(dst, "/w", &l2);
    assert_int_equal(l2.n, 2);
    assert_int_equal(put_file(dst, "/w/three", b, 1, 7, 0), 0);
    tm__adapter_close(dst);
    dst = open_sim(params);
    list(dst, "/w", &l2);
    assert_int_equal(l2.n, 3); /* written after the cut: kept */
    tm__adapter_close(dst);

    /* a file that is not an overlay is refused, and left alone */
    fd = open(file, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "not an overlay file", 19), 19);
    close(fd);
    assert_int_equal(tm__sim_open(params, &bad, err, sizeof err), TM_ECORRUPT);
    assert_null(bad);
    assert_non_null(strstr(err, file));
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_size, 19);
    unlink(file);

    /* overlay= needs an absolute path */
    assert_int_equal(tm__sim_open(DST ",overlay=rel/x", &bad, err, sizeof err),
                     TM_EBADSPEC);
    assert_non_null(strstr(err, "overlay"));
}

static int count_only(void *ctx, const struct tm__entry *e)
{
    (void)e;
    (*(int *)ctx)++;
    return 0;
}

static void test_badname(void **state)
{
    struct tm__aerr ae;
    struct tm__adapter *a;
    int i, n = 0, failed = 0;
    (void)state;
    /* every listing at or below /d0 returns an invalid name */
    a = open_sim(SRC ",badname=/d0");
    assert_int_equal(tm__adapter_list(a, "/", count_only, &n, &ae), 0);
    for (i = 0; i < 3; i++) {
        n = 0;
        if (tm__adapter_list(a, "/d0", count_only, &n, &ae) == TM_EBADNAME)
            failed++;
        assert_int_equal(n, 0); /* nothing reaches the engine */
    }
    assert_int_equal(failed, 3);
    assert_non_null(strstr(ae.msg, "invalid name"));
    tm__adapter_close(a);
}

/* ------------------------------------------------------------ threads */

struct job {
    struct tm__adapter *dst;
    int id;
};

static void *writer(void *arg)
{
    struct job *j = arg;
    unsigned char b[300];
    char path[64];
    struct ents *l = malloc(sizeof *l);
    memset(b, j->id, sizeof b);
    snprintf(path, sizeof path, "/t%d", j->id);
    assert_int_equal(tm__adapter_mkdir(j->dst, path, &ae_), 0);
    for (int i = 0; i < 200; i++) {
        snprintf(path, sizeof path, "/t%d/f%d", j->id, i);
        assert_int_equal(put_file(j->dst, path, b, 1 + i, i, 0), 0);
        if (i % 50 == 0)
            list(j->dst, "/", l);
    }
    snprintf(path, sizeof path, "/t%d", j->id);
    list(j->dst, path, l);
    assert_int_equal(l->n, 200);
    free(l);
    return NULL;
}

static void test_threads(void **state)
{
    char file[200], params[400];
    struct tm__adapter *dst;
    pthread_t t[4];
    struct job j[4];
    struct ents *l = malloc(sizeof *l);
    (void)state;
    tmpname(file, sizeof file, "threads");
    snprintf(params, sizeof params, DST ",overlay=%s", file);
    dst = open_sim(params);
    for (int i = 0; i < 4; i++) {
        j[i].dst = dst;
        j[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, writer, &j[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    tm__adapter_close(dst);
    dst = open_sim(params);
    list(dst, "/t3", l);
    assert_int_equal(l->n, 200);
    tm__adapter_close(dst);
    unlink(file);
    free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_content),
        cmocka_unit_test(test_copy_between_sims),
        cmocka_unit_test(test_copy_from),
        cmocka_unit_test(test_literal_bytes),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_merged_listing),
        cmocka_unit_test(test_symlink_and_attrs),
        cmocka_unit_test(test_overlay_file),
        cmocka_unit_test(test_badname),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
