/*
 * discover.c - the discovery engine: queues, rounds, coordinator, workers.
 *
 * Threads: the coordinator runs on the caller's thread; each side has a pool
 * of worker threads; the writer (store/writer.c) has its own. Round r of a
 * side lists the pending folders at depth r. The coordinator pulls them
 * from the state file in keyset pages (depth, id) into a bounded in-memory
 * window, workers list them and hand the results to the writer, and a round
 * ends when every task it fetched is committed. The destination runs round
 * d only once the source has finished round d (the source children it
 * compares against are then durable); the source runs round r only while
 * r <= destination round + lead, unless the destination is done.
 *
 * Lock order: e->mu, then the writer's mutex (tm__writer_error); never the
 * reverse: the writer calls on_commit(), which takes e->mu, without its own
 * lock held. e->mu is never held while calling an adapter or SQLite, nor
 * while handing anything to the writer, which may wait for room in its
 * queue, and so for a commit, and so for on_commit().
 */
#include "engine/engine.h"

#include "engine/observe.h"
#include "store/store.h"
#include "store/writer.h"
#include "util/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE 1024            /* tasks fetched at once */
/* Rows queued for the writer at most. What is queued is lost by a crash and
 * listed again by the resume: one batch's worth keeps that small while the
 * writer (the bottleneck) never runs dry. */
#define WRITER_MAX_ROWS 4096

struct task {
    int64_t id;        /* folder row */
    int64_t src_id;    /* destination: the source twin */
    int depth;         /* folder depth */
    int src_failed;    /* destination: the twin's listing failed */
    char *path;        /* malloc'd root-relative path */
};

struct side {
    int which;                 /* TM_SRC or TM_DST */
    int round;                 /* the running round, or the next one */
    int running;               /* round has started */
    int done;                  /* nothing left on this side */
    int completed_through;     /* every round <= this is complete */
    int64_t last_id;           /* keyset position in the round */
    int fetch_done;            /* every task of the round was fetched */
    int64_t fetched, committed; /* tasks of the round */
    struct task *win;          /* ring of tasks waiting for a worker */
    size_t head, len, cap;     /* ring position, fill, capacity */
    int in_flight;             /* tasks being worked on */
    int flushed;               /* a commit was asked for the round's end */
    int64_t folders_done;      /* listings committed (progress) */
    int64_t nodes;             /* nodes committed (progress) */
    int64_t failed;            /* listings failed (progress) */
    pthread_t *threads;        /* the pool */
    int nthreads;              /* started threads */
    sqlite3_stmt *fetch;       /* next page of the frontier */
    sqlite3_stmt *next_round;  /* smallest pending depth */
};

struct engine {
    struct tm__discover_cfg *cfg;  /* what to do */
    pthread_mutex_t mu;            /* guards sides, quit, fatal */
    pthread_cond_t cv_work[2];     /* a side's window has tasks, or quit */
    pthread_cond_t cv_coord;       /* something for the coordinator */
    struct side s[2];              /* source and destination */
    struct tm__writer *w;          /* the writer */
    sqlite3 *rd;                   /* the coordinator's read connection */
    int quit;                      /* workers must exit */
    int fatal;                     /* first fatal error of a worker */
    struct tm__buf fatal_msg;      /* its message */
    int64_t prec;                  /* mtime precision for comparisons */
    struct tm__logger *lg;         /* the log service, or NULL */
    sqlite3_stmt *pending[2];      /* pending folders per side (observer) */
};

struct worker {
    struct engine *e;      /* the engine */
    int side;              /* which queue it serves */
    sqlite3 *rd;           /* destination workers: read connection */
    sqlite3_stmt *kids;    /* source children of a folder, by name */
};

static int stopping(struct engine *e)
{
    return atomic_load(e->cfg->stop) != 0;
}

/* Sleeps ms, waking early when a stop is asked. Returns 1 when stopping. */
static int nap(struct engine *e, int64_t ms)
{
    while (ms > 0 && !stopping(e)) {
        int64_t step = ms > 100 ? 100 : ms;
        tm__sleep_ms(step);
        ms -= step;
    }
    return stopping(e);
}

/* Lists one folder. A retryable failure is retried with exponential backoff
 * up to --retries times; throttling waits as the storage says and is not
 * counted as a try. Returns 0, the last error, or TM_ESTOPPED when a stop
 * was asked meanwhile (the folder then stays pending). */
