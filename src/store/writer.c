/*
 * writer.c - the writer thread of writer.h, and its checkpointer.
 *
 * Threads: the writer thread applies results and commits; a second thread,
 * the checkpointer, copies the WAL into the database file on a connection
 * of its own (a PASSIVE checkpoint: it never blocks the writer nor the
 * readers), so that the writer never stops for a checkpoint's reads,
 * writes and syncs. SQLite's automatic checkpoint of the write connection
 * is off while the writer runs (its WAL hook tells the checkpointer
 * instead); it is put back at tm__writer_stop(). A checkpoint copies what
 * is committed already: durability is the commits' alone.
 *
 * Lock order: w->mu only (the checkpointer's ck_mu is never held with it);
 * on_commit runs without it held.
 */
#include "store/writer.h"

#include "adapter/adapter.h"
#include "engine/engine.h"
#include "treemig.h"
#include "util/util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { ST_UPD_SRC_F, ST_UPD_DST_F, ST_UPD_COPY,
       ST_TASK_ERR, ST_SET, ST_LOG, ST_COPY_DONE, ST_QSTAT, ST_COPY_CF,
       ST_POS_SET, ST_POS_DEL, ST_UP_SET, ST_UP_DEL, ST_SEL_SRC, ST_SEL_DST,
       ST_COPY_DONE_L, ST_COPY_CF_L, ST_LEASE_OF, ST_HOLD_SRC, ST_HOLD_DST,
       ST_UPD_COPY_RUN, ST_COUNT };

enum { PS_SEL_SRC, PS_SEL_DST, PS_UPD_SRC, PS_UPD_DST, PS_TS_SRC, PS_TS_DST,
       PS_PREV, PS_TWIN, PS_KIDS_SRC, PS_KIDS_DST, PS_SUB_STATS_SRC,
       PS_SUB_STATS_DST, PS_SUB_PREV, PS_SUB_DEL_SRC, PS_SUB_DEL_DST, PS_SCAN_SRC,
       PS_SCAN_DST, PS_DONE_SRC, PS_DONE_DST, PS_KIDS_SUM_SRC, PS_KIDS_SUM_DST,
       PS_UNLIST_SRC, PS_UNLIST_DST, PS_COUNT };

struct tm__pass_seen;

/* The children of a page are inserted INS_CHUNK rows per statement (one
 * statement's fixed cost, its start, halt and reset, then counts once
 * per chunk instead of once per row); what is left over in chunks of 16,
 * 8, 4, 2 and 1 rows (a folder of 7 children is 3 statements, not 7:
 * most folders hold fewer than 32). A chunk is INSERT OR IGNORE: SQLite
 * keeps a statement journal (a copy of each page it first touches) for a
 * statement of several rows that may abort, none for one that cannot;
 * holds_id() then tells a child there already from an id taken. A chunk is 32 x 19 = 608 parameters,
 * below every SQLite's limit (999 before 3.32). On PostgreSQL (db_pg.c
 * binds at most 32 parameters; a round trip per statement costs more than
 * any of this) every row is one statement. */
#define INS_CHUNK 32
#define INS_SIZES 6 /* chunk sizes: 2^0 .. 2^5 = INS_CHUNK rows */

/* The columns of a node row, per side, in the order bind_node() binds
 * them. A child listed twice (a page read again after a crash, a storage
 * that repeats a name) is the same node: kept once, counted once (ON
 * CONFLICT DO NOTHING on the (parent_id, name) index, or OR IGNORE). */
#define SRC_COLS 19
#define DST_COLS 14
static const char src_ins_head[] =
    "INTO src_nodes(id,parent_id,path,name,type,size,mtime,mode,depth,"
    "traversal_status,copy_status,conflict,error,uid,gid,dev,ino,nlink,xattrs) VALUES";
static const char dst_ins_head[] =
    "INTO dst_nodes(id,parent_id,path,name,type,size,mtime,mode,depth,"
    "traversal_status,conflict,src_id,uid,gid) VALUES";

static const char *const stmt_sql[ST_COUNT] = {
    "UPDATE src_nodes SET traversal_status=?, attempts=attempts+?, error=? "
    "WHERE id=? AND traversal_status='pending'",
    "UPDATE dst_nodes SET traversal_status=?, attempts=attempts+?, error=? "
    "WHERE id=? AND traversal_status='pending'",
    "UPDATE src_nodes SET copy_status=?, conflict=?, hash=?4 WHERE id=?3",
    "INSERT INTO task_errors(time,phase,queue,node_id,path,attempts,message) "
    "VALUES(?1,?7,?2,?3,?4,?5,?6)",
    "INSERT OR REPLACE INTO migration(key,value) VALUES(?,?)",
    "INSERT INTO logs(time,level,queue,node_id,path,message) VALUES(?,?,?,?,?,?)",
    "UPDATE src_nodes SET copy_status=?1, attempts=attempts+?2, error=?3 "
    "WHERE id=?4 AND copy_status=?5",
    "INSERT INTO queue_stats(time,queue,round,pending,in_flight,done,failed,"
    "bytes_done,bytes_pending,items_per_s,bytes_per_s,host,pid) "
    "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
    "UPDATE src_nodes SET copy_status=?1, attempts=attempts+?2, error=?3, "
    "conflict=?6 WHERE id=?4 AND copy_status=?5",
    "INSERT OR REPLACE INTO listing_pos(side,folder_id,pos,pages) "
    "VALUES(?1,?2,?3,coalesce((SELECT pages FROM listing_pos WHERE side=?1 "
    "AND folder_id=?2),0)+1)",
    "DELETE FROM listing_pos WHERE side=? AND folder_id=?",
    "INSERT OR REPLACE INTO uploads(node_id,state,time) VALUES(?,?,?)",
    "DELETE FROM uploads WHERE node_id=?",
    /* which row holds a child, when a chunk inserted fewer rows than it
     * had (some were there already) */
    "SELECT id FROM src_nodes WHERE parent_id=? AND name=?",
    "SELECT id FROM dst_nodes WHERE parent_id=? AND name=?",
    /* treemig worker: the outcome counts only while the node is still
     * held by the worker's lease (a late worker changes nothing) */
    "UPDATE src_nodes SET copy_status=?1, attempts=attempts+?2, error=?3 "
    "WHERE id=?4 AND copy_status=?5 AND lease_id=?7",
    "UPDATE src_nodes SET copy_status=?1, attempts=attempts+?2, error=?3, "
    "conflict=?6 WHERE id=?4 AND copy_status=?5 AND lease_id=?7",
    "SELECT lease_id FROM src_nodes WHERE id=?",
    /* a page of a leased listing (discovery by workers) counts only while
     * the folder is pending and still held by the worker's lease. The
     * statement writes the worker's own lease row (nobody else writes it;
     * its renewal waits, holding no other), not the folder's: a destination
     * listing updates source rows, and a lock on a source folder here
     * would deadlock two workers' transactions */
    "UPDATE leases SET expires=expires WHERE id=?2 AND EXISTS(SELECT 1 FROM "
    "src_nodes WHERE id=?1 AND lease_id=?2 AND traversal_status='pending')",
    "UPDATE leases SET expires=expires WHERE id=?2 AND EXISTS(SELECT 1 FROM "
    "dst_nodes WHERE id=?1 AND lease_id=?2 AND traversal_status='pending')",
    /* the same verdict on a run of source twins of consecutive ids (a
     * page's children, inserted in name order, matched in name order):
     * one statement and one seek for the run (verdict_add) */
    "UPDATE src_nodes SET copy_status=?1, conflict=?2, hash=NULL "
    "WHERE id BETWEEN ?3 AND ?4",
};

/* Node ids taken at once from a shared store (tm__writer_set_ids). */
#define ID_BLOCK 4096

/* The WAL's growth (frames) at which the checkpointer is woken, and its
 * size at which the writer checkpoints itself because the checkpointer
 * fell behind (readers held the WAL, or it could not run). What the last
 * wake left is copied and synced by the checkpoint at the end of a run,
 * on one thread, while nothing else runs: at 8,192 frames (64 MiB) that
 * was up to 64 MiB of the database file to write and sync after the last
 * listing (a 300k discovery's last checkpoint: a median 264 ms, 176 ms
 * at 2,048 frames, its CPU seconds the same; docs/BENCHMARKS.md). */
#define CKPT_FRAMES 2048
#define CKPT_SELF_FRAMES 65536
/* Frames the writer copies itself, at most, to let the WAL start over
 * (ckpt_main); the checkpointer's passes to get there; and the WAL's size
 * from which the writer does (each costs it two syncs: at every wake, a
 * 300k discovery's writer spent 0.26-0.74 s in them, from 64 MiB on 0.06-
 * 0.10 s, the WAL then staying below ~100 MB instead of 240 MB). */
#define CKPT_CATCH_FRAMES 512
#define CKPT_PASSES 4
#define CKPT_RESTART_MIN (4 * CKPT_FRAMES)

struct tm__writer {
    pthread_t thread;          /* the writer thread */
    pthread_mutex_t mu;        /* guards the queue, stopping, err */
    pthread_cond_t cv_work;    /* queue not empty, or stopping */
    pthread_cond_t cv_space;   /* queue has room again */
    struct tm__result *head, *tail; /* queued results */
    size_t queued_rows;        /* rows in the queue */
    size_t max_rows;           /* submit waits above this */
    int stopping;              /* stop once the queue is empty */
    int flush;                 /* commit as soon as the queue is empty */
    int err;                   /* first fatal error */
    struct tm__buf errmsg;     /* its message */
    struct tm__db *db;               /* owned by the thread while it runs */
    struct tm__stmt *st[ST_COUNT]; /* prepared statements */
    struct tm__stmt *ins[2][INS_SIZES]; /* inserts of nodes per side:
                                   [side][j] 2^j rows ([side][0] only on
                                   PostgreSQL, the others NULL) */
    int64_t next_id[2];        /* next node id per side */
    int64_t txn_next_id[2];    /* next_id when the open transaction began */
    int64_t id_end[2];         /* with ids: the end of the block next_id is in */
    int64_t txn_id_end[2];     /* id_end when the open transaction began */
    int (*ids)(void *ctx, int side, int64_t n, int64_t *first,
               struct tm__buf *err); /* blocks of ids, or NULL: next_id on */
    void *ids_ctx;             /* its context */
    struct tm__stats_delta delta; /* stats changes of the open transaction */
    struct tm__result *done_head, *done_tail; /* applied, not committed */
    tm__commit_cb on_commit;   /* told about each committed result */
    void *ctx;                 /* its context */
    tm__mark_cb mark;          /* a pass's watermarks, or NULL */
    void *mark_ctx;            /* its context */
    struct tm__mark marks[TM__MARKS]; /* what mark named for the open
                                  transaction (written again by redo) */
    tm__precommit_cb precommit; /* run before each COMMIT, may be NULL */
    void *precommit_ctx;       /* its context */
    _Atomic int64_t rows;      /* rows committed */
    char host[256];            /* this machine, for queue_stats */
    int auto_ckpt;             /* the write connection's wal_autocheckpoint
                                  before start, put back at stop */
    sqlite3 *ck_db;            /* the checkpointer's connection, or NULL:
                                  then SQLite checkpoints on the writer */
    pthread_t ck_thread;       /* the checkpointer */
    pthread_mutex_t ck_mu;     /* guards ck_want, ck_quit */
    pthread_cond_t ck_cv;      /* ck_want or ck_quit set */
    int ck_want;               /* the WAL grew past CKPT_FRAMES */
    int ck_woke_at;            /* the WAL's frames at the last wake (writer
                                  thread only) */
    int ck_quit;               /* the checkpointer must end */
    atomic_int ck_upto;        /* the WAL's frames, all copied by the
                                  checkpointer's last pass; 0: none since
                                  the writer looked */
    int pass;                  /* a pass: listings are merged (below) */
    struct tm__stmt *pst[PS_COUNT]; /* the pass's statements */
    struct tm__pass_seen *seen; /* the children seen per folder listed */
    size_t nseen, seen_cap;    /* its count, room */
    int run_on;                /* a run of verdicts waits (verdict_add) */
    int64_t run_first, run_last; /* its source ids, first .. last */
    int8_t run_cs, run_cf;     /* its copy status and conflict */
};

