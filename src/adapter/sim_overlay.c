/*
 * sim_overlay.c - what a copy wrote into a simulated storage.
 *
 * The generated world is read-only; folders, files and symlinks written
 * into it are recorded here, in a hash table of nodes keyed by their full
 * path, each linked to its parent so that a folder's written children can
 * be listed. A generated folder that only holds written children has a
 * "ghost" node: it links the children but overrides nothing.
 *
 * With a file (overlay=PATH), every change is also appended to it as one
 * checksummed record and replayed at open, so what a copy committed
 * survives a crash of the process; sync() makes it durable on the disk.
 * A torn last record (the process died inside write()) is cut off at open.
 *
 * Several processes may share one file (treemig worker: many copies into
 * one simulated destination): an append and the replay at open hold an
 * flock on it, so that neither sees the other's record half written, and
 * each call first applies what the others appended since (catch_up).
 *
 * File format: the 8-byte magic "TMOVL1\n\0", then records of
 *   u32 payload length, u32 XXH32 of the payload (seed 0), payload:
 *   u8 type, u8 kind, u16 0, u32 mode, i64 mtime, i64 size, u64 content id,
 *   u32 path length, u32 data length, path bytes, data bytes
 * all little-endian. A later record for a path replaces the earlier one.
 *
 * Threads: one mutex around the table and the file; callers copy what they
 * need out under it (tm__ovl_get, tm__ovl_children) and never hold it
 * while calling back into the engine.
 */
#include "adapter/sim.h"

#include "adapter/adapter.h"
#include "treemig.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MAGIC "TMOVL1\n"  /* 7 bytes + the NUL: 8 */
#define HEAD_LEN 40       /* fixed part of a payload */
#define REC_MAX (64u << 20) /* largest payload replayed */

struct node {
    char *path;          /* full path, NUL-terminated */
    size_t plen;         /* its length */
    struct node *hnext;  /* hash chain */
    struct node *parent; /* NULL for the root */
    struct node *child;  /* first written child */
    struct node *next;   /* next sibling */
    int ghost;           /* links children of a generated folder only */
    struct tm__ovl_ent e;/* what was written (not for a ghost) */
    unsigned char *data; /* literal bytes or symlink target */
};

struct tm__ovl {
    pthread_mutex_t mu;
    struct node **tab; /* hash buckets */
    size_t nbuckets;   /* a power of two */
    size_t count;      /* nodes */
    int fd;            /* the overlay file, -1: memory only */
    int dirty;         /* appended since the last sync */
    char *file;        /* its path, for messages */
    size_t seen;       /* the file's bytes applied to the table */
};

static uint64_t path_hash(const char *p, size_t n)
{
    return XXH3_64bits(p, n);
}

static struct node *find(struct tm__ovl *o, const char *p, size_t n)
{
    struct node *x = o->tab[path_hash(p, n) & (o->nbuckets - 1)];
    for (; x; x = x->hnext)
        if (x->plen == n && memcmp(x->path, p, n) == 0)
            return x;
    return NULL;
}

static int grow(struct tm__ovl *o)
{
    size_t nb = o->nbuckets * 2, i;
    struct node **t = calloc(nb, sizeof *t);
    if (!t)
        return TM_ENOMEM;
    for (i = 0; i < o->nbuckets; i++) {
        struct node *x = o->tab[i], *nx;
        for (; x; x = nx) {
            size_t h = path_hash(x->path, x->plen) & (nb - 1);
            nx = x->hnext;
            x->hnext = t[h];
            t[h] = x;
        }
    }
    free(o->tab);
    o->tab = t;
    o->nbuckets = nb;
    return 0;
}

/* The length of the parent path of p ("/a/b" -> 2, "/a" -> 1). */
static size_t parent_len(const char *p, size_t n)
{
    while (n > 1 && p[n - 1] != '/')
        n--;
    return n > 1 ? n - 1 : 1;
}

/* The node at p, created (as a ghost, with ghost parents) when missing. */
static struct node *node_get(struct tm__ovl *o, const char *p, size_t n)
{
    struct node *x = find(o, p, n), *par = NULL;
    size_t h;
    if (x)
        return x;
    if (!(n == 1 && p[0] == '/')) {
        par = node_get(o, p, parent_len(p, n));
        if (!par)
            return NULL;
    }
    if (o->count + 1 > o->nbuckets && grow(o))
        return NULL;
    x = calloc(1, sizeof *x);
    if (!x || !(x->path = malloc(n + 1))) {
        free(x);
        return NULL;
    }
    memcpy(x->path, p, n);
    x->path[n] = 0;
    x->plen = n;
    x->ghost = 1;
    x->parent = par;
    if (par) {
        x->next = par->child;
        par->child = x;
    }
    h = path_hash(p, n) & (o->nbuckets - 1);
    x->hnext = o->tab[h];
    o->tab[h] = x;
    o->count++;
    return x;
}

