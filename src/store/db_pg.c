/*
 * db_pg.c - the PostgreSQL backend of the store's database layer (db.h),
 * on libpq. Statements arrive in SQLite's dialect and are translated when
 * prepared (tm__db_pg_translate): ?N parameters become $N, INSERT OR
 * IGNORE/REPLACE become ON CONFLICT clauses, SQLite's types and PRAGMAs
 * their PostgreSQL counterparts. A statement's parameters are kept as
 * bound (a number as a number) and go with the type of their bind
 * (bigint, double precision, text, bytea), so that PostgreSQL's strict
 * typing sees what SQLite's affinity would have made of them: as text
 * (bytea binary) when a statement is sent alone, in binary in the arrays
 * and COPY rows of held runs (below). A step runs the statement on the
 * first call and walks its rows; a persistent statement is prepared on
 * the server once per set of parameter types. Failures map onto SQLite's
 * result codes: serialization and lock failures are SQLITE_BUSY, a
 * unique violation SQLITE_CONSTRAINT, a full disk SQLITE_FULL, a lost
 * connection SQLITE_IOERR.
 *
 * For speed and memory (docs/scale-out.md, "The PostgreSQL store of one
 * process"): inside a transaction with the pipeline method on (the
 * writer's), writes go into libpq's pipeline and runs of one statement
 * are held and sent as one statement over arrays (unnest), its text
 * prepared on the server once per connection (as a write prepared for
 * one run's, struct pcache), or, for many rows of an INSERT, as one COPY
 * FROM STDIN in binary (send_copy); COMMIT checks
 * every count changes() told and answers TM__DB_REDO when one was wrong
 * or a command failed. A query that is not a prepared hot-path statement
 * is read in single-row mode. A lost connection is made again with the
 * retry policy of pool.h.
 *
 * Runs on the thread that owns the connection (db.h).
 */
#include "store/db.h"

#include <ctype.h>
#include <stdatomic.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/pool.h"
#include "treemig.h"
#include "util/buf.h"
#include "util/util.h"

#ifndef DST_FILLFACTOR
#define DST_FILLFACTOR "80" /* dst_nodes (ddl_of): measured, BENCHMARKS.md */
#endif
#define PG_INT8 20    /* the type oids of PostgreSQL's catalog */
#define PG_INT4 23
#define PG_INT2 21
#define PG_BOOL 16
#define PG_FLOAT4 700
#define PG_FLOAT8 701
#define PG_NUMERIC 1700
#define PG_TEXT 25
#define PG_BYTEA 17
#define MAX_PARAMS 32

/* Commands in flight in the pipeline before their answers are read. */
#define PIPE_MAX 1000

struct pg_stmt;

/* A text the pipeline sends again and again with other parameters (the
 * runs of rows as arrays, a write prepared for one run, as the stats'
 * upserts): prepared on the server under a name of its own the first
 * time on a connection, so that the server parses and plans it once, not
 * at every run (a writer's parse and plan of these were a quarter of the
 * server's CPU in a discovery by 4 workers). */
struct pcache {
    char *sql;                /* the text (malloc'd) */
    unsigned hash;            /* of the text and the types */
    int nparams;              /* its parameters */
    Oid types[MAX_PARAMS];    /* their types */
    char name[24];            /* its server-side name */
    int prepared;             /* prepared on connection gen (a Parse
                                 that failed clears it) */
    unsigned gen;             /* which connection (pg_db.gen) */
};

/* Texts prepared at most, per connection; the others go unnamed. */
#define PCACHE_MAX 64

/* A command sent in the pipeline, its answer not read yet. */
struct pend {
    struct pg_stmt *prep; /* a Parse of this statement, NULL for a run */
    struct pcache *pc;    /* or a Parse of this text, NULL for a run */
    int check;            /* changes() told 1 after its rows: verify it */
    int expect;           /* the rows it must then have changed */
};

/* A PostgreSQL connection. */
struct pg_db {
    struct tm__db base;  /* first: the layer's view */
    PGconn *conn;        /* libpq's connection */
    char *errmsg;        /* the last failure's message (malloc'd), or NULL */
    int errcode;         /* the last failure's SQLite code */
    int changes;         /* rows changed by the last statement */
    unsigned long names; /* server-side statement names handed out */
    int pipe_on;         /* the pipeline method's on */
    int last_piped;      /* the last statement run went into the pipeline */
    struct pend *pend;   /* commands sent, answers not read, in order */
    size_t npend;        /* how many */
    int pipe_rc;         /* a pipelined command failed or changed other rows
                            than told: the transaction's COMMIT fails with
                            this (TM__DB_REDO or SQLITE_IOERR) */
    struct pg_stmt **wait; /* statements holding rows to send, in the order
                            of their first row */
    size_t nwait;        /* how many */
    struct pg_stmt *last_multi; /* the statement of the last held row */
    int in_txn;          /* between BEGIN and COMMIT or ROLLBACK */
    int lost;            /* the server's answers ended while libpq still
                            thought the connection good (flush): it is
                            treated as bad until reconnect() */
    unsigned gen;        /* connections made: a statement prepared on an
                            earlier one is prepared again */
    int64_t lock_key;    /* the advisory lock taken again on a new
                            connection (tm__db_pg_lock), 0 for none */
    struct pg_stmt *stream; /* the query whose rows are arriving one by one
                            (single-row mode), or NULL: anything else sent
                            first parks them (park) */
    struct pcache *pc[PCACHE_MAX]; /* the texts prepared by send_params() */
    size_t npc;          /* how many */
    int utf8;            /* the server's encoding is UTF8: it refuses text
                            that is not UTF-8 (a name's bytes: SQLite
                            keeps them as they are) */
    char *bad_text;      /* the first such text bound, quoted and escaped
                            (tm__buf_add_escaped), for the
                            message of the failure it causes, or NULL */
    struct tm__buf sets; /* the session's SETs run outside a transaction
                            (lock_timeout, idle_in_transaction_session_
                            timeout), each ending in ';': made again on a
                            new connection (setup) */
    int track;           /* a writer's connection (the pipeline method was
                            turned on once): its BEGIN also asks for the
                            transaction's id (commit_outcome) */
    char xid[24];        /* that id, as text, "" when not known */
};

/* Tries to connect again after a lost connection (the shared retry
 * policy of pool.h: full-jitter backoff from 50 ms to 5 s per wait). */
#define RECONNECT_TRIES 12

/* The connection is gone: libpq says so, or flush() found the answers
 * ended before libpq noticed. */
static int conn_bad(const struct pg_db *d)
{
    return d->lost || PQstatus(d->conn) == CONNECTION_BAD;
}

/* What a value is: how it was bound. */
enum { V_NULL, V_INT, V_REAL, V_TEXT, V_BLOB };

/* A parameter's value as bound: a number as it is, a text or a blob in a
 * buffer the parameter keeps from bind to bind. Text for the server is
 * made only where a statement is sent with its parameters as text
 * (params_of); the held rows' arrays and COPY take the numbers in binary
 * as they are. (A malloc'd decimal text per value, parsed back for the
 * binary paths, was most of the writer's CPU in a discovery.) */
struct pval {
    unsigned char kind;      /* V_* */
    int len;                 /* text: bytes without the NUL; blob: bytes */
    union {
        int64_t i;           /* V_INT */
        double f;            /* V_REAL */
    } u;
    char *buf;               /* V_TEXT (NUL-terminated), V_BLOB (malloc'd,
                                never NULL once a text or blob was bound) */
    size_t cap;              /* its room */
};

/* A held row's value: as struct pval, its text or blob in the
 * statement's arena (one buffer for all held rows, not a malloc each). */
struct hval {
    union {
        int64_t i;           /* V_INT */
        double f;            /* V_REAL */
        size_t off;          /* V_TEXT, V_BLOB: where in the arena */
    } u;
    int len;                 /* as struct pval */
    Oid type;                /* the type it is sent as */
    unsigned char kind;      /* V_* */
};

/* A PostgreSQL statement. */
struct pg_stmt {
    struct tm__stmt base;    /* first: the layer's view */
    char *sql;               /* the translated text (malloc'd) */
    int nparams;             /* the highest $N it uses */
    int persistent;          /* prepared on the server once */
    unsigned used;           /* bit n - 1: $n appears in sql */
    char name[24];           /* its server-side name, "" when not prepared */
    unsigned prepared_sig;   /* the parameter types it was prepared with */
    unsigned prepared_gen;   /* on which connection (pg_db.gen) */
    struct pval pv[MAX_PARAMS]; /* each parameter as bound */
    unsigned types[MAX_PARAMS]; /* their type oids, 0 for NULL */
    PGresult *res;           /* the result being walked, or NULL */
    int row;                 /* the current row of res, -1 before the first */
    int done;                /* SQLITE_DONE was returned */
    int writes;              /* INSERT, UPDATE or DELETE without RETURNING:
                                may go into the pipeline */
    char *m_head;            /* in the pipeline its runs are held and sent
                                as one statement of many rows: the text
                                before the rows (malloc'd), or NULL when
                                it cannot be (see multi_template) */
    char *m_row;             /* one row, $N its parameters (malloc'd) */
    char *m_tail;            /* the text after the rows (malloc'd) */
    struct hval *rv;         /* the held rows' parameters, nparams each */
    struct tm__buf arena;    /* the held rows' texts and blobs (hval.off);
                                emptied with the rows, its room kept */
    unsigned char *rcheck;   /* per row: changes() was read after it */
    size_t nrows, arows;     /* rows held, room for */
    int waiting;             /* in its connection's wait list */
    int stream;              /* a query read row by row (single-row mode):
                                a result as long as the tree is never held */
    PGresult **queue;        /* its rows parked when the connection was
                                needed for something else, in order */
    size_t nq, qhead, aq;    /* queued, read, room for */
    int u_kind;              /* held rows may also go as arrays, one per
                                parameter, through unnest(): 1 an INSERT,
                                2 an UPDATE or DELETE, 0 not */
    size_t u_pre;            /* the length of m_head before its VALUES */
    Oid ctype[MAX_PARAMS];   /* INSERT: the column type of each parameter */
    char *copy_sql;          /* INSERT: the same rows as COPY ... FROM STDIN
                                (binary), or NULL (see send_copy) */
    int ncopy;               /* its columns */
    unsigned char cmap[MAX_PARAMS]; /* column i's parameter, 0-based */
    unsigned char *blob;     /* column_blob's decoded value (PQfreemem) */
    size_t blob_len;         /* its length */
    int blob_col;            /* the column it decodes, -1 for none */
};

static void multi_template(struct pg_stmt *s);
static int run_sync(struct pg_stmt *s, const Oid *types);
static int reconnect(struct pg_db *d);
static void park(struct pg_db *d);
static void drain(struct pg_db *d);
static int hold(struct pg_stmt *s, const Oid *types);

#define D(db) ((struct pg_db *)(db))
#define P(st) ((struct pg_stmt *)(st))

static void set_err(struct pg_db *d, int code, const char *msg)
{
    size_t n;
    free(d->errmsg);
    d->errmsg = strdup(msg ? msg : "unknown error");
    if (d->errmsg) { /* libpq's messages end with a newline */
        n = strlen(d->errmsg);
        while (n && (d->errmsg[n - 1] == '\n' || d->errmsg[n - 1] == ' '))
            d->errmsg[--n] = '\0';
    }
    d->errcode = code;
}

/* SQLSTATE to an SQLite result code. */
static int map_state(const char *state)
{
    if (!state)
        return SQLITE_IOERR; /* no answer from the server */
    if (!strcmp(state, "40001") || !strcmp(state, "40P01") ||
        !strcmp(state, "55P03"))
        return SQLITE_BUSY;
    if (!strncmp(state, "23", 2))
        return SQLITE_CONSTRAINT;
    if (!strcmp(state, "53100"))
        return SQLITE_FULL;
    if (!strcmp(state, "53200"))
        return SQLITE_NOMEM;
    if (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3))
        return SQLITE_IOERR;
    if (!strncmp(state, "28", 2) || !strcmp(state, "42501"))
        return SQLITE_PERM;
    if (!strcmp(state, "25006"))
        return SQLITE_READONLY;
    return SQLITE_ERROR;
}

/* Records the failure of res (or of the connection when res is NULL);
 * returns its SQLite code. */
