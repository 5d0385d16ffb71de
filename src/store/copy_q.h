/*
 * copy_q.h - the SQL of the copy and the verify seen from the handle
 * (src/migration/run.c): the copy runs and their keys (table copy_runs,
 * docs/internals.md), the index the copy walks, and the source nodes that
 * verify cannot check. Caller's thread, on the handle's connection, while
 * no writer thread runs.
 */
#ifndef TM_COPY_Q_H
#define TM_COPY_Q_H

#include "store/db.h"
#include <stdint.h>

#include "util/buf.h"

/* Creates copy_runs if needed and gives the runs that did not end the
 * depth the last one recorded (setting copy_run_depth, then removed). */
int tm__q_copy_runs_prepare(struct tm__db *db, struct tm__buf *err);

/* Calls clean(ctx, key, depth) for each copy run that did not end (key in
 * hex), and records it ended when clean returns 0. Stops at the first
 * error: clean's (its message is clean's to write), or the query's (its
 * message in err); TM_ENOMEM when a key cannot be copied. */
int tm__q_copy_runs_unended(struct tm__db *db,
                            int (*clean)(void *ctx, const char *key, int depth),
                            void *ctx, struct tm__buf *err);

/* The smallest depth after depth where files or symlinks are still
 * pending in copy_stats, or -1: into *next (left as is when the query
 * finds no row). */
int tm__q_copy_next_depth(struct tm__db *db, int depth, int *next, struct tm__buf *err);

/* Calls leaf(ctx, path, type) for each pending source file or symlink at
 * depth d1 or d2 (type: enum tm__type, -1 when unknown), until leaf
 * returns non-zero, which is returned. 0, or the query's error (message
 * in err). */
int tm__q_copy_pending_leaves(struct tm__db *db, int d1, int d2,
                              int (*leaf)(void *ctx, const char *path, int type),
                              void *ctx, struct tm__buf *err);

/* Records a new copy run of key (hex) started at now, durably
 * (synchronous=FULL for this write). */
int tm__q_copy_run_record(struct tm__db *db, const char *key, const char *now,
                          struct tm__buf *err);

/* Records the run of key (hex) ended at now. err may be NULL. */
int tm__q_copy_run_end(struct tm__db *db, const char *key, const char *now,
                       struct tm__buf *err);

/* Creates the partial index of pending source nodes the copy walks. */
int tm__q_copy_index(struct tm__db *db, struct tm__buf *err);

/* Forgets the task errors of earlier verifies. */
int tm__q_verify_clear(struct tm__db *db, struct tm__buf *err);

/* Records in task_errors (phase verify, time now) each source node that
 * verify cannot check, with the reason: folders that could not be listed,
 * nodes whose copy failed or did not happen, files whose destination
 * version --no-overwrite kept. *n gets their count (0 on failure). */
int tm__q_verify_unchecked(struct tm__db *db, int64_t now, int64_t *n, struct tm__buf *err);

/* After a verify by several workers (treemig worker): removes a finding
 * recorded twice (a folder checked again after its lease expired) and
 * gives the count of phase verify's task_errors rows in *n. */
int tm__q_verify_dedupe(struct tm__db *db, int64_t *n, struct tm__buf *err);

/* After the check: records each node an earlier verify found different
 * that this one did not reach; adds their count to *n. */
int tm__q_verify_unchecked_again(struct tm__db *db, int64_t now, int64_t *n,
                                 struct tm__buf *err);

#endif
