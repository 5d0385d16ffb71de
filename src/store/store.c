/*
 * store.c - opening the state file: lock, checks, schema, settings, stats.
 * Runs on the thread that owns the store (see store.h).
 */
#include "store/store.h"

#include "adapter/adapter.h"
#include "treemig.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const tm__ts_names[TS_COUNT] = { "pending", "successful", "failed",
                                             "not_on_src", "excluded" };
const char *const tm__cs_names[CS_COUNT] = { "pending", "in_progress",
                                             "successful", "already_existed",
                                             "failed", "skipped", "excluded" };
const char *const tm__cf_names[CF_COUNT] = { NULL, "size", "mtime",
                                             "dst_newer", "type", "content",
                                             "attrs" };

int tm__name_index(const char *const *names, int n, const char *s)
{
    int i;
    if (!s)
        return -1;
    for (i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0)
            return i;
    return -1;
}

const char *const tm__phase_names[PH_COUNT] = { "", "roots-set", "discovering",
                                                "discovered", "copying", "copied",
                                                "verified", "suspended" };

enum tm__phase tm__phase_parse(const char *s)
{
    int i;
    if (!s || !*s)
        return PH_NONE;
    i = tm__name_index(tm__phase_names, PH_COUNT, s);
    return i < 0 ? PH_UNKNOWN : (enum tm__phase)i;
}

const char *tm__phase_name(enum tm__phase p)
{
    return p >= 0 && p < PH_COUNT ? tm__phase_names[p] : "";
}

/* Where the listing of a folder stands, page by page: the adapter's
 * position after the last recorded page, so that a resume continues inside
 * a folder of millions of children (schema version 2). */
#define LISTING_POS_SQL                                                      \
    "CREATE TABLE IF NOT EXISTS listing_pos(side INTEGER NOT NULL,"         \
    " folder_id INTEGER NOT NULL, pos BLOB NOT NULL, pages INTEGER NOT NULL,"\
    " PRIMARY KEY(side, folder_id)) WITHOUT ROWID;"

/* Where an interrupted write of a file stands, as its storage described
 * it (an object store's multipart upload: its id and the parts sent), so
 * that the copy goes on from there after a crash (schema version 3). */
#define UPLOADS_SQL                                                          \
    "CREATE TABLE IF NOT EXISTS uploads(node_id INTEGER PRIMARY KEY,"       \
    " state BLOB NOT NULL, time INTEGER NOT NULL);"

/* The owner of each node, where its storage reports owners (NULL
 * elsewhere): discover --owner compares them (schema version 4). */
#define OWNER_COLUMNS_SQL                                                    \
    "ALTER TABLE src_nodes ADD COLUMN uid INTEGER;"                          \
    "ALTER TABLE src_nodes ADD COLUMN gid INTEGER;"                          \
    "ALTER TABLE dst_nodes ADD COLUMN uid INTEGER;"                          \
    "ALTER TABLE dst_nodes ADD COLUMN gid INTEGER;"

/* The inode of a source file with more than one link (NULL elsewhere):
 * the files of one (dev, ino) are one link group, which the copy writes
 * once and links (schema version 5). */
#define INODE_INDEX_SQL                                                      \
    "CREATE INDEX IF NOT EXISTS src_nodes_inode ON src_nodes(dev, ino, depth)" \
    " WHERE ino IS NOT NULL;"
#define INODE_COLUMNS_SQL                                                    \
    "ALTER TABLE src_nodes ADD COLUMN dev INTEGER;"                          \
    "ALTER TABLE src_nodes ADD COLUMN ino INTEGER;"                          \
    "ALTER TABLE src_nodes ADD COLUMN nlink INTEGER;" INODE_INDEX_SQL

/* The content hash (XXH3-64, as a signed integer) of a source file that
 * discover --checksum found equal to its destination twin, NULL elsewhere:
 * verify --checksum reads only the destination when the source is still
 * as discovered (schema version 6). */
#define CONTENT_HASH_SQL "ALTER TABLE src_nodes ADD COLUMN hash INTEGER;"

/* The mirror (treemig delete): the outcome of each destination-only node
 * it removed, kept or listed, and an index of the destination-only rows
 * in the order of the removals (schema version 7, step "mirror"). */
#define MIRROR_TABLE_SQL                                                     \
    "CREATE TABLE IF NOT EXISTS mirror(dst_id INTEGER PRIMARY KEY,"          \
    " parent_id INTEGER, path TEXT NOT NULL, type TEXT NOT NULL,"            \
    " state TEXT NOT NULL,"                                                  \
    " error TEXT, time INTEGER NOT NULL);"
#define EXTRA_INDEX_SQL                                                      \
    "CREATE INDEX IF NOT EXISTS dst_nodes_extra ON dst_nodes(depth, id)"     \
    " WHERE traversal_status = 'not_on_src';"
#define MIRROR_SQL MIRROR_TABLE_SQL EXTRA_INDEX_SQL

/* The passes (treemig rescan): one row per pass, and the source nodes of
 * the previous pass that the current one is compared with (schema version
 * 8, step "passes"). */
#define PASSES_SQL                                                           \
    "CREATE TABLE IF NOT EXISTS passes(n INTEGER PRIMARY KEY,"               \
    " started TEXT NOT NULL, ended TEXT);"                                   \
    "CREATE TABLE IF NOT EXISTS prev_src_nodes(id INTEGER PRIMARY KEY,"      \
    " path TEXT NOT NULL, type TEXT NOT NULL, size INTEGER, mtime INTEGER,"  \
    " mode INTEGER, copy_status TEXT, conflict TEXT);"                       \
    "CREATE INDEX IF NOT EXISTS prev_src_nodes_path ON prev_src_nodes(path);"

/* Many workers, one migration (treemig worker, PostgreSQL): a lease is
 * one batch of tasks a worker claimed for one stage ('copy:KEY:DEPTH',
 * 'links:KEY:DEPTH', 'attrs:KEY'); each source node points at the lease
 * that holds it (lease_id). expires is the server's clock in ms, NULL
 * when the batch is done; queue snapshots name their worker (schema
 * version 9, step "leases"). */
