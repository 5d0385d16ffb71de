/*
 * config.c - the sftp:// URL and the part of OpenSSH's ssh_config(5) that
 * the sftp adapter honours: Host blocks with patterns (*, ?, !negation,
 * several per line), "Match all", HostName, User, Port, IdentityFile,
 * UserKnownHostsFile, HostKeyAlias, IdentityAgent none, IdentitiesOnly and
 * Include (globs; relative names are taken from ~/.ssh, as ssh does for
 * the user's file). As in ssh, the first value found for a keyword wins,
 * except IdentityFile and UserKnownHostsFile, whose values accumulate.
 * Other keywords are ignored; other Match criteria never match.
 *
 * Called by the pool at open, on the opening thread; no shared state.
 */
#include "adapter/sftp/sftp.h"

#include "treemig.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <glob.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Include depth limit (ssh's is 16 too). */
#define MAX_INCLUDE_DEPTH 16

static int set_err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int set_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---- the URL ---- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new string; NUL (%00) is refused. */
static int pct_decode(const char *s, size_t n, char **out)
{
    char *r = malloc(n + 1), *w = r;
    size_t i;
    if (!r)
        return TM_ENOMEM;
    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n || hexval((unsigned char)s[i + 1]) < 0 ||
                hexval((unsigned char)s[i + 2]) < 0) {
                free(r);
                return TM_EBADSPEC;
            }
            *w = (char)(hexval((unsigned char)s[i + 1]) * 16 +
                        hexval((unsigned char)s[i + 2]));
            if (!*w) {
                free(r);
                return TM_EBADSPEC;
            }
            w++;
            i += 2;
        } else {
            *w++ = s[i];
        }
    }
    *w = '\0';
    *out = r;
    return 0;
}

void tm__sftp_url_release(struct tm__sftp_url *u)
{
    free(u->user);
    free(u->host);
    free(u->path);
    memset(u, 0, sizeof *u);
}

/* url as messages show it: with what stands before an '@' of the
 * authority replaced by "***" when a ':' is in it (a password, or the
 * start of one). Returns url or buf. */
static const char *redact(const char *url, char *buf, size_t len)
{
    const char *auth = url + 7, *at = strrchr(auth, '@');
    if (!at || !memchr(auth, ':', (size_t)(at - auth)))
        return url;
    snprintf(buf, len, "sftp://***%s", at);
    return buf;
}

int tm__sftp_url_parse(const char *url, struct tm__sftp_url *u, char *err,
                       size_t errlen)
{
    const char *p, *auth, *auth_end, *at, *host, *host_end, *port_s = NULL;
    const char *full = url;
    char shown[512];
    int rc;

    memset(u, 0, sizeof *u);
    if (strncmp(url, "sftp://", 7) != 0)
        return set_err(err, errlen, TM_EBADSPEC, "parse url: not sftp://");
    /* no message ever shows what may be a password */
    url = redact(full, shown, sizeof shown);
    auth = full + 7;
    auth_end = strchr(auth, '/');
    if (!auth_end)
        return set_err(err, errlen, TM_EBADSPEC,
                       "%s: no path (sftp://[user@]host[:port]/absolute/path)",
                       url);
    at = memchr(auth, '@', (size_t)(auth_end - auth));
    if (at && memchr(auth, ':', (size_t)(at - auth)))
        return set_err(err, errlen, TM_EBADSPEC,
                       "%s: a password in the URL is refused (it would be "
                       "recorded in the state file); give the name of a variable "
                       "that holds it with --ssh-password-env VAR, or use a key",
                       url);
    if (at) {
        if (at == auth)
            return set_err(err, errlen, TM_EBADSPEC, "%s: empty user", url);
        rc = pct_decode(auth, (size_t)(at - auth), &u->user);
        if (rc)
            goto bad;
        host = at + 1;
    } else {
        host = auth;
    }
    if (*host == '[') {
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (!host_end)
            return set_err(err, errlen, TM_EBADSPEC, "%s: no ']'", url);
        u->host = strndup(host + 1, (size_t)(host_end - host - 1));
        p = host_end + 1;
        if (p < auth_end && *p != ':')
            return set_err(err, errlen, TM_EBADSPEC, "%s: junk after ']'", url);
    } else {
        p = memchr(host, ':', (size_t)(auth_end - host));
        host_end = p ? p : auth_end;
        u->host = NULL;
        rc = pct_decode(host, (size_t)(host_end - host), &u->host);
        if (rc)
            goto bad;
        p = host_end;
    }
    if (!u->host)
        return TM_ENOMEM;
    if (!*u->host)
        return set_err(err, errlen, TM_EBADSPEC, "%s: empty host", url);
    if (p < auth_end && *p == ':') {
        long v = 0;
        port_s = p + 1;
        if (port_s == auth_end)
            return set_err(err, errlen, TM_EBADSPEC, "%s: empty port", url);
        for (p = port_s; p < auth_end; p++) {
            if (!isdigit((unsigned char)*p) || v > 65535)
                return set_err(err, errlen, TM_EBADSPEC, "%s: bad port", url);
            v = v * 10 + (*p - '0');
        }
        if (v < 1 || v > 65535)
            return set_err(err, errlen, TM_EBADSPEC, "%s: bad port", url);
        u->port = (int)v;
    }
    rc = pct_decode(auth_end, strlen(auth_end), &u->path);
    if (rc)
        goto bad;
    return 0;
bad:
    if (rc == TM_ENOMEM)
        return rc;
    return set_err(err, errlen, TM_EBADSPEC, "%s: bad %%-escape", url);
}

