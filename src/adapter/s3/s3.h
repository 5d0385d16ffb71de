/*
 * s3.h - an S3 client for the s3 adapter: AWS Signature Version 4 (sigv4.c,
 * on OpenSSL), the XML answers (xml.c, expat, streamed), configuration as
 * the AWS tools resolve it (config.c), requests over libcurl (client.c) and
 * whole-object uploads, single PUT or multipart with parts in flight and
 * resumable from recorded parts (upload.c).
 *
 * Threads: one struct tm__s3 serves every thread at once. Each request
 * takes a curl easy handle from the client's pool and gives it back, so
 * connections are kept alive across requests whatever thread makes them.
 * A reader (tm__s3_reader) or a writer (tm__s3_writer) belongs to one
 * thread at a time; a multipart writer sends its parts from a thread of
 * its own.
 *
 * Errors: every call returns 0 or a negative TM_* code, and fills the
 * struct tm__s3_err it is given (which may be NULL) with the detail: the
 * class (retry, node, fatal, throttle), the wait the server asked for, the
 * server's own Code and Message. No message ever holds a secret (secret
 * key, session token, Authorization header): they never leave config.c and
 * sigv4.c.
 *
 * Memory: who frees what is said on each function; "release" frees the
 * contents of a struct the caller owns, "free" frees a handle.
 */
#ifndef TM_S3_H
#define TM_S3_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* ------------------------------------------------------------------ */
/* Errors                                                               */
/* ------------------------------------------------------------------ */

/* How a failure is handled; the values are those of enum tm__errclass
 * (adapter.h), which the adapter may cast to. */
enum tm__s3_class {
    TM_S3_RETRY = 0,    /* transient: try the same call again later */
    TM_S3_NODE = 1,     /* this object cannot be had; others may */
    TM_S3_FATAL = 2,    /* nothing more will work: credentials, bucket */
    TM_S3_THROTTLE = 3, /* slow down: wait retry_after_ms, then again */
};

/* The detail of one failed call. */
struct tm__s3_err {
    int code;               /* the TM_* code the call returned (0: none) */
    int cls;                /* enum tm__s3_class */
    int http_status;        /* HTTP status, 0 when no answer came */
    int64_t retry_after_ms; /* from Retry-After; -1 when not given */
    char s3code[64];        /* the server's <Code> ("SlowDown"), or "" */
    char message[320];      /* "OP KEY: what failed", lower case, no secret */
};

/* Clears e (code 0, retry_after_ms -1, empty strings). NULL is ok. */
void tm__s3_err_clear(struct tm__s3_err *e);
/* The class's name: "retry", "node", "fatal", "throttle". Static. */
const char *tm__s3_class_name(int cls);

/* ------------------------------------------------------------------ */
/* Signature Version 4 (sigv4.c)                                         */
/* ------------------------------------------------------------------ */

/* A name and a value: a query parameter (value NULL: one without a value,
 * "?uploads") or a header. */
struct tm__s3_kv {
    const char *name;  /* NUL-terminated */
    const char *value; /* NUL-terminated; NULL for a bare query parameter */
};

/* Appends n bytes of s percent-encoded as SigV4 wants: A-Z a-z 0-9 - _ .
 * ~ are kept, every other byte is %XX in upper case; with keep_slash '/'
 * is kept too (an object key in a path). */
int tm__sigv4_encode(struct tm__buf *out, const char *s, size_t n,
                     int keep_slash);
/* Appends the n query parameters, encoded and sorted by encoded name then
 * encoded value (byte order). canonical: a parameter without a value is
 * written "name=" (the signed form); otherwise "name" (the sent form).
 * The order and encoding of both forms are the same. */
int tm__sigv4_query(struct tm__buf *out, const struct tm__s3_kv *q, size_t n,
                    int canonical);

