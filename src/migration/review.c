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
#include "store/review_q.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/util.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


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

/* --------------------------------------------------------------------------
 * Escaping of paths and messages.
 */

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
 * Finds the row of a normalized path in src_nodes or dst_nodes
 * (tm__q_find_node). Returns 0 with *id, TM_ENOENT, or an error.
 */
int tm__rv_find_node(tm_migration *m, int side, const char *path, int64_t *id)
{
    return tm__q_find_node(tm__migration_db(m), side, path, id, tm__migration_err(m));
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

/* Adds a group of a stats table to the summary (tm__q_review_sums' row
 * callback; ctx is a struct sums_ctx). */
struct sums_ctx {
    struct summary *s; /* the summary */
    int table;         /* 0 copy_stats, 1 src_stats, 2 dst_stats */
};

static void add_sums(void *ctx, const char *status, int cf, const char *type_name,
                     int64_t n, int64_t bytes)
{
    struct sums_ctx *x = ctx;
    struct summary *s = x->s;
    int type = tm__name_index(tm__type_names, TM_T_COUNT, type_name);
    int i;
    if (type < 0)
        return; /* a type this version does not know */
    if (x->table == 0 && (i = tm__name_index(tm__cs_names, CS_COUNT, status)) >= 0) {
        s->copy[i][cf].n[type] += n;
        s->copy[i][cf].bytes[type] += bytes;
    } else if (x->table == 1 || x->table == 2) {
        i = tm__name_index(tm__ts_names, TS_COUNT, status);
        if (i >= 0) {
            struct counts *c = x->table == 1 ? &s->src[i] : &s->dst[i];
            c->n[type] += n;
            c->bytes[type] += bytes;
        }
    }
}

/* Reads the stats tables: exact, no scan. */
static int load_summary(tm_migration *m, struct summary *s)
{
    struct tm__db *db = tm__migration_db(m);
    struct sums_ctx x;
    int rc = 0;

    memset(s, 0, sizeof *s);
    x.s = s;
    for (x.table = 0; x.table < 3 && !rc; x.table++)
        rc = tm__q_review_sums(db, x.table, add_sums, &x, tm__migration_err(m));
    if (!rc)
        rc = tm__q_excluded_by_review(db, &s->by_review, tm__migration_err(m));
    if (!rc)
        rc = tm__q_link_groups(db, s->links, tm__migration_err(m));
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

void tm__rv_setting(struct tm__db *db, const char *key, struct tm__buf *out)
{
    if (tm__store_get(db, key, out) != 0)
        tm__buf_reset(out);
}

/* Appends the lines "compare" (how discovery compared two files) and,
 * when there are any, "filters" (the rules and limits it applied). */
static int add_compare(struct tm__db *db, struct tm__buf *b, struct tm__buf *v)
{
    static const char *const keys[4] = { "min_size", "max_size", "min_age", "max_age" };
    static const char *const names[4] = { "--min-size", "--max-size", "--min-age",
                                          "--max-age" };
    size_t n_rules = 0, i;
    int rc, any = 0;
    tm__rv_setting(db, "compare", v);
    rc = tm__buf_addf(b, "\ncompare           %s",
                      !strcmp(v->buf, "size-only") ? "size only"
                      : !strcmp(v->buf, "checksum")
                          ? "size, then content where the mtimes differ (--checksum)"
                          : "size and mtime");
    tm__rv_setting(db, "modify_window", v);
    if (!rc && v->len && strcmp(v->buf, "0"))
        rc = tm__buf_addf(b, ", mtimes within %s s equal (--modify-window)", v->buf);
    tm__rv_setting(db, "excludes", v);
    if (v->len)
        for (n_rules = 1, i = 0; i < v->len; i++)
            n_rules += v->buf[i] == '\n';
    if (!rc && n_rules) {
        rc = tm__buf_addf(b, "\nfilters           %zu rule%s (first match wins: "
                          "treemig exclude --list)", n_rules, n_rules == 1 ? "" : "s");
        any = 1;
    }
    for (i = 0; !rc && i < 4; i++) {
        tm__rv_setting(db, keys[i], v);
        if (!v->len)
            continue;
        rc = tm__buf_addf(b, "%s%s %s%s", any ? ", " : "\nfilters           ",
                          names[i], v->buf, i < 2 ? " bytes" : " s");
        any = 1;
    }
    return rc;
}

/* Appends a path for the summary: escaped, and shortened in the middle
 * when longer than max bytes (the lists give it in full). */
static int add_short_path(struct tm__buf *b, const char *path, size_t len,
                          size_t max)
{
    struct tm__buf e = TM__BUF_INIT;
    size_t head = max / 3, tail;
    int rc = tm__buf_add_escaped(&e, path, len);
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

/* The context of scan_pending's callback. */
struct scan_ctx {
    struct summary *s;        /* the counts of the conflicts */
    struct agg_map *h;        /* what is to copy inside each folder, or NULL */
    struct folder_agg *last;  /* the folder of the last row */
};

/* Counts one row of tm__q_scan_pending (ctx is a struct scan_ctx). */
static int scan_row(void *ctx, const struct tm__q_pending_row *r)
{
    struct scan_ctx *x = ctx;
    struct summary *s = x->s;
    int cf = CF_NONE;
    if (r->conflict) {
        cf = tm__name_index(tm__cf_names, CF_COUNT, r->conflict);
        if (cf > 0)
            s->conflict[cf]++;
        if (cf == CF_ATTRS && r->pending) {
            int type = tm__name_index(tm__type_names, TM_T_COUNT, r->type);
            if (type >= 0) {
                s->attrs.n[type]++;
                s->attrs.bytes[type] += r->size;
            }
        }
    }
    /* what only has its attributes set is not copied: not counted */
    if (x->h && r->pending && cf != CF_ATTRS) {
        if (!x->last || x->last->id != r->parent_id) {
            /* children of a folder are mostly consecutive rows */
            x->last = agg_get(x->h, r->parent_id);
            if (!x->last)
                return TM_ENOMEM;
        }
        x->last->items++;
        if (r->is_file)
            x->last->bytes += r->size;
    }
    return 0;
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
    struct scan_ctx x = { s, h, NULL };
    return tm__q_scan_pending(tm__migration_db(m), scan_row, &x, tm__migration_err(m));
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

/* The context of add_top_row. */
struct top_ctx {
    struct tm__buf *b;  /* the summary */
    struct agg_map *h;  /* the shown folders, at the front */
};

/* Adds the line of the i-th shown folder (tm__q_folders' row callback). */
static int add_top_row(void *ctx, size_t i, const char *path, size_t len, int is_new)
{
    struct top_ctx *x = ctx;
    char hb[32];
    int rc;
    human_bytes(hb, sizeof hb, x->h->v[i].bytes);
    rc = tm__buf_addf(x->b, "  %10s %9" PRId64 "  ", hb, x->h->v[i].items);
    if (!rc)
        rc = add_short_path(x->b, path, len, 100);
    if (!rc)
        rc = tm__buf_adds(x->b, is_new ? "  (new folder)\n" : "\n");
    return rc;
}

/*
 * The folders with the most to copy directly inside them: the `top` ones
 * by bytes and the `top` ones by items, each once, by bytes then items.
 */
static int add_top_folders(tm_migration *m, struct tm__buf *b, struct agg_map *h,
                           int top)
{
    struct top_ctx x;
    int64_t *ids;
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
    ids = malloc((k ? k : 1) * sizeof *ids);
    if (!ids)
        return TM_ENOMEM;
    for (i = 0; i < k; i++)
        ids[i] = h->v[i].id;
    x.b = b;
    x.h = h;
    rc = tm__q_folders(tm__migration_db(m), ids, k, add_top_row, &x, tm__migration_err(m));
    free(ids);
    return rc;
}

int tm_review_print(tm_migration *m, FILE *out, int top)
{
    struct tm__db *db = tm__migration_db(m);
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
    began = tm__q_begin_read(db);
    rc = load_summary(m, s);
    if (!rc)
        rc = scan_pending(m, s, top > 0 ? &folders : NULL);
    if (rc)
        goto out;

    tm__rv_setting(db, "src", &v);
    rc = tm__buf_adds(&b, "source            ");
    if (!rc) rc = tm__buf_add_escaped(&b, v.buf, v.len);
    tm__rv_setting(db, "dst", &v);
    if (!rc) rc = tm__buf_adds(&b, "\ndestination       ");
    if (!rc) rc = tm__buf_add_escaped(&b, v.buf, v.len);
    if (!rc) rc = tm__buf_adds(&b, "\nphase             ");
    if (!rc) rc = tm__buf_add_escaped(&b, phase.buf, phase.len);
    ph = tm__phase_parse(phase.buf);
    if (!rc && (ph == PH_ROOTS_SET || ph == PH_DISCOVERING || ph == PH_SUSPENDED))
        rc = tm__buf_adds(&b, " (discovery or copy not complete: the numbers "
                              "cover what is recorded so far)");
    if (!rc) rc = add_compare(db, &b, &v);
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
    tm__q_end_read(db, began);
    began = 0;
    if (!rc)
        rc = tm__buf_adds(&b, "\nthe items: treemig review --list "
                              "missing|conflict|attrs|extra|failed|excluded|"
                              "skipped|new|changed|edited|all\n");
    if (!rc)
        rc = put(m, out, &b);
    if (!rc && (fflush(out) != 0 || ferror(out)))
        rc = tm__rv_fail(m, TM_EIO, "cannot write the review");
out:
    tm__q_end_read(db, began);
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

/* The context of list_row. */
struct list_ctx {
    tm_migration *m;          /* the handle */
    const struct tm__q_kind *k; /* the kind listed */
    int json;                 /* JSON lines, else plain lines */
    FILE *out;                /* where to */
    struct tm__buf *line;     /* a buffer for the line */
};

/* Writes the time t (ns since the epoch) as ISO 8601 UTC with its
 * nanoseconds into out. */
static void iso_ns(char *out, size_t len, int64_t t)
{
    int64_t sec = t / 1000000000, ns = t % 1000000000;
    struct tm tmv;
    time_t tt;
    char d[32];
    if (ns < 0) {
        ns += 1000000000;
        sec--;
    }
    tt = (time_t)sec;
    if (!gmtime_r(&tt, &tmv) || !strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S", &tmv)) {
        snprintf(out, len, "%" PRId64, t);
        return;
    }
    snprintf(out, len, "%s.%09dZ", d, (int)ns);
}

/* Writes one row of a listing (tm__q_list_kind's row callback). */
static int list_row(void *ctx, const struct tm__q_list_row *r)
{
    struct list_ctx *x = ctx;
    const struct tm__q_kind *k = x->k;
    struct tm__buf *line = x->line;
    const char *path = r->path, *type = r->type, *why = r->why;
    size_t plen = r->path_len, wlen = r->why_len;
    int dst_failed = k->side == TM_DST && !strcmp(k->kind, "failed");
    int rc;

    tm__buf_reset(line);
    if (x->json) {
        rc = tm__buf_adds(line, "{\"path\":");
        if (!rc) rc = tm__buf_add_json(line, path, plen);
        if (!rc) rc = tm__buf_adds(line, ",\"type\":");
        if (!rc) rc = tm__buf_add_json(line, type, strlen(type));
        if (!rc)
            rc = tm__buf_addf(line, ",\"size\":%" PRId64 ",\"mtime\":%" PRId64
                              ",\"state\":\"%s\",\"reason\":", r->size, r->mtime,
                              k->kind);
        if (!rc)
            rc = why ? tm__buf_add_json(line, why, wlen) : tm__buf_adds(line, "null");
        if (!rc) rc = tm__buf_addf(line, ",\"side\":\"%s\"", side_name[k->side]);
        if (!rc && r->dst)
            rc = tm__buf_addf(line, ",\"dst\":{\"type\":\"%s\",\"size\":%" PRId64
                              ",\"mtime\":%" PRId64 "}", r->dst_type, r->dst_size,
                              r->dst_mtime);
        if (!rc && !tm__utf8_valid(path, plen)) {
            rc = tm__buf_adds(line, ",\"path_hex\":");
            if (!rc) rc = add_hex(line, path, plen);
        }
        if (!rc) rc = tm__buf_adds(line, "}\n");
    } else {
        rc = tm__buf_addf(line, "%s\t%s\t%" PRId64 "\t", k->kind, type, r->size);
        if (!rc) rc = tm__buf_add_escaped(line, path, plen);
        if (!rc && (why || dst_failed)) {
            rc = tm__buf_addch(line, '\t');
            if (!rc && dst_failed)
                rc = tm__buf_adds(line, why ? "destination: " : "destination");
            if (!rc && why)
                rc = tm__buf_add_escaped(line, why, wlen);
        }
        if (!rc && r->dst && why) {
            /* a conflict: the source's mtime, then the destination's side */
            char a[48], b[48];
            iso_ns(a, sizeof a, r->mtime);
            iso_ns(b, sizeof b, r->dst_mtime);
            rc = tm__buf_addf(line, "\t%s\t%s\t%" PRId64 "\t%s", a, r->dst_type,
                              r->dst_size, b);
        }
        if (!rc) rc = tm__buf_addch(line, '\n');
    }
    return rc ? rc : put(x->m, x->out, line);
}

/* The context of plan_row: a listing that counts its rows. */
struct plan_count {
    struct list_ctx x; /* the listing */
    int64_t *count;    /* rows written */
    int64_t *bytes;    /* sizes of the files among them */
};

/* Writes one row of the copy's plan and counts it. */
static int plan_row(void *ctx, const struct tm__q_list_row *r)
{
    struct plan_count *pk = ctx;
    (*pk->count)++;
    if (!strcmp(r->type, "file") && strcmp(pk->x.k->kind, "set-attrs") != 0)
        *pk->bytes += r->size;
    return list_row(&pk->x, r);
}

/* Writes the rows of kind tm__q_kinds[k] (below root when root > 0). */
static int list_one(tm_migration *m, size_t k, int64_t root, const char *reason,
                    int json, FILE *out, struct tm__buf *line)
{
    struct list_ctx x = { m, &tm__q_kinds[k], json, out, line };
    return tm__q_list_kind(tm__migration_db(m), k, root, reason, list_row, &x,
                           tm__migration_err(m));
}

int tm_review_list(tm_migration *m, const char *kind, const char *prefix,
                   int json, FILE *out)
{
    return tm_review_list_reason(m, kind, NULL, prefix, json, out);
}

int tm_review_list_reason(tm_migration *m, const char *kind, const char *reason,
                          const char *prefix, int json, FILE *out)
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
    for (i = 0; kind && i < tm__q_n_kinds; i++)
        known |= tm__q_kinds[i].not_in_all != 2 && !strcmp(tm__q_kinds[i].kind, kind);
    if (!all && !known)
        return tm__rv_fail(m, TM_EINVAL, "unknown kind '%s': expected missing, conflict, "
                           "attrs, extra, failed, excluded, skipped, new, changed, "
                           "edited, copied or all",
                           kind ? kind : "");
    if (reason) {
        int ok = 0;
        for (i = 1; i < CF_COUNT; i++)
            ok |= !strcmp(tm__cf_names[i], reason);
        if (!ok)
            return tm__rv_fail(m, TM_EINVAL, "unknown conflict reason '%s': expected "
                               "size, mtime, dst_newer, type, content or attrs", reason);
        if (all || (strcmp(kind, "conflict") && strcmp(kind, "attrs")))
            return tm__rv_fail(m, TM_EINVAL, "a reason goes with the kind conflict, "
                               "not %s", kind);
    }
    began = tm__q_begin_read(tm__migration_db(m));
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
    for (i = 0; !rc && i < tm__q_n_kinds; i++) {
        const struct tm__q_kind *k = &tm__q_kinds[i];
        if (all ? k->not_in_all : strcmp(k->kind, kind) != 0)
            continue;
        if (!found[k->side])
            continue; /* the prefix is not in that tree: nothing under it */
        rc = list_one(m, i, root[k->side], reason, json, out, &line);
    }
    tm__q_end_read(tm__migration_db(m), began);
    if (!rc && (fflush(out) != 0 || ferror(out)))
        rc = tm__rv_fail(m, TM_EIO, "cannot write the list");
    tm__buf_release(&path);
    tm__buf_release(&line);
    if (rc == TM_ENOMEM && !tm__migration_err(m)->len)
        tm__rv_fail(m, rc, "not enough memory for the list");
    return rc;
}

int tm_copy_plan(tm_migration *m, int no_overwrite, int json, FILE *out,
                 int64_t counts[3], int64_t *bytes)
{
    struct tm__buf line = TM__BUF_INIT;
    size_t i;
    int rc = 0, began, n = 0;

    if (!tm__migration_db(m) || !out || !counts || !bytes)
        return TM_EINVAL;
    tm__buf_reset(tm__migration_err(m));
    counts[0] = counts[1] = counts[2] = 0;
    *bytes = 0;
    began = tm__q_begin_read(tm__migration_db(m));
    for (i = 0; !rc && i < tm__q_n_kinds; i++) {
        const struct tm__q_kind *k = &tm__q_kinds[i];
        struct plan_count pk;
        if (k->not_in_all != 2)
            continue;
        /* --no-overwrite keeps what differs: only what is missing is made */
        if (no_overwrite && n > 0)
            break;
        pk.x.m = m;
        pk.x.k = k;
        pk.x.json = json;
        pk.x.out = out;
        pk.x.line = &line;
        pk.count = &counts[n];
        pk.bytes = bytes;
        rc = tm__q_list_kind(tm__migration_db(m), i, 0, NULL, plan_row, &pk,
                             tm__migration_err(m));
        n++;
    }
    tm__q_end_read(tm__migration_db(m), began);
    if (!rc && (fflush(out) != 0 || ferror(out)))
        rc = tm__rv_fail(m, TM_EIO, "cannot write the plan");
    tm__buf_release(&line);
    if (rc == TM_ENOMEM && !tm__migration_err(m)->len)
        tm__rv_fail(m, rc, "not enough memory for the plan");
    return rc;
}
