/*
 * sim.c - the simulated storage adapter ("sim:key=value,...", docs/sim.md).
 *
 * Lists folders of a generated world (sim_gen.c) and misbehaves on demand:
 * latency with jitter per page of children, a calls-per-second limit
 * answered with TM_ETHROTTLED and a retry-after, permission-denied
 * subtrees, folders that always fail, listings that return an invalid
 * name, transient failures (also halfway through a listing, and of reads
 * and writes) and a SIGKILL of the whole process after N operations.
 *
 * Writes go to an overlay (sim_overlay.c) that every read merges over the
 * generated world: a written node replaces a generated one of the same
 * path. A generated file's bytes are a stream of its content id
 * (tm__sim_content); a writer recognises such a stream by its first 8
 * bytes and keeps just (id, size), so a copy between sims keeps no bytes.
 * Other bytes are kept as they are, up to LIT_MAX per file.
 *
 * Threads: any number of worker threads call every method at once. The
 * spec is read-only after open; the shared mutable state is two atomics
 * (the operation counter, the throttle's next free slot) and the overlay,
 * which has its own lock. A fault is described in the call's struct
 * tm__aerr.
 */
#include "adapter/adapter.h"
#include "adapter/sim.h"

#include "treemig.h"
#include "util/util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* What made a call fail. */
enum fault {
    F_NONE = 0,  /* no fault (or the engine's callback failed) */
    F_TRANSIENT, /* transient= fired */
    F_PERMANENT, /* permanent= */
    F_DENY,      /* deny= */
    F_THROTTLE,  /* over throttle= */
    F_NOENT,     /* no such folder in the world */
    F_NOTDIR,    /* a file */
    F_BADNAME,   /* badname= */
    F_LITMAX,    /* a written file too large to keep */
};

#define LIT_MAX (64 << 20) /* bytes kept of a written non-generated file */

struct sim {
    struct tm__adapter base;    /* must be first */
    struct tm__sim_spec sp;     /* the parsed spec; read-only */
    uint64_t fault_salt;        /* salt of the per-call fault draws */
    atomic_uint_fast64_t calls; /* operations so far, every thread */
    atomic_llong tat;           /* throttle: next free slot, ns (GCRA) */
    int64_t interval_ns;        /* throttle: ns between two listings */
    int64_t tau_ns;             /* throttle: burst tolerance, ns */
    struct tm__ovl *ovl;        /* what was written */
};

/* Fills e with fault f (retry-after ms for a throttle) and returns err. */
static int fault(struct sim *s, struct tm__aerr *e, enum fault f, int64_t ms,
                 int err)
{
    switch (f) {
    case F_TRANSIENT:
        tm__aerr_set(e, err, "injected transient error (%s)", tm_strerror(err));
        break;
    case F_PERMANENT:
        tm__aerr_set(e, err, "injected permanent error (%s)", tm_strerror(err));
        break;
    case F_DENY:
        tm__aerr_set(e, err, "injected permission denied (deny=)");
        break;
    case F_THROTTLE:
        tm__aerr_set(e, err, "throttled: over %lld listings per second, retry "
                     "after %lld ms", (long long)s->sp.throttle, (long long)ms);
        e->cls = TM_ERR_THROTTLE;
        e->retry_ms = ms;
        break;
    case F_NOENT:
        tm__aerr_set(e, err, "no such folder in the simulated world");
        break;
    case F_NOTDIR:
        tm__aerr_set(e, err, "not a folder in the simulated world");
        break;
    case F_BADNAME:
        tm__aerr_set(e, err, "the listing returned an invalid name (badname=)");
        break;
    case F_LITMAX:
        tm__aerr_set(e, err, "the simulated storage keeps at most %d MiB of a "
                     "written file that is not a generated stream", LIT_MAX >> 20);
        break;
    default:
        break;
    }
    return err;
}

