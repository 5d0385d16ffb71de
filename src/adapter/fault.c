/*
 * fault.c - the fault-injecting adapter (in the manner of SQLite's
 * test_vfs.c): it wraps any adapter, passes every call through, counts the
 * calls of each operation, and fails the Nth call of a chosen operation,
 * once or from N on ("sticky"), with a chosen error. Selected by the spec
 * prefix "fault:RULES:INNER" (docs/adapters.md); RULES may be empty, which
 * only counts. Thread-safe: the counters are atomics; the rules are read
 * only after open. The one piece of per-thread state is the record of the
 * last fault this thread injected, so that describe() can say so.
 */
#include "adapter/adapter.h"

#include "treemig.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FAULT_MAX_RULES TM_FAULT_MAX_RULES

const char *const tm__fault_op_names[TM_FOP_COUNT] = {
    "list",       "stat",    "open_read", "read",     "fstat",
    "open_write", "write",   "copy_from", "commit",   "mkdir",
    "readlink",   "symlink", "set_attr",  "sync",     "chown",
};

struct fault {
    struct tm__adapter base;                 /* must be first */
    struct tm__adapter *in;                  /* the wrapped adapter (owned) */
    struct tm__fault_rule rules[FAULT_MAX_RULES]; /* what to fail */
    int n_rules;                             /* rules used */
    atomic_llong calls[TM_FOP_COUNT];        /* calls so far, per operation */
    atomic_llong fired;                      /* faults injected */
    int report;                              /* print the counts at close */
    char *label;                             /* the inner spec, for the report */
};

struct fault_rfile {
    struct tm__rfile base; /* must be first */
    struct tm__rfile *in;  /* the inner adapter's file */
};

struct fault_wfile {
    struct tm__wfile base; /* must be first */
    struct tm__wfile *in;  /* the inner adapter's file */
};

/* Counts one call of op; returns the error to inject (described in e), or
 * 0. */
static int hit(struct fault *f, int op, struct tm__aerr *e)
{
    long long n = atomic_fetch_add(&f->calls[op], 1) + 1;
    int i;
    for (i = 0; i < f->n_rules; i++) {
        const struct tm__fault_rule *r = &f->rules[i];
        if (r->op == op && (n == r->nth || (r->sticky && n > r->nth))) {
            atomic_fetch_add(&f->fired, 1);
            if (!e)
                return r->err;
            tm__aerr_set(e, r->err, "%s (fault injected into %s call %lld)",
                         tm_strerror(r->err), tm__fault_op_names[op], n);
            if (r->err == TM_ETHROTTLED) {
                e->cls = TM_ERR_THROTTLE;
                e->retry_ms = 10; /* injected: a short wait keeps tests fast */
            }
            return r->err;
        }
    }
    return 0;
}

/* ---- parsing ---- */

static int parse_err(const char *s, size_t len, int *out)
{
    static const int codes[] = {
#define TM__FAULT_CODE(name, val, msg) TM_##name,
        TM_ERRNO_MAP(TM__FAULT_CODE)
#undef TM__FAULT_CODE
    };
    size_t i;
    for (i = 0; i < sizeof codes / sizeof *codes; i++) {
        const char *name = tm_err_name(codes[i]);
        if (strlen(name) == len && strncasecmp(name, s, len) == 0) {
            *out = codes[i];
            return 0;
        }
    }
    return TM_EBADSPEC;
}

