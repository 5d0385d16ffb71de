/* discover_floor.c: the least work a discovery that follows docs/internals.md
 * does on a local tree pair, in two parts timed apart (bench/discover_floor.sh
 * runs it; bench/README.md says what the figures mean).
 *
 *   (a) the walk: two threads, one per tree, each breadth-first with the
 *       system calls of src/adapter/local.c: openat2(RESOLVE_BENEATH |
 *       RESOLVE_NO_SYMLINKS) per folder, getdents64 into a 32 KiB buffer,
 *       one statx(AT_SYMLINK_NOFOLLOW, the same mask) per entry; the rows
 *       are kept in memory (no comparison, no queue, no per-entry malloc);
 *   (b) the rows: one thread inserts the rows of both trees, a folder's
 *       children after the folder, the two sides' listings alternating as
 *       the engine's do, into the state file's own node tables and indexes
 *       (the schema is read from a file: the script takes it from a state
 *       file treemig made), through prepared statements of 32 rows (INSERT
 *       OR IGNORE, as src/store/writer.c) and the rest one by one, with the
 *       same columns bound; each listed folder's row is set from pending to
 *       successful (the frontier's update, what a resumable walk cannot
 *       skip); WAL, synchronous=NORMAL, 8 KiB pages, a commit every TXN
 *       rows (default 4096, the writer's). The source row carries its copy
 *       status as it is inserted (no update of the source row by its
 *       destination twin's verdict), a destination row its twin's id.
 *
 * MODE (5th argument): 0 leaves the folders' updates out; 1 (default) as
 * above; 2 also updates each source row that has a destination twin with
 * the verdict (copy_status, conflict, hash), as src/store/writer.c does
 * today: the cost of keeping the verdict on the source row; 3, "bare", a
 * bound below any design that keeps one row per node: the tables without
 * any index, no folder updates, then only the two (parent_id, name)
 * unique indexes (what makes a redone listing idempotent) built in bulk
 * after the last row, inside the timed part. No discovery can work on
 * that state file while it runs (no frontier, no lookup of a child).
 *
 * Usage: discover_floor SRC DST DB SCHEMA.sql [MODE=1 [TXN=4096]]
 * Prints key=value lines: rows, the CPU seconds of each walking thread and
 * of the inserting thread, the wall of each part, and the best wall of the
 * two parts on 2 cores, max(b, (a + b) / 2).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LIST_BUF (32 * 1024)
#define CHILD_MASK (STATX_TYPE | STATX_MODE | STATX_NLINK | STATX_UID | STATX_GID | \
                    STATX_INO | STATX_SIZE | STATX_MTIME | STATX_MNT_ID)
#define CHUNK 32

struct row {                /* one node, as the writer binds it */
    int64_t parent;         /* parent's id (0: the root) */
    int64_t size, mtime;    /* bytes, ns */
    uint64_t ino;           /* inode */
    uint32_t mode, uid, gid, nlink; /* as statx gives them */
    uint32_t path_off;      /* offset of "/a/b" in the side's text */
    uint16_t path_len, name_len; /* lengths; the name ends the path */
    uint8_t depth, type;    /* depth; 0 file, 1 folder, 2 symlink, 3 special */
};

struct listing {            /* one folder's children: rows first .. first+n-1 */
    int64_t folder;         /* the folder's id (its index + 1) */
    int64_t first, n;       /* its children's rows */
};

struct side {
    const char *root;       /* the tree */
    int root_fd;            /* its descriptor */
    struct row *rows;       /* rows[i] has id i + 1; rows[0] is the root */
    int64_t n_rows, cap_rows;
    char *text;             /* paths, back to back */
    size_t text_len, text_cap;
    struct listing *ls;     /* listings in the order made */
    int64_t n_ls, cap_ls;
    double cpu, wall;       /* the walk's thread CPU and wall, s */
    int err;                /* errno of a failure */
};