void tm__result_free(struct tm__result *r)
{
    if (!r)
        return;
    free(r->error);
    free(r->path);
    free(r->value);
    free(r->nodes);
    tm__buf_release(&r->pos);
    tm__buf_release(&r->arena);
    tm__result_free(r->pair);
    free(r);
}

static size_t result_rows(const struct tm__result *r)
{
    return 1 + r->n_nodes + (r->pair ? 1 + r->pair->n_nodes : 0);
}

static int step_done(struct tm__writer *w, struct tm__stmt *st)
{
    int rc = tm__db_step(st);
    tm__db_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    return tm__store_error(w->db, rc, &w->errmsg, "write state file");
}

static int stat_add(struct tm__writer *w, int table, int depth, int type,
                    int status, int conflict, int64_t count, int64_t bytes)
{
    struct tm__stat_key k = { table, depth, type, status, conflict ? 1 : 0 };
    return tm__stats_add(&w->delta, &k, count, bytes);
}

/* Binds the row of child n of r, with id, at parameter base + 1 on. */
static void bind_node(struct tm__stmt *st, int base, const struct tm__result *r,
                      const struct tm__wnode *n, int64_t id)
{
    int own = base + (r->side == TM_SRC ? 14 : 13); /* uid, gid: after error
                                                       or src_id */
    tm__db_bind_int64(st, base + 1, id);
    tm__db_bind_int64(st, base + 2, n->parent_id);
    tm__db_bind_text(st, base + 3, r->arena.buf + n->path_off, (int)n->path_len,
                      SQLITE_STATIC);
    tm__db_bind_text(st, base + 4, r->arena.buf + n->name_off, (int)n->name_len,
                      SQLITE_STATIC);
    tm__db_bind_text(st, base + 5, tm__type_names[n->type], -1, SQLITE_STATIC);
    tm__db_bind_int64(st, base + 6, n->size);
    tm__db_bind_int64(st, base + 7, n->mtime);
    tm__db_bind_int64(st, base + 8, n->mode);
    tm__db_bind_int(st, base + 9, r->depth + 1);
    tm__db_bind_text(st, base + 10, tm__ts_names[n->ts], -1, SQLITE_STATIC);
    if (r->side == TM_SRC) {
        tm__db_bind_text(st, base + 11, tm__cs_names[n->cs], -1, SQLITE_STATIC);
        if (n->conflict)
            tm__db_bind_text(st, base + 12, tm__cf_names[n->conflict], -1,
                              SQLITE_STATIC);
        else
            tm__db_bind_null(st, base + 12);
        if (n->why_len)
            tm__db_bind_text(st, base + 13, r->arena.buf + n->why_off,
                              (int)n->why_len, SQLITE_STATIC);
        else
            tm__db_bind_null(st, base + 13);
    } else {
        if (n->conflict)
            tm__db_bind_text(st, base + 11, tm__cf_names[n->conflict], -1,
                              SQLITE_STATIC);
        else
            tm__db_bind_null(st, base + 11);
        if (n->src_id)
            tm__db_bind_int64(st, base + 12, n->src_id);
        else
            tm__db_bind_null(st, base + 12);
    }
    if (n->owned) {
        tm__db_bind_int64(st, own, n->uid);
        tm__db_bind_int64(st, own + 1, n->gid);
    } else {
        tm__db_bind_null(st, own);
        tm__db_bind_null(st, own + 1);
    }
    if (r->side == TM_SRC && n->nlink > 1) {
        /* an inode number above 2^63 is kept by its bits */
        tm__db_bind_int64(st, base + 16, (int64_t)n->dev);
        tm__db_bind_int64(st, base + 17, (int64_t)n->ino);
        tm__db_bind_int64(st, base + 18, (int64_t)n->nlink);
    } else if (r->side == TM_SRC) {
        tm__db_bind_null(st, base + 16);
        tm__db_bind_null(st, base + 17);
        tm__db_bind_null(st, base + 18);
    }
    if (r->side == TM_SRC && n->xattrs)
        tm__db_bind_int64(st, base + 19, (int64_t)n->xattrs);
    else if (r->side == TM_SRC)
        tm__db_bind_null(st, base + 19);
}

/* Binds ?1 a copy status, ?2 a conflict (NULL for none). */
static void bind_cs_cf(struct tm__stmt *up, int cs, int cf)
{
    tm__db_bind_text(up, 1, tm__cs_names[cs], -1, SQLITE_STATIC);
    if (cf)
        tm__db_bind_text(up, 2, tm__cf_names[cf], -1, SQLITE_STATIC);
    else
        tm__db_bind_null(up, 2);
}

/* Binds the verdict on destination child n's source twin: ?1 its copy
 * status, ?2 its conflict, ?3 the twin's id, ?4 the source's hash. */
static void bind_verdict(struct tm__stmt *up, const struct tm__wnode *n)
{
    bind_cs_cf(up, n->new_cs, n->new_cf);
    tm__db_bind_int64(up, 3, n->src_id);
    if (n->has_hash)
        tm__db_bind_int64(up, 4, (int64_t)n->hash);
    else
        tm__db_bind_null(up, 4);
}

/* Writes the run of verdicts that waits, if any (verdict_add). */
static int verdict_flush(struct tm__writer *w)
{
    struct tm__stmt *up = w->st[ST_UPD_COPY_RUN];
    if (!w->run_on)
        return 0;
    w->run_on = 0;
    bind_cs_cf(up, w->run_cs, w->run_cf);
    tm__db_bind_int64(up, 3, w->run_first);
    tm__db_bind_int64(up, 4, w->run_last);
    return step_done(w, up);
}

/* The verdict of destination child n (no hash) on its source twin: joins
 * the run that waits when the twin's id follows the run's last and the
 * verdict is the same, so that every id of a run is the twin of one
 * inserted child; else the run is written and n's starts the next.
 * SQLite only (the one-row update per child on PostgreSQL, whose
 * pipeline redoes a transaction statement by statement). A run is
 * written at the latest when its page is applied (apply_listing). */
static int verdict_add(struct tm__writer *w, const struct tm__wnode *n)
{
    int rc;
    if (w->run_on && n->src_id == w->run_last + 1 && n->new_cs == w->run_cs &&
        n->new_cf == w->run_cf) {
        w->run_last = n->src_id;
        return 0;
    }
    rc = verdict_flush(w);
    if (rc)
        return rc;
    w->run_on = 1;
    w->run_first = w->run_last = n->src_id;
    w->run_cs = n->new_cs;
    w->run_cf = n->new_cf;
    return 0;
}

/* Counts child n of r, which was inserted, in the stats; a destination
 * child applies the comparison's verdict to its source twin. */
static int inserted_node(struct tm__writer *w, const struct tm__result *r,
                         const struct tm__wnode *n)
{
    int depth = r->depth + 1, rc;
    if (r->side == TM_SRC) {
        rc = stat_add(w, 0, depth, n->type, n->ts, 0, 1, n->size);
        if (!rc)
            rc = stat_add(w, 2, depth, n->type, n->cs, n->conflict, 1, n->size);
        return rc;
    }
    rc = stat_add(w, 1, depth, n->type, n->ts, 0, 1, n->size);
    if (!rc && n->upd) {
        /* the comparison's verdict on the source twin */
        if (!n->has_hash && w->ins[TM_DST][1]) {
            rc = verdict_add(w, n);
        } else {
            struct tm__stmt *up = w->st[ST_UPD_COPY];
            bind_verdict(up, n);
            rc = step_done(w, up);
        }
        if (!rc)
            rc = stat_add(w, 2, depth, n->src_type, n->old_cs, n->old_cf, -1,
                          -n->src_size);
        if (!rc)
            rc = stat_add(w, 2, depth, n->src_type, n->new_cs, n->new_cf, 1,
                          n->src_size);
    }
    return rc;
}

/* Whether child n of r, given id when inserted, holds it: a chunk that
 * inserted fewer rows than it had tells which by this. A child with no
 * row at all was not a child listed before: its id was taken (two
 * writers, or a bug), which the chunk's OR IGNORE let pass; never merge. */
static int holds_id(struct tm__writer *w, const struct tm__result *r,
                    const struct tm__wnode *n, int64_t id, int *yes)
{
    struct tm__stmt *st = w->st[r->side == TM_SRC ? ST_SEL_SRC : ST_SEL_DST];
    int rc;
    tm__db_bind_int64(st, 1, n->parent_id);
    tm__db_bind_text(st, 2, r->arena.buf + n->name_off, (int)n->name_len,
                      SQLITE_STATIC);
    rc = tm__db_step(st);
    *yes = rc == SQLITE_ROW && tm__db_column_int64(st, 0) == id;
    tm__db_reset(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc != SQLITE_DONE)
        return tm__store_error(w->db, rc, &w->errmsg, "read state file");
    tm__buf_reset(&w->errmsg);
    tm__buf_addf(&w->errmsg, "node %s: id %lld already used in %s_nodes",
                 r->arena.buf + n->path_off, (long long)id,
                 r->side == TM_SRC ? "src" : "dst");
    return TM_EINTERNAL;
}

/* Inserts children first .. first + k - 1 of r (k is 1 or INS_CHUNK) in
 * one statement, with the next ids of the side; counts those that were
 * new in r->inserted. A child that was there already (ON CONFLICT, or
 * OR IGNORE in a chunk) leaves its id unused: ids stay unique and
 * increasing, not dense. An id taken fails the one-row insert (a
 * constraint) and a chunk's holds_id(). */
