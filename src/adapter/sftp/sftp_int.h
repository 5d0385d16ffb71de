/*
 * sftp_int.h - what client.c, knownhosts.c and auth.c share: the pool and
 * the error helper. Private to src/adapter/sftp/.
 *
 * Lock order: pool->mu, then nothing; pool->auth_mu (held while a
 * passphrase is read or cached), then nothing; pool->mux_mu, then the
 * forker's mu (openssh.c), then nothing. None is held across a network
 * call but auth_mu around a terminal prompt (a master's login runs
 * without mux_mu; those who wait for it wait on mux_cv).
 */
#ifndef TM_SFTP_INT_H
#define TM_SFTP_INT_H

#include "adapter/sftp/sftp.h"

#include <libssh2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

struct tm__sftp_sess;
struct tm__sftp_master;
struct tm__sftp_forker;

struct tm__sftp_pool {
    pthread_mutex_t mu;           /* guards the fields marked (mu) */
    pthread_cond_t cv;            /* a session was given back (mu) */
    struct tm__sftp_sess *idle;   /* sessions not in use (mu) */
    char **orphans;               /* temporaries of writes whose session
                                     died that could not be removed yet:
                                     tried again at the pool's free (mu) */
    size_t n_orphans;             /* entries in orphans (mu) */
    int n_open;                   /* sessions open or opening (mu) */
    int connecting;               /* sessions opening (mu) */
    int max;                      /* the most sessions at once */
    int fails;                    /* connects failed in a row (mu) */
    int64_t next_connect_ns;      /* no connect before this (mu) */
    int last_connect_err;         /* the code of the last failure (mu) */
    char last_connect_msg[256];   /* its message (mu) */
    uint64_t connects;            /* sessions opened so far (mu) */
    atomic_ullong sends;          /* channel writes of queued requests so
                                     far (any thread, relaxed) */
    int verified;                 /* a session has verified the host key:
                                     accept-new no longer applies (mu) */

    char *alias;                  /* the URL's host, as given */
    char *host;                   /* where to connect (HostName or alias) */
    int port;                     /* the port */
    char *user;                   /* the remote user */
    char *root;                   /* the URL's path */
    char *hostkey_name;           /* the name known_hosts lists (HostKeyAlias
                                     or host), without [ ]:port */
    char **known_hosts;           /* files to read; [0] is the one written */
    size_t n_known_hosts;         /* entries in known_hosts */
    int accept_new;               /* record an unknown key (first session) */
    char **ids;                   /* identity files, expanded */
    size_t n_ids;                 /* entries in ids */
    int ids_explicit;             /* ids came from the options or config:
                                     a missing one is an error */
    int use_agent;                /* try the agent first */
    int identities_only;          /* agent keys only if they match ids */
    char *password_env;           /* the variable holding a password, or NULL */
    int timeout_ms;               /* libssh2 blocking timeout */
    int read_ahead;               /* READs in flight per file */
    int write_behind;             /* WRITEs in flight per file */
    int inflight_given;           /* the options set read_ahead or
                                     write_behind (else openssh: 2 MiB) */
    int chunk_given;              /* the options set the request size
                                     (else openssh writes 255 KiB) */
    uint32_t want_r, want_w;      /* bytes per READ / WRITE asked for */
    int stripe_streams;           /* sessions a large file is read
                                     through at once (1: one) */
    uint64_t stripe_min;          /* files at least this large are */
    int64_t stripe_rtt_ns;        /* ... when a round trip took at least
                                     this long (-1: whatever it took) */
    int64_t rtt_min_ns;           /* the shortest OPEN round trip seen
                                     (mu; INT64_MAX: none yet) */
    uint64_t striped;             /* files read in stripes so far (mu) */
    uint64_t stripe_extra;        /* extra streams that read a part (mu) */
    int stripe_running;           /* extra streams running now (mu) */
    int stripe_files;             /* files being read in stripes now (mu) */

    unsigned ext;                 /* TM_SFTP_EXT_*, from the first session */
    uint32_t chunk_r, chunk_w;    /* bytes per READ / WRITE after limits */
    char auth_used[300];          /* how the first session logged in */
    char *ciphers;                /* cipher preference list (libssh2's
                                     method_pref), never NULL */
    char *macs;                   /* MAC preference list, never NULL */
    char cipher_used[64];         /* what the first session negotiated */
    char mac_used[64];            /* its MAC */