static double now(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *grow(void *p, int64_t *cap, int64_t need, size_t sz)
{
    if (need <= *cap)
        return p;
    while (*cap < need)
        *cap = *cap ? *cap * 2 : 4096;
    p = realloc(p, (size_t)*cap * sz);
    if (!p) {
        fputs("discover_floor: out of memory\n", stderr);
        exit(1);
    }
    return p;
}

static uint32_t add_text(struct side *s, const char *a, size_t an, const char *b,
                         size_t bn)
{
    size_t off = s->text_len;
    if (s->text_len + an + bn + 2 > s->text_cap) {
        s->text_cap = (s->text_cap ? s->text_cap * 2 : 1 << 20) + an + bn;
        if (!(s->text = realloc(s->text, s->text_cap))) {
            fputs("discover_floor: out of memory\n", stderr);
            exit(1);
        }
    }
    memcpy(s->text + off, a, an);
    memcpy(s->text + off + an, b, bn);
    s->text[off + an + bn] = '\0';
    s->text_len += an + bn + 1;
    return (uint32_t)off;
}

/* (a): one side, breadth-first; the rows array is the queue. */
static void *walk(void *arg)
{
    struct side *s = arg;
    static __thread char buf[LIST_BUF];
    double c0 = now(CLOCK_THREAD_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
    int64_t i;

    s->rows = grow(s->rows, &s->cap_rows, 1, sizeof *s->rows);
    memset(&s->rows[0], 0, sizeof s->rows[0]);
    s->rows[0].type = 1;
    s->rows[0].path_off = add_text(s, "/", 1, "", 0);
    s->rows[0].path_len = 1;
    s->n_rows = 1;
    for (i = 0; i < s->n_rows; i++) {
        struct open_how how = { .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW,
                                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS };
        const char *path;
        int fd;
        long n;
        int64_t first = s->n_rows;
        if (s->rows[i].type != 1)
            continue;
        path = s->text + s->rows[i].path_off;
        fd = (int)syscall(SYS_openat2, s->root_fd, i ? path + 1 : ".", &how, sizeof how);
        if (fd < 0) {
            s->err = errno;
            break;
        }
        while ((n = syscall(SYS_getdents64, fd, buf, LIST_BUF)) > 0) {
            long off;
            for (off = 0; off < n;) {
                struct dirent64 *d = (struct dirent64 *)(buf + off);
                struct statx sx;
                struct row *r;
                size_t nl, pl = s->rows[i].path_len;
                off += d->d_reclen;
                if (d->d_name[0] == '.' && (d->d_name[1] == '\0' ||
                                            (d->d_name[1] == '.' && d->d_name[2] == '\0')))
                    continue;
                if (statx(fd, d->d_name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, CHILD_MASK,
                          &sx) != 0) {
                    if (errno == ENOENT)
                        continue;
                    s->err = errno;
                    break;
                }
                s->rows = grow(s->rows, &s->cap_rows, s->n_rows + 1, sizeof *s->rows);
                path = s->text + s->rows[i].path_off; /* text may move below */
                nl = strlen(d->d_name);
                r = &s->rows[s->n_rows++];
                r->parent = i + 1;
                r->size = (int64_t)sx.stx_size;
                r->mtime = (int64_t)sx.stx_mtime.tv_sec * 1000000000 + sx.stx_mtime.tv_nsec;
                r->ino = sx.stx_ino;
                r->mode = sx.stx_mode & 07777;
                r->uid = sx.stx_uid;
                r->gid = sx.stx_gid;
                r->nlink = sx.stx_nlink;
                r->depth = (uint8_t)(s->rows[i].depth + 1);
                r->type = S_ISREG(sx.stx_mode) ? 0 : S_ISDIR(sx.stx_mode) ? 1
                          : S_ISLNK(sx.stx_mode) ? 2 : 3;
                if (i == 0)
                    r->path_off = add_text(s, "/", 1, d->d_name, nl);
                else {
                    /* copy the parent's path first: add_text may move it */
                    char pbuf[4096];
                    memcpy(pbuf, path, pl);
                    pbuf[pl] = '/';
                    r->path_off = add_text(s, pbuf, pl + 1, d->d_name, nl);
                }
                r->path_len = (uint16_t)((i == 0 ? 1 : pl + 1) + nl);
                r->name_len = (uint16_t)nl;
            }
        }
        if (n < 0)
            s->err = errno;
        close(fd);
        s->ls = grow(s->ls, &s->cap_ls, s->n_ls + 1, sizeof *s->ls);
        s->ls[s->n_ls++] = (struct listing){ i + 1, first, s->n_rows - first };
        if (s->err)
            break;
    }
    s->cpu = now(CLOCK_THREAD_CPUTIME_ID) - c0;
    s->wall = now(CLOCK_MONOTONIC) - w0;
    return NULL;
}

static sqlite3 *db;

static void ck(int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "discover_floor: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static const char *const type_names[] = { "file", "folder", "symlink", "special" };

static sqlite3_stmt *prepare_ins(int dst, int k)
{
    static char sql[65536];
    int cols = dst ? 14 : 19, j, c;
    size_t len = (size_t)snprintf(sql, sizeof sql, "INSERT OR IGNORE INTO %s",
        dst ? "dst_nodes(id,parent_id,path,name,type,size,mtime,mode,depth,"
              "traversal_status,conflict,src_id,uid,gid) VALUES"
            : "src_nodes(id,parent_id,path,name,type,size,mtime,mode,depth,"
              "traversal_status,copy_status,conflict,error,uid,gid,dev,ino,nlink,"
              "xattrs) VALUES");
    sqlite3_stmt *st;
    for (j = 0; j < k; j++)
        for (c = 0; c < cols; c++)
            len += (size_t)snprintf(sql + len, sizeof sql - len, "%s?%s",
                                    c ? "," : j ? ",(" : "(", c == cols - 1 ? ")" : "");
    ck(sqlite3_prepare_v2(db, sql, -1, &st, NULL), "prepare");
    return st;
}

static const int64_t *twin_of; /* struct ins's twin, for bind_row */

/* Binds row id of side s at parameter base + 1 on, as the writer does. */
static void bind_row(sqlite3_stmt *st, int base, const struct side *s, int dst, int64_t id)
{
    const struct row *r = &s->rows[id - 1];
    const char *path = s->text + r->path_off;
    sqlite3_bind_int64(st, base + 1, id);
    if (r->parent)
        sqlite3_bind_int64(st, base + 2, r->parent);
    else
        sqlite3_bind_null(st, base + 2);
    sqlite3_bind_text(st, base + 3, path, r->path_len, SQLITE_STATIC);
    sqlite3_bind_text(st, base + 4, path + r->path_len - r->name_len, r->name_len,
                      SQLITE_STATIC);
    sqlite3_bind_text(st, base + 5, type_names[r->type], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, base + 6, r->size);
    sqlite3_bind_int64(st, base + 7, r->mtime);
    sqlite3_bind_int64(st, base + 8, r->mode);
    sqlite3_bind_int(st, base + 9, r->depth);
    sqlite3_bind_text(st, base + 10, r->type == 1 ? "pending" : "successful", -1,
                      SQLITE_STATIC);
    if (!dst) {
        sqlite3_bind_text(st, base + 11, "pending", -1, SQLITE_STATIC);
        sqlite3_bind_null(st, base + 12);
        sqlite3_bind_null(st, base + 13);
        sqlite3_bind_int64(st, base + 14, r->uid);
        sqlite3_bind_int64(st, base + 15, r->gid);
        for (int c = 16; c <= 19; c++)
            sqlite3_bind_null(st, base + c); /* dev, ino, nlink: one link */
    } else {
        sqlite3_bind_null(st, base + 11);
        if (twin_of && twin_of[id - 1])
            sqlite3_bind_int64(st, base + 12, twin_of[id - 1]);
        else
            sqlite3_bind_null(st, base + 12);
        sqlite3_bind_int64(st, base + 13, r->uid);
        sqlite3_bind_int64(st, base + 14, r->gid);
    }
}

struct ins {
    sqlite3_stmt *one[2], *chunk[2], *done[2]; /* per side */
    sqlite3_stmt *verdict;  /* MODE 2: a source row's verdict */
    int64_t *twin;          /* twin[i]: the source id of destination row
                               i + 1, 0 when it has none */
    int64_t txn_rows, since_commit, rows;
    int mode;               /* MODE */
};

/* Fills in->twin by path (before (b) is timed: a comparison costs the
 * engine no such table, it merges sorted listings). */
static void find_twins(struct ins *in, const struct side *s)
{
    size_t cap = 1, mask, i;
    int64_t *h, id;
    while (cap < (size_t)s[0].n_rows * 2)
        cap <<= 1;
    mask = cap - 1;
    h = calloc(cap, sizeof *h);
    in->twin = calloc((size_t)s[1].n_rows, sizeof *in->twin);
    if (!h || !in->twin) {
        fputs("discover_floor: out of memory\n", stderr);
        exit(1);
    }
    for (id = 1; id <= s[0].n_rows; id++) {
        const struct row *r = &s[0].rows[id - 1];
        uint64_t x = 1469598103934665603ULL;
        for (i = 0; i < r->path_len; i++)
            x = (x ^ (unsigned char)s[0].text[r->path_off + i]) * 1099511628211ULL;
        for (i = x & mask; h[i]; i = (i + 1) & mask)
            ;
        h[i] = id;
    }
    for (id = 1; id <= s[1].n_rows; id++) {
        const struct row *r = &s[1].rows[id - 1];
        const char *p = s[1].text + r->path_off;
        uint64_t x = 1469598103934665603ULL;
        for (i = 0; i < r->path_len; i++)
            x = (x ^ (unsigned char)p[i]) * 1099511628211ULL;
        for (i = x & mask; h[i]; i = (i + 1) & mask) {
            const struct row *q = &s[0].rows[h[i] - 1];
            if (q->path_len == r->path_len && !memcmp(s[0].text + q->path_off, p, r->path_len)) {
                in->twin[id - 1] = h[i];
                break;
            }
        }
    }
    free(h);
}

static void commit_maybe(struct ins *in, int64_t n)
{
    in->since_commit += n;
    in->rows += n;
    if (in->since_commit >= in->txn_rows) {
        ck(sqlite3_exec(db, "COMMIT; BEGIN", 0, 0, 0), "commit");
        in->since_commit = 0;
    }
}

static void apply_listing(struct ins *in, const struct side *s, int dst,
                          const struct listing *l)
{
    int64_t i = 0;
    for (; i + CHUNK <= l->n; i += CHUNK) {
        for (int j = 0; j < CHUNK; j++)
            bind_row(in->chunk[dst], j * (dst ? 14 : 19), s, dst, l->first + i + j + 1);
        ck(sqlite3_step(in->chunk[dst]), "insert");
        sqlite3_reset(in->chunk[dst]);
    }
    for (; i < l->n; i++) {
        bind_row(in->one[dst], 0, s, dst, l->first + i + 1);
        ck(sqlite3_step(in->one[dst]), "insert");
        sqlite3_reset(in->one[dst]);
    }
    if (dst && in->mode == 2)
        for (i = 0; i < l->n; i++) {
            int64_t t = in->twin[l->first + i];
            if (!t)
                continue;
            sqlite3_bind_text(in->verdict, 1, "already_existed", -1, SQLITE_STATIC);
            sqlite3_bind_null(in->verdict, 2);
            sqlite3_bind_int64(in->verdict, 3, t);
            sqlite3_bind_null(in->verdict, 4);
            ck(sqlite3_step(in->verdict), "update");
            sqlite3_reset(in->verdict);
        }
    if (in->mode == 1 || in->mode == 2) {
        sqlite3_bind_int64(in->done[dst], 1, l->folder);
        ck(sqlite3_step(in->done[dst]), "update");
        sqlite3_reset(in->done[dst]);
    }
    commit_maybe(in, l->n + 1);
}

int main(int argc, char **argv)
{
    struct side s[2] = { { .root = argv[1] }, { .root = argv[2] } };
    struct ins in = { .txn_rows = 4096, .mode = 1 };
    static char schema[1 << 16], late[1 << 12];
    pthread_t th[2];
    double c0, w0, cpu_b, wall_b, a_cpu, a_wall;
    int64_t k[2] = { 0, 0 }, n_twins = 0;
    FILE *f;
    size_t n;

    if (argc < 5 || argc > 7) {
        fputs("usage: discover_floor SRC DST DB SCHEMA.sql [MODE [TXN]]\n", stderr);
        return 2;
    }
    if (argc > 5)
        in.mode = atoi(argv[5]);
    if (argc > 6)
        in.txn_rows = atoll(argv[6]);
    if (!(f = fopen(argv[4], "r")))
        return perror("discover_floor: open schema"), 1;
    n = fread(schema, 1, sizeof schema - 1, f);
    fclose(f);
    schema[n] = '\0';

    /* (a) */
    w0 = now(CLOCK_MONOTONIC);
    for (int i = 0; i < 2; i++) {
        if ((s[i].root_fd = open(s[i].root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            return perror("discover_floor: open root"), 1;
        pthread_create(&th[i], NULL, walk, &s[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    a_wall = now(CLOCK_MONOTONIC) - w0;
    for (int i = 0; i < 2; i++)
        if (s[i].err) {
            fprintf(stderr, "discover_floor: walk %s: %s\n", s[i].root, strerror(s[i].err));
            return 1;
        }
    a_cpu = s[0].cpu + s[1].cpu;

    /* (b) */
    find_twins(&in, s);
    twin_of = in.twin;
    unlink(argv[3]);
    ck(sqlite3_open(argv[3], &db), "open");
    ck(sqlite3_exec(db, "PRAGMA page_size=8192; PRAGMA journal_mode=WAL;"
                        "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-32768;"
                        "PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=16384;",
                    0, 0, 0), "pragmas");
    if (in.mode == 3) {
        /* the tables alone; the child indexes after the rows (below) */
        char *save, *stmt;
        for (stmt = strtok_r(schema, ";", &save); stmt; stmt = strtok_r(NULL, ";", &save)) {
            const char *p = stmt + strspn(stmt, " \t\r\n");
            size_t len;
            if (!strncmp(p, "CREATE UNIQUE INDEX", 19)) {
                len = strlen(late);
                snprintf(late + len, sizeof late - len, "%s;", p);
            } else if (strncmp(p, "CREATE INDEX", 12) && *p)
                ck(sqlite3_exec(db, p, 0, 0, 0), "schema");
        }
    } else
        ck(sqlite3_exec(db, schema, 0, 0, 0), "schema");
    for (int d = 0; d < 2; d++) {
        char sql[128];
        in.one[d] = prepare_ins(d, 1);
        in.chunk[d] = prepare_ins(d, CHUNK);
        snprintf(sql, sizeof sql, "UPDATE %s SET traversal_status='successful' "
                 "WHERE id=? AND traversal_status='pending'", d ? "dst_nodes" : "src_nodes");
        ck(sqlite3_prepare_v2(db, sql, -1, &in.done[d], NULL), "prepare");
    }
    ck(sqlite3_prepare_v2(db, "UPDATE src_nodes SET copy_status=?, conflict=?, hash=?4 "
                          "WHERE id=?3", -1, &in.verdict, NULL), "prepare");
    c0 = now(CLOCK_THREAD_CPUTIME_ID);
    w0 = now(CLOCK_MONOTONIC);
    ck(sqlite3_exec(db, "BEGIN", 0, 0, 0), "begin");
    for (int d = 0; d < 2; d++) { /* the roots */
        bind_row(in.one[d], 0, &s[d], d, 1);
        ck(sqlite3_step(in.one[d]), "insert");
        sqlite3_reset(in.one[d]);
    }
    /* the sides' listings alternate; a destination folder's only once its
     * source twin's listing was applied (docs/internals.md: the comparison
     * reads the twin's children). Source listings are in id order. */
    while (k[0] < s[0].n_ls || k[1] < s[1].n_ls) {
        if (k[0] < s[0].n_ls)
            apply_listing(&in, &s[0], 0, &s[0].ls[k[0]++]);
        if (k[1] < s[1].n_ls) {
            int64_t t = in.twin[s[1].ls[k[1]].folder - 1];
            if (!t || k[0] == s[0].n_ls || t <= s[0].ls[k[0] - 1].folder)
                apply_listing(&in, &s[1], 1, &s[1].ls[k[1]++]);
        }
    }
    ck(sqlite3_exec(db, "COMMIT", 0, 0, 0), "commit");
    if (*late) /* mode 3: the child indexes, built from the rows */
        ck(sqlite3_exec(db, late, 0, 0, 0), "create the child indexes");
    cpu_b = now(CLOCK_THREAD_CPUTIME_ID) - c0;
    wall_b = now(CLOCK_MONOTONIC) - w0;
    for (int d = 0; d < 2; d++) {
        sqlite3_finalize(in.one[d]);
        sqlite3_finalize(in.chunk[d]);
        sqlite3_finalize(in.done[d]);
    }
    sqlite3_finalize(in.verdict);
    ck(sqlite3_close(db), "close");

    for (int64_t i = 0; i < s[1].n_rows; i++)
        n_twins += in.twin[i] != 0;
    printf("rows_src=%lld\nrows_dst=%lld\nlistings=%lld\ntwins=%lld\nmode=%d\n",
           (long long)s[0].n_rows, (long long)s[1].n_rows,
           (long long)(s[0].n_ls + s[1].n_ls), (long long)n_twins, in.mode);
    printf("walk_cpu_src=%.3f\nwalk_cpu_dst=%.3f\nwalk_cpu=%.3f\nwalk_wall=%.3f\n",
           s[0].cpu, s[1].cpu, a_cpu, a_wall);
    printf("insert_cpu=%.3f\ninsert_wall=%.3f\n", cpu_b, wall_b);
    printf("best_wall_2cores=%.3f\n",
           cpu_b > (a_cpu + cpu_b) / 2 ? cpu_b : (a_cpu + cpu_b) / 2);
    return 0;
}
