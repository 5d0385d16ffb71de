/*
 * exclude.c - exclusions decided after discovery: tm_exclude (which also
 * includes them again) and tm__exclude_run (review_int.h), the same with a
 * dry run, for the web page's preview.
 *
 * Runs on the caller's thread through the handle's own connection; no
 * writer thread runs meanwhile. It writes, under the state file's lock
 * that tm_migration_open(TM_OPEN_WRITE) took, in one transaction.
 *
 * The bookkeeping of exclusions (tables exclusions and excluded_prev) is
 * documented in docs/state-file.md; docs/review.md is the user's page.
 */
#include "treemig.h"

#include "engine/engine.h"
#include "migration/migration_int.h"
#include "migration/review_int.h"
#include "store/exclude_q.h"
#include "store/review_q.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------------------
 * Exclusions after discovery.
 *
 * Excluding a node N (an exclusion root) gives every row of its subtree
 * that is not excluded yet traversal 'excluded', copy 'excluded', no
 * conflict and no error, and does the same (traversal, conflict, error) to
 * the subtree of its destination twin; the previous values of each row go
 * to excluded_prev with root = N's id, N itself to exclusions. A subtree
 * that is already excluded (an earlier root, or a --exclude of discovery)
 * is left as it is. Including N again restores exactly the rows whose root
 * is N. The stats deltas are computed by grouping the rows before each
 * update, so every count stays exact.
 */

struct xctx {
    tm_migration *m;              /* the handle */
    struct tm__db *db;                  /* its connection */
    int unexclude;                /* include again */
    struct tm__stats_delta delta; /* stats changes, applied at the end */
    int64_t changed;              /* source rows changed */
    char now[32];                 /* time of this command */
};

/* Adds the stats changes of a group of rows: (count, bytes) leave the old
 * key and join the new one. */
static int move_stat(struct xctx *x, int table, int depth, const char *type,
                     const char *from, int from_cf, const char *to, int to_cf,
                     int64_t n, int64_t bytes)
{
    const char *const *names = table == 2 ? tm__cs_names : tm__ts_names;
    int count = table == 2 ? CS_COUNT : TS_COUNT;
    struct tm__stat_key k;
    int t = tm__name_index(tm__type_names, TM_T_COUNT, type);
    int a = tm__name_index(names, count, from), b = tm__name_index(names, count, to);
    int rc;
    if (t < 0 || a < 0 || b < 0)
        return tm__rv_fail(x->m, TM_ECORRUPT, "unknown type or status in the state file "
                           "(%s, %s, %s)", type ? type : "NULL", from ? from : "NULL",
                           to ? to : "NULL");
    k = (struct tm__stat_key){ table, depth, t, a, from_cf };
    rc = tm__stats_add(&x->delta, &k, -n, -bytes);
    k = (struct tm__stat_key){ table, depth, t, b, to_cf };
    return rc ? rc : tm__stats_add(&x->delta, &k, n, bytes);
}

/* The context of add_group. */
struct group_ctx {
    struct xctx *x; /* the command */
    int side;       /* enum tm__side: the table of the rows */
};

/* Adds the stats changes of a group of rows that change (the callback of
 * tm__q_excl_groups and tm__q_incl_groups; ctx is a struct group_ctx). */
static int add_group(void *ctx, const struct tm__q_excl_group *g)
{
    struct group_ctx *c = ctx;
    int rc = move_stat(c->x, c->side, g->depth, g->type, g->ts, 0, g->ts_to, 0, g->n,
                       g->bytes);
    if (!rc && c->side == TM_SRC)
        rc = move_stat(c->x, 2, g->depth, g->type, g->cs, g->cf, g->cs_to, g->cf_to,
                       g->n, g->bytes);
    return rc;
}

/* Excludes the source node id (path, not excluded) and its subtree, and
 * the subtree of its destination twin. */
