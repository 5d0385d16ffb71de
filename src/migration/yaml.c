/*
 * yaml.c - the migration's YAML file seen from the handle: which file it
 * is, checking one that exists (it must name this migration), filling it
 * from the state file, saving it at every milestone (a phase, a round),
 * and opening a migration from it (tm_migration_open_config). Reading and
 * writing the file itself is config.c's. Runs on the caller's thread; the
 * round milestone (tm__mig_on_round) is called by the engine's coordinator,
 * which runs on that thread too.
 */
#include "treemig.h"

#include "migration/config.h"
#include "migration/migration_int.h"
#include "store/store.h"
#include "store/pass_q.h"
#include "util/buf.h"
#include "util/util.h"

#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes the YAML file from m->cfg (a milestone). */
int tm__mig_save_config(tm_migration *m)
{
    char now[32];
    struct tm__buf err = TM__BUF_INIT;
    int rc;
    if (!m->cfg_ready)
        return 0;
    tm__iso_time(now, tm__wall_ns());
    rc = tm__config_set(&m->cfg.updated, now);
    if (!rc)
        rc = tm__config_write(m->config_path, &m->cfg, &err);
    if (rc)
        tm__mig_fail(m, rc, "%s", err.len ? err.buf : tm_strerror(rc));
    tm__buf_release(&err);
    return rc;
}

/* The YAML file a run will write: the one given, else the one the state
 * file names, else the state file's name with .yaml. malloc'd or NULL. */
char *tm__mig_yaml_path_for(tm_migration *m, const char *given)
{
    struct tm__buf b = TM__BUF_INIT;
    char *p;
    if (given)
        return tm__path_absolute(given);
    if (m->config_path)
        return strdup(m->config_path);
    if (tm__store_get(m->store.db, "config", &b) == 0 && b.len)
        return tm__buf_detach(&b, NULL);
    tm__buf_release(&b);
    {
        char *d = tm__store_yaml_default(m->store.path);
        p = d ? tm__path_absolute(d) : NULL;
        free(d);
    }
    return p;
}

/* Removes the temporary files a crash left while writing the YAML file at
 * path ("PATH.tmp.PID"); the caller holds the state file's lock, so no
 * other treemig is writing them. */
static void remove_stale_temps(const char *path)
{
    struct tm__buf pat = TM__BUF_INIT;
    glob_t g;
    size_t i;
    const char *p;
    /* glob metacharacters in the path itself are escaped */
    for (p = path; *p; p++) {
        if (strchr("*?[\\", *p))
            tm__buf_addch(&pat, '\\');
        tm__buf_addch(&pat, *p);
    }
    tm__buf_adds(&pat, ".tmp.*");
    if (glob(pat.buf, GLOB_NOSORT, NULL, &g) == 0) {
        for (i = 0; i < g.gl_pathc; i++)
            unlink(g.gl_pathv[i]);
        globfree(&g);
    }
    tm__buf_release(&pat);
}

/* 1 when the YAML file at path is missing or names this state file: a
 * copied state file must not take over the original's YAML file. */
static int yaml_names_us(tm_migration *m, const char *path)
{
    struct tm__config c;
    struct tm__buf err = TM__BUF_INIT;
    char *me = tm__path_absolute(m->store.path);
    int ours;
    memset(&c, 0, sizeof c);
    if (access(path, F_OK) != 0) {
        free(me);
        return 1;
    }
    ours = tm__config_read(path, &c, &err) != 0 || /* refused later, loudly */
           (me && c.database && strcmp(c.database, me) == 0);
    tm__config_release(&c);
    tm__buf_release(&err);
    free(me);
    return ours;
}

/* Finds the YAML file of the migration, checks an existing one, and fills
 * m->cfg from the state file so that milestones can be saved. An existing
 * YAML file that does not parse or names another migration is refused and
 * never overwritten. */
