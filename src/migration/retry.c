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
#include "store/store.h"
#include "util/buf.h"

#include <stdlib.h>
#include <string.h>

/* Moves every count of a status to another in a stats table, then the rows
 * themselves: one transaction, so the counts stay exact. */
static int reset_status(sqlite3 *db, const char *table, const char *stats,
                        const char *column, const char *from, const char *to,
                        const char *where, struct tm__buf *err)
{
    struct tm__buf sql = TM__BUF_INIT;
    int rc;
    /* the stats rows of `to` absorb those of `from`, key by key */
    tm__buf_addf(&sql,
                 "INSERT INTO %s SELECT depth, type, '%s'%s, count, bytes FROM %s "
                 "WHERE %s = '%s' AND count > 0 %s ON CONFLICT DO UPDATE SET "
                 "count = count + excluded.count, bytes = bytes + excluded.bytes;"
                 "UPDATE %s SET count = 0, bytes = 0 WHERE %s = '%s' %s;"
                 "UPDATE %s SET %s = '%s', error = NULL WHERE %s = '%s' %s;",
                 stats, to, strcmp(stats, "copy_stats") == 0 ? ", conflict" : "",
                 stats, column, from, where[0] ? "AND type = 'folder'" : "",
                 stats, column, from, where[0] ? "AND type = 'folder'" : "",
                 table, column, to, column, from, where);
    rc = tm__store_exec(db, sql.buf, err);
    tm__buf_release(&sql);
    return rc;
}