static int list_folder(struct engine *e, struct tm__adapter *ad, const char *path,
                       struct tm__listing *l, int *attempts)
{
    int rc, tries = 0;
    int64_t backoff = 50;
    for (;;) {
        enum tm__errclass cls;
        tm__listing_reset(l);
        tries++;
        rc = tm__adapter_list(ad, path, tm__listing_add, l);
        if (!rc)
            break;
        cls = tm__adapter_classify(ad, rc);
        if (cls == TM_ERR_THROTTLE) {
            int64_t wait = tm__adapter_retry_after(ad);
            tries--;
            tm__log(e->lg, TM_DEBUG, ad == e->cfg->ad[TM_SRC] ? "src" : "dst", 0,
                    path, "list %s: throttled, waiting %lld ms", path,
                    (long long)wait);
            if (nap(e, wait))
                return TM_ESTOPPED;
            continue;
        }
        if (cls != TM_ERR_RETRY || tries > e->cfg->retries)
            break;
        tm__log(e->lg, TM_WARNING, ad == e->cfg->ad[TM_SRC] ? "src" : "dst", 0,
                path, "list %s: %s; retry %d of %d in %lld ms", path,
                tm_strerror(rc), tries, e->cfg->retries, (long long)backoff);
        if (nap(e, backoff))
            return TM_ESTOPPED;
        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
    }
    *attempts = tries;
    return rc;
}

static struct tm__result *new_result(const struct task *t, int side)
{
    struct tm__result *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->kind = TM_R_LISTING;
    r->side = side;
    r->folder_id = t->id;
    r->depth = t->depth;
    r->folder_ts = TS_SUCCESSFUL;
    tm__buf_init(&r->arena);
    r->path = strdup(t->path);
    if (!r->path) {
        free(r);
        return NULL;
    }
    return r;
}

static int fail_result(struct tm__result *r, struct tm__adapter *ad, int err,
                       const char *what)
{
    struct tm__buf m = TM__BUF_INIT;
    char why[256];
    r->folder_ts = TS_FAILED;
    if (what) {
        tm__buf_adds(&m, what);
    } else {
        if (ad && err != TM_EBADNAME)
            tm__adapter_describe(ad, err, why, sizeof why);
        else
            snprintf(why, sizeof why, "%s", tm_strerror(err));
        tm__buf_addf(&m, "list %s: %s", r->path, why);
    }
    r->error = tm__buf_detach(&m, NULL);
    return r->error ? 0 : TM_ENOMEM;
}

/* Appends child name and path to r's arena; fills the offsets of n. */
static int add_names(struct tm__result *r, struct tm__wnode *n, const char *dir,
                     const char *name, size_t name_len)
{
    struct tm__buf *a = &r->arena;
    int rc;
    n->name_off = a->len;
    n->name_len = name_len;
    rc = tm__buf_add(a, name, name_len);
    if (!rc)
        rc = tm__buf_addch(a, '\0');
    n->path_off = a->len;
    if (!rc && !(dir[0] == '/' && dir[1] == '\0'))
        rc = tm__buf_adds(a, dir);
    if (!rc)
        rc = tm__buf_addch(a, '/');
    if (!rc)
        rc = tm__buf_add(a, name, name_len);
    n->path_len = a->len - n->path_off;
    if (!rc)
        rc = tm__buf_addch(a, '\0');
    return rc;
}

static void set_fatal(struct engine *e, int err, const char *msg);

/* After a listing failed on side: a root that was removed or replaced
 * explains it, and every listing after it would fail too. Returns 0, or
 * TM_ENOENT after recording the fatal error that names the root. */
static int root_gone(struct engine *e, int side)
{
    struct tm__buf m = TM__BUF_INIT;
    if (tm__adapter_check_root(e->cfg->ad[side]) == 0)
        return 0;
    tm__buf_addf(&m, "the %s root %s is gone (removed, moved, replaced or "
                 "unmounted): put it back and run the command again",
                 side == TM_SRC ? "source" : "destination",
                 e->cfg->root[side] ? e->cfg->root[side] : "");
    pthread_mutex_lock(&e->mu);
    set_fatal(e, TM_ENOENT, m.buf);
    pthread_mutex_unlock(&e->mu);
    tm__buf_release(&m);
    return TM_ENOENT;
}

static int src_task(struct worker *wk, const struct task *t,
                    struct tm__result **out)
{
    struct engine *e = wk->e;
    struct tm__listing l = TM__LISTING_INIT;
    struct tm__result *r = new_result(t, TM_SRC);
    size_t i;
    int rc, attempts;

