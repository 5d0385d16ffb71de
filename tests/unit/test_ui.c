/* Unit tests of treemig ui's parts that stand alone: the access token's
 * comparison, the Host check, --listen parsing, the asset table, JSON
 * escaping and the decoders (src/ui/), and the SQL of src/store/ui_query.c
 * on a real state file discovered from a simulated pair: keyset pages of
 * children and the folder index's totals, each checked against plain SQL.
 * tests/integration/test_ui.py checks the same through HTTP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "migration/migration_int.h"
#include "store/store.h"
#include "store/ui_query.h"
#include "treemig.h"
#include "ui/ui_int.h"
#include "util/buf.h"

static const char token[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void test_token_equal(void **state)
{
    char guess[80];
    size_t i, n;
    (void)state;
    assert_int_equal(tm__ui_token_equal(token, token, 64), 1);
    /* one byte off anywhere, by any bit */
    for (i = 0; i < 64; i++) {
        int bit;
        for (bit = 0; bit < 8; bit++) {
            memcpy(guess, token, 64);
            guess[i] = (char)(guess[i] ^ (1 << bit));
            assert_int_equal(tm__ui_token_equal(token, guess, 64), 0);
        }
    }
    /* every prefix, and longer */
    for (n = 0; n < 64; n++)
        assert_int_equal(tm__ui_token_equal(token, token, n), 0);
    memcpy(guess, token, 64);
    guess[64] = '0';
    assert_int_equal(tm__ui_token_equal(token, guess, 65), 0);
    assert_int_equal(tm__ui_token_equal(token, NULL, 0), 0);
}

static void test_host(void **state)
{
    static const char *const good[] = { "127.0.0.1:8080", "localhost:8080",
                                        "LocalHost:8080", "[::1]:8080",
                                        "192.168.1.7:8080", NULL };
    static const char *const bad[] = {
        "evil.example:8080", "evil.example", "127.0.0.1.evil.example:8080",
        "localhost.evil.example:8080", "127.0.0.1:8081", "127.0.0.1", "127.0.0.1:",
        "127.0.0.1:8080x", "127.0.0.1:+8080", "[::1]", "[::1:8080", "[evil]:8080",
        "[::1]x:8080", "", ":8080", "1.2.3:8080", "localhost:8080:8080",
        "127.0.0.1:08080x", NULL };
    int i;
    (void)state;
    for (i = 0; good[i]; i++)
        if (!tm__ui_host_ok(good[i], 8080))
            fail_msg("Host %s refused", good[i]);
    for (i = 0; bad[i]; i++)
        if (tm__ui_host_ok(bad[i], 8080))
            fail_msg("Host %s accepted", bad[i]);
    assert_int_equal(tm__ui_host_ok(NULL, 8080), 0);
    assert_int_equal(tm__ui_host_ok("127.0.0.1", 80), 1); /* no port: 80 */
}

static void test_listen(void **state)
{
    static const struct {
        const char *s;
        int ok, loopback;
    } cases[] = {
        { "127.0.0.1:8080", 1, 1 }, { "127.9.9.9:0", 1, 1 }, { "localhost:1", 1, 1 },
        { "[::1]:65535", 1, 1 }, { "0.0.0.0:8080", 1, 0 }, { "10.1.2.3:80", 1, 0 },
        { "[::]:80", 1, 0 }, { "127.0.0.1", 0, 0 }, { "127.0.0.1:65536", 0, 0 },
        { "host.example:80", 0, 0 }, { ":80", 0, 0 }, { "[::1]80", 0, 0 },
        { "1.2.3:80", 0, 0 }, { "127.0.0.1:-1", 0, 0 }, { "", 0, 0 },
        { "127.0.0.1:80x", 0, 0 },
    };
    struct tm__buf err = TM__BUF_INIT;
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct sockaddr_storage ss;
        int lo = -1, rc = tm__ui_parse_listen(cases[i].s, &ss, &lo, &err);
        if ((rc == 0) != cases[i].ok)
            fail_msg("--listen %s: rc %d", cases[i].s, rc);
        if (rc == 0 && lo != cases[i].loopback)
            fail_msg("--listen %s: loopback %d", cases[i].s, lo);
    }
    tm__buf_release(&err);
}

