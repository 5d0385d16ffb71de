/*
 * xml.c - the XML answers of S3, parsed with expat as the body arrives
 * (no body is ever held whole): ListObjectsV2 pages, Initiate/Complete
 * MultipartUpload, ListParts, CopyObject and UploadPartCopy results, and
 * Error bodies. Memory is bounded: an element's text is at most 64 KiB, a
 * page at most 100,000 entries, and a document with a DTD is refused (no
 * entity can expand). One parser belongs to the thread that feeds it.
 *
 * Only the elements at known places are kept: (depth, parent, name) says
 * which field a text goes to, so an unknown element anywhere is ignored.
 */
#include "adapter/s3/s3.h"

#include "treemig.h"

#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define XML_TEXT_MAX (64 * 1024)
#define XML_ENTRIES_MAX 100000

/* The field the current element's text goes to. */
enum field {
    F_NONE = 0, F_CODE, F_MESSAGE, F_UPLOAD_ID, F_ETAG, F_TRUNCATED,
    F_NEXT_TOKEN, F_ENCODING, F_KEY, F_SIZE, F_LAST_MODIFIED, F_OBJ_ETAG,
    F_CLASS, F_PREFIX, F_PART_NUMBER, F_PART_ETAG, F_PART_SIZE,
    F_NEXT_PART,
};

struct tm__s3_xml {
    XML_Parser p;              /* expat */
    int depth;                 /* of the element open now; the root is 1 */
    enum tm__s3_xml_kind kind; /* from the root's name */
    int in;                    /* at depth 2: 1 in Contents, 2 in
                                  CommonPrefixes, 3 in Part, 0 elsewhere */
    enum field field;          /* where the text goes, F_NONE: nowhere */
    struct tm__buf text;       /* the text of the current field */
    int failed;                /* a callback stopped the parser */
    char why[160];             /* why, when failed */
    char code[64];             /* Error: Code */
    char message[256];         /* Error: Message */
    struct tm__buf upload_id;  /* Initiate: UploadId */
    char etag[72];             /* Complete, Copy, CopyPart: ETag */
    int truncated;             /* List, ListParts: IsTruncated */
    int encoding_url;          /* List: EncodingType is url */
    int next_marker;           /* ListParts: NextPartNumberMarker */
    struct tm__s3_page *page;  /* List: where the page goes (may be NULL) */
    size_t cap_obj, cap_pre;   /* allocated entries of the page's arrays */
    size_t *key_off;           /* offsets in page->arena of each key */
    size_t *pre_off;           /* offsets in page->arena of each prefix */
    size_t token_off;          /* offset of the token, (size_t)-1: none */
    struct tm__s3_part *parts; /* ListParts: the parts */
    size_t n_parts, cap_parts; /* used and allocated */
};

static void stop(struct tm__s3_xml *x, const char *why)
{
    if (!x->failed) {
        x->failed = 1;
        snprintf(x->why, sizeof(x->why), "%s", why);
    }
    XML_StopParser(x->p, XML_FALSE);
}

