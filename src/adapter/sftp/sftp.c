/*
 * sftp.c - the sftp adapter: the storage "sftp://[user@]host[:port]/path"
 * on top of the client layer (sftp.h): its kind (resolve, open, overlap,
 * options), paged listings, reads, atomic writes through unpredictable
 * temporary names, folders, symlinks, attributes and the checks of its
 * root (docs/adapters.md, "SFTP").
 *
 * Paths: the engine's root-relative paths ("/a/b") are appended to the
 * root's canonical server path (the server's REALPATH of the URL's path,
 * taken at open), so a symlink on the way to the root is resolved once,
 * as a local root is. Below the root, SFTP v3 names nodes by path and the
 * server resolves every component itself: a symlink put in the place of a
 * folder below the root by someone who can write there would be followed
 * by the server (SFTP has no openat); treemig's own writes never follow a
 * final symlink (CREAT|EXCL temporaries, renames, lsetstat).
 *
 * Writes: a file goes to a temporary in the same folder, named from the
 * copy run's key (set_tmp_key) and the node's path like the local
 * adapter's (util/secret.c), created with SSH_FXF_CREAT|EXCL (what is at a
 * name is never opened: the next of TM_TMP_TRIES names is tried), then
 * renamed: with posix-rename@openssh.com where the engine allows replacing
 * what discovery saw there, else with the plain SFTP rename, which fails
 * when the target exists. A write is never resumed after a crash: its
 * temporary is removed by remove_tmp (the next copy run) and the file is
 * written again.
 *
 * Threads: every method is called from many worker threads at once; the
 * pool of sessions (client.c) is thread-safe, the adapter's own state is
 * set at open and by set_tmp_key before the workers start, except the
 * root check's cache (atomics).
 */
#include "adapter/adapter.h"
#include "adapter/sftp/sftp.h"

#include "treemig.h"
#include "util/util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define NS 1000000000LL
/* Children of a listing page at least (OpenSSH sends 100 per READDIR). */
#define PAGE_MIN 1000
/* The root is checked at most once per this many ns (check_root). */
#define ROOT_CHECK_NS (1000LL * 1000 * 1000)
/* A listing position: version, children passed, chained hash of names. */
#define POS_LEN 17
#define POS_VERSION 1
/* Sessions a pool may open by default (opened as needed: about one per
 * operation in flight). */
#define DEFAULT_SESSIONS 64

/* What remove_tmp learnt of the last folder it looked into. */
struct tmp_cache {
    pthread_mutex_t mu;         /* guards the fields below */
    int valid;                  /* dir and names are filled */
    struct tm__buf dir;         /* the folder's server path */
    struct tm__buf names;       /* its names that look like temporaries,
                                   each followed by '/' */
};

struct sftp {
    struct tm__adapter base;    /* must be first */
    struct tm__sftp_pool *pool; /* the sessions */
    char *url;                  /* the spec, for messages */
    char *given;                /* the URL's path, as given */
    char *root;                 /* the root's canonical server path */
    size_t root_len;            /* its length, 0 for "/" (paths are
                                   appended) */
    int fsync;                  /* fsync@openssh.com each file (sftp-fsync) */
    int have_fsid;              /* the server has statvfs: fsid is known */
    uint64_t fsid;              /* the root's file system at open */
    struct tm__root_info ri;    /* what root_info says */
    unsigned char key[TM_KEY_LEN]; /* run key of the temporary names */
    atomic_llong checked_ns;    /* the last root check that passed */
    atomic_int gone;            /* a root check failed: sticky */
    struct tmp_cache tc;        /* remove_tmp's listing of a folder */
    char *spare_key;            /* the spec and options (spare_put), or NULL */
};

/* ---- helpers ---- */

/* The detail of a client error into the engine's. Returns its code. */
static int from_err(struct tm__aerr *ae, const struct tm__sftp_err *e, int rc)
{
    if (!ae)
        return rc;
    ae->code = rc;
    ae->cls = e->code == rc ? e->cls : -1;
    snprintf(ae->msg, sizeof ae->msg, "%.*s", (int)sizeof ae->msg - 1,
             e->code == rc ? e->msg : "");
    return rc;
}

/* The server path of the root-relative path into b (reset first). */
static int full_path(const struct sftp *s, const char *path, struct tm__buf *b)
{
    tm__buf_reset(b);
    if (s->root_len && tm__buf_add(b, s->root, s->root_len))
        return TM_ENOMEM;
    if (path[1] || !s->root_len)
        return tm__buf_adds(b, path);
    return 0;
}

static void entry_from(struct tm__entry *en, const struct tm__sftp_attr *a)
{
    en->type = a->type;
    en->size = en->type == TM_T_FILE || en->type == TM_T_SYMLINK
                   ? (int64_t)a->size : 0;
    en->mtime = a->mtime * NS;
    en->mode = a->mode & 07777;
    en->uid = en->gid = 0;
}

/* Whole seconds of mtime (ns) for SFTP v3, whose times are unsigned 32-bit
 * seconds (1970 to 2106): TM_ETIMERANGE (described in ae) outside. */
static int seconds_of(int64_t mtime, int64_t *sec, struct tm__aerr *ae)
{
    int64_t s = mtime / NS - (mtime % NS < 0);
    if (tm__mtime_out_of_range(mtime) || s < 0 || s > (int64_t)UINT32_MAX)
        return tm__aerr_set(ae, TM_ETIMERANGE, "the destination cannot hold the "
                            "mtime %lld s since the epoch (SFTP version 3 keeps "
                            "whole seconds from 1970 to 2106)",
                            (long long)(mtime / NS));
    *sec = s;
    return 0;
}

/* A 64-bit hash of a name, chained onto h (listing positions, ids). */
static uint64_t chain(uint64_t h, const void *p, size_t n)
{
    return XXH3_64bits_withSeed(p, n, h ^ (uint64_t)n);
}

/* ---- listing ---- */

/*
 * SFTP readdir handles cannot be stored or reopened at a position, so the
 * position is (children passed on, chained hash of their names in order).
 * A resumed listing reads the folder from its start and drops as many
 * children as were passed, hashing their names: when the hash matches,
 * those are exactly the children recorded, in the same order, and what
 * follows is the rest of the folder. When it does not (the folder changed,
 * or the server lists it in another order), the listing starts over and
 * passes every child: the engine ignores a child listed twice, and none is
 * missed.
 */
struct sftp_lister {
    struct tm__lister base;  /* must be first */
    struct tm__sftp_dir *d;  /* the open listing, or NULL */
    char *path;              /* the folder's server path */
    uint64_t count, hash;    /* children passed in complete pages */
    uint64_t skip, skip_hash; /* the prefix to drop and check (resume) */
    int done;                /* the server said the end */
};

/*
 * Opens the listing of the folder at the server path, never through a
 * symlink: SFTP's OPENDIR follows one (OpenSSH calls opendir(3)), and v3
 * has no O_NOFOLLOW, so the node is lstat'ed before the OPENDIR (a symlink
 * is TM_ELOOP, as a local O_NOFOLLOW|O_DIRECTORY open says; anything else
 * not a folder TM_ENOTDIR, which OpenSSH's OPENDIR of a file reports as
 * "no such file") and again after it (a folder replaced by a symlink
 * meanwhile fails the same way); the three requests go out together (one
 * round trip: the server takes them in order), and a handle opened
 * through a symlink is closed unread. What remains, and docs/adapters.md says
 * so: a folder swapped for a symlink and back between the two lstats is
 * not seen (v3 attributes carry no inode to compare).
 */
static int opendir_nofollow(struct sftp *s, const char *path,
                            struct tm__sftp_dir **out, struct tm__sftp_err *e,
                            struct tm__aerr *ae)
{
    struct tm__sftp_attr before, after;
    const struct tm__sftp_attr *at = NULL;
    int rc, stage;

