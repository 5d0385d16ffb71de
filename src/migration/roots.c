/*
 * roots.c - the two storages of a migration: a spec resolved to the root
 * recorded, fault prefixes, opening each side (with the fault layer of the
 * tests), the checks that the roots are what discovery recorded and do not
 * overlap each other, the state file or the YAML file (tm_discover_check
 * runs them before anything is created), and the --owner checks. Runs on
 * the caller's thread, like the handle.
 */
#include "treemig.h"

#include "adapter/adapter.h"
#include "migration/migration_int.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Resolves a storage spec to the one recorded (its kind's resolve: a
 * local path made absolute, without symlinks; a remote one without any
 * secret). */
int tm__mig_resolve_spec(tm_migration *m, const char *what, const char *spec,
                         char **out)
{
    char err[512];
    int rc = tm__spec_resolve(spec, &m->sopts, out, err, sizeof err);
    if (rc == TM_ENOMEM)
        return tm__mig_fail(m, rc, "%s", tm_strerror(rc));
    if (rc)
        return tm__mig_fail(m, rc, "%s root %s", what, err);
    return 0;
}

/* The length of the fault prefixes of spec ("fault:RULES:", maybe more
 * than one). The state file stores a root without them: faults belong to
 * one run, not to the migration, so a run without them resumes it
 * (docs/adapters.md). */
size_t tm__mig_fault_prefix_len(const char *spec)
{
    const char *p = spec, *c;
    while (strncmp(p, "fault:", 6) == 0 && (c = strchr(p + 6, ':')) != NULL)
        p = c + 1;
    return (size_t)(p - spec);
}

/* Checks the rules of the fault prefixes of spec (plen bytes), so that a
 * malformed one is refused even when nothing is opened (a complete step). */
int tm__mig_check_fault_prefix(tm_migration *m, const char *spec, size_t plen)
{
    const char *p = spec;
    while ((size_t)(p - spec) < plen) {
        struct tm__fault_rule rules[TM_FAULT_MAX_RULES];
        char err[256];
        int n, rc = tm__fault_parse(p, rules, TM_FAULT_MAX_RULES, &n, &p, err,
                                    sizeof err);
        if (rc)
            return tm__mig_fail(m, rc, "%s", err);
    }
    return 0;
}

/* Opens the storage of one side at spec, wrapped in the fault layer with
 * the plen bytes of prefix (fault rules given with the root, may be 0) and
 * the rules of TREEMIG_FAULT_SRC or TREEMIG_FAULT_DST (a test hook; with
 * TREEMIG_FAULT_REPORT alone, a layer that only counts). */
int tm__mig_open_side(tm_migration *m, int side, const char *prefix, size_t plen,
                      const char *spec, struct tm__adapter **out)
{
    const char *env = getenv(side == TM_SRC ? "TREEMIG_FAULT_SRC"
                                            : "TREEMIG_FAULT_DST");
    const char *rep = getenv("TREEMIG_FAULT_REPORT");
    struct tm__buf b = TM__BUF_INIT;
    char aerr[512];
    int rc = 0;

    *out = NULL;
    if (m->plain)
        env = rep = NULL, plen = 0;
    if ((env && *env) || (rep && *rep && strcmp(rep, "0") != 0))
        rc = tm__buf_addf(&b, "fault:%s:", env ? env : "");
    if (!rc && plen)
        rc = tm__buf_add(&b, prefix, plen);
    if (!rc)
        rc = tm__buf_adds(&b, spec);
    if (rc) {
        tm__buf_release(&b);
        return tm__mig_fail(m, TM_ENOMEM, "cannot open the %s storage: %s",
                            side == TM_SRC ? "source" : "destination",
                            tm_strerror(TM_ENOMEM));
    }
    rc = tm__adapter_open(b.buf, &m->sopts, out, aerr, sizeof aerr);
    if (rc)
        tm__mig_fail(m, rc, "%s", aerr);
    tm__buf_release(&b);
    return rc;
}

