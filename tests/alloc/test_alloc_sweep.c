/*
 * test_alloc_sweep.c - the allocation-failure sweep (curl's torture tests):
 * every allocation of a small migration fails once in turn.
 *
 * Linked with -Wl,--wrap=malloc,calloc,realloc,free,strdup,strndup,realpath,
 * XXH3_createState (tests/CMakeLists.txt): the wrappers below count every
 * allocation that treemig's own code makes, and SQLite's allocator is
 * installed over the same counter with sqlite3_config(SQLITE_CONFIG_MALLOC)
 * before SQLite starts. (libyaml allocates inside its own library, which
 * --wrap does not reach: its allocations are not swept.)
 *
 * For N = 1, 2, ... (by a stride, see below) the program makes a fresh
 * source tree of about 20 nodes and a destination with a conflicting file,
 * arms "fail the Nth allocation", and runs through the public API
 * discover + copy + verify (one worker per side, so the order is nearly
 * the same each time) until a step fails or all pass. A failing step must
 * return an error with a message (tm_migration_errmsg), never crash or
 * abort, and tm_migration_free() must free everything: the count of live
 * allocations after the run is the count before it. Then, without
 * failures, the same state file is resumed (discover, retry, copy, verify
 * as its phase asks) and must end "verified" with the destination equal to
 * the source (types, sizes, contents, mtimes, modes, symlink targets): a
 * failed allocation must never damage the state file. The sweep ends at the
 * first N that the run never reaches.
 *
 * Threads: the coordinator (this thread), the workers, the writer and the
 * logger all allocate through the wrappers; the counter is atomic.
 *
 * By default (what make test runs) the full sweep of treemig's own
 * allocations (about 570): every N from 1, in order, no sampling, so that
 * two runs sweep the same allocations. TREEMIG_ALLOC_OURS=0 sweeps all
 * allocations (about 23,000, most of them SQLite's) with the stride
 * total/TREEMIG_ALLOC_RUNS (default 60) from a random offset printed as a
 * seed that TREEMIG_ALLOC_SEED replays (make soak runs that).
 *
 * Env: TREEMIG_ALLOC_OURS=0 (or 1) sweeps all allocations (or treemig's);
 * TREEMIG_ALLOC_STRIDE=S sweeps every S-th allocation (1 over all, also set
 * by TREEMIG_ALLOC_FULL=1, takes some hours); TREEMIG_ALLOC_RUNS=R about R
 * runs (a sampled sweep); TREEMIG_ALLOC_FROM=N starts at N;
 * TREEMIG_ALLOC_DIR: where the trees go (default /dev/shm, else /tmp);
 * TREEMIG_ALLOC_TO=N stops after N; TREEMIG_ALLOC_ONLY=N runs N alone and
 * prints the stack of the allocation that fails; TREEMIG_ALLOC_VERBOSE=1
 * prints each run, TREEMIG_ALLOC_TRACE=1 the stack of each failure.
 */
#include "treemig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <execinfo.h>

/* ---- the counting allocator ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
char *__real_realpath(const char *path, char *resolved);
XXH3_state_t *__real_XXH3_createState(void);

static atomic_llong n_allocs;  /* allocations while armed */
static atomic_llong fail_at;   /* the one to fail (0: none) */
static atomic_int failed;      /* it was failed */
static atomic_int armed;       /* count and fail */
static atomic_llong live;      /* allocations not freed yet (ours + SQLite) */
static int trace;              /* print the stack of the failed allocation */
static int ours_only;          /* count and fail treemig's, not SQLite's */

