/*
 * log.c - the log service of log.h: a bounded queue of records and the one
 * logger thread that drains it into the sink (the database side) and into
 * UDP datagrams (the listener side).
 *
 * The queue is a ring of bytes holding variable-length records (a header,
 * then the queue name, the path and the message, each NUL-terminated), at
 * most `capacity` records and at most ring_size bytes, so that a short
 * message costs ~100 bytes and not the 5 KiB a fixed slot for the longest
 * path would take. Producers format the message on their own stack, then
 * hold the mutex only to copy the record in; a record that does not fit is
 * counted in `dropped` and forgotten. The logger thread reads the record at
 * rpos without the mutex (no producer writes below rpos + used bytes), hands
 * it on, then frees its bytes under the mutex.
 *
 * Threads: tm__log(), tm__log_enabled(), tm__logger_dropped() and
 * tm__logger_send_errors() from any thread; logger_main() on the logger
 * thread, which alone calls the sink and sends. tm__logger_start() and
 * tm__logger_stop() on the owner's thread.
 * Lock order: lg->mu only; never held while calling the sink or sending.
 */
#include "log/log.h"

#include "treemig.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

const char *const tm__level_names[TM_LEVEL_COUNT] = {
    "trace", "debug", "info", "warning", "error", "critical",
};

#define DEFAULT_CAPACITY 4096
#define MAX_CAPACITY (1u << 20)
#define RING_BYTES_PER_RECORD ((size_t)512) /* ring size = capacity x this ... */
#define RING_MIN_BYTES ((size_t)64 * 1024)  /* ... but at least this */
#define NO_STR UINT32_MAX          /* a string length meaning NULL */
#define LEVEL_PAD (-1)             /* a header that pads to the ring's end */
#define REPORT_EVERY_NS 1000000000LL /* drops reported at least this often
                                        while the queue stays full */

/* A record in the ring; its strings follow it. 8-byte aligned. */
struct rec {
    uint32_t size;    /* bytes of the record, header included, multiple of 8 */
    int32_t level;    /* enum tm__level, or LEVEL_PAD */
    int64_t time;     /* ns since the epoch */
    int64_t node_id;  /* the node, or 0 */
    uint32_t qlen;    /* queue name length, or NO_STR */
    uint32_t plen;    /* path length, or NO_STR */
    uint32_t mlen;    /* message length */
    uint32_t flags;   /* 1: a milestone (TM__LOG_MILESTONE); keeps the size
                         a multiple of 8 */
};

struct tm__logger {
    pthread_t thread;          /* the logger thread */
    pthread_mutex_t mu;        /* guards the ring and the counters below */
    pthread_cond_t cv;         /* a record was queued, or stopping */
    unsigned char *ring;       /* the record bytes */
    size_t ring_size;          /* bytes, a multiple of 8 */
    uint64_t wpos;             /* bytes reserved since the ring was empty */
    uint64_t rpos;             /* bytes freed since then; used = wpos - rpos */
    size_t count;              /* records queued, the one being handled too */
    size_t capacity;           /* at most this many records */
    int stopping;              /* tm__logger_stop() was called */
    int closed;                /* the thread is done: every record drops */
    int64_t dropped;           /* records dropped so far */
    int64_t reported;          /* dropped records already reported */
    _Atomic int64_t send_errors; /* datagrams that could not be sent */
    /* set at start, read-only afterwards */
    int db_level;              /* records >= this go to sink */
    int udp_level;             /* records >= this go out by UDP */
    int min_level;             /* the smaller of the two */
    tm__log_sink sink;         /* database side, may be NULL */
    void *sink_ctx;            /* its context */
    int sock;                  /* UDP socket, or -1 when UDP is off */
    struct sockaddr_storage addr; /* the listener */
    socklen_t addr_len;        /* its length */
    char *migration;           /* migration id for the datagrams, or NULL */
    char host[256];            /* this machine's name, for the datagrams */
    long pid;                  /* this process, for the datagrams */
    /* logger thread only */
    struct tm__buf json;       /* the datagram being built */
    int64_t last_report;       /* monotonic ns of the last drop report */
};

int tm__level_parse(const char *s)
{
    int i;
    if (!s)
        return -1;
    for (i = 0; i < TM_LEVEL_COUNT; i++)
        if (!strcasecmp(s, tm__level_names[i]))
            return i;
    return -1;
}

/* ---- addresses ---- */