static int fail_res(struct pg_db *d, PGresult *res)
{
    if (getenv("TREEMIG_PG_TRACE")) /* development: which statement failed */
        fprintf(stderr, "treemig pg: %s\n", PQresultErrorMessage(res));
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    int code = map_state(state);
    if (conn_bad(d))
        code = SQLITE_IOERR;
    if (state && (!strcmp(state, "22021") || !strcmp(state, "22P05"))) {
        /* a name that is not UTF-8, refused by a UTF8 database: said so,
         * with what to do (docs/state-file.md, "Paths and names") */
        char m[768];
        snprintf(m, sizeof m, "a name that is not UTF-8%s%.400s cannot be stored in this "
                 "PostgreSQL database (encoding %s): a database created with ENCODING "
                 "'SQL_ASCII' (and LC_COLLATE 'C', LC_CTYPE 'C', TEMPLATE template0) holds "
                 "any name byte for byte, as a SQLite state file does",
                 d->bad_text ? ": " : "", d->bad_text ? d->bad_text : "",
                 PQparameterStatus(d->conn, "server_encoding")
                     ? PQparameterStatus(d->conn, "server_encoding") : "?");
        set_err(d, SQLITE_MISMATCH, m);
        return SQLITE_MISMATCH;
    }
    set_err(d, code, msg && *msg ? msg : PQerrorMessage(d->conn));
    return code;
}

/* ---- translation: SQLite's SQL to PostgreSQL's ---- */

/* The primary key columns of the tables whose rows INSERT OR REPLACE and
 * an ON CONFLICT without target name (the schema in store.c). */
static const struct {
    const char *table; /* table name */
    const char *key;   /* its primary key columns */
} pkeys[] = {
    { "migration", "key" },
    { "src_stats", "depth, type, traversal_status" },
    { "dst_stats", "depth, type, traversal_status" },
    { "copy_stats", "depth, type, copy_status, conflict" },
    { "listing_pos", "side, folder_id" },
    { "uploads", "node_id" },
    { "excluded_prev", "side, id" },
    { "src_nodes", "id" },
    { "dst_nodes", "id" },
    { "copy_runs", "key" },
    { "mirror", "dst_id" },
    { "passes", "n" },
};

static const char *pkey_of(const char *table, size_t n)
{
    size_t i;
    for (i = 0; i < sizeof pkeys / sizeof *pkeys; i++)
        if (strlen(pkeys[i].table) == n && !strncasecmp(pkeys[i].table, table, n))
            return pkeys[i].key;
    return NULL;
}

