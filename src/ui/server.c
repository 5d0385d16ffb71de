/*
 * server.c - the web server of `treemig ui`: libmicrohttpd on a socket we
 * bind ourselves (loopback unless asked), the checks every request passes
 * (Host header, access token, POST rules), the embedded assets, and the
 * pool of read-only connections that api.c answers with.
 *
 * Every request must carry the access token: the first URL (/?token=...)
 * sets it as a cookie (HttpOnly, SameSite=Strict) and redirects to /;
 * scripts send it in the X-Treemig-Token header. A POST (the only
 * requests that change the state file) needs the header itself, which a
 * page of another site cannot set, and is refused with --read-only. The
 * Host header must name this server by IP address or "localhost" with its
 * port, so that a DNS name rebound to 127.0.0.1 gets nothing. Only the
 * embedded files and /api/ answer; nothing is ever read from disk.
 *
 * Threads: tm_ui_start() and tm_ui_free() run on the caller's thread;
 * requests run on libmicrohttpd's pool threads (on_request), each with one
 * connection of the pool. Lock order: see ui_int.h.
 */
#include "ui/ui_int.h"

#include "migration/migration_int.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_PORT 8080
#define PORT_TRIES 100      /* 8080 .. 8179 */
#define POOL_THREADS 4      /* libmicrohttpd's threads */

static const char csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static const char no_token_page[] =
    "<!doctype html><meta charset=utf-8><title>treemig ui</title>"
    "<p>This page needs the address that <code>treemig ui</code> printed,"
    " with its <code>?token=</code>. Open that address again.</p>\n";

void tm_ui_options_init(tm_ui_options *o)
{
    memset(o, 0, sizeof *o);
}

const char *tm_ui_url(const tm_ui *ui)
{
    return ui ? ui->url.buf : "";
}

const char *tm_ui_errmsg(const tm_ui *ui)
{
    return ui ? ui->err.buf : "not enough memory";
}

/* --------------------------------------------------------------------------
 * Checks.
 */

int tm__ui_token_equal(const char *token, const char *a, size_t len)
{
    /* every byte of the token is compared whatever the input, so the time
     * taken says nothing about how much of a guess was right */
    volatile unsigned char d = len != TM__UI_TOKEN_LEN;
    size_t i;
    for (i = 0; i < TM__UI_TOKEN_LEN; i++)
        d |= (unsigned char)token[i] ^ (unsigned char)(i < len ? a[i] : 0);
    return a && d == 0;
}

/* Parses a decimal port "0".."65535" of n bytes; -1 when it is not one. */
static long parse_port(const char *s, size_t n)
{
    long v = 0;
    size_t i;
    if (n == 0 || n > 5)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= 65535 ? v : -1;
}

int tm__ui_host_ok(const char *host, int port)
{
    char name[64];
    const char *colon;
    size_t n;
    long p = 80;
    struct in6_addr a6;
    struct in_addr a4;

    if (!host)
        return 0;
    if (host[0] == '[') {
        const char *end = strchr(host, ']');
        if (!end || (size_t)(end - host - 1) >= sizeof name)
            return 0;
        n = (size_t)(end - host - 1);
        memcpy(name, host + 1, n);
        name[n] = '\0';
        if (inet_pton(AF_INET6, name, &a6) != 1)
            return 0;
        if (end[1] == ':')
            p = parse_port(end + 2, strlen(end + 2));
        else if (end[1] != '\0')
            return 0;
        return p == port;
    }
    colon = strchr(host, ':');
    n = colon ? (size_t)(colon - host) : strlen(host);
    if (n == 0 || n >= sizeof name)
        return 0;
    memcpy(name, host, n);
    name[n] = '\0';
    if (colon)
        p = parse_port(colon + 1, strlen(colon + 1));
    if (p != port)
        return 0;
    /* an IP address, or the one name that never leaves the machine: any
     * other name may be an attacker's, resolved to 127.0.0.1 */
    return inet_pton(AF_INET, name, &a4) == 1 || strcasecmp(name, "localhost") == 0;
}

int tm__ui_parse_listen(const char *s, struct sockaddr_storage *ss, int *loopback,
                        struct tm__buf *err)
{
    char name[64];
    const char *colon;
    size_t n;
    long port;

