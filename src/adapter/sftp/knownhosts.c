/*
 * knownhosts.c - host-key verification as OpenSSH does it, with libssh2's
 * knownhost API: the key the server shows is looked up in each known_hosts
 * file of the pool (plain and hashed "|1|salt|hash" entries, "[host]:port"
 * for ports other than 22). A known key passes; a different key of the same
 * type is refused loudly, always; a host not listed (or not with this key
 * type) is refused with the key's SHA256 fingerprint in OpenSSH's format,
 * unless accept-new, when the key is appended to the first file (created
 * 0600 if missing) as "host keytype base64" and the session goes on.
 *
 * Runs on the thread opening a session; reads the files each time (they
 * are small, and another process may have added a key).
 */
#include "adapter/sftp/sftp_int.h"

#include "treemig.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int tm__sftp_fingerprint(LIBSSH2_SESSION *ssh, char *out, size_t len,
                         const char **type)
{
    const unsigned char *h =
        (const unsigned char *)libssh2_hostkey_hash(ssh, LIBSSH2_HOSTKEY_HASH_SHA256);
    size_t keylen, i, o = 0;
    int kt;
    char *w = out;

    libssh2_session_hostkey(ssh, &keylen, &kt);
    switch (kt) {
    case LIBSSH2_HOSTKEY_TYPE_RSA:
        *type = "RSA";
        break;
    case LIBSSH2_HOSTKEY_TYPE_DSS:
        *type = "DSA";
        break;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
        *type = "ECDSA";
        break;
    case LIBSSH2_HOSTKEY_TYPE_ED25519:
        *type = "ED25519";
        break;
    default:
        *type = "UNKNOWN";
    }
    if (!h || len < 7 + 44)
        return TM_EINVAL;
    memcpy(w, "SHA256:", 7);
    o = 7;
    /* Base64 of the 32 bytes, without the '=' padding (43 characters). */
    for (i = 0; i < 32; i += 3) {
        uint32_t v = (uint32_t)h[i] << 16;
        int n = 32 - (int)i >= 3 ? 3 : 32 - (int)i;
        if (n > 1)
            v |= (uint32_t)h[i + 1] << 8;
        if (n > 2)
            v |= h[i + 2];
        w[o++] = b64[(v >> 18) & 63];
        w[o++] = b64[(v >> 12) & 63];
        if (n > 1)
            w[o++] = b64[(v >> 6) & 63];
        if (n > 2)
            w[o++] = b64[v & 63];
    }
    w[o] = '\0';
    return 0;
}

/* The libssh2 knownhost key type of a session host key type. */
static int kh_keytype(int kt)
{
    switch (kt) {
    case LIBSSH2_HOSTKEY_TYPE_RSA:
        return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS:
        return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
        return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
        return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
        return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519:
        return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default:
        return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
    }
}

/* Appends the session's key for name to file, as OpenSSH's accept-new. */
static int record(struct tm__sftp_pool *p, LIBSSH2_SESSION *ssh,
                  LIBSSH2_KNOWNHOSTS *kh, const char *name, const char *file,
                  const char *key, size_t keylen, int ktype, struct tm__sftp_err *e)
{
    struct libssh2_knownhost *entry = NULL;
    char line[8192];
    size_t outlen = 0;
    int fd, rc;

    (void)p;
    (void)ssh;
    rc = libssh2_knownhost_addc(kh, name, NULL, key, keylen, NULL, 0,
                                LIBSSH2_KNOWNHOST_TYPE_PLAIN |
                                    LIBSSH2_KNOWNHOST_KEYENC_RAW | ktype,
                                &entry);
    if (rc == 0)
        rc = libssh2_knownhost_writeline(kh, entry, line, sizeof line, &outlen,
                                         LIBSSH2_KNOWNHOST_FILE_OPENSSH);
    if (rc)
        return tm__sftp_fail(e, TM_EIO, TM_ERR_FATAL, -1,
                             "record the host key of %s: libssh2 error %d", name, rc);
    fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = tm__from_errno(errno);
        return tm__sftp_fail(e, rc, TM_ERR_FATAL, -1, "record the host key of %s in %s: %s",
                             name, file, tm_strerror(rc));
    }
    rc = tm__write_full(fd, line, outlen);
    if (close(fd) != 0 && !rc)
        rc = tm__from_errno(errno);
    if (rc)
        return tm__sftp_fail(e, rc, TM_ERR_FATAL, -1, "record the host key of %s in %s: %s",
                             name, file, tm_strerror(rc));
    return 0;
}

