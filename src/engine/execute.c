/*
 * execute.c - the copy and verify passes of execute.h.
 *
 * Threads: the caller's thread is the coordinator; the tasks run as jobs
 * of the one task pool (pool.c), at most --workers at a time; the writer
 * (store/writer.c) records the outcomes. The coordinator reads tasks from
 * the state file (store/tasks.c) in keyset pages into a bounded ready
 * queue, stage by stage:
 *   copy    one stage per depth (1, 2, ...): every pending folder, file and
 *           symlink of that depth (one that differs from the destination's
 *           only in its attributes, conflict attrs, gets them set in place).
 *           A depth starts once the previous one is committed, so a node's
 *           parent is known to exist. After each depth, one stage links
 *           that depth's files of a link group (one source inode, schema
 *           v5) to the first file of the group, written at that depth or
 *           above (store/tasks.c picks it by depth and id). Then one stage sets the mode and mtime
 *           of every folder (their contents are complete), and the
 *           destination is synced.
 *   verify  one stage: every folder whose copy is done or already existed;
 *           a worker lists its destination twin and checks each child
 *           (content, mode, owner with discover --owner, a folder's mtime,
 *           a special file's kind and device, a hard link's inode);
 *           a child that does not match becomes a failed node (retry
 *           redoes it).
 *
 * A job that ends takes the next ready task itself; the coordinator is
 * woken when the queue runs low or the stage may be over. Every storage
 * call goes through the adapter wrappers, and every retry through the
 * pool's retry policy (full-jitter backoff, the storage's retry-after,
 * cut short by a stop).
 *
 * Lock order: r->mu, then a reader's mutex, then the writer's mutex
 * (tm__writer_error); never the reverse. r->mu is never held while calling
 * an adapter or SQLite, nor while handing anything to the writer (it may
 * wait for a commit, whose on_commit() takes r->mu).
 */
#include "engine/execute.h"

#include "engine/engine.h"
#include "engine/observe.h"
#include "engine/pool.h"
#include "store/store.h"
#include "store/tasks.h"
#include "store/writer.h"
#include "util/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <time.h>
#include <xxhash.h>

#define PAGE 1024
#define WRITER_MAX_ROWS 4096 /* rows queued for the writer: see discover.c */
#define IO_BUF (1 << 20)
#define READERS 2            /* verify's shared read connections */
#define KIDS_PAGE 512        /* source children verify reads at once */
#define CLAIM_POLL_NS 20000000LL /* with leases: nothing to claim, look
                                     again after this */

enum stage { ST_COPY_DEPTH, ST_LINKS, ST_ATTRS, ST_VERIFY };

struct runner;

struct task {
    struct tm__job job;    /* pool link; first */
    struct runner *r;      /* the runner */
    int stage;             /* enum stage */
    int64_t id;            /* source row */
    char *path;            /* root-relative path (malloc'd, with why) */
    const char *why;       /* a folder whose listing failed: the reason
                              (in path's allocation), else NULL */
    const char *link;      /* ST_LINKS: the first file of its link group,
                              to link to (in path's allocation) */
    int link_cs;           /* ST_LINKS: that file's copy status */
    int depth;             /* its depth */
    int type;              /* enum tm__type */
    int64_t size, mtime;   /* as discovered */
    uint32_t mode;         /* permission bits */
    int cf;                /* enum tm__cf */
    int parent_cs;         /* copy status of the parent */
    int parent_cf;         /* conflict of the parent */
    void *resume;          /* an interrupted write's state (uploads), or
                              NULL (malloc'd) */
    size_t resume_len;     /* its bytes */
    int wrote;             /* a write of this file was begun (open_write
                              succeeded): its uploads row goes at the end */
    int64_t lease;         /* the lease that holds it (treemig worker), 0 */
    int reclaimed;         /* taken from a lease that expired: old_key's
                              temporaries of it are removed first */
    unsigned char old_key[TM_KEY_LEN]; /* that lease's temporary-name key */
};

/* What a running task works with: taken from the runner's free list, so
 * that there are never more of them than tasks in flight. */
struct worker {
    struct worker *next;    /* free list link */
    struct runner *r;       /* the runner */
    char *buf, *buf2;       /* I/O buffers */
    struct tm__buf scratch; /* symlink targets */
    struct tm__buf scratch2; /* the destination's, for verify */
    struct tm__buf xattrs;  /* a source node's extended attributes */
    struct tm__buf refused; /* those the destination refused ("name:
                               reason; "), for the node's record */
    struct tm__aerr ae;     /* the last failed storage call */
    int err_src;            /* it was the source's */
};

/* A read connection verify's tasks share. */
struct reader {
    pthread_mutex_t mu;     /* one task at a time */
    struct tm__tasks *q;    /* the connection */
};

/* The ETA's window: rates are taken over the last RATE_WINDOW_S seconds
 * of progress (samples once a second), and said only after
 * RATE_MIN_S seconds of them. */
enum { RATE_SAMPLES = 16, RATE_WINDOW_S = 10, RATE_MIN_S = 3 };

struct runner {
    struct tm__exec_cfg *cfg;  /* what to do */
    pthread_mutex_t mu;        /* guards everything below */
    pthread_cond_t cv_coord;   /* a task ended or was committed */
    struct task **win;         /* ring of ready tasks */
    size_t head, len, cap;     /* ring position, fill, capacity */
    int in_flight;             /* tasks being worked on */
    int64_t fetched, finished, committed; /* tasks of the stage */
    int stage;                 /* enum stage */
    int depth;                 /* copy: the depth of the stage */
    int quit;                  /* tasks must give up */
    atomic_int quitting;       /* quit, read without r->mu */
    int fatal;                 /* first fatal error of a task */
    struct tm__buf fatal_msg;  /* its message */
    int64_t done_nodes;        /* nodes copied or checked */
    int64_t done_bytes;        /* bytes copied or hashed */
    int64_t problems;          /* failures / mismatches */
    struct {
        int64_t t, nodes, bytes; /* when, done_nodes, done_bytes */
    } smp[RATE_SAMPLES];       /* progress once a second, a ring (measure) */
    int n_smp, smp_head;       /* samples held, the oldest's index */
    double ips, bps;           /* items and bytes per second over the window */
    int64_t eta;               /* seconds left, or -1 (not meaningful yet) */
    int64_t prec;              /* mtime precision of the comparison */
    struct tm__attr_rule rule; /* what the attributes' comparison takes */
    int folder_attrs;          /* the destination keeps folders' modes and
                                  mtimes (set_attr): verify compares them */
    struct tm__writer *w;      /* the writer */
    struct tm__tasks *q;       /* the coordinator's reads */
    struct reader rdr[READERS]; /* verify's reads */
    atomic_uint next_reader;   /* round robin over rdr */
    struct tm__pool *pool;     /* the jobs */
    struct worker *free_wk;    /* workers not in use */
    struct tm__logger *lg;     /* the log service, or NULL */
    struct tm__limit lim[2];   /* each side's limits (--bwlimit, --tps-limit) */
    int limited;               /* lim is set on the adapters */
};

static int stopping(struct runner *r)
{
    return atomic_load(r->cfg->stop) != 0;
}

static const char *const side_names[2] = { "source", "destination" };

/* Records the first fatal error with its message and tells everyone to
 * stop. Called with r->mu held. */
