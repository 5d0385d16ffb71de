/*
 * pass_q.h - the SQL of the passes (treemig rescan, src/migration/pass.c):
 * the table passes (one row per pass: its number and times), the copy of
 * the previous pass's source nodes (prev_src_nodes) that the new pass is
 * compared with, and the reset of the node tables for a new pass (schema
 * version 7, step "passes"). On the caller's thread, with the handle's
 * connection, inside the caller's transaction where it says so; err gets
 * SQLite's message of a failure.
 */
#ifndef TM_PASS_Q_H
#define TM_PASS_Q_H

#include "store/db.h"
#include <stdint.h>

#include "util/buf.h"

/* The first source id of the running (or last) pass: the rows from there
 * on are new in it (0 for a pass started before the passes merged). */
#define TM__PASS_ID0 "coalesce((SELECT CAST(value AS INTEGER) FROM migration " \
    "WHERE key = 'pass_src_id0'), 0)"

/* Inside the caller's transaction: readies the node rows for a pass that
 * merges its listings with them (the rows the review exclusions changed
 * put back as they were: read their patterns first; prev_src_nodes and
 * the per-pass tables emptied; the roots pending; the stats counted
 * again; pass_src_id0 set), and records pass number *n (the one after the
 * last; the first pass gets its row, started at created, if it had none)
 * started now. */
int tm__q_pass_reset(struct tm__db *db, const char *created, const char *now, int *n,
                     struct tm__buf *err);

/* Records the end of pass n (discovery complete) at now. */
int tm__q_pass_end(struct tm__db *db, int n, const char *now, struct tm__buf *err);

/* The current pass: its number (1 when none is recorded) and times
 * (started, ended: "" when unknown, or not ended). */
int tm__q_pass_get(struct tm__db *db, int *n, char *started, size_t slen, char *ended,
                   size_t elen, struct tm__buf *err);

/* What changed since the previous pass: source nodes new, changed (a file
 * or symlink of another size or mtime, or another type), deleted; and
 * destination files or symlinks that the previous pass copied or found
 * there but are not as it left them (changed on the destination). */
struct tm__pass_changes {
    int64_t src_new, src_changed, src_deleted, dst_changed;
};
int tm__q_pass_changes(struct tm__db *db, struct tm__pass_changes *c,
                       struct tm__buf *err);

/* The review patterns (table exclusions) in force, one per line, in
 * out. */
int tm__q_pass_patterns(struct tm__db *db, struct tm__buf *out, struct tm__buf *err);

#endif
