/*
 * status_q.c - the SQL of what a state file says about its migration
 * (status_q.h): task errors, sums of the stats tables, failed roots, the
 * observer's last snapshots, the processes at work. Read only; caller's thread, on any
 * connection to the state file.
 */
#include "store/status_q.h"

#include "store/store.h"
#include "util/util.h"

#include <stdio.h>
#include <string.h>

int tm__q_task_errors(struct tm__db *db, const char *phase,
                      void (*row)(void *ctx, const char *path, const char *msg),
                      void *ctx, struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc = tm__db_prepare(db, "SELECT path, message FROM task_errors "
                                "WHERE phase = ? ORDER BY id", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, err, "read task errors");
    tm__db_bind_text(st, 1, phase, -1, SQLITE_STATIC);
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        const char *path = (const char *)tm__db_column_text(st, 0);
        const char *msg = (const char *)tm__db_column_text(st, 1);
        row(ctx, path ? path : "", msg ? msg : "");
    }
    tm__db_finalize(st);
    return rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "read task errors");
}

int tm__q_stats_sums(struct tm__db *db, int table,
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
    struct tm__stmt *s;
    int rc = tm__db_prepare(db, sql[table], -1, &s, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, err, "read status");
    while ((rc = tm__db_step(s)) == SQLITE_ROW)
        row(ctx, (const char *)tm__db_column_text(s, 0),
            (const char *)tm__db_column_text(s, 1), tm__db_column_int64(s, 2),
            tm__db_column_int64(s, 3), table == 2 ? tm__db_column_int(s, 4) : 0);
    if (rc == SQLITE_DONE)
        rc = 0;
    else
        rc = tm__store_error(db, rc, err, "read status");
    tm__db_finalize(s);
    return rc;
}

int tm__q_root_failed(struct tm__db *db, int side, int64_t *n)
{
    static const char *const sql[2] = {
        "SELECT coalesce(sum(count), 0) FROM src_stats WHERE depth = 0 AND "
        "traversal_status = 'failed'",
        "SELECT coalesce(sum(count), 0) FROM dst_stats WHERE depth = 0 AND "
        "traversal_status = 'failed'",
    };
    struct tm__stmt *q;
    int rc = tm__db_prepare(db, sql[side], -1, &q, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, NULL, "read status");
    rc = tm__db_step(q);
    if (rc == SQLITE_ROW)
        *n += tm__db_column_int64(q, 0);
    tm__db_finalize(q);
    return rc == SQLITE_ROW ? 0 : tm__store_error(db, rc, NULL, "read status");
}

void tm__q_snapshots(struct tm__db *db, tm_queue_snapshot *out, int max, int *n)
{
    struct tm__stmt *q;
    *n = 0;
    /* each queue's last snapshot of each process (treemig worker: several
     * write them) that reported in the last 5 s of the queue, summed; what
     * is pending is the largest total any of them saw less what they all
     * did */
    if (tm__db_prepare(db,
                           "SELECT queue, max(time), max(round), max(pending + done)"
                           " - sum(done), sum(in_flight), sum(done), sum(failed), "
                           "sum(bytes_done), max(bytes_pending + bytes_done) - "
                           "sum(bytes_done), sum(items_per_s), sum(bytes_per_s) "
                           "FROM queue_stats q WHERE id IN (SELECT max(id) FROM "
                           "queue_stats GROUP BY queue, host, pid) AND time >= "
                           "(SELECT max(time) FROM queue_stats r WHERE r.queue = "
                           "q.queue) - 5000000000 GROUP BY queue ORDER BY queue",
                           -1, &q, NULL) != SQLITE_OK)
        return; /* an older state file without the columns: no snapshots */
    while (tm__db_step(q) == SQLITE_ROW && *n < max) {
        tm_queue_snapshot *x = &out[(*n)++];
        snprintf(x->queue, sizeof x->queue, "%s",
                 (const char *)tm__db_column_text(q, 0));
        x->time = tm__db_column_int64(q, 1);
        x->round = tm__db_column_int64(q, 2);
        x->pending = tm__db_column_int64(q, 3);
        x->in_flight = tm__db_column_int64(q, 4);
        x->done = tm__db_column_int64(q, 5);
        x->failed = tm__db_column_int64(q, 6);
        x->bytes_done = tm__db_column_int64(q, 7);
        x->bytes_pending = tm__db_column_int64(q, 8);
        x->items_per_s = tm__db_column_double(q, 9);
        x->bytes_per_s = tm__db_column_double(q, 10);
        if (x->pending < 0)
            x->pending = 0;
        if (x->bytes_pending < 0)
            x->bytes_pending = 0;
    }
    tm__db_finalize(q);
}

int tm__q_active(struct tm__db *db, int *n)
{
    struct tm__stmt *st = NULL;
    int rc;
    *n = -1;
    if (strcmp(db->ops->name, "postgresql") != 0)
        return 0;
    if (tm__db_prepare(db, "SELECT (SELECT count(*) FROM leases WHERE expires > "
                           "(extract(epoch FROM clock_timestamp()) * 1000)::bigint)"
                           " + (SELECT count(DISTINCT pid) FROM queue_stats WHERE "
                           "time > ?1)", -1, &st, NULL) != SQLITE_OK)
        return TM_EDB;
    tm__db_bind_int64(st, 1, tm__wall_ns() - 10 * 1000000000LL);
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW)
        *n = (int)tm__db_column_int64(st, 0);
    tm__db_finalize(st);
    return rc == SQLITE_ROW ? 0 : TM_EDB;
}
