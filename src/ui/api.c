/*
 * api.c - the JSON API of `treemig ui` (docs/ui.md), which the page uses
 * and scripts may use too: the summary (the counts of `status --json`), the
 * observer's snapshots, a folder's children from both trees side by side
 * in keyset pages, searches by glob and kind, the problems, and exclusions
 * through the code of `treemig exclude` (exclude.c, with a dry run first).
 *
 * Every parameter is checked: unknown or repeated ones, page sizes out of
 * 1..1000, paths that are not UTF-8 (path_hex takes any bytes), malformed
 * cursors and globs are refused with 400. Every string goes out through
 * tm__ui_json_str(), which also escapes < > & ' so that a name is text
 * wherever it lands.
 *
 * Listings and searches that filter rows stop after a time budget and
 * return what they found with the cursor where they stopped (partial: true),
 * so that no request holds a thread for long however large the tree.
 *
 * Threads: runs on libmicrohttpd's pool threads, one request per thread,
 * with one connection of the pool (tm__ui_conn_get). Changes of the state
 * file are serialized by tm_ui.write_mu.
 */
#include "ui/ui_int.h"

#include "adapter/adapter.h"
#include "engine/engine.h"
#include "migration/review_int.h"
#include "store/store.h"
#include "util/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define BUDGET_NS (150 * 1000000LL) /* a filtering request stops after this */
#define BATCH 256                   /* rows read per side at a time */

static const char *const level_names[] = { "trace", "debug", "info", "warning",
                                           "error", "critical" };
#define N_LEVELS (sizeof level_names / sizeof *level_names)

/* --------------------------------------------------------------------------
 * JSON.
 */

int tm__ui_json_str(struct tm__buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;
    uint32_t cp;
    int rc = tm__buf_addch(b, '"');
    while (!rc && i < len) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            rc = tm__buf_add(b, e, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '&' ||
                   c == '\'') {
            rc = tm__buf_addf(b, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            rc = tm__buf_addch(b, (char)c);
            i++;
        } else if ((n = tm__utf8_seq(p + i, len - i, &cp)) == 0) {
            /* not UTF-8: the byte's value (the exact bytes are in *_hex) */
            rc = tm__buf_addf(b, "\\u%04x", c);
            i++;
        } else if (cp == 0x2028 || cp == 0x2029) {
            rc = tm__buf_addf(b, "\\u%04x", (unsigned)cp);
            i += n;
        } else {
            rc = tm__buf_add(b, p + i, n);
            i += n;
        }
    }
    return rc ? rc : tm__buf_addch(b, '"');
}

/* Appends the bytes in lower-case hex. */
static int add_hex(struct tm__buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;
    int rc = 0;
    for (i = 0; !rc && i < len; i++) {
        char h[2] = { hex[(unsigned char)s[i] >> 4], hex[(unsigned char)s[i] & 15] };
        rc = tm__buf_add(b, h, 2);
    }
    return rc;
}

/* Appends "..." with the bytes in lower-case hex. */
static int json_hex(struct tm__buf *b, const char *s, size_t len)
{
    int rc = tm__buf_addch(b, '"');
    if (!rc) rc = add_hex(b, s, len);
    return rc ? rc : tm__buf_addch(b, '"');
}

/* Appends a string or null. */
static int json_opt(struct tm__buf *b, const char *s, size_t len)
{
    return s ? tm__ui_json_str(b, s, len) : tm__buf_adds(b, "null");
}

int tm__ui_unhex(const char *s, size_t len, struct tm__buf *out)
{
    size_t i;
    if (len % 2)
        return TM_EINVAL;
    for (i = 0; i < len; i += 2) {
        int v = 0, k;
        for (k = 0; k < 2; k++) {
            char c = s[i + k];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= c - '0';
            else if (c >= 'a' && c <= 'f')
                v |= c - 'a' + 10;
            else if (c >= 'A' && c <= 'F')
                v |= c - 'A' + 10;
            else
                return TM_EINVAL;
        }
        if (tm__buf_addch(out, (char)v))
            return TM_ENOMEM;
    }
    return 0;
}

/* --------------------------------------------------------------------------
 * Errors and parameters.
 */

