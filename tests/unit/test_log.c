/* Unit tests of the log service (src/log/log.c): level names, addresses,
 * what reaches the sink and the UDP listener, and floods from many threads
 * into a small queue while the sink is held: the producers never wait,
 * every record is either delivered or counted as dropped, the drops are
 * reported, and the logs table written through the real writer agrees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "store/store.h"
#include "store/writer.h"
#include "treemig.h"
#include "util/buf.h"
#include "util/util.h"

/* ---- level names ---- */

static void test_levels_parse(void **state)
{
    int i;
    (void)state;
    for (i = 0; i < TM_LEVEL_COUNT; i++)
        assert_int_equal(tm__level_parse(tm__level_names[i]), i);
    assert_string_equal(tm__level_names[TM_TRACE], "trace");
    assert_string_equal(tm__level_names[TM_WARNING], "warning");
    assert_string_equal(tm__level_names[TM_CRITICAL], "critical");
    assert_int_equal(tm__level_parse("WARNING"), TM_WARNING);
    assert_int_equal(tm__level_parse("Error"), TM_ERROR);
    assert_int_equal(tm__level_parse("warn"), -1);
    assert_int_equal(tm__level_parse("off"), -1);
    assert_int_equal(tm__level_parse(""), -1);
    assert_int_equal(tm__level_parse("info "), -1);
    assert_int_equal(tm__level_parse(NULL), -1);
}

/* ---- addresses ---- */

struct addr_case {
    const char *s;   /* input */
    int ok;          /* parses */
    int family;      /* AF_INET or AF_INET6 */
    unsigned port;   /* the port */
    int loopback;    /* expected loopback flag */
    const char *fmt; /* tm__log_format_addr() of the result */
};

static void test_parse_addr(void **state)
{
    static const struct addr_case cases[] = {
        { "127.0.0.1:8081", 1, AF_INET, 8081, 1, "127.0.0.1:8081" },
        { "127.255.3.4:1", 1, AF_INET, 1, 1, "127.255.3.4:1" },
        { "localhost:9000", 1, AF_INET, 9000, 1, "127.0.0.1:9000" },
        { "LocalHost:9000", 1, AF_INET, 9000, 1, "127.0.0.1:9000" },
        { "[::1]:8081", 1, AF_INET6, 8081, 1, "[::1]:8081" },
        { "[::ffff:127.0.0.1]:5", 1, AF_INET6, 5, 1, "[::ffff:127.0.0.1]:5" },
        { "127.0.0.1:0", 1, AF_INET, 0, 1, "127.0.0.1:0" },
        { "127.0.0.1:65535", 1, AF_INET, 65535, 1, "127.0.0.1:65535" },
        { "10.0.0.1:8081", 1, AF_INET, 8081, 0, "10.0.0.1:8081" },
        { "0.0.0.0:8081", 1, AF_INET, 8081, 0, "0.0.0.0:8081" },
        { "128.0.0.1:8081", 1, AF_INET, 8081, 0, "128.0.0.1:8081" },
        { "[::]:8081", 1, AF_INET6, 8081, 0, "[::]:8081" },
        { "[2001:db8::1]:53", 1, AF_INET6, 53, 0, "[2001:db8::1]:53" },
        { "[::ffff:10.0.0.1]:5", 1, AF_INET6, 5, 0, "[::ffff:10.0.0.1]:5" },
        { "127.0.0.1", 0, 0, 0, 0, NULL },
        { "127.0.0.1:", 0, 0, 0, 0, NULL },
        { "127.0.0.1:65536", 0, 0, 0, 0, NULL },
        { "127.0.0.1:080811", 0, 0, 0, 0, NULL },
        { "127.0.0.1:-1", 0, 0, 0, 0, NULL },
        { "127.0.0.1:+80", 0, 0, 0, 0, NULL },
        { "127.0.0.1:80 ", 0, 0, 0, 0, NULL },
        { " 127.0.0.1:80", 0, 0, 0, 0, NULL },
        { "127.1:80", 0, 0, 0, 0, NULL },
        { "127.0.0.01:80", 0, 0, 0, 0, NULL },
        { "example.com:80", 0, 0, 0, 0, NULL },
        { "localhost.:80", 0, 0, 0, 0, NULL },
        { "::1:8081", 0, 0, 0, 0, NULL },
        { "[::1]8081", 0, 0, 0, 0, NULL },
        { "[::1]", 0, 0, 0, 0, NULL },
        { "[127.0.0.1]:80", 0, 0, 0, 0, NULL },
        { "[fe80::1%lo]:80", 0, 0, 0, 0, NULL },
        { ":8081", 0, 0, 0, 0, NULL },
        { "", 0, 0, 0, 0, NULL },
    };
    size_t i;
    (void)state;
    assert_int_equal(tm__log_parse_addr(NULL, NULL, NULL, NULL), TM_EINVAL);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct addr_case *c = &cases[i];
        struct sockaddr_storage sa;
        char out[TM__LOG_ADDR_STRLEN];
        unsigned len = 0;
        int lo = -1, rc = tm__log_parse_addr(c->s, &sa, &len, &lo);
        if (!c->ok) {
            if (rc != TM_EINVAL)
                fail_msg("'%s' parsed (rc %d) but must be refused", c->s, rc);
            continue;
        }
        if (rc != 0)
            fail_msg("'%s' refused (rc %d)", c->s, rc);
        assert_int_equal(sa.ss_family, c->family);
        assert_int_equal(len, c->family == AF_INET ? sizeof(struct sockaddr_in)
                                                   : sizeof(struct sockaddr_in6));
        if (lo != c->loopback)
            fail_msg("'%s': loopback %d, expected %d", c->s, lo, c->loopback);
        assert_int_equal(c->family == AF_INET
                             ? ntohs(((struct sockaddr_in *)&sa)->sin_port)
                             : ntohs(((struct sockaddr_in6 *)&sa)->sin6_port),
                         c->port);
        tm__log_format_addr(&sa, out, sizeof out);
        assert_string_equal(out, c->fmt);
        /* len and loopback are optional */
        assert_int_equal(tm__log_parse_addr(c->s, &sa, NULL, NULL), 0);
    }
}

