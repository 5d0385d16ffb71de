/*
 * exclude_q.h - the SQL of the exclusions decided after discovery
 * (src/migration/exclude.c): the tables exclusions and excluded_prev, the
 * temporary tables tm_match (the matches of a pattern) and tm_sub (a
 * subtree), the rows of a subtree excluded and included again. Every
 * function runs inside the transaction of tm__exclude_run, on the caller's
 * thread, with the handle's connection; err gets SQLite's message of a
 * failure ("read the state file" when a statement cannot be prepared).
 */
#ifndef TM_EXCLUDE_Q_H
#define TM_EXCLUDE_Q_H

#include "store/db.h"
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "util/buf.h"

/* Creates the review tables (tm__review_schema_sql) if needed. */
int tm__q_excl_tables(struct tm__db *db, struct tm__buf *err);
/* Creates the temporary tables tm_match and tm_sub if needed. */
int tm__q_excl_temp_tables(struct tm__db *db, struct tm__buf *err);

/* A group of rows whose statuses change, for the stats. */
struct tm__q_excl_group {
    int depth;          /* node depth */
    const char *type;   /* the type's name */
    const char *ts;     /* traversal status now */
    const char *cs;     /* copy status now (source), or NULL */
    int cf;             /* has a conflict now (source) */
    const char *ts_to;  /* traversal status it gets ("excluded" when
                           excluding) */
    const char *cs_to;  /* copy status it gets (source), or NULL */
    int cf_to;          /* has a conflict then */
    int64_t n, bytes;   /* rows and the sum of their sizes */
};

/* Fills temp.tm_sub with the subtree of id in a side's table, stopping at
 * rows that are excluded already (their subtrees are excluded too). */
int tm__q_excl_fill_subtree(struct tm__db *db, int side, int64_t id, struct tm__buf *err);

/* A row of temp.tm_sub on the source whose copy has started (in_progress,
 * successful or failed): 1 with its path and copy status, 0 when there is
 * none, or an error. */
int tm__q_excl_started(struct tm__db *db, struct tm__buf *path, struct tm__buf *status,
                       struct tm__buf *err);

/* *excluded: the destination row id is excluded. */
int tm__q_excl_dst_excluded(struct tm__db *db, int64_t id, int *excluded,
                            struct tm__buf *err);

/* Calls group(ctx, g) for each group of the rows of temp.tm_sub in a
 * side's table, as excluding them would change them, until group returns
 * non-zero (a negative error, returned). */
int tm__q_excl_groups(struct tm__db *db, int side,
                      int (*group)(void *ctx, const struct tm__q_excl_group *g),
                      void *ctx, struct tm__buf *err);

/* Excludes the rows of temp.tm_sub in a side's table, their previous
 * statuses saved in excluded_prev with root; *changed gets the rows
 * changed. */
int tm__q_excl_mark(struct tm__db *db, int side, int64_t root, int64_t *changed,
                    struct tm__buf *err);

/* Records the exclusion root id (path, pattern, time now). */
int tm__q_excl_record_root(struct tm__db *db, int64_t id, const char *path,
                           const char *pattern, const char *now, struct tm__buf *err);

/* As tm__q_excl_groups, for including again the rows excluded with root
 * id in a side's table (their saved statuses are the ones they get). */
int tm__q_incl_groups(struct tm__db *db, int side, int64_t id,
                      int (*group)(void *ctx, const struct tm__q_excl_group *g),
                      void *ctx, struct tm__buf *err);

/* Restores the rows excluded with root id in a side's table; *changed gets
 * the rows changed. */
int tm__q_incl_restore(struct tm__db *db, int side, int64_t id, int64_t *changed,
                       struct tm__buf *err);

/* Forgets the exclusion root id and the saved statuses of its rows. */
int tm__q_incl_forget(struct tm__db *db, int64_t id, struct tm__buf *err);

/* The path and pattern of the exclusion root of the source row id: 1 when
 * found, else 0 (errors are not reported: it only adds to a message). */
int tm__q_excl_root_of(struct tm__db *db, int64_t id, struct tm__buf *path,
                       struct tm__buf *pattern);

/* What apply_match reads of the source row id. */
struct tm__q_excl_node {
    int excluded;        /* its traversal status is 'excluded' */
    int64_t parent_id;   /* its folder */
    int parent_excluded; /* its folder is excluded */
};

/* Reads the source row id: its path into path, the rest into *out. A row
 * that is not there is an error (TM_ECORRUPT). */
int tm__q_excl_node(struct tm__db *db, int64_t id, struct tm__buf *path,
                    struct tm__q_excl_node *out, struct tm__buf *err);

/* The exclusion root of the source row id: *has 1 with *root, or 0 when
 * discovery's --exclude excluded it. */
int tm__q_excl_prev_root(struct tm__db *db, int64_t id, int *has, int64_t *root,
                         struct tm__buf *err);

/* A source row a pattern may match. */
struct tm__q_candidate {
    int64_t id;       /* row id */
    int depth;        /* node depth */
    const char *ts;   /* its traversal status (may be NULL) */
    const char *path; /* its path (may be NULL) */
    const char *name; /* its name (may be NULL) */
};

/* Calls take(ctx, c) for the source row only_id, or for every source row
 * below the root when only_id is 0, and adds the row to temp.tm_match
 * when take returns 1 (0: leave it, negative: an error, returned). */
int tm__q_match_collect(struct tm__db *db, int64_t only_id,
                        int (*take)(void *ctx, const struct tm__q_candidate *c),
                        void *ctx, struct tm__buf *err);

/* Empties temp.tm_match. */
int tm__q_match_clear(struct tm__db *db, struct tm__buf *err);

/* The smallest depth after depth that holds matches into *next, or -1. */
int tm__q_match_next_depth(struct tm__db *db, int64_t depth, int64_t *next,
                           struct tm__buf *err);

/* Drops the matches at depth that shallower ones settled: included ones
 * (excluding) or excluded ones (unexclude). */
int tm__q_match_drop_settled(struct tm__db *db, int64_t depth, int unexclude,
                             struct tm__buf *err);

/* Up to max ids of the matches at depth after last_id, in order, into
 * ids; *k gets their count. */
int tm__q_match_page(struct tm__db *db, int64_t depth, int64_t last_id, int64_t *ids,
                     int max, int *k, struct tm__buf *err);

/* Applies the stats deltas d (tm__stats_apply), with the message "update
 * the stats" on failure. */
int tm__q_excl_apply_stats(struct tm__db *db, struct tm__stats_delta *d, struct tm__buf *err);

/* The patterns of the exclusions in force, one per line, first use first,
 * into v. */
int tm__q_excl_patterns(struct tm__db *db, struct tm__buf *v, struct tm__buf *err);

/* Adds a line to the table logs (level info, queue review). */
int tm__q_review_log(struct tm__db *db, int64_t time, const char *msg, size_t len,
                     struct tm__buf *err);

/* Ends the transaction: rolled back (dry_run), or committed with the
 * temporary tables emptied. */
int tm__q_excl_finish(struct tm__db *db, int dry_run, struct tm__buf *err);

#endif
