/*
 * lease_q.c - the leases of treemig worker (lease_q.h), on PostgreSQL.
 *
 * A claim is one transaction: a new row of leases, then one UPDATE of
 * src_nodes whose inner SELECT picks the tasks of the stage that no live
 * lease holds (none, another stage's, or one whose expiry passed on the
 * server's clock) with FOR UPDATE SKIP LOCKED, so that workers claiming
 * at once take different rows instead of waiting for each other; the
 * UPDATE's RETURNING gives each task's row with the columns of tasks.c's
 * queries (the engine reads them with tm__tasks_decode). Times are the
 * server's (clock_timestamp()), so the hosts' clocks need not agree.
 * Discovery's claims (tm__lease_q_claim_folders) take pending folders of
 * src_nodes or dst_nodes the same way, in one statement (one round trip,
 * the lease made only when folders are found), and hand them over once
 * it returned; tm__lease_q_ids gives the writers blocks
 * of node ids (table id_blocks). A claim or a block cut off with its
 * connection is made again on a new one (db_pg.c connects again).
 *
 * Threads: see lease_q.h; q->mu guards the connection.
 */
#include "store/lease_q.h"

#include "store/db.h"
#include "store/store.h"
#include "treemig.h"
#include "util/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The server's clock, in ms. */
#define NOW_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

/* The members of a's link group that the copy writes (tasks.c's
 * GROUP_SQL, with the node's alias a). */
#define GROUP(a)                                                             \
    "FROM src_nodes g WHERE g.dev = " a ".dev AND g.ino = " a ".ino AND "    \
    "g.type = 'file' AND g.copy_status NOT IN ('already_existed', "          \
    "'skipped', 'excluded')"

/* What each kind's tasks are (tasks.c's queries), for node alias s and
 * depth parameter D. */
#define COPY_COND(D)                                                         \
    "s.copy_status = 'pending' AND s.depth = " D " AND (s.ino IS NULL OR "   \
    "s.type != 'file' OR s.id = (SELECT g.id " GROUP("s")                   \
    " ORDER BY g.depth, g.id LIMIT 1))"
#define LINKS_COND(D)                                                        \
    "s.copy_status = 'pending' AND s.depth = " D " AND s.ino IS NOT NULL "   \
    "AND s.type = 'file'"
#define VERIFY_COND                                                          \
    "s.type = 'folder' AND s.traversal_status = 'successful' AND "          \
    "(s.copy_status IN ('successful', 'already_existed') OR (s.copy_status " \
    "= 'failed' AND s.error LIKE 'verify: %') OR (s.copy_status = "          \
    "'skipped' AND s.conflict = 'attrs'))"
#define ATTRS_COND                                                           \
    "s.type = 'folder' AND s.depth > 0 AND s.traversal_status = "            \
    "'successful' AND s.copy_status IN ('successful', 'already_existed')"

/* A claim's rows are taken only if their lease is still the one the
 * statement's snapshot saw (SEEN, as old, and SAME in the UPDATE). In READ
 * COMMITTED, FOR UPDATE SKIP LOCKED that meets a row another claim took
 * and committed after this statement began locks the new version and
 * checks the conditions on it again, but with the leases row of the first
 * look (none, or the expired one): the row would be claimed twice, its
 * work done twice and the first holder's page checks fail. SEEN reads the
 * row again under the snapshot; the UPDATE skips the row whose lease
 * changed since. */
#define SEEN(T) "(SELECT v.lease_id FROM " T " v WHERE v.id = s.id) AS old"
#define SAME " AND n.lease_id IS NOT DISTINCT FROM c.old"

/* The claim: ?1 the new lease, ?2 the stage, ?3 the limit, ?4 the depth. */
#define CLAIM(COND, COLS)                                                    \
    "UPDATE src_nodes AS n SET lease_id = ?1 FROM (SELECT s.id AS cid, "     \
    SEEN("src_nodes") " FROM src_nodes s LEFT JOIN leases l ON "             \
    "l.id = s.lease_id WHERE " COND " AND (l.id IS NULL OR l.stage <> ?2 "  \
    "OR l.expires < " NOW_MS ") ORDER BY s.id LIMIT ?3 "                     \
    "FOR UPDATE OF s SKIP LOCKED) c WHERE n.id = c.cid" SAME " RETURNING n.id, " \
    "n.path, n.depth, n.type, n.size, n.mtime, n.mode, n.conflict, " COLS    \
    ", (SELECT o.tmp_key FROM leases o WHERE o.id = c.old AND "              \
    "o.stage = ?2)"