/* ---- what a sink sees ---- */

struct rec_copy {
    int64_t time;
    int level;
    char *queue, *path, *message; /* malloc'd, or NULL */
    int64_t node_id;
};

struct collect {
    pthread_mutex_t mu;
    struct rec_copy r[64];
    size_t n;
};

static char *dup_or_null(const char *s)
{
    char *d;
    if (!s)
        return NULL;
    d = strdup(s);
    if (!d)
        abort(); /* no cmocka assertion off the test's thread */
    return d;
}

static void collect_sink(void *ctx, const struct tm__log_record *r)
{
    struct collect *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (c->n < 64) {
        struct rec_copy *o = &c->r[c->n++];
        o->time = r->time;
        o->level = r->level;
        o->node_id = r->node_id;
        o->queue = dup_or_null(r->queue);
        o->path = dup_or_null(r->path);
        o->message = dup_or_null(r->message);
    }
    pthread_mutex_unlock(&c->mu);
}

static void collect_release(struct collect *c)
{
    size_t i;
    for (i = 0; i < c->n; i++) {
        free(c->r[i].queue);
        free(c->r[i].path);
        free(c->r[i].message);
    }
    pthread_mutex_destroy(&c->mu);
}

static void test_null_logger(void **state)
{
    (void)state;
    tm__log(NULL, TM_CRITICAL, "src", 1, "/a", "nothing %d", 1);
    assert_false(tm__log_enabled(NULL, TM_CRITICAL));
    assert_int_equal(tm__logger_dropped(NULL), 0);
    assert_int_equal(tm__logger_send_errors(NULL), 0);
    tm__logger_stop(NULL);
}

