/*
 * listen.c - the command `treemig log-listen`: binds a UDP address and
 * prints the log records that treemig commands send there (one JSON object
 * a datagram, docs/logging.md), one line a record, coloured by level on a
 * terminal. Runs on the main thread only.
 *
 * It uses the address parser of the log service (src/log/log.h) so that the
 * listener and the sender accept exactly the same addresses; everything
 * else comes from the public header.
 */
#include "treemig.h"

#include "commands.h"
#include "../src/log/log.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>


static const char listen_usage[] =
    "usage: treemig log-listen [--public] [--json] [--count N] [--migration ID]\n"
    "                          [ADDR]\n"
    "\n"
    "Receives the log records that treemig commands send by UDP (see\n"
    "--udp-level and --log-udp of discover, copy, verify, retry and resume)\n"
    "and prints one line per record: the time, the level, the queue, the path\n"
    "and the message, coloured by level on a terminal. ADDR is HOST:PORT, with\n"
    "a numeric IPv4 address, 'localhost', or a numeric IPv6 address in\n"
    "brackets ('[::1]:8081'); the default is " TM__LOG_DEFAULT_ADDR ". Port 0 takes\n"
    "any free port. The first line, on stderr, names the address listened on.\n"
    "\n"
    "options:\n"
    "  --public     allow an ADDR that is not loopback (0.0.0.0:8081, [::]:8081,\n"
    "               an interface's address): anyone who can reach the port\n"
    "               can then print lines here\n"
    "  --json       print each datagram as it came, one JSON object a line\n"
    "  --count N    exit after N datagrams\n"
    "  --migration ID  only the records of the migration ID (its id, as\n"
    "               'status --json' and every datagram give it, or the\n"
    "               start of it); the others are not printed nor counted\n"
    "  -h, --help   show this help\n"
    "\n"
    "Stop it with Ctrl-C.\n"
    "exit codes: 0 stopped (Ctrl-C, SIGTERM, or N datagrams received), 1 the\n"
    "address cannot be bound, 2 usage error.\n";

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* ---- the datagram: a flat JSON object, decoded in place ---- */

enum { J_ABSENT = 0, J_NULL, J_STRING, J_NUMBER, J_BOOL };

struct jval {
    int type;       /* J_* */
    const char *s;  /* string (decoded bytes) or number text */
    size_t len;     /* its length */
};

struct dgram {
    struct jval time, level, queue, node_id, path, message, migration;
};

static void skip_ws(char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r'))
        (*p)++;
}

static int hex4(const char *p, const char *end, unsigned *v)
{
    int i;
    *v = 0;
    if (end - p < 4)
        return -1;
    for (i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -1;
        *v = *v * 16 + d;
    }
    return 0;
}

static char *put_utf8(char *w, unsigned cp)
{
    if (cp < 0x80) {
        *w++ = (char)cp;
    } else if (cp < 0x800) {
        *w++ = (char)(0xC0 | (cp >> 6));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *w++ = (char)(0xE0 | (cp >> 12));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *w++ = (char)(0xF0 | (cp >> 18));
        *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    }
    return w;
}

/* Decodes the string at *p (on its opening quote) in place. \u0080 to
 * \u00ff are single bytes: treemig writes a byte that is not UTF-8 so. */
static int parse_string(char **p, const char *end, struct jval *v)
{
    char *r = *p + 1, *w = r;
    v->type = J_STRING;
    v->s = w;
    while (r < end && *r != '"') {
        unsigned cp, lo;
        if ((unsigned char)*r < 0x20)
            return -1;
        if (*r != '\\') {
            *w++ = *r++;
            continue;
        }
        if (++r >= end)
            return -1;
        switch (*r++) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u':
            if (hex4(r, end, &cp))
                return -1;
            r += 4;
            if (cp < 0x100) {
                *w++ = (char)cp;
                break;
            }
            if (cp >= 0xD800 && cp < 0xDC00 && end - r >= 6 && r[0] == '\\' &&
                r[1] == 'u' && !hex4(r + 2, end, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                r += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD;
            }
            w = put_utf8(w, cp);
            break;
        default:
            return -1;
        }
    }
    if (r >= end)
        return -1;
    v->len = (size_t)(w - v->s);
    *p = r + 1;
    return 0;
}

