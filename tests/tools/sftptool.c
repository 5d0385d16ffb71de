/*
 * sftptool.c - a small driver of the SFTP client layer
 * (src/adapter/sftp/sftp.h) for the integration tests
 * (tests/integration/test_sftp_client.py). Not installed.
 *
 *   sftptool [OPTIONS] URL COMMAND [ARGS]
 *
 * Options: --config FILE, --identity FILE (repeatable), --known-hosts FILE,
 * --accept-new, --password-env VAR, --sessions N, --timeout MS, --chunk N,
 * --ciphers LIST, --macs LIST (what the sessions offer, preferred first),
 * --ahead N (READs and WRITEs in flight), --stripe K, --stripe-min BYTES,
 * --stripe-rtt US (a file of at least BYTES read through K sessions when
 * an OPEN took US or more; -1: always), --pause-ms MS (get sleeps MS after
 * each MiB: a slow reader), --retries N (a command failing
 * with a retry-class error is run again, after retry_after_ms or a
 * doubling wait), --threads N (for stress), --wait-rounds (stress reads a
 * line of stdin between rounds).
 *
 * Commands (paths are the server's; output is one JSON object per line,
 * names and targets in hex):
 *   info                          the connection: host, port, user, auth, extensions,
 *                                 the cipher and MAC negotiated (libssh2), the
 *                                 transport (TREEMIG_SFTP_TRANSPORT chooses it)
 *   ls PATH [SKIP]                every child: {"name":hex,"type","size","mtime","mode","uid","gid"},
 *                                 then {"batches":N,"count":N}
 *   lstat PATH | stat PATH        {"type",...}
 *   readlink PATH                 {"target":hex}
 *   get PATH LOCAL                reads the file into LOCAL: {"bytes","seconds","mbps",
 *                                 "sends","striped","extra_streams"} (sends: batches of
 *                                 requests it took; striped: 1 when it was read in
 *                                 stripes, extra_streams: the sessions that helped)
 *   put LOCAL PATH [--mode M] [--mtime S] [--noreplace] [--fsync] [--pause-after BYTES]
 *       [--key HEX]               writes LOCAL to PATH through a temporary named from
 *                                 the 16-byte key (random without --key), printing
 *                                 {"tmp":NAME} once it is created, then get's line; with
 *                                 --pause-after, prints {"paused":BYTES} and sleeps
 *                                 forever once that many bytes are written (for kill -9)
 *   mkdir PATH MODE | symlink PATH TARGET | rm PATH
 *   rename FROM TO [--replace]
 *   setstat PATH [--mode M] [--mtime S] [--nofollow]
 *   statvfs PATH
 *   stress PATH N [ROUNDS]        --threads threads each lstat PATH and list its folder N times;
 *                                 ROUNDS times, with new threads each round (a line per round)
 *
 *
 * Exit 3: the pool left a child process (an ssh of the openssh transport)
 * running or unreaped.
 *
 *   sftptool --tmp-names KEY PATH  (no server) the names of the temporaries of
 *                                 the node at PATH under the run key KEY (hex)
 *
 * Exit: 0 done, 1 fatal-class error, 3 node-class error, 75 retry-class
 * error (after the retries), 2 usage. An error is printed on stderr as
 * "error NAME class=CLASS fx=N: message".
 */
#include "adapter/sftp/sftp.h"

#include "treemig.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_IDS 8

struct tool {
    struct tm__sftp_opts o;          /* pool options */
    const char *ids[MAX_IDS];        /* --identity values */
    int retries;                     /* --retries */
    int threads;                     /* --threads */
    int wait_rounds;                 /* --wait-rounds: stress reads a line
                                        of stdin between rounds */
    int pause_ms;                    /* --pause-ms: get sleeps this long
                                        after each MiB (a slow reader) */
    struct tm__sftp_pool *pool;      /* the pool */
};

static const char *class_name(int cls)
{
    switch (cls) {
    case TM_ERR_RETRY:
        return "retry";
    case TM_ERR_NODE:
        return "node";
    case TM_ERR_FATAL:
        return "fatal";
    default:
        return "throttle";
    }
}

