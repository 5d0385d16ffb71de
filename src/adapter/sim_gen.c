/*
 * sim_gen.c - the simulated storage's generator and its ground truth.
 *
 * Parses a "sim:" spec, generates the children of any folder of a world on
 * demand (nothing is stored), resolves paths back to folders, and walks a
 * whole source/destination pair to compute what a discovery must find
 * (tm_sim_stats). Every function is pure apart from the spec's allocation:
 * any thread may call them at once. The walk recurses at most depth=
 * (<= 64) levels and keeps O(depth) state, so a pair of 10^7 nodes costs
 * seconds and no memory. docs/sim.md describes the model.
 */
#include "adapter/sim.h"

#include "adapter/adapter.h"
#include "treemig.h"
#include "util/buf.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Hash domains: one per kind of decision, so that no two decisions share a
 * hash. */
enum {
    H_ROOT = 1, H_DIR, H_FILE, H_EXTRA, H_NFOLD, H_NFILE, H_NEXTRA,
    H_SIZE, H_EMPTY, H_MTIME, H_DECOR, H_KEEP, H_CONFLICT, H_DELTA,
    H_TYPE, H_EXTRA_TYPE, H_PERM, H_WORLD, H_DST, H_CONTENT,
};

#define MTIME_BASE 1500000000000000000LL /* 2017-07-14, ns */
#define MTIME_SPAN 157680000000000000LL  /* five years, ns */
#define DELTA_SPAN 86400000000000LL      /* one day, ns */

/* splitmix64's finaliser: a bijection with full avalanche. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t tm__sim_hash(uint64_t a, uint64_t b)
{
    return mix64(a ^ mix64(b ^ 0x5851f42d4c957f2dULL));
}

double tm__sim_unit(uint64_t h)
{
    return (double)(h >> 11) * 0x1p-53;
}

/* ------------------------------------------------------------ the shape */

/* log and exp of our own, without libm: a libm upgrade must not change a
 * world, and the library does not link libm. Accurate to ~1e-15. */
static double sim_log(double x)
{
    union { double d; uint64_t u; } v = { x };
    int e = (int)((v.u >> 52) & 0x7ff) - 1023;
    double m, t, t2, sum = 0, term;
    int k;
    v.u = (v.u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL; /* [1, 2) */
    m = v.d;
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e++;
    }
    t = (m - 1) / (m + 1);
    t2 = t * t;
    term = t;
    for (k = 1; k < 40; k += 2) {
        sum += term / k;
        term *= t2;
    }
    return 2 * sum + e * 0.6931471805599453;
}

static double sim_exp(double y)
{
    union { double d; uint64_t u; } s;
    double r, sum = 1, term = 1;
    int k, i;
    if (y < -700)
        return 0;
    if (y > 700)
        y = 700;
    k = (int)(y / 0.6931471805599453 + (y < 0 ? -0.5 : 0.5));
    r = y - k * 0.6931471805599453;
    for (i = 1; i < 25; i++) {
        term *= r / i;
        sum += term;
    }
    s.u = (uint64_t)(k + 1023) << 52;
    return sum * s.d;
}

/* A count with mean `mean`, heavy-tailed: mean times a Lomax variable of
 * shape tail and mean 1 (most draws small, a few very large), rounded
 * stochastically so that the mean is kept, capped at cap. */
static int64_t heavy(uint64_t h, double mean, double tail, int64_t cap)
{
    double u = ((double)(h >> 11) + 1.0) * 0x1p-53; /* (0, 1] */
    double x = (tail - 1.0) * (sim_exp(-sim_log(u) / tail) - 1.0);
    double v = mean * x;
    int64_t n;
    if (!(v < (double)cap))
        return cap;
    n = (int64_t)v; /* v >= 0: floor */
    if (tm__sim_unit(mix64(h)) < v - (double)n)
        n++;
    return n < cap ? n : cap;
}

static double level_mean(double mean, double decay, int depth)
{
    while (depth-- > 0)
        mean *= decay;
    return mean;
}

/* The root's counts are the means rounded, so that the size of a world is
 * not decided by one draw. */
static int64_t exact(double mean, int64_t cap)
{
    int64_t n = (int64_t)(mean + 0.5);
    return n < cap ? n : cap;
}

static int64_t n_folders(const struct tm__sim_spec *sp, uint64_t key, int depth)
{
    if (depth + 1 >= sp->depth)
        return 0;
    if (depth == 0)
        return sp->root_folders >= 0 ? sp->root_folders
                                     : exact(sp->folders, sp->max_folders);
    return heavy(tm__sim_hash(key, H_NFOLD),
                 level_mean(sp->folders, sp->decay, depth), sp->tail,
                 sp->max_folders);
}

static int64_t n_files(const struct tm__sim_spec *sp, uint64_t key, int depth)
{
    if (depth + 1 > sp->depth)
        return 0;
    if (depth == 0)
        return sp->root_files >= 0 ? sp->root_files : exact(sp->files, sp->max_files);
    return heavy(tm__sim_hash(key, H_NFILE),
                 level_mean(sp->files, sp->decay, depth), sp->tail,
                 sp->max_files);
}

/* Extras of a destination folder whose source twin has n children. */
static int64_t n_extras(const struct tm__sim_spec *sp, uint64_t key, int64_t n)
{
    double v = sp->extra * (double)(n + 1);
    int64_t k = (int64_t)v;
    if (tm__sim_unit(tm__sim_hash(key ^ sp->dsalt, H_NEXTRA)) < v - (double)k)
        k++;
    return k;
}

