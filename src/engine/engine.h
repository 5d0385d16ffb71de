/*
 * engine.h - discovery: two queues (source, destination) walked in rounds
 * by worker pools, kept in step by a coordinator (discover.c), plus the
 * pure pieces it is built from (filters and the comparison of two nodes).
 */
#ifndef TM_ENGINE_H
#define TM_ENGINE_H

#include "store/db.h"
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter/adapter.h"
#include "log/log.h"
#include "util/buf.h"
#include "treemig.h"

struct tm__frow;

/* Where discovery takes its folders when the state database is shared by
 * several processes (treemig worker, PostgreSQL): leased claims instead
 * of the frontier's pages (src/migration/worker.c over
 * src/store/lease_q.c). The methods run on the coordinator's thread
 * (claim), the writer's (ended, ids). */
struct tm__disc_claim {
    /* Claims at most limit pending folders of side that no live lease
     * holds: source ones within lead depths of the destination's lowest
     * pending folder, destination ones whose twin's listing is durable;
     * row(rctx, r) for each. *lease: their lease. Returns the count or an
     * error (message in *err). */
    int (*claim)(void *ctx, int side, int lead, int limit, int64_t *lease,
                 int (*row)(void *rctx, const struct tm__frow *r), void *rctx);
    /* A folder of lease is over (its last page committed, or dropped
     * because another process holds it now). */
    void (*ended)(void *ctx, int64_t lease);
    /* n node ids of side no other process uses: *first .. + n - 1; the
     * message of a failure in err. */
    int (*ids)(void *ctx, int side, int64_t n, int64_t *first, struct tm__buf *err);
    void *ctx;                   /* their context */
    struct tm__buf *err;         /* the message of a failed claim */
};

struct tm__discover_cfg {
    struct tm__adapter *ad[2];   /* source and destination adapters */
    const char *db_path;         /* state file, for the readers */
    struct tm__db *db;                 /* write connection, lent to the writer */
    int workers;                 /* threads per side */
    int lead;                    /* rounds the source may run ahead */
    int retries;                 /* retries of a retryable failure */
    const char *const *excludes; /* filter rules, first match wins */
    size_t n_excludes;           /* their count */
    atomic_int *stop;            /* set to ask for a clean stop */
    tm_progress_fn progress;     /* progress lines, may be NULL */
    void *progress_ctx;          /* its context */
    struct tm__buf *err;         /* message of a fatal error */
    /* Called on the coordinator's thread when a side starts a round (a
     * milestone of the YAML file); may be NULL. */
    void (*on_round)(void *ctx, int side, int round);
    void *round_ctx;             /* its context */
    const struct tm__log_cfg *log; /* log service settings; NULL: none */
    const char *root[2];         /* the roots' specs, for messages */
    int owner;                   /* compare owners (discover --owner) */
    int no_specials;             /* special files are skipped, never made
                                    (discover --no-specials) */
    int one_fs;                  /* source folders on another file system
                                    are not entered (--one-file-system) */
    int64_t min_size, max_size;  /* files outside are excluded; 0: none */
    int64_t mtime_min, mtime_max;/* files with an mtime (ns) outside are
                                    excluded (--max-age, --min-age); 0: none */
    int compare;                 /* TM_COMPARE_*: how two files compare */
    int64_t window;              /* --modify-window, ns; 0: none */
    int xattrs;                  /* extended attributes and ACLs are
                                    compared (not --no-xattrs) */
    int pass;                    /* a pass after the first (treemig rescan):
                                    listings are merged with the rows there,
                                    and a node copied before that the
                                    destination still matches stays
                                    successful */
    const struct tm__disc_claim *claim; /* leased claims (a shared state
                                    database), NULL: the frontier's pages */
    int64_t lease_lost;          /* out: listing pages dropped because
                                    another process held the folder by then */
};

/* Runs discovery until both trees are done (0), a stop was asked
 * (TM_ESTOPPED), or a fatal error (TM_ENOENT: a root was removed or
 * replaced during the run). Called on the main thread. */
int tm__discover_run(struct tm__discover_cfg *cfg);

/* One listed child; its name is in the listing's arena. */
struct tm__ent {
    size_t name_off, name_len; /* name in the arena (NUL-terminated) */
    int type;                  /* enum tm__type */
    int64_t size, mtime;       /* as listed */
    uint32_t mode;             /* permission bits */
    int64_t uid, gid;          /* owner, where the storage reports one */
    int other_fs;              /* a folder on another file system than
                                  the root's (struct tm__entry) */
    uint64_t dev, ino;         /* a file's inode, where reported */
    uint32_t nlink;            /* its links (0: not reported) */
    uint64_t xattrs;           /* digest of its extended attributes
                                  (struct tm__entry; 0: none or not read) */
    int meta_later;            /* mtime, mode, owner not listed
                                  (struct tm__entry) */
};

/* The children of one folder as an adapter listed them (compare.c). */
struct tm__listing {
    struct tm__buf arena; /* names */
    struct tm__ent *v;    /* children */
    size_t n, cap;        /* used, allocated */
};

#define TM__LISTING_INIT { TM__BUF_INIT, NULL, 0, 0 }

