/*
 * adapter.c - the wrappers through which the engine calls any adapter.
 * They check what adapters report (names that could escape a root are
 * refused) and classify errors. Called from any worker thread.
 */
#include "adapter/adapter.h"

#include "treemig.h"
#include "util/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

static void limit_take(struct tm__limit *l, int ops, int64_t n);

const char *const tm__type_names[TM_T_COUNT] = { "folder", "file", "symlink",
                                                 "other" };

int tm__name_valid(const char *name, size_t len)
{
    if (len == 0 || len > 255 * 4)
        return 0;
    if ((len == 1 && name[0] == '.') ||
        (len == 2 && name[0] == '.' && name[1] == '.'))
        return 0;
    return memchr(name, '/', len) == NULL && memchr(name, '\0', len) == NULL;
}

void tm__aerr_clear(struct tm__aerr *e)
{
    e->code = 0;
    e->cls = -1;
    e->retry_ms = 0;
    e->msg[0] = '\0';
}

int tm__aerr_finish(struct tm__aerr *e, int rc)
{
    e->code = rc;
    if (!rc) {
        e->cls = -1;
        e->msg[0] = '\0';
        return 0;
    }
    if (e->cls < 0 || e->cls > TM_ERR_THROTTLE)
        e->cls = tm__adapter_classify(NULL, rc);
    if (!e->msg[0])
        snprintf(e->msg, sizeof e->msg, "%s", tm_strerror(rc));
    return rc;
}

int tm__aerr_set(struct tm__aerr *e, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->code = rc;
    return rc;
}

struct check_ctx {
    tm__list_cb cb; /* the engine's callback */
    void *ctx;      /* its context */
    int bad;        /* the adapter reported something invalid */
    unsigned caps;  /* the adapter's TM_CAP_* bits */
    int later;      /* the adapter may list files with meta_later */
};

static int check_entry(void *ctx, const struct tm__entry *e)
{
    struct check_ctx *c = ctx;
    struct tm__entry x;
    if (!(c->caps & TM_CAP_SPECIALS) || !(c->caps & TM_CAP_MOUNTS) ||
        !(c->caps & TM_CAP_HARDLINKS) || !c->later) {
        /* what a storage does not report is not read from it (nor
         * meta_later from a storage not told it may set it: it may not
         * even have set the field) */
        x = *e;
        if (!c->later)
            x.meta_later = 0;
        if (!(c->caps & TM_CAP_SPECIALS)) {
            x.mode &= 07777;
            x.rdev = 0;
        }
        if (!(c->caps & TM_CAP_MOUNTS))
            x.other_fs = 0;
        if (!(c->caps & TM_CAP_HARDLINKS)) {
            x.dev = x.ino = 0;
            x.nlink = 0;
        }
        e = &x;
    }
    if (!tm__name_valid(e->name, e->name_len)) {
        c->bad = 1;
        return TM_EBADNAME;
    }
    if (e->type < 0 || e->type >= TM_T_COUNT) {
        c->bad = 1;
        return TM_EINTERNAL;
    }
    return c->cb(c->ctx, e);
}

/* A root-relative path: "/" or "/name[/name...]" without a "." or ".."
 * component, so that no storage is ever handed a path that leads above
 * its root (a remote storage may not resolve "/../x" as the local one
 * does). An empty component ("//", a trailing '/') is left to the storage,
 * which finds nothing there. */
static int path_ok(const char *path)
{
    const char *p;
    if (!path || path[0] != '/')
        return 0;
    for (p = path + 1; *p;) {
        size_t n = strcspn(p, "/");
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += n + (p[n] == '/');
    }
    return 1;
}

void tm__adapter_set_list_xattrs(struct tm__adapter *a, int on)
{
    for (; a; a = a->wrapped)
        a->list_xattrs = on;
}

void tm__adapter_set_meta_later(struct tm__adapter *a, int later, int sizes_only)
{
    /* the engine calls the outer one's stat_many: a layer without it
     * must not let the storage under it list without the metadata */
    later = later && a->stat_many != NULL;
    for (; a; a = a->wrapped) {
        a->meta_later = later;
        a->sizes_only = later && sizes_only;
    }
}

