/*
 * migration.c - the migration handle: phases, roots, options, and the
 * public entry points of treemig.h. Runs on the caller's thread; only
 * tm_migration_interrupt() may be called from elsewhere (a signal handler).
 */
#include "treemig.h"

#include "adapter/adapter.h"
#include "engine/engine.h"
#include "engine/execute.h"
#include "log/log.h"
#include "migration/config.h"
#include "migration/migration_int.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/util.h"

#include <fcntl.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct tm_migration {
    struct tm__store store; /* the state file */
    int open;               /* store is open */
    int discard;            /* remove the state file on free: it was created
                               by this open and holds no migration */
    struct tm__buf err;     /* message of the last failure */
    atomic_int stop;        /* set by tm_migration_interrupt() */
    struct tm__config cfg;  /* the YAML file's content, kept current */
    char *config_path;      /* the YAML file; NULL until known */
    int cfg_ready;          /* cfg mirrors the state file: save it at
                               every milestone */
    char *log_addr;         /* the UDP listener of the running phase */
    int plain;              /* open storages without fault layers (the
                               checks of tm_discover_check) */
    char **sopt;            /* storage options of this run, "key=value" */
    size_t n_sopt;          /* their count */
    int sopt_given;         /* given by the caller (they replace the stored
                               ones, and are recorded), else read from the
                               state file */
    struct tm__sopts sopts; /* the view adapters read (sopt, n_sopt) */
};

static int fail(tm_migration *m, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int setting_fail(tm_migration *m, int rc);
static int copy_setting(sqlite3 *db, const char *key, char *out, size_t len);

/* A setting of the state file could not be read (not: is missing). */
static int setting_fail(tm_migration *m, int rc)
{
    return fail(m, rc, "state file %s: cannot read its settings: %s",
                m->store.path,
                rc == TM_EDB || rc == TM_ECORRUPT ? sqlite3_errmsg(m->store.db)
                                                  : tm_strerror(rc));
}

static int fail(tm_migration *m, int rc, const char *fmt, ...)
{
    va_list ap;
    tm__buf_reset(&m->err);
    va_start(ap, fmt);
    tm__buf_vaddf(&m->err, fmt, ap);
    va_end(ap);
    return rc;
}

static void sopts_clear(tm_migration *m)
{
    size_t i;
    for (i = 0; i < m->n_sopt; i++)
        free(m->sopt[i]);
    free(m->sopt);
    m->sopt = NULL;
    m->n_sopt = 0;
    m->sopts.kv = NULL;
    m->sopts.n = 0;
}

/* Adds one option (len bytes of kv) to m's list. */
static int sopts_add(tm_migration *m, const char *kv, size_t len)
{
    char **p = realloc(m->sopt, (m->n_sopt + 1) * sizeof *p);
    if (!p)
        return TM_ENOMEM;
    m->sopt = p;
    if (!(p[m->n_sopt] = strndup(kv, len)))
        return TM_ENOMEM;
    m->n_sopt++;
    m->sopts.kv = (const char *const *)m->sopt;
    m->sopts.n = m->n_sopt;
    return 0;
}

/* 1 when key (len bytes) is an option of some storage kind. */
static int sopt_known(const char *key, size_t len)
{
    size_t i, j;
    for (i = 0; tm__kinds[i]; i++)
        for (j = 0; tm__kinds[i]->keys && tm__kinds[i]->keys[j]; j++)
            if (strlen(tm__kinds[i]->keys[j]) == len &&
                memcmp(tm__kinds[i]->keys[j], key, len) == 0)
                return 1;
    return 0;
}

int tm_migration_set_storage_options(tm_migration *m, const char *const *kv,
                                     size_t n)
{
    size_t i;
    int rc = 0;
    if (!m)
        return TM_EINVAL;
    sopts_clear(m);
    for (i = 0; i < n && !rc; i++) {
        const char *eq = strchr(kv[i], '=');
        size_t klen = eq ? (size_t)(eq - kv[i]) : strlen(kv[i]);
        if (strchr(kv[i], '\n') || !sopt_known(kv[i], klen))
            rc = fail(m, TM_EINVAL, "unknown storage option '%.*s' (docs/adapters.md "
                      "lists each storage's options)", (int)klen, kv[i]);
        else
            rc = sopts_add(m, kv[i], strlen(kv[i]));
    }
    if (rc)
        sopts_clear(m);
    m->sopt_given = !rc && n > 0;
    return rc;
}

/* The storage options of this run: the caller's, or else the ones the
 * state file records. */
static int sopts_load(tm_migration *m)
{
    struct tm__buf b = TM__BUF_INIT;
    const char *p;
    int rc;
    if (m->sopt_given)
        return 0;
    sopts_clear(m);
    rc = tm__store_get(m->store.db, "storage_options", &b);
    if (rc == TM_ENOENT) {
        tm__buf_release(&b);
        return 0;
    }
    for (p = b.buf; !rc && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len)
            rc = sopts_add(m, p, len);
        p += len + (nl != NULL);
    }
    tm__buf_release(&b);
    return rc ? setting_fail(m, rc) : 0;
}

/* Records the caller's storage options (none secret: a kind takes no
 * secret as an option) so that the later commands reuse them. */
static int sopts_store(tm_migration *m)
{
    struct tm__buf b = TM__BUF_INIT;
    size_t i;
    int rc = 0;
    if (!m->sopt_given)
        return 0;
    for (i = 0; !rc && i < m->n_sopt; i++)
        rc = tm__buf_addf(&b, "%s%s", i ? "\n" : "", m->sopt[i]);
    if (!rc)
        rc = tm__store_set(m->store.db, "storage_options", b.buf);
    tm__buf_release(&b);
    return rc;
}

int tm_migration_open(tm_migration **out, const char *db_path, unsigned flags)
{
    tm_migration *m = calloc(1, sizeof *m);
    int rc;
    *out = m;
    if (!m)
        return TM_ENOMEM;
    tm__buf_init(&m->err);
    atomic_init(&m->stop, 0);
    rc = tm__store_open(&m->store, db_path, flags, &m->err);
    if (rc) {
        if (!m->err.len)
            tm__buf_addf(&m->err, "cannot open %s: %s", db_path, tm_strerror(rc));
        return rc;
    }
    m->open = 1;
    return 0;
}

void tm_migration_free(tm_migration *m)
{
    if (!m)
        return;
    if (m->open && m->discard) {
        static const char *const ext[] = { "", "-wal", "-shm", ".lock" };
        struct tm__buf p = TM__BUF_INIT;
        char *path = strdup(m->store.path);
        size_t i;
        tm__store_close(&m->store);
        for (i = 0; path && i < sizeof ext / sizeof *ext; i++) {
            tm__buf_reset(&p);
            if (tm__buf_addf(&p, "%s%s", path, ext[i]) == 0)
                unlink(p.buf);
        }
        free(path);
        tm__buf_release(&p);
    } else if (m->open) {
        tm__store_close(&m->store);
    }
    tm__config_release(&m->cfg);
    sopts_clear(m);
    free(m->config_path);
    free(m->log_addr);
    tm__buf_release(&m->err);
    free(m);
}

const char *tm_migration_errmsg(const tm_migration *m)
{
    return m ? m->err.buf : "not enough memory";
}

void tm_migration_interrupt(tm_migration *m)
{
    if (m)
        atomic_store(&m->stop, 1);
}

/* Writes the YAML file from m->cfg (a milestone). */
static int save_config(tm_migration *m)
{
    char now[32];
    struct tm__buf err = TM__BUF_INIT;
    int rc;
    if (!m->cfg_ready)
        return 0;
    tm__iso_time(now, tm__wall_ns());
    rc = tm__config_set(&m->cfg.updated, now);
    if (!rc)
        rc = tm__config_write(m->config_path, &m->cfg, &err);
    if (rc)
        fail(m, rc, "%s", err.len ? err.buf : tm_strerror(rc));
    tm__buf_release(&err);
    return rc;
}

/* Records a phase in the state file and the YAML file. from is the running
 * phase a suspension interrupted, or NULL. */
static int set_phase_from(tm_migration *m, const char *phase, const char *from)
{
    char now[32];
    int rc;
    tm__iso_time(now, tm__wall_ns());
    rc = tm__store_set(m->store.db, "phase", phase);
    if (!rc)
        rc = tm__store_set(m->store.db, "updated", now);
    if (!rc)
        rc = tm__store_set(m->store.db, "suspended_from", from ? from : "");
    if (rc)
        return fail(m, rc, "cannot record phase %s: %s", phase,
                    sqlite3_errmsg(m->store.db));
    if (m->cfg_ready) {
        rc = tm__config_set(&m->cfg.phase, phase);
        if (!rc)
            rc = tm__config_set(&m->cfg.suspended_from, from);
        if (!rc)
            rc = save_config(m);
    }
    return rc;
}

static int set_phase(tm_migration *m, const char *phase)
{
    return set_phase_from(m, phase, NULL);
}

/* Resolves a storage spec to the one recorded (its kind's resolve: a
 * local path made absolute, without symlinks; a remote one without any
 * secret). */
static int resolve_spec(tm_migration *m, const char *what, const char *spec,
                        char **out)
{
    char err[512];
    int rc = tm__spec_resolve(spec, &m->sopts, out, err, sizeof err);
    if (rc == TM_ENOMEM)
        return fail(m, rc, "%s", tm_strerror(rc));
    if (rc)
        return fail(m, rc, "%s root %s", what, err);
    return 0;
}

/* The length of the fault prefixes of spec ("fault:RULES:", maybe more
 * than one). The state file stores a root without them: faults belong to
 * one run, not to the migration, so a run without them resumes it
 * (docs/adapters.md). */
static size_t fault_prefix_len(const char *spec)
{
    const char *p = spec, *c;
    while (strncmp(p, "fault:", 6) == 0 && (c = strchr(p + 6, ':')) != NULL)
        p = c + 1;
    return (size_t)(p - spec);
}

