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

struct tm__exec_cfg {
    int mode;                    /* enum tm__exec_mode */
    struct tm__adapter *ad[2];   /* source and destination */
    const char *root[2];         /* their specs, for messages */
    const char *db_path;         /* state file, for the readers */
    struct tm__db *db;                 /* write connection, lent to the writer */
    int workers;                 /* threads */
    int retries;                 /* retries of a retryable failure */
    int no_overwrite;            /* copy: keep every existing destination file */
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
};

/* Runs the pass: 0 when done (cfg->problems counts what went wrong),
 * TM_ESTOPPED when a stop was asked, or a fatal error (e.g. TM_ENOSPC;
 * TM_ENOENT: a root was removed, moved or replaced during the run). */
int tm__exec_run(struct tm__exec_cfg *cfg);

#endif
