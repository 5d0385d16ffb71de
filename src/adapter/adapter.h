/*
 * adapter.h - the storage interface (in the manner of sqlite3_vfs).
 *
 * An adapter is a struct of function pointers with a version, a name and
 * capability bits; a concrete adapter embeds struct tm__adapter as its first
 * member. The engine calls adapters only through the tm__adapter_* wrappers
 * below, which check the contract (e.g. every listed name is a valid single
 * path component) and supply defaults. Adapter methods must be safe to call
 * from many worker threads at once on the same adapter.
 */
#ifndef TM_ADAPTER_H
#define TM_ADAPTER_H

#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "util/buf.h"

struct tm__rfile;
struct tm__wattr;
struct tm__wfile;
struct tm__leaf_attr;

enum tm__type { TM_T_FOLDER = 0, TM_T_FILE, TM_T_SYMLINK, TM_T_OTHER, TM_T_COUNT };

/* Capability bits. */
enum {
    TM_CAP_MODES = 1u << 0,    /* reports and keeps permission bits */
    TM_CAP_SYMLINKS = 1u << 1, /* has symlinks */
    TM_CAP_OWNER = 1u << 2,    /* reports owners (uid, gid) and can set them */
    TM_CAP_SPECIALS = 1u << 3, /* reports the kind of its special files and
                                  can create them (mknod) */
    TM_CAP_MOUNTS = 1u << 4,   /* says which folders are on another file
                                  system than the root (other_fs) */
    TM_CAP_HARDLINKS = 1u << 5, /* reports files' inodes (dev, ino, nlink)
                                   and can link (link) */
    TM_CAP_XATTRS = 1u << 6,   /* keeps extended attributes and POSIX ACLs:
                                  get_xattrs, set_xattrs, and commit sets
                                  those of struct tm__wattr */
    TM_CAP_FAST_LIST = 1u << 7, /* lists without latency worth hiding (a
                                   local file system): discovery may list a
                                   folder and its twin on the other side in
                                   one job (discover.c, the pair listing) */
};

/* One node as a storage reports it. name points into storage owned by the
 * caller of the callback and is valid only during the callback. */
struct tm__entry {
    const char *name; /* one path component, not NUL-terminated in general */
    size_t name_len;  /* bytes in name */
    int type;         /* enum tm__type */
    int64_t size;     /* bytes (symlink: target length) */
    int64_t mtime;    /* ns since the epoch */
    uint32_t mode;    /* permission bits; TM_T_OTHER with TM_CAP_SPECIALS:
                         also the kind (S_IFIFO, S_IFCHR, S_IFBLK,
                         S_IFSOCK: the S_IFMT bits) */
    int64_t uid, gid; /* owner, with TM_CAP_OWNER (else 0) */
    uint64_t rdev;    /* a character or block device: its number */
    int other_fs;     /* a folder on another file system, or another
                         mount of one, than the root (a mount point) */
    uint64_t dev, ino; /* a file's inode (TM_CAP_HARDLINKS) */
    uint32_t nlink;   /* its links (TM_CAP_HARDLINKS; else 0) */
    uint64_t xattrs;  /* a file or folder: tm__xattr_hash() of the
                         attributes get_xattrs gives, security.* left
                         out (0: none); filled only by list_next with
                         list_xattrs set */
    int meta_later;   /* a file listed without its mtime, mode and owner
                         (only when the engine set the adapter's
                         meta_later): mtime and mode are stand-ins, and
                         stat_many gives the real ones */
};

/* What a storage says about its root (root_info). */
struct tm__root_info {
    char id[80];       /* identity of the root folder that stays the same
                          across mounts and reboots ("" when unknown): a
                          folder put in its place has another one */
    char fstype[32];   /* the kind of file system, for messages */
    int pseudo;        /* 1: a pseudo file system (proc, sysfs, ...) */
    uint64_t dev, ino; /* device and inode as this process sees them */
};

/* Called once per child; returns 0 to go on, or an error to stop listing
 * (that error is then returned by list_next). */
typedef int (*tm__list_cb)(void *ctx, const struct tm__entry *e);

/* How a failure is handled: retried, recorded for this node, or the end. */
enum tm__errclass { TM_ERR_RETRY = 0, TM_ERR_NODE, TM_ERR_FATAL, TM_ERR_THROTTLE };

/* What went wrong in one call, filled by the adapter with the error it
 * returns, so that the detail travels with the call (an operation may be
 * retried or reported on another thread). The wrappers below set code,
 * cls = -1, retry_ms = 0 and msg = "" before each call; an adapter sets
 * what it knows, the wrapper fills the rest (cls from code, msg from
 * tm_strerror). */
struct tm__aerr {
    int code;         /* the error returned (a TM_E* code) */
    int cls;          /* enum tm__errclass, or -1: classify code */
    int64_t retry_ms; /* TM_ERR_THROTTLE: wait this long (0: default) */
    char msg[256];    /* the storage's own words for it, or "" */
};

