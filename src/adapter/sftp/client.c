/*
 * client.c - the pool of SSH sessions and the SFTP v3 protocol spoken over
 * each session's one channel (draft-ietf-secsh-filexfer-02, with OpenSSH's
 * posix-rename, statvfs, fsync, lsetstat and limits extensions).
 *
 * Any thread calls the pool; a session is used by one thread at a time (it
 * is taken from the idle list for a call, or for the life of a directory,
 * read or write handle). libssh2 runs in blocking mode with a timeout, so a
 * stalled server fails a call (retry class) instead of hanging it. Requests
 * carry ids; replies are matched by id, a reply that arrives before it is
 * waited for is kept aside (stash), so any number of requests may be in
 * flight: reads keep read_ahead READs ahead of the caller, writes keep
 * write_behind WRITEs unacknowledged, listings keep several READDIRs out.
 *
 * A transport failure marks the session broken: the call fails with
 * TM_ECONNRESET (or TM_ETIMEDOUT), class retry, and the session is closed
 * when it is given back; the next call opens a new one. Connects that fail
 * for a transient reason are spaced by a full-jitter backoff (100 ms
 * doubling to 10 s): a call made during the wait fails at once, class
 * retry, with the time left in retry_after_ms. Lock order: sftp_int.h.
 */
#include "adapter/sftp/sftp_int.h"

#include "treemig.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Packet types. */
enum {
    FXP_INIT = 1, FXP_VERSION = 2, FXP_OPEN = 3, FXP_CLOSE = 4, FXP_READ = 5,
    FXP_WRITE = 6, FXP_LSTAT = 7, FXP_FSTAT = 8, FXP_SETSTAT = 9,
    FXP_FSETSTAT = 10, FXP_OPENDIR = 11, FXP_READDIR = 12, FXP_REMOVE = 13,
    FXP_MKDIR = 14, FXP_RMDIR = 15, FXP_REALPATH = 16, FXP_STAT = 17,
    FXP_RENAME = 18, FXP_READLINK = 19, FXP_SYMLINK = 20, FXP_STATUS = 101,
    FXP_HANDLE = 102, FXP_DATA = 103, FXP_NAME = 104, FXP_ATTRS = 105,
    FXP_EXTENDED = 200, FXP_EXTENDED_REPLY = 201
};
/* Status codes. */
enum {
    FX_OK = 0, FX_EOF = 1, FX_NO_SUCH_FILE = 2, FX_PERMISSION_DENIED = 3,
    FX_FAILURE = 4, FX_BAD_MESSAGE = 5, FX_NO_CONNECTION = 6,
    FX_CONNECTION_LOST = 7, FX_OP_UNSUPPORTED = 8
};
/* Attribute flags and open flags. */
enum { ATTR_SIZE = 1, ATTR_UIDGID = 2, ATTR_PERM = 4, ATTR_TIME = 8,
       ATTR_EXTENDED = (int)0x80000000u };
enum { FXF_READ = 1, FXF_WRITE = 2, FXF_CREAT = 8, FXF_TRUNC = 0x10,
       FXF_EXCL = 0x20 };

/* The largest packet accepted from a server (OpenSSH sends <= 256 KiB). */
#define MAX_PACKET (4u << 20)
/* The channel window offered to the server: covers the replies in flight. */
#define CHANNEL_WINDOW (32u << 20)
/* READDIR requests in flight per listing. */
#define READDIR_AHEAD 8
/* Backoff of connects: first wait and cap, in ms. */
#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 10000
/* Connects (handshake, login) under way at once per pool: sshd drops
 * unauthenticated connections beyond MaxStartups (10 by default). */
#define CONNECTS_AT_ONCE 4
/* Replies a session may owe that nobody waits for. */
#define MAX_DROP 128
/* Handles are at most 256 bytes (the draft). */
#define MAX_HANDLE 256
/* Requests are queued in the session's tx buffer and sent together (one
 * channel write, most often one SSH packet: one MAC, one wakeup of the
 * server) when this many bytes are queued, before the session waits
 * for a reply (recv_packet), or when it is closed. */
#define TX_FLUSH (32u << 10)
/* A file's WRITEs are queued up to this many bytes before they are sent:
 * libssh2 cuts one channel write into packets of the server's largest
 * size (OpenSSH: 32 KiB), so a WRITE of 64 KiB sent alone is two full
 * packets and a tiny one (its last 30 bytes); eight sent together are
 * 17 packets, not 24: fewer packets to encrypt and MAC, fewer sends,
 * fewer wakeups of the server. */
#define TX_FLUSH_BULK (512u << 10)
/* The receive buffer's smallest size: one channel read takes whatever
 * replies have arrived, up to this much. */
#define RX_MIN (64u << 10)
/* Bytes of READs, and of WRITEs, in flight per file over the openssh
 * transport: ssh's channel window. */
#define OSSH_INFLIGHT (2u << 20)
/* Bytes per READ and WRITE over the openssh transport (the server's
 * limit caps it: OpenSSH 261,120): a quarter of the requests, replies and
 * sftp-server turns of 64 KiB WRITEs; 8 x 64 MiB up, alternated 5 times:
 * client CPU 1.53 s against 1.80 s (medians), wall 2.95 s against 3.31 s.
 * READs: half the requests of 128 KiB ones; see docs/BENCHMARKS.md. */
#define OSSH_CHUNK (255u << 10)

/* A file of at least STRIPE_MIN bytes is read through STRIPE_STREAMS
 * sessions at once (docs/adapters.md, "Reading a large file through
 * several sessions") when an OPEN's round trip took STRIPE_RTT_US or more:
 * a session moves at most ssh's channel window (2 MiB) per round trip, 50
 * MB/s through 20 ms each way; nearer, one session is not the limit and
 * more would only share the same two cores. Options change all three. */
#define STRIPE_STREAMS 4
#define STRIPE_STREAMS_MAX 16
#define STRIPE_MIN ((uint64_t)64 << 20)
#define STRIPE_RTT_US 5000
/* Extra streams (sessions beyond each file's own) running at once in a
 * pool, shared fairly among the files read in stripes at the moment: one
 * large file is read through STRIPE_STREAMS sessions, 8 at once through 2
 * each, 16 through their own alone (each extra session costs CPU: ssh
 * starts a master, with its key exchange, per 4 sessions). A file gets
 * one more at each stripe it passes while under its share; one over its
 * share (files opened since) lets an extra stream go at its next stripe. */
#define STRIPE_EXTRA 8
/* A stripe is about this many bytes (whole READs); a striped file has
 * STRIPE_SLOTS stripe buffers per stream: its memory is bounded by
 * STRIPE_SLOTS x streams x a stripe (16 MiB with 4 streams). */
#define STRIPE_BYTES (1u << 20)
#define STRIPE_SLOTS 4

/* A reply received before it was waited for. */
struct stash {
    struct stash *next;   /* older first */
    uint32_t id;          /* its request id */
    unsigned char *pkt;   /* the packet (type, id, payload) */
    size_t len;           /* its length */
};

struct tm__sftp_sess {
    struct tm__sftp_pool *pool; /* the owner */
    struct tm__sftp_sess *next; /* in the pool's idle list */
    int fd;                     /* the TCP socket */
    LIBSSH2_SESSION *ssh;       /* the SSH session */
    LIBSSH2_CHANNEL *ch;        /* the channel running the sftp subsystem */
    int use_proc;               /* the openssh transport: pr, not ssh/ch */
    struct tm__sftp_proc pr;    /* its ssh child */
    struct tm__sftp_master *master; /* the master pr is a mux client of */
    uint32_t next_id;           /* the next request id */
    int broken;                 /* the transport failed: close at release */
    unsigned char *rx;          /* the last packet read (type, id, ...):
                                   points into in, valid until the next
                                   receive */
    size_t rx_len;              /* its length */
    unsigned char *in;          /* bytes read from the channel */
    size_t in_off, in_len;      /* the unparsed ones are in[in_off, in_len) */
    size_t in_alloc;            /* bytes allocated at in */
    unsigned char *tx;          /* requests queued, each length first; the
                                   last one may be being built */
    size_t tx_len;              /* bytes queued or built */
    size_t tx_start;            /* where the request being built starts */
    size_t tx_alloc;            /* bytes allocated at tx */
    int tx_oom;                 /* an append to tx failed */
    size_t tx_flush;            /* send the queue once it holds this
                                   much (TX_FLUSH; TX_FLUSH_BULK while a
                                   file's WRITEs are queued) */
    struct stash *stash;        /* replies kept aside */
    uint32_t drop[MAX_DROP];    /* requests whose replies nobody waits for
                                   (a CLOSE sent without waiting, the READs
                                   a closed file left): dropped on arrival */
    int ndrop;                  /* entries in drop */
};

/* A reply: a view into rx or into a stash packet (then owned). */
struct reply {
    int type;            /* FXP_* */
    uint32_t id;         /* request id */
    const unsigned char *p; /* payload after the id */
    size_t n;            /* bytes left at p */
    unsigned char *own;  /* a stash packet to free, or NULL */
};

/* ---- errors ---- */

int tm__sftp_fail(struct tm__sftp_err *e, int code, int cls, int fx,
                  const char *fmt, ...)
{
    va_list ap;
    if (!e)
        return code;
    e->code = code;
    e->cls = cls;
    e->fx = fx;
    e->retry_after_ms = 0;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

/* A libssh2 failure on s: the session is broken from now on. */
static int ssh_fail(struct tm__sftp_sess *s, int rc, struct tm__sftp_err *e,
                    const char *op, const char *path)
{
    char *m = NULL;
    int code = TM_ECONNRESET;
    s->broken = 1;
    if (s->ssh)
        libssh2_session_last_error(s->ssh, &m, NULL, 0);
    if (rc == LIBSSH2_ERROR_TIMEOUT || rc == LIBSSH2_ERROR_SOCKET_TIMEOUT)
        code = TM_ETIMEDOUT;
    else if (rc == LIBSSH2_ERROR_ALLOC)
        return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "%s %s: out of memory",
                             op, path);
    return tm__sftp_fail(e, code, TM_ERR_RETRY, -1,
                         "%s %s: connection to %s:%d lost (%s)", op, path,
                         s->pool->host, s->pool->port, m && *m ? m : "closed");
}

/* A failure of the ssh child's socket (rc: a TM_* code, 0 for an EOF):
 * the session is broken from now on; what ssh said explains it. */
static int proc_fail(struct tm__sftp_sess *s, int rc, struct tm__sftp_err *e,
                     const char *op, const char *path)
{
    s->broken = 1;
    if (rc == TM_ETIMEDOUT)
        return tm__sftp_fail(e, rc, TM_ERR_RETRY, -1,
                             "%s %s: no answer from %s:%d (ssh) in %d s", op, path,
                             s->pool->host, s->pool->port, s->pool->timeout_ms / 1000);
    if (rc == TM_ENOMEM)
        return tm__sftp_fail(e, rc, TM_ERR_FATAL, -1, "%s %s: out of memory", op, path);
    return tm__sftp_proc_fail(s->pool, &s->pr, TM_ECONNRESET, e, op, path);
}

static int proto_fail(struct tm__sftp_sess *s, struct tm__sftp_err *e,
                      const char *op, const char *path)
{
    s->broken = 1;
    return tm__sftp_fail(e, TM_EIO, TM_ERR_RETRY, -1,
                         "%s %s: malformed reply from %s:%d", op, path,
                         s->pool->host, s->pool->port);
}

/* ---- encoding ---- */

static void put_bytes(struct tm__sftp_sess *s, const void *p, size_t n)
{
    if (s->tx_oom)
        return;
    if (s->tx_len + n > s->tx_alloc) {
        size_t a = s->tx_alloc ? s->tx_alloc : 4096;
        unsigned char *t;
        while (a < s->tx_len + n)
            a *= 2;
        t = realloc(s->tx, a);
        if (!t) {
            s->tx_oom = 1;
            return;
        }
        s->tx = t;
        s->tx_alloc = a;
    }
    memcpy(s->tx + s->tx_len, p, n);
    s->tx_len += n;
}

static void put_u32(struct tm__sftp_sess *s, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    put_bytes(s, b, 4);
}

static void put_u64(struct tm__sftp_sess *s, uint64_t v)
{
    put_u32(s, (uint32_t)(v >> 32));
    put_u32(s, (uint32_t)v);
}

static void put_str(struct tm__sftp_sess *s, const void *p, size_t n)
{
    put_u32(s, (uint32_t)n);
    put_bytes(s, p, n);
}

static void put_cstr(struct tm__sftp_sess *s, const char *p)
{
    put_str(s, p, strlen(p));
}

static void put_attrs(struct tm__sftp_sess *s, const struct tm__sftp_attr *a)
{
    uint32_t f = 0;
    if (a) {
        f |= a->flags & TM_SFTP_A_SIZE ? ATTR_SIZE : 0;
        f |= a->flags & TM_SFTP_A_UIDGID ? ATTR_UIDGID : 0;
        f |= a->flags & TM_SFTP_A_PERM ? ATTR_PERM : 0;
        f |= a->flags & TM_SFTP_A_TIME ? ATTR_TIME : 0;
    }
    put_u32(s, f);
    if (f & ATTR_SIZE)
        put_u64(s, a->size);
    if (f & ATTR_UIDGID) {
        put_u32(s, a->uid);
        put_u32(s, a->gid);
    }
    if (f & ATTR_PERM)
        put_u32(s, a->mode & 07777);
    if (f & ATTR_TIME) {
        put_u32(s, (uint32_t)a->atime);
        put_u32(s, (uint32_t)a->mtime);
    }
}

/* Starts a request of type: returns its id. */
static uint32_t begin(struct tm__sftp_sess *s, int type)
{
    unsigned char t = (unsigned char)type;
    uint32_t id = s->next_id++;
    s->tx_start = s->tx_len;
    s->tx_oom = 0;
    put_u32(s, 0);
    put_bytes(s, &t, 1);
    if (type != FXP_INIT)
        put_u32(s, id);
    return id;
}

