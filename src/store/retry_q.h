/*
 * retry_q.h - the SQL of tm_retry (src/migration/retry.c): how many
 * folders and copies failed, the rows refreshed from the storages where
 * what failed has changed since, and the failed statuses made pending
 * again with their stats. Caller's thread, on the handle's connection,
 * inside the caller's transaction where it says so.
 */
#ifndef TM_RETRY_Q_H
#define TM_RETRY_Q_H

#include "store/db.h"
#include <stdint.h>

#include "adapter/adapter.h"
#include "util/buf.h"

/* What the refresh functions ask the storage: fills *e for path, 0 when
 * it could (the adapter's stat). */
typedef int (*tm__q_stat_fn)(void *ctx, const char *path, struct tm__entry *e);

/* The failed folders of src_stats (table 0) or dst_stats (table 1), or
 * the failed copies of copy_stats (table 2); 0 when the query fails. */
int64_t tm__q_count_failed(struct tm__db *db, int table);

/* Each failed source folder that stat_fn finds a folder takes its mode and
 * mtime of now (it may have been made readable since). */
int tm__q_refresh_failed_folders(struct tm__db *db, tm__q_stat_fn stat_fn, void *ctx,
                                 struct tm__buf *err);

/* Each source file whose copy failed because it changed since discovery
 * takes its size, mtime and mode of now (when stat_fn finds a file), with the
 * byte counts of the stats moved along. */
int tm__q_refresh_changed_files(struct tm__db *db, tm__q_stat_fn stat_fn, void *ctx,
                                struct tm__buf *err);

/* Each source file or symlink whose copy failed because something was made
 * at its name on the destination after discovery gets the conflict that
 * judge(ctx, path, type, size, mtime) returns (enum tm__cf; CF_NONE leaves
 * it as it is), with the stats moved along. */
int tm__q_refresh_taken(struct tm__db *db,
                        int (*judge)(void *ctx, const char *path, int type,
                                     int64_t size, int64_t mtime),
                        void *ctx, struct tm__buf *err);

/* Makes the failed folders of a side (enum tm__side) pending again, their
 * counts moved in the side's stats table along with them. */
int tm__q_reset_failed_folders(struct tm__db *db, int side, struct tm__buf *err);
/* Makes the failed copies pending again, and their counts in copy_stats. */
int tm__q_reset_failed_copies(struct tm__db *db, struct tm__buf *err);

#endif