static int report(const struct tm__sftp_err *e)
{
    fprintf(stderr, "error %s class=%s fx=%d: %s\n", tm_err_name(e->code),
            class_name(e->cls), e->fx, e->msg);
    switch (e->cls) {
    case TM_ERR_RETRY:
        return 75;
    case TM_ERR_NODE:
        return 3;
    default:
        return 1;
    }
}

/* Fills e with a failure of the tool itself; returns code. */
static int tool_fail(struct tm__sftp_err *e, int code, int cls, const char *msg)
{
    memset(e, 0, sizeof *e);
    e->code = code;
    e->cls = cls;
    e->fx = -1;
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    return code;
}

static void put_hex(const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i;
    for (i = 0; i < n; i++)
        printf("%02x", b[i]);
}

static void print_attr(const struct tm__sftp_attr *a)
{
    printf("\"type\":\"%s\",\"size\":%llu,\"mtime\":%lld,\"mode\":%u,\"uid\":%u,\"gid\":%u",
           tm__type_names[a->type], (unsigned long long)a->size, (long long)a->mtime,
           a->mode, a->uid, a->gid);
}

static int cmd_ls(struct tool *t, const char *path, uint64_t skip, struct tm__sftp_err *e)
{
    struct tm__sftp_dir *d;
    const struct tm__sftp_dirent *ents;
    size_t n, i;
    long long batches = 0, count = 0;
    int rc = tm__sftp_opendir(t->pool, path, skip, &d, e);
    if (rc)
        return rc;
    for (;;) {
        rc = tm__sftp_readdir(d, &ents, &n, e);
        if (rc || !n)
            break;
        batches++;
        for (i = 0; i < n; i++) {
            printf("{\"name\":\"");
            put_hex(ents[i].name, ents[i].name_len);
            printf("\",");
            print_attr(&ents[i].attr);
            printf("}\n");
            count++;
        }
    }
    if (!rc)
        printf("{\"batches\":%lld,\"count\":%lld,\"pos\":%llu}\n", batches, count,
               (unsigned long long)tm__sftp_dir_pos(d));
    tm__sftp_closedir(d);
    return rc;
}

static int cmd_get(struct tool *t, const char *path, const char *local,
                   struct tm__sftp_err *e)
{
    struct tm__sftp_rfile *f;
    static char buf[1 << 20];
    int64_t n, total = 0, t0 = tm__now_ns();
    double secs;
    struct tm__sftp_info info;
    uint64_t sends, striped, extra;
    int fd, rc;

    fd = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(local);
        return TM_EIO;
    }
    tm__sftp_pool_info(t->pool, &info);
    sends = info.sends;
    striped = info.striped;
    extra = info.stripe_extra;
    rc = tm__sftp_open_read(t->pool, path, &f, NULL, e);
    if (rc)
        goto out;
    while ((n = tm__sftp_read(f, buf, sizeof buf, e)) > 0) {
        if (tm__write_full(fd, buf, (size_t)n) != 0) {
            e->code = TM_EIO;
            e->cls = TM_ERR_FATAL;
            snprintf(e->msg, sizeof e->msg, "write %s: failed", local);
            n = TM_EIO;
            break;
        }
        total += n;
        if (t->pause_ms)
            tm__sleep_ms(t->pause_ms);
    }
    tm__sftp_close_read(f);
    if (n < 0)
        rc = (int)n;
    secs = (double)(tm__now_ns() - t0) / 1e9;
    tm__sftp_pool_info(t->pool, &info);
    if (!rc)
        printf("{\"bytes\":%lld,\"seconds\":%.3f,\"mbps\":%.1f,\"sends\":%llu,"
               "\"striped\":%llu,\"extra_streams\":%llu}\n",
               (long long)total, secs, secs > 0 ? (double)total / secs / 1e6 : 0.0,
               (unsigned long long)(info.sends - sends),
               (unsigned long long)(info.striped - striped),
               (unsigned long long)(info.stripe_extra - extra));
out:
    close(fd);
    return rc;
}

