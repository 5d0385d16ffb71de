/*
 * review_int.h - the exclusion code of exclude.c for other modules of the
 * engine: today the web page (src/ui/api.c), which excludes and includes
 * again through exactly the code of `treemig exclude`, and asks it first
 * what a change would do (a dry run: the same transaction, rolled back);
 * and the helpers of review.c that exclude.c shares.
 * Private: the CLI never sees it. Caller's thread, as tm_exclude().
 */
#ifndef TM_REVIEW_INT_H
#define TM_REVIEW_INT_H

#include "store/db.h"
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "treemig.h"
#include "util/buf.h"

/* What an exclusion (or inclusion) changed, or would change. */
struct tm__exclude_effect {
    int64_t changed;              /* source rows whose statuses changed */
    struct tm__stats_delta delta; /* the exact changes of src_stats,
                                     dst_stats and copy_stats; the caller
                                     frees it with tm__stats_release() */
};

/*
 * tm_exclude() with a dry run: the whole change is made in its transaction
 * (the same checks, refusals and messages), then rolled back when dry_run
 * is set, committed otherwise. *eff (may be NULL) gets what changed; it is
 * zeroed on failure. m must be open for writing (the dry run takes the
 * write lock of the transaction too).
 */
int tm__exclude_run(tm_migration *m, const char *const *patterns, size_t n,
                    int unexclude, int dry_run, struct tm__exclude_effect *eff);

/* ---- review.c: helpers shared with exclude.c ---- */

/* Writes m's error message (printf-style) and returns rc. */
int tm__rv_fail(tm_migration *m, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Finds the row of a normalized path in a side's table: 0 with *id,
 * TM_ENOENT, or an error. */
int tm__rv_find_node(tm_migration *m, int side, const char *path, int64_t *id);
/* Reads a setting into out; out is empty when it is missing or unreadable. */
void tm__rv_setting(struct tm__db *db, const char *key, struct tm__buf *out);

#endif