static void set_fatal_msg(struct runner *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_fatal_msg(struct runner *r, int err, const char *fmt, ...)
{
    if (!r->fatal) {
        va_list ap;
        r->fatal = err;
        tm__buf_reset(&r->fatal_msg);
        va_start(ap, fmt);
        tm__buf_vaddf(&r->fatal_msg, fmt, ap);
        va_end(ap);
    }
    r->quit = 1;
    atomic_store(&r->quitting, 1);
    pthread_cond_broadcast(&r->cv_coord);
}

/* Checks that the roots are still where they were (the destination only,
 * before a write: a source root moved away is still read correctly; both
 * after a failure, which a vanished root would explain). Returns 0, or
 * TM_ENOENT after recording the fatal error that names the root. */
static int roots_gone(struct runner *r, int both)
{
    int side;
    for (side = both ? TM_SRC : TM_DST; side <= TM_DST; side++) {
        if (tm__adapter_check_root(r->cfg->ad[side]) == 0)
            continue;
        pthread_mutex_lock(&r->mu);
        set_fatal_msg(r, TM_ENOENT, "the %s root %s is gone (removed, moved, "
                      "replaced or unmounted): nothing more is %s; put it "
                      "back and run the command again", side_names[side],
                      r->cfg->root[side] ? r->cfg->root[side] : "",
                      side == TM_DST ? "written" : "read");
        pthread_mutex_unlock(&r->mu);
        return TM_ENOENT;
    }
    return 0;
}

static struct tm__result *copy_result(const struct task *t, int new_cs,
                                      const char *error)
{
    struct tm__result *res = calloc(1, sizeof *res);
    if (!res)
        return NULL;
    tm__buf_init(&res->arena);
    res->kind = TM_R_COPY;
    res->side = TM_SRC;
    res->folder_id = t->id;
    res->depth = t->depth;
    res->type = (int8_t)t->type;
    res->old_cs = CS_PENDING;
    res->new_cs = (int8_t)new_cs;
    res->cf = (int8_t)t->cf;
    res->size = t->size;
    res->attempts = 1;
    res->phase = "copy";
    /* a leased outcome counts only while the lease holds the node */
    res->lease = t->stage == ST_COPY_DEPTH || t->stage == ST_LINKS ? t->lease : 0;
    res->path = strdup(t->path);
    res->error = error ? strdup(error) : NULL;
    if (!res->path || (error && !res->error)) {
        tm__result_free(res);
        return NULL;
    }
    return res;
}

static struct tm__result *problem(const char *phase, int64_t id, const char *path,
                                  const char *why)
{
    struct tm__result *res = calloc(1, sizeof *res);
    if (!res)
        return NULL;
    tm__buf_init(&res->arena);
    res->kind = TM_R_PROBLEM;
    res->side = TM_DST;
    res->folder_id = id;
    res->phase = phase;
    res->attempts = 1;
    res->path = strdup(path);
    res->error = strdup(why);
    if (!res->path || !res->error) {
        tm__result_free(res);
        return NULL;
    }
    return res;
}

/* A node verify found different on the destination: it becomes a failed
 * node (copy status failed, the reason in error and task_errors), so that
 * retry copies it again. new_cf: the conflict it gets, so that the copy
 * replaces what is there (CF_NONE: nothing there to replace). */
static struct tm__result *verify_failed(int64_t id, const char *path, int depth,
                                        int type, int64_t size, int old_cs,
                                        int old_cf, int new_cf, const char *why)
{
    struct tm__result *res = calloc(1, sizeof *res);
    if (!res)
        return NULL;
    tm__buf_init(&res->arena);
    res->kind = TM_R_COPY;
    res->side = TM_SRC;
    res->folder_id = id;
    res->depth = depth;
    res->type = (int8_t)type;
    res->old_cs = (int8_t)old_cs;
    res->new_cs = CS_FAILED;
    res->cf = (int8_t)old_cf;
    res->new_cf = (int8_t)new_cf;
    res->cf_change = 1;
    res->size = size;
    res->attempts = 0;
    res->phase = "verify";
    res->path = strdup(path);
    res->error = strdup(why);
    if (!res->path || !res->error) {
        tm__result_free(res);
        return NULL;
    }
    return res;
}

/* How the real name may be taken: replacing what is there only where
 * discovery saw the source's twin there (a file that differs), and never
 * with --no-overwrite. Anything else that is at the name now (made after
 * discovery, or below a destination folder that could not be listed) is
 * kept: TM_EEXIST, then copy_task() decides (placed_same()). */
static unsigned place_flags(const struct runner *r, const struct task *t)
{
    return r->cfg->no_overwrite || t->cf == CF_NONE ? TM_NOREPLACE : 0;
}

/* 1 when the copy keeps extended attributes and ACLs: not discover
 * --no-xattrs, and both storages keep them. */
static int xattrs_kept(const struct runner *r)
{
    const struct tm__adapter *sa = r->cfg->ad[TM_SRC], *da = r->cfg->ad[TM_DST];
    return r->cfg->xattrs && (sa->caps & TM_CAP_XATTRS) &&
           (da->caps & TM_CAP_XATTRS) && sa->get_xattrs;
}

/* A failure the engine finds itself (not a storage's): described in wk's
 * error as one of this node. Returns rc. */
static int own_err(struct worker *wk, int rc, const char *msg)
{
    tm__aerr_clear(&wk->ae);
    wk->ae.cls = TM_ERR_NODE;
    tm__aerr_set(&wk->ae, rc, "%s", msg);
    return tm__aerr_finish(&wk->ae, rc);
}

/* A write's checkpoint (struct tm__wattr): where it stands goes to the
 * state file, so that a copy after a crash goes on from there. */
static int checkpoint(void *ctx, const void *state, size_t len)
{
    const struct task *t = ctx;
    struct tm__result *res = calloc(1, sizeof *res);
    if (!res || !(res->value = malloc(len ? len : 1))) {
        free(res);
        return TM_ENOMEM;
    }
    tm__buf_init(&res->arena);
    res->kind = TM_R_CHECKPOINT;
    res->folder_id = t->id;
    memcpy(res->value, state, len);
    res->size = (int64_t)len;
    return tm__writer_submit(t->r->w, res);
}

/* Copies one file: the source must still be what discovery saw, before and
 * after; the bytes go to a temporary name that is renamed on success. */
static int copy_file(struct worker *wk, const struct task *t)
{
    struct tm__adapter *sa = wk->r->cfg->ad[TM_SRC], *da = wk->r->cfg->ad[TM_DST];
    struct tm__rfile *in = NULL;
    struct tm__wfile *out = NULL;
    struct tm__entry st, st2 = { 0 };
    int64_t n = 0;
    uint32_t mode;
    int rc;

    rc = tm__adapter_open_read(sa, t->path, &in, &st, &wk->ae);
    if (rc) {
        wk->err_src = 1;
        return rc;
    }
    if (st.size != t->size || st.mtime != t->mtime) {
        rc = own_err(wk, TM_ECHANGED, "changed since discovery");
        goto out;
    }
    tm__buf_reset(&wk->xattrs);
    tm__buf_reset(&wk->refused);
    if (xattrs_kept(wk->r) &&
        (rc = tm__adapter_get_xattrs(sa, t->path, TM_T_FILE, &wk->xattrs,
                                     &wk->ae)) != 0) {
        wk->err_src = 1;
        goto out;
    }
    {
        struct tm__wattr w;
        memset(&w, 0, sizeof w);
        /* exactly the source's, also none (not one inherited) */
        w.xattrs = !xattrs_kept(wk->r) ? NULL : wk->xattrs.len ? wk->xattrs.buf : "";
        w.xattrs_len = wk->xattrs.len;
        w.refused = &wk->refused;
        w.size = t->size;
        w.mtime = t->mtime;
        w.mode = t->mode;
        w.uid = (sa->caps & TM_CAP_OWNER) ? st.uid : -1;
        w.gid = (sa->caps & TM_CAP_OWNER) ? st.gid : -1;
        w.resume = t->resume;
        w.resume_len = t->resume_len;
        w.checkpoint = checkpoint;
        w.checkpoint_ctx = (void *)t;
        rc = tm__adapter_open_write(da, t->path, &w, &out, &wk->ae);
    }
    if (rc)
        goto out;
    ((struct task *)t)->wrote = 1;
    if (tm__adapter_can_copy_from(da, sa)) {
        n = tm__adapter_copy_from(out, in, t->size, &wk->ae);
    } else if (tm__adapter_can_write_from(out, in)) {
        /* from the source's descriptor straight to the destination's
         * (sendfile): no pass through the buffer */
        while (n < t->size) {
            int64_t want = t->size - n > IO_BUF ? IO_BUF : t->size - n;
            int src_failed = 0;
            int64_t put = tm__adapter_write_from(out, in, (size_t)want, &src_failed,
                                                 &wk->ae);
            if (put < 0) {
                n = put;
                if (src_failed)
                    wk->err_src = 1;
                break;
            }
            n += put;
            if (put < want)
                break; /* the source ended early: a change, below */
        }
    } else {
        while (n < t->size) {
            int64_t got = tm__adapter_read(in, wk->buf, IO_BUF, &wk->ae), put;
            if (got <= 0) {
                if (got < 0) {
                    n = got;
                    wk->err_src = 1;
                }
                break;
            }
            put = tm__adapter_write(out, wk->buf, (size_t)got, &wk->ae);
            if (put < 0) {
                n = put;
                break;
            }
            n += got;
        }
    }
    if (n < 0) {
        rc = (int)n;
        goto out;
    }
    /* a file that grew, shrank or was rewritten meanwhile is not copied as
     * a torn file: it fails with "changed since discovery"; a failed fstat
     * is that failure (a transient one is retried), not a change */
    if (n == t->size && (rc = tm__adapter_fstat(in, &st2, &wk->ae)) != 0) {
        wk->err_src = 1;
        goto out;
    }
    if (n != t->size || st2.size != t->size || st2.mtime != t->mtime) {
        rc = own_err(wk, TM_ECHANGED, "changed since discovery");
        goto out;
    }
    {
        /* without --owner the copy's user owns the file: a set-ID bit of
         * another user's (or group's) file would hand out the copy's own
         * powers, and is dropped (compare.c) */
        struct tm__attrs sattr = { t->mode, (sa->caps & TM_CAP_OWNER) != 0,
                                   st.uid, st.gid };
        mode = tm__copy_mode(&wk->r->rule, TM_T_FILE, &sattr);
    }
    if (wk->r->cfg->owner) {
        out->set_owner = 1;
        out->uid = st.uid;
        out->gid = st.gid;
    }
    rc = tm__adapter_commit(out, t->mtime, mode, place_flags(wk->r, t), &wk->ae);
    out = NULL;
    if (!rc) {
        pthread_mutex_lock(&wk->r->mu);
        wk->r->done_bytes += t->size;
        pthread_mutex_unlock(&wk->r->mu);
    }
out:
    tm__adapter_abort(out);
    tm__adapter_close_read(in);
    return rc;
}

/* --owner for a folder or symlink: the source's owner, by path. */
static int copy_owner(struct worker *wk, const char *path)
{
    struct tm__adapter *sa = wk->r->cfg->ad[TM_SRC], *da = wk->r->cfg->ad[TM_DST];
    struct tm__entry st;
    int rc = tm__adapter_stat(sa, path, &st, &wk->ae);
    if (rc) {
        wk->err_src = 1;
        return rc;
    }
    return tm__adapter_chown(da, path, st.uid, st.gid, &wk->ae);
}

/* fix_attrs(): the node must be copied whole. */
#define WHOLE 1

/* A file or symlink that differs from its destination twin only in its
 * attributes (CF_ATTRS): they are set in place, through the storage's
 * set_leaf_attr and (a file) set_xattrs, and the content is kept (as
 * rsync does). The source must
 * still be what discovery saw ("changed since discovery" otherwise), and
 * what is at the name on the destination must still hold the source's
 * content (same type, size and mtime, as discovery compares). Returns 0
 * when done, an error, or WHOLE: the node is copied whole instead, since
 * the destination's node changed, is gone, has other links, is another
 * user's, or the storage cannot change it in place. */
static int fix_attrs(struct worker *wk, const struct task *t)
{
    struct runner *r = wk->r;
    struct tm__adapter *sa = r->cfg->ad[TM_SRC], *da = r->cfg->ad[TM_DST];
    struct tm__leaf_attr want;
    struct tm__entry s, d;
    struct tm__attrs sattr;
    int rc = tm__adapter_stat(sa, t->path, &s, &wk->ae);

    if (rc) {
        wk->err_src = 1;
        return rc;
    }
    if (s.type != t->type || s.size != t->size || s.mtime != t->mtime)
        return own_err(wk, TM_ECHANGED, "changed since discovery");
    if (!da->set_leaf_attr)
        return WHOLE;
    rc = tm__adapter_stat(da, t->path, &d, &wk->ae);
    if (rc == TM_ENOENT)
        return WHOLE;
    if (rc)
        return rc;
    if (d.type != t->type || tm__mtime_out_of_range(d.mtime) ||
        tm__compare_leaf(t->size, t->mtime, d.size, d.mtime, r->prec) != CF_NONE)
        return WHOLE;
    sattr = (struct tm__attrs){ t->mode, (sa->caps & TM_CAP_OWNER) != 0, s.uid,
                                s.gid };
    memset(&want, 0, sizeof want);
    want.type = t->type;
    want.size = d.size;
    want.mtime = d.mtime;
    want.mode = tm__copy_mode(&r->rule, t->type, &sattr);
    want.set_owner = r->cfg->owner;
    want.uid = s.uid;
    want.gid = s.gid;
    if (t->type == TM_T_SYMLINK && !want.set_owner)
        return 0; /* a symlink has no mode of its own to set */
    rc = tm__adapter_set_leaf_attr(da, t->path, &want, &wk->ae);
    if (!rc && t->type == TM_T_FILE && xattrs_kept(r) && da->set_xattrs) {
        /* and its extended attributes and ACLs, in place too: exactly the
         * source's (those it has beyond them go) */
        tm__buf_reset(&wk->xattrs);
        rc = tm__adapter_get_xattrs(sa, t->path, TM_T_FILE, &wk->xattrs, &wk->ae);
        if (rc) {
            wk->err_src = 1;
            return rc;
        }
        rc = tm__adapter_set_xattrs(da, t->path, TM_T_FILE, wk->xattrs.buf,
                                    wk->xattrs.len, &wk->refused, &wk->ae);
        if (rc == TM_ECHANGED)
            return WHOLE;
    }
    if (rc == TM_ECHANGED || rc == TM_EPERM) {
        tm__log(r->lg, TM_INFO, "copy", t->id, t->path, "copy %s: %s: copied "
                "whole instead of setting its attributes in place", t->path,
                wk->ae.msg);
        return WHOLE;
    }
    if (!rc) {
        pthread_mutex_lock(&r->mu);
        r->done_bytes += t->type == TM_T_FILE ? t->size : 0;
        pthread_mutex_unlock(&r->mu);
    }
    return rc;
}

/* A file of a link group that is not its first (ST_LINKS): linked on the
 * destination to the first one, which this migration's copy wrote (that
 * copy was committed at an earlier stage). The source must still be what
 * discovery saw and still share that inode. Returns 0, an error, or WHOLE:
 * the file is copied on its own (the first one is not there, failed or
 * changed, or the storage cannot link). */
static int link_file(struct worker *wk, const struct task *t)
{
    struct runner *r = wk->r;
    struct tm__adapter *sa = r->cfg->ad[TM_SRC], *da = r->cfg->ad[TM_DST];
    struct tm__entry s, f;
    int rc;

    if (t->link_cs != CS_SUCCESSFUL || !da->link || strcmp(t->link, t->path) == 0)
        return WHOLE;
    rc = tm__adapter_stat(sa, t->path, &s, &wk->ae);
    if (!rc)
        rc = tm__adapter_stat(sa, t->link, &f, &wk->ae);
    if (rc) {
        wk->err_src = 1;
        return rc;
    }
    if (s.type != TM_T_FILE || s.size != t->size || s.mtime != t->mtime)
        return own_err(wk, TM_ECHANGED, "changed since discovery");
    if (f.type != TM_T_FILE || s.dev != f.dev || s.ino != f.ino)
        return WHOLE; /* no longer one inode on the source */
    rc = tm__adapter_link(da, t->link, t->path, place_flags(r, t), &wk->ae);
    if (rc == TM_ECHANGED || rc == TM_EINVAL || rc == TM_ENOENT) {
        tm__log(r->lg, TM_WARNING, "copy", t->id, t->path, "copy %s: cannot link "
                "it to %s (%s): copied on its own", t->path, t->link, wk->ae.msg);
        return WHOLE;
    }
    return rc;
}

/* A special file (FIFO, device, socket): made again on the destination
 * with the source's kind and device number as they are now (the kind must
 * still be the one discovery saw), the mode and mtime discovery saw. */
static int copy_special(struct worker *wk, const struct task *t)
{
    struct tm__adapter *sa = wk->r->cfg->ad[TM_SRC], *da = wk->r->cfg->ad[TM_DST];
    struct tm__entry st;
    int rc = tm__adapter_stat(sa, t->path, &st, &wk->ae);
    if (rc) {
        wk->err_src = 1;
        return rc;
    }
    if (st.type != TM_T_OTHER || (st.mode & S_IFMT) != (t->mode & S_IFMT))
        return own_err(wk, TM_ECHANGED, "changed since discovery");
    rc = tm__adapter_mknod(da, t->path, t->mode & (S_IFMT | 07777), st.rdev,
                           t->mtime, place_flags(wk->r, t), &wk->ae);
    return rc || !wk->r->cfg->owner ? rc : copy_owner(wk, t->path);
}

static int copy_one(struct worker *wk, const struct task *t)
{
    struct tm__adapter *sa = wk->r->cfg->ad[TM_SRC], *da = wk->r->cfg->ad[TM_DST];
    int rc;
    if (t->link && (rc = link_file(wk, t)) != WHOLE)
        return rc;
    if (t->cf == CF_ATTRS && (t->type == TM_T_FILE || t->type == TM_T_SYMLINK) &&
        (rc = fix_attrs(wk, t)) != WHOLE)
        return rc;
    switch (t->type) {
    case TM_T_FOLDER:
        /* a storage whose folders keep what mkdir gives them gets the
         * final mode and mtime now (attrs_task then has nothing to do) */
        if (da->mkdir_attr && !tm__mtime_out_of_range(t->mtime))
            return tm__adapter_mkdir_attr(da, t->path, t->mtime, t->mode, &wk->ae);
        return tm__adapter_mkdir(da, t->path, &wk->ae);
    case TM_T_SYMLINK:
        if (!sa->readlink || !da->symlink)
            return own_err(wk, TM_EINVAL, "the storage cannot hold a symlink");
        rc = tm__adapter_readlink(sa, t->path, &wk->scratch, &wk->ae);
        wk->err_src = rc != 0;
        if (!rc)
            rc = tm__adapter_symlink(da, t->path, wk->scratch.buf, t->mtime,
                                     place_flags(wk->r, t), &wk->ae);
        return rc || !wk->r->cfg->owner ? rc : copy_owner(wk, t->path);
    case TM_T_FILE:
        return copy_file(wk, t);
    case TM_T_OTHER:
        return copy_special(wk, t);
    default:
        return own_err(wk, TM_EINVAL, "not a file, folder or symlink");
    }
}

/* A folder gets its final mode only at the end of the copy; a later run
 * (retry) may find it read-only (a source folder of mode 0555, say). Lets
 * its owner write into it again for the time being: the final pass sets
 * the mode back. Returns 1 when it did. */
static int unlock_parent(struct worker *wk, const struct task *t)
{
    struct tm__adapter *da = wk->r->cfg->ad[TM_DST];
    const char *slash = strrchr(t->path, '/');
    struct tm__aerr ae; /* not the failure being handled */
    char *parent;
    int rc;
    if ((t->parent_cs != CS_SUCCESSFUL && t->parent_cs != CS_ALREADY) ||
        !da->set_attr || !slash || slash == t->path)
        return 0;
    parent = strndup(t->path, (size_t)(slash - t->path));
    if (!parent)
        return 0;
    rc = tm__adapter_set_attr(da, parent, TM_MTIME_KEEP, 0700, &ae);
    free(parent);
    return rc == 0;
}

/* Copies the node of t, retrying under the retry policy; returns the last
 * result (its detail in wk->ae) or TM_ESTOPPED. */
static int copy_task_(struct worker *wk, const struct task *t,
                      struct tm__result **out);

static int with_retries(struct worker *wk, const struct task *t, int *attempts)
{
    struct runner *r = wk->r;
    struct tm__retry rt;
    int rc, unlocked = 0, again;

    tm__retry_init(&rt, r->cfg->retries, r->cfg->stop);
    for (*attempts = 1;;) {
        wk->err_src = 0;
        rc = copy_one(wk, t);
        if (!rc)
            return 0;
        if (rc == TM_EACCES && !unlocked && (unlocked = unlock_parent(wk, t)))
            continue;
        /* a throttle waits as long as the side that said so asks */
        again = tm__retry_again(&rt, &wk->ae);
        if (again == TM_ESTOPPED)
            return TM_ESTOPPED;
        if (!again)
            return rc;
        if (wk->ae.cls == TM_ERR_THROTTLE) {
            tm__log(r->lg, TM_DEBUG, "copy", t->id, t->path,
                    "copy %s: throttled, waiting %lld ms", t->path,
                    (long long)tm__retry_last_wait(&rt));
        } else {
            (*attempts)++;
            tm__log(r->lg, TM_WARNING, "copy", t->id, t->path,
                    "copy %s: %s; retry %d of %d after %lld ms", t->path,
                    wk->ae.msg, rt.tries, rt.max,
                    (long long)tm__retry_last_wait(&rt));
        }
    }
}

/* 1 when what is at the node's real name on the destination is the node
 * as the copy makes it (same type, size and mtime, as discovery compares):
 * a copy redone after a crash finds its own earlier result there. */
static int placed_same(struct worker *wk, const struct task *t)
{
    struct tm__adapter *da = wk->r->cfg->ad[TM_DST];
    struct tm__aerr ae;
    struct tm__entry e;
    if (tm__adapter_stat(da, t->path, &e, &ae) != 0)
        return 0;
    return e.type == t->type && e.size == t->size &&
           !tm__mtime_out_of_range(e.mtime) &&
           tm__compare_leaf(t->size, t->mtime, e.size, e.mtime, wk->r->prec) ==
               CF_NONE;
}

/* 1 when a failure of the copy ends the whole run rather than failing its
 * node: a fatal class (a full or read-only destination, credentials
 * refused), except what only a destination can be (full, over quota,
 * read-only) said by the source. */
static int copy_fatal(const struct worker *wk, int rc)
{
    if (!rc || wk->ae.cls != TM_ERR_FATAL)
        return 0;
    if (wk->err_src && (rc == TM_ENOSPC || rc == TM_EDQUOT || rc == TM_EROFS))
        return 0;
    return 1;
}

/* The end of t's file writes: a write an earlier run began and this one
 * did not finish is given up on the storage (nothing left behind, nothing
 * billed); its uploads row goes with the outcome res when that is final.
 * Returns res. */
static struct tm__result *end_writes(struct worker *wk, const struct task *t,
                                     struct tm__result *res)
{
    struct tm__aerr ae;
    if (!res || (!t->resume && !t->wrote))
        return res;
    if (res->new_cs == CS_SUCCESSFUL) {
        res->drop_upload = 1; /* the write completed: nothing to resume */
    } else if (t->resume && !t->wrote) {
        /* this run did not take it up (the source changed, the node is
         * skipped...): the earlier run's write is given up */
        res->drop_upload = tm__adapter_forget_write(wk->r->cfg->ad[TM_DST], t->path,
                                                    t->resume, t->resume_len,
                                                    &ae) == 0;
    } else {
        /* this run's own write ended with the failure: the storage's abort
         * left nothing (a failed commit or abort gives the write up) */
        res->drop_upload = 1;
    }
    return res;
}

/* floor(t / prec), also for times before the epoch. */
static int64_t mtime_tick(int64_t t, int64_t prec)
{
    int64_t q = t / prec;
    if ((t % prec != 0) && (t < 0))
        q--;
    return q;
}

/* copy --update: 1 when what is at t's path on the destination now is a
 * node of t's type whose mtime is later than the source's (at the coarser
 * precision of the two storages), whatever its size; 0 when it is not
 * (or nothing is there); an error when it cannot be told (wk->ae). */
static int dst_is_newer(struct worker *wk, const struct task *t)
{
    const struct runner *r = wk->r;
    struct tm__adapter *da = r->cfg->ad[TM_DST];
    int64_t prec = r->cfg->ad[TM_SRC]->mtime_precision;
    struct tm__entry e;
    int rc;
    if (da->mtime_precision > prec)
        prec = da->mtime_precision;
    if (prec < 1)
        prec = 1;
    memset(&e, 0, sizeof e);
    rc = tm__adapter_stat(da, t->path, &e, &wk->ae);
    if (rc == TM_ENOENT)
        return 0;
    if (rc)
        return rc;
    if (e.type != t->type || tm__mtime_out_of_range(e.mtime) ||
        tm__mtime_out_of_range(t->mtime))
        return 0;
    return mtime_tick(e.mtime, prec) > mtime_tick(t->mtime, prec);
}

static int copy_task(struct worker *wk, const struct task *t,
                     struct tm__result **out)
{
    int rc = copy_task_(wk, t, out);
    if (!rc)
        *out = end_writes(wk, t, *out);
    return rc;
}

static int copy_task_(struct worker *wk, const struct task *t,
                      struct tm__result **out)
{
    struct runner *r = wk->r;
    char why[512];
    int rc, attempts = 1;
    /* a folder --no-overwrite kept with its other attributes is there:
     * what it holds is copied as into any folder */
    int parent_kept = t->parent_cs == CS_SKIPPED && t->parent_cf == CF_ATTRS;

    *out = NULL;
    if (!parent_kept &&
        (t->parent_cs == CS_SKIPPED || t->parent_cs == CS_EXCLUDED)) {
        *out = copy_result(t, CS_SKIPPED, "its folder is not copied");
        return *out ? 0 : TM_ENOMEM;
    }
    if (!parent_kept && t->parent_cs != CS_ALREADY &&
        t->parent_cs != CS_SUCCESSFUL) {
        *out = copy_result(t, CS_FAILED, "its folder could not be copied");
        return *out ? 0 : TM_ENOMEM;
    }
    if (t->why) {
        /* copy --force: what the folder holds is unknown, so it is not
         * made (an empty folder would pass for a copied one); it stays
         * failed with its reason, and retry lists it again */
        snprintf(why, sizeof why, "not copied: the source folder could not be "
                 "listed (%s); retry lists it again", t->why);
        *out = copy_result(t, CS_FAILED, why);
        return *out ? 0 : TM_ENOMEM;
    }
    if (r->cfg->no_overwrite && t->cf == CF_ATTRS) {
        /* (the reason ends as verify's unchecked() looks for it) */
        *out = copy_result(t, CS_SKIPPED, "kept the destination's attributes: "
                           "its mode or owner differs from the source's "
                           "(--no-overwrite)");
        return *out ? 0 : TM_ENOMEM;
    }
    if (r->cfg->no_overwrite && t->cf != CF_NONE && t->type != TM_T_FOLDER) {
        *out = copy_result(t, CS_SKIPPED, "kept the destination's version "
                                          "(--no-overwrite)");
        return *out ? 0 : TM_ENOMEM;
    }
    if (r->cfg->update && t->cf != CF_NONE && t->cf != CF_ATTRS &&
        (t->type == TM_T_FILE || t->type == TM_T_SYMLINK)) {
        /* the destination's twin as it is now, not as discovery saw it:
         * edited since, it may have become newer (or older) */
        rc = dst_is_newer(wk, t);
        if (rc < 0) {
            snprintf(why, sizeof why, "copy %s: stat on the destination "
                     "(--update): %s", t->path, wk->ae.msg);
            *out = copy_result(t, CS_FAILED, why);
            return *out ? 0 : TM_ENOMEM;
        }
        if (rc) {
            /* (the reason ends as verify's unchecked() looks for it) */
            *out = copy_result(t, CS_SKIPPED, "kept the destination's newer "
                               "version (--update)");
            return *out ? 0 : TM_ENOMEM;
        }
    }
    if (t->type != TM_T_FOLDER && tm__mtime_out_of_range(t->mtime)) {
        /* the time cannot be set as it is: never another one instead */
        snprintf(why, sizeof why, "copy %s: its mtime is %s the range treemig "
                 "keeps (1677-09-21 to 2262-04-11): not copied", t->path,
                 t->mtime < 0 ? "before" : "after");
        *out = copy_result(t, CS_FAILED, why);
        return *out ? 0 : TM_ENOMEM;
    }
    if (roots_gone(r, 0))
        return TM_ENOENT;
    if (r->cfg->backup_dir && t->type != TM_T_FOLDER && t->cf != CF_NONE &&
        t->cf != CF_ATTRS && t->cf != CF_TYPE) {
        /* copy --backup-dir: what the copy would replace goes there first
         * (nothing there: a backup made before a crash) */
        rc = tm__adapter_backup(r->cfg->ad[TM_DST], t->path, r->cfg->backup_dir,
                                &wk->ae);
        if (rc && rc != TM_ENOENT) {
            if (copy_fatal(wk, rc))
                return rc;
            snprintf(why, sizeof why, "copy %s: not replaced: moving it to the "
                     "backup folder %s: %s", t->path, r->cfg->backup_dir,
                     wk->ae.msg);
            *out = copy_result(t, CS_FAILED, why);
            return *out ? 0 : TM_ENOMEM;
        }
    }
    tm__buf_reset(&wk->refused);
    rc = with_retries(wk, t, &attempts);
    if (rc == TM_ESTOPPED)
        return rc;
    if (rc && roots_gone(r, 1))
        return TM_ENOENT; /* not this node's fault */
    /* Not there, with both roots in place: a folder vanished under the
     * copy. `rm -rf` of a whole root removes depth-first, the root last,
     * so the roots are looked at once more, 200 ms later, before the
     * node is blamed. */
    if (rc == TM_ENOENT && !tm__nap(r->cfg->stop, 200) && roots_gone(r, 1))
        return TM_ENOENT;
    if (rc == TM_EEXIST) {
        /* the real name was taken, and not by a twin discovery saw */
        if (t->type != TM_T_FOLDER && placed_same(wk, t))
            rc = 0; /* the node as copied: an earlier run placed it, then
                       crashed before recording it */
        else if (r->cfg->update && t->type != TM_T_FOLDER &&
                 dst_is_newer(wk, t) == 1) {
            *out = copy_result(t, CS_SKIPPED, "kept the destination's newer "
                               "version, made after discovery (--update)");
            return *out ? 0 : TM_ENOMEM;
        } else if (r->cfg->no_overwrite && t->type != TM_T_FOLDER) {
            *out = copy_result(t, CS_SKIPPED, "kept the destination's version, "
                               "made after discovery (--no-overwrite)");
            return *out ? 0 : TM_ENOMEM;
        } else if (t->type == TM_T_FOLDER) {
            snprintf(why, sizeof why, "copy %s: something that is not a folder "
                     "was made at this name on the destination after discovery: "
                     "it is not replaced; move it away, then retry", t->path);
            *out = copy_result(t, CS_FAILED, why);
            if (*out)
                (*out)->attempts = attempts;
            return *out ? 0 : TM_ENOMEM;
        } else {
            snprintf(why, sizeof why, "copy %s: something was made at this name "
                     "on the destination after discovery (or below a "
                     "destination folder that could not be listed): it was not "
                     "replaced; retry compares it again and replaces it",
                     t->path);
            *out = copy_result(t, CS_FAILED, why);
            if (*out)
                (*out)->attempts = attempts;
            return *out ? 0 : TM_ENOMEM;
        }
    }
    /* a full or read-only destination, refused credentials, end the copy */
    if (copy_fatal(wk, rc))
        return rc;
    if (rc)
        snprintf(why, sizeof why, "copy %s: %s%s", t->path,
                 wk->err_src ? "reading the source: " : "",
                 wk->ae.msg);
    if (!rc && wk->refused.len)
        /* copied; what the destination would not hold is said per node */
        snprintf(why, sizeof why, "copied without the extended attributes "
                 "the destination refused: %.*s", (int)(wk->refused.len - 2),
                 wk->refused.buf);
    *out = copy_result(t, rc ? CS_FAILED : CS_SUCCESSFUL,
                       rc || wk->refused.len ? why : NULL);
    if (!*out)
        return TM_ENOMEM;
    (*out)->attempts = attempts;
    return 0;
}

/* The extended attributes and ACLs of a folder (set at the end of the
 * copy, as its mode: a default ACL set earlier would be inherited by what
 * the copy makes inside). What cannot be read or set is said on the
 * folder's record (its status unchanged). */
static int folder_xattrs(struct worker *wk, const struct task *t,
                         struct tm__result **out)
{
    struct tm__adapter *sa = wk->r->cfg->ad[TM_SRC], *da = wk->r->cfg->ad[TM_DST];
    char why[512];
    int rc;
    if (!xattrs_kept(wk->r) || !da->set_xattrs)
        return 0;
    tm__buf_reset(&wk->xattrs);
    tm__buf_reset(&wk->refused);
    rc = tm__adapter_get_xattrs(sa, t->path, TM_T_FOLDER, &wk->xattrs, &wk->ae);
    /* also with none: those the destination's folder has beyond the
     * source's (a default ACL it inherited, one set there) go */
    if (!rc)
        rc = tm__adapter_set_xattrs(da, t->path, TM_T_FOLDER, wk->xattrs.buf,
                                    wk->xattrs.len, &wk->refused, &wk->ae);
    if (rc == TM_ENOMEM)
        return rc;
    if (!rc && !wk->refused.len)
        return 0;
    if (rc)
        snprintf(why, sizeof why, "extended attributes of %s: %s", t->path,
                 wk->ae.msg);
    else
        snprintf(why, sizeof why, "extended attributes of %s the destination "
                 "refused: %.*s", t->path, (int)(wk->refused.len - 2),
                 wk->refused.buf);
    *out = copy_result(t, t->parent_cs, why);
    if (!*out)
        return TM_ENOMEM;
    (*out)->old_cs = (int8_t)t->parent_cs; /* here: the folder's own status */
    return 0;
}

static int attrs_task(struct worker *wk, const struct task *t,
                      struct tm__result **out)
{
    struct tm__adapter *da = wk->r->cfg->ad[TM_DST];
    struct tm__retry rt;
    char why[512];
    int rc, again = 0;
    *out = NULL;
    if (!da->set_attr)
        return 0;
    if (tm__mtime_out_of_range(t->mtime)) {
        snprintf(why, sizeof why, "set mode and mtime of %s: its mtime is %s "
                 "the range treemig keeps (1677-09-21 to 2262-04-11)", t->path,
                 t->mtime < 0 ? "before" : "after");
        *out = copy_result(t, CS_FAILED, why);
        if (*out)
            (*out)->old_cs = (int8_t)t->parent_cs;
        return *out ? 0 : TM_ENOMEM;
    }
    /* made by mkdir_attr with its final mode and mtime, which its
     * children did not change: nothing left to set */
    if (da->mkdir_attr && t->parent_cs == CS_SUCCESSFUL && !wk->r->cfg->owner &&
        !xattrs_kept(wk->r))
        return 0;
    if (roots_gone(wk->r, 0))
        return TM_ENOENT;
    tm__retry_init(&rt, wk->r->cfg->retries, wk->r->cfg->stop);
    do {
        /* the owner first: chown clears the set-group-ID bit of a folder */
        wk->err_src = 0;
        rc = wk->r->cfg->owner ? copy_owner(wk, t->path) : 0;
        if (!rc)
            rc = tm__adapter_set_attr(da, t->path, t->mtime, t->mode, &wk->ae);
    } while (rc && (again = tm__retry_again(&rt, &wk->ae)) == 1);
    if (!rc)
        return folder_xattrs(wk, t, out);
    if (again == TM_ESTOPPED)
        return TM_ESTOPPED;
    if (roots_gone(wk->r, 1))
        return TM_ENOENT;
    if (copy_fatal(wk, rc))
        return rc;
    snprintf(why, sizeof why, "set %s of %s: %s", wk->r->cfg->owner ?
             "owner, mode and mtime" : "mode and mtime", t->path, wk->ae.msg);
    /* the folder is not as the source's, whether this copy made it or it
     * was there (an immutable folder, another owner's): it fails, so the
     * copy says so, verify does not pass, and retry sets its attributes */
    *out = copy_result(t, CS_FAILED, why);
    if (!*out)
        return TM_ENOMEM;
    (*out)->old_cs = (int8_t)t->parent_cs; /* here: the folder's own status */
    return 0;
}

/* ---- verify ---- */

/* Hashes a whole file with XXH3; *bytes gets its length. */
static int hash_file(struct worker *wk, struct tm__adapter *a, const char *path,
                     uint64_t *out, int64_t *bytes)
{
    XXH3_state_t *h;
    struct tm__rfile *f;
    struct tm__entry st;
    int64_t n;
    int rc = tm__adapter_open_read(a, path, &f, &st, &wk->ae);
    if (rc)
        return rc;
    h = XXH3_createState();
    if (!h) {
        tm__adapter_close_read(f);
        return own_err(wk, TM_ENOMEM, "not enough memory");
    }
    XXH3_64bits_reset(h);
    *bytes = 0;
    while ((n = tm__adapter_read(f, wk->buf2, IO_BUF, &wk->ae)) > 0) {
        XXH3_64bits_update(h, wk->buf2, (size_t)n);
        *bytes += n;
    }
    *out = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    tm__adapter_close_read(f);
    return n < 0 ? (int)n : 0;
}

/* 1 when the content hash discover --checksum recorded for the source
 * file of k stands for it still: the file is as discovered (type, size,
 * mtime). */
static int stored_hash_valid(struct worker *wk, const struct tm__kid_row *k,
                             const char *path)
{
    struct tm__entry st;
    if (!k->has_hash || k->type != TM_T_FILE)
        return 0;
    if (tm__adapter_stat(wk->r->cfg->ad[TM_SRC], path, &st, &wk->ae) != 0)
        return 0;
    return st.type == TM_T_FILE && st.size == k->size && st.mtime == k->mtime;
}

/* 1 when err ends verify instead of being a mismatch (not enough memory:
 * nothing is known about the node). */
static int verify_fatal(int err)
{
    return err == TM_ENOMEM || err == TM_EINTERNAL;
}

/* Reads both targets of the symlink at path (into wk->scratch and
 * wk->scratch2), retrying under the policy. */
static int read_links(struct worker *wk, const char *path)
{
    struct runner *r = wk->r;
    struct tm__adapter *sa = r->cfg->ad[TM_SRC], *da = r->cfg->ad[TM_DST];
    struct tm__retry rt;
    int rc, again = 0;
    if (!sa->readlink || !da->readlink)
        return own_err(wk, TM_EINVAL, "a storage cannot read symlinks");
    tm__retry_init(&rt, r->cfg->retries, r->cfg->stop);
    do {
        rc = tm__adapter_readlink(sa, path, &wk->scratch, &wk->ae);
        if (!rc)
            rc = tm__adapter_readlink(da, path, &wk->scratch2, &wk->ae);
    } while (rc && (again = tm__retry_again(&rt, &wk->ae)) == 1);
    return rc && again == TM_ESTOPPED ? TM_ESTOPPED : rc;
}

/* An mtime for a message: UTC to the ns (out: 48 bytes). */
static const char *ns_time(char *out, int64_t ns)
{
    int64_t frac = ns % 1000000000;
    char sec[32];
    if (frac < 0)
        frac += 1000000000;
    tm__iso_time(sec, ns - frac);
    sec[strlen(sec) - 1] = '\0'; /* the Z */
    snprintf(out, 48, "%s.%09lldZ", sec, (long long)frac);
    return out;
}

/* The attributes of the source child k and of its destination twin d:
 * NULL when they are as the copy makes them, else a message in buf, and
 * *cf = CF_ATTRS (the copy sets them in place). Folders: mode, owner (with
 * --owner) and mtime, which the copy sets at its end (unless a side lists
 * none: an S3 prefix); files: mode and owner; symlinks: owner; files and
 * folders: extended attributes and ACLs (unless --no-xattrs). */
static const char *check_attrs(struct worker *wk, const struct tm__kid_row *k,
                               const char *path,
                               const struct tm__ent *d, char *buf, size_t len,
                               int *cf)
{
    struct runner *r = wk->r;
    struct tm__attrs sa = { k->mode, k->owned, k->uid, k->gid };
    struct tm__attrs da = { d->mode, (r->cfg->ad[TM_DST]->caps & TM_CAP_OWNER) != 0,
                            d->uid, d->gid };
    struct tm__attr_rule rule = r->rule;
    if (k->type == TM_T_FOLDER && !r->folder_attrs)
        return NULL; /* the destination keeps no folder attributes */
    if (tm__compare_attrs(&rule, k->type, &sa, &da) != CF_NONE) {
        *cf = CF_ATTRS;
        rule.cmp_owner = 0;
        if (tm__compare_attrs(&rule, k->type, &sa, &da) != CF_NONE)
            snprintf(buf, len, "mode %04o on the destination, %04o on the source",
                     (unsigned)(d->mode & 07777),
                     (unsigned)tm__copy_mode(&r->rule, k->type, &sa));
        else
            snprintf(buf, len, "owner %lld:%lld on the destination, %lld:%lld "
                     "on the source", (long long)d->uid, (long long)d->gid,
                     (long long)k->uid, (long long)k->gid);
        return buf;
    }
    if (tm__compare_xattrs(&rule, k->type, k->xattrs, d->xattrs) != CF_NONE) {
        /* the source's may have changed since discovery, and the copy
         * took them as they were then: compared with them as they are */
        struct tm__adapter *src = r->cfg->ad[TM_SRC];
        int rc;
        tm__buf_reset(&wk->xattrs);
        rc = tm__adapter_get_xattrs(src, path, k->type, &wk->xattrs, &wk->ae);
        if (rc || tm__xattr_hash(wk->xattrs.buf, wk->xattrs.len) != d->xattrs) {
            *cf = CF_ATTRS;
            if (rc)
                snprintf(buf, len, "extended attributes differ from the "
                         "source's as discovered, and the source's cannot be "
                         "read: %s", wk->ae.msg);
            else
                snprintf(buf, len, "extended attributes or ACLs differ from "
                         "the source's");
            return buf;
        }
    }
    if (k->type == TM_T_FOLDER && d->mtime != TM_MTIME_KEEP &&
        k->mtime != TM_MTIME_KEEP &&
        tm__compare_leaf(0, k->mtime, 0, d->mtime, r->prec) != CF_NONE) {
        char dt[48], st[48];
        *cf = CF_ATTRS;
        snprintf(buf, len, "mtime %s on the destination, %s on the source (a "
                 "folder's, set at the end of the copy)", ns_time(dt, d->mtime),
                 ns_time(st, k->mtime));
        return buf;
    }
    return NULL;
}

/* check_child() of a special file: its kind, mode and mtime, and a
 * device's number (both sides stated again: the state file does not hold
 * it). */
static const char *check_special(struct worker *wk, const struct tm__kid_row *k,
                                 const char *path, const struct tm__ent *d,
                                 char *buf, size_t len, int *fatal, int *cf)
{
    struct runner *r = wk->r;
    uint32_t kind = k->mode & S_IFMT;
    struct tm__entry ss, ds;
    int rc;
    if ((d->mode & S_IFMT) != kind) {
        snprintf(buf, len, "another kind of special file on the destination "
                 "(mode %06o, %06o on the source)", (unsigned)d->mode,
                 (unsigned)k->mode);
        return buf;
    }
    if ((*cf = tm__compare_leaf(0, k->mtime, 0, d->mtime, r->prec)) != CF_NONE)
        return "mtime differs";
    if (r->rule.modes && (d->mode & 07777) != (k->mode & 07777)) {
        *cf = CF_ATTRS;
        snprintf(buf, len, "mode %04o on the destination, %04o on the source",
                 (unsigned)(d->mode & 07777), (unsigned)(k->mode & 07777));
        return buf;
    }
    if (kind != S_IFCHR && kind != S_IFBLK)
        return check_attrs(wk, k, path, d, buf, len, cf);
    rc = tm__adapter_stat(r->cfg->ad[TM_SRC], path, &ss, &wk->ae);
    if (!rc)
        rc = tm__adapter_stat(r->cfg->ad[TM_DST], path, &ds, &wk->ae);
    if (rc && verify_fatal(rc)) {
        *fatal = rc;
        return NULL;
    }
    if (rc) {
        *cf = -1;
        snprintf(buf, len, "cannot stat the device to compare: %s", wk->ae.msg);
        return buf;
    }
    if (ss.rdev != ds.rdev) {
        *cf = CF_CONTENT;
        snprintf(buf, len, "device %llu:%llu on the destination, %llu:%llu on the "
                 "source", (unsigned long long)major(ds.rdev),
                 (unsigned long long)minor(ds.rdev),
                 (unsigned long long)major(ss.rdev),
                 (unsigned long long)minor(ss.rdev));
        return buf;
    }
    return check_attrs(wk, k, path, d, buf, len, cf);
}

/* check_child() of a file of a link group (k->link: the group's first
 * file, which the copy wrote): it must be a link of that file on the
 * destination, when the two still share an inode on the source. NULL
 * when it is (or cannot be told: what could not be stated is checked as
 * its own node), else a message and *cf = CF_CONTENT (the copy links it
 * again). */
static const char *check_link(struct worker *wk, const struct tm__kid_row *k,
                              const char *path, const struct tm__ent *d,
                              char *buf, size_t len, int *cf)
{
    struct tm__adapter *sa = wk->r->cfg->ad[TM_SRC], *da = wk->r->cfg->ad[TM_DST];
    struct tm__entry s, sl, dl;
    struct tm__aerr ae;
    if (!(da->caps & TM_CAP_HARDLINKS) || !(sa->caps & TM_CAP_HARDLINKS) ||
        tm__adapter_stat(sa, path, &s, &ae) || tm__adapter_stat(sa, k->link, &sl, &ae) ||
        s.dev != sl.dev || s.ino != sl.ino ||
        tm__adapter_stat(da, k->link, &dl, &ae))
        return NULL;
    if (dl.dev == d->dev && dl.ino == d->ino)
        return NULL;
    *cf = CF_CONTENT;
    snprintf(buf, len, "not a link of %s on the destination, as on the source",
             k->link);
    return buf;
}

/* Checks one source child k (at path) against what the destination
 * listing found (d, NULL: nothing). Returns NULL when it matches, else a
 * static or buffer message; NULL with *fatal set when it could not be
 * checked for a reason that ends verify. On a mismatch *cf gets the
 * conflict the node takes so that a new copy replaces what is there
 * (CF_NONE: nothing to replace, or something of another type that is
 * never replaced; CF_ATTRS: the copy sets its attributes in place), or -1
 * when the node itself was not found wrong (it could not be read to
 * compare). */
static const char *check_child(struct worker *wk, const struct tm__kid_row *k,
                               const char *path, const struct tm__ent *d,
                               char *buf, size_t len, int *fatal, int *cf)
{
    struct runner *r = wk->r;
    int type = k->type;
    int64_t size = k->size, mtime = k->mtime;
    *cf = CF_NONE;
    if (!d)
        return "missing on the destination";
    if (d->type != type) {
        snprintf(buf, len, "is a %s on the destination, a %s on the source",
                 tm__type_names[d->type], tm__type_names[type]);
        return buf;
    }
    if (type == TM_T_OTHER)
        return check_special(wk, k, path, d, buf, len, fatal, cf);
    if (type != TM_T_FILE && type != TM_T_SYMLINK)
        return check_attrs(wk, k, path, d, buf, len, cf);
    if (d->size != size) {
        *cf = CF_SIZE;
        snprintf(buf, len, "size %lld on the destination, %lld on the source",
                 (long long)d->size, (long long)size);
        return buf;
    }
    if ((*cf = tm__compare_leaf(size, mtime, d->size, d->mtime, r->prec)) != CF_NONE &&
        !tm__mtime_within(mtime, d->mtime, r->cfg->window) &&
        !(k->cs == CS_ALREADY && r->cfg->found_equal_by_size))
        return "mtime differs";
    *cf = CF_NONE; /* equal as discovery compared them */
    if (r->cfg->checksum && type == TM_T_SYMLINK) {
        int rc = read_links(wk, path);
        if (rc && (verify_fatal(rc) || rc == TM_ESTOPPED)) {
            *fatal = rc;
            return NULL;
        }
        if (rc) {
            *cf = -1;
            snprintf(buf, len, "cannot read the link to compare: %s", wk->ae.msg);
            return buf;
        }
        if (wk->scratch.len != wk->scratch2.len ||
            memcmp(wk->scratch.buf, wk->scratch2.buf, wk->scratch.len) != 0) {
            *cf = CF_CONTENT;
            return "link target differs";
        }
    }
    if (r->cfg->checksum && type == TM_T_FILE) {
        uint64_t hs = 0, hd = 0;
        int64_t bs = 0, bd = 0;
        struct tm__retry rt;
        int rc, again = 0;
        int reuse = stored_hash_valid(wk, k, path);
        tm__retry_init(&rt, r->cfg->retries, r->cfg->stop);
        do {
            /* discover --checksum hashed a source file already there: while
             * the source is as discovered, only the destination is read */
            rc = reuse ? 0 : hash_file(wk, r->cfg->ad[TM_SRC], path, &hs, &bs);
            if (reuse) {
                hs = k->hash;
                bs = k->size;
            }
            if (!rc)
                rc = hash_file(wk, r->cfg->ad[TM_DST], path, &hd, &bd);
        } while (rc && (again = tm__retry_again(&rt, &wk->ae)) == 1);
        if (rc && (verify_fatal(rc) || again == TM_ESTOPPED)) {
            *fatal = again == TM_ESTOPPED ? TM_ESTOPPED : rc;
            return NULL;
        }
        if (rc) {
            *cf = -1;
            snprintf(buf, len, "cannot read to compare: %s", wk->ae.msg);
            return buf;
        }
        pthread_mutex_lock(&r->mu);
        r->done_bytes += bs;
        pthread_mutex_unlock(&r->mu);
        if (hs != hd || bs != bd) {
            *cf = CF_CONTENT;
            return "content differs";
        }
    }
    if (type == TM_T_FILE && k->link && check_link(wk, k, path, d, buf, len, cf))
        return buf;
    return check_attrs(wk, k, path, d, buf, len, cf);
}

/* Hands a verify finding to the writer and counts it (a warning, phase
 * verify-leftover, is not counted). */
static int verify_report(struct worker *wk, struct tm__result *p)
{
    struct runner *r = wk->r;
    if (!p)
        return TM_ENOMEM;
    if (r->cfg->claim && p->kind == TM_R_COPY)
        p->lease = -1; /* another worker may have recorded it first */
    pthread_mutex_lock(&r->mu);
    r->problems += strcmp(p->phase, "verify") == 0;
    pthread_mutex_unlock(&r->mu);
    tm__log(r->lg, TM_ERROR, "verify", p->folder_id, p->path, "verify %s: %s",
            p->path, p->error);
    return tm__writer_submit(r->w, p);
}

static struct reader *take_reader(struct runner *r)
{
    struct reader *rd = &r->rdr[atomic_fetch_add(&r->next_reader, 1) % READERS];
    pthread_mutex_lock(&rd->mu);
    return rd;
}

/* Names in the listing l of the destination folder of t that look like
 * a temporary file of a copy and are no source node: leftovers of an
 * interrupted copy (the copy removes its own; an earlier treemig did not)
 * or, rarely, a destination file of that name. Reported as warnings
 * (task_errors, phase verify-leftover), never touched: they do not change
 * whether the source nodes match. */
static int verify_leftovers(struct worker *wk, const struct task *t,
                            const struct tm__listing *l)
{
    size_t i;
    int rc = 0;
    for (i = 0; i < l->n && !rc; i++) {
        const struct tm__ent *e = &l->v[i];
        const char *name = l->arena.buf + e->name_off;
        char why[512];
        struct tm__buf path = TM__BUF_INIT;
        struct reader *rd;
        int has;
        if (e->type != TM_T_FILE && e->type != TM_T_SYMLINK)
            continue;
        if (!tm__tmp_name_like(name, e->name_len))
            continue;
        rd = take_reader(wk->r);
        has = tm__tasks_has_child(rd->q, t->id, name, e->name_len);
        pthread_mutex_unlock(&rd->mu);
        if (has) {
            rc = has < 0 ? has : 0;
            continue;
        }
        if (tm__path_join(&path, t->path, strlen(t->path), name, e->name_len)) {
            rc = TM_ENOMEM;
            break;
        }
        snprintf(why, sizeof why, "looks like a temporary file an interrupted "
                 "copy left (%lld bytes); treemig never deletes what it did not "
                 "record as its own: delete it if it is one", (long long)e->size);
        rc = verify_report(wk, problem("verify-leftover", t->id, path.buf, why));
        tm__buf_release(&path);
    }
    return rc;
}

/* The source children of one page, copied out of the reader's rows. */
struct kids {
    struct tm__kid_row *v;  /* rows; strings in arena (offsets in name/path) */
    size_t n, cap;          /* used, allocated */
    struct tm__buf arena;   /* names and paths */
};

static int kid_add(void *ctx, const struct tm__kid_row *r)
{
    struct kids *k = ctx;
    struct tm__kid_row *x;
    if (k->n == k->cap) {
        size_t nc = k->cap ? k->cap * 2 : 64;
        void *p = realloc(k->v, nc * sizeof *k->v);
        if (!p)
            return TM_ENOMEM;
        k->v = p;
        k->cap = nc;
    }
    x = &k->v[k->n];
    *x = *r;
    x->name = (const char *)(uintptr_t)k->arena.len;
    if (tm__buf_add(&k->arena, r->name, r->name_len) || tm__buf_addch(&k->arena, 0))
        return TM_ENOMEM;
    x->path = (const char *)(uintptr_t)k->arena.len;
    if (tm__buf_adds(&k->arena, r->path) || tm__buf_addch(&k->arena, 0))
        return TM_ENOMEM;
    /* an offset + 1 (0: none) until the page is read */
    x->link = r->link ? (const char *)(uintptr_t)(k->arena.len + 1) : NULL;
    if (r->link && (tm__buf_adds(&k->arena, r->link) || tm__buf_addch(&k->arena, 0)))
        return TM_ENOMEM;
    k->n++;
    return 0;
}

/* Checks one source child k of the folder of t against the listing l. */
static int verify_kid(struct worker *wk, const struct task *t,
                      const struct tm__listing *l, const struct tm__kid_row *k,
                      const char *name, const char *path, int *checked)
{
    struct runner *r = wk->r;
    char buf[512], why[1024];
    const struct tm__ent *d = tm__listing_find(l, name, k->name_len);
    int cf = CF_NONE, rc = 0;
    const char *msg = check_child(wk, k, path, d, buf, sizeof buf, &rc, &cf);
    if (rc)
        return rc;
    (*checked)++;
    if (!msg && k->cs == CS_FAILED && k->cf == CF_CONTENT && !r->cfg->checksum)
        /* what only --checksum can see is not cleared without it */
        return verify_report(wk, problem("verify", k->id, path, "not checked: its "
                                         "contents differed at the last verify "
                                         "--checksum; run verify --checksum (or "
                                         "retry)"));
    if (!msg && k->cs == CS_FAILED) {
        /* an earlier verify found it wrong; it matches now (put back by
         * hand): copied as it should be */
        struct task x;
        struct tm__result *ok;
        memset(&x, 0, sizeof x);
        x.id = k->id;
        x.path = (char *)path;
        x.depth = t->depth + 1;
        x.type = k->type;
        x.size = k->size;
        x.cf = k->cf;
        ok = copy_result(&x, CS_SUCCESSFUL, NULL);
        if (!ok)
            return TM_ENOMEM;
        ok->old_cs = CS_FAILED;
        ok->attempts = 0;
        ok->phase = "verify";
        return tm__writer_submit(r->w, ok);
    }
    if (!msg)
        return 0;
    if (cf < 0)
        return verify_report(wk, problem("verify", k->id, path, msg));
    snprintf(why, sizeof why, "verify: %s (marked failed: retry copies it again)",
             msg);
    return verify_report(wk, verify_failed(k->id, path, t->depth + 1, k->type,
                                           k->size, k->cs, k->cf, cf, why));
}

static int verify_task(struct worker *wk, const struct task *t)
{
    struct runner *r = wk->r;
    struct tm__listing l = TM__LISTING_INIT;
    struct kids k = { NULL, 0, 0, TM__BUF_INIT };
    struct tm__buf after = TM__BUF_INIT;
    char why[1024];
    int rc, checked = 0;

    {
        struct tm__retry rt;
        tm__retry_init(&rt, r->cfg->retries, r->cfg->stop);
        do {
            tm__listing_reset(&l);
            rc = tm__adapter_list(r->cfg->ad[TM_DST], t->path, tm__listing_add,
                                  &l, &wk->ae);
        } while (rc && tm__retry_again(&rt, &wk->ae) == 1);
    }
    if (!rc)
        rc = tm__listing_sort(&l);
    if (rc && roots_gone(r, 1)) {
        rc = TM_ENOENT;
        goto out;
    }
    if (rc && stopping(r)) {
        rc = TM_ESTOPPED;
        goto out;
    }
    if (rc && verify_fatal(rc))
        goto out;
    if (rc == TM_ENOENT && t->depth > 0) {
        /* the folder is gone: everything it should hold is missing (and
         * becomes failed below, so one retry copies all of it again) */
        tm__listing_reset(&l);
        rc = 0;
    }
    if (rc) {
        struct tm__result *p;
        snprintf(why, sizeof why, "verify: cannot list the destination folder: %s",
                 wk->ae.msg);
        /* what it holds was not checked: the folder fails (retry copies it
         * again); the root has no copy of its own: only the report */
        p = t->depth > 0
                ? verify_failed(t->id, t->path, t->depth, TM_T_FOLDER, 0,
                                t->parent_cs, t->cf, t->cf, why)
                : problem("verify", t->id, t->path, why);
        rc = verify_report(wk, p);
        goto out;
    }
    /* the source children, a page at a time (the read connection is held
     * only while a page is read, not while the storage is asked) */
    for (;;) {
        struct reader *rd = take_reader(r);
        size_t i;
        k.n = 0;
        tm__buf_reset(&k.arena);
        rc = tm__tasks_kids(rd->q, t->id, after.buf, after.len, KIDS_PAGE, kid_add,
                            &k);
        pthread_mutex_unlock(&rd->mu);
        for (i = 0; i < k.n; i++)
            if (k.v[i].link)
                k.v[i].link = k.arena.buf + (uintptr_t)k.v[i].link - 1;
        for (i = 0; !rc && i < k.n; i++)
            rc = verify_kid(wk, t, &l, &k.v[i],
                            k.arena.buf + (uintptr_t)k.v[i].name,
                            k.arena.buf + (uintptr_t)k.v[i].path, &checked);
        if (rc || k.n < KIDS_PAGE)
            break;
        tm__buf_reset(&after);
        if (tm__buf_add(&after, k.arena.buf + (uintptr_t)k.v[k.n - 1].name,
                        k.v[k.n - 1].name_len)) {
            rc = TM_ENOMEM;
            break;
        }
    }
    if (!rc)
        rc = verify_leftovers(wk, t, &l);
    pthread_mutex_lock(&r->mu);
    r->done_nodes += checked;
    pthread_mutex_unlock(&r->mu);
out:
    tm__listing_release(&l);
    free(k.v);
    tm__buf_release(&k.arena);
    tm__buf_release(&after);
    return rc;
}

/* ---- the pool and the coordinator ---- */

/* A fatal error of a task on path (its detail in ae, may be NULL). Called
 * with r->mu held (then the writer's mutex: the lock order allows it). */
static void set_fatal(struct runner *r, int err, const char *path,
                      const struct tm__aerr *ae)
{
    const char *dst = r->cfg->root[TM_DST] ? r->cfg->root[TM_DST] : "";
    if (tm__writer_error(r->w) == err) {
        /* the state file failed (its disk is full, say), not a storage:
         * its message names it */
        struct tm__buf m = TM__BUF_INIT;
        tm__writer_message(r->w, &m);
        set_fatal_msg(r, err, "%s", m.len ? m.buf : tm_strerror(err));
        tm__buf_release(&m);
    } else if (err == TM_ENOSPC)
        set_fatal_msg(r, err, "the destination %s is full (writing %s): free some "
                      "space and run the command again", dst, path);
    else if (err == TM_EDQUOT)
        set_fatal_msg(r, err, "the destination %s is over its disk quota (writing "
                      "%s): raise the quota or free some space and run the "
                      "command again", dst, path);
    else if (err == TM_EROFS)
        set_fatal_msg(r, err, "the destination %s is read-only (writing %s): make "
                      "it writable and run the command again", dst, path);
    else
        set_fatal_msg(r, err, "%s: %s", path,
                      ae && ae->code == err && ae->msg[0] ? ae->msg
                                                          : tm_strerror(err));
}

static void task_free(struct task *t)
{
    if (t) {
        free(t->path);
        free(t->resume);
        free(t);
    }
}

/* A worker from the free list, or a new one; NULL when memory is short.
 * Called with r->mu held. */
static struct worker *worker_get(struct runner *r)
{
    struct worker *wk = r->free_wk;
    if (wk) {
        r->free_wk = wk->next;
        return wk;
    }
    wk = calloc(1, sizeof *wk);
    if (!wk)
        return NULL;
    wk->r = r;
    tm__buf_init(&wk->scratch);
    tm__buf_init(&wk->scratch2);
    tm__buf_init(&wk->xattrs);
    tm__buf_init(&wk->refused);
    wk->buf = malloc(IO_BUF);
    wk->buf2 = r->cfg->mode == TM_EXEC_VERIFY ? malloc(IO_BUF) : NULL;
    if (!wk->buf || (r->cfg->mode == TM_EXEC_VERIFY && !wk->buf2)) {
        free(wk->buf);
        free(wk->buf2);
        free(wk);
        return NULL;
    }
    return wk;
}

static void worker_free(struct worker *wk)
{
    free(wk->buf);
    free(wk->buf2);
    tm__buf_release(&wk->scratch);
    tm__buf_release(&wk->scratch2);
    tm__buf_release(&wk->xattrs);
    tm__buf_release(&wk->refused);
    free(wk);
}

/* Tells cfg->item what a copy task did (copy --log-file). */
static void item_done(struct runner *r, const struct task *t,
                      const struct tm__result *res)
{
    const char *what;
    if (res->new_cs == CS_FAILED)
        what = "failed";
    else if (res->new_cs == CS_SKIPPED)
        what = "skipped";
    else if (res->new_cs != CS_SUCCESSFUL || t->stage == ST_ATTRS)
        return; /* a folder's attributes at the end: said only when failed */
    else if (t->stage == ST_LINKS)
        what = "linked";
    else if (t->cf == CF_NONE)
        what = "created";
    else if (t->cf == CF_ATTRS)
        what = "attrs";
    else
        what = "replaced";
    r->cfg->item(r->cfg->item_ctx, what, t->type, t->size, t->path, res->error);
}

/* Runs one task on wk: 0 (its outcome handed to the writer), TM_ESTOPPED
 * (left for the next run), or a fatal error. */
static int run_one(struct worker *wk, struct task *t)
{
    struct runner *r = wk->r;
    struct tm__result *res = NULL;
    int rc;

    tm__aerr_clear(&wk->ae);
    wk->err_src = 0;
    if (t->reclaimed && (t->stage == ST_COPY_DEPTH || t->stage == ST_LINKS)) {
        /* what the worker that held it may have left (it died, or froze
         * and will find its temporary gone) */
        rc = tm__adapter_remove_tmp(r->cfg->ad[TM_DST], t->path, t->type,
                                    t->old_key, &wk->ae);
        if (rc < 0 && wk->ae.cls == TM_ERR_FATAL)
            return rc;
        tm__aerr_clear(&wk->ae);
    }
    if (t->stage == ST_COPY_DEPTH || t->stage == ST_LINKS)
        rc = copy_task(wk, t, &res);
    else if (t->stage == ST_ATTRS)
        rc = attrs_task(wk, t, &res);
    else
        rc = verify_task(wk, t);
    if (!rc && res && res->error)
        tm__log(r->lg, res->kind == TM_R_COPY && res->new_cs != CS_FAILED
                           ? TM_INFO : TM_ERROR,
                t->stage == ST_VERIFY ? "verify" : "copy", t->id, t->path, "%s",
                res->error);
    if (!rc && res && r->cfg->item && res->kind == TM_R_COPY &&
        t->stage != ST_VERIFY)
        item_done(r, t, res);
    if (!rc && res) {
        int failed = res->kind == TM_R_COPY && res->new_cs == CS_FAILED;
        int ok = res->kind == TM_R_COPY && res->new_cs == CS_SUCCESSFUL;
        rc = tm__writer_submit(r->w, res); /* res belongs to the writer */
        pthread_mutex_lock(&r->mu);
        r->problems += failed;
        r->done_nodes += ok;
        pthread_mutex_unlock(&r->mu);
    }
    return rc;
}

/* A pool job: runs its task, then the next ready one, and so on, waking
 * the coordinator only when the queue runs low or it leaves. */
static void run_task(struct tm__job *j)
{
    struct task *t = (struct task *)j;
    struct runner *r = t->r;
    struct worker *wk;

    pthread_mutex_lock(&r->mu);
    wk = worker_get(r);
    if (!wk)
        set_fatal_msg(r, TM_ENOMEM, "%s", tm_strerror(TM_ENOMEM));
    pthread_mutex_unlock(&r->mu);
    while (t) {
        struct task *next = NULL;
        int rc = !wk || stopping(r) || atomic_load(&r->quitting) ? TM_ESTOPPED
                                                                 : run_one(wk, t);
        if (!rc && t->lease && (t->stage == ST_ATTRS || t->stage == ST_VERIFY))
            r->cfg->claim->ended(r->cfg->claim->ctx, t->lease);
        pthread_mutex_lock(&r->mu);
        r->finished++;
        if (rc && rc != TM_ESTOPPED)
            set_fatal(r, rc, t->path, wk ? &wk->ae : NULL);
        if (!r->quit && r->len && wk) {
            next = r->win[r->head];
            r->head = (r->head + 1) % r->cap;
            r->len--;
        } else {
            r->in_flight--;
        }
        if (r->len <= PAGE / 2 || !next)
            pthread_cond_signal(&r->cv_coord);
        if (!next && wk) {
            wk->next = r->free_wk;
            r->free_wk = wk;
        }
        pthread_mutex_unlock(&r->mu);
        task_free(t);
        t = next;
    }
}

static void on_commit(void *ctx, const struct tm__result *list)
{
    struct runner *r = ctx;
    const struct tm__result *x;
    int64_t n = 0, lost = 0;
    for (x = list; x; x = x->next) {
        n += x->kind == TM_R_COPY;
        if (x->kind == TM_R_COPY && x->lease > 0) {
            r->cfg->claim->ended(r->cfg->claim->ctx, x->lease);
            lost += x->lease_lost;
        }
    }
    pthread_mutex_lock(&r->mu);
    r->committed += n;
    r->cfg->lease_lost += lost;
    pthread_cond_signal(&r->cv_coord);
    pthread_mutex_unlock(&r->mu);
}

/* Where fetch() puts the rows it reads. */
struct fetched {
    struct runner *r;      /* the runner */
    int stage;             /* enum stage */
    struct task **buf;     /* out */
    int n;                 /* tasks made */
    int64_t lease;         /* claimed tasks: their lease */
};

static int fetch_one(void *ctx, const struct tm__task_row *row)
{
    struct fetched *f = ctx;
    const char *extra = row->why ? row->why : row->link;
    size_t lp = strlen(row->path), lw = extra ? strlen(extra) : 0;
    struct task *t = calloc(1, sizeof *t);
    if (!t)
        return TM_ENOMEM;
    /* the path and the reason (or the link's target) in one allocation:
     * freeing path frees both */
    t->path = malloc(lp + 1 + (extra ? lw + 1 : 0));
    if (!t->path) {
        free(t);
        return TM_ENOMEM;
    }
    memcpy(t->path, row->path, lp + 1);
    if (extra) {
        memcpy(t->path + lp + 1, extra, lw + 1);
        if (row->why)
            t->why = t->path + lp + 1;
        else
            t->link = t->path + lp + 1;
    }
    t->link_cs = row->link_cs;
    t->job.run = run_task;
    t->r = f->r;
    t->stage = f->stage;
    t->id = row->id;
    t->depth = row->depth;
    t->type = row->type;
    t->size = row->size;
    t->mtime = row->mtime;
    t->mode = row->mode;
    t->cf = row->cf;
    t->parent_cs = row->parent_cs;
    t->parent_cf = row->parent_cf;
    if (row->resume_len) {
        if (!(t->resume = malloc(row->resume_len))) {
            task_free(t);
            return TM_ENOMEM;
        }
        memcpy(t->resume, row->resume, row->resume_len);
        t->resume_len = row->resume_len;
    }
    f->buf[f->n++] = t;
    return 0;
}

/* A claimed task (tm__exec_claim's row): as fetch_one, with its lease. */
static int claimed_one(void *ctx, const struct tm__task_row *row, const char *old_key)
{
    struct fetched *f = ctx;
    struct task *t;
    int rc = fetch_one(ctx, row), i;
    if (rc)
        return rc;
    t = f->buf[f->n - 1];
    t->lease = f->lease;
    if (old_key && strlen(old_key) == 2 * TM_KEY_LEN) {
        t->reclaimed = 1;
        for (i = 0; i < 2 * TM_KEY_LEN; i++) {
            char c = old_key[i];
            int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0;
            t->old_key[i / 2] = (unsigned char)(i % 2 ? (t->old_key[i / 2] << 4) | v : v);
        }
    }
    return 0;
}

/* Reads the next page of the stage after *last into buf (or, with
 * cfg->claim, claims the next batch); returns the count or an error.
 * Without r->mu. */
static int fetch(struct runner *r, int stage, int depth, int64_t *last,
                 struct task **buf)
{
    struct fetched f = { r, stage, buf, 0, 0 };
    int kind = stage == ST_COPY_DEPTH ? TM_TASKS_COPY
               : stage == ST_LINKS    ? TM_TASKS_LINKS
               : stage == ST_ATTRS    ? TM_TASKS_ATTRS
                                      : TM_TASKS_VERIFY;
    int rc;
    if (r->cfg->claim) {
        const struct tm__exec_claim *c = r->cfg->claim;
        int lim = c->batch > 0 && c->batch < PAGE ? c->batch : PAGE;
        f.lease = 0;
        rc = c->claim(c->ctx, kind, depth, lim, &f.lease, claimed_one, &f);
        if (rc >= 0) {
            int i;
            for (i = 0; i < f.n; i++)
                buf[i]->lease = f.lease;
            return f.n;
        }
        tm__buf_reset(r->cfg->err);
        tm__buf_add(r->cfg->err, c->err->buf, c->err->len);
        while (f.n-- > 0)
            task_free(buf[f.n]);
        return rc;
    }
    rc = tm__tasks_rows(r->q, kind, depth, *last, PAGE, fetch_one, &f);
    if (rc) {
        if (rc != TM_ENOMEM) {
            tm__buf_reset(r->cfg->err);
            tm__buf_adds(r->cfg->err, tm__tasks_errmsg(r->q));
        }
        while (f.n-- > 0)
            task_free(buf[f.n]);
        return rc;
    }
    if (f.n)
        *last = buf[f.n - 1]->id;
    return f.n;
}

static int push(struct runner *r, struct task **buf, int n)
{
    int i;
    if (r->len + (size_t)n > r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 2 * PAGE, j;
        struct task **p;
        while (nc < r->len + (size_t)n)
            nc *= 2;
        p = malloc(nc * sizeof *p);
        if (!p)
            return TM_ENOMEM;
        for (j = 0; j < r->len; j++)
            p[j] = r->win[(r->head + j) % r->cap];
        free(r->win);
        r->win = p;
        r->head = 0;
        r->cap = nc;
    }
    for (i = 0; i < n; i++)
        r->win[(r->head + r->len++) % r->cap] = buf[i];
    return 0;
}

/* Hands ready tasks to the pool, up to --workers in flight. r->mu held. */
static void dispatch(struct runner *r)
{
    int workers = r->cfg->workers > 0 ? r->cfg->workers : 4;
    while (!r->quit && r->in_flight < workers && r->len) {
        struct task *t = r->win[r->head];
        r->head = (r->head + 1) % r->cap;
        r->len--;
        r->in_flight++;
        tm__pool_submit(r->pool, &t->job);
    }
}

/* Takes a progress sample at now and updates the rates over the window
 * and the ETA: the larger of the estimates from items and from bytes (a
 * run of small files is bound by items, one of large files by bytes), -1
 * until RATE_MIN_S seconds of samples with progress. Called with r->mu
 * held, about once a second. */
static void measure(struct runner *r, int64_t now)
{
    struct tm__exec_cfg *c = r->cfg;
    int i = (r->smp_head + r->n_smp) % RATE_SAMPLES, o;
    double dt, left_i, left_b, eta = -1;

    if (r->n_smp == RATE_SAMPLES) {
        r->smp_head = (r->smp_head + 1) % RATE_SAMPLES;
        r->n_smp--;
    }
    r->smp[i].t = now;
    r->smp[i].nodes = r->done_nodes;
    r->smp[i].bytes = r->done_bytes;
    r->n_smp++;
    /* the oldest sample inside the window */
    while (r->n_smp > 1 &&
           now - r->smp[r->smp_head].t > (int64_t)RATE_WINDOW_S * 1000000000LL) {
        r->smp_head = (r->smp_head + 1) % RATE_SAMPLES;
        r->n_smp--;
    }
    o = r->smp_head;
    dt = (double)(now - r->smp[o].t) / 1e9;
    r->ips = dt > 0 ? (double)(r->done_nodes - r->smp[o].nodes) / dt : 0;
    r->bps = dt > 0 ? (double)(r->done_bytes - r->smp[o].bytes) / dt : 0;
    left_i = (double)(c->total_files - r->done_nodes);
    left_b = (double)(c->total_bytes - r->done_bytes);
    if (dt >= RATE_MIN_S && (r->ips > 0 || r->bps > 0)) {
        if (left_i > 0 && r->ips > 0)
            eta = left_i / r->ips;
        if (left_b > 0 && r->bps > 0 && left_b / r->bps > eta)
            eta = left_b / r->bps;
        if (left_i <= 0 && left_b <= 0)
            eta = 0;
    }
    r->eta = eta < 0 ? -1 : (int64_t)(eta + 0.5);
}

/* Writes an ETA as the status shows it: "ETA 1:02:03", "ETA —" when it
 * is not meaningful yet. */
static void fmt_eta(char *out, size_t len, int64_t s)
{
    if (s < 0)
        snprintf(out, len, "ETA \u2014");
    else
        snprintf(out, len, "ETA %lld:%02lld:%02lld", (long long)(s / 3600),
                 (long long)(s / 60 % 60), (long long)(s % 60));
}

/* Writes n bytes for people: "1.6 GiB", "512 B". */
static void fmt_size(char *out, size_t len, int64_t n)
{
    static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
    double v = (double)n;
    int u = -1;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u < 0)
        snprintf(out, len, "%lld B", (long long)n);
    else
        snprintf(out, len, "%.1f %s", v, unit[u]);
}

