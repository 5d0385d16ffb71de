/*
 * plan.c - discovery seen from the handle: a new migration recorded
 * (roots, options, root rows, in one transaction), an existing one checked
 * against what is given again, the engine's discovery run and its
 * milestones, the nodes a type clash blocks marked skipped when it
 * completes (tm_discover), and tm_resume, which goes on with whichever
 * phase was interrupted. Not src/engine/discover.c, the walk itself. Runs
 * on the caller's thread; the engine's threads run inside tm__discover_run.
 */
#include "treemig.h"

#include "adapter/adapter.h"
#include "engine/engine.h"
#include "log/log.h"
#include "migration/migration_int.h"
#include "store/plan_q.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/util.h"

#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Joins the filter rules of o into out, one per line; a rule whose glob
 * is refused (tm__filter_check) is a usage error with the reason. */
static int join_excludes(tm_migration *m, const tm_discover_options *o,
                         struct tm__buf *out)
{
    char why[512];
    size_t i;
    for (i = 0; o && i < o->n_excludes; i++) {
        if (tm__filter_check(o->excludes[i], why, sizeof why))
            return tm__mig_fail(m, TM_EINVAL, "filter rule %s", why);
        if (i && tm__buf_addch(out, '\n'))
            return TM_ENOMEM;
        if (tm__buf_adds(out, o->excludes[i]))
            return TM_ENOMEM;
    }
    return 0;
}

static const char *const compare_names[] = { "size-mtime", "size-only", "checksum" };

/* Checks the comparison and the size and age filters of o. */
static int check_compare(tm_migration *m, const tm_discover_options *o)
{
    if (o->compare < TM_COMPARE_DEFAULT || o->compare > TM_COMPARE_CHECKSUM)
        return tm__mig_fail(m, TM_EINVAL, "unknown comparison %d", o->compare);
    if (o->modify_window < 0 || o->modify_window > 86400)
        return tm__mig_fail(m, TM_EINVAL, "--modify-window takes 0 to 86400 seconds, "
                            "not %d", o->modify_window);
    if (o->min_size < 0 || o->max_size < 0 || o->min_age < 0 || o->max_age < 0)
        return tm__mig_fail(m, TM_EINVAL, "a size or age limit is negative");
    if (o->max_size && o->min_size > o->max_size)
        return tm__mig_fail(m, TM_EINVAL, "--min-size %" PRId64 " is above --max-size "
                            "%" PRId64 ": nothing would be migrated", o->min_size,
                            o->max_size);
    if (o->max_age && o->min_age > o->max_age)
        return tm__mig_fail(m, TM_EINVAL, "--min-age %" PRId64 " s is above --max-age "
                            "%" PRId64 " s: nothing would be migrated", o->min_age,
                            o->max_age);
    if (o->max_age > INT64_MAX / 1000000000 || o->min_age > INT64_MAX / 1000000000)
        return tm__mig_fail(m, TM_EINVAL, "an age limit is too large");
    return 0;
}

static int set_i64(struct tm__db *db, const char *key, int64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%" PRId64, v);
    return tm__store_set(db, key, s);
}

/* Records the comparison and the size and age filters of a new migration
 * (inside its transaction); the ages become mtime bounds from now. */
static int store_compare(struct tm__db *db, const tm_discover_options *o)
{
    int64_t now = tm__wall_ns();
    int rc = tm__store_set(db, "compare", compare_names[o->compare]);
    if (!rc && o->modify_window) rc = tm__mig_set_int(db, "modify_window", o->modify_window);
    if (!rc && o->min_size) rc = set_i64(db, "min_size", o->min_size);
    if (!rc && o->max_size) rc = set_i64(db, "max_size", o->max_size);
    if (!rc && o->min_age) rc = set_i64(db, "min_age", o->min_age);
    if (!rc && o->max_age) rc = set_i64(db, "max_age", o->max_age);
    if (!rc && o->min_age)
        rc = set_i64(db, "mtime_max", now - o->min_age * 1000000000);
    if (!rc && o->max_age)
        rc = set_i64(db, "mtime_min", now - o->max_age * 1000000000);
    return rc;
}