static int is_word(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* 1 when the column [w, w + n) is one of list's (", "-separated). */
static int in_list(const char *list, const char *w, size_t n)
{
    const char *p = list;
    while (*p) {
        size_t k = strcspn(p, ",");
        if (k == n && strncmp(p, w, n) == 0)
            return 1;
        p += k;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return 0;
}

/* 1 when the text at p is the keyword kw as a whole word (any case). */
static int kw_at(const char *s, const char *p, const char *kw)
{
    size_t n = strlen(kw);
    return strncasecmp(p, kw, n) == 0 && !is_word(p[n]) &&
           (p == s || !is_word(p[-1]));
}

static const char *skip_ws(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

/* Words replaced as they are (outside quotes), in DDL and queries. */
static const struct {
    const char *from; /* SQLite's spelling */
    const char *to;   /* PostgreSQL's */
} words[] = {
    { "INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" },
    { "INTEGER", "BIGINT" },
    { "REAL", "DOUBLE PRECISION" },
    { "BLOB", "BYTEA" },
    { "WITHOUT ROWID", "" },
    { "BEGIN IMMEDIATE", "BEGIN" },
    /* SQLite's CROSS JOIN ... ON: an inner join in the written order */
    { "CROSS JOIN", "JOIN" },
    { "CREATE VIEW IF NOT EXISTS", "CREATE OR REPLACE VIEW" },
    /* an index goes to its table's schema: PostgreSQL names none */
    { "INDEX IF NOT EXISTS temp.", "INDEX IF NOT EXISTS " },
    { "temp.", "pg_temp." },
    { "sqlite_master",
      "(SELECT CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END AS type,"
      " table_name::text AS name FROM information_schema.tables"
      " WHERE table_schema = current_schema()) AS sqlite_master" },
};

/* PRAGMAs: what each becomes (NULL: nothing, the statement is dropped). */
static const struct {
    const char *from; /* the PRAGMA's text up to its end */
    const char *to;   /* the statement that stands for it */
} pragmas[] = {
    { "PRAGMA application_id", "SELECT application_id FROM treemig_meta" },
    { "PRAGMA user_version", "SELECT user_version FROM treemig_meta" },
    { "PRAGMA quick_check(1)", "SELECT 'ok'" },
};

/* Translates one statement [p, end) onto out. */
static int translate_one(struct tm__buf *out, const char *p, const char *end)
{
    const char *s = p, *insert_table = NULL, *q;
    size_t insert_len = 0, i;
    int rc = 0, replace = 0, ignore = 0, conflict_done = 0, auto_param = 0;
    int ddl, in_set = 0;

    p = skip_ws(p);
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    if (p == end)
        return 0;
    /* text compares bytewise in SQLite: the "C" collation in tables */
    ddl = (kw_at(s, p, "CREATE") && kw_at(s, skip_ws(p + 6), "TABLE")) ||
          kw_at(s, p, "ALTER") ||
          (kw_at(s, p, "CREATE") && kw_at(s, skip_ws(p + 6), "TEMP"));
    if (kw_at(s, p, "PRAGMA")) {
        /* PRAGMA user_version=N sets the meta row; other settings drop */
        if (!strncasecmp(p, "PRAGMA user_version=", 20))
            return tm__buf_addf(out, "UPDATE treemig_meta SET user_version=%.*s;",
                                (int)(end - p - 20), p + 20);
        if (!strncasecmp(p, "PRAGMA application_id=", 22))
            return tm__buf_addf(out, "UPDATE treemig_meta SET application_id=%.*s;",
                                (int)(end - p - 22), p + 22);
        for (i = 0; i < sizeof pragmas / sizeof *pragmas; i++)
            if ((size_t)(end - p) == strlen(pragmas[i].from) &&
                !strncasecmp(p, pragmas[i].from, (size_t)(end - p)))
                return tm__buf_addf(out, "%s;", pragmas[i].to);
        return 0;
    }
    if (kw_at(s, p, "INSERT")) {
        q = skip_ws(p + 6);
        if (kw_at(s, q, "OR")) {
            q = skip_ws(q + 2);
            replace = kw_at(s, q, "REPLACE");
            ignore = kw_at(s, q, "IGNORE");
            q += replace ? 7 : 6;
            rc = tm__buf_adds(out, "INSERT");
            p = q;
        }
        q = skip_ws(q);
        if (kw_at(s, q, "INTO")) {
            q = skip_ws(q + 4);
            insert_table = q;
            while (is_word(*q))
                q++;
            insert_len = (size_t)(q - insert_table);
        }
    }
    while (!rc && p < end) {
        if (*p == '\'' || *p == '"') { /* a literal or quoted name: as is */
            char qc = *p;
            q = p + 1;
            while (q < end && !(*q == qc && q[1] != qc))
                q += *q == qc ? 2 : 1;
            q = q < end ? q + 1 : end;
            rc = tm__buf_add(out, p, (size_t)(q - p));
            p = q;
            continue;
        }
        if (*p == '?') {
            int n = 0;
            q = p + 1;
            while (q < end && isdigit((unsigned char)*q))
                n = n * 10 + (*q++ - '0');
            if (q == p + 1)
                n = ++auto_param;
            else if (n > auto_param)
                auto_param = n;
            rc = tm__buf_addf(out, "$%d", n);
            p = q;
            continue;
        }
        if (kw_at(s, p, "ON") && kw_at(s, skip_ws(p + 2), "CONFLICT")) {
            q = skip_ws(skip_ws(p + 2) + 8);
            conflict_done = 1;
            if (*q != '(' && insert_table) {
                const char *key = pkey_of(insert_table, insert_len);
                rc = tm__buf_addf(out, "ON CONFLICT (%s) ", key ? key : "id");
                p = q;
                continue;
            }
        }
        /* max(a, b) and min(a, b): SQLite's scalar forms */
        if (kw_at(s, p, "max") || kw_at(s, p, "min")) {
            int depth = 0, comma = 0;
            q = p + 3;
            if (*q == '(') {
                for (; q < end; q++) {
                    if (*q == '(')
                        depth++;
                    else if (*q == ')' && --depth == 0)
                        break;
                    else if (*q == ',' && depth == 1)
                        comma = 1;
                }
            }
            if (comma) {
                rc = tm__buf_adds(out, tolower((unsigned char)p[1]) == 'a' ? "greatest"
                                                                          : "least");
                p += 3;
                continue;
            }
        }
        for (i = 0; i < sizeof words / sizeof *words; i++) {
            size_t n = strlen(words[i].from);
            if ((size_t)(end - p) >= n && !strncasecmp(p, words[i].from, n) &&
                (p == s || !is_word(p[-1])) &&
                (!is_word(words[i].from[n - 1]) || !is_word(p[n])))
                break;
        }
        /* DO UPDATE SET c = c + excluded.c: PostgreSQL wants the target's
         * c qualified */
        if (!in_set && kw_at(s, p, "UPDATE") && conflict_done) {
            in_set = 1;
        } else if (in_set && insert_table && is_word(*p) && !is_word(p[-1]) &&
                   p[-1] != '.' && out->len) {
            size_t k = out->len;
            while (k && out->buf[k - 1] == ' ')
                k--;
            q = p;
            while (is_word(*q))
                q++;
            if (k && out->buf[k - 1] == '=' && *skip_ws(q) == '+') {
                rc = tm__buf_addf(out, "%.*s.%.*s", (int)insert_len, insert_table,
                                  (int)(q - p), p);
                p = q;
                continue;
            }
        }
        if (ddl && kw_at(s, p, "TEXT")) {
            rc = tm__buf_adds(out, "TEXT COLLATE \"C\"");
            p += 4;
            continue;
        }
        if (i < sizeof words / sizeof *words) {
            rc = tm__buf_adds(out, words[i].to);
            p += strlen(words[i].from);
            continue;
        }
        rc = tm__buf_addch(out, *p++);
    }
    if (!rc && ddl && kw_at(s, s, "CREATE") &&
        kw_at(s, skip_ws(skip_ws(s + 6) + 5), "src_nodes")) {
        /* discovery sets each source row's copy status once its
         * destination twin is listed, the copy once more: room on the row's
         * page keeps those updates HOT (no new index entries) */
        rc = tm__buf_adds(out, " WITH (fillfactor = 50)");
    } else if (!rc && ddl && kw_at(s, s, "CREATE") &&
               kw_at(s, skip_ws(skip_ws(s + 6) + 5), "dst_nodes")) {
        /* a destination row changes once if at all (a folder's status
         * when it is listed): room for that on its page */
        rc = tm__buf_adds(out, " WITH (fillfactor = " DST_FILLFACTOR ")");
    }
    if (!rc && (replace || ignore) && !conflict_done) {
        const char *key = insert_table ? pkey_of(insert_table, insert_len) : NULL;
        if (ignore || !key) {
            rc = tm__buf_adds(out, " ON CONFLICT DO NOTHING");
        } else {
            /* every column of the insert's list that is not the key */
            const char *c = strchr(insert_table, '(');
            const char *ce = c ? strchr(c, ')') : NULL;
            rc = tm__buf_addf(out, " ON CONFLICT (%s) DO UPDATE SET ", key);
            for (i = 0; !rc && c && ce && c < ce; i++) {
                const char *w;
                c = skip_ws(c + 1);
                w = c;
                while (is_word(*c))
                    c++;
                if (c > w && !in_list(key, w, (size_t)(c - w)))
                    rc = tm__buf_addf(out, "%s%.*s=excluded.%.*s",
                                      out->buf[out->len - 1] == ' ' ? "" : ", ",
                                      (int)(c - w), w, (int)(c - w), w);
                c = strchr(c, ',') && strchr(c, ',') < ce ? strchr(c, ',') : ce;
            }
        }
    }
    if (!rc)
        rc = tm__buf_addch(out, ';');
    return rc;
}

char *tm__db_pg_translate(const char *sql)
{
    struct tm__buf out = TM__BUF_INIT;
    const char *p = sql, *start = sql;
    int rc = 0;
    /* statement by statement: split on ; outside quotes */
    while (!rc && *p) {
        if (*p == '\'' || *p == '"') {
            char qc = *p++;
            while (*p && !(*p == qc && p[1] != qc))
                p += *p == qc ? 2 : 1;
            if (*p)
                p++;
            continue;
        }
        if (*p == ';') {
            rc = translate_one(&out, start, p);
            start = ++p;
            continue;
        }
        p++;
    }
    if (!rc)
        rc = translate_one(&out, start, p);
    if (!rc)
        rc = tm__buf_addch(&out, '\0'); /* never NULL, even when empty */
    if (rc) {
        tm__buf_release(&out);
        return NULL;
    }
    return tm__buf_detach(&out, NULL);
}

/* ---- statements ---- */

static int g_prepare(struct tm__db *db, const char *sql, int persistent,
                     struct tm__stmt **out)
{
    struct pg_stmt *s = calloc(1, sizeof *s);
    const char *p;
    size_t n;
    *out = NULL;
    if (!s)
        return SQLITE_NOMEM;
    s->base.db = db;
    tm__buf_init(&s->arena);
    s->sql = tm__db_pg_translate(sql);
    if (!s->sql) {
        free(s);
        return SQLITE_NOMEM;
    }
    n = strlen(s->sql); /* one statement: its ; goes */
    if (n && s->sql[n - 1] == ';')
        s->sql[n - 1] = '\0';
    for (p = s->sql; (p = strchr(p, '$')) != NULL; p++) {
        int k = atoi(p + 1);
        if (k >= 1 && k <= MAX_PARAMS)
            s->used |= 1u << (k - 1);
        if (k > s->nparams)
            s->nparams = k;
    }
    if (s->nparams > MAX_PARAMS) {
        free(s->sql);
        free(s);
        set_err(D(db), SQLITE_RANGE, "too many parameters");
        return SQLITE_RANGE;
    }
    p = s->sql;
    while (isspace((unsigned char)*p))
        p++;
    s->writes = (!strncasecmp(p, "INSERT", 6) || !strncasecmp(p, "UPDATE", 6) ||
                 !strncasecmp(p, "DELETE", 6)) && !strstr(p, "RETURNING");
    multi_template(s);
    p = skip_ws(s->sql);
    s->stream = !persistent && (kw_at(p, p, "SELECT") || kw_at(p, p, "WITH")) &&
                !s->writes;
    s->persistent = persistent;
    s->row = -1;
    s->blob_col = -1;
    *out = &s->base;
    return SQLITE_OK;
}

static void clear_result(struct pg_stmt *s)
{
    struct pg_db *d = D(s->base.db);
    if (d->stream == s) { /* the rows not read are read and dropped */
        PGresult *r;
        while ((r = PQgetResult(d->conn)) != NULL)
            PQclear(r);
        d->stream = NULL;
    }
    while (s->qhead < s->nq)
        PQclear(s->queue[s->qhead++]);
    s->nq = s->qhead = 0;
    PQclear(s->res);
    s->res = NULL;
    s->row = -1;
    s->done = 0;
    if (s->blob)
        PQfreemem(s->blob);
    s->blob = NULL;
    s->blob_col = -1;
}

/* Parameter i (1-based) of st made ready for a new value, or NULL when
 * out of range. */
static struct pval *param(struct tm__stmt *st, int i)
{
    struct pg_stmt *s = P(st);
    if (i < 1 || i > MAX_PARAMS)
        return NULL;
    if (s->res)
        clear_result(s); /* SQLite wants a reset first; be lenient */
    return &s->pv[i - 1];
}

/* Room for n bytes in p's buffer (kept from bind to bind). */
static int pval_room(struct pval *p, size_t n)
{
    char *c;
    size_t cap;
    if (n <= p->cap && p->buf)
        return 0;
    cap = p->cap > 32 ? p->cap : 32;
    while (cap < n)
        cap *= 2;
    if (!(c = realloc(p->buf, cap)))
        return -1;
    p->buf = c;
    p->cap = cap;
    return 0;
}

static int g_bind_int64(struct tm__stmt *st, int i, int64_t v)
{
    struct pval *p = param(st, i);
    if (!p)
        return SQLITE_RANGE;
    p->kind = V_INT;
    p->u.i = v;
    P(st)->types[i - 1] = PG_INT8;
    return SQLITE_OK;
}
static int g_bind_double(struct tm__stmt *st, int i, double v)
{
    struct pval *p = param(st, i);
    if (!p)
        return SQLITE_RANGE;
    p->kind = V_REAL;
    p->u.f = v;
    P(st)->types[i - 1] = PG_FLOAT8;
    return SQLITE_OK;
}
static int g_bind_text(struct tm__stmt *st, int i, const char *v, int n,
                       void (*del)(void *))
{
    struct pval *p = param(st, i);
    size_t len;
    int rc = SQLITE_OK;
    if (!p)
        rc = SQLITE_RANGE;
    else if (!v)
        p->kind = V_NULL;
    else {
        /* as strndup: up to a NUL */
        len = n < 0 ? strlen(v) : strnlen(v, (size_t)n);
        if (pval_room(p, len + 1)) {
            rc = SQLITE_NOMEM;
        } else {
            memcpy(p->buf, v, len);
            p->buf[len] = '\0';
            p->kind = V_TEXT;
            p->len = (int)len;
        }
    }
    if (v && del && del != SQLITE_STATIC && del != SQLITE_TRANSIENT)
        del((void *)v);
    if (rc != SQLITE_OK)
        return rc;
    P(st)->types[i - 1] = PG_TEXT;
    if (v && D(st->db)->utf8 && !D(st->db)->bad_text &&
        !tm__utf8_valid(p->buf, (size_t)p->len)) {
        /* the server refuses it: kept for the failure's message */
        struct tm__buf b = TM__BUF_INIT;
        if (tm__buf_addch(&b, '"') == 0 &&
            tm__buf_add_escaped(&b, p->buf, (size_t)p->len) == 0 &&
            tm__buf_addch(&b, '"') == 0)
            D(st->db)->bad_text = tm__buf_detach(&b, NULL);
        tm__buf_release(&b);
    }
    return SQLITE_OK;
}
static int g_bind_blob(struct tm__stmt *st, int i, const void *v, int n,
                       void (*del)(void *))
{
    struct pval *p = param(st, i);
    size_t len = n > 0 ? (size_t)n : 0;
    int rc = SQLITE_OK;
    if (!p)
        rc = SQLITE_RANGE;
    else if (pval_room(p, len ? len : 1))
        rc = SQLITE_NOMEM;
    else {
        if (len)
            memcpy(p->buf, v, len);
        p->kind = V_BLOB;
        p->len = (int)len;
        P(st)->types[i - 1] = PG_BYTEA;
    }
    if (del && del != SQLITE_STATIC && del != SQLITE_TRANSIENT)
        del((void *)v);
    return rc;
}
static int g_bind_null(struct tm__stmt *st, int i)
{
    /* a NULL keeps the type of the value before it: the statement is not
     * prepared again for each change between NULL and a value */
    struct pval *p = param(st, i);
    if (!p)
        return SQLITE_RANGE;
    p->kind = V_NULL;
    return SQLITE_OK;
}

/* Writes v in decimal at b (room for 21 bytes), no NUL; returns its
 * length. By hand: snprintf's setup per call cost more than this. */
static size_t int_text(char *b, int64_t v)
{
    char t[24], *p = t + sizeof t;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t n;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    n = (size_t)(t + sizeof t - p);
    memcpy(b, p, n);
    return n;
}

/* Room for a number's text: int_text's 21 bytes, "%.17g"'s 24, a NUL. */
#define NUM_TEXT 32

/* A number's text at b (NUM_TEXT bytes), NUL-terminated, as the server
 * reads it (int8in, float8in); returns its length. */
static size_t num_text(char *b, int kind, int64_t i, double f)
{
    size_t n;
    if (kind == V_INT) {
        n = int_text(b, i);
        b[n] = '\0';
        return n;
    }
    return (size_t)snprintf(b, NUM_TEXT, "%.17g", f);
}

/* The value p for libpq: a number as its text, made in num; a text as it
 * is; a blob in binary. */
static void libpq_value(const struct pval *p, char *num, const char **v, int *l, int *f)
{
    *l = 0;
    *f = 0;
    switch (p->kind) {
    case V_NULL: *v = NULL; break;
    case V_INT: case V_REAL:
        num_text(num, p->kind, p->u.i, p->u.f);
        *v = num;
        break;
    case V_BLOB: *l = p->len; *f = 1; /* fall through */
    default: *v = p->buf; break;
    }
}

/* The parameters of s as libpq takes them, numbers' text made in num. */
static void params_of(const struct pg_stmt *s, const char **v, int *l, int *f,
                      char (*num)[NUM_TEXT])
{
    int i;
    for (i = 0; i < s->nparams; i++)
        libpq_value(&s->pv[i], num[i], &v[i], &l[i], &f[i]);
}

/* A signature of the parameter types, to re-prepare when they change. */
static unsigned type_sig(const struct pg_stmt *s)
{
    unsigned h = 2166136261u;
    int i;
    for (i = 0; i < s->nparams; i++)
        h = (h ^ s->types[i]) * 16777619u;
    return h | 1u;
}

/* Every connection's settings. The server's notices (a table that
 * exists, skipped) are not news. An index probe costs about a sequential
 * page: the rows a migration reads again and again are in memory, and at
 * the default 4 the planner joined a writer's batch of 30-120 rows (the
 * arrays of an UPDATE ... FROM unnest) to the node table by a sequential
 * scan of the whole table instead of a probe per row, whenever the
 * table's statistics were older than its growth (2-8 ms each, for 5-20%
 * of those statements in a discovery: 25-35% once their plan was
 * cached). */
#define SESSION_SETS "SET client_min_messages = warning; SET random_page_cost = 1.1"

/* ---- a lost connection ---- */

/* What a new connection needs: quiet notices, the lock taken again. */
static int setup(struct pg_db *d)
{
    PGresult *r;
    int got;
    park(d);
    {
        const char *enc = PQparameterStatus(d->conn, "server_encoding");
        d->utf8 = enc && !strcmp(enc, "UTF8");
    }
    PQclear(PQexec(d->conn, SESSION_SETS));
    if (d->sets.len) {
        r = PQexec(d->conn, d->sets.buf);
        PQclear(r);
    }
    if (!d->lock_key)
        return PQstatus(d->conn) == CONNECTION_OK ? SQLITE_OK : SQLITE_IOERR;
    {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT pg_try_advisory_lock(%lld)",
                 (long long)d->lock_key);
        r = PQexec(d->conn, sql);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        PQclear(r);
        return SQLITE_IOERR;
    }
    got = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!got) {
        set_err(d, SQLITE_BUSY, "the connection to the state database was lost and "
                "another process took the migration's lock meanwhile");
        return SQLITE_BUSY;
    }
    return SQLITE_OK;
}

/* Forgets what was in flight on a lost connection (its transaction is
 * rolled back by the server). */
static void free_held(struct pg_stmt *s);

static void drop_pipe(struct pg_db *d)
{
    size_t i;
    for (i = 0; i < d->nwait; i++) {
        struct pg_stmt *s = d->wait[i];
        free_held(s);
        s->waiting = 0;
    }
    d->nwait = 0;
    d->npend = 0;
    d->last_multi = NULL;
    d->pipe_rc = 0;
    d->in_txn = 0;
    d->stream = NULL; /* its rows went with the connection */
    if (PQpipelineStatus(d->conn) != PQ_PIPELINE_OFF)
        PQexitPipelineMode(d->conn);
}

/* Connects again with the shared backoff (pool.h), as many times as
 * RECONNECT_TRIES allows: a server restarted, a network cut shorter than
 * the waits. Statements are prepared again on the new connection. */
static int reconnect(struct pg_db *d)
{
    struct tm__retry r;
    struct tm__aerr e;
    int rc = SQLITE_IOERR;
    drop_pipe(d);
    memset(&e, 0, sizeof e);
    e.code = TM_ECONNRESET;
    e.cls = TM_ERR_RETRY;
    tm__retry_init(&r, RECONNECT_TRIES, NULL);
    while (tm__retry_again(&r, &e) == 1) {
        PQreset(d->conn);
        if (PQstatus(d->conn) != CONNECTION_OK)
            continue;
        d->lost = 0;
        d->gen++;
        rc = setup(d);
        if (rc != SQLITE_IOERR)
            break;
    }
    if (rc == SQLITE_IOERR) {
        struct tm__buf b = TM__BUF_INIT;
        tm__buf_addf(&b, "the connection to the state database was lost and could "
                     "not be made again (%d tries): %s", RECONNECT_TRIES,
                     PQerrorMessage(d->conn));
        set_err(d, SQLITE_IOERR, b.buf ? b.buf : "out of memory");
        tm__buf_release(&b);
    }
    return rc;
}

/* ---- the pipeline (db.h's pipeline method) ---- */

static int pend_push(struct pg_db *d, struct pg_stmt *prep)
{
    struct pend *v = realloc(d->pend, (d->npend + 1) * sizeof *v);
    if (!v)
        return SQLITE_NOMEM;
    d->pend = v;
    v[d->npend].prep = prep;
    v[d->npend].pc = NULL;
    v[d->npend].check = 0;
    v[d->npend].expect = 1;
    d->npend++;
    return SQLITE_OK;
}

/* A pipelined command went wrong: the first cause is kept for COMMIT. */
static void pipe_fail(struct pg_db *d, PGresult *r, const char *why)
{
    if (d->pipe_rc)
        return;
    if (r)
        fail_res(d, r);
    else
        set_err(d, TM__DB_REDO, why);
    d->pipe_rc = conn_bad(d) ? SQLITE_IOERR : TM__DB_REDO;
}

/* Reads the answers of every command in flight (one round trip), checks
 * the counts changes() told, leaves pipeline mode; held rows stay held.
 * Returns d->pipe_rc. */
static int settle(struct pg_db *d)
{
    size_t i = 0;
    if (!d->npend) {
        /* entered for rows held and then dropped (a failure before they
         * were sent): the next statement may be a synchronous one */
        if (PQstatus(d->conn) == CONNECTION_OK &&
            PQpipelineStatus(d->conn) != PQ_PIPELINE_OFF)
            PQexitPipelineMode(d->conn);
        return d->pipe_rc;
    }
    if (!PQpipelineSync(d->conn)) {
        pipe_fail(d, NULL, PQerrorMessage(d->conn));
        d->pipe_rc = SQLITE_IOERR;
    } else {
        int nulls = 0;
        for (;;) {
            PGresult *r = PQgetResult(d->conn);
            ExecStatusType es;
            if (!r) { /* the end of one command's answer */
                /* two ends in a row: no answer is coming any more (a
                 * connection lost before libpq marks it bad); asking
                 * again would spin for ever */
                if (conn_bad(d) || ++nulls > 1) {
                    pipe_fail(d, NULL, conn_bad(d)
                                           ? PQerrorMessage(d->conn)
                                           : "the server's answers ended");
                    d->pipe_rc = SQLITE_IOERR;
                    d->lost = 1; /* BEGIN, ROLLBACK and queries know it */
                    break;
                }
                continue;
            }
            nulls = 0;
            es = PQresultStatus(r);
            if (es == PGRES_PIPELINE_SYNC) {
                PQclear(r);
                break;
            }
            if (i < d->npend) {
                struct pend *p = &d->pend[i++];
                if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) {
                    if (p->check && atoi(PQcmdTuples(r)) != p->expect)
                        pipe_fail(d, NULL, "a pipelined statement changed other "
                                           "rows than assumed");
                } else {
                    if (p->prep) /* not prepared after all */
                        p->prep->prepared_sig = 0;
                    if (p->pc)
                        p->pc->prepared = 0;
                    pipe_fail(d, es == PGRES_FATAL_ERROR ? r : NULL,
                              "a pipelined statement was not run");
                }
            }
            PQclear(r);
        }
    }
    for (; i < d->npend; i++) { /* lost with the connection */
        if (d->pend[i].prep)
            d->pend[i].prep->prepared_sig = 0;
        if (d->pend[i].pc)
            d->pend[i].pc->prepared = 0;
    }
    d->npend = 0;
    PQexitPipelineMode(d->conn);
    return d->pipe_rc;
}

