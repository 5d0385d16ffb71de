/* buf.c - the growable buffer of buf.h. Used by every thread on its own
 * buffers; no shared state but the empty string. */
#include "util/buf.h"

#include "treemig.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char tm__buf_empty[1];

void tm__buf_init(struct tm__buf *b)
{
    b->buf = tm__buf_empty;
    b->len = 0;
    b->alloc = 0;
}

void tm__buf_release(struct tm__buf *b)
{
    if (b->alloc)
        free(b->buf);
    tm__buf_init(b);
}

char *tm__buf_detach(struct tm__buf *b, size_t *len)
{
    char *s;
    if (len)
        *len = b->len;
    if (!b->alloc) {
        s = malloc(1);
        if (s)
            s[0] = '\0';
    } else {
        s = b->buf;
    }
    tm__buf_init(b);
    return s;
}

int tm__buf_grow(struct tm__buf *b, size_t extra)
{
    size_t need, n;
    char *p;
    if (extra > SIZE_MAX - b->len - 1)
        return TM_ENOMEM;
    need = b->len + extra + 1;
    if (need <= b->alloc)
        return 0;
    n = b->alloc ? b->alloc : 64;
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    p = realloc(b->alloc ? b->buf : NULL, n);
    if (!p)
        return TM_ENOMEM;
    if (!b->alloc)
        p[0] = '\0';
    b->buf = p;
    b->alloc = n;
    return 0;
}

int tm__buf_add(struct tm__buf *b, const void *data, size_t len)
{
    int rc = tm__buf_grow(b, len);
    if (rc)
        return rc;
    memcpy(b->buf + b->len, data, len);
    b->len += len;
    b->buf[b->len] = '\0';
    return 0;
}

int tm__buf_adds(struct tm__buf *b, const char *s)
{
    return tm__buf_add(b, s, strlen(s));
}

int tm__buf_addch(struct tm__buf *b, char c)
{
    return tm__buf_add(b, &c, 1);
}

int tm__buf_vaddf(struct tm__buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    int n;
    int rc;

    va_copy(cp, ap);
    n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0)
        return TM_EINVAL;
    rc = tm__buf_grow(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int tm__buf_addf(struct tm__buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = tm__buf_vaddf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void tm__buf_reset(struct tm__buf *b)
{
    tm__buf_setlen(b, 0);
}

void tm__buf_setlen(struct tm__buf *b, size_t len)
{
    if (!b->alloc)
        return;
    b->len = len;
    b->buf[len] = '\0';
}

size_t tm__utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c;
    size_t len, i;
    if (n == 0)
        return 0;
    if (s[0] < 0x80) {
        len = 1;
        c = s[0];
    } else if ((s[0] & 0xE0) == 0xC0) {
        len = 2;
        c = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3;
        c = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4;
        c = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) ||
        (len == 4 && c < 0x10000) || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    if (cp)
        *cp = c;
    return len;
}

int tm__utf8_valid(const void *s, size_t n)
{
    const unsigned char *p = s;
    size_t i = 0, k;
    uint64_t w;
    while (i < n) {
        /* ASCII eight bytes at a time: most names are (a PostgreSQL
         * writer checks every text it binds) */
        while (n - i >= 8 && (memcpy(&w, p + i, 8), !(w & 0x8080808080808080u)))
            i += 8;
        while (i < n && p[i] < 0x80) /* the last ASCII bytes */
            i++;
        if (i == n)
            break;
        if (!(k = tm__utf8_seq(p + i, n - i, NULL)))
            return 0;
        i += k;
    }
    return 1;
}

/* Code points that would mislead a reader of a terminal or of a line:
 * C1 controls, line and paragraph separators, bidirectional controls. */
static int misleading(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C || cp == 0x200E ||
           cp == 0x200F || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

/* buf.h; misleading() says which code points go as \uHHHH. */
int tm__buf_add_escaped(struct tm__buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;
    uint32_t cp;
    int rc = 0;
    while (!rc && i < len) {
        unsigned char c = p[i];
        if (c == '\\') {
            rc = tm__buf_add(b, "\\\\", 2);
            i++;
        } else if (c == '\t' || c == '\n' || c == '\r') {
            char e[2] = { '\\', c == '\t' ? 't' : c == '\n' ? 'n' : 'r' };
            rc = tm__buf_add(b, e, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            rc = tm__buf_addf(b, "\\x%02x", c);
            i++;
        } else if (c < 0x80) {
            rc = tm__buf_addch(b, (char)c);
            i++;
        } else if ((n = tm__utf8_seq(p + i, len - i, &cp)) == 0) {
            rc = tm__buf_addf(b, "\\x%02x", c);
            i++;
        } else if (misleading(cp)) {
            rc = tm__buf_addf(b, "\\u%04x", (unsigned)cp);
            i += n;
        } else {
            rc = tm__buf_add(b, p + i, n);
            i += n;
        }
    }
    return rc;
}

int tm__buf_add_json(struct tm__buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;
    int rc = tm__buf_addch(b, '"');
    while (!rc && i < len) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            rc = tm__buf_add(b, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            rc = tm__buf_addf(b, "\\u%04x", c);
            i++;
        } else if ((n = tm__utf8_seq(p + i, len - i, NULL)) != 0) {
            rc = tm__buf_add(b, p + i, n);
            i += n;
        } else {
            /* not UTF-8: keep the byte's value visible and the JSON valid */
            rc = tm__buf_addf(b, "\\u%04x", c);
            i++;
        }
    }
    if (!rc)
        rc = tm__buf_addch(b, '"');
    return rc;
}

int tm__path_join(struct tm__buf *out, const char *dir, size_t dir_len,
                  const char *name, size_t name_len)
{
    int rc;
    tm__buf_reset(out);
    rc = tm__buf_add(out, dir, dir_len);
    if (!rc && !(dir_len == 1 && dir[0] == '/'))
        rc = tm__buf_addch(out, '/');
    if (!rc)
        rc = tm__buf_add(out, name, name_len);
    return rc;
}

int tm__path_norm(struct tm__buf *out, const char *p)
{
    int rc = 0;
    tm__buf_reset(out);
    while (!rc && *p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        rc = tm__buf_addch(out, '/');
        while (!rc && *p && *p != '/')
            rc = tm__buf_addch(out, *p++);
    }
    if (!rc && !out->len)
        rc = tm__buf_addch(out, '/');
    return rc;
}