    memset(ss, 0, sizeof *ss);
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof name)
            goto bad;
        n = (size_t)(end - s - 1);
        memcpy(name, s + 1, n);
        name[n] = '\0';
        port = parse_port(end + 2, strlen(end + 2));
        if (port < 0 || inet_pton(AF_INET6, name, &a->sin6_addr) != 1)
            goto bad;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        *loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
        return 0;
    }
    colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof name)
        goto bad;
    n = (size_t)(colon - s);
    memcpy(name, s, n);
    name[n] = '\0';
    port = parse_port(colon + 1, strlen(colon + 1));
    if (port < 0)
        goto bad;
    {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (!strcasecmp(name, "localhost"))
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, name, &a->sin_addr) != 1)
            goto bad;
        *loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    return 0;
bad:
    tm__buf_reset(err);
    tm__buf_addf(err, "--listen takes ADDR:PORT with ADDR an IPv4 address, an "
                 "IPv6 address in brackets or localhost, and PORT 0 to 65535 "
                 "(e.g. 127.0.0.1:8080), not '%s'", s);
    return TM_EINVAL;
}

/* --------------------------------------------------------------------------
 * The embedded assets.
 */

const unsigned char *tm__ui_asset(const char *url, size_t *len, const char **type)
{
    static const struct {
        const char *url, *file, *type;
    } routes[] = {
        { "/", "index.html", "text/html; charset=utf-8" },
        { "/app.js", "app.js", "text/javascript; charset=utf-8" },
        { "/app.css", "app.css", "text/css; charset=utf-8" },
    };
    size_t i, j;
    /* exact names only: no path is ever joined, decoded or normalized */
    for (i = 0; i < sizeof routes / sizeof *routes; i++) {
        if (strcmp(url, routes[i].url) != 0)
            continue;
        for (j = 0; j < tm__ui_n_assets; j++) {
            if (!strcmp(tm__ui_assets[j].name, routes[i].file)) {
                *len = tm__ui_assets[j].len;
                *type = routes[i].type;
                return tm__ui_assets[j].data;
            }
        }
    }
    return NULL;
}

/* --------------------------------------------------------------------------
 * The pool of read-only connections.
 */

/* Opens a new read-only connection into *out; err gets the message. */
static int conn_open(struct tm_ui *ui, struct tm__ui_conn **out, struct tm__buf *err)
{
    struct tm__ui_conn *c = calloc(1, sizeof *c);
    int rc = c ? tm_migration_open(&c->m, ui->db_path, TM_OPEN_READONLY) : TM_ENOMEM;
    *out = NULL;
    if (rc) {
        tm__buf_reset(err);
        tm__buf_adds(err, c ? tm_migration_errmsg(c->m) : tm_strerror(rc));
        if (c)
            tm_migration_free(c->m);
        free(c);
        return rc;
    }
    c->db = tm__migration_db(c->m);
    *out = c;
    return 0;
}

struct tm__ui_conn *tm__ui_conn_get(struct tm_ui *ui, struct tm__buf *err)
{
    struct tm__ui_conn *c;
    pthread_mutex_lock(&ui->pool_mu);
    c = ui->free_conns;
    if (c)
        ui->free_conns = c->next;
    pthread_mutex_unlock(&ui->pool_mu);
    if (!c && conn_open(ui, &c, err) != 0)
        return NULL;
    c->next = NULL;
    tm__ui_index_attach(&ui->index, c);
    return c;
}

void tm__ui_conn_put(struct tm_ui *ui, struct tm__ui_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&ui->pool_mu);
    c->next = ui->free_conns;
    ui->free_conns = c;
    pthread_mutex_unlock(&ui->pool_mu);
}

static void conns_close(struct tm_ui *ui)
{
    struct tm__ui_conn *c, *next;
    for (c = ui->free_conns; c; c = next) {
        next = c->next;
        tm__ui_index_detach(&ui->index, c);
        tm_migration_free(c->m);
        free(c);
    }
    ui->free_conns = NULL;
}

/* --------------------------------------------------------------------------
 * Requests.
 */

/* What a request keeps between libmicrohttpd's calls. */
struct req_state {
    struct tm__buf body;      /* the POST body so far */
    int too_big;              /* it went over TM__UI_MAX_BODY */
    int64_t t0;               /* when the request arrived (ns) */
};

/* Parameters being collected from the query string. */
struct params {
    struct tm__ui_param *v;   /* the parameters */
    size_t n, alloc;          /* used, allocated */
    int bad;                  /* out of memory or too many */
};

