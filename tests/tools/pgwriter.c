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
 */
#include "adapter/adapter.h"
#include "store/frontier.h"
#include "store/store.h"
#include "store/writer.h"
#include "treemig.h"

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
