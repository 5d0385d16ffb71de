/*
 * worker.c - treemig worker: several processes, on any machines, running
 * one copy together through a PostgreSQL state database (docs/
 * scale-out.md). Two parts:
 *
 * - The lease hook (struct tm__lease_hook): the engine's tm__exec_claim
 *   over store/lease_q.c. It counts the tasks of each claimed batch that
 *   are not over yet; a batch whose tasks are all over is marked done.
 *   A renewal thread extends this worker's leases every third of their
 *   length, and marks the done batches. tm_copy (the process that starts
 *   the copy) and tm_worker (the processes that join it) both run the
 *   engine with it. For discovery (tm__lease_hook_start_disc), the same
 *   hook claims folders to list (struct tm__disc_claim), hands the
 *   writer blocks of node ids, and removes a batch once all its folders
 *   are committed.
 * - tm_worker: waits for a copy in progress, joins it with a temporary-
 *   name key of its own (recorded as a copy run, so that a later copy
 *   removes what a killed worker left), and leaves when nothing of it is
 *   left with anyone.
 *
 * Threads: tm_worker runs on the caller's thread; the hook's methods run
 * on the engine's threads (claim and left on its coordinator, ended on the
 * writer's and the pool's), the renewal on a thread of its own.
 *
 * Lock order: h->mu, then the lease connection's mutex (lease_q.c); the
 * renewal thread never holds h->mu while it calls the database.
 */
#include "treemig.h"

#include "adapter/adapter.h"
#include "engine/engine.h"
#include "engine/execute.h"
#include "migration/migration_int.h"
#include "store/copy_q.h"
#include "store/lease_q.h"
#include "store/store.h"
#include "util/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_LEASE_S 30
#define BATCH_MIN 16

/* A claimed batch whose tasks are not all over. */
struct batch {
    int64_t id;   /* its lease */
    int left;     /* tasks not over */
};

struct tm__lease_hook {
    struct tm__exec_claim claim; /* what the engine calls (ctx: this) */
    struct tm__lease_q *q;       /* the lease connection: claims, ids */
    struct tm__lease_q *rq;      /* discovery: the renewal thread's own
                                    connection, so that its wait for a lease
                                    row the writer holds (the page check)
                                    blocks no claim and no block of ids the
                                    writer waits for; NULL: q (a copy's
                                    writer locks no lease row) */
    char stage[4][64];           /* copy, links, attrs and verify stage names */
    struct tm__disc_claim disc;  /* discovery's claims (ctx: this) */
    int drop;                    /* discovery: a batch over is removed, not
                                    marked done (its folders are not pending
                                    any more, which says it) */
    int lease_ms;                /* a lease's length */
    pthread_mutex_t mu;          /* guards what follows */
    pthread_cond_t cv;           /* done batches to mark, or quit */
    struct batch *b;             /* open batches */
    size_t nb, cap_b;            /* used, allocated */
    int64_t *done;               /* batches to mark done */
    size_t nd, cap_d;            /* used, allocated */
    int quit;                    /* the renewal thread must end */
    int thread_ok;               /* it was started */
    pthread_t thread;            /* the renewal thread */
    struct tm__buf err;          /* messages of claim and left */
    struct tm__buf terr;         /* the renewal thread's last failure */
};

static int kind_index(int kind)
{
    return kind == TM_TASKS_COPY    ? 0
           : kind == TM_TASKS_LINKS ? 1
           : kind == TM_TASKS_ATTRS ? 2
                                    : 3;
}

/* Counts a claimed batch of n tasks; returns n or TM_ENOMEM. */
static int add_batch(struct tm__lease_hook *h, int64_t lease, int n)
{
    pthread_mutex_lock(&h->mu);
    if (h->nb == h->cap_b) {
        size_t nc = h->cap_b ? 2 * h->cap_b : 16;
        struct batch *p = realloc(h->b, nc * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&h->mu);
            return TM_ENOMEM; /* the tasks' leases expire */
        }
        h->b = p;
        h->cap_b = nc;
    }
    h->b[h->nb].id = lease;
    h->b[h->nb].left = n;
    h->nb++;
    pthread_mutex_unlock(&h->mu);
    return n;
}

static int hook_claim(void *ctx, int kind, int depth, int limit, int64_t *lease,
                      int (*row)(void *rctx, const struct tm__task_row *r,
                                 const char *old_key),
                      void *rctx)
{
    struct tm__lease_hook *h = ctx;
    int n = tm__lease_q_claim(h->q, kind, depth, h->stage[kind_index(kind)], limit,
                              h->lease_ms, lease, row, rctx, &h->err);
    return n > 0 ? add_batch(h, *lease, n) : n;
}

