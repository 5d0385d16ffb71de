/*
 * settings.c - what the handle reads from and records in the state file's
 * settings (the key/value table migration): the storage options of a run,
 * numbers and strings read with a default, the stored excludes split into
 * lines, and the logging settings (checked, merged with the stored ones,
 * handed to the engine). Runs on the caller's thread, like the handle.
 */
#include "treemig.h"

#include "adapter/adapter.h"
#include "log/log.h"
#include "migration/migration_int.h"
#include "store/store.h"
#include "util/buf.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

void tm__mig_sopts_clear(tm_migration *m)
{
    size_t i;
    for (i = 0; i < m->n_sopt; i++)
        free(m->sopt[i]);
    free(m->sopt);
    m->sopt = NULL;
    m->n_sopt = 0;
    m->sopts.kv = NULL;
    m->sopts.n = 0;
}

/* Adds one option (len bytes of kv) to m's list. */
static int sopts_add(tm_migration *m, const char *kv, size_t len)
{
    char **p = realloc(m->sopt, (m->n_sopt + 1) * sizeof *p);
    if (!p)
        return TM_ENOMEM;
    m->sopt = p;
    if (!(p[m->n_sopt] = strndup(kv, len)))
        return TM_ENOMEM;
    m->n_sopt++;
    m->sopts.kv = (const char *const *)m->sopt;
    m->sopts.n = m->n_sopt;
    return 0;
}

/* 1 when key (len bytes) is an option of some storage kind. */
static int sopt_known(const char *key, size_t len)
{
    size_t i, j;
    for (i = 0; tm__kinds[i]; i++)
        for (j = 0; tm__kinds[i]->keys && tm__kinds[i]->keys[j]; j++)
            if (strlen(tm__kinds[i]->keys[j]) == len &&
                memcmp(tm__kinds[i]->keys[j], key, len) == 0)
                return 1;
    return 0;
}

int tm_migration_set_storage_options(tm_migration *m, const char *const *kv,
                                     size_t n)
{
    size_t i;
    int rc = 0;
    if (!m)
        return TM_EINVAL;
    tm__mig_sopts_clear(m);
    for (i = 0; i < n && !rc; i++) {
        const char *eq = strchr(kv[i], '=');
        size_t klen = eq ? (size_t)(eq - kv[i]) : strlen(kv[i]);
        if (strchr(kv[i], '\n') || !sopt_known(kv[i], klen))
            rc = tm__mig_fail(m, TM_EINVAL, "unknown storage option '%.*s' (docs/adapters.md "
                              "lists each storage's options)", (int)klen, kv[i]);
        else
            rc = sopts_add(m, kv[i], strlen(kv[i]));
    }
    if (rc)
        tm__mig_sopts_clear(m);
    m->sopt_given = !rc && n > 0;
    return rc;
}

/* The storage options of this run: the caller's, or else the ones the
 * state file records. */
int tm__mig_sopts_load(tm_migration *m)
{
    struct tm__buf b = TM__BUF_INIT;
    const char *p;
    int rc;
    if (m->sopt_given)
        return 0;
    tm__mig_sopts_clear(m);
    rc = tm__store_get(m->store.db, "storage_options", &b);
    if (rc == TM_ENOENT) {
        tm__buf_release(&b);
        return 0;
    }
    for (p = b.buf; !rc && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len)
            rc = sopts_add(m, p, len);
        p += len + (nl != NULL);
    }
    tm__buf_release(&b);
    return rc ? tm__mig_setting_fail(m, rc) : 0;
}

/* Records the caller's storage options (none secret: a kind takes no
 * secret as an option) so that the later commands reuse them. */
int tm__mig_sopts_store(tm_migration *m)
{
    struct tm__buf b = TM__BUF_INIT;
    size_t i;
    int rc = 0;
    if (!m->sopt_given)
        return 0;
    for (i = 0; !rc && i < m->n_sopt; i++)
        rc = tm__buf_addf(&b, "%s%s", i ? "\n" : "", m->sopt[i]);
    if (!rc)
        rc = tm__store_set(m->store.db, "storage_options", b.buf);
    tm__buf_release(&b);
    return rc;
}

