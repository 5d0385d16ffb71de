/*
 * exclude.c - exclusions decided after discovery: tm_exclude (which also
 * includes them again) and tm__exclude_run (review_int.h), the same with a
 * dry run, for the web page's preview.
 *
 * Runs on the caller's thread through the handle's own connection; no
 * writer thread runs meanwhile. It writes, under the state file's lock
 * that tm_migration_open(TM_OPEN_WRITE) took, in one transaction.
 *
 * The bookkeeping of exclusions (tables exclusions and excluded_prev) is
 * documented in docs/state-file.md; docs/review.md is the user's page.
 */
#include "treemig.h"

#include "engine/engine.h"
#include "migration/migration_int.h"
#include "migration/review_int.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Steps st to its end (no rows expected); finalizes it. */
static int run_done(tm_migration *m, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : tm__rv_db_fail(m, rc, what);
    sqlite3_finalize(st);
    return rc;
}

/* --------------------------------------------------------------------------
 * Exclusions after discovery.
 *
 * Excluding a node N (an exclusion root) gives every row of its subtree
 * that is not excluded yet traversal 'excluded', copy 'excluded', no
 * conflict and no error, and does the same (traversal, conflict, error) to
 * the subtree of its destination twin; the previous values of each row go
 * to excluded_prev with root = N's id, N itself to exclusions. A subtree
 * that is already excluded (an earlier root, or a --exclude of discovery)
 * is left as it is. Including N again restores exactly the rows whose root
 * is N. The stats deltas are computed by grouping the rows before each
 * update, so every count stays exact.
 */

struct xctx {
    tm_migration *m;              /* the handle */
    sqlite3 *db;                  /* its connection */
    int unexclude;                /* include again */
    struct tm__stats_delta delta; /* stats changes, applied at the end */
    int64_t changed;              /* source rows changed */
    char now[32];                 /* time of this command */
};

/* Adds the stats changes of a group of rows: (count, bytes) leave the old
 * key and join the new one. */
static int move_stat(struct xctx *x, int table, int depth, const char *type,
                     const char *from, int from_cf, const char *to, int to_cf,
                     int64_t n, int64_t bytes)
{
    const char *const *names = table == 2 ? tm__cs_names : tm__ts_names;
    int count = table == 2 ? CS_COUNT : TS_COUNT;
    struct tm__stat_key k;
    int t = tm__name_index(tm__type_names, TM_T_COUNT, type);
    int a = tm__name_index(names, count, from), b = tm__name_index(names, count, to);
    int rc;
    if (t < 0 || a < 0 || b < 0)
        return tm__rv_fail(x->m, TM_ECORRUPT, "unknown type or status in the state file "
                           "(%s, %s, %s)", type ? type : "NULL", from ? from : "NULL",
                           to ? to : "NULL");
    k = (struct tm__stat_key){ table, depth, t, a, from_cf };
    rc = tm__stats_add(&x->delta, &k, -n, -bytes);
    k = (struct tm__stat_key){ table, depth, t, b, to_cf };
    return rc ? rc : tm__stats_add(&x->delta, &k, n, bytes);
}

/* Stats changes of excluding the rows of temp.tm_sub in a side's table. */
static int exclude_deltas(struct xctx *x, int side)
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
    int rc = tm__rv_prepare(x->m, sql[side], &st);
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int depth = sqlite3_column_int(st, 0);
        const char *type = (const char *)sqlite3_column_text(st, 1);
        const char *ts = (const char *)sqlite3_column_text(st, 2);
        int64_t n = sqlite3_column_int64(st, 5), bytes = sqlite3_column_int64(st, 6);
        rc = move_stat(x, side, depth, type, ts, 0, "excluded", 0, n, bytes);
        if (!rc && side == TM_SRC)
            rc = move_stat(x, 2, depth, type, (const char *)sqlite3_column_text(st, 3),
                           sqlite3_column_int(st, 4), "excluded", 0, n, bytes);
        if (rc)
            break;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = tm__rv_db_fail(x->m, rc, "count the rows to exclude");
    sqlite3_finalize(st);
    return rc;
}

/* Runs sql with ?1 bound to v (no rows). */
static int exec_id(struct xctx *x, const char *sql, int64_t v, const char *what)
{
    sqlite3_stmt *st;
    int rc = tm__rv_prepare(x->m, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, v);
    return run_done(x->m, st, what);
}

