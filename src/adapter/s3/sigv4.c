/*
 * sigv4.c - AWS Signature Version 4 on OpenSSL's HMAC and SHA-256, written
 * here rather than taken from curl: Debian's curl 7.88 signs queries
 * without values and unsorted queries wrongly (fixed in 8.x). Pure
 * functions of their arguments, for any thread. The secret key is read
 * only to derive the signing key and never copied into any output.
 *
 * The algorithm (AWS's "Create a signed AWS API request"):
 *   canonical request = METHOD \n URI \n QUERY \n HEADERS \n \n SIGNED \n HASH
 *   string to sign    = AWS4-HMAC-SHA256 \n DATE \n SCOPE \n hex(SHA256(creq))
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" secret, day), region),
 *                            service), "aws4_request")
 * S3 neither normalises nor double-encodes the path: the caller encodes it
 * once with tm__sigv4_encode(..., keep_slash = 1).
 */
#include "adapter/s3/s3.h"

#include "treemig.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

static const char hexdig[] = "0123456789ABCDEF";
static const char hexlow[] = "0123456789abcdef";

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
           c == '~';
}

int tm__sigv4_encode(struct tm__buf *out, const char *s, size_t n,
                     int keep_slash)
{
    size_t i;
    int rc = tm__buf_grow(out, n * 3);
    if (rc)
        return rc;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            out->buf[out->len++] = (char)c;
        } else {
            out->buf[out->len++] = '%';
            out->buf[out->len++] = hexdig[c >> 4];
            out->buf[out->len++] = hexdig[c & 15];
        }
    }
    out->buf[out->len] = '\0';
    return 0;
}

/* One query parameter, encoded, for sorting. */
struct qent {
    char *name;  /* encoded name (malloc'd) */
    char *value; /* encoded value (malloc'd), NULL when none */
};

static int qent_cmp(const void *a, const void *b)
{
    const struct qent *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return strcmp(x->value ? x->value : "", y->value ? y->value : "");
}

static char *encode_dup(const char *s)
{
    struct tm__buf b = TM__BUF_INIT;
    if (tm__sigv4_encode(&b, s, strlen(s), 0)) {
        tm__buf_release(&b);
        return NULL;
    }
    return tm__buf_detach(&b, NULL);
}

int tm__sigv4_query(struct tm__buf *out, const struct tm__s3_kv *q, size_t n,
                    int canonical)
{
    struct qent *e;
    size_t i;
    int rc = 0;

    if (n == 0)
        return 0;
    e = calloc(n, sizeof(*e));
    if (!e)
        return TM_ENOMEM;
    for (i = 0; i < n; i++) {
        e[i].name = encode_dup(q[i].name);
        e[i].value = q[i].value ? encode_dup(q[i].value) : NULL;
        if (!e[i].name || (q[i].value && !e[i].value)) {
            rc = TM_ENOMEM;
            goto out;
        }
    }
    qsort(e, n, sizeof(*e), qent_cmp);
    for (i = 0; i < n && !rc; i++) {
        if (i)
            rc = tm__buf_addch(out, '&');
        if (!rc)
            rc = tm__buf_adds(out, e[i].name);
        if (!rc && (e[i].value || canonical))
            rc = tm__buf_addch(out, '=');
        if (!rc && e[i].value)
            rc = tm__buf_adds(out, e[i].value);
    }
out:
    for (i = 0; i < n; i++) {
        free(e[i].name);
        free(e[i].value);
    }
    free(e);
    return rc;
}

void tm__sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0, i;
    EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
    for (i = 0; i < 32; i++) {
        out[2 * i] = hexlow[md[i] >> 4];
        out[2 * i + 1] = hexlow[md[i] & 15];
    }
    out[64] = '\0';
}

void tm__md5_base64(const unsigned char md5[16], char out[25])
{
    EVP_EncodeBlock((unsigned char *)out, md5, 16); /* 24 chars + NUL */
}

/* One header, lower-cased and trimmed, for sorting. */
struct hent {
    char *name;   /* lower-case name (malloc'd) */
    char *value;  /* trimmed value (malloc'd) */
    size_t order; /* position given, for a stable sort */
};

