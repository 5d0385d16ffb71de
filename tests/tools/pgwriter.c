/*
 * pgwriter.c - drives the store's writer (src/store/writer.h) on a state
 * file or a PostgreSQL database for test_pg.py: the last page of a
 * pending source folder that lists one name twice, as a storage that
 * repeats a name does. The writer must insert the name once and count it
 * once; on PostgreSQL the batch goes through the pipeline, where the
 * second insert changes nothing though changes() said 1, so COMMIT
 * answers TM__DB_REDO and the writer applies the batch again one
 * statement at a time (writer.c, redo()).
 *
 *   pgwriter DB FOLDER_ID [EXTRA [REPEAT]]
 *
 * (the folder: a pending source folder). EXTRA more children (x00000,
 * ...: default 0) come between b and the repeated a, so that the page's
 * rows go as one COPY on PostgreSQL (db_pg.c, at least COPY_MIN_ROWS);
 * REPEAT 0 leaves the repeated a out (default 1).
 *
 * Exit 0 when the writer committed, 1 with its message otherwise. Runs
 * on the main thread and the writer's.
 *
 *   pgwriter --set URI
 *
 * A connection lost after a SET (db_pg.c): sets lock_timeout on a
 * connection, has the server end it (pg_terminate_backend from a second
 * one, which waits for its end), then prints the connection's
 * lock_timeout, read on the new connection its next statement makes.
 *
 *   pgwriter --values URI
 *
 * The values of rows written each way db_pg.c sends them, read back
 * (check_values below); prints "ok N" (the rows checked).
 */
#include "adapter/adapter.h"
#include "store/frontier.h"
#include "store/store.h"
#include "store/writer.h"
#include "treemig.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends a child named name to r, of size size. */
static int add_child(struct tm__result *r, const char *dir, const char *name,
                     int64_t size)
{
    struct tm__wnode *n = &r->nodes[r->n_nodes++];
    memset(n, 0, sizeof *n);
    n->parent_id = r->folder_id;
    n->name_off = r->arena.len;
    n->name_len = strlen(name);
    if (tm__buf_add(&r->arena, name, n->name_len))
        return TM_ENOMEM;
    n->path_off = r->arena.len;
    if (tm__buf_addf(&r->arena, "%s/%s", dir, name))
        return TM_ENOMEM;
    n->path_len = r->arena.len - n->path_off;
    n->type = TM_T_FILE;
    n->size = size;
    n->mtime = 1600000000000000000LL;
    n->mode = 0644;
    n->ts = TS_SUCCESSFUL;
    n->cs = CS_PENDING;
    return 0;
}

/* The first column of sql's first row on db, printed; 0 or 1. */
static int print_one(struct tm__db *db, const char *sql)
{
    struct tm__stmt *st;
    int rc = tm__db_prepare(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = tm__db_step(st)) == SQLITE_ROW) {
        printf("%s\n", (const char *)tm__db_column_text(st, 0));
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        fprintf(stderr, "pgwriter: %s: %s\n", sql, tm__db_errmsg(db));
    tm__db_finalize(st);
    return rc == SQLITE_OK ? 0 : 1;
}

/* pgwriter --set URI */
static int set_lost(const char *uri)
{
    struct tm__db *a = NULL, *b = NULL;
    char *msg = NULL, sql[96];
    struct tm__stmt *st;
    int rc = 1;
    if (tm__db_open_pg(uri, &a, &msg) != SQLITE_OK ||
        tm__db_open_pg(uri, &b, &msg) != SQLITE_OK) {
        fprintf(stderr, "pgwriter: connect: %s\n", msg ? msg : "?");
        goto out;
    }
    if (tm__db_exec(a, "SET lock_timeout = 4321", NULL, NULL, NULL) != SQLITE_OK ||
        tm__db_prepare(a, "SELECT pg_backend_pid()", -1, &st, NULL) != SQLITE_OK)
        goto out;
    if (tm__db_step(st) != SQLITE_ROW) {
        tm__db_finalize(st);
        goto out;
    }
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%lld, 5000)",
             (long long)tm__db_column_int64(st, 0));
    tm__db_finalize(st);
    if (print_one(b, sql) == 0)
        rc = print_one(a, "SHOW lock_timeout");
