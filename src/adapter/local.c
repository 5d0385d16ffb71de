/*
 * local.c - the local file-system adapter.
 *
 * Every path is resolved below a directory descriptor of the root: with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) where the kernel has it,
 * otherwise component by component with O_NOFOLLOW. So no symlink is ever
 * followed, nothing outside the root is ever opened, and paths longer than
 * PATH_MAX work (the component walk is used when openat2 says ENAMETOOLONG).
 * Listing uses getdents64 and fstatat(AT_SYMLINK_NOFOLLOW); special files are
 * reported as "other" and never opened. Thread-safe: the only shared state is
 * the root descriptor, which is read-only after open.
 */
#include "adapter/adapter.h"

#include "treemig.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct local {
    struct tm__adapter base; /* must be first */
    int root_fd;             /* O_PATH descriptor of the root folder */
    char *root;              /* the root's absolute path, as opened */
    dev_t root_dev;          /* the root's device and inode, as opened: */
    ino_t root_ino;          /* a folder at root that differs is another */
    atomic_int no_openat2;   /* 1 once the kernel said ENOSYS */
};

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Opens the folder at root-relative path one component at a time. */
static int open_walk(struct local *l, const char *path)
{
    int fd = openat(l->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *p = path;
    char name[NAME_MAX + 1];

    if (fd < 0)
        return tm__from_errno(errno);
    while (*p) {
        const char *slash;
        size_t n;
        int next;
        while (*p == '/')
            p++;
        if (!*p)
            break;
        slash = strchr(p, '/');
        n = slash ? (size_t)(slash - p) : strlen(p);
        if (n > NAME_MAX) {
            close(fd);
            return TM_ENAMETOOLONG;
        }
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
            close(fd);
            return TM_EINVAL;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        if (next < 0)
            return tm__from_errno(errno);
        fd = next;
        p += n;
    }
    return fd;
}

/* Opens the folder at path (root-relative, starting with '/') for reading. */
static int open_dir(struct local *l, const char *path)
{
    struct open_how how;
    long fd;

    if (path[1] == '\0')
        return open_walk(l, path);
    if (!atomic_load_explicit(&l->no_openat2, memory_order_relaxed)) {
        memset(&how, 0, sizeof how);
        how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                      RESOLVE_NO_MAGICLINKS;
        fd = syscall(SYS_openat2, l->root_fd, path + 1, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        if (errno == ENOSYS || errno == EPERM)
            atomic_store(&l->no_openat2, 1);
        else if (errno != ENAMETOOLONG && errno != EAGAIN)
            return tm__from_errno(errno);
    }
    return open_walk(l, path);
}

/* Opens the non-folder at path (not the root) in one call: openat2
 * beneath the root, no symlink anywhere. TM_EAGAIN when openat2 is not
 * there or cannot resolve the path (too long): then go through the parent. */
static int open_beneath(struct local *l, const char *path, int flags)
{
    struct open_how how;
    long fd;
    if (path[1] == '\0' ||
        atomic_load_explicit(&l->no_openat2, memory_order_relaxed))
        return TM_EAGAIN;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)flags;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    fd = syscall(SYS_openat2, l->root_fd, path + 1, &how, sizeof how);
    if (fd >= 0)
        return (int)fd;
    if (errno == ENOSYS || errno == EPERM) {
        atomic_store(&l->no_openat2, 1);
        return TM_EAGAIN;
    }
    if (errno == ENAMETOOLONG || errno == EAGAIN)
        return TM_EAGAIN;
    return tm__from_errno(errno);
}

static int entry_from_stat(struct tm__entry *e, const struct stat *st)
{
    if (S_ISDIR(st->st_mode))
        e->type = TM_T_FOLDER;
    else if (S_ISREG(st->st_mode))
        e->type = TM_T_FILE;
    else if (S_ISLNK(st->st_mode))
        e->type = TM_T_SYMLINK;
    else
        e->type = TM_T_OTHER;
    e->size = (e->type == TM_T_FILE || e->type == TM_T_SYMLINK) ? st->st_size : 0;
    e->mtime = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    e->mode = st->st_mode & 07777;
    e->uid = st->st_uid;
    e->gid = st->st_gid;
    return 0;
}

/* A listing: the folder's descriptor stays open from page to page, so
 * one run reads one consistent getdents stream; a page is what one
 * getdents64 call returns. The next chunk is read ahead, so that the last
 * page says it is the last (a small folder is one page). The position is
 * the d_off of the last entry passed on (the file system's own cookie,
 * what telldir/seekdir use). */
struct local_lister {
    struct tm__lister base; /* must be first */
    int fd;                 /* the folder */
    int64_t off;            /* d_off after the last complete page */
    int broken;             /* the page could not be rewound: this error */
    long n;                 /* bytes of the chunk in buf; -1: none read */
    char *buf, *next;       /* this chunk, the one read ahead (LIST_BUF) */
};

#define LIST_BUF (32 * 1024)

static int local_list_open(struct tm__adapter *a, const char *path,
                           const void *pos, size_t pos_len,
                           struct tm__lister **out, struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    struct local_lister *li;
    int64_t off = 0;
    int fd;

    (void)e;
    *out = NULL;
    if (pos_len) {
        if (pos_len != 8)
            return TM_EINVAL;
        memcpy(&off, pos, 8);
    }
    fd = open_dir(l, path);
    if (fd < 0)
        return fd;
    li = calloc(1, sizeof *li);
    if (!li || !(li->buf = malloc(2 * LIST_BUF))) {
        free(li);
        close(fd);
        return TM_ENOMEM;
    }
    li->next = li->buf + LIST_BUF;
    if (off && lseek(fd, (off_t)off, SEEK_SET) < 0) {
        int rc = tm__from_errno(errno);
        free(li->buf);
        free(li);
        close(fd);
        return rc;
    }
    li->base.a = a;
    li->fd = fd;
    li->off = off;
    li->n = -1;
    *out = &li->base;
    return 0;
}

static long read_chunk(int fd, char *buf)
{
    long n;
    do
        n = syscall(SYS_getdents64, fd, buf, LIST_BUF);
    while (n < 0 && errno == EINTR);
    return n < 0 ? tm__from_errno(errno) : n;
}

static int local_list_next(struct tm__lister *lr, tm__list_cb cb, void *ctx,
                           int *more, struct tm__aerr *e)
{
    struct local_lister *li = (struct local_lister *)lr;
    int64_t last = li->off;
    long off, n = -1;
    int rc = 0;

    (void)e;
    *more = 0;
    if (li->broken)
        return li->broken;
    if (li->n < 0 && (li->n = read_chunk(li->fd, li->buf)) < 0) {
        rc = (int)li->n;
        li->n = -1;
        return rc;
    }
    for (off = 0; off < li->n && !rc;) {
        struct linux_dirent64 *d = (struct linux_dirent64 *)(li->buf + off);
        struct tm__entry en;
        struct stat st;
        off += d->d_reclen;
        last = d->d_off;
        if (d->d_name[0] == '.' &&
            (d->d_name[1] == '\0' ||
             (d->d_name[1] == '.' && d->d_name[2] == '\0')))
            continue;
        if (fstatat(li->fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT)
                continue; /* vanished since getdents: not a child now */
            rc = tm__from_errno(errno);
            break;
        }
        en.name = d->d_name;
        en.name_len = strlen(d->d_name);
        entry_from_stat(&en, &st);
        rc = cb(ctx, &en);
    }
    if (!rc && li->n > 0 && (n = read_chunk(li->fd, li->next)) < 0)
        rc = (int)n;
    if (rc) {
        /* the next call reads this page again; if it cannot, it fails
         * rather than go on after a page that was not passed on whole */
        li->n = -1;
        if (lseek(li->fd, (off_t)li->off, SEEK_SET) < 0)
            li->broken = tm__from_errno(errno);
        return rc;
    }
    li->off = last;
    if (li->n == 0 || n == 0) {
        li->n = 0; /* the end: later calls return nothing */
        return 0;
    }
    {
        char *t = li->buf;
        li->buf = li->next;
        li->next = t;
    }
    li->n = n;
    *more = 1;
    return 0;
}

static int local_list_pos(struct tm__lister *lr, struct tm__buf *out)
{
    struct local_lister *li = (struct local_lister *)lr;
    return tm__buf_add(out, &li->off, 8);
}

static void local_list_close(struct tm__lister *lr)
{
    struct local_lister *li = (struct local_lister *)lr;
    close(li->fd);
    free(li->buf < li->next ? li->buf : li->next); /* one allocation */
    free(li);
}

static int local_stat(struct tm__adapter *a, const char *path,
                      struct tm__entry *out)
{
    struct local *l = (struct local *)a;
    const char *slash;
    struct stat st;
    int fd, rc;

    memset(out, 0, sizeof *out);
    if (path[1] == '\0') {
        if (fstatat(l->root_fd, "", &st, AT_EMPTY_PATH) != 0)
            return tm__from_errno(errno);
        return entry_from_stat(out, &st);
    }
    slash = strrchr(path, '/');
    if (slash == path) {
        fd = open_walk(l, "/");
    } else {
        char *dir = strndup(path, (size_t)(slash - path));
        if (!dir)
            return TM_ENOMEM;
        fd = open_dir(l, dir);
        free(dir);
    }
    if (fd < 0)
        return fd;
    rc = fstatat(fd, slash + 1, &st, AT_SYMLINK_NOFOLLOW) ? tm__from_errno(errno) : 0;
    close(fd);
    if (rc)
        return rc;
    out->name = NULL;
    out->name_len = 0;
    return entry_from_stat(out, &st);
}

/* ---- files ---- */

struct local_rfile {
    struct tm__rfile base; /* must be first */
    int fd;                /* the open file */
    int sparse;            /* fewer blocks than bytes at open */
};

struct local_wfile {
    struct tm__wfile base; /* must be first */
    int dirfd;             /* the parent folder */
    int fd;                /* the temporary file */
    char *name;            /* the real name (malloc'd) */
    char tmp[40];          /* the temporary name in the same folder */
};

/* Opens the parent folder of path; *name points at the last component. */
static int open_parent(struct local *l, const char *path, const char **name)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int fd;
    if (!slash || !slash[1])
        return TM_EINVAL;
    *name = slash + 1;
    if (slash == path)
        return open_walk(l, "/");
    dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return TM_ENOMEM;
    fd = open_dir(l, dir);
    free(dir);
    return fd;
}

