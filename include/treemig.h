/*
 * treemig.h - the public API of the treemig engine.
 *
 * A migration is one state file (an SQLite database) that records both trees
 * and what must happen to each node. The command-line tool uses only this
 * header; everything under src/ is private.
 *
 * Errors are negative integers: an OS error is the negated errno, the
 * engine's own errors are listed in TM_ERRNO_MAP below. tm_strerror() gives
 * the generic text, tm_migration_errmsg() the detailed message of the last
 * failure on a handle.
 */
#ifndef TREEMIG_H
#define TREEMIG_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* TM_VERSION_MAJOR, _MINOR, _PATCH, _STRING and _NUM, generated from the
 * project version by CMake. */
#include "treemig_version.h"

/* Marks the functions of the public API. The shared library is compiled
 * with -fvisibility=hidden: these are the only symbols it exports
 * (docs/api.md). */
#if defined(__GNUC__) || defined(__clang__)
#define TM_EXTERN extern __attribute__((visibility("default")))
#else
#define TM_EXTERN extern
#endif

/* XX(name, value, message): one table generates the enum, tm_strerror()
 * and tm_err_name(). */
#define TM_ERRNO_MAP(XX)                                                      \
    XX(EPERM, -EPERM, "operation not permitted")                              \
    XX(ENOENT, -ENOENT, "no such file or directory")                          \
    XX(EINTR, -EINTR, "interrupted system call")                              \
    XX(EIO, -EIO, "i/o error")                                                \
    XX(EAGAIN, -EAGAIN, "resource temporarily unavailable")                   \
    XX(ENOMEM, -ENOMEM, "not enough memory")                                  \
    XX(EACCES, -EACCES, "permission denied")                                  \
    XX(EBUSY, -EBUSY, "resource busy or locked")                              \
    XX(EEXIST, -EEXIST, "file already exists")                                \
    XX(ENOTDIR, -ENOTDIR, "not a directory")                                  \
    XX(EISDIR, -EISDIR, "is a directory")                                     \
    XX(EINVAL, -EINVAL, "invalid argument")                                   \
    XX(ENOSPC, -ENOSPC, "no space left on device")                            \
    XX(EDQUOT, -EDQUOT, "disk quota exceeded")                                \
    XX(EROFS, -EROFS, "read-only file system")                                \
    XX(ENAMETOOLONG, -ENAMETOOLONG, "name too long")                          \
    XX(ELOOP, -ELOOP, "too many symbolic links encountered")                  \
    XX(ETIMEDOUT, -ETIMEDOUT, "operation timed out")                          \
    XX(EFBIG, -EFBIG, "file too large")                                       \
    XX(ENOTSUP, -ENOTSUP, "operation not supported")                          \
    XX(ECONNREFUSED, -ECONNREFUSED, "connection refused")                     \
    XX(ECONNRESET, -ECONNRESET, "connection lost")                            \
    XX(EHOSTUNREACH, -EHOSTUNREACH, "host unreachable")                       \
    XX(EDB, -4001, "state file error")                                        \
    XX(ECORRUPT, -4002, "state file is damaged or not a treemig state file")  \
    XX(ESCHEMA, -4003, "state file is from a newer treemig")                  \
    XX(ELOCKED, -4004, "state file is in use by another process")             \
    XX(EMISMATCH, -4005, "state file belongs to another migration")           \
    XX(EROOT, -4006, "bad root")                                              \
    XX(EOVERLAP, -4007, "source and destination overlap")                     \
    XX(EBADNAME, -4008, "invalid name from storage")                          \
    XX(ESTOPPED, -4009, "interrupted")                                        \
    XX(EPHASE, -4010, "not allowed in this phase")                            \
    XX(ENODB, -4011, "no state file")                                         \
    XX(EINTERNAL, -4012, "internal error")                                    \
    XX(ETHROTTLED, -4013, "throttled by the storage")                         \
    XX(EBADSPEC, -4014, "malformed storage spec")                             \
    XX(ECHANGED, -4015, "changed since discovery")                            \
    XX(EAUTH, -4016, "authentication failed")                                 \
    XX(EHOSTKEY, -4017, "host key changed")                                   \
    XX(EHOSTUNKNOWN, -4018, "host key not known")                             \
    XX(ETIMERANGE, -4019, "modification time out of the range kept")

