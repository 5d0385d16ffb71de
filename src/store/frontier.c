/*
 * frontier.c - the discovery's reads of the state file (frontier.h).
 * Threads: see frontier.h.
 */
#include "store/frontier.h"

#include "adapter/adapter.h"
#include "store/store.h"
#include "treemig.h"

#include "store/db.h"
#include <stdlib.h>
#include <string.h>

enum { F_ROWS_SRC, F_ROWS_DST, F_LOW_SRC, F_LOW_DST, F_TWIN, F_PEND_SRC,
       F_PEND_DST, F_PASS_SRC, F_PASS_DST, F_LEFT_SRC, F_LEFT_DST, F_BELOW_SRC,
       F_BELOW_DST, F_PAIR_SRC, F_PAIR_DST, F_ANY_SRC, F_ANY_DST, F_MAXD_SRC,
       F_MAXD_DST, F_COUNT };

/* A pass's frontier of a depth (tm__frontier_set_pass): every folder of
 * the depth that may be listed (pending, or listed or failed in an
 * earlier pass) whose parent's listing in this pass succeeded, in id
 * order by the index (depth, id) of the folders (schema version 12). The
 * parents' depth is listed whole before (discover.c), so a parent's
 * status is this pass's. */
#define PASS_LISTABLE "traversal_status IN ('pending','successful','failed')"
/* the terms of the index *_nodes_folders (store.c): only a query that
 * holds them uses it */
#define PASS_FOLDERS(n) n ".type='folder' AND " n ".depth >= 0"
#define PASS_PARENT_OK(t, n) "(" n ".parent_id IS NULL OR (SELECT p.traversal_status " \
    "FROM " t " p WHERE p.id=" n ".parent_id)='successful')"


/* The pending folders of a depth after a cursor: a range of the index
 * *_nodes_folders (depth, id), whose rows past the cursor are nearly all
 * pending (no index names traversal_status: store.c, HOT_STATUS_SQL). */
#define PENDING(n) n ".traversal_status='pending' AND " PASS_FOLDERS(n)