static int exclude_root(struct xctx *x, int64_t id, const char *path,
                        const char *pattern)
{
    struct tm__buf *err = tm__migration_err(x->m);
    struct tm__buf np = TM__BUF_INIT, cs = TM__BUF_INIT;
    int64_t twin = 0, changed;
    int rc, side;

    rc = tm__q_excl_fill_subtree(x->db, TM_SRC, id, err);
    if (rc)
        return rc;
    /* refused once the copy has started anywhere in the subtree */
    rc = tm__q_excl_started(x->db, &np, &cs, err);
    if (rc == 1) {
        struct tm__buf p = TM__BUF_INIT, q = TM__BUF_INIT;
        tm__buf_add_escaped(&p, path, strlen(path));
        tm__buf_add_escaped(&q, np.buf, np.len);
        rc = tm__rv_fail(x->m, TM_EPHASE, "cannot exclude %s: the copy has started there "
                         "(%s is %s)", p.buf, q.buf, cs.buf);
        tm__buf_release(&p);
        tm__buf_release(&q);
    }
    tm__buf_release(&np);
    tm__buf_release(&cs);
    if (rc)
        return rc;

    for (side = 0; side < 2 && !rc; side++) {
        struct group_ctx g = { x, side };
        if (side == TM_DST) {
            int excluded;
            rc = tm__rv_find_node(x->m, TM_DST, path, &twin);
            if (rc == TM_ENOENT) {
                rc = 0;
                break; /* no twin: missing on the destination */
            }
            if (!rc)
                rc = tm__q_excl_dst_excluded(x->db, twin, &excluded, err);
            if (rc)
                break;
            if (excluded)
                break; /* excluded already */
            rc = tm__q_excl_fill_subtree(x->db, TM_DST, twin, err);
            if (rc)
                break;
        }
        rc = tm__q_excl_groups(x->db, side, add_group, &g, err);
        if (!rc)
            rc = tm__q_excl_mark(x->db, side, id, &changed, err);
        if (!rc && side == TM_SRC)
            x->changed += changed;
    }
    if (rc)
        return rc;
    return tm__q_excl_record_root(x->db, id, path, pattern, x->now, err);
}

/* Includes again the rows excluded with root id (both sides). */
static int include_root(struct xctx *x, int64_t id)
{
    struct tm__buf *err = tm__migration_err(x->m);
    int64_t changed;
    int side, rc = 0;

    for (side = 0; side < 2 && !rc; side++) {
        struct group_ctx g = { x, side };
        rc = tm__q_incl_groups(x->db, side, id, add_group, &g, err);
        if (!rc)
            rc = tm__q_incl_restore(x->db, side, id, &changed, err);
        if (!rc && side == TM_SRC)
            x->changed += changed;
    }
    if (!rc)
        rc = tm__q_incl_forget(x->db, id, err);
    return rc;
}

/* The path and pattern of the exclusion root of the source row id, into
 * out ("'/a' (pattern '/a')"), escaped for a message. */
static void describe_root(struct xctx *x, int64_t id, struct tm__buf *out)
{
    struct tm__buf p = TM__BUF_INIT, g = TM__BUF_INIT;
    tm__buf_reset(out);
    if (tm__q_excl_root_of(x->db, id, &p, &g)) {
        tm__buf_addch(out, '\'');
        tm__buf_add_escaped(out, p.buf, p.len);
        tm__buf_adds(out, "' (pattern '");
        tm__buf_add_escaped(out, g.buf, g.len);
        tm__buf_adds(out, "')");
    }
    tm__buf_release(&p);
    tm__buf_release(&g);
}

