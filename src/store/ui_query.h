/*
 * ui_query.h - the SQL of the web page (`treemig ui`, src/ui/): reading
 * the state file through a read-only connection (a folder's children in
 * keyset pages by name, nodes by path or id, windows of rows by id for the
 * searches, task errors, logs, the observer's snapshots, exclusions), and
 * the folder index: a side database, rebuilt in the background, that holds
 * every folder of both trees with the totals of what lies below it.
 *
 * Threads: every function runs on the caller's thread with the
 * connections it is given; a connection is used by one thread at a time.
 * Nothing here writes the state file.
 */
#ifndef TM_UI_QUERY_H
#define TM_UI_QUERY_H

#include "store/db.h"
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* A node row. Strings live in the arena of the struct tm__uiq_rows that
 * holds the row (offsets, because the arena grows). */
struct tm__uiq_row {
    int64_t id;        /* row id in its table */
    int64_t parent_id; /* parent's id, 0 for the root */
    int64_t size;      /* bytes */
    int64_t mtime;     /* ns since the epoch */
    int side;          /* enum tm__side: the table */
    int type;          /* enum tm__type, -1 when unknown */
    int ts;            /* enum tm__ts, -1 when unknown */
    int cs;            /* enum tm__cs; -1 on the destination */
    int cf;            /* enum tm__cf (CF_NONE: no conflict) */
    int depth;         /* root = 0 */
    size_t name_off, name_len; /* the name in the arena */
    size_t path_off, path_len; /* the path in the arena (0, 0: not read) */
    size_t err_off, err_len;   /* the error in the arena */
    int has_err;               /* error is not NULL */
};

/* Rows and the bytes of their strings. Init with TM__UIQ_ROWS_INIT. */
struct tm__uiq_rows {
    struct tm__uiq_row *v; /* the rows */
    size_t n, alloc;       /* used, allocated */
    struct tm__buf arena;  /* names, paths, errors */
};

#define TM__UIQ_ROWS_INIT { NULL, 0, 0, TM__BUF_INIT }

void tm__uiq_rows_reset(struct tm__uiq_rows *r);
void tm__uiq_rows_release(struct tm__uiq_rows *r);
/* The strings of row i. */
#define TM__UIQ_NAME(r, i) ((r)->arena.buf + (r)->v[i].name_off)
#define TM__UIQ_PATH(r, i) ((r)->arena.buf + (r)->v[i].path_off)
#define TM__UIQ_ERR(r, i) ((r)->arena.buf + (r)->v[i].err_off)

/* The kinds of review.md (and two more), as bits: what a row is. */
enum tm__uiq_kind {
    UK_MISSING = 0, /* source, to copy, no conflict */
    UK_CONFLICT,    /* source or destination row with a conflict */
    UK_EXTRA,       /* destination only */
    UK_FAILED,      /* listing or copy failed */
    UK_EXCLUDED,    /* excluded source row */
    UK_SKIPPED,     /* never copied */
    UK_COPIED,      /* copied by treemig */
    UK_SAME,        /* already on the destination */
    UK_COUNT
};
extern const char *const tm__uiq_kind_names[UK_COUNT];
/* The kind bits (1 << UK_*) of a row. */
unsigned tm__uiq_kinds(const struct tm__uiq_row *r);

/* Totals of what lies below a folder (its descendants). */
struct tm__uiq_totals {
    int64_t items;      /* rows below */
    int64_t todo;       /* source rows to copy (copy_status pending) */
    int64_t todo_bytes; /* sizes of the files among them */
    int64_t n[UK_COUNT]; /* rows of each kind */
};

/* Starts a read transaction, so that the queries of one request see one
 * snapshot while another process writes; 1 when started (end it with
 * tm__uiq_end_read). */
int tm__uiq_begin_read(struct tm__db *db);
void tm__uiq_end_read(struct tm__db *db, int began);

/* Finds the row of a root-relative path (any bytes but NUL; "/" or "" is
 * the root) by walking the index (parent_id, name): 0 with *id, TM_ENOENT,
 * or an error. */
int tm__uiq_find(struct tm__db *db, int side, const char *path, size_t len, int64_t *id);
/* Appends the row id of a side (with its path) to out; TM_ENOENT when absent. */
int tm__uiq_get(struct tm__db *db, int side, int64_t id, struct tm__uiq_rows *out);
/* Appends to out at most limit children of parent ordered by name (desc:
 * descending), after the name `after` (has_after 0: from the first). No
 * paths. */
int tm__uiq_children(struct tm__db *db, int side, int64_t parent, const char *after,
                     size_t after_len, int has_after, int desc, int limit,
                     struct tm__uiq_rows *out);
/* Appends the child `name` of parent to out when it exists (else nothing). */
int tm__uiq_child(struct tm__db *db, int side, int64_t parent, const char *name,
                  size_t len, struct tm__uiq_rows *out);
