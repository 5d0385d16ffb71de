/*
 * exclude_q.c - the SQL of the exclusions decided after discovery
 * (exclude_q.h): exclusions, excluded_prev, temp.tm_match, temp.tm_sub.
 * Caller's thread, inside the transaction of tm__exclude_run.
 */
#include "store/exclude_q.h"

#include "treemig.h"

#include <string.h>

/* Prepares sql; on failure writes SQLite's message to err. */
static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, struct tm__buf *err)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return tm__store_error(db, rc, err, "read the state file");
    }
    return 0;
}

/* Steps st to its end (no rows expected); finalizes it. */
static int run_done(sqlite3 *db, sqlite3_stmt *st, const char *what, struct tm__buf *err)
{
    int rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : tm__store_error(db, rc, err, what);
    sqlite3_finalize(st);
    return rc;
}

/* Runs sql with ?1 bound to v (no rows). */
static int exec_id(sqlite3 *db, const char *sql, int64_t v, const char *what,
                   struct tm__buf *err)
{
    sqlite3_stmt *st;
    int rc = prepare(db, sql, &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, v);
    return run_done(db, st, what, err);
}

int tm__q_excl_tables(sqlite3 *db, struct tm__buf *err)
{
    return tm__store_exec(db, tm__review_schema_sql, err);
}

int tm__q_excl_temp_tables(sqlite3 *db, struct tm__buf *err)
{
    return tm__store_exec(db,
                          "CREATE TEMP TABLE IF NOT EXISTS tm_match(id INTEGER"
                          " PRIMARY KEY, depth INTEGER NOT NULL);"
                          "CREATE INDEX IF NOT EXISTS temp.tm_match_depth ON"
                          " tm_match(depth, id);"
                          "CREATE TEMP TABLE IF NOT EXISTS tm_sub(id INTEGER"
                          " PRIMARY KEY);",
                          err);
}

int tm__q_excl_fill_subtree(sqlite3 *db, int side, int64_t id, struct tm__buf *err)
{
    static const char *const sql[2] = {
        "INSERT INTO temp.tm_sub(id) WITH RECURSIVE sub(id) AS (SELECT ?1"
        " UNION ALL SELECT c.id FROM src_nodes AS c JOIN sub ON c.parent_id = sub.id"
        " WHERE c.traversal_status != 'excluded') SELECT id FROM sub",
        "INSERT INTO temp.tm_sub(id) WITH RECURSIVE sub(id) AS (SELECT ?1"
        " UNION ALL SELECT c.id FROM dst_nodes AS c JOIN sub ON c.parent_id = sub.id"
        " WHERE c.traversal_status != 'excluded') SELECT id FROM sub",
    };
    int rc = tm__store_exec(db, "DELETE FROM temp.tm_sub", err);
    return rc ? rc : exec_id(db, sql[side], id, "find the subtree", err);
}

int tm__q_excl_started(sqlite3 *db, struct tm__buf *path, struct tm__buf *status,
                       struct tm__buf *err)
{
    sqlite3_stmt *st;
    int rc = prepare(db, "SELECT n.path, n.copy_status FROM temp.tm_sub AS s"
                     " CROSS JOIN src_nodes AS n ON n.id = s.id WHERE n.copy_status IN"
                     " ('in_progress', 'successful', 'failed') LIMIT 1", &st, err);
    if (rc)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *np = (const char *)sqlite3_column_text(st, 0);
        const char *cs = (const char *)sqlite3_column_text(st, 1);
        tm__buf_reset(path);
        tm__buf_reset(status);
        tm__buf_add(path, np ? np : "", np ? (size_t)sqlite3_column_bytes(st, 0) : 0);
        tm__buf_adds(status, cs ? cs : "(null)");
        rc = 1;
    } else {
        rc = rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "check the copy");
    }
    sqlite3_finalize(st);
    return rc;
}