/* Handles one matched source node (by depth, so ancestors come first). */
static int apply_match(struct xctx *x, int64_t id, const char *pattern)
{
    struct tm__buf path = TM__BUF_INIT, why = TM__BUF_INIT, p = TM__BUF_INIT;
    struct tm__q_excl_node node;
    int64_t parent = 0, root = 0;
    int excluded, has_prev = 0, parent_excluded = 0, rc;

    rc = tm__q_excl_node(x->db, id, &path, &node, tm__migration_err(x->m));
    if (rc)
        goto out;
    excluded = node.excluded;
    parent = node.parent_id;
    parent_excluded = node.parent_excluded;

    if (!x->unexclude) {
        if (!excluded) /* else excluded already, by itself or an ancestor */
            rc = exclude_root(x, id, path.buf, pattern);
        goto out;
    }
    if (!excluded)
        goto out; /* included already (perhaps by an ancestor just now) */
    rc = tm__q_excl_prev_root(x->db, id, &has_prev, &root, tm__migration_err(x->m));
    if (rc)
        goto out;
    tm__buf_add_escaped(&p, path.buf, path.len);
    if (!has_prev) {
        rc = tm__rv_fail(x->m, TM_EPHASE, "cannot include %s again: it was excluded by "
                         "discovery (--exclude), which never listed its contents; run a "
                         "new discovery without that --exclude to include it", p.buf);
    } else if (root != id) {
        describe_root(x, id, &why);
        rc = tm__rv_fail(x->m, TM_EPHASE, "cannot include %s again on its own: it is "
                         "excluded because %s is; unexclude that instead", p.buf,
                         why.len ? why.buf : "an ancestor");
    } else if (parent_excluded) {
        describe_root(x, parent, &why);
        rc = tm__rv_fail(x->m, TM_EPHASE, "cannot include %s again: its folder is "
                         "excluded%s%s; unexclude that first", p.buf,
                         why.len ? " because of " : "", why.buf);
    } else {
        rc = include_root(x, id);
    }
out:
    tm__buf_release(&path);
    tm__buf_release(&why);
    tm__buf_release(&p);
    return rc;
}

/* 1 when a proper ancestor of path (not the root) matches the glob: the
 * exclusion of that ancestor covers the node. tmp is scratch space. */
static int ancestor_matches(const char *glob, const char *path, struct tm__buf *tmp)
{
    tm__buf_reset(tmp);
    if (tm__buf_adds(tmp, path))
        return 0; /* no memory: not skipping is slower, never wrong */
    for (;;) {
        char *slash = strrchr(tmp->buf, '/');
        if (!slash || slash == tmp->buf)
            return 0;
        tm__buf_setlen(tmp, (size_t)(slash - tmp->buf));
        if (tm__filter_match(&glob, 1, tmp->buf, strrchr(tmp->buf, '/') + 1))
            return 1;
    }
}

/* The context of take_match. */
struct collect_ctx {
    struct xctx *x;        /* the command */
    const char *pattern;   /* the pattern */
    int glob;              /* matched as a glob, else a plain path */
    int64_t n;             /* every match */
    struct tm__buf tmp;    /* scratch space */
};

/* Whether the candidate c is a match to collect (tm__q_match_collect's
 * callback; ctx is a struct collect_ctx): 1, or 0. */
static int take_match(void *ctx, const struct tm__q_candidate *c)
{
    struct collect_ctx *cc = ctx;
    const char *want = cc->x->unexclude ? "excluded" : NULL;
    int is_excl = c->ts && !strcmp(c->ts, "excluded");
    if (cc->glob && (!c->path || !c->name ||
                     !tm__filter_match(&cc->pattern, 1, c->path, c->name)))
        return 0;
    if (c->depth <= 0)
        return 0; /* the root: refused earlier, never matched here */
    ++cc->n;
    if (want ? !is_excl : is_excl)
        return 0; /* nothing to change */
    if (cc->glob && !cc->x->unexclude && ancestor_matches(cc->pattern, c->path, &cc->tmp))
        return 0;
    return 1;
}

/* Collects the source nodes a pattern matches into temp.tm_match (only the
 * ones whose state would change and, for an exclusion, that no matching
 * ancestor covers); *n gets every match. */
