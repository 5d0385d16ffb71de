/* compare.c - listings sorted by name, filters, and the comparison of two
 * nodes (their content: type, size, mtime; their attributes: mode, owner,
 * extended attributes and ACLs). The filters are in filter.c. Pure functions on the caller's data, any thread. */
#include "engine/engine.h"

#include "store/store.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* floor(t / prec), also for times before the epoch. */
static int64_t floor_div(int64_t t, int64_t prec)
{
    int64_t q = t / prec;
    if ((t % prec != 0) && (t < 0))
        q--;
    return q;
}

int tm__compare_leaf(int64_t src_size, int64_t src_mtime, int64_t dst_size,
                     int64_t dst_mtime, int64_t prec)
{
    int64_t s, d;
    if (prec < 1)
        prec = 1;
    if (src_size != dst_size)
        return CF_SIZE;
    /* a time that did not fit (util.h) is not known: never equal */
    if (tm__mtime_out_of_range(src_mtime) || tm__mtime_out_of_range(dst_mtime))
        return dst_mtime > src_mtime ? CF_DST_NEWER : CF_MTIME;
    s = floor_div(src_mtime, prec);
    d = floor_div(dst_mtime, prec);
    if (s == d)
        return CF_NONE;
    return d > s ? CF_DST_NEWER : CF_MTIME;
}

int tm__mtime_within(int64_t a, int64_t b, int64_t window)
{
    int64_t sa, sb, w;
    if (window <= 0 || tm__mtime_out_of_range(a) || tm__mtime_out_of_range(b))
        return 0;
    /* whole seconds, as rsync --modify-window */
    sa = floor_div(a, 1000000000);
    sb = floor_div(b, 1000000000);
    w = window / 1000000000;
    return sa >= sb ? sa - sb <= w : sb - sa <= w;
}

void tm__attr_rule_init(struct tm__attr_rule *r, const struct tm__adapter *src,
                        const struct tm__adapter *dst, int owner, int cmp_owner)
{
    r->modes = (src->caps & TM_CAP_MODES) && (dst->caps & TM_CAP_MODES);
    r->owner = owner != 0;
    r->cmp_owner = cmp_owner != 0;
    r->euid = (int64_t)geteuid();
    r->egid = (int64_t)getegid();
    r->xattrs = (src->caps & TM_CAP_XATTRS) && (dst->caps & TM_CAP_XATTRS) &&
                src->get_xattrs && dst->set_xattrs;
}

uint32_t tm__copy_mode(const struct tm__attr_rule *r, int type,
                       const struct tm__attrs *s)
{
    uint32_t mode = s->mode & 07777;
    if (type != TM_T_FILE || r->owner || !(mode & 06000))
        return mode;
    if (!s->owned || s->uid != r->euid)
        mode &= ~04000u;
    if (!s->owned || s->gid != r->egid)
        mode &= ~02000u;
    return mode;
}

int tm__compare_attrs(const struct tm__attr_rule *r, int type,
                      const struct tm__attrs *s, const struct tm__attrs *d)
{
    if (type != TM_T_FOLDER && type != TM_T_FILE && type != TM_T_SYMLINK)
        return CF_NONE;
    if (r->modes && type != TM_T_SYMLINK &&
        tm__copy_mode(r, type, s) != (d->mode & 07777))
        return CF_ATTRS;
    if (r->cmp_owner &&
        (!s->owned || !d->owned || s->uid != d->uid || s->gid != d->gid))
        return CF_ATTRS;
    return CF_NONE;
}

int tm__compare_xattrs(const struct tm__attr_rule *r, int type, uint64_t s,
                       uint64_t d)
{
    if (!r->xattrs || (type != TM_T_FOLDER && type != TM_T_FILE))
        return CF_NONE;
    return s != d ? CF_ATTRS : CF_NONE;
}

int tm__listing_add(void *ctx, const struct tm__entry *e)
{
    struct tm__listing *l = ctx;
    struct tm__ent *x;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        void *p = realloc(l->v, nc * sizeof *l->v);
        if (!p)
            return TM_ENOMEM;
        l->v = p;
        l->cap = nc;
    }
    x = &l->v[l->n];
    x->name_off = l->arena.len;
    x->name_len = e->name_len;
    if (tm__buf_add(&l->arena, e->name, e->name_len) ||
        tm__buf_addch(&l->arena, '\0'))
        return TM_ENOMEM;
    x->type = e->type;
    x->size = e->size;
    x->mtime = e->mtime;
    x->mode = e->mode;
    x->uid = e->uid;
    x->gid = e->gid;
    x->other_fs = e->other_fs;
    x->dev = e->dev;
    x->ino = e->ino;
    x->nlink = e->nlink;
    x->xattrs = e->xattrs;
    x->meta_later = e->meta_later;
    l->n++;
    return 0;
}

void tm__listing_reset(struct tm__listing *l)
{
    tm__buf_reset(&l->arena);
    l->n = 0;
}

void tm__listing_release(struct tm__listing *l)
{
    tm__buf_release(&l->arena);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int tm__name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c)
        return c;
    return al < bl ? -1 : al > bl;
}

static int ent_cmp(const void *pa, const void *pb, void *arena)
{
    const struct tm__ent *a = pa, *b = pb;
    const char *base = arena;
    return tm__name_cmp(base + a->name_off, a->name_len, base + b->name_off,
                        b->name_len);
}

int tm__listing_sort(struct tm__listing *l)
{
    size_t i;
    if (l->n < 2)
        return 0; /* also: qsort_r on a NULL array is undefined */
    qsort_r(l->v, l->n, sizeof *l->v, ent_cmp, l->arena.buf);
    for (i = 1; i < l->n; i++)
        if (ent_cmp(&l->v[i - 1], &l->v[i], l->arena.buf) == 0)
            return TM_EBADNAME;
    return 0;
}

const struct tm__ent *tm__listing_find(const struct tm__listing *l,
                                       const char *name, size_t len)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct tm__ent *x = &l->v[mid];
        int c = tm__name_cmp(l->arena.buf + x->name_off, x->name_len, name, len);
        if (c == 0)
            return x;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