/* Fills temp.tm_sub with the subtree of id in a side's table, stopping at
 * rows that are excluded already (their subtrees are excluded too). */
static int fill_subtree(struct xctx *x, int side, int64_t id)
{
    static const char *const sql[2] = {
        "INSERT INTO temp.tm_sub(id) WITH RECURSIVE sub(id) AS (SELECT ?1"
        " UNION ALL SELECT c.id FROM src_nodes AS c JOIN sub ON c.parent_id = sub.id"
        " WHERE c.traversal_status != 'excluded') SELECT id FROM sub",
        "INSERT INTO temp.tm_sub(id) WITH RECURSIVE sub(id) AS (SELECT ?1"
        " UNION ALL SELECT c.id FROM dst_nodes AS c JOIN sub ON c.parent_id = sub.id"
        " WHERE c.traversal_status != 'excluded') SELECT id FROM sub",
    };
    int rc = tm__store_exec(x->db, "DELETE FROM temp.tm_sub", tm__migration_err(x->m));
    return rc ? rc : exec_id(x, sql[side], id, "find the subtree");
}

/* Excludes the source node id (path, not excluded) and its subtree, and
 * the subtree of its destination twin. */
static int exclude_root(struct xctx *x, int64_t id, const char *path,
                        const char *pattern)
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
    sqlite3_stmt *st;
    int64_t twin = 0;
    int rc, side;

    rc = fill_subtree(x, TM_SRC, id);
    if (rc)
        return rc;
    /* refused once the copy has started anywhere in the subtree */
    rc = tm__rv_prepare(x->m, "SELECT n.path, n.copy_status FROM temp.tm_sub AS s"
                        " CROSS JOIN src_nodes AS n ON n.id = s.id WHERE n.copy_status IN"
                        " ('in_progress', 'successful', 'failed') LIMIT 1", &st);
    if (rc)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        struct tm__buf p = TM__BUF_INIT, q = TM__BUF_INIT;
        const char *np = (const char *)sqlite3_column_text(st, 0);
        tm__rv_add_escaped(&p, path, strlen(path));
        tm__rv_add_escaped(&q, np ? np : "", np ? (size_t)sqlite3_column_bytes(st, 0) : 0);
        rc = tm__rv_fail(x->m, TM_EPHASE, "cannot exclude %s: the copy has started there "
                         "(%s is %s)", p.buf, q.buf, (const char *)sqlite3_column_text(st, 1));
        tm__buf_release(&p);
        tm__buf_release(&q);
    } else {
        rc = rc == SQLITE_DONE ? 0 : tm__rv_db_fail(x->m, rc, "check the copy");
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;

    for (side = 0; side < 2 && !rc; side++) {
        if (side == TM_DST) {
            sqlite3_stmt *t;
            rc = tm__rv_find_node(x->m, TM_DST, path, &twin);
            if (rc == TM_ENOENT) {
                rc = 0;
                break; /* no twin: missing on the destination */
            }
            if (!rc)
                rc = tm__rv_prepare(x->m, "SELECT traversal_status FROM dst_nodes "
                                    "WHERE id = ?1", &t);
            if (rc)
                break;
            sqlite3_bind_int64(t, 1, twin);
            rc = sqlite3_step(t);
            if (rc == SQLITE_ROW) {
                const char *ts = (const char *)sqlite3_column_text(t, 0);
                rc = ts && !strcmp(ts, "excluded") ? 1 : 0;
            } else {
                rc = tm__rv_db_fail(x->m, rc, "read the destination twin");
            }
            sqlite3_finalize(t);
            if (rc == 1) {
                rc = 0;
                break; /* excluded already */
            }
            if (!rc)
                rc = fill_subtree(x, TM_DST, twin);
            if (rc)
                break;
        }
        rc = exclude_deltas(x, side);
        if (!rc)
            rc = exec_id(x, save[side], id, "record the previous statuses");
        if (!rc)
            rc = exec_id(x, update[side], id, "exclude");
        if (!rc && side == TM_SRC)
            x->changed += sqlite3_changes(x->db);
    }
    if (rc)
        return rc;
    rc = tm__rv_prepare(x->m, "INSERT INTO exclusions(id, path, pattern, time) "
                        "VALUES(?1, ?2, ?3, ?4)", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, pattern, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, x->now, -1, SQLITE_STATIC);
    return run_done(x->m, st, "record the exclusion");
}

