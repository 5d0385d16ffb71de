/*
 * review.c - what a person checks between discovery and copy: a summary of
 * the state file (tm_review_print) and the items of each kind, one per line
 * or as JSON (tm_review_list); and the helpers that exclude.c shares with
 * it (review_int.h). Exclusions decided after discovery are in exclude.c.
 *
 * Runs on the caller's thread through the handle's own connection; no
 * writer thread runs meanwhile. The summary and the listings only read, so
 * they work on a handle opened read-only while another process runs the
 * migration.
 *
 * The review_* views are documented in docs/state-file.md; docs/review.md
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

int tm__rv_fail(tm_migration *m, int rc, const char *fmt, ...)
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
int tm__rv_db_fail(tm_migration *m, int rc, const char *what)
{
    return tm__store_error(tm__migration_db(m), rc, tm__migration_err(m), what);
}

/* Prepares sql; on failure records the message. */
int tm__rv_prepare(tm_migration *m, const char *sql, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v2(tm__migration_db(m), sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return tm__rv_db_fail(m, rc, "read the state file");
    }
    return 0;
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
int tm__rv_add_escaped(struct tm__buf *b, const char *s, size_t len)
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
        return tm__rv_fail(m, TM_EIO, "cannot write the output");
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
int tm__rv_find_node(tm_migration *m, int side, const char *path, int64_t *id)
{
    struct tm__buf sql = TM__BUF_INIT;
    sqlite3_stmt *root = NULL, *child = NULL;
    const char *p = path;
    int rc;

    if (tm__buf_addf(&sql, "SELECT id FROM %s WHERE parent_id IS NULL",
                     side_table[side]))
        return TM_ENOMEM;
    rc = tm__rv_prepare(m, sql.buf, &root);
    if (rc)
        goto out;
    rc = sqlite3_step(root);
    if (rc != SQLITE_ROW) {
        rc = rc == SQLITE_DONE ? TM_ENOENT : tm__rv_db_fail(m, rc, "find a path");
        goto out;
    }
    *id = sqlite3_column_int64(root, 0);
    tm__buf_reset(&sql);
    if (tm__buf_addf(&sql, "SELECT id FROM %s WHERE parent_id = ?1 AND name = ?2",
                     side_table[side])) {
        rc = TM_ENOMEM;
        goto out;
    }
    rc = tm__rv_prepare(m, sql.buf, &child);
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
            rc = rc == SQLITE_DONE ? TM_ENOENT : tm__rv_db_fail(m, rc, "find a path");
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
        rc = tm__rv_prepare(m, sql[q], &st);
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
        rc = rc == SQLITE_DONE ? 0 : tm__rv_db_fail(m, rc, "read the state file");
        sqlite3_finalize(st);
    }
    if (!rc && table_exists(db, "excluded_prev")) {
        sqlite3_stmt *st;
        rc = tm__rv_prepare(m, "SELECT count(*) FROM excluded_prev WHERE side = 'src'",
                            &st);
        if (!rc) {
            if (sqlite3_step(st) == SQLITE_ROW)
                s->by_review = sqlite3_column_int64(st, 0);
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

void tm__rv_setting(sqlite3 *db, const char *key, struct tm__buf *out)
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
    int rc = tm__rv_add_escaped(&e, path, len);
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
    int rc = tm__rv_prepare(m, "SELECT parent_id, type = 'file', size, copy_status = "
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
        rc = rc == SQLITE_DONE ? 0 : tm__rv_db_fail(m, rc, "read the state file");
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
    rc = tm__rv_prepare(m, "SELECT path, copy_status = 'pending' AND conflict IS NULL "
                        "FROM src_nodes WHERE id = ?1", &st);
    for (i = 0; !rc && i < k; i++) {
        char hb[32];
        sqlite3_bind_int64(st, 1, h->v[i].id);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            rc = tm__rv_db_fail(m, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc,
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
    enum tm__phase ph;
    int rc, i, began;

    if (!db || !out)
        return TM_EINVAL;
    tm__buf_reset(tm__migration_err(m));
    if (tm__store_get(db, "phase", &phase) != 0) {
        tm__buf_release(&phase);
        return tm__rv_fail(m, TM_ENODB, "the state file %s records no migration",
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

    tm__rv_setting(db, "src", &v);
    rc = tm__buf_adds(&b, "source            ");
    if (!rc) rc = tm__rv_add_escaped(&b, v.buf, v.len);
    tm__rv_setting(db, "dst", &v);
    if (!rc) rc = tm__buf_adds(&b, "\ndestination       ");
    if (!rc) rc = tm__rv_add_escaped(&b, v.buf, v.len);
    if (!rc) rc = tm__buf_adds(&b, "\nphase             ");
    if (!rc) rc = tm__rv_add_escaped(&b, phase.buf, phase.len);
    ph = tm__phase_parse(phase.buf);
    if (!rc && (ph == PH_ROOTS_SET || ph == PH_DISCOVERING || ph == PH_SUSPENDED))
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
        rc = tm__rv_fail(m, TM_EIO, "cannot write the review");
out:
    end_read(db, began);
    free(s);
    free(folders.v);
    tm__buf_release(&b);
    tm__buf_release(&phase);
    tm__buf_release(&v);
    if (rc == TM_ENOMEM && !tm__migration_err(m)->len)
        tm__rv_fail(m, rc, "not enough memory for the review");
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
        rc = tm__rv_prepare(m, sql.buf, &st);
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
            if (!rc) rc = tm__rv_add_escaped(line, path, plen);
            if (!rc && (why || dst_failed)) {
                rc = tm__buf_addch(line, '\t');
                if (!rc && dst_failed)
                    rc = tm__buf_adds(line, why ? "destination: " : "destination");
                if (!rc && why)
                    rc = tm__rv_add_escaped(line, why, wlen);
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
        rc = tm__rv_db_fail(m, rc, "read the state file");
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
        return tm__rv_fail(m, TM_EINVAL, "unknown kind '%s': expected missing, conflict, "
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
            rc = tm__rv_fail(m, TM_EINVAL, "--path %s: '.' and '..' are not allowed; "
                             "give the path as the tree has it, from its root "
                             "(e.g. /photos/2019)", prefix);
        if (!rc && strcmp(path.buf, "/") != 0) {
            int side;
            for (side = 0; side < 2 && !rc; side++) {
                rc = tm__rv_find_node(m, side, path.buf, &root[side]);
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
        rc = tm__rv_fail(m, TM_EIO, "cannot write the list");
    tm__buf_release(&path);
    tm__buf_release(&line);
    if (rc == TM_ENOMEM && !tm__migration_err(m)->len)
        tm__rv_fail(m, rc, "not enough memory for the list");
    return rc;
}