/* A listing in progress: a concrete adapter embeds it first. */
struct tm__lister {
    struct tm__adapter *a; /* the adapter that opened it */
};

struct tm__adapter {
    int version;              /* interface version, 2 */
    const char *name;         /* "local", "sim", ... */
    unsigned caps;            /* TM_CAP_* bits */
    int64_t mtime_precision;  /* ns; mtimes are compared at the coarser one */
    int list_xattrs;          /* set by the engine (TM_CAP_XATTRS only)
                                 before listing, through
                                 tm__adapter_set_list_xattrs: list_next
                                 fills each entry's xattrs */
    struct tm__adapter *wrapped; /* the adapter a layer (fault.c) passes
                                    its calls to, NULL for a storage */

    /* ---- paged listing ----
     * A folder is listed page by page, so that no folder is ever held whole
     * in memory, and a listing can be resumed inside a folder after a
     * crash from a position the engine stored. */

    /* Starts listing the children of the folder at path (root-relative,
     * "/" for the root) at pos (pos_len bytes from an earlier list_pos of
     * the same folder; 0 bytes: from the start). Cheap: the first request
     * may wait for list_next. */
    int (*list_open)(struct tm__adapter *a, const char *path, const void *pos,
                     size_t pos_len, struct tm__lister **out,
                     struct tm__aerr *e);
    /* Calls cb for each child of the next page, in any order; sets *more
     * to 0 once the listing is complete (that page may hold children). On
     * failure the page may have been partly passed to cb: the caller drops
     * it, and the next call starts the same page again. */
    int (*list_next)(struct tm__lister *l, tm__list_cb cb, void *ctx, int *more,
                     struct tm__aerr *e);
    /* Appends to out the position after the last page list_next returned,
     * for a later list_open. */
    int (*list_pos)(struct tm__lister *l, struct tm__buf *out);
    /* Ends the listing and frees l. */
    void (*list_close)(struct tm__lister *l);
    /* Every method below that can fail fills e (struct tm__aerr) with what
     * the storage said; the wrappers (tm__adapter_*) complete it. */

    /* Stats the node at path without following a final symlink. */
    int (*stat)(struct tm__adapter *a, const char *path, struct tm__entry *out,
                struct tm__aerr *e);
    /* Frees the adapter. */
    void (*close)(struct tm__adapter *a);

    /* ---- reading and writing files (NULL: the storage cannot) ---- */