#define LEASES_SQL                                                           \
    "CREATE TABLE IF NOT EXISTS leases(id INTEGER PRIMARY KEY,"              \
    " stage TEXT NOT NULL, worker TEXT NOT NULL, host TEXT NOT NULL,"        \
    " pid INTEGER NOT NULL, tmp_key TEXT, expires INTEGER);"                 \
    "CREATE INDEX IF NOT EXISTS leases_worker ON leases(worker);"            \
    "ALTER TABLE src_nodes ADD COLUMN lease_id INTEGER;"                     \
    "ALTER TABLE queue_stats ADD COLUMN host TEXT;"                          \
    "ALTER TABLE queue_stats ADD COLUMN pid INTEGER;"
/* The digest of a source file's or folder's extended attributes and ACLs
 * (tm__xattr_hash, as a signed integer), where it has some (NULL: none,
 * or not read): discovery compares its twin's with it. */
#define XATTRS_SQL "ALTER TABLE src_nodes ADD COLUMN xattrs INTEGER;"
/* Discovery by many workers (treemig worker, PostgreSQL): a destination
 * folder points at the lease that holds its listing, as a source node
 * does; and each side's next free node id, which every worker's writer
 * takes blocks of (id_blocks, side 0 source, 1 destination: ids stay
 * unique across processes) (schema version 11, step "disc_leases"). */
#define DISC_LEASES_SQL                                                      \
    "ALTER TABLE dst_nodes ADD COLUMN lease_id INTEGER;"                     \
    "CREATE TABLE IF NOT EXISTS id_blocks(side INTEGER PRIMARY KEY,"         \
    " next INTEGER NOT NULL);"                                               \
    "INSERT INTO id_blocks(side, next) VALUES(0, 1);"                        \
    "INSERT INTO id_blocks(side, next) VALUES(1, 1);"

/* A pass (treemig rescan) reads the folders of a depth in id order,
 * whatever their status: its frontier is kept by watermarks, not by
 * pending rows (discover.c, frontier.c; schema version 12, step
 * "pass_folders"). The term depth >= 0 keeps the index to the queries
 * that name it (frontier.c's pass queries): SQLite uses a partial index
 * only for a query whose WHERE holds its terms, and a first discovery's
 * 'lowest pending depth' scanned every folder listed by it instead of
 * the pending ones by *_nodes_frontier (45% more CPU, measured). */
#define PASS_FOLDERS_SQL                                                     \
    "CREATE INDEX IF NOT EXISTS src_nodes_folders ON src_nodes(depth, id)"   \
    " WHERE type = 'folder' AND depth >= 0;"                                 \
    "CREATE INDEX IF NOT EXISTS dst_nodes_folders ON dst_nodes(depth, id)"   \
    " WHERE type = 'folder' AND depth >= 0;"

/* A destination claim (treemig worker's discovery, lease_q.c) takes the
 * pending folders whose source twin is listed, lowest depth first: in
 * the order of their twins' ids, those below the source's lowest
 * pending folder are one range of this index, where by (depth, id) the
 * claim read every pending folder of the depth (1,000-1,700 rows and
 * their twins at each claim, most of the server's claim time; schema
 * version 13, step "dst_twin"). */
#define DST_TWIN_SQL                                                         \
    "CREATE INDEX IF NOT EXISTS dst_nodes_twin ON dst_nodes(depth, src_id)"  \
    " WHERE traversal_status = 'pending' AND type = 'folder';"

/* The indexes of the pending folders, by which a discovery shared by
 * workers claims its folders (lease_q.c): created when such a discovery
 * starts (tm__store_claim_indexes), not with the schema. */
#define CLAIM_INDEXES_SQL                                                    \
    "CREATE INDEX IF NOT EXISTS src_nodes_frontier ON src_nodes(depth, id)"  \
    " WHERE traversal_status = 'pending' AND type = 'folder';"               \
    "CREATE INDEX IF NOT EXISTS dst_nodes_frontier ON dst_nodes(depth, id)"  \
    " WHERE traversal_status = 'pending' AND type = 'folder';" DST_TWIN_SQL

/* No index names traversal_status during a discovery of one process
 * (schema version 14, step "hot_status"): an index that names a column,
 * even in its WHERE, makes each update of that column write a new entry
 * in every index of the table, and a folder's status changes when it is
 * listed (on PostgreSQL those updates are then HOT: on the row's page, no
 * index touched; 0.6 s of the server's 3.9 CPU s at 300,000 entries).
 * The first discovery reads its frontier by *_nodes_folders and its
 * lowest pending depth from the stats (frontier.c); a shared discovery
 * makes CLAIM_INDEXES_SQL, the mirror its EXTRA_INDEX_SQL. */
#define HOT_STATUS_SQL                                                       \
    "DROP INDEX IF EXISTS src_nodes_frontier;"                               \
    "DROP INDEX IF EXISTS dst_nodes_frontier;"                               \
    "DROP INDEX IF EXISTS dst_nodes_twin;"                                   \
    "DROP INDEX IF EXISTS dst_nodes_extra;"

/* Brings a state file of version i up to version i + 1 (index i - 1). */
static const char *const upgrade_sql[TM_SCHEMA_VERSION - 1] = {
    LISTING_POS_SQL,
    UPLOADS_SQL,
    OWNER_COLUMNS_SQL,
    INODE_COLUMNS_SQL,
    CONTENT_HASH_SQL,
    MIRROR_SQL,
    PASSES_SQL,
    LEASES_SQL,
    XATTRS_SQL,
    DISC_LEASES_SQL,
    PASS_FOLDERS_SQL,
    DST_TWIN_SQL,
    HOT_STATUS_SQL,
};

