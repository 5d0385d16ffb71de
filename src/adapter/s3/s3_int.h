/*
 * s3_int.h - what the files of src/adapter/s3/ share and nothing else
 * sees: the resolved credentials, the client's fields and one request
 * (struct s3req) from its preparation to its classified result, for a
 * blocking call (tm__s3req_run) or a transfer driven by a curl multi
 * handle (upload.c's parts in flight, client.c's pull reader).
 */
#ifndef TM_S3_INT_H
#define TM_S3_INT_H

#include "adapter/s3/s3.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>

/* Credentials: only config.c fills them and only sigv4 reads the secret. */
struct tm__s3_creds {
    char *access_key;    /* key id */
    char *secret_key;    /* secret, wiped at release */
    char *session_token; /* NULL when none; wiped at release */
};

/* Resolves cfg into set and cr (config.c). On failure err says why. */
int tm__s3_resolve(const struct tm__s3_config *cfg, struct tm__s3_settings *set,
                   struct tm__s3_creds *cr, struct tm__s3_err *err);
void tm__s3_settings_release(struct tm__s3_settings *set);
void tm__s3_creds_release(struct tm__s3_creds *cr);

struct tm__s3 {
    struct tm__s3_settings set; /* what is in force */
    struct tm__s3_creds cr;     /* credentials (secret) */
    char *scheme;               /* "http" or "https" */
    char *host;                 /* host[:port] of the endpoint */
    char *base;                 /* path of the endpoint, "" or "/base" */
    int64_t part_size;          /* configured part size, 0: by size */
    int64_t threshold;          /* configured multipart threshold, 0 */
    int64_t copy_part_size;     /* CopyObject limit and copy part size */
    int parts_in_flight;        /* parts at once per writer */
    int part_retries;           /* retries of one part in a writer */
    int sign_payload;           /* sign the bodies' SHA-256 */
    long connect_timeout;       /* seconds */
    long low_speed_time;        /* seconds */
    struct curl_slist *resolve; /* CURLOPT_RESOLVE entries, or NULL */
    pthread_mutex_t lock;       /* guards pool, n_pool, mpool, n_mpool */
    CURL **pool;                /* idle easy handles (keep-alive) */
    size_t n_pool, cap_pool;    /* used, allocated */
    CURLM **mpool;              /* idle multi handles of tm__s3_head_many
                                   (each keeps its connections alive) */
    size_t n_mpool, cap_mpool;  /* used, allocated */
    int part_budget;            /* part buffers all writers may hold
                                   beyond their first one each */
    atomic_int part_bufs;       /* part buffers allocated now, all writers */
    atomic_llong requests;      /* requests made */
    atomic_int create_only;     /* does the server honour If-None-Match: *
                                   on a PUT? 0 not known yet, 1 yes, 2 no
                                   (refused or ignored: HEAD before a
                                   create instead) */
    pthread_mutex_t probe_mu;   /* one probe of create_only at a time */
};

/* Extra headers a request may carry. */
#define S3REQ_MAX_HDR 16
/* Query parameters a request may carry. */
#define S3REQ_MAX_Q 8

/* One request. The caller fills the first block (tm__s3req_init zeroes
 * it), tm__s3req_prepare() builds, signs and sets up r->h, the transfer
 * runs, tm__s3req_finish() classifies the result. */
struct s3req {
    struct tm__s3 *s;             /* the client */
    const char *op;               /* "list", "get", ... for messages */
    const char *method;           /* "GET", "PUT", "POST", "HEAD", "DELETE" */
    const char *bucket;           /* the bucket */
    const char *key;              /* the key, or NULL for the bucket */
    struct tm__s3_kv q[S3REQ_MAX_Q];     /* query parameters */
    size_t n_q;                          /* used */
    struct tm__s3_kv hdr[S3REQ_MAX_HDR]; /* extra headers, sent and signed */
    size_t n_hdr;                        /* used */
    const char *body;             /* the body to send, or NULL */
    size_t body_len;              /* its bytes */
    const char *payload_hash;     /* hex SHA-256 of body, NULL: computed when
                                     the client signs payloads */
    struct tm__s3_xml *xml;       /* where a 2xx XML answer goes, or NULL */
    tm__s3_sink_fn sink;          /* where a 2xx body goes, or NULL */
    void *sink_ctx;               /* passed to sink */
    struct tm__s3_stat *st;       /* headers of the answer, or NULL */
    struct tm__s3_err *err;       /* detail of a failure, or NULL */

    /* ---- filled by the request ---- */
    CURL *h;                      /* the easy handle (from the pool) */
    struct curl_slist *slist;     /* the headers given to curl */
    struct tm__buf url;           /* the URL */
    size_t sent;                  /* body bytes sent so far */
    long status;                  /* HTTP status (0: none yet) */
    int64_t content_length;       /* announced, -1: not said */
    int64_t received;             /* body bytes received */
    int64_t retry_after_ms;       /* from Retry-After, -1 */
    struct tm__s3_xml *exml;      /* the error body's parser */
    int xml_failed;               /* a body was not parseable */
    char xml_why[160];            /* why */
    int sink_rc;                  /* the sink's error, 0 */
    char etag[72];                /* ETag header, unquoted */
    char errbuf[CURL_ERROR_SIZE]; /* curl's message */
};

void tm__s3req_init(struct s3req *r, struct tm__s3 *s, const char *op,
                    const char *method, const char *bucket, const char *key,
                    struct tm__s3_err *err);
/* Adds a query parameter or a header (the strings must outlive r). */
void tm__s3req_q(struct s3req *r, const char *name, const char *value);
void tm__s3req_h(struct s3req *r, const char *name, const char *value);
/* Builds the URL and headers, signs, takes an easy handle: 0 or an error
 * (classified in r->err). */
int tm__s3req_prepare(struct s3req *r);
/* Classifies the transfer's end (cc from curl): 0 or the error, with
 * r->err filled. */
int tm__s3req_finish(struct s3req *r, CURLcode cc);
/* Gives the handle back and frees what the request holds. */
void tm__s3req_release(struct s3req *r);
/* prepare, perform, finish, release: the blocking call. */
int tm__s3req_run(struct s3req *r);

/* Fills err (may be NULL) with code, class and a message "op target: ...";
 * returns code. */
int tm__s3_fail(struct tm__s3 *s, struct tm__s3_err *err, int code, int cls,
                const char *op, const char *bucket, const char *key,
                const char *fmt, ...) __attribute__((format(printf, 8, 9)));

/* Adds the x-amz-meta-* headers, content type and storage class of o to
 * r; the texts go to hold (NUL-separated, must outlive r). */
int tm__s3req_put_opts(struct s3req *r, const struct tm__s3_put_opts *o,
                       char hold[6][40]);

#endif