/* Adds the entries of one known_hosts file to kh. Line by line: libssh2's
 * readfile stops at the first line it cannot parse, and real files hold
 * lines it does not know (@cert-authority, @revoked, sk-* keys); those
 * are skipped. A missing file lists nothing. */
static int read_known_hosts(LIBSSH2_KNOWNHOSTS *kh, const char *path,
                            struct tm__sftp_err *e)
{
    FILE *f = fopen(path, "re");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc;

    if (!f) {
        if (errno == ENOENT)
            return 0;
        rc = tm__from_errno(errno);
        return tm__sftp_fail(e, rc, TM_ERR_FATAL, -1, "read known hosts %s: %s", path,
                             tm_strerror(rc));
    }
    while ((n = getline(&line, &cap, f)) > 0) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n && line[0] != '#' && line[0] != '@')
            libssh2_knownhost_readline(kh, line, (size_t)n,
                                       LIBSSH2_KNOWNHOST_FILE_OPENSSH);
    }
    free(line);
    fclose(f);
    return 0;
}

int tm__sftp_hostkey_check(struct tm__sftp_pool *p, LIBSSH2_SESSION *ssh,
                           int accept_new, struct tm__sftp_err *e)
{
    LIBSSH2_KNOWNHOSTS *kh;
    struct libssh2_knownhost *found = NULL;
    const char *key, *type;
    char fp[64], name[600];
    size_t keylen, i;
    int kt, ktype, rc = LIBSSH2_KNOWNHOST_CHECK_NOTFOUND, ret;
    const char *where = NULL;

    key = libssh2_session_hostkey(ssh, &keylen, &kt);
    if (!key)
        return tm__sftp_fail(e, TM_EIO, TM_ERR_FATAL, -1,
                             "check host key of %s: the server sent none", p->host);
    ktype = kh_keytype(kt);
    tm__sftp_fingerprint(ssh, fp, sizeof fp, &type);
    if (p->port == 22)
        snprintf(name, sizeof name, "%s", p->hostkey_name);
    else
        snprintf(name, sizeof name, "[%s]:%d", p->hostkey_name, p->port);

    kh = libssh2_knownhost_init(ssh);
    if (!kh)
        return tm__sftp_fail(e, TM_ENOMEM, TM_ERR_FATAL, -1,
                             "check host key of %s: out of memory", name);
    for (i = 0; i < p->n_known_hosts; i++) {
        ret = read_known_hosts(kh, p->known_hosts[i], e);
        if (ret)
            goto out;
    }
    rc = libssh2_knownhost_checkp(kh, p->hostkey_name, p->port, key, keylen,
                                  LIBSSH2_KNOWNHOST_TYPE_PLAIN |
                                      LIBSSH2_KNOWNHOST_KEYENC_RAW | ktype,
                                  &found);
    switch (rc) {
    case LIBSSH2_KNOWNHOST_CHECK_MATCH:
        ret = 0;
        break;
    case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
        ret = tm__sftp_fail(
            e, TM_EHOSTKEY, TM_ERR_FATAL, -1,
            "check host key of %s: REMOTE HOST IDENTIFICATION HAS CHANGED: the "
            "server offers %s key %s, which is not the key known hosts list for "
            "it; someone may be intercepting the connection, or the server's "
            "key was replaced: check with its administrator, then remove the "
            "old entry (ssh-keygen -R '%s'%s%s); refused",
            name, type, fp, name, p->n_known_hosts ? " -f " : "",
            p->n_known_hosts ? p->known_hosts[0] : "");
        break;
    case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
        if (!accept_new) {
            ret = tm__sftp_fail(
                e, TM_EHOSTUNKNOWN, TM_ERR_FATAL, -1,
                "check host key of %s: the host is not known; its %s key "
                "fingerprint is %s; verify it, then add it (ssh-keyscan, or "
                "connect once with ssh) or use --ssh-accept-new; refused",
                name, type, fp);
            break;
        }
        where = p->n_known_hosts ? p->known_hosts[0] : NULL;
        if (!where) {
            ret = tm__sftp_fail(e, TM_EHOSTUNKNOWN, TM_ERR_FATAL, -1,
                                "check host key of %s: not known and no known hosts "
                                "file to record it in; refused", name);
            break;
        }
        ret = record(p, ssh, kh, name, where, key, keylen, ktype, e);
        break;
    default:
        ret = tm__sftp_fail(e, TM_EIO, TM_ERR_FATAL, -1,
                            "check host key of %s: the check failed", name);
    }
out:
    libssh2_knownhost_free(kh);
    return ret;
}