/* Parses one rule "OP@N[=ERR][+]" of len bytes. */
static int parse_rule(const char *s, size_t len, struct tm__fault_rule *r,
                      char *err, size_t errlen)
{
    const char *at = memchr(s, '@', len), *end = s + len, *p;
    long long n = 0;
    size_t i;

    r->op = -1;
    r->err = TM_EIO;
    r->sticky = 0;
    r->nth = 0;
    if (len == 12 && strncmp(s, "no_copy_from", 12) == 0) {
        r->op = TM_FOP_NO_COPY_FROM; /* not a fault: hides copy_from */
        return 0;
    }
    if (!at)
        goto bad;
    for (i = 0; i < TM_FOP_COUNT; i++)
        if (strlen(tm__fault_op_names[i]) == (size_t)(at - s) &&
            strncmp(tm__fault_op_names[i], s, (size_t)(at - s)) == 0)
            r->op = (int)i;
    if (r->op < 0) {
        snprintf(err, errlen, "fault spec: unknown operation '%.*s'",
                 (int)(at - s), s);
        return TM_EBADSPEC;
    }
    for (p = at + 1; p < end && *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n > 1000000000000LL)
            goto bad;
    }
    if (p == at + 1 || n < 1)
        goto bad;
    r->nth = n;
    if (p < end && *p == '=') {
        const char *e = ++p;
        while (p < end && *p != '+')
            p++;
        if (parse_err(e, (size_t)(p - e), &r->err) != 0) {
            snprintf(err, errlen, "fault spec: unknown error '%.*s'",
                     (int)(p - e), e);
            return TM_EBADSPEC;
        }
    }
    if (p < end && *p == '+') {
        r->sticky = 1;
        p++;
    }
    if (p != end)
        goto bad;
    return 0;
bad:
    snprintf(err, errlen, "fault spec: bad rule '%.*s' (OP@N[=ERR][+], N >= 1)",
             (int)len, s);
    return TM_EBADSPEC;
}

int tm__fault_parse(const char *spec, struct tm__fault_rule *rules, int max,
                    int *n, const char **inner, char *err, size_t errlen)
{
    const char *p, *colon;
    int rc;

    *n = 0;
    if (strncmp(spec, "fault:", 6) != 0) {
        snprintf(err, errlen, "fault spec: does not start with 'fault:'");
        return TM_EBADSPEC;
    }
    p = spec + 6;
    colon = strchr(p, ':');
    if (!colon) {
        snprintf(err, errlen, "fault spec: no ':' before the wrapped storage "
                 "(fault:RULES:SPEC)");
        return TM_EBADSPEC;
    }
    while (p < colon) {
        const char *comma = memchr(p, ',', (size_t)(colon - p));
        const char *e = comma ? comma : colon;
        if (*n == max) {
            snprintf(err, errlen, "fault spec: more than %d rules", max);
            return TM_EBADSPEC;
        }
        rc = parse_rule(p, (size_t)(e - p), &rules[*n], err, errlen);
        if (rc)
            return rc;
        (*n)++;
        p = comma ? comma + 1 : colon;
        if (comma && p == colon) {
            snprintf(err, errlen, "fault spec: empty rule after ','");
            return TM_EBADSPEC;
        }
    }
    if (!colon[1]) {
        snprintf(err, errlen, "fault spec: no storage after the rules");
        return TM_EBADSPEC;
    }
    *inner = colon + 1;
    return 0;
}

/* ---- the wrapped operations ---- */

static struct tm__adapter *inner(struct tm__adapter *a)
{
    return ((struct fault *)a)->in;
}

struct fault_lister {
    struct tm__lister base; /* must be first */
    struct tm__lister *in;  /* the inner adapter's listing */
};

static int f_list_open(struct tm__adapter *a, const char *path, const void *pos,
                       size_t pos_len, struct tm__lister **out,
                       struct tm__aerr *e)
{
    struct fault_lister *fl = calloc(1, sizeof *fl);
    int rc;
    *out = NULL;
    if (!fl)
        return TM_ENOMEM;
    rc = inner(a)->list_open(inner(a), path, pos, pos_len, &fl->in, e);
    if (rc) {
        free(fl);
        return rc;
    }
    fl->base.a = a;
    *out = &fl->base;
    return 0;
}

/* Every page is a "list" call: a folder of one page is one call. */
static int f_list_next(struct tm__lister *l, tm__list_cb cb, void *ctx,
                       int *more, struct tm__aerr *e)
{
    struct fault_lister *fl = (struct fault_lister *)l;
    int rc = hit((struct fault *)l->a, TM_FOP_LIST, e);
    if (rc) {
        *more = 0;
        return rc;
    }
    return fl->in->a->list_next(fl->in, cb, ctx, more, e);
}

