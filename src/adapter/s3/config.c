/*
 * config.c - the S3 settings and credentials, resolved as the AWS tools
 * resolve them (see s3.h and docs/adapters.md): explicit settings first,
 * then the environment, then the profile in ~/.aws/credentials and
 * ~/.aws/config. Runs once in tm__s3_open(), in the caller's thread; the
 * files are only read. The secret and the session token are copied into
 * struct tm__s3_creds only, wiped when released, and never named in a
 * message: a message says where the credentials came from, not what they
 * are.
 */
#include "adapter/s3/s3_int.h"

#include "treemig.h"

#include <openssl/crypto.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What one profile holds, from either file. */
struct profile {
    char *access_key;    /* aws_access_key_id */
    char *secret_key;    /* aws_secret_access_key */
    char *session_token; /* aws_session_token */
    char *region;        /* region */
    char *endpoint;      /* endpoint_url (the "s3 =" block's wins) */
    char *s3_endpoint;   /* endpoint_url under "s3 =" */
    char *ca_bundle;     /* ca_bundle */
};

static void wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void profile_release(struct profile *p)
{
    wipe_free(p->access_key);
    wipe_free(p->secret_key);
    wipe_free(p->session_token);
    free(p->region);
    free(p->endpoint);
    free(p->s3_endpoint);
    free(p->ca_bundle);
    memset(p, 0, sizeof(*p));
}

static char *trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
                     e[-1] == '\r'))
        *--e = '\0';
    return s;
}

static int set_dup(char **dst, const char *v)
{
    char *d = strdup(v);
    if (!d)
        return TM_ENOMEM;
    wipe_free(*dst);
    *dst = d;
    return 0;
}

/* Reads section `want` of the INI file at path into p (keys found there
 * replace those already in p). A missing file is not an error. */
static int read_ini(const char *path, const char *want, struct profile *p,
                    int *found)
{
    FILE *f;
    char line[4096];
    int in = 0, sub = 0, rc = 0;

    f = fopen(path, "re");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        int indented = line[0] == ' ' || line[0] == '\t';
        char *t = trim(line), *eq, *k, *v;
        if (!*t || *t == '#' || *t == ';')
            continue;
        if (*t == '[') {
            char *end = strchr(t, ']');
            sub = 0;
            if (!end)
                continue;
            *end = '\0';
            in = !strcmp(trim(t + 1), want);
            if (in)
                *found = 1;
            continue;
        }
        if (!in)
            continue;
        eq = strchr(t, '=');
        if (!eq)
            continue;
        *eq = '\0';
        k = trim(t);
        v = trim(eq + 1);
        if (!indented)
            sub = 0;
        if (!indented && !*v) {
            /* "s3 =" opens a block of service settings */
            sub = !strcmp(k, "s3") ? 1 : 2;
            continue;
        }
        if (indented && sub) {
            if (sub == 1 && !strcmp(k, "endpoint_url"))
                rc = set_dup(&p->s3_endpoint, v);
        } else if (!strcmp(k, "aws_access_key_id")) {
            rc = set_dup(&p->access_key, v);
        } else if (!strcmp(k, "aws_secret_access_key")) {
            rc = set_dup(&p->secret_key, v);
        } else if (!strcmp(k, "aws_session_token")) {
            rc = set_dup(&p->session_token, v);
        } else if (!strcmp(k, "region")) {
            rc = set_dup(&p->region, v);
        } else if (!strcmp(k, "endpoint_url")) {
            rc = set_dup(&p->endpoint, v);
        } else if (!strcmp(k, "ca_bundle")) {
            rc = set_dup(&p->ca_bundle, v);
        }
        OPENSSL_cleanse(line, sizeof(line));
        if (rc)
            break;
    }
    OPENSSL_cleanse(line, sizeof(line));
    fclose(f);
    return rc;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* path of a file under ~/.aws, or the variable's value. */
