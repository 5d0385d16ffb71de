/*
 * plan_q.h - the SQL of discovery seen from the handle (src/migration/
 * plan.c): the root rows of a new migration, and the nodes a type clash
 * blocks. Caller's thread, on the handle's connection, while no writer
 * thread runs.
 */
#ifndef TM_PLAN_Q_H
#define TM_PLAN_Q_H

#include "store/db.h"
#include <stdint.h>

#include "util/buf.h"

/* Inserts the root row (id 1, path "/") of a side (enum tm__side) with the
 * root's mtime and mode. Inside the caller's transaction. */
int tm__q_insert_root(struct tm__db *db, int side, int64_t mtime, int64_t mode);

/* Marks skipped every source node still pending below a folder whose
 * destination twin is a file (a type clash), with the message "its folder
 * is a file on the destination" unless it has one, and moves the stats of
 * copy_stats with them. Its own transaction; err gets the message of a
 * failure. */
int tm__q_skip_blocked(struct tm__db *db, struct tm__buf *err);

#endif