int tm__q_excl_dst_excluded(sqlite3 *db, int64_t id, int *excluded,
                            struct tm__buf *err)
{
    sqlite3_stmt *t;
    int rc = prepare(db, "SELECT traversal_status FROM dst_nodes WHERE id = ?1", &t, err);
    *excluded = 0;
    if (rc)
        return rc;
    sqlite3_bind_int64(t, 1, id);
    rc = sqlite3_step(t);
    if (rc == SQLITE_ROW) {
        const char *ts = (const char *)sqlite3_column_text(t, 0);
        *excluded = ts && !strcmp(ts, "excluded");
        rc = 0;
    } else {
        rc = tm__store_error(db, rc, err, "read the destination twin");
    }
    sqlite3_finalize(t);
    return rc;
}

int tm__q_excl_groups(sqlite3 *db, int side,
                      int (*group)(void *ctx, const struct tm__q_excl_group *g),
                      void *ctx, struct tm__buf *err)
{
    static const char *const sql[2] = {
        "SELECT n.depth, n.type, n.traversal_status, n.copy_status,"
        " n.conflict IS NOT NULL, count(*), sum(n.size) FROM temp.tm_sub AS s"
        " CROSS JOIN src_nodes AS n ON n.id = s.id GROUP BY 1, 2, 3, 4, 5",
        "SELECT n.depth, n.type, n.traversal_status, NULL, 0, count(*),"
        " sum(n.size) FROM temp.tm_sub AS s CROSS JOIN dst_nodes AS n ON n.id = s.id"
        " GROUP BY 1, 2, 3",
    };
    sqlite3_stmt *st;
    int rc = prepare(db, sql[side], &st, err);
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct tm__q_excl_group g;
        g.depth = sqlite3_column_int(st, 0);
        g.type = (const char *)sqlite3_column_text(st, 1);
        g.ts = (const char *)sqlite3_column_text(st, 2);
        g.cs = (const char *)sqlite3_column_text(st, 3);
        g.cf = sqlite3_column_int(st, 4);
        g.ts_to = "excluded";
        g.cs_to = "excluded";
        g.cf_to = 0;
        g.n = sqlite3_column_int64(st, 5);
        g.bytes = sqlite3_column_int64(st, 6);
        rc = group(ctx, &g);
        if (rc)
            break;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = tm__store_error(db, rc, err, "count the rows to exclude");
    sqlite3_finalize(st);
    return rc;
}

int tm__q_excl_mark(sqlite3 *db, int side, int64_t root, int64_t *changed,
                    struct tm__buf *err)
{
    static const char *const save[2] = {
        "INSERT INTO excluded_prev(side, id, root, traversal_status, copy_status,"
        " conflict, error) SELECT 'src', n.id, ?1, n.traversal_status,"
        " n.copy_status, n.conflict, n.error FROM temp.tm_sub AS s"
        " CROSS JOIN src_nodes AS n ON n.id = s.id",
        "INSERT INTO excluded_prev(side, id, root, traversal_status, copy_status,"
        " conflict, error) SELECT 'dst', n.id, ?1, n.traversal_status, NULL,"
        " n.conflict, n.error FROM temp.tm_sub AS s"
        " CROSS JOIN dst_nodes AS n ON n.id = s.id",
    };
    static const char *const update[2] = {
        "UPDATE src_nodes SET traversal_status = 'excluded', copy_status ="
        " 'excluded', conflict = NULL, error = NULL WHERE id IN"
        " (SELECT id FROM temp.tm_sub)",
        "UPDATE dst_nodes SET traversal_status = 'excluded', conflict = NULL,"
        " error = NULL WHERE id IN (SELECT id FROM temp.tm_sub)",
    };
    int rc = exec_id(db, save[side], root, "record the previous statuses", err);
    if (!rc)
        rc = exec_id(db, update[side], root, "exclude", err);
    *changed = rc ? 0 : sqlite3_changes(db);
    return rc;
}