    int transport;                /* TM_SFTP_TRANSPORT_* */
    int transport_auto;           /* openssh chosen by default: libssh2
                                     when a key needs a prompt or there
                                     is no ssh to run */
    int no_ssh;                   /* the ssh program was not found */
    char *ssh_config;             /* the ssh-config option, or NULL */
    int ciphers_given, macs_given; /* the options set them (openssh: passed
                                     on; else ssh's own defaults) */
    int config_ciphers;           /* the ssh config sets Ciphers */
    char *user_config;            /* ~/.ssh/config ($HOME's) when it exists
                                     and ssh_config is NULL */
    char *askpass_dir;            /* openssh: the askpass script's private
                                     folder, or NULL */
    char *askpass;                /* the script (no secret in it), or NULL */
    pthread_mutex_t mux_mu;       /* guards the fields marked (mux) */
    pthread_cond_t mux_cv;        /* a master's login ended (mux) */
    struct tm__sftp_master *masters; /* openssh: the ssh masters whose
                                     connection sessions share (mux) */
    char *mux_dir;                /* their control sockets' private folder,
                                     or NULL (mux) */
    unsigned mux_seq;             /* the next master's number (mux) */
    uint64_t masters_started;     /* masters started so far (mux) */
    int masters_starting;         /* masters logging in (mux) */
    struct tm__sftp_forker *forker; /* the thread that forks them, or NULL
                                     (mux; openssh.c) */

    pthread_mutex_t auth_mu;      /* guards passphrases */
    char **passphrases;           /* per ids[i]: the passphrase that opened
                                     it, or NULL (auth_mu); zeroed at free */
};

