/*
 * retry_q.c - the SQL of tm_retry (retry_q.h): failed counts, rows
 * refreshed from the storages, failed statuses made pending again.
 * Caller's thread, on the handle's connection.
 */
#include "store/retry_q.h"

#include "store/store.h"
#include "treemig.h"

#include <stddef.h>
#include <string.h>

/* Moves every count of a status to another in a stats table, then the rows
 * themselves (in the caller's transaction, so the counts stay exact). */
static int reset_status(struct tm__db *db, const char *table, const char *stats,
                        const char *column, const char *from, const char *to,
                        const char *where, struct tm__buf *err)
{
    struct tm__buf sql = TM__BUF_INIT;
    int rc;
    /* the stats rows of `to` absorb those of `from`, key by key */
    tm__buf_addf(&sql,
                 "INSERT INTO %s SELECT depth, type, '%s'%s, count, bytes FROM %s "
                 "WHERE %s = '%s' AND count > 0 %s ON CONFLICT DO UPDATE SET "
                 "count = count + excluded.count, bytes = bytes + excluded.bytes;"
                 "UPDATE %s SET count = 0, bytes = 0 WHERE %s = '%s' %s;"
                 "UPDATE %s SET %s = '%s', error = NULL WHERE %s = '%s' %s;",
                 stats, to, strcmp(stats, "copy_stats") == 0 ? ", conflict" : "",
                 stats, column, from, where[0] ? "AND type = 'folder'" : "",
                 stats, column, from, where[0] ? "AND type = 'folder'" : "",
                 table, column, to, column, from, where);
    rc = tm__store_exec(db, sql.buf, err);
    tm__buf_release(&sql);
    return rc;
}

static int64_t count_status(struct tm__db *db, const char *stats, const char *column,
                            const char *status, int folders_only)
{
    struct tm__buf sql = TM__BUF_INIT;
    struct tm__stmt *st;
    int64_t n = 0;
    tm__buf_addf(&sql, "SELECT coalesce(sum(count), 0) FROM %s WHERE %s = '%s'%s",
                 stats, column, status, folders_only ? " AND type = 'folder'" : "");
    if (tm__db_prepare(db, sql.buf, -1, &st, NULL) == SQLITE_OK) {
        if (tm__db_step(st) == SQLITE_ROW)
            n = tm__db_column_int64(st, 0);
        tm__db_finalize(st);
    }
    tm__buf_release(&sql);
    return n;
}

int64_t tm__q_count_failed(struct tm__db *db, int table)
{
    switch (table) {
    case 0: return count_status(db, "src_stats", "traversal_status", "failed", 1);
    case 1: return count_status(db, "dst_stats", "traversal_status", "failed", 1);
    default: return count_status(db, "copy_stats", "copy_status", "failed", 0);
    }
}

int tm__q_reset_failed_folders(struct tm__db *db, int side, struct tm__buf *err)
{
    return reset_status(db, side == TM_SRC ? "src_nodes" : "dst_nodes",
                        side == TM_SRC ? "src_stats" : "dst_stats", "traversal_status",
                        "failed", "pending", "AND type = 'folder'", err);
}

int tm__q_reset_failed_copies(struct tm__db *db, struct tm__buf *err)
{
    return reset_status(db, "src_nodes", "copy_stats", "copy_status", "failed",
                        "pending", "", err);
}

int tm__q_refresh_failed_folders(struct tm__db *db, tm__q_stat_fn stat_fn, void *ctx,
                                 struct tm__buf *err)
{
    struct tm__stmt *sel = NULL, *upd = NULL;
    int rc = 0;
    if (tm__db_prepare(db, "SELECT id, path FROM src_nodes WHERE "
                           "traversal_status = 'failed' AND type = 'folder'",
                           -1, &sel, NULL) != SQLITE_OK ||
        tm__db_prepare(db, "UPDATE src_nodes SET mode = ?, mtime = ? "
                           "WHERE id = ?", -1, &upd, NULL) != SQLITE_OK) {
        rc = tm__store_error(db, SQLITE_ERROR, err, "refresh");
        goto out;
    }
    while (tm__db_step(sel) == SQLITE_ROW) {
        struct tm__entry e;
        if (stat_fn(ctx, (const char *)tm__db_column_text(sel, 1), &e) ||
            e.type != TM_T_FOLDER)
            continue; /* the listing will say what is wrong */
        tm__db_bind_int64(upd, 1, e.mode);
        tm__db_bind_int64(upd, 2, e.mtime);
        tm__db_bind_int64(upd, 3, tm__db_column_int64(sel, 0));
        if (tm__db_step(upd) != SQLITE_DONE) {
            rc = tm__store_error(db, SQLITE_ERROR, err, "refresh");
            break;
        }
        tm__db_reset(upd);
    }
out:
    tm__db_finalize(sel);
    tm__db_finalize(upd);
    return rc;
}