int tm__q_excl_record_root(sqlite3 *db, int64_t id, const char *path,
                           const char *pattern, const char *now, struct tm__buf *err)
{
    sqlite3_stmt *st;
    int rc = prepare(db, "INSERT INTO exclusions(id, path, pattern, time) "
                     "VALUES(?1, ?2, ?3, ?4)", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, pattern, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
    return run_done(db, st, "record the exclusion", err);
}

int tm__q_incl_groups(sqlite3 *db, int side, int64_t id,
                      int (*group)(void *ctx, const struct tm__q_excl_group *g),
                      void *ctx, struct tm__buf *err)
{
    static const char *const sql[2] = {
        "SELECT n.depth, n.type, n.traversal_status, n.copy_status,"
        " n.conflict IS NOT NULL, e.traversal_status, e.copy_status,"
        " e.conflict IS NOT NULL, count(*), sum(n.size) FROM excluded_prev AS e"
        " CROSS JOIN src_nodes AS n ON n.id = e.id WHERE e.root = ?1 AND e.side = 'src'"
        " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8",
        "SELECT n.depth, n.type, n.traversal_status, NULL, 0, e.traversal_status,"
        " NULL, 0, count(*), sum(n.size) FROM excluded_prev AS e"
        " CROSS JOIN dst_nodes AS n ON n.id = e.id WHERE e.root = ?1 AND e.side = 'dst'"
        " GROUP BY 1, 2, 3, 6",
    };
    sqlite3_stmt *st;
    int rc = prepare(db, sql[side], &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct tm__q_excl_group g;
        g.depth = sqlite3_column_int(st, 0);
        g.type = (const char *)sqlite3_column_text(st, 1);
        g.ts = (const char *)sqlite3_column_text(st, 2);
        g.cs = (const char *)sqlite3_column_text(st, 3);
        g.cf = sqlite3_column_int(st, 4);
        g.ts_to = (const char *)sqlite3_column_text(st, 5);
        g.cs_to = (const char *)sqlite3_column_text(st, 6);
        g.cf_to = sqlite3_column_int(st, 7);
        g.n = sqlite3_column_int64(st, 8);
        g.bytes = sqlite3_column_int64(st, 9);
        rc = group(ctx, &g);
        if (rc)
            break;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = tm__store_error(db, rc, err, "count the rows to include");
    sqlite3_finalize(st);
    return rc;
}

int tm__q_incl_restore(sqlite3 *db, int side, int64_t id, int64_t *changed,
                       struct tm__buf *err)
{
    static const char *const update[2] = {
        "UPDATE src_nodes SET (traversal_status, copy_status, conflict, error) ="
        " (SELECT e.traversal_status, e.copy_status, e.conflict, e.error FROM"
        " excluded_prev AS e WHERE e.side = 'src' AND e.id = src_nodes.id)"
        " WHERE id IN (SELECT id FROM excluded_prev WHERE root = ?1"
        " AND side = 'src')",
        "UPDATE dst_nodes SET (traversal_status, conflict, error) ="
        " (SELECT e.traversal_status, e.conflict, e.error FROM"
        " excluded_prev AS e WHERE e.side = 'dst' AND e.id = dst_nodes.id)"
        " WHERE id IN (SELECT id FROM excluded_prev WHERE root = ?1"
        " AND side = 'dst')",
    };
    int rc = exec_id(db, update[side], id, "include again", err);
    *changed = rc ? 0 : sqlite3_changes(db);
    return rc;
}

int tm__q_incl_forget(sqlite3 *db, int64_t id, struct tm__buf *err)
{
    int rc = exec_id(db, "DELETE FROM excluded_prev WHERE root = ?1", id,
                     "forget the previous statuses", err);
    if (!rc)
        rc = exec_id(db, "DELETE FROM exclusions WHERE id = ?1", id,
                     "forget the exclusion", err);
    return rc;
}

int tm__q_excl_root_of(sqlite3 *db, int64_t id, struct tm__buf *path,
                       struct tm__buf *pattern)
{
    sqlite3_stmt *st;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT x.path, x.pattern FROM excluded_prev AS e"
                           " JOIN exclusions AS x ON x.id = e.root"
                           " WHERE e.side = 'src' AND e.id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *p = (const char *)sqlite3_column_text(st, 0);
        const char *g = (const char *)sqlite3_column_text(st, 1);
        tm__buf_reset(path);
        tm__buf_reset(pattern);
        tm__buf_adds(path, p ? p : "");
        tm__buf_adds(pattern, g ? g : "");
        found = 1;
    }
    sqlite3_finalize(st);
    return found;
}

int tm__q_excl_node(sqlite3 *db, int64_t id, struct tm__buf *path,
                    struct tm__q_excl_node *out, struct tm__buf *err)
{
    sqlite3_stmt *st;
    int rc = prepare(db, "SELECT n.path, n.traversal_status = 'excluded', n.parent_id,"
                     " (SELECT traversal_status = 'excluded' FROM src_nodes"
                     " WHERE id = n.parent_id) FROM src_nodes AS n WHERE n.id = ?1",
                     &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = tm__store_error(db, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, err,
                             "read a node");
        sqlite3_finalize(st);
        return rc;
    }
    rc = tm__buf_add(path, sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0));
    out->excluded = sqlite3_column_int(st, 1);
    out->parent_id = sqlite3_column_int64(st, 2);
    out->parent_excluded = sqlite3_column_int(st, 3);
    sqlite3_finalize(st);
    return rc;
}

