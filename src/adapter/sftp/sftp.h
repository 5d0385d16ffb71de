/*
 * sftp.h - the SFTP client layer under the sftp adapter: ssh_config and URL
 * resolution, host-key checks, authentication, and a thread-safe pool of
 * SSH sessions, each with one SFTP channel, with the operations the adapter
 * needs.
 *
 * Transport, host keys, the agent and key files are libssh2's, or, with
 * the openssh transport, OpenSSH's ssh run as a child (openssh.c). The SFTP
 * protocol (version 3, draft-ietf-secsh-filexfer-02, with OpenSSH's
 * extensions) is written here over a libssh2 channel, because Debian 12's
 * libssh2 (1.10) has no posix-rename@openssh.com, lsetstat@openssh.com or
 * limits@openssh.com and no way to send another extended request; owning
 * the protocol also lets reads, writes and readdir keep as many requests in
 * flight as we choose (docs/adapters.md, "SFTP").
 *
 * Threads: every function taking a pool may be called from any thread at
 * once. A directory, read or write handle holds one session of the pool
 * from its open to its close; it may move between threads but must not be
 * used by two at a time. A session is taken from the pool for each call
 * and given back after it (or at the handle's close); a pool opens sessions
 * lazily up to max_sessions, and a thread that finds them all busy waits
 * for one.
 *
 * Errors: every call returns 0 (or a count) or a negative TM_* code and,
 * when it fails, fills the caller's struct tm__sftp_err: the code, the
 * class (retry / node / fatal), the server's SSH_FX_* status and a message
 * with the failed operation first. No secret (passphrase, password) is ever
 * put in a message. Paths are the server's absolute paths, NUL-terminated;
 * names are bytes (anything but NUL and '/').
 */
#ifndef TM_SFTP_H
#define TM_SFTP_H

#include <stddef.h>
#include <stdint.h>

#include "adapter/adapter.h" /* enum tm__errclass, enum tm__type */
#include "util/buf.h"

/* ---- errors ---- */

struct tm__sftp_err {
    int code;               /* TM_* (negative); 0 when there was none */
    int cls;                /* enum tm__errclass: retry, node or fatal */
    int fx;                 /* the server's SSH_FX_* status, -1 when none */
    int64_t retry_after_ms; /* retry class: wait at least this long (0: the
                               caller's own backoff decides) */
    char msg[512];          /* "lstat /srv/a: permission denied (server:
                               Permission denied)"; "" when none */
};

/* ---- the URL and ssh_config ---- */

/* sftp://[user@]host[:port]/absolute/path, percent-decoded. */
struct tm__sftp_url {
    char *user; /* NULL when the URL names none */
    char *host; /* a Host alias, a name or an address ([v6] unbracketed) */
    int port;   /* 0 when the URL names none */
    char *path; /* absolute, at least "/"; any byte but NUL */
};

/* Parses url into u (released with tm__sftp_url_release, also on failure).
 * TM_EBADSPEC with the reason in err (errlen bytes). */
int tm__sftp_url_parse(const char *url, struct tm__sftp_url *u, char *err,
                       size_t errlen);
void tm__sftp_url_release(struct tm__sftp_url *u);

/* What ssh_config says for one host, first match wins for each keyword
 * (IdentityFile and UserKnownHostsFile accumulate), values as written
 * (tokens and ~ not expanded yet). */
struct tm__ssh_host {
    char *hostname;          /* HostName, or NULL */
    char *user;              /* User, or NULL */
    int port;                /* Port, or 0 */
    char *host_key_alias;    /* HostKeyAlias, or NULL */
    char **identity_files;   /* IdentityFile values, in order */
    size_t n_identity_files; /* entries in identity_files */
    char **known_hosts;      /* UserKnownHostsFile values, in order */
    size_t n_known_hosts;    /* entries in known_hosts */
    int identity_agent_none; /* IdentityAgent none: the agent is not used */
    int identities_only;     /* IdentitiesOnly yes: agent keys only when
                                they match an identity file */
    int sets_ciphers;        /* Ciphers is set: the openssh transport keeps it */
};

/* Reads the ssh_config file at path (NULL: ~/.ssh/config; a missing file
 * is no setting) for the Host alias; Include is followed (globs, ~,
 * relative to ~/.ssh), Match blocks are skipped except "Match all".
 * h is released with tm__ssh_host_release, also on failure. */
int tm__ssh_config_read(const char *path, const char *alias,
                        struct tm__ssh_host *h, char *err, size_t errlen);
