/*
 * pass_q.c - the SQL of the passes (treemig rescan): see pass_q.h. Runs on
 * the thread of the handle, with its connection.
 */
#include "store/pass_q.h"

#include "store/store.h"
#include "treemig.h"

#include <stdio.h>
#include <string.h>


/* The root of a side: its one row without a parent (by the index
 * (parent_id, name), not a scan of the table). */
#define PASS_ROOT "parent_id IS NULL AND depth = 0"

/* The rows of side (src, dst) that the start of a pass may change: the
 * root and what the review exclusions changed. */
#define PASS_CHANGING(side) " WHERE id IN (SELECT id FROM " side "_nodes WHERE " \
    PASS_ROOT " UNION SELECT id FROM excluded_prev WHERE side = '" side "')"

/* Adds (sign "") or takes out (sign "-") the rows of PASS_CHANGING in
 * the stats, as tm__stats_apply() adds a delta. */
#define PASS_STAT_SUM(sign) sign "count(*), " sign "coalesce(sum(size), 0)"
#define PASS_STAT_SET " ON CONFLICT DO UPDATE SET count=count+excluded.count, " \
    "bytes=bytes+excluded.bytes;"
#define PASS_STATS(sign)                                                        \
    "INSERT INTO src_stats(depth, type, traversal_status, count, bytes)"         \
    " SELECT depth, type, traversal_status, " PASS_STAT_SUM(sign)                 \
    " FROM src_nodes" PASS_CHANGING("src") " GROUP BY depth, type,"               \
    " traversal_status" PASS_STAT_SET                                           \
    "INSERT INTO dst_stats(depth, type, traversal_status, count, bytes)"         \
    " SELECT depth, type, traversal_status, " PASS_STAT_SUM(sign)                 \
    " FROM dst_nodes" PASS_CHANGING("dst") " GROUP BY depth, type,"               \
    " traversal_status" PASS_STAT_SET                                           \
    "INSERT INTO copy_stats(depth, type, copy_status, conflict, count, bytes)"   \
    " SELECT depth, type, copy_status, CASE WHEN conflict IS NULL THEN 0"        \
    " ELSE 1 END, " PASS_STAT_SUM(sign) " FROM src_nodes" PASS_CHANGING("src")    \
    " GROUP BY depth, type, copy_status, CASE WHEN conflict IS NULL THEN 0"      \
    " ELSE 1 END" PASS_STAT_SET

int tm__q_pass_reset(struct tm__db *db, const char *created, const char *now, int *n,
                     struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc;
    /* The rows stay: the pass merges its listings with them (writer.c,
     * "passes"). What the review exclusions changed is put back as it was
     * (they are made again at the end of the pass, over what it found);
     * prev_src_nodes is left to hold what this pass changes; the roots
     * are listed again. The stats follow the rows that change: counted
     * out before, in after (not counted again from every row: a sort of
     * the whole tables, a tenth of a pass where nothing changed). */
    rc = tm__store_exec(db,
        "DELETE FROM prev_src_nodes;"
        PASS_STATS("-")
        "UPDATE src_nodes SET"
        " traversal_status = (SELECT e.traversal_status FROM excluded_prev AS e"
        " WHERE e.side = 'src' AND e.id = src_nodes.id),"
        " copy_status = (SELECT e.copy_status FROM excluded_prev AS e"
        " WHERE e.side = 'src' AND e.id = src_nodes.id),"
        " conflict = (SELECT e.conflict FROM excluded_prev AS e"
        " WHERE e.side = 'src' AND e.id = src_nodes.id),"
        " error = (SELECT e.error FROM excluded_prev AS e"
        " WHERE e.side = 'src' AND e.id = src_nodes.id)"
        " WHERE id IN (SELECT id FROM excluded_prev WHERE side = 'src');"
        "UPDATE dst_nodes SET"
        " traversal_status = (SELECT e.traversal_status FROM excluded_prev AS e"
        " WHERE e.side = 'dst' AND e.id = dst_nodes.id),"
        " conflict = (SELECT e.conflict FROM excluded_prev AS e"
        " WHERE e.side = 'dst' AND e.id = dst_nodes.id)"
        " WHERE id IN (SELECT id FROM excluded_prev WHERE side = 'dst');"
        "UPDATE src_nodes SET traversal_status = 'pending' WHERE " PASS_ROOT ";"
        "UPDATE dst_nodes SET traversal_status = 'pending' WHERE " PASS_ROOT ";"
        PASS_STATS("")
        "DELETE FROM listing_pos; DELETE FROM uploads; DELETE FROM mirror;"
        "DELETE FROM task_errors; DELETE FROM excluded_prev;"
        "DELETE FROM exclusions;"
        /* the new pass's frontier: from its roots (discover.c) */
        "DELETE FROM migration WHERE key IN ('pass_src_frontier',"
        " 'pass_dst_frontier');"
        "INSERT OR REPLACE INTO migration(key, value) SELECT 'pass_src_id0',"
        " CAST(coalesce(max(id), 0) + 1 AS TEXT) FROM src_nodes;", err);
    if (rc)
        return rc;
    if (tm__db_prepare(db, "INSERT OR IGNORE INTO passes(n, started) VALUES "
                           "(1, ?1)", -1, &st, NULL) != SQLITE_OK)
        return tm__store_error(db, SQLITE_ERROR, err, "record the pass");
    tm__db_bind_text(st, 1, created, -1, SQLITE_STATIC);
    rc = tm__db_step(st);
    tm__db_finalize(st);
    if (rc != SQLITE_DONE)
        return tm__store_error(db, rc, err, "record the pass");
    if (tm__db_prepare(db, "INSERT INTO passes(n, started) SELECT max(n) + 1, "
                           "?1 FROM passes RETURNING n", -1, &st, NULL) != SQLITE_OK)
        return tm__store_error(db, SQLITE_ERROR, err, "record the pass");
    tm__db_bind_text(st, 1, now, -1, SQLITE_STATIC);
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        *n = tm__db_column_int(st, 0);
        rc = tm__db_step(st);
    }
    tm__db_finalize(st);
    return rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "record the pass");
}