/* One request to sign. */
struct tm__sigv4 {
    const char *method;      /* "GET", "PUT", ... */
    const char *path;        /* the canonical URI, already encoded */
    const char *query;       /* the canonical query (tm__sigv4_query), "" */
    const struct tm__s3_kv *headers; /* the headers to sign (host and
                                        x-amz-date among them); names in any
                                        case, values as sent */
    size_t n_headers;        /* entries in headers */
    const char *payload_hash; /* hex SHA-256 of the body, or
                                 "UNSIGNED-PAYLOAD" */
    const char *amz_date;    /* "YYYYMMDDTHHMMSSZ" */
    const char *region;      /* "us-east-1" */
    const char *service;     /* "s3" */
    const char *access_key;  /* the key id */
    const char *secret_key;  /* the secret (never copied anywhere) */
};

/* Appends the Authorization header's value for r to auth. creq and sts
 * (may be NULL) get the canonical request and the string to sign (tests
 * compare them with the published vectors). Headers are lower-cased,
 * sorted by name (stable), values trimmed with inner runs of spaces made
 * one, and repeated names joined with ','. */
int tm__sigv4_sign(const struct tm__sigv4 *r, struct tm__buf *auth,
                   struct tm__buf *creq, struct tm__buf *sts);

/* Hex SHA-256 of n bytes into out (65 bytes). */
void tm__sha256_hex(const void *data, size_t n, char out[65]);
/* Base64 of 16 bytes of MD5 into out (25 bytes): Content-MD5. */
void tm__md5_base64(const unsigned char md5[16], char out[25]);

/* ------------------------------------------------------------------ */
/* Configuration (config.c)                                              */
/* ------------------------------------------------------------------ */

/* What the caller sets; NULL or -1 leaves a field to the environment and
 * the AWS files, as the AWS tools resolve them (docs/adapters.md):
 * credentials from AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
 * (+ AWS_SESSION_TOKEN), else the profile (AWS_PROFILE, else "default")
 * in ~/.aws/credentials then ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE,
 * AWS_CONFIG_FILE name other files); region from AWS_REGION,
 * AWS_DEFAULT_REGION, the profile's region, else us-east-1; endpoint from
 * AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's endpoint_url
 * (also under its "s3 =" block), else AWS's for the region; the CA
 * certificates of https from AWS_CA_BUNDLE or the profile's ca_bundle. */
struct tm__s3_config {
    const char *endpoint;      /* "http://127.0.0.1:9000"; NULL: resolved */
    const char *region;        /* NULL: resolved */
    int path_style;            /* 1 path-style, 0 virtual-hosted, -1: path
                                  for a custom endpoint, virtual for AWS */
    const char *storage_class; /* x-amz-storage-class of new objects; NULL:
                                  the server's default */
    const char *profile;       /* a profile named by the user: its
                                  credentials win over the environment's;
                                  NULL: AWS_PROFILE or "default" */
    int sign_payload;          /* 1: sign the SHA-256 of each body; 0:
                                  UNSIGNED-PAYLOAD (Content-MD5 still
                                  guards every PUT and part) */
    int64_t part_size;         /* multipart part size; 0: max(8 MiB,
                                  size / 10000) (tests make it smaller) */
    int64_t multipart_threshold; /* sizes above use multipart; 0: part size */
    int64_t copy_part_size;    /* UploadPartCopy above this (and in parts
                                  of it); 0: 5 GiB */
    int parts_in_flight;       /* parts uploaded at once per writer; 0: 4 */
    int part_buffers;          /* part buffers all writers together hold
                                  (each writer may always hold one, more
                                  only while the total stays below this,
                                  so that many writers at once do not each
                                  take parts_in_flight); 0: 64 */
    int part_retries;          /* retries of a failed part in a writer
                                  (retry and throttle classes); -1: 3 */
    long connect_timeout_s;    /* 0: 10 */
    long low_speed_time_s;     /* a transfer under 1 byte/s for this long
                                  fails (retry class); 0: 60 */
    const char *const *resolve; /* curl "HOST:PORT:ADDR" entries (tests of
                                   virtual-hosted names), NULL-terminated */
};