/* The observer: one queue_stats row. Called with r->mu held, which it
 * drops while handing the row to the writer (the writer may wait for a
 * commit, whose on_commit() takes r->mu). */
static void snapshot(struct runner *r, int64_t t0)
{
    struct tm__exec_cfg *c = r->cfg;
    int64_t st[7] = { r->depth, c->total_files - r->done_nodes, r->in_flight,
                      r->done_nodes, r->problems, r->done_bytes,
                      c->total_bytes - r->done_bytes };
    /* the rates of the ETA's window: status estimates as the live line */
    double rate[2] = { r->ips, r->bps };
    (void)t0;
    if (st[1] < 0)
        st[1] = 0;
    if (st[6] < 0)
        st[6] = 0;
    pthread_mutex_unlock(&r->mu);
    tm__observe_snapshot(r->w, c->mode == TM_EXEC_VERIFY ? "verify" : "copy", st,
                         rate);
    pthread_mutex_lock(&r->mu);
}

/* The live line (final: the last one, with the whole run's rate). The
 * ETA and the rate are those of measure(). */
static void report(struct runner *r, int64_t t0, int final)
{
    struct tm__exec_cfg *c = r->cfg;
    double secs = (double)(tm__now_ns() - t0) / 1e9;
    double rate = final ? (secs > 0 ? (double)r->done_bytes / secs : 0) : r->bps;
    char line[512], eta[64] = "", where[32] = "", done[32], total[32], rs[32];
    if (!c->progress)
        return;
    if (!final) {
        eta[0] = ',';
        eta[1] = ' ';
        fmt_eta(eta + 2, sizeof eta - 2, r->eta);
    }
    fmt_size(done, sizeof done, r->done_bytes);
    fmt_size(total, sizeof total, c->total_bytes);
    fmt_size(rs, sizeof rs, (int64_t)rate);
    if (c->mode == TM_EXEC_VERIFY) {
        if (c->checksum)
            snprintf(line, sizeof line, "%s %lld of %lld nodes checked, %s of %s "
                     "hashed, %s/s, %lld mismatches%s",
                     final ? "verified:" : "verifying:", (long long)r->done_nodes,
                     (long long)c->total_files, done, total, rs,
                     (long long)r->problems, eta);
        else
            snprintf(line, sizeof line, "%s %lld of %lld nodes checked, %lld "
                     "mismatches%s", final ? "verified:" : "verifying:",
                     (long long)r->done_nodes, (long long)c->total_files,
                     (long long)r->problems, eta);
    } else {
        if (!final)
            snprintf(where, sizeof where, r->stage == ST_ATTRS ? " folder attributes:"
                                                               : " depth %d:",
                     r->depth);
        snprintf(line, sizeof line,
                 "%s%s %lld of %lld nodes, %s of %s, %s/s, %lld failed%s",
                 final ? "copied:" : "copying:", where, (long long)r->done_nodes,
                 (long long)c->total_files, done, total, rs,
                 (long long)r->problems, eta);
    }
    c->progress(c->progress_ctx, line);
}