/* Sleeps the latency of one page of a listing. */
static void page_wait(struct sim *s, uint64_t call, int64_t page)
{
    const struct tm__sim_spec *sp = &s->sp;
    double u, ms;
    int64_t ns;
    struct timespec ts;
    if (sp->latency_ms <= 0 && sp->jitter_ms <= 0)
        return;
    u = tm__sim_unit(tm__sim_hash(s->fault_salt ^ call, (uint64_t)page));
    ms = sp->latency_ms + sp->jitter_ms * (2.0 * u - 1.0);
    if (ms <= 0)
        return;
    ns = (int64_t)(ms * 1e6);
    ts.tv_sec = ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Takes a slot of the calls-per-second budget (GCRA: the same as a token
 * bucket of burst= tokens refilled at throttle= per second). Returns 0, or
 * 1 with *wait_ms until a slot frees. */
static int throttled(struct sim *s, int64_t *wait_ms)
{
    long long now = tm__now_ns();
    long long tat = atomic_load(&s->tat);
    for (;;) {
        long long t = tat > now ? tat : now;
        long long next = t + s->interval_ns;
        if (next - now > s->tau_ns) {
            *wait_ms = (next - s->tau_ns - now + 999999) / 1000000;
            if (*wait_ms < 1)
                *wait_ms = 1;
            return 1;
        }
        if (atomic_compare_exchange_weak(&s->tat, &tat, next))
            return 0;
    }
}

/* Kills the process as kill -9 would (crash_after=): no handler, no
 * atexit, no flush. _exit only if the signal could not be sent. */
static void crash(void)
{
    kill(getpid(), SIGKILL);
    _exit(137);
}

/* The checks that fail a listing before it starts. */
static int pre_faults(struct sim *s, const char *path,
                      const struct tm__sim_folder *f, struct tm__aerr *e)
{
    const struct tm__sim_spec *sp = &s->sp;
    int64_t ms;
    if (sp->throttle && throttled(s, &ms))
        return fault(s, e, F_THROTTLE, ms, TM_ETHROTTLED);
    if (tm__sim_prefix_match(&sp->deny, path, strlen(path)))
        return fault(s, e, F_DENY, 0, TM_EACCES);
    if (tm__sim_permanent(sp, sp->permanent, sp->world, f))
        return fault(s, e, F_PERMANENT, 0, TM_EIO);
    return 0;
}

/* Where a transient fault cuts this call's listing of slots children:
 * -1 for none, else after that many children. */
static int64_t transient_at(struct sim *s, uint64_t call,
                            const struct tm__sim_folder *f, int64_t slots,
                            int *err)
{
    uint64_t h;
    if (s->sp.transient <= 0)
        return -1;
    h = tm__sim_hash(s->fault_salt ^ f->key, call);
    if (!(tm__sim_unit(h) < s->sp.transient))
        return -1;
    h = tm__sim_hash(h, 1);
    *err = (h & 1) ? TM_EAGAIN : TM_ETIMEDOUT;
    return (int64_t)((h >> 1) % (uint64_t)(slots + 1));
}

/* ------------------------------------------------------------ lookups */

/* A node of the merged view: the overlay over the generated world. */
struct look {
    struct tm__entry st; /* type, size, mtime, mode */
    int gen;             /* a generated folder: f lists its children */
    struct tm__sim_folder f;
    int kind;            /* a file: enum tm__ovl_kind */
    uint64_t id;         /* content id (TM_OVL_GEN) */
};

/* Looks path up: 0, TM_ENOENT or TM_ENOTDIR. data (may be NULL) gets
 * written bytes or a symlink target. */
static int look(struct sim *s, const char *path, struct look *l,
                struct tm__buf *data)
{
    struct tm__ovl_ent oe;
    struct tm__sim_ent ge;
    int grc = tm__sim_lookup(&s->sp, path, &ge);
    int orc = tm__ovl_get(s->ovl, path, &oe, data);
    memset(l, 0, sizeof *l);
    if (orc < 0)
        return orc;
    if (grc == 0 && ge.type == TM_T_FOLDER) {
        l->gen = 1;
        l->f = ge.sub;
    }
    if (orc == 1 && oe.kind == TM_OVL_GONE)
        return TM_ENOENT; /* removed, generated or not */
    if (orc == 1) {
        l->st.type = oe.type;
        l->st.size = oe.size;
        l->st.mtime = oe.mtime;
        l->st.mode = oe.mode;
        l->kind = oe.kind;
        l->id = oe.id;
        l->gen = l->gen && oe.type == TM_T_FOLDER;
        return 0;
    }
    if (grc)
        return grc;
    l->st.type = ge.type;
    l->st.size = ge.size;
    l->st.mtime = ge.mtime;
    l->st.mode = ge.mode;
    if (ge.type == TM_T_FILE) {
        l->kind = TM_OVL_GEN;
        l->id = tm__sim_content_id(&ge);
    }
    return 0;
}

/* 0 when the parent of path is a folder, else TM_ENOENT or TM_ENOTDIR. */
static int parent_ok(struct sim *s, const char *path)
{
    const char *slash = strrchr(path, '/');
    char buf[4096];
    size_t n;
    struct look l;
    int rc;
    if (!slash || slash[1] == '\0' || path[0] != '/')
        return TM_EINVAL;
    n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof buf)
        return TM_ENAMETOOLONG;
    memcpy(buf, path, n);
    buf[n] = '\0';
    rc = look(s, buf, &l, NULL);
    if (rc)
        return rc == TM_ENOTDIR ? TM_ENOENT : rc;
    return l.st.type == TM_T_FOLDER ? 0 : TM_ENOTDIR;
}

/* Counts an operation; crash_after= kills the process past its limit. */
static uint64_t op_begin(struct sim *s)
{
    uint64_t call = atomic_fetch_add(&s->calls, 1) + 1;
    if (s->sp.crash_after && call > (uint64_t)s->sp.crash_after)
        crash();
    return call;
}

/* The latency and faults of a read or write of path: latency=, jitter=,
 * throttle=, deny= and a transient= draw. */