/* The configuration in force, as resolved (no secret in it). */
struct tm__s3_settings {
    char *endpoint;     /* scheme://host[:port], no trailing '/' */
    char *region;       /* signing region */
    int path_style;     /* 1 path-style, 0 virtual-hosted */
    int custom;         /* 1 when the endpoint is not AWS's default */
    char *storage_class; /* NULL: none sent */
    char *cred_source;  /* where the credentials came from: "environment",
                           "profile NAME in FILE" (for messages) */
    char *ca_bundle;    /* CA certificates for https (AWS_CA_BUNDLE, the
                           profile's ca_bundle), NULL: the system's */
};

/* ------------------------------------------------------------------ */
/* The client (client.c)                                                 */
/* ------------------------------------------------------------------ */

struct tm__s3;

/* Resolves cfg (NULL: all defaults) and opens a client; no request is
 * made. Fails with TM_EINVAL (fatal class) when no credentials are found
 * or a setting is malformed. *out is freed with tm__s3_free(). */
int tm__s3_open(const struct tm__s3_config *cfg, struct tm__s3 **out,
                struct tm__s3_err *err);
/* Frees the client and its pooled connections. No call may be running. */
void tm__s3_free(struct tm__s3 *s);
/* The resolved settings; owned by s. */
const struct tm__s3_settings *tm__s3_settings(const struct tm__s3 *s);
/* The part size a writer uses for an object of size bytes: max(8 MiB,
 * ceil(size / 10000)) rounded up to 1 MiB, or the configured one. */
int64_t tm__s3_part_size(const struct tm__s3 *s, int64_t size);
/* Requests made so far by s (all operations, tests and benchmarks). */
int64_t tm__s3_requests(const struct tm__s3 *s);

/* The metadata treemig writes, in rclone's names so that both tools see
 * the same tree: x-amz-meta-mtime (seconds since the epoch as a decimal
 * with up to 9 fraction digits, trailing zeros dropped: "1700000000.5"),
 * x-amz-meta-mode (octal st_mode with the type bits: "100644"),
 * x-amz-meta-uid, x-amz-meta-gid (decimal), x-amz-meta-md5chksum (base64
 * MD5 of the whole object, set on multipart uploads when known). */
struct tm__s3_meta {
    int has_mtime;     /* mtime_ns is set */
    int64_t mtime_ns;  /* ns since the epoch */
    int has_mode;      /* mode is set */
    uint32_t mode;     /* st_mode, type bits included */
    int has_uid;       /* uid is set */
    int64_t uid;       /* owner */
    int has_gid;       /* gid is set */
    int64_t gid;       /* group */
    char md5_b64[25];  /* md5chksum, "" when none */
};

/* rclone's x-amz-meta-mtime text of ns (at least 32 bytes in out). */
void tm__s3_mtime_format(int64_t ns, char *out, size_t len);
/* Parses rclone's mtime text: 0 and *ns, or TM_EINVAL. */
int tm__s3_mtime_parse(const char *s, int64_t *ns);

/* One object as listed or stat'ed. */
struct tm__s3_object {
    const char *key;      /* the whole key (NUL-terminated; keys hold no
                             NUL), owned by the page or the stat */
    size_t key_len;       /* bytes in key */
    int64_t size;         /* bytes */
    int64_t mtime_ns;     /* LastModified, ns since the epoch */
    char etag[72];        /* without the quotes */
    char storage_class[32]; /* "STANDARD", ... or "" */
};

/* One ListObjectsV2 request. prefix and start_after are whole keys. */
struct tm__s3_list_req {
    const char *prefix;       /* only keys under it ("dir/"); NULL: all */
    const char *delimiter;    /* "/" for one folder level; NULL: none */
    int max_keys;             /* 1..1000; 0: 1000 */
    const char *continuation; /* NextContinuationToken of the previous
                                 page (in this process), or NULL */
    const char *start_after;  /* resume after this key (a stored cursor;
                                 ignored with continuation), or NULL */
};

/* One page: objects and common prefixes, each in the server's order
 * (keys ascending by bytes on S3). */