/* Before the first task of a copy depth: the depth goes to the state file
 * (through the writer, so ahead of every result of the depth), so that a
 * later run knows where a crash may have left temporaries (tm_copy). */
static int record_depth(struct runner *r, int depth)
{
    struct tm__result *res = calloc(1, sizeof *res);
    char v[32];
    snprintf(v, sizeof v, "%d", depth);
    if (res) {
        tm__buf_init(&res->arena);
        res->kind = TM_R_SETTING;
        res->path = strdup("copy_run_depth");
        res->value = strdup(v);
    }
    if (!res || !res->path || !res->value) {
        tm__result_free(res);
        return TM_ENOMEM;
    }
    return tm__writer_submit(r->w, res);
}

/* Runs one stage (one depth of the copy, the attrs, or verify): feeds the
 * ready queue until the query is exhausted, then waits for every task to
 * end and, for the copy, to be committed. Called with r->mu held. */
static int run_stage(struct runner *r, int stage, int depth, struct task **buf,
                     int64_t t0, int64_t *last_report)
{
    const struct tm__exec_claim *claim = r->cfg->claim;
    int64_t last = 0, next_claim = 0;
    int done_fetching = 0, rc = 0;
    /* with leases, a small window: tasks held but not begun are tasks
     * other workers cannot take */
    size_t low = claim ? (size_t)(claim->batch > 1 ? claim->batch / 2 : 1) : PAGE;

    r->stage = stage;
    r->depth = depth;
    r->fetched = r->finished = r->committed = 0;
    for (;;) {
        if (r->fatal || (rc = tm__writer_error(r->w)) != 0)
            return r->fatal ? r->fatal : rc;
        if (stopping(r))
            return TM_ESTOPPED;
        if (!done_fetching && r->len < low && tm__now_ns() >= next_claim) {
            int n;
            pthread_mutex_unlock(&r->mu);
            n = fetch(r, stage, depth, &last, buf);
            if (n > 0 && (stage == ST_COPY_DEPTH || stage == ST_LINKS) &&
                r->fetched == 0 &&
                (rc = record_depth(r, depth)) != 0) {
                while (n-- > 0)
                    task_free(buf[n]);
                n = rc;
            }
            pthread_mutex_lock(&r->mu);
            if (n < 0)
                return n;
            rc = push(r, buf, n);
            if (rc) {
                while (n-- > 0) /* not in the queue: still ours */
                    task_free(buf[n]);
                return rc;
            }
            r->fetched += n;
            if (!claim) {
                done_fetching = n < PAGE;
            } else if (n == 0) {
                /* nothing to claim now: the stage is over when nothing
                 * of it is left with anyone (a lease that expires is
                 * claimed again); else look again in a while */
                next_claim = tm__now_ns() + CLAIM_POLL_NS;
                if (r->len == 0 && r->in_flight == 0 &&
                    (stage == ST_ATTRS || stage == ST_VERIFY ||
                     r->committed >= r->fetched)) {
                    int kind = stage == ST_COPY_DEPTH ? TM_TASKS_COPY
                               : stage == ST_LINKS    ? TM_TASKS_LINKS
                               : stage == ST_ATTRS    ? TM_TASKS_ATTRS
                                                      : TM_TASKS_VERIFY;
                    pthread_mutex_unlock(&r->mu);
                    n = claim->left(claim->ctx, kind, depth);
                    pthread_mutex_lock(&r->mu);
                    if (n < 0) {
                        tm__buf_reset(r->cfg->err);
                        tm__buf_add(r->cfg->err, claim->err->buf, claim->err->len);
                        return n;
                    }
                    done_fetching = n == 0;
                }
            }
            dispatch(r);
            continue;
        }
        dispatch(r);
        if (done_fetching && r->len == 0 && r->in_flight == 0 &&
            ((stage != ST_COPY_DEPTH && stage != ST_LINKS) ||
             r->committed >= r->fetched))
            return 0;
        if ((done_fetching || claim) && r->len == 0 && r->in_flight == 0 &&
            r->committed < r->fetched) {
            pthread_mutex_unlock(&r->mu);
            tm__writer_flush(r->w);
            pthread_mutex_lock(&r->mu);
        }
        if (tm__now_ns() - *last_report >= 1000000000LL) {
            *last_report = tm__now_ns();
            measure(r, *last_report);
            report(r, t0, 0);
            snapshot(r, t0);
        }
        {
            /* 100 ms, or until the next claim: with nothing in flight no
             * task's end wakes this thread, and a depth's end, which
             * another worker's last tasks make, was seen up to 100 ms late
             * instead of CLAIM_POLL_NS */
            struct timespec ts;
            int64_t wait = 100 * 1000000LL, now = tm__now_ns();
            if (claim && !done_fetching && next_claim > now && next_claim - now < wait)
                wait = next_claim - now;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)wait;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&r->cv_coord, &r->mu, &ts);
        }
    }
}

