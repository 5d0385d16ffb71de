/*
 * log.h - the log service: records with a level and the entity they
 * concern go, without ever blocking the caller, through a bounded queue to
 * one logger thread, which sends those at or above the UDP threshold as one
 * JSON datagram each to a listener, and hands those at or above the
 * database threshold to a callback (the engine passes them to the writer,
 * which stores them in the `logs` table). When the queue is full a record
 * is dropped and counted; the logger reports the count as a record of its
 * own once it can.
 *
 * Threads: tm__log() from any thread; the callback runs on the logger
 * thread. Lock order: the logger's mutex is never held while calling the
 * callback or sending.
 */
#ifndef TM_LOG_H
#define TM_LOG_H

#include <stddef.h>
#include <stdint.h>

/* relative, so that cli/listen.c can include this header too */
#include "../util/buf.h"

enum tm__level { TM_TRACE = 0, TM_DEBUG, TM_INFO, TM_WARNING, TM_ERROR,
                 TM_CRITICAL, TM_LEVEL_COUNT };

extern const char *const tm__level_names[TM_LEVEL_COUNT];
/* The level named s ("trace" .. "critical"), or -1. */
int tm__level_parse(const char *s);

/* One record as the callback sees it; strings valid during the call. */
struct tm__log_record {
    int64_t time;        /* ns since the epoch */
    int level;           /* enum tm__level */
    const char *queue;   /* "src", "dst", "copy", ... or NULL */
    int64_t node_id;     /* the node's id, or 0 */
    const char *path;    /* the node's path, or NULL */
    const char *message; /* the text */
};

typedef void (*tm__log_sink)(void *ctx, const struct tm__log_record *r);

struct tm__log_cfg {
    int db_level;           /* records >= this go to sink; TM_LEVEL_COUNT: none */
    int udp_level;          /* records >= this go out by UDP; TM_LEVEL_COUNT: none */
    const char *udp_addr;   /* "HOST:PORT" (IPv4 or [IPv6]); NULL: 127.0.0.1:8081 */
    int allow_public;       /* allow a non-loopback udp_addr */
    size_t capacity;        /* queue size in records; 0: 4096 */
    const char *migration;  /* migration id put in each datagram, may be NULL */
    tm__log_sink sink;      /* database side, may be NULL */
    void *sink_ctx;         /* its context */
};

struct tm__logger;

/* Starts the logger thread. A udp_addr that does not parse, or that is not
 * loopback without allow_public, is refused with a message in err. */
int tm__logger_start(struct tm__logger **out, const struct tm__log_cfg *cfg,
                     struct tm__buf *err);
/* Queues a record; never blocks (drops and counts when full). lg may be
 * NULL (then nothing happens). queue and path may be NULL. */
void tm__log(struct tm__logger *lg, int level, const char *queue, int64_t node_id,
             const char *path, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* 1 when a record of this level would go anywhere (skip building it). */
int tm__log_enabled(const struct tm__logger *lg, int level);
/* Records dropped so far. */
int64_t tm__logger_dropped(struct tm__logger *lg);
/* Datagrams that could not be sent so far (any thread). */
int64_t tm__logger_send_errors(struct tm__logger *lg);
/* Sends what is queued, reports drops, stops the thread, frees lg. */
void tm__logger_stop(struct tm__logger *lg);

/* Parses "HOST:PORT" into a socket address; 1 when it is loopback. Used by
 * the logger and by `treemig log-listen`. Returns 0 or TM_EINVAL. */
struct sockaddr_storage;
int tm__log_parse_addr(const char *s, struct sockaddr_storage *out,
                       unsigned *len, int *loopback);

/*
 * Addresses and limits. tm__log_parse_addr() accepts a numeric IPv4 address, "localhost" (as
 * 127.0.0.1) or a numeric IPv6 address in brackets, then ':' and a port
 * 0..65535 (0 is for a listener that wants any free port; the logger refuses
 * it); never DNS. len and loopback may be NULL. Loopback is 127.0.0.0/8, ::1
 * and ::ffff:127.0.0.0/104.
 */
#define TM__LOG_DEFAULT_ADDR "127.0.0.1:8081"
#define TM__LOG_MSG_MAX 1024   /* bytes of a message, NUL included */
/* OR'ed into tm__log()'s level: a milestone (a phase started or ended),
 * also sent by UDP when UDP is on, whatever --udp-level (not off), so
 * that log-listen shows at least when a phase starts and ends. */
#define TM__LOG_MILESTONE 0x100
#define TM__LOG_PATH_MAX 4096  /* bytes of a path, NUL included */
#define TM__LOG_QUEUE_MAX 32   /* bytes of a queue name, NUL included */
#define TM__LOG_ADDR_STRLEN 64 /* room for tm__log_format_addr() */
/* Writes a as "1.2.3.4:PORT" or "[::1]:PORT" into out (size bytes). */
void tm__log_format_addr(const struct sockaddr_storage *a, char *out, size_t size);

#endif