/* Includes again the rows excluded with root id (both sides). */
static int include_root(struct xctx *x, int64_t id)
{
    static const char *const group[2] = {
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
    int side, rc = 0;

    for (side = 0; side < 2 && !rc; side++) {
        sqlite3_stmt *st;
        rc = tm__rv_prepare(x->m, group[side], &st);
        if (rc)
            break;
        sqlite3_bind_int64(st, 1, id);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int depth = sqlite3_column_int(st, 0);
            const char *type = (const char *)sqlite3_column_text(st, 1);
            int64_t n = sqlite3_column_int64(st, 8), bytes = sqlite3_column_int64(st, 9);
            rc = move_stat(x, side, depth, type,
                           (const char *)sqlite3_column_text(st, 2), 0,
                           (const char *)sqlite3_column_text(st, 5), 0, n, bytes);
            if (!rc && side == TM_SRC)
                rc = move_stat(x, 2, depth, type,
                               (const char *)sqlite3_column_text(st, 3),
                               sqlite3_column_int(st, 4),
                               (const char *)sqlite3_column_text(st, 6),
                               sqlite3_column_int(st, 7), n, bytes);
            if (rc)
                break;
        }
        if (rc == SQLITE_DONE)
            rc = 0;
        else if (rc > 0)
            rc = tm__rv_db_fail(x->m, rc, "count the rows to include");
        sqlite3_finalize(st);
        if (!rc)
            rc = exec_id(x, update[side], id, "include again");
        if (!rc && side == TM_SRC)
            x->changed += sqlite3_changes(x->db);
    }
    if (!rc)
        rc = exec_id(x, "DELETE FROM excluded_prev WHERE root = ?1", id,
                     "forget the previous statuses");
    if (!rc)
        rc = exec_id(x, "DELETE FROM exclusions WHERE id = ?1", id,
                     "forget the exclusion");
    return rc;
}

/* The path and pattern of the exclusion root of the source row id, into
 * out ("'/a' (pattern '/a')"), escaped for a message. */
static void describe_root(struct xctx *x, int64_t id, struct tm__buf *out)
{
    sqlite3_stmt *st;
    tm__buf_reset(out);
    if (sqlite3_prepare_v2(x->db, "SELECT x.path, x.pattern FROM excluded_prev AS e"
                           " JOIN exclusions AS x ON x.id = e.root"
                           " WHERE e.side = 'src' AND e.id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *p = (const char *)sqlite3_column_text(st, 0);
        const char *g = (const char *)sqlite3_column_text(st, 1);
        tm__buf_addch(out, '\'');
        tm__rv_add_escaped(out, p ? p : "", p ? strlen(p) : 0);
        tm__buf_adds(out, "' (pattern '");
        tm__rv_add_escaped(out, g ? g : "", g ? strlen(g) : 0);
        tm__buf_adds(out, "')");
    }
    sqlite3_finalize(st);
}

/* Handles one matched source node (by depth, so ancestors come first). */
static int apply_match(struct xctx *x, int64_t id, const char *pattern)
{
    struct tm__buf path = TM__BUF_INIT, why = TM__BUF_INIT, p = TM__BUF_INIT;
    sqlite3_stmt *st;
    int64_t parent = 0, root = 0;
    int excluded, has_prev = 0, parent_excluded = 0, rc;

    rc = tm__rv_prepare(x->m, "SELECT n.path, n.traversal_status = 'excluded', n.parent_id,"
                        " (SELECT traversal_status = 'excluded' FROM src_nodes"
                        " WHERE id = n.parent_id) FROM src_nodes AS n WHERE n.id = ?1", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = tm__rv_db_fail(x->m, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "read a node");
        sqlite3_finalize(st);
        return rc;
    }
    rc = tm__buf_add(&path, sqlite3_column_text(st, 0),
                     (size_t)sqlite3_column_bytes(st, 0));
    excluded = sqlite3_column_int(st, 1);
    parent = sqlite3_column_int64(st, 2);
    parent_excluded = sqlite3_column_int(st, 3);
    sqlite3_finalize(st);
    if (rc)
        goto out;

    if (!x->unexclude) {
        if (!excluded) /* else excluded already, by itself or an ancestor */
            rc = exclude_root(x, id, path.buf, pattern);
        goto out;
    }
    if (!excluded)
        goto out; /* included already (perhaps by an ancestor just now) */
    rc = tm__rv_prepare(x->m, "SELECT root FROM excluded_prev WHERE side = 'src' AND id = ?1",
                        &st);
    if (rc)
        goto out;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        has_prev = 1;
        root = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? 0 : tm__rv_db_fail(x->m, rc, "read the exclusion");
    }
    sqlite3_finalize(st);
    if (rc)
        goto out;
    tm__rv_add_escaped(&p, path.buf, path.len);
    if (!has_prev) {
        rc = tm__rv_fail(x->m, TM_EPHASE, "cannot include %s again: it was excluded by "
                         "discovery (--exclude), which never listed its contents; run a "
                         "new discovery without that --exclude to include it", p.buf);
    } else if (root != id) {
        describe_root(x, id, &why);
        rc = tm__rv_fail(x->m, TM_EPHASE, "cannot include %s again on its own: it is "
                         "excluded because %s is; unexclude that instead", p.buf,
                         why.len ? why.buf : "an ancestor");
    } else if (parent_excluded) {
        describe_root(x, parent, &why);
        rc = tm__rv_fail(x->m, TM_EPHASE, "cannot include %s again: its folder is "
                         "excluded%s%s; unexclude that first", p.buf,
                         why.len ? " because of " : "", why.buf);
    } else {
        rc = include_root(x, id);
    }
out:
    tm__buf_release(&path);
    tm__buf_release(&why);
    tm__buf_release(&p);
    return rc;
}