/* 1 when this allocation must fail. */
static int should_fail(void)
{
    long long n;
    if (!atomic_load(&armed))
        return 0;
    n = atomic_fetch_add(&n_allocs, 1) + 1;
    if (n == atomic_load(&fail_at)) {
        atomic_store(&failed, 1);
        if (trace) {
            void *pc[32];
            int k = backtrace(pc, 32);
            fprintf(stderr, "allocation %lld fails here:\n", n);
            backtrace_symbols_fd(pc, k, 2);
        }
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    void *p;
    if (should_fail())
        return NULL;
    p = __real_malloc(n);
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
    void *p;
    if (should_fail())
        return NULL;
    p = __real_calloc(n, size);
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

void *__wrap_realloc(void *old, size_t n)
{
    void *p;
    if (should_fail())
        return NULL;
    p = __real_realloc(old, n);
    if (p && !old)
        atomic_fetch_add(&live, 1);
    return p;
}

void __wrap_free(void *p)
{
    if (p)
        atomic_fetch_sub(&live, 1);
    __real_free(p);
}

char *__wrap_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = __wrap_malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

char *__wrap_strndup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *p = __wrap_malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *__wrap_realpath(const char *path, char *resolved)
{
    char *p;
    if (!resolved && should_fail()) {
        errno = ENOMEM;
        return NULL;
    }
    p = __real_realpath(path, resolved);
    if (p && !resolved)
        atomic_fetch_add(&live, 1); /* libc's malloc, freed by our free() */
    return p;
}

XXH3_state_t *__wrap_XXH3_createState(void)
{
    if (should_fail())
        return NULL;
    return __real_XXH3_createState();
}

/* SQLite's allocator over the same counter; the size is kept in front. */
#define HDR 16
static void *sq_malloc(int n)
{
    char *p;
    if (n <= 0 || (!ours_only && should_fail()))
        return NULL;
    p = __real_malloc((size_t)n + HDR);
    if (!p)
        return NULL;
    atomic_fetch_add(&live, 1);
    *(size_t *)p = (size_t)n;
    return p + HDR;
}
static void sq_free(void *p)
{
    if (!p)
        return;
    atomic_fetch_sub(&live, 1);
    __real_free((char *)p - HDR);
}
static int sq_size(void *p)
{
    return p ? (int)*(size_t *)((char *)p - HDR) : 0;
}
static void *sq_realloc(void *p, int n)
{
    char *q;
    if (!p)
        return sq_malloc(n);
    if (!ours_only && should_fail())
        return NULL;
    q = __real_realloc((char *)p - HDR, (size_t)n + HDR);
    if (!q)
        return NULL;
    *(size_t *)q = (size_t)n;
    return q + HDR;
}
static int sq_roundup(int n) { return (n + 7) & ~7; }
static int sq_init(void *x) { (void)x; return SQLITE_OK; }
static void sq_shutdown(void *x) { (void)x; }

/* ---- trees ---- */

static char base[256], src[300], dst[300], db[300];
static long long t0 = 1600000000LL * 1000000000LL;

static void die(const char *what)
{
    fprintf(stderr, "test_alloc_sweep: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void set_mtime(const char *p, long long ns)
{
    struct timespec t[2] = { { 0, UTIME_OMIT }, { (time_t)(ns / 1000000000),
                                                 (long)(ns % 1000000000) } };
    if (utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW) != 0)
        die(p);
}

static void mkfile(const char *root, const char *rel, const char *data, int copies,
                   mode_t mode, long long mtime)
{
    char p[PATH_MAX];
    FILE *f;
    int i;
    snprintf(p, sizeof p, "%s/%s", root, rel);
    f = fopen(p, "wb");
    if (!f)
        die(p);
    for (i = 0; i < copies; i++)
        fputs(data, f);
    fclose(f);
    chmod(p, mode);
    set_mtime(p, mtime);
}

static void mkfolder(const char *root, const char *rel, mode_t mode)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    if (mkdir(p, mode) != 0)
        die(p);
}

static void build_src(void)
{
    static const char *const dirs[] = { "a", "a/b", "a/b/c", "e", "w" };
    char p[PATH_MAX];
    size_t i;
    if (mkdir(src, 0755) != 0)
        die(src);
    for (i = 0; i < sizeof dirs / sizeof *dirs; i++)
        mkfolder(src, dirs[i], 0755);
    mkfile(src, "top.txt", "top\n", 1, 0644, t0 + 1);
    mkfile(src, "exec.sh", "#!/bin/sh\n", 1, 0755, t0 + 2);
    mkfile(src, "big.bin", "0123456789abcdef", 8192, 0644, t0 + 3);
    mkfile(src, "a/one.txt", "one\n", 10, 0600, t0 + 4);
    mkfile(src, "a/b/two.txt", "two\n", 100, 0644, t0 + 5);
    mkfile(src, "a/b/c/three.txt", "three\n", 1, 0640, t0 + 6);
    mkfile(src, "conflict.txt", "the source's version\n", 1, 0644, t0 + 7);
    mkfile(src, "same.txt", "same\n", 1, 0644, t0 + 8);
    for (i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof name, "w/f%zu", i);
        mkfile(src, name, "w", (int)i * 10 + 1, 0644, t0 + 10 + (long long)i);
    }
    snprintf(p, sizeof p, "%s/link", src);
    if (symlink("a/one.txt", p) != 0)
        die(p);
    set_mtime(p, t0 + 20);
    snprintf(p, sizeof p, "%s/a/dangling", src);
    if (symlink("no/such/thing", p) != 0)
        die(p);
    set_mtime(p, t0 + 21);
    for (i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(p, sizeof p, "%s/%s", src, dirs[sizeof dirs / sizeof *dirs - 1 - i]);
        set_mtime(p, t0 + 100 + (long long)i);
    }
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    if (flag == FTW_DP || flag == FTW_D)
        chmod(p, 0700);
    return remove(p) != 0 && errno != ENOENT ? -1 : 0;
}

static void rm_rf(const char *p)
{
    if (access(p, F_OK) == 0 && nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        die(p);
}

static void fresh_dst_and_db(void)
{
    static const char *const ext[] = { "", "-wal", "-shm", ".lock", ".yaml" };
    char p[PATH_MAX + 16];
    size_t i;
    rm_rf(dst);
    if (mkdir(dst, 0755) != 0)
        die(dst);
    mkfile(dst, "conflict.txt", "old\n", 1, 0644, t0 - 5);
    mkfile(dst, "same.txt", "same\n", 1, 0644, t0 + 8);
    for (i = 0; i < sizeof ext / sizeof *ext; i++) {
        snprintf(p, sizeof p, "%s%s", db, ext[i]);
        unlink(p);
    }
}

/* Compares the trees below a and b; returns the number of differences
 * (printed). top: a root, whose own mtime and mode are not compared. */
static int compare(const char *a, const char *b, int top)
{
    struct stat sa, sb;
    int bad = 0;
    if (lstat(a, &sa) != 0 || lstat(b, &sb) != 0) {
        printf("    %s: missing on the destination\n", b);
        return 1;
    }
    if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT)) {
        printf("    %s: another type\n", b);
        return 1;
    }
    if (!top && !S_ISLNK(sa.st_mode) &&
        ((sa.st_mode & 07777) != (sb.st_mode & 07777) ||
         sa.st_mtim.tv_sec != sb.st_mtim.tv_sec ||
         sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec)) {
        printf("    %s: mode or mtime differ\n", b);
        bad++;
    }
    if (S_ISLNK(sa.st_mode)) {
        char ta[PATH_MAX], tb[PATH_MAX];
        ssize_t na = readlink(a, ta, sizeof ta), nb = readlink(b, tb, sizeof tb);
        if (na != nb || memcmp(ta, tb, (size_t)na) != 0 ||
            sa.st_mtim.tv_sec != sb.st_mtim.tv_sec ||
            sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec) {
            printf("    %s: another symlink target or mtime\n", b);
            bad++;
        }
    } else if (S_ISREG(sa.st_mode)) {
        FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
        int ca = 0, cb = 0;
        if (!fa || !fb || sa.st_size != sb.st_size) {
            bad++;
            printf("    %s: size differs or unreadable\n", b);
        } else {
            while ((ca = getc(fa)) == (cb = getc(fb)) && ca != EOF)
                ;
            if (ca != cb) {
                printf("    %s: contents differ\n", b);
                bad++;
            }
        }
        if (fa)
            fclose(fa);
        if (fb)
            fclose(fb);
    } else if (S_ISDIR(sa.st_mode)) {
        DIR *d = opendir(a), *e = opendir(b);
        struct dirent *x;
        int na = 0, nb = 0;
        if (!d || !e)
            die(a);
        while ((x = readdir(d)) != NULL) {
            char pa[PATH_MAX], pb[PATH_MAX];
            if (!strcmp(x->d_name, ".") || !strcmp(x->d_name, ".."))
                continue;
            na++;
            snprintf(pa, sizeof pa, "%s/%s", a, x->d_name);
            snprintf(pb, sizeof pb, "%s/%s", b, x->d_name);
            bad += compare(pa, pb, 0);
        }
        while ((x = readdir(e)) != NULL)
            nb += strcmp(x->d_name, ".") && strcmp(x->d_name, "..");
        if (na != nb) {
            printf("    %s: %d entries, the source has %d\n", b, nb, na);
            bad++;
        }
        closedir(d);
        closedir(e);
    }
    return bad;
}

