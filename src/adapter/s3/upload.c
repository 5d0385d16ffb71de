/*
 * upload.c - a whole object written as a stream (struct tm__s3_writer):
 * kept in memory and sent by one PUT up to the multipart threshold,
 * otherwise a multipart upload whose parts go out as they fill, several at
 * once. The caller's thread fills part buffers; one driver thread per
 * multipart writer (started with its first part) sends them through a
 * curl multi handle, so that parts go on while the caller waits for its
 * source. Each part carries its Content-MD5; a part that fails with a
 * transient error is sent again after a backoff (the server's Retry-After
 * when it gave one); each part on the server is reported to the caller
 * (on_part, from the driver thread) so that it can be recorded and the
 * upload resumed after a crash (tm__s3_writer_resume).
 *
 * Lock order: w->lock, then the client's pool lock (taken inside
 * tm__s3req_prepare). Slot states: 0 free, 1 filling (the caller's), 4
 * queued, 2 sending, 3 waiting to be sent again (the driver's); the state
 * changes under w->lock, the multi handle is the driver's alone.
 *
 * Memory: at most parts_in_flight part buffers per writer (4 x 8 MiB by
 * default), and beyond the first one of each writer only while all the
 * writers of the client hold fewer than its budget (part_buffers, 64);
 * a single PUT holds the whole object (at most the threshold).
 */
#include "adapter/s3/s3_int.h"

#include "treemig.h"
#include "util/util.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One part buffer. */
struct slot {
    char *buf;           /* part_size bytes (malloc'd on first use) */
    size_t len;          /* bytes in it */
    int number;          /* its part number, 0 while free */
    int busy;            /* 0 free, 1 filling, 4 queued, 2 sending,
                            3 waiting to be sent again */
    int tries;           /* sends that failed */
    int64_t due_ns;      /* when to resend (state 3), monotonic */
    struct s3req r;      /* the request while sending */
    char md5b[25];       /* Content-MD5 */
    char num[16];        /* the part number as text */
    struct tm__s3_err err; /* the detail of the last failure */
};

struct tm__s3_writer {
    struct tm__s3 *s;           /* the client */
    char *bucket, *key;         /* where */
    int64_t size;               /* bytes the object has */
    int64_t part_size;          /* bytes per part (the last may be less) */
    int multipart;              /* 0: one PUT at commit */
    struct tm__s3_meta meta;    /* a copy of the caller's metadata */
    int has_meta;               /* meta is set */
    struct tm__s3_put_opts opts; /* the options (pointing at the copies) */
    char *content_type, *storage_class; /* copies */
    char *upload_id;            /* the multipart upload, or NULL */
    tm__s3_part_fn on_part;     /* told of each part on the server */
    void *ctx;                  /* passed to on_part */
    char *whole;                /* single PUT: the object */
    int64_t written;            /* bytes given so far (resume: from offset) */
    int n_parts;                /* parts the object has */
    struct tm__s3_part *parts;  /* n_parts entries, number 0 while missing */
    int next_number;            /* the number of the next part to fill */
    int run;                    /* parts 1..run are on the server */
    struct slot *slots;         /* parts_in_flight buffers */
    int n_slots;                /* their count */
    int cur;                    /* the slot being filled, -1 */
    CURLM *m;                   /* drives the parts in flight (driver's) */
    pthread_t th;               /* the driver thread */
    int th_started;             /* th runs (until joined) */
    int stop;                   /* tells the driver to end */
    pthread_mutex_t lock;       /* guards slots' states, parts, failed */
    pthread_cond_t cond;        /* a slot became free, or a part ended */
    EVP_MD_CTX *md5;            /* MD5 of the whole object: NULL unless
                                   asked (whole_md5), or when the writer
                                   did not see every byte */
    EVP_MD_CTX *part_md5;       /* MD5 of the part being filled (the
                                   caller's, while it copies the bytes in:
                                   they are still in cache) */
    int failed;                 /* the first error of a part, 0 */
    struct tm__s3_err ferr;     /* its detail */
};