/* TM_COMPARE_* recorded (a state file made before it: the default). */
static int stored_compare(struct tm__db *db)
{
    struct tm__buf b = TM__BUF_INIT;
    int i, v = TM_COMPARE_DEFAULT;
    if (tm__store_get(db, "compare", &b) == 0)
        for (i = 0; i < 3; i++)
            if (!strcmp(b.buf, compare_names[i]))
                v = i;
    tm__buf_release(&b);
    return v;
}

/* Options of a new migration given again on an existing one must match
 * what it recorded. */
static int check_compare_again(tm_migration *m, const tm_discover_options *o)
{
    struct tm__db *db = m->store.db;
    const char *what = NULL;
    if (o->compare && o->compare != stored_compare(db))
        what = o->compare == TM_COMPARE_SIZE_ONLY ? "--size-only" : "--checksum";
    else if (o->modify_window && o->modify_window != tm__mig_get_int(db, "modify_window", 0))
        what = "--modify-window";
    else if (o->min_size && o->min_size != tm__mig_get_i64(db, "min_size"))
        what = "--min-size";
    else if (o->max_size && o->max_size != tm__mig_get_i64(db, "max_size"))
        what = "--max-size";
    else if (o->min_age && o->min_age != tm__mig_get_i64(db, "min_age"))
        what = "--min-age";
    else if (o->max_age && o->max_age != tm__mig_get_i64(db, "max_age"))
        what = "--max-age";
    if (!what)
        return 0;
    return tm__mig_fail(m, TM_EMISMATCH, "%s: this migration was discovered with "
                        "another value (or without it); it is recorded with the "
                        "migration: start a new migration (another state file) to "
                        "change it", what);
}

/* Records a new migration: roots, options, root rows, stats. One
 * transaction: a crash leaves either nothing or all of it. */
int tm__mig_note_rows(struct tm__db *db)
{
    char v[32];
    int64_t n = tm__db_total_changes(db);
    if (n < 0)
        return 0; /* not known (PostgreSQL) */
    snprintf(v, sizeof v, "%" PRId64, n + 1); /* this row too */
    return tm__store_set(db, "rows_written", v);
}

int tm__mig_seed_roots(struct tm__db *db, const struct tm__entry root[2])
{
    struct tm__stats_delta d = TM__STATS_DELTA_INIT;
    struct tm__stat_key k;
    int rc = tm__q_insert_root(db, TM_SRC, root[0].mtime, root[0].mode);
    if (!rc) rc = tm__q_insert_root(db, TM_DST, root[1].mtime, root[1].mode);
    k = (struct tm__stat_key){ 0, 0, TM_T_FOLDER, TS_PENDING, 0 };
    if (!rc) rc = tm__stats_add(&d, &k, 1, 0);
    k = (struct tm__stat_key){ 1, 0, TM_T_FOLDER, TS_PENDING, 0 };
    if (!rc) rc = tm__stats_add(&d, &k, 1, 0);
    k = (struct tm__stat_key){ 2, 0, TM_T_FOLDER, CS_ALREADY, 0 };
    if (!rc) rc = tm__stats_add(&d, &k, 1, 0);
    if (!rc) rc = tm__stats_apply(db, &d);
    tm__stats_release(&d);
    return rc;
}

/* Whether this discovery is to be shared by workers: --shared (o->shared)
 * or the environment, and only on PostgreSQL (check_shared). Not the
 * default: one process listing under leases takes about twice the time
 * of one listing alone (docs/scale-out.md). */
static int shared_asked(tm_migration *m, const tm_discover_options *o)
{
    const char *sh = getenv("TREEMIG_SHARED_DISCOVERY");
    return (o->shared || (sh && !strcmp(sh, "1"))) &&
           tm__db_is_pg(tm__store_conn(&m->store));
}