static int parse_value(char **p, const char *end, struct jval *v)
{
    static const struct { const char *word; int type; } words[] = {
        { "null", J_NULL }, { "true", J_BOOL }, { "false", J_BOOL },
    };
    size_t i;
    if (*p >= end)
        return -1;
    if (**p == '"')
        return parse_string(p, end, v);
    if (**p == '-' || (**p >= '0' && **p <= '9')) {
        v->type = J_NUMBER;
        v->s = *p;
        while (*p < end && strchr("+-.eE0123456789", **p))
            (*p)++;
        v->len = (size_t)(*p - v->s);
        return 0;
    }
    for (i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i].word);
        if ((size_t)(end - *p) >= n && !memcmp(*p, words[i].word, n)) {
            v->type = words[i].type;
            v->s = *p;
            v->len = n;
            *p += n;
            return 0;
        }
    }
    return -1; /* objects and arrays are not part of a record */
}

static struct jval *field(struct dgram *d, const struct jval *key)
{
    static const struct { const char *name; size_t off; } keys[] = {
        { "time", offsetof(struct dgram, time) },
        { "level", offsetof(struct dgram, level) },
        { "queue", offsetof(struct dgram, queue) },
        { "node_id", offsetof(struct dgram, node_id) },
        { "path", offsetof(struct dgram, path) },
        { "message", offsetof(struct dgram, message) },
        { "migration", offsetof(struct dgram, migration) },
    };
    size_t i;
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strlen(keys[i].name) == key->len && !memcmp(keys[i].name, key->s, key->len))
            return (struct jval *)(void *)((char *)d + keys[i].off);
    return NULL;
}

/* Parses one datagram (buf is changed); -1 when it is not a flat object. */
static int parse_record(char *buf, size_t len, struct dgram *d)
{
    char *p = buf;
    const char *end = buf + len;
    memset(d, 0, sizeof *d);
    skip_ws(&p, end);
    if (p >= end || *p++ != '{')
        return -1;
    skip_ws(&p, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            struct jval key, val, *f;
            if (p >= end || *p != '"' || parse_string(&p, end, &key))
                return -1;
            skip_ws(&p, end);
            if (p >= end || *p++ != ':')
                return -1;
            skip_ws(&p, end);
            if (parse_value(&p, end, &val))
                return -1;
            f = field(d, &key);
            if (f)
                *f = val;
            skip_ws(&p, end);
            if (p < end && *p == ',') {
                p++;
                skip_ws(&p, end);
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            return -1;
        }
    }
    skip_ws(&p, end);
    return p == end ? 0 : -1;
}

/* ---- printing ---- */

/* Length of the valid UTF-8 sequence at s (its code point in *cp), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t len, unsigned *cp)
{
    size_t n, i;
    unsigned c = s[0], min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xE0) == 0xC0) {
        n = 2; c &= 0x1F; min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3; c &= 0x0F; min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4; c &= 0x07; min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000))
        return 0;
    *cp = c;
    return n;
}

/* Writes text so that it can neither break the line nor drive the
 * terminal: control characters, C1 controls, line separators and
 * bidirectional controls are escaped (\n, \t, \xHH, \uHHHH), and so is
 * every byte that is not UTF-8. */
static void put_text(FILE *out, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned cp;
        size_t n = utf8_seq(s + i, len - i, &cp);
        if (n == 0) {
            fprintf(out, "\\x%02x", s[i]);
            i++;
            continue;
        }
        if (cp == '\n')
            fputs("\\n", out);
        else if (cp == '\t')
            fputs("\\t", out);
        else if (cp == '\r')
            fputs("\\r", out);
        else if (cp == '\\')
            fputs("\\\\", out);
        else if (cp < 0x20 || cp == 0x7F)
            fprintf(out, "\\x%02x", cp);
        else if ((cp >= 0x80 && cp < 0xA0) || cp == 0x2028 || cp == 0x2029 ||
                 (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) ||
                 cp == 0x200E || cp == 0x200F || cp == 0x061C)
            fprintf(out, "\\u%04x", cp);
        else
            fwrite(s + i, 1, n, out);
        i += n;
    }
}