    /* Opens the file at path for reading; *st gets its size and mtime as
     * seen through the open handle. */
    int (*open_read)(struct tm__adapter *a, const char *path,
                     struct tm__rfile **out, struct tm__entry *st,
                     struct tm__aerr *e);
    /* Reads up to len bytes: the count (0 at the end) or an error. */
    int64_t (*read)(struct tm__rfile *f, void *buf, size_t len,
                    struct tm__aerr *e);
    /* The size and mtime of the open file now (to detect a change). */
    int (*fstat)(struct tm__rfile *f, struct tm__entry *st, struct tm__aerr *e);
    void (*close_read)(struct tm__rfile *f);
    /* Starts writing the file at path as w describes it (its size: a
     * storage may choose one request or parts by it; its attributes: a
     * storage that sends them with the bytes needs them first; a resume
     * point an earlier run's checkpoint left): the bytes go to a temporary
     * name beside it (not readable by others) or stay invisible until
     * commit. */
    int (*open_write)(struct tm__adapter *a, const char *path,
                      const struct tm__wattr *w, struct tm__wfile **out,
                      struct tm__aerr *e);
    /* Writes len bytes: the count or an error. */
    int64_t (*write)(struct tm__wfile *f, const void *buf, size_t len,
                     struct tm__aerr *e);
    /* Copies size bytes from src to f inside the storage (copy_file_range,
     * reflink, a server-side copy); optional, and only called when both
     * files belong to adapters of the same name (a wrapping adapter passes
     * it on unwrapped). Returns the bytes copied or an error. */
    int64_t (*copy_from)(struct tm__wfile *f, struct tm__rfile *src, int64_t size,
                         struct tm__aerr *e);
    /* Optional: a descriptor of the open file f, positioned where read
     * would go on (f keeps it; what is taken through it moves f on), for a
     * storage whose write_from takes bytes from a descriptor itself; -1
     * when there is none. */
    int (*read_fd)(struct tm__rfile *f);
    /* Optional: writes up to len bytes read from the descriptor fd (the
     * read_fd of a file of another storage) at its position, without
     * passing them through a buffer of the engine's (sendfile): the count
     * taken from fd, fewer than len only where fd ended (f is then only to
     * be aborted), or an error, *fd_failed set to 1 when it is fd's own
     * failure (f is then only to be aborted). */
    int64_t (*write_from)(struct tm__wfile *f, int fd, size_t len, int *fd_failed,
                          struct tm__aerr *e);
    /* Sets the owner (when f->set_owner, with TM_CAP_OWNER), mode and mtime
     * and renames the file to its real name, replacing a file there (with
     * TM_NOREPLACE: TM_EEXIST when something is there). Frees f, also on
     * failure (the temporary is removed). */
    int (*commit)(struct tm__wfile *f, int64_t mtime, uint32_t mode,
                  unsigned flags, struct tm__aerr *e);
    /* Removes the temporary file and frees f. */
    void (*abort)(struct tm__wfile *f);
    /* Creates the folder at path (owner may write into it; the final mode
     * comes with set_attr). A folder already there is success. */
    int (*mkdir)(struct tm__adapter *a, const char *path, struct tm__aerr *e);
    /* Optional: mkdir that gives the folder mode and mtime (never
     * TM_MTIME_KEEP) as its final attributes at once, a folder already
     * there too. With it the storage promises that writing into a folder
     * does not change them: the engine does not call set_attr after the
     * children of a folder this made (an object store's "name/" marker:
     * one write instead of two). */
    int (*mkdir_attr)(struct tm__adapter *a, const char *path, int64_t mtime,
                      uint32_t mode, struct tm__aerr *e);
    /* Reads the target of the symlink at path into out. */
    int (*readlink)(struct tm__adapter *a, const char *path, struct tm__buf *out,
                    struct tm__aerr *e);
    /* Creates (or replaces, unless TM_NOREPLACE) the symlink at path with
     * its mtime, atomically. */
    int (*symlink)(struct tm__adapter *a, const char *path, const char *target,
                   int64_t mtime, unsigned flags, struct tm__aerr *e);
    /* Creates (or replaces, unless TM_NOREPLACE) the special file at path
     * atomically, as a temporary renamed to it: mode gives its kind (the
     * S_IFMT bits: a FIFO, a device, a socket) and permission bits, rdev
     * a device's number. With TM_CAP_SPECIALS. */
    int (*mknod)(struct tm__adapter *a, const char *path, uint32_t mode,
                 uint64_t rdev, int64_t mtime, unsigned flags,
                 struct tm__aerr *e);
    /* Makes path (replacing what is there, unless TM_NOREPLACE) another
     * link to the file at target (both root-relative) atomically: a
     * temporary link renamed to path. TM_EINVAL when target is not a
     * file. With TM_CAP_HARDLINKS. */
    int (*link)(struct tm__adapter *a, const char *target, const char *path,
                unsigned flags, struct tm__aerr *e);
    /* Appends to out the extended attributes of the file or folder (type)
     * at path that a copy keeps (user.*, trusted.* where this process may
     * read them, system.posix_acl_access and _default), in the form
     * tm__xattr_next() reads. Never follows a symlink. With
     * TM_CAP_XATTRS. */
    int (*get_xattrs)(struct tm__adapter *a, const char *path, int type,
                      struct tm__buf *out, struct tm__aerr *e);
    /* Gives the file or folder (type) at path exactly the attributes of
     * blob (len bytes, as get_xattrs gives them; none: len 0): each one
     * the storage refuses is appended to refused ("name: reason; ") and
     * the others are still set; each kept one the node has beyond them is
     * removed (not security.*, which the storage may set itself). TM_ECHANGED when the node there is not of that type. Never
     * follows a symlink. With TM_CAP_XATTRS. */
    int (*set_xattrs)(struct tm__adapter *a, const char *path, int type,
                      const void *blob, size_t len, struct tm__buf *refused,
                      struct tm__aerr *e);
    /* Sets mode and mtime of the folder at path (after its children);
     * mtime TM_MTIME_KEEP leaves the mtime as it is. */
    int (*set_attr)(struct tm__adapter *a, const char *path, int64_t mtime,
                    uint32_t mode, struct tm__aerr *e);
    /* Changes in place the attributes of the file or symlink at path,
     * keeping its content and mtime: its owner (with want->set_owner),
     * then (a file) its mode. Only when the node there is the one the
     * caller saw (want: type, size and mtime exactly) and has no other
     * link (a hard link may lead out of the tree); otherwise TM_ECHANGED
     * and nothing is changed: the caller copies the node whole instead.
     * Never follows a symlink; changes the node through what it opened,
     * never by name again. Optional (NULL: nodes are copied whole). */
    int (*set_leaf_attr)(struct tm__adapter *a, const char *path,
                         const struct tm__leaf_attr *want, struct tm__aerr *e);
    /* Makes everything written so far durable (syncfs). Optional. */
    int (*sync)(struct tm__adapter *a, struct tm__aerr *e);
    /* Sets the owner of the folder or symlink at path, not following a
     * final symlink (files get theirs in commit). With TM_CAP_OWNER. */
    int (*chown)(struct tm__adapter *a, const char *path, int64_t uid,
                 int64_t gid, struct tm__aerr *e);
    /* Gives up a write of path that an earlier run began and checkpointed
     * (state, len bytes: what its checkpoint said), so that nothing of it
     * is left behind (an object store's multipart upload). Optional. */
    int (*forget_write)(struct tm__adapter *a, const char *path,
                        const void *state, size_t len, struct tm__aerr *e);
    /* 0 when this storage can hold a node of type at path (len bytes;
     * called at discovery with the source's nodes); else 1 and why (a
     * symlink on an object store, a name longer than a key may be, a name
     * that is not UTF-8). Optional: everything can be held. */
    int (*cannot_hold)(struct tm__adapter *a, const char *path, size_t len,
                       int type, char *why, size_t whylen);
    /* 0 while the root is still the folder the adapter opened, at the
     * place it was opened; TM_ENOENT once it was removed, moved away,
     * replaced or unmounted (then nothing more must be written through
     * the adapter).
     * Cheap: called before every write. Optional (default: 0). */
    int (*check_root)(struct tm__adapter *a);

