/*
 * review.c - what a person checks between discovery and copy: a summary of
 * the state file (tm_review_print), the items of each kind, one per line
 * (tm_review_list), and exclusions decided after discovery (tm_exclude,
 * which also includes them again; tm__exclude_run, review_int.h, is the
 * same with a dry run, for the web page's preview).
 *
 * Runs on the caller's thread through the handle's own connection; no
 * writer thread runs meanwhile. The summary and the listings only read, so
 * they work on a handle opened read-only while another process runs the
 * migration; tm_exclude writes, under the state file's lock that
 * tm_migration_open(TM_OPEN_WRITE) took, in one transaction.
 *
 * The bookkeeping of exclusions (tables exclusions and excluded_prev) and
 * the review_* views are documented in docs/state-file.md; docs/review.md
 * is the user's page.
 */
#include "treemig.h"

#include "adapter/adapter.h"
#include "engine/engine.h"
#include "migration/migration_int.h"
#include "migration/review_int.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/util.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char *const side_table[2] = { "src_nodes", "dst_nodes" };
static const char *const side_name[2] = { "src", "dst" };

static int fail(tm_migration *m, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(tm_migration *m, int rc, const char *fmt, ...)
{
    struct tm__buf *err = tm__migration_err(m);
    va_list ap;
    tm__buf_reset(err);
    va_start(ap, fmt);
    tm__buf_vaddf(err, fmt, ap);
    va_end(ap);
    return rc;
}

/* Records SQLite's message for a failed step of `what`. */
static int db_fail(tm_migration *m, int rc, const char *what)
{
    return tm__store_error(tm__migration_db(m), rc, tm__migration_err(m), what);
}

/* Prepares sql; on failure records the message. */
static int prepare(tm_migration *m, const char *sql, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v2(tm__migration_db(m), sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return db_fail(m, rc, "read the state file");
    }
    return 0;
}

/* Steps st to its end (no rows expected); finalizes it. */
static int run_done(tm_migration *m, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_fail(m, rc, what);
    sqlite3_finalize(st);
    return rc;
}

static int table_exists(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table'"
                           " AND name = ?", -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

/* Starts a read transaction, so that every query of a summary or a list
 * sees the same snapshot even while another process writes (WAL). Returns
 * 1 when it started one (end it with end_read()). */
static int begin_read(sqlite3 *db)
{
    return sqlite3_get_autocommit(db) &&
           sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
}

static void end_read(sqlite3 *db, int began)
{
    if (began)
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
}

/* --------------------------------------------------------------------------
 * Escaping of paths and messages.
 */

/* Length of the UTF-8 sequence at s (n bytes left) with its code point in
 * *cp, or 0 when s does not start a valid, shortest-form sequence. */

static int is_utf8(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;
    uint32_t cp;
    while (i < len) {
        if ((n = tm__utf8_seq(p + i, len - i, &cp)) == 0)
            return 0;
        i += n;
    }
    return 1;
}

/* Code points that would mislead a reader of a terminal or of a line:
 * C1 controls, line and paragraph separators, bidirectional controls. */
static int misleading(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C || cp == 0x200E ||
           cp == 0x200F || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

/*
 * Appends s[0..len) for a line of plain output (docs/review.md): printable
 * ASCII and UTF-8 as is; a backslash as \\; tab, newline, carriage return
 * as \t \n \r; other control bytes and bytes that are not UTF-8 as \xHH;
 * misleading code points (above) as \uHHHH.
 */
static int add_escaped(struct tm__buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;
    uint32_t cp;
    int rc = 0;
    while (!rc && i < len) {
        unsigned char c = p[i];
        if (c == '\\') {
            rc = tm__buf_add(b, "\\\\", 2);
            i++;
        } else if (c == '\t' || c == '\n' || c == '\r') {
            char e[2] = { '\\', c == '\t' ? 't' : c == '\n' ? 'n' : 'r' };
            rc = tm__buf_add(b, e, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            rc = tm__buf_addf(b, "\\x%02x", c);
            i++;
        } else if (c < 0x80) {
            rc = tm__buf_addch(b, (char)c);
            i++;
        } else if ((n = tm__utf8_seq(p + i, len - i, &cp)) == 0) {
            rc = tm__buf_addf(b, "\\x%02x", c);
            i++;
        } else if (misleading(cp)) {
            rc = tm__buf_addf(b, "\\u%04x", (unsigned)cp);
            i += n;
        } else {
            rc = tm__buf_add(b, p + i, n);
            i += n;
        }
    }
    return rc;
}

static int add_hex(struct tm__buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;
    int rc = tm__buf_addch(b, '"');
    for (i = 0; !rc && i < len; i++) {
        char h[2] = { hex[(unsigned char)s[i] >> 4], hex[(unsigned char)s[i] & 15] };
        rc = tm__buf_add(b, h, 2);
    }
    return rc ? rc : tm__buf_addch(b, '"');
}

/* Writes b to out; TM_EIO when out failed. */
static int put(tm_migration *m, FILE *out, const struct tm__buf *b)
{
    if (b->len && fwrite(b->buf, 1, b->len, out) != b->len)
        return fail(m, TM_EIO, "cannot write the output");
    return 0;
}

/* --------------------------------------------------------------------------
 * Paths in the trees.
 */

/*
 * Finds the row of a normalized path in src_nodes or dst_nodes by walking
 * the unique index (parent_id, name) from the root: a few lookups, no scan.
 * Returns 0 with *id, TM_ENOENT, or an error.
 */
static int find_node(tm_migration *m, int side, const char *path, int64_t *id)
{
    struct tm__buf sql = TM__BUF_INIT;
    sqlite3_stmt *root = NULL, *child = NULL;
    const char *p = path;
    int rc;

    if (tm__buf_addf(&sql, "SELECT id FROM %s WHERE parent_id IS NULL",
                     side_table[side]))
        return TM_ENOMEM;
    rc = prepare(m, sql.buf, &root);
    if (rc)
        goto out;
    rc = sqlite3_step(root);
    if (rc != SQLITE_ROW) {
        rc = rc == SQLITE_DONE ? TM_ENOENT : db_fail(m, rc, "find a path");
        goto out;
    }
    *id = sqlite3_column_int64(root, 0);
    tm__buf_reset(&sql);
    if (tm__buf_addf(&sql, "SELECT id FROM %s WHERE parent_id = ?1 AND name = ?2",
                     side_table[side])) {
        rc = TM_ENOMEM;
        goto out;
    }
    rc = prepare(m, sql.buf, &child);
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
        sqlite3_bind_int64(child, 1, *id);
        sqlite3_bind_text(child, 2, name, (int)(end - name), SQLITE_STATIC);
        rc = sqlite3_step(child);
        if (rc == SQLITE_ROW) {
            *id = sqlite3_column_int64(child, 0);
            rc = 0;
        } else {
            rc = rc == SQLITE_DONE ? TM_ENOENT : db_fail(m, rc, "find a path");
        }
        sqlite3_reset(child);
        p = end;
    }
out:
    sqlite3_finalize(root);
    sqlite3_finalize(child);
    tm__buf_release(&sql);
    return rc;
}

/* --------------------------------------------------------------------------
 * The summary.
 */

struct counts {
    int64_t n[TM_T_COUNT];     /* rows by type */
    int64_t bytes[TM_T_COUNT]; /* sum of their sizes */
};

struct summary {
    struct counts copy[CS_COUNT][2]; /* by copy status and conflict flag */
    struct counts src[TS_COUNT];     /* source rows by traversal status */
    struct counts dst[TS_COUNT];     /* destination rows by traversal status */
    int64_t conflict[CF_COUNT];      /* source rows by conflict reason */
    struct counts attrs;             /* pending rows with conflict attrs:
                                        their attributes set in place */
    int64_t by_review;               /* source rows excluded by tm_exclude */
    int64_t links[3];                /* link groups of two files or more
                                        in the source tree, their files,
                                        the groups split by an exclusion */
};

static void counts_add(struct counts *to, const struct counts *c)
{
    int t;
    for (t = 0; t < TM_T_COUNT; t++) {
        to->n[t] += c->n[t];
        to->bytes[t] += c->bytes[t];
    }
}

static int64_t counts_total(const struct counts *c)
{
    int64_t s = 0;
    int t;
    for (t = 0; t < TM_T_COUNT; t++)
        s += c->n[t];
    return s;
}

/* Reads the stats tables: exact, no scan. */
static int load_summary(tm_migration *m, struct summary *s)
{
    static const char *const sql[] = {
        "SELECT copy_status, conflict, type, sum(count), sum(bytes) FROM "
        "copy_stats WHERE depth > 0 GROUP BY 1, 2, 3",
        "SELECT traversal_status, 0, type, sum(count), sum(bytes) FROM "
        "src_stats WHERE depth > 0 GROUP BY 1, 3",
        "SELECT traversal_status, 0, type, sum(count), sum(bytes) FROM "
        "dst_stats WHERE depth > 0 GROUP BY 1, 3",
    };
    sqlite3 *db = tm__migration_db(m);
    size_t q;
    int rc = 0;

    memset(s, 0, sizeof *s);
    for (q = 0; q < sizeof sql / sizeof *sql && !rc; q++) {
        sqlite3_stmt *st;
        rc = prepare(m, sql[q], &st);
        if (rc)
            break;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *status = (const char *)sqlite3_column_text(st, 0);
            int cf = sqlite3_column_int(st, 1) ? 1 : 0;
            int type = tm__name_index(tm__type_names, TM_T_COUNT,
                                      (const char *)sqlite3_column_text(st, 2));
            int64_t n = sqlite3_column_int64(st, 3);
            int64_t bytes = sqlite3_column_int64(st, 4);
            int i;
            if (type < 0)
                continue; /* a type this version does not know */
            if (q == 0 && (i = tm__name_index(tm__cs_names, CS_COUNT, status)) >= 0) {
                s->copy[i][cf].n[type] += n;
                s->copy[i][cf].bytes[type] += bytes;
            } else if (q == 1 || q == 2) {
                i = tm__name_index(tm__ts_names, TS_COUNT, status);
                if (i >= 0) {
                    struct counts *c = q == 1 ? &s->src[i] : &s->dst[i];
                    c->n[type] += n;
                    c->bytes[type] += bytes;
                }
            }
        }
        rc = rc == SQLITE_DONE ? 0 : db_fail(m, rc, "read the state file");
        sqlite3_finalize(st);
    }
    if (!rc && table_exists(db, "excluded_prev")) {
        sqlite3_stmt *st;
        rc = prepare(m, "SELECT count(*) FROM excluded_prev WHERE side = 'src'",
                     &st);
        if (!rc) {
            if (sqlite3_step(st) == SQLITE_ROW)
                s->by_review = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
    }
    if (!rc) {
        /* link groups (schema v5: an older file has no inode, and none);
         * read in index order, one group at a time */
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT count(*), sum(n), sum(split) FROM "
                               "(SELECT count(*) AS n, max(copy_status = "
                               "'excluded') AND max(copy_status != 'excluded') "
                               "AS split FROM src_nodes WHERE ino IS NOT NULL "
                               "AND type = 'file' GROUP BY dev, ino HAVING "
                               "count(*) > 1)", -1, &st, NULL) == SQLITE_OK) {
            if (sqlite3_step(st) == SQLITE_ROW)
                for (int i = 0; i < 3; i++)
                    s->links[i] = sqlite3_column_int64(st, i);
            sqlite3_finalize(st);
        }
    }
    return rc;
}

/* "1.5 MiB" (IEC units, one decimal), "999 B". */
static void human_bytes(char *out, size_t len, int64_t v)
{
    static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double d = (double)v;
    int u = -1;
    if (v < 1024) {
        snprintf(out, len, "%" PRId64 " B", v);
        return;
    }
    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    snprintf(out, len, "%.1f %s", d, unit[u]);
}

/* "N (a files, b folders, c symlinks, d other)": the zero types left out. */
static int add_items(struct tm__buf *b, const struct counts *c)
{
    static const char *const one[TM_T_COUNT] = { "folder", "file", "symlink",
                                                 "other" };
    static const int order[TM_T_COUNT] = { TM_T_FILE, TM_T_FOLDER, TM_T_SYMLINK,
                                           TM_T_OTHER };
    int64_t total = counts_total(c);
    int i, first = 1, rc;
    rc = tm__buf_addf(b, "%" PRId64, total);
    if (!total)
        return rc;
    for (i = 0; !rc && i < TM_T_COUNT; i++) {
        int t = order[i];
        if (!c->n[t])
            continue;
        rc = tm__buf_addf(b, "%s%" PRId64 " %s%s", first ? " (" : ", ", c->n[t],
                          one[t], c->n[t] == 1 || t == TM_T_OTHER ? "" : "s");
        first = 0;
    }
    return rc ? rc : tm__buf_addch(b, ')');
}

/* ", B bytes (1.2 GiB)": the bytes of the file rows of c. */
static int add_bytes(struct tm__buf *b, const struct counts *c)
{
    char h[32];
    human_bytes(h, sizeof h, c->bytes[TM_T_FILE]);
    return tm__buf_addf(b, ", %" PRId64 " bytes (%s)", c->bytes[TM_T_FILE], h);
}

static int add_label(struct tm__buf *b, const char *label)
{
    return tm__buf_addf(b, "%-18s", label);
}

static void setting(sqlite3 *db, const char *key, struct tm__buf *out)
{
    if (tm__store_get(db, key, out) != 0)
        tm__buf_reset(out);
}

/* Appends a path for the summary: escaped, and shortened in the middle
 * when longer than max bytes (the lists give it in full). */
static int add_short_path(struct tm__buf *b, const char *path, size_t len,
                          size_t max)
{
    struct tm__buf e = TM__BUF_INIT;
    size_t head = max / 3, tail;
    int rc = add_escaped(&e, path, len);
    if (!rc && e.len > max) {
        tail = e.len - (max - head - 3);
        /* cut at character boundaries */
        while (head > 0 && ((unsigned char)e.buf[head] & 0xC0) == 0x80)
            head--;
        while (tail < e.len && ((unsigned char)e.buf[tail] & 0xC0) == 0x80)
            tail++;
        rc = tm__buf_add(b, e.buf, head);
        if (!rc) rc = tm__buf_adds(b, "...");
        if (!rc) rc = tm__buf_add(b, e.buf + tail, e.len - tail);
    } else if (!rc) {
        rc = tm__buf_add(b, e.buf, e.len);
    }
    tm__buf_release(&e);
    return rc;
}

/* What is to copy directly inside one folder. */
struct folder_agg {
    int64_t id;    /* the folder's row; 0: an empty slot */
    int64_t items; /* pending rows whose parent it is */
    int64_t bytes; /* sum of the sizes of the pending files among them */
    int shown;     /* selected for the summary */
};

/* An open-addressing map from folder id to its folder_agg. */
struct agg_map {
    struct folder_agg *v; /* slots (cap, a power of two) */
    size_t n, cap;        /* used, allocated */
};

static size_t agg_slot(const struct agg_map *h, int64_t id)
{
    size_t i = (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ULL) >> 17) & (h->cap - 1);
    while (h->v[i].id && h->v[i].id != id)
        i = (i + 1) & (h->cap - 1);
    return i;
}