static int aws_file(struct tm__buf *out, const char *var, const char *name)
{
    const char *v = env(var), *home = env("HOME");
    if (v)
        return tm__buf_adds(out, v);
    if (!home) {
        struct passwd pw, *res = NULL;
        char tmp[1024];
        if (getpwuid_r(getuid(), &pw, tmp, sizeof(tmp), &res) == 0 && res)
            return tm__buf_addf(out, "%s/.aws/%s", pw.pw_dir, name);
        return tm__buf_addf(out, "/nonexistent/.aws/%s", name);
    }
    return tm__buf_addf(out, "%s/.aws/%s", home, name);
}

/* Loads profile name from both files; *where describes where the keys
 * were found (for messages). */
static int load_profile(const char *name, struct profile *p,
                        struct tm__buf *where, int *found)
{
    struct tm__buf cred = TM__BUF_INIT, conf = TM__BUF_INIT,
                   sect = TM__BUF_INIT;
    int rc, in_conf = 0, in_cred = 0;

    rc = aws_file(&cred, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    if (!rc)
        rc = aws_file(&conf, "AWS_CONFIG_FILE", "config");
    if (!rc)
        rc = !strcmp(name, "default") ? tm__buf_adds(&sect, "default")
                                      : tm__buf_addf(&sect, "profile %s", name);
    if (rc)
        goto out;
    /* the config file first, so that the credentials file's keys win */
    rc = read_ini(conf.buf, sect.buf, p, &in_conf);
    if (!rc && !strcmp(name, "default") && !in_conf)
        rc = read_ini(conf.buf, "profile default", p, &in_conf);
    if (!rc) {
        char *ak = p->access_key;
        p->access_key = NULL;
        rc = read_ini(cred.buf, name, p, &in_cred);
        if (p->access_key) {
            wipe_free(ak);
            tm__buf_reset(where);
            tm__buf_addf(where, "profile %s in %s", name, cred.buf);
        } else {
            p->access_key = ak;
            if (ak) {
                tm__buf_reset(where);
                tm__buf_addf(where, "profile %s in %s", name, conf.buf);
            }
        }
    }
    *found = in_conf || in_cred;
out:
    tm__buf_release(&cred);
    tm__buf_release(&conf);
    tm__buf_release(&sect);
    return rc;
}

/* Checks and normalises an endpoint: a scheme (https:// when none), no
 * trailing '/'. */
static int norm_endpoint(const char *in, char **out)
{
    struct tm__buf b = TM__BUF_INIT;
    int rc;
    if (strncmp(in, "http://", 7) && strncmp(in, "https://", 8)) {
        if (strstr(in, "://"))
            return TM_EINVAL;
        rc = tm__buf_addf(&b, "https://%s", in);
    } else {
        rc = tm__buf_adds(&b, in);
    }
    if (rc) {
        tm__buf_release(&b);
        return rc;
    }
    while (b.len && b.buf[b.len - 1] == '/')
        tm__buf_setlen(&b, b.len - 1);
    if (strchr(b.buf, '?') || strchr(b.buf, '#') || strchr(b.buf, ' ') ||
        b.len < 9) {
        tm__buf_release(&b);
        return TM_EINVAL;
    }
    *out = tm__buf_detach(&b, NULL);
    return *out ? 0 : TM_ENOMEM;
}

static int fail(struct tm__s3_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct tm__s3_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    if (err) {
        tm__s3_err_clear(err);
        err->code = code;
        err->cls = TM_S3_FATAL;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

int tm__s3_resolve(const struct tm__s3_config *cfg, struct tm__s3_settings *set,
                   struct tm__s3_creds *cr, struct tm__s3_err *err)
{
    static const struct tm__s3_config none = {.path_style = -1, .part_retries = -1};
    struct profile p = {0};
    struct tm__buf where = TM__BUF_INIT, ep = TM__BUF_INIT;
    const char *name, *ak, *sk, *v;
    int rc, found = 0, named;

    memset(set, 0, sizeof(*set));
    memset(cr, 0, sizeof(*cr));
    if (!cfg)
        cfg = &none;
    named = cfg->profile && *cfg->profile;
    name = named ? cfg->profile : env("AWS_PROFILE");
    if (!name)
        name = "default";
    rc = load_profile(name, &p, &where, &found);
    if (rc)
        goto out;
    if ((named || env("AWS_PROFILE")) && !found) {
        rc = fail(err, TM_EINVAL, "s3 config: no profile %s in the aws files", name);
        goto out;
    }

    /* credentials: a profile named by the user, the environment, the
     * profile of AWS_PROFILE or "default" */
    ak = env("AWS_ACCESS_KEY_ID");
    sk = env("AWS_SECRET_ACCESS_KEY");
    if (!(named && p.access_key) && ak && sk) {
        rc = set_dup(&cr->access_key, ak);
        if (!rc)
            rc = set_dup(&cr->secret_key, sk);
        if (!rc && env("AWS_SESSION_TOKEN"))
            rc = set_dup(&cr->session_token, env("AWS_SESSION_TOKEN"));
        tm__buf_reset(&where);
        if (!rc)
            rc = tm__buf_adds(&where, "environment");
    } else if (p.access_key && p.secret_key) {
        cr->access_key = p.access_key;
        cr->secret_key = p.secret_key;
        cr->session_token = p.session_token;
        p.access_key = p.secret_key = p.session_token = NULL;
    } else {
        rc = fail(err, TM_EINVAL,
                  "s3 config: no credentials (AWS_ACCESS_KEY_ID and "
                  "AWS_SECRET_ACCESS_KEY, or profile %s)", name);
        goto out;
    }
    if (rc)
        goto out;
    set->cred_source = tm__buf_detach(&where, NULL);

    /* region */
    v = cfg->region && *cfg->region ? cfg->region : env("AWS_REGION");
    if (!v)
        v = env("AWS_DEFAULT_REGION");
    if (!v)
        v = p.region;
    if (!v)
        v = "us-east-1";
    if (strchr(v, '/') || strchr(v, ' ')) {
        rc = fail(err, TM_EINVAL, "s3 config: bad region %s", v);
        goto out;
    }
    set->region = strdup(v);

    /* endpoint */
    v = cfg->endpoint && *cfg->endpoint ? cfg->endpoint : env("AWS_ENDPOINT_URL_S3");
    if (!v)
        v = env("AWS_ENDPOINT_URL");
    if (!v)
        v = p.s3_endpoint ? p.s3_endpoint : p.endpoint;
    set->custom = v != NULL;
    if (!v) {
        if (tm__buf_addf(&ep, "https://s3.%s.amazonaws.com", set->region ? set->region : "")) {
            rc = TM_ENOMEM;
            goto out;
        }
        v = ep.buf;
    }
    if (!set->region || (rc = norm_endpoint(v, &set->endpoint))) {
        rc = rc ? rc : TM_ENOMEM;
        if (rc == TM_EINVAL)
            fail(err, rc, "s3 config: bad endpoint %s", v);
        goto out;
    }
    set->path_style = cfg->path_style >= 0 ? !!cfg->path_style : set->custom;
    /* the CA certificates of an https endpoint (a private CA's) */
    v = env("AWS_CA_BUNDLE");
    if (!v)
        v = p.ca_bundle;
    if (v && *v && !(set->ca_bundle = strdup(v))) {
        rc = TM_ENOMEM;
        goto out;
    }
    if (cfg->storage_class && *cfg->storage_class &&
        !(set->storage_class = strdup(cfg->storage_class))) {
        rc = TM_ENOMEM;
        goto out;
    }
out:
    if (rc == TM_ENOMEM)
        fail(err, rc, "s3 config: %s", "out of memory");
    profile_release(&p);
    tm__buf_release(&where);
    tm__buf_release(&ep);
    if (rc) {
        tm__s3_settings_release(set);
        tm__s3_creds_release(cr);
    }
    return rc;
}

void tm__s3_settings_release(struct tm__s3_settings *set)
{
    free(set->endpoint);
    free(set->region);
    free(set->storage_class);
    free(set->cred_source);
    free(set->ca_bundle);
    memset(set, 0, sizeof(*set));
}

void tm__s3_creds_release(struct tm__s3_creds *cr)
{
    wipe_free(cr->access_key);
    wipe_free(cr->secret_key);
    wipe_free(cr->session_token);
    memset(cr, 0, sizeof(*cr));
}