#define PARENT(col) "(SELECT p." col " FROM src_nodes p WHERE p.id = n.parent_id)"
#define FIRST(col)                                                           \
    "(SELECT f." col " FROM src_nodes f WHERE f.id = (SELECT g.id "         \
    GROUP("n") " ORDER BY g.depth, g.id LIMIT 1))"

/* Discovery: the pending folders of a side that no live lease of the
 * stage holds (?2 the stage, ?3 the limit), lowest depth first. The
 * source's are bounded by the --lead rule (?8): at most lead depths below
 * the destination's lowest pending folder, whoever lists it (none
 * pending: the destination is done, no bound), and start past the
 * claimer's cursor (?9, ?10: depth, id; struct tm__lease_q), in id order
 * (ORDER); the destination's need their source twin's listing durable
 * (not pending), in their twins' order. One statement, one
 * round trip, its own transaction: the folders are picked (c), a lease
 * of this worker (?1 worker, ?4 host, ?5 pid, ?6 key, ?7 its length) is
 * made only if some were (nl), and they are given to it. Each row: id,
 * path, depth, the source twin, its status, where an earlier listing
 * stopped, and the lease. */
/* The depth of the source's lowest pending folder (none: no bound), run
 * once per claim and used as an index bound of the destination's scan:
 * below it every twin is listed; deeper, nearly all are pending (the
 * source lists lowest depth first), and the scan read the twin of each
 * pending destination folder there at every claim (1,557 twins, 179 ms,
 * for no folder claimed). A deeper folder waits until the source's
 * depth is done, which no rule needs: it only bounds the scan. */
#define SRC_LOW                                                               \
    "(SELECT coalesce((SELECT t2.depth FROM src_nodes t2 WHERE "             \
    "t2.traversal_status = 'pending' AND t2.type = 'folder' ORDER BY "       \
    "t2.depth, t2.id LIMIT 1), 9223372036854775807))"
/* The id of that folder (none: no bound). A destination folder at that
 * depth whose twin's id is below it has its twin listed: a claim takes
 * the folders below (SRC_LOW, SRC_LOW_ID) by (depth, twin), one range of
 * the index dst_nodes_twin (by (depth, id) it read every pending folder
 * of the depth and passed those past the bound, 1,000-1,700 rows a
 * claim: the server's largest cost with 4 processes); one in DST_FULL_MS
 * reads every twin of the depth (Q_CLAIM_DST_FULL), so that a twin listed
 * past a folder still listed (a large one) is not waited for long. */
#define SRC_LOW_ID                                                            \
    "(SELECT coalesce((SELECT t3.id FROM src_nodes t3 WHERE "                \
    "t3.traversal_status = 'pending' AND t3.type = 'folder' ORDER BY "       \
    "t3.depth, t3.id LIMIT 1), 9223372036854775807))"
#define DST_FULL_MS 100
#define FREE_LEASE(a) \
    "(l.id IS NULL OR l.stage <> ?2 OR l.expires < " NOW_MS ")"
#define CLAIM_FOLDERS(T, SIDE, JOIN, COND, ORDER, TWIN, TS)                   \
    "WITH c AS (SELECT s.id AS cid, " SEEN(T) " FROM " T " s " JOIN          \
    " LEFT JOIN leases l "                                                     \
    "ON l.id = s.lease_id WHERE s.traversal_status = 'pending' AND s.type = " \
    "'folder' AND " COND " AND " FREE_LEASE("l") " ORDER BY s.depth, " ORDER  \
    " LIMIT ?3 FOR UPDATE OF s SKIP LOCKED), nl AS (INSERT INTO leases(stage, " \
    "worker, host, pid, tmp_key, expires) SELECT ?2, ?1, ?4, ?5, ?6, "        \
    NOW_MS " + ?7 WHERE EXISTS(SELECT 1 FROM c) RETURNING id) UPDATE " T      \
    " AS n SET lease_id = nl.id FROM c, nl WHERE n.id = c.cid" SAME          \
    " RETURNING "                                                              \
    "n.id, n.path, n.depth, " TWIN ", " TS ", (SELECT p.pos FROM listing_pos " \
    "p WHERE p.side = " SIDE " AND p.folder_id = n.id), nl.id"