int tm__adapter_list_open(struct tm__adapter *a, const char *path,
                          const void *pos, size_t pos_len,
                          struct tm__lister **out, struct tm__aerr *e)
{
    int rc;
    *out = NULL;
    tm__aerr_clear(e);
    if (!path_ok(path))
        return tm__aerr_finish(e, TM_EINVAL);
    rc = a->list_open(a, path, pos_len ? pos : NULL, pos_len, out, e);
    if (!rc && !*out)
        rc = TM_EINTERNAL;
    return tm__aerr_finish(e, rc);
}

int tm__adapter_list_next(struct tm__lister *l, tm__list_cb cb, void *ctx,
                          int *more, struct tm__aerr *e)
{
    struct check_ctx c = { cb, ctx, 0, l->a->caps,
                           l->a->meta_later && l->a->stat_many };
    int rc;
    tm__aerr_clear(e);
    *more = 0;
    limit_take(l->a->limit, 1, 1); /* a page: one request */
    rc = l->a->list_next(l, check_entry, &c, more, e);
    if (rc == TM_EBADNAME && c.bad) {
        /* the storage listed a name that cannot be a child: a problem of
         * this folder, never retried, and not the storage's words */
        e->cls = TM_ERR_NODE;
        snprintf(e->msg, sizeof e->msg, "%s", tm_strerror(rc));
    }
    return tm__aerr_finish(e, rc);
}

int tm__adapter_list_pos(struct tm__lister *l, struct tm__buf *out)
{
    return l->a->list_pos(l, out);
}

void tm__adapter_list_close(struct tm__lister *l)
{
    if (l)
        l->a->list_close(l);
}

int tm__adapter_list(struct tm__adapter *a, const char *path, tm__list_cb cb,
                     void *ctx, struct tm__aerr *e)
{
    struct tm__lister *l;
    int more = 1, rc = tm__adapter_list_open(a, path, NULL, 0, &l, e);
    while (!rc && more)
        rc = tm__adapter_list_next(l, cb, ctx, &more, e);
    tm__adapter_list_close(l);
    return rc;
}


/* The start of every wrapper: e cleared; TM_EINVAL for a bad path,
 * TM_ENOTSUP when the method is missing, else 0. */
/* ---- limits (copy --bwlimit, --tps-limit) ---- */

void tm__limit_init(struct tm__limit *l, double bytes_per_s, double ops_per_s,
                    atomic_int *stop)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    l->bytes_per_s = bytes_per_s;
    l->ops_per_s = ops_per_s;
    l->stop = stop;
}

void tm__limit_release(struct tm__limit *l)
{
    pthread_mutex_destroy(&l->mu);
}

/* Takes n units (bytes: ops 0; operations: ops 1) from l: the caller
 * waits until they are paid for at the rate, counted from when the last
 * ones were (or now, after a pause: no credit is saved up). The wait is
 * cut short by a stop. */
static void limit_take(struct tm__limit *l, int ops, int64_t n)
{
    int64_t now, start, until, *next;
    double rate;
    if (!l || n <= 0)
        return;
    rate = ops ? l->ops_per_s : l->bytes_per_s;
    if (rate <= 0)
        return;
    next = ops ? &l->next_op_ns : &l->next_byte_ns;
    now = tm__now_ns();
    pthread_mutex_lock(&l->mu);
    start = *next > now ? *next : now;
    *next = start + (int64_t)((double)n * 1e9 / rate);
    if (ops)
        l->ops += n;
    else
        l->bytes += n;
    /* an operation goes when its turn comes; bytes went already: the
     * caller waits until they are paid for */
    until = ops ? start : *next;
    if (until > now)
        l->waited_ns += until - now;
    pthread_mutex_unlock(&l->mu);
    while (until > now && !(l->stop && atomic_load(l->stop))) {
        int64_t ms = (until - now) / 1000000 + 1;
        tm__sleep_ms(ms > 100 ? 100 : ms);
        now = tm__now_ns();
    }
}