/* ---- the runs ---- */

static void dopts(tm_discover_options *o)
{
    tm_discover_options_init(o);
    o->workers = 1;
    o->retries = 0;
    o->udp_level = "off";
}

static void eopts(tm_exec_options *o, int checksum)
{
    tm_exec_options_init(o);
    o->workers = 1;
    o->udp_level = "off";
    o->checksum = checksum;
}

/* One run with the failure armed: returns the failing step's error (0 when
 * every step passed); *msg_ok: it came with a message. */
static int faulty_run(const char **step, int *msg_ok, int64_t *mismatches)
{
    tm_migration *m = NULL;
    tm_discover_options d;
    tm_exec_options e;
    int64_t mism = 0;
    int rc;

    *msg_ok = 1;
    dopts(&d);
    *step = "open";
    rc = tm_migration_open(&m, db, TM_OPEN_WRITE | TM_OPEN_CREATE);
    if (!rc) {
        *step = "discover";
        rc = tm_discover(m, src, dst, &d);
    }
    if (!rc) {
        *step = "copy";
        eopts(&e, 0);
        rc = tm_copy(m, &e);
    }
    if (!rc) {
        *step = "verify";
        eopts(&e, 1);
        rc = tm_verify(m, &e, &mism);
        *mismatches = mism;
    }
    if (rc) {
        const char *msg = tm_migration_errmsg(m);
        *msg_ok = (m && msg && *msg) || (!m && rc == TM_ENOMEM);
    }
    tm_migration_free(m);
    return rc;
}