static const char *const frontier_sql[F_COUNT] = {
    "SELECT n.id, n.path, 0, NULL, p.pos FROM src_nodes n "
    "LEFT JOIN listing_pos p ON p.side=0 AND p.folder_id=n.id "
    "WHERE " PENDING("n") " AND n.depth=?1 "
    "AND n.id>?2 ORDER BY n.id LIMIT ?3",
    "SELECT d.id, d.path, d.src_id, s.traversal_status, p.pos FROM dst_nodes d "
    "LEFT JOIN src_nodes s ON s.id=d.src_id "
    "LEFT JOIN listing_pos p ON p.side=1 AND p.folder_id=d.id "
    "WHERE " PENDING("d") " AND d.depth=?1 "
    "AND d.id>?2 ORDER BY d.id LIMIT ?3",
    /* the lowest depth that has pending folders, by the stats (the
     * writer's transaction keeps them with the rows; summed: leased,
     * several processes add to them) */
    "SELECT depth FROM src_stats WHERE traversal_status='pending' AND "
    "type='folder' GROUP BY depth HAVING sum(count) > 0 ORDER BY depth LIMIT 1",
    "SELECT depth FROM dst_stats WHERE traversal_status='pending' AND "
    "type='folder' GROUP BY depth HAVING sum(count) > 0 ORDER BY depth LIMIT 1",
    "SELECT traversal_status FROM src_nodes WHERE id=?",
    "SELECT coalesce(sum(count), 0) FROM src_stats "
    "WHERE traversal_status = 'pending'",
    "SELECT coalesce(sum(count), 0) FROM dst_stats "
    "WHERE traversal_status = 'pending'",
    "SELECT n.id, n.path, 0, NULL, NULL, n.traversal_status FROM src_nodes n "
    "WHERE " PASS_FOLDERS("n") " AND n.depth=?1 AND n.id>?2 AND n." PASS_LISTABLE
    " AND " PASS_PARENT_OK("src_nodes", "n") " ORDER BY n.id LIMIT ?3",
    "SELECT d.id, d.path, d.src_id, s.traversal_status, NULL, d.traversal_status "
    "FROM dst_nodes d LEFT JOIN src_nodes s ON s.id=d.src_id "
    "WHERE " PASS_FOLDERS("d") " AND d.depth=?1 AND d.id>?2 AND d." PASS_LISTABLE
    " AND " PASS_PARENT_OK("dst_nodes", "d") " ORDER BY d.id LIMIT ?3",
    /* a pass's progress: the folders that may be listed from a depth on
     * (the stats), and those of a depth below a watermark */
    "SELECT coalesce(sum(count), 0) FROM src_stats WHERE type = 'folder' AND "
    "depth >= ?1 AND " PASS_LISTABLE,
    "SELECT coalesce(sum(count), 0) FROM dst_stats WHERE type = 'folder' AND "
    "depth >= ?1 AND " PASS_LISTABLE,
    "SELECT count(*) FROM src_nodes n WHERE " PASS_FOLDERS("n") " AND depth = ?1 "
    "AND id < ?2 AND " PASS_LISTABLE,
    "SELECT count(*) FROM dst_nodes n WHERE " PASS_FOLDERS("n") " AND depth = ?1 "
    "AND id < ?2 AND " PASS_LISTABLE,
    /* pair listings (tm__frontier_set_pair): the source says which
     * folders have a destination twin (the comparison's verdict is in
     * their row: a twin folder makes it already_existed, or pending with
     * the conflict attrs), which the destination lists in pairs; the
     * destination reads where its twin's listing stopped, if it did */
    "SELECT n.id, n.path, 0, NULL, p.pos, CASE WHEN n.copy_status="
    "'already_existed' OR n.conflict='attrs' THEN 1 ELSE 0 END FROM src_nodes n "
    "LEFT JOIN listing_pos p ON p.side=0 AND p.folder_id=n.id "
    "WHERE " PENDING("n") " AND n.depth=?1 "
    "AND n.id>?2 ORDER BY n.id LIMIT ?3",
    "SELECT d.id, d.path, d.src_id, s.traversal_status, p.pos, NULL, q.pos "
    "FROM dst_nodes d LEFT JOIN src_nodes s ON s.id=d.src_id "
    "LEFT JOIN listing_pos p ON p.side=1 AND p.folder_id=d.id "
    "LEFT JOIN listing_pos q ON q.side=0 AND q.folder_id=d.src_id "
    "WHERE " PENDING("d") " AND d.depth=?1 "
    "AND d.id>?2 ORDER BY d.id LIMIT ?3",
    /* a pending folder of a depth past a cursor, and the deepest folder
     * (tm__frontier_pending_past) */
    "SELECT n.depth FROM src_nodes n WHERE " PENDING("n")
    " AND n.depth=?1 AND n.id>?2 LIMIT 1",
    "SELECT n.depth FROM dst_nodes n WHERE " PENDING("n")
    " AND n.depth=?1 AND n.id>?2 LIMIT 1",
    "SELECT max(n.depth) FROM src_nodes n WHERE " PASS_FOLDERS("n"),
    "SELECT max(n.depth) FROM dst_nodes n WHERE " PASS_FOLDERS("n"),
};

struct tm__frontier {
    struct tm__db *db;               /* read-only connection */
    int pass;                        /* rows are a pass's (F_PASS_*) */
    int pair;                        /* rows are for pair listings
                                        (F_PAIR_*) */
    struct tm__stmt *st[F_COUNT]; /* the statements above */
    struct tm__buf err;        /* the last failure */
};

struct tm__twins {
    struct tm__db *db;               /* read-only connection */
    struct tm__stmt *scan;        /* source children by (parent, name >= from) */
    int open;                  /* scan is stepping (holds a read transaction) */
};

