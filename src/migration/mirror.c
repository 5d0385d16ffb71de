/*
 * mirror.c - the mirror (treemig delete): removes what exists only on the
 * destination, as discovery recorded it. Two steps, both resumable after
 * kill -9 and both on the caller's thread, with the handle's connection
 * (no writer thread, no pool: one storage call at a time):
 *
 * - the plan (tm_delete_plan): discovery never enters a destination-only
 *   folder, so the plan lists each one and records its children as
 *   destination-only rows (dst_nodes, not_on_src) with the folder marked
 *   listed in the same transaction; a folder matching an exclusion is
 *   not entered and is kept, so is its parent in the end (not empty).
 *   `review --list extra` is then the whole plan.
 * - the removals (tm_delete): the rows of the plan, deepest first, files
 *   before folders, through the adapter's remove, which checks each node
 *   against its row just before removing it (a changed identity or type
 *   is kept and said, a folder is removed only when empty). Outcomes are
 *   recorded in batches (table mirror; a removed node's row goes): a kill
 *   loses at most one batch, whose nodes are then gone (ENOENT: counted
 *   removed) or still as recorded (removed now).
 */
#include "migration/migration_int.h"

#include "engine/engine.h"
#include "store/mirror_q.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Removals recorded per transaction. */
#define MIRROR_BATCH 256

/* The exclusions that apply to destination-only nodes: discovery's
 * globs and review's patterns. */
struct globs {
    char **disc;   /* the setting excludes, split (one malloc) */
    size_t n_disc; /* their count */
    char **rev;    /* the setting review_excludes, split */
    size_t n_rev;  /* their count */
    char **bak;    /* the setting backup_dirs: never removed */
    size_t n_bak;  /* their count */
    char *backup;  /* the backup folder of this run, or NULL */
};

static void globs_release(struct globs *g)
{
    free(g->disc);
    free(g->rev);
    free(g->bak);
    free(g->backup);
    memset(g, 0, sizeof *g);
}

static int globs_load(tm_migration *m, struct globs *g)
{
    char *d = tm__mig_setting_dup(m->store.db, "excludes");
    char *r = tm__mig_setting_dup(m->store.db, "review_excludes");
    char *b = tm__mig_setting_dup(m->store.db, "backup_dirs");
    int rc = 0;
    memset(g, 0, sizeof *g);
    if (d && *d && !(g->disc = tm__mig_split_lines(d, &g->n_disc)))
        rc = TM_ENOMEM;
    if (!rc && r && *r && !(g->rev = tm__mig_split_lines(r, &g->n_rev)))
        rc = TM_ENOMEM;
    if (!rc && b && *b && !(g->bak = tm__mig_split_lines(b, &g->n_bak)))
        rc = TM_ENOMEM;
    g->backup = tm__mig_setting_dup(m->store.db, "backup_dir");
    if (g->backup && !*g->backup) {
        free(g->backup);
        g->backup = NULL;
    }
    free(d);
    free(r);
    free(b);
    if (rc)
        globs_release(g);
    return rc;
}

/* 1 when path is a backup folder or inside one. */
static int in_backup(const struct globs *g, const char *path)
{
    size_t i, n;
    for (i = 0; i < g->n_bak; i++) {
        n = strlen(g->bak[i]);
        if (strncmp(path, g->bak[i], n) == 0 && (path[n] == '\0' || path[n] == '/'))
            return 1;
    }
    return 0;
}

static int excluded(const struct globs *g, const char *path)
{
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    return tm__filter_match((const char *const *)g->disc, g->n_disc, path, name) ||
           tm__filter_match((const char *const *)g->rev, g->n_rev, path, name);
}

/* The phases the mirror may run in: discovery complete. */
static int check_phase(tm_migration *m)
{
    tm_status st;
    enum tm__phase ph;
    int rc = tm_status_get(m, &st);
    if (rc)
        return rc;
    ph = tm__phase_parse(st.phase);
    if (ph != PH_DISCOVERED && ph != PH_COPIED && ph != PH_VERIFIED)
        return tm__mig_fail(m, TM_EPHASE, "the mirror runs once discovery is "
                            "complete and no copy is under way (phase %s)",
                            st.phase);
    return 0;
}

static int start(tm_migration *m, struct tm__adapter *ad[2])
{
    int rc;
    if (!m || !m->open || m->store.readonly)
        return TM_EINVAL;
    tm__buf_reset(&m->err);
    rc = check_phase(m);
    if (!rc) /* the order of the removals: not made by the discovery */
        rc = tm__store_extra_index(m->store.db, &m->err);
    if (!rc)
        rc = tm__mig_open_stored(m, ad);
    if (!rc && !ad[TM_DST]->remove)
        rc = tm__mig_fail(m, TM_ENOTSUP, "the destination (%s storage) cannot "
                          "remove anything: no mirror", ad[TM_DST]->name);
    return rc;
}

