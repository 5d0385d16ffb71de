/*
 * store_pg.c - opening a state database on a PostgreSQL server (--db
 * postgresql://...): connect, take the migration's lock, check what the
 * database holds, create or upgrade the schema. The schema is store.c's
 * SQLite DDL, translated by db_pg.c: one text for both stores. Where a
 * state file keeps its identity in SQLite's header (application_id,
 * user_version), a database keeps it in the table treemig_meta, which the
 * PRAGMAs of store.c read and write once translated.
 *
 * The lock: a session-level advisory lock (pg_try_advisory_lock) held by
 * the writing connection for as long as it is open; the server drops it
 * when the connection goes, so a killed process leaves no stale lock. A
 * lock held by another session is asked for again for 2 s: the session
 * of a process that has just ended ends a little after it.
 *
 * Runs on the thread that opens the store (store.h).
 */
#include "store/store.h"

#include "treemig.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

/* The migration's lock held by another session: asked again every
 * LOCK_WAIT_MS, LOCK_TRIES times in all (2 s). */
#define LOCK_TRIES 40
#define LOCK_WAIT_MS 50

/* One row, one column, as text (malloc'd) into *out; NULL for no row. */
static int one_text(struct tm__db *db, const char *sql, char **out)
{
    struct tm__stmt *st;
    int rc = tm__db_prepare(db, sql, -1, &st, NULL);
    *out = NULL;
    if (rc != SQLITE_OK)
        return rc;
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *v = tm__db_column_text(st, 0);
        *out = strdup(v ? (const char *)v : "");
        rc = *out ? SQLITE_OK : SQLITE_NOMEM;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    tm__db_finalize(st);
    return rc;
}

static int db_fail(struct tm__store *s, int rc, struct tm__buf *err,
                   const char *what)
{
    int e = tm__store_error(s->db, rc, NULL, what);
    tm__buf_reset(err);
    tm__buf_addf(err, "state database %s: %s: %s", s->path, what,
                 tm__db_errmsg(s->db));
    return e;
}

/* The node tables are not ANALYZEd by autovacuum before this many rows
 * changed. The server keeps one plan of a prepared statement for any
 * values (the writer's UPDATE ... FROM unnest of a batch, the frontier's
 * and the claims' reads), made again when the table's statistics change.
 * Statistics of a table of a page or two (an autovacuum early in a
 * discovery) made that plan a sequential scan of the whole table, kept
 * while the table grew: 0.3-0.4 s a statement, a 300k discovery of 5 s
 * took 50-70 s. Never ANALYZEd, a table's rows are estimated from its
 * size on disk, which grows with it; from 10,000 rows on, its statistics
 * hold. (Planning each run for its values instead, plan_cache_mode =
 * force_custom_plan, cost 0.2 CPU s of the server in a 300k discovery
 * and 3.5 s with leases.) */
#define NODES_ANALYZE_AFTER "10000"