static int cmd_put(struct tool *t, int argc, char **argv, struct tm__sftp_err *e)
{
    const char *local = argv[0], *path = argv[1];
    struct tm__sftp_wfile *f;
    static char buf[1 << 20];
    uint32_t mode = 0644;
    int64_t mtime = -1, pause_after = -1, total = 0, t0 = tm__now_ns();
    unsigned flags = TM_SFTP_REPLACE;
    int fsync = 0, fd, rc, i, k;
    ssize_t n;
    double secs;
    struct tm__sftp_info info;
    uint64_t sends;
    const char *key_hex = NULL;
    unsigned char key[TM_KEY_LEN];
    char names[TM_TMP_TRIES][TM_TMP_NAME_MAX];
    const char *namev[TM_TMP_TRIES];

    for (i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--mode") && i + 1 < argc)
            mode = (uint32_t)strtoul(argv[++i], NULL, 8);
        else if (!strcmp(argv[i], "--mtime") && i + 1 < argc)
            mtime = strtoll(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--noreplace"))
            flags = 0;
        else if (!strcmp(argv[i], "--fsync"))
            fsync = 1;
        else if (!strcmp(argv[i], "--pause-after") && i + 1 < argc)
            pause_after = strtoll(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--key") && i + 1 < argc)
            key_hex = argv[++i];
    }
    if (key_hex) {
        for (k = 0; k < TM_KEY_LEN; k++) {
            char hx[3] = { 0, 0, 0 }, *end;
            if (strlen(key_hex) < (size_t)(2 * k + 2))
                return tool_fail(e, TM_EINVAL, TM_ERR_FATAL, "put: --key takes 32 hex digits");
            memcpy(hx, key_hex + 2 * k, 2);
            key[k] = (unsigned char)strtoul(hx, &end, 16);
            if (*end)
                return tool_fail(e, TM_EINVAL, TM_ERR_FATAL, "put: --key takes 32 hex digits");
        }
    } else if (tm__random(key, sizeof key)) {
        return tool_fail(e, TM_EIO, TM_ERR_FATAL, "put: no random key");
    }
    for (k = 0; k < TM_TMP_TRIES; k++) {
        if (tm__tmp_name(key, path, k, names[k], sizeof names[k]))
            return tool_fail(e, TM_ENAMETOOLONG, TM_ERR_NODE, "put: name too long");
        namev[k] = names[k];
    }
    fd = open(local, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(local);
        return TM_EIO;
    }
    if (mtime < 0)
        mtime = tm__wall_ns() / 1000000000;
    tm__sftp_pool_info(t->pool, &info);
    sends = info.sends;
    rc = tm__sftp_open_write(t->pool, path, namev, TM_TMP_TRIES, &f, e);
    if (rc)
        goto out;
    printf("{\"tmp\":\"%s\"}\n", tm__sftp_wfile_tmp(f));
    fflush(stdout);
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        int64_t w = tm__sftp_write(f, buf, (size_t)n, e);
        if (w < 0) {
            rc = (int)w;
            break;
        }
        total += n;
        if (pause_after >= 0 && total >= pause_after) {
            printf("{\"paused\":%lld}\n", (long long)total);
            fflush(stdout);
            for (;;)
                pause();
        }
    }
    if (rc) {
        tm__sftp_abort(f);
        goto out;
    }
    rc = tm__sftp_commit(f, mode, mtime, fsync, flags, e);
    secs = (double)(tm__now_ns() - t0) / 1e9;
    tm__sftp_pool_info(t->pool, &info);
    if (!rc)
        printf("{\"bytes\":%lld,\"seconds\":%.3f,\"mbps\":%.1f,\"sends\":%llu}\n",
               (long long)total, secs, secs > 0 ? (double)total / secs / 1e6 : 0.0,
               (unsigned long long)(info.sends - sends));
out:
    close(fd);
    return rc;
}

static int cmd_setstat(struct tool *t, int argc, char **argv, struct tm__sftp_err *e)
{
    struct tm__sftp_attr a;
    unsigned flags = 0;
    int i;
    memset(&a, 0, sizeof a);
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
            a.flags |= TM_SFTP_A_PERM;
            a.mode = (uint32_t)strtoul(argv[++i], NULL, 8);
        } else if (!strcmp(argv[i], "--mtime") && i + 1 < argc) {
            a.flags |= TM_SFTP_A_TIME;
            a.mtime = a.atime = strtoll(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--nofollow")) {
            flags |= TM_SFTP_NOFOLLOW;
        }
    }
    return tm__sftp_setstat(t->pool, argv[0], &a, flags, e);
}