static int op_faults(struct sim *s, uint64_t call, const char *path,
                     struct tm__aerr *e)
{
    const struct tm__sim_spec *sp = &s->sp;
    int64_t ms;
    uint64_t h;
    page_wait(s, call, 0);
    if (sp->throttle && throttled(s, &ms))
        return fault(s, e, F_THROTTLE, ms, TM_ETHROTTLED);
    if (tm__sim_prefix_match(&sp->deny, path, strlen(path)))
        return fault(s, e, F_DENY, 0, TM_EACCES);
    if (sp->transient <= 0)
        return 0;
    h = tm__sim_hash(s->fault_salt ^ XXH3_64bits(path, strlen(path)), call);
    if (tm__sim_unit(h) < sp->transient)
        return fault(s, e, F_TRANSIENT, 0, (h & 1) ? TM_EAGAIN : TM_ETIMEDOUT);
    return 0;
}

/* Invalid names that badname= puts into a listing. */
static const struct {
    const char *name;
    size_t len;
} bad_names[] = { { "..", 2 }, { ".", 1 }, { "a/b", 3 }, { "a\0b", 3 },
                  { "", 0 }, { "/", 1 } };

/* ------------------------------------------------------------ listing */

static int send(tm__list_cb cb, void *ctx, const char *name, size_t len,
                const struct tm__entry *st)
{
    struct tm__entry te = *st;
    te.name = name;
    te.name_len = len;
    return cb(ctx, &te);
}

/* A listing: the generated children slot by slot, then the written
 * children that are not generated ones. A page is one call (latency,
 * throttle and faults apply per page) of at most page= children. The
 * position is the next slot and the next written child. */
struct sim_lister {
    struct tm__lister base;  /* must be first */
    char *path;              /* the folder */
    struct look l;           /* what it is */
    struct tm__sim_dir d;    /* its generated children (l.gen) */
    struct tm__ovl_list ol;  /* its written children, as at open */
    int64_t slot;            /* next generated slot */
    uint64_t oi;             /* next written child, once the slots are done */
    int pages;               /* pages returned (badname= on the first) */
};


static int sim_list_open(struct tm__adapter *a, const char *path,
                         const void *pos, size_t pos_len,
                         struct tm__lister **out, struct tm__aerr *e)
{
    struct sim *s = (struct sim *)a;
    struct sim_lister *li;
    int rc;

    *out = NULL;
    if (pos_len && pos_len != 16)
        return TM_EINVAL;
    li = calloc(1, sizeof *li);
    if (!li || !(li->path = strdup(path))) {
        free(li);
        return TM_ENOMEM;
    }
    rc = look(s, path, &li->l, NULL);
    if (!rc && li->l.st.type != TM_T_FOLDER)
        rc = TM_ENOTDIR;
    if (!rc)
        rc = tm__ovl_children(s->ovl, path, &li->ol);
    if (rc) {
        if (rc == TM_ENOENT || rc == TM_ENOTDIR)
            fault(s, e, rc == TM_ENOTDIR ? F_NOTDIR : F_NOENT, 0, rc);
        free(li->path);
        free(li);
        return rc;
    }
    if (li->l.gen)
        tm__sim_dir_init(&s->sp, &li->l.f, &li->d);
    if (pos_len) {
        memcpy(&li->slot, pos, 8);
        memcpy(&li->oi, (const char *)pos + 8, 8);
        if (li->slot < 0 || li->slot > li->d.slots)
            li->slot = li->d.slots;
        li->pages = 1;
    }
    li->base.a = a;
    *out = &li->base;
    return 0;
}

/* 1 when the written child w of the lister's folder stands for a
 * generated one (already passed on with the slots). */
static int written_is_generated(struct sim *s, struct sim_lister *li,
                                const struct tm__ovl_child *w)
{
    struct tm__buf p = TM__BUF_INIT;
    struct tm__sim_ent ge;
    int gen = 0;
    if (!li->l.gen)
        return 0;
    if (tm__buf_adds(&p, li->path[1] ? li->path : "") == 0 &&
        tm__buf_addch(&p, '/') == 0 && tm__buf_add(&p, w->name, w->name_len) == 0)
        gen = tm__sim_lookup(&s->sp, p.buf, &ge) == 0;
    tm__buf_release(&p);
    return gen;
}