int tm__q_excl_prev_root(sqlite3 *db, int64_t id, int *has, int64_t *root,
                         struct tm__buf *err)
{
    sqlite3_stmt *st;
    int rc = prepare(db, "SELECT root FROM excluded_prev WHERE side = 'src' AND id = ?1",
                     &st, err);
    *has = 0;
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *has = 1;
        *root = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "read the exclusion");
    }
    sqlite3_finalize(st);
    return rc;
}

int tm__q_match_collect(sqlite3 *db, int64_t only_id,
                        int (*take)(void *ctx, const struct tm__q_candidate *c),
                        void *ctx, struct tm__buf *err)
{
    sqlite3_stmt *st = NULL, *ins = NULL;
    int rc = prepare(db, "INSERT OR IGNORE INTO temp.tm_match(id, depth) "
                     "VALUES(?1, ?2)", &ins, err);
    if (rc)
        return rc;
    if (only_id) {
        /* a plain path: one row */
        rc = prepare(db, "SELECT id, depth, traversal_status, path, name FROM "
                     "src_nodes WHERE id = ?1", &st, err);
        if (!rc)
            sqlite3_bind_int64(st, 1, only_id);
    } else {
        /* a glob: every row */
        rc = prepare(db, "SELECT id, depth, traversal_status, path, name FROM "
                     "src_nodes WHERE depth > 0", &st, err);
    }
    if (rc)
        goto out;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct tm__q_candidate c;
        int t;
        c.id = sqlite3_column_int64(st, 0);
        c.depth = sqlite3_column_int(st, 1);
        c.ts = (const char *)sqlite3_column_text(st, 2);
        c.path = (const char *)sqlite3_column_text(st, 3);
        c.name = (const char *)sqlite3_column_text(st, 4);
        t = take(ctx, &c);
        if (t < 0) {
            rc = t;
            break;
        }
        if (!t)
            continue;
        sqlite3_bind_int64(ins, 1, c.id);
        sqlite3_bind_int(ins, 2, c.depth);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            rc = tm__store_error(db, sqlite3_errcode(db), err, "collect the matches");
            break;
        }
        sqlite3_reset(ins);
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = tm__store_error(db, rc, err, "find the matches");
out:
    sqlite3_finalize(st);
    sqlite3_finalize(ins);
    return rc;
}