/* Sets what x holds; takes over nothing, copies data. */
static int node_set(struct node *x, const struct tm__ovl_ent *e,
                    const void *data, size_t dlen)
{
    unsigned char *d = NULL;
    if (dlen) {
        d = malloc(dlen);
        if (!d)
            return TM_ENOMEM;
        memcpy(d, data, dlen);
    }
    free(x->data);
    x->data = d;
    x->e = *e;
    x->e.data_len = dlen;
    x->ghost = 0;
    return 0;
}

/* A valid absolute path: "/" or "/name(/name)*" of valid names. */
static int path_ok(const char *p, size_t n)
{
    size_t i = 1;
    if (n == 0 || p[0] != '/')
        return 0;
    if (n == 1)
        return 1;
    while (i <= n) {
        const char *s = memchr(p + i, '/', n - i);
        size_t end = s ? (size_t)(s - p) : n;
        if (!tm__name_valid(p + i, end - i))
            return 0;
        i = end + 1;
    }
    return 1;
}

/* ------------------------------------------------------------ the file */

static void put32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *b)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

static uint64_t get64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

/* Appends one record; on a short write cuts the file back to where it was
 * so that the next record does not follow a torn one. */
static int append(struct tm__ovl *o, const char *path, size_t plen,
                  const struct tm__ovl_ent *e, const void *data, size_t dlen)
{
    size_t len = HEAD_LEN + plen + dlen;
    unsigned char *r;
    off_t at;
    int rc;
    if (o->fd < 0)
        return 0;
    if (len > REC_MAX)
        return TM_EFBIG;
    r = malloc(8 + len);
    if (!r)
        return TM_ENOMEM;
    memset(r, 0, 8 + HEAD_LEN);
    put32(r, (uint32_t)len);
    r[8] = (unsigned char)e->type;
    r[9] = (unsigned char)e->kind;
    put32(r + 12, e->mode);
    put64(r + 16, (uint64_t)e->mtime);
    put64(r + 24, (uint64_t)e->size);
    put64(r + 32, e->id);
    put32(r + 40, (uint32_t)plen);
    put32(r + 44, (uint32_t)dlen);
    memcpy(r + 8 + HEAD_LEN, path, plen);
    if (dlen)
        memcpy(r + 8 + HEAD_LEN + plen, data, dlen);
    put32(r + 4, XXH32(r + 8, len, 0));
    if (flock(o->fd, LOCK_EX) != 0) {
        free(r);
        return tm__from_errno(errno);
    }
    at = lseek(o->fd, 0, SEEK_END);
    rc = at < 0 ? tm__from_errno(errno) : tm__write_full(o->fd, r, 8 + len);
    if (rc && at >= 0 && ftruncate(o->fd, at) != 0)
        rc = TM_EIO;
    flock(o->fd, LOCK_UN);
    free(r);
    if (!rc)
        o->dirty = 1;
    return rc;
}

/* Applies one record to the table (replay and put). */
static int apply(struct tm__ovl *o, const char *path, size_t plen,
                 const struct tm__ovl_ent *e, const void *data, size_t dlen)
{
    struct node *x = node_get(o, path, plen);
    return x ? node_set(x, e, data, dlen) : TM_ENOMEM;
}

static int replay_locked(struct tm__ovl *o, char *err, size_t errlen);

static int replay(struct tm__ovl *o, char *err, size_t errlen)
{
    int rc;
    if (flock(o->fd, LOCK_EX) != 0)
        return tm__from_errno(errno);
    rc = replay_locked(o, err, errlen);
    flock(o->fd, LOCK_UN);
    return rc;
}

/* Applies the whole, intact records of b[*off, size) in order and moves
 * *off past them; stops at a torn or damaged record (what a crash mid-append
 * leaves) or at the first error apply() returns. */