static int params_add(struct params *p, const char *k, size_t kl, const char *v,
                      size_t vl)
{
    if (p->n == p->alloc) {
        struct tm__ui_param *nv;
        if (p->alloc >= 64) {
            p->bad = 1; /* no request of the API has so many */
            return -1;
        }
        nv = realloc(p->v, (p->alloc ? p->alloc * 2 : 8) * sizeof *nv);
        if (!nv) {
            p->bad = 1;
            return -1;
        }
        p->v = nv;
        p->alloc = p->alloc ? p->alloc * 2 : 8;
    }
    p->v[p->n].key = k;
    p->v[p->n].key_len = kl;
    p->v[p->n].val = v ? v : "";
    p->v[p->n].val_len = v ? vl : 0;
    p->n++;
    return 0;
}

static enum MHD_Result on_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                              size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    return params_add(cls, key, key_size, value, value_size) ? MHD_NO : MHD_YES;
}

int tm__ui_unpercent(const char *s, size_t len, struct tm__buf *out)
{
    size_t i;
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= len)
                return TM_EINVAL;
            h = (unsigned char)s[i + 1];
            l = (unsigned char)s[i + 2];
#define HEXV(x) ((x) >= '0' && (x) <= '9' ? (x) - '0' : \
                 (x) >= 'a' && (x) <= 'f' ? (x) - 'a' + 10 : \
                 (x) >= 'A' && (x) <= 'F' ? (x) - 'A' + 10 : -1)
            if (HEXV(h) < 0 || HEXV(l) < 0)
                return TM_EINVAL;
            c = (char)(HEXV(h) * 16 + HEXV(l));
#undef HEXV
            i += 2;
        }
        if (tm__buf_addch(out, c))
            return TM_ENOMEM;
    }
    return 0;
}

/*
 * Parses an application/x-www-form-urlencoded body into p; the decoded
 * keys and values go to arena (NUL-separated; offsets fixed up at the
 * end, as the arena may move while it grows). 0, or TM_EINVAL.
 */
static int parse_form(const char *s, size_t len, struct tm__buf *arena,
                      struct params *p)
{
    size_t i = 0, k;
    int rc = 0;
    while (i < len && !rc) {
        size_t end = i, eq;
        size_t ko, kl, vo, vl;
        while (end < len && s[end] != '&')
            end++;
        eq = i;
        while (eq < end && s[eq] != '=')
            eq++;
        ko = arena->len;
        rc = tm__ui_unpercent(s + i, eq - i, arena);
        kl = arena->len - ko;
        if (!rc)
            rc = tm__buf_addch(arena, '\0');
        vo = arena->len;
        if (!rc && eq < end)
            rc = tm__ui_unpercent(s + eq + 1, end - eq - 1, arena);
        vl = arena->len - vo;
        if (!rc)
            rc = tm__buf_addch(arena, '\0');
        /* offsets for now (the arena may move), pointers below */
        if (!rc && (end > i) && params_add(p, (const char *)(uintptr_t)ko, kl,
                                           (const char *)(uintptr_t)vo, vl))
            rc = TM_ENOMEM;
        i = end + 1;
    }
    for (k = 0; k < p->n && !rc; k++) {
        p->v[k].key = arena->buf + (uintptr_t)p->v[k].key;
        p->v[k].val = arena->buf + (uintptr_t)p->v[k].val;
    }
    return rc;
}

static void add_common_headers(struct MHD_Response *r, int api)
{
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Content-Security-Policy", csp);
    MHD_add_response_header(r, "Cross-Origin-Opener-Policy", "same-origin");
    MHD_add_response_header(r, "Cross-Origin-Resource-Policy", "same-origin");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    (void)api;
}

static enum MHD_Result send_buf(struct MHD_Connection *c, int status, const void *data,
                                size_t len, const char *type, int copy,
                                const char *timing)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)data, copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;
    if (!r)
        return MHD_NO;
    add_common_headers(r, 0);
    MHD_add_response_header(r, "Content-Type", type);
    if (timing)
        MHD_add_response_header(r, "Server-Timing", timing);
    ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* A JSON error {"error": msg, "code": code}. */
static enum MHD_Result send_error(struct MHD_Connection *c, int status,
                                  const char *code, const char *msg)
{
    struct tm__buf b = TM__BUF_INIT;
    enum MHD_Result ret;
    if (tm__buf_adds(&b, "{\"error\":") || tm__ui_json_str(&b, msg, strlen(msg)) ||
        tm__buf_addf(&b, ",\"code\":\"%s\"}\n", code)) {
        tm__buf_release(&b);
        return MHD_NO;
    }
    ret = send_buf(c, status, b.buf, b.len, "application/json", 1, NULL);
    tm__buf_release(&b);
    return ret;
}

