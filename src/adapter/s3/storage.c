/*
 * storage.c - the s3 storage (s3://bucket[/prefix]): the adapter of
 * adapter.h over the S3 client of s3.h, and its kind in the registry.
 *
 * The tree: a folder is a '/'-delimited prefix. A folder's listing is
 * ListObjectsV2 with delimiter '/', one page of up to 1000 keys per
 * list_next; its objects are files, its common prefixes folders, and the
 * folder's own "name/" marker (what an empty folder is) is skipped. The
 * position stored between pages is the last key of the last page (a
 * listing resumes with start-after it; a continuation token is opaque and
 * does not outlive the process). A file's mtime, mode and owner are
 * rclone's metadata (x-amz-meta-mtime, -mode, -uid, -gid); a listing does
 * not carry them, so each page's objects are HEADed, several at once,
 * unless -o s3-server-modtime takes S3's LastModified instead (then mtimes
 * are not compared: sizes only), or the engine said it asks stat_many
 * for the files where they decide (meta_later: discovery of a
 * destination; the files are then listed with meta_later set). A folder's mode and mtime are its
 * "name/" marker's metadata (HEADed with the page's objects, unless the
 * engine compares sizes only: sizes_only, discover --size-only). A listing
 * whose first page is empty (not even the folder's marker) is of no
 * folder: TM_ENOENT, or TM_ENOTDIR when the name is an object.
 *
 * Writes: a file is written by a client writer (one PUT up to the part
 * size, a multipart upload above it) created at the first byte, with the
 * metadata; the multipart upload's id and parts are handed to the
 * engine's checkpoint (table uploads), and a later open_write given that
 * state resumes the upload, discarding the bytes already on the server
 * after checking them against the parts' MD5 ETags. Nothing is visible
 * before commit; commit asks what is at the name first (a HEAD: a
 * folder's marker there is TM_EISDIR, not asked in a folder this adapter
 * made); with TM_NOREPLACE an object there is TM_EEXIST: a single PUT
 * says so atomically with If-None-Match: * (a server that refuses the
 * header once gets a HEAD before each create from then on), a multipart
 * upload or a copy asks with a HEAD (see docs/adapters.md). A
 * server-side copy
 * (copy_from between two s3 storages of one endpoint) is done at commit
 * with CopyObject (UploadPartCopy above 5 GiB), so it appears atomically
 * too. mkdir writes a folder's zero-byte "name/" marker at once (a
 * folder made is listed before anything is under it, and an empty one
 * stays); mkdir_attr writes it once with rclone's metadata (mode, mtime),
 * which writing into the folder does not change, so the engine's folder
 * pass leaves it alone; set_attr writes it again (a folder made by mkdir,
 * or one that was there). mkdir asks the server (a one-key LIST) whether
 * the name is free and whether the parent is a folder, unless this
 * adapter made that parent lately (a small table of the folders it made).
 *
 * Threads: every method may run on any worker thread at once; the client
 * is shared (it pools its connections), a lister, a read file or a write
 * file belongs to one thread at a time. Only the table of folders made
 * takes a lock (made_mu), for a lookup or a store.
 */
#include "adapter/adapter.h"
#include "adapter/s3/s3.h"

#include "treemig.h"
#include "util/util.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

/* The longest key S3 takes. */
#define S3_KEY_MAX 1024
/* HEADs in flight per listing page. */
#define HEADS_IN_FLIGHT 16
/* Tries of the request that checks the bucket at open. */
#define PROBE_TRIES 4
/* Folders mkdir remembers having made (their children's mkdir does not
 * ask the server about them, nor a commit about a marker at a file's
 * name), and the slots a folder may take from its hash on: a table a
 * few times larger than a copy's folders in flight, so that a folder is
 * forgotten only once the table is nearly full (with one slot per hash,
 * a quarter of 2,200 folders were evicted by collisions, and each of
 * their files cost a HEAD more). */
#define MADE_SLOTS 16384
#define MADE_PROBES 8
/* The first line of a checkpointed upload's state. */
#define STATE_MAGIC "treemig s3 upload 1\n"

/* The adapter. */
struct s3a {
    struct tm__adapter base; /* first */
    struct tm__s3 *s;        /* the client */
    char *bucket;            /* the bucket */
    char *prefix;            /* the root's prefix: "" or "a/b/" */
    size_t plen;             /* bytes in prefix */
    int server_mtime;        /* s3-server-modtime: LastModified, no HEAD */
    pthread_mutex_t made_mu; /* guards made */
    char *made[MADE_SLOTS];  /* folder keys mkdir made lately (no '/'),
                                in one of the MADE_PROBES slots from
                                made_slot() on; NULL: none */
};

/* A listing of one folder. */
struct s3l {
    struct tm__lister base;  /* first */
    char *prefix;            /* the folder's prefix ("" or "a/b/x/") */
    size_t plen;             /* bytes in prefix */
    char *token;             /* continuation token of this process */
    struct tm__buf pos;      /* the last key of the last page ("": none) */
    struct tm__buf resumed;  /* the stored position it was opened at */
    int done;                /* the last page was returned */
    struct tm__buf names;    /* the clash check: object names that a later
                                prefix "name/" may still follow, NUL after
                                each (nested: each one begins the next) */
    size_t *ends;            /* the end of each name in names */
    size_t n_ends, cap_ends; /* used, allocated */
};

/* A file being read. */
struct s3r {
    struct tm__rfile base;      /* first */
    struct tm__s3_reader *rd;   /* the GET, NULL once closed early */
    struct tm__entry st;        /* as seen at open */
    char *key;                  /* the key */
    char etag[72];              /* the object's ETag, as opened */
    int64_t uid, gid;           /* its owner in rclone's metadata, -1 */
};

/* A file being written. */
struct s3w {
    struct tm__wfile base;      /* first */
    char *key;                  /* the key */
    int64_t size;               /* its bytes */
    int64_t mtime;              /* as open_write was told */
    uint32_t mode;              /* permission bits, as open_write was told */
    int64_t uid, gid;           /* the source's owner, -1: unknown */
    int (*checkpoint)(void *, const void *, size_t); /* the engine's */
    void *cp_ctx;               /* its context */
    struct tm__s3_writer *w;    /* NULL until the first byte */
    int64_t seen;               /* bytes the engine gave */
    int64_t skip;               /* bytes already on the server (resumed) */
    struct tm__s3_part *kept;   /* the parts kept by the resume */
    size_t n_kept;              /* their count */
    int64_t part_size;          /* their size */
    EVP_MD_CTX *md5;            /* MD5 of the part being checked */
    size_t ck_parts;            /* parts in the last checkpoint */
    int ck_id;                  /* the upload id was checkpointed */
    char *copy_bucket;          /* server-side copy: the source */
    char *copy_key;             /* its key */
    char copy_etag[72];         /* its ETag when it was opened */
};

/* ---- small helpers ---- */

/* Fills e from the client's detail; returns rc. */
static int aerr(struct tm__aerr *e, const struct tm__s3_err *se, int rc)
{
    if (!rc)
        return 0;
    e->cls = se->cls;
    e->retry_ms = se->retry_after_ms > 0 ? se->retry_after_ms : 0;
    snprintf(e->msg, sizeof e->msg, "%.*s", (int)sizeof e->msg - 1, se->message);
    return rc;
}