/* Sends n bytes at p, then n2 at p2 (the openssh transport only). */
static int send_all(struct tm__sftp_sess *s, const unsigned char *p, size_t n,
                    const unsigned char *p2, size_t n2, struct tm__sftp_err *e,
                    const char *op, const char *path)
{
    if (s->use_proc) {
        size_t got = 0;
        ssize_t w = tm__sftp_proc_sendv(&s->pr, p, n, p2, n2, s->in + s->in_len,
                                        s->in_alloc - s->in_len, &got,
                                        s->pool->timeout_ms);
        s->in_len += got;
        return w < 0 ? proc_fail(s, (int)w, e, op, path) : 0;
    }
    while (n) {
        ssize_t w = libssh2_channel_write(s->ch, (const char *)p, n);
        if (w < 0)
            return ssh_fail(s, (int)w, e, op, path);
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Sends every request queued, then n bytes at data (the rest of the last
 * request, which finish_data sealed). A failure breaks the session (the
 * error names op and path: the call that needed the requests out). */
static int flush_data(struct tm__sftp_sess *s, const unsigned char *data, size_t n,
                      struct tm__sftp_err *e, const char *op, const char *path)
{
    int rc;
    if (s->broken)
        s->tx_len = s->tx_start = 0; /* the session is closed at release */
    if (!s->tx_len)
        return 0;
    atomic_fetch_add_explicit(&s->pool->sends, 1, memory_order_relaxed);
    rc = send_all(s, s->tx, s->tx_len, data, n, e, op, path);
    s->tx_len = s->tx_start = 0;
    return rc;
}

/* Sends every request queued. */
static int flush(struct tm__sftp_sess *s, struct tm__sftp_err *e,
                 const char *op, const char *path)
{
    return flush_data(s, NULL, 0, e, op, path);
}

/* Ends the request built since begin(): its length, counting more bytes
 * that follow it outside the queue. */
static int seal(struct tm__sftp_sess *s, size_t more, struct tm__sftp_err *e,
                const char *op, const char *path)
{
    unsigned char *h;
    uint32_t n;
    if (s->tx_oom) {
        s->tx_len = s->tx_start; /* the partial request is dropped */
        s->tx_oom = 0;
        return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "%s %s: out of memory",
                             op, path);
    }
    n = (uint32_t)(s->tx_len - s->tx_start - 4 + more);
    h = s->tx + s->tx_start;
    h[0] = (unsigned char)(n >> 24);
    h[1] = (unsigned char)(n >> 16);
    h[2] = (unsigned char)(n >> 8);
    h[3] = (unsigned char)n;
    s->tx_start = s->tx_len;
    return 0;
}

/* Queues the request built since begin(); sends the queue once it holds
 * TX_FLUSH bytes (else the next wait for a reply sends it: requests that
 * follow one another without a wait, such as a file's last WRITE, its
 * FSETSTAT and its CLOSE, or the READs ahead, go out together). */
static int finish(struct tm__sftp_sess *s, struct tm__sftp_err *e,
                  const char *op, const char *path)
{
    int rc = seal(s, 0, e, op, path);
    if (!rc && s->tx_len >= s->tx_flush)
        return flush(s, e, op, path);
    return rc;
}

/* As finish, for a request whose last n bytes are at data, not queued
 * (the openssh transport's WRITEs): sends it now with what is queued, in
 * one sendmsg, so that the data is not copied into the queue first. */
static int finish_data(struct tm__sftp_sess *s, const void *data, size_t n,
                       struct tm__sftp_err *e, const char *op, const char *path)
{
    int rc = seal(s, n, e, op, path);
    return rc ? rc : flush_data(s, data, n, e, op, path);
}

/* ---- decoding ---- */

static int get_u32(struct reply *r, uint32_t *v)
{
    if (r->n < 4)
        return -1;
    *v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 |
         (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    r->n -= 4;
    return 0;
}

static int get_u64(struct reply *r, uint64_t *v)
{
    uint32_t hi, lo;
    if (get_u32(r, &hi) || get_u32(r, &lo))
        return -1;
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

static int get_str(struct reply *r, const unsigned char **p, size_t *n)
{
    uint32_t len;
    if (get_u32(r, &len) || len > r->n)
        return -1;
    *p = r->p;
    *n = len;
    r->p += len;
    r->n -= len;
    return 0;
}

static int type_of(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFDIR:
        return TM_T_FOLDER;
    case S_IFREG:
        return TM_T_FILE;
    case S_IFLNK:
        return TM_T_SYMLINK;
    default:
        return TM_T_OTHER;
    }
}

static int get_attrs(struct reply *r, struct tm__sftp_attr *a)
{
    uint32_t f, v, cnt, i;
    memset(a, 0, sizeof *a);
    a->type = TM_T_OTHER;
    if (get_u32(r, &f))
        return -1;
    if (f & ATTR_SIZE) {
        if (get_u64(r, &a->size))
            return -1;
        a->flags |= TM_SFTP_A_SIZE;
    }
    if (f & ATTR_UIDGID) {
        if (get_u32(r, &a->uid) || get_u32(r, &a->gid))
            return -1;
        a->flags |= TM_SFTP_A_UIDGID;
    }
    if (f & ATTR_PERM) {
        if (get_u32(r, &a->mode))
            return -1;
        a->flags |= TM_SFTP_A_PERM;
        a->type = type_of(a->mode);
    }
    if (f & ATTR_TIME) {
        if (get_u32(r, &v))
            return -1;
        a->atime = v;
        if (get_u32(r, &v))
            return -1;
        a->mtime = v;
        a->flags |= TM_SFTP_A_TIME;
    }
    if (f & (uint32_t)ATTR_EXTENDED) {
        const unsigned char *p;
        size_t n;
        if (get_u32(r, &cnt))
            return -1;
        for (i = 0; i < cnt; i++)
            if (get_str(r, &p, &n) || get_str(r, &p, &n))
                return -1;
    }
    return 0;
}

/* ---- receiving ---- */

/* Makes need bytes at least readable at in + in_off: one channel read
 * takes whatever has arrived (several replies, most often), as much as
 * the buffer holds. May move what is buffered (s->rx with it). */
static int rx_need(struct tm__sftp_sess *s, size_t need, struct tm__sftp_err *e,
                   const char *op, const char *path)
{
    while (s->in_len - s->in_off < need) {
        ssize_t r;
        if (s->in_alloc - s->in_off < need) {
            size_t left = s->in_len - s->in_off;
            size_t want = need > RX_MIN ? need : RX_MIN;
            if (left)
                memmove(s->in, s->in + s->in_off, left);
            s->in_len = left;
            s->in_off = 0;
            if (s->in_alloc < want) {
                unsigned char *t = realloc(s->in, want);
                if (!t)
                    return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1,
                                         "%s %s: out of memory", op, path);
                s->in = t;
                s->in_alloc = want;
            }
        }
        if (s->use_proc) {
            r = tm__sftp_proc_recv(&s->pr, s->in + s->in_len, s->in_alloc - s->in_len,
                                   s->pool->timeout_ms);
            if (r <= 0)
                return proc_fail(s, (int)r, e, op, path);
            s->in_len += (size_t)r;
            continue;
        }
        r = libssh2_channel_read(s->ch, (char *)s->in + s->in_len,
                                 s->in_alloc - s->in_len);
        if (r < 0)
            return ssh_fail(s, (int)r, e, op, path);
        if (r == 0) {
            s->broken = 1;
            return tm__sftp_fail(e, TM_ECONNRESET, TM_ERR_RETRY, -1,
                                 "%s %s: %s:%d closed the sftp channel", op, path,
                                 s->pool->host, s->pool->port);
        }
        s->in_len += (size_t)r;
    }
    return 0;
}

/* Sends what is queued, then reads one packet: s->rx points at it (type,
 * id, ...), valid until the next receive on s. */
static int recv_packet(struct tm__sftp_sess *s, struct tm__sftp_err *e,
                       const char *op, const char *path)
{
    const unsigned char *h;
    uint32_t n;
    int rc = flush(s, e, op, path);
    if (!rc)
        rc = rx_need(s, 4, e, op, path);
    if (rc)
        return rc;
    h = s->in + s->in_off;
    n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (n < 1 || n > MAX_PACKET)
        return proto_fail(s, e, op, path);
    rc = rx_need(s, 4 + (size_t)n, e, op, path);
    if (rc)
        return rc;
    s->rx = s->in + s->in_off + 4;
    s->rx_len = n;
    s->in_off += 4 + (size_t)n;
    if (s->in_off == s->in_len)
        s->in_off = s->in_len = 0; /* s->rx stays where it is until the next read */
    return 0;
}

/* The openssh transport: when the next packet to arrive is the DATA reply
 * to request id with at most cap bytes of data, receives that data into
 * buf (what is buffered already by a copy, the rest straight from ssh's
 * socket: not through s->in) and sets *n: returns 1. 0 when it is another
 * packet (then nothing of it is taken: recv_packet reads it), or an
 * error. Only the packet's header is read ahead (13 bytes). */
static int recv_data_into(struct tm__sftp_sess *s, uint32_t id, unsigned char *buf,
                          size_t cap, size_t *n, struct tm__sftp_err *e,
                          const char *op, const char *path)
{
    enum { HDR = 13 }; /* length, type, id, the data's length */
    const unsigned char *h;
    uint32_t plen, pid, dlen;
    size_t have;
    int rc = flush(s, e, op, path);
    if (rc || s->in_alloc < HDR)
        return rc; /* no buffer yet (never after the handle's OPEN) */
    if (s->in_len - s->in_off < HDR && s->in_alloc - s->in_off < HDR) {
        have = s->in_len - s->in_off;
        memmove(s->in, s->in + s->in_off, have);
        s->in_off = 0;
        s->in_len = have;
    }
    while (s->in_len - s->in_off < HDR) {
        /* no more than the header: the data is for buf */
        ssize_t r = tm__sftp_proc_recv(&s->pr, s->in + s->in_len,
                                       HDR - (s->in_len - s->in_off), s->pool->timeout_ms);
        if (r <= 0)
            return proc_fail(s, (int)r, e, op, path);
        s->in_len += (size_t)r;
    }
    h = s->in + s->in_off;
    plen = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    pid = (uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8];
    dlen = (uint32_t)h[9] << 24 | (uint32_t)h[10] << 16 | (uint32_t)h[11] << 8 | h[12];
    if (h[4] != FXP_DATA || pid != id || dlen > cap || plen != HDR - 4 + (uint64_t)dlen)
        return 0;
    s->in_off += HDR;
    have = s->in_len - s->in_off;
    if (have > dlen)
        have = dlen;
    memcpy(buf, s->in + s->in_off, have);
    s->in_off += have;
    if (s->in_off == s->in_len)
        s->in_off = s->in_len = 0;
    while (have < dlen) {
        ssize_t r = tm__sftp_proc_recv(&s->pr, buf + have, dlen - have, s->pool->timeout_ms);
        if (r <= 0)
            return proc_fail(s, (int)r, e, op, path);
        have += (size_t)r;
    }
    *n = dlen;
    return 1;
}

static void reply_release(struct reply *r)
{
    free(r->own);
    r->own = NULL;
}

static void view(struct reply *r, unsigned char *pkt, size_t len)
{
    r->type = pkt[0];
    r->id = (uint32_t)pkt[1] << 24 | (uint32_t)pkt[2] << 16 |
            (uint32_t)pkt[3] << 8 | pkt[4];
    r->p = pkt + 5;
    r->n = len - 5;
}

/* 1 when id is a request whose reply is to be dropped (then no more). */
static int drop_take(struct tm__sftp_sess *s, uint32_t id)
{
    int i;
    for (i = 0; i < s->ndrop; i++)
        if (s->drop[i] == id) {
            s->drop[i] = s->drop[--s->ndrop];
            return 1;
        }
    return 0;
}

/* 1 when the reply to request id was received already (kept aside). */
static int stashed(const struct tm__sftp_sess *s, uint32_t id)
{
    const struct stash *st;
    for (st = s->stash; st; st = st->next)
        if (st->id == id)
            return 1;
    return 0;
}

/* Waits for the reply to request id. The reply stays valid until the next
 * receive on s (or reply_release when it came from the stash). */
static int wait_reply(struct tm__sftp_sess *s, uint32_t id, struct reply *r,
                      struct tm__sftp_err *e, const char *op, const char *path)
{
    struct stash **pp, *st;
    int rc;

    r->own = NULL;
    for (pp = &s->stash; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            st = *pp;
            *pp = st->next;
            view(r, st->pkt, st->len);
            r->own = st->pkt;
            free(st);
            return 0;
        }
    }
    for (;;) {
        rc = recv_packet(s, e, op, path);
        if (rc)
            return rc;
        if (s->rx_len < 5)
            return proto_fail(s, e, op, path);
        view(r, s->rx, s->rx_len);
        if (r->id == id)
            return 0;
        if (drop_take(s, r->id))
            continue;
        st = malloc(sizeof *st);
        if (!st || !(st->pkt = malloc(s->rx_len))) {
            free(st);
            return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1,
                                 "%s %s: out of memory", op, path);
        }
        memcpy(st->pkt, s->rx, s->rx_len);
        st->len = s->rx_len;
        st->id = r->id;
        st->next = NULL;
        for (pp = &s->stash; *pp; pp = &(*pp)->next)
            ;
        *pp = st;
    }
}

/* Nobody will wait for the reply to request id: it is dropped when it
 * comes (by whoever uses the session next). When too many are owed, the
 * oldest are received now. A reply already kept aside is freed. */
static void drop_add(struct tm__sftp_sess *s, uint32_t id)
{
    struct stash **pp, *st;
    for (pp = &s->stash; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            st = *pp;
            *pp = st->next;
            free(st->pkt);
            free(st);
            return;
        }
    }
    while (s->ndrop == MAX_DROP && !s->broken) {
        struct reply r;
        if (wait_reply(s, s->drop[0], &r, NULL, "drop", "a reply") == 0) {
            drop_take(s, s->drop[0]);
            reply_release(&r);
        }
    }
    if (!s->broken)
        s->drop[s->ndrop++] = id;
}

/* The TM code and class of an SSH_FX status. */
static int fx_code(uint32_t fx, int *cls)
{
    *cls = TM_ERR_NODE;
    switch (fx) {
    case FX_NO_SUCH_FILE:
        return TM_ENOENT;
    case FX_PERMISSION_DENIED:
        return TM_EACCES;
    case FX_BAD_MESSAGE:
        return TM_EINVAL;
    case FX_OP_UNSUPPORTED:
        return TM_ENOTSUP;
    case FX_NO_CONNECTION:
    case FX_CONNECTION_LOST:
        *cls = TM_ERR_RETRY;
        return TM_ECONNRESET;
    default:
        return TM_EIO;
    }
}

/* A STATUS reply that is not OK as an error ("op path: text (server:
 * message)"); *fx gets the status. */
static int status_err(struct tm__sftp_sess *s, struct reply *r,
                      struct tm__sftp_err *e, const char *op, const char *path,
                      uint32_t *fxp)
{
    uint32_t fx;
    const unsigned char *m = (const unsigned char *)"";
    size_t mn = 0;
    int code, cls;

    if (r->type != FXP_STATUS || get_u32(r, &fx))
        return proto_fail(s, e, op, path);
    if (get_str(r, &m, &mn)) {
        m = (const unsigned char *)"";
        mn = 0;
    }
    if (fxp)
        *fxp = fx;
    if (fx == FX_OK)
        return 0;
    code = fx_code(fx, &cls);
    return tm__sftp_fail(e, code, cls, (int)fx, "%s %s: %s (server: %.*s)", op, path,
                         tm_strerror(code), (int)(mn > 200 ? 200 : mn), m);
}

/* Sends the request built and waits for its reply. */
static int roundtrip(struct tm__sftp_sess *s, uint32_t id, struct reply *r,
                     struct tm__sftp_err *e, const char *op, const char *path)
{
    int rc = finish(s, e, op, path);
    if (rc)
        return rc;
    return wait_reply(s, id, r, e, op, path);
}

/* Sends the request built and expects a STATUS: 0 for OK, else the error. */
static int roundtrip_status(struct tm__sftp_sess *s, uint32_t id,
                            struct tm__sftp_err *e, const char *op,
                            const char *path, uint32_t *fx)
{
    struct reply r;
    int rc = roundtrip(s, id, &r, e, op, path);
    if (rc)
        return rc;
    rc = status_err(s, &r, e, op, path, fx);
    reply_release(&r);
    return rc;
}

/* ---- sessions ---- */

static void sess_close(struct tm__sftp_sess *s)
{
    struct stash *st;
    if (!s)
        return;
    if (s->use_proc) {
        if (s->pr.fd >= 0)
            flush(s, NULL, "send", "requests");
        tm__sftp_proc_stop(&s->pr, s->broken);
        if (s->master)
            tm__sftp_master_put(s->pool, s->master, 0, s->broken);
    }
    if (s->ch) {
        flush(s, NULL, "send", "requests");
        if (!s->broken)
            libssh2_channel_close(s->ch);
        libssh2_channel_free(s->ch);
    }
    if (s->ssh) {
        if (!s->broken)
            libssh2_session_disconnect(s->ssh, "treemig done");
        libssh2_session_free(s->ssh);
    }
    if (s->fd >= 0)
        close(s->fd);
    while ((st = s->stash)) {
        s->stash = st->next;
        free(st->pkt);
        free(st);
    }
    free(s->in);
    free(s->tx);
    free(s);
}

/* Connects the TCP socket with a timeout: 0, or an error with e filled. */
static int tcp_connect(struct tm__sftp_pool *p, int *fdp, struct tm__sftp_err *e)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port[16];
    int err = 0, fd = -1, g;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof port, "%d", p->port);
    g = getaddrinfo(p->host, port, &hints, &res);
    if (g)
        return tm__sftp_fail(e, TM_EHOSTUNREACH, TM_ERR_RETRY, -1,
                             "connect %s:%d: cannot resolve the name (%s)", p->host,
                             p->port, gai_strerror(g));
    for (ai = res; ai; ai = ai->ai_next) {
        struct pollfd pfd;
        socklen_t sl = sizeof err;
        int one = 1, fl;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) {
                err = errno;
                goto next;
            }
            pfd.fd = fd;
            pfd.events = POLLOUT;
            g = poll(&pfd, 1, p->timeout_ms);
            if (g == 0) {
                err = ETIMEDOUT;
                goto next;
            }
            if (g < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0) {
                err = errno;
                goto next;
            }
            if (err)
                goto next;
        }
        fcntl(fd, F_SETFL, fl);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        err = 0;
        break;
    next:
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        int code = tm__from_errno(err ? err : EHOSTUNREACH);
        return tm__sftp_fail(e, code, TM_ERR_RETRY, -1, "connect %s:%d: %s", p->host,
                             p->port, tm_strerror(code));
    }
    *fdp = fd;
    return 0;
}

void tm__sftp_probe_hostkey(struct tm__sftp_pool *p, char *fp, size_t len,
                            const char **type)
{
    LIBSSH2_SESSION *ssh;
    int fd = -1;

    fp[0] = '\0';
    *type = "";
    if (tcp_connect(p, &fd, NULL) != 0)
        return;
    ssh = libssh2_session_init_ex(NULL, NULL, NULL, NULL);
    if (ssh) {
        libssh2_session_set_blocking(ssh, 1);
        libssh2_session_set_timeout(ssh, p->timeout_ms);
        if (libssh2_session_handshake(ssh, fd) != 0 ||
            tm__sftp_fingerprint(ssh, fp, len, type) != 0) {
            fp[0] = '\0';
            *type = "";
        }
        libssh2_session_free(ssh);
    }
    close(fd);
}

/* The session's first exchange: INIT / VERSION, and its extensions. */
static int sftp_init(struct tm__sftp_sess *s, unsigned *ext, struct tm__sftp_err *e)
{
    struct reply r;
    uint32_t ver;
    int rc;

    begin(s, FXP_INIT);
    put_u32(s, 3);
    rc = finish(s, e, "start sftp on", s->pool->host);
    if (!rc)
        rc = recv_packet(s, e, "start sftp on", s->pool->host);
    if (rc)
        return rc;
    r.p = s->rx + 1;
    r.n = s->rx_len - 1;
    if (s->rx[0] != FXP_VERSION || get_u32(&r, &ver) || ver < 3)
        return proto_fail(s, e, "start sftp on", s->pool->host);
    *ext = 0;
    while (r.n) {
        const unsigned char *name, *data;
        size_t nn, dn;
        if (get_str(&r, &name, &nn) || get_str(&r, &data, &dn))
            return proto_fail(s, e, "start sftp on", s->pool->host);
#define IS(x) (nn == sizeof(x) - 1 && !memcmp(name, x, nn))
        if (IS("posix-rename@openssh.com"))
            *ext |= TM_SFTP_EXT_POSIX_RENAME;
        else if (IS("statvfs@openssh.com"))
            *ext |= TM_SFTP_EXT_STATVFS;
        else if (IS("fsync@openssh.com"))
            *ext |= TM_SFTP_EXT_FSYNC;
        else if (IS("lsetstat@openssh.com"))
            *ext |= TM_SFTP_EXT_LSETSTAT;
        else if (IS("limits@openssh.com"))
            *ext |= TM_SFTP_EXT_LIMITS;
#undef IS
    }
    s->next_id = 1;
    return 0;
}