typedef enum tm_errno {
    TM_OK = 0,
#define TM__ERR_ENUM(name, val, msg) TM_##name = (val),
    TM_ERRNO_MAP(TM__ERR_ENUM)
#undef TM__ERR_ENUM
} tm_errno;

/* Generic text of an error code; never NULL (unknown codes get a fixed
 * text). The returned string is static. */
TM_EXTERN const char *tm_strerror(int err);
/* Name of an error code ("EACCES", "ELOCKED", ...), or "UNKNOWN". Static. */
TM_EXTERN const char *tm_err_name(int err);

/* One migration: a handle on a state file. Not thread-safe except
 * tm_migration_interrupt(). */
typedef struct tm_migration tm_migration;

enum {
    TM_OPEN_READONLY = 0, /* read only (status); no lock taken */
    TM_OPEN_WRITE = 1,    /* read-write; takes the state file's lock */
    TM_OPEN_CREATE = 2,   /* with TM_OPEN_WRITE: create the file if missing */
    TM_OPEN_SHARED = 4,   /* with TM_OPEN_WRITE, a PostgreSQL database only:
                             no lock taken (tm_worker: several processes
                             write it, through leases); 2.1.0 */
};

/*
 * Opens the state file at db_path. *out is set whenever memory allows, even
 * on failure, so that tm_migration_errmsg() can say what went wrong; the
 * caller frees it with tm_migration_free() in every case.
 */
TM_EXTERN int tm_migration_open(tm_migration **out, const char *db_path,
                                unsigned flags);
/* Frees the handle and everything it owns; releases the lock. NULL is ok. */
TM_EXTERN void tm_migration_free(tm_migration *m);
/* The detailed message of the last failure, or "" when none. Owned by m. */
TM_EXTERN const char *tm_migration_errmsg(const tm_migration *m);
/* Asks a running operation on m to stop at the next safe point. Async-signal
 * safe: meant to be called from a SIGINT handler. */
TM_EXTERN void tm_migration_interrupt(tm_migration *m);

typedef void (*tm_progress_fn)(void *ctx, const char *line);

typedef struct tm_discover_options {
    int workers;                  /* listing threads per side; 0: default */
    int lead;                     /* rounds the source may run ahead; 0: default 3 */
    int retries;                  /* retries of a retryable failure; -1: default 3 */
    const char *const *excludes;  /* filter rules, first match wins: "- GLOB"
                                     or a bare GLOB excludes, "+ GLOB"
                                     includes (docs/filters.md); may be NULL */
    size_t n_excludes;            /* number of excludes */
    tm_progress_fn progress;      /* called with a progress line, may be NULL */
    void *progress_ctx;           /* passed to progress */
    const char *config;           /* the YAML file; NULL: as stored, or
                                     "<db>.yaml" for a new migration */
    const char *log_level;        /* records >= this go to the logs table
                                     ("trace".."critical", "off"); NULL: as
                                     stored, default "info" */
    const char *udp_level;        /* records >= this go out by UDP; NULL: as
                                     stored, default "warning" */
    const char *udp_addr;         /* listener "HOST:PORT"; NULL: as stored,
                                     default "127.0.0.1:8081" */
    int log_public;               /* allow a non-loopback udp_addr */
    int allow_pseudo_fs;          /* take roots on pseudo file systems
                                     (proc, sysfs, ...), refused otherwise;
                                     recorded for the later commands */
    int owner;                    /* compare owners (uid, gid) too: a node
                                     that differs only in its owner is a
                                     conflict 'attrs', the copy sets owners
                                     (as root) and verify compares them.
                                     Only for a new migration; recorded */
    int no_specials;              /* leave special files (FIFOs, devices,
                                     sockets) out of the copy, as 'other'
                                     nodes skipped; else the copy makes
                                     them again where the destination can.
                                     Only for a new migration; recorded */
    int one_file_system;          /* do not enter a source folder on another
                                     file system (or mount) than the
                                     source root's: it is skipped, with the
                                     reason. Only for a new migration;
                                     recorded */
    int no_xattrs;                /* the copy leaves out extended attributes
                                     and POSIX ACLs (else it keeps user.*,
                                     trusted.* as root, and the ACLs where
                                     both storages keep them). Only for a
                                     new migration; recorded */
    int compare;                  /* how a file found on both sides is
                                     compared: TM_COMPARE_DEFAULT (size and
                                     mtime), TM_COMPARE_SIZE_ONLY or
                                     TM_COMPARE_CHECKSUM. Only for a new
                                     migration; recorded */
    int modify_window;            /* mtimes that differ by at most this many
                                     seconds are equal (0..86400). Only for
                                     a new migration; recorded */
    int64_t min_size, max_size;   /* files smaller than min_size or larger
                                     than max_size (bytes) are excluded;
                                     0: no limit. New migration; recorded */
    int64_t min_age, max_age;     /* files modified less than min_age or
                                     more than max_age seconds before the
                                     migration started are excluded; 0: no
                                     limit. New migration; recorded */
    int shared;                   /* the discovery is shared: its folders
                                     are claimed under leases, and `treemig
                                     worker` processes may join it
                                     (PostgreSQL state only; the variable
                                     TREEMIG_SHARED_DISCOVERY=1 asks the
                                     same). New migration; recorded */
} tm_discover_options;