static int64_t now_ns(void)
{
    return tm__now_ns();
}

static int wfail(struct tm__s3_writer *w, struct tm__s3_err *err, int code,
                 int cls, const char *what)
{
    return tm__s3_fail(w->s, err, code, cls, "write", w->bucket, w->key, "%s",
                       what);
}

static void driver_stop(struct tm__s3_writer *w)
{
    if (!w->th_started)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_mutex_unlock(&w->lock);
    curl_multi_wakeup(w->m);
    pthread_join(w->th, NULL);
    w->th_started = 0;
}

static void writer_free(struct tm__s3_writer *w)
{
    int i;
    if (!w)
        return;
    driver_stop(w);
    for (i = 0; i < w->n_slots; i++)
        if (w->slots[i].buf) {
            free(w->slots[i].buf);
            atomic_fetch_sub(&w->s->part_bufs, 1);
        }
    if (w->m)
        curl_multi_cleanup(w->m);
    if (w->n_slots) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
    }
    free(w->slots);
    free(w->parts);
    free(w->whole);
    free(w->upload_id);
    free(w->bucket);
    free(w->key);
    free(w->content_type);
    free(w->storage_class);
    if (w->md5)
        EVP_MD_CTX_free(w->md5);
    if (w->part_md5)
        EVP_MD_CTX_free(w->part_md5);
    free(w);
}

/* The common part of open and resume: everything but the upload. */
static int writer_new(struct tm__s3 *s, const char *bucket, const char *key,
                      int64_t size, const struct tm__s3_put_opts *o,
                      tm__s3_part_fn on_part, void *ctx,
                      struct tm__s3_writer **out, struct tm__s3_err *err)
{
    struct tm__s3_writer *w;
    int64_t threshold;

    *out = NULL;
    tm__s3_err_clear(err);
    if (size < 0)
        return tm__s3_fail(s, err, TM_EINVAL, TM_S3_NODE, "write", bucket, key,
                           "negative size");
    w = calloc(1, sizeof(*w));
    if (!w)
        goto nomem;
    w->s = s;
    w->size = size;
    w->cur = -1;
    w->on_part = on_part;
    w->ctx = ctx;
    w->part_size = tm__s3_part_size(s, size);
    threshold = s->threshold ? s->threshold : w->part_size;
    w->multipart = size > threshold;
    w->bucket = strdup(bucket);
    w->key = strdup(key);
    if (!w->bucket || !w->key)
        goto nomem;
    if (o) {
        if (o->meta) {
            w->meta = *o->meta;
            w->opts.meta = &w->meta;
        }
        if (o->content_type && !(w->opts.content_type = w->content_type =
                                     strdup(o->content_type)))
            goto nomem;
        if (o->storage_class && !(w->opts.storage_class = w->storage_class =
                                      strdup(o->storage_class)))
            goto nomem;
    }
    if (!w->multipart) {
        w->whole = malloc(size ? (size_t)size : 1);
        if (!w->whole)
            goto nomem;
    } else {
        w->n_parts = (int)((size + w->part_size - 1) / w->part_size);
        if (w->n_parts > 10000) {
            writer_free(w);
            return tm__s3_fail(s, err, TM_EFBIG, TM_S3_NODE, "write", bucket,
                               key, "more than 10000 parts");
        }
        w->parts = calloc((size_t)w->n_parts, sizeof(*w->parts));
        w->slots = calloc((size_t)s->parts_in_flight, sizeof(*w->slots));
        w->m = curl_multi_init();
        if (!w->parts || !w->slots || !w->m)
            goto nomem;
        w->n_slots = s->parts_in_flight;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        w->next_number = 1;
        if (!(w->part_md5 = EVP_MD_CTX_new()))
            goto nomem;
    }
    if (o && o->whole_md5 &&
        (!(w->md5 = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(w->md5, EVP_md5(), NULL)))
        goto nomem;
    *out = w;
    return 0;
nomem:
    writer_free(w);
    return tm__s3_fail(s, err, TM_ENOMEM, TM_S3_FATAL, "write", bucket, key,
                       "out of memory");
}

int tm__s3_writer_open(struct tm__s3 *s, const char *bucket, const char *key,
                       int64_t size, const struct tm__s3_put_opts *o,
                       tm__s3_part_fn on_part, void *ctx,
                       struct tm__s3_writer **out, struct tm__s3_err *err)
{
    struct tm__s3_writer *w;
    int rc = writer_new(s, bucket, key, size, o, on_part, ctx, &w, err);
    if (rc)
        return rc;
    if (w->multipart) {
        rc = tm__s3_mp_create(s, bucket, key, &w->opts, &w->upload_id, err);
        if (rc) {
            writer_free(w);
            return rc;
        }
    }
    *out = w;
    return 0;
}

static int part_cmp(const void *a, const void *b)
{
    const struct tm__s3_part *x = a, *y = b;
    return x->number - y->number;
}

int tm__s3_writer_resume(struct tm__s3 *s, const char *bucket, const char *key,
                         int64_t size, const char *upload_id,
                         const struct tm__s3_part *recorded, size_t n,
                         tm__s3_part_fn on_part, void *ctx,
                         struct tm__s3_writer **out, int64_t *offset,
                         struct tm__s3_err *err)
{
    struct tm__s3_writer *w;
    struct tm__s3_part *have = NULL;
    size_t n_have = 0, i;
    int rc, k;