static int begin(struct tm__aerr *e, const char *path, int have)
{
    tm__aerr_clear(e);
    if (path && !path_ok(path))
        return tm__aerr_finish(e, TM_EINVAL);
    if (!have)
        return tm__aerr_finish(e, TM_ENOTSUP);
    return 0;
}

/* begin(), then one operation of a's limit. */
static int begin_op(struct tm__adapter *a, struct tm__aerr *e, const char *path,
                    int have)
{
    int rc = begin(e, path, have);
    if (!rc)
        limit_take(a->limit, 1, 1);
    return rc;
}

int tm__adapter_stat(struct tm__adapter *a, const char *path,
                     struct tm__entry *out, struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->stat != NULL);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    rc = a->stat(a, path, out, e);
    if (!rc && (out->type < 0 || out->type >= TM_T_COUNT))
        rc = TM_EINTERNAL;
    return tm__aerr_finish(e, rc);
}

int tm__adapter_stat_many(struct tm__adapter *a, const char *const *paths,
                          struct tm__entry *out, int *rcs, size_t n,
                          struct tm__aerr *e)
{
    size_t i;
    int rc = begin_op(a, e, NULL, a->stat_many != NULL);
    memset(out, 0, n * sizeof *out);
    if (rc)
        return rc;
    for (i = 0; i < n; i++) {
        rcs[i] = TM_EINTERNAL;
        if (!path_ok(paths[i]))
            return tm__aerr_finish(e, TM_EINVAL);
    }
    if (n > 1)
        limit_take(a->limit, 1, (int64_t)n - 1); /* one operation each */
    rc = a->stat_many(a, paths, out, rcs, n, e);
    for (i = 0; !rc && i < n; i++)
        if (!rcs[i] && (out[i].type < 0 || out[i].type >= TM_T_COUNT))
            rc = TM_EINTERNAL;
    return tm__aerr_finish(e, rc);
}

int tm__adapter_open_read(struct tm__adapter *a, const char *path,
                          struct tm__rfile **out, struct tm__entry *st,
                          struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->open_read != NULL);
    *out = NULL;
    memset(st, 0, sizeof *st);
    if (rc)
        return rc;
    rc = a->open_read(a, path, out, st, e);
    if (!rc && !*out)
        rc = TM_EINTERNAL;
    if (!rc && !(*out)->native)
        (*out)->native = *out; /* a storage's own file */
    return tm__aerr_finish(e, rc);
}

int64_t tm__adapter_read(struct tm__rfile *f, void *buf, size_t len,
                         struct tm__aerr *e)
{
    int64_t n;
    tm__aerr_clear(e);
    n = f->a->read(f, buf, len, e);
    if (n > (int64_t)len)
        n = TM_EINTERNAL; /* more than asked: never trusted */
    if (n > 0)
        limit_take(f->a->limit, 0, n);
    return n < 0 ? tm__aerr_finish(e, (int)n) : n;
}

int tm__adapter_fstat(struct tm__rfile *f, struct tm__entry *st,
                      struct tm__aerr *e)
{
    int rc = begin(e, NULL, f->a->fstat != NULL);
    memset(st, 0, sizeof *st);
    if (rc)
        return rc;
    return tm__aerr_finish(e, f->a->fstat(f, st, e));
}

void tm__adapter_close_read(struct tm__rfile *f)
{
    if (f)
        f->a->close_read(f);
}

int tm__adapter_open_write(struct tm__adapter *a, const char *path,
                           const struct tm__wattr *w, struct tm__wfile **out,
                           struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->open_write != NULL);
    *out = NULL;
    if (rc)
        return rc;
    if (!w || w->size < 0 || !path[1] || (w->resume_len && !w->resume))
        return tm__aerr_finish(e, TM_EINVAL);
    rc = a->open_write(a, path, w, out, e);
    if (!rc && !*out)
        rc = TM_EINTERNAL;
    return tm__aerr_finish(e, rc);
}