/* --shared needs a database that other processes reach. */
static int check_shared(tm_migration *m, const tm_discover_options *o)
{
    if (o->shared && !tm__db_is_pg(tm__store_conn(&m->store)))
        return tm__mig_fail(m, TM_EINVAL, "--shared: workers share a discovery through a "
                            "PostgreSQL state database (--db postgresql://...), not "
                            "the state file %s", m->store.path);
    return 0;
}

static int create_migration(tm_migration *m, const char *src, const char *dst,
                            const char *excludes, const tm_discover_options *o,
                            struct tm__adapter *ad[2])
{
    struct tm__db *db = m->store.db;
    struct tm__entry root[2];
    unsigned char rnd[16];
    char id[33], now[32];
    int rc, i, fd;

    for (i = 0; i < 2; i++) {
        struct tm__aerr ae;
        rc = tm__adapter_stat(ad[i], "/", &root[i], &ae);
        if (rc) {
            const char *msg = ae.msg;
            /* a root that is gone is a usage error; a storage that fails
             * (i/o error, timeout) is not */
            return tm__mig_fail(m, rc == TM_ENOENT || rc == TM_ENOTDIR ? TM_EROOT : rc,
                                "cannot stat %s root: %s", i ? "destination" : "source",
                                msg);
        }
    }
    fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, rnd, sizeof rnd) != (ssize_t)sizeof rnd) {
        int64_t t = tm__wall_ns() ^ (int64_t)getpid();
        for (i = 0; i < 16; i++)
            rnd[i] = (unsigned char)(t >> ((i % 8) * 8)) ^ (unsigned char)i;
    }
    if (fd >= 0)
        close(fd);
    for (i = 0; i < 16; i++)
        snprintf(id + i * 2, 3, "%02x", rnd[i]);
    tm__iso_time(now, tm__wall_ns());

    rc = tm__store_begin(db, &m->err);
    if (rc)
        return rc;
    rc = tm__store_set(db, "schema_version", "1");
    if (!rc) rc = tm__store_set(db, "id", id);
    if (!rc) rc = tm__store_set(db, "created", now);
    if (!rc) rc = tm__store_set(db, "src", src);
    if (!rc) rc = tm__store_set(db, "dst", dst);
    if (!rc) rc = tm__store_set(db, "excludes", excludes);
    if (!rc) rc = tm__mig_set_int(db, "workers", o->workers);
    if (!rc) rc = tm__mig_set_int(db, "lead", o->lead);
    if (!rc) rc = tm__mig_set_int(db, "retries", o->retries);
    if (!rc) rc = tm__store_set(db, "src_round", "0");
    if (!rc) rc = tm__store_set(db, "dst_round", "0");
    if (!rc && o->allow_pseudo_fs) rc = tm__store_set(db, "allow_pseudo_fs", "1");
    if (!rc && o->owner) rc = tm__store_set(db, "owner", "1");
    if (!rc && o->no_specials) rc = tm__store_set(db, "no_specials", "1");
    if (!rc && o->one_file_system) rc = tm__store_set(db, "one_fs", "1");
    if (!rc && o->no_xattrs) rc = tm__store_set(db, "no_xattrs", "1");
    if (!rc) rc = store_compare(db, o);
    if (!rc) rc = tm__mig_sopts_store(m);
    for (i = 0; i < 2 && !rc; i++) {
        /* what each root is, so that a folder put in its place is refused */
        struct tm__root_info ri;
        if (tm__adapter_root_info(ad[i], &ri) == 0 && ri.id[0])
            rc = tm__store_set(db, i ? "dst_id" : "src_id", ri.id);
    }
    if (!rc && shared_asked(m, o))
        /* the claims' indexes, made while the node tables are empty: an
         * index made over a table of a row or two gives the server its
         * size, and the claims' plans stay sequential scans of a table
         * that grows (docs/BENCHMARKS.md, "HOT folder updates") */
        rc = tm__store_claim_indexes(db, &m->err);
    if (!rc) rc = tm__mig_seed_roots(db, root);
    if (!rc) rc = tm__mig_set_phase(m, PH_ROOTS_SET);
    if (!rc) rc = tm__store_commit(db, &m->err);
    if (rc) {
        tm__store_rollback(db);
        if (!m->err.len)
            tm__mig_fail(m, rc, "cannot record the migration: %s", tm__store_errmsg(db));
    }
    return rc;
}