static void counts_out(const struct tm__mirror_counts *c, tm_delete_counts *out)
{
    if (!out)
        return;
    out->files = c->files;
    out->folders = c->folders;
    out->bytes = c->bytes;
    out->removed = c->removed;
    out->kept = c->kept;
}

/* Lists one destination-only folder and records its children. */
static int plan_folder(tm_migration *m, struct tm__adapter *da,
                       const struct tm__mirror_row *f, struct tm__listing *l)
{
    struct tm__entry *kids = NULL;
    struct tm__aerr ae;
    size_t i;
    int rc;

    tm__listing_reset(l);
    rc = tm__adapter_list(da, f->path.buf, tm__listing_add, l, &ae);
    if (rc == TM_ENOMEM)
        return rc;
    if (rc) {
        char why[512];
        if (ae.cls == TM_ERR_FATAL)
            return tm__mig_fail(m, rc, "list %s: %s", f->path.buf, ae.msg);
        snprintf(why, sizeof why, "kept: could not be listed for the plan: %s",
                 ae.msg);
        return tm__q_mirror_keep(m->store.db, f, why, &m->err);
    }
    if (l->n && !(kids = calloc(l->n, sizeof *kids)))
        return TM_ENOMEM;
    for (i = 0; i < l->n; i++) {
        const struct tm__ent *x = &l->v[i];
        kids[i].name = l->arena.buf + x->name_off;
        kids[i].name_len = x->name_len;
        kids[i].type = x->type;
        kids[i].size = x->size;
        kids[i].mtime = x->mtime;
        kids[i].mode = x->mode;
        kids[i].uid = x->uid;
        kids[i].gid = x->gid;
    }
    rc = tm__q_mirror_record_listing(m->store.db, f, kids, l->n, &m->err);
    free(kids);
    return rc;
}

static int plan(tm_migration *m, struct tm__adapter *da, const struct globs *g)
{
    struct tm__listing l = TM__LISTING_INIT;
    struct tm__mirror_row f;
    int64_t after = 0;
    int rc = 0, found = 1;

    memset(&f, 0, sizeof f);
    tm__buf_init(&f.path);
    while (!rc) {
        if (atomic_load(&m->stop)) {
            rc = TM_ESTOPPED;
            break;
        }
        rc = tm__q_mirror_next_folder(m->store.db, after, &f, &found, &m->err);
        if (rc || !found)
            break;
        after = f.id;
        if (in_backup(g, f.path.buf))
            rc = tm__q_mirror_keep(m->store.db, &f, "kept: the backup folder",
                                   &m->err);
        else if (excluded(g, f.path.buf))
            rc = tm__q_mirror_keep(m->store.db, &f, "kept: excluded (the "
                                   "mirror does not enter it)", &m->err);
        else
            rc = plan_folder(m, da, &f, &l);
    }
    tm__listing_release(&l);
    tm__buf_release(&f.path);
    return rc;
}

int tm_delete_plan(tm_migration *m, tm_delete_counts *out)
{
    struct tm__adapter *ad[2] = { NULL, NULL };
    struct tm__mirror_counts c;
    struct globs g = { NULL, 0, NULL, 0, NULL, 0, NULL };
    int rc;

    if (out)
        memset(out, 0, sizeof *out);
    rc = start(m, ad);
    if (!rc)
        rc = globs_load(m, &g);
    if (!rc)
        rc = plan(m, ad[TM_DST], &g);
    if (!rc)
        rc = tm__q_mirror_counts(m->store.db, &c, &m->err);
    if (!rc)
        counts_out(&c, out);
    globs_release(&g);
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    if (rc && !m->err.len)
        tm__mig_fail(m, rc, "delete: %s", tm_strerror(rc));
    return rc;
}