/* tm_discover_options.compare */
enum {
    TM_COMPARE_DEFAULT = 0,   /* equal size and mtime */
    TM_COMPARE_SIZE_ONLY = 1, /* equal size */
    TM_COMPARE_CHECKSUM = 2,  /* equal size and content */
};

/* Fills o with the defaults (all fields zero but retries = -1). */
TM_EXTERN void tm_discover_options_init(tm_discover_options *o);

/*
 * Discovers both trees into the state file. src and dst may be NULL when the
 * state file already names them (a resume); when given, they must match.
 * Options given on a resume replace the stored ones except the excludes,
 * which must match when given. Returns 0 when discovery is complete (some
 * items may have failed: see tm_status), TM_ESTOPPED when interrupted (the
 * phase is then "suspended"), or another error.
 */
TM_EXTERN int tm_discover(tm_migration *m, const char *src, const char *dst,
                          const tm_discover_options *opt);

/*
 * Makes the destination root dst of a new migration when it does not
 * exist and its parent folder does (a local root: the parent is resolved,
 * then walked from / through descriptors opened O_NOFOLLOW, and the root
 * made with mkdirat, so no symlink is followed); refused (TM_EOVERLAP)
 * when it would be inside the source root src. *created: 1 when it was
 * made, 0 when it existed. Another storage is left as it is (0, *created
 * 0). Returns 0, or an error with its message in err (errlen bytes): the
 * parent does not exist or is not a folder (TM_EROOT), or mkdir failed.
 */
TM_EXTERN int tm_dst_root_create(const char *src, const char *dst, int *created,
                                 char *err, size_t errlen);

/*
 * Checks a new migration before anything is created: the roots exist, are
 * folders, are on no pseudo file system (unless o->allow_pseudo_fs), do
 * not overlap by any route, and neither holds the state file at db_path
 * nor the YAML file (o->config, or db_path with .yaml). storage_opts (n of
 * them, "key=value") are the storages' options, as for
 * tm_migration_set_storage_options(). tm_discover() checks the same, but
 * only after the state file exists. Returns 0, or an error with its
 * message in err (errlen bytes).
 */
TM_EXTERN int tm_discover_check(const char *db_path, const char *src,
                                const char *dst, const tm_discover_options *o,
                                const char *const *storage_opts,
                                size_t n_storage_opts, char *err, size_t errlen);

/*
 * Sets the options of the storages for the next command on m: "key=value"
 * strings (a key alone is a flag), each a key of some storage kind
 * (docs/adapters.md: "s3-endpoint", "ssh-identity", ...). They replace
 * the ones the state file records, and are recorded for the later
 * commands (none of them is a secret: secrets come from the environment,
 * an agent or files named by an option). n = 0: the recorded ones apply.
 * Returns 0, or TM_EINVAL for an unknown key (with the message).
 */
TM_EXTERN int tm_migration_set_storage_options(tm_migration *m,
                                               const char *const *kv, size_t n);