/* Checks the rules of the fault prefixes of spec (plen bytes), so that a
 * malformed one is refused even when nothing is opened (a complete step). */
static int check_fault_prefix(tm_migration *m, const char *spec, size_t plen)
{
    const char *p = spec;
    while ((size_t)(p - spec) < plen) {
        struct tm__fault_rule rules[TM_FAULT_MAX_RULES];
        char err[256];
        int n, rc = tm__fault_parse(p, rules, TM_FAULT_MAX_RULES, &n, &p, err,
                                    sizeof err);
        if (rc)
            return fail(m, rc, "%s", err);
    }
    return 0;
}

/* Opens the storage of one side at spec, wrapped in the fault layer with
 * the plen bytes of prefix (fault rules given with the root, may be 0) and
 * the rules of TREEMIG_FAULT_SRC or TREEMIG_FAULT_DST (a test hook; with
 * TREEMIG_FAULT_REPORT alone, a layer that only counts). */
static int open_side(tm_migration *m, int side, const char *prefix, size_t plen,
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
        return fail(m, TM_ENOMEM, "cannot open the %s storage: %s",
                    side == TM_SRC ? "source" : "destination",
                    tm_strerror(TM_ENOMEM));
    }
    rc = tm__adapter_open(b.buf, &m->sopts, out, aerr, sizeof aerr);
    if (rc)
        fail(m, rc, "%s", aerr);
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