/* The destination's claim of the folders that BOUND selects, by (depth,
 * twin): dst_nodes_twin. */
#define CLAIM_DST_FOLDERS(BOUND)                                              \
    CLAIM_FOLDERS("dst_nodes", "1", "LEFT JOIN src_nodes t ON t.id = s.src_id", \
                  BOUND " AND coalesce(t.traversal_status, 'successful') <> "  \
                  "'pending'", "s.src_id", "coalesce(n.src_id, 0)",            \
                  "(SELECT t.traversal_status FROM src_nodes t WHERE t.id = "   \
                  "n.src_id)")

enum { Q_NEW, Q_DROP, Q_CLAIM_COPY, Q_CLAIM_LINKS, Q_CLAIM_ATTRS, Q_LEFT_COPY,
       Q_LEFT_LINKS, Q_LEFT_ATTRS, Q_RENEW, Q_DONE, Q_CLAIM_VERIFY, Q_LEFT_VERIFY,
       Q_CLAIM_SRC_F, Q_CLAIM_DST_F, Q_IDS_SRC, Q_IDS_DST, Q_MINE, Q_CLAIM_DST_FULL,
       Q_COUNT };

static const char *const lease_sql[Q_COUNT] = {
    "INSERT INTO leases(stage, worker, host, pid, tmp_key, expires) "
    "VALUES(?1, ?2, ?3, ?4, ?5, " NOW_MS " + ?6) RETURNING id",
    "DELETE FROM leases WHERE id = ?1",
    CLAIM(COPY_COND("?4"),
          PARENT("copy_status") ", CASE WHEN n.type = 'folder' AND "
          "n.traversal_status = 'failed' THEN coalesce(n.error, 'no reason "
          "recorded') END, " PARENT("conflict") ", (SELECT u.state FROM uploads "
          "u WHERE u.node_id = n.id), NULL, NULL"),
    CLAIM(LINKS_COND("?4"),
          PARENT("copy_status") ", NULL, " PARENT("conflict") ", NULL, "
          FIRST("path") ", " FIRST("copy_status")),
    CLAIM(ATTRS_COND, "n.copy_status, NULL, NULL, NULL, NULL, NULL"),
    "SELECT 1 FROM src_nodes s WHERE " COPY_COND("?1") " LIMIT 1",
    "SELECT 1 FROM src_nodes s WHERE " LINKS_COND("?1") " LIMIT 1",
    "SELECT 1 FROM src_nodes s LEFT JOIN leases l ON l.id = s.lease_id WHERE "
    ATTRS_COND " AND (l.id IS NULL OR l.stage <> ?1 OR l.expires IS NOT NULL) "
    "LIMIT 1",
    /* one lease at a time (lease_q_renew): a row the worker's writer
     * holds (discovery's page check) is waited for while no other is */
    "UPDATE leases SET expires = " NOW_MS " + ?2 WHERE id = ?1 AND "
    "expires IS NOT NULL",
    "UPDATE leases SET expires = NULL WHERE id = ?1",
    CLAIM(VERIFY_COND, "n.copy_status, NULL, NULL, NULL, NULL, NULL"),
    "SELECT 1 FROM src_nodes s LEFT JOIN leases l ON l.id = s.lease_id WHERE "
    VERIFY_COND " AND (l.id IS NULL OR l.stage <> ?1 OR l.expires IS NOT NULL) "
    "LIMIT 1",
    CLAIM_FOLDERS("src_nodes", "0", "",
                  "(s.depth, s.id) > (?9, ?10) AND "
                  "s.depth <= coalesce((SELECT d.depth FROM dst_nodes d WHERE "
                  "d.traversal_status = 'pending' AND d.type = 'folder' ORDER BY "
                  "d.depth, d.id LIMIT 1) + ?8, s.depth)",
                  "s.id", "0", "NULL"),
    CLAIM_DST_FOLDERS("(s.depth, s.src_id) > (?8, ?9) AND (s.depth, s.src_id) < ("
                      SRC_LOW ", " SRC_LOW_ID ")"),
    /* a block of node ids: above every id taken, whoever took it */
    "UPDATE id_blocks SET next = greatest(next, (SELECT coalesce(max(id), 0) "
    "+ 1 FROM src_nodes)) + ?1 WHERE side = 0 RETURNING next - ?1",
    "UPDATE id_blocks SET next = greatest(next, (SELECT coalesce(max(id), 0) "
    "+ 1 FROM dst_nodes)) + ?1 WHERE side = 1 RETURNING next - ?1",
    "SELECT id FROM leases WHERE worker = ?1 AND expires IS NOT NULL",
    CLAIM_DST_FOLDERS("s.depth <= " SRC_LOW),
};