struct stress_arg {
    struct tool *t;       /* the tool */
    const char *path;     /* the node to lstat */
    const char *dir;      /* its folder */
    int n;                /* rounds */
    int rc;               /* the first failure */
    struct tm__sftp_err e; /* its detail */
};

static void *stress_main(void *arg)
{
    struct stress_arg *s = arg;
    int i;
    for (i = 0; i < s->n && !s->rc; i++) {
        struct tm__sftp_attr a;
        struct tm__sftp_dir *d;
        const struct tm__sftp_dirent *ents;
        size_t n;
        s->rc = tm__sftp_lstat(s->t->pool, s->path, &a, &s->e);
        if (s->rc)
            break;
        s->rc = tm__sftp_opendir(s->t->pool, s->dir, 0, &d, &s->e);
        if (s->rc)
            break;
        while ((s->rc = tm__sftp_readdir(d, &ents, &n, &s->e)) == 0 && n)
            ;
        tm__sftp_closedir(d);
    }
    return NULL;
}

/* stress PATH N [ROUNDS]: --threads threads lstat PATH and list its
 * folder N times each; ROUNDS times, each round with new threads (the
 * sessions, and the masters of the openssh transport, that one round's
 * threads opened serve the next one's after those threads ended). A line
 * per round. */
static int cmd_stress(struct tool *t, const char *path, int n, int rounds,
                      struct tm__sftp_err *e)
{
    struct stress_arg *a = calloc((size_t)t->threads, sizeof *a);
    pthread_t *th = calloc((size_t)t->threads, sizeof *th);
    struct tm__buf dir = TM__BUF_INIT;
    struct tm__sftp_info info;
    const char *slash = strrchr(path, '/');
    int i, rc = 0, round;

    if (!a || !th || tm__buf_add(&dir, path, slash && slash != path ? (size_t)(slash - path) : 1)) {
        free(a);
        free(th);
        fprintf(stderr, "stress: out of memory\n");
        exit(1);
    }
    for (round = 1; round <= rounds && !rc; round++) {
        memset(a, 0, (size_t)t->threads * sizeof *a);
        for (i = 0; i < t->threads; i++) {
            a[i].t = t;
            a[i].path = path;
            a[i].dir = dir.buf;
            a[i].n = n;
            pthread_create(&th[i], NULL, stress_main, &a[i]);
        }
        for (i = 0; i < t->threads; i++) {
            pthread_join(th[i], NULL);
            if (a[i].rc && !rc) {
                rc = a[i].rc;
                *e = a[i].e;
            }
        }
        tm__sftp_pool_info(t->pool, &info);
        if (!rc)
            printf("{\"round\":%d,\"threads\":%d,\"rounds\":%d,\"connects\":%llu}\n",
                   round, t->threads, n, (unsigned long long)info.connects);
        fflush(stdout);
        if (!rc && t->wait_rounds && round < rounds) {
            /* the test does something to the idle sessions meanwhile */
            char line[16];
            if (!fgets(line, sizeof line, stdin))
                break;
        }
    }
    tm__buf_release(&dir);
    free(a);
    free(th);
    return rc;
}