/* The same state file without failures, to the end. Returns 0 when it is
 * verified and the trees are equal. */
static int recover(long long n)
{
    tm_migration *m = NULL;
    tm_discover_options d;
    tm_exec_options e;
    tm_status st;
    int rc, i;

    dopts(&d);
    rc = tm_migration_open(&m, db, TM_OPEN_WRITE | TM_OPEN_CREATE);
    for (i = 0; !rc && i < 8; i++) {
        int64_t x = 0;
        rc = tm_status_get(m, &st);
        if (rc)
            break;
        if (!st.phase[0]) {
            rc = tm_discover(m, src, dst, &d);
        } else if (!strcmp(st.phase, "roots-set") || !strcmp(st.phase, "discovering") ||
                   (!strcmp(st.phase, "suspended") &&
                    st.copy.successful + st.copy.failed == 0 && st.src_round == 0)) {
            rc = tm_discover(m, NULL, NULL, &d);
        } else if (!strcmp(st.phase, "verified")) {
            break;
        } else if (st.src_counts.failed || st.dst_counts.failed || st.copy.failed) {
            eopts(&e, 0);
            rc = tm_retry(m, &d, &e, &x);
        } else if (!strcmp(st.phase, "copied")) {
            eopts(&e, 1);
            rc = tm_verify(m, &e, &x);
            if (!rc && x) {
                printf("N=%lld: verify after the recovery found %lld mismatches\n", n,
                       (long long)x);
                rc = -1;
            }
        } else if (!strcmp(st.phase, "suspended")) {
            rc = tm_resume(m, &d); /* from discovering or copying */
        } else {
            eopts(&e, 0);
            e.force = 1;
            rc = tm_copy(m, &e);
        }
    }
    if (!rc && (tm_status_get(m, &st) || strcmp(st.phase, "verified"))) {
        printf("N=%lld: the recovery ends in phase %s\n", n, st.phase);
        rc = -1;
    }
    if (rc && rc != -1)
        printf("N=%lld: the recovery failed: %s (%s)\n", n, tm_strerror(rc),
               tm_migration_errmsg(m));
    tm_migration_free(m);
    if (!rc && compare(src, dst, 1)) {
        printf("N=%lld: the destination differs from the source\n", n);
        rc = -1;
    }
    return rc;
}

