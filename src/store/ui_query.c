/*
 * ui_query.c - the SQL of the web page (see ui_query.h): read-only queries
 * of the state file in keyset pages, and the folder index, a side database
 * of every folder with the totals of its subtree.
 *
 * Runs on the caller's thread: the web server's threads (one connection
 * each, from the server's pool) and the index builder's thread (its own
 * connections). Nothing here writes the state file.
 */
#include "store/ui_query.h"

#include "adapter/adapter.h"
#include "store/store.h"
#include "treemig.h"

#include <stdlib.h>
#include <string.h>

const char *const tm__uiq_kind_names[UK_COUNT] = {
    "missing", "conflict", "extra", "failed", "excluded", "skipped", "copied", "same",
};

static const char *const tables[2] = { "src_nodes", "dst_nodes" };

void tm__uiq_rows_reset(struct tm__uiq_rows *r)
{
    r->n = 0;
    tm__buf_reset(&r->arena);
}

void tm__uiq_rows_release(struct tm__uiq_rows *r)
{
    free(r->v);
    r->v = NULL;
    r->n = r->alloc = 0;
    tm__buf_release(&r->arena);
}

static int db_err(struct tm__db *db, int rc)
{
    return tm__store_error(db, rc, NULL, "read the state file");
}

static int prepare(struct tm__db *db, const char *sql, struct tm__stmt **st)
{
    int rc = tm__db_prepare(db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return db_err(db, rc);
    }
    return 0;
}

/* A new row at the end of r (zeroed but for side and the unknown enums). */
static struct tm__uiq_row *row_new(struct tm__uiq_rows *r, int side)
{
    struct tm__uiq_row *x;
    if (r->n == r->alloc) {
        size_t na = r->alloc ? r->alloc * 2 : 64;
        struct tm__uiq_row *v = realloc(r->v, na * sizeof *v);
        if (!v)
            return NULL;
        r->v = v;
        r->alloc = na;
    }
    x = &r->v[r->n++];
    memset(x, 0, sizeof *x);
    x->side = side;
    x->type = x->ts = x->cs = -1;
    return x;
}

/* Copies text column col of st into the arena: *off, *len. */
static int add_text(struct tm__uiq_rows *r, struct tm__stmt *st, int col, size_t *off,
                    size_t *len)
{
    const void *p = tm__db_column_text(st, col);
    size_t n = (size_t)tm__db_column_bytes(st, col);
    *off = r->arena.len;
    *len = n;
    /* a NUL after each string, so that callers may use it as a C string */
    if (tm__buf_add(&r->arena, p ? p : "", n) || tm__buf_addch(&r->arena, '\0'))
        return TM_ENOMEM;
    return 0;
}

/*
 * The columns every node query selects, in this order:
 * id, parent_id, name, type, size, mtime, depth, traversal_status,
 * copy_status (NULL on the destination), conflict, error [, path].
 */
#define NODE_COLS(t)                                                        \
    "id, parent_id, name, type, size, mtime, depth, traversal_status, "   \
    t ", conflict, error"

static const char *const node_cols[2] = { NODE_COLS("copy_status"),
                                          NODE_COLS("NULL") };

/* Appends the row at st (NODE_COLS, and the path at column 11 if with_path). */
static int read_row(struct tm__uiq_rows *r, struct tm__stmt *st, int side, int with_path)
{
    struct tm__uiq_row *x = row_new(r, side);
    const char *cf;
    int rc;
    if (!x)
        return TM_ENOMEM;
    x->id = tm__db_column_int64(st, 0);
    x->parent_id = tm__db_column_int64(st, 1);
    rc = add_text(r, st, 2, &x->name_off, &x->name_len);
    x->type = tm__name_index(tm__type_names, TM_T_COUNT,
                             (const char *)tm__db_column_text(st, 3));
    x->size = tm__db_column_int64(st, 4);
    x->mtime = tm__db_column_int64(st, 5);
    x->depth = tm__db_column_int(st, 6);
    x->ts = tm__name_index(tm__ts_names, TS_COUNT,
                           (const char *)tm__db_column_text(st, 7));
    if (side == TM_SRC)
        x->cs = tm__name_index(tm__cs_names, CS_COUNT,
                               (const char *)tm__db_column_text(st, 8));
    cf = (const char *)tm__db_column_text(st, 9);
    x->cf = cf ? tm__name_index(tm__cf_names, CF_COUNT, cf) : CF_NONE;
    if (x->cf < 0)
        x->cf = CF_SIZE; /* a reason this version does not know: a conflict */
    if (!rc && tm__db_column_type(st, 10) != SQLITE_NULL) {
        x->has_err = 1;
        rc = add_text(r, st, 10, &x->err_off, &x->err_len);
    }
    if (!rc && with_path)
        rc = add_text(r, st, 11, &x->path_off, &x->path_len);
    if (rc)
        r->n--;
    return rc;
}