struct tm__lease_q {
    pthread_mutex_t mu;          /* one statement at a time */
    struct tm__db *db;           /* the connection */
    struct tm__stmt *st[Q_COUNT]; /* the statements above, prepared */
    char *worker, *host, *key;   /* who claims (malloc'd) */
    int pid;                     /* its process */
    /* The source's claim cursor: the (depth, id) after which this
     * process's next claim of source folders starts, past the pending
     * folders it or others claimed before (a scan from the lowest depth
     * passed each, with its lease, at every claim: 16 ms a claim with 4
     * processes); depth -1: from the start. Only a claim that filled its
     * limit sets it, so a claim that came short (the end of what the
     * --lead bound allows, where a lease that expired or a folder skipped
     * while locked waits) scans again from the start. */
    int cur_depth;
    int64_t cur_id;
    /* The destination's cursor: the (depth, twin id) of the last folder
     * this process's last claim took (depth -1: none). Every folder
     * before it whose twin was listed was free or held then; a claim
     * starts past it, so that it does not pass the folders the processes
     * hold at every claim (40-300 rows, with their leases and twins, for
     * one or two folders a claim: most destination claims find little);
     * the claim of every twin (DST_FULL_MS) starts from the start, where
     * a folder whose lease expired is taken. */
    int dcur_depth;
    int64_t dcur_src;
    int64_t dst_full_ns;         /* when a destination claim reads every
                                    twin again (SRC_LOW_ID) */
};

int tm__lease_q_open(struct tm__lease_q **out, const char *conninfo,
                     const char *worker, const char *host, int pid,
                     const char *tmp_key, struct tm__buf *err)
{
    struct tm__lease_q *q = calloc(1, sizeof *q);
    int i, rc;

    *out = NULL;
    if (!q)
        return TM_ENOMEM;
    pthread_mutex_init(&q->mu, NULL);
    q->pid = pid;
    q->cur_depth = -1;
    q->dcur_depth = -1;
    q->worker = strdup(worker);
    q->host = strdup(host);
    q->key = strdup(tmp_key);
    if (!q->worker || !q->host || !q->key) {
        tm__lease_q_close(q);
        return TM_ENOMEM;
    }
    if (!tm__db_is_pg(conninfo)) {
        tm__buf_addf(err, "leases need a PostgreSQL state database");
        tm__lease_q_close(q);
        return TM_EINVAL;
    }
    rc = tm__store_open_reader(conninfo, &q->db, err);
    /* a renewal waits for a lease row the worker's own writer holds
     * (discovery's page check): bounded, on a connection of its own
     * (worker.c) that neither a claim nor the writer's block of ids
     * waits for */
    if (!rc && tm__db_exec(q->db, "SET lock_timeout = 500", NULL, NULL, NULL) != SQLITE_OK)
        rc = tm__store_error(q->db, SQLITE_ERROR, err, "set the lock timeout");
    /* the claims' plans are made for any parameters, once: a plan made
     * for the values at hand read the destination's claim range (two row
     * comparisons) by depth alone and sorted it, every pending folder of
     * the depth again */
    if (!rc && tm__db_exec(q->db, "SET plan_cache_mode = force_generic_plan", NULL, NULL,
                           NULL) != SQLITE_OK)
        rc = tm__store_error(q->db, SQLITE_ERROR, err, "set the plan cache mode");
    for (i = 0; !rc && i < Q_COUNT; i++)
        if (tm__db_prepare_v3(q->db, lease_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                              &q->st[i], NULL) != SQLITE_OK)
            rc = tm__store_error(q->db, SQLITE_ERROR, err, "prepare the leases");
    if (rc) {
        tm__lease_q_close(q);
        return rc;
    }
    *out = q;
    return 0;
}