/* How a sweep goes. */
struct plan {
    int ours;            /* only treemig's allocations */
    long long from;      /* the first N */
    long long stride;    /* 0: about `runs` runs from a seeded offset */
    long long to;        /* the last N (0: to the end) */
    long long runs;      /* runs wanted when stride is 0 */
    unsigned seed;       /* the offset's seed */
    int only;            /* just N = from */
    int verbose;         /* a line per run */
};

/* Counts the allocations of a clean run (and checks that it works).
 * Returns the count, or -1. */
static long long clean_run(void)
{
    const char *step;
    int ok, rc;
    int64_t mism = 0;
    long long total;
    fresh_dst_and_db();
    atomic_store(&fail_at, 0);
    atomic_store(&n_allocs, 0);
    atomic_store(&armed, 1);
    rc = faulty_run(&step, &ok, &mism);
    atomic_store(&armed, 0);
    total = atomic_load(&n_allocs);
    if (rc || recover(0)) {
        printf("the clean run failed at %s: %s\n", step, tm_strerror(rc));
        return -1;
    }
    return total;
}

/* One sweep; returns the number of problems (printed). */
static long long sweep(struct plan *p)
{
    long long n, total, runs = 0, errors = 0, absorbed = 0, bad = 0, live0;
    long long unreached = 0;
    time_t start = time(NULL);

    ours_only = p->ours;
    total = clean_run();
    if (total < 0)
        return 1;
    if (!p->stride) {
        p->stride = total / p->runs > 1 ? total / p->runs : 1;
        if (p->from == 1)
            p->from = 1 + (long long)(p->seed % (unsigned)p->stride);
    }
    live0 = atomic_load(&live);
    printf("a clean run makes %lld allocations%s; sweeping N = %lld.. by %lld\n",
           total, p->ours ? " in treemig's code" : " (treemig's and SQLite's)",
           p->from, p->stride);
    fflush(stdout);
    for (n = p->from;; n += p->stride) {
        const char *step = "";
        int ok, rc;
        int64_t mism = 0;
        long long live1;
        fresh_dst_and_db();
        live1 = atomic_load(&live);
        atomic_store(&failed, 0);
        atomic_store(&n_allocs, 0);
        atomic_store(&fail_at, n);
        atomic_store(&armed, 1);
        rc = faulty_run(&step, &ok, &mism);
        atomic_store(&armed, 0);
        atomic_store(&fail_at, 0);
        runs++;
        if (!atomic_load(&failed)) {
            if (rc) {
                printf("N=%lld: %s failed without an allocation failure: %s\n", n,
                       step, tm_strerror(rc));
                bad++;
            }
            if (n > total)
                break; /* past the clean run's count and not reached: done */
            /* the threads' timing (commits, snapshots) changes the count a
             * little from run to run: go on to the clean run's total, so
             * that the sweep is whole */
            unreached++;
            if (p->verbose)
                printf("N=%lld: not reached by this run\n", n);
            if (bad > 20 || p->only || (p->to && n + p->stride > p->to))
                break;
            continue;
        }
        if (rc)
            errors++;
        else
            absorbed++;
        if (p->verbose)
            printf("N=%lld: %s %s\n", n, rc ? step : "absorbed",
                   rc ? tm_err_name(rc) : "");
        if (!rc && mism) {
            printf("N=%lld: verify reported %lld mismatches: a failed allocation "
                   "is not a difference\n", n, (long long)mism);
            bad++;
        }
        if (rc && !ok) {
            printf("N=%lld: %s failed with %s but without a message\n", n, step,
                   tm_err_name(rc));
            bad++;
        }
        if (atomic_load(&live) != live1) {
            printf("N=%lld (%s, %s): %lld allocations not freed\n", n, step,
                   tm_err_name(rc), atomic_load(&live) - live1);
            bad++;
        }
        if (recover(n) != 0) {
            printf("N=%lld (%s failed with %s): the state file could not be "
                   "completed\n", n, step, tm_err_name(rc));
            bad++;
        }
        fflush(stdout);
        if (bad > 20 || p->only || (p->to && n + p->stride > p->to))
            break;
    }
    printf("%lld runs (N up to %lld of %lld, stride %lld): %lld clean errors, "
           "%lld absorbed, %lld not reached, %lld problems, %lld s; live allocations "
           "%lld -> %lld\n",
           runs, n, total, p->stride, errors, absorbed, unreached, bad,
           (long long)(time(NULL) - start), live0, atomic_load(&live));
    fflush(stdout);
    return bad;
}