    *out = NULL;
    /* LSTAT, OPENDIR, LSTAT in one round trip, in that order */
    rc = tm__sftp_opendir_lstat(s->pool, path, &before, &after, &stage, out, e);
    if (stage >= 1 && before.type != TM_T_FOLDER)
        at = &before;
    else if (rc)
        return from_err(ae, e, rc);
    else if (after.type != TM_T_FOLDER)
        at = &after;
    if (at) {
        rc = at->type == TM_T_SYMLINK ? TM_ELOOP : TM_ENOTDIR;
        ae->cls = TM_ERR_NODE;
        tm__aerr_set(ae, rc, "opendir %s: %s%s", path,
                     rc == TM_ELOOP ? "a symlink, not followed" : "not a folder",
                     at == &after ? " (it changed while it was opened)" : "");
        tm__sftp_closedir(*out);
        *out = NULL;
    }
    return rc;
}

static int sftp_list_open(struct tm__adapter *a, const char *path, const void *pos,
                          size_t pos_len, struct tm__lister **out,
                          struct tm__aerr *ae)
{
    struct sftp *s = (struct sftp *)a;
    struct sftp_lister *l;
    struct tm__buf b = TM__BUF_INIT;
    struct tm__sftp_err e = { 0 };
    int rc;

    *out = NULL;
    if (pos_len && (pos_len != POS_LEN || ((const unsigned char *)pos)[0] != POS_VERSION))
        return tm__aerr_set(ae, TM_EINVAL, "a listing position of another kind");
    if (full_path(s, path, &b)) {
        tm__buf_release(&b);
        return TM_ENOMEM;
    }
    l = calloc(1, sizeof *l);
    if (!l) {
        tm__buf_release(&b);
        return TM_ENOMEM;
    }
    l->base.a = a;
    l->path = tm__buf_detach(&b, NULL);
    if (!l->path) {
        free(l);
        return TM_ENOMEM;
    }
    if (pos_len) {
        memcpy(&l->skip, (const unsigned char *)pos + 1, 8);
        memcpy(&l->skip_hash, (const unsigned char *)pos + 9, 8);
    }
    rc = opendir_nofollow(s, l->path, &l->d, &e, ae);
    if (rc) {
        free(l->path);
        free(l);
        return rc;
    }
    *out = &l->base;
    return 0;
}

/* Drops the prefix of a resumed listing; 0 when it is the one recorded
 * (then *ents / *n hold the rest of the last batch read), 1 when the
 * listing must start over, or an error. */
static int skip_prefix(struct sftp_lister *l, const struct tm__sftp_dirent **ents,
                       size_t *n, struct tm__sftp_err *e)
{
    uint64_t seen = 0, h = 0;
    for (;;) {
        size_t i;
        int rc = tm__sftp_readdir(l->d, ents, n, e);
        if (rc)
            return rc;
        if (!*n)
            return 1; /* fewer children than recorded: changed */
        for (i = 0; i < *n && seen < l->skip; i++, seen++)
            h = chain(h, (*ents)[i].name, (*ents)[i].name_len);
        if (seen == l->skip) {
            if (h != l->skip_hash)
                return 1;
            *ents += i;
            *n -= i;
            l->count = seen;
            l->hash = h;
            return 0;
        }
    }
}

static int sftp_list_next(struct tm__lister *lr, tm__list_cb cb, void *ctx,
                          int *more, struct tm__aerr *ae)
{
    struct sftp_lister *l = (struct sftp_lister *)lr;
    struct sftp *s = (struct sftp *)lr->a;
    const struct tm__sftp_dirent *ents = NULL;
    struct tm__sftp_err e = { 0 };
    uint64_t c, h;
    size_t n = 0, passed = 0;
    int rc;

    *more = 0;
    if (l->done)
        return 0;
    if (!l->d) {
        /* the last page failed: the same page again, from a new listing
         * that skips the complete pages */
        rc = opendir_nofollow(s, l->path, &l->d, &e, ae);
        if (rc)
            return rc;
        l->skip = l->count;
        l->skip_hash = l->hash;
    }
    if (l->skip) {
        rc = skip_prefix(l, &ents, &n, &e);
        if (rc < 0)
            goto failed;
        if (rc == 1) {
            /* the folder is not as recorded: every child again */
            tm__sftp_closedir(l->d);
            l->d = NULL;
            l->count = l->hash = 0;
            rc = opendir_nofollow(s, l->path, &l->d, &e, ae);
            if (rc)
                return rc;
            n = 0;
        }
        l->skip = 0;
    }
    c = l->count;
    h = l->hash;
    for (;;) {
        size_t i;
        for (i = 0; i < n; i++) {
            struct tm__entry en;
            memset(&en, 0, sizeof en);
            en.name = ents[i].name;
            en.name_len = ents[i].name_len;
            entry_from(&en, &ents[i].attr);
            rc = cb(ctx, &en);
            if (rc) {
                /* the page is dropped: the next call starts it again */
                tm__sftp_closedir(l->d);
                l->d = NULL;
                return rc;
            }
            c++;
            h = chain(h, en.name, en.name_len);
            passed++;
        }
        if (passed >= PAGE_MIN) {
            *more = 1;
            break;
        }
        rc = tm__sftp_readdir(l->d, &ents, &n, &e);
        if (rc)
            goto failed;
        if (!n) {
            l->done = 1;
            break;
        }
    }
    l->count = c;
    l->hash = h;
    return 0;
failed:
    /* the handle is of no more use (a broken session, most often): the
     * next call (or the engine, through a new listing at the last
     * position) starts the page again */
    tm__sftp_closedir(l->d);
    l->d = NULL;
    return from_err(ae, &e, rc);
}

static int sftp_list_pos(struct tm__lister *lr, struct tm__buf *out)
{
    struct sftp_lister *l = (struct sftp_lister *)lr;
    unsigned char p[POS_LEN];
    p[0] = POS_VERSION;
    memcpy(p + 1, &l->count, 8);
    memcpy(p + 9, &l->hash, 8);
    return tm__buf_add(out, p, sizeof p);
}

static void sftp_list_close(struct tm__lister *lr)
{
    struct sftp_lister *l = (struct sftp_lister *)lr;
    tm__sftp_closedir(l->d);
    free(l->path);
    free(l);
}

/* ---- nodes ---- */

static int sftp_stat(struct tm__adapter *a, const char *path, struct tm__entry *out,
                     struct tm__aerr *ae)
{
    struct sftp *s = (struct sftp *)a;
    struct tm__buf b = TM__BUF_INIT;
    struct tm__sftp_attr at;
    struct tm__sftp_err e = { 0 };
    int rc = full_path(s, path, &b);
    if (!rc && (rc = tm__sftp_lstat(s->pool, b.buf, &at, &e)) != 0)
        from_err(ae, &e, rc);
    if (!rc)
        entry_from(out, &at);
    tm__buf_release(&b);
    return rc;
}

/* ---- reading ---- */

struct sftp_rfile {
    struct tm__rfile base;      /* must be first */
    struct tm__sftp_rfile *f;   /* the client's file */
};

static int sftp_open_read(struct tm__adapter *a, const char *path,
                          struct tm__rfile **out, struct tm__entry *st,
                          struct tm__aerr *ae)
{
    struct sftp *s = (struct sftp *)a;
    struct tm__buf b = TM__BUF_INIT;
    struct sftp_rfile *f;
    struct tm__sftp_attr at;
    struct tm__sftp_err e = { 0 };
    int rc;

    *out = NULL;
    f = calloc(1, sizeof *f);
    if (!f || full_path(s, path, &b)) {
        free(f);
        tm__buf_release(&b);
        return TM_ENOMEM;
    }
    rc = tm__sftp_open_read(s->pool, b.buf, &f->f, &at, &e);
    tm__buf_release(&b);
    if (rc) {
        free(f);
        return from_err(ae, &e, rc);
    }
    if (at.type != TM_T_FILE) {
        /* OpenSSH opens a folder for reading: its FSTAT tells */
        tm__sftp_close_read(f->f);
        free(f);
        ae->cls = TM_ERR_NODE;
        if (at.type == TM_T_FOLDER)
            return tm__aerr_set(ae, TM_EISDIR, "open %s: a folder, not a file", path);
        return tm__aerr_set(ae, TM_EINVAL, "not a regular file any more");
    }
    f->base.a = a;
    entry_from(st, &at);
    *out = &f->base;
    return 0;
}