    /* ---- safety (optional; the local adapter has them all) ---- */

    /* Fills *out about the root as it was opened. */
    int (*root_info)(struct tm__adapter *a, struct tm__root_info *out);
    /* From now on a listing that finds the folder (dev, ino) among the
     * children fails with TM_EOVERLAP (described with what, e.g. "the
     * destination root"): the other root or the state file's folder met
     * inside this tree by a route that paths do not show (a bind mount). */
    int (*forbid)(struct tm__adapter *a, uint64_t dev, uint64_t ino,
                  const char *what);
    /* Sets the run key (TM_KEY_LEN bytes) that the names of temporary
     * files derive from; until then the adapter's own random one. */
    void (*set_tmp_key)(struct tm__adapter *a, const unsigned char *key);
    /* Removes what writing the node at path (type: a file, a symlink or
     * "other", a special file) under the run key key may have left (a
     * crash): only a temporary of that type under one of its names, unlinked in the parent folder,
     * nothing followed. Returns how many were removed, or an error. */
    int (*remove_tmp)(struct tm__adapter *a, const char *path, int type,
                      const unsigned char *key, struct tm__aerr *e);
    /* The mirror (treemig delete): removes the node at path (not the
     * root) only while it is still the one want describes, as discovery
     * recorded it: its type; a file's or symlink's size and mtime; a
     * special file's kind. The check is made just before the removal, on
     * the parent folder opened without following anything; a folder is
     * removed only when empty. TM_ENOENT: nothing is there; TM_ECHANGED:
     * something else is there, or a folder is not empty (e->msg says
     * which); nothing is removed then. With backup (a root-relative
     * folder path, not NULL), a node that is not a folder is moved there
     * (backup's method) instead of being removed. NULL: the storage
     * cannot remove. */
    int (*remove)(struct tm__adapter *a, const char *path,
                  const struct tm__entry *want, const char *backup,
                  struct tm__aerr *e);
    /* Moves the node at path (not a folder) to dir + path (dir a
     * root-relative folder path), making the folders on the way (mode
     * 0700), every step without following a symlink; a node at the target
     * is replaced. TM_ENOENT when nothing is at path. NULL: the storage
     * cannot (then it has no remove either). */
    int (*backup)(struct tm__adapter *a, const char *path, const char *dir,
                  struct tm__aerr *e);
    /* Stats n files at once (paths[i] root-relative): out[i] and rcs[i]
     * (0, TM_ENOENT, or another error with e describing it) for each.
     * Returns 0, or an error that failed them all. NULL: the storage
     * has no cheaper way than stat one at a time. */
    int (*stat_many)(struct tm__adapter *a, const char *const *paths,
                     struct tm__entry *out, int *rcs, size_t n,
                     struct tm__aerr *e);
    /* Not the storage's: set by the engine (discovery of a destination,
     * which compares files with their source twins) when it will call
     * stat_many for the listed files whose metadata it needs: a storage
     * where a file's mtime and mode cost a request each (S3: a HEAD for
     * rclone's metadata) may then list files with meta_later set. */
    int meta_later;
    /* Not the storage's: set by the engine with meta_later when it
     * compares sizes and types only (discover --size-only), no mode nor
     * mtime: a storage where they cost a request may then list folders
     * without them too (stand-ins, meta_later set). */
    int sizes_only;
    /* Not the storage's: the engine's limits on this side (copy
     * --bwlimit, --tps-limit), applied by the tm__adapter_* wrappers;
     * NULL (as the storage leaves it): none. */
    struct tm__limit *limit;
};

/* Limits on one side's traffic: bytes per second (read, write, copy_from)
 * and operations per second (each request: stat, a listing's page, open,
 * commit, mkdir, ...). A caller that would go faster waits; a stop asked
 * (*stop) ends every wait at once. Shared by the workers of a side. */
struct tm__limit {
    pthread_mutex_t mu;     /* guards what follows */
    double bytes_per_s;     /* 0: no limit */
    double ops_per_s;       /* 0: no limit */
    int64_t next_byte_ns;   /* when the bytes taken so far are paid for */
    int64_t next_op_ns;     /* when the operations taken so far are */
    atomic_int *stop;       /* set to end the waits, may be NULL */
    int64_t bytes, ops;     /* taken (accounting) */
    int64_t waited_ns;      /* slept in all, over every caller */
};