void tm__ssh_host_release(struct tm__ssh_host *h);

/* The values %-tokens expand to (OpenSSH's TOKENS section). */
struct tm__ssh_tokens {
    const char *alias;      /* %n: the host as given */
    const char *host;       /* %h: the HostName */
    const char *user;       /* %r: the remote user */
    const char *local_user; /* %u */
    const char *home;       /* %d, and ~ */
    int port;               /* %p */
};
/* Expands a leading ~ (~/ or ~ alone) and %d %h %n %p %r %u %l %% of s
 * into out; an unknown token is TM_EINVAL. */
int tm__ssh_expand(const char *s, const struct tm__ssh_tokens *t,
                   struct tm__buf *out);

/* ---- the pool ---- */

struct tm__sftp_opts {
    const char *ssh_config;            /* NULL: ~/.ssh/config; "none": no file */
    const char *const *identities;     /* key files (--ssh-identity), or NULL */
    size_t n_identities;               /* entries in identities */
    const char *known_hosts;           /* NULL: the config's, else
                                          ~/.ssh/known_hosts (+ known_hosts2) */
    int accept_new;                    /* record an unknown host's key */
    const char *password_env;          /* password auth from this variable,
                                          or NULL: never */
    int max_sessions;                  /* 0: 16 */
    int timeout_ms;                    /* a call blocked longer fails (retry);
                                          0: 30000 */
    int read_ahead;                    /* READs in flight per file; 0: 64 */
    int write_behind;                  /* WRITEs in flight per file; 0: 64 */
    uint32_t chunk;                    /* bytes per READ and WRITE request; 0:
                                          128 KiB reads, 64 KiB writes; capped
                                          by limits@openssh.com (32 KiB
                                          without it) */
    int stripe_streams;                /* a file of at least stripe_min
                                          bytes is read through this many
                                          sessions at once (its other
                                          streams take only sessions the
                                          pool has to spare); 0: 4, 1: one
                                          session per file */
    uint64_t stripe_min;               /* 0: 64 MiB */
    int stripe_rtt_us;                 /* ... only when an OPEN's round trip
                                          took at least this long (one
                                          session's window is the limit
                                          then); 0: 5000, -1: always */
    const char *ciphers;               /* the ciphers to offer, preferred
                                          first, comma-separated (ssh_config's
                                          Ciphers); NULL: TM_SFTP_CIPHERS */
    const char *macs;                  /* the MACs likewise (MACs); NULL:
                                          TM_SFTP_MACS */
    int transport;                     /* TM_SFTP_TRANSPORT_*; 0: the
                                          default (TREEMIG_SFTP_TRANSPORT, else
                                          openssh, or libssh2 when an
                                          encrypted key needs a prompt or
                                          ssh is not found) */
};
/* How a session reaches the server: libssh2 in this process, or OpenSSH's
 * ssh as a child (its ciphers, config and agent; the SFTP packets go
 * through its stdin and stdout). */
enum { TM_SFTP_TRANSPORT_DEFAULT = 0, TM_SFTP_TRANSPORT_LIBSSH2 = 1,
       TM_SFTP_TRANSPORT_OPENSSH = 2 };
/* The transport named s ("libssh2", "openssh"), or -1. */
int tm__sftp_transport_parse(const char *s);
/* The defaults: what measured cheapest per byte with Debian's libssh2 1.10
 * against OpenSSH 9.2 (docs/adapters.md, "Ciphers and MACs"); libssh2's
 * others follow, so a server that offers none of the first still connects. */
#define TM_SFTP_CIPHERS "aes128-ctr,aes192-ctr,aes256-ctr,aes256-cbc,aes192-cbc,aes128-cbc"
#define TM_SFTP_MACS "hmac-sha2-256,hmac-sha2-512,hmac-sha1"
/* Fills o with zeros: every default. */
void tm__sftp_opts_init(struct tm__sftp_opts *o);

struct tm__sftp_pool;

/* Parses url, resolves it through ssh_config and o, and opens the first
 * session (so an unknown or changed host key, a rejected key or a refused
 * port fails here, class fatal). *out is freed with tm__sftp_pool_free.
 * Secrets (a passphrase read once) are kept in memory only, zeroed at free. */
int tm__sftp_pool_open(const char *url, const struct tm__sftp_opts *o,
                       struct tm__sftp_pool **out, struct tm__sftp_err *e);
/* Closes every session (none may be held any more) and frees the pool. */
void tm__sftp_pool_free(struct tm__sftp_pool *p);

