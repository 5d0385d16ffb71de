/*
 * store.h - the SQLite state file: schema, lock, key/value settings, phases,
 * statuses, and the writer thread (writer.c) that owns all writes while a
 * phase runs.
 *
 * Threads: struct tm__store and its db connection belong to the thread that
 * opened it, except while a writer runs: then only the writer thread writes
 * through it, and every other thread reads through its own connection
 * opened with tm__store_open_reader().
 */
#ifndef TM_STORE_H
#define TM_STORE_H

#include "store/db.h"
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define TM_SCHEMA_VERSION 14
#define TM_APPLICATION_ID 1953327463 /* 'tmig' */

enum tm__side { TM_SRC = 0, TM_DST = 1 };

enum tm__ts { TS_PENDING = 0, TS_SUCCESSFUL, TS_FAILED, TS_NOT_ON_SRC,
              TS_EXCLUDED, TS_COUNT };
enum tm__cs { CS_PENDING = 0, CS_IN_PROGRESS, CS_SUCCESSFUL, CS_ALREADY,
              CS_FAILED, CS_SKIPPED, CS_EXCLUDED, CS_COUNT };
/* Conflict reasons. CF_ATTRS: same type and content (size, mtime) but
 * another mode (or owner, with --owner): the copy sets them in place. */
enum tm__cf { CF_NONE = 0, CF_SIZE, CF_MTIME, CF_DST_NEWER, CF_TYPE,
              CF_CONTENT, CF_ATTRS, CF_COUNT };

extern const char *const tm__ts_names[TS_COUNT];
extern const char *const tm__cs_names[CS_COUNT];
extern const char *const tm__cf_names[CF_COUNT]; /* [CF_NONE] is NULL */
/* Index of s in names[0..n), or -1. */
int tm__name_index(const char *const *names, int n, const char *s);

/* The phases of a migration, as the setting phase (and suspended_from) of
 * the state file and the YAML file spell them: tm__phase_names. PH_NONE is
 * "": no phase recorded (or, for suspended_from, none interrupted). */
enum tm__phase { PH_UNKNOWN = -1, /* a string that names no phase */
                 PH_NONE = 0, PH_ROOTS_SET, PH_DISCOVERING, PH_DISCOVERED,
                 PH_COPYING, PH_COPIED, PH_VERIFIED, PH_SUSPENDED, PH_COUNT };
extern const char *const tm__phase_names[PH_COUNT];
/* The phase that s names: PH_NONE for NULL or "", PH_UNKNOWN when s names
 * none. */
enum tm__phase tm__phase_parse(const char *s);
/* The name of phase p (static storage); "" for PH_NONE and for a value
 * out of range. */
const char *tm__phase_name(enum tm__phase p);

struct tm__store {
    struct tm__db *db;    /* read-write (or read-only) connection */
    char *path;     /* the database file, symlinks resolved (real_path) */
    int lock_fd;    /* descriptor holding the lock file's lock, or -1 */
    int readonly;   /* opened without TM_OPEN_WRITE */
    int fresh;      /* the file was created by this open */
    char *conninfo; /* PostgreSQL: the URI as given, password included, for
                       the store's other connections only; never printed
                       (NULL for a state file) */
};

/* Opens (and with create, creates with mode 0600) the state file. flags are
 * TM_OPEN_*. On error, err says why and the store is closed. */
int tm__store_open(struct tm__store *s, const char *path, unsigned flags,
                   struct tm__buf *err);
void tm__store_close(struct tm__store *s);
/* tm__store_open for a postgresql:// or postgres:// URI (store_pg.c). */
int tm__store_open_pg(struct tm__store *s, const char *uri, unsigned flags,
                      struct tm__buf *err);
/* What tm__store_open_reader() takes to reach this store again: the file,
 * or the full connection URI (never to be printed: s->path is). */
const char *tm__store_conn(const struct tm__store *s);
/* The YAML file's default name for a store (malloc'd, or NULL): the state
 * file's name with .yaml, or for a database DBNAME.yaml in the current
 * folder (a URI is no file name). */
char *tm__store_yaml_default(const char *path);
/* The SQLite DDL of a new state file, and the one that brings version v
 * to v + 1 (1 <= v < TM_SCHEMA_VERSION); store_pg.c translates both. */
const char *tm__store_schema_sql(void);
const char *tm__store_upgrade_sql(int v);
/* Makes the indexes of the pending folders that a discovery shared by
 * workers claims by (a first discovery of one process reads without
 * them: store.c, HOT_STATUS_SQL), and the mirror's index of the
 * destination-only rows; both IF NOT EXISTS. 0 or an error (err). */
int tm__store_claim_indexes(struct tm__db *db, struct tm__buf *err);
int tm__store_extra_index(struct tm__db *db, struct tm__buf *err);
/* The review tables and views (store.c), also run on older state files. */
extern const char tm__review_schema_sql[];

/* Opens another read-only connection for a reader thread. */
int tm__store_open_reader(const char *path, struct tm__db **out, struct tm__buf *err);

/* Runs sql (no results); err gets SQLite's message on failure. */
int tm__store_exec(struct tm__db *db, const char *sql, struct tm__buf *err);
/* Transactions: BEGIN IMMEDIATE (the write lock now), COMMIT, and a
 * ROLLBACK that cannot report anything (it undoes a failure already
 * reported). The first two write SQLite's message to err on failure. */
int tm__store_begin(struct tm__db *db, struct tm__buf *err);
int tm__store_commit(struct tm__db *db, struct tm__buf *err);
void tm__store_rollback(struct tm__db *db);
/* SQLite's message about the last failure on db. */
const char *tm__store_errmsg(struct tm__db *db);
/* Reads a setting into out; TM_ENOENT when absent. */
int tm__store_get(struct tm__db *db, const char *key, struct tm__buf *out);
int tm__store_set(struct tm__db *db, const char *key, const char *value);
/* Maps an SQLite result code to a treemig error and writes its message. */
int tm__store_error(struct tm__db *db, int rc, struct tm__buf *err, const char *what);

/* Adds (count, bytes) to the row of a stats table. table is "src_stats",
 * "dst_stats" (key: depth, type, traversal_status) or "copy_stats" (key:
 * depth, type, copy_status, conflict). */
struct tm__stat_key {
    int table;    /* 0 src_stats, 1 dst_stats, 2 copy_stats */
    int depth;    /* node depth */
    int type;     /* enum tm__type */
    int status;   /* enum tm__ts, or enum tm__cs for copy_stats */
    int conflict; /* 0 or 1, copy_stats only */
};

/* A small table of stats deltas, applied in one go inside a transaction. */
struct tm__stats_delta {
    struct tm__stat_delta_row {
        struct tm__stat_key key; /* what is counted */
        int64_t count, bytes;    /* deltas */
    } *rows;                     /* the deltas */
    size_t n, alloc;             /* used, allocated */
    int keep;                    /* set by the owner: apply keeps its
                                    statements prepared until release */
    struct tm__db *db;           /* kept: the connection of st */
    struct tm__stmt *st[3];      /* kept: the upserts, or NULL */
};
#define TM__STATS_DELTA_INIT { NULL, 0, 0, 0, NULL, { NULL, NULL, NULL } }
int tm__stats_add(struct tm__stats_delta *d, const struct tm__stat_key *k,
                  int64_t count, int64_t bytes);
int tm__stats_apply(struct tm__db *db, struct tm__stats_delta *d);
void tm__stats_release(struct tm__stats_delta *d);

#endif