/* Sets l up (rates 0: none). */
void tm__limit_init(struct tm__limit *l, double bytes_per_s, double ops_per_s,
                    atomic_int *stop);
void tm__limit_release(struct tm__limit *l);

/* How a file will be written (open_write). */
struct tm__wattr {
    int64_t size;         /* the bytes that will be written */
    int64_t mtime;        /* ns since the epoch, as commit will say */
    uint32_t mode;        /* permission bits, as commit will say */
    int64_t uid, gid;     /* the source's owner (-1: not known) */
    const void *resume;   /* what an earlier write of this file's
                             checkpoint said (NULL: start afresh) */
    size_t resume_len;    /* its bytes */
    /* The engine's, may be NULL: an adapter that can go on with a write
     * after a crash (the parts it has uploaded) calls it at each point a
     * resume could start from, with its state; the engine records it and
     * hands it back as resume to a later open_write of the same file.
     * Called on the writing thread; returns 0 or an error (the write goes
     * on: a checkpoint lost costs a part sent again). */
    int (*checkpoint)(void *ctx, const void *state, size_t len);
    void *checkpoint_ctx; /* its context */
    /* The engine's, with TM_CAP_XATTRS: the extended attributes commit
     * sets on the file before it gets its name (as get_xattrs gives them;
     * valid until commit or abort), and where it appends those the storage
     * refuses ("name: reason; "; the file is still committed). */
    const void *xattrs;   /* NULL: not kept; else the file gets exactly
                             these (xattrs_len 0: none; those it would
                             inherit, a default ACL, go) */
    size_t xattrs_len;    /* its bytes */
    struct tm__buf *refused; /* may be NULL */
};

/* The extended attributes in blob (len bytes): *off starts at 0; returns
 * 1 with the next name (NUL-terminated) and value, 0 at the end, -1 when
 * blob is malformed. Each is the name, a NUL, a 4-byte length (host
 * order) and the value. */
int tm__xattr_next(const void *blob, size_t len, size_t *off, const char **name,
                   const void **value, uint32_t *vlen);
/* Appends one attribute to out in that form. */
int tm__xattr_add(struct tm__buf *out, const char *name, const void *value,
                  uint32_t vlen);
/* The digest of a set of attributes, whatever their order: start with
 * h = 0, add each (name, value) with tm__xattr_hash_add(), end with
 * tm__xattr_hash_end() (0 only for none). */
uint64_t tm__xattr_hash_add(uint64_t h, const char *name, const void *value,
                            size_t vlen);
uint64_t tm__xattr_hash_end(uint64_t h, size_t count);
/* That digest of a blob as get_xattrs gives it, security.* left out
 * (copied, never compared: a destination may label each node itself); 0:
 * none or malformed. */
uint64_t tm__xattr_hash(const void *blob, size_t len);

/* Base of an adapter's open files: a concrete file embeds it first. */
struct tm__rfile {
    struct tm__adapter *a;     /* the adapter that opened it */
    struct tm__rfile *native;  /* the storage's own file below any wrapping
                                  adapter (a wrapper sets it to its inner
                                  file's; else the open_read wrapper sets
                                  it to the file itself): copy_from gets it */
};
struct tm__wfile {
    struct tm__adapter *a; /* the adapter that opened it */
    int set_owner;         /* the engine's: commit sets uid and gid */
    int64_t uid, gid;      /* the owner to set */
};

/* What set_leaf_attr expects at a path, and what it sets there. */
struct tm__leaf_attr {
    int type;             /* TM_T_FILE or TM_T_SYMLINK */
    int64_t size, mtime;  /* what must be there, as stat reported it */
    uint32_t mode;        /* a file: the permission bits to set */
    int set_owner;        /* 1: set uid and gid (TM_CAP_OWNER) */
    int64_t uid, gid;     /* the owner, with set_owner */
};

/* commit, symlink: never replace what is at the real name. */
#define TM_NOREPLACE 1u

/* set_attr: leave the mtime unchanged. */
#define TM_MTIME_KEEP INT64_MIN


/* Options of the storage kinds, as the command line gives them
 * ("--s3-endpoint URL" is "s3-endpoint=URL"). A kind reads its own keys and
 * ignores the others'; none holds a secret (secrets come from the
 * environment, an agent or files the user names, at every run). */
struct tm__sopts {
    const char *const *kv;  /* "key=value" strings ("key" alone: a flag) */
    size_t n;               /* their count */
};

/* The value of key in o (the last one given), "" for a flag given without
 * a value, NULL when absent. o may be NULL. */
const char *tm__sopt_get(const struct tm__sopts *o, const char *key);
/* The values of a repeatable key one by one: *i starts at 0; NULL at the
 * end. */
const char *tm__sopt_next(const struct tm__sopts *o, const char *key, size_t *i);