static int collect(struct xctx *x, const char *pattern, int64_t *n)
{
    struct collect_ctx cc;
    int64_t id = 0;
    int rc = 0;

    cc.x = x;
    cc.pattern = pattern;
    cc.glob = !(pattern[0] == '/' && !strpbrk(pattern, "*?[\\"));
    cc.n = 0;
    tm__buf_init(&cc.tmp);
    *n = 0;
    if (!cc.glob) {
        /* a plain path: a few index lookups */
        rc = tm__rv_find_node(x->m, TM_SRC, pattern, &id);
        if (rc == TM_ENOENT) {
            rc = 0;
            goto out;
        }
    }
    /* a glob: every row, matched as discovery matches --exclude */
    if (!rc)
        rc = tm__q_match_collect(x->db, id, take_match, &cc, tm__migration_err(x->m));
    *n = cc.n;
out:
    tm__buf_release(&cc.tmp);
    return rc;
}

/* Checks and normalizes a pattern: no newline; a pattern with a '/' starts
 * at the root and loses its trailing '/'; the root itself is refused. */
static int check_pattern(tm_migration *m, const char *p, struct tm__buf *out)
{
    size_t len;
    tm__buf_reset(out);
    if (!*p || strchr(p, '\n'))
        return tm__rv_fail(m, TM_EINVAL, "a pattern must be non-empty and hold no newline");
    if (tm__buf_adds(out, p))
        return TM_ENOMEM;
    len = out->len;
    while (len > 1 && out->buf[len - 1] == '/')
        len--;
    tm__buf_setlen(out, len);
    if (!strcmp(out->buf, "/"))
        return tm__rv_fail(m, TM_EINVAL, "the root cannot be excluded");
    if (strchr(out->buf, '/') && out->buf[0] != '/')
        return tm__rv_fail(m, TM_EINVAL, "'%s' holds a '/' but does not start with one: "
                           "paths start at the root ('/%s')", out->buf, out->buf);
    return 0;
}

/* Phases where exclusions may change: discovery complete, copy not. */
static int check_phase(struct xctx *x)
{
    struct tm__buf phase = TM__BUF_INIT, from = TM__BUF_INIT;
    enum tm__phase ph;
    int rc = 0;
    const char *what = x->unexclude ? "unexclude" : "exclude";
    if (tm__store_get(x->db, "phase", &phase) != 0) {
        rc = tm__rv_fail(x->m, TM_ENODB, "the state file %s records no migration",
                         tm__migration_path(x->m));
        goto out;
    }
    tm__rv_setting(x->db, "suspended_from", &from);
    ph = tm__phase_parse(phase.buf);
    if (ph == PH_DISCOVERED || ph == PH_COPYING ||
        (ph == PH_SUSPENDED && tm__phase_parse(from.buf) == PH_COPYING))
        goto out;
    if (ph == PH_COPIED || ph == PH_VERIFIED)
        rc = tm__rv_fail(x->m, TM_EPHASE, "cannot %s: the copy is complete (phase %s)",
                         what, phase.buf);
    else
        rc = tm__rv_fail(x->m, TM_EPHASE, "cannot %s: discovery is not complete (phase "
                         "%s%s%s); finish it with 'treemig discover' first", what,
                  phase.buf, from.len ? ", from " : "", from.buf);
out:
    tm__buf_release(&phase);
    tm__buf_release(&from);
    return rc;
}

/* Records the patterns of the exclusions in force (setting review_excludes,
 * one per line, first use first) and a log line. */
static int record(struct xctx *x, const char *const *patterns, size_t n)
{
    struct tm__buf v = TM__BUF_INIT, msg = TM__BUF_INIT;
    size_t i;
    int rc = tm__q_excl_patterns(x->db, &v, tm__migration_err(x->m));
    if (!rc)
        rc = tm__store_set(x->db, "review_excludes", v.buf);
    if (!rc)
        rc = tm__buf_addf(&msg, "%s: %" PRId64 " source rows changed, patterns:",
                          x->unexclude ? "unexclude" : "exclude", x->changed);
    for (i = 0; !rc && i < n; i++)
        rc = tm__buf_addf(&msg, " '%s'", patterns[i]);
    if (!rc)
        rc = tm__q_review_log(x->db, tm__wall_ns(), msg.buf, msg.len,
                              tm__migration_err(x->m));
    tm__buf_release(&v);
    tm__buf_release(&msg);
    return rc;
}