/* The temporary name of a file being written: fixed for a given name, so a
 * copy redone after a crash reuses (and truncates) the same temporary. */
static void tmp_name(char *out, size_t len, const char *name)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 1099511628211ULL;
    snprintf(out, len, ".treemig.%016llx.tmp", (unsigned long long)h);
}

static int local_open_read(struct tm__adapter *a, const char *path,
                           struct tm__rfile **out, struct tm__entry *st)
{
    struct local *l = (struct local *)a;
    struct local_rfile *f;
    const char *name;
    struct stat sb;
    int dfd, fd;

    *out = NULL;
    /* O_NONBLOCK: a FIFO put in a file's place must not hang the worker */
    fd = open_beneath(l, path, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK |
                      O_CLOEXEC);
    if (fd == TM_EAGAIN) { /* no openat2 here, or a path it cannot take */
        dfd = open_parent(l, path, &name);
        if (dfd < 0)
            return dfd;
        fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK |
                    O_CLOEXEC);
        close(dfd);
        if (fd < 0)
            return tm__from_errno(errno);
    } else if (fd < 0) {
        return fd;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return TM_EINVAL;
    }
    f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        return TM_ENOMEM;
    }
    f->base.a = a;
    f->fd = fd;
    f->sparse = (int64_t)sb.st_blocks * 512 < (int64_t)sb.st_size;
    entry_from_stat(st, &sb);
    *out = &f->base;
    return 0;
}