/* limits@openssh.com: the server's largest READ and WRITE. */
static int sftp_limits(struct tm__sftp_sess *s, uint64_t *max_read,
                       uint64_t *max_write, struct tm__sftp_err *e)
{
    struct reply r;
    uint64_t pkt, rd, wr;
    uint32_t id = begin(s, FXP_EXTENDED);
    int rc;
    put_cstr(s, "limits@openssh.com");
    rc = roundtrip(s, id, &r, e, "limits on", s->pool->host);
    if (rc)
        return rc;
    if (r.type != FXP_EXTENDED_REPLY || get_u64(&r, &pkt) || get_u64(&r, &rd) ||
        get_u64(&r, &wr)) {
        reply_release(&r);
        return proto_fail(s, e, "limits on", s->pool->host);
    }
    reply_release(&r);
    *max_read = rd;
    *max_write = wr;
    return 0;
}

static uint32_t clamp_chunk(uint32_t want, uint64_t limit)
{
    if (limit && limit < want)
        return (uint32_t)limit;
    return want;
}

/* The ciphers and MACs the session offers, both ways, in the pool's
 * order. libssh2 drops the names it does not know; none known at all is an
 * error that names the ones it has. */
static int set_prefs(struct tm__sftp_pool *p, LIBSSH2_SESSION *ssh,
                     struct tm__sftp_err *e)
{
    static const struct {
        int m[2];
        const char *what;
    } k[2] = {
        { { LIBSSH2_METHOD_CRYPT_CS, LIBSSH2_METHOD_CRYPT_SC }, "ciphers" },
        { { LIBSSH2_METHOD_MAC_CS, LIBSSH2_METHOD_MAC_SC }, "MACs" },
    };
    int i, j;
    for (i = 0; i < 2; i++) {
        const char *list = i == 0 ? p->ciphers : p->macs;
        for (j = 0; j < 2; j++) {
            if (libssh2_session_method_pref(ssh, k[i].m[j], list) == 0)
                continue;
            {
                struct tm__buf b = TM__BUF_INIT;
                const char **a = NULL;
                int n = libssh2_session_supported_algs(ssh, k[i].m[j], &a), x, rc;
                for (x = 0; x < n; x++)
                    if ((x && tm__buf_adds(&b, ",")) || tm__buf_adds(&b, a[x]))
                        break;
                if (n > 0)
                    libssh2_free(ssh, (void *)a);
                rc = tm__sftp_fail(e, TM_EINVAL, TM_ERR_FATAL, -1,
                                   "connect %s:%d: libssh2 knows none of the %s '%s' "
                                   "(it has %s)", p->host, p->port, k[i].what, list,
                                   b.len ? b.buf : "none");
                tm__buf_release(&b);
                return rc;
            }
        }
    }
    return 0;
}

/* Opens a new session: TCP, SSH handshake, host key, login, sftp channel
 * (openssh: a channel of a master's connection; *again gets 1 when the
 * server refused it, or the master is gone). */
static int sess_open1(struct tm__sftp_pool *p, int accept_new, struct tm__sftp_sess **out,
                      int *again, struct tm__sftp_err *e)
{
    struct tm__sftp_sess *s = calloc(1, sizeof *s);
    char how[sizeof p->auth_used];
    unsigned ext = 0;
    int rc;

    *out = NULL;
    if (!s)
        return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "connect: out of memory");
    s->pool = p;
    s->tx_flush = TX_FLUSH;
    s->fd = -1;
    if (p->transport == TM_SFTP_TRANSPORT_OPENSSH) {
        /* ssh checks the host key and logs in; its socket carries SFTP */
        s->use_proc = 1;
        rc = tm__sftp_master_get(p, accept_new, &s->master, e);
        if (!rc)
            rc = tm__sftp_proc_start(p, accept_new, s->master, &s->pr, e);
        if (rc)
            goto fail;
        s->in = malloc(RX_MIN); /* proc_send reads replies into it */
        if (!s->in) {
            rc = tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "connect: out of memory");
            goto fail;
        }
        s->in_alloc = RX_MIN;
        snprintf(how, sizeof how, "ssh");
        goto sftp;
    }
    rc = tcp_connect(p, &s->fd, e);
    if (rc)
        goto fail;
    s->ssh = libssh2_session_init_ex(NULL, NULL, NULL, s);
    if (!s->ssh) {
        rc = tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "connect: out of memory");
        goto fail;
    }
    libssh2_session_set_blocking(s->ssh, 1);
    libssh2_session_set_timeout(s->ssh, p->timeout_ms);
    rc = set_prefs(p, s->ssh, e);
    if (rc)
        goto fail;
    rc = libssh2_session_handshake(s->ssh, s->fd);
    if (rc) {
        char *m = NULL;
        libssh2_session_last_error(s->ssh, &m, NULL, 0);
        s->broken = 1;
        if (rc == LIBSSH2_ERROR_KEX_FAILURE || rc == LIBSSH2_ERROR_METHOD_NOT_SUPPORTED)
            rc = tm__sftp_fail(e, TM_EIO, TM_ERR_FATAL, -1,
                               "ssh handshake with %s:%d: %s", p->host, p->port,
                               m ? m : "failed");
        else
            rc = tm__sftp_fail(e, rc == LIBSSH2_ERROR_TIMEOUT ? TM_ETIMEDOUT : TM_ECONNRESET,
                               TM_ERR_RETRY, -1, "ssh handshake with %s:%d: %s",
                               p->host, p->port, m ? m : "failed");
        goto fail;
    }
    rc = tm__sftp_hostkey_check(p, s->ssh, accept_new, e);
    if (rc)
        goto fail;
    rc = tm__sftp_authenticate(p, s->ssh, how, sizeof how, e);
    if (rc)
        goto fail;
    s->ch = libssh2_channel_open_ex(s->ssh, "session", 7, CHANNEL_WINDOW,
                                    LIBSSH2_CHANNEL_PACKET_DEFAULT, NULL, 0);
    if (!s->ch) {
        rc = ssh_fail(s, libssh2_session_last_errno(s->ssh), e, "open a channel on",
                      p->host);
        goto fail;
    }
    if (libssh2_channel_subsystem(s->ch, "sftp") != 0) {
        char *m = NULL;
        libssh2_session_last_error(s->ssh, &m, NULL, 0);
        rc = tm__sftp_fail(e, TM_ENOTSUP, TM_ERR_FATAL, -1,
                           "start sftp on %s:%d: the server refused the sftp subsystem (%s)",
                           p->host, p->port, m ? m : "");
        goto fail;
    }
sftp:
    rc = sftp_init(s, &ext, e);
    if (rc)
        goto fail;
    pthread_mutex_lock(&p->mu);
    if (!p->verified) {
        /* openssh: ssh chose them and does not say */
        const char *c = s->ssh ? libssh2_session_methods(s->ssh, LIBSSH2_METHOD_CRYPT_CS)
                               : "";
        const char *m = s->ssh ? libssh2_session_methods(s->ssh, LIBSSH2_METHOD_MAC_CS)
                               : "";
        p->verified = 1;
        p->ext = ext;
        memcpy(p->auth_used, how, sizeof how);
        snprintf(p->cipher_used, sizeof p->cipher_used, "%s", c ? c : "");
        snprintf(p->mac_used, sizeof p->mac_used, "%s", m ? m : "");
        pthread_mutex_unlock(&p->mu);
        if (s->use_proc && !p->chunk_given)
            p->want_r = p->want_w = OSSH_CHUNK;
        if (ext & TM_SFTP_EXT_LIMITS) {
            uint64_t mr = 0, mw = 0;
            rc = sftp_limits(s, &mr, &mw, e);
            if (rc)
                goto fail;
            p->chunk_r = clamp_chunk(p->want_r, mr);
            p->chunk_w = clamp_chunk(p->want_w, mw);
        }
        if (s->use_proc && !p->inflight_given) {
            /* ssh's channel window (2 MiB each way) bounds what moves
             * per round trip: more in flight only piles up in ssh's and
             * sshd's buffers, which they grow, copy and zero */
            p->read_ahead = (int)((OSSH_INFLIGHT + p->chunk_r - 1) / p->chunk_r);
            p->write_behind = (int)((OSSH_INFLIGHT + p->chunk_w - 1) / p->chunk_w);
        }
    } else {
        pthread_mutex_unlock(&p->mu);
    }
    *out = s;
    return 0;
fail:
    if (s->master) {
        int refused = tm__sftp_proc_refused(&s->pr);
        tm__sftp_proc_stop(&s->pr, 1);
        *again = tm__sftp_master_put(p, s->master, refused, 1) || refused;
        s->master = NULL;
    }
    sess_close(s);
    return rc;
}

/* sess_open1, on a new master when the server refused a channel or the
 * master was gone. */
static int sess_open(struct tm__sftp_pool *p, int accept_new,
                     struct tm__sftp_sess **out, struct tm__sftp_err *e)
{
    int i, rc;
    for (i = 0;; i++) {
        int again = 0;
        rc = sess_open1(p, accept_new, out, &again, e);
        if (!rc || !again || i == 2)
            return rc;
    }
}

/* 1 when the far end of idle session s has gone (its ssh exited, with
 * the master a cut connection ended; the server closed or reset the
 * connection): its next request would fail, and cost a file one of its
 * retries. A session with bytes still to read is taken for alive. */
static int sess_gone(const struct tm__sftp_sess *s)
{
    struct pollfd f = {s->use_proc ? s->pr.fd : s->fd, POLLIN, 0};
    char c;
    if (f.fd < 0)
        return 1;
    if (poll(&f, 1, 0) <= 0)
        return 0;
    if (f.revents & (POLLHUP | POLLERR | POLLNVAL))
        return 1;
    return recv(f.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Takes an idle session or opens one (waiting when max are in use; with
 * spare set, TM_EAGAIN instead, e not filled: a stripe's extra stream
 * never waits for a session another file holds). */
static int sess_take(struct tm__sftp_pool *p, struct tm__sftp_sess **out,
                     struct tm__sftp_err *e, int spare)
{
    struct tm__sftp_sess *s;
    int rc;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->idle) {
            s = p->idle;
            p->idle = s->next;
            pthread_mutex_unlock(&p->mu);
            s->next = NULL;
            if (sess_gone(s)) {
                s->broken = 1;
                sess_close(s);
                pthread_mutex_lock(&p->mu);
                p->n_open--;
                continue;
            }
            *out = s;
            return 0;
        }
        /* openssh: the masters logging in are bounded instead
         * (openssh.c), a session on one that is up is a channel */
        if (p->n_open < p->max && (p->connecting < CONNECTS_AT_ONCE ||
                                   p->transport == TM_SFTP_TRANSPORT_OPENSSH))
            break;
        if (spare && p->n_open >= p->max) {
            pthread_mutex_unlock(&p->mu);
            return TM_EAGAIN;
        }
        pthread_cond_wait(&p->cv, &p->mu);
    }
    {
        int64_t now = tm__now_ns();
        if (now < p->next_connect_ns) {
            int64_t left = (p->next_connect_ns - now + 999999) / 1000000;
            rc = tm__sftp_fail(e, p->last_connect_err, TM_ERR_RETRY, -1,
                               "%s (reconnecting)", p->last_connect_msg);
            if (e)
                e->retry_after_ms = left;
            pthread_mutex_unlock(&p->mu);
            return rc;
        }
    }
    p->n_open++;
    p->connecting++;
    pthread_mutex_unlock(&p->mu);

    rc = sess_open(p, 0, &s, e);

    pthread_mutex_lock(&p->mu);
    p->connecting--;
    if (rc) {
        p->n_open--;
        if (!e || e->cls == TM_ERR_RETRY) {
            int64_t cap = BACKOFF_BASE_MS << (p->fails < 7 ? p->fails : 7);
            int64_t wait;
            if (cap > BACKOFF_CAP_MS)
                cap = BACKOFF_CAP_MS;
            wait = 1 + (int64_t)((uint64_t)random() % (uint64_t)cap);
            p->fails++;
            p->next_connect_ns = tm__now_ns() + wait * 1000000;
            p->last_connect_err = rc;
            snprintf(p->last_connect_msg, sizeof p->last_connect_msg, "%.200s",
                     e ? e->msg : "connect failed");
            if (e)
                e->retry_after_ms = wait;
        }
    } else {
        p->fails = 0;
        p->connects++;
        *out = s;
    }
    pthread_cond_broadcast(&p->cv); /* a connect slot is free */
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static int sess_get(struct tm__sftp_pool *p, struct tm__sftp_sess **out,
                    struct tm__sftp_err *e)
{
    return sess_take(p, out, e, 0);
}

/* Gives s back; a broken session is closed (the next call reconnects). */
static void sess_put(struct tm__sftp_pool *p, struct tm__sftp_sess *s)
{
    if (!s)
        return;
    /* a request nobody waits for (close_async) stays queued: it goes out
     * with the session's next batch (sessions are taken last in, first
     * out), or at its close */
    if (s->broken) {
        sess_close(s);
        pthread_mutex_lock(&p->mu);
        p->n_open--;
    } else {
        pthread_mutex_lock(&p->mu);
        s->next = p->idle;
        p->idle = s;
    }
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* ---- the pool ---- */

void tm__sftp_opts_init(struct tm__sftp_opts *o)
{
    memset(o, 0, sizeof *o);
}

int tm__sftp_transport_parse(const char *s)
{
    if (!strcmp(s, "libssh2"))
        return TM_SFTP_TRANSPORT_LIBSSH2;
    if (!strcmp(s, "openssh"))
        return TM_SFTP_TRANSPORT_OPENSSH;
    return -1;
}

static pthread_once_t libssh2_once = PTHREAD_ONCE_INIT;
static int libssh2_init_rc;
static void init_libssh2(void)
{
    libssh2_init_rc = libssh2_init(0);
}

static int strv_push(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof **v);
    if (!nv)
        return TM_ENOMEM;
    *v = nv;
    if (!(nv[*n] = strdup(s)))
        return TM_ENOMEM;
    (*n)++;
    return 0;
}

static void strv_free(char **v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Expands s with the tokens into a new string pushed onto v. */
static int push_expanded(char ***v, size_t *n, const char *s,
                         const struct tm__ssh_tokens *t, struct tm__sftp_err *e,
                         const char *what)
{
    struct tm__buf b = TM__BUF_INIT;
    int rc = tm__ssh_expand(s, t, &b);
    if (rc == TM_EINVAL)
        rc = tm__sftp_fail(e, TM_EINVAL, TM_ERR_FATAL, -1,
                           "expand %s %s: unknown %%-token", what, s);
    else if (rc)
        rc = tm__sftp_fail(e, rc, TM_ERR_FATAL, -1, "expand %s: out of memory", what);
    else if ((rc = strv_push(v, n, b.buf)))
        rc = tm__sftp_fail(e, rc, TM_ERR_FATAL, -1, "expand %s: out of memory", what);
    tm__buf_release(&b);
    return rc;
}

/* Fills p's target from the URL, ssh_config and the options. */
static int resolve(struct tm__sftp_pool *p, const struct tm__sftp_url *u,
                   const struct tm__sftp_opts *o, struct tm__sftp_err *e)
{
    struct tm__ssh_host h;
    struct tm__ssh_tokens t;
    struct passwd *pw = getpwuid(getuid());
    const char *home = getenv("HOME");
    const char *local_user = pw ? pw->pw_name : "";
    char err[400];
    size_t i;
    int rc;

    if (!home || !*home)
        home = pw ? pw->pw_dir : "/";
    err[0] = '\0';
    rc = tm__ssh_config_read(o->ssh_config, u->host, &h, err, sizeof err);
    if (rc) {
        rc = tm__sftp_fail(e, rc, TM_ERR_FATAL, -1, "%s", err[0] ? err : "read ssh config");
        goto out;
    }
    p->alias = strdup(u->host);
    p->host = strdup(h.hostname ? h.hostname : u->host);
    p->user = strdup(u->user ? u->user : h.user ? h.user : local_user);
    p->root = strdup(u->path);
    p->port = u->port ? u->port : h.port ? h.port : 22;
    if (!p->alias || !p->host || !p->user || !p->root) {
        rc = tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "resolve: out of memory");
        goto out;
    }
    /* HostName may use %h (the alias) itself. */
    if (strchr(p->host, '%')) {
        struct tm__buf b = TM__BUF_INIT;
        struct tm__ssh_tokens ht = {u->host, u->host, p->user, local_user, home, p->port};
        rc = tm__ssh_expand(p->host, &ht, &b);
        if (rc) {
            tm__buf_release(&b);
            rc = tm__sftp_fail(e, rc, TM_ERR_FATAL, -1, "expand HostName %s: bad token",
                               p->host);
            goto out;
        }
        free(p->host);
        p->host = tm__buf_detach(&b, NULL);
    }
    p->hostkey_name = strdup(h.host_key_alias ? h.host_key_alias : p->host);
    if (!p->hostkey_name) {
        rc = tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "resolve: out of memory");
        goto out;
    }
    t.alias = p->alias;
    t.host = p->host;
    t.user = p->user;
    t.local_user = local_user;
    t.home = home;
    t.port = p->port;

    if (o->n_identities) {
        p->ids_explicit = 1;
        for (i = 0; i < o->n_identities && !rc; i++)
            rc = push_expanded(&p->ids, &p->n_ids, o->identities[i], &t, e, "identity");
    } else if (h.n_identity_files) {
        p->ids_explicit = 1;
        for (i = 0; i < h.n_identity_files && !rc; i++)
            rc = push_expanded(&p->ids, &p->n_ids, h.identity_files[i], &t, e,
                               "IdentityFile");
    } else {
        static const char *const defaults[] = {"~/.ssh/id_ed25519", "~/.ssh/id_ecdsa",
                                               "~/.ssh/id_rsa"};
        for (i = 0; i < 3 && !rc; i++)
            rc = push_expanded(&p->ids, &p->n_ids, defaults[i], &t, e, "identity");
    }
    if (rc)
        goto out;
    if (o->known_hosts) {
        rc = push_expanded(&p->known_hosts, &p->n_known_hosts, o->known_hosts, &t, e,
                           "known_hosts");
    } else if (h.n_known_hosts) {
        for (i = 0; i < h.n_known_hosts && !rc; i++)
            if (strcmp(h.known_hosts[i], "none") != 0)
                rc = push_expanded(&p->known_hosts, &p->n_known_hosts, h.known_hosts[i],
                                   &t, e, "UserKnownHostsFile");
    } else {
        rc = push_expanded(&p->known_hosts, &p->n_known_hosts, "~/.ssh/known_hosts", &t,
                           e, "known_hosts");
        if (!rc)
            rc = push_expanded(&p->known_hosts, &p->n_known_hosts,
                               "~/.ssh/known_hosts2", &t, e, "known_hosts");
    }
    if (rc)
        goto out;
    p->passphrases = calloc(p->n_ids ? p->n_ids : 1, sizeof *p->passphrases);
    if (!p->passphrases) {
        rc = tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "resolve: out of memory");
        goto out;
    }
    if (!o->ssh_config) {
        /* the file tm__ssh_config_read read, for ssh (openssh transport) */
        struct tm__buf b = TM__BUF_INIT;
        if (tm__buf_addf(&b, "%s/.ssh/config", home)) {
            rc = tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "resolve: out of memory");
            goto out;
        }
        if (access(b.buf, F_OK) == 0)
            p->user_config = tm__buf_detach(&b, NULL);
        tm__buf_release(&b);
    }
    p->use_agent = !h.identity_agent_none;
    p->identities_only = h.identities_only;
    p->config_ciphers = h.sets_ciphers;