/* Sends what is held, then settle()s. Returns d->pipe_rc. */
static int flush(struct pg_db *d)
{
    drain(d);
    return settle(d);
}

/* The cache entry of sql with these parameter types, made if new; NULL
 * when the cache is full or memory short (the text goes unnamed). */
static struct pcache *pcache_get(struct pg_db *d, const char *sql, int np,
                                 const Oid *types)
{
    unsigned h = 2166136261u;
    const char *p;
    struct pcache *c;
    size_t i;
    int k;
    for (p = sql; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    for (k = 0; k < np; k++)
        h = (h ^ types[k]) * 16777619u;
    for (i = 0; i < d->npc; i++) {
        c = d->pc[i];
        if (c->hash == h && c->nparams == np &&
            !memcmp(c->types, types, (size_t)np * sizeof *types) && !strcmp(c->sql, sql))
            return c;
    }
    if (d->npc == PCACHE_MAX || np > MAX_PARAMS || !(c = calloc(1, sizeof *c)))
        return NULL;
    if (!(c->sql = strdup(sql))) {
        free(c);
        return NULL;
    }
    c->hash = h;
    c->nparams = np;
    memcpy(c->types, types, (size_t)np * sizeof *types);
    d->pc[d->npc++] = c;
    return c;
}

/* Sends sql with its parameters into the pipeline as
 * PQsendQueryParams does, by the name it is prepared under on this
 * connection (prepared first when it is not yet: a Parse in the
 * pipeline, its answer read by flush()). The caller pushes the run's
 * pend. 1 when sent, 0 on failure (libpq's message). */
static int send_params(struct pg_db *d, const char *sql, int np, const Oid *types,
                       const char *const *vals, const int *lens, const int *fmts)
{
    struct pcache *c = pcache_get(d, sql, np, types);
    if (!c)
        return PQsendQueryParams(d->conn, sql, np, types, vals, lens, fmts, 0);
    if (!c->prepared || c->gen != d->gen) {
        /* a new name: one whose Parse failed may exist or not */
        snprintf(c->name, sizeof c->name, "tm%lu", ++d->names);
        if (!PQsendPrepare(d->conn, c->name, sql, np, types) ||
            pend_push(d, NULL) != SQLITE_OK)
            return 0;
        d->pend[d->npend - 1].pc = c;
        c->prepared = 1;
        c->gen = d->gen;
    }
    return PQsendQueryPrepared(d->conn, c->name, np, vals, lens, fmts, 0);
}

/* Sends s into the pipeline: no answer is waited for. */
static int send_piped(struct pg_stmt *s, const Oid *types)
{
    struct pg_db *d = D(s->base.db);
    const char *vals[MAX_PARAMS];
    int lens[MAX_PARAMS], fmts[MAX_PARAMS], ok;
    char num[MAX_PARAMS][NUM_TEXT];
    d->changes = 1; /* what changes() tells; flush() checks it if read */
    d->last_piped = 1;
    if (d->pipe_rc)
        return SQLITE_OK; /* the transaction is done again anyway */
    if (d->npend >= PIPE_MAX)
        flush(d); /* bounded: the answers of PIPE_MAX commands fit the
                     sockets' buffers, so neither side waits on the other */
    if (PQpipelineStatus(d->conn) == PQ_PIPELINE_OFF && !PQenterPipelineMode(d->conn)) {
        pipe_fail(d, NULL, PQerrorMessage(d->conn));
        return SQLITE_OK;
    }
    if (s->m_head) { /* held, sent with the runs of the same statement */
        if (hold(s, types) != SQLITE_OK)
            pipe_fail(d, NULL, "out of memory");
        return SQLITE_OK;
    }
    params_of(s, vals, lens, fmts, num);
    drain(d); /* what was held before goes first: the order holds */
    if (PQpipelineStatus(d->conn) == PQ_PIPELINE_OFF && !PQenterPipelineMode(d->conn)) {
        /* a COPY of the drain left the pipeline */
        pipe_fail(d, NULL, PQerrorMessage(d->conn));
        return SQLITE_OK;
    }
    if (s->persistent) {
        unsigned sig = type_sig(s);
        if (s->prepared_sig != sig || s->prepared_gen != d->gen) {
            if (s->name[0] && s->prepared_sig && s->prepared_gen == d->gen) {
                /* again, with other types */
                char sql[48];
                snprintf(sql, sizeof sql, "DEALLOCATE %s", s->name);
                if (!PQsendQueryParams(d->conn, sql, 0, NULL, NULL, NULL, NULL, 0) ||
                    pend_push(d, NULL) != SQLITE_OK) {
                    pipe_fail(d, NULL, "cannot send a statement");
                    return SQLITE_OK;
                }
            }
            if (!s->name[0])
                snprintf(s->name, sizeof s->name, "tm%lu", ++d->names);
            if (!PQsendPrepare(d->conn, s->name, s->sql, s->nparams, types) ||
                pend_push(d, s) != SQLITE_OK) {
                pipe_fail(d, NULL, "cannot send a statement");
                return SQLITE_OK;
            }
            s->prepared_sig = sig;
            s->prepared_gen = d->gen;
        }
        ok = PQsendQueryPrepared(d->conn, s->name, s->nparams, vals, lens, fmts, 0);
    } else {
        ok = send_params(d, s->sql, s->nparams, types, vals, lens, fmts);
    }
    if (!ok || pend_push(d, NULL) != SQLITE_OK)
        pipe_fail(d, NULL, PQerrorMessage(d->conn));
    return SQLITE_OK;
}

/* ---- many runs of one statement sent as one ---- */

/* Rows of one statement sent together, at most; and held before sending. */
#define MULTI_ROWS 1000
#define MULTI_HOLD 4096

/* The first whole-word kw in sql outside quotes, or NULL. */
static const char *find_kw(const char *sql, const char *kw)
{
    const char *p = sql;
    while (*p) {
        if (*p == '\'' || *p == '"') {
            char qc = *p++;
            while (*p && *p != qc)
                p++;
            if (*p)
                p++;
            continue;
        }
        if (kw_at(sql, p, kw))
            return p;
        p++;
    }
    return NULL;
}

/* The alias of the rows in UPDATE ... FROM and DELETE ... USING: columns
 * c1..cN, one per parameter. */
static int alias_cols(struct tm__buf *b, int n)
{
    int i, rc = tm__buf_adds(b, ") AS tm_v(");
    for (i = 1; !rc && i <= n; i++)
        rc = tm__buf_addf(b, "%sc%d", i > 1 ? "," : "", i);
    return rc ? rc : tm__buf_adds(b, ")");
}

/* INSERT INTO t(c1, ...) VALUES($a, ...): the type of column cK for each
 * parameter $aK, from the catalog (one round trip, when s is prepared).
 * values points at the '(' of the VALUES list. 0, or -1 when one is not
 * known or not of the types arrays are made of here. */
static int column_types(struct pg_stmt *s, const char *sql, const char *values)
{
    struct pg_db *d = D(s->base.db);
    const char *t = skip_ws(sql + 6), *c, *v = values + 1, *params[1];
    char table[64], cols[MAX_PARAMS][64];
    int ncols = 0, i, j, rc = -1;
    PGresult *r;
    size_t n;

    if (d->npend || d->nwait || PQpipelineStatus(d->conn) != PQ_PIPELINE_OFF)
        return -1;
    park(d);
    t = skip_ws(t + 4); /* INTO */
    for (n = 0; is_word(t[n]); n++)
        ;
    c = skip_ws(t + n);
    if (n == 0 || n >= sizeof table || *c != '(')
        return -1;
    memcpy(table, t, n);
    table[n] = '\0';
    while (*c && *c != ')' && ncols < MAX_PARAMS) { /* the column list */
        c = skip_ws(c + 1);
        for (n = 0; is_word(c[n]); n++)
            ;
        if (n == 0 || n >= sizeof cols[0])
            return -1;
        memcpy(cols[ncols], c, n);
        cols[ncols++][n] = '\0';
        c = skip_ws(c + n);
    }
    params[0] = table;
    r = PQexecParams(d->conn, "SELECT attname, atttypid FROM pg_attribute WHERE "
                     "attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return -1;
    }
    memset(s->ctype, 0, sizeof s->ctype);
    for (i = 0; *v && *v != ')' && i < ncols; i++) { /* $aK feeds column K */
        int a;
        v = skip_ws(v);
        if (*v == ',')
            v = skip_ws(v + 1);
        if (*v != '$')
            break;
        a = atoi(v + 1);
        while (*++v && isdigit((unsigned char)*v))
            ;
        for (j = 0; a >= 1 && a <= MAX_PARAMS && j < PQntuples(r); j++)
            if (!strcmp(PQgetvalue(r, j, 0), cols[i]))
                s->ctype[a - 1] = (Oid)strtoul(PQgetvalue(r, j, 1), NULL, 10);
    }
    PQclear(r);
    for (i = 0, rc = 0; i < s->nparams; i++)
        if (s->ctype[i] != PG_INT8 && s->ctype[i] != PG_TEXT &&
            s->ctype[i] != PG_FLOAT8 && s->ctype[i] != PG_BYTEA)
            rc = -1;
    return rc;
}

/* The COPY that inserts the rows of INSERT INTO t(c1, ...) VALUES($a1,
 * ...) (values at the '(' of its VALUES list): COPY t(c1, ...) FROM STDIN
 * (FORMAT binary), column K fed by parameter $aK. Left NULL when a value
 * is not a bare parameter or memory is short (the rows go as arrays). */
static void copy_template(struct pg_stmt *s, const char *sql, const char *values)
{
    struct tm__buf b = TM__BUF_INIT;
    const char *into = find_kw(sql, "INTO"), *vals = find_kw(sql, "VALUES");
    const char *t, *v = values + 1;
    int n = 0;
    if (!into || !vals || into > vals)
        return;
    t = skip_ws(into + 4);
    while (*v && *v != ')') {
        int a;
        v = skip_ws(v);
        if (*v == ',')
            v = skip_ws(v + 1);
        if (*v != '$' || n == MAX_PARAMS)
            return;
        a = atoi(v + 1);
        if (a < 1 || a > s->nparams)
            return;
        s->cmap[n++] = (unsigned char)(a - 1);
        while (*++v && isdigit((unsigned char)*v))
            ;
        v = skip_ws(v);
    }
    if (!n || tm__buf_adds(&b, "COPY ") ||
        tm__buf_add(&b, t, (size_t)(vals - t)) ||
        tm__buf_adds(&b, " FROM STDIN (FORMAT binary)") || tm__buf_addch(&b, '\0')) {
        tm__buf_release(&b);
        return;
    }
    s->ncopy = n;
    s->copy_sql = tm__buf_detach(&b, NULL);
}

/* Makes the template that sends many runs of s as one statement:
 *   INSERT INTO t(...) VALUES($1,...) [ON CONFLICT ... DO NOTHING]
 *     -> INSERT INTO t(...) VALUES (row 1),(row 2),... [same tail]
 *   UPDATE t SET a WHERE b
 *     -> UPDATE t SET a FROM (VALUES (row 1),...) AS tm_v(c1..cN) WHERE b
 *   DELETE FROM t WHERE b
 *     -> DELETE FROM t USING (VALUES (row 1),...) AS tm_v(c1..cN) WHERE b
 * where a and b read their parameter $K as tm_v.cK. A statement with a
 * query inside, an ON CONFLICT DO UPDATE (two rows of one key in one
 * statement fail) or a FROM/USING of its own is left as it is. */
static void multi_template(struct pg_stmt *s)
{
    struct tm__buf h = TM__BUF_INIT, r = TM__BUF_INIT, t = TM__BUF_INIT;
    const char *sql = skip_ws(s->sql), *v, *e, *w;
    int rc = 0, i;

    if (!s->writes || !s->nparams || find_kw(sql, "SELECT") ||
        find_kw(sql, "RETURNING"))
        return;
    if (kw_at(sql, sql, "INSERT")) {
        v = find_kw(sql, "VALUES");
        if (!v || find_kw(sql, "UPDATE"))
            return;
        e = skip_ws(v + 6);
        if (*e != '(')
            return;
        for (w = e + 1; *w && *w != ')'; w++)
            if (!isdigit((unsigned char)*w) && *w != '$' && *w != ',' && *w != ' ')
                return; /* only parameters: no expression to repeat */
        if (*w != ')')
            return;
        rc = tm__buf_add(&h, sql, (size_t)(e - sql));
        if (!rc)
            rc = tm__buf_add(&r, e, (size_t)(w + 1 - e));
        if (!rc)
            rc = tm__buf_adds(&t, w + 1);
        s->u_pre = (size_t)(v - sql);
        s->u_kind = column_types(s, sql, e) == 0;
        if (s->u_kind)
            copy_template(s, sql, e);
    } else if (kw_at(sql, sql, "UPDATE") || kw_at(sql, sql, "DELETE")) {
        int upd = kw_at(sql, sql, "UPDATE");
        w = find_kw(sql, "WHERE");
        if (!w || (upd && find_kw(sql, "FROM")) || (!upd && find_kw(sql, "USING")))
            return;
        rc = tm__buf_add(&h, sql, (size_t)(w - sql));
        if (!rc)
            rc = tm__buf_adds(&h, upd ? " FROM " : " USING ");
        s->u_pre = h.len;
        s->u_kind = 2;
        if (!rc)
            rc = tm__buf_adds(&h, "(VALUES ");
        for (i = 1; !rc && i <= s->nparams; i++)
            rc = tm__buf_addf(&r, "%s$%d", i > 1 ? "," : "(", i);
        if (!rc)
            rc = tm__buf_addch(&r, ')');
        if (!rc)
            rc = alias_cols(&t, s->nparams);
        if (!rc)
            rc = tm__buf_addch(&t, ' ');
        if (!rc)
            rc = tm__buf_adds(&t, w);
    } else {
        return;
    }
    if (!rc)
        rc = tm__buf_addch(&h, '\0');
    if (!rc)
        rc = tm__buf_addch(&r, '\0');
    if (!rc)
        rc = tm__buf_addch(&t, '\0');
    if (rc) { /* out of memory: one statement per run, slower, not wrong */
        tm__buf_release(&h);
        tm__buf_release(&r);
        tm__buf_release(&t);
        return;
    }
    s->m_head = tm__buf_detach(&h, NULL);
    s->m_row = tm__buf_detach(&r, NULL);
    s->m_tail = tm__buf_detach(&t, NULL);
}

/* Appends text with each $K outside quotes made $(base + K) (a row), or,
 * base < 0, tm_v.cK, or NULL when no held row has a value for K (the
 * VALUES list would type that column text). */
static int emit(struct tm__buf *b, const char *text, int base,
                const unsigned *nonnull)
{
    const char *p = text;
    int rc = 0;
    while (!rc && *p) {
        if (*p == '\'' || *p == '"') {
            const char *q = p + 1;
            while (*q && *q != *p)
                q++;
            q = *q ? q + 1 : q;
            rc = tm__buf_add(b, p, (size_t)(q - p));
            p = q;
        } else if (*p == '$' && isdigit((unsigned char)p[1])) {
            int k = atoi(p + 1);
            p++;
            while (isdigit((unsigned char)*p))
                p++;
            if (base >= 0)
                rc = tm__buf_addf(b, "$%d", base + k);
            else if (k >= 1 && k <= MAX_PARAMS && (*nonnull >> (k - 1) & 1))
                rc = tm__buf_addf(b, "tm_v.c%d", k);
            else
                rc = tm__buf_adds(b, "NULL");
        } else {
            rc = tm__buf_addch(b, *p++);
        }
    }
    return rc;
}

/* Appends v as 4 or 8 bytes, most significant first (the wire's order). */
/* Writes v's lowest bytes at p, most significant first; returns p past
 * them. */
static unsigned char *put_be_at(unsigned char *p, uint64_t v, int bytes)
{
    int i;
    for (i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    return p + bytes;
}

/* The text or blob of held value h of s. */
static const char *hval_bytes(const struct pg_stmt *s, const struct hval *h)
{
    return s->arena.buf + h->u.off;
}

/* The bytes of held value h as a binary field of type t: what
 * field_at() writes after the length. A number goes as itself into a
 * number column, as its text into any other (what its text bind did). */
static size_t field_size(const struct hval *h, Oid t)
{
    char num[NUM_TEXT];
    if (h->kind == V_NULL)
        return 0;
    if (t == PG_INT8 || t == PG_FLOAT8)
        return 8;
    if (h->kind == V_INT || h->kind == V_REAL)
        return num_text(num, h->kind, h->u.i, h->u.f);
    return (size_t)h->len;
}

/* Writes held value h of s as a binary field of type t at p (an array's
 * element, a COPY's column): its length n (field_size) or -1 for NULL,
 * then the value as the type's receive function reads it. A value of
 * another kind than its column's (an unused parameter's) is converted
 * from its text, as int8in or float8in would. Returns p past it. */
static unsigned char *field_at(unsigned char *p, const struct pg_stmt *s,
                               const struct hval *h, Oid t, size_t n)
{
    char num[NUM_TEXT];
    const char *text = NULL;
    if (h->kind == V_NULL)
        return put_be_at(p, 0xffffffffu, 4);
    p = put_be_at(p, n, 4);
    if (h->kind == V_INT || h->kind == V_REAL) {
        if (t == PG_INT8 && h->kind == V_INT)
            return put_be_at(p, (uint64_t)h->u.i, 8);
        if (t == PG_FLOAT8) {
            double x = h->kind == V_INT ? (double)h->u.i : h->u.f;
            uint64_t u;
            memcpy(&u, &x, sizeof u);
            return put_be_at(p, u, 8);
        }
        num_text(num, h->kind, h->u.i, h->u.f);
        text = num;
    } else {
        text = hval_bytes(s, h);
    }
    if (t == PG_INT8)
        return put_be_at(p, (uint64_t)strtoll(text, NULL, 10), 8);
    if (t == PG_FLOAT8) {
        double x = strtod(text, NULL);
        uint64_t u;
        memcpy(&u, &x, sizeof u);
        return put_be_at(p, u, 8);
    }
    memcpy(p, text, n);
    return p + n;
}

static int put_be(struct tm__buf *b, uint64_t v, int bytes)
{
    unsigned char x[8];
    int i;
    for (i = 0; i < bytes; i++)
        x[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    return tm__buf_add(b, x, (size_t)bytes);
}

/* The array type of an element type, and its name in a cast. */
static Oid array_of(Oid t, const char **name)
{
    switch (t) {
    case PG_INT8: *name = "bigint[]"; return 1016;
    case PG_FLOAT8: *name = "double precision[]"; return 1022;
    case PG_BYTEA: *name = "bytea[]"; return 1001;
    default: *name = "text[]"; return 1009;
    }
}

/* Rows [at, at + k) of s (check of them told 1 by changes()) as one
 * statement reading one array per parameter
 * (binary, so nothing is escaped; the server parses a short text and
 * decodes arrays instead of planning k rows of VALUES). Returns 1 when
 * sent (or failed: d->pipe_rc), 0 when the rows' types do not fit arrays
 * (a column of two types): then VALUES it is. */
static int send_unnest(struct pg_stmt *s, size_t at, size_t k, int check)
{
    struct pg_db *d = D(s->base.db);
    size_t np = (size_t)s->nparams, i, j;
    struct tm__buf sql = TM__BUF_INIT, arr[MAX_PARAMS];
    const char *vals[MAX_PARAMS], *cast;
    int lens[MAX_PARAMS], fmts[MAX_PARAMS], rc = 0, sent = 1;
    Oid et[MAX_PARAMS], at_oid[MAX_PARAMS];
    unsigned nonnull = 0;
    char *pre = NULL, *row = NULL;

    for (i = 0; i < np; i++) { /* each parameter's element type */
        et[i] = s->u_kind == 1 ? s->ctype[i] : 0;
        for (j = at; j < at + k; j++) {
            Oid t = s->rv[j * np + i].type;
            if (s->rv[j * np + i].kind == V_NULL)
                continue;
            nonnull |= 1u << i;
            if (s->u_kind == 2 && !et[i])
                et[i] = t;
            if (t != et[i] && !(et[i] == PG_FLOAT8 && t == PG_INT8))
                return 0;
        }
        if (!et[i])
            et[i] = PG_TEXT; /* no value: read as NULL below */
        tm__buf_init(&arr[i]);
    }
    if (s->u_kind == 1)
        nonnull = ~0u; /* the arrays carry the NULLs, typed by the column */
    for (i = 0; !rc && i < np; i++) {
        struct tm__buf *b = &arr[i];
        at_oid[i] = array_of(et[i], &cast);
        rc = put_be(b, 1, 4); /* dimensions */
        if (!rc)
            rc = put_be(b, 1, 4); /* may hold NULLs */
        if (!rc)
            rc = put_be(b, et[i], 4);
        if (!rc)
            rc = put_be(b, k, 4);
        if (!rc)
            rc = put_be(b, 1, 4); /* lower bound */
        for (j = at; !rc && j < at + k; j++) {
            const struct hval *h = &s->rv[j * np + i];
            size_t n = field_size(h, et[i]);
            if ((rc = tm__buf_grow(b, 4 + n)) == 0) {
                unsigned char *e = field_at((unsigned char *)b->buf + b->len, s, h,
                                            et[i], n);
                tm__buf_setlen(b, (size_t)((char *)e - b->buf));
            }
        }
        vals[i] = b->buf;
        lens[i] = (int)b->len;
        fmts[i] = 1;
    }
    /* the text: what comes before the rows, the rows, what comes after */
    pre = rc ? NULL : strndup(s->m_head, s->u_pre);
    rc = rc || !pre;
    if (!rc)
        rc = emit(&sql, pre, -1, &nonnull);
    if (!rc && s->u_kind == 1) {
        row = strndup(s->m_row + 1, strlen(s->m_row) - 2); /* no ( ) */
        rc = !row || tm__buf_adds(&sql, "SELECT ") || emit(&sql, row, -1, &nonnull) ||
             tm__buf_adds(&sql, " FROM ");
    }
    if (!rc)
        rc = tm__buf_adds(&sql, "unnest(");
    for (i = 0; !rc && i < np; i++) {
        array_of(et[i], &cast);
        rc = tm__buf_addf(&sql, "%s$%zu::%s", i ? "," : "", i + 1, cast);
    }
    /* every row told 1: a conflict is a failure to redo anyway, so a plain
     * INSERT does (it skips the speculative insertion of ON CONFLICT) */
    if (!rc && s->u_kind == 1)
        rc = alias_cols(&sql, (int)np) ||
             ((size_t)check != k && emit(&sql, s->m_tail, -1, &nonnull));
    if (!rc && s->u_kind == 2)
        rc = tm__buf_addch(&sql, ')') || emit(&sql, s->m_tail + 1, -1, &nonnull);
    if (!rc)
        rc = tm__buf_addch(&sql, '\0');
    if (rc) {
        pipe_fail(d, NULL, "out of memory");
    } else if (!send_params(d, sql.buf, (int)np, at_oid, vals, lens, fmts) ||
               pend_push(d, NULL) != SQLITE_OK) {
        pipe_fail(d, NULL, PQerrorMessage(d->conn));
    } else {
        d->pend[d->npend - 1].check = check;
        d->pend[d->npend - 1].expect = (int)k;
    }
    free(pre);
    free(row);
    tm__buf_release(&sql);
    for (i = 0; i < np; i++)
        tm__buf_release(&arr[i]);
    return sent;
}

/* Rows of an INSERT sent as COPY, at least: below, the round trip that
 * ends the pipeline before a COPY costs more than the COPY saves. */
#define COPY_MIN_ROWS 128

/* Appends held row j of s to a COPY's data (binary format): its field
 * count, then per column the value's length and the value as the
 * column's binary receive function reads it (-1 for NULL). Written in
 * place, room made once per row: per field buffer calls were a tenth of
 * the writer's time. */
static int copy_row(struct tm__buf *b, const struct pg_stmt *s, size_t j)
{
    size_t np = (size_t)s->nparams, need = 2, n[MAX_PARAMS];
    unsigned char *p;
    int c;
    for (c = 0; c < s->ncopy; c++) {
        n[c] = field_size(&s->rv[j * np + s->cmap[c]], s->ctype[s->cmap[c]]);
        need += 4 + n[c];
    }
    if (tm__buf_grow(b, need))
        return TM_ENOMEM;
    p = put_be_at((unsigned char *)b->buf + b->len, (uint64_t)s->ncopy, 2);
    for (c = 0; c < s->ncopy; c++)
        p = field_at(p, s, &s->rv[j * np + s->cmap[c]], s->ctype[s->cmap[c]], n[c]);
    tm__buf_setlen(b, (size_t)((char *)p - b->buf));
    return 0;
}

/* Reads what is left of an answer (its end); a COPY's state would answer
 * for ever, so it stops there (the connection is then lost or failing). */
static void end_answer(struct pg_db *d)
{
    PGresult *r;
    int i;
    for (i = 0; i < 8 && (r = PQgetResult(d->conn)) != NULL; i++) {
        ExecStatusType es = PQresultStatus(r);
        PQclear(r);
        if (es == PGRES_COPY_IN || es == PGRES_COPY_OUT || es == PGRES_COPY_BOTH)
            break;
    }
}

/* The held rows of INSERT s, every one told inserted by changes(), as one
 * COPY ... FROM STDIN in binary (copy_template): the server reads the
 * rows as they come and inserts them in groups, with no text to parse
 * nor arrays to unnest; like the plain INSERT it replaces, a row already
 * there fails it, and the transaction is done again. COPY cannot go into
 * libpq's pipeline: the commands in flight are settled first (one round
 * trip) and the pipeline is entered again by the next command sent.
 * Returns 1 when sent (or failed: d->pipe_rc), 0 when a value is not of
 * its column's type (the rows go as arrays). */
static int send_copy(struct pg_stmt *s)
{
    static const char head[] = "PGCOPY\n\377\r\n"; /* and a NUL: 11 bytes */
    struct pg_db *d = D(s->base.db);
    size_t np = (size_t)s->nparams, j;
    struct tm__buf b = TM__BUF_INIT;
    PGresult *r;
    int c, rc = 0;
    const char *why = NULL;
    char msg[256]; /* libpq's message, which its next call may move */

    for (j = 0; j < s->nrows; j++)
        for (c = 0; c < s->ncopy; c++) {
            const struct hval *h = &s->rv[j * np + s->cmap[c]];
            Oid t = h->type, ct = s->ctype[s->cmap[c]];
            if (h->kind != V_NULL && t != ct && !(ct == PG_FLOAT8 && t == PG_INT8))
                return 0;
        }
    if (settle(d) != SQLITE_OK)
        return 1; /* the transaction is done again anyway */
    if (!PQsendQuery(d->conn, s->copy_sql)) {
        pipe_fail(d, NULL, PQerrorMessage(d->conn));
        return 1;
    }
    r = PQgetResult(d->conn);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        pipe_fail(d, PQresultStatus(r) == PGRES_FATAL_ERROR ? r : NULL,
                  conn_bad(d) ? PQerrorMessage(d->conn) : "a COPY did not start");
        PQclear(r);
        end_answer(d);
        return 1;
    }
    PQclear(r);
    rc = tm__buf_add(&b, head, sizeof head); /* with its NUL */
    if (!rc)
        rc = put_be(&b, 0, 4); /* flags */
    if (!rc)
        rc = put_be(&b, 0, 4); /* header extension */
    for (j = 0; !rc && j < s->nrows; j++) {
        rc = copy_row(&b, s, j);
        if (!rc && (b.len >= 65536 || j + 1 == s->nrows)) {
            if (j + 1 == s->nrows)
                rc = put_be(&b, 0xffff, 2); /* the trailer */
            if (!rc && PQputCopyData(d->conn, b.buf, (int)b.len) != 1) {
                snprintf(msg, sizeof msg, "%s", PQerrorMessage(d->conn));
                why = msg;
                break;
            }
            tm__buf_reset(&b);
        }
    }
    if (rc)
        why = "out of memory";
    if (PQputCopyEnd(d->conn, why && !conn_bad(d) ? why : NULL) != 1 && !why) {
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(d->conn));
        why = msg;
    }
    tm__buf_release(&b);
    r = PQgetResult(d->conn);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        pipe_fail(d, PQresultStatus(r) == PGRES_FATAL_ERROR ? r : NULL,
                  why ? why : PQerrorMessage(d->conn));
    else if (why || (size_t)atoll(PQcmdTuples(r)) != s->nrows)
        pipe_fail(d, NULL, why ? why : "a COPY inserted other rows than assumed");
    PQclear(r);
    end_answer(d);
    return 1;
}

/* Held value h of s for libpq, as libpq_value. */
static void held_value(const struct pg_stmt *s, const struct hval *h, char *num,
                       const char **v, int *l, int *f)
{
    *l = 0;
    *f = 0;
    switch (h->kind) {
    case V_NULL: *v = NULL; break;
    case V_INT: case V_REAL:
        num_text(num, h->kind, h->u.i, h->u.f);
        *v = num;
        break;
    case V_BLOB: *l = h->len; *f = 1; /* fall through */
    default: *v = hval_bytes(s, h); break;
    }
}

/* Sends the held rows of s, MULTI_ROWS to a statement, into the pipeline. */
static void send_rows(struct pg_stmt *s)
{
    struct pg_db *d = D(s->base.db);
    size_t at = 0, np = (size_t)s->nparams, per = MULTI_ROWS, n;
    int told = 0;
    if (per * np > 65535)
        per = 65535 / np; /* the protocol's limit of parameters */
    for (n = 0; n < s->nrows; n++)
        told += s->rcheck[n];
    if (s->copy_sql && s->nrows >= COPY_MIN_ROWS && (size_t)told == s->nrows &&
        !d->pipe_rc && send_copy(s))
        at = s->nrows;
    if (at < s->nrows && !d->pipe_rc &&
        PQpipelineStatus(d->conn) == PQ_PIPELINE_OFF && !PQenterPipelineMode(d->conn))
        pipe_fail(d, NULL, PQerrorMessage(d->conn)); /* left for a COPY */
    if (at < s->nrows && s->u_kind && !d->pipe_rc) { /* all rows as arrays */
        if (send_unnest(s, 0, s->nrows, told))
            at = s->nrows;
    }
    while (at < s->nrows && !d->pipe_rc) {
        struct tm__buf b = TM__BUF_INIT;
        size_t k = s->nrows - at < per ? s->nrows - at : per, j, x, nv;
        unsigned nonnull = 0;
        int rc = 0, check = 0;
        const char **pv;
        int *pl, *pf;
        Oid *pt;
        char (*num)[NUM_TEXT];
        void *blk;
        for (j = at; j < at + k; j++) {
            size_t i;
            check |= s->rcheck[j];
            for (i = 0; i < np; i++)
                if (s->rv[j * np + i].kind != V_NULL)
                    nonnull |= 1u << i;
        }
        /* the rows' values as libpq takes them: one block for all */
        nv = k * np;
        blk = malloc(nv * (sizeof *pv + sizeof *num + 2 * sizeof *pl + sizeof *pt));
        if (!blk) {
            pipe_fail(d, NULL, "out of memory");
            break;
        }
        pv = blk;
        num = (char (*)[NUM_TEXT])(pv + nv);
        pl = (int *)(num + nv);
        pf = pl + nv;
        pt = (Oid *)(pf + nv);
        for (x = 0; x < nv; x++) {
            const struct hval *h = &s->rv[at * np + x];
            held_value(s, h, num[x], &pv[x], &pl[x], &pf[x]);
            pt[x] = h->type;
        }
        rc = emit(&b, s->m_head, -1, &nonnull);
        for (j = 0; !rc && j < k; j++) {
            if (j)
                rc = tm__buf_addch(&b, ',');
            if (!rc)
                rc = emit(&b, s->m_row, (int)(j * np), NULL);
        }
        if (!rc)
            rc = emit(&b, s->m_tail, -1, &nonnull);
        if (!rc)
            rc = tm__buf_addch(&b, '\0');
        if (rc) {
            pipe_fail(d, NULL, "out of memory");
        } else if (!PQsendQueryParams(d->conn, b.buf, (int)nv, pt, pv, pl, pf, 0) ||
                   pend_push(d, NULL) != SQLITE_OK) {
            pipe_fail(d, NULL, PQerrorMessage(d->conn));
        } else {
            d->pend[d->npend - 1].check = check;
            d->pend[d->npend - 1].expect = (int)k;
        }
        free(blk);
        tm__buf_release(&b);
        at += k;
    }
    free_held(s);
}

/* Forgets s's held rows (their texts with them: the arena keeps its
 * room for the next). */
static void free_held(struct pg_stmt *s)
{
    s->nrows = 0;
    tm__buf_reset(&s->arena);
}

/* Sends every statement's held rows, in the order they were first held. */
static void drain(struct pg_db *d)
{
    size_t i;
    for (i = 0; i < d->nwait; i++) {
        send_rows(d->wait[i]);
        d->wait[i]->waiting = 0;
    }
    d->nwait = 0;
    d->last_multi = NULL;
}


/* Holds a run of s (a copy of its parameters) to send with others. */
static int hold(struct pg_stmt *s, const Oid *types)
{
    struct pg_db *d = D(s->base.db);
    size_t np = (size_t)s->nparams, i, need = 0, end;
    struct hval *r;
    if (s->nrows == MULTI_HOLD)
        send_rows(s); /* stays in d->wait: more rows follow */
    if (s->nrows == s->arows) {
        size_t n = s->arows ? 2 * s->arows : 64;
        struct hval *v = realloc(s->rv, n * np * sizeof *v);
        unsigned char *c = v ? (s->rv = v, realloc(s->rcheck, n)) : NULL;
        if (!c)
            return SQLITE_NOMEM;
        s->rcheck = c;
        s->arows = n;
    }
    if (!s->waiting) {
        struct pg_stmt **w = realloc(d->wait, (d->nwait + 1) * sizeof *w);
        if (!w)
            return SQLITE_NOMEM;
        d->wait = w;
        d->wait[d->nwait++] = s;
        s->waiting = 1;
    }
    for (i = 0; i < np; i++) /* the row's texts and blobs: room once */
        if (s->pv[i].kind == V_TEXT || s->pv[i].kind == V_BLOB)
            need += (size_t)s->pv[i].len + 1;
    if (need && tm__buf_grow(&s->arena, need))
        return SQLITE_NOMEM;
    end = s->arena.len;
    r = &s->rv[s->nrows * np];
    for (i = 0; i < np; i++) {
        const struct pval *p = &s->pv[i];
        r[i].kind = p->kind;
        r[i].type = types[i];
        r[i].len = p->len;
        if (p->kind == V_INT) {
            r[i].u.i = p->u.i;
        } else if (p->kind == V_REAL) {
            r[i].u.f = p->u.f;
        } else if (p->kind != V_NULL) {
            /* with a NUL after it, a blob too (field_at may read it as
             * text) */
            r[i].u.off = end;
            memcpy(s->arena.buf + end, p->buf, (size_t)p->len);
            end += (size_t)p->len;
            s->arena.buf[end++] = '\0';
        }
    }
    if (need)
        tm__buf_setlen(&s->arena, end);
    s->rcheck[s->nrows++] = 0;
    d->last_multi = s;
    return SQLITE_OK;
}

static int run(struct pg_stmt *s)
{
    struct pg_db *d = D(s->base.db);
    Oid types[MAX_PARAMS];
    int i;

    for (i = 0; i < s->nparams; i++) /* one that is not used: any type */
        types[i] = s->types[i] || (s->used >> i & 1) ? s->types[i] : PG_TEXT;
    park(d);
    if (d->pipe_on && s->writes && (d->npend || d->pipe_rc || d->in_txn))
        return send_piped(s, types);
    d->last_piped = 0;
    if ((d->npend || d->nwait || d->pipe_rc) && flush(d) != SQLITE_OK)
        return d->pipe_rc; /* this transaction is done again */
    for (i = 0;; i++) {
        int rc;
        if (conn_bad(d) && !d->in_txn &&
            (rc = reconnect(d)) != SQLITE_OK)
            return rc;
        rc = run_sync(s, types);
        /* a query lost with the connection outside a transaction is run
         * again on a new one; a write may have been done: it is not */
        if (rc == SQLITE_OK || !conn_bad(d) || d->in_txn ||
            s->writes || i == 2)
            return rc;
    }
}

/* Runs s and waits for its answer. */
static int run_sync(struct pg_stmt *s, const Oid *types)
{
    struct pg_db *d = D(s->base.db);
    PGresult *r, *r2;
    ExecStatusType es;
    const char *vals[MAX_PARAMS];
    int lens[MAX_PARAMS], fmts[MAX_PARAMS];
    char num[MAX_PARAMS][NUM_TEXT];

    params_of(s, vals, lens, fmts, num);

    if (s->persistent) {
        unsigned sig = type_sig(s);
        if (s->prepared_sig != sig || s->prepared_gen != d->gen) {
            if (!s->name[0])
                snprintf(s->name, sizeof s->name, "tm%lu", ++d->names);
            else if (s->prepared_sig && s->prepared_gen == d->gen) {
                /* the same name again, with other types */
                struct tm__buf b = TM__BUF_INIT;
                if (tm__buf_addf(&b, "DEALLOCATE %s", s->name) == 0)
                    PQclear(PQexec(d->conn, b.buf));
                tm__buf_release(&b);
            }
            r = PQprepare(d->conn, s->name, s->sql, s->nparams, types);
            if (getenv("TREEMIG_PG_TRACE") && PQresultStatus(r) != PGRES_COMMAND_OK)
                fprintf(stderr, "treemig pg: in %s\n", s->sql);
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                int code = fail_res(d, r);
                PQclear(r);
                s->prepared_sig = 0;
                return code;
            }
            PQclear(r);
            s->prepared_sig = sig;
            s->prepared_gen = d->gen;
        }
        r = PQexecPrepared(d->conn, s->name, s->nparams, vals, lens, fmts, 0);
    } else if (s->stream) {
        if (!PQsendQueryParams(d->conn, s->sql, s->nparams, types, vals, lens, fmts, 0))
            return fail_res(d, NULL);
        PQsetSingleRowMode(d->conn);
        d->stream = s;
        r = PQgetResult(d->conn); /* the first row, or the end, or a failure */
        es = PQresultStatus(r);
        if (es == PGRES_SINGLE_TUPLE) {
            s->res = r;
            s->row = -1;
            return SQLITE_OK;
        }
        if (es != PGRES_TUPLES_OK) {
            int code = fail_res(d, r);
            PQclear(r);
            clear_result(s);
            return code;
        }
        /* no row: the end, read */
        while (d->stream == s && (r2 = PQgetResult(d->conn)) != NULL)
            PQclear(r2);
        d->stream = NULL;
    } else {
        r = PQexecParams(d->conn, s->sql, s->nparams, types, vals, lens, fmts, 0);
    }
    es = PQresultStatus(r);
    if (es != PGRES_TUPLES_OK && es != PGRES_COMMAND_OK) {
        int code;
        if (getenv("TREEMIG_PG_TRACE"))
            fprintf(stderr, "treemig pg: in %s\n", s->sql);
        code = fail_res(d, r);
        PQclear(r);
        return code;
    }
    s->res = r;
    s->row = -1;
    d->changes = atoi(PQcmdTuples(r));
    return SQLITE_OK;
}