/* Syncs the destination before the last commit of the copy: when the
 * state file says the copy is complete, its data is on disk. (Commits
 * during the copy do not wait for that: after a power loss, verify finds
 * what did not reach the disk.) */
static int sync_dst(void *ctx)
{
    struct runner *r = ctx;
    struct tm__aerr ae;
    return tm__adapter_sync(r->cfg->ad[TM_DST], &ae);
}

static int run_stages(struct runner *r, struct task **buf)
{
    int64_t t0 = tm__now_ns(), last_report = t0;
    int rc = 0, depth, maxd = 0;

    rc = tm__tasks_max_depth(r->q, &maxd);
    if (rc) {
        tm__buf_reset(r->cfg->err);
        tm__buf_adds(r->cfg->err, tm__tasks_errmsg(r->q));
        return rc;
    }
    pthread_mutex_lock(&r->mu);
    measure(r, t0); /* the window starts with the run */
    if (r->cfg->mode == TM_EXEC_COPY) {
        for (depth = 1; depth <= maxd && !rc; depth++) {
            rc = run_stage(r, ST_COPY_DEPTH, depth, buf, t0, &last_report);
            /* then the files of that depth linked to the first of their
             * link group (at this depth or above: copied and committed) */
            if (!rc)
                rc = run_stage(r, ST_LINKS, depth, buf, t0, &last_report);
        }
        if (!rc)
            rc = run_stage(r, ST_ATTRS, 0, buf, t0, &last_report);
    } else {
        rc = run_stage(r, ST_VERIFY, 0, buf, t0, &last_report);
    }
    r->quit = 1;
    atomic_store(&r->quitting, 1);
    if (!rc) {
        measure(r, tm__now_ns());
        snapshot(r, t0);
    }
    pthread_mutex_unlock(&r->mu);
    if (!rc)
        report(r, t0, 1);
    return rc;
}