int tm__adapter_forget_write(struct tm__adapter *a, const char *path,
                             const void *state, size_t len, struct tm__aerr *e)
{
    int rc = begin(e, path ? path : "", 1);
    if (rc || !a->forget_write)
        return rc;
    return tm__aerr_finish(e, a->forget_write(a, path, state, len, e));
}

int tm__adapter_cannot_hold(struct tm__adapter *a, const char *path, size_t len,
                            int type, char *why, size_t whylen)
{
    if (!a->cannot_hold)
        return 0;
    if (whylen)
        why[0] = '\0';
    return a->cannot_hold(a, path, len, type, why, whylen) != 0;
}

int64_t tm__adapter_write(struct tm__wfile *f, const void *buf, size_t len,
                          struct tm__aerr *e)
{
    int64_t n;
    tm__aerr_clear(e);
    n = f->a->write(f, buf, len, e);
    if (n >= 0 && n != (int64_t)len)
        n = n > (int64_t)len ? TM_EINTERNAL : TM_EIO; /* all or an error */
    if (n > 0)
        limit_take(f->a->limit, 0, n);
    return n < 0 ? tm__aerr_finish(e, (int)n) : n;
}

int tm__adapter_can_copy_from(struct tm__adapter *out, struct tm__adapter *in)
{
    return out->copy_from && strcmp(out->name, in->name) == 0;
}

int64_t tm__adapter_copy_from(struct tm__wfile *out, struct tm__rfile *in,
                              int64_t size, struct tm__aerr *e)
{
    int64_t n;
    tm__aerr_clear(e);
    if (!out->a->copy_from)
        return tm__aerr_finish(e, TM_ENOTSUP);
    /* the storage sees its own file, below any wrapping adapter */
    n = out->a->copy_from(out, in->native ? in->native : in, size, e);
    if (n > size)
        n = TM_EINTERNAL;
    if (n > 0) {
        /* the bytes were read on one side and written on the other */
        limit_take(in->a->limit, 0, n);
        limit_take(out->a->limit, 0, n);
    }
    return n < 0 ? tm__aerr_finish(e, (int)n) : n;
}

int tm__adapter_can_write_from(struct tm__wfile *out, struct tm__rfile *in)
{
    return out->a->write_from && in->a->read_fd && in->a->read_fd(in) >= 0;
}

int64_t tm__adapter_write_from(struct tm__wfile *out, struct tm__rfile *in, size_t len,
                               int *src_failed, struct tm__aerr *e)
{
    int fd = in->a->read_fd ? in->a->read_fd(in) : -1;
    int64_t n;
    tm__aerr_clear(e);
    *src_failed = 0;
    if (!out->a->write_from || fd < 0)
        return tm__aerr_finish(e, TM_ENOTSUP);
    n = out->a->write_from(out, fd, len, src_failed, e);
    if (n > (int64_t)len)
        n = TM_EINTERNAL;
    if (n > 0) {
        /* the bytes were read on one side and written on the other */
        limit_take(in->a->limit, 0, n);
        limit_take(out->a->limit, 0, n);
    }
    return n < 0 ? tm__aerr_finish(e, (int)n) : n;
}

int tm__adapter_commit(struct tm__wfile *f, int64_t mtime, uint32_t mode,
                       unsigned flags, struct tm__aerr *e)
{
    tm__aerr_clear(e);
    limit_take(f->a->limit, 1, 1);
    return tm__aerr_finish(e, f->a->commit(f, mtime, mode, flags, e));
}

void tm__adapter_abort(struct tm__wfile *f)
{
    if (f)
        f->a->abort(f);
}

int tm__adapter_mkdir(struct tm__adapter *a, const char *path,
                      struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->mkdir != NULL);
    return rc ? rc : tm__aerr_finish(e, a->mkdir(a, path, e));
}

int tm__adapter_mkdir_attr(struct tm__adapter *a, const char *path,
                           int64_t mtime, uint32_t mode, struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->mkdir_attr != NULL);
    return rc ? rc : tm__aerr_finish(e, a->mkdir_attr(a, path, mtime, mode, e));
}

