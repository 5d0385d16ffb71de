/*
 * frontier.h - what discovery reads from the state file while it runs:
 * the folders left to list (the frontier), the status of a source folder,
 * and the source children a destination page is compared with. The SQL
 * lives in frontier.c; the engine sees rows.
 *
 * Threads: a struct tm__frontier belongs to one thread (the coordinator);
 * a struct tm__twins is one read connection that any thread may use, one
 * at a time (its owner serializes: discover.c keeps a few behind mutexes).
 * Both read through their own read-only connections, so they see what the
 * writer committed, never its open transaction.
 */
#ifndef TM_FRONTIER_H
#define TM_FRONTIER_H

#include "store/db.h"
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct tm__frontier;
struct tm__twins;

/* One pending folder of the frontier. Strings are valid during the
 * callback only. */
struct tm__frow {
    int64_t id;          /* the folder's row */
    const char *path;    /* its root-relative path */
    int64_t src_id;      /* destination: its source twin (0 for source rows) */
    int twin_pending;    /* destination: the twin's listing is not durable */
    int twin_failed;     /* destination: the twin's listing failed */
    const void *pos;     /* where an earlier listing stopped (listing_pos),
                            NULL: from the start */
    size_t pos_len;      /* bytes of pos */
    int depth;           /* its depth (set by tm__lease_q_claim_folders;
                            tm__frontier_rows reads one depth) */
    int ts;              /* its status (enum tm__ts): pending, or in a pass
                            the row's (listed or failed in an earlier pass) */
    const void *twin_pos; /* destination, pair rows: where the twin's
                            listing stopped (listing_pos), NULL: none */
    size_t twin_pos_len; /* bytes of twin_pos */
    int has_twin;        /* source, pair rows: a destination twin is
                            recorded (a pair lists the folder) */
};

int tm__frontier_open(struct tm__frontier **out, const char *db_path,
                      struct tm__buf *err);
void tm__frontier_close(struct tm__frontier *f);
/* Calls cb for at most limit pending folders of side at depth whose id is
 * above after, in id order; cb returns 0 or an error that stops the read
 * (and is returned). */
int tm__frontier_rows(struct tm__frontier *f, int side, int depth, int64_t after,
                      int limit, int (*cb)(void *ctx, const struct tm__frow *r),
                      void *ctx);
/* From now on tm__frontier_rows reads a pass's frontier: the folders of
 * the depth that may be listed (pending, successful or failed) under a
 * parent listed in this pass, whatever their status says; the caller
 * (discover.c) knows by its watermarks which are listed in this pass. */
void tm__frontier_set_pass(struct tm__frontier *f);
/* With on, tm__frontier_rows reads for pair listings (discover.c): the
 * source's pending folders say whether a destination twin is recorded
 * (has_twin: the destination lists the folder with it), the
 * destination's where their twin's listing stopped (twin_pos). */
void tm__frontier_set_pair(struct tm__frontier *f, int on);
/* *depth = the lowest depth of a pending folder of side, or -1, by the
 * stats (a few rows). */
int tm__frontier_lowest(struct tm__frontier *f, int side, int *depth);
/* *depth = the lowest depth d that has a pending folder of side past
 * cursor[d] (0 from ncursor on), or -1, by the node rows: a range of the
 * index *_nodes_folders a depth, past what the caller has read of it. */
int tm__frontier_pending_past(struct tm__frontier *f, int side, const int64_t *cursor,
                              int ncursor, int *depth);
/* Whether the listing of source folder id is durable (*done) and failed. */
int tm__frontier_twin_done(struct tm__frontier *f, int64_t id, int *done,
                           int *failed);
/* Pending nodes of side by the stats tables (cheap; for the observer). */
int tm__frontier_pending(struct tm__frontier *f, int side, int64_t *n);
/* A pass's progress: with below >= 0, *n = the folders of side at depth
 * that may be listed (pending, successful, failed) with an id below it;
 * with below < 0, those of depth and deeper, by the stats tables. */
int tm__frontier_pass_count(struct tm__frontier *f, int side, int depth, int64_t below,
                            int64_t *n);
/* The message of the last failure (for a caller without an err buffer). */
const char *tm__frontier_errmsg(struct tm__frontier *f);

/* A source child as the comparison needs it. */
struct tm__twin {
    int64_t id, size, mtime; /* the row, as listed */
    uint32_t mode;           /* permission bits */
    int owned;               /* 1: uid and gid are known */
    int64_t uid, gid;        /* owner, with owned */
    uint64_t xattrs;         /* digest of the extended attributes (0: none) */
    int type;                /* enum tm__type */
    int ts, cs, cf;          /* enum tm__ts, tm__cs, tm__cf */
};

int tm__twins_open(struct tm__twins **out, const char *db_path,
                   struct tm__buf *err);
void tm__twins_close(struct tm__twins *t);
/* A scan of the source children of folder parent in SQLite's BINARY order
 * of names, from the first name >= from (len bytes) on: the comparison of
 * a sorted destination page merges it with the scan (one index seek per
 * page instead of one per child). Ends any scan open on t; the scan reads
 * one snapshot until tm__twins_end() or the next tm__twins_scan(). */
int tm__twins_scan(struct tm__twins *t, int64_t parent, const char *from,
                   size_t len);
/* Steps the scan: 1 with the row's name (valid until the next step), 0 at
 * its end, or an error. */
int tm__twins_next(struct tm__twins *t, const char **name, size_t *len);
/* The row the scan is on (after tm__twins_next() returned 1): 0, or
 * TM_ECORRUPT for a row it cannot read. */
int tm__twins_row(struct tm__twins *t, struct tm__twin *out);
/* Ends the scan (its read transaction with it). */
void tm__twins_end(struct tm__twins *t);

/* The next id to give a node of each side (max(id) + 1). */
int tm__store_next_ids(struct tm__db *db, int64_t next_id[2], struct tm__buf *err);

#endif