/* Steps st to its end, appending every row. */
static int read_all(struct tm__db *db, struct tm__stmt *st, int side, int with_path,
                    struct tm__uiq_rows *out)
{
    int rc;
    while ((rc = tm__db_step(st)) == SQLITE_ROW)
        if ((rc = read_row(out, st, side, with_path)) != 0)
            return rc;
    return rc == SQLITE_DONE ? 0 : db_err(db, rc);
}

unsigned tm__uiq_kinds(const struct tm__uiq_row *r)
{
    unsigned k = 0;
    if (r->cf != CF_NONE)
        k |= 1u << UK_CONFLICT;
    if (r->ts == TS_FAILED)
        k |= 1u << UK_FAILED;
    if (r->ts == TS_EXCLUDED)
        k |= 1u << UK_EXCLUDED;
    if (r->side == TM_DST) {
        if (r->ts == TS_NOT_ON_SRC)
            k |= 1u << UK_EXTRA;
        return k;
    }
    switch (r->cs) {
    case CS_PENDING:
        if (r->cf == CF_NONE)
            k |= 1u << UK_MISSING;
        break;
    case CS_FAILED: k |= 1u << UK_FAILED; break;
    case CS_SKIPPED: k |= 1u << UK_SKIPPED; break;
    case CS_SUCCESSFUL: k |= 1u << UK_COPIED; break;
    case CS_ALREADY: k |= 1u << UK_SAME; break;
    default: break;
    }
    return k;
}

int tm__uiq_begin_read(struct tm__db *db)
{
    return tm__db_get_autocommit(db) &&
           tm__db_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
}

void tm__uiq_end_read(struct tm__db *db, int began)
{
    if (began)
        tm__db_exec(db, "COMMIT", NULL, NULL, NULL);
}

int tm__uiq_find(struct tm__db *db, int side, const char *path, size_t len, int64_t *id)
{
    static const char *const root_sql[2] = {
        "SELECT id FROM src_nodes WHERE parent_id IS NULL",
        "SELECT id FROM dst_nodes WHERE parent_id IS NULL",
    };
    static const char *const child_sql[2] = {
        "SELECT id FROM src_nodes WHERE parent_id = ?1 AND name = ?2",
        "SELECT id FROM dst_nodes WHERE parent_id = ?1 AND name = ?2",
    };
    struct tm__stmt *st = NULL;
    size_t i = 0;
    int rc = prepare(db, root_sql[side], &st);
    *id = 0;
    if (rc)
        return rc;
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW)
        *id = tm__db_column_int64(st, 0);
    tm__db_finalize(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? TM_ENOENT : db_err(db, rc);
    rc = prepare(db, child_sql[side], &st);
    while (!rc && i < len) {
        size_t start;
        while (i < len && path[i] == '/')
            i++;
        if (i == len)
            break;
        start = i;
        while (i < len && path[i] != '/')
            i++;
        tm__db_bind_int64(st, 1, *id);
        tm__db_bind_text(st, 2, path + start, (int)(i - start), SQLITE_STATIC);
        rc = tm__db_step(st);
        if (rc == SQLITE_ROW) {
            *id = tm__db_column_int64(st, 0);
            rc = 0;
        } else {
            rc = rc == SQLITE_DONE ? TM_ENOENT : db_err(db, rc);
        }
        tm__db_reset(st);
    }
    tm__db_finalize(st);
    if (rc)
        *id = 0;
    return rc;
}

int tm__uiq_get(struct tm__db *db, int side, int64_t id, struct tm__uiq_rows *out)
{
    struct tm__buf sql = TM__BUF_INIT;
    struct tm__stmt *st = NULL;
    size_t before = out->n;
    int rc = tm__buf_addf(&sql, "SELECT %s, path FROM %s WHERE id = ?1",
                          node_cols[side], tables[side]);
    if (!rc)
        rc = prepare(db, sql.buf, &st);
    if (!rc) {
        tm__db_bind_int64(st, 1, id);
        rc = read_all(db, st, side, 1, out);
    }
    if (!rc && out->n == before)
        rc = TM_ENOENT;
    tm__db_finalize(st);
    tm__buf_release(&sql);
    return rc;
}