static int64_t local_read(struct tm__rfile *rf, void *buf, size_t len)
{
    struct local_rfile *f = (struct local_rfile *)rf;
    for (;;) {
        ssize_t n = read(f->fd, buf, len);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return tm__from_errno(errno);
    }
}

static int local_fstat(struct tm__rfile *rf, struct tm__entry *st)
{
    struct local_rfile *f = (struct local_rfile *)rf;
    struct stat sb;
    if (fstat(f->fd, &sb) != 0)
        return tm__from_errno(errno);
    return entry_from_stat(st, &sb);
}

static void local_close_read(struct tm__rfile *rf)
{
    struct local_rfile *f = (struct local_rfile *)rf;
    if (!f)
        return;
    close(f->fd);
    free(f);
}

static int local_open_write(struct tm__adapter *a, const char *path,
                            struct tm__wfile **out)
{
    struct local *l = (struct local *)a;
    struct local_wfile *f;
    const char *name;
    int dfd;

    *out = NULL;
    dfd = open_parent(l, path, &name);
    if (dfd < 0)
        return dfd;
    f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name))) {
        free(f);
        close(dfd);
        return TM_ENOMEM;
    }
    f->base.a = a;
    f->dirfd = dfd;
    tmp_name(f->tmp, sizeof f->tmp, name);
    /* 0600 while it is written: others never read a partial copy */
    f->fd = openat(dfd, f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                   0600);
    if (f->fd < 0) {
        int rc = tm__from_errno(errno);
        close(dfd);
        free(f->name);
        free(f);
        return rc;
    }
    *out = &f->base;
    return 0;
}