static int64_t sftp_read(struct tm__rfile *rf, void *buf, size_t len,
                         struct tm__aerr *ae)
{
    struct sftp_rfile *f = (struct sftp_rfile *)rf;
    struct tm__sftp_err e = { 0 };
    int64_t n = tm__sftp_read(f->f, buf, len, &e);
    return n < 0 ? from_err(ae, &e, (int)n) : n;
}

static int sftp_fstat(struct tm__rfile *rf, struct tm__entry *st, struct tm__aerr *ae)
{
    struct sftp_rfile *f = (struct sftp_rfile *)rf;
    struct tm__sftp_attr at;
    struct tm__sftp_err e = { 0 };
    int rc = tm__sftp_fstat(f->f, &at, &e);
    if (rc)
        return from_err(ae, &e, rc);
    entry_from(st, &at);
    return 0;
}

static void sftp_close_read(struct tm__rfile *rf)
{
    struct sftp_rfile *f = (struct sftp_rfile *)rf;
    if (!f)
        return;
    tm__sftp_close_read(f->f);
    free(f);
}

/* ---- writing ---- */

struct sftp_wfile {
    struct tm__wfile base;      /* must be first */
    struct tm__sftp_wfile *f;   /* the client's file (NULL once handed back) */
};

/* The TM_TMP_TRIES temporary names of the node at path (root-relative)
 * under the run key key. */
static int tmp_names(const unsigned char *key, const char *path,
                     char names[TM_TMP_TRIES][TM_TMP_NAME_MAX],
                     const char *namev[TM_TMP_TRIES])
{
    int i, rc;
    for (i = 0; i < TM_TMP_TRIES; i++) {
        rc = tm__tmp_name(key, path, i, names[i], TM_TMP_NAME_MAX);
        if (rc)
            return rc;
        namev[i] = names[i];
    }
    return 0;
}

static int sftp_open_write(struct tm__adapter *a, const char *path,
                           const struct tm__wattr *w, struct tm__wfile **out,
                           struct tm__aerr *ae)
{
    struct sftp *s = (struct sftp *)a;
    char names[TM_TMP_TRIES][TM_TMP_NAME_MAX];
    const char *namev[TM_TMP_TRIES];
    struct tm__buf b = TM__BUF_INIT;
    struct sftp_wfile *f;
    struct tm__sftp_err e = { 0 };
    int64_t sec = 0;
    int rc;

    *out = NULL;
    /* a time SFTP cannot carry fails the node before a byte is sent; a
     * resume point is ignored (nothing is ever checkpointed here) */
    rc = seconds_of(w->mtime, &sec, ae);
    if (rc)
        return rc;
    rc = tmp_names(s->key, path, names, namev);
    if (rc)
        return rc;
    f = calloc(1, sizeof *f);
    if (!f || full_path(s, path, &b)) {
        free(f);
        tm__buf_release(&b);
        return TM_ENOMEM;
    }
    rc = tm__sftp_open_write(s->pool, b.buf, namev, TM_TMP_TRIES, &f->f, &e);
    tm__buf_release(&b);
    if (rc) {
        free(f);
        return from_err(ae, &e, rc);
    }
    f->base.a = a;
    *out = &f->base;
    return 0;
}

static int64_t sftp_write(struct tm__wfile *wf, const void *buf, size_t len,
                          struct tm__aerr *ae)
{
    struct sftp_wfile *f = (struct sftp_wfile *)wf;
    struct tm__sftp_err e = { 0 };
    int64_t n = tm__sftp_write(f->f, buf, len, &e);
    return n < 0 ? from_err(ae, &e, (int)n) : n;
}

static int64_t sftp_write_from(struct tm__wfile *wf, int fd, size_t len, int *fd_failed,
                               struct tm__aerr *ae)
{
    struct sftp_wfile *f = (struct sftp_wfile *)wf;
    struct tm__sftp_err e = { 0 };
    int64_t n = tm__sftp_write_fd(f->f, fd, len, fd_failed, &e);
    if (n < 0 && *fd_failed)
        return n; /* the source's failure, in its own words */
    return n < 0 ? from_err(ae, &e, (int)n) : n;
}

static int sftp_commit(struct tm__wfile *wf, int64_t mtime, uint32_t mode,
                       unsigned flags, struct tm__aerr *ae)
{
    struct sftp_wfile *f = (struct sftp_wfile *)wf;
    struct sftp *s = (struct sftp *)wf->a;
    struct tm__sftp_err e = { 0 };
    int64_t sec = 0;
    int rc = seconds_of(mtime, &sec, ae);
    if (rc) {
        tm__sftp_abort(f->f);
        free(f);
        return rc;
    }
    /* replace only where the engine says discovery saw the twin there:
     * posix-rename; otherwise the plain rename, refused when the name is
     * taken (TM_EEXIST) */
    rc = tm__sftp_commit(f->f, mode & 07777, sec, s->fsync,
                         flags & TM_NOREPLACE ? 0 : TM_SFTP_REPLACE, &e);
    free(f);
    return rc ? from_err(ae, &e, rc) : 0;
}

static void sftp_abort(struct tm__wfile *wf)
{
    struct sftp_wfile *f = (struct sftp_wfile *)wf;
    if (!f)
        return;
    tm__sftp_abort(f->f);
    free(f);
}

/* ---- folders and symlinks ---- */

static int sftp_mkdir(struct tm__adapter *a, const char *path, struct tm__aerr *ae)
{
    struct sftp *s = (struct sftp *)a;
    struct tm__buf b = TM__BUF_INIT;
    struct tm__sftp_attr at;
    struct tm__sftp_err e = { 0 }, e2;
    int rc = full_path(s, path, &b);
    if (rc)
        goto out;
    rc = tm__sftp_mkdir(s->pool, b.buf, 0700, &e);
    /* made by an earlier run that crashed before recording it */
    if (rc == TM_EEXIST && tm__sftp_lstat(s->pool, b.buf, &at, &e2) == 0 &&
        at.type == TM_T_FOLDER)
        rc = 0;
    if (rc)
        from_err(ae, &e, rc);
out:
    tm__buf_release(&b);
    return rc;
}

static int sftp_readlink(struct tm__adapter *a, const char *path, struct tm__buf *out,
                         struct tm__aerr *ae)
{
    struct sftp *s = (struct sftp *)a;
    struct tm__buf b = TM__BUF_INIT;
    struct tm__sftp_err e = { 0 };
    int rc = full_path(s, path, &b);
    if (!rc) {
        tm__buf_reset(out);
        rc = tm__sftp_readlink(s->pool, b.buf, out, &e);
        if (rc)
            from_err(ae, &e, rc);
    }
    tm__buf_release(&b);
    return rc;
}

/* The server path of the temporary name of path (its folder + name). */
static int tmp_path(const struct sftp *s, const char *path, const char *name,
                    struct tm__buf *b)
{
    const char *slash = strrchr(path, '/');
    tm__buf_reset(b);
    if (s->root_len && tm__buf_add(b, s->root, s->root_len))
        return TM_ENOMEM;
    if (tm__buf_add(b, path, (size_t)(slash - path + 1)) || tm__buf_adds(b, name))
        return TM_ENOMEM;
    return 0;
}