static int f_list_pos(struct tm__lister *l, struct tm__buf *out)
{
    struct fault_lister *fl = (struct fault_lister *)l;
    return fl->in->a->list_pos(fl->in, out);
}

static void f_list_close(struct tm__lister *l)
{
    struct fault_lister *fl = (struct fault_lister *)l;
    fl->in->a->list_close(fl->in);
    free(fl);
}

static int f_stat(struct tm__adapter *a, const char *path, struct tm__entry *out,
                  struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_STAT, e);
    return rc ? rc : inner(a)->stat(inner(a), path, out, e);
}

/* A batch of stats is one "stat" call: a fault fails it whole. */
static int f_stat_many(struct tm__adapter *a, const char *const *paths,
                       struct tm__entry *out, int *rcs, size_t n,
                       struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_STAT, e);
    return rc ? rc : inner(a)->stat_many(inner(a), paths, out, rcs, n, e);
}

static void f_close(struct tm__adapter *a)
{
    struct fault *f = (struct fault *)a;
    if (f->report) {
        int i;
        fprintf(stderr, "treemig fault counts %s:", f->label ? f->label : "?");
        for (i = 0; i < TM_FOP_COUNT; i++)
            fprintf(stderr, " %s=%lld", tm__fault_op_names[i],
                    (long long)atomic_load(&f->calls[i]));
        fprintf(stderr, " fired=%lld\n", (long long)atomic_load(&f->fired));
    }
    tm__adapter_close(f->in);
    free(f->label);
    free(f);
}

static int f_open_read(struct tm__adapter *a, const char *path,
                       struct tm__rfile **out, struct tm__entry *st,
                       struct tm__aerr *e)
{
    struct fault_rfile *fr;
    struct tm__rfile *in;
    int rc = hit((struct fault *)a, TM_FOP_OPEN_READ, e);
    *out = NULL;
    if (rc)
        return rc;
    fr = calloc(1, sizeof *fr);
    if (!fr)
        return TM_ENOMEM;
    rc = inner(a)->open_read(inner(a), path, &in, st, e);
    if (rc) {
        free(fr);
        return rc;
    }
    fr->base.a = a;
    /* copy_from is given the storage's own file below this layer */
    fr->base.native = in->native ? in->native : in;
    fr->in = in;
    *out = &fr->base;
    return 0;
}

static int64_t f_read(struct tm__rfile *rf, void *buf, size_t len,
                      struct tm__aerr *e)
{
    struct fault_rfile *fr = (struct fault_rfile *)rf;
    int rc = hit((struct fault *)rf->a, TM_FOP_READ, e);
    return rc ? rc : fr->in->a->read(fr->in, buf, len, e);
}

static int f_fstat(struct tm__rfile *rf, struct tm__entry *st, struct tm__aerr *e)
{
    struct fault_rfile *fr = (struct fault_rfile *)rf;
    int rc = hit((struct fault *)rf->a, TM_FOP_FSTAT, e);
    return rc ? rc : fr->in->a->fstat(fr->in, st, e);
}

static void f_close_read(struct tm__rfile *rf)
{
    struct fault_rfile *fr = (struct fault_rfile *)rf;
    if (!fr)
        return;
    fr->in->a->close_read(fr->in);
    free(fr);
}

static int f_open_write(struct tm__adapter *a, const char *path,
                        const struct tm__wattr *w, struct tm__wfile **out,
                        struct tm__aerr *e)
{
    struct fault_wfile *fw;
    struct tm__wfile *in;
    int rc = hit((struct fault *)a, TM_FOP_OPEN_WRITE, e);
    *out = NULL;
    if (rc)
        return rc;
    fw = calloc(1, sizeof *fw);
    if (!fw)
        return TM_ENOMEM;
    rc = inner(a)->open_write(inner(a), path, w, &in, e);
    if (rc) {
        free(fw);
        return rc;
    }
    fw->base.a = a;
    fw->in = in;
    *out = &fw->base;
    return 0;
}

