/*
 * exclude_q.c - the SQL of the exclusions decided after discovery
 * (exclude_q.h): exclusions, excluded_prev, temp.tm_match, temp.tm_sub.
 * Caller's thread, inside the transaction of tm__exclude_run.
 */
#include "store/exclude_q.h"

#include "treemig.h"

#include <string.h>

/* Prepares sql; on failure writes SQLite's message to err. */
static int prepare(struct tm__db *db, const char *sql, struct tm__stmt **st, struct tm__buf *err)
{
    int rc = tm__db_prepare(db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return tm__store_error(db, rc, err, "read the state file");
    }
    return 0;
}

/* Steps st to its end (no rows expected); finalizes it. */
static int run_done(struct tm__db *db, struct tm__stmt *st, const char *what, struct tm__buf *err)
{
    int rc = tm__db_step(st);
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : tm__store_error(db, rc, err, what);
    tm__db_finalize(st);
    return rc;
}

/* Runs sql with ?1 bound to v (no rows). */
static int exec_id(struct tm__db *db, const char *sql, int64_t v, const char *what,
                   struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc = prepare(db, sql, &st, err);
    if (rc)
        return rc;
    tm__db_bind_int64(st, 1, v);
    return run_done(db, st, what, err);
}

int tm__q_excl_tables(struct tm__db *db, struct tm__buf *err)
{
    return tm__store_exec(db, tm__review_schema_sql, err);
}

int tm__q_excl_temp_tables(struct tm__db *db, struct tm__buf *err)
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

int tm__q_excl_fill_subtree(struct tm__db *db, int side, int64_t id, struct tm__buf *err)
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

int tm__q_excl_started(struct tm__db *db, struct tm__buf *path, struct tm__buf *status,
                       struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc = prepare(db, "SELECT n.path, n.copy_status FROM temp.tm_sub AS s"
                     " CROSS JOIN src_nodes AS n ON n.id = s.id WHERE n.copy_status IN"
                     " ('in_progress', 'successful', 'failed') LIMIT 1", &st, err);
    if (rc)
        return rc;
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        const char *np = (const char *)tm__db_column_text(st, 0);
        const char *cs = (const char *)tm__db_column_text(st, 1);
        tm__buf_reset(path);
        tm__buf_reset(status);
        tm__buf_add(path, np ? np : "", np ? (size_t)tm__db_column_bytes(st, 0) : 0);
        tm__buf_adds(status, cs ? cs : "(null)");
        rc = 1;
    } else {
        rc = rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "check the copy");
    }
    tm__db_finalize(st);
    return rc;
}

int tm__q_excl_dst_excluded(struct tm__db *db, int64_t id, int *excluded,
                            struct tm__buf *err)
{
    struct tm__stmt *t;
    int rc = prepare(db, "SELECT traversal_status FROM dst_nodes WHERE id = ?1", &t, err);
    *excluded = 0;
    if (rc)
        return rc;
    tm__db_bind_int64(t, 1, id);
    rc = tm__db_step(t);
    if (rc == SQLITE_ROW) {
        const char *ts = (const char *)tm__db_column_text(t, 0);
        *excluded = ts && !strcmp(ts, "excluded");
        rc = 0;
    } else {
        rc = tm__store_error(db, rc, err, "read the destination twin");
    }
    tm__db_finalize(t);
    return rc;
}

int tm__q_excl_groups(struct tm__db *db, int side,
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
    struct tm__stmt *st;
    int rc = prepare(db, sql[side], &st, err);
    if (rc)
        return rc;
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        struct tm__q_excl_group g;
        g.depth = tm__db_column_int(st, 0);
        g.type = (const char *)tm__db_column_text(st, 1);
        g.ts = (const char *)tm__db_column_text(st, 2);
        g.cs = (const char *)tm__db_column_text(st, 3);
        g.cf = tm__db_column_int(st, 4);
        g.ts_to = "excluded";
        g.cs_to = "excluded";
        g.cf_to = 0;
        g.n = tm__db_column_int64(st, 5);
        g.bytes = tm__db_column_int64(st, 6);
        rc = group(ctx, &g);
        if (rc)
            break;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = tm__store_error(db, rc, err, "count the rows to exclude");
    tm__db_finalize(st);
    return rc;
}

int tm__q_excl_mark(struct tm__db *db, int side, int64_t root, int64_t *changed,
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
    *changed = rc ? 0 : tm__db_changes(db);
    return rc;
}

int tm__q_excl_record_root(struct tm__db *db, int64_t id, const char *path,
                           const char *pattern, const char *now, struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc = prepare(db, "INSERT INTO exclusions(id, path, pattern, time) "
                     "VALUES(?1, ?2, ?3, ?4)", &st, err);
    if (rc)
        return rc;
    tm__db_bind_int64(st, 1, id);
    tm__db_bind_text(st, 2, path, -1, SQLITE_STATIC);
    tm__db_bind_text(st, 3, pattern, -1, SQLITE_STATIC);
    tm__db_bind_text(st, 4, now, -1, SQLITE_STATIC);
    return run_done(db, st, "record the exclusion", err);
}