static void test_assets(void **state)
{
    static const char *const none[] = { "", "/index.html", "/../app.js", "/app.js/",
                                        "/APP.JS", "/app.js?x", "//app.js", "/./app.js",
                                        "/api", "/app.css.map", "app.js", NULL };
    const char *type;
    size_t len;
    int i;
    (void)state;
    assert_non_null(tm__ui_asset("/", &len, &type));
    assert_string_equal(type, "text/html; charset=utf-8");
    assert_non_null(tm__ui_asset("/app.js", &len, &type));
    assert_true(len > 1000);
    assert_string_equal(type, "text/javascript; charset=utf-8");
    assert_non_null(tm__ui_asset("/app.css", &len, &type));
    for (i = 0; none[i]; i++)
        if (tm__ui_asset(none[i], &len, &type))
            fail_msg("%s is served", none[i]);
}

static void test_json(void **state)
{
    struct tm__buf b = TM__BUF_INIT;
    const char evil[] = "<script>alert(1)</script>&'\"\\\n\x7f";
    (void)state;
    assert_int_equal(tm__ui_json_str(&b, evil, sizeof evil - 1), 0);
    assert_string_equal(b.buf, "\"\\u003cscript\\u003ealert(1)\\u003c/script\\u003e"
                               "\\u0026\\u0027\\\"\\\\\\u000a\\u007f\"");
    tm__buf_reset(&b);
    /* not UTF-8, UTF-8, the line separators */
    assert_int_equal(tm__ui_json_str(&b, "a\xff\xc3\xa9\xe2\x80\xa8", 7), 0);
    assert_string_equal(b.buf, "\"a\\u00ff\xc3\xa9\\u2028\"");
    tm__buf_release(&b);
}

static void test_decoders(void **state)
{
    struct tm__buf b = TM__BUF_INIT;
    (void)state;
    assert_int_equal(tm__ui_unhex("2f61ff", 6, &b), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.buf, "/a\xff", 3);
    tm__buf_reset(&b);
    assert_int_equal(tm__ui_unhex("2f6", 3, &b), TM_EINVAL);
    tm__buf_reset(&b);
    assert_int_equal(tm__ui_unhex("zz", 2, &b), TM_EINVAL);
    tm__buf_reset(&b);
    assert_int_equal(tm__ui_unpercent("a%2Fb+c%ff", 10, &b), 0);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.buf, "a/b+c\xff", 6);
    tm__buf_reset(&b);
    assert_int_equal(tm__ui_unpercent("%4", 2, &b), TM_EINVAL);
    tm__buf_reset(&b);
    assert_int_equal(tm__ui_unpercent("%g0", 3, &b), TM_EINVAL);
    tm__buf_release(&b);
}

/* --------------------------------------------------------------------------
 * ui_query.c on a discovered simulated pair.
 */

struct sim {
    char dir[64];    /* temporary folder */
    char path[128];  /* the state file */
    struct tm__db *db;     /* a read-only connection */
};

static int sim_setup(void **state)
{
    static const char spec[] = "sim:seed=4,depth=4,folders=5,files=7,names=mixed";
    struct sim *s = calloc(1, sizeof *s);
    struct tm__buf err = TM__BUF_INIT;
    tm_discover_options o;
    tm_migration *m = NULL;
    char dst[128];
    int rc;
    if (!s)
        return -1;
    snprintf(s->dir, sizeof s->dir, "/tmp/treemig-uiq-XXXXXX");
    if (!mkdtemp(s->dir))
        return -1;
    snprintf(s->path, sizeof s->path, "%s/s.db", s->dir);
    snprintf(dst, sizeof dst, "%s,world=dst,keep=0.8,extra=0.1", spec);
    tm_discover_options_init(&o);
    o.workers = 2;
    rc = tm_migration_open(&m, s->path, TM_OPEN_WRITE | TM_OPEN_CREATE);
    if (!rc)
        rc = tm_discover(m, spec, dst, &o);
    if (rc)
        fprintf(stderr, "discover: %s\n", tm_migration_errmsg(m));
    tm_migration_free(m);
    if (rc || tm__store_open_reader(s->path, &s->db, &err))
        return -1;
    tm__buf_release(&err);
    *state = s;
    return 0;
}