/*
 * A kind of storage: the registry (adapter.c) maps a spec to it by its
 * prefix. What the engine must know of a storage before opening it lives
 * here; what an open storage can do lives in its struct tm__adapter.
 */
struct tm__kind {
    const char *name;          /* "local", "sim", "sftp", "s3" */
    const char *prefix;        /* specs that start with it ("sim:",
                                  "sftp://"); NULL: a local path */
    int default_workers;       /* operations in flight per side unless
                                  --workers says otherwise */
    const char *const *keys;   /* the option keys it reads (NULL-ended) */
    /* The spec to record in the state file for spec: canonical (a local
     * path absolute, without symlinks) and without any secret (refused
     * with TM_EBADSPEC). *out is malloc'd. On failure err says why. */
    int (*resolve)(const char *spec, const struct tm__sopts *o, char **out,
                   char *err, size_t errlen);
    /* Opens the storage at the resolved spec. */
    int (*open)(const char *spec, const struct tm__sopts *o,
                struct tm__adapter **out, char *err, size_t errlen);
    /* 1 when the resolved specs a and b (both of this kind) may lead to the
     * same storage with one tree inside the other (err says how); 0 when
     * they cannot. NULL: the kind checks overlaps by the roots' identity
     * once open (local) or cannot overlap (sim). */
    int (*overlap)(const char *a, const char *b, const struct tm__sopts *o,
                   char *err, size_t errlen);
};

/* The kind of spec (after any "fault:RULES:" prefix): never NULL. */
const struct tm__kind *tm__kind_of(const char *spec);
/* Every kind, NULL-terminated, for help texts and docs. */
extern const struct tm__kind *const tm__kinds[];

/*
 * Opens the adapter for spec: "fault:RULES:SPEC" wraps the storage of SPEC
 * in the fault layer; any other spec opens the storage of its kind (see
 * tm__kind_of), which reads its options from o (may be NULL). On failure
 * returns an error and writes the reason into err (errlen bytes). *out is
 * freed with tm__adapter_close().
 */
int tm__adapter_open(const char *spec, const struct tm__sopts *o,
                     struct tm__adapter **out, char *err, size_t errlen);
/* The spec to record for spec (its kind's resolve), malloc'd. */
int tm__spec_resolve(const char *spec, const struct tm__sopts *o, char **out,
                     char *err, size_t errlen);
/* The local adapter on an absolute folder path. */
int tm__local_open(const char *root, struct tm__adapter **out, char *err,
                   size_t errlen);
/* The simulated adapter; params is the spec after "sim:" (docs/sim.md). */
int tm__sim_open(const char *params, struct tm__adapter **out, char *err,
                 size_t errlen);
/* The fault layer (fault.c, docs/adapters.md): "fault:RULES:INNER". */
int tm__fault_open(const char *spec, const struct tm__sopts *o,
                   struct tm__adapter **out, char *err, size_t errlen);
/* The kinds of local.c and sim.c. */
extern const struct tm__kind tm__local_kind;
extern const struct tm__kind tm__sim_kind;
/* The kind of s3/storage.c (s3://bucket/prefix). */
extern const struct tm__kind tm__s3_kind;
/* The kind of sftp/sftp.c ("sftp://"). */
extern const struct tm__kind tm__sftp_kind;

/* The operations the fault layer counts and can fail. */
enum tm__fault_op {
    TM_FOP_LIST = 0, TM_FOP_STAT, TM_FOP_OPEN_READ, TM_FOP_READ, TM_FOP_FSTAT,
    TM_FOP_OPEN_WRITE, TM_FOP_WRITE, TM_FOP_COPY_FROM, TM_FOP_COMMIT,
    TM_FOP_MKDIR, TM_FOP_READLINK, TM_FOP_SYMLINK, TM_FOP_SET_ATTR, TM_FOP_SYNC,
    TM_FOP_CHOWN,
    TM_FOP_COUNT,
    TM_FOP_NO_COPY_FROM = TM_FOP_COUNT /* a rule that hides copy_from */
};
extern const char *const tm__fault_op_names[TM_FOP_COUNT];

/* Rules one fault layer takes at most. */
#define TM_FAULT_MAX_RULES 16

/* One rule: fail call number nth of op (and, sticky, every later one);
 * op TM_FOP_NO_COPY_FROM (rule "no_copy_from") instead hides copy_from so
 * that the engine copies with read and write. */
struct tm__fault_rule {
    int op;          /* enum tm__fault_op */
    long long nth;   /* the first call that fails, from 1 */
    int err;         /* the error returned (TM_E*) */
    int sticky;      /* 1: every call from nth on fails */
};

/* Parses "fault:RULES:INNER" into at most max rules (*n used); *inner
 * points into spec at INNER. On failure err says why (TM_EBADSPEC). */
int tm__fault_parse(const char *spec, struct tm__fault_rule *rules, int max,
                    int *n, const char **inner, char *err, size_t errlen);