static int64_t count_status(sqlite3 *db, const char *stats, const char *column,
                            const char *status, int folders_only)
{
    struct tm__buf sql = TM__BUF_INIT;
    sqlite3_stmt *st;
    int64_t n = 0;
    tm__buf_addf(&sql, "SELECT coalesce(sum(count), 0) FROM %s WHERE %s = '%s'%s",
                 stats, column, status, folders_only ? " AND type = 'folder'" : "");
    if (sqlite3_prepare_v2(db, sql.buf, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    tm__buf_release(&sql);
    return n;
}

/* A folder that failed (e.g. unreadable) may have had its mode fixed since
 * its parent was listed: its row takes the folder's attributes of now. */
static int refresh_failed(tm_migration *m, struct tm__adapter *ad)
{
    sqlite3_stmt *sel = NULL, *upd = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(m->store.db, "SELECT id, path FROM src_nodes WHERE "
                           "traversal_status = 'failed' AND type = 'folder'",
                           -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(m->store.db, "UPDATE src_nodes SET mode = ?, mtime = ? "
                           "WHERE id = ?", -1, &upd, NULL) != SQLITE_OK) {
        rc = tm__store_error(m->store.db, SQLITE_ERROR, &m->err, "refresh");
        goto out;
    }
    while (sqlite3_step(sel) == SQLITE_ROW) {
        struct tm__entry e;
        struct tm__aerr ae;
        if (tm__adapter_stat(ad, (const char *)sqlite3_column_text(sel, 1), &e, &ae) ||
            e.type != TM_T_FOLDER)
            continue; /* the listing will say what is wrong */
        sqlite3_bind_int64(upd, 1, e.mode);
        sqlite3_bind_int64(upd, 2, e.mtime);
        sqlite3_bind_int64(upd, 3, sqlite3_column_int64(sel, 0));
        if (sqlite3_step(upd) != SQLITE_DONE) {
            rc = tm__store_error(m->store.db, SQLITE_ERROR, &m->err, "refresh");
            break;
        }
        sqlite3_reset(upd);
    }
out:
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    return rc;
}

/* A file whose copy failed because it changed since discovery would fail
 * again forever: its row takes the file's size, mtime and mode of now, with
 * the byte counts of the stats moved along, so the retry copies the new
 * version (and verify checks that one). */
static int refresh_changed(tm_migration *m, struct tm__adapter *ad)
{
    struct tm__stats_delta d = { NULL, 0, 0 };
    sqlite3_stmt *sel = NULL, *upd = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(m->store.db,
                           "SELECT id, path, depth, size, traversal_status, conflict "
                           "FROM src_nodes WHERE copy_status = 'failed' AND type = "
                           "'file' AND error LIKE '%changed since discovery'",
                           -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(m->store.db, "UPDATE src_nodes SET size = ?, mtime = ?, "
                           "mode = ? WHERE id = ?", -1, &upd, NULL) != SQLITE_OK) {
        rc = tm__store_error(m->store.db, SQLITE_ERROR, &m->err, "refresh");
        goto out;
    }
    while (!rc && sqlite3_step(sel) == SQLITE_ROW) {
        struct tm__entry e;
        int depth = sqlite3_column_int(sel, 2);
        int64_t old = sqlite3_column_int64(sel, 3);
        int ts = tm__name_index(tm__ts_names, TS_COUNT,
                                (const char *)sqlite3_column_text(sel, 4));
        int cf = sqlite3_column_type(sel, 5) != SQLITE_NULL;
        struct tm__stat_key ks = { 0, depth, TM_T_FILE, ts, 0 };
        struct tm__stat_key kc = { 2, depth, TM_T_FILE, CS_FAILED, cf };
        struct tm__aerr ae;
        if (tm__adapter_stat(ad, (const char *)sqlite3_column_text(sel, 1), &e, &ae) ||
            e.type != TM_T_FILE || ts < 0)
            continue; /* gone or replaced: the copy will say so again */
        sqlite3_bind_int64(upd, 1, e.size);
        sqlite3_bind_int64(upd, 2, e.mtime);
        sqlite3_bind_int64(upd, 3, e.mode);
        sqlite3_bind_int64(upd, 4, sqlite3_column_int64(sel, 0));
        if (sqlite3_step(upd) != SQLITE_DONE)
            rc = tm__store_error(m->store.db, SQLITE_ERROR, &m->err, "refresh");
        sqlite3_reset(upd);
        if (!rc)
            rc = tm__stats_add(&d, &ks, 0, e.size - old);
        if (!rc)
            rc = tm__stats_add(&d, &kc, 0, e.size - old);
    }
    if (!rc)
        rc = tm__stats_apply(m->store.db, &d);
out:
    tm__stats_release(&d);
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    return rc;
}

/* A file or symlink whose copy failed because something was made at its
 * name on the destination after discovery (the copy never replaces what
 * discovery did not see) is compared with it again, as discovery would
 * have: it gets the conflict, so the copy run by retry replaces it. */
static int refresh_taken(tm_migration *m, struct tm__adapter *da)
{
    struct tm__stats_delta d = { NULL, 0, 0 };
    sqlite3_stmt *sel = NULL, *upd = NULL;
    int rc = 0, step = SQLITE_DONE;
    if (sqlite3_prepare_v2(m->store.db,
                           "SELECT id, path, depth, type, size, mtime FROM src_nodes "
                           "WHERE copy_status = 'failed' AND conflict IS NULL AND "
                           "type IN ('file', 'symlink') AND error LIKE "
                           "'%made at this name on the destination after discovery%'",
                           -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(m->store.db, "UPDATE src_nodes SET conflict = ? WHERE id = ?",
                           -1, &upd, NULL) != SQLITE_OK) {
        rc = tm__store_error(m->store.db, SQLITE_ERROR, &m->err, "refresh");
        goto out;
    }
    while (!rc && (step = sqlite3_step(sel)) == SQLITE_ROW) {
        struct tm__entry e;
        struct tm__aerr ae;
        int depth = sqlite3_column_int(sel, 2), cf;
        int type = tm__name_index(tm__type_names, TM_T_COUNT,
                                  (const char *)sqlite3_column_text(sel, 3));
        int64_t size = sqlite3_column_int64(sel, 4);
        struct tm__stat_key k = { 2, depth, type, CS_FAILED, 0 };
        if (type < 0 ||
            tm__adapter_stat(da, (const char *)sqlite3_column_text(sel, 1), &e, &ae) ||
            e.type != type)
            continue; /* gone, or another type: the copy says so again */
        cf = tm__compare_leaf(size, sqlite3_column_int64(sel, 5), e.size, e.mtime,
                              da->mtime_precision);
        if (cf == CF_NONE)
            continue; /* the same: the copy takes it for done */
        sqlite3_bind_text(upd, 1, tm__cf_names[cf], -1, SQLITE_STATIC);
        sqlite3_bind_int64(upd, 2, sqlite3_column_int64(sel, 0));
        if (sqlite3_step(upd) != SQLITE_DONE)
            rc = tm__store_error(m->store.db, SQLITE_ERROR, &m->err, "refresh");
        sqlite3_reset(upd);
        if (!rc)
            rc = tm__stats_add(&d, &k, -1, -size);
        k.conflict = 1;
        if (!rc)
            rc = tm__stats_add(&d, &k, 1, size);
    }
    if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = tm__store_error(m->store.db, step, &m->err, "refresh");
    if (!rc)
        rc = tm__stats_apply(m->store.db, &d);
out:
    tm__stats_release(&d);
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    return rc;
}

int tm_retry(tm_migration *m, const tm_discover_options *dopt,
             const tm_exec_options *eopt, int64_t *retried)
{
    struct tm__adapter *ad[2] = { NULL, NULL };
    sqlite3 *db;
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
    folders = count_status(db, "src_stats", "traversal_status", "failed", 1) +
              count_status(db, "dst_stats", "traversal_status", "failed", 1);
    copies = count_status(db, "copy_stats", "copy_status", "failed", 0);
    if (folders || copies) {
        /* the roots are checked before anything is read from them */
        rc = tm__mig_open_roots(m, ad);
        if (rc)
            return rc;
    }
    rc = tm__store_begin(db, &m->err);
    if (!rc && folders)
        rc = refresh_failed(m, ad[TM_SRC]);
    if (!rc && copies)
        rc = refresh_changed(m, ad[TM_SRC]);
    if (!rc && copies)
        rc = refresh_taken(m, ad[TM_DST]);
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    if (!rc && folders)
        rc = reset_status(db, "src_nodes", "src_stats", "traversal_status",
                          "failed", "pending", "AND type = 'folder'", &m->err);
    if (!rc && folders)
        rc = reset_status(db, "dst_nodes", "dst_stats", "traversal_status",
                          "failed", "pending", "AND type = 'folder'", &m->err);
    if (!rc && copies)
        rc = reset_status(db, "src_nodes", "copy_stats", "copy_status", "failed",
                          "pending", "", &m->err);
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