static int sim_list_next(struct tm__lister *lr, tm__list_cb cb, void *ctx,
                         int *more, struct tm__aerr *e)
{
    struct sim_lister *li = (struct sim_lister *)lr;
    struct sim *s = (struct sim *)lr->a;
    const struct tm__sim_spec *sp = &s->sp;
    uint64_t call = op_begin(s);
    int64_t slot = li->slot, cut, sent = 0;
    uint64_t oi = li->oi;
    int rc = 0, terr = 0;

    *more = 0;
    page_wait(s, call, 0);
    if (!li->l.gen) { /* written, not generated: no permanent= draw */
        int64_t ms;
        if (sp->throttle && throttled(s, &ms))
            rc = fault(s, e, F_THROTTLE, ms, TM_ETHROTTLED);
        else if (tm__sim_prefix_match(&sp->deny, li->path, strlen(li->path)))
            rc = fault(s, e, F_DENY, 0, TM_EACCES);
    } else {
        rc = pre_faults(s, li->path, &li->l.f, e);
    }
    if (rc)
        goto out;
    if (li->pages == 0 &&
        tm__sim_prefix_match(&sp->badname, li->path, strlen(li->path))) {
        struct tm__entry st = { 0 };
        size_t j = (size_t)(tm__sim_hash(s->fault_salt, XXH3_64bits(li->path,
                                         strlen(li->path))) %
                            (sizeof bad_names / sizeof *bad_names));
        st.type = TM_T_FILE;
        st.mode = 0644;
        rc = send(cb, ctx, bad_names[j].name, bad_names[j].len, &st);
        if (rc == TM_EBADNAME)
            fault(s, e, F_BADNAME, 0, rc);
        if (rc)
            goto out;
    }
    {
        /* a transient fault cuts this page somewhere in what it holds */
        int64_t span = li->d.slots - slot + (int64_t)(li->ol.n - oi);
        cut = transient_at(s, call, li->l.gen ? &li->l.f : &li->d.f,
                           span < sp->page ? span : sp->page, &terr);
    }
    for (; slot < li->d.slots && sent < sp->page && !rc; slot++) {
        struct tm__sim_ent ge;
        struct tm__entry te = { 0 };
        const struct tm__ovl_child *w;
        if (!tm__sim_child(sp, &li->d, slot, &ge))
            continue;
        if (sent == cut)
            break;
        te.type = ge.type;
        te.size = ge.size;
        te.mtime = ge.mtime;
        te.mode = ge.mode;
        w = tm__ovl_list_find(&li->ol, ge.name, ge.name_len);
        if (w && !w->ghost && w->e.kind == TM_OVL_GONE)
            continue; /* removed */
        if (w && !w->ghost) {
            te.type = w->e.type;
            te.size = w->e.size;
            te.mtime = w->e.mtime;
            te.mode = w->e.mode;
        }
        rc = send(cb, ctx, ge.name, ge.name_len, &te);
        sent++;
    }
    for (; slot >= li->d.slots && oi < li->ol.n && sent < sp->page && !rc; oi++) {
        const struct tm__ovl_child *w = &li->ol.v[oi];
        struct tm__entry te = { 0 };
        if (w->ghost || w->e.kind == TM_OVL_GONE || written_is_generated(s, li, w))
            continue;
        if (sent == cut)
            break;
        te.type = w->e.type;
        te.size = w->e.size;
        te.mtime = w->e.mtime;
        te.mode = w->e.mode;
        rc = send(cb, ctx, w->name, w->name_len, &te);
        sent++;
    }
    if (!rc && cut >= 0 && sent == cut)
        rc = fault(s, e, F_TRANSIENT, 0, terr);
out:
    if (rc)
        return rc; /* the position stays at the start of this page */
    li->slot = slot;
    li->oi = oi;
    li->pages++;
    *more = slot < li->d.slots || oi < li->ol.n;
    return 0;
}

static int sim_list_pos(struct tm__lister *lr, struct tm__buf *out)
{
    struct sim_lister *li = (struct sim_lister *)lr;
    int rc = tm__buf_add(out, &li->slot, 8);
    return rc ? rc : tm__buf_add(out, &li->oi, 8);
}

static void sim_list_close(struct tm__lister *lr)
{
    struct sim_lister *li = (struct sim_lister *)lr;
    tm__ovl_list_release(&li->ol);
    free(li->path);
    free(li);
}

static int sim_stat(struct tm__adapter *a, const char *path,
                    struct tm__entry *out, struct tm__aerr *e)
{
    (void)e;
    struct look l;
    int rc = look((struct sim *)a, path, &l, NULL);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    *out = l.st;
    return 0;
}

/* ------------------------------------------------------------ reading */

struct sim_rfile {
    struct tm__rfile base; /* must be first */
    struct tm__entry st;   /* as at open */
    int kind;              /* enum tm__ovl_kind */
    uint64_t id;           /* TM_OVL_GEN */
    struct tm__buf lit;    /* TM_OVL_LIT: the bytes */
    int64_t pos;           /* next byte */
};

static int sim_open_read(struct tm__adapter *a, const char *path,
                         struct tm__rfile **out, struct tm__entry *st,
                         struct tm__aerr *e)
{
    struct sim *s = (struct sim *)a;
    uint64_t call = op_begin(s);
    struct sim_rfile *f;
    struct look l;
    int rc = op_faults(s, call, path, e);
    *out = NULL;
    if (rc)
        return rc;
    f = calloc(1, sizeof *f);
    if (!f)
        return TM_ENOMEM;
    tm__buf_init(&f->lit);
    rc = look(s, path, &l, &f->lit);
    if (!rc && l.st.type != TM_T_FILE)
        rc = l.st.type == TM_T_FOLDER ? TM_EISDIR : TM_EINVAL;
    if (rc) {
        tm__buf_release(&f->lit);
        free(f);
        return rc;
    }
    f->base.a = a;
    f->st = l.st;
    f->kind = l.kind;
    f->id = l.id;
    *st = l.st;
    *out = &f->base;
    return 0;
}