static int sftp_symlink(struct tm__adapter *a, const char *path, const char *target,
                        int64_t mtime, unsigned flags, struct tm__aerr *ae)
{
    struct sftp *s = (struct sftp *)a;
    char names[TM_TMP_TRIES][TM_TMP_NAME_MAX];
    const char *namev[TM_TMP_TRIES];
    struct tm__buf tmp = TM__BUF_INIT, real = TM__BUF_INIT;
    struct tm__sftp_attr at;
    struct tm__sftp_err e = { 0 };
    int64_t sec = 0;
    int rc, i, made = 0;

    rc = seconds_of(mtime, &sec, ae);
    if (!rc)
        rc = tmp_names(s->key, path, names, namev);
    if (!rc)
        rc = full_path(s, path, &real);
    /* SYMLINK never replaces: a taken name moves to the next */
    for (i = 0; !rc && !made && i < TM_TMP_TRIES; i++) {
        rc = tmp_path(s, path, namev[i], &tmp);
        if (rc)
            break;
        rc = tm__sftp_symlink(s->pool, tmp.buf, target, &e);
        if (!rc)
            made = 1;
        else if (rc == TM_EEXIST && i + 1 < TM_TMP_TRIES)
            rc = 0;
        else if (rc == TM_EEXIST)
            tm__aerr_set(ae, rc, "cannot create a temporary symlink beside %s: the "
                         "%d names it may take are taken", path, TM_TMP_TRIES);
        else
            from_err(ae, &e, rc);
    }
    if (!rc) {
        memset(&at, 0, sizeof at);
        at.flags = TM_SFTP_A_TIME;
        at.atime = at.mtime = sec;
        rc = tm__sftp_setstat(s->pool, tmp.buf, &at, TM_SFTP_NOFOLLOW, &e);
        if (!rc && (flags & TM_NOREPLACE)) {
            /* OpenSSH renames what is not a regular file after a stat(2)
             * of the target, which follows a symlink there: a dangling
             * one would be replaced. An lstat first refuses what is at
             * the name (one made in between is still replaced) */
            struct tm__sftp_attr cur;
            rc = tm__sftp_lstat(s->pool, real.buf, &cur, &e);
            if (rc == 0) {
                rc = e.code = TM_EEXIST;
                e.cls = TM_ERR_NODE;
                snprintf(e.msg, sizeof e.msg, "symlink %s: a %s is there", real.buf,
                         tm__type_names[cur.type]);
            } else if (rc == TM_ENOENT) {
                rc = 0;
            }
        }
        if (!rc)
            rc = tm__sftp_rename(s->pool, tmp.buf, real.buf,
                                 flags & TM_NOREPLACE ? 0 : TM_SFTP_REPLACE, &e);
        if (rc) {
            struct tm__sftp_err e2;
            from_err(ae, &e, rc);
            tm__sftp_remove(s->pool, tmp.buf, &e2);
        }
    }
    tm__buf_release(&tmp);
    tm__buf_release(&real);
    return rc;
}

/* The folder's mode and mtime, without following a symlink (lsetstat;
 * a server without it: an lstat first, see tm__sftp_setstat). What is
 * already as asked is left alone. */
static int sftp_set_attr(struct tm__adapter *a, const char *path, int64_t mtime,
                         uint32_t mode, struct tm__aerr *ae)
{
    struct sftp *s = (struct sftp *)a;
    struct tm__buf b = TM__BUF_INIT;
    struct tm__sftp_attr cur, at;
    struct tm__sftp_err e = { 0 };
    int64_t sec = 0;
    int rc = 0;

    if (mtime != TM_MTIME_KEEP)
        rc = seconds_of(mtime, &sec, ae);
    if (!rc)
        rc = full_path(s, path, &b);
    if (!rc && (rc = tm__sftp_lstat(s->pool, b.buf, &cur, &e)) != 0)
        from_err(ae, &e, rc);
    if (!rc && cur.type != TM_T_FOLDER)
        rc = TM_ENOTDIR;
    memset(&at, 0, sizeof at);
    if (!rc && (cur.mode & 07777) != (mode & 07777)) {
        at.flags |= TM_SFTP_A_PERM;
        at.mode = mode & 07777;
    }
    if (!rc && mtime != TM_MTIME_KEEP && cur.mtime != sec) {
        at.flags |= TM_SFTP_A_TIME;
        at.atime = cur.atime;
        at.mtime = sec;
    }
    if (!rc && at.flags && (rc = tm__sftp_setstat(s->pool, b.buf, &at,
                                                  TM_SFTP_NOFOLLOW, &e)) != 0)
        from_err(ae, &e, rc);
    tm__buf_release(&b);
    return rc;
}

/* ---- the root ---- */

/* 0 while the root is the folder it was at open; TM_ENOENT when the server
 * says it is gone, or its canonical path or its file system changed (a
 * symlink put on the way, a volume unmounted under it). What cannot be
 * told (the server cannot be reached, permission denied) is not taken for
 * a root gone: the calls that failed say why. A check costs a round trip
 * (three requests in one batch), so one that passed holds for
 * ROOT_CHECK_NS. */
static int sftp_check_root(struct tm__adapter *a)
{
    struct sftp *s = (struct sftp *)a;
    struct tm__sftp_probe pr;
    struct tm__sftp_err e = { 0 };
    int64_t now = tm__now_ns();
    int rc, gone = 0;

    if (atomic_load(&s->gone))
        return TM_ENOENT;
    if (now - atomic_load(&s->checked_ns) < ROOT_CHECK_NS)
        return 0;
    rc = tm__sftp_root_probe(s->pool, s->given, s->root, s->have_fsid, &pr, &e);
    if (!rc) {
        rc = pr.real_rc;
        if (rc == TM_ENOENT || rc == TM_ENOTDIR ||
            (!rc && (pr.real.len != strlen(s->root) ||
                     memcmp(pr.real.buf, s->root, pr.real.len) != 0)))
            gone = 1;
    }
    if (!rc && !gone) {
        rc = pr.at_rc;
        gone = rc == TM_ENOENT || (!rc && pr.at.type != TM_T_FOLDER);
    }
    if (!rc && !gone && s->have_fsid) {
        rc = pr.vfs_rc;
        gone = rc == TM_ENOENT || (!rc && pr.vfs.fsid != s->fsid);
    }
    tm__buf_release(&pr.real);
    if (gone) {
        atomic_store(&s->gone, 1);
        return TM_ENOENT;
    }
    if (!rc)
        atomic_store(&s->checked_ns, now);
    return 0;
}

static int sftp_root_info(struct tm__adapter *a, struct tm__root_info *out)
{
    *out = ((struct sftp *)a)->ri;
    return 0;
}

static void sftp_set_tmp_key(struct tm__adapter *a, const unsigned char *key)
{
    memcpy(((struct sftp *)a)->key, key, TM_KEY_LEN);
}

/* The names in the folder at path (server path) that look like a
 * temporary of treemig, into the cache (one listing per folder while a
 * crashed run is cleaned up: its nodes come folder by folder). */
static int tmp_cache_fill(struct sftp *s, const char *dir, struct tm__sftp_err *e)
{
    struct tmp_cache *c = &s->tc;
    struct tm__sftp_dir *d;
    const struct tm__sftp_dirent *ents;
    size_t n, i;
    int rc;

    tm__buf_reset(&c->dir);
    tm__buf_reset(&c->names);
    c->valid = 0;
    rc = tm__sftp_opendir(s->pool, dir, 0, &d, e);
    if (rc == TM_ENOENT || rc == TM_ENOTDIR)
        rc = 0; /* no folder: nothing in it */
    else if (!rc) {
        do {
            rc = tm__sftp_readdir(d, &ents, &n, e);
            for (i = 0; !rc && i < n; i++)
                if (tm__tmp_name_like(ents[i].name, ents[i].name_len) &&
                    (tm__buf_add(&c->names, ents[i].name, ents[i].name_len) ||
                     tm__buf_addch(&c->names, '/')))
                    rc = TM_ENOMEM;
        } while (!rc && n);
        tm__sftp_closedir(d);
    }
    if (!rc && !(rc = tm__buf_adds(&c->dir, dir)))
        c->valid = 1;
    return rc;
}

/* 1 when the cache of the folder holds name. */
static int tmp_cache_has(const struct tmp_cache *c, const char *name)
{
    const char *p = c->names.buf;
    size_t n = strlen(name);
    while (p && *p) {
        const char *e = strchr(p, '/');
        if ((size_t)(e - p) == n && !memcmp(p, name, n))
            return 1;
        p = e + 1;
    }
    return 0;
}