    *out = r;
    if (!r)
        return TM_ENOMEM;
    rc = list_folder(e, e->cfg->ad[TM_SRC], t->path, &l, &attempts);
    r->attempts = attempts;
    if (!rc)
        rc = tm__listing_sort(&l);
    if (rc) {
        if (rc == TM_ESTOPPED || (rc != TM_EBADNAME &&
            tm__adapter_classify(e->cfg->ad[TM_SRC], rc) == TM_ERR_FATAL))
            goto out;
        if (root_gone(e, TM_SRC)) {
            rc = TM_ENOENT;
            goto out;
        }
        rc = fail_result(r, e->cfg->ad[TM_SRC], rc, NULL);
        goto out;
    }
    r->nodes = calloc(l.n ? l.n : 1, sizeof *r->nodes);
    if (!r->nodes) {
        rc = TM_ENOMEM;
        goto out;
    }
    for (i = 0; i < l.n; i++) {
        const struct tm__ent *x = &l.v[i];
        struct tm__wnode *n = &r->nodes[i];
        n->parent_id = t->id;
        n->type = (int8_t)x->type;
        n->size = x->size;
        n->mtime = x->mtime;
        n->mode = x->mode;
        rc = add_names(r, n, t->path, l.arena.buf + x->name_off, x->name_len);
        if (rc)
            goto out;
        if (e->cfg->n_excludes &&
            tm__filter_match(e->cfg->excludes, e->cfg->n_excludes,
                             r->arena.buf + n->path_off,
                             r->arena.buf + n->name_off)) {
            n->ts = TS_EXCLUDED;
            n->cs = CS_EXCLUDED;
        } else {
            n->ts = x->type == TM_T_FOLDER ? TS_PENDING : TS_SUCCESSFUL;
            n->cs = x->type == TM_T_OTHER ? CS_SKIPPED : CS_PENDING;
        }
        r->n_nodes++;
    }
out:
    tm__listing_release(&l);
    return rc;
}

/* A source child as read back for the comparison. */
struct srow {
    int64_t id, size, mtime;
    const char *name;
    size_t name_len;
    int type, ts, cs, cf;
};

static int read_srow(sqlite3_stmt *st, struct srow *s)
{
    const char *cf;
    s->id = sqlite3_column_int64(st, 0);
    s->name = (const char *)sqlite3_column_text(st, 1);
    s->name_len = (size_t)sqlite3_column_bytes(st, 1);
    s->type = tm__name_index(tm__type_names, TM_T_COUNT,
                             (const char *)sqlite3_column_text(st, 2));
    s->size = sqlite3_column_int64(st, 3);
    s->mtime = sqlite3_column_int64(st, 4);
    s->ts = tm__name_index(tm__ts_names, TS_COUNT,
                           (const char *)sqlite3_column_text(st, 5));
    s->cs = tm__name_index(tm__cs_names, CS_COUNT,
                           (const char *)sqlite3_column_text(st, 6));
    cf = (const char *)sqlite3_column_text(st, 7);
    s->cf = cf ? tm__name_index(tm__cf_names, CF_COUNT, cf) : CF_NONE;
    if (!s->name || s->type < 0 || s->ts < 0 || s->cs < 0 || s->cf < 0)
        return TM_ECORRUPT;
    return 0;
}

static int add_update(struct tm__result *r, size_t *cap, const struct srow *s,
                      int depth, int new_cs, int new_cf)
{
    struct tm__wupdate *u;
    if (s->cs == new_cs && s->cf == new_cf)
        return 0;
    if (r->n_updates == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        void *p = realloc(r->updates, nc * sizeof *r->updates);
        if (!p)
            return TM_ENOMEM;
        r->updates = p;
        *cap = nc;
    }
    u = &r->updates[r->n_updates++];
    u->id = s->id;
    u->depth = depth;
    u->type = (int8_t)s->type;
    u->old_cs = (int8_t)s->cs;
    u->new_cs = (int8_t)new_cs;
    u->old_cf = (int8_t)s->cf;
    u->new_cf = (int8_t)new_cf;
    u->size = s->size;
    return 0;
}

/* Fills a destination node matched with its source twin s. */
static int match(struct engine *e, struct tm__result *r, size_t *ucap,
                 struct tm__wnode *n, const struct tm__ent *x, const struct srow *s,
                 int depth)
{
    int cf;
    n->src_id = s->id;
    n->ts = TS_SUCCESSFUL;
    if (s->ts == TS_EXCLUDED) {
        n->ts = TS_EXCLUDED;
        return 0;
    }
    if (s->type != x->type) {
        n->conflict = CF_TYPE;
        return add_update(r, ucap, s, depth, CS_SKIPPED, CF_TYPE);
    }
    switch (x->type) {
    case TM_T_FOLDER:
        n->ts = TS_PENDING;
        return add_update(r, ucap, s, depth, CS_ALREADY, CF_NONE);
    case TM_T_FILE:
    case TM_T_SYMLINK:
        cf = tm__compare_leaf(s->size, s->mtime, x->size, x->mtime, e->prec);
        n->conflict = (int8_t)cf;
        return add_update(r, ucap, s, depth, cf ? CS_PENDING : CS_ALREADY, cf);
    default:
        return 0; /* "other" on both sides: never copied, nothing to say */
    }
}

