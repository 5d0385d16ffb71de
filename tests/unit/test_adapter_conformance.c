/*
 * test_adapter_conformance.c - one set of cases run against every adapter.
 *
 * The contract of struct tm__adapter (src/adapter/adapter.h) is checked the
 * way the engine uses it, through the tm__adapter_* wrappers only: each
 * storage is opened with tm__adapter_open() from a spec of one of the
 * registry's kinds. A table of cases (listing and paging, names, types,
 * sizes, modes, mtimes, symlinks, writes and their atomicity, mkdir, errors
 * and their classes, threads) runs against a table of factories, each of
 * which makes a fresh storage for one case:
 *
 *   local        a fresh temporary folder ($TMPDIR, else /tmp), removed
 *                after the case
 *   local_shm    the same on /dev/shm (tmpfs: other getdents positions)
 *   sim          a fresh "sim:" (overlay in memory), default page of 1000
 *   sim_page1    the same with page=1 (a page per child)
 *   sim_page3    page=3
 *   fault_sim    "fault::sim:...,page=3": the fault layer, no rules
 *   fault_local  "fault::DIR": the fault layer over a local folder
 *
 * A case that needs content at the root gets it from its factory: a local
 * folder is filled with files before it is opened, a sim is a generated
 * world of that many files. A case that does not apply to a storage (a
 * storage without TM_CAP_SYMLINKS has no symlinks) is skipped by checking
 * the capability bit, never by the adapter's name.
 *
 * TREEMIG_CONFORMANCE_SPECS="SPEC[;SPEC...]" runs the same cases against
 * the storages named instead of the built-in ones (the hook by which the
 * SFTP and S3 adapters join the suite, docs/testing.md): each case gets a
 * fresh folder SPEC/tmconf-PID-N made through the adapter (a "sim:" spec
 * is opened as given, fresh for each case). TREEMIG_CONFORMANCE_OPTS=
 * "KEY=VALUE[;...]" gives them storage options, TREEMIG_CONFORMANCE_FILL=N
 * the number of children of the large folder (default 1200 there; 1500
 * for a local folder on a disk, 5000 on tmpfs and the sim). With or
 * without them, TREEMIG_CONFORMANCE_ONLY=PATTERN runs the tests whose name
 * matches (cmocka's wildcards, e.g. "list_*@sim_page1").
 *
 * Last, a few cases of the wrappers themselves run once, against small
 * fake adapters: a storage that lacks a method (TM_ENOTSUP from the
 * wrapper), and one that misbehaves (invalid names, more bytes than asked).
 *
 * Threads: cmocka runs every case on the main thread; the threads case
 * starts four workers on one adapter (run under TSan by make tsan), which
 * record what went wrong for the main thread to assert.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter/adapter.h"
#include "treemig.h"

/* ------------------------------------------------------------ factories */

enum fkind { K_LOCAL, K_SIM, K_SPEC };

/* How to make a fresh storage for one case. */
struct factory {
    const char *name; /* in the test names: "local", "sim_page3", ... */
    int kind;         /* enum fkind */
    int fault;        /* 1: behind a fault layer without rules */
    const char *arg;  /* K_LOCAL: the folder to make it in (NULL: $TMPDIR,
                         else /tmp); K_SIM: parameters after the shape
                         ("page=3"); K_SPEC: a spec from
                         TREEMIG_CONFORMANCE_SPECS */
    int fill;         /* children of the large folder */
};

static struct factory builtin[] = {
    { "local", K_LOCAL, 0, NULL, 1500 },
    { "local_shm", K_LOCAL, 0, "/dev/shm", 5000 },
    { "sim", K_SIM, 0, "", 5000 },
    { "sim_page1", K_SIM, 0, "page=1", 5000 },
    { "sim_page3", K_SIM, 0, "page=3", 5000 },
    { "fault_sim", K_SIM, 1, "page=3", 5000 },
    { "fault_local", K_LOCAL, 1, NULL, 1500 },
};

/* Storage options for TREEMIG_CONFORMANCE_SPECS (TREEMIG_CONFORMANCE_OPTS). */
static struct tm__sopts env_opts;

/* One listed child, its name copied. */
struct ent {
    char *name;       /* malloc'd, NUL-terminated (names hold no NUL) */
    size_t len;       /* bytes of name */
    int type;         /* enum tm__type */
    int64_t size;     /* bytes (symlink: target length) */
    int64_t mtime;    /* ns */
    uint32_t mode;    /* permission bits */
    int64_t uid, gid; /* owner (TM_CAP_OWNER) */
    int page;         /* the page it came on, from 1 */
};

/* A growing list of children. */
struct ents {
    struct ent *v; /* entries */
    size_t n, cap; /* used, allocated */
    int page;      /* the page being collected */
    int dots;      /* "." or ".." was listed */
    int fail_at;   /* >= 0: the callback fails at this child of the page */
    size_t in_page; /* children of the current page so far */
};

/* One storage under test, for one case. */
struct fx {
    const struct factory *f;     /* how it was made */
    struct tm__adapter *a;       /* the storage (through tm__adapter_*) */
    char spec[PATH_MAX + 128];   /* the spec it was opened with */
    char dir[PATH_MAX + 128];    /* a local folder to remove after, or "" */
    int nfill;                   /* children put at the root before */
    void (*fill_name)(int i, char *out, size_t len); /* their names */
    struct ents l[4];            /* lists of the case (freed after) */
    unsigned char *data, *back;  /* buffers of the case (freed after) */
    struct fx *other;            /* a second storage of the same factory */
};

/* A test: one case on one storage. */
struct run {
    const struct ccase *c;       /* the case */
    const struct factory *f;     /* the storage's factory (NULL: once) */
    struct fx fx;                /* the storage */
    char name[128];              /* "case@factory" */
};

/* snprintf into the array buf, failing the case when it does not fit. */
#define fmt(buf, ...)                                                           \
    do {                                                                        \
        if (snprintf((buf), sizeof(buf), __VA_ARGS__) >= (int)sizeof(buf))      \
            fail_msg("%s: too long", #buf);                                     \
    } while (0)

/* A fill child's name: "fNNN", as the sim's generator names its files. */
static void fill_sim(int i, char *out, size_t len)
{
    snprintf(out, len, "f%d", i);
}

/* A fill child's name: 200 to 255 bytes, so that a local listing of a
 * thousand takes many 32 KiB getdents pages (about 120 such names each). */
static void fill_long(int i, char *out, size_t len)
{
    static const char abc[] = "abcdefghijklmnopqrstuvwxyz0123456789_-. +=";
    size_t n = 200 + (size_t)(i * 37) % 56, k;
    int w = snprintf(out, len, "%05d-", i);
    assert_true(n < len && w > 0);
    for (k = (size_t)w; k < n; k++)
        out[k] = abc[(k * 7 + (size_t)i) % (sizeof abc - 1)];
    out[n] = '\0';
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(p) != 0)
        fprintf(stderr, "conformance: cannot remove %s: errno %d\n", p, errno);
    return 0;
}

/* Removes the folder dir and everything in it (never following a link). */
static void rmtree(const char *dir)
{
    chmod(dir, 0700);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The spec after any "fault:RULES:" prefixes (what tm__kind_of looks at). */
static const char *spec_inner(const char *spec)
{
    while (strncmp(spec, "fault:", 6) == 0 && strchr(spec + 6, ':'))
        spec = strchr(spec + 6, ':') + 1;
    return spec;
}

static int64_t put_rc(struct tm__adapter *a, const char *path, const void *data,
                      size_t n, int64_t mtime, uint32_t mode, unsigned flags,
                      struct tm__aerr *e);

/* Makes a fresh storage of factory f with nfill children at its root. */
static void fx_open(struct fx *fx, const struct factory *f, int nfill)
{
    char err[512], name[256];
    const char *pre = f->fault ? "fault::" : "";
    int i, rc;

    fx->f = f;
    fx->nfill = nfill;
    fx->fill_name = fill_long;
    fx->dir[0] = '\0';
    switch (f->kind) {
    case K_LOCAL: {
        const char *tmp = f->arg ? f->arg : getenv("TMPDIR");
        fmt(fx->dir, "%s/tm-conform-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        assert_non_null(mkdtemp(fx->dir));
        for (i = 0; i < nfill; i++) {
            int fd;
            char path[PATH_MAX + 300];
            fill_long(i, name, sizeof name);
            fmt(path, "%s/%s", fx->dir, name);
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            assert_true(fd >= 0);
            assert_int_equal(write(fd, name, 5), 5);
            close(fd);
        }
        fmt(fx->spec, "%s%s", pre, fx->dir);
        break;
    }
    case K_SIM:
        if (nfill) {
            fx->fill_name = fill_sim;
            snprintf(fx->spec, sizeof fx->spec,
                     "%ssim:depth=1,root_folders=0,root_files=%d%s%s", pre, nfill,
                     f->arg[0] ? "," : "", f->arg);
        } else {
            snprintf(fx->spec, sizeof fx->spec, "%ssim:depth=0%s%s", pre,
                     f->arg[0] ? "," : "", f->arg);
        }
        break;
    default: { /* K_SPEC: a fresh folder inside the storage named */
        static unsigned seq;
        size_t n = strlen(f->arg);
        if (tm__kind_of(f->arg) == &tm__sim_kind) {
            snprintf(fx->spec, sizeof fx->spec, "%s", f->arg);
            break;
        }
        while (n > 1 && f->arg[n - 1] == '/')
            n--;
        rc = tm__adapter_open(f->arg, &env_opts, &fx->a, err, sizeof err);
        if (rc)
            fail_msg("cannot open %s: %s (%s)", f->arg, err, tm_err_name(rc));
        snprintf(name, sizeof name, "/tmconf-%ld-%u", (long)getpid(), ++seq);
        {
            struct tm__aerr e;
            rc = tm__adapter_mkdir(fx->a, name, &e);
            if (rc)
                fail_msg("mkdir %s in %s: %s", name, f->arg, e.msg);
        }
        tm__adapter_close(fx->a);
        fx->a = NULL;
        snprintf(fx->spec, sizeof fx->spec, "%.*s%s", (int)n, f->arg, name);
        if (tm__kind_of(f->arg) == &tm__local_kind)
            fmt(fx->dir, "%s", spec_inner(fx->spec));
        break;
    }
    }
    rc = tm__adapter_open(fx->spec, f->kind == K_SPEC ? &env_opts : NULL, &fx->a,
                          err, sizeof err);
    if (rc)
        fail_msg("cannot open %s: %s (%s)", fx->spec, err, tm_err_name(rc));
    assert_int_equal(fx->a->version, 2);
    if (f->kind == K_SPEC && nfill) { /* a remote storage: written */
        struct tm__aerr e;
        for (i = 0; i < nfill; i++) {
            char path[300];
            fill_long(i, name, sizeof name);
            snprintf(path, sizeof path, "/%s", name);
            rc = (int)put_rc(fx->a, path, name, 5, 1600000000000000000LL, 0644, 0, &e);
            if (rc)
                fail_msg("fill %s: %s", path, e.msg);
        }
    }
}

static void ents_free(struct ents *l);

/* Closes the storage and removes a local folder. */
static void fx_close(struct fx *fx)
{
    size_t i;
    if (fx->other) {
        fx_close(fx->other);
        free(fx->other);
        fx->other = NULL;
    }
    tm__adapter_close(fx->a);
    fx->a = NULL;
    if (fx->dir[0])
        rmtree(fx->dir);
    fx->dir[0] = '\0';
    for (i = 0; i < sizeof fx->l / sizeof *fx->l; i++)
        ents_free(&fx->l[i]);
    free(fx->data);
    free(fx->back);
    fx->data = fx->back = NULL;
}

/* A second, fresh storage of the same factory (freed with fx). */
static struct fx *fx_another(struct fx *fx)
{
    assert_null(fx->other);
    fx->other = calloc(1, sizeof *fx->other);
    assert_non_null(fx->other);
    fx_open(fx->other, fx->f, 0);
    return fx->other;
}

/* Wraps the storage in a fault layer with rules ("list@3,stat@1=eio"):
 * the layer owns the storage from now on. */
static void fx_fault(struct fx *fx, const char *rules)
{
    struct tm__fault_rule r[TM_FAULT_MAX_RULES];
    struct tm__adapter *w;
    const char *inner;
    char spec[256], err[256];
    int n;
    snprintf(spec, sizeof spec, "fault:%s:-", rules);
    if (tm__fault_parse(spec, r, TM_FAULT_MAX_RULES, &n, &inner, err, sizeof err))
        fail_msg("fault rules %s: %s", rules, err);
    assert_int_equal(tm__fault_wrap(fx->a, r, n, 0, &w), 0);
    fx->a = w;
}

/* Buffers of n bytes for the case (freed after it). */
static void fx_buffers(struct fx *fx, size_t n)
{
    free(fx->data);
    free(fx->back);
    fx->data = malloc(n ? n : 1);
    fx->back = malloc(n ? n : 1);
    assert_non_null(fx->data);
    assert_non_null(fx->back);
}

/* ------------------------------------------------------------ helpers */

/* rc must be the error want with its detail: code, class, a message. */
#define assert_aerr(rc, e, want, cls_)                                          \
    do {                                                                        \
        int rc_ = (int)(rc);                                                    \
        const struct tm__aerr *e_ = (e);                                        \
        if (rc_ != (want) || e_->code != (want) || e_->cls != (cls_) ||         \
            !e_->msg[0])                                                        \
            fail_msg("got %s (detail: code %s, class %d, msg '%s'), want %s "   \
                     "class %d", tm_err_name(rc_), tm_err_name(e_->code),       \
                     e_->cls, e_->msg, tm_err_name(want), (int)(cls_));         \
    } while (0)

/* rc must be 0. */
#define assert_ok(rc, e)                                                        \
    do {                                                                        \
        int rc_ = (int)(rc);                                                    \
        if (rc_ != 0)                                                           \
            fail_msg("failed: %s (%s)", tm_err_name(rc_), (e)->msg);            \
    } while (0)

/* Notes on stdout why part of a case does not apply, then skips it. */
#define skip_because(fx, why)                                                   \
    do {                                                                        \
        print_message("[ SKIP     ] %s: %s\n", (fx)->spec, why);                \
        skip();                                                                 \
    } while (0)

static void ents_free(struct ents *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        free(l->v[i].name);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static void ents_reset(struct ents *l)
{
    ents_free(l);
    l->fail_at = -1;
}

static void ents_add(struct ents *l, const char *name, size_t len,
                     const struct tm__entry *e)
{
    struct ent *x;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        assert_non_null(l->v);
    }
    x = &l->v[l->n++];
    memset(x, 0, sizeof *x);
    x->name = malloc(len + 1);
    assert_non_null(x->name);
    memcpy(x->name, name, len);
    x->name[len] = '\0';
    x->len = len;
    x->page = l->page;
    if (e) {
        x->type = e->type;
        x->size = e->size;
        x->mtime = e->mtime;
        x->mode = e->mode;
        x->uid = e->uid;
        x->gid = e->gid;
    }
}

/* The callback of every listing: copies the child; fails with
 * TM_ESTOPPED at child fail_at of a page when asked. */
static int collect(void *ctx, const struct tm__entry *e)
{
    struct ents *l = ctx;
    if ((e->name_len == 1 && e->name[0] == '.') ||
        (e->name_len == 2 && e->name[0] == '.' && e->name[1] == '.'))
        l->dots++;
    if (l->fail_at >= 0 && l->in_page == (size_t)l->fail_at)
        return TM_ESTOPPED;
    l->in_page++;
    if (memchr(e->name, '\0', e->name_len))
        l->dots++; /* cannot be: the wrapper refuses it */
    ents_add(l, e->name, e->name_len, e);
    return 0;
}

static int ent_cmp(const void *a, const void *b)
{
    const struct ent *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static const struct ent *ents_find(const struct ents *l, const char *name)
{
    size_t i, len = strlen(name);
    const struct ent *r = NULL;
    for (i = 0; i < l->n; i++)
        if (l->v[i].len == len && memcmp(l->v[i].name, name, len) == 0) {
            if (r)
                fail_msg("'%s' listed twice", name);
            r = &l->v[i];
        }
    return r;
}

/* Prints a name with its bytes that are not printable ASCII escaped. */
static const char *shown(const char *name, size_t len)
{
    static char out[1200];
    size_t i, o = 0;
    for (i = 0; i < len && o + 5 < sizeof out; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c >= 0x20 && c < 0x7f)
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, sizeof out - o, "\\x%02x", c);
    }
    out[o] = '\0';
    return out;
}

/* got must hold exactly the names of want, each once (in any order). */
static void assert_same_names(struct ents *got, struct ents *want, const char *what)
{
    size_t i;
    if (got->n)
        qsort(got->v, got->n, sizeof *got->v, ent_cmp);
    if (want->n)
        qsort(want->v, want->n, sizeof *want->v, ent_cmp);
    for (i = 1; i < got->n; i++)
        if (ent_cmp(&got->v[i - 1], &got->v[i]) == 0)
            fail_msg("%s: '%s' listed twice", what,
                     shown(got->v[i].name, got->v[i].len));
    for (i = 0; i < got->n && i < want->n; i++)
        if (ent_cmp(&got->v[i], &want->v[i]) != 0) {
            int c = ent_cmp(&got->v[i], &want->v[i]);
            const struct ent *x = c < 0 ? &got->v[i] : &want->v[i];
            fail_msg("%s: '%s' %s", what, shown(x->name, x->len),
                     c < 0 ? "listed but not expected" : "expected but not listed");
        }
    if (got->n != want->n)
        fail_msg("%s: %zu children listed, %zu expected", what, got->n, want->n);
}

/* The names of the fill children, from..to-1, added to out. */
static void fill_names(struct fx *fx, int from, int to, struct ents *out)
{
    char name[256];
    int i;
    for (i = from; i < to; i++) {
        fx->fill_name(i, name, sizeof name);
        ents_add(out, name, strlen(name), NULL);
    }
}

/* Reads up to k pages (k < 0: all) of lister lr into out; returns the
 * error of the page that failed, else 0 with *more as the storage said. */
static int take_pages(struct tm__lister *lr, int k, struct ents *out, int *more,
                      struct tm__aerr *e)
{
    int rc = 0;
    *more = 1;
    while (*more && k-- != 0) {
        out->page++;
        out->in_page = 0;
        rc = tm__adapter_list_next(lr, collect, out, more, e);
        if (rc)
            return rc;
    }
    return 0;
}

/* Lists the whole folder at path into out (appended) page by page; the
 * number of pages in *pages (may be NULL). Returns the first error, of
 * list_open or of a page. */
static int list_all(struct tm__adapter *a, const char *path, struct ents *out,
                    int *pages, struct tm__aerr *e)
{
    struct tm__lister *lr;
    int more, rc, first = out->page;
    rc = tm__adapter_list_open(a, path, NULL, 0, &lr, e);
    if (rc)
        return rc;
    assert_non_null(lr);
    rc = take_pages(lr, -1, out, &more, e);
    tm__adapter_list_close(lr);
    if (pages)
        *pages = out->page - first;
    return rc;
}

/* Lists path and asserts it worked, with no "." or "..". */
static void list_ok(struct tm__adapter *a, const char *path, struct ents *out)
{
    struct tm__aerr e;
    ents_reset(out);
    assert_ok(list_all(a, path, out, NULL, &e), &e);
    if (out->dots)
        fail_msg("listing %s gave '.' or '..'", path);
}

/* Fills buf with n bytes from seed (splitmix64). */
static void pattern(unsigned char *buf, size_t n, uint64_t seed)
{
    size_t i;
    for (i = 0; i < n; i += 8) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        size_t k;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        for (k = 0; k < 8 && i + k < n; k++)
            buf[i + k] = (unsigned char)(z >> (8 * k));
    }
}

