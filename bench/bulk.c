/* bulk.c: inserts n_src + n_dst rows into the state file's own node tables
 * (schema read from stdin), BFS-ordered ids, in transactions of 8192 rows,
 * WAL and synchronous=NORMAL like treemig: the floor of the same work. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static void ck(int rc, sqlite3 *db, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "bulk: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}
static void fill(sqlite3 *db, const char *table, long long n, int dst)
{
    char sql[512], path[256], name[32];
    sqlite3_stmt *st;
    long long id;
    snprintf(sql, sizeof sql, "INSERT INTO %s(id, parent_id, path, name, type, size, "
             "mtime, mode, depth, traversal_status,%s conflict, attempts, error) "
             "VALUES(?,?,?,?,?,?,?,420,?,'successful',%s NULL, 0, NULL)",
             table, dst ? "" : " copy_status,", dst ? "" : " 'pending',");
    ck(sqlite3_prepare_v2(db, sql, -1, &st, NULL), db, "prepare");
    ck(sqlite3_exec(db, "BEGIN", 0, 0, 0), db, "begin");
    for (id = 1; id <= n; id++) {
        long long parent = id == 1 ? 0 : (id - 2) / 12 + 1, p = parent;
        int depth = 0, len;
        while (p > 1) { p = (p - 2) / 12 + 1; depth++; }
        snprintf(name, sizeof name, "%s%lld", id % 8 ? "f" : "d", (id - 2) % 12);
        len = snprintf(path, sizeof path, "/d%lld/d%lld/d%lld/%s", parent % 16,
                       parent % 7, parent, name);
        sqlite3_bind_int64(st, 1, id);
        if (id == 1) sqlite3_bind_null(st, 2); else sqlite3_bind_int64(st, 2, parent);
        sqlite3_bind_text(st, 3, path, len, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, id == 1 ? "" : name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, id % 8 ? "file" : "folder", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, id * 7919 % 100000);
        sqlite3_bind_int64(st, 7, 1500000000000000000LL + id * 104729);
        sqlite3_bind_int(st, 8, id == 1 ? 0 : depth + 1);
        ck(sqlite3_step(st), db, "insert");
        sqlite3_reset(st);
        if (id % 8192 == 0) {
            ck(sqlite3_exec(db, "COMMIT", 0, 0, 0), db, "commit");
            ck(sqlite3_exec(db, "BEGIN", 0, 0, 0), db, "begin");
        }
    }
    ck(sqlite3_exec(db, "COMMIT", 0, 0, 0), db, "commit");
    sqlite3_finalize(st);
}
int main(int argc, char **argv)
{
    static char schema[1 << 16];
    size_t n = fread(schema, 1, sizeof schema - 1, stdin);
    struct timespec a, b;
    sqlite3 *db;
    if (argc != 4) return 2;
    schema[n] = '\0';
    remove(argv[1]);
    ck(sqlite3_open(argv[1], &db), db, "open");
    ck(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", 0, 0, 0), db, "pragma");
    ck(sqlite3_exec(db, schema, 0, 0, 0), db, "schema");
    clock_gettime(CLOCK_MONOTONIC, &a);
    fill(db, "src_nodes", atoll(argv[2]), 0);
    fill(db, "dst_nodes", atoll(argv[3]), 1);
    clock_gettime(CLOCK_MONOTONIC, &b);
    sqlite3_close(db);
    printf("%.2f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
