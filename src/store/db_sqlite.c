/*
 * db_sqlite.c - the SQLite backend of the store's database layer (db.h):
 * each method calls the SQLite function of the same name, nothing more.
 * Runs on the thread that owns the connection.
 */
#include "store/db.h"

#include <stdlib.h>
#include <string.h>

/* An SQLite connection. */
struct lite_db {
    struct tm__db base; /* first: the layer's view */
    sqlite3 *h;         /* the SQLite handle */
};

/* An SQLite statement. */
struct lite_stmt {
    struct tm__stmt base; /* first: the layer's view */
    sqlite3_stmt *h;      /* the SQLite statement */
};

#define H(db) (((struct lite_db *)(db))->h)
#define S(st) (((struct lite_stmt *)(st))->h)

static int l_prepare(struct tm__db *db, const char *sql, int persistent,
                     struct tm__stmt **out)
{
    struct lite_stmt *s = malloc(sizeof *s);
    int rc;
    *out = NULL;
    if (!s)
        return SQLITE_NOMEM;
    rc = sqlite3_prepare_v3(H(db), sql, -1,
                            persistent ? SQLITE_PREPARE_PERSISTENT : 0, &s->h,
                            NULL);
    if (rc != SQLITE_OK || !s->h) {
        sqlite3_finalize(s->h);
        free(s);
        return rc != SQLITE_OK ? rc : SQLITE_ERROR;
    }
    s->base.db = db;
    *out = &s->base;
    return SQLITE_OK;
}

static int l_bind_int64(struct tm__stmt *st, int i, int64_t v)
{
    return sqlite3_bind_int64(S(st), i, v);
}
static int l_bind_double(struct tm__stmt *st, int i, double v)
{
    return sqlite3_bind_double(S(st), i, v);
}
static int l_bind_text(struct tm__stmt *st, int i, const char *v, int n,
                       void (*del)(void *))
{
    return sqlite3_bind_text(S(st), i, v, n, del);
}
static int l_bind_blob(struct tm__stmt *st, int i, const void *v, int n,
                       void (*del)(void *))
{
    return sqlite3_bind_blob(S(st), i, v, n, del);
}
static int l_bind_null(struct tm__stmt *st, int i)
{
    return sqlite3_bind_null(S(st), i);
}
static int l_step(struct tm__stmt *st)
{
    return sqlite3_step(S(st));
}
static int l_reset(struct tm__stmt *st)
{
    return sqlite3_reset(S(st));
}
static int l_finalize(struct tm__stmt *st)
{
    int rc = sqlite3_finalize(S(st));
    free(st);
    return rc;
}
static int l_column_type(struct tm__stmt *st, int i)
{
    return sqlite3_column_type(S(st), i);
}
static int64_t l_column_int64(struct tm__stmt *st, int i)
{
    return sqlite3_column_int64(S(st), i);
}
static double l_column_double(struct tm__stmt *st, int i)
{
    return sqlite3_column_double(S(st), i);
}
static const unsigned char *l_column_text(struct tm__stmt *st, int i)
{
    return sqlite3_column_text(S(st), i);
}
static const void *l_column_blob(struct tm__stmt *st, int i)
{
    return sqlite3_column_blob(S(st), i);
}
static int l_column_bytes(struct tm__stmt *st, int i)
{
    return sqlite3_column_bytes(S(st), i);
}
static int l_exec(struct tm__db *db, const char *sql)
{
    return sqlite3_exec(H(db), sql, NULL, NULL, NULL);
}
static int l_changes(struct tm__db *db)
{
    return sqlite3_changes(H(db));
}
static const char *l_errmsg(struct tm__db *db)
{
    return sqlite3_errmsg(H(db));
}
static int l_errcode(struct tm__db *db)
{
    return sqlite3_extended_errcode(H(db));
}
static int l_autocommit(struct tm__db *db)
{
    return sqlite3_get_autocommit(H(db));
}
static int l_close(struct tm__db *db)
{
    int rc = sqlite3_close(H(db));
    free(db->name);
    free(db);
    return rc;
}

static int l_pipeline(struct tm__db *db, int on)
{
    (void)db;
    (void)on;
    return SQLITE_OK; /* each step is done when it returns */
}

static int64_t l_total_changes(struct tm__db *db)
{
    return (int64_t)sqlite3_total_changes64(H(db));
}

static const struct tm__db_ops lite_ops = {
    1, "sqlite", l_prepare, l_bind_int64, l_bind_double, l_bind_text,
    l_bind_blob, l_bind_null, l_step, l_reset, l_finalize, l_column_type,
    l_column_int64, l_column_double, l_column_text, l_column_blob,
    l_column_bytes, l_exec, l_changes, l_errmsg, l_errcode, l_autocommit,
    l_close, l_pipeline, l_total_changes,
};

int tm__db_open_sqlite(const char *path, int flags, struct tm__db **out)
{
    struct lite_db *d = calloc(1, sizeof *d);
    int rc;
    *out = NULL;
    if (!d)
        return SQLITE_NOMEM;
    d->base.ops = &lite_ops;
    d->base.name = strdup(path);
    rc = sqlite3_open_v2(path, &d->h, flags, NULL);
    if (!d->base.name && rc == SQLITE_OK)
        rc = SQLITE_NOMEM;
    *out = &d->base;
    return rc;
}

sqlite3 *tm__db_sqlite(struct tm__db *db)
{
    return db && db->ops == &lite_ops ? H(db) : NULL;
}

int tm__db_is_pg(const char *s)
{
    return s && (strncmp(s, "postgresql://", 13) == 0 ||
                 strncmp(s, "postgres://", 11) == 0);
}