static const char schema_sql[] =
    "CREATE TABLE migration(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
    "CREATE TABLE src_nodes("
    " id INTEGER PRIMARY KEY, parent_id INTEGER, path TEXT NOT NULL,"
    " name TEXT NOT NULL, type TEXT NOT NULL, size INTEGER NOT NULL DEFAULT 0,"
    " mtime INTEGER NOT NULL DEFAULT 0, mode INTEGER NOT NULL DEFAULT 0,"
    " depth INTEGER NOT NULL, traversal_status TEXT NOT NULL,"
    " copy_status TEXT NOT NULL, conflict TEXT,"
    " attempts INTEGER NOT NULL DEFAULT 0, error TEXT, uid INTEGER,"
    " gid INTEGER, dev INTEGER, ino INTEGER, nlink INTEGER, hash INTEGER,"
    " xattrs INTEGER);"
    "CREATE UNIQUE INDEX src_nodes_child ON src_nodes(parent_id, name);"
    INODE_INDEX_SQL
    "CREATE TABLE dst_nodes("
    " id INTEGER PRIMARY KEY, parent_id INTEGER, path TEXT NOT NULL,"
    " name TEXT NOT NULL, type TEXT NOT NULL, size INTEGER NOT NULL DEFAULT 0,"
    " mtime INTEGER NOT NULL DEFAULT 0, mode INTEGER NOT NULL DEFAULT 0,"
    " depth INTEGER NOT NULL, traversal_status TEXT NOT NULL, conflict TEXT,"
    " attempts INTEGER NOT NULL DEFAULT 0, error TEXT, src_id INTEGER,"
    " uid INTEGER, gid INTEGER);"
    "CREATE UNIQUE INDEX dst_nodes_child ON dst_nodes(parent_id, name);"
    "CREATE TABLE src_stats(depth INTEGER, type TEXT, traversal_status TEXT,"
    " count INTEGER NOT NULL, bytes INTEGER NOT NULL,"
    " PRIMARY KEY(depth, type, traversal_status)) WITHOUT ROWID;"
    "CREATE TABLE dst_stats(depth INTEGER, type TEXT, traversal_status TEXT,"
    " count INTEGER NOT NULL, bytes INTEGER NOT NULL,"
    " PRIMARY KEY(depth, type, traversal_status)) WITHOUT ROWID;"
    "CREATE TABLE copy_stats(depth INTEGER, type TEXT, copy_status TEXT,"
    " conflict INTEGER, count INTEGER NOT NULL, bytes INTEGER NOT NULL,"
    " PRIMARY KEY(depth, type, copy_status, conflict)) WITHOUT ROWID;"
    "CREATE TABLE logs(id INTEGER PRIMARY KEY, time INTEGER NOT NULL,"
    " level TEXT NOT NULL, queue TEXT, node_id INTEGER, path TEXT,"
    " message TEXT NOT NULL);"
    "CREATE TABLE task_errors(id INTEGER PRIMARY KEY, time INTEGER NOT NULL,"
    " phase TEXT NOT NULL, queue TEXT NOT NULL, node_id INTEGER, path TEXT,"
    " attempts INTEGER, message TEXT);"
    "CREATE TABLE queue_stats(id INTEGER PRIMARY KEY, time INTEGER NOT NULL,"
    " queue TEXT NOT NULL, round INTEGER, pending INTEGER, in_flight INTEGER,"
    " done INTEGER, failed INTEGER, items_per_s REAL, bytes_per_s REAL,"
    " bytes_done INTEGER, bytes_pending INTEGER);"
    LISTING_POS_SQL UPLOADS_SQL MIRROR_TABLE_SQL PASSES_SQL LEASES_SQL
    DISC_LEASES_SQL PASS_FOLDERS_SQL;

/* Review: exclusions after discovery and the review_* views
 * (docs/state-file.md). Part of every new state file; review.c also runs
 * it (all IF NOT EXISTS) on state files made before it existed. */
