/*
 * tasks.c - the copy's and verify's reads of the state file (tasks.h).
 * Threads: see tasks.h.
 */
#include "store/tasks.h"

#include "adapter/adapter.h"
#include "store/store.h"
#include "treemig.h"

#include "store/db.h"
#include <stdlib.h>
#include <string.h>

enum { Q_COPY, Q_ATTRS, Q_VERIFY, Q_MAXD, Q_KIDS, Q_HAS, Q_LINKS, Q_COUNT };

/* The members of s's link group (same source inode) that the copy writes:
 * not already there, skipped or excluded. The first of them by (depth, id)
 * is written; the others are linked to it. */
#define GROUP_SQL                                                            \
    "FROM src_nodes g WHERE g.dev = s.dev AND g.ino = s.ino AND "            \
    "g.type = 'file' AND g.copy_status NOT IN ('already_existed', "          \
    "'skipped', 'excluded')"

static const char *const tasks_sql[Q_COUNT] = {
    "SELECT s.id, s.path, s.depth, s.type, s.size, s.mtime, s.mode, s.conflict, "
    "p.copy_status, CASE WHEN s.type = 'folder' AND s.traversal_status = "
    "'failed' THEN coalesce(s.error, 'no reason recorded') END, p.conflict, "
    "u.state "
    "FROM src_nodes s JOIN src_nodes p ON p.id = s.parent_id "
    "LEFT JOIN uploads u ON u.node_id = s.id "
    "WHERE s.copy_status = 'pending' AND s.depth = ?1 AND s.id > ?2 "
    "AND (s.ino IS NULL OR s.type != 'file' OR s.id = (SELECT g.id " GROUP_SQL
    " ORDER BY g.depth, g.id LIMIT 1)) ORDER BY s.id LIMIT ?3",
    "SELECT id, path, depth, type, size, mtime, mode, conflict, copy_status, NULL, "
    "NULL FROM src_nodes WHERE type = 'folder' AND depth > 0 AND id > ?2 AND "
    "traversal_status = 'successful' AND "
    "copy_status IN ('successful', 'already_existed') ORDER BY id LIMIT ?3",
    "SELECT id, path, depth, type, size, mtime, mode, conflict, copy_status, NULL, "
    "NULL FROM src_nodes WHERE type = 'folder' AND traversal_status = "
    "'successful' AND id > ?2 AND (copy_status IN ('successful', "
    "'already_existed') OR (copy_status = 'failed' AND error LIKE 'verify: %') "
    "OR (copy_status = 'skipped' AND conflict = 'attrs')) ORDER BY id LIMIT ?3",
    "SELECT max(depth) FROM src_stats WHERE count > 0",
    "SELECT s.name, s.type, s.size, s.mtime, s.path, s.id, s.copy_status, "
    "s.conflict, s.mode, s.uid, s.gid, CASE WHEN s.ino IS NOT NULL AND s.type = "
    "'file' AND s.copy_status != 'already_existed' THEN (SELECT l.path FROM "
    "src_nodes l WHERE l.id = (SELECT g.id "
    GROUP_SQL " ORDER BY g.depth, g.id LIMIT 1) AND l.id != s.id AND "
    "l.copy_status = 'successful') END, s.hash, s.xattrs "
    "FROM src_nodes s WHERE s.parent_id = ?1 AND s.name > ?2 AND (s.copy_status IN "
    "('successful', 'already_existed') OR (s.copy_status = 'failed' AND "
    "s.error LIKE 'verify: %')) ORDER BY s.name LIMIT ?3",
    "SELECT 1 FROM src_nodes WHERE parent_id = ?1 AND name = ?2",
    "SELECT s.id, s.path, s.depth, s.type, s.size, s.mtime, s.mode, s.conflict, "
    "p.copy_status, NULL, p.conflict, NULL, l.path, l.copy_status "
    "FROM src_nodes s JOIN src_nodes p ON p.id = s.parent_id "
    "JOIN src_nodes l ON l.id = (SELECT g.id " GROUP_SQL
    " ORDER BY g.depth, g.id LIMIT 1) "
    "WHERE s.copy_status = 'pending' AND s.depth = ?1 AND s.id > ?2 AND "
    "s.ino IS NOT NULL AND s.type = 'file' ORDER BY s.id LIMIT ?3",
};