/* The default operations in flight per side for storages src and dst: the
 * larger of their kinds' (a remote storage wants many, a local disk few). */
static int kind_workers(const char *src, const char *dst)
{
    int a = tm__kind_of(src)->default_workers, b = tm__kind_of(dst)->default_workers;
    return a > b ? a : b;
}

static void fill_defaults(tm_discover_options *o)
{
    if (o->workers <= 0)
        o->workers = 4;
    if (o->lead <= 0)
        o->lead = 3;
    if (o->retries < 0)
        o->retries = 3;
}

/* The copy never enters a source folder whose destination twin is a file
 * (a type clash): everything below it still pending is marked skipped when
 * discovery completes, so that "to copy" counts only what will be copied.
 * Run again after every completion (a retry may have listed more below
 * such a folder). */
static int skip_blocked(tm_migration *m)
{
    return tm__q_skip_blocked(m->store.db, &m->err);
}

/* The end of a discovery: what a type clash blocks is skipped, and the
 * phase becomes discovered. On a shared store every process that saw
 * nothing left gets here: one at a time (an advisory lock), and only the
 * first one, which finds the phase still discovering (or suspended by a
 * starter that was stopped while workers went on), does it. */
static int finish_discovery_once(tm_migration *m);

/* finish_discovery_once, again when the connection was lost (a server
 * restarted): each of its steps may be done twice (the skip in one
 * transaction, the phase written again, the lock taken anew). */
static int finish_discovery(tm_migration *m)
{
    int rc = finish_discovery_once(m);
    if (rc == TM_EIO && tm__db_is_pg(tm__store_conn(&m->store))) {
        tm__buf_reset(&m->err);
        rc = finish_discovery_once(m);
    }
    return rc;
}

static int finish_discovery_once(tm_migration *m)
{
    struct tm__db *db = m->store.db;
    int pg = tm__db_is_pg(tm__store_conn(&m->store)), rc = 0;
    if (pg) {
        char phase[32];
        rc = tm__store_exec(db, "SELECT pg_advisory_lock(7226017)", &m->err);
        if (rc) {
            /* a connection lost while idle is noticed only now: the
             * statement again connects anew (db_pg.c) */
            tm__buf_reset(&m->err);
            rc = tm__store_exec(db, "SELECT pg_advisory_lock(7226017)", &m->err);
        }
        if (rc)
            return rc;
        rc = tm__mig_copy_setting(db, "phase", phase, sizeof phase);
        if (rc) {
            rc = tm__mig_setting_fail(m, rc);
        } else if (tm__phase_parse(phase) != PH_DISCOVERING &&
                   tm__phase_parse(phase) != PH_SUSPENDED) {
            tm__store_exec(db, "SELECT pg_advisory_unlock(7226017)", NULL);
            return 0; /* another process ended it */
        }
    }
    if (!rc)
        rc = skip_blocked(m);
    if (!rc)
        rc = tm__mig_set_phase(m, PH_DISCOVERED);
    if (!rc)
        rc = tm__mig_note_rows(db);
    if (!rc && pg) /* what killed workers held is of no use any more */
        rc = tm__store_exec(db, "DELETE FROM leases WHERE stage LIKE 'list:%'", &m->err);
    if (pg)
        tm__store_exec(db, "SELECT pg_advisory_unlock(7226017)", NULL);
    return rc;
}

