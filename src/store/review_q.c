/*
 * review_q.c - the SQL of the review (review_q.h): read transactions,
 * paths in the trees, stats sums, the scan of what is pending or in
 * conflict, the rows of the listings. Read only; caller's thread, on the
 * handle's connection.
 */
#include "store/review_q.h"
#include "store/pass_q.h"

#include "store/store.h"
#include "treemig.h"

#include <stdio.h>
#include <string.h>

static const char *const side_table[2] = { "src_nodes", "dst_nodes" };

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

int tm__q_table_exists(struct tm__db *db, const char *name)
{
    struct tm__stmt *st;
    int found = 0;
    if (tm__db_prepare(db, "SELECT 1 FROM sqlite_master WHERE type = 'table'"
                           " AND name = ?", -1, &st, NULL) != SQLITE_OK)
        return 0;
    tm__db_bind_text(st, 1, name, -1, SQLITE_STATIC);
    found = tm__db_step(st) == SQLITE_ROW;
    tm__db_finalize(st);
    return found;
}

int tm__q_begin_read(struct tm__db *db)
{
    return tm__db_get_autocommit(db) &&
           tm__db_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
}

void tm__q_end_read(struct tm__db *db, int began)
{
    if (began)
        tm__db_exec(db, "COMMIT", NULL, NULL, NULL);
}

int tm__q_find_node(struct tm__db *db, int side, const char *path, int64_t *id,
                    struct tm__buf *err)
{
    struct tm__buf sql = TM__BUF_INIT;
    struct tm__stmt *root = NULL, *child = NULL;
    const char *p = path;
    int rc;

    if (tm__buf_addf(&sql, "SELECT id FROM %s WHERE parent_id IS NULL",
                     side_table[side]))
        return TM_ENOMEM;
    rc = prepare(db, sql.buf, &root, err);
    if (rc)
        goto out;
    rc = tm__db_step(root);
    if (rc != SQLITE_ROW) {
        rc = rc == SQLITE_DONE ? TM_ENOENT : tm__store_error(db, rc, err, "find a path");
        goto out;
    }
    *id = tm__db_column_int64(root, 0);
    tm__buf_reset(&sql);
    if (tm__buf_addf(&sql, "SELECT id FROM %s WHERE parent_id = ?1 AND name = ?2",
                     side_table[side])) {
        rc = TM_ENOMEM;
        goto out;
    }
    rc = prepare(db, sql.buf, &child, err);
    while (!rc && *p) {
        const char *name, *end;
        while (*p == '/')
            p++;
        if (!*p)
            break;
        name = p;
        end = strchr(p, '/');
        if (!end)
            end = p + strlen(p);
        tm__db_bind_int64(child, 1, *id);
        tm__db_bind_text(child, 2, name, (int)(end - name), SQLITE_STATIC);
        rc = tm__db_step(child);
        if (rc == SQLITE_ROW) {
            *id = tm__db_column_int64(child, 0);
            rc = 0;
        } else {
            rc = rc == SQLITE_DONE ? TM_ENOENT : tm__store_error(db, rc, err, "find a path");
        }
        tm__db_reset(child);
        p = end;
    }
out:
    tm__db_finalize(root);
    tm__db_finalize(child);
    tm__buf_release(&sql);
    return rc;
}

int tm__q_review_sums(struct tm__db *db, int table,
                      void (*row)(void *ctx, const char *status, int conflict,
                                  const char *type, int64_t count, int64_t bytes),
                      void *ctx, struct tm__buf *err)
{
    static const char *const sql[] = {
        "SELECT copy_status, conflict, type, sum(count), sum(bytes) FROM "
        "copy_stats WHERE depth > 0 GROUP BY 1, 2, 3",
        "SELECT traversal_status, 0, type, sum(count), sum(bytes) FROM "
        "src_stats WHERE depth > 0 GROUP BY 1, 3",
        "SELECT traversal_status, 0, type, sum(count), sum(bytes) FROM "
        "dst_stats WHERE depth > 0 GROUP BY 1, 3",
    };
    struct tm__stmt *st;
    int rc = prepare(db, sql[table], &st, err);
    if (rc)
        return rc;
    while ((rc = tm__db_step(st)) == SQLITE_ROW)
        row(ctx, (const char *)tm__db_column_text(st, 0),
            tm__db_column_int(st, 1) ? 1 : 0, (const char *)tm__db_column_text(st, 2),
            tm__db_column_int64(st, 3), tm__db_column_int64(st, 4));
    rc = rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "read the state file");
    tm__db_finalize(st);
    return rc;
}

