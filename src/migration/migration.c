/*
 * migration.c - the migration handle: opening and freeing it, its error
 * message, an interrupt, the phase it records, and the accessors the
 * other files of src/migration/ (migration_int.h) use. The handle's other
 * jobs have files of their own: settings.c, roots.c, yaml.c, plan.c
 * (discover, resume), run.c (copy, verify), retry.c, status.c, review.c
 * and exclude.c. Runs on the caller's thread; only
 * tm_migration_interrupt() may be called from elsewhere (a signal handler).
 */
#include "treemig.h"

#include "migration/config.h"
#include "migration/migration_int.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A setting of the state file could not be read (not: is missing). */
int tm__mig_setting_fail(tm_migration *m, int rc)
{
    return tm__mig_fail(m, rc, "state file %s: cannot read its settings: %s",
                        m->store.path,
                        rc == TM_EDB || rc == TM_ECORRUPT || rc == TM_EIO
                            ? tm__store_errmsg(m->store.db) /* a lost server too */
                            : tm_strerror(rc));
}

int tm__mig_fail(tm_migration *m, int rc, const char *fmt, ...)
{
    va_list ap;
    tm__buf_reset(&m->err);
    va_start(ap, fmt);
    tm__buf_vaddf(&m->err, fmt, ap);
    va_end(ap);
    return rc;
}

int tm_migration_open(tm_migration **out, const char *db_path, unsigned flags)
{
    tm_migration *m = calloc(1, sizeof *m);
    int rc;
    *out = m;
    if (!m)
        return TM_ENOMEM;
    tm__buf_init(&m->err);
    atomic_init(&m->stop, 0);
    rc = tm__store_open(&m->store, db_path, flags, &m->err);
    if (rc) {
        if (!m->err.len)
            tm__buf_addf(&m->err, "cannot open %s: %s", db_path, tm_strerror(rc));
        return rc;
    }
    m->open = 1;
    return 0;
}

void tm_migration_free(tm_migration *m)
{
    if (!m)
        return;
    if (m->open && m->discard && !m->store.conninfo) {
        static const char *const ext[] = { "", "-wal", "-shm", ".lock" };
        struct tm__buf p = TM__BUF_INIT;
        char *path = strdup(m->store.path);
        size_t i;
        tm__store_close(&m->store);
        for (i = 0; path && i < sizeof ext / sizeof *ext; i++) {
            tm__buf_reset(&p);
            if (tm__buf_addf(&p, "%s%s", path, ext[i]) == 0)
                unlink(p.buf);
        }
        free(path);
        tm__buf_release(&p);
    } else if (m->open) {
        tm__store_close(&m->store);
    }
    tm__config_release(&m->cfg);
    tm__mig_sopts_clear(m);
    free(m->config_path);
    free(m->log_addr);
    free(m->item_log);
    tm__buf_release(&m->err);
    free(m);
}

const char *tm_migration_errmsg(const tm_migration *m)
{
    return m ? m->err.buf : "not enough memory";
}

void tm_migration_interrupt(tm_migration *m)
{
    if (m)
        atomic_store(&m->stop, 1);
}

/* Records a phase in the state file and the YAML file. from is the running
 * phase a suspension interrupted, or NULL. */
int tm__mig_set_phase_from(tm_migration *m, enum tm__phase ph, enum tm__phase from_ph)
{
    const char *phase = tm__phase_name(ph);
    const char *from = from_ph == PH_NONE ? NULL : tm__phase_name(from_ph);
    char now[32];
    int rc;
    tm__iso_time(now, tm__wall_ns());
    rc = tm__store_set(m->store.db, "phase", phase);
    if (!rc)
        rc = tm__store_set(m->store.db, "updated", now);
    if (!rc)
        rc = tm__store_set(m->store.db, "suspended_from", from ? from : "");
    if (rc)
        return tm__mig_fail(m, rc, "cannot record phase %s: %s", phase,
                            tm__store_errmsg(m->store.db));
    if (m->cfg_ready) {
        rc = tm__config_set(&m->cfg.phase, phase);
        if (!rc)
            rc = tm__config_set(&m->cfg.suspended_from, from);
        if (!rc)
            rc = tm__mig_save_config(m);
    }
    return rc;
}

int tm__mig_set_phase(tm_migration *m, enum tm__phase phase)
{
    return tm__mig_set_phase_from(m, phase, PH_NONE);
}

/* An absolute form of path (the folder resolved, the name kept), or NULL
 * when memory is short. */
char *tm__path_absolute(const char *path)
{
    struct tm__buf b = TM__BUF_INIT;
    char *copy = strdup(path), *slash, *dir;
    int rc;
    if (!copy || tm__db_is_pg(path)) /* a URI stays as it is */
        return copy;
    slash = strrchr(copy, '/');
    if (slash == copy) {
        rc = tm__buf_adds(&b, copy);
    } else {
        if (slash)
            *slash = '\0';
        errno = 0;
        dir = realpath(slash ? copy : ".", NULL);
        if (dir)
            rc = tm__buf_addf(&b, "%s/%s", strcmp(dir, "/") ? dir : "",
                              slash ? slash + 1 : copy);
        else if (errno == ENOMEM)
            rc = TM_ENOMEM; /* not a reason to keep a relative path */
        else
            rc = tm__buf_adds(&b, path);
        free(dir);
    }
    free(copy);
    if (rc) {
        tm__buf_release(&b);
        return NULL;
    }
    return tm__buf_detach(&b, NULL);
}

void tm_discover_options_init(tm_discover_options *o)
{
    memset(o, 0, sizeof *o);
    o->retries = -1;
}

void tm_exec_options_init(tm_exec_options *o)
{
    memset(o, 0, sizeof *o);
    o->retries = -1;
}

/* ---- copy runs: the keys of the temporary names (docs/internals.md) ---- */

/* accessors for review.c */

struct tm__db *tm__migration_db(tm_migration *m)
{
    return m && m->open ? m->store.db : NULL;
}

struct tm__buf *tm__migration_err(tm_migration *m)
{
    return &m->err;
}

int tm__migration_readonly(tm_migration *m)
{
    return m->store.readonly;
}

const char *tm__migration_path(tm_migration *m)
{
    return m->store.path;
}

int tm_migration_set_item_log(tm_migration *m, const char *path)
{
    char *p = NULL;
    if (!m)
        return TM_EINVAL;
    if (path && !(p = strdup(path)))
        return TM_ENOMEM;
    free(m->item_log);
    m->item_log = p;
    return 0;
}

int tm_migration_set_limits(tm_migration *m, double bytes_per_s, double ops_per_s)
{
    if (!m || bytes_per_s < 0 || ops_per_s < 0)
        return TM_EINVAL;
    m->bwlimit = bytes_per_s;
    m->tpslimit = ops_per_s;
    return 0;
}