/* What open_write is told about a file of size bytes. */
static struct tm__wattr wattr(int64_t size, int64_t mtime, uint32_t mode)
{
    struct tm__wattr w;
    memset(&w, 0, sizeof w);
    w.size = size;
    w.mtime = mtime;
    w.mode = mode;
    w.uid = w.gid = -1;
    return w;
}

/* Pieces a write is cut into: odd sizes, a byte, more than a MiB. */
static const size_t pieces[] = { 1, 4093, 7, 65536 + 13, 1 << 20, 100 };

/* Writes n bytes of data to path in odd pieces and commits them: the
 * commit's result, or the first error before it (no assert: threads). */
static int64_t put_rc(struct tm__adapter *a, const char *path, const void *data,
                      size_t n, int64_t mtime, uint32_t mode, unsigned flags,
                      struct tm__aerr *e)
{
    struct tm__wattr w = wattr((int64_t)n, mtime, mode);
    struct tm__wfile *f;
    size_t off = 0, p = 0;
    int rc = tm__adapter_open_write(a, path, &w, &f, e);
    if (rc)
        return rc;
    while (off < n) {
        size_t k = pieces[p++ % (sizeof pieces / sizeof *pieces)];
        int64_t got;
        if (k > n - off)
            k = n - off;
        got = tm__adapter_write(f, (const char *)data + off, k, e);
        if (got != (int64_t)k) {
            tm__adapter_abort(f);
            return got < 0 ? got : TM_EIO;
        }
        off += k;
    }
    return tm__adapter_commit(f, mtime, mode, flags, e);
}

/* put_rc that must succeed. */
static void put(struct tm__adapter *a, const char *path, const void *data,
                size_t n, int64_t mtime, uint32_t mode)
{
    struct tm__aerr e;
    int rc = (int)put_rc(a, path, data, n, mtime, mode, 0, &e);
    if (rc)
        fail_msg("writing %s: %s (%s)", shown(path, strlen(path)),
                 tm_err_name(rc), e.msg);
}

/* Reads the whole file at path into buf (cap bytes) with reads of odd
 * sizes; returns its length; *st as open_read said. */
static size_t slurp(struct tm__adapter *a, const char *path, unsigned char *buf,
                    size_t cap, struct tm__entry *st)
{
    static const size_t sizes[] = { 4093, 1, 65521, 8, 1 << 20 };
    struct tm__rfile *f;
    struct tm__entry fst;
    struct tm__aerr e;
    size_t n = 0, i = 0;
    int64_t got;
    int rc = tm__adapter_open_read(a, path, &f, st, &e);
    if (rc)
        fail_msg("open_read %s: %s (%s)", shown(path, strlen(path)),
                 tm_err_name(rc), e.msg);
    assert_ok(tm__adapter_fstat(f, &fst, &e), &e);
    assert_int_equal(fst.size, st->size);
    assert_int_equal(fst.mtime, st->mtime);
    for (;;) {
        size_t k = sizes[i++ % (sizeof sizes / sizeof *sizes)];
        if (k > cap - n)
            k = cap - n;
        got = tm__adapter_read(f, buf + n, k, &e);
        if (got < 0)
            fail_msg("read %s: %s (%s)", path, tm_err_name((int)got), e.msg);
        if (got == 0 && k > 0)
            break;
        n += (size_t)got;
        if (n == cap) { /* full: the next read must say the end */
            unsigned char x;
            assert_int_equal(tm__adapter_read(f, &x, 1, &e), 0);
            break;
        }
    }
    tm__adapter_close_read(f);
    return n;
}

static void stat_ok(struct tm__adapter *a, const char *path, struct tm__entry *st)
{
    struct tm__aerr e;
    int rc = tm__adapter_stat(a, path, st, &e);
    if (rc)
        fail_msg("stat %s: %s (%s)", shown(path, strlen(path)), tm_err_name(rc),
                 e.msg);
}

static void mkdir_ok(struct tm__adapter *a, const char *path)
{
    struct tm__aerr e;
    int rc = tm__adapter_mkdir(a, path, &e);
    if (rc)
        fail_msg("mkdir %s: %s (%s)", path, tm_err_name(rc), e.msg);
}

/* a and b fall in the same step of precision prec (the engine compares
 * mtimes so: src/engine/compare.c). */
static int same_mtime(int64_t a, int64_t b, int64_t prec)
{
    int64_t qa, qb;
    if (prec < 1)
        prec = 1;
    qa = a / prec - (a % prec < 0);
    qb = b / prec - (b % prec < 0);
    return qa == qb;
}

#define assert_mtime(fx, got, want)                                             \
    do {                                                                        \
        int64_t g_ = (got), w_ = (want);                                        \
        if (!same_mtime(g_, w_, (fx)->a->mtime_precision))                      \
            fail_msg("mtime %lld, want %lld (precision %lld ns)", (long long)g_, \
                     (long long)w_, (long long)(fx)->a->mtime_precision);       \
    } while (0)

/* Each child of the listing at path agrees with what stat says of it. */
static void assert_list_agrees_with_stat(struct fx *fx, const char *path,
                                         struct ents *l)
{
    size_t i;
    for (i = 0; i < l->n; i++) {
        char p[2048];
        struct tm__entry st;
        const struct ent *x = &l->v[i];
        snprintf(p, sizeof p, "%s/%s", strcmp(path, "/") ? path : "", x->name);
        stat_ok(fx->a, p, &st);
        if (st.type != x->type)
            fail_msg("%s: listed as %s, stat says %s", shown(p, strlen(p)),
                     tm__type_names[x->type], tm__type_names[st.type]);
        if (st.type != TM_T_FOLDER)
            assert_int_equal(st.size, x->size);
        assert_int_equal(st.mtime, x->mtime);
        if (fx->a->caps & TM_CAP_MODES)
            assert_int_equal(st.mode & 07777, x->mode & 07777);
    }
}

/* The error a listing of path ends with: of list_open, or of a page (a
 * storage may wait for the first page to ask). */
static int list_err(struct tm__adapter *a, const char *path, struct tm__aerr *e)
{
    struct ents l = { 0 };
    int rc;
    l.fail_at = -1;
    rc = list_all(a, path, &l, NULL, e);
    ents_free(&l);
    return rc;
}

/* ------------------------------------------------------------ cases: listing */

/* Folders of 0, 1, a few and many children (files and folders, written
 * through the adapter): each child listed exactly once, with its type. */