static int64_t local_write(struct tm__wfile *wf, const void *buf, size_t len)
{
    struct local_wfile *f = (struct local_wfile *)wf;
    const char *p = buf;
    size_t left = len;
    while (left) {
        ssize_t n = write(f->fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return tm__from_errno(errno);
        }
        p += n;
        left -= (size_t)n;
    }
    return (int64_t)len;
}

/* Copies [off, end) of src to the same offsets of dst: copy_file_range,
 * or pread/pwrite where it is refused. */
static int copy_range(int src, int dst, int64_t off, int64_t end)
{
    static const size_t chunk = 1 << 20;
    char *buf = NULL;
    int rc = 0;
    while (off < end && !rc) {
        loff_t in = off, out = off;
        ssize_t n = buf ? -1 : copy_file_range(src, &in, dst, &out,
                                               (size_t)(end - off), 0);
        if (n > 0) {
            off += n;
            continue;
        }
        if (n == 0)
            break; /* shorter than recorded: the caller sees it */
        if (!buf && errno == EINTR)
            continue;
        if (!buf && errno != EXDEV && errno != ENOSYS && errno != EINVAL &&
            errno != EOPNOTSUPP && errno != EPERM)
            return tm__from_errno(errno);
        if (!buf && !(buf = malloc(chunk)))
            return TM_ENOMEM;
        n = pread(src, buf, end - off < (int64_t)chunk ? (size_t)(end - off)
                                                       : chunk, off);
        if (n <= 0) {
            if (n < 0 && errno != EINTR)
                rc = tm__from_errno(errno);
            if (n == 0)
                break;
            continue;
        }
        for (ssize_t w = 0, k; w < n && !rc; w += k) {
            k = pwrite(dst, buf + w, (size_t)(n - w), off + w);
            if (k < 0 && errno != EINTR)
                rc = tm__from_errno(errno);
            k = k < 0 ? 0 : k;
        }
        off += n;
    }
    free(buf);
    return rc;
}