static int insert_nodes(struct tm__writer *w, struct tm__result *r, size_t first,
                        size_t k)
{
    struct tm__stmt *st;
    int cols = r->side == TM_SRC ? SRC_COLS : DST_COLS;
    int64_t id;
    size_t j, changed;
    int rc;

    if (w->ids && w->next_id[r->side] + (int64_t)k > w->id_end[r->side]) {
        /* a shared store: a new block, which no other process uses */
        int64_t block = 0;
        tm__buf_reset(&w->errmsg);
        rc = w->ids(w->ids_ctx, r->side, ID_BLOCK, &block, &w->errmsg);
        if (rc)
            return rc;
        w->next_id[r->side] = block;
        w->id_end[r->side] = block + ID_BLOCK;
    }
    id = w->next_id[r->side];

    for (j = 0; ((size_t)1 << j) < k; j++)
        ;
    st = w->ins[r->side][j];
    for (j = 0; j < k; j++)
        bind_node(st, (int)j * cols, r, &r->nodes[first + j], id + (int64_t)j);
    rc = tm__db_step(st);
    tm__db_reset(st);
    if (rc != SQLITE_DONE) {
        int e = tm__store_error(w->db, rc, &w->errmsg, "write state file");
        if ((rc & 0xff) == SQLITE_CONSTRAINT) {
            /* an id is taken: two writers, or a bug; never merge */
            tm__buf_reset(&w->errmsg);
            tm__buf_addf(&w->errmsg, "node %s: id %lld already used in %s_nodes",
                         r->arena.buf + r->nodes[first].path_off, (long long)id,
                         r->side == TM_SRC ? "src" : "dst");
            e = TM_EINTERNAL;
        }
        return e;
    }
    changed = (size_t)tm__db_changes(w->db);
    w->next_id[r->side] += (int64_t)k;
    for (j = 0; j < k; j++) {
        int yes = 1;
        rc = 0;
        if (k == 1)
            yes = changed == 1; /* 0: listed before, the row is there */
        else if (changed < k)
            rc = holds_id(w, r, &r->nodes[first + j], id + (int64_t)j, &yes);
        if (!rc && yes) {
            r->inserted++;
            r->nodes[first + j].id = id + (int64_t)j;
            rc = inserted_node(w, r, &r->nodes[first + j]);
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int task_error(struct tm__writer *w, const struct tm__result *r)
{
    struct tm__stmt *te = w->st[ST_TASK_ERR];
    tm__db_bind_int64(te, 1, tm__wall_ns());
    tm__db_bind_text(te, 2, r->side == TM_SRC ? "src" : "dst", -1, SQLITE_STATIC);
    tm__db_bind_int64(te, 3, r->folder_id);
    tm__db_bind_text(te, 4, r->path ? r->path : "", -1, SQLITE_STATIC);
    tm__db_bind_int(te, 5, r->attempts);
    tm__db_bind_text(te, 6, r->error ? r->error : "", -1, SQLITE_STATIC);
    tm__db_bind_text(te, 7, r->phase ? r->phase : "discover", -1, SQLITE_STATIC);
    return step_done(w, te);
}

static int pass_unlist(struct tm__writer *w, int side, int64_t folder, int depth);

/* The last page of a folder: its own status, its position dropped, its
 * error recorded. */
static int folder_done(struct tm__writer *w, struct tm__result *r)
{
    struct tm__stmt *st;
    int rc, was = w->pass ? r->pass_ts : TS_PENDING;
    if (w->pass && was == r->folder_ts && !r->error)
        return 0; /* listed again, as it was: its row stays (no write) */
    if (w->pass) {
        st = w->pst[r->side == TM_SRC ? PS_DONE_SRC : PS_DONE_DST];
        tm__db_bind_text(st, 5, tm__ts_names[was], -1, SQLITE_STATIC);
    } else {
        st = w->st[r->side == TM_SRC ? ST_UPD_SRC_F : ST_UPD_DST_F];
    }
    tm__db_bind_text(st, 1, tm__ts_names[r->folder_ts], -1, SQLITE_STATIC);
    tm__db_bind_int(st, 2, r->attempts);
    if (r->error)
        tm__db_bind_text(st, 3, r->error, -1, SQLITE_STATIC);
    else
        tm__db_bind_null(st, 3);
    tm__db_bind_int64(st, 4, r->folder_id);
    rc = step_done(w, st);
    if (rc)
        return rc;
    if (tm__db_changes(w->db) != 1 && r->lease > 0) {
        /* another worker took the folder over and finished it since the
         * check above: its listing stands (this one's children were
         * the same rows, inserted once) */
        r->lease_lost = 1;
        return 0;
    }
    if (tm__db_changes(w->db) != 1) {
        tm__buf_reset(&w->errmsg);
        tm__buf_addf(&w->errmsg, "folder %lld of %s_nodes was not %s",
                     (long long)r->folder_id, r->side == TM_SRC ? "src" : "dst",
                     tm__ts_names[was]);
        return TM_EINTERNAL;
    }
    rc = stat_add(w, r->side == TM_SRC ? 0 : 1, r->depth, TM_T_FOLDER,
                  was, 0, -1, 0);
    if (!rc)
        rc = stat_add(w, r->side == TM_SRC ? 0 : 1, r->depth, TM_T_FOLDER,
                      r->folder_ts, 0, 1, 0);
    if (!rc && w->pass && r->folder_ts == TS_FAILED)
        rc = pass_unlist(w, r->side, r->folder_id, r->depth);
    if (!rc && r->folder_ts == TS_SUCCESSFUL && !r->no_pos) {
        /* a failed listing keeps its position: retry resumes there */
        st = w->st[ST_POS_DEL];
        tm__db_bind_int(st, 1, r->side);
        tm__db_bind_int64(st, 2, r->folder_id);
        rc = step_done(w, st);
    }
    if (!rc && r->error)
        rc = task_error(w, r);
    return rc;
}

/* A page of a listing: its children; the position after it (so that a
 * crash resumes inside the folder), or with the last page the folder's own
 * status, in the same transaction. */
/* A worker's page (r->lease > 0) is applied only while its lease still
 * holds the folder: 1 when it is lost (the page is dropped whole), 0 when
 * it holds or the page is not leased, or an error. */
static int lease_lost(struct tm__writer *w, struct tm__result *r)
{
    struct tm__stmt *st;
    int rc;
    r->lease_lost = 0;
    if (r->lease <= 0)
        return 0;
    st = w->st[r->side == TM_SRC ? ST_HOLD_SRC : ST_HOLD_DST];
    tm__db_bind_int64(st, 1, r->folder_id);
    tm__db_bind_int64(st, 2, r->lease);
    rc = step_done(w, st);
    if (rc)
        return rc;
    if (tm__db_changes(w->db) != 1)
        r->lease_lost = 1;
    return r->lease_lost;
}

/* lease_lost() of a page, or what check_leases() found in this
 * transaction. */
static int page_lost(struct tm__writer *w, struct tm__result *r)
{
    if (r->lease_checked)
        return r->lease_lost;
    return lease_lost(w, r);
}

/* The lease checks of the leased pages from r on, one after the other
 * before their writes: on PostgreSQL a check between two pages' writes
 * would send the runs of rows held so far (db_pg.c), five statements a
 * page instead of a few a batch. A check reads only the folder's row,
 * which no page before its own last one writes: sent first, it finds
 * what it would have found in place. Inside the pipeline a check answers
 * "held" and COMMIT verifies it (redo() checks in place). */
static int check_leases(struct tm__writer *w, struct tm__result *r)
{
    int rc;
    for (; r; r = r->next) {
        r->lease_checked = 0;
        if (r->kind != TM_R_LISTING || r->lease <= 0)
            continue;
        rc = lease_lost(w, r);
        if (rc < 0)
            return rc;
        r->lease_checked = 1;
    }
    return 0;
}

static int apply_listing(struct tm__writer *w, struct tm__result *r)
{
    struct tm__stmt *st;
    size_t i = 0;
    int rc = 0;

    r->inserted = 0;
    rc = page_lost(w, r);
    if (rc)
        return rc < 0 ? rc : 0;
    while (!rc && i < r->n_nodes) {
        size_t k = INS_CHUNK;
        while (k > 1 && (k > r->n_nodes - i || !w->ins[r->side][1]))
            k /= 2;
        rc = insert_nodes(w, r, i, k);
        i += k;
    }
    if (!rc)
        rc = verdict_flush(w);
    w->run_on = 0; /* a failed page is not applied: nor its run */
    if (rc)
        return rc;
    if (!r->final) {
        st = w->st[ST_POS_SET];
        tm__db_bind_int(st, 1, r->side);
        tm__db_bind_int64(st, 2, r->folder_id);
        tm__db_bind_blob(st, 3, r->pos.buf, (int)r->pos.len, SQLITE_STATIC);
        return step_done(w, st);
    }
    return folder_done(w, r);
}

/* A copy task's outcome: the node's copy status, counted exactly. */
static int apply_copy(struct tm__writer *w, struct tm__result *r)
{
    int leased = r->lease > 0;
    struct tm__stmt *st = w->st[r->cf_change ? (leased ? ST_COPY_CF_L : ST_COPY_CF)
                                             : (leased ? ST_COPY_DONE_L : ST_COPY_DONE)];
    int new_cf = r->cf_change ? r->new_cf : r->cf;
    int rc, changed;
    if (leased)
        tm__db_bind_int64(st, 7, r->lease);
    if (r->cf_change) {
        if (new_cf)
            tm__db_bind_text(st, 6, tm__cf_names[new_cf], -1, SQLITE_STATIC);
        else
            tm__db_bind_null(st, 6);
    }
    tm__db_bind_text(st, 1, tm__cs_names[r->new_cs], -1, SQLITE_STATIC);
    tm__db_bind_int(st, 2, r->attempts);
    if (r->error)
        tm__db_bind_text(st, 3, r->error, -1, SQLITE_STATIC);
    else
        tm__db_bind_null(st, 3);
    tm__db_bind_int64(st, 4, r->folder_id);
    tm__db_bind_text(st, 5, tm__cs_names[r->old_cs], -1, SQLITE_STATIC);
    rc = step_done(w, st);
    if (rc)
        return rc;
    changed = tm__db_changes(w->db); /* before another statement runs */
    if (changed != 1 && r->lease < 0) {
        /* a finding of a verify by workers that another one recorded
         * first (the folder's lease expired and it was checked again) */
        r->lease_lost = 1;
        return 0;
    }
    if (changed != 1 && leased) {
        /* another worker's lease holds the node now (this one's expired):
         * its outcome stands, this one is dropped */
        struct tm__stmt *q = w->st[ST_LEASE_OF];
        int64_t holder = 0;
        tm__db_bind_int64(q, 1, r->folder_id);
        rc = tm__db_step(q);
        if (rc == SQLITE_ROW)
            holder = tm__db_column_int64(q, 0);
        tm__db_reset(q);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return tm__store_error(w->db, rc, &w->errmsg, "read a node's lease");
        if (holder != r->lease) {
            r->lease_lost = 1;
            return 0;
        }
    }
    if (changed != 1) {
        tm__buf_reset(&w->errmsg);
        tm__buf_addf(&w->errmsg, "node %s was not %s", r->path ? r->path : "?",
                     tm__cs_names[r->old_cs]);
        return TM_EINTERNAL;
    }
    rc = stat_add(w, 2, r->depth, r->type, r->old_cs, r->cf, -1, -r->size);
    if (!rc)
        rc = stat_add(w, 2, r->depth, r->type, r->new_cs, new_cf, 1, r->size);
    if (!rc && r->error)
        rc = task_error(w, r);
    if (!rc && r->drop_upload) {
        struct tm__stmt *del = w->st[ST_UP_DEL];
        tm__db_bind_int64(del, 1, r->folder_id);
        rc = step_done(w, del);
    }
    return rc;
}

/* ------------------------------------------------------------ passes */

/* A pass (treemig rescan) merges each listed page with the rows the state
 * file holds already and writes only the differences: a child not there
 * is inserted, one whose facts (type, size, mtime, mode, owner, extended
 * attributes, links) changed is updated (its source row saved first in
 * prev_src_nodes, the previous pass's facts), one there and unchanged is
 * not written; a folder that must be listed again becomes pending (its
 * parent's listing makes it so: a folder is listed after its parent in
 * every pass), and with its last page the children it holds no more go
 * (their whole subtree, saved in prev_src_nodes for the source). A page
 * read again after a crash finds its rows written already: nothing is
 * written twice. Pass listings keep no listing_pos: a folder of several
 * pages is listed again from its start after a crash, since the names of
 * its earlier pages (seen, held here until the commit after its last
 * page) decide what is gone. */

#define PASS_SUB_SRC "WITH RECURSIVE sub(id) AS (SELECT ?1 UNION ALL SELECT " \
    "c.id FROM src_nodes AS c JOIN sub ON c.parent_id = sub.id) "
#define PASS_SUB_DST "WITH RECURSIVE sub(id) AS (SELECT ?1 UNION ALL SELECT " \
    "c.id FROM dst_nodes AS c JOIN sub ON c.parent_id = sub.id) "
#define PASS_PREV_COLS "id, path, type, size, mtime, mode, copy_status, conflict"

static const char *const pass_sql[PS_COUNT] = {
    "SELECT id, type, size, mtime, mode, uid, gid, traversal_status, "
    "copy_status, conflict, dev, ino, nlink, xattrs FROM src_nodes "
    "WHERE parent_id = ?1 AND name = ?2",
    "SELECT id, type, size, mtime, mode, uid, gid, traversal_status, "
    "conflict, src_id FROM dst_nodes WHERE parent_id = ?1 AND name = ?2",
    "UPDATE src_nodes SET size = ?2, mtime = ?3, mode = ?4, uid = ?5, gid = ?6, "
    "traversal_status = ?7, copy_status = ?8, conflict = NULL, error = ?9, "
    "dev = ?10, ino = ?11, nlink = ?12, xattrs = ?13, hash = NULL WHERE id = ?1",
    "UPDATE dst_nodes SET size = ?2, mtime = ?3, mode = ?4, uid = ?5, gid = ?6, "
    "traversal_status = ?7, conflict = ?8, src_id = ?9 WHERE id = ?1",
    "UPDATE src_nodes SET traversal_status = ?2 WHERE id = ?1",
    "UPDATE dst_nodes SET traversal_status = ?2 WHERE id = ?1",
    "INSERT OR IGNORE INTO prev_src_nodes(" PASS_PREV_COLS ") SELECT "
    PASS_PREV_COLS " FROM src_nodes WHERE id = ?1",
    /* the comparison's verdict on a source twin, only over the statuses
     * it was made against */
    "UPDATE src_nodes SET copy_status = ?1, conflict = ?2, hash = ?4 WHERE "
    "id = ?3 AND copy_status = ?5 AND coalesce(conflict, '') = ?6",
    "SELECT id FROM src_nodes WHERE parent_id = ?1",
    "SELECT id FROM dst_nodes WHERE parent_id = ?1",
    PASS_SUB_SRC "SELECT n.depth, n.type, n.traversal_status, n.copy_status, "
    "CASE WHEN n.conflict IS NULL THEN 0 ELSE 1 END, count(*), "
    "coalesce(sum(n.size), 0) FROM src_nodes AS n JOIN sub ON n.id = sub.id "
    "WHERE n.id != ?2 GROUP BY 1, 2, 3, 4, 5",
    PASS_SUB_DST "SELECT n.depth, n.type, n.traversal_status, '', 0, count(*), "
    "coalesce(sum(n.size), 0) FROM dst_nodes AS n JOIN sub ON n.id = sub.id "
    "WHERE n.id != ?2 GROUP BY 1, 2, 3",
    "INSERT OR IGNORE INTO prev_src_nodes(" PASS_PREV_COLS ") " PASS_SUB_SRC
    "SELECT " PASS_PREV_COLS " FROM src_nodes WHERE id IN (SELECT id FROM sub) "
    "AND id != ?2",
    "DELETE FROM src_nodes WHERE id IN (" PASS_SUB_SRC "SELECT id FROM sub) "
    "AND id != ?2",
    "DELETE FROM dst_nodes WHERE id IN (" PASS_SUB_DST "SELECT id FROM sub) "
    "AND id != ?2",
    /* PS_SEL_SRC and PS_SEL_DST's columns, then the name, over the
     * children of a folder in name order from a name on (the index
     * (parent_id, name): no sort) */
    "SELECT id, type, size, mtime, mode, uid, gid, traversal_status, "
    "copy_status, conflict, dev, ino, nlink, xattrs, name FROM src_nodes "
    "WHERE parent_id = ?1 AND name >= ?2 ORDER BY name",
    "SELECT id, type, size, mtime, mode, uid, gid, traversal_status, "
    "conflict, src_id, name FROM dst_nodes WHERE parent_id = ?1 AND name >= ?2 "
    "ORDER BY name",
    /* a folder's own status at the end of its listing, over the status it
     * was fetched with (a pass's folder was not made pending) */
    "UPDATE src_nodes SET traversal_status=?1, attempts=attempts+?2, error=?3 "
    "WHERE id=?4 AND traversal_status=?5",
    "UPDATE dst_nodes SET traversal_status=?1, attempts=attempts+?2, error=?3 "
    "WHERE id=?4 AND traversal_status=?5",
    /* the child folders listed in an earlier pass of a folder not listed
     * in this one (pass_unlist) */
    "SELECT count(*), coalesce(sum(size), 0) FROM src_nodes WHERE parent_id = ?1 "
    "AND type = 'folder' AND traversal_status = 'successful'",
    "SELECT count(*), coalesce(sum(size), 0) FROM dst_nodes WHERE parent_id = ?1 "
    "AND type = 'folder' AND traversal_status = 'successful'",
    "UPDATE src_nodes SET traversal_status = 'pending' WHERE parent_id = ?1 "
    "AND type = 'folder' AND traversal_status = 'successful'",
    "UPDATE dst_nodes SET traversal_status = 'pending' WHERE parent_id = ?1 "
    "AND type = 'folder' AND traversal_status = 'successful'",
};

/* The column of the name in PS_SCAN_SRC and PS_SCAN_DST. */
#define SCAN_NAME_SRC 14
#define SCAN_NAME_DST 10

/* Rows a merge steps over before it seeks instead (as discover.c's
 * comparison of a destination page does). */
#define MERGE_SKIP 16

/* A page's children merged with their rows (SQLite): one scan of the
 * index (parent_id, name) in name order, in step with the page (sorted by
 * name, discover.c), instead of one seek per child. It seeks again when
 * the next name is far ahead or not after the one before, and after a
 * row of the folder was inserted or removed (an update changes no column
 * of the index: the scan goes on). A child the merge misses would be
 * taken for gone with its subtree: test_passes' big folder guards it. On
 * PostgreSQL (one round trip per statement, a result read whole) every
 * child is one lookup. */
struct pass_scan {
    struct tm__stmt *st;  /* the scan, or NULL: a lookup per child */
    int open;             /* st was stepped and not reset */
    int have;             /* st is on a row */
    struct tm__buf name;  /* that row's name, copied: no pointer into the
                             statement is kept across the writes */
    const char *prev;     /* the name of the child before (in r's arena) */
    size_t prev_len;      /* its bytes */
};

/* The ids a folder of several pages holds so far in this pass. */
struct tm__pass_seen {
    int side;          /* the folder's side */
    int64_t folder;    /* its id */
    int64_t *ids;      /* its children seen (malloc'd) */
    size_t n, cap;     /* count, room */
    int done;          /* its last page is applied: dropped at the commit */
};

int tm__writer_set_pass(struct tm__writer *w)
{
    int i;
    for (i = 0; i < PS_COUNT; i++) {
        int rc = tm__db_prepare_v3(w->db, pass_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                   &w->pst[i], NULL);
        if (rc != SQLITE_OK)
            return tm__store_error(w->db, rc, &w->errmsg, "prepare");
    }
    w->pass = 1;
    return 0;
}

/* The seen list of folder (side, id), made when make is set; NULL. */
static struct tm__pass_seen *pass_seen_of(struct tm__writer *w, int side, int64_t folder,
                                          int make)
{
    size_t i;
    struct tm__pass_seen *p;
    for (i = 0; i < w->nseen; i++)
        if (w->seen[i].side == side && w->seen[i].folder == folder)
            return &w->seen[i];
    if (!make)
        return NULL;
    if (w->nseen == w->seen_cap) {
        size_t cap = w->seen_cap ? 2 * w->seen_cap : 8;
        p = realloc(w->seen, cap * sizeof *p);
        if (!p)
            return NULL;
        w->seen = p;
        w->seen_cap = cap;
    }
    p = &w->seen[w->nseen++];
    memset(p, 0, sizeof *p);
    p->side = side;
    p->folder = folder;
    return p;
}

static int pass_seen_add(struct tm__pass_seen *p, int64_t id)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        int64_t *v = realloc(p->ids, cap * sizeof *v);
        if (!v)
            return TM_ENOMEM;
        p->ids = v;
        p->cap = cap;
    }
    p->ids[p->n++] = id;
    return 0;
}

/* Drops the seen lists of folders whose last page is committed. */
static void pass_seen_purge(struct tm__writer *w)
{
    size_t i = 0;
    while (i < w->nseen) {
        if (w->seen[i].done) {
            free(w->seen[i].ids);
            w->seen[i] = w->seen[--w->nseen];
        } else {
            i++;
        }
    }
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int pass_err(struct tm__writer *w, int rc)
{
    return tm__store_error(w->db, rc, &w->errmsg, "write state file");
}

/* A pass: folder (of depth) is not listed in this pass (its listing
 * failed, or it is excluded now): its child folders listed in an earlier
 * pass become pending, so that the pass's frontier (a folder under a
 * parent listed OK, frontier.c) does not take their own children, two
 * levels down, for listable. Listed in the next pass that lists their
 * parent. */
static int pass_unlist(struct tm__writer *w, int side, int64_t folder, int depth)
{
    struct tm__stmt *st = w->pst[side == TM_SRC ? PS_KIDS_SUM_SRC : PS_KIDS_SUM_DST];
    int64_t n = 0, bytes = 0;
    int rc;
    tm__db_bind_int64(st, 1, folder);
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        n = tm__db_column_int64(st, 0);
        bytes = tm__db_column_int64(st, 1);
    }
    tm__db_reset(st);
    if (rc != SQLITE_ROW)
        return pass_err(w, rc);
    if (n == 0)
        return 0;
    st = w->pst[side == TM_SRC ? PS_UNLIST_SRC : PS_UNLIST_DST];
    tm__db_bind_int64(st, 1, folder);
    rc = step_done(w, st);
    if (!rc)
        rc = stat_add(w, side, depth + 1, TM_T_FOLDER, TS_SUCCESSFUL, 0, -n, -bytes);
    if (!rc)
        rc = stat_add(w, side, depth + 1, TM_T_FOLDER, TS_PENDING, 0, n, bytes);
    return rc;
}

/* Removes the subtree of node id on side (itself too unless keep_root),
 * counting it out of the stats; the source rows are saved in
 * prev_src_nodes first. */
static int pass_drop(struct tm__writer *w, int side, int64_t id, int keep_root)
{
    struct tm__stmt *st = w->pst[side == TM_SRC ? PS_SUB_STATS_SRC : PS_SUB_STATS_DST];
    int64_t skip = keep_root ? id : 0;
    int rc;
    tm__db_bind_int64(st, 1, id);
    tm__db_bind_int64(st, 2, skip);
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        int depth = tm__db_column_int(st, 0);
        int type = tm__name_index(tm__type_names, TM_T_COUNT,
                                  (const char *)tm__db_column_text(st, 1));
        int ts = tm__name_index(tm__ts_names, TS_COUNT,
                                (const char *)tm__db_column_text(st, 2));
        int64_t count = tm__db_column_int64(st, 5), bytes = tm__db_column_int64(st, 6);
        int e = 0;
        if (type < 0 || ts < 0) {
            tm__db_reset(st);
            tm__buf_reset(&w->errmsg);
            tm__buf_addf(&w->errmsg, "a node of %s_nodes has an unknown type or "
                         "status", side == TM_SRC ? "src" : "dst");
            return TM_EINTERNAL;
        }
        e = stat_add(w, side, depth, type, ts, 0, -count, -bytes);
        if (!e && side == TM_SRC) {
            int cs = tm__name_index(tm__cs_names, CS_COUNT,
                                    (const char *)tm__db_column_text(st, 3));
            e = cs < 0 ? TM_EINTERNAL
                       : stat_add(w, 2, depth, type, cs, tm__db_column_int(st, 4),
                                  -count, -bytes);
        }
        if (e) {
            tm__db_reset(st);
            return e;
        }
    }
    tm__db_reset(st);
    if (rc != SQLITE_DONE)
        return pass_err(w, rc);
    if (side == TM_SRC) {
        st = w->pst[PS_SUB_PREV];
        tm__db_bind_int64(st, 1, id);
        tm__db_bind_int64(st, 2, skip);
        rc = step_done(w, st);
        if (rc)
            return rc;
    }
    st = w->pst[side == TM_SRC ? PS_SUB_DEL_SRC : PS_SUB_DEL_DST];
    tm__db_bind_int64(st, 1, id);
    tm__db_bind_int64(st, 2, skip);
    return step_done(w, st);
}