/* Discovery's claim of folders (struct tm__disc_claim). */
static int hook_claim_folders(void *ctx, int side, int lead, int limit, int64_t *lease,
                              int (*row)(void *rctx, const struct tm__frow *r),
                              void *rctx)
{
    struct tm__lease_hook *h = ctx;
    int n = tm__lease_q_claim_folders(h->q, side, side == TM_SRC ? "list:src"
                                                                 : "list:dst",
                                      lead, limit, h->lease_ms, lease, row, rctx,
                                      &h->err);
    return n > 0 ? add_batch(h, *lease, n) : n;
}

static int hook_ids(void *ctx, int side, int64_t n, int64_t *first, struct tm__buf *err)
{
    struct tm__lease_hook *h = ctx;
    return tm__lease_q_ids(h->q, side, n, first, err);
}

static int hook_left(void *ctx, int kind, int depth)
{
    struct tm__lease_hook *h = ctx;
    return tm__lease_q_left(h->q, kind, depth, h->stage[kind_index(kind)], &h->err);
}

static void hook_ended(void *ctx, int64_t lease)
{
    struct tm__lease_hook *h = ctx;
    size_t i;
    pthread_mutex_lock(&h->mu);
    for (i = 0; i < h->nb; i++) {
        if (h->b[i].id != lease)
            continue;
        if (--h->b[i].left == 0) {
            h->b[i] = h->b[--h->nb];
            if (h->nd == h->cap_d) {
                size_t nc = h->cap_d ? 2 * h->cap_d : 16;
                int64_t *p = realloc(h->done, nc * sizeof *p);
                if (!p)
                    break; /* not marked: the lease expires instead */
                h->done = p;
                h->cap_d = nc;
            }
            h->done[h->nd++] = lease;
            pthread_cond_signal(&h->cv);
        }
        break;
    }
    pthread_mutex_unlock(&h->mu);
}

/* Marks the done batches, then renews the others if renew; h->mu not
 * held. */
static void renew_once(struct tm__lease_hook *h, int renew)
{
    struct tm__lease_q *rq = h->rq ? h->rq : h->q;
    int64_t *done;
    size_t nd, i;
    int rc = 0;
    pthread_mutex_lock(&h->mu);
    done = h->done;
    nd = h->nd;
    h->done = NULL;
    h->nd = h->cap_d = 0;
    pthread_mutex_unlock(&h->mu);
    for (i = 0; i < nd && !rc; i++)
        rc = h->drop ? tm__lease_q_drop(rq, done[i], &h->terr)
                     : tm__lease_q_done(rq, done[i], &h->terr);
    free(done);
    if (!rc && renew)
        tm__lease_q_renew(rq, h->lease_ms, &h->terr);
}

static void *renew_main(void *arg)
{
    struct tm__lease_hook *h = arg;
    int64_t every = h->lease_ms / 3 > 0 ? h->lease_ms / 3 : 1, next = 0;
    pthread_mutex_lock(&h->mu);
    while (!h->quit) {
        int64_t now = tm__now_ns() / 1000000;
        if (now >= next || h->nd) {
            pthread_mutex_unlock(&h->mu);
            /* a discovery renews when due only: it ends batches at
             * nearly every commit, and each renewal of a lease its writer
             * holds waits for that commit */
            renew_once(h, now >= next || !h->drop);
            pthread_mutex_lock(&h->mu);
            if (now >= next)
                next = now + every;
            continue;
        }
        {
            struct timespec ts;
            int64_t wait = next - now;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (time_t)(wait / 1000);
            ts.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&h->cv, &h->mu, &ts);
        }
    }
    pthread_mutex_unlock(&h->mu);
    renew_once(h, 0); /* the last done batches */
    return NULL;
}

/* tm__lease_hook_start(); disc: for a discovery (the renewal on a
 * connection of its own). */
