/*
 * db.h - the store's database layer: the part of SQLite's C API that the
 * store uses, over two backends: SQLite (db_sqlite.c, a pass-through) and
 * PostgreSQL (db_pg.c, which translates the store's SQLite SQL when a
 * statement is prepared). Every SQL text in src/store is written once, in
 * SQLite's dialect.
 *
 * Result codes are SQLite's (SQLITE_OK, SQLITE_ROW, SQLITE_DONE,
 * SQLITE_BUSY, ...) whatever the backend: the PostgreSQL backend maps its
 * failures onto them, so tm__store_error() turns both into treemig errors.
 *
 * Threads: a connection and its statements belong to one thread at a time
 * (the store's rule, store.h).
 */
#ifndef TM_STORE_DB_H
#define TM_STORE_DB_H

#include <sqlite3.h>
#include <stdint.h>

struct tm__db;
struct tm__stmt;

/* One backend: a table of methods (SQLite's sqlite3_io_methods style). */
struct tm__db_ops {
    int version;      /* 1 */
    const char *name; /* "sqlite" or "postgresql" */
    /* Prepares sql (one statement); persistent: kept for many steps. */
    int (*prepare)(struct tm__db *db, const char *sql, int persistent,
                   struct tm__stmt **out);
    int (*bind_int64)(struct tm__stmt *st, int i, int64_t v);   /* ?i = v */
    int (*bind_double)(struct tm__stmt *st, int i, double v);   /* ?i = v */
    int (*bind_text)(struct tm__stmt *st, int i, const char *v, int n,
                     void (*del)(void *));                     /* ?i = text */
    int (*bind_blob)(struct tm__stmt *st, int i, const void *v, int n,
                     void (*del)(void *));                     /* ?i = blob */
    int (*bind_null)(struct tm__stmt *st, int i);              /* ?i = NULL */
    int (*step)(struct tm__stmt *st);     /* SQLITE_ROW, SQLITE_DONE or error */
    int (*reset)(struct tm__stmt *st);    /* back to before the first step */
    int (*finalize)(struct tm__stmt *st); /* frees st (NULL is fine) */
    int (*column_type)(struct tm__stmt *st, int i);    /* SQLITE_NULL or other */
    int64_t (*column_int64)(struct tm__stmt *st, int i);
    double (*column_double)(struct tm__stmt *st, int i);
    const unsigned char *(*column_text)(struct tm__stmt *st, int i);
    const void *(*column_blob)(struct tm__stmt *st, int i);
    int (*column_bytes)(struct tm__stmt *st, int i);
    int (*exec)(struct tm__db *db, const char *sql); /* statements, no rows */
    int (*changes)(struct tm__db *db);       /* rows changed by the last step */
    const char *(*errmsg)(struct tm__db *db);   /* the last failure's message */
    int (*errcode)(struct tm__db *db);          /* the last failure's code */
    int (*autocommit)(struct tm__db *db);       /* 1 outside a transaction */
    int (*close)(struct tm__db *db);            /* frees db (NULL is fine) */
    /* on: inside a transaction, statements that write and return no rows
     * may be sent without waiting for their answers (PostgreSQL's pipeline;
     * SQLite: nothing changes). Their failures, and a changes() that the
     * server did not confirm, come out of the next COMMIT as TM__DB_REDO,
     * nothing committed: roll back and apply the transaction again with
     * on = 0, where each step's outcome is known when it returns. */
    int (*pipeline)(struct tm__db *db, int on);
    /* rows inserted, updated or deleted through the connection since it
     * was opened (SQLite's total_changes()); -1 where not known
     * (PostgreSQL) */
    int64_t (*total_changes)(struct tm__db *db);
};

/* COMMIT's answer when a pipelined transaction must be done again (the
 * pipeline method above); no other call returns it. */
#define TM__DB_REDO (SQLITE_ABORT | (99 << 8))

/* A connection: each backend's handle embeds this as its first member. */
struct tm__db {
    const struct tm__db_ops *ops; /* its backend */
    char *name; /* what messages call it: the file, or the URI without
                   password (malloc'd) */
};

/* A prepared statement: each backend's embeds this as its first member. */
struct tm__stmt {
    struct tm__db *db; /* its connection */
};

/* 1 when s names a PostgreSQL database (postgresql:// or postgres://). */
int tm__db_is_pg(const char *s);

/* Opens an SQLite database with sqlite3_open_v2's flags. On failure *out
 * may still be set (to read the message) and must be closed. */
int tm__db_open_sqlite(const char *path, int flags, struct tm__db **out);
/* The SQLite handle of an SQLite connection, NULL for another backend. */
sqlite3 *tm__db_sqlite(struct tm__db *db);

/* Opens a PostgreSQL connection from a libpq URI. On failure *out is NULL
 * and err (malloc'd, or NULL when out of memory) says why; *rc is the
 * SQLite-style code (SQLITE_CANTOPEN, SQLITE_AUTH, ...). */