static int sim_teardown(void **state)
{
    struct sim *s = *state;
    char cmd[160];
    tm__db_close(s->db);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
        return -1;
    free(s);
    return 0;
}

/* The names of parent's children by SQL, joined with '/' (names hold none). */
static void names_by_sql(struct tm__db *db, int side, int64_t parent, int desc,
                         struct tm__buf *out)
{
    struct tm__stmt *st;
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT name FROM %s WHERE parent_id = ?1 ORDER BY "
             "name %s", side ? "dst_nodes" : "src_nodes", desc ? "DESC" : "ASC");
    assert_int_equal(tm__db_prepare(db, sql, -1, &st, NULL), SQLITE_OK);
    tm__db_bind_int64(st, 1, parent);
    while (tm__db_step(st) == SQLITE_ROW) {
        tm__buf_add(out, tm__db_column_text(st, 0), (size_t)tm__db_column_bytes(st, 0));
        tm__buf_addch(out, '/');
    }
    tm__db_finalize(st);
}

static void test_children_pages(void **state)
{
    struct sim *s = *state;
    struct tm__stmt *folders;
    int side, checked = 0;
    for (side = 0; side < 2; side++) {
        assert_int_equal(tm__db_prepare(s->db, side
                         ? "SELECT id FROM dst_nodes WHERE type = 'folder'"
                         : "SELECT id FROM src_nodes WHERE type = 'folder'", -1,
                         &folders, NULL), SQLITE_OK);
        while (tm__db_step(folders) == SQLITE_ROW) {
            int64_t parent = tm__db_column_int64(folders, 0);
            int desc, limit;
            for (desc = 0; desc < 2; desc++) {
                struct tm__buf want = TM__BUF_INIT;
                names_by_sql(s->db, side, parent, desc, &want);
                for (limit = 1; limit <= 4; limit += 3) {
                    struct tm__uiq_rows rows = TM__UIQ_ROWS_INIT;
                    struct tm__buf got = TM__BUF_INIT, after = TM__BUF_INIT;
                    int has = 0, pages = 0;
                    for (;;) {
                        size_t before = rows.n;
                        /* a cursor that does not move would loop forever */
                        if (++pages > (int)want.len + 2)
                            fail_msg("folder %lld: the pages do not end",
                                     (long long)parent);
                        assert_int_equal(tm__uiq_children(s->db, side, parent, after.buf,
                                                          after.len, has, desc, limit,
                                                          &rows), 0);
                        if (rows.n == before)
                            break;
                        assert_true(rows.n - before <= (size_t)limit);
                        tm__buf_reset(&after);
                        tm__buf_add(&after, TM__UIQ_NAME(&rows, rows.n - 1),
                                    rows.v[rows.n - 1].name_len);
                        has = 1;
                    }
                    for (size_t i = 0; i < rows.n; i++) {
                        tm__buf_add(&got, TM__UIQ_NAME(&rows, i), rows.v[i].name_len);
                        tm__buf_addch(&got, '/');
                        assert_int_equal(rows.v[i].parent_id, parent);
                    }
                    if (strcmp(got.buf, want.buf) != 0)
                        fail_msg("folder %lld side %d desc %d limit %d:\n%s\n%s",
                                 (long long)parent, side, desc, limit, got.buf, want.buf);
                    tm__uiq_rows_release(&rows);
                    tm__buf_release(&got);
                    tm__buf_release(&after);
                    checked++;
                }
                tm__buf_release(&want);
            }
        }
        tm__db_finalize(folders);
    }
    assert_true(checked > 20);
}

static int64_t one_int(struct tm__db *db, const char *sql, int64_t arg)
{
    struct tm__stmt *st;
    int64_t v = -1;
    assert_int_equal(tm__db_prepare(db, sql, -1, &st, NULL), SQLITE_OK);
    tm__db_bind_int64(st, 1, arg);
    if (tm__db_step(st) == SQLITE_ROW)
        v = tm__db_column_int64(st, 0);
    tm__db_finalize(st);
    return v;
}