out:
    tm__ssh_host_release(&h);
    return rc;
}

/* 1 when an identity file is encrypted and TREEMIG_SSH_PASSPHRASE is not
 * set: only the libssh2 transport can ask its passphrase on the terminal
 * (ssh runs without one). */
static int needs_prompt(const struct tm__sftp_pool *p)
{
    size_t i;
    if (getenv("TREEMIG_SSH_PASSPHRASE"))
        return 0;
    for (i = 0; i < p->n_ids; i++)
        if (access(p->ids[i], R_OK) == 0 && tm__sftp_key_encrypted(p->ids[i]) == 1)
            return 1;
    return 0;
}

int tm__sftp_pool_open(const char *url, const struct tm__sftp_opts *o,
                       struct tm__sftp_pool **out, struct tm__sftp_err *e)
{
    struct tm__sftp_opts dflt;
    struct tm__sftp_url u;
    struct tm__sftp_pool *p;
    struct tm__sftp_sess *s = NULL;
    char err[400];
    int rc;

    *out = NULL;
    if (e)
        memset(e, 0, sizeof *e);
    if (!o) {
        tm__sftp_opts_init(&dflt);
        o = &dflt;
    }
    pthread_once(&libssh2_once, init_libssh2);
    if (libssh2_init_rc)
        return tm__sftp_fail(e, TM_EIO, TM_ERR_FATAL, -1, "start libssh2: failed");
    err[0] = '\0';
    rc = tm__sftp_url_parse(url, &u, err, sizeof err);
    if (rc) {
        tm__sftp_url_release(&u);
        return tm__sftp_fail(e, rc, TM_ERR_FATAL, -1, "%s", err[0] ? err : "parse url");
    }
    if (u.path[0] != '/') {
        tm__sftp_url_release(&u);
        return tm__sftp_fail(e, TM_EBADSPEC, TM_ERR_FATAL, -1,
                             "parse url %s: the path must be absolute", url);
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        tm__sftp_url_release(&u);
        return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "open: out of memory");
    }
    atomic_init(&p->sends, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->auth_mu, NULL);
    pthread_mutex_init(&p->mux_mu, NULL);
    pthread_cond_init(&p->mux_cv, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->max = o->max_sessions > 0 ? o->max_sessions : 16;
    p->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
    p->read_ahead = o->read_ahead > 0 ? o->read_ahead : 64;
    p->write_behind = o->write_behind > 0 ? o->write_behind : 64;
    p->inflight_given = o->read_ahead > 0 || o->write_behind > 0;
    p->stripe_streams = o->stripe_streams > 0 ? o->stripe_streams : STRIPE_STREAMS;
    if (p->stripe_streams > STRIPE_STREAMS_MAX)
        p->stripe_streams = STRIPE_STREAMS_MAX;
    p->stripe_min = o->stripe_min ? o->stripe_min : STRIPE_MIN;
    p->stripe_rtt_ns = o->stripe_rtt_us < 0 ? -1
                       : (int64_t)(o->stripe_rtt_us ? o->stripe_rtt_us : STRIPE_RTT_US) * 1000;
    p->rtt_min_ns = INT64_MAX;
    p->chunk_given = o->chunk != 0;
    /* Reads: 128 KiB x 64 in flight (8 MiB, 105 MB/s through 20 ms each
     * way); writes: 64 KiB, sshd's 2 MiB window bounds them anyway. */
    p->chunk_r = o->chunk ? o->chunk : 128 * 1024;
    p->chunk_w = o->chunk ? o->chunk : 64 * 1024;
    if (p->chunk_r > 255 * 1024)
        p->chunk_r = 255 * 1024;
    if (p->chunk_w > 255 * 1024)
        p->chunk_w = 255 * 1024;
    if (p->chunk_r < 512)
        p->chunk_r = 512;
    if (p->chunk_w < 512)
        p->chunk_w = 512;
    p->want_r = p->chunk_r;
    p->want_w = p->chunk_w;
    /* Until limits@openssh.com says more: 32 KiB, which every server takes. */
    if (p->chunk_r > 32768)
        p->chunk_r = 32768;
    if (p->chunk_w > 32768)
        p->chunk_w = 32768;
    p->accept_new = o->accept_new;
    p->transport = o->transport;
    if (p->transport == TM_SFTP_TRANSPORT_DEFAULT) {
        const char *t = getenv("TREEMIG_SFTP_TRANSPORT");
        p->transport = t && *t ? tm__sftp_transport_parse(t) : TM_SFTP_TRANSPORT_OPENSSH;
        p->transport_auto = !(t && *t);
        if (p->transport < 0) {
            rc = tm__sftp_fail(e, TM_EINVAL, TM_ERR_FATAL, -1,
                               "TREEMIG_SFTP_TRANSPORT=%s: libssh2 or openssh", t);
            goto fail;
        }
    }
    p->ciphers_given = o->ciphers != NULL;
    p->macs_given = o->macs != NULL;
    if (o->ssh_config && !(p->ssh_config = strdup(o->ssh_config))) {
        rc = tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "open: out of memory");
        goto fail;
    }
    p->ciphers = strdup(o->ciphers ? o->ciphers : TM_SFTP_CIPHERS);
    p->macs = strdup(o->macs ? o->macs : TM_SFTP_MACS);
    if (!p->ciphers || !p->macs) {
        rc = tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "open: out of memory");
        goto fail;
    }
    if (o->password_env && !(p->password_env = strdup(o->password_env))) {
        rc = tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "open: out of memory");
        goto fail;
    }
    rc = resolve(p, &u, o, e);
    if (rc)
        goto fail;
    tm__sftp_url_release(&u);
    if (p->transport_auto && needs_prompt(p))
        p->transport = TM_SFTP_TRANSPORT_LIBSSH2;
    if (p->transport == TM_SFTP_TRANSPORT_OPENSSH &&
        (p->password_env || getenv("TREEMIG_SSH_PASSPHRASE"))) {
        rc = tm__sftp_askpass_make(p, e);
        if (rc)
            goto fail;
    }

    /* The first session, at once: fatal problems show now. */
    p->n_open = 1;
    rc = sess_open(p, p->accept_new, &s, e);
    if (rc && p->transport_auto && p->no_ssh) {
        p->transport = TM_SFTP_TRANSPORT_LIBSSH2; /* no ssh here: in process */
        rc = sess_open(p, p->accept_new, &s, e);
    }
    if (rc) {
        p->n_open = 0;
        if (e)
            e->cls = TM_ERR_FATAL;
        goto fail;
    }
    p->connects = 1;
    sess_put(p, s);
    *out = p;
    return 0;
fail:
    tm__sftp_url_release(&u);
    tm__sftp_pool_free(p);
    return rc;
}

static void orphans_retry(struct tm__sftp_pool *p);

void tm__sftp_pool_free(struct tm__sftp_pool *p)
{
    struct tm__sftp_sess *s;
    if (!p)
        return;
    /* a closed file's extra streams end by themselves: wait for them */
    pthread_mutex_lock(&p->mu);
    while (p->stripe_running > 0)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    orphans_retry(p);
    /* every session's ssh told to end first (its queued requests sent, its
     * socket closed: it closes its channel, a round trip, and exits), then
     * each reaped: they end together, not a round trip after another (16
     * sessions through 20 ms each way: 0.7 s) */
    for (s = p->idle; s; s = s->next)
        if (s->use_proc && s->pr.fd >= 0) {
            flush(s, NULL, "send", "requests");
            close(s->pr.fd);
            s->pr.fd = -1;
        }
    while ((s = p->idle)) {
        p->idle = s->next;
        sess_close(s);
    }
    tm__sftp_auth_release(p);
    tm__sftp_masters_close(p);
    tm__sftp_askpass_remove(p);
    free(p->ssh_config);
    free(p->user_config);
    free(p->alias);
    free(p->host);
    free(p->user);
    free(p->ciphers);
    free(p->macs);
    free(p->root);
    free(p->hostkey_name);
    free(p->password_env);
    strv_free(p->known_hosts, p->n_known_hosts);
    strv_free(p->ids, p->n_ids);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->auth_mu);
    pthread_mutex_destroy(&p->mux_mu);
    pthread_cond_destroy(&p->mux_cv);
    pthread_cond_destroy(&p->cv);
    free(p);
}

void tm__sftp_pool_info(struct tm__sftp_pool *p, struct tm__sftp_info *i)
{
    pthread_mutex_lock(&p->mu);
    i->host = p->host;
    i->port = p->port;
    i->user = p->user;
    i->root = p->root;
    i->ext = p->ext;
    i->chunk_read = p->chunk_r;
    i->chunk_write = p->chunk_w;
    i->connects = p->connects;
    i->sends = atomic_load_explicit(&p->sends, memory_order_relaxed);
    i->auth_used = p->auth_used;
    i->cipher = p->cipher_used;
    i->mac = p->mac_used;
    i->transport = p->transport == TM_SFTP_TRANSPORT_OPENSSH ? "openssh" : "libssh2";
    i->striped = p->striped;
    i->stripe_extra = p->stripe_extra;
    pthread_mutex_unlock(&p->mu);
}

/* ---- operations on paths ---- */

/* The ATTRS reply to the (L)STAT request id, sent earlier. */
static int attrs_reply(struct tm__sftp_sess *s, uint32_t id, const char *op,
                       const char *path, struct tm__sftp_attr *a, struct tm__sftp_err *e)
{
    struct reply r;
    int rc = wait_reply(s, id, &r, e, op, path);
    if (rc)
        return rc;
    if (r.type == FXP_ATTRS)
        rc = get_attrs(&r, a) ? proto_fail(s, e, op, path) : 0;
    else if (!(rc = status_err(s, &r, e, op, path, NULL)))
        rc = proto_fail(s, e, op, path);
    reply_release(&r);
    return rc;
}

static int do_stat(struct tm__sftp_sess *s, int type, const char *path,
                   struct tm__sftp_attr *a, struct tm__sftp_err *e)
{
    const char *op = type == FXP_LSTAT ? "lstat" : "stat";
    uint32_t id = begin(s, type);
    int rc;
    put_cstr(s, path);
    rc = finish(s, e, op, path);
    return rc ? rc : attrs_reply(s, id, op, path, a, e);
}

int tm__sftp_lstat(struct tm__sftp_pool *p, const char *path,
                   struct tm__sftp_attr *a, struct tm__sftp_err *e)
{
    struct tm__sftp_sess *s;
    int rc = sess_get(p, &s, e);
    if (rc)
        return rc;
    rc = do_stat(s, FXP_LSTAT, path, a, e);
    sess_put(p, s);
    return rc;
}

int tm__sftp_stat(struct tm__sftp_pool *p, const char *path,
                  struct tm__sftp_attr *a, struct tm__sftp_err *e)
{
    struct tm__sftp_sess *s;
    int rc = sess_get(p, &s, e);
    if (rc)
        return rc;
    rc = do_stat(s, FXP_STAT, path, a, e);
    sess_put(p, s);
    return rc;
}

/* The NAME reply (one name) to the READLINK or REALPATH request id: the
 * name is added to out. A path (realpath's answer) may hold no NUL. */
static int name_reply(struct tm__sftp_sess *s, uint32_t id, const char *op,
                      const char *path, int no_nul, struct tm__buf *out,
                      struct tm__sftp_err *e)
{
    struct reply r;
    uint32_t cnt;
    const unsigned char *name;
    size_t nn;
    int rc = wait_reply(s, id, &r, e, op, path);
    if (rc)
        return rc;
    if (r.type != FXP_NAME) {
        rc = status_err(s, &r, e, op, path, NULL);
        if (!rc)
            rc = proto_fail(s, e, op, path);
    } else if (get_u32(&r, &cnt) || cnt != 1 || get_str(&r, &name, &nn) ||
               (no_nul && memchr(name, '\0', nn))) {
        rc = proto_fail(s, e, op, path);
    } else if (tm__buf_add(out, name, nn)) {
        rc = tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "%s %s: out of memory",
                           op, path);
    }
    reply_release(&r);
    return rc;
}

/* A request of one path answered by one name (READLINK, REALPATH). */
static int name_request(struct tm__sftp_pool *p, int type, const char *op,
                        const char *path, int no_nul, struct tm__buf *out,
                        struct tm__sftp_err *e)
{
    struct tm__sftp_sess *s;
    uint32_t id;
    int rc = sess_get(p, &s, e);
    if (rc)
        return rc;
    id = begin(s, type);
    put_cstr(s, path);
    rc = finish(s, e, op, path);
    if (!rc)
        rc = name_reply(s, id, op, path, no_nul, out, e);
    sess_put(p, s);
    return rc;
}

int tm__sftp_readlink(struct tm__sftp_pool *p, const char *path,
                      struct tm__buf *out, struct tm__sftp_err *e)
{
    return name_request(p, FXP_READLINK, "readlink", path, 0, out, e);
}

int tm__sftp_realpath(struct tm__sftp_pool *p, const char *path,
                      struct tm__buf *out, struct tm__sftp_err *e)
{
    return name_request(p, FXP_REALPATH, "realpath", path, 1, out, e);
}

/* After a FAILURE that may mean "already there": TM_EEXIST when an lstat
 * finds something at path. */
static int maybe_exists(struct tm__sftp_sess *s, const char *op, const char *path,
                        int rc, struct tm__sftp_err *e)
{
    struct tm__sftp_attr a;
    struct tm__sftp_err e2;
    if (rc != TM_EIO || !e || e->fx != FX_FAILURE)
        return rc;
    if (do_stat(s, FXP_LSTAT, path, &a, &e2) == 0)
        return tm__sftp_fail(e, TM_EEXIST, TM_ERR_NODE, FX_FAILURE,
                             "%s %s: something is already there", op, path);
    return rc;
}

int tm__sftp_mkdir(struct tm__sftp_pool *p, const char *path, uint32_t mode,
                   struct tm__sftp_err *e)
{
    struct tm__sftp_sess *s;
    struct tm__sftp_attr a;
    uint32_t id;
    int rc = sess_get(p, &s, e);
    if (rc)
        return rc;
    memset(&a, 0, sizeof a);
    a.flags = TM_SFTP_A_PERM;
    a.mode = mode;
    id = begin(s, FXP_MKDIR);
    put_cstr(s, path);
    put_attrs(s, &a);
    rc = roundtrip_status(s, id, e, "mkdir", path, NULL);
    rc = maybe_exists(s, "mkdir", path, rc, e);
    sess_put(p, s);
    return rc;
}

int tm__sftp_symlink(struct tm__sftp_pool *p, const char *path,
                     const char *target, struct tm__sftp_err *e)
{
    struct tm__sftp_sess *s;
    uint32_t id;
    int rc = sess_get(p, &s, e);
    if (rc)
        return rc;
    /* OpenSSH reads the target first, then the link's path (the draft has
     * them the other way round); the servers in use follow OpenSSH. */
    id = begin(s, FXP_SYMLINK);
    put_cstr(s, target);
    put_cstr(s, path);
    rc = roundtrip_status(s, id, e, "symlink", path, NULL);
    rc = maybe_exists(s, "symlink", path, rc, e);
    sess_put(p, s);
    return rc;
}

static int do_setstat(struct tm__sftp_sess *s, const char *path,
                      const struct tm__sftp_attr *a, unsigned flags,
                      struct tm__sftp_err *e)
{
    uint32_t id;
    if (flags & TM_SFTP_NOFOLLOW) {
        if (s->pool->ext & TM_SFTP_EXT_LSETSTAT) {
            id = begin(s, FXP_EXTENDED);
            put_cstr(s, "lsetstat@openssh.com");
            put_cstr(s, path);
            put_attrs(s, a);
            return roundtrip_status(s, id, e, "lsetstat", path, NULL);
        } else {
            struct tm__sftp_attr cur;
            int rc = do_stat(s, FXP_LSTAT, path, &cur, e);
            if (rc)
                return rc;
            if (cur.type == TM_T_SYMLINK)
                return tm__sftp_fail(e, TM_ENOTSUP, TM_ERR_NODE, -1,
                                     "setstat %s: the server cannot set a symlink's "
                                     "attributes (no lsetstat@openssh.com)", path);
        }
    }
    id = begin(s, FXP_SETSTAT);
    put_cstr(s, path);
    put_attrs(s, a);
    return roundtrip_status(s, id, e, "setstat", path, NULL);
}