struct tm__s3_page {
    struct tm__s3_object *objects; /* n_objects entries */
    size_t n_objects;
    const char **prefixes;         /* common prefixes ("dir/sub/") */
    size_t *prefix_lens;           /* their lengths */
    size_t n_prefixes;
    int truncated;                 /* more pages follow */
    char *next_token;              /* continuation token, NULL at the end */
    char *last;                    /* the greatest key or prefix of the
                                      page: the cursor to store (resume
                                      with start_after = last), NULL when
                                      the page is empty */
    struct tm__buf arena;          /* owns every string above */
};

/* Lists one page of bucket. A truncated page without a continuation token
 * is a protocol error (TM_EIO, node class), never a loop. Keys are asked
 * URL-encoded (encoding-type=url) and decoded, so any key XML cannot carry
 * comes through. With start_after ending in the delimiter, a common
 * prefix equal to it is left out (it was the last entry delivered before
 * the cursor was stored). A "dir/" marker object listed under prefix
 * "dir/" is returned like any object: the caller skips its own marker.
 * On success the caller releases page with tm__s3_page_release(); on
 * failure page is empty. */
int tm__s3_list(struct tm__s3 *s, const char *bucket,
                const struct tm__s3_list_req *q, struct tm__s3_page *page,
                struct tm__s3_err *err);
void tm__s3_page_release(struct tm__s3_page *page);

/* HEAD of one object. */
struct tm__s3_stat {
    int64_t size;            /* Content-Length */
    int64_t mtime_ns;        /* Last-Modified (second precision) */
    char etag[72];           /* without the quotes */
    char storage_class[32];  /* "" when the server did not say */
    struct tm__s3_meta meta; /* what was found of rclone's metadata */
};

/* HEADs key: TM_ENOENT (node) when it is not there. */
int tm__s3_head(struct tm__s3 *s, const char *bucket, const char *key,
                struct tm__s3_stat *st, struct tm__s3_err *err);

/* One of the HEADs of tm__s3_head_many(). */
struct tm__s3_head_item {
    const char *key;       /* the key (NUL-terminated), the caller's */
    int rc;                /* 0, or the error (TM_ENOENT: not there) */
    struct tm__s3_stat st; /* the answer when rc is 0 */
    struct tm__s3_err err; /* the detail of rc */
};

/* HEADs the n keys of v in bucket, up to in_flight at once (a curl multi
 * handle the client keeps in a pool between calls, so that a later batch
 * reuses the connections of an earlier one). Each item gets its own
 * result, as tm__s3_head() would give it. Returns 0, or TM_ENOMEM when
 * the batch could not run (the items' rc say which were done). */
int tm__s3_head_many(struct tm__s3 *s, const char *bucket,
                     struct tm__s3_head_item *v, size_t n, int in_flight);

/* Receives n bytes of a GET; returns 0 to go on, or a TM_* error to stop
 * (then returned by the call). */
typedef int (*tm__s3_sink_fn)(void *ctx, const void *data, size_t n);

/* GETs key (len bytes from off; len -1: to the end), streaming the bytes
 * to sink. st (may be NULL) gets the object's size, mtime, etag and
 * metadata. A body shorter than announced is TM_EIO, retry class. If the
 * call fails before any byte arrived, sink was never called. */
int tm__s3_get(struct tm__s3 *s, const char *bucket, const char *key,
               int64_t off, int64_t len, tm__s3_sink_fn sink, void *ctx,
               struct tm__s3_stat *st, struct tm__s3_err *err);

/* A pull reader over one GET (the adapter's open_read/read): the transfer
 * advances only while tm__s3_reader_read() is called, holding at most one
 * network buffer besides the caller's. */
struct tm__s3_reader;

/* Starts a GET of key from off (len -1: to the end) and waits for its
 * headers: st (may be NULL) gets size, mtime, etag, metadata of the whole
 * object. *out is freed with tm__s3_reader_close(). */
int tm__s3_reader_open(struct tm__s3 *s, const char *bucket, const char *key,
                       int64_t off, int64_t len, struct tm__s3_reader **out,
                       struct tm__s3_stat *st, struct tm__s3_err *err);
