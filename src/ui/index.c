/*
 * index.c - the folder index of `treemig ui`: a thread that builds, in a
 * temporary SQLite file, one row per folder of both trees with the totals
 * of what lies below it (the SQL is tm__uiq_index_build in
 * src/store/ui_query.c), and builds it again when the state file changed
 * (another process discovers or copies, or the page excluded something).
 *
 * The page lists a folder's subfolders first and shows, for each, what is
 * to copy below it; a state file of 10^7 nodes has no index for either, and
 * the UI may not add one to a file it only reads. A build reads each side
 * once in windows of ids (about 1 s per million rows); until the first one
 * is complete, folders are listed in name order without totals.
 *
 * A file left behind by a server that was killed (kill -9) is removed by
 * the next one: the files carry their server's PID.
 *
 * Threads: the builder thread (index_main) owns its two connections; the
 * request threads open each generation read-only through
 * tm__ui_index_attach(). Lock order: mu is taken alone.
 */
#include "ui/ui_int.h"

#include "store/store.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SPACING_MIN_NS (10 * 1000000000LL) /* between two builds, at least */
#define RETRY_NS (30 * 1000000000LL)        /* after a failed build */

/* Drops a reference to g; the last one removes its file. Under x->mu. */
static void gen_unref(struct tm__ui_gen *g)
{
    if (!g || --g->refs > 0)
        return;
    unlink(g->path);
    free(g->path);
    free(g);
}

static void on_progress(void *ctx, int side, int64_t done, int64_t max)
{
    struct tm__ui_index *x = ctx;
    pthread_mutex_lock(&x->mu);
    x->progress = ((double)side + (max > 0 ? (double)done / (double)max : 1.0)) / 2.0;
    pthread_mutex_unlock(&x->mu);
}

static int should_stop(void *ctx)
{
    struct tm__ui_index *x = ctx;
    int stop;
    pthread_mutex_lock(&x->mu);
    stop = x->stop;
    pthread_mutex_unlock(&x->mu);
    return stop;
}

/* The folder of the index files: $TMPDIR, else /tmp. */
static const char *temp_dir(void)
{
    const char *dir = getenv("TMPDIR");
    return dir && *dir ? dir : "/tmp";
}

/*
 * Removes the index files that a treemig ui killed before it could clean
 * up left behind: treemig-ui-PID-XXXXXX, regular files of this user, whose
 * PID no longer runs (a PID that runs, or that we may not ask about, keeps
 * its file).
 */
static void remove_stale(void)
{
    DIR *d = opendir(temp_dir());
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        char *end;
        long pid;
        if (strncmp(e->d_name, "treemig-ui-", 11) != 0)
            continue;
        errno = 0;
        pid = strtol(e->d_name + 11, &end, 10);
        if (errno || end == e->d_name + 11 || *end != '-' || strlen(end) != 7 ||
            pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode) || st.st_uid != getuid())
            continue;
        unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

/* Creates an empty temporary file (O_EXCL, 0600) for an index. */
static int make_temp(struct tm__buf *path)
{
    int fd;
    tm__buf_reset(path);
    if (tm__buf_addf(path, "%s/treemig-ui-%ld-XXXXXX", temp_dir(), (long)getpid()))
        return TM_ENOMEM;
    fd = mkostemp(path->buf, O_CLOEXEC);
    if (fd < 0)
        return tm__from_errno(errno);
    close(fd);
    return 0;
}

/* Builds one index from db and makes it current. */
static void build_one(struct tm__ui_index *x, struct tm__db *db)
{
    struct tm__uiq_build_cb cb = { on_progress, should_stop, x };
    struct tm__buf path = TM__BUF_INIT, err = TM__BUF_INIT;
    struct tm__ui_gen *g = NULL, *old;
    struct tm__db *idx = NULL;
    int64_t max_id[2] = { 0, 0 }, start = tm__wall_ns(), t0 = tm__now_ns();
    int rc = make_temp(&path);

    if (rc) {
        tm__buf_addf(&err, "cannot create a temporary file in $TMPDIR or /tmp: %s",
                     tm_strerror(rc));
        goto out;
    }
    rc = tm__db_open_sqlite(path.buf, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                            &idx);
    if (rc != SQLITE_OK) {
        rc = tm__store_error(idx, rc, &err, "open the folder index");
        goto out;
    }
    rc = tm__uiq_index_build(db, idx, &cb, max_id, &err);
    if (tm__db_close(idx) != SQLITE_OK && !rc) {
        rc = TM_EIO;
        tm__buf_adds(&err, "cannot close the folder index");
    }
    idx = NULL;
    if (!rc) {
        g = calloc(1, sizeof *g);
        if (!g)
            rc = TM_ENOMEM;
    }
    if (!rc) {
        g->path = tm__buf_detach(&path, NULL);
        g->max_id[0] = max_id[0];
        g->max_id[1] = max_id[1];
        g->built = start;
        g->refs = 1;
    }
out:
    if (idx)
        tm__db_close(idx);
    if (rc && path.len)
        unlink(path.buf);
    pthread_mutex_lock(&x->mu);
    x->building = 0;
    if (!rc) {
        old = x->cur;
        x->cur = g;
        x->duration_ns = tm__now_ns() - t0;
        tm__buf_reset(&x->err);
        gen_unref(old);
    } else if (rc != TM_ESTOPPED) {
        tm__buf_reset(&x->err);
        if (tm__buf_add(&x->err, err.buf, err.len) || !x->err.len)
            tm__buf_adds(&x->err, tm_strerror(rc));
    }
    pthread_mutex_unlock(&x->mu);
    tm__buf_release(&path);
    tm__buf_release(&err);
}