/* Fills e (when given) and returns code. */
int tm__sftp_fail(struct tm__sftp_err *e, int code, int cls, int fx,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Checks the session's host key against the pool's known_hosts files
 * (knownhosts.c). accept_new: record an unknown key in known_hosts[0]. */
int tm__sftp_hostkey_check(struct tm__sftp_pool *p, LIBSSH2_SESSION *ssh,
                           int accept_new, struct tm__sftp_err *e);
/* The SHA256 fingerprint of the session's host key as OpenSSH prints it
 * ("SHA256:base64-without-padding") and the key type ("ED25519"). */
int tm__sftp_fingerprint(LIBSSH2_SESSION *ssh, char *out, size_t len,
                         const char **type);

/* Logs in: agent, identity files, password when asked (auth.c). *how
 * gets a description of what worked (no secret in it). */
int tm__sftp_authenticate(struct tm__sftp_pool *p, LIBSSH2_SESSION *ssh,
                          char *how, size_t howlen, struct tm__sftp_err *e);
/* 1 when the private key file at path is encrypted, 0 when not, -1 when
 * it cannot be told (auth.c). */
int tm__sftp_key_encrypted(const char *path);
/* The fingerprint and type of the server's host key, as
 * tm__sftp_fingerprint, from a handshake of libssh2's own; "" when it
 * fails (client.c; the openssh transport's refusal of an unknown host). */
void tm__sftp_probe_hostkey(struct tm__sftp_pool *p, char *fp, size_t len,
                            const char **type);
/* Frees the cached passphrases, overwriting them first. */
void tm__sftp_auth_release(struct tm__sftp_pool *p);

/* ---- the openssh transport (openssh.c) ---- */

/* An ssh child carrying one session's SFTP packets. */
struct tm__sftp_proc {
    pid_t pid;          /* the child, -1 once reaped */
    int fd;             /* our end of its stdin/stdout socketpair */
    int err;            /* its stderr, or -1 */
    int status;         /* its wait status once reaped */
    char errbuf[1024];  /* the last bytes of its stderr, NUL-terminated */
    size_t errlen;      /* bytes in errbuf */
};

/* An ssh master (`ssh -M -S <mux_dir>/<n> -N host`): one connection, one
 * key exchange and login, whose channels carry sessions' SFTP (their ssh
 * is a mux client of it). */
struct tm__sftp_master {
    struct tm__sftp_master *next; /* the pool's list (mux) */
    struct tm__sftp_proc pr;      /* the master ssh (pr.fd is -1) */
    char *path;                   /* its control socket */
    int users;                    /* sessions on it, open or opening (mux) */
    int cap;                      /* the most it carries (mux): lowered when
                                     the server refuses a channel */
    int dead;                     /* it exited (mux) */
    int starting;                 /* its login is under way (mux): its
                                     ssh is its starter's to reap */
    struct tm__sftp_err start_err; /* why its login failed, for the
                                     sessions that waited for it (mux) */
};

/* Writes the pool's askpass script (when a password or passphrase may be
 * asked) into a new private folder; removed by tm__sftp_askpass_remove. */
int tm__sftp_askpass_make(struct tm__sftp_pool *p, struct tm__sftp_err *e);
void tm__sftp_askpass_remove(struct tm__sftp_pool *p);
/* A master with room for one more session (started when none has, which
 * checks the host key and logs in: its failures are reported as a
 * session's were); *out is counted as a user until tm__sftp_master_put.
 * accept_new: accept-new instead of strict host key checking. */
int tm__sftp_master_get(struct tm__sftp_pool *p, int accept_new,
                        struct tm__sftp_master **out, struct tm__sftp_err *e);
/* A session on m has ended. refused: the server refused its channel (its
 * MaxSessions): m takes no more than it carries now. broken: the session
 * failed: m is given a moment to show it exited (its connection lost),
 * so that no new session opens on it. Returns 1 when m has exited. */
int tm__sftp_master_put(struct tm__sftp_pool *p, struct tm__sftp_master *m, int refused,
                        int broken);
/* Ends the masters, removes their sockets and folder (pool free). */
void tm__sftp_masters_close(struct tm__sftp_pool *p);
/* 1 when what a session's ssh said is the master's (the server's)
 * refusal of its channel. */
int tm__sftp_proc_refused(const struct tm__sftp_proc *pr);
/* Starts `ssh -S <m's socket> ... -s host sftp` for the pool: a session
 * on master m. accept_new as tm__sftp_master_get's. */
int tm__sftp_proc_start(struct tm__sftp_pool *p, int accept_new, struct tm__sftp_master *m,
                        struct tm__sftp_proc *pr, struct tm__sftp_err *e);
/* Sends n1 bytes at p1, then n2 at p2 (none when n2 is 0), in one
 * sendmsg where the socket takes them (waiting at most timeout_ms at a
 * time); while the socket is full, reads replies into rx (rx_space bytes;
 * *rx_got gets how many). Returns n1 + n2 or a negative TM_* code. */
ssize_t tm__sftp_proc_sendv(struct tm__sftp_proc *pr, const void *p1, size_t n1,
                            const void *p2, size_t n2, unsigned char *rx, size_t rx_space,
                            size_t *rx_got, int timeout_ms);
/* Sends n bytes read from fd at its position, by sendfile (from the page
 * cache to the socket, not through this process's memory; read and
 * send where fd's file system refuses sendfile), reading replies into rx
 * meanwhile as tm__sftp_proc_sendv. When fd ends
 * (TM_ECHANGED) or fails before n bytes, *fd_err gets that code and zeros
 * make up the rest (the packet stays whole). Returns the bytes taken from
 * fd, or a negative TM_* code of the socket's. */
ssize_t tm__sftp_proc_sendfile(struct tm__sftp_proc *pr, int fd, size_t n, int *fd_err,
                               unsigned char *rx, size_t rx_space, size_t *rx_got,
                               int timeout_ms);
/* Reads what has arrived (at least a byte, or 0 at EOF), or a TM_* code. */
ssize_t tm__sftp_proc_recv(struct tm__sftp_proc *pr, void *p, size_t n, int timeout_ms);
/* Closes our end and reaps the child (SIGTERM if it lingers; at once when
 * broken). */
void tm__sftp_proc_stop(struct tm__sftp_proc *pr, int broken);
/* After a failed send or an EOF: reaps ssh and fills e from what it said
 * (host key, login, refused port...). Returns the code. */
int tm__sftp_proc_fail(struct tm__sftp_pool *p, struct tm__sftp_proc *pr, int code,
                       struct tm__sftp_err *e, const char *op, const char *path);

#endif