/* Reads up to n bytes: the count, 0 at the end, or a TM_* error (with the
 * detail in err; a short body is TM_EIO, retry class). */
int64_t tm__s3_reader_read(struct tm__s3_reader *r, void *buf, size_t n,
                           struct tm__s3_err *err);
/* Stops the transfer and frees r. NULL is ok. */
void tm__s3_reader_close(struct tm__s3_reader *r);

/* Options of a new object. */
struct tm__s3_put_opts {
    const struct tm__s3_meta *meta; /* rclone's metadata; NULL: none */
    const char *content_type;       /* NULL: application/octet-stream
                                       (a marker: none) */
    const char *storage_class;      /* NULL: the client's */
    const char *src_etag;           /* tm__s3_copy: the ETag the source
                                       must still have (CopyObject's
                                       x-amz-copy-source-if-match; a HEAD
                                       before UploadPartCopy), or NULL.
                                       Another one: TM_ECHANGED, node */
    int create_only;                /* tm__s3_put: If-None-Match: *, the
                                       write fails with TM_EEXIST (node)
                                       when an object is at the key; a
                                       server that refuses the header
                                       (501, 400): TM_ENOTSUP, node */
    int whole_md5;                  /* tm__s3_writer_open: keep the MD5 of
                                       the whole object for
                                       tm__s3_writer_commit's md5_hex (one
                                       more pass over every byte: only
                                       when asked) */
};

/* PUTs n bytes as key in one request, with Content-MD5 (an empty body and
 * a key "dir/" make an empty-folder marker). etag (may be NULL, 72 bytes)
 * gets the new object's ETag. */
int tm__s3_put(struct tm__s3 *s, const char *bucket, const char *key,
               const void *data, size_t n, const struct tm__s3_put_opts *o,
               char *etag, struct tm__s3_err *err);

/* DELETEs key (an object or a "dir/" marker). A key already gone is
 * success, as S3 says. */
int tm__s3_delete(struct tm__s3 *s, const char *bucket, const char *key,
                  struct tm__s3_err *err);

/* Server-side copy of src_bucket/src_key (src_size bytes) to bucket/key,
 * within the client's endpoint: CopyObject up to the copy part size,
 * UploadPartCopy in parts above it (aborted on failure). o NULL keeps the
 * source's metadata; otherwise o's metadata replaces it. A 200 answer
 * whose body is an error is that error. */
int tm__s3_copy(struct tm__s3 *s, const char *bucket, const char *key,
                const char *src_bucket, const char *src_key,
                int64_t src_size, const struct tm__s3_put_opts *o,
                struct tm__s3_err *err);

/* ---- multipart, one request each ---- */

/* One uploaded part, as recorded by the caller or listed by the server. */
struct tm__s3_part {
    int number;       /* 1..10000 */
    int64_t size;     /* bytes */
    char etag[72];    /* without the quotes */
};

/* CreateMultipartUpload: *upload_id (free() it) names the new upload. */
int tm__s3_mp_create(struct tm__s3 *s, const char *bucket, const char *key,
                     const struct tm__s3_put_opts *o, char **upload_id,
                     struct tm__s3_err *err);
/* UploadPart of n bytes with Content-MD5; part->etag gets the ETag. */
int tm__s3_mp_part(struct tm__s3 *s, const char *bucket, const char *key,
                   const char *upload_id, int number, const void *data,
                   size_t n, struct tm__s3_part *part, struct tm__s3_err *err);
/* UploadPartCopy of bytes [off, off+n) of src into part number. */
int tm__s3_mp_part_copy(struct tm__s3 *s, const char *bucket, const char *key,
                        const char *upload_id, int number,
                        const char *src_bucket, const char *src_key,
                        int64_t off, int64_t n, struct tm__s3_part *part,
                        struct tm__s3_err *err);
/* ListParts (all pages): *parts (free() it) gets *n parts by number.
 * A server without ListParts answers TM_EINVAL with s3code
 * "NotImplemented" (or, as s3rver does, "MethodNotAllowed"). */