int tm__uiq_children(struct tm__db *db, int side, int64_t parent, const char *after,
                     size_t after_len, int has_after, int desc, int limit,
                     struct tm__uiq_rows *out)
{
    struct tm__buf sql = TM__BUF_INIT;
    struct tm__stmt *st = NULL;
    /* served by the unique index (parent_id, name): a few pages of the
     * B-tree whatever the size of the folder, never an OFFSET */
    int rc = tm__buf_addf(&sql, "SELECT %s FROM %s WHERE parent_id = ?1%s "
                          "ORDER BY name %s LIMIT ?3", node_cols[side], tables[side],
                          !has_after ? "" : desc ? " AND name < ?2" : " AND name > ?2",
                          desc ? "DESC" : "ASC");
    if (!rc)
        rc = prepare(db, sql.buf, &st);
    if (!rc) {
        tm__db_bind_int64(st, 1, parent);
        if (has_after)
            tm__db_bind_text(st, 2, after, (int)after_len, SQLITE_STATIC);
        tm__db_bind_int(st, 3, limit);
        rc = read_all(db, st, side, 0, out);
    }
    tm__db_finalize(st);
    tm__buf_release(&sql);
    return rc;
}

int tm__uiq_child(struct tm__db *db, int side, int64_t parent, const char *name,
                  size_t len, struct tm__uiq_rows *out)
{
    struct tm__buf sql = TM__BUF_INIT;
    struct tm__stmt *st = NULL;
    int rc = tm__buf_addf(&sql, "SELECT %s FROM %s WHERE parent_id = ?1 AND "
                          "name = ?2", node_cols[side], tables[side]);
    if (!rc)
        rc = prepare(db, sql.buf, &st);
    if (!rc) {
        tm__db_bind_int64(st, 1, parent);
        tm__db_bind_text(st, 2, name, (int)len, SQLITE_STATIC);
        rc = read_all(db, st, side, 0, out);
    }
    tm__db_finalize(st);
    tm__buf_release(&sql);
    return rc;
}

int tm__uiq_scan(struct tm__db *db, int side, int64_t after, int limit,
                 struct tm__uiq_rows *out)
{
    struct tm__buf sql = TM__BUF_INIT;
    struct tm__stmt *st = NULL;
    int rc = tm__buf_addf(&sql, "SELECT %s, path FROM %s WHERE id > ?1 ORDER BY id "
                          "LIMIT ?2", node_cols[side], tables[side]);
    if (!rc)
        rc = prepare(db, sql.buf, &st);
    if (!rc) {
        tm__db_bind_int64(st, 1, after);
        tm__db_bind_int(st, 2, limit);
        rc = read_all(db, st, side, 1, out);
    }
    tm__db_finalize(st);
    tm__buf_release(&sql);
    return rc;
}

int tm__uiq_max_id(struct tm__db *db, int side, int64_t *max)
{
    static const char *const sql[2] = { "SELECT max(id) FROM src_nodes",
                                        "SELECT max(id) FROM dst_nodes" };
    struct tm__stmt *st;
    int rc = prepare(db, sql[side], &st);
    if (rc)
        return rc;
    rc = tm__db_step(st);
    *max = rc == SQLITE_ROW ? tm__db_column_int64(st, 0) : 0;
    tm__db_finalize(st);
    return rc == SQLITE_ROW ? 0 : db_err(db, rc);
}

int tm__uiq_exclusion(struct tm__db *db, int64_t src_id, struct tm__uiq_excl *out)
{
    struct tm__stmt *st;
    int rc;
    out->how = UX_DISCOVER;
    tm__buf_reset(&out->root);
    tm__buf_reset(&out->pattern);
    /* state files made before treemig exclude have no such tables: then
     * every exclusion is discovery's */
    if (tm__db_prepare(db, "SELECT e.root, x.path, x.pattern FROM excluded_prev"
                           " AS e LEFT JOIN exclusions AS x ON x.id = e.root"
                           " WHERE e.side = 'src' AND e.id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return 0;
    tm__db_bind_int64(st, 1, src_id);
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        const char *p = (const char *)tm__db_column_text(st, 1);
        const char *g = (const char *)tm__db_column_text(st, 2);
        out->how = tm__db_column_int64(st, 0) == src_id ? UX_EXCLUDE : UX_INHERITED;
        rc = 0;
        if (p)
            rc = tm__buf_add(&out->root, p, (size_t)tm__db_column_bytes(st, 1));
        if (!rc && g)
            rc = tm__buf_add(&out->pattern, g, (size_t)tm__db_column_bytes(st, 2));
    } else {
        rc = rc == SQLITE_DONE ? 0 : db_err(db, rc);
    }
    tm__db_finalize(st);
    return rc;
}

/* Calls cb for each row of st, mapping columns with fill. */
static int each_rec(struct tm__db *db, struct tm__stmt *st,
                    void (*fill)(struct tm__stmt *st, struct tm__uiq_rec *r),
                    int (*cb)(void *ctx, const struct tm__uiq_rec *r), void *ctx)
{
    int rc;
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        struct tm__uiq_rec r;
        memset(&r, 0, sizeof r);
        fill(st, &r);
        if ((rc = cb(ctx, &r)) != 0)
            return rc;
    }
    return rc == SQLITE_DONE ? 0 : db_err(db, rc);
}