out:
    free(msg);
    if (a)
        tm__db_close(a);
    if (b)
        tm__db_close(b);
    return rc;
}

/* ---- pgwriter --values ---- */

/* Row r's value of a column: how it is bound, what the column then holds. */
struct want {
    int bind;         /* bound as SQLITE_NULL, _INTEGER, _FLOAT, _TEXT, _BLOB */
    int64_t bi;       /* the integer bound */
    const char *bt;   /* the text or bytes bound */
    int bn;           /* the length given with them (-1: up to the NUL) */
    int type;         /* the column then holds SQLITE_NULL, _INTEGER, ... */
    int64_t i;        /* SQLITE_INTEGER */
    double f;         /* SQLITE_FLOAT (and bound so) */
    char t[400];      /* SQLITE_TEXT, SQLITE_BLOB: the bytes */
    int n;            /* their length */
};

/* Row r's value of column col (1 i, 2 f, 3 t, 4 b) into *w: numbers at
 * their limits, -0.0, infinities and NaN, an integer into the double
 * column, texts cut at a NUL or by their length, empty texts and blobs,
 * every byte value in a blob, NULLs. */
static void want_of(int col, long r, struct want *w)
{
    static const int64_t ints[] = { INT64_MIN, INT64_MAX, -1, 0, 1234567890123456789LL };
    int k;
    memset(w, 0, sizeof *w);
    w->type = w->bind = SQLITE_NULL;
    switch (col) {
    case 1:
        if (r % 7 == 0)
            return;
        w->type = w->bind = SQLITE_INTEGER;
        w->i = w->bi = r % 7 <= 5 ? ints[r % 7 - 1] : -r * 1000003;
        return;
    case 2:
        w->type = w->bind = SQLITE_FLOAT;
        switch (r % 10) {
        case 0: w->type = w->bind = SQLITE_NULL; break;
        case 1: w->f = -0.0; break;
        case 2: w->f = 0.1 * (double)r; break;
        case 3: w->f = 1e300; break;
        case 4: w->f = -2.5e-300; break;
        case 5: w->f = INFINITY; break;
        case 6: w->f = -INFINITY; break;
        case 7: w->f = NAN; break;
        case 8: /* an integer into a double column */
            w->bind = SQLITE_INTEGER;
            w->bi = r * 7 - 3;
            w->f = (double)w->bi;
            break;
        default: /* 2^53 + 1 or 2: rounded the same wherever converted */
            w->bind = SQLITE_INTEGER;
            w->bi = 9007199254740993LL + r % 2;
            w->f = (double)w->bi;
            break;
        }
        return;
    case 3:
        w->type = w->bind = SQLITE_TEXT;
        w->bt = w->t;
        switch (r % 7) {
        case 0: w->type = w->bind = SQLITE_NULL; break;
        case 1: w->bn = r % 2 ? -1 : 0; break; /* "" */
        case 2: w->n = snprintf(w->t, sizeof w->t, "plain %ld", r); break;
        case 3: w->n = snprintf(w->t, sizeof w->t, "\xc3\xa9\xe6\xbc\xa2 %ld", r); break;
        case 4:
            for (k = 0; k < 350; k++)
                w->t[k] = (char)('a' + (r + k) % 26);
            w->n = 350;
            break;
        case 5: /* a length past a NUL: up to the NUL */
            w->bt = "ab\0cd";
            w->bn = 5;
            w->n = 2;
            memcpy(w->t, "ab", 3);
            return;
        default: /* a length shorter than the string */
            w->bt = "xyz-more";
            w->bn = 3;
            w->n = 3;
            memcpy(w->t, "xyz", 4);
            return;
        }
        if (w->n)
            w->bn = r % 2 ? -1 : w->n;
        return;
    default:
        w->type = w->bind = SQLITE_BLOB;
        switch (r % 5) {
        case 0: w->type = w->bind = SQLITE_NULL; break;
        case 1: break; /* empty */
        case 2: w->n = 5; memcpy(w->t, "\0\xff" "a\0", 4); w->t[4] = (char)r; break;
        default:
            w->n = r % 5 == 3 ? 256 : 399;
            for (k = 0; k < w->n; k++)
                w->t[k] = (char)(k + r);
            break;
        }
        w->bt = w->t;
        w->bn = w->n;
        return;
    }
}