static int apply_records(struct tm__ovl *o, const unsigned char *b,
                         size_t size, size_t *off)
{
    int rc = 0;
    while (!rc && *off + 8 + HEAD_LEN <= size) {
        const unsigned char *r = b + *off + 8;
        uint32_t len = get32(b + *off);
        struct tm__ovl_ent e;
        size_t plen, dlen;
        if (len < HEAD_LEN || len > REC_MAX || *off + 8 + len > size ||
            XXH32(r, len, 0) != get32(b + *off + 4))
            break;
        plen = get32(r + 32);
        dlen = get32(r + 36);
        if (HEAD_LEN + plen + dlen != len ||
            !path_ok((const char *)r + HEAD_LEN, plen))
            break;
        memset(&e, 0, sizeof e);
        e.type = r[0];
        e.kind = r[1];
        e.mode = get32(r + 4);
        e.mtime = (int64_t)get64(r + 8);
        e.size = (int64_t)get64(r + 16);
        e.id = get64(r + 24);
        rc = apply(o, (const char *)r + HEAD_LEN, plen, &e,
                   r + HEAD_LEN + plen, dlen);
        *off += 8 + len;
    }
    return rc;
}

/* Applies the records appended by other processes since o->seen (a
 * record still being written is left for the next call). o->mu held. */
static int catch_up(struct tm__ovl *o)
{
    struct stat st;
    unsigned char *b;
    size_t size, off = 0;
    ssize_t got;
    int rc = 0;

    if (o->fd < 0 || fstat(o->fd, &st) != 0 || (size_t)st.st_size <= o->seen)
        return 0;
    size = (size_t)st.st_size - o->seen;
    b = malloc(size);
    if (!b)
        return TM_ENOMEM;
    got = pread(o->fd, b, size, (off_t)o->seen);
    if (got < 0) {
        free(b);
        return tm__from_errno(errno);
    }
    size = (size_t)got;
    rc = apply_records(o, b, size, &off);
    free(b);
    o->seen += off;
    return rc;
}

static int replay_locked(struct tm__ovl *o, char *err, size_t errlen)
{
    struct stat st;
    unsigned char *b = NULL;
    size_t size, off = 8;
    ssize_t got;
    int rc = 0;

    if (fstat(o->fd, &st) != 0)
        return tm__from_errno(errno);
    size = (size_t)st.st_size;
    o->seen = 8;
    if (size == 0)
        return tm__write_full(o->fd, (const unsigned char *)MAGIC, 8);
    b = malloc(size);
    if (!b)
        return TM_ENOMEM;
    got = pread(o->fd, b, size, 0);
    if (got < 0 || (size_t)got != size) {
        free(b);
        return got < 0 ? tm__from_errno(errno) : TM_EIO;
    }
    if (size < 8 && memcmp(b, MAGIC, size) == 0) {
        free(b); /* the process died while creating it */
        if (ftruncate(o->fd, 0) != 0)
            return tm__from_errno(errno);
        return tm__write_full(o->fd, (const unsigned char *)MAGIC, 8);
    }
    if (size < 8 || memcmp(b, MAGIC, 8) != 0) {
        snprintf(err, errlen, "overlay file %s is not a treemig sim overlay",
                 o->file);
        free(b);
        return TM_ECORRUPT;
    }
    rc = apply_records(o, b, size, &off);
    free(b);
    /* A torn or damaged tail: what follows the last good record goes. */
    if (!rc && off < size && ftruncate(o->fd, (off_t)off) != 0)
        rc = tm__from_errno(errno);
    o->seen = off;
    return rc;
}

/* ------------------------------------------------------------ API */

int tm__ovl_open(const char *file, struct tm__ovl **out, char *err,
                 size_t errlen)
{
    struct tm__ovl *o = calloc(1, sizeof *o);
    int rc = 0;
    *out = NULL;
    if (!o)
        return TM_ENOMEM;
    o->fd = -1;
    o->nbuckets = 64;
    o->tab = calloc(o->nbuckets, sizeof *o->tab);
    if (!o->tab || pthread_mutex_init(&o->mu, NULL) != 0) {
        free(o->tab);
        free(o);
        return TM_ENOMEM;
    }
    if (file) {
        o->file = strdup(file);
        o->fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC | O_APPEND, 0600);
        if (!o->file)
            rc = TM_ENOMEM;
        else if (o->fd < 0) {
            rc = tm__from_errno(errno);
            snprintf(err, errlen, "cannot open the overlay file %s: %s", file,
                     tm_strerror(rc));
        } else {
            rc = replay(o, err, errlen);
            if (rc && rc != TM_ECORRUPT)
                snprintf(err, errlen, "cannot read the overlay file %s: %s",
                         file, tm_strerror(rc));
        }
    }
    if (rc) {
        tm__ovl_close(o);
        return rc;
    }
    *out = o;
    return 0;
}