static int parse_port(const char *s, unsigned *port)
{
    unsigned v = 0;
    size_t n = 0;
    for (; s[n]; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= 5)
            return TM_EINVAL;
        v = v * 10 + (unsigned)(s[n] - '0');
    }
    if (n == 0 || v > 65535)
        return TM_EINVAL;
    *port = v;
    return 0;
}

int tm__log_parse_addr(const char *s, struct sockaddr_storage *out,
                       unsigned *len, int *loopback)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *h, *port_s;
    size_t hlen;
    unsigned port;
    int v6 = 0, lo;

    if (!s || !out)
        return TM_EINVAL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return TM_EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        port_s = close + 2;
        v6 = 1;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon)
            return TM_EINVAL;
        h = s;
        hlen = (size_t)(colon - s);
        if (memchr(h, ':', hlen)) /* IPv6 without brackets: ambiguous */
            return TM_EINVAL;
        port_s = colon + 1;
    }
    if (hlen == 0 || hlen >= sizeof host || parse_port(port_s, &port))
        return TM_EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memset(out, 0, sizeof *out);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return TM_EINVAL;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        lo = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
             (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127);
        if (len)
            *len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)out;
        if (!strcasecmp(host, "localhost"))
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return TM_EINVAL;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        lo = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
        if (len)
            *len = sizeof *a;
    }
    if (loopback)
        *loopback = lo;
    return 0;
}

void tm__log_format_addr(const struct sockaddr_storage *a, char *out, size_t size)
{
    char host[INET6_ADDRSTRLEN];
    if (!size)
        return;
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;
        if (!inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host))
            host[0] = '\0';
        snprintf(out, size, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else if (a->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)a;
        if (!inet_ntop(AF_INET, &in->sin_addr, host, sizeof host))
            host[0] = '\0';
        snprintf(out, size, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else {
        snprintf(out, size, "(unknown address family %d)", (int)a->ss_family);
    }
}

/* ---- the ring (lg->mu held) ---- */

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* need bytes contiguous, or NULL when they do not fit. */
static unsigned char *ring_reserve(struct tm__logger *lg, size_t need)
{
    size_t off = (size_t)(lg->wpos % lg->ring_size);
    size_t tail_room = lg->ring_size - off;
    size_t free_bytes = lg->ring_size - (size_t)(lg->wpos - lg->rpos);

    if (need <= tail_room) {
        if (need > free_bytes)
            return NULL;
        lg->wpos += need;
        return lg->ring + off;
    }
    /* wrap: the end of the ring is wasted until the reader passes it */
    if (tail_room + need > free_bytes)
        return NULL;
    if (tail_room >= sizeof(struct rec)) {
        struct rec *pad = (struct rec *)(void *)(lg->ring + off);
        pad->size = (uint32_t)tail_room;
        pad->level = LEVEL_PAD;
    }
    lg->wpos += tail_room + need;
    return lg->ring;
}

/* The oldest record (count > 0); skips padding. */
static const struct rec *ring_peek(struct tm__logger *lg)
{
    for (;;) {
        size_t off = (size_t)(lg->rpos % lg->ring_size);
        size_t tail_room = lg->ring_size - off;
        const struct rec *r = (const struct rec *)(void *)(lg->ring + off);
        if (tail_room < sizeof *r) {
            lg->rpos += tail_room;
        } else if (r->level == LEVEL_PAD) {
            lg->rpos += r->size;
        } else {
            return r;
        }
    }
}

/* How many bytes of s (at least max - 1 long) to keep so that they and
 * "..." fit in max - 1 bytes, without splitting a UTF-8 sequence. */
static size_t cut_at(const char *s, size_t max)
{
    size_t n = max - 4;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80 && max - 4 - n < 3)
        n--;
    return n;
}

static size_t str_len(const char *s, size_t max)
{
    const char *nul = memchr(s, '\0', max);
    return nul ? (size_t)(nul - s) : max;
}