static void c_list_counts(struct fx *fx)
{
    static const int counts[] = { 0, 1, 2, 3, 4, 7, 40 };
    struct ents *got = &fx->l[0], *want = &fx->l[1];
    size_t i;
    int k;
    for (i = 0; i < sizeof counts / sizeof *counts; i++) {
        char dir[32], p[64];
        snprintf(dir, sizeof dir, "/n%d", counts[i]);
        mkdir_ok(fx->a, dir);
        for (k = 0; k < counts[i]; k++) {
            snprintf(p, sizeof p, "%s/c%d", dir, k);
            if (k % 3 == 2)
                mkdir_ok(fx->a, p);
            else
                put(fx->a, p, p, strlen(p), 1600000000000000000LL, 0644);
        }
    }
    for (i = 0; i < sizeof counts / sizeof *counts; i++) {
        char dir[32], name[32];
        snprintf(dir, sizeof dir, "/n%d", counts[i]);
        list_ok(fx->a, dir, got);
        ents_reset(want);
        for (k = 0; k < counts[i]; k++) {
            const struct ent *x;
            snprintf(name, sizeof name, "c%d", k);
            ents_add(want, name, strlen(name), NULL);
            x = ents_find(got, name);
            if (x && x->type != (k % 3 == 2 ? TM_T_FOLDER : TM_T_FILE))
                fail_msg("%s/%s listed as %s", dir, name, tm__type_names[x->type]);
        }
        assert_same_names(got, want, dir);
    }
    list_ok(fx->a, "/", got);
    ents_reset(want);
    for (i = 0; i < sizeof counts / sizeof *counts; i++) {
        char name[32];
        snprintf(name, sizeof name, "n%d", counts[i]);
        ents_add(want, name, strlen(name), NULL);
    }
    assert_same_names(got, want, "/");
}

/* A folder of thousands of children (several pages on every storage):
 * each listed exactly once; then with children added and one replaced,
 * each once again, the replaced one with its new size. */
static void c_list_large(struct fx *fx)
{
    struct ents *got = &fx->l[0], *want = &fx->l[1];
    struct tm__aerr e;
    char name[256], p[300];
    const struct ent *x;
    int pages = 0, i;

    ents_reset(got);
    assert_ok(list_all(fx->a, "/", got, &pages, &e), &e);
    assert_int_equal(got->dots, 0);
    ents_reset(want);
    fill_names(fx, 0, fx->nfill, want);
    assert_same_names(got, want, "the large folder");
    print_message("[          ] %s: %d children in %d pages\n", fx->spec,
                  fx->nfill, pages);
    for (i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "added-%d", i);
        snprintf(p, sizeof p, "/%s", name);
        put(fx->a, p, "new", 3, 1600000000000000000LL, 0644);
        ents_add(want, name, strlen(name), NULL);
    }
    fx->fill_name(0, name, sizeof name);
    snprintf(p, sizeof p, "/%s", name);
    put(fx->a, p, "replaced!!", 10, 1600000000000000000LL, 0644);
    mkdir_ok(fx->a, "/added-folder");
    ents_add(want, "added-folder", 12, NULL);
    list_ok(fx->a, "/", got);
    assert_same_names(got, want, "the large folder with children added");
    x = ents_find(got, name);
    assert_non_null(x);
    assert_int_equal(x->type, TM_T_FILE);
    assert_int_equal(x->size, 10);
    x = ents_find(got, "added-folder");
    assert_non_null(x);
    assert_int_equal(x->type, TM_T_FOLDER);
}

/* The listing of "/" stopped after k pages and reopened at list_pos
 * continues with exactly the rest of want (for k from the start to past
 * the end), and one reopened after every single page too. */
static void resume_checks(struct fx *fx, struct ents *want, const char *what)
{
    struct ents *whole = &fx->l[0], *got = &fx->l[1];
    struct tm__lister *lr;
    struct tm__aerr e;
    struct tm__buf pos = TM__BUF_INIT;
    int pages, more, ks[8], nk = 0, i, reopens = 0;
    char msg[160];

    ents_reset(whole);
    assert_ok(list_all(fx->a, "/", whole, &pages, &e), &e);
    assert_same_names(whole, want, what);
    assert_true(pages >= 2); /* else nothing below is tested */
    ks[nk++] = 0;
    ks[nk++] = 1;
    ks[nk++] = 2;
    ks[nk++] = pages / 2;
    ks[nk++] = pages - 1;
    ks[nk++] = pages; /* the position after the last page: nothing left */
    for (i = 0; i < nk; i++) {
        ents_reset(got);
        assert_ok(tm__adapter_list_open(fx->a, "/", NULL, 0, &lr, &e), &e);
        assert_ok(take_pages(lr, ks[i], got, &more, &e), &e);
        tm__buf_reset(&pos);
        assert_int_equal(tm__adapter_list_pos(lr, &pos), 0);
        tm__adapter_list_close(lr);
        assert_ok(tm__adapter_list_open(fx->a, "/", pos.buf, pos.len, &lr, &e), &e);
        assert_ok(take_pages(lr, -1, got, &more, &e), &e);
        tm__adapter_list_close(lr);
        if (ks[i] == pages)
            assert_int_equal(got->page, pages + 1); /* one empty page, done */
        snprintf(msg, sizeof msg, "%s after %d of %d pages", what, ks[i], pages);
        assert_same_names(got, want, msg);
    }
    /* reopened after every page: the engine's way after each crash */
    ents_reset(got);
    tm__buf_reset(&pos);
    more = 1;
    while (more) {
        struct tm__buf next = TM__BUF_INIT;
        assert_ok(tm__adapter_list_open(fx->a, "/", pos.buf, pos.len, &lr, &e), &e);
        assert_ok(take_pages(lr, 1, got, &more, &e), &e);
        assert_int_equal(tm__adapter_list_pos(lr, &next), 0);
        tm__adapter_list_close(lr);
        tm__buf_release(&pos);
        pos = next;
        assert_true(++reopens <= 2 * pages + 2);
    }
    tm__buf_release(&pos);
    snprintf(msg, sizeof msg, "%s after every page", what);
    assert_same_names(got, want, msg);
}

/* A listing stopped after k pages and reopened at list_pos continues with
 * exactly the rest: of a folder the storage holds, and of one with
 * children written since (a sim merges them with its generated ones). */
static void c_list_resume(struct fx *fx)
{
    struct ents *want = &fx->l[2];
    char name[256], p[300];
    int i;

    ents_reset(want);
    fill_names(fx, 0, fx->nfill, want);
    resume_checks(fx, want, "a listing resumed at list_pos");
    for (i = 0; i < 7; i++) {
        snprintf(name, sizeof name, "%c-written-%d", i % 2 ? 'a' : 'z', i);
        snprintf(p, sizeof p, "/%s", name);
        put(fx->a, p, "w", 1, 1600000000000000000LL, 0644);
        ents_add(want, name, strlen(name), NULL);
    }
    mkdir_ok(fx->a, "/m-written-folder");
    ents_add(want, "m-written-folder", 16, NULL);
    for (i = 0; i < fx->nfill; i += fx->nfill / 3) { /* written over */
        fx->fill_name(i, name, sizeof name);
        snprintf(p, sizeof p, "/%s", name);
        put(fx->a, p, "over", 4, 1600000000000000000LL, 0644);
    }
    resume_checks(fx, want, "a listing with written children resumed");
}

/* Pages of the listing of "/" in got must be the pages of whole, in the
 * same order (an unchanged folder pages the same way). */
static void assert_same_pages(const struct ents *got, const struct ents *whole,
                              const char *what)
{
    size_t i;
    for (i = 0; i < got->n && i < whole->n; i++)
        if (got->v[i].page != whole->v[i].page ||
            ent_cmp(&got->v[i], &whole->v[i]) != 0)
            fail_msg("%s: child %zu is '%s' on page %d, a clean listing has '%s' "
                     "on page %d", what, i, shown(got->v[i].name, got->v[i].len),
                     got->v[i].page, whole->v[i].name, whole->v[i].page);
    assert_int_equal(got->n, whole->n);
}

/* A failed page (an error from the storage: the fault layer's list@N; or
 * from the engine's callback halfway through it) leaves the lister at
 * the start of that same page: the next call passes it whole. */
static void c_list_retry_page(struct fx *fx)
{
    struct ents *whole = &fx->l[0], *got = &fx->l[1];
    struct tm__lister *lr;
    struct tm__aerr e;
    size_t keep;
    int pages, more, rc, p2 = 0, round;
    size_t i;

    ents_reset(whole);
    assert_ok(list_all(fx->a, "/", whole, &pages, &e), &e);
    /* A storage named by TREEMIG_CONFORMANCE_SPECS is filled through the
     * adapter, and its page size is its own (1,000 keys on S3, 1,000
     * children and more on SFTP): the case sizes itself by the pages it
     * sees, writing more children until there are three. */
    for (round = 0; pages < 3 && fx->f->kind == K_SPEC && round < 4; round++) {
        size_t per[4] = { 0 }, most = 0;
        int add, k;
        for (i = 0; i < whole->n; i++)
            if (whole->v[i].page >= 1 && whole->v[i].page <= 3)
                per[whole->v[i].page]++;
        for (k = 1; k <= 3; k++)
            most = per[k] > most ? per[k] : most;
        add = (int)(2 * most + 1 > whole->n ? 2 * most + 1 - whole->n : most) +
              (int)(most / 16) + 1; /* pages may differ a little */
        for (k = fx->nfill; k < fx->nfill + add; k++) {
            char name[256], p[300];
            fx->fill_name(k, name, sizeof name);
            snprintf(p, sizeof p, "/%s", name);
            put(fx->a, p, name, 5, 1600000000000000000LL, 0644);
        }
        fx->nfill += add;
        ents_reset(whole);
        assert_ok(list_all(fx->a, "/", whole, &pages, &e), &e);
        print_message("[          ] %s: %d children added, %d in %d pages\n",
                      fx->spec, add, fx->nfill, pages);
    }
    assert_true(pages >= 3);
    for (i = 0; i < whole->n; i++)
        p2 += whole->v[i].page == 2;
    assert_true(p2 > 0);

    /* the callback fails at the last child of page 2 */
    ents_reset(got);
    assert_ok(tm__adapter_list_open(fx->a, "/", NULL, 0, &lr, &e), &e);
    assert_ok(take_pages(lr, 1, got, &more, &e), &e);
    assert_true(more);
    keep = got->n;
    got->fail_at = p2 - 1;
    got->page++;
    got->in_page = 0;
    rc = tm__adapter_list_next(lr, collect, got, &more, &e);
    assert_aerr(rc, &e, TM_ESTOPPED, TM_ERR_NODE);
    assert_int_equal(got->n - keep, (size_t)(p2 - 1)); /* passed, then failed */
    for (i = keep; i < got->n; i++) /* the part it passed: as a clean page */
        assert_int_equal(ent_cmp(&got->v[i], &whole->v[i]), 0);
    while (got->n > keep) /* the caller drops the failed page */
        free(got->v[--got->n].name);
    got->fail_at = -1;
    got->page--;
    assert_ok(take_pages(lr, -1, got, &more, &e), &e);
    tm__adapter_list_close(lr);
    assert_same_pages(got, whole, "after the callback failed page 2");

    /* the storage fails page 3 (list_next call 3): that page comes next */
    fx_fault(fx, "list@3=eagain");
    ents_reset(got);
    assert_ok(tm__adapter_list_open(fx->a, "/", NULL, 0, &lr, &e), &e);
    assert_ok(take_pages(lr, 2, got, &more, &e), &e);
    assert_true(more);
    keep = got->n;
    got->page++;
    rc = tm__adapter_list_next(lr, collect, got, &more, &e);
    assert_aerr(rc, &e, TM_EAGAIN, TM_ERR_RETRY);
    assert_non_null(strstr(e.msg, "fault injected into list call 3"));
    assert_int_equal(more, 0);
    while (got->n > keep)
        free(got->v[--got->n].name);
    got->page--;
    assert_ok(take_pages(lr, -1, got, &more, &e), &e);
    tm__adapter_list_close(lr);
    assert_same_pages(got, whole, "after the storage failed page 3");
}

/* ------------------------------------------------------------ cases: nodes */