static int hook_start(struct tm__lease_hook **out, tm_migration *m, const char *run,
                      const char *tmp_key, int lease_s, int workers, int disc)
{
    struct tm__lease_hook *h = calloc(1, sizeof *h);
    char host[256], who[340], nonce[4];
    int rc;

    *out = NULL;
    if (!h)
        return TM_ENOMEM;
    tm__buf_init(&h->err);
    tm__buf_init(&h->terr);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->lease_ms = (lease_s > 0 ? lease_s : DEFAULT_LEASE_S) * 1000;
    h->drop = disc; /* before the renewal thread reads it */
    snprintf(h->stage[0], sizeof h->stage[0], "copy:%s", run);
    snprintf(h->stage[1], sizeof h->stage[1], "links:%s", run);
    snprintf(h->stage[2], sizeof h->stage[2], "attrs:%s", run);
    snprintf(h->stage[3], sizeof h->stage[3], "verify:%s", run);
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    if (tm__random(nonce, sizeof nonce) != 0)
        memset(nonce, 0, sizeof nonce);
    snprintf(who, sizeof who, "%s:%ld:%02x%02x%02x%02x", host, (long)getpid(),
             (unsigned char)nonce[0], (unsigned char)nonce[1],
             (unsigned char)nonce[2], (unsigned char)nonce[3]);
    rc = tm__lease_q_open(&h->q, tm__store_conn(&m->store), who, host, (int)getpid(),
                          tmp_key, &m->err);
    if (!rc && disc)
        rc = tm__lease_q_open(&h->rq, tm__store_conn(&m->store), who, host,
                              (int)getpid(), tmp_key, &m->err);
    if (rc) {
        tm__lease_hook_stop(h);
        return rc;
    }
    {
        /* a process frozen inside a transaction (SIGSTOP, a VM paused)
         * holds row locks that would stop the others: the server ends
         * its session once its lease is over */
        char sql[96];
        snprintf(sql, sizeof sql, "SET idle_in_transaction_session_timeout = %d",
                 h->lease_ms);
        rc = tm__lease_q_exec(h->q, sql, &m->err);
        if (!rc && h->rq)
            rc = tm__lease_q_exec(h->rq, sql, &m->err);
        if (!rc && tm__db_exec(m->store.db, sql, NULL, NULL, NULL) != SQLITE_OK)
            rc = tm__store_error(m->store.db, SQLITE_ERROR, &m->err,
                                 "set the idle transaction timeout");
        if (rc) {
            tm__lease_hook_stop(h);
            return rc;
        }
    }
    h->claim.claim = hook_claim;
    h->claim.left = hook_left;
    h->claim.ended = hook_ended;
    h->claim.ctx = h;
    /* what is in flight: claimed again when half of it is left, so the
     * workers never wait for a claim, and the end of a depth is shared */
    h->claim.batch = workers > BATCH_MIN ? workers : BATCH_MIN;
    h->claim.err = &h->err;
    if (pthread_create(&h->thread, NULL, renew_main, h) != 0) {
        tm__lease_hook_stop(h);
        return tm__mig_fail(m, TM_ENOMEM, "cannot start the lease renewal thread");
    }
    h->thread_ok = 1;
    *out = h;
    return 0;
}

int tm__lease_hook_start(struct tm__lease_hook **out, tm_migration *m,
                         const char *run, const char *tmp_key, int lease_s,
                         int workers)
{
    return hook_start(out, m, run, tmp_key, lease_s, workers, 0);
}

const struct tm__exec_claim *tm__lease_hook_claim(struct tm__lease_hook *h)
{
    return &h->claim;
}

int tm__lease_hook_start_disc(struct tm__lease_hook **out, tm_migration *m,
                              int lease_s, int workers)
{
    int rc = hook_start(out, m, "-", "-", lease_s, workers, 1);
    if (rc)
        return rc;
    (*out)->disc.claim = hook_claim_folders;
    (*out)->disc.ended = hook_ended;
    (*out)->disc.ids = hook_ids;
    (*out)->disc.ctx = *out;
    (*out)->disc.err = &(*out)->err;
    return 0;
}

const struct tm__disc_claim *tm__lease_hook_disc(struct tm__lease_hook *h)
{
    return &h->disc;
}

void tm__lease_hook_stop(struct tm__lease_hook *h)
{
    if (!h)
        return;
    if (h->thread_ok) {
        pthread_mutex_lock(&h->mu);
        h->quit = 1;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->thread, NULL);
    }
    tm__lease_q_close(h->q);
    tm__lease_q_close(h->rq);
    free(h->b);
    free(h->done);
    tm__buf_release(&h->err);
    tm__buf_release(&h->terr);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

void tm_worker_options_init(tm_worker_options *o)
{
    memset(o, 0, sizeof *o);
}