static int check_roots(tm_migration *m, const char *src, const char *dst)
{
    const struct tm__kind *ks = tm__kind_of(src), *kd = tm__kind_of(dst);
    struct stat a, b;
    if (ks != kd)
        return 0; /* storages of two kinds cannot overlap */
    if (ks != &tm__local_kind) {
        char err[512];
        if (ks->overlap && ks->overlap(src, dst, &m->sopts, err, sizeof err))
            return fail(m, TM_EOVERLAP, "%s", err);
        return 0;
    }
    if (stat(src, &a) == 0 && stat(dst, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
        return fail(m, TM_EOVERLAP, "source and destination are the same folder "
                    "(%s)", src);
    if (is_within(dst, src))
        return fail(m, TM_EOVERLAP, "destination %s is inside the source %s", dst,
                    src);
    if (is_within(src, dst))
        return fail(m, TM_EOVERLAP, "source %s is inside the destination %s", src,
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

/* The YAML file a run will write: the one given, else the one the state
 * file names, else the state file's name with .yaml. malloc'd or NULL. */
static char *yaml_path_for(tm_migration *m, const char *given)
{
    struct tm__buf b = TM__BUF_INIT;
    char *p;
    if (given)
        return tm__path_absolute(given);
    if (m->config_path)
        return strdup(m->config_path);
    if (tm__store_get(m->store.db, "config", &b) == 0 && b.len)
        return tm__buf_detach(&b, NULL);
    tm__buf_release(&b);
    if (tm__buf_addf(&b, "%s.yaml", m->store.path))
        return NULL;
    p = tm__path_absolute(b.buf);
    tm__buf_release(&b);
    return p;
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
static int check_sides(tm_migration *m, struct tm__adapter *ad[2],
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
            rc = fail(m, TM_EROOT, "the %s root %s is on a %s pseudo file system "
                      "(what it shows is made up by the kernel as it is read, not "
                      "a tree of files): refused; discover --allow-pseudo-fs takes "
                      "it anyway", side_name[side], root[side], ri[side].fstype);
            break;
        }
        if (!m->store.db)
            continue; /* tm_discover_check: nothing recorded yet */
        grc = tm__store_get(m->store.db, id_key[side], &stored);
        if (grc == 0 && stored.len && strcmp(stored.buf, ri[side].id) != 0) {
            rc = fail(m, TM_EROOT, "the %s root %s is not the folder discovery "
                      "recorded (%s then, %s now): it was replaced or moved "
                      "since; refused: put the folder back, or start a new "
                      "migration", side_name[side], root[side], stored.buf,
                      ri[side].id);
        } else if (grc && grc != TM_ENOENT) {
            rc = setting_fail(m, grc);
        } else if (record && (grc == TM_ENOENT || !stored.len) &&
                   (grc = tm__store_set(m->store.db, id_key[side], ri[side].id))) {
            rc = fail(m, grc, "state file %s: cannot record the %s root: %s",
                      m->store.path, side_name[side], sqlite3_errmsg(m->store.db));
        }
    }
    if (!rc && have[0] && have[1]) {
        if (ri[0].dev == ri[1].dev && ri[0].ino == ri[1].ino)
            rc = fail(m, TM_EOVERLAP, "source and destination are the same folder "
                      "(%s, %s)", root[0], root[1]);
        else if (folder_within(root[1], ri[0].dev, ri[0].ino))
            rc = fail(m, TM_EOVERLAP, "the destination %s is inside the source %s "
                      "(by another route: a bind mount or a symlink)", root[1],
                      root[0]);
        else if (folder_within(root[0], ri[1].dev, ri[1].ino))
            rc = fail(m, TM_EOVERLAP, "the source %s is inside the destination %s "
                      "(by another route: a bind mount or a symlink)", root[0],
                      root[1]);
    }
    for (i = 0; i < 2 && !rc; i++) {
        for (side = 0; side < 2 && !rc && dirs[i]; side++)
            if (have[side] && folder_within(dirs[i], ri[side].dev, ri[side].ino))
                rc = fail(m, TM_EOVERLAP, "%s file %s is inside the %s %s: it "
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
            rc = fail(m, rc, "cannot guard the %s tree: %s", side_name[side],
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
    size_t src_plen = fault_prefix_len(src), dst_plen = fault_prefix_len(dst);
    int rc;

    memset(&m, 0, sizeof m);
    tm__buf_init(&m.err);
    m.plain = 1;
    m.store.path = tm__path_absolute(db_path);
    if (!m.store.path) {
        rc = fail(&m, TM_ENOMEM, "%s", tm_strerror(TM_ENOMEM));
        goto out;
    }
    rc = tm_migration_set_storage_options(&m, storage_opts, n_storage_opts);
    if (rc)
        goto out;
    if (o && o->config)
        yaml = tm__path_absolute(o->config);
    else if (tm__buf_addf(&m.err, "%s.yaml", m.store.path) == 0)
        yaml = tm__path_absolute(m.err.buf);
    tm__buf_reset(&m.err);
    rc = check_fault_prefix(&m, src, src_plen);
    if (!rc)
        rc = check_fault_prefix(&m, dst, dst_plen);
    if (!rc)
        rc = resolve_spec(&m, "source", src + src_plen, &rsrc);
    if (!rc)
        rc = resolve_spec(&m, "destination", dst + dst_plen, &rdst);
    if (!rc)
        rc = check_roots(&m, rsrc, rdst);
    if (!rc)
        rc = open_side(&m, TM_SRC, src, src_plen, rsrc, &ad[0]);
    if (!rc)
        rc = open_side(&m, TM_DST, dst, dst_plen, rdst, &ad[1]);
    if (!rc) {
        const char *roots[2] = { rsrc, rdst };
        rc = check_sides(&m, ad, roots, yaml, 0, o ? o->allow_pseudo_fs : 0);
    }
out:
    if (rc && err && errlen)
        snprintf(err, errlen, "%s", m.err.len ? m.err.buf : tm_strerror(rc));
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    free(rsrc);
    free(rdst);
    free(yaml);
    sopts_clear(&m);
    free(m.store.path);
    tm__buf_release(&m.err);
    return rc;
}

static int join_excludes(const tm_discover_options *o, struct tm__buf *out)
{
    size_t i;
    for (i = 0; o && i < o->n_excludes; i++) {
        if (strchr(o->excludes[i], '\n') || !o->excludes[i][0])
            return TM_EINVAL;
        if (i && tm__buf_addch(out, '\n'))
            return TM_ENOMEM;
        if (tm__buf_adds(out, o->excludes[i]))
            return TM_ENOMEM;
    }
    return 0;
}

static int insert_root(sqlite3 *db, int side, const struct tm__entry *e)
{
    static const char *const sql[2] = {
        "INSERT INTO src_nodes(id,parent_id,path,name,type,size,mtime,mode,depth,"
        "traversal_status,copy_status) VALUES(1,NULL,'/','','folder',0,?,?,0,"
        "'pending','already_existed')",
        "INSERT INTO dst_nodes(id,parent_id,path,name,type,size,mtime,mode,depth,"
        "traversal_status,src_id) VALUES(1,NULL,'/','','folder',0,?,?,0,"
        "'pending',1)",
    };
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql[side], -1, &st, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, NULL, "seed roots");
    sqlite3_bind_int64(st, 1, e->mtime);
    sqlite3_bind_int64(st, 2, e->mode);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : tm__store_error(db, rc, NULL, "seed roots");
}

static int set_int(sqlite3 *db, const char *key, int v)
{
    char s[32];
    snprintf(s, sizeof s, "%d", v);
    return tm__store_set(db, key, s);
}

/* Records a new migration: roots, options, root rows, stats. One
 * transaction: a crash leaves either nothing or all of it. */
static int create_migration(tm_migration *m, const char *src, const char *dst,
                            const char *excludes, const tm_discover_options *o,
                            struct tm__adapter *ad[2])
{
    sqlite3 *db = m->store.db;
    struct tm__entry root[2];
    struct tm__stats_delta d = { NULL, 0, 0 };
    struct tm__stat_key k;
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
            return fail(m, rc == TM_ENOENT || rc == TM_ENOTDIR ? TM_EROOT : rc,
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

    rc = tm__store_exec(db, "BEGIN IMMEDIATE", &m->err);
    if (rc)
        return rc;
    rc = tm__store_set(db, "schema_version", "1");
    if (!rc) rc = tm__store_set(db, "id", id);
    if (!rc) rc = tm__store_set(db, "created", now);
    if (!rc) rc = tm__store_set(db, "src", src);
    if (!rc) rc = tm__store_set(db, "dst", dst);
    if (!rc) rc = tm__store_set(db, "excludes", excludes);
    if (!rc) rc = set_int(db, "workers", o->workers);
    if (!rc) rc = set_int(db, "lead", o->lead);
    if (!rc) rc = set_int(db, "retries", o->retries);
    if (!rc) rc = tm__store_set(db, "src_round", "0");
    if (!rc) rc = tm__store_set(db, "dst_round", "0");
    if (!rc && o->allow_pseudo_fs) rc = tm__store_set(db, "allow_pseudo_fs", "1");
    if (!rc && o->owner) rc = tm__store_set(db, "owner", "1");
    if (!rc && o->no_specials) rc = tm__store_set(db, "no_specials", "1");
    if (!rc && o->one_file_system) rc = tm__store_set(db, "one_fs", "1");
    if (!rc && o->no_xattrs) rc = tm__store_set(db, "no_xattrs", "1");
    if (!rc) rc = sopts_store(m);
    for (i = 0; i < 2 && !rc; i++) {
        /* what each root is, so that a folder put in its place is refused */
        struct tm__root_info ri;
        if (tm__adapter_root_info(ad[i], &ri) == 0 && ri.id[0])
            rc = tm__store_set(db, i ? "dst_id" : "src_id", ri.id);
    }
    if (!rc) rc = insert_root(db, TM_SRC, &root[0]);
    if (!rc) rc = insert_root(db, TM_DST, &root[1]);
    k = (struct tm__stat_key){ 0, 0, TM_T_FOLDER, TS_PENDING, 0 };
    if (!rc) rc = tm__stats_add(&d, &k, 1, 0);
    k = (struct tm__stat_key){ 1, 0, TM_T_FOLDER, TS_PENDING, 0 };
    if (!rc) rc = tm__stats_add(&d, &k, 1, 0);
    k = (struct tm__stat_key){ 2, 0, TM_T_FOLDER, CS_ALREADY, 0 };
    if (!rc) rc = tm__stats_add(&d, &k, 1, 0);
    if (!rc) rc = tm__stats_apply(db, &d);
    tm__stats_release(&d);
    if (!rc) rc = set_phase(m, "roots-set");
    if (!rc) rc = tm__store_exec(db, "COMMIT", &m->err);
    if (rc) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        if (!m->err.len)
            fail(m, rc, "cannot record the migration: %s", sqlite3_errmsg(db));
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

static int get_int(sqlite3 *db, const char *key, int dflt)
{
    struct tm__buf b = TM__BUF_INIT;
    int v = dflt;
    if (tm__store_get(db, key, &b) == 0 && b.len)
        v = atoi(b.buf);
    tm__buf_release(&b);
    return v;
}

/* As get_int, but a read that fails (not: a missing key) is an error: the
 * value is stored again afterwards, and a default must not replace it. */
static int get_int_checked(tm_migration *m, const char *key, int dflt, int *out)
{
    struct tm__buf b = TM__BUF_INIT;
    int rc = tm__store_get(m->store.db, key, &b);
    *out = rc == 0 && b.len ? atoi(b.buf) : dflt;
    tm__buf_release(&b);
    return rc && rc != TM_ENOENT ? setting_fail(m, rc) : 0;
}

/* Splits the stored excludes into a NULL-terminated array (one malloc). */
static char **split_lines(const char *s, size_t *n)
{
    size_t count = *s ? 1 : 0, i, len = strlen(s);
    char **v, *copy;
    for (i = 0; i < len; i++)
        count += s[i] == '\n';
    v = malloc((count + 1) * sizeof *v + len + 1);
    if (!v)
        return NULL;
    copy = (char *)(v + count + 1);
    memcpy(copy, s, len + 1);
    *n = 0;
    if (count) {
        char *p = copy;
        for (;;) {
            char *nl = strchr(p, '\n');
            v[(*n)++] = p;
            if (!nl)
                break;
            *nl = '\0';
            p = nl + 1;
        }
    }
    v[*n] = NULL;
    return v;
}

static char *setting_dup(sqlite3 *db, const char *key)
{
    struct tm__buf b = TM__BUF_INIT;
    char *v = NULL;
    if (tm__store_get(db, key, &b) == 0)
        v = tm__buf_detach(&b, NULL);
    tm__buf_release(&b);
    return v;
}

/* An absolute form of path (the folder resolved, the name kept), or NULL
 * when memory is short. */
char *tm__path_absolute(const char *path)
{
    struct tm__buf b = TM__BUF_INIT;
    char *copy = strdup(path), *slash, *dir;
    int rc;
    if (!copy)
        return NULL;
    slash = strrchr(copy, '/');
    if (slash == copy) {
        rc = tm__buf_adds(&b, copy);
    } else {
        if (slash)
            *slash = '\0';
        errno = 0;
        dir = realpath(slash ? copy : ".", NULL);
        if (dir)
            rc = tm__buf_addf(&b, "%s/%s", strcmp(dir, "/") ? dir : "",
                              slash ? slash + 1 : copy);
        else if (errno == ENOMEM)
            rc = TM_ENOMEM; /* not a reason to keep a relative path */
        else
            rc = tm__buf_adds(&b, path);
        free(dir);
    }
    free(copy);
    if (rc) {
        tm__buf_release(&b);
        return NULL;
    }
    return tm__buf_detach(&b, NULL);
}

/* Merges the logging settings given (NULL: keep) with the stored ones,
 * checks and stores them, and fills *out for the engine. */
static int log_settings(tm_migration *m, const char *level, const char *udp_level,
                        const char *addr, int allow_public, struct tm__log_cfg *out)
{
    sqlite3 *db = m->store.db;
    const char *keys[3] = { "log_level", "udp_level", "udp_addr" };
    const char *dflt[3] = { "info", "warning", "127.0.0.1:8081" };
    const char *given[3] = { level, udp_level, addr };
    char *val[3] = { NULL, NULL, NULL };
    struct sockaddr_storage sa;
    unsigned salen;
    int lv[2], i, rc = 0, loop = 0;

    for (i = 0; i < 3 && !rc; i++) {
        if (given[i]) {
            val[i] = strdup(given[i]);
        } else {
            /* a failed read must not store the default over the setting */
            struct tm__buf b = TM__BUF_INIT;
            int grc = tm__store_get(db, keys[i], &b);
            if (grc && grc != TM_ENOENT) {
                tm__buf_release(&b);
                rc = setting_fail(m, grc);
                break;
            }
            val[i] = grc == 0 ? tm__buf_detach(&b, NULL) : NULL;
            tm__buf_release(&b);
        }
        if (!val[i] || !*val[i]) {
            free(val[i]);
            val[i] = strdup(dflt[i]);
        }
        if (!val[i])
            rc = TM_ENOMEM;
    }
    for (i = 0; i < 2 && !rc; i++) {
        lv[i] = strcasecmp(val[i], "off") == 0 ? TM_LEVEL_COUNT
                                                : tm__level_parse(val[i]);
        if (lv[i] < 0)
            rc = fail(m, TM_EINVAL, "unknown log level '%s' (trace, debug, info, "
                      "warning, error, critical, off)", val[i]);
    }
    if (!rc && (tm__log_parse_addr(val[2], &sa, &salen, &loop) != 0 ||
                ((struct sockaddr_in *)&sa)->sin_port == 0))
        rc = fail(m, TM_EINVAL, "bad log listener address '%s' (HOST:PORT with "
                  "a port from 1 to 65535, or [IPv6]:PORT)", val[2]);
    if (!rc && !loop && !allow_public)
        rc = fail(m, TM_EINVAL, "the log listener %s is not on this machine: "
                  "logs stay on loopback unless --log-public is given", val[2]);
    for (i = 0; i < 3 && !rc; i++)
        rc = tm__store_set(db, keys[i], val[i]);
    if (!rc) {
        memset(out, 0, sizeof *out);
        out->db_level = lv[0];
        out->udp_level = lv[1];
        free(m->log_addr);
        m->log_addr = val[2]; /* kept until the run ends: see log_release */
        val[2] = NULL;
        out->udp_addr = m->log_addr;
        out->allow_public = allow_public;
        out->migration = m->cfg.id;
        if (m->cfg_ready) {
            tm__config_set(&m->cfg.log_level, val[0]);
            tm__config_set(&m->cfg.udp_level, val[1]);
            tm__config_set(&m->cfg.udp_addr, out->udp_addr);
        }
    }
    for (i = 0; i < 3; i++)
        free(val[i]);
    return rc;
}

/* Checks the logging options given, before anything is created. */
static int check_log_options(tm_migration *m, const tm_discover_options *o)
{
    const char *lv[2] = { o->log_level, o->udp_level };
    struct sockaddr_storage sa;
    unsigned salen;
    int i, loop = 0;
    for (i = 0; i < 2; i++)
        if (lv[i] && strcasecmp(lv[i], "off") != 0 && tm__level_parse(lv[i]) < 0)
            return fail(m, TM_EINVAL, "unknown log level '%s' (trace, debug, info, "
                        "warning, error, critical, off)", lv[i]);
    if (!o->udp_addr)
        return 0;
    if (tm__log_parse_addr(o->udp_addr, &sa, &salen, &loop) != 0 ||
        ((struct sockaddr_in *)&sa)->sin_port == 0)
        return fail(m, TM_EINVAL, "bad log listener address '%s' (HOST:PORT with "
                    "a port from 1 to 65535, or [IPv6]:PORT)", o->udp_addr);
    if (!loop && !o->log_public)
        return fail(m, TM_EINVAL, "the log listener %s is not on this machine: "
                    "logs stay on loopback unless --log-public is given",
                    o->udp_addr);
    return 0;
}

static void log_release(tm_migration *m)
{
    free(m->log_addr);
    m->log_addr = NULL;
}

/* Removes the temporary files a crash left while writing the YAML file at
 * path ("PATH.tmp.PID"); the caller holds the state file's lock, so no
 * other treemig is writing them. */
static void remove_stale_temps(const char *path)
{
    struct tm__buf pat = TM__BUF_INIT;
    glob_t g;
    size_t i;
    const char *p;
    /* glob metacharacters in the path itself are escaped */
    for (p = path; *p; p++) {
        if (strchr("*?[\\", *p))
            tm__buf_addch(&pat, '\\');
        tm__buf_addch(&pat, *p);
    }
    tm__buf_adds(&pat, ".tmp.*");
    if (glob(pat.buf, GLOB_NOSORT, NULL, &g) == 0) {
        for (i = 0; i < g.gl_pathc; i++)
            unlink(g.gl_pathv[i]);
        globfree(&g);
    }
    tm__buf_release(&pat);
}

/* 1 when the YAML file at path is missing or names this state file: a
 * copied state file must not take over the original's YAML file. */
static int yaml_names_us(tm_migration *m, const char *path)
{
    struct tm__config c;
    struct tm__buf err = TM__BUF_INIT;
    char *me = tm__path_absolute(m->store.path);
    int ours;
    memset(&c, 0, sizeof c);
    if (access(path, F_OK) != 0) {
        free(me);
        return 1;
    }
    ours = tm__config_read(path, &c, &err) != 0 || /* refused later, loudly */
           (me && c.database && strcmp(c.database, me) == 0);
    tm__config_release(&c);
    tm__buf_release(&err);
    free(me);
    return ours;
}

/* Finds the YAML file of the migration, checks an existing one, and fills
 * m->cfg from the state file so that milestones can be saved. An existing
 * YAML file that does not parse or names another migration is refused and
 * never overwritten. */
static int config_prepare(tm_migration *m, const char *config_opt,
                          const tm_discover_options *o, char **globs, size_t n_globs)
{
    sqlite3 *db = m->store.db;
    struct tm__config *c = &m->cfg;
    struct tm__buf b = TM__BUF_INIT;
    char *stored = setting_dup(db, "config"), *id = setting_dup(db, "id");
    int rc = 0;
    size_t i;

    if (!m->config_path) {
        if (config_opt)
            m->config_path = tm__path_absolute(config_opt);
        else if (stored && *stored && yaml_names_us(m, stored))
            m->config_path = strdup(stored);
        else if (tm__buf_addf(&b, "%s.yaml", m->store.path) == 0)
            m->config_path = tm__path_absolute(b.buf);
    }
    if (!m->config_path || !id) {
        rc = id ? TM_ENOMEM : fail(m, TM_ECORRUPT, "the state file has no id");
        goto out;
    }
    remove_stale_temps(m->config_path);
    if (access(m->config_path, F_OK) == 0) {
        struct tm__buf err = TM__BUF_INIT;
        rc = tm__config_read(m->config_path, c, &err);
        if (rc)
            fail(m, rc, "%s", err.buf);
        tm__buf_release(&err);
        if (rc)
            goto out;
        if (strcmp(c->id, id) != 0) {
            rc = fail(m, TM_EMISMATCH, "%s belongs to migration %s, the state file "
                      "%s to %s; it was left untouched", m->config_path, c->id,
                      m->store.path, id);
            goto out;
        }
    }
    tm__config_release(c);
    c->version = TM_CONFIG_VERSION;
    c->id = id;
    id = NULL;
    c->created = setting_dup(db, "created");
    c->phase = setting_dup(db, "phase");
    c->source = setting_dup(db, "src");
    c->destination = setting_dup(db, "dst");
    c->database = tm__path_absolute(m->store.path);
    c->src_round = get_int(db, "src_round", 0);
    c->dst_round = get_int(db, "dst_round", 0);
    c->workers = o->workers;
    c->lead = o->lead;
    c->retries = o->retries;
    c->log_level = setting_dup(db, "log_level");
    c->udp_level = setting_dup(db, "udp_level");
    c->udp_addr = setting_dup(db, "udp_addr");
    c->owner = get_int(db, "owner", 0);
    c->no_specials = get_int(db, "no_specials", 0);
    c->one_fs = get_int(db, "one_fs", 0);
    c->no_xattrs = get_int(db, "no_xattrs", 0);
    c->excludes = calloc(n_globs ? n_globs : 1, sizeof *c->excludes);
    c->storage = calloc(m->n_sopt ? m->n_sopt : 1, sizeof *c->storage);
    if (!c->excludes || !c->storage || !c->phase || !c->source || !c->destination ||
        !c->database) {
        rc = TM_ENOMEM;
        goto out;
    }
    for (i = 0; i < m->n_sopt; i++) {
        if (!(c->storage[i] = strdup(m->sopt[i]))) {
            rc = TM_ENOMEM;
            goto out;
        }
        c->n_storage++;
    }
    for (i = 0; i < n_globs; i++) {
        if (!(c->excludes[i] = strdup(globs[i]))) {
            rc = TM_ENOMEM;
            goto out;
        }
        c->n_excludes++;
    }
    rc = tm__store_set(db, "config", m->config_path);
    if (!rc)
        m->cfg_ready = 1;
out:
    free(stored);
    free(id);
    tm__buf_release(&b);
    return rc;
}

/* The engine started a round: a milestone of the YAML file. */
static void on_round(void *ctx, int side, int round)
{
    tm_migration *m = ctx;
    if (side == 0)
        m->cfg.src_round = round;
    else
        m->cfg.dst_round = round;
    save_config(m); /* a failure here is reported at the next milestone */
}

void tm_discover_options_init(tm_discover_options *o)
{
    memset(o, 0, sizeof *o);
    o->retries = -1;
}

/* The copy never enters a source folder whose destination twin is a file
 * (a type clash): everything below it still pending is marked skipped when
 * discovery completes, so that "to copy" counts only what will be copied.
 * One transaction; run again after every completion (a retry may have
 * listed more below such a folder). */
static int skip_blocked(tm_migration *m)
{
    static const char *const fill =
        "CREATE TEMP TABLE IF NOT EXISTS tm_blocked(id INTEGER PRIMARY KEY);"
        "DELETE FROM temp.tm_blocked;"
        "INSERT INTO temp.tm_blocked(id) WITH RECURSIVE sub(id) AS ("
        " SELECT c.id FROM src_nodes AS p JOIN src_nodes AS c ON c.parent_id = p.id"
        " WHERE p.type = 'folder' AND p.conflict = 'type' AND p.depth > 0"
        " UNION ALL SELECT c.id FROM src_nodes AS c JOIN sub ON c.parent_id = sub.id)"
        " SELECT id FROM sub;";
    sqlite3 *db = m->store.db;
    struct tm__stats_delta d = { NULL, 0, 0 };
    sqlite3_stmt *st = NULL;
    int rc = tm__store_exec(db, "BEGIN IMMEDIATE", &m->err), step = SQLITE_DONE;
    if (!rc)
        rc = tm__store_exec(db, fill, &m->err);
    if (!rc && sqlite3_prepare_v2(db, "SELECT n.depth, n.type, n.conflict IS NOT "
                                  "NULL, count(*), coalesce(sum(n.size), 0) FROM "
                                  "temp.tm_blocked AS b CROSS JOIN src_nodes AS n ON "
                                  "n.id = b.id WHERE n.copy_status = 'pending' "
                                  "GROUP BY 1, 2, 3", -1, &st, NULL) != SQLITE_OK)
        rc = tm__store_error(db, SQLITE_ERROR, &m->err, "find what a type clash blocks");
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        int type = tm__name_index(tm__type_names, TM_T_COUNT,
                                  (const char *)sqlite3_column_text(st, 1));
        struct tm__stat_key k = { 2, sqlite3_column_int(st, 0), type, CS_PENDING,
                                  sqlite3_column_int(st, 2) };
        int64_t n = sqlite3_column_int64(st, 3), bytes = sqlite3_column_int64(st, 4);
        if (type < 0) {
            rc = fail(m, TM_ECORRUPT, "unknown node type in the state file");
            break;
        }
        rc = tm__stats_add(&d, &k, -n, -bytes);
        k.status = CS_SKIPPED;
        if (!rc)
            rc = tm__stats_add(&d, &k, n, bytes);
    }
    if (!rc && step != SQLITE_DONE)
        rc = tm__store_error(db, step, &m->err, "find what a type clash blocks");
    sqlite3_finalize(st);
    if (!rc)
        rc = tm__store_exec(db, "UPDATE src_nodes SET copy_status = 'skipped', "
                            "error = coalesce(error, 'its folder is a file on "
                            "the destination') "
                            "WHERE copy_status = 'pending' AND id IN "
                            "(SELECT id FROM temp.tm_blocked);"
                            "DELETE FROM temp.tm_blocked;", &m->err);
    if (!rc)
        rc = tm__stats_apply(db, &d);
    if (!rc)
        rc = tm__store_exec(db, "COMMIT", &m->err);
    else
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    tm__stats_release(&d);
    return rc;
}

static int check_owner_caps(tm_migration *m, struct tm__adapter *ad[2]);

int tm_discover(tm_migration *m, const char *src, const char *dst,
                const tm_discover_options *opt)
{
    tm_discover_options o;
    struct tm__buf phase = TM__BUF_INIT, s_src = TM__BUF_INIT,
                   s_dst = TM__BUF_INIT, exc = TM__BUF_INIT, s_exc = TM__BUF_INIT;
    struct tm__adapter *ad[2] = { NULL, NULL };
    char *rsrc = NULL, *rdst = NULL, **globs = NULL;
    size_t n_globs = 0, src_plen = src ? fault_prefix_len(src) : 0,
           dst_plen = dst ? fault_prefix_len(dst) : 0;
    int rc, fresh = 0;
    sqlite3 *db;

    if (!m || !m->open)
        return TM_EINVAL;
    if (m->store.readonly)
        return fail(m, TM_EINVAL, "state file opened read-only");
    db = m->store.db;
    tm__buf_reset(&m->err);
    tm_discover_options_init(&o);
    if (opt)
        o = *opt;
    rc = join_excludes(opt, &exc);
    if (rc) {
        fail(m, rc, "an exclude pattern is empty or holds a newline");
        goto out;
    }
    rc = check_log_options(m, &o);
    if (!rc && src_plen)
        rc = check_fault_prefix(m, src, src_plen);
    if (!rc && dst_plen)
        rc = check_fault_prefix(m, dst, dst_plen);
    if (rc)
        goto out;
    rc = tm__store_get(db, "phase", &phase);
    fresh = rc == TM_ENOENT;
    if (rc && !fresh) {
        fail(m, rc, "cannot read the state file: %s", sqlite3_errmsg(db));
        goto out;
    }
    if (o.config) {
        char *copy = strdup(o.config), *dir = copy ? dirname(copy) : NULL;
        int ok = dir && access(dir, W_OK) == 0;
        free(copy);
        if (!ok) {
            rc = fail(m, TM_EINVAL, "cannot write the YAML file %s: its folder does "
                      "not exist or is not writable", o.config);
            goto out;
        }
    }
    if (fresh) {
        if (!src || !dst) {
            rc = fail(m, TM_EINVAL, "a new migration needs a source and a "
                      "destination");
            goto out;
        }
        rc = resolve_spec(m, "source", src + src_plen, &rsrc);
        if (!rc)
            rc = resolve_spec(m, "destination", dst + dst_plen, &rdst);
        if (!rc)
            rc = check_roots(m, rsrc, rdst);
        if (rc)
            goto out;
        if (o.workers <= 0)
            o.workers = kind_workers(rsrc, rdst);
        fill_defaults(&o);
        rc = open_side(m, TM_SRC, src, src_plen, rsrc, &ad[0]);
        if (!rc)
            rc = open_side(m, TM_DST, dst, dst_plen, rdst, &ad[1]);
        if (!rc) {
            const char *roots[2] = { rsrc, rdst };
            char *yaml = yaml_path_for(m, o.config);
            rc = check_sides(m, ad, roots, yaml, 0, o.allow_pseudo_fs);
            free(yaml);
        }
        if (!rc && o.owner)
            rc = check_owner_caps(m, ad);
        if (rc)
            goto out;
        rc = create_migration(m, rsrc, rdst, exc.buf, &o, ad);
        if (rc)
            goto out;
        tm__buf_reset(&phase);
        tm__buf_adds(&phase, "roots-set");
    } else {
        if ((rc = tm__store_get(db, "src", &s_src)) != 0 ||
            (rc = tm__store_get(db, "dst", &s_dst)) != 0) {
            rc = fail(m, TM_ECORRUPT, "the state file names no roots");
            goto out;
        }
        rc = sopts_load(m);
        if (!rc)
            rc = sopts_store(m);
        if (rc)
            goto out;
        /* missing is none; a read that fails must not drop them */
        rc = tm__store_get(db, "excludes", &s_exc);
        if (rc && rc != TM_ENOENT) {
            fail(m, rc, "cannot read the excludes from the state file: %s",
                 tm_strerror(rc));
            goto out;
        }
        rc = 0;
        if (src) {
            rc = resolve_spec(m, "source", src + src_plen, &rsrc);
            if (rc)
                goto out;
            if (strcmp(rsrc, s_src.buf) != 0) {
                rc = fail(m, TM_EMISMATCH, "the state file %s belongs to a "
                          "migration from %s, not %s", m->store.path, s_src.buf,
                          rsrc);
                goto out;
            }
        }
        if (dst) {
            rc = resolve_spec(m, "destination", dst + dst_plen, &rdst);
            if (rc)
                goto out;
            if (strcmp(rdst, s_dst.buf) != 0) {
                rc = fail(m, TM_EMISMATCH, "the state file %s belongs to a "
                          "migration to %s, not %s", m->store.path, s_dst.buf,
                          rdst);
                goto out;
            }
        }
        if (opt && opt->n_excludes && strcmp(exc.buf, s_exc.buf) != 0) {
            rc = fail(m, TM_EMISMATCH, "the excludes differ from the ones this "
                      "migration was discovered with");
            goto out;
        }
        if (opt && opt->owner && !get_int(db, "owner", 0)) {
            rc = fail(m, TM_EMISMATCH, "--owner: this migration was discovered "
                      "without it, and owners cannot be compared for what is "
                      "recorded already; start a new migration (another state "
                      "file) with discover --owner");
            goto out;
        }
        if (opt && ((opt->no_specials && !get_int(db, "no_specials", 0)) ||
                    (opt->one_file_system && !get_int(db, "one_fs", 0)) ||
                    (opt->no_xattrs && !get_int(db, "no_xattrs", 0)))) {
            rc = fail(m, TM_EMISMATCH, "--%s: this migration was discovered "
                      "without it; start a new migration (another state file) "
                      "with it", opt->no_specials ? "no-specials"
                                 : opt->one_file_system ? "one-file-system"
                                                        : "no-xattrs");
            goto out;
        }
        if (o.workers <= 0)
            rc = get_int_checked(m, "workers", 4, &o.workers);
        if (!rc && o.lead <= 0)
            rc = get_int_checked(m, "lead", 3, &o.lead);
        if (!rc && o.retries < 0)
            rc = get_int_checked(m, "retries", 3, &o.retries);
        if (rc)
            goto out;
        fill_defaults(&o);
        tm__buf_reset(&exc);
        rc = tm__buf_add(&exc, s_exc.buf, s_exc.len);
        if (rc)
            goto out; /* with no excludes the rest would be discovered unfiltered */
    }
    if (strcmp(phase.buf, "roots-set") != 0 &&
        strcmp(phase.buf, "discovering") != 0 &&
        strcmp(phase.buf, "suspended") != 0) {
        rc = 0; /* discovery is complete: nothing to do */
        goto out;
    }
    if (!ad[0]) {
        rc = open_side(m, TM_SRC, src, src_plen, s_src.buf, &ad[0]);
        if (!rc)
            rc = open_side(m, TM_DST, dst, dst_plen, s_dst.buf, &ad[1]);
        if (!rc) {
            const char *roots[2] = { s_src.buf, s_dst.buf };
            char *yaml = yaml_path_for(m, o.config);
            rc = check_sides(m, ad, roots, yaml, 1, 0);
            free(yaml);
        }
        if (rc)
            goto out;
    }
    globs = split_lines(exc.buf, &n_globs);
    if (!globs) {
        rc = TM_ENOMEM;
        goto out;
    }
    rc = config_prepare(m, o.config, &o, globs, n_globs);
    if (rc)
        goto out;
    if (strcmp(phase.buf, "roots-set") == 0 && fresh)
        rc = save_config(m); /* milestone: roots set and seeded */
    if (!rc) rc = set_int(db, "workers", o.workers);
    if (!rc) rc = set_int(db, "lead", o.lead);
    if (!rc) rc = set_int(db, "retries", o.retries);
    if (!rc) rc = set_phase(m, "discovering");
    if (rc)
        goto out;
    {
        struct tm__log_cfg lc;
        struct tm__discover_cfg cfg = {
            { ad[0], ad[1] }, m->store.path, db, o.workers, o.lead, o.retries,
            (const char *const *)globs, n_globs, &m->stop, o.progress,
            o.progress_ctx, &m->err, on_round, m, &lc,
            { rsrc ? rsrc : s_src.buf, rdst ? rdst : s_dst.buf },
            get_int(db, "owner", 0), get_int(db, "no_specials", 0),
            get_int(db, "one_fs", 0),
        };
        rc = log_settings(m, o.log_level, o.udp_level, o.udp_addr, o.log_public,
                          &lc);
        if (!rc)
            rc = save_config(m);
        if (rc)
            goto out;
        rc = tm__discover_run(&cfg);
        log_release(m);
    }
    if (rc == 0)
        rc = skip_blocked(m);
    if (rc == 0) {
        rc = set_phase(m, "discovered");
    } else {
        int prc = rc;
        /* keep the engine's message; record that the phase stopped */
        struct tm__buf keep = TM__BUF_INIT;
        tm__buf_add(&keep, m->err.buf, m->err.len);
        set_phase_from(m, "suspended", "discovering");
        tm__buf_reset(&m->err);
        tm__buf_add(&m->err, keep.buf, keep.len);
        tm__buf_release(&keep);
        if (prc == TM_ESTOPPED && !m->err.len)
            fail(m, prc, "discovery interrupted; run discover again to resume");
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
        fail(m, rc, "%s", tm_strerror(rc));
    return rc;
}

int tm_migration_open_config(tm_migration **out, const char *config_path)
{
    struct tm__config c;
    struct tm__buf err = TM__BUF_INIT;
    char *id = NULL, *src = NULL, *dst = NULL;
    int rc;

    memset(&c, 0, sizeof c);
    rc = tm__config_read(config_path, &c, &err);
    if (rc) {
        tm_migration *m = calloc(1, sizeof *m);
        *out = m;
        if (m) {
            tm__buf_init(&m->err);
            tm__buf_add(&m->err, err.buf, err.len);
        }
        tm__buf_release(&err);
        return rc;
    }
    tm__buf_release(&err);
    rc = tm_migration_open(out, c.database, TM_OPEN_WRITE);
    if (rc) {
        tm__config_release(&c);
        return rc;
    }
    id = setting_dup((*out)->store.db, "id");
    src = setting_dup((*out)->store.db, "src");
    dst = setting_dup((*out)->store.db, "dst");
    if (!id || strcmp(id, c.id) != 0) {
        rc = fail(*out, TM_EMISMATCH, "%s names the state file %s, which holds "
                  "another migration (%s, not %s)", config_path, c.database,
                  id ? id : "none", c.id);
    } else if (!src || !dst) {
        rc = fail(*out, TM_ECORRUPT, "the state file %s names no roots",
                  c.database);
    } else if (strcmp(src, c.source) != 0 || strcmp(dst, c.destination) != 0) {
        /* the roots of a migration are what its state file recorded: a
         * YAML file edited by hand cannot move them (nor be overwritten
         * silently with the recorded ones) */
        int s_diff = strcmp(src, c.source) != 0;
        rc = fail(*out, TM_EMISMATCH, "%s names the %s %s, but the state file %s "
                  "records %s: the roots of a migration cannot be changed; put "
                  "the recorded one back in the YAML file, or start a new "
                  "migration with discover", config_path,
                  s_diff ? "source" : "destination", s_diff ? c.source : c.destination,
                  c.database, s_diff ? src : dst);
    } else if (!((*out)->config_path = tm__path_absolute(config_path))) {
        rc = TM_ENOMEM;
    }
    free(id);
    free(src);
    free(dst);
    tm__config_release(&c);
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
            return setting_fail(m, rc);
        return fail(m, TM_ECORRUPT, "the state file %s records no migration",
                    m->store.path);
    }
    {
        char from[32];
        int copying;
        rc = copy_setting(m->store.db, "suspended_from", from, sizeof from);
        if (rc) {
            tm__buf_release(&phase);
            return setting_fail(m, rc);
        }
        copying = strcmp(phase.buf, "copying") == 0 ||
                  (strcmp(phase.buf, "suspended") == 0 && strcmp(from, "copying") == 0);
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

void tm_exec_options_init(tm_exec_options *o)
{
    memset(o, 0, sizeof *o);
    o->retries = -1;
}

static int phase_is(const char *phase, const char *a, const char *b)
{
    return strcmp(phase, a) == 0 || (b && strcmp(phase, b) == 0);
}

/* Opens both adapters from the stored specs, checked (check_sides). */
static int open_roots(tm_migration *m, struct tm__adapter *ad[2])
{
    sqlite3 *db = m->store.db;
    char *src = setting_dup(db, "src"), *dst = setting_dup(db, "dst");
    int rc;

    ad[0] = ad[1] = NULL;
    if (!src || !dst) {
        /* missing, or a read that failed (not enough memory) */
        struct tm__buf b = TM__BUF_INIT;
        int grc = tm__store_get(db, src ? "dst" : "src", &b);
        tm__buf_release(&b);
        if (grc == TM_ENOENT)
            rc = fail(m, TM_ECORRUPT, "the state file names no roots");
        else
            rc = setting_fail(m, grc ? grc : TM_ENOMEM);
        goto out;
    }
    rc = sopts_load(m);
    if (!rc)
        rc = sopts_store(m);
    if (!rc)
        rc = open_side(m, TM_SRC, NULL, 0, src, &ad[0]);
    if (!rc)
        rc = open_side(m, TM_DST, NULL, 0, dst, &ad[1]);
    if (!rc) {
        const char *roots[2] = { src, dst };
        char *yaml = yaml_path_for(m, NULL);
        rc = check_sides(m, ad, roots, yaml, 1, 0);
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

/* Opens both adapters (open_roots) and readies the YAML file with the
 * stored options. */
static int open_stored(tm_migration *m, struct tm__adapter *ad[2])
{
    sqlite3 *db = m->store.db;
    char *exc, **globs = NULL;
    tm_discover_options o;
    size_t n = 0;
    int rc = open_roots(m, ad);

    if (rc)
        return rc;
    exc = setting_dup(db, "excludes");
    tm_discover_options_init(&o);
    o.workers = get_int(db, "workers", 4);
    o.lead = get_int(db, "lead", 3);
    o.retries = get_int(db, "retries", 3);
    globs = split_lines(exc ? exc : "", &n);
    rc = globs ? config_prepare(m, NULL, &o, globs, n) : TM_ENOMEM;
    if (rc) {
        tm__adapter_close(ad[0]);
        tm__adapter_close(ad[1]);
        ad[0] = ad[1] = NULL;
    }
    free(exc);
    free(globs);
    return rc;
}

static int run_exec(tm_migration *m, int mode, const tm_exec_options *o,
                    struct tm__adapter *ad[2], const tm_status *st,
                    int64_t *problems)
{
    struct tm__exec_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = mode;
    cfg.ad[0] = ad[0];
    cfg.ad[1] = ad[1];
    cfg.root[0] = st->src;
    cfg.root[1] = st->dst;
    cfg.db_path = m->store.path;
    cfg.db = m->store.db;
    /* discovery runs its workers on each side at once; a copy or verify
     * has one pool, as many threads as discovery had in all (small files
     * wait on the file system more than on the CPU: bench/copy.sh) */
    cfg.workers = o->workers > 0 ? o->workers
                                 : 2 * get_int(m->store.db, "workers", 4);
    cfg.retries = o->retries >= 0 ? o->retries : get_int(m->store.db, "retries", 3);
    cfg.no_overwrite = o->no_overwrite;
    /* discover --owner: owners were compared, the copy sets them and verify
     * compares them; copy --owner alone sets them on what the copy writes */
    cfg.owner_discovered = get_int(m->store.db, "owner", 0);
    cfg.xattrs = !get_int(m->store.db, "no_xattrs", 0);
    cfg.owner = cfg.owner_discovered ||
                (mode == TM_EXEC_COPY ? o->owner
                                      : get_int(m->store.db, "copy_owner", 0));
    cfg.checksum = o->checksum;
    cfg.total_files = st->copy.pending;
    cfg.total_bytes = st->copy.bytes_pending;
    cfg.stop = &m->stop;
    cfg.progress = o->progress;
    cfg.progress_ctx = o->progress_ctx;
    cfg.err = &m->err;
    {
        struct tm__log_cfg lc;
        int rc = log_settings(m, o->log_level, o->udp_level, o->udp_addr,
                              o->log_public, &lc);
        if (rc)
            return rc;
        cfg.log = &lc;
        rc = tm__exec_run(&cfg);
        log_release(m);
        *problems = cfg.problems;
        return rc;
    }
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

/* --owner (given to the copy, or to discovery: stored): only root gives
 * files away, and both storages must know owners. */
static int check_owner(tm_migration *m, struct tm__adapter *ad[2], int stored)
{
    if (geteuid() != 0)
        return fail(m, TM_EINVAL, "--owner needs root: only root can give a "
                    "file to another user (running as uid %lu)%s",
                    (unsigned long)geteuid(), stored ? "; this migration was "
                    "discovered with --owner, so its copy sets owners" : "");
    return check_owner_caps(m, ad);
}

/* --owner, at discovery too: both storages must know owners. */
static int check_owner_caps(tm_migration *m, struct tm__adapter *ad[2])
{
    if (!(ad[TM_SRC]->caps & TM_CAP_OWNER))
        return fail(m, TM_EINVAL, "--owner: the source (%s storage) does not "
                    "report owners", ad[TM_SRC]->name);
    if (!(ad[TM_DST]->caps & TM_CAP_OWNER) || !ad[TM_DST]->chown)
        return fail(m, TM_EINVAL, "--owner: the destination (%s storage) "
                    "cannot set owners", ad[TM_DST]->name);
    return 0;
}

/* ---- copy runs: the keys of the temporary names (docs/internals.md) ---- */

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

/* Removes what the copy run of key, which did not end (a crash, a kill),
 * may have left: temporaries of the nodes still pending at the depth it
 * recorded last (depth) and at the next depth that has any (the one it
 * may have started without recording it yet, see record_depth() in
 * execute.c). Names are computed from the key: nothing else is touched. */
static int clean_run(tm_migration *m, struct tm__adapter *da, const char *hex,
                     int depth)
{
    static const char next_sql[] =
        "SELECT coalesce(min(depth), -1) FROM copy_stats WHERE depth > ?1 AND "
        "type IN ('file', 'symlink', 'other') AND copy_status = 'pending' AND "
        "count > 0";
    static const char nodes_sql[] =
        "SELECT path, type FROM src_nodes WHERE copy_status = 'pending' AND "
        "depth IN (?1, ?2) AND type IN ('file', 'symlink', 'other')";
    unsigned char key[TM_KEY_LEN];
    sqlite3_stmt *st = NULL;
    int rc = key_parse(hex, key), next = -1, step;
    int64_t removed = 0;

    if (rc)
        return fail(m, rc, "state file %s: a copy run's key is damaged (%s)",
                    m->store.path, hex ? hex : "none");
    if (sqlite3_prepare_v2(m->store.db, next_sql, -1, &st, NULL) != SQLITE_OK)
        return tm__store_error(m->store.db, SQLITE_ERROR, &m->err, "clean up");
    sqlite3_bind_int(st, 1, depth);
    if (sqlite3_step(st) == SQLITE_ROW)
        next = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(m->store.db, nodes_sql, -1, &st, NULL) != SQLITE_OK)
        return tm__store_error(m->store.db, SQLITE_ERROR, &m->err, "clean up");
    sqlite3_bind_int(st, 1, depth);
    sqlite3_bind_int(st, 2, next);
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        int type = tm__name_index(tm__type_names, TM_T_COUNT,
                                  (const char *)sqlite3_column_text(st, 1));
        struct tm__aerr ae;
        int n = tm__adapter_remove_tmp(da, (const char *)sqlite3_column_text(st, 0),
                                       type, key, &ae);
        if (n > 0)
            removed += n;
        else if (n < 0 && ae.cls == TM_ERR_FATAL)
            rc = n;
        /* a node's parent that cannot be opened (EACCES) holds nothing the
         * copy could have written either */
    }
    if (!rc && step != SQLITE_DONE)
        rc = tm__store_error(m->store.db, step, &m->err, "clean up");
    sqlite3_finalize(st);
    if (rc && !m->err.len)
        fail(m, rc, "cannot remove the temporaries of an interrupted copy: %s",
             tm_strerror(rc));
    (void)removed;
    return rc;
}

/* Starts a copy run: first removes the leftovers of every earlier run that
 * did not end (their keys are in copy_runs), then records a new random key
 * durably (synchronous=FULL) before the first temporary exists, and gives
 * it to the destination. */
static int start_run(tm_migration *m, struct tm__adapter *da,
                     unsigned char key[TM_KEY_LEN])
{
    sqlite3 *db = m->store.db;
    sqlite3_stmt *st = NULL;
    char hex[2 * TM_KEY_LEN + 1], now[32];
    int rc, step;

    rc = tm__store_exec(db,
                        "CREATE TABLE IF NOT EXISTS copy_runs(key TEXT PRIMARY KEY,"
                        " started TEXT NOT NULL, depth INTEGER, ended TEXT)"
                        " WITHOUT ROWID;"
                        /* the last run's depth, before this run records its own */
                        "UPDATE copy_runs SET depth = (SELECT CAST(value AS INTEGER) "
                        "FROM migration WHERE key = 'copy_run_depth') "
                        "WHERE ended IS NULL AND depth IS NULL;"
                        "DELETE FROM migration WHERE key = 'copy_run_depth';",
                        &m->err);
    if (!rc && sqlite3_prepare_v2(db, "SELECT key, coalesce(depth, 0) FROM "
                                  "copy_runs WHERE ended IS NULL", -1, &st,
                                  NULL) != SQLITE_OK)
        rc = tm__store_error(db, SQLITE_ERROR, &m->err, "read copy runs");
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        char *k = strdup((const char *)sqlite3_column_text(st, 0));
        rc = k ? clean_run(m, da, k, sqlite3_column_int(st, 1)) : TM_ENOMEM;
        if (!rc) {
            sqlite3_stmt *up;
            tm__iso_time(now, tm__wall_ns());
            if (sqlite3_prepare_v2(db, "UPDATE copy_runs SET ended = ? WHERE key = ?",
                                   -1, &up, NULL) == SQLITE_OK) {
                sqlite3_bind_text(up, 1, now, -1, SQLITE_STATIC);
                sqlite3_bind_text(up, 2, k, -1, SQLITE_STATIC);
                if (sqlite3_step(up) != SQLITE_DONE)
                    rc = tm__store_error(db, SQLITE_ERROR, &m->err, "end a copy run");
                sqlite3_finalize(up);
            } else {
                rc = tm__store_error(db, SQLITE_ERROR, &m->err, "end a copy run");
            }
        }
        free(k);
    }
    if (!rc && st && step != SQLITE_DONE)
        rc = tm__store_error(db, step, &m->err, "read copy runs");
    sqlite3_finalize(st);
    st = NULL;
    if (!rc && (rc = tm__random(key, TM_KEY_LEN)) != 0)
        fail(m, rc, "cannot make a key for the temporary names: %s", tm_strerror(rc));
    if (rc)
        return rc;
    key_hex(key, hex);
    tm__iso_time(now, tm__wall_ns());
    rc = tm__store_exec(db, "PRAGMA synchronous=FULL", &m->err);
    if (!rc && sqlite3_prepare_v2(db, "INSERT INTO copy_runs(key, started) "
                                  "VALUES(?, ?)", -1, &st, NULL) != SQLITE_OK)
        rc = tm__store_error(db, SQLITE_ERROR, &m->err, "record a copy run");
    if (!rc) {
        sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
        if ((step = sqlite3_step(st)) != SQLITE_DONE)
            rc = tm__store_error(db, step, &m->err, "record a copy run");
    }
    sqlite3_finalize(st);
    sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    if (!rc)
        tm__adapter_set_tmp_key(da, key);
    return rc;
}

/* The run of key ended: its temporaries were renamed or removed. A failure
 * to record it only costs a useless clean-up at the next run. */
static void end_run(tm_migration *m, const unsigned char key[TM_KEY_LEN])
{
    sqlite3_stmt *st;
    char hex[2 * TM_KEY_LEN + 1], now[32];
    key_hex(key, hex);
    tm__iso_time(now, tm__wall_ns());
    if (sqlite3_prepare_v2(m->store.db, "UPDATE copy_runs SET ended = ? WHERE "
                           "key = ?", -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, hex, -1, SQLITE_STATIC);
    sqlite3_step(st);
    sqlite3_finalize(st);
}

int tm_copy(tm_migration *m, const tm_exec_options *opt)
{
    struct tm__adapter *ad[2] = { NULL, NULL };
    unsigned char run_key[TM_KEY_LEN];
    tm_exec_options o;
    tm_status st;
    char from[32];
    int64_t problems = 0;
    int rc, started = 0;

    rc = exec_start(m, opt, &o, &st);
    if (rc)
        return rc;
    rc = copy_setting(m->store.db, "suspended_from", from, sizeof from);
    if (rc)
        return setting_fail(m, rc);
    if (phase_is(st.phase, "copied", "verified"))
        return 0; /* complete: nothing to do */
    if (!phase_is(st.phase, "discovered", "copying") &&
        !(phase_is(st.phase, "suspended", NULL) && strcmp(from, "copying") == 0))
        return fail(m, TM_EPHASE, "discovery is not complete (phase %s): run "
                    "discover first", st.phase);
    if ((st.src_counts.failed || st.dst_counts.failed) && !o.force)
        return fail(m, TM_EPHASE, "%lld source and %lld destination folders "
                    "could not be listed during discovery: run retry, or copy "
                    "--force to copy without them",
                    (long long)st.src_counts.failed, (long long)st.dst_counts.failed);
    rc = open_stored(m, ad);
    if (!rc && (o.owner || get_int(m->store.db, "owner", 0)))
        rc = check_owner(m, ad, !o.owner);
    /* verify then expects the set-ID bits the copy kept with the owners */
    if (!rc && o.owner)
        rc = tm__store_set(m->store.db, "copy_owner", "1");
    if (!rc)
        rc = tm__store_exec(m->store.db,
                            "CREATE INDEX IF NOT EXISTS src_nodes_copy ON "
                            "src_nodes(depth, id) WHERE copy_status = 'pending'",
                            &m->err);
    if (!rc)
        rc = start_run(m, ad[TM_DST], run_key);
    if (!rc) {
        started = 1;
        rc = set_phase(m, "copying");
    }
    if (!rc) {
        rc = run_exec(m, TM_EXEC_COPY, &o, ad, &st, &problems);
        if (rc == 0) {
            rc = set_phase(m, "copied");
        } else {
            struct tm__buf keep = TM__BUF_INIT;
            tm__buf_add(&keep, m->err.buf, m->err.len);
            set_phase_from(m, "suspended", "copying");
            tm__buf_reset(&m->err);
            tm__buf_add(&m->err, keep.buf, keep.len);
            tm__buf_release(&keep);
            if (rc == TM_ESTOPPED && !m->err.len)
                fail(m, rc, "copy interrupted; run copy again to resume");
        }
    }
    if (started)
        end_run(m, run_key); /* every temporary was renamed or removed */
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    if (rc && !m->err.len)
        fail(m, rc, "%s", tm_strerror(rc));
    return rc;
}

/* The source nodes that verify cannot check, each with the reason in
 * task_errors (phase verify): folders that could not be listed (what they
 * hold is unknown), nodes whose copy failed or did not happen, and files
 * whose destination version --no-overwrite kept. *n gets their count. */
static int unchecked(tm_migration *m, int64_t *n)
{
    char sql[2048];
    int rc;
    snprintf(sql, sizeof sql,
             "INSERT INTO task_errors(time, phase, queue, node_id, path, attempts, "
             "message) SELECT %lld, 'verify', 'verify', id, path, 0, CASE "
             "WHEN type = 'folder' AND traversal_status = 'failed' THEN "
             "'not checked: this source folder could not be listed (' || "
             "coalesce(error, 'no reason recorded') || '), so what it holds is "
             "unknown; retry lists it again' "
             "WHEN copy_status = 'failed' THEN 'not checked: its copy failed (' || "
             "coalesce(error, 'no reason recorded') || '); retry copies it again' "
             "WHEN copy_status IN ('pending', 'in_progress') THEN 'not checked: "
             "not copied yet; run copy' "
             "ELSE 'not checked: the destination''s version was kept "
             "(--no-overwrite)' END FROM src_nodes WHERE "
             "(type = 'folder' AND traversal_status = 'failed') OR (depth > 0 AND "
             "((copy_status = 'failed' AND coalesce(error, '') NOT LIKE 'verify: %%') "
             "OR copy_status IN ('pending', 'in_progress') OR "
             "(copy_status = 'skipped' AND error LIKE '%%(--no-overwrite)')))",
             (long long)tm__wall_ns());
    rc = tm__store_exec(m->store.db, sql, &m->err);
    *n = rc ? 0 : sqlite3_changes(m->store.db);
    return rc;
}

/* After the check: a node an earlier verify found wrong that this one did
 * not reach (its folder was not listed) is still wrong as far as anyone
 * knows; it is not checked, and counted in *n too. */
static int unchecked_again(tm_migration *m, int64_t *n)
{
    char sql[1024];
    int rc;
    snprintf(sql, sizeof sql,
             "INSERT INTO task_errors(time, phase, queue, node_id, path, attempts, "
             "message) SELECT %lld, 'verify', 'verify', id, path, 0, "
             "'not checked: an earlier verify found it different (' || error || "
             "'), and its folder was not checked now; retry copies it again' "
             "FROM src_nodes AS n WHERE copy_status = 'failed' AND error LIKE "
             "'verify: %%' AND NOT EXISTS (SELECT 1 FROM task_errors AS e WHERE "
             "e.phase = 'verify' AND e.node_id = n.id)",
             (long long)tm__wall_ns());
    rc = tm__store_exec(m->store.db, sql, &m->err);
    if (!rc)
        *n += sqlite3_changes(m->store.db);
    return rc;
}

int tm_verify(tm_migration *m, const tm_exec_options *opt, int64_t *mismatches)
{
    struct tm__adapter *ad[2] = { NULL, NULL };
    tm_exec_options o;
    tm_status st;
    int64_t not_checked = 0;
    int rc;

    *mismatches = 0;
    rc = exec_start(m, opt, &o, &st);
    if (rc)
        return rc;
    if (!phase_is(st.phase, "copied", "verified"))
        return fail(m, TM_EPHASE, "the copy is not complete (phase %s): run copy "
                    "first", st.phase);
    rc = open_stored(m, ad);
    if (!rc)
        rc = tm__store_exec(m->store.db,
                            "DELETE FROM task_errors WHERE phase IN ('verify', "
                            "'verify-leftover')", &m->err);
    /* verified means: every source node that should be on the destination
     * was checked and matches. What cannot be checked is said, node by
     * node, before the check (it marks its own findings failed) */
    if (!rc)
        rc = unchecked(m, &not_checked);
    if (!rc)
        rc = run_exec(m, TM_EXEC_VERIFY, &o, ad, &st, mismatches);
    if (!rc)
        rc = unchecked_again(m, &not_checked);
    if (!rc)
        *mismatches += not_checked;
    if (!rc)
        rc = set_phase(m, *mismatches ? "copied" : "verified");
    tm__adapter_close(ad[0]);
    tm__adapter_close(ad[1]);
    if (rc && !m->err.len)
        fail(m, rc, "%s", tm_strerror(rc));
    return rc;
}

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
    if (!phase_is(st.phase, "discovered", "copied") &&
        !phase_is(st.phase, "verified", "suspended"))
        return fail(m, TM_EPHASE, "nothing to retry in phase %s: run discover "
                    "first", st.phase);
    copy_started = !phase_is(st.phase, "discovered", NULL);
    folders = count_status(db, "src_stats", "traversal_status", "failed", 1) +
              count_status(db, "dst_stats", "traversal_status", "failed", 1);
    copies = count_status(db, "copy_stats", "copy_status", "failed", 0);
    if (folders || copies) {
        /* the roots are checked before anything is read from them */
        rc = open_roots(m, ad);
        if (rc)
            return rc;
    }
    rc = tm__store_exec(db, "BEGIN IMMEDIATE", &m->err);
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
        rc = tm__store_exec(db, "COMMIT", &m->err);
    if (rc) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    *retried = folders + copies;
    if (folders) {
        /* the folders are pending again: discovery goes on from them */
        rc = set_phase_from(m, "suspended", "discovering");
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
        rc = set_phase(m, "copying");
        if (!rc)
            rc = tm_copy(m, &eo);
    }
    return rc;
}

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

int tm_problems_print(tm_migration *m, const char *phase, FILE *out)
{
    sqlite3_stmt *st;
    int rc;
    if (!m || !m->open)
        return TM_EINVAL;
    rc = sqlite3_prepare_v2(m->store.db, "SELECT path, message FROM task_errors "
                            "WHERE phase = ? ORDER BY id", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(m->store.db, rc, &m->err, "read task errors");
    sqlite3_bind_text(st, 1, phase, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(st, 0);
        const char *msg = (const char *)sqlite3_column_text(st, 1);
        print_escaped(out, path ? path : "");
        fputs(": ", out);
        fputs(msg ? msg : "", out);
        fputc('\n', out);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : tm__store_error(m->store.db, rc, &m->err,
                                                   "read task errors");
}

/* Copies a setting into out ("" when it is not set). Returns 0, or the
 * error of a read that failed (out is then ""). */
static int copy_setting(sqlite3 *db, const char *key, char *out, size_t len)
{
    struct tm__buf b = TM__BUF_INIT;
    int rc = tm__store_get(db, key, &b);
    out[0] = '\0';
    if (rc == 0)
        snprintf(out, len, "%s", b.buf);
    tm__buf_release(&b);
    return rc == TM_ENOENT ? 0 : rc;
}

/* The observer's last snapshot of each queue, and the copy's ETA. */
static int read_snapshots(tm_migration *m, tm_status *st)
{
    sqlite3_stmt *q;
    int rc;
    st->eta_seconds = -1;
    rc = sqlite3_prepare_v2(m->store.db,
                            "SELECT queue, time, round, pending, in_flight, done, "
                            "failed, bytes_done, bytes_pending, items_per_s, "
                            "bytes_per_s FROM queue_stats WHERE id IN (SELECT "
                            "max(id) FROM queue_stats GROUP BY queue) ORDER BY queue",
                            -1, &q, NULL);
    if (rc != SQLITE_OK)
        return 0; /* an older state file without the columns: no snapshots */
    while (sqlite3_step(q) == SQLITE_ROW && st->n_queues < 4) {
        tm_queue_snapshot *x = &st->queues[st->n_queues++];
        snprintf(x->queue, sizeof x->queue, "%s",
                 (const char *)sqlite3_column_text(q, 0));
        x->time = sqlite3_column_int64(q, 1);
        x->round = sqlite3_column_int64(q, 2);
        x->pending = sqlite3_column_int64(q, 3);
        x->in_flight = sqlite3_column_int64(q, 4);
        x->done = sqlite3_column_int64(q, 5);
        x->failed = sqlite3_column_int64(q, 6);
        x->bytes_done = sqlite3_column_int64(q, 7);
        x->bytes_pending = sqlite3_column_int64(q, 8);
        x->items_per_s = sqlite3_column_double(q, 9);
        x->bytes_per_s = sqlite3_column_double(q, 10);
        if (strcmp(x->queue, "copy") == 0 && strcmp(st->phase, "copying") == 0) {
            if (x->bytes_per_s > 0 && x->bytes_pending > 0)
                st->eta_seconds = (int64_t)((double)x->bytes_pending / x->bytes_per_s);
            else if (x->items_per_s > 0)
                st->eta_seconds = (int64_t)((double)x->pending / x->items_per_s);
        }
    }
    sqlite3_finalize(q);
    return 0;
}

/* Adds to *n 1 when the root of a side (depth 0) failed to be listed.
 * Returns 0 or the error of the query. */
static int root_failed(sqlite3 *db, int side, int64_t *n)
{
    static const char *const sql[2] = {
        "SELECT coalesce(sum(count), 0) FROM src_stats WHERE depth = 0 AND "
        "traversal_status = 'failed'",
        "SELECT coalesce(sum(count), 0) FROM dst_stats WHERE depth = 0 AND "
        "traversal_status = 'failed'",
    };
    sqlite3_stmt *q;
    int rc = sqlite3_prepare_v2(db, sql[side], -1, &q, NULL);
    if (rc != SQLITE_OK)
        return tm__store_error(db, rc, NULL, "read status");
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        *n += sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return rc == SQLITE_ROW ? 0 : tm__store_error(db, rc, NULL, "read status");
}

int tm_status_get(tm_migration *m, tm_status *st)
{
    static const char *const sql[3] = {
        "SELECT type, traversal_status, sum(count), sum(bytes) FROM src_stats "
        "WHERE depth > 0 GROUP BY 1, 2",
        "SELECT type, traversal_status, sum(count), sum(bytes) FROM dst_stats "
        "WHERE depth > 0 GROUP BY 1, 2",
        "SELECT type, copy_status, sum(count), sum(bytes), conflict FROM "
        "copy_stats WHERE depth > 0 GROUP BY 1, 2, 5",
    };
    sqlite3 *db;
    int q, rc = 0;

    memset(st, 0, sizeof *st);
    if (!m || !m->open)
        return TM_EINVAL;
    db = m->store.db;
    /* a phase that cannot be read must not look like no phase */
    rc = copy_setting(db, "phase", st->phase, sizeof st->phase);
    if (!rc)
        rc = copy_setting(db, "src", st->src, sizeof st->src);
    if (!rc)
        rc = copy_setting(db, "dst", st->dst, sizeof st->dst);
    if (rc)
        return setting_fail(m, rc);
    st->src_round = get_int(db, "src_round", 0);
    st->dst_round = get_int(db, "dst_round", 0);
    for (q = 0; q < 3 && !rc; q++) {
        sqlite3_stmt *s;
        rc = sqlite3_prepare_v2(db, sql[q], -1, &s, NULL);
        if (rc != SQLITE_OK) {
            rc = tm__store_error(db, rc, &m->err, "read status");
            break;
        }
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            int type = tm__name_index(tm__type_names, TM_T_COUNT,
                                      (const char *)sqlite3_column_text(s, 0));
            const char *status = (const char *)sqlite3_column_text(s, 1);
            int64_t count = sqlite3_column_int64(s, 2);
            int64_t bytes = sqlite3_column_int64(s, 3);
            if (q < 2) {
                tm_tree_counts *c = q == 0 ? &st->src_counts : &st->dst_counts;
                int ts = tm__name_index(tm__ts_names, TS_COUNT, status);
                if (type == TM_T_FOLDER) c->folders += count;
                if (type == TM_T_FILE) { c->files += count; c->bytes += bytes; }
                if (type == TM_T_SYMLINK) c->symlinks += count;
                if (type == TM_T_OTHER) c->other += count;
                if (ts == TS_PENDING) c->pending += count;
                if (ts == TS_FAILED) c->failed += count;
                if (ts == TS_EXCLUDED) c->excluded += count;
                if (ts == TS_NOT_ON_SRC) c->not_on_src += count;
            } else {
                tm_copy_counts *c = &st->copy;
                int cs = tm__name_index(tm__cs_names, CS_COUNT, status);
                if (sqlite3_column_int(s, 4)) c->conflicts += count;
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
        }
        if (rc == SQLITE_DONE)
            rc = 0;
        else
            rc = tm__store_error(db, rc, &m->err, "read status");
        sqlite3_finalize(s);
    }
    /* a root whose listing failed is a failed folder too (the counts leave
     * the roots out otherwise): without it, nothing would say that the
     * whole tree is missing */
    if (!rc)
        rc = root_failed(db, TM_SRC, &st->src_counts.failed);
    if (!rc)
        rc = root_failed(db, TM_DST, &st->dst_counts.failed);
    if (rc)
        fail(m, rc, "state file %s: read status: %s", m->store.path,
             sqlite3_errmsg(db));
    return rc ? rc : read_snapshots(m, st);
}

/* accessors for review.c */

#include "migration/migration_int.h" /* their prototypes */

sqlite3 *tm__migration_db(tm_migration *m)
{
    return m && m->open ? m->store.db : NULL;
}

struct tm__buf *tm__migration_err(tm_migration *m)
{
    return &m->err;
}

int tm__migration_readonly(tm_migration *m)
{
    return m->store.readonly;
}

const char *tm__migration_path(tm_migration *m)
{
    return m->store.path;
}