int tm__s3_mp_list_parts(struct tm__s3 *s, const char *bucket, const char *key,
                         const char *upload_id, struct tm__s3_part **parts,
                         size_t *n, struct tm__s3_err *err);
/* CompleteMultipartUpload with n parts in order. A 200 answer whose body
 * is an error is that error. */
int tm__s3_mp_complete(struct tm__s3 *s, const char *bucket, const char *key,
                       const char *upload_id, const struct tm__s3_part *parts,
                       size_t n, struct tm__s3_err *err);
/* AbortMultipartUpload: the parts are freed on the server. An upload
 * already gone (NoSuchUpload) is success. */
int tm__s3_mp_abort(struct tm__s3 *s, const char *bucket, const char *key,
                    const char *upload_id, struct tm__s3_err *err);

/* ---- a whole object, written as a stream (upload.c) ---- */

/* Told each time a part is on the server, so that the caller can record
 * it (the state file) and resume after a crash. Called from the writer's
 * driver thread (one per multipart writer, which sends the parts while the
 * caller fills the next ones), one call at a time. Returns 0, or an error
 * that fails the write. */
typedef int (*tm__s3_part_fn)(void *ctx, const char *upload_id,
                              const struct tm__s3_part *part);

struct tm__s3_writer;

/* Starts writing key, of exactly size bytes: up to the multipart
 * threshold the bytes are kept and sent by one PUT at commit; above it a
 * multipart upload is created at once (on_part, may be NULL, hears of its
 * id with each part) and parts go out as they fill, several at once.
 * Nothing is visible under key before commit succeeds. *out is ended by
 * tm__s3_writer_commit() or tm__s3_writer_abort(). */
int tm__s3_writer_open(struct tm__s3 *s, const char *bucket, const char *key,
                       int64_t size, const struct tm__s3_put_opts *o,
                       tm__s3_part_fn on_part, void *ctx,
                       struct tm__s3_writer **out, struct tm__s3_err *err);
/* Resumes the multipart upload upload_id of key (size bytes, the same as
 * when it started): the parts on the server (ListParts, or the n recorded
 * parts when the server has no ListParts) that match the part size are
 * kept, *offset gets the byte from which the caller writes again (the end
 * of the first run of parts from 1). An upload the server no longer has
 * fails with TM_ENOENT (node): start again. */
int tm__s3_writer_resume(struct tm__s3 *s, const char *bucket, const char *key,
                         int64_t size, const char *upload_id,
                         const struct tm__s3_part *recorded, size_t n,
                         tm__s3_part_fn on_part, void *ctx,
                         struct tm__s3_writer **out, int64_t *offset,
                         struct tm__s3_err *err);
/* Appends n bytes (never past size); may wait for a part to finish. */
int tm__s3_writer_write(struct tm__s3_writer *w, const void *data, size_t n,
                        struct tm__s3_err *err);
/* The upload id, or NULL for a single PUT. Owned by w. */
const char *tm__s3_writer_upload_id(const struct tm__s3_writer *w);
/* The bytes of each part (the last may be less). */
int64_t tm__s3_writer_part_size(const struct tm__s3_writer *w);
/* The parts on the server from part 1 on without a gap: *n of them, a
 * copy in *parts (free() it; NULL when *n is 0). What a caller records
 * to resume after a crash. Any thread; TM_ENOMEM on failure. */
int tm__s3_writer_done_parts(struct tm__s3_writer *w, struct tm__s3_part **parts,
                             size_t *n);
/* How many parts are on the server from part 1 on without a gap (cheap:
 * a counter). Any thread. */
size_t tm__s3_writer_done_count(struct tm__s3_writer *w);
/* Replaces the metadata a single-PUT writer sends at commit (TM_EINVAL
 * for a multipart writer: its metadata went with the create). */
