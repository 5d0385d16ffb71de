/*
 * writer.h - the one thread that writes the state file while a phase runs.
 *
 * Workers hand it results (a listed folder with its children, or a setting,
 * or a log record); it applies them in batched transactions (group commit:
 * every TM_WRITER_BATCH_ROWS rows or TM_WRITER_BATCH_MS), keeps the stats
 * tables exact in the same transaction, and tells the engine after each
 * commit which results are durable. Memory is bounded: tm__writer_submit()
 * waits while more than max_rows rows are queued.
 *
 * Lock order: the writer's mutex is never held while calling back into the
 * engine, and is never taken while the engine holds its own.
 */
#ifndef TM_WRITER_H
#define TM_WRITER_H

#include <pthread.h>
#include <stdint.h>

#include "store/store.h"
#include "util/buf.h"

#define TM_WRITER_BATCH_ROWS 4096
#define TM_WRITER_BATCH_MS 50

/* A node to insert. Strings are offsets into the result's arena. */
struct tm__wnode {
    int64_t parent_id;      /* parent folder's id */
    size_t name_off, name_len; /* name in the arena */
    size_t path_off, path_len; /* path in the arena */
    int64_t size, mtime;    /* as listed */
    uint32_t mode;          /* permission bits */
    int8_t owned;           /* 1: uid and gid are known (else NULL) */
    int64_t uid, gid;       /* owner, with owned */
    uint64_t dev, ino;      /* source files: the inode, with nlink > 1 */
    uint32_t nlink;         /* its links (0 or 1: not recorded) */
    uint64_t xattrs;        /* source rows: digest of the extended
                               attributes (0: none, NULL) */
    int8_t type;            /* enum tm__type */
    int8_t ts;              /* enum tm__ts */
    int8_t cs;              /* enum tm__cs (source rows) */
    int8_t conflict;        /* enum tm__cf */
    int64_t src_id;         /* destination rows: source twin or 0 */
    size_t why_off, why_len; /* source rows: the reason of a node skipped
                               at discovery (error column), in the arena;
                               why_len 0: none */
    /* Destination rows: the change of copy status of the source twin that
     * the comparison found, applied only when this row is inserted (a
     * child listed twice changes nothing twice). */
    int8_t upd;             /* 1: update the twin */
    int8_t has_hash;        /* upd: record hash as the twin's content hash
                               (discover --checksum found them equal) */
    uint64_t hash;          /* that hash (XXH3-64) */
    int8_t src_type;        /* the twin's type (for the stats) */
    int8_t old_cs, new_cs;  /* enum tm__cs */
    int8_t old_cf, new_cf;  /* enum tm__cf */
    int64_t src_size;       /* the twin's size (for the stats) */
    /* A pair listing (struct tm__result.pair): */
    size_t twin;            /* destination rows: 1 + the index of the
                               source twin among the pair's source
                               children (0: none); its id becomes src_id */
    int64_t id;             /* source rows: the id the writer gave the row */
};

enum tm__result_kind {
    TM_R_LISTING = 0, /* a page of a folder's listing: its children, and
                         with the last page the folder's status */
    TM_R_SETTING,     /* a key/value of the migration table */
    TM_R_LOG,         /* a log record */
    TM_R_COPY,        /* a node's new copy status (copy phase) */
    TM_R_PROBLEM,     /* a task_errors row only (verify mismatches) */
    TM_R_QSTAT,       /* a queue_stats snapshot */
    TM_R_CHECKPOINT,  /* where an interrupted write of node folder_id
                         stands (uploads; the state in value, size bytes) */
};

/* One unit of work for the writer; freed by the writer after the engine
 * was told it is durable. */