int tm__q_match_clear(sqlite3 *db, struct tm__buf *err)
{
    return tm__store_exec(db, "DELETE FROM temp.tm_match", err);
}

int tm__q_match_next_depth(sqlite3 *db, int64_t depth, int64_t *next,
                           struct tm__buf *err)
{
    sqlite3_stmt *st;
    int rc = prepare(db, "SELECT min(depth) FROM temp.tm_match WHERE depth > ?1", &st,
                     err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, depth);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = tm__store_error(db, rc, err, "read the matches");
    } else {
        *next = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1
                                                          : sqlite3_column_int64(st, 0);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

int tm__q_match_drop_settled(sqlite3 *db, int64_t depth, int unexclude,
                             struct tm__buf *err)
{
    return exec_id(db, unexclude
                   ? "DELETE FROM temp.tm_match WHERE depth = ?1 AND"
                     " (SELECT traversal_status FROM src_nodes AS n"
                     " WHERE n.id = tm_match.id) != 'excluded'"
                   : "DELETE FROM temp.tm_match WHERE depth = ?1 AND"
                     " (SELECT traversal_status FROM src_nodes AS n"
                     " WHERE n.id = tm_match.id) = 'excluded'",
                   depth, "read the matches", err);
}

int tm__q_match_page(sqlite3 *db, int64_t depth, int64_t last_id, int64_t *ids,
                     int max, int *k, struct tm__buf *err)
{
    sqlite3_stmt *st;
    int step = SQLITE_DONE;
    int rc = prepare(db, "SELECT id FROM temp.tm_match WHERE depth = ?1 AND "
                     "id > ?2 ORDER BY id LIMIT 256", &st, err);
    *k = 0;
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, depth);
    sqlite3_bind_int64(st, 2, last_id);
    while (*k < max && (step = sqlite3_step(st)) == SQLITE_ROW)
        ids[(*k)++] = sqlite3_column_int64(st, 0);
    if (*k < max && step != SQLITE_DONE)
        rc = tm__store_error(db, step, err, "read the matches");
    sqlite3_finalize(st);
    return rc;
}

int tm__q_excl_apply_stats(sqlite3 *db, struct tm__stats_delta *d, struct tm__buf *err)
{
    int rc = tm__stats_apply(db, d);
    if (rc)
        tm__store_error(db, sqlite3_errcode(db), err, "update the stats");
    return rc;
}

int tm__q_excl_patterns(sqlite3 *db, struct tm__buf *v, struct tm__buf *err)
{
    sqlite3_stmt *st;
    int rc = prepare(db, "SELECT pattern FROM exclusions GROUP BY pattern "
                     "ORDER BY min(time), min(rowid)", &st, err);
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((v->len && tm__buf_addch(v, '\n')) ||
            tm__buf_adds(v, (const char *)sqlite3_column_text(st, 0))) {
            rc = TM_ENOMEM;
            break;
        }
    }
    if (rc != TM_ENOMEM)
        rc = rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "read exclusions");
    sqlite3_finalize(st);
    return rc;
}

int tm__q_review_log(sqlite3 *db, int64_t time, const char *msg, size_t len,
                     struct tm__buf *err)
{
    sqlite3_stmt *st;
    int rc = prepare(db, "INSERT INTO logs(time, level, queue, message) "
                     "VALUES(?1, 'info', 'review', ?2)", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, time);
    sqlite3_bind_text(st, 2, msg, (int)len, SQLITE_STATIC);
    return run_done(db, st, "write the log", err);
}

int tm__q_excl_finish(sqlite3 *db, int dry_run, struct tm__buf *err)
{
    return tm__store_exec(db, dry_run ? "ROLLBACK" :
                          "DELETE FROM temp.tm_match; DELETE FROM "
                          "temp.tm_sub; COMMIT", err);
}