/* 1 when path a is b or lies below b. */
static int is_within(const char *a, const char *b)
{
    size_t n = strlen(b);
    if (n == 1 && b[0] == '/')
        return 1;
    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

int tm__mig_check_roots(tm_migration *m, const char *src, const char *dst)
{
    const struct tm__kind *ks = tm__kind_of(src), *kd = tm__kind_of(dst);
    struct stat a, b;
    if (ks != kd)
        return 0; /* storages of two kinds cannot overlap */
    if (ks != &tm__local_kind) {
        char err[512];
        if (ks->overlap && ks->overlap(src, dst, &m->sopts, err, sizeof err))
            return tm__mig_fail(m, TM_EOVERLAP, "%s", err);
        return 0;
    }
    if (stat(src, &a) == 0 && stat(dst, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
        return tm__mig_fail(m, TM_EOVERLAP, "source and destination are the same folder "
                            "(%s)", src);
    if (is_within(dst, src))
        return tm__mig_fail(m, TM_EOVERLAP, "destination %s is inside the source %s", dst,
                            src);
    if (is_within(src, dst))
        return tm__mig_fail(m, TM_EOVERLAP, "source %s is inside the destination %s", src,
                            dst);
    return 0;
}

/* 1 when the folder at path, or a folder above it (walked up with ".."
 * from a descriptor, so that a bind mount or a symlink on the way does not
 * hide it), is the folder (dev, ino). 0 when not, or when path cannot be
 * opened. */
static int folder_within(const char *path, uint64_t dev, uint64_t ino)
{
    struct stat st, up;
    int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC), found = 0, n;
    if (fd < 0)
        return 0;
    for (n = 0; n < 4096 && fstat(fd, &st) == 0; n++) {
        int parent;
        if ((uint64_t)st.st_dev == dev && (uint64_t)st.st_ino == ino) {
            found = 1;
            break;
        }
        parent = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (parent < 0 || fstat(parent, &up) != 0 ||
            (up.st_dev == st.st_dev && up.st_ino == st.st_ino)) {
            if (parent >= 0)
                close(parent);
            break; /* the top */
        }
        close(fd);
        fd = parent;
    }
    close(fd);
    return found;
}

/* The folder that holds path (a file), as an absolute path, or NULL. */
static char *folder_of(const char *path)
{
    char *copy = strdup(path), *dir, *abs;
    if (!copy)
        return NULL;
    dir = dirname(copy);
    abs = realpath(dir, NULL);
    free(copy);
    return abs;
}

/* What must hold for the two storages opened in ad, every time they are
 * opened (discover, copy, verify, retry, resume), for local roots (the
 * storages that say what their root is):
 *  - a root on a pseudo file system (/proc, /sys, ...) only when allowed;
 *  - each root is the very folder discovery recorded (its identity, which
 *    a folder or symlink put in its place does not have); recorded here
 *    when the state file has none yet (record);
 *  - neither root is inside the other, whatever the route (each one's
 *    identity against the other and every folder above it), nor is the
 *    state file (with its -wal, -shm, .lock) or the YAML file inside
 *    either tree;
 *  - and, for the walks of discovery, each tree is told which folders it
 *    must not meet (the other root, those two folders), which catches what
 *    the paths above do not show (a bind mount of one below the other). */
int tm__mig_check_sides(tm_migration *m, struct tm__adapter *ad[2],
                        const char *const root[2], const char *yaml, int record,
                        int allow_pseudo)
{
    static const char *const side_name[2] = { "source", "destination" };
    static const char *const id_key[2] = { "src_id", "dst_id" };
    struct tm__root_info ri[2];
    struct tm__buf allow = TM__BUF_INIT, stored = TM__BUF_INIT;
    char *dirs[2] = { folder_of(m->store.path), yaml ? folder_of(yaml) : NULL };
    const char *dir_what[2] = { "the folder of the state file",
                                "the folder of the YAML file" };
    int have[2], side, i, rc = 0, pseudo_ok;

    pseudo_ok = allow_pseudo ||
                (m->store.db && tm__store_get(m->store.db, "allow_pseudo_fs", &allow) == 0 &&
                 strcmp(allow.buf, "1") == 0);
    for (side = 0; side < 2; side++)
        have[side] = tm__adapter_root_info(ad[side], &ri[side]) == 0;
    for (side = 0; side < 2 && !rc; side++) {
        int grc;
        if (!have[side])
            continue;
        if (ri[side].pseudo && !pseudo_ok) {
            rc = tm__mig_fail(m, TM_EROOT, "the %s root %s is on a %s pseudo file system "
                              "(what it shows is made up by the kernel as it is read, not "
                              "a tree of files): refused; discover --allow-pseudo-fs takes "
                              "it anyway", side_name[side], root[side], ri[side].fstype);
            break;
        }
        if (!m->store.db)
            continue; /* tm_discover_check: nothing recorded yet */
        grc = tm__store_get(m->store.db, id_key[side], &stored);
        if (grc == 0 && stored.len && strcmp(stored.buf, ri[side].id) != 0) {
            rc = tm__mig_fail(m, TM_EROOT, "the %s root %s is not the folder discovery "
                              "recorded (%s then, %s now): it was replaced or moved "
                              "since; refused: put the folder back, or start a new "
                              "migration", side_name[side], root[side], stored.buf,
                              ri[side].id);
        } else if (grc && grc != TM_ENOENT) {
            rc = tm__mig_setting_fail(m, grc);
        } else if (record && (grc == TM_ENOENT || !stored.len) &&
                   (grc = tm__store_set(m->store.db, id_key[side], ri[side].id))) {
            rc = tm__mig_fail(m, grc, "state file %s: cannot record the %s root: %s",
                              m->store.path, side_name[side], tm__store_errmsg(m->store.db));
        }
    }
    if (!rc && have[0] && have[1]) {
        if (ri[0].dev == ri[1].dev && ri[0].ino == ri[1].ino)
            rc = tm__mig_fail(m, TM_EOVERLAP, "source and destination are the same folder "
                              "(%s, %s)", root[0], root[1]);
        else if (folder_within(root[1], ri[0].dev, ri[0].ino))
            rc = tm__mig_fail(m, TM_EOVERLAP, "the destination %s is inside the source %s "
                              "(by another route: a bind mount or a symlink)", root[1],
                              root[0]);
        else if (folder_within(root[0], ri[1].dev, ri[1].ino))
            rc = tm__mig_fail(m, TM_EOVERLAP, "the source %s is inside the destination %s "
                              "(by another route: a bind mount or a symlink)", root[0],
                              root[1]);
    }
    for (i = 0; i < 2 && !rc; i++) {
        for (side = 0; side < 2 && !rc && dirs[i]; side++)
            if (have[side] && folder_within(dirs[i], ri[side].dev, ri[side].ino))
                rc = tm__mig_fail(m, TM_EOVERLAP, "%s file %s is inside the %s %s: it "
                                  "would change under the copy (and be copied); put it "
                                  "outside both trees", i ? "the YAML" : "the state",
                                  i ? yaml : m->store.path, side_name[side], root[side]);
    }
    for (side = 0; side < 2 && !rc; side++) {
        struct stat st;
        if (!have[side])
            continue;
        if (have[!side])
            rc = tm__adapter_forbid(ad[side], ri[!side].dev, ri[!side].ino,
                                    side ? "the source root" : "the destination root");
        for (i = 0; i < 2 && !rc; i++)
            if (dirs[i] && stat(dirs[i], &st) == 0)
                rc = tm__adapter_forbid(ad[side], (uint64_t)st.st_dev,
                                        (uint64_t)st.st_ino, dir_what[i]);
        if (rc)
            rc = tm__mig_fail(m, rc, "cannot guard the %s tree: %s", side_name[side],
                              tm_strerror(rc));
    }
    free(dirs[0]);
    free(dirs[1]);
    tm__buf_release(&allow);
    tm__buf_release(&stored);
    return rc;
}

int tm_discover_check(const char *db_path, const char *src, const char *dst,
                      const tm_discover_options *o, const char *const *storage_opts,
                      size_t n_storage_opts, char *err, size_t errlen)
{
    tm_migration m;
    struct tm__adapter *ad[2] = { NULL, NULL };
    char *rsrc = NULL, *rdst = NULL, *yaml = NULL;
    size_t src_plen = tm__mig_fault_prefix_len(src), dst_plen = tm__mig_fault_prefix_len(dst);
    int rc;

    memset(&m, 0, sizeof m);
    tm__buf_init(&m.err);
    m.plain = 1;
    m.store.path = tm__path_absolute(db_path);
    if (!m.store.path) {
        rc = tm__mig_fail(&m, TM_ENOMEM, "%s", tm_strerror(TM_ENOMEM));
        goto out;
    }
    rc = tm_migration_set_storage_options(&m, storage_opts, n_storage_opts);
    if (rc)
        goto out;
    if (o && o->config)
        yaml = tm__path_absolute(o->config);
    else {
        char *d = tm__store_yaml_default(m.store.path);
        yaml = d ? tm__path_absolute(d) : NULL;
        free(d);
    }
    tm__buf_reset(&m.err);
    rc = tm__mig_check_fault_prefix(&m, src, src_plen);
    if (!rc)
        rc = tm__mig_check_fault_prefix(&m, dst, dst_plen);
    if (!rc)
        rc = tm__mig_resolve_spec(&m, "source", src + src_plen, &rsrc);
    if (!rc)
        rc = tm__mig_resolve_spec(&m, "destination", dst + dst_plen, &rdst);
    if (!rc)
        rc = tm__mig_check_roots(&m, rsrc, rdst);
    if (!rc)
        rc = tm__mig_open_side(&m, TM_SRC, src, src_plen, rsrc, &ad[0]);
    if (!rc)
        rc = tm__mig_open_side(&m, TM_DST, dst, dst_plen, rdst, &ad[1]);
    if (!rc) {
        const char *roots[2] = { rsrc, rdst };
        rc = tm__mig_check_sides(&m, ad, roots, yaml, 0, o ? o->allow_pseudo_fs : 0);
    }
out:
    if (rc && err && errlen)
        snprintf(err, errlen, "%s", m.err.len ? m.err.buf : tm_strerror(rc));
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    free(rsrc);
    free(rdst);
    free(yaml);
    tm__mig_sopts_clear(&m);
    free(m.store.path);
    tm__buf_release(&m.err);
    return rc;
}

/* Opens both adapters from the stored specs, checked (tm__mig_check_sides). */
int tm__mig_open_roots(tm_migration *m, struct tm__adapter *ad[2])
{
    struct tm__db *db = m->store.db;
    char *src = tm__mig_setting_dup(db, "src"), *dst = tm__mig_setting_dup(db, "dst");
    int rc;

    ad[0] = ad[1] = NULL;
    if (!src || !dst) {
        /* missing, or a read that failed (not enough memory) */
        struct tm__buf b = TM__BUF_INIT;
        int grc = tm__store_get(db, src ? "dst" : "src", &b);
        tm__buf_release(&b);
        if (grc == TM_ENOENT)
            rc = tm__mig_fail(m, TM_ECORRUPT, "the state file names no roots");
        else
            rc = tm__mig_setting_fail(m, grc ? grc : TM_ENOMEM);
        goto out;
    }
    rc = tm__mig_sopts_load(m);
    if (!rc)
        rc = tm__mig_sopts_store(m);
    if (!rc)
        rc = tm__mig_open_side(m, TM_SRC, NULL, 0, src, &ad[0]);
    if (!rc)
        rc = tm__mig_open_side(m, TM_DST, NULL, 0, dst, &ad[1]);
    if (!rc) {
        const char *roots[2] = { src, dst };
        char *yaml = tm__mig_yaml_path_for(m, NULL);
        rc = tm__mig_check_sides(m, ad, roots, yaml, 1, 0);
        free(yaml);
    }
out:
    if (rc) {
        tm__adapter_close(ad[0]);
        tm__adapter_close(ad[1]);
        ad[0] = ad[1] = NULL;
    }
    free(src);
    free(dst);
    return rc;
}

/* Opens both adapters (tm__mig_open_roots) and readies the YAML file with the
 * stored options. */
int tm__mig_open_stored(tm_migration *m, struct tm__adapter *ad[2])
{
    struct tm__db *db = m->store.db;
    char *exc, **globs = NULL;
    tm_discover_options o;
    size_t n = 0;
    int rc = tm__mig_open_roots(m, ad);

    if (rc)
        return rc;
    exc = tm__mig_setting_dup(db, "excludes");
    tm_discover_options_init(&o);
    o.workers = tm__mig_get_int(db, "workers", 4);
    o.lead = tm__mig_get_int(db, "lead", 3);
    o.retries = tm__mig_get_int(db, "retries", 3);
    globs = tm__mig_split_lines(exc ? exc : "", &n);
    rc = globs ? tm__mig_config_prepare(m, NULL, &o, globs, n) : TM_ENOMEM;
    if (rc) {
        tm__adapter_close(ad[0]);
        tm__adapter_close(ad[1]);
        ad[0] = ad[1] = NULL;
    }
    free(exc);
    free(globs);
    return rc;
}

/* --owner (given to the copy, or to discovery: stored): only root gives
 * files away, and both storages must know owners. */
int tm__mig_check_owner(tm_migration *m, struct tm__adapter *ad[2], int stored)
{
    if (geteuid() != 0)
        return tm__mig_fail(m, TM_EINVAL, "--owner needs root: only root can give a "
                            "file to another user (running as uid %lu)%s",
                            (unsigned long)geteuid(), stored ? "; this migration was "
                            "discovered with --owner, so its copy sets owners" : "");
    return tm__mig_check_owner_caps(m, ad);
}

/* --owner, at discovery too: both storages must know owners. */
int tm__mig_check_owner_caps(tm_migration *m, struct tm__adapter *ad[2])
{
    if (!(ad[TM_SRC]->caps & TM_CAP_OWNER))
        return tm__mig_fail(m, TM_EINVAL, "--owner: the source (%s storage) does not "
                            "report owners", ad[TM_SRC]->name);
    if (!(ad[TM_DST]->caps & TM_CAP_OWNER) || !ad[TM_DST]->chown)
        return tm__mig_fail(m, TM_EINVAL, "--owner: the destination (%s storage) "
                            "cannot set owners", ad[TM_DST]->name);
    return 0;
}

int tm_dst_root_create(const char *src, const char *dst, int *created,
                       char *err, size_t errlen)
{
    const char *spec = dst + tm__mig_fault_prefix_len(dst);
    char *path = NULL, *parent = NULL, *name, *comp, *next;
    struct stat st;
    int fd = -1, nfd, rc = 0;
    size_t len;

    *created = 0;
    if (err && errlen)
        err[0] = '\0';
    /* only a local root is made here; a remote one is the storage's */
    if (!*spec || tm__kind_of(spec) != &tm__local_kind || lstat(spec, &st) == 0 ||
        errno != ENOENT)
        return 0;
    path = strdup(spec);
    if (!path) {
        rc = TM_ENOMEM;
        goto out;
    }
    len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        path[--len] = '\0';
    name = strrchr(path, '/');
    if (name) {
        *name++ = '\0';
        parent = realpath(*path ? path : "/", NULL);
    } else {
        name = path;
        parent = realpath(".", NULL);
    }
    if (!*name || !strcmp(name, ".") || !strcmp(name, "..")) {
        snprintf(err, errlen, "destination root %s: does not exist", spec);
        rc = TM_EROOT;
        goto out;
    }
    if (!parent) {
        snprintf(err, errlen, "destination root %s: does not exist, nor its "
                 "parent folder", spec);
        rc = TM_EROOT;
        goto out;
    }
    /* never inside the source tree, not even for a moment */
    if (src && tm__kind_of(src + tm__mig_fault_prefix_len(src)) == &tm__local_kind) {
        char *rs = realpath(src + tm__mig_fault_prefix_len(src), NULL);
        int inside = rs && is_within(parent, rs);
        free(rs);
        if (inside) {
            snprintf(err, errlen, "destination root %s would be inside the "
                     "source root %s: not created", spec, src);
            rc = TM_EOVERLAP;
            goto out;
        }
    }
    /* the parent resolved, walked again without following anything: a
     * symlink put in its way since is refused */
    fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    for (comp = parent; fd >= 0 && *comp; comp = next) {
        next = strchr(comp, '/');
        if (next)
            *next++ = '\0';
        else
            next = comp + strlen(comp);
        if (!*comp)
            continue;
        nfd = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        fd = nfd;
    }
    if (fd < 0 || mkdirat(fd, name, 0777) != 0) {
        int e = errno;
        snprintf(err, errlen, "destination root %s: cannot create it: %s", spec,
                 tm_strerror(tm__from_errno(e)));
        rc = e == ENOENT || e == ENOTDIR || e == ELOOP ? TM_EROOT
                                                        : tm__from_errno(e);
        goto out;
    }
    *created = 1;
out:
    if (fd >= 0)
        close(fd);
    free(path);
    free(parent);
    return rc;
}