/* Binds row r's value of column col as parameter col + 1 of st. */
static int bind_col(struct tm__stmt *st, int col, long r)
{
    struct want w;
    char copy[400]; /* the caller's buffer, gone after the bind */
    want_of(col, r, &w);
    switch (w.bind) {
    case SQLITE_NULL:
        return col == 3 && r % 2 ? tm__db_bind_text(st, col + 1, NULL, 0, SQLITE_STATIC)
                                 : tm__db_bind_null(st, col + 1);
    case SQLITE_INTEGER: return tm__db_bind_int64(st, col + 1, w.bi);
    case SQLITE_FLOAT: return tm__db_bind_double(st, col + 1, w.f);
    case SQLITE_TEXT:
        memcpy(copy, w.bt, w.bn < 0 ? strlen(w.bt) + 1 : (size_t)w.bn);
        return tm__db_bind_text(st, col + 1, copy, w.bn, SQLITE_TRANSIENT);
    default:
        memcpy(copy, w.bt, (size_t)w.bn);
        return tm__db_bind_blob(st, col + 1, copy, w.bn, SQLITE_TRANSIENT);
    }
}

/* Steps st with key k and row r's values; changes() read
 * after it when told. */
static int put_row(struct tm__db *db, struct tm__stmt *st, int64_t k, long r, int told)
{
    int c, rc = tm__db_bind_int64(st, 1, k);
    for (c = 1; rc == SQLITE_OK && c <= 4; c++)
        rc = bind_col(st, c, r);
    if (rc == SQLITE_OK)
        rc = tm__db_step(st) == SQLITE_DONE ? SQLITE_OK : tm__db_errcode(db);
    if (rc == SQLITE_OK && told && tm__db_changes(db) != 1)
        rc = SQLITE_ERROR;
    tm__db_reset(st);
    return rc;
}

/* 1 when column c of the row at st holds w. */
static int holds(struct tm__stmt *st, int c, const struct want *w)
{
    int t = tm__db_column_type(st, c);
    if (t != w->type)
        return 0;
    switch (t) {
    case SQLITE_NULL: return 1;
    case SQLITE_INTEGER: return tm__db_column_int64(st, c) == w->i;
    case SQLITE_FLOAT: {
        double f = tm__db_column_double(st, c);
        return isnan(w->f) ? isnan(f) : memcmp(&f, &w->f, sizeof f) == 0;
    }
    case SQLITE_TEXT:
        return tm__db_column_bytes(st, c) == w->n &&
               !memcmp(tm__db_column_text(st, c), w->t, (size_t)w->n);
    default:
        return tm__db_column_bytes(st, c) == w->n &&
               (!w->n || !memcmp(tm__db_column_blob(st, c), w->t, (size_t)w->n));
    }
}

/* The ways of sending rows, each on keys of its own: how many rows, and
 * how (db_pg.c's names). */
enum { W_COPY, W_UNNEST, W_UNNEST_NOT_TOLD, W_VALUES, W_PIPED, W_PIPED_PERSISTENT,
       W_SYNC, W_SYNC_PERSISTENT, W_N };
static const int way_rows[W_N] = { 300, 60, 40, 1100, 30, 30, 30, 30 };

#define INSERT_SQL "INSERT INTO tv(id, i, f, t, b) VALUES(?1, ?2, ?3, ?4, ?5)"
/* not held (an expression in VALUES): sent alone, its parameters as text */
#define INSERT_ALONE_SQL "INSERT INTO tv(id, i, f, t, b) VALUES(?1 + 0, ?2, ?3, ?4, ?5)"

/* Inserts the rows of way w (keys w * 10000 + j, row j + w * 100).
 * Statements made before the transaction know their columns' types
 * (arrays, COPY); one made while rows are held does not (VALUES). */