static int dst_task(struct worker *wk, const struct task *t,
                    struct tm__result **out)
{
    struct engine *e = wk->e;
    struct tm__listing l = TM__LISTING_INIT;
    struct tm__result *r = new_result(t, TM_DST);
    size_t i = 0, ucap = 0;
    struct srow s;
    int rc, attempts, have = 0, step;

    *out = r;
    if (!r)
        return TM_ENOMEM;
    if (t->src_failed) {
        rc = fail_result(r, NULL, 0, "not compared: the source folder could "
                                     "not be listed");
        goto out;
    }
    rc = list_folder(e, e->cfg->ad[TM_DST], t->path, &l, &attempts);
    r->attempts = attempts;
    if (!rc)
        rc = tm__listing_sort(&l);
    if (rc) {
        if (rc == TM_ESTOPPED || (rc != TM_EBADNAME &&
            tm__adapter_classify(e->cfg->ad[TM_DST], rc) == TM_ERR_FATAL))
            goto out;
        if (root_gone(e, TM_DST)) {
            rc = TM_ENOENT;
            goto out;
        }
        rc = fail_result(r, e->cfg->ad[TM_DST], rc, NULL);
        goto out;
    }
    r->nodes = calloc(l.n ? l.n : 1, sizeof *r->nodes);
    if (!r->nodes) {
        rc = TM_ENOMEM;
        goto out;
    }
    /* merge the sorted listing with the source children, read in the same
     * order from the unique (parent_id, name) index */
    sqlite3_bind_int64(wk->kids, 1, t->src_id);
    step = sqlite3_step(wk->kids);
    while (rc == 0) {
        int c;
        if (!have && step == SQLITE_ROW) {
            rc = read_srow(wk->kids, &s);
            if (rc)
                break;
            have = 1;
        } else if (!have && step != SQLITE_DONE) {
            rc = tm__store_error(wk->rd, step, NULL, "read source rows");
            break;
        }
        if (i == l.n && !have)
            break;
        if (i == l.n)
            c = 1; /* source only: nothing to record */
        else if (!have)
            c = -1;
        else
            c = tm__name_cmp(l.arena.buf + l.v[i].name_off, l.v[i].name_len, s.name,
                         s.name_len);
        if (c <= 0) {
            const struct tm__ent *x = &l.v[i];
            struct tm__wnode *n = &r->nodes[r->n_nodes];
            n->parent_id = t->id;
            n->type = (int8_t)x->type;
            n->size = x->size;
            n->mtime = x->mtime;
            n->mode = x->mode;
            rc = add_names(r, n, t->path, l.arena.buf + x->name_off, x->name_len);
            if (!rc && c == 0)
                rc = match(e, r, &ucap, n, x, &s, t->depth + 1);
            else
                n->ts = TS_NOT_ON_SRC;
            r->n_nodes++;
            i++;
        }
        if (c >= 0) {
            have = 0;
            step = sqlite3_step(wk->kids);
        }
    }
    sqlite3_reset(wk->kids);
out:
    tm__listing_release(&l);
    return rc;
}

/* Takes the next task of a side; called with e->mu held. */
static struct task pop_task(struct side *s)
{
    struct task t = s->win[s->head];
    s->head = (s->head + 1) % s->cap;
    s->len--;
    s->in_flight++;
    return t;
}