/* Server extensions the first session found (OpenSSH has them all). */
enum {
    TM_SFTP_EXT_POSIX_RENAME = 1u << 0, /* posix-rename@openssh.com */
    TM_SFTP_EXT_STATVFS = 1u << 1,      /* statvfs@openssh.com */
    TM_SFTP_EXT_FSYNC = 1u << 2,        /* fsync@openssh.com */
    TM_SFTP_EXT_LSETSTAT = 1u << 3,     /* lsetstat@openssh.com */
    TM_SFTP_EXT_LIMITS = 1u << 4,       /* limits@openssh.com */
};

struct tm__sftp_info {
    const char *host;      /* the host connected to (after HostName) */
    int port;              /* its port */
    const char *user;      /* the user logged in as */
    const char *root;      /* the URL's path */
    unsigned ext;          /* TM_SFTP_EXT_* */
    uint32_t chunk_read;   /* bytes per READ request */
    uint32_t chunk_write;  /* bytes per WRITE request */
    uint64_t connects;     /* sessions opened so far (reconnects included) */
    uint64_t sends;        /* batches of requests sent so far (one channel
                              write each: requests that need no reply in
                              between go out together) */
    const char *auth_used; /* "agent", "publickey FILE", "password" */
    const char *cipher;    /* the cipher the first session negotiated,
                              client to server ("aes128-ctr") */
    const char *mac;       /* its MAC, client to server ("hmac-sha2-256") */
    const char *transport; /* "libssh2" or "openssh" */
    uint64_t striped;      /* files read through several sessions so far */
    uint64_t stripe_extra; /* the extra sessions that read a part of one */
};
/* Fills *i; the strings are owned by the pool. */
void tm__sftp_pool_info(struct tm__sftp_pool *p, struct tm__sftp_info *i);

/* ---- attributes ---- */

enum {
    TM_SFTP_A_SIZE = 0x1,   /* size is set */
    TM_SFTP_A_UIDGID = 0x2, /* uid and gid are set */
    TM_SFTP_A_PERM = 0x4,   /* mode is set */
    TM_SFTP_A_TIME = 0x8,   /* atime and mtime are set */
};

/* A node's attributes as SFTP v3 carries them (whole seconds). */
struct tm__sftp_attr {
    unsigned flags;  /* TM_SFTP_A_*: which fields the server sent */
    int type;        /* enum tm__type from the S_IFMT bits of mode */
    uint64_t size;   /* bytes */
    uint32_t uid;    /* owner */
    uint32_t gid;    /* group */
    uint32_t mode;   /* st_mode: type and permission bits */
    int64_t atime;   /* seconds since the epoch */
    int64_t mtime;   /* seconds since the epoch */
};

/* ---- operations on paths ---- */

/* The node at path, not following a final symlink (stat: following it). */
int tm__sftp_lstat(struct tm__sftp_pool *p, const char *path,
                   struct tm__sftp_attr *a, struct tm__sftp_err *e);
int tm__sftp_stat(struct tm__sftp_pool *p, const char *path,
                  struct tm__sftp_attr *a, struct tm__sftp_err *e);
/* The target of the symlink at path, appended to out. */
int tm__sftp_readlink(struct tm__sftp_pool *p, const char *path,
                      struct tm__buf *out, struct tm__sftp_err *e);
/* Creates the folder path with mode (the server applies its umask).
 * TM_EEXIST when something is already there (told apart from other
 * failures by an lstat, SFTP v3 having no such status). */
int tm__sftp_mkdir(struct tm__sftp_pool *p, const char *path, uint32_t mode,
                   struct tm__sftp_err *e);
/* Creates the symlink path -> target (arguments in OpenSSH's order on the
 * wire, which swaps the draft's). TM_EEXIST when path exists. */
int tm__sftp_symlink(struct tm__sftp_pool *p, const char *path,
                     const char *target, struct tm__sftp_err *e);

/* Sets the attributes whose bit is in a->flags (TM_SFTP_A_PERM: the mode's
 * permission bits, TM_SFTP_A_TIME: atime and mtime, TM_SFTP_A_UIDGID).
 * TM_SFTP_NOFOLLOW: on the node itself, never a symlink's target: with
 * lsetstat@openssh.com when the server has it; otherwise only modes and
 * times of a node that an lstat just found not to be a symlink (a node
 * replaced between the two calls is the race SFTP v3 cannot close), and a
 * symlink gets TM_ENOTSUP. */
#define TM_SFTP_NOFOLLOW 1u
int tm__sftp_setstat(struct tm__sftp_pool *p, const char *path,
                     const struct tm__sftp_attr *a, unsigned flags,
                     struct tm__sftp_err *e);