int tm__q_incl_groups(struct tm__db *db, int side, int64_t id,
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
    struct tm__stmt *st;
    int rc = prepare(db, sql[side], &st, err);
    if (rc)
        return rc;
    tm__db_bind_int64(st, 1, id);
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        struct tm__q_excl_group g;
        g.depth = tm__db_column_int(st, 0);
        g.type = (const char *)tm__db_column_text(st, 1);
        g.ts = (const char *)tm__db_column_text(st, 2);
        g.cs = (const char *)tm__db_column_text(st, 3);
        g.cf = tm__db_column_int(st, 4);
        g.ts_to = (const char *)tm__db_column_text(st, 5);
        g.cs_to = (const char *)tm__db_column_text(st, 6);
        g.cf_to = tm__db_column_int(st, 7);
        g.n = tm__db_column_int64(st, 8);
        g.bytes = tm__db_column_int64(st, 9);
        rc = group(ctx, &g);
        if (rc)
            break;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = tm__store_error(db, rc, err, "count the rows to include");
    tm__db_finalize(st);
    return rc;
}

int tm__q_incl_restore(struct tm__db *db, int side, int64_t id, int64_t *changed,
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
    *changed = rc ? 0 : tm__db_changes(db);
    return rc;
}

int tm__q_incl_forget(struct tm__db *db, int64_t id, struct tm__buf *err)
{
    int rc = exec_id(db, "DELETE FROM excluded_prev WHERE root = ?1", id,
                     "forget the previous statuses", err);
    if (!rc)
        rc = exec_id(db, "DELETE FROM exclusions WHERE id = ?1", id,
                     "forget the exclusion", err);
    return rc;
}

int tm__q_excl_root_of(struct tm__db *db, int64_t id, struct tm__buf *path,
                       struct tm__buf *pattern)
{
    struct tm__stmt *st;
    int found = 0;
    if (tm__db_prepare(db, "SELECT x.path, x.pattern FROM excluded_prev AS e"
                           " JOIN exclusions AS x ON x.id = e.root"
                           " WHERE e.side = 'src' AND e.id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return 0;
    tm__db_bind_int64(st, 1, id);
    if (tm__db_step(st) == SQLITE_ROW) {
        const char *p = (const char *)tm__db_column_text(st, 0);
        const char *g = (const char *)tm__db_column_text(st, 1);
        tm__buf_reset(path);
        tm__buf_reset(pattern);
        tm__buf_adds(path, p ? p : "");
        tm__buf_adds(pattern, g ? g : "");
        found = 1;
    }
    tm__db_finalize(st);
    return found;
}

int tm__q_excl_node(struct tm__db *db, int64_t id, struct tm__buf *path,
                    struct tm__q_excl_node *out, struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc = prepare(db, "SELECT n.path, n.traversal_status = 'excluded', n.parent_id,"
                     " (SELECT traversal_status = 'excluded' FROM src_nodes"
                     " WHERE id = n.parent_id) FROM src_nodes AS n WHERE n.id = ?1",
                     &st, err);
    if (rc)
        return rc;
    tm__db_bind_int64(st, 1, id);
    rc = tm__db_step(st);
    if (rc != SQLITE_ROW) {
        rc = tm__store_error(db, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, err,
                             "read a node");
        tm__db_finalize(st);
        return rc;
    }
    rc = tm__buf_add(path, tm__db_column_text(st, 0), (size_t)tm__db_column_bytes(st, 0));
    out->excluded = tm__db_column_int(st, 1);
    out->parent_id = tm__db_column_int64(st, 2);
    out->parent_excluded = tm__db_column_int(st, 3);
    tm__db_finalize(st);
    return rc;
}

int tm__q_excl_prev_root(struct tm__db *db, int64_t id, int *has, int64_t *root,
                         struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc = prepare(db, "SELECT root FROM excluded_prev WHERE side = 'src' AND id = ?1",
                     &st, err);
    *has = 0;
    if (rc)
        return rc;
    tm__db_bind_int64(st, 1, id);
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        *has = 1;
        *root = tm__db_column_int64(st, 0);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "read the exclusion");
    }
    tm__db_finalize(st);
    return rc;
}