int tm__mig_set_int(struct tm__db *db, const char *key, int v)
{
    char s[32];
    snprintf(s, sizeof s, "%d", v);
    return tm__store_set(db, key, s);
}

int tm__mig_get_int(struct tm__db *db, const char *key, int dflt)
{
    struct tm__buf b = TM__BUF_INIT;
    int v = dflt;
    if (tm__store_get(db, key, &b) == 0 && b.len)
        v = atoi(b.buf);
    tm__buf_release(&b);
    return v;
}

int64_t tm__mig_get_i64(struct tm__db *db, const char *key)
{
    struct tm__buf b = TM__BUF_INIT;
    int64_t v = 0;
    if (tm__store_get(db, key, &b) == 0 && b.len)
        v = strtoll(b.buf, NULL, 10);
    tm__buf_release(&b);
    return v;
}

/* As tm__mig_get_int, but a read that fails (not: a missing key) is an error: the
 * value is stored again afterwards, and a default must not replace it. */
int tm__mig_get_int_checked(tm_migration *m, const char *key, int dflt, int *out)
{
    struct tm__buf b = TM__BUF_INIT;
    int rc = tm__store_get(m->store.db, key, &b);
    *out = rc == 0 && b.len ? atoi(b.buf) : dflt;
    tm__buf_release(&b);
    return rc && rc != TM_ENOENT ? tm__mig_setting_fail(m, rc) : 0;
}

/* Splits the stored excludes into a NULL-terminated array (one malloc). */
char **tm__mig_split_lines(const char *s, size_t *n)
{
    size_t count = *s ? 1 : 0, i, len = strlen(s);
    char **v, *copy;
    for (i = 0; i < len; i++)
        count += s[i] == '\n';
    v = malloc((count + 1) * sizeof *v + len + 1);
    if (!v)
        return NULL;
    copy = (char *)(v + count + 1);
    memcpy(copy, s, len + 1);
    *n = 0;
    if (count) {
        char *p = copy;
        for (;;) {
            char *nl = strchr(p, '\n');
            v[(*n)++] = p;
            if (!nl)
                break;
            *nl = '\0';
            p = nl + 1;
        }
    }
    v[*n] = NULL;
    return v;
}

char *tm__mig_setting_dup(struct tm__db *db, const char *key)
{
    struct tm__buf b = TM__BUF_INIT;
    char *v = NULL;
    if (tm__store_get(db, key, &b) == 0)
        v = tm__buf_detach(&b, NULL);
    tm__buf_release(&b);
    return v;
}

/* Copies a setting into out ("" when it is not set). Returns 0, or the
 * error of a read that failed (out is then ""). */
int tm__mig_copy_setting(struct tm__db *db, const char *key, char *out, size_t len)
{
    struct tm__buf b = TM__BUF_INIT;
    int rc = tm__store_get(db, key, &b);
    out[0] = '\0';
    if (rc == 0)
        snprintf(out, len, "%s", b.buf);
    tm__buf_release(&b);
    return rc == TM_ENOENT ? 0 : rc;
}

/* Merges the logging settings given (NULL: keep) with the stored ones,
 * checks and stores them, and fills *out for the engine. */