void tm__log(struct tm__logger *lg, int level, const char *queue, int64_t node_id,
             const char *path, const char *fmt, ...)
{
    char msg[TM__LOG_MSG_MAX];
    size_t mlen, qlen = 0, plen = 0, pkeep = 0, need;
    unsigned char *p;
    struct rec h;
    va_list ap;
    int n;

    int milestone;

    if (!lg)
        return;
    milestone = level >= 0 && (level & TM__LOG_MILESTONE) && lg->sock >= 0;
    if (level >= 0)
        level &= ~TM__LOG_MILESTONE;
    if (level < 0)
        level = TM_TRACE;
    if (level >= TM_LEVEL_COUNT)
        level = TM_CRITICAL;
    if (level < lg->min_level && !milestone)
        return;
    memset(&h, 0, sizeof h);
    h.flags = milestone ? 1 : 0;
    h.time = tm__wall_ns();
    h.level = level;
    h.node_id = node_id;
    h.qlen = NO_STR;
    h.plen = NO_STR;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = snprintf(msg, sizeof msg, "(log message could not be formatted: %s)", fmt);
    if (n < 0) {
        msg[0] = '\0';
        n = 0;
    }
    mlen = (size_t)n;
    if (mlen >= sizeof msg) {
        mlen = cut_at(msg, sizeof msg);
        memcpy(msg + mlen, "...", 4);
        mlen += 3;
    }
    h.mlen = (uint32_t)mlen;
    need = sizeof h + mlen + 1;
    if (queue) {
        /* a queue name is short: cut without a marker */
        qlen = str_len(queue, TM__LOG_QUEUE_MAX - 1);
        h.qlen = (uint32_t)qlen;
        need += qlen + 1;
    }
    if (path) {
        /* longer than any path worth logging: keep the start and "..." */
        plen = pkeep = str_len(path, TM__LOG_PATH_MAX);
        if (plen >= TM__LOG_PATH_MAX) {
            pkeep = cut_at(path, TM__LOG_PATH_MAX);
            plen = pkeep + 3;
        }
        h.plen = (uint32_t)plen;
        need += plen + 1;
    }
    need = align8(need);
    h.size = (uint32_t)need;

    pthread_mutex_lock(&lg->mu);
    if (lg->closed || lg->count >= lg->capacity || !(p = ring_reserve(lg, need))) {
        lg->dropped++;
        pthread_mutex_unlock(&lg->mu);
        return;
    }
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    if (queue) {
        memcpy(p, queue, qlen);
        p[qlen] = '\0';
        p += qlen + 1;
    }
    if (path) {
        memcpy(p, path, pkeep);
        memcpy(p + pkeep, "...", plen - pkeep); /* nothing when not cut */
        p[plen] = '\0';
        p += plen + 1;
    }
    memcpy(p, msg, mlen + 1);
    if (lg->count++ == 0)
        pthread_cond_signal(&lg->cv);
    pthread_mutex_unlock(&lg->mu);
}

int tm__log_enabled(const struct tm__logger *lg, int level)
{
    return lg && level >= lg->min_level;
}

int64_t tm__logger_dropped(struct tm__logger *lg)
{
    int64_t n;
    if (!lg)
        return 0;
    pthread_mutex_lock(&lg->mu);
    n = lg->dropped;
    pthread_mutex_unlock(&lg->mu);
    return n;
}

int64_t tm__logger_send_errors(struct tm__logger *lg)
{
    return lg ? atomic_load(&lg->send_errors) : 0;
}

/* ---- the logger thread ---- */

static int add_json_or_null(struct tm__buf *b, const char *s)
{
    return s ? tm__buf_add_json(b, s, strlen(s)) : tm__buf_adds(b, "null");
}

/* One datagram: a JSON object on one line, without a newline. */
static int record_json(struct tm__buf *b, const struct tm__log_record *r,
                       const char *migration, const char *host, long pid)
{
    int rc = tm__buf_addf(b, "{\"time\":%" PRId64 ",\"level\":\"%s\",\"queue\":",
                          r->time, tm__level_names[r->level]);
    if (!rc)
        rc = add_json_or_null(b, r->queue);
    if (!rc)
        rc = r->node_id ? tm__buf_addf(b, ",\"node_id\":%" PRId64 ",\"path\":",
                                       r->node_id)
                        : tm__buf_adds(b, ",\"node_id\":null,\"path\":");
    if (!rc)
        rc = add_json_or_null(b, r->path);
    if (!rc)
        rc = tm__buf_adds(b, ",\"message\":");
    if (!rc)
        rc = add_json_or_null(b, r->message);
    if (!rc)
        rc = tm__buf_adds(b, ",\"migration\":");
    if (!rc)
        rc = add_json_or_null(b, migration);
    /* who sent it: two migrations on one machine, or one machine's from
     * another's, are told apart by the listener */
    if (!rc)
        rc = tm__buf_adds(b, ",\"host\":");
    if (!rc)
        rc = add_json_or_null(b, host && *host ? host : NULL);
    if (!rc)
        rc = tm__buf_addf(b, ",\"pid\":%ld}", pid);
    return rc;
}