static int64_t f_write(struct tm__wfile *wf, const void *buf, size_t len,
                       struct tm__aerr *e)
{
    struct fault_wfile *fw = (struct fault_wfile *)wf;
    int rc = hit((struct fault *)wf->a, TM_FOP_WRITE, e);
    return rc ? rc : fw->in->a->write(fw->in, buf, len, e);
}

int tm__fault_is(const struct tm__adapter *a)
{
    return a && a->close == f_close;
}

/* src is the storage's own file already (tm__adapter_copy_from passes the
 * native file): the inner adapter gets it with its own written file. */
static int64_t f_copy_from(struct tm__wfile *wf, struct tm__rfile *src,
                           int64_t size, struct tm__aerr *e)
{
    struct fault_wfile *fw = (struct fault_wfile *)wf;
    int rc = hit((struct fault *)wf->a, TM_FOP_COPY_FROM, e);
    return rc ? rc : fw->in->a->copy_from(fw->in, src, size, e);
}

static int f_commit(struct tm__wfile *wf, int64_t mtime, uint32_t mode,
                    unsigned flags, struct tm__aerr *e)
{
    struct fault_wfile *fw = (struct fault_wfile *)wf;
    struct tm__wfile *in = fw->in;
    int rc = hit((struct fault *)wf->a, TM_FOP_COMMIT, e);
    in->set_owner = wf->set_owner; /* the engine set them on the wrapper */
    in->uid = wf->uid;
    in->gid = wf->gid;
    free(fw); /* commit frees the file in every case */
    if (rc) {
        in->a->abort(in); /* as a failed commit does: no temporary left */
        return rc;
    }
    return in->a->commit(in, mtime, mode, flags, e);
}

static void f_abort(struct tm__wfile *wf)
{
    struct fault_wfile *fw = (struct fault_wfile *)wf;
    if (!fw)
        return;
    fw->in->a->abort(fw->in);
    free(fw);
}

static int f_mkdir(struct tm__adapter *a, const char *path, struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_MKDIR, e);
    return rc ? rc : inner(a)->mkdir(inner(a), path, e);
}

/* Counted and failed as mkdir. */
static int f_mkdir_attr(struct tm__adapter *a, const char *path, int64_t mtime,
                        uint32_t mode, struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_MKDIR, e);
    return rc ? rc : inner(a)->mkdir_attr(inner(a), path, mtime, mode, e);
}

static int f_readlink(struct tm__adapter *a, const char *path, struct tm__buf *out,
                      struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_READLINK, e);
    return rc ? rc : inner(a)->readlink(inner(a), path, out, e);
}

static int f_symlink(struct tm__adapter *a, const char *path, const char *target,
                     int64_t mtime, unsigned flags, struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_SYMLINK, e);
    return rc ? rc : inner(a)->symlink(inner(a), path, target, mtime, flags, e);
}

/* Counted and failed as stat: both read what a node is. */
static int f_get_xattrs(struct tm__adapter *a, const char *path, int type,
                        struct tm__buf *out, struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_STAT, e);
    return rc ? rc : inner(a)->get_xattrs(inner(a), path, type, out, e);
}

/* Counted and failed as set_attr: both set a folder's attributes. */
static int f_set_xattrs(struct tm__adapter *a, const char *path, int type,
                        const void *blob, size_t len, struct tm__buf *refused,
                        struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_SET_ATTR, e);
    return rc ? rc : inner(a)->set_xattrs(inner(a), path, type, blob, len,
                                          refused, e);
}

/* Counted and failed as symlink: both create a name that holds no bytes. */
static int f_link(struct tm__adapter *a, const char *target, const char *path,
                  unsigned flags, struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_SYMLINK, e);
    return rc ? rc : inner(a)->link(inner(a), target, path, flags, e);
}

/* Counted and failed as symlink: both create a node that holds no bytes. */
static int f_mknod(struct tm__adapter *a, const char *path, uint32_t mode,
                   uint64_t rdev, int64_t mtime, unsigned flags,
                   struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_SYMLINK, e);
    return rc ? rc : inner(a)->mknod(inner(a), path, mode, rdev, mtime, flags, e);
}