/* 1 when a proper ancestor of path (not the root) matches the glob: the
 * exclusion of that ancestor covers the node. tmp is scratch space. */
static int ancestor_matches(const char *glob, const char *path, struct tm__buf *tmp)
{
    tm__buf_reset(tmp);
    if (tm__buf_adds(tmp, path))
        return 0; /* no memory: not skipping is slower, never wrong */
    for (;;) {
        char *slash = strrchr(tmp->buf, '/');
        if (!slash || slash == tmp->buf)
            return 0;
        tm__buf_setlen(tmp, (size_t)(slash - tmp->buf));
        if (tm__filter_match(&glob, 1, tmp->buf, strrchr(tmp->buf, '/') + 1))
            return 1;
    }
}

/* Collects the source nodes a pattern matches into temp.tm_match (only the
 * ones whose state would change and, for an exclusion, that no matching
 * ancestor covers); *n gets every match. */
static int collect(struct xctx *x, const char *pattern, int64_t *n)
{
    sqlite3_stmt *st = NULL, *ins = NULL;
    struct tm__buf tmp = TM__BUF_INIT;
    const char *want = x->unexclude ? "excluded" : NULL;
    int rc, glob = !(pattern[0] == '/' && !strpbrk(pattern, "*?[\\"));

    *n = 0;
    rc = tm__rv_prepare(x->m, "INSERT OR IGNORE INTO temp.tm_match(id, depth) "
                        "VALUES(?1, ?2)", &ins);
    if (rc)
        return rc;
    if (!glob) {
        /* a plain path: a few index lookups */
        int64_t id;
        rc = tm__rv_find_node(x->m, TM_SRC, pattern, &id);
        if (rc == TM_ENOENT) {
            rc = 0;
            goto out;
        }
        if (!rc)
            rc = tm__rv_prepare(x->m, "SELECT id, depth, traversal_status FROM src_nodes "
                                "WHERE id = ?1", &st);
        if (!rc)
            sqlite3_bind_int64(st, 1, id);
    } else {
        /* a glob: every row, matched as discovery matches --exclude */
        rc = tm__rv_prepare(x->m, "SELECT id, depth, traversal_status, path, name FROM "
                            "src_nodes WHERE depth > 0", &st);
    }
    if (rc)
        goto out;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *ts = (const char *)sqlite3_column_text(st, 2);
        int is_excl = ts && !strcmp(ts, "excluded");
        if (glob) {
            const char *path = (const char *)sqlite3_column_text(st, 3);
            const char *name = (const char *)sqlite3_column_text(st, 4);
            if (!path || !name ||
                !tm__filter_match(&pattern, 1, path, name))
                continue;
        }
        if (sqlite3_column_int(st, 1) <= 0)
            continue; /* the root: refused earlier, never matched here */
        ++*n;
        if (want ? !is_excl : is_excl)
            continue; /* nothing to change */
        if (glob && !x->unexclude &&
            ancestor_matches(pattern, (const char *)sqlite3_column_text(st, 3), &tmp))
            continue;
        sqlite3_bind_int64(ins, 1, sqlite3_column_int64(st, 0));
        sqlite3_bind_int(ins, 2, sqlite3_column_int(st, 1));
        if (sqlite3_step(ins) != SQLITE_DONE) {
            rc = tm__rv_db_fail(x->m, sqlite3_errcode(x->db), "collect the matches");
            break;
        }
        sqlite3_reset(ins);
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = tm__rv_db_fail(x->m, rc, "find the matches");
out:
    sqlite3_finalize(st);
    sqlite3_finalize(ins);
    tm__buf_release(&tmp);
    return rc;
}