typedef struct tm_tree_counts {
    int64_t folders, files, symlinks, other; /* rows by type, roots excluded */
    int64_t bytes;                           /* sum of file sizes */
    int64_t pending;                         /* folders not listed yet */
    int64_t failed;                          /* traversal failed (the root too) */
    int64_t excluded;                        /* excluded by a filter */
    int64_t not_on_src;                      /* destination only */
} tm_tree_counts;

typedef struct tm_copy_counts {
    int64_t pending, in_progress, successful, already_existed, failed,
        skipped, excluded, conflicts, bytes_pending;
} tm_copy_counts;

typedef struct tm_queue_snapshot {
    char queue[8];             /* "src", "dst", "copy", "verify" */
    int64_t time;              /* when, ns since the epoch */
    int64_t round;             /* round (discovery) or depth (copy) */
    int64_t pending, in_flight, done, failed; /* tasks */
    int64_t bytes_done, bytes_pending;        /* copy */
    double items_per_s, bytes_per_s;          /* rates since the start */
} tm_queue_snapshot;

typedef struct tm_status {
    char phase[32];          /* "discovering", "discovered", ... */
    char src[4096];          /* source root as stored */
    char dst[4096];          /* destination root as stored */
    int src_round, dst_round; /* last round started on each side */
    tm_tree_counts src_counts;
    tm_tree_counts dst_counts;
    tm_copy_counts copy;
    tm_queue_snapshot queues[4]; /* the observer's last snapshot per queue */
    int n_queues;             /* entries used */
    int64_t eta_seconds;      /* copy: time left at the last rate, or -1 */
} tm_status;

/*
 * Opens the migration that a YAML file describes: reads the file, opens its
 * state file for writing and checks that both belong to the same migration.
 * As tm_migration_open(), *out is set even on failure and must be freed.
 */
TM_EXTERN int tm_migration_open_config(tm_migration **out, const char *config_path);

/*
 * Continues the migration on m from where it stopped, whatever its phase
 * (today: discovery). Returns as tm_discover(); 0 also when there is
 * nothing left to do.
 */
TM_EXTERN int tm_resume(tm_migration *m, const tm_discover_options *opt);

typedef struct tm_exec_options {
    int workers;             /* threads; 0: twice discovery's per side (8) */
    int retries;             /* retries of a retryable failure; -1: stored */
    int no_overwrite;        /* copy: keep every existing destination file */
    int force;               /* copy: run although discovery items failed */
    int checksum;            /* verify: compare contents (xxHash) */
    tm_progress_fn progress; /* progress lines, may be NULL */
    void *progress_ctx;      /* passed to progress */
    const char *log_level;   /* as in tm_discover_options */
    const char *udp_level;   /* as in tm_discover_options */
    const char *udp_addr;    /* as in tm_discover_options */
    int log_public;          /* as in tm_discover_options */
    int owner;               /* copy: give each node its source's owner (root);
                                implied when discovered with owner */
    int update;              /* copy: keep a file or symlink whose
                                destination mtime is later than the
                                source's, whatever its size */
} tm_exec_options;

/* Fills o with the defaults. */
TM_EXTERN void tm_exec_options_init(tm_exec_options *o);

/*
 * The itemized log of the copies run on m from now on (path NULL: none):
 * tm_copy() appends to the file at path (made 0600 if need be, never
 * through a symlink) one line per node it handled, as docs/logging.md
 * says (created, replaced, attrs, linked, skipped, failed with the
 * reason). 0, or TM_ENOMEM.
 */
TM_EXTERN int tm_migration_set_item_log(tm_migration *m, const char *path);

/*
 * Limits the copies and verifies run on m from now on, on each side
 * separately: bytes_per_s bytes read or written per second, ops_per_s
 * requests per second (a stat, a listing's page, an open, a commit, a
 * mkdir, ...); 0: no limit. The workers wait for their turn; an interrupt
 * ends the waits. 0, or TM_EINVAL for a negative rate.
 */
TM_EXTERN int tm_migration_set_limits(tm_migration *m, double bytes_per_s,
                                      double ops_per_s);