/* Removes the file or symlink at path. */
int tm__sftp_remove(struct tm__sftp_pool *p, const char *path,
                    struct tm__sftp_err *e);
/* Removes the empty folder at path (RMDIR). TM_ECHANGED when the server
 * says only FX_FAILURE and the folder is still there (OpenSSH's answer to
 * a folder that is not empty). */
int tm__sftp_rmdir(struct tm__sftp_pool *p, const char *path,
                   struct tm__sftp_err *e);
/* Renames from to to. TM_SFTP_REPLACE: replacing a file at to, atomically
 * with posix-rename@openssh.com; a server without it gets remove + rename
 * (a moment with nothing at to). Without the flag: TM_EEXIST when to
 * exists (plain SFTP rename, which OpenSSH does with link + unlink). */
#define TM_SFTP_REPLACE 1u
int tm__sftp_rename(struct tm__sftp_pool *p, const char *from, const char *to,
                    unsigned flags, struct tm__sftp_err *e);

/* The server's canonical absolute path for path (REALPATH: symlinks
 * resolved, "." and ".." removed), appended to out. */
int tm__sftp_realpath(struct tm__sftp_pool *p, const char *path,
                      struct tm__buf *out, struct tm__sftp_err *e);

/* statvfs@openssh.com: the file system holding path. */
struct tm__sftp_vfs {
    uint64_t frsize;  /* fragment size: the unit of the block counts */
    uint64_t blocks;  /* total */
    uint64_t bavail;  /* free for an unprivileged user */
    uint64_t files;   /* inodes */
    uint64_t favail;  /* free inodes for an unprivileged user */
    uint64_t namemax; /* longest name */
    uint64_t flag;    /* ST_RDONLY = 1, ST_NOSUID = 2 */
    uint64_t fsid;    /* the file system's id */
};
/* TM_ENOTSUP when the server lacks the extension. */
int tm__sftp_statvfs(struct tm__sftp_pool *p, const char *path,
                     struct tm__sftp_vfs *v, struct tm__sftp_err *e);

/* What a root is, asked in one round trip: REALPATH of given, LSTAT of
 * path and, with want_vfs, statvfs of path (vfs_rc TM_ENOTSUP when not
 * asked or the server lacks it). Each answer has its own outcome; the
 * call fails (e filled) only when no session could be had or the
 * connection broke. r->real is the caller's to release. */
struct tm__sftp_probe {
    struct tm__buf real;        /* the canonical path of given */
    struct tm__sftp_attr at;    /* path's attributes */
    struct tm__sftp_vfs vfs;    /* path's file system */
    int real_rc, at_rc, vfs_rc; /* each one's outcome: 0 or TM_* */
    struct tm__sftp_err real_e, at_e, vfs_e; /* and why */
};
int tm__sftp_root_probe(struct tm__sftp_pool *p, const char *given, const char *path,
                        int want_vfs, struct tm__sftp_probe *r, struct tm__sftp_err *e);

/* ---- listing ---- */

/* One child; name points into the directory handle, valid until the next
 * readdir or closedir on it. "." and ".." are never returned. */
struct tm__sftp_dirent {
    const char *name;          /* not NUL-terminated */
    size_t name_len;           /* bytes in name */
    struct tm__sftp_attr attr; /* from the same round trip (an lstat) */
};

struct tm__sftp_dir;

/* Opens the folder at path for listing. skip: children to drop before
 * the first one returned. SFTP readdir handles cannot be stored or
 * reopened at a position: a listing resumed after a crash opens the folder
 * again and skips what was already taken (tm__sftp_dir_pos), which is only
 * right when the server lists the same folder in the same order (OpenSSH
 * returns readdir(3)'s order: stable for a folder that did not change on
 * ext4, xfs, btrfs, tmpfs; the adapter must check what it skips). */
int tm__sftp_opendir(struct tm__sftp_pool *p, const char *path, uint64_t skip,
                     struct tm__sftp_dir **out, struct tm__sftp_err *e);
/* As tm__sftp_opendir (skip 0), with an LSTAT of path sent just before
 * the OPENDIR and another just after it, the three in one batch (one round
 * trip instead of three): what was at path when the listing was opened,
 * and whether it changed meanwhile (the adapter refuses a symlink; OPENDIR
 * follows one, but nothing is read through a handle the caller closes).
 * *stage: how many of the three succeeded (*before is filled from 1 on,
 * *after at 3); the error returned is the first one's, in request order.
 * A handle whose LSTATs failed is closed here. */
