/* gentree: build a benchmark tree pair for treemig (bench/discover.sh).
 *
 *   gentree [--stats-only] OUTDIR ENTRIES [SEED]
 *
 * Creates OUTDIR/src with about ENTRIES entries (folders + files, root not
 * counted) and OUTDIR/dst, a copy of it with mtimes preserved, then mutated:
 *   - about 0.3% of folders at depth >= 3 missing (whole subtree),
 *   - files missing so that about 10% of source files are absent in all,
 *   - about 2% of files with another size (and another mtime),
 *   - about 1% destination-only files.
 * Shape: folders 1..6 levels deep, drawn level by level with a skewed choice
 * of parent (varying fan-out, some empty folders), files spread over folders
 * with a heavy-tailed weight (a few big flat folders), sizes 0..4096 bytes
 * skewed small. Names are mostly ASCII, a few with spaces or UTF-8.
 * Deterministic for a given ENTRIES and SEED. Prints key=value statistics;
 * --stats-only prints them without touching the disk.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MAXDEPTH 6

static uint64_t rng_state;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}
static double urand(void) { return (rnd() >> 11) * (1.0 / 9007199254740992.0); }

static void die(const char *what, const char *path) {
    fprintf(stderr, "gentree: %s %s: %s\n", what, path ? path : "", strerror(errno));
    exit(1);
}

typedef struct {
    int parent;
    int depth;
    int missing;   /* absent on dst (itself or an ancestor) */
    long nfiles;
    char *path;    /* relative, "" for the root */
    double w;
} folder;

static const char *fwords[] = {"projects", "data", "src", "docs", "images", "backup", "archive",
                               "reports", "clients", "2019", "2020", "2021", "2022", "2023",
                               "photos", "scans", "invoices", "build", "assets", "misc"};
static const char *fext[] = {"txt", "jpg", "pdf", "c", "h", "json", "xml", "png", "docx", "csv",
                             "log", "md"};
static const char *fbase[] = {"file", "img", "report", "note", "scan", "part", "page", "doc"};

static char buf[8192];
static int dry; /* --stats-only: compute the statistics, touch nothing */

static int mkdir_(const char *path, mode_t mode) { return dry ? 0 : mkdir(path, mode); }
static int utimensat_(const char *path, const struct timespec ts[2]) {
    return dry ? 0 : utimensat(AT_FDCWD, path, ts, 0);
}

