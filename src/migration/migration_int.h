/*
 * migration_int.h - the parts of the migration handle (migration.c) that
 * other modules of src/migration/ need: today review.c. Private: the CLI
 * never sees it. Same thread rules as the handle: the caller's thread.
 */
#ifndef TM_MIGRATION_INT_H
#define TM_MIGRATION_INT_H

#include <sqlite3.h>

#include "treemig.h"
#include "util/buf.h"

/* The handle's connection to the state file, or NULL when m is not open.
 * Owned by m. */
sqlite3 *tm__migration_db(tm_migration *m);
/* The buffer of the handle's last error message (tm_migration_errmsg()).
 * Owned by m; callers reset it and write their message. */
struct tm__buf *tm__migration_err(tm_migration *m);
/* 1 when m was opened without TM_OPEN_WRITE (no lock held). */
int tm__migration_readonly(tm_migration *m);
/* The state file's path as given to tm_migration_open(). Owned by m. */
const char *tm__migration_path(tm_migration *m);
/* An absolute form of a local file's path: its folder resolved by
 * realpath(), its name kept; a path with a single '/' at its start, or
 * whose folder does not resolve, is returned as given. Returns a malloc'd
 * string (free() it), or NULL when out of memory. */
char *tm__path_absolute(const char *path);

#endif