int tm__q_excluded_by_review(struct tm__db *db, int64_t *n, struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc;
    *n = 0;
    if (!tm__q_table_exists(db, "excluded_prev"))
        return 0;
    rc = prepare(db, "SELECT count(*) FROM excluded_prev WHERE side = 'src'", &st, err);
    if (!rc) {
        if (tm__db_step(st) == SQLITE_ROW)
            *n = tm__db_column_int64(st, 0);
        tm__db_finalize(st);
    }
    return rc;
}

int tm__q_link_groups(struct tm__db *db, int64_t out[3], struct tm__buf *err)
{
    struct tm__stmt *st;
    int i;
    (void)err;
    out[0] = out[1] = out[2] = 0;
    /* read in the order of the (dev, ino) index, one group at a time; a
     * state file not yet upgraded to v5 has no inodes: no groups */
    if (tm__db_prepare(db, "SELECT count(*), sum(n), sum(split) FROM (SELECT "
                           "count(*) AS n, max(CASE WHEN copy_status = 'excluded' "
                           "THEN 1 ELSE 0 END) * max(CASE WHEN copy_status != "
                           "'excluded' THEN 1 ELSE 0 END) AS split FROM src_nodes "
                           "WHERE ino IS NOT NULL AND type = 'file' GROUP BY dev, "
                           "ino HAVING count(*) > 1) AS g", -1, &st, NULL) != SQLITE_OK)
        return 0;
    if (tm__db_step(st) == SQLITE_ROW)
        for (i = 0; i < 3; i++)
            out[i] = tm__db_column_int64(st, i);
    tm__db_finalize(st);
    return 0;
}

int tm__q_scan_pending(struct tm__db *db,
                       int (*row)(void *ctx, const struct tm__q_pending_row *r),
                       void *ctx, struct tm__buf *err)
{
    struct tm__stmt *st;
    int rc = prepare(db, "SELECT parent_id, type = 'file', size, copy_status = "
                     "'pending', conflict, type FROM src_nodes WHERE depth > 0 AND "
                     "(copy_status = 'pending' OR conflict IS NOT NULL)", &st, err);
    if (rc)
        return rc;
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        struct tm__q_pending_row r;
        r.parent_id = tm__db_column_int64(st, 0);
        r.is_file = tm__db_column_int(st, 1);
        r.size = tm__db_column_int64(st, 2);
        r.pending = tm__db_column_int(st, 3);
        r.conflict = tm__db_column_type(st, 4) != SQLITE_NULL
                         ? (const char *)tm__db_column_text(st, 4) : NULL;
        r.type = (const char *)tm__db_column_text(st, 5);
        rc = row(ctx, &r);
        if (rc)
            break;
    }
    if (rc >= 0)
        rc = rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "read the state file");
    tm__db_finalize(st);
    return rc;
}

int tm__q_folders(struct tm__db *db, const int64_t *ids, size_t n,
                  int (*row)(void *ctx, size_t i, const char *path, size_t len,
                             int is_new),
                  void *ctx, struct tm__buf *err)
{
    struct tm__stmt *st;
    size_t i;
    int rc = prepare(db, "SELECT path, copy_status = 'pending' AND conflict IS NULL "
                     "FROM src_nodes WHERE id = ?1", &st, err);
    for (i = 0; !rc && i < n; i++) {
        tm__db_bind_int64(st, 1, ids[i]);
        rc = tm__db_step(st);
        if (rc != SQLITE_ROW) {
            rc = tm__store_error(db, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, err,
                                 "read a folder");
            break;
        }
        rc = row(ctx, i, (const char *)tm__db_column_text(st, 0),
                 (size_t)tm__db_column_bytes(st, 0), tm__db_column_int(st, 1));
        tm__db_reset(st);
    }
    tm__db_finalize(st);
    return rc;
}

