/*
 * lease_q.h - the SQL of treemig worker: batches of copy tasks, or of
 * folders to list, leased through the state database (PostgreSQL only:
 * FOR UPDATE SKIP LOCKED), their renewal, whether a stage has work left,
 * and blocks of node ids for discovery's writers. See
 * docs/scale-out.md for the protocol and docs/state-file.md for the table
 * leases and the column src_nodes.lease_id.
 *
 * Threads: a struct tm__lease_q is one connection of its own, used
 * behind its mutex; a worker opens two (worker.c): one for the engine's
 * coordinator (claims, checks) and the writer (blocks of ids), one for
 * its renewal thread, whose waits for a row lock hold up neither.
 */
#ifndef TM_LEASE_Q_H
#define TM_LEASE_Q_H

#include <stdint.h>

#include "store/frontier.h"
#include "store/tasks.h"
#include "util/buf.h"

struct tm__lease_q;

/* Connects to conninfo (a postgresql:// URI) for the worker named worker
 * ("host:pid:nonce") on host with pid, whose temporary names derive from
 * tmp_key (hex). err says why on failure. */
int tm__lease_q_open(struct tm__lease_q **out, const char *conninfo,
                     const char *worker, const char *host, int pid,
                     const char *tmp_key, struct tm__buf *err);
void tm__lease_q_close(struct tm__lease_q *q);

/* Claims, in one transaction, at most limit tasks of kind (TM_TASKS_COPY,
 * TM_TASKS_LINKS, TM_TASKS_ATTRS or TM_TASKS_VERIFY; depth for the first
 * two) that no live
 * lease of stage holds, as one new lease of lease_ms; calls row(ctx, r,
 * old_key) for each (old_key: the temporary-name key, hex, of the expired
 * lease of the same stage the task was taken from, or NULL). *lease gets
 * the lease's id. Returns the count, or an error (message in err). */
int tm__lease_q_claim(struct tm__lease_q *q, int kind, int depth, const char *stage,
                      int limit, int lease_ms, int64_t *lease,
                      int (*row)(void *ctx, const struct tm__task_row *r,
                                 const char *old_key),
                      void *ctx, struct tm__buf *err);

/* 1 when tasks of kind (at depth) are not done yet in stage, whoever
 * holds them; 0 when none; or an error (message in err). */
int tm__lease_q_left(struct tm__lease_q *q, int kind, int depth, const char *stage,
                     struct tm__buf *err);

/* Extends every lease of this worker that is not done to lease_ms from
 * the server's now. */
int tm__lease_q_renew(struct tm__lease_q *q, int lease_ms, struct tm__buf *err);

/* Runs sql (no rows) on q's connection. */
int tm__lease_q_exec(struct tm__lease_q *q, const char *sql, struct tm__buf *err);

/* Lease id is done: its tasks are never taken again in its stage. */
int tm__lease_q_done(struct tm__lease_q *q, int64_t lease, struct tm__buf *err);

/* Discovery: claims, in one transaction, at most limit pending folders of
 * side (0 source, 1 destination) that no live lease of stage holds, as one
 * new lease of lease_ms: source folders at most lead depths below the
 * destination's lowest pending folder (unless the destination has none),
 * destination folders whose source twin's listing is durable; lowest
 * depth first. Calls row(ctx, r) for each (r->depth set). *lease gets the
 * lease's id (0 when nothing was claimed). Returns the count, or an
 * error (message in err). */
int tm__lease_q_claim_folders(struct tm__lease_q *q, int side, const char *stage,
                              int lead, int limit, int lease_ms, int64_t *lease,
                              int (*row)(void *ctx, const struct tm__frow *r),
                              void *ctx, struct tm__buf *err);
/* Takes n node ids of side (0 source, 1 destination) that no process has
 * taken or will take: *first .. *first + n - 1 (table id_blocks). */
int tm__lease_q_ids(struct tm__lease_q *q, int side, int64_t n, int64_t *first,
                    struct tm__buf *err);
/* Removes lease id (its tasks are over and need no done mark). */
int tm__lease_q_drop(struct tm__lease_q *q, int64_t lease, struct tm__buf *err);
#endif