static struct pg_db *d_of(struct pg_stmt *s)
{
    return D(s->base.db);
}

/* The next row of a streaming query: from its parked rows, else from the
 * connection. */
static int next_row(struct pg_stmt *s)
{
    struct pg_db *d = d_of(s);
    PGresult *r;
    ExecStatusType es;
    if (s->qhead < s->nq)
        r = s->queue[s->qhead++];
    else
        r = PQgetResult(d->conn);
    es = PQresultStatus(r);
    PQclear(s->res);
    s->res = NULL;
    if (es == PGRES_SINGLE_TUPLE || (es == PGRES_TUPLES_OK && PQntuples(r) > 0)) {
        s->res = r; /* one row, or the rows parked (park) */
        s->row = 0;
        return SQLITE_ROW;
    }
    if (es == PGRES_TUPLES_OK) { /* the end */
        PQclear(r);
        if (d->stream == s) {
            while ((r = PQgetResult(d->conn)) != NULL)
                PQclear(r);
            d->stream = NULL;
        }
        s->res = PQmakeEmptyPGresult(d->conn, PGRES_TUPLES_OK);
        s->done = 1;
        return SQLITE_DONE;
    }
    {
        int code = fail_res(d, r);
        PQclear(r);
        s->done = 1; /* not run again before a reset */
        if (d->stream == s) {
            while ((r = PQgetResult(d->conn)) != NULL)
                PQclear(r);
            d->stream = NULL;
        }
        return code;
    }
}