/* The comparison's verdict on the source twin of destination child n:
 * written only over the statuses it was made against. A twin copied in
 * an earlier pass (or there already) that the destination no longer
 * matches keeps its facts in prev_src_nodes (changed on the destination
 * since). */
static int pass_twin(struct tm__writer *w, const struct tm__result *r,
                     const struct tm__wnode *n)
{
    struct tm__stmt *up = w->pst[PS_TWIN];
    int rc;
    if (!n->upd)
        return 0;
    if (n->old_cs == CS_SUCCESSFUL || n->old_cs == CS_ALREADY) {
        struct tm__stmt *pv = w->pst[PS_PREV];
        tm__db_bind_int64(pv, 1, n->src_id);
        rc = step_done(w, pv);
        if (rc)
            return rc;
    }
    bind_verdict(up, n);
    tm__db_bind_text(up, 5, tm__cs_names[n->old_cs], -1, SQLITE_STATIC);
    tm__db_bind_text(up, 6, n->old_cf ? tm__cf_names[n->old_cf] : "", -1,
                     SQLITE_STATIC);
    rc = step_done(w, up);
    if (rc || tm__db_changes(w->db) != 1)
        return rc; /* written by an earlier run of this page */
    rc = stat_add(w, 2, r->depth + 1, n->src_type, n->old_cs, n->old_cf, -1,
                  -n->src_size);
    if (!rc)
        rc = stat_add(w, 2, r->depth + 1, n->src_type, n->new_cs, n->new_cf, 1,
                      n->src_size);
    return rc;
}