int tm__adapter_readlink(struct tm__adapter *a, const char *path,
                         struct tm__buf *out, struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->readlink != NULL);
    return rc ? rc : tm__aerr_finish(e, a->readlink(a, path, out, e));
}

int tm__adapter_symlink(struct tm__adapter *a, const char *path,
                        const char *target, int64_t mtime, unsigned flags,
                        struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->symlink != NULL);
    return rc ? rc : tm__aerr_finish(e, a->symlink(a, path, target, mtime, flags, e));
}

int tm__xattr_next(const void *blob, size_t len, size_t *off, const char **name,
                   const void **value, uint32_t *vlen)
{
    const char *p = blob;
    size_t o = *off, n;
    if (o >= len)
        return 0;
    n = strnlen(p + o, len - o);
    if (n == 0 || o + n + 1 + 4 > len)
        return -1;
    *name = p + o;
    memcpy(vlen, p + o + n + 1, 4);
    if (*vlen > len - (o + n + 1 + 4))
        return -1;
    *value = p + o + n + 1 + 4;
    *off = o + n + 1 + 4 + *vlen;
    return 1;
}

int tm__xattr_add(struct tm__buf *out, const char *name, const void *value,
                  uint32_t vlen)
{
    int rc = tm__buf_add(out, name, strlen(name) + 1);
    if (!rc)
        rc = tm__buf_add(out, &vlen, 4);
    if (!rc && vlen)
        rc = tm__buf_add(out, value, vlen);
    return rc;
}

int tm__remove_check(const char *path, const struct tm__entry *now,
                     const struct tm__entry *want, struct tm__aerr *e)
{
    if (now->type != want->type)
        return tm__aerr_set(e, TM_ECHANGED, "%s is now a %s, not the %s "
                            "discovery recorded", path,
                            tm__type_names[now->type], tm__type_names[want->type]);
    if ((now->type == TM_T_FILE || now->type == TM_T_SYMLINK) &&
        (now->size != want->size || now->mtime != want->mtime))
        return tm__aerr_set(e, TM_ECHANGED, "%s changed since discovery (size "
                            "%lld, mtime %lld; recorded %lld, %lld)", path,
                            (long long)now->size, (long long)now->mtime,
                            (long long)want->size, (long long)want->mtime);
    if (now->type == TM_T_OTHER && (want->mode & S_IFMT) &&
        (now->mode & S_IFMT) != (want->mode & S_IFMT))
        return tm__aerr_set(e, TM_ECHANGED, "%s is another kind of special file "
                            "than discovery recorded", path);
    return 0;
}

int tm__backup_path(const char *dir, const char *path, struct tm__buf *out)
{
    size_t n = strlen(dir);
    tm__buf_reset(out);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n == 1 && dir[0] == '/')
        n = 0;
    return tm__buf_add(out, dir, n) || tm__buf_adds(out, path) ? TM_ENOMEM : 0;
}

uint64_t tm__xattr_hash_add(uint64_t h, const char *name, const void *value,
                            size_t vlen)
{
    /* a sum of one hash per attribute: the order of listing is the file
     * system's, and two file systems list in different orders */
    return h + XXH3_64bits_withSeed(value, vlen,
                                    XXH3_64bits(name, strlen(name) + 1));
}

uint64_t tm__xattr_hash_end(uint64_t h, size_t count)
{
    return count && h == 0 ? 1 : h;
}

uint64_t tm__xattr_hash(const void *blob, size_t len)
{
    size_t off = 0, n = 0;
    const char *name;
    const void *val;
    uint32_t vlen;
    uint64_t h = 0;
    int k;
    while ((k = tm__xattr_next(blob, len, &off, &name, &val, &vlen)) == 1) {
        if (strncmp(name, "security.", 9) == 0)
            continue; /* copied, never compared (a destination's own) */
        h = tm__xattr_hash_add(h, name, val, vlen);
        n++;
    }
    return k < 0 ? 0 : tm__xattr_hash_end(h, n);
}