/* Keeps r (a row or the end) with s, for next_row. */
static void queue_push(struct pg_stmt *s, PGresult *r)
{
    if (s->nq == s->aq) {
        size_t n = s->aq ? 2 * s->aq : 4;
        PGresult **q = realloc(s->queue, n * sizeof *q);
        if (!q) { /* out of memory: the query ends here, failed */
            PQclear(r);
            return;
        }
        s->queue = q;
        s->aq = n;
    }
    s->queue[s->nq++] = r;
}

/* The connection is needed: the rows still to come of the streaming query
 * are read now and kept with it, gathered in one result (PQsetvalue: as
 * compact as a result read whole, not a result per row). */
static void park(struct pg_db *d)
{
    struct pg_stmt *s = d->stream;
    PGresult *r, *acc = NULL;
    int n = 0, i;
    if (!s)
        return;
    d->stream = NULL;
    while ((r = PQgetResult(d->conn)) != NULL) {
        if (PQresultStatus(r) != PGRES_SINGLE_TUPLE) { /* the end, or a failure */
            if (acc)
                queue_push(s, acc);
            acc = NULL;
            queue_push(s, r);
            continue;
        }
        if (!acc && !(acc = PQcopyResult(r, PG_COPYRES_ATTRS))) {
            PQclear(r);
            continue;
        }
        for (i = 0; i < PQnfields(r); i++)
            if (!PQsetvalue(acc, n, i, PQgetisnull(r, 0, i) ? NULL : PQgetvalue(r, 0, i),
                            PQgetisnull(r, 0, i) ? -1 : PQgetlength(r, 0, i)))
                break;
        n++;
        PQclear(r);
    }
    if (acc)
        queue_push(s, acc);
}

