/*
 * migration_int.h - the migration handle (struct tm_migration) and the
 * functions the files of src/migration/ share: migration.c (the handle,
 * its errors and phases), settings.c, roots.c, yaml.c, plan.c (discover,
 * resume), run.c (copy, verify), retry.c, status.c; review.c and
 * exclude.c use the accessors. Private: the CLI never sees it. Same thread
 * rules as the handle: the caller's thread.
 */
#ifndef TM_MIGRATION_INT_H
#define TM_MIGRATION_INT_H

#include "store/db.h"
#include <stdatomic.h>
#include <stddef.h>

#include "adapter/adapter.h"
#include "log/log.h"
#include "migration/config.h"
#include "store/store.h"
#include "treemig.h"
#include "util/buf.h"

/* The handle of treemig.h (tm_migration_open() .. tm_migration_free()). */
struct tm_migration {
    struct tm__store store; /* the state file */
    int open;               /* store is open */
    int discard;            /* remove the state file on free: it was created
                               by this open and holds no migration */
    struct tm__buf err;     /* message of the last failure */
    atomic_int stop;        /* set by tm_migration_interrupt() */
    struct tm__config cfg;  /* the YAML file's content, kept current */
    char *config_path;      /* the YAML file; NULL until known */
    int cfg_ready;          /* cfg mirrors the state file: save it at
                               every milestone */
    char *log_addr;         /* the UDP listener of the running phase */
    int plain;              /* open storages without fault layers (the
                               checks of tm_discover_check) */
    char **sopt;            /* storage options of this run, "key=value" */
    size_t n_sopt;          /* their count */
    int sopt_given;         /* given by the caller (they replace the stored
                               ones, and are recorded), else read from the
                               state file */
    struct tm__sopts sopts; /* the view adapters read (sopt, n_sopt) */
    char *item_log;         /* the copy's itemized log (copy --log-file),
                               or NULL */
    double bwlimit;         /* copy/verify: bytes per second per side */
    double tpslimit;        /* copy/verify: operations per second per side */
    const struct tm__exec_claim *claim; /* copy: tasks come from leases
                               (PostgreSQL, worker.c), or NULL */
    int64_t lease_lost;     /* the last copy's outcomes dropped because
                               another worker's lease held the node */
    int joining;            /* tm_discover runs for a worker joining a
                               discovery: no settings, YAML or phase of its
                               own; the phase ends only when done */
    int join_lease_s;       /* its --lease (0: the default) */
};

/* ---- migration.c: the handle ---- */

