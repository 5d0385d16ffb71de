/*
 * mirror_q.c - the SQL of the mirror (treemig delete): see mirror_q.h.
 * Runs on the thread of the handle (the CLI's), with its connection.
 */
#include "store/mirror_q.h"

#include "store/store.h"
#include "treemig.h"
#include "util/util.h"

#include <stdio.h>
#include <string.h>

const char *const tm__mirror_state_names[TM_MIRROR_COUNT] = {
    "listed", "removed", "kept", "failed"
};

static int prep(struct tm__db *db, const char *sql, struct tm__stmt **st,
                struct tm__buf *err)
{
    int rc = tm__db_prepare(db, sql, -1, st, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, err, "read the state file");
    return 0;
}

/* Fills r from the columns id, path, type, size, mtime, mode, depth. */
static int row_from(struct tm__stmt *st, struct tm__mirror_row *r)
{
    const char *type = (const char *)tm__db_column_text(st, 2);
    int t = tm__name_index(tm__type_names, TM_T_COUNT, type);
    r->id = tm__db_column_int64(st, 0);
    tm__buf_reset(&r->path);
    if (tm__buf_add(&r->path, tm__db_column_text(st, 1),
                    (size_t)tm__db_column_bytes(st, 1)))
        return TM_ENOMEM;
    memset(&r->e, 0, sizeof r->e);
    r->e.type = t < 0 ? TM_T_OTHER : t;
    r->e.size = tm__db_column_int64(st, 3);
    r->e.mtime = tm__db_column_int64(st, 4);
    r->e.mode = (uint32_t)tm__db_column_int64(st, 5);
    r->depth = tm__db_column_int(st, 6);
    r->parent_id = tm__db_column_int64(st, 7);
    return t < 0 ? TM_ECORRUPT : 0;
}

#define ROW_COLS "id, path, type, size, mtime, mode, depth, parent_id"

int tm__q_mirror_next_folder(struct tm__db *db, int64_t after,
                             struct tm__mirror_row *out, int *found,
                             struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc;
    *found = 0;
    rc = prep(db, "SELECT " ROW_COLS " FROM dst_nodes AS n WHERE id > ?1 AND "
              "traversal_status = 'not_on_src' AND type = 'folder' AND NOT "
              "EXISTS (SELECT 1 FROM mirror AS m WHERE m.dst_id = n.id) "
              "ORDER BY id LIMIT 1", &st, err);
    if (rc)
        return rc;
    tm__db_bind_int64(st, 1, after);
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        rc = row_from(st, out);
        *found = !rc;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = tm__store_error(db, rc, err, "read the destination-only folders");
    }
    tm__db_finalize(st);
    return rc;
}

/* Inserts or replaces the mirror row of r. */
static int put_state(struct tm__db *db, const struct tm__mirror_row *r, int state,
                     const char *why, struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc = prep(db, "INSERT OR REPLACE INTO mirror(dst_id, path, type, state, "
                  "error, time, parent_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                  &st, err);
    if (rc)
        return rc;
    tm__db_bind_int64(st, 1, r->id);
    tm__db_bind_text(st, 2, r->path.buf, (int)r->path.len, SQLITE_STATIC);
    tm__db_bind_text(st, 3, tm__type_names[r->e.type], -1, SQLITE_STATIC);
    tm__db_bind_text(st, 4, tm__mirror_state_names[state], -1, SQLITE_STATIC);
    if (why)
        tm__db_bind_text(st, 5, why, -1, SQLITE_STATIC);
    else
        tm__db_bind_null(st, 5);
    tm__db_bind_int64(st, 6, tm__wall_ns());
    tm__db_bind_int64(st, 7, r->parent_id);
    rc = tm__db_step(st);
    rc = rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "record the mirror");
    tm__db_finalize(st);
    return rc;
}