/* The token the request carries: X-Treemig-Token, else the cookie. */
static int has_token(struct tm_ui *ui, struct MHD_Connection *c, int header_only)
{
    const char *v = NULL;
    size_t n = 0;
    if (MHD_lookup_connection_value_n(c, MHD_HEADER_KIND, "X-Treemig-Token", 15, &v,
                                      &n) == MHD_YES && v)
        return tm__ui_token_equal(ui->token, v, n);
    if (header_only)
        return 0;
    v = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, ui->cookie);
    return v && tm__ui_token_equal(ui->token, v, strlen(v));
}

/* An Origin header, when present, must be this server (same Host). */
static int origin_ok(struct MHD_Connection *c, const char *host)
{
    const char *o = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!o)
        return 1;
    return !strncmp(o, "http://", 7) && !strcmp(o + 7, host);
}

static enum MHD_Result answer_api(struct tm_ui *ui, struct MHD_Connection *c,
                                  const char *url, int post, struct req_state *rs)
{
    struct params p = { NULL, 0, 0, 0 };
    struct tm__buf arena = TM__BUF_INIT;
    struct tm__ui_req req;
    struct tm__ui_resp resp;
    enum MHD_Result ret;
    char timing[64];

    memset(&req, 0, sizeof req);
    resp.status = 200;
    tm__buf_init(&resp.body);
    if (post) {
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     "Content-Type");
        if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0 ||
            (ct[33] != '\0' && ct[33] != ';'))
            return send_error(c, 415, "EINVAL", "a POST takes an "
                              "application/x-www-form-urlencoded body");
        if (rs->too_big)
            return send_error(c, 413, "EINVAL", "the request body is too large");
        if (parse_form(rs->body.buf, rs->body.len, &arena, &p) || p.bad) {
            free(p.v);
            tm__buf_release(&arena);
            return send_error(c, 400, "EINVAL", "malformed form body");
        }
    } else {
        MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, on_arg, &p);
        if (p.bad) {
            free(p.v);
            return send_error(c, 400, "EINVAL", "too many query parameters");
        }
    }
    req.ui = ui;
    req.post = post;
    req.api = url + 5; /* after "/api/" */
    req.params = p.v;
    req.n_params = p.n;
    tm__ui_api(&req, &resp);
    tm__ui_conn_put(ui, req.conn);
    snprintf(timing, sizeof timing, "app;dur=%.3f",
             (double)(tm__now_ns() - rs->t0) / 1e6);
    ret = send_buf(c, resp.status, resp.body.buf, resp.body.len,
                   "application/json", 1, timing);
    tm__buf_release(&resp.body);
    tm__buf_release(&arena);
    free(p.v);
    return ret;
}

static enum MHD_Result answer(struct tm_ui *ui, struct MHD_Connection *c,
                              const char *url, const char *method,
                              struct req_state *rs)
{
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    int post = !strcmp(method, "POST");
    const unsigned char *data;
    const char *type;
    size_t len;