/* The SQL of each kind of tm__q_kinds, in the same order. */
static const struct {
    const char *where;  /* condition on the row n */
    const char *reason; /* the reason column; NULL: excluded (computed) */
} kind_sql[] = {
    { "n.copy_status = 'pending' AND n.conflict IS NULL", "NULL" },
    { "n.conflict IS NOT NULL", "n.conflict" },
    { "n.conflict = 'attrs'", "n.conflict" },
    { "n.traversal_status = 'not_on_src'", "NULL" },
    { "(n.traversal_status = 'failed' OR n.copy_status = 'failed')", "n.error" },
    { "n.traversal_status = 'failed'", "n.error" },
    { "n.traversal_status = 'excluded'", NULL },
    { "n.copy_status = 'skipped'",
      "coalesce(n.error, n.conflict, CASE WHEN n.type = 'other' THEN "
      "'special file' END)" },
    /* the passes (treemig rescan): against the previous pass's source
     * (what is excluded is not the copy's business: listed as excluded) */
    { "n.traversal_status != 'excluded' AND n.id >= " TM__PASS_ID0 " AND NOT "
      "EXISTS (SELECT 1 FROM prev_src_nodes AS p WHERE p.path = n.path)",
      "'new since the previous pass'" },
    { "n.traversal_status != 'excluded' AND "
      "EXISTS (SELECT 1 FROM prev_src_nodes AS p WHERE p.path = n.path AND "
      "(p.type != n.type OR (n.type IN ('file', 'symlink') AND (p.size != "
      "n.size OR p.mtime != n.mtime))))", "'changed since the previous pass'" },
    { "EXISTS (SELECT 1 FROM prev_src_nodes AS p WHERE p.path = n.path AND "
      "p.copy_status IN ('successful', 'already_existed') AND (p.type != n.type "
      "OR (n.type IN ('file', 'symlink') AND (p.size != n.size OR p.mtime != "
      "n.mtime))))", "'changed on the destination since the previous pass'" },
    /* what the copy did: created, replaced or its attributes set */
    { "n.copy_status = 'successful'",
      "CASE WHEN n.conflict IS NULL THEN 'created' WHEN n.conflict = 'attrs' "
      "THEN 'attrs' ELSE 'replaced' END" },
    /* the copy's plan (copy --dry-run) */
    { "n.copy_status = 'pending' AND n.conflict IS NULL", "NULL" },
    { "n.copy_status = 'pending' AND n.conflict IN ('size', 'mtime', "
      "'dst_newer', 'content')", "n.conflict" },
    { "n.copy_status = 'pending' AND n.conflict = 'attrs'", "n.conflict" },
};

const struct tm__q_kind tm__q_kinds[] = {
    { "missing", TM_SRC, 0 },
    { "conflict", TM_SRC, 0 },
    /* the conflicts 'attrs' alone: same content, another mode or owner */
    { "attrs", TM_SRC, 1 },
    { "extra", TM_DST, 0 },
    { "failed", TM_SRC, 0 },
    { "failed", TM_DST, 0 },
    { "excluded", TM_SRC, 0 },
    /* never copied: special files, type clashes, nodes the copy passed by */
    { "skipped", TM_SRC, 0 },
    /* what changed since the previous pass (empty in the first pass) */
    { "new", TM_SRC, 1 },
    { "changed", TM_SRC, 1 },
    { "edited", TM_DST, 1 },
    /* what the copy did (reason created, replaced, attrs): not a finding */
    { "copied", TM_SRC, 1 },
    /* the copy's plan: what it would create, replace, set attributes of */
    { "create", TM_SRC, 2 },
    { "replace", TM_SRC, 2 },
    { "set-attrs", TM_SRC, 2 },
};

const size_t tm__q_n_kinds = sizeof tm__q_kinds / sizeof *tm__q_kinds;

_Static_assert(sizeof kind_sql / sizeof *kind_sql ==
               sizeof tm__q_kinds / sizeof *tm__q_kinds, "a kind without its SQL");

/* The destination twin of a source conflict row: where the twin's
 * folder was found last (conflicts come in folders). */
struct dst_twin {
    struct tm__stmt *child;   /* a child of a destination folder by name */
    int64_t src_parent;    /* the source folder last looked up, 0: none */
    int64_t dst_parent;    /* its destination twin, 0: none */
    struct tm__buf dir;    /* scratch: the folder's path */
};

/* Fills the dst_* fields of r, the source row at path (named name, in
 * folder parent). 0, or an error. */
