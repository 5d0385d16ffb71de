/*
 * openssh.c - the "openssh" transport of a session: OpenSSH's own client,
 * `ssh -s ... -- host sftp`, run as a child whose stdin and stdout are one
 * end of a socketpair (as OpenSSH's sftp does), so that the SFTP packets
 * client.c writes are encrypted by ssh, on another core, with ssh's ciphers
 * (chacha20-poly1305, AES-GCM), its ~/.ssh/config, its agent.
 *
 * Security as the libssh2 transport's: host keys are checked against the
 * pool's known_hosts files only (UserKnownHostsFile, GlobalKnownHostsFile
 * /dev/null, StrictHostKeyChecking yes, or accept-new for the pool's first
 * session when asked, UpdateHostKeys no); identities from the options go in
 * with -i; a password (--ssh-password-env) and a key's passphrase
 * (TREEMIG_SSH_PASSPHRASE) reach ssh only through SSH_ASKPASS: a script in
 * a private folder that prints the variable ssh inherits (it holds the
 * variable's name, never the secret). The child runs in its own session
 * (setsid: no controlling terminal, so ssh can never prompt on one), with
 * BatchMode unless the askpass is needed, no forwardings. Its stderr is
 * kept (the last bytes) to explain a failure.
 *
 * Sessions share connections: a master (`ssh -M -S <socket> -N host`, the
 * same options) makes the connection, its key exchange and login; each
 * session's ssh is a mux client of it (-S, ControlMaster no), which hands
 * its stdio to the master: one channel per session, no extra copy. The
 * sockets are in a private folder of treemig's own (the user's
 * ControlPath and ControlMaster are never used); a master carries at
 * most MUX_SESSIONS, fewer once the server refuses a channel (sshd's
 * MaxSessions). A master that exits leaves its sessions broken: they
 * reconnect through a new one.
 *
 * Called by client.c on the thread that owns the session.
 */
#include "adapter/sftp/sftp_int.h"

#include "treemig.h"
#include "util/buf.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* The ssh program (PATH is searched); TREEMIG_SSH names another. */
#define SSH_PROGRAM "ssh"
/* Put first in ssh's own list (the leading ^), unless the options
 * (sftp-ciphers) or the ssh config name the ciphers: measured on the
 * bench's loopback sshd, a 256 MiB get costs ssh 0.3 s of user CPU with
 * aes128-gcm against 0.6 s with chacha20-poly1305. The key exchange stays
 * ssh's own choice (OpenSSH 9's post-quantum hybrid first), though
 * curve25519 would save 0.14 s of CPU per session on each side: traffic
 * recorded today must not be readable later. */
#define OSSH_CIPHERS "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"
/* How long a closed session's ssh may take to exit before SIGTERM. */
#define EXIT_WAIT_MS 2000
/* How long a broken session's master may take to exit (its connection
 * lost) before it is taken for alive. */
#define MASTER_EXIT_MS 50
/* Sessions per master (sshd's MaxSessions is 10 by default). Not 8: one
 * master encrypts all its channels on one core, and on the bench's 2
 * cores 8 x 64 MiB up took 6.6 s on one master against 4.1 s on two (4
 * each), for the same CPU; 2 each was slower again. */
#define MUX_SESSIONS 4
/* Masters logging in at once per pool: sshd drops unauthenticated
 * connections beyond MaxStartups (10 by default). A session on a master
 * that is up is a channel, not a connection: those are not bounded. */
#define MASTERS_AT_ONCE 4
/* The longest control socket path: sun_path (108) less the ".XXXXXXXX
 * XXXXXXXX" ssh binds first and renames. */
#define MUX_PATH_MAX 88