/* After a crash: the temporaries of the node at path under the run key
 * key, each one only when it is of the node's type (an lstat: a file, or
 * a symlink), removed by name (REMOVE unlinks, never follows). The folder
 * is listed once for all its nodes (a round trip per name would make the
 * clean-up of a large folder slow on a distant server). */
static int sftp_remove_tmp(struct tm__adapter *a, const char *path, int type,
                           const unsigned char *key, struct tm__aerr *ae)
{
    struct sftp *s = (struct sftp *)a;
    char names[TM_TMP_TRIES][TM_TMP_NAME_MAX];
    const char *namev[TM_TMP_TRIES];
    struct tm__buf b = TM__BUF_INIT;
    struct tm__sftp_attr at;
    struct tm__sftp_err e = { 0 };
    int i, n = 0, rc = tmp_names(key, path, names, namev);

    pthread_mutex_lock(&s->tc.mu);
    if (!rc)
        rc = tmp_path(s, path, "", &b); /* the folder, with a '/' */
    if (!rc && b.len > 1)
        tm__buf_setlen(&b, b.len - 1);
    if (!rc && (!s->tc.valid || strcmp(s->tc.dir.buf, b.buf) != 0) &&
        (rc = tmp_cache_fill(s, b.buf, &e)) != 0)
        from_err(ae, &e, rc);
    for (i = 0; !rc && i < TM_TMP_TRIES; i++) {
        if (!tmp_cache_has(&s->tc, namev[i]))
            continue;
        rc = tmp_path(s, path, namev[i], &b);
        if (rc)
            break;
        rc = tm__sftp_lstat(s->pool, b.buf, &at, &e);
        if (rc == TM_ENOENT || rc == TM_ENOTDIR) {
            rc = 0;
            continue;
        }
        if (rc) {
            from_err(ae, &e, rc);
            break;
        }
        if (at.type != (type == TM_T_SYMLINK ? TM_T_SYMLINK : TM_T_FILE))
            continue;
        rc = tm__sftp_remove(s->pool, b.buf, &e);
        if (rc == TM_ENOENT)
            rc = 0;
        else if (rc)
            from_err(ae, &e, rc);
        else
            n++;
    }
    pthread_mutex_unlock(&s->tc.mu);
    tm__buf_release(&b);
    return rc ? rc : n;
}

/* ---- the mirror (treemig delete) and --backup-dir ---- */

/* Makes the folders of the root-relative folder path dir (mode 0700),
 * each one checked to be a folder, not a symlink (lstat) when it was
 * already there. */
static int mkdirs(struct sftp *s, const char *dir, struct tm__aerr *ae)
{
    struct tm__buf rel = TM__BUF_INIT, b = TM__BUF_INIT;
    struct tm__sftp_attr at;
    struct tm__sftp_err e = { 0 };
    const char *p = dir;
    int rc = 0;
    while (!rc && *p) {
        size_t n;
        while (*p == '/')
            p++;
        if (!*p)
            break;
        n = strcspn(p, "/");
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
            rc = tm__aerr_set(ae, TM_EINVAL, "backup folder %s: '.' or '..' "
                              "in it", dir);
            break;
        }
        if (tm__buf_addch(&rel, '/') || tm__buf_add(&rel, p, n) ||
            full_path(s, rel.buf, &b)) {
            rc = TM_ENOMEM;
            break;
        }
        p += n;
        rc = tm__sftp_mkdir(s->pool, b.buf, 0700, &e);
        if (rc == TM_EEXIST) {
            rc = tm__sftp_lstat(s->pool, b.buf, &at, &e);
            if (!rc && at.type != TM_T_FOLDER)
                rc = tm__aerr_set(ae, TM_ENOTDIR, "backup folder: %s is a %s, "
                                  "not a folder", rel.buf, tm__type_names[at.type]);
            else if (rc)
                from_err(ae, &e, rc);
        } else if (rc) {
            from_err(ae, &e, rc);
        }
    }
    tm__buf_release(&rel);
    tm__buf_release(&b);
    return rc;
}

/* Moves the node at path (its server path from) to dir + path, replacing
 * what is there (posix-rename where the server has it). */
static int move_to_backup(struct sftp *s, const char *from, const char *path,
                          const char *dir, struct tm__aerr *ae)
{
    struct tm__buf rel = TM__BUF_INIT, to = TM__BUF_INIT;
    struct tm__sftp_err e = { 0 };
    char *slash;
    int rc = tm__backup_path(dir, path, &rel);
    if (!rc && (slash = strrchr(rel.buf, '/')) != NULL) {
        *slash = '\0'; /* its folder first */
        rc = mkdirs(s, rel.buf, ae);
        *slash = '/';
    }
    if (!rc)
        rc = full_path(s, rel.buf, &to);
    if (!rc && (rc = tm__sftp_rename(s->pool, from, to.buf, TM_SFTP_REPLACE, &e)) != 0)
        from_err(ae, &e, rc);
    tm__buf_release(&rel);
    tm__buf_release(&to);
    return rc;
}

static int sftp_backup(struct tm__adapter *a, const char *path, const char *dir,
                       struct tm__aerr *ae)
{
    struct sftp *s = (struct sftp *)a;
    struct tm__buf b = TM__BUF_INIT;
    struct tm__sftp_attr at;
    struct tm__sftp_err e = { 0 };
    int rc = full_path(s, path, &b);
    if (!rc && (rc = tm__sftp_lstat(s->pool, b.buf, &at, &e)) != 0)
        from_err(ae, &e, rc);
    else if (!rc && at.type == TM_T_FOLDER)
        rc = tm__aerr_set(ae, TM_EISDIR, "%s is a folder: not moved to the "
                          "backup folder", path);
    else if (!rc)
        rc = move_to_backup(s, b.buf, path, dir, ae);
    tm__buf_release(&b);
    return rc;
}

/* The mirror: an lstat compared with what discovery recorded, then
 * REMOVE, RMDIR (an empty folder) or a rename into the backup folder.
 * SFTP v3 works by name: a node replaced between the lstat and the
 * removal is the race it cannot close (docs/adapters.md). */
static int sftp_remove(struct tm__adapter *a, const char *path,
                       const struct tm__entry *want, const char *backup,
                       struct tm__aerr *ae)
{
    struct sftp *s = (struct sftp *)a;
    struct tm__buf b = TM__BUF_INIT;
    struct tm__sftp_attr at;
    struct tm__sftp_err e = { 0 };
    struct tm__entry now;
    int rc = full_path(s, path, &b);

    if (!rc && !path[1])
        rc = tm__aerr_set(ae, TM_EINVAL, "the root is never removed");
    if (!rc && (rc = tm__sftp_lstat(s->pool, b.buf, &at, &e)) != 0) {
        if (rc == TM_ENOTDIR)
            rc = tm__aerr_set(ae, TM_ECHANGED, "a folder on the path of %s is "
                              "no longer a folder", path);
        else
            from_err(ae, &e, rc);
    }
    if (rc)
        goto out;
    memset(&now, 0, sizeof now);
    entry_from(&now, &at);
    if ((rc = tm__remove_check(path, &now, want, ae)) != 0)
        goto out;
    if (backup && now.type != TM_T_FOLDER)
        rc = move_to_backup(s, b.buf, path, backup, ae);
    else if (now.type == TM_T_FOLDER)
        rc = tm__sftp_rmdir(s->pool, b.buf, &e);
    else
        rc = tm__sftp_remove(s->pool, b.buf, &e);
    if (rc == TM_ECHANGED && now.type == TM_T_FOLDER)
        rc = tm__aerr_set(ae, TM_ECHANGED, "%s is not empty: it holds what the "
                          "plan does not (kept)", path);
    else if (rc && !(backup && now.type != TM_T_FOLDER))
        from_err(ae, &e, rc);
out:
    tm__buf_release(&b);
    return rc;
}

