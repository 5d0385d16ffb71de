/*
 * latency_proxy.c - a TCP forwarder that adds a fixed delay each way, for
 * benchmarks of remote storages (SFTP, S3) on loopback, where netem is not
 * available. One process, one thread, epoll, any number of connections.
 *
 *   latency_proxy [-v] [-p] [--up MS] [--down MS] LISTEN_PORT TARGET_HOST:PORT DELAY_MS
 *
 * Listens on 127.0.0.1:LISTEN_PORT (0: a free port; -p prints it on stdout
 * as one line) and forwards every connection to TARGET. Each chunk read
 * from one side is queued with its release time (now + delay) and written
 * to the other side once that time has come, in order; chunks in flight do
 * not wait for each other, so throughput is not bound by the delay (only by
 * the 64 MiB each direction may hold before reading pauses). A half-close
 * (EOF) is passed on after the delay too; a reset or error closes both
 * sides at once. --up (client to target) and --down (target to client)
 * override DELAY_MS for one direction. Prints nothing unless -v (one line
 * per connection on stderr) or -p. Stops on SIGINT or SIGTERM.
 *
 * Built by CMake as a tool (build/latency_proxy), not installed; see
 * bench/README.md.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bytes one direction may hold before it stops reading. */
#define MAX_QUEUED (64u << 20)
/* Bytes read at once. */
#define READ_CHUNK (256u << 10)

struct chunk {
    struct chunk *next;  /* the next chunk, released later */
    int64_t release_ns;  /* when it may be written */
    size_t len;          /* bytes in data */
    size_t off;          /* bytes already written */
    unsigned char data[]; /* the bytes */
};

struct end;

/* One direction of a connection: bytes read from `from`, written to `to`. */
struct dir {
    struct end *from, *to;    /* the two sockets */
    struct chunk *head, *tail; /* queued chunks, oldest first */
    size_t queued;            /* bytes queued */
    int64_t delay_ns;         /* the delay of this direction */
    int eof;                  /* `from` said EOF */
    int64_t eof_ns;           /* when to pass the EOF on */
    int shut;                 /* shutdown(to, SHUT_WR) done */
};

/* One socket of a connection. */
struct end {
    struct conn *c;  /* the connection */
    int fd;          /* the socket */
    int readable;    /* epoll said readable; cleared at EAGAIN */
    int writable;    /* epoll said writable; cleared at EAGAIN */
};

struct conn {
    struct conn *next;      /* in the list of connections */
    struct end client;      /* the accepted socket */
    struct end server;      /* the socket to the target */
    struct dir up;          /* client -> server */
    struct dir down;        /* server -> client */
    int dead;               /* close at the end of this round */
    int id;                 /* for -v */
};

static volatile sig_atomic_t stop;
static int verbose;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int connect_target(const char *host, const char *port)
{
    struct addrinfo hints, *res, *ai;
    int fd = -1, one = 1;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        set_nonblock(fd);
    }
    return fd;
}

static void free_conn(struct conn *c)
{
    struct dir *d[2] = {&c->up, &c->down};
    int i;
    for (i = 0; i < 2; i++) {
        struct chunk *k;
        while ((k = d[i]->head)) {
            d[i]->head = k->next;
            free(k);
        }
    }
    close(c->client.fd);
    close(c->server.fd);
    if (verbose)
        fprintf(stderr, "latency_proxy: connection %d closed\n", c->id);
    free(c);
}

/* Reads what `from` has into the queue. */
static void dir_read(struct dir *d, int64_t now)
{
    static unsigned char buf[READ_CHUNK];
    while (d->from->readable && !d->eof && d->queued < MAX_QUEUED) {
        ssize_t n = read(d->from->fd, buf, sizeof buf);
        struct chunk *k;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                d->from->readable = 0;
                return;
            }
            d->from->c->dead = 1;
            return;
        }
        if (n == 0) {
            d->eof = 1;
            d->eof_ns = now + d->delay_ns;
            return;
        }
        k = malloc(sizeof *k + (size_t)n);
        if (!k) {
            d->from->c->dead = 1;
            return;
        }
        memcpy(k->data, buf, (size_t)n);
        k->len = (size_t)n;
        k->off = 0;
        k->next = NULL;
        k->release_ns = now + d->delay_ns;
        if (d->tail)
            d->tail->next = k;
        else
            d->head = k;
        d->tail = k;
        d->queued += (size_t)n;
    }
}

/* Writes the chunks whose time has come. */
static void dir_write(struct dir *d, int64_t now)
{
    while (d->head && d->head->release_ns <= now && d->to->writable) {
        struct chunk *k = d->head;
        ssize_t n = write(d->to->fd, k->data + k->off, k->len - k->off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                d->to->writable = 0;
                return;
            }
            d->to->c->dead = 1;
            return;
        }
        k->off += (size_t)n;
        d->queued -= (size_t)n;
        if (k->off == k->len) {
            d->head = k->next;
            if (!d->head)
                d->tail = NULL;
            free(k);
        }
    }
    if (!d->head && d->eof && !d->shut && d->eof_ns <= now) {
        shutdown(d->to->fd, SHUT_WR);
        d->shut = 1;
    }
}