int tm__adapter_get_xattrs(struct tm__adapter *a, const char *path, int type,
                           struct tm__buf *out, struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->get_xattrs != NULL);
    return rc ? rc : tm__aerr_finish(e, a->get_xattrs(a, path, type, out, e));
}

int tm__adapter_set_xattrs(struct tm__adapter *a, const char *path, int type,
                           const void *blob, size_t len, struct tm__buf *refused,
                           struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->set_xattrs != NULL);
    return rc ? rc : tm__aerr_finish(e, a->set_xattrs(a, path, type, blob, len,
                                                      refused, e));
}

int tm__adapter_link(struct tm__adapter *a, const char *target, const char *path,
                     unsigned flags, struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->link != NULL);
    if (!rc && !path_ok(target ? target : ""))
        rc = tm__aerr_finish(e, TM_EINVAL);
    return rc ? rc : tm__aerr_finish(e, a->link(a, target, path, flags, e));
}

int tm__adapter_mknod(struct tm__adapter *a, const char *path, uint32_t mode,
                      uint64_t rdev, int64_t mtime, unsigned flags,
                      struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->mknod != NULL);
    return rc ? rc : tm__aerr_finish(e, a->mknod(a, path, mode, rdev, mtime,
                                                 flags, e));
}

int tm__adapter_set_attr(struct tm__adapter *a, const char *path, int64_t mtime,
                         uint32_t mode, struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->set_attr != NULL);
    return rc ? rc : tm__aerr_finish(e, a->set_attr(a, path, mtime, mode, e));
}

int tm__adapter_set_leaf_attr(struct tm__adapter *a, const char *path,
                              const struct tm__leaf_attr *want,
                              struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->set_leaf_attr != NULL);
    if (!rc && want->type != TM_T_FILE && want->type != TM_T_SYMLINK)
        rc = tm__aerr_finish(e, TM_EINVAL);
    return rc ? rc : tm__aerr_finish(e, a->set_leaf_attr(a, path, want, e));
}

int tm__adapter_sync(struct tm__adapter *a, struct tm__aerr *e)
{
    tm__aerr_clear(e);
    return a->sync ? tm__aerr_finish(e, a->sync(a, e)) : 0;
}

int tm__adapter_chown(struct tm__adapter *a, const char *path, int64_t uid,
                      int64_t gid, struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->chown != NULL);
    return rc ? rc : tm__aerr_finish(e, a->chown(a, path, uid, gid, e));
}

void tm__adapter_close(struct tm__adapter *a)
{
    if (a && a->close)
        a->close(a);
}

int tm__adapter_check_root(struct tm__adapter *a)
{
    return a && a->check_root ? a->check_root(a) : 0;
}

int tm__adapter_root_info(struct tm__adapter *a, struct tm__root_info *out)
{
    memset(out, 0, sizeof *out);
    return a && a->root_info ? a->root_info(a, out) : TM_EINVAL;
}

int tm__adapter_forbid(struct tm__adapter *a, uint64_t dev, uint64_t ino,
                       const char *what)
{
    return a && a->forbid ? a->forbid(a, dev, ino, what) : 0;
}

void tm__adapter_set_tmp_key(struct tm__adapter *a, const unsigned char *key)
{
    if (a && a->set_tmp_key)
        a->set_tmp_key(a, key);
}

int tm__adapter_remove_tmp(struct tm__adapter *a, const char *path, int type,
                           const unsigned char *key, struct tm__aerr *e)
{
    int rc = begin(e, path ? path : "", 1);
    if (rc || !a->remove_tmp)
        return rc;
    rc = a->remove_tmp(a, path, type, key, e);
    return rc < 0 ? tm__aerr_finish(e, rc) : rc;
}