static void *index_main(void *arg)
{
    struct tm__ui_index *x = arg;
    struct tm__buf err = TM__BUF_INIT;
    struct tm__db *db = NULL;
    int64_t dv_built = 0, dv = 0, last_end = 0;
    int first = 1, failed = 0;

    remove_stale();
    if (tm__store_open_reader(x->db_path, &db, &err) != 0) {
        pthread_mutex_lock(&x->mu);
        tm__buf_reset(&x->err);
        tm__buf_add(&x->err, err.buf, err.len);
        pthread_mutex_unlock(&x->mu);
        tm__buf_release(&err);
        return NULL;
    }
    for (;;) {
        int kick, changed;
        int64_t spacing, now;
        pthread_mutex_lock(&x->mu);
        if (x->stop) {
            pthread_mutex_unlock(&x->mu);
            break;
        }
        kick = x->kick;
        spacing = 3 * x->duration_ns;
        pthread_mutex_unlock(&x->mu);
        if (spacing < SPACING_MIN_NS)
            spacing = SPACING_MIN_NS;
        /* data_version changes when another connection commits */
        changed = tm__uiq_data_version(db, &dv) != 0 || dv != dv_built;
        now = tm__now_ns();
        if (first || (changed && (kick || now - last_end >= spacing)) ||
            (failed && now - last_end >= RETRY_NS)) {
            pthread_mutex_lock(&x->mu);
            x->kick = 0;
            x->building = 1;
            x->progress = 0;
            pthread_mutex_unlock(&x->mu);
            if (tm__uiq_data_version(db, &dv_built) != 0)
                dv_built = -1;
            build_one(x, db);
            pthread_mutex_lock(&x->mu);
            failed = x->err.len != 0;
            pthread_mutex_unlock(&x->mu);
            last_end = tm__now_ns();
            first = 0;
            continue;
        }
        pthread_mutex_lock(&x->mu);
        if (!x->stop && !x->kick) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&x->cv, &x->mu, &ts);
        }
        pthread_mutex_unlock(&x->mu);
    }
    tm__db_close(db);
    tm__buf_release(&err);
    return NULL;
}

int tm__ui_index_start(struct tm__ui_index *x, const char *db_path)
{
    pthread_condattr_t ca;
    memset(x, 0, sizeof *x);
    tm__buf_init(&x->err);
    x->db_path = strdup(db_path);
    if (!x->db_path)
        return TM_ENOMEM;
    pthread_mutex_init(&x->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&x->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&x->thread, NULL, index_main, x) != 0)
        return TM_ENOMEM;
    x->started = 1;
    return 0;
}

void tm__ui_index_stop(struct tm__ui_index *x)
{
    if (!x->db_path)
        return; /* never started */
    if (x->started) {
        pthread_mutex_lock(&x->mu);
        x->stop = 1;
        pthread_cond_signal(&x->cv);
        pthread_mutex_unlock(&x->mu);
        pthread_join(x->thread, NULL);
        x->started = 0;
    }
    pthread_mutex_lock(&x->mu);
    gen_unref(x->cur);
    x->cur = NULL;
    pthread_mutex_unlock(&x->mu);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
    tm__buf_release(&x->err);
    free(x->db_path);
    x->db_path = NULL;
}

void tm__ui_index_detach(struct tm__ui_index *x, struct tm__ui_conn *c)
{
    if (c->idx)
        tm__db_close(c->idx);
    c->idx = NULL;
    if (c->gen) {
        pthread_mutex_lock(&x->mu);
        gen_unref(c->gen);
        pthread_mutex_unlock(&x->mu);
    }
    c->gen = NULL;
}

void tm__ui_index_attach(struct tm__ui_index *x, struct tm__ui_conn *c)
{
    struct tm__ui_gen *g;
    pthread_mutex_lock(&x->mu);
    g = x->cur;
    if (c->gen == g) {
        pthread_mutex_unlock(&x->mu);
        return;
    }
    if (g)
        g->refs++; /* before the old one goes: its file stays while opened */
    pthread_mutex_unlock(&x->mu);
    tm__ui_index_detach(x, c);
    if (!g)
        return;
    if (tm__db_open_sqlite(g->path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                           &c->idx) != SQLITE_OK) {
        tm__db_close(c->idx);
        c->idx = NULL;
        pthread_mutex_lock(&x->mu);
        gen_unref(g);
        pthread_mutex_unlock(&x->mu);
        return;
    }
    tm__db_exec(c->idx, "PRAGMA cache_size=-2048", NULL, NULL, NULL);
    c->gen = g;
}

void tm__ui_index_kick(struct tm__ui_index *x)
{
    pthread_mutex_lock(&x->mu);
    x->kick = 1;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
}

int tm__ui_index_json(struct tm__ui_index *x, struct tm__buf *b)
{
    int rc;
    pthread_mutex_lock(&x->mu);
    rc = tm__buf_addf(b, "\"index\":{\"state\":\"%s\",\"building\":%s,"
                      "\"progress\":%.3f,\"built\":",
                      x->cur ? "ready" : x->err.len ? "failed" : "building",
                      x->building ? "true" : "false", x->building ? x->progress : 1.0);
    if (!rc)
        rc = x->cur ? tm__buf_addf(b, "%lld", (long long)x->cur->built)
                    : tm__buf_adds(b, "null");
    if (!rc)
        rc = tm__buf_adds(b, ",\"error\":");
    if (!rc)
        rc = x->err.len ? tm__ui_json_str(b, x->err.buf, x->err.len)
                        : tm__buf_adds(b, "null");
    if (!rc)
        rc = tm__buf_addch(b, '}');
    pthread_mutex_unlock(&x->mu);
    return rc;
}