/* The earliest time something of d is due, or INT64_MAX (now: a socket
 * left readable while its queue was full can be read again). */
static int64_t dir_next(const struct dir *d, int64_t now)
{
    if (d->from->readable && !d->eof && d->queued < MAX_QUEUED)
        return now;
    if (d->head && d->to->writable)
        return d->head->release_ns;
    if (!d->head && d->eof && !d->shut)
        return d->eof_ns;
    return INT64_MAX;
}

static void usage(void)
{
    fprintf(stderr, "usage: latency_proxy [-v] [-p] [--up MS] [--down MS] "
                    "LISTEN_PORT TARGET_HOST:PORT DELAY_MS\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    struct epoll_event ev, evs[64];
    struct conn *conns = NULL, **pp, *c;
    socklen_t sl = sizeof sa;
    const char *target, *colon;
    char thost[256];
    long up_ms = -1, down_ms = -1, delay_ms;
    int ls, ep, one = 1, print_port = 0, i, next_id = 0;

    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (!strcmp(argv[i], "-v"))
            verbose = 1;
        else if (!strcmp(argv[i], "-p"))
            print_port = 1;
        else if (!strcmp(argv[i], "--up") && i + 1 < argc)
            up_ms = atol(argv[++i]);
        else if (!strcmp(argv[i], "--down") && i + 1 < argc)
            down_ms = atol(argv[++i]);
        else
            usage();
    }
    if (argc - i != 3)
        usage();
    target = argv[i + 1];
    colon = strrchr(target, ':');
    delay_ms = atol(argv[i + 2]);
    if (!colon || colon == target || (size_t)(colon - target) >= sizeof thost ||
        delay_ms < 0)
        usage();
    memcpy(thost, target, (size_t)(colon - target));
    thost[colon - target] = '\0';
    if (up_ms < 0)
        up_ms = delay_ms;
    if (down_ms < 0)
        down_ms = delay_ms;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)atoi(argv[i]));
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 128) != 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) != 0) {
        perror("latency_proxy: listen");
        return 1;
    }
    if (print_port) {
        printf("%d\n", ntohs(sa.sin_port));
        fflush(stdout);
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);

    while (!stop) {
        int64_t now = now_ns(), next = INT64_MAX;
        int n, timeout;
        for (c = conns; c; c = c->next) {
            int64_t a = dir_next(&c->up, now), b = dir_next(&c->down, now);
            if (a < next)
                next = a;
            if (b < next)
                next = b;
        }
        timeout = next == INT64_MAX ? -1
                  : next <= now    ? 0
                                   : (int)((next - now + 999999) / 1000000);
        n = epoll_wait(ep, evs, 64, timeout);
        if (n < 0 && errno != EINTR) {
            perror("latency_proxy: epoll_wait");
            return 1;
        }
        for (i = 0; i < n; i++) {
            struct end *e = evs[i].data.ptr;
            if (!e) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
                    int sfd = connect_target(thost, colon + 1);
                    if (sfd < 0 || !(c = calloc(1, sizeof *c))) {
                        if (verbose)
                            fprintf(stderr, "latency_proxy: connect %s failed\n", target);
                        if (sfd >= 0)
                            close(sfd);
                        close(fd);
                        continue;
                    }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c->id = next_id++;
                    c->client.c = c->server.c = c;
                    c->client.fd = fd;
                    c->server.fd = sfd;
                    c->up.from = &c->client;
                    c->up.to = &c->server;
                    c->up.delay_ns = up_ms * 1000000;
                    c->down.from = &c->server;
                    c->down.to = &c->client;
                    c->down.delay_ns = down_ms * 1000000;
                    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
                    ev.data.ptr = &c->client;
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                    ev.data.ptr = &c->server;
                    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
                    c->next = conns;
                    conns = c;
                    if (verbose)
                        fprintf(stderr, "latency_proxy: connection %d to %s\n", c->id,
                                target);
                }
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                e->readable = 1;
            if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                e->writable = 1;
        }
        now = now_ns();
        for (pp = &conns; (c = *pp);) {
            dir_read(&c->up, now);
            dir_read(&c->down, now);
            dir_write(&c->up, now);
            dir_write(&c->down, now);
            if (c->up.shut && c->down.shut)
                c->dead = 1;
            if (c->dead) {
                *pp = c->next;
                free_conn(c);
            } else {
                pp = &c->next;
            }
        }
    }
    while ((c = conns)) {
        conns = c->next;
        free_conn(c);
    }
    close(ep);
    close(ls);
    return 0;
}