const char tm__review_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS exclusions(id INTEGER PRIMARY KEY,"
    " path TEXT NOT NULL, pattern TEXT NOT NULL, time TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS excluded_prev(side TEXT NOT NULL,"
    " id INTEGER NOT NULL, root INTEGER NOT NULL,"
    " traversal_status TEXT NOT NULL, copy_status TEXT, conflict TEXT,"
    " error TEXT, PRIMARY KEY(side, id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS excluded_prev_root ON excluded_prev(root);"
    "CREATE VIEW IF NOT EXISTS review_missing AS"
    " SELECT 'src' AS side, id, path, type, size, mtime, NULL AS reason"
    " FROM src_nodes WHERE copy_status = 'pending' AND conflict IS NULL"
    " AND depth > 0;"
    "CREATE VIEW IF NOT EXISTS review_conflicts AS"
    " SELECT 'src' AS side, id, path, type, size, mtime, conflict AS reason"
    " FROM src_nodes WHERE conflict IS NOT NULL AND depth > 0;"
    "CREATE VIEW IF NOT EXISTS review_extra AS"
    " SELECT 'dst' AS side, id, path, type, size, mtime, NULL AS reason"
    " FROM dst_nodes WHERE traversal_status = 'not_on_src' AND depth > 0;"
    "CREATE VIEW IF NOT EXISTS review_failed AS"
    " SELECT 'src' AS side, id, path, type, size, mtime, error AS reason"
    " FROM src_nodes WHERE (traversal_status = 'failed'"
    " OR copy_status = 'failed') AND depth > 0"
    " UNION ALL SELECT 'dst', id, path, type, size, mtime, error"
    " FROM dst_nodes WHERE traversal_status = 'failed' AND depth > 0;"
    "CREATE VIEW IF NOT EXISTS review_excluded AS"
    " SELECT 'src' AS side, n.id AS id, n.path AS path, n.type AS type,"
    " n.size AS size, n.mtime AS mtime,"
    " CASE WHEN e.id IS NULL THEN 'discover' ELSE 'review' END AS reason"
    " FROM src_nodes AS n LEFT JOIN excluded_prev AS e"
    " ON e.side = 'src' AND e.id = n.id"
    " WHERE n.traversal_status = 'excluded' AND n.depth > 0;"
    "CREATE VIEW IF NOT EXISTS review_skipped AS"
    " SELECT 'src' AS side, id, path, type, size, mtime,"
    " coalesce(error, conflict, CASE WHEN type = 'other' THEN 'special file' END)"
    " AS reason FROM src_nodes WHERE copy_status = 'skipped' AND depth > 0;"
    "CREATE VIEW IF NOT EXISTS review_items AS"
    " SELECT 'missing' AS kind, * FROM review_missing"
    " UNION ALL SELECT 'conflict', * FROM review_conflicts"
    " UNION ALL SELECT 'extra', * FROM review_extra"
    " UNION ALL SELECT 'failed', * FROM review_failed"
    " UNION ALL SELECT 'excluded', * FROM review_excluded"
    " UNION ALL SELECT 'skipped', * FROM review_skipped;"
    "CREATE VIEW IF NOT EXISTS review_folders AS"
    " SELECT p.id AS id, p.path AS path, p.copy_status AS copy_status,"
    " c.items AS items, c.bytes AS bytes FROM"
    " (SELECT parent_id, count(*) AS items,"
    " sum(CASE WHEN type = 'file' THEN size ELSE 0 END) AS bytes"
    " FROM src_nodes WHERE copy_status = 'pending' GROUP BY parent_id) AS c"
    " JOIN src_nodes AS p ON p.id = c.parent_id;"
    "CREATE VIEW IF NOT EXISTS review_summary AS"
    " SELECT 'copy' AS what, copy_status AS status, type,"
    " sum(count) AS count, sum(bytes) AS bytes FROM copy_stats"
    " WHERE depth > 0 GROUP BY copy_status, type HAVING sum(count) != 0"
    " UNION ALL SELECT 'conflict', conflict, type, count(*), sum(size)"
    " FROM src_nodes WHERE conflict IS NOT NULL AND depth > 0"
    " GROUP BY conflict, type"
    " UNION ALL SELECT 'src', traversal_status, type, sum(count), sum(bytes)"
    " FROM src_stats WHERE depth > 0 GROUP BY traversal_status, type"
    " HAVING sum(count) != 0"
    " UNION ALL SELECT 'dst', traversal_status, type, sum(count), sum(bytes)"
    " FROM dst_stats WHERE depth > 0 GROUP BY traversal_status, type"
    " HAVING sum(count) != 0;";

int tm__store_error(struct tm__db *db, int rc, struct tm__buf *err, const char *what)
{
    int primary = rc & 0xff;
    const char *file = db ? db->name : NULL;
    if (err) {
        /* name the file: the user may have several state files */
        tm__buf_reset(err);
        if (file && *file)
            tm__buf_addf(err, "state file %s: %s: %s", file, what,
                         tm__db_errmsg(db));
        else
            tm__buf_addf(err, "%s: %s", what,
                         db ? tm__db_errmsg(db) : sqlite3_errstr(rc));
    }
    switch (primary) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return TM_ECORRUPT;
    case SQLITE_FULL:
        return TM_ENOSPC;
    case SQLITE_NOMEM:
        return TM_ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return TM_ELOCKED;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN:
        return TM_EACCES;
    case SQLITE_IOERR:
        return TM_EIO;
    default:
        return TM_EDB;
    }
}

int tm__store_exec(struct tm__db *db, const char *sql, struct tm__buf *err)
{
    int rc = tm__db_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, err, "cannot update");
    return 0;
}

int tm__store_begin(struct tm__db *db, struct tm__buf *err)
{
    return tm__store_exec(db, "BEGIN IMMEDIATE", err);
}

int tm__store_commit(struct tm__db *db, struct tm__buf *err)
{
    return tm__store_exec(db, "COMMIT", err);
}

void tm__store_rollback(struct tm__db *db)
{
    tm__db_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

const char *tm__store_errmsg(struct tm__db *db)
{
    return tm__db_errmsg(db);
}

int tm__store_get(struct tm__db *db, const char *key, struct tm__buf *out)
{
    struct tm__stmt *st;
    int rc = tm__db_prepare(db, "SELECT value FROM migration WHERE key=?",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, NULL, "read setting");
    tm__db_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = tm__db_step(st);
    tm__buf_reset(out);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)tm__db_column_text(st, 0);
        rc = v ? tm__buf_add(out, v, (size_t)tm__db_column_bytes(st, 0)) : 0;
    } else if (rc == SQLITE_DONE) {
        rc = TM_ENOENT;
    } else {
        rc = tm__store_error(db, rc, NULL, "read setting");
    }
    tm__db_finalize(st);
    return rc;
}

int tm__store_set(struct tm__db *db, const char *key, const char *value)
{
    struct tm__stmt *st;
    int rc = tm__db_prepare(
        db, "INSERT OR REPLACE INTO migration(key, value) VALUES(?, ?)", -1, &st,
        NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, NULL, "write setting");
    tm__db_bind_text(st, 1, key, -1, SQLITE_STATIC);
    tm__db_bind_text(st, 2, value, -1, SQLITE_STATIC);
    rc = tm__db_step(st);
    tm__db_finalize(st);
    return rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, NULL, "write setting");
}

/* The pid written in the lock file fd, into pid (len bytes), "" if none. */
static void lock_pid(int fd, char *pid, size_t len)
{
    ssize_t n = pread(fd, pid, len - 1, 0);
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
}

/* 1 when the process named in the lock file is gone while the lock is
 * held: a treemig killed a moment ago, whose children (an ssh forked and
 * not yet exec'd or ended) still share its lock until they do. */
static int holder_gone(const char *pid)
{
    char *end;
    long v = strtol(pid, &end, 10);
    return pid[0] && !*end && v > 0 && kill((pid_t)v, 0) != 0 && errno == ESRCH;
}

