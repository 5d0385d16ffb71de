/*
 * copy_q.c - the SQL of the copy and the verify seen from the handle
 * (copy_q.h): copy runs and their keys, the copy's index, the nodes
 * verify cannot check. Caller's thread, on the handle's connection, while
 * no writer thread runs.
 */
#include "store/copy_q.h"

#include "adapter/adapter.h"
#include "store/store.h"
#include "treemig.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tm__q_copy_runs_prepare(struct tm__db *db, struct tm__buf *err)
{
    return tm__store_exec(db,
                          "CREATE TABLE IF NOT EXISTS copy_runs(key TEXT PRIMARY KEY,"
                          " started TEXT NOT NULL, depth INTEGER, ended TEXT)"
                          " WITHOUT ROWID;"
                          /* the last run's depth, before this run records its own */
                          "UPDATE copy_runs SET depth = (SELECT CAST(value AS INTEGER) "
                          "FROM migration WHERE key = 'copy_run_depth') "
                          "WHERE ended IS NULL AND depth IS NULL;"
                          "DELETE FROM migration WHERE key = 'copy_run_depth';",
                          err);
}

int tm__q_copy_runs_unended(struct tm__db *db,
                            int (*clean)(void *ctx, const char *key, int depth),
                            void *ctx, struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    char now[32];
    int rc = 0, step = SQLITE_DONE;

    if (tm__db_prepare(db, "SELECT key, coalesce(depth, 0) FROM "
                           "copy_runs WHERE ended IS NULL", -1, &st,
                           NULL) != SQLITE_OK)
        return tm__store_error(db, SQLITE_ERROR, err, "read copy runs");
    while (!rc && (step = tm__db_step(st)) == SQLITE_ROW) {
        char *k = strdup((const char *)tm__db_column_text(st, 0));
        rc = k ? clean(ctx, k, tm__db_column_int(st, 1)) : TM_ENOMEM;
        if (!rc) {
            tm__iso_time(now, tm__wall_ns());
            rc = tm__q_copy_run_end(db, k, now, err);
        }
        free(k);
    }
    if (!rc && step != SQLITE_DONE)
        rc = tm__store_error(db, step, err, "read copy runs");
    tm__db_finalize(st);
    return rc;
}

int tm__q_copy_next_depth(struct tm__db *db, int depth, int *next, struct tm__buf *err)
{
    struct tm__stmt *st;
    if (tm__db_prepare(db, "SELECT coalesce(min(depth), -1) FROM copy_stats "
                           "WHERE depth > ?1 AND type IN ('file', 'symlink', 'other') AND "
                           "copy_status = 'pending' AND count > 0", -1, &st,
                           NULL) != SQLITE_OK)
        return tm__store_error(db, SQLITE_ERROR, err, "clean up");
    tm__db_bind_int(st, 1, depth);
    if (tm__db_step(st) == SQLITE_ROW)
        *next = tm__db_column_int(st, 0);
    tm__db_finalize(st);
    return 0;
}

int tm__q_copy_pending_leaves(struct tm__db *db, int d1, int d2,
                              int (*leaf)(void *ctx, const char *path, int type),
                              void *ctx, struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc = 0, step = SQLITE_DONE;
    if (tm__db_prepare(db, "SELECT path, type FROM src_nodes WHERE copy_status = "
                           "'pending' AND depth IN (?1, ?2) AND type IN ('file', "
                           "'symlink', 'other')", -1, &st, NULL) != SQLITE_OK)
        return tm__store_error(db, SQLITE_ERROR, err, "clean up");
    tm__db_bind_int(st, 1, d1);
    tm__db_bind_int(st, 2, d2);
    while (!rc && (step = tm__db_step(st)) == SQLITE_ROW) {
        int type = tm__name_index(tm__type_names, TM_T_COUNT,
                                  (const char *)tm__db_column_text(st, 1));
        rc = leaf(ctx, (const char *)tm__db_column_text(st, 0), type);
    }
    if (!rc && step != SQLITE_DONE)
        rc = tm__store_error(db, step, err, "clean up");
    tm__db_finalize(st);
    return rc;
}

int tm__q_copy_run_record(struct tm__db *db, const char *key, const char *now,
                          struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc, step;
    rc = tm__store_exec(db, "PRAGMA synchronous=FULL", err);
    if (!rc && tm__db_prepare(db, "INSERT INTO copy_runs(key, started) "
                                  "VALUES(?, ?)", -1, &st, NULL) != SQLITE_OK)
        rc = tm__store_error(db, SQLITE_ERROR, err, "record a copy run");
    if (!rc) {
        tm__db_bind_text(st, 1, key, -1, SQLITE_STATIC);
        tm__db_bind_text(st, 2, now, -1, SQLITE_STATIC);
        if ((step = tm__db_step(st)) != SQLITE_DONE)
            rc = tm__store_error(db, step, err, "record a copy run");
    }
    tm__db_finalize(st);
    tm__db_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    return rc;
}