    if (!tm__ui_host_ok(host, ui->port))
        return send_error(c, 403, "EHOST", "the Host header must name this server "
                          "by its IP address or localhost, with its port");
    if (!post && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return send_error(c, 405, "EMETHOD", "only GET, HEAD and POST are served");
    if (!strcmp(url, "/")) {
        const char *t = NULL;
        size_t n = 0;
        if (!post && MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "token", 5,
                                                   &t, &n) == MHD_YES) {
            struct MHD_Response *r;
            char cookie[160];
            enum MHD_Result ret;
            if (!t || !tm__ui_token_equal(ui->token, t, n))
                return send_error(c, 403, "ETOKEN", "wrong access token");
            /* the token leaves the address bar and the history */
            r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
            if (!r)
                return MHD_NO;
            add_common_headers(r, 0);
            snprintf(cookie, sizeof cookie, "%s=%s; Path=/; HttpOnly; SameSite=Strict",
                     ui->cookie, ui->token);
            MHD_add_response_header(r, "Set-Cookie", cookie);
            MHD_add_response_header(r, "Location", "/");
            ret = MHD_queue_response(c, 303, r);
            MHD_destroy_response(r);
            return ret;
        }
    }
    if (!has_token(ui, c, 0)) {
        if (!strcmp(url, "/"))
            return send_buf(c, 401, no_token_page, sizeof no_token_page - 1,
                            "text/html; charset=utf-8", 0, NULL);
        return send_error(c, 401, "ETOKEN", "this request needs the access token "
                          "(the cookie set by the URL treemig ui printed, or the "
                          "X-Treemig-Token header)");
    }
    if (post) {
        if (strncmp(url, "/api/", 5) != 0)
            return send_error(c, 405, "EMETHOD", "only /api/ takes a POST");
        if (!has_token(ui, c, 1))
            return send_error(c, 403, "ETOKEN", "a POST must carry the access token "
                              "in the X-Treemig-Token header");
        if (!origin_ok(c, host))
            return send_error(c, 403, "EORIGIN", "the Origin header names another "
                              "site");
        if (ui->read_only)
            return send_error(c, 403, "EREADONLY", "treemig ui runs with --read-only: "
                              "it changes nothing");
    }
    if (!strncmp(url, "/api/", 5))
        return answer_api(ui, c, url, post, rs);
    if (post)
        return send_error(c, 405, "EMETHOD", "only /api/ takes a POST");
    data = tm__ui_asset(url, &len, &type);
    if (!data)
        return send_error(c, 404, "ENOENT", "no such page");
    return send_buf(c, 200, data, len, type, 0, NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size,
                                  void **con_cls)
{
    struct tm_ui *ui = cls;
    struct req_state *rs = *con_cls;
    (void)version;
    if (!rs) {
        rs = calloc(1, sizeof *rs);
        if (!rs)
            return MHD_NO;
        tm__buf_init(&rs->body);
        rs->t0 = tm__now_ns();
        *con_cls = rs;
        return MHD_YES;
    }
    if (*upload_size) {
        /* over the limit (or out of memory): the answer will be 413 */
        if (rs->body.len + *upload_size > TM__UI_MAX_BODY ||
            tm__buf_add(&rs->body, upload, *upload_size))
            rs->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    return answer(ui, c, url, method, rs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req_state *rs = *con_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (rs) {
        tm__buf_release(&rs->body);
        free(rs);
    }
    *con_cls = NULL;
}

/*
 * Decodes %XX escapes in place (the path and the query parameters), as
 * libmicrohttpd does, except %00: a NUL byte would cut "/app.js%00..." to
 * "/app.js" and hide the rest of a parameter, so it stays the three
 * characters it was. No name holds a NUL, so nothing is lost.
 */
static size_t on_unescape(void *cls, struct MHD_Connection *c, char *s)
{
#define HEXV(x) ((x) >= '0' && (x) <= '9' ? (x) - '0' : \
                 (x) >= 'a' && (x) <= 'f' ? (x) - 'a' + 10 : \
                 (x) >= 'A' && (x) <= 'F' ? (x) - 'A' + 10 : -1)
    char *r = s, *w = s;
    (void)cls;
    (void)c;
    while (*r) {
        int h = r[0] == '%' && r[1] ? HEXV(r[1]) : -1;
        int l = h >= 0 && r[2] ? HEXV(r[2]) : -1;
        if (h >= 0 && l >= 0 && (h | l) != 0) {
            *w++ = (char)(h * 16 + l);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
#undef HEXV
    *w = '\0';
    return (size_t)(w - s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    (void)fmt;
    (void)ap; /* libmicrohttpd's own messages: not for the user */
}

/* --------------------------------------------------------------------------
 * Start and stop.
 */

/* Binds and listens on ss (port 0 of the default: 8080, else the next free
 * one); fills ui->port. Returns the socket or -errno. */
static int listen_on(struct sockaddr_storage *ss, int default_port, struct tm_ui *ui)
{
    int tries = default_port ? PORT_TRIES : 1, i, fd = -1, e = 0, one = 1;
    socklen_t sl = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                             : sizeof(struct sockaddr_in);
    for (i = 0; i < tries; i++) {
        if (default_port)
            ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)(DEFAULT_PORT + i));
        fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ss->ss_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)ss, sl) == 0 && listen(fd, 64) == 0)
            break;
        e = errno;
        close(fd);
        fd = -1;
        if (e != EADDRINUSE)
            break;
    }
    if (fd < 0)
        return -e;
    {
        struct sockaddr_storage got;
        socklen_t gl = sizeof got;
        memset(&got, 0, sizeof got);
        if (getsockname(fd, (struct sockaddr *)&got, &gl) == 0)
            ui->port = ntohs(got.ss_family == AF_INET6
                                 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                 : ((struct sockaddr_in *)&got)->sin_port);
    }
    return fd;
}