static void send_record(struct tm__logger *lg, const struct tm__log_record *r)
{
    ssize_t n;
    tm__buf_reset(&lg->json);
    if (record_json(&lg->json, r, lg->migration, lg->host, lg->pid)) {
        atomic_fetch_add(&lg->send_errors, 1);
        return;
    }
    /* never blocks: a full socket buffer is a lost datagram */
    n = sendto(lg->sock, lg->json.buf, lg->json.len, MSG_DONTWAIT | MSG_NOSIGNAL,
               (const struct sockaddr *)&lg->addr, lg->addr_len);
    if (n < 0 || (size_t)n != lg->json.len)
        atomic_fetch_add(&lg->send_errors, 1);
}

static void deliver(struct tm__logger *lg, const struct tm__log_record *r,
                    int milestone)
{
    if (lg->sink && r->level >= lg->db_level)
        lg->sink(lg->sink_ctx, r);
    if (lg->sock >= 0 && (r->level >= lg->udp_level || milestone))
        send_record(lg, r);
}

static void handle(struct tm__logger *lg, const struct rec *h)
{
    const char *text = (const char *)(h + 1);
    struct tm__log_record r;
    r.time = h->time;
    r.level = h->level;
    r.node_id = h->node_id;
    r.queue = NULL;
    r.path = NULL;
    if (h->qlen != NO_STR) {
        r.queue = text;
        text += h->qlen + 1;
    }
    if (h->plen != NO_STR) {
        r.path = text;
        text += h->plen + 1;
    }
    r.message = text;
    deliver(lg, &r, h->flags & 1);
}

static void report_drops(struct tm__logger *lg, int64_t n)
{
    char msg[64];
    struct tm__log_record r;
    snprintf(msg, sizeof msg, "%" PRId64 " log records dropped", n);
    r.time = tm__wall_ns();
    r.level = TM_WARNING;
    r.queue = "log";
    r.node_id = 0;
    r.path = NULL;
    r.message = msg;
    deliver(lg, &r, 0);
}

/* Reports the drops not reported yet once the queue has room again (at most
 * half full), or every REPORT_EVERY_NS while it stays full. lg->mu held;
 * released during the report. */
static void maybe_report_drops(struct tm__logger *lg)
{
    int64_t n = lg->dropped - lg->reported, now;
    if (n <= 0)
        return;
    now = tm__now_ns();
    if ((lg->count > lg->capacity / 2 || lg->wpos - lg->rpos > lg->ring_size / 2) &&
        now - lg->last_report < REPORT_EVERY_NS)
        return;
    lg->reported += n;
    lg->last_report = now;
    pthread_mutex_unlock(&lg->mu);
    report_drops(lg, n);
    pthread_mutex_lock(&lg->mu);
}

static void *logger_main(void *arg)
{
    struct tm__logger *lg = arg;
    int64_t n;

    pthread_mutex_lock(&lg->mu);
    for (;;) {
        const struct rec *h;
        if (lg->count == 0) {
            maybe_report_drops(lg);
            if (lg->count)
                continue;
            if (lg->stopping)
                break;
            pthread_cond_wait(&lg->cv, &lg->mu);
            continue;
        }
        h = ring_peek(lg);
        pthread_mutex_unlock(&lg->mu);
        handle(lg, h);
        pthread_mutex_lock(&lg->mu);
        lg->rpos += h->size;
        if (--lg->count == 0)
            lg->rpos = lg->wpos = 0; /* start again at the ring's start */
        maybe_report_drops(lg);
    }
    /* from now on tm__log() drops; report what was dropped up to here */
    lg->closed = 1;
    n = lg->dropped - lg->reported;
    lg->reported = lg->dropped;
    pthread_mutex_unlock(&lg->mu);
    if (n > 0)
        report_drops(lg, n);
    return NULL;
}

/* ---- start and stop ---- */