int tm__s3_writer_set_meta(struct tm__s3_writer *w, const struct tm__s3_meta *m);
/* Makes a single-PUT writer's commit create only: TM_EEXIST (node) when
 * an object is at the key. The PUT carries If-None-Match: * (atomic: an
 * object written meanwhile is not replaced) where the server honours it:
 * the client learns that once, at the first such commit, from an empty
 * probe object beside the key PUT twice with the header, then deleted. A
 * server that refuses the header (501, 400) or ignores it gets a HEAD
 * before each create (a writer racing in between is not seen). TM_EINVAL
 * for a multipart writer. */
int tm__s3_writer_create_only(struct tm__s3_writer *w);
/* Sends what is left and makes the object visible (PUT or Complete).
 * md5_hex (may be NULL, 33 bytes) gets the MD5 of the whole object when
 * it was opened with whole_md5 and every byte went through this writer,
 * else "". Frees w in every case; on
 * failure a multipart upload is aborted unless the failure is transient
 * (retry or throttle class), when it is left for a resume. */
int tm__s3_writer_commit(struct tm__s3_writer *w, char *md5_hex,
                         struct tm__s3_err *err);
/* Gives up: aborts the multipart upload (nothing is left billing) and
 * frees w. NULL is ok. Returns the abort's error, if any. */
int tm__s3_writer_abort(struct tm__s3_writer *w, struct tm__s3_err *err);

/* ------------------------------------------------------------------ */
/* XML answers (xml.c), streamed through expat                          */
/* ------------------------------------------------------------------ */

/* What one answer held; the kind is known from its root element. */
enum tm__s3_xml_kind {
    TM_S3X_UNKNOWN = 0, TM_S3X_ERROR, TM_S3X_LIST, TM_S3X_INITIATE,
    TM_S3X_COMPLETE, TM_S3X_LIST_PARTS, TM_S3X_COPY, TM_S3X_COPY_PART,
};

struct tm__s3_xml;

/* A parser for one answer; listing answers go into page (may be NULL
 * when none is expected), ListParts answers into a growing part array.
 * Freed with tm__s3_xml_free(). */
int tm__s3_xml_new(struct tm__s3_xml **out, struct tm__s3_page *page);
void tm__s3_xml_free(struct tm__s3_xml *x);
/* Feeds n bytes of the body; last: no more will come. Returns 0, or
 * TM_EIO with a reason in why (len bytes) when the body is not
 * well-formed XML, or breaks a bound (an element text over 64 KiB, more
 * than 100,000 entries in a page). */
int tm__s3_xml_feed(struct tm__s3_xml *x, const char *data, size_t n, int last,
                    char *why, size_t len);
/* After the last feed: the root's kind, and its fields. */
enum tm__s3_xml_kind tm__s3_xml_kind(const struct tm__s3_xml *x);
/* Error's Code and Message; Initiate's UploadId; Complete's, Copy's and
 * CopyPart's ETag; ListParts' and List's truncation. "" when absent. */
const char *tm__s3_xml_code(const struct tm__s3_xml *x);
const char *tm__s3_xml_message(const struct tm__s3_xml *x);
const char *tm__s3_xml_upload_id(const struct tm__s3_xml *x);
const char *tm__s3_xml_etag(const struct tm__s3_xml *x);
/* ListParts: the parts of this page (owned by x), whether truncated and
 * the NextPartNumberMarker. */
const struct tm__s3_part *tm__s3_xml_parts(const struct tm__s3_xml *x,
                                           size_t *n, int *truncated,
                                           int *next_marker);
/* Finishes a listing page into the page given to tm__s3_xml_new():
 * URL-decodes the keys when the answer says EncodingType url, sets the
 * pointers and last. TM_EIO (with why) on a bad key or date. */
int tm__s3_xml_page_finish(struct tm__s3_xml *x, char *why, size_t len);

/* Parses an ISO 8601 UTC time ("2009-10-12T17:50:30.000Z") into ns. */
int tm__s3_iso8601_parse(const char *s, int64_t *ns);
/* Decodes %XX and '+' (a space) of s in place; TM_EINVAL on a bad escape
 * or a decoded NUL. *len gets the new length. */
int tm__s3_url_decode(char *s, size_t *len);

#endif
