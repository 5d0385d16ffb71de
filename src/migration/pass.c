/*
 * pass.c - the passes (treemig rescan): a new discovery of both trees in
 * the same state file, on a migration whose discovery was complete, for
 * the cutover (catch up with what changed on the source since). Runs on
 * the caller's thread; the discovery itself runs as tm_discover() does.
 *
 * A pass keeps the node rows: its discovery merges each listing with
 * them and writes only what is new, changed or gone (store/writer.c,
 * "passes"), keeping in prev_src_nodes the previous pass's rows of what
 * changed.
 *
 * Crash safety: the start of a pass is one transaction (the review
 * exclusions undone, prev_src_nodes emptied, the roots pending, the stats
 * counted again, phase roots-set, the setting pass_running set); from
 * there the discovery resumes as any other (a folder is pending from its
 * parent's listing until its own is committed); the end (the review
 * exclusions made again, the pass's end time, pass_running cleared) is
 * redone by the next tm_rescan() when a kill came before it.
 */
#include "migration/migration_int.h"

#include "store/pass_q.h"
#include "store/plan_q.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Starts pass n + 1 in one transaction. */
static int pass_start(tm_migration *m)
{
    struct tm__db *db = m->store.db;
    struct tm__adapter *ad[2] = { NULL, NULL };
    struct tm__entry root[2];
    char now[32], created[64] = "";
    int rc, i, n = 0;

    rc = tm__mig_open_stored(m, ad);
    for (i = 0; !rc && i < 2; i++) {
        struct tm__aerr ae;
        rc = tm__adapter_stat(ad[i], "/", &root[i], &ae);
        if (rc)
            tm__mig_fail(m, rc, "cannot stat the %s root: %s",
                         i ? "destination" : "source", ae.msg);
    }
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    if (rc)
        return rc;
    rc = tm__mig_copy_setting(db, "created", created, sizeof created);
    if (rc)
        return tm__mig_setting_fail(m, rc);
    tm__iso_time(now, tm__wall_ns());
    rc = tm__store_begin(db, &m->err);
    if (rc)
        return rc;
    {
        /* the review exclusions, made again at the end of the pass */
        struct tm__buf pats = TM__BUF_INIT;
        rc = tm__q_pass_patterns(db, &pats, &m->err);
        if (!rc)
            rc = tm__store_set(db, "pass_patterns", pats.len ? pats.buf : "");
        tm__buf_release(&pats);
    }
    if (!rc)
        rc = tm__q_pass_reset(db, created, now, &n, &m->err);
    if (!rc) rc = tm__store_set(db, "src_round", "0");
    if (!rc) rc = tm__store_set(db, "dst_round", "0");
    if (!rc) rc = tm__store_set(db, "copy_run_depth", "0");
    if (!rc) rc = tm__mig_set_int(db, "pass_running", n);
    if (!rc) rc = tm__mig_set_phase(m, PH_ROOTS_SET);
    if (!rc) rc = tm__store_commit(db, &m->err);
    if (rc) {
        tm__store_rollback(db);
        if (!m->err.len)
            tm__mig_fail(m, rc, "cannot start a new pass: %s", tm__store_errmsg(db));
    }
    return rc;
}

/* Ends pass n once its discovery is complete: the review exclusions made
 * again, the end time, pass_running cleared. */
static int pass_end(tm_migration *m, int n)
{
    char *pats = tm__mig_setting_dup(m->store.db, "pass_patterns");
    char now[32];
    int rc = 0;
    if (pats && *pats) {
        size_t np = 0;
        char **p = tm__mig_split_lines(pats, &np);
        int64_t changed = 0;
        rc = p ? tm_exclude(m, (const char *const *)p, np, 0, &changed) : TM_ENOMEM;
        free(p);
    }
    free(pats);
    tm__iso_time(now, tm__wall_ns());
    if (!rc)
        rc = tm__q_pass_end(m->store.db, n, now, &m->err);
    if (!rc)
        rc = tm__store_set(m->store.db, "pass_running", "0");
    if (!rc)
        rc = tm__mig_note_rows(m->store.db);
    return rc;
}

int tm_rescan(tm_migration *m, const tm_discover_options *o)
{
    struct tm__buf phase = TM__BUF_INIT;
    enum tm__phase ph;
    int rc, n;

    if (!m || !m->open || m->store.readonly)
        return TM_EINVAL;
    tm__buf_reset(&m->err);
    if (o && o->n_excludes)
        return tm__mig_fail(m, TM_EINVAL, "a new pass keeps the excludes of the "
                            "migration: no --exclude");
    rc = tm__store_get(m->store.db, "phase", &phase);
    if (rc) {
        tm__buf_release(&phase);
        return tm__mig_fail(m, rc == TM_ENOENT ? TM_EPHASE : rc, "no migration to "
                            "scan again: run discover first");
    }
    ph = tm__phase_parse(phase.buf);
    tm__buf_release(&phase);
    n = tm__mig_get_int(m->store.db, "pass_running", 0);
    if (!n) {
        if (ph != PH_DISCOVERED && ph != PH_COPIED && ph != PH_VERIFIED)
            return tm__mig_fail(m, TM_EPHASE, "a new pass starts on a migration "
                                "whose discovery is complete, and not while a "
                                "copy is under way (phase %s): finish it first",
                                tm__phase_name(ph));
        rc = pass_start(m);
        if (rc)
            return rc;
        n = tm__mig_get_int(m->store.db, "pass_running", 0);
    }
    rc = tm_discover(m, NULL, NULL, o);
    if (!rc)
        rc = pass_end(m, n);
    if (rc && !m->err.len)
        tm__mig_fail(m, rc, "rescan: %s", tm_strerror(rc));
    return rc;
}

int tm_pass_changes_get(tm_migration *m, tm_pass_changes *out)
{
    struct tm__pass_changes c;
    int rc;
    memset(out, 0, sizeof *out);
    if (!m || !m->open)
        return TM_EINVAL;
    rc = tm__q_pass_get(m->store.db, &out->pass, out->started, sizeof out->started,
                        out->ended, sizeof out->ended, &m->err);
    if (!rc && out->pass > 1)
        rc = tm__q_pass_changes(m->store.db, &c, &m->err);
    if (!rc && out->pass > 1) {
        out->src_new = c.src_new;
        out->src_changed = c.src_changed;
        out->src_deleted = c.src_deleted;
        out->dst_changed = c.dst_changed;
    }
    return rc;
}