/* Binds an optional integer: NULL when absent. */
static void bind_opt(struct tm__stmt *st, int i, int have, int64_t v)
{
    if (have)
        tm__db_bind_int64(st, i, v);
    else
        tm__db_bind_null(st, i);
}

static int col_eq(struct tm__stmt *st, int i, int have, int64_t v)
{
    if (tm__db_column_type(st, i) == SQLITE_NULL)
        return !have;
    return have && tm__db_column_int64(st, i) == v;
}

static void pass_scan_end(struct pass_scan *sc)
{
    if (sc->open)
        tm__db_reset(sc->st);
    sc->open = sc->have = 0;
}

/* Steps scan sc (on side's table): 0, or an error. */
static int pass_scan_step(struct tm__writer *w, int side, struct pass_scan *sc)
{
    int col = side == TM_SRC ? SCAN_NAME_SRC : SCAN_NAME_DST;
    int rc = tm__db_step(sc->st);
    sc->have = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW) {
        const char *name = (const char *)tm__db_column_text(sc->st, col);
        tm__buf_reset(&sc->name);
        if (!name || tm__buf_add(&sc->name, name,
                                 (size_t)tm__db_column_bytes(sc->st, col))) {
            pass_scan_end(sc);
            return TM_ENOMEM;
        }
    }
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return 0;
    pass_scan_end(sc);
    return pass_err(w, rc);
}

/* The row of child n of r: *sel gets a statement on it (reset by the
 * caller unless it is sc's scan), or NULL when there is none. */
static int pass_find(struct tm__writer *w, struct tm__result *r,
                     const struct tm__wnode *n, struct pass_scan *sc,
                     struct tm__stmt **sel)
{
    const char *name = r->arena.buf + n->name_off;
    int c = 1, k, rc;
    *sel = NULL;
    if (!sc->st) {
        struct tm__stmt *st = w->pst[r->side == TM_SRC ? PS_SEL_SRC : PS_SEL_DST];
        tm__db_bind_int64(st, 1, n->parent_id);
        tm__db_bind_text(st, 2, name, (int)n->name_len, SQLITE_STATIC);
        rc = tm__db_step(st);
        if (rc == SQLITE_ROW)
            *sel = st;
        else
            tm__db_reset(st);
        return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : pass_err(w, rc);
    }
    if (sc->open && sc->prev &&
        tm__name_cmp(sc->prev, sc->prev_len, name, n->name_len) >= 0)
        pass_scan_end(sc); /* not in name order: seek */
    for (k = 0; sc->open && sc->have &&
                (c = tm__name_cmp(sc->name.buf, sc->name.len, name, n->name_len)) < 0;
         k++) {
        if (k == MERGE_SKIP) {
            pass_scan_end(sc); /* far behind: seek */
            break;
        }
        rc = pass_scan_step(w, r->side, sc);
        if (rc)
            return rc;
        c = 1;
    }
    if (!sc->open) {
        tm__db_bind_int64(sc->st, 1, n->parent_id);
        tm__db_bind_text(sc->st, 2, name, (int)n->name_len, SQLITE_STATIC);
        sc->open = 1;
        rc = pass_scan_step(w, r->side, sc);
        if (rc)
            return rc;
        c = sc->have ? tm__name_cmp(sc->name.buf, sc->name.len, name, n->name_len) : 1;
    }
    sc->prev = name;
    sc->prev_len = n->name_len;
    if (sc->have && c == 0)
        *sel = sc->st;
    return 0;
}

/* A pass: a child folder to be listed (new_ts pending) whose row's status
 * old_ts says it may be listed in this pass already (pending, or listed
 * or failed in an earlier pass) keeps its row as it is: the pass's
 * frontier is kept by watermarks (discover.c), not in the rows, so an
 * unchanged folder costs no write. */
static int pass_ts_kept(int type, int old_ts, int new_ts)
{
    return old_ts == new_ts ||
           (type == TM_T_FOLDER && new_ts == TS_PENDING &&
            (old_ts == TS_SUCCESSFUL || old_ts == TS_FAILED));
}

/* Merges child i of r with its row, if any; *id gets the row's id. The
 * scan sc ends before a row of its table is inserted or removed. */
static int pass_child(struct tm__writer *w, struct tm__result *r, size_t i,
                      struct pass_scan *sc, int64_t *id)
{
    struct tm__wnode *n = &r->nodes[i];
    int src = r->side == TM_SRC, depth = r->depth + 1, rc;
    struct tm__stmt *sel = NULL;
    int type = -1, ts = -1, cs = -1, cf = 0, same = 0, upd = n->upd;
    int64_t size = 0, old = 0, src_id = 0;

