/*
 * review_int.h - the exclusion code of review.c for other modules of the
 * engine: today the web page (src/ui/api.c), which excludes and includes
 * again through exactly the code of `treemig exclude`, and asks it first
 * what a change would do (a dry run: the same transaction, rolled back).
 * Private: the CLI never sees it. Caller's thread, as tm_exclude().
 */
#ifndef TM_REVIEW_INT_H
#define TM_REVIEW_INT_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "treemig.h"

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

#endif