/* Wraps in with n rules; on success the result owns in, on failure the
 * caller keeps it. report: print the call counts on stderr at close. */
int tm__fault_wrap(struct tm__adapter *in, const struct tm__fault_rule *rules,
                   int n, int report, struct tm__adapter **out);
/* 1 when a is a fault layer. */
int tm__fault_is(const struct tm__adapter *a);
/* Calls of op so far on a fault layer (-1 when a is not one). */
long long tm__fault_calls(const struct tm__adapter *a, int op);
/* Faults injected so far on a fault layer (-1 when a is not one). */
long long tm__fault_fired(const struct tm__adapter *a);

/* 1 when spec names a simulated storage ("sim:..."). */
int tm__spec_is_sim(const char *spec);

/* The listing wrappers: they check what the adapter reports (every name
 * one valid path component, a known type) and fill e (see struct
 * tm__aerr). */
/* Sets list_xattrs of a and of the adapters it wraps, before any thread
 * lists (a layer must not write its inner adapter's flag while others
 * list). */
void tm__adapter_set_list_xattrs(struct tm__adapter *a, int on);
/* Sets meta_later and sizes_only of a and of the adapters it wraps (none
 * when a has no stat_many), before any thread lists. */
void tm__adapter_set_meta_later(struct tm__adapter *a, int later, int sizes_only);
int tm__adapter_list_open(struct tm__adapter *a, const char *path,
                          const void *pos, size_t pos_len,
                          struct tm__lister **out, struct tm__aerr *e);
int tm__adapter_list_next(struct tm__lister *l, tm__list_cb cb, void *ctx,
                          int *more, struct tm__aerr *e);
int tm__adapter_list_pos(struct tm__lister *l, struct tm__buf *out);
void tm__adapter_list_close(struct tm__lister *l);
/* Lists the whole folder at path, page after page (for small folders and
 * tests: a failure midway has already passed the children before it). */
int tm__adapter_list(struct tm__adapter *a, const char *path, tm__list_cb cb,
                     void *ctx, struct tm__aerr *e);
/* Sets e to "no error yet" before a call. */
void tm__aerr_clear(struct tm__aerr *e);
/* Completes e after a call that returned rc: code, a class from rc when
 * the adapter gave none, a message from tm_strerror when it gave none.
 * Returns rc. */
