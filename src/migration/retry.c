/*
 * retry.c - tm_retry: the folders that could not be listed and the copies
 * that failed are made pending again (their rows refreshed from the
 * storages where what failed has changed since), then discovery and the
 * copy go on from them. Runs on the caller's thread.
 */
#include "treemig.h"

#include "adapter/adapter.h"
#include "engine/engine.h"
#include "migration/migration_int.h"
#include "store/retry_q.h"
#include "store/store.h"
#include "util/buf.h"

#include <stdlib.h>
#include <string.h>

/* The storage's stat for the refreshes (tm__q_stat_fn; ctx is the
 * adapter). */
static int stat_cb(void *ctx, const char *path, struct tm__entry *e)
{
    struct tm__aerr ae;
    return tm__adapter_stat(ctx, path, e, &ae);
}

/* A file or symlink whose copy failed because something was made at its
 * name on the destination after discovery (the copy never replaces what
 * discovery did not see) is compared with it again, as discovery would
 * have: it gets the conflict, so the copy run by retry replaces it. ctx is
 * the destination; CF_NONE when it is gone, of another type or the same
 * (the copy says so again, or takes it for done). */
static int judge_taken(void *ctx, const char *path, int type, int64_t size,
                       int64_t mtime)
{
    struct tm__adapter *da = ctx;
    struct tm__entry e;
    struct tm__aerr ae;
    if (tm__adapter_stat(da, path, &e, &ae) || e.type != type)
        return CF_NONE;
    return tm__compare_leaf(size, mtime, e.size, e.mtime, da->mtime_precision);
}

int tm_retry(tm_migration *m, const tm_discover_options *dopt,
             const tm_exec_options *eopt, int64_t *retried)
{
    struct tm__adapter *ad[2] = { NULL, NULL };
    struct tm__db *db;
    tm_status st;
    enum tm__phase ph;
    int64_t folders, copies;
    int rc, copy_started;

    *retried = 0;
    if (!m || !m->open || m->store.readonly)
        return TM_EINVAL;
    db = m->store.db;
    tm__buf_reset(&m->err);
    rc = tm_status_get(m, &st);
    if (rc)
        return rc;
    ph = tm__phase_parse(st.phase);
    if (ph != PH_DISCOVERED && ph != PH_COPIED && ph != PH_VERIFIED && ph != PH_SUSPENDED)
        return tm__mig_fail(m, TM_EPHASE, "nothing to retry in phase %s: run discover "
                            "first", st.phase);
    copy_started = ph != PH_DISCOVERED;
    folders = tm__q_count_failed(db, 0) + tm__q_count_failed(db, 1);
    copies = tm__q_count_failed(db, 2);
    /* nothing failed: the phase stays as it is (a verified migration is
     * not made 'copied' again by a copy of nothing); a suspended copy is
     * still resumed */
    if (!folders && !copies && ph != PH_SUSPENDED)
        return tm__mig_fail(m, TM_EPHASE, "nothing to retry: no folder listing "
                            "and no copy failed (phase %s)", st.phase);
    if (folders || copies) {
        /* the roots are checked before anything is read from them */
        rc = tm__mig_open_roots(m, ad);
        if (rc)
            return rc;
    }
    rc = tm__store_begin(db, &m->err);
    /* a folder that failed (e.g. unreadable) may have had its mode fixed
     * since its parent was listed: its row takes the folder's attributes
     * of now */
    if (!rc && folders)
        rc = tm__q_refresh_failed_folders(db, stat_cb, ad[TM_SRC], &m->err);
    /* a file whose copy failed because it changed since discovery would
     * fail again forever: its row takes the file's size, mtime and mode of
     * now, so the retry copies the new version (and verify checks it) */
    if (!rc && copies)
        rc = tm__q_refresh_changed_files(db, stat_cb, ad[TM_SRC], &m->err);
    if (!rc && copies)
        rc = tm__q_refresh_taken(db, judge_taken, ad[TM_DST], &m->err);
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    if (!rc && folders)
        rc = tm__q_reset_failed_folders(db, TM_SRC, &m->err);
    if (!rc && folders)
        rc = tm__q_reset_failed_folders(db, TM_DST, &m->err);
    if (!rc && copies)
        rc = tm__q_reset_failed_copies(db, &m->err);
    if (!rc)
        rc = tm__store_commit(db, &m->err);
    if (rc) {
        tm__store_rollback(db);
        return rc;
    }
    *retried = folders + copies;
    if (folders) {
        /* the folders are pending again: discovery goes on from them */
        rc = tm__mig_set_phase_from(m, PH_SUSPENDED, PH_DISCOVERING);
        if (!rc)
            rc = tm_discover(m, NULL, NULL, dopt);
        if (rc)
            return rc;
    }
    if (copy_started || copies) {
        tm_exec_options eo;
        tm_exec_options_init(&eo);
        if (eopt)
            eo = *eopt;
        eo.force = 1;
        rc = tm__mig_set_phase(m, PH_COPYING);
        if (!rc)
            rc = tm_copy(m, &eo);
    }
    return rc;
}