    rc = pass_find(w, r, n, sc, &sel);
    if (rc)
        return rc;
    if (sel) {
        old = tm__db_column_int64(sel, 0);
        type = tm__name_index(tm__type_names, TM_T_COUNT,
                              (const char *)tm__db_column_text(sel, 1));
        size = tm__db_column_int64(sel, 2);
        ts = tm__name_index(tm__ts_names, TS_COUNT,
                            (const char *)tm__db_column_text(sel, 7));
        same = type == n->type && size == n->size &&
               tm__db_column_int64(sel, 3) == n->mtime &&
               tm__db_column_int64(sel, 4) == (int64_t)n->mode &&
               col_eq(sel, 5, n->owned, n->uid) && col_eq(sel, 6, n->owned, n->gid);
        if (src) {
            int links = n->nlink > 1;
            const char *c = (const char *)tm__db_column_text(sel, 9);
            cs = tm__name_index(tm__cs_names, CS_COUNT,
                                (const char *)tm__db_column_text(sel, 8));
            cf = c ? tm__name_index(tm__cf_names, CF_COUNT, c) : 0;
            same = same && col_eq(sel, 10, links, (int64_t)n->dev) &&
                   col_eq(sel, 11, links, (int64_t)n->ino) &&
                   col_eq(sel, 12, links, (int64_t)n->nlink) &&
                   col_eq(sel, 13, n->xattrs != 0, (int64_t)n->xattrs);
        } else {
            const char *c = (const char *)tm__db_column_text(sel, 8);
            cf = c ? tm__name_index(tm__cf_names, CF_COUNT, c) : 0;
            src_id = tm__db_column_int64(sel, 9);
        }
        if (!sc->st)
            tm__db_reset(sel);
    }
    if (old && (type < 0 || ts < 0 || cf < 0 || (src && cs < 0))) {
        tm__buf_reset(&w->errmsg);
        tm__buf_addf(&w->errmsg, "node %s has an unknown type or status",
                     r->arena.buf + n->path_off);
        return TM_EINTERNAL;
    }
    if (old && type != n->type) {
        /* another kind of node under the same name: a new node */
        pass_scan_end(sc);
        rc = pass_drop(w, r->side, old, 0);
        if (rc)
            return rc;
        old = 0;
    }
    if (!old) {
        n->upd = 0; /* the twin's verdict goes through pass_twin */
        pass_scan_end(sc);
        *id = w->next_id[r->side];
        rc = insert_nodes(w, r, i, 1);
        n->upd = (int8_t)upd;
        return rc ? rc : pass_twin(w, r, n);
    }
    *id = old;
    if (src && !same) {
        /* changed: the previous pass's facts kept, then the new ones, to
         * be compared and copied again */
        struct tm__stmt *up = w->pst[PS_UPD_SRC];
        int links = n->nlink > 1;
        tm__db_bind_int64(w->pst[PS_PREV], 1, old);
        rc = step_done(w, w->pst[PS_PREV]);
        if (rc)
            return rc;
        tm__db_bind_int64(up, 1, old);
        tm__db_bind_int64(up, 2, n->size);
        tm__db_bind_int64(up, 3, n->mtime);
        tm__db_bind_int64(up, 4, n->mode);
        bind_opt(up, 5, n->owned, n->uid);
        bind_opt(up, 6, n->owned, n->gid);
        tm__db_bind_text(up, 7, tm__ts_names[n->ts], -1, SQLITE_STATIC);
        tm__db_bind_text(up, 8, tm__cs_names[n->cs], -1, SQLITE_STATIC);
        if (n->why_len)
            tm__db_bind_text(up, 9, r->arena.buf + n->why_off, (int)n->why_len,
                             SQLITE_STATIC);
        else
            tm__db_bind_null(up, 9);
        bind_opt(up, 10, links, (int64_t)n->dev);
        bind_opt(up, 11, links, (int64_t)n->ino);
        bind_opt(up, 12, links, (int64_t)n->nlink);
        bind_opt(up, 13, n->xattrs != 0, (int64_t)n->xattrs);
        rc = step_done(w, up);
        if (!rc) rc = stat_add(w, 0, depth, type, ts, 0, -1, -size);
        if (!rc) rc = stat_add(w, 0, depth, n->type, n->ts, 0, 1, n->size);
        if (!rc) rc = stat_add(w, 2, depth, type, cs, cf, -1, -size);
        if (!rc) rc = stat_add(w, 2, depth, n->type, n->cs, 0, 1, n->size);
        if (!rc && type == TM_T_FOLDER && n->ts == TS_EXCLUDED) {
            pass_scan_end(sc);
            rc = pass_unlist(w, TM_SRC, old, depth);
        }
        return rc;
    }
    if (src) {
        /* unchanged: its copy status stays; a folder is listed again */
        if (pass_ts_kept(type, ts, n->ts))
            return 0;
        rc = step_done(w, (tm__db_bind_int64(w->pst[PS_TS_SRC], 1, old),
                           tm__db_bind_text(w->pst[PS_TS_SRC], 2, tm__ts_names[n->ts],
                                            -1, SQLITE_STATIC),
                           w->pst[PS_TS_SRC]));
        if (!rc) rc = stat_add(w, 0, depth, type, ts, 0, -1, -size);
        if (!rc) rc = stat_add(w, 0, depth, type, n->ts, 0, 1, size);
        if (!rc && type == TM_T_FOLDER && n->ts == TS_EXCLUDED) {
            pass_scan_end(sc);
            rc = pass_unlist(w, TM_SRC, old, depth);
        }
        return rc;
    }
    if (!same || !pass_ts_kept(type, ts, n->ts) || cf != n->conflict ||
        src_id != n->src_id) {
        struct tm__stmt *up = w->pst[PS_UPD_DST];
        tm__db_bind_int64(up, 1, old);
        tm__db_bind_int64(up, 2, n->size);
        tm__db_bind_int64(up, 3, n->mtime);
        tm__db_bind_int64(up, 4, n->mode);
        bind_opt(up, 5, n->owned, n->uid);
        bind_opt(up, 6, n->owned, n->gid);
        tm__db_bind_text(up, 7, tm__ts_names[n->ts], -1, SQLITE_STATIC);
        if (n->conflict)
            tm__db_bind_text(up, 8, tm__cf_names[n->conflict], -1, SQLITE_STATIC);
        else
            tm__db_bind_null(up, 8);
        bind_opt(up, 9, n->src_id != 0, n->src_id);
        rc = step_done(w, up);
        if (!rc) rc = stat_add(w, 1, depth, type, ts, 0, -1, -size);
        if (!rc) rc = stat_add(w, 1, depth, n->type, n->ts, 0, 1, n->size);
        /* a folder not listed in this pass holds nothing recorded (one
         * without a source twin now, or whose twin is excluded) */
        if (!rc && n->type == TM_T_FOLDER && n->ts != TS_PENDING) {
            pass_scan_end(sc);
            rc = pass_drop(w, TM_DST, old, 1);
        }
        if (rc)
            return rc;
    }
    return pass_twin(w, r, n);
}

/* After the last page of a folder listed in full: its rows that the
 * listing did not name go, with their subtrees. */
static int pass_gone(struct tm__writer *w, struct tm__result *r, struct tm__pass_seen *p)
{
    struct tm__stmt *st = w->pst[r->side == TM_SRC ? PS_KIDS_SRC : PS_KIDS_DST];
    int64_t *gone = NULL;
    size_t ng = 0, cap = 0, k;
    int rc;
    if (p->n) /* an empty listing has no ids (NULL): qsort must not see it */
        qsort(p->ids, p->n, sizeof *p->ids, cmp_id);
    tm__db_bind_int64(st, 1, r->folder_id);
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        int64_t id = tm__db_column_int64(st, 0);
        if (p->n && bsearch(&id, p->ids, p->n, sizeof *p->ids, cmp_id))
            continue;
        if (ng == cap) {
            int64_t *v = realloc(gone, (cap = cap ? 2 * cap : 16) * sizeof *v);
            if (!v) {
                tm__db_reset(st);
                free(gone);
                return TM_ENOMEM;
            }
            gone = v;
        }
        gone[ng++] = id;
    }
    tm__db_reset(st);
    if (rc != SQLITE_DONE) {
        free(gone);
        return pass_err(w, rc);
    }
    for (k = 0, rc = 0; k < ng && !rc; k++)
        rc = pass_drop(w, r->side, gone[k], 0);
    free(gone);
    return rc;
}

/* A page of a listing in a pass: merged (above); with the last page, what
 * is gone, then the folder's own status. */
static int apply_pass_listing(struct tm__writer *w, struct tm__result *r)
{
    struct tm__pass_seen *p = pass_seen_of(w, r->side, r->folder_id,
                                           !r->final || r->folder_ts == TS_SUCCESSFUL);
    struct pass_scan sc = { NULL, 0, 0, TM__BUF_INIT, NULL, 0 };
    size_t i;
    int rc = 0;
    if (!p && (!r->final || r->folder_ts == TS_SUCCESSFUL))
        return TM_ENOMEM;
    r->inserted = 0;
    rc = page_lost(w, r);
    if (rc)
        return rc < 0 ? rc : 0;
    if (tm__db_sqlite(w->db))
        sc.st = w->pst[r->side == TM_SRC ? PS_SCAN_SRC : PS_SCAN_DST];
    for (i = 0; !rc && i < r->n_nodes; i++) {
        int64_t id = 0;
        rc = pass_child(w, r, i, &sc, &id);
        if (!rc && p)
            rc = pass_seen_add(p, id);
    }
    pass_scan_end(&sc);
    tm__buf_release(&sc.name);
    if (rc || !r->final)
        return rc;
    if (p) {
        p->done = 1; /* dropped at the commit (a PostgreSQL redo applies the
                        transaction's pages again) */
        if (r->folder_ts == TS_SUCCESSFUL)
            rc = pass_gone(w, r, p);
    }
    return rc ? rc : folder_done(w, r);
}

/* A pair listing: the source folder's children with their verdicts, then
 * its destination twin's children, each pointing at the id its source
 * twin got. Both folders were pending with no listing recorded
 * (discover.c pairs only those), so every source child is new: one that
 * is not would keep a verdict the comparison did not make. */
static int apply_pair(struct tm__writer *w, struct tm__result *r)
{
    struct tm__result *d = r->pair;
    size_t i;
    int rc = apply_listing(w, r);
    if (rc || r->lease_lost)
        return rc;
    if ((size_t)r->inserted != r->n_nodes) {
        tm__buf_reset(&w->errmsg);
        tm__buf_addf(&w->errmsg, "pair listing of %s: %zu of its %zu source "
                     "children were recorded already", r->path ? r->path : "",
                     r->n_nodes - (size_t)r->inserted, r->n_nodes);
        return TM_EINTERNAL;
    }
    for (i = 0; i < d->n_nodes; i++) {
        struct tm__wnode *n = &d->nodes[i];
        if (n->twin)
            n->src_id = r->nodes[n->twin - 1].id;
    }
    return apply_listing(w, d);
}

static int apply(struct tm__writer *w, struct tm__result *r)
{
    struct tm__stmt *st;
    switch (r->kind) {
    case TM_R_LISTING:
        if (r->pair && !w->pass)
            return apply_pair(w, r);
        return w->pass ? apply_pass_listing(w, r) : apply_listing(w, r);
    case TM_R_SETTING:
        st = w->st[ST_SET];
        tm__db_bind_text(st, 1, r->path, -1, SQLITE_STATIC);
        tm__db_bind_text(st, 2, r->value, -1, SQLITE_STATIC);
        return step_done(w, st);
    case TM_R_COPY:
        return apply_copy(w, r);
    case TM_R_CHECKPOINT:
        st = w->st[ST_UP_SET];
        tm__db_bind_int64(st, 1, r->folder_id);
        tm__db_bind_blob(st, 2, r->value, (int)r->size, SQLITE_STATIC);
        tm__db_bind_int64(st, 3, tm__wall_ns());
        return step_done(w, st);
    case TM_R_PROBLEM:
        return task_error(w, r);
    case TM_R_LOG:
        st = w->st[ST_LOG];
        tm__db_bind_int64(st, 1, r->stat[7]);
        tm__db_bind_text(st, 2, r->phase, -1, SQLITE_STATIC);
        if (r->queue)
            tm__db_bind_text(st, 3, r->queue, -1, SQLITE_STATIC);
        else
            tm__db_bind_null(st, 3);
        if (r->folder_id)
            tm__db_bind_int64(st, 4, r->folder_id);
        else
            tm__db_bind_null(st, 4);
        if (r->path)
            tm__db_bind_text(st, 5, r->path, -1, SQLITE_STATIC);
        else
            tm__db_bind_null(st, 5);
        tm__db_bind_text(st, 6, r->value ? r->value : "", -1, SQLITE_STATIC);
        return step_done(w, st);
    case TM_R_QSTAT: {
        int i;
        st = w->st[ST_QSTAT];
        tm__db_bind_int64(st, 1, r->stat[7]);
        tm__db_bind_text(st, 2, r->queue, -1, SQLITE_STATIC);
        for (i = 0; i < 7; i++)
            tm__db_bind_int64(st, 3 + i, r->stat[i]);
        tm__db_bind_double(st, 10, r->rate[0]);
        tm__db_bind_double(st, 11, r->rate[1]);
        tm__db_bind_text(st, 12, w->host, -1, SQLITE_STATIC);
        tm__db_bind_int64(st, 13, (int64_t)getpid());
        return step_done(w, st);
    }
    default:
        return TM_EINTERNAL;
    }
}

static void free_list(struct tm__result *r)
{
    while (r) {
        struct tm__result *next = r->next;
        tm__result_free(r);
        r = next;
    }
}

/* Records the first fatal error; later ones are dropped. An error whose
 * path left no message (a statement's step, a lost PostgreSQL connection)
 * gets the database's own, naming the state file: the user is never told
 * a bare "i/o error". Writer thread only (errmsg is its own). */
