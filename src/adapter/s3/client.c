/*
 * client.c - the S3 client: one request from URL to classified result
 * (struct s3req), a pool of curl easy handles shared by every thread (so
 * that connections are kept alive whatever thread asks), and the
 * operations of s3.h but the streamed writer (upload.c).
 *
 * Threads: any thread may call any operation on the same client at once.
 * Lock order: s->lock alone, held only to take or give back a handle.
 * curl_global_init runs once (pthread_once) before the first client.
 *
 * Every failure is classified here (tm__s3req_finish): the server's Code
 * first, the HTTP status next, curl's error when no answer came. Messages
 * name the operation and the object, never a header; a message is also
 * scrubbed of the secret and the session token, should a server echo them.
 */
#include "adapter/s3/s3_int.h"

#include "treemig.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MiB (1024 * 1024LL)
#define POOL_MAX 512

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ------------------------------------------------------------------ */
/* errors                                                               */

void tm__s3_err_clear(struct tm__s3_err *e)
{
    if (!e)
        return;
    memset(e, 0, sizeof(*e));
    e->retry_after_ms = -1;
}

const char *tm__s3_class_name(int cls)
{
    switch (cls) {
    case TM_S3_RETRY:
        return "retry";
    case TM_S3_NODE:
        return "node";
    case TM_S3_FATAL:
        return "fatal";
    case TM_S3_THROTTLE:
        return "throttle";
    default:
        return "unknown";
    }
}

/* Replaces every occurrence of secret in msg with "***". */
static void scrub(char *msg, const char *secret)
{
    size_t n;
    char *p;
    if (!secret || (n = strlen(secret)) < 4)
        return;
    while ((p = strstr(msg, secret))) {
        memmove(p + 3, p + n, strlen(p + n) + 1);
        memcpy(p, "***", 3);
    }
}

/* Makes a server's text printable on one line. */
static void printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
}

int tm__s3_fail(struct tm__s3 *s, struct tm__s3_err *err, int code, int cls,
                const char *op, const char *bucket, const char *key,
                const char *fmt, ...)
{
    char text[256];
    va_list ap;
    if (!err)
        return code;
    err->code = code;
    err->cls = cls;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    snprintf(err->message, sizeof(err->message), "%s %s%s%s: %s", op,
             bucket ? bucket : "", key ? "/" : "", key ? key : "", text);
    printable(err->message);
    if (s) {
        scrub(err->message, s->cr.secret_key);
        scrub(err->message, s->cr.session_token);
        scrub(err->s3code, s->cr.secret_key);
        scrub(err->s3code, s->cr.session_token);
    }
    return code;
}

/* ------------------------------------------------------------------ */
/* metadata texts                                                       */

void tm__s3_mtime_format(int64_t ns, char *out, size_t len)
{
    uint64_t u = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    char frac[10];
    int i;
    snprintf(frac, sizeof(frac), "%09llu", (unsigned long long)(u % 1000000000u));
    for (i = 8; i >= 0 && frac[i] == '0'; i--)
        frac[i] = '\0';
    snprintf(out, len, "%s%llu%s%s", ns < 0 ? "-" : "",
             (unsigned long long)(u / 1000000000u), frac[0] ? "." : "", frac);
}

int tm__s3_mtime_parse(const char *s, int64_t *ns)
{
    int neg = 0, digits = 0, fd = 0;
    uint64_t secs = 0, frac = 0;
    if (*s == '-') {
        neg = 1;
        s++;
    }
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (secs > (uint64_t)INT64_MAX / 1000000000u / 10)
            return TM_EINVAL;
        secs = secs * 10 + (uint64_t)(*s - '0');
    }
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++, fd++)
            if (fd < 9)
                frac = frac * 10 + (uint64_t)(*s - '0');
        if (!fd)
            return TM_EINVAL;
    }
    if (*s || !digits)
        return TM_EINVAL;
    for (; fd < 9; fd++)
        frac *= 10;
    *ns = (int64_t)(secs * 1000000000u + frac);
    if (neg)
        *ns = -*ns;
    return 0;
}

/* ------------------------------------------------------------------ */
/* the client                                                           */

int tm__s3_open(const struct tm__s3_config *cfg, struct tm__s3 **out,
                struct tm__s3_err *err)
{
    struct tm__s3 *s;
    const char *h, *slash;
    int rc;
    size_t i;

    *out = NULL;
    tm__s3_err_clear(err);
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return tm__s3_fail(NULL, err, TM_EIO, TM_S3_FATAL, "s3 open", NULL,
                           NULL, "curl_global_init failed");
    s = calloc(1, sizeof(*s));
    if (!s)
        return tm__s3_fail(NULL, err, TM_ENOMEM, TM_S3_FATAL, "s3 open", NULL,
                           NULL, "out of memory");
    rc = tm__s3_resolve(cfg, &s->set, &s->cr, err);
    if (rc) {
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->probe_mu, NULL);
    h = strstr(s->set.endpoint, "://") + 3;
    slash = strchr(h, '/');
    s->scheme = strndup(s->set.endpoint, (size_t)(h - 3 - s->set.endpoint));
    s->host = slash ? strndup(h, (size_t)(slash - h)) : strdup(h);
    s->base = strdup(slash ? slash : "");
    if (!s->scheme || !s->host || !s->base) {
        tm__s3_free(s);
        return tm__s3_fail(NULL, err, TM_ENOMEM, TM_S3_FATAL, "s3 open", NULL,
                           NULL, "out of memory");
    }
    if (cfg) {
        s->part_size = cfg->part_size;
        s->threshold = cfg->multipart_threshold;
        s->copy_part_size = cfg->copy_part_size;
        s->parts_in_flight = cfg->parts_in_flight;
        s->part_retries = cfg->part_retries;
        s->sign_payload = cfg->sign_payload;
        s->connect_timeout = cfg->connect_timeout_s;
        s->low_speed_time = cfg->low_speed_time_s;
        for (i = 0; cfg->resolve && cfg->resolve[i]; i++) {
            struct curl_slist *n = curl_slist_append(s->resolve, cfg->resolve[i]);
            if (!n) {
                tm__s3_free(s);
                return tm__s3_fail(NULL, err, TM_ENOMEM, TM_S3_FATAL,
                                   "s3 open", NULL, NULL, "out of memory");
            }
            s->resolve = n;
        }
    } else {
        s->part_retries = -1;
    }
    if (s->part_size && s->part_size < 1)
        s->part_size = 0;
    if (!s->copy_part_size)
        s->copy_part_size = 5 * 1024 * MiB;
    if (s->parts_in_flight <= 0)
        s->parts_in_flight = 4;
    s->part_budget = cfg && cfg->part_buffers > 0 ? cfg->part_buffers : 64;
    if (s->part_retries < 0)
        s->part_retries = 3;
    if (!s->connect_timeout)
        s->connect_timeout = 10;
    if (!s->low_speed_time)
        s->low_speed_time = 60;
    *out = s;
    return 0;
}

void tm__s3_free(struct tm__s3 *s)
{
    size_t i;
    if (!s)
        return;
    for (i = 0; i < s->n_pool; i++)
        curl_easy_cleanup(s->pool[i]);
    free(s->pool);
    for (i = 0; i < s->n_mpool; i++)
        curl_multi_cleanup(s->mpool[i]);
    free(s->mpool);
    curl_slist_free_all(s->resolve);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->probe_mu);
    tm__s3_settings_release(&s->set);
    tm__s3_creds_release(&s->cr);
    free(s->scheme);
    free(s->host);
    free(s->base);
    free(s);
}

const struct tm__s3_settings *tm__s3_settings(const struct tm__s3 *s)
{
    return &s->set;
}