int tm__exclude_run(tm_migration *m, const char *const *patterns, size_t n,
                    int unexclude, int dry_run, struct tm__exclude_effect *eff)
{
    struct xctx x;
    struct tm__buf *pats = NULL;
    const char **norm = NULL;
    size_t i;
    int rc = 0, began = 0;

    if (eff)
        memset(eff, 0, sizeof *eff);
    memset(&x, 0, sizeof x);
    x.m = m;
    x.db = tm__migration_db(m);
    x.unexclude = unexclude;
    if (!x.db)
        return TM_EINVAL;
    tm__buf_reset(tm__migration_err(m));
    if (tm__migration_readonly(m))
        return tm__rv_fail(m, TM_EINVAL, "the state file is open read-only");
    if (!n || !patterns)
        return tm__rv_fail(m, TM_EINVAL, "no pattern given");
    pats = calloc(n, sizeof *pats);
    norm = calloc(n, sizeof *norm);
    if (!pats || !norm) {
        rc = TM_ENOMEM;
        goto out;
    }
    for (i = 0; i < n && !rc; i++) {
        tm__buf_init(&pats[i]);
        rc = check_pattern(m, patterns[i], &pats[i]);
        norm[i] = pats[i].buf;
    }
    if (rc)
        goto out;
    tm__iso_time(x.now, tm__wall_ns());

    rc = tm__store_begin(x.db, tm__migration_err(m));
    if (rc)
        goto out;
    began = 1;
    rc = tm__q_excl_tables(x.db, tm__migration_err(m));
    if (!rc)
        rc = check_phase(&x);
    if (!rc)
        rc = tm__q_excl_temp_tables(x.db, tm__migration_err(m));
    if (rc)
        goto out;

    for (i = 0; i < n; i++) {
        int64_t count;
        rc = tm__q_match_clear(x.db, tm__migration_err(m));
        if (!rc)
            rc = collect(&x, norm[i], &count);
        if (rc)
            goto out;
        if (!count) {
            struct tm__buf p = TM__BUF_INIT;
            tm__buf_add_escaped(&p, norm[i], strlen(norm[i]));
            rc = tm__rv_fail(m, TM_EINVAL, "no source node matches '%s'%s", p.buf,
                             strchr(norm[i], '/') ? "" : " (a name anywhere in the tree)");
            tm__buf_release(&p);
            goto out;
        }
        /* ancestors first: depth by depth, in keyset pages of ids (an
         * ancestor excluded or included first settles its whole subtree) */
        {
            int64_t depth = -1, last_id = 0;
            while (!rc) {
                int64_t ids[256];
                int k = 0, j;
                if (last_id == 0) { /* the next depth that holds matches */
                    int64_t next;
                    rc = tm__q_match_next_depth(x.db, depth, &next, tm__migration_err(m));
                    if (rc || next < 0)
                        break; /* done */
                    depth = next;
                    /* drop the matches that the shallower ones settled */
                    rc = tm__q_match_drop_settled(x.db, depth, x.unexclude,
                                                  tm__migration_err(m));
                    if (rc)
                        break;
                }
                rc = tm__q_match_page(x.db, depth, last_id, ids, 256, &k,
                                      tm__migration_err(m));
                if (rc)
                    break;
                for (j = 0; j < k && !rc; j++)
                    rc = apply_match(&x, ids[j], norm[i]);
                last_id = k == 256 ? ids[k - 1] : 0;
            }
            if (rc)
                goto out;
        }
    }
    if (eff && x.delta.n) {
        /* what the change does, for the caller (applying empties it) */
        eff->delta.rows = malloc(x.delta.n * sizeof *x.delta.rows);
        if (!eff->delta.rows) {
            rc = TM_ENOMEM;
            goto out;
        }
        memcpy(eff->delta.rows, x.delta.rows, x.delta.n * sizeof *x.delta.rows);
        eff->delta.n = eff->delta.alloc = x.delta.n;
    }
    rc = tm__q_excl_apply_stats(x.db, &x.delta, tm__migration_err(m));
    if (rc)
        goto out;
    rc = record(&x, norm, n);
    if (!rc)
        rc = tm__q_excl_finish(x.db, dry_run, tm__migration_err(m));
    if (!rc)
        began = 0;
out:
    if (began) {
        /* keep the first message: the rollback cannot fail in a way that
         * matters, and it also drops the temporary tables */
        tm__store_rollback(x.db);
    }
    if (eff && !rc)
        eff->changed = x.changed;
    else if (eff)
        tm__stats_release(&eff->delta);
    tm__stats_release(&x.delta);
    for (i = 0; pats && i < n; i++)
        tm__buf_release(&pats[i]);
    free(pats);
    free(norm);
    if (rc == TM_ENOMEM && !tm__migration_err(m)->len)
        tm__rv_fail(m, rc, "not enough memory to %s", unexclude ? "unexclude" : "exclude");
    else if (rc && !tm__migration_err(m)->len)
        tm__rv_fail(m, rc, "%s", tm_strerror(rc));
    return rc;
}