static int64_t sim_read(struct tm__rfile *rf, void *buf, size_t len,
                        struct tm__aerr *e)
{
    struct sim_rfile *f = (struct sim_rfile *)rf;
    (void)e;
    int64_t left = f->st.size - f->pos;
    size_t n = left < (int64_t)len ? (size_t)left : len;
    if (n == 0)
        return 0;
    if (f->kind == TM_OVL_GEN)
        tm__sim_content(f->id, f->pos, buf, n);
    else
        memcpy(buf, f->lit.buf + f->pos, n);
    f->pos += (int64_t)n;
    return (int64_t)n;
}

static int sim_fstat(struct tm__rfile *rf, struct tm__entry *st,
                     struct tm__aerr *e)
{
    (void)e;
    *st = ((struct sim_rfile *)rf)->st;
    return 0;
}

static void sim_close_read(struct tm__rfile *rf)
{
    struct sim_rfile *f = (struct sim_rfile *)rf;
    tm__buf_release(&f->lit);
    free(f);
}

/* ------------------------------------------------------------ writing */

enum { W_HEAD = 0, W_GEN, W_LIT };

struct sim_wfile {
    struct tm__wfile base; /* must be first */
    char *path;            /* the real name */
    int state;             /* W_HEAD: < 8 bytes; W_GEN: a content stream */
    int64_t n;             /* bytes written */
    unsigned char head[8]; /* the first bytes */
    uint64_t id;           /* W_GEN: whose stream */
    struct tm__buf lit;    /* W_LIT: every byte */
};

static int sim_open_write(struct tm__adapter *a, const char *path,
                          const struct tm__wattr *w, struct tm__wfile **out,
                          struct tm__aerr *e)
{
    struct sim *s = (struct sim *)a;
    uint64_t call = op_begin(s);
    struct sim_wfile *f;
    struct look l;
    int rc = op_faults(s, call, path, e);
    *out = NULL;
    (void)w;
    if (!rc)
        rc = parent_ok(s, path);
    if (!rc && look(s, path, &l, NULL) == 0 && l.st.type == TM_T_FOLDER)
        rc = TM_EISDIR;
    if (rc)
        return rc;
    f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return TM_ENOMEM;
    }
    f->base.a = a;
    tm__buf_init(&f->lit);
    *out = &f->base;
    return 0;
}

/* Switches f to keeping literal bytes: the n bytes so far first. */
static int to_literal(struct sim_wfile *f)
{
    int rc = tm__buf_grow(&f->lit, (size_t)f->n);
    if (rc)
        return rc;
    if (f->state == W_GEN)
        tm__sim_content(f->id, 0, (unsigned char *)f->lit.buf, (size_t)f->n);
    else
        memcpy(f->lit.buf, f->head, (size_t)f->n);
    tm__buf_setlen(&f->lit, (size_t)f->n);
    f->state = W_LIT;
    return 0;
}

static int64_t sim_write(struct tm__wfile *wf, const void *buf, size_t len,
                         struct tm__aerr *e)
{
    struct sim_wfile *f = (struct sim_wfile *)wf;
    struct sim *s = (struct sim *)wf->a;
    const unsigned char *p = buf;
    size_t left = len;
    unsigned char tmp[4096];
    int rc;
    while (left) {
        size_t k;
        if (f->state == W_HEAD) {
            k = 8 - (size_t)f->n < left ? 8 - (size_t)f->n : left;
            memcpy(f->head + f->n, p, k);
            if (f->n + (int64_t)k == 8) {
                f->id = 0;
                for (int i = 7; i >= 0; i--)
                    f->id = (f->id << 8) | f->head[i];
                f->state = W_GEN;
            }
        } else if (f->state == W_GEN) {
            k = left < sizeof tmp ? left : sizeof tmp;
            tm__sim_content(f->id, f->n, tmp, k);
            if (memcmp(tmp, p, k) != 0) {
                if (f->n > LIT_MAX)
                    return fault(s, e, F_LITMAX, 0, TM_EFBIG);
                if ((rc = to_literal(f)) != 0)
                    return rc;
                continue;
            }
        } else {
            k = left;
            if (f->lit.len + k > LIT_MAX)
                return fault(s, e, F_LITMAX, 0, TM_EFBIG);
            if ((rc = tm__buf_add(&f->lit, p, k)) != 0)
                return rc;
        }
        p += k;
        left -= k;
        f->n += (int64_t)k;
    }
    return (int64_t)len;
}

/* Between two sims: a generated source is taken as (id, size), no bytes
 * move; other sources are read and written. */
static int64_t sim_copy_from(struct tm__wfile *wf, struct tm__rfile *rf,
                             int64_t size, struct tm__aerr *e)
{
    struct sim_wfile *f = (struct sim_wfile *)wf;
    struct sim_rfile *in = (struct sim_rfile *)rf;
    unsigned char buf[16384];
    int64_t done = 0;
    if (f->n == 0 && in->pos == 0 && in->kind == TM_OVL_GEN && size >= 8 &&
        size <= in->st.size) {
        f->state = W_GEN;
        f->id = in->id;
        f->n = size;
        in->pos = size;
        return size;
    }
    while (done < size) {
        int64_t n = sim_read(rf, buf, size - done < (int64_t)sizeof buf
                                          ? (size_t)(size - done) : sizeof buf, e);
        if (n <= 0)
            break;
        n = sim_write(wf, buf, (size_t)n, e);
        if (n < 0)
            return n;
        done += n;
    }
    return done;
}