int tm__mig_config_prepare(tm_migration *m, const char *config_opt,
                           const tm_discover_options *o, char **globs, size_t n_globs)
{
    struct tm__db *db = m->store.db;
    struct tm__config *c = &m->cfg;
    struct tm__buf b = TM__BUF_INIT;
    char *stored = tm__mig_setting_dup(db, "config"), *id = tm__mig_setting_dup(db, "id");
    int rc = 0;
    size_t i;

    if (!m->config_path) {
        if (config_opt)
            m->config_path = tm__path_absolute(config_opt);
        else if (stored && *stored && yaml_names_us(m, stored))
            m->config_path = strdup(stored);
        else {
            char *d = tm__store_yaml_default(m->store.path);
            m->config_path = d ? tm__path_absolute(d) : NULL;
            free(d);
        }
    }
    if (!m->config_path || !id) {
        rc = id ? TM_ENOMEM : tm__mig_fail(m, TM_ECORRUPT, "the state file has no id");
        goto out;
    }
    remove_stale_temps(m->config_path);
    if (access(m->config_path, F_OK) == 0) {
        struct tm__buf err = TM__BUF_INIT;
        rc = tm__config_read(m->config_path, c, &err);
        if (rc)
            tm__mig_fail(m, rc, "%s", err.buf);
        tm__buf_release(&err);
        if (rc)
            goto out;
        if (strcmp(c->id, id) != 0) {
            rc = tm__mig_fail(m, TM_EMISMATCH, "%s belongs to migration %s, the state file "
                              "%s to %s; it was left untouched", m->config_path, c->id,
                              m->store.path, id);
            goto out;
        }
    }
    tm__config_release(c);
    c->version = TM_CONFIG_VERSION;
    c->id = id;
    id = NULL;
    c->created = tm__mig_setting_dup(db, "created");
    c->phase = tm__mig_setting_dup(db, "phase");
    c->source = tm__mig_setting_dup(db, "src");
    c->destination = tm__mig_setting_dup(db, "dst");
    c->database = tm__path_absolute(m->store.path);
    c->src_round = tm__mig_get_int(db, "src_round", 0);
    c->dst_round = tm__mig_get_int(db, "dst_round", 0);
    {
        /* the pass; a state file opened read-only before its upgrade has
         * no table of passes: pass 1 */
        char started[64], ended[64];
        if (tm__q_pass_get(db, &c->pass, started, sizeof started, ended,
                           sizeof ended, NULL) == 0 && started[0])
            c->pass_started = strdup(started);
    }
    c->workers = o->workers;
    c->lead = o->lead;
    c->retries = o->retries;
    c->log_level = tm__mig_setting_dup(db, "log_level");
    c->udp_level = tm__mig_setting_dup(db, "udp_level");
    c->udp_addr = tm__mig_setting_dup(db, "udp_addr");
    c->owner = tm__mig_get_int(db, "owner", 0);
    c->no_specials = tm__mig_get_int(db, "no_specials", 0);
    c->one_fs = tm__mig_get_int(db, "one_fs", 0);
    c->no_xattrs = tm__mig_get_int(db, "no_xattrs", 0);
    c->compare = tm__mig_setting_dup(db, "compare");
    c->modify_window = tm__mig_get_int(db, "modify_window", 0);
    c->min_size = tm__mig_get_i64(db, "min_size");
    c->max_size = tm__mig_get_i64(db, "max_size");
    c->min_age = tm__mig_get_i64(db, "min_age");
    c->max_age = tm__mig_get_i64(db, "max_age");
    c->excludes = calloc(n_globs ? n_globs : 1, sizeof *c->excludes);
    c->storage = calloc(m->n_sopt ? m->n_sopt : 1, sizeof *c->storage);
    if (!c->excludes || !c->storage || !c->phase || !c->source || !c->destination ||
        !c->database) {
        rc = TM_ENOMEM;
        goto out;
    }
    for (i = 0; i < m->n_sopt; i++) {
        if (!(c->storage[i] = strdup(m->sopt[i]))) {
            rc = TM_ENOMEM;
            goto out;
        }
        c->n_storage++;
    }
    for (i = 0; i < n_globs; i++) {
        if (!(c->excludes[i] = strdup(globs[i]))) {
            rc = TM_ENOMEM;
            goto out;
        }
        c->n_excludes++;
    }
    rc = tm__store_set(db, "config", m->config_path);
    if (!rc)
        m->cfg_ready = 1;
out:
    free(stored);
    free(id);
    tm__buf_release(&b);
    return rc;
}

/* The engine started a round: a milestone of the YAML file. */
void tm__mig_on_round(void *ctx, int side, int round)
{
    tm_migration *m = ctx;
    if (side == 0)
        m->cfg.src_round = round;
    else
        m->cfg.dst_round = round;
    tm__mig_save_config(m); /* a failure here is reported at the next milestone */
}

int tm_migration_open_config(tm_migration **out, const char *config_path)
{
    struct tm__config c;
    struct tm__buf err = TM__BUF_INIT;
    char *id = NULL, *src = NULL, *dst = NULL;
    int rc;

    memset(&c, 0, sizeof c);
    rc = tm__config_read(config_path, &c, &err);
    if (rc) {
        tm_migration *m = calloc(1, sizeof *m);
        *out = m;
        if (m) {
            tm__buf_init(&m->err);
            tm__buf_add(&m->err, err.buf, err.len);
        }
        tm__buf_release(&err);
        return rc;
    }
    tm__buf_release(&err);
    rc = tm_migration_open(out, c.database, TM_OPEN_WRITE);
    if (rc) {
        tm__config_release(&c);
        return rc;
    }
    id = tm__mig_setting_dup((*out)->store.db, "id");
    src = tm__mig_setting_dup((*out)->store.db, "src");
    dst = tm__mig_setting_dup((*out)->store.db, "dst");
    if (!id || strcmp(id, c.id) != 0) {
        rc = tm__mig_fail(*out, TM_EMISMATCH, "%s names the state file %s, which holds "
                          "another migration (%s, not %s)", config_path, c.database,
                          id ? id : "none", c.id);
    } else if (!src || !dst) {
        rc = tm__mig_fail(*out, TM_ECORRUPT, "the state file %s names no roots",
                          c.database);
    } else if (strcmp(src, c.source) != 0 || strcmp(dst, c.destination) != 0) {
        /* the roots of a migration are what its state file recorded: a
         * YAML file edited by hand cannot move them (nor be overwritten
         * silently with the recorded ones) */
        int s_diff = strcmp(src, c.source) != 0;
        rc = tm__mig_fail(*out, TM_EMISMATCH, "%s names the %s %s, but the state file %s "
                          "records %s: the roots of a migration cannot be changed; put "
                          "the recorded one back in the YAML file, or start a new "
                          "migration with discover", config_path,
                          s_diff ? "source" : "destination", s_diff ? c.source : c.destination,
                          c.database, s_diff ? src : dst);
    } else if (!((*out)->config_path = tm__path_absolute(config_path))) {
        rc = TM_ENOMEM;
    }
    free(id);
    free(src);
    free(dst);
    tm__config_release(&c);
    return rc;
}
