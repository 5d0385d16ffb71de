/*
 * execute.c - the copy and verify passes of execute.h.
 *
 * Threads: the caller's thread is the coordinator; a pool of workers runs
 * the tasks; the writer (store/writer.c) records the outcomes. The
 * coordinator reads tasks from the state file in keyset pages into a
 * bounded window, stage by stage:
 *   copy    one stage per depth (1, 2, ...): every pending folder, file and
 *           symlink of that depth. A depth starts once the previous one is
 *           committed, so a node's parent is known to exist. Then one stage
 *           sets the mode and mtime of every folder (their contents are
 *           complete), and the destination is synced.
 *   verify  one stage: every folder whose copy is done or already existed;
 *           a worker lists its destination twin and checks each child; a
 *           child that does not match becomes a failed node (retry redoes
 *           it).
 *
 * Lock order: r->mu, then the writer's mutex (tm__writer_error); never the
 * reverse. r->mu is never held while calling an adapter or SQLite, nor
 * while handing anything to the writer (it may wait for a commit, whose
 * on_commit() takes r->mu).
 */
#include "engine/execute.h"

#include "engine/engine.h"
#include "engine/observe.h"
#include "store/store.h"
#include "store/writer.h"
#include "util/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <xxhash.h>

#define PAGE 1024
#define WRITER_MAX_ROWS 4096 /* rows queued for the writer: see discover.c */
#define IO_BUF (1 << 20)

enum stage { ST_COPY_DEPTH, ST_ATTRS, ST_VERIFY };

struct task {
    int64_t id;            /* source row */
    char *path;            /* root-relative path (malloc'd, with why) */
    const char *why;       /* a folder whose listing failed: the reason
                              (in path's allocation), else NULL */
    int depth;             /* its depth */
    int type;              /* enum tm__type */
    int64_t size, mtime;   /* as discovered */
    uint32_t mode;         /* permission bits */
    int cf;                /* enum tm__cf */
    int parent_cs;         /* copy status of the parent */
};

struct runner {
    struct tm__exec_cfg *cfg;  /* what to do */
    pthread_mutex_t mu;        /* guards everything below */
    pthread_cond_t cv_work;    /* tasks in the window, or quit */
    pthread_cond_t cv_coord;   /* a task ended or was committed */
    struct task *win;          /* ring of waiting tasks */
    size_t head, len, cap;     /* ring position, fill, capacity */
    int in_flight;             /* tasks being worked on */
    int64_t fetched, finished, committed; /* tasks of the stage */
    int stage;                 /* enum stage */
    int depth;                 /* copy: the depth of the stage */
    int quit;                  /* workers must exit */
    int fatal;                 /* first fatal error of a worker */
    struct tm__buf fatal_msg;  /* its message */
    int64_t done_nodes;        /* nodes copied or checked */
    int64_t done_bytes;        /* bytes copied or hashed */
    int64_t problems;          /* failures / mismatches */
    int64_t prec;              /* mtime precision of the comparison */
    struct tm__writer *w;      /* the writer */
    sqlite3 *rd;               /* the coordinator's read connection */
    struct tm__logger *lg;     /* the log service, or NULL */
};

struct worker {
    struct runner *r;      /* the runner */
    sqlite3 *rd;           /* verify: read connection */
    sqlite3_stmt *kids;    /* verify: the copied children of a folder */
    sqlite3_stmt *src_kid; /* verify: a source child by parent and name */
    char *buf, *buf2;      /* I/O buffers */
    struct tm__buf scratch; /* symlink targets */
    int err_src;           /* the last copy error came from the source */
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
    pthread_cond_broadcast(&r->cv_work);
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