/* A failure found here, of this node. */
static int node_err(struct tm__aerr *e, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int node_err(struct tm__aerr *e, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->cls = TM_ERR_NODE;
    return rc;
}

/* The key of the node at path ("/x/y": prefix + "x/y"); "" for the root. */
static int key_of(const struct s3a *a, const char *path, struct tm__buf *out)
{
    tm__buf_reset(out);
    if (tm__buf_add(out, a->prefix, a->plen))
        return TM_ENOMEM;
    return path[1] ? tm__buf_adds(out, path + 1) : 0;
}

/* A node as a storage reports it, from a HEAD or a GET: the metadata
 * rclone writes when it is there, else LastModified and 0644. */
static void entry_of(const struct s3a *a, const struct tm__s3_stat *st,
                     struct tm__entry *out)
{
    memset(out, 0, sizeof *out);
    out->type = TM_T_FILE;
    out->size = st->size;
    out->mtime = !a->server_mtime && st->meta.has_mtime ? st->meta.mtime_ns
                                                        : st->mtime_ns;
    out->mode = !a->server_mtime && st->meta.has_mode ? (st->meta.mode & 07777)
                                                      : 0644;
}

/* A folder as a storage reports it: the mode and mtime of its "name/"
 * marker's metadata (st, NULL when it has none), else 0755 and no mtime
 * (TM_MTIME_KEEP: a prefix has none). */
static void folder_of(const struct s3a *a, const struct tm__s3_stat *st,
                      struct tm__entry *out)
{
    memset(out, 0, sizeof *out);
    out->type = TM_T_FOLDER;
    out->mtime = st && !a->server_mtime && st->meta.has_mtime ? st->meta.mtime_ns
                                                               : TM_MTIME_KEEP;
    out->mode = st && !a->server_mtime && st->meta.has_mode ? (st->meta.mode & 07777)
                                                             : 0755;
}

/* ---- the spec ---- */

/* Parses "s3://bucket[/prefix]": *bucket and *prefix (without a trailing
 * '/', "" for none) malloc'd. Refuses credentials in the URL and prefixes
 * that are no tree of names. */
static int parse_spec(const char *spec, char **bucket, char **prefix, char *err,
                      size_t errlen)
{
    const char *b = spec + 5, *slash, *p;
    struct tm__buf pre = TM__BUF_INIT;
    size_t blen, i;

    *bucket = *prefix = NULL;
    if (strncmp(spec, "s3://", 5) != 0) {
        snprintf(err, errlen, "%s: not an s3:// URL", spec);
        return TM_EBADSPEC;
    }
    slash = strchr(b, '/');
    blen = slash ? (size_t)(slash - b) : strlen(b);
    if (memchr(b, '@', blen) || memchr(b, ':', blen)) {
        snprintf(err, errlen, "s3://: credentials (or a port) in the URL are "
                 "refused: name the bucket alone (s3://bucket/prefix); keys come "
                 "from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the AWS "
                 "files, the endpoint from --s3-endpoint or AWS_ENDPOINT_URL");
        return TM_EBADSPEC;
    }
    if (blen < 3 || blen > 63) {
        snprintf(err, errlen, "%s: a bucket name has 3 to 63 characters", spec);
        return TM_EBADSPEC;
    }
    for (i = 0; i < blen; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')) {
            snprintf(err, errlen, "%s: a bucket name has letters, digits, '.', "
                     "'-' and '_' only", spec);
            return TM_EBADSPEC;
        }
    }
    /* the prefix: its names, without empty ones (a//b is a/b) */
    for (p = slash; p && *p;) {
        const char *end;
        size_t n;
        while (*p == '/')
            p++;
        if (!*p)
            break;
        end = strchr(p, '/');
        n = end ? (size_t)(end - p) : strlen(p);
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.') ||
            !tm__utf8_valid(p, n)) {
            snprintf(err, errlen, "%s: a prefix of '.', '..' or a name that is not "
                     "UTF-8 is no folder", spec);
            tm__buf_release(&pre);
            return TM_EBADSPEC;
        }
        for (i = 0; i < n; i++)
            if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) {
                snprintf(err, errlen, "%s: a control character in the prefix", spec);
                tm__buf_release(&pre);
                return TM_EBADSPEC;
            }
        if ((pre.len && tm__buf_addch(&pre, '/')) || tm__buf_add(&pre, p, n)) {
            tm__buf_release(&pre);
            return TM_ENOMEM;
        }
        p += n;
    }
    if (pre.len >= S3_KEY_MAX) {
        snprintf(err, errlen, "%s: the prefix is longer than a key may be", spec);
        tm__buf_release(&pre);
        return TM_EBADSPEC;
    }
    *bucket = strndup(b, blen);
    *prefix = pre.len ? tm__buf_detach(&pre, NULL) : strdup("");
    tm__buf_release(&pre);
    if (!*bucket || !*prefix) {
        free(*bucket);
        free(*prefix);
        *bucket = *prefix = NULL;
        return TM_ENOMEM;
    }
    return 0;
}

/* An option that is a flag: given alone or as 1/true/yes (1), 0/false/no
 * (0); -1 when absent; -2 when malformed. */