static const char *const level_colour[TM_LEVEL_COUNT] = {
    "\033[2m",    /* trace: dim */
    "\033[36m",   /* debug: cyan */
    "\033[32m",   /* info: green */
    "\033[33m",   /* warning: yellow */
    "\033[31m",   /* error: red */
    "\033[1;31m", /* critical: bold red */
};

/* The time as local HH:MM:SS.mmm. */
static void put_time(FILE *out, int64_t ns)
{
    time_t t = (time_t)(ns / 1000000000);
    struct tm tmv;
    char hms[16];
    if (ns < 0 || !localtime_r(&t, &tmv) || !strftime(hms, sizeof hms, "%H:%M:%S", &tmv)) {
        fputs("--:--:--.---", out);
        return;
    }
    fprintf(out, "%s.%03d", hms, (int)(ns / 1000000 % 1000));
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t number(const struct jval *v, int64_t dflt)
{
    char tmp[32];
    char *e;
    long long x;
    if (v->type != J_NUMBER || v->len == 0 || v->len >= sizeof tmp)
        return dflt;
    memcpy(tmp, v->s, v->len);
    tmp[v->len] = '\0';
    errno = 0;
    x = strtoll(tmp, &e, 10);
    return errno || *e ? dflt : (int64_t)x;
}

/* Characters of a migration's id a line shows: enough to tell apart the
 * migrations that log to one listener. */
#define ID_SHOWN 8

/* One line for a record: TIME MIGRATION LEVEL QUEUE PATH: MESSAGE. */
static void print_record(char *buf, size_t len, int colour)
{
    struct dgram d;
    const char *col = NULL;
    int level = -1;

    if (parse_record(buf, len, &d) || d.message.type != J_STRING) {
        /* not one of ours: show it, harmlessly */
        put_time(stdout, wall_ns());
        fputs(" (not a log record) ", stdout);
        put_text(stdout, buf, len > 512 ? 512 : len);
        fputc('\n', stdout);
        return;
    }
    if (d.level.type == J_STRING && d.level.len < 16) {
        char name[16];
        memcpy(name, d.level.s, d.level.len);
        name[d.level.len] = '\0';
        level = tm__level_parse(name);
    }
    if (colour && level >= 0)
        col = level_colour[level];
    if (col)
        fputs(col, stdout);
    put_time(stdout, number(&d.time, -1));
    fputc(' ', stdout);
    /* the migration: two migrations may log to one port */
    if (d.migration.type == J_STRING && d.migration.len) {
        size_t n = d.migration.len < ID_SHOWN ? d.migration.len : ID_SHOWN;
        put_text(stdout, d.migration.s, n);
        if (n < ID_SHOWN)
            fprintf(stdout, "%*s", (int)(ID_SHOWN - n), "");
    } else {
        fprintf(stdout, "%-*s", ID_SHOWN, "-");
    }
    fputc(' ', stdout);
    if (level >= 0)
        fprintf(stdout, "%-8s", tm__level_names[level]);
    else if (d.level.type == J_STRING)
        put_text(stdout, d.level.s, d.level.len);
    else
        fputs("?       ", stdout);
    fputc(' ', stdout);
    if (d.queue.type == J_STRING) {
        put_text(stdout, d.queue.s, d.queue.len);
        if (d.queue.len < 4)
            fprintf(stdout, "%*s", (int)(4 - d.queue.len), "");
    } else {
        fputs("-   ", stdout);
    }
    fputc(' ', stdout);
    if (d.path.type == J_STRING) {
        put_text(stdout, d.path.s, d.path.len);
        fputs(": ", stdout);
    }
    put_text(stdout, d.message.s, d.message.len);
    if (col)
        fputs("\033[0m", stdout);
    fputc('\n', stdout);
}

/* --json: the datagram as it came, on one line. */
static void print_raw(char *buf, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7F)
            buf[i] = ' ';
    fwrite(buf, 1, len, stdout);
    fputc('\n', stdout);
}

static int parse_count(const char *s, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1)
        return -1;
    *out = v;
    return 0;
}

/* Whether the datagram buf (n bytes) is a record of a migration whose id
 * starts with mig. */
static int of_migration(const char *buf, size_t n, const char *mig)
{
    static char copy[65536];
    struct dgram d;
    size_t ml = strlen(mig);
    memcpy(copy, buf, n);
    return parse_record(copy, n, &d) == 0 && d.migration.type == J_STRING &&
           d.migration.len >= ml && memcmp(d.migration.s, mig, ml) == 0;
}