static int insert_way(struct tm__db *db, int w)
{
    struct tm__stmt *st = NULL, *first = NULL;
    int rc, j;
    const char *sql = w == W_PIPED || w == W_PIPED_PERSISTENT || w == W_SYNC_PERSISTENT
                          ? INSERT_ALONE_SQL : INSERT_SQL;
    int persistent = w == W_PIPED_PERSISTENT || w == W_SYNC_PERSISTENT;
    rc = tm__db_pipeline(db, w != W_SYNC && w != W_SYNC_PERSISTENT);
    if (rc == SQLITE_OK && w != W_VALUES)
        rc = tm__db_prepare_v3(db, sql, -1, persistent ? SQLITE_PREPARE_PERSISTENT : 0,
                               &st, NULL);
    if (rc == SQLITE_OK)
        rc = tm__db_exec(db, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK && w == W_VALUES) {
        /* a row held first: the next statement is made inside the pipeline */
        rc = tm__db_prepare(db, INSERT_SQL, -1, &first, NULL);
        if (rc == SQLITE_OK)
            rc = put_row(db, first, w * 10000 + way_rows[w], w * 100 + way_rows[w], 1);
        if (rc == SQLITE_OK)
            rc = tm__db_prepare(db, INSERT_SQL " ON CONFLICT DO NOTHING", -1, &st, NULL);
    }
    for (j = 0; rc == SQLITE_OK && j < way_rows[w]; j++)
        rc = put_row(db, st, w * 10000 + j, w * 100 + j, w != W_UNNEST_NOT_TOLD);
    if (rc == SQLITE_OK)
        rc = tm__db_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        fprintf(stderr, "pgwriter: way %d: %s\n", w, tm__db_errmsg(db));
    tm__db_finalize(first);
    tm__db_finalize(st);
    return rc;
}

/* Rows of ways [0, W_N) changed again as arrays: an UPDATE of every third
 * row (to row j + 7's values), a DELETE of every fifth. */
static int update_ways(struct tm__db *db)
{
    struct tm__stmt *up = NULL, *del = NULL;
    int rc, w, j;
    rc = tm__db_prepare(db, "UPDATE tv SET i = ?2, f = ?3, t = ?4, b = ?5 WHERE id = ?1",
                        -1, &up, NULL);
    if (rc == SQLITE_OK)
        rc = tm__db_prepare(db, "DELETE FROM tv WHERE id = ?1", -1, &del, NULL);
    if (rc == SQLITE_OK)
        rc = tm__db_pipeline(db, 1);
    if (rc == SQLITE_OK)
        rc = tm__db_exec(db, "BEGIN", NULL, NULL, NULL);
    for (w = 0; rc == SQLITE_OK && w < W_N; w++)
        for (j = 0; rc == SQLITE_OK && j < way_rows[w]; j++) {
            if (j % 3 == 0)
                rc = put_row(db, up, w * 10000 + j, w * 100 + j + 7, 1);
            if (rc == SQLITE_OK && j % 5 == 1) {
                rc = tm__db_bind_int64(del, 1, w * 10000 + j);
                if (rc == SQLITE_OK)
                    rc = tm__db_step(del) == SQLITE_DONE ? SQLITE_OK : tm__db_errcode(db);
                if (rc == SQLITE_OK && tm__db_changes(db) != 1)
                    rc = SQLITE_ERROR;
                tm__db_reset(del);
            }
        }
    if (rc == SQLITE_OK)
        rc = tm__db_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        fprintf(stderr, "pgwriter: update: %s\n", tm__db_errmsg(db));
    tm__db_finalize(up);
    tm__db_finalize(del);
    return rc;
}

/* pgwriter --values URI: rows of tv(k, i, f, t, b) written each way
 * db_pg.c sends them (COPY, arrays through unnest() told or not, a
 * multi-row VALUES, one statement in the pipeline or waited for, named or
 * not), then updated and deleted as arrays, read back: each column holds
 * what was bound. */
