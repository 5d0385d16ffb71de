/*
 * state_copy.c - tm_state_copy(): a migration's whole state copied into a
 * new store, SQLite to PostgreSQL or back (treemig state-copy), and the
 * YAML file of the copy. The rows are store/state_copy.c's; here: the
 * checks before anything is written (the source at the current schema,
 * the target empty, no YAML file overwritten), the target's creation, and
 * the YAML file, written from the source's own (or from the state's
 * settings when it has none) with the copy's database. Runs on the
 * caller's thread.
 */
#include "treemig.h"

#include "migration/config.h"
#include "migration/migration_int.h"
#include "store/state_copy.h"
#include "store/store.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The schema version of db (PRAGMA user_version, treemig_meta's on
 * PostgreSQL), or -1. */
static int schema_version(struct tm__db *db)
{
    struct tm__stmt *st;
    int v = -1;
    if (tm__db_prepare(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (tm__db_step(st) == SQLITE_ROW)
        v = tm__db_column_int(st, 0);
    tm__db_finalize(st);
    return v;
}

/* The YAML file's content for the copy: the source's own YAML file when
 * it names this migration, else what the state says. */
static int fill_config(tm_migration *m, struct tm__config *c, const char *database)
{
    struct tm__db *db = m->store.db;
    char *path = tm__mig_setting_dup(db, "config"), *id = tm__mig_setting_dup(db, "id");
    char now[32];
    struct tm__buf err = TM__BUF_INIT;
    int rc = 0;

    if (!id) {
        free(path);
        return tm__mig_fail(m, TM_ECORRUPT, "%s holds no migration (no id)", m->store.path);
    }
    if (!path || access(path, R_OK) != 0 || tm__config_read(path, c, &err) != 0 ||
        strcmp(c->id, id) != 0) {
        tm__config_release(c);
        c->version = TM_CONFIG_VERSION;
        c->id = strdup(id);
        c->created = tm__mig_setting_dup(db, "created");
        c->source = tm__mig_setting_dup(db, "src");
        c->destination = tm__mig_setting_dup(db, "dst");
        c->log_level = tm__mig_setting_dup(db, "log_level");
        c->udp_level = tm__mig_setting_dup(db, "udp_level");
        c->udp_addr = tm__mig_setting_dup(db, "udp_addr");
        c->compare = tm__mig_setting_dup(db, "compare");
        c->owner = tm__mig_get_int(db, "owner", 0);
        c->no_specials = tm__mig_get_int(db, "no_specials", 0);
        c->one_fs = tm__mig_get_int(db, "one_fs", 0);
        c->no_xattrs = tm__mig_get_int(db, "no_xattrs", 0);
        c->modify_window = tm__mig_get_int(db, "modify_window", 0);
        c->excludes = calloc(1, sizeof *c->excludes);
        c->storage = calloc(1, sizeof *c->storage);
        if (!c->id || !c->source || !c->destination || !c->excludes || !c->storage)
            rc = TM_ENOMEM;
    }
    /* what the state says now wins over an older YAML file */
    tm__iso_time(now, tm__wall_ns());
    free(c->phase);
    c->phase = tm__mig_setting_dup(db, "phase");
    c->src_round = tm__mig_get_int(db, "src_round", 0);
    c->dst_round = tm__mig_get_int(db, "dst_round", 0);
    if (!rc)
        rc = tm__config_set(&c->database, database);
    if (!rc)
        rc = tm__config_set(&c->updated, now);
    if (!rc && !c->phase)
        rc = TM_ENOMEM;
    free(path);
    free(id);
    tm__buf_release(&err);
    return rc;
}

/* 0 when the store at to holds nothing of a migration: no file or no
 * table, or the bare schema a failed state-copy left (no id). */
static int check_empty(tm_migration *m, const char *to)
{
    struct tm__store probe;
    struct tm__buf err = TM__BUF_INIT, id = TM__BUF_INIT;
    int rc;
    if (!tm__db_is_pg(to) && access(to, F_OK) == 0)
        return tm__mig_fail(m, TM_EEXIST, "%s exists: state-copy writes only a new "
                            "state file (or an empty database)", to);
    rc = tm__store_open(&probe, to, TM_OPEN_READONLY, &err);
    if (rc == TM_ENODB) {
        rc = 0;
    } else if (rc) {
        tm__mig_fail(m, rc, "%s", err.buf);
    } else {
        if (tm__store_get(probe.db, "id", &id) == 0 && id.len)
            rc = tm__mig_fail(m, TM_EEXIST, "%s holds the state of migration %s: "
                              "state-copy writes only into an empty database; it was "
                              "left untouched", probe.path, id.buf);
        tm__store_close(&probe);
    }
    tm__buf_release(&err);
    tm__buf_release(&id);
    return rc;
}

int tm_state_copy(tm_migration *m, const char *to, const char *config, int64_t *rows)
{
    struct tm__store t;
    struct tm__buf err = TM__BUF_INIT;
    struct tm__config c;
    char *yaml = NULL, *database = NULL;
    int rc, v, created = 0;

    memset(&t, 0, sizeof t);
    memset(&c, 0, sizeof c);
    *rows = 0;
    if (!m || !m->open)
        return TM_EINVAL;
    v = schema_version(m->store.db);
    if (v != TM_SCHEMA_VERSION) {
        rc = tm__mig_fail(m, TM_ESCHEMA, "%s has schema version %d, this treemig %d: "
                          "bring it up to date first (any command that writes it "
                          "does, e.g. treemig exclude --list)", m->store.path, v,
                          TM_SCHEMA_VERSION);
        goto out;
    }
    if (config)
        yaml = tm__path_absolute(config);
    else if (!tm__db_is_pg(to)) {
        char *d = tm__store_yaml_default(to);
        yaml = d ? tm__path_absolute(d) : NULL;
        free(d);
        if (!yaml) {
            rc = TM_ENOMEM;
            goto out;
        }
    }
    if (config && !yaml) {
        rc = TM_ENOMEM;
        goto out;
    }
    if (yaml && access(yaml, F_OK) == 0) {
        rc = tm__mig_fail(m, TM_EEXIST, "%s exists: state-copy does not overwrite a "
                          "YAML file (name another with --config)", yaml);
        goto out;
    }
    rc = check_empty(m, to);
    if (rc)
        goto out;
    rc = tm__store_open(&t, to, TM_OPEN_WRITE | TM_OPEN_CREATE, &err);
    if (rc) {
        tm__mig_fail(m, rc, "%s", err.buf);
        goto out;
    }
    created = !tm__db_is_pg(to) && t.fresh;
    rc = tm__state_copy(m->store.db, t.db, yaml, rows, &err);
    if (rc) {
        tm__mig_fail(m, rc, "state-copy to %s: %s", t.path, err.buf);
        goto out;
    }
    if (yaml) {
        database = tm__db_is_pg(to) ? strdup(t.path) : tm__path_absolute(t.path);
        rc = database ? fill_config(m, &c, database) : TM_ENOMEM;
        tm__buf_reset(&err);
        if (!rc)
            rc = tm__config_write(yaml, &c, &err);
        if (rc && err.len)
            tm__mig_fail(m, rc, "%s", err.buf);
        else if (rc && !m->err.len)
            tm__mig_fail(m, rc, "write %s: %s", yaml, tm_strerror(rc));
        if (rc)
            goto out;
    }
    created = 0; /* done: kept */
out:
    if (t.db) {
        char *path = created ? strdup(t.path) : NULL;
        tm__store_close(&t);
        if (path) { /* a new state file that holds no copy goes */
            static const char *const ext[] = { "", "-wal", "-shm", ".lock" };
            struct tm__buf p = TM__BUF_INIT;
            size_t i;
            for (i = 0; i < sizeof ext / sizeof *ext; i++) {
                tm__buf_reset(&p);
                if (tm__buf_addf(&p, "%s%s", path, ext[i]) == 0)
                    unlink(p.buf);
            }
            tm__buf_release(&p);
            free(path);
        }
    }
    tm__config_release(&c);
    free(yaml);
    free(database);
    tm__buf_release(&err);
    return rc;
}
