/*
 * status_q.c - the SQL of what a state file says about its migration
 * (status_q.h): task errors, sums of the stats tables, failed roots, the
 * observer's last snapshots. Read only; caller's thread, on any
 * connection to the state file.
 */
#include "store/status_q.h"

#include "store/store.h"

#include <stdio.h>
#include <string.h>

int tm__q_task_errors(sqlite3 *db, const char *phase,
                      void (*row)(void *ctx, const char *path, const char *msg),
                      void *ctx, struct tm__buf *err)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "SELECT path, message FROM task_errors "
                                "WHERE phase = ? ORDER BY id", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, err, "read task errors");
    sqlite3_bind_text(st, 1, phase, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(st, 0);
        const char *msg = (const char *)sqlite3_column_text(st, 1);
        row(ctx, path ? path : "", msg ? msg : "");
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "read task errors");
}

int tm__q_stats_sums(sqlite3 *db, int table,
                     void (*row)(void *ctx, const char *type, const char *status,
                                 int64_t count, int64_t bytes, int conflict),
                     void *ctx, struct tm__buf *err)
{
    static const char *const sql[3] = {
        "SELECT type, traversal_status, sum(count), sum(bytes) FROM src_stats "
        "WHERE depth > 0 GROUP BY 1, 2",
        "SELECT type, traversal_status, sum(count), sum(bytes) FROM dst_stats "
        "WHERE depth > 0 GROUP BY 1, 2",
        "SELECT type, copy_status, sum(count), sum(bytes), conflict FROM "
        "copy_stats WHERE depth > 0 GROUP BY 1, 2, 5",
    };
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(db, sql[table], -1, &s, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, err, "read status");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        row(ctx, (const char *)sqlite3_column_text(s, 0),
            (const char *)sqlite3_column_text(s, 1), sqlite3_column_int64(s, 2),
            sqlite3_column_int64(s, 3), table == 2 ? sqlite3_column_int(s, 4) : 0);
    if (rc == SQLITE_DONE)
        rc = 0;
    else
        rc = tm__store_error(db, rc, err, "read status");
    sqlite3_finalize(s);
    return rc;
}

int tm__q_root_failed(sqlite3 *db, int side, int64_t *n)
{
    static const char *const sql[2] = {
        "SELECT coalesce(sum(count), 0) FROM src_stats WHERE depth = 0 AND "
        "traversal_status = 'failed'",
        "SELECT coalesce(sum(count), 0) FROM dst_stats WHERE depth = 0 AND "
        "traversal_status = 'failed'",
    };
    sqlite3_stmt *q;
    int rc = sqlite3_prepare_v2(db, sql[side], -1, &q, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, NULL, "read status");
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        *n += sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return rc == SQLITE_ROW ? 0 : tm__store_error(db, rc, NULL, "read status");
}

void tm__q_snapshots(sqlite3 *db, tm_queue_snapshot *out, int max, int *n)
{
    sqlite3_stmt *q;
    *n = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT queue, time, round, pending, in_flight, done, "
                           "failed, bytes_done, bytes_pending, items_per_s, "
                           "bytes_per_s FROM queue_stats WHERE id IN (SELECT "
                           "max(id) FROM queue_stats GROUP BY queue) ORDER BY queue",
                           -1, &q, NULL) != SQLITE_OK)
        return; /* an older state file without the columns: no snapshots */
    while (sqlite3_step(q) == SQLITE_ROW && *n < max) {
        tm_queue_snapshot *x = &out[(*n)++];
        snprintf(x->queue, sizeof x->queue, "%s",
                 (const char *)sqlite3_column_text(q, 0));
        x->time = sqlite3_column_int64(q, 1);
        x->round = sqlite3_column_int64(q, 2);
        x->pending = sqlite3_column_int64(q, 3);
        x->in_flight = sqlite3_column_int64(q, 4);
        x->done = sqlite3_column_int64(q, 5);
        x->failed = sqlite3_column_int64(q, 6);
        x->bytes_done = sqlite3_column_int64(q, 7);
        x->bytes_pending = sqlite3_column_int64(q, 8);
        x->items_per_s = sqlite3_column_double(q, 9);
        x->bytes_per_s = sqlite3_column_double(q, 10);
    }
    sqlite3_finalize(q);
}
