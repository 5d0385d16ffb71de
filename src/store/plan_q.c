/*
 * plan_q.c - the SQL of discovery seen from the handle (plan_q.h): the
 * root rows of a new migration, and the nodes that a type clash blocks.
 * Caller's thread, on the handle's connection, while no writer thread runs.
 */
#include "store/plan_q.h"

#include "adapter/adapter.h"
#include "store/store.h"
#include "treemig.h"

#include <stddef.h>

int tm__q_insert_root(struct tm__db *db, int side, int64_t mtime, int64_t mode)
{
    static const char *const sql[2] = {
        "INSERT INTO src_nodes(id,parent_id,path,name,type,size,mtime,mode,depth,"
        "traversal_status,copy_status) VALUES(1,NULL,'/','','folder',0,?,?,0,"
        "'pending','already_existed')",
        "INSERT INTO dst_nodes(id,parent_id,path,name,type,size,mtime,mode,depth,"
        "traversal_status,src_id) VALUES(1,NULL,'/','','folder',0,?,?,0,"
        "'pending',1)",
    };
    struct tm__stmt *st;
    int rc = tm__db_prepare(db, sql[side], -1, &st, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, NULL, "seed roots");
    tm__db_bind_int64(st, 1, mtime);
    tm__db_bind_int64(st, 2, mode);
    rc = tm__db_step(st);
    tm__db_finalize(st);
    return rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, NULL, "seed roots");
}

/* 1 when some source folder below the root has a conflict of any kind,
 * by copy_stats (kept with the rows, in their transactions): without one
 * no type clash blocks anything, and the scan of every source row that
 * finds them is not needed (a first discovery's tail, single-threaded).
 * 1 also when the stats cannot be read: the scan then decides. */
static int folder_conflicts(struct tm__db *db)
{
    struct tm__stmt *st;
    int any = 1;
    if (tm__db_prepare(db, "SELECT EXISTS(SELECT 1 FROM copy_stats WHERE "
                           "type = 'folder' AND conflict <> 0 AND depth > 0 "
                           "AND count > 0)", -1, &st, NULL) != SQLITE_OK)
        return 1;
    if (tm__db_step(st) == SQLITE_ROW)
        any = tm__db_column_int(st, 0) != 0;
    tm__db_finalize(st);
    return any;
}

int tm__q_skip_blocked(struct tm__db *db, struct tm__buf *err)
{
    static const char *const fill =
        "CREATE TEMP TABLE IF NOT EXISTS tm_blocked(id INTEGER PRIMARY KEY);"
        "DELETE FROM temp.tm_blocked;"
        "INSERT INTO temp.tm_blocked(id) WITH RECURSIVE sub(id) AS ("
        " SELECT c.id FROM src_nodes AS p JOIN src_nodes AS c ON c.parent_id = p.id"
        " WHERE p.type = 'folder' AND p.conflict = 'type' AND p.depth > 0"
        " UNION ALL SELECT c.id FROM src_nodes AS c JOIN sub ON c.parent_id = sub.id)"
        " SELECT id FROM sub;";
    struct tm__stats_delta d = TM__STATS_DELTA_INIT;
    struct tm__stmt *st = NULL;
    int rc, step = SQLITE_DONE;
    if (!folder_conflicts(db))
        return 0;
    rc = tm__store_begin(db, err);
    if (!rc)
        rc = tm__store_exec(db, fill, err);
    if (!rc && tm__db_prepare(db, "SELECT n.depth, n.type, n.conflict IS NOT "
                                  "NULL, count(*), coalesce(sum(n.size), 0) FROM "
                                  "temp.tm_blocked AS b CROSS JOIN src_nodes AS n ON "
                                  "n.id = b.id WHERE n.copy_status = 'pending' "
                                  "GROUP BY 1, 2, 3", -1, &st, NULL) != SQLITE_OK)
        rc = tm__store_error(db, SQLITE_ERROR, err, "find what a type clash blocks");
    while (!rc && (step = tm__db_step(st)) == SQLITE_ROW) {
        int type = tm__name_index(tm__type_names, TM_T_COUNT,
                                  (const char *)tm__db_column_text(st, 1));
        struct tm__stat_key k = { 2, tm__db_column_int(st, 0), type, CS_PENDING,
                                  tm__db_column_int(st, 2) };
        int64_t n = tm__db_column_int64(st, 3), bytes = tm__db_column_int64(st, 4);
        if (type < 0) {
            tm__buf_reset(err);
            tm__buf_adds(err, "unknown node type in the state file");
            rc = TM_ECORRUPT;
            break;
        }
        rc = tm__stats_add(&d, &k, -n, -bytes);
        k.status = CS_SKIPPED;
        if (!rc)
            rc = tm__stats_add(&d, &k, n, bytes);
    }
    if (!rc && step != SQLITE_DONE)
        rc = tm__store_error(db, step, err, "find what a type clash blocks");
    tm__db_finalize(st);
    if (!rc)
        rc = tm__store_exec(db, "UPDATE src_nodes SET copy_status = 'skipped', "
                            "error = coalesce(error, 'its folder is a file on "
                            "the destination') "
                            "WHERE copy_status = 'pending' AND id IN "
                            "(SELECT id FROM temp.tm_blocked);"
                            "DELETE FROM temp.tm_blocked;", err);
    if (!rc)
        rc = tm__stats_apply(db, &d);
    if (!rc)
        rc = tm__store_commit(db, err);
    else
        tm__store_rollback(db);
    tm__stats_release(&d);
    return rc;
}
