/*
 * status.c - what a migration's state file says about it: tm_status_get
 * (phase, roots, counts from the stats tables, the observer's last
 * snapshots and the copy's ETA) and tm_problems_print (the task errors of
 * a phase, one per line). Read only; runs on the caller's thread, also on
 * a handle opened read-only while another process runs the migration.
 */
#include "treemig.h"

#include "adapter/adapter.h"
#include "migration/migration_int.h"
#include "store/store.h"
#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\')
            fputs("\\\\", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
}

int tm_problems_print(tm_migration *m, const char *phase, FILE *out)
{
    sqlite3_stmt *st;
    int rc;
    if (!m || !m->open)
        return TM_EINVAL;
    rc = sqlite3_prepare_v2(m->store.db, "SELECT path, message FROM task_errors "
                            "WHERE phase = ? ORDER BY id", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(m->store.db, rc, &m->err, "read task errors");
    sqlite3_bind_text(st, 1, phase, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(st, 0);
        const char *msg = (const char *)sqlite3_column_text(st, 1);
        print_escaped(out, path ? path : "");
        fputs(": ", out);
        fputs(msg ? msg : "", out);
        fputc('\n', out);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : tm__store_error(m->store.db, rc, &m->err,
                                                   "read task errors");
}

/* The observer's last snapshot of each queue, and the copy's ETA. */
static int read_snapshots(tm_migration *m, tm_status *st)
{
    sqlite3_stmt *q;
    int rc;
    st->eta_seconds = -1;
    rc = sqlite3_prepare_v2(m->store.db,
                            "SELECT queue, time, round, pending, in_flight, done, "
                            "failed, bytes_done, bytes_pending, items_per_s, "
                            "bytes_per_s FROM queue_stats WHERE id IN (SELECT "
                            "max(id) FROM queue_stats GROUP BY queue) ORDER BY queue",
                            -1, &q, NULL);
    if (rc != SQLITE_OK)
        return 0; /* an older state file without the columns: no snapshots */
    while (sqlite3_step(q) == SQLITE_ROW && st->n_queues < 4) {
        tm_queue_snapshot *x = &st->queues[st->n_queues++];
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
        if (strcmp(x->queue, "copy") == 0 && tm__phase_parse(st->phase) == PH_COPYING) {
            if (x->bytes_per_s > 0 && x->bytes_pending > 0)
                st->eta_seconds = (int64_t)((double)x->bytes_pending / x->bytes_per_s);
            else if (x->items_per_s > 0)
                st->eta_seconds = (int64_t)((double)x->pending / x->items_per_s);
        }
    }
    sqlite3_finalize(q);
    return 0;
}

/* Adds to *n 1 when the root of a side (depth 0) failed to be listed.
 * Returns 0 or the error of the query. */
static int root_failed(sqlite3 *db, int side, int64_t *n)
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

int tm_status_get(tm_migration *m, tm_status *st)
{
    static const char *const sql[3] = {
        "SELECT type, traversal_status, sum(count), sum(bytes) FROM src_stats "
        "WHERE depth > 0 GROUP BY 1, 2",
        "SELECT type, traversal_status, sum(count), sum(bytes) FROM dst_stats "
        "WHERE depth > 0 GROUP BY 1, 2",
        "SELECT type, copy_status, sum(count), sum(bytes), conflict FROM "
        "copy_stats WHERE depth > 0 GROUP BY 1, 2, 5",
    };
    sqlite3 *db;
    int q, rc = 0;

    memset(st, 0, sizeof *st);
    if (!m || !m->open)
        return TM_EINVAL;
    db = m->store.db;
    /* a phase that cannot be read must not look like no phase */
    rc = tm__mig_copy_setting(db, "phase", st->phase, sizeof st->phase);
    if (!rc)
        rc = tm__mig_copy_setting(db, "src", st->src, sizeof st->src);
    if (!rc)
        rc = tm__mig_copy_setting(db, "dst", st->dst, sizeof st->dst);
    if (rc)
        return tm__mig_setting_fail(m, rc);
    st->src_round = tm__mig_get_int(db, "src_round", 0);
    st->dst_round = tm__mig_get_int(db, "dst_round", 0);
    for (q = 0; q < 3 && !rc; q++) {
        sqlite3_stmt *s;
        rc = sqlite3_prepare_v2(db, sql[q], -1, &s, NULL);
        if (rc != SQLITE_OK) {
            rc = tm__store_error(db, rc, &m->err, "read status");
            break;
        }
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            int type = tm__name_index(tm__type_names, TM_T_COUNT,
                                      (const char *)sqlite3_column_text(s, 0));
            const char *status = (const char *)sqlite3_column_text(s, 1);
            int64_t count = sqlite3_column_int64(s, 2);
            int64_t bytes = sqlite3_column_int64(s, 3);
            if (q < 2) {
                tm_tree_counts *c = q == 0 ? &st->src_counts : &st->dst_counts;
                int ts = tm__name_index(tm__ts_names, TS_COUNT, status);
                if (type == TM_T_FOLDER) c->folders += count;
                if (type == TM_T_FILE) { c->files += count; c->bytes += bytes; }
                if (type == TM_T_SYMLINK) c->symlinks += count;
                if (type == TM_T_OTHER) c->other += count;
                if (ts == TS_PENDING) c->pending += count;
                if (ts == TS_FAILED) c->failed += count;
                if (ts == TS_EXCLUDED) c->excluded += count;
                if (ts == TS_NOT_ON_SRC) c->not_on_src += count;
            } else {
                tm_copy_counts *c = &st->copy;
                int cs = tm__name_index(tm__cs_names, CS_COUNT, status);
                if (sqlite3_column_int(s, 4)) c->conflicts += count;
                switch (cs) {
                case CS_PENDING:
                    c->pending += count;
                    if (type == TM_T_FILE) c->bytes_pending += bytes;
                    break;
                case CS_IN_PROGRESS: c->in_progress += count; break;
                case CS_SUCCESSFUL: c->successful += count; break;
                case CS_ALREADY: c->already_existed += count; break;
                case CS_FAILED: c->failed += count; break;
                case CS_SKIPPED: c->skipped += count; break;
                case CS_EXCLUDED: c->excluded += count; break;
                default: break;
                }
            }
        }
        if (rc == SQLITE_DONE)
            rc = 0;
        else
            rc = tm__store_error(db, rc, &m->err, "read status");
        sqlite3_finalize(s);
    }
    /* a root whose listing failed is a failed folder too (the counts leave
     * the roots out otherwise): without it, nothing would say that the
     * whole tree is missing */
    if (!rc)
        rc = root_failed(db, TM_SRC, &st->src_counts.failed);
    if (!rc)
        rc = root_failed(db, TM_DST, &st->dst_counts.failed);
    if (rc)
        tm__mig_fail(m, rc, "state file %s: read status: %s", m->store.path,
                     sqlite3_errmsg(db));
    return rc ? rc : read_snapshots(m, st);
}