/* Writes m's error message (printf-style) and returns rc. */
int tm__mig_fail(tm_migration *m, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A setting of the state file could not be read (not: is missing): the
 * message, and rc. */
int tm__mig_setting_fail(tm_migration *m, int rc);
/* Records a phase in the state file and the YAML file, by its name
 * (tm__phase_names). from is the running phase a suspension interrupted,
 * or PH_NONE. */
int tm__mig_set_phase_from(tm_migration *m, enum tm__phase phase, enum tm__phase from);
int tm__mig_set_phase(tm_migration *m, enum tm__phase phase);

/* The handle's connection to the state file, or NULL when m is not open.
 * Owned by m. */
struct tm__db *tm__migration_db(tm_migration *m);
/* The buffer of the handle's last error message (tm_migration_errmsg()).
 * Owned by m; callers reset it and write their message. */
struct tm__buf *tm__migration_err(tm_migration *m);
/* 1 when m was opened without TM_OPEN_WRITE (no lock held). */
int tm__migration_readonly(tm_migration *m);
/* The state file's path as given to tm_migration_open(). Owned by m. */
const char *tm__migration_path(tm_migration *m);
/* An absolute form of a local file's path: its folder resolved by
 * realpath(), its name kept; a path with a single '/' at its start, or
 * whose folder does not resolve, is returned as given. Returns a malloc'd
 * string (free() it), or NULL when out of memory. */
char *tm__path_absolute(const char *path);

/* ---- settings.c: the state file's settings ---- */

/* Forgets the storage options of m. */
void tm__mig_sopts_clear(tm_migration *m);
/* The storage options of this run: the caller's, or else the ones the
 * state file records. */
int tm__mig_sopts_load(tm_migration *m);
/* Inserts the two roots as pending folders, with their stats: where the
 * first discovery and each new pass (rescan) start (plan.c). */
int tm__mig_seed_roots(struct tm__db *db, const struct tm__entry root[2]);
/* Records the caller's storage options for the later commands. */
int tm__mig_sopts_store(tm_migration *m);
/* Stores the number v under key. */
int tm__mig_set_int(struct tm__db *db, const char *key, int v);
/* Records in the setting rows_written the rows this process wrote to the
 * state file so far (SQLite's total_changes(), this write included): the
 * cost of a discover or a rescan, for bench/rescan.sh. Nothing on
 * PostgreSQL. */
int tm__mig_note_rows(struct tm__db *db);
/* The number stored under key, or dflt when it is missing or unreadable. */
int tm__mig_get_int(struct tm__db *db, const char *key, int dflt);
/* An int64 setting, 0 when missing (settings.c). */
int64_t tm__mig_get_i64(struct tm__db *db, const char *key);
/* As tm__mig_get_int, but a read that fails (not: a missing key) is an
 * error. */
int tm__mig_get_int_checked(tm_migration *m, const char *key, int dflt, int *out);
/* Splits s into a NULL-terminated array of its lines (*n of them); one
 * malloc: free() it. NULL when out of memory. */
char **tm__mig_split_lines(const char *s, size_t *n);
/* The setting key as a malloc'd string (free() it), or NULL when it is
 * missing or cannot be read. */
char *tm__mig_setting_dup(struct tm__db *db, const char *key);
/* Copies a setting into out ("" when it is not set): 0, or the error of a
 * read that failed. */
int tm__mig_copy_setting(struct tm__db *db, const char *key, char *out, size_t len);
/* Merges the logging settings given (NULL: keep) with the stored ones,
 * checks and stores them, and fills *out for the engine; the listener's
 * address is kept on m until tm__mig_log_release(). */
int tm__mig_log_settings(tm_migration *m, const char *level, const char *udp_level,
                         const char *addr, int allow_public, struct tm__log_cfg *out);
/* Checks the logging options given, before anything is created. */
int tm__mig_check_log_options(tm_migration *m, const tm_discover_options *o);
void tm__mig_log_release(tm_migration *m);

/* ---- run.c, worker.c: the copy, alone or with workers ---- */

struct tm__adapter;
/* Runs the engine's copy or verify (mode) on m with the options o, the
 * storages ad and the status st; *problems gets what went wrong. */
int tm__mig_run_exec(tm_migration *m, int mode, const tm_exec_options *o,
                     struct tm__adapter *ad[2], const tm_status *st,
                     int64_t *problems);
struct tm__lease_hook;
struct tm__disc_claim;
/* Starts the leases of the copy run run (hex key) for this process, its
 * temporary names from tmp_key (hex), lease_s seconds (0: 30), batches
 * sized for workers operations in flight; connects to m's database. */
int tm__lease_hook_start(struct tm__lease_hook **out, tm_migration *m,
                         const char *run, const char *tmp_key, int lease_s,
                         int workers);
/* Starts the leases of a discovery (folders to list) for this process;
 * lease_s and workers as above. */
int tm__lease_hook_start_disc(struct tm__lease_hook **out, tm_migration *m,
                              int lease_s, int workers);
/* What discovery calls (cfg->claim). */
const struct tm__disc_claim *tm__lease_hook_disc(struct tm__lease_hook *h);
/* What the engine calls (cfg->claim). */
const struct tm__exec_claim *tm__lease_hook_claim(struct tm__lease_hook *h);
/* Marks what is done, stops the renewal, frees h (NULL is fine). */
void tm__lease_hook_stop(struct tm__lease_hook *h);

/* ---- yaml.c: the YAML file of the migration ---- */

/* Writes the YAML file from m->cfg (a milestone), when it is ready. */
int tm__mig_save_config(tm_migration *m);
/* The YAML file a run will write: the one given, else the one the state
 * file names, else the state file's name with .yaml. malloc'd or NULL. */
char *tm__mig_yaml_path_for(tm_migration *m, const char *given);
/* Finds the YAML file of the migration, checks an existing one, and fills
 * m->cfg from the state file so that milestones can be saved. */
int tm__mig_config_prepare(tm_migration *m, const char *config_opt,
                           const tm_discover_options *o, char **globs, size_t n_globs);
/* The engine started a round (ctx is m): a milestone of the YAML file. */
void tm__mig_on_round(void *ctx, int side, int round);

/* ---- roots.c: the two storages ---- */

/* Resolves a storage spec to the one recorded (a local path made absolute,
 * without symlinks; a remote one without any secret): *out is malloc'd. */
int tm__mig_resolve_spec(tm_migration *m, const char *what, const char *spec,
                         char **out);
/* The length of the fault prefixes ("fault:RULES:", maybe more) of spec. */
size_t tm__mig_fault_prefix_len(const char *spec);
/* Checks the rules of the fault prefixes of spec (plen bytes). */
int tm__mig_check_fault_prefix(tm_migration *m, const char *spec, size_t plen);
/* Opens the storage of one side at spec, behind the plen bytes of fault
 * prefix and the fault rules of the environment. */
int tm__mig_open_side(tm_migration *m, int side, const char *prefix, size_t plen,
                      const char *spec, struct tm__adapter **out);
/* Refuses roots that are the same or one inside the other, by their specs. */
int tm__mig_check_roots(tm_migration *m, const char *src, const char *dst);
/* What must hold for the two storages opened in ad, every time they are
 * opened (roots.c says what). */
int tm__mig_check_sides(tm_migration *m, struct tm__adapter *ad[2],
                        const char *const root[2], const char *yaml, int record,
                        int allow_pseudo);
/* Opens both adapters from the stored specs, checked. */
int tm__mig_open_roots(tm_migration *m, struct tm__adapter *ad[2]);
/* Opens both adapters (tm__mig_open_roots) and readies the YAML file with
 * the stored options. */
int tm__mig_open_stored(tm_migration *m, struct tm__adapter *ad[2]);
/* --owner (given to the copy, or stored by discovery): needs root and
 * storages that know owners. */
int tm__mig_check_owner(tm_migration *m, struct tm__adapter *ad[2], int stored);
/* --owner, at discovery too: both storages must know owners. */
int tm__mig_check_owner_caps(tm_migration *m, struct tm__adapter *ad[2]);

#endif