int main(void)
{
    static const sqlite3_mem_methods mem = { sq_malloc, sq_free, sq_realloc,
                                              sq_size, sq_roundup, sq_init,
                                              sq_shutdown, NULL };
    struct plan p;
    const char *env;
    long long bad = 0;

    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &mem) != SQLITE_OK) {
        fprintf(stderr, "test_alloc_sweep: cannot install the SQLite allocator\n");
        return 2;
    }
    memset(&p, 0, sizeof p);
    p.from = 1;
    p.ours = 1;
    p.stride = 1; /* the full sweep of treemig's allocations */
    p.verbose = (env = getenv("TREEMIG_ALLOC_VERBOSE")) && *env == '1';
    p.seed = (env = getenv("TREEMIG_ALLOC_SEED")) && *env
                 ? (unsigned)atoll(env)
                 : (unsigned)time(NULL) ^ (unsigned)getpid();
    if ((env = getenv("TREEMIG_ALLOC_OURS")) && *env && *env != '1') {
        p.ours = 0; /* all: sampled unless a stride is given */
        p.stride = 0;
        p.runs = 60;
    }
    if ((env = getenv("TREEMIG_ALLOC_RUNS")) && *env) {
        p.stride = 0;
        p.runs = atoll(env) > 0 ? atoll(env) : 1;
    }
    if ((env = getenv("TREEMIG_ALLOC_STRIDE")) && *env)
        p.stride = atoll(env) > 0 ? atoll(env) : 1;
    if ((env = getenv("TREEMIG_ALLOC_FULL")) && *env == '1')
        p.stride = 1;
    if ((env = getenv("TREEMIG_ALLOC_FROM")) && *env)
        p.from = atoll(env) > 0 ? atoll(env) : 1;
    if ((env = getenv("TREEMIG_ALLOC_TO")) && *env)
        p.to = atoll(env);
    if ((env = getenv("TREEMIG_ALLOC_TRACE")) && *env == '1') {
        void *pc[4];
        trace = 1;
        backtrace(pc, 4);
    }
    if ((env = getenv("TREEMIG_ALLOC_ONLY")) && *env) {
        p.from = atoll(env) > 0 ? atoll(env) : 1;
        p.only = 1;
        p.verbose = 1;
        trace = 1;
        {
            void *pc[4];
            backtrace(pc, 4); /* loads what backtrace needs, before the run */
        }
    }
    snprintf(base, sizeof base, "%s/treemig-alloc-XXXXXX",
             (env = getenv("TREEMIG_ALLOC_DIR")) && *env ? env
             : access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(base))
        die("mkdtemp");
    snprintf(src, sizeof src, "%s/src", base);
    snprintf(dst, sizeof dst, "%s/dst", base);
    snprintf(db, sizeof db, "%s/state.db", base);
    build_src();

    if (!p.stride && !p.only)
        printf("seed %u (TREEMIG_ALLOC_SEED=%u replays the offset)\n", p.seed, p.seed);
    bad += sweep(&p);
    rm_rf(base);
    return bad ? 1 : 0;
}