/* A sparse source (fewer blocks than its size): its data ranges are copied
 * to the same offsets and its holes stay holes. Returns the size, an
 * error, or TM_EINVAL when the file system cannot say where data is. */
static int64_t copy_sparse(int src, int dst, int64_t size)
{
    int64_t off = 0;
    int rc;
    while (off < size) {
        off_t data = lseek(src, off, SEEK_DATA), hole;
        if (data < 0 && errno == ENXIO)
            break; /* only a hole is left */
        if (data < 0)
            return off == 0 ? TM_EINVAL : tm__from_errno(errno);
        if (data >= size)
            break;
        hole = lseek(src, data, SEEK_HOLE);
        if (hole < 0)
            return tm__from_errno(errno);
        if (hole > size)
            hole = size;
        rc = copy_range(src, dst, data, hole);
        if (rc)
            return rc;
        off = hole;
    }
    return ftruncate(dst, size) != 0 ? tm__from_errno(errno) : size;
}

/* Copies in the kernel: copy_file_range (a reflink where the file system
 * can), falling back to read/write where it is refused; a sparse file
 * keeps its holes. */
static int64_t local_copy_from(struct tm__wfile *wf, struct tm__rfile *rf,
                               int64_t size)
{
    struct local_wfile *f = (struct local_wfile *)wf;
    struct local_rfile *src = (struct local_rfile *)rf;
    int64_t done = 0;
    char *buf;

    if (size > 0 && src->sparse) {
        int64_t n = copy_sparse(src->fd, f->fd, size);
        if (n != TM_EINVAL)
            return n;
    }
    while (done < size) {
        ssize_t n = copy_file_range(src->fd, NULL, f->fd, NULL,
                                    (size_t)(size - done), 0);
        if (n > 0) {
            done += n;
            continue;
        }
        if (n == 0)
            return done; /* the source is shorter than recorded */
        if (errno == EINTR)
            continue;
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL &&
            errno != EOPNOTSUPP && errno != EPERM)
            return tm__from_errno(errno);
        break;
    }
    if (done >= size)
        return done;
    buf = malloc(1 << 20);
    if (!buf)
        return TM_ENOMEM;
    while (done < size) {
        int64_t n = local_read(rf, buf, 1 << 20), w;
        if (n < 0) {
            free(buf);
            return n;
        }
        if (n == 0)
            break;
        w = local_write(wf, buf, (size_t)n);
        if (w < 0) {
            free(buf);
            return w;
        }
        done += n;
    }
    free(buf);
    return done;
}

static void wfile_free(struct local_wfile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    close(f->dirfd);
    free(f->name);
    free(f);
}

static void local_abort(struct tm__wfile *wf)
{
    struct local_wfile *f = (struct local_wfile *)wf;
    if (!f)
        return;
    unlinkat(f->dirfd, f->tmp, 0);
    wfile_free(f);
}

static void ns_to_times(struct timespec t[2], int64_t mtime)
{
    if (mtime == TM_MTIME_KEEP)
        mtime = 0;
    t[0].tv_sec = 0;
    t[0].tv_nsec = UTIME_OMIT;
    t[1].tv_sec = (time_t)(mtime / 1000000000);
    t[1].tv_nsec = (long)(mtime % 1000000000);
    if (t[1].tv_nsec < 0) {
        t[1].tv_sec--;
        t[1].tv_nsec += 1000000000;
    }
}

/* rename, or with TM_NOREPLACE renameat2(RENAME_NOREPLACE): a file made
 * on the destination after discovery is then kept. */
static int place(int dfd, const char *tmp, const char *name, unsigned flags)
{
    if (flags & TM_NOREPLACE)
        return renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE);
    return renameat(dfd, tmp, dfd, name);
}