void tm__lease_q_close(struct tm__lease_q *q)
{
    int i;
    if (!q)
        return;
    for (i = 0; i < Q_COUNT; i++)
        tm__db_finalize(q->st[i]);
    tm__db_close(q->db);
    free(q->worker);
    free(q->host);
    free(q->key);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* The failure of a statement on q: its message in err. q->mu held. */
static int fail(struct tm__lease_q *q, int rc, struct tm__buf *err, const char *what)
{
    tm__buf_reset(err);
    return tm__store_error(q->db, rc, err, what);
}

static int conn_lost(struct tm__lease_q *q);

/* A claim's lease, this worker's, expiring in lease_ms: its id in *lease;
 * 0 or the error. */
static int new_lease(struct tm__lease_q *q, const char *stage, int lease_ms,
                     int64_t *lease, struct tm__buf *err)
{
    struct tm__stmt *st = q->st[Q_NEW];
    int rc;
    tm__db_bind_text(st, 1, stage, -1, SQLITE_STATIC);
    tm__db_bind_text(st, 2, q->worker, -1, SQLITE_STATIC);
    tm__db_bind_text(st, 3, q->host, -1, SQLITE_STATIC);
    tm__db_bind_int64(st, 4, q->pid);
    tm__db_bind_text(st, 5, q->key, -1, SQLITE_STATIC);
    tm__db_bind_int64(st, 6, lease_ms);
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW)
        *lease = tm__db_column_int64(st, 0);
    tm__db_reset(st);
    return rc == SQLITE_ROW ? 0 : fail(q, rc, err, "make a lease");
}

/* The end of a claim's transaction: a claim of nothing drops its lease
 * (*lease = 0), then COMMIT; 0 or the error, the caller rolls back. */
static int claim_commit(struct tm__lease_q *q, int n, int64_t *lease,
                        const char *what, struct tm__buf *err)
{
    int rc;
    if (n == 0) {
        /* nothing to hold: the lease goes */
        struct tm__stmt *st = q->st[Q_DROP];
        tm__db_bind_int64(st, 1, *lease);
        rc = tm__db_step(st);
        tm__db_reset(st);
        if (rc != SQLITE_DONE)
            return fail(q, rc, err, "drop an empty lease");
        *lease = 0;
    }
    rc = tm__db_exec(q->db, "COMMIT", NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : fail(q, rc, err, what);
}

/* One attempt of tm__lease_q_claim; *delivered: rows handed to row().
 * q->mu held. */
static int claim_once(struct tm__lease_q *q, int kind, int depth, const char *stage,
                      int limit, int lease_ms, int64_t *lease,
                      int (*row)(void *ctx, const struct tm__task_row *r,
                                 const char *old_key),
                      void *ctx, struct tm__buf *err, int *delivered)
{
    struct tm__stmt *st;
    int rc, n = 0, cb_rc = 0;

    *lease = 0;
    rc = tm__db_exec(q->db, "BEGIN", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = fail(q, rc, err, "begin a claim");
        goto out;
    }
    rc = new_lease(q, stage, lease_ms, lease, err);
    if (rc)
        goto rollback;
    st = q->st[kind == TM_TASKS_COPY    ? Q_CLAIM_COPY
               : kind == TM_TASKS_LINKS ? Q_CLAIM_LINKS
               : kind == TM_TASKS_ATTRS ? Q_CLAIM_ATTRS
                                        : Q_CLAIM_VERIFY];
    tm__db_bind_int64(st, 1, *lease);
    tm__db_bind_text(st, 2, stage, -1, SQLITE_STATIC);
    tm__db_bind_int(st, 3, limit);
    if (kind == TM_TASKS_COPY || kind == TM_TASKS_LINKS)
        tm__db_bind_int(st, 4, depth);
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        struct tm__task_row r;
        if (cb_rc)
            continue; /* the rows are claimed: read them all */
        cb_rc = tm__tasks_decode(st, kind, &r);
        if (cb_rc == TM_ECORRUPT)
            tm__buf_addf(err, "state database: a node row holds an unknown value");
        if (!cb_rc)
            cb_rc = row(ctx, &r, (const char *)tm__db_column_text(st, 14));
        n++;
        *delivered = n;
    }
    tm__db_reset(st);
    if (rc != SQLITE_DONE) {
        rc = fail(q, rc, err, "claim tasks");
        goto rollback;
    }
    if (cb_rc) {
        rc = cb_rc;
        goto rollback;
    }
    rc = claim_commit(q, n, lease, "commit a claim", err);
    if (rc)
        goto rollback;
    rc = n;
    goto out;
rollback:
    tm__db_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    *lease = 0;
out:
    return rc;
}