int64_t tm__s3_requests(const struct tm__s3 *s)
{
    return atomic_load(&((struct tm__s3 *)s)->requests);
}

int64_t tm__s3_part_size(const struct tm__s3 *s, int64_t size)
{
    int64_t p;
    if (s->part_size)
        return s->part_size;
    p = (size + 9999) / 10000;
    p = (p + MiB - 1) / MiB * MiB;
    return p > 8 * MiB ? p : 8 * MiB;
}

static CURL *pool_get(struct tm__s3 *s)
{
    CURL *h = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->n_pool)
        h = s->pool[--s->n_pool];
    pthread_mutex_unlock(&s->lock);
    if (h)
        curl_easy_reset(h);
    else
        h = curl_easy_init();
    return h;
}

static void pool_put(struct tm__s3 *s, CURL *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&s->lock);
    if (s->n_pool == s->cap_pool && s->cap_pool < POOL_MAX) {
        size_t n = s->cap_pool ? s->cap_pool * 2 : 16;
        CURL **p = realloc(s->pool, n * sizeof(*p));
        if (p) {
            s->pool = p;
            s->cap_pool = n;
        }
    }
    if (s->n_pool < s->cap_pool) {
        s->pool[s->n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (h)
        curl_easy_cleanup(h);
}

/* A multi handle for a batch: an idle one (with its connections) or a
 * new one; NULL when out of memory. */
static CURLM *mpool_get(struct tm__s3 *s)
{
    CURLM *m = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->n_mpool)
        m = s->mpool[--s->n_mpool];
    pthread_mutex_unlock(&s->lock);
    return m ? m : curl_multi_init();
}

static void mpool_put(struct tm__s3 *s, CURLM *m)
{
    pthread_mutex_lock(&s->lock);
    if (s->n_mpool == s->cap_mpool && s->cap_mpool < POOL_MAX) {
        size_t n = s->cap_mpool ? s->cap_mpool * 2 : 8;
        CURLM **p = realloc(s->mpool, n * sizeof(*p));
        if (p) {
            s->mpool = p;
            s->cap_mpool = n;
        }
    }
    if (s->n_mpool < s->cap_mpool) {
        s->mpool[s->n_mpool++] = m;
        m = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (m)
        curl_multi_cleanup(m);
}

/* ------------------------------------------------------------------ */
/* one request                                                          */

void tm__s3req_init(struct s3req *r, struct tm__s3 *s, const char *op,
                    const char *method, const char *bucket, const char *key,
                    struct tm__s3_err *err)
{
    memset(r, 0, sizeof(*r));
    r->s = s;
    r->op = op;
    r->method = method;
    r->bucket = bucket;
    r->key = key;
    r->err = err;
    r->content_length = -1;
    r->retry_after_ms = -1;
    tm__buf_init(&r->url);
    tm__s3_err_clear(err);
}

void tm__s3req_q(struct s3req *r, const char *name, const char *value)
{
    if (r->n_q < S3REQ_MAX_Q) {
        r->q[r->n_q].name = name;
        r->q[r->n_q++].value = value;
    }
}

void tm__s3req_h(struct s3req *r, const char *name, const char *value)
{
    if (r->n_hdr < S3REQ_MAX_HDR) {
        r->hdr[r->n_hdr].name = name;
        r->hdr[r->n_hdr++].value = value;
    }
}

/* A bucket name usable as a DNS label under the endpoint's host. */
static int dns_bucket(const char *b, int https)
{
    size_t i, n = strlen(b);
    if (n < 3 || n > 63)
        return 0;
    for (i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
              (c == '.' && !https)))
            return 0;
    }
    return b[0] != '-' && b[n - 1] != '-';
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    struct s3req *r = ud;
    size_t len = size * n, nlen;
    char line[1024], *colon, *v;

    if (len >= 5 && !strncmp(data, "HTTP/", 5)) {
        /* a status line: a new answer (after 100 Continue, a redirect) */
        const char *sp = memchr(data, ' ', len);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        r->content_length = -1;
        r->retry_after_ms = -1;
        r->etag[0] = '\0';
        return len;
    }
    nlen = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
    memcpy(line, data, nlen);
    line[nlen] = '\0';
    colon = strchr(line, ':');
    if (!colon)
        return len;
    *colon = '\0';
    v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    nlen = strlen(v);
    while (nlen && (v[nlen - 1] == '\r' || v[nlen - 1] == '\n' || v[nlen - 1] == ' '))
        v[--nlen] = '\0';

    if (!strcasecmp(line, "Content-Length")) {
        r->content_length = strtoll(v, NULL, 10);
        if (r->st && r->status / 100 == 2 && r->st->size < 0)
            r->st->size = r->content_length;
    } else if (!strcasecmp(line, "Content-Range") && r->st) {
        const char *slash = strchr(v, '/');
        if (slash && slash[1] != '*')
            r->st->size = strtoll(slash + 1, NULL, 10);
    } else if (!strcasecmp(line, "ETag")) {
        size_t k = strlen(v);
        if (k >= 2 && v[0] == '"' && v[k - 1] == '"') {
            v[k - 1] = '\0';
            v++;
        }
        snprintf(r->etag, sizeof(r->etag), "%s", v);
        if (r->st)
            snprintf(r->st->etag, sizeof(r->st->etag), "%s", v);
    } else if (!strcasecmp(line, "Retry-After")) {
        char *end;
        long long secs = strtoll(v, &end, 10);
        if (end != v && !*end && secs >= 0) {
            r->retry_after_ms = secs * 1000;
        } else {
            time_t t = curl_getdate(v, NULL);
            if (t > 0)
                r->retry_after_ms = t > time(NULL) ? (int64_t)(t - time(NULL)) * 1000 : 0;
        }
    } else if (r->st && !strcasecmp(line, "Last-Modified")) {
        time_t t = curl_getdate(v, NULL);
        if (t >= 0)
            r->st->mtime_ns = (int64_t)t * 1000000000;
    } else if (r->st && !strcasecmp(line, "x-amz-storage-class")) {
        snprintf(r->st->storage_class, sizeof(r->st->storage_class), "%s", v);
    } else if (r->st && !strncasecmp(line, "x-amz-meta-", 11)) {
        struct tm__s3_meta *m = &r->st->meta;
        const char *k = line + 11;
        char *end;
        if (!strcasecmp(k, "mtime")) {
            m->has_mtime = tm__s3_mtime_parse(v, &m->mtime_ns) == 0;
        } else if (!strcasecmp(k, "mode")) {
            unsigned long mode = strtoul(v, &end, 8);
            m->has_mode = *v && !*end && mode <= 0xffffffffUL;
            m->mode = (uint32_t)mode;
        } else if (!strcasecmp(k, "uid")) {
            m->uid = strtoll(v, &end, 10);
            m->has_uid = *v && !*end;
        } else if (!strcasecmp(k, "gid")) {
            m->gid = strtoll(v, &end, 10);
            m->has_gid = *v && !*end;
        } else if (!strcasecmp(k, "md5chksum")) {
            snprintf(m->md5_b64, sizeof(m->md5_b64), "%s", v);
        }
    }
    return len;
}

static size_t on_write(char *data, size_t size, size_t n, void *ud)
{
    struct s3req *r = ud;
    size_t len = size * n;
    r->received += (int64_t)len;
    if (r->status / 100 != 2) {
        /* an error body: parsed for its Code and Message */
        if (!r->exml && tm__s3_xml_new(&r->exml, NULL))
            return 0;
        if (!r->xml_failed &&
            tm__s3_xml_feed(r->exml, data, len, 0, r->xml_why, sizeof(r->xml_why)))
            r->xml_failed = 1;
        return len;
    }
    if (r->sink) {
        int rc = r->sink(r->sink_ctx, data, len);
        if (rc) {
            r->sink_rc = rc;
            return 0;
        }
        return len;
    }
    if (r->xml && !r->xml_failed &&
        tm__s3_xml_feed(r->xml, data, len, 0, r->xml_why, sizeof(r->xml_why)))
        r->xml_failed = 1;
    return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    struct s3req *r = ud;
    size_t len = size * n, left = r->body_len - r->sent;
    if (len > left)
        len = left;
    memcpy(buf, r->body + r->sent, len);
    r->sent += len;
    return len;
}

