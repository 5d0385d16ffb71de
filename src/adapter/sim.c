/*
 * sim.c - the simulated storage adapter ("sim:key=value,...", docs/sim.md).
 *
 * Lists folders of a generated world (sim_gen.c) and misbehaves on demand:
 * latency with jitter per page of children, a calls-per-second limit
 * answered with TM_ETHROTTLED and a retry-after, permission-denied
 * subtrees, folders that always fail, transient failures (also halfway
 * through a listing) and a SIGKILL of the whole process after N listings.
 *
 * Threads: any number of worker threads call list() and stat() at once.
 * The spec is read-only after open; the only shared mutable state is two
 * atomics (the call counter, the throttle's next free slot). The last fault
 * of each thread, for describe() and retry_after(), lives in a pthread key
 * of the adapter. No locks.
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

/* What the last failed call of a thread was. */
enum fault {
    F_NONE = 0,  /* no fault (or the engine's callback failed) */
    F_TRANSIENT, /* transient= fired */
    F_PERMANENT, /* permanent= */
    F_DENY,      /* deny= */
    F_THROTTLE,  /* over throttle= */
    F_NOENT,     /* no such folder in the world */
    F_NOTDIR,    /* a file */
};

struct sim {
    struct tm__adapter base;    /* must be first */
    struct tm__sim_spec sp;     /* the parsed spec; read-only */
    uint64_t fault_salt;        /* salt of the per-call fault draws */
    atomic_uint_fast64_t calls; /* list() calls so far, every thread */
    atomic_llong tat;           /* throttle: next free slot, ns (GCRA) */
    int64_t interval_ns;        /* throttle: ns between two listings */
    int64_t tau_ns;             /* throttle: burst tolerance, ns */
    pthread_key_t last;         /* per thread: fault | retry-after ms << 4 */
};

static void set_last(struct sim *s, enum fault f, int64_t ms)
{
    uintptr_t v = ((uintptr_t)ms << 4) | (uintptr_t)f;
    pthread_setspecific(s->last, (void *)v);
}

static uintptr_t get_last(struct sim *s)
{
    return (uintptr_t)pthread_getspecific(s->last);
}

static int fault(struct sim *s, enum fault f, int64_t ms, int err)
{
    set_last(s, f, ms);
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
                      const struct tm__sim_folder *f)
{
    const struct tm__sim_spec *sp = &s->sp;
    int64_t ms;
    if (sp->throttle && throttled(s, &ms))
        return fault(s, F_THROTTLE, ms, TM_ETHROTTLED);
    if (tm__sim_prefix_match(&sp->deny, path, strlen(path)))
        return fault(s, F_DENY, 0, TM_EACCES);
    if (tm__sim_permanent(sp, sp->permanent, sp->world, f))
        return fault(s, F_PERMANENT, 0, TM_EIO);
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

static int sim_list(struct tm__adapter *a, const char *path, tm__list_cb cb,
                    void *ctx)
{
    struct sim *s = (struct sim *)a;
    const struct tm__sim_spec *sp = &s->sp;
    uint64_t call = atomic_fetch_add(&s->calls, 1) + 1;
    struct tm__sim_folder f;
    struct tm__sim_dir d;
    int64_t i, cut, sent = 0;
    int rc, terr = 0;

    set_last(s, F_NONE, 0);
    if (sp->crash_after && call > (uint64_t)sp->crash_after)
        crash();
    rc = tm__sim_resolve(sp, path, &f);
    if (rc)
        return fault(s, rc == TM_ENOTDIR ? F_NOTDIR : F_NOENT, 0, rc);
    page_wait(s, call, 0);
    rc = pre_faults(s, path, &f);
    if (rc)
        return rc;
    tm__sim_dir_init(sp, &f, &d);
    cut = transient_at(s, call, &f, d.slots, &terr);
    for (i = 0; i < d.slots; i++) {
        struct tm__sim_ent e;
        struct tm__entry te;
        if (!tm__sim_child(sp, &d, i, &e))
            continue;
        if (sent == cut)
            return fault(s, F_TRANSIENT, 0, terr);
        if (sent && sent % sp->page == 0)
            page_wait(s, call, sent / sp->page);
        te.name = e.name;
        te.name_len = e.name_len;
        te.type = e.type;
        te.size = e.size;
        te.mtime = e.mtime;
        te.mode = e.mode;
        rc = cb(ctx, &te);
        if (rc)
            return rc;
        sent++;
    }
    return cut >= 0 ? fault(s, F_TRANSIENT, 0, terr) : 0;
}

static int sim_stat(struct tm__adapter *a, const char *path,
                    struct tm__entry *out)
{
    struct sim *s = (struct sim *)a;
    struct tm__sim_ent e;
    int rc = tm__sim_lookup(&s->sp, path, &e);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    out->type = e.type;
    out->size = e.size;
    out->mtime = e.mtime;
    out->mode = e.mode;
    return 0;
}

static void sim_describe(struct tm__adapter *a, int err, char *buf, size_t len)
{
    struct sim *s = (struct sim *)a;
    uintptr_t v = get_last(s);
    switch ((enum fault)(v & 15)) {
    case F_TRANSIENT:
        snprintf(buf, len, "injected transient error (%s)", tm_strerror(err));
        break;
    case F_PERMANENT:
        snprintf(buf, len, "injected permanent error (%s)", tm_strerror(err));
        break;
    case F_DENY:
        snprintf(buf, len, "injected permission denied (deny=)");
        break;
    case F_THROTTLE:
        snprintf(buf, len, "throttled: over %lld listings per second, retry "
                 "after %llu ms", (long long)s->sp.throttle,
                 (unsigned long long)(v >> 4));
        break;
    case F_NOENT:
        snprintf(buf, len, "no such folder in the simulated world");
        break;
    case F_NOTDIR:
        snprintf(buf, len, "not a folder in the simulated world");
        break;
    default:
        snprintf(buf, len, "%s", tm_strerror(err));
    }
}

static int64_t sim_retry_after(struct tm__adapter *a)
{
    uintptr_t v = get_last((struct sim *)a);
    return (v & 15) == F_THROTTLE ? (int64_t)(v >> 4) : 1000;
}

static void sim_close(struct tm__adapter *a)
{
    struct sim *s = (struct sim *)a;
    pthread_key_delete(s->last);
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
    if (!rc && pthread_key_create(&s->last, NULL) != 0)
        rc = TM_ENOMEM;
    if (rc) {
        tm__sim_spec_release(&s->sp);
        free(s);
        return rc;
    }
    s->base.version = 1;
    s->base.name = "sim";
    s->base.caps = TM_CAP_MODES;
    s->base.mtime_precision = 1;
    s->base.list = sim_list;
    s->base.stat = sim_stat;
    s->base.describe = sim_describe;
    s->base.retry_after = sim_retry_after;
    s->base.close = sim_close;
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