/* Removes one node of the plan: its outcome in *d (error in why). */
static int remove_one(tm_migration *m, struct tm__adapter *da,
                      const struct globs *g, const struct tm__mirror_row *r,
                      struct tm__mirror_done *d, char *why, size_t whylen)
{
    struct tm__aerr ae;
    int rc;
    d->row = r;
    d->error = NULL;
    if (in_backup(g, r->path.buf)) {
        d->state = TM_MIRROR_KEPT;
        d->error = "kept: the backup folder";
        return 0;
    }
    if (excluded(g, r->path.buf)) {
        d->state = TM_MIRROR_KEPT;
        d->error = "kept: excluded";
        return 0;
    }
    rc = tm__adapter_remove(da, r->path.buf, &r->e, g->backup, &ae);
    if (!rc || rc == TM_ENOENT) {
        /* gone already: an earlier run removed it and was killed before
         * recording it, or someone else did */
        d->state = TM_MIRROR_REMOVED;
        return 0;
    }
    if (ae.cls == TM_ERR_FATAL)
        return tm__mig_fail(m, rc, "remove %s: %s", r->path.buf, ae.msg);
    snprintf(why, whylen, "kept: %s", ae.msg);
    d->error = why;
    d->state = rc == TM_ECHANGED ? TM_MIRROR_KEPT : TM_MIRROR_FAILED;
    return 0;
}

static int removals(tm_migration *m, struct tm__adapter *da, const struct globs *g)
{
    struct tm__mirror_row *rows = calloc(MIRROR_BATCH, sizeof *rows);
    struct tm__mirror_done *done = calloc(MIRROR_BATCH, sizeof *done);
    char (*why)[512] = calloc(MIRROR_BATCH, sizeof *why);
    struct tm__mirror_pos pos = { -1, 0, 0 };
    size_t i, n = 0, k;
    int rc = 0;

    if (!rows || !done || !why) {
        rc = TM_ENOMEM;
        goto out_free;
    }
    for (i = 0; i < MIRROR_BATCH; i++)
        tm__buf_init(&rows[i].path);
    for (;;) {
        rc = tm__q_mirror_batch(m->store.db, &pos, rows, MIRROR_BATCH, &n, &m->err);
        if (rc || n == 0)
            break;
        /* done[0..k) hold the outcomes of rows[0..k) */
        for (k = 0; k < n; k++) {
            if (atomic_load(&m->stop)) {
                rc = TM_ESTOPPED;
                break;
            }
            rc = remove_one(m, da, g, &rows[k], &done[k], why[k], sizeof why[k]);
            if (rc)
                break;
        }
        /* what was done is recorded, also when stopped midway */
        if (k) {
            int rc2 = tm__q_mirror_record(m->store.db, done, k, &m->err);
            if (rc2 && !rc)
                rc = rc2;
        }
        if (rc)
            break;
        pos.depth = rows[n - 1].depth;
        pos.folder = rows[n - 1].e.type == TM_T_FOLDER;
        pos.id = rows[n - 1].id;
    }
out_free:
    if (rows)
        for (i = 0; i < MIRROR_BATCH; i++)
            tm__buf_release(&rows[i].path);
    free(rows);
    free(done);
    free(why);
    return rc;
}

/* tm__q_mirror_parents' callback: the folder's mtime back to its
 * source twin's, its mode as it is. A folder that cannot be set is said
 * in the log of the mirror (the error), not a failure of the mirror. */
static int reset_parent(void *ctx, const char *path, int64_t mtime)
{
    struct tm__adapter *da = ctx;
    struct tm__entry now;
    struct tm__aerr ae;
    int rc = tm__adapter_stat(da, path, &now, &ae);
    if (!rc && now.type == TM_T_FOLDER)
        rc = tm__adapter_set_attr(da, path, mtime, now.mode & 07777, &ae);
    return rc && ae.cls == TM_ERR_FATAL ? rc : 0;
}

/* After the removals, when the copy is complete (it set the folders'
 * mtimes to the source's): the mtimes of the folders that lost children
 * are set back to the source's. */
static int reset_parents(tm_migration *m, struct tm__adapter *da)
{
    tm_status st;
    enum tm__phase ph;
    int rc = tm_status_get(m, &st);
    if (rc)
        return rc;
    ph = tm__phase_parse(st.phase);
    if (ph != PH_COPIED && ph != PH_VERIFIED)
        return 0;
    return tm__q_mirror_parents(m->store.db, reset_parent, da, &m->err);
}

int tm_delete(tm_migration *m, tm_delete_counts *out)
{
    struct tm__adapter *ad[2] = { NULL, NULL };
    struct tm__mirror_counts c;
    struct globs g = { NULL, 0, NULL, 0, NULL, 0, NULL };
    int rc;

    if (out)
        memset(out, 0, sizeof *out);
    rc = start(m, ad);
    if (!rc)
        rc = globs_load(m, &g);
    /* a plan interrupted (or never made) is finished first: nothing that
     * is not recorded is removed */
    if (!rc)
        rc = plan(m, ad[TM_DST], &g);
    if (!rc)
        rc = removals(m, ad[TM_DST], &g);
    if (!rc)
        rc = reset_parents(m, ad[TM_DST]);
    if (!rc || rc == TM_ESTOPPED) {
        int rc2 = tm__q_mirror_counts(m->store.db, &c, &m->err);
        if (!rc2)
            counts_out(&c, out);
        else if (!rc)
            rc = rc2;
    }
    globs_release(&g);
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    if (rc == TM_ESTOPPED && !m->err.len)
        tm__mig_fail(m, rc, "delete interrupted; run delete again to resume");
    if (rc && !m->err.len)
        tm__mig_fail(m, rc, "delete: %s", tm_strerror(rc));
    return rc;
}