static void write_file(const char *path, size_t size, const struct timespec *mt) {
    if (dry) return;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) die("open", path);
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, buf + (off % 64), size - off);
        if (n < 0) die("write", path);
        off += (size_t)n;
    }
    struct timespec ts[2] = {mt[0], mt[0]};
    if (futimens(fd, ts) != 0) die("futimens", path);
    if (close(fd) != 0) die("close", path);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--stats-only") == 0) {
        dry = 1;
        argv++;
        argc--;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: gentree [--stats-only] OUTDIR ENTRIES [SEED]\n");
        return 2;
    }
    const char *out = argv[1];
    long entries = atol(argv[2]);
    rng_state = argc > 3 ? strtoull(argv[3], NULL, 10) : 42;
    if (rng_state == 0) rng_state = 42;
    if (entries < 20) entries = 20;
    for (int i = 0; i < (int)sizeof buf; i++) buf[i] = "abcdefghijklmnopqrstuvwxyz0123456789 \n"[i % 38];

    /* ---- folders: counts per depth, parents chosen with skew ---- */
    long nfold = entries / 12;
    if (nfold < 6) nfold = 6;
    long nfiles = entries - nfold;
    static const double share[MAXDEPTH + 1] = {0, 0.001, 0.02, 0.12, 0.30, 0.35, 0.209};
    long per[MAXDEPTH + 1] = {0};
    long acc = 0;
    for (int d = 1; d <= MAXDEPTH; d++) {
        per[d] = (long)(share[d] * nfold);
        if (per[d] < 1) per[d] = 1;
        if (d == 1 && per[d] < 4) per[d] = 4;
        acc += per[d];
    }
    per[MAXDEPTH] += nfold - acc; /* rounding goes to the deepest level */
    if (per[MAXDEPTH] < 1) { per[MAXDEPTH] = 1; }
    nfold = 0;
    for (int d = 1; d <= MAXDEPTH; d++) nfold += per[d];
    nfiles = entries - nfold;
    if (nfiles < 0) nfiles = 0;

    folder *F = calloc((size_t)nfold + 1, sizeof *F);
    if (!F) die("calloc", NULL);
    F[0].parent = -1;
    F[0].path = strdup("");
    long n = 1, level_start = 0, level_len = 1;
    long missing_folders = 0;
    for (int d = 1; d <= MAXDEPTH; d++) {
        long start = n;
        for (long k = 0; k < per[d]; k++, n++) {
            double u = urand();
            long p = level_start + (long)(level_len * u * u); /* skew: early parents get more */
            F[n].parent = (int)p;
            F[n].depth = d;
            const char *w = fwords[rnd() % (sizeof fwords / sizeof *fwords)];
            char name[96];
            uint64_t r = rnd() % 1000;
            if (r < 15)
                snprintf(name, sizeof name, "%s copy %ld", w, n);
            else if (r < 20)
                snprintf(name, sizeof name, "r\xc3\xa9sum\xc3\xa9_%s_%ld", w, n);
            else
                snprintf(name, sizeof name, "%s_%ld", w, n);
            size_t len = strlen(F[p].path) + 1 + strlen(name) + 1;
            F[n].path = malloc(len);
            snprintf(F[n].path, len, "%s%s%s", F[p].path, *F[p].path ? "/" : "", name);
            F[n].missing = F[p].missing || (d >= 3 && rnd() % 1000 < 3);
            if (F[n].missing && !F[p].missing) missing_folders++;
        }
        level_start = start;
        level_len = per[d];
    }
    long total_folders = n; /* including root */

    /* ---- files per folder: heavy-tailed weights ---- */
    double W = 0;
    for (long i = 0; i < total_folders; i++) {
        double e = -log(1.0 - urand() * 0.999999);
        F[i].w = (i == 0) ? 0.2 : 0.02 + e * e;
        W += F[i].w;
    }
    long assigned = 0;
    for (long i = 0; i < total_folders; i++) {
        F[i].nfiles = (long)(F[i].w / W * nfiles);
        assigned += F[i].nfiles;
    }
    while (assigned < nfiles) {
        F[1 + rnd() % (total_folders - 1)].nfiles++;
        assigned++;
    }

    /* ---- create folders ---- */
    char *p1 = malloc(8192), *p2 = malloc(8192);
    snprintf(p1, 8192, "%s/src", out);
    snprintf(p2, 8192, "%s/dst", out);
    if (mkdir_(p1, 0755) != 0) die("mkdir", p1);
    if (mkdir_(p2, 0755) != 0) die("mkdir", p2);
    long dst_folders = 0, src_entries_under_missing = 0;
    for (long i = 1; i < total_folders; i++) {
        snprintf(p1, 8192, "%s/src/%s", out, F[i].path);
        if (mkdir_(p1, 0755) != 0) die("mkdir", p1);
        if (!F[i].missing) {
            snprintf(p2, 8192, "%s/dst/%s", out, F[i].path);
            if (mkdir_(p2, 0755) != 0) die("mkdir", p2);
            dst_folders++;
        } else {
            src_entries_under_missing++;
        }
    }

    /* ---- files ---- */
    const int64_t base = 1546300800; /* 2019-01-01 */
    long files_missing = 0, files_changed = 0, files_same = 0, dst_only = 0;
    long long src_bytes = 0, dst_bytes = 0;
    long seq = 0;
    for (long i = 0; i < total_folders; i++) {
        for (long k = 0; k < F[i].nfiles; k++, seq++) {
            char name[128];
            uint64_t r = rnd() % 1000;
            const char *b = fbase[rnd() % (sizeof fbase / sizeof *fbase)];
            const char *x = fext[rnd() % (sizeof fext / sizeof *fext)];
            if (r < 20)
                snprintf(name, sizeof name, "%s %06ld (1).%s", b, seq, x);
            else if (r < 25)
                snprintf(name, sizeof name, "%s_\xc3\xa9t\xc3\xa9_%06ld.%s", b, seq, x);
            else
                snprintf(name, sizeof name, "%s_%06ld.%s", b, seq, x);
            double u = urand();
            size_t size = (size_t)(u * u * 4097);
            if (size > 4096) size = 4096;
            struct timespec mt = {.tv_sec = base + (int64_t)(rnd() % (5LL * 365 * 86400)),
                                  .tv_nsec = (long)(rnd() % 1000000000)};
            snprintf(p1, 8192, "%s/src/%s%s%s", out, F[i].path, *F[i].path ? "/" : "", name);
            write_file(p1, size, &mt);
            src_bytes += (long long)size;
            if (F[i].missing) {
                files_missing++;
                src_entries_under_missing++;
                continue;
            }
            snprintf(p2, 8192, "%s/dst/%s%s%s", out, F[i].path, *F[i].path ? "/" : "", name);
            uint64_t m = rnd() % 10000;
            if (m < 900) { /* missing */
                files_missing++;
                continue;
            }
            if (m < 1100) { /* changed size, and mtime */
                size_t s2 = size + 1 + rnd() % 200;
                if (s2 > 4096 && size > 0) s2 = size - 1 - rnd() % size;
                struct timespec mt2 = mt;
                mt2.tv_sec += (rnd() & 1) ? 3600 * 24 : -3600;
                write_file(p2, s2, &mt2);
                dst_bytes += (long long)s2;
                files_changed++;
                continue;
            }
            write_file(p2, size, &mt);
            dst_bytes += (long long)size;
            files_same++;
        }
    }
    /* destination-only files: 1% of the source files, in present dst folders */
    long want_extra = nfiles / 100;
    for (long k = 0; k < want_extra; k++) {
        long i = (long)(rnd() % total_folders);
        if (F[i].missing) continue;
        snprintf(p2, 8192, "%s/dst/%s%sextra_%06ld.dat", out, F[i].path, *F[i].path ? "/" : "", k);
        size_t size = (size_t)(rnd() % 2048);
        struct timespec mt = {.tv_sec = base + (int64_t)(rnd() % (5LL * 365 * 86400)), .tv_nsec = 0};
        write_file(p2, size, &mt);
        dst_bytes += (long long)size;
        dst_only++;
    }

    /* ---- folder mtimes, deepest first, equal on both sides ---- */
    for (long i = total_folders - 1; i >= 0; i--) {
        struct timespec ts[2];
        ts[0].tv_sec = base + (int64_t)(rnd() % (5LL * 365 * 86400));
        ts[0].tv_nsec = (long)(rnd() % 1000000000);
        ts[1] = ts[0];
        snprintf(p1, 8192, "%s/src/%s", out, F[i].path);
        if (utimensat_(p1, ts) != 0) die("utimensat", p1);
        if (!F[i].missing) {
            snprintf(p2, 8192, "%s/dst/%s", out, F[i].path);
            if (utimensat_(p2, ts) != 0) die("utimensat", p2);
        }
    }

    int maxd = 0;
    long max_fan = 0;
    for (long i = 0; i < total_folders; i++) {
        if (F[i].depth > maxd) maxd = F[i].depth;
        if (F[i].nfiles > max_fan) max_fan = F[i].nfiles;
    }
    long src_files = seq;
    long src_folders = total_folders - 1;
    printf("src_folders=%ld\nsrc_files=%ld\nsrc_entries=%ld\nsrc_bytes=%lld\n", src_folders,
           src_files, src_folders + src_files, src_bytes);
    printf("dst_folders=%ld\ndst_files=%ld\ndst_entries=%ld\ndst_bytes=%lld\n", dst_folders,
           files_same + files_changed + dst_only, dst_folders + files_same + files_changed + dst_only,
           dst_bytes);
    printf("max_depth=%d\nmax_files_in_folder=%ld\n", maxd, max_fan);
    printf("missing_folders=%ld\nfiles_missing=%ld\nfiles_changed=%ld\nfiles_same=%ld\ndst_only=%ld\n",
           missing_folders, files_missing, files_changed, files_same, dst_only);
    /* what treemig should report: source rows to copy = missing files + missing
     * folders (with everything under them) + changed files; conflicts = changed. */
    long missing_folder_nodes = 0;
    for (long i = 1; i < total_folders; i++)
        if (F[i].missing) missing_folder_nodes++;
    printf("missing_folder_nodes=%ld\n", missing_folder_nodes);
    printf("expect_copy_pending=%ld\nexpect_conflicts=%ld\nexpect_not_on_src=%ld\n",
           files_missing + missing_folder_nodes + files_changed, files_changed, dst_only);
    (void)src_entries_under_missing;
    return 0;
}