static int local_commit(struct tm__wfile *wf, int64_t mtime, uint32_t mode,
                        unsigned flags)
{
    struct local_wfile *f = (struct local_wfile *)wf;
    struct timespec t[2];
    int rc = 0;

    ns_to_times(t, mtime);
    /* the owner first: chown clears the set-user-ID and set-group-ID bits */
    if (f->base.set_owner &&
        fchown(f->fd, (uid_t)f->base.uid, (gid_t)f->base.gid) != 0)
        rc = tm__from_errno(errno);
    else if (fchmod(f->fd, mode & 07777) != 0 || futimens(f->fd, t) != 0)
        rc = tm__from_errno(errno);
    if (close(f->fd) != 0 && !rc)
        rc = tm__from_errno(errno); /* e.g. a delayed ENOSPC on NFS */
    f->fd = -1;
    if (!rc && place(f->dirfd, f->tmp, f->name, flags) != 0)
        rc = tm__from_errno(errno);
    if (rc)
        unlinkat(f->dirfd, f->tmp, 0);
    wfile_free(f);
    return rc;
}

static int local_mkdir(struct tm__adapter *a, const char *path)
{
    struct local *l = (struct local *)a;
    const char *name;
    struct stat sb;
    int dfd, rc = 0;

    dfd = open_parent(l, path, &name);
    if (dfd < 0)
        return dfd;
    if (mkdirat(dfd, name, 0700) != 0) {
        rc = tm__from_errno(errno);
        /* made by an earlier run that crashed before recording it */
        if (rc == TM_EEXIST && fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISDIR(sb.st_mode))
            rc = 0;
    }
    close(dfd);
    return rc;
}

static int local_readlink(struct tm__adapter *a, const char *path,
                          struct tm__buf *out)
{
    struct local *l = (struct local *)a;
    const char *name;
    char buf[PATH_MAX + 1];
    ssize_t n;
    int dfd = open_parent(l, path, &name);
    if (dfd < 0)
        return dfd;
    n = readlinkat(dfd, name, buf, sizeof buf);
    close(dfd);
    if (n < 0)
        return tm__from_errno(errno);
    if ((size_t)n >= sizeof buf)
        return TM_ENAMETOOLONG;
    tm__buf_reset(out);
    return tm__buf_add(out, buf, (size_t)n);
}

static int local_symlink(struct tm__adapter *a, const char *path,
                         const char *target, int64_t mtime, unsigned flags)
{
    struct local *l = (struct local *)a;
    struct timespec t[2];
    const char *name;
    char tmp[40];
    int dfd, rc = 0;

    dfd = open_parent(l, path, &name);
    if (dfd < 0)
        return dfd;
    tmp_name(tmp, sizeof tmp, name);
    unlinkat(dfd, tmp, 0);
    ns_to_times(t, mtime);
    if (symlinkat(target, dfd, tmp) != 0 ||
        utimensat(dfd, tmp, t, AT_SYMLINK_NOFOLLOW) != 0 ||
        place(dfd, tmp, name, flags) != 0) {
        rc = tm__from_errno(errno);
        unlinkat(dfd, tmp, 0);
    }
    close(dfd);
    return rc;
}

/* Works through the parent: a folder of mode 0 cannot be opened, but its
 * mode can still be changed by name. */
static int local_set_attr(struct tm__adapter *a, const char *path, int64_t mtime,
                          uint32_t mode)
{
    struct local *l = (struct local *)a;
    struct timespec t[2];
    const char *name;
    struct stat sb;
    int dfd = open_parent(l, path, &name), rc = 0;
    if (dfd < 0)
        return dfd;
    ns_to_times(t, mtime);
    if (mtime == TM_MTIME_KEEP)
        t[1].tv_nsec = UTIME_OMIT;
    if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
        rc = tm__from_errno(errno);
    else if (!S_ISDIR(sb.st_mode))
        rc = TM_ENOTDIR; /* never chmod through a symlink put in its place */
    else if (fchmodat(dfd, name, mode & 07777, 0) != 0 ||
             utimensat(dfd, name, t, AT_SYMLINK_NOFOLLOW) != 0)
        rc = tm__from_errno(errno);
    close(dfd);
    return rc;
}