static int g_step(struct tm__stmt *st)
{
    struct pg_stmt *s = P(st);
    int rc;
    if (s->done)
        return SQLITE_DONE;
    if (!s->res) {
        rc = run(s);
        if (rc != SQLITE_OK)
            return rc;
    }
    if (s->blob) {
        PQfreemem(s->blob);
        s->blob = NULL;
        s->blob_col = -1;
    }
    if (++s->row < PQntuples(s->res))
        return SQLITE_ROW;
    if (s->stream && (d_of(s)->stream == s || s->qhead < s->nq))
        return next_row(s);
    s->done = 1;
    return SQLITE_DONE;
}

static int g_reset(struct tm__stmt *st)
{
    clear_result(P(st));
    return SQLITE_OK;
}

static int g_finalize(struct tm__stmt *st)
{
    struct pg_stmt *s = P(st);
    struct pg_db *d = D(st->db);
    int i;
    if (d->npend || d->nwait)
        flush(d); /* its answers are read before it goes */
    clear_result(s);
    park(d);
    if (s->name[0] && s->prepared_sig && s->prepared_gen == d->gen &&
        PQstatus(d->conn) == CONNECTION_OK &&
        PQtransactionStatus(d->conn) != PQTRANS_INERROR) {
        struct tm__buf b = TM__BUF_INIT;
        if (tm__buf_addf(&b, "DEALLOCATE %s", s->name) == 0)
            PQclear(PQexec(d->conn, b.buf));
        tm__buf_release(&b);
    }
    for (i = 0; i < MAX_PARAMS; i++)
        free(s->pv[i].buf);
    free(s->m_head);
    free(s->m_row);
    free(s->m_tail);
    free(s->copy_sql);
    free(s->rv);
    tm__buf_release(&s->arena);
    free(s->rcheck);
    free(s->queue);
    free(s->sql);
    free(s);
    return SQLITE_OK;
}

static int has_value(struct pg_stmt *s, int i)
{
    return s->res && s->row >= 0 && s->row < PQntuples(s->res) && i >= 0 &&
           i < PQnfields(s->res) && !PQgetisnull(s->res, s->row, i);
}

static int g_column_type(struct tm__stmt *st, int i)
{
    struct pg_stmt *s = P(st);
    if (!has_value(s, i))
        return SQLITE_NULL;
    switch (PQftype(s->res, i)) {
    case PG_INT8: case PG_INT4: case PG_INT2: case PG_BOOL: case PG_NUMERIC:
        return SQLITE_INTEGER;
    case PG_FLOAT4: case PG_FLOAT8:
        return SQLITE_FLOAT;
    case PG_BYTEA:
        return SQLITE_BLOB;
    default:
        return SQLITE_TEXT;
    }
}

static int64_t g_column_int64(struct tm__stmt *st, int i)
{
    struct pg_stmt *s = P(st);
    const char *v;
    if (!has_value(s, i))
        return 0;
    v = PQgetvalue(s->res, s->row, i);
    if (PQftype(s->res, i) == PG_BOOL)
        return v[0] == 't';
    if (PQftype(s->res, i) == PG_FLOAT8 || PQftype(s->res, i) == PG_FLOAT4 ||
        PQftype(s->res, i) == PG_NUMERIC)
        return (int64_t)strtod(v, NULL);
    return strtoll(v, NULL, 10);
}

static double g_column_double(struct tm__stmt *st, int i)
{
    struct pg_stmt *s = P(st);
    return has_value(s, i) ? strtod(PQgetvalue(s->res, s->row, i), NULL) : 0.0;
}

static const unsigned char *g_column_text(struct tm__stmt *st, int i)
{
    struct pg_stmt *s = P(st);
    if (!has_value(s, i))
        return NULL;
    if (PQftype(s->res, i) == PG_BOOL) /* SQLite's truth values are 1 and 0 */
        return (const unsigned char *)(PQgetvalue(s->res, s->row, i)[0] == 't'
                                           ? "1" : "0");
    return (const unsigned char *)PQgetvalue(s->res, s->row, i);
}

/* Decodes a bytea column (text format, hex) once per row and column. */
static int decode_blob(struct pg_stmt *s, int i)
{
    if (s->blob_col == i)
        return 0;
    if (s->blob)
        PQfreemem(s->blob);
    s->blob = PQunescapeBytea((const unsigned char *)PQgetvalue(s->res, s->row, i),
                              &s->blob_len);
    s->blob_col = s->blob ? i : -1;
    return s->blob ? 0 : -1;
}

static const void *g_column_blob(struct tm__stmt *st, int i)
{
    struct pg_stmt *s = P(st);
    if (!has_value(s, i))
        return NULL;
    if (PQftype(s->res, i) != PG_BYTEA)
        return PQgetvalue(s->res, s->row, i);
    return decode_blob(s, i) == 0 ? s->blob : NULL;
}

