/*
 * review_q.h - the SQL of the review (src/migration/review.c): read
 * transactions, paths looked up in the trees, the sums of the stats
 * tables, one scan of what is pending or in conflict, and the rows of each
 * kind of the listings. Read only; caller's thread, on the handle's
 * connection (also one opened read-only while another process runs the
 * migration).
 */
#ifndef TM_REVIEW_Q_H
#define TM_REVIEW_Q_H

#include "store/db.h"
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* 1 when the state file has the table name (older ones lack some). */
int tm__q_table_exists(struct tm__db *db, const char *name);

/* Starts a read transaction, so that every query of a summary or a list
 * sees the same snapshot even while another process writes (WAL). Returns
 * 1 when it started one (end it with tm__q_end_read()). */
int tm__q_begin_read(struct tm__db *db);
void tm__q_end_read(struct tm__db *db, int began);

/* Finds the row of a normalized path in src_nodes or dst_nodes (side) by
 * walking the unique index (parent_id, name) from the root: a few lookups,
 * no scan. Returns 0 with *id, TM_ENOENT, or an error (message in err). */
int tm__q_find_node(struct tm__db *db, int side, const char *path, int64_t *id,
                    struct tm__buf *err);

/* Calls row(ctx, status, conflict, type, count, bytes) for each group of
 * a stats table below the roots: table 0 copy_stats by (copy_status,
 * conflict, type); 1 src_stats and 2 dst_stats by (traversal_status,
 * type), conflict 0. Strings may be NULL, valid during the call. */
int tm__q_review_sums(struct tm__db *db, int table,
                      void (*row)(void *ctx, const char *status, int conflict,
                                  const char *type, int64_t count, int64_t bytes),
                      void *ctx, struct tm__buf *err);

/* The source rows excluded by `treemig exclude` (0 when the state file
 * has no table excluded_prev) into *n. */
int tm__q_excluded_by_review(struct tm__db *db, int64_t *n, struct tm__buf *err);

/* The hard-link groups of the source tree (files sharing one inode, schema
 * v5; an older file has none): out[0] the groups of two files or more,
 * out[1] their files, out[2] the groups split by an exclusion. */
int tm__q_link_groups(struct tm__db *db, int64_t out[3], struct tm__buf *err);

/* A source row below the root that is pending or in conflict. */
struct tm__q_pending_row {
    int64_t parent_id; /* its folder */
    int is_file;       /* type 'file' */
    int64_t size;      /* bytes */
    int pending;       /* copy_status 'pending' */
    const char *conflict; /* the conflict reason, or NULL */
    const char *type;  /* its type's name (may be NULL) */
};

/* Calls row(ctx, r) for each source row below the root that is pending or
 * in conflict, in the table's order, until row returns non-zero (a
 * negative error, returned). One pass over src_nodes. */
int tm__q_scan_pending(struct tm__db *db,
                       int (*row)(void *ctx, const struct tm__q_pending_row *r),
                       void *ctx, struct tm__buf *err);

/* Calls row(ctx, i, path, len, is_new) for the source folder of each
 * ids[i] (is_new: itself still to copy, without a conflict), until row
 * returns non-zero (returned). A folder that is not there is an error. */
int tm__q_folders(struct tm__db *db, const int64_t *ids, size_t n,
                  int (*row)(void *ctx, size_t i, const char *path, size_t len,
                             int is_new),
                  void *ctx, struct tm__buf *err);

/* The kinds of the listings (docs/review.md), in their order; a kind may
 * take a row of each side ("failed"). */
struct tm__q_kind {
    const char *kind;   /* the kind, as given and as printed */
    int side;           /* enum tm__side: the table */
    int not_in_all;     /* 1: a part of another kind, left out of `all`;
                           2: the copy's plan (tm_copy_plan), not a kind
                           of tm_review_list */
};
extern const struct tm__q_kind tm__q_kinds[];
extern const size_t tm__q_n_kinds;

/* A row of a listing; the strings are valid during the call. */
struct tm__q_list_row {
    const char *path; /* never NULL */
    size_t path_len;  /* its bytes */
    const char *type; /* never NULL */
    int64_t size;     /* bytes */
    int64_t mtime;    /* ns since the epoch */
    const char *why;  /* the reason, or NULL */
    size_t why_len;   /* its bytes */
    int dst;          /* a conflict: 1 when its destination twin was
                         found (the fields dst_* below) */
    char dst_type[16]; /* the twin's type */
    int64_t dst_size, dst_mtime; /* its size and mtime */
};

/* Calls row(ctx, r) for each row of tm__q_kinds[k] (below the row root of
 * the kind's side when root > 0; with reason, only the conflicts of that
 * reason), in the table's order, until row returns non-zero (a negative
 * error, returned). A conflict's row carries its destination twin. */
int tm__q_list_kind(struct tm__db *db, size_t k, int64_t root, const char *reason,
                    int (*row)(void *ctx, const struct tm__q_list_row *r),
                    void *ctx, struct tm__buf *err);

#endif
