/*
 * tasks.h - what the copy and verify passes read from the state file: the
 * nodes to copy depth by depth, the folders whose attributes to set, the
 * folders to verify, and each folder's copied children. The SQL lives in
 * tasks.c; the engine sees rows.
 *
 * Threads: a struct tm__tasks is one read-only connection; one thread at
 * a time (the coordinator has one, verify's workers share a few behind
 * mutexes). It sees what the writer committed.
 */
#ifndef TM_TASKS_H
#define TM_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct tm__tasks;

/* The kinds of task rows. */
enum tm__task_kind {
    TM_TASKS_COPY = 0, /* pending nodes of one depth (with the parent's
                          copy status; a folder whose listing failed has
                          its reason) */
    TM_TASKS_ATTRS,    /* folders copied or already there, whose mode and
                          mtime the copy sets at its end */
    TM_TASKS_VERIFY,   /* folders whose children verify checks (copied,
                          already there, failed by an earlier verify, or
                          kept by --no-overwrite with other attributes) */
    TM_TASKS_LINKS,    /* pending files of one depth in a link group,
                          after TM_TASKS_COPY of that depth (which leaves
                          out all but the first of each group), with the
                          first one to link to: itself when the copy
                          changed which one is first (--no-overwrite
                          skipped it): then it is copied on its own */
};

/* One task row. Strings are valid during the callback only. */
struct tm__task_row {
    int64_t id;            /* the source node */
    const char *path;      /* its path */
    const char *why;       /* TM_TASKS_COPY: a folder whose listing failed:
                              the reason; else NULL */
    int depth;             /* its depth */
    int type;              /* enum tm__type */
    int64_t size, mtime;   /* as discovered */
    uint32_t mode;         /* permission bits */
    int cf;                /* enum tm__cf */
    int parent_cs;         /* TM_TASKS_COPY: the parent's copy status; else
                              the node's own */
    int parent_cf;         /* TM_TASKS_COPY: the parent's conflict; else
                              CF_NONE */
    const void *resume;    /* TM_TASKS_COPY: an interrupted write's state
                              (uploads), or NULL */
    size_t resume_len;     /* its bytes */
    const char *link;      /* TM_TASKS_LINKS: the path of the first file of
                              the link group, to link to; else NULL */
    int link_cs;           /* TM_TASKS_LINKS: its copy status (enum tm__cs) */
};

/* A copied (or already there) source child, as verify checks it. */
struct tm__kid_row {
    int64_t id;            /* the node */
    const char *name;      /* its name (name_len bytes) */
    size_t name_len;
    const char *path;      /* its path */
    int type;              /* enum tm__type */
    int64_t size, mtime;   /* as discovered */
    int cs, cf;            /* enum tm__cs, tm__cf */
    uint32_t mode;         /* permission bits */
    int owned;             /* 1: uid and gid are known */
    int64_t uid, gid;      /* owner, with owned */
    int has_hash;          /* discover --checksum recorded the content
                              hash of this file, already there */
    uint64_t hash;         /* that hash (XXH3-64) */
    uint64_t xattrs;       /* digest of its extended attributes as
                              discovered (tm__xattr_hash; 0: none) */
    const char *link;      /* a file of a link group that the copy wrote
                              (not one already there), whose first file
                              the copy wrote too: that file's path (the
                              node must be a link of it); else NULL */
};

int tm__tasks_open(struct tm__tasks **out, const char *db_path,
                   struct tm__buf *err);
void tm__tasks_close(struct tm__tasks *q);
/* The message of the last failure. */
const char *tm__tasks_errmsg(struct tm__tasks *q);
/* Calls cb for at most limit rows of kind (at depth, for TM_TASKS_COPY)
 * whose id is above after, in id order. cb returns 0 or an error that
 * stops the read (and is returned). */
int tm__tasks_rows(struct tm__tasks *q, int kind, int depth, int64_t after,
                   int limit, int (*cb)(void *ctx, const struct tm__task_row *r),
                   void *ctx);
/* Reads the current row of st, a query with the columns of kind's query
 * in tasks.c (lease_q.c's claims have them too), into *r: 0, TM_ENOMEM or
 * TM_ECORRUPT (a value the state file should not hold). */
struct tm__stmt;
int tm__tasks_decode(struct tm__stmt *st, int kind, struct tm__task_row *r);
/* *depth = the deepest depth that holds a node. */
int tm__tasks_max_depth(struct tm__tasks *q, int *depth);
/* Calls cb for at most limit children of folder parent that verify
 * checks (copied, already there, or failed by an earlier verify; not
 * "other"), by name after the name after (after_len bytes; 0: from the
 * first). */
int tm__tasks_kids(struct tm__tasks *q, int64_t parent, const char *after,
                   size_t after_len, int limit,
                   int (*cb)(void *ctx, const struct tm__kid_row *r), void *ctx);
/* 1 when folder parent has a source child called name, 0 when not, or an
 * error. */
int tm__tasks_has_child(struct tm__tasks *q, int64_t parent, const char *name,
                        size_t len);

#endif