static void test_start_refuses(void **state)
{
    struct tm__log_cfg cfg;
    struct tm__logger *lg = (struct tm__logger *)&cfg;
    struct tm__buf err = TM__BUF_INIT;
    (void)state;

    memset(&cfg, 0, sizeof cfg);
    cfg.db_level = TM_INFO;
    cfg.udp_level = TM_WARNING;
    cfg.udp_addr = "10.1.2.3:8081";
    assert_int_equal(tm__logger_start(&lg, &cfg, &err), TM_EINVAL);
    assert_null(lg);
    assert_non_null(strstr(err.buf, "'10.1.2.3:8081' is not a loopback address"));

    cfg.udp_addr = "example.org:8081";
    assert_int_equal(tm__logger_start(&lg, &cfg, &err), TM_EINVAL);
    assert_non_null(strstr(err.buf, "expected HOST:PORT"));

    cfg.udp_addr = "127.0.0.1:0";
    assert_int_equal(tm__logger_start(&lg, &cfg, &err), TM_EINVAL);
    assert_non_null(strstr(err.buf, "port 0"));

    /* refused even when UDP is off: a wrong address is a mistake anyway */
    cfg.udp_level = TM_LEVEL_COUNT;
    cfg.udp_addr = "10.1.2.3:8081";
    assert_int_equal(tm__logger_start(&lg, &cfg, &err), TM_EINVAL);

    cfg.udp_level = TM_LEVEL_COUNT + 1;
    cfg.udp_addr = NULL;
    assert_int_equal(tm__logger_start(&lg, &cfg, &err), TM_EINVAL);
    cfg.udp_level = TM_WARNING;
    cfg.db_level = -1;
    assert_int_equal(tm__logger_start(&lg, &cfg, &err), TM_EINVAL);
    cfg.db_level = TM_INFO;
    cfg.capacity = (size_t)1 << 40;
    assert_int_equal(tm__logger_start(&lg, &cfg, &err), TM_EINVAL);
    cfg.capacity = 0;

    /* allowed with allow_public (nothing is logged, nothing is sent) */
    cfg.udp_addr = "192.0.2.1:9";
    cfg.allow_public = 1;
    assert_int_equal(tm__logger_start(&lg, &cfg, &err), 0);
    assert_non_null(lg);
    tm__logger_stop(lg);

    /* the default address */
    cfg.udp_addr = NULL;
    cfg.allow_public = 0;
    assert_int_equal(tm__logger_start(&lg, &cfg, &err), 0);
    tm__logger_stop(lg);
    tm__buf_release(&err);
}