int tm__sftp_setstat(struct tm__sftp_pool *p, const char *path,
                     const struct tm__sftp_attr *a, unsigned flags,
                     struct tm__sftp_err *e)
{
    struct tm__sftp_sess *s;
    int rc = sess_get(p, &s, e);
    if (rc)
        return rc;
    rc = do_setstat(s, path, a, flags, e);
    sess_put(p, s);
    return rc;
}

static int do_remove(struct tm__sftp_sess *s, const char *path, struct tm__sftp_err *e)
{
    uint32_t id = begin(s, FXP_REMOVE);
    put_cstr(s, path);
    return roundtrip_status(s, id, e, "remove", path, NULL);
}

int tm__sftp_remove(struct tm__sftp_pool *p, const char *path,
                    struct tm__sftp_err *e)
{
    struct tm__sftp_sess *s;
    int rc = sess_get(p, &s, e);
    if (rc)
        return rc;
    rc = do_remove(s, path, e);
    sess_put(p, s);
    return rc;
}

int tm__sftp_rmdir(struct tm__sftp_pool *p, const char *path,
                   struct tm__sftp_err *e)
{
    struct tm__sftp_sess *s;
    struct tm__sftp_attr a;
    struct tm__sftp_err e2 = { 0 };
    uint32_t id;
    int rc = sess_get(p, &s, e);
    if (rc)
        return rc;
    id = begin(s, FXP_RMDIR);
    put_cstr(s, path);
    rc = roundtrip_status(s, id, e, "rmdir", path, NULL);
    /* SFTP v3 has no "not empty": a plain failure, the folder still there */
    if (rc == TM_EIO && e && e->fx == FX_FAILURE && !s->broken &&
        do_stat(s, FXP_LSTAT, path, &a, &e2) == 0 && a.type == TM_T_FOLDER)
        rc = tm__sftp_fail(e, TM_ECHANGED, TM_ERR_NODE, FX_FAILURE,
                           "rmdir %s: not empty", path);
    sess_put(p, s);
    return rc;
}

static int do_rename(struct tm__sftp_sess *s, const char *from, const char *to,
                     unsigned flags, struct tm__sftp_err *e)
{
    uint32_t id;
    int rc;
    if ((flags & TM_SFTP_REPLACE) && (s->pool->ext & TM_SFTP_EXT_POSIX_RENAME)) {
        id = begin(s, FXP_EXTENDED);
        put_cstr(s, "posix-rename@openssh.com");
        put_cstr(s, from);
        put_cstr(s, to);
        return roundtrip_status(s, id, e, "rename", to, NULL);
    }
    id = begin(s, FXP_RENAME);
    put_cstr(s, from);
    put_cstr(s, to);
    rc = roundtrip_status(s, id, e, "rename", to, NULL);
    rc = maybe_exists(s, "rename", to, rc, e);
    if (rc == TM_EEXIST && (flags & TM_SFTP_REPLACE)) {
        /* A server without posix-rename: not atomic (nothing at `to` for
         * a moment), as docs/adapters.md says. */
        rc = do_remove(s, to, e);
        if (!rc) {
            id = begin(s, FXP_RENAME);
            put_cstr(s, from);
            put_cstr(s, to);
            rc = roundtrip_status(s, id, e, "rename", to, NULL);
        }
    }
    return rc;
}

int tm__sftp_rename(struct tm__sftp_pool *p, const char *from, const char *to,
                    unsigned flags, struct tm__sftp_err *e)
{
    struct tm__sftp_sess *s;
    int rc = sess_get(p, &s, e);
    if (rc)
        return rc;
    rc = do_rename(s, from, to, flags, e);
    sess_put(p, s);
    return rc;
}

/* Builds a statvfs@openssh.com request of path (its id in *id), or
 * TM_ENOTSUP when the server lacks the extension. */
static int statvfs_begin(struct tm__sftp_sess *s, const char *path, uint32_t *id,
                         struct tm__sftp_err *e)
{
    if (!(s->pool->ext & TM_SFTP_EXT_STATVFS))
        return tm__sftp_fail(e, TM_ENOTSUP, TM_ERR_NODE, -1,
                             "statvfs %s: the server has no statvfs@openssh.com", path);
    *id = begin(s, FXP_EXTENDED);
    put_cstr(s, "statvfs@openssh.com");
    put_cstr(s, path);
    return 0;
}

/* The reply to the statvfs request id, sent earlier. */
static int statvfs_reply(struct tm__sftp_sess *s, uint32_t id, const char *path,
                         struct tm__sftp_vfs *v, struct tm__sftp_err *e)
{
    struct reply r;
    uint64_t bsize, bfree, ffree;
    int rc = wait_reply(s, id, &r, e, "statvfs", path);
    if (rc)
        return rc;
    if (r.type != FXP_EXTENDED_REPLY) {
        rc = status_err(s, &r, e, "statvfs", path, NULL);
        if (!rc)
            rc = proto_fail(s, e, "statvfs", path);
    } else if (get_u64(&r, &bsize) || get_u64(&r, &v->frsize) ||
               get_u64(&r, &v->blocks) || get_u64(&r, &bfree) ||
               get_u64(&r, &v->bavail) || get_u64(&r, &v->files) ||
               get_u64(&r, &ffree) || get_u64(&r, &v->favail) ||
               get_u64(&r, &v->fsid) || get_u64(&r, &v->flag) ||
               get_u64(&r, &v->namemax)) {
        rc = proto_fail(s, e, "statvfs", path);
    }
    reply_release(&r);
    return rc;
}

static int do_statvfs(struct tm__sftp_sess *s, const char *path,
                      struct tm__sftp_vfs *v, struct tm__sftp_err *e)
{
    uint32_t id = 0;
    int rc = statvfs_begin(s, path, &id, e);
    if (!rc)
        rc = finish(s, e, "statvfs", path);
    return rc ? rc : statvfs_reply(s, id, path, v, e);
}

int tm__sftp_statvfs(struct tm__sftp_pool *p, const char *path,
                     struct tm__sftp_vfs *v, struct tm__sftp_err *e)
{
    struct tm__sftp_sess *s;
    int rc = sess_get(p, &s, e);
    if (rc)
        return rc;
    rc = do_statvfs(s, path, v, e);
    sess_put(p, s);
    return rc;
}

int tm__sftp_root_probe(struct tm__sftp_pool *p, const char *given, const char *path,
                        int want_vfs, struct tm__sftp_probe *r, struct tm__sftp_err *e)
{
    struct tm__sftp_sess *s;
    struct tm__sftp_err *es[3] = {&r->real_e, &r->at_e, &r->vfs_e};
    uint32_t ids[3] = {0, 0, 0};
    int vfs = want_vfs && (p->ext & TM_SFTP_EXT_STATVFS), rc, i;

    memset(r, 0, sizeof *r);
    tm__buf_init(&r->real);
    r->vfs_rc = tm__sftp_fail(&r->vfs_e, TM_ENOTSUP, TM_ERR_NODE, -1,
                              "statvfs %s: %s", path,
                              want_vfs ? "the server has no statvfs@openssh.com"
                                       : "not asked");
    rc = sess_get(p, &s, e);
    if (rc)
        return rc;
    /* the three in one batch; the server takes them in order */
    ids[0] = begin(s, FXP_REALPATH);
    put_cstr(s, given);
    rc = finish(s, e, "realpath", given);
    if (!rc) {
        ids[1] = begin(s, FXP_LSTAT);
        put_cstr(s, path);
        rc = finish(s, e, "lstat", path);
    }
    if (!rc && vfs && !(rc = statvfs_begin(s, path, &ids[2], e)))
        rc = finish(s, e, "statvfs", path);
    if (rc) {
        s->broken = 1; /* requests half queued: this session is done */
        goto out;
    }
    /* every reply is taken, to keep the session in step */
    r->real_rc = name_reply(s, ids[0], "realpath", given, 1, &r->real, &r->real_e);
    r->at_rc = s->broken ? TM_ECONNRESET
                         : attrs_reply(s, ids[1], "lstat", path, &r->at, &r->at_e);
    if (vfs)
        r->vfs_rc = s->broken ? TM_ECONNRESET : statvfs_reply(s, ids[2], path, &r->vfs,
                                                              &r->vfs_e);
    if (s->broken) {
        /* the first failure says why */
        int rcs[3] = {r->real_rc, r->at_rc, r->vfs_rc}, n = vfs ? 3 : 2;
        for (i = 0; i < n && !rcs[i]; i++)
            ;
        rc = i < n ? rcs[i] : TM_ECONNRESET;
        if (e && i < n)
            *e = *es[i];
        else
            tm__sftp_fail(e, rc, TM_ERR_RETRY, -1, "realpath %s: connection lost", given);
    }
out:
    sess_put(p, s);
    return rc;
}

/* ---- handles ---- */

/* Opens path (OPEN or OPENDIR) and copies the handle into h. */
static int open_handle(struct tm__sftp_sess *s, int type, const char *path,
                       uint32_t pflags, const struct tm__sftp_attr *a,
                       unsigned char *h, size_t *hlen, struct tm__sftp_err *e,
                       const char *op)
{
    struct reply r;
    const unsigned char *hp;
    uint32_t id = begin(s, type);
    int rc;
    put_cstr(s, path);
    if (type == FXP_OPEN) {
        put_u32(s, pflags);
        put_attrs(s, a);
    }
    rc = roundtrip(s, id, &r, e, op, path);
    if (rc)
        return rc;
    if (r.type != FXP_HANDLE) {
        rc = status_err(s, &r, e, op, path, NULL);
        if (!rc)
            rc = proto_fail(s, e, op, path);
    } else if (get_str(&r, &hp, hlen) || *hlen > MAX_HANDLE) {
        rc = proto_fail(s, e, op, path);
    } else {
        memcpy(h, hp, *hlen);
    }
    reply_release(&r);
    return rc;
}

static int close_handle(struct tm__sftp_sess *s, const unsigned char *h, size_t hlen,
                        struct tm__sftp_err *e, const char *path)
{
    uint32_t id = begin(s, FXP_CLOSE);
    put_str(s, h, hlen);
    return roundtrip_status(s, id, e, "close", path, NULL);
}

/* Closes the handle without waiting for the answer (a handle read from
 * or listed: nothing depends on how its CLOSE went); replies still owed
 * for it must be dropped first (drop_add). */
static void close_async(struct tm__sftp_sess *s, const unsigned char *h, size_t hlen)
{
    uint32_t id;
    if (s->broken)
        return;
    id = begin(s, FXP_CLOSE);
    put_str(s, h, hlen);
    if (finish(s, NULL, "close", "a handle") == 0)
        drop_add(s, id);
}

/* ---- listing ---- */

struct tm__sftp_dir {
    struct tm__sftp_pool *pool;       /* the owner */
    struct tm__sftp_sess *s;          /* the session holding the handle */
    char *path;                       /* the folder, for messages */
    unsigned char h[MAX_HANDLE];      /* the handle */
    size_t hlen;                      /* its length */
    uint32_t ids[READDIR_AHEAD];      /* READDIRs in flight, oldest first */
    int nids;                         /* entries in ids */
    int eof;                          /* the server said EOF */
    uint64_t skip;                    /* children still to drop */
    uint64_t pos;                     /* children returned or skipped */
    struct tm__sftp_dirent *ents;     /* the last batch */
    size_t ents_alloc;                /* entries allocated at ents */
    struct tm__buf names;             /* the last batch's names, NUL-separated */
};

int tm__sftp_opendir(struct tm__sftp_pool *p, const char *path, uint64_t skip,
                     struct tm__sftp_dir **out, struct tm__sftp_err *e)
{
    struct tm__sftp_dir *d = calloc(1, sizeof *d);
    int rc;
    *out = NULL;
    if (!d || !(d->path = strdup(path))) {
        free(d);
        return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "opendir %s: out of memory",
                             path);
    }
    d->pool = p;
    d->skip = skip;
    tm__buf_init(&d->names);
    rc = sess_get(p, &d->s, e);
    if (rc)
        goto fail;
    rc = open_handle(d->s, FXP_OPENDIR, path, 0, NULL, d->h, &d->hlen, e, "opendir");
    if (rc)
        goto fail;
    *out = d;
    return 0;
fail:
    sess_put(p, d->s);
    free(d->path);
    free(d);
    return rc;
}

int tm__sftp_opendir_lstat(struct tm__sftp_pool *p, const char *path,
                           struct tm__sftp_attr *before, struct tm__sftp_attr *after,
                           int *stage, struct tm__sftp_dir **out,
                           struct tm__sftp_err *e)
{
    struct tm__sftp_dir *d = calloc(1, sizeof *d);
    struct tm__sftp_err e2[3];
    const unsigned char *hp;
    struct reply r;
    uint32_t ids[3];
    int rc, rcs[3], i;

    *out = NULL;
    *stage = 0;
    if (!d || !(d->path = strdup(path))) {
        free(d);
        return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "opendir %s: out of memory",
                             path);
    }
    d->pool = p;
    tm__buf_init(&d->names);
    rc = sess_get(p, &d->s, e);
    if (rc)
        goto fail;
    /* the three in one batch; the server takes them in order */
    ids[0] = begin(d->s, FXP_LSTAT);
    put_cstr(d->s, path);
    rc = finish(d->s, e, "lstat", path);
    if (!rc) {
        ids[1] = begin(d->s, FXP_OPENDIR);
        put_cstr(d->s, path);
        rc = finish(d->s, e, "opendir", path);
    }
    if (!rc) {
        ids[2] = begin(d->s, FXP_LSTAT);
        put_cstr(d->s, path);
        rc = finish(d->s, e, "lstat", path);
    }
    if (rc) {
        d->s->broken = 1; /* requests half queued: this session is done */
        goto fail;
    }
    /* every reply is taken, to keep the session in step */
    rcs[0] = attrs_reply(d->s, ids[0], "lstat", path, before, &e2[0]);
    rcs[1] = d->s->broken ? e2[0].code : wait_reply(d->s, ids[1], &r, &e2[1], "opendir", path);
    if (!d->s->broken && !rcs[1]) {
        if (r.type != FXP_HANDLE) {
            rcs[1] = status_err(d->s, &r, &e2[1], "opendir", path, NULL);
            if (!rcs[1])
                rcs[1] = proto_fail(d->s, &e2[1], "opendir", path);
        } else if (get_str(&r, &hp, &d->hlen) || d->hlen > MAX_HANDLE) {
            rcs[1] = proto_fail(d->s, &e2[1], "opendir", path);
        } else {
            memcpy(d->h, hp, d->hlen);
        }
        reply_release(&r);
    }
    rcs[2] = d->s->broken ? TM_ECONNRESET : attrs_reply(d->s, ids[2], "lstat", path, after, &e2[2]);
    if (d->s->broken) {
        /* the first failure says why */
        for (i = 0; i < 3 && !rcs[i]; i++)
            ;
        rc = i < 3 ? rcs[i] : TM_ECONNRESET;
        if (e && i < 3)
            *e = e2[i];
        else
            tm__sftp_fail(e, rc, TM_ERR_RETRY, -1, "opendir %s: connection lost", path);
        goto fail;
    }
    if (!rcs[1] && (rcs[0] || rcs[2]))
        close_async(d->s, d->h, d->hlen);
    for (i = 0; i < 3 && !rcs[i]; i++)
        *stage = i + 1;
    if (i < 3) {
        rc = rcs[i];
        if (e)
            *e = e2[i];
        goto fail;
    }
    *out = d;
    return 0;
fail:
    sess_put(p, d->s);
    free(d->path);
    free(d);
    return rc;
}

static int parse_names(struct tm__sftp_dir *d, struct reply *r, size_t *n,
                       struct tm__sftp_err *e)
{
    uint32_t cnt, i;
    size_t k = 0;
    if (get_u32(r, &cnt))
        return proto_fail(d->s, e, "readdir", d->path);
    if (cnt > d->ents_alloc) {
        struct tm__sftp_dirent *t = realloc(d->ents, cnt * sizeof *t);
        if (!t)
            return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1,
                                 "readdir %s: out of memory", d->path);
        d->ents = t;
        d->ents_alloc = cnt;
    }
    tm__buf_reset(&d->names);
    /* Offsets first (the buffer may move while it grows). */
    for (i = 0; i < cnt; i++) {
        const unsigned char *nm, *ln;
        size_t nl, ll;
        struct tm__sftp_attr a;
        if (get_str(r, &nm, &nl) || get_str(r, &ln, &ll) || get_attrs(r, &a))
            return proto_fail(d->s, e, "readdir", d->path);
        if ((nl == 1 && nm[0] == '.') || (nl == 2 && nm[0] == '.' && nm[1] == '.'))
            continue;
        if (d->skip) {
            d->skip--;
            d->pos++;
            continue;
        }
        d->ents[k].name = (const char *)(uintptr_t)d->names.len;
        d->ents[k].name_len = nl;
        d->ents[k].attr = a;
        if (tm__buf_add(&d->names, nm, nl) || tm__buf_addch(&d->names, '\0'))
            return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1,
                                 "readdir %s: out of memory", d->path);
        k++;
    }
    for (i = 0; i < k; i++)
        d->ents[i].name = d->names.buf + (uintptr_t)d->ents[i].name;
    d->pos += k;
    *n = k;
    return 0;
}