int tm__db_open_pg(const char *uri, struct tm__db **out, char **err);
/* Takes PostgreSQL's session-level advisory lock key on db: *got 1 when
 * taken, 0 when another session holds it. A connection made again after a
 * loss takes it again, or fails. */
int tm__db_pg_lock(struct tm__db *db, int64_t key, int *got);
/* The URI with any password removed (malloc'd); NULL when out of memory. */
char *tm__db_pg_redact(const char *uri);
/* Translates one statement of SQLite's SQL into PostgreSQL's (malloc'd),
 * NULL when out of memory; exposed for tests and for the schema. */
char *tm__db_pg_translate(const char *sql);

/* The wrappers the store calls (SQLite's names, tm__db_ prefix). */
static inline int tm__db_prepare(struct tm__db *db, const char *sql, int n,
                                 struct tm__stmt **out, const char **tail)
{
    (void)n;
    (void)tail;
    return db->ops->prepare(db, sql, 0, out);
}
static inline int tm__db_prepare_v3(struct tm__db *db, const char *sql, int n,
                                    unsigned flags, struct tm__stmt **out,
                                    const char **tail)
{
    (void)n;
    (void)tail;
    return db->ops->prepare(db, sql, (flags & SQLITE_PREPARE_PERSISTENT) != 0, out);
}
static inline int tm__db_bind_int64(struct tm__stmt *st, int i, int64_t v)
{
    return st->db->ops->bind_int64(st, i, v);
}
static inline int tm__db_bind_int(struct tm__stmt *st, int i, int v)
{
    return st->db->ops->bind_int64(st, i, v);
}
static inline int tm__db_bind_double(struct tm__stmt *st, int i, double v)
{
    return st->db->ops->bind_double(st, i, v);
}
static inline int tm__db_bind_text(struct tm__stmt *st, int i, const char *v,
                                   int n, void (*del)(void *))
{
    return st->db->ops->bind_text(st, i, v, n, del);
}
static inline int tm__db_bind_blob(struct tm__stmt *st, int i, const void *v,
                                   int n, void (*del)(void *))
{
    return st->db->ops->bind_blob(st, i, v, n, del);
}
static inline int tm__db_bind_null(struct tm__stmt *st, int i)
{
    return st->db->ops->bind_null(st, i);
}
static inline int tm__db_step(struct tm__stmt *st)
{
    return st->db->ops->step(st);
}
static inline int tm__db_reset(struct tm__stmt *st)
{
    return st ? st->db->ops->reset(st) : SQLITE_OK;
}
static inline int tm__db_finalize(struct tm__stmt *st)
{
    return st ? st->db->ops->finalize(st) : SQLITE_OK;
}
static inline int tm__db_column_type(struct tm__stmt *st, int i)
{
    return st->db->ops->column_type(st, i);
}
static inline int64_t tm__db_column_int64(struct tm__stmt *st, int i)
{
    return st->db->ops->column_int64(st, i);
}
static inline int tm__db_column_int(struct tm__stmt *st, int i)
{
    return (int)st->db->ops->column_int64(st, i);
}
static inline double tm__db_column_double(struct tm__stmt *st, int i)
{
    return st->db->ops->column_double(st, i);
}
static inline const unsigned char *tm__db_column_text(struct tm__stmt *st, int i)
{
    return st->db->ops->column_text(st, i);
}
static inline const void *tm__db_column_blob(struct tm__stmt *st, int i)
{
    return st->db->ops->column_blob(st, i);
}
static inline int tm__db_column_bytes(struct tm__stmt *st, int i)
{
    return st->db->ops->column_bytes(st, i);
}
/* sqlite3_exec without a callback: the other arguments must be NULL. */
static inline int tm__db_exec(struct tm__db *db, const char *sql, void *cb,
                              void *arg, char **errmsg)
{
    (void)cb;
    (void)arg;
    (void)errmsg;
    return db->ops->exec(db, sql);
}
static inline int tm__db_changes(struct tm__db *db)
{
    return db->ops->changes(db);
}
static inline int64_t tm__db_total_changes(struct tm__db *db)
{
    return db->ops->total_changes(db);
}
static inline const char *tm__db_errmsg(struct tm__db *db)
{
    return db->ops->errmsg(db);
}
static inline int tm__db_errcode(struct tm__db *db)
{
    return db->ops->errcode(db);
}
static inline int tm__db_get_autocommit(struct tm__db *db)
{
    return db->ops->autocommit(db);
}
static inline int tm__db_pipeline(struct tm__db *db, int on)
{
    return db->ops->pipeline(db, on);
}
static inline int tm__db_close(struct tm__db *db)
{
    return db ? db->ops->close(db) : SQLITE_OK;
}

#endif