struct tm__result {
    struct tm__result *next;  /* queue link */
    int kind;                 /* enum tm__result_kind */
    int side;                 /* enum tm__side */
    int64_t folder_id;        /* the listed folder */
    int depth;                /* its depth */
    int final;                /* TM_R_LISTING: the folder's last page: its
                                 status becomes folder_ts */
    int no_pos;               /* final: 1 when no position can be stored
                                 for the folder (its first page, listed
                                 from its beginning): none to delete */
    int8_t folder_ts;         /* its new traversal status */
    int8_t pass_ts;           /* final, in a pass: the folder's status when
                                 it was fetched (its row kept when equal to
                                 folder_ts: discover.c's watermarks, not
                                 the row, say it was listed) */
    int attempts;             /* listing attempts */
    char *error;              /* malloc'd message when failed, else NULL */
    char *path;               /* malloc'd folder path (for task_errors), key
                                 of a setting, or log level */
    char *value;              /* setting value or log message (malloc'd) */
    struct tm__wnode *nodes;  /* children to insert (malloc'd) */
    size_t n_nodes;           /* count */
    struct tm__buf pos;       /* TM_R_LISTING, not final: the listing's
                                 position after this page (listing_pos) */
    struct tm__buf arena;     /* names and paths of nodes */
    /* TM_R_COPY (folder_id is the node, depth its depth): */
    int8_t type;              /* the node's type */
    int8_t old_cs, new_cs;    /* copy status before and after */
    int8_t cf;                /* the node's conflict, for the stats key */
    int8_t cf_change;         /* 1: the conflict becomes new_cf (verify) */
    int8_t drop_upload;       /* TM_R_COPY: the node's write is over (done or
                                 given up): its uploads row goes */
    int8_t new_cf;            /* the new conflict, with cf_change */
    int64_t size;             /* the node's size, for the stats */
    const char *phase;        /* task_errors phase (static string), NULL:
                                 "discover"; TM_R_LOG: the level name */
    const char *queue;        /* TM_R_LOG, TM_R_QSTAT: queue name (static) */
    int64_t stat[8];          /* TM_R_QSTAT: round, pending, in_flight, done,
                                 failed, bytes_done, bytes_pending, time;
                                 rates in rate[] */
    double rate[2];           /* TM_R_QSTAT: items/s, bytes/s */
    int64_t inserted;         /* TM_R_LISTING, set by the writer: children
                                 inserted (a child listed twice is not) */
    int64_t lease;            /* TM_R_COPY, TM_R_LISTING: the lease (treemig
                                 worker) that
                                 must still hold the node for the outcome
                                 to count; 0: none; -1: a verify finding
                                 (workers) dropped when the node is not
                                 old_cs any more */
    int8_t lease_lost;        /* set by the writer: another worker's lease
                                 held the node, this outcome was dropped */
    int8_t lease_checked;     /* writer: lease_lost was found in this
                                 transaction, before the page's writes */
    /* A pair listing (discover.c): this is a source folder's whole
     * listing, its children inserted with the comparison's verdict, and
     * pair the whole listing of its destination twin, applied after it in
     * the same transaction (owned by this result, freed with it). */
    struct tm__result *pair;
};

void tm__result_free(struct tm__result *r);

/* Called once per commit with the list (linked by next) of the results
 * that the commit made durable. */
typedef void (*tm__commit_cb)(void *ctx, const struct tm__result *list);

struct tm__writer;

/* Called on the writer thread before each COMMIT; an error aborts the
 * writer (e.g. the destination could not be synced). */
typedef int (*tm__precommit_cb)(void *ctx);

/* Starts the writer thread on db (which it then owns until stop). next_id
 * are the next ids to assign for each side. on_commit is called on the
 * writer thread after each commit. */
int tm__writer_start(struct tm__writer **out, struct tm__db *db, const int64_t next_id[2],
                     size_t max_rows, tm__commit_cb on_commit, void *ctx);
/* Queues r (ownership passes to the writer, also on error). Waits while the
 * queue is full. Returns the writer's fatal error, if it had one. */
int tm__writer_submit(struct tm__writer *w, struct tm__result *r);
/* Commits everything queued, stops the thread, frees w. Returns the first
 * fatal error of the writer, and its message in err. */
int tm__writer_stop(struct tm__writer *w, struct tm__buf *err);
/* Makes w write a pass (treemig rescan): each listing is merged with the
 * rows there, and only what differs is written (writer.c, "passes").
 * Call before the first submit. */
int tm__writer_set_pass(struct tm__writer *w);
/* A pass's watermarks (discover.c): fn is called on the writer thread
 * before each COMMIT with the results the transaction holds, and names up
 * to TM__MARKS settings (key NULL: none) written in the same transaction,
 * so that a watermark is durable with the listings it covers. Call before
 * the first submit. */
#define TM__MARKS 2
struct tm__mark {
    const char *key;     /* the setting (static), or NULL */
    char value[48];      /* its value */
};
typedef void (*tm__mark_cb)(void *ctx, const struct tm__result *list,
                            struct tm__mark out[TM__MARKS]);
void tm__writer_set_marks(struct tm__writer *w, tm__mark_cb fn, void *ctx);
/* Sets the hook run before each commit. Call before the first submit. */
void tm__writer_set_precommit(struct tm__writer *w, tm__precommit_cb fn, void *ctx);
/* A shared store (discovery by workers): node ids come in blocks from
 * fn (side, count, first id; the message of a failure in err), called on
 * the writer's thread, instead of going on from next_id. Call before the
 * first submit. */
void tm__writer_set_ids(struct tm__writer *w,
                        int (*fn)(void *ctx, int side, int64_t n, int64_t *first,
                                  struct tm__buf *err),
                        void *ctx);
/* Asks for a commit as soon as what is queued is applied (the engine waits
 * for the end of a round). Any thread. */
void tm__writer_flush(struct tm__writer *w);
/* The writer's fatal error so far (0 if none). Any thread. */
int tm__writer_error(struct tm__writer *w);
/* Copies the message of the writer's fatal error into out (empty when
 * there is none): it names the state file. Any thread. */
void tm__writer_message(struct tm__writer *w, struct tm__buf *out);
/* Rows committed so far. Any thread. */
int64_t tm__writer_rows(struct tm__writer *w);

#endif