int tm__sftp_readdir(struct tm__sftp_dir *d, const struct tm__sftp_dirent **ents,
                     size_t *n, struct tm__sftp_err *e)
{
    struct reply r;
    uint32_t fx;
    int rc;

    *n = 0;
    *ents = d->ents;
    if (d->s->broken)
        return tm__sftp_fail(e, TM_ECONNRESET, TM_ERR_RETRY, -1,
                             "readdir %s: connection lost", d->path);
    for (;;) {
        while (!d->eof && d->nids < READDIR_AHEAD) {
            uint32_t id = begin(d->s, FXP_READDIR);
            put_str(d->s, d->h, d->hlen);
            rc = finish(d->s, e, "readdir", d->path);
            if (rc)
                return rc;
            d->ids[d->nids++] = id;
        }
        if (!d->nids)
            return 0;
        rc = wait_reply(d->s, d->ids[0], &r, e, "readdir", d->path);
        if (rc)
            return rc;
        memmove(d->ids, d->ids + 1, (size_t)(d->nids - 1) * sizeof d->ids[0]);
        d->nids--;
        if (r.type == FXP_NAME) {
            rc = d->eof ? 0 : parse_names(d, &r, n, e);
            reply_release(&r);
            *ents = d->ents;
            if (rc || *n)
                return rc;
            continue;
        }
        rc = status_err(d->s, &r, e, "readdir", d->path, &fx);
        reply_release(&r);
        if (fx == FX_EOF) {
            d->eof = 1;
            continue;
        }
        if (!rc)
            rc = proto_fail(d->s, e, "readdir", d->path);
        return rc;
    }
}

uint64_t tm__sftp_dir_pos(const struct tm__sftp_dir *d)
{
    return d->pos;
}

void tm__sftp_closedir(struct tm__sftp_dir *d)
{
    if (!d)
        return;
    /* what is still in flight is dropped when it comes; the CLOSE is not
     * waited for: a listing costs no round trip to end */
    while (d->nids && !d->s->broken)
        drop_add(d->s, d->ids[--d->nids]);
    close_async(d->s, d->h, d->hlen);
    sess_put(d->pool, d->s);
    tm__buf_release(&d->names);
    free(d->ents);
    free(d->path);
    free(d);
}

/* ---- reading ---- */

struct rreq {
    uint32_t id;   /* request id */
    uint64_t off;  /* offset asked for */
    uint32_t len;  /* bytes asked for */
};

struct stripes;

struct tm__sftp_rfile {
    struct tm__sftp_pool *pool;  /* the owner */
    struct stripes *st;          /* a large file read in stripes through
                                    several sessions, or NULL (then the
                                    file's session is the stripes' stream
                                    0 until they end) */
    struct tm__sftp_sess *s;     /* the session holding the handle */
    char *path;                  /* for messages */
    unsigned char h[MAX_HANDLE]; /* the handle */
    size_t hlen;                 /* its length */
    uint64_t size;               /* the size at open: requests stop there */
    uint64_t off_req;            /* the next offset to request */
    uint64_t off;                /* the next offset to hand out */
    struct rreq *q;              /* requests in flight (ring) */
    int qcap, qhead, qn;         /* ring capacity, first, count */
    int eof;                     /* the server said EOF */
    const unsigned char *cur;    /* data received, not handed out yet */
    size_t cur_len;              /* bytes left at cur */
    unsigned char *cur_own;      /* the stash packet cur points into */
    int tail;                    /* an FSTAT sent behind the last READ (what
                                    fstat will say after the reads): 1 sent,
                                    0 not yet, 2 its answer is in tail_a,
                                    -1 not any more */
    uint32_t tail_id;            /* its request id */
    struct tm__sftp_attr tail_a; /* its answer (tail 2) */
};

static int rf_send(struct tm__sftp_rfile *f, struct tm__sftp_err *e)
{
    struct rreq *q = &f->q[(f->qhead + f->qn) % f->qcap];
    q->off = f->off_req;
    q->len = f->pool->chunk_r;
    q->id = begin(f->s, FXP_READ);
    put_str(f->s, f->h, f->hlen);
    put_u64(f->s, q->off);
    put_u32(f->s, q->len);
    f->qn++;
    f->off_req += q->len;
    return finish(f->s, e, "read", f->path);
}

/* Receives and drops every reply in flight (after EOF or a short read). */
static int rf_drain(struct tm__sftp_rfile *f, struct tm__sftp_err *e)
{
    struct reply r;
    while (f->qn) {
        int rc = wait_reply(f->s, f->q[f->qhead].id, &r, e, "read", f->path);
        if (rc)
            return rc;
        reply_release(&r);
        f->qhead = (f->qhead + 1) % f->qcap;
        f->qn--;
    }
    return 0;
}

/* The replies f's requests still owe are dropped when they come. */
static void rf_forget(struct tm__sftp_rfile *f)
{
    while (f->qn && !f->s->broken) {
        drop_add(f->s, f->q[f->qhead].id);
        f->qhead = (f->qhead + 1) % f->qcap;
        f->qn--;
    }
    f->qn = 0;
    if (f->tail == 1 && !f->s->broken)
        drop_add(f->s, f->tail_id);
    f->tail = -1;
}

/* The answer to the FSTAT request id, sent earlier. */
static int fstat_reply(struct tm__sftp_sess *s, uint32_t id, const char *path,
                       struct tm__sftp_attr *a, struct tm__sftp_err *e)
{
    struct reply r;
    int rc = wait_reply(s, id, &r, e, "fstat", path);
    if (rc)
        return rc;
    if (r.type == FXP_ATTRS) {
        rc = get_attrs(&r, a) ? proto_fail(s, e, "fstat", path) : 0;
    } else {
        rc = status_err(s, &r, e, "fstat", path, NULL);
        if (!rc)
            rc = proto_fail(s, e, "fstat", path);
    }
    reply_release(&r);
    return rc;
}

/* ---- reading a large file through several sessions ---- */

/* What a large file's read needs of the file (client.c's struct
 * tm__sftp_rfile, defined above). A stripe set reads [0, size) of the file
 * in stripes of sz bytes: stripe i, bytes [i*sz, (i+1)*sz), is read by
 * whichever stream claims it first, into buffer i % nslots; the reader
 * (tm__sftp_read, the caller's thread) takes the buffers in order. Stream 0
 * uses the file's own session and handle (the caller does not touch them
 * until the streams are joined); the others each take a session the pool
 * has to spare (never waiting for one) and open the file again, and give
 * up quietly when they cannot: fewer streams read. Each stream runs in a
 * thread of its own and keeps the pool's read_ahead READs in flight, as a
 * plain read does. A stripe is claimed only when its buffer is free (the
 * reader has passed the stripe nslots before it): memory is bounded by
 * nslots * sz. Any stream's error stops them all and is the read's error. */

/* One stream: a session with the file open, and a thread. */
struct stream {
    struct stripes *st;          /* the set */
    int idx;                     /* 0: the file's own session and handle */
    pthread_t th;                /* its thread */
    int started;                 /* th was started (stream 0: join it) */
    int busy;                    /* a thread runs in this slot (st->mu) */
    int leaving;                 /* over its file's share: takes no more
                                    stripes */
    struct tm__sftp_sess *s;     /* its session, or NULL */
    unsigned char h[MAX_HANDLE]; /* its handle on the file */
    size_t hlen;                 /* its length */
    struct rreq *q;              /* READs in flight (ring) */
    int qcap, qhead, qn;         /* ring capacity, first, count */
    uint64_t next_off;           /* the claimed stripe's next byte to ask */
    uint64_t end_off;            /* where the claimed stripe ends */
};

struct stripes {
    pthread_mutex_t mu;          /* guards the fields marked (mu) */
    pthread_cond_t cv;           /* a stripe arrived or a buffer was freed,
                                    an error, stop (mu) */
    struct tm__sftp_pool *pool;  /* the file's pool */
    char *path;                  /* the file's (a copy: an extra stream
                                    may outlive the file) */
    uint64_t size;               /* the size at open: stripes stop there */
    int64_t mtime;               /* the mtime at open: another stream's
                                    open must find the same */
    uint32_t sz;                 /* bytes per stripe: whole READs */
    uint64_t n;                  /* stripes */
    int nslots;                  /* stripe buffers */
    unsigned char *buf;          /* nslots * sz bytes */
    uint64_t *slot_of;           /* per buffer: the stripe claimed into it,
                                    UINT64_MAX before (mu) */
    uint64_t *pending;           /* per buffer: bytes still to come (mu) */
    uint64_t next;               /* the next stripe to claim (mu) */
    uint64_t cons;               /* the stripe the reader is in (mu) */
    uint64_t end;                /* the size, or the lowest offset a READ
                                    met the end of the file at (mu) */
    int stop;                    /* the streams are to end (mu) */
    int rc;                      /* the first error of a stream (mu) */
    struct tm__sftp_err e;       /* its details (mu) */
    int refs;                    /* the reader, and each extra stream's
                                    thread (detached: the last frees st)
                                    (mu) */
    int no_more;                 /* an extra stream found no session to
                                    spare or could not open the file:
                                    start no other (mu) */
    int k;                       /* streams at most */
    int extras;                  /* extra streams running, not leaving
                                    (mu) */
    struct stream sv[];          /* them */
};

/* 1 when stripe st->next may be claimed now (mu held). */
static int stripe_free(const struct stripes *st)
{
    return !st->stop && st->next < st->n && st->next * st->sz < st->end &&
           st->next < st->cons + (uint64_t)st->nslots;
}

/* The extra streams a file of st's pool may have now. */
static int stripe_share(const struct stripes *st)
{
    struct tm__sftp_pool *p = st->pool;
    int n;
    pthread_mutex_lock(&p->mu);
    n = STRIPE_EXTRA / (p->stripe_files > 0 ? p->stripe_files : 1);
    pthread_mutex_unlock(&p->mu);
    return n < st->k - 1 ? n : st->k - 1;
}

/* Claims the next stripe for sm: 1, or 0 when none may be claimed now
 * (or sm, an extra stream over its file's share, is to leave). */
static int stripe_claim(struct stream *sm)
{
    struct stripes *st = sm->st;
    int share, got = 0;
    if (sm->leaving)
        return 0;
    share = sm->idx > 0 ? stripe_share(st) : 0;
    pthread_mutex_lock(&st->mu);
    if (sm->idx > 0 && st->extras > share) {
        st->extras--;
        sm->leaving = 1;
    } else if (stripe_free(st)) {
        uint64_t i = st->next++;
        int slot = (int)(i % (uint64_t)st->nslots);
        uint64_t hi = (i + 1) * st->sz;
        if (hi > st->size)
            hi = st->size;
        st->slot_of[slot] = i;
        st->pending[slot] = hi - i * st->sz;
        sm->next_off = i * st->sz;
        sm->end_off = hi;
        got = 1;
    }
    pthread_mutex_unlock(&st->mu);
    return got;
}

/* n bytes at off arrived (eof: the READ at off met the end of the file
 * instead). Returns 1 when the streams are to stop. */
static int stripe_got(struct stripes *st, uint64_t off, uint64_t n, int eof)
{
    int slot = (int)(off / st->sz % (uint64_t)st->nslots), stop;
    pthread_mutex_lock(&st->mu);
    st->pending[slot] -= n;
    if (eof && off < st->end)
        st->end = off;
    if (!st->pending[slot] || eof)
        pthread_cond_broadcast(&st->cv);
    stop = st->stop;
    pthread_mutex_unlock(&st->mu);
    return stop;
}

static int stream_send(struct stream *sm, uint64_t off, uint32_t len,
                       struct tm__sftp_err *e)
{
    struct rreq *q = &sm->q[(sm->qhead + sm->qn) % sm->qcap];
    q->off = off;
    q->len = len;
    q->id = begin(sm->s, FXP_READ);
    put_str(sm->s, sm->h, sm->hlen);
    put_u64(sm->s, off);
    put_u32(sm->s, len);
    sm->qn++;
    return finish(sm->s, e, "read", sm->st->path);
}

/* Receives the reply to the oldest READ into its stripe's buffer. 1 when
 * the streams are to stop. */
static int stream_recv(struct stream *sm, struct tm__sftp_err *e)
{
    struct stripes *st = sm->st;
    struct tm__sftp_sess *s = sm->s;
    struct rreq q = sm->q[sm->qhead];
    unsigned char *dst = st->buf + (size_t)(q.off / st->sz % (uint64_t)st->nslots) * st->sz +
                         (size_t)(q.off % st->sz);
    struct reply r;
    size_t got = 0;
    int rc = 0;

    sm->qhead = (sm->qhead + 1) % sm->qcap;
    sm->qn--;
    if (s->use_proc && !stashed(s, q.id)) {
        /* the data straight into the buffer, when it is next on the wire */
        rc = recv_data_into(s, q.id, dst, q.len, &got, e, "read", st->path);
        if (rc < 0)
            return rc;
    }
    if (!rc) {
        const unsigned char *data;
        uint32_t fx = FX_OK;
        rc = wait_reply(s, q.id, &r, e, "read", st->path);
        if (rc)
            return rc;
        if (r.type != FXP_DATA) {
            rc = status_err(s, &r, e, "read", st->path, &fx);
            reply_release(&r);
            if (fx == FX_EOF)
                return stripe_got(st, q.off, q.len, 1);
            return rc ? rc : proto_fail(s, e, "read", st->path);
        }
        if (get_str(&r, &data, &got) || got > q.len) {
            reply_release(&r);
            return proto_fail(s, e, "read", st->path);
        }
        memcpy(dst, data, got);
        reply_release(&r);
    }
    if (!got)
        return proto_fail(s, e, "read", st->path);
    if (stripe_got(st, q.off, got, 0))
        return 1;
    if (got < q.len) /* a short read: the rest asked again */
        return stream_send(sm, q.off + got, q.len - (uint32_t)got, e);
    return 0;
}

static int do_fstat(struct tm__sftp_sess *s, const unsigned char *h, size_t hlen,
                    const char *path, struct tm__sftp_attr *a,
                    struct tm__sftp_err *e);

/* An extra stream: a session to spare, the file opened on it, and the
 * same size and mtime through that handle as through the file's (else
 * another file is at the path now). 0, or -1: not this stream. */
static int stream_open(struct stream *sm)
{
    struct stripes *st = sm->st;
    struct tm__sftp_err e;
    struct tm__sftp_attr a;
    int stop;

    memset(&e, 0, sizeof e);
    pthread_mutex_lock(&st->mu);
    stop = st->stop;
    pthread_mutex_unlock(&st->mu);
    if (stop)
        return -1;
    if (sess_take(st->pool, &sm->s, &e, 1)) {
        /* no session to spare (or none can be opened now): the file is
         * read by the streams it has */
        sm->s = NULL;
        goto fail;
    }
    if (open_handle(sm->s, FXP_OPEN, st->path, FXF_READ, NULL, sm->h, &sm->hlen, &e,
                    "open"))
        goto fail;
    if (do_fstat(sm->s, sm->h, sm->hlen, st->path, &a, &e) || a.type != TM_T_FILE ||
        a.size != st->size || a.mtime != st->mtime) {
        close_async(sm->s, sm->h, sm->hlen);
        goto fail;
    }
    pthread_mutex_lock(&st->pool->mu);
    st->pool->stripe_extra++;
    pthread_mutex_unlock(&st->pool->mu);
    return 0;
fail:
    if (sm->s)
        sess_put(st->pool, sm->s);
    sm->s = NULL;
    pthread_mutex_lock(&st->mu);
    st->no_more = 1;
    pthread_mutex_unlock(&st->mu);
    return -1;
}

/* Frees st (its last reference is gone). */
static void stripes_destroy(struct stripes *st)
{
    int i;
    for (i = 0; i < st->k; i++)
        free(st->sv[i].q);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st->path);
    free(st->buf);
    free(st->slot_of);
    free(st->pending);
    free(st);
}

/* Drops a reference to st: the last frees it. */
static void stripes_unref(struct stripes *st)
{
    int last;
    pthread_mutex_lock(&st->mu);
    last = --st->refs == 0;
    pthread_mutex_unlock(&st->mu);
    if (last)
        stripes_destroy(st);
}

/* A stream's thread: claims stripes while buffers are free and reads them
 * with READs in flight, until every stripe is claimed and read, or stop. */
