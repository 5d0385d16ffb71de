/*
 * buf.h - one growable byte buffer for strings and paths (git's strbuf).
 *
 * Invariants: buf is never NULL (an empty buffer points at a shared ""),
 * buf[len] is always NUL, the content may hold any byte but NUL when used
 * as a path. Any thread may use its own buffers. On allocation failure the
 * functions return TM_ENOMEM and leave the buffer as it was.
 */
#ifndef TM_BUF_H
#define TM_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct tm__buf {
    char *buf;    /* the bytes, NUL-terminated, never NULL */
    size_t len;   /* bytes used, not counting the NUL */
    size_t alloc; /* bytes allocated; 0 while buf is the shared "" */
};

#define TM__BUF_INIT { tm__buf_empty, 0, 0 }
extern char tm__buf_empty[1];

void tm__buf_init(struct tm__buf *b);
/* Frees the content; the buffer is empty and reusable afterwards. */
void tm__buf_release(struct tm__buf *b);
/* Hands the string over to the caller (free() it); the buffer is empty. */
char *tm__buf_detach(struct tm__buf *b, size_t *len);
int tm__buf_grow(struct tm__buf *b, size_t extra);
int tm__buf_add(struct tm__buf *b, const void *data, size_t len);
int tm__buf_adds(struct tm__buf *b, const char *s);
int tm__buf_addch(struct tm__buf *b, char c);
int tm__buf_addf(struct tm__buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int tm__buf_vaddf(struct tm__buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
void tm__buf_reset(struct tm__buf *b);
void tm__buf_setlen(struct tm__buf *b, size_t len);
/* Appends s as a JSON string literal (quotes included); bytes that are not
 * UTF-8 are written as \u00XX of the byte so the output stays valid JSON. */
int tm__buf_add_json(struct tm__buf *b, const char *s, size_t len);

/* Appends s[0..len) for a line of plain output (docs/review.md):
 * printable ASCII and UTF-8 as is; a backslash as \\; tab, newline,
 * carriage return as \t \n \r; other control bytes and bytes that are
 * not UTF-8 as \xHH; misleading code points as \uHHHH. */
int tm__buf_add_escaped(struct tm__buf *b, const char *s, size_t len);

/* Length of the valid UTF-8 sequence at s (at most n bytes; overlongs,
 * surrogates and code points above U+10FFFF are not valid), or 0; *cp
 * (may be NULL) gets the code point. */
size_t tm__utf8_seq(const unsigned char *s, size_t n, uint32_t *cp);
/* 1 when the n bytes at s are UTF-8 throughout (as tm__utf8_seq). */
int tm__utf8_valid(const void *s, size_t n);

/* Joins a root-relative folder path ("/" or "/a/b") and a child name. */
int tm__path_join(struct tm__buf *out, const char *dir, size_t dir_len,
                  const char *name, size_t name_len);
/* Normalizes a root-relative path into out: adds the leading '/', drops
 * repeated and trailing '/'. "" and "/" give "/". "." and ".." are names
 * like any other (no storage lists them, so they match nothing). */
int tm__path_norm(struct tm__buf *out, const char *p);

#endif