static int open_readers(struct runner *r)
{
    int i, rc;
    for (i = 0; i < READERS; i++) {
        pthread_mutex_init(&r->rdr[i].mu, NULL);
        rc = tm__tasks_open(&r->rdr[i].q, r->cfg->db_path, r->cfg->err);
        if (rc)
            return rc;
    }
    return 0;
}

int tm__exec_run(struct tm__exec_cfg *cfg)
{
    struct runner r;
    struct task **buf = NULL;
    int64_t next_id[2] = { 1, 1 };
    int n = cfg->workers > 0 ? cfg->workers : 4, i, rc, wrc;

    memset(&r, 0, sizeof r);
    r.eta = -1;
    r.cfg = cfg;
    r.prec = cfg->ad[0]->mtime_precision > cfg->ad[1]->mtime_precision
                 ? cfg->ad[0]->mtime_precision
                 : cfg->ad[1]->mtime_precision;
    tm__attr_rule_init(&r.rule, cfg->ad[TM_SRC], cfg->ad[TM_DST], cfg->owner,
                       cfg->owner_discovered);
    r.rule.xattrs = r.rule.xattrs && cfg->xattrs;
    /* verify's listings of the destination give each node's extended
     * attributes' digest, compared with the source's */
    tm__adapter_set_list_xattrs(cfg->ad[TM_DST],
                                cfg->mode == TM_EXEC_VERIFY && r.rule.xattrs);
    r.folder_attrs = cfg->ad[TM_DST]->set_attr != NULL;
    tm__buf_init(&r.fatal_msg);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv_coord, NULL);
    atomic_init(&r.quitting, 0);
    atomic_init(&r.next_reader, 0);
    if (cfg->mode == TM_EXEC_COPY &&
        (!cfg->ad[TM_SRC]->open_read || !cfg->ad[TM_DST]->open_write ||
         !cfg->ad[TM_DST]->mkdir)) {
        tm__buf_addf(cfg->err, "the %s storage cannot be %s",
                     cfg->ad[TM_SRC]->open_read ? "destination" : "source",
                     cfg->ad[TM_SRC]->open_read ? "written" : "read");
        rc = TM_EINVAL;
        goto out;
    }
    rc = tm__tasks_open(&r.q, cfg->db_path, cfg->err);
    if (!rc && cfg->mode == TM_EXEC_VERIFY)
        rc = open_readers(&r);
    if (rc)
        goto out;
    buf = malloc(PAGE * sizeof *buf);
    if (!buf) {
        rc = TM_ENOMEM;
        goto out;
    }
    rc = tm__writer_start(&r.w, cfg->db, next_id, WRITER_MAX_ROWS, on_commit, &r);
    if (rc)
        goto out;
    rc = tm__observe_start(&r.lg, cfg->log, r.w, cfg->err);
    if (rc)
        goto out;
    tm__log(r.lg, TM_INFO | TM__LOG_MILESTONE, "engine", 0, NULL,
            "%s started: %d workers",
            cfg->mode == TM_EXEC_VERIFY ? "verify" : "copy", n);
    if (cfg->mode == TM_EXEC_COPY && cfg->owner && !cfg->owner_discovered) {
        static const char note[] =
            "note: copy --owner on a migration discovered without --owner: the "
            "copy gives their source's owner to what it writes and to every "
            "folder, but files and symlinks discovery found already there keep "
            "theirs (owners were not compared); discover --owner, into a new "
            "state file, compares them";
        tm__log(r.lg, TM_WARNING, "copy", 0, NULL, "%s", note);
        if (cfg->progress)
            cfg->progress(cfg->progress_ctx, note);
    }
    if (cfg->bwlimit > 0 || cfg->tpslimit > 0) {
        /* each side its own: the tm__adapter_* wrappers make the workers
         * wait; a stop ends the waits */
        for (i = 0; i < 2; i++) {
            tm__limit_init(&r.lim[i], cfg->bwlimit, cfg->tpslimit, cfg->stop);
            cfg->ad[i]->limit = &r.lim[i];
        }
        r.limited = 1;
    }
    rc = tm__pool_start(&r.pool, n, 1024);
    if (!rc)
        rc = run_stages(&r, buf);