static int valid_var(const char *v)
{
    size_t i;
    if (!v || !*v || (v[0] >= '0' && v[0] <= '9'))
        return 0;
    for (i = 0; v[i]; i++)
        if (!(v[i] == '_' || (v[i] >= 'A' && v[i] <= 'Z') ||
              (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9')))
            return 0;
    return 1;
}

/* Makes a private (0700) folder $TMPDIR/treemig-<what>-XXXXXX (/tmp when
 * TMPDIR is not absolute, or longer than max_len allows) into *out. */
static int private_dir(const char *what, size_t max_len, char **out, struct tm__sftp_err *e)
{
    const char *tmp = getenv("TMPDIR");
    struct tm__buf b = TM__BUF_INIT;
    int rc;

    if (!tmp || *tmp != '/' || strlen(tmp) + strlen(what) + 17 > max_len)
        tmp = "/tmp";
    if (tm__buf_addf(&b, "%s/treemig-%s-XXXXXX", tmp, what)) {
        tm__buf_release(&b);
        return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "%s: out of memory", what);
    }
    if (!mkdtemp(b.buf)) {
        rc = tm__from_errno(errno);
        tm__buf_release(&b);
        return tm__sftp_fail(e, rc, TM_ERR_FATAL, -1, "make the %s folder in %s: %s", what,
                             tmp, tm_strerror(rc));
    }
    *out = tm__buf_detach(&b, NULL);
    return 0;
}

int tm__sftp_askpass_make(struct tm__sftp_pool *p, struct tm__sftp_err *e)
{
    struct tm__buf b = TM__BUF_INIT;
    int fd, rc;

    if (p->password_env && !valid_var(p->password_env))
        return tm__sftp_fail(e, TM_EINVAL, TM_ERR_FATAL, -1,
                             "--ssh-password-env %s: not a variable name",
                             p->password_env);
    rc = private_dir("askpass", 4096, &p->askpass_dir, e);
    if (rc)
        return rc;
    if (tm__buf_addf(&b, "%s/askpass", p->askpass_dir))
        goto oom;
    p->askpass = tm__buf_detach(&b, NULL);
    /* The prompt is $1: a key's passphrase, else the password. printf is
     * dash's builtin: the secret is in no process's arguments. */
    if (tm__buf_addf(&b, "#!/bin/sh\ncase \"$1\" in\n"
                         "*assphrase*) [ -n \"${TREEMIG_SSH_PASSPHRASE+x}\" ] || exit 1\n"
                         "    printf '%%s\\n' \"$TREEMIG_SSH_PASSPHRASE\" ;;\n") ||
        (p->password_env &&
         tm__buf_addf(&b, "*assword*) [ -n \"${%s+x}\" ] || exit 1\n"
                          "    printf '%%s\\n' \"$%s\" ;;\n",
                      p->password_env, p->password_env)) ||
        tm__buf_adds(&b, "*) exit 1 ;;\nesac\n"))
        goto oom;
    fd = open(p->askpass, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0700);
    if (fd < 0 || tm__write_full(fd, b.buf, b.len) != 0) {
        rc = fd < 0 ? tm__from_errno(errno) : TM_EIO;
        if (fd >= 0)
            close(fd);
        tm__buf_release(&b);
        return tm__sftp_fail(e, rc, TM_ERR_FATAL, -1, "write %s: %s", p->askpass,
                             tm_strerror(rc));
    }
    close(fd);
    tm__buf_release(&b);
    return 0;
oom:
    tm__buf_release(&b);
    return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "askpass: out of memory");
}

void tm__sftp_askpass_remove(struct tm__sftp_pool *p)
{
    if (p->askpass)
        unlink(p->askpass);
    if (p->askpass_dir)
        rmdir(p->askpass_dir);
    free(p->askpass);
    free(p->askpass_dir);
    p->askpass = p->askpass_dir = NULL;
}

/* ssh's argument vector as it is built. */
struct args {
    char *v[96];   /* the arguments, NULL-terminated at the end */
    int n;         /* arguments in v */
    char *own[96]; /* the strings made for them (freed after the spawn) */
    int nown;      /* strings in own */
    int oom;       /* an allocation failed, or v is full */
};

static void arg(struct args *a, const char *s)
{
    if (a->n < 95)
        a->v[a->n++] = (char *)s;
    else
        a->oom = 1;
}

static void argf(struct args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argf(struct args *a, const char *fmt, ...)
{
    struct tm__buf b = TM__BUF_INIT;
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = tm__buf_vaddf(&b, fmt, ap);
    va_end(ap);
    if (rc || a->nown >= 96) {
        tm__buf_release(&b);
        a->oom = 1;
        return;
    }
    a->own[a->nown] = tm__buf_detach(&b, NULL);
    arg(a, a->own[a->nown++]);
}

/* A file name for a -o value, in double quotes (ssh splits values on
 * spaces); a name with a quote cannot be passed. */
static int quotable(const char *s)
{
    return !strchr(s, '"') && !strchr(s, '\n');
}

/* ssh's arguments: a session's (m: on master m) or a master's (master). */
static int build_args(struct tm__sftp_pool *p, int accept_new, const struct tm__sftp_master *m,
                      int master, struct args *a, struct tm__sftp_err *e)
{
    struct tm__buf kh = TM__BUF_INIT;
    const char *prog = getenv("TREEMIG_SSH");
    size_t i, n_ids;

    if (p->alias[0] == '-' || p->user[0] == '-')
        return tm__sftp_fail(e, TM_EBADSPEC, TM_ERR_FATAL, -1,
                             "connect %s: a host or user starting with '-' is refused",
                             p->alias);
    arg(a, prog && *prog ? prog : SSH_PROGRAM);
    arg(a, "-x"); /* no X11 */
    arg(a, "-a"); /* no agent forwarding */
    arg(a, "-T"); /* no tty */
    arg(a, "-e");
    arg(a, "none");
    /* The config file treemig read: ssh itself would take ~ from the
     * password file, not $HOME. */
    arg(a, "-F");
    arg(a, p->ssh_config ? p->ssh_config : p->user_config ? p->user_config : "none");
    argf(a, "-oBatchMode=%s", p->askpass ? "no" : "yes");
    arg(a, "-oClearAllForwardings=yes");
    if (master) { /* our socket: ControlPersist no, the master ends with us */
        arg(a, "-M");
        arg(a, "-S");
        arg(a, m->path);
        arg(a, "-oControlPersist=no");
    } else if (m) {
        arg(a, "-S");
        arg(a, m->path);
        arg(a, "-oControlMaster=no");
        /* ssh connects by itself when the master refuses the session or
         * is gone: a login per session again, unseen. Its connect fails
         * instead; the session reconnects through a (new) master. */
        arg(a, "-oProxyCommand=false");
    } else {
        arg(a, "-oControlMaster=no");
        arg(a, "-oControlPath=none");
    }
    arg(a, "-oPermitLocalCommand=no");
    arg(a, "-oRemoteCommand=none");
    arg(a, "-oLogLevel=INFO"); /* ERROR hides "Unable to negotiate" */
    arg(a, "-oKbdInteractiveAuthentication=no");
    argf(a, "-oPasswordAuthentication=%s", p->password_env ? "yes" : "no");
    arg(a, "-oNumberOfPasswordPrompts=1");
    arg(a, "-oUpdateHostKeys=no");
    arg(a, "-oHashKnownHosts=no"); /* recorded as the libssh2 transport does */
    arg(a, "-oGlobalKnownHostsFile=/dev/null");
    argf(a, "-oStrictHostKeyChecking=%s", accept_new ? "accept-new" : "yes");
    argf(a, "-oConnectTimeout=%d", (p->timeout_ms + 999) / 1000);
    for (i = 0; i < p->n_known_hosts; i++) {
        if (!quotable(p->known_hosts[i])) {
            tm__buf_release(&kh);
            return tm__sftp_fail(e, TM_EINVAL, TM_ERR_FATAL, -1,
                                 "known hosts %s: a name with '\"' cannot be given to ssh",
                                 p->known_hosts[i]);
        }
        if (tm__buf_addf(&kh, "%s\"%s\"", i ? " " : "", p->known_hosts[i]))
            a->oom = 1;
    }
    argf(a, "-oUserKnownHostsFile=%s", kh.len ? kh.buf : "none");
    tm__buf_release(&kh);
    if (p->ciphers_given)
        argf(a, "-oCiphers=%s", p->ciphers);
    else if (!p->config_ciphers) /* AES-GCM (AES-NI) before ssh's chacha20 */
        arg(a, "-oCiphers=" OSSH_CIPHERS);
    if (p->macs_given)
        argf(a, "-oMACs=%s", p->macs);
    /* The identities treemig resolved (options, config, else the default
     * names that exist): ssh then adds none of its own. */
    for (i = 0, n_ids = 0; i < p->n_ids; i++) {
        if (!p->ids_explicit && access(p->ids[i], F_OK) != 0)
            continue;
        arg(a, "-i");
        arg(a, p->ids[i]);
        n_ids++;
    }
    if (!n_ids) /* not ssh's defaults (the password file's home) either */
        arg(a, "-oIdentityFile=/dev/null");
    if (!p->use_agent)
        arg(a, "-oIdentityAgent=none");
    if (p->identities_only)
        arg(a, "-oIdentitiesOnly=yes");
    arg(a, "-p");
    argf(a, "%d", p->port);
    arg(a, "-l");
    arg(a, p->user);
    if (master)
        arg(a, "-N");
    else
        arg(a, "-s");
    arg(a, "--");
    arg(a, p->alias);
    if (!master)
        arg(a, "sftp");
    a->v[a->n] = NULL;
    if (a->oom)
        return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "start ssh: out of memory");
    return 0;
}

/* environ without SSH_ASKPASS*, DISPLAY kept; plus ours when askpass. */
static char **child_env(struct tm__sftp_pool *p, struct args *a)
{
    size_t n = 0, i, k = 0;
    char **env;
    while (environ && environ[n])
        n++;
    env = calloc(n + 3, sizeof *env);
    if (!env)
        return NULL;
    for (i = 0; i < n; i++)
        if (strncmp(environ[i], "SSH_ASKPASS", 11) != 0)
            env[k++] = environ[i];
    if (p->askpass) {
        argf(a, "SSH_ASKPASS=%s", p->askpass);
        a->v[--a->n] = NULL; /* not an argument */
        env[k++] = a->own[a->nown - 1];
        env[k++] = "SSH_ASKPASS_REQUIRE=force";
    }
    if (a->oom) {
        free(env);
        return NULL;
    }
    return env;
}

/* accept-new: the known_hosts file ssh would create gets mode 0600 (ssh
 * would make it 0644), as the libssh2 transport's. */
static int precreate(struct tm__sftp_pool *p, struct tm__sftp_err *e)
{
    int fd, rc;
    if (!p->n_known_hosts)
        return 0;
    fd = open(p->known_hosts[0], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0 || errno == EEXIST || errno == ENOENT) { /* ENOENT: ssh says */
        if (fd >= 0)
            close(fd);
        return 0;
    }
    rc = tm__from_errno(errno);
    return tm__sftp_fail(e, rc, TM_ERR_FATAL, -1, "create known hosts %s: %s",
                         p->known_hosts[0], tm_strerror(rc));
}

/* Builds ssh's arguments and environment into a and *env (see
 * build_args): 0, or an error with e filled. */
static int prepare(struct tm__sftp_pool *p, int accept_new, const struct tm__sftp_master *m,
                   int master, struct args *a, char ***env, struct tm__sftp_err *e)
{
    int rc;
    if (p->password_env && !getenv(p->password_env))
        return tm__sftp_fail(e, TM_EAUTH, TM_ERR_FATAL, -1,
                             "log in to %s@%s:%d: --ssh-password-env %s: the variable "
                             "is not set", p->user, p->host, p->port, p->password_env);
    rc = accept_new ? precreate(p, e) : 0;
    if (!rc)
        rc = build_args(p, accept_new, m, master, a, e);
    if (!rc && !(*env = child_env(p, a)))
        rc = tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "start ssh: out of memory");
    return rc;
}