int tm__sftp_opendir_lstat(struct tm__sftp_pool *p, const char *path,
                           struct tm__sftp_attr *before, struct tm__sftp_attr *after,
                           int *stage, struct tm__sftp_dir **out,
                           struct tm__sftp_err *e);
/* One batch of children: *ents gets an array of *n (the server's batch,
 * OpenSSH sends up to 100), *n = 0 at the end. Several READDIR requests
 * are kept in flight. The array is owned by d, valid until the next call. */
int tm__sftp_readdir(struct tm__sftp_dir *d, const struct tm__sftp_dirent **ents,
                     size_t *n, struct tm__sftp_err *e);
/* Children returned so far, the skipped ones included. */
uint64_t tm__sftp_dir_pos(const struct tm__sftp_dir *d);
/* Closes the handle and frees d (NULL is fine). */
void tm__sftp_closedir(struct tm__sftp_dir *d);

/* ---- reading ---- */

struct tm__sftp_rfile;

/* Opens the file at path for reading; *st (may be NULL) gets its
 * attributes through the handle (fstat). */
int tm__sftp_open_read(struct tm__sftp_pool *p, const char *path,
                       struct tm__sftp_rfile **out, struct tm__sftp_attr *st,
                       struct tm__sftp_err *e);
/* Reads up to len bytes at the current position: the count, 0 at the end,
 * or an error. Keeps read_ahead READ requests in flight. */
int64_t tm__sftp_read(struct tm__sftp_rfile *f, void *buf, size_t len,
                      struct tm__sftp_err *e);
/* The attributes of the open file now (to detect a change during a copy). */
int tm__sftp_fstat(struct tm__sftp_rfile *f, struct tm__sftp_attr *st,
                   struct tm__sftp_err *e);
/* Closes the handle and frees f (NULL is fine). */
void tm__sftp_close_read(struct tm__sftp_rfile *f);

/* ---- writing: a temporary beside the real name, renamed at commit ---- */

struct tm__sftp_wfile;

/* Starts writing the file path: creates a temporary in the same folder
 * under the first of tmp_names (n_names final components; the caller makes
 * them unpredictable) that is free, with CREAT|EXCL and mode 0600: what is
 * at a name (a file, a link, a FIFO, a folder) is never opened, truncated,
 * removed or followed, and the next name is tried; TM_EEXIST when every
 * name is taken. Nothing appears under path before commit. */
int tm__sftp_open_write(struct tm__sftp_pool *p, const char *path,
                        const char *const *tmp_names, int n_names,
                        struct tm__sftp_wfile **out, struct tm__sftp_err *e);
/* The temporary's path (owned by f). */
const char *tm__sftp_wfile_tmp(const struct tm__sftp_wfile *f);
/* Appends len bytes: len, or an error (then only abort remains). Keeps
 * write_behind WRITE requests in flight; an error may belong to an earlier
 * call's bytes. A FAILURE status on a write is TM_ENOSPC (class fatal) when
 * statvfs@openssh.com says the file system has less than a request's worth
 * free; otherwise TM_EIO. */
int64_t tm__sftp_write(struct tm__sftp_wfile *f, const void *buf, size_t len,
                       struct tm__sftp_err *e);
/* As tm__sftp_write, the bytes read from fd at its position (a local
 * file; the openssh transport only: sendfile into ssh's socket, the data
 * never copied through this process). Returns len; fewer bytes when fd
 * ended before len (f is then only to be aborted); an error, with
 * *fd_err 1 when it is fd's own failure (f is then only to be aborted). */
int64_t tm__sftp_write_fd(struct tm__sftp_wfile *f, int fd, size_t len, int *fd_err,
                          struct tm__sftp_err *e);
/* Sets mode (permission bits) and mtime (seconds, atime too) on the
 * handle, fsyncs it when fsync is set and the server can
 * (fsync@openssh.com) and closes it, all sent behind the writes in flight
 * (one round trip), then, once every one of them succeeded, renames the
 * temporary to the real name (flags: TM_SFTP_REPLACE, as tm__sftp_rename).
 * Frees f, also on failure, when the temporary is removed. */
int tm__sftp_commit(struct tm__sftp_wfile *f, uint32_t mode, int64_t mtime,
                    int fsync, unsigned flags, struct tm__sftp_err *e);
/* Closes and removes the temporary, frees f (NULL is fine). */
void tm__sftp_abort(struct tm__sftp_wfile *f);
#endif