static void *stream_main(void *arg)
{
    struct stream *sm = arg;
    struct stripes *st = sm->st;
    struct tm__sftp_err e;
    int rc = 0;

    memset(&e, 0, sizeof e);
    if (sm->idx > 0 && stream_open(sm))
        goto out;
    for (;;) {
        while (sm->qn < sm->qcap) {
            uint32_t len = st->pool->chunk_r;
            if (sm->next_off == sm->end_off && !stripe_claim(sm))
                break;
            if (len > sm->end_off - sm->next_off)
                len = (uint32_t)(sm->end_off - sm->next_off);
            rc = stream_send(sm, sm->next_off, len, &e);
            if (rc)
                break;
            sm->next_off += len;
        }
        if (rc)
            break;
        if (!sm->qn) {
            /* nothing asked: wait for a free buffer, or end */
            int more;
            if (sm->leaving)
                break;
            pthread_mutex_lock(&st->mu);
            while (!st->stop && st->next < st->n && st->next * st->sz < st->end &&
                   !stripe_free(st))
                pthread_cond_wait(&st->cv, &st->mu);
            more = stripe_free(st);
            pthread_mutex_unlock(&st->mu);
            if (!more)
                break;
            continue;
        }
        rc = stream_recv(sm, &e);
        if (rc)
            break;
    }
    pthread_mutex_lock(&st->mu);
    if (rc < 0 && !st->rc) {
        st->rc = rc;
        st->e = e;
    }
    if (rc < 0)
        st->stop = 1;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    /* replies still owed are dropped when they come */
    while (sm->qn) {
        if (!sm->s->broken)
            drop_add(sm->s, sm->q[sm->qhead].id);
        sm->qhead = (sm->qhead + 1) % sm->qcap;
        sm->qn--;
    }
    if (sm->idx > 0) {
        close_async(sm->s, sm->h, sm->hlen);
        sess_put(st->pool, sm->s);
        sm->s = NULL;
    }
out:
    if (sm->idx > 0) {
        struct tm__sftp_pool *p = st->pool;
        int last;
        pthread_mutex_lock(&st->mu);
        if (!sm->leaving)
            st->extras--;
        sm->busy = 0; /* the slot is free: sm is not touched any more */
        last = --st->refs == 0;
        pthread_mutex_unlock(&st->mu);
        if (last) /* st is gone from here on */
            stripes_destroy(st);
        pthread_mutex_lock(&p->mu);
        p->stripe_running--;
        pthread_cond_broadcast(&p->cv); /* the pool's free waits for it */
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

/* Starts stream i of st; 0, or -1 (no thread). Its thread takes no
 * signal: the caller's handle them. */
static int stream_start(struct stripes *st, int i)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    st->sv[i].started = pthread_create(&st->sv[i].th, NULL, stream_main, &st->sv[i]) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!st->sv[i].started)
        return -1;
    if (i > 0)
        pthread_detach(st->sv[i].th);
    return 0;
}

/* One more stream for st when it has fewer than its share, the pool runs
 * fewer extra streams than STRIPE_EXTRA and no stream of st failed to open
 * the file (the reader's thread, at each stripe it passes). */
static void stripes_grow(struct stripes *st)
{
    struct tm__sftp_pool *p = st->pool;
    int share = stripe_share(st), i, go;
    struct stream *sm = NULL;

    pthread_mutex_lock(&st->mu);
    go = !st->no_more && !st->stop && st->next < st->n && st->extras < share;
    for (i = 1; go && i < st->k && !sm; i++)
        if (!st->sv[i].busy)
            sm = &st->sv[i];
    pthread_mutex_unlock(&st->mu);
    if (!sm)
        return;
    pthread_mutex_lock(&p->mu);
    go = p->stripe_running < STRIPE_EXTRA;
    if (go)
        p->stripe_running++;
    pthread_mutex_unlock(&p->mu);
    if (!go)
        return;
    /* a slot's last thread left it as it was: start afresh */
    sm->s = NULL;
    sm->qn = sm->qhead = 0;
    sm->next_off = sm->end_off = 0;
    sm->leaving = 0;
    pthread_mutex_lock(&st->mu);
    sm->busy = 1;
    st->extras++;
    st->refs++;
    pthread_mutex_unlock(&st->mu);
    if (stream_start(st, (int)(sm - st->sv)) == 0)
        return;
    pthread_mutex_lock(&st->mu);
    sm->busy = 0;
    st->extras--;
    st->refs--;
    pthread_mutex_unlock(&st->mu);
    pthread_mutex_lock(&p->mu);
    p->stripe_running--;
    pthread_mutex_unlock(&p->mu);
}

/* The reader is done with st: stops the streams and joins stream 0 (the
 * file's session is the file's again); an extra stream is not waited for
 * (it may be opening a session: a new ssh master, several round trips):
 * its thread ends by itself, after its replies in flight, and the pool's
 * free waits for it. */
static void stripes_free(struct stripes *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->mu);
    st->stop = 1;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    if (st->sv[0].started) {
        pthread_join(st->sv[0].th, NULL);
        pthread_mutex_lock(&st->pool->mu);
        st->pool->stripe_files--;
        pthread_mutex_unlock(&st->pool->mu);
    }
    stripes_unref(st);
}

/* Starts reading f (just opened: one READ, at 0, in flight) in stripes
 * through up to k streams; stream 0 takes the file's session, handle and
 * READ. Returns the set, or NULL (out of memory, no thread): f is read
 * through its session alone, as it was. */
static struct stripes *stripes_start(struct tm__sftp_rfile *f, int k, int64_t mtime)
{
    struct tm__sftp_pool *p = f->pool;
    struct stripes *st = calloc(1, sizeof *st + (size_t)k * sizeof(struct stream));
    uint32_t per = STRIPE_BYTES / p->chunk_r;
    int i;

    if (!st)
        return NULL;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->pool = p;
    st->path = strdup(f->path);
    st->size = f->size;
    st->mtime = mtime;
    st->sz = p->chunk_r * (per ? per : 1);
    st->n = (f->size + st->sz - 1) / st->sz;
    st->nslots = STRIPE_SLOTS * k;
    st->end = f->size;
    st->k = k;
    st->refs = 1;
    st->buf = malloc((size_t)st->nslots * st->sz);
    st->slot_of = malloc((size_t)st->nslots * sizeof *st->slot_of);
    st->pending = calloc((size_t)st->nslots, sizeof *st->pending);
    if (!st->path || !st->buf || !st->slot_of || !st->pending)
        goto fail;
    for (i = 0; i < st->nslots; i++)
        st->slot_of[i] = UINT64_MAX;
    for (i = 0; i < k; i++) {
        struct stream *sm = &st->sv[i];
        sm->st = st;
        sm->idx = i;
        sm->qcap = p->read_ahead;
        if (!(sm->q = calloc((size_t)sm->qcap, sizeof *sm->q)))
            goto fail;
    }
    /* stream 0: the file's session and handle, and the READ at 0 (within
     * stripe 0, which it claims) */
    {
        struct stream *sm = &st->sv[0];
        sm->s = f->s;
        memcpy(sm->h, f->h, f->hlen);
        sm->hlen = f->hlen;
        if (!stripe_claim(sm))
            goto fail;
        while (f->qn && sm->qn < sm->qcap) {
            struct rreq *q = &f->q[f->qhead];
            sm->q[sm->qn++] = *q;
            sm->next_off = q->off + q->len;
            f->qhead = (f->qhead + 1) % f->qcap;
            f->qn--;
        }
    }
    if (stream_start(st, 0) != 0) {
        /* give the READ back to the file */
        struct stream *sm = &st->sv[0];
        int j;
        for (j = 0; j < sm->qn; j++) {
            f->q[(f->qhead + f->qn) % f->qcap] = sm->q[j];
            f->qn++;
        }
        sm->qn = 0;
        stripes_free(st);
        return NULL;
    }
    pthread_mutex_lock(&p->mu);
    p->striped++;
    p->stripe_files++;
    pthread_mutex_unlock(&p->mu);
    stripes_grow(st);
    return st;
fail:
    stripes_free(st);
    return NULL;
}

/* The next bytes of a striped file, in order: the count, an error, or 0
 * when the stripes are done (the end of the file, or where a READ met
 * it): then f reads on alone from f->off. */
static int64_t stripes_read(struct tm__sftp_rfile *f, void *buf, size_t len,
                            struct tm__sftp_err *e)
{
    struct stripes *st = f->st;
    for (;;) {
        uint64_t i = f->off / st->sz, hi;
        int slot = (int)(i % (uint64_t)st->nslots);
        size_t n;
        pthread_mutex_lock(&st->mu);
        if (st->rc) {
            int rc = st->rc;
            if (e)
                *e = st->e;
            pthread_mutex_unlock(&st->mu);
            return rc;
        }
        if (f->off >= st->end) {
            pthread_mutex_unlock(&st->mu);
            return 0;
        }
        if (st->slot_of[slot] != i || st->pending[slot]) {
            pthread_cond_wait(&st->cv, &st->mu);
            pthread_mutex_unlock(&st->mu);
            continue;
        }
        hi = (i + 1) * st->sz;
        if (hi > st->end)
            hi = st->end;
        pthread_mutex_unlock(&st->mu);
        n = len < hi - f->off ? len : (size_t)(hi - f->off);
        memcpy(buf, st->buf + (size_t)slot * st->sz + (size_t)(f->off % st->sz), n);
        f->off += n;
        if (f->off == (i + 1) * st->sz) {
            /* the buffer is free for stripe i + nslots */
            pthread_mutex_lock(&st->mu);
            st->cons = i + 1;
            pthread_cond_broadcast(&st->cv);
            pthread_mutex_unlock(&st->mu);
            stripes_grow(st);
        }
        return (int64_t)n;
    }
}

/* Joins f's streams: f reads on alone from f->off, through its session
 * (which then owes no reply to a stream's READ). */
static void stripes_end(struct tm__sftp_rfile *f)
{
    if (!f->st)
        return;
    stripes_free(f->st);
    f->st = NULL;
    f->off_req = f->off;
    f->qn = 0;
    f->qhead = 0;
    f->tail = 0;
    f->eof = 0;
}

int tm__sftp_open_read(struct tm__sftp_pool *p, const char *path,
                       struct tm__sftp_rfile **out, struct tm__sftp_attr *st,
                       struct tm__sftp_err *e)
{
    struct tm__sftp_rfile *f = calloc(1, sizeof *f);
    struct tm__sftp_attr a;
    int64_t t0, rtt;
    uint32_t id;
    int rc;

    *out = NULL;
    if (!f || !(f->path = strdup(path)) ||
        !(f->q = calloc((size_t)p->read_ahead, sizeof *f->q))) {
        if (f)
            free(f->path);
        free(f);
        return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "open %s: out of memory",
                             path);
    }
    f->pool = p;
    f->qcap = p->read_ahead;
    rc = sess_get(p, &f->s, e);
    if (rc)
        goto fail;
    t0 = tm__now_ns();
    rc = open_handle(f->s, FXP_OPEN, path, FXF_READ, NULL, f->h, &f->hlen, e, "open");
    if (rc)
        goto fail;
    t0 = tm__now_ns() - t0;
    pthread_mutex_lock(&p->mu);
    if (t0 < p->rtt_min_ns)
        p->rtt_min_ns = t0;
    rtt = p->rtt_min_ns;
    pthread_mutex_unlock(&p->mu);
    /* the attributes, the first READ and an FSTAT behind it, in one round
     * trip: a file that one READ holds is read whole, and what fstat will
     * say after the reads known, with no more waiting */
    id = begin(f->s, FXP_FSTAT);
    put_str(f->s, f->h, f->hlen);
    rc = finish(f->s, e, "fstat", path);
    if (!rc)
        rc = rf_send(f, e);
    if (!rc) {
        f->tail_id = begin(f->s, FXP_FSTAT);
        put_str(f->s, f->h, f->hlen);
        rc = finish(f->s, e, "fstat", path);
        f->tail = !rc;
    }
    if (!rc)
        rc = fstat_reply(f->s, id, path, &a, e);
    if (rc) {
        rf_forget(f);
        close_async(f->s, f->h, f->hlen);
        goto fail;
    }
    f->size = a.size;
    if (f->size > f->off_req && f->tail == 1) {
        /* more READs to come: that FSTAT would come before them */
        drop_add(f->s, f->tail_id);
        f->tail = 0;
    }
    if (p->stripe_streams > 1 && a.type == TM_T_FILE && f->size >= p->stripe_min &&
        f->size > f->off_req && (p->stripe_rtt_ns < 0 || rtt >= p->stripe_rtt_ns))
        f->st = stripes_start(f, p->stripe_streams, a.mtime);
    if (st)
        *st = a;
    *out = f;
    return 0;
fail:
    sess_put(p, f->s);
    free(f->q);
    free(f->path);
    free(f);
    return rc;
}

int64_t tm__sftp_read(struct tm__sftp_rfile *f, void *buf, size_t len,
                      struct tm__sftp_err *e)
{
    struct reply r;
    int rc;

    if (f->st) {
        int64_t n = len ? stripes_read(f, buf, len, e) : 0;
        if (n || !len)
            return n;
        /* the stripes are done: on alone (a READ there says EOF, or that
         * the file grew) */
        stripes_end(f);
    }
    if (f->s->broken)
        return tm__sftp_fail(e, TM_ECONNRESET, TM_ERR_RETRY, -1,
                             "read %s: connection lost", f->path);
    for (;;) {
        struct rreq q;
        const unsigned char *data;
        size_t dn;
        uint32_t fx;

        if (f->cur_len) {
            size_t n = len < f->cur_len ? len : f->cur_len;
            memcpy(buf, f->cur, n);
            f->cur += n;
            f->cur_len -= n;
            f->off += n;
            if (!f->cur_len) {
                free(f->cur_own);
                f->cur_own = NULL;
            }
            return (int64_t)n;
        }
        if (!len || f->eof)
            return 0;
        if (!f->qn && f->tail == 1 && f->off_req >= f->size && f->off == f->off_req) {
            /* Every byte up to the size is handed out, and the FSTAT sent
             * behind the last READ says whether the file ended there: no
             * READ to find the end (a round trip per file saved) */
            rc = fstat_reply(f->s, f->tail_id, f->path, &f->tail_a, e);
            if (rc)
                return rc;
            f->tail = 2;
            if (f->tail_a.size <= f->off) {
                f->eof = 1;
                return 0;
            }
            f->tail = -1; /* it grew: read on; fstat asks again */
            f->size = f->tail_a.size;
        }
        /* Keep read_ahead requests out up to the size seen at open, and
         * one past it (it says EOF, or that the file grew). */
        while (!f->eof && f->qn < f->qcap && (f->off_req < f->size || !f->qn)) {
            rc = rf_send(f, e);
            if (rc)
                return rc;
        }
        if (!f->tail && !f->eof && f->off_req >= f->size) {
            /* every READ up to the size is out: an FSTAT behind them */
            f->tail_id = begin(f->s, FXP_FSTAT);
            put_str(f->s, f->h, f->hlen);
            rc = finish(f->s, e, "fstat", f->path);
            if (rc)
                return rc;
            f->tail = 1;
        }
        if (!f->qn)
            return 0;
        q = f->q[f->qhead];
        if (f->s->use_proc && len >= q.len && !stashed(f->s, q.id)) {
            /* the data straight into buf, when it is next on the wire */
            size_t got = 0;
            rc = recv_data_into(f->s, q.id, buf, q.len, &got, e, "read", f->path);
            if (rc < 0)
                return rc;
            if (rc) {
                f->qhead = (f->qhead + 1) % f->qcap;
                f->qn--;
                if (q.off != f->off)
                    return proto_fail(f->s, e, "read", f->path);
                if (got < q.len) {
                    /* a short read, as below: what follows is dropped */
                    int more = f->qn > 0;
                    rc = rf_drain(f, e);
                    if (rc)
                        return rc;
                    if (more && f->tail == 1) {
                        drop_add(f->s, f->tail_id);
                        f->tail = 0;
                    }
                    f->off_req = f->off + got;
                }
                f->off += got;
                if (!got)
                    continue;
                return (int64_t)got;
            }
        }
        rc = wait_reply(f->s, q.id, &r, e, "read", f->path);
        if (rc)
            return rc;
        f->qhead = (f->qhead + 1) % f->qcap;
        f->qn--;
        if (r.type == FXP_DATA) {
            if (get_str(&r, &data, &dn) || dn > q.len || q.off != f->off) {
                reply_release(&r);
                return proto_fail(f->s, e, "read", f->path);
            }
            if (dn < q.len) {
                /* A short read: what follows was asked at the wrong offset
                 * (the end of a file that one READ holds, most often:
                 * nothing follows it then). */
                unsigned char *keep = r.own;
                int more = f->qn > 0;
                r.own = NULL;
                if (!keep && dn) {
                    keep = malloc(dn);
                    if (!keep)
                        return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1,
                                             "read %s: out of memory", f->path);
                    memcpy(keep, data, dn);
                    data = keep;
                }
                rc = rf_drain(f, e);
                if (rc) {
                    free(keep);
                    return rc;
                }
                if (more && f->tail == 1) {
                    /* taken before the READs asked again: not after them */
                    drop_add(f->s, f->tail_id);
                    f->tail = 0;
                }
                f->off_req = f->off + dn;
                f->cur_own = keep;
            } else {
                f->cur_own = r.own;
            }
            f->cur = data;
            f->cur_len = dn;
            if (!dn) {
                free(f->cur_own);
                f->cur_own = NULL;
            }
            continue;
        }
        rc = status_err(f->s, &r, e, "read", f->path, &fx);
        reply_release(&r);
        if (fx == FX_EOF) {
            f->eof = 1;
            rc = rf_drain(f, e);
            if (rc)
                return rc;
            return 0;
        }
        if (!rc)
            rc = proto_fail(f->s, e, "read", f->path);
        return rc;
    }
}

static int do_fstat(struct tm__sftp_sess *s, const unsigned char *h, size_t hlen,
                    const char *path, struct tm__sftp_attr *a,
                    struct tm__sftp_err *e)
{
    struct reply r;
    uint32_t id = begin(s, FXP_FSTAT);
    int rc;
    put_str(s, h, hlen);
    rc = roundtrip(s, id, &r, e, "fstat", path);
    if (rc)
        return rc;
    if (r.type == FXP_ATTRS) {
        rc = get_attrs(&r, a) ? proto_fail(s, e, "fstat", path) : 0;
    } else {
        rc = status_err(s, &r, e, "fstat", path, NULL);
        if (!rc)
            rc = proto_fail(s, e, "fstat", path);
    }
    reply_release(&r);
    return rc;
}