/* ---- a pool kept from a close to the next open ---- */

/* A command may open a storage, close it and open it again a moment
 * later (discover checks the roots before the state file exists, then
 * discovers): the pool a close leaves is kept, and the next open of the
 * same URL with the same options within SPARE_NS takes it instead of
 * connecting and logging in again (a key exchange and a login: ~0.1 s of
 * CPU on each side, a round trip or more to a distant server). One pool
 * at most, freed by the next open or close that does not take it, or at
 * exit. */
#define SPARE_NS (10 * NS)
/* What the spare's last adapter knew of its root: the next open of the
 * same URL takes it while its check holds (ROOT_CHECK_NS), instead of
 * asking the server again. */
struct spare_root {
    char *root;          /* the canonical path (malloc'd), or NULL */
    int have_fsid;       /* fsid is known */
    uint64_t fsid;       /* its file system */
    int64_t checked_ns;  /* when it was last found so */
};
static pthread_mutex_t spare_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static struct tm__sftp_pool *spare;   /* (spare_mu) */
static char *spare_key;               /* its spec and options (spare_mu) */
static int64_t spare_ns;              /* when it was kept (spare_mu) */
static struct spare_root spare_root;  /* (spare_mu) */

/* The spare, if it is for key and fresh (with *root, when root is not
 * NULL and it is known; else root->root is NULL); any other is freed. */
static struct tm__sftp_pool *spare_take(const char *key, struct spare_root *root)
{
    struct tm__sftp_pool *p, *old = NULL;
    struct spare_root r;
    pthread_mutex_lock(&spare_mu);
    p = spare;
    r = spare_root;
    if (p && (!key || strcmp(key, spare_key) != 0 || tm__now_ns() - spare_ns > SPARE_NS)) {
        old = p;
        p = NULL;
    }
    spare = NULL;
    free(spare_key);
    spare_key = NULL;
    memset(&spare_root, 0, sizeof spare_root);
    pthread_mutex_unlock(&spare_mu);
    tm__sftp_pool_free(old);
    if (root && p) {
        *root = r;
    } else {
        free(r.root);
        if (root)
            memset(root, 0, sizeof *root);
    }
    return p;
}

static void spare_at_exit(void)
{
    tm__sftp_pool_free(spare_take(NULL, NULL));
}

static void spare_init(void)
{
    atexit(spare_at_exit); /* its masters' control folder goes too */
}

/* Keeps p as the spare for key (both taken) with what root says (its
 * root taken); the one before is freed. */
static void spare_put(struct tm__sftp_pool *p, char *key, struct spare_root *root)
{
    struct tm__sftp_pool *old;
    struct spare_root old_root;
    char *old_key;
    if (!key) {
        tm__sftp_pool_free(p);
        free(root->root);
        return;
    }
    pthread_once(&spare_once, spare_init);
    pthread_mutex_lock(&spare_mu);
    old = spare;
    old_key = spare_key;
    old_root = spare_root;
    spare = p;
    spare_key = key;
    spare_ns = tm__now_ns();
    spare_root = *root;
    pthread_mutex_unlock(&spare_mu);
    tm__sftp_pool_free(old);
    free(old_key);
    free(old_root.root);
}

/* spec and every option, one per line (no secret: options name where
 * secrets are), or NULL when out of memory. */
static char *spare_key_of(const char *spec, const struct tm__sopts *o)
{
    struct tm__buf b = TM__BUF_INIT;
    size_t i;
    int rc = tm__buf_adds(&b, spec);
    for (i = 0; o && i < o->n && !rc; i++)
        rc = tm__buf_addch(&b, '\n') || tm__buf_adds(&b, o->kv[i]);
    if (rc) {
        tm__buf_release(&b);
        return NULL;
    }
    return tm__buf_detach(&b, NULL);
}

static void sftp_close(struct tm__adapter *a)
{
    struct sftp *s = (struct sftp *)a;
    struct spare_root r = {NULL, s->have_fsid, s->fsid, atomic_load(&s->checked_ns)};
    if (!atomic_load(&s->gone)) {
        r.root = s->root;
        s->root = NULL;
    }
    spare_put(s->pool, s->spare_key, &r);
    free(s->url);
    free(s->given);
    free(s->root);
    tm__buf_release(&s->tc.dir);
    tm__buf_release(&s->tc.names);
    pthread_mutex_destroy(&s->tc.mu);
    free(s);
}

/* ---- options ---- */

static const char *const sftp_keys[] = {
    "ssh-identity", "ssh-known-hosts", "ssh-accept-new", "ssh-password-env",
    "ssh-config", "sftp-sessions", "sftp-timeout", "sftp-fsync", "sftp-ciphers",
    "sftp-macs", "sftp-transport", "sftp-stripe", "sftp-stripe-min", "sftp-stripe-rtt",
    NULL,
};

/* 1 for a flag that is on ("" given alone, or yes/true/1/on). */
static int flag_on(const char *v)
{
    return v && (!*v || !strcasecmp(v, "yes") || !strcasecmp(v, "true") ||
                 !strcmp(v, "1") || !strcasecmp(v, "on"));
}

/* 0 when v is a flag value (or absent), else the message in err. */
static int flag_ok(const char *key, const char *v, char *err, size_t errlen)
{
    if (!v || flag_on(v) || !strcasecmp(v, "no") || !strcasecmp(v, "false") ||
        !strcmp(v, "0") || !strcasecmp(v, "off"))
        return 0;
    snprintf(err, errlen, "option %s takes yes or no, not '%s'", key, v);
    return TM_EINVAL;
}

/* A whole number in [lo, hi] for key, or dflt when absent. */
static int int_opt(const struct tm__sopts *o, const char *key, long lo, long hi,
                   int dflt, int *out, char *err, size_t errlen)
{
    const char *v = tm__sopt_get(o, key);
    char *end;
    long n;
    *out = dflt;
    if (!v)
        return 0;
    n = strtol(v, &end, 10);
    if (!*v || *end || n < lo || n > hi) {
        snprintf(err, errlen, "option %s takes a whole number from %ld to %ld, not "
                 "'%s'", key, lo, hi, v);
        return TM_EINVAL;
    }
    *out = (int)n;
    return 0;
}

/* A size in bytes for key (a whole number, K, M or G: KiB, MiB, GiB), at
 * least 1; *out is left alone when absent. */
static int size_opt(const struct tm__sopts *o, const char *key, uint64_t *out, char *err,
                    size_t errlen)
{
    const char *v = tm__sopt_get(o, key);
    char *end;
    unsigned long long n;
    int shift = 0;
    if (!v)
        return 0;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (!isdigit((unsigned char)*v) || *end || errno || !n || n > (UINT64_MAX >> 30)) {
        snprintf(err, errlen, "option %s takes a size in bytes (or K, M, G), not '%s'", key,
                 v);
        return TM_EINVAL;
    }
    *out = (uint64_t)n << shift;
    return 0;
}

/* The pool's options from the storage options; ids (freed by the caller)
 * holds the identity files. */
