/* Unit tests of the fault layer (src/adapter/fault.c): the rule parser, the
 * per-operation counting (also from many threads), once and sticky faults,
 * and the unwrapping of files for copy_from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "adapter/adapter.h"
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

/* ---- a tiny in-memory adapter that records what reached it ---- */

struct fake {
    struct tm__adapter base; /* must be first */
    int closed;              /* close was called (the adapter is freed) */
    int aborts, commits;     /* wfile endings seen */
    int copy_from_ok;        /* copy_from got the fake's own files */
};
struct fake_file {
    struct tm__rfile r; /* read side */
    struct tm__wfile w; /* write side */
};

/* A listing of one child on one page. */
static int fk_list_open(struct tm__adapter *a, const char *path, const void *pos,
                        size_t pos_len, struct tm__lister **out, struct tm__aerr *e)
{
    (void)path; (void)pos; (void)pos_len; (void)e;
    *out = calloc(1, sizeof **out);
    if (!*out)
        return TM_ENOMEM;
    (*out)->a = a;
    return 0;
}
static int fk_list_next(struct tm__lister *l, tm__list_cb cb, void *ctx, int *more,
                        struct tm__aerr *e)
{
    struct tm__entry en = { "x", 1, TM_T_FILE, 1, 0, 0644, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    (void)l; (void)e;
    *more = 0;
    return cb(ctx, &en);
}
static int fk_list_pos(struct tm__lister *l, struct tm__buf *out)
{
    (void)l; (void)out;
    return 0;
}
static void fk_list_close(struct tm__lister *l) { free(l); }
static int fk_stat(struct tm__adapter *a, const char *path, struct tm__entry *out,
                   struct tm__aerr *e)
{
    (void)a; (void)path; (void)e;
    memset(out, 0, sizeof *out);
    return 0;
}
static void fk_close(struct tm__adapter *a) { free(a); }
static int fk_open_read(struct tm__adapter *a, const char *path,
                        struct tm__rfile **out, struct tm__entry *st,
                        struct tm__aerr *e)
{
    struct fake_file *f = calloc(1, sizeof *f);
    (void)path; (void)e;
    if (!f)
        return TM_ENOMEM;
    f->r.a = a;
    memset(st, 0, sizeof *st);
    *out = &f->r;
    return 0;
}
static int64_t fk_read(struct tm__rfile *f, void *buf, size_t len,
                       struct tm__aerr *e)
{
    (void)f; (void)buf; (void)len; (void)e;
    return 0;
}
static int fk_fstat(struct tm__rfile *f, struct tm__entry *st, struct tm__aerr *e)
{
    (void)f; (void)e;
    memset(st, 0, sizeof *st);
    return 0;
}
static void fk_close_read(struct tm__rfile *f) { free(f); }
static int fk_open_write(struct tm__adapter *a, const char *path,
                         const struct tm__wattr *w, struct tm__wfile **out,
                         struct tm__aerr *e)
{
    struct fake_file *f = calloc(1, sizeof *f);
    (void)path; (void)w; (void)e;
    if (!f)
        return TM_ENOMEM;
    f->w.a = a;
    *out = &f->w;
    return 0;
}
static int64_t fk_write(struct tm__wfile *f, const void *buf, size_t len,
                        struct tm__aerr *e)
{
    (void)f; (void)buf; (void)e;
    return (int64_t)len;
}
static int64_t fk_copy_from(struct tm__wfile *w, struct tm__rfile *r, int64_t size,
                            struct tm__aerr *e)
{
    struct fake *fk = (struct fake *)w->a;
    (void)e;
    /* the fake must see its own files, never a fault layer's */
    fk->copy_from_ok = r->a->read == fk_read;
    return size;
}
static void wfree(struct tm__wfile *w)
{
    free((char *)w - offsetof(struct fake_file, w));
}
static int fk_commit(struct tm__wfile *w, int64_t mtime, uint32_t mode, unsigned fl,
                     struct tm__aerr *e)
{
    (void)mtime; (void)mode; (void)fl; (void)e;
    ((struct fake *)w->a)->commits++;
    wfree(w);
    return 0;
}
static void fk_abort(struct tm__wfile *w)
{
    ((struct fake *)w->a)->aborts++;
    wfree(w);
}

static struct fake *fake_new(void)
{
    struct fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->base.version = 2;
    f->base.name = "fake";
    f->base.caps = TM_CAP_MODES;
    f->base.mtime_precision = 1000;
    f->base.list_open = fk_list_open;
    f->base.list_next = fk_list_next;
    f->base.list_pos = fk_list_pos;
    f->base.list_close = fk_list_close;
    f->base.stat = fk_stat;
    f->base.close = fk_close;
    f->base.open_read = fk_open_read;
    f->base.read = fk_read;
    f->base.fstat = fk_fstat;
    f->base.close_read = fk_close_read;
    f->base.open_write = fk_open_write;
    f->base.write = fk_write;
    f->base.copy_from = fk_copy_from;
    f->base.commit = fk_commit;
    f->base.abort = fk_abort;
    return f;
}

static struct tm__adapter *wrap(struct fake *in, const char *rules_spec)
{
    struct tm__fault_rule rules[16];
    struct tm__adapter *out;
    const char *inner;
    char err[256];
    int n;
    assert_int_equal(tm__fault_parse(rules_spec, rules, 16, &n, &inner, err,
                                     sizeof err), 0);
    assert_int_equal(tm__fault_wrap(&in->base, rules, n, 0, &out), 0);
    return out;
}

static int count_cb(void *ctx, const struct tm__entry *e)
{
    (void)e;
    (*(int *)ctx)++;
    return 0;
}

/* ---- tests ---- */

static void test_parse(void **state)
{
    struct tm__fault_rule r[4];
    const char *inner = NULL;
    char err[256];
    int n;
    (void)state;
    assert_int_equal(tm__fault_parse("fault:list@3=eio:/src", r, 4, &n, &inner,
                                     err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(inner, "/src");
    assert_int_equal(r[0].op, TM_FOP_LIST);
    assert_int_equal(r[0].nth, 3);
    assert_int_equal(r[0].err, TM_EIO);
    assert_int_equal(r[0].sticky, 0);

    assert_int_equal(tm__fault_parse("fault:write@12=ENOSPC+,read@1,set_attr@2+,"
                                     "no_copy_from:sim:seed=1", r, 4, &n, &inner,
                                     err, sizeof err), 0);
    assert_int_equal(n, 4);
    assert_string_equal(inner, "sim:seed=1");
    assert_int_equal(r[0].op, TM_FOP_WRITE);
    assert_int_equal(r[0].nth, 12);
    assert_int_equal(r[0].err, TM_ENOSPC);
    assert_int_equal(r[0].sticky, 1);
    assert_int_equal(r[1].op, TM_FOP_READ);
    assert_int_equal(r[1].err, TM_EIO); /* the default */
    assert_int_equal(r[2].op, TM_FOP_SET_ATTR);
    assert_int_equal(r[2].sticky, 1);
    assert_int_equal(r[3].op, TM_FOP_NO_COPY_FROM);

    /* no rules: counts only */
    assert_int_equal(tm__fault_parse("fault::/x", r, 4, &n, &inner, err,
                                     sizeof err), 0);
    assert_int_equal(n, 0);
    assert_string_equal(inner, "/x");
    /* every error name of the table, e.g. the engine's own */
    assert_int_equal(tm__fault_parse("fault:sync@1=ethrottled:/x", r, 4, &n,
                                     &inner, err, sizeof err), 0);
    assert_int_equal(r[0].err, TM_ETHROTTLED);
}

static void test_parse_refuses(void **state)
{
    static const char *const bad[] = {
        "fault:list@3",        /* no inner spec */
        "fault:list@3:",       /* empty inner spec */
        "fault:lsit@3:/x",     /* unknown operation */
        "fault:list@0:/x",     /* N from 1 */
        "fault:list@:/x",      /* no N */
        "fault:list:/x",       /* no @ */
        "fault:list@3=eoops:/x", /* unknown error */
        "fault:list@3x:/x",    /* trailing junk */
        "fault:list@3++:/x",
        "fault:list@3,:/x",    /* empty rule */
        "fault:list@99999999999999:/x",
        "faul:list@3:/x",
        "fault:a@1,b@1,c@1,d@1,e@1:/x", /* more than max (4) */
    };
    struct tm__fault_rule r[4];
    const char *inner;
    char err[256];
    size_t i;
    int n;
    (void)state;
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        if (tm__fault_parse(bad[i], r, 4, &n, &inner, err, sizeof err) !=
            TM_EBADSPEC)
            fail_msg("accepted '%s'", bad[i]);
        if (!strstr(err, "fault spec"))
            fail_msg("no message for '%s': '%s'", bad[i], err);
    }
}

static void test_open_through_adapter_open(void **state)
{
    struct tm__adapter *a = NULL;
    char err[256] = "";
    (void)state;
    assert_int_equal(tm__adapter_open("fault:stat@1=eacces:/", NULL, &a, err, sizeof err),
                     0);
    assert_true(tm__fault_is(a));
    assert_string_equal(a->name, "local"); /* the inner name */
    {
        struct tm__entry e;
        struct tm__aerr ae;
        assert_int_equal(tm__adapter_stat(a, "/", &e, &ae), TM_EACCES);
        assert_non_null(strstr(ae.msg, "fault injected into stat call 1"));
        assert_int_equal(ae.code, TM_EACCES);
        assert_int_equal(ae.cls, TM_ERR_NODE);
        assert_int_equal(tm__adapter_stat(a, "/", &e, &ae), 0); /* once */
    }
    assert_int_equal(tm__fault_calls(a, TM_FOP_STAT), 2);
    assert_int_equal(tm__fault_fired(a), 1);
    tm__adapter_close(a);
    /* a bad rule and a bad inner spec are refused with the reason */
    assert_int_equal(tm__adapter_open("fault:nope@1:/", NULL, &a, err, sizeof err),
                     TM_EBADSPEC);
    assert_null(a);
    assert_non_null(strstr(err, "unknown operation"));
    assert_int_not_equal(tm__adapter_open("fault::/nonexistent/folder/x", NULL, &a, err,
                                   sizeof err), 0);
    assert_null(a);
}

static void test_once_and_sticky(void **state)
{
    struct fake *fk = fake_new();
    struct tm__adapter *a = wrap(fk, "fault:list@2=eagain,stat@3+:x");
    struct tm__aerr ae;
    struct tm__entry e;
    int kids = 0, i;
    (void)state;
    assert_int_equal(tm__adapter_list(a, "/", count_cb, &kids, &ae), 0);
    assert_int_equal(tm__adapter_list(a, "/", count_cb, &kids, &ae), TM_EAGAIN);
    assert_int_equal(tm__adapter_list(a, "/", count_cb, &kids, &ae), 0);
    assert_int_equal(kids, 2); /* the failed call never reached the inner one */
    for (i = 1; i <= 6; i++)
        assert_int_equal(tm__adapter_stat(a, "/", &e, &ae), i < 3 ? 0 : TM_EIO);
    assert_int_equal(tm__fault_calls(a, TM_FOP_LIST), 3);
    assert_int_equal(tm__fault_calls(a, TM_FOP_STAT), 6);
    assert_int_equal(tm__fault_calls(a, TM_FOP_WRITE), 0);
    assert_int_equal(tm__fault_fired(a), 5);
    assert_int_equal(a->caps, TM_CAP_MODES);
    assert_int_equal(a->mtime_precision, 1000);
    assert_null(a->mkdir); /* absent below: absent above */
    tm__adapter_close(a);
}

static void test_files_and_copy_from(void **state)
{
    struct fake *fs = fake_new(), *fd = fake_new();
    struct tm__adapter *sa = wrap(fs, "fault:fstat@1:x");
    struct tm__adapter *da = wrap(fd, "fault:commit@2=enospc:x");
    struct tm__rfile *in;
    struct tm__wfile *out;
    struct tm__entry st;
    struct tm__aerr ae;
    char buf[4];
    (void)state;
    assert_string_equal(sa->name, da->name);
    assert_true(tm__adapter_can_copy_from(da, sa));
    assert_int_equal(tm__adapter_open_read(sa, "/f", &in, &st, &ae), 0);
    assert_ptr_equal(in->a, sa);
    assert_true(in->native != in); /* the fake's own file below the layer */
    assert_int_equal(tm__adapter_read(in, buf, sizeof buf, &ae), 0);
    assert_int_equal(tm__adapter_fstat(in, &st, &ae), TM_EIO);
    assert_non_null(strstr(ae.msg, "fault injected into fstat call 1"));
    assert_int_equal(tm__adapter_fstat(in, &st, &ae), 0);

    /* both wrapped: the inner copy_from gets the inner files */
    assert_int_equal(tm__adapter_open_write(da, "/f", wa(7), &out, &ae), 0);
    assert_int_equal(tm__adapter_copy_from(out, in, 7, &ae), 7);
    assert_true(fd->copy_from_ok);
    assert_int_equal(tm__adapter_commit(out, 0, 0644, 0, &ae), 0);
    assert_int_equal(fd->commits, 1);
    /* a failed commit frees the file and leaves no temporary (abort) */
    assert_int_equal(tm__adapter_open_write(da, "/g", wa(0), &out, &ae), 0);
    assert_int_equal(tm__adapter_commit(out, 0, 0644, 0, &ae), TM_ENOSPC);
    assert_int_equal(ae.cls, TM_ERR_FATAL);
    assert_int_equal(fd->aborts, 1);
    assert_int_equal(fd->commits, 1);

    /* a plain destination, a wrapped source: the wrapper unwraps the file */
    fs->copy_from_ok = 0;
    assert_int_equal(tm__adapter_open_write(&fs->base, "/h", wa(3), &out, &ae), 0);
    assert_int_equal(tm__adapter_copy_from(out, in, 3, &ae), 3);
    assert_true(fs->copy_from_ok);
    tm__adapter_abort(out);
    tm__adapter_close_read(in);

    assert_int_equal(tm__fault_calls(sa, TM_FOP_OPEN_READ), 1);
    assert_int_equal(tm__fault_calls(sa, TM_FOP_READ), 1);
    assert_int_equal(tm__fault_calls(sa, TM_FOP_FSTAT), 2);
    assert_int_equal(tm__fault_calls(da, TM_FOP_COPY_FROM), 1);
    assert_int_equal(tm__fault_calls(da, TM_FOP_COMMIT), 2);
    tm__adapter_close(sa);
    tm__adapter_close(da);
}

static void test_no_copy_from(void **state)
{
    struct fake *fk = fake_new();
    struct tm__adapter *a = wrap(fk, "fault:no_copy_from:x");
    (void)state;
    assert_null(a->copy_from);
    assert_non_null(a->write);
    tm__adapter_close(a);
}

struct hammer {
    struct tm__adapter *a; /* the layer */
    int failed;            /* calls that failed in this thread */
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    struct tm__entry e;
    struct tm__aerr ae;
    int i;
    for (i = 0; i < 10000; i++)
        if (tm__adapter_stat(h->a, "/", &e, &ae) != 0)
            h->failed++;
    return NULL;
}

static void test_counts_are_thread_safe(void **state)
{
    struct fake *fk = fake_new();
    struct tm__adapter *a = wrap(fk, "fault:stat@100,stat@39001+:x");
    struct hammer h[4];
    pthread_t th[4];
    int i, failed = 0;
    (void)state;
    for (i = 0; i < 4; i++) {
        h[i].a = a;
        h[i].failed = 0;
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        failed += h[i].failed;
    }
    assert_int_equal(tm__fault_calls(a, TM_FOP_STAT), 40000);
    assert_int_equal(failed, 1 + 1000); /* call 100, then 39001..40000 */
    assert_int_equal(tm__fault_fired(a), 1001);
    tm__adapter_close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_open_through_adapter_open),
        cmocka_unit_test(test_once_and_sticky),
        cmocka_unit_test(test_files_and_copy_from),
        cmocka_unit_test(test_no_copy_from),
        cmocka_unit_test(test_counts_are_thread_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
