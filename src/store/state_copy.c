/*
 * state_copy.c - every row of a migration's state from one store to
 * another (state_copy.h): the tables the source store lists, each read
 * whole in the source's column order and written with one prepared INSERT
 * on the target, every value bound with the type it has (so that
 * PostgreSQL's strict types see what SQLite's values are, and the other
 * way). The source is read through the layer of db.h, so a PostgreSQL
 * source is read a batch of rows at a time, never whole. Runs on the
 * caller's thread.
 */
#include "store/state_copy.h"

#include "store/copy_q.h"
#include "store/store.h"
#include "treemig.h"

#include <stdlib.h>
#include <string.h>

/* The tables of a store, treemig_meta (PostgreSQL's header) and SQLite's
 * own left out. */
static const char *const tables_sql[2] = {
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
    "'sqlite!_%' ESCAPE '!' ORDER BY name",
    "SELECT table_name FROM information_schema.tables WHERE table_schema = "
    "current_schema() AND table_type = 'BASE TABLE' AND table_name <> "
    "'treemig_meta' ORDER BY 1",
};
/* The columns of table ?1, in order. */
static const char *const columns_sql[2] = {
    "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
    "SELECT column_name FROM information_schema.columns WHERE table_schema = "
    "current_schema() AND table_name = ?1 ORDER BY ordinal_position",
};

static int is_pg(struct tm__db *db)
{
    return strcmp(db->ops->name, "postgresql") == 0;
}

/* The first column of every row of sql (?1 = arg, when not NULL), as a
 * NUL-separated list in out; *n of them. */
static int list(struct tm__db *db, const char *sql, const char *arg,
                struct tm__buf *out, size_t *n, struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc = tm__db_prepare(db, sql, -1, &st, NULL);
    *n = 0;
    tm__buf_reset(out);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, err, "list the tables");
    if (arg)
        tm__db_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        const char *v = (const char *)tm__db_column_text(st, 0);
        if (!v || tm__buf_add(out, v, strlen(v) + 1)) {
            tm__db_finalize(st);
            return TM_ENOMEM;
        }
        (*n)++;
    }
    tm__db_finalize(st);
    return rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "list the tables");
}

/* 1 when name is one of the n NUL-separated names in b. */
static int listed(const struct tm__buf *b, size_t n, const char *name)
{
    const char *p = b->buf;
    size_t i;
    for (i = 0; i < n; i++, p += strlen(p) + 1)
        if (strcmp(p, name) == 0)
            return 1;
    return 0;
}

/* Copies table t (its columns: cols, n of them) row by row. */
static int copy_table(struct tm__db *from, struct tm__db *to, const char *t,
                      const struct tm__buf *cols, size_t n, int64_t *rows,
                      struct tm__buf *err)
{
    struct tm__buf sel = TM__BUF_INIT, ins = TM__BUF_INIT, del = TM__BUF_INIT;
    struct tm__stmt *rd = NULL, *wr = NULL;
    const char *c = cols->buf;
    size_t i;
    int rc = 0, src;

    /* names come from the store's own catalog; quoted all the same */
    rc = tm__buf_adds(&sel, "SELECT ");
    if (!rc)
        rc = tm__buf_addf(&ins, "INSERT INTO \"%s\"(", t);
    for (i = 0; !rc && i < n; i++, c += strlen(c) + 1) {
        rc = tm__buf_addf(&sel, "%s\"%s\"", i ? ", " : "", c);
        if (!rc)
            rc = tm__buf_addf(&ins, "%s\"%s\"", i ? ", " : "", c);
    }
    if (!rc)
        rc = tm__buf_addf(&sel, " FROM \"%s\"", t);
    if (!rc)
        rc = tm__buf_adds(&ins, ") VALUES(");
    for (i = 0; !rc && i < n; i++)
        rc = tm__buf_addf(&ins, "%s?%zu", i ? ", " : "", i + 1);
    if (!rc)
        rc = tm__buf_addch(&ins, ')');
    if (!rc)
        rc = tm__buf_addf(&del, "DELETE FROM \"%s\"", t);
    if (rc)
        goto out;
    /* what creating the target's schema put there goes first */
    src = tm__db_exec(to, del.buf, NULL, NULL, NULL);
    if (src == SQLITE_OK)
        src = tm__db_prepare_v3(to, ins.buf, -1, SQLITE_PREPARE_PERSISTENT, &wr, NULL);
    if (src != SQLITE_OK) {
        rc = tm__store_error(to, src, err, "write the copy");
        goto out;
    }
    src = tm__db_prepare(from, sel.buf, -1, &rd, NULL);
    if (src != SQLITE_OK) {
        rc = tm__store_error(from, src, err, "read the state");
        goto out;
    }
    while ((src = tm__db_step(rd)) == SQLITE_ROW) {
        for (i = 0; i < n; i++) {
            int k = (int)i + 1;
            switch (tm__db_column_type(rd, (int)i)) {
            case SQLITE_NULL:
                tm__db_bind_null(wr, k);
                break;
            case SQLITE_INTEGER:
                tm__db_bind_int64(wr, k, tm__db_column_int64(rd, (int)i));
                break;
            case SQLITE_FLOAT:
                tm__db_bind_double(wr, k, tm__db_column_double(rd, (int)i));
                break;
            case SQLITE_BLOB:
                tm__db_bind_blob(wr, k, tm__db_column_blob(rd, (int)i),
                                 tm__db_column_bytes(rd, (int)i), SQLITE_TRANSIENT);
                break;
            default:
                tm__db_bind_text(wr, k, (const char *)tm__db_column_text(rd, (int)i),
                                 tm__db_column_bytes(rd, (int)i), SQLITE_TRANSIENT);
                break;
            }
        }
        rc = tm__db_step(wr);
        tm__db_reset(wr);
        if (rc != SQLITE_DONE) {
            rc = tm__store_error(to, rc, err, "write the copy");
            goto out;
        }
        rc = 0;
        (*rows)++;
    }
    if (src != SQLITE_DONE)
        rc = tm__store_error(from, src, err, "read the state");
out:
    tm__db_finalize(rd);
    tm__db_finalize(wr);
    tm__buf_release(&sel);
    tm__buf_release(&ins);
    tm__buf_release(&del);
    if (rc && !err->len)
        tm__buf_addf(err, "copy table %s: %s", t, tm_strerror(rc));
    else if (rc) {
        struct tm__buf m = TM__BUF_INIT;
        if (tm__buf_addf(&m, "table %s: %s", t, err->buf) == 0) {
            tm__buf_reset(err);
            tm__buf_adds(err, m.buf);
        }
        tm__buf_release(&m);
    }
    return rc;
}

