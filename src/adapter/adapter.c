/*
 * adapter.c - the wrappers through which the engine calls any adapter.
 * They check what adapters report (names that could escape a root are
 * refused) and classify errors. Called from any worker thread.
 */
#include "adapter/adapter.h"

#include "treemig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
};

static int check_entry(void *ctx, const struct tm__entry *e)
{
    struct check_ctx *c = ctx;
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

int tm__adapter_list_open(struct tm__adapter *a, const char *path,
                          const void *pos, size_t pos_len,
                          struct tm__lister **out, struct tm__aerr *e)
{
    int rc;
    *out = NULL;
    tm__aerr_clear(e);
    if (!path || path[0] != '/')
        return tm__aerr_finish(e, TM_EINVAL);
    rc = a->list_open(a, path, pos_len ? pos : NULL, pos_len, out, e);
    if (!rc && !*out)
        rc = TM_EINTERNAL;
    return tm__aerr_finish(e, rc);
}

int tm__adapter_list_next(struct tm__lister *l, tm__list_cb cb, void *ctx,
                          int *more, struct tm__aerr *e)
{
    struct check_ctx c = { cb, ctx, 0 };
    int rc;
    tm__aerr_clear(e);
    *more = 0;
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

int tm__adapter_stat(struct tm__adapter *a, const char *path,
                     struct tm__entry *out)
{
    if (!path || path[0] != '/')
        return TM_EINVAL;
    if (!a->stat)
        return TM_EINVAL;
    return a->stat(a, path, out);
}

int64_t tm__adapter_copy_from(struct tm__adapter *da, struct tm__wfile *out,
                              struct tm__rfile *in, int64_t size)
{
    if (!tm__fault_is(da))
        in = tm__fault_rfile_inner(in);
    return da->copy_from(out, in, size);
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
                           const unsigned char *key)
{
    if (!path || path[0] != '/')
        return TM_EINVAL;
    return a && a->remove_tmp ? a->remove_tmp(a, path, type, key) : 0;
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

int64_t tm__adapter_retry_after(struct tm__adapter *a)
{
    int64_t ms = a->retry_after ? a->retry_after(a) : 1000;
    return ms < 1 ? 1 : ms;
}

void tm__adapter_describe(struct tm__adapter *a, int err, char *buf, size_t len)
{
    if (a->describe)
        a->describe(a, err, buf, len);
    else
        snprintf(buf, len, "%s", tm_strerror(err));
}

int tm__spec_is_sim(const char *spec)
{
    return spec && strncmp(spec, "sim:", 4) == 0;
}

int tm__adapter_open(const char *spec, struct tm__adapter **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    if (!spec || !*spec) {
        snprintf(err, errlen, "empty storage spec");
        return TM_EROOT;
    }
    if (tm__spec_is_sim(spec))
        return tm__sim_open(spec + 4, out, err, errlen);
    if (strncmp(spec, "fault:", 6) == 0)
        return tm__fault_open(spec, out, err, errlen);
    return tm__local_open(spec, out, err, errlen);
}