static int64_t file_size(const struct tm__sim_spec *sp, uint64_t key)
{
    if (tm__sim_unit(tm__sim_hash(key, H_EMPTY)) < sp->empty)
        return 0;
    return heavy(tm__sim_hash(key, H_SIZE), sp->size, sp->size_tail,
                 sp->max_size);
}

static int64_t node_mtime(uint64_t key)
{
    return MTIME_BASE + (int64_t)(tm__sim_hash(key, H_MTIME) % MTIME_SPAN);
}

/* ------------------------------------------------------------ names */

/* Decorations of names=mixed: none starts with a digit (the index is
 * parsed back), none holds '/', ',', ':' or '='. Not all are UTF-8. */
static const char *const decor[] = {
    "", "", "", "", "", "", " copy", ".txt", "-\xc3\xa9t\xc3\xa9", " (old)",
    "_\xe6\x97\xa5\xe6\x9c\xac", "~", "#tag", " \xff raw", ".tar.gz",
    " a  b ", "-", "\xe2\x80\x8b", "'q'", "[x]",
};

static void make_name(const struct tm__sim_spec *sp, struct tm__sim_ent *e,
                      char tag, int64_t index, uint64_t key)
{
    const char *d = "";
    int n;
    if (sp->mixed_names)
        d = decor[tm__sim_hash(key, H_DECOR) % (sizeof decor / sizeof *decor)];
    n = snprintf(e->name, sizeof e->name, "%c%lld%s", tag, (long long)index, d);
    e->name_len = n < 0 ? 0 : (size_t)n;
}

/* ------------------------------------------------------------ children */

/* A generated node of the plain shape: name, type, size, mtime, mode and
 * how to list it (a folder), all drawn from key. */
static void make_node(const struct tm__sim_spec *sp, struct tm__sim_ent *e,
                      char tag, int64_t index, uint64_t key, int is_dir, int depth)
{
    make_name(sp, e, tag, index, key);
    e->type = is_dir ? TM_T_FOLDER : TM_T_FILE;
    e->size = is_dir ? 0 : file_size(sp, key);
    e->mtime = node_mtime(key);
    e->mode = is_dir ? 0755 : 0644;
    e->sub.key = key;
    e->sub.depth = depth;
    e->sub.gen = TM_SIM_PLAIN;
}

static void plain_child(const struct tm__sim_spec *sp,
                        const struct tm__sim_folder *f, int64_t nf, int64_t i,
                        struct tm__sim_ent *e)
{
    int is_dir = i < nf;
    int64_t idx = is_dir ? i : i - nf;
    uint64_t key = tm__sim_hash(tm__sim_hash(f->key, is_dir ? H_DIR : H_FILE),
                                (uint64_t)idx);
    make_node(sp, e, is_dir ? 'd' : 'f', idx, key, is_dir, f->depth + 1);
    e->fate = TM_SIM_SAME;
}

/* Turns src (a source child) into its destination twin; returns 0 when
 * the node is not kept. dst may be src. */
static int derive(const struct tm__sim_spec *sp, const struct tm__sim_ent *src,
                  struct tm__sim_ent *dst)
{
    uint64_t k = src->sub.key ^ sp->dsalt;
    double v;
    if (dst != src)
        *dst = *src;
    if (!(tm__sim_unit(tm__sim_hash(k, H_KEEP)) < sp->keep)) {
        dst->fate = TM_SIM_GONE;
        return 0;
    }
    v = tm__sim_unit(tm__sim_hash(k, H_CONFLICT));
    dst->fate = TM_SIM_SAME;
    if (src->type == TM_T_FOLDER) {
        dst->sub.gen = TM_SIM_TWIN;
        if (v < sp->ctype) {
            uint64_t t = tm__sim_hash(k, H_TYPE);
            dst->fate = TM_SIM_TYPE;
            dst->type = TM_T_FILE;
            dst->size = file_size(sp, t);
            dst->mtime = node_mtime(t);
            dst->mode = 0644;
            dst->sub.gen = TM_SIM_PLAIN;
        } else if (v < sp->ctype + sp->cmode) {
            dst->fate = TM_SIM_MODE;
            dst->mode = 0700;
        }
        return 1;
    }
    if (v < sp->ctype) {
        dst->fate = TM_SIM_TYPE;
        dst->type = TM_T_FOLDER;
        dst->size = 0;
        dst->mode = 0755;
        dst->sub.key = tm__sim_hash(k, H_TYPE);
        dst->sub.gen = TM_SIM_PLAIN;
    } else if (v < sp->ctype + sp->csize) {
        dst->fate = TM_SIM_SIZE;
        dst->size += 1 + (int64_t)(tm__sim_hash(k, H_DELTA) % 4096);
    } else if (v < sp->ctype + sp->csize + sp->cmtime) {
        uint64_t h = tm__sim_hash(k, H_DELTA);
        int64_t d = 1 + (int64_t)((h >> 1) % DELTA_SPAN);
        dst->fate = (h & 1) ? TM_SIM_NEWER : TM_SIM_MTIME;
        dst->mtime += (h & 1) ? d : -d;
    } else if (v < sp->ctype + sp->csize + sp->cmtime + sp->cmode) {
        dst->fate = TM_SIM_MODE;
        dst->mode = 0600;
    }
    return 1;
}

static void extra_child(const struct tm__sim_spec *sp,
                        const struct tm__sim_folder *f, int64_t k,
                        struct tm__sim_ent *e)
{
    uint64_t key = tm__sim_hash(tm__sim_hash(f->key ^ sp->dsalt, H_EXTRA),
                                (uint64_t)k);
    int is_dir = f->depth + 1 < sp->depth &&
                 tm__sim_unit(tm__sim_hash(key, H_EXTRA_TYPE)) < sp->extra_folders;
    make_node(sp, e, 'x', k, key, is_dir, f->depth + 1);
    e->fate = TM_SIM_EXTRA;
}