int tm__q_copy_run_end(struct tm__db *db, const char *key, const char *now,
                       struct tm__buf *err)
{
    struct tm__stmt *up;
    int rc = 0;
    if (tm__db_prepare(db, "UPDATE copy_runs SET ended = ? WHERE key = ?",
                           -1, &up, NULL) != SQLITE_OK)
        return tm__store_error(db, SQLITE_ERROR, err, "end a copy run");
    tm__db_bind_text(up, 1, now, -1, SQLITE_STATIC);
    tm__db_bind_text(up, 2, key, -1, SQLITE_STATIC);
    if (tm__db_step(up) != SQLITE_DONE)
        rc = tm__store_error(db, SQLITE_ERROR, err, "end a copy run");
    tm__db_finalize(up);
    return rc;
}

int tm__q_copy_index(struct tm__db *db, struct tm__buf *err)
{
    return tm__store_exec(db,
                          "CREATE INDEX IF NOT EXISTS src_nodes_copy ON "
                          "src_nodes(depth, id) WHERE copy_status = 'pending'",
                          err);
}

int tm__q_verify_clear(struct tm__db *db, struct tm__buf *err)
{
    return tm__store_exec(db, "DELETE FROM task_errors WHERE phase IN ('verify', "
                              "'verify-leftover')", err);
}

int tm__q_verify_dedupe(struct tm__db *db, int64_t *n, struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc = tm__store_exec(db, "DELETE FROM task_errors WHERE phase = 'verify' AND "
                                "id NOT IN (SELECT min(id) FROM task_errors WHERE "
                                "phase = 'verify' GROUP BY node_id, message)", err);
    *n = 0;
    if (rc)
        return rc;
    rc = tm__db_prepare(db, "SELECT count(*) FROM task_errors WHERE phase = 'verify'",
                        -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = tm__db_step(st)) == SQLITE_ROW) {
        *n = tm__db_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    tm__db_finalize(st);
    return rc == SQLITE_OK ? 0 : tm__store_error(db, rc, err, "count verify's findings");
}

int tm__q_verify_unchecked(struct tm__db *db, int64_t now, int64_t *n, struct tm__buf *err)
{
    char sql[4096];
    int rc;
    snprintf(sql, sizeof sql,
             "INSERT INTO task_errors(time, phase, queue, node_id, path, attempts, "
             "message) SELECT %lld, 'verify', 'verify', id, path, 0, CASE "
             "WHEN type = 'folder' AND traversal_status = 'failed' THEN "
             "'not checked: this source folder could not be listed (' || "
             "coalesce(error, 'no reason recorded') || '), so what it holds is "
             "unknown; retry lists it again' "
             "WHEN copy_status = 'failed' THEN 'not checked: its copy failed (' || "
             "coalesce(error, 'no reason recorded') || '); retry copies it again' "
             "WHEN copy_status IN ('pending', 'in_progress') THEN 'not checked: "
             "not copied yet; run copy' "
             "WHEN error LIKE '%%(--update)' THEN 'not checked: the "
             "destination''s newer version was kept (--update)' "
             "ELSE 'not checked: the destination''s version was kept "
             "(--no-overwrite)' END FROM src_nodes WHERE "
             "(type = 'folder' AND traversal_status = 'failed') OR (depth > 0 AND "
             "((copy_status = 'failed' AND coalesce(error, '') NOT LIKE 'verify: %%') "
             "OR copy_status IN ('pending', 'in_progress') OR "
             "(copy_status = 'skipped' AND (error LIKE '%%(--no-overwrite)' OR "
             "error LIKE '%%(--update)'))))",
             (long long)now);
    rc = tm__store_exec(db, sql, err);
    *n = rc ? 0 : tm__db_changes(db);
    return rc;
}

int tm__q_verify_unchecked_again(struct tm__db *db, int64_t now, int64_t *n,
                                 struct tm__buf *err)
{
    char sql[1024];
    int rc;
    snprintf(sql, sizeof sql,
             "INSERT INTO task_errors(time, phase, queue, node_id, path, attempts, "
             "message) SELECT %lld, 'verify', 'verify', id, path, 0, "
             "'not checked: an earlier verify found it different (' || error || "
             "'), and its folder was not checked now; retry copies it again' "
             "FROM src_nodes AS n WHERE copy_status = 'failed' AND error LIKE "
             "'verify: %%' AND NOT EXISTS (SELECT 1 FROM task_errors AS e WHERE "
             "e.phase = 'verify' AND e.node_id = n.id)",
             (long long)now);
    rc = tm__store_exec(db, sql, err);
    if (!rc)
        *n += tm__db_changes(db);
    return rc;
}