/* Takes the lock file beside the database; reports the holder's pid. A
 * lock whose holder is gone is waited for up to LOCK_GONE_WAIT_MS. */
#define LOCK_GONE_WAIT_MS 3000
static int take_lock(struct tm__store *s, struct tm__buf *err)
{
    struct tm__buf lp = TM__BUF_INIT;
    char pid[32];
    int fd, n, waited = 0;

    if (tm__buf_addf(&lp, "%s.lock", s->path))
        return TM_ENOMEM;
    fd = open(lp.buf, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        tm__buf_addf(err, "cannot open lock file %s: %s", lp.buf,
                     tm_strerror(tm__from_errno(e)));
        tm__buf_release(&lp);
        return tm__from_errno(e);
    }
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        lock_pid(fd, pid, sizeof pid);
        if (e == EWOULDBLOCK && waited < LOCK_GONE_WAIT_MS && holder_gone(pid)) {
            tm__sleep_ms(10);
            waited += 10;
            continue;
        }
        if (e == EWOULDBLOCK && holder_gone(pid))
            tm__buf_addf(err, "state file %s is locked by the child processes of "
                         "process %s, which has ended (an ssh it started, say): "
                         "end them, or wait", s->path, pid);
        else if (e == EWOULDBLOCK)
            tm__buf_addf(err, "state file %s is in use by process %s", s->path,
                         pid[0] ? pid : "(unknown)");
        else
            tm__buf_addf(err, "cannot lock %s: %s", lp.buf,
                         tm_strerror(tm__from_errno(e)));
        close(fd);
        tm__buf_release(&lp);
        return e == EWOULDBLOCK ? TM_ELOCKED : tm__from_errno(e);
    }
    n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        /* the lock holds anyway; the pid is only for the message */
    }
    tm__buf_release(&lp);
    s->lock_fd = fd;
    return 0;
}

/* Checks that an existing file is an SQLite database before SQLite sees it:
 * SQLite would happily treat an empty file as a new database. The header is
 * read through SQLite's own file layer, not open()/close(): closing any
 * descriptor of the file would drop every POSIX lock this process holds on
 * it, those of the connections already open (treemig ui opens handles while
 * others are in use). SQLite defers that close until its locks are gone. */
static int check_header(const char *path, struct tm__buf *err)
{
    sqlite3_vfs *vfs = sqlite3_vfs_find(NULL);
    sqlite3_file *f = vfs ? calloc(1, (size_t)vfs->szOsFile) : NULL;
    char hdr[16];
    int rc, out = 0, n;

    if (!f)
        return TM_ENOMEM;
    memset(hdr, 0, sizeof hdr);
    rc = vfs->xOpen(vfs, path, f, SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_READONLY, &out);
    if (rc != SQLITE_OK) {
        /* the reason, without opening the file ourselves */
        int e = access(path, R_OK) != 0 ? errno : EIO;
        free(f);
        tm__buf_addf(err, "cannot open state file %s: %s", path,
                     tm_strerror(tm__from_errno(e)));
        return tm__from_errno(e);
    }
    rc = f->pMethods->xRead(f, hdr, sizeof hdr, 0);
    f->pMethods->xClose(f);
    free(f);
    n = rc == SQLITE_OK ? (int)sizeof hdr : hdr[0] ? 1 : 0;
    if (rc != SQLITE_OK || memcmp(hdr, "SQLite format 3", 16) != 0) {
        tm__buf_addf(err, "%s is not a treemig state file (%s); it was left "
                     "untouched", path, n == 0 ? "empty file" : "no SQLite header");
        return TM_ECORRUPT;
    }
    return 0;
}

static int pragma_int(struct tm__db *db, const char *sql, int *out)
{
    struct tm__stmt *st;
    int rc = tm__db_prepare(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        *out = tm__db_column_int(st, 0);
        rc = SQLITE_OK;
    }
    tm__db_finalize(st);
    return rc;
}

/* Verifies the identity and version of an opened database. */
static int check_identity(struct tm__store *s, struct tm__buf *err)
{
    int app = 0, ver = 0, rc;
    rc = pragma_int(s->db, "PRAGMA application_id", &app);
    if (rc == SQLITE_OK)
        rc = pragma_int(s->db, "PRAGMA user_version", &ver);
    if (rc != SQLITE_OK) {
        int e = tm__store_error(s->db, rc, err, "state file");
        tm__buf_reset(err);
        tm__buf_addf(err, "cannot read state file %s: %s; it was left untouched",
                     s->path, tm__db_errmsg(s->db));
        return e;
    }
    if (app != TM_APPLICATION_ID) {
        tm__buf_addf(err, "%s is an SQLite database of another program "
                     "(application_id %d); it was left untouched", s->path, app);
        return TM_ECORRUPT;
    }
    if (ver > TM_SCHEMA_VERSION) {
        tm__buf_addf(err, "%s has schema version %d, newer than this treemig "
                     "(%d); use a newer treemig", s->path, ver, TM_SCHEMA_VERSION);
        return TM_ESCHEMA;
    }
    if (ver < 1) {
        tm__buf_addf(err, "%s has no treemig schema; it was left untouched",
                     s->path);
        return TM_ECORRUPT;
    }
    return 0;
}

/* Before a resume writes anything: a state file damaged inside (a bad
 * disk, a copy cut short) is refused rather than made worse. Reads the
 * whole file once, which also warms the cache for the resume. */
static int quick_check(struct tm__store *s, struct tm__buf *err)
{
    struct tm__stmt *st;
    const char *res;
    int rc = tm__db_prepare(s->db, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = tm__db_step(st)) == SQLITE_ROW) {
        res = (const char *)tm__db_column_text(st, 0);
        if (res && strcmp(res, "ok") == 0) {
            tm__db_finalize(st);
            return 0;
        }
        tm__buf_reset(err);
        tm__buf_addf(err, "state file %s is damaged (%s); it was left untouched",
                     s->path, res ? res : "?");
        tm__db_finalize(st);
        return TM_ECORRUPT;
    }
    tm__db_finalize(st);
    rc = tm__store_error(s->db, rc, err, "check");
    tm__buf_reset(err);
    tm__buf_addf(err, "state file %s is damaged (%s); it was left untouched",
                 s->path, tm__db_errmsg(s->db));
    return rc == TM_ECORRUPT || rc == TM_EDB ? TM_ECORRUPT : rc;
}