static struct folder_agg *agg_get(struct agg_map *h, int64_t id)
{
    size_t i;
    if ((h->n + 1) * 2 > h->cap) {
        struct agg_map g = { NULL, 0, h->cap ? h->cap * 2 : 1024 };
        size_t j;
        g.v = calloc(g.cap, sizeof *g.v);
        if (!g.v)
            return NULL;
        for (j = 0; j < h->cap; j++)
            if (h->v[j].id)
                g.v[agg_slot(&g, h->v[j].id)] = h->v[j];
        g.n = h->n;
        free(h->v);
        *h = g;
    }
    i = agg_slot(h, id);
    if (!h->v[i].id) {
        h->v[i].id = id;
        h->n++;
    }
    return &h->v[i];
}

/*
 * One scan of the source rows that are pending or in conflict: counts the
 * conflicts by reason into s (and the pending ones of reason attrs by
 * type) and, when h is not NULL, what is to copy directly inside each
 * folder (every pending row but those of reason attrs, which are not
 * copied, counts in exactly one folder: its parent). Cost: one pass over src_nodes, memory in proportion
 * to the folders that hold something to copy.
 */
static int scan_pending(tm_migration *m, struct summary *s, struct agg_map *h)
{
    sqlite3_stmt *st;
    struct folder_agg *last = NULL;
    int rc = prepare(m, "SELECT parent_id, type = 'file', size, copy_status = "
                     "'pending', conflict, type FROM src_nodes WHERE depth > 0 AND "
                     "(copy_status = 'pending' OR conflict IS NOT NULL)", &st);
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int cf = CF_NONE;
        if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
            cf = tm__name_index(tm__cf_names, CF_COUNT,
                                (const char *)sqlite3_column_text(st, 4));
            if (cf > 0)
                s->conflict[cf]++;
            if (cf == CF_ATTRS && sqlite3_column_int(st, 3)) {
                int type = tm__name_index(tm__type_names, TM_T_COUNT,
                                          (const char *)sqlite3_column_text(st, 5));
                if (type >= 0) {
                    s->attrs.n[type]++;
                    s->attrs.bytes[type] += sqlite3_column_int64(st, 2);
                }
            }
        }
        /* what only has its attributes set is not copied: not counted */
        if (h && sqlite3_column_int(st, 3) && cf != CF_ATTRS) {
            int64_t parent = sqlite3_column_int64(st, 0);
            if (!last || last->id != parent) {
                /* children of a folder are mostly consecutive rows */
                last = agg_get(h, parent);
                if (!last) {
                    rc = TM_ENOMEM;
                    break;
                }
            }
            last->items++;
            if (sqlite3_column_int(st, 1))
                last->bytes += sqlite3_column_int64(st, 2);
        }
    }
    if (rc != TM_ENOMEM)
        rc = rc == SQLITE_DONE ? 0 : db_fail(m, rc, "read the state file");
    sqlite3_finalize(st);
    return rc;
}