static int opt_flag(const struct tm__sopts *o, const char *key)
{
    const char *v = tm__sopt_get(o, key);
    if (!v)
        return -1;
    if (!*v || !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes"))
        return 1;
    if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no"))
        return 0;
    return -2;
}

/* A size option: bytes, or with a suffix K, M, G (binary: KiB, MiB, GiB
 * too). 0 when absent; -1 when malformed. */
static int64_t opt_size(const struct tm__sopts *o, const char *key)
{
    const char *v = tm__sopt_get(o, key);
    char *end;
    long long n;
    int64_t mul = 1;
    if (!v)
        return 0;
    n = strtoll(v, &end, 10);
    if (end == v || n <= 0)
        return -1;
    if (*end == 'k' || *end == 'K')
        mul = 1024;
    else if (*end == 'm' || *end == 'M')
        mul = 1024 * 1024;
    else if (*end == 'g' || *end == 'G')
        mul = 1024 * 1024 * 1024;
    if (mul > 1)
        end += (end[1] == 'i' && (end[2] == 'B' || end[2] == 'b')) ? 3
               : (end[1] == 'B' || end[1] == 'b') ? 2 : 1;
    if (*end || n > INT64_MAX / mul)
        return -1;
    return (int64_t)n * mul;
}

/* Checks the options every s3 storage of a run shares: the endpoint
 * holds no credentials (it is recorded), flags and sizes are well-formed.
 * 0, or TM_EBADSPEC with err. */
static int check_opts(const struct tm__sopts *o, char *err, size_t errlen)
{
    const char *ep = tm__sopt_get(o, "s3-endpoint");
    int64_t ps = opt_size(o, "s3-part-size");
    if (ep) {
        const char *h = strstr(ep, "://"), *end;
        h = h ? h + 3 : ep;
        end = h + strcspn(h, "/?#");
        if (memchr(h, '@', (size_t)(end - h))) {
            snprintf(err, errlen, "--s3-endpoint: credentials in the URL are "
                     "refused (the endpoint is recorded in the state file); "
                     "give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
            return TM_EBADSPEC;
        }
        if (!*ep) {
            snprintf(err, errlen, "--s3-endpoint needs a URL");
            return TM_EBADSPEC;
        }
    }
    if (opt_flag(o, "s3-path-style") == -2 || opt_flag(o, "s3-server-modtime") == -2) {
        snprintf(err, errlen, "s3-path-style and s3-server-modtime are flags "
                 "(alone, or =1/=0)");
        return TM_EBADSPEC;
    }
    if (ps < 0 || (ps && ps < 1024 * 1024)) {
        snprintf(err, errlen, "s3-part-size: a size of at least 1 MiB (bytes, or "
                 "with K, M, G)");
        return TM_EBADSPEC;
    }
    return 0;
}

static int s3_resolve(const char *spec, const struct tm__sopts *o, char **out,
                      char *err, size_t errlen)
{
    char *bucket, *prefix;
    struct tm__buf b = TM__BUF_INIT;
    int rc = check_opts(o, err, errlen);
    *out = NULL;
    if (rc)
        return rc;
    rc = parse_spec(spec, &bucket, &prefix, err, errlen);
    if (rc)
        return rc;
    if (tm__buf_addf(&b, "s3://%s%s%s", bucket, *prefix ? "/" : "", prefix))
        rc = TM_ENOMEM;
    else
        *out = tm__buf_detach(&b, NULL);
    tm__buf_release(&b);
    free(bucket);
    free(prefix);
    return rc ? rc : (*out ? 0 : TM_ENOMEM);
}

/* 1 when prefix a (without a trailing '/') is b or lies below it. */
static int prefix_within(const char *a, const char *b)
{
    size_t n = strlen(b);
    if (!n)
        return 1;
    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

static int s3_overlap(const char *a, const char *b, const struct tm__sopts *o,
                      char *err, size_t errlen)
{
    char *ba, *pa, *bb, *pb, e2[8];
    int over = 0;
    (void)o; /* both sides share the run's options: one endpoint */
    if (parse_spec(a, &ba, &pa, e2, sizeof e2))
        return 0;
    if (parse_spec(b, &bb, &pb, e2, sizeof e2) == 0) {
        if (strcmp(ba, bb) == 0 && (prefix_within(pa, pb) || prefix_within(pb, pa))) {
            over = 1;
            snprintf(err, errlen, "%s and %s overlap: the same bucket on the same "
                     "endpoint, with one prefix inside the other", a, b);
        }
        free(bb);
        free(pb);
    }
    free(ba);
    free(pa);
    return over;
}

/* ---- listing ---- */

static int s3_list_open(struct tm__adapter *ad, const char *path, const void *pos,
                        size_t pos_len, struct tm__lister **out, struct tm__aerr *e)
{
    struct s3a *a = (struct s3a *)ad;
    struct s3l *l = calloc(1, sizeof *l);
    struct tm__buf k = TM__BUF_INIT;
    int rc;

    *out = NULL;
    if (!l)
        return TM_ENOMEM;
    l->base.a = ad;
    tm__buf_init(&l->pos);
    tm__buf_init(&l->resumed);
    tm__buf_init(&l->names);
    rc = key_of(a, path, &k);
    if (!rc && k.len > a->plen)
        rc = tm__buf_addch(&k, '/');
    if (!rc) {
        l->plen = k.len;
        l->prefix = tm__buf_detach(&k, NULL);
        rc = l->prefix ? 0 : TM_ENOMEM;
    }
    if (!rc && pos_len) {
        if (pos_len <= l->plen || memcmp(pos, l->prefix, l->plen) != 0 ||
            memchr(pos, '\0', pos_len)) {
            rc = node_err(e, TM_EINVAL, "s3 list %s: the stored position is not "
                          "a key of this folder", path);
        } else if (!(rc = tm__buf_add(&l->pos, pos, pos_len))) {
            rc = tm__buf_add(&l->resumed, pos, pos_len);
        }
    }
    tm__buf_release(&k);
    if (rc) {
        free(l->prefix);
        tm__buf_release(&l->pos);
        tm__buf_release(&l->resumed);
        free(l);
        return rc;
    }
    *out = &l->base;
    return 0;
}

/* The clash check, for one entry of the listing in key order (its name
 * after the folder's prefix, with the '/' of a common prefix): 1 when it
 * is a prefix "name/" and the object "name" was listed (a file and a
 * folder of one name), else 0 (an object is remembered), or TM_ENOMEM. */
static int clash_step(struct s3l *l, const char *name, size_t n, int is_prefix)
{
    while (l->n_ends) {
        size_t start = l->n_ends > 1 ? l->ends[l->n_ends - 2] + 1 : 0;
        size_t tl = l->ends[l->n_ends - 1] - start;
        const char *t = l->names.buf + start;
        if (n > tl && memcmp(name, t, tl) == 0 && (unsigned char)name[tl] <= '/') {
            if (is_prefix && name[tl] == '/' && n == tl + 1)
                return 1;
            if (name[tl] != '/')
                break; /* "t/" may still follow */
        }
        l->n_ends--;
        tm__buf_setlen(&l->names, start);
    }
    if (is_prefix)
        return 0;
    if (l->n_ends == l->cap_ends) {
        size_t nc = l->cap_ends ? l->cap_ends * 2 : 8;
        size_t *p = realloc(l->ends, nc * sizeof *p);
        if (!p)
            return TM_ENOMEM;
        l->ends = p;
        l->cap_ends = nc;
    }
    if (l->n_ends && tm__buf_addch(&l->names, '\0'))
        return TM_ENOMEM;
    if (tm__buf_add(&l->names, name, n))
        return TM_ENOMEM;
    l->ends[l->n_ends++] = l->names.len;
    return 0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000;
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* The HEADs of a page; those that failed for a transient reason (a
 * throttle, a reset) are sent again, up to HEAD_TRIES rounds, after the
 * longest wait the server asked for (or a backoff), so that one busy
 * moment does not fail a page of a thousand. What still fails is in the
 * items. */
#define HEAD_TRIES 3
static int heads_with_retries(struct s3a *a, struct tm__s3_head_item *v, size_t n)
{
    struct tm__s3_head_item *again = NULL;
    size_t *idx = NULL, i, k;
    int round, rc = tm__s3_head_many(a->s, a->bucket, v, n, HEADS_IN_FLIGHT);
    for (round = 1; !rc && round < HEAD_TRIES; round++) {
        int64_t wait = 100LL << round;
        for (i = 0, k = 0; i < n; i++)
            if (v[i].rc && (v[i].err.cls == TM_S3_RETRY ||
                            v[i].err.cls == TM_S3_THROTTLE)) {
                if (v[i].err.retry_after_ms > wait)
                    wait = v[i].err.retry_after_ms;
                k++;
            }
        if (!k)
            break;
        free(again);
        free(idx);
        again = calloc(k, sizeof *again);
        idx = calloc(k, sizeof *idx);
        if (!again || !idx) {
            rc = TM_ENOMEM;
            break;
        }
        for (i = 0, k = 0; i < n; i++)
            if (v[i].rc && (v[i].err.cls == TM_S3_RETRY ||
                            v[i].err.cls == TM_S3_THROTTLE)) {
                again[k].key = v[i].key;
                idx[k++] = i;
            }
        sleep_ms(wait > 10000 ? 10000 : wait);
        rc = tm__s3_head_many(a->s, a->bucket, again, k, HEADS_IN_FLIGHT);
        for (i = 0; i < k; i++)
            v[idx[i]] = again[i];
    }
    free(again);
    free(idx);
    return rc;
}

static int s3_list_next(struct tm__lister *lr, tm__list_cb cb, void *ctx, int *more,
                        struct tm__aerr *e)
{
    struct s3l *l = (struct s3l *)lr;
    struct s3a *a = (struct s3a *)lr->a;
    struct tm__s3_list_req q;
    struct tm__s3_page pg;
    struct tm__s3_err se;
    struct tm__s3_head_item *heads = NULL;
    size_t i, j, n_heads = 0, n_obj = 0;
    int rc, later, bare;

    *more = 0;
    if (l->done)
        return 0;
    memset(&q, 0, sizeof q);
    q.prefix = l->prefix;
    q.delimiter = "/";
    q.max_keys = 1000;
    q.continuation = l->token;
    q.start_after = l->pos.len ? l->pos.buf : NULL;
    rc = tm__s3_list(a->s, a->bucket, &q, &pg, &se);
    if (rc)
        return aerr(e, &se, rc);

    /* the first page of a listing that is empty, not even the folder's
     * own marker: there is no such folder (a prefix is a folder only while
     * something is under it), or it is a file */
    if (!pg.n_objects && !pg.n_prefixes && !l->token && !l->pos.len &&
        l->plen > a->plen) {
        struct tm__s3_stat st;
        char *k = strndup(l->prefix, l->plen - 1);
        if (!k) {
            rc = TM_ENOMEM;
            goto out;
        }
        rc = tm__s3_head(a->s, a->bucket, k, &st, &se);
        if (rc == 0)
            rc = node_err(e, TM_ENOTDIR, "s3 list %s/%s: an object (a file), not "
                          "a folder", a->bucket, k);
        else if (rc == TM_ENOENT)
            rc = node_err(e, TM_ENOENT, "s3 list %s/%s: no such folder (nothing "
                          "under its prefix)", a->bucket, l->prefix);
        else
            aerr(e, &se, rc);
        free(k);
        goto out;
    }

    /* the files' metadata and the folders' (their markers'): a HEAD each,
     * several at once; the files' only later (stat_many), where the
     * engine asks, when it said so (meta_later); the folders' not at all
     * when it compares sizes only (sizes_only) */
    later = a->base.meta_later;
    bare = later && a->base.sizes_only;
    if (!a->server_mtime && ((pg.n_prefixes && !bare) || (pg.n_objects && !later))) {
        heads = calloc(pg.n_objects + pg.n_prefixes, sizeof *heads);
        if (!heads) {
            rc = TM_ENOMEM;
            goto out;
        }
        for (i = 0; i < pg.n_objects && !later; i++)
            if (pg.objects[i].key_len > l->plen)
                heads[n_heads++].key = pg.objects[i].key;
        n_obj = n_heads;
        for (j = 0; j < pg.n_prefixes && !bare; j++)
            heads[n_heads++].key = pg.prefixes[j];
        rc = heads_with_retries(a, heads, n_heads);
        if (rc)
            goto out;
        for (i = 0; i < n_heads; i++)
            if (heads[i].rc && heads[i].rc != TM_ENOENT) {
                rc = aerr(e, &heads[i].err, heads[i].rc);
                goto out;
            }
    }

    /* objects and prefixes in key order: the clash check, then the
     * entries (objects gone since the listing are left out) */
    for (i = 0, j = 0, n_heads = 0; i < pg.n_objects || j < pg.n_prefixes;) {
        struct tm__entry ent;
        const char *name;
        size_t n;
        int is_prefix;
        if (j >= pg.n_prefixes ||
            (i < pg.n_objects &&
             strcmp(pg.objects[i].key, pg.prefixes[j]) < 0)) {
            const struct tm__s3_object *o = &pg.objects[i++];
            if (o->key_len <= l->plen)
                continue; /* the folder's own marker */
            name = o->key + l->plen;
            n = o->key_len - l->plen;
            is_prefix = 0;
            memset(&ent, 0, sizeof ent);
            if (heads && !later) {
                struct tm__s3_head_item *h = &heads[n_heads++];
                if (h->rc == TM_ENOENT)
                    continue; /* deleted since it was listed */
                entry_of(a, &h->st, &ent);
            } else {
                ent.type = TM_T_FILE;
                ent.size = o->size;
                /* whole seconds, as a GET's Last-Modified says it */
                ent.mtime = o->mtime_ns - o->mtime_ns % 1000000000;
                ent.mode = 0644;
                ent.meta_later = later && !a->server_mtime;
            }
        } else {
            name = pg.prefixes[j] + l->plen;
            n = pg.prefix_lens[j] - l->plen;
            is_prefix = 1;
            /* its marker's attributes, when it has one */
            folder_of(a, heads && !bare && heads[n_obj + j].rc == 0
                             ? &heads[n_obj + j].st : NULL, &ent);
            ent.meta_later = bare && !a->server_mtime;
            j++;
        }
        rc = clash_step(l, name, n, is_prefix);
        if (!rc && is_prefix && l->resumed.len >= l->plen + n - 1 &&
            memcmp(l->resumed.buf + l->plen, name, n - 1) == 0) {
            /* opened after a crash at a key that begins with this name:
             * the object "name" may be on a page before it */
            struct tm__s3_stat st;
            struct tm__buf k = TM__BUF_INIT;
            if (tm__buf_add(&k, l->prefix, l->plen) || tm__buf_add(&k, name, n - 1)) {
                rc = TM_ENOMEM;
            } else {
                int hr = tm__s3_head(a->s, a->bucket, k.buf, &st, &se);
                if (hr == 0)
                    rc = 1;
                else if (hr != TM_ENOENT)
                    rc = aerr(e, &se, hr);
            }
            tm__buf_release(&k);
        }
        if (rc < 0)
            goto out;
        if (rc == 1) {
            rc = node_err(e, TM_EINVAL, "s3 list %s/%s: %.*s is both an object and "
                          "a prefix (a file and a folder of the same name), which "
                          "no file system holds: rename one", a->bucket, l->prefix,
                          (int)(n - 1), name);
            goto out;
        }
        ent.name = name;
        ent.name_len = is_prefix ? n - 1 : n;
        rc = cb(ctx, &ent);
        if (rc)
            goto out;
    }
    /* the page is through: the next one starts after its last key */
    tm__buf_reset(&l->pos);
    if (pg.last && tm__buf_adds(&l->pos, pg.last)) {
        rc = TM_ENOMEM;
        goto out;
    }
    free(l->token);
    l->token = NULL;
    if (pg.next_token && !(l->token = strdup(pg.next_token))) {
        rc = TM_ENOMEM;
        goto out;
    }
    l->done = !pg.truncated;
    *more = pg.truncated;
out:
    free(heads);
    tm__s3_page_release(&pg);
    return rc;
}

static int s3_list_pos(struct tm__lister *lr, struct tm__buf *out)
{
    struct s3l *l = (struct s3l *)lr;
    return tm__buf_add(out, l->pos.buf, l->pos.len);
}

static void s3_list_close(struct tm__lister *lr)
{
    struct s3l *l = (struct s3l *)lr;
    free(l->prefix);
    free(l->token);
    free(l->ends);
    tm__buf_release(&l->pos);
    tm__buf_release(&l->resumed);
    tm__buf_release(&l->names);
    free(l);
}

/* ---- stat, read ---- */

/* 1 when something is under the prefix of the folder key (without '/'),
 * 0 when nothing, or an error. */
static int has_under(struct s3a *a, const char *key, size_t klen, struct tm__aerr *e)
{
    struct tm__s3_list_req q;
    struct tm__s3_page pg;
    struct tm__s3_err se;
    struct tm__buf p = TM__BUF_INIT;
    int rc;
    if (tm__buf_add(&p, key, klen) || (klen && tm__buf_addch(&p, '/'))) {
        tm__buf_release(&p);
        return TM_ENOMEM;
    }
    memset(&q, 0, sizeof q);
    q.prefix = p.buf;
    q.delimiter = "/";
    q.max_keys = 1;
    rc = tm__s3_list(a->s, a->bucket, &q, &pg, &se);
    tm__buf_release(&p);
    if (rc)
        return aerr(e, &se, rc);
    rc = pg.n_objects + pg.n_prefixes > 0;
    tm__s3_page_release(&pg);
    return rc;
}

/* mkdir's question, what is at the key (klen bytes, no trailing '/'): 1
 * an object (a file), 2 a folder (its "key/" marker or something under
 * that prefix, a marker or not), 0 nothing; or an error (in e). One
 * request: the first key of a listing
 * with the key as prefix (the object itself comes first when it is
 * there, then keys "key" + c in byte order); only when that key goes on
 * with a byte below '/' ("key-x", "key.x"), which may hide "key/...",
 * a second one asks for the prefix "key/". */
static int name_probe(struct s3a *a, const char *key, size_t klen, struct tm__aerr *e)
{
    struct tm__s3_list_req q;
    struct tm__s3_page pg;
    struct tm__s3_err se;
    char *k = strndup(key, klen);
    int rc;
    if (!k)
        return TM_ENOMEM;
    memset(&q, 0, sizeof q);
    q.prefix = k;
    q.max_keys = 1;
    rc = tm__s3_list(a->s, a->bucket, &q, &pg, &se);
    free(k);
    if (rc)
        return aerr(e, &se, rc);
    if (!pg.n_objects || pg.objects[0].key_len < klen)
        rc = 0;
    else if (pg.objects[0].key_len == klen)
        rc = 1;
    else if (pg.objects[0].key[klen] == '/')
        rc = 2;
    else if ((unsigned char)pg.objects[0].key[klen] < '/')
        rc = (rc = has_under(a, key, klen, e)) == 1 ? 2 : rc;
    tm__s3_page_release(&pg);
    return rc;
}

/* Before a commit of key: 2 when (asked: folder) a folder's "key/"
 * marker is there, 1 when (asked: file) an object "key" is there, 0 when
 * neither; or an error (in e). HEADs, both at once when both are asked. */
static int folder_or_file(struct s3a *a, const char *key, int folder, int file,
                          struct tm__aerr *e)
{
    struct tm__s3_head_item v[2];
    int what[2];
    struct tm__buf m = TM__BUF_INIT;
    size_t n = 0, i;
    int rc = 0;
    memset(v, 0, sizeof v);
    if (folder) {
        if (tm__buf_adds(&m, key) || tm__buf_addch(&m, '/')) {
            tm__buf_release(&m);
            return TM_ENOMEM;
        }
        what[n] = 2;
        v[n++].key = m.buf;
    }
    if (file) {
        what[n] = 1;
        v[n++].key = key;
    }
    if (n)
        rc = tm__s3_head_many(a->s, a->bucket, v, n, 2);
    for (i = 0; !rc && i < n; i++) {
        if (v[i].rc == 0)
            rc = what[i];
        else if (v[i].rc != TM_ENOENT)
            rc = aerr(e, &v[i].err, v[i].rc);
    }
    tm__buf_release(&m);
    return rc;
}

static int made_lately(struct s3a *a, const char *key, size_t klen);

/* 1 when no "key/" marker need be asked for before a commit of key: this
 * adapter made the folder that holds key lately, and not a folder key in
 * it (a folder made lately was empty then; what is in it since is what
 * this run put there, or a writer racing it made). */
static int marker_known_absent(struct s3a *a, const char *key)
{
    const char *slash = strrchr(key + a->plen, '/');
    return slash && made_lately(a, key, (size_t)(slash - key)) &&
           !made_lately(a, key, strlen(key));
}

static int s3_stat(struct tm__adapter *ad, const char *path, struct tm__entry *out,
                   struct tm__aerr *e)
{
    struct s3a *a = (struct s3a *)ad;
    struct tm__buf k = TM__BUF_INIT;
    struct tm__s3_stat st;
    struct tm__s3_err se;
    int rc;

    memset(out, 0, sizeof *out);
    if (!path[1]) {
        out->type = TM_T_FOLDER;
        out->mtime = TM_MTIME_KEEP;
        out->mode = 0755;
        return 0;
    }
    rc = key_of(a, path, &k);
    if (!rc) {
        rc = tm__s3_head(a->s, a->bucket, k.buf, &st, &se);
        if (!rc) {
            entry_of(a, &st, out);
        } else if (rc == TM_ENOENT) {
            /* no object: a folder when it has its "name/" marker (with
             * its attributes) or something is under its prefix */
            if (tm__buf_addch(&k, '/')) {
                rc = TM_ENOMEM;
            } else if ((rc = tm__s3_head(a->s, a->bucket, k.buf, &st, &se)) == 0) {
                folder_of(a, &st, out);
            } else if (rc == TM_ENOENT) {
                int h = has_under(a, k.buf, k.len - 1, e);
                rc = h == 1 ? 0 : h == 0 ? TM_ENOENT : h;
                folder_of(a, NULL, out);
            } else {
                aerr(e, &se, rc);
            }
        } else {
            aerr(e, &se, rc);
        }
    }
    tm__buf_release(&k);
    return rc;
}

/* The engine's stat of the files a listing gave with meta_later: a HEAD
 * each, 16 at once, transient failures sent again (heads_with_retries). */
static int s3_stat_many(struct tm__adapter *ad, const char *const *paths,
                        struct tm__entry *out, int *rcs, size_t n,
                        struct tm__aerr *e)
{
    struct s3a *a = (struct s3a *)ad;
    struct tm__s3_head_item *v = calloc(n ? n : 1, sizeof *v);
    struct tm__buf *k = calloc(n ? n : 1, sizeof *k);
    size_t i;
    int rc = 0;
    if (!v || !k) {
        rc = TM_ENOMEM;
        goto out;
    }
    for (i = 0; i < n; i++)
        tm__buf_init(&k[i]);
    for (i = 0; i < n && !rc; i++) {
        rc = key_of(a, paths[i], &k[i]);
        v[i].key = k[i].buf;
    }
    if (!rc)
        rc = heads_with_retries(a, v, n);
    for (i = 0; !rc && i < n; i++) {
        rcs[i] = v[i].rc;
        if (!v[i].rc)
            entry_of(a, &v[i].st, &out[i]);
        else if (v[i].rc != TM_ENOENT)
            rc = aerr(e, &v[i].err, v[i].rc);
    }
out:
    for (i = 0; k && i < n; i++)
        tm__buf_release(&k[i]);
    free(k);
    free(v);
    return rc;
}

static int s3_open_read(struct tm__adapter *ad, const char *path,
                        struct tm__rfile **out, struct tm__entry *st,
                        struct tm__aerr *e)
{
    struct s3a *a = (struct s3a *)ad;
    struct s3r *f = calloc(1, sizeof *f);
    struct tm__buf k = TM__BUF_INIT;
    struct tm__s3_stat sst;
    struct tm__s3_err se;
    int rc;

    *out = NULL;
    if (!f)
        return TM_ENOMEM;
    rc = key_of(a, path, &k);
    if (!rc)
        rc = aerr(e, &se, tm__s3_reader_open(a->s, a->bucket, k.buf, 0, -1, &f->rd,
                                             &sst, &se));
    if (rc == TM_ENOENT && k.len > a->plen) {
        /* no object: a folder is told apart (only on this failure) */
        struct tm__aerr e2;
        tm__aerr_clear(&e2);
        if (has_under(a, k.buf, k.len, &e2) == 1)
            rc = node_err(e, TM_EISDIR, "s3 open %s/%s: a folder (a prefix), not "
                          "an object", a->bucket, k.buf);
    }
    if (rc) {
        tm__buf_release(&k);
        free(f);
        return rc;
    }
    f->base.a = ad;
    f->key = tm__buf_detach(&k, NULL);
    entry_of(a, &sst, &f->st);
    snprintf(f->etag, sizeof f->etag, "%s", sst.etag);
    f->uid = sst.meta.has_uid ? sst.meta.uid : -1;
    f->gid = sst.meta.has_gid ? sst.meta.gid : -1;
    *st = f->st;
    *out = &f->base;
    return 0;
}

static int64_t s3_read(struct tm__rfile *rf, void *buf, size_t len, struct tm__aerr *e)
{
    struct s3r *f = (struct s3r *)rf;
    struct tm__s3_err se;
    int64_t n;
    if (!f->rd)
        return node_err(e, TM_EINVAL, "read of %s after a server-side copy", f->key);
    n = tm__s3_reader_read(f->rd, buf, len, &se);
    return n < 0 ? aerr(e, &se, (int)n) : n;
}

static int s3_fstat(struct tm__rfile *rf, struct tm__entry *st, struct tm__aerr *e)
{
    (void)e;
    /* one GET reads one version of the object, whatever is put meanwhile */
    *st = ((struct s3r *)rf)->st;
    return 0;
}

static void s3_close_read(struct tm__rfile *rf)
{
    struct s3r *f = (struct s3r *)rf;
    tm__s3_reader_close(f->rd);
    free(f->key);
    free(f);
}

/* ---- writing ---- */

static void wfile_free(struct s3w *f)
{
    free(f->key);
    free(f->kept);
    free(f->copy_bucket);
    free(f->copy_key);
    if (f->md5)
        EVP_MD_CTX_free(f->md5);
    free(f);
}

/* The metadata of the file: rclone's names (st_mode with its type). */
static void meta_of(const struct s3w *f, int64_t mtime, uint32_t mode,
                    struct tm__s3_meta *m)
{
    memset(m, 0, sizeof *m);
    m->has_mtime = 1;
    m->mtime_ns = mtime;
    m->has_mode = 1;
    m->mode = S_IFREG | (mode & 07777);
    if (f->uid >= 0) {
        m->has_uid = 1;
        m->uid = f->uid;
    }
    if (f->gid >= 0) {
        m->has_gid = 1;
        m->gid = f->gid;
    }
}

/* The state of an upload, for the engine's checkpoint (text, so that the
 * uploads table can be read with sqlite3): the id, the part size, and the
 * parts on the server from part 1 on. */
static int state_text(const char *id, int64_t part_size, const struct tm__s3_part *p,
                      size_t n, struct tm__buf *out)
{
    size_t i;
    int rc = tm__buf_addf(out, "%sid %s\npart_size %lld\n", STATE_MAGIC, id,
                          (long long)part_size);
    for (i = 0; i < n && !rc; i++)
        rc = tm__buf_addf(out, "part %d %lld %s\n", p[i].number,
                          (long long)p[i].size, p[i].etag);
    return rc;
}

/* Parses a state: *id (malloc'd), the part size and the parts (malloc'd).
 * TM_EINVAL when it is not one. */
static int state_parse(const void *state, size_t len, char **id, int64_t *part_size,
                       struct tm__s3_part **parts, size_t *n)
{
    char *s = strndup(state, len), *line, *next;
    size_t cap = 0;
    int rc = 0;
    *id = NULL;
    *parts = NULL;
    *n = 0;
    *part_size = 0;
    if (!s)
        return TM_ENOMEM;
    if (strlen(s) != len || strncmp(s, STATE_MAGIC, strlen(STATE_MAGIC)) != 0) {
        free(s);
        return TM_EINVAL;
    }
    for (line = s + strlen(STATE_MAGIC); *line && !rc; line = next) {
        next = strchr(line, '\n');
        if (!next) {
            rc = TM_EINVAL;
            break;
        }
        *next++ = '\0';
        if (!strncmp(line, "id ", 3) && !*id) {
            if (!(*id = strdup(line + 3)))
                rc = TM_ENOMEM;
        } else if (!strncmp(line, "part_size ", 10)) {
            *part_size = strtoll(line + 10, NULL, 10);
        } else if (!strncmp(line, "part ", 5)) {
            struct tm__s3_part p;
            long long sz;
            char etag[80];
            memset(&p, 0, sizeof p);
            if (sscanf(line + 5, "%d %lld %79s", &p.number, &sz, etag) != 3 ||
                p.number < 1 || p.number > 10000 || sz < 0) {
                rc = TM_EINVAL;
                break;
            }
            p.size = sz;
            snprintf(p.etag, sizeof p.etag, "%.71s", etag);
            if (*n == cap) {
                size_t nc = cap ? cap * 2 : 16;
                struct tm__s3_part *q = realloc(*parts, nc * sizeof *q);
                if (!q) {
                    rc = TM_ENOMEM;
                    break;
                }
                *parts = q;
                cap = nc;
            }
            (*parts)[(*n)++] = p;
        }
    }
    free(s);
    if (!rc && (!*id || !**id || *part_size <= 0))
        rc = TM_EINVAL;
    if (rc) {
        free(*id);
        free(*parts);
        *id = NULL;
        *parts = NULL;
        *n = 0;
    }
    return rc;
}

/* Hands the upload's state to the engine: at its start (the id), then as
 * parts land (every part while there are few, then every 1/32 more, so
 * that the state written grows linearly with the parts). */
static void checkpoint(struct s3w *f, int force)
{
    const char *id = f->w ? tm__s3_writer_upload_id(f->w) : NULL;
    struct tm__s3_part *p = NULL;
    struct tm__buf b = TM__BUF_INIT;
    size_t k, n = 0;
    if (!f->checkpoint || !id || strchr(id, '\n'))
        return;
    k = tm__s3_writer_done_count(f->w);
    if (f->ck_id && !force &&
        (k <= f->ck_parts || (k > 64 && k - f->ck_parts < k / 32)))
        return;
    if (tm__s3_writer_done_parts(f->w, &p, &n) == 0 &&
        state_text(id, tm__s3_writer_part_size(f->w), p, n, &b) == 0 &&
        f->checkpoint(f->cp_ctx, b.buf, b.len) == 0) {
        f->ck_id = 1;
        f->ck_parts = n;
    }
    free(p);
    tm__buf_release(&b);
}

/* Starts the client's writer of f (at the first byte, or at commit for an
 * empty file), with the metadata open_write was told. */
static int start_writer(struct s3a *a, struct s3w *f, struct tm__aerr *e)
{
    struct tm__s3_meta m;
    struct tm__s3_put_opts o;
    struct tm__s3_err se;
    int rc;
    meta_of(f, f->mtime, f->mode, &m);
    memset(&o, 0, sizeof o);
    o.meta = &m;
    rc = tm__s3_writer_open(a->s, a->bucket, f->key, f->size, &o, NULL, NULL, &f->w,
                            &se);
    if (rc)
        return aerr(e, &se, rc);
    checkpoint(f, 1);
    return 0;
}

/* Gives up the upload id of key (best effort: an abort that fails leaves
 * it to the bucket's lifecycle rule). */
static void abort_id(struct s3a *a, const char *key, const char *id)
{
    struct tm__s3_err se;
    tm__s3_mp_abort(a->s, a->bucket, key, id, &se);
}

/* Takes up the upload an earlier run's checkpoint left: 0 with f->w set
 * (the bytes before f->skip are on the server), 0 without it (nothing to
 * take up: start afresh; a stale upload is aborted), or a transient
 * error. */
static int resume_upload(struct s3a *a, struct s3w *f, const void *state,
                         size_t len, struct tm__aerr *e)
{
    struct tm__s3_part *rec = NULL;
    struct tm__s3_err se;
    char *id = NULL;
    int64_t ps, off = 0;
    size_t n = 0;
    int rc = state_parse(state, len, &id, &ps, &rec, &n);
    if (rc)
        return rc == TM_ENOMEM ? rc : 0; /* not ours: start afresh */
    rc = tm__s3_writer_resume(a->s, a->bucket, f->key, f->size, id, rec, n, NULL,
                              NULL, &f->w, &off, &se);
    free(rec);
    if (rc && (se.cls == TM_S3_RETRY || se.cls == TM_S3_THROTTLE || rc == TM_ENOMEM)) {
        free(id);
        return aerr(e, &se, rc);
    }
    if (rc) {
        /* gone, or of another shape (the size or part size changed) */
        if (rc != TM_ENOENT)
            abort_id(a, f->key, id);
        free(id);
        f->w = NULL;
        return 0;
    }
    free(id);
    f->skip = off;
    f->part_size = tm__s3_writer_part_size(f->w);
    rc = tm__s3_writer_done_parts(f->w, &f->kept, &f->n_kept);
    if (!rc && off && !(f->md5 = EVP_MD_CTX_new()))
        rc = TM_ENOMEM;
    if (!rc && f->md5 && !EVP_DigestInit_ex(f->md5, EVP_md5(), NULL))
        rc = TM_ENOMEM;
    if (rc) {
        struct tm__s3_err e2;
        tm__s3_writer_abort(f->w, &e2); /* aborts: the next try starts afresh */
        f->w = NULL;
        return rc;
    }
    f->ck_id = 1;
    f->ck_parts = f->n_kept;
    return 0;
}

static int s3_open_write(struct tm__adapter *ad, const char *path,
                         const struct tm__wattr *w, struct tm__wfile **out,
                         struct tm__aerr *e)
{
    struct s3a *a = (struct s3a *)ad;
    struct s3w *f = calloc(1, sizeof *f);
    struct tm__buf k = TM__BUF_INIT;
    int rc;

    *out = NULL;
    if (!f)
        return TM_ENOMEM;
    rc = key_of(a, path, &k);
    if (rc) {
        tm__buf_release(&k);
        free(f);
        return rc;
    }
    f->base.a = ad;
    f->key = tm__buf_detach(&k, NULL);
    f->size = w->size;
    f->mtime = w->mtime;
    f->mode = w->mode;
    f->uid = w->uid;
    f->gid = w->gid;
    f->checkpoint = w->checkpoint;
    f->cp_ctx = w->checkpoint_ctx;
    if (!f->key) {
        wfile_free(f);
        return TM_ENOMEM;
    }
    if (w->resume_len && (rc = resume_upload(a, f, w->resume, w->resume_len, e))) {
        wfile_free(f);
        return rc;
    }
    *out = &f->base;
    return 0;
}

/* Bytes the engine gives again that are already on the server (a resumed
 * upload): each part's MD5 must be its ETag, else the source is not what
 * was sent before and the upload starts again. */
static int skip_bytes(struct s3a *a, struct s3w *f, const char *p, size_t n,
                      struct tm__aerr *e)
{
    while (n) {
        int64_t in_part = f->seen % f->part_size;
        size_t k = (size_t)(f->part_size - in_part);
        if (k > n)
            k = n;
        if (f->seen + (int64_t)k > f->skip)
            k = (size_t)(f->skip - f->seen);
        EVP_DigestUpdate(f->md5, p, k);
        f->seen += (int64_t)k;
        p += k;
        n -= k;
        if (f->seen % f->part_size == 0 || f->seen == f->skip) {
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned int ml = 0, i;
            char hex[33];
            size_t part = (size_t)((f->seen - 1) / f->part_size);
            const char *etag = part < f->n_kept ? f->kept[part].etag : "";
            EVP_DigestFinal_ex(f->md5, md, &ml);
            for (i = 0; i < 16 && i < ml; i++)
                snprintf(hex + 2 * i, 3, "%02x", md[i]);
            /* a part's ETag is its MD5 on S3 (not with SSE-KMS/C) */
            if (strlen(etag) == 32 && strspn(etag, "0123456789abcdefABCDEF") == 32 &&
                strcasecmp(etag, hex) != 0) {
                struct tm__s3_err se;
                tm__s3_writer_abort(f->w, &se);
                f->w = NULL;
                e->cls = TM_ERR_RETRY;
                return tm__aerr_set(e, TM_EIO, "s3 write %s/%s: part %zu sent before "
                                    "the interruption differs from the source now: "
                                    "the upload starts again", a->bucket, f->key,
                                    part + 1);
            }
            EVP_DigestInit_ex(f->md5, EVP_md5(), NULL);
        }
        if (f->seen == f->skip)
            break;
    }
    return 0;
}

static int64_t s3_write(struct tm__wfile *wf, const void *buf, size_t len,
                        struct tm__aerr *e)
{
    struct s3w *f = (struct s3w *)wf;
    struct s3a *a = (struct s3a *)wf->a;
    struct tm__s3_err se;
    const char *p = buf;
    size_t n = len;
    int rc;

    if (f->copy_key)
        return node_err(e, TM_EINVAL, "write after a server-side copy");
    if (f->seen < f->skip) {
        size_t k = (size_t)(f->skip - f->seen) < n ? (size_t)(f->skip - f->seen) : n;
        if (!f->w)
            return node_err(e, TM_EIO, "s3 write %s: the upload was given up",
                            f->key);
        rc = skip_bytes(a, f, p, k, e);
        if (rc)
            return rc;
        p += k;
        n -= k;
    }
    if (!n)
        return (int64_t)len;
    if (!f->w && (rc = start_writer(a, f, e)) != 0)
        return rc;
    rc = tm__s3_writer_write(f->w, p, n, &se);
    if (rc)
        return aerr(e, &se, rc);
    f->seen += (int64_t)n;
    checkpoint(f, 0);
    return (int64_t)len;
}

/* 1 when two s3 storages are on one endpoint (one server can copy). */
static int same_endpoint(const struct s3a *x, const struct s3a *y)
{
    const struct tm__s3_settings *a = tm__s3_settings(x->s), *b = tm__s3_settings(y->s);
    return strcmp(a->endpoint, b->endpoint) == 0 && strcmp(a->region, b->region) == 0;
}

static int64_t s3_copy_from(struct tm__wfile *wf, struct tm__rfile *src, int64_t size,
                            struct tm__aerr *e)
{
    struct s3w *f = (struct s3w *)wf;
    struct s3a *a = (struct s3a *)wf->a, *sa = (struct s3a *)src->a;
    struct s3r *r = (struct s3r *)src;
    int64_t done = 0;

    if (strcmp(src->a->name, "s3") != 0)
        return node_err(e, TM_EINVAL, "copy_from: the source is not an s3 file");
    if (same_endpoint(a, sa) && !f->w && f->seen == 0) {
        /* done by the server at commit: CopyObject (UploadPartCopy above
         * 5 GiB), so the object appears whole, with its metadata */
        f->copy_bucket = strdup(sa->bucket);
        f->copy_key = strdup(r->key);
        if (!f->copy_bucket || !f->copy_key)
            return TM_ENOMEM;
        snprintf(f->copy_etag, sizeof f->copy_etag, "%s", r->etag);
        /* the engine knows no owner of an S3 source: its metadata's */
        if (f->uid < 0)
            f->uid = r->uid;
        if (f->gid < 0)
            f->gid = r->gid;
        tm__s3_reader_close(r->rd); /* its bytes are not needed */
        r->rd = NULL;
        return size;
    }
    {
        /* another endpoint (or an upload taken up): the bytes go through */
        char *buf = malloc(1 << 20);
        if (!buf)
            return TM_ENOMEM;
        while (done < size) {
            int64_t got = s3_read(src, buf, 1 << 20, e), put;
            if (got <= 0) {
                if (got < 0)
                    done = got;
                break;
            }
            put = s3_write(wf, buf, (size_t)got, e);
            if (put < 0) {
                done = put;
                break;
            }
            done += got;
        }
        free(buf);
    }
    return done;
}

static int s3_commit(struct tm__wfile *wf, int64_t mtime, uint32_t mode,
                     unsigned flags, struct tm__aerr *e)
{
    struct s3w *f = (struct s3w *)wf;
    struct s3a *a = (struct s3a *)wf->a;
    struct tm__s3_meta m;
    struct tm__s3_put_opts o;
    struct tm__s3_err se;
    char *id = NULL;
    int rc = 0, fix = 0, create_only = 0;

    meta_of(f, mtime, mode, &m);
    memset(&o, 0, sizeof o);
    o.meta = &m;
    if (!f->copy_key) {
        if (!f->w && f->seen < f->size) {
            rc = node_err(e, TM_EIO, "s3 commit %s: %lld of %lld bytes written",
                          f->key, (long long)f->seen, (long long)f->size);
            goto out;
        }
        if (!f->w && (rc = start_writer(a, f, e)) != 0)
            goto out;
        /* with TM_NOREPLACE, a single PUT is create-only (If-None-Match:
         * *, atomic where the server takes it): no HEAD for the object */
        create_only = (flags & TM_NOREPLACE) && !tm__s3_writer_upload_id(f->w) &&
                      tm__s3_writer_create_only(f->w) == 0;
    }
    /* What is at the name, just before: a folder (its "name/" marker: an
     * object "name" beside the prefix "name/" would make the folder above
     * unlistable) is refused (not asked in a folder this adapter made,
     * where it made no such folder); with TM_NOREPLACE an object too, unless the PUT is
     * create-only. HEADs, two at once when both are asked. A multipart
     * upload or a server-side copy asks with a HEAD: a writer racing in
     * between is not seen, nor a folder without a marker
     * (docs/adapters.md). */
    if ((rc = folder_or_file(a, f->key, !marker_known_absent(a, f->key),
                             (flags & TM_NOREPLACE) && !create_only, e)) == 2)
        rc = node_err(e, TM_EISDIR, "s3 commit %s/%s: a folder is there (its "
                      "marker %s/)", a->bucket, f->key, f->key);
    else if (rc == 1)
        rc = node_err(e, TM_EEXIST, "s3 commit %s/%s: an object is there",
                      a->bucket, f->key);
    if (rc)
        goto out;
    if (f->copy_key) {
        /* the object copied must be the one opened and checked */
        o.src_etag = f->copy_etag;
        rc = aerr(e, &se, tm__s3_copy(a->s, a->bucket, f->key, f->copy_bucket,
                                      f->copy_key, f->size, &o, &se));
        goto out;
    }
    if (tm__s3_writer_upload_id(f->w)) {
        if (!(id = strdup(tm__s3_writer_upload_id(f->w)))) {
            rc = TM_ENOMEM;
            goto out;
        }
        /* the metadata went with the create: fixed after, if it changed */
        fix = mtime != f->mtime || (mode & 07777) != (f->mode & 07777);
    } else {
        tm__s3_writer_set_meta(f->w, &m);
    }
    rc = tm__s3_writer_commit(f->w, NULL, &se);
    f->w = NULL;
    if (rc) {
        aerr(e, &se, rc);
        /* the engine gives the write up: nothing may be left billing */
        if (id && (se.cls == TM_S3_RETRY || se.cls == TM_S3_THROTTLE))
            abort_id(a, f->key, id);
        goto out;
    }
    if (fix)
        rc = aerr(e, &se, tm__s3_copy(a->s, a->bucket, f->key, a->bucket, f->key,
                                      f->size, &o, &se));
out:
    free(id);
    if (f->w) {
        struct tm__s3_err e2;
        tm__s3_writer_abort(f->w, &e2);
    }
    wfile_free(f);
    return rc;
}

static void s3_abort(struct tm__wfile *wf)
{
    struct s3w *f = (struct s3w *)wf;
    if (f->w) {
        struct tm__s3_err se;
        tm__s3_writer_abort(f->w, &se);
    }
    wfile_free(f);
}

static int s3_forget_write(struct tm__adapter *ad, const char *path,
                           const void *state, size_t len, struct tm__aerr *e)
{
    struct s3a *a = (struct s3a *)ad;
    struct tm__s3_part *p = NULL;
    struct tm__buf k = TM__BUF_INIT;
    struct tm__s3_err se;
    char *id = NULL;
    int64_t ps;
    size_t n;
    int rc = state_parse(state, len, &id, &ps, &p, &n);
    free(p);
    if (rc)
        return rc == TM_ENOMEM ? rc : 0; /* nothing of ours */
    rc = key_of(a, path, &k);
    if (!rc)
        rc = aerr(e, &se, tm__s3_mp_abort(a->s, a->bucket, k.buf, id, &se));
    tm__buf_release(&k);
    free(id);
    return rc;
}

/* ---- folders ---- */

/* The slot of made[] for the folder key (klen bytes): FNV-1a. */
static size_t made_slot(const char *key, size_t klen)
{
    uint64_t h = 14695981039346656037ull;
    size_t i;
    for (i = 0; i < klen; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    return (size_t)(h % MADE_SLOTS);
}

/* 1 when this adapter made the folder key (klen bytes, no trailing '/')
 * lately, so that mkdir of its children need not ask the server whether
 * their parent is there. */
static int made_lately(struct s3a *a, const char *key, size_t klen)
{
    size_t h = made_slot(key, klen), p;
    int found = 0;
    pthread_mutex_lock(&a->made_mu);
    for (p = 0; p < MADE_PROBES && !found; p++) {
        const char *m = a->made[(h + p) % MADE_SLOTS];
        found = m && strlen(m) == klen && memcmp(m, key, klen) == 0;
    }
    pthread_mutex_unlock(&a->made_mu);
    return found;
}

/* Remembers the folder key (klen bytes) for made_lately: in the first
 * free one of its slots, else in place of the one at its hash. */
static void remember_made(struct s3a *a, const char *key, size_t klen)
{
    size_t h = made_slot(key, klen), i = h % MADE_SLOTS, p;
    char *k = strndup(key, klen), *old;
    if (!k)
        return; /* only a probe more */
    pthread_mutex_lock(&a->made_mu);
    for (p = 0; p < MADE_PROBES; p++) {
        const char *m = a->made[(h + p) % MADE_SLOTS];
        if (!m || (strlen(m) == klen && memcmp(m, key, klen) == 0)) {
            i = (h + p) % MADE_SLOTS;
            break;
        }
    }
    old = a->made[i];
    a->made[i] = k;
    pthread_mutex_unlock(&a->made_mu);
    free(old);
}

/* mkdir, and with m (mkdir_attr) the marker's metadata: a folder already
 * there gets its marker written again with them. */
static int mkdir_(struct s3a *a, const char *path, const struct tm__s3_meta *m,
                  struct tm__aerr *e)
{
    struct tm__buf k = TM__BUF_INIT;
    struct tm__s3_put_opts o;
    struct tm__s3_err se;
    const char *slash;
    int rc = key_of(a, path, &k), there;

    if (rc || k.len <= a->plen)
        goto out; /* the root is there */
    /* a folder is a prefix: made visible at once by its "name/" marker
     * (its attributes come with it from mkdir_attr, else with set_attr
     * after its children) */
    rc = name_probe(a, k.buf, k.len, e);
    if (rc == 1)
        rc = node_err(e, TM_EEXIST, "s3 mkdir %s/%s: an object (a file) is there",
                      a->bucket, k.buf);
    if (rc < 0)
        goto out;
    there = rc == 2;
    if (there && !m) {
        rc = 0; /* a folder there already is success */
        goto out;
    }
    slash = strrchr(k.buf + a->plen, '/');
    if (!there && slash && !made_lately(a, k.buf, (size_t)(slash - k.buf))) {
        /* the parent must be a folder, as on a file system (one this
         * adapter made a moment ago is: a copy deletes nothing) */
        rc = name_probe(a, k.buf, (size_t)(slash - k.buf), e);
        if (rc == 0 || rc == 1)
            rc = node_err(e, rc ? TM_ENOTDIR : TM_ENOENT, "s3 mkdir %s/%s: %s",
                          a->bucket, k.buf, rc ? "its parent is an object (a file)"
                                               : "no parent folder");
        if (rc < 0)
            goto out;
    }
    rc = 0;
    if (tm__buf_addch(&k, '/')) {
        rc = TM_ENOMEM;
        goto out;
    }
    memset(&o, 0, sizeof o);
    o.meta = m;
    rc = aerr(e, &se, tm__s3_put(a->s, a->bucket, k.buf, "", 0, &o, NULL, &se));
    if (!rc)
        remember_made(a, k.buf, k.len - 1);
out:
    tm__buf_release(&k);
    return rc;
}

static int s3_mkdir(struct tm__adapter *ad, const char *path, struct tm__aerr *e)
{
    return mkdir_((struct s3a *)ad, path, NULL, e);
}

static int s3_mkdir_attr(struct tm__adapter *ad, const char *path, int64_t mtime,
                         uint32_t mode, struct tm__aerr *e)
{
    struct tm__s3_meta m;
    memset(&m, 0, sizeof m);
    m.has_mtime = 1;
    m.mtime_ns = mtime;
    m.has_mode = 1;
    m.mode = S_IFDIR | (mode & 07777);
    return mkdir_((struct s3a *)ad, path, &m, e);
}

static int s3_set_attr(struct tm__adapter *ad, const char *path, int64_t mtime,
                       uint32_t mode, struct tm__aerr *e)
{
    struct s3a *a = (struct s3a *)ad;
    struct tm__buf k = TM__BUF_INIT;
    struct tm__s3_meta m;
    struct tm__s3_put_opts o;
    struct tm__s3_err se;
    int rc = key_of(a, path, &k);

    if (!rc && !k.len)
        goto out; /* the bucket itself */
    if (!rc && k.buf[k.len - 1] != '/' && tm__buf_addch(&k, '/'))
        rc = TM_ENOMEM;
    if (rc)
        goto out;
    /* the folder's "name/" marker (written again, or made for a prefix
     * that has none), with rclone's metadata; TM_MTIME_KEEP keeps the
     * mtime the marker has */
    memset(&m, 0, sizeof m);
    if (mtime != TM_MTIME_KEEP) {
        m.has_mtime = 1;
        m.mtime_ns = mtime;
    } else {
        struct tm__s3_stat st;
        rc = tm__s3_head(a->s, a->bucket, k.buf, &st, &se);
        if (rc && rc != TM_ENOENT) {
            aerr(e, &se, rc);
            goto out;
        }
        if (rc == 0 && st.meta.has_mtime) {
            m.has_mtime = 1;
            m.mtime_ns = st.meta.mtime_ns;
        }
        rc = 0;
    }
    m.has_mode = 1;
    m.mode = S_IFDIR | (mode & 07777);
    memset(&o, 0, sizeof o);
    o.meta = &m;
    rc = aerr(e, &se, tm__s3_put(a->s, a->bucket, k.buf, "", 0, &o, NULL, &se));
out:
    tm__buf_release(&k);
    return rc;
}

/* ---- the mirror (treemig delete) and --backup-dir ---- */

/* 1 when a key other than the folder's own marker is under the folder
 * key (its "name/" marker key, mlen bytes), 0 when none, or an error. */
static int folder_has_children(struct s3a *a, const char *marker, size_t mlen,
                               struct tm__aerr *e)
{
    struct tm__s3_list_req q;
    struct tm__s3_page pg;
    struct tm__s3_err se;
    size_t i;
    int rc;
    memset(&q, 0, sizeof q);
    q.prefix = marker;
    q.max_keys = 2; /* the marker comes first when it is there */
    rc = tm__s3_list(a->s, a->bucket, &q, &pg, &se);
    if (rc)
        return aerr(e, &se, rc);
    for (i = 0, rc = 0; i < pg.n_objects && !rc; i++)
        rc = pg.objects[i].key_len != mlen;
    tm__s3_page_release(&pg);
    return rc;
}

/* A server-side copy of the object key (size bytes) to dir + path, then
 * the object deleted: S3 has no rename. */
static int move_to_backup(struct s3a *a, const char *key, int64_t size,
                          const char *path, const char *dir, struct tm__aerr *e)
{
    struct tm__buf rel = TM__BUF_INIT, to = TM__BUF_INIT;
    struct tm__s3_err se;
    int rc = tm__backup_path(dir, path, &rel);
    if (!rc)
        rc = key_of(a, rel.buf, &to);
    if (!rc)
        rc = aerr(e, &se, tm__s3_copy(a->s, a->bucket, to.buf, a->bucket, key,
                                      size, NULL, &se));
    if (!rc)
        rc = aerr(e, &se, tm__s3_delete(a->s, a->bucket, key, &se));
    tm__buf_release(&rel);
    tm__buf_release(&to);
    return rc;
}

static int s3_backup(struct tm__adapter *ad, const char *path, const char *dir,
                     struct tm__aerr *e)
{
    struct s3a *a = (struct s3a *)ad;
    struct tm__buf k = TM__BUF_INIT;
    struct tm__entry now;
    int rc = s3_stat(ad, path, &now, e);
    if (!rc && now.type == TM_T_FOLDER)
        rc = node_err(e, TM_EISDIR, "%s is a folder: not moved to the backup "
                      "folder", path);
    if (!rc)
        rc = key_of(a, path, &k);
    if (!rc)
        rc = move_to_backup(a, k.buf, now.size, path, dir, e);
    tm__buf_release(&k);
    return rc;
}

/* The mirror: a HEAD (or a listing, for a folder) compared with what
 * discovery recorded, then DELETE of the object, or of an empty folder's
 * "name/" marker; with backup a file is copied there first. S3 cannot
 * make the check and the removal one step (docs/adapters.md). */
static int s3_remove(struct tm__adapter *ad, const char *path,
                     const struct tm__entry *want, const char *backup,
                     struct tm__aerr *e)
{
    struct s3a *a = (struct s3a *)ad;
    struct tm__buf k = TM__BUF_INIT;
    struct tm__s3_err se;
    struct tm__entry now;
    int rc;

    if (!path[1])
        return node_err(e, TM_EINVAL, "the root is never removed");
    rc = s3_stat(ad, path, &now, e);
    if (!rc)
        rc = tm__remove_check(path, &now, want, e);
    if (!rc)
        rc = key_of(a, path, &k);
    if (rc)
        goto out;
    if (now.type == TM_T_FOLDER) {
        if (tm__buf_addch(&k, '/')) {
            rc = TM_ENOMEM;
            goto out;
        }
        rc = folder_has_children(a, k.buf, k.len, e);
        if (rc == 1)
            rc = node_err(e, TM_ECHANGED, "%s is not empty: it holds what the "
                          "plan does not (kept)", path);
        else if (rc == 0)
            rc = aerr(e, &se, tm__s3_delete(a->s, a->bucket, k.buf, &se));
    } else if (backup) {
        rc = move_to_backup(a, k.buf, now.size, path, backup, e);
    } else {
        rc = aerr(e, &se, tm__s3_delete(a->s, a->bucket, k.buf, &se));
    }
out:
    tm__buf_release(&k);
    return rc;
}

/* ---- what S3 cannot hold ---- */

static int s3_cannot_hold(struct tm__adapter *ad, const char *path, size_t len,
                          int type, char *why, size_t whylen)
{
    struct s3a *a = (struct s3a *)ad;
    size_t klen = a->plen + (len ? len - 1 : 0) + (type == TM_T_FOLDER);
    if (type == TM_T_SYMLINK) {
        snprintf(why, whylen, "S3 cannot hold a symlink (an object store has none)");
        return 1;
    }
    if (type != TM_T_FILE && type != TM_T_FOLDER) {
        snprintf(why, whylen, "S3 cannot hold a special file");
        return 1;
    }
    if (!tm__utf8_valid(path, len)) {
        snprintf(why, whylen, "its name is not valid UTF-8, which an S3 key must be");
        return 1;
    }
    if (klen > S3_KEY_MAX) {
        snprintf(why, whylen, "its key would be %zu bytes (S3 takes at most %d)",
                 klen, S3_KEY_MAX);
        return 1;
    }
    return 0;
}

static void s3_close(struct tm__adapter *ad)
{
    struct s3a *a = (struct s3a *)ad;
    size_t i;
    tm__s3_free(a->s);
    for (i = 0; i < MADE_SLOTS; i++)
        free(a->made[i]);
    pthread_mutex_destroy(&a->made_mu);
    free(a->bucket);
    free(a->prefix);
    free(a);
}

/* ---- opening ---- */

/* Lists the root once (one key): the credentials, the bucket and the
 * endpoint are checked before anything else is done. */
static int probe(struct s3a *a, const char *spec, char *err, size_t errlen)
{
    const struct tm__s3_settings *set = tm__s3_settings(a->s);
    struct tm__s3_list_req q;
    struct tm__s3_page pg;
    struct tm__s3_err se;
    int rc, i;
    memset(&q, 0, sizeof q);
    q.prefix = a->prefix;
    q.delimiter = "/";
    q.max_keys = 1;
    for (i = 0;; i++) {
        rc = tm__s3_list(a->s, a->bucket, &q, &pg, &se);
        if (!rc) {
            tm__s3_page_release(&pg);
            return 0;
        }
        if ((se.cls != TM_S3_RETRY && se.cls != TM_S3_THROTTLE) || i + 1 >= PROBE_TRIES)
            break;
        {
            int64_t ms = se.retry_after_ms >= 0 ? se.retry_after_ms : 200LL << i;
            sleep_ms(ms > 5000 ? 5000 : ms);
        }
    }
    if (rc == TM_EACCES) {
        snprintf(err, errlen, "%s: the server at %s refused the credentials (from "
                 "%s): %s", spec, set->endpoint, set->cred_source, se.message);
        return TM_EAUTH;
    }
    if (rc == TM_EROOT) {
        snprintf(err, errlen, "%s: no such bucket at %s (or it is in another "
                 "region: --s3-region): %s", spec, set->endpoint, se.message);
        return TM_EROOT;
    }
    snprintf(err, errlen, "%s: cannot list it at %s: %s", spec, set->endpoint,
             se.message);
    return rc;
}

static int s3_kind_open(const char *spec, const struct tm__sopts *o,
                        struct tm__adapter **out, char *err, size_t errlen)
{
    struct tm__s3_config cfg;
    struct tm__s3_err se;
    struct s3a *a;
    char *prefix = NULL;
    int rc, f;

    *out = NULL;
    rc = check_opts(o, err, errlen);
    if (rc)
        return rc;
    a = calloc(1, sizeof *a);
    if (!a)
        return TM_ENOMEM;
    rc = parse_spec(spec, &a->bucket, &prefix, err, errlen);
    if (rc) {
        free(a);
        return rc;
    }
    a->plen = strlen(prefix);
    if (a->plen) {
        a->prefix = malloc(a->plen + 2);
        if (a->prefix) {
            memcpy(a->prefix, prefix, a->plen);
            a->prefix[a->plen++] = '/';
            a->prefix[a->plen] = '\0';
        }
        free(prefix);
    } else {
        a->prefix = prefix;
    }
    if (!a->prefix) {
        free(a->bucket);
        free(a);
        return TM_ENOMEM;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.endpoint = tm__sopt_get(o, "s3-endpoint");
    cfg.region = tm__sopt_get(o, "s3-region");
    f = opt_flag(o, "s3-path-style");
    cfg.path_style = f < 0 ? -1 : f;
    cfg.storage_class = tm__sopt_get(o, "s3-storage-class");
    cfg.profile = tm__sopt_get(o, "s3-profile");
    cfg.part_size = opt_size(o, "s3-part-size");
    cfg.part_retries = -1;
    a->server_mtime = opt_flag(o, "s3-server-modtime") == 1;
    rc = tm__s3_open(&cfg, &a->s, &se);
    if (rc) {
        snprintf(err, errlen, "%s: %s", spec, se.message);
        free(a->bucket);
        free(a->prefix);
        free(a);
        if (rc == TM_EINVAL)
            rc = strstr(se.message, "no credentials") ? TM_EAUTH : TM_EBADSPEC;
        return rc;
    }
    pthread_mutex_init(&a->made_mu, NULL);
    a->base.version = 2;
    a->base.name = "s3";
    a->base.caps = TM_CAP_MODES;
    /* treemig's x-amz-meta-mtime keeps nanoseconds; rclone writes it
     * through a float64 (about 240 ns off at today's dates): compared to
     * the millisecond, both tools' objects match their sources. Without
     * the metadata (s3-server-modtime), mtimes are S3's and not compared. */
    a->base.mtime_precision = a->server_mtime ? INT64_MAX : 1000000;
    a->base.list_open = s3_list_open;
    a->base.list_next = s3_list_next;
    a->base.list_pos = s3_list_pos;
    a->base.list_close = s3_list_close;
    a->base.stat = s3_stat;
    a->base.stat_many = s3_stat_many;
    a->base.close = s3_close;
    a->base.open_read = s3_open_read;
    a->base.read = s3_read;
    a->base.fstat = s3_fstat;
    a->base.close_read = s3_close_read;
    a->base.open_write = s3_open_write;
    a->base.write = s3_write;
    a->base.copy_from = s3_copy_from;
    a->base.commit = s3_commit;
    a->base.abort = s3_abort;
    a->base.mkdir = s3_mkdir;
    a->base.mkdir_attr = s3_mkdir_attr;
    a->base.set_attr = s3_set_attr;
    a->base.forget_write = s3_forget_write;
    a->base.cannot_hold = s3_cannot_hold;
    a->base.remove = s3_remove;
    a->base.backup = s3_backup;
    rc = probe(a, spec, err, errlen);
    if (rc) {
        s3_close(&a->base);
        return rc;
    }
    *out = &a->base;
    return 0;
}

static const char *const s3_keys[] = {
    "s3-endpoint", "s3-region", "s3-path-style", "s3-storage-class",
    "s3-profile", "s3-part-size", "s3-server-modtime", NULL,
};

/* 32 operations in flight per side: each S3 request is a round trip that
 * mostly waits (a small PUT or a HEAD is one RTT: 20 ms away, one stream
 * does 50 a second, 32 do 1,600, below the 3,500 PUTs a second one AWS
 * prefix takes before SlowDown); a listing page HEADs 16 objects at once
 * on top. Memory stays bounded: a file below the part size (8 MiB) is one
 * buffer, a multipart writer holds one part, and more (up to 4) only
 * while all writers hold fewer than 64 (512 MiB). */
const struct tm__kind tm__s3_kind = {
    "s3", "s3://", 32, s3_keys, s3_resolve, s3_kind_open, s3_overlap,
};
