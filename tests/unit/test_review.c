/* Unit tests of review.c: the review objects of the schema, the escaping
 * of the plain listing, and exclude/unexclude on a small hand-made state
 * file (stats kept exact, rows restored). The integration test
 * (tests/integration/test_review.py) checks the same against real trees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "migration/migration_int.h"
#include "store/store.h"
#include "treemig.h"
#include "util/buf.h"

struct fixture {
    char dir[64];      /* temporary folder */
    char path[128];    /* the state file */
    tm_migration *m;   /* opened for writing */
    sqlite3 *db;       /* its connection */
};

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, err ? err : "?");
}

/* A discovered migration: /a (folder, already there) holding a.txt (size
 * conflict) and sub/ (missing) with x; /odd names; /gone (dst only). */
static int setup(void **state)
{
    static const char rows[] =
        "INSERT INTO migration VALUES('phase','discovered'),('src','/s'),"
        "('dst','/d'),('suspended_from','');"
        "INSERT INTO src_nodes(id,parent_id,path,name,type,size,mtime,depth,"
        "traversal_status,copy_status,conflict) VALUES"
        "(1,NULL,'/','','folder',0,0,0,'successful','already_existed',NULL),"
        "(2,1,'/a','a','folder',0,0,1,'successful','already_existed',NULL),"
        "(3,1,'/odd','odd','folder',0,0,1,'successful','pending',NULL),"
        "(4,2,'/a/a.txt','a.txt','file',10,0,2,'successful','pending','size'),"
        "(5,2,'/a/sub','sub','folder',0,0,2,'successful','pending',NULL),"
        "(6,5,'/a/sub/x','x','file',7,0,3,'successful','pending',NULL),"
        "(7,3,'/odd/t' || char(9) || 'ab','t' || char(9) || 'ab','file',1,0,2,"
        "'successful','pending',NULL),"
        "(8,3,'/odd/' || char(8238) || 'gpj.exe','' || char(8238) || 'gpj.exe',"
        "'file',2,0,2,'successful','pending',NULL),"
        "(9,3,'/odd/c1' || char(133),'c1' || char(133),'file',3,0,2,"
        "'successful','pending',NULL),"
        "(10,3,'/odd/back\\slash' || char(13) || char(127),"
        "'back\\slash' || char(13) || char(127),'file',4,0,2,'successful',"
        "'pending',NULL),"
        "(11,3,'/odd/' || CAST(x'ff41' AS TEXT),CAST(x'ff41' AS TEXT),'file',5,0,2,"
        "'successful','pending',NULL),"
        "(12,3,'/odd/caf' || char(233),'caf' || char(233),'file',6,0,2,"
        "'successful','pending',NULL);"
        "INSERT INTO dst_nodes(id,parent_id,path,name,type,size,mtime,depth,"
        "traversal_status,conflict,src_id) VALUES"
        "(1,NULL,'/','','folder',0,0,0,'successful',NULL,1),"
        "(2,1,'/a','a','folder',0,0,1,'successful',NULL,2),"
        "(3,2,'/a/a.txt','a.txt','file',20,0,2,'successful','size',4),"
        "(4,2,'/a/dst_only','dst_only','file',3,0,2,'not_on_src',NULL,NULL),"
        "(5,1,'/gone','gone','file',1,0,1,'not_on_src',NULL,NULL);"
        "INSERT INTO src_stats SELECT depth, type, traversal_status, count(*),"
        " sum(size) FROM src_nodes GROUP BY 1, 2, 3;"
        "INSERT INTO copy_stats SELECT depth, type, copy_status,"
        " conflict IS NOT NULL, count(*), sum(size) FROM src_nodes"
        " GROUP BY 1, 2, 3, 4;"
        "INSERT INTO dst_stats SELECT depth, type, traversal_status, count(*),"
        " sum(size) FROM dst_nodes GROUP BY 1, 2, 3;";
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/tm-review-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
    assert_int_equal(tm_migration_open(&f->m, f->path, TM_OPEN_WRITE | TM_OPEN_CREATE),
                     0);
    f->db = tm__db_sqlite(tm__migration_db(f->m));
    assert_non_null(f->db);
    exec_ok(f->db, rows);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char p[160];
    static const char *const ext[] = { "", "-wal", "-shm", ".lock", ".yaml" };
    size_t i;
    tm_migration_free(f->m);
    for (i = 0; i < sizeof ext / sizeof *ext; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, ext[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* The whole output of a function that writes to a FILE. */
static char *capture(int (*fn)(tm_migration *, FILE *, void *), tm_migration *m,
                     void *arg, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    *rc = fn(m, out, arg);
    fclose(out);
    return buf;
}

struct list_args {
    const char *kind, *prefix;
    int json;
};

static int do_list(tm_migration *m, FILE *out, void *arg)
{
    struct list_args *a = arg;
    return tm_review_list(m, a->kind, a->prefix, a->json, out);
}

static int do_print(tm_migration *m, FILE *out, void *arg)
{
    return tm_review_print(m, out, *(int *)arg);
}

/* The sql of the review objects, in name order. */
static void review_objects(sqlite3 *db, struct tm__buf *out)
{
    sqlite3_stmt *st;
    tm__buf_reset(out);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT type, name, sql FROM sqlite_master "
                                        "WHERE name LIKE 'review%' OR name LIKE "
                                        "'exclu%' ORDER BY name", -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        tm__buf_addf(out, "%s %s: %s\n", sqlite3_column_text(st, 0),
                     sqlite3_column_text(st, 1), sqlite3_column_text(st, 2));
    sqlite3_finalize(st);
}

static void test_schema_text_in_step(void **state)
{
    struct fixture *f = *state;
    struct tm__buf fresh = TM__BUF_INIT, again = TM__BUF_INIT;
    /* objects of a new state file (store.c) ... */
    review_objects(f->db, &fresh);
    assert_non_null(strstr(fresh.buf, "view review_items"));
    assert_non_null(strstr(fresh.buf, "table excluded_prev"));
    /* ... equal the ones review.c creates in an older file */
    exec_ok(f->db, "DROP VIEW review_items; DROP VIEW review_missing;"
                   "DROP VIEW review_conflicts; DROP VIEW review_extra;"
                   "DROP VIEW review_failed; DROP VIEW review_excluded;"
                   "DROP VIEW review_skipped;"
                   "DROP VIEW review_folders; DROP VIEW review_summary;"
                   "DROP TABLE excluded_prev; DROP TABLE exclusions;");
    review_objects(f->db, &again);
    assert_string_equal(again.buf, "");
    exec_ok(f->db, tm__review_schema_sql);
    review_objects(f->db, &again);
    assert_string_equal(fresh.buf, again.buf);
    /* and running it again is harmless */
    exec_ok(f->db, tm__review_schema_sql);
    tm__buf_release(&fresh);
    tm__buf_release(&again);
}

static void test_plain_escapes(void **state)
{
    struct fixture *f = *state;
    struct list_args a = { "missing", "/odd", 0 };
    int rc;
    char *out = capture(do_list, f->m, &a, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out,
                        "missing\tfolder\t0\t/odd\n"
                        "missing\tfile\t1\t/odd/t\\tab\n"
                        "missing\tfile\t2\t/odd/\\u202egpj.exe\n"
                        "missing\tfile\t3\t/odd/c1\\u0085\n"
                        "missing\tfile\t4\t/odd/back\\\\slash\\r\\x7f\n"
                        "missing\tfile\t5\t/odd/\\xffA\n"
                        "missing\tfile\t6\t/odd/caf\xc3\xa9\n");
    free(out);
}

static void test_json_lines(void **state)
{
    struct fixture *f = *state;
    struct list_args a = { "missing", "/odd/", 1 };
    int rc;
    char *out = capture(do_list, f->m, &a, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "{\"path\":\"/odd/t\\u0009ab\",\"type\":\"file\","
                                "\"size\":1,\"mtime\":0,\"state\":\"missing\","
                                "\"reason\":null,\"side\":\"src\"}\n"));
    assert_non_null(strstr(out, "\"path\":\"/odd/\\u00ffA\""));
    assert_non_null(strstr(out, "\"path_hex\":\"2f6f64642fff41\"}\n"));
    assert_non_null(strstr(out, "\"path\":\"/odd/caf\xc3\xa9\""));
    assert_null(strstr(out, "caf\xc3\xa9\",\"type\":\"file\",\"size\":6,\"mtime\":0,"
                            "\"state\":\"missing\",\"reason\":null,\"side\":\"src\","
                            "\"path_hex\""));
    free(out);
}

static void test_prefix_is_a_path(void **state)
{
    struct fixture *f = *state;
    struct list_args a = { "all", "/a", 0 };
    int rc;
    char *out = capture(do_list, f->m, &a, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "missing\tfolder\t0\t/a/sub\n"
                             "missing\tfile\t7\t/a/sub/x\n"
                             /* a conflict: the destination's side too */
                             "conflict\tfile\t10\t/a/a.txt\tsize\t"
                             "1970-01-01T00:00:00.000000000Z\tfile\t20\t"
                             "1970-01-01T00:00:00.000000000Z\n"
                             "extra\tfile\t3\t/a/dst_only\n");
    free(out);
    a.prefix = "/o"; /* not '/odd' */
    out = capture(do_list, f->m, &a, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "");
    free(out);
    a.kind = "nonsense";
    out = capture(do_list, f->m, &a, &rc);
    assert_int_equal(rc, TM_EINVAL);
    assert_non_null(strstr(tm_migration_errmsg(f->m), "nonsense"));
    free(out);
}

/* 1 when every stats table equals a GROUP BY of its rows. */
static int stats_exact(sqlite3 *db)
{
    static const char *const sql[] = {
        "SELECT count(*) FROM (SELECT depth, type, traversal_status, count(*) c,"
        " sum(size) b FROM src_nodes GROUP BY 1, 2, 3 EXCEPT SELECT * FROM"
        " src_stats) ",
        "SELECT count(*) FROM (SELECT * FROM src_stats WHERE count != 0 EXCEPT"
        " SELECT depth, type, traversal_status, count(*), sum(size) FROM"
        " src_nodes GROUP BY 1, 2, 3)",
        "SELECT count(*) FROM (SELECT depth, type, copy_status, conflict IS NOT"
        " NULL, count(*), sum(size) FROM src_nodes GROUP BY 1, 2, 3, 4 EXCEPT"
        " SELECT * FROM copy_stats)",
        "SELECT count(*) FROM (SELECT * FROM copy_stats WHERE count != 0 EXCEPT"
        " SELECT depth, type, copy_status, conflict IS NOT NULL, count(*),"
        " sum(size) FROM src_nodes GROUP BY 1, 2, 3, 4)",
        "SELECT count(*) FROM (SELECT depth, type, traversal_status, count(*),"
        " sum(size) FROM dst_nodes GROUP BY 1, 2, 3 EXCEPT SELECT * FROM"
        " dst_stats)",
        "SELECT count(*) FROM (SELECT * FROM dst_stats WHERE count != 0 EXCEPT"
        " SELECT depth, type, traversal_status, count(*), sum(size) FROM"
        " dst_nodes GROUP BY 1, 2, 3)",
    };
    size_t i;
    for (i = 0; i < sizeof sql / sizeof *sql; i++) {
        sqlite3_stmt *st;
        int n;
        assert_int_equal(sqlite3_prepare_v2(db, sql[i], -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        if (n)
            return 0;
    }
    return 1;
}

static void dump(sqlite3 *db, struct tm__buf *out)
{
    sqlite3_stmt *st;
    tm__buf_reset(out);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT 's', id, traversal_status, "
                                        "copy_status, conflict, error FROM src_nodes "
                                        "UNION ALL SELECT 'd', id, traversal_status, "
                                        "NULL, conflict, error FROM dst_nodes", -1,
                                        &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        tm__buf_addf(out, "%s %lld %s %s %s %s\n", sqlite3_column_text(st, 0),
                     (long long)sqlite3_column_int64(st, 1), sqlite3_column_text(st, 2),
                     sqlite3_column_text(st, 3), sqlite3_column_text(st, 4),
                     sqlite3_column_text(st, 5));
    sqlite3_finalize(st);
}

static const char *status_of(sqlite3 *db, const char *table, const char *path,
                             char *out, size_t len)
{
    sqlite3_stmt *st;
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT traversal_status FROM %s WHERE path = ?", table);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, len, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
}

static void test_exclude_and_back(void **state)
{
    struct fixture *f = *state;
    struct tm__buf before = TM__BUF_INIT, after = TM__BUF_INIT;
    const char *pat[] = { "/a/" };
    char s[32];
    int64_t changed = -1;
    int top = 3, rc;
    char *out;

    assert_true(stats_exact(f->db));
    dump(f->db, &before);
    assert_int_equal(tm_exclude(f->m, pat, 1, 0, &changed), 0);
    assert_int_equal(changed, 4); /* /a, a.txt, sub, x */
    assert_true(stats_exact(f->db));
    assert_string_equal(status_of(f->db, "src_nodes", "/a/sub/x", s, sizeof s),
                        "excluded");
    assert_string_equal(status_of(f->db, "dst_nodes", "/a/dst_only", s, sizeof s),
                        "excluded");
    assert_string_equal(status_of(f->db, "dst_nodes", "/gone", s, sizeof s),
                        "not_on_src");
    out = capture(do_print, f->m, &top, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "\nexcluded          4 (2 files, 2 folders), 17 bytes"));
    assert_non_null(strstr(out, "\nconflicts         0\n"));
    free(out);
    /* /a/sub is excluded because /a is: not on its own */
    pat[0] = "/a/sub";
    assert_int_equal(tm_exclude(f->m, pat, 1, 1, &changed), TM_EPHASE);
    assert_non_null(strstr(tm_migration_errmsg(f->m), "'/a'"));
    pat[0] = "a";
    assert_int_equal(tm_exclude(f->m, pat, 1, 1, &changed), 0);
    assert_int_equal(changed, 4);
    dump(f->db, &after);
    assert_string_equal(before.buf, after.buf);
    assert_true(stats_exact(f->db));
    tm__buf_release(&before);
    tm__buf_release(&after);
}

static void test_exclude_refusals(void **state)
{
    struct fixture *f = *state;
    const char *pat[] = { "/a" };
    int64_t changed;
    assert_int_equal(tm_exclude(f->m, pat, 0, 0, &changed), TM_EINVAL);
    pat[0] = "/";
    assert_int_equal(tm_exclude(f->m, pat, 1, 0, &changed), TM_EINVAL);
    pat[0] = "a/b";
    assert_int_equal(tm_exclude(f->m, pat, 1, 0, &changed), TM_EINVAL);
    pat[0] = "/nothing/here";
    assert_int_equal(tm_exclude(f->m, pat, 1, 0, &changed), TM_EINVAL);
    exec_ok(f->db, "UPDATE src_nodes SET copy_status = 'in_progress' WHERE id = 6");
    pat[0] = "/a";
    assert_int_equal(tm_exclude(f->m, pat, 1, 0, &changed), TM_EPHASE);
    assert_non_null(strstr(tm_migration_errmsg(f->m), "/a/sub/x is in_progress"));
    exec_ok(f->db, "UPDATE src_nodes SET copy_status = 'pending' WHERE id = 6;"
                   "UPDATE migration SET value = 'discovering' WHERE key = 'phase'");
    assert_int_equal(tm_exclude(f->m, pat, 1, 0, &changed), TM_EPHASE);
    assert_non_null(strstr(tm_migration_errmsg(f->m), "discovery is not complete"));
}

static void test_read_only(void **state)
{
    struct fixture *f = *state;
    tm_migration *ro = NULL;
    const char *pat[] = { "/a" };
    int64_t changed;
    int top = 0, rc;
    char *out;
    assert_int_equal(tm_migration_open(&ro, f->path, TM_OPEN_READONLY), 0);
    assert_int_equal(tm_exclude(ro, pat, 1, 0, &changed), TM_EINVAL);
    out = capture(do_print, ro, &top, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "to copy           10 (8 files, 2 folders), 38 bytes"));
    assert_null(strstr(out, "folders with the most"));
    free(out);
    tm_migration_free(ro);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_text_in_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_is_a_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exclude_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exclude_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
