/*
 * status_q.h - the SQL of what a state file says about its migration
 * (src/migration/status.c): the task errors of a phase, the sums of the
 * stats tables, the failed roots and the observer's last snapshots. Read
 * only; caller's thread, on any connection to the state file.
 */
#ifndef TM_STATUS_Q_H
#define TM_STATUS_Q_H

#include "store/db.h"
#include <stdint.h>

#include "treemig.h"
#include "util/buf.h"

/* Calls row(ctx, path, message) for each task error of phase ("discover",
 * "copy", "verify"), in the order they were recorded; path and message are
 * "" when NULL and valid during the call only. 0, or an error with its
 * message in err. */
int tm__q_task_errors(struct tm__db *db, const char *phase,
                      void (*row)(void *ctx, const char *path, const char *msg),
                      void *ctx, struct tm__buf *err);

/* Calls row(ctx, type, status, count, bytes, conflict) for each group of
 * a stats table below the roots (depth > 0): table 0 src_stats and 1
 * dst_stats grouped by (type, traversal_status), conflict 0; table 2
 * copy_stats grouped by (type, copy_status, conflict). The strings may be
 * NULL and are valid during the call only. 0, or an error with its
 * message in err. */
int tm__q_stats_sums(struct tm__db *db, int table,
                     void (*row)(void *ctx, const char *type, const char *status,
                                 int64_t count, int64_t bytes, int conflict),
                     void *ctx, struct tm__buf *err);

/* Adds to *n the count of failed listings of a side's root (depth 0):
 * 0 or 1. Returns 0 or the error of the query (no message). */
int tm__q_root_failed(struct tm__db *db, int side, int64_t *n);

/* The observer's last snapshot of each queue, by queue name, at most max
 * of them, into out; *n gets their count. An older state file without
 * the columns gives none. */
void tm__q_snapshots(struct tm__db *db, tm_queue_snapshot *out, int max, int *n);

/* On a shared store (PostgreSQL): the leases not expired (the server's
 * clock) and the processes whose snapshot is at most 10 s old (*n; a
 * phase left in progress by killed processes has 0); -1 on SQLite.
 * Returns 0 or the error of the query (no message). */
int tm__q_active(struct tm__db *db, int *n);

#endif
