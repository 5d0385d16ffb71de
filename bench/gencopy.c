/* gencopy OUTDIR FILES FOLDERS SEED: OUTDIR/src with FOLDERS folders (a random
 * recursive tree: parents drawn among the earlier folders with a skew towards
 * recent ones, so depths vary up to a few dozen) and FILES files spread over
 * them with a skew (a few crowded folders), 0-4096 bytes (skewed small),
 * random mtimes with nanoseconds, mostly 0644 (some 0600 and 0755); 0.5% of
 * the files are symlinks to a sibling; 1% of the names hold spaces, 0.5%
 * UTF-8. Deterministic for given arguments. Prints key=value statistics. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t s;
static uint64_t rnd(void) { s ^= s >> 12; s ^= s << 25; s ^= s >> 27; return s * 2685821657736338717ULL; }
static double urand(void) { return (rnd() >> 11) * (1.0 / 9007199254740992.0); }
static void die(const char *w, const char *p) { fprintf(stderr, "gencopy: %s %s: %s\n", w, p, strerror(errno)); exit(1); }
static struct timespec rtime(void) {
    struct timespec t = {1546300800 + (int64_t)(rnd() % (5LL * 365 * 86400)), (long)(rnd() % 1000000000)};
    return t;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: gencopy OUTDIR FILES FOLDERS SEED\n"); return 2; }
    long nfiles = atol(argv[2]), nfold = atol(argv[3]) + 1; /* + the root */
    s = strtoull(argv[4], NULL, 10) * 0x9E3779B97F4A7C15ULL + 1;
    char **path = calloc((size_t)nfold, sizeof *path);
    int *depth = calloc((size_t)nfold, sizeof *depth);
    char *p = malloc(16384), data[8192];
    for (int i = 0; i < (int)sizeof data; i++) data[i] = "abcdefghijklmnopqrstuvwxyz0123456789 \n"[i % 38];
    if (!path || !depth || !p) die("calloc", "");
    snprintf(p, 16384, "%s/src", argv[1]);
    if (mkdir(p, 0755) != 0) die("mkdir", p);
    path[0] = strdup(p);
    int maxd = 0;
    for (long i = 1; i < nfold; i++) {
        double u = urand();
        long par = (long)(i * (1.0 - u * u * u)); /* skew towards recent: deeper trees */
        if (par >= i) par = i - 1;
        uint64_t r = rnd() % 1000;
        char name[64];
        if (r < 10) snprintf(name, sizeof name, "dir %ld copy", i);
        else if (r < 15) snprintf(name, sizeof name, "r\xc3\xa9pertoire_%ld", i);
        else snprintf(name, sizeof name, "dir_%ld", i);
        if (depth[par] >= 40) par = 0; /* keep paths well below PATH_MAX */
        snprintf(p, 16384, "%s/%s", path[par], name);
        if (mkdir(p, 0755) != 0) die("mkdir", p);
        path[i] = strdup(p);
        depth[i] = depth[par] + 1;
        if (depth[i] > maxd) maxd = depth[i];
    }
    long links = 0;
    long long bytes = 0;
    for (long k = 0; k < nfiles; k++) {
        double u = urand();
        long f = (long)(nfold * u * sqrt(u)); /* skewed: early folders get more */
        if (f >= nfold) f = nfold - 1;
        uint64_t r = rnd() % 1000;
        char name[64];
        if (r < 10) snprintf(name, sizeof name, "file %ld (1).txt", k);
        else if (r < 15) snprintf(name, sizeof name, "\xc3\xa9t\xc3\xa9_%ld.dat", k);
        else snprintf(name, sizeof name, "file_%ld.txt", k);
        snprintf(p, 16384, "%s/%s", path[f], name);
        struct timespec ts[2];
        ts[0] = ts[1] = rtime();
        if (rnd() % 1000 < 5 && k > 0) {
            char target[64];
            snprintf(target, sizeof target, "file_%ld.txt", k - 1);
            if (symlink(target, p) != 0) die("symlink", p);
            if (utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW) != 0) die("utimensat", p);
            links++;
            continue;
        }
        double v = urand();
        size_t size = (size_t)(v * v * 4097);
        if (size > 4096) size = 4096;
        uint64_t m = rnd() % 100;
        mode_t mode = m < 2 ? 0600 : m < 3 ? 0755 : 0644;
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd < 0) die("open", p);
        if (size && write(fd, data + (k % 64), size) != (ssize_t)size) die("write", p);
        if (fchmod(fd, mode) != 0 || futimens(fd, ts) != 0) die("futimens", p);
        if (close(fd) != 0) die("close", p);
        bytes += (long long)size;
    }
    for (long i = nfold - 1; i >= 1; i--) { /* children before parents */
        struct timespec ts[2];
        ts[0] = ts[1] = rtime();
        if (utimensat(AT_FDCWD, path[i], ts, 0) != 0) die("utimensat", path[i]);
    }
    printf("folders=%ld\nfiles=%ld\nsymlinks=%ld\nbytes=%lld\nmax_depth=%d\n", nfold - 1,
           nfiles - links, links, bytes, maxd);
    return 0;
}