/* 1 when the last writer left the state file at the end of a phase; a
 * phase still running (a crash) or suspended is checked before resuming. */
static int stopped_cleanly(struct tm__store *s)
{
    struct tm__buf b = TM__BUF_INIT;
    int clean = 1;
    if (tm__store_get(s->db, "phase", &b) == 0) {
        enum tm__phase ph = tm__phase_parse(b.buf);
        clean = ph != PH_DISCOVERING && ph != PH_COPYING && ph != PH_SUSPENDED;
    }
    tm__buf_release(&b);
    return clean;
}

/* The page size of a new state file. 8 KiB pages, not SQLite's 4 KiB:
 * a discovery writes each node row into a page once or twice and the WAL
 * writes every dirty page of a commit; with 8 KiB pages it takes half the
 * WAL frames, write(2) calls and b-tree pages, and the writer thread about
 * 8% less CPU (docs/BENCHMARKS.md). A file made before keeps its own:
 * SQLite reads the page size from the file's header. */
#define PAGE_SIZE_SQL "PRAGMA page_size=8192"

static int create_schema(struct tm__store *s, struct tm__buf *err)
{
    char sql[128];
    /* before the first table: the file is still empty */
    int rc = tm__store_exec(s->db, PAGE_SIZE_SQL, err);
    if (!rc)
        rc = tm__store_exec(s->db, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    rc = tm__store_exec(s->db, schema_sql, err);
    if (!rc)
        rc = tm__store_exec(s->db, tm__review_schema_sql, err);
    snprintf(sql, sizeof sql, "PRAGMA application_id=%d; PRAGMA user_version=%d",
             TM_APPLICATION_ID, TM_SCHEMA_VERSION);
    if (!rc)
        rc = tm__store_exec(s->db, sql, err);
    if (!rc)
        rc = tm__store_exec(s->db, "COMMIT", err);
    if (rc)
        tm__db_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Creates a state file with its schema atomically: it is built under a
 * temporary name and renamed into place, so a crash at any moment leaves
 * either no state file or a complete empty one, never a half-made file
 * that a resume would have to refuse. Called with the lock held, so a
 * leftover temporary of a crashed run can be removed. */
static int create_file(const char *path, struct tm__buf *err)
{
    struct tm__store tmp;
    struct tm__buf name = TM__BUF_INIT;
    char *dir;
    int fd, rc;

    memset(&tmp, 0, sizeof tmp);
    tmp.lock_fd = -1;
    if (tm__buf_addf(&name, "%s.creating", path))
        return TM_ENOMEM;
    unlink(name.buf);
    fd = open(name.buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = tm__from_errno(errno);
        tm__buf_addf(err, "cannot create state file %s: %s", path, tm_strerror(rc));
        goto out;
    }
    close(fd);
    rc = tm__db_open_sqlite(name.buf, SQLITE_OPEN_READWRITE, &tmp.db);
    if (rc != SQLITE_OK)
        rc = tm__store_error(tmp.db, rc, err, "cannot create state file");
    else
        rc = create_schema(&tmp, err);
    if (tmp.db && tm__db_close(tmp.db) != SQLITE_OK && !rc)
        rc = TM_EIO;
    if (!rc && (fd = open(name.buf, O_RDONLY | O_CLOEXEC)) >= 0) {
        if (fsync(fd) != 0)
            rc = tm__from_errno(errno);
        close(fd);
    }
    if (!rc && rename(name.buf, path) != 0) {
        rc = tm__from_errno(errno);
        tm__buf_addf(err, "cannot create state file %s: %s", path, tm_strerror(rc));
    }
    if (rc) {
        unlink(name.buf);
        goto out;
    }
    dir = strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
        free(dir);
    }
out:
    tm__buf_release(&name);
    return rc;
}

/* Upgrades a state file of an older version in one transaction. */
static int upgrade(struct tm__store *s, struct tm__buf *err)
{
    char sql[64];
    int ver = 0, rc;
    if (pragma_int(s->db, "PRAGMA user_version", &ver) != SQLITE_OK)
        return tm__store_error(s->db, SQLITE_ERROR, err, "read version");
    if (ver >= TM_SCHEMA_VERSION)
        return 0;
    rc = tm__store_exec(s->db, "BEGIN IMMEDIATE", err);
    for (; !rc && ver < TM_SCHEMA_VERSION; ver++)
        rc = tm__store_exec(s->db, upgrade_sql[ver - 1], err);
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", TM_SCHEMA_VERSION);
    if (!rc)
        rc = tm__store_exec(s->db, sql, err);
    if (!rc)
        rc = tm__store_exec(s->db, "COMMIT", err);
    if (rc)
        tm__db_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

/* SQLite's memory statistics take a global mutex on every allocation,
 * which the worker and writer threads would fight over. */
static void sqlite_setup(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sqlite3_initialize();
}

/* The state file's real path: symlinks resolved (the file itself, or its
 * folder when it does not exist yet), so that the lock file, the -wal and
 * -shm files and SQLite all take the same file whatever name leads to it:
 * a --db that is a symlink must not get a lock of its own beside the link.
 * *out is malloc'd; a dangling symlink is refused (TM_EINVAL). */
static int real_path(const char *path, char **out, struct tm__buf *err)
{
    struct stat st;
    *out = realpath(path, NULL);
    if (*out)
        return 0;
    if (errno == ENOMEM)
        return TM_ENOMEM;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        tm__buf_addf(err, "state file %s is a symlink to nothing; name the file "
                     "itself", path);
        return TM_EINVAL;
    }
    /* not there yet: its folder resolved, its name kept */
    {
        struct tm__buf b = TM__BUF_INIT;
        const char *slash = strrchr(path, '/');
        char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
        char *rdir = dir ? realpath(*dir ? dir : "/", NULL) : NULL;
        int rc = 0;
        if (rdir)
            rc = tm__buf_addf(&b, "%s/%s", strcmp(rdir, "/") ? rdir : "",
                              slash ? slash + 1 : path);
        else
            rc = dir && errno != ENOMEM ? tm__buf_adds(&b, path) : TM_ENOMEM;
        free(dir);
        free(rdir);
        *out = rc ? NULL : tm__buf_detach(&b, NULL);
        tm__buf_release(&b);
        return *out ? 0 : TM_ENOMEM;
    }
}

int tm__store_open(struct tm__store *s, const char *given, unsigned flags,
                   struct tm__buf *err)
{
    const char *path;
    int write = (flags & TM_OPEN_WRITE) != 0;
    int fresh = 0, rc, sflags;
    struct stat stb;

    if (tm__db_is_pg(given))
        return tm__store_open_pg(s, given, flags, err);
    if (flags & TM_OPEN_SHARED) {
        memset(s, 0, sizeof *s);
        s->lock_fd = -1;
        tm__buf_addf(err, "%s is an SQLite state file, which one process writes: "
                     "several workers need a PostgreSQL state database (--db "
                     "postgresql://...); on one machine, run copy with more "
                     "--workers", given);
        return TM_EINVAL;
    }
    pthread_once(&sqlite_once, sqlite_setup);
    memset(s, 0, sizeof *s);
    s->lock_fd = -1;
    s->readonly = !write;
    rc = real_path(given, &s->path, err);
    if (rc)
        return rc;
    path = s->path;
    if (!(flags & TM_OPEN_CREATE) && stat(path, &stb) != 0 && errno == ENOENT) {
        /* before the lock: asking for a missing file creates nothing */
        tm__buf_addf(err, "no state file at %s", path);
        rc = TM_ENODB;
        goto fail;
    }
    if (write) {
        rc = take_lock(s, err);
        if (rc)
            goto fail;
    }
    if (stat(path, &stb) != 0) {
        if (errno != ENOENT || !write || !(flags & TM_OPEN_CREATE)) {
            rc = errno == ENOENT ? TM_ENODB : tm__from_errno(errno);
            tm__buf_addf(err, "no state file at %s", path);
            goto fail;
        }
        rc = create_file(path, err);
        if (rc)
            goto fail;
        fresh = 1;
    } else if (S_ISDIR(stb.st_mode)) {
        rc = TM_EISDIR;
        tm__buf_addf(err, "state file %s is a folder", path);
        goto fail;
    } else {
        rc = check_header(path, err);
        if (rc)
            goto fail;
    }
    sflags = (write ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) |
             SQLITE_OPEN_NOMUTEX;
    rc = tm__db_open_sqlite(path, sflags, &s->db);
    if (rc != SQLITE_OK) {
        rc = tm__store_error(s->db, rc, err, "cannot open state file");
        goto fail;
    }
    sqlite3_busy_timeout(tm__db_sqlite(s->db), 10000);
    sqlite3_extended_result_codes(tm__db_sqlite(s->db), 1);
    if (write && sqlite3_db_readonly(tm__db_sqlite(s->db), "main") == 1) {
        /* SQLite falls back to read-only when it may not write */
        rc = TM_EACCES;
        tm__buf_addf(err, "state file %s cannot be written (permission denied, "
                     "or a read-only or immutable file)", path);
        goto fail;
    }
    rc = check_identity(s, err);
    if (!rc && write && !stopped_cleanly(s))
        rc = quick_check(s, err);
    if (!rc && write)
        rc = upgrade(s, err);
    if (rc)
        goto fail;
    if (write) {
        rc = tm__store_exec(s->db,
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                            "PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY;"
                            "PRAGMA wal_autocheckpoint=16384;",
                            err);
        if (rc)
            goto fail;
    }
    s->fresh = fresh;
    return 0;
fail:
    if (fresh) {
        /* a file we created and could not set up holds nothing: remove it */
        tm__db_close(s->db);
        s->db = NULL;
        unlink(path);
    }
    tm__store_close(s);
    return rc;
}

void tm__store_close(struct tm__store *s)
{
    if (s->db)
        tm__db_close(s->db);
    s->db = NULL;
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* releases the flock */
    s->lock_fd = -1;
    free(s->path);
    s->path = NULL;
    free(s->conninfo);
    s->conninfo = NULL;
}

const char *tm__store_conn(const struct tm__store *s)
{
    return s->conninfo ? s->conninfo : s->path;
}

char *tm__store_yaml_default(const char *path)
{
    struct tm__buf b = TM__BUF_INIT;
    int rc;
    if (tm__db_is_pg(path)) {
        /* postgresql://[auth@]host[:port]/DBNAME[?...]: DBNAME.yaml */
        const char *p = strstr(path, "://") + 3, *e;
        p = strchr(p, '/');
        p = p ? p + 1 : "";
        e = p + strcspn(p, "?/");
        rc = e > p ? tm__buf_addf(&b, "%.*s.yaml", (int)(e - p), p)
                   : tm__buf_adds(&b, "treemig.yaml");
    } else {
        rc = tm__buf_addf(&b, "%s.yaml", path);
    }
    if (rc) {
        tm__buf_release(&b);
        return NULL;
    }
    return tm__buf_detach(&b, NULL);
}

const char *tm__store_schema_sql(void)
{
    return schema_sql;
}

int tm__store_claim_indexes(struct tm__db *db, struct tm__buf *err)
{
    return tm__store_exec(db, CLAIM_INDEXES_SQL, err);
}

int tm__store_extra_index(struct tm__db *db, struct tm__buf *err)
{
    return tm__store_exec(db, EXTRA_INDEX_SQL, err);
}

const char *tm__store_upgrade_sql(int v)
{
    return v >= 1 && v < TM_SCHEMA_VERSION ? upgrade_sql[v - 1] : "";
}

int tm__store_open_reader(const char *path, struct tm__db **out, struct tm__buf *err)
{
    int rc;
    if (tm__db_is_pg(path)) {
        char *msg = NULL;
        rc = tm__db_open_pg(path, out, &msg);
        if (rc != SQLITE_OK) {
            char *name = tm__db_pg_redact(path);
            tm__buf_addf(err, "cannot connect to the state database %s: %s",
                         name ? name : "", msg ? msg : "out of memory");
            free(name);
            free(msg);
            return rc == SQLITE_AUTH ? TM_EAUTH : TM_EIO;
        }
        return 0;
    }
    rc = tm__db_open_sqlite(path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                                out);
    if (rc != SQLITE_OK) {
        rc = tm__store_error(*out, rc, err, "cannot open state file");
        tm__db_close(*out);
        *out = NULL;
        return rc;
    }
    sqlite3_busy_timeout(tm__db_sqlite(*out), 10000);
    tm__db_exec(*out, "PRAGMA cache_size=-1024", NULL, NULL, NULL);
    return 0;
}

static int key_eq(const struct tm__stat_key *a, const struct tm__stat_key *b)
{
    return a->table == b->table && a->depth == b->depth && a->type == b->type &&
           a->status == b->status && a->conflict == b->conflict;
}

int tm__stats_add(struct tm__stats_delta *d, const struct tm__stat_key *k,
                  int64_t count, int64_t bytes)
{
    size_t i;
    /* most deltas of a batch hit the last few keys: scan from the end */
    for (i = d->n; i-- > 0;) {
        if (key_eq(&d->rows[i].key, k)) {
            d->rows[i].count += count;
            d->rows[i].bytes += bytes;
            return 0;
        }
    }
    if (d->n == d->alloc) {
        size_t na = d->alloc ? d->alloc * 2 : 32;
        void *p = realloc(d->rows, na * sizeof *d->rows);
        if (!p)
            return TM_ENOMEM;
        d->rows = p;
        d->alloc = na;
    }
    d->rows[d->n].key = *k;
    d->rows[d->n].count = count;
    d->rows[d->n].bytes = bytes;
    d->n++;
    return 0;
}

/* qsort's order of stats rows: by table, then key. */
static int stat_row_cmp(const void *a, const void *b)
{
    const struct tm__stat_key *x = &((const struct tm__stat_delta_row *)a)->key;
    const struct tm__stat_key *y = &((const struct tm__stat_delta_row *)b)->key;
    int d[5] = { x->table - y->table, x->depth - y->depth, x->type - y->type,
                 x->status - y->status, x->conflict - y->conflict };
    int i;
    for (i = 0; i < 5; i++)
        if (d[i])
            return d[i] < 0 ? -1 : 1;
    return 0;
}

int tm__stats_apply(struct tm__db *db, struct tm__stats_delta *d)
{
    static const char *const sql[3] = {
        "INSERT INTO src_stats VALUES(?1,?2,?3,?5,?6) ON CONFLICT DO UPDATE "
        "SET count=count+excluded.count, bytes=bytes+excluded.bytes",
        "INSERT INTO dst_stats VALUES(?1,?2,?3,?5,?6) ON CONFLICT DO UPDATE "
        "SET count=count+excluded.count, bytes=bytes+excluded.bytes",
        "INSERT INTO copy_stats VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT DO UPDATE "
        "SET count=count+excluded.count, bytes=bytes+excluded.bytes",
    };
    struct tm__stmt *own[3] = { NULL, NULL, NULL }, **st = own;
    size_t i;
    int rc = SQLITE_OK;

    if (d->keep) { /* a writer's: prepared once, not at every commit */
        if (d->db != db)
            for (i = 0; i < 3; i++) {
                tm__db_finalize(d->st[i]);
                d->st[i] = NULL;
            }
        d->db = db;
        st = d->st;
    }

    /* every writer takes the rows' locks in one order (PostgreSQL, several
     * workers): no two commits wait for each other in a circle */
    if (d->n > 1)
        qsort(d->rows, d->n, sizeof *d->rows, stat_row_cmp);
    for (i = 0; i < d->n && rc == SQLITE_OK; i++) {
        const struct tm__stat_delta_row *r = &d->rows[i];
        int t = r->key.table;
        if (r->count == 0 && r->bytes == 0)
            continue;
        if (!st[t]) {
            rc = tm__db_prepare(db, sql[t], -1, &st[t], NULL);
            if (rc != SQLITE_OK)
                break;
        }
        tm__db_bind_int(st[t], 1, r->key.depth);
        tm__db_bind_text(st[t], 2, tm__type_names[r->key.type], -1, SQLITE_STATIC);
        tm__db_bind_text(st[t], 3,
                          t == 2 ? tm__cs_names[r->key.status]
                                 : tm__ts_names[r->key.status],
                          -1, SQLITE_STATIC);
        tm__db_bind_int(st[t], 4, r->key.conflict);
        tm__db_bind_int64(st[t], 5, r->count);
        tm__db_bind_int64(st[t], 6, r->bytes);
        rc = tm__db_step(st[t]);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        tm__db_reset(st[t]);
    }
    for (i = 0; i < 3; i++)
        tm__db_finalize(own[i]);
    d->n = 0;
    return rc == SQLITE_OK ? 0 : tm__store_error(db, rc, NULL, "stats");
}

void tm__stats_release(struct tm__stats_delta *d)
{
    size_t i;
    for (i = 0; i < 3; i++) {
        tm__db_finalize(d->st[i]);
        d->st[i] = NULL;
    }
    d->db = NULL;
    free(d->rows);
    d->rows = NULL;
    d->n = d->alloc = 0;
}