struct tm__tasks {
    struct tm__db *db;               /* read-only connection */
    struct tm__stmt *st[Q_COUNT]; /* the statements above */
    struct tm__buf err;        /* the last failure */
};

int tm__tasks_open(struct tm__tasks **out, const char *db_path,
                   struct tm__buf *err)
{
    struct tm__tasks *q = calloc(1, sizeof *q);
    int i, rc;
    *out = NULL;
    if (!q)
        return TM_ENOMEM;
    tm__buf_init(&q->err);
    rc = tm__store_open_reader(db_path, &q->db, err);
    for (i = 0; !rc && i < Q_COUNT; i++)
        if (tm__db_prepare_v3(q->db, tasks_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &q->st[i], NULL) != SQLITE_OK)
            rc = tm__store_error(q->db, SQLITE_ERROR, err, "prepare");
    if (rc) {
        tm__tasks_close(q);
        return rc;
    }
    *out = q;
    return 0;
}

void tm__tasks_close(struct tm__tasks *q)
{
    int i;
    if (!q)
        return;
    for (i = 0; i < Q_COUNT; i++)
        tm__db_finalize(q->st[i]);
    if (q->db)
        tm__db_close(q->db);
    tm__buf_release(&q->err);
    free(q);
}

const char *tm__tasks_errmsg(struct tm__tasks *q)
{
    return q->err.buf;
}

int tm__tasks_decode(struct tm__stmt *st, int kind, struct tm__task_row *rp)
{
    struct tm__task_row r;
    const char *cf = (const char *)tm__db_column_text(st, 7), *pcf;
    r.id = tm__db_column_int64(st, 0);
    r.path = (const char *)tm__db_column_text(st, 1);
    r.depth = tm__db_column_int(st, 2);
    r.type = tm__name_index(tm__type_names, TM_T_COUNT,
                            (const char *)tm__db_column_text(st, 3));
    r.size = tm__db_column_int64(st, 4);
    r.mtime = tm__db_column_int64(st, 5);
    r.mode = (uint32_t)tm__db_column_int64(st, 6);
    r.cf = cf ? tm__name_index(tm__cf_names, CF_COUNT, cf) : CF_NONE;
    r.parent_cs = tm__name_index(tm__cs_names, CS_COUNT,
                                 (const char *)tm__db_column_text(st, 8));
    r.why = (const char *)tm__db_column_text(st, 9);
    pcf = (const char *)tm__db_column_text(st, 10);
    r.parent_cf = pcf ? tm__name_index(tm__cf_names, CF_COUNT, pcf) : CF_NONE;
    r.resume = kind == TM_TASKS_COPY ? tm__db_column_blob(st, 11) : NULL;
    r.resume_len = r.resume ? (size_t)tm__db_column_bytes(st, 11) : 0;
    r.link = NULL;
    r.link_cs = -1;
    if (kind == TM_TASKS_LINKS) {
        r.link = (const char *)tm__db_column_text(st, 12);
        r.link_cs = tm__name_index(tm__cs_names, CS_COUNT,
                                   (const char *)tm__db_column_text(st, 13));
    }
    *rp = r;
    if (!r.path || (kind == TM_TASKS_LINKS && !r.link))
        return TM_ENOMEM;
    if (r.type < 0 || r.cf < 0 || r.parent_cs < 0 || r.parent_cf < 0 ||
        (kind == TM_TASKS_LINKS && r.link_cs < 0))
        return TM_ECORRUPT;
    return 0;
}

