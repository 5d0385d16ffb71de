/* Unit tests of writer.c on a real state file: the children of a page go
 * in by chunks of rows per INSERT, the verdicts on source twins by runs; a page listed again, whole or in part
 * (a resume, a storage that repeats names across pages), inserts only what
 * is new, counts it once in the stats and applies a destination row's
 * verdict on its source twin only when that row is new; and the WAL starts
 * over while the writer runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "adapter/adapter.h"
#include "store/frontier.h"
#include "store/store.h"
#include "store/writer.h"
#include "treemig.h"
#include "util/buf.h"

struct fixture {
    char dir[64];         /* temporary folder */
    char path[128];       /* the state file */
    struct tm__store s;   /* opened for writing */
    _Atomic int64_t inserted; /* children the commits reported new (the
                                 writer thread adds, the test reads) */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct tm__buf err = TM__BUF_INIT;
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/tm-writer-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
    if (tm__store_open(&f->s, f->path, TM_OPEN_WRITE | TM_OPEN_CREATE, &err) != 0)
        fail_msg("open: %s", err.buf ? err.buf : "?");
    tm__buf_release(&err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char p[160];
    tm__store_close(&f->s);
    snprintf(p, sizeof p, "%s-wal", f->path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", f->path);
    unlink(p);
    snprintf(p, sizeof p, "%s.lock", f->path);
    unlink(p);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void on_commit(void *ctx, const struct tm__result *list)
{
    struct fixture *f = ctx;
    for (; list; list = list->next)
        f->inserted += list->inserted;
}

/* A page (not the last) of folder 1's listing on side: files c<first> ..
 * c<first + n - 1> (names of 3 digits, in order), of size 10 each; on the
 * destination each is matched with source twin src_id0 + i, found equal
 * (the twin becomes already_existed). */
static struct tm__result *page(int side, int first, int n, int64_t src_id0)
{
    struct tm__result *r = calloc(1, sizeof *r);
    int i;
    assert_non_null(r);
    r->kind = TM_R_LISTING;
    r->side = side;
    r->folder_id = 1;
    r->depth = 0;
    tm__buf_init(&r->arena);
    tm__buf_init(&r->pos);
    assert_int_equal(tm__buf_adds(&r->pos, "cursor"), 0);
    r->nodes = calloc((size_t)n, sizeof *r->nodes);
    assert_non_null(r->nodes);
    for (i = 0; i < n; i++) {
        struct tm__wnode *w = &r->nodes[i];
        char name[16];
        snprintf(name, sizeof name, "c%03d", first + i);
        w->parent_id = 1;
        w->type = TM_T_FILE;
        w->size = 10;
        w->mtime = 1000;
        w->mode = 0644;
        w->ts = TS_SUCCESSFUL;
        w->cs = CS_PENDING;
        w->name_off = r->arena.len;
        w->name_len = strlen(name);
        assert_int_equal(tm__buf_adds(&r->arena, name), 0);
        assert_int_equal(tm__buf_addch(&r->arena, '\0'), 0);
        w->path_off = r->arena.len;
        w->path_len = w->name_len + 1;
        assert_int_equal(tm__buf_addch(&r->arena, '/'), 0);
        assert_int_equal(tm__buf_adds(&r->arena, name), 0);
        assert_int_equal(tm__buf_addch(&r->arena, '\0'), 0);
        if (side == TM_DST) {
            w->src_id = src_id0 + (first + i);
            w->upd = 1;
            w->src_type = TM_T_FILE;
            w->old_cs = CS_PENDING;
            w->new_cs = CS_ALREADY;
            w->src_size = 10;
        }
    }
    r->n_nodes = (size_t)n;
    return r;
}

/* Runs one writer over the pages given (side, first, n), then stops it. */
static void write_pages(struct fixture *f, const int (*pages)[3], int n,
                        int64_t src_id0)
{
    struct tm__writer *w = NULL;
    struct tm__buf err = TM__BUF_INIT;
    int64_t next[2];
    int i;
    assert_int_equal(tm__store_next_ids(f->s.db, next, &err), 0);
    assert_int_equal(tm__writer_start(&w, f->s.db, next, 100000, on_commit, f), 0);
    for (i = 0; i < n; i++)
        assert_int_equal(tm__writer_submit(w, page(pages[i][0], pages[i][1],
                                                   pages[i][2], src_id0)),
                         0);
    if (tm__writer_stop(w, &err) != 0)
        fail_msg("writer: %s", err.buf ? err.buf : "?");
    tm__buf_release(&err);
}

static int64_t one(struct fixture *f, const char *sql)
{
    sqlite3 *db = tm__db_sqlite(f->s.db);
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* 40 children (a chunk and 8 single rows), then 40 of which the first 20
 * are there already: the second page's first chunk inserts 12 of its 32
 * rows. Every child once, counted once, each name its own id. */
static void test_pages_listed_again(void **state)
{
    struct fixture *f = *state;
    static const int first[][3] = { { TM_SRC, 0, 40 } };
    static const int again[][3] = { { TM_SRC, 20, 40 }, { TM_SRC, 0, 40 } };

    write_pages(f, first, 1, 0);
    assert_int_equal(f->inserted, 40);
    assert_int_equal(one(f, "SELECT count(*) FROM src_nodes"), 40);
    write_pages(f, again, 2, 0);
    assert_int_equal(f->inserted, 60);
    assert_int_equal(one(f, "SELECT count(*) FROM src_nodes"), 60);
    assert_int_equal(one(f, "SELECT count(DISTINCT name) FROM src_nodes"), 60);
    /* the rows of the first writer kept their ids; the new ones come after
     * (a chunk's ids of rows that were there already stay unused) */
    assert_int_equal(one(f, "SELECT max(id) FROM src_nodes WHERE name < 'c040'"), 40);
    assert_true(one(f, "SELECT min(id) FROM src_nodes WHERE name >= 'c040'") > 40);
    /* the stats count each row once */
    assert_int_equal(one(f, "SELECT sum(count) FROM src_stats"), 60);
    assert_int_equal(one(f, "SELECT sum(count) FROM copy_stats"), 60);
    assert_int_equal(one(f, "SELECT sum(bytes) FROM src_stats"), 600);
    assert_int_equal(one(f, "SELECT count(*) FROM listing_pos"), 1);
}

/* Destination children with a verdict on their source twins: applied with
 * the row's insert only; a page listed again, in part, changes no twin
 * twice (the copy stats stay equal to the rows). */
static void test_verdict_once(void **state)
{
    struct fixture *f = *state;
    static const int src[][3] = { { TM_SRC, 0, 70 } };
    static const int dst[][3] = { { TM_DST, 0, 33 } };
    static const int again[][3] = { { TM_DST, 10, 50 } };

    write_pages(f, src, 1, 0);
    /* twin of c<i> is source id i + 1 */
    write_pages(f, dst, 1, 1);
    assert_int_equal(one(f, "SELECT count(*) FROM src_nodes WHERE "
                            "copy_status = 'already_existed'"), 33);
    write_pages(f, again, 1, 1);
    assert_int_equal(f->inserted, 70 + 33 + 27);
    assert_int_equal(one(f, "SELECT count(*) FROM dst_nodes"), 60);
    assert_int_equal(one(f, "SELECT count(*) FROM dst_nodes AS d JOIN src_nodes AS s "
                            "ON s.id = d.src_id AND s.name = d.name"), 60);
    assert_int_equal(one(f, "SELECT count(*) FROM src_nodes WHERE "
                            "copy_status = 'already_existed'"), 60);
    assert_int_equal(one(f, "SELECT sum(count) FROM copy_stats WHERE "
                            "copy_status = 'already_existed'"), 60);
    assert_int_equal(one(f, "SELECT sum(count) FROM copy_stats WHERE "
                            "copy_status = 'pending'"), 10);
    assert_int_equal(one(f, "SELECT sum(count) FROM dst_stats"), 60);
}

static const char *statuses_sql =
    "SELECT group_concat(id || ':' || copy_status || ':' || coalesce(conflict, ''), ' ') "
    "FROM (SELECT * FROM src_nodes ORDER BY id)";

/* The verdicts of a page are written by runs of consecutive twin ids
 * (writer.c, verdict_add): a run never covers a twin that is missing on
 * the destination (c006), one whose verdict differs (c003: mtime), nor
 * one whose child brings no change (c009); each twin gets its own
 * verdict, and the copy stats equal the rows. */
static void test_verdict_runs(void **state)
{
    struct fixture *f = *state;
    static const int src[][3] = { { TM_SRC, 0, 12 } };
    struct tm__writer *w = NULL;
    struct tm__buf err = TM__BUF_INIT;
    struct tm__result *r;
    int64_t next[2];
    char *got;
    size_t i, k = 0;

    write_pages(f, src, 1, 0); /* c<i> is source id i + 1 */
    r = page(TM_DST, 0, 12, 1);
    for (i = 0; i < 12; i++) {
        if (i == 6)
            continue; /* c006: not on the destination */
        r->nodes[k] = r->nodes[i];
        k++;
    }
    r->n_nodes = k;
    r->nodes[3].new_cs = CS_PENDING; /* c003 */
    r->nodes[3].new_cf = CF_MTIME;
    r->nodes[8].upd = 0; /* c009 */
    assert_int_equal(tm__store_next_ids(f->s.db, next, &err), 0);
    assert_int_equal(tm__writer_start(&w, f->s.db, next, 100000, on_commit, f), 0);
    assert_int_equal(tm__writer_submit(w, r), 0);
    if (tm__writer_stop(w, &err) != 0)
        fail_msg("writer: %s", err.buf ? err.buf : "?");
    tm__buf_release(&err);

    {
        sqlite3 *db = tm__db_sqlite(f->s.db);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, statuses_sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        got = strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    assert_string_equal(got, "1:already_existed: 2:already_existed: 3:already_existed: "
                             "4:pending:mtime 5:already_existed: 6:already_existed: "
                             "7:pending: 8:already_existed: 9:already_existed: "
                             "10:pending: 11:already_existed: 12:already_existed:");
    free(got);
    assert_int_equal(one(f, "SELECT sum(count) FROM copy_stats WHERE "
                            "copy_status = 'already_existed'"), 9);
    assert_int_equal(one(f, "SELECT sum(count) FROM copy_stats WHERE "
                            "copy_status = 'pending' AND conflict = 1"), 1);
    assert_int_equal(one(f, "SELECT sum(count) FROM copy_stats WHERE "
                            "copy_status = 'pending' AND conflict = 0"), 2);
}

/* An id already taken by another node is an internal error, never a
 * merge: in a chunk (OR IGNORE skips the row) and in a one-row insert. */
static void test_id_taken(void **state)
{
    struct fixture *f = *state;
    sqlite3 *db = tm__db_sqlite(f->s.db);
    int k;
    assert_int_equal(sqlite3_exec(db, "INSERT INTO src_nodes(id,parent_id,path,name,"
                                      "type,depth,traversal_status,copy_status) VALUES"
                                      "(500,7,'/x/y','y','file',2,'successful',"
                                      "'pending')", NULL, NULL, NULL),
                     SQLITE_OK);
    for (k = 0; k < 2; k++) {
        /* ids 490..: the chunk's 11th row, or the one-row insert of the
         * 11th child (the first 10 in a page of their own) takes 500 */
        struct tm__writer *w = NULL;
        struct tm__buf err = TM__BUF_INIT;
        int64_t next[2] = { 490, 1 };
        int rc;
        assert_int_equal(sqlite3_exec(db, "DELETE FROM src_nodes WHERE id != 500",
                                      NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(tm__writer_start(&w, f->s.db, next, 100000, on_commit, f), 0);
        if (k == 0) {
            tm__writer_submit(w, page(TM_SRC, 0, 40, 0));
        } else {
            tm__writer_submit(w, page(TM_SRC, 0, 10, 0));
            tm__writer_submit(w, page(TM_SRC, 10, 1, 0));
        }
        rc = tm__writer_stop(w, &err);
        assert_int_equal(rc, TM_EINTERNAL);
        assert_non_null(err.buf);
        assert_non_null(strstr(err.buf, "id 500 already used in src_nodes"));
        tm__buf_release(&err);
    }
    assert_int_equal(one(f, "SELECT count(*) FROM src_nodes"), 1);
}

/* Many small commits (a discovery's): the WAL starts over while the writer
 * runs (writer.c, ckpt_main) instead of growing by each commit until the
 * last close. 8,000 commits append ~450 MB (measured: 340 MB after
 * 6,000); started over, the WAL stays near the 8,192 frames (64 MiB) from
 * which the writer helps (measured: 75-113 MB on a quiet machine); the
 * bound leaves room for a checkpointer starved by a busy machine (192
 * MiB was passed beside a benchmark), well below the ~450 MB of no
 * restart. */
static void test_wal_starts_over(void **state)
{
    struct fixture *f = *state;
    struct tm__writer *w = NULL;
    struct tm__buf err = TM__BUF_INIT;
    char wal[160];
    struct stat st;
    int64_t next[2];
    int i;
    assert_int_equal(tm__store_next_ids(f->s.db, next, &err), 0);
    assert_int_equal(tm__writer_start(&w, f->s.db, next, 100000, on_commit, f), 0);
    for (i = 0; i < 8000; i++) {
        int64_t want = f->inserted + 20;
        assert_int_equal(tm__writer_submit(w, page(TM_SRC, 1000 + 20 * i, 20, 0)), 0);
        tm__writer_flush(w);
        while (f->inserted < want) /* one commit each */
            usleep(50);
    }
    if (tm__writer_stop(w, &err) != 0)
        fail_msg("writer: %s", err.buf ? err.buf : "?");
    tm__buf_release(&err);
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    assert_int_equal(stat(wal, &st), 0);
    print_message("the WAL after 8,000 commits: %lld bytes\n", (long long)st.st_size);
    assert_true(st.st_size < 320LL * 1024 * 1024);
}

/* A new state file has 8 KiB pages (store.c). */
static void test_page_size(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(one(f, "PRAGMA page_size"), 8192);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pages_listed_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_starts_over, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