int tm__q_mirror_record_listing(struct tm__db *db, const struct tm__mirror_row *f,
                                const struct tm__entry *kids, size_t n,
                                struct tm__buf *err)
{
    struct tm__stats_delta d = TM__STATS_DELTA_INIT;
    struct tm__buf path = TM__BUF_INIT;
    struct tm__stmt *st = NULL;
    size_t i;
    int rc = tm__store_begin(db, err);
    if (rc)
        return rc;
    /* the id is given, as the writer gives its own: on PostgreSQL an
     * identity column's sequence never moved past the writer's ids */
    rc = prep(db, "INSERT INTO dst_nodes(id, parent_id, path, name, type, size, "
              "mtime, mode, depth, traversal_status, attempts, src_id, uid, gid) "
              "VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM dst_nodes), ?1, ?2, "
              "?3, ?4, ?5, ?6, ?7, ?8, 'not_on_src', 0, NULL, ?9, ?10)",
              &st, err);
    for (i = 0; !rc && i < n; i++) {
        const struct tm__entry *k = &kids[i];
        struct tm__stat_key key = { 1, f->depth + 1, k->type, TS_NOT_ON_SRC, 0 };
        tm__buf_reset(&path);
        if ((f->path.len > 1 && tm__buf_add(&path, f->path.buf, f->path.len)) ||
            tm__buf_addch(&path, '/') || tm__buf_add(&path, k->name, k->name_len)) {
            rc = TM_ENOMEM;
            break;
        }
        tm__db_reset(st);
        tm__db_bind_int64(st, 1, f->id);
        tm__db_bind_text(st, 2, path.buf, (int)path.len, SQLITE_STATIC);
        tm__db_bind_text(st, 3, k->name, (int)k->name_len, SQLITE_STATIC);
        tm__db_bind_text(st, 4, tm__type_names[k->type], -1, SQLITE_STATIC);
        tm__db_bind_int64(st, 5, k->size);
        tm__db_bind_int64(st, 6, k->mtime);
        tm__db_bind_int64(st, 7, k->mode);
        tm__db_bind_int(st, 8, f->depth + 1);
        tm__db_bind_int64(st, 9, k->uid);
        tm__db_bind_int64(st, 10, k->gid);
        rc = tm__db_step(st);
        rc = rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "record a "
                                                     "destination-only node");
        if (!rc)
            rc = tm__stats_add(&d, &key, 1, k->size);
    }
    if (!rc)
        rc = tm__stats_apply(db, &d);
    if (!rc)
        rc = put_state(db, f, TM_MIRROR_LISTED, NULL, err);
    tm__db_finalize(st);
    tm__stats_release(&d);
    tm__buf_release(&path);
    if (!rc)
        rc = tm__store_commit(db, err);
    if (rc)
        tm__store_rollback(db);
    return rc;
}

int tm__q_mirror_keep(struct tm__db *db, const struct tm__mirror_row *r,
                      const char *why, struct tm__buf *err)
{
    return put_state(db, r, TM_MIRROR_KEPT, why, err);
}

/* 1 for a folder, else 0, as an integer on both databases (PostgreSQL
 * does not compare a boolean with a number) */
#define IS_FOLDER "(CASE WHEN type = 'folder' THEN 1 ELSE 0 END)"

int tm__q_mirror_batch(struct tm__db *db, const struct tm__mirror_pos *pos,
                       struct tm__mirror_row *rows, size_t max, size_t *n,
                       struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc;
    *n = 0;
    rc = prep(db, "SELECT " ROW_COLS " FROM dst_nodes AS n WHERE "
              "traversal_status = 'not_on_src' AND depth > 0 AND (?1 < 0 OR "
              "depth < ?1 OR (depth = ?1 AND (" IS_FOLDER " > ?2 OR "
              "(" IS_FOLDER " = ?2 AND id > ?3)))) AND NOT EXISTS (SELECT 1 "
              "FROM mirror AS m WHERE m.dst_id = n.id AND m.state IN ('removed', "
              "'kept')) ORDER BY depth DESC, " IS_FOLDER ", id LIMIT ?4",
              &st, err);
    if (rc)
        return rc;
    tm__db_bind_int(st, 1, pos->depth);
    tm__db_bind_int(st, 2, pos->folder);
    tm__db_bind_int64(st, 3, pos->id);
    tm__db_bind_int64(st, 4, (int64_t)max);
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        rc = row_from(st, &rows[*n]);
        if (rc)
            break;
        (*n)++;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = tm__store_error(db, rc, err, "read the destination-only nodes");
    tm__db_finalize(st);
    return rc;
}

