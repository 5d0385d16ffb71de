/*
 * state_copy.h - copying every row of a migration's state from one store
 * to another, whatever their backends (SQLite, PostgreSQL): treemig
 * state-copy. Runs on the caller's thread, which owns both connections.
 */
#ifndef TM_STATE_COPY_H
#define TM_STATE_COPY_H

#include <stdint.h>

#include "store/db.h"
#include "util/buf.h"

/* Copies every table of from (treemig's schema, at the current version)
 * into to, which has the same schema: to's rows are replaced, all in one
 * transaction on to; identity sequences of a PostgreSQL target move past
 * the copied ids. The migration setting "config" of the copy becomes
 * config, or is removed when config is NULL. *rows: the rows copied.
 * Returns 0, or an error with its message in err; to is then unchanged. */
int tm__state_copy(struct tm__db *from, struct tm__db *to, const char *config,
                   int64_t *rows, struct tm__buf *err);

#endif