/* As posix_spawnp with spawn()'s file actions and signals, for a master:
 * fork and exec, the child asking the kernel for SIGTERM when the thread
 * that forked it ends (PR_SET_PDEATHSIG). A master's stdin is /dev/null
 * and -N reads nothing, so without it a treemig killed with SIGKILL left
 * its masters logged in (the sessions' ssh end with their socketpair).
 * Runs on the pool's forker thread only (fork_master). Returns 0 or the
 * errno of fork or exec (a pipe with O_CLOEXEC carries exec's: closed
 * empty when exec succeeded). Between fork and exec the child calls only
 * async-signal-safe functions. */
static int fork_tied(char *const *argv, char **env, int io, int err, pid_t *pid)
{
    pid_t parent = getpid();
    int xp[2], x = 0, dfl[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP};
    ssize_t n;
    sigset_t none;
    size_t i;

    if (pipe2(xp, O_CLOEXEC) != 0)
        return errno;
    sigemptyset(&none);
    *pid = fork();
    if (*pid < 0) {
        x = errno;
        close(xp[0]);
        close(xp[1]);
        return x;
    }
    if (*pid == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        for (i = 0; i < sizeof dfl / sizeof dfl[0]; i++)
            sigaction(dfl[i], &sa, NULL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (setsid() < 0 || dup2(io, 0) < 0 || dup2(io, 1) < 0 || dup2(err, 2) < 0 ||
            prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
            x = errno;
        else if (getppid() != parent) /* it ended before prctl */
            _exit(127);
        else {
            /* as spawn()'s closefrom: whatever lacks O_CLOEXEC (a kernel
             * before 5.11 refuses; those descriptors then stay open) */
            (void)close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
            execvpe(argv[0], argv, env);
            x = errno;
        }
        n = write(xp[1], &x, sizeof x);
        (void)n;
        _exit(127);
    }
    close(xp[1]);
    do
        n = read(xp[0], &x, sizeof x);
    while (n < 0 && errno == EINTR);
    close(xp[0]);
    if (n == (ssize_t)sizeof x) {
        waitpid(*pid, NULL, 0);
        *pid = -1;
        return x;
    }
    return 0;
}

/* The thread that forks a pool's masters. The kernel sends the
 * parent-death signal when the thread that forked ends, not the process:
 * a master forked by a worker thread ended with it, and with it the
 * sessions other threads were using (a copy stopped by a fault lost the
 * sessions its other workers were removing their temporaries on). This
 * thread lives from the pool's first master to tm__sftp_masters_close. */
struct tm__sftp_forker {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* a request, its answer, or quit (mu) */
    int quit;                  /* end the thread (mu) */
    int asked, answered;       /* the request's state (mu) */
    char *const *argv;         /* the request: fork_tied's arguments (mu) */
    char **env;
    int io, err;
    pid_t pid;                 /* the answer: the master, or -1 (mu) */
    int rc;                    /* and fork_tied's result (mu) */
};

static void *forker_main(void *arg)
{
    struct tm__sftp_forker *f = arg;
    sigset_t all;
    /* no signal is handled here: the process's handlers run elsewhere */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->quit && !f->asked)
            pthread_cond_wait(&f->cv, &f->mu);
        if (!f->asked)
            break;
        f->rc = fork_tied(f->argv, f->env, f->io, f->err, &f->pid);
        f->asked = 0;
        f->answered = 1;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* fork_tied on the pool's forker thread, started at the first master
 * (p->mux_mu held: one request at a time). 0 or an errno. */
static int fork_master(struct tm__sftp_pool *p, char *const *argv, char **env, int io,
                       int err, pid_t *pid)
{
    struct tm__sftp_forker *f = p->forker;
    int rc;
    if (!f) {
        if (!(f = calloc(1, sizeof *f)))
            return ENOMEM;
        pthread_mutex_init(&f->mu, NULL);
        pthread_cond_init(&f->cv, NULL);
        rc = pthread_create(&f->th, NULL, forker_main, f);
        if (rc) {
            pthread_cond_destroy(&f->cv);
            pthread_mutex_destroy(&f->mu);
            free(f);
            return rc;
        }
        p->forker = f;
    }
    pthread_mutex_lock(&f->mu);
    f->argv = argv;
    f->env = env;
    f->io = io;
    f->err = err;
    f->answered = 0;
    f->asked = 1;
    pthread_cond_broadcast(&f->cv);
    while (!f->answered)
        pthread_cond_wait(&f->cv, &f->mu);
    *pid = f->pid;
    rc = f->rc;
    pthread_mutex_unlock(&f->mu);
    return rc;
}

/* Ends the forker thread (its masters were ended first). */
static void forker_stop(struct tm__sftp_pool *p)
{
    struct tm__sftp_forker *f = p->forker;
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->quit = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->th, NULL);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    p->forker = NULL;
}

/* Runs ssh (a, env) in a session of its own with io as its stdin and
 * stdout, and the write end of a new pipe as its stderr: pr gets the pid
 * and the read end (non-blocking); tied: ended by the kernel with the
 * process (fork_master: a master). 0, or an error with e
 * filled. */
static int spawn(struct tm__sftp_pool *p, struct args *a, char **env, int io, int tied,
                 struct tm__sftp_proc *pr, struct tm__sftp_err *e)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;
    int ep[2], i, rc;

    if (pipe2(ep, O_CLOEXEC) != 0) {
        rc = tm__from_errno(errno);
        return tm__sftp_fail(e, rc, TM_ERR_RETRY, -1, "start ssh: %s", tm_strerror(rc));
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, io, 0);
    posix_spawn_file_actions_adddup2(&fa, io, 1);
    posix_spawn_file_actions_adddup2(&fa, ep[1], 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    posix_spawn_file_actions_addclosefrom_np(&fa, 3); /* whatever lacks O_CLOEXEC */
#endif
    posix_spawnattr_init(&at);
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGHUP);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    i = tied ? fork_master(p, a->v, env, io, ep[1], &pr->pid)
             : posix_spawnp(&pr->pid, a->v[0], &fa, &at, a->v, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(ep[1]);
    if (i != 0) {
        close(ep[0]);
        pr->pid = -1;
        if (i == ENOENT)
            p->no_ssh = 1;
        return tm__sftp_fail(e, TM_ENOTSUP, TM_ERR_FATAL, -1,
                             "start %s (sftp-transport=openssh): %s", a->v[0],
                             tm_strerror(tm__from_errno(i)));
    }
    pr->err = ep[0];
    fcntl(pr->err, F_SETFL, fcntl(pr->err, F_GETFL) | O_NONBLOCK);
    return 0;
}

static void args_release(struct args *a, char **env)
{
    int i;
    for (i = 0; i < a->nown; i++)
        free(a->own[i]);
    free(env);
}

int tm__sftp_proc_start(struct tm__sftp_pool *p, int accept_new, struct tm__sftp_master *m,
                        struct tm__sftp_proc *pr, struct tm__sftp_err *e)
{
    struct args a;
    char **env = NULL;
    int sv[2] = {-1, -1}, rc, i;

    memset(&a, 0, sizeof a);
    memset(pr, 0, sizeof *pr);
    pr->fd = pr->err = -1;
    pr->pid = -1;
    rc = prepare(p, accept_new, m, 0, &a, &env, e);
    if (rc)
        goto out;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        rc = tm__from_errno(errno);
        rc = tm__sftp_fail(e, rc, TM_ERR_RETRY, -1, "start ssh: %s", tm_strerror(rc));
        goto out;
    }
    {
        /* Both ends (the kernel caps it at net.core.wmem_max): a unix
         * socket's sender's buffer bounds what is in flight. ssh's end
         * matters for reads: what it cannot write at once piles up in its
         * channel buffer, which it grows and shrinks (allocates, copies,
         * zeroes): with 208 KiB (the default) most of ssh's CPU in a
         * download was that, not decryption. */
        int sz = 4 << 20, k;
        for (k = 0; k < 2; k++) {
            setsockopt(sv[k], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
            setsockopt(sv[k], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        }
    }
    rc = spawn(p, &a, env, sv[1], 0, pr, e);
    if (rc)
        goto out;
    pr->fd = sv[0];
    sv[0] = -1;
    fcntl(pr->fd, F_SETFL, fcntl(pr->fd, F_GETFL) | O_NONBLOCK);
out:
    for (i = 0; i < 2; i++)
        if (sv[i] >= 0)
            close(sv[i]);
    args_release(&a, env);
    return rc;
}

/* Reads what ssh wrote on stderr; keeps the last bytes. 0 at its EOF. */
static int drain_err(struct tm__sftp_proc *pr)
{
    char buf[1024];
    for (;;) {
        ssize_t r = read(pr->err, buf, sizeof buf);
        size_t n, keep = sizeof pr->errbuf - 1;
        if (r == 0)
            return 0;
        if (r < 0)
            return errno == EINTR ? 1 : errno == EAGAIN ? 1 : 0;
        n = (size_t)r;
        if (n >= keep) {
            memcpy(pr->errbuf, buf + n - keep, keep);
            pr->errlen = keep;
        } else {
            if (pr->errlen + n > keep) {
                size_t drop = pr->errlen + n - keep;
                memmove(pr->errbuf, pr->errbuf + drop, pr->errlen - drop);
                pr->errlen -= drop;
            }
            memcpy(pr->errbuf + pr->errlen, buf, n);
            pr->errlen += n;
        }
        pr->errbuf[pr->errlen] = '\0';
    }
}

/* Waits for fd to be ready for ev (POLLIN / POLLOUT), draining stderr
 * meanwhile; *rx_ready gets 1 when fd is readable too. 0, or TM_ETIMEDOUT. */
static int wait_fd(struct tm__sftp_proc *pr, short ev, int timeout_ms, int *rx_ready)
{
    int64_t end = tm__now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        struct pollfd f[2] = {{pr->fd, ev, 0}, {pr->err, POLLIN, 0}};
        int64_t left = (end - tm__now_ns()) / 1000000;
        int n;
        if (left < 0)
            return TM_ETIMEDOUT;
        n = poll(f, pr->err >= 0 ? 2 : 1, (int)(left > 0 ? left : 1));
        if (n < 0 && errno != EINTR)
            return tm__from_errno(errno);
        if (n <= 0)
            continue;
        if (pr->err >= 0 && f[1].revents) {
            if (!drain_err(pr)) {
                close(pr->err);
                pr->err = -1;
            }
        }
        if (f[0].revents) {
            if (rx_ready)
                *rx_ready = !!(f[0].revents & (POLLIN | POLLHUP | POLLERR));
            return 0;
        }
    }
}

/* A send to ssh's socket took nothing (w <= 0, errno its): interrupted,
 * nothing to do; full, waits for room, taking in replies meanwhile (ssh
 * stops reading when its output is not read), as far as rx has room;
 * else the error. 0 to send again, or an error. */
static int wait_room(struct tm__sftp_proc *pr, ssize_t w, unsigned char *rx, size_t rx_space,
                     size_t *rx_got, int timeout_ms)
{
    int readable = 0, rc;
    if (w < 0 && errno == EINTR)
        return 0;
    if (w < 0 && errno != EAGAIN)
        return tm__from_errno(errno);
    rc = wait_fd(pr, (short)(POLLOUT | (*rx_got < rx_space ? POLLIN : 0)), timeout_ms,
                 &readable);
    if (rc)
        return rc;
    if (readable && *rx_got < rx_space) {
        ssize_t r = recv(pr->fd, rx + *rx_got, rx_space - *rx_got, 0);
        if (r > 0)
            *rx_got += (size_t)r;
        else if (r == 0)
            return TM_ECONNRESET;
    }
    return 0;
}

ssize_t tm__sftp_proc_sendv(struct tm__sftp_proc *pr, const void *p1, size_t n1,
                            const void *p2, size_t n2, unsigned char *rx, size_t rx_space,
                            size_t *rx_got, int timeout_ms)
{
    size_t done = 0, n = n1 + n2;
    *rx_got = 0;
    while (done < n) {
        /* what is left of p1, then of p2: one sendmsg for both */
        struct iovec iov[2];
        struct msghdr m;
        ssize_t w;
        int rc, k = 0;
        if (done < n1) {
            iov[k].iov_base = (char *)p1 + done;
            iov[k++].iov_len = n1 - done;
        }
        if (n2) {
            size_t o = done > n1 ? done - n1 : 0;
            iov[k].iov_base = (char *)p2 + o;
            iov[k++].iov_len = n2 - o;
        }
        memset(&m, 0, sizeof m);
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)k;
        w = sendmsg(pr->fd, &m, MSG_NOSIGNAL);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        rc = wait_room(pr, w, rx, rx_space, rx_got, timeout_ms);
        if (rc)
            return rc;
    }
    return (ssize_t)done;
}