    *offset = 0;
    rc = writer_new(s, bucket, key, size, NULL, on_part, ctx, &w, err);
    if (rc)
        return rc;
    if (!w->multipart) {
        writer_free(w);
        return tm__s3_fail(s, err, TM_EINVAL, TM_S3_NODE, "resume", bucket, key,
                           "a single-request object has no upload to resume");
    }
    w->upload_id = strdup(upload_id);
    if (!w->upload_id) {
        writer_free(w);
        return tm__s3_fail(s, err, TM_ENOMEM, TM_S3_FATAL, "resume", bucket,
                           key, "out of memory");
    }
    rc = tm__s3_mp_list_parts(s, bucket, key, upload_id, &have, &n_have, err);
    if (rc == TM_EINVAL && err && (!strcmp(err->s3code, "NotImplemented") ||
                                   !strcmp(err->s3code, "MethodNotAllowed"))) {
        /* the server cannot list parts: trust what the caller recorded */
        tm__s3_err_clear(err);
        rc = 0;
        if (n) {
            have = malloc(n * sizeof(*have));
            if (!have)
                rc = TM_ENOMEM;
            else
                memcpy(have, recorded, n * sizeof(*have));
            n_have = n;
        }
    }
    if (rc) {
        writer_free(w);
        return rc;
    }
    qsort(have, n_have, sizeof(*have), part_cmp);
    /* keep the run 1..k of parts of the expected sizes */
    for (i = 0, k = 0; i < n_have && k < w->n_parts; i++) {
        int64_t want = k + 1 < w->n_parts ? w->part_size
                                           : size - (int64_t)k * w->part_size;
        if (have[i].number != k + 1 || have[i].size != want || !have[i].etag[0])
            break;
        w->parts[k++] = have[i];
    }
    free(have);
    w->next_number = k + 1;
    w->run = k;
    w->written = (int64_t)k * w->part_size;
    if (w->written > size)
        w->written = size;
    EVP_MD_CTX_free(w->md5);
    w->md5 = NULL; /* the bytes before the offset were not seen */
    *offset = w->written;
    *out = w;
    return 0;
}

const char *tm__s3_writer_upload_id(const struct tm__s3_writer *w)
{
    return w->upload_id;
}

int64_t tm__s3_writer_part_size(const struct tm__s3_writer *w)
{
    return w->part_size;
}

size_t tm__s3_writer_done_count(struct tm__s3_writer *w)
{
    int k;
    if (!w->multipart)
        return 0;
    pthread_mutex_lock(&w->lock);
    k = w->run;
    pthread_mutex_unlock(&w->lock);
    return (size_t)k;
}

int tm__s3_writer_done_parts(struct tm__s3_writer *w, struct tm__s3_part **parts,
                             size_t *n)
{
    int k;
    *parts = NULL;
    *n = 0;
    if (!w->multipart)
        return 0;
    pthread_mutex_lock(&w->lock);
    k = w->run;
    if (k && !(*parts = malloc((size_t)k * sizeof(**parts)))) {
        pthread_mutex_unlock(&w->lock);
        return TM_ENOMEM;
    }
    if (k)
        memcpy(*parts, w->parts, (size_t)k * sizeof(**parts));
    pthread_mutex_unlock(&w->lock);
    *n = (size_t)k;
    return 0;
}

int tm__s3_writer_create_only(struct tm__s3_writer *w)
{
    if (w->multipart)
        return TM_EINVAL;
    w->opts.create_only = 1;
    return 0;
}

/* Learns whether the server honours If-None-Match: * on a PUT, once per
 * client (s->create_only), before its first create-only PUT: an empty
 * probe object beside key is PUT twice with the header (the second must
 * be 412), then deleted. A server that refuses the header (501, 400) or
 * ignores it (the second PUT succeeds) gets a HEAD before each create.
 * 0, or the error of a probe that could not tell (tried again later). */
static int probe_create_only(struct tm__s3 *s, const char *bucket, const char *key,
                             struct tm__s3_err *err)
{
    struct tm__s3_put_opts o;
    struct tm__s3_err e2;
    struct tm__buf k = TM__BUF_INIT;
    const char *slash = strrchr(key, '/');
    unsigned char rnd[8];
    int rc = 0, i, state = 0;