/* Names that must come back byte for byte. */
static const struct {
    const char *name; /* the bytes */
    const char *what; /* for messages */
} odd_names[] = {
    { "plain", "ascii" },
    { "\xc3\xa9t\xc3\xa9", "UTF-8, precomposed (NFC)" },
    { "e\xcc\x81t\xc3\xa9", "UTF-8, decomposed (NFD): another name" },
    { "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "UTF-8, CJK" },
    { "\xf0\x9f\x99\x82 smile", "UTF-8, 4-byte" },
    { "zero\xe2\x80\x8bwidth", "UTF-8, zero-width space" },
    { " leading and trailing ", "spaces" },
    { "-dash", "a leading dash" },
    { ".hidden", "a leading dot" },
    { "...", "three dots" },
    { "..a", "two dots and more" },
    { "a\\b:c*d?e\"f<g>h|i", "punctuation other systems refuse" },
    { "tab\there", "a tab" },
    { "line\nbreak", "a newline" },
    { "ctl\x01\x1f\x7f", "control bytes" },
    { "UPPER", "case 1" },
    { "upper", "case 2: another name" },
    { "bad\xff\xfe", "not UTF-8" },
    { "\xc3\x28", "not UTF-8: a broken sequence" },
    { "\xed\xa0\x80", "not UTF-8: a surrogate" },
};

/* Builds the 255-byte names: ASCII, and 85 three-byte characters. */
static void long_names(char ascii[256], char utf8[256])
{
    int i;
    for (i = 0; i < 255; i++)
        ascii[i] = (char)('a' + i % 26);
    ascii[255] = '\0';
    for (i = 0; i < 85; i++)
        memcpy(utf8 + 3 * i, "\xe6\x97\xa5", 3);
    utf8[255] = '\0';
}

/* Names keep their bytes (UTF-8, not UTF-8 where the storage takes it,
 * 255 bytes), in a listing, through stat and open; "." and ".." are never
 * listed. */
static void c_names(struct fx *fx)
{
    struct ents *got = &fx->l[0], *want = &fx->l[1];
    char ascii[256], utf8[256], p[600], why[256];
    const char *names[64];
    size_t n = 0, i;
    unsigned char buf[600];

    long_names(ascii, utf8);
    for (i = 0; i < sizeof odd_names / sizeof *odd_names; i++)
        names[n++] = odd_names[i].name;
    names[n++] = ascii;
    names[n++] = utf8;
    mkdir_ok(fx->a, "/d");
    ents_reset(want);
    for (i = 0; i < n; i++) {
        struct tm__entry st;
        size_t len;
        snprintf(p, sizeof p, "/d/%s", names[i]);
        if (tm__adapter_cannot_hold(fx->a, p, strlen(p), TM_T_FILE, why,
                                    sizeof why)) {
            print_message("[          ] %s: cannot hold '%s': %s\n", fx->spec,
                          shown(names[i], strlen(names[i])), why);
            continue;
        }
        put(fx->a, p, names[i], strlen(names[i]), 1600000000000000000LL, 0644);
        ents_add(want, names[i], strlen(names[i]), NULL);
        stat_ok(fx->a, p, &st);
        assert_int_equal(st.type, TM_T_FILE);
        assert_int_equal(st.size, (int64_t)strlen(names[i]));
        len = slurp(fx->a, p, buf, sizeof buf, &st);
        assert_int_equal(len, strlen(names[i]));
        assert_memory_equal(buf, names[i], len);
    }
    list_ok(fx->a, "/d", got);
    assert_same_names(got, want, "odd names");
    /* a folder with an odd name lists its children at its odd path */
    snprintf(p, sizeof p, "/%s", utf8);
    mkdir_ok(fx->a, p);
    snprintf(p, sizeof p, "/%s/%s", utf8, odd_names[4].name);
    put(fx->a, p, "x", 1, 1600000000000000000LL, 0644);
    snprintf(p, sizeof p, "/%s", utf8);
    list_ok(fx->a, p, got);
    assert_int_equal(got->n, 1);
    assert_string_equal(got->v[0].name, odd_names[4].name);
    list_ok(fx->a, "/", got);
    assert_int_equal(got->n, 2);
}

/* Types and sizes, through stat, the listing and open_read; open_write is
 * told the size, and the bytes come back exactly. */
static void c_types_sizes(struct fx *fx)
{
    static const size_t sizes[] = { 0, 1, 7, 8, 9, 4096, 65537, (3 << 20) + 5 };
    struct ents *got = &fx->l[0];
    struct tm__entry st;
    size_t i;
    char p[64];

    fx_buffers(fx, (3 << 20) + 5);
    mkdir_ok(fx->a, "/d");
    mkdir_ok(fx->a, "/d/sub");
    for (i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n;
        snprintf(p, sizeof p, "/d/s%zu", sizes[i]);
        pattern(fx->data, sizes[i], 77 + i);
        put(fx->a, p, fx->data, sizes[i], 1600000000000000000LL + (int64_t)i, 0644);
        stat_ok(fx->a, p, &st);
        assert_int_equal(st.type, TM_T_FILE);
        assert_int_equal(st.size, (int64_t)sizes[i]);
        n = slurp(fx->a, p, fx->back, (3 << 20) + 5, &st);
        assert_int_equal(st.size, (int64_t)sizes[i]);
        assert_int_equal(n, sizes[i]);
        if (n && memcmp(fx->back, fx->data, n) != 0)
            fail_msg("%s: bytes differ", p);
    }
    stat_ok(fx->a, "/d/sub", &st);
    assert_int_equal(st.type, TM_T_FOLDER);
    stat_ok(fx->a, "/", &st);
    assert_int_equal(st.type, TM_T_FOLDER);
    list_ok(fx->a, "/d", got);
    assert_int_equal(got->n, sizeof sizes / sizeof *sizes + 1);
    for (i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        const struct ent *x;
        snprintf(p, sizeof p, "s%zu", sizes[i]);
        x = ents_find(got, p);
        assert_non_null(x);
        assert_int_equal(x->type, TM_T_FILE);
        assert_int_equal(x->size, (int64_t)sizes[i]);
    }
    assert_int_equal(ents_find(got, "sub")->type, TM_T_FOLDER);
    assert_list_agrees_with_stat(fx, "/d", got);
}

/* With TM_CAP_MODES: the modes commit and set_attr give come back through
 * stat and the listing. */
static void c_modes(struct fx *fx)
{
    static const uint32_t fmodes[] = { 0600, 0640, 0644, 0755, 0700, 0444, 0604 };
    static const uint32_t dmodes[] = { 0750, 0711, 0755, 0700 };
    struct ents *got = &fx->l[0];
    struct tm__entry st;
    struct tm__aerr e;
    size_t i;
    char p[64];
    int rc;

    if (!(fx->a->caps & TM_CAP_MODES))
        skip_because(fx, "no TM_CAP_MODES");
    mkdir_ok(fx->a, "/m");
    for (i = 0; i < sizeof fmodes / sizeof *fmodes; i++) {
        snprintf(p, sizeof p, "/m/f%03o", fmodes[i]);
        put(fx->a, p, "mode", 4, 1600000000000000000LL, fmodes[i]);
        stat_ok(fx->a, p, &st);
        assert_int_equal(st.mode & 07777, fmodes[i]);
    }
    for (i = 0; i < sizeof dmodes / sizeof *dmodes; i++) {
        snprintf(p, sizeof p, "/m/d%03o", dmodes[i]);
        mkdir_ok(fx->a, p);
        rc = tm__adapter_set_attr(fx->a, p, TM_MTIME_KEEP, dmodes[i], &e);
        if (rc == TM_ENOTSUP)
            skip_because(fx, "no folder attributes (set_attr)");
        assert_ok(rc, &e);
        stat_ok(fx->a, p, &st);
        assert_int_equal(st.mode & 07777, dmodes[i]);
    }
    list_ok(fx->a, "/m", got);
    assert_int_equal(got->n, sizeof fmodes / sizeof *fmodes + sizeof dmodes / sizeof *dmodes);
    for (i = 0; i < got->n; i++) {
        unsigned m = (unsigned)strtoul(got->v[i].name + 1, NULL, 8);
        if ((got->v[i].mode & 07777) != m)
            fail_msg("%s listed with mode %o", got->v[i].name, got->v[i].mode);
    }
    assert_list_agrees_with_stat(fx, "/m", got);
}

/* Times of the cases: ns since the epoch. */
static const int64_t mtimes[] = {
    1600000000123456789LL, /* 2020, nanoseconds */
    1354040105000000001LL, /* 2012, one ns past a second */
    1000000000999999999LL, /* 2001, one ns before a second */
    315532800000000000LL,  /* 1980-01-01 exactly */
    1000000001LL,          /* 1970-01-01 00:00:01.000000001 */
    2147483647000000000LL, /* 2038-01-19 03:14:07, the 32-bit end */
    4102444800500000000LL, /* 2100-01-01 00:00:00.5 */
};

/* Mtimes given to commit, symlink and set_attr come back through stat,
 * fstat and the listing, to the storage's mtime_precision. */
static void c_mtimes(struct fx *fx)
{
    struct ents *got = &fx->l[0];
    struct tm__entry st;
    struct tm__aerr e;
    size_t i;
    char p[64];
    int rc, folders = 1;

    assert_true(fx->a->mtime_precision >= 1);
    assert_true(fx->a->mtime_precision <= 2000000000LL);
    mkdir_ok(fx->a, "/t");
    for (i = 0; i < sizeof mtimes / sizeof *mtimes; i++) {
        unsigned char b[8];
        snprintf(p, sizeof p, "/t/f%zu", i);
        put(fx->a, p, "mtime", 5, mtimes[i], 0644);
        stat_ok(fx->a, p, &st);
        assert_mtime(fx, st.mtime, mtimes[i]);
        slurp(fx->a, p, b, sizeof b, &st); /* open_read's and fstat's */
        assert_mtime(fx, st.mtime, mtimes[i]);
        if (fx->a->caps & TM_CAP_SYMLINKS) {
            snprintf(p, sizeof p, "/t/l%zu", i);
            assert_ok(tm__adapter_symlink(fx->a, p, "target", mtimes[i], 0, &e), &e);
            stat_ok(fx->a, p, &st);
            assert_mtime(fx, st.mtime, mtimes[i]);
        }
        snprintf(p, sizeof p, "/t/d%zu", i);
        mkdir_ok(fx->a, p);
        rc = tm__adapter_set_attr(fx->a, p, mtimes[i], 0755, &e);
        if (rc == TM_ENOTSUP) {
            folders = 0;
            continue;
        }
        assert_ok(rc, &e);
        stat_ok(fx->a, p, &st);
        assert_mtime(fx, st.mtime, mtimes[i]);
    }
    list_ok(fx->a, "/t", got);
    for (i = 0; i < got->n; i++) {
        const struct ent *x = &got->v[i];
        size_t k = (size_t)atoi(x->name + 1);
        assert_true(k < sizeof mtimes / sizeof *mtimes);
        if (x->name[0] == 'd' && !folders)
            continue;
        if (!same_mtime(x->mtime, mtimes[k], fx->a->mtime_precision))
            fail_msg("%s listed with mtime %lld, want %lld", x->name,
                     (long long)x->mtime, (long long)mtimes[k]);
    }
    assert_list_agrees_with_stat(fx, "/t", got);
    /* TM_MTIME_KEEP changes the mode and leaves the mtime */
    if (folders) {
        assert_ok(tm__adapter_set_attr(fx->a, "/t/d0", TM_MTIME_KEEP, 0700, &e), &e);
        stat_ok(fx->a, "/t/d0", &st);
        assert_mtime(fx, st.mtime, mtimes[0]);
        if (fx->a->caps & TM_CAP_MODES)
            assert_int_equal(st.mode & 07777, 0700);
    }
}

/* With TM_CAP_SYMLINKS: symlinks are made, read back, listed as symlinks
 * with their target's length, never followed, replaced only when asked. */
static void c_symlinks(struct fx *fx)
{
    struct ents *got = &fx->l[0];
    struct tm__buf t = TM__BUF_INIT;
    struct tm__entry st;
    struct tm__aerr e;
    struct tm__rfile *rf;
    char big[201];
    const char *targets[4];
    size_t i;
    int rc;

    if (!(fx->a->caps & TM_CAP_SYMLINKS))
        skip_because(fx, "no TM_CAP_SYMLINKS");
    memset(big, 'x', 200);
    big[200] = '\0';
    targets[0] = "dangling/target";
    targets[1] = "/an/absolute/path";
    targets[2] = big;
    targets[3] = "dir"; /* a folder beside it: never followed */
    mkdir_ok(fx->a, "/s");
    mkdir_ok(fx->a, "/s/dir");
    put(fx->a, "/s/dir/inside", "in", 2, 1600000000000000000LL, 0644);
    for (i = 0; i < 4; i++) {
        char p[32];
        snprintf(p, sizeof p, "/s/l%zu", i);
        assert_ok(tm__adapter_symlink(fx->a, p, targets[i], 1600000000000000000LL,
                                      TM_NOREPLACE, &e), &e);
        stat_ok(fx->a, p, &st);
        assert_int_equal(st.type, TM_T_SYMLINK);
        assert_int_equal(st.size, (int64_t)strlen(targets[i]));
        assert_ok(tm__adapter_readlink(fx->a, p, &t, &e), &e);
        assert_int_equal(t.len, strlen(targets[i]));
        assert_memory_equal(t.buf, targets[i], t.len);
    }
    list_ok(fx->a, "/s", got);
    assert_int_equal(got->n, 5); /* no temporary left beside them */
    for (i = 0; i < 4; i++) {
        char name[8];
        const struct ent *x;
        snprintf(name, sizeof name, "l%zu", i);
        x = ents_find(got, name);
        assert_non_null(x);
        assert_int_equal(x->type, TM_T_SYMLINK);
        assert_int_equal(x->size, (int64_t)strlen(targets[i]));
    }
    assert_list_agrees_with_stat(fx, "/s", got);
    /* never followed: not read as a file, not listed as a folder */
    rc = tm__adapter_open_read(fx->a, "/s/l3", &rf, &st, &e);
    if (rc == 0) {
        tm__adapter_close_read(rf);
        fail_msg("open_read followed a symlink");
    }
    assert_int_equal(e.cls, TM_ERR_NODE);
    rc = list_err(fx->a, "/s/l3", &e);
    if (rc != TM_ENOTDIR && rc != TM_ELOOP)
        fail_msg("listing a symlink to a folder: %s, want ENOTDIR or ELOOP",
                 tm_err_name(rc));
    assert_int_equal(e.cls, TM_ERR_NODE);
    /* TM_NOREPLACE over a symlink or a file: EEXIST, untouched */
    rc = tm__adapter_symlink(fx->a, "/s/l0", "other", 1600000000000000000LL,
                             TM_NOREPLACE, &e);
    assert_aerr(rc, &e, TM_EEXIST, TM_ERR_NODE);
    assert_ok(tm__adapter_readlink(fx->a, "/s/l0", &t, &e), &e);
    assert_int_equal(t.len, strlen(targets[0]));
    assert_memory_equal(t.buf, targets[0], t.len);
    rc = tm__adapter_symlink(fx->a, "/s/dir/inside", "other", 1600000000000000000LL,
                             TM_NOREPLACE, &e);
    assert_aerr(rc, &e, TM_EEXIST, TM_ERR_NODE);
    stat_ok(fx->a, "/s/dir/inside", &st);
    assert_int_equal(st.type, TM_T_FILE);
    /* without it: replaced */
    assert_ok(tm__adapter_symlink(fx->a, "/s/l0", "other", 1700000000000000000LL, 0,
                                  &e), &e);
    assert_ok(tm__adapter_readlink(fx->a, "/s/l0", &t, &e), &e);
    assert_int_equal(t.len, 5);
    assert_memory_equal(t.buf, "other", 5);
    stat_ok(fx->a, "/s/l0", &st);
    assert_mtime(fx, st.mtime, 1700000000000000000LL);
    /* over a folder: refused, the folder stays */
    rc = tm__adapter_symlink(fx->a, "/s/dir", "x", 1600000000000000000LL, 0, &e);
    assert_int_not_equal(rc, 0);
    assert_int_equal(e.code, rc);
    stat_ok(fx->a, "/s/dir", &st);
    assert_int_equal(st.type, TM_T_FOLDER);
    /* readlink of what is not a symlink */
    rc = tm__adapter_readlink(fx->a, "/s/dir/inside", &t, &e);
    assert_aerr(rc, &e, TM_EINVAL, TM_ERR_NODE);
    rc = tm__adapter_readlink(fx->a, "/s/missing", &t, &e);
    assert_aerr(rc, &e, TM_ENOENT, TM_ERR_NODE);
    list_ok(fx->a, "/s", got);
    assert_int_equal(got->n, 5);
    tm__buf_release(&t);
}

/* ------------------------------------------------------------ cases: writes */

/* Nothing is visible under the real name before commit: neither a new
 * file nor the new bytes of a replaced one. */
static void c_write_invisible(struct fx *fx)
{
    struct ents *got = &fx->l[0];
    struct tm__wattr w = wattr(6, 1600000000000000000LL, 0644);
    struct tm__wfile *f;
    struct tm__entry st;
    struct tm__aerr e;
    unsigned char b[16];
    int rc;

    mkdir_ok(fx->a, "/w");
    put(fx->a, "/w/old", "old", 3, 1500000000000000000LL, 0644);
    assert_ok(tm__adapter_open_write(fx->a, "/w/new", &w, &f, &e), &e);
    assert_int_equal(tm__adapter_write(f, "new", 3, &e), 3);
    rc = tm__adapter_stat(fx->a, "/w/new", &st, &e);
    assert_aerr(rc, &e, TM_ENOENT, TM_ERR_NODE);
    list_ok(fx->a, "/w", got);
    assert_null(ents_find(got, "new"));
    assert_int_equal(tm__adapter_write(f, "new", 3, &e), 3);
    assert_ok(tm__adapter_commit(f, 1600000000000000000LL, 0644, 0, &e), &e);
    stat_ok(fx->a, "/w/new", &st);
    assert_int_equal(st.size, 6);
    list_ok(fx->a, "/w", got);
    assert_int_equal(got->n, 2); /* old, new: no temporary left */
    assert_non_null(ents_find(got, "new"));

    /* a replacement: the old bytes until the commit */
    w = wattr(9, 1600000000000000000LL, 0644);
    assert_ok(tm__adapter_open_write(fx->a, "/w/old", &w, &f, &e), &e);
    assert_int_equal(tm__adapter_write(f, "replaced!", 9, &e), 9);
    stat_ok(fx->a, "/w/old", &st);
    assert_int_equal(st.size, 3);
    assert_mtime(fx, st.mtime, 1500000000000000000LL);
    assert_int_equal(slurp(fx->a, "/w/old", b, sizeof b, &st), 3);
    assert_memory_equal(b, "old", 3);
    list_ok(fx->a, "/w", got);
    assert_int_equal(ents_find(got, "old")->size, 3);
    assert_ok(tm__adapter_commit(f, 1600000000000000000LL, 0644, 0, &e), &e);
    assert_int_equal(slurp(fx->a, "/w/old", b, sizeof b, &st), 9);
    assert_memory_equal(b, "replaced!", 9);
    list_ok(fx->a, "/w", got);
    assert_int_equal(got->n, 2);
}

/* abort leaves nothing: no file, no temporary, the old file untouched. */
static void c_write_abort(struct fx *fx)
{
    struct ents *got = &fx->l[0];
    struct tm__wattr w = wattr(5, 1600000000000000000LL, 0644);
    struct tm__wfile *f;
    struct tm__entry st;
    struct tm__aerr e;
    unsigned char b[16];

    mkdir_ok(fx->a, "/a");
    assert_ok(tm__adapter_open_write(fx->a, "/a/f", &w, &f, &e), &e);
    assert_int_equal(tm__adapter_write(f, "bytes", 5, &e), 5);
    tm__adapter_abort(f);
    assert_aerr(tm__adapter_stat(fx->a, "/a/f", &st, &e), &e, TM_ENOENT, TM_ERR_NODE);
    list_ok(fx->a, "/a", got);
    if (got->n)
        fail_msg("an aborted write left '%s'", shown(got->v[0].name, got->v[0].len));
    /* aborted before any byte */
    assert_ok(tm__adapter_open_write(fx->a, "/a/g", &w, &f, &e), &e);
    tm__adapter_abort(f);
    list_ok(fx->a, "/a", got);
    assert_int_equal(got->n, 0);
    /* an aborted replacement leaves the old file as it was */
    put(fx->a, "/a/keep", "kept", 4, 1500000000000000000LL, 0640);
    assert_ok(tm__adapter_open_write(fx->a, "/a/keep", &w, &f, &e), &e);
    assert_int_equal(tm__adapter_write(f, "other", 5, &e), 5);
    tm__adapter_abort(f);
    assert_int_equal(slurp(fx->a, "/a/keep", b, sizeof b, &st), 4);
    assert_memory_equal(b, "kept", 4);
    assert_mtime(fx, st.mtime, 1500000000000000000LL);
    list_ok(fx->a, "/a", got);
    assert_int_equal(got->n, 1);
}

/* commit with TM_NOREPLACE over a name taken fails with TM_EEXIST and
 * leaves what is there; without it, a file is replaced. */
static void c_write_replace(struct fx *fx)
{
    struct ents *got = &fx->l[0];
    struct tm__entry st;
    struct tm__aerr e;
    unsigned char b[16];
    int64_t rc;

    mkdir_ok(fx->a, "/r");
    mkdir_ok(fx->a, "/r/dir");
    put(fx->a, "/r/f", "first", 5, 1500000000000000000LL, 0640);
    rc = put_rc(fx->a, "/r/f", "second!", 7, 1600000000000000000LL, 0600,
                TM_NOREPLACE, &e);
    assert_aerr(rc, &e, TM_EEXIST, TM_ERR_NODE);
    assert_int_equal(slurp(fx->a, "/r/f", b, sizeof b, &st), 5);
    assert_memory_equal(b, "first", 5);
    assert_mtime(fx, st.mtime, 1500000000000000000LL);
    stat_ok(fx->a, "/r/f", &st);
    assert_int_equal(st.size, 5);
    if (fx->a->caps & TM_CAP_MODES)
        assert_int_equal(st.mode & 07777, 0640);
    list_ok(fx->a, "/r", got);
    assert_int_equal(got->n, 2); /* dir, f: no temporary left */
    /* TM_NOREPLACE over a folder: refused, the folder stays */
    rc = put_rc(fx->a, "/r/dir", "x", 1, 1600000000000000000LL, 0644,
                TM_NOREPLACE, &e);
    assert_int_not_equal(rc, 0);
    stat_ok(fx->a, "/r/dir", &st);
    assert_int_equal(st.type, TM_T_FOLDER);
    /* without TM_NOREPLACE over a folder: refused too */
    rc = put_rc(fx->a, "/r/dir", "x", 1, 1600000000000000000LL, 0644, 0, &e);
    assert_int_not_equal(rc, 0);
    assert_int_equal(e.code, (int)rc);
    stat_ok(fx->a, "/r/dir", &st);
    assert_int_equal(st.type, TM_T_FOLDER);
    /* TM_NOREPLACE on a free name: made */
    assert_ok(put_rc(fx->a, "/r/g", "g", 1, 1600000000000000000LL, 0644,
                     TM_NOREPLACE, &e), &e);
    /* without it: replaced, with the new attributes */
    put(fx->a, "/r/f", "second!", 7, 1600000000000000000LL, 0600);
    assert_int_equal(slurp(fx->a, "/r/f", b, sizeof b, &st), 7);
    assert_memory_equal(b, "second!", 7);
    assert_mtime(fx, st.mtime, 1600000000000000000LL);
    stat_ok(fx->a, "/r/f", &st);
    if (fx->a->caps & TM_CAP_MODES)
        assert_int_equal(st.mode & 07777, 0600);
    list_ok(fx->a, "/r", got);
    assert_int_equal(got->n, 3);
    assert_int_equal(ents_find(got, "f")->size, 7);
}

/* copy_from between two storages of one kind (when the storage has it):
 * the bytes arrive, from a file of either kind of content. */
static void c_copy_from(struct fx *fx)
{
    static const size_t sizes[] = { 0, 8, 100003 };
    struct fx *dst;
    struct tm__entry st;
    struct tm__aerr e;
    size_t i;

    if (!fx->a->copy_from)
        skip_because(fx, "no copy_from");
    dst = fx_another(fx);
    assert_int_equal(tm__adapter_can_copy_from(dst->a, fx->a), 1);
    fx_buffers(fx, 100003);
    for (i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        struct tm__wattr w = wattr((int64_t)sizes[i], 1600000000000000000LL, 0644);
        struct tm__rfile *in;
        struct tm__wfile *out;
        char p[32];
        int64_t done = 0, n;
        snprintf(p, sizeof p, "/c%zu", sizes[i]);
        pattern(fx->data, sizes[i], 5 + i);
        put(fx->a, p, fx->data, sizes[i], 1500000000000000000LL, 0644);
        assert_ok(tm__adapter_open_read(fx->a, p, &in, &st, &e), &e);
        assert_int_equal(st.size, (int64_t)sizes[i]);
        assert_ok(tm__adapter_open_write(dst->a, p, &w, &out, &e), &e);
        while (done < (int64_t)sizes[i]) {
            n = tm__adapter_copy_from(out, in, (int64_t)sizes[i] - done, &e);
            if (n <= 0)
                fail_msg("copy_from %s: %lld (%s)", p, (long long)n, e.msg);
            done += n;
        }
        tm__adapter_close_read(in);
        assert_ok(tm__adapter_commit(out, 1600000000000000000LL, 0644, 0, &e), &e);
        assert_int_equal(slurp(dst->a, p, fx->back, 100003, &st), sizes[i]);
        if (sizes[i] && memcmp(fx->back, fx->data, sizes[i]) != 0)
            fail_msg("%s: copied bytes differ", p);
        assert_mtime(dst, st.mtime, 1600000000000000000LL);
    }
}

/* ------------------------------------------------------------ cases: mkdir */

/* A folder already there is success (and left as it is); a file there is
 * TM_EEXIST; a missing parent is TM_ENOENT; a file is not committed over
 * a folder. */
static void c_mkdir(struct fx *fx)
{
    struct ents *got = &fx->l[0];
    struct tm__entry st;
    struct tm__aerr e;
    int64_t rc;

    mkdir_ok(fx->a, "/k");
    stat_ok(fx->a, "/k", &st);
    assert_int_equal(st.type, TM_T_FOLDER);
    mkdir_ok(fx->a, "/k/sub");
    put(fx->a, "/k/sub/f", "f", 1, 1600000000000000000LL, 0644);
    /* a name that sorts between "sub" and "sub/" (where an object store
     * keeps the folder's keys) does not hide the folder */
    put(fx->a, "/k/sub-x", "x", 1, 1600000000000000000LL, 0644);
    mkdir_ok(fx->a, "/k"); /* there already */
    mkdir_ok(fx->a, "/k/sub");
    list_ok(fx->a, "/k/sub", got);
    assert_int_equal(got->n, 1); /* and nothing of it lost */
    rc = put_rc(fx->a, "/k/sub", "x", 1, 1600000000000000000LL, 0644, 0, &e);
    assert_int_not_equal(rc, 0); /* a file over the folder: refused */
    assert_int_equal(e.code, (int)rc);
    stat_ok(fx->a, "/k/sub", &st);
    assert_int_equal(st.type, TM_T_FOLDER);
    /* a folder there already is left as it is: its attributes too */
    rc = tm__adapter_set_attr(fx->a, "/k/sub", 1500000000000000000LL, 0750, &e);
    if (rc != TM_ENOTSUP) {
        assert_ok(rc, &e);
        mkdir_ok(fx->a, "/k/sub");
        stat_ok(fx->a, "/k/sub", &st);
        assert_mtime(fx, st.mtime, 1500000000000000000LL);
        if (fx->a->caps & TM_CAP_MODES)
            assert_int_equal(st.mode & 07777, 0750);
    }
    assert_aerr(tm__adapter_mkdir(fx->a, "/k/sub/f", &e), &e, TM_EEXIST, TM_ERR_NODE);
    stat_ok(fx->a, "/k/sub/f", &st);
    assert_int_equal(st.type, TM_T_FILE);
    assert_aerr(tm__adapter_mkdir(fx->a, "/missing/x", &e), &e, TM_ENOENT,
                TM_ERR_NODE);
    assert_aerr(tm__adapter_stat(fx->a, "/missing", &st, &e), &e, TM_ENOENT,
                TM_ERR_NODE);
    if (fx->a->caps & TM_CAP_SYMLINKS) {
        assert_ok(tm__adapter_symlink(fx->a, "/k/link", "sub", 1600000000000000000LL,
                                      0, &e), &e);
        assert_aerr(tm__adapter_mkdir(fx->a, "/k/link", &e), &e, TM_EEXIST,
                    TM_ERR_NODE);
        stat_ok(fx->a, "/k/link", &st);
        assert_int_equal(st.type, TM_T_SYMLINK);
    }
    list_ok(fx->a, "/", got);
    assert_int_equal(got->n, 1);
}

/* The content of the file at path must be want (n bytes). */
static void content_is(struct tm__adapter *a, const char *path, const char *want,
                       size_t n)
{
    unsigned char buf[64];
    struct tm__entry st;
    size_t got = slurp(a, path, buf, sizeof buf, &st);
    assert_int_equal(got, n);
    assert_memory_equal(buf, want, n);
}

/* remove (the mirror; optional): only the node discovery recorded (type,
 * a file's size and mtime) is removed, a folder only when empty; what
 * differs is TM_ECHANGED and stays, nothing there is TM_ENOENT; with a
 * backup folder a file is moved there, its path kept. */
static void c_remove(struct fx *fx)
{
    const int64_t t = 1600000000000000000LL;
    struct ents *got = &fx->l[0];
    struct tm__entry st, want;
    struct tm__aerr e;

    if (!fx->a->remove)
        skip_because(fx, "no remove");
    mkdir_ok(fx->a, "/r");
    put(fx->a, "/r/f", "abc", 3, t, 0644);
    mkdir_ok(fx->a, "/r/d");
    put(fx->a, "/r/d/g", "g", 1, t, 0644);
    stat_ok(fx->a, "/r/f", &want);
    /* not what discovery recorded: kept */
    want.size = 4;
    assert_aerr(tm__adapter_remove(fx->a, "/r/f", &want, NULL, &e), &e,
                TM_ECHANGED, TM_ERR_NODE);
    want.size = 3;
    want.type = TM_T_FOLDER;
    assert_aerr(tm__adapter_remove(fx->a, "/r/f", &want, NULL, &e), &e,
                TM_ECHANGED, TM_ERR_NODE);
    want.type = TM_T_FILE;
    content_is(fx->a, "/r/f", "abc", 3);
    assert_ok(tm__adapter_remove(fx->a, "/r/f", &want, NULL, &e), &e);
    assert_aerr(tm__adapter_stat(fx->a, "/r/f", &st, &e), &e, TM_ENOENT,
                TM_ERR_NODE);
    assert_int_equal(tm__adapter_remove(fx->a, "/r/f", &want, NULL, &e), TM_ENOENT);
    /* a folder that is not empty: kept, with what it holds */
    stat_ok(fx->a, "/r/d", &want);
    assert_aerr(tm__adapter_remove(fx->a, "/r/d", &want, NULL, &e), &e,
                TM_ECHANGED, TM_ERR_NODE);
    content_is(fx->a, "/r/d/g", "g", 1);
    stat_ok(fx->a, "/r/d/g", &st);
    assert_ok(tm__adapter_remove(fx->a, "/r/d/g", &st, NULL, &e), &e);
    assert_ok(tm__adapter_remove(fx->a, "/r/d", &want, NULL, &e), &e);
    assert_aerr(tm__adapter_stat(fx->a, "/r/d", &st, &e), &e, TM_ENOENT,
                TM_ERR_NODE);
    if (fx->a->caps & TM_CAP_SYMLINKS) {
        assert_ok(tm__adapter_symlink(fx->a, "/r/l", "d", t, 0, &e), &e);
        stat_ok(fx->a, "/r/l", &st);
        assert_ok(tm__adapter_remove(fx->a, "/r/l", &st, NULL, &e), &e);
    }
    /* with a backup folder: the file goes there, its path kept, and
     * replaces what an earlier run left there */
    put(fx->a, "/r/x", "old", 3, t, 0644);
    mkdir_ok(fx->a, "/.bk");
    mkdir_ok(fx->a, "/.bk/r");
    put(fx->a, "/.bk/r/x", "stale", 5, t, 0644);
    stat_ok(fx->a, "/r/x", &want);
    assert_ok(tm__adapter_remove(fx->a, "/r/x", &want, "/.bk", &e), &e);
    assert_aerr(tm__adapter_stat(fx->a, "/r/x", &st, &e), &e, TM_ENOENT,
                TM_ERR_NODE);
    content_is(fx->a, "/.bk/r/x", "old", 3);
    list_ok(fx->a, "/r", got);
    assert_int_equal(got->n, 0);
}

/* backup (--backup-dir; optional): the file at path goes to dir + path,
 * the folders on the way made; a folder is TM_EISDIR, nothing there
 * TM_ENOENT. */
static void c_backup(struct fx *fx)
{
    const int64_t t = 1600000000000000000LL;
    struct tm__entry st;
    struct tm__aerr e;

    if (!fx->a->backup)
        skip_because(fx, "no backup");
    mkdir_ok(fx->a, "/b");
    mkdir_ok(fx->a, "/b/sub");
    put(fx->a, "/b/sub/y", "yy", 2, t, 0644);
    assert_ok(tm__adapter_backup(fx->a, "/b/sub/y", "/keep/old", &e), &e);
    assert_aerr(tm__adapter_stat(fx->a, "/b/sub/y", &st, &e), &e, TM_ENOENT,
                TM_ERR_NODE);
    content_is(fx->a, "/keep/old/b/sub/y", "yy", 2);
    stat_ok(fx->a, "/keep/old/b/sub/y", &st);
    assert_int_equal(st.size, 2);
    assert_true(same_mtime(st.mtime, t, fx->a->mtime_precision));
    assert_aerr(tm__adapter_backup(fx->a, "/b/sub", "/keep/old", &e), &e,
                TM_EISDIR, TM_ERR_NODE);
    assert_int_equal(tm__adapter_backup(fx->a, "/b/none", "/keep/old", &e),
                     TM_ENOENT);
    stat_ok(fx->a, "/b/sub", &st);
    assert_int_equal(st.type, TM_T_FOLDER);
}

/* mkdir_attr (optional): the folder made has its mode and mtime at once;
 * writing into it, files or folders, changes neither; a folder there
 * already is given them; a file there is TM_EEXIST, a missing parent
 * TM_ENOENT, as with mkdir. */
static void c_mkdir_attr(struct fx *fx)
{
    const int64_t t1 = 1500000000123000000LL, t2 = 1400000000000000000LL;
    struct ents *got = &fx->l[0];
    struct tm__entry st;
    struct tm__aerr e;

    if (!fx->a->mkdir_attr)
        skip_because(fx, "no mkdir_attr");
    assert_ok(tm__adapter_mkdir_attr(fx->a, "/ma", t1, 0750, &e), &e);
    /* a child of a folder made a moment ago, then one of a folder made
     * with mkdir_attr by its parent's listing only */
    assert_ok(tm__adapter_mkdir_attr(fx->a, "/ma/sub", t2, 0700, &e), &e);
    put(fx->a, "/ma/f", "f", 1, 1600000000000000000LL, 0644);
    mkdir_ok(fx->a, "/ma/sub/deeper");
    put(fx->a, "/ma/sub/g", "g", 1, 1600000000000000000LL, 0644);
    stat_ok(fx->a, "/ma", &st);
    assert_int_equal(st.type, TM_T_FOLDER);
    assert_mtime(fx, st.mtime, t1);
    if (fx->a->caps & TM_CAP_MODES)
        assert_int_equal(st.mode & 07777, 0750);
    stat_ok(fx->a, "/ma/sub", &st);
    assert_mtime(fx, st.mtime, t2);
    if (fx->a->caps & TM_CAP_MODES)
        assert_int_equal(st.mode & 07777, 0700);
    /* there already: given the new attributes, its children kept */
    assert_ok(tm__adapter_mkdir_attr(fx->a, "/ma", t2, 0755, &e), &e);
    stat_ok(fx->a, "/ma", &st);
    assert_mtime(fx, st.mtime, t2);
    if (fx->a->caps & TM_CAP_MODES)
        assert_int_equal(st.mode & 07777, 0755);
    list_ok(fx->a, "/ma", got);
    assert_int_equal(got->n, 2);
    assert_aerr(tm__adapter_mkdir_attr(fx->a, "/ma/f", t1, 0755, &e), &e, TM_EEXIST,
                TM_ERR_NODE);
    stat_ok(fx->a, "/ma/f", &st);
    assert_int_equal(st.type, TM_T_FILE);
    assert_aerr(tm__adapter_mkdir_attr(fx->a, "/nothing/x", t1, 0755, &e), &e,
                TM_ENOENT, TM_ERR_NODE);
    assert_aerr(tm__adapter_mkdir_attr(fx->a, "/ma/f/x", t1, 0755, &e), &e,
                TM_ENOTDIR, TM_ERR_NODE);
}

/* ------------------------------------------------------------ cases: errors */

/* Failing calls: the code, the class and a message, for each. */
static void c_errors(struct fx *fx)
{
    struct tm__rfile *rf;
    struct tm__entry st;
    struct tm__aerr e;
    int rc;

    mkdir_ok(fx->a, "/e");
    put(fx->a, "/e/file", "file", 4, 1600000000000000000LL, 0644);
    assert_aerr(list_err(fx->a, "/nothing", &e), &e, TM_ENOENT, TM_ERR_NODE);
    assert_aerr(list_err(fx->a, "/e/nothing", &e), &e, TM_ENOENT, TM_ERR_NODE);
    assert_aerr(list_err(fx->a, "/nothing/below", &e), &e, TM_ENOENT, TM_ERR_NODE);
    assert_aerr(tm__adapter_stat(fx->a, "/nothing", &st, &e), &e, TM_ENOENT,
                TM_ERR_NODE);
    assert_aerr(tm__adapter_stat(fx->a, "/e/nothing", &st, &e), &e, TM_ENOENT,
                TM_ERR_NODE);
    assert_aerr(tm__adapter_stat(fx->a, "/nothing/below", &st, &e), &e, TM_ENOENT,
                TM_ERR_NODE);
    assert_aerr(list_err(fx->a, "/e/file", &e), &e, TM_ENOTDIR, TM_ERR_NODE);
    rc = tm__adapter_open_read(fx->a, "/e", &rf, &st, &e);
    assert_aerr(rc, &e, TM_EISDIR, TM_ERR_NODE);
    assert_null(rf);
    rc = tm__adapter_open_read(fx->a, "/e/nothing", &rf, &st, &e);
    assert_aerr(rc, &e, TM_ENOENT, TM_ERR_NODE);
    assert_null(rf);
    /* a good call after a failed one: no detail left over */
    stat_ok(fx->a, "/e/file", &st);
    assert_int_equal(tm__adapter_stat(fx->a, "/e/file", &st, &e), 0);
    assert_int_equal(e.code, 0);
    assert_int_equal(e.msg[0], '\0');
}

/* A path that is not root-relative is refused by the wrapper with
 * TM_EINVAL, and never reaches the storage (the counts of a fault layer
 * around it do not move). */
static void c_bad_paths(struct fx *fx)
{
    static const char *const bad[] = { "", "e", "e/f", "./e", "../e", "/..",
                                       "/../e", "/e/../../x", "/e/..", "/.",
                                       "/e/.", "/./e", "/e/./f", "//.." };
    struct tm__wattr w = wattr(1, 0, 0644);
    struct tm__lister *lr;
    struct tm__rfile *rf;
    struct tm__wfile *wf;
    struct tm__buf t = TM__BUF_INIT;
    struct tm__entry st;
    struct tm__aerr e;
    size_t i;
    int op;
    long long before[TM_FOP_COUNT];

    mkdir_ok(fx->a, "/e");
    fx_fault(fx, ""); /* counts what reaches the storage */
    for (op = 0; op < TM_FOP_COUNT; op++)
        before[op] = tm__fault_calls(fx->a, op);
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *p = bad[i];
        assert_aerr(tm__adapter_list_open(fx->a, p, NULL, 0, &lr, &e), &e, TM_EINVAL,
                    TM_ERR_NODE);
        assert_null(lr);
        assert_aerr(tm__adapter_stat(fx->a, p, &st, &e), &e, TM_EINVAL, TM_ERR_NODE);
        assert_aerr(tm__adapter_open_read(fx->a, p, &rf, &st, &e), &e, TM_EINVAL,
                    TM_ERR_NODE);
        assert_aerr(tm__adapter_open_write(fx->a, p, &w, &wf, &e), &e, TM_EINVAL,
                    TM_ERR_NODE);
        assert_aerr(tm__adapter_mkdir(fx->a, p, &e), &e, TM_EINVAL, TM_ERR_NODE);
        assert_aerr(tm__adapter_readlink(fx->a, p, &t, &e), &e, TM_EINVAL,
                    TM_ERR_NODE);
        assert_aerr(tm__adapter_symlink(fx->a, p, "t", 0, 0, &e), &e, TM_EINVAL,
                    TM_ERR_NODE);
        assert_aerr(tm__adapter_set_attr(fx->a, p, 0, 0755, &e), &e, TM_EINVAL,
                    TM_ERR_NODE);
        assert_aerr(tm__adapter_chown(fx->a, p, 0, 0, &e), &e, TM_EINVAL,
                    TM_ERR_NODE);
        assert_aerr(tm__adapter_forget_write(fx->a, p, "s", 1, &e), &e, TM_EINVAL,
                    TM_ERR_NODE);
    }
    assert_aerr(tm__adapter_stat(fx->a, NULL, &st, &e), &e, TM_EINVAL, TM_ERR_NODE);
    /* open_write of the root, without attributes, of a negative size */
    assert_aerr(tm__adapter_open_write(fx->a, "/", &w, &wf, &e), &e, TM_EINVAL,
                TM_ERR_NODE);
    assert_aerr(tm__adapter_open_write(fx->a, "/e/x", NULL, &wf, &e), &e, TM_EINVAL,
                TM_ERR_NODE);
    w.size = -1;
    assert_aerr(tm__adapter_open_write(fx->a, "/e/x", &w, &wf, &e), &e, TM_EINVAL,
                TM_ERR_NODE);
    for (op = 0; op < TM_FOP_COUNT; op++)
        if (tm__fault_calls(fx->a, op) != before[op])
            fail_msg("a refused path reached the storage's %s",
                     tm__fault_op_names[op]);
    tm__buf_release(&t);
}