/* Creates treemig_meta and the schema in one transaction. */
static int create_schema(struct tm__store *s, struct tm__buf *err)
{
    char sql[160];
    int rc = tm__db_exec(s->db, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = tm__db_exec(s->db,
                         "CREATE TABLE treemig_meta(application_id INTEGER NOT NULL,"
                         " user_version INTEGER NOT NULL);"
                         "INSERT INTO treemig_meta VALUES(0, 0)",
                         NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = tm__db_exec(s->db, tm__store_schema_sql(), NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = tm__db_exec(s->db, tm__review_schema_sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = tm__db_exec(s->db,
                         "ALTER TABLE src_nodes SET (autovacuum_analyze_threshold = "
                         NODES_ANALYZE_AFTER ");"
                         "ALTER TABLE dst_nodes SET (autovacuum_analyze_threshold = "
                         NODES_ANALYZE_AFTER ");"
                         "ALTER TABLE prev_src_nodes SET (autovacuum_analyze_threshold = "
                         NODES_ANALYZE_AFTER ")",
                         NULL, NULL, NULL);
    snprintf(sql, sizeof sql, "PRAGMA application_id=%d; PRAGMA user_version=%d",
             TM_APPLICATION_ID, TM_SCHEMA_VERSION);
    if (rc == SQLITE_OK)
        rc = tm__db_exec(s->db, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = tm__db_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int e = db_fail(s, rc, err, "cannot create the schema");
        tm__db_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return e;
    }
    return 0;
}

/* Checks treemig_meta; brings an older schema up to date when writing. */
static int check_meta(struct tm__store *s, struct tm__buf *err)
{
    char *app = NULL, *ver = NULL;
    int rc = one_text(s->db, "SELECT application_id FROM treemig_meta", &app);
    int a, v;
    if (rc == SQLITE_OK)
        rc = one_text(s->db, "SELECT user_version FROM treemig_meta", &ver);
    if (rc != SQLITE_OK) {
        free(app);
        return db_fail(s, rc, err, "cannot read the schema version");
    }
    a = app ? atoi(app) : 0;
    v = ver ? atoi(ver) : 0;
    free(app);
    free(ver);
    if (a != TM_APPLICATION_ID || v < 1) {
        tm__buf_addf(err, "%s holds a table treemig_meta that is not treemig's; "
                     "it was left untouched", s->path);
        return TM_EINVAL;
    }
    if (v > TM_SCHEMA_VERSION) {
        tm__buf_addf(err, "%s has schema version %d, newer than this treemig "
                     "(%d); use a newer treemig", s->path, v, TM_SCHEMA_VERSION);
        return TM_ESCHEMA;
    }
    if (v == TM_SCHEMA_VERSION || s->readonly)
        return 0;
    rc = tm__db_exec(s->db, "BEGIN", NULL, NULL, NULL);
    for (; rc == SQLITE_OK && v < TM_SCHEMA_VERSION; v++)
        rc = tm__db_exec(s->db, tm__store_upgrade_sql(v), NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", TM_SCHEMA_VERSION);
        rc = tm__db_exec(s->db, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = tm__db_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int e = db_fail(s, rc, err, "cannot upgrade the schema");
        tm__db_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return e;
    }
    return 0;
}

int tm__store_open_pg(struct tm__store *s, const char *uri, unsigned flags,
                      struct tm__buf *err)
{
    int write = (flags & TM_OPEN_WRITE) != 0;
    char *msg = NULL, *got = NULL;
    int rc;

    memset(s, 0, sizeof *s);
    s->lock_fd = -1;
    s->readonly = !write;
    s->path = tm__db_pg_redact(uri);
    s->conninfo = strdup(uri);
    if (!s->path || !s->conninfo) {
        rc = TM_ENOMEM;
        goto fail;
    }
    rc = tm__db_open_pg(uri, &s->db, &msg);
    if (rc != SQLITE_OK) {
        /* a refused password and a missing database are the user's to fix */
        tm__buf_addf(err, "cannot connect to the state database %s: %s", s->path,
                     msg ? msg : "out of memory");
        rc = rc == SQLITE_AUTH ? TM_EAUTH : rc == SQLITE_NOMEM ? TM_ENOMEM : TM_EINVAL;
        free(msg);
        goto fail;
    }
    if (write && !(flags & TM_OPEN_SHARED)) {
        int locked = 0, tries = 0;
        /* the server drops the lock of a process that has just ended
         * when its session ends, a little after the process: a command
         * run right after another (discover, then copy) waits for that */
        while ((rc = tm__db_pg_lock(s->db, 1953327463, &locked)) == SQLITE_OK &&
               !locked && ++tries < LOCK_TRIES)
            tm__sleep_ms(LOCK_WAIT_MS);
        if (rc != SQLITE_OK) {
            rc = db_fail(s, rc, err, "cannot lock");
            goto fail;
        }
        if (!locked) {
            tm__buf_addf(err, "state database %s is in use by another process",
                         s->path);
            rc = TM_ELOCKED;
            goto fail;
        }
    }
    /* what the database holds: nothing, treemig's schema, or something else */
    rc = one_text(s->db,
                  "SELECT string_agg(table_name::text, ', ' ORDER BY table_name)"
                  " FROM information_schema.tables"
                  " WHERE table_schema = current_schema()",
                  &got);
    if (rc != SQLITE_OK) {
        rc = db_fail(s, rc, err, "cannot list its tables");
        goto fail;
    }
    if (!got || !*got) {
        if (!write || !(flags & TM_OPEN_CREATE)) {
            tm__buf_addf(err, "no state file at %s (the database holds no tables)",
                         s->path);
            rc = TM_ENODB;
            goto fail;
        }
        rc = create_schema(s, err);
        if (rc)
            goto fail;
        s->fresh = 1;
    } else if (!strstr(got, "treemig_meta")) {
        tm__buf_addf(err, "%s holds tables of another program (%.200s); it was "
                     "left untouched", s->path, got);
        rc = TM_EINVAL;
        goto fail;
    } else {
        rc = check_meta(s, err);
        if (rc)
            goto fail;
    }
    free(got);
    return 0;
fail:
    free(got);
    tm__store_close(s);
    return rc;
}