static void test_sink_fields_and_thresholds(void **state)
{
    struct collect c;
    struct tm__log_cfg cfg;
    struct tm__logger *lg;
    struct tm__buf err = TM__BUF_INIT;
    char big[3000], path[6000], utf[1100];
    int64_t before;
    size_t i;
    (void)state;

    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    memset(&cfg, 0, sizeof cfg);
    cfg.db_level = TM_INFO;
    cfg.udp_level = TM_LEVEL_COUNT;
    cfg.sink = collect_sink;
    cfg.sink_ctx = &c;
    assert_int_equal(tm__logger_start(&lg, &cfg, &err), 0);
    assert_false(tm__log_enabled(lg, TM_DEBUG));
    assert_true(tm__log_enabled(lg, TM_INFO));
    assert_true(tm__log_enabled(lg, TM_CRITICAL));

    memset(big, 'm', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    path[0] = '/';
    memset(path + 1, 'p', sizeof path - 2);
    path[sizeof path - 1] = '\0';
    /* 1019 ASCII bytes then two-byte characters: the cut at 1020 bytes
     * would split one, so it backs off to 1019 */
    memset(utf, 'u', 1019);
    for (i = 1019; i + 2 < sizeof utf; i += 2)
        memcpy(utf + i, "\xc3\xa9", 2);
    utf[i] = '\0';

    before = tm__wall_ns();
    tm__log(lg, TM_TRACE, "src", 1, "/t", "trace %d", 1);
    tm__log(lg, TM_DEBUG, "src", 2, "/d", "debug %d", 2);
    tm__log(lg, TM_INFO, "src", 3, "/a/b", "listing %s failed after %d attempts",
            "/a/b", 4);
    tm__log(lg, TM_WARNING, NULL, 0, NULL, "no queue, no path");
    tm__log(lg, TM_ERROR, "a-queue-name-longer-than-thirty-one-bytes", 5, "",
            "%s", big);
    tm__log(lg, TM_CRITICAL, "dst", 6, path, "%s", utf);
    tm__log(lg, 99, "dst", 7, NULL, "level clamped");
    tm__logger_stop(lg);

    assert_int_equal(c.n, 5);
    assert_int_equal(c.r[0].level, TM_INFO);
    assert_string_equal(c.r[0].queue, "src");
    assert_int_equal(c.r[0].node_id, 3);
    assert_string_equal(c.r[0].path, "/a/b");
    assert_string_equal(c.r[0].message, "listing /a/b failed after 4 attempts");
    assert_true(c.r[0].time >= before && c.r[0].time <= tm__wall_ns());

    assert_int_equal(c.r[1].level, TM_WARNING);
    assert_null(c.r[1].queue);
    assert_null(c.r[1].path);
    assert_int_equal(c.r[1].node_id, 0);
    assert_string_equal(c.r[1].message, "no queue, no path");

    assert_int_equal(c.r[2].level, TM_ERROR);
    assert_int_equal(strlen(c.r[2].queue), TM__LOG_QUEUE_MAX - 1);
    assert_memory_equal(c.r[2].queue, "a-queue-name-longer-than-thirty", 31);
    assert_string_equal(c.r[2].path, "");
    assert_int_equal(strlen(c.r[2].message), TM__LOG_MSG_MAX - 1);
    assert_string_equal(c.r[2].message + TM__LOG_MSG_MAX - 4, "...");
    assert_memory_equal(c.r[2].message, big, TM__LOG_MSG_MAX - 4);

    assert_int_equal(c.r[3].level, TM_CRITICAL);
    assert_int_equal(strlen(c.r[3].path), TM__LOG_PATH_MAX - 1);
    assert_memory_equal(c.r[3].path, path, TM__LOG_PATH_MAX - 4);
    assert_string_equal(c.r[3].path + TM__LOG_PATH_MAX - 4, "...");
    assert_int_equal(strlen(c.r[3].message), 1019 + 3);
    assert_memory_equal(c.r[3].message, utf, 1019);
    assert_string_equal(c.r[3].message + 1019, "...");

    assert_int_equal(c.r[4].level, TM_CRITICAL);
    assert_string_equal(c.r[4].message, "level clamped");
    collect_release(&c);
    tm__buf_release(&err);
}

/* ---- UDP datagrams ---- */

static int bind_udp(int family, struct sockaddr_storage *sa, char *name, size_t size)
{
    socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in)
                                      : sizeof(struct sockaddr_in6);
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(sa, 0, sizeof *sa);
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)sa;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)sa;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
    }
    if (bind(fd, (struct sockaddr *)sa, len) < 0 ||
        getsockname(fd, (struct sockaddr *)sa, &len) < 0) {
        close(fd);
        return -1;
    }
    tm__log_format_addr(sa, name, size);
    return fd;
}

/* The next datagram, or "" when none is waiting. */
static char *recv_one(int fd, char *buf, size_t size)
{
    ssize_t n = recv(fd, buf, size - 1, MSG_DONTWAIT);
    buf[n < 0 ? 0 : n] = '\0';
    return buf;
}

/* Checks that d is {"time":<now-ish>, ...rest} where rest's closing brace
 * comes after the sender: ,"host":"<this host>","pid":<this process>}. */
