/*
 * run.c - the copy and the verify seen from the handle: their phases and
 * checks, the copy runs and their keys (the temporary names of a run that
 * did not end are removed before the next one starts; docs/internals.md),
 * the nodes verify cannot check, and the engine's run (tm__exec_run).
 * Runs on the caller's thread; the engine's threads run inside
 * tm__exec_run.
 */
#include "treemig.h"

#include "adapter/adapter.h"
#include "engine/execute.h"
#include "log/log.h"
#include "migration/migration_int.h"
#include "migration/review_int.h"
#include "store/copy_q.h"
#include "store/status_q.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The nodes and file bytes verify checks (copied or already there): a
 * tm__q_stats_sums row callback over copy_stats; ctx is int64_t[2]. */
static void add_to_verify(void *ctx, const char *type, const char *status,
                          int64_t count, int64_t bytes, int conflict)
{
    int64_t *t = ctx;
    (void)conflict;
    if (!status || (strcmp(status, "successful") != 0 &&
                    strcmp(status, "already_existed") != 0))
        return;
    t[0] += count;
    if (type && !strcmp(type, "file"))
        t[1] += bytes;
}

/* The copy's itemized log: one line a node, written by any worker. */
struct item_log {
    pthread_mutex_t mu; /* serializes the lines */
    FILE *f;            /* the file, appended to */
    struct tm__buf line; /* the line being made (under mu) */
    int failed;         /* a write failed: said at the end */
};

/* Writes one line (tm__exec_cfg's item). */
static void item_line(void *ctx, const char *what, int type, int64_t size,
                      const char *path, const char *reason)
{
    struct item_log *l = ctx;
    int rc;
    pthread_mutex_lock(&l->mu);
    tm__buf_reset(&l->line);
    rc = tm__buf_addf(&l->line, "%s\t%s\t%lld\t", what,
                      type >= 0 && type < TM_T_COUNT ? tm__type_names[type] : "?",
                      (long long)size);
    if (!rc)
        rc = tm__buf_add_escaped(&l->line, path, strlen(path));
    if (!rc && reason) {
        rc = tm__buf_addch(&l->line, '\t');
        if (!rc)
            rc = tm__buf_add_escaped(&l->line, reason, strlen(reason));
    }
    if (!rc)
        rc = tm__buf_addch(&l->line, '\n');
    if (rc || fwrite(l->line.buf, 1, l->line.len, l->f) != l->line.len)
        l->failed = 1;
    pthread_mutex_unlock(&l->mu);
}

/* Opens the itemized log at path for appending (0600 when made, never
 * through a symlink) and writes its header. */
static int item_log_open(tm_migration *m, struct item_log *l, const char *path)
{
    char when[32];
    int fd;
    memset(l, 0, sizeof *l);
    tm__buf_init(&l->line);
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return tm__mig_fail(m, tm__from_errno(errno), "cannot open the log file "
                            "%s: %s", path, tm_strerror(tm__from_errno(errno)));
    l->f = fdopen(fd, "a");
    if (!l->f) {
        close(fd);
        return tm__mig_fail(m, TM_ENOMEM, "cannot open the log file %s", path);
    }
    pthread_mutex_init(&l->mu, NULL);
    tm__iso_time(when, tm__wall_ns());
    fprintf(l->f, "# treemig copy %s started %s: WHAT TYPE SIZE PATH [REASON]\n",
            m->cfg.id ? m->cfg.id : "", when);
    return 0;
}

/* Closes the itemized log: 0, or the error of a write. */
static int item_log_close(tm_migration *m, struct item_log *l, const char *path)
{
    int failed = l->failed || fflush(l->f) != 0 || ferror(l->f);
    failed |= fclose(l->f) != 0;
    pthread_mutex_destroy(&l->mu);
    tm__buf_release(&l->line);
    if (failed)
        return tm__mig_fail(m, TM_EIO, "cannot write the log file %s", path);
    return 0;
}