static int listen_loop(int fd, int json, long count, const char *mig)
{
    static char buf[65536];
    struct sigaction sa;
    sigset_t block, orig;
    long seen = 0;
    int colour = !json && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");

    /* SIGINT and SIGTERM arrive only inside ppoll(): no lost wake-up */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &orig);
    sigdelset(&orig, SIGINT);
    sigdelset(&orig, SIGTERM);

    while (!stop_requested && (count == 0 || seen < count)) {
        struct pollfd pfd = { fd, POLLIN, 0 };
        ssize_t n;
        int r = ppoll(&pfd, 1, NULL, &orig);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "treemig log-listen: poll failed (errno %d)\n", errno);
            return EXIT_FATAL;
        }
        n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                continue;
            fprintf(stderr, "treemig log-listen: receive failed (errno %d)\n", errno);
            return EXIT_FATAL;
        }
        if (mig && !of_migration(buf, (size_t)n, mig))
            continue;
        if (json)
            print_raw(buf, (size_t)n);
        else
            print_record(buf, (size_t)n, colour);
        fflush(stdout);
        seen++;
    }
    return EXIT_OK;
}

int cmd_log_listen(int argc, char **argv)
{
    static const struct option opts[] = {
        { "public", no_argument, NULL, 'p' },
        { "json", no_argument, NULL, 'j' },
        { "count", required_argument, NULL, 'n' },
        { "migration", required_argument, NULL, 'm' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *addr = TM__LOG_DEFAULT_ADDR, *mig = NULL;
    struct sockaddr_storage sa;
    socklen_t salen;
    char name[TM__LOG_ADDR_STRLEN], why[128];
    unsigned len;
    long count = 0;
    int pub = 0, json = 0, loopback, c, fd, rc, rcvbuf = 4 << 20;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'p': pub = 1; break;
        case 'j': json = 1; break;
        case 'n':
            if (parse_count(optarg, &count))
                return usage_error("log-listen", "--count takes a whole number >= 1, not '%s'",
                                   optarg);
            break;
        case 'm':
            if (!*optarg || strspn(optarg, "0123456789abcdef") != strlen(optarg))
                return usage_error("log-listen", "--migration takes a migration "
                                   "id (hexadecimal, as 'treemig status --json' "
                                   "gives it) or its start, not '%s'", optarg);
            mig = optarg;
            break;
        case 'h':
            fputs(listen_usage, stdout);
            return EXIT_OK;
        default:
            return option_error("log-listen", argc, argv, opts);
        }
    }
    if (argc - optind > 1)
        return usage_error("log-listen", "expected at most one ADDR, got %d arguments",
                           argc - optind);
    if (argc - optind == 1)
        addr = argv[optind];
    if (tm__log_parse_addr(addr, &sa, &len, &loopback))
        return usage_error("log-listen", "'%s' is not an address: expected HOST:PORT with a "
                           "numeric IPv4 address, 'localhost' or [IPv6], e.g. "
                           TM__LOG_DEFAULT_ADDR, addr);
    if (!loopback && !pub)
        return usage_error("log-listen", "'%s' is not a loopback address: anyone who can reach "
                           "it could print lines here; give --public to listen "
                           "there anyway", addr);

    fd = socket(sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        fprintf(stderr, "treemig log-listen: cannot open a UDP socket: %s\n",
                strerror_r(e, why, sizeof why));
        return EXIT_FATAL;
    }
    /* a burst of records must not overflow the default buffer; best effort */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (bind(fd, (struct sockaddr *)&sa, (socklen_t)len) < 0) {
        int e = errno;
        fprintf(stderr, "treemig log-listen: cannot listen on %s: %s\n", addr,
                strerror_r(e, why, sizeof why));
        close(fd);
        return EXIT_FATAL;
    }
    salen = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &salen) == 0)
        tm__log_format_addr(&sa, name, sizeof name);
    else
        snprintf(name, sizeof name, "%s", addr);
    fprintf(stderr, "treemig log-listen: listening on %s\n", name);
    fflush(stderr);
    rc = listen_loop(fd, json, count, mig);
    close(fd);
    return rc;
}