static void sim_abort(struct tm__wfile *wf)
{
    struct sim_wfile *f = (struct sim_wfile *)wf;
    tm__buf_release(&f->lit);
    free(f->path);
    free(f);
}

/* Checks what is at path before it is replaced by a file or symlink. */
static int replace_ok(struct sim *s, const char *path, unsigned flags)
{
    struct look l;
    int rc = parent_ok(s, path);
    if (rc)
        return rc;
    rc = look(s, path, &l, NULL);
    if (rc == TM_ENOENT)
        return 0;
    if (rc)
        return rc;
    if (l.st.type == TM_T_FOLDER)
        return TM_EISDIR;
    return (flags & TM_NOREPLACE) ? TM_EEXIST : 0;
}

static int sim_commit(struct tm__wfile *wf, int64_t mtime, uint32_t mode,
                      unsigned flags, struct tm__aerr *e)
{
    struct sim_wfile *f = (struct sim_wfile *)wf;
    struct sim *s = (struct sim *)wf->a;
    uint64_t call = op_begin(s);
    struct tm__ovl_ent oe;
    int rc = op_faults(s, call, f->path, e);
    if (!rc && f->state == W_HEAD)
        rc = to_literal(f);
    if (!rc)
        rc = replace_ok(s, f->path, flags);
    if (!rc) {
        memset(&oe, 0, sizeof oe);
        oe.type = TM_T_FILE;
        oe.kind = f->state == W_GEN ? TM_OVL_GEN : TM_OVL_LIT;
        oe.mode = mode;
        oe.mtime = mtime;
        oe.size = f->n;
        oe.id = f->state == W_GEN ? f->id : 0;
        rc = tm__ovl_put(s->ovl, f->path, &oe, f->lit.buf,
                         f->state == W_LIT ? f->lit.len : 0);
    }
    sim_abort(wf);
    return rc;
}

static int sim_mkdir(struct tm__adapter *a, const char *path,
                     struct tm__aerr *e)
{
    struct sim *s = (struct sim *)a;
    uint64_t call = op_begin(s);
    struct tm__ovl_ent oe;
    struct look l;
    int rc = op_faults(s, call, path, e);
    if (rc)
        return rc;
    rc = look(s, path, &l, NULL);
    if (rc == 0)
        return l.st.type == TM_T_FOLDER ? 0 : TM_EEXIST;
    if (rc != TM_ENOENT || (rc = parent_ok(s, path)) != 0)
        return rc;
    memset(&oe, 0, sizeof oe);
    oe.type = TM_T_FOLDER;
    oe.mode = 0700;
    oe.mtime = tm__wall_ns();
    return tm__ovl_put(s->ovl, path, &oe, NULL, 0);
}

static int sim_readlink(struct tm__adapter *a, const char *path,
                        struct tm__buf *out, struct tm__aerr *e)
{
    struct sim *s = (struct sim *)a;
    struct look l;
    int rc;
    (void)e;
    op_begin(s);
    tm__buf_reset(out);
    rc = look(s, path, &l, out);
    if (!rc && l.st.type != TM_T_SYMLINK)
        rc = TM_EINVAL;
    return rc;
}

static int sim_symlink(struct tm__adapter *a, const char *path,
                       const char *target, int64_t mtime, unsigned flags,
                       struct tm__aerr *e)
{
    struct sim *s = (struct sim *)a;
    uint64_t call = op_begin(s);
    struct tm__ovl_ent oe;
    int rc = op_faults(s, call, path, e);
    if (!rc)
        rc = replace_ok(s, path, flags);
    if (rc)
        return rc;
    memset(&oe, 0, sizeof oe);
    oe.type = TM_T_SYMLINK;
    oe.mode = 0777;
    oe.mtime = mtime;
    oe.size = (int64_t)strlen(target);
    return tm__ovl_put(s->ovl, path, &oe, target, strlen(target));
}

static int sim_set_attr(struct tm__adapter *a, const char *path,
                        int64_t mtime, uint32_t mode, struct tm__aerr *e)
{
    struct sim *s = (struct sim *)a;
    uint64_t call = op_begin(s);
    struct tm__ovl_ent oe;
    struct look l;
    int rc = op_faults(s, call, path, e);
    if (!rc)
        rc = look(s, path, &l, NULL);
    if (rc)
        return rc;
    if (l.st.type != TM_T_FOLDER)
        return TM_ENOTDIR;
    memset(&oe, 0, sizeof oe);
    oe.type = TM_T_FOLDER;
    oe.mode = mode;
    oe.mtime = mtime == TM_MTIME_KEEP ? l.st.mtime : mtime;
    return tm__ovl_put(s->ovl, path, &oe, NULL, 0);
}