static void resp_error(struct tm__ui_resp *r, int status, const char *code,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void resp_error(struct tm__ui_resp *r, int status, const char *code,
                       const char *fmt, ...)
{
    struct tm__buf msg = TM__BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    tm__buf_vaddf(&msg, fmt, ap);
    va_end(ap);
    r->status = status;
    tm__buf_reset(&r->body);
    if (tm__buf_adds(&r->body, "{\"error\":") ||
        tm__ui_json_str(&r->body, msg.buf, msg.len) ||
        tm__buf_addf(&r->body, ",\"code\":\"%s\"}\n", code)) {
        r->status = 500;
        tm__buf_reset(&r->body);
    }
    tm__buf_release(&msg);
}

static void resp_nomem(struct tm__ui_resp *r)
{
    resp_error(r, 500, "ENOMEM", "not enough memory");
}

/* The parameter called name, or NULL. */
static const struct tm__ui_param *param(const struct tm__ui_req *q, const char *name)
{
    size_t i, n = strlen(name);
    for (i = 0; i < q->n_params; i++)
        if (q->params[i].key_len == n && !memcmp(q->params[i].key, name, n))
            return &q->params[i];
    return NULL;
}

/* Refuses unknown and repeated parameters: allowed is a NULL-terminated
 * list. 0, or -1 with the answer made. */
static int check_params(const struct tm__ui_req *q, struct tm__ui_resp *r,
                        const char *const *allowed)
{
    size_t i, j;
    for (i = 0; i < q->n_params; i++) {
        const struct tm__ui_param *p = &q->params[i];
        int ok = 0;
        for (j = 0; allowed[j] && !ok; j++)
            ok = strlen(allowed[j]) == p->key_len && !memcmp(allowed[j], p->key,
                                                             p->key_len);
        if (!ok) {
            struct tm__buf k = TM__BUF_INIT;
            tm__ui_json_str(&k, p->key, p->key_len);
            resp_error(r, 400, "EINVAL", "unknown parameter %s", k.buf);
            tm__buf_release(&k);
            return -1;
        }
        for (j = 0; j < i; j++) {
            if (q->params[j].key_len == p->key_len &&
                !memcmp(q->params[j].key, p->key, p->key_len)) {
                resp_error(r, 400, "EINVAL", "parameter %.*s given twice",
                           (int)p->key_len, p->key);
                return -1;
            }
        }
    }
    return 0;
}

/* A whole number in [lo, hi] (default def when absent); -1 with the answer. */
static int get_int(const struct tm__ui_req *q, struct tm__ui_resp *r, const char *name,
                   int64_t lo, int64_t hi, int64_t def, int64_t *out)
{
    const struct tm__ui_param *p = param(q, name);
    int64_t v = 0;
    size_t i;
    *out = def;
    if (!p)
        return 0;
    if (!p->val_len || p->val_len > 19)
        goto bad;
    for (i = 0; i < p->val_len; i++) {
        if (p->val[i] < '0' || p->val[i] > '9')
            goto bad;
        v = v * 10 + (p->val[i] - '0');
    }
    if (v < lo || v > hi)
        goto bad;
    *out = v;
    return 0;
bad:
    resp_error(r, 400, "EINVAL", "%s takes a whole number from %" PRId64 " to %"
               PRId64, name, lo, hi);
    return -1;
}

static int get_limit(const struct tm__ui_req *q, struct tm__ui_resp *r, int *limit)
{
    int64_t v;
    if (get_int(q, r, "limit", 1, TM__UI_MAX_LIMIT, 100, &v))
        return -1;
    *limit = (int)v;
    return 0;
}

/* One of names[0..n) (default def when absent); -1 with the answer. */
static int get_enum(const struct tm__ui_req *q, struct tm__ui_resp *r, const char *name,
                    const char *const *names, int n, int def, int *out)
{
    const struct tm__ui_param *p = param(q, name);
    int i;
    *out = def;
    if (!p)
        return 0;
    for (i = 0; i < n; i++) {
        if (names[i] && strlen(names[i]) == p->val_len &&
            !memcmp(names[i], p->val, p->val_len)) {
            *out = i;
            return 0;
        }
    }
    resp_error(r, 400, "EINVAL", "%s: unknown value", name);
    return -1;
}

/* A kind filter: "all" (0) or one kind (its bit). */
static int get_kind(const struct tm__ui_req *q, struct tm__ui_resp *r, unsigned *mask)
{
    const char *names[UK_COUNT + 1];
    int i, k;
    names[0] = "all";
    for (i = 0; i < UK_COUNT; i++)
        names[i + 1] = tm__uiq_kind_names[i];
    if (get_enum(q, r, "kind", names, UK_COUNT + 1, 0, &k))
        return -1;
    *mask = k ? 1u << (k - 1) : 0;
    return 0;
}

/* 1 when s holds no '.' or '..' component and no NUL. */
static int path_clean(const char *s, size_t len)
{
    size_t i = 0;
    if (memchr(s, '\0', len))
        return 0;
    while (i < len) {
        size_t start;
        while (i < len && s[i] == '/')
            i++;
        start = i;
        while (i < len && s[i] != '/')
            i++;
        if ((i - start == 1 && s[start] == '.') ||
            (i - start == 2 && s[start] == '.' && s[start + 1] == '.'))
            return 0;
    }
    return 1;
}

/*
 * The path a request names: path (UTF-8 text) or path_hex (any bytes),
 * normalized ("/" for the root, a leading '/', no repeated or trailing
 * '/'). Absent: the root. -1 with the answer.
 */
static int get_path(const struct tm__ui_req *q, struct tm__ui_resp *r,
                    struct tm__buf *out)
{
    const struct tm__ui_param *p = param(q, "path"), *h = param(q, "path_hex");
    struct tm__buf raw = TM__BUF_INIT;
    size_t i;
    int rc = 0;

    tm__buf_reset(out);
    if (p && h) {
        resp_error(r, 400, "EINVAL", "give path or path_hex, not both");
        return -1;
    }
    if (p) {
        if (p->val_len > TM__UI_MAX_PATH || !tm__utf8_valid(p->val, p->val_len)) {
            resp_error(r, 400, "EINVAL", "path must be UTF-8 text of at most %d "
                       "bytes; give any other bytes as path_hex", TM__UI_MAX_PATH);
            return -1;
        }
        rc = tm__buf_add(&raw, p->val, p->val_len);
    } else if (h) {
        if (h->val_len > 2 * TM__UI_MAX_PATH ||
            (rc = tm__ui_unhex(h->val, h->val_len, &raw)) == TM_EINVAL) {
            tm__buf_release(&raw);
            resp_error(r, 400, "EINVAL", "path_hex takes an even number of hex "
                       "digits (at most %d bytes)", TM__UI_MAX_PATH);
            return -1;
        }
    }
    if (rc) {
        tm__buf_release(&raw);
        resp_nomem(r);
        return -1;
    }
    if (!path_clean(raw.buf, raw.len)) {
        tm__buf_release(&raw);
        resp_error(r, 400, "EINVAL", "a path holds no NUL byte and no '.' or '..' "
                   "component");
        return -1;
    }
    rc = tm__buf_addch(out, '/');
    for (i = 0; !rc && i < raw.len; i++) {
        if (raw.buf[i] == '/' && out->buf[out->len - 1] == '/')
            continue;
        rc = tm__buf_addch(out, raw.buf[i]);
    }
    if (!rc && out->len > 1 && out->buf[out->len - 1] == '/')
        tm__buf_setlen(out, out->len - 1);
    tm__buf_release(&raw);
    if (rc) {
        resp_nomem(r);
        return -1;
    }
    return 0;
}

/* Lends the request a connection; -1 with the answer. */
static int need_conn(struct tm__ui_req *q, struct tm__ui_resp *r)
{
    struct tm__buf err = TM__BUF_INIT;
    if (q->conn)
        return 0;
    q->conn = tm__ui_conn_get(q->ui, &err);
    if (!q->conn) {
        resp_error(r, 500, "EDB", "%s", err.len ? err.buf : "cannot read the state file");
        tm__buf_release(&err);
        return -1;
    }
    tm__buf_release(&err);
    return 0;
}

/* --------------------------------------------------------------------------
 * Nodes.
 */

/* A row of a struct tm__uiq_rows, with its strings. */
struct nview {
    const struct tm__uiq_row *r; /* the row, NULL: absent */
    const char *name;            /* its name */
    const char *err;             /* its error, NULL when none */
};

static struct nview view(const struct tm__uiq_rows *rows, size_t i)
{
    struct nview v = { &rows->v[i], TM__UIQ_NAME(rows, i),
                       rows->v[i].has_err ? TM__UIQ_ERR(rows, i) : NULL };
    return v;
}

static const char *type_name(int t)
{
    return t >= 0 && t < TM_T_COUNT ? tm__type_names[t] : "unknown";
}

/* The one word the page shows for a merged row (docs/ui.md). */
static const char *state_of(const struct tm__uiq_row *s, const struct tm__uiq_row *d)
{
    if (!s) {
        if (!d)
            return "unknown";
        return d->ts == TS_NOT_ON_SRC ? "extra" : d->ts == TS_EXCLUDED ? "excluded"
               : d->ts == TS_FAILED ? "failed" : "extra";
    }
    if (s->ts == TS_EXCLUDED)
        return "excluded";
    if (s->ts == TS_FAILED || s->cs == CS_FAILED || (d && d->ts == TS_FAILED))
        return "failed";
    if (s->cf == CF_TYPE)
        return "type";
    if (s->cf != CF_NONE)
        return "conflict";
    switch (s->cs) {
    case CS_PENDING: return "missing";
    case CS_IN_PROGRESS: return "copying";
    case CS_SUCCESSFUL: return "copied";
    case CS_ALREADY: return "same";
    case CS_SKIPPED: return "skipped";
    case CS_EXCLUDED: return "excluded";
    default: return "unknown";
    }
}

static int json_kinds(struct tm__buf *b, unsigned k)
{
    int i, first = 1, rc = tm__buf_addch(b, '[');
    for (i = 0; !rc && i < UK_COUNT; i++) {
        if (!(k & (1u << i)))
            continue;
        rc = tm__buf_addf(b, "%s\"%s\"", first ? "" : ",", tm__uiq_kind_names[i]);
        first = 0;
    }
    return rc ? rc : tm__buf_addch(b, ']');
}

/* Appends one side's node: {"id":..,"type":..,...} or null. */
static int json_node(struct tm__ui_conn *c, struct tm__buf *b, const struct nview *v)
{
    const struct tm__uiq_row *r = v->r;
    int rc;
    if (!r)
        return tm__buf_adds(b, "null");
    rc = tm__buf_addf(b, "{\"id\":%" PRId64 ",\"type\":\"%s\",\"size\":%" PRId64
                      ",\"mtime\":%" PRId64 ",\"traversal\":", r->id,
                      type_name(r->type), r->size, r->mtime);
    if (!rc)
        rc = r->ts >= 0 ? tm__buf_addf(b, "\"%s\"", tm__ts_names[r->ts])
                        : tm__buf_adds(b, "null");
    if (!rc)
        rc = tm__buf_adds(b, ",\"copy\":");
    if (!rc)
        rc = r->cs >= 0 ? tm__buf_addf(b, "\"%s\"", tm__cs_names[r->cs])
                        : tm__buf_adds(b, "null");
    if (!rc)
        rc = r->cf != CF_NONE ? tm__buf_addf(b, ",\"conflict\":\"%s\"",
                                             tm__cf_names[r->cf])
                              : tm__buf_adds(b, ",\"conflict\":null");
    if (!rc)
        rc = tm__buf_adds(b, ",\"error\":");
    if (!rc)
        rc = json_opt(b, v->err, v->err ? r->err_len : 0);
    if (!rc && r->side == TM_SRC && r->ts == TS_EXCLUDED) {
        struct tm__uiq_excl x = { 0, TM__BUF_INIT, TM__BUF_INIT };
        static const char *const how[] = { "none", "exclude", "inherited", "discover" };
        rc = tm__uiq_exclusion(c->db, r->id, &x);
        if (!rc)
            rc = tm__buf_addf(b, ",\"excluded\":{\"how\":\"%s\"", how[x.how]);
        if (!rc && x.how != UX_DISCOVER) {
            rc = tm__buf_adds(b, ",\"root\":");
            if (!rc) rc = tm__ui_json_str(b, x.root.buf, x.root.len);
            if (!rc) rc = tm__buf_adds(b, ",\"root_hex\":");
            if (!rc) rc = json_hex(b, x.root.buf, x.root.len);
            if (!rc) rc = tm__buf_adds(b, ",\"pattern\":");
            if (!rc) rc = tm__ui_json_str(b, x.pattern.buf, x.pattern.len);
        }
        if (!rc)
            rc = tm__buf_addch(b, '}');
        tm__buf_release(&x.root);
        tm__buf_release(&x.pattern);
    }
    return rc ? rc : tm__buf_addch(b, '}');
}

/* The totals of a merged folder from the index; 0 when none is known. */
static int totals_of(struct tm__ui_conn *c, const struct tm__uiq_row *s,
                     const struct tm__uiq_row *d, struct tm__uiq_totals *t)
{
    struct tm__uiq_totals dt;
    int have = 0;
    memset(t, 0, sizeof *t);
    if (!c->idx || !c->gen)
        return 0;
    if (s && s->type == TM_T_FOLDER && s->id <= c->gen->max_id[TM_SRC] &&
        tm__uiq_index_totals(c->idx, TM_SRC, s->id, t) == 0)
        have = 1;
    if (d && d->type == TM_T_FOLDER && d->id <= c->gen->max_id[TM_DST] &&
        tm__uiq_index_totals(c->idx, TM_DST, d->id, &dt) == 0) {
        /* the destination adds what only it has, and its failures */
        t->n[UK_EXTRA] += dt.n[UK_EXTRA];
        t->n[UK_FAILED] += dt.n[UK_FAILED];
        if (!have)
            t->items = dt.items;
        have = 1;
    }
    return have;
}

static int json_totals(struct tm__buf *b, const struct tm__uiq_totals *t)
{
    int i, rc = tm__buf_addf(b, "{\"items\":%" PRId64 ",\"todo\":%" PRId64
                             ",\"todo_bytes\":%" PRId64, t->items, t->todo,
                             t->todo_bytes);
    for (i = 0; !rc && i < UK_COUNT; i++)
        rc = tm__buf_addf(b, ",\"%s\":%" PRId64, tm__uiq_kind_names[i], t->n[i]);
    return rc ? rc : tm__buf_addch(b, '}');
}

/* --------------------------------------------------------------------------
 * GET /api/session, /api/summary, /api/progress
 */

static void api_session(struct tm__ui_req *q, struct tm__ui_resp *r)
{
    static const char *const none[] = { NULL };
    struct tm__buf *b = &r->body;
    if (check_params(q, r, none))
        return;
    if (tm__buf_addf(b, "{\"token\":\"%s\",\"read_only\":%s,\"version\":\"%s\","
                     "\"db\":", q->ui->token, q->ui->read_only ? "true" : "false",
                     TM_VERSION_STRING) ||
        tm__ui_json_str(b, q->ui->db_path, strlen(q->ui->db_path)) ||
        tm__buf_adds(b, "}\n"))
        resp_nomem(r);
}

/* The object of `treemig status --json` (cli/main.c), field for field. */
static int json_status(struct tm__buf *b, const tm_status *st)
{
    const tm_tree_counts *s = &st->src_counts, *d = &st->dst_counts;
    const tm_copy_counts *c = &st->copy;
    int i, rc = tm__buf_adds(b, "{\"phase\":");
    if (!rc) rc = tm__ui_json_str(b, st->phase, strlen(st->phase));
    if (!rc) rc = tm__buf_adds(b, ",\"roots\":{\"src\":");
    if (!rc) rc = tm__ui_json_str(b, st->src, strlen(st->src));
    if (!rc) rc = tm__buf_adds(b, ",\"dst\":");
    if (!rc) rc = tm__ui_json_str(b, st->dst, strlen(st->dst));
    if (!rc)
        rc = tm__buf_addf(b, "},\"rounds\":{\"src\":%d,\"dst\":%d}", st->src_round,
                          st->dst_round);
    if (!rc)
        rc = tm__buf_addf(b, ",\"src\":{\"folders\":%" PRId64 ",\"files\":%" PRId64
                          ",\"symlinks\":%" PRId64 ",\"other\":%" PRId64
                          ",\"bytes\":%" PRId64 ",\"pending\":%" PRId64
                          ",\"failed\":%" PRId64 ",\"excluded\":%" PRId64 "}",
                          s->folders, s->files, s->symlinks, s->other, s->bytes,
                          s->pending, s->failed, s->excluded);
    if (!rc)
        rc = tm__buf_addf(b, ",\"dst\":{\"folders\":%" PRId64 ",\"files\":%" PRId64
                          ",\"symlinks\":%" PRId64 ",\"other\":%" PRId64
                          ",\"bytes\":%" PRId64 ",\"pending\":%" PRId64
                          ",\"failed\":%" PRId64 ",\"not_on_src\":%" PRId64 "}",
                          d->folders, d->files, d->symlinks, d->other, d->bytes,
                          d->pending, d->failed, d->not_on_src);
    if (!rc)
        rc = tm__buf_addf(b, ",\"copy\":{\"pending\":%" PRId64 ",\"in_progress\":%"
                          PRId64 ",\"successful\":%" PRId64 ",\"already_existed\":%"
                          PRId64 ",\"failed\":%" PRId64 ",\"skipped\":%" PRId64
                          ",\"excluded\":%" PRId64 ",\"conflicts\":%" PRId64
                          ",\"bytes_pending\":%" PRId64 "}",
                          c->pending, c->in_progress, c->successful,
                          c->already_existed, c->failed, c->skipped, c->excluded,
                          c->conflicts, c->bytes_pending);
    if (!rc)
        rc = tm__buf_adds(b, ",\"queues\":[");
    for (i = 0; !rc && i < st->n_queues; i++) {
        const tm_queue_snapshot *x = &st->queues[i];
        rc = tm__buf_addf(b, "%s{\"queue\":", i ? "," : "");
        if (!rc) rc = tm__ui_json_str(b, x->queue, strlen(x->queue));
        if (!rc)
            rc = tm__buf_addf(b, ",\"time\":%" PRId64 ",\"round\":%" PRId64
                              ",\"pending\":%" PRId64 ",\"in_flight\":%" PRId64
                              ",\"done\":%" PRId64 ",\"failed\":%" PRId64
                              ",\"bytes_done\":%" PRId64 ",\"bytes_pending\":%" PRId64
                              ",\"items_per_s\":%.3f,\"bytes_per_s\":%.3f}",
                              x->time, x->round, x->pending, x->in_flight, x->done,
                              x->failed, x->bytes_done, x->bytes_pending,
                              x->items_per_s, x->bytes_per_s);
    }
    if (!rc)
        rc = st->eta_seconds >= 0
                 ? tm__buf_addf(b, "],\"eta_seconds\":%" PRId64 "}", st->eta_seconds)
                 : tm__buf_adds(b, "],\"eta_seconds\":null}");
    return rc;
}

static void api_summary(struct tm__ui_req *q, struct tm__ui_resp *r)
{
    static const char *const none[] = { NULL };
    tm_status *st;
    int began, rc;
    if (check_params(q, r, none) || need_conn(q, r))
        return;
    st = malloc(sizeof *st);
    if (!st) {
        resp_nomem(r);
        return;
    }
    began = tm__uiq_begin_read(q->conn->db);
    rc = tm_status_get(q->conn->m, st);
    tm__uiq_end_read(q->conn->db, began);
    if (rc) {
        resp_error(r, 500, tm_err_name(rc), "%s", tm_migration_errmsg(q->conn->m));
    } else if (tm__buf_adds(&r->body, "{\"status\":") || json_status(&r->body, st) ||
               tm__buf_addf(&r->body, ",\"read_only\":%s,\"now\":%" PRId64 ",",
                            q->ui->read_only ? "true" : "false", tm__wall_ns()) ||
               tm__ui_index_json(&q->ui->index, &r->body) ||
               tm__buf_adds(&r->body, "}\n")) {
        resp_nomem(r);
    }
    free(st);
}

struct recs {
    struct tm__buf *b; /* the output */
    int n;             /* records written */
    int64_t last;      /* id of the last one */
    unsigned levels;   /* logs: the levels wanted (bits of level_names) */
    int64_t scanned;   /* logs: rows read */
};

static int on_queue(void *ctx, const struct tm__uiq_rec *x)
{
    struct recs *k = ctx;
    int rc = tm__buf_addf(k->b, "%s{\"id\":%" PRId64 ",\"time\":%" PRId64
                          ",\"queue\":", k->n ? "," : "", x->id, x->time);
    if (!rc) rc = json_opt(k->b, x->a, x->a_len);
    if (!rc)
        rc = tm__buf_addf(k->b, ",\"round\":%" PRId64 ",\"pending\":%" PRId64
                          ",\"in_flight\":%" PRId64 ",\"done\":%" PRId64 ",\"failed\":%"
                          PRId64 ",\"bytes_done\":%" PRId64 ",\"bytes_pending\":%"
                          PRId64 ",\"items_per_s\":%.3f,\"bytes_per_s\":%.3f}",
                          x->v[0], x->v[1], x->v[2], x->v[3], x->v[4], x->v[5],
                          x->v[6], x->items_per_s, x->bytes_per_s);
    k->n++;
    k->last = x->id;
    return rc;
}

static void api_progress(struct tm__ui_req *q, struct tm__ui_resp *r)
{
    static const char *const allowed[] = { "since", "limit", NULL };
    struct recs k = { &r->body, 0, 0, 0, 0 };
    int64_t since, limit;
    int rc;
    if (check_params(q, r, allowed) ||
        get_int(q, r, "since", 0, INT64_MAX, -1, &since) ||
        get_int(q, r, "limit", 1, 10000, 3600, &limit) || need_conn(q, r))
        return;
    k.last = since > 0 ? since : 0;
    rc = tm__buf_adds(&r->body, "{\"rows\":[");
    if (!rc)
        rc = tm__uiq_queue_stats(q->conn->db, since, (int)limit, on_queue, &k);
    if (!rc)
        rc = tm__buf_addf(&r->body, "],\"last\":%" PRId64 "}\n", k.last);
    if (rc)
        resp_error(r, 500, tm_err_name(rc), "cannot read queue_stats");
}

/* --------------------------------------------------------------------------
 * GET /api/children: a folder's children from both trees, side by side.
 */

/* The state of one listing request. */
struct lctx {
    struct tm__ui_conn *c;     /* connection (and index) */
    struct tm__buf *b;         /* the output */
    const char *dir;           /* the folder's path */
    size_t dir_len;            /* its length */
    int64_t ps, pd;            /* the folder's rows: source, destination (0: none) */
    int desc;                  /* descending names */
    unsigned mask;             /* kinds wanted (0: all) */
    int limit, n;              /* rows wanted, written */
    char mode;                 /* 'A' all by name; 'F' folders, 'N' the rest;
                                  by bytes to copy: 'T' source folders, 'D'
                                  destination-only folders, then 'N' */
    int by_todo;               /* sort=todo */
    struct tm__buf cursor;     /* the last name handled */
    int64_t cursor_bytes;      /* mode 'T': the bytes to copy of that folder */
    int has_cursor;            /* cursor holds a name */
    int64_t deadline;          /* the time budget's end (monotonic ns) */
    int partial;               /* stopped by the budget */
};

/* 1 when a merged row is listed among the folders (its folder is in the
 * index on either side). */
static int indexed_folder(const struct lctx *x, const struct tm__uiq_row *s,
                          const struct tm__uiq_row *d)
{
    const struct tm__ui_gen *g = x->c->gen;
    return g && ((s && s->type == TM_T_FOLDER && s->id <= g->max_id[TM_SRC]) ||
                 (d && d->type == TM_T_FOLDER && d->id <= g->max_id[TM_DST]));
}

/* Writes one merged row if it passes the filter. */
static int emit(struct lctx *x, const struct nview *s, const struct nview *d)
{
    const struct tm__uiq_row *sr = s->r, *dr = d->r;
    const struct nview *v = sr ? s : d;
    struct tm__uiq_totals t;
    struct tm__buf *b = x->b;
    unsigned k = (sr ? tm__uiq_kinds(sr) : 0) | (dr ? tm__uiq_kinds(dr) : 0);
    int folder = (sr && sr->type == TM_T_FOLDER) || (dr && dr->type == TM_T_FOLDER);
    int have_t = folder && totals_of(x->c, sr, dr, &t);
    size_t name_len = v->r->name_len;
    int rc, i;

    if (x->mask && !(k & x->mask)) {
        /* a folder stays when what it holds has the kind */
        int below = 0;
        for (i = 0; have_t && i < UK_COUNT; i++)
            below |= (x->mask & (1u << i)) && t.n[i] > 0;
        if (!below)
            return 0;
    }
    rc = tm__buf_adds(b, x->n ? ",{\"name\":" : "{\"name\":");
    if (!rc) rc = tm__ui_json_str(b, v->name, name_len);
    if (!rc) rc = tm__buf_adds(b, ",\"path_hex\":");
    /* the folder's path, '/', the name: in hex, the exact bytes */
    if (!rc) {
        struct tm__buf p = TM__BUF_INIT;
        rc = tm__path_join(&p, x->dir, x->dir_len, v->name, name_len);
        if (!rc)
            rc = json_hex(b, p.buf, p.len);
        tm__buf_release(&p);
    }
    if (!rc)
        rc = tm__buf_addf(b, ",\"folder\":%s,\"state\":\"%s\",\"kinds\":",
                          folder ? "true" : "false", state_of(sr, dr));
    if (!rc) rc = json_kinds(b, k);
    if (!rc) rc = tm__buf_adds(b, ",\"src\":");
    if (!rc) rc = json_node(x->c, b, s);
    if (!rc) rc = tm__buf_adds(b, ",\"dst\":");
    if (!rc) rc = json_node(x->c, b, d);
    if (!rc) rc = tm__buf_adds(b, ",\"totals\":");
    if (!rc) rc = have_t ? json_totals(b, &t) : tm__buf_adds(b, "null");
    if (!rc) rc = tm__buf_addch(b, '}');
    x->n++;
    return rc;
}

/* Reads the next batch of a side after the cursor: children (modes A, N)
 * or indexed folders (mode F). */
static int fetch(struct lctx *x, int side, struct tm__uiq_rows *out)
{
    int64_t parent = side == TM_SRC ? x->ps : x->pd;
    tm__uiq_rows_reset(out);
    if (!parent)
        return 0;
    if (x->mode == 'F')
        return tm__uiq_index_folders(x->c->idx, side, parent, x->cursor.buf,
                                     x->cursor.len, x->has_cursor, x->desc, BATCH,
                                     out);
    return tm__uiq_children(x->c->db, side, parent, x->cursor.buf, x->cursor.len,
                            x->has_cursor, x->desc, BATCH, out);
}

/*
 * Merges the children of both sides by name from the cursor on, writing
 * the rows of the current mode, until the page is full (returns 0), both
 * sides are done (returns 1) or the time budget is spent (x->partial).
 */
static int walk(struct lctx *x)
{
    struct tm__uiq_rows s = TM__UIQ_ROWS_INIT, d = TM__UIQ_ROWS_INIT;
    struct tm__uiq_rows one_s = TM__UIQ_ROWS_INIT, one_d = TM__UIQ_ROWS_INIT;
    size_t i = 0, j = 0;
    int s_more = 0, d_more = 0, need = 1, rc = 0, seen = 0;

    while (!rc && x->n < x->limit) {
        int have_s, have_d, cmp;
        struct nview sv = { NULL, NULL, NULL }, dv = { NULL, NULL, NULL };
        const struct nview *named;
        if (need) {
            rc = fetch(x, TM_SRC, &s);
            if (!rc)
                rc = fetch(x, TM_DST, &d);
            s_more = s.n == BATCH;
            d_more = d.n == BATCH;
            i = j = 0;
            need = 0;
            if (rc)
                break;
        }
        have_s = i < s.n;
        have_d = j < d.n;
        if ((!have_s && s_more) || (!have_d && d_more)) {
            need = 1; /* a side's batch ran out: read both again from here */
            continue;
        }
        if (!have_s && !have_d) {
            rc = 1;
            break;
        }
        if (++seen % 64 == 0 && tm__now_ns() > x->deadline) {
            x->partial = 1;
            break;
        }
        if (!have_s || !have_d) {
            cmp = have_s ? -1 : 1; /* only one side is left */
        } else {
            cmp = tm__name_cmp(TM__UIQ_NAME(&s, i), s.v[i].name_len,
                               TM__UIQ_NAME(&d, j), d.v[j].name_len);
            if (x->desc)
                cmp = -cmp;
        }
        if (cmp <= 0)
            sv = view(&s, i++);
        if (cmp >= 0)
            dv = view(&d, j++);
        named = sv.r ? &sv : &dv;
        tm__buf_reset(&x->cursor);
        rc = tm__buf_add(&x->cursor, named->name, named->r->name_len);
        x->has_cursor = 1;
        if (rc)
            break;
        if (x->mode == 'F') {
            /* the index gives the names: read the rows themselves */
            tm__uiq_rows_reset(&one_s);
            tm__uiq_rows_reset(&one_d);
            if (x->ps)
                rc = tm__uiq_child(x->c->db, TM_SRC, x->ps, x->cursor.buf,
                                   x->cursor.len, &one_s);
            if (!rc && x->pd)
                rc = tm__uiq_child(x->c->db, TM_DST, x->pd, x->cursor.buf,
                                   x->cursor.len, &one_d);
            if (rc)
                break;
            if (!one_s.n && !one_d.n)
                continue; /* gone since the index was built */
            sv = one_s.n ? view(&one_s, 0) : (struct nview){ NULL, NULL, NULL };
            dv = one_d.n ? view(&one_d, 0) : (struct nview){ NULL, NULL, NULL };
        } else if (x->mode == 'N' && indexed_folder(x, sv.r, dv.r)) {
            continue; /* listed among the folders */
        }
        rc = emit(x, &sv, &dv);
    }
    tm__uiq_rows_release(&s);
    tm__uiq_rows_release(&d);
    tm__uiq_rows_release(&one_s);
    tm__uiq_rows_release(&one_d);
    return rc;
}

/*
 * The folders of one side of the index, in the order of the mode: 'T' the
 * source folders by bytes to copy below them, 'D' the destination's folders
 * by name, leaving out those that are source folders too (listed in 'T').
 * Returns as walk(): 0 page full, 1 done, or an error; x->partial.
 */
static int walk_one(struct lctx *x)
{
    struct tm__uiq_rows b = TM__UIQ_ROWS_INIT;
    struct tm__uiq_rows one_s = TM__UIQ_ROWS_INIT, one_d = TM__UIQ_ROWS_INIT;
    int rc = 0, seen = 0;

    while (!rc && x->n < x->limit) {
        size_t i;
        tm__uiq_rows_reset(&b);
        if (x->mode == 'T')
            rc = x->ps ? tm__uiq_index_by_todo(x->c->idx, x->ps, x->cursor_bytes,
                                               x->cursor.buf, x->cursor.len,
                                               x->has_cursor, BATCH, &b) : 0;
        else
            rc = x->pd ? tm__uiq_index_folders(x->c->idx, TM_DST, x->pd, x->cursor.buf,
                                               x->cursor.len, x->has_cursor, 0, BATCH,
                                               &b) : 0;
        if (rc)
            break;
        for (i = 0; i < b.n && !rc && x->n < x->limit; i++) {
            const char *name = TM__UIQ_NAME(&b, i);
            size_t len = b.v[i].name_len;
            struct nview sv = { NULL, NULL, NULL }, dv = { NULL, NULL, NULL };
            if (++seen % 64 == 0 && tm__now_ns() > x->deadline) {
                x->partial = 1;
                goto out;
            }
            tm__buf_reset(&x->cursor);
            rc = tm__buf_add(&x->cursor, name, len);
            x->has_cursor = 1;
            x->cursor_bytes = b.v[i].size;
            if (rc)
                break;
            if (x->mode == 'D' && x->ps &&
                tm__uiq_index_has(x->c->idx, TM_SRC, x->ps, name, len))
                continue; /* listed by its bytes */
            tm__uiq_rows_reset(&one_s);
            tm__uiq_rows_reset(&one_d);
            if (x->ps)
                rc = tm__uiq_child(x->c->db, TM_SRC, x->ps, name, len, &one_s);
            if (!rc && x->pd)
                rc = tm__uiq_child(x->c->db, TM_DST, x->pd, name, len, &one_d);
            if (rc || (!one_s.n && !one_d.n))
                continue; /* gone since the index was built */
            if (one_s.n)
                sv = view(&one_s, 0);
            if (one_d.n)
                dv = view(&one_d, 0);
            rc = emit(x, &sv, &dv);
        }
        if (!rc && i == b.n && b.n < BATCH)
            rc = 1; /* this side is done */
    }
out:
    tm__uiq_rows_release(&b);
    tm__uiq_rows_release(&one_s);
    tm__uiq_rows_release(&one_d);
    return rc;
}

/* Appends the breadcrumbs of path: [{"name":..,"path_hex":..},...]. */
static int json_crumbs(struct tm__buf *b, const char *path, size_t len)
{
    size_t i = 0;
    int rc = tm__buf_adds(b, "[{\"name\":\"/\",\"path_hex\":\"2f\"}");
    while (!rc && i < len) {
        size_t start;
        while (i < len && path[i] == '/')
            i++;
        if (i == len)
            break;
        start = i;
        while (i < len && path[i] != '/')
            i++;
        rc = tm__buf_adds(b, ",{\"name\":");
        if (!rc) rc = tm__ui_json_str(b, path + start, i - start);
        if (!rc) rc = tm__buf_adds(b, ",\"path_hex\":");
        if (!rc) rc = json_hex(b, path, i);
        if (!rc) rc = tm__buf_addch(b, '}');
    }
    return rc ? rc : tm__buf_addch(b, ']');
}

/* Parses a cursor: a mode letter, for 'T' the bytes and ':', and the hex
 * of a name. -1 with the answer. */
static int get_cursor(const struct tm__ui_req *q, struct tm__ui_resp *r,
                      struct lctx *x)
{
    const struct tm__ui_param *p = param(q, "after");
    size_t hex = 1;
    if (!p)
        return 0;
    if (p->val_len > 1 && p->val[0] == 'T') {
        int64_t v = 0;
        for (; hex < p->val_len && hex < 20 && p->val[hex] >= '0' && p->val[hex] <= '9';
             hex++)
            v = v * 10 + (p->val[hex] - '0');
        if (hex == 1 || hex >= p->val_len || p->val[hex] != ':')
            goto bad;
        x->cursor_bytes = v;
        hex++;
    }
    if (!p->val_len || !strchr("AFNTD", p->val[0]) || p->val[0] == '\0' ||
        p->val_len - hex > 2 * TM__UI_MAX_PATH ||
        tm__ui_unhex(p->val + hex, p->val_len - hex, &x->cursor) != 0)
        goto bad;
    x->mode = p->val[0];
    x->has_cursor = p->val_len > hex;
    return 0;
bad:
    resp_error(r, 400, "EINVAL", "after takes the cursor of a previous answer");
    return -1;
}

static void api_children(struct tm__ui_req *q, struct tm__ui_resp *r)
{
    static const char *const allowed[] = { "path", "path_hex", "sort", "kind",
                                           "after", "limit", NULL };
    static const char *const sorts[] = { "name", "name_desc", "todo" };
    struct tm__buf path = TM__BUF_INIT, *b = &r->body;
    struct tm__uiq_rows self = TM__UIQ_ROWS_INIT;
    struct lctx x;
    int sort, began = 0, rc = 0, done = 0;
    int64_t ps = 0, pd = 0;

    memset(&x, 0, sizeof x);
    tm__buf_init(&x.cursor);
    if (check_params(q, r, allowed) || get_path(q, r, &path) ||
        get_enum(q, r, "sort", sorts, 3, 0, &sort) || get_kind(q, r, &x.mask) ||
        get_limit(q, r, &x.limit) || get_cursor(q, r, &x) || need_conn(q, r))
        goto out;
    x.c = q->conn;
    x.b = b;
    x.dir = path.buf;
    x.dir_len = path.len;
    x.desc = sort == 1;
    x.by_todo = sort == 2;
    x.deadline = tm__now_ns() + BUDGET_NS;
    if (x.mode && x.mode != 'A' && !x.c->idx) {
        resp_error(r, 503, "EINDEX", "the folder index is not open: list the folder "
                   "again from its start");
        goto out;
    }
    if (!x.mode)
        x.mode = !x.c->idx ? 'A' : x.by_todo ? 'T' : 'F';
    began = tm__uiq_begin_read(x.c->db);
    rc = tm__uiq_find(x.c->db, TM_SRC, path.buf, path.len, &ps);
    if (rc == TM_ENOENT)
        rc = 0;
    if (!rc)
        rc = tm__uiq_find(x.c->db, TM_DST, path.buf, path.len, &pd);
    if (rc == TM_ENOENT)
        rc = 0;
    if (rc)
        goto fail;
    if (!ps && !pd) {
        resp_error(r, 404, "ENOENT", "no such path in either tree");
        goto out;
    }
    x.ps = ps;
    x.pd = pd;

    /* the folder itself */
    rc = tm__buf_adds(b, "{\"folder\":{\"path\":");
    if (!rc) rc = tm__ui_json_str(b, path.buf, path.len);
    if (!rc) rc = tm__buf_adds(b, ",\"path_hex\":");
    if (!rc) rc = json_hex(b, path.buf, path.len);
    if (!rc) rc = tm__buf_adds(b, ",\"crumbs\":");
    if (!rc) rc = json_crumbs(b, path.buf, path.len);
    if (!rc && ps)
        rc = tm__uiq_get(x.c->db, TM_SRC, ps, &self);
    if (!rc && pd)
        rc = tm__uiq_get(x.c->db, TM_DST, pd, &self);
    if (!rc) {
        struct nview sv = { NULL, NULL, NULL }, dv = { NULL, NULL, NULL };
        struct tm__uiq_totals t;
        size_t k = 0;
        if (ps)
            sv = view(&self, k++);
        if (pd)
            dv = view(&self, k);
        rc = tm__buf_adds(b, ",\"src\":");
        if (!rc) rc = json_node(x.c, b, &sv);
        if (!rc) rc = tm__buf_adds(b, ",\"dst\":");
        if (!rc) rc = json_node(x.c, b, &dv);
        if (!rc) rc = tm__buf_adds(b, ",\"totals\":");
        if (!rc)
            rc = totals_of(x.c, sv.r, dv.r, &t) ? json_totals(b, &t)
                                                 : tm__buf_adds(b, "null");
        if (!rc)
            rc = tm__buf_addf(b, ",\"folders_first\":%s},\"items\":[",
                              x.mode == 'A' ? "false" : "true");
    }
    /* the children: folders first when the index is there */
    while (!rc && !done && x.n < x.limit && !x.partial) {
        rc = x.mode == 'T' || x.mode == 'D' ? walk_one(&x) : walk(&x);
        if (rc == 1) {
            /* the next phase: T, D, N or F, N; A and N end the list */
            rc = 0;
            x.has_cursor = 0;
            tm__buf_reset(&x.cursor);
            if (x.mode == 'T')
                x.mode = 'D';
            else if (x.mode == 'F' || x.mode == 'D')
                x.mode = 'N';
            else
                done = 1;
        }
    }
    if (!rc)
        rc = tm__buf_adds(b, "],\"next\":");
    if (!rc && done) {
        rc = tm__buf_adds(b, "null");
    } else if (!rc) {
        rc = tm__buf_addf(b, "\"%c", x.mode);
        if (!rc && x.mode == 'T' && x.has_cursor)
            rc = tm__buf_addf(b, "%" PRId64 ":", x.cursor_bytes);
        if (!rc && x.has_cursor)
            rc = add_hex(b, x.cursor.buf, x.cursor.len);
        if (!rc) rc = tm__buf_addch(b, '"');
    }
    if (!rc)
        rc = tm__buf_addf(b, ",\"partial\":%s}\n", x.partial ? "true" : "false");
fail:
    if (rc)
        resp_error(r, 500, tm_err_name(rc), "cannot read the state file: %s",
                   tm__db_errmsg(x.c->db));
out:
    if (began)
        tm__uiq_end_read(x.c->db, began);
    tm__uiq_rows_release(&self);
    tm__buf_release(&x.cursor);
    tm__buf_release(&path);
}

/* --------------------------------------------------------------------------
 * GET /api/search: a glob and a kind over the whole of both trees.
 */

/* The reason shown with a search result. */
static int json_reason(struct tm__buf *b, const struct tm__uiq_rows *rows, size_t i)
{
    const struct tm__uiq_row *r = &rows->v[i];
    if (r->has_err)
        return tm__ui_json_str(b, TM__UIQ_ERR(rows, i), r->err_len);
    if (r->cf != CF_NONE)
        return tm__buf_addf(b, "\"%s\"", tm__cf_names[r->cf]);
    return tm__buf_adds(b, "null");
}

static void api_search(struct tm__ui_req *q, struct tm__ui_resp *r)
{
    static const char *const allowed[] = { "glob", "kind", "after", "limit", NULL };
    const struct tm__ui_param *g = param(q, "glob"), *a = param(q, "after");
    struct tm__uiq_rows rows = TM__UIQ_ROWS_INIT;
    struct tm__buf glob = TM__BUF_INIT, *b = &r->body;
    unsigned mask;
    int limit, side = TM_SRC, n = 0, rc = 0, done = 0, partial = 0;
    int64_t after = 0, max = 0, deadline = tm__now_ns() + BUDGET_NS;

    if (check_params(q, r, allowed) || get_kind(q, r, &mask) || get_limit(q, r, &limit))
        goto out;
    if (g) {
        if (!g->val_len || g->val_len > 4096 || memchr(g->val, '\0', g->val_len) ||
            memchr(g->val, '\n', g->val_len) ||
            (memchr(g->val, '/', g->val_len) && g->val[0] != '/')) {
            resp_error(r, 400, "EINVAL", "glob takes 1 to 4096 bytes without NUL or "
                       "newline; one with a '/' starts with '/' (it matches the path "
                       "from the root, one without matches names)");
            goto out;
        }
        if (tm__buf_add(&glob, g->val, g->val_len)) {
            resp_nomem(r);
            goto out;
        }
    }
    if (!g && !mask) {
        resp_error(r, 400, "EINVAL", "give a glob, a kind, or both");
        goto out;
    }
    if (a) {
        char *end = NULL;
        char tmp[24];
        if (a->val_len < 3 || a->val_len > 22 || a->val[1] != ':' ||
            (a->val[0] != 's' && a->val[0] != 'd')) {
            resp_error(r, 400, "EINVAL", "after takes the cursor of a previous answer");
            goto out;
        }
        memcpy(tmp, a->val + 2, a->val_len - 2);
        tmp[a->val_len - 2] = '\0';
        errno = 0;
        after = strtoll(tmp, &end, 10);
        if (errno || !end || *end || after < 0 || tmp[0] < '0' || tmp[0] > '9') {
            resp_error(r, 400, "EINVAL", "after takes the cursor of a previous answer");
            goto out;
        }
        side = a->val[0] == 's' ? TM_SRC : TM_DST;
    }
    if (need_conn(q, r))
        goto out;
    /* the destination only holds what the source does not: extras, and
     * its own failures */
    if (side == TM_DST && mask && !(mask & ((1u << UK_EXTRA) | (1u << UK_FAILED))))
        done = 1;
    if (!done && side == TM_SRC && mask == (1u << UK_EXTRA))
        side = TM_DST, after = 0;
    rc = tm__buf_adds(b, "{\"items\":[");
    while (!rc && !done && n < limit) {
        size_t i;
        rc = tm__uiq_max_id(q->conn->db, side, &max);
        if (rc)
            break;
        tm__uiq_rows_reset(&rows);
        rc = tm__uiq_scan(q->conn->db, side, after, 2048, &rows);
        for (i = 0; !rc && i < rows.n && n < limit; i++) {
            const struct tm__uiq_row *x = &rows.v[i];
            unsigned k = tm__uiq_kinds(x);
            const char *gp = glob.buf;
            after = x->id;
            if (x->depth == 0)
                continue;
            if (side == TM_DST && !(k & ((1u << UK_EXTRA) | (1u << UK_FAILED))))
                continue; /* a twin: its source row answers */
            if (mask ? !(k & mask) : 0)
                continue;
            if (g && !tm__filter_match(&gp, 1, TM__UIQ_PATH(&rows, i),
                                       TM__UIQ_NAME(&rows, i)))
                continue;
            rc = tm__buf_addf(b, "%s{\"side\":\"%s\",\"path\":", n ? "," : "",
                              side == TM_SRC ? "src" : "dst");
            if (!rc) rc = tm__ui_json_str(b, TM__UIQ_PATH(&rows, i), x->path_len);
            if (!rc) rc = tm__buf_adds(b, ",\"path_hex\":");
            if (!rc) rc = json_hex(b, TM__UIQ_PATH(&rows, i), x->path_len);
            if (!rc)
                rc = tm__buf_addf(b, ",\"type\":\"%s\",\"size\":%" PRId64 ",\"mtime\":%"
                                  PRId64 ",\"state\":\"%s\",\"kinds\":",
                                  type_name(x->type), x->size, x->mtime,
                                  side == TM_SRC ? state_of(x, NULL)
                                                 : state_of(NULL, x));
            if (!rc) rc = json_kinds(b, k);
            if (!rc) rc = tm__buf_adds(b, ",\"reason\":");
            if (!rc) rc = json_reason(b, &rows, i);
            if (!rc) rc = tm__buf_addch(b, '}');
            n++;
        }
        if (rc)
            break;
        if (rows.n < 2048 && (i == rows.n)) {
            /* this side is done: on to the destination when it matters */
            if (side == TM_SRC && (!mask || (mask & (1u << UK_FAILED)))) {
                side = TM_DST;
                after = 0;
            } else {
                done = 1;
            }
        }
        if (!done && n < limit && tm__now_ns() > deadline) {
            partial = 1;
            break;
        }
    }
    if (!rc)
        rc = done ? tm__buf_addf(b, "],\"next\":null")
                  : tm__buf_addf(b, "],\"next\":\"%c:%" PRId64 "\"",
                                 side == TM_SRC ? 's' : 'd', after);
    if (!rc)
        rc = tm__buf_addf(b, ",\"partial\":%s,\"scanned\":{\"side\":\"%s\",\"id\":%"
                          PRId64 ",\"max\":%" PRId64 "}}\n", partial ? "true" : "false",
                          side == TM_SRC ? "src" : "dst", after, max);
    if (rc)
        resp_error(r, 500, tm_err_name(rc), "cannot read the state file");
out:
    tm__uiq_rows_release(&rows);
    tm__buf_release(&glob);
}

/* --------------------------------------------------------------------------
 * GET /api/task_errors, /api/logs, /api/exclusions
 */

static int on_task_error(void *ctx, const struct tm__uiq_rec *x)
{
    struct recs *k = ctx;
    struct tm__buf *b = k->b;
    int rc = tm__buf_addf(b, "%s{\"id\":%" PRId64 ",\"time\":%" PRId64 ",\"phase\":",
                          k->n ? "," : "", x->id, x->time);
    if (!rc) rc = json_opt(b, x->a, x->a_len);
    if (!rc) rc = tm__buf_adds(b, ",\"queue\":");
    if (!rc) rc = json_opt(b, x->b, x->b_len);
    if (!rc) rc = tm__buf_adds(b, ",\"path\":");
    if (!rc) rc = json_opt(b, x->c, x->c_len);
    if (!rc && x->c) rc = tm__buf_adds(b, ",\"path_hex\":");
    if (!rc && x->c) rc = json_hex(b, x->c, x->c_len);
    if (!rc) rc = tm__buf_addf(b, ",\"attempts\":%" PRId64 ",\"message\":", x->attempts);
    if (!rc) rc = json_opt(b, x->d, x->d_len);
    if (!rc) rc = tm__buf_addch(b, '}');
    k->n++;
    k->last = x->id;
    return rc;
}

static void api_task_errors(struct tm__ui_req *q, struct tm__ui_resp *r)
{
    static const char *const allowed[] = { "before", "limit", NULL };
    struct recs k = { &r->body, 0, 0, 0, 0 };
    int64_t before;
    int limit, rc;
    if (check_params(q, r, allowed) || get_int(q, r, "before", 1, INT64_MAX, 0, &before) ||
        get_limit(q, r, &limit) || need_conn(q, r))
        return;
    rc = tm__buf_adds(&r->body, "{\"items\":[");
    if (!rc)
        rc = tm__uiq_task_errors(q->conn->db, before, limit, on_task_error, &k);
    if (!rc)
        rc = k.n == limit ? tm__buf_addf(&r->body, "],\"next\":%" PRId64 "}\n", k.last)
                          : tm__buf_adds(&r->body, "],\"next\":null}\n");
    if (rc)
        resp_error(r, 500, tm_err_name(rc), "cannot read task_errors");
}

static int on_log(void *ctx, const struct tm__uiq_rec *x)
{
    struct recs *k = ctx;
    struct tm__buf *b = k->b;
    size_t l;
    int rc = 0;
    k->scanned++;
    k->last = x->id;
    for (l = 0; l < N_LEVELS; l++)
        if (x->a && strlen(level_names[l]) == x->a_len &&
            !memcmp(level_names[l], x->a, x->a_len))
            break;
    if (l == N_LEVELS || !(k->levels & (1u << l)))
        return 0;
    rc = tm__buf_addf(b, "%s{\"id\":%" PRId64 ",\"time\":%" PRId64 ",\"level\":\"%s\","
                      "\"queue\":", k->n ? "," : "", x->id, x->time, level_names[l]);
    if (!rc) rc = json_opt(b, x->b, x->b_len);
    if (!rc) rc = tm__buf_adds(b, ",\"path\":");
    if (!rc) rc = json_opt(b, x->c, x->c_len);
    if (!rc) rc = tm__buf_adds(b, ",\"message\":");
    if (!rc) rc = json_opt(b, x->d, x->d_len);
    if (!rc) rc = tm__buf_addch(b, '}');
    k->n++;
    return rc;
}

/* Stops a logs read once the page is full. */
struct log_page {
    struct recs k;   /* as for the other records */
    int limit;       /* rows wanted */
};

static int on_log_page(void *ctx, const struct tm__uiq_rec *x)
{
    struct log_page *p = ctx;
    if (p->k.n >= p->limit)
        return 1; /* full: stop before this row, which the next page starts at */
    return on_log(&p->k, x);
}

static void api_logs(struct tm__ui_req *q, struct tm__ui_resp *r)
{
    static const char *const allowed[] = { "level", "before", "limit", NULL };
    struct log_page p;
    int64_t before, deadline = tm__now_ns() + BUDGET_NS;
    int level, rc = 0, done = 0, partial = 0;
    size_t l;

    memset(&p, 0, sizeof p);
    p.k.b = &r->body;
    if (check_params(q, r, allowed) ||
        get_enum(q, r, "level", level_names, (int)N_LEVELS, 2, &level) ||
        get_int(q, r, "before", 1, INT64_MAX, 0, &before) || get_limit(q, r, &p.limit) ||
        need_conn(q, r))
        return;
    for (l = (size_t)level; l < N_LEVELS; l++)
        p.k.levels |= 1u << l;
    rc = tm__buf_adds(&r->body, "{\"items\":[");
    /* newest first, in chunks, filtering the levels here: there is no
     * index by level, and a rare level must not scan the whole table in
     * one request */
    while (!rc && !done && p.k.n < p.limit) {
        int64_t scanned = p.k.scanned;
        rc = tm__uiq_logs(q->conn->db, before, 2048, on_log_page, &p);
        if (rc == 1) {
            rc = 0;
            break; /* full */
        }
        if (rc)
            break;
        if (p.k.scanned - scanned < 2048)
            done = 1;
        before = p.k.last;
        if (!done && tm__now_ns() > deadline) {
            partial = 1;
            break;
        }
    }
    /* the next page starts below the last row read */
    if (!rc)
        rc = done ? tm__buf_adds(&r->body, "],\"next\":null")
                  : tm__buf_addf(&r->body, "],\"next\":%" PRId64,
                                 p.k.n >= p.limit ? p.k.last + 0 : before);
    if (!rc)
        rc = tm__buf_addf(&r->body, ",\"partial\":%s}\n", partial ? "true" : "false");
    if (rc)
        resp_error(r, 500, tm_err_name(rc), "cannot read the logs");
}

static int on_exclusion(void *ctx, const struct tm__uiq_rec *x)
{
    struct recs *k = ctx;
    struct tm__buf *b = k->b;
    int rc = tm__buf_addf(b, "%s{\"path\":", k->n ? "," : "");
    if (!rc) rc = json_opt(b, x->a, x->a_len);
    if (!rc) rc = tm__buf_adds(b, ",\"path_hex\":");
    if (!rc) rc = json_hex(b, x->a ? x->a : "", x->a_len);
    if (!rc) rc = tm__buf_adds(b, ",\"pattern\":");
    if (!rc) rc = json_opt(b, x->b, x->b_len);
    if (!rc) rc = tm__buf_adds(b, ",\"time\":");
    if (!rc) rc = json_opt(b, x->c, x->c_len);
    if (!rc) rc = tm__buf_addch(b, '}');
    k->n++;
    return rc;
}

static void api_exclusions(struct tm__ui_req *q, struct tm__ui_resp *r)
{
    static const char *const allowed[] = { "limit", NULL };
    struct recs k = { &r->body, 0, 0, 0, 0 };
    int limit, rc;
    if (check_params(q, r, allowed) || get_limit(q, r, &limit) || need_conn(q, r))
        return;
    rc = tm__buf_adds(&r->body, "{\"items\":[");
    if (!rc)
        rc = tm__uiq_exclusions(q->conn->db, limit, on_exclusion, &k);
    if (!rc)
        rc = tm__buf_adds(&r->body, "]}\n");
    if (rc)
        resp_error(r, 500, tm_err_name(rc), "cannot read the exclusions");
}

/* --------------------------------------------------------------------------
 * POST /api/exclude
 */

/* Escapes * ? [ \ so that tm_exclude matches the path itself. */
static int escape_glob(struct tm__buf *out, const char *s, size_t len)
{
    size_t i;
    int rc = 0;
    for (i = 0; !rc && i < len; i++) {
        if (strchr("*?[\\", s[i]) && s[i])
            rc = tm__buf_addch(out, '\\');
        if (!rc)
            rc = tm__buf_addch(out, s[i]);
    }
    return rc;
}

/* The effect of a change as deltas of the fields of status --json. */
static int json_effect(struct tm__buf *b, const struct tm__exclude_effect *e)
{
    int64_t src_x = 0, dst_x = 0, pend = 0, bytes = 0, cf = 0, same = 0, skip = 0,
            cx = 0;
    size_t i;
    for (i = 0; i < e->delta.n; i++) {
        const struct tm__stat_key *k = &e->delta.rows[i].key;
        int64_t n = e->delta.rows[i].count;
        if (k->depth == 0)
            continue; /* status counts leave the roots out */
        if (k->table == 0 && k->status == TS_EXCLUDED)
            src_x += n;
        else if (k->table == 1 && k->status == TS_EXCLUDED)
            dst_x += n;
        if (k->table != 2)
            continue;
        if (k->conflict)
            cf += n;
        if (k->status == CS_PENDING) {
            pend += n;
            if (k->type == TM_T_FILE)
                bytes += e->delta.rows[i].bytes;
        }
        same += k->status == CS_ALREADY ? n : 0;
        skip += k->status == CS_SKIPPED ? n : 0;
        cx += k->status == CS_EXCLUDED ? n : 0;
    }
    return tm__buf_addf(b, "{\"src\":{\"excluded\":%" PRId64 "},\"dst\":{\"excluded\":%"
                        PRId64 "},\"copy\":{\"pending\":%" PRId64 ",\"bytes_pending\":%"
                        PRId64 ",\"conflicts\":%" PRId64 ",\"already_existed\":%" PRId64
                        ",\"skipped\":%" PRId64 ",\"excluded\":%" PRId64 "}}",
                        src_x, dst_x, pend, bytes, cf, same, skip, cx);
}

static int http_status_of(int rc)
{
    switch (rc) {
    case TM_EINVAL: return 400;
    case TM_ENODB: return 404;
    case TM_EPHASE:
    case TM_ELOCKED: return 409;
    default: return 500;
    }
}

static void api_exclude(struct tm__ui_req *q, struct tm__ui_resp *r)
{
    static const char *const allowed[] = { "pattern", "path", "path_hex", "unexclude",
                                           "dry_run", NULL };
    const struct tm__ui_param *pat = param(q, "pattern");
    struct tm__buf pattern = TM__BUF_INIT, path = TM__BUF_INIT;
    struct tm__exclude_effect eff;
    tm_migration *m = NULL;
    const char *pp;
    int64_t unexclude, dry;
    int rc, given = !!pat + !!param(q, "path") + !!param(q, "path_hex");

    memset(&eff, 0, sizeof eff);
    if (!q->post) {
        resp_error(r, 405, "EMETHOD", "exclude is a POST");
        goto out;
    }
    if (check_params(q, r, allowed) ||
        get_int(q, r, "unexclude", 0, 1, 0, &unexclude) ||
        get_int(q, r, "dry_run", 0, 1, 0, &dry))
        goto out;
    if (given != 1) {
        resp_error(r, 400, "EINVAL", "give one of pattern (a glob or path, as for "
                   "treemig exclude), path or path_hex (a node)");
        goto out;
    }
    if (pat) {
        if (!pat->val_len || pat->val_len > 4096 || memchr(pat->val, '\0', pat->val_len)) {
            resp_error(r, 400, "EINVAL", "pattern takes 1 to 4096 bytes without NUL");
            goto out;
        }
        rc = tm__buf_add(&pattern, pat->val, pat->val_len);
    } else {
        if (get_path(q, r, &path))
            goto out;
        if (path.len == 1) {
            resp_error(r, 400, "EINVAL", "the root cannot be excluded");
            goto out;
        }
        rc = escape_glob(&pattern, path.buf, path.len);
    }
    if (rc) {
        resp_nomem(r);
        goto out;
    }
    pp = pattern.buf;
    /* the code of treemig exclude, on a handle of its own that holds the
     * state file's lock for the time of the change */
    pthread_mutex_lock(&q->ui->write_mu);
    rc = tm_migration_open(&m, q->ui->db_path, TM_OPEN_WRITE);
    if (!rc)
        rc = tm__exclude_run(m, &pp, 1, (int)unexclude, (int)dry, &eff);
    if (rc) {
        resp_error(r, http_status_of(rc), tm_err_name(rc), "%s",
                   *tm_migration_errmsg(m) ? tm_migration_errmsg(m) : tm_strerror(rc));
    } else {
        struct tm__buf *b = &r->body;
        rc = tm__buf_addf(b, "{\"dry_run\":%s,\"unexclude\":%s,\"pattern\":",
                          dry ? "true" : "false", unexclude ? "true" : "false");
        if (!rc) rc = tm__ui_json_str(b, pattern.buf, pattern.len);
        if (!rc) rc = tm__buf_addf(b, ",\"changed\":%" PRId64 ",\"effect\":", eff.changed);
        if (!rc) rc = json_effect(b, &eff);
        if (!rc) rc = tm__buf_adds(b, "}\n");
        if (rc)
            resp_nomem(r);
    }
    tm_migration_free(m);
    pthread_mutex_unlock(&q->ui->write_mu);
    if (!dry && eff.changed)
        tm__ui_index_kick(&q->ui->index);
out:
    tm__stats_release(&eff.delta);
    tm__buf_release(&pattern);
    tm__buf_release(&path);
}

/* --------------------------------------------------------------------------
 * Routing.
 */

void tm__ui_api(struct tm__ui_req *q, struct tm__ui_resp *r)
{
    static const struct {
        const char *name;
        void (*fn)(struct tm__ui_req *, struct tm__ui_resp *);
        int post; /* 1: POST only; 0: GET only */
    } routes[] = {
        { "session", api_session, 0 },
        { "summary", api_summary, 0 },
        { "progress", api_progress, 0 },
        { "children", api_children, 0 },
        { "search", api_search, 0 },
        { "task_errors", api_task_errors, 0 },
        { "logs", api_logs, 0 },
        { "exclusions", api_exclusions, 0 },
        { "exclude", api_exclude, 1 },
    };
    size_t i;
    r->status = 200;
    for (i = 0; i < sizeof routes / sizeof *routes; i++) {
        if (strcmp(q->api, routes[i].name) != 0)
            continue;
        if (routes[i].post != q->post) {
            resp_error(r, 405, "EMETHOD", "/api/%s takes a %s", routes[i].name,
                       routes[i].post ? "POST" : "GET");
            return;
        }
        routes[i].fn(q, r);
        return;
    }
    resp_error(r, 404, "ENOENT", "no such API");
}