/* Checks and normalizes a pattern: no newline; a pattern with a '/' starts
 * at the root and loses its trailing '/'; the root itself is refused. */
static int check_pattern(tm_migration *m, const char *p, struct tm__buf *out)
{
    size_t len;
    tm__buf_reset(out);
    if (!*p || strchr(p, '\n'))
        return tm__rv_fail(m, TM_EINVAL, "a pattern must be non-empty and hold no newline");
    if (tm__buf_adds(out, p))
        return TM_ENOMEM;
    len = out->len;
    while (len > 1 && out->buf[len - 1] == '/')
        len--;
    tm__buf_setlen(out, len);
    if (!strcmp(out->buf, "/"))
        return tm__rv_fail(m, TM_EINVAL, "the root cannot be excluded");
    if (strchr(out->buf, '/') && out->buf[0] != '/')
        return tm__rv_fail(m, TM_EINVAL, "'%s' holds a '/' but does not start with one: "
                           "paths start at the root ('/%s')", out->buf, out->buf);
    return 0;
}

/* Phases where exclusions may change: discovery complete, copy not. */
static int check_phase(struct xctx *x)
{
    struct tm__buf phase = TM__BUF_INIT, from = TM__BUF_INIT;
    enum tm__phase ph;
    int rc = 0;
    const char *what = x->unexclude ? "unexclude" : "exclude";
    if (tm__store_get(x->db, "phase", &phase) != 0) {
        rc = tm__rv_fail(x->m, TM_ENODB, "the state file %s records no migration",
                         tm__migration_path(x->m));
        goto out;
    }
    tm__rv_setting(x->db, "suspended_from", &from);
    ph = tm__phase_parse(phase.buf);
    if (ph == PH_DISCOVERED || ph == PH_COPYING ||
        (ph == PH_SUSPENDED && tm__phase_parse(from.buf) == PH_COPYING))
        goto out;
    if (ph == PH_COPIED || ph == PH_VERIFIED)
        rc = tm__rv_fail(x->m, TM_EPHASE, "cannot %s: the copy is complete (phase %s)",
                         what, phase.buf);
    else
        rc = tm__rv_fail(x->m, TM_EPHASE, "cannot %s: discovery is not complete (phase "
                         "%s%s%s); finish it with 'treemig discover' first", what,
                  phase.buf, from.len ? ", from " : "", from.buf);
out:
    tm__buf_release(&phase);
    tm__buf_release(&from);
    return rc;
}

/* Records the patterns of the exclusions in force (setting review_excludes,
 * one per line, first use first) and a log line. */