/* Errors the storage returns keep their class; an injected throttle asks
 * for a wait; the next call goes through. */
static void c_error_classes(struct fx *fx)
{
    struct tm__wattr w = wattr(1, 1600000000000000000LL, 0644);
    struct tm__wfile *wf;
    struct tm__rfile *rf;
    struct tm__entry st;
    struct tm__aerr e;
    struct ents *got = &fx->l[0];
    unsigned char b[4];

    mkdir_ok(fx->a, "/e");
    put(fx->a, "/e/f", "f", 1, 1600000000000000000LL, 0644);
    fx_fault(fx, "stat@1=ethrottled,list@1=ethrottled,commit@1=ethrottled,"
                 "mkdir@1=eagain,open_read@1=enospc,read@1=etimedout,"
                 "open_write@1=eacces");
    e.retry_ms = 0;
    assert_aerr(tm__adapter_stat(fx->a, "/e/f", &st, &e), &e, TM_ETHROTTLED,
                TM_ERR_THROTTLE);
    assert_true(e.retry_ms > 0);
    stat_ok(fx->a, "/e/f", &st); /* the next one goes through */
    assert_aerr(list_err(fx->a, "/e", &e), &e, TM_ETHROTTLED, TM_ERR_THROTTLE);
    assert_true(e.retry_ms > 0);
    list_ok(fx->a, "/e", got);
    assert_int_equal(got->n, 1);
    assert_aerr(tm__adapter_mkdir(fx->a, "/e/d", &e), &e, TM_EAGAIN, TM_ERR_RETRY);
    assert_int_equal(e.retry_ms, 0);
    mkdir_ok(fx->a, "/e/d");
    assert_aerr(tm__adapter_open_read(fx->a, "/e/f", &rf, &st, &e), &e, TM_ENOSPC,
                TM_ERR_FATAL);
    assert_ok(tm__adapter_open_read(fx->a, "/e/f", &rf, &st, &e), &e);
    assert_aerr(tm__adapter_read(rf, b, sizeof b, &e), &e, TM_ETIMEDOUT,
                TM_ERR_RETRY);
    assert_int_equal(tm__adapter_read(rf, b, sizeof b, &e), 1);
    tm__adapter_close_read(rf);
    assert_aerr(tm__adapter_open_write(fx->a, "/e/g", &w, &wf, &e), &e, TM_EACCES,
                TM_ERR_NODE);
    /* a throttled commit leaves nothing behind (no temporary) */
    assert_ok(tm__adapter_open_write(fx->a, "/e/g", &w, &wf, &e), &e);
    assert_int_equal(tm__adapter_write(wf, "g", 1, &e), 1);
    assert_aerr(tm__adapter_commit(wf, 1600000000000000000LL, 0644, 0, &e), &e,
                TM_ETHROTTLED, TM_ERR_THROTTLE);
    assert_true(e.retry_ms > 0);
    list_ok(fx->a, "/e", got);
    assert_int_equal(got->n, 2); /* f, d */
    assert_null(ents_find(got, "g"));
}