static int f_set_attr(struct tm__adapter *a, const char *path, int64_t mtime,
                      uint32_t mode, struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_SET_ATTR, e);
    return rc ? rc : inner(a)->set_attr(inner(a), path, mtime, mode, e);
}

/* Counted and failed as set_attr: both set a node's attributes. */
static int f_set_leaf_attr(struct tm__adapter *a, const char *path,
                           const struct tm__leaf_attr *want, struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_SET_ATTR, e);
    return rc ? rc : inner(a)->set_leaf_attr(inner(a), path, want, e);
}

static int f_sync(struct tm__adapter *a, struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_SYNC, e);
    return rc ? rc : inner(a)->sync(inner(a), e);
}

static int f_chown(struct tm__adapter *a, const char *path, int64_t uid,
                   int64_t gid, struct tm__aerr *e)
{
    int rc = hit((struct fault *)a, TM_FOP_CHOWN, e);
    return rc ? rc : inner(a)->chown(inner(a), path, uid, gid, e);
}

/* Not a fault point: whether the root is still there is the inner's. */
static int f_check_root(struct tm__adapter *a)
{
    return tm__adapter_check_root(inner(a));
}

/* Not fault points either: what the root is, the folders never to meet,
 * the names of temporaries are the inner storage's. */
static int f_root_info(struct tm__adapter *a, struct tm__root_info *out)
{
    return tm__adapter_root_info(inner(a), out);
}

static int f_forbid(struct tm__adapter *a, uint64_t dev, uint64_t ino,
                    const char *what)
{
    return tm__adapter_forbid(inner(a), dev, ino, what);
}

static void f_set_tmp_key(struct tm__adapter *a, const unsigned char *key)
{
    tm__adapter_set_tmp_key(inner(a), key);
}

/* Not fault points: what the inner storage keeps or can hold. */
static int f_forget_write(struct tm__adapter *a, const char *path,
                          const void *state, size_t len, struct tm__aerr *e)
{
    return tm__adapter_forget_write(inner(a), path, state, len, e);
}

static int f_cannot_hold(struct tm__adapter *a, const char *path, size_t len,
                         int type, char *why, size_t whylen)
{
    return tm__adapter_cannot_hold(inner(a), path, len, type, why, whylen);
}

static int f_remove_tmp(struct tm__adapter *a, const char *path, int type,
                        const unsigned char *key, struct tm__aerr *e)
{
    return tm__adapter_remove_tmp(inner(a), path, type, key, e);
}

static int f_remove(struct tm__adapter *a, const char *path,
                    const struct tm__entry *want, const char *backup,
                    struct tm__aerr *e)
{
    return tm__adapter_remove(inner(a), path, want, backup, e);
}

static int f_backup(struct tm__adapter *a, const char *path, const char *dir,
                    struct tm__aerr *e)
{
    return tm__adapter_backup(inner(a), path, dir, e);
}