static int run(struct tool *t, int argc, char **argv, struct tm__sftp_err *e)
{
    const char *cmd = argv[0];
    struct tm__sftp_attr a;
    int rc;

#define NEED(k)                                                      \
    do {                                                             \
        if (argc < (k) + 1) {                                        \
            fprintf(stderr, "sftptool %s: missing arguments\n", cmd); \
            exit(2);                                                 \
        }                                                            \
    } while (0)
    if (!strcmp(cmd, "info")) {
        struct tm__sftp_info i;
        tm__sftp_pool_info(t->pool, &i);
        printf("{\"host\":\"%s\",\"port\":%d,\"user\":\"%s\",\"root\":\"%s\","
               "\"auth\":\"%s\",\"ext\":%u,\"chunk_read\":%u,\"chunk_write\":%u,"
               "\"connects\":%llu,\"cipher\":\"%s\",\"mac\":\"%s\","
               "\"transport\":\"%s\"}\n",
               i.host, i.port, i.user, i.root, i.auth_used, i.ext, i.chunk_read,
               i.chunk_write, (unsigned long long)i.connects, i.cipher, i.mac,
               i.transport);
        return 0;
    }
    if (!strcmp(cmd, "ls")) {
        NEED(1);
        return cmd_ls(t, argv[1], argc > 2 ? strtoull(argv[2], NULL, 10) : 0, e);
    }
    if (!strcmp(cmd, "lstat") || !strcmp(cmd, "stat")) {
        NEED(1);
        rc = cmd[0] == 'l' ? tm__sftp_lstat(t->pool, argv[1], &a, e)
                           : tm__sftp_stat(t->pool, argv[1], &a, e);
        if (!rc) {
            printf("{");
            print_attr(&a);
            printf("}\n");
        }
        return rc;
    }
    if (!strcmp(cmd, "readlink")) {
        struct tm__buf b = TM__BUF_INIT;
        NEED(1);
        rc = tm__sftp_readlink(t->pool, argv[1], &b, e);
        if (!rc) {
            printf("{\"target\":\"");
            put_hex(b.buf, b.len);
            printf("\"}\n");
        }
        tm__buf_release(&b);
        return rc;
    }
    if (!strcmp(cmd, "get")) {
        NEED(2);
        return cmd_get(t, argv[1], argv[2], e);
    }
    if (!strcmp(cmd, "put")) {
        NEED(2);
        return cmd_put(t, argc - 1, argv + 1, e);
    }
    if (!strcmp(cmd, "mkdir")) {
        NEED(2);
        return tm__sftp_mkdir(t->pool, argv[1], (uint32_t)strtoul(argv[2], NULL, 8), e);
    }
    if (!strcmp(cmd, "symlink")) {
        NEED(2);
        return tm__sftp_symlink(t->pool, argv[1], argv[2], e);
    }
    if (!strcmp(cmd, "rm")) {
        NEED(1);
        return tm__sftp_remove(t->pool, argv[1], e);
    }
    if (!strcmp(cmd, "rename")) {
        NEED(2);
        return tm__sftp_rename(t->pool, argv[1], argv[2],
                               argc > 3 && !strcmp(argv[3], "--replace") ? TM_SFTP_REPLACE : 0,
                               e);
    }
    if (!strcmp(cmd, "setstat")) {
        NEED(1);
        return cmd_setstat(t, argc - 1, argv + 1, e);
    }
    if (!strcmp(cmd, "statvfs")) {
        struct tm__sftp_vfs v;
        NEED(1);
        rc = tm__sftp_statvfs(t->pool, argv[1], &v, e);
        if (!rc)
            printf("{\"frsize\":%llu,\"blocks\":%llu,\"bavail\":%llu,\"namemax\":%llu}\n",
                   (unsigned long long)v.frsize, (unsigned long long)v.blocks,
                   (unsigned long long)v.bavail, (unsigned long long)v.namemax);
        return rc;
    }
    if (!strcmp(cmd, "stress")) {
        NEED(2);
        return cmd_stress(t, argv[1], atoi(argv[2]), argc > 3 ? atoi(argv[3]) : 1, e);
    }
    fprintf(stderr, "sftptool: unknown command %s\n", cmd);
    exit(2);
#undef NEED
}

/* Exit 3 when the pool left a child behind, running or a zombie (the
 * openssh transport must reap each ssh it started). */
static int reaped(int rc)
{
    int st;
    pid_t r = waitpid(-1, &st, WNOHANG);
    if (r < 0 && errno == ECHILD)
        return rc;
    fprintf(stderr, "sftptool: a child process of the pool was left %s\n",
            r > 0 ? "unreaped (zombie)" : "running");
    return 3;
}