int tm__sftp_fstat(struct tm__sftp_rfile *f, struct tm__sftp_attr *st,
                   struct tm__sftp_err *e)
{
    stripes_end(f); /* the file's session is its own again */
    if (f->s->broken)
        return tm__sftp_fail(e, TM_ECONNRESET, TM_ERR_RETRY, -1,
                             "fstat %s: connection lost", f->path);
    if (f->tail == 1) {
        /* sent behind the READs: what the file is after them */
        f->tail = -1;
        return fstat_reply(f->s, f->tail_id, f->path, st, e);
    }
    if (f->tail == 2) {
        /* its answer, taken at the end of the reads */
        f->tail = -1;
        *st = f->tail_a;
        return 0;
    }
    return do_fstat(f->s, f->h, f->hlen, f->path, st, e);
}

void tm__sftp_close_read(struct tm__sftp_rfile *f)
{
    if (!f)
        return;
    stripes_end(f);
    /* nothing waited for: what is in flight is dropped when it comes */
    rf_forget(f);
    close_async(f->s, f->h, f->hlen);
    sess_put(f->pool, f->s);
    free(f->cur_own);
    free(f->q);
    free(f->path);
    free(f);
}

/* ---- writing ---- */

struct tm__sftp_wfile {
    struct tm__sftp_pool *pool;  /* the owner */
    struct tm__sftp_sess *s;     /* the session holding the handle */
    char *path;                  /* the real name */
    char *tmp;                   /* the temporary's path */
    char *dir;                   /* the folder, for statvfs */
    unsigned char h[MAX_HANDLE]; /* the handle */
    size_t hlen;                 /* its length */
    int open;                    /* the handle is open */
    uint64_t off;                /* bytes sent */
    uint32_t *q;                 /* ids of WRITEs in flight (ring) */
    int qcap, qhead, qn;         /* ring capacity, first, count */
    int failed;                  /* a write failed: the code; only abort */
    struct tm__sftp_err err;     /* that failure */
};

/* A failed WRITE: ENOSPC when the file system is (nearly) full. SFTP v3
 * says only "failure" for a full disk (OpenSSH's sftp-server also for a
 * short write), so statvfs tells, after the fact: when the server has
 * room by then, other writers may have freed it meanwhile (their aborted
 * temporaries) and the failure is retried, not the node failed for good:
 * the retry meets the full disk again (ENOSPC then) or writes. */
static int write_failed(struct tm__sftp_wfile *f, int rc, struct tm__sftp_err *e)
{
    struct tm__sftp_vfs v;
    struct tm__sftp_err e2;
    if (rc == TM_EIO && e && e->fx == FX_FAILURE && !f->s->broken &&
        do_statvfs(f->s, f->dir, &v, &e2) == 0) {
        if (v.bavail * (v.frsize ? v.frsize : 1) < f->pool->chunk_w)
            rc = tm__sftp_fail(e, TM_ENOSPC, TM_ERR_FATAL, FX_FAILURE,
                               "write %s: no space left on the server's file system "
                               "(%llu bytes free)", f->path,
                               (unsigned long long)(v.bavail * v.frsize));
        else
            e->cls = TM_ERR_RETRY;
    }
    f->failed = rc;
    if (e)
        f->err = *e;
    return rc;
}

/* Waits for the oldest WRITE's status; a failure is kept in f. */
static int wf_collect(struct tm__sftp_wfile *f, struct tm__sftp_err *e)
{
    struct tm__sftp_err le;
    struct tm__sftp_err *ep = e ? e : &le;
    struct reply r;
    uint32_t id = f->q[f->qhead];
    int rc;
    f->qhead = (f->qhead + 1) % f->qcap;
    f->qn--;
    rc = wait_reply(f->s, id, &r, ep, "write", f->path);
    if (!rc) {
        rc = status_err(f->s, &r, ep, "write", f->path, NULL);
        reply_release(&r);
    }
    if (rc && !f->failed)
        rc = write_failed(f, rc, ep);
    return rc;
}

/* A temporary whose session died: removed through another session (a
 * new connection) when it is a regular file. That session may die too (a
 * server that ends sessions after N requests ends a pooled one here as
 * well): a few sessions are tried. Returns 1 when it is gone (or is no
 * file), 0 when the server could not be reached. */
static int remove_orphan_now(struct tm__sftp_pool *p, const char *tmp)
{
    struct tm__sftp_sess *s;
    struct tm__sftp_attr a;
    int tries, broken = 1;
    for (tries = 0; tries < 3 && broken; tries++) {
        if (sess_get(p, &s, NULL) != 0)
            return 0;
        if (do_stat(s, FXP_LSTAT, tmp, &a, NULL) == 0 && a.type == TM_T_FILE)
            do_remove(s, tmp, NULL);
        broken = s->broken;
        sess_put(p, s);
    }
    return !broken;
}

/* As remove_orphan_now; a temporary it could not remove is kept in the
 * pool's list, tried again when the pool is freed (the copy run has ended
 * and the server may be back). If the server still cannot be reached
 * then, it stays: verify reports it as a leftover. */
static void remove_orphan(struct tm__sftp_pool *p, const char *tmp)
{
    if (remove_orphan_now(p, tmp))
        return;
    pthread_mutex_lock(&p->mu);
    (void)strv_push(&p->orphans, &p->n_orphans, tmp); /* ENOMEM: as unreachable */
    pthread_mutex_unlock(&p->mu);
}

/* At the pool's free: the temporaries remove_orphan could not remove,
 * once more each, after the pool's reconnect backoff (until one fails). */
static void orphans_retry(struct tm__sftp_pool *p)
{
    size_t i;
    for (i = 0; i < p->n_orphans; i++) {
        int64_t wait = (p->next_connect_ns - tm__now_ns()) / 1000000;
        if (wait > 0)
            tm__sleep_ms(wait);
        if (!remove_orphan_now(p, p->orphans[i]))
            break; /* still unreachable: no wait for each of the others */
    }
    strv_free(p->orphans, p->n_orphans);
    p->orphans = NULL;
    p->n_orphans = 0;
}

int tm__sftp_open_write(struct tm__sftp_pool *p, const char *path,
                        const char *const *tmp_names, int n_names,
                        struct tm__sftp_wfile **out, struct tm__sftp_err *e)
{
    struct tm__sftp_wfile *f = calloc(1, sizeof *f);
    struct tm__sftp_attr a;
    const char *slash = strrchr(path, '/');
    int rc = 0, i;

    *out = NULL;
    if (!slash || !slash[1] || n_names < 1) {
        free(f);
        return tm__sftp_fail(e, TM_EINVAL, TM_ERR_NODE, -1,
                             "open_write %s: not a file path", path);
    }
    if (!f || !(f->q = calloc((size_t)p->write_behind, sizeof *f->q)))
        goto oom;
    f->pool = p;
    f->qcap = p->write_behind;
    f->path = strdup(path);
    f->dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
    if (!f->path || !f->dir)
        goto oom;
    rc = sess_get(p, &f->s, e);
    if (rc)
        goto fail;
    memset(&a, 0, sizeof a);
    a.flags = TM_SFTP_A_PERM;
    a.mode = 0600;
    /* CREAT|EXCL: whatever is at a name (a file, a link to a file
     * elsewhere, a symlink, a FIFO, a folder) is never opened, truncated,
     * removed or followed; a taken name moves to the next */
    for (i = 0; i < n_names; i++) {
        struct tm__buf b = TM__BUF_INIT;
        struct tm__sftp_attr old;
        struct tm__sftp_err e2;
        free(f->tmp);
        if (tm__buf_add(&b, path, (size_t)(slash - path + 1)) ||
            tm__buf_adds(&b, tmp_names[i])) {
            tm__buf_release(&b);
            f->tmp = NULL;
            goto oom;
        }
        f->tmp = tm__buf_detach(&b, NULL);
        rc = open_handle(f->s, FXP_OPEN, f->tmp, FXF_WRITE | FXF_CREAT | FXF_EXCL, &a,
                         f->h, &f->hlen, e, "create");
        if (rc != TM_EIO || !e || e->fx != FX_FAILURE || f->s->broken)
            break;
        /* SFTP v3 has no "exists" status: an lstat tells a taken name */
        if (do_stat(f->s, FXP_LSTAT, f->tmp, &old, &e2) != 0)
            break;
        rc = tm__sftp_fail(e, TM_EEXIST, TM_ERR_NODE, FX_FAILURE,
                           "create a temporary file beside %s: the %d names it may "
                           "take are taken", path, n_names);
    }
    if (rc)
        goto fail;
    f->open = 1;
    *out = f;
    return 0;
oom:
    rc = tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "open_write %s: out of memory",
                       path);
fail:
    if (f) {
        int broken = f->s && f->s->broken;
        sess_put(p, f->s);
        /* the connection died with the OPEN in flight: the server may have
         * made the file */
        if (broken && f->tmp)
            remove_orphan(p, f->tmp);
        free(f->q);
        free(f->tmp);
        free(f->path);
        free(f->dir);
        free(f);
    }
    return rc;
}

const char *tm__sftp_wfile_tmp(const struct tm__sftp_wfile *f)
{
    return f->tmp;
}

/* Makes room for one more WRITE in flight: when write_behind are out, the
 * oldest replies, a batch's worth at once (the next WRITEs then queue up
 * to TX_FLUSH_BULK before they go out; one reply at a time would send
 * them one by one). */
static int wf_room(struct tm__sftp_wfile *f, struct tm__sftp_err *e)
{
    int want = f->qcap - (int)(TX_FLUSH_BULK / f->pool->chunk_w);
    if (f->qn < f->qcap)
        return 0;
    if (want < f->qcap / 2)
        want = f->qcap / 2;
    do {
        int rc = wf_collect(f, e);
        if (rc)
            return rc;
    } while (f->qn > want);
    return 0;
}

int64_t tm__sftp_write_fd(struct tm__sftp_wfile *f, int fd, size_t len, int *fd_err,
                          struct tm__sftp_err *e)
{
    size_t left = len, taken = 0;
    int rc;

    *fd_err = 0;
    if (f->failed) {
        if (e)
            *e = f->err;
        return f->failed;
    }
    if (!f->s->use_proc)
        return tm__sftp_fail(e, TM_ENOTSUP, TM_ERR_FATAL, -1,
                             "write %s: not over the openssh transport", f->path);
    while (left) {
        uint32_t n = left < f->pool->chunk_w ? (uint32_t)left : f->pool->chunk_w;
        struct tm__sftp_sess *s = f->s;
        size_t got = 0;
        ssize_t w;
        int ferr = 0;
        rc = wf_room(f, e);
        if (rc)
            return rc;
        f->q[(f->qhead + f->qn) % f->qcap] = begin(s, FXP_WRITE);
        put_str(s, f->h, f->hlen);
        put_u64(s, f->off);
        put_u32(s, n);
        /* the header with what is queued, then the data from fd */
        rc = seal(s, n, e, "write", f->path);
        if (!rc && s->broken)
            rc = tm__sftp_fail(e, TM_ECONNRESET, TM_ERR_RETRY, -1,
                               "write %s: connection lost", f->path);
        if (!rc)
            rc = flush(s, e, "write", f->path);
        if (!rc) {
            w = tm__sftp_proc_sendfile(&s->pr, fd, n, &ferr, s->in + s->in_len,
                                       s->in_alloc - s->in_len, &got, s->pool->timeout_ms);
            s->in_len += got;
            if (w < 0)
                rc = proc_fail(s, (int)w, e, "write", f->path);
            else
                taken += (size_t)w;
        }
        if (rc)
            return write_failed(f, rc, e);
        f->qn++;
        f->off += n;
        if (ferr) {
            /* the WRITE was made up with zeros: the temporary is only
             * to be aborted; fd's end is a short count (the caller sees
             * a file that changed), its failure the caller's */
            f->failed = ferr == TM_ECHANGED ? TM_EIO : ferr;
            tm__sftp_fail(&f->err, f->failed, TM_ERR_NODE, -1,
                          "write %s: the source ended or failed", f->path);
            if (ferr == TM_ECHANGED)
                return (int64_t)taken;
            *fd_err = 1;
            return ferr;
        }
        left -= n;
    }
    return (int64_t)len;
}

int64_t tm__sftp_write(struct tm__sftp_wfile *f, const void *buf, size_t len,
                       struct tm__sftp_err *e)
{
    const unsigned char *p = buf;
    size_t left = len;
    int rc;

    if (f->failed) {
        if (e)
            *e = f->err;
        return f->failed;
    }
    while (left) {
        uint32_t n = left < f->pool->chunk_w ? (uint32_t)left : f->pool->chunk_w;
        rc = wf_room(f, e);
        if (rc)
            return rc;
        f->q[(f->qhead + f->qn) % f->qcap] = begin(f->s, FXP_WRITE);
        put_str(f->s, f->h, f->hlen);
        put_u64(f->s, f->off);
        if (f->s->use_proc && n >= TX_FLUSH) {
            /* the data goes from buf to the socket, not through the queue:
             * one copy of every byte less (a smaller WRITE, a file's tail,
             * is queued and goes with the requests that follow it) */
            put_u32(f->s, n);
            rc = finish_data(f->s, p, n, e, "write", f->path);
        } else {
            put_str(f->s, p, n);
            f->s->tx_flush = TX_FLUSH_BULK;
            rc = finish(f->s, e, "write", f->path);
            f->s->tx_flush = TX_FLUSH;
        }
        if (rc)
            return write_failed(f, rc, e);
        f->qn++;
        f->off += n;
        p += n;
        left -= n;
    }
    return (int64_t)len;
}

/* Closes the handle (if open), removes the temporary, frees f. */
static void wf_free(struct tm__sftp_wfile *f, int remove_tmp)
{
    struct tm__sftp_err e2;
    int broken;
    while (f->qn && !f->s->broken)
        wf_collect(f, &e2);
    if (f->open && !f->s->broken)
        close_handle(f->s, f->h, f->hlen, NULL, f->tmp);
    if (remove_tmp && !f->s->broken)
        do_remove(f->s, f->tmp, NULL);
    broken = f->s->broken;
    sess_put(f->pool, f->s);
    if (remove_tmp && broken)
        remove_orphan(f->pool, f->tmp);
    free(f->q);
    free(f->tmp);
    free(f->path);
    free(f->dir);
    free(f);
}

/* The status reply of request id, sent earlier: 0 or the error (kept in
 * *first when it is the first one). */
static int collect_status(struct tm__sftp_sess *s, uint32_t id, const char *op,
                          const char *path, int rc, struct tm__sftp_err *first)
{
    struct tm__sftp_err le;
    struct reply r;
    int got;
    if (s->broken)
        return rc;
    got = wait_reply(s, id, &r, &le, op, path);
    if (!got) {
        got = status_err(s, &r, &le, op, path, NULL);
        reply_release(&r);
    }
    if (got && !rc) {
        *first = le;
        return got;
    }
    return rc;
}

int tm__sftp_commit(struct tm__sftp_wfile *f, uint32_t mode, int64_t mtime,
                    int fsync, unsigned flags, struct tm__sftp_err *e)
{
    static const char *const ops[3] = { "setstat", "fsync", "close" };
    struct tm__sftp_err first;
    struct tm__sftp_attr a;
    uint32_t ids[3];
    int sent[3] = { 0, 0, 0 };
    int rc = 0, i;

    memset(&first, 0, sizeof first);
    if (f->failed) {
        rc = f->failed;
        first = f->err;
        goto fail;
    }
    /* The mode and mtime, the fsync and the close go out behind the
     * writes still in flight, without waiting: requests on one handle are
     * processed in order (the draft says so, OpenSSH does all in order),
     * so they apply once every byte is written, and the commit costs one
     * round trip for all of them, plus the rename. The rename waits for
     * every reply: a file that failed in any way is never renamed. */
    memset(&a, 0, sizeof a);
    a.flags = TM_SFTP_A_PERM | TM_SFTP_A_TIME;
    a.mode = mode;
    a.atime = a.mtime = mtime;
    ids[0] = begin(f->s, FXP_FSETSTAT);
    put_str(f->s, f->h, f->hlen);
    put_attrs(f->s, &a);
    rc = finish(f->s, &first, ops[0], f->tmp);
    sent[0] = !rc;
    if (!rc && fsync && (f->pool->ext & TM_SFTP_EXT_FSYNC)) {
        ids[1] = begin(f->s, FXP_EXTENDED);
        put_cstr(f->s, "fsync@openssh.com");
        put_str(f->s, f->h, f->hlen);
        rc = finish(f->s, &first, ops[1], f->tmp);
        sent[1] = !rc;
    }
    if (!rc) {
        ids[2] = begin(f->s, FXP_CLOSE);
        put_str(f->s, f->h, f->hlen);
        rc = finish(f->s, &first, ops[2], f->tmp);
        sent[2] = !rc;
        if (!rc)
            f->open = 0;
    }
    /* the writes' replies first (they come first), then the others'; a
     * reply is waited for even after a failure, to keep the session in
     * step */
    while (f->qn && !f->s->broken) {
        struct tm__sftp_err le;
        int w = wf_collect(f, &le);
        if (w && !rc) {
            rc = w;
            first = le;
        }
    }
    if (!rc && f->failed) {
        rc = f->failed;
        first = f->err;
    }
    for (i = 0; i < 3; i++)
        if (sent[i])
            rc = collect_status(f->s, ids[i], ops[i], f->tmp, rc, &first);
    if (!rc && f->s->broken)
        rc = tm__sftp_fail(&first, TM_ECONNRESET, TM_ERR_RETRY, -1,
                           "commit %s: connection lost", f->path);
    if (!rc)
        rc = do_rename(f->s, f->tmp, f->path, flags, &first);
    if (rc)
        goto fail;
    wf_free(f, 0);
    return 0;
fail:
    if (e)
        *e = first;
    wf_free(f, 1);
    return rc;
}

void tm__sftp_abort(struct tm__sftp_wfile *f)
{
    if (f)
        wf_free(f, 1);
}
