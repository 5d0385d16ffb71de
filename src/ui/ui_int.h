/*
 * ui_int.h - the parts of `treemig ui` (src/ui/) that its files share: the
 * server handle, the pool of read-only connections to the state file, the
 * folder index built in the background (index.c), the request checks
 * (server.c) and the JSON API (api.c). Private to src/ui and its tests.
 *
 * Threads: libmicrohttpd's pool threads run the requests, each with one
 * connection of the pool at a time; the index thread builds the folder
 * index; the thread that called tm_ui_start() stops it all.
 * Lock order: tm_ui.write_mu, then tm_ui.pool_mu or tm__ui_index.mu, never
 * the last two together (gen refcounts are changed under index.mu only).
 */
#ifndef TM_UI_INT_H
#define TM_UI_INT_H

#include <pthread.h>
#include "store/db.h"
#include <stddef.h>
#include <stdint.h>

#include "store/ui_query.h"
#include "treemig.h"
#include "util/buf.h"

#define TM__UI_TOKEN_LEN 64     /* hex digits of the access token */
#define TM__UI_MAX_LIMIT 1000   /* largest page a request may ask for */
#define TM__UI_MAX_PATH 65536   /* largest path a request may name, bytes */
#define TM__UI_MAX_BODY 65536   /* largest POST body */

/* One built folder index (a temporary SQLite file). */
struct tm__ui_gen {
    char *path;        /* the file; unlinked when the last user is gone */
    int64_t max_id[2]; /* the largest id read per side: rows above are new */
    int64_t built;     /* wall ns when its build started */
    int refs;          /* connections that opened it, + 1 while current */
};

/* The folder index and its builder thread. */
struct tm__ui_index {
    pthread_t thread;         /* the builder */
    int started;              /* thread runs */
    pthread_mutex_t mu;       /* guards every field below */
    pthread_cond_t cv;        /* wakes the builder (kick, stop) */
    char *db_path;            /* the state file */
    struct tm__ui_gen *cur;   /* the newest complete index, or NULL */
    int building;             /* a build runs now */
    double progress;          /* of that build, 0 .. 1 */
    int kick;                 /* a change was made here: rebuild soon */
    int stop;                 /* the server stops */
    int64_t duration_ns;      /* of the last complete build */
    struct tm__buf err;       /* why the last build failed, or "" */
};

/* One read-only handle on the state file, lent to one request at a time. */
struct tm__ui_conn {
    tm_migration *m;          /* read-only handle (tm_status_get) */
    struct tm__db *db;              /* its connection */
    struct tm__db *idx;             /* the folder index of gen, or NULL */
    struct tm__ui_gen *gen;   /* the generation idx belongs to (a ref) */
    struct tm__ui_conn *next; /* in the free list */
};

struct tm_ui {
    struct MHD_Daemon *daemon;   /* libmicrohttpd */
    int listen_fd;               /* our listening socket (MHD closes it) */
    char *db_path;               /* the state file */
    int read_only;               /* refuse changes */
    int loopback;                /* listening on a loopback address */
    int port;                    /* the port listened on */
    char addr[64];               /* the address as printed (IPv6 in []) */
    char token[TM__UI_TOKEN_LEN + 1]; /* the access token, hex */
    char cookie[32];             /* the cookie's name: treemig_PORT */
    struct tm__buf url;          /* the URL with the token */
    pthread_mutex_t pool_mu;     /* guards free_conns */
    struct tm__ui_conn *free_conns; /* connections not lent */
    pthread_mutex_t write_mu;    /* one change of the state file at a time */
    struct tm__ui_index index;   /* the folder index */
    struct tm__buf err;          /* the message of a failed start */
};

/* A request as api.c sees it. */
struct tm__ui_param {
    const char *key, *val;      /* key and value (percent-decoded) */
    size_t key_len, val_len;    /* their lengths (val may hold any byte) */
};

struct tm__ui_req {
    struct tm_ui *ui;           /* the server */
    int post;                   /* POST (else GET or HEAD) */
    const char *api;            /* the path after /api/ */
    struct tm__ui_param *params; /* query (GET) or form body (POST) */
    size_t n_params;            /* parameters */
    struct tm__ui_conn *conn;   /* the connection lent, or NULL */
};

/* The answer: status and JSON body. */
struct tm__ui_resp {
    int status;                 /* HTTP status */
    struct tm__buf body;        /* JSON */
};

/* api.c: answers an API request into resp (always a JSON body). */
void tm__ui_api(struct tm__ui_req *req, struct tm__ui_resp *resp);

/* server.c: lends a connection (NULL when none can be opened: *err says
 * why); gives it back. */
struct tm__ui_conn *tm__ui_conn_get(struct tm_ui *ui, struct tm__buf *err);
void tm__ui_conn_put(struct tm_ui *ui, struct tm__ui_conn *c);

/* index.c */
int tm__ui_index_start(struct tm__ui_index *x, const char *db_path);
void tm__ui_index_stop(struct tm__ui_index *x);
/* Points c->idx at the current index (opening it when it changed). */
void tm__ui_index_attach(struct tm__ui_index *x, struct tm__ui_conn *c);
/* Lets c go of its index. */
void tm__ui_index_detach(struct tm__ui_index *x, struct tm__ui_conn *c);
/* Asks for a rebuild now (after a change made through the page). */
void tm__ui_index_kick(struct tm__ui_index *x);
/* Appends the index's state as JSON members ("index":{...}). */
int tm__ui_index_json(struct tm__ui_index *x, struct tm__buf *b);

/* Checks (server.c), exposed for the unit tests. */
/* 1 when a (len bytes) is the token, compared in constant time. */
int tm__ui_token_equal(const char *token, const char *a, size_t len);
/* 1 when a Host header names this server: an IP literal or localhost, with
 * the port listened on. */
int tm__ui_host_ok(const char *host, int port);
/* Parses "ADDR:PORT" (IPv4, [IPv6] or localhost) into a socket address;
 * *loopback tells whether it is a loopback address. 0, or TM_EINVAL with
 * err. */
struct sockaddr_storage;
int tm__ui_parse_listen(const char *s, struct sockaddr_storage *ss, int *loopback,
                        struct tm__buf *err);
/* The files of src/ui/assets/, embedded at build time (assets.c, made by
 * src/ui/embed.cmake). */
struct tm__ui_asset_file {
    const char *name;          /* file name: "index.html", "app.js", ... */
    const unsigned char *data; /* its bytes */
    size_t len;                /* their count */
};
extern const struct tm__ui_asset_file tm__ui_assets[];
extern const size_t tm__ui_n_assets;
/* The embedded asset at url ("/", "/app.js", ...), or NULL. */
const unsigned char *tm__ui_asset(const char *url, size_t *len, const char **type);

/* api.c helpers, exposed for the unit tests. */
/* Appends s as a JSON string that is also safe inside HTML: <, >, &, ' and
 * the line separators escaped; bytes that are not UTF-8 as \u00XX. */
int tm__ui_json_str(struct tm__buf *b, const char *s, size_t len);
/* Decodes hex (even length, 0-9a-fA-F) into out; TM_EINVAL otherwise. */
int tm__ui_unhex(const char *s, size_t len, struct tm__buf *out);
/* Percent-decodes s into out (%XX only; '+' stays '+'); TM_EINVAL on a
 * malformed escape. */
int tm__ui_unpercent(const char *s, size_t len, struct tm__buf *out);

#endif