static int run_exec(tm_migration *m, int mode, const tm_exec_options *o,
                    struct tm__adapter *ad[2], const tm_status *st,
                    struct item_log *il, int64_t *problems)
{
    struct tm__exec_cfg cfg;
    char bdir[4096];             /* the backup folder, for cfg */
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = mode;
    cfg.ad[0] = ad[0];
    cfg.ad[1] = ad[1];
    cfg.root[0] = st->src;
    cfg.root[1] = st->dst;
    cfg.db_path = tm__store_conn(&m->store);
    cfg.db = m->store.db;
    /* discovery runs its workers on each side at once; a copy or verify
     * has one pool, as many threads as discovery had in all (small files
     * wait on the file system more than on the CPU: bench/copy.sh) */
    cfg.workers = o->workers > 0 ? o->workers
                                 : 2 * tm__mig_get_int(m->store.db, "workers", 4);
    cfg.retries = o->retries >= 0 ? o->retries : tm__mig_get_int(m->store.db, "retries", 3);
    cfg.no_overwrite = o->no_overwrite;
    cfg.update = o->update;
    {
        /* copy --backup-dir (tm_set_backup_dir): "" or missing is none */
        if (mode == TM_EXEC_COPY &&
            tm__mig_copy_setting(m->store.db, "backup_dir", bdir, sizeof bdir) == 0 &&
            bdir[0])
            cfg.backup_dir = bdir;
    }
    /* discover --owner: owners were compared, the copy sets them and verify
     * compares them; copy --owner alone sets them on what the copy writes */
    cfg.owner_discovered = tm__mig_get_int(m->store.db, "owner", 0);
    cfg.xattrs = !tm__mig_get_int(m->store.db, "no_xattrs", 0);
    cfg.owner = cfg.owner_discovered ||
                (mode == TM_EXEC_COPY ? o->owner
                                      : tm__mig_get_int(m->store.db, "copy_owner", 0));
    cfg.checksum = o->checksum;
    /* how discovery compared files (discover --size-only, --checksum,
     * --modify-window): verify takes what it found equal as equal */
    {
        char cmp[32];
        cfg.found_equal_by_size =
            tm__mig_copy_setting(m->store.db, "compare", cmp, sizeof cmp) == 0 &&
            (!strcmp(cmp, "size-only") || !strcmp(cmp, "checksum"));
        cfg.window = (int64_t)tm__mig_get_int(m->store.db, "modify_window", 0) * 1000000000;
    }
    cfg.bwlimit = m->bwlimit;
    cfg.tpslimit = m->tpslimit;
    cfg.claim = m->claim;
    cfg.total_files = st->copy.pending;
    cfg.total_bytes = st->copy.bytes_pending;
    if (mode == TM_EXEC_VERIFY) {
        /* the progress of verify: what it checks, and hashes (--checksum) */
        int64_t t[2] = { 0, 0 };
        if (tm__q_stats_sums(m->store.db, 2, add_to_verify, t, &m->err) == 0) {
            cfg.total_files = t[0];
            cfg.total_bytes = o->checksum ? t[1] : 0;
        }
        tm__buf_reset(&m->err);
    }
    cfg.stop = &m->stop;
    cfg.progress = o->progress;
    cfg.progress_ctx = o->progress_ctx;
    cfg.err = &m->err;
    {
        struct tm__log_cfg lc;
        int rc = tm__mig_log_settings(m, o->log_level, o->udp_level, o->udp_addr,
                                      o->log_public, &lc);
        if (rc)
            return rc;
        cfg.log = &lc;
        if (il) {
            cfg.item = item_line;
            cfg.item_ctx = il;
        }
        rc = tm__exec_run(&cfg);
        tm__mig_log_release(m);
        *problems = cfg.problems;
        m->lease_lost = cfg.lease_lost;
        return rc;
    }
}

int tm__mig_run_exec(tm_migration *m, int mode, const tm_exec_options *o,
                     struct tm__adapter *ad[2], const tm_status *st,
                     int64_t *problems)
{
    return run_exec(m, mode, o, ad, st, NULL, problems);
}

static void key_hex(const unsigned char key[TM_KEY_LEN], char out[2 * TM_KEY_LEN + 1]);

/* A new copy or verify run (key hex) starts: the leases of earlier runs
 * and phases go (the table holds one run's batches at most; a node whose
 * lease row is gone is free, as with an expired one). */
static int prune_leases(tm_migration *m, const char *hex)
{
    char sql[160];
    snprintf(sql, sizeof sql, "DELETE FROM leases WHERE stage NOT LIKE '%%:%s%%'", hex);
    return tm__store_exec(m->store.db, sql, &m->err);
}

/* On a PostgreSQL database the copy is leased, so that workers (tm_worker)
 * may join it: the run's key and the options they need go to the
 * migration table, and this process claims its tasks as they do. */