/* PostgreSQL: the identity sequence of each table moves past the ids
 * copied, so that the next row the target makes gets a new one. */
static int move_sequences(struct tm__db *to, struct tm__buf *err)
{
    struct tm__stmt *st;
    struct tm__buf pairs = TM__BUF_INIT, sql = TM__BUF_INIT;
    const char *p;
    size_t n = 0, i;
    int rc = tm__db_prepare(to, "SELECT table_name, column_name FROM "
                                "information_schema.columns WHERE table_schema = "
                                "current_schema() AND is_identity = 'YES'",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(to, rc, err, "read the sequences");
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)tm__db_column_text(st, 0);
        const char *c = (const char *)tm__db_column_text(st, 1);
        if (!t || !c || tm__buf_add(&pairs, t, strlen(t) + 1) ||
            tm__buf_add(&pairs, c, strlen(c) + 1)) {
            rc = SQLITE_NOMEM;
            break;
        }
        n++;
    }
    tm__db_finalize(st);
    if (rc != SQLITE_DONE) {
        tm__buf_release(&pairs);
        return tm__store_error(to, rc, err, "read the sequences");
    }
    rc = SQLITE_OK;
    for (i = 0, p = pairs.buf; rc == SQLITE_OK && i < n; i++) {
        const char *t = p, *c = p + strlen(p) + 1;
        p = c + strlen(c) + 1;
        tm__buf_reset(&sql);
        if (tm__buf_addf(&sql, "SELECT setval(pg_get_serial_sequence('\"%s\"', '%s'), "
                         "coalesce(max(\"%s\"), 0) + 1, false) FROM \"%s\"",
                         t, c, c, t)) {
            rc = SQLITE_NOMEM;
            break;
        }
        rc = tm__db_prepare(to, sql.buf, -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = tm__db_step(st);
            rc = rc == SQLITE_ROW ? SQLITE_OK : rc;
            tm__db_finalize(st);
        }
    }
    tm__buf_release(&pairs);
    tm__buf_release(&sql);
    return rc == SQLITE_OK ? 0 : tm__store_error(to, rc, err, "move the sequences");
}

int tm__state_copy(struct tm__db *from, struct tm__db *to, const char *config,
                   int64_t *rows, struct tm__buf *err)
{
    struct tm__buf tabs = TM__BUF_INIT, cols = TM__BUF_INIT, tcols = TM__BUF_INIT;
    size_t nt = 0, nc, ntc, i, j;
    const char *t, *c;
    int rc, in_txn = 0;

    *rows = 0;
    rc = list(from, tables_sql[is_pg(from)], NULL, &tabs, &nt, err);
    if (!rc)
        rc = tm__store_exec(to, "BEGIN IMMEDIATE", err);
    in_txn = rc == 0;
    /* the tables a phase makes when it first runs (not in the schema of a
     * new store) */
    if (!rc)
        rc = tm__q_copy_runs_prepare(to, err);
    tm__db_pipeline(to, 1); /* PostgreSQL: the rows go in batches */
    for (i = 0, t = tabs.buf; !rc && i < nt; i++, t += strlen(t) + 1) {
        rc = list(from, columns_sql[is_pg(from)], t, &cols, &nc, err);
        if (!rc)
            rc = list(to, columns_sql[is_pg(to)], t, &tcols, &ntc, err);
        for (j = 0, c = cols.buf; !rc && j < nc; j++, c += strlen(c) + 1)
            if (!listed(&tcols, ntc, c)) {
                tm__buf_addf(err, "the copy has no column %s.%s: the two schemas "
                             "differ", t, c);
                rc = TM_ESCHEMA;
            }
        if (!rc)
            rc = copy_table(from, to, t, &cols, nc, rows, err);
    }
    if (!rc)
        rc = tm__db_pipeline(to, 0) == SQLITE_OK ? 0 : tm__store_error(to, SQLITE_ERROR, err, "write the copy");
    if (!rc && is_pg(to))
        rc = move_sequences(to, err);
    if (!rc)
        rc = config ? tm__store_set(to, "config", config)
                    : tm__store_exec(to, "DELETE FROM migration WHERE key = 'config'", err);
    if (!rc) {
        int src = tm__db_exec(to, "COMMIT", NULL, NULL, NULL);
        if (src != SQLITE_OK)
            rc = tm__store_error(to, src, err, "commit the copy");
        else
            in_txn = 0;
    }
    tm__db_pipeline(to, 0);
    if (in_txn)
        tm__db_exec(to, "ROLLBACK", NULL, NULL, NULL);
    tm__buf_release(&tabs);
    tm__buf_release(&cols);
    tm__buf_release(&tcols);
    return rc;
}