void tm__sim_dir_init(const struct tm__sim_spec *sp,
                      const struct tm__sim_folder *f, struct tm__sim_dir *d)
{
    d->f = *f;
    d->nf = n_folders(sp, f->key, f->depth);
    d->n = d->nf + n_files(sp, f->key, f->depth);
    d->slots = d->n;
    if (f->gen == TM_SIM_TWIN && f->depth < sp->depth) /* none below the
                                                          deepest level */
        d->slots += n_extras(sp, f->key, d->n);
}

int tm__sim_child(const struct tm__sim_spec *sp, const struct tm__sim_dir *d,
                  int64_t i, struct tm__sim_ent *e)
{
    if (i < d->n) {
        plain_child(sp, &d->f, d->nf, i, e);
        return d->f.gen == TM_SIM_TWIN ? derive(sp, e, e) : 1;
    }
    extra_child(sp, &d->f, i - d->n, e);
    return 1;
}

uint64_t tm__sim_content_id(const struct tm__sim_ent *e)
{
    return tm__sim_hash(e->sub.key, H_CONTENT);
}

/* Bytes 0..7 are the id (little-endian), so that a writer can tell which
 * stream it is given; word w >= 1 (bytes 8w .. 8w+7) is a hash of (id, w). */
void tm__sim_content(uint64_t id, int64_t off, unsigned char *buf, size_t len)
{
    uint64_t w = (uint64_t)off / 8;
    unsigned skip = (unsigned)((uint64_t)off % 8);
    while (len) {
        uint64_t v = w == 0 ? id : mix64(id + w * 0x9e3779b97f4a7c15ULL);
        unsigned i;
        for (i = skip; i < 8 && len; i++, len--)
            *buf++ = (unsigned char)(v >> (8 * i));
        skip = 0;
        w++;
    }
}

int tm__sim_derive(const struct tm__sim_spec *sp, const struct tm__sim_ent *src,
                   struct tm__sim_ent *dst)
{
    return derive(sp, src, dst);
}

/* ------------------------------------------------------------ paths */

struct tm__sim_folder tm__sim_root(const struct tm__sim_spec *sp)
{
    struct tm__sim_folder f;
    f.key = tm__sim_hash(sp->seed, H_ROOT);
    f.depth = 0;
    f.gen = sp->world == TM_SIM_DST ? TM_SIM_TWIN : TM_SIM_PLAIN;
    return f;
}

/* Parses "<tag><index>..." into tag and index; -1 when malformed. */
static int parse_comp(const char *c, size_t len, char *tag, int64_t *index)
{
    size_t i = 1;
    int64_t v = 0;
    if (len < 2 || c[1] < '0' || c[1] > '9')
        return -1;
    *tag = c[0];
    while (i < len && c[i] >= '0' && c[i] <= '9' && i < 19)
        v = v * 10 + (c[i++] - '0');
    *index = v;
    return 0;
}

/* The slot a tag and index name in folder d, or -1. */
static int64_t comp_slot(const struct tm__sim_dir *d, char tag, int64_t idx)
{
    if (tag == 'd' && idx < d->nf)
        return idx;
    if (tag == 'f' && idx < d->n - d->nf)
        return d->nf + idx;
    if (tag == 'x' && idx < d->slots - d->n)
        return d->n + idx;
    return -1;
}

/* The child of folder f named c (len bytes), or an error. */
static int lookup_child(const struct tm__sim_spec *sp,
                        const struct tm__sim_folder *f, const char *c,
                        size_t len, struct tm__sim_ent *e)
{
    struct tm__sim_dir d;
    int64_t idx, slot;
    char tag;
    tm__sim_dir_init(sp, f, &d);
    if (parse_comp(c, len, &tag, &idx) || (slot = comp_slot(&d, tag, idx)) < 0 ||
        !tm__sim_child(sp, &d, slot, e) || e->name_len != len ||
        memcmp(e->name, c, len) != 0)
        return TM_ENOENT;
    return 0;
}

int tm__sim_lookup(const struct tm__sim_spec *sp, const char *path,
                   struct tm__sim_ent *e)
{
    const char *p = path;
    memset(e, 0, sizeof *e);
    e->type = TM_T_FOLDER;
    e->mode = 0755;
    e->sub = tm__sim_root(sp);
    e->mtime = node_mtime(e->sub.key);
    e->fate = TM_SIM_SAME;
    if (!p || *p != '/')
        return TM_ENOENT;
    while (*p == '/' && p[1]) {
        const char *c = p + 1, *end = strchr(c, '/');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        struct tm__sim_folder f = e->sub;
        int rc;
        if (e->type != TM_T_FOLDER)
            return TM_ENOTDIR;
        rc = lookup_child(sp, &f, c, len, e);
        if (rc)
            return rc;
        p = c + len;
    }
    if (*p == '/' && p != path)
        return e->type == TM_T_FOLDER ? TM_ENOENT : TM_ENOTDIR;
    return 0;
}

int tm__sim_resolve(const struct tm__sim_spec *sp, const char *path,
                    struct tm__sim_folder *out)
{
    struct tm__sim_ent e;
    int rc = tm__sim_lookup(sp, path, &e);
    if (rc)
        return rc;
    if (e.type != TM_T_FOLDER)
        return TM_ENOTDIR;
    *out = e.sub;
    return 0;
}