/* A tm__list_cb that appends a child to the listing at ctx. */
int tm__listing_add(void *ctx, const struct tm__entry *e);
/* Empties the listing for reuse. */
void tm__listing_reset(struct tm__listing *l);
void tm__listing_release(struct tm__listing *l);
/* Sorts by name (SQLite's BINARY order); TM_EBADNAME on a duplicate name. */
int tm__listing_sort(struct tm__listing *l);
/* The child named name in a sorted listing, or NULL. */
const struct tm__ent *tm__listing_find(const struct tm__listing *l,
                                       const char *name, size_t len);
/* SQLite's BINARY order of two names: bytes, then length. */
int tm__name_cmp(const char *a, size_t al, const char *b, size_t bl);

/* Filters (filter.c). A rule is "- GLOB" (exclude), "+ GLOB" (include)
 * or a bare GLOB (exclude); GLOB as rsync writes it (docs/filters.md). */

/* Checks a glob: 0, or TM_EINVAL with the reason in why (len bytes). */
int tm__glob_check(const char *glob, char *why, size_t len);
/* Checks a rule's glob (tm__glob_check). */
int tm__filter_check(const char *rule, char *why, size_t len);
/* The glob of rule; *include gets 1 for "+ ", else 0. */
const char *tm__filter_rule(const char *rule, int *include);
/* 1 when the glob matches the node at path (root-relative, starting with
 * '/') named name; is_folder for the patterns that end with '/'. A
 * backslash always escapes (treemig exclude's patterns). */
int tm__glob_match_node(const char *glob, const char *path, const char *name,
                        int is_folder);
/* The first of the n rules that matches the node decides: 1 included,
 * -1 excluded; 0 when none matches. As rsync, a backslash escapes only
 * in a glob with '*', '?' or '[': without, the pattern is literal. */
int tm__filter_eval(const char *const *rules, size_t n, const char *path,
                    const char *name, int is_folder);
/* 1 when one of the globs matches the node (as a folder: a pattern with a
 * trailing '/' matches too). */
int tm__filter_match(const char *const *globs, size_t n, const char *path,
                     const char *name);

/* Compares two leaves (files or symlinks) of the same name and type: returns
 * CF_NONE when equal, else CF_SIZE, CF_DST_NEWER or CF_MTIME. Mtimes are
 * compared at precision prec (ns, >= 1). */
int tm__compare_leaf(int64_t src_size, int64_t src_mtime, int64_t dst_size,
                     int64_t dst_mtime, int64_t prec);

/* 1 when the mtimes a and b (ns), in whole seconds, differ by at most
 * window (ns, a whole number of seconds > 0), as rsync --modify-window;
 * 0 without a window or for a time that did not fit. */
int tm__mtime_within(int64_t a, int64_t b, int64_t window);

/* The attributes of a node besides its content. */
struct tm__attrs {
    uint32_t mode;      /* permission bits (07777) */
    int owned;          /* 1: uid and gid are known */
    int64_t uid, gid;   /* owner, with owned */
};

/* What the comparison of attributes takes into account. */
struct tm__attr_rule {
    int modes;          /* both storages keep modes: compare them */
    int owner;          /* the copy sets owners (--owner), so it keeps
                           set-ID bits */
    int cmp_owner;      /* owners are compared (discover --owner) */
    int64_t euid, egid; /* the user treemig runs as: without owner, the
                           copy's files are theirs */
    int xattrs;         /* extended attributes and ACLs are compared
                           (both storages keep them: TM_CAP_XATTRS; the
                           caller clears it for --no-xattrs) */
};

/* Fills r for the storages src and dst: modes when both keep them, owner
 * and cmp_owner as given, the process's effective user and group. */
void tm__attr_rule_init(struct tm__attr_rule *r, const struct tm__adapter *src,
                        const struct tm__adapter *dst, int owner, int cmp_owner);

/* The mode the copy gives a node of type whose source has attributes s:
 * the source's mode, except that without r->owner a file loses its
 * set-user-ID (set-group-ID) bit when its owner (group) is not the user
 * (group) treemig runs as, or is unknown: the copy's user owns the copy,
 * and another user's set-ID bit would hand out the copy's own powers. */
uint32_t tm__copy_mode(const struct tm__attr_rule *r, int type,
                       const struct tm__attrs *s);

/* Compares the attributes of two nodes of the same type whose contents
 * are equal: the source's s, the destination's d. Returns CF_ATTRS when d
 * is not what the copy makes of s, else CF_NONE: with r->modes the mode
 * of folders and files (tm__copy_mode), with r->cmp_owner the owner of
 * folders, files and symlinks (an unknown owner is never equal); nothing
 * for other types (a symlink's own mode means nothing on POSIX). */
int tm__compare_attrs(const struct tm__attr_rule *r, int type,
                      const struct tm__attrs *s, const struct tm__attrs *d);

/* Compares the extended attributes and ACLs of two nodes of the same type
 * whose contents are equal, by their digests (tm__xattr_hash: the source's
 * s, the destination's d): CF_ATTRS when they differ, with r->xattrs, for
 * a file or folder (the only nodes whose attributes the copy sets); else
 * CF_NONE. */
int tm__compare_xattrs(const struct tm__attr_rule *r, int type, uint64_t s,
                       uint64_t d);

#endif
