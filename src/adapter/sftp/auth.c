/*
 * auth.c - logging in as OpenSSH does: the agent first (SSH_AUTH_SOCK,
 * unless IdentityAgent none), then each identity file (the options', else
 * the config's IdentityFile lines, else ~/.ssh/id_ed25519, id_ecdsa and
 * id_rsa where they exist), then, only when asked, a password read from a
 * named environment variable. An encrypted key is opened with
 * TREEMIG_SSH_PASSPHRASE, else with a passphrase asked on the terminal
 * (/dev/tty, echo off), which is then kept in memory (zeroed at the end)
 * so that reconnects do not ask again.
 *
 * No secret is ever written into a message: messages name the methods and
 * files tried, never a passphrase or password. Runs on the thread opening a
 * session; pool->auth_mu serializes prompts and the passphrase cache.
 */
#include "adapter/sftp/sftp_int.h"

#include "treemig.h"
#include "util/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

/* Overwrites s so that the compiler cannot drop it. */
static void wipe(char *s)
{
    volatile char *v = s;
    if (!s)
        return;
    while (*v)
        *v++ = '\0';
}

void tm__sftp_auth_release(struct tm__sftp_pool *p)
{
    size_t i;
    if (!p->passphrases)
        return;
    for (i = 0; i < p->n_ids; i++) {
        wipe(p->passphrases[i]);
        free(p->passphrases[i]);
    }
    free(p->passphrases);
    p->passphrases = NULL;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* 1 when the private key file at path is encrypted, 0 when it is not, -1
 * when it cannot be told (then libssh2 decides). Knows OpenSSH's format
 * (the cipher name after "openssh-key-v1\0") and PEM's headers. */
int tm__sftp_key_encrypted(const char *path)
{
    char buf[16384];
    unsigned char raw[64];
    size_t n, i, o = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), bits = 0;
    uint32_t acc = 0;
    ssize_t r;
    const char *p;

    if (fd < 0)
        return -1;
    r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0)
        return -1;
    n = (size_t)r;
    buf[n] = '\0';
    if (strstr(buf, "ENCRYPTED"))
        return 1; /* PEM: "Proc-Type: 4,ENCRYPTED" or PKCS#8 "ENCRYPTED PRIVATE KEY" */
    p = strstr(buf, "-----BEGIN OPENSSH PRIVATE KEY-----");
    if (!p)
        return strstr(buf, "-----BEGIN") ? 0 : -1;
    p = strchr(p, '\n');
    if (!p)
        return -1;
    for (i = (size_t)(p - buf); i < n && o < sizeof raw; i++) {
        int v = b64val((unsigned char)buf[i]);
        if (buf[i] == '-' || buf[i] == '=')
            break;
        if (v < 0)
            continue;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            raw[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* "openssh-key-v1\0" then string ciphername. */
    if (o < 15 + 4 || memcmp(raw, "openssh-key-v1", 15) != 0)
        return -1;
    {
        uint32_t len = (uint32_t)raw[15] << 24 | (uint32_t)raw[16] << 16 |
                       (uint32_t)raw[17] << 8 | raw[18];
        if (19 + len > o)
            return -1;
        return !(len == 4 && memcmp(raw + 19, "none", 4) == 0);
    }
}

/* Reads a line from the terminal without echo into out (len bytes). */
static int prompt(const char *question, char *out, size_t len)
{
    struct termios old, quiet;
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY), rc = -1;
    size_t n = 0;
    char c;

    if (fd < 0)
        return -1;
    if (tcgetattr(fd, &old) != 0)
        goto out;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    if (write(fd, question, strlen(question)) < 0 || tcsetattr(fd, TCSAFLUSH, &quiet) != 0)
        goto out;
    while (read(fd, &c, 1) == 1 && c != '\n' && c != '\r')
        if (n + 1 < len)
            out[n++] = c;
    out[n] = '\0';
    tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
        /* nothing to do: the prompt is cosmetic */
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

/* Tries the identity file ids[i]; 0 when it logged in. *why gets a word on
 * a failure ("rejected", "wrong passphrase", "no passphrase", ...). */
static int try_file(struct tm__sftp_pool *p, LIBSSH2_SESSION *ssh, size_t i,
                    const char **why)
{
    const char *path = p->ids[i];
    char asked[1024];
    const char *pass = NULL;
    int enc, rc, from_prompt = 0;

    if (access(path, R_OK) != 0) {
        *why = "cannot be read";
        return -1;
    }
    enc = tm__sftp_key_encrypted(path);
    pthread_mutex_lock(&p->auth_mu);
    if (enc == 1) {
        if (p->passphrases[i]) {
            pass = p->passphrases[i];
        } else if ((pass = getenv("TREEMIG_SSH_PASSPHRASE")) != NULL) {
            /* used as is, never copied */
        } else {
            char q[1200];
            snprintf(q, sizeof q, "Enter passphrase for key '%s': ", path);
            if (prompt(q, asked, sizeof asked) != 0) {
                pthread_mutex_unlock(&p->auth_mu);
                *why = "encrypted, and no TREEMIG_SSH_PASSPHRASE nor terminal";
                return -1;
            }
            pass = asked;
            from_prompt = 1;
        }
    }
    rc = libssh2_userauth_publickey_fromfile_ex(ssh, p->user, (unsigned)strlen(p->user),
                                                NULL, path, pass ? pass : "");
    if (rc == 0 && from_prompt)
        p->passphrases[i] = strdup(asked); /* NULL: asked again next time */
    pthread_mutex_unlock(&p->auth_mu);
    if (from_prompt)
        wipe(asked);
    if (rc == 0)
        return 0;
    if (rc == LIBSSH2_ERROR_FILE || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED)
        *why = enc == 1 ? "wrong passphrase or unreadable key" : "unreadable key";
    else
        *why = "rejected by the server";
    if (rc == LIBSSH2_ERROR_SOCKET_SEND || rc == LIBSSH2_ERROR_SOCKET_RECV ||
        rc == LIBSSH2_ERROR_SOCKET_DISCONNECT || rc == LIBSSH2_ERROR_TIMEOUT)
        return -2;
    return -1;
}

/* 1 when the agent key blob matches an identity file's .pub. */
static int agent_key_listed(struct tm__sftp_pool *p, struct libssh2_agent_publickey *id)
{
    size_t i;
    for (i = 0; i < p->n_ids; i++) {
        char pubpath[4200], line[16384];
        FILE *f;
        snprintf(pubpath, sizeof pubpath, "%s.pub", p->ids[i]);
        f = fopen(pubpath, "re");
        if (!f)
            continue;
        if (fgets(line, sizeof line, f)) {
            /* "type base64 comment": compare the decoded base64. */
            char *b = strchr(line, ' ');
            unsigned char raw[8192];
            size_t o = 0;
            uint32_t acc = 0;
            int bits = 0;
            if (b) {
                for (b++; *b && *b != ' ' && *b != '\n' && o < sizeof raw; b++) {
                    int v = b64val((unsigned char)*b);
                    if (v < 0)
                        break;
                    acc = acc << 6 | (uint32_t)v;
                    bits += 6;
                    if (bits >= 8) {
                        bits -= 8;
                        raw[o++] = (unsigned char)(acc >> bits);
                    }
                }
                if (o == id->blob_len && !memcmp(raw, id->blob, o)) {
                    fclose(f);
                    return 1;
                }
            }
        }
        fclose(f);
    }
    return 0;
}

/* The agent: 0 logged in, 1 not, -2 the connection broke. *n_keys gets
 * the keys tried. */
static int try_agent(struct tm__sftp_pool *p, LIBSSH2_SESSION *ssh, int *n_keys)
{
    LIBSSH2_AGENT *agent;
    struct libssh2_agent_publickey *id = NULL, *prev = NULL;
    int rc = 1;

    *n_keys = 0;
    if (!p->use_agent || !getenv("SSH_AUTH_SOCK") || !*getenv("SSH_AUTH_SOCK"))
        return 1;
    agent = libssh2_agent_init(ssh);
    if (!agent)
        return 1;
    if (libssh2_agent_connect(agent) != 0 || libssh2_agent_list_identities(agent) != 0)
        goto out;
    while (libssh2_agent_get_identity(agent, &id, prev) == 0) {
        int r;
        prev = id;
        if (p->identities_only && !agent_key_listed(p, id))
            continue;
        (*n_keys)++;
        r = libssh2_agent_userauth(agent, p->user, id);
        if (r == 0) {
            rc = 0;
            break;
        }
        if (r == LIBSSH2_ERROR_SOCKET_SEND || r == LIBSSH2_ERROR_SOCKET_RECV ||
            r == LIBSSH2_ERROR_SOCKET_DISCONNECT || r == LIBSSH2_ERROR_TIMEOUT) {
            rc = -2;
            break;
        }
    }
    libssh2_agent_disconnect(agent);
out:
    libssh2_agent_free(agent);
    return rc;
}

int tm__sftp_authenticate(struct tm__sftp_pool *p, LIBSSH2_SESSION *ssh,
                          char *how, size_t howlen, struct tm__sftp_err *e)
{
    struct tm__buf tried = TM__BUF_INIT;
    const char *methods;
    size_t i;
    int n_agent = 0, rc, pubkey, password;

    methods = libssh2_userauth_list(ssh, p->user, (unsigned)strlen(p->user));
    if (!methods) {
        if (libssh2_userauth_authenticated(ssh)) {
            snprintf(how, howlen, "none");
            return 0;
        }
        return tm__sftp_fail(e, TM_ECONNRESET, TM_ERR_RETRY, -1,
                             "log in to %s:%d: the connection broke", p->host, p->port);
    }
    pubkey = strstr(methods, "publickey") != NULL;
    password = strstr(methods, "password") != NULL;

    if (pubkey) {
        rc = try_agent(p, ssh, &n_agent);
        if (rc == 0) {
            snprintf(how, howlen, "agent");
            return 0;
        }
        if (rc == -2)
            goto broken;
        if (n_agent)
            tm__buf_addf(&tried, "agent (%d key%s)", n_agent, n_agent == 1 ? "" : "s");
        for (i = 0; i < p->n_ids; i++) {
            const char *why = "";
            if (!p->ids_explicit && access(p->ids[i], F_OK) != 0)
                continue; /* a default name that does not exist */
            rc = try_file(p, ssh, i, &why);
            if (rc == 0) {
                snprintf(how, howlen, "publickey %s", p->ids[i]);
                tm__buf_release(&tried);
                return 0;
            }
            if (rc == -2)
                goto broken;
            tm__buf_addf(&tried, "%s%s (%s)", tried.len ? ", " : "", p->ids[i], why);
        }
    }
    if (p->password_env) {
        const char *pw = getenv(p->password_env);
        if (!pw) {
            rc = tm__sftp_fail(e, TM_EAUTH, TM_ERR_FATAL, -1,
                               "log in to %s@%s:%d: --ssh-password-env %s: the "
                               "variable is not set",
                               p->user, p->host, p->port, p->password_env);
            tm__buf_release(&tried);
            return rc;
        }
        if (password &&
            libssh2_userauth_password_ex(ssh, p->user, (unsigned)strlen(p->user), pw,
                                         (unsigned)strlen(pw), NULL) == 0) {
            snprintf(how, howlen, "password");
            tm__buf_release(&tried);
            return 0;
        }
        tm__buf_addf(&tried, "%spassword from $%s%s", tried.len ? ", " : "",
                     p->password_env, password ? " (rejected)" : " (not offered)");
    }
    rc = tm__sftp_fail(e, TM_EAUTH, TM_ERR_FATAL, -1,
                       "log in to %s@%s:%d: authentication failed; tried %s; the "
                       "server accepts %s",
                       p->user, p->host, p->port, tried.len ? tried.buf : "nothing",
                       methods);
    tm__buf_release(&tried);
    return rc;
broken:
    tm__buf_release(&tried);
    return tm__sftp_fail(e, TM_ECONNRESET, TM_ERR_RETRY, -1,
                         "log in to %s:%d: the connection broke", p->host, p->port);
}