static int check_values(const char *uri)
{
    struct tm__db *db = NULL;
    struct tm__stmt *st = NULL;
    char *msg = NULL;
    int rc, w, j, c, bad = 0, seen = 0;
    if (tm__db_open_pg(uri, &db, &msg) != SQLITE_OK) {
        fprintf(stderr, "pgwriter: connect: %s\n", msg ? msg : "?");
        free(msg);
        return 1;
    }
    rc = tm__db_exec(db, "CREATE TABLE tv(id INTEGER PRIMARY KEY, i INTEGER, f REAL, t TEXT, "
                     "b BLOB)", NULL, NULL, NULL);
    for (w = 0; rc == SQLITE_OK && w < W_N; w++)
        rc = insert_way(db, w);
    if (rc == SQLITE_OK)
        rc = update_ways(db);
    if (rc == SQLITE_OK)
        rc = tm__db_prepare(db, "SELECT id, i, f, t, b FROM tv ORDER BY id", -1, &st, NULL);
    for (w = 0; rc == SQLITE_OK && w < W_N; w++)
        for (j = 0; j <= way_rows[w] && !bad; j++) {
            int64_t k = w * 10000 + j;
            if ((j == way_rows[w] && w != W_VALUES) || j % 5 == 1)
                continue; /* none, or deleted */
            if (tm__db_step(st) != SQLITE_ROW || tm__db_column_int64(st, 0) != k) {
                printf("row %lld: missing (%s)\n", (long long)k, tm__db_errmsg(db));
                bad = 1;
                break;
            }
            for (c = 1; c <= 4; c++) {
                struct want v;
                /* what was bound last: row j, or j + 7 where updated */
                want_of(c, w * 100 + j + (j % 3 == 0 && j < way_rows[w] ? 7 : 0), &v);
                if (!holds(st, c, &v)) {
                    printf("row %lld (way %d) column %d: not what was bound (%s)\n",
                           (long long)k, w, c, (const char *)tm__db_column_text(st, c));
                    bad = 1;
                }
            }
            seen++;
        }
    if (rc == SQLITE_OK && !bad && tm__db_step(st) != SQLITE_DONE) {
        printf("rows beyond those written\n");
        bad = 1;
    }
    tm__db_finalize(st);
    if (rc == SQLITE_OK && !bad)
        printf("ok %d\n", seen);
    tm__db_close(db);
    return rc == SQLITE_OK && !bad ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct tm__store s;
    struct tm__buf err = TM__BUF_INIT;
    struct tm__writer *w = NULL;
    struct tm__result *r;
    int64_t next[2];
    long extra = argc >= 4 ? strtol(argv[3], NULL, 10) : 0, i;
    int repeat = argc >= 5 ? atoi(argv[4]) : 1;
    int rc;

    if (argc == 3 && strcmp(argv[1], "--set") == 0)
        return set_lost(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--values") == 0)
        return check_values(argv[2]);
    if (argc < 3 || argc > 5 || extra < 0 || extra > 99999) {
        fprintf(stderr, "usage: pgwriter DB FOLDER_ID [EXTRA [REPEAT]]\n");
        return 2;
    }
    rc = tm__store_open(&s, argv[1], TM_OPEN_WRITE, &err);
    if (!rc)
        rc = tm__store_next_ids(s.db, next, &err);
    if (!rc)
        rc = tm__writer_start(&w, s.db, next, 100000, NULL, NULL);
    r = rc ? NULL : calloc(1, sizeof *r);
    if (!rc && !r)
        rc = TM_ENOMEM;
    if (!rc) {
        r->kind = TM_R_LISTING;
        r->side = TM_SRC;
        r->folder_id = strtoll(argv[2], NULL, 10);
        r->depth = 1;
        r->final = 1;
        r->folder_ts = TS_SUCCESSFUL;
        r->attempts = 1;
        r->nodes = calloc(3 + (size_t)extra, sizeof *r->nodes);
        tm__buf_init(&r->arena);
        tm__buf_init(&r->pos);
        rc = r->nodes ? 0 : TM_ENOMEM;
        if (!rc)
            rc = add_child(r, "/repeats", "a", 7);
        if (!rc)
            rc = add_child(r, "/repeats", "b", 7);
        for (i = 0; !rc && i < extra; i++) {
            char name[16];
            snprintf(name, sizeof name, "x%05ld", i);
            rc = add_child(r, "/repeats", name, i * 1000003);
        }
        if (!rc && repeat)
            rc = add_child(r, "/repeats", "a", 7); /* the storage said it again */
        if (rc)
            tm__result_free(r);
        else
            rc = tm__writer_submit(w, r);
    }
    if (w) {
        int src = tm__writer_stop(w, &err);
        rc = rc ? rc : src;
    }
    if (rc)
        fprintf(stderr, "pgwriter: %s\n", err.len ? err.buf : tm_strerror(rc));
    tm__store_close(&s);
    tm__buf_release(&err);
    return rc ? 1 : 0;
}