/*
 * Copies what discovery found missing or different, depth by depth, folders
 * before files; each file is written under a temporary name and renamed
 * when complete; mtimes and modes are kept; destination-only nodes are never
 * touched. Refused (TM_EPHASE) before discovery is complete, or while
 * discovery items failed unless o->force. Returns 0 when every node was
 * handled (see tm_status: copy.failed), TM_ESTOPPED when interrupted, or an
 * error (TM_ENOSPC: the destination is full; TM_EROFS: it is read-only;
 * TM_ENOENT: a root was removed, moved away or replaced during the copy;
 * the phase is then suspended).
 */
TM_EXTERN int tm_copy(tm_migration *m, const tm_exec_options *o);

/*
 * Lists the destination again and checks every copied or already-existing
 * node: type, size, mtime, and with o->checksum the contents. Mismatches
 * go to task_errors (phase "verify"); *mismatches gets their count. The
 * phase becomes "verified" only when there is none.
 */
TM_EXTERN int tm_verify(tm_migration *m, const tm_exec_options *o,
                        int64_t *mismatches);

/*
 * The retry sweep: folders whose listing failed (on either side) become
 * pending again and are listed anew, with their destination twins, and
 * failed copies become pending again; then discovery and, if the copy had
 * started, the copy run again. *retried gets the number of nodes reset.
 */
TM_EXTERN int tm_retry(tm_migration *m, const tm_discover_options *dopt,
                       const tm_exec_options *eopt, int64_t *retried);

/* treemig worker (2.1.0): one of several processes, on any machines, that
 * run a migration's copy together through a PostgreSQL state database. */
typedef struct tm_worker_options {
    int workers;             /* operations in flight; 0: as the copy */
    int lease_s;             /* seconds a claimed batch stays ours without
                                renewal (renewed every third of it); 0: 30 */
    int follow;              /* after a phase, wait for the next one */
    tm_progress_fn progress; /* progress lines, may be NULL */
    void *progress_ctx;      /* passed to progress */
    int64_t lease_lost;      /* out: outcomes dropped because another
                                worker's lease held the node by then */
    int64_t failed;          /* out: nodes whose copy failed here */
    int joined;              /* out: phases joined */
} tm_worker_options;

/* Fills o with the defaults. */
TM_EXTERN void tm_worker_options_init(tm_worker_options *o);

/*
 * Joins the discovery, copy or verify in progress (started by
 * tm_discover, tm_copy, tm_retry or tm_verify on another process, which
 * works too) on m, opened with TM_OPEN_WRITE | TM_OPEN_SHARED on a
 * PostgreSQL database: claims batches of tasks under leases
 * (docs/scale-out.md) until no task of the run is left with anyone, then
 * returns 0 (with o->follow: waits for the next run, until interrupted:
 * TM_ESTOPPED). TM_EPHASE when nothing is in progress (and not
 * o->follow); TM_EINVAL on an SQLite state file. A discovery's dropped
 * pages count in o->lease_lost (since 2.2.0).
 */
TM_EXTERN int tm_worker(tm_migration *m, tm_worker_options *o);

/* Prints the task errors of a phase ("discover", "copy", "verify"), one
 * "path: message" a line (bytes that are not printable escaped as \xHH). */
TM_EXTERN int tm_problems_print(tm_migration *m, const char *phase, FILE *out);

/* What the mirror (tm_delete_plan, tm_delete) has to do and has done. */
typedef struct tm_delete_counts {
    int64_t files;    /* destination-only files, symlinks and special files
                         still to remove */
    int64_t folders;  /* destination-only folders still to remove */
    int64_t bytes;    /* the bytes of those files */
    int64_t removed;  /* nodes removed so far */
    int64_t kept;     /* nodes kept: changed since discovery, excluded,
                         a folder not empty (tm_delete_print_kept says
                         why) */
} tm_delete_counts;

/*
 * The plan of the mirror: lists every destination-only folder that
 * discovery recorded (discovery does not enter them) and records what it
 * holds as destination-only nodes, so that `review --list extra` shows
 * everything tm_delete() would remove; a folder matching an exclusion is
 * not entered and is kept. Resumable; removes nothing. Needs discovery
 * complete (phase discovered, copied or verified). *out (may be NULL)
 * gets the counts.
 */
TM_EXTERN int tm_delete_plan(tm_migration *m, tm_delete_counts *out);