static int record(struct xctx *x, const char *const *patterns, size_t n)
{
    struct tm__buf v = TM__BUF_INIT, msg = TM__BUF_INIT;
    sqlite3_stmt *st;
    size_t i;
    int rc = tm__rv_prepare(x->m, "SELECT pattern FROM exclusions GROUP BY pattern "
                            "ORDER BY min(time), min(rowid)", &st);
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((v.len && tm__buf_addch(&v, '\n')) ||
            tm__buf_adds(&v, (const char *)sqlite3_column_text(st, 0))) {
            rc = TM_ENOMEM;
            break;
        }
    }
    if (rc != TM_ENOMEM)
        rc = rc == SQLITE_DONE ? 0 : tm__rv_db_fail(x->m, rc, "read exclusions");
    sqlite3_finalize(st);
    if (!rc)
        rc = tm__store_set(x->db, "review_excludes", v.buf);
    if (!rc)
        rc = tm__buf_addf(&msg, "%s: %" PRId64 " source rows changed, patterns:",
                          x->unexclude ? "unexclude" : "exclude", x->changed);
    for (i = 0; !rc && i < n; i++)
        rc = tm__buf_addf(&msg, " '%s'", patterns[i]);
    if (!rc)
        rc = tm__rv_prepare(x->m, "INSERT INTO logs(time, level, queue, message) "
                            "VALUES(?1, 'info', 'review', ?2)", &st);
    if (!rc) {
        sqlite3_bind_int64(st, 1, tm__wall_ns());
        sqlite3_bind_text(st, 2, msg.buf, (int)msg.len, SQLITE_STATIC);
        rc = run_done(x->m, st, "write the log");
    }
    tm__buf_release(&v);
    tm__buf_release(&msg);
    return rc;
}