/* ------------------------------------------------------------ cases: owners, threads */

/* With TM_CAP_OWNER: the owner commit and chown set comes back (the
 * storage's own owner always; another one when we may give it away). */
static void c_owner(struct fx *fx)
{
    struct tm__wattr w = wattr(1, 1600000000000000000LL, 0644);
    struct tm__wfile *wf;
    struct tm__entry root, st;
    struct tm__aerr e;
    struct ents *got = &fx->l[0];
    int64_t other[2];
    int i;

    if (!(fx->a->caps & TM_CAP_OWNER))
        skip_because(fx, "no TM_CAP_OWNER");
    stat_ok(fx->a, "/", &root);
    other[0] = root.uid;
    other[1] = geteuid() == 0 && root.uid == 0 ? 65534 : root.uid;
    for (i = 0; i < 2; i++) {
        char f[16], d[16];
        snprintf(f, sizeof f, "/o%d", i);
        snprintf(d, sizeof d, "/od%d", i);
        assert_ok(tm__adapter_open_write(fx->a, f, &w, &wf, &e), &e);
        assert_int_equal(tm__adapter_write(wf, "o", 1, &e), 1);
        wf->set_owner = 1;
        wf->uid = other[i];
        wf->gid = other[i] == root.uid ? root.gid : other[i];
        assert_ok(tm__adapter_commit(wf, 1600000000000000000LL, 0644, 0, &e), &e);
        stat_ok(fx->a, f, &st);
        assert_int_equal(st.uid, other[i]);
        assert_int_equal(st.gid, other[i] == root.uid ? root.gid : other[i]);
        mkdir_ok(fx->a, d);
        assert_ok(tm__adapter_chown(fx->a, d, other[i],
                                    other[i] == root.uid ? root.gid : other[i], &e), &e);
        stat_ok(fx->a, d, &st);
        assert_int_equal(st.uid, other[i]);
    }
    if (other[1] == root.uid)
        print_message("[          ] %s: owner kept, not given away (not root)\n",
                      fx->spec);
    list_ok(fx->a, "/", got);
    assert_int_equal(got->n, 4);
    for (i = 0; i < (int)got->n; i++)
        assert_int_equal(got->v[i].uid, got->v[i].name[1] == '1' ||
                                        got->v[i].name[2] == '1' ? other[1] : other[0]);
}

