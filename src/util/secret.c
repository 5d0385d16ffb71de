/*
 * secret.c - random bytes, the keyed hash (SipHash-2-4) and the names of
 * the copy's temporary files, and times without overflow. Any thread: no
 * state.
 *
 * A temporary file's name is ".treemig." + 32 hex digits + ".tmp", the
 * digits a keyed hash of (run key, root-relative path, attempt). The run
 * key is 16 random bytes made for each copy run and recorded in the state
 * file before the first temporary is created (docs/internals.md): nobody
 * who cannot read the state file can predict a name (so nobody can put a
 * FIFO, a symlink or a hard link there in advance), a name seen in a
 * folder says nothing about any other, and the copy can still find its
 * own leftovers after a crash by computing them again.
 */
#include "util/util.h"

#include "treemig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

int tm__random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return tm__from_errno(errno);
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define SIPROUND                                                              \
    do {                                                                      \
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);             \
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                \
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                \
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);             \
    } while (0)

uint64_t tm__siphash(const unsigned char key[TM_KEY_LEN], const void *data,
                     size_t len)
{
    const unsigned char *in = data;
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56, m;
    size_t i, left = len & 7;

    for (i = 0; i + 8 <= len; i += 8) {
        m = le64(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (i = 0; i < left; i++)
        b |= (uint64_t)in[len - left + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

int tm__tmp_name(const unsigned char key[TM_KEY_LEN], const char *path,
                 int attempt, char *out, size_t outlen)
{
    unsigned char sub[TM_KEY_LEN];
    uint64_t h[2];
    size_t len = strlen(path);
    int i;
    /* two halves from two keys derived from the run key; the attempt is
     * part of the key so that every attempt has its own name */
    for (i = 0; i < 2; i++) {
        memcpy(sub, key, sizeof sub);
        sub[0] ^= (unsigned char)(0x5a + i);
        sub[1] ^= (unsigned char)attempt;
        sub[2] ^= (unsigned char)(attempt >> 8);
        h[i] = tm__siphash(sub, path, len);
    }
    if (snprintf(out, outlen, ".treemig.%016llx%016llx.tmp",
                 (unsigned long long)h[0], (unsigned long long)h[1]) >=
        (int)outlen)
        return TM_ENAMETOOLONG;
    return 0;
}

/* n hex digits at s (lower case)? */
static int hex_run(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int tm__tmp_name_like(const char *name, size_t len)
{
    /* ".treemig." HEX ".tmp", HEX 32 digits (this version) or 16 (the
     * names of earlier versions, a hash of the file's name) */
    size_t n;
    if (len < 9 + 4 || memcmp(name, ".treemig.", 9) != 0 ||
        memcmp(name + len - 4, ".tmp", 4) != 0)
        return 0;
    n = len - 9 - 4;
    return (n == 32 || n == 16) && hex_run(name + 9, n);
}

int64_t tm__ts_to_ns(int64_t sec, int64_t nsec)
{
    int64_t ns;
    if (__builtin_mul_overflow(sec, (int64_t)1000000000, &ns) ||
        __builtin_add_overflow(ns, nsec, &ns) || ns == INT64_MIN)
        return sec < 0 ? TM_MTIME_MIN : TM_MTIME_MAX;
    return ns;
}

int tm__mtime_out_of_range(int64_t ns)
{
    return ns == TM_MTIME_MAX || ns == TM_MTIME_MIN;
}