int tm__q_pass_end(struct tm__db *db, int n, const char *now, struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc;
    if (tm__db_prepare(db, "UPDATE passes SET ended = ?2 WHERE n = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return tm__store_error(db, SQLITE_ERROR, err, "record the pass");
    tm__db_bind_int(st, 1, n);
    tm__db_bind_text(st, 2, now, -1, SQLITE_STATIC);
    rc = tm__db_step(st);
    tm__db_finalize(st);
    return rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "record the pass");
}

int tm__q_pass_get(struct tm__db *db, int *n, char *started, size_t slen, char *ended,
                   size_t elen, struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc;
    *n = 1;
    started[0] = ended[0] = '\0';
    if (tm__db_prepare(db, "SELECT n, started, coalesce(ended, '') FROM passes "
                           "ORDER BY n DESC LIMIT 1", -1, &st, NULL) != SQLITE_OK)
        return tm__store_error(db, SQLITE_ERROR, err, "read the passes");
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        *n = tm__db_column_int(st, 0);
        snprintf(started, slen, "%s", (const char *)tm__db_column_text(st, 1));
        snprintf(ended, elen, "%s", (const char *)tm__db_column_text(st, 2));
        rc = SQLITE_DONE;
    }
    tm__db_finalize(st);
    return rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "read the passes");
}

/* One count. */
static int count(struct tm__db *db, const char *sql, int64_t *out, struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc;
    if (tm__db_prepare(db, sql, -1, &st, NULL) != SQLITE_OK)
        return tm__store_error(db, SQLITE_ERROR, err, "read the passes");
    rc = tm__db_step(st);
    *out = rc == SQLITE_ROW ? tm__db_column_int64(st, 0) : 0;
    tm__db_finalize(st);
    return rc == SQLITE_ROW ? 0 : tm__store_error(db, rc, err, "read the passes");
}

int tm__q_pass_changes(struct tm__db *db, struct tm__pass_changes *c,
                       struct tm__buf *err)
{
    int rc;
    memset(c, 0, sizeof *c);
    /* new and changed as review --list new|changed counts them: what is
     * excluded is not */
    rc = count(db, "SELECT count(*) FROM src_nodes AS n WHERE depth > 0 AND "
               "n.traversal_status != 'excluded' AND n.id >= " TM__PASS_ID0 " AND NOT "
               "EXISTS (SELECT 1 FROM prev_src_nodes AS p WHERE p.path = n.path)",
               &c->src_new, err);
    if (!rc)
        rc = count(db, "SELECT count(*) FROM src_nodes AS n JOIN prev_src_nodes AS p "
                   "ON p.path = n.path WHERE n.depth > 0 AND "
                   "n.traversal_status != 'excluded' AND (p.type != n.type OR "
                   "(n.type IN ('file', 'symlink') AND (p.size != n.size OR "
                   "p.mtime != n.mtime)))", &c->src_changed, err);
    if (!rc)
        rc = count(db, "SELECT count(*) FROM prev_src_nodes AS p WHERE NOT EXISTS "
                   "(SELECT 1 FROM src_nodes AS n WHERE n.path = p.path)",
                   &c->src_deleted, err);
    if (!rc)
        rc = count(db, "SELECT count(*) FROM dst_nodes AS d JOIN prev_src_nodes AS p "
                   "ON p.path = d.path WHERE d.depth > 0 AND p.copy_status IN "
                   "('successful', 'already_existed') AND (d.type != p.type OR "
                   "(d.type IN ('file', 'symlink') AND (d.size != p.size OR "
                   "d.mtime != p.mtime)))", &c->dst_changed, err);
    return rc;
}

int tm__q_pass_patterns(struct tm__db *db, struct tm__buf *out, struct tm__buf *err)
{
    struct tm__stmt *st = NULL;
    int rc;
    if (tm__db_prepare(db, "SELECT pattern FROM exclusions GROUP BY pattern "
                           "ORDER BY min(id)", -1, &st,
                           NULL) != SQLITE_OK)
        return tm__store_error(db, SQLITE_ERROR, err, "read the exclusions");
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        if ((out->len && tm__buf_addch(out, '\n')) ||
            tm__buf_adds(out, (const char *)tm__db_column_text(st, 0))) {
            rc = TM_ENOMEM;
            break;
        }
    }
    tm__db_finalize(st);
    if (rc == TM_ENOMEM)
        return rc;
    return rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "read the exclusions");
}