void tm__ovl_close(struct tm__ovl *o)
{
    size_t i;
    if (!o)
        return;
    for (i = 0; i < o->nbuckets; i++) {
        struct node *x = o->tab[i], *nx;
        for (; x; x = nx) {
            nx = x->hnext;
            free(x->path);
            free(x->data);
            free(x);
        }
    }
    if (o->fd >= 0)
        close(o->fd);
    free(o->tab);
    free(o->file);
    pthread_mutex_destroy(&o->mu);
    free(o);
}

int tm__ovl_get(struct tm__ovl *o, const char *path, struct tm__ovl_ent *e,
                struct tm__buf *data)
{
    struct node *x;
    int found = 0, rc = 0;
    pthread_mutex_lock(&o->mu);
    rc = catch_up(o);
    x = find(o, path, strlen(path));
    if (!rc && x && !x->ghost) {
        found = 1;
        *e = x->e;
        if (data) {
            tm__buf_reset(data);
            rc = tm__buf_add(data, x->data ? (const char *)x->data : "",
                             x->e.data_len);
        }
    }
    pthread_mutex_unlock(&o->mu);
    return rc ? rc : found;
}

int tm__ovl_has_children(struct tm__ovl *o, const char *path)
{
    struct node *x;
    int r;
    pthread_mutex_lock(&o->mu);
    catch_up(o); /* on failure: what this process knows */
    x = find(o, path, strlen(path));
    r = x && x->child;
    pthread_mutex_unlock(&o->mu);
    return r;
}

static int ent_cmp(const void *a, const void *b)
{
    const struct tm__ovl_child *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

int tm__ovl_children(struct tm__ovl *o, const char *path,
                     struct tm__ovl_list *out)
{
    struct node *x, *c;
    size_t n = 0, names = 0, i = 0, at = 0;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&o->mu);
    if (catch_up(o) == TM_ENOMEM) {
        pthread_mutex_unlock(&o->mu);
        return TM_ENOMEM;
    }
    x = find(o, path, strlen(path));
    for (c = x ? x->child : NULL; c; c = c->next) {
        n++;
        names += c->plen - parent_len(c->path, c->plen);
    }
    if (n) {
        out->v = malloc(n * sizeof *out->v);
        out->names = malloc(names + 1);
        if (!out->v || !out->names) {
            pthread_mutex_unlock(&o->mu);
            tm__ovl_list_release(out);
            return TM_ENOMEM;
        }
    }
    for (c = x ? x->child : NULL; c; c = c->next, i++) {
        size_t pl = parent_len(c->path, c->plen);
        size_t skip = pl == 1 ? 1 : pl + 1;
        size_t nl = c->plen - skip;
        memcpy(out->names + at, c->path + skip, nl);
        out->v[i].name_len = nl;
        out->v[i].name_off = at;
        out->v[i].ghost = c->ghost;
        out->v[i].e = c->e;
        at += nl;
    }
    pthread_mutex_unlock(&o->mu);
    for (i = 0; i < n; i++)
        out->v[i].name = out->names + out->v[i].name_off;
    if (n)
        qsort(out->v, n, sizeof *out->v, ent_cmp);
    out->n = n;
    return 0;
}

const struct tm__ovl_child *tm__ovl_list_find(const struct tm__ovl_list *l,
                                              const char *name, size_t len)
{
    struct tm__ovl_child key;
    key.name = name;
    key.name_len = len;
    return l->n ? bsearch(&key, l->v, l->n, sizeof *l->v, ent_cmp) : NULL;
}

void tm__ovl_list_release(struct tm__ovl_list *l)
{
    free(l->v);
    free(l->names);
    memset(l, 0, sizeof *l);
}

int tm__ovl_put(struct tm__ovl *o, const char *path,
                const struct tm__ovl_ent *e, const void *data, size_t dlen)
{
    size_t plen = strlen(path);
    int rc;
    if (!path_ok(path, plen))
        return TM_EINVAL;
    pthread_mutex_lock(&o->mu);
    rc = catch_up(o);
    if (!rc)
        rc = append(o, path, plen, e, data, dlen);
    if (!rc)
        rc = apply(o, path, plen, e, data, dlen);
    pthread_mutex_unlock(&o->mu);
    return rc;
}

int tm__ovl_sync(struct tm__ovl *o)
{
    int rc = 0;
    pthread_mutex_lock(&o->mu);
    if (o->fd >= 0 && o->dirty) {
        if (fdatasync(o->fd) != 0)
            rc = tm__from_errno(errno);
        else
            o->dirty = 0;
    }
    pthread_mutex_unlock(&o->mu);
    return rc;
}

size_t tm__ovl_count(struct tm__ovl *o)
{
    size_t n;
    pthread_mutex_lock(&o->mu);
    n = o->count;
    pthread_mutex_unlock(&o->mu);
    return n;
}