int tm__q_mirror_record(struct tm__db *db, const struct tm__mirror_done *d, size_t n,
                        struct tm__buf *err)
{
    struct tm__stats_delta sd = TM__STATS_DELTA_INIT;
    struct tm__stmt *del = NULL;
    size_t i;
    int rc = tm__store_begin(db, err);
    if (rc)
        return rc;
    rc = prep(db, "DELETE FROM dst_nodes WHERE id = ?1 AND traversal_status = "
              "'not_on_src'", &del, err);
    for (i = 0; !rc && i < n; i++) {
        const struct tm__mirror_row *r = d[i].row;
        if (d[i].state == TM_MIRROR_REMOVED) {
            struct tm__stat_key key = { 1, r->depth, r->e.type, TS_NOT_ON_SRC, 0 };
            tm__db_reset(del);
            tm__db_bind_int64(del, 1, r->id);
            rc = tm__db_step(del);
            rc = rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "record a "
                                                         "removal");
            if (!rc && tm__db_changes(db) == 1)
                rc = tm__stats_add(&sd, &key, -1, -r->e.size);
        }
        if (!rc)
            rc = put_state(db, r, d[i].state, d[i].error, err);
    }
    if (!rc)
        rc = tm__stats_apply(db, &sd);
    tm__db_finalize(del);
    tm__stats_release(&sd);
    if (!rc)
        rc = tm__store_commit(db, err);
    if (rc)
        tm__store_rollback(db);
    return rc;
}

int tm__q_mirror_counts(struct tm__db *db, struct tm__mirror_counts *out,
                        struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc;
    memset(out, 0, sizeof *out);
    rc = prep(db, "SELECT type = 'folder', count(*), coalesce(sum(size), 0) FROM "
              "dst_nodes AS n WHERE traversal_status = 'not_on_src' AND depth > 0 "
              "AND NOT EXISTS (SELECT 1 FROM mirror AS m WHERE m.dst_id = n.id AND "
              "m.state = 'kept') GROUP BY 1", &st, err);
    if (rc)
        return rc;
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        if (tm__db_column_int(st, 0)) {
            out->folders = tm__db_column_int64(st, 1);
        } else {
            out->files = tm__db_column_int64(st, 1);
            out->bytes = tm__db_column_int64(st, 2);
        }
    }
    tm__db_finalize(st);
    if (rc != SQLITE_DONE)
        return tm__store_error(db, rc, err, "count the destination-only nodes");
    rc = prep(db, "SELECT count(CASE WHEN state = 'removed' THEN 1 END), "
              "count(CASE WHEN state = 'kept' THEN 1 END) FROM mirror", &st, err);
    if (rc)
        return rc;
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        out->removed = tm__db_column_int64(st, 0);
        out->kept = tm__db_column_int64(st, 1);
        rc = 0;
    } else {
        rc = tm__store_error(db, rc, err, "count the mirror");
    }
    tm__db_finalize(st);
    return rc;
}

int tm__q_mirror_parents(struct tm__db *db,
                         int (*fn)(void *ctx, const char *path, int64_t mtime),
                         void *ctx, struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc = prep(db, "SELECT d.path, s.mtime FROM dst_nodes AS d JOIN src_nodes "
                  "AS s ON s.id = d.src_id WHERE d.type = 'folder' AND d.depth > 0 "
                  "AND d.id IN (SELECT parent_id FROM mirror WHERE state = "
                  "'removed') ORDER BY d.id", &st, err);
    if (rc)
        return rc;
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        rc = fn(ctx, (const char *)tm__db_column_text(st, 0),
                tm__db_column_int64(st, 1));
        if (rc)
            break;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = tm__store_error(db, rc, err, "read the mirror");
    tm__db_finalize(st);
    return rc;
}

int tm__q_mirror_src_top(struct tm__db *db, const char *name, size_t len, int *found,
                         struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc = prep(db, "SELECT 1 FROM src_nodes WHERE depth = 1 AND name = ?1",
                  &st, err);
    if (rc)
        return rc;
    tm__db_bind_text(st, 1, name, (int)len, SQLITE_STATIC);
    rc = tm__db_step(st);
    *found = rc == SQLITE_ROW;
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0
                                               : tm__store_error(db, rc, err, "read "
                                                                 "the source nodes");
    tm__db_finalize(st);
    return rc;
}

int tm__q_mirror_kept(struct tm__db *db,
                      int (*fn)(void *ctx, const char *path, const char *error),
                      void *ctx, struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc = prep(db, "SELECT path, coalesce(error, '') FROM mirror WHERE "
                  "state IN ('kept', 'failed') ORDER BY path", &st, err);
    if (rc)
        return rc;
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        rc = fn(ctx, (const char *)tm__db_column_text(st, 0),
                (const char *)tm__db_column_text(st, 1));
        if (rc)
            break;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = tm__store_error(db, rc, err, "read the mirror");
    tm__db_finalize(st);
    return rc;
}