int tm__lease_q_claim(struct tm__lease_q *q, int kind, int depth, const char *stage,
                      int limit, int lease_ms, int64_t *lease,
                      int (*row)(void *ctx, const struct tm__task_row *r,
                                 const char *old_key),
                      void *ctx, struct tm__buf *err)
{
    int rc, attempt, delivered = 0;
    pthread_mutex_lock(&q->mu);
    /* a connection lost before any task was handed over (a server
     * restarted): the claim is made again on a new one. Once tasks were
     * handed over it is not (the engine holds them): the error stands. */
    for (attempt = 0;; attempt++) {
        rc = claim_once(q, kind, depth, stage, limit, lease_ms, lease, row, ctx, err,
                        &delivered);
        if (rc >= 0 || delivered || attempt == 2 || !conn_lost(q))
            break;
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

int tm__lease_q_left(struct tm__lease_q *q, int kind, int depth, const char *stage,
                     struct tm__buf *err)
{
    struct tm__stmt *st = q->st[kind == TM_TASKS_COPY    ? Q_LEFT_COPY
                               : kind == TM_TASKS_LINKS ? Q_LEFT_LINKS
                               : kind == TM_TASKS_ATTRS ? Q_LEFT_ATTRS
                                                        : Q_LEFT_VERIFY];
    int rc;
    pthread_mutex_lock(&q->mu);
    if (kind == TM_TASKS_ATTRS || kind == TM_TASKS_VERIFY)
        tm__db_bind_text(st, 1, stage, -1, SQLITE_STATIC);
    else
        tm__db_bind_int(st, 1, depth);
    rc = tm__db_step(st);
    tm__db_reset(st);
    if (rc == SQLITE_ROW)
        rc = 1;
    else if (rc == SQLITE_DONE)
        rc = 0;
    else
        rc = fail(q, rc, err, "look for tasks left");
    pthread_mutex_unlock(&q->mu);
    return rc;
}

int tm__lease_q_renew(struct tm__lease_q *q, int lease_ms, struct tm__buf *err)
{
    struct tm__stmt *st = q->st[Q_MINE];
    int64_t *ids = NULL;
    size_t n = 0, cap = 0, i;
    int rc;
    pthread_mutex_lock(&q->mu);
    /* each lease in a statement of its own, outside any transaction: one
     * that waits for the writer's lock holds no other (no deadlock) */
    tm__db_bind_text(st, 1, q->worker, -1, SQLITE_STATIC);
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            int64_t *p = realloc(ids, nc * sizeof *p);
            if (!p)
                break; /* renewed next time */
            ids = p;
            cap = nc;
        }
        ids[n++] = tm__db_column_int64(st, 0);
    }
    tm__db_reset(st);
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : fail(q, rc, err, "read the leases");
    st = q->st[Q_RENEW];
    for (i = 0; !rc && i < n; i++) {
        tm__db_bind_int64(st, 1, ids[i]);
        tm__db_bind_int64(st, 2, lease_ms);
        rc = tm__db_step(st);
        tm__db_reset(st);
        if ((rc & 0xff) == SQLITE_BUSY)
            rc = SQLITE_DONE; /* held past lock_timeout: renewed next time */
        rc = rc == SQLITE_DONE ? 0 : fail(q, rc, err, "renew the leases");
    }
    free(ids);
    pthread_mutex_unlock(&q->mu);
    return rc;
}

int tm__lease_q_done(struct tm__lease_q *q, int64_t lease, struct tm__buf *err)
{
    struct tm__stmt *st = q->st[Q_DONE];
    int rc;
    pthread_mutex_lock(&q->mu);
    tm__db_bind_int64(st, 1, lease);
    rc = tm__db_step(st);
    tm__db_reset(st);
    rc = rc == SQLITE_DONE ? 0 : fail(q, rc, err, "end a lease");
    pthread_mutex_unlock(&q->mu);
    return rc;
}