static void expect_datagram(const char *d, int64_t t0, int64_t t1, const char *rest)
{
    char *end, host[256], who[400], want[4096];
    size_t rl = strlen(rest);
    long long t;
    if (strncmp(d, "{\"time\":", 8))
        fail_msg("datagram does not start with the time: '%s'", d);
    t = strtoll(d + 8, &end, 10);
    if (t < t0 || t > t1)
        fail_msg("datagram time %lld not in [%" PRId64 ", %" PRId64 "]", t, t0, t1);
    if (gethostname(host, sizeof host) != 0)
        host[0] = '\0';
    host[sizeof host - 1] = '\0';
    if (host[0])
        snprintf(who, sizeof who, ",\"host\":\"%s\",\"pid\":%ld}", host,
                 (long)getpid());
    else
        snprintf(who, sizeof who, ",\"host\":null,\"pid\":%ld}", (long)getpid());
    assert_true(rl > 0 && rest[rl - 1] == '}');
    snprintf(want, sizeof want, "%.*s%s", (int)(rl - 1), rest, who);
    assert_string_equal(end, want);
}

static void udp_case(int family)
{
    struct tm__log_cfg cfg;
    struct tm__logger *lg;
    struct tm__buf err = TM__BUF_INIT;
    struct sockaddr_storage sa;
    char name[TM__LOG_ADDR_STRLEN], buf[65536];
    int64_t t0, t1;
    int fd = bind_udp(family, &sa, name, sizeof name);

    if (fd < 0) {
        assert_int_equal(family, AF_INET6); /* IPv4 loopback must work */
        print_message("skipping IPv6: cannot bind [::1] here\n");
        return;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.db_level = TM_LEVEL_COUNT;
    cfg.udp_level = TM_WARNING;
    cfg.udp_addr = name;
    cfg.migration = "mig-7";
    assert_int_equal(tm__logger_start(&lg, &cfg, &err), 0);
    assert_false(tm__log_enabled(lg, TM_INFO));
    assert_true(tm__log_enabled(lg, TM_WARNING));
    t0 = tm__wall_ns();
    tm__log(lg, TM_INFO, "src", 1, "/x", "not sent");
    tm__log(lg, TM_WARNING, "src", 42, "/a \"b\"/\xff", "retrying\nlisting %d", 2);
    tm__log(lg, TM_ERROR, NULL, 0, NULL, "caf\xc3\xa9 \\ done");
    tm__log(lg, TM_CRITICAL, "dst", -3, "/", "%s", "");
    tm__logger_stop(lg); /* everything is sent before it returns */
    t1 = tm__wall_ns();

    expect_datagram(recv_one(fd, buf, sizeof buf), t0, t1,
                    ",\"level\":\"warning\",\"queue\":\"src\",\"node_id\":42,"
                    "\"path\":\"/a \\\"b\\\"/\\u00ff\","
                    "\"message\":\"retrying\\u000alisting 2\",\"migration\":\"mig-7\"}");
    expect_datagram(recv_one(fd, buf, sizeof buf), t0, t1,
                    ",\"level\":\"error\",\"queue\":null,\"node_id\":null,"
                    "\"path\":null,\"message\":\"caf\xc3\xa9 \\\\ done\","
                    "\"migration\":\"mig-7\"}");
    expect_datagram(recv_one(fd, buf, sizeof buf), t0, t1,
                    ",\"level\":\"critical\",\"queue\":\"dst\",\"node_id\":-3,"
                    "\"path\":\"/\",\"message\":\"\",\"migration\":\"mig-7\"}");
    assert_string_equal(recv_one(fd, buf, sizeof buf), "");
    close(fd);
    tm__buf_release(&err);
}

static void test_udp_datagrams(void **state)
{
    (void)state;
    udp_case(AF_INET);
    udp_case(AF_INET6);
}

static void test_udp_without_migration_or_listener(void **state)
{
    struct tm__log_cfg cfg;
    struct tm__logger *lg;
    struct tm__buf err = TM__BUF_INIT;
    struct sockaddr_storage sa;
    char name[TM__LOG_ADDR_STRLEN], buf[65536];
    int fd = bind_udp(AF_INET, &sa, name, sizeof name);
    (void)state;

    assert_true(fd >= 0);
    memset(&cfg, 0, sizeof cfg);
    cfg.db_level = TM_LEVEL_COUNT;
    cfg.udp_level = TM_TRACE;
    cfg.udp_addr = name;
    assert_int_equal(tm__logger_start(&lg, &cfg, &err), 0);
    tm__log(lg, TM_TRACE, "copy", 9, "/f", "x");
    tm__logger_stop(lg);
    expect_datagram(recv_one(fd, buf, sizeof buf), 0, INT64_MAX,
                    ",\"level\":\"trace\",\"queue\":\"copy\",\"node_id\":9,"
                    "\"path\":\"/f\",\"message\":\"x\",\"migration\":null}");
    close(fd); /* now nobody listens: sending is not an error to the caller */

    assert_int_equal(tm__logger_start(&lg, &cfg, &err), 0);
    tm__log(lg, TM_ERROR, "copy", 9, "/f", "into the void");
    tm__logger_stop(lg);
    tm__buf_release(&err);
}

/* ---- floods ---- */

#define FLOOD_THREADS 16
#define FLOOD_PER_THREAD 100000

struct flood {
    /* the gate the sink waits at, opened by the test */
    pthread_mutex_t mu;        /* guards the fields below */
    pthread_cond_t cv;         /* gate opened, or sink entered */
    int gated;                 /* the sink waits while gate_open is 0 */
    int gate_open;             /* set by the test */
    int64_t sink_calls;        /* calls that entered the sink */
    /* logger thread only (read after stop) */
    int64_t delivered;         /* flood records seen by the sink */
    int64_t reports;           /* drop reports seen */
    int64_t reported;          /* sum of their counts */
    int64_t last_seq[FLOOD_THREADS]; /* per-thread order check */
    int order_errors;          /* records out of order */
    int field_errors;          /* records with wrong fields */
    struct tm__writer *w;      /* the real writer, or NULL */
    /* producers */
    struct tm__logger *lg;     /* the logger under test */
    int per_thread;            /* records each producer logs */
    int long_paths;            /* vary the path length up to ~4 KiB */
};

static size_t flood_path_len(const struct flood *f, int t, long long i)
{
    return f->long_paths ? (size_t)((i * 7919 + t * 131) % 4100) + 1 : 8;
}

/* The path producer t logged with record i: '/' then 'q's, cut at 4 KiB. */
static int path_ok(const struct flood *f, int t, long long i, const char *path)
{
    size_t want = flood_path_len(f, t, i), len = strlen(path), k;
    if (want >= TM__LOG_PATH_MAX) {
        if (len != TM__LOG_PATH_MAX - 1 || strcmp(path + len - 3, "..."))
            return 0;
        len -= 3;
    } else if (len != want) {
        return 0;
    }
    if (path[0] != '/')
        return 0;
    for (k = 1; k < len; k++)
        if (path[k] != 'q')
            return 0;
    return 1;
}

static void flood_sink(void *ctx, const struct tm__log_record *r)
{
    struct flood *f = ctx;
    int t;
    long long seq;

    pthread_mutex_lock(&f->mu);
    f->sink_calls++;
    pthread_cond_broadcast(&f->cv);
    while (f->gated && !f->gate_open)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);

    if (r->queue && !strcmp(r->queue, "log")) {
        long long n;
        char tail[64];
        if (r->level != TM_WARNING ||
            sscanf(r->message, "%lld %63[a-z ]", &n, tail) != 2 ||
            strcmp(tail, "log records dropped"))
            f->field_errors++;
        else
            f->reported += n;
        f->reports++;
    } else if (sscanf(r->message, "t%d n%lld", &t, &seq) == 2 && t >= 0 &&
               t < FLOOD_THREADS) {
        if (seq <= f->last_seq[t])
            f->order_errors++;
        f->last_seq[t] = seq;
        if (r->level != TM_INFO || !r->queue || strcmp(r->queue, "flood") ||
            r->node_id != seq || !r->path || !path_ok(f, t, seq, r->path))
            f->field_errors++;
        f->delivered++;
    } else {
        f->field_errors++;
    }
    if (f->w) {
        /* as the engine's sink: a TM_R_LOG result for the writer */
        struct tm__result *res = calloc(1, sizeof *res);
        if (!res)
            abort(); /* no cmocka assertion off the test's thread */
        tm__buf_init(&res->arena);
        res->kind = TM_R_LOG;
        res->phase = tm__level_names[r->level];
        res->queue = r->queue && !strcmp(r->queue, "log") ? "log" : "flood";
        res->folder_id = r->node_id;
        res->stat[7] = r->time;
        res->path = r->path ? strdup(r->path) : NULL;
        res->value = strdup(r->message);
        if (!res->value || (r->path && !res->path))
            abort();
        if (tm__writer_submit(f->w, res))
            f->field_errors++;
    }
}