/*
 * The mirror: finishes the plan, then removes the destination-only nodes
 * it holds, deepest first, files before their folders. Each node is
 * checked just before its removal against what was recorded (type; a
 * file's or symlink's size and mtime); one that changed, a folder that is
 * not empty, or one matching an exclusion is kept. Nothing else is ever
 * removed. Resumable after a crash; TM_ESTOPPED when interrupted.
 */
TM_EXTERN int tm_delete(tm_migration *m, tm_delete_counts *out);

/*
 * The backup folder of the next tm_copy() and tm_delete() runs on m: each
 * file or symlink the copy would replace, and each one the mirror would
 * remove, is moved into it with its path kept (DIR/a/b for /a/b). dir is
 * a folder inside the destination: a path relative to its root, or (a
 * local destination) an absolute path below it; a dir outside the
 * destination, the root itself, or one inside the tree the copy makes (its
 * first component a source node's name) is refused (TM_EINVAL, with the
 * message). NULL: no backup. The mirror never removes a backup folder
 * given once. Recorded in the state file (backup_dir).
 */
TM_EXTERN int tm_set_backup_dir(tm_migration *m, const char *dir);

/* What changed since the previous pass (tm_rescan). */
typedef struct tm_pass_changes {
    int pass;            /* the current pass, from 1 */
    char started[32];    /* when it started, ISO 8601 UTC ("" unknown) */
    char ended[32];      /* when its discovery ended ("" not yet) */
    int64_t src_new;     /* source nodes that the previous pass did not have */
    int64_t src_changed; /* source files or symlinks of another size or
                            mtime, or nodes of another type */
    int64_t src_deleted; /* source nodes of the previous pass that are gone */
    int64_t dst_changed; /* destination files or symlinks the previous pass
                            copied or found equal, changed since */
} tm_pass_changes;

/*
 * A new pass on a finished migration (phase discovered, copied or
 * verified): the previous pass's source nodes are kept for the comparison
 * (prev_src_nodes), both trees are discovered again into the same state
 * file with the same roots and options (discover's excludes, workers,
 * owner, ...; o may only set workers, progress and logging), and the
 * exclusions made by tm_exclude() are made again. Then review shows the
 * differences as for the first pass, and tm_copy() copies what differs.
 * An interrupted pass (kill -9, Ctrl-C) resumes with tm_rescan() or
 * tm_discover(). Returns as tm_discover().
 */
TM_EXTERN int tm_rescan(tm_migration *m, const tm_discover_options *o);

/* The current pass and what changed since the previous one. */
TM_EXTERN int tm_pass_changes_get(tm_migration *m, tm_pass_changes *out);

/* Prints the nodes the mirror kept, one "path<TAB>why" a line. */
TM_EXTERN int tm_delete_print_kept(tm_migration *m, FILE *out);

/*
 * Review (src/migration/review.c). A summary a person reads in ten seconds
 * (to copy, already there, conflicts by kind, destination-only, failed,
 * excluded), then the `top` folders with the most to copy. Printed to out.
 */
TM_EXTERN int tm_review_print(tm_migration *m, FILE *out, int top);
/*
 * One item per line of a kind: "missing", "conflict", "extra", "failed",
 * "excluded" or "all", restricted to paths under prefix (NULL: all).
 * json: JSON Lines (path, type, size, mtime, state, reason).
 */
TM_EXTERN int tm_review_list(tm_migration *m, const char *kind, const char *prefix,
                             int json, FILE *out);
/*
 * As tm_review_list, with reason (NULL: all) keeping only the conflicts of
 * that reason ("size", "mtime", "dst_newer", "type", "content", "attrs";
 * kind "conflict" or "attrs"). A conflict's line also gives the source's
 * mtime and the destination's type, size and mtime (docs/review.md).
 */
TM_EXTERN int tm_review_list_reason(tm_migration *m, const char *kind,
                                    const char *reason, const char *prefix,
                                    int json, FILE *out);
/*
 * What tm_copy() would do, without doing anything: one line per node in
 * the format of tm_review_list (kind create, replace or set-attrs; the
 * reason of a replace is its conflict), kind after kind, each in
 * discovery order (a folder before its contents).
 * With no_overwrite only what is missing is made. counts[0..2] get the
 * lines of each kind, *bytes the sizes of the files to write.
 */