static int local_chown(struct tm__adapter *a, const char *path, int64_t uid,
                       int64_t gid)
{
    struct local *l = (struct local *)a;
    const char *name;
    int dfd = open_parent(l, path, &name), rc = 0;
    if (dfd < 0)
        return dfd;
    if (fchownat(dfd, name, (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW) != 0)
        rc = tm__from_errno(errno);
    close(dfd);
    return rc;
}

static int local_sync(struct tm__adapter *a)
{
    struct local *l = (struct local *)a;
    int fd = open_walk(l, "/"), rc = 0;
    if (fd < 0)
        return fd;
    if (syncfs(fd) != 0)
        rc = tm__from_errno(errno);
    close(fd);
    return rc;
}

/* The root descriptor keeps working after the root folder is removed
 * (writes fail with ENOENT) or renamed (writes land in the moved folder,
 * outside the destination the user named): the path must still lead to
 * the same folder. A failure to tell (EACCES on an ancestor, ...) is not
 * taken for a vanished root. */
static int local_check_root(struct tm__adapter *a)
{
    struct local *l = (struct local *)a;
    struct stat st;
    if (fstat(l->root_fd, &st) == 0 && st.st_nlink == 0)
        return TM_ENOENT; /* removed */
    if (stat(l->root, &st) != 0)
        return errno == ENOENT || errno == ENOTDIR ? TM_ENOENT : 0;
    if (!S_ISDIR(st.st_mode) || st.st_dev != l->root_dev || st.st_ino != l->root_ino)
        return TM_ENOENT; /* moved away, replaced */
    return 0;
}

static void local_close(struct tm__adapter *a)
{
    struct local *l = (struct local *)a;
    if (l->root_fd >= 0)
        close(l->root_fd);
    free(l->root);
    free(l);
}

int tm__local_open(const char *root, struct tm__adapter **out, char *err,
                   size_t errlen)
{
    struct local *l;
    struct stat st;
    int fd;

    *out = NULL;
    fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOTDIR)
            snprintf(err, errlen, "%s: not a folder", root);
        else
            snprintf(err, errlen, "%s: %s", root, tm_strerror(tm__from_errno(e)));
        return TM_EROOT;
    }
    if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "%s: not a folder", root);
        return TM_EROOT;
    }
    l = calloc(1, sizeof *l);
    if (!l || !(l->root = strdup(root))) {
        free(l);
        close(fd);
        return TM_ENOMEM;
    }
    l->root_dev = st.st_dev;
    l->root_ino = st.st_ino;
    l->base.version = 2;
    l->base.name = "local";
    l->base.caps = TM_CAP_MODES | TM_CAP_SYMLINKS | TM_CAP_OWNER;
    l->base.mtime_precision = 1;
    l->base.list_open = local_list_open;
    l->base.list_next = local_list_next;
    l->base.list_pos = local_list_pos;
    l->base.list_close = local_list_close;
    l->base.stat = local_stat;
    l->base.close = local_close;
    l->base.open_read = local_open_read;
    l->base.read = local_read;
    l->base.fstat = local_fstat;
    l->base.close_read = local_close_read;
    l->base.open_write = local_open_write;
    l->base.write = local_write;
    l->base.copy_from = local_copy_from;
    l->base.commit = local_commit;
    l->base.abort = local_abort;
    l->base.mkdir = local_mkdir;
    l->base.readlink = local_readlink;
    l->base.symlink = local_symlink;
    l->base.set_attr = local_set_attr;
    l->base.sync = local_sync;
    l->base.chown = local_chown;
    l->base.check_root = local_check_root;
    l->root_fd = fd;
    *out = &l->base;
    return 0;
}