/* curl rewinds the body when it must send it again (a redirect, a
 * connection that died before the answer). */
static int on_seek(void *ud, curl_off_t off, int origin)
{
    struct s3req *r = ud;
    if (origin != SEEK_SET || off < 0 || (size_t)off > r->body_len)
        return CURL_SEEKFUNC_FAIL;
    r->sent = (size_t)off;
    return CURL_SEEKFUNC_OK;
}

static int add_header(struct s3req *r, const char *name, const char *value)
{
    struct tm__buf b = TM__BUF_INIT;
    struct curl_slist *n;
    if (tm__buf_addf(&b, "%s: %s", name, value)) {
        tm__buf_release(&b);
        return TM_ENOMEM;
    }
    n = curl_slist_append(r->slist, b.buf);
    if (b.alloc)
        OPENSSL_cleanse(b.buf, b.len);
    tm__buf_release(&b);
    if (!n)
        return TM_ENOMEM;
    r->slist = n;
    return 0;
}

int tm__s3req_prepare(struct s3req *r)
{
    struct tm__s3 *s = r->s;
    struct tm__buf path = TM__BUF_INIT, cq = TM__BUF_INIT, uq = TM__BUF_INIT,
                   host = TM__BUF_INIT, auth = TM__BUF_INIT;
    struct tm__s3_kv hs[S3REQ_MAX_HDR + 4];
    struct tm__sigv4 sg;
    char date[17], hash[65];
    const char *ph;
    struct tm tmv;
    time_t now = time(NULL);
    int virt, rc = 0;
    size_t i, nh = 0;

    virt = !s->set.path_style && r->bucket &&
           dns_bucket(r->bucket, !strcmp(s->scheme, "https"));
    rc = tm__buf_adds(&path, s->base);
    if (!rc && !virt && r->bucket) {
        rc = tm__buf_addch(&path, '/');
        if (!rc)
            rc = tm__sigv4_encode(&path, r->bucket, strlen(r->bucket), 0);
    }
    if (!rc && r->key) {
        rc = tm__buf_addch(&path, '/');
        if (!rc)
            rc = tm__sigv4_encode(&path, r->key, strlen(r->key), 1);
    }
    if (!rc && !path.len)
        rc = tm__buf_addch(&path, '/');
    if (!rc)
        rc = tm__sigv4_query(&cq, r->q, r->n_q, 1);
    if (!rc)
        rc = tm__sigv4_query(&uq, r->q, r->n_q, 0);
    if (!rc)
        rc = virt ? tm__buf_addf(&host, "%s.%s", r->bucket, s->host)
                  : tm__buf_adds(&host, s->host);
    if (!rc)
        rc = tm__buf_addf(&r->url, "%s://%s%s%s%s", s->scheme, host.buf,
                          path.buf, uq.len ? "?" : "", uq.buf);
    if (rc)
        goto out;

    gmtime_r(&now, &tmv);
    strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tmv);
    ph = r->payload_hash;
    if (!ph && (s->sign_payload || !r->body)) {
        tm__sha256_hex(r->body ? r->body : "", r->body ? r->body_len : 0, hash);
        ph = hash;
    }
    if (!ph)
        ph = "UNSIGNED-PAYLOAD";

    hs[nh++] = (struct tm__s3_kv){"host", host.buf};
    hs[nh++] = (struct tm__s3_kv){"x-amz-date", date};
    hs[nh++] = (struct tm__s3_kv){"x-amz-content-sha256", ph};
    if (s->cr.session_token)
        hs[nh++] = (struct tm__s3_kv){"x-amz-security-token", s->cr.session_token};
    for (i = 0; i < r->n_hdr; i++)
        hs[nh++] = r->hdr[i];
    memset(&sg, 0, sizeof(sg));
    sg.method = r->method;
    sg.path = path.buf;
    sg.query = cq.buf;
    sg.headers = hs;
    sg.n_headers = nh;
    sg.payload_hash = ph;
    sg.amz_date = date;
    sg.region = s->set.region;
    sg.service = "s3";
    sg.access_key = s->cr.access_key;
    sg.secret_key = s->cr.secret_key;
    rc = tm__sigv4_sign(&sg, &auth, NULL, NULL);
    for (i = 0; i < nh && !rc; i++)
        rc = add_header(r, hs[i].name, hs[i].value);
    if (!rc)
        rc = add_header(r, "Authorization", auth.buf);
    if (!rc)
        rc = add_header(r, "Expect", "");
    if (rc)
        goto out;

    r->h = pool_get(s);
    if (!r->h) {
        rc = TM_ENOMEM;
        goto out;
    }
    curl_easy_setopt(r->h, CURLOPT_URL, r->url.buf);
    curl_easy_setopt(r->h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, r->slist);
    curl_easy_setopt(r->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->h, CURLOPT_CONNECTTIMEOUT, s->connect_timeout);
    curl_easy_setopt(r->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(r->h, CURLOPT_LOW_SPEED_TIME, s->low_speed_time);
    curl_easy_setopt(r->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(r->h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(r->h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(r->h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->h, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(r->h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (s->resolve)
        curl_easy_setopt(r->h, CURLOPT_RESOLVE, s->resolve);
    if (s->set.ca_bundle)
        curl_easy_setopt(r->h, CURLOPT_CAINFO, s->set.ca_bundle);
    if (!strcmp(r->method, "HEAD")) {
        curl_easy_setopt(r->h, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(r->method, "GET")) {
        curl_easy_setopt(r->h, CURLOPT_HTTPGET, 1L);
    } else if (r->body || !strcmp(r->method, "PUT") || !strcmp(r->method, "POST")) {
        curl_easy_setopt(r->h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(r->h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(r->h, CURLOPT_READDATA, r);
        curl_easy_setopt(r->h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(r->h, CURLOPT_SEEKDATA, r);
        curl_easy_setopt(r->h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(r->h, CURLOPT_CUSTOMREQUEST, r->method);
    } else {
        curl_easy_setopt(r->h, CURLOPT_CUSTOMREQUEST, r->method);
    }
    if (r->st) {
        memset(r->st, 0, sizeof(*r->st));
        r->st->size = -1;
    }
    atomic_fetch_add(&s->requests, 1);
out:
    if (auth.alloc)
        OPENSSL_cleanse(auth.buf, auth.len);
    tm__buf_release(&path);
    tm__buf_release(&cq);
    tm__buf_release(&uq);
    tm__buf_release(&host);
    tm__buf_release(&auth);
    if (rc)
        tm__s3_fail(s, r->err, rc, TM_S3_FATAL, r->op, r->bucket, r->key,
                    "cannot build the request: %s", tm_strerror(rc));
    return rc;
}

/* The class and code of a server's error Code; 0 when unknown. */
static int code_class(const char *c, int *cls)
{
    static const struct {
        const char *code;
        int err, cls;
    } t[] = {
        {"SlowDown", TM_ETHROTTLED, TM_S3_THROTTLE},
        {"Throttling", TM_ETHROTTLED, TM_S3_THROTTLE},
        {"ThrottlingException", TM_ETHROTTLED, TM_S3_THROTTLE},
        {"RequestLimitExceeded", TM_ETHROTTLED, TM_S3_THROTTLE},
        {"TooManyRequests", TM_ETHROTTLED, TM_S3_THROTTLE},
        {"ServiceUnavailable", TM_ETHROTTLED, TM_S3_THROTTLE},
        {"SignatureDoesNotMatch", TM_EACCES, TM_S3_FATAL},
        {"InvalidAccessKeyId", TM_EACCES, TM_S3_FATAL},
        {"InvalidToken", TM_EACCES, TM_S3_FATAL},
        {"ExpiredToken", TM_EACCES, TM_S3_FATAL},
        {"TokenRefreshRequired", TM_EACCES, TM_S3_FATAL},
        {"AuthorizationHeaderMalformed", TM_EACCES, TM_S3_FATAL},
        {"RequestTimeTooSkewed", TM_EACCES, TM_S3_FATAL},
        {"AccountProblem", TM_EACCES, TM_S3_FATAL},
        {"AccessDenied", TM_EACCES, TM_S3_NODE},
        {"NoSuchBucket", TM_EROOT, TM_S3_FATAL},
        {"PermanentRedirect", TM_EROOT, TM_S3_FATAL},
        {"NoSuchKey", TM_ENOENT, TM_S3_NODE},
        {"NoSuchUpload", TM_ENOENT, TM_S3_NODE},
        {"InternalError", TM_EIO, TM_S3_RETRY},
        {"RequestTimeout", TM_ETIMEDOUT, TM_S3_RETRY},
        {"BadDigest", TM_EIO, TM_S3_RETRY},
        {"IncompleteBody", TM_EIO, TM_S3_RETRY},
        {"XAmzContentSHA256Mismatch", TM_EIO, TM_S3_RETRY},
        {"KeyTooLongError", TM_ENAMETOOLONG, TM_S3_NODE},
        {"EntityTooLarge", TM_EFBIG, TM_S3_NODE},
        {"PreconditionFailed", TM_EEXIST, TM_S3_NODE},
        /* a create-only PUT racing another write of the key (AWS): again */
        {"ConditionalRequestConflict", TM_EIO, TM_S3_RETRY},
        {"QuotaExceeded", TM_EDQUOT, TM_S3_FATAL},
    };
    size_t i;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (!strcmp(c, t[i].code)) {
            *cls = t[i].cls;
            return t[i].err;
        }
    return 0;
}

static int status_class(long st, int *cls)
{
    if (st == 429 || st == 503) {
        *cls = TM_S3_THROTTLE;
        return TM_ETHROTTLED;
    }
    if (st == 408) {
        *cls = TM_S3_RETRY;
        return TM_ETIMEDOUT;
    }
    if (st >= 500) {
        *cls = TM_S3_RETRY;
        return TM_EIO;
    }
    if (st == 404) {
        *cls = TM_S3_NODE;
        return TM_ENOENT;
    }
    if (st == 401) {
        *cls = TM_S3_FATAL;
        return TM_EACCES;
    }
    if (st == 403) {
        *cls = TM_S3_NODE;
        return TM_EACCES;
    }
    *cls = TM_S3_NODE;
    return TM_EINVAL;
}

static int curl_class(CURLcode cc, int *cls)
{
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        *cls = TM_S3_RETRY;
        return TM_ETIMEDOUT;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        *cls = TM_S3_FATAL;
        return TM_EIO;
    case CURLE_OUT_OF_MEMORY:
        *cls = TM_S3_FATAL;
        return TM_ENOMEM;
    default:
        /* connection refused or reset, a cut answer, a name not found */
        *cls = TM_S3_RETRY;
        return TM_EIO;
    }
}

int tm__s3req_finish(struct s3req *r, CURLcode cc)
{
    struct tm__s3 *s = r->s;
    struct tm__s3_err *e = r->err;
    int code, cls;
    char why[160];

    if (r->sink_rc)
        return tm__s3_fail(s, e, r->sink_rc, TM_S3_NODE, r->op, r->bucket,
                           r->key, "stopped by the receiver: %s",
                           tm_strerror(r->sink_rc));
    if (cc != CURLE_OK) {
        code = curl_class(cc, &cls);
        if (e)
            e->http_status = (int)r->status;
        return tm__s3_fail(s, e, code, cls, r->op, r->bucket, r->key, "%s%s%s",
                           curl_easy_strerror(cc), r->errbuf[0] ? ": " : "",
                           r->errbuf);
    }
    if (e) {
        e->http_status = (int)r->status;
        e->retry_after_ms = r->retry_after_ms;
    }
    if (r->status / 100 != 2) {
        const char *c = "", *m = "";
        if (r->exml && !r->xml_failed &&
            !tm__s3_xml_feed(r->exml, "", 0, 1, why, sizeof(why)) &&
            tm__s3_xml_kind(r->exml) == TM_S3X_ERROR) {
            c = tm__s3_xml_code(r->exml);
            m = tm__s3_xml_message(r->exml);
        }
        code = *c ? code_class(c, &cls) : 0;
        if (!code)
            code = status_class(r->status, &cls);
        if (!strcmp(c, "NotImplemented")) {
            code = TM_EINVAL;
            cls = TM_S3_NODE;
        }
        if (e)
            snprintf(e->s3code, sizeof(e->s3code), "%s", c);
        return tm__s3_fail(s, e, code, cls, r->op, r->bucket, r->key,
                           "http %ld%s%s%s%s", r->status, *c ? " " : "", c,
                           *m ? ": " : "", m);
    }
    if (r->content_length >= 0 && strcmp(r->method, "HEAD") &&
        r->received != r->content_length)
        return tm__s3_fail(s, e, TM_EIO, TM_S3_RETRY, r->op, r->bucket, r->key,
                           "answer cut short (%lld of %lld bytes)",
                           (long long)r->received, (long long)r->content_length);
    if (r->xml) {
        if (!r->xml_failed)
            r->xml_failed = tm__s3_xml_feed(r->xml, "", 0, 1, r->xml_why,
                                            sizeof(r->xml_why)) != 0;
        if (r->xml_failed)
            return tm__s3_fail(s, e, TM_EIO, TM_S3_RETRY, r->op, r->bucket,
                               r->key, "truncated or malformed answer: %s",
                               r->xml_why);
        if (tm__s3_xml_kind(r->xml) == TM_S3X_ERROR) {
            /* a 200 whose body is an error (CopyObject, Complete) */
            const char *c = tm__s3_xml_code(r->xml);
            code = code_class(c, &cls);
            if (!code) {
                code = TM_EIO;
                cls = TM_S3_RETRY;
            }
            if (e)
                snprintf(e->s3code, sizeof(e->s3code), "%s", c);
            return tm__s3_fail(s, e, code, cls, r->op, r->bucket, r->key,
                               "http 200 with error %s: %s", c,
                               tm__s3_xml_message(r->xml));
        }
    }
    return 0;
}

void tm__s3req_release(struct s3req *r)
{
    if (r->h)
        pool_put(r->s, r->h);
    r->h = NULL;
    curl_slist_free_all(r->slist);
    r->slist = NULL;
    tm__buf_release(&r->url);
    tm__s3_xml_free(r->exml);
    r->exml = NULL;
}

int tm__s3req_run(struct s3req *r)
{
    int rc = tm__s3req_prepare(r);
    if (!rc)
        rc = tm__s3req_finish(r, curl_easy_perform(r->h));
    tm__s3req_release(r);
    return rc;
}

int tm__s3req_put_opts(struct s3req *r, const struct tm__s3_put_opts *o,
                       char hold[6][40])
{
    const struct tm__s3_meta *m = o ? o->meta : NULL;
    const char *sc = o && o->storage_class ? o->storage_class
                                           : r->s->set.storage_class;
    if (o && o->content_type)
        tm__s3req_h(r, "Content-Type", o->content_type);
    else if (!r->key || !*r->key || r->key[strlen(r->key) - 1] != '/')
        tm__s3req_h(r, "Content-Type", "application/octet-stream");
    if (sc)
        tm__s3req_h(r, "x-amz-storage-class", sc);
    if (!m)
        return 0;
    if (m->has_mtime) {
        tm__s3_mtime_format(m->mtime_ns, hold[0], 40);
        tm__s3req_h(r, "x-amz-meta-mtime", hold[0]);
    }
    if (m->has_mode) {
        snprintf(hold[1], 40, "%o", (unsigned)m->mode);
        tm__s3req_h(r, "x-amz-meta-mode", hold[1]);
    }
    if (m->has_uid) {
        snprintf(hold[2], 40, "%lld", (long long)m->uid);
        tm__s3req_h(r, "x-amz-meta-uid", hold[2]);
    }
    if (m->has_gid) {
        snprintf(hold[3], 40, "%lld", (long long)m->gid);
        tm__s3req_h(r, "x-amz-meta-gid", hold[3]);
    }
    if (m->md5_b64[0]) {
        snprintf(hold[4], 40, "%s", m->md5_b64);
        tm__s3req_h(r, "x-amz-meta-md5chksum", hold[4]);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* operations                                                           */

int tm__s3_list(struct tm__s3 *s, const char *bucket,
                const struct tm__s3_list_req *q, struct tm__s3_page *page,
                struct tm__s3_err *err)
{
    struct s3req r;
    struct tm__s3_xml *x = NULL;
    char maxk[16], why[160];
    const char *after = q->continuation ? NULL : q->start_after;
    int rc;
    size_t i;

    memset(page, 0, sizeof(*page));
    tm__buf_init(&page->arena);
    tm__s3req_init(&r, s, "list", "GET", bucket, NULL, err);
    snprintf(maxk, sizeof(maxk), "%d",
             q->max_keys > 0 && q->max_keys <= 1000 ? q->max_keys : 1000);
    tm__s3req_q(&r, "list-type", "2");
    tm__s3req_q(&r, "max-keys", maxk);
    tm__s3req_q(&r, "encoding-type", "url");
    if (q->prefix && *q->prefix)
        tm__s3req_q(&r, "prefix", q->prefix);
    if (q->delimiter && *q->delimiter)
        tm__s3req_q(&r, "delimiter", q->delimiter);
    if (q->continuation)
        tm__s3req_q(&r, "continuation-token", q->continuation);
    else if (after && *after)
        tm__s3req_q(&r, "start-after", after);
    if (tm__s3_xml_new(&x, page))
        return tm__s3_fail(s, err, TM_ENOMEM, TM_S3_FATAL, "list", bucket,
                           q->prefix, "out of memory");
    r.xml = x;
    r.key = NULL;
    rc = tm__s3req_run(&r);
    if (!rc && tm__s3_xml_kind(x) != TM_S3X_LIST)
        rc = tm__s3_fail(s, err, TM_EIO, TM_S3_NODE, "list", bucket, q->prefix,
                         "the answer is not a listing");
    if (!rc && (rc = tm__s3_xml_page_finish(x, why, sizeof(why))))
        tm__s3_fail(s, err, rc, rc == TM_ENOMEM ? TM_S3_FATAL : TM_S3_NODE,
                    "list", bucket, q->prefix, "%s", why);
    if (!rc && page->truncated && !page->next_token)
        rc = tm__s3_fail(s, err, TM_EIO, TM_S3_NODE, "list", bucket, q->prefix,
                         "protocol error: truncated page without a "
                         "continuation token");
    if (!rc && page->truncated && q->continuation &&
        !strcmp(page->next_token, q->continuation))
        rc = tm__s3_fail(s, err, TM_EIO, TM_S3_NODE, "list", bucket, q->prefix,
                         "protocol error: the continuation token did not move");
    /* a prefix equal to the stored cursor was delivered before it */
    if (!rc && after && q->delimiter && *q->delimiter && page->n_prefixes) {
        size_t al = strlen(after), dl = strlen(q->delimiter);
        if (al >= dl && !strcmp(after + al - dl, q->delimiter) &&
            page->prefix_lens[0] == al && !memcmp(page->prefixes[0], after, al)) {
            for (i = 1; i < page->n_prefixes; i++) {
                page->prefixes[i - 1] = page->prefixes[i];
                page->prefix_lens[i - 1] = page->prefix_lens[i];
            }
            page->n_prefixes--;
        }
    }
    tm__s3_xml_free(x);
    if (!rc && !page->truncated)
        page->next_token = NULL;
    if (rc)
        tm__s3_page_release(page);
    return rc;
}

void tm__s3_page_release(struct tm__s3_page *page)
{
    free(page->objects);
    free(page->prefixes);
    free(page->prefix_lens);
    tm__buf_release(&page->arena);
    memset(page, 0, sizeof(*page));
    tm__buf_init(&page->arena);
}

int tm__s3_head(struct tm__s3 *s, const char *bucket, const char *key,
                struct tm__s3_stat *st, struct tm__s3_err *err)
{
    struct s3req r;
    int rc;
    tm__s3req_init(&r, s, "head", "HEAD", bucket, key, err);
    r.st = st;
    rc = tm__s3req_run(&r);
    if (!rc && st->size < 0)
        rc = tm__s3_fail(s, err, TM_EIO, TM_S3_RETRY, "head", bucket, key,
                         "no content-length in the answer");
    return rc;
}

int tm__s3_head_many(struct tm__s3 *s, const char *bucket,
                     struct tm__s3_head_item *v, size_t n, int in_flight)
{
    struct s3req *rs;
    size_t *item, next = 0, j;
    int active = 0, rc = 0;
    CURLM *m;

    if (!n)
        return 0;
    if (in_flight < 1)
        in_flight = 1;
    if ((size_t)in_flight > n)
        in_flight = (int)n;
    rs = calloc((size_t)in_flight, sizeof(*rs));
    item = calloc((size_t)in_flight, sizeof(*item));
    m = rs && item ? mpool_get(s) : NULL;
    if (!m) {
        free(rs);
        free(item);
        return TM_ENOMEM;
    }
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)in_flight);
    for (j = 0; j < n; j++)
        v[j].rc = TM_EAGAIN; /* not done */
    while (next < n || active) {
        int running = 0, left;
        CURLMsg *msg;
        for (j = 0; j < (size_t)in_flight && next < n && !rc; j++) {
            struct s3req *r = &rs[j];
            if (r->h)
                continue;
            tm__s3req_init(r, s, "head", "HEAD", bucket, v[next].key, &v[next].err);
            r->st = &v[next].st;
            v[next].rc = tm__s3req_prepare(r);
            if (!v[next].rc && curl_multi_add_handle(m, r->h) != CURLM_OK)
                v[next].rc = rc = TM_ENOMEM;
            if (v[next].rc) {
                tm__s3req_release(r);
                next++;
                continue;
            }
            curl_easy_setopt(r->h, CURLOPT_PRIVATE, (char *)r);
            item[j] = next++;
            active++;
        }
        if (!active)
            break;
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left))) {
            struct s3req *r = NULL;
            struct tm__s3_head_item *it;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            if (!r)
                continue;
            it = &v[item[r - rs]];
            it->rc = tm__s3req_finish(r, msg->data.result);
            if (!it->rc && it->st.size < 0)
                it->rc = tm__s3_fail(s, &it->err, TM_EIO, TM_S3_RETRY, "head",
                                     bucket, it->key,
                                     "no content-length in the answer");
            curl_multi_remove_handle(m, r->h);
            tm__s3req_release(r);
            r->h = NULL;
            active--;
        }
        if (active && running)
            curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    mpool_put(s, m);
    free(rs);
    free(item);
    return rc;
}

static void range_header(char *out, size_t len, int64_t off, int64_t n)
{
    if (n < 0)
        snprintf(out, len, "bytes=%lld-", (long long)off);
    else
        snprintf(out, len, "bytes=%lld-%lld", (long long)off,
                 (long long)(off + n - 1));
}

int tm__s3_get(struct tm__s3 *s, const char *bucket, const char *key,
               int64_t off, int64_t len, tm__s3_sink_fn sink, void *ctx,
               struct tm__s3_stat *st, struct tm__s3_err *err)
{
    struct s3req r;
    struct tm__s3_stat tmp;
    char range[64];
    if (len == 0)
        return tm__s3_head(s, bucket, key, st ? st : &tmp, err);
    tm__s3req_init(&r, s, "get", "GET", bucket, key, err);
    if (off > 0 || len > 0) {
        range_header(range, sizeof(range), off, len);
        tm__s3req_h(&r, "Range", range);
    }
    r.sink = sink;
    r.sink_ctx = ctx;
    r.st = st ? st : &tmp;
    return tm__s3req_run(&r);
}

int tm__s3_put(struct tm__s3 *s, const char *bucket, const char *key,
               const void *data, size_t n, const struct tm__s3_put_opts *o,
               char *etag, struct tm__s3_err *err)
{
    struct s3req r;
    unsigned char md5[16];
    unsigned int mlen = 0;
    char md5b[25], hold[6][40];
    int rc;

    tm__s3req_init(&r, s, "put", "PUT", bucket, key, err);
    EVP_Digest(data, n, md5, &mlen, EVP_md5(), NULL);
    tm__md5_base64(md5, md5b);
    tm__s3req_h(&r, "Content-MD5", md5b);
    tm__s3req_put_opts(&r, o, hold);
    if (o && o->create_only)
        tm__s3req_h(&r, "If-None-Match", "*");
    r.body = data ? data : "";
    r.body_len = n;
    rc = tm__s3req_run(&r);
    if (!rc && etag)
        snprintf(etag, 72, "%s", r.etag);
    if (rc && o && o->create_only) {
        /* 412: an object is there; 501 or 400: the server does not take
         * the header (older S3-compatible servers) */
        if (r.status == 412)
            rc = tm__s3_fail(s, err, TM_EEXIST, TM_S3_NODE, "put", bucket, key,
                             "an object is there (If-None-Match)");
        else if (r.status == 501 || r.status == 400)
            rc = tm__s3_fail(s, err, TM_ENOTSUP, TM_S3_NODE, "put", bucket, key,
                             "the server refuses a create-only put (http %ld)",
                             r.status);
    }
    return rc;
}

int tm__s3_delete(struct tm__s3 *s, const char *bucket, const char *key,
                  struct tm__s3_err *err)
{
    struct s3req r;
    int rc;
    tm__s3req_init(&r, s, "delete", "DELETE", bucket, key, err);
    rc = tm__s3req_run(&r);
    if (rc == TM_ENOENT && err && strcmp(err->s3code, "NoSuchBucket")) {
        tm__s3_err_clear(err);
        rc = 0;
    }
    return rc;
}

/* "/bucket/key" encoded for x-amz-copy-source. */
static int copy_source(struct tm__buf *b, const char *bucket, const char *key)
{
    int rc = tm__buf_addch(b, '/');
    if (!rc)
        rc = tm__sigv4_encode(b, bucket, strlen(bucket), 0);
    if (!rc)
        rc = tm__buf_addch(b, '/');
    if (!rc)
        rc = tm__sigv4_encode(b, key, strlen(key), 1);
    return rc;
}

static int copy_one(struct tm__s3 *s, const char *bucket, const char *key,
                    const char *src_bucket, const char *src_key,
                    const struct tm__s3_put_opts *o, struct tm__s3_err *err)
{
    struct s3req r;
    struct tm__buf src = TM__BUF_INIT;
    struct tm__s3_xml *x = NULL;
    char hold[6][40], quoted[80];
    int rc;

    tm__s3req_init(&r, s, "copy", "PUT", bucket, key, err);
    if (copy_source(&src, src_bucket, src_key) || tm__s3_xml_new(&x, NULL)) {
        tm__buf_release(&src);
        return tm__s3_fail(s, err, TM_ENOMEM, TM_S3_FATAL, "copy", bucket, key,
                           "out of memory");
    }
    tm__s3req_h(&r, "x-amz-copy-source", src.buf);
    if (o && o->src_etag && *o->src_etag) {
        snprintf(quoted, sizeof(quoted), "\"%s\"", o->src_etag);
        tm__s3req_h(&r, "x-amz-copy-source-if-match", quoted);
    }
    if (o) {
        tm__s3req_h(&r, "x-amz-metadata-directive", "REPLACE");
        tm__s3req_put_opts(&r, o, hold);
    } else if (s->set.storage_class) {
        tm__s3req_h(&r, "x-amz-storage-class", s->set.storage_class);
    }
    r.xml = x;
    rc = tm__s3req_run(&r);
    if (rc && err && o && o->src_etag && *o->src_etag && err->http_status == 412)
        rc = tm__s3_fail(s, err, TM_ECHANGED, TM_S3_NODE, "copy", bucket, key,
                         "the source %s/%s is no longer the object of ETag %s",
                         src_bucket, src_key, o->src_etag);
    if (!rc && tm__s3_xml_kind(x) != TM_S3X_COPY)
        rc = tm__s3_fail(s, err, TM_EIO, TM_S3_RETRY, "copy", bucket, key,
                         "the answer is not a copy result");
    tm__s3_xml_free(x);
    tm__buf_release(&src);
    return rc;
}

int tm__s3_copy(struct tm__s3 *s, const char *bucket, const char *key,
                const char *src_bucket, const char *src_key, int64_t src_size,
                const struct tm__s3_put_opts *o, struct tm__s3_err *err)
{
    struct tm__s3_put_opts kept;
    struct tm__s3_stat st;
    struct tm__s3_part *parts = NULL;
    char *id = NULL;
    int64_t ps = s->copy_part_size, off;
    size_t n = 0, np;
    int rc;

    if (src_size <= ps)
        return copy_one(s, bucket, key, src_bucket, src_key, o, err);
    if (!o || (o->src_etag && *o->src_etag)) {
        /* a multipart upload does not copy metadata: carry it over; and
         * the source must still be the one asked for */
        rc = tm__s3_head(s, src_bucket, src_key, &st, err);
        if (rc)
            return rc;
        if (o && strcmp(st.etag, o->src_etag) != 0)
            return tm__s3_fail(s, err, TM_ECHANGED, TM_S3_NODE, "copy", bucket,
                               key, "the source %s/%s is no longer the object "
                               "of ETag %s", src_bucket, src_key, o->src_etag);
    }
    if (!o) {
        memset(&kept, 0, sizeof(kept));
        kept.meta = &st.meta;
        o = &kept;
    }
    np = (size_t)((src_size + ps - 1) / ps);
    if (np > 10000)
        return tm__s3_fail(s, err, TM_EFBIG, TM_S3_NODE, "copy", bucket, key,
                           "more than 10000 parts of %lld bytes", (long long)ps);
    parts = calloc(np, sizeof(*parts));
    if (!parts)
        return tm__s3_fail(s, err, TM_ENOMEM, TM_S3_FATAL, "copy", bucket, key,
                           "out of memory");
    rc = tm__s3_mp_create(s, bucket, key, o, &id, err);
    for (off = 0; !rc && off < src_size; off += ps, n++)
        rc = tm__s3_mp_part_copy(s, bucket, key, id, (int)n + 1, src_bucket,
                                 src_key, off,
                                 src_size - off < ps ? src_size - off : ps,
                                 &parts[n], err);
    if (!rc)
        rc = tm__s3_mp_complete(s, bucket, key, id, parts, n, err);
    if (rc && id) {
        struct tm__s3_err e2;
        tm__s3_mp_abort(s, bucket, key, id, &e2);
    }
    free(id);
    free(parts);
    return rc;
}

int tm__s3_mp_create(struct tm__s3 *s, const char *bucket, const char *key,
                     const struct tm__s3_put_opts *o, char **upload_id,
                     struct tm__s3_err *err)
{
    struct s3req r;
    struct tm__s3_xml *x = NULL;
    char hold[6][40];
    int rc;

    *upload_id = NULL;
    tm__s3req_init(&r, s, "create upload", "POST", bucket, key, err);
    if (tm__s3_xml_new(&x, NULL))
        return tm__s3_fail(s, err, TM_ENOMEM, TM_S3_FATAL, "create upload",
                           bucket, key, "out of memory");
    tm__s3req_q(&r, "uploads", NULL);
    tm__s3req_put_opts(&r, o, hold);
    r.xml = x;
    rc = tm__s3req_run(&r);
    if (!rc && (tm__s3_xml_kind(x) != TM_S3X_INITIATE ||
                !*tm__s3_xml_upload_id(x)))
        rc = tm__s3_fail(s, err, TM_EIO, TM_S3_RETRY, "create upload", bucket,
                         key, "no upload id in the answer");
    if (!rc && !(*upload_id = strdup(tm__s3_xml_upload_id(x))))
        rc = tm__s3_fail(s, err, TM_ENOMEM, TM_S3_FATAL, "create upload",
                         bucket, key, "out of memory");
    tm__s3_xml_free(x);
    return rc;
}

int tm__s3_mp_part(struct tm__s3 *s, const char *bucket, const char *key,
                   const char *upload_id, int number, const void *data,
                   size_t n, struct tm__s3_part *part, struct tm__s3_err *err)
{
    struct s3req r;
    unsigned char md5[16];
    unsigned int mlen = 0;
    char md5b[25], num[16];
    int rc;

    tm__s3req_init(&r, s, "upload part", "PUT", bucket, key, err);
    snprintf(num, sizeof(num), "%d", number);
    tm__s3req_q(&r, "partNumber", num);
    tm__s3req_q(&r, "uploadId", upload_id);
    EVP_Digest(data, n, md5, &mlen, EVP_md5(), NULL);
    tm__md5_base64(md5, md5b);
    tm__s3req_h(&r, "Content-MD5", md5b);
    r.body = data ? data : "";
    r.body_len = n;
    rc = tm__s3req_run(&r);
    if (!rc && !r.etag[0])
        rc = tm__s3_fail(s, err, TM_EIO, TM_S3_RETRY, "upload part", bucket,
                         key, "no etag for part %d", number);
    if (!rc) {
        part->number = number;
        part->size = (int64_t)n;
        snprintf(part->etag, sizeof(part->etag), "%s", r.etag);
    }
    return rc;
}

int tm__s3_mp_part_copy(struct tm__s3 *s, const char *bucket, const char *key,
                        const char *upload_id, int number,
                        const char *src_bucket, const char *src_key,
                        int64_t off, int64_t n, struct tm__s3_part *part,
                        struct tm__s3_err *err)
{
    struct s3req r;
    struct tm__buf src = TM__BUF_INIT;
    struct tm__s3_xml *x = NULL;
    char num[16], range[64];
    int rc;

    tm__s3req_init(&r, s, "copy part", "PUT", bucket, key, err);
    if (copy_source(&src, src_bucket, src_key) || tm__s3_xml_new(&x, NULL)) {
        tm__buf_release(&src);
        return tm__s3_fail(s, err, TM_ENOMEM, TM_S3_FATAL, "copy part", bucket,
                           key, "out of memory");
    }
    snprintf(num, sizeof(num), "%d", number);
    range_header(range, sizeof(range), off, n);
    tm__s3req_q(&r, "partNumber", num);
    tm__s3req_q(&r, "uploadId", upload_id);
    tm__s3req_h(&r, "x-amz-copy-source", src.buf);
    tm__s3req_h(&r, "x-amz-copy-source-range", range);
    r.xml = x;
    rc = tm__s3req_run(&r);
    if (!rc && (tm__s3_xml_kind(x) != TM_S3X_COPY_PART || !*tm__s3_xml_etag(x)))
        rc = tm__s3_fail(s, err, TM_EIO, TM_S3_RETRY, "copy part", bucket, key,
                         "the answer is not a part copy result");
    if (!rc) {
        part->number = number;
        part->size = n;
        snprintf(part->etag, sizeof(part->etag), "%s", tm__s3_xml_etag(x));
    }
    tm__s3_xml_free(x);
    tm__buf_release(&src);
    return rc;
}

int tm__s3_mp_list_parts(struct tm__s3 *s, const char *bucket, const char *key,
                         const char *upload_id, struct tm__s3_part **parts,
                         size_t *n, struct tm__s3_err *err)
{
    struct tm__s3_part *all = NULL;
    size_t used = 0, cap = 0;
    int marker = 0, rc = 0, rounds = 0;

    *parts = NULL;
    *n = 0;
    for (;;) {
        struct s3req r;
        struct tm__s3_xml *x = NULL;
        const struct tm__s3_part *pp;
        size_t k, i;
        int trunc, next;
        char mk[16];

        tm__s3req_init(&r, s, "list parts", "GET", bucket, key, err);
        if (tm__s3_xml_new(&x, NULL)) {
            rc = tm__s3_fail(s, err, TM_ENOMEM, TM_S3_FATAL, "list parts",
                             bucket, key, "out of memory");
            break;
        }
        tm__s3req_q(&r, "uploadId", upload_id);
        snprintf(mk, sizeof(mk), "%d", marker);
        if (marker)
            tm__s3req_q(&r, "part-number-marker", mk);
        r.xml = x;
        rc = tm__s3req_run(&r);
        if (!rc && tm__s3_xml_kind(x) != TM_S3X_LIST_PARTS)
            rc = tm__s3_fail(s, err, TM_EIO, TM_S3_RETRY, "list parts", bucket,
                             key, "the answer is not a part list");
        if (rc) {
            tm__s3_xml_free(x);
            break;
        }
        pp = tm__s3_xml_parts(x, &k, &trunc, &next);
        if (used + k > cap) {
            size_t nc = (used + k) * 2 + 16;
            struct tm__s3_part *p = realloc(all, nc * sizeof(*p));
            if (!p) {
                tm__s3_xml_free(x);
                rc = tm__s3_fail(s, err, TM_ENOMEM, TM_S3_FATAL, "list parts",
                                 bucket, key, "out of memory");
                break;
            }
            all = p;
            cap = nc;
        }
        for (i = 0; i < k; i++)
            all[used++] = pp[i];
        tm__s3_xml_free(x);
        if (!trunc)
            break;
        if (next <= marker || ++rounds > 10000) {
            rc = tm__s3_fail(s, err, TM_EIO, TM_S3_NODE, "list parts", bucket,
                             key, "protocol error: truncated part list "
                             "without a next marker");
            break;
        }
        marker = next;
    }
    if (rc) {
        free(all);
        return rc;
    }
    *parts = all;
    *n = used;
    return 0;
}

int tm__s3_mp_complete(struct tm__s3 *s, const char *bucket, const char *key,
                       const char *upload_id, const struct tm__s3_part *parts,
                       size_t n, struct tm__s3_err *err)
{
    struct s3req r;
    struct tm__buf body = TM__BUF_INIT;
    struct tm__s3_xml *x = NULL;
    size_t i;
    int rc = tm__buf_adds(&body, "<CompleteMultipartUpload>");

    for (i = 0; i < n && !rc; i++)
        rc = tm__buf_addf(&body, "<Part><PartNumber>%d</PartNumber>"
                                 "<ETag>\"%s\"</ETag></Part>",
                          parts[i].number, parts[i].etag);
    if (!rc)
        rc = tm__buf_adds(&body, "</CompleteMultipartUpload>");
    if (rc || tm__s3_xml_new(&x, NULL)) {
        tm__buf_release(&body);
        return tm__s3_fail(s, err, TM_ENOMEM, TM_S3_FATAL, "complete upload",
                           bucket, key, "out of memory");
    }
    tm__s3req_init(&r, s, "complete upload", "POST", bucket, key, err);
    tm__s3req_q(&r, "uploadId", upload_id);
    tm__s3req_h(&r, "Content-Type", "application/xml");
    r.body = body.buf;
    r.body_len = body.len;
    r.xml = x;
    rc = tm__s3req_run(&r);
    if (!rc && tm__s3_xml_kind(x) != TM_S3X_COMPLETE)
        rc = tm__s3_fail(s, err, TM_EIO, TM_S3_RETRY, "complete upload", bucket,
                         key, "the answer is not a completion");
    tm__s3_xml_free(x);
    tm__buf_release(&body);
    return rc;
}

int tm__s3_mp_abort(struct tm__s3 *s, const char *bucket, const char *key,
                    const char *upload_id, struct tm__s3_err *err)
{
    struct s3req r;
    int rc;
    tm__s3req_init(&r, s, "abort upload", "DELETE", bucket, key, err);
    tm__s3req_q(&r, "uploadId", upload_id);
    rc = tm__s3req_run(&r);
    if (rc == TM_ENOENT && err && !strcmp(err->s3code, "NoSuchUpload")) {
        tm__s3_err_clear(err);
        rc = 0;
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* the pull reader                                                      */

struct tm__s3_reader {
    struct s3req r;        /* the GET */
    CURLM *m;              /* drives r.h alone */
    char *dst;             /* the caller's buffer during a read */
    size_t room, got;      /* its free bytes, bytes put in it */
    struct tm__buf spill;  /* what curl gave that did not fit */
    size_t spill_off;      /* bytes of spill already handed out */
    int done;              /* the transfer ended */
    int rc;                /* its result once done */
    int paused;            /* the transfer is paused */
    struct tm__s3_err err; /* the detail of rc */
};

static int reader_sink(void *ctx, const void *data, size_t n)
{
    struct tm__s3_reader *rd = ctx;
    size_t k = n < rd->room ? n : rd->room;
    memcpy(rd->dst + rd->got, data, k);
    rd->got += k;
    rd->room -= k;
    if (k < n && tm__buf_add(&rd->spill, (const char *)data + k, n - k))
        return TM_ENOMEM;
    return 0;
}

/* The write callback of the reader: pauses while a spill is pending. */
static size_t reader_write(char *data, size_t size, size_t n, void *ud)
{
    struct tm__s3_reader *rd = ud;
    if (rd->r.status / 100 == 2 && rd->spill.len > rd->spill_off) {
        rd->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    return on_write(data, size, n, &rd->r);
}

/* Runs the transfer until it ends, or until `until` says stop. */
static void reader_pump(struct tm__s3_reader *rd, int want_headers)
{
    while (!rd->done) {
        int running = 0, left;
        CURLMsg *msg;
        if (!want_headers && (rd->got > 0 || rd->paused))
            return;
        if (want_headers && rd->r.status / 100 == 2 &&
            (rd->r.received > 0 || rd->paused))
            return;
        curl_multi_perform(rd->m, &running);
        while ((msg = curl_multi_info_read(rd->m, &left))) {
            if (msg->msg == CURLMSG_DONE) {
                rd->done = 1;
                rd->rc = tm__s3req_finish(&rd->r, msg->data.result);
            }
        }
        if (rd->done || (!want_headers && rd->got > 0))
            return;
        if (running)
            curl_multi_poll(rd->m, NULL, 0, 1000, NULL);
    }
}

int tm__s3_reader_open(struct tm__s3 *s, const char *bucket, const char *key,
                       int64_t off, int64_t len, struct tm__s3_reader **out,
                       struct tm__s3_stat *st, struct tm__s3_err *err)
{
    struct tm__s3_reader *rd;
    char range[64];
    int rc;

    *out = NULL;
    tm__s3_err_clear(err);
    rd = calloc(1, sizeof(*rd));
    if (!rd)
        return tm__s3_fail(s, err, TM_ENOMEM, TM_S3_FATAL, "get", bucket, key,
                           "out of memory");
    tm__buf_init(&rd->spill);
    tm__s3req_init(&rd->r, s, "get", "GET", bucket, key, &rd->err);
    if (off > 0 || len >= 0) {
        range_header(range, sizeof(range), off, len);
        if (len != 0)
            tm__s3req_h(&rd->r, "Range", range);
    }
    rd->r.sink = reader_sink;
    rd->r.sink_ctx = rd;
    rd->r.st = st;
    rc = tm__s3req_prepare(&rd->r);
    if (!rc) {
        curl_easy_setopt(rd->r.h, CURLOPT_WRITEFUNCTION, reader_write);
        curl_easy_setopt(rd->r.h, CURLOPT_WRITEDATA, rd);
        rd->m = curl_multi_init();
        if (!rd->m || curl_multi_add_handle(rd->m, rd->r.h) != CURLM_OK)
            rc = tm__s3_fail(s, &rd->err, TM_ENOMEM, TM_S3_FATAL, "get", bucket,
                             key, "out of memory");
    }
    if (!rc) {
        /* headers: the status, the size, the metadata */
        char buf[1];
        rd->dst = buf;
        rd->room = 0;
        reader_pump(rd, 1);
        rd->dst = NULL;
        if (rd->done && rd->rc)
            rc = rd->rc;
    }
    if (rc) {
        if (err)
            *err = rd->err;
        tm__s3_reader_close(rd);
        return rc;
    }
    *out = rd;
    return 0;
}

int64_t tm__s3_reader_read(struct tm__s3_reader *rd, void *buf, size_t n,
                           struct tm__s3_err *err)
{
    tm__s3_err_clear(err);
    rd->dst = buf;
    rd->room = n;
    rd->got = 0;
    if (rd->spill.len > rd->spill_off) {
        size_t k = rd->spill.len - rd->spill_off;
        if (k > n)
            k = n;
        memcpy(buf, rd->spill.buf + rd->spill_off, k);
        rd->spill_off += k;
        rd->got = k;
        rd->room -= k;
        if (rd->spill_off == rd->spill.len) {
            tm__buf_reset(&rd->spill);
            rd->spill_off = 0;
        }
    }
    if (rd->paused && rd->spill.len == 0) {
        rd->paused = 0;
        curl_easy_pause(rd->r.h, CURLPAUSE_CONT);
    }
    if (!rd->got && !rd->done)
        reader_pump(rd, 0);
    rd->dst = NULL;
    if (rd->got)
        return (int64_t)rd->got;
    if (rd->done && rd->rc) {
        if (err)
            *err = rd->err;
        return rd->rc;
    }
    return 0;
}

void tm__s3_reader_close(struct tm__s3_reader *rd)
{
    if (!rd)
        return;
    if (rd->m) {
        if (rd->r.h)
            curl_multi_remove_handle(rd->m, rd->r.h);
        curl_multi_cleanup(rd->m);
    }
    tm__s3req_release(&rd->r);
    tm__buf_release(&rd->spill);
    free(rd);
}