/* dir as a root-relative path of the destination dst ("/a/b"), into out;
 * 0, or TM_EINVAL with m's message. */
static int backup_path(tm_migration *m, const char *dst, const char *dir,
                       struct tm__buf *out)
{
    const char *p = dir;
    size_t dl = strlen(dst);
    if (dir[0] == '/') {
        /* an absolute path: below the local destination's root */
        while (dl > 1 && dst[dl - 1] == '/')
            dl--;
        if (dst[0] != '/' || strncmp(dir, dst, dl) != 0 || dir[dl] != '/')
            return tm__mig_fail(m, TM_EINVAL, "--backup-dir %s is not inside the "
                                "destination %s", dir, dst);
        p = dir + dl;
    }
    while (*p) {
        size_t n;
        while (*p == '/')
            p++;
        if (!*p)
            break;
        n = strchrnul(p, '/') - p;
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return tm__mig_fail(m, TM_EINVAL, "--backup-dir %s: no '.' or '..' "
                                "(it must stay inside the destination)", dir);
        if (tm__buf_addch(out, '/') || tm__buf_add(out, p, n))
            return TM_ENOMEM;
        p += n;
    }
    if (!out->len)
        return tm__mig_fail(m, TM_EINVAL, "--backup-dir %s is the destination's "
                            "root: name a folder inside it", dir);
    return 0;
}

int tm_set_backup_dir(tm_migration *m, const char *dir)
{
    struct tm__buf path = TM__BUF_INIT;
    tm_status st;
    int rc, found = 0;
    if (!m || !m->open || m->store.readonly)
        return TM_EINVAL;
    tm__buf_reset(&m->err);
    if (!dir) {
        /* nothing written when there is nothing to clear: a command that
         * is then refused leaves the state file as it was */
        char *cur = tm__mig_setting_dup(m->store.db, "backup_dir");
        int set = cur && *cur;
        free(cur);
        return set ? tm__store_set(m->store.db, "backup_dir", "") : 0;
    }
    rc = tm_status_get(m, &st);
    if (!rc)
        rc = backup_path(m, st.dst, dir, &path);
    if (!rc) {
        const char *first = path.buf + 1, *end = strchrnul(first, '/');
        rc = tm__q_mirror_src_top(m->store.db, first, (size_t)(end - first),
                                  &found, &m->err);
        if (!rc && found)
            rc = tm__mig_fail(m, TM_EINVAL, "--backup-dir %s: the source has "
                              "/%.*s, so the copy makes it on the destination: "
                              "name another folder", dir, (int)(end - first), first);
    }
    if (!rc)
        rc = tm__store_set(m->store.db, "backup_dir", path.buf);
    if (!rc) {
        /* the mirror keeps every backup folder ever given */
        char *all = tm__mig_setting_dup(m->store.db, "backup_dirs");
        struct tm__buf v = TM__BUF_INIT;
        int have = 0;
        if (all) {
            size_t n, i;
            char **lines = tm__mig_split_lines(all, &n);
            for (i = 0; lines && i < n; i++)
                have |= strcmp(lines[i], path.buf) == 0;
            free(lines);
        }
        if (!have) {
            if ((all && *all && (tm__buf_adds(&v, all) || tm__buf_addch(&v, '\n'))) ||
                tm__buf_adds(&v, path.buf))
                rc = TM_ENOMEM;
            else
                rc = tm__store_set(m->store.db, "backup_dirs", v.buf);
        }
        tm__buf_release(&v);
        free(all);
    }
    tm__buf_release(&path);
    if (rc && !m->err.len)
        tm__mig_fail(m, rc, "--backup-dir: %s", tm_strerror(rc));
    return rc;
}

/* tm_delete_print_kept's callback. */
static int print_kept(void *ctx, const char *path, const char *error)
{
    fprintf((FILE *)ctx, "%s\t%s\n", path, error);
    return 0;
}

int tm_delete_print_kept(tm_migration *m, FILE *f)
{
    if (!m || !m->open)
        return TM_EINVAL;
    return tm__q_mirror_kept(m->store.db, print_kept, f, &m->err);
}