int tm__sim_prefix_match(const struct tm__sim_prefixes *l, const char *path,
                         size_t len)
{
    int i;
    for (i = 0; i < l->n; i++) {
        size_t n = l->len[i];
        if (n == 1 || (len >= n && memcmp(path, l->p[i], n) == 0 &&
                       (len == n || path[n] == '/')))
            return 1;
    }
    return 0;
}

int tm__sim_permanent(const struct tm__sim_spec *sp, double rate, int world,
                      const struct tm__sim_folder *f)
{
    uint64_t salt = tm__sim_hash(sp->seed, H_WORLD + (uint64_t)world);
    if (rate <= 0 || f->depth == 0)
        return 0;
    return tm__sim_unit(tm__sim_hash(f->key ^ salt, H_PERM)) < rate;
}

/* ------------------------------------------------------------ the spec */

enum kind { K_U64, K_INT, K_SIZE, K_DBL, K_WORLD, K_NAMES, K_PREFIX, K_FILE };

/* One parameter of a spec. */
struct param {
    const char *name; /* key */
    int kind;         /* enum kind */
    size_t off;       /* field in struct tm__sim_spec */
    double lo, hi;    /* range, inclusive */
    int lo_open;      /* 1: lo itself is out of range */
};

#define F(x) offsetof(struct tm__sim_spec, x)
static const struct param params[] = {
    { "seed", K_U64, F(seed), 0, 0, 0 },
    { "world", K_WORLD, F(world), 0, 0, 0 },
    { "depth", K_INT, F(depth), 0, TM_SIM_MAX_DEPTH, 0 },
    { "folders", K_DBL, F(folders), 0, 1e6, 0 },
    { "files", K_DBL, F(files), 0, 1e6, 0 },
    { "decay", K_DBL, F(decay), 0, 2, 0 },
    { "tail", K_DBL, F(tail), 1, 100, 1 },
    { "root_folders", K_INT, F(root_folders), 0, 1e7, 0 },
    { "root_files", K_INT, F(root_files), 0, 1e7, 0 },
    { "max_folders", K_INT, F(max_folders), 0, 1e7, 0 },
    { "max_files", K_INT, F(max_files), 0, 1e7, 0 },
    { "size", K_SIZE, F(size), 0, 0x1p40, 0 },
    { "size_tail", K_DBL, F(size_tail), 1, 100, 1 },
    { "max_size", K_SIZE, F(max_size), 0, 0x1p50, 0 },
    { "empty", K_DBL, F(empty), 0, 1, 0 },
    { "names", K_NAMES, F(mixed_names), 0, 0, 0 },
    { "dst_seed", K_U64, F(dst_seed), 0, 0, 0 },
    { "keep", K_DBL, F(keep), 0, 1, 0 },
    { "extra", K_DBL, F(extra), 0, 10, 0 },
    { "extra_folders", K_DBL, F(extra_folders), 0, 1, 0 },
    { "csize", K_DBL, F(csize), 0, 1, 0 },
    { "cmtime", K_DBL, F(cmtime), 0, 1, 0 },
    { "ctype", K_DBL, F(ctype), 0, 1, 0 },
    { "cmode", K_DBL, F(cmode), 0, 1, 0 },
    { "transient", K_DBL, F(transient), 0, 1, 0 },
    { "permanent", K_DBL, F(permanent), 0, 1, 0 },
    { "deny", K_PREFIX, F(deny), 0, 0, 0 },
    { "src_permanent", K_DBL, F(src_permanent), 0, 1, 0 },
    { "src_deny", K_PREFIX, F(src_deny), 0, 0, 0 },
    { "badname", K_PREFIX, F(badname), 0, 0, 0 },
    { "src_badname", K_PREFIX, F(src_badname), 0, 0, 0 },
    { "overlay", K_FILE, F(overlay), 0, 0, 0 },
    { "latency", K_DBL, F(latency_ms), 0, 600000, 0 },
    { "jitter", K_DBL, F(jitter_ms), 0, 600000, 0 },
    { "page", K_INT, F(page), 1, 1e7, 0 },
    { "throttle", K_INT, F(throttle), 0, 1e7, 0 },
    { "burst", K_INT, F(burst), 1, 1e7, 0 },
    { "crash_after", K_INT, F(crash_after), 0, 0x1p53, 0 },
};
#undef F
#define N_PARAMS (sizeof params / sizeof *params)

static void set_defaults(struct tm__sim_spec *sp)
{
    memset(sp, 0, sizeof *sp);
    sp->seed = 1;
    sp->depth = 5;
    sp->folders = 6;
    sp->files = 8;
    sp->decay = 0.8;
    sp->tail = 1.5;
    sp->root_folders = -1; /* folders rounded */
    sp->root_files = -1;   /* files rounded */
    sp->max_folders = 1000;
    sp->max_files = 100000;
    sp->size = 65536;
    sp->size_tail = 1.5;
    sp->max_size = 1LL << 30;
    sp->empty = 0.02;
    sp->keep = 0.9;
    sp->extra = 0.02;
    sp->extra_folders = 0.2;
    sp->csize = 0.01;
    sp->cmtime = 0.01;
    sp->ctype = 0.002;
    sp->page = 1000;
    sp->burst = 0; /* 0: throttle/10, at least 1 */
}