int tm__q_refresh_changed_files(struct tm__db *db, tm__q_stat_fn stat_fn, void *ctx,
                                struct tm__buf *err)
{
    struct tm__stats_delta d = TM__STATS_DELTA_INIT;
    struct tm__stmt *sel = NULL, *upd = NULL;
    int rc = 0;
    if (tm__db_prepare(db,
                           "SELECT id, path, depth, size, traversal_status, conflict "
                           "FROM src_nodes WHERE copy_status = 'failed' AND type = "
                           "'file' AND error LIKE '%changed since discovery'",
                           -1, &sel, NULL) != SQLITE_OK ||
        tm__db_prepare(db, "UPDATE src_nodes SET size = ?, mtime = ?, "
                           "mode = ? WHERE id = ?", -1, &upd, NULL) != SQLITE_OK) {
        rc = tm__store_error(db, SQLITE_ERROR, err, "refresh");
        goto out;
    }
    while (!rc && tm__db_step(sel) == SQLITE_ROW) {
        struct tm__entry e;
        int depth = tm__db_column_int(sel, 2);
        int64_t old = tm__db_column_int64(sel, 3);
        int ts = tm__name_index(tm__ts_names, TS_COUNT,
                                (const char *)tm__db_column_text(sel, 4));
        int cf = tm__db_column_type(sel, 5) != SQLITE_NULL;
        struct tm__stat_key ks = { 0, depth, TM_T_FILE, ts, 0 };
        struct tm__stat_key kc = { 2, depth, TM_T_FILE, CS_FAILED, cf };
        if (stat_fn(ctx, (const char *)tm__db_column_text(sel, 1), &e) ||
            e.type != TM_T_FILE || ts < 0)
            continue; /* gone or replaced: the copy will say so again */
        tm__db_bind_int64(upd, 1, e.size);
        tm__db_bind_int64(upd, 2, e.mtime);
        tm__db_bind_int64(upd, 3, e.mode);
        tm__db_bind_int64(upd, 4, tm__db_column_int64(sel, 0));
        if (tm__db_step(upd) != SQLITE_DONE)
            rc = tm__store_error(db, SQLITE_ERROR, err, "refresh");
        tm__db_reset(upd);
        if (!rc)
            rc = tm__stats_add(&d, &ks, 0, e.size - old);
        if (!rc)
            rc = tm__stats_add(&d, &kc, 0, e.size - old);
    }
    if (!rc)
        rc = tm__stats_apply(db, &d);
out:
    tm__stats_release(&d);
    tm__db_finalize(sel);
    tm__db_finalize(upd);
    return rc;
}

int tm__q_refresh_taken(struct tm__db *db,
                        int (*judge)(void *ctx, const char *path, int type,
                                     int64_t size, int64_t mtime),
                        void *ctx, struct tm__buf *err)
{
    struct tm__stats_delta d = TM__STATS_DELTA_INIT;
    struct tm__stmt *sel = NULL, *upd = NULL;
    int rc = 0, step = SQLITE_DONE;
    if (tm__db_prepare(db,
                           "SELECT id, path, depth, type, size, mtime FROM src_nodes "
                           "WHERE copy_status = 'failed' AND conflict IS NULL AND "
                           "type IN ('file', 'symlink') AND error LIKE "
                           "'%made at this name on the destination after discovery%'",
                           -1, &sel, NULL) != SQLITE_OK ||
        tm__db_prepare(db, "UPDATE src_nodes SET conflict = ? WHERE id = ?",
                           -1, &upd, NULL) != SQLITE_OK) {
        rc = tm__store_error(db, SQLITE_ERROR, err, "refresh");
        goto out;
    }
    while (!rc && (step = tm__db_step(sel)) == SQLITE_ROW) {
        int depth = tm__db_column_int(sel, 2), cf;
        int type = tm__name_index(tm__type_names, TM_T_COUNT,
                                  (const char *)tm__db_column_text(sel, 3));
        int64_t size = tm__db_column_int64(sel, 4);
        struct tm__stat_key k = { 2, depth, type, CS_FAILED, 0 };
        if (type < 0)
            continue; /* the copy says so again */
        cf = judge(ctx, (const char *)tm__db_column_text(sel, 1), type, size,
                   tm__db_column_int64(sel, 5));
        if (cf <= CF_NONE || cf >= CF_COUNT)
            continue; /* the same, gone or another type */
        tm__db_bind_text(upd, 1, tm__cf_names[cf], -1, SQLITE_STATIC);
        tm__db_bind_int64(upd, 2, tm__db_column_int64(sel, 0));
        if (tm__db_step(upd) != SQLITE_DONE)
            rc = tm__store_error(db, SQLITE_ERROR, err, "refresh");
        tm__db_reset(upd);
        if (!rc)
            rc = tm__stats_add(&d, &k, -1, -size);
        k.conflict = 1;
        if (!rc)
            rc = tm__stats_add(&d, &k, 1, size);
    }
    if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = tm__store_error(db, step, err, "refresh");
    if (!rc)
        rc = tm__stats_apply(db, &d);
out:
    tm__stats_release(&d);
    tm__db_finalize(sel);
    tm__db_finalize(upd);
    return rc;
}
