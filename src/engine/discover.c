/*
 * discover.c - the discovery engine: two queues (source, destination) of
 * folders to list, run on the one task pool (pool.c), kept in step per
 * folder by a coordinator, recorded by the writer (store/writer.c).
 *
 * Threads: the coordinator runs on the caller's thread; listings run as
 * jobs on the pool's threads (at most --workers per side in flight); the
 * writer has its own thread.
 *
 * The frontier of a side is its pending folders. The coordinator pulls
 * them from the state file in keyset pages, one cursor per depth (new
 * rows always get larger ids, so a cursor never misses one), into a
 * bounded window, lowest depth first. The rules (docs/internals.md):
 *  - a destination folder is listed only once its source twin's listing
 *    is durable (its children, which the comparison reads, are then in the
 *    state file); fetched earlier, it waits in a bounded map until the
 *    writer says the twin committed;
 *  - the source lists depth r only while r <= the destination's lowest
 *    unfinished depth + lead, unless the destination is done;
 *  - a side's round is its lowest unfinished depth: rounds remain the unit
 *    of milestones (the YAML file) and stats.
 * A folder is listed page by page; each page's children go to the writer
 * with the listing's position after it, in one transaction, so a crash
 * resumes inside a folder of millions of children and no folder is ever
 * held whole in memory. The destination compares each page with the
 * source twin's children by point lookups on a small shared pool of read
 * connections (an operation in flight costs no connection of its own).
 * With discover --checksum, the same listing job then reads both files of
 * each pair of equal size and different mtime (open_read of each storage)
 * and compares their hashes, outside every lock, before its page goes to
 * the writer. A destination that can list files without their metadata
 * (stat_many: S3, where rclone's mtime and mode cost a HEAD per object) is
 * told to (meta_later); the job then asks stat_many, outside every lock,
 * for the files whose size equals their source twin's (the only ones
 * whose mtime or mode decides anything) and those not on the source (the
 * mirror's removal checks the mtime recorded), before it compares them.
 * With --size-only it asks for none but those not on the source, and the
 * storage lists folders without their modes too (sizes_only): what was
 * listed without them is compared by type and size only.
 *
 * Two storages without latency (TM_CAP_FAST_LIST: local trees) list a
 * destination folder and its pending source twin in one job (list_pair:
 * the pair listing): both read whole, merged in memory, one result for
 * the writer with the verdicts in the source rows' inserts. The source's
 * frontier then leaves the folders that have a twin to the pairs, and
 * lists a depth alone only once the destination's depths above are
 * listed (docs/internals.md, "Pair listings").
 *
 * On a shared state database (cfg->claim: PostgreSQL, several processes)
 * the frontier is not paged: refill_leased() claims folders under a
 * lease, and the store applies the two rules above for all processes
 * (a destination folder is claimed only once its twin is durable, so the
 * waiting map stays empty; the source's depth is bounded by the
 * destination's lowest pending one). Each result carries its lease; the
 * writer drops a page whose folder another process holds by then.
 *
 * Lock order: e->mu, then a reader's mutex, then the writer's mutex
 * (tm__writer_error); never the reverse: the writer calls on_commit(),
 * which takes e->mu, without its own lock held. e->mu is never held while
 * calling an adapter or SQLite, nor while handing anything to the writer,
 * which may wait for room in its queue, and so for a commit, and so for
 * on_commit().
 */
#include "engine/engine.h"

#include "engine/observe.h"
#include "engine/pool.h"
#include "store/frontier.h"
#include "store/store.h"
#include "store/writer.h"
#include "util/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define PAGE 1024            /* frontier rows fetched at once */
#define SPAN 8               /* depths a side fetches from at once */
#define WAIT_MAX 65536       /* destination folders waiting for their twin */
#define WIN_MAX 65536        /* a pass: folders of a side's window (fetched,
                                not all listed): memory, and what a crash
                                may list again, stay bounded behind one
                                slow listing */
#define CLAIM_MIN 32         /* folders a claim asks for, at least (leased) */
#define READERS 4            /* shared read connections for comparisons */
/* Rows queued for the writer at most. What is queued is lost by a crash and
 * listed again by the resume: one batch's worth keeps that small while the
 * writer (the bottleneck) never runs dry. */
#define WRITER_MAX_ROWS 4096

/* What the listing threads add to their nice value. On a local tree they
 * are CPU-bound like the one writer thread they feed, which bounds the
 * discovery: at equal weights the scheduler shares a core between the
 * writer and several listing threads, and the writer falls behind while
 * the listings wait for room in its queue. At +10 (a tenth of the weight)
 * the writer keeps a core whenever it has work; the listings take the
 * rest, and all of it when the writer waits (about a fifth less wall on
 * bench/discover.sh's pair, 2 cores: docs/BENCHMARKS.md, goal 3's floor). */
#define LIST_NICE 10

struct engine;

struct task {
    struct tm__job job;  /* pool link; first */
    struct engine *e;    /* the engine */
    int side;            /* TM_SRC or TM_DST */
    int64_t id;          /* folder row */
    int64_t src_id;      /* destination: the source twin */
    int depth;           /* folder depth */
    int src_failed;      /* destination: the twin's listing failed */
    int twin_pending;    /* destination: the twin was pending when read */
    int ts;              /* its row's status when fetched (a pass keeps
                            the row when the listing leaves it so) */
    char *path;          /* malloc'd root-relative path */
    struct tm__buf pos;  /* where an earlier run's listing stopped */
    int64_t lease;       /* a shared store: the lease that holds it, else 0 */
    struct task *wnext;  /* waiting map chain */
    int pair;            /* destination: listed with its twin (list_pair) */
    struct tm__buf twin_pos; /* pair: where the twin's listing stopped */
    struct task *then;   /* a source listing run by a pair that fell back:
                            its destination folder, put in the waiting map
                            before the last page goes to the writer */
    int first_rc;        /* a pair's part: the listing starts from this
                            failure of the pair's request (0: none) */
    struct tm__aerr first_ae; /* and its detail */
};

/* A source folder taken by a listing of this run (pair listings): by the
 * source's frontier, or by a pair. done once its listing is committed;
 * dropped (claim_purge) before the next read of the frontier, which then
 * sees it listed. */
struct claim {
    int64_t id;          /* the source folder */
    int done, failed;    /* its listing is durable, and failed */
    struct claim *next;  /* bucket chain */
    struct claim *dnext; /* done list */
};
#define CLAIM_BUCKETS 16384

/* A FIFO of tasks. */
struct queue {
    struct task **v;     /* ring */
    size_t head, len, cap; /* position, fill, capacity */
};

struct side {
    int which;                 /* TM_SRC or TM_DST */
    int lo;                    /* lowest depth with a pending folder */
    int lo_known;              /* lo was read since the last commit */
    int done;                  /* nothing left on this side */
    int started;               /* lo was read once */
    int round;                 /* deepest depth whose listing started: the
                                  round shown and recorded (never goes back) */
    int round_sent;            /* the round last recorded, -1: none */
    int round_go;              /* the deepest depth a worker may take from
                                  ready itself: its round is queued for the
                                  writer before any listing of that depth,
                                  so a durable listing implies its round */
    int64_t *cursor;           /* keyset position per depth (last id) */
    int ncursor;               /* depths in cursor */
    struct queue ready;        /* fetched, may be listed */
    int in_flight;             /* tasks being listed */
    atomic_llong submitted;    /* last pages handed to the writer */
    int64_t committed;         /* last pages committed */
    int64_t commit_gen;        /* bumped at each committed last page */
    int64_t folders_done;      /* listings committed (progress) */
    int64_t nodes;             /* children committed (progress) */
    int64_t failed;            /* listings failed (progress) */
    /* A pass (cfg->pass) writes no row for a folder it lists again
     * unchanged: its frontier is a watermark per side, kept in memory and
     * recorded (setting pass_src_frontier, pass_dst_frontier: "DEPTH
     * BELOW") by the writer in the same transaction as the listings it
     * covers (pass_marks). Every depth above pd is listed; pd is read in
     * id order, and every folder of it below the watermark is listed
     * (durable); the folders fetched and not yet all committed are the
     * window, in id order (at most WIN_MAX). A depth is begun once the
     * one above is whole, so its set of folders is fixed. After a crash
     * the folders of pd from the recorded watermark on are listed again:
     * of those, the killed run had listed the ones that ended out of id
     * order above it. */
    int pd;                    /* pass: the depth being listed */
    int64_t pcur;              /* pass: last id of pd fetched (cursor) */
    int pend;                  /* pass: a fetch of pd found no more rows */
    int pnone;                 /* pass: pd was read from its start and
                                  gave nothing: the side is done */
    struct pwin *win;          /* pass: the window (ring of fetched ids) */
    size_t win_head, win_len, win_cap; /* its first, end, room */
    int64_t pd_listed;         /* pass: folders of pd listed in this pass
                                  (progress) */
    int sent_pd;               /* pass: the watermark last recorded */
    int64_t sent_below;        /* (depth, below) */
    int64_t empty_gen;         /* leased: commits seen when a claim found
                                  nothing */
    int64_t empty_at;          /* and when (tm__now_ns) */
};

/* A folder of a pass's window: fetched, listed (committed) or not. */
struct pwin {
    int64_t id;                /* the folder */
    int done;                  /* its listing is durable */
    int failed;                /* and failed */
    int in_txn;                /* its listing is in the writer's open
                                  transaction (pass_marks) */
};

/* A read connection shared by the comparisons of many folders. */
struct reader {
    pthread_mutex_t mu;        /* one comparison at a time */
    struct tm__twins *tw;      /* the source children */
};

struct engine {
    struct tm__discover_cfg *cfg;  /* what to do */
    pthread_mutex_t mu;            /* guards sides, waiting, quit, fatal */
    pthread_cond_t cv_coord;       /* something for the coordinator */
    struct side s[2];              /* source and destination */
    struct task **wmap;            /* waiting map: source id -> task */
    size_t wmask;                  /* buckets - 1 */
    size_t nwaiting;               /* tasks in the map */
    struct tm__pool *pool;         /* the listing jobs */
    struct tm__writer *w;          /* the writer */
    struct tm__frontier *fr;       /* the coordinator's reads */
    struct reader rdr[READERS];    /* the comparisons' connections */
    atomic_uint next_reader;       /* round robin over rdr */
    int quit;                      /* workers must give up */
    atomic_int quitting;           /* quit, read without e->mu */
    int fatal;                     /* first fatal error */
    struct tm__buf fatal_msg;      /* its message */
    int64_t prec;                  /* mtime precision for comparisons */
    struct tm__attr_rule rule;     /* what the attributes' comparison takes */
    int owned[2];                  /* each side reports owners */
    struct tm__logger *lg;         /* the log service, or NULL */
    /* Pair listings (list_pair): both storages list without latency
     * (TM_CAP_FAST_LIST), a first discovery on SQLite. */
    int pair;                      /* on */
    int pair_off;                  /* the destination is done: the source
                                      reads every pending folder again */
    struct claim **claims;         /* source folders taken (e->mu) */
    struct claim *claims_done;     /* those committed, to drop */
    int64_t pairs;                 /* pairs committed */
    atomic_llong pair_fallbacks;   /* pairs listed one side at a time */
};

static const char *const qname[2] = { "src", "dst" };

static int stopping(struct engine *e)
{
    return atomic_load(e->cfg->stop) != 0;
}