int tm__fault_wrap(struct tm__adapter *in, const struct tm__fault_rule *rules,
                   int n, int report, struct tm__adapter **out)
{
    struct fault *f;
    int i;

    *out = NULL;
    if (n < 0 || n > FAULT_MAX_RULES)
        return TM_EINVAL;
    f = calloc(1, sizeof *f);
    if (!f)
        return TM_ENOMEM;
    for (i = 0; i < TM_FOP_COUNT; i++)
        atomic_init(&f->calls[i], 0);
    atomic_init(&f->fired, 0);
    if (n)
        memcpy(f->rules, rules, (size_t)n * sizeof *rules);
    f->n_rules = n;
    f->report = report;
    f->in = in;
    f->base.wrapped = in;
    /* the inner name: the engine uses copy_from between two storages of
     * the same name, and tm__adapter_copy_from passes the native file */
    f->base.version = in->version;
    f->base.name = in->name;
    f->base.caps = in->caps;
    f->base.mtime_precision = in->mtime_precision;
    f->base.list_open = f_list_open;
    f->base.list_next = f_list_next;
    f->base.list_pos = f_list_pos;
    f->base.list_close = f_list_close;
    f->base.stat = in->stat ? f_stat : NULL;
    f->base.stat_many = in->stat_many ? f_stat_many : NULL;
    f->base.close = f_close;
    /* optional methods stay absent when the inner adapter lacks them */
    if (in->open_read) {
        f->base.open_read = f_open_read;
        f->base.read = f_read;
        f->base.fstat = f_fstat;
        f->base.close_read = f_close_read;
    }
    if (in->open_write) {
        f->base.open_write = f_open_write;
        f->base.write = f_write;
        f->base.commit = f_commit;
        f->base.abort = f_abort;
        f->base.copy_from = in->copy_from ? f_copy_from : NULL;
        for (i = 0; i < n; i++)
            if (rules[i].op == TM_FOP_NO_COPY_FROM)
                f->base.copy_from = NULL; /* the engine reads and writes */
    }
    f->base.mkdir = in->mkdir ? f_mkdir : NULL;
    f->base.mkdir_attr = in->mkdir_attr ? f_mkdir_attr : NULL;
    f->base.readlink = in->readlink ? f_readlink : NULL;
    f->base.symlink = in->symlink ? f_symlink : NULL;
    f->base.mknod = in->mknod ? f_mknod : NULL;
    f->base.link = in->link ? f_link : NULL;
    f->base.get_xattrs = in->get_xattrs ? f_get_xattrs : NULL;
    f->base.set_xattrs = in->set_xattrs ? f_set_xattrs : NULL;
    f->base.set_attr = in->set_attr ? f_set_attr : NULL;
    f->base.set_leaf_attr = in->set_leaf_attr ? f_set_leaf_attr : NULL;
    f->base.sync = in->sync ? f_sync : NULL;
    f->base.chown = in->chown ? f_chown : NULL;
    f->base.check_root = in->check_root ? f_check_root : NULL;
    f->base.forget_write = in->forget_write ? f_forget_write : NULL;
    f->base.cannot_hold = in->cannot_hold ? f_cannot_hold : NULL;
    f->base.root_info = in->root_info ? f_root_info : NULL;
    f->base.forbid = in->forbid ? f_forbid : NULL;
    f->base.set_tmp_key = in->set_tmp_key ? f_set_tmp_key : NULL;
    f->base.remove_tmp = in->remove_tmp ? f_remove_tmp : NULL;
    f->base.remove = in->remove ? f_remove : NULL;
    f->base.backup = in->backup ? f_backup : NULL;
    *out = &f->base;
    return 0;
}

long long tm__fault_calls(const struct tm__adapter *a, int op)
{
    const struct fault *f = (const struct fault *)a;
    if (!tm__fault_is(a) || op < 0 || op >= TM_FOP_COUNT)
        return -1;
    return (long long)atomic_load(&((struct fault *)f)->calls[op]);
}

long long tm__fault_fired(const struct tm__adapter *a)
{
    if (!tm__fault_is(a))
        return -1;
    return (long long)atomic_load(&((struct fault *)a)->fired);
}

int tm__fault_open(const char *spec, const struct tm__sopts *o,
                   struct tm__adapter **out, char *err, size_t errlen)
{
    struct tm__fault_rule rules[FAULT_MAX_RULES];
    struct tm__adapter *in = NULL;
    const char *rest, *rep;
    int n, rc;

    *out = NULL;
    rc = tm__fault_parse(spec, rules, FAULT_MAX_RULES, &n, &rest, err, errlen);
    if (rc)
        return rc;
    rc = tm__adapter_open(rest, o, &in, err, errlen);
    if (rc)
        return rc;
    rep = getenv("TREEMIG_FAULT_REPORT");
    rc = tm__fault_wrap(in, rules, n, rep && *rep && strcmp(rep, "0") != 0, out);
    if (!rc && !(((struct fault *)*out)->label = strdup(rest))) {
        f_close(*out);
        *out = NULL;
        return TM_ENOMEM;
    }
    if (rc) {
        tm__adapter_close(in);
        snprintf(err, errlen, "fault spec: %s", tm_strerror(rc));
    }
    return rc;
}