static const char *col_text(struct tm__stmt *st, int col, size_t *len)
{
    const char *s = (const char *)tm__db_column_text(st, col);
    *len = s ? (size_t)tm__db_column_bytes(st, col) : 0;
    return s;
}

/* id, time, a, b, c, d, node_id, attempts */
static void fill_text_rec(struct tm__stmt *st, struct tm__uiq_rec *r)
{
    r->id = tm__db_column_int64(st, 0);
    r->time = tm__db_column_int64(st, 1);
    r->a = col_text(st, 2, &r->a_len);
    r->b = col_text(st, 3, &r->b_len);
    r->c = col_text(st, 4, &r->c_len);
    r->d = col_text(st, 5, &r->d_len);
    r->node_id = tm__db_column_type(st, 6) == SQLITE_NULL ? 0
                                                          : tm__db_column_int64(st, 6);
    r->attempts = tm__db_column_int64(st, 7);
}

/* Runs a newest-first query of id < ?1 (or all when before <= 0) LIMIT ?2. */
static int newest(struct tm__db *db, const char *sql_all, const char *sql_before,
                  int64_t before, int limit,
                  int (*cb)(void *ctx, const struct tm__uiq_rec *r), void *ctx)
{
    struct tm__stmt *st;
    int rc = prepare(db, before > 0 ? sql_before : sql_all, &st);
    if (rc)
        return rc;
    if (before > 0) {
        tm__db_bind_int64(st, 1, before);
        tm__db_bind_int(st, 2, limit);
    } else {
        tm__db_bind_int(st, 1, limit);
    }
    rc = each_rec(db, st, fill_text_rec, cb, ctx);
    tm__db_finalize(st);
    return rc;
}