int tm__lease_q_exec(struct tm__lease_q *q, const char *sql, struct tm__buf *err)
{
    int rc;
    pthread_mutex_lock(&q->mu);
    rc = tm__db_exec(q->db, sql, NULL, NULL, NULL);
    rc = rc == SQLITE_OK ? 0 : fail(q, rc, err, "set up the lease connection");
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/* A claimed folder, held until the claim is committed. */
struct fclaim {
    struct tm__frow r;   /* the row (path and pos point into mem) */
    char *mem;           /* path, then pos (malloc'd) */
};

static void fclaims_free(struct fclaim *v, int n)
{
    while (n-- > 0)
        free(v[n].mem);
    free(v);
}

/* One attempt of tm__lease_q_claim_folders: the rows in *out (count
 * returned), delivered by the caller. The claim is one statement,
 * committed by itself; a row this process cannot hold (no memory) stays
 * claimed until its lease expires. q->mu held. */
static int claim_folders_once(struct tm__lease_q *q, int side, const char *stage,
                              int lead, int limit, int lease_ms, int64_t *lease,
                              struct fclaim **out, struct tm__buf *err)
{
    struct tm__stmt *st;
    struct fclaim *v = NULL;
    int rc, n = 0;

    *lease = 0;
    *out = NULL;
    v = calloc(limit > 0 ? (size_t)limit : 1, sizeof *v);
    if (!v)
        return TM_ENOMEM;
    st = q->st[Q_CLAIM_SRC_F];
    if (side != 0) {
        int64_t now = tm__now_ns();
        st = q->st[Q_CLAIM_DST_F];
        if (now >= q->dst_full_ns) {
            q->dst_full_ns = now + DST_FULL_MS * 1000000LL;
            st = q->st[Q_CLAIM_DST_FULL];
        }
    }
    tm__db_bind_text(st, 1, q->worker, -1, SQLITE_STATIC);
    tm__db_bind_text(st, 2, stage, -1, SQLITE_STATIC);
    tm__db_bind_int(st, 3, limit);
    tm__db_bind_text(st, 4, q->host, -1, SQLITE_STATIC);
    tm__db_bind_int64(st, 5, q->pid);
    tm__db_bind_text(st, 6, q->key, -1, SQLITE_STATIC);
    tm__db_bind_int64(st, 7, lease_ms);
    if (side == 0) {
        tm__db_bind_int(st, 8, lead);
        tm__db_bind_int(st, 9, q->cur_depth);
        tm__db_bind_int64(st, 10, q->cur_depth < 0 ? 0 : q->cur_id);
    } else if (st == q->st[Q_CLAIM_DST_F]) {
        tm__db_bind_int(st, 8, q->dcur_depth);
        tm__db_bind_int64(st, 9, q->dcur_depth < 0 ? 0 : q->dcur_src);
    }
    while ((rc = tm__db_step(st)) == SQLITE_ROW && n < limit) {
        struct fclaim *c = &v[n];
        const char *path = (const char *)tm__db_column_text(st, 1);
        const char *ts = (const char *)tm__db_column_text(st, 4);
        const void *pos = tm__db_column_blob(st, 5);
        size_t plen = path ? strlen(path) : 0;
        size_t poslen = pos ? (size_t)tm__db_column_bytes(st, 5) : 0;
        c->mem = path ? malloc(plen + 1 + poslen + 1) : NULL;
        if (!c->mem) {
            rc = TM_ENOMEM;
            break;
        }
        memcpy(c->mem, path, plen + 1);
        if (poslen)
            memcpy(c->mem + plen + 1, pos, poslen);
        c->r.id = tm__db_column_int64(st, 0);
        c->r.path = c->mem;
        c->r.depth = tm__db_column_int(st, 2);
        c->r.src_id = tm__db_column_int64(st, 3);
        c->r.twin_failed = ts && strcmp(ts, "failed") == 0;
        c->r.ts = TS_PENDING;
        c->r.pos = pos ? c->mem + plen + 1 : NULL;
        c->r.pos_len = poslen;
        *lease = tm__db_column_int64(st, 6);
        n++;
    }
    tm__db_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        if (rc != TM_ENOMEM)
            rc = fail(q, rc, err, "claim folders");
        fclaims_free(v, n);
        *lease = 0;
        return rc;
    }
    if (st == q->st[Q_CLAIM_DST_F]) { /* past the last folder taken */
        int i;
        for (i = 0; i < n; i++)
            if (v[i].r.depth > q->dcur_depth ||
                (v[i].r.depth == q->dcur_depth && v[i].r.src_id > q->dcur_src)) {
                q->dcur_depth = v[i].r.depth;
                q->dcur_src = v[i].r.src_id;
            }
    }
    *out = v;
    return n;
}