/* Joins the copy run run (hex key) once: 0 when nothing of it is left. */
static int join_copy(tm_migration *m, tm_worker_options *o, const char *run)
{
    struct tm__adapter *ad[2] = { NULL, NULL };
    struct tm__lease_hook *h = NULL;
    unsigned char key[TM_KEY_LEN];
    char hex[2 * TM_KEY_LEN + 1], now[32], opts[64];
    tm_exec_options eo;
    tm_status st;
    int i, rc, recorded = 0, lw = 0;

    tm_exec_options_init(&eo);
    /* the options the copy was started with (tm_copy stores them) */
    rc = tm__mig_copy_setting(m->store.db, "worker_opts", opts, sizeof opts);
    if (rc)
        return tm__mig_setting_fail(m, rc);
    if (sscanf(opts, "%d %d %d %d", &eo.no_overwrite, &eo.update, &eo.retries,
               &lw) != 4)
        return tm__mig_fail(m, TM_ECORRUPT, "state database %s: the copy's options "
                            "for workers are damaged (%s)", m->store.path, opts);
    eo.workers = o->workers > 0 ? o->workers : lw;
    eo.progress = o->progress;
    eo.progress_ctx = o->progress_ctx;
    rc = tm_status_get(m, &st);
    if (!rc)
        rc = tm__mig_open_roots(m, ad);
    if (!rc && (rc = tm__random(key, TM_KEY_LEN)) != 0)
        tm__mig_fail(m, rc, "cannot make a key for the temporary names: %s",
                     tm_strerror(rc));
    if (rc)
        goto out;
    for (i = 0; i < TM_KEY_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    tm__iso_time(now, tm__wall_ns());
    /* a copy run of its own: a later copy removes what this worker left if
     * it is killed (its leases' key is hex too) */
    rc = tm__q_copy_run_record(m->store.db, hex, now, &m->err);
    if (rc)
        goto out;
    recorded = 1;
    tm__adapter_set_tmp_key(ad[TM_DST], key);
    rc = tm__lease_hook_start(&h, m, run, hex, o->lease_s,
                              eo.workers > 0 ? eo.workers
                                             : 2 * tm__mig_get_int(m->store.db,
                                                                   "workers", 4));
    if (rc)
        goto out;
    m->claim = tm__lease_hook_claim(h);
    rc = tm__mig_run_exec(m, TM_EXEC_COPY, &eo, ad, &st, &o->failed);
    m->claim = NULL;
    o->lease_lost += m->lease_lost;
out:
    tm__lease_hook_stop(h);
    if (recorded) {
        tm__iso_time(now, tm__wall_ns());
        tm__q_copy_run_end(m->store.db, hex, now, NULL);
    }
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    return rc;
}

/* Joins the verify run run (hex key) once: 0 when nothing of it is left. */
static int join_verify(tm_migration *m, tm_worker_options *o, const char *run)
{
    struct tm__adapter *ad[2] = { NULL, NULL };
    struct tm__lease_hook *h = NULL;
    char opts[32];
    tm_exec_options eo;
    tm_status st;
    int64_t found = 0;
    int rc, lw = 0;

    tm_exec_options_init(&eo);
    rc = tm__mig_copy_setting(m->store.db, "verify_opts", opts, sizeof opts);
    if (rc)
        return tm__mig_setting_fail(m, rc);
    if (sscanf(opts, "%d %d", &eo.checksum, &lw) != 2)
        return tm__mig_fail(m, TM_ECORRUPT, "state database %s: the verify's options "
                            "for workers are damaged (%s)", m->store.path, opts);
    eo.workers = o->workers > 0 ? o->workers : lw;
    eo.progress = o->progress;
    eo.progress_ctx = o->progress_ctx;
    rc = tm_status_get(m, &st);
    if (!rc)
        rc = tm__mig_open_roots(m, ad);
    if (!rc)
        rc = tm__lease_hook_start(&h, m, run, run, o->lease_s,
                                  eo.workers > 0 ? eo.workers
                                                 : 2 * tm__mig_get_int(m->store.db,
                                                                       "workers", 4));
    if (!rc) {
        m->claim = tm__lease_hook_claim(h);
        rc = tm__mig_run_exec(m, TM_EXEC_VERIFY, &eo, ad, &st, &found);
        m->claim = NULL;
        o->lease_lost += m->lease_lost;
    }
    tm__lease_hook_stop(h);
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    return rc;
}

/* Joins the discovery in progress: tm_discover's resume, with the
 * folders leased (plan.c starts the hook on a shared store); 0 once no
 * folder is left with anyone. */
static int join_discover(tm_migration *m, tm_worker_options *o)
{
    tm_discover_options d;
    int rc;
    tm_discover_options_init(&d);
    d.workers = o->workers;
    d.progress = o->progress;
    d.progress_ctx = o->progress_ctx;
    m->joining = 1;
    m->join_lease_s = o->lease_s;
    m->lease_lost = 0;
    rc = tm_discover(m, NULL, NULL, &d);
    o->lease_lost += m->lease_lost;
    m->joining = 0;
    m->join_lease_s = 0;
    return rc;
}

int tm_worker(tm_migration *m, tm_worker_options *o)
{
    char phase[32], run[2 * TM_KEY_LEN + 1], last[2 * TM_KEY_LEN + 1] = "";
    char vrun[2 * TM_KEY_LEN + 1], vlast[2 * TM_KEY_LEN + 1] = "";
    int rc, said = 0, unsaid = 0, shared;

    if (!m || !m->open || m->store.readonly || !o)
        return TM_EINVAL;
    if (!tm__db_is_pg(tm__store_conn(&m->store)))
        return tm__mig_fail(m, TM_EINVAL, "%s is an SQLite state file: workers need "
                            "a PostgreSQL state database; on one machine, run copy",
                            m->store.path);
    o->joined = 0;
    for (;;) {
        if (atomic_load(&m->stop))
            return o->joined && !o->follow ? 0 : TM_ESTOPPED;
        tm__buf_reset(&m->err);
        rc = tm__mig_copy_setting(m->store.db, "phase", phase, sizeof phase);
        if (!rc)
            rc = tm__mig_copy_setting(m->store.db, "worker_run", run, sizeof run);
        if (!rc)
            rc = tm__mig_copy_setting(m->store.db, "verify_run", vrun, sizeof vrun);
        if (rc)
            return tm__mig_setting_fail(m, rc);
        /* read once a pass: the discovery's word, written meanwhile, must
         * not be missing at one test and there at the next (the worker
         * would then refuse a discovery it should wait for or join) */
        shared = tm__mig_get_int(m->store.db, "shared_discovery", -1);
        if (vrun[0] && strcmp(vrun, vlast) != 0) {
            if (o->progress) {
                char line[96];
                snprintf(line, sizeof line, "worker: joining the verify (run %.8s)",
                         vrun);
                o->progress(o->progress_ctx, line);
            }
            rc = join_verify(m, o, vrun);
            if (rc)
                return rc;
            o->joined++;
            snprintf(vlast, sizeof vlast, "%s", vrun);
            said = 0;
            if (!o->follow)
                return 0;
            continue;
        }
        /* a pass's discovery (rescan) is one process's: its copy is joined */
        if (!strcmp(phase, "discovering") &&
            tm__mig_get_int(m->store.db, "pass_running", 0) <= 0 && shared == 1) {
            if (o->progress)
                o->progress(o->progress_ctx, "worker: joining the discovery");
            rc = join_discover(m, o);
            if (rc)
                return rc;
            o->joined++;
            said = 0;
            if (!o->follow)
                return 0;
            continue;
        }
        if (!strcmp(phase, "copying") && run[0] && strcmp(run, last) != 0) {
            if (o->progress) {
                char line[96];
                snprintf(line, sizeof line, "worker: joining the copy (run %.8s)", run);
                o->progress(o->progress_ctx, line);
            }
            rc = join_copy(m, o, run);
            if (rc)
                return rc;
            o->joined++;
            snprintf(last, sizeof last, "%s", run);
            said = 0;
            if (!o->follow)
                return 0;
            continue;
        }
        if (!strcmp(phase, "discovering") && unsaid < 100 && shared == -1) {
            /* a discovery that has just begun: its phase is set before
             * it says whether it is shared (5 s at most: a discovery of
             * an older treemig never says) */
            unsaid++;
            tm__sleep_ms(50);
            continue;
        }
        if (!o->follow)
            return tm__mig_fail(m, TM_EPHASE, "no copy or verify in progress to join "
                                "(phase %s): start one with 'treemig discover', 'treemig copy', "
                                "'treemig retry' or 'treemig verify', or wait "
                                "for it with --follow",
                                phase[0] ? phase : "none");
        if (!said && o->progress) {
            o->progress(o->progress_ctx, "worker: waiting for a discovery, a copy or "
                        "a verify to join");
            said = 1;
        }
        tm__sleep_ms(100);
    }
}