static enum tm__s3_xml_kind kind_of(const char *root)
{
    static const struct {
        const char *name;
        enum tm__s3_xml_kind kind;
    } roots[] = {
        {"Error", TM_S3X_ERROR},
        {"ListBucketResult", TM_S3X_LIST},
        {"InitiateMultipartUploadResult", TM_S3X_INITIATE},
        {"CompleteMultipartUploadResult", TM_S3X_COMPLETE},
        {"ListPartsResult", TM_S3X_LIST_PARTS},
        {"CopyObjectResult", TM_S3X_COPY},
        {"CopyPartResult", TM_S3X_COPY_PART},
    };
    size_t i;
    for (i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
        if (!strcmp(root, roots[i].name))
            return roots[i].kind;
    return TM_S3X_UNKNOWN;
}

/* The field of element name at the current depth, or F_NONE. */
static enum field field_of(const struct tm__s3_xml *x, const char *n)
{
    if (x->depth == 2) {
        switch (x->kind) {
        case TM_S3X_ERROR:
            return !strcmp(n, "Code") ? F_CODE
                 : !strcmp(n, "Message") ? F_MESSAGE : F_NONE;
        case TM_S3X_LIST:
            return !strcmp(n, "IsTruncated") ? F_TRUNCATED
                 : !strcmp(n, "NextContinuationToken") ? F_NEXT_TOKEN
                 : !strcmp(n, "EncodingType") ? F_ENCODING : F_NONE;
        case TM_S3X_INITIATE:
            return !strcmp(n, "UploadId") ? F_UPLOAD_ID : F_NONE;
        case TM_S3X_COMPLETE:
        case TM_S3X_COPY:
        case TM_S3X_COPY_PART:
            return !strcmp(n, "ETag") ? F_ETAG : F_NONE;
        case TM_S3X_LIST_PARTS:
            return !strcmp(n, "IsTruncated") ? F_TRUNCATED
                 : !strcmp(n, "NextPartNumberMarker") ? F_NEXT_PART : F_NONE;
        default:
            return F_NONE;
        }
    }
    if (x->depth == 3 && x->kind == TM_S3X_LIST && x->in == 1)
        return !strcmp(n, "Key") ? F_KEY
             : !strcmp(n, "Size") ? F_SIZE
             : !strcmp(n, "LastModified") ? F_LAST_MODIFIED
             : !strcmp(n, "ETag") ? F_OBJ_ETAG
             : !strcmp(n, "StorageClass") ? F_CLASS : F_NONE;
    if (x->depth == 3 && x->kind == TM_S3X_LIST && x->in == 2)
        return !strcmp(n, "Prefix") ? F_PREFIX : F_NONE;
    if (x->depth == 3 && x->kind == TM_S3X_LIST_PARTS && x->in == 3)
        return !strcmp(n, "PartNumber") ? F_PART_NUMBER
             : !strcmp(n, "ETag") ? F_PART_ETAG
             : !strcmp(n, "Size") ? F_PART_SIZE : F_NONE;
    return F_NONE;
}

/* Grows an array of *cap entries of size sz to hold one more. */
static int grow(void **arr, size_t *cap, size_t used, size_t sz)
{
    size_t n;
    void *p;
    if (used < *cap)
        return 0;
    if (used >= XML_ENTRIES_MAX)
        return TM_EIO;
    n = *cap ? *cap * 2 : 64;
    p = realloc(*arr, n * sz);
    if (!p)
        return TM_ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

static void XMLCALL on_start(void *ud, const XML_Char *name,
                             const XML_Char **attrs)
{
    struct tm__s3_xml *x = ud;
    struct tm__s3_page *pg = x->page;
    (void)attrs;
    x->depth++;
    if (x->depth == 1) {
        x->kind = kind_of(name);
        return;
    }
    if (x->depth == 2) {
        x->in = 0;
        if (x->kind == TM_S3X_LIST && pg && !strcmp(name, "Contents")) {
            size_t cap = x->cap_obj;
            if (grow((void **)&pg->objects, &cap, pg->n_objects,
                     sizeof(*pg->objects))) {
                stop(x, "too many objects in one page");
                return;
            }
            if (cap != x->cap_obj) {
                size_t *k = realloc(x->key_off, cap * sizeof(size_t));
                if (!k) {
                    stop(x, "out of memory");
                    return;
                }
                x->key_off = k;
                x->cap_obj = cap;
            }
            memset(&pg->objects[pg->n_objects], 0, sizeof(*pg->objects));
            x->key_off[pg->n_objects] = (size_t)-1;
            pg->objects[pg->n_objects].size = -1;
            pg->n_objects++;
            x->in = 1;
        } else if (x->kind == TM_S3X_LIST && pg &&
                   !strcmp(name, "CommonPrefixes")) {
            if (grow((void **)&x->pre_off, &x->cap_pre, pg->n_prefixes,
                     sizeof(size_t))) {
                stop(x, "too many prefixes in one page");
                return;
            }
            x->pre_off[pg->n_prefixes++] = (size_t)-1;
            x->in = 2;
        } else if (x->kind == TM_S3X_LIST_PARTS && !strcmp(name, "Part")) {
            if (grow((void **)&x->parts, &x->cap_parts, x->n_parts,
                     sizeof(*x->parts))) {
                stop(x, "too many parts in one page");
                return;
            }
            memset(&x->parts[x->n_parts++], 0, sizeof(*x->parts));
            x->in = 3;
        }
    }
    x->field = field_of(x, name);
    tm__buf_reset(&x->text);
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct tm__s3_xml *x = ud;
    if (x->field == F_NONE || x->failed)
        return;
    if (x->text.len + (size_t)len > XML_TEXT_MAX) {
        stop(x, "element text over 64 KiB");
        return;
    }
    if (tm__buf_add(&x->text, s, (size_t)len))
        stop(x, "out of memory");
}

/* Copies the text into out (len bytes), unquoting an ETag. */
static void copy_etag(char *out, size_t len, const char *t)
{
    size_t n = strlen(t);
    if (n >= 2 && t[0] == '"' && t[n - 1] == '"') {
        t++;
        n -= 2;
    } else if (n >= 12 && !strncmp(t, "&quot;", 6)) {
        t += 6;
        n -= 12;
    }
    if (n >= len)
        n = len - 1;
    memcpy(out, t, n);
    out[n] = '\0';
}

static int parse_i64(const char *t, int64_t *v)
{
    char *end;
    long long n;
    if (!*t)
        return TM_EINVAL;
    n = strtoll(t, &end, 10);
    if (*end || n < 0)
        return TM_EINVAL;
    *v = n;
    return 0;
}

/* Stores the current text in the arena; returns its offset. */
static int to_arena(struct tm__s3_xml *x, size_t *off)
{
    struct tm__buf *a = &x->page->arena;
    *off = a->len;
    if (tm__buf_add(a, x->text.buf, x->text.len) || tm__buf_addch(a, '\0'))
        return TM_ENOMEM;
    return 0;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    struct tm__s3_xml *x = ud;
    struct tm__s3_page *pg = x->page;
    const char *t = x->text.buf;
    struct tm__s3_object *o = pg && pg->n_objects ? &pg->objects[pg->n_objects - 1] : NULL;
    struct tm__s3_part *p = x->n_parts ? &x->parts[x->n_parts - 1] : NULL;
    int64_t v;
    (void)name;

    if (x->failed)
        return;
    switch (x->field) {
    case F_NONE:
        break;
    case F_CODE:
        snprintf(x->code, sizeof(x->code), "%s", t);
        break;
    case F_MESSAGE:
        snprintf(x->message, sizeof(x->message), "%s", t);
        break;
    case F_UPLOAD_ID:
        tm__buf_reset(&x->upload_id);
        if (tm__buf_add(&x->upload_id, t, x->text.len))
            stop(x, "out of memory");
        break;
    case F_ETAG:
        copy_etag(x->etag, sizeof(x->etag), t);
        break;
    case F_TRUNCATED:
        x->truncated = !strcmp(t, "true");
        break;
    case F_ENCODING:
        x->encoding_url = !strcmp(t, "url");
        break;
    case F_NEXT_TOKEN:
        if (pg && x->text.len && to_arena(x, &x->token_off))
            stop(x, "out of memory");
        break;
    case F_KEY:
        if (o && (to_arena(x, &x->key_off[pg->n_objects - 1]) == 0))
            o->key_len = x->text.len;
        else
            stop(x, "out of memory");
        break;
    case F_SIZE:
        if (o && parse_i64(t, &o->size))
            stop(x, "bad object size");
        break;
    case F_LAST_MODIFIED:
        if (o && tm__s3_iso8601_parse(t, &o->mtime_ns))
            stop(x, "bad LastModified");
        break;
    case F_OBJ_ETAG:
        if (o)
            copy_etag(o->etag, sizeof(o->etag), t);
        break;
    case F_CLASS:
        if (o)
            snprintf(o->storage_class, sizeof(o->storage_class), "%s", t);
        break;
    case F_PREFIX:
        if (pg && to_arena(x, &x->pre_off[pg->n_prefixes - 1]))
            stop(x, "out of memory");
        break;
    case F_PART_NUMBER:
        if (p && (parse_i64(t, &v) || v < 1 || v > 10000))
            stop(x, "bad part number");
        else if (p)
            p->number = (int)v;
        break;
    case F_PART_ETAG:
        if (p)
            copy_etag(p->etag, sizeof(p->etag), t);
        break;
    case F_PART_SIZE:
        if (p && parse_i64(t, &p->size))
            stop(x, "bad part size");
        break;
    case F_NEXT_PART:
        if (parse_i64(t, &v) || v > 10000)
            stop(x, "bad part number marker");
        else
            x->next_marker = (int)v;
        break;
    }
    x->field = F_NONE;
    tm__buf_reset(&x->text);
    x->depth--;
}

/* S3 answers have no DTD; one that declares entities is refused. */
static void XMLCALL on_entity(void *ud, const XML_Char *name, int pe,
                              const XML_Char *value, int vlen,
                              const XML_Char *base, const XML_Char *sysid,
                              const XML_Char *pubid, const XML_Char *notation)
{
    (void)name; (void)pe; (void)value; (void)vlen; (void)base; (void)sysid;
    (void)pubid; (void)notation;
    stop(ud, "entity declaration in an answer");
}

int tm__s3_xml_new(struct tm__s3_xml **out, struct tm__s3_page *page)
{
    struct tm__s3_xml *x = calloc(1, sizeof(*x));
    *out = NULL;
    if (!x)
        return TM_ENOMEM;
    x->p = XML_ParserCreate("UTF-8");
    if (!x->p) {
        free(x);
        return TM_ENOMEM;
    }
    XML_SetUserData(x->p, x);
    XML_SetElementHandler(x->p, on_start, on_end);
    XML_SetCharacterDataHandler(x->p, on_text);
    XML_SetEntityDeclHandler(x->p, on_entity);
    tm__buf_init(&x->text);
    tm__buf_init(&x->upload_id);
    x->token_off = (size_t)-1;
    x->page = page;
    if (page) {
        memset(page, 0, sizeof(*page));
        tm__buf_init(&page->arena);
    }
    *out = x;
    return 0;
}

void tm__s3_xml_free(struct tm__s3_xml *x)
{
    if (!x)
        return;
    XML_ParserFree(x->p);
    tm__buf_release(&x->text);
    tm__buf_release(&x->upload_id);
    free(x->key_off);
    free(x->pre_off);
    free(x->parts);
    free(x);
}

int tm__s3_xml_feed(struct tm__s3_xml *x, const char *data, size_t n, int last,
                    char *why, size_t len)
{
    while (n > 0 || last) {
        int chunk = n > (1 << 20) ? (1 << 20) : (int)n;
        int fin = last && (size_t)chunk == n;
        if (XML_Parse(x->p, data, chunk, fin) == XML_STATUS_ERROR) {
            if (x->failed)
                snprintf(why, len, "%s", x->why);
            else
                snprintf(why, len, "malformed xml at line %lu: %s",
                         (unsigned long)XML_GetCurrentLineNumber(x->p),
                         XML_ErrorString(XML_GetErrorCode(x->p)));
            return TM_EIO;
        }
        data += chunk;
        n -= (size_t)chunk;
        if (fin)
            break;
    }
    return 0;
}

enum tm__s3_xml_kind tm__s3_xml_kind(const struct tm__s3_xml *x)
{
    return x->kind;
}

const char *tm__s3_xml_code(const struct tm__s3_xml *x) { return x->code; }
const char *tm__s3_xml_message(const struct tm__s3_xml *x) { return x->message; }
const char *tm__s3_xml_upload_id(const struct tm__s3_xml *x) { return x->upload_id.buf; }
const char *tm__s3_xml_etag(const struct tm__s3_xml *x) { return x->etag; }

const struct tm__s3_part *tm__s3_xml_parts(const struct tm__s3_xml *x,
                                           size_t *n, int *truncated,
                                           int *next_marker)
{
    *n = x->n_parts;
    *truncated = x->truncated;
    *next_marker = x->next_marker;
    return x->parts;
}

/* Byte order of two keys (shorter first when one is a prefix). */
static int keycmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

int tm__s3_xml_page_finish(struct tm__s3_xml *x, char *why, size_t len)
{
    struct tm__s3_page *pg = x->page;
    char *base;
    size_t i;
    int rc;

    if (!pg || x->kind != TM_S3X_LIST) {
        snprintf(why, len, "not a listing answer");
        return TM_EIO;
    }
    base = pg->arena.buf;
    pg->truncated = x->truncated;
    pg->next_token = x->token_off != (size_t)-1 ? base + x->token_off : NULL;
    if (pg->n_prefixes) {
        pg->prefixes = calloc(pg->n_prefixes, sizeof(*pg->prefixes));
        pg->prefix_lens = calloc(pg->n_prefixes, sizeof(*pg->prefix_lens));
        if (!pg->prefixes || !pg->prefix_lens)
            return TM_ENOMEM;
    }
    for (i = 0; i < pg->n_objects; i++) {
        struct tm__s3_object *o = &pg->objects[i];
        if (x->key_off[i] == (size_t)-1 || o->size < 0) {
            snprintf(why, len, "object without a key or a size");
            return TM_EIO;
        }
        o->key = base + x->key_off[i];
        if (x->encoding_url &&
            (rc = tm__s3_url_decode(base + x->key_off[i], &o->key_len))) {
            snprintf(why, len, "bad url-encoded key");
            return TM_EIO;
        }
        if (!o->key_len) {
            snprintf(why, len, "empty key");
            return TM_EIO;
        }
    }
    for (i = 0; i < pg->n_prefixes; i++) {
        if (x->pre_off[i] == (size_t)-1) {
            snprintf(why, len, "common prefix without a prefix");
            return TM_EIO;
        }
        pg->prefixes[i] = base + x->pre_off[i];
        pg->prefix_lens[i] = strlen(pg->prefixes[i]);
        if (x->encoding_url &&
            tm__s3_url_decode(base + x->pre_off[i], &pg->prefix_lens[i])) {
            snprintf(why, len, "bad url-encoded prefix");
            return TM_EIO;
        }
    }
    pg->last = NULL;
    if (pg->n_objects)
        pg->last = (char *)pg->objects[pg->n_objects - 1].key;
    if (pg->n_prefixes) {
        const char *p = pg->prefixes[pg->n_prefixes - 1];
        size_t pl = pg->prefix_lens[pg->n_prefixes - 1];
        if (!pg->last || keycmp(p, pl, pg->last, strlen(pg->last)) > 0)
            pg->last = (char *)p;
    }
    return 0;
}

int tm__s3_iso8601_parse(const char *s, int64_t *ns)
{
    struct tm t;
    int n = 0;
    int64_t frac = 0, scale = 100000000;
    time_t secs;

    memset(&t, 0, sizeof(t));
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &t.tm_year, &t.tm_mon,
               &t.tm_mday, &t.tm_hour, &t.tm_min, &t.tm_sec, &n) != 6 ||
        n != 19)
        return TM_EINVAL;
    s += n;
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return TM_EINVAL;
        for (; *s >= '0' && *s <= '9'; s++) {
            frac += (*s - '0') * scale;
            scale /= 10;
        }
    }
    if (strcmp(s, "Z") && strcmp(s, "+00:00"))
        return TM_EINVAL;
    if (t.tm_mon < 1 || t.tm_mon > 12 || t.tm_mday < 1 || t.tm_mday > 31 ||
        t.tm_hour > 23 || t.tm_min > 59 || t.tm_sec > 60)
        return TM_EINVAL;
    t.tm_year -= 1900;
    t.tm_mon -= 1;
    secs = timegm(&t);
    *ns = (int64_t)secs * 1000000000 + frac;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int tm__s3_url_decode(char *s, size_t *len)
{
    size_t i, o = 0, n = strlen(s);
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return TM_EINVAL;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return TM_EINVAL;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        s[o++] = c;
    }
    s[o] = '\0';
    *len = o;
    return 0;
}