#define T_THREADS 4
#define T_FILES 40

/* One worker of c_threads. */
struct tw {
    struct tm__adapter *a; /* shared by every worker */
    int id;                /* which */
    char err[512];         /* what went wrong, or "" */
};

static int count_cb(void *ctx, const struct tm__entry *e)
{
    (void)e;
    (*(int *)ctx)++;
    return 0;
}

static void *tw_main(void *arg)
{
    struct tw *t = arg;
    struct tm__aerr e;
    struct tm__entry st;
    char dir[32], p[64];
    int i, n, rc;

    snprintf(dir, sizeof dir, "/t%d", t->id);
    if ((rc = tm__adapter_mkdir(t->a, dir, &e)) != 0) {
        snprintf(t->err, sizeof t->err, "mkdir %s: %s", dir, e.msg);
        return NULL;
    }
    for (i = 0; i < T_FILES; i++) {
        snprintf(p, sizeof p, "%s/f%d", dir, i);
        rc = (int)put_rc(t->a, p, p, strlen(p), 1600000000000000000LL + i, 0644, 0,
                         &e);
        if (!rc)
            rc = tm__adapter_stat(t->a, p, &st, &e);
        if (!rc && st.size != (int64_t)strlen(p))
            rc = TM_EIO;
        n = 0;
        if (!rc && i % 8 == 0)
            rc = tm__adapter_list(t->a, "/", count_cb, &n, &e);
        if (rc) {
            snprintf(t->err, sizeof t->err, "%s: %s (%s)", p, tm_err_name(rc),
                     e.msg);
            return NULL;
        }
    }
    n = 0;
    rc = tm__adapter_list(t->a, dir, count_cb, &n, &e);
    if (rc || n != T_FILES)
        snprintf(t->err, sizeof t->err, "listing %s: %s, %d children", dir,
                 tm_err_name(rc), n);
    return NULL;
}

/* Adapter methods are called from many threads at once on one adapter:
 * writes, stats and listings of four workers all land. */
static void c_threads(struct fx *fx)
{
    struct tw t[T_THREADS];
    pthread_t th[T_THREADS];
    struct ents *got = &fx->l[0];
    int i;

    for (i = 0; i < T_THREADS; i++) {
        t[i].a = fx->a;
        t[i].id = i;
        t[i].err[0] = '\0';
        assert_int_equal(pthread_create(&th[i], NULL, tw_main, &t[i]), 0);
    }
    for (i = 0; i < T_THREADS; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < T_THREADS; i++)
        if (t[i].err[0])
            fail_msg("worker %d: %s", i, t[i].err);
    for (i = 0; i < T_THREADS; i++) {
        char dir[32];
        snprintf(dir, sizeof dir, "/t%d", i);
        list_ok(fx->a, dir, got);
        assert_int_equal(got->n, T_FILES);
        assert_list_agrees_with_stat(fx, dir, got);
    }
}

/* ------------------------------------------------------------ the wrappers */

/* Fake adapters for the wrappers' own checks: a storage that has only the
 * listing methods, and one that misbehaves as told. */
struct fake {
    struct tm__adapter base; /* must be first */
    const char *name;        /* the name it lists after "ok" */
    size_t name_len;         /* its bytes */
    int type;                /* the type it lists and stats */
    int64_t extra;           /* read, write, copy_from: bytes beyond len */
    int null_out;            /* open_read, list_open: 0 without a handle */
    int cb_calls;            /* entries the engine's callback got */
};

struct fake_file {
    struct tm__rfile r; /* read side */
    struct tm__wfile w; /* write side */
};

static int fk_list_open(struct tm__adapter *a, const char *path, const void *pos,
                        size_t pos_len, struct tm__lister **out, struct tm__aerr *e)
{
    (void)path;
    (void)pos;
    (void)pos_len;
    (void)e;
    if (((struct fake *)a)->null_out) {
        *out = NULL;
        return 0;
    }
    *out = calloc(1, sizeof **out);
    if (!*out)
        return TM_ENOMEM;
    (*out)->a = a;
    return 0;
}