static int pool_opts(const struct tm__sopts *o, struct tm__sftp_opts *so,
                     const char ***ids, int *fsync, char *err, size_t errlen)
{
    const char *v;
    size_t i = 0, n = 0;
    int rc, t;

    tm__sftp_opts_init(so);
    *ids = NULL;
    while (tm__sopt_next(o, "ssh-identity", &i))
        n++;
    if (n) {
        *ids = calloc(n, sizeof **ids);
        if (!*ids)
            return TM_ENOMEM;
        for (i = 0, n = 0; (v = tm__sopt_next(o, "ssh-identity", &i)) != NULL;) {
            if (!*v) {
                snprintf(err, errlen, "option ssh-identity takes a file");
                return TM_EINVAL;
            }
            (*ids)[n++] = v;
        }
        so->identities = *ids;
        so->n_identities = n;
    }
    so->known_hosts = tm__sopt_get(o, "ssh-known-hosts");
    so->ssh_config = tm__sopt_get(o, "ssh-config");
    so->password_env = tm__sopt_get(o, "ssh-password-env");
    so->ciphers = tm__sopt_get(o, "sftp-ciphers");
    so->macs = tm__sopt_get(o, "sftp-macs");
    if ((so->known_hosts && !*so->known_hosts) || (so->ssh_config && !*so->ssh_config) ||
        (so->password_env && !*so->password_env) || (so->ciphers && !*so->ciphers) ||
        (so->macs && !*so->macs)) {
        snprintf(err, errlen, "options ssh-known-hosts, ssh-config, ssh-password-env, "
                 "sftp-ciphers and sftp-macs take a value");
        return TM_EINVAL;
    }
    v = tm__sopt_get(o, "sftp-transport");
    if (v && (so->transport = tm__sftp_transport_parse(v)) < 0) {
        snprintf(err, errlen, "option sftp-transport takes libssh2 or openssh, not '%s'",
                 v);
        return TM_EINVAL;
    }
    if (!v)
        so->transport = TM_SFTP_TRANSPORT_DEFAULT;
    v = tm__sopt_get(o, "ssh-accept-new");
    if ((rc = flag_ok("ssh-accept-new", v, err, errlen)) != 0)
        return rc;
    so->accept_new = flag_on(v);
    v = tm__sopt_get(o, "sftp-fsync");
    if ((rc = flag_ok("sftp-fsync", v, err, errlen)) != 0)
        return rc;
    *fsync = flag_on(v);
    rc = int_opt(o, "sftp-sessions", 1, 1024, DEFAULT_SESSIONS, &so->max_sessions,
                 err, errlen);
    if (!rc)
        rc = int_opt(o, "sftp-timeout", 1, 86400, 30, &t, err, errlen);
    if (!rc)
        so->timeout_ms = t * 1000;
    if (!rc)
        rc = int_opt(o, "sftp-stripe", 1, 16, 0, &so->stripe_streams, err, errlen);
    if (!rc)
        rc = size_opt(o, "sftp-stripe-min", &so->stripe_min, err, errlen);
    if (!rc && tm__sopt_get(o, "sftp-stripe-rtt")) {
        rc = int_opt(o, "sftp-stripe-rtt", 0, 60000, 0, &t, err, errlen);
        so->stripe_rtt_us = t ? t * 1000 : -1;
    }
    return rc;
}

/* ---- the kind ---- */

/* Appends s percent-encoded: every byte but unreserved ones and those of
 * keep. */
static int pct_encode(struct tm__buf *b, const char *s, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;
    for (; *s && !rc; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
            (c < 0x80 && strchr(keep, c)))
            rc = tm__buf_addch(b, (char)c);
        else
            rc = tm__buf_addf(b, "%%%c%c", hex[c >> 4], hex[c & 15]);
    }
    return rc;
}

/* The URL's path made canonical: one '/' between components, no '.'
 * component, no '/' at the end (but "/"); ".." is refused (only the server
 * could resolve it). */
static int norm_path(const char *p, struct tm__buf *out, char *err, size_t errlen)
{
    tm__buf_reset(out);
    while (*p) {
        const char *e;
        size_t n;
        while (*p == '/')
            p++;
        if (!*p)
            break;
        e = strchr(p, '/');
        n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            snprintf(err, errlen, "a path with '..' is refused: give the folder's "
                     "own path");
            return TM_EBADSPEC;
        }
        if (!(n == 1 && p[0] == '.') &&
            (tm__buf_addch(out, '/') || tm__buf_add(out, p, n)))
            return TM_ENOMEM;
        p += n;
    }
    return out->len ? 0 : tm__buf_addch(out, '/');
}

static int sftp_resolve(const char *spec, const struct tm__sopts *o, char **out,
                        char *err, size_t errlen)
{
    struct tm__sftp_url u;
    struct tm__buf b = TM__BUF_INIT, path = TM__BUF_INIT;
    char why[512];
    int rc;

    (void)o;
    *out = NULL;
    why[0] = '\0';
    rc = tm__sftp_url_parse(spec, &u, why, sizeof why);
    if (!rc)
        rc = norm_path(u.path, &path, why, sizeof why);
    if (rc) {
        snprintf(err, errlen, "%s", why[0] ? why : tm_strerror(rc));
        goto out;
    }
    rc = tm__buf_adds(&b, "sftp://");
    if (!rc && u.user && !(rc = pct_encode(&b, u.user, "+,=!$&'()*;")))
        rc = tm__buf_addch(&b, '@');
    if (!rc)
        rc = strchr(u.host, ':') ? tm__buf_addf(&b, "[%s]", u.host)
                                 : pct_encode(&b, u.host, "");
    if (!rc && u.port)
        rc = tm__buf_addf(&b, ":%d", u.port);
    if (!rc)
        rc = pct_encode(&b, path.buf, "/:@+,=!$&'()*;");
    if (!rc)
        *out = tm__buf_detach(&b, NULL);
    if (rc == TM_ENOMEM)
        snprintf(err, errlen, "%s", tm_strerror(rc));
out:
    tm__sftp_url_release(&u);
    tm__buf_release(&b);
    tm__buf_release(&path);
    return rc;
}

/* Where a URL leads: host and port after ssh_config, the user, the
 * canonical path. */
struct target {
    char host[256];  /* lower case */
    int port;        /* 22 unless said */
    char user[128];  /* the URL's, the config's, or the local user */
    struct tm__buf path; /* canonical */
};

static int target_of(const char *spec, const struct tm__sopts *o, struct target *t,
                     char *err, size_t errlen)
{
    struct tm__sftp_url u;
    struct tm__ssh_host h;
    struct passwd *pw = getpwuid(getuid());
    size_t i;
    int rc;

    memset(&h, 0, sizeof h);
    rc = tm__sftp_url_parse(spec, &u, err, errlen);
    if (!rc)
        rc = tm__ssh_config_read(tm__sopt_get(o, "ssh-config"), u.host, &h, err, errlen);
    if (!rc)
        rc = norm_path(u.path, &t->path, err, errlen);
    if (!rc) {
        snprintf(t->host, sizeof t->host, "%s", h.hostname ? h.hostname : u.host);
        for (i = 0; t->host[i]; i++)
            t->host[i] = (char)tolower((unsigned char)t->host[i]);
        t->port = u.port ? u.port : h.port ? h.port : 22;
        snprintf(t->user, sizeof t->user, "%s",
                 u.user ? u.user : h.user ? h.user : pw ? pw->pw_name : "");
    }
    tm__ssh_host_release(&h);
    tm__sftp_url_release(&u);
    return rc;
}