static ssize_t send_file(struct tm__sftp_proc *pr, int fd, size_t n, int *fd_err,
                         unsigned char *rx, size_t rx_space, size_t *rx_got, int timeout_ms)
{
    static const unsigned char zeros[4096];
    unsigned char chunk[16384];     /* read(), where fd refuses sendfile */
    size_t done = 0, taken = 0, have = 0, off = 0;
    int how = 0;                    /* 0 sendfile, 1 read and send, 2 zeros */
    *fd_err = 0;
    *rx_got = 0;
    while (done < n) {
        ssize_t w;
        int rc;
        if (how == 0) {
            w = sendfile(pr->fd, fd, NULL, n - done);
            if (w < 0 && (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
                how = 1; /* a file system without splice: read it */
                continue;
            }
            if (w == 0 || (w < 0 && errno != EAGAIN && errno != EINTR &&
                           errno != EPIPE && errno != ECONNRESET && errno != ENOTCONN)) {
                /* fd ended or failed: zeros keep the packet whole */
                *fd_err = w == 0 ? TM_ECHANGED : tm__from_errno(errno);
                how = 2;
                continue;
            }
            if (w > 0)
                taken += (size_t)w;
        } else if (how == 1) {
            if (off == have) {
                ssize_t r = read(fd, chunk, n - done < sizeof chunk ? n - done : sizeof chunk);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r <= 0) {
                    *fd_err = r == 0 ? TM_ECHANGED : tm__from_errno(errno);
                    how = 2;
                    continue;
                }
                have = (size_t)r;
                off = 0;
                taken += have;
            }
            w = send(pr->fd, chunk + off, have - off, MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
        } else {
            /* MSG_NOSIGNAL: no SIGPIPE when ssh is gone */
            size_t k = n - done < sizeof zeros ? n - done : sizeof zeros;
            w = send(pr->fd, zeros, k, MSG_NOSIGNAL);
        }
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        rc = wait_room(pr, w, rx, rx_space, rx_got, timeout_ms);
        if (rc)
            return rc;
    }
    return (ssize_t)taken;
}

/* send_file with SIGPIPE blocked in this thread: sendfile has no
 * MSG_NOSIGNAL, and ssh gone (its master killed) raised SIGPIPE, which
 * ended treemig instead of failing the write (EPIPE: the session
 * reconnects). The signal it raised is taken off again. */
ssize_t tm__sftp_proc_sendfile(struct tm__sftp_proc *pr, int fd, size_t n, int *fd_err,
                               unsigned char *rx, size_t rx_space, size_t *rx_got,
                               int timeout_ms)
{
    sigset_t pipe_set, old, pend;
    int was_pending;
    ssize_t r;

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    was_pending = sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE);
    r = send_file(pr, fd, n, fd_err, rx, rx_space, rx_got, timeout_ms);
    if (!was_pending && sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

ssize_t tm__sftp_proc_recv(struct tm__sftp_proc *pr, void *p, size_t n, int timeout_ms)
{
    for (;;) {
        ssize_t r = recv(pr->fd, p, n, 0);
        int rc;
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return tm__from_errno(errno);
        rc = wait_fd(pr, POLLIN, timeout_ms, NULL);
        if (rc)
            return rc;
    }
}

/* Waits up to ms for the child to exit: 1 when it has (reaped). */
static int reap(struct tm__sftp_proc *pr, int ms)
{
    int64_t end = tm__now_ns() + (int64_t)ms * 1000000;
    for (;;) {
        int st;
        pid_t r = waitpid(pr->pid, &st, WNOHANG);
        if (r == pr->pid || (r < 0 && errno != EINTR)) {
            pr->status = r == pr->pid ? st : -1;
            pr->pid = -1;
            return 1;
        }
        if (tm__now_ns() >= end)
            return 0;
        if (pr->err >= 0) {
            struct pollfd f = {pr->err, POLLIN, 0};
            if (poll(&f, 1, 5) > 0 && !drain_err(pr)) {
                close(pr->err);
                pr->err = -1;
            }
        } else {
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
    }
}

void tm__sftp_proc_stop(struct tm__sftp_proc *pr, int broken)
{
    if (pr->fd >= 0) {
        close(pr->fd); /* ssh sees EOF, closes the channel and exits */
        pr->fd = -1;
    }
    if (pr->pid > 0 && !reap(pr, broken ? 0 : EXIT_WAIT_MS)) {
        kill(pr->pid, SIGTERM);
        if (!reap(pr, EXIT_WAIT_MS)) {
            kill(pr->pid, SIGKILL);
            while (waitpid(pr->pid, NULL, 0) < 0 && errno == EINTR)
                ;
            pr->pid = -1;
        }
    }
    if (pr->err >= 0) {
        close(pr->err);
        pr->err = -1;
    }
}

/* The last non-empty line of what ssh said, without "\r". */
static void last_line(const struct tm__sftp_proc *pr, char *out, size_t len)
{
    const char *s = pr->errbuf, *end = s + pr->errlen, *b;
    while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    b = end;
    while (b > s && b[-1] != '\n')
        b--;
    snprintf(out, len, "%.*s", (int)(end - b), b);
}

int tm__sftp_proc_fail(struct tm__sftp_pool *p, struct tm__sftp_proc *pr, int code,
                       struct tm__sftp_err *e, const char *op, const char *path)
{
    const char *t;
    char line[300];
    int cls = TM_ERR_RETRY;

    /* ssh closed its end: its exit and last words tell why */
    if (pr->fd >= 0) {
        close(pr->fd);
        pr->fd = -1;
    }
    if (pr->pid > 0 && !reap(pr, p->timeout_ms)) {
        kill(pr->pid, SIGTERM);
        reap(pr, EXIT_WAIT_MS);
    }
    while (pr->err >= 0 && drain_err(pr) == 1) {
        struct pollfd f = {pr->err, POLLIN, 0};
        if (poll(&f, 1, 100) <= 0)
            break;
    }
    t = pr->errbuf;
    last_line(pr, line, sizeof line);
    if (strstr(t, "UNKNOWN port 65535")) /* a mux client's ProxyCommand=false */
        snprintf(line, sizeof line, "its ssh master is gone or refused the session");
    if (strstr(t, "REMOTE HOST IDENTIFICATION HAS CHANGED") ||
        strstr(t, "Host key verification failed") || strstr(t, "host key is known")) {
        int changed = strstr(t, "HAS CHANGED") != NULL;
        const char *type;
        char fp[80];
        /* ssh names no fingerprint at LogLevel INFO: a handshake of ours
         * learns it (nothing is sent past the key exchange) */
        tm__sftp_probe_hostkey(p, fp, sizeof fp, &type);
        if (changed)
            return tm__sftp_fail(e, TM_EHOSTKEY, TM_ERR_FATAL, -1,
                                 "check host key of %s: REMOTE HOST IDENTIFICATION HAS "
                                 "CHANGED: the server offers %s key %s, which is not the "
                                 "key known hosts list; refused (ssh: %s)",
                                 p->hostkey_name, type, fp[0] ? fp : "(unknown)", line);
        return tm__sftp_fail(e, TM_EHOSTUNKNOWN, TM_ERR_FATAL, -1,
                             "check host key of %s: the host is not known; its %s key "
                             "fingerprint is %s; verify it, then add it (ssh-keyscan, or "
                             "--ssh-accept-new) (ssh: %s)",
                             p->hostkey_name, type, fp[0] ? fp : "(unknown)", line);
    }
    if (strstr(t, "Permission denied (")) {
        struct tm__buf b = TM__BUF_INIT;
        const char *pass = getenv("TREEMIG_SSH_PASSPHRASE");
        size_t i;
        int rc;
        /* what ssh was given to try: agent, keys, password */
        if (p->use_agent && getenv("SSH_AUTH_SOCK") && *getenv("SSH_AUTH_SOCK"))
            tm__buf_adds(&b, "agent");
        for (i = 0; i < p->n_ids; i++) {
            int enc;
            if (!p->ids_explicit && access(p->ids[i], F_OK) != 0)
                continue;
            enc = tm__sftp_key_encrypted(p->ids[i]);
            tm__buf_addf(&b, "%s%s (%s)", b.len ? ", " : "", p->ids[i],
                         enc == 1 && !pass ? "encrypted, and no TREEMIG_SSH_PASSPHRASE"
                         : enc == 1        ? "rejected, or a wrong passphrase"
                                           : "rejected by the server");
        }
        if (p->password_env)
            tm__buf_addf(&b, "%spassword from $%s", b.len ? ", " : "", p->password_env);
        rc = tm__sftp_fail(e, TM_EAUTH, TM_ERR_FATAL, -1,
                           "log in to %s@%s:%d: authentication failed; tried %s (ssh: %s)",
                           p->user, p->host, p->port, b.len ? b.buf : "nothing", line);
        tm__buf_release(&b);
        return rc;
    }
    if (strstr(t, "subsystem request failed"))
        return tm__sftp_fail(e, TM_ENOTSUP, TM_ERR_FATAL, -1,
                             "start sftp on %s:%d: the server refused the sftp subsystem "
                             "(ssh: %s)", p->host, p->port, line);
    /* the connect's failures are worded as the libssh2 transport's */
    if (strstr(t, "Could not resolve hostname"))
        return tm__sftp_fail(e, TM_EHOSTUNREACH, TM_ERR_RETRY, -1,
                             "connect %s:%d: cannot resolve the name (ssh: %s)", p->host,
                             p->port, line);
    if (strstr(t, "Connection refused"))
        code = TM_ECONNREFUSED;
    else if (strstr(t, "timed out"))
        code = TM_ETIMEDOUT;
    else if (strstr(t, "No route to host") || strstr(t, "Network is unreachable"))
        code = TM_EHOSTUNREACH;
    if (code != TM_ECONNRESET && strstr(t, "connect to host"))
        return tm__sftp_fail(e, code, TM_ERR_RETRY, -1, "connect %s:%d: %s (ssh: %s)",
                             p->host, p->port, tm_strerror(code), line);
    if (strstr(t, "no matching") || strstr(t, "Bad SSH2 cipher") ||
        strstr(t, "Bad SSH2 mac") || strstr(t, "Bad SSH2 MAC") ||
        strstr(t, "Bad configuration option") || strstr(t, "command-line line"))
        cls = TM_ERR_FATAL, code = TM_EINVAL;
    if (line[0])
        return tm__sftp_fail(e, code, cls, -1, "%s %s: connection to %s:%d lost (ssh: %s)",
                             op, path, p->host, p->port, line);
    return tm__sftp_fail(e, code, cls, -1, "%s %s: connection to %s:%d lost (ssh exited)",
                         op, path, p->host, p->port);
}

/* ---- masters ---- */

/* Ends m (SIGTERM, then SIGKILL), removes its socket, frees it. */
static void master_free(struct tm__sftp_master *m)
{
    if (m->pr.pid > 0) {
        kill(m->pr.pid, SIGTERM);
        if (!reap(&m->pr, EXIT_WAIT_MS)) {
            kill(m->pr.pid, SIGKILL);
            while (waitpid(m->pr.pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
    }
    if (m->pr.err >= 0)
        close(m->pr.err);
    if (m->path)
        unlink(m->path); /* a killed ssh leaves it */
    free(m->path);
    free(m);
}

/* Waits until m's socket is there (ssh makes it after the login), m
 * exits (its failure, worded as a session's), or the timeout. */
static int master_wait(struct tm__sftp_pool *p, struct tm__sftp_master *m,
                       struct tm__sftp_err *e)
{
    int64_t end = tm__now_ns() + (int64_t)p->timeout_ms * 1000000;
    for (;;) {
        struct stat st;
        if (lstat(m->path, &st) == 0 && S_ISSOCK(st.st_mode))
            return 0;
        if (reap(&m->pr, 0))
            return tm__sftp_proc_fail(p, &m->pr, TM_ECONNRESET, e, "start sftp on", p->host);
        if (tm__now_ns() >= end) {
            kill(m->pr.pid, SIGTERM);
            return tm__sftp_proc_fail(p, &m->pr, TM_ETIMEDOUT, e, "start sftp on", p->host);
        }
        if (m->pr.err >= 0) {
            struct pollfd f = {m->pr.err, POLLIN, 0};
            if (poll(&f, 1, 10) > 0 && !drain_err(&m->pr)) {
                close(m->pr.err);
                m->pr.err = -1;
            }
        } else {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
    }
}

/* Spawns a master (p->mux_mu held): its ssh runs, its login is under way
 * (master_wait tells when it ends). */
static int master_spawn(struct tm__sftp_pool *p, int accept_new, struct tm__sftp_master **out,
                        struct tm__sftp_err *e)
{
    struct tm__sftp_master *m;
    struct tm__buf b = TM__BUF_INIT;
    struct args a;
    char **env = NULL;
    int io, rc;

    if (!p->mux_dir) {
        rc = private_dir("ssh", MUX_PATH_MAX - 11, &p->mux_dir, e);
        if (rc)
            return rc;
    }
    m = calloc(1, sizeof *m);
    if (!m || tm__buf_addf(&b, "%s/%u", p->mux_dir, p->mux_seq++)) {
        free(m);
        tm__buf_release(&b);
        return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1, "start ssh: out of memory");
    }
    m->path = tm__buf_detach(&b, NULL);
    m->pr.fd = m->pr.err = -1;
    m->pr.pid = -1;
    m->cap = MUX_SESSIONS;
    unlink(m->path); /* a master of ours that was killed */
    memset(&a, 0, sizeof a);
    rc = prepare(p, accept_new, m, 1, &a, &env, e);
    if (!rc) {
        io = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (io < 0) {
            rc = tm__from_errno(errno);
            rc = tm__sftp_fail(e, rc, TM_ERR_RETRY, -1, "open /dev/null: %s", tm_strerror(rc));
        } else {
            rc = spawn(p, &a, env, io, 1, &m->pr, e);
            close(io);
        }
    }
    args_release(&a, env);
    if (rc) {
        master_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* Drops the masters that exited and nobody uses (p->mux_mu held). One
 * that is starting is its starter's alone (its ssh is reaped there). */
static void masters_prune(struct tm__sftp_pool *p)
{
    struct tm__sftp_master *m, **pp;
    for (pp = &p->masters; (m = *pp);) {
        if (m->starting) {
            pp = &m->next;
            continue;
        }
        if (m->pr.err >= 0 && !drain_err(&m->pr)) {
            close(m->pr.err);
            m->pr.err = -1;
        }
        if (!m->dead && (m->pr.pid <= 0 || reap(&m->pr, 0))) {
            m->dead = 1; /* its sessions break and reconnect */
            unlink(m->path);
        }
        if (m->dead && !m->users) {
            *pp = m->next;
            master_free(m);
            continue;
        }
        pp = &m->next;
    }
}

/* Masters start side by side: the lock is not held through a login (13
 * round trips), so the sessions of a copy's first seconds do not wait
 * for the masters before theirs. A session that finds a master starting
 * with room takes its place there and waits for that login: its outcome
 * is the session's. */
int tm__sftp_master_get(struct tm__sftp_pool *p, int accept_new,
                        struct tm__sftp_master **out, struct tm__sftp_err *e)
{
    struct tm__sftp_master *m;
    int rc = 0;

    *out = NULL;
    pthread_mutex_lock(&p->mux_mu);
    for (;;) {
        masters_prune(p);
        for (m = p->masters; m; m = m->next)
            if (!m->dead && m->users < m->cap)
                break;
        if (m || p->masters_starting < MASTERS_AT_ONCE)
            break;
        pthread_cond_wait(&p->mux_cv, &p->mux_mu);
    }
    if (m) {
        m->users++;
        while (m->starting)
            pthread_cond_wait(&p->mux_cv, &p->mux_mu);
        if (m->dead && m->start_err.code) {
            /* the login this session waited for failed: its failure */
            rc = m->start_err.code;
            if (e)
                *e = m->start_err;
            m->users--;
        }
    } else if (!(rc = master_spawn(p, accept_new, &m, e))) {
        struct tm__sftp_err e2 = { 0 };
        m->starting = 1;
        p->masters_starting++;
        m->users = 1;
        m->next = p->masters;
        p->masters = m;
        pthread_mutex_unlock(&p->mux_mu);
        rc = master_wait(p, m, &e2);
        pthread_mutex_lock(&p->mux_mu);
        m->starting = 0;
        p->masters_starting--;
        if (rc) {
            /* it is freed by the prune once its waiters have gone */
            m->dead = 1;
            m->start_err = e2;
            if (!m->start_err.code)
                m->start_err.code = rc;
            m->users--;
            unlink(m->path);
            if (e)
                *e = e2;
        } else {
            p->masters_started++;
        }
        pthread_cond_broadcast(&p->mux_cv);
    }
    if (!rc)
        *out = m;
    pthread_mutex_unlock(&p->mux_mu);
    return rc;
}

int tm__sftp_master_put(struct tm__sftp_pool *p, struct tm__sftp_master *m, int refused,
                        int broken)
{
    int dead;
    pthread_mutex_lock(&p->mux_mu);
    m->users--;
    if (refused && m->cap > m->users) /* the server's MaxSessions */
        m->cap = m->users > 0 ? m->users : 1;
    /* a lost connection: the master exits as its sessions see EOF */
    if (broken && !m->dead && (m->pr.pid <= 0 || reap(&m->pr, MASTER_EXIT_MS))) {
        m->dead = 1;
        unlink(m->path);
    }
    dead = m->dead;
    pthread_mutex_unlock(&p->mux_mu);
    return dead;
}

void tm__sftp_masters_close(struct tm__sftp_pool *p)
{
    struct tm__sftp_master *m;
    while ((m = p->masters)) {
        p->masters = m->next;
        master_free(m);
    }
    forker_stop(p);
    if (p->mux_dir)
        rmdir(p->mux_dir);
    free(p->mux_dir);
    p->mux_dir = NULL;
}

int tm__sftp_proc_refused(const struct tm__sftp_proc *pr)
{
    return strstr(pr->errbuf, "administratively prohibited") != NULL ||
           strstr(pr->errbuf, "refused by peer") != NULL;
}