int tm__q_match_collect(struct tm__db *db, int64_t only_id,
                        int (*take)(void *ctx, const struct tm__q_candidate *c),
                        void *ctx, struct tm__buf *err)
{
    struct tm__stmt *st = NULL, *ins = NULL;
    int rc = prepare(db, "INSERT OR IGNORE INTO temp.tm_match(id, depth) "
                     "VALUES(?1, ?2)", &ins, err);
    if (rc)
        return rc;
    if (only_id) {
        /* a plain path: one row */
        rc = prepare(db, "SELECT id, depth, traversal_status, path, name FROM "
                     "src_nodes WHERE id = ?1", &st, err);
        if (!rc)
            tm__db_bind_int64(st, 1, only_id);
    } else {
        /* a glob: every row */
        rc = prepare(db, "SELECT id, depth, traversal_status, path, name FROM "
                     "src_nodes WHERE depth > 0", &st, err);
    }
    if (rc)
        goto out;
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        struct tm__q_candidate c;
        int t;
        c.id = tm__db_column_int64(st, 0);
        c.depth = tm__db_column_int(st, 1);
        c.ts = (const char *)tm__db_column_text(st, 2);
        c.path = (const char *)tm__db_column_text(st, 3);
        c.name = (const char *)tm__db_column_text(st, 4);
        t = take(ctx, &c);
        if (t < 0) {
            rc = t;
            break;
        }
        if (!t)
            continue;
        tm__db_bind_int64(ins, 1, c.id);
        tm__db_bind_int(ins, 2, c.depth);
        if (tm__db_step(ins) != SQLITE_DONE) {
            rc = tm__store_error(db, tm__db_errcode(db), err, "collect the matches");
            break;
        }
        tm__db_reset(ins);
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = tm__store_error(db, rc, err, "find the matches");
out:
    tm__db_finalize(st);
    tm__db_finalize(ins);
    return rc;
}

int tm__q_match_clear(struct tm__db *db, struct tm__buf *err)
{
    return tm__store_exec(db, "DELETE FROM temp.tm_match", err);
}

int tm__q_match_next_depth(struct tm__db *db, int64_t depth, int64_t *next,
                           struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc = prepare(db, "SELECT min(depth) FROM temp.tm_match WHERE depth > ?1", &st,
                     err);
    if (rc)
        return rc;
    tm__db_bind_int64(st, 1, depth);
    rc = tm__db_step(st);
    if (rc != SQLITE_ROW) {
        rc = tm__store_error(db, rc, err, "read the matches");
    } else {
        *next = tm__db_column_type(st, 0) == SQLITE_NULL ? -1
                                                          : tm__db_column_int64(st, 0);
        rc = 0;
    }
    tm__db_finalize(st);
    return rc;
}

int tm__q_match_drop_settled(struct tm__db *db, int64_t depth, int unexclude,
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

int tm__q_match_page(struct tm__db *db, int64_t depth, int64_t last_id, int64_t *ids,
                     int max, int *k, struct tm__buf *err)
{
    struct tm__stmt *st;
    int step = SQLITE_DONE;
    int rc = prepare(db, "SELECT id FROM temp.tm_match WHERE depth = ?1 AND "
                     "id > ?2 ORDER BY id LIMIT 256", &st, err);
    *k = 0;
    if (rc)
        return rc;
    tm__db_bind_int64(st, 1, depth);
    tm__db_bind_int64(st, 2, last_id);
    while (*k < max && (step = tm__db_step(st)) == SQLITE_ROW)
        ids[(*k)++] = tm__db_column_int64(st, 0);
    if (*k < max && step != SQLITE_DONE)
        rc = tm__store_error(db, step, err, "read the matches");
    tm__db_finalize(st);
    return rc;
}

int tm__q_excl_apply_stats(struct tm__db *db, struct tm__stats_delta *d, struct tm__buf *err)
{
    int rc = tm__stats_apply(db, d);
    if (rc)
        tm__store_error(db, tm__db_errcode(db), err, "update the stats");
    return rc;
}

int tm__q_excl_patterns(struct tm__db *db, struct tm__buf *v, struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc = prepare(db, "SELECT pattern FROM exclusions GROUP BY pattern "
                     "ORDER BY min(time), min(id)", &st, err);
    if (rc)
        return rc;
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        if ((v->len && tm__buf_addch(v, '\n')) ||
            tm__buf_adds(v, (const char *)tm__db_column_text(st, 0))) {
            rc = TM_ENOMEM;
            break;
        }
    }
    if (rc != TM_ENOMEM)
        rc = rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "read exclusions");
    tm__db_finalize(st);
    return rc;
}

int tm__q_review_log(struct tm__db *db, int64_t time, const char *msg, size_t len,
                     struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc = prepare(db, "INSERT INTO logs(time, level, queue, message) "
                     "VALUES(?1, 'info', 'review', ?2)", &st, err);
    if (rc)
        return rc;
    tm__db_bind_int64(st, 1, time);
    tm__db_bind_text(st, 2, msg, (int)len, SQLITE_STATIC);
    return run_done(db, st, "write the log", err);
}

int tm__q_excl_finish(struct tm__db *db, int dry_run, struct tm__buf *err)
{
    return tm__store_exec(db, dry_run ? "ROLLBACK" :
                          "DELETE FROM temp.tm_match; DELETE FROM "
                          "temp.tm_sub; COMMIT", err);
}