int tm__mig_log_settings(tm_migration *m, const char *level, const char *udp_level,
                         const char *addr, int allow_public, struct tm__log_cfg *out)
{
    struct tm__db *db = m->store.db;
    const char *keys[3] = { "log_level", "udp_level", "udp_addr" };
    const char *dflt[3] = { "info", "warning", "127.0.0.1:8081" };
    const char *given[3] = { level, udp_level, addr };
    char *val[3] = { NULL, NULL, NULL };
    struct sockaddr_storage sa;
    unsigned salen;
    int lv[2], i, rc = 0, loop = 0;

    for (i = 0; i < 3 && !rc; i++) {
        if (given[i]) {
            val[i] = strdup(given[i]);
        } else {
            /* a failed read must not store the default over the setting */
            struct tm__buf b = TM__BUF_INIT;
            int grc = tm__store_get(db, keys[i], &b);
            if (grc && grc != TM_ENOENT) {
                tm__buf_release(&b);
                rc = tm__mig_setting_fail(m, grc);
                break;
            }
            val[i] = grc == 0 ? tm__buf_detach(&b, NULL) : NULL;
            tm__buf_release(&b);
        }
        if (!val[i] || !*val[i]) {
            free(val[i]);
            val[i] = strdup(dflt[i]);
        }
        if (!val[i])
            rc = TM_ENOMEM;
    }
    for (i = 0; i < 2 && !rc; i++) {
        lv[i] = strcasecmp(val[i], "off") == 0 ? TM_LEVEL_COUNT
                                                : tm__level_parse(val[i]);
        if (lv[i] < 0)
            rc = tm__mig_fail(m, TM_EINVAL, "unknown log level '%s' (trace, debug, info, "
                              "warning, error, critical, off)", val[i]);
    }
    if (!rc && (tm__log_parse_addr(val[2], &sa, &salen, &loop) != 0 ||
                ((struct sockaddr_in *)&sa)->sin_port == 0))
        rc = tm__mig_fail(m, TM_EINVAL, "bad log listener address '%s' (HOST:PORT with "
                          "a port from 1 to 65535, or [IPv6]:PORT)", val[2]);
    if (!rc && !loop && !allow_public)
        rc = tm__mig_fail(m, TM_EINVAL, "the log listener %s is not on this machine: "
                          "logs stay on loopback unless --log-public is given", val[2]);
    for (i = 0; i < 3 && !rc; i++)
        rc = tm__store_set(db, keys[i], val[i]);
    if (!rc) {
        memset(out, 0, sizeof *out);
        out->db_level = lv[0];
        out->udp_level = lv[1];
        free(m->log_addr);
        m->log_addr = val[2]; /* kept until the run ends: see tm__mig_log_release */
        val[2] = NULL;
        out->udp_addr = m->log_addr;
        out->allow_public = allow_public;
        out->migration = m->cfg.id;
        if (m->cfg_ready) {
            tm__config_set(&m->cfg.log_level, val[0]);
            tm__config_set(&m->cfg.udp_level, val[1]);
            tm__config_set(&m->cfg.udp_addr, out->udp_addr);
        }
    }
    for (i = 0; i < 3; i++)
        free(val[i]);
    return rc;
}

/* Checks the logging options given, before anything is created. */
int tm__mig_check_log_options(tm_migration *m, const tm_discover_options *o)
{
    const char *lv[2] = { o->log_level, o->udp_level };
    struct sockaddr_storage sa;
    unsigned salen;
    int i, loop = 0;
    for (i = 0; i < 2; i++)
        if (lv[i] && strcasecmp(lv[i], "off") != 0 && tm__level_parse(lv[i]) < 0)
            return tm__mig_fail(m, TM_EINVAL, "unknown log level '%s' (trace, debug, info, "
                                "warning, error, critical, off)", lv[i]);
    if (!o->udp_addr)
        return 0;
    if (tm__log_parse_addr(o->udp_addr, &sa, &salen, &loop) != 0 ||
        ((struct sockaddr_in *)&sa)->sin_port == 0)
        return tm__mig_fail(m, TM_EINVAL, "bad log listener address '%s' (HOST:PORT with "
                            "a port from 1 to 65535, or [IPv6]:PORT)", o->udp_addr);
    if (!loop && !o->log_public)
        return tm__mig_fail(m, TM_EINVAL, "the log listener %s is not on this machine: "
                            "logs stay on loopback unless --log-public is given",
                            o->udp_addr);
    return 0;
}

void tm__mig_log_release(tm_migration *m)
{
    free(m->log_addr);
    m->log_addr = NULL;
}
