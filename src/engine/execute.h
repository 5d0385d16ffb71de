/*
 * execute.h - the execution passes: copy (create what is missing, depth by
 * depth, then the folders' modes and mtimes) and verify (list the
 * destination again and check every copied or already-existing node).
 */
#ifndef TM_EXECUTE_H
#define TM_EXECUTE_H

#include "store/db.h"
#include <stdatomic.h>
#include <stdint.h>

#include "adapter/adapter.h"
#include "log/log.h"
#include "treemig.h"
#include "util/buf.h"

enum tm__exec_mode { TM_EXEC_COPY = 0, TM_EXEC_VERIFY };

struct tm__task_row;

/* treemig worker: where a copy takes its tasks when several processes run
 * it together (src/migration/worker.c, over store/lease_q.c). Every
 * method may be called from the coordinator; ended from any thread. */
struct tm__exec_claim {
    /* Claims at most limit tasks of kind (TM_TASKS_COPY, _LINKS, _ATTRS)
     * at depth: row(rctx, r, old_key) for each (old_key: the temporary
     * names' key, hex, of the worker whose lease expired, or NULL); the
     * count, or an error (message in the hook's err). */
    int (*claim)(void *ctx, int kind, int depth, int limit, int64_t *lease,
                 int (*row)(void *rctx, const struct tm__task_row *r,
                            const char *old_key),
                 void *rctx);
    /* 1 when tasks of kind at depth are not done yet (by anyone), 0 when
     * none, or an error. */
    int (*left)(void *ctx, int kind, int depth);
    /* A task of lease is over (its outcome committed, or for the folders'
     * attributes, done). */
    void (*ended)(void *ctx, int64_t lease);
    void *ctx;          /* the methods' context */
    int batch;          /* tasks per claim */
    struct tm__buf *err; /* the methods' messages */
};

struct tm__exec_cfg {
    int mode;                    /* enum tm__exec_mode */
    struct tm__adapter *ad[2];   /* source and destination */
    const char *root[2];         /* their specs, for messages */
    const char *db_path;         /* state file, for the readers */
    struct tm__db *db;                 /* write connection, lent to the writer */
    int workers;                 /* threads */
    int retries;                 /* retries of a retryable failure */
    int no_overwrite;            /* copy: keep every existing destination file */
    int update;                  /* copy: keep what is newer on the
                                    destination (copy --update) */
    const char *backup_dir;      /* copy: move what it replaces there
                                    (root-relative), or NULL */
    int owner;                   /* copy: set the source's uid and gid;
                                    verify: a copy did (set-ID bits kept) */
    int owner_discovered;        /* discovery compared owners (discover
                                    --owner): verify compares them */
    int checksum;                /* verify: compare contents (xxHash) */
    int xattrs;                  /* copy: extended attributes and ACLs of
                                    files and folders too (not discover
                                    --no-xattrs), where both storages
                                    keep them */
    int64_t total_files;         /* copy: nodes to copy (for the ETA) */
    int64_t total_bytes;         /* copy: bytes to copy (for the ETA) */
    atomic_int *stop;            /* set to ask for a clean stop */
    tm_progress_fn progress;     /* progress lines, may be NULL */
    void *progress_ctx;          /* its context */
    struct tm__buf *err;         /* message of a fatal error */
    int64_t problems;            /* out: verify mismatches, copy failures */
    const struct tm__log_cfg *log; /* log service settings; NULL: none */
    int found_equal_by_size;     /* verify: discovery took a file of the same
                                    size as already there whatever its mtime
                                    (--size-only, --checksum): such a file's
                                    mtime is not compared */
    int64_t window;              /* verify: mtimes within this (ns, whole
                                    seconds) are equal (--modify-window) */
    /* copy: told of each node the run handled, from any worker (it
     * serializes itself): what ("created", "replaced", "attrs", "linked",
     * "skipped", "failed"), the node and the reason (NULL: none); NULL:
     * nobody is told (copy --log-file) */
    void (*item)(void *ctx, const char *what, int type, int64_t size,
                 const char *path, const char *reason);
    void *item_ctx;              /* item's context */
    double bwlimit;              /* bytes per second per side; 0: none */
    double tpslimit;             /* operations per second per side; 0: none */
    int64_t limit_waited_ns;     /* out: time the limits held workers back */
    const struct tm__exec_claim *claim; /* copy: tasks come from leases
                                    (treemig worker); NULL: from tasks.c */
    int64_t lease_lost;          /* out: outcomes dropped because another
                                    worker's lease held the node */
};

/* Runs the pass: 0 when done (cfg->problems counts what went wrong),
 * TM_ESTOPPED when a stop was asked, or a fatal error (e.g. TM_ENOSPC;
 * TM_ENOENT: a root was removed, moved or replaced during the run). */
int tm__exec_run(struct tm__exec_cfg *cfg);

#endif