static int by_bytes(const void *a, const void *b)
{
    const struct folder_agg *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    if (x->items != y->items)
        return x->items > y->items ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int by_items(const void *a, const void *b)
{
    const struct folder_agg *x = a, *y = b;
    if (x->items != y->items)
        return x->items > y->items ? -1 : 1;
    return by_bytes(a, b);
}

/*
 * The folders with the most to copy directly inside them: the `top` ones
 * by bytes and the `top` ones by items, each once, by bytes then items.
 */
static int add_top_folders(tm_migration *m, struct tm__buf *b, struct agg_map *h,
                           int top)
{
    sqlite3_stmt *st;
    size_t i, n = 0, k;
    int rc;

    if (!h->n)
        return 0;
    for (i = 0; i < h->cap; i++) /* pack the used slots at the front */
        if (h->v[i].id)
            h->v[n++] = h->v[i];
    qsort(h->v, n, sizeof *h->v, by_items);
    for (i = 0; i < n && i < (size_t)top; i++)
        h->v[i].shown = 1;
    qsort(h->v, n, sizeof *h->v, by_bytes);
    for (i = 0; i < n && i < (size_t)top; i++)
        h->v[i].shown = 1;
    for (i = 0, k = 0; i < n; i++) /* the shown ones, still by bytes */
        if (h->v[i].shown)
            h->v[k++] = h->v[i];
    rc = tm__buf_addf(b, "\nfolders with the most to copy directly inside "
                      "(top %d by bytes, top %d by items):\n"
                      "       bytes     items  folder\n", top, top);
    if (rc)
        return rc;
    rc = prepare(m, "SELECT path, copy_status = 'pending' AND conflict IS NULL "
                 "FROM src_nodes WHERE id = ?1", &st);
    for (i = 0; !rc && i < k; i++) {
        char hb[32];
        sqlite3_bind_int64(st, 1, h->v[i].id);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            rc = db_fail(m, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc,
                         "read a folder");
            break;
        }
        human_bytes(hb, sizeof hb, h->v[i].bytes);
        rc = tm__buf_addf(b, "  %10s %9" PRId64 "  ", hb, h->v[i].items);
        if (!rc)
            rc = add_short_path(b, (const char *)sqlite3_column_text(st, 0),
                                (size_t)sqlite3_column_bytes(st, 0), 100);
        if (!rc)
            rc = tm__buf_adds(b, sqlite3_column_int(st, 1) ? "  (new folder)\n"
                                                           : "\n");
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

int tm_review_print(tm_migration *m, FILE *out, int top)
{
    sqlite3 *db = tm__migration_db(m);
    struct tm__buf b = TM__BUF_INIT, phase = TM__BUF_INIT, v = TM__BUF_INIT;
    struct summary *s;
    struct counts pending = { { 0 }, { 0 } }, c;
    struct agg_map folders = { NULL, 0, 0 };
    int64_t n;
    int rc, i, began;

    if (!db || !out)
        return TM_EINVAL;
    tm__buf_reset(tm__migration_err(m));
    if (tm__store_get(db, "phase", &phase) != 0) {
        tm__buf_release(&phase);
        return fail(m, TM_ENODB, "the state file %s records no migration",
                    tm__migration_path(m));
    }
    s = malloc(sizeof *s);
    if (!s) {
        tm__buf_release(&phase);
        return TM_ENOMEM;
    }
    began = begin_read(db);
    rc = load_summary(m, s);
    if (!rc)
        rc = scan_pending(m, s, top > 0 ? &folders : NULL);
    if (rc)
        goto out;

    setting(db, "src", &v);
    rc = tm__buf_adds(&b, "source            ");
    if (!rc) rc = add_escaped(&b, v.buf, v.len);
    setting(db, "dst", &v);
    if (!rc) rc = tm__buf_adds(&b, "\ndestination       ");
    if (!rc) rc = add_escaped(&b, v.buf, v.len);
    if (!rc) rc = tm__buf_adds(&b, "\nphase             ");
    if (!rc) rc = add_escaped(&b, phase.buf, phase.len);
    if (!rc && (!strcmp(phase.buf, "roots-set") || !strcmp(phase.buf, "discovering") ||
                !strcmp(phase.buf, "suspended")))
        rc = tm__buf_adds(&b, " (discovery or copy not complete: the numbers "
                              "cover what is recorded so far)");
    if (!rc) rc = tm__buf_adds(&b, "\n\n");

    /* to copy: pending, with and without a conflict */
    counts_add(&pending, &s->copy[CS_PENDING][0]);
    counts_add(&pending, &s->copy[CS_PENDING][1]);
    if (!rc) rc = add_label(&b, "to copy");
    if (!rc) rc = add_items(&b, &pending);
    if (!rc) rc = add_bytes(&b, &pending);
    if (!rc) rc = tm__buf_adds(&b, "\n");
    if (!rc) rc = add_label(&b, "  missing");
    if (!rc) rc = add_items(&b, &s->copy[CS_PENDING][0]);
    if (!rc) rc = add_bytes(&b, &s->copy[CS_PENDING][0]);
    if (!rc) rc = tm__buf_adds(&b, "\n");
    memset(&c, 0, sizeof c);
    counts_add(&c, &s->copy[CS_PENDING][1]);
    for (i = 0; i < TM_T_COUNT; i++) {
        c.n[i] -= s->attrs.n[i];
        c.bytes[i] -= s->attrs.bytes[i];
    }
    if (!rc) rc = add_label(&b, "  differing");
    if (!rc) rc = add_items(&b, &c);
    if (!rc) rc = add_bytes(&b, &c);
    if (!rc) rc = tm__buf_adds(&b, ", to replace on the destination\n");
    if (!rc && counts_total(&s->attrs)) {
        rc = add_label(&b, "  attributes");
        if (!rc) rc = add_items(&b, &s->attrs);
        if (!rc) rc = tm__buf_adds(&b, ", same content, another mode or owner: "
                                       "set in place, nothing copied\n");
    }

    memset(&c, 0, sizeof c);
    counts_add(&c, &s->copy[CS_ALREADY][0]);
    counts_add(&c, &s->copy[CS_ALREADY][1]);
    if (!rc) rc = add_label(&b, "already there");
    if (!rc) rc = add_items(&b, &c);
    if (!rc) rc = tm__buf_adds(&b, "\n");

    /* conflicts: every status, by reason */
    for (n = 0, i = 0; i < CS_COUNT; i++)
        n += counts_total(&s->copy[i][1]);
    if (!rc) rc = add_label(&b, "conflicts");
    if (!rc) rc = tm__buf_addf(&b, "%" PRId64, n);
    {
        /* "116: 103 size, 4 mtime, 3 dst_newer (to replace), 6 type (skipped)" */
        const char *sep = ": ";
        int last = 0; /* the last reason of a conflict that is copied */
        for (i = CF_SIZE; i <= CF_DST_NEWER; i++)
            if (s->conflict[i])
                last = i;
        for (i = 1; !rc && i < CF_COUNT; i++) {
            if (!s->conflict[i])
                continue;
            rc = tm__buf_addf(&b, "%s%" PRId64 " %s%s", sep, s->conflict[i],
                              tm__cf_names[i],
                              i == last ? " (to replace)"
                              : i == CF_TYPE ? " (skipped)"
                              : i == CF_ATTRS ? " (set in place)" : "");
            sep = ", ";
        }
    }
    if (!rc) rc = tm__buf_adds(&b, "\n");

    memset(&c, 0, sizeof c);
    counts_add(&c, &s->copy[CS_SKIPPED][0]);
    counts_add(&c, &s->copy[CS_SKIPPED][1]);
    if (!rc) rc = add_label(&b, "skipped");
    if (!rc) rc = add_items(&b, &c);
    if (!rc && counts_total(&c))
        rc = tm__buf_adds(&b, ", never copied: type clashes, special files");
    if (!rc) rc = tm__buf_adds(&b, "\n");

    if (!rc) rc = add_label(&b, "destination only");
    if (!rc) rc = add_items(&b, &s->dst[TS_NOT_ON_SRC]);
    if (!rc) rc = add_bytes(&b, &s->dst[TS_NOT_ON_SRC]);
    if (!rc) rc = tm__buf_adds(&b, ", never touched\n");

    {
        int64_t fs = counts_total(&s->src[TS_FAILED]);
        int64_t fd = counts_total(&s->dst[TS_FAILED]);
        int64_t fc = counts_total(&s->copy[CS_FAILED][0]) +
                     counts_total(&s->copy[CS_FAILED][1]);
        if (!rc) rc = add_label(&b, "failed");
        if (!rc)
            rc = tm__buf_addf(&b, "%" PRId64 ": %" PRId64 " source and %" PRId64
                              " destination folders not listed, %" PRId64
                              " copies failed\n", fs + fd + fc, fs, fd, fc);
    }

    if (!rc) rc = add_label(&b, "excluded");
    if (!rc) rc = add_items(&b, &s->src[TS_EXCLUDED]);
    if (!rc) rc = add_bytes(&b, &s->src[TS_EXCLUDED]);
    if (!rc && counts_total(&s->src[TS_EXCLUDED]))
        rc = tm__buf_addf(&b, "; %" PRId64 " by treemig exclude, %" PRId64
                          " by discover --exclude", s->by_review,
                          counts_total(&s->src[TS_EXCLUDED]) - s->by_review);
    if (!rc) rc = tm__buf_adds(&b, "\n");

    if (!rc && s->links[0]) {
        rc = add_label(&b, "hard links");
        if (!rc)
            rc = tm__buf_addf(&b, "%" PRId64 " group%s of %" PRId64 " files: "
                              "each group is written once, its other files "
                              "linked", s->links[0], s->links[0] == 1 ? "" : "s",
                              s->links[1]);
        if (!rc && s->links[2])
            rc = tm__buf_addf(&b, "; %" PRId64 " split by an exclusion (what is "
                              "excluded is not made, the others are still "
                              "linked)", s->links[2]);
        if (!rc) rc = tm__buf_adds(&b, "\n");
    }

    n = 0;
    for (i = 0; i < 2; i++)
        n += counts_total(&s->copy[CS_SUCCESSFUL][i]) +
             counts_total(&s->copy[CS_IN_PROGRESS][i]);
    if (!rc && n) {
        memset(&c, 0, sizeof c);
        counts_add(&c, &s->copy[CS_SUCCESSFUL][0]);
        counts_add(&c, &s->copy[CS_SUCCESSFUL][1]);
        rc = add_label(&b, "copied");
        if (!rc) rc = add_items(&b, &c);
        if (!rc) rc = add_bytes(&b, &c);
        if (!rc) rc = tm__buf_addf(&b, "; %" PRId64 " in progress\n",
                                   counts_total(&s->copy[CS_IN_PROGRESS][0]) +
                                   counts_total(&s->copy[CS_IN_PROGRESS][1]));
    }
    n = counts_total(&s->src[TS_PENDING]) + counts_total(&s->dst[TS_PENDING]);
    if (!rc && n)
        rc = tm__buf_addf(&b, "%-18s%" PRId64 " source and %" PRId64
                          " destination folders\n", "not listed yet",
                          counts_total(&s->src[TS_PENDING]),
                          counts_total(&s->dst[TS_PENDING]));
    if (!rc && top > 0)
        rc = add_top_folders(m, &b, &folders, top);
    end_read(db, began);
    began = 0;
    if (!rc)
        rc = tm__buf_adds(&b, "\nthe items: treemig review --list "
                              "missing|conflict|attrs|extra|failed|excluded|"
                              "skipped|all\n");
    if (!rc)
        rc = put(m, out, &b);
    if (!rc && (fflush(out) != 0 || ferror(out)))
        rc = fail(m, TM_EIO, "cannot write the review");
out:
    end_read(db, began);
    free(s);
    free(folders.v);
    tm__buf_release(&b);
    tm__buf_release(&phase);
    tm__buf_release(&v);
    if (rc == TM_ENOMEM && !tm__migration_err(m)->len)
        fail(m, rc, "not enough memory for the review");
    return rc;
}

/* --------------------------------------------------------------------------
 * The listings.
 */

struct kind_query {
    const char *kind;   /* the kind, as given and as printed */
    int side;           /* enum tm__side: the table */
    const char *where;  /* condition on the row n */
    const char *reason; /* the reason column; NULL: excluded (computed) */
    int not_in_all;     /* 1: a part of another kind, left out of `all` */
};

static const struct kind_query kinds[] = {
    { "missing", TM_SRC, "n.copy_status = 'pending' AND n.conflict IS NULL", "NULL",
      0 },
    { "conflict", TM_SRC, "n.conflict IS NOT NULL", "n.conflict", 0 },
    /* the conflicts 'attrs' alone: same content, another mode or owner */
    { "attrs", TM_SRC, "n.conflict = 'attrs'", "n.conflict", 1 },
    { "extra", TM_DST, "n.traversal_status = 'not_on_src'", "NULL", 0 },
    { "failed", TM_SRC, "(n.traversal_status = 'failed' OR n.copy_status = 'failed')",
      "n.error", 0 },
    { "failed", TM_DST, "n.traversal_status = 'failed'", "n.error", 0 },
    { "excluded", TM_SRC, "n.traversal_status = 'excluded'", NULL, 0 },
    /* never copied: special files, type clashes, nodes the copy passed by */
    { "skipped", TM_SRC, "n.copy_status = 'skipped'",
      "coalesce(n.error, n.conflict, CASE WHEN n.type = 'other' THEN "
      "'special file' END)", 0 },
};

#define N_KINDS (sizeof kinds / sizeof *kinds)

static int list_one(tm_migration *m, const struct kind_query *k, int64_t root,
                     int json, FILE *out, struct tm__buf *line)
{
    sqlite3 *db = tm__migration_db(m);
    struct tm__buf sql = TM__BUF_INIT;
    const char *t = side_table[k->side];
    const char *reason = k->reason;
    sqlite3_stmt *st = NULL;
    int rc;

    if (!reason)
        reason = table_exists(db, "excluded_prev")
                     ? "CASE WHEN EXISTS (SELECT 1 FROM excluded_prev AS e WHERE "
                       "e.side = 'src' AND e.id = n.id) THEN 'review' ELSE "
                       "'discover' END"
                     : "'discover'";
    if (root > 0)
        rc = tm__buf_addf(&sql,
                          "WITH RECURSIVE sub(id) AS (SELECT ?1 UNION ALL "
                          "SELECT c.id FROM %s AS c JOIN sub ON c.parent_id = sub.id) "
                          "SELECT n.path, n.type, n.size, n.mtime, %s FROM sub "
                          "CROSS JOIN %s AS n ON n.id = sub.id WHERE n.depth > 0 AND %s "
                          "ORDER BY n.id", t, reason, t, k->where);
    else
        rc = tm__buf_addf(&sql,
                          "SELECT n.path, n.type, n.size, n.mtime, %s FROM %s AS n "
                          "WHERE n.depth > 0 AND %s ORDER BY n.id", reason, t,
                          k->where);
    if (!rc)
        rc = prepare(m, sql.buf, &st);
    tm__buf_release(&sql);
    if (rc)
        return rc;
    if (root > 0)
        sqlite3_bind_int64(st, 1, root);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(st, 0);
        size_t plen = (size_t)sqlite3_column_bytes(st, 0);
        const char *type = (const char *)sqlite3_column_text(st, 1);
        int64_t size = sqlite3_column_int64(st, 2);
        int64_t mtime = sqlite3_column_int64(st, 3);
        const char *why = (const char *)sqlite3_column_text(st, 4);
        size_t wlen = (size_t)sqlite3_column_bytes(st, 4);
        int dst_failed = k->side == TM_DST && !strcmp(k->kind, "failed");
        if (!path)
            path = "";
        if (!type)
            type = "";
        tm__buf_reset(line);
        if (json) {
            rc = tm__buf_adds(line, "{\"path\":");
            if (!rc) rc = tm__buf_add_json(line, path, plen);
            if (!rc) rc = tm__buf_adds(line, ",\"type\":");
            if (!rc) rc = tm__buf_add_json(line, type, strlen(type));
            if (!rc)
                rc = tm__buf_addf(line, ",\"size\":%" PRId64 ",\"mtime\":%" PRId64
                                  ",\"state\":\"%s\",\"reason\":", size, mtime,
                                  k->kind);
            if (!rc)
                rc = why ? tm__buf_add_json(line, why, wlen) : tm__buf_adds(line, "null");
            if (!rc) rc = tm__buf_addf(line, ",\"side\":\"%s\"", side_name[k->side]);
            if (!rc && !is_utf8(path, plen)) {
                rc = tm__buf_adds(line, ",\"path_hex\":");
                if (!rc) rc = add_hex(line, path, plen);
            }
            if (!rc) rc = tm__buf_adds(line, "}\n");
        } else {
            rc = tm__buf_addf(line, "%s\t%s\t%" PRId64 "\t", k->kind, type, size);
            if (!rc) rc = add_escaped(line, path, plen);
            if (!rc && (why || dst_failed)) {
                rc = tm__buf_addch(line, '\t');
                if (!rc && dst_failed)
                    rc = tm__buf_adds(line, why ? "destination: " : "destination");
                if (!rc && why)
                    rc = add_escaped(line, why, wlen);
            }
            if (!rc) rc = tm__buf_addch(line, '\n');
        }
        if (!rc)
            rc = put(m, out, line);
        if (rc)
            break;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = db_fail(m, rc, "read the state file");
    sqlite3_finalize(st);
    return rc;
}

int tm_review_list(tm_migration *m, const char *kind, const char *prefix,
                   int json, FILE *out)
{
    struct tm__buf path = TM__BUF_INIT, line = TM__BUF_INIT;
    int64_t root[2] = { 0, 0 };
    int found[2] = { 1, 1 };
    size_t i;
    int rc = 0, all, known = 0, began;

    if (!tm__migration_db(m) || !out)
        return TM_EINVAL;
    tm__buf_reset(tm__migration_err(m));
    all = kind && !strcmp(kind, "all");
    for (i = 0; kind && i < N_KINDS; i++)
        known |= !strcmp(kinds[i].kind, kind);
    if (!all && !known)
        return fail(m, TM_EINVAL, "unknown kind '%s': expected missing, conflict, "
                    "attrs, extra, failed, excluded, skipped or all",
                    kind ? kind : "");
    began = begin_read(tm__migration_db(m));
    if (prefix && *prefix) {
        if (tm__path_norm(&path, prefix))
            rc = TM_ENOMEM;
        /* the tree's paths hold no "." or "..": such a prefix would
         * silently match nothing */
        if (!rc && (strstr(path.buf, "/./") || strstr(path.buf, "/../") ||
                    !strcmp(path.buf, "/.") || !strcmp(path.buf, "/..") ||
                    (path.len >= 2 && !strcmp(path.buf + path.len - 2, "/.")) ||
                    (path.len >= 3 && !strcmp(path.buf + path.len - 3, "/.."))))
            rc = fail(m, TM_EINVAL, "--path %s: '.' and '..' are not allowed; "
                      "give the path as the tree has it, from its root "
                      "(e.g. /photos/2019)", prefix);
        if (!rc && strcmp(path.buf, "/") != 0) {
            int side;
            for (side = 0; side < 2 && !rc; side++) {
                rc = find_node(m, side, path.buf, &root[side]);
                if (rc == TM_ENOENT) {
                    found[side] = 0;
                    rc = 0;
                }
            }
        }
    }
    for (i = 0; !rc && i < N_KINDS; i++) {
        if (all ? kinds[i].not_in_all : strcmp(kinds[i].kind, kind) != 0)
            continue;
        if (!found[kinds[i].side])
            continue; /* the prefix is not in that tree: nothing under it */
        rc = list_one(m, &kinds[i], root[kinds[i].side], json, out, &line);
    }
    end_read(tm__migration_db(m), began);
    if (!rc && (fflush(out) != 0 || ferror(out)))
        rc = fail(m, TM_EIO, "cannot write the list");
    tm__buf_release(&path);
    tm__buf_release(&line);
    if (rc == TM_ENOMEM && !tm__migration_err(m)->len)
        fail(m, rc, "not enough memory for the list");
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
        return fail(x->m, TM_ECORRUPT, "unknown type or status in the state file "
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
    int rc = prepare(x->m, sql[side], &st);
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
        rc = db_fail(x->m, rc, "count the rows to exclude");
    sqlite3_finalize(st);
    return rc;
}

/* Runs sql with ?1 bound to v (no rows). */
static int exec_id(struct xctx *x, const char *sql, int64_t v, const char *what)
{
    sqlite3_stmt *st;
    int rc = prepare(x->m, sql, &st);
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
    rc = prepare(x->m, "SELECT n.path, n.copy_status FROM temp.tm_sub AS s"
                 " CROSS JOIN src_nodes AS n ON n.id = s.id WHERE n.copy_status IN"
                 " ('in_progress', 'successful', 'failed') LIMIT 1", &st);
    if (rc)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        struct tm__buf p = TM__BUF_INIT, q = TM__BUF_INIT;
        const char *np = (const char *)sqlite3_column_text(st, 0);
        add_escaped(&p, path, strlen(path));
        add_escaped(&q, np ? np : "", np ? (size_t)sqlite3_column_bytes(st, 0) : 0);
        rc = fail(x->m, TM_EPHASE, "cannot exclude %s: the copy has started there "
                  "(%s is %s)", p.buf, q.buf, (const char *)sqlite3_column_text(st, 1));
        tm__buf_release(&p);
        tm__buf_release(&q);
    } else {
        rc = rc == SQLITE_DONE ? 0 : db_fail(x->m, rc, "check the copy");
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;

    for (side = 0; side < 2 && !rc; side++) {
        if (side == TM_DST) {
            sqlite3_stmt *t;
            rc = find_node(x->m, TM_DST, path, &twin);
            if (rc == TM_ENOENT) {
                rc = 0;
                break; /* no twin: missing on the destination */
            }
            if (!rc)
                rc = prepare(x->m, "SELECT traversal_status FROM dst_nodes "
                             "WHERE id = ?1", &t);
            if (rc)
                break;
            sqlite3_bind_int64(t, 1, twin);
            rc = sqlite3_step(t);
            if (rc == SQLITE_ROW) {
                const char *ts = (const char *)sqlite3_column_text(t, 0);
                rc = ts && !strcmp(ts, "excluded") ? 1 : 0;
            } else {
                rc = db_fail(x->m, rc, "read the destination twin");
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
    rc = prepare(x->m, "INSERT INTO exclusions(id, path, pattern, time) "
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
        rc = prepare(x->m, group[side], &st);
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
            rc = db_fail(x->m, rc, "count the rows to include");
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
        add_escaped(out, p ? p : "", p ? strlen(p) : 0);
        tm__buf_adds(out, "' (pattern '");
        add_escaped(out, g ? g : "", g ? strlen(g) : 0);
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

    rc = prepare(x->m, "SELECT n.path, n.traversal_status = 'excluded', n.parent_id,"
                 " (SELECT traversal_status = 'excluded' FROM src_nodes"
                 " WHERE id = n.parent_id) FROM src_nodes AS n WHERE n.id = ?1", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = db_fail(x->m, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "read a node");
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
    rc = prepare(x->m, "SELECT root FROM excluded_prev WHERE side = 'src' AND id = ?1",
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
        rc = rc == SQLITE_DONE ? 0 : db_fail(x->m, rc, "read the exclusion");
    }
    sqlite3_finalize(st);
    if (rc)
        goto out;
    add_escaped(&p, path.buf, path.len);
    if (!has_prev) {
        rc = fail(x->m, TM_EPHASE, "cannot include %s again: it was excluded by "
                  "discovery (--exclude), which never listed its contents; run a "
                  "new discovery without that --exclude to include it", p.buf);
    } else if (root != id) {
        describe_root(x, id, &why);
        rc = fail(x->m, TM_EPHASE, "cannot include %s again on its own: it is "
                  "excluded because %s is; unexclude that instead", p.buf,
                  why.len ? why.buf : "an ancestor");
    } else if (parent_excluded) {
        describe_root(x, parent, &why);
        rc = fail(x->m, TM_EPHASE, "cannot include %s again: its folder is "
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
    rc = prepare(x->m, "INSERT OR IGNORE INTO temp.tm_match(id, depth) "
                 "VALUES(?1, ?2)", &ins);
    if (rc)
        return rc;
    if (!glob) {
        /* a plain path: a few index lookups */
        int64_t id;
        rc = find_node(x->m, TM_SRC, pattern, &id);
        if (rc == TM_ENOENT) {
            rc = 0;
            goto out;
        }
        if (!rc)
            rc = prepare(x->m, "SELECT id, depth, traversal_status FROM src_nodes "
                         "WHERE id = ?1", &st);
        if (!rc)
            sqlite3_bind_int64(st, 1, id);
    } else {
        /* a glob: every row, matched as discovery matches --exclude */
        rc = prepare(x->m, "SELECT id, depth, traversal_status, path, name FROM "
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
            rc = db_fail(x->m, sqlite3_errcode(x->db), "collect the matches");
            break;
        }
        sqlite3_reset(ins);
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = db_fail(x->m, rc, "find the matches");
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
        return fail(m, TM_EINVAL, "a pattern must be non-empty and hold no newline");
    if (tm__buf_adds(out, p))
        return TM_ENOMEM;
    len = out->len;
    while (len > 1 && out->buf[len - 1] == '/')
        len--;
    tm__buf_setlen(out, len);
    if (!strcmp(out->buf, "/"))
        return fail(m, TM_EINVAL, "the root cannot be excluded");
    if (strchr(out->buf, '/') && out->buf[0] != '/')
        return fail(m, TM_EINVAL, "'%s' holds a '/' but does not start with one: "
                    "paths start at the root ('/%s')", out->buf, out->buf);
    return 0;
}

/* Phases where exclusions may change: discovery complete, copy not. */
static int check_phase(struct xctx *x)
{
    struct tm__buf phase = TM__BUF_INIT, from = TM__BUF_INIT;
    int rc = 0;
    const char *what = x->unexclude ? "unexclude" : "exclude";
    if (tm__store_get(x->db, "phase", &phase) != 0) {
        rc = fail(x->m, TM_ENODB, "the state file %s records no migration",
                  tm__migration_path(x->m));
        goto out;
    }
    setting(x->db, "suspended_from", &from);
    if (!strcmp(phase.buf, "discovered") || !strcmp(phase.buf, "copying") ||
        (!strcmp(phase.buf, "suspended") && !strcmp(from.buf, "copying")))
        goto out;
    if (!strcmp(phase.buf, "copied") || !strcmp(phase.buf, "verified"))
        rc = fail(x->m, TM_EPHASE, "cannot %s: the copy is complete (phase %s)",
                  what, phase.buf);
    else
        rc = fail(x->m, TM_EPHASE, "cannot %s: discovery is not complete (phase "
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
    int rc = prepare(x->m, "SELECT pattern FROM exclusions GROUP BY pattern "
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
        rc = rc == SQLITE_DONE ? 0 : db_fail(x->m, rc, "read exclusions");
    sqlite3_finalize(st);
    if (!rc)
        rc = tm__store_set(x->db, "review_excludes", v.buf);
    if (!rc)
        rc = tm__buf_addf(&msg, "%s: %" PRId64 " source rows changed, patterns:",
                          x->unexclude ? "unexclude" : "exclude", x->changed);
    for (i = 0; !rc && i < n; i++)
        rc = tm__buf_addf(&msg, " '%s'", patterns[i]);
    if (!rc)
        rc = prepare(x->m, "INSERT INTO logs(time, level, queue, message) "
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
        return fail(m, TM_EINVAL, "the state file is open read-only");
    if (!n || !patterns)
        return fail(m, TM_EINVAL, "no pattern given");
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

    rc = tm__store_exec(x.db, "BEGIN IMMEDIATE", tm__migration_err(m));
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
            add_escaped(&p, norm[i], strlen(norm[i]));
            rc = fail(m, TM_EINVAL, "no source node matches '%s'%s", p.buf,
                      strchr(norm[i], '/') ? "" : " (a name anywhere in the tree)");
            tm__buf_release(&p);
            goto out;
        }
        /* ancestors first: depth by depth, in keyset pages of ids (an
         * ancestor excluded or included first settles its whole subtree) */
        {
            sqlite3_stmt *next = NULL;
            int64_t depth = -1, last_id = 0;
            rc = prepare(m, "SELECT id FROM temp.tm_match WHERE depth = ?1 AND "
                         "id > ?2 ORDER BY id LIMIT 256", &page);
            if (!rc)
                rc = prepare(m, "SELECT min(depth) FROM temp.tm_match WHERE "
                             "depth > ?1", &next);
            while (!rc) {
                int64_t ids[256];
                int k = 0, j, step;
                if (last_id == 0) { /* the next depth that holds matches */
                    sqlite3_bind_int64(next, 1, depth);
                    step = sqlite3_step(next);
                    if (step != SQLITE_ROW) {
                        rc = db_fail(m, step, "read the matches");
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
                    rc = db_fail(m, step, "read the matches");
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
        db_fail(m, sqlite3_errcode(x.db), "update the stats");
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
        sqlite3_exec(x.db, "ROLLBACK", NULL, NULL, NULL);
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
        fail(m, rc, "not enough memory to %s", unexclude ? "unexclude" : "exclude");
    else if (rc && !tm__migration_err(m)->len)
        fail(m, rc, "%s", tm_strerror(rc));
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