static int fail(struct tm__buf *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct tm__buf *err, int rc, const char *fmt, ...)
{
    va_list ap;
    if (err) {
        tm__buf_reset(err);
        va_start(ap, fmt);
        tm__buf_vaddf(err, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static void logger_free(struct tm__logger *lg)
{
    if (lg->sock >= 0)
        close(lg->sock);
    free(lg->ring);
    free(lg->migration);
    tm__buf_release(&lg->json);
    free(lg);
}

static unsigned addr_port(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
    return ntohs(((const struct sockaddr_in *)a)->sin_port);
}

static int open_udp(struct tm__logger *lg, const struct tm__log_cfg *cfg,
                    struct tm__buf *err)
{
    const char *addr = cfg->udp_addr ? cfg->udp_addr : TM__LOG_DEFAULT_ADDR;
    unsigned len;
    int loopback;

    if (tm__log_parse_addr(addr, &lg->addr, &len, &loopback))
        return fail(err, TM_EINVAL, "log address '%s': expected HOST:PORT with a "
                    "numeric IPv4 address, 'localhost' or [IPv6]", addr);
    if (addr_port(&lg->addr) == 0)
        return fail(err, TM_EINVAL, "log address '%s': port 0", addr);
    if (!loopback && !cfg->allow_public)
        return fail(err, TM_EINVAL, "log address '%s' is not a loopback address: "
                    "log records would leave this machine; allow it explicitly "
                    "to do so", addr);
    lg->addr_len = (socklen_t)len;
    if (cfg->udp_level >= TM_LEVEL_COUNT)
        return 0;
    lg->sock = socket(lg->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lg->sock < 0) {
        int e = errno;
        return fail(err, tm__from_errno(e), "cannot open a UDP socket for the log "
                    "listener %s (errno %d)", addr, e);
    }
    return 0;
}

int tm__logger_start(struct tm__logger **out, const struct tm__log_cfg *cfg,
                     struct tm__buf *err)
{
    struct tm__logger *lg;
    sigset_t all, old;
    size_t cap;
    int rc;

    *out = NULL;
    if (cfg->db_level < 0 || cfg->db_level > TM_LEVEL_COUNT ||
        cfg->udp_level < 0 || cfg->udp_level > TM_LEVEL_COUNT)
        return fail(err, TM_EINVAL, "log level out of range");
    cap = cfg->capacity ? cfg->capacity : DEFAULT_CAPACITY;
    if (cap > MAX_CAPACITY)
        return fail(err, TM_EINVAL, "log queue capacity %zu is above %u", cap,
                    MAX_CAPACITY);
    lg = calloc(1, sizeof *lg);
    if (!lg)
        return fail(err, TM_ENOMEM, "out of memory starting the logger");
    lg->sock = -1;
    tm__buf_init(&lg->json);
    if (gethostname(lg->host, sizeof lg->host) != 0)
        lg->host[0] = '\0';
    lg->host[sizeof lg->host - 1] = '\0';
    lg->pid = (long)getpid();
    lg->capacity = cap;
    lg->db_level = cfg->sink ? cfg->db_level : TM_LEVEL_COUNT;
    lg->udp_level = cfg->udp_level;
    lg->min_level = lg->db_level < lg->udp_level ? lg->db_level : lg->udp_level;
    lg->sink = cfg->sink;
    lg->sink_ctx = cfg->sink_ctx;
    atomic_init(&lg->send_errors, 0);
    if (cfg->udp_level < TM_LEVEL_COUNT || cfg->udp_addr) {
        rc = open_udp(lg, cfg, err);
        if (rc)
            goto out_free;
    }
    if (lg->sock < 0) {
        lg->udp_level = TM_LEVEL_COUNT;
        lg->min_level = lg->db_level;
    }
    lg->ring_size = align8(cap * RING_BYTES_PER_RECORD);
    if (lg->ring_size < RING_MIN_BYTES)
        lg->ring_size = RING_MIN_BYTES;
    lg->ring = malloc(lg->ring_size);
    if (!lg->ring || (cfg->migration && !(lg->migration = strdup(cfg->migration)))) {
        rc = fail(err, TM_ENOMEM, "out of memory starting the logger");
        goto out_free;
    }
    rc = -pthread_mutex_init(&lg->mu, NULL);
    if (rc) {
        fail(err, rc, "cannot create the logger's mutex");
        goto out_free;
    }
    rc = -pthread_cond_init(&lg->cv, NULL);
    if (rc) {
        fail(err, rc, "cannot create the logger's condition variable");
        goto out_mutex;
    }
    /* signals go to the other threads, never to the logger */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&lg->thread, NULL, logger_main, lg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        fail(err, rc, "cannot start the logger thread");
        goto out_cond;
    }
    *out = lg;
    return 0;

out_cond:
    pthread_cond_destroy(&lg->cv);
out_mutex:
    pthread_mutex_destroy(&lg->mu);
out_free:
    logger_free(lg);
    return rc;
}

void tm__logger_stop(struct tm__logger *lg)
{
    if (!lg)
        return;
    pthread_mutex_lock(&lg->mu);
    lg->stopping = 1;
    pthread_cond_signal(&lg->cv);
    pthread_mutex_unlock(&lg->mu);
    pthread_join(lg->thread, NULL);
    pthread_cond_destroy(&lg->cv);
    pthread_mutex_destroy(&lg->mu);
    logger_free(lg);
}