static int find_twin(struct tm__db *db, struct dst_twin *t, struct tm__q_list_row *r,
                     int64_t parent, const char *name, int name_len,
                     struct tm__buf *err)
{
    int rc;
    r->dst = 0;
    if (parent != t->src_parent) {
        const char *slash = memrchr(r->path, '/', r->path_len);
        size_t len = slash ? (size_t)(slash - r->path) : 0;
        tm__buf_reset(&t->dir);
        if (tm__buf_add(&t->dir, r->path, len) || tm__buf_adds(&t->dir, len ? "" : "/"))
            return TM_ENOMEM;
        t->src_parent = parent;
        rc = tm__q_find_node(db, TM_DST, t->dir.buf, &t->dst_parent, err);
        if (rc == TM_ENOENT)
            t->dst_parent = 0;
        else if (rc)
            return rc;
    }
    if (!t->dst_parent)
        return 0;
    if (!t->child) {
        rc = prepare(db, "SELECT type, size, mtime FROM dst_nodes WHERE parent_id = ?1 "
                     "AND name = ?2", &t->child, err);
        if (rc)
            return rc;
    }
    tm__db_bind_int64(t->child, 1, t->dst_parent);
    tm__db_bind_text(t->child, 2, name, name_len, SQLITE_STATIC);
    rc = tm__db_step(t->child);
    if (rc == SQLITE_ROW) {
        const char *ty = (const char *)tm__db_column_text(t->child, 0);
        r->dst = 1;
        snprintf(r->dst_type, sizeof r->dst_type, "%s", ty ? ty : "");
        r->dst_size = tm__db_column_int64(t->child, 1);
        r->dst_mtime = tm__db_column_int64(t->child, 2);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, err, "find a twin");
    }
    tm__db_reset(t->child);
    return rc;
}

int tm__q_list_kind(struct tm__db *db, size_t k, int64_t root, const char *cf,
                    int (*row)(void *ctx, const struct tm__q_list_row *r),
                    void *ctx, struct tm__buf *err)
{
    struct tm__buf sql = TM__BUF_INIT;
    const char *t = side_table[tm__q_kinds[k].side];
    const char *reason = kind_sql[k].reason;
    int twins = !strcmp(tm__q_kinds[k].kind, "conflict") ||
                !strcmp(tm__q_kinds[k].kind, "attrs");
    struct dst_twin tw = { NULL, 0, 0, TM__BUF_INIT };
    struct tm__stmt *st = NULL;
    int rc;

    if (!reason)
        reason = tm__q_table_exists(db, "excluded_prev")
                     ? "CASE WHEN EXISTS (SELECT 1 FROM excluded_prev AS e WHERE "
                       "e.side = 'src' AND e.id = n.id) THEN 'review' ELSE "
                       "'discover' END"
                     : "'discover'";
    if (root > 0)
        rc = tm__buf_addf(&sql,
                          "WITH RECURSIVE sub(id) AS (SELECT ?1 UNION ALL "
                          "SELECT c.id FROM %s AS c JOIN sub ON c.parent_id = sub.id) "
                          "SELECT n.path, n.type, n.size, n.mtime, %s, n.parent_id, "
                          "n.name FROM sub CROSS JOIN %s AS n ON n.id = sub.id WHERE "
                          "n.depth > 0 AND %s%s ORDER BY n.id", t, reason, t,
                          kind_sql[k].where, cf ? " AND n.conflict = ?2" : "");
    else
        rc = tm__buf_addf(&sql,
                          "SELECT n.path, n.type, n.size, n.mtime, %s, n.parent_id, "
                          "n.name FROM %s AS n WHERE n.depth > 0 AND %s%s ORDER BY "
                          "n.id", reason, t, kind_sql[k].where,
                          cf ? " AND n.conflict = ?2" : "");
    if (!rc)
        rc = prepare(db, sql.buf, &st, err);
    tm__buf_release(&sql);
    if (rc)
        return rc;
    if (root > 0)
        tm__db_bind_int64(st, 1, root);
    if (cf)
        tm__db_bind_text(st, 2, cf, -1, SQLITE_STATIC);
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        struct tm__q_list_row r;
        r.path = (const char *)tm__db_column_text(st, 0);
        r.path_len = (size_t)tm__db_column_bytes(st, 0);
        r.type = (const char *)tm__db_column_text(st, 1);
        r.size = tm__db_column_int64(st, 2);
        r.mtime = tm__db_column_int64(st, 3);
        r.why = (const char *)tm__db_column_text(st, 4);
        r.why_len = (size_t)tm__db_column_bytes(st, 4);
        if (!r.path)
            r.path = "";
        if (!r.type)
            r.type = "";
        r.dst = 0;
        if (twins) {
            const char *name = (const char *)tm__db_column_text(st, 6);
            rc = find_twin(db, &tw, &r, tm__db_column_int64(st, 5), name ? name : "",
                           tm__db_column_bytes(st, 6), err);
            if (rc)
                break;
        }
        rc = row(ctx, &r);
        if (rc)
            break;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = tm__store_error(db, rc, err, "read the state file");
    tm__db_finalize(st);
    tm__db_finalize(tw.child);
    tm__buf_release(&tw.dir);
    return rc;
}