int tm_discover(tm_migration *m, const char *src, const char *dst,
                const tm_discover_options *opt)
{
    tm_discover_options o;
    struct tm__buf phase = TM__BUF_INIT, s_src = TM__BUF_INIT,
                   s_dst = TM__BUF_INIT, exc = TM__BUF_INIT, s_exc = TM__BUF_INIT;
    struct tm__adapter *ad[2] = { NULL, NULL };
    char *rsrc = NULL, *rdst = NULL, **globs = NULL;
    size_t n_globs = 0, src_plen = src ? tm__mig_fault_prefix_len(src) : 0,
           dst_plen = dst ? tm__mig_fault_prefix_len(dst) : 0;
    enum tm__phase ph;
    int rc, fresh = 0;
    struct tm__db *db;

    if (!m || !m->open)
        return TM_EINVAL;
    if (m->store.readonly)
        return tm__mig_fail(m, TM_EINVAL, "state file opened read-only");
    db = m->store.db;
    tm__buf_reset(&m->err);
    tm_discover_options_init(&o);
    if (opt)
        o = *opt;
    rc = join_excludes(m, opt, &exc);
    if (!rc)
        rc = check_compare(m, &o);
    if (!rc)
        rc = check_shared(m, &o);
    if (!rc)
        rc = tm__mig_check_log_options(m, &o);
    if (!rc && src_plen)
        rc = tm__mig_check_fault_prefix(m, src, src_plen);
    if (!rc && dst_plen)
        rc = tm__mig_check_fault_prefix(m, dst, dst_plen);
    if (rc)
        goto out;
    rc = tm__store_get(db, "phase", &phase);
    fresh = rc == TM_ENOENT;
    if (rc && !fresh) {
        tm__mig_fail(m, rc, "cannot read the state file: %s", tm__store_errmsg(db));
        goto out;
    }
    if (o.config) {
        char *copy = strdup(o.config), *dir = copy ? dirname(copy) : NULL;
        int ok = dir && access(dir, W_OK) == 0;
        free(copy);
        if (!ok) {
            rc = tm__mig_fail(m, TM_EINVAL, "cannot write the YAML file %s: its folder does "
                              "not exist or is not writable", o.config);
            goto out;
        }
    }
    if (fresh) {
        if (!src || !dst) {
            rc = tm__mig_fail(m, TM_EINVAL, "a new migration needs a source and a "
                              "destination");
            goto out;
        }
        rc = tm__mig_resolve_spec(m, "source", src + src_plen, &rsrc);
        if (!rc)
            rc = tm__mig_resolve_spec(m, "destination", dst + dst_plen, &rdst);
        if (!rc)
            rc = tm__mig_check_roots(m, rsrc, rdst);
        if (rc)
            goto out;
        if (o.workers <= 0)
            o.workers = kind_workers(rsrc, rdst);
        fill_defaults(&o);
        rc = tm__mig_open_side(m, TM_SRC, src, src_plen, rsrc, &ad[0]);
        if (!rc)
            rc = tm__mig_open_side(m, TM_DST, dst, dst_plen, rdst, &ad[1]);
        if (!rc) {
            const char *roots[2] = { rsrc, rdst };
            char *yaml = tm__mig_yaml_path_for(m, o.config);
            rc = tm__mig_check_sides(m, ad, roots, yaml, 0, o.allow_pseudo_fs);
            free(yaml);
        }
        if (!rc && o.owner)
            rc = tm__mig_check_owner_caps(m, ad);
        if (rc)
            goto out;
        rc = create_migration(m, rsrc, rdst, exc.buf, &o, ad);
        if (rc)
            goto out;
        tm__buf_reset(&phase);
        tm__buf_adds(&phase, tm__phase_name(PH_ROOTS_SET));
    } else {
        if ((rc = tm__store_get(db, "src", &s_src)) != 0 ||
            (rc = tm__store_get(db, "dst", &s_dst)) != 0) {
            rc = tm__mig_fail(m, TM_ECORRUPT, "the state file names no roots");
            goto out;
        }
        rc = tm__mig_sopts_load(m);
        if (!rc)
            rc = tm__mig_sopts_store(m);
        if (rc)
            goto out;
        /* missing is none; a read that fails must not drop them */
        rc = tm__store_get(db, "excludes", &s_exc);
        if (rc && rc != TM_ENOENT) {
            tm__mig_fail(m, rc, "cannot read the excludes from the state file: %s",
                         tm_strerror(rc));
            goto out;
        }
        rc = 0;
        if (src) {
            rc = tm__mig_resolve_spec(m, "source", src + src_plen, &rsrc);
            if (rc)
                goto out;
            if (strcmp(rsrc, s_src.buf) != 0) {
                rc = tm__mig_fail(m, TM_EMISMATCH, "the state file %s belongs to a "
                                  "migration from %s, not %s", m->store.path, s_src.buf,
                                  rsrc);
                goto out;
            }
        }
        if (dst) {
            rc = tm__mig_resolve_spec(m, "destination", dst + dst_plen, &rdst);
            if (rc)
                goto out;
            if (strcmp(rdst, s_dst.buf) != 0) {
                rc = tm__mig_fail(m, TM_EMISMATCH, "the state file %s belongs to a "
                                  "migration to %s, not %s", m->store.path, s_dst.buf,
                                  rdst);
                goto out;
            }
        }
        if (opt && opt->n_excludes && strcmp(exc.buf, s_exc.buf) != 0) {
            rc = tm__mig_fail(m, TM_EMISMATCH, "the excludes differ from the ones this "
                              "migration was discovered with");
            goto out;
        }
        if ((rc = check_compare_again(m, &o)) != 0)
            goto out;
        if (opt && opt->owner && !tm__mig_get_int(db, "owner", 0)) {
            rc = tm__mig_fail(m, TM_EMISMATCH, "--owner: this migration was discovered "
                              "without it, and owners cannot be compared for what is "
                              "recorded already; start a new migration (another state "
                              "file) with discover --owner");
            goto out;
        }
        if (opt && ((opt->no_specials && !tm__mig_get_int(db, "no_specials", 0)) ||
                    (opt->one_file_system && !tm__mig_get_int(db, "one_fs", 0)) ||
                    (opt->no_xattrs && !tm__mig_get_int(db, "no_xattrs", 0)))) {
            rc = tm__mig_fail(m, TM_EMISMATCH, "--%s: this migration was discovered "
                              "without it; start a new migration (another state "
                              "file) with it", opt->no_specials ? "no-specials"
                              : opt->one_file_system ? "one-file-system"
                                                     : "no-xattrs");
            goto out;
        }
        if (o.workers <= 0)
            rc = tm__mig_get_int_checked(m, "workers", 4, &o.workers);
        if (!rc && o.lead <= 0)
            rc = tm__mig_get_int_checked(m, "lead", 3, &o.lead);
        if (!rc && o.retries < 0)
            rc = tm__mig_get_int_checked(m, "retries", 3, &o.retries);
        if (rc)
            goto out;
        fill_defaults(&o);
        tm__buf_reset(&exc);
        rc = tm__buf_add(&exc, s_exc.buf, s_exc.len);
        if (rc)
            goto out; /* with no excludes the rest would be discovered unfiltered */
    }
    ph = tm__phase_parse(phase.buf);
    if (m->joining && (ph != PH_DISCOVERING || tm__mig_get_int(db, "pass_running", 0) > 0)) {
        /* a worker came late: nothing to join; or the discovery is a pass
         * (rescan), which one process runs: its copy is shared */
        rc = 0;
        goto out;
    }
    if (ph != PH_ROOTS_SET && ph != PH_DISCOVERING && ph != PH_SUSPENDED) {
        rc = 0; /* discovery is complete: nothing to do */
        goto out;
    }
    if (!ad[0]) {
        rc = tm__mig_open_side(m, TM_SRC, src, src_plen, s_src.buf, &ad[0]);
        if (!rc)
            rc = tm__mig_open_side(m, TM_DST, dst, dst_plen, s_dst.buf, &ad[1]);
        if (!rc) {
            const char *roots[2] = { s_src.buf, s_dst.buf };
            char *yaml = tm__mig_yaml_path_for(m, o.config);
            rc = tm__mig_check_sides(m, ad, roots, yaml, 1, 0);
            free(yaml);
        }
        if (rc)
            goto out;
    }
    globs = tm__mig_split_lines(exc.buf, &n_globs);
    if (!globs) {
        rc = TM_ENOMEM;
        goto out;
    }
    rc = tm__mig_config_prepare(m, o.config, &o, globs, n_globs);
    if (rc)
        goto out;
    if (ph == PH_ROOTS_SET && fresh)
        rc = tm__mig_save_config(m); /* milestone: roots set and seeded */
    if (!m->joining) {
        if (!rc) rc = tm__mig_set_int(db, "workers", o.workers);
        if (!rc) rc = tm__mig_set_int(db, "lead", o.lead);
        if (!rc) rc = tm__mig_set_int(db, "retries", o.retries);
        if (!rc) rc = tm__mig_set_phase(m, PH_DISCOVERING);
    }
    if (rc)
        goto out;
    {
        struct tm__log_cfg lc;
        struct tm__discover_cfg cfg = {
            { ad[0], ad[1] }, tm__store_conn(&m->store), db, o.workers, o.lead, o.retries,
            (const char *const *)globs, n_globs, &m->stop, o.progress,
            o.progress_ctx, &m->err, tm__mig_on_round, m, &lc,
            { rsrc ? rsrc : s_src.buf, rdst ? rdst : s_dst.buf },
            tm__mig_get_int(db, "owner", 0), tm__mig_get_int(db, "no_specials", 0),
            tm__mig_get_int(db, "one_fs", 0), tm__mig_get_i64(db, "min_size"),
            tm__mig_get_i64(db, "max_size"), tm__mig_get_i64(db, "mtime_min"),
            tm__mig_get_i64(db, "mtime_max"), stored_compare(db),
            (int64_t)tm__mig_get_int(db, "modify_window", 0) * 1000000000,
            !tm__mig_get_int(db, "no_xattrs", 0),
            tm__mig_get_int(db, "pass_running", 0) > 0, NULL, 0,
        };
        struct tm__lease_hook *lh = NULL;
        rc = tm__mig_log_settings(m, o.log_level, o.udp_level, o.udp_addr, o.log_public,
                                  &lc);
        if (!rc && !m->joining)
            rc = tm__mig_save_config(m);
        if (m->joining)
            cfg.on_round = NULL; /* the YAML file is the starter's */
        if (!rc && !m->joining && !cfg.pass && ph == PH_ROOTS_SET &&
            tm__db_is_pg(tm__store_conn(&m->store))) {
            /* discovery by workers, when asked for (--shared): the
             * setting tells workers and resumes */
            rc = tm__mig_set_int(db, "shared_discovery", shared_asked(m, &o));
        }
        if (!rc && !m->joining && !cfg.pass &&
            tm__mig_get_int(db, "shared_discovery", 0) == 1 &&
            tm__db_is_pg(tm__store_conn(&m->store)))
            /* made with the state (create_migration); here for a state
             * file of version 13 or older, whose upgrade dropped them */
            rc = tm__store_claim_indexes(db, &m->err);
        if (!rc && !cfg.pass && tm__mig_get_int(db, "shared_discovery", 0) == 1 &&
            tm__db_is_pg(tm__store_conn(&m->store))) {
            /* a shared store: the folders are leased, whoever lists them
             * (this process and any treemig worker); a pass (rescan) is
             * listed by the process that runs it, merging with the rows
             * there, and no worker joins it */
            rc = tm__lease_hook_start_disc(&lh, m, m->join_lease_s, o.workers);
            cfg.claim = lh ? tm__lease_hook_disc(lh) : NULL;
        }
        if (rc) {
            /* a setting's write that failed left no message (a server
             * gone since the phase was set): the database's own */
            if (!m->err.len)
                tm__mig_fail(m, rc, "state file %s: cannot write its settings: %s",
                             m->store.path, tm__store_errmsg(db));
            tm__mig_log_release(m);
            goto out;
        }
        rc = tm__discover_run(&cfg);
        m->lease_lost = cfg.lease_lost;
        tm__lease_hook_stop(lh);
        tm__mig_log_release(m);
    }
    if (rc == 0)
        rc = finish_discovery(m);
    if (rc && m->joining) {
        /* a worker's failure or stop is its own: the phase goes on with
         * the others (its leases expire) */
        if (rc == TM_ESTOPPED && !m->err.len)
            tm__mig_fail(m, rc, "worker stopped; the discovery goes on with the "
                         "other workers");
    } else if (rc) {
        int prc = rc;
        /* keep the engine's message; record that the phase stopped */
        struct tm__buf keep = TM__BUF_INIT;
        tm__buf_add(&keep, m->err.buf, m->err.len);
        tm__mig_set_phase_from(m, PH_SUSPENDED, PH_DISCOVERING);
        tm__buf_reset(&m->err);
        tm__buf_add(&m->err, keep.buf, keep.len);
        tm__buf_release(&keep);
        if (prc == TM_ESTOPPED && !m->err.len)
            tm__mig_fail(m, prc, "discovery interrupted; run discover again to resume");
        rc = prc;
    }
out:
    if (rc && m->store.fresh) {
        /* nothing was recorded: leave no empty state file behind */
        struct tm__buf p = TM__BUF_INIT;
        if (tm__store_get(db, "phase", &p) == TM_ENOENT)
            m->discard = 1;
        tm__buf_release(&p);
    }
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    free(rsrc);
    free(rdst);
    free(globs);
    tm__buf_release(&phase);
    tm__buf_release(&s_src);
    tm__buf_release(&s_dst);
    tm__buf_release(&exc);
    tm__buf_release(&s_exc);
    if (rc && !m->err.len)
        tm__mig_fail(m, rc, "%s", tm_strerror(rc));
    return rc;
}