/* ---- ssh_config ---- */

void tm__ssh_host_release(struct tm__ssh_host *h)
{
    size_t i;
    free(h->hostname);
    free(h->user);
    free(h->host_key_alias);
    for (i = 0; i < h->n_identity_files; i++)
        free(h->identity_files[i]);
    free(h->identity_files);
    for (i = 0; i < h->n_known_hosts; i++)
        free(h->known_hosts[i]);
    free(h->known_hosts);
    memset(h, 0, sizeof *h);
}

static int push(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof **v);
    if (!nv)
        return TM_ENOMEM;
    *v = nv;
    if (!(nv[*n] = strdup(s)))
        return TM_ENOMEM;
    (*n)++;
    return 0;
}

/* Splits a line into at most max arguments in place (quotes "..." group,
 * '#' outside quotes starts a comment, "Key=value" splits at '='). */
static int split_args(char *line, char **argv, int max)
{
    int n = 0;
    char *p = line;
    while (*p) {
        char *w;
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' ||
               (n == 1 && *p == '=' && argv[0]))
            p++;
        if (!*p || *p == '#')
            break;
        if (n == max)
            return -1;
        if (*p == '"') {
            argv[n++] = ++p;
            w = strchr(p, '"');
            if (!w)
                return -1;
            *w = '\0';
            p = w + 1;
            continue;
        }
        argv[n++] = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' &&
               !(n == 1 && *p == '='))
            p++;
        if (*p)
            *p++ = '\0';
    }
    return n;
}

/* One Host line's patterns: matches when a pattern matches and no negated
 * one does. */
static int host_matches(char **pats, int n, const char *alias)
{
    int i, hit = 0;
    for (i = 0; i < n; i++) {
        const char *pat = pats[i];
        int neg = pat[0] == '!';
        if (neg)
            pat++;
        if (fnmatch(pat, alias, FNM_CASEFOLD) == 0) {
            if (neg)
                return 0;
            hit = 1;
        }
    }
    return hit;
}

struct reader {
    const char *alias;     /* the host being resolved */
    struct tm__ssh_host *h; /* what is found */
    const char *home;      /* for ~ and relative Include */
    char *err;             /* message out */
    size_t errlen;         /* its size */
};

static int read_file(struct reader *r, const char *path, int depth, int must_exist);

static int set_str(char **dst, const char *v)
{
    if (*dst)
        return 0; /* first wins */
    *dst = strdup(v);
    return *dst ? 0 : TM_ENOMEM;
}

static int do_include(struct reader *r, const char *pat, int depth)
{
    struct tm__buf b = TM__BUF_INIT;
    glob_t g;
    size_t i;
    int rc = 0, grc;

    if (pat[0] == '~' && (pat[1] == '/' || !pat[1]))
        rc = tm__buf_addf(&b, "%s%s", r->home, pat + 1);
    else if (pat[0] == '/')
        rc = tm__buf_adds(&b, pat);
    else
        rc = tm__buf_addf(&b, "%s/.ssh/%s", r->home, pat);
    if (rc)
        goto out;
    grc = glob(b.buf, 0, NULL, &g);
    if (grc == GLOB_NOMATCH)
        goto out;
    if (grc) {
        rc = grc == GLOB_NOSPACE ? TM_ENOMEM : TM_EIO;
        goto out;
    }
    for (i = 0; i < g.gl_pathc && !rc; i++)
        rc = read_file(r, g.gl_pathv[i], depth + 1, 1);
    globfree(&g);
out:
    tm__buf_release(&b);
    return rc;
}