TM_EXTERN int tm_copy_plan(tm_migration *m, int no_overwrite, int json, FILE *out,
                           int64_t counts[3], int64_t *bytes);
/*
 * Excludes (or with unexclude, includes again) the source nodes matching
 * each pattern (a root-relative path "/a/b" or a glob as for --exclude) and
 * their whole subtrees, keeping every count exact. Refused (TM_EPHASE) for
 * a subtree where the copy has started. *changed gets the rows changed.
 */
TM_EXTERN int tm_exclude(tm_migration *m, const char *const *patterns, size_t n,
                         int unexclude, int64_t *changed);
/*
 * Prints the exclusions in force (made by tm_exclude) to out, one pattern
 * a line that `treemig exclude --from` reads back (a pattern that would
 * read as a comment or a rule is escaped), after '#' comments that say
 * where they come from and give discovery's filter rules. Works on a
 * read-only handle.
 */
TM_EXTERN int tm_exclude_list(tm_migration *m, FILE *out);

/*
 * Copies the whole state of m (opened with TM_OPEN_WRITE, at the current
 * schema) into to, a state file that does not exist yet or a PostgreSQL
 * database without tables (postgresql://...), in one transaction: SQLite
 * to PostgreSQL or back. The YAML file of the copy is written at config,
 * or with config NULL beside a state file to (to.yaml), none for a
 * database; an existing one is never overwritten. *rows: the rows copied.
 * Returns 0, or an error with its message in tm_migration_errmsg(m): a
 * target that holds a migration is TM_EEXIST, and left untouched. (2.1.0)
 */
TM_EXTERN int tm_state_copy(tm_migration *m, const char *to, const char *config,
                            int64_t *rows);

/* Fills *st from the state file's exact counters (no scan). */
TM_EXTERN int tm_status_get(tm_migration *m, tm_status *st);

/*
 * *active: the processes at work on m's PostgreSQL state database (live
 * leases, and processes whose queues reported in the last 10 s); -1 on
 * SQLite. A phase left in progress with 0 was abandoned (every process
 * killed): resume or a worker continues it. (2.2.0)
 */
TM_EXTERN int tm_status_active(tm_migration *m, int *active);

/*
 * The web page over a state file (`treemig ui`, docs/ui.md): a server on
 * its own threads that reads the state file read-only (also while another
 * process runs the migration) and excludes or includes again through
 * tm_exclude()'s code.
 */
typedef struct tm_ui tm_ui;

typedef struct tm_ui_options {
    const char *listen;  /* "ADDR:PORT"; NULL: 127.0.0.1 on port 8080 or the
                            next free one */
    int read_only;       /* refuse every change (exclude, unexclude) */
    tm_progress_fn warn; /* called with a warning before listening (an
                            address that is not loopback), may be NULL */
    void *warn_ctx;      /* passed to warn */
} tm_ui_options;

/* Fills o with the defaults (all zero). */
TM_EXTERN void tm_ui_options_init(tm_ui_options *o);
/*
 * Opens the state file at db_path read-only and starts serving it. *out is
 * set whenever memory allows, even on failure (tm_ui_errmsg() says why);
 * free it with tm_ui_free() in every case.
 */
TM_EXTERN int tm_ui_start(tm_ui **out, const char *db_path, const tm_ui_options *o);
/* The URL to open, with the access token. Owned by ui. */
TM_EXTERN const char *tm_ui_url(const tm_ui *ui);
/* The message of a failed tm_ui_start(), or "". Owned by ui. */
TM_EXTERN const char *tm_ui_errmsg(const tm_ui *ui);
/* Stops the server (waits for the requests under way) and frees ui. */
TM_EXTERN void tm_ui_free(tm_ui *ui);

/*
 * The ground truth of a simulated storage pair (docs/sim.md): spec is a
 * "sim:..." destination spec (it names its source world too). On success
 * *json is a malloc'd JSON object the caller frees with free(). On failure
 * err (errlen bytes) says why.
 */
TM_EXTERN int tm_sim_stats(const char *spec, char **json, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif /* TREEMIG_H */