static void set_error(struct tm__writer *w, int err)
{
    pthread_mutex_lock(&w->mu);
    if (!w->err && !w->errmsg.len)
        tm__buf_addf(&w->errmsg, "state file %s: write: %s: %s",
                     w->db->name ? w->db->name : "", tm_strerror(err),
                     tm__db_errmsg(w->db));
    if (!w->err)
        w->err = err;
    pthread_cond_broadcast(&w->cv_space);
    pthread_mutex_unlock(&w->mu);
}

/* Writes the settings the pass's mark hook names for the transaction
 * (asked again when ask, else those it named before: a redo). */
static int write_marks(struct tm__writer *w, int ask)
{
    int i, rc = 0;
    if (!w->mark)
        return 0;
    if (ask) {
        memset(w->marks, 0, sizeof w->marks);
        w->mark(w->mark_ctx, w->done_head, w->marks);
    }
    for (i = 0; !rc && i < TM__MARKS; i++) {
        struct tm__stmt *st = w->st[ST_SET];
        if (!w->marks[i].key)
            continue;
        tm__db_bind_text(st, 1, w->marks[i].key, -1, SQLITE_STATIC);
        tm__db_bind_text(st, 2, w->marks[i].value, -1, SQLITE_STATIC);
        rc = step_done(w, st);
    }
    return rc;
}

/* PostgreSQL's pipeline (db.h) could not confirm the transaction (a child
 * listed twice was not inserted, a statement failed): nothing of it is
 * committed. It is applied again one statement at a time, where each
 * step's count and failure are known when it returns, and committed. */