    pthread_mutex_lock(&s->probe_mu);
    if (atomic_load(&s->create_only))
        goto out; /* another writer probed meanwhile */
    if ((rc = tm__random(rnd, sizeof rnd)) != 0)
        goto out;
    rc = tm__buf_add(&k, key, slash ? (size_t)(slash - key + 1) : 0) ||
         tm__buf_adds(&k, ".treemig-if-none-match-probe-") ? TM_ENOMEM : 0;
    for (i = 0; !rc && i < (int)sizeof rnd; i++)
        rc = tm__buf_addf(&k, "%02x", rnd[i]);
    if (rc)
        goto out;
    memset(&o, 0, sizeof o);
    o.create_only = 1;
    for (i = 0; i < 2 && !state; i++) {
        rc = tm__s3_put(s, bucket, k.buf, "", 0, &o, NULL, err);
        if (rc == TM_ENOTSUP)
            state = 2; /* refused */
        else if (i == 1 && rc == TM_EEXIST)
            state = 1; /* honoured */
        else if (i == 1 && rc == 0)
            state = 2; /* ignored: the second PUT replaced the first */
        else if (rc)
            break;
    }
    if (state) {
        tm__s3_err_clear(err);
        rc = 0;
        atomic_store(&s->create_only, state);
    }
    tm__s3_delete(s, bucket, k.buf, &e2);
out:
    pthread_mutex_unlock(&s->probe_mu);
    tm__buf_release(&k);
    return rc;
}

/* The single PUT of a create-only writer: conditional where the server
 * honours If-None-Match, else a HEAD first. */
static int put_create_only(struct tm__s3_writer *w, struct tm__s3_err *err)
{
    struct tm__s3 *s = w->s;
    struct tm__s3_put_opts o = w->opts;
    struct tm__s3_stat st;
    int rc;
    if (!atomic_load(&s->create_only) &&
        (rc = probe_create_only(s, w->bucket, w->key, err)) != 0)
        return rc;
    if (atomic_load(&s->create_only) == 1) {
        rc = tm__s3_put(s, w->bucket, w->key, w->whole, (size_t)w->size, &o, NULL,
                        err);
        if (rc != TM_ENOTSUP)
            return rc;
        atomic_store(&s->create_only, 2); /* refused after all */
    }
    rc = tm__s3_head(s, w->bucket, w->key, &st, err);
    if (rc == 0)
        return tm__s3_fail(s, err, TM_EEXIST, TM_S3_NODE, "put", w->bucket, w->key,
                           "an object is there");
    if (rc != TM_ENOENT)
        return rc;
    tm__s3_err_clear(err);
    o.create_only = 0;
    return tm__s3_put(s, w->bucket, w->key, w->whole, (size_t)w->size, &o, NULL, err);
}

int tm__s3_writer_set_meta(struct tm__s3_writer *w, const struct tm__s3_meta *m)
{
    if (w->multipart)
        return TM_EINVAL;
    w->meta = *m;
    w->opts.meta = &w->meta;
    return 0;
}

/* Starts sending slot i (the driver, under w->lock). */
static void slot_send(struct tm__s3_writer *w, int i)
{
    struct slot *sl = &w->slots[i];
    int rc;

    if (sl->tries == 0)
        snprintf(sl->num, sizeof(sl->num), "%d", sl->number);
    tm__s3req_init(&sl->r, w->s, "upload part", "PUT", w->bucket, w->key,
                   &sl->err);
    tm__s3req_q(&sl->r, "partNumber", sl->num);
    tm__s3req_q(&sl->r, "uploadId", w->upload_id);
    tm__s3req_h(&sl->r, "Content-MD5", sl->md5b);
    sl->r.body = sl->buf;
    sl->r.body_len = sl->len;
    rc = tm__s3req_prepare(&sl->r);
    if (!rc) {
        curl_easy_setopt(sl->r.h, CURLOPT_PRIVATE, (char *)sl);
        if (curl_multi_add_handle(w->m, sl->r.h) != CURLM_OK)
            rc = tm__s3_fail(w->s, &sl->err, TM_ENOMEM, TM_S3_FATAL,
                             "upload part", w->bucket, w->key, "out of memory");
    }
    if (rc) {
        tm__s3req_release(&sl->r);
        sl->busy = 0;
        if (!w->failed) {
            w->failed = rc;
            w->ferr = sl->err;
        }
        pthread_cond_broadcast(&w->cond);
        return;
    }
    sl->busy = 2;
}

/* One part's transfer ended with cc (the driver, without the lock). */
static void slot_done(struct tm__s3_writer *w, struct slot *sl, CURLcode cc)
{
    struct tm__s3_part p;
    int rc = tm__s3req_finish(&sl->r, cc);
    if (!rc && !sl->r.etag[0])
        rc = tm__s3_fail(w->s, &sl->err, TM_EIO, TM_S3_RETRY, "upload part",
                         w->bucket, w->key, "no etag for part %d", sl->number);
    curl_multi_remove_handle(w->m, sl->r.h);
    memset(&p, 0, sizeof(p));
    p.number = sl->number;
    p.size = (int64_t)sl->len;
    snprintf(p.etag, sizeof(p.etag), "%s", sl->r.etag);
    tm__s3req_release(&sl->r);
    if (!rc && w->on_part) {
        /* recorded before the slot is given back: what is recorded is on
         * the server */
        int prc = w->on_part(w->ctx, w->upload_id, &p);
        if (prc) {
            pthread_mutex_lock(&w->lock);
            if (!w->failed) {
                w->failed = prc;
                tm__s3_fail(w->s, &w->ferr, prc, TM_S3_NODE, "upload part",
                            w->bucket, w->key, "recording part %d failed: %s",
                            p.number, tm_strerror(prc));
            }
            pthread_mutex_unlock(&w->lock);
        }
    }
    pthread_mutex_lock(&w->lock);
    if (!rc) {
        w->parts[p.number - 1] = p;
        while (w->run < w->n_parts && w->parts[w->run].number)
            w->run++;
        sl->busy = 0;
    } else if ((sl->err.cls == TM_S3_RETRY || sl->err.cls == TM_S3_THROTTLE) &&
               sl->tries < w->s->part_retries && !w->failed) {
        int64_t wait_ms = sl->err.retry_after_ms >= 0
                              ? sl->err.retry_after_ms
                              : (int64_t)100 << (sl->tries < 6 ? sl->tries : 6);
        sl->tries++;
        sl->busy = 3;
        sl->due_ns = now_ns() + wait_ms * 1000000;
    } else {
        sl->busy = 0;
        if (!w->failed) {
            w->failed = rc;
            w->ferr = sl->err;
        }
    }
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* The driver thread: sends queued parts, reaps ended ones, sends failed
 * ones again when due, until told to stop. */
static void *driver_main(void *arg)
{
    struct tm__s3_writer *w = arg;
    int i;
    for (;;) {
        int running = 0, left, stop;
        int64_t wait_ms = 1000, t = now_ns();
        CURLMsg *msg;

        pthread_mutex_lock(&w->lock);
        for (i = 0; i < w->n_slots; i++) {
            struct slot *sl = &w->slots[i];
            if ((sl->busy == 4 || (sl->busy == 3 && sl->due_ns <= t)) && !w->failed) {
                slot_send(w, i);
            } else if ((sl->busy == 3 || sl->busy == 4) && w->failed) {
                sl->busy = 0;
                pthread_cond_broadcast(&w->cond);
            }
            if (sl->busy == 3 && (sl->due_ns - t) / 1000000 < wait_ms)
                wait_ms = (sl->due_ns - t) / 1000000;
        }
        stop = w->stop;
        pthread_mutex_unlock(&w->lock);
        if (stop)
            break;
        curl_multi_perform(w->m, &running);
        while ((msg = curl_multi_info_read(w->m, &left))) {
            struct slot *sl = NULL;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
            if (sl)
                slot_done(w, sl, msg->data.result);
        }
        curl_multi_poll(w->m, NULL, 0, wait_ms > 0 ? (int)wait_ms : 0, NULL);
    }
    /* stopped: whatever is still in flight is dropped */
    pthread_mutex_lock(&w->lock);
    for (i = 0; i < w->n_slots; i++) {
        struct slot *sl = &w->slots[i];
        if (sl->busy == 2 && sl->r.h) {
            curl_multi_remove_handle(w->m, sl->r.h);
            tm__s3req_release(&sl->r);
        }
        if (sl->busy != 1)
            sl->busy = 0;
    }
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Hands the full slot i to the driver (started on first use). */
static int queue_slot(struct tm__s3_writer *w, int i)
{
    pthread_mutex_lock(&w->lock);
    w->slots[i].busy = 4;
    pthread_mutex_unlock(&w->lock);
    if (!w->th_started) {
        if (pthread_create(&w->th, NULL, driver_main, w)) {
            pthread_mutex_lock(&w->lock);
            w->slots[i].busy = 0;
            if (!w->failed) {
                w->failed = TM_EAGAIN;
                tm__s3_fail(w->s, &w->ferr, TM_EAGAIN, TM_S3_RETRY, "write",
                            w->bucket, w->key, "cannot start the upload thread");
            }
            pthread_mutex_unlock(&w->lock);
            return TM_EAGAIN;
        }
        w->th_started = 1;
    }
    curl_multi_wakeup(w->m);
    return 0;
}

/* A free slot to fill, waiting for one when all are busy. */
static int take_slot(struct tm__s3_writer *w)
{
    int i, rc = 0;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        if (w->failed) {
            rc = w->failed;
            break;
        }
        /* a free slot with a buffer first; a new buffer only for the
         * writer's first slot or within the client's budget */
        for (i = 0; i < w->n_slots; i++)
            if (w->slots[i].busy == 0 && w->slots[i].buf)
                break;
        if (i == w->n_slots) {
            int have = 0, j;
            for (j = 0; j < w->n_slots; j++)
                have |= w->slots[j].buf != NULL;
            for (i = 0; i < w->n_slots; i++)
                if (w->slots[i].busy == 0)
                    break;
            if (i < w->n_slots && have &&
                atomic_load(&w->s->part_bufs) >= w->s->part_budget)
                i = w->n_slots; /* wait for one of ours to come back */
        }
        if (i < w->n_slots) {
            struct slot *sl = &w->slots[i];
            if (!sl->buf) {
                if (!(sl->buf = malloc((size_t)w->part_size))) {
                    rc = TM_ENOMEM;
                    break;
                }
                atomic_fetch_add(&w->s->part_bufs, 1);
            }
            sl->busy = 1;
            sl->len = 0;
            sl->tries = 0;
            sl->number = w->next_number++;
            rc = i;
            break;
        }
        pthread_cond_wait(&w->cond, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

/* Waits until every part queued so far ended; returns the first error. */
static int wait_parts(struct tm__s3_writer *w)
{
    int i, busy, rc;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        for (i = 0, busy = 0; i < w->n_slots; i++)
            if (w->slots[i].busy >= 2)
                busy = 1;
        if (!busy || w->failed)
            break;
        pthread_cond_wait(&w->cond, &w->lock);
    }
    rc = w->failed;
    pthread_mutex_unlock(&w->lock);
    return rc;
}

int tm__s3_writer_write(struct tm__s3_writer *w, const void *data, size_t n,
                        struct tm__s3_err *err)
{
    const char *p = data;
    tm__s3_err_clear(err);
    if (w->multipart) {
        int f;
        pthread_mutex_lock(&w->lock);
        f = w->failed;
        if (f && err)
            *err = w->ferr;
        pthread_mutex_unlock(&w->lock);
        if (f)
            return f;
    }
    if ((int64_t)n > w->size - w->written)
        return wfail(w, err, TM_EFBIG, TM_S3_NODE,
                     "more bytes than the size given at open");
    if (w->md5)
        EVP_DigestUpdate(w->md5, data, n);
    if (!w->multipart) {
        memcpy(w->whole + w->written, data, n);
        w->written += (int64_t)n;
        return 0;
    }
    while (n > 0) {
        struct slot *sl;
        int64_t want;
        size_t k;
        if (w->cur < 0) {
            int i = take_slot(w);
            if (i == TM_ENOMEM)
                return wfail(w, err, i, TM_S3_FATAL, "out of memory");
            if (i < 0) {
                pthread_mutex_lock(&w->lock);
                if (err)
                    *err = w->ferr;
                pthread_mutex_unlock(&w->lock);
                return i;
            }
            w->cur = i;
        }
        sl = &w->slots[w->cur];
        if (sl->len == 0 && !EVP_DigestInit_ex(w->part_md5, EVP_md5(), NULL))
            return wfail(w, err, TM_ENOMEM, TM_S3_FATAL, "out of memory");
        want = sl->number < w->n_parts
                   ? w->part_size
                   : w->size - (int64_t)(sl->number - 1) * w->part_size;
        k = (size_t)(want - (int64_t)sl->len) < n ? (size_t)(want - (int64_t)sl->len) : n;
        memcpy(sl->buf + sl->len, p, k);
        EVP_DigestUpdate(w->part_md5, sl->buf + sl->len, k);
        sl->len += k;
        p += k;
        n -= k;
        w->written += (int64_t)k;
        if ((int64_t)sl->len == want) {
            unsigned char md5[EVP_MAX_MD_SIZE];
            unsigned int ml = 0;
            int rc;
            EVP_DigestFinal_ex(w->part_md5, md5, &ml);
            tm__md5_base64(md5, sl->md5b);
            w->cur = -1;
            rc = queue_slot(w, (int)(sl - w->slots));
            if (rc) {
                if (err)
                    *err = w->ferr;
                return rc;
            }
        }
    }
    return 0;
}

/* After a failed Complete at commit: 1 when it is sent again
 * (a transient class, fewer than part_retries tries so far), after the
 * server's Retry-After or a backoff. */
static int transient_again(struct tm__s3_writer *w, struct tm__s3_err *err,
                           int *tries)
{
    int64_t wait_ms;
    struct timespec ts;
    if (!err || (err->cls != TM_S3_RETRY && err->cls != TM_S3_THROTTLE) ||
        *tries >= w->s->part_retries)
        return 0;
    wait_ms = err->retry_after_ms >= 0 ? err->retry_after_ms
                                       : (int64_t)100 << (*tries < 6 ? *tries : 6);
    if (wait_ms > 10000)
        wait_ms = 10000;
    (*tries)++;
    ts.tv_sec = (time_t)(wait_ms / 1000);
    ts.tv_nsec = (long)(wait_ms % 1000) * 1000000;
    while (nanosleep(&ts, &ts) != 0)
        ;
    return 1;
}

int tm__s3_writer_commit(struct tm__s3_writer *w, char *md5_hex,
                         struct tm__s3_err *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int ml = 0, i;
    int rc = 0;

    tm__s3_err_clear(err);
    if (md5_hex)
        md5_hex[0] = '\0';
    if (w->written != w->size) {
        rc = tm__s3_fail(w->s, err, TM_EINVAL, TM_S3_NODE, "commit", w->bucket,
                         w->key, "%lld of %lld bytes written",
                         (long long)w->written, (long long)w->size);
        goto fail;
    }
    if (!w->multipart) {
        /* a failed PUT is the caller's to retry (its policy sees the
         * throttle); a Complete is retried here, not to lose the parts */
        rc = w->opts.create_only
                 ? put_create_only(w, err)
                 : tm__s3_put(w->s, w->bucket, w->key, w->whole, (size_t)w->size,
                              &w->opts, NULL, err);
    } else {
        rc = wait_parts(w);
        driver_stop(w);
        if (rc) {
            if (err)
                *err = w->ferr;
            goto fail;
        }
        for (i = 0; i < (unsigned)w->n_parts; i++)
            if (!w->parts[i].number) {
                rc = tm__s3_fail(w->s, err, TM_EIO, TM_S3_NODE, "commit",
                                 w->bucket, w->key, "part %u missing", i + 1);
                goto fail;
            }
        {
            int tries = 0;
            while ((rc = tm__s3_mp_complete(w->s, w->bucket, w->key, w->upload_id,
                                            w->parts, (size_t)w->n_parts, err)) != 0 &&
                   transient_again(w, err, &tries))
                ;
        }
    }
    if (rc)
        goto fail;
    if (w->md5 && md5_hex && EVP_DigestFinal_ex(w->md5, md, &ml)) {
        for (i = 0; i < ml && i < 16; i++)
            snprintf(md5_hex + 2 * i, 3, "%02x", md[i]);
    }
    writer_free(w);
    return 0;
fail:
    if (w->upload_id && err &&
        !(err->cls == TM_S3_RETRY || err->cls == TM_S3_THROTTLE)) {
        struct tm__s3_err e2;
        tm__s3_mp_abort(w->s, w->bucket, w->key, w->upload_id, &e2);
    }
    writer_free(w);
    return rc;
}

int tm__s3_writer_abort(struct tm__s3_writer *w, struct tm__s3_err *err)
{
    int rc = 0;
    tm__s3_err_clear(err);
    if (!w)
        return 0;
    /* stop the parts in flight first, so that none lands after the abort */
    driver_stop(w);
    if (w->upload_id)
        rc = tm__s3_mp_abort(w->s, w->bucket, w->key, w->upload_id, err);
    writer_free(w);
    return rc;
}