static void test_index_totals(void **state)
{
    struct sim *s = *state;
    struct tm__buf err = TM__BUF_INIT;
    struct tm__uiq_rows rows = TM__UIQ_ROWS_INIT;
    char ipath[160];
    struct tm__db *idx = NULL;
    struct tm__stmt *folders;
    int64_t max[2];
    int n = 0;

    snprintf(ipath, sizeof ipath, "%s/index.db", s->dir);
    assert_int_equal(tm__db_open_sqlite(ipath, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &idx), SQLITE_OK);
    if (tm__uiq_index_build(s->db, idx, NULL, max, &err) != 0)
        fail_msg("build: %s", err.buf);
    assert_int_equal(max[0], one_int(s->db, "SELECT max(id) + 0 * ?1 FROM src_nodes", 0));
    /* each source folder: its subtree counted by a recursive query */
    assert_int_equal(tm__db_prepare(s->db, "SELECT id FROM src_nodes WHERE type = "
                                        "'folder'", -1, &folders, NULL), SQLITE_OK);
    while (tm__db_step(folders) == SQLITE_ROW) {
        int64_t id = tm__db_column_int64(folders, 0);
        struct tm__uiq_totals t;
        static const char sub[] =
            "WITH RECURSIVE sub(id) AS (SELECT id FROM src_nodes WHERE parent_id = ?1"
            " UNION ALL SELECT c.id FROM src_nodes AS c JOIN sub ON c.parent_id = sub.id)"
            " SELECT ";
        char sql[512];
        assert_int_equal(tm__uiq_index_totals(idx, TM_SRC, id, &t), 0);
        snprintf(sql, sizeof sql, "%scount(*) FROM sub", sub);
        assert_int_equal(t.items, one_int(s->db, sql, id));
        snprintf(sql, sizeof sql, "%scount(*) FROM sub JOIN src_nodes AS n USING(id)"
                 " WHERE n.copy_status = 'pending'", sub);
        assert_int_equal(t.todo, one_int(s->db, sql, id));
        snprintf(sql, sizeof sql, "%scoalesce(sum(n.size), 0) FROM sub JOIN src_nodes"
                 " AS n USING(id) WHERE n.copy_status = 'pending' AND n.type = 'file'",
                 sub);
        assert_int_equal(t.todo_bytes, one_int(s->db, sql, id));
        snprintf(sql, sizeof sql, "%scount(*) FROM sub JOIN src_nodes AS n USING(id)"
                 " WHERE n.conflict IS NOT NULL", sub);
        assert_int_equal(t.n[UK_CONFLICT], one_int(s->db, sql, id));
        /* the index lists exactly its subfolders, by name */
        tm__uiq_rows_reset(&rows);
        assert_int_equal(tm__uiq_index_folders(idx, TM_SRC, id, NULL, 0, 0, 0, 100000,
                                               &rows), 0);
        assert_int_equal((int64_t)rows.n,
                         one_int(s->db, "SELECT count(*) FROM src_nodes WHERE parent_id"
                                 " = ?1 AND type = 'folder'", id));
        for (size_t i = 1; i < rows.n; i++)
            assert_true(strcmp(TM__UIQ_NAME(&rows, i - 1), TM__UIQ_NAME(&rows, i)) < 0);
        n++;
    }
    tm__db_finalize(folders);
    assert_true(n > 10);
    /* destination: what only it has, below each folder */
    {
        struct tm__uiq_totals t;
        int64_t root = one_int(s->db, "SELECT id + 0 * ?1 FROM dst_nodes WHERE "
                               "parent_id IS NULL", 0);
        assert_int_equal(tm__uiq_index_totals(idx, TM_DST, root, &t), 0);
        assert_int_equal(t.n[UK_EXTRA],
                         one_int(s->db, "SELECT count(*) + 0 * ?1 FROM dst_nodes WHERE "
                                 "traversal_status = 'not_on_src'", 0));
        assert_true(t.n[UK_EXTRA] > 0);
    }
    tm__uiq_rows_release(&rows);
    tm__db_close(idx);
    tm__buf_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_equal),
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_assets),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_decoders),
        cmocka_unit_test_setup_teardown(test_children_pages, sim_setup, sim_teardown),
        cmocka_unit_test_setup_teardown(test_index_totals, sim_setup, sim_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