int tm_ui_start(tm_ui **out, const char *db_path, const tm_ui_options *o)
{
    tm_ui *ui = calloc(1, sizeof *ui);
    struct sockaddr_storage ss;
    struct tm__ui_conn *first;
    unsigned char raw[TM__UI_TOKEN_LEN / 2];
    const char *listen = o && o->listen ? o->listen : NULL;
    int rc = 0, fd, i;

    *out = ui;
    if (!ui)
        return TM_ENOMEM;
    tm__buf_init(&ui->url);
    tm__buf_init(&ui->err);
    ui->listen_fd = -1;
    pthread_mutex_init(&ui->pool_mu, NULL);
    pthread_mutex_init(&ui->write_mu, NULL);
    ui->read_only = o ? o->read_only : 0;
    ui->db_path = strdup(db_path ? db_path : "treemig.db");
    if (!ui->db_path)
        return TM_ENOMEM;

    /* the address, and the warning before anything listens */
    if (listen) {
        rc = tm__ui_parse_listen(listen, &ss, &ui->loopback, &ui->err);
        if (rc)
            return rc;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        memset(&ss, 0, sizeof ss);
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ui->loopback = 1;
    }
    if (ss.ss_family == AF_INET6) {
        char t[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, t, sizeof t);
        snprintf(ui->addr, sizeof ui->addr, "[%s]", t);
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ui->addr,
                  sizeof ui->addr);
    }
    if (!ui->loopback && o && o->warn) {
        struct tm__buf w = TM__BUF_INIT;
        if (!tm__buf_addf(&w, "warning: %s is not a loopback address: anyone who "
                          "can reach it and learns the URL can read the plan and "
                          "change it (with --read-only, read it); the traffic is "
                          "not encrypted (prefer an SSH tunnel to 127.0.0.1)",
                          listen))
            o->warn(o->warn_ctx, w.buf);
        tm__buf_release(&w);
    }

    /* the state file must open before anything listens */
    rc = conn_open(ui, &first, &ui->err);
    if (rc)
        return rc;
    tm__ui_conn_put(ui, first);

    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        tm__buf_adds(&ui->err, "cannot draw a random token (getrandom)");
        return TM_EIO;
    }
    for (i = 0; i < (int)sizeof raw; i++)
        snprintf(ui->token + 2 * i, 3, "%02x", raw[i]);

    fd = listen_on(&ss, listen == NULL, ui);
    if (fd < 0) {
        rc = tm__from_errno(-fd);
        tm__buf_addf(&ui->err, "cannot listen on %s:%s: %s", ui->addr,
                     listen ? strrchr(listen, ':') + 1 : "8080..8179",
                     tm_strerror(rc));
        return rc;
    }
    snprintf(ui->cookie, sizeof ui->cookie, "treemig_%d", ui->port);
    rc = tm__ui_index_start(&ui->index, ui->db_path);
    if (rc) {
        close(fd);
        tm__buf_adds(&ui->err, "cannot start the index thread");
        return rc;
    }
    ui->daemon = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
        0, NULL, NULL, on_request, ui,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)POOL_THREADS,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, ui,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, ui,
        MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, ui,
        MHD_OPTION_END);
    if (!ui->daemon) {
        close(fd);
        tm__buf_addf(&ui->err, "cannot start the web server on %s:%d", ui->addr,
                     ui->port);
        return TM_EIO;
    }
    if (tm__buf_addf(&ui->url, "http://%s:%d/?token=%s",
                     ui->loopback && ss.ss_family == AF_INET &&
                             ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) ==
                                 INADDR_LOOPBACK ? "127.0.0.1" : ui->addr,
                     ui->port, ui->token))
        return TM_ENOMEM;
    return 0;
}

void tm_ui_free(tm_ui *ui)
{
    if (!ui)
        return;
    if (ui->daemon)
        MHD_stop_daemon(ui->daemon); /* waits for the requests under way */
    conns_close(ui);
    tm__ui_index_stop(&ui->index);
    pthread_mutex_destroy(&ui->pool_mu);
    pthread_mutex_destroy(&ui->write_mu);
    free(ui->db_path);
    tm__buf_release(&ui->url);
    tm__buf_release(&ui->err);
    free(ui);
}