static int redo(struct tm__writer *w)
{
    struct tm__result *r;
    int rc, src;
    tm__db_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
    tm__db_pipeline(w->db, 0);
    w->next_id[0] = w->txn_next_id[0];
    w->next_id[1] = w->txn_next_id[1];
    w->id_end[0] = w->txn_id_end[0];
    w->id_end[1] = w->txn_id_end[1];
    tm__stats_release(&w->delta);
    rc = tm__store_exec(w->db, "BEGIN IMMEDIATE", &w->errmsg);
    for (r = w->done_head; r; r = r->next)
        r->lease_checked = 0; /* checked again, in place: exact counts */
    for (r = w->done_head; !rc && r; r = r->next)
        rc = apply(w, r);
    if (!rc)
        rc = write_marks(w, 0);
    if (!rc && (rc = tm__stats_apply(w->db, &w->delta)) != 0) {
        tm__buf_reset(&w->errmsg);
        tm__buf_addf(&w->errmsg, "write stats: %s", tm__db_errmsg(w->db));
    }
    if (!rc && (src = tm__db_exec(w->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
        rc = tm__store_error(w->db, src, &w->errmsg, "commit state file");
    tm__db_pipeline(w->db, 1);
    return rc;
}

/* redo(), again while the server rolls it back for a deadlock: on a
 * shared store two processes' transactions may deadlock (a destination
 * listing updates source rows another process's listing completes); the
 * one rolled back is done again once the other committed. */
static int redo_again(struct tm__writer *w)
{
    int rc, tries = 0;
    while ((rc = redo(w)) != 0 && (tm__db_errcode(w->db) & 0xff) == SQLITE_BUSY &&
           ++tries < 8)
        tm__sleep_ms(20 * tries);
    return rc;
}

/* 1 when the failure of a statement of a shared store's transaction is
 * one that applying it again may not meet: a deadlock. */
static int redo_helps(struct tm__writer *w)
{
    return w->ids && (tm__db_errcode(w->db) & 0xff) == SQLITE_BUSY;
}

static int commit(struct tm__writer *w, size_t rows)
{
    tm__precommit_cb fn;
    void *ctx;
    int rc, src;
    /* set by another thread (the copy's last step): read under the lock */
    pthread_mutex_lock(&w->mu);
    fn = w->precommit;
    ctx = w->precommit_ctx;
    pthread_mutex_unlock(&w->mu);
    rc = fn ? fn(ctx) : 0;
    if (rc) {
        tm__buf_reset(&w->errmsg);
        tm__buf_addf(&w->errmsg, "cannot make the written data durable (sync of "
                     "the destination): %s",
                     tm_strerror(rc));
        return rc;
    }
    rc = write_marks(w, 1);
    if (rc)
        return rc;
    rc = tm__stats_apply(w->db, &w->delta);
    if (rc) {
        tm__buf_reset(&w->errmsg);
        tm__buf_addf(&w->errmsg, "write stats: %s", tm__db_errmsg(w->db));
        return rc;
    }
    src = tm__db_exec(w->db, "COMMIT", NULL, NULL, NULL);
    if (src == TM__DB_REDO) {
        rc = redo_again(w);
        if (rc)
            return rc;
    } else if (src != SQLITE_OK)
        return tm__store_error(w->db, src, &w->errmsg, "commit state file");
    atomic_fetch_add(&w->rows, (int64_t)rows);
    if (w->on_commit && w->done_head)
        w->on_commit(w->ctx, w->done_head);
    free_list(w->done_head);
    w->done_head = w->done_tail = NULL;
    memset(w->marks, 0, sizeof w->marks);
    if (w->pass)
        pass_seen_purge(w);
    return 0;
}

/* The disk under the state file is full: say so, naming the file, so that
 * it is not taken for the source's or the destination's disk. */
static void full_message(struct tm__writer *w)
{
    const char *file = w->db->name;
    tm__buf_reset(&w->errmsg);
    tm__buf_addf(&w->errmsg, "the disk of the state file %s is full: free some "
                 "space there and run the command again (what was done and not "
                 "recorded yet is done again)", file && *file ? file : "");
}

static void *writer_main(void *arg)
{
    struct tm__writer *w = arg;
    int in_txn = 0, failed = 0;
    size_t txn_rows = 0;
    int64_t txn_start = 0;

    tm__db_pipeline(w->db, 1); /* PostgreSQL: one round trip per batch */
    pthread_mutex_lock(&w->mu);
    for (;;) {
        struct tm__result *list;
        int stopping, flush, rc = 0;

        while (!w->head && !w->stopping && !(w->flush && in_txn)) {
            if (in_txn) {
                int64_t due = txn_start + (int64_t)TM_WRITER_BATCH_MS * 1000000;
                int64_t left = due - tm__now_ns();
                struct timespec ts;
                if (left <= 0)
                    break;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += (time_t)(left / 1000000000);
                ts.tv_nsec += (long)(left % 1000000000);
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&w->cv_work, &w->mu, &ts);
            } else {
                pthread_cond_wait(&w->cv_work, &w->mu);
            }
        }
        list = w->head;
        w->head = w->tail = NULL;
        w->queued_rows = 0;
        stopping = w->stopping;
        flush = w->flush;
        w->flush = 0;
        pthread_cond_broadcast(&w->cv_space);
        pthread_mutex_unlock(&w->mu);

        if (failed) {
            free_list(list);
        } else {
            if (in_txn && w->ids)
                rc = check_leases(w, list);
            while (list && !rc) {
                struct tm__result *r = list;
                list = r->next;
                r->next = NULL;
                if (!in_txn) {
                    rc = tm__store_exec(w->db, "BEGIN IMMEDIATE", &w->errmsg);
                    if (rc) {
                        tm__result_free(r); /* taken off the list already */
                        break;
                    }
                    in_txn = 1;
                    txn_rows = 0;
                    w->txn_next_id[0] = w->next_id[0];
                    w->txn_next_id[1] = w->next_id[1];
                    w->txn_id_end[0] = w->id_end[0];
                    w->txn_id_end[1] = w->id_end[1];
                    txn_start = tm__now_ns();
                    if (w->ids) {
                        r->next = list; /* r and the rest, in this transaction */
                        rc = check_leases(w, r);
                        r->next = NULL;
                    }
                }
                if (!rc)
                    rc = apply(w, r);
                txn_rows += result_rows(r);
                if (w->done_tail)
                    w->done_tail->next = r;
                else
                    w->done_head = r;
                w->done_tail = r;
                if (rc && redo_helps(w)) {
                    /* rolled back by the server: the transaction so far
                     * is done again, one statement at a time, and
                     * committed */
                    rc = redo_again(w);
                    in_txn = rc != 0;
                    if (!rc) {
                        atomic_fetch_add(&w->rows, (int64_t)txn_rows);
                        if (w->on_commit && w->done_head)
                            w->on_commit(w->ctx, w->done_head);
                        free_list(w->done_head);
                        w->done_head = w->done_tail = NULL;
                        tm__buf_reset(&w->errmsg);
                        continue;
                    }
                }
                if (rc)
                    break;
                if (txn_rows >= TM_WRITER_BATCH_ROWS) {
                    /* a full batch commits now, not after the whole list:
                     * a crash then loses at most one batch and the queue */
                    rc = commit(w, txn_rows);
                    in_txn = rc != 0;
                    if (rc)
                        break;
                }
            }
            if (!rc && in_txn &&
                (txn_rows >= TM_WRITER_BATCH_ROWS || stopping || flush ||
                 tm__now_ns() - txn_start >=
                     (int64_t)TM_WRITER_BATCH_MS * 1000000)) {
                rc = commit(w, txn_rows);
                in_txn = rc != 0;
            }
            if (rc) {
                if (rc == TM_ENOSPC &&
                    (tm__db_errcode(w->db) & 0xff) == SQLITE_FULL)
                    full_message(w); /* not the destination's sync */
                free_list(list);
                if (in_txn)
                    tm__db_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
                in_txn = 0;
                free_list(w->done_head);
                w->done_head = w->done_tail = NULL;
                tm__stats_release(&w->delta);
                failed = 1;
                set_error(w, rc);
            }
        }
        pthread_mutex_lock(&w->mu);
        if (stopping && !w->head && !in_txn)
            break;
    }
    pthread_mutex_unlock(&w->mu);
    tm__db_pipeline(w->db, 0);
    return NULL;
}

/* ------------------------------------------------------------ checkpoints */

/* The checkpointer thread: PASSIVE checkpoints each time the writer says
 * the WAL grew past CKPT_FRAMES. Its failures are not the run's: what it
 * did not copy stays in the WAL, which the next checkpoint copies.
 *
 * SQLite writes the WAL from its start again (instead of appending) only
 * when a write transaction begins with every frame copied and no reader
 * in the WAL. The writer's transactions follow each other, and each
 * checkpoint here ends with the frames committed meanwhile left, so the
 * WAL would grow by every commit of the run (a 300k discovery: 240 MB,
 * its blocks allocated anew, freed at the last close, which waits for
 * that, discards on some mounts included). So a wake runs passes while
 * each finds more than CKPT_CATCH_FRAMES new frames, then says how far
 * it copied (ck_upto); the writer, between two transactions, copies the
 * few frames left itself (wal_hook: a PASSIVE checkpoint, as SQLite's
 * automatic one would), and the next transaction starts the WAL over if
 * no reader is in it (else a later round tries again). */
static void ckpt_passes(struct tm__writer *w)
{
    int pass, prev = 0;
    for (pass = 0; pass < CKPT_PASSES; pass++) {
        int log = -1, done = -1;
        if (sqlite3_wal_checkpoint_v2(w->ck_db, "main", SQLITE_CHECKPOINT_PASSIVE, &log,
                                      &done) != SQLITE_OK ||
            done < log || log < prev)
            return; /* failed, readers kept frames, or the WAL started over */
        if (log - prev <= CKPT_CATCH_FRAMES) {
            atomic_store(&w->ck_upto, log);
            return;
        }
        prev = log;
    }
}

static void *ckpt_main(void *arg)
{
    struct tm__writer *w = arg;
    pthread_mutex_lock(&w->ck_mu);
    for (;;) {
        while (!w->ck_want && !w->ck_quit)
            pthread_cond_wait(&w->ck_cv, &w->ck_mu);
        if (w->ck_quit)
            break;
        w->ck_want = 0;
        pthread_mutex_unlock(&w->ck_mu);
        ckpt_passes(w);
        pthread_mutex_lock(&w->ck_mu);
    }
    pthread_mutex_unlock(&w->ck_mu);
    return NULL;
}

/* The write connection's WAL hook, on the writer thread after each commit:
 * wakes the checkpointer once per CKPT_FRAMES new frames; past CKPT_SELF_FRAMES (it is behind) checkpoints
 * here, as SQLite's automatic checkpoint would. */
static int wal_hook(void *ctx, sqlite3 *db, const char *name, int frames)
{
    struct tm__writer *w = ctx;
    int upto = atomic_exchange(&w->ck_upto, 0);
    if (upto > 0 && frames >= CKPT_RESTART_MIN && frames >= upto &&
        frames - upto <= 2 * CKPT_CATCH_FRAMES) {
        /* the few frames the checkpointer left (ckpt_main) */
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    if (frames >= CKPT_SELF_FRAMES) {
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    if (frames < w->ck_woke_at)
        w->ck_woke_at = 0; /* the WAL restarted: the last one was complete */
    if (frames >= w->ck_woke_at + CKPT_FRAMES) {
        /* once per CKPT_FRAMES frames: a checkpoint that readers kept from
         * completing is not tried again at every commit */
        w->ck_woke_at = frames;
        pthread_mutex_lock(&w->ck_mu);
        w->ck_want = 1;
        pthread_cond_signal(&w->ck_cv);
        pthread_mutex_unlock(&w->ck_mu);
    }
    return SQLITE_OK;
}

static int read_auto_ckpt(void *ctx, int n, char **v, char **cols)
{
    (void)cols;
    if (n == 1 && v[0])
        *(int *)ctx = atoi(v[0]);
    return 0;
}

/* Starts the checkpointer on a connection of its own. Without one (no
 * memory, no file name: an in-memory database) SQLite's automatic
 * checkpoint stays on: slower, not wrong. PostgreSQL has no WAL of ours
 * to checkpoint: nothing is started. */
static void ckpt_start(struct tm__writer *w)
{
    sqlite3 *raw = tm__db_sqlite(w->db), *db = NULL;
    const char *file = raw ? sqlite3_db_filename(raw, "main") : NULL;
    w->auto_ckpt = -1;
    if (!file || !*file || sqlite3_exec(raw, "PRAGMA wal_autocheckpoint",
                                        read_auto_ckpt, &w->auto_ckpt, NULL) != SQLITE_OK ||
        w->auto_ckpt <= 0)
        return;
    if (sqlite3_open_v2(file, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return;
    }
    w->ck_db = db;
    w->ck_want = w->ck_quit = 0;
    atomic_init(&w->ck_upto, 0);
    pthread_mutex_init(&w->ck_mu, NULL);
    pthread_cond_init(&w->ck_cv, NULL);
    if (pthread_create(&w->ck_thread, NULL, ckpt_main, w) != 0) {
        pthread_mutex_destroy(&w->ck_mu);
        pthread_cond_destroy(&w->ck_cv);
        sqlite3_close(db);
        w->ck_db = NULL;
        return;
    }
    /* replaces SQLite's own hook, the automatic checkpoint */
    sqlite3_wal_hook(raw, wal_hook, w);
}

/* Ends the checkpointer (after the writer thread) and puts SQLite's
 * automatic checkpoint back on the write connection. */
static void ckpt_stop(struct tm__writer *w)
{
    if (!w->ck_db)
        return;
    pthread_mutex_lock(&w->ck_mu);
    w->ck_quit = 1;
    pthread_cond_signal(&w->ck_cv);
    pthread_mutex_unlock(&w->ck_mu);
    pthread_join(w->ck_thread, NULL);
    sqlite3_close(w->ck_db);
    w->ck_db = NULL;
    pthread_mutex_destroy(&w->ck_mu);
    pthread_cond_destroy(&w->ck_cv);
    sqlite3_wal_autocheckpoint(tm__db_sqlite(w->db), w->auto_ckpt);
}

/* Prepares the inserts of nodes: per side, one row and chunks of 2 ..
 * INS_CHUNK rows. */
static int prepare_inserts(struct tm__writer *w)
{
    struct tm__buf sql = TM__BUF_INIT;
    int side, big, rc = 0;
    int sizes = tm__db_sqlite(w->db) != NULL ? INS_SIZES : 1; /* see INS_CHUNK */
    for (side = 0; !rc && side < 2; side++) {
        int cols = side == TM_SRC ? SRC_COLS : DST_COLS;
        for (big = 0; !rc && big < sizes; big++) {
            int rows = 1 << big, i, c;
            tm__buf_reset(&sql);
            rc = tm__buf_adds(&sql, big ? "INSERT OR IGNORE " : "INSERT ");
            if (!rc)
                rc = tm__buf_adds(&sql, side == TM_SRC ? src_ins_head : dst_ins_head);
            for (i = 0; !rc && i < rows; i++) {
                rc = tm__buf_adds(&sql, i ? ",(?" : "(?");
                for (c = 1; !rc && c < cols; c++)
                    rc = tm__buf_adds(&sql, ",?");
                if (!rc)
                    rc = tm__buf_addch(&sql, ')');
            }
            if (!rc && !big)
                rc = tm__buf_adds(&sql, " ON CONFLICT(parent_id,name) DO NOTHING");
            if (rc)
                break;
            rc = tm__db_prepare_v3(w->db, sql.buf, -1, SQLITE_PREPARE_PERSISTENT,
                                   &w->ins[side][big], NULL);
            if (rc != SQLITE_OK)
                rc = tm__store_error(w->db, rc, NULL, "prepare");
        }
    }
    tm__buf_release(&sql);
    return rc;
}

static void finalize_all(struct tm__writer *w)
{
    int i;
    for (i = 0; i < ST_COUNT; i++)
        tm__db_finalize(w->st[i]);
    for (i = 0; i < 2 * INS_SIZES; i++)
        tm__db_finalize(w->ins[i / INS_SIZES][i % INS_SIZES]);
    for (i = 0; i < PS_COUNT; i++)
        tm__db_finalize(w->pst[i]);
    for (i = 0; i < (int)w->nseen; i++)
        free(w->seen[i].ids);
    free(w->seen);
}

int tm__writer_start(struct tm__writer **out, struct tm__db *db, const int64_t next_id[2],
                     size_t max_rows, tm__commit_cb on_commit, void *ctx)
{
    struct tm__writer *w = calloc(1, sizeof *w);
    int i, rc;

    *out = NULL;
    if (!w)
        return TM_ENOMEM;
    w->db = db;
    w->delta.keep = 1; /* its upserts prepared once (released at the end) */
    w->next_id[0] = next_id[0];
    w->next_id[1] = next_id[1];
    w->max_rows = max_rows;
    w->on_commit = on_commit;
    w->ctx = ctx;
    if (gethostname(w->host, sizeof w->host - 1) != 0)
        snprintf(w->host, sizeof w->host, "unknown");
    tm__buf_init(&w->errmsg);
    for (i = 0; i < ST_COUNT; i++) {
        rc = tm__db_prepare_v3(db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                &w->st[i], NULL);
        if (rc != SQLITE_OK) {
            rc = tm__store_error(db, rc, NULL, "prepare");
            goto fail;
        }
    }
    rc = prepare_inserts(w);
    if (rc)
        goto fail;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv_work, NULL);
    pthread_cond_init(&w->cv_space, NULL);
    ckpt_start(w);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        rc = TM_ENOMEM;
        ckpt_stop(w);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv_work);
        pthread_cond_destroy(&w->cv_space);
        goto fail;
    }
    *out = w;
    return 0;
fail:
    finalize_all(w);
    free(w);
    return rc;
}

int tm__writer_submit(struct tm__writer *w, struct tm__result *r)
{
    size_t rows = result_rows(r);
    int err;
    r->next = NULL;
    pthread_mutex_lock(&w->mu);
    while (!w->err && w->head && w->queued_rows + rows > w->max_rows)
        pthread_cond_wait(&w->cv_space, &w->mu);
    err = w->err;
    if (!err) {
        int was_empty = w->head == NULL;
        if (w->tail)
            w->tail->next = r;
        else
            w->head = r;
        w->tail = r;
        w->queued_rows += rows;
        if (was_empty) /* the writer waits only on an empty queue */
            pthread_cond_signal(&w->cv_work);
    }
    pthread_mutex_unlock(&w->mu);
    if (err)
        tm__result_free(r);
    return err;
}

void tm__writer_set_marks(struct tm__writer *w, tm__mark_cb fn, void *ctx)
{
    w->mark = fn;
    w->mark_ctx = ctx;
}

void tm__writer_set_precommit(struct tm__writer *w, tm__precommit_cb fn, void *ctx)
{
    pthread_mutex_lock(&w->mu);
    w->precommit = fn;
    w->precommit_ctx = ctx;
    pthread_mutex_unlock(&w->mu);
}

void tm__writer_set_ids(struct tm__writer *w,
                        int (*fn)(void *ctx, int side, int64_t n, int64_t *first,
                                  struct tm__buf *err),
                        void *ctx)
{
    pthread_mutex_lock(&w->mu);
    w->ids = fn;
    w->ids_ctx = ctx;
    w->next_id[0] = w->next_id[1] = 0;
    w->id_end[0] = w->id_end[1] = 0;
    pthread_mutex_unlock(&w->mu);
}

void tm__writer_flush(struct tm__writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->flush = 1;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
}

int tm__writer_error(struct tm__writer *w)
{
    int err;
    pthread_mutex_lock(&w->mu);
    err = w->err;
    pthread_mutex_unlock(&w->mu);
    return err;
}

void tm__writer_message(struct tm__writer *w, struct tm__buf *out)
{
    tm__buf_reset(out);
    pthread_mutex_lock(&w->mu);
    /* written by the writer thread before it set w->err, never after */
    if (w->err)
        tm__buf_add(out, w->errmsg.buf, w->errmsg.len);
    pthread_mutex_unlock(&w->mu);
}

int64_t tm__writer_rows(struct tm__writer *w)
{
    return atomic_load(&w->rows);
}

int tm__writer_stop(struct tm__writer *w, struct tm__buf *err)
{
    int rc;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    ckpt_stop(w);
    rc = w->err;
    if (rc && err) {
        tm__buf_reset(err);
        tm__buf_add(err, w->errmsg.buf, w->errmsg.len);
    }
    finalize_all(w);
    tm__stats_release(&w->delta);
    tm__buf_release(&w->errmsg);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv_work);
    pthread_cond_destroy(&w->cv_space);
    free(w);
    return rc;
}