int tm__aerr_finish(struct tm__aerr *e, int rc);
/* Sets e from an adapter's error rc with a formatted message. Returns rc. */
int tm__aerr_set(struct tm__aerr *e, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * The wrappers through which the engine calls every other method (in the
 * manner of SQLite's os.c): each clears e, checks the contract (a path is
 * root-relative: "/" or "/name/...", no component "." or "..", so that
 * no storage is handed a path above its root; a count is within what
 * was asked; a method the storage lacks is refused with TM_ENOTSUP rather
 * than called), calls the adapter, and completes e (tm__aerr_finish). They
 * return what the method returns.
 */
int tm__adapter_stat_many(struct tm__adapter *a, const char *const *paths,
                          struct tm__entry *out, int *rcs, size_t n,
                          struct tm__aerr *e);
int tm__adapter_stat(struct tm__adapter *a, const char *path,
                     struct tm__entry *out, struct tm__aerr *e);
int tm__adapter_open_read(struct tm__adapter *a, const char *path,
                          struct tm__rfile **out, struct tm__entry *st,
                          struct tm__aerr *e);
int64_t tm__adapter_read(struct tm__rfile *f, void *buf, size_t len,
                         struct tm__aerr *e);
int tm__adapter_fstat(struct tm__rfile *f, struct tm__entry *st,
                      struct tm__aerr *e);
void tm__adapter_close_read(struct tm__rfile *f);
int tm__adapter_open_write(struct tm__adapter *a, const char *path,
                           const struct tm__wattr *w, struct tm__wfile **out,
                           struct tm__aerr *e);
/* a->forget_write, or 0 when the storage has none. */
int tm__adapter_forget_write(struct tm__adapter *a, const char *path,
                             const void *state, size_t len, struct tm__aerr *e);
/* a->cannot_hold, or 0 when the storage holds everything. */
int tm__adapter_cannot_hold(struct tm__adapter *a, const char *path, size_t len,
                            int type, char *why, size_t whylen);
int64_t tm__adapter_write(struct tm__wfile *f, const void *buf, size_t len,
                          struct tm__aerr *e);
/* 1 when out's adapter can copy from a file of in's adapter inside the
 * storage (copy_from: both of one kind, the destination has it). */
int tm__adapter_can_copy_from(struct tm__adapter *out, struct tm__adapter *in);
int64_t tm__adapter_copy_from(struct tm__wfile *out, struct tm__rfile *in,
                              int64_t size, struct tm__aerr *e);
/* 1 when out's storage can take in's bytes from in's descriptor
 * (write_from and read_fd, neither wrapped). */
int tm__adapter_can_write_from(struct tm__wfile *out, struct tm__rfile *in);
/* out's write_from with in's read_fd; *src_failed 1 when the error is
 * in's (the source's). */
int64_t tm__adapter_write_from(struct tm__wfile *out, struct tm__rfile *in, size_t len,
                               int *src_failed, struct tm__aerr *e);
int tm__adapter_commit(struct tm__wfile *f, int64_t mtime, uint32_t mode,
                       unsigned flags, struct tm__aerr *e);
void tm__adapter_abort(struct tm__wfile *f);
int tm__adapter_mkdir(struct tm__adapter *a, const char *path,
                      struct tm__aerr *e);
int tm__adapter_mkdir_attr(struct tm__adapter *a, const char *path,
                           int64_t mtime, uint32_t mode, struct tm__aerr *e);
int tm__adapter_readlink(struct tm__adapter *a, const char *path,
                         struct tm__buf *out, struct tm__aerr *e);
int tm__adapter_symlink(struct tm__adapter *a, const char *path,
                        const char *target, int64_t mtime, unsigned flags,
                        struct tm__aerr *e);
/* TM_ENOTSUP when the storage keeps no extended attributes. */
int tm__adapter_get_xattrs(struct tm__adapter *a, const char *path, int type,
                           struct tm__buf *out, struct tm__aerr *e);
int tm__adapter_set_xattrs(struct tm__adapter *a, const char *path, int type,
                           const void *blob, size_t len, struct tm__buf *refused,
                           struct tm__aerr *e);
/* TM_ENOTSUP when the storage cannot link files. */
int tm__adapter_link(struct tm__adapter *a, const char *target, const char *path,
                     unsigned flags, struct tm__aerr *e);
/* TM_ENOTSUP when the storage cannot create special files. */
int tm__adapter_mknod(struct tm__adapter *a, const char *path, uint32_t mode,
                      uint64_t rdev, int64_t mtime, unsigned flags,
                      struct tm__aerr *e);
/* TM_ENOTSUP when the storage keeps no folder attributes. */
int tm__adapter_set_attr(struct tm__adapter *a, const char *path, int64_t mtime,
                         uint32_t mode, struct tm__aerr *e);
/* TM_ENOTSUP when the storage cannot change a file's attributes in
 * place (then the node is copied whole). */
int tm__adapter_set_leaf_attr(struct tm__adapter *a, const char *path,
                              const struct tm__leaf_attr *want,
                              struct tm__aerr *e);
/* 0 when the storage has nothing to sync. */
int tm__adapter_sync(struct tm__adapter *a, struct tm__aerr *e);
int tm__adapter_chown(struct tm__adapter *a, const char *path, int64_t uid,
                      int64_t gid, struct tm__aerr *e);
void tm__adapter_close(struct tm__adapter *a);
/* a->check_root, or 0 when the adapter has none. */
int tm__adapter_check_root(struct tm__adapter *a);
/* a->root_info; TM_EINVAL when the adapter has none. */
int tm__adapter_root_info(struct tm__adapter *a, struct tm__root_info *out);
/* a->forbid; 0 when the adapter has none. */
int tm__adapter_forbid(struct tm__adapter *a, uint64_t dev, uint64_t ino,
                       const char *what);
/* a->set_tmp_key, when the adapter has it. */
void tm__adapter_set_tmp_key(struct tm__adapter *a, const unsigned char *key);
/* a->remove_tmp; 0 when the adapter has none. */
int tm__adapter_remove_tmp(struct tm__adapter *a, const char *path, int type,
                           const unsigned char *key, struct tm__aerr *e);
/* a->remove (the mirror); TM_ENOTSUP when the storage cannot remove.
 * The root is refused (TM_EINVAL). */
int tm__adapter_remove(struct tm__adapter *a, const char *path,
                       const struct tm__entry *want, const char *backup,
                       struct tm__aerr *e);
/* For a storage's remove: 0 when now (the node at path, stated just
 * before) is still the one want describes (remove's rule: its type; a
 * file's or symlink's size and mtime; a special file's kind), else
 * TM_ECHANGED with the reason in e. */
int tm__remove_check(const char *path, const struct tm__entry *now,
                     const struct tm__entry *want, struct tm__aerr *e);
/* dir + path (a backup's target: dir a root-relative folder, path a
 * root-relative node) into out (reset first). */
int tm__backup_path(const char *dir, const char *path, struct tm__buf *out);
/* a->backup; TM_ENOTSUP when the storage cannot move nodes. */
int tm__adapter_backup(struct tm__adapter *a, const char *path, const char *dir,
                       struct tm__aerr *e);
/* The default class of an error code (an adapter may say otherwise in
 * struct tm__aerr). */
enum tm__errclass tm__adapter_classify(struct tm__adapter *a, int err);
/* 1 when name is one valid path component: not empty, not "." or "..",
 * no '/' and no NUL. */
int tm__name_valid(const char *name, size_t len);

extern const char *const tm__type_names[TM_T_COUNT];

#endif