static void *flood_producer(void *arg)
{
    struct flood *f = ((void **)arg)[0];
    int t = (int)(intptr_t)((void **)arg)[1];
    char path[4200];
    int i;
    for (i = 1; i <= f->per_thread; i++) {
        size_t plen = flood_path_len(f, t, i);
        memset(path, 'q', plen);
        path[0] = '/';
        path[plen] = '\0';
        tm__log(f->lg, TM_INFO, "flood", i, path, "t%d n%d", t, i);
        if (i % 4096 == 0)
            (void)tm__log_enabled(f->lg, TM_DEBUG);
    }
    return NULL;
}

static void no_commit(void *ctx, const struct tm__result *list)
{
    (void)ctx;
    (void)list;
}

static int64_t sql_int(sqlite3 *db, const char *q)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/*
 * nthreads producers log per_thread records each into a queue of capacity
 * records. With gated, the sink blocks on the first record until every
 * producer has returned: so tm__log() cannot have waited for the sink.
 * Then every record is delivered or dropped, the drops are reported, and the
 * logs table (through the real writer) holds exactly what was delivered.
 */
static int64_t flood_case(int nthreads, int per_thread, size_t capacity, int gated,
                          int long_paths)
{
    char dir[] = "/tmp/tm-test-log-XXXXXX", dbpath[64];
    struct tm__store store;
    struct tm__buf err = TM__BUF_INIT;
    struct tm__log_cfg cfg;
    struct flood *f = calloc(1, sizeof *f);
    pthread_t th[FLOOD_THREADS];
    void *args[FLOOD_THREADS][2];
    int64_t produced = (int64_t)nthreads * per_thread, dropped, next_id[2] = { 1, 1 };
    int i;

    assert_non_null(f);
    assert_true(nthreads <= FLOOD_THREADS);
    assert_non_null(mkdtemp(dir));
    snprintf(dbpath, sizeof dbpath, "%s/t.db", dir);
    if (tm__store_open(&store, dbpath, TM_OPEN_WRITE | TM_OPEN_CREATE, &err))
        fail_msg("cannot create %s: %s", dbpath, err.buf);
    assert_int_equal(tm__writer_start(&f->w, store.db, next_id, 1024, no_commit, NULL), 0);

    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->gated = gated;
    f->per_thread = per_thread;
    f->long_paths = long_paths;
    memset(&cfg, 0, sizeof cfg);
    cfg.db_level = TM_INFO;
    cfg.udp_level = TM_LEVEL_COUNT;
    cfg.capacity = capacity;
    cfg.sink = flood_sink;
    cfg.sink_ctx = f;
    assert_int_equal(tm__logger_start(&f->lg, &cfg, &err), 0);

    for (i = 0; i < nthreads; i++) {
        args[i][0] = f;
        args[i][1] = (void *)(intptr_t)i;
        assert_int_equal(pthread_create(&th[i], NULL, flood_producer, args[i]), 0);
    }
    for (i = 0; i < nthreads; i++) {
        /* a producer that waited for the sink would never return here: the
         * gate opens only after this loop (ctest's timeout ends such a run) */
        assert_int_equal(pthread_join(th[i], NULL), 0);
    }
    pthread_mutex_lock(&f->mu);
    if (gated) {
        /* every producer is done and the sink has not got past its first
         * call: nothing waited for it */
        if (f->sink_calls > 1)
            fail_msg("the sink ran %" PRId64 " times behind a closed gate",
                     f->sink_calls);
        f->gate_open = 1;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);

    dropped = tm__logger_dropped(f->lg);
    tm__logger_stop(f->lg);
    assert_int_equal(tm__writer_stop(f->w, &err), 0);

    print_message("flood %dx%d into %zu slots%s%s: delivered %" PRId64 ", dropped %"
                  PRId64 " in %" PRId64 " reports\n", nthreads, per_thread, capacity,
                  gated ? ", sink held" : "", long_paths ? ", long paths" : "",
                  f->delivered, dropped, f->reports);
    assert_int_equal(f->order_errors, 0);
    assert_int_equal(f->field_errors, 0);
    assert_int_equal(f->delivered + dropped, produced);
    assert_int_equal(f->reported, dropped);
    if (gated) {
        /* the queue held at most capacity records while the sink was held */
        assert_true(dropped >= produced - (int64_t)capacity - 1);
    }
    if (dropped)
        assert_true(f->reports >= 1);
    else
        assert_int_equal(f->reports, 0);

    /* the database holds exactly what was delivered, plus the reports */
    assert_int_equal(sql_int(tm__db_sqlite(store.db), "SELECT count(*) FROM logs WHERE queue='flood'"),
                     f->delivered);
    assert_int_equal(sql_int(tm__db_sqlite(store.db), "SELECT count(*) FROM logs WHERE queue='log' "
                             "AND level='warning' AND message LIKE '% log records dropped'"),
                     f->reports);
    assert_int_equal(sql_int(tm__db_sqlite(store.db), "SELECT coalesce(sum(CAST(message AS INTEGER)),0) "
                             "FROM logs WHERE queue='log'"), dropped);
    assert_int_equal(sql_int(tm__db_sqlite(store.db), "SELECT count(*) FROM (SELECT node_id, "
                             "substr(message, 1, instr(message, ' ')) AS t FROM logs "
                             "WHERE queue='flood' GROUP BY t, node_id HAVING count(*) > 1)"),
                     0);
    assert_int_equal(sql_int(tm__db_sqlite(store.db), "SELECT count(*) FROM logs WHERE queue='flood' "
                             "AND (level <> 'info' OR path NOT LIKE '/%' OR node_id IS NULL)"),
                     0);
    assert_int_equal(sql_int(tm__db_sqlite(store.db), "SELECT count(*) FROM pragma_integrity_check "
                             "WHERE integrity_check <> 'ok'"), 0);

    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    tm__store_close(&store);
    tm__buf_release(&err);
    {
        char p[96];
        const char *suffix[] = { "", "-wal", "-shm", ".lock" };
        size_t k;
        for (k = 0; k < sizeof suffix / sizeof suffix[0]; k++) {
            snprintf(p, sizeof p, "%s%s", dbpath, suffix[k]);
            unlink(p);
        }
        rmdir(dir);
    }
    return dropped;
}

/* 16 threads x 100k records into 64 slots while the sink is held. */
static void test_flood_sink_held(void **state)
{
    (void)state;
    assert_true(flood_case(FLOOD_THREADS, FLOOD_PER_THREAD, 64, 1, 0) > 0);
}

/* The sink runs (slowly: every record goes through the writer) while the
 * producers flood a small ring with records of very different sizes, so
 * that both limits (records and bytes) and the wrap-around are exercised. */
static void test_flood_running_sink(void **state)
{
    (void)state;
    flood_case(8, 20000, 64, 0, 1);
}

/* A queue large enough for everything: nothing is dropped or reported. */
static void test_no_drops_when_room(void **state)
{
    (void)state;
    assert_int_equal(flood_case(4, 2000, 8192, 1, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels_parse),
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_null_logger),
        cmocka_unit_test(test_start_refuses),
        cmocka_unit_test(test_sink_fields_and_thresholds),
        cmocka_unit_test(test_udp_datagrams),
        cmocka_unit_test(test_udp_without_migration_or_listener),
        cmocka_unit_test(test_flood_sink_held),
        cmocka_unit_test(test_flood_running_sink),
        cmocka_unit_test(test_no_drops_when_room),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