out:
    pthread_mutex_lock(&r.mu);
    r.quit = 1;
    atomic_store(&r.quitting, 1);
    pthread_mutex_unlock(&r.mu);
    tm__pool_stop(r.pool); /* the running tasks end; queued ones give up */
    if (r.limited) {
        for (i = 0; i < 2; i++) {
            cfg->ad[i]->limit = NULL;
            cfg->limit_waited_ns += r.lim[i].waited_ns;
            tm__log(r.lg, TM_INFO, "engine", 0, NULL, "%s limits: %lld bytes, "
                    "%lld operations; workers waited %.3f s for them",
                    side_names[i], (long long)r.lim[i].bytes,
                    (long long)r.lim[i].ops, (double)r.lim[i].waited_ns / 1e9);
            tm__limit_release(&r.lim[i]);
        }
    }
    /* everything copied is on the destination's disk before the state
     * file says so for the last time */
    if (cfg->mode == TM_EXEC_COPY && r.w && cfg->ad[TM_DST]->sync)
        tm__writer_set_precommit(r.w, sync_dst, &r);
    if (r.lg) {
        const char *what = cfg->mode == TM_EXEC_VERIFY ? "verify" : "copy";
        if (rc == 0)
            tm__log(r.lg, TM_INFO | TM__LOG_MILESTONE, "engine", 0, NULL,
                    "%s complete: %lld nodes, "
                    "%lld bytes, %lld problems", what, (long long)r.done_nodes,
                    (long long)r.done_bytes, (long long)r.problems);
        else if (rc == TM_ESTOPPED)
            tm__log(r.lg, TM_WARNING, "engine", 0, NULL, "%s interrupted", what);
        else
            tm__log(r.lg, TM_CRITICAL, "engine", 0, NULL, "%s stopped: %s", what,
                    r.fatal_msg.len ? r.fatal_msg.buf : tm_strerror(rc));
        tm__logger_stop(r.lg); /* before the writer: its records go there */
    }
    if (r.w) {
        struct tm__buf werr = TM__BUF_INIT;
        wrc = tm__writer_stop(r.w, &werr);
        if (wrc && (!rc || rc == TM_ESTOPPED || (rc == wrc && !r.fatal))) {
            rc = wrc;
            tm__buf_reset(cfg->err);
            tm__buf_add(cfg->err, werr.buf, werr.len);
        }
        tm__buf_release(&werr);
    }
    if (r.fatal && rc == r.fatal) {
        tm__buf_reset(cfg->err);
        tm__buf_add(cfg->err, r.fatal_msg.buf, r.fatal_msg.len);
    }
    cfg->problems = r.problems;
    while (r.free_wk) {
        struct worker *wk = r.free_wk;
        r.free_wk = wk->next;
        worker_free(wk);
    }
    while (r.len) {
        task_free(r.win[r.head]);
        r.head = (r.head + 1) % r.cap;
        r.len--;
    }
    free(r.win);
    for (i = 0; i < READERS; i++) {
        tm__tasks_close(r.rdr[i].q);
        if (r.rdr[i].q)
            pthread_mutex_destroy(&r.rdr[i].mu);
    }
    tm__tasks_close(r.q);
    free(buf);
    tm__buf_release(&r.fatal_msg);
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv_coord);
    return rc;
}