int tm_exclude(tm_migration *m, const char *const *patterns, size_t n,
               int unexclude, int64_t *changed)
{
    struct tm__exclude_effect eff;
    int rc = tm__exclude_run(m, patterns, n, unexclude, 0, &eff);
    if (changed)
        *changed = rc ? 0 : eff.changed;
    tm__stats_release(&eff.delta);
    return rc;
}

/* Writes pattern p as a line that exclude --from reads back as p: a
 * pattern that would read as a comment or a rule gets an escape or a
 * "- " in front. */
static int put_pattern(FILE *out, const char *p)
{
    const char *pre = "";
    if (p[0] == '#' || p[0] == ';')
        pre = "\\"; /* "\#x" is the glob of the name "#x" */
    else if ((p[0] == '+' || p[0] == '-') && p[1] == ' ')
        pre = "- ";
    return fprintf(out, "%s%s\n", pre, p) < 0 ? TM_EIO : 0;
}

int tm_exclude_list(tm_migration *m, FILE *out)
{
    struct tm__db *db = tm__migration_db(m);
    struct tm__buf v = TM__BUF_INIT, rules = TM__BUF_INIT;
    const char *p;
    int rc, began;

    if (!db || !out)
        return TM_EINVAL;
    tm__buf_reset(tm__migration_err(m));
    began = tm__q_begin_read(db);
    rc = tm__q_table_exists(db, "exclusions")
             ? tm__q_excl_patterns(db, &v, tm__migration_err(m)) : 0;
    tm__rv_setting(db, "excludes", &rules);
    tm__q_end_read(db, began);
    if (!rc && fprintf(out, "# the exclusions of %s (treemig exclude), one PATTERN a "
                       "line:\n# read back with: treemig exclude --db OTHER.db --from "
                       "THIS_FILE\n", tm__migration_path(m)) < 0)
        rc = TM_EIO;
    for (p = rules.buf; !rc && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (p == rules.buf && fputs("# discover's filter rules (first match wins; for "
                                    "discover --exclude-from):\n", out) < 0)
            rc = TM_EIO;
        if (!rc && fprintf(out, "#   %.*s\n", (int)len, p) < 0)
            rc = TM_EIO;
        p += len + (nl != NULL);
    }
    for (p = v.buf; !rc && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *one = strndup(p, len);
        rc = one ? put_pattern(out, one) : TM_ENOMEM;
        free(one);
        p += len + (nl != NULL);
    }
    if (!rc && (fflush(out) != 0 || ferror(out)))
        rc = TM_EIO;
    if (rc == TM_EIO)
        tm__rv_fail(m, rc, "cannot write the list");
    tm__buf_release(&v);
    tm__buf_release(&rules);
    return rc;
}