int tm__frontier_open(struct tm__frontier **out, const char *db_path,
                      struct tm__buf *err)
{
    struct tm__frontier *f = calloc(1, sizeof *f);
    int i, rc;
    *out = NULL;
    if (!f)
        return TM_ENOMEM;
    tm__buf_init(&f->err);
    rc = tm__store_open_reader(db_path, &f->db, err);
    for (i = 0; !rc && i < F_COUNT; i++)
        if (tm__db_prepare_v3(f->db, frontier_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &f->st[i], NULL) != SQLITE_OK)
            rc = tm__store_error(f->db, SQLITE_ERROR, err, "prepare");
    if (rc) {
        tm__frontier_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void tm__frontier_close(struct tm__frontier *f)
{
    int i;
    if (!f)
        return;
    for (i = 0; i < F_COUNT; i++)
        tm__db_finalize(f->st[i]);
    if (f->db)
        tm__db_close(f->db);
    tm__buf_release(&f->err);
    free(f);
}

const char *tm__frontier_errmsg(struct tm__frontier *f)
{
    return f->err.buf;
}

int tm__frontier_rows(struct tm__frontier *f, int side, int depth, int64_t after,
                      int limit, int (*cb)(void *ctx, const struct tm__frow *r),
                      void *ctx)
{
    struct tm__stmt *st = f->st[f->pass ? (side == TM_SRC ? F_PASS_SRC : F_PASS_DST)
                                : f->pair ? (side == TM_SRC ? F_PAIR_SRC : F_PAIR_DST)
                                          : (side == TM_SRC ? F_ROWS_SRC : F_ROWS_DST)];
    int rc, err = 0;
    tm__db_bind_int(st, 1, depth);
    tm__db_bind_int64(st, 2, after);
    tm__db_bind_int(st, 3, limit);
    while (!err && (rc = tm__db_step(st)) == SQLITE_ROW) {
        struct tm__frow r;
        const char *ts = (const char *)tm__db_column_text(st, 3);
        r.id = tm__db_column_int64(st, 0);
        r.path = (const char *)tm__db_column_text(st, 1);
        r.src_id = tm__db_column_int64(st, 2);
        r.twin_pending = ts && strcmp(ts, "pending") == 0;
        r.twin_failed = ts && strcmp(ts, "failed") == 0;
        r.pos = tm__db_column_blob(st, 4);
        r.pos_len = r.pos ? (size_t)tm__db_column_bytes(st, 4) : 0;
        r.twin_pos = NULL;
        r.twin_pos_len = 0;
        r.has_twin = f->pair && !f->pass && side == TM_SRC &&
                     tm__db_column_int64(st, 5) != 0;
        if (f->pair && !f->pass && side == TM_DST &&
            (r.twin_pos = tm__db_column_blob(st, 6)) != NULL)
            r.twin_pos_len = (size_t)tm__db_column_bytes(st, 6);
        r.ts = TS_PENDING;
        if (f->pass) {
            const char *own = (const char *)tm__db_column_text(st, 5);
            r.ts = own ? tm__name_index(tm__ts_names, TS_COUNT, own) : -1;
            r.twin_pending = 0; /* the engine knows: discover.c */
            if (r.ts < 0) {
                err = tm__store_error(f->db, SQLITE_CORRUPT, &f->err,
                                      "read frontier");
                break;
            }
        }
        if (!r.path) {
            err = TM_ENOMEM;
            break;
        }
        err = cb(ctx, &r);
    }
    if (!err && rc != SQLITE_DONE)
        err = tm__store_error(f->db, rc, &f->err, "read frontier");
    tm__db_reset(st);
    return err;
}

/* Steps a statement that yields one integer: 1 with *v, 0 when no row. */
static int one_int(struct tm__frontier *f, struct tm__stmt *st, int64_t *v)
{
    int rc = tm__db_step(st), out = 0;
    if (rc == SQLITE_ROW) {
        *v = tm__db_column_int64(st, 0);
        out = 1;
    } else if (rc != SQLITE_DONE) {
        out = tm__store_error(f->db, rc, &f->err, "read frontier");
    }
    tm__db_reset(st);
    return out;
}

void tm__frontier_set_pass(struct tm__frontier *f)
{
    f->pass = 1;
}

void tm__frontier_set_pair(struct tm__frontier *f, int on)
{
    f->pair = on;
}

int tm__frontier_lowest(struct tm__frontier *f, int side, int *depth)
{
    int64_t v = -1;
    int rc = one_int(f, f->st[side == TM_SRC ? F_LOW_SRC : F_LOW_DST], &v);
    *depth = rc == 1 ? (int)v : -1;
    return rc < 0 ? rc : 0;
}

int tm__frontier_pending_past(struct tm__frontier *f, int side, const int64_t *cursor,
                              int ncursor, int *depth)
{
    struct tm__stmt *any = f->st[side == TM_SRC ? F_ANY_SRC : F_ANY_DST];
    int64_t v = -1, maxd;
    int rc = one_int(f, f->st[side == TM_SRC ? F_MAXD_SRC : F_MAXD_DST], &v), d;
    *depth = -1;
    if (rc <= 0)
        return rc; /* no folder (max() of none is NULL: 0 too) */
    maxd = v;
    for (d = 0; d <= maxd && *depth < 0; d++) {
        tm__db_bind_int(any, 1, d);
        tm__db_bind_int64(any, 2, d < ncursor ? cursor[d] : 0);
        rc = one_int(f, any, &v);
        if (rc < 0)
            return rc;
        if (rc == 1)
            *depth = d;
    }
    return 0;
}

int tm__frontier_pending(struct tm__frontier *f, int side, int64_t *n)
{
    int rc = one_int(f, f->st[side == TM_SRC ? F_PEND_SRC : F_PEND_DST], n);
    if (rc == 0)
        *n = 0;
    return rc < 0 ? rc : 0;
}

int tm__frontier_pass_count(struct tm__frontier *f, int side, int depth, int64_t below,
                            int64_t *n)
{
    struct tm__stmt *st;
    int rc;
    if (below >= 0) {
        st = f->st[side == TM_SRC ? F_BELOW_SRC : F_BELOW_DST];
        tm__db_bind_int64(st, 2, below);
    } else {
        st = f->st[side == TM_SRC ? F_LEFT_SRC : F_LEFT_DST];
    }
    tm__db_bind_int(st, 1, depth);
    rc = one_int(f, st, n);
    if (rc == 0)
        *n = 0;
    return rc < 0 ? rc : 0;
}

int tm__frontier_twin_done(struct tm__frontier *f, int64_t id, int *done,
                           int *failed)
{
    struct tm__stmt *st = f->st[F_TWIN];
    int rc;
    *done = *failed = 0;
    tm__db_bind_int64(st, 1, id);
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        const char *ts = (const char *)tm__db_column_text(st, 0);
        *done = ts && strcmp(ts, "pending") != 0;
        *failed = ts && strcmp(ts, "failed") == 0;
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = 0; /* no such row: never done (it cannot be: a twin exists) */
    } else {
        rc = tm__store_error(f->db, rc, &f->err, "read frontier");
    }
    tm__db_reset(st);
    return rc;
}

int tm__twins_open(struct tm__twins **out, const char *db_path,
                   struct tm__buf *err)
{
    struct tm__twins *t = calloc(1, sizeof *t);
    int rc;
    *out = NULL;
    if (!t)
        return TM_ENOMEM;
    rc = tm__store_open_reader(db_path, &t->db, err);
    /* the unique index (parent_id, name) serves the range in name order:
     * no sort */
    if (!rc && tm__db_prepare_v3(t->db,
                                  "SELECT name, id, type, size, mtime, "
                                  "traversal_status, copy_status, conflict, mode, "
                                  "uid, gid, xattrs FROM src_nodes "
                                  "WHERE parent_id=?1 AND name>=?2 ORDER BY name",
                                  -1, SQLITE_PREPARE_PERSISTENT, &t->scan,
                                  NULL) != SQLITE_OK)
        rc = tm__store_error(t->db, SQLITE_ERROR, err, "prepare");
    if (rc) {
        tm__twins_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tm__twins_close(struct tm__twins *t)
{
    if (!t)
        return;
    tm__db_finalize(t->scan);
    if (t->db)
        tm__db_close(t->db);
    free(t);
}

int tm__twins_scan(struct tm__twins *t, int64_t parent, const char *from,
                   size_t len)
{
    struct tm__stmt *st = t->scan;
    tm__twins_end(t);
    tm__db_bind_int64(st, 1, parent);
    tm__db_bind_text(st, 2, from, (int)len, SQLITE_TRANSIENT);
    t->open = 1;
    return 0;
}

int tm__twins_next(struct tm__twins *t, const char **name, size_t *len)
{
    struct tm__stmt *st = t->scan;
    int rc;
    if (!t->open)
        return 0;
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        *name = (const char *)tm__db_column_text(st, 0);
        *len = (size_t)tm__db_column_bytes(st, 0);
        return *name ? 1 : TM_ENOMEM;
    }
    tm__twins_end(t);
    return rc == SQLITE_DONE ? 0 : tm__store_error(t->db, rc, NULL, "read source rows");
}

int tm__twins_row(struct tm__twins *t, struct tm__twin *out)
{
    struct tm__stmt *st = t->scan;
    const char *cf;
    out->id = tm__db_column_int64(st, 1);
    out->type = tm__name_index(tm__type_names, TM_T_COUNT,
                               (const char *)tm__db_column_text(st, 2));
    out->size = tm__db_column_int64(st, 3);
    out->mtime = tm__db_column_int64(st, 4);
    out->ts = tm__name_index(tm__ts_names, TS_COUNT,
                             (const char *)tm__db_column_text(st, 5));
    out->cs = tm__name_index(tm__cs_names, CS_COUNT,
                             (const char *)tm__db_column_text(st, 6));
    cf = (const char *)tm__db_column_text(st, 7);
    out->cf = cf ? tm__name_index(tm__cf_names, CF_COUNT, cf) : CF_NONE;
    out->mode = (uint32_t)tm__db_column_int64(st, 8);
    out->owned = tm__db_column_type(st, 9) != SQLITE_NULL &&
                 tm__db_column_type(st, 10) != SQLITE_NULL;
    out->uid = tm__db_column_int64(st, 9);
    out->gid = tm__db_column_int64(st, 10);
    out->xattrs = (uint64_t)tm__db_column_int64(st, 11);
    return out->type < 0 || out->ts < 0 || out->cs < 0 || out->cf < 0 ? TM_ECORRUPT : 0;
}

void tm__twins_end(struct tm__twins *t)
{
    if (t->open)
        tm__db_reset(t->scan);
    t->open = 0;
}

int tm__store_next_ids(struct tm__db *db, int64_t next_id[2], struct tm__buf *err)
{
    static const char *const max_sql[2] = {
        "SELECT coalesce(max(id),0)+1 FROM src_nodes",
        "SELECT coalesce(max(id),0)+1 FROM dst_nodes",
    };
    int side;
    for (side = 0; side < 2; side++) {
        struct tm__stmt *st;
        int rc = tm__db_prepare(db, max_sql[side], -1, &st, NULL);
        if (rc != SQLITE_OK)
            return tm__store_error(db, rc, err, "read ids");
        rc = tm__db_step(st);
        next_id[side] = rc == SQLITE_ROW ? tm__db_column_int64(st, 0) : 1;
        tm__db_finalize(st);
        if (rc != SQLITE_ROW)
            return tm__store_error(db, rc, err, "read ids");
    }
    return 0;
}