int main(int argc, char **argv)
{
    struct tool t;
    struct tm__sftp_err e;
    const char *url;
    int i, rc, attempt;

    memset(&t, 0, sizeof t);
    tm__sftp_opts_init(&t.o);
    t.threads = 4;
    if (argc == 4 && !strcmp(argv[1], "--tmp-names")) {
        /* no server: the names a run key gives the temporaries of a node */
        unsigned char key[TM_KEY_LEN];
        char name[TM_TMP_NAME_MAX];
        for (i = 0; i < TM_KEY_LEN; i++) {
            char hx[3] = { 0, 0, 0 }, *end;
            if (strlen(argv[2]) != 2 * TM_KEY_LEN)
                return 2;
            memcpy(hx, argv[2] + 2 * i, 2);
            key[i] = (unsigned char)strtoul(hx, &end, 16);
            if (*end)
                return 2;
        }
        for (i = 0; i < TM_TMP_TRIES; i++) {
            if (tm__tmp_name(key, argv[3], i, name, sizeof name))
                return 2;
            printf("%s\n", name);
        }
        return 0;
    }
    for (i = 1; i < argc && !strncmp(argv[i], "--", 2); i++) {
        const char *k = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--accept-new")) {
            t.o.accept_new = 1;
            continue;
        }
        if (!strcmp(k, "--wait-rounds")) {
            t.wait_rounds = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "sftptool: %s needs a value\n", k);
            return 2;
        }
        i++;
        if (!strcmp(k, "--config"))
            t.o.ssh_config = v;
        else if (!strcmp(k, "--identity") && t.o.n_identities < MAX_IDS)
            t.ids[t.o.n_identities++] = v;
        else if (!strcmp(k, "--known-hosts"))
            t.o.known_hosts = v;
        else if (!strcmp(k, "--password-env"))
            t.o.password_env = v;
        else if (!strcmp(k, "--sessions"))
            t.o.max_sessions = atoi(v);
        else if (!strcmp(k, "--timeout"))
            t.o.timeout_ms = atoi(v);
        else if (!strcmp(k, "--ciphers"))
            t.o.ciphers = v;
        else if (!strcmp(k, "--macs"))
            t.o.macs = v;
        else if (!strcmp(k, "--chunk"))
            t.o.chunk = (uint32_t)atoi(v);
        else if (!strcmp(k, "--ahead"))
            t.o.read_ahead = t.o.write_behind = atoi(v);
        else if (!strcmp(k, "--stripe"))
            t.o.stripe_streams = atoi(v);
        else if (!strcmp(k, "--stripe-min"))
            t.o.stripe_min = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--stripe-rtt"))
            t.o.stripe_rtt_us = atoi(v);
        else if (!strcmp(k, "--pause-ms"))
            t.pause_ms = atoi(v);
        else if (!strcmp(k, "--retries"))
            t.retries = atoi(v);
        else if (!strcmp(k, "--threads"))
            t.threads = atoi(v);
        else {
            fprintf(stderr, "sftptool: unknown option %s\n", k);
            return 2;
        }
    }
    if (argc - i < 2) {
        fprintf(stderr, "usage: sftptool [OPTIONS] URL COMMAND [ARGS]\n");
        return 2;
    }
    t.o.identities = t.ids;
    url = argv[i++];
    rc = tm__sftp_pool_open(url, &t.o, &t.pool, &e);
    if (rc)
        return reaped(report(&e));
    for (attempt = 0;; attempt++) {
        memset(&e, 0, sizeof e);
        rc = run(&t, argc - i, argv + i, &e);
        if (!rc || e.cls != TM_ERR_RETRY || attempt >= t.retries)
            break;
        fprintf(stderr, "retry %d: %s\n", attempt + 1, e.msg);
        tm__sleep_ms(e.retry_after_ms > 0 ? e.retry_after_ms : (int64_t)50 << attempt);
    }
    if (rc) {
        rc = report(&e);
    } else if (attempt) {
        struct tm__sftp_info info;
        tm__sftp_pool_info(t.pool, &info);
        printf("{\"retries\":%d,\"connects\":%llu}\n", attempt,
               (unsigned long long)info.connects);
    }
    tm__sftp_pool_free(t.pool);
    return reaped(rc);
}