static int start_leases(tm_migration *m, const tm_exec_options *o,
                        const unsigned char key[TM_KEY_LEN],
                        struct tm__lease_hook **h)
{
    char hex[2 * TM_KEY_LEN + 1], opts[64];
    int rc, workers = o->workers > 0 ? o->workers
                                     : 2 * tm__mig_get_int(m->store.db, "workers", 4);
    *h = NULL;
    if (!tm__db_is_pg(tm__store_conn(&m->store)))
        return 0;
    key_hex(key, hex);
    snprintf(opts, sizeof opts, "%d %d %d %d", o->no_overwrite, o->update,
             o->retries, o->workers);
    rc = prune_leases(m, hex);
    if (rc)
        return rc;
    rc = tm__store_set(m->store.db, "worker_opts", opts);
    if (!rc)
        rc = tm__store_set(m->store.db, "worker_run", hex);
    if (rc)
        return tm__mig_setting_fail(m, rc);
    rc = tm__lease_hook_start(h, m, hex, hex, 0, workers);
    if (!rc)
        m->claim = tm__lease_hook_claim(*h);
    return rc;
}

/* What copy and verify do first: check the handle, take the options (or
 * the defaults) and read the status. */
static int exec_start(tm_migration *m, const tm_exec_options *opt,
                      tm_exec_options *o, tm_status *st)
{
    if (!m || !m->open || m->store.readonly)
        return TM_EINVAL;
    tm__buf_reset(&m->err);
    tm_exec_options_init(o);
    if (opt)
        *o = *opt;
    return tm_status_get(m, st);
}