/* Keeps the file's content (a generated stream stays one) under a new
 * mode; a sim has no owners, and a symlink no mode of its own. */
static int sim_set_leaf_attr(struct tm__adapter *a, const char *path,
                             const struct tm__leaf_attr *w, struct tm__aerr *e)
{
    struct sim *s = (struct sim *)a;
    uint64_t call = op_begin(s);
    struct tm__buf data = TM__BUF_INIT;
    struct tm__ovl_ent oe;
    struct look l;
    int rc = op_faults(s, call, path, e);
    if (!rc)
        rc = look(s, path, &l, &data);
    if (!rc && (l.st.type != w->type || l.st.size != w->size ||
                l.st.mtime != w->mtime))
        rc = tm__aerr_set(e, TM_ECHANGED, "%s changed on the destination since "
                          "it was compared", path);
    if (!rc && w->set_owner)
        rc = TM_ENOTSUP;
    if (!rc && w->type == TM_T_FILE && (l.st.mode & 07777) != (w->mode & 07777)) {
        memset(&oe, 0, sizeof oe);
        oe.type = TM_T_FILE;
        oe.kind = l.kind;
        oe.mode = w->mode & 07777;
        oe.mtime = l.st.mtime;
        oe.size = l.st.size;
        oe.id = l.kind == TM_OVL_GEN ? l.id : 0;
        rc = tm__ovl_put(s->ovl, path, &oe, data.buf,
                         l.kind == TM_OVL_LIT ? data.len : 0);
    }
    tm__buf_release(&data);
    return rc;
}

static int sim_sync(struct tm__adapter *a, struct tm__aerr *e)
{
    (void)e;
    return tm__ovl_sync(((struct sim *)a)->ovl);
}

/* ------------------------------------------------------------ mirror */

static int count_child(void *ctx, const struct tm__entry *e)
{
    (void)e;
    ++*(int64_t *)ctx;
    return 0;
}

/* 1 when the folder at path shows a child (generated and not removed, or
 * written), 0 when none, or an error: its first pages, until one holds a
 * child. */
static int has_child(struct sim *s, const char *path, struct tm__aerr *e)
{
    struct tm__lister *lr;
    int64_t n = 0;
    int more = 1, rc = sim_list_open(&s->base, path, NULL, 0, &lr, e);
    if (rc)
        return rc;
    while (!rc && more && !n)
        rc = sim_list_next(lr, count_child, &n, &more, e);
    sim_list_close(lr);
    return rc ? rc : n > 0;
}

/* Records that nothing is at path any more (a whiteout in the overlay:
 * the generated world is read-only). */
static int put_gone(struct sim *s, const char *path, int type)
{
    struct tm__ovl_ent oe;
    memset(&oe, 0, sizeof oe);
    oe.type = type;
    oe.kind = TM_OVL_GONE;
    return tm__ovl_put(s->ovl, path, &oe, NULL, 0);
}

/* The node at path, as look found it (l, its bytes or target in data),
 * written at dir + path (its folders made, 0700), replacing a file
 * there; then removed from path. */