int tm__exclude_run(tm_migration *m, const char *const *patterns, size_t n,
                    int unexclude, int dry_run, struct tm__exclude_effect *eff)
{
    struct xctx x;
    struct tm__buf *pats = NULL;
    const char **norm = NULL;
    sqlite3_stmt *page = NULL;
    size_t i;
    int rc = 0, began = 0;

    if (eff)
        memset(eff, 0, sizeof *eff);
    memset(&x, 0, sizeof x);
    x.m = m;
    x.db = tm__migration_db(m);
    x.unexclude = unexclude;
    if (!x.db)
        return TM_EINVAL;
    tm__buf_reset(tm__migration_err(m));
    if (tm__migration_readonly(m))
        return tm__rv_fail(m, TM_EINVAL, "the state file is open read-only");
    if (!n || !patterns)
        return tm__rv_fail(m, TM_EINVAL, "no pattern given");
    pats = calloc(n, sizeof *pats);
    norm = calloc(n, sizeof *norm);
    if (!pats || !norm) {
        rc = TM_ENOMEM;
        goto out;
    }
    for (i = 0; i < n && !rc; i++) {
        tm__buf_init(&pats[i]);
        rc = check_pattern(m, patterns[i], &pats[i]);
        norm[i] = pats[i].buf;
    }
    if (rc)
        goto out;
    tm__iso_time(x.now, tm__wall_ns());

    rc = tm__store_begin(x.db, tm__migration_err(m));
    if (rc)
        goto out;
    began = 1;
    rc = tm__store_exec(x.db, tm__review_schema_sql, tm__migration_err(m));
    if (!rc)
        rc = check_phase(&x);
    if (!rc)
        rc = tm__store_exec(x.db,
                            "CREATE TEMP TABLE IF NOT EXISTS tm_match(id INTEGER"
                            " PRIMARY KEY, depth INTEGER NOT NULL);"
                            "CREATE INDEX IF NOT EXISTS temp.tm_match_depth ON"
                            " tm_match(depth, id);"
                            "CREATE TEMP TABLE IF NOT EXISTS tm_sub(id INTEGER"
                            " PRIMARY KEY);",
                            tm__migration_err(m));
    if (rc)
        goto out;

    for (i = 0; i < n; i++) {
        int64_t count;
        rc = tm__store_exec(x.db, "DELETE FROM temp.tm_match", tm__migration_err(m));
        if (!rc)
            rc = collect(&x, norm[i], &count);
        if (rc)
            goto out;
        if (!count) {
            struct tm__buf p = TM__BUF_INIT;
            tm__rv_add_escaped(&p, norm[i], strlen(norm[i]));
            rc = tm__rv_fail(m, TM_EINVAL, "no source node matches '%s'%s", p.buf,
                             strchr(norm[i], '/') ? "" : " (a name anywhere in the tree)");
            tm__buf_release(&p);
            goto out;
        }
        /* ancestors first: depth by depth, in keyset pages of ids (an
         * ancestor excluded or included first settles its whole subtree) */
        {
            sqlite3_stmt *next = NULL;
            int64_t depth = -1, last_id = 0;
            rc = tm__rv_prepare(m, "SELECT id FROM temp.tm_match WHERE depth = ?1 AND "
                                "id > ?2 ORDER BY id LIMIT 256", &page);
            if (!rc)
                rc = tm__rv_prepare(m, "SELECT min(depth) FROM temp.tm_match WHERE "
                                    "depth > ?1", &next);
            while (!rc) {
                int64_t ids[256];
                int k = 0, j, step;
                if (last_id == 0) { /* the next depth that holds matches */
                    sqlite3_bind_int64(next, 1, depth);
                    step = sqlite3_step(next);
                    if (step != SQLITE_ROW) {
                        rc = tm__rv_db_fail(m, step, "read the matches");
                        break;
                    }
                    if (sqlite3_column_type(next, 0) == SQLITE_NULL) {
                        sqlite3_reset(next);
                        break; /* done */
                    }
                    depth = sqlite3_column_int64(next, 0);
                    sqlite3_reset(next);
                    /* drop the matches that the shallower ones settled */
                    rc = exec_id(&x, x.unexclude
                                 ? "DELETE FROM temp.tm_match WHERE depth = ?1 AND"
                                   " (SELECT traversal_status FROM src_nodes AS n"
                                   " WHERE n.id = tm_match.id) != 'excluded'"
                                 : "DELETE FROM temp.tm_match WHERE depth = ?1 AND"
                                   " (SELECT traversal_status FROM src_nodes AS n"
                                   " WHERE n.id = tm_match.id) = 'excluded'",
                                 depth, "read the matches");
                    if (rc)
                        break;
                }
                sqlite3_bind_int64(page, 1, depth);
                sqlite3_bind_int64(page, 2, last_id);
                while (k < 256 && (step = sqlite3_step(page)) == SQLITE_ROW)
                    ids[k++] = sqlite3_column_int64(page, 0);
                if (k < 256 && step != SQLITE_DONE) {
                    rc = tm__rv_db_fail(m, step, "read the matches");
                    break;
                }
                sqlite3_reset(page);
                for (j = 0; j < k && !rc; j++)
                    rc = apply_match(&x, ids[j], norm[i]);
                last_id = k == 256 ? ids[k - 1] : 0;
            }
            sqlite3_finalize(next);
            sqlite3_finalize(page);
            page = NULL;
            if (rc)
                goto out;
        }
    }
    if (eff && x.delta.n) {
        /* what the change does, for the caller (applying empties it) */
        eff->delta.rows = malloc(x.delta.n * sizeof *x.delta.rows);
        if (!eff->delta.rows) {
            rc = TM_ENOMEM;
            goto out;
        }
        memcpy(eff->delta.rows, x.delta.rows, x.delta.n * sizeof *x.delta.rows);
        eff->delta.n = eff->delta.alloc = x.delta.n;
    }
    rc = tm__stats_apply(x.db, &x.delta);
    if (rc) {
        tm__rv_db_fail(m, sqlite3_errcode(x.db), "update the stats");
        goto out;
    }
    rc = record(&x, norm, n);
    if (!rc)
        rc = tm__store_exec(x.db, dry_run ? "ROLLBACK" :
                            "DELETE FROM temp.tm_match; DELETE FROM "
                            "temp.tm_sub; COMMIT", tm__migration_err(m));
    if (!rc)
        began = 0;
out:
    sqlite3_finalize(page);
    if (began) {
        /* keep the first message: the rollback cannot fail in a way that
         * matters, and it also drops the temporary tables */
        tm__store_rollback(x.db);
    }
    if (eff && !rc)
        eff->changed = x.changed;
    else if (eff)
        tm__stats_release(&eff->delta);
    tm__stats_release(&x.delta);
    for (i = 0; pats && i < n; i++)
        tm__buf_release(&pats[i]);
    free(pats);
    free(norm);
    if (rc == TM_ENOMEM && !tm__migration_err(m)->len)
        tm__rv_fail(m, rc, "not enough memory to %s", unexclude ? "unexclude" : "exclude");
    else if (rc && !tm__migration_err(m)->len)
        tm__rv_fail(m, rc, "%s", tm_strerror(rc));
    return rc;
}

int tm_exclude(tm_migration *m, const char *const *patterns, size_t n,
               int unexclude, int64_t *changed)
{
    struct tm__exclude_effect eff;
    int rc = tm__exclude_run(m, patterns, n, unexclude, 0, &eff);
    if (changed)
        *changed = rc ? 0 : eff.changed;
    tm__stats_release(&eff.delta);
    return rc;
}