/* 1 when the last failure on q was the connection's (lost, or a
 * transaction cut off with it): the next statement connects again
 * (db_pg.c), so the whole transaction can be made again. */
static int conn_lost(struct tm__lease_q *q)
{
    int code = tm__db_errcode(q->db);
    return (code & 0xff) == SQLITE_IOERR || code == TM__DB_REDO;
}

/* The source's cursor after a claim of n folders v of at most limit: past
 * the last of them when the claim was full, else from the start. q->mu
 * held. */
static void cursor_move(struct tm__lease_q *q, const struct fclaim *v, int n, int limit)
{
    int i;
    q->cur_depth = -1;
    if (n < limit)
        return;
    for (i = 0; i < n; i++)
        if (v[i].r.depth > q->cur_depth ||
            (v[i].r.depth == q->cur_depth && v[i].r.id > q->cur_id)) {
            q->cur_depth = v[i].r.depth;
            q->cur_id = v[i].r.id;
        }
}

int tm__lease_q_claim_folders(struct tm__lease_q *q, int side, const char *stage,
                              int lead, int limit, int lease_ms, int64_t *lease,
                              int (*row)(void *ctx, const struct tm__frow *r),
                              void *ctx, struct tm__buf *err)
{
    struct fclaim *v = NULL;
    int n, i, attempt, cb_rc = 0;

    pthread_mutex_lock(&q->mu);
    /* a connection lost during the claim (a server restarted): the claim
     * is made again on a new one; if the lost COMMIT went through, its
     * folders wait for that lease to expire */
    for (attempt = 0;; attempt++) {
        n = claim_folders_once(q, side, stage, lead, limit, lease_ms, lease, &v, err);
        if (n == 0 && side == 0 && q->cur_depth >= 0) {
            /* nothing past the cursor: from the start, at once */
            q->cur_depth = -1;
            fclaims_free(v, 0);
            v = NULL;
            n = claim_folders_once(q, side, stage, lead, limit, lease_ms, lease, &v,
                                   err);
        }
        if (n >= 0 || n == TM_ENOMEM || attempt == 2 || !conn_lost(q))
            break;
    }
    if (side == 0 && n >= 0)
        cursor_move(q, v, n, limit);
    pthread_mutex_unlock(&q->mu);
    if (n <= 0) {
        fclaims_free(v, 0); /* a claim of nothing still has its array */
        return n;
    }
    for (i = 0; i < n && !cb_rc; i++)
        cb_rc = row(ctx, &v[i].r);
    fclaims_free(v, n);
    return cb_rc ? cb_rc : n; /* on an error the folders' lease expires */
}

int tm__lease_q_ids(struct tm__lease_q *q, int side, int64_t n, int64_t *first,
                    struct tm__buf *err)
{
    struct tm__stmt *st = q->st[side == 0 ? Q_IDS_SRC : Q_IDS_DST];
    int rc;
    int attempt;
    pthread_mutex_lock(&q->mu);
    for (attempt = 0;; attempt++) {
        /* a block taken by a write whose answer was lost is a gap */
        tm__db_bind_int64(st, 1, n);
        rc = tm__db_step(st);
        if (rc == SQLITE_ROW)
            *first = tm__db_column_int64(st, 0);
        tm__db_reset(st);
        if (rc == SQLITE_ROW || attempt == 4 ||
            (!conn_lost(q) && (tm__db_errcode(q->db) & 0xff) != SQLITE_BUSY))
            break;
    }
    rc = rc == SQLITE_ROW ? 0 : fail(q, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, err,
                                     "take a block of node ids");
    pthread_mutex_unlock(&q->mu);
    return rc;
}

int tm__lease_q_drop(struct tm__lease_q *q, int64_t lease, struct tm__buf *err)
{
    struct tm__stmt *st = q->st[Q_DROP];
    int rc;
    pthread_mutex_lock(&q->mu);
    tm__db_bind_int64(st, 1, lease);
    rc = tm__db_step(st);
    tm__db_reset(st);
    rc = rc == SQLITE_DONE ? 0 : fail(q, rc, err, "drop a lease");
    pthread_mutex_unlock(&q->mu);
    return rc;
}