static int g_column_bytes(struct tm__stmt *st, int i)
{
    struct pg_stmt *s = P(st);
    if (!has_value(s, i))
        return 0;
    if (PQftype(s->res, i) != PG_BYTEA)
        return PQgetlength(s->res, s->row, i);
    return decode_blob(s, i) == 0 ? (int)s->blob_len : 0;
}

/* Keeps sql, a SET run outside a transaction, for setup() to run again on
 * a new connection (a SET lasts as long as its session). */
static int remember_set(struct pg_db *d, const char *sql)
{
    size_t n = strlen(sql);
    while (n && (sql[n - 1] == ';' || sql[n - 1] == ' ' || sql[n - 1] == '\n'))
        n--;
    if (tm__buf_add(&d->sets, sql, n) || tm__buf_addch(&d->sets, ';')) {
        set_err(d, SQLITE_NOMEM, "out of memory");
        return SQLITE_NOMEM;
    }
    return SQLITE_OK;
}

/* A COMMIT was sent and its answer lost with the connection: it may
 * have committed or not. The server knows, by the transaction's id asked
 * at its BEGIN (txid_status, PostgreSQL 10 and later), once the session
 * that sent it has ended (until then "in progress": asked again for up
 * to OUTCOME_WAIT_MS). SQLITE_OK when it committed; TM__DB_REDO when it
 * did not, or when that cannot be known (the id unknown, a server
 * without txid_status): the caller applies the transaction again, which
 * fails loudly if it had committed after all (scale-out.md); the
 * connection's error when no new one could be made. */
#define OUTCOME_WAIT_MS 5000
static int commit_outcome(struct pg_db *d)
{
    char sql[64];
    int code, waited = 0;
    if (!d->xid[0])
        return TM__DB_REDO;
    code = reconnect(d);
    if (code != SQLITE_OK)
        return code;
    snprintf(sql, sizeof sql, "SELECT txid_status(%s)", d->xid);
    for (;;) {
        PGresult *r = PQexec(d->conn, sql);
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        const char *v = ok && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0) : "";
        int committed = !strcmp(v, "committed"), running = !strcmp(v, "in progress");
        PQclear(r);
        if (!running || waited >= OUTCOME_WAIT_MS)
            return committed ? SQLITE_OK : TM__DB_REDO;
        tm__sleep_ms(50);
        waited += 50;
    }
}

static int g_exec(struct tm__db *db, const char *sql)
{
    struct pg_db *d = D(db);
    char *t = tm__db_pg_translate(sql);
    const char *w;
    PGresult *r;
    ExecStatusType es;
    int begin, commit, rollback, code;
    char *q; /* what is sent: t, or for a writer's BEGIN t and its id */
    if (!t)
        return SQLITE_NOMEM;
    if (!*t) { /* only PRAGMAs that mean nothing here */
        free(t);
        return SQLITE_OK;
    }
    park(d);
    w = skip_ws(t);
    begin = kw_at(w, w, "BEGIN");
    commit = kw_at(w, w, "COMMIT") || kw_at(w, w, "END");
    rollback = kw_at(w, w, "ROLLBACK");
    d->last_piped = 0;
    if (rollback && conn_bad(d)) {
        /* the server rolled it back when the connection went */
        drop_pipe(d);
        free(t);
        return SQLITE_OK;
    }
    if (d->npend || d->nwait || d->pipe_rc) {
        /* the pipeline's answers first: COMMIT commits only what they
         * confirm; ROLLBACK and BEGIN start over */
        int rc = flush(d);
        if (begin || commit || rollback)
            d->pipe_rc = 0;
        if (rc != SQLITE_OK && !begin && !rollback) {
            free(t);
            if (commit) { /* nothing committed: the caller does it again */
                d->in_txn = !conn_bad(d);
                rc = TM__DB_REDO;
            }
            d->errcode = rc;
            return rc;
        }
    }
    if (conn_bad(d) && !d->in_txn &&
        (code = reconnect(d)) != SQLITE_OK) {
        free(t);
        return code;
    }
    q = t;
    if (begin && d->track) {
        /* the id that tells a lost COMMIT's outcome (commit_outcome);
         * no round trip more: one simple query, the last answer read */
        size_t n = strlen(t) + 32;
        q = malloc(n);
        if (!q) {
            free(t);
            return SQLITE_NOMEM;
        }
        snprintf(q, n, "%.*s; SELECT txid_current()", (int)strcspn(t, ";"), t);
    }
    if (begin || rollback)
        d->xid[0] = '\0';
    r = PQexec(d->conn, q);
    if (!d->in_txn && !commit && !rollback && conn_bad(d) &&
        PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        /* the connection went while idle (noticed only now): BEGIN, or a
         * statement of its own outside a transaction (a setting, a SET),
         * again on a new one */
        PQclear(r);
        code = reconnect(d);
        if (code != SQLITE_OK) {
            if (q != t)
                free(q);
            free(t);
            return code;
        }
        r = PQexec(d->conn, q);
    }
    if (q != t)
        free(q);
    es = PQresultStatus(r);
    if (commit || rollback)
        d->in_txn = 0;
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK && es != PGRES_EMPTY_QUERY) {
        free(t);
        code = fail_res(d, r);
        PQclear(r);
        if (commit && conn_bad(d)) /* lost with the connection */
            code = d->errcode = commit_outcome(d);
        d->xid[0] = '\0';
        return code; /* SQLITE_OK: it had committed */
    }
    if (begin && q != t && es == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
        PQgetlength(r, 0, 0) < (int)sizeof d->xid &&
        strspn(PQgetvalue(r, 0, 0), "0123456789") == (size_t)PQgetlength(r, 0, 0))
        memcpy(d->xid, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0) + 1);
    if (begin)
        d->in_txn = 1;
    if (commit)
        d->xid[0] = '\0';
    d->changes = atoi(PQcmdTuples(r));
    PQclear(r);
    if (kw_at(w, w, "SET") && !d->in_txn)
        code = remember_set(d, w);
    else
        code = SQLITE_OK;
    free(t);
    return code;
}

static int g_changes(struct tm__db *db)
{
    struct pg_db *d = D(db);
    if (d->last_piped && d->last_multi && d->last_multi->nrows)
        d->last_multi->rcheck[d->last_multi->nrows - 1] = 1;
    else if (d->last_piped && d->npend && !d->pend[d->npend - 1].prep)
        d->pend[d->npend - 1].check = 1; /* told 1: flush() verifies */
    return d->changes;
}
static const char *g_errmsg(struct tm__db *db)
{
    return D(db)->errmsg ? D(db)->errmsg : "not an error";
}
static int g_errcode(struct tm__db *db)
{
    return D(db)->errcode;
}
static int g_autocommit(struct tm__db *db)
{
    return !D(db)->npend && !D(db)->nwait && PQtransactionStatus(D(db)->conn) == PQTRANS_IDLE;
}
static int g_pipeline(struct tm__db *db, int on)
{
    struct pg_db *d = D(db);
    int rc = on ? SQLITE_OK : flush(d);
    d->pipe_on = on;
    d->track |= on;
    return rc;
}
static int g_close(struct tm__db *db)
{
    struct pg_db *d = D(db);
    size_t i;
    PQfinish(d->conn);
    for (i = 0; i < d->npc; i++) {
        free(d->pc[i]->sql);
        free(d->pc[i]);
    }
    free(d->pend);
    free(d->wait);
    free(d->bad_text);
    free(d->errmsg);
    tm__buf_release(&d->sets);
    free(db->name);
    free(d);
    return SQLITE_OK;
}

static int64_t g_total_changes(struct tm__db *db)
{
    (void)db;
    return -1; /* a pipeline's counts are not all known */
}

static const struct tm__db_ops pg_ops = {
    1, "postgresql", g_prepare, g_bind_int64, g_bind_double, g_bind_text,
    g_bind_blob, g_bind_null, g_step, g_reset, g_finalize, g_column_type,
    g_column_int64, g_column_double, g_column_text, g_column_blob,
    g_column_bytes, g_exec, g_changes, g_errmsg, g_errcode, g_autocommit,
    g_close, g_pipeline, g_total_changes,
};

/* libpq's notices (NOTICE: relation exists, skipping) are not ours to print */
static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

int tm__db_pg_lock(struct tm__db *db, int64_t key, int *got)
{
    struct pg_db *d = D(db);
    int rc;
    *got = 0;
    d->lock_key = key;
    rc = setup(d);
    if (rc == SQLITE_OK)
        *got = 1;
    else
        d->lock_key = 0;
    if (rc == SQLITE_BUSY)
        rc = SQLITE_OK; /* not taken: *got says so */
    else if (rc != SQLITE_OK)
        set_err(d, rc, PQerrorMessage(d->conn));
    return rc;
}

char *tm__db_pg_redact(const char *uri)
{
    /* scheme://[user[:password]@]host...: drop ":password"; and a
     * password=... query parameter */
    struct tm__buf b = TM__BUF_INIT;
    const char *auth = strstr(uri, "://"), *at, *colon, *q, *p;
    int rc = 0;
    if (!auth)
        return strdup(uri);
    auth += 3;
    at = strchr(auth, '@');
    q = strchr(auth, '/');
    if (at && (!q || at < q) && (colon = memchr(auth, ':', (size_t)(at - auth)))) {
        rc = tm__buf_add(&b, uri, (size_t)(colon - uri));
        p = at;
    } else {
        p = uri;
    }
    /* the query part: every parameter but password */
    q = strchr(p, '?');
    if (!rc)
        rc = tm__buf_add(&b, p, q ? (size_t)(q - p) : strlen(p));
    if (q) {
        char sep = '?';
        q++;
        while (!rc && *q) {
            const char *e = strchr(q, '&');
            size_t n = e ? (size_t)(e - q) : strlen(q);
            if (strncmp(q, "password=", 9) != 0) {
                rc = tm__buf_addch(&b, sep);
                if (!rc)
                    rc = tm__buf_add(&b, q, n);
                sep = '&';
            }
            q += n + (e ? 1 : 0);
        }
    }
    if (rc) {
        tm__buf_release(&b);
        return NULL;
    }
    return tm__buf_detach(&b, NULL);
}

/* Set once a connection of this process was made (any thread). */
static atomic_int connected_once;

int tm__db_open_pg(const char *uri, struct tm__db **out, char **err)
{
    struct pg_db *d = calloc(1, sizeof *d);
    PGresult *r;
    int retried = 0;
    *out = NULL;
    *err = NULL;
    if (!d)
        return SQLITE_NOMEM;
    tm__buf_init(&d->sets);
    d->base.ops = &pg_ops;
    d->base.name = tm__db_pg_redact(uri);
    if (!d->base.name) {
        free(d);
        return SQLITE_NOMEM;
    }
    d->conn = PQconnectdb(uri);
    if (d->conn && PQstatus(d->conn) != CONNECTION_OK && atomic_load(&connected_once) &&
        !strstr(PQerrorMessage(d->conn), "password") &&
        !strstr(PQerrorMessage(d->conn), "does not exist")) {
        /* the server answered this process before: a restart, a cut; the
         * first connection of a run fails at once (a wrong host) */
        struct tm__retry rt;
        struct tm__aerr e;
        memset(&e, 0, sizeof e);
        e.code = TM_ECONNRESET;
        e.cls = TM_ERR_RETRY;
        tm__retry_init(&rt, RECONNECT_TRIES, NULL);
        while (PQstatus(d->conn) != CONNECTION_OK && tm__retry_again(&rt, &e) == 1)
            PQreset(d->conn);
        retried = 1;
    }
    if (d->conn && PQstatus(d->conn) == CONNECTION_OK)
        atomic_store(&connected_once, 1);
    if (!d->conn || PQstatus(d->conn) != CONNECTION_OK) {
        const char *m = d->conn ? PQerrorMessage(d->conn) : "out of memory";
        int code = strstr(m, "password") ? SQLITE_AUTH : SQLITE_CANTOPEN;
        size_t n;
        if (retried) {
            struct tm__buf b = TM__BUF_INIT;
            tm__buf_addf(&b, "%s (the server answered before; %d tries)", m,
                         RECONNECT_TRIES);
            *err = b.buf ? tm__buf_detach(&b, NULL) : NULL;
        } else {
            *err = strdup(m);
        }
        if (*err) {
            n = strlen(*err);
            while (n && ((*err)[n - 1] == '\n' || (*err)[n - 1] == ' '))
                (*err)[--n] = '\0';
        }
        PQfinish(d->conn);
        free(d->base.name);
        free(d);
        return code;
    }
    PQsetNoticeProcessor(d->conn, quiet, NULL);
    r = PQexec(d->conn, SESSION_SETS);
    PQclear(r);
    *out = &d->base;
    return SQLITE_OK;
}