static int fk_list_next(struct tm__lister *l, tm__list_cb cb, void *ctx, int *more,
                        struct tm__aerr *e)
{
    struct fake *f = (struct fake *)l->a;
    struct tm__entry en = { "ok", 2, TM_T_FILE, 1, 0, 0644, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    int rc;
    (void)e;
    *more = 0;
    if ((rc = cb(ctx, &en)) != 0)
        return rc;
    en.name = f->name;
    en.name_len = f->name_len;
    en.type = f->type;
    return cb(ctx, &en);
}

static int fk_list_pos(struct tm__lister *l, struct tm__buf *out)
{
    (void)l;
    (void)out;
    return 0;
}

static void fk_list_close(struct tm__lister *l)
{
    free(l);
}

static void fk_close(struct tm__adapter *a)
{
    free(a);
}

static int fk_stat(struct tm__adapter *a, const char *path, struct tm__entry *out,
                   struct tm__aerr *e)
{
    (void)path;
    (void)e;
    memset(out, 0, sizeof *out);
    out->type = ((struct fake *)a)->type;
    return 0;
}

static int fk_open_read(struct tm__adapter *a, const char *path,
                        struct tm__rfile **out, struct tm__entry *st,
                        struct tm__aerr *e)
{
    struct fake_file *f;
    (void)path;
    (void)st;
    (void)e;
    if (((struct fake *)a)->null_out) {
        *out = NULL;
        return 0;
    }
    f = calloc(1, sizeof *f);
    if (!f)
        return TM_ENOMEM;
    f->r.a = a;
    *out = &f->r;
    return 0;
}

static int64_t fk_read(struct tm__rfile *rf, void *buf, size_t len,
                       struct tm__aerr *e)
{
    (void)e;
    memset(buf, 'r', len); /* never beyond len: only the count lies */
    return (int64_t)len + ((struct fake *)rf->a)->extra;
}

static void fk_close_read(struct tm__rfile *rf)
{
    free(rf);
}

static int fk_open_write(struct tm__adapter *a, const char *path,
                         const struct tm__wattr *w, struct tm__wfile **out,
                         struct tm__aerr *e)
{
    struct fake_file *f = calloc(1, sizeof *f);
    (void)path;
    (void)w;
    (void)e;
    if (!f)
        return TM_ENOMEM;
    f->w.a = a;
    *out = &f->w;
    return 0;
}

static int64_t fk_write(struct tm__wfile *wf, const void *buf, size_t len,
                        struct tm__aerr *e)
{
    (void)buf;
    (void)e;
    return (int64_t)len + ((struct fake *)wf->a)->extra;
}

static int64_t fk_copy_from(struct tm__wfile *wf, struct tm__rfile *src,
                            int64_t size, struct tm__aerr *e)
{
    (void)src;
    (void)e;
    return size + ((struct fake *)wf->a)->extra;
}

static void fk_abort(struct tm__wfile *wf)
{
    free((char *)wf - offsetof(struct fake_file, w));
}

/* A fake with the listing methods only, or (full) with files too. */
static struct fake *fake_new(int full)
{
    struct fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->base.version = 2;
    f->base.name = "fake";
    f->base.mtime_precision = 1;
    f->base.list_open = fk_list_open;
    f->base.list_next = fk_list_next;
    f->base.list_pos = fk_list_pos;
    f->base.list_close = fk_list_close;
    f->base.close = fk_close;
    f->name = "fine";
    f->name_len = 4;
    f->type = TM_T_FILE;
    if (full) {
        f->base.stat = fk_stat;
        f->base.open_read = fk_open_read;
        f->base.read = fk_read;
        f->base.close_read = fk_close_read;
        f->base.open_write = fk_open_write;
        f->base.write = fk_write;
        f->base.copy_from = fk_copy_from;
        f->base.abort = fk_abort;
    }
    return f;
}

/* A method the storage lacks is refused by the wrapper with TM_ENOTSUP
 * (class node, a message), never called; the optional ones that may be
 * missing answer their default. */
static void w_missing_methods(void **state)
{
    struct fake *f = fake_new(0);
    struct tm__adapter *a = &f->base;
    struct tm__wattr w = wattr(1, 0, 0644);
    struct tm__buf t = TM__BUF_INIT;
    struct tm__root_info ri;
    struct tm__rfile *rf;
    struct tm__wfile *wf;
    struct tm__entry st;
    struct tm__aerr e;
    struct ents l = { 0 };
    char why[64];
    unsigned char key[16] = { 0 };
    (void)state;

    l.fail_at = -1;
    assert_ok(list_all(a, "/", &l, NULL, &e), &e); /* what it has works */
    assert_int_equal(l.n, 2);
    ents_free(&l);
    assert_aerr(tm__adapter_stat(a, "/x", &st, &e), &e, TM_ENOTSUP, TM_ERR_NODE);
    assert_aerr(tm__adapter_open_read(a, "/x", &rf, &st, &e), &e, TM_ENOTSUP,
                TM_ERR_NODE);
    assert_null(rf);
    assert_aerr(tm__adapter_open_write(a, "/x", &w, &wf, &e), &e, TM_ENOTSUP,
                TM_ERR_NODE);
    assert_null(wf);
    assert_aerr(tm__adapter_mkdir(a, "/x", &e), &e, TM_ENOTSUP, TM_ERR_NODE);
    assert_aerr(tm__adapter_readlink(a, "/x", &t, &e), &e, TM_ENOTSUP, TM_ERR_NODE);
    assert_aerr(tm__adapter_symlink(a, "/x", "t", 0, 0, &e), &e, TM_ENOTSUP,
                TM_ERR_NODE);
    assert_aerr(tm__adapter_set_attr(a, "/x", 0, 0755, &e), &e, TM_ENOTSUP,
                TM_ERR_NODE);
    assert_aerr(tm__adapter_chown(a, "/x", 0, 0, &e), &e, TM_ENOTSUP, TM_ERR_NODE);
    /* a bad path is still a bad path */
    assert_aerr(tm__adapter_stat(a, "x", &st, &e), &e, TM_EINVAL, TM_ERR_NODE);
    /* the optional ones: their defaults */
    assert_int_equal(tm__adapter_sync(a, &e), 0);
    assert_int_equal(tm__adapter_forget_write(a, "/x", "s", 1, &e), 0);
    assert_int_equal(tm__adapter_cannot_hold(a, "/x", 2, TM_T_SYMLINK, why, sizeof why),
                     0);
    assert_int_equal(tm__adapter_check_root(a), 0);
    assert_int_equal(tm__adapter_root_info(a, &ri), TM_EINVAL);
    assert_int_equal(tm__adapter_forbid(a, 1, 2, "x"), 0);
    tm__adapter_set_tmp_key(a, key);
    assert_int_equal(tm__adapter_remove_tmp(a, "/x", TM_T_FILE, key, &e), 0);
    assert_int_equal(tm__adapter_can_copy_from(a, a), 0);
    tm__buf_release(&t);
    tm__adapter_close(a);
}

/* An adapter that lists an invalid name is caught by the wrapper: the
 * listing fails (TM_EBADNAME, class node), the engine never sees the name. */
static void w_bad_names(void **state)
{
    static const struct {
        const char *name;
        size_t len;
    } bad[] = { { "a/b", 3 }, { "", 0 }, { "..", 2 }, { ".", 1 }, { "a\0b", 3 },
                { "/", 1 } };
    struct fake *f = fake_new(1);
    struct tm__aerr e;
    struct ents l = { 0 };
    struct tm__entry st;
    size_t i;
    (void)state;

    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        f->name = bad[i].name;
        f->name_len = bad[i].len;
        ents_reset(&l);
        assert_aerr(list_all(&f->base, "/", &l, NULL, &e), &e, TM_EBADNAME,
                    TM_ERR_NODE);
        assert_int_equal(l.dots, 0);
        assert_int_equal(l.n, 1); /* "ok" only: the page is dropped */
        assert_string_equal(l.v[0].name, "ok");
    }
    /* a type that is none */
    f->name = "fine";
    f->name_len = 4;
    f->type = TM_T_COUNT;
    ents_reset(&l);
    assert_aerr(list_all(&f->base, "/", &l, NULL, &e), &e, TM_EINTERNAL, TM_ERR_FATAL);
    assert_int_equal(l.n, 1);
    assert_aerr(tm__adapter_stat(&f->base, "/x", &st, &e), &e, TM_EINTERNAL,
                TM_ERR_FATAL);
    f->type = -1;
    assert_aerr(tm__adapter_stat(&f->base, "/x", &st, &e), &e, TM_EINTERNAL,
                TM_ERR_FATAL);
    /* and a good one passes */
    f->type = TM_T_FILE;
    ents_reset(&l);
    assert_ok(list_all(&f->base, "/", &l, NULL, &e), &e);
    assert_int_equal(l.n, 2);
    ents_free(&l);
    tm__adapter_close(&f->base);
}

/* Counts beyond what was asked are never trusted; a handle that is not
 * there is an internal error, not a success. */
static void w_bad_counts(void **state)
{
    struct fake *f = fake_new(1);
    struct tm__adapter *a = &f->base;
    struct tm__wattr w = wattr(8, 0, 0644);
    struct tm__lister *lr;
    struct tm__rfile *rf;
    struct tm__wfile *wf;
    struct tm__entry st;
    struct tm__aerr e;
    unsigned char b[8];
    (void)state;

    assert_ok(tm__adapter_open_read(a, "/x", &rf, &st, &e), &e);
    assert_ok(tm__adapter_open_write(a, "/y", &w, &wf, &e), &e);
    assert_int_equal(tm__adapter_read(rf, b, sizeof b, &e), 8);
    assert_int_equal(tm__adapter_write(wf, b, sizeof b, &e), 8);
    assert_int_equal(tm__adapter_copy_from(wf, rf, 8, &e), 8);
    f->extra = 1; /* one more than asked */
    assert_aerr(tm__adapter_read(rf, b, sizeof b, &e), &e, TM_EINTERNAL, TM_ERR_FATAL);
    assert_aerr(tm__adapter_read(rf, b, 0, &e), &e, TM_EINTERNAL, TM_ERR_FATAL);
    assert_aerr(tm__adapter_write(wf, b, sizeof b, &e), &e, TM_EINTERNAL,
                TM_ERR_FATAL);
    assert_aerr(tm__adapter_copy_from(wf, rf, 8, &e), &e, TM_EINTERNAL, TM_ERR_FATAL);
    f->extra = -1; /* a short write is an error, not a count */
    assert_aerr(tm__adapter_write(wf, b, sizeof b, &e), &e, TM_EIO, TM_ERR_NODE);
    tm__adapter_abort(wf);
    tm__adapter_close_read(rf);
    f->null_out = 1; /* success without a handle */
    assert_aerr(tm__adapter_open_read(a, "/x", &rf, &st, &e), &e, TM_EINTERNAL,
                TM_ERR_FATAL);
    assert_aerr(tm__adapter_list_open(a, "/", NULL, 0, &lr, &e), &e, TM_EINTERNAL,
                TM_ERR_FATAL);
    tm__adapter_close(a);
}

/* ------------------------------------------------------------ the tables */

/* One case of the adapter table. */
struct ccase {
    const char *name;          /* in the test names */
    void (*fn)(struct fx *fx); /* the case */
    int fill;                  /* 1: the root holds the factory's fill */
};

static const struct ccase cases[] = {
    { "list_counts", c_list_counts, 0 },
    { "list_large", c_list_large, 1 },
    { "list_resume", c_list_resume, 1 },
    { "list_retry_page", c_list_retry_page, 1 },
    { "names", c_names, 0 },
    { "types_sizes", c_types_sizes, 0 },
    { "modes", c_modes, 0 },
    { "mtimes", c_mtimes, 0 },
    { "symlinks", c_symlinks, 0 },
    { "write_invisible", c_write_invisible, 0 },
    { "write_abort", c_write_abort, 0 },
    { "write_replace", c_write_replace, 0 },
    { "copy_from", c_copy_from, 0 },
    { "mkdir", c_mkdir, 0 },
    { "mkdir_attr", c_mkdir_attr, 0 },
    { "remove", c_remove, 0 },
    { "backup", c_backup, 0 },
    { "errors", c_errors, 0 },
    { "bad_paths", c_bad_paths, 0 },
    { "error_classes", c_error_classes, 0 },
    { "owner", c_owner, 0 },
    { "threads", c_threads, 0 },
};

static int run_setup(void **state)
{
    struct run *r = *state;
    size_t i;
    memset(&r->fx, 0, sizeof r->fx);
    for (i = 0; i < sizeof r->fx.l / sizeof *r->fx.l; i++)
        r->fx.l[i].fail_at = -1;
    fx_open(&r->fx, r->f, r->c->fill ? r->f->fill : 0);
    return 0;
}

static int run_teardown(void **state)
{
    struct run *r = *state;
    fx_close(&r->fx);
    return 0;
}

static void run_case(void **state)
{
    struct run *r = *state;
    r->c->fn(&r->fx);
}

/* Splits s at ';' and newlines into malloc'd strings (empty ones left
 * out); returns their count. */
static size_t split(const char *s, char ***out)
{
    size_t n = 0;
    char **v = NULL;
    while (s && *s) {
        size_t k = strcspn(s, ";\n");
        if (k) {
            v = realloc(v, (n + 1) * sizeof *v);
            if (!v || !(v[n] = strndup(s, k)))
                abort();
            n++;
        }
        s += k + (s[k] != '\0');
    }
    *out = v;
    return n;
}

int main(void)
{
    static const struct CMUnitTest once[] = {
        cmocka_unit_test(w_missing_methods),
        cmocka_unit_test(w_bad_names),
        cmocka_unit_test(w_bad_counts),
    };
    const char *specs = getenv("TREEMIG_CONFORMANCE_SPECS");
    const char *only = getenv("TREEMIG_CONFORMANCE_ONLY");
    const char *fill = getenv("TREEMIG_CONFORMANCE_FILL");
    struct factory *fs = builtin;
    size_t nf = sizeof builtin / sizeof *builtin, nc = sizeof cases / sizeof *cases;
    size_t i, j, n = 0, nopts = 0;
    struct CMUnitTest *tests;
    struct run *runs;
    char **envs = NULL, **opts = NULL;
    int rc;

    if (specs) { /* the storages named instead of the built-in ones */
        nf = split(specs, &envs);
        if (!nf) {
            printf("SKIP: TREEMIG_CONFORMANCE_SPECS names no storage\n");
            return 77;
        }
        fs = calloc(nf, sizeof *fs);
        if (!fs)
            return 1;
        for (i = 0; i < nf; i++) {
            char *name = malloc(32);
            if (!name)
                return 1;
            snprintf(name, 32, "spec%zu", i + 1);
            fs[i].name = name;
            fs[i].kind = K_SPEC;
            fs[i].arg = envs[i];
            fs[i].fill = 1200;
            printf("[          ] %s: %s\n", name, envs[i]);
        }
        nopts = split(getenv("TREEMIG_CONFORMANCE_OPTS"), &opts);
        env_opts.kv = (const char *const *)opts;
        env_opts.n = nopts;
    } else { /* a local factory's folder that is not here: left out */
        struct stat sb;
        for (i = j = 0; i < nf; i++)
            if (builtin[i].kind == K_LOCAL && builtin[i].arg &&
                (stat(builtin[i].arg, &sb) != 0 || !S_ISDIR(sb.st_mode)))
                printf("[          ] %s left out: no folder %s\n", builtin[i].name,
                       builtin[i].arg);
            else
                builtin[j++] = builtin[i];
        nf = j;
    }
    if (fill && atoi(fill) >= 10)
        for (i = 0; i < nf; i++)
            fs[i].fill = atoi(fill);
    tests = calloc(nc * nf + 3, sizeof *tests);
    runs = calloc(nc * nf, sizeof *runs);
    if (!tests || !runs)
        return 1;
    for (i = 0; i < nc; i++)
        for (j = 0; j < nf; j++, n++) {
            struct run *r = &runs[n];
            r->c = &cases[i];
            r->f = &fs[j];
            snprintf(r->name, sizeof r->name, "%s@%s", cases[i].name, fs[j].name);
            tests[n].name = r->name;
            tests[n].test_func = run_case;
            tests[n].setup_func = run_setup;
            tests[n].teardown_func = run_teardown;
            tests[n].initial_state = r;
        }
    if (!specs) /* the wrappers' own cases, once */
        for (i = 0; i < sizeof once / sizeof *once; i++)
            tests[n++] = once[i];
    if (only && *only)
        cmocka_set_test_filter(only);
    rc = _cmocka_run_group_tests("adapter_conformance", tests, n, NULL, NULL);
    free(tests);
    free(runs);
    for (i = 0; envs && i < nf; i++) {
        free((char *)fs[i].name);
        free(envs[i]);
    }
    if (envs)
        free(fs);
    free(envs);
    for (i = 0; i < nopts; i++)
        free(opts[i]);
    free(opts);
    return rc;
}