    rc = sa->open_read(sa, t->path, &in, &st);
    if (rc) {
        wk->err_src = 1;
        return rc;
    }
    if (st.size != t->size || st.mtime != t->mtime) {
        rc = TM_ECHANGED;
        goto out;
    }
    rc = da->open_write(da, t->path, &out);
    if (rc)
        goto out;
    if (da->copy_from && strcmp(sa->name, da->name) == 0) {
        n = tm__adapter_copy_from(da, out, in, t->size);
    } else {
        while (n < t->size) {
            int64_t got = sa->read(in, wk->buf, IO_BUF), put;
            if (got <= 0) {
                if (got < 0) {
                    n = got;
                    wk->err_src = 1;
                }
                break;
            }
            put = da->write(out, wk->buf, (size_t)got);
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
    if (n == t->size && (rc = sa->fstat(in, &st2)) != 0) {
        wk->err_src = 1;
        goto out;
    }
    if (n != t->size || st2.size != t->size || st2.mtime != t->mtime) {
        rc = TM_ECHANGED;
        goto out;
    }
    mode = t->mode;
    if (wk->r->cfg->owner) {
        out->set_owner = 1;
        out->uid = st.uid;
        out->gid = st.gid;
    } else if (mode & 06000) {
        /* the copy's user owns the file: a set-ID bit of another user's
         * (or group's) file would hand out the copy's own powers */
        int known = (sa->caps & TM_CAP_OWNER) != 0;
        if (!known || st.uid != (int64_t)geteuid())
            mode &= ~04000u;
        if (!known || st.gid != (int64_t)getegid())
            mode &= ~02000u;
    }
    rc = da->commit(out, t->mtime, mode, place_flags(wk->r, t));
    out = NULL;
    if (!rc) {
        pthread_mutex_lock(&wk->r->mu);
        wk->r->done_bytes += t->size;
        pthread_mutex_unlock(&wk->r->mu);
    }
out:
    if (out)
        da->abort(out);
    sa->close_read(in);
    return rc;
}

/* --owner for a folder or symlink: the source's owner, by path. */
static int copy_owner(struct worker *wk, const char *path)
{
    struct tm__adapter *sa = wk->r->cfg->ad[TM_SRC], *da = wk->r->cfg->ad[TM_DST];
    struct tm__entry st;
    int rc = tm__adapter_stat(sa, path, &st);
    return rc ? rc : da->chown(da, path, st.uid, st.gid);
}

static int copy_one(struct worker *wk, const struct task *t)
{
    struct tm__adapter *sa = wk->r->cfg->ad[TM_SRC], *da = wk->r->cfg->ad[TM_DST];
    int rc;
    switch (t->type) {
    case TM_T_FOLDER:
        return da->mkdir(da, t->path);
    case TM_T_SYMLINK:
        if (!sa->readlink || !da->symlink)
            return TM_EINVAL;
        rc = sa->readlink(sa, t->path, &wk->scratch);
        wk->err_src = rc != 0;
        if (!rc)
            rc = da->symlink(da, t->path, wk->scratch.buf, t->mtime,
                             place_flags(wk->r, t));
        return rc || !wk->r->cfg->owner ? rc : copy_owner(wk, t->path);
    case TM_T_FILE:
        return copy_file(wk, t);
    default:
        return TM_EINVAL;
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
    char *parent;
    int rc;
    if ((t->parent_cs != CS_SUCCESSFUL && t->parent_cs != CS_ALREADY) ||
        !da->set_attr || !slash || slash == t->path)
        return 0;
    parent = strndup(t->path, (size_t)(slash - t->path));
    if (!parent)
        return 0;
    rc = da->set_attr(da, parent, TM_MTIME_KEEP, 0700);
    free(parent);
    return rc == 0;
}

/* After a failure rc of a call to a: 1 when it should be tried again (the
 * wait is done: the storage's for throttling, else *backoff, doubled),
 * counting *tries against the retries; 0 when not. */
static int again(struct runner *r, struct tm__adapter *a, int rc, int *tries,
                 int64_t *backoff)
{
    enum tm__errclass cls = tm__adapter_classify(a, rc);
    if (stopping(r))
        return 0;
    if (cls == TM_ERR_THROTTLE) {
        tm__sleep_ms(tm__adapter_retry_after(a));
        return 1;
    }
    if (cls != TM_ERR_RETRY || ++*tries > r->cfg->retries)
        return 0;
    tm__sleep_ms(*backoff);
    *backoff = *backoff * 2 > 5000 ? 5000 : *backoff * 2;
    return 1;
}

/* Runs op with retries; returns its last result or TM_ESTOPPED. */
static int with_retries(struct worker *wk, const struct task *t, int *attempts)
{
    struct runner *r = wk->r;
    struct tm__adapter *da = r->cfg->ad[TM_DST];
    int64_t backoff = 50;
    int rc, unlocked = 0;
    for (*attempts = 1;; (*attempts)++) {
        enum tm__errclass cls;
        wk->err_src = 0;
        rc = copy_one(wk, t);
        if (!rc)
            return 0;
        if (rc == TM_EACCES && !unlocked && (unlocked = unlock_parent(wk, t))) {
            (*attempts)--;
            continue;
        }
        cls = tm__adapter_classify(da, rc);
        if (cls == TM_ERR_THROTTLE) {
            /* the side that said so knows how long to wait */
            (*attempts)--;
            tm__sleep_ms(tm__adapter_retry_after(wk->err_src ? r->cfg->ad[TM_SRC]
                                                              : da));
        } else if (cls == TM_ERR_RETRY && *attempts <= r->cfg->retries) {
            tm__log(r->lg, TM_WARNING, "copy", t->id, t->path,
                    "copy %s: %s; retry %d of %d", t->path, tm_strerror(rc),
                    *attempts, r->cfg->retries);
            tm__sleep_ms(backoff);
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
        } else {
            return rc;
        }
        if (stopping(r))
            return TM_ESTOPPED;
    }
}

/* 1 when what is at the node's real name on the destination is the node
 * as the copy makes it (same type, size and mtime, as discovery compares):
 * a copy redone after a crash finds its own earlier result there. */
static int placed_same(struct worker *wk, const struct task *t)
{
    struct tm__adapter *da = wk->r->cfg->ad[TM_DST];
    struct tm__entry e;
    if (tm__adapter_stat(da, t->path, &e) != 0)
        return 0;
    return e.type == t->type && e.size == t->size &&
           !tm__mtime_out_of_range(e.mtime) &&
           tm__compare_leaf(t->size, t->mtime, e.size, e.mtime, wk->r->prec) ==
               CF_NONE;
}

static int copy_task(struct worker *wk, const struct task *t,
                     struct tm__result **out)
{
    struct runner *r = wk->r;
    char why[512];
    int rc, attempts = 1;

    *out = NULL;
    if (t->parent_cs == CS_SKIPPED || t->parent_cs == CS_EXCLUDED) {
        *out = copy_result(t, CS_SKIPPED, "its folder is not copied");
        return *out ? 0 : TM_ENOMEM;
    }
    if (t->parent_cs != CS_ALREADY && t->parent_cs != CS_SUCCESSFUL) {
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
    if (r->cfg->no_overwrite && t->cf != CF_NONE && t->type != TM_T_FOLDER) {
        *out = copy_result(t, CS_SKIPPED, "kept the destination's version "
                                          "(--no-overwrite)");
        return *out ? 0 : TM_ENOMEM;
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
    rc = with_retries(wk, t, &attempts);
    if (rc == TM_ESTOPPED)
        return rc;
    if (rc && roots_gone(r, 1))
        return TM_ENOENT; /* not this node's fault */
    if (rc == TM_EEXIST) {
        /* the real name was taken, and not by a twin discovery saw */
        if (t->type != TM_T_FOLDER && placed_same(wk, t))
            rc = 0; /* the node as copied: an earlier run placed it, then
                       crashed before recording it */
        else if (r->cfg->no_overwrite && t->type != TM_T_FOLDER) {
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
    /* a full or read-only destination ends the copy; the same error from
     * the source is that node's failure */
    if (rc && tm__adapter_classify(r->cfg->ad[TM_DST], rc) == TM_ERR_FATAL &&
        rc != TM_EINVAL && (!wk->err_src || rc == TM_ENOMEM || rc == TM_EINTERNAL))
        return rc;
    if (rc) {
        char msg[256];
        if (rc == TM_ECHANGED || rc == TM_EINVAL)
            snprintf(msg, sizeof msg, "%s",
                     rc == TM_EINVAL ? "not a regular file any more"
                                     : "changed since discovery");
        else
            tm__adapter_describe(r->cfg->ad[wk->err_src ? TM_SRC : TM_DST], rc,
                                 msg, sizeof msg);
        snprintf(why, sizeof why, "copy %s: %s%s", t->path,
                 wk->err_src ? "reading the source: " : "", msg);
    }
    *out = copy_result(t, rc ? CS_FAILED : CS_SUCCESSFUL, rc ? why : NULL);
    if (!*out)
        return TM_ENOMEM;
    (*out)->attempts = attempts;
    return 0;
}

static int attrs_task(struct worker *wk, const struct task *t,
                      struct tm__result **out)
{
    struct tm__adapter *da = wk->r->cfg->ad[TM_DST];
    char why[512], msg[256];
    int rc, tries = 0;
    int64_t backoff = 50;
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
    if (roots_gone(wk->r, 0))
        return TM_ENOENT;
    do {
        /* the owner first: chown clears the set-group-ID bit of a folder */
        rc = wk->r->cfg->owner ? copy_owner(wk, t->path) : 0;
        if (!rc)
            rc = da->set_attr(da, t->path, t->mtime, t->mode);
    } while (rc && again(wk->r, da, rc, &tries, &backoff));
    if (!rc)
        return 0;
    if (roots_gone(wk->r, 1))
        return TM_ENOENT;
    if (tm__adapter_classify(da, rc) == TM_ERR_FATAL)
        return rc;
    tm__adapter_describe(da, rc, msg, sizeof msg);
    snprintf(why, sizeof why, "set %s of %s: %s", wk->r->cfg->owner ?
             "owner, mode and mtime" : "mode and mtime", t->path, msg);
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
    int rc = a->open_read ? a->open_read(a, path, &f, &st) : TM_EINVAL;
    if (rc)
        return rc;
    h = XXH3_createState();
    if (!h) {
        a->close_read(f);
        return TM_ENOMEM;
    }
    XXH3_64bits_reset(h);
    *bytes = 0;
    while ((n = a->read(f, wk->buf2, IO_BUF)) > 0) {
        XXH3_64bits_update(h, wk->buf2, (size_t)n);
        *bytes += n;
    }
    *out = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    a->close_read(f);
    return n < 0 ? (int)n : 0;
}

/* 1 when err ends verify instead of being a mismatch (not enough memory:
 * nothing is known about the node). */
static int verify_fatal(int err)
{
    return err == TM_ENOMEM || err == TM_EINTERNAL;
}

/* Checks one source child against what the destination listing found.
 * Returns NULL when it matches, else a static or buffer message; NULL with
 * *fatal set when it could not be checked for a reason that ends verify.
 * On a mismatch *cf gets the conflict the node takes so that a new copy
 * replaces what is there (CF_NONE: nothing to replace, or something of
 * another type that is never replaced), or -1 when the node itself was
 * not found wrong (it could not be read to compare). */
static const char *check_child(struct worker *wk, const char *path, int type,
                               int64_t size, int64_t mtime, const struct tm__ent *d,
                               char *buf, size_t len, int *fatal, int *cf)
{
    struct runner *r = wk->r;
    *cf = CF_NONE;
    if (!d)
        return "missing on the destination";
    if (d->type != type) {
        snprintf(buf, len, "is a %s on the destination, a %s on the source",
                 tm__type_names[d->type], tm__type_names[type]);
        return buf;
    }
    if (type != TM_T_FILE && type != TM_T_SYMLINK)
        return NULL;
    if (d->size != size) {
        *cf = CF_SIZE;
        snprintf(buf, len, "size %lld on the destination, %lld on the source",
                 (long long)d->size, (long long)size);
        return buf;
    }
    if ((*cf = tm__compare_leaf(size, mtime, d->size, d->mtime, r->prec)) != CF_NONE)
        return "mtime differs";
    if (r->cfg->checksum && type == TM_T_SYMLINK) {
        struct tm__adapter *sa = r->cfg->ad[TM_SRC], *da = r->cfg->ad[TM_DST];
        struct tm__buf dt = TM__BUF_INIT;
        int rc = 0, tries = 0;
        int64_t backoff = 50;
        do {
            rc = sa->readlink && da->readlink ? sa->readlink(sa, path, &wk->scratch)
                                              : TM_EINVAL;
            if (!rc)
                rc = da->readlink(da, path, &dt);
        } while (rc && rc != TM_EINVAL && again(r, da, rc, &tries, &backoff));
        if (rc && verify_fatal(rc)) {
            tm__buf_release(&dt);
            *fatal = rc;
            return NULL;
        }
        if (rc) {
            tm__buf_release(&dt);
            *cf = -1;
            snprintf(buf, len, "cannot read the link to compare: %s",
                     tm_strerror(rc));
            return buf;
        }
        rc = dt.len != wk->scratch.len || memcmp(dt.buf, wk->scratch.buf, dt.len);
        tm__buf_release(&dt);
        if (rc) {
            *cf = CF_CONTENT;
            return "link target differs";
        }
    }
    if (r->cfg->checksum && type == TM_T_FILE) {
        uint64_t hs = 0, hd = 0;
        int64_t bs = 0, bd = 0;
        int rc, tries = 0;
        int64_t backoff = 50;
        do {
            rc = hash_file(wk, r->cfg->ad[TM_SRC], path, &hs, &bs);
            if (!rc)
                rc = hash_file(wk, r->cfg->ad[TM_DST], path, &hd, &bd);
        } while (rc && again(r, r->cfg->ad[TM_DST], rc, &tries, &backoff));
        if (rc && verify_fatal(rc)) {
            *fatal = rc;
            return NULL;
        }
        if (rc) {
            *cf = -1;
            snprintf(buf, len, "cannot read to compare: %s", tm_strerror(rc));
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
    return NULL;
}

/* Hands a verify finding to the writer and counts it (a warning, phase
 * verify-leftover, is not counted). */
static int verify_report(struct worker *wk, struct tm__result *p)
{
    struct runner *r = wk->r;
    if (!p)
        return TM_ENOMEM;
    pthread_mutex_lock(&r->mu);
    r->problems += strcmp(p->phase, "verify") == 0;
    pthread_mutex_unlock(&r->mu);
    tm__log(r->lg, TM_ERROR, "verify", p->folder_id, p->path, "verify %s: %s",
            p->path, p->error);
    return tm__writer_submit(r->w, p);
}

/* 1 when a row answers the statement st bound with (id, name). */
static int has_row(sqlite3_stmt *st, int64_t id, const char *name, size_t len,
                   int *err)
{
    int step;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, name, (int)len, SQLITE_STATIC);
    step = sqlite3_step(st);
    sqlite3_reset(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        *err = tm__store_error(sqlite3_db_handle(st), step, NULL, "read rows");
    return step == SQLITE_ROW;
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
        if (e->type != TM_T_FILE && e->type != TM_T_SYMLINK)
            continue;
        if (!tm__tmp_name_like(name, e->name_len))
            continue;
        if (has_row(wk->src_kid, t->id, name, e->name_len, &rc) || rc)
            continue;
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

static int verify_task(struct worker *wk, const struct task *t)
{
    struct runner *r = wk->r;
    struct tm__listing l = TM__LISTING_INIT;
    char buf[256], why[1024];
    int rc, step, checked = 0;

    {
        struct tm__aerr ae;
        int tries = 0;
        int64_t backoff = 50;
        do {
            tm__listing_reset(&l);
            rc = tm__adapter_list(r->cfg->ad[TM_DST], t->path, tm__listing_add,
                                  &l, &ae);
        } while (rc && again(r, r->cfg->ad[TM_DST], rc, &tries, &backoff));
    }
    if (!rc)
        rc = tm__listing_sort(&l);
    if (rc && roots_gone(r, 1)) {
        tm__listing_release(&l);
        return TM_ENOENT;
    }
    if (rc && verify_fatal(rc)) {
        tm__listing_release(&l);
        return rc;
    }
    if (rc == TM_ENOENT && t->depth > 0) {
        /* the folder is gone: everything it should hold is missing (and
         * becomes failed below, so one retry copies all of it again) */
        tm__listing_reset(&l);
        rc = 0;
    }
    if (rc) {
        struct tm__result *p;
        snprintf(why, sizeof why, "verify: cannot list the destination folder: %s",
                 tm_strerror(rc));
        /* what it holds was not checked: the folder fails (retry copies it
         * again); the root has no copy of its own: only the report */
        p = t->depth > 0
                ? verify_failed(t->id, t->path, t->depth, TM_T_FOLDER, 0,
                                t->parent_cs, t->cf, t->cf, why)
                : problem("verify", t->id, t->path, why);
        tm__listing_release(&l);
        return verify_report(wk, p);
    }
    sqlite3_bind_int64(wk->kids, 1, t->id);
    while ((step = sqlite3_step(wk->kids)) == SQLITE_ROW && !rc) {
        const struct tm__ent *d;
        const char *msg, *path, *cfs;
        int cf = CF_NONE, old_cf, cs;
        int type = tm__name_index(tm__type_names, TM_T_COUNT,
                                  (const char *)sqlite3_column_text(wk->kids, 1));
        d = tm__listing_find(&l, (const char *)sqlite3_column_text(wk->kids, 0),
                             (size_t)sqlite3_column_bytes(wk->kids, 0));
        path = (const char *)sqlite3_column_text(wk->kids, 4);
        msg = check_child(wk, path, type, sqlite3_column_int64(wk->kids, 2),
                          sqlite3_column_int64(wk->kids, 3), d, buf, sizeof buf,
                          &rc, &cf);
        if (rc)
            break;
        checked++;
        cs = tm__name_index(tm__cs_names, CS_COUNT,
                            (const char *)sqlite3_column_text(wk->kids, 6));
        cfs = (const char *)sqlite3_column_text(wk->kids, 7);
        old_cf = cfs ? tm__name_index(tm__cf_names, CF_COUNT, cfs) : CF_NONE;
        if (type < 0 || cs < 0 || old_cf < 0) {
            rc = TM_ECORRUPT;
            break;
        }
        if (!msg && cs == CS_FAILED && old_cf == CF_CONTENT && !r->cfg->checksum) {
            /* what only --checksum can see is not cleared without it */
            rc = verify_report(wk, problem("verify", sqlite3_column_int64(wk->kids, 5),
                                           path, "not checked: its contents differed "
                                           "at the last verify --checksum; run verify "
                                           "--checksum (or retry)"));
            continue;
        }
        if (!msg && cs == CS_FAILED) {
            /* an earlier verify found it wrong; it matches now (put back
             * by hand): copied as it should be */
            struct task x;
            struct tm__result *ok;
            memset(&x, 0, sizeof x);
            x.id = sqlite3_column_int64(wk->kids, 5);
            x.path = (char *)path;
            x.depth = t->depth + 1;
            x.type = type;
            x.size = sqlite3_column_int64(wk->kids, 2);
            x.cf = old_cf;
            ok = copy_result(&x, CS_SUCCESSFUL, NULL);
            if (!ok) {
                rc = TM_ENOMEM;
                break;
            }
            ok->old_cs = CS_FAILED;
            ok->attempts = 0;
            ok->phase = "verify";
            rc = tm__writer_submit(r->w, ok);
            continue;
        }
        if (!msg)
            continue;
        if (cf < 0) {
            rc = verify_report(wk, problem("verify", sqlite3_column_int64(wk->kids, 5),
                                           path, msg));
            continue;
        }
        snprintf(why, sizeof why, "verify: %s (marked failed: retry copies it "
                 "again)", msg);
        rc = verify_report(wk, verify_failed(sqlite3_column_int64(wk->kids, 5), path,
                                             t->depth + 1, type,
                                             sqlite3_column_int64(wk->kids, 2), cs,
                                             old_cf, cf, why));
    }
    if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = tm__store_error(wk->rd, step, NULL, "read source rows");
    sqlite3_reset(wk->kids);
    if (!rc)
        rc = verify_leftovers(wk, t, &l);
    tm__listing_release(&l);
    pthread_mutex_lock(&r->mu);
    r->done_nodes += checked;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- the pool and the coordinator ---- */

/* A fatal error of a task on path. Called with r->mu held (then the
 * writer's mutex: the lock order allows it). */
static void set_fatal(struct runner *r, int err, const char *path)
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
        set_fatal_msg(r, err, "%s: %s", path, tm_strerror(err));
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    struct runner *r = wk->r;

    pthread_mutex_lock(&r->mu);
    for (;;) {
        struct tm__result *res = NULL;
        struct task t;
        int rc = 0, stage;
        while (!r->quit && r->len == 0)
            pthread_cond_wait(&r->cv_work, &r->mu);
        if (r->quit)
            break;
        t = r->win[r->head];
        r->head = (r->head + 1) % r->cap;
        r->len--;
        r->in_flight++;
        stage = r->stage;
        pthread_mutex_unlock(&r->mu);

        if (stage == ST_COPY_DEPTH)
            rc = copy_task(wk, &t, &res);
        else if (stage == ST_ATTRS)
            rc = attrs_task(wk, &t, &res);
        else
            rc = verify_task(wk, &t);
        if (!rc && res && res->error)
            tm__log(r->lg, res->kind == TM_R_COPY && res->new_cs != CS_FAILED
                               ? TM_INFO : TM_ERROR,
                    stage == ST_VERIFY ? "verify" : "copy", t.id, t.path, "%s",
                    res->error);
        if (!rc && res) {
            int failed = res->kind == TM_R_COPY && res->new_cs == CS_FAILED;
            int ok = res->kind == TM_R_COPY && res->new_cs == CS_SUCCESSFUL;
            rc = tm__writer_submit(r->w, res); /* res belongs to the writer */
            pthread_mutex_lock(&r->mu);
            r->problems += failed;
            r->done_nodes += ok;
            pthread_mutex_unlock(&r->mu);
        }
        if (rc == TM_ESTOPPED)
            rc = 0; /* abandoned: still pending for the next run */

        pthread_mutex_lock(&r->mu);
        r->in_flight--;
        r->finished++;
        if (rc)
            set_fatal(r, rc, t.path);
        free(t.path);
        if (r->len == PAGE / 2 || (r->len == 0 && r->in_flight == 0))
            pthread_cond_signal(&r->cv_coord);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void on_commit(void *ctx, const struct tm__result *list)
{
    struct runner *r = ctx;
    const struct tm__result *x;
    int64_t n = 0;
    for (x = list; x; x = x->next)
        n += x->kind == TM_R_COPY;
    pthread_mutex_lock(&r->mu);
    r->committed += n;
    pthread_cond_signal(&r->cv_coord);
    pthread_mutex_unlock(&r->mu);
}

static const char *const stage_sql[3] = {
    "SELECT s.id, s.path, s.depth, s.type, s.size, s.mtime, s.mode, s.conflict, "
    "p.copy_status, CASE WHEN s.type = 'folder' AND s.traversal_status = "
    "'failed' THEN coalesce(s.error, 'no reason recorded') END "
    "FROM src_nodes s JOIN src_nodes p ON p.id = s.parent_id "
    "WHERE s.copy_status = 'pending' AND s.depth = ?1 AND s.id > ?2 "
    "ORDER BY s.id LIMIT ?3",
    "SELECT id, path, depth, type, size, mtime, mode, conflict, copy_status, NULL "
    "FROM src_nodes WHERE type = 'folder' AND depth > 0 AND id > ?2 AND "
    "traversal_status = 'successful' AND "
    "copy_status IN ('successful', 'already_existed') ORDER BY id LIMIT ?3",
    "SELECT id, path, depth, type, size, mtime, mode, conflict, copy_status, NULL "
    "FROM src_nodes WHERE type = 'folder' AND traversal_status = 'successful' "
    "AND id > ?2 AND (copy_status IN ('successful', 'already_existed') OR "
    "(copy_status = 'failed' AND error LIKE 'verify: %')) ORDER BY id LIMIT ?3",
};

/* The path (and, for a folder whose listing failed, the reason) in one
 * allocation: freeing t->path frees both. */
static int task_strings(struct task *t, const char *path, const char *why)
{
    size_t lp = strlen(path), lw = why ? strlen(why) : 0;
    t->path = malloc(lp + 1 + (why ? lw + 1 : 0));
    t->why = NULL;
    if (!t->path)
        return TM_ENOMEM;
    memcpy(t->path, path, lp + 1);
    if (why) {
        memcpy(t->path + lp + 1, why, lw + 1);
        t->why = t->path + lp + 1;
    }
    return 0;
}

/* Reads the next page of the stage into the window; returns the count. */
static int fetch(struct runner *r, sqlite3_stmt *st, int depth, int64_t *last,
                 struct task *buf)
{
    int n = 0, rc;
    sqlite3_bind_int(st, 1, depth);
    sqlite3_bind_int64(st, 2, *last);
    sqlite3_bind_int(st, 3, PAGE);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct task *t = &buf[n];
        const char *cf = (const char *)sqlite3_column_text(st, 7);
        t->id = sqlite3_column_int64(st, 0);
        if (task_strings(t, (const char *)sqlite3_column_text(st, 1),
                         (const char *)sqlite3_column_text(st, 9)))
            t->path = NULL;
        t->depth = sqlite3_column_int(st, 2);
        t->type = tm__name_index(tm__type_names, TM_T_COUNT,
                                 (const char *)sqlite3_column_text(st, 3));
        t->size = sqlite3_column_int64(st, 4);
        t->mtime = sqlite3_column_int64(st, 5);
        t->mode = (uint32_t)sqlite3_column_int64(st, 6);
        t->cf = cf ? tm__name_index(tm__cf_names, CF_COUNT, cf) : CF_NONE;
        t->parent_cs = tm__name_index(tm__cs_names, CS_COUNT,
                                      (const char *)sqlite3_column_text(st, 8));
        if (!t->path || t->type < 0 || t->cf < 0 || t->parent_cs < 0) {
            free(t->path);
            rc = t->path ? TM_ECORRUPT : TM_ENOMEM;
            goto fail;
        }
        *last = t->id;
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        rc = tm__store_error(r->rd, rc, r->cfg->err, "read tasks");
        goto fail;
    }
    return n;
fail:
    sqlite3_reset(st);
    while (n-- > 0)
        free(buf[n].path);
    return rc;
}

static int push(struct runner *r, struct task *buf, int n)
{
    int i;
    if (r->len + (size_t)n > r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 2 * PAGE, j;
        struct task *p;
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
    pthread_cond_broadcast(&r->cv_work);
    return 0;
}

/* The observer: one queue_stats row. Called with r->mu held, which it
 * drops while handing the row to the writer (the writer may wait for a
 * commit, whose on_commit() takes r->mu). */
static void snapshot(struct runner *r, int64_t t0)
{
    struct tm__exec_cfg *c = r->cfg;
    double secs = (double)(tm__now_ns() - t0) / 1e9;
    int64_t st[7] = { r->depth, c->total_files - r->done_nodes, r->in_flight,
                      r->done_nodes, r->problems, r->done_bytes,
                      c->total_bytes - r->done_bytes };
    double rate[2] = { secs > 0 ? (double)r->done_nodes / secs : 0,
                       secs > 0 ? (double)r->done_bytes / secs : 0 };
    if (c->mode == TM_EXEC_VERIFY)
        st[1] = st[6] = 0;
    pthread_mutex_unlock(&r->mu);
    tm__observe_snapshot(r->w, c->mode == TM_EXEC_VERIFY ? "verify" : "copy", st,
                         rate);
    pthread_mutex_lock(&r->mu);
}

static void report(struct runner *r, int64_t t0, int final)
{
    struct tm__exec_cfg *c = r->cfg;
    double secs = (double)(tm__now_ns() - t0) / 1e9;
    double rate = secs > 0 ? (double)r->done_bytes / secs : 0;
    char line[512], eta[64] = "";
    if (!c->progress)
        return;
    if (c->mode == TM_EXEC_VERIFY) {
        snprintf(line, sizeof line, "%s %lld nodes checked, %lld mismatches%s",
                 final ? "verified:" : "verifying:", (long long)r->done_nodes,
                 (long long)r->problems, c->checksum ? ", contents hashed" : "");
    } else {
        if (!final && rate > 0 && c->total_bytes > r->done_bytes)
            snprintf(eta, sizeof eta, ", ETA %.0f s",
                     (double)(c->total_bytes - r->done_bytes) / rate);
        char where[32] = "";
        if (!final)
            snprintf(where, sizeof where, r->stage == ST_ATTRS ? " folder attributes:"
                                                               : " depth %d:",
                     r->depth);
        snprintf(line, sizeof line,
                 "%s%s %lld of %lld nodes, %.1f of %.1f MiB, %.1f MiB/s, "
                 "%lld failed%s",
                 final ? "copied:" : "copying:", where, (long long)r->done_nodes,
                 (long long)c->total_files, (double)r->done_bytes / 1048576.0,
                 (double)c->total_bytes / 1048576.0, rate / 1048576.0,
                 (long long)r->problems, eta);
    }
    c->progress(c->progress_ctx, line);
}

/* Before the first task of a copy depth: the depth goes to the state file
 * (through the writer, so ahead of every result of the depth), so that a
 * later run knows where a crash may have left temporaries (tm_copy). The n
 * tasks in buf are freed on failure. Returns n or an error. */
static int record_depth(struct runner *r, int depth, int n, struct task *buf)
{
    struct tm__result *res = calloc(1, sizeof *res);
    char v[32];
    int rc;
    snprintf(v, sizeof v, "%d", depth);
    if (res) {
        tm__buf_init(&res->arena);
        res->kind = TM_R_SETTING;
        res->path = strdup("copy_run_depth");
        res->value = strdup(v);
    }
    if (!res || !res->path || !res->value) {
        tm__result_free(res);
        rc = TM_ENOMEM;
    } else {
        rc = tm__writer_submit(r->w, res);
    }
    if (!rc)
        return n;
    while (n-- > 0)
        free(buf[n].path);
    return rc;
}

/* Runs one stage (one depth of the copy, the attrs, or verify): feeds the
 * window until the query is exhausted, then waits for every task to end
 * and, for the copy, to be committed. Called with r->mu held. */
static int run_stage(struct runner *r, sqlite3_stmt *st, int stage, int depth,
                     struct task *buf, int64_t t0, int64_t *last_report)
{
    int64_t last = 0;
    int done_fetching = 0, rc = 0;

    r->stage = stage;
    r->depth = depth;
    r->fetched = r->finished = r->committed = 0;
    for (;;) {
        if (r->fatal || (rc = tm__writer_error(r->w)) != 0)
            return r->fatal ? r->fatal : rc;
        if (stopping(r))
            return TM_ESTOPPED;
        if (!done_fetching && r->len < PAGE) {
            int n;
            pthread_mutex_unlock(&r->mu);
            n = fetch(r, st, depth, &last, buf);
            if (n > 0 && stage == ST_COPY_DEPTH && r->fetched == 0)
                n = record_depth(r, depth, n, buf);
            pthread_mutex_lock(&r->mu);
            if (n < 0)
                return n;
            rc = push(r, buf, n);
            if (rc) {
                while (n-- > 0) /* not in the window: still ours */
                    free(buf[n].path);
                return rc;
            }
            r->fetched += n;
            done_fetching = n < PAGE;
            continue;
        }
        if (done_fetching && r->len == 0 && r->in_flight == 0 &&
            (stage != ST_COPY_DEPTH || r->committed >= r->fetched))
            return 0;
        if (done_fetching && r->len == 0 && r->in_flight == 0) {
            pthread_mutex_unlock(&r->mu);
            tm__writer_flush(r->w);
            pthread_mutex_lock(&r->mu);
        }
        if (tm__now_ns() - *last_report >= 1000000000LL) {
            *last_report = tm__now_ns();
            report(r, t0, 0);
            snapshot(r, t0);
        }
        {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000000;
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
    struct tm__adapter *da = r->cfg->ad[TM_DST];
    return da->sync ? da->sync(da) : 0;
}

static int start_workers(struct runner *r, struct worker *wk, pthread_t *th,
                         int n, int *started)
{
    int i, rc;
    for (i = 0; i < n; i++) {
        wk[i].r = r;
        tm__buf_init(&wk[i].scratch);
        wk[i].buf = malloc(IO_BUF);
        wk[i].buf2 = malloc(IO_BUF);
        if (!wk[i].buf || !wk[i].buf2)
            return TM_ENOMEM;
        if (r->cfg->mode == TM_EXEC_VERIFY) {
            rc = tm__store_open_reader(r->cfg->db_path, &wk[i].rd, r->cfg->err);
            if (rc)
                return rc;
            rc = sqlite3_prepare_v2(
                wk[i].rd,
                "SELECT name, type, size, mtime, path, id, copy_status, conflict "
                "FROM src_nodes WHERE parent_id = ? AND (copy_status IN "
                "('successful', 'already_existed') OR (copy_status = 'failed' AND "
                "error LIKE 'verify: %')) AND type != 'other'",
                -1, &wk[i].kids, NULL);
            if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(wk[i].rd, "SELECT 1 FROM src_nodes WHERE "
                                        "parent_id = ?1 AND name = ?2", -1,
                                        &wk[i].src_kid, NULL);
            if (rc != SQLITE_OK)
                return tm__store_error(wk[i].rd, rc, r->cfg->err, "prepare");
        }
        if (pthread_create(&th[i], NULL, worker_main, &wk[i]) != 0)
            return TM_ENOMEM;
        (*started)++;
    }
    return 0;
}

/* The deepest depth with nodes, or an error (a copy that took 0 for it
 * would copy nothing and say it is complete). */
static int max_depth(struct runner *r)
{
    sqlite3_stmt *st;
    int d = 0, rc = sqlite3_prepare_v2(r->rd, "SELECT max(depth) FROM src_stats "
                                       "WHERE count > 0", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(r->rd, rc, r->cfg->err, "read the depth");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        d = sqlite3_column_int(st, 0);
    else
        d = tm__store_error(r->rd, rc, r->cfg->err, "read the depth");
    sqlite3_finalize(st);
    return d;
}

static int run_stages(struct runner *r, struct task *buf)
{
    sqlite3_stmt *st[3] = { NULL, NULL, NULL };
    int64_t t0 = tm__now_ns(), last_report = t0;
    int i, rc = 0, depth, maxd = max_depth(r);

    if (maxd < 0)
        return maxd;
    for (i = 0; i < 3 && !rc; i++)
        if (sqlite3_prepare_v2(r->rd, stage_sql[i], -1, &st[i], NULL) != SQLITE_OK)
            rc = tm__store_error(r->rd, SQLITE_ERROR, r->cfg->err, "prepare");
    pthread_mutex_lock(&r->mu);
    if (!rc && r->cfg->mode == TM_EXEC_COPY) {
        for (depth = 1; depth <= maxd && !rc; depth++)
            rc = run_stage(r, st[0], ST_COPY_DEPTH, depth, buf, t0, &last_report);
        if (!rc)
            rc = run_stage(r, st[1], ST_ATTRS, 0, buf, t0, &last_report);
    } else if (!rc) {
        rc = run_stage(r, st[2], ST_VERIFY, 0, buf, t0, &last_report);
    }
    r->quit = 1;
    pthread_cond_broadcast(&r->cv_work);
    if (!rc)
        snapshot(r, t0);
    pthread_mutex_unlock(&r->mu);
    if (!rc)
        report(r, t0, 1);
    for (i = 0; i < 3; i++)
        sqlite3_finalize(st[i]);
    return rc;
}

int tm__exec_run(struct tm__exec_cfg *cfg)
{
    struct runner r;
    struct worker *wk = NULL;
    pthread_t *th = NULL;
    struct task *buf = NULL;
    int64_t next_id[2] = { 1, 1 };
    int n = cfg->workers > 0 ? cfg->workers : 4, started = 0, i, rc, wrc;

    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    r.prec = cfg->ad[0]->mtime_precision > cfg->ad[1]->mtime_precision
                 ? cfg->ad[0]->mtime_precision
                 : cfg->ad[1]->mtime_precision;
    tm__buf_init(&r.fatal_msg);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv_work, NULL);
    pthread_cond_init(&r.cv_coord, NULL);
    if (cfg->mode == TM_EXEC_COPY &&
        (!cfg->ad[TM_SRC]->open_read || !cfg->ad[TM_DST]->open_write ||
         !cfg->ad[TM_DST]->mkdir)) {
        tm__buf_addf(cfg->err, "the %s storage cannot be %s",
                     cfg->ad[TM_SRC]->open_read ? "destination" : "source",
                     cfg->ad[TM_SRC]->open_read ? "written" : "read");
        rc = TM_EINVAL;
        goto out;
    }
    rc = tm__store_open_reader(cfg->db_path, &r.rd, cfg->err);
    if (rc)
        goto out;
    buf = malloc(PAGE * sizeof *buf);
    wk = calloc((size_t)n, sizeof *wk);
    th = calloc((size_t)n, sizeof *th);
    if (!buf || !wk || !th) {
        rc = TM_ENOMEM;
        goto out;
    }
    rc = tm__writer_start(&r.w, cfg->db, next_id, WRITER_MAX_ROWS, on_commit, &r);
    if (rc)
        goto out;
    rc = tm__observe_start(&r.lg, cfg->log, r.w, cfg->err);
    if (rc)
        goto out;
    tm__log(r.lg, TM_INFO, "engine", 0, NULL, "%s started: %d workers",
            cfg->mode == TM_EXEC_VERIFY ? "verify" : "copy", n);
    rc = start_workers(&r, wk, th, n, &started);
    if (!rc)
        rc = run_stages(&r, buf);
out:
    pthread_mutex_lock(&r.mu);
    r.quit = 1;
    pthread_cond_broadcast(&r.cv_work);
    pthread_mutex_unlock(&r.mu);
    for (i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    /* everything copied is on the destination's disk before the state
     * file says so for the last time */
    if (cfg->mode == TM_EXEC_COPY && r.w && cfg->ad[TM_DST]->sync)
        tm__writer_set_precommit(r.w, sync_dst, &r);
    if (r.lg) {
        const char *what = cfg->mode == TM_EXEC_VERIFY ? "verify" : "copy";
        if (rc == 0)
            tm__log(r.lg, TM_INFO, "engine", 0, NULL, "%s complete: %lld nodes, "
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
    for (i = 0; wk && i < n; i++) {
        sqlite3_finalize(wk[i].kids);
        sqlite3_finalize(wk[i].src_kid);
        if (wk[i].rd)
            sqlite3_close(wk[i].rd);
        free(wk[i].buf);
        free(wk[i].buf2);
        tm__buf_release(&wk[i].scratch);
    }
    while (r.len) {
        free(r.win[r.head].path);
        r.head = (r.head + 1) % r.cap;
        r.len--;
    }
    free(r.win);
    if (r.rd)
        sqlite3_close(r.rd);
    free(wk);
    free(th);
    free(buf);
    tm__buf_release(&r.fatal_msg);
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv_work);
    pthread_cond_destroy(&r.cv_coord);
    return rc;
}