int tm__tasks_rows(struct tm__tasks *q, int kind, int depth, int64_t after,
                   int limit, int (*cb)(void *ctx, const struct tm__task_row *r),
                   void *ctx)
{
    struct tm__stmt *st = q->st[kind == TM_TASKS_COPY    ? Q_COPY
                             : kind == TM_TASKS_ATTRS ? Q_ATTRS
                             : kind == TM_TASKS_LINKS ? Q_LINKS
                                                      : Q_VERIFY];
    int rc, err = 0;
    if (kind == TM_TASKS_COPY || kind == TM_TASKS_LINKS)
        tm__db_bind_int(st, 1, depth);
    tm__db_bind_int64(st, 2, after);
    tm__db_bind_int(st, 3, limit);
    while (!err && (rc = tm__db_step(st)) == SQLITE_ROW) {
        struct tm__task_row r;
        err = tm__tasks_decode(st, kind, &r);
        if (!err)
            err = cb(ctx, &r);
    }
    if (!err && rc != SQLITE_DONE)
        err = tm__store_error(q->db, rc, &q->err, "read tasks");
    else if (err == TM_ECORRUPT)
        tm__buf_addf(&q->err, "state file: a node row holds an unknown value");
    tm__db_reset(st);
    return err;
}

int tm__tasks_max_depth(struct tm__tasks *q, int *depth)
{
    struct tm__stmt *st = q->st[Q_MAXD];
    int rc = tm__db_step(st);
    *depth = 0;
    if (rc == SQLITE_ROW) {
        *depth = tm__db_column_int(st, 0);
        rc = 0;
    } else {
        rc = tm__store_error(q->db, rc, &q->err, "read the depth");
    }
    tm__db_reset(st);
    return rc;
}

int tm__tasks_kids(struct tm__tasks *q, int64_t parent, const char *after,
                   size_t after_len, int limit,
                   int (*cb)(void *ctx, const struct tm__kid_row *r), void *ctx)
{
    struct tm__stmt *st = q->st[Q_KIDS];
    int rc, err = 0;
    tm__db_bind_int64(st, 1, parent);
    tm__db_bind_text(st, 2, after ? after : "", (int)after_len, SQLITE_STATIC);
    tm__db_bind_int(st, 3, limit);
    while (!err && (rc = tm__db_step(st)) == SQLITE_ROW) {
        struct tm__kid_row r;
        const char *cf = (const char *)tm__db_column_text(st, 7);
        r.name = (const char *)tm__db_column_text(st, 0);
        r.name_len = (size_t)tm__db_column_bytes(st, 0);
        r.type = tm__name_index(tm__type_names, TM_T_COUNT,
                                (const char *)tm__db_column_text(st, 1));
        r.size = tm__db_column_int64(st, 2);
        r.mtime = tm__db_column_int64(st, 3);
        r.path = (const char *)tm__db_column_text(st, 4);
        r.id = tm__db_column_int64(st, 5);
        r.cs = tm__name_index(tm__cs_names, CS_COUNT,
                              (const char *)tm__db_column_text(st, 6));
        r.cf = cf ? tm__name_index(tm__cf_names, CF_COUNT, cf) : CF_NONE;
        r.mode = (uint32_t)tm__db_column_int64(st, 8);
        r.owned = tm__db_column_type(st, 9) != SQLITE_NULL &&
                  tm__db_column_type(st, 10) != SQLITE_NULL;
        r.uid = tm__db_column_int64(st, 9);
        r.gid = tm__db_column_int64(st, 10);
        r.link = (const char *)tm__db_column_text(st, 11);
        r.has_hash = tm__db_column_type(st, 12) != SQLITE_NULL &&
                     r.cs == CS_ALREADY;
        r.hash = (uint64_t)tm__db_column_int64(st, 12);
        r.xattrs = (uint64_t)tm__db_column_int64(st, 13);
        if (!r.name || !r.path)
            err = TM_ENOMEM;
        else if (r.type < 0 || r.cs < 0 || r.cf < 0)
            err = TM_ECORRUPT;
        else
            err = cb(ctx, &r);
    }
    if (!err && rc != SQLITE_DONE)
        err = tm__store_error(q->db, rc, &q->err, "read source rows");
    tm__db_reset(st);
    return err;
}

int tm__tasks_has_child(struct tm__tasks *q, int64_t parent, const char *name,
                        size_t len)
{
    struct tm__stmt *st = q->st[Q_HAS];
    int rc;
    tm__db_bind_int64(st, 1, parent);
    tm__db_bind_text(st, 2, name, (int)len, SQLITE_STATIC);
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW)
        rc = 1;
    else if (rc == SQLITE_DONE)
        rc = 0;
    else
        rc = tm__store_error(q->db, rc, &q->err, "read rows");
    tm__db_reset(st);
    return rc;
}