static void key_hex(const unsigned char key[TM_KEY_LEN], char out[2 * TM_KEY_LEN + 1])
{
    int i;
    for (i = 0; i < TM_KEY_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", key[i]);
}

static int key_parse(const char *hex, unsigned char key[TM_KEY_LEN])
{
    int i;
    if (!hex || strlen(hex) != 2 * TM_KEY_LEN)
        return TM_ECORRUPT;
    for (i = 0; i < 2 * TM_KEY_LEN; i++) {
        char c = hex[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return TM_ECORRUPT;
        key[i / 2] = (unsigned char)(i % 2 ? (key[i / 2] << 4) | v : v);
    }
    return 0;
}

/* The context of clean_run's callbacks. */
struct clean_ctx {
    tm_migration *m;          /* the handle */
    struct tm__adapter *da;   /* the destination */
    unsigned char key[TM_KEY_LEN]; /* the run's key */
};

/* Removes the temporaries of one pending node (tm__q_copy_pending_leaves'
 * callback). */
static int clean_leaf(void *ctx, const char *path, int type)
{
    struct clean_ctx *c = ctx;
    struct tm__aerr ae;
    int n = tm__adapter_remove_tmp(c->da, path, type, c->key, &ae);
    if (n < 0 && ae.cls == TM_ERR_FATAL)
        return n;
    /* a node's parent that cannot be opened (EACCES) holds nothing the
     * copy could have written either */
    return 0;
}

/* Removes what the copy run of key, which did not end (a crash, a kill),
 * may have left: temporaries of the nodes still pending at the depth it
 * recorded last (depth) and at the next depth that has any (the one it
 * may have started without recording it yet, see record_depth() in
 * execute.c). Names are computed from the key: nothing else is touched.
 * Called by tm__q_copy_runs_unended for each such run (ctx: the clean_ctx
 * with the handle and the destination). */
static int clean_run(void *ctx, const char *hex, int depth)
{
    struct clean_ctx *c = ctx;
    tm_migration *m = c->m;
    int rc = key_parse(hex, c->key), next = -1;

    if (rc)
        return tm__mig_fail(m, rc, "state file %s: a copy run's key is damaged (%s)",
                            m->store.path, hex ? hex : "none");
    rc = tm__q_copy_next_depth(m->store.db, depth, &next, &m->err);
    if (rc)
        return rc;
    rc = tm__q_copy_pending_leaves(m->store.db, depth, next, clean_leaf, c, &m->err);
    if (rc && !m->err.len)
        tm__mig_fail(m, rc, "cannot remove the temporaries of an interrupted copy: %s",
                     tm_strerror(rc));
    return rc;
}

/* Starts a copy run: first removes the leftovers of every earlier run that
 * did not end (their keys are in copy_runs), then records a new random key
 * durably (synchronous=FULL) before the first temporary exists, and gives
 * it to the destination. */
static int start_run(tm_migration *m, struct tm__adapter *da,
                     unsigned char key[TM_KEY_LEN])
{
    struct tm__db *db = m->store.db;
    struct clean_ctx c;
    char hex[2 * TM_KEY_LEN + 1], now[32];
    int rc;

    c.m = m;
    c.da = da;
    rc = tm__q_copy_runs_prepare(db, &m->err);
    if (!rc)
        rc = tm__q_copy_runs_unended(db, clean_run, &c, &m->err);
    if (!rc && (rc = tm__random(key, TM_KEY_LEN)) != 0)
        tm__mig_fail(m, rc, "cannot make a key for the temporary names: %s", tm_strerror(rc));
    if (rc)
        return rc;
    key_hex(key, hex);
    tm__iso_time(now, tm__wall_ns());
    rc = tm__q_copy_run_record(db, hex, now, &m->err);
    if (!rc)
        tm__adapter_set_tmp_key(da, key);
    return rc;
}

/* The run of key ended: its temporaries were renamed or removed. A failure
 * to record it only costs a useless clean-up at the next run. */
static void end_run(tm_migration *m, const unsigned char key[TM_KEY_LEN])
{
    char hex[2 * TM_KEY_LEN + 1], now[32];
    key_hex(key, hex);
    tm__iso_time(now, tm__wall_ns());
    tm__q_copy_run_end(m->store.db, hex, now, NULL);
}

int tm_copy(tm_migration *m, const tm_exec_options *opt)
{
    struct tm__adapter *ad[2] = { NULL, NULL };
    unsigned char run_key[TM_KEY_LEN];
    tm_exec_options o;
    tm_status st;
    enum tm__phase ph;
    char from[32];
    int64_t problems = 0;
    struct item_log il;
    struct tm__lease_hook *leases = NULL;
    int rc, started = 0, logged = 0;

    rc = exec_start(m, opt, &o, &st);
    if (rc)
        return rc;
    rc = tm__mig_copy_setting(m->store.db, "suspended_from", from, sizeof from);
    if (rc)
        return tm__mig_setting_fail(m, rc);
    ph = tm__phase_parse(st.phase);
    if (ph == PH_COPIED || ph == PH_VERIFIED)
        return 0; /* complete: nothing to do */
    if (ph != PH_DISCOVERED && ph != PH_COPYING &&
        !(ph == PH_SUSPENDED && tm__phase_parse(from) == PH_COPYING))
        return tm__mig_fail(m, TM_EPHASE, "discovery is not complete (phase %s): run "
                            "discover first", st.phase);
    if ((st.src_counts.failed || st.dst_counts.failed) && !o.force)
        return tm__mig_fail(m, TM_EPHASE, "%lld source and %lld destination folders "
                            "could not be listed during discovery: run retry, or copy "
                            "--force to copy without them",
                            (long long)st.src_counts.failed, (long long)st.dst_counts.failed);
    /* the itemized log first: a log that cannot be opened changes nothing */
    if (m->item_log) {
        rc = item_log_open(m, &il, m->item_log);
        if (rc)
            return rc;
        logged = 1;
    }
    rc = tm__mig_open_stored(m, ad);
    if (!rc && (o.owner || tm__mig_get_int(m->store.db, "owner", 0)))
        rc = tm__mig_check_owner(m, ad, !o.owner);
    /* verify then expects the set-ID bits the copy kept with the owners */
    if (!rc && o.owner)
        rc = tm__store_set(m->store.db, "copy_owner", "1");
    if (!rc)
        rc = tm__q_copy_index(m->store.db, &m->err);
    if (!rc)
        rc = start_run(m, ad[TM_DST], run_key);
    if (!rc) {
        started = 1;
        rc = tm__mig_set_phase(m, PH_COPYING);
    }
    if (!rc)
        rc = start_leases(m, &o, run_key, &leases);
    if (!rc) {
        rc = run_exec(m, TM_EXEC_COPY, &o, ad, &st, logged ? &il : NULL, &problems);
        m->claim = NULL;
        tm__lease_hook_stop(leases);
        leases = NULL;
        if (rc == 0) {
            rc = tm__mig_set_phase(m, PH_COPIED);
        } else {
            struct tm__buf keep = TM__BUF_INIT;
            tm__buf_add(&keep, m->err.buf, m->err.len);
            tm__mig_set_phase_from(m, PH_SUSPENDED, PH_COPYING);
            tm__buf_reset(&m->err);
            tm__buf_add(&m->err, keep.buf, keep.len);
            tm__buf_release(&keep);
            if (rc == TM_ESTOPPED && !m->err.len)
                tm__mig_fail(m, rc, "copy interrupted; run copy again to resume");
        }
    }
    m->claim = NULL;
    tm__lease_hook_stop(leases);
    if (started)
        end_run(m, run_key); /* every temporary was renamed or removed */
    if (logged) {
        int lrc = item_log_close(m, &il, m->item_log);
        if (!rc)
            rc = lrc;
    }
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    if (rc && !m->err.len)
        tm__mig_fail(m, rc, "%s", tm_strerror(rc));
    return rc;
}

int tm_verify(tm_migration *m, const tm_exec_options *opt, int64_t *mismatches)
{
    struct tm__adapter *ad[2] = { NULL, NULL };
    tm_exec_options o;
    tm_status st;
    enum tm__phase ph;
    int64_t not_checked = 0;
    struct tm__lease_hook *leases = NULL;
    unsigned char vkey[TM_KEY_LEN];
    char vhex[2 * TM_KEY_LEN + 1];
    int rc, pg, leased;

    *mismatches = 0;
    rc = exec_start(m, opt, &o, &st);
    if (rc)
        return rc;
    ph = tm__phase_parse(st.phase);
    if (ph != PH_COPIED && ph != PH_VERIFIED)
        return tm__mig_fail(m, TM_EPHASE, "the copy is not complete (phase %s): run copy "
                            "first", st.phase);
    rc = tm__mig_open_stored(m, ad);
    if (!rc)
        rc = tm__q_verify_clear(m->store.db, &m->err);
    /* verified means: every source node that should be on the destination
     * was checked and matches. What cannot be checked is said, node by
     * node, before the check (it marks its own findings failed): folders
     * that could not be listed (what they hold is unknown), nodes whose
     * copy failed or did not happen, and files whose destination version
     * --no-overwrite kept */
    if (!rc)
        rc = tm__q_verify_unchecked(m->store.db, tm__wall_ns(), &not_checked, &m->err);
    /* on PostgreSQL, workers (tm_worker) may join: the run's key and its
     * options go to the migration table, this process claims folders as
     * they do */
    pg = tm__db_is_pg(tm__store_conn(&m->store));
    if (!rc && pg && (rc = tm__random(vkey, TM_KEY_LEN)) != 0)
        tm__mig_fail(m, rc, "cannot make a key for the verify run: %s", tm_strerror(rc));
    if (!rc && pg) {
        char opts[16];
        key_hex(vkey, vhex);
        snprintf(opts, sizeof opts, "%d %d", o.checksum, o.workers);
        rc = prune_leases(m, vhex);
        if (!rc)
            rc = tm__store_set(m->store.db, "verify_opts", opts);
        if (!rc)
            rc = tm__store_set(m->store.db, "verify_run", vhex);
        if (rc)
            rc = tm__mig_setting_fail(m, rc);
        if (!rc)
            rc = tm__lease_hook_start(&leases, m, vhex, vhex, 0,
                                      o.workers > 0 ? o.workers
                                                    : 2 * tm__mig_get_int(m->store.db,
                                                                          "workers", 4));
        if (!rc)
            m->claim = tm__lease_hook_claim(leases);
    }
    if (!rc)
        rc = run_exec(m, TM_EXEC_VERIFY, &o, ad, &st, NULL, mismatches);
    m->claim = NULL;
    leased = leases != NULL;
    tm__lease_hook_stop(leases);
    if (pg)
        tm__store_set(m->store.db, "verify_run", "");
    if (!rc && leased) {
        /* what every worker found, each finding once */
        int64_t n = 0;
        rc = tm__q_verify_dedupe(m->store.db, &n, &m->err);
        if (!rc)
            *mismatches = n - not_checked;
    }
    /* after the check: a node an earlier verify found wrong that this one
     * did not reach (its folder was not listed) is still wrong as far as
     * anyone knows; it is not checked, and counted too */
    if (!rc)
        rc = tm__q_verify_unchecked_again(m->store.db, tm__wall_ns(), &not_checked,
                                          &m->err);
    if (!rc)
        *mismatches += not_checked;
    if (!rc)
        rc = tm__mig_set_phase(m, *mismatches ? PH_COPIED : PH_VERIFIED);
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    if (rc && !m->err.len)
        tm__mig_fail(m, rc, "%s", tm_strerror(rc));
    return rc;
}
