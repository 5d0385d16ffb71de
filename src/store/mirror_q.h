/*
 * mirror_q.h - the SQL of the mirror (treemig delete, src/migration/
 * mirror.c): the plan (the destination-only nodes of dst_nodes, with the
 * subtrees of destination-only folders recorded by the plan's listing),
 * the order of the removals (deepest first, files before folders) and
 * their outcomes in the table mirror (schema version 6). Every function
 * runs on the caller's thread with the handle's connection (no writer
 * runs during the mirror); err gets SQLite's message of a failure.
 */
#ifndef TM_MIRROR_Q_H
#define TM_MIRROR_Q_H

#include "store/db.h"
#include <stddef.h>
#include <stdint.h>

#include "adapter/adapter.h"
#include "util/buf.h"

/* One destination-only node of the plan. */
struct tm__mirror_row {
    int64_t id;        /* its dst_nodes id */
    int64_t parent_id; /* its folder's */
    struct tm__buf path; /* its root-relative path */
    int depth;         /* its depth */
    struct tm__entry e; /* type, size, mtime, mode as discovery recorded
                           them (name unset) */
};

/* One outcome of a removal, for tm__q_mirror_record. */
struct tm__mirror_done {
    const struct tm__mirror_row *row; /* the node */
    int state;                        /* enum tm__mirror_state */
    const char *error;                /* why it was kept, or NULL */
};

/* The states of a row of the table mirror. */
enum tm__mirror_state {
    TM_MIRROR_LISTED = 0, /* a folder whose children the plan recorded */
    TM_MIRROR_REMOVED,    /* removed (its dst_nodes row is gone) */
    TM_MIRROR_KEPT,       /* kept for good in this pass (error says why) */
    TM_MIRROR_FAILED,     /* the removal failed; a later run tries again */
    TM_MIRROR_COUNT
};
extern const char *const tm__mirror_state_names[TM_MIRROR_COUNT];

/* The next destination-only folder after id after (in id order) whose
 * children are not recorded yet and that was not kept: *found 1 with it
 * in out, 0 when there is none. */
int tm__q_mirror_next_folder(struct tm__db *db, int64_t after,
                             struct tm__mirror_row *out, int *found,
                             struct tm__buf *err);

/* Records the n children of the destination-only folder f (as its
 * listing gave them) as destination-only rows (traversal_status
 * not_on_src, counted in dst_stats) and marks f listed, in one
 * transaction. */
int tm__q_mirror_record_listing(struct tm__db *db, const struct tm__mirror_row *f,
                                const struct tm__entry *kids, size_t n,
                                struct tm__buf *err);

/* Marks one row kept (a folder the plan does not enter: excluded, or its
 * listing failed), with why. */
int tm__q_mirror_keep(struct tm__db *db, const struct tm__mirror_row *r,
                      const char *why, struct tm__buf *err);

/* The position of a removal in the order of the mirror. */
struct tm__mirror_pos {
    int depth;     /* deepest first */
    int folder;    /* files (0) before folders (1) */
    int64_t id;    /* then by id */
};

/* Up to max rows to remove after pos (depth descending, files before
 * folders, id ascending; pos->depth < 0: from the start), those not
 * removed or kept already, into rows[0..*n) (whose path buffers are
 * reused). */
int tm__q_mirror_batch(struct tm__db *db, const struct tm__mirror_pos *pos,
                       struct tm__mirror_row *rows, size_t max, size_t *n,
                       struct tm__buf *err);

/* Records n outcomes in one transaction: a removed node loses its
 * dst_nodes row (and its count in dst_stats); every outcome gets its row
 * in mirror. */
int tm__q_mirror_record(struct tm__db *db, const struct tm__mirror_done *d, size_t n,
                        struct tm__buf *err);

/* What the plan holds now: destination-only files (and symlinks and
 * special files), folders and the files' bytes, not kept; and the rows
 * of mirror removed and kept. */
struct tm__mirror_counts {
    int64_t files, folders, bytes; /* still to remove */
    int64_t removed, kept;         /* done so far in this pass */
};
int tm__q_mirror_counts(struct tm__db *db, struct tm__mirror_counts *out,
                        struct tm__buf *err);

/* Calls fn(ctx, path, mtime) for each folder with a source twin below
 * the root that lost a child to the mirror, with the source twin's mtime
 * (the mirror sets it back: the removals changed it). */
int tm__q_mirror_parents(struct tm__db *db,
                         int (*fn)(void *ctx, const char *path, int64_t mtime),
                         void *ctx, struct tm__buf *err);

/* *found: a source node of depth 1 is named name (len bytes). */
int tm__q_mirror_src_top(struct tm__db *db, const char *name, size_t len, int *found,
                         struct tm__buf *err);

/* Calls fn(ctx, path, error) for each row kept, in path order. */
int tm__q_mirror_kept(struct tm__db *db,
                      int (*fn)(void *ctx, const char *path, const char *error),
                      void *ctx, struct tm__buf *err);

#endif