static int apply(struct reader *r, const char *path, int lineno, char **argv,
                 int argc, int depth)
{
    const char *k = argv[0];
    struct tm__ssh_host *h = r->h;
    int i, rc = 0;

    if (argc < 2)
        return set_err(r->err, r->errlen, TM_EINVAL, "read %s:%d: %s needs a value",
                       path, lineno, k);
    if (!strcasecmp(k, "Include")) {
        for (i = 1; i < argc && !rc; i++)
            rc = do_include(r, argv[i], depth);
        return rc;
    }
    if (!strcasecmp(k, "HostName"))
        return set_str(&h->hostname, argv[1]);
    if (!strcasecmp(k, "User"))
        return set_str(&h->user, argv[1]);
    if (!strcasecmp(k, "HostKeyAlias"))
        return set_str(&h->host_key_alias, argv[1]);
    if (!strcasecmp(k, "Port")) {
        char *end;
        long v;
        if (h->port)
            return 0;
        errno = 0;
        v = strtol(argv[1], &end, 10);
        if (errno || *end || v < 1 || v > 65535)
            return set_err(r->err, r->errlen, TM_EINVAL, "read %s:%d: bad port %s",
                           path, lineno, argv[1]);
        h->port = (int)v;
        return 0;
    }
    if (!strcasecmp(k, "IdentityFile"))
        return push(&h->identity_files, &h->n_identity_files, argv[1]);
    if (!strcasecmp(k, "UserKnownHostsFile")) {
        if (h->n_known_hosts)
            return 0; /* first line wins; one line may name several files */
        for (i = 1; i < argc && !rc; i++)
            rc = push(&h->known_hosts, &h->n_known_hosts, argv[i]);
        return rc;
    }
    if (!strcasecmp(k, "IdentityAgent")) {
        if (!strcasecmp(argv[1], "none"))
            h->identity_agent_none = 1;
        return 0;
    }
    if (!strcasecmp(k, "IdentitiesOnly")) {
        if (!strcasecmp(argv[1], "yes"))
            h->identities_only = 1;
        return 0;
    }
    if (!strcasecmp(k, "Ciphers"))
        h->sets_ciphers = 1;
    return 0;
}

static int read_file(struct reader *r, const char *path, int depth, int must_exist)
{
    FILE *f;
    char line[4096];
    char *argv[64];
    int lineno = 0, active = 1, rc = 0;

    if (depth > MAX_INCLUDE_DEPTH)
        return set_err(r->err, r->errlen, TM_EINVAL,
                       "read %s: Include nested more than %d deep", path,
                       MAX_INCLUDE_DEPTH);
    f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT && !must_exist)
            return 0;
        if (errno == ENOENT)
            return 0; /* an Include glob that vanished */
        return set_err(r->err, r->errlen, -errno, "read ssh config %s: %s", path,
                       tm_strerror(-errno));
    }
    while (fgets(line, sizeof line, f)) {
        int argc;
        lineno++;
        argc = split_args(line, argv, 64);
        if (argc < 0) {
            rc = set_err(r->err, r->errlen, TM_EINVAL, "read %s:%d: bad line", path,
                         lineno);
            break;
        }
        if (argc == 0)
            continue;
        if (!strcasecmp(argv[0], "Host")) {
            active = host_matches(argv + 1, argc - 1, r->alias);
            continue;
        }
        if (!strcasecmp(argv[0], "Match")) {
            active = argc == 2 && !strcasecmp(argv[1], "all");
            continue;
        }
        if (!active)
            continue;
        rc = apply(r, path, lineno, argv, argc, depth);
        if (rc)
            break;
    }
    fclose(f);
    return rc;
}

static const char *home_dir(void)
{
    const char *h = getenv("HOME");
    struct passwd *pw;
    if (h && *h)
        return h;
    pw = getpwuid(getuid());
    return pw && pw->pw_dir ? pw->pw_dir : "/";
}

int tm__ssh_config_read(const char *path, const char *alias,
                        struct tm__ssh_host *h, char *err, size_t errlen)
{
    struct reader r = {alias, h, home_dir(), err, errlen};
    struct tm__buf b = TM__BUF_INIT;
    int rc;

    memset(h, 0, sizeof *h);
    if (path && !strcmp(path, "none"))
        return 0;
    if (!path) {
        if (tm__buf_addf(&b, "%s/.ssh/config", r.home))
            return TM_ENOMEM;
        rc = read_file(&r, b.buf, 0, 0);
        tm__buf_release(&b);
        return rc;
    }
    return read_file(&r, path, 0, 1);
}

int tm__ssh_expand(const char *s, const struct tm__ssh_tokens *t,
                   struct tm__buf *out)
{
    int rc = 0;
    if (s[0] == '~' && (s[1] == '/' || !s[1])) {
        rc = tm__buf_adds(out, t->home ? t->home : "");
        s++;
    }
    for (; *s && !rc; s++) {
        const char *v = NULL;
        char tmp[HOST_NAME_MAX + 1];
        if (*s != '%') {
            rc = tm__buf_addch(out, *s);
            continue;
        }
        s++;
        switch (*s) {
        case '%':
            v = "%";
            break;
        case 'd':
            v = t->home;
            break;
        case 'h':
            v = t->host;
            break;
        case 'n':
            v = t->alias;
            break;
        case 'r':
            v = t->user;
            break;
        case 'u':
            v = t->local_user;
            break;
        case 'p':
            snprintf(tmp, sizeof tmp, "%d", t->port);
            v = tmp;
            break;
        case 'l':
        case 'L':
            if (gethostname(tmp, sizeof tmp) != 0)
                tmp[0] = '\0';
            tmp[sizeof tmp - 1] = '\0';
            if (*s == 'L')
                tmp[strcspn(tmp, ".")] = '\0';
            v = tmp;
            break;
        default:
            return TM_EINVAL;
        }
        rc = tm__buf_adds(out, v ? v : "");
    }
    return rc;
}