static int move_to_backup(struct sim *s, const char *path, const struct look *l,
                          const struct tm__buf *data, const char *dir)
{
    struct tm__buf to = TM__BUF_INIT;
    struct tm__ovl_ent oe;
    struct look t;
    char *p;
    int rc = tm__backup_path(dir, path, &to);
    /* the folders on the way: each one a folder, made when missing */
    for (p = to.buf + 1; !rc && (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        rc = look(s, to.buf, &t, NULL);
        if (rc == TM_ENOENT) {
            memset(&oe, 0, sizeof oe);
            oe.type = TM_T_FOLDER;
            oe.mode = 0700;
            oe.mtime = tm__wall_ns();
            rc = tm__ovl_put(s->ovl, to.buf, &oe, NULL, 0);
        } else if (!rc && t.st.type != TM_T_FOLDER) {
            rc = TM_ENOTDIR;
        }
        *p = '/';
    }
    if (!rc && look(s, to.buf, &t, NULL) == 0 && t.st.type == TM_T_FOLDER)
        rc = TM_EISDIR;
    if (!rc) {
        memset(&oe, 0, sizeof oe);
        oe.type = l->st.type;
        oe.kind = l->kind;
        oe.mode = l->st.mode;
        oe.mtime = l->st.mtime;
        oe.size = l->st.size;
        oe.id = l->id;
        rc = tm__ovl_put(s->ovl, to.buf, &oe, data->buf,
                         l->kind == TM_OVL_GEN ? 0 : data->len);
    }
    if (!rc)
        rc = put_gone(s, path, l->st.type);
    tm__buf_release(&to);
    return rc;
}

static int sim_backup(struct tm__adapter *a, const char *path, const char *dir,
                      struct tm__aerr *e)
{
    struct sim *s = (struct sim *)a;
    uint64_t call = op_begin(s);
    struct tm__buf data = TM__BUF_INIT;
    struct look l;
    int rc = op_faults(s, call, path, e);
    if (!rc)
        rc = look(s, path, &l, &data);
    if (!rc && l.st.type == TM_T_FOLDER)
        rc = tm__aerr_set(e, TM_EISDIR, "%s is a folder: not moved to the "
                          "backup folder", path);
    else if (!rc)
        rc = move_to_backup(s, path, &l, &data, dir);
    tm__buf_release(&data);
    return rc;
}

/* The mirror: a whiteout in the overlay, once the node is the one
 * discovery recorded (a folder: once it shows no child). */
static int sim_remove(struct tm__adapter *a, const char *path,
                      const struct tm__entry *want, const char *backup,
                      struct tm__aerr *e)
{
    struct sim *s = (struct sim *)a;
    uint64_t call = op_begin(s);
    struct tm__buf data = TM__BUF_INIT;
    struct look l;
    int rc = op_faults(s, call, path, e);
    if (!rc && !path[1])
        rc = tm__aerr_set(e, TM_EINVAL, "the root is never removed");
    if (!rc)
        rc = look(s, path, &l, &data);
    if (rc == TM_ENOTDIR)
        rc = tm__aerr_set(e, TM_ECHANGED, "a folder on the path of %s is no "
                          "longer a folder", path);
    if (!rc)
        rc = tm__remove_check(path, &l.st, want, e);
    if (!rc && l.st.type == TM_T_FOLDER) {
        rc = has_child(s, path, e);
        if (rc == 1)
            rc = tm__aerr_set(e, TM_ECHANGED, "%s is not empty: it holds what "
                              "the plan does not (kept)", path);
        else if (rc == 0)
            rc = put_gone(s, path, TM_T_FOLDER);
    } else if (!rc && backup) {
        rc = move_to_backup(s, path, &l, &data, backup);
    } else if (!rc) {
        rc = put_gone(s, path, l.st.type);
    }
    tm__buf_release(&data);
    return rc;
}

static void sim_close(struct tm__adapter *a)
{
    struct sim *s = (struct sim *)a;
    tm__ovl_close(s->ovl);
    tm__sim_spec_release(&s->sp);
    free(s);
}

int tm__sim_open(const char *params, struct tm__adapter **out, char *err,
                 size_t errlen)
{
    struct sim *s;
    int rc;

    *out = NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return TM_ENOMEM;
    rc = tm__sim_spec_parse(&s->sp, params, err, errlen);
    if (!rc)
        rc = tm__ovl_open(s->sp.overlay, &s->ovl, err, errlen);
    if (rc) {
        tm__sim_spec_release(&s->sp);
        free(s);
        return rc;
    }
    s->base.version = 2;
    s->base.name = "sim";
    s->base.caps = TM_CAP_MODES | TM_CAP_SYMLINKS;
    s->base.mtime_precision = 1;
    s->base.list_open = sim_list_open;
    s->base.list_next = sim_list_next;
    s->base.list_pos = sim_list_pos;
    s->base.list_close = sim_list_close;
    s->base.stat = sim_stat;
    s->base.close = sim_close;
    s->base.open_read = sim_open_read;
    s->base.read = sim_read;
    s->base.fstat = sim_fstat;
    s->base.close_read = sim_close_read;
    s->base.open_write = sim_open_write;
    s->base.write = sim_write;
    s->base.copy_from = sim_copy_from;
    s->base.commit = sim_commit;
    s->base.abort = sim_abort;
    s->base.mkdir = sim_mkdir;
    s->base.readlink = sim_readlink;
    s->base.symlink = sim_symlink;
    s->base.set_attr = sim_set_attr;
    s->base.set_leaf_attr = sim_set_leaf_attr;
    s->base.sync = sim_sync;
    s->base.remove = sim_remove;
    s->base.backup = sim_backup;
    s->fault_salt = tm__sim_hash(s->sp.seed ^ s->sp.dsalt,
                                 0x6661756c74ULL + (uint64_t)s->sp.world);
    atomic_init(&s->calls, 0);
    atomic_init(&s->tat, 0);
    if (s->sp.throttle) {
        s->interval_ns = 1000000000LL / s->sp.throttle;
        s->tau_ns = s->interval_ns * s->sp.burst;
    }
    *out = &s->base;
    return 0;
}

/* ---- the kind ---- */

/* A sim spec is recorded as given, once it parses. */
static int sim_resolve(const char *spec, const struct tm__sopts *o, char **out,
                       char *err, size_t errlen)
{
    struct tm__sim_spec sp;
    int rc;
    (void)o;
    *out = NULL;
    rc = tm__sim_spec_parse(&sp, spec + 4, err, errlen);
    tm__sim_spec_release(&sp);
    if (rc)
        return rc;
    *out = strdup(spec);
    return *out ? 0 : TM_ENOMEM;
}

static int sim_kind_open(const char *spec, const struct tm__sopts *o,
                         struct tm__adapter **out, char *err, size_t errlen)
{
    (void)o;
    return tm__sim_open(spec + 4, out, err, errlen);
}

const struct tm__kind tm__sim_kind = {
    "sim", "sim:", 4, NULL, sim_resolve, sim_kind_open,
    NULL, /* two sims never share a tree: writes go to an overlay each */
};