static int hent_cmp(const void *a, const void *b)
{
    const struct hent *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* The value without leading and trailing blanks, inner runs made one. */
static char *trim_dup(const char *v)
{
    size_t n = strlen(v), i, o = 0;
    char *r = malloc(n + 1);
    int space = 0;
    if (!r)
        return NULL;
    for (i = 0; i < n; i++) {
        char c = v[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            space = o > 0;
            continue;
        }
        if (space)
            r[o++] = ' ';
        space = 0;
        r[o++] = c;
    }
    r[o] = '\0';
    return r;
}

static void hmac(const void *key, size_t klen, const void *msg, size_t mlen,
                 unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &len);
}

int tm__sigv4_sign(const struct tm__sigv4 *r, struct tm__buf *auth,
                   struct tm__buf *creq_out, struct tm__buf *sts_out)
{
    struct tm__buf creq = TM__BUF_INIT, signed_h = TM__BUF_INIT;
    struct tm__buf sts = TM__BUF_INIT, key = TM__BUF_INIT;
    struct hent *h = NULL;
    unsigned char k[32], sig[32];
    char day[9], hash[65], sighex[65];
    size_t i, j;
    int rc = 0;

    if (strlen(r->amz_date) != 16)
        return TM_EINVAL;
    memcpy(day, r->amz_date, 8);
    day[8] = '\0';

    h = calloc(r->n_headers ? r->n_headers : 1, sizeof(*h));
    if (!h)
        return TM_ENOMEM;
    for (i = 0; i < r->n_headers; i++) {
        h[i].name = strdup(r->headers[i].name);
        h[i].value = trim_dup(r->headers[i].value ? r->headers[i].value : "");
        h[i].order = i;
        if (!h[i].name || !h[i].value) {
            rc = TM_ENOMEM;
            goto out;
        }
        for (j = 0; h[i].name[j]; j++)
            if (h[i].name[j] >= 'A' && h[i].name[j] <= 'Z')
                h[i].name[j] = (char)(h[i].name[j] - 'A' + 'a');
    }
    qsort(h, r->n_headers, sizeof(*h), hent_cmp);

    rc = tm__buf_addf(&creq, "%s\n%s\n%s\n", r->method, r->path, r->query);
    for (i = 0; i < r->n_headers && !rc; i++) {
        if (i && !strcmp(h[i].name, h[i - 1].name)) {
            rc = tm__buf_addf(&creq, ",%s", h[i].value);
            continue;
        }
        if (i)
            rc = tm__buf_addch(&creq, '\n');
        if (!rc)
            rc = tm__buf_addf(&creq, "%s:%s", h[i].name, h[i].value);
        if (!rc && signed_h.len)
            rc = tm__buf_addch(&signed_h, ';');
        if (!rc)
            rc = tm__buf_adds(&signed_h, h[i].name);
    }
    if (!rc)
        rc = tm__buf_addf(&creq, "\n\n%s\n%s", signed_h.buf, r->payload_hash);
    if (rc)
        goto out;

    tm__sha256_hex(creq.buf, creq.len, hash);
    rc = tm__buf_addf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s",
                      r->amz_date, day, r->region, r->service, hash);
    if (!rc)
        rc = tm__buf_addf(&key, "AWS4%s", r->secret_key);
    if (rc)
        goto out;
    hmac(key.buf, key.len, day, 8, k);
    hmac(k, 32, r->region, strlen(r->region), k);
    hmac(k, 32, r->service, strlen(r->service), k);
    hmac(k, 32, "aws4_request", 12, k);
    hmac(k, 32, sts.buf, sts.len, sig);
    for (i = 0; i < 32; i++) {
        sighex[2 * i] = hexlow[sig[i] >> 4];
        sighex[2 * i + 1] = hexlow[sig[i] & 15];
    }
    sighex[64] = '\0';
    rc = tm__buf_addf(auth,
                      "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, "
                      "SignedHeaders=%s, Signature=%s",
                      r->access_key, day, r->region, r->service, signed_h.buf,
                      sighex);
    if (!rc && creq_out)
        rc = tm__buf_add(creq_out, creq.buf, creq.len);
    if (!rc && sts_out)
        rc = tm__buf_add(sts_out, sts.buf, sts.len);
out:
    if (key.alloc)
        OPENSSL_cleanse(key.buf, key.alloc);
    OPENSSL_cleanse(k, sizeof(k));
    tm__buf_release(&key);
    tm__buf_release(&creq);
    tm__buf_release(&sts);
    tm__buf_release(&signed_h);
    for (i = 0; i < r->n_headers; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
    return rc;
}