/* Appends at most limit rows of a side with id > after, by id, with their
 * paths: the window a search scans. */
int tm__uiq_scan(struct tm__db *db, int side, int64_t after, int limit,
                 struct tm__uiq_rows *out);
/* The largest id of a side (0 when empty). */
int tm__uiq_max_id(struct tm__db *db, int side, int64_t *max);

/* Why an excluded source row is excluded. */
enum { UX_NONE = 0, UX_EXCLUDE, UX_INHERITED, UX_DISCOVER };
struct tm__uiq_excl {
    int how;               /* UX_*: by treemig exclude of this row, below
                              such a row, or by discover --exclude */
    struct tm__buf root;    /* UX_EXCLUDE, UX_INHERITED: the path of the
                              row that was excluded */
    struct tm__buf pattern; /* and the pattern that matched it */
};
int tm__uiq_exclusion(struct tm__db *db, int64_t src_id, struct tm__uiq_excl *out);

/* A row of task_errors, logs or queue_stats, for a callback. Strings are
 * valid during the call only; NULL when the column is NULL. */
struct tm__uiq_rec {
    int64_t id, time;             /* row id; ns since the epoch */
    const char *a, *b, *c, *d;    /* task_errors: phase, queue, path, message;
                                     logs: level, queue, path, message */
    size_t a_len, b_len, c_len, d_len;
    int64_t node_id, attempts;    /* task_errors, logs (node_id) */
    int64_t v[7];                 /* queue_stats: round, pending, in_flight,
                                     done, failed, bytes_done, bytes_pending */
    double items_per_s, bytes_per_s; /* queue_stats */
};
/* Calls cb (return non-zero to stop, that value is returned) for each row,
 * newest first, with id < before (0: from the newest), at most limit. */
int tm__uiq_task_errors(struct tm__db *db, int64_t before, int limit,
                        int (*cb)(void *ctx, const struct tm__uiq_rec *r), void *ctx);
int tm__uiq_logs(struct tm__db *db, int64_t before, int limit,
                 int (*cb)(void *ctx, const struct tm__uiq_rec *r), void *ctx);
/* queue_stats rows with id > since, oldest first, at most limit; since < 0:
 * the last limit rows. a = queue. */
int tm__uiq_queue_stats(struct tm__db *db, int64_t since, int limit,
                        int (*cb)(void *ctx, const struct tm__uiq_rec *r), void *ctx);
/* The exclusions of treemig exclude: a = path, b = pattern, c = time. */
int tm__uiq_exclusions(struct tm__db *db, int limit,
                       int (*cb)(void *ctx, const struct tm__uiq_rec *r), void *ctx);
/* PRAGMA data_version: changes when another connection commits. */
int tm__uiq_data_version(struct tm__db *db, int64_t *v);

/* --------------------------------------------------------------------------
 * The folder index (a side database the caller creates in a temporary file).
 */

/* What a build reports and asks. */
struct tm__uiq_build_cb {
    /* rows of side read so far, up to max (the largest id at the start) */
    void (*progress)(void *ctx, int side, int64_t done, int64_t max);
    /* non-zero: stop the build (it returns TM_ESTOPPED) */
    int (*stop)(void *ctx);
    void *ctx;
};

/*
 * Fills the empty database `idx` from the state file `db`: one row per
 * folder of each side (id, parent, name, depth) with the totals of its
 * descendants, and the largest ids read (max_id[side]): rows added after
 * that are not in the index. Reads the state file in windows of ids, each
 * in its own short read transaction, so it never holds a snapshot long.
 * err gets the message of a failure.
 */
int tm__uiq_index_build(struct tm__db *db, struct tm__db *idx, const struct tm__uiq_build_cb *cb,
                        int64_t max_id[2], struct tm__buf *err);
/* Appends to out (id, name and depth only) at most limit folders of the
 * index whose parent is `parent` on side, by name after `after`. */
int tm__uiq_index_folders(struct tm__db *idx, int side, int64_t parent, const char *after,
                          size_t after_len, int has_after, int desc, int limit,
                          struct tm__uiq_rows *out);
/* Appends to out at most limit source folders of the index whose parent is
 * `parent`, by bytes to copy below them (largest first), then name, after
 * the cursor (after_bytes, after). Each row's size is those bytes. */
int tm__uiq_index_by_todo(struct tm__db *idx, int64_t parent, int64_t after_bytes,
                          const char *after, size_t after_len, int has_after,
                          int limit, struct tm__uiq_rows *out);
/* 1 when the index holds a folder `name` under parent on side. */
int tm__uiq_index_has(struct tm__db *idx, int side, int64_t parent, const char *name,
                      size_t len);
/* The totals of folder id of side; TM_ENOENT when it is not in the index. */
int tm__uiq_index_totals(struct tm__db *idx, int side, int64_t id,
                         struct tm__uiq_totals *t);

#endif