static int bad(char *err, size_t errlen, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes "sim spec: KEY: message" into err; returns TM_EBADSPEC. */
static int bad(char *err, size_t errlen, const char *key, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(err, errlen, "sim spec: %s: ", key);
    if (n >= 0 && (size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return TM_EBADSPEC;
}

/* Digits only, then an optional binary suffix when sized. -1: not a
 * number, -2: too large. */
static int parse_uint(const char *v, int sized, uint64_t *out)
{
    static const char sfx[] = "kmgt";
    char *end;
    const char *s;
    uint64_t x;
    if (*v < '0' || *v > '9')
        return -1;
    errno = 0;
    x = strtoull(v, &end, 10);
    if (errno == ERANGE)
        return -2;
    if (sized && *end && end[1] == '\0' && (s = strchr(sfx, *end | 0x20))) {
        int shift = 10 * (int)(s - sfx + 1);
        if (x > (UINT64_MAX >> shift))
            return -2;
        x <<= shift;
        end++;
    }
    if (*end)
        return -1;
    *out = x;
    return 0;
}

static int parse_prefixes(struct tm__sim_prefixes *l, const char *key,
                          const char *v, char *err, size_t errlen)
{
    if (!*v)
        return bad(err, errlen, key, "empty: give a path like /d0/d3");
    while (*v) {
        const char *end = strchr(v, ':');
        size_t n = end ? (size_t)(end - v) : strlen(v);
        if (n == 0 || v[0] != '/' || (n > 1 && v[n - 1] == '/') ||
            memmem(v, n, "//", 2) || memmem(v, n, "/./", 3) ||
            memmem(v, n, "/../", 4) || (n >= 2 && !memcmp(v + n - 2, "/.", 2)) ||
            (n >= 3 && !memcmp(v + n - 3, "/..", 3)))
            return bad(err, errlen, key, "'%s' is not a list of absolute "
                       "paths like /d0/d3 separated by ':'", v);
        if (l->n == TM_SIM_MAX_PREFIX)
            return bad(err, errlen, key, "more than %d paths", TM_SIM_MAX_PREFIX);
        l->p[l->n] = strndup(v, n);
        if (!l->p[l->n])
            return TM_ENOMEM;
        l->len[l->n++] = n;
        v += n + (end ? 1 : 0);
        if (end && !*v)
            return bad(err, errlen, key, "a ':' ends the list");
    }
    return 0;
}

static int parse_double(const char *v, double *out)
{
    char *end;
    if (!*v || (*v != '.' && *v != '-' && (*v < '0' || *v > '9')))
        return -1;
    errno = 0;
    *out = strtod(v, &end);
    if (*end || errno == ERANGE || !isfinite(*out))
        return -1;
    return 0;
}

/* Stores a checked number into its field, whatever the field's type. */
static int store_number(const struct tm__sim_spec *sp, const struct param *p,
                        void *field, double d, uint64_t u)
{
    int64_t n = (int64_t)u;
    (void)sp;
    if (p->kind == K_DBL || p->off == offsetof(struct tm__sim_spec, size)) {
        memcpy(field, &d, sizeof d);
    } else if (p->off == offsetof(struct tm__sim_spec, depth)) {
        int i = (int)u; /* only depth's range (0 to 64) gets here as an int */
        memcpy(field, &i, sizeof i);
    } else {
        memcpy(field, &n, sizeof n);
    }
    return 0;
}

static int set_param(struct tm__sim_spec *sp, const struct param *p,
                     const char *v, char *err, size_t errlen)
{
    void *field = (char *)sp + p->off;
    uint64_t u = 0;
    double d = 0;
    int rc;
    switch (p->kind) {
    case K_WORLD:
    case K_NAMES: {
        const char *a = p->kind == K_WORLD ? "src" : "simple";
        const char *b = p->kind == K_WORLD ? "dst" : "mixed";
        if (strcmp(v, a) && strcmp(v, b))
            return bad(err, errlen, p->name, p->kind == K_WORLD
                       ? "'%s' is neither src nor dst" : "'%s' is neither simple "
                       "nor mixed", v);
        rc = strcmp(v, b) == 0;
        memcpy(field, &rc, sizeof rc);
        return 0;
    }
    case K_PREFIX:
        return parse_prefixes((struct tm__sim_prefixes *)field, p->name, v, err,
                              errlen);
    case K_FILE: {
        char *dup;
        if (v[0] != '/' || v[1] == '\0' || v[strlen(v) - 1] == '/')
            return bad(err, errlen, p->name, "'%s' is not an absolute path of "
                       "a file", v);
        if (!(dup = strdup(v)))
            return TM_ENOMEM;
        memcpy(&sp->overlay, &dup, sizeof dup);
        return 0;
    }
    case K_U64:
    case K_INT:
    case K_SIZE:
        rc = parse_uint(v, p->kind == K_SIZE, &u);
        if (rc == -1)
            return bad(err, errlen, p->name, p->kind == K_SIZE
                       ? "'%s' is not a whole number of bytes (suffixes k, m, g, "
                       "t allowed)" : "'%s' is not a whole number", v);
        if (p->kind == K_U64) {
            if (rc == -2)
                return bad(err, errlen, p->name, "'%s' does not fit in 64 bits", v);
            memcpy(field, &u, sizeof u);
            return 0;
        }
        d = rc == -2 ? 1e30 : (double)u;
        break;
    default:
        if (parse_double(v, &d))
            return bad(err, errlen, p->name, "'%s' is not a number", v);
    }
    /* whole numbers are compared whole: 2^53 + 1 is not 2^53 */
    if (d < p->lo || d > p->hi || (p->lo_open && d <= p->lo) ||
        (p->kind != K_DBL && u > (uint64_t)p->hi)) {
        return bad(err, errlen, p->name, "'%s' is out of range (%s%g to %g)", v,
                   p->lo_open ? "above " : "", p->lo, p->hi);
    }
    return store_number(sp, p, field, d, u);
}

/* Parses one "key=value" of len bytes. */
static int parse_item(struct tm__sim_spec *sp, const char *item, size_t len,
                      uint64_t *seen, char *err, size_t errlen)
{
    const char *eq = memchr(item, '=', len);
    char key[32], val[4096];
    size_t kl, i;
    if (len == 0) {
        snprintf(err, errlen, "sim spec: empty parameter (two commas in a row, "
                 "or a comma at the end)");
        return TM_EBADSPEC;
    }
    kl = eq ? (size_t)(eq - item) : len;
    if (!eq || kl == 0 || kl >= sizeof key || len - kl - 1 >= sizeof val) {
        snprintf(err, errlen, "sim spec: '%.*s' is not key=value", (int)len, item);
        return TM_EBADSPEC;
    }
    memcpy(key, item, kl);
    key[kl] = '\0';
    memcpy(val, eq + 1, len - kl - 1);
    val[len - kl - 1] = '\0';
    for (i = 0; i < N_PARAMS; i++)
        if (strcmp(params[i].name, key) == 0)
            break;
    if (i == N_PARAMS) {
        snprintf(err, errlen, "sim spec: unknown parameter '%s' (docs/sim.md "
                 "lists them)", key);
        return TM_EBADSPEC;
    }
    if (params[i].kind != K_PREFIX && (*seen & (1ULL << i))) {
        snprintf(err, errlen, "sim spec: %s: given twice", key);
        return TM_EBADSPEC;
    }
    *seen |= 1ULL << i;
    return set_param(sp, &params[i], val, err, errlen);
}

/* Checks that hold between parameters. */
static int check_spec(struct tm__sim_spec *sp, char *err, size_t errlen)
{
    double c = sp->csize + sp->cmtime + sp->ctype + sp->cmode;
    if (c > 1.0 + 1e-12) {
        snprintf(err, errlen, "sim spec: csize+cmtime+ctype+cmode: %g is more "
                 "than 1", c);
        return TM_EBADSPEC;
    }
    if (sp->world == TM_SIM_SRC &&
        (sp->src_permanent > 0 || sp->src_deny.n || sp->src_badname.n)) {
        snprintf(err, errlen, "sim spec: %s: only for world=dst (a source spec "
                 "says permanent=, deny= or badname=)", sp->src_deny.n ? "src_deny"
                 : sp->src_badname.n ? "src_badname" : "src_permanent");
        return TM_EBADSPEC;
    }
    if (sp->burst == 0)
        sp->burst = sp->throttle / 10 > 1 ? sp->throttle / 10 : 1;
    sp->dsalt = tm__sim_hash(tm__sim_hash(sp->seed, H_DST), sp->dst_seed);
    return 0;
}

int tm__sim_spec_parse(struct tm__sim_spec *sp, const char *params_text,
                       char *err, size_t errlen)
{
    const char *p = params_text;
    uint64_t seen = 0;
    int rc;
    set_defaults(sp);
    if (errlen)
        err[0] = '\0';
    if (!p) {
        snprintf(err, errlen, "sim spec: missing");
        return TM_EBADSPEC;
    }
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        rc = parse_item(sp, p, n, &seen, err, errlen);
        if (rc)
            return rc;
        p += n;
        if (*p == ',' && *++p == '\0')
            return parse_item(sp, p, 0, &seen, err, errlen);
    }
    return check_spec(sp, err, errlen);
}

static void prefixes_release(struct tm__sim_prefixes *l)
{
    int i;
    for (i = 0; i < l->n; i++)
        free(l->p[i]);
    l->n = 0;
}

void tm__sim_spec_release(struct tm__sim_spec *sp)
{
    prefixes_release(&sp->deny);
    prefixes_release(&sp->src_deny);
    prefixes_release(&sp->badname);
    prefixes_release(&sp->src_badname);
    free(sp->overlay);
    sp->overlay = NULL;
}

/* ------------------------------------------------------------ ground truth */

/* Folders, files and bytes. */
struct cnt {
    int64_t folders; /* folder nodes */
    int64_t files;   /* file nodes */
    int64_t bytes;   /* sum of file sizes */
};

/* What a discovery of the pair must record (roots excluded). */
struct truth {
    struct cnt wsrc, wdst;   /* the two worlds, whole */
    struct cnt src, dst;     /* rows recorded on each side */
    int64_t src_failed;      /* source folders whose listing fails */
    int64_t dst_failed;      /* destination folders failed or not compared */
    int64_t not_on_src;      /* destination-only rows */
    int64_t pending;         /* source rows to copy */
    int64_t already;         /* source rows already on the destination */
    int64_t skipped;         /* source rows with a type clash */
    int64_t conflicts;       /* source rows with a conflict */
    int64_t bytes_pending;   /* bytes of the files to copy */
    int64_t cf[5];           /* conflicts: size, mtime, dst_newer, type,
                                attrs */
    struct cnt missing;      /* copy pending without a conflict */
    struct cnt dst_only;     /* not_on_src rows */
    struct cnt blocked;      /* source rows below a folder clashing by type
                                (skipped, not in missing) */
    int64_t list_src;        /* source folders listed (root included) */
    int64_t list_dst;        /* destination folders listed (root included) */
};

/* The state of one walk. */
struct walk {
    const struct tm__sim_spec *sp; /* the destination spec */
    struct tm__buf path;           /* current folder ("" for the root) */
    int paths;                     /* 1: keep path (deny lists given) */
    int err;                       /* first error (TM_ENOMEM) */
    struct truth t;                /* the counts */
};

enum { W_REC = 1, W_TW = 2, W_TWREC = 4, W_BLOCK = 8 };

static void cnt_add(struct cnt *c, const struct tm__sim_ent *e)
{
    if (e->type == TM_T_FOLDER) {
        c->folders++;
    } else {
        c->files++;
        c->bytes += e->size;
    }
}

/* Counts the whole destination-only tree below folder f. */
static void walk_plain(struct walk *w, const struct tm__sim_folder *f)
{
    struct tm__sim_dir d;
    struct tm__sim_ent e;
    int64_t i;
    tm__sim_dir_init(w->sp, f, &d);
    for (i = 0; i < d.slots; i++) {
        tm__sim_child(w->sp, &d, i, &e);
        cnt_add(&w->t.wdst, &e);
        if (e.type == TM_T_FOLDER)
            walk_plain(w, &e.sub);
    }
}

/* Records source child c and, when its parent's destination twin is
 * listed (x not NULL), what the comparison with x decides. */
static void record_src(struct walk *w, const struct tm__sim_ent *c,
                       const struct tm__sim_ent *x, int flags)
{
    static const int cf_index[] = { [TM_SIM_SIZE] = 0, [TM_SIM_MTIME] = 1,
                                    [TM_SIM_NEWER] = 2, [TM_SIM_TYPE] = 3,
                                    [TM_SIM_MODE] = 4 };
    struct truth *t = &w->t;
    cnt_add(&t->src, c);
    if (flags & W_BLOCK) { /* skipped when discovery completes */
        cnt_add(&t->blocked, c);
        t->skipped++;
        return;
    }
    if (!x || x->fate == TM_SIM_GONE) {
        t->pending++;
        t->bytes_pending += c->type == TM_T_FILE ? c->size : 0;
        cnt_add(&t->missing, c);
        return;
    }
    cnt_add(&t->dst, x);
    if (x->fate == TM_SIM_SAME) {
        t->already++;
        return;
    }
    t->conflicts++;
    t->cf[cf_index[x->fate]]++;
    if (x->fate == TM_SIM_TYPE) {
        t->skipped++;
    } else {
        t->pending++;
        t->bytes_pending += c->size;
    }
}

static const char *walk_path(struct walk *w, size_t *len)
{
    *len = w->path.len ? w->path.len : 1;
    return w->path.len ? w->path.buf : "/";
}

static int src_fails(struct walk *w, const struct tm__sim_folder *f)
{
    size_t len;
    const char *p = walk_path(w, &len);
    return tm__sim_permanent(w->sp, w->sp->src_permanent, TM_SIM_SRC, f) ||
           tm__sim_prefix_match(&w->sp->src_deny, p, len) ||
           tm__sim_prefix_match(&w->sp->src_badname, p, len);
}

static int dst_fails(struct walk *w, const struct tm__sim_folder *f)
{
    size_t len;
    const char *p = walk_path(w, &len);
    return tm__sim_permanent(w->sp, w->sp->permanent, TM_SIM_DST, f) ||
           tm__sim_prefix_match(&w->sp->deny, p, len) ||
           tm__sim_prefix_match(&w->sp->badname, p, len);
}

/* Decides which listings of folder f succeed; returns flags: W_REC when
 * the source listing succeeds, W_TWREC when the destination's does. */
static int listings(struct walk *w, const struct tm__sim_folder *f, int flags)
{
    int ok = 0, depth = f->depth;
    if (flags & W_REC) {
        w->t.list_src++;
        if (!src_fails(w, f))
            ok |= W_REC;
        else if (depth)
            w->t.src_failed++;
    }
    if (flags & W_TWREC) {
        if (!(ok & W_REC)) {
            w->t.dst_failed += depth > 0; /* not compared */
        } else {
            w->t.list_dst++;
            if (!dst_fails(w, f))
                ok |= W_TWREC;
            else if (depth)
                w->t.dst_failed++;
        }
    }
    return ok;
}

static void walk_src(struct walk *w, const struct tm__sim_folder *f, int flags);

/* One source child c of a folder whose listings resulted in ok. */
static void walk_child(struct walk *w, const struct tm__sim_ent *c, int flags,
                       int ok)
{
    struct tm__sim_ent x;
    int cflags = 0;
    x.fate = TM_SIM_GONE;
    if (flags & W_TW) {
        if (tm__sim_derive(w->sp, c, &x)) {
            cnt_add(&w->t.wdst, &x);
            if (x.type == TM_T_FOLDER && x.fate == TM_SIM_TYPE)
                walk_plain(w, &x.sub);
        }
    }
    if (ok & W_REC)
        record_src(w, c, (ok & W_TWREC) ? &x : NULL, flags);
    if (c->type != TM_T_FOLDER)
        return;
    if (ok & W_REC)
        cflags |= W_REC;
    /* the copy never enters a folder whose twin is a file */
    if ((flags & W_BLOCK) || ((ok & W_TWREC) && x.fate == TM_SIM_TYPE))
        cflags |= W_BLOCK;
    if (x.fate == TM_SIM_SAME || x.fate == TM_SIM_MODE)
        cflags |= W_TW | ((ok & W_TWREC) ? W_TWREC : 0);
    if (w->paths) {
        size_t len = w->path.len;
        if (tm__buf_addch(&w->path, '/') || tm__buf_add(&w->path, c->name, c->name_len))
            w->err = TM_ENOMEM;
        walk_src(w, &c->sub, cflags);
        tm__buf_setlen(&w->path, len);
    } else {
        walk_src(w, &c->sub, cflags);
    }
}

/* Walks source folder f (and its destination twin when flags say so). */
static void walk_src(struct walk *w, const struct tm__sim_folder *f, int flags)
{
    struct tm__sim_folder tf = *f;
    struct tm__sim_dir d, dt;
    struct tm__sim_ent c;
    int ok = listings(w, f, flags);
    int64_t i;
    tm__sim_dir_init(w->sp, f, &d);
    for (i = 0; i < d.n; i++) {
        tm__sim_child(w->sp, &d, i, &c);
        cnt_add(&w->t.wsrc, &c);
        walk_child(w, &c, flags, ok);
    }
    if (!(flags & W_TW))
        return;
    tf.gen = TM_SIM_TWIN;
    tm__sim_dir_init(w->sp, &tf, &dt);
    for (i = dt.n; i < dt.slots; i++) {
        tm__sim_child(w->sp, &dt, i, &c);
        cnt_add(&w->t.wdst, &c);
        if (c.type == TM_T_FOLDER)
            walk_plain(w, &c.sub);
        if (ok & W_TWREC) {
            cnt_add(&w->t.dst, &c);
            cnt_add(&w->t.dst_only, &c);
            w->t.not_on_src++;
        }
    }
}

static int json_cnt(struct tm__buf *b, const char *name, const struct cnt *c,
                    int comma)
{
    return tm__buf_addf(b, "\"%s\":{\"folders\":%lld,\"files\":%lld,\"bytes\":%lld}%s",
                 name, (long long)c->folders, (long long)c->files,
                 (long long)c->bytes, comma ? "," : "");
}

static int truth_json(const struct truth *t, const char *spec, char **json)
{
    struct tm__buf b = TM__BUF_INIT;
    int rc = tm__buf_adds(&b, "{\"spec\":");
    rc |= tm__buf_add_json(&b, spec, strlen(spec));
    rc |= tm__buf_adds(&b, ",\"worlds\":{");
    rc |= json_cnt(&b, "src", &t->wsrc, 1);
    rc |= json_cnt(&b, "dst", &t->wdst, 0);
    rc |= tm__buf_addf(&b, "},\"src\":{\"folders\":%lld,\"files\":%lld,\"symlinks\":0,"
                 "\"other\":0,\"bytes\":%lld,\"pending\":0,\"failed\":%lld,"
                 "\"excluded\":0}", (long long)t->src.folders,
                 (long long)t->src.files, (long long)t->src.bytes,
                 (long long)t->src_failed);
    rc |= tm__buf_addf(&b, ",\"dst\":{\"folders\":%lld,\"files\":%lld,\"symlinks\":0,"
                 "\"other\":0,\"bytes\":%lld,\"pending\":0,\"failed\":%lld,"
                 "\"not_on_src\":%lld}", (long long)t->dst.folders,
                 (long long)t->dst.files, (long long)t->dst.bytes,
                 (long long)t->dst_failed, (long long)t->not_on_src);
    rc |= tm__buf_addf(&b, ",\"copy\":{\"pending\":%lld,\"in_progress\":0,"
                 "\"successful\":0,\"already_existed\":%lld,\"failed\":0,"
                 "\"skipped\":%lld,\"excluded\":0,\"conflicts\":%lld,"
                 "\"bytes_pending\":%lld}", (long long)t->pending,
                 (long long)t->already, (long long)t->skipped,
                 (long long)t->conflicts, (long long)t->bytes_pending);
    rc |= tm__buf_addf(&b, ",\"conflicts\":{\"size\":%lld,\"mtime\":%lld,"
                 "\"dst_newer\":%lld,\"type\":%lld,\"attrs\":%lld},",
                 (long long)t->cf[0], (long long)t->cf[1], (long long)t->cf[2],
                 (long long)t->cf[3], (long long)t->cf[4]);
    rc |= json_cnt(&b, "missing", &t->missing, 1);
    rc |= json_cnt(&b, "dst_only", &t->dst_only, 1);
    rc |= json_cnt(&b, "blocked", &t->blocked, 1);
    rc |= tm__buf_addf(&b, "\"listings\":{\"src\":%lld,\"dst\":%lld}}",
                      (long long)t->list_src, (long long)t->list_dst);
    if (rc || b.alloc == 0) {
        tm__buf_release(&b);
        return TM_ENOMEM;
    }
    *json = tm__buf_detach(&b, NULL);
    return 0;
}

int tm_sim_stats(const char *spec, char **json, char *err, size_t errlen)
{
    struct tm__sim_spec sp;
    struct tm__sim_folder root;
    struct walk w;
    int rc;

    *json = NULL;
    if (errlen)
        err[0] = '\0';
    if (!tm__spec_is_sim(spec)) {
        snprintf(err, errlen, "sim-stats: '%s' is not a sim: spec", spec ? spec : "");
        return TM_EBADSPEC;
    }
    rc = tm__sim_spec_parse(&sp, spec + 4, err, errlen);
    if (!rc && sp.world != TM_SIM_DST) {
        snprintf(err, errlen, "sim-stats: give the destination's spec (with "
                 "world=dst); it names its source world too");
        rc = TM_EBADSPEC;
    }
    if (rc) {
        tm__sim_spec_release(&sp);
        return rc;
    }
    memset(&w, 0, sizeof w);
    w.sp = &sp;
    tm__buf_init(&w.path);
    w.paths = sp.deny.n || sp.src_deny.n || sp.badname.n || sp.src_badname.n;
    root = tm__sim_root(&sp);
    root.gen = TM_SIM_PLAIN;
    walk_src(&w, &root, W_REC | W_TW | W_TWREC);
    rc = w.err ? w.err : truth_json(&w.t, spec, json);
    if (rc)
        snprintf(err, errlen, "sim-stats: %s", tm_strerror(rc));
    tm__buf_release(&w.path);
    tm__sim_spec_release(&sp);
    return rc;
}