static void set_fatal(struct engine *e, int err, const char *msg)
{
    if (!e->fatal) {
        e->fatal = err;
        tm__buf_reset(&e->fatal_msg);
        tm__buf_adds(&e->fatal_msg, msg ? msg : tm_strerror(err));
    }
    e->quit = 1;
    pthread_cond_broadcast(&e->cv_work[0]);
    pthread_cond_broadcast(&e->cv_work[1]);
    pthread_cond_broadcast(&e->cv_coord);
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    struct engine *e = wk->e;
    struct side *s = &e->s[wk->side];

    pthread_mutex_lock(&e->mu);
    for (;;) {
        struct tm__result *r = NULL;
        struct tm__buf m = TM__BUF_INIT;
        struct task t;
        int rc;
        while (!e->quit && s->len == 0)
            pthread_cond_wait(&e->cv_work[wk->side], &e->mu);
        if (e->quit)
            break;
        t = pop_task(s);
        pthread_mutex_unlock(&e->mu);

        rc = wk->side == TM_SRC ? src_task(wk, &t, &r) : dst_task(wk, &t, &r);
        if (!rc && r && r->folder_ts == TS_FAILED)
            tm__log(e->lg, TM_ERROR, wk->side == TM_SRC ? "src" : "dst", t.id,
                    t.path, "%s", r->error ? r->error : "listing failed");
        if (!rc) {
            rc = tm__writer_submit(e->w, r);
            r = NULL;
        }
        tm__result_free(r);

        if (rc == TM_ESTOPPED)
            rc = 0; /* abandoned: the folder stays pending for the resume */
        if (rc) {
            /* said before e->mu is taken (an adapter is called) */
            char why[512];
            if (tm__writer_error(e->w) == rc) {
                tm__writer_message(e->w, &m); /* the state file's, not this side's */
            } else {
                tm__adapter_describe(e->cfg->ad[wk->side], rc, why, sizeof why);
                tm__buf_addf(&m, "%s %s: %s", wk->side == TM_SRC ? "source"
                                                                 : "destination",
                             t.path, why);
            }
        }
        pthread_mutex_lock(&e->mu);
        s->in_flight--;
        if (rc)
            set_fatal(e, rc, m.len ? m.buf : NULL);
        tm__buf_release(&m);
        free(t.path);
        /* wake the coordinator only when it has something to do: refill
         * the window, or see the end of the round */
        if (s->len == PAGE / 2 || (s->len == 0 && s->in_flight == 0))
            pthread_cond_signal(&e->cv_coord);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* Called by the writer thread once a result is durable. */
static void on_commit(void *ctx, const struct tm__result *list)
{
    struct engine *e = ctx;
    const struct tm__result *r;
    pthread_mutex_lock(&e->mu);
    for (r = list; r; r = r->next) {
        struct side *s = &e->s[r->side];
        if (r->kind != TM_R_LISTING)
            continue;
        s->committed++;
        s->folders_done++;
        s->nodes += (int64_t)r->n_nodes;
        if (r->folder_ts == TS_FAILED)
            s->failed++;
    }
    pthread_cond_signal(&e->cv_coord);
    pthread_mutex_unlock(&e->mu);
}

static const char *const fetch_sql[2] = {
    "SELECT id, path, 0, NULL FROM src_nodes WHERE traversal_status='pending' "
    "AND type='folder' AND depth=?1 AND id>?2 ORDER BY id LIMIT ?3",
    "SELECT d.id, d.path, d.src_id, s.traversal_status FROM dst_nodes d "
    "LEFT JOIN src_nodes s ON s.id=d.src_id WHERE d.traversal_status='pending' "
    "AND d.type='folder' AND d.depth=?1 AND d.id>?2 ORDER BY d.id LIMIT ?3",
};
static const char *const next_round_sql[2] = {
    "SELECT depth FROM src_nodes WHERE traversal_status='pending' AND "
    "type='folder' ORDER BY depth, id LIMIT 1",
    "SELECT depth FROM dst_nodes WHERE traversal_status='pending' AND "
    "type='folder' ORDER BY depth, id LIMIT 1",
};

/* Reads the next page of side's round; called without e->mu. Appends to
 * tasks (malloc'd array of PAGE). Returns the count or an error. */
static int fetch_page(struct engine *e, struct side *s, int round, int64_t after,
                      struct task *tasks)
{
    sqlite3_stmt *st = s->fetch;
    int n = 0, rc;
    sqlite3_bind_int(st, 1, round);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int(st, 3, PAGE);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct task *t = &tasks[n];
        const char *fs = (const char *)sqlite3_column_text(st, 3);
        t->id = sqlite3_column_int64(st, 0);
        t->path = strdup((const char *)sqlite3_column_text(st, 1));
        t->src_id = sqlite3_column_int64(st, 2);
        t->depth = round;
        t->src_failed = fs && strcmp(fs, "failed") == 0;
        if (!t->path) {
            sqlite3_reset(st);
            while (n-- > 0)
                free(tasks[n].path);
            return TM_ENOMEM;
        }
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        while (n-- > 0)
            free(tasks[n].path);
        return tm__store_error(e->rd, rc, e->cfg->err, "read frontier");
    }
    return n;
}

/* The smallest depth with a pending folder, or -1. Without e->mu. */
static int next_round(struct engine *e, struct side *s)
{
    int rc = sqlite3_step(s->next_round), d = -1;
    if (rc == SQLITE_ROW)
        d = sqlite3_column_int(s->next_round, 0);
    else if (rc != SQLITE_DONE)
        d = tm__store_error(e->rd, rc, e->cfg->err, "read frontier") - 1000000;
    sqlite3_reset(s->next_round);
    return d;
}

static int push_tasks(struct side *s, struct task *tasks, int n)
{
    int i;
    if (s->len + (size_t)n > s->cap) {
        size_t nc = s->cap ? s->cap : PAGE;
        struct task *p;
        size_t j;
        while (nc < s->len + (size_t)n)
            nc *= 2;
        p = malloc(nc * sizeof *p);
        if (!p)
            return TM_ENOMEM;
        for (j = 0; j < s->len; j++)
            p[j] = s->win[(s->head + j) % s->cap];
        free(s->win);
        s->win = p;
        s->head = 0;
        s->cap = nc;
    }
    for (i = 0; i < n; i++)
        s->win[(s->head + s->len++) % s->cap] = tasks[i];
    return 0;
}

static void submit_round(struct engine *e, int side, int round)
{
    struct tm__result *r = calloc(1, sizeof *r);
    char v[32];
    if (!r)
        return;
    r->kind = TM_R_SETTING;
    snprintf(v, sizeof v, "%d", round);
    r->path = strdup(side == TM_SRC ? "src_round" : "dst_round");
    r->value = strdup(v);
    tm__buf_init(&r->arena);
    if (!r->path || !r->value) {
        tm__result_free(r);
        return;
    }
    tm__writer_submit(e->w, r);
}

/* The observer: one queue_stats row per side. Coordinator thread, called
 * with e->mu held; drops it while it reads the pending counts (from the
 * small stats tables) and hands the rows to the writer, which may make it
 * wait: the writer itself needs e->mu to report commits. */
static void snapshot(struct engine *e, int64_t t0)
{
    double secs = (double)(tm__now_ns() - t0) / 1e9;
    int64_t st[2][7];
    double rate[2][2];
    int side;
    for (side = 0; side < 2; side++) {
        struct side *s = &e->s[side];
        int64_t v[7] = { s->round, 0, s->in_flight, s->folders_done, s->failed, 0, 0 };
        memcpy(st[side], v, sizeof v);
        rate[side][0] = secs > 0 ? (double)s->folders_done / secs : 0;
        rate[side][1] = 0;
    }
    pthread_mutex_unlock(&e->mu);
    for (side = 0; side < 2; side++) {
        if (e->pending[side] && sqlite3_step(e->pending[side]) == SQLITE_ROW)
            st[side][1] = sqlite3_column_int64(e->pending[side], 0);
        if (e->pending[side])
            sqlite3_reset(e->pending[side]);
        tm__observe_snapshot(e->w, side == TM_SRC ? "src" : "dst", st[side],
                             rate[side]);
    }
    pthread_mutex_lock(&e->mu);
}

static void report(struct engine *e, int64_t t0, int final)
{
    char line[512];
    double secs = (double)(tm__now_ns() - t0) / 1e9;
    int64_t nodes = e->s[0].nodes + e->s[1].nodes;
    if (!e->cfg->progress)
        return;
    snprintf(line, sizeof line,
             "%s src round %d: %lld folders listed, %lld nodes%s | dst round %d: "
             "%lld folders listed, %lld nodes%s | %.0f nodes/s",
             final ? "discovered:" : "discovering:", e->s[0].round,
             (long long)e->s[0].folders_done, (long long)e->s[0].nodes,
             e->s[0].done ? " (done)" : "", e->s[1].round,
             (long long)e->s[1].folders_done, (long long)e->s[1].nodes,
             e->s[1].done ? " (done)" : "", secs > 0 ? (double)nodes / secs : 0.0);
    e->cfg->progress(e->cfg->progress_ctx, line);
}

/* Moves a side forward; called with e->mu held, may drop it. Returns 1 when
 * something changed, 0 when nothing, or an error. */
static int advance(struct engine *e, int which, struct task *buf)
{
    struct side *s = &e->s[which];
    struct side *o = &e->s[!which];
    int n, rc;

    if (s->done)
        return 0;
    if (!s->running) {
        int allowed = which == TM_SRC
                          ? (o->done || s->round <= o->round + e->cfg->lead)
                          : (o->done || o->completed_through >= s->round);
        if (!allowed)
            return 0;
        s->running = 1;
        s->last_id = 0;
        s->fetch_done = 0;
        s->fetched = s->committed = 0;
        s->flushed = 0;
        pthread_mutex_unlock(&e->mu);
        submit_round(e, which, s->round);
        if (e->cfg->on_round)
            e->cfg->on_round(e->cfg->round_ctx, which, s->round);
        pthread_mutex_lock(&e->mu);
        return 1;
    }
    if (!s->fetch_done && s->len < PAGE) {
        int round = s->round;
        int64_t after = s->last_id;
        pthread_mutex_unlock(&e->mu);
        n = fetch_page(e, s, round, after, buf);
        pthread_mutex_lock(&e->mu);
        if (n < 0)
            return n;
        rc = push_tasks(s, buf, n);
        if (rc) {
            while (n-- > 0)
                free(buf[n].path);
            return rc;
        }
        if (n > 0)
            s->last_id = buf[n - 1].id;
        s->fetched += n;
        if (n < PAGE)
            s->fetch_done = 1;
        pthread_cond_broadcast(&e->cv_work[which]);
        return 1;
    }
    if (s->fetch_done && s->len == 0 && s->committed < s->fetched &&
        s->in_flight == 0 && !s->flushed) {
        /* the round waits only for the writer: do not wait for its timer */
        s->flushed = 1;
        pthread_mutex_unlock(&e->mu);
        tm__writer_flush(e->w);
        pthread_mutex_lock(&e->mu);
        return 0;
    }
    if (s->fetch_done && s->len == 0 && s->in_flight == 0 &&
        s->committed == s->fetched) {
        int next;
        s->running = 0;
        s->completed_through = s->round;
        pthread_mutex_unlock(&e->mu);
        next = next_round(e, s);
        pthread_mutex_lock(&e->mu);
        if (next < -1)
            return next + 1000000;
        if (next < 0) {
            s->done = 1;
        } else {
            s->round = next;
            s->completed_through = next - 1;
        }
        pthread_cond_broadcast(&e->cv_coord);
        return 1;
    }
    return 0;
}

static int start_workers(struct engine *e, struct worker *wk, int per_side)
{
    int i, side, rc;
    for (side = 0; side < 2; side++) {
        struct side *s = &e->s[side];
        s->threads = calloc((size_t)per_side, sizeof *s->threads);
        if (!s->threads)
            return TM_ENOMEM;
        for (i = 0; i < per_side; i++) {
            struct worker *w = &wk[side * per_side + i];
            w->e = e;
            w->side = side;
            if (side == TM_DST) {
                rc = tm__store_open_reader(e->cfg->db_path, &w->rd, e->cfg->err);
                if (rc)
                    return rc;
                rc = sqlite3_prepare_v2(
                    w->rd,
                    "SELECT id, name, type, size, mtime, traversal_status, "
                    "copy_status, conflict FROM src_nodes WHERE parent_id=? "
                    "ORDER BY name",
                    -1, &w->kids, NULL);
                if (rc != SQLITE_OK)
                    return tm__store_error(w->rd, rc, e->cfg->err, "prepare");
            }
            if (pthread_create(&s->threads[i], NULL, worker_main, w) != 0)
                return TM_ENOMEM;
            s->nthreads++;
        }
    }
    return 0;
}

static int prepare_side(struct engine *e, int which)
{
    struct side *s = &e->s[which];
    int rc = sqlite3_prepare_v2(e->rd, fetch_sql[which], -1, &s->fetch, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(e->rd, next_round_sql[which], -1, &s->next_round,
                                NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(e->rd, rc, e->cfg->err, "prepare");
    s->which = which;
    s->round = next_round(e, s);
    if (s->round < -1)
        return s->round + 1000000;
    if (s->round < 0) {
        s->done = 1;
        s->round = 0;
    }
    s->completed_through = s->round - 1;
    return 0;
}

int tm__discover_run(struct tm__discover_cfg *cfg)
{
    struct engine e;
    struct worker *wk = NULL;
    struct task *buf = NULL;
    int64_t next_id[2] = { 1, 1 };
    int64_t t0 = tm__now_ns(), last_report = t0;
    int rc, wrc, side, i, per_side = cfg->workers > 0 ? cfg->workers : 4;
    const char *const max_sql[2] = { "SELECT coalesce(max(id),0)+1 FROM src_nodes",
                                     "SELECT coalesce(max(id),0)+1 FROM dst_nodes" };

    memset(&e, 0, sizeof e);
    e.cfg = cfg;
    e.prec = cfg->ad[0]->mtime_precision > cfg->ad[1]->mtime_precision
                 ? cfg->ad[0]->mtime_precision
                 : cfg->ad[1]->mtime_precision;
    tm__buf_init(&e.fatal_msg);
    pthread_mutex_init(&e.mu, NULL);
    pthread_cond_init(&e.cv_work[0], NULL);
    pthread_cond_init(&e.cv_work[1], NULL);
    pthread_cond_init(&e.cv_coord, NULL);

    for (side = 0; side < 2; side++) {
        sqlite3_stmt *st;
        rc = sqlite3_prepare_v2(cfg->db, max_sql[side], -1, &st, NULL);
        if (rc != SQLITE_OK) {
            rc = tm__store_error(cfg->db, rc, cfg->err, "read ids");
            goto out;
        }
        if (sqlite3_step(st) == SQLITE_ROW)
            next_id[side] = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    rc = tm__store_open_reader(cfg->db_path, &e.rd, cfg->err);
    if (rc)
        goto out;
    for (side = 0; side < 2 && !rc; side++)
        rc = prepare_side(&e, side);
    if (rc)
        goto out;
    buf = malloc(PAGE * sizeof *buf);
    wk = calloc((size_t)per_side * 2, sizeof *wk);
    if (!buf || !wk) {
        rc = TM_ENOMEM;
        goto out;
    }
    rc = tm__writer_start(&e.w, cfg->db, next_id, WRITER_MAX_ROWS, on_commit, &e);
    if (rc)
        goto out;
    rc = tm__observe_start(&e.lg, cfg->log, e.w, cfg->err);
    if (rc)
        goto out;
    for (side = 0; side < 2; side++)
        sqlite3_prepare_v2(e.rd, side == TM_SRC
                                     ? "SELECT coalesce(sum(count), 0) FROM src_stats "
                                       "WHERE traversal_status = 'pending'"
                                     : "SELECT coalesce(sum(count), 0) FROM dst_stats "
                                       "WHERE traversal_status = 'pending'",
                           -1, &e.pending[side], NULL);
    tm__log(e.lg, TM_INFO, "engine", 0, NULL,
            "discovery started: %d workers per side, lead %d, retries %d",
            per_side, cfg->lead, cfg->retries);
    rc = start_workers(&e, wk, per_side);

    pthread_mutex_lock(&e.mu);
    while (!rc) {
        int changed = 0;
        if (e.fatal || (rc = tm__writer_error(e.w)) != 0)
            break;
        if (stopping(&e)) {
            rc = TM_ESTOPPED;
            break;
        }
        for (side = 0; side < 2 && !rc; side++) {
            int c = advance(&e, side, buf);
            if (c < 0)
                rc = c;
            else
                changed |= c;
        }
        if (rc || (e.s[0].done && e.s[1].done))
            break;
        if (tm__now_ns() - last_report >= 1000000000LL) {
            last_report = tm__now_ns();
            report(&e, t0, 0);
            snapshot(&e, t0);
        }
        if (!changed) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&e.cv_coord, &e.mu, &ts);
        }
    }
    if (!rc && e.fatal)
        rc = e.fatal;
    e.quit = 1;
    pthread_cond_broadcast(&e.cv_work[0]);
    pthread_cond_broadcast(&e.cv_work[1]);
    pthread_mutex_unlock(&e.mu);

out:
    for (side = 0; side < 2; side++)
        for (i = 0; i < e.s[side].nthreads; i++)
            pthread_join(e.s[side].threads[i], NULL);
    if (e.w && rc == 0) {
        pthread_mutex_lock(&e.mu);
        snapshot(&e, t0);
        pthread_mutex_unlock(&e.mu);
    }
    if (e.lg) {
        if (rc == 0)
            tm__log(e.lg, TM_INFO, "engine", 0, NULL, "discovery complete: %lld "
                    "source and %lld destination nodes, %lld listings failed",
                    (long long)e.s[0].nodes, (long long)e.s[1].nodes,
                    (long long)(e.s[0].failed + e.s[1].failed));
        else if (rc == TM_ESTOPPED)
            tm__log(e.lg, TM_WARNING, "engine", 0, NULL, "discovery interrupted");
        else
            tm__log(e.lg, TM_CRITICAL, "engine", 0, NULL, "discovery stopped: %s",
                    e.fatal_msg.len ? e.fatal_msg.buf : tm_strerror(rc));
        tm__logger_stop(e.lg); /* before the writer: its records go there */
    }
    for (side = 0; side < 2; side++)
        sqlite3_finalize(e.pending[side]);
    if (e.w) {
        struct tm__buf werr = TM__BUF_INIT;
        wrc = tm__writer_stop(e.w, &werr);
        if (wrc && (!rc || rc == TM_ESTOPPED || rc == wrc)) {
            rc = wrc;
            tm__buf_reset(cfg->err);
            tm__buf_add(cfg->err, werr.buf, werr.len);
        }
        tm__buf_release(&werr);
    }
    if (e.fatal && rc == e.fatal && e.fatal_msg.len) {
        tm__buf_reset(cfg->err);
        tm__buf_add(cfg->err, e.fatal_msg.buf, e.fatal_msg.len);
    }
    if (!rc)
        report(&e, t0, 1);
    if (wk) {
        for (i = 0; i < per_side * 2; i++) {
            sqlite3_finalize(wk[i].kids);
            if (wk[i].rd)
                sqlite3_close(wk[i].rd);
        }
    }
    for (side = 0; side < 2; side++) {
        struct side *s = &e.s[side];
        while (s->len) {
            free(s->win[s->head].path);
            s->head = (s->head + 1) % s->cap;
            s->len--;
        }
        free(s->win);
        free(s->threads);
        sqlite3_finalize(s->fetch);
        sqlite3_finalize(s->next_round);
    }
    if (e.rd)
        sqlite3_close(e.rd);
    free(wk);
    free(buf);
    tm__buf_release(&e.fatal_msg);
    pthread_mutex_destroy(&e.mu);
    pthread_cond_destroy(&e.cv_work[0]);
    pthread_cond_destroy(&e.cv_work[1]);
    pthread_cond_destroy(&e.cv_coord);
    return rc;
}