int tm__uiq_task_errors(struct tm__db *db, int64_t before, int limit,
                        int (*cb)(void *ctx, const struct tm__uiq_rec *r), void *ctx)
{
    return newest(db,
                  "SELECT id, time, phase, queue, path, message, node_id, attempts"
                  " FROM task_errors ORDER BY id DESC LIMIT ?1",
                  "SELECT id, time, phase, queue, path, message, node_id, attempts"
                  " FROM task_errors WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                  before, limit, cb, ctx);
}

int tm__uiq_logs(struct tm__db *db, int64_t before, int limit,
                 int (*cb)(void *ctx, const struct tm__uiq_rec *r), void *ctx)
{
    return newest(db,
                  "SELECT id, time, level, queue, path, message, node_id, 0"
                  " FROM logs ORDER BY id DESC LIMIT ?1",
                  "SELECT id, time, level, queue, path, message, node_id, 0"
                  " FROM logs WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                  before, limit, cb, ctx);
}

static void fill_queue_rec(struct tm__stmt *st, struct tm__uiq_rec *r)
{
    int i;
    r->id = tm__db_column_int64(st, 0);
    r->time = tm__db_column_int64(st, 1);
    r->a = col_text(st, 2, &r->a_len);
    for (i = 0; i < 7; i++)
        r->v[i] = tm__db_column_int64(st, 3 + i);
    r->items_per_s = tm__db_column_double(st, 10);
    r->bytes_per_s = tm__db_column_double(st, 11);
}

int tm__uiq_queue_stats(struct tm__db *db, int64_t since, int limit,
                        int (*cb)(void *ctx, const struct tm__uiq_rec *r), void *ctx)
{
#define QCOLS "id, time, queue, round, pending, in_flight, done, failed, " \
              "bytes_done, bytes_pending, items_per_s, bytes_per_s"
    struct tm__stmt *st;
    int rc = prepare(db, since >= 0
                     ? "SELECT " QCOLS " FROM queue_stats WHERE id > ?1 ORDER BY id"
                       " LIMIT ?2"
                     : "SELECT * FROM (SELECT " QCOLS " FROM queue_stats ORDER BY"
                       " id DESC LIMIT ?2) ORDER BY id", &st);
#undef QCOLS
    if (rc)
        return rc;
    if (since >= 0)
        tm__db_bind_int64(st, 1, since);
    tm__db_bind_int(st, 2, limit);
    rc = each_rec(db, st, fill_queue_rec, cb, ctx);
    tm__db_finalize(st);
    return rc;
}

static void fill_exclusion(struct tm__stmt *st, struct tm__uiq_rec *r)
{
    r->id = tm__db_column_int64(st, 0);
    r->a = col_text(st, 1, &r->a_len);
    r->b = col_text(st, 2, &r->b_len);
    r->c = col_text(st, 3, &r->c_len);
}

int tm__uiq_exclusions(struct tm__db *db, int limit,
                       int (*cb)(void *ctx, const struct tm__uiq_rec *r), void *ctx)
{
    struct tm__stmt *st;
    int rc;
    if (tm__db_prepare(db, "SELECT id, path, pattern, time FROM exclusions"
                           " ORDER BY time, id LIMIT ?1", -1, &st, NULL) != SQLITE_OK)
        return 0; /* an older state file: none */
    tm__db_bind_int(st, 1, limit);
    rc = each_rec(db, st, fill_exclusion, cb, ctx);
    tm__db_finalize(st);
    return rc;
}

int tm__uiq_data_version(struct tm__db *db, int64_t *v)
{
    struct tm__stmt *st;
    int rc = prepare(db, "PRAGMA data_version", &st);
    if (rc)
        return rc;
    rc = tm__db_step(st);
    *v = rc == SQLITE_ROW ? tm__db_column_int64(st, 0) : 0;
    tm__db_finalize(st);
    return rc == SQLITE_ROW ? 0 : db_err(db, rc);
}

/* --------------------------------------------------------------------------
 * The folder index.
 *
 * Table f of the side database: one row per folder of each side, with the
 * counts of its descendants by kind. A build reads each side once by id
 * (parents have smaller ids than their children: ids are given in BFS
 * order), inserts each folder when it meets it, adds each row to the
 * direct counts of its parent, then rolls the counts up, deepest folders
 * first, so that each folder holds the sums of its whole subtree.
 */

#define IDX_COUNTS "items, todo, todo_bytes, missing, conflict, extra, failed," \
                   " excluded, skipped, copied, same"

static const char idx_schema[] =
    "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE;"
    "PRAGMA cache_size=-16384;"
    "CREATE TABLE f(side INTEGER NOT NULL, id INTEGER NOT NULL,"
    " parent INTEGER, name TEXT NOT NULL, depth INTEGER NOT NULL,"
    " items INTEGER NOT NULL DEFAULT 0, todo INTEGER NOT NULL DEFAULT 0,"
    " todo_bytes INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0,"
    " conflict INTEGER NOT NULL DEFAULT 0, extra INTEGER NOT NULL DEFAULT 0,"
    " failed INTEGER NOT NULL DEFAULT 0, excluded INTEGER NOT NULL DEFAULT 0,"
    " skipped INTEGER NOT NULL DEFAULT 0, copied INTEGER NOT NULL DEFAULT 0,"
    " same INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(side, id)) WITHOUT ROWID;";

/* Direct counts being gathered for one parent. */
struct acc {
    int64_t parent;      /* the folder; 0: none yet */
    int64_t c[11];       /* in the order of IDX_COUNTS */
};

static void acc_add(struct acc *a, const struct tm__uiq_row *r)
{
    unsigned k = tm__uiq_kinds(r);
    a->c[0]++;
    if (r->side == TM_SRC && r->cs == CS_PENDING) {
        a->c[1]++;
        if (r->type == TM_T_FILE)
            a->c[2] += r->size;
    }
    a->c[3] += (k >> UK_MISSING) & 1;
    a->c[4] += (k >> UK_CONFLICT) & 1;
    a->c[5] += (k >> UK_EXTRA) & 1;
    a->c[6] += (k >> UK_FAILED) & 1;
    a->c[7] += (k >> UK_EXCLUDED) & 1;
    a->c[8] += (k >> UK_SKIPPED) & 1;
    a->c[9] += (k >> UK_COPIED) & 1;
    a->c[10] += (k >> UK_SAME) & 1;
}

/* Adds the counts of a to its parent's row. */
static int acc_flush(struct tm__db *idx, struct tm__stmt *upd, int side, struct acc *a)
{
    int i, rc;
    if (!a->parent)
        return 0;
    for (i = 0; i < 11; i++)
        tm__db_bind_int64(upd, i + 1, a->c[i]);
    tm__db_bind_int(upd, 12, side);
    tm__db_bind_int64(upd, 13, a->parent);
    rc = tm__db_step(upd);
    tm__db_reset(upd);
    memset(a, 0, sizeof *a);
    return rc == SQLITE_DONE ? 0 : tm__store_error(idx, rc, NULL, "write the index");
}

/* Appends the rows of a side with last < id <= max, at most 8192. */
static int read_window(struct tm__db *db, int side, int64_t last, int64_t max,
                       struct tm__uiq_rows *rows)
{
    struct tm__buf sql = TM__BUF_INIT;
    struct tm__stmt *st = NULL;
    int rc = tm__buf_addf(&sql, "SELECT %s FROM %s WHERE id > ?1 AND id <= ?2"
                          " ORDER BY id LIMIT 8192", node_cols[side], tables[side]);
    if (!rc)
        rc = prepare(db, sql.buf, &st);
    if (!rc) {
        tm__db_bind_int64(st, 1, last);
        tm__db_bind_int64(st, 2, max);
        rc = read_all(db, st, side, 0, rows);
    }
    tm__db_finalize(st);
    tm__buf_release(&sql);
    return rc;
}

/* Reads one side into f (folders and direct counts). */
static int build_side(struct tm__db *db, struct tm__db *idx, int side,
                      const struct tm__uiq_build_cb *cb, int64_t max,
                      struct tm__buf *err)
{
    struct tm__uiq_rows rows = TM__UIQ_ROWS_INIT;
    struct tm__stmt *ins = NULL, *upd = NULL;
    struct acc a;
    int64_t last = 0;
    int rc;

    memset(&a, 0, sizeof a);
    rc = tm__db_prepare(idx, "INSERT INTO f(side, id, parent, name, depth)"
                            " VALUES(?1, ?2, ?3, ?4, ?5)", -1, &ins, NULL);
    if (rc == SQLITE_OK)
        rc = tm__db_prepare(idx, "UPDATE f SET items = items + ?1, todo = todo"
                                " + ?2, todo_bytes = todo_bytes + ?3, missing ="
                                " missing + ?4, conflict = conflict + ?5, extra ="
                                " extra + ?6, failed = failed + ?7, excluded ="
                                " excluded + ?8, skipped = skipped + ?9, copied ="
                                " copied + ?10, same = same + ?11 WHERE side = ?12"
                                " AND id = ?13", -1, &upd, NULL);
    if (rc != SQLITE_OK) {
        rc = tm__store_error(idx, rc, err, "prepare the index");
        goto out;
    }
    while (last < max) {
        size_t i;
        tm__uiq_rows_reset(&rows);
        /* a window of ids, each in its own read transaction */
        rc = read_window(db, side, last, max, &rows);
        if (rc) {
            tm__buf_addf(err, "read the state file: %s", tm__db_errmsg(db));
            goto out;
        }
        if (!rows.n)
            break;
        for (i = 0; i < rows.n && !rc; i++) {
            const struct tm__uiq_row *r = &rows.v[i];
            if (r->type == TM_T_FOLDER) {
                tm__db_bind_int(ins, 1, side);
                tm__db_bind_int64(ins, 2, r->id);
                if (r->depth > 0)
                    tm__db_bind_int64(ins, 3, r->parent_id);
                else
                    tm__db_bind_null(ins, 3);
                tm__db_bind_text(ins, 4, TM__UIQ_NAME(&rows, i), (int)r->name_len,
                                  SQLITE_STATIC);
                tm__db_bind_int(ins, 5, r->depth);
                rc = tm__db_step(ins);
                tm__db_reset(ins);
                rc = rc == SQLITE_DONE ? 0 : tm__store_error(idx, rc, err,
                                                             "write the index");
            }
            if (rc || r->depth == 0)
                continue; /* the root counts in no folder */
            if (a.parent != r->parent_id) {
                /* a folder's children are mostly consecutive ids */
                rc = acc_flush(idx, upd, side, &a);
                a.parent = r->parent_id;
            }
            acc_add(&a, r);
        }
        if (rc)
            goto out;
        last = rows.v[rows.n - 1].id;
        if (cb && cb->progress)
            cb->progress(cb->ctx, side, last, max);
        if (cb && cb->stop && cb->stop(cb->ctx)) {
            rc = TM_ESTOPPED;
            goto out;
        }
    }
    rc = acc_flush(idx, upd, side, &a);
out:
    if (rc && rc != TM_ESTOPPED && !err->len)
        tm__buf_addf(err, "build the folder index: %s", tm__db_errmsg(idx));
    tm__db_finalize(ins);
    tm__db_finalize(upd);
    tm__uiq_rows_release(&rows);
    return rc;
}

/* Adds the totals of every folder to its parent, deepest first. */
static int roll_up(struct tm__db *idx, int side, struct tm__buf *err)
{
    struct tm__stmt *depth = NULL, *up = NULL;
    int64_t d;
    int rc = tm__db_prepare(idx, "SELECT max(depth) FROM f WHERE side = ?1", -1,
                                &depth, NULL);
    if (rc == SQLITE_OK)
        rc = tm__db_prepare(
            idx,
            "UPDATE f SET items = f.items + c.items, todo = f.todo + c.todo,"
            " todo_bytes = f.todo_bytes + c.todo_bytes, missing = f.missing +"
            " c.missing, conflict = f.conflict + c.conflict, extra = f.extra +"
            " c.extra, failed = f.failed + c.failed, excluded = f.excluded +"
            " c.excluded, skipped = f.skipped + c.skipped, copied = f.copied +"
            " c.copied, same = f.same + c.same FROM (SELECT parent, sum(items) AS"
            " items, sum(todo) AS todo, sum(todo_bytes) AS todo_bytes,"
            " sum(missing) AS missing, sum(conflict) AS conflict, sum(extra) AS"
            " extra, sum(failed) AS failed, sum(excluded) AS excluded,"
            " sum(skipped) AS skipped, sum(copied) AS copied, sum(same) AS same"
            " FROM f WHERE side = ?1 AND depth = ?2 GROUP BY parent) AS c"
            " WHERE f.side = ?1 AND f.id = c.parent", -1, &up, NULL);
    if (rc != SQLITE_OK) {
        rc = tm__store_error(idx, rc, err, "prepare the index");
        goto out;
    }
    tm__db_bind_int(depth, 1, side);
    rc = tm__db_step(depth);
    d = rc == SQLITE_ROW ? tm__db_column_int64(depth, 0) : 0;
    rc = 0;
    for (; d >= 1 && !rc; d--) {
        tm__db_bind_int(up, 1, side);
        tm__db_bind_int64(up, 2, d);
        rc = tm__db_step(up);
        tm__db_reset(up);
        rc = rc == SQLITE_DONE ? 0 : tm__store_error(idx, rc, err, "sum the index");
    }
out:
    tm__db_finalize(depth);
    tm__db_finalize(up);
    return rc;
}

int tm__uiq_index_build(struct tm__db *db, struct tm__db *idx, const struct tm__uiq_build_cb *cb,
                        int64_t max_id[2], struct tm__buf *err)
{
    int side, rc = tm__store_exec(idx, idx_schema, err);
    if (!rc)
        rc = tm__store_exec(idx, "BEGIN", err);
    for (side = 0; side < 2 && !rc; side++) {
        rc = tm__uiq_max_id(db, side, &max_id[side]);
        if (rc)
            tm__buf_addf(err, "read the state file: %s", tm__db_errmsg(db));
        if (!rc)
            rc = build_side(db, idx, side, cb, max_id[side], err);
    }
    if (!rc)
        rc = tm__store_exec(idx, "CREATE INDEX f_depth ON f(side, depth)", err);
    for (side = 0; side < 2 && !rc; side++)
        rc = roll_up(idx, side, err);
    if (!rc)
        rc = tm__store_exec(idx, "CREATE INDEX f_child ON f(side, parent, name);"
                            "CREATE INDEX f_todo ON f(parent, todo_bytes DESC, name)"
                            " WHERE side = 0;"
                            "COMMIT", err);
    if (rc)
        tm__db_exec(idx, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int tm__uiq_index_folders(struct tm__db *idx, int side, int64_t parent, const char *after,
                          size_t after_len, int has_after, int desc, int limit,
                          struct tm__uiq_rows *out)
{
    struct tm__buf sql = TM__BUF_INIT;
    struct tm__stmt *st = NULL;
    int rc = tm__buf_addf(&sql, "SELECT id, name, depth FROM f WHERE side = ?4 AND "
                          "parent = ?1%s ORDER BY name %s LIMIT ?3",
                          !has_after ? "" : desc ? " AND name < ?2" : " AND name > ?2",
                          desc ? "DESC" : "ASC");
    if (!rc)
        rc = prepare(idx, sql.buf, &st);
    tm__buf_release(&sql);
    if (rc)
        return rc;
    tm__db_bind_int64(st, 1, parent);
    if (has_after)
        tm__db_bind_text(st, 2, after, (int)after_len, SQLITE_STATIC);
    tm__db_bind_int(st, 3, limit);
    tm__db_bind_int(st, 4, side);
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        struct tm__uiq_row *x = row_new(out, side);
        if (!x) {
            rc = TM_ENOMEM;
            break;
        }
        x->id = tm__db_column_int64(st, 0);
        x->parent_id = parent;
        x->type = TM_T_FOLDER;
        x->depth = tm__db_column_int(st, 2);
        if ((rc = add_text(out, st, 1, &x->name_off, &x->name_len)) != 0) {
            out->n--;
            break;
        }
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = db_err(idx, rc);
    tm__db_finalize(st);
    return rc;
}

int tm__uiq_index_by_todo(struct tm__db *idx, int64_t parent, int64_t after_bytes,
                          const char *after, size_t after_len, int has_after,
                          int limit, struct tm__uiq_rows *out)
{
    struct tm__stmt *st = NULL;
    /* the partial index f_todo, read in its order: (bytes, name) after the
     * cursor is bytes below it, or the same bytes and a later name */
    int rc = prepare(idx, has_after
                     ? "SELECT id, name, depth, todo_bytes FROM f WHERE side = 0 AND"
                       " parent = ?1 AND todo_bytes <= ?2 AND (todo_bytes < ?2 OR"
                       " name > ?3) ORDER BY todo_bytes DESC, name ASC LIMIT ?4"
                     : "SELECT id, name, depth, todo_bytes FROM f WHERE side = 0 AND"
                       " parent = ?1 ORDER BY todo_bytes DESC, name ASC LIMIT ?4", &st);
    if (rc)
        return rc;
    tm__db_bind_int64(st, 1, parent);
    if (has_after) {
        tm__db_bind_int64(st, 2, after_bytes);
        tm__db_bind_text(st, 3, after, (int)after_len, SQLITE_STATIC);
    }
    tm__db_bind_int(st, 4, limit);
    while ((rc = tm__db_step(st)) == SQLITE_ROW) {
        struct tm__uiq_row *x = row_new(out, TM_SRC);
        if (!x) {
            rc = TM_ENOMEM;
            break;
        }
        x->id = tm__db_column_int64(st, 0);
        x->parent_id = parent;
        x->type = TM_T_FOLDER;
        x->depth = tm__db_column_int(st, 2);
        x->size = tm__db_column_int64(st, 3); /* the bytes to copy below */
        if ((rc = add_text(out, st, 1, &x->name_off, &x->name_len)) != 0) {
            out->n--;
            break;
        }
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = db_err(idx, rc);
    tm__db_finalize(st);
    return rc;
}

int tm__uiq_index_has(struct tm__db *idx, int side, int64_t parent, const char *name,
                      size_t len)
{
    struct tm__stmt *st;
    int rc;
    if (tm__db_prepare(idx, "SELECT 1 FROM f WHERE side = ?1 AND parent = ?2 AND"
                           " name = ?3", -1, &st, NULL) != SQLITE_OK)
        return 0;
    tm__db_bind_int(st, 1, side);
    tm__db_bind_int64(st, 2, parent);
    tm__db_bind_text(st, 3, name, (int)len, SQLITE_STATIC);
    rc = tm__db_step(st) == SQLITE_ROW;
    tm__db_finalize(st);
    return rc;
}

int tm__uiq_index_totals(struct tm__db *idx, int side, int64_t id, struct tm__uiq_totals *t)
{
    struct tm__stmt *st;
    int rc = prepare(idx, "SELECT " IDX_COUNTS " FROM f WHERE side = ?1 AND id = ?2",
                     &st);
    memset(t, 0, sizeof *t);
    if (rc)
        return rc;
    tm__db_bind_int(st, 1, side);
    tm__db_bind_int64(st, 2, id);
    rc = tm__db_step(st);
    if (rc == SQLITE_ROW) {
        static const int kind_col[UK_COUNT] = { 3, 4, 5, 6, 7, 8, 9, 10 };
        int k;
        t->items = tm__db_column_int64(st, 0);
        t->todo = tm__db_column_int64(st, 1);
        t->todo_bytes = tm__db_column_int64(st, 2);
        for (k = 0; k < UK_COUNT; k++)
            t->n[k] = tm__db_column_int64(st, kind_col[k]);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? TM_ENOENT : db_err(idx, rc);
    }
    tm__db_finalize(st);
    return rc;
}