/* 1 when path a is b or lies below b. */
static int within(const char *a, const char *b)
{
    size_t n = strlen(b);
    if (n == 1 && b[0] == '/')
        return 1;
    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

static int sftp_overlap(const char *a, const char *b, const struct tm__sopts *o,
                        char *err, size_t errlen)
{
    struct target ta, tb;
    char e2[256];
    int r = 0;

    memset(&ta, 0, sizeof ta);
    memset(&tb, 0, sizeof tb);
    if (target_of(a, o, &ta, e2, sizeof e2) == 0 &&
        target_of(b, o, &tb, e2, sizeof e2) == 0 && !strcmp(ta.host, tb.host) &&
        ta.port == tb.port && !strcmp(ta.user, tb.user) &&
        (within(ta.path.buf, tb.path.buf) || within(tb.path.buf, ta.path.buf))) {
        r = 1;
        snprintf(err, errlen, "%s and %s are on the same server (%s@%s:%d) and %s",
                 a, b, ta.user, ta.host, ta.port,
                 !strcmp(ta.path.buf, tb.path.buf) ? "are the same folder"
                                                   : "one is inside the other");
    }
    tm__buf_release(&ta.path);
    tm__buf_release(&tb.path);
    return r;
}

static int sftp_kind_open(const char *spec, const struct tm__sopts *o,
                          struct tm__adapter **out, char *err, size_t errlen)
{
    struct tm__sftp_opts so;
    struct tm__sftp_info info;
    struct tm__sftp_url u;
    struct tm__sftp_attr at;
    struct tm__sftp_vfs v;
    struct tm__sftp_err e = { 0 }, e2;
    struct tm__sftp_probe pr;
    struct spare_root kept;
    struct tm__buf b = TM__BUF_INIT;
    const char **ids = NULL;
    struct sftp *s;
    int64_t checked = 0;
    uint64_t h;
    int rc, reused, have_v = 0;

    *out = NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return TM_ENOMEM;
    pthread_mutex_init(&s->tc.mu, NULL);
    tm__buf_init(&s->tc.dir);
    tm__buf_init(&s->tc.names);
    err[0] = '\0';
    rc = pool_opts(o, &so, &ids, &s->fsync, err, errlen);
    if (rc)
        goto fail;
    memset(&u, 0, sizeof u);
    rc = tm__sftp_url_parse(spec, &u, err, errlen);
    if (!rc && !(s->given = strdup(u.path)))
        rc = TM_ENOMEM;
    tm__sftp_url_release(&u);
    if (rc)
        goto fail;
    if (!(s->url = strdup(spec)) || tm__random(s->key, sizeof s->key)) {
        rc = TM_ENOMEM;
        goto fail;
    }
    s->spare_key = spare_key_of(spec, o);
    s->pool = spare_take(s->spare_key, &kept);
    reused = s->pool != NULL;
    if (kept.root && tm__now_ns() - kept.checked_ns < ROOT_CHECK_NS) {
        /* the last adapter of this pool found the root so a moment ago
         * (discover opens a storage twice: the roots' check, then the
         * walk): its check holds as a check_root's does */
        s->root = kept.root;
        kept.root = NULL;
        s->have_fsid = kept.have_fsid;
        s->fsid = kept.fsid;
        checked = kept.checked_ns;
        goto known;
    }
    free(kept.root);
again:
    /* the first session now: a refused port, an unknown or changed host
     * key, a rejected login stop here, before anything is written */
    if (!s->pool && (rc = tm__sftp_pool_open(spec, &so, &s->pool, &e)) != 0) {
        snprintf(err, errlen, "%s: %s; nothing was read or written", spec, e.msg);
        goto fail;
    }
    /* the root, once: symlinks on the way resolved by the server. Its
     * attributes and file system are asked at the given path in the same
     * round trip: they are the root's when that path is canonical */
    rc = tm__sftp_root_probe(s->pool, s->given, s->given, 1, &pr, &e);
    if (!rc && (rc = pr.real_rc) != 0)
        e = pr.real_e;
    if (rc && reused && e.cls == TM_ERR_RETRY) {
        /* the kept pool's connection died meanwhile: a new one */
        tm__buf_release(&pr.real);
        tm__sftp_pool_free(s->pool);
        s->pool = NULL;
        reused = 0;
        goto again;
    }
    if (!rc && pr.real.len == strlen(s->given) &&
        memcmp(pr.real.buf, s->given, pr.real.len) == 0) {
        at = pr.at;
        if ((rc = pr.at_rc) != 0)
            e = pr.at_e;
        have_v = pr.vfs_rc == 0;
        v = pr.vfs;
    } else if (!rc) {
        rc = tm__sftp_lstat(s->pool, pr.real.buf, &at, &e);
        have_v = !rc && tm__sftp_statvfs(s->pool, pr.real.buf, &v, &e2) == 0;
    }
    if (!rc && at.type != TM_T_FOLDER) {
        rc = TM_ENOTDIR;
        snprintf(e.msg, sizeof e.msg, "not a folder");
    }
    if (rc) {
        tm__buf_release(&pr.real);
        snprintf(err, errlen, "%s: %s", spec,
                 rc == TM_ENOENT ? "the folder does not exist on the server"
                                 : e.msg);
        goto fail;
    }
    s->root = tm__buf_detach(&pr.real, NULL);
    if (have_v) {
        s->have_fsid = 1;
        s->fsid = v.fsid;
    }
known:
    s->root_len = strcmp(s->root, "/") ? strlen(s->root) : 0;
    /* what the root is: its canonical path on that server (and its file
     * system), so that another folder put at the URL's path since
     * discovery by a symlink, or a volume mounted or unmounted there, is
     * refused. dev and ino are no local device and inode: hashes of the
     * server and of the path (two roots of one server and user at the
     * same canonical path are the same folder; they never equal a local
     * folder's) */
    tm__sftp_pool_info(s->pool, &info);
    h = chain(0, s->root, strlen(s->root));
    if (s->have_fsid)
        snprintf(s->ri.id, sizeof s->ri.id, "sftp:%016llx:fsid:%016llx",
                 (unsigned long long)h, (unsigned long long)s->fsid);
    else
        snprintf(s->ri.id, sizeof s->ri.id, "sftp:%016llx", (unsigned long long)h);
    snprintf(s->ri.fstype, sizeof s->ri.fstype, "sftp");
    rc = tm__buf_addf(&b, "%s@%s:%d", info.user, info.host, info.port);
    if (rc)
        goto fail;
    s->ri.dev = chain(0x5f7e, b.buf, b.len) | 1ULL << 63;
    s->ri.ino = h | 1ULL << 63;
    tm__buf_release(&b);
    free(ids);
    s->base.version = 2;
    s->base.name = "sftp";
    s->base.caps = TM_CAP_MODES | TM_CAP_SYMLINKS;
    s->base.mtime_precision = NS; /* SFTP v3: whole seconds */
    s->base.list_open = sftp_list_open;
    s->base.list_next = sftp_list_next;
    s->base.list_pos = sftp_list_pos;
    s->base.list_close = sftp_list_close;
    s->base.stat = sftp_stat;
    s->base.close = sftp_close;
    s->base.open_read = sftp_open_read;
    s->base.read = sftp_read;
    s->base.fstat = sftp_fstat;
    s->base.close_read = sftp_close_read;
    s->base.open_write = sftp_open_write;
    s->base.write = sftp_write;
    /* over ssh's socket, a local file's bytes go by sendfile */
    if (strcmp(info.transport, "openssh") == 0)
        s->base.write_from = sftp_write_from;
    s->base.commit = sftp_commit;
    s->base.abort = sftp_abort;
    s->base.mkdir = sftp_mkdir;
    s->base.readlink = sftp_readlink;
    s->base.symlink = sftp_symlink;
    s->base.set_attr = sftp_set_attr;
    s->base.check_root = sftp_check_root;
    s->base.root_info = sftp_root_info;
    s->base.set_tmp_key = sftp_set_tmp_key;
    s->base.remove_tmp = sftp_remove_tmp;
    s->base.remove = sftp_remove;
    s->base.backup = sftp_backup;
    atomic_init(&s->checked_ns, checked ? checked : tm__now_ns());
    atomic_init(&s->gone, 0);
    *out = &s->base;
    return 0;
fail:
    if (!err[0])
        snprintf(err, errlen, "%s: %s", spec, tm_strerror(rc));
    tm__buf_release(&b);
    free(ids);
    if (s->pool)
        tm__sftp_pool_free(s->pool);
    free(s->spare_key);
    free(s->url);
    free(s->given);
    free(s->root);
    pthread_mutex_destroy(&s->tc.mu);
    free(s);
    /* a storage that cannot be opened when a command starts is a bad root
     * (exit 2): nothing was written */
    return rc == TM_ENOMEM ? rc : TM_EROOT;
}

/* Each operation in flight holds a session of its own (an SSH connection
 * with its sftp channel, an sshd process on the server: libssh2 sessions
 * are not thread-safe), opened on first use: 8 keep a loopback or LAN
 * server busy and hide most round trips, and stay below OpenSSH's default
 * MaxStartups (10 unauthenticated connections at once). */
const struct tm__kind tm__sftp_kind = {
    "sftp", "sftp://", 8, sftp_keys, sftp_resolve, sftp_kind_open, sftp_overlap,
};