int tm__adapter_remove(struct tm__adapter *a, const char *path,
                       const struct tm__entry *want, const char *backup,
                       struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->remove != NULL);
    if (rc)
        return rc;
    if (!path || strcmp(path, "/") == 0 || !want || want->type < 0 ||
        want->type >= TM_T_COUNT ||
        (backup && (!path_ok(backup) || strcmp(backup, "/") == 0)))
        return tm__aerr_finish(e, TM_EINVAL); /* never the root */
    return tm__aerr_finish(e, a->remove(a, path, want, backup, e));
}

int tm__adapter_backup(struct tm__adapter *a, const char *path, const char *dir,
                       struct tm__aerr *e)
{
    int rc = begin_op(a, e, path ? path : "", a->backup != NULL);
    if (rc)
        return rc;
    if (!path || strcmp(path, "/") == 0 || !dir || !path_ok(dir) ||
        strcmp(dir, "/") == 0)
        return tm__aerr_finish(e, TM_EINVAL);
    return tm__aerr_finish(e, a->backup(a, path, dir, e));
}

enum tm__errclass tm__adapter_classify(struct tm__adapter *a, int err)
{
    (void)a;
    switch (err) {
    case TM_ETHROTTLED:
        return TM_ERR_THROTTLE;
    case TM_EINTR:
    case TM_EAGAIN:
    case TM_ETIMEDOUT:
    case TM_EBUSY:
        return TM_ERR_RETRY;
    case TM_ENOSPC:
    case TM_EDQUOT:
    case TM_ENOMEM:
    case TM_EROFS:
    case TM_EINTERNAL:
    case TM_EOVERLAP: /* a tree met the other root or the state file */
        return TM_ERR_FATAL;
    default:
        return TM_ERR_NODE;
    }
}

int tm__spec_is_sim(const char *spec)
{
    return spec && strncmp(spec, "sim:", 4) == 0;
}

/* ---- options ---- */

const char *tm__sopt_next(const struct tm__sopts *o, const char *key, size_t *i)
{
    size_t k = strlen(key);
    for (; o && *i < o->n; (*i)++) {
        const char *kv = o->kv[*i];
        if (strncmp(kv, key, k) == 0 && (kv[k] == '=' || kv[k] == '\0')) {
            (*i)++;
            return kv[k] ? kv + k + 1 : kv + k;
        }
    }
    return NULL;
}

const char *tm__sopt_get(const struct tm__sopts *o, const char *key)
{
    const char *v, *last = NULL;
    size_t i = 0;
    while ((v = tm__sopt_next(o, key, &i)) != NULL)
        last = v;
    return last;
}

/* ---- the registry ---- */

const struct tm__kind *const tm__kinds[] = {
    &tm__sim_kind,
    &tm__s3_kind,
    &tm__sftp_kind,
    &tm__local_kind, /* last: it takes any spec no other kind claims */
    NULL,
};

const struct tm__kind *tm__kind_of(const char *spec)
{
    size_t i;
    while (spec && strncmp(spec, "fault:", 6) == 0 && strchr(spec + 6, ':'))
        spec = strchr(spec + 6, ':') + 1;
    for (i = 0; tm__kinds[i]; i++)
        if (tm__kinds[i]->prefix && spec &&
            strncmp(spec, tm__kinds[i]->prefix, strlen(tm__kinds[i]->prefix)) == 0)
            return tm__kinds[i];
    return &tm__local_kind;
}

int tm__spec_resolve(const char *spec, const struct tm__sopts *o, char **out,
                     char *err, size_t errlen)
{
    *out = NULL;
    if (!spec || !*spec) {
        snprintf(err, errlen, "empty storage spec");
        return TM_EROOT;
    }
    return tm__kind_of(spec)->resolve(spec, o, out, err, errlen);
}

int tm__adapter_open(const char *spec, const struct tm__sopts *o,
                     struct tm__adapter **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!spec || !*spec) {
        snprintf(err, errlen, "empty storage spec");
        return TM_EROOT;
    }
    if (strncmp(spec, "fault:", 6) == 0)
        return tm__fault_open(spec, o, out, err, errlen);
    return tm__kind_of(spec)->open(spec, o, out, err, errlen);
}