static void set_fatal(struct engine *e, int err, const char *msg)
{
    if (!e->fatal) {
        e->fatal = err;
        tm__buf_reset(&e->fatal_msg);
        tm__buf_adds(&e->fatal_msg, msg ? msg : tm_strerror(err));
    }
    e->quit = 1;
    atomic_store(&e->quitting, 1);
    pthread_cond_broadcast(&e->cv_coord);
}

static void task_free(struct task *t)
{
    if (!t)
        return;
    free(t->path);
    tm__buf_release(&t->pos);
    tm__buf_release(&t->twin_pos);
    task_free(t->then);
    free(t);
}

/* ------------------------------------------------------------ queues */

static int q_push(struct queue *q, struct task *t)
{
    if (q->len == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 256, j;
        struct task **p = malloc(nc * sizeof *p);
        if (!p)
            return TM_ENOMEM;
        for (j = 0; j < q->len; j++)
            p[j] = q->v[(q->head + j) % q->cap];
        free(q->v);
        q->v = p;
        q->head = 0;
        q->cap = nc;
    }
    q->v[(q->head + q->len++) % q->cap] = t;
    return 0;
}

static struct task *q_pop(struct queue *q)
{
    struct task *t;
    if (!q->len)
        return NULL;
    t = q->v[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return t;
}

/* The waiting map (e->mu held). */
static size_t wslot(struct engine *e, int64_t src_id)
{
    uint64_t h = (uint64_t)src_id * 0x9e3779b97f4a7c15ULL;
    return (size_t)(h >> 20) & e->wmask;
}

static void wait_add(struct engine *e, struct task *t)
{
    size_t b = wslot(e, t->src_id);
    t->wnext = e->wmap[b];
    e->wmap[b] = t;
    e->nwaiting++;
}

static struct task *wait_take(struct engine *e, int64_t src_id)
{
    struct task **pp = &e->wmap[wslot(e, src_id)];
    for (; *pp; pp = &(*pp)->wnext) {
        struct task *t = *pp;
        if (t->src_id == src_id) {
            *pp = t->wnext;
            t->wnext = NULL;
            e->nwaiting--;
            return t;
        }
    }
    return NULL;
}

/* The claims (e->mu held). */
static struct claim **claim_slot(struct engine *e, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ULL;
    return &e->claims[(h >> 20) & (CLAIM_BUCKETS - 1)];
}

static struct claim *claim_find(struct engine *e, int64_t id)
{
    struct claim *c = *claim_slot(e, id);
    while (c && c->id != id)
        c = c->next;
    return c;
}

static int claim_add(struct engine *e, int64_t id)
{
    struct claim **b = claim_slot(e, id), *c = calloc(1, sizeof *c);
    if (!c)
        return TM_ENOMEM;
    c->id = id;
    c->next = *b;
    *b = c;
    return 0;
}

/* Source folder id's listing is durable (on_commit). */
static void claim_done(struct engine *e, int64_t id, int failed)
{
    struct claim *c = claim_find(e, id);
    if (!c || c->done)
        return;
    c->done = 1;
    c->failed = failed;
    c->dnext = e->claims_done;
    e->claims_done = c;
}

/* Drops the claims whose listing is durable: called before a read of the
 * frontier, which sees them listed. */
static void claim_purge(struct engine *e)
{
    while (e->claims_done) {
        struct claim *c = e->claims_done, **pp = claim_slot(e, c->id);
        e->claims_done = c->dnext;
        while (*pp != c)
            pp = &(*pp)->next;
        *pp = c->next;
        free(c);
    }
}

static void claims_free(struct engine *e)
{
    size_t b;
    if (!e->claims)
        return;
    for (b = 0; b < CLAIM_BUCKETS; b++)
        while (e->claims[b]) {
            struct claim *c = e->claims[b];
            e->claims[b] = c->next;
            free(c);
        }
    free(e->claims);
}

/* ------------------------------------------------------------ listing */

static void set_update(const struct engine *e, struct tm__wnode *n,
                       const struct tm__twin *s, int new_cs, int new_cf)
{
    if (s->cs == new_cs && s->cf == new_cf)
        return;
    if (e->cfg->pass && s->cs == CS_SUCCESSFUL && new_cs == CS_ALREADY && !new_cf)
        return; /* copied by an earlier pass, unchanged since: stays so */
    n->upd = 1;
    n->src_type = (int8_t)s->type;
    n->old_cs = (int8_t)s->cs;
    n->new_cs = (int8_t)new_cs;
    n->old_cf = (int8_t)s->cf;
    n->new_cf = (int8_t)new_cf;
    n->src_size = s->size;
}

/* CF_ATTRS when the destination child x, of the same type and content as
 * its source twin s, lacks the attributes the copy gives s (mode, owner
 * with --owner, extended attributes and ACLs unless --no-xattrs), else
 * CF_NONE; CF_NONE for x listed without them (meta_later, still set
 * only under --size-only). */
static int match_attrs(const struct engine *e, const struct tm__ent *x,
                       const struct tm__twin *s)
{
    struct tm__attrs sa = { s->mode, s->owned, s->uid, s->gid };
    struct tm__attrs da = { x->mode, e->owned[TM_DST], x->uid, x->gid };
    int cf;
    if (x->meta_later)
        return CF_NONE; /* listed without them (--size-only): not compared */
    cf = tm__compare_attrs(&e->rule, x->type, &sa, &da);
    return cf ? cf : tm__compare_xattrs(&e->rule, x->type, s->xattrs, x->xattrs);
}

/* Fills a destination node matched with its source twin s. What differs
 * only in attributes (CF_ATTRS) is not already there: it stays pending,
 * and the copy sets its attributes in place, keeping its content. A
 * folder's mtime is not compared: the copy changes it, then sets it at
 * its end, and verify compares it. */
static void match(struct engine *e, struct tm__wnode *n, const struct tm__ent *x,
                  const struct tm__twin *s)
{
    int cf;
    n->src_id = s->id;
    n->ts = TS_SUCCESSFUL;
    if (s->ts == TS_EXCLUDED) {
        n->ts = TS_EXCLUDED;
        return;
    }
    if (s->type != x->type) {
        n->conflict = CF_TYPE;
        set_update(e, n, s, CS_SKIPPED, CF_TYPE);
        return;
    }
    switch (x->type) {
    case TM_T_FOLDER:
        if (e->cfg->one_fs && s->cs == CS_SKIPPED) {
            /* a source folder skipped is never copied; with
             * --one-file-system it was not entered (a mount point): nor
             * is its twin */
            n->ts = TS_EXCLUDED;
            return;
        }
        n->ts = TS_PENDING;
        cf = match_attrs(e, x, s);
        n->conflict = (int8_t)cf;
        set_update(e, n, s, cf ? CS_PENDING : CS_ALREADY, cf);
        return;
    case TM_T_FILE:
    case TM_T_SYMLINK:
        cf = tm__compare_leaf(s->size, s->mtime, x->size, x->mtime, e->prec);
        if ((cf == CF_MTIME || cf == CF_DST_NEWER) &&
            tm__mtime_within(s->mtime, x->mtime, e->cfg->window))
            cf = CF_NONE;
        if ((cf == CF_MTIME || cf == CF_DST_NEWER) &&
            e->cfg->compare == TM_COMPARE_SIZE_ONLY)
            cf = CF_NONE;
        if (cf == CF_NONE)
            cf = match_attrs(e, x, s);
        n->conflict = (int8_t)cf;
        set_update(e, n, s, cf ? CS_PENDING : CS_ALREADY, cf);
        return;
    case TM_T_OTHER:
        if (s->cs != CS_PENDING)
            return; /* a special file not copied: nothing to say */
        if ((x->mode & S_IFMT) != (s->mode & S_IFMT)) {
            /* another kind (a FIFO where the source has a socket) */
            n->conflict = CF_TYPE;
            set_update(e, n, s, CS_SKIPPED, CF_TYPE);
            return;
        }
        /* same kind: the copy makes it again when its mtime or mode
         * differs (a device's number is compared by verify) */
        cf = tm__compare_leaf(0, s->mtime, 0, x->mtime, e->prec);
        if (cf != CF_NONE && tm__mtime_within(s->mtime, x->mtime, e->cfg->window))
            cf = CF_NONE;
        if (cf == CF_NONE && e->rule.modes && (x->mode & 07777) != (s->mode & 07777))
            cf = CF_ATTRS;
        n->conflict = (int8_t)cf;
        set_update(e, n, s, cf ? CS_PENDING : CS_ALREADY, cf);
        return;
    default:
        return;
    }
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

static struct tm__result *new_result(const struct task *t)
{
    struct tm__result *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->kind = TM_R_LISTING;
    r->side = t->side;
    r->folder_id = t->id;
    r->depth = t->depth;
    r->folder_ts = TS_SUCCESSFUL;
    r->pass_ts = (int8_t)t->ts;
    r->lease = t->lease;
    tm__buf_init(&r->arena);
    tm__buf_init(&r->pos);
    r->path = strdup(t->path);
    if (!r->path) {
        free(r);
        return NULL;
    }
    return r;
}

/* Turns r into the folder's failed last page, with the reason. */
static int fail_result(struct tm__result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail_result(struct tm__result *r, const char *fmt, ...)
{
    struct tm__buf m = TM__BUF_INIT;
    va_list ap;
    r->folder_ts = TS_FAILED;
    r->final = 1;
    r->n_nodes = 0;
    tm__buf_reset(&r->pos);
    va_start(ap, fmt);
    tm__buf_vaddf(&m, fmt, ap);
    va_end(ap);
    free(r->error);
    r->error = tm__buf_detach(&m, NULL);
    return r->error ? 0 : TM_ENOMEM;
}

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

/* 1 when the copy can make the special file x again on the destination
 * (TM_CAP_SPECIALS on both sides, not --no-specials, a kind mknod makes);
 * else 0, with why set when the user should be told more than "special
 * file" (a device, which only root can make). */
static int special_copied(const struct engine *e, const struct tm__ent *x,
                          char *why, size_t len)
{
    const struct tm__adapter *sa = e->cfg->ad[TM_SRC], *da = e->cfg->ad[TM_DST];
    uint32_t kind = x->mode & S_IFMT;
    if (e->cfg->no_specials || !(sa->caps & TM_CAP_SPECIALS) ||
        !(da->caps & TM_CAP_SPECIALS) || !da->mknod)
        return 0;
    if (kind == S_IFIFO || kind == S_IFSOCK)
        return 1;
    if (kind != S_IFCHR && kind != S_IFBLK)
        return 0;
    if (geteuid() == 0)
        return 1;
    snprintf(why, len, "a %s device: only root can make one",
             kind == S_IFCHR ? "character" : "block");
    return 0;
}

/* 1 when the filters leave the source child x (at path, named name) out
 * of the migration: the first rule that matches decides; then a file's
 * size and mtime against --min-size, --max-size, --max-age, --min-age. */
static int filtered_out(const struct tm__discover_cfg *c, const struct tm__ent *x,
                        const char *path, const char *name)
{
    if (c->n_excludes &&
        tm__filter_eval(c->excludes, c->n_excludes, path, name,
                        x->type == TM_T_FOLDER) < 0)
        return 1;
    if (x->type != TM_T_FILE)
        return 0;
    return (c->min_size > 0 && x->size < c->min_size) ||
           (c->max_size > 0 && x->size > c->max_size) ||
           (c->mtime_min != 0 && x->mtime < c->mtime_min) ||
           (c->mtime_max != 0 && x->mtime > c->mtime_max);
}

/* Fills child n of the folder of t on side as listed (x): what both
 * sides' rows take from a listing. */
static void fill_node(const struct engine *e, int side, const struct task *t,
                      struct tm__wnode *n, const struct tm__ent *x)
{
    n->parent_id = t->id;
    n->type = (int8_t)x->type;
    n->size = x->size;
    n->mtime = x->mtime;
    n->mode = x->mode;
    n->owned = (int8_t)e->owned[side];
    n->uid = x->uid;
    n->gid = x->gid;
}

/* The source children of one page. */
static int src_page(struct engine *e, const struct task *t,
                    const struct tm__listing *l, struct tm__result *r)
{
    size_t i;
    int rc;
    r->nodes = calloc(l->n ? l->n : 1, sizeof *r->nodes);
    if (!r->nodes)
        return TM_ENOMEM;
    for (i = 0; i < l->n; i++) {
        const struct tm__ent *x = &l->v[i];
        struct tm__wnode *n = &r->nodes[i];
        fill_node(e, TM_SRC, t, n, x);
        n->xattrs = x->xattrs;
        if (x->type == TM_T_FILE && x->nlink > 1) {
            /* one of a link group: the copy links the group's files */
            n->dev = x->dev;
            n->ino = x->ino;
            n->nlink = x->nlink;
        }
        rc = add_names(r, n, t->path, l->arena.buf + x->name_off, x->name_len);
        if (rc)
            return rc;
        if (filtered_out(e->cfg, x, r->arena.buf + n->path_off,
                         r->arena.buf + n->name_off)) {
            n->ts = TS_EXCLUDED;
            n->cs = CS_EXCLUDED;
        } else {
            char why[256] = "";
            n->ts = x->type == TM_T_FOLDER ? TS_PENDING : TS_SUCCESSFUL;
            n->cs = CS_PENDING;
            if (x->type == TM_T_OTHER && !special_copied(e, x, why, sizeof why))
                n->cs = CS_SKIPPED;
            if (x->type == TM_T_FOLDER && x->other_fs && e->cfg->one_fs) {
                /* a mount point: recorded, never entered, never copied */
                n->ts = TS_SUCCESSFUL;
                n->cs = CS_SKIPPED;
                snprintf(why, sizeof why, "a mount point (another file system, "
                         "or another mount, than the source root's): not "
                         "entered (--one-file-system)");
            }
            if (why[0]) {
                n->why_off = r->arena.len;
                n->why_len = strlen(why);
                if (tm__buf_add(&r->arena, why, n->why_len) ||
                    tm__buf_addch(&r->arena, '\0'))
                    return TM_ENOMEM;
            }
            /* what the destination cannot hold is known now, before
             * anything is written: skipped, with the reason (a folder is
             * still walked, so that review counts what it holds) */
            if (n->cs == CS_PENDING &&
                tm__adapter_cannot_hold(e->cfg->ad[TM_DST], r->arena.buf + n->path_off,
                                        n->path_len, x->type, why, sizeof why)) {
                n->cs = CS_SKIPPED;
                n->why_off = r->arena.len;
                n->why_len = strlen(why);
                if (tm__buf_add(&r->arena, why, n->why_len) ||
                    tm__buf_addch(&r->arena, '\0'))
                    return TM_ENOMEM;
            }
        }
        r->n_nodes++;
    }
    return 0;
}

/* Hashes the file at path on a with XXH3 into *out. */
static int hash_file(struct tm__adapter *a, const char *path, void *buf, size_t len,
                     uint64_t *out)
{
    struct tm__rfile *f;
    struct tm__entry st;
    struct tm__aerr ae;
    XXH3_state_t *h;
    int64_t n;
    int rc = tm__adapter_open_read(a, path, &f, &st, &ae);
    if (rc)
        return rc;
    h = XXH3_createState();
    if (!h) {
        tm__adapter_close_read(f);
        return TM_ENOMEM;
    }
    XXH3_64bits_reset(h);
    while ((n = tm__adapter_read(f, buf, len, &ae)) > 0)
        XXH3_64bits_update(h, buf, (size_t)n);
    *out = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    tm__adapter_close_read(f);
    return n < 0 ? (int)n : 0;
}

#define HASH_BUF (256 * 1024) /* read size of the --checksum comparison */

/* discover --checksum: the files of the page whose size equals their
 * source twin's but whose mtime does not (i[k], twins tw[k], k < n) are
 * compared by content, both sides read through their adapters on this
 * pool thread: equal contents make the twin already there (its attributes
 * still compared), different ones a conflict 'content'. A file either
 * side cannot read keeps its mtime conflict: the copy replaces it. */
static int checksum_page(struct engine *e, const struct tm__listing *l,
                         struct tm__result *r, const size_t *idx,
                         const struct tm__twin *tw, size_t n)
{
    void *buf = NULL;
    size_t k;
    int rc = 0;
    if (!n)
        return 0;
    buf = malloc(HASH_BUF);
    if (!buf)
        return TM_ENOMEM;
    for (k = 0; k < n && !rc; k++) {
        const struct tm__ent *x = &l->v[idx[k]];
        struct tm__wnode *nd = &r->nodes[idx[k]];
        const char *path = r->arena.buf + nd->path_off;
        uint64_t hs, hd;
        int cf;
        if (stopping(e)) {
            rc = TM_ESTOPPED; /* the page is not recorded half compared */
            break;
        }
        if (hash_file(e->cfg->ad[TM_SRC], path, buf, HASH_BUF, &hs) != 0 ||
            hash_file(e->cfg->ad[TM_DST], path, buf, HASH_BUF, &hd) != 0)
            continue;
        cf = hs == hd ? match_attrs(e, x, &tw[k]) : CF_CONTENT;
        nd->conflict = (int8_t)cf;
        nd->upd = 0;
        set_update(e, nd, &tw[k], cf ? CS_PENDING : CS_ALREADY, cf);
        if (hs == hd) {
            /* kept for verify --checksum (the update is written even when
             * the twin's statuses do not change: a resume lists again) */
            nd->upd = 1;
            nd->src_type = (int8_t)tw[k].type;
            nd->new_cs = (int8_t)(cf ? CS_PENDING : CS_ALREADY);
            nd->old_cs = (int8_t)tw[k].cs;
            nd->old_cf = (int8_t)tw[k].cf;
            nd->new_cf = (int8_t)cf;
            nd->src_size = tw[k].size;
            nd->has_hash = 1;
            nd->hash = hs;
        }
    }
    free(buf);
    return rc;
}

/* The files of a destination page listed without their metadata whose
 * size equals their source twin's, or that have no twin (i[k], twins
 * tw[k], id 0 for none, k < n): stat_many tells their mtime, mode and owner (one failed: the page fails, *ae
 * says why, and is listed again under the retry policy), then they are
 * compared as the others were; with --checksum, those whose mtime
 * differs join the files to hash (hidx, htw, *n_hash). */
static int later_page(struct engine *e, struct tm__listing *l, struct tm__result *r,
                      const size_t *idx, const struct tm__twin *tw, size_t n,
                      size_t *hidx, struct tm__twin *htw, size_t *n_hash,
                      struct tm__aerr *ae)
{
    const char **paths = NULL;
    struct tm__entry *out = NULL;
    int *rcs = NULL;
    size_t k;
    int rc;
    if (!n)
        return 0;
    paths = malloc(n * sizeof *paths);
    out = malloc(n * sizeof *out);
    rcs = malloc(n * sizeof *rcs);
    if (!paths || !out || !rcs) {
        rc = TM_ENOMEM;
        goto out;
    }
    for (k = 0; k < n; k++)
        paths[k] = r->arena.buf + r->nodes[idx[k]].path_off;
    rc = tm__adapter_stat_many(e->cfg->ad[TM_DST], paths, out, rcs, n, ae);
    for (k = 0; !rc && k < n; k++) {
        struct tm__ent *x = &l->v[idx[k]];
        struct tm__wnode *nd = &r->nodes[idx[k]];
        if (rcs[k] == 0) {
            x->type = out[k].type;
            x->size = out[k].size;
            x->mtime = out[k].mtime;
            x->mode = out[k].mode;
            x->uid = out[k].uid;
            x->gid = out[k].gid;
        } else if (rcs[k] != TM_ENOENT) {
            rc = rcs[k];
            break;
        } /* gone since listed: compared as listed (the copy writes it) */
        x->meta_later = 0;
        nd->type = (int8_t)x->type;
        nd->size = x->size;
        nd->mtime = x->mtime;
        nd->mode = x->mode;
        nd->uid = x->uid;
        nd->gid = x->gid;
        if (!tw[k].id)
            continue; /* not on the source: nothing to compare */
        match(e, nd, x, &tw[k]);
        if (htw && x->type == TM_T_FILE &&
            (nd->conflict == CF_MTIME || nd->conflict == CF_DST_NEWER)) {
            htw[*n_hash] = tw[k];
            hidx[(*n_hash)++] = idx[k];
        }
    }
out:
    free(paths);
    free(out);
    free(rcs);
    return rc;
}

/* Fills destination child n of r (the folder of t) as listed (x, named
 * name), before its comparison. */
static int dst_node(const struct engine *e, const struct task *t, struct tm__result *r,
                    struct tm__wnode *n, const struct tm__ent *x, const char *name)
{
    fill_node(e, TM_DST, t, n, x);
    return add_names(r, n, t->path, name, x->name_len);
}

/* Source rows a merge steps over before it seeks instead: a page of a
 * huge folder (pages come in the storage's order, which is not the names')
 * spans much of the folder's names, and stepping through all of them for
 * each page would cost the folder's size per page. */
#define MERGE_SKIP 16

/* The destination children of one page, each compared with its source
 * twin. The page is sorted by name; it is merged with a scan of the twin's
 * source children in the same order, which seeks again (the index
 * (parent_id, name)) when the next name is far ahead: one seek per page
 * for a folder of ordinary size, bounded work per child for any. */
static int dst_page(struct engine *e, const struct task *t, struct tm__listing *l,
                    struct tm__result *r, struct tm__aerr *ae, int *stat_failed)
{
    struct reader *rd = &e->rdr[atomic_fetch_add(&e->next_reader, 1) % READERS];
    struct tm__twin *tw = NULL; /* --checksum: the twins to hash */
    struct tm__twin *ltw = NULL; /* the twins of files listed without
                                    their metadata, of the same size */
    const char *sname = NULL;
    size_t i, slen = 0, *idx = NULL, n_hash = 0, *lidx = NULL, n_later = 0;
    int rc = 0, have = 0, scanning = 0;

    *stat_failed = 0;
    r->nodes = calloc(l->n ? l->n : 1, sizeof *r->nodes);
    if (!r->nodes)
        return TM_ENOMEM;
    if (e->cfg->compare == TM_COMPARE_CHECKSUM && l->n) {
        tw = malloc(l->n * sizeof *tw);
        idx = malloc(l->n * sizeof *idx);
        if (!tw || !idx) {
            free(tw);
            free(idx);
            return TM_ENOMEM;
        }
    }
    for (i = 0; i < l->n && !l->v[i].meta_later; i++)
        ;
    if (i < l->n) {
        ltw = malloc(l->n * sizeof *ltw);
        lidx = malloc(l->n * sizeof *lidx);
        if (!ltw || !lidx) {
            free(tw);
            free(idx);
            free(ltw);
            free(lidx);
            return TM_ENOMEM;
        }
    }
    pthread_mutex_lock(&rd->mu);
    for (i = 0; i < l->n && !rc; i++) {
        const struct tm__ent *x = &l->v[i];
        const char *name = l->arena.buf + x->name_off;
        struct tm__wnode *n = &r->nodes[i];
        struct tm__twin s;
        int c = 1, k;
        rc = dst_node(e, t, r, n, x, name);
        if (rc)
            break;
        /* the scan's row: the first source name >= name, or none */
        for (k = 0; scanning && have &&
                    (c = tm__name_cmp(sname, slen, name, x->name_len)) < 0;
             k++) {
            if (k == MERGE_SKIP) {
                scanning = 0; /* far behind: seek */
                break;
            }
            rc = tm__twins_next(rd->tw, &sname, &slen);
            have = rc == 1;
            c = 1;
        }
        if (rc < 0)
            break;
        if (!scanning) {
            rc = tm__twins_scan(rd->tw, t->src_id, name, x->name_len);
            if (!rc)
                rc = tm__twins_next(rd->tw, &sname, &slen);
            if (rc < 0)
                break;
            have = rc == 1;
            scanning = 1;
            c = have ? tm__name_cmp(sname, slen, name, x->name_len) : 1;
        }
        rc = 0;
        if (have && c == 0) {
            rc = tm__twins_row(rd->tw, &s);
            if (!rc && x->meta_later && x->type == TM_T_FILE && s.type == TM_T_FILE &&
                s.ts != TS_EXCLUDED && s.size == x->size &&
                e->cfg->compare != TM_COMPARE_SIZE_ONLY) {
                /* its mtime and mode decide: asked below, outside the lock */
                ltw[n_later] = s;
                lidx[n_later++] = i;
            } else if (!rc) {
                match(e, n, x, &s);
            }
        } else {
            n->ts = TS_NOT_ON_SRC;
            if (x->meta_later && x->type == TM_T_FILE) {
                /* recorded as it is: treemig delete removes it only
                 * while its mtime is still the one recorded */
                memset(&ltw[n_later], 0, sizeof ltw[n_later]); /* id 0: none */
                lidx[n_later++] = i;
            }
        }
        if (!rc && have && c == 0 && tw && x->type == TM_T_FILE &&
            s.type == TM_T_FILE && s.ts != TS_EXCLUDED &&
            (n->conflict == CF_MTIME || n->conflict == CF_DST_NEWER)) {
            tw[n_hash] = s;
            idx[n_hash++] = i;
        }
        r->n_nodes++;
    }
    tm__twins_end(rd->tw);
    pthread_mutex_unlock(&rd->mu);
    if (!rc && n_later) {
        rc = later_page(e, l, r, lidx, ltw, n_later, idx, tw, &n_hash, ae);
        *stat_failed = rc != 0 && rc != TM_ENOMEM;
    }
    if (!rc)
        rc = checksum_page(e, l, r, idx, tw, n_hash);
    free(tw);
    free(idx);
    free(ltw);
    free(lidx);
    return rc;
}

/* The destination children of a pair listing (list_pair): the page l of
 * the folder of t, sorted, merged by name with the source twin's children
 * rs (its one page, sorted, as src_page() made them) and compared by the
 * rules of dst_page(). The verdict goes into the source child's row
 * instead of an update of it; each destination child names its twin by
 * its index (the writer gives the source rows their ids first). */
static int pair_page(struct engine *e, const struct task *t, const struct tm__listing *l,
                     struct tm__result *r, struct tm__result *rs)
{
    size_t i, j = 0;
    int rc;
    r->nodes = calloc(l->n ? l->n : 1, sizeof *r->nodes);
    if (!r->nodes)
        return TM_ENOMEM;
    for (i = 0; i < l->n; i++) {
        const struct tm__ent *x = &l->v[i];
        const char *name = l->arena.buf + x->name_off;
        struct tm__wnode *n = &r->nodes[i];
        int c = 1;
        rc = dst_node(e, t, r, n, x, name);
        if (rc)
            return rc;
        for (; j < rs->n_nodes; j++) {
            const struct tm__wnode *sn = &rs->nodes[j];
            c = tm__name_cmp(rs->arena.buf + sn->name_off, sn->name_len, name,
                             x->name_len);
            if (c >= 0)
                break;
        }
        if (j < rs->n_nodes && c == 0) {
            struct tm__wnode *sn = &rs->nodes[j];
            struct tm__twin s;
            memset(&s, 0, sizeof s);
            s.size = sn->size;
            s.mtime = sn->mtime;
            s.mode = sn->mode;
            s.owned = sn->owned;
            s.uid = sn->uid;
            s.gid = sn->gid;
            s.xattrs = sn->xattrs;
            s.type = sn->type;
            s.ts = sn->ts;
            s.cs = sn->cs;
            s.cf = sn->conflict;
            match(e, n, x, &s);
            n->src_id = 0;
            n->twin = j + 1;
            if (n->upd) {
                /* the verdict, in the source row's insert */
                sn->cs = n->new_cs;
                sn->conflict = n->new_cf;
                n->upd = 0;
            }
        } else {
            n->ts = TS_NOT_ON_SRC;
        }
        r->n_nodes++;
    }
    return 0;
}

/* Hands the last page r of the listing of t to the writer. */
static int submit_last(struct engine *e, struct task *t, struct tm__result *r)
{
    if (t->then) {
        /* a pair fell back: its destination folder waits for this
         * listing to be durable, as any whose twin is pending */
        pthread_mutex_lock(&e->mu);
        wait_add(e, t->then);
        pthread_mutex_unlock(&e->mu);
        t->then = NULL;
    }
    if (r->folder_ts == TS_FAILED)
        tm__log(e->lg, TM_ERROR, qname[t->side], t->id, t->path, "%s",
                r->error ? r->error : "listing failed");
    atomic_fetch_add(&e->s[t->side].submitted, 1);
    return tm__writer_submit(e->w, r);
}

/* Lists the folder of t page by page and hands each page to the writer.
 * A failed page is tried again from the last position under the retry
 * policy; a folder that cannot be listed becomes a failed last page.
 * Returns 0, TM_ESTOPPED (the folder stays pending, at its last recorded
 * page), or a fatal error (its message already set). */
static int list_task(struct task *t)
{
    struct engine *e = t->e;
    struct tm__adapter *ad = e->cfg->ad[t->side];
    struct tm__listing l = TM__LISTING_INIT;
    struct tm__lister *li = NULL;
    struct tm__buf pos = TM__BUF_INIT;
    struct tm__result *r = NULL;
    struct tm__retry rt;
    struct tm__aerr ae;
    int rc = 0, more = 1, attempts = 1, stat_failed = 0;
    int paged = t->pos.len > 0; /* a position of the folder may be stored */

    tm__retry_init(&rt, e->cfg->retries, e->cfg->stop);
    if (t->side == TM_DST && t->src_failed) {
        r = new_result(t);
        rc = !r ? TM_ENOMEM
                : fail_result(r, "not compared: the source folder could not be "
                                 "listed");
        goto submit;
    }
    if (tm__buf_add(&pos, t->pos.buf, t->pos.len)) {
        rc = TM_ENOMEM;
        goto out;
    }
    if (t->first_rc) {
        /* a pair's request failed: this listing goes on from there */
        rc = t->first_rc;
        ae = t->first_ae;
        goto failed;
    }
    while (more) {
        if (!li) {
            rc = tm__adapter_list_open(ad, t->path, pos.buf, pos.len, &li, &ae);
        } else {
            int m = 0;
            tm__listing_reset(&l);
            rc = tm__adapter_list_next(li, tm__listing_add, &l, &m, &ae);
            if (!rc) {
                more = m; /* a failed page leaves more as it was */
                rc = tm__listing_sort(&l);
                if (rc)
                    tm__aerr_set(&ae, rc, "the listing holds a name twice");
                ae.cls = rc ? TM_ERR_NODE : ae.cls;
            }
            if (!rc) {
                r = new_result(t);
                if (!r) {
                    rc = TM_ENOMEM;
                    goto out;
                }
                rc = t->side == TM_SRC ? src_page(e, t, &l, r)
                                       : dst_page(e, t, &l, r, &ae, &stat_failed);
                if (stat_failed) {
                    /* the page's stat_many failed: listed again below
                     * (more was 1 before this page) */
                    tm__result_free(r);
                    r = NULL;
                    more = 1;
                    goto failed;
                }
                if (!rc && more) {
                    tm__buf_reset(&pos);
                    rc = tm__adapter_list_pos(li, &pos);
                    if (!rc)
                        rc = tm__buf_add(&r->pos, pos.buf, pos.len);
                }
                if (rc)
                    goto out; /* ENOMEM, or the state file could not be read */
                r->final = !more;
                r->attempts = r->final ? attempts : 0;
                r->no_pos = !paged;
                if (!more)
                    break; /* the last page goes through submit below */
                paged = 1;
                rc = tm__writer_submit(e->w, r);
                r = NULL;
                if (rc)
                    goto out;
                if (stopping(e)) {
                    rc = TM_ESTOPPED;
                    goto out;
                }
                continue;
            }
        }
        if (!rc)
            continue;
    failed:
        /* a failed request: the page is tried again from the last
         * position, through a new listing (a broken connection, a
         * listing the storage forgot) */
        tm__adapter_list_close(li);
        li = NULL;
        if (rc == TM_ENOMEM || rc == TM_ESTOPPED)
            goto out;
        if (ae.cls == TM_ERR_FATAL && rc != TM_EBADNAME) {
            struct tm__buf m = TM__BUF_INIT;
            tm__buf_addf(&m, "%s %s: %s", t->side == TM_SRC ? "source" : "destination",
                         t->path, ae.msg);
            pthread_mutex_lock(&e->mu);
            set_fatal(e, rc, m.buf);
            pthread_mutex_unlock(&e->mu);
            tm__buf_release(&m);
            goto out;
        }
        {
            int again = tm__retry_again(&rt, &ae);
            if (again == TM_ESTOPPED) {
                rc = TM_ESTOPPED;
                goto out;
            }
            if (again) {
                if (ae.cls == TM_ERR_THROTTLE) {
                    tm__log(e->lg, TM_DEBUG, qname[t->side], t->id, t->path,
                            "list %s: throttled, waiting %lld ms", t->path,
                            (long long)tm__retry_last_wait(&rt));
                } else {
                    attempts++;
                    tm__log(e->lg, TM_WARNING, qname[t->side], t->id, t->path,
                            "list %s: %s; retry %d of %d after %lld ms", t->path,
                            ae.msg, rt.tries, rt.max,
                            (long long)tm__retry_last_wait(&rt));
                }
                rc = 0;
                continue;
            }
        }
        if (root_gone(e, t->side)) {
            rc = TM_ENOENT;
            goto out;
        }
        tm__result_free(r);
        r = new_result(t);
        rc = !r ? TM_ENOMEM : fail_result(r, "list %s: %s", t->path, ae.msg);
        if (!rc)
            r->attempts = attempts;
        break;
    }
submit:
    if (!rc && r) {
        rc = submit_last(e, t, r);
        r = NULL;
    }
out:
    tm__adapter_list_close(li);
    tm__result_free(r);
    tm__listing_release(&l);
    tm__buf_release(&pos);
    return rc;
}

/* Reads the folder at path on side whole into l, sorted: 1 when it is one
 * page, 0 when it has more (list_task() lists it page by page), a failed
 * request's code with *ae (list_task() goes on from that failure: its
 * retry policy, its failed folder), or TM_ESTOPPED. */
static int read_one(struct engine *e, int side, const char *path, struct tm__listing *l,
                    struct tm__aerr *ae)
{
    struct tm__lister *li = NULL;
    int more = 1, rc;
    if (stopping(e))
        return TM_ESTOPPED;
    rc = tm__adapter_list_open(e->cfg->ad[side], path, NULL, 0, &li, ae);
    if (!rc)
        rc = tm__adapter_list_next(li, tm__listing_add, l, &more, ae);
    tm__adapter_list_close(li);
    if (!rc && !more && (rc = tm__listing_sort(l)) != 0) {
        tm__aerr_set(ae, rc, "the listing holds a name twice");
        ae->cls = TM_ERR_NODE;
    }
    return rc ? rc : !more;
}

/* A task of side for the folder of t (its twin on the source), to list
 * alone; it starts from the failure rc, *ae when rc is not 0. */
static struct task *pair_part(const struct task *t, int side, int rc,
                              const struct tm__aerr *ae)
{
    struct task *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    tm__buf_init(&n->pos);
    tm__buf_init(&n->twin_pos);
    n->job.run = t->job.run;
    n->e = t->e;
    n->side = side;
    n->id = side == TM_SRC ? t->src_id : t->id;
    n->src_id = side == TM_SRC ? 0 : t->src_id;
    n->depth = t->depth;
    n->ts = side == TM_SRC ? TS_PENDING : t->ts;
    n->twin_pending = side == TM_DST;
    n->first_rc = rc;
    if (rc)
        n->first_ae = *ae;
    n->path = strdup(t->path);
    if (!n->path ||
        (side == TM_SRC && tm__buf_add(&n->pos, t->twin_pos.buf, t->twin_pos.len))) {
        task_free(n);
        return NULL;
    }
    return n;
}

/* Lists the destination folder of t and its source twin (pending, the same
 * path) in one job: the pair listing, for two storages that list without
 * latency (TM_CAP_FAST_LIST). Each side is read whole (one page), the two
 * are merged in memory, and one result goes to the writer: the source
 * children with their verdicts in their rows, and with it (pair) the
 * destination children, both folders' new status in one transaction.
 * No comparison reads the state file, and no verdict is an update.
 * Otherwise it falls back to one side at a time, as without pairs: a
 * twin of more than one page, whose listing failed, or with a recorded
 * position is listed alone (list_task: its pages, from its position,
 * from the failure under the retry policy); a destination folder of more
 * than one page, or whose listing failed, has its twin's one page sent
 * alone. Either way t then waits in the waiting map for its twin's
 * listing to be durable, and is listed alone (from its failure). */
static int list_pair(struct task *t)
{
    struct engine *e = t->e;
    struct tm__listing ls = TM__LISTING_INIT, ld = TM__LISTING_INIT;
    struct tm__result *rs = NULL, *rd = NULL;
    struct task *src = NULL, *dst = NULL;
    struct tm__aerr ae;
    int rc = 0, more = 0;

    memset(&ae, 0, sizeof ae);
    if (!t->twin_pos.len)
        rc = read_one(e, TM_SRC, t->path, &ls, &ae);
    if (rc != 1) {
        /* the twin alone, then t */
        if (rc == TM_ESTOPPED)
            return rc;
        atomic_fetch_add(&e->pair_fallbacks, 1);
        src = pair_part(t, TM_SRC, rc, &ae);
        dst = pair_part(t, TM_DST, 0, &ae);
        rc = TM_ENOMEM;
        if (src && dst) {
            src->then = dst;
            dst = NULL;
            rc = list_task(src);
        }
        goto out;
    }
    rs = new_result(t);
    if (!rs) {
        rc = TM_ENOMEM;
        goto out;
    }
    rs->side = TM_SRC;
    rs->folder_id = t->src_id;
    rs->pass_ts = TS_PENDING;
    rs->final = 1;
    rs->attempts = 1;
    rs->no_pos = 1;
    src = pair_part(t, TM_SRC, 0, &ae); /* src_page's parent and path */
    rc = !src ? TM_ENOMEM : src_page(e, src, &ls, rs);
    if (!rc)
        rc = read_one(e, TM_DST, t->path, &ld, &ae);
    if (rc == TM_ESTOPPED) {
        /* stopped between the two: the source's listing, done, is
         * committed alone, as a stop commits every listing done; t stays
         * pending, for the resume to list against its listed twin */
        rc = submit_last(e, src, rs);
        rs = NULL;
        rc = rc ? rc : TM_ESTOPPED;
        goto out;
    }
    if (rc == 1) {
        rd = new_result(t);
        rc = !rd ? TM_ENOMEM : pair_page(e, t, &ld, rd, rs);
        if (!rc) {
            rd->final = 1;
            rd->attempts = 1;
            rd->no_pos = 1;
            rs->pair = rd;
            rd = NULL;
            atomic_fetch_add(&e->s[TM_DST].submitted, 1);
            rc = submit_last(e, src, rs);
            rs = NULL;
        }
        goto out;
    }
    if (rc == TM_ENOMEM || rc == TM_ESTOPPED)
        goto out;
    /* the twin's page alone, then t from its failure (or its pages) */
    atomic_fetch_add(&e->pair_fallbacks, 1);
    more = rc == 0;
    src->then = pair_part(t, TM_DST, more ? 0 : rc, &ae);
    rc = TM_ENOMEM;
    if (src->then) {
        rc = submit_last(e, src, rs);
        rs = NULL;
    }
out:
    task_free(src);
    task_free(dst);
    tm__result_free(rs);
    tm__result_free(rd);
    tm__listing_release(&ls);
    tm__listing_release(&ld);
    return rc;
}

/* The frontier rows a side wants at hand: ready ones and those in flight
 * (the coordinator refills below that). */
static size_t side_want(const struct engine *e)
{
    int workers = e->cfg->workers > 0 ? e->cfg->workers : 4;
    return (size_t)(2 * workers > PAGE ? 2 * workers : PAGE);
}

/* A pool job: lists one folder, then the next ready one of its side, and
 * so on, without a round trip through the coordinator (which is woken
 * only when the side runs low, or idle). */
static void run_task(struct tm__job *j)
{
    struct task *t = (struct task *)j;
    struct engine *e = t->e;
    struct side *s = &e->s[t->side];
    int workers = e->cfg->workers > 0 ? e->cfg->workers : 4;
    size_t low = side_want(e) / 2 + (size_t)workers;

    while (t) {
        struct task *next = NULL;
        int rc = stopping(e) || atomic_load(&e->quitting) ? TM_ESTOPPED
                 : t->pair                                  ? list_pair(t)
                                                            : list_task(t);
        struct tm__buf m = TM__BUF_INIT;
        if (rc && rc != TM_ESTOPPED) {
            /* said before e->mu is taken */
            if (tm__writer_error(e->w) == rc)
                tm__writer_message(e->w, &m); /* the state file's, not a side's */
            else
                tm__buf_addf(&m, "%s %s: %s", t->side == TM_SRC ? "source"
                                                                : "destination",
                             t->path, tm_strerror(rc));
        }
        pthread_mutex_lock(&e->mu);
        if (rc && rc != TM_ESTOPPED && !e->fatal)
            set_fatal(e, rc, m.len ? m.buf : NULL);
        tm__buf_release(&m);
        if (!e->quit && s->ready.len && !stopping(e) &&
            s->ready.v[s->ready.head]->depth <= s->round_go &&
            (!s->ready.v[s->ready.head]->pair ||
             s->ready.v[s->ready.head]->depth <= e->s[TM_SRC].round_go)) {
            next = q_pop(&s->ready);
        } else {
            /* a deeper depth waits for the coordinator (dispatch), which
             * records its round first */
            s->in_flight--;
        }
        if (s->ready.len + (size_t)s->in_flight < low || !s->in_flight ||
            next == NULL || s->round > s->round_sent)
            pthread_cond_signal(&e->cv_coord);
        pthread_mutex_unlock(&e->mu);
        task_free(t);
        t = next;
    }
}

/* A pass: the watermark of side s: every folder of depth s->pd whose id
 * is below it is listed, durably. e->mu held. */
static int64_t pass_below(const struct side *s)
{
    return s->win_head < s->win_len ? s->win[s->win_head].id : s->pcur + 1;
}

/* A pass: the window's entry of folder id, or NULL. e->mu held. */
static struct pwin *pass_win_find(struct side *s, int64_t id)
{
    size_t lo = s->win_head, hi = s->win_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->win[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->win_len && s->win[lo].id == id ? &s->win[lo] : NULL;
}

/* A pass: appends folder id (above every id in it) to the window. 0 or
 * TM_ENOMEM. e->mu held. */
static int pass_win_add(struct side *s, int64_t id)
{
    if (s->win_head == s->win_len)
        s->win_head = s->win_len = 0;
    if (s->win_len == s->win_cap) {
        if (s->win_head > s->win_cap / 2) {
            /* slide down: the ids below the head are done */
            memmove(s->win, s->win + s->win_head,
                    (s->win_len - s->win_head) * sizeof *s->win);
            s->win_len -= s->win_head;
            s->win_head = 0;
        } else {
            size_t cap = s->win_cap ? 2 * s->win_cap : 1024;
            struct pwin *v = realloc(s->win, cap * sizeof *v);
            if (!v)
                return TM_ENOMEM;
            s->win = v;
            s->win_cap = cap;
        }
    }
    s->win[s->win_len].id = id;
    s->win[s->win_len].done = 0;
    s->win[s->win_len].failed = 0;
    s->win[s->win_len].in_txn = 0;
    s->win_len++;
    return 0;
}

/* A pass: the listing of folder id of side s, depth depth, is durable:
 * the watermark moves over the done prefix of the window. e->mu held. */
static void pass_win_done(struct side *s, int64_t id, int depth, int failed)
{
    struct pwin *w = depth == s->pd ? pass_win_find(s, id) : NULL;
    if (!w)
        return; /* not fetched in this run: cannot be */
    w->done = 1;
    w->failed = failed;
    while (s->win_head < s->win_len && s->win[s->win_head].done)
        s->win_head++;
}

/* A pass: whether the listing of source folder id at depth is durable
 * (*failed: it failed, when known from the window, else -1). e->mu
 * held. */
static int pass_src_listed(struct engine *e, int64_t id, int depth, int *failed)
{
    struct side *s = &e->s[TM_SRC];
    struct pwin *w;
    *failed = -1;
    if (s->done || depth < s->pd || id <= 0)
        return 1;
    if (depth > s->pd)
        return 0;
    if (id < pass_below(s))
        return 1;
    w = pass_win_find(s, id);
    if (w && w->done) {
        *failed = w->failed;
        return 1;
    }
    return 0;
}

/* A listing page r is durable (on_commit, e->mu held). */
static void page_committed(struct engine *e, const struct tm__result *r)
{
    struct side *s = &e->s[r->side];
    if (r->lease_lost)
        e->cfg->lease_lost++;
    s->nodes += r->inserted;
    if (!r->final)
        return;
    s->committed++;
    if (r->lease > 0)
        e->cfg->claim->ended(e->cfg->claim->ctx, r->lease);
    if (r->lease_lost) {
        /* another process holds the folder now: its listing counts */
        s->lo_known = 0;
        return;
    }
    if (e->pair && r->side == TM_SRC)
        claim_done(e, r->folder_id, r->folder_ts == TS_FAILED);
    s->folders_done++;
    s->commit_gen++;
    if (e->cfg->pass && r->depth == s->pd) {
        pass_win_done(s, r->folder_id, r->depth, r->folder_ts == TS_FAILED);
        s->pd_listed++;
    }
    s->lo_known = 0;
    if (r->folder_ts == TS_FAILED)
        s->failed++;
    if (r->side == TM_SRC && e->nwaiting) {
        /* its destination twin may be compared now */
        struct task *t = wait_take(e, r->folder_id);
        if (t) {
            t->src_failed = r->folder_ts == TS_FAILED;
            if (q_push(&e->s[TM_DST].ready, t)) {
                task_free(t);
                set_fatal(e, TM_ENOMEM, NULL);
            }
        }
    }
}

/* Called by the writer thread once results are durable. */
static void on_commit(void *ctx, const struct tm__result *list)
{
    struct engine *e = ctx;
    const struct tm__result *r;
    pthread_mutex_lock(&e->mu);
    for (r = list; r; r = r->next) {
        if (r->kind != TM_R_LISTING)
            continue;
        page_committed(e, r);
        if (r->pair) {
            page_committed(e, r->pair);
            e->pairs++;
        }
    }
    pthread_cond_signal(&e->cv_coord);
    pthread_mutex_unlock(&e->mu);
}

/* ------------------------------------------------------------ frontier */

/* A read of the frontier failed: its message becomes the run's. */
static void frontier_fail(struct engine *e)
{
    tm__buf_reset(e->cfg->err);
    tm__buf_adds(e->cfg->err, tm__frontier_errmsg(e->fr));
}

static int64_t *cursor_at(struct side *s, int depth)
{
    if (depth >= s->ncursor) {
        int n = depth + 16, i;
        int64_t *p = realloc(s->cursor, (size_t)n * sizeof *p);
        if (!p)
            return NULL;
        for (i = s->ncursor; i < n; i++)
            p[i] = 0;
        s->cursor = p;
        s->ncursor = n;
    }
    return &s->cursor[depth];
}

/* Where fetch_rows puts the rows it reads. */
struct fetch {
    struct engine *e;     /* the engine */
    struct side *s;       /* the side */
    int depth;            /* the depth read */
    struct task **tasks;  /* out */
    int n;                /* tasks made */
    int64_t last;         /* the last row read (0: none) */
};

static int fetch_one(void *ctx, const struct tm__frow *r)
{
    struct fetch *f = ctx;
    struct task *t;
    f->last = r->id;
    if (r->has_twin)
        return 0; /* a pair lists it */
    t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(r->path))) {
        free(t);
        return TM_ENOMEM;
    }
    tm__buf_init(&t->pos);
    tm__buf_init(&t->twin_pos);
    t->job.run = run_task;
    t->e = f->e;
    t->side = f->s->which;
    t->id = r->id;
    t->src_id = r->src_id;
    t->depth = f->depth;
    t->src_failed = r->twin_failed;
    t->twin_pending = r->twin_pending;
    t->ts = r->ts;
    if ((r->pos && tm__buf_add(&t->pos, r->pos, r->pos_len)) ||
        (f->e->pair && r->twin_pos &&
         tm__buf_add(&t->twin_pos, r->twin_pos, r->twin_pos_len))) {
        task_free(t);
        return TM_ENOMEM;
    }
    f->tasks[f->n++] = t;
    return 0;
}

/* Reads up to want frontier rows of side at depth into tasks, after
 * *cursor; *last (may be NULL) gets the last row's id, or after (a row
 * a pair lists makes no task). Without e->mu. Returns the count or an
 * error. */
static int fetch_rows(struct engine *e, struct side *s, int depth, int64_t after,
                      int want, struct task **tasks, int64_t *last)
{
    struct fetch f = { e, s, depth, tasks, 0, after };
    int rc = tm__frontier_rows(e->fr, s->which, depth, after, want, fetch_one, &f);
    if (last)
        *last = f.last;
    if (rc) {
        while (f.n-- > 0)
            task_free(tasks[f.n]);
        if (rc != TM_ENOMEM)
            frontier_fail(e);
        return rc;
    }
    return f.n;
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

/* Whether side s has listings on their way: queued, running, waiting
 * for a twin, or not yet committed. Called with e->mu held. */
static int side_busy(struct engine *e, struct side *s)
{
    return s->in_flight || s->ready.len || (s->which == TM_DST && e->nwaiting) ||
           atomic_load(&s->submitted) != s->committed;
}

/* Brings side's lowest pending depth up to date, and finds it done.
 * Called with e->mu held; drops it. Returns 1 when the side changed, 0,
 * or an error. */
static int update_low(struct engine *e, struct side *s)
{
    int64_t gen = s->commit_gen;
    int lo, rc;
    if (s->done)
        return 0;
    if (e->cfg->claim) {
        /* leased: other processes list too, and commit without telling
         * this one; the side is done when nothing is pending in the
         * store, which matters only when nothing is left here */
        if (s->ready.len || s->in_flight)
            return 0;
        s->lo_known = 0;
    }
    if (s->lo_known)
        return 0;
    pthread_mutex_unlock(&e->mu);
    rc = tm__frontier_lowest(e->fr, s->which, &lo);
    pthread_mutex_lock(&e->mu);
    if (rc) {
        frontier_fail(e);
        return rc;
    }
    s->started = 1;
    if (lo < 0) {
        /* no pending folder: done once nothing is on its way either (a
         * listing is committed before its job ends: look again then) */
        if (side_busy(e, s))
            return 0;
        /* the stats count none: the rows must agree before the side ends
         * (a count gone wrong would end it with folders never listed).
         * A folder read from the frontier is listed or failed by now (not
         * busy), and a new folder gets a larger id than any: only the rows
         * past each depth's cursor are read. The coordinator alone moves
         * the cursors, and it is this thread. */
        pthread_mutex_unlock(&e->mu);
        rc = tm__frontier_pending_past(e->fr, s->which, s->cursor, s->ncursor, &lo);
        pthread_mutex_lock(&e->mu);
        if (rc) {
            frontier_fail(e);
            return rc;
        }
        if (lo < 0) {
            if (gen != s->commit_gen || side_busy(e, s))
                return 0; /* a commit came meanwhile: look again */
            s->done = 1;
            return 1;
        }
        if (!e->cfg->claim) {
            /* leased, others' folders come and go; alone, the rows
             * disagree with the stats: read the side again from the start
             * of each depth, so that these folders are listed too */
            int d;
            tm__log(e->lg, TM_WARNING, "engine", 0, NULL,
                    "%s: the stats count no pending folder, but the state file "
                    "has one at depth %d: it is listed now",
                    s->which == TM_SRC ? "source" : "destination", lo);
            for (d = 0; d < s->ncursor; d++)
                s->cursor[d] = 0;
        }
        s->lo = lo;
        return 1;
    }
    if (gen == s->commit_gen)
        s->lo_known = 1;
    if (lo == s->lo)
        return 0;
    s->lo = lo;
    return 1;
}

/* Records side's round (the deepest depth it started) when it moved: a
 * milestone of the state file and the YAML file. Called with e->mu held;
 * drops it. */
static void send_round(struct engine *e, struct side *s)
{
    int round = s->round;
    if (round <= s->round_sent)
        return;
    s->round_sent = round;
    pthread_mutex_unlock(&e->mu);
    /* leased: each process's rounds are its own view; a row of the
     * migration table written by every process's transactions would
     * make them wait for, and deadlock with, each other */
    if (!e->cfg->claim)
        submit_round(e, s->which, round);
    if (e->cfg->on_round)
        e->cfg->on_round(e->cfg->round_ctx, s->which, round);
    pthread_mutex_lock(&e->mu);
    if (round > s->round_go)
        s->round_go = round;
}

/* Reads again the status of the n source twins ids of destination
 * folders waiting in the map, and moves to side's ready queue each whose
 * twin's listing is durable (listed: known to be, only its failure is
 * read). Called with e->mu held; drops it while reading. 0 or an
 * error. */
static int recheck_twins(struct engine *e, struct side *s, const int64_t *ids, int n,
                         int listed)
{
    int i;
    for (i = 0; i < n; i++) {
        int failed = 0, done = 0, rc;
        struct task *t;
        pthread_mutex_unlock(&e->mu);
        rc = tm__frontier_twin_done(e->fr, ids[i], &done, &failed);
        pthread_mutex_lock(&e->mu);
        if (rc) {
            frontier_fail(e);
            return rc;
        }
        if ((done || listed) && (t = wait_take(e, ids[i])) != NULL) {
            t->src_failed = failed;
            if (q_push(&s->ready, t)) {
                task_free(t);
                return TM_ENOMEM;
            }
        }
    }
    return 0;
}

/* Pair listings: where a folder t just read from side's frontier goes,
 * by the claims (its twin's, or its own). 1: as without pairs; 0: it
 * went (ready as a pair, or dropped: listed or being listed already); or
 * an error (t freed). A source folder is claimed by the first listing
 * that takes it, its own or a pair; a destination folder whose twin is
 * pending and unclaimed becomes a pair, else waits for the twin's
 * listing (done already: it is ready). e->mu held. */
static int pair_sort(struct engine *e, struct side *s, struct task *t)
{
    struct claim *c;
    int rc;
    if (s->which == TM_SRC) {
        if (claim_find(e, t->id)) {
            task_free(t); /* a pair lists it, or listed it */
            return 0;
        }
        rc = claim_add(e, t->id);
        if (rc)
            task_free(t);
        return rc ? rc : 1;
    }
    if (!t->twin_pending)
        return 1;
    c = claim_find(e, t->src_id);
    if (c && !c->done) {
        wait_add(e, t);
        return 0;
    }
    if (c) {
        /* listed since the read */
        t->twin_pending = 0;
        t->src_failed = c->failed;
    } else {
        rc = claim_add(e, t->src_id);
        if (rc) {
            task_free(t);
            return rc;
        }
        t->pair = 1;
        t->twin_pending = 0;
    }
    rc = q_push(&s->ready, t);
    if (rc)
        task_free(t);
    return rc ? rc : 0;
}

/* Fills side's ready queue from the state file. Called with e->mu held;
 * drops it while reading. Returns 1 when rows came, 0, or an error. */
static int refill(struct engine *e, struct side *s, struct task **buf,
                  int64_t *ids)
{
    struct side *o = &e->s[!s->which];
    int workers = e->cfg->workers > 0 ? e->cfg->workers : 4;
    size_t want = side_want(e);
    int depth, hi, got = 0;

    if (s->done || s->ready.len + (size_t)s->in_flight >= want / 2 + (size_t)workers)
        return 0;
    hi = s->lo + SPAN;
    if (s->which == TM_SRC && !o->done && o->started && o->lo + e->cfg->lead < hi)
        hi = o->lo + e->cfg->lead;
    if (s->which == TM_SRC && !o->done && !o->started)
        hi = s->lo + e->cfg->lead; /* the destination has not begun */
    if (e->pair && s->which == TM_SRC && !o->done) {
        /* the folders the source lists alone (a pair lists the others)
         * wait until their depth's twins are all recorded: the
         * destination's depths above are listed. A folder that has its
         * twin has its verdict then, which the frontier reads to leave
         * it to the pair. */
        if (!o->started)
            return 0;
        if (o->lo < hi)
            hi = o->lo;
    }
    if (e->pair && s->which == TM_SRC && o->done && !e->pair_off) {
        /* no pair any more: every pending folder is the source's, those
         * the frontier left to pairs too (a twin that was not listed):
         * read each depth again from its start */
        e->pair_off = 1;
        tm__frontier_set_pair(e->fr, 0);
        for (depth = 0; depth < s->ncursor; depth++)
            s->cursor[depth] = 0;
    }
    for (depth = s->lo; depth <= hi && s->ready.len < want; depth++) {
        int64_t *cur = cursor_at(s, depth);
        int n, i, recheck, room, rc;
        int64_t last = 0;
        int64_t g0 = e->s[TM_SRC].commit_gen;
        if (!cur)
            return TM_ENOMEM;
        room = (int)(want - s->ready.len);
        if (s->which == TM_DST) {
            if (e->nwaiting >= WAIT_MAX)
                break;
            if ((size_t)room > WAIT_MAX - e->nwaiting)
                room = (int)(WAIT_MAX - e->nwaiting);
        }
        if (e->pair)
            claim_purge(e); /* the read sees their listings */
        pthread_mutex_unlock(&e->mu);
        n = fetch_rows(e, s, depth, *cur, room, buf, &last);
        pthread_mutex_lock(&e->mu);
        if (n < 0)
            return n;
        cur = cursor_at(s, depth);
        if (!cur)
            return TM_ENOMEM;
        *cur = last;
        if (n == 0)
            continue;
        recheck = 0;
        for (i = 0; i < n; i++) {
            struct task *t = buf[i];
            rc = e->pair ? pair_sort(e, s, t) : 1;
            if (rc <= 0) {
                if (rc < 0) {
                    while (++i < n)
                        task_free(buf[i]);
                    return rc;
                }
                continue; /* taken care of */
            }
            if (t->twin_pending) {
                ids[recheck++] = t->src_id;
                wait_add(e, t);
                continue;
            }
            rc = q_push(&s->ready, t);
            if (rc) {
                while (i < n)
                    task_free(buf[i++]);
                return rc;
            }
        }
        got += n;
        if (e->s[TM_SRC].commit_gen == g0)
            continue;
        /* a twin may have committed between the read and now: its commit
         * found nothing waiting. Look again; the task stays in the map
         * meanwhile, so a commit from now on finds it (and then it is not
         * there any more: only one of the two moves it). The tasks of buf
         * may be running or freed by now: only the ids are used. */
        rc = recheck_twins(e, s, ids, recheck, 0);
        if (rc)
            return rc;
    }
    return got > 0;
}

/* refill() in a pass: fetches the folders of depth s->pd after its
 * cursor into the window; a destination folder goes to the ready queue
 * when its source twin's listing is durable (the twin's depth is whole,
 * or the twin is below the source's watermark or done in its window),
 * else waits for it in the waiting map. The source begins a depth only
 * within --lead of the destination's. Called with e->mu held; drops it
 * while reading. Returns 1 when rows came, 0, or an error. */
static int refill_pass(struct engine *e, struct side *s, struct task **buf,
                       int64_t *ids)
{
    struct side *o = &e->s[!s->which], *src = &e->s[TM_SRC];
    int workers = e->cfg->workers > 0 ? e->cfg->workers : 4;
    size_t want = side_want(e);
    int n, i, room, recheck = 0, pd0 = src->done ? -1 : src->pd, depth = s->pd;
    int64_t below0 = pass_below(src);

    if (s->done || s->pend || s->win_len - s->win_head >= WIN_MAX ||
        s->ready.len + (size_t)s->in_flight >= want / 2 + (size_t)workers)
        return 0;
    if (s->which == TM_SRC && !o->done && s->pd > o->pd + e->cfg->lead)
        return 0;
    room = (int)(want - s->ready.len);
    if (s->which == TM_DST) {
        if (e->nwaiting >= WAIT_MAX)
            return 0;
        if ((size_t)room > WAIT_MAX - e->nwaiting)
            room = (int)(WAIT_MAX - e->nwaiting);
    }
    pthread_mutex_unlock(&e->mu);
    n = fetch_rows(e, s, depth, s->pcur, room, buf, NULL);
    pthread_mutex_lock(&e->mu);
    if (n < 0)
        return n;
    if (n < room)
        s->pend = 1; /* the depth above is whole: nothing comes after */
    for (i = 0; i < n; i++) {
        struct task *t = buf[i];
        int rc = pass_win_add(s, t->id), failed;
        if (!rc) {
            s->pcur = t->id;
            s->pnone = 0;
        }
        if (!rc && s->which == TM_DST &&
            !(pd0 < 0 || depth < pd0 || (depth == pd0 && t->src_id < below0))) {
            /* the twin was not known listed before the read: the row's
             * status read with it may be older than its listing */
            if (pass_src_listed(e, t->src_id, depth, &failed))
                ids[recheck++] = t->src_id; /* listed since: read it again */
            wait_add(e, t);
            continue;
        }
        if (!rc)
            rc = q_push(&s->ready, t);
        if (rc) {
            while (i < n)
                task_free(buf[i++]);
            return rc;
        }
    }
    /* twins listed between the read and now: their status as committed
     * (the commit that told found nothing waiting) */
    i = recheck_twins(e, s, ids, recheck, 1);
    return i < 0 ? i : n > 0;
}

/* update_low() in a pass: side s's depth is whole once every folder of it
 * was fetched and its listing is durable; then the next depth begins, or
 * the side is done when the depth had no folder at all. Called with e->mu
 * held. Returns 1 when the side changed, 0. */
static int update_pass(struct engine *e, struct side *s)
{
    s->started = 1;
    if (s->done || !s->pend || s->win_head < s->win_len || s->ready.len ||
        s->in_flight || (s->which == TM_DST && e->nwaiting) ||
        atomic_load(&s->submitted) != s->committed)
        return 0;
    if (s->pnone) {
        s->done = 1;
        return 1;
    }
    s->pd++;
    s->lo = s->pd;
    s->pd_listed = 0;
    s->pcur = 0;
    s->pend = 0;
    s->pnone = 1;
    s->win_head = s->win_len = 0;
    return 1;
}

/* A pass: the writer's mark hook (tm__writer_set_marks), before each
 * COMMIT: each side's watermark as it will be once the listings of list
 * are durable, recorded in the same transaction when it moved (setting
 * pass_src_frontier, pass_dst_frontier: "DEPTH BELOW", "-1 0" when the
 * side is done). Writer thread; takes e->mu. */
static void pass_marks(void *ctx, const struct tm__result *list,
                       struct tm__mark out[TM__MARKS])
{
    struct engine *e = ctx;
    const struct tm__result *r;
    int side;
    pthread_mutex_lock(&e->mu);
    for (r = list; r; r = r->next) {
        struct pwin *w;
        if (r->kind == TM_R_LISTING && r->final &&
            r->depth == e->s[r->side].pd &&
            (w = pass_win_find(&e->s[r->side], r->folder_id)) != NULL)
            w->in_txn = 1;
    }
    for (side = 0; side < 2; side++) {
        struct side *s = &e->s[side];
        size_t i = s->win_head;
        int64_t below;
        while (i < s->win_len && (s->win[i].done || s->win[i].in_txn))
            i++;
        below = i < s->win_len ? s->win[i].id : s->pcur + 1;
        if (s->done)
            below = 0;
        if ((s->done ? -1 : s->pd) == s->sent_pd && below == s->sent_below)
            continue;
        s->sent_pd = s->done ? -1 : s->pd;
        s->sent_below = below;
        out[side].key = side == TM_SRC ? "pass_src_frontier" : "pass_dst_frontier";
        snprintf(out[side].value, sizeof out[side].value, "%d %lld", s->sent_pd,
                 (long long)below);
    }
    pthread_mutex_unlock(&e->mu);
}

/* A pass: side s goes on from its recorded watermark (none: depth 0). */
static void pass_resume(struct engine *e, struct side *s)
{
    struct tm__buf v = TM__BUF_INIT;
    int pd = 0;
    long long below = 0;
    s->pnone = 1;
    if (tm__store_get(e->cfg->db, s->which == TM_SRC ? "pass_src_frontier"
                                                     : "pass_dst_frontier", &v) == 0 &&
        v.len && sscanf(v.buf, "%d %lld", &pd, &below) == 2 && pd >= 0) {
        s->pd = s->lo = pd;
        s->pcur = below > 0 ? below - 1 : 0;
        s->pnone = below <= 0;
    } else if (v.len && pd < 0) {
        s->done = 1; /* recorded done */
    }
    s->sent_pd = s->done ? -1 : s->pd;
    s->sent_below = s->done ? 0 : pass_below(s);
    tm__buf_release(&v);
}

/* A claimed folder becomes a task (fetch_one, at the row's depth). */
static int claim_one(void *ctx, const struct tm__frow *r)
{
    struct fetch *f = ctx;
    f->depth = r->depth;
    return fetch_one(ctx, r);
}

/* refill() on a shared store (cfg->claim): claims pending folders of
 * side under a lease, lowest depth first, up to twice --workers (at
 * least CLAIM_MIN) at hand, when half of --workers less is; the store
 * applies the --lead bound and the twin rule for all processes (a
 * destination folder claimed has its source twin's listing durable: it
 * never waits). A claim that found
 * nothing is made again after a commit of this process or 50 ms. Called
 * with e->mu held; drops it while claiming. */
static int refill_leased(struct engine *e, struct side *s, struct task **buf)
{
    const struct tm__disc_claim *c = e->cfg->claim;
    int workers = e->cfg->workers > 0 ? e->cfg->workers : 4, n, i;
    /* a claim is a round trip and a scan of the side's pending folders:
     * at least CLAIM_MIN at once, not 2 at a time for few workers */
    size_t want = 2 * (size_t)workers > CLAIM_MIN ? 2 * (size_t)workers : CLAIM_MIN;
    size_t have = s->ready.len + (size_t)s->in_flight;
    int64_t gen = e->s[0].commit_gen + e->s[1].commit_gen, lease = 0, now;
    struct fetch f = { e, s, 0, buf, 0, 0 };

    if (s->done || have >= want - (size_t)(workers + 1) / 2)
        return 0;
    now = tm__now_ns();
    if (s->empty_at && gen == s->empty_gen && now - s->empty_at < 50000000LL)
        return 0;
    pthread_mutex_unlock(&e->mu);
    n = c->claim(c->ctx, s->which, e->cfg->lead, (int)(want - have),
                 &lease, claim_one, &f);
    pthread_mutex_lock(&e->mu);
    if (n < 0) {
        while (f.n-- > 0)
            task_free(buf[f.n]);
        tm__buf_reset(e->cfg->err);
        tm__buf_adds(e->cfg->err, c->err->buf ? c->err->buf : "");
        return n;
    }
    s->empty_at = n ? 0 : now;
    s->empty_gen = gen;
    for (i = 0; i < f.n; i++) {
        buf[i]->lease = lease;
        if (q_push(&s->ready, buf[i])) {
            while (i < f.n)
                task_free(buf[i++]);
            return TM_ENOMEM;
        }
    }
    return f.n > 0;
}

/* Hands ready tasks to the pool, up to --workers in flight per side; a
 * task deeper than the side's round first records the new round (e->mu
 * dropped meanwhile), so that no listing of a depth is durable before its
 * round. e->mu held. */
static int dispatch(struct engine *e, struct side *s)
{
    int workers = e->cfg->workers > 0 ? e->cfg->workers : 4, n = 0;
    while (s->in_flight < workers && s->ready.len) {
        struct task *t = q_pop(&s->ready);
        struct side *src = &e->s[TM_SRC];
        s->in_flight++;
        if (t->depth > s->round) {
            s->round = t->depth;
            send_round(e, s); /* drops e->mu: before the listing starts */
        }
        if (t->pair && t->depth > src->round) {
            src->round = t->depth; /* a pair lists the source's depth too */
            send_round(e, src);
        }
        tm__pool_submit(e->pool, &t->job);
        n++;
    }
    return n > 0;
}

/* ------------------------------------------------------------ progress */

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
    int pd[2] = { e->s[0].done ? -1 : e->s[0].pd, e->s[1].done ? -1 : e->s[1].pd };
    int64_t pd_listed[2] = { e->s[0].pd_listed, e->s[1].pd_listed };
    pthread_mutex_unlock(&e->mu);
    for (side = 0; side < 2; side++) {
        if (e->cfg->pass) {
            /* no folder of a pass is pending: what is left is the folders
             * from its depth on, less those of the depth listed */
            if (pd[side] < 0 ||
                tm__frontier_pass_count(e->fr, side, pd[side], -1, &st[side][1]))
                st[side][1] = 0;
            st[side][1] = st[side][1] > pd_listed[side] ? st[side][1] - pd_listed[side]
                                                         : 0;
        } else if (tm__frontier_pending(e->fr, side, &st[side][1]))
            st[side][1] = 0; /* the snapshot goes without it */
        tm__observe_snapshot(e->w, qname[side], st[side], rate[side]);
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

/* ------------------------------------------------------------ setup */

static int open_readers(struct engine *e)
{
    int i, rc;
    for (i = 0; i < READERS; i++) {
        struct reader *r = &e->rdr[i];
        pthread_mutex_init(&r->mu, NULL);
        rc = tm__twins_open(&r->tw, e->cfg->db_path, e->cfg->err);
        if (rc)
            return rc;
    }
    return 0;
}

static void close_readers(struct engine *e)
{
    int i;
    for (i = 0; i < READERS; i++) {
        tm__twins_close(e->rdr[i].tw);
        if (e->rdr[i].tw)
            pthread_mutex_destroy(&e->rdr[i].mu);
    }
}

static void release_side(struct side *s)
{
    struct task *t;
    while ((t = q_pop(&s->ready)) != NULL)
        task_free(t);
    free(s->ready.v);
    free(s->cursor);
    free(s->win);
}

/* 1 when a side has room for more listings and none ready, while the
 * writer holds listings not yet committed that would give it some (their
 * children folders, or the source twins a destination folder waits for).
 * e->mu held. */
static int starved(struct engine *e)
{
    int workers = e->cfg->workers > 0 ? e->cfg->workers : 4, side;
    int64_t src_held = atomic_load(&e->s[TM_SRC].submitted) - e->s[TM_SRC].committed;
    for (side = 0; side < 2; side++) {
        struct side *s = &e->s[side];
        int64_t held = atomic_load(&s->submitted) - s->committed;
        if (s->done || s->ready.len || s->in_flight >= workers)
            continue;
        /* leased: destination folders wait in the store, not in the
         * waiting map, for their twins to be committed */
        if (held > 0 || (side == TM_DST && src_held > 0 && (e->nwaiting || e->cfg->claim)))
            return 1;
    }
    return 0;
}

int tm__discover_run(struct tm__discover_cfg *cfg)
{
    struct engine e;
    struct task **buf = NULL;
    int64_t *ids = NULL;
    int64_t next_id[2] = { 1, 1 };
    int64_t t0 = tm__now_ns(), last_report = t0;
    int rc, wrc, side, per_side = cfg->workers > 0 ? cfg->workers : 4;
    size_t b, want;

    memset(&e, 0, sizeof e);
    e.cfg = cfg;
    want = side_want(&e);
    e.prec = cfg->ad[0]->mtime_precision > cfg->ad[1]->mtime_precision
                 ? cfg->ad[0]->mtime_precision
                 : cfg->ad[1]->mtime_precision;
    tm__attr_rule_init(&e.rule, cfg->ad[TM_SRC], cfg->ad[TM_DST], cfg->owner,
                       cfg->owner);
    e.rule.xattrs = e.rule.xattrs && cfg->xattrs;
    /* the destination's files are compared with their twins: what a
     * listing would pay a request each for is asked only where it decides */
    tm__adapter_set_meta_later(cfg->ad[TM_DST], 1,
                               cfg->compare == TM_COMPARE_SIZE_ONLY);
    for (side = 0; side < 2; side++) {
        e.owned[side] = (cfg->ad[side]->caps & TM_CAP_OWNER) != 0;
        /* the listings give each file's and folder's attributes' digest */
        tm__adapter_set_list_xattrs(cfg->ad[side], e.rule.xattrs);
    }
    {
        /* pair listings (list_pair): two storages without latency, a first
         * discovery of one process, on SQLite or on PostgreSQL without
         * claims (the writer gives the source rows their ids before the
         * destination rows that point at them; on PostgreSQL it saves the
         * verdicts' UPDATEs and the twin scans: docs/BENCHMARKS.md),
         * comparisons that need no further request (no --checksum, no
         * stat_many); TREEMIG_PAIR=0 turns them off (tests, benchmarks) */
        const char *v = getenv("TREEMIG_PAIR");
        e.pair = (cfg->ad[TM_SRC]->caps & TM_CAP_FAST_LIST) &&
                 (cfg->ad[TM_DST]->caps & TM_CAP_FAST_LIST) && !cfg->pass &&
                 !cfg->claim && cfg->compare != TM_COMPARE_CHECKSUM &&
                 !cfg->ad[TM_DST]->stat_many &&
                 !(v && strcmp(v, "0") == 0);
    }
    atomic_init(&e.pair_fallbacks, 0);
    tm__buf_init(&e.fatal_msg);
    pthread_mutex_init(&e.mu, NULL);
    pthread_cond_init(&e.cv_coord, NULL);
    atomic_init(&e.next_reader, 0);
    atomic_init(&e.quitting, 0);

    rc = tm__store_next_ids(cfg->db, next_id, cfg->err);
    if (rc)
        goto out;
    for (side = 0; side < 2; side++) {
        /* a resume goes on from the rounds recorded: never back */
        struct tm__buf v = TM__BUF_INIT;
        e.s[side].round = e.s[side].round_sent = -1;
        if (tm__store_get(cfg->db, side == TM_SRC ? "src_round" : "dst_round",
                          &v) == 0 && v.len)
            e.s[side].round = e.s[side].round_sent = atoi(v.buf);
        e.s[side].round_go = e.s[side].round;
        tm__buf_release(&v);
    }
    e.s[TM_SRC].which = TM_SRC;
    e.s[TM_DST].which = TM_DST;
    rc = tm__frontier_open(&e.fr, cfg->db_path, cfg->err);
    if (!rc && cfg->pass) {
        tm__frontier_set_pass(e.fr);
        for (side = 0; side < 2 && !rc; side++) {
            struct side *s = &e.s[side];
            pass_resume(&e, s);
            /* progress: the folders of its depth listed before a resume */
            if (!s->done && s->pcur > 0)
                rc = tm__frontier_pass_count(e.fr, side, s->pd, s->pcur + 1,
                                             &s->pd_listed);
        }
    }
    if (!rc)
        rc = open_readers(&e);
    if (!rc && e.pair) {
        tm__frontier_set_pair(e.fr, 1);
        e.claims = calloc(CLAIM_BUCKETS, sizeof *e.claims);
        if (!e.claims)
            rc = TM_ENOMEM;
    }
    if (rc)
        goto out;
    for (b = 1; b < 2 * WAIT_MAX; b <<= 1)
        ;
    e.wmap = calloc(b, sizeof *e.wmap);
    e.wmask = b - 1;
    buf = malloc(want * sizeof *buf);
    ids = malloc(want * sizeof *ids);
    if (!buf || !ids || !e.wmap) {
        rc = TM_ENOMEM;
        goto out;
    }
    rc = tm__writer_start(&e.w, cfg->db, next_id, WRITER_MAX_ROWS, on_commit, &e);
    if (!rc && cfg->pass) {
        rc = tm__writer_set_pass(e.w);
        tm__writer_set_marks(e.w, pass_marks, &e);
    }
    if (rc)
        goto out;
    if (cfg->claim) /* other processes insert nodes too */
        tm__writer_set_ids(e.w, cfg->claim->ids, cfg->claim->ctx);
    rc = tm__observe_start(&e.lg, cfg->log, e.w, cfg->err);
    if (rc)
        goto out;
    tm__log(e.lg, TM_INFO | TM__LOG_MILESTONE, "engine", 0, NULL,
            "discovery started: %d workers per side, lead %d, retries %d",
            per_side, cfg->lead, cfg->retries);
    /* small stacks: a thousand listings in flight must not cost gigabytes;
     * the listing threads at a nicer value than the writer (LIST_NICE) */
    rc = tm__pool_start_niced(&e.pool, 2 * per_side, 512, LIST_NICE);
    if (rc)
        goto out;

    pthread_mutex_lock(&e.mu);
    while (!rc) {
        int changed = 0, c, k;
        if (e.fatal || (rc = tm__writer_error(e.w)) != 0)
            break;
        if (stopping(&e)) {
            rc = TM_ESTOPPED;
            break;
        }
        for (k = 0; k < 2 && !rc; k++) {
            /* pair listings: the destination first, so that it pairs a
             * folder before the source's frontier reads it alone */
            struct side *s = &e.s[e.pair ? 1 - k : k];
            c = cfg->pass ? update_pass(&e, s) : update_low(&e, s);
            if (c < 0 || (!s->done && (c = cfg->claim  ? refill_leased(&e, s, buf)
                                           : cfg->pass ? refill_pass(&e, s, buf, ids)
                                                       : refill(&e, s, buf, ids)) < 0)) {
                rc = c;
                break;
            }
            changed |= c;
            changed |= dispatch(&e, s);
            send_round(&e, s);
        }
        if (rc || (e.s[0].done && e.s[1].done))
            break;
        if (tm__now_ns() - last_report >= 1000000000LL) {
            last_report = tm__now_ns();
            report(&e, t0, 0);
            snapshot(&e, t0);
        }
        if (starved(&e)) {
            /* listings could run but wait for what the writer holds (new
             * folders, twins made durable): do not wait for its timer */
            pthread_mutex_unlock(&e.mu);
            tm__writer_flush(e.w);
            pthread_mutex_lock(&e.mu);
        }
        if (!changed) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            /* leased: what other processes commit is seen by asking */
            ts.tv_nsec += (cfg->claim ? 20 : 100) * 1000000L;
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
    atomic_store(&e.quitting, 1);
    pthread_mutex_unlock(&e.mu);

out:
    tm__pool_stop(e.pool); /* lets the running listings end */
    tm__adapter_set_meta_later(cfg->ad[TM_DST], 0, 0); /* other listings want it all */
    if (e.w && rc == 0) {
        pthread_mutex_lock(&e.mu);
        snapshot(&e, t0);
        pthread_mutex_unlock(&e.mu);
    }
    if (e.lg && cfg->lease_lost)
        tm__log(e.lg, TM_WARNING, "engine", 0, NULL,
                "%lld listing pages dropped: another process held their folders "
                "by then (this one's lease was lost)", (long long)cfg->lease_lost);
    if (e.lg && e.pair)
        tm__log(e.lg, TM_INFO, "engine", 0, NULL,
                "pair listings: %lld folders listed with their destination twin "
                "in one job, %lld listed one side at a time (more than one page, "
                "or a failure)",
                (long long)e.pairs, (long long)atomic_load(&e.pair_fallbacks));
    if (e.lg) {
        if (rc == 0)
            tm__log(e.lg, TM_INFO | TM__LOG_MILESTONE, "engine", 0, NULL,
                    "discovery complete: %lld "
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
    if (e.wmap) {
        for (b = 0; b <= e.wmask; b++)
            while (e.wmap[b]) {
                struct task *t = e.wmap[b];
                e.wmap[b] = t->wnext;
                task_free(t);
            }
        free(e.wmap);
    }
    for (side = 0; side < 2; side++)
        release_side(&e.s[side]);
    claims_free(&e);
    close_readers(&e);
    tm__frontier_close(e.fr);
    free(buf);
    free(ids);
    tm__buf_release(&e.fatal_msg);
    pthread_mutex_destroy(&e.mu);
    pthread_cond_destroy(&e.cv_coord);
    return rc;
}