int tm_resume(tm_migration *m, const tm_discover_options *opt)
{
    struct tm__buf phase = TM__BUF_INIT;
    tm_discover_options o;
    int rc;
    if (!m || !m->open)
        return TM_EINVAL;
    tm_discover_options_init(&o);
    if (opt)
        o = *opt;
    o.excludes = NULL; /* the stored ones apply */
    o.n_excludes = 0;
    rc = tm__store_get(m->store.db, "phase", &phase);
    if (rc) {
        tm__buf_release(&phase);
        if (rc != TM_ENOENT)
            return tm__mig_setting_fail(m, rc);
        return tm__mig_fail(m, TM_ECORRUPT, "the state file %s records no migration",
                            m->store.path);
    }
    {
        char from[32];
        int copying;
        rc = tm__mig_copy_setting(m->store.db, "suspended_from", from, sizeof from);
        if (rc) {
            tm__buf_release(&phase);
            return tm__mig_setting_fail(m, rc);
        }
        enum tm__phase ph = tm__phase_parse(phase.buf);
        copying = ph == PH_COPYING ||
                  (ph == PH_SUSPENDED && tm__phase_parse(from) == PH_COPYING);
        tm__buf_release(&phase);
        if (copying) {
            tm_exec_options eo;
            tm_exec_options_init(&eo);
            eo.workers = o.workers;
            eo.retries = o.retries;
            eo.progress = o.progress;
            eo.progress_ctx = o.progress_ctx;
            eo.force = 1; /* the copy was started once: it goes on */
            return tm_copy(m, &eo);
        }
    }
    /* a discovery that is complete returns at once */
    return tm_discover(m, NULL, NULL, &o);
}
