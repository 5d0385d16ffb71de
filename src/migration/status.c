/*
 * status.c - what a migration's state file says about it: tm_status_get
 * (phase, roots, counts from the stats tables, the observer's last
 * snapshots and the copy's ETA) and tm_problems_print (the task errors of
 * a phase, one per line). Read only; runs on the caller's thread, also on
 * a handle opened read-only while another process runs the migration.
 */
#include "treemig.h"

#include "adapter/adapter.h"
#include "migration/migration_int.h"
#include "store/status_q.h"
#include "store/db.h"
#include "store/store.h"
#include "util/util.h"
#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\')
            fputs("\\\\", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
}

/* Prints one task error (tm__q_task_errors' row callback; ctx is the
 * FILE). */
static void print_problem(void *ctx, const char *path, const char *msg)
{
    FILE *out = ctx;
    print_escaped(out, path);
    fputs(": ", out);
    fputs(msg, out);
    fputc('\n', out);
}

int tm_problems_print(tm_migration *m, const char *phase, FILE *out)
{
    if (!m || !m->open)
        return TM_EINVAL;
    return tm__q_task_errors(m->store.db, phase, print_problem, out, &m->err);
}

/* The observer's last snapshot of each queue, and the copy's ETA. */
static int read_snapshots(tm_migration *m, tm_status *st)
{
    int i;
    st->eta_seconds = -1;
    tm__q_snapshots(m->store.db, st->queues, 4, &st->n_queues);
    for (i = 0; i < st->n_queues; i++) {
        const tm_queue_snapshot *x = &st->queues[i];
        if (strcmp(x->queue, "copy") == 0 && tm__phase_parse(st->phase) == PH_COPYING) {
            /* as the live line: the larger of the estimates from items and
             * from bytes, at the rates of the copy's recent window (0 until
             * it has one: no ETA) */
            double eta = -1;
            if (x->items_per_s > 0)
                eta = (double)x->pending / x->items_per_s;
            if (x->bytes_per_s > 0 && (double)x->bytes_pending / x->bytes_per_s > eta)
                eta = (double)x->bytes_pending / x->bytes_per_s;
            if (eta >= 0)
                st->eta_seconds = (int64_t)(eta + 0.5);
        }
    }
    return 0;
}

/* Adds a group of src_stats or dst_stats to the counts of a side
 * (tm__q_stats_sums' row callback; ctx is the tm_tree_counts). */
static void add_tree_counts(void *ctx, const char *type_name, const char *status,
                            int64_t count, int64_t bytes, int conflict)
{
    tm_tree_counts *c = ctx;
    int type = tm__name_index(tm__type_names, TM_T_COUNT, type_name);
    int ts = tm__name_index(tm__ts_names, TS_COUNT, status);
    (void)conflict;
    if (type == TM_T_FOLDER) c->folders += count;
    if (type == TM_T_FILE) { c->files += count; c->bytes += bytes; }
    if (type == TM_T_SYMLINK) c->symlinks += count;
    if (type == TM_T_OTHER) c->other += count;
    if (ts == TS_PENDING) c->pending += count;
    if (ts == TS_FAILED) c->failed += count;
    if (ts == TS_EXCLUDED) c->excluded += count;
    if (ts == TS_NOT_ON_SRC) c->not_on_src += count;
}

/* Adds a group of copy_stats to the copy's counts (ctx is the
 * tm_copy_counts). */
static void add_copy_counts(void *ctx, const char *type_name, const char *status,
                            int64_t count, int64_t bytes, int conflict)
{
    tm_copy_counts *c = ctx;
    int type = tm__name_index(tm__type_names, TM_T_COUNT, type_name);
    int cs = tm__name_index(tm__cs_names, CS_COUNT, status);
    if (conflict) c->conflicts += count;
    switch (cs) {
    case CS_PENDING:
        c->pending += count;
        if (type == TM_T_FILE) c->bytes_pending += bytes;
        break;
    case CS_IN_PROGRESS: c->in_progress += count; break;
    case CS_SUCCESSFUL: c->successful += count; break;
    case CS_ALREADY: c->already_existed += count; break;
    case CS_FAILED: c->failed += count; break;
    case CS_SKIPPED: c->skipped += count; break;
    case CS_EXCLUDED: c->excluded += count; break;
    default: break;
    }
}

int tm_status_get(tm_migration *m, tm_status *st)
{
    struct tm__db *db;
    int rc = 0;

    memset(st, 0, sizeof *st);
    if (!m || !m->open)
        return TM_EINVAL;
    db = m->store.db;
    /* a phase that cannot be read must not look like no phase */
    rc = tm__mig_copy_setting(db, "phase", st->phase, sizeof st->phase);
    if (!rc)
        rc = tm__mig_copy_setting(db, "src", st->src, sizeof st->src);
    if (!rc)
        rc = tm__mig_copy_setting(db, "dst", st->dst, sizeof st->dst);
    if (rc)
        return tm__mig_setting_fail(m, rc);
    st->src_round = tm__mig_get_int(db, "src_round", 0);
    st->dst_round = tm__mig_get_int(db, "dst_round", 0);
    rc = tm__q_stats_sums(db, 0, add_tree_counts, &st->src_counts, &m->err);
    if (!rc)
        rc = tm__q_stats_sums(db, 1, add_tree_counts, &st->dst_counts, &m->err);
    if (!rc)
        rc = tm__q_stats_sums(db, 2, add_copy_counts, &st->copy, &m->err);
    /* a root whose listing failed is a failed folder too (the counts leave
     * the roots out otherwise): without it, nothing would say that the
     * whole tree is missing */
    if (!rc)
        rc = tm__q_root_failed(db, TM_SRC, &st->src_counts.failed);
    if (!rc)
        rc = tm__q_root_failed(db, TM_DST, &st->dst_counts.failed);
    if (rc)
        tm__mig_fail(m, rc, "state file %s: read status: %s", m->store.path,
                     tm__store_errmsg(db));
    return rc ? rc : read_snapshots(m, st);
}

int tm_status_active(tm_migration *m, int *active)
{
    int rc;
    if (!m || !m->open || !active)
        return TM_EINVAL;
    rc = tm__q_active(m->store.db, active);
    if (rc)
        tm__mig_fail(m, rc, "state file %s: read the processes at work: %s",
                     m->store.path, tm__store_errmsg(m->store.db));
    return rc;
}
