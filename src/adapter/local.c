/*
 * local.c - the local file-system adapter.
 *
 * Every path is resolved below a directory descriptor of the root: with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) where the kernel has it,
 * otherwise component by component with O_NOFOLLOW. So no symlink is ever
 * followed, nothing outside the root is ever opened, and paths longer than
 * PATH_MAX work (the component walk is used when openat2 says ENAMETOOLONG).
 * Listing uses getdents64 and one statx(AT_SYMLINK_NOFOLLOW) per child
 * (fstatat where the kernel lacks statx); special files are
 * reported as "other" with their kind (FIFO, device, socket) and never
 * opened; a file's inode (dev, ino, nlink) is reported for its link group,
 * a folder's mount (st_dev, statx mount id) against the root's. The root
 * itself is opened without following a symlink on any component of its
 * path.
 *
 * Writing: a file is written to a temporary name created with O_EXCL (never
 * an existing file, FIFO or link), derived from the copy run's key and the
 * path (util/secret.c), given its extended attributes, and renamed to its
 * real name when complete; a special file (mknodat), a hard link (linkat)
 * and a symlink are made under such a name too, and renamed. The mode and
 * mtime of a folder, and the owner and mode of a file or symlink changed in
 * place, are set through a descriptor of it opened with O_NOFOLLOW, never
 * by name.
 *
 * Thread-safe: the shared state (root descriptor, run key, forbidden
 * folders) is set before the workers start and only read afterwards.
 */
#include "adapter/adapter.h"

#include "treemig.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
/* Linux 6.13: the attributes of a name in a folder, through the folder's
 * descriptor (one number on every architecture but alpha) */
#if !defined(SYS_getxattrat) && !defined(__alpha__)
#define SYS_getxattrat 464
#endif
#if !defined(SYS_listxattrat) && !defined(__alpha__)
#define SYS_listxattrat 465
#endif

/* getxattrat's arguments (linux/xattr.h, 6.13) */
struct tm__xattr_args {
    uint64_t value __attribute__((aligned(8))); /* the buffer */
    uint32_t size;                              /* its bytes */
    uint32_t flags;                             /* 0 */
};

#define MAX_FORBID 8

struct forbidden {
    uint64_t dev, ino;       /* a folder that must not be met in the tree */
    char what[96];           /* what it is, for the message */
};

struct local {
    struct tm__adapter base; /* must be first */
    int root_fd;             /* O_PATH descriptor of the root folder */
    char *root;              /* the root's absolute path, as opened */
    dev_t root_dev;          /* the root's device and inode, as opened: */
    ino_t root_ino;          /* a folder at root that differs is another */
    uint64_t root_mnt;       /* the root's mount id (statx), where known */
    int have_mnt;            /* 1: root_mnt is known */
    atomic_int no_openat2;   /* 1 once the kernel said ENOSYS */
    atomic_int no_fchmodat2; /* 1 once the kernel said ENOSYS */
    atomic_int no_statx;     /* 1 once the kernel said ENOSYS */
    atomic_int no_xattrat;   /* 1 once the kernel said ENOSYS to
                                listxattrat/getxattrat */
    int security;            /* 1: security.* attributes are kept too
                                (root: the destination may accept them) */
    unsigned char key[TM_KEY_LEN]; /* run key of the temporary names */
    struct forbidden forbid[MAX_FORBID]; /* folders never to be met */
    int n_forbid;            /* entries used */
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

/* What a listing needs of a child's statx. */
#define CHILD_MASK (STATX_TYPE | STATX_MODE | STATX_NLINK | STATX_UID | STATX_GID | \
                    STATX_INO | STATX_SIZE | STATX_MTIME)

/* Stats the child name of the folder dirfd without following it, in one
 * call: statx, which also gives the mount id other_fs() needs (*mnt, 0
 * when not known), or fstatat where the kernel has no statx or the file
 * system did not fill what a listing needs. Returns 0, or -1 with errno. */
static int stat_child(struct local *l, int dirfd, const char *name, struct stat *st,
                      uint64_t *mnt)
{
    struct statx sx;
    *mnt = 0;
    if (!atomic_load_explicit(&l->no_statx, memory_order_relaxed)) {
        if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
                  CHILD_MASK | (l->have_mnt ? STATX_MNT_ID : 0), &sx) == 0) {
            if ((sx.stx_mask & CHILD_MASK) == CHILD_MASK) {
                memset(st, 0, sizeof *st);
                st->st_mode = sx.stx_mode;
                st->st_nlink = sx.stx_nlink;
                st->st_uid = sx.stx_uid;
                st->st_gid = sx.stx_gid;
                st->st_ino = sx.stx_ino;
                st->st_size = (off_t)sx.stx_size;
                st->st_mtim.tv_sec = sx.stx_mtime.tv_sec;
                st->st_mtim.tv_nsec = sx.stx_mtime.tv_nsec;
                st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
                st->st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
                if (sx.stx_mask & STATX_MNT_ID)
                    *mnt = sx.stx_mnt_id;
                return 0;
            }
        } else if (errno == ENOSYS) {
            atomic_store(&l->no_statx, 1);
        } else {
            return -1;
        }
    }
    return fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW);
}

/* 1 when the folder name in the folder dirfd (stat st, mount id mnt when
 * not 0) is on another file system than the root, or on another mount of
 * it (a bind mount: the same st_dev, another mount id). */
static int other_fs(const struct local *l, int dirfd, const char *name,
                    const struct stat *st, uint64_t mnt)
{
    struct statx sx;
    if (st->st_dev != l->root_dev)
        return 1;
    if (!l->have_mnt)
        return 0;
    if (mnt)
        return mnt != l->root_mnt;
    if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_MNT_ID,
              &sx) != 0 || !(sx.stx_mask & STATX_MNT_ID))
        return 0;
    return sx.stx_mnt_id != l->root_mnt;
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
    /* a time after 2262 or before 1677 does not fit: it is marked, never
     * wrapped (util.h) */
    e->mtime = tm__ts_to_ns((int64_t)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    e->mode = st->st_mode & 07777;
    e->uid = st->st_uid;
    e->gid = st->st_gid;
    e->rdev = 0;
    e->other_fs = 0;
    e->dev = e->ino = 0;
    e->nlink = 0;
    if (e->type == TM_T_FILE) {
        e->dev = (uint64_t)st->st_dev;
        e->ino = (uint64_t)st->st_ino;
        e->nlink = (uint32_t)st->st_nlink;
    }
    if (e->type == TM_T_OTHER) {
        /* the kind too (TM_CAP_SPECIALS): mknod makes it again */
        e->mode = st->st_mode & (S_IFMT | 07777);
        if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
            e->rdev = (uint64_t)st->st_rdev;
    }
    return 0;
}

/* TM_EOVERLAP when the folder name (in the folder at path, stat st) is one
 * that must not be inside this tree. */
static int check_forbidden(struct local *l, const char *path, const char *name,
                           const struct stat *st, struct tm__aerr *e)
{
    int i;
    for (i = 0; i < l->n_forbid; i++)
        if ((uint64_t)st->st_dev == l->forbid[i].dev &&
            (uint64_t)st->st_ino == l->forbid[i].ino)
            return tm__aerr_set(e, TM_EOVERLAP, "%s%s%s%s is %s (the same folder by "
                           "another route: a bind mount?); refused",
                           strcmp(l->root, "/") ? l->root : "",
                           strcmp(path, "/") ? path : "", "/", name,
                           l->forbid[i].what);
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
    char *path;             /* the folder's path (for messages) */
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
    if (!li || !(li->buf = malloc(2 * LIST_BUF)) || !(li->path = strdup(path))) {
        if (li)
            free(li->buf);
        free(li);
        close(fd);
        return TM_ENOMEM;
    }
    li->next = li->buf + LIST_BUF;
    if (off && lseek(fd, (off_t)off, SEEK_SET) < 0) {
        int rc = tm__from_errno(errno);
        free(li->buf);
        free(li->path);
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

static uint64_t list_xattrs(struct local *l, int dirfd, const char *name);

static int local_list_next(struct tm__lister *lr, tm__list_cb cb, void *ctx,
                           int *more, struct tm__aerr *e)
{
    struct local_lister *li = (struct local_lister *)lr;
    struct local *l = (struct local *)lr->a;
    int64_t last = li->off;
    long off, n = -1;
    int rc = 0;

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
        uint64_t mnt;
        off += d->d_reclen;
        last = d->d_off;
        if (d->d_name[0] == '.' &&
            (d->d_name[1] == '\0' ||
             (d->d_name[1] == '.' && d->d_name[2] == '\0')))
            continue;
        if (stat_child(l, li->fd, d->d_name, &st, &mnt) != 0) {
            if (errno == ENOENT)
                continue; /* vanished since getdents: not a child now */
            rc = tm__from_errno(errno);
            break;
        }
        if (S_ISDIR(st.st_mode) && l->n_forbid &&
            (rc = check_forbidden(l, li->path, d->d_name, &st, e)) != 0)
            break;
        en.name = d->d_name;
        en.name_len = strlen(d->d_name);
        entry_from_stat(&en, &st);
        if (S_ISDIR(st.st_mode))
            en.other_fs = other_fs(l, li->fd, d->d_name, &st, mnt);
        en.xattrs = 0;
        if (l->base.list_xattrs && (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)))
            en.xattrs = list_xattrs(l, li->fd, d->d_name);
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
    free(li->path);
    free(li);
}

static int local_stat(struct tm__adapter *a, const char *path,
                      struct tm__entry *out, struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    const char *slash;
    struct stat st;
    int fd, rc;

    (void)e;
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
    const void *xattrs;    /* the engine's: set on the file at commit */
    size_t xattrs_len;     /* its bytes */
    struct tm__buf *refused; /* the engine's: what the file system refused */
    int dirfd;             /* the parent folder */
    int fd;                /* the temporary file */
    char *name;            /* the real name (malloc'd) */
    char tmp[TM_TMP_NAME_MAX]; /* the temporary name in the same folder */
    int64_t written;       /* bytes written (local_write) */
    int64_t kicked;        /* writeback started up to here (kick) */
};

/* Writeback of a file being written starts every KICK_BYTES: the copy
 * ends with a syncfs of the destination (execute.c, sync_dst) and, with
 * the dirty pages left to the kernel (background writeback starts at 10%
 * of memory, or after 30 s), that syncfs wrote gigabytes after the last
 * byte came in (2.3 s for 2 GiB here). Started as the data comes, the
 * disk writes while the copy goes on. Smaller files are left to the
 * kernel (many small writebacks would cost more than they save). */
#define KICK_BYTES (8 << 20)

/* Starts (does not wait for) the writeback of what f wrote since the last
 * kick; final: the rest too, when earlier kicks were made. A failure is
 * not one: the final syncfs writes it. */
static void kick(struct local_wfile *f, int final)
{
    int64_t n = f->written - f->kicked;
    if (n >= KICK_BYTES || (final && n > 0 && f->kicked > 0)) {
        (void)sync_file_range(f->fd, f->kicked, n, SYNC_FILE_RANGE_WRITE);
        f->kicked = f->written;
    }
}

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

static int local_open_read(struct tm__adapter *a, const char *path,
                           struct tm__rfile **out, struct tm__entry *st,
                           struct tm__aerr *e)
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
    if (fstat(fd, &sb) != 0) {
        int rc = tm__from_errno(errno);
        close(fd);
        return rc;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        /* a folder is EISDIR, as on every storage (the sim's, SFTP's) */
        if (S_ISDIR(sb.st_mode))
            return tm__aerr_set(e, TM_EISDIR, "a folder, not a file");
        return tm__aerr_set(e, TM_EINVAL, "not a regular file any more");
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

static int64_t local_read(struct tm__rfile *rf, void *buf, size_t len,
                          struct tm__aerr *e)
{
    struct local_rfile *f = (struct local_rfile *)rf;
    (void)e;
    for (;;) {
        ssize_t n = read(f->fd, buf, len);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return tm__from_errno(errno);
    }
}

static int local_read_fd(struct tm__rfile *rf)
{
    return ((struct local_rfile *)rf)->fd;
}

static int local_fstat(struct tm__rfile *rf, struct tm__entry *st,
                       struct tm__aerr *e)
{
    struct local_rfile *f = (struct local_rfile *)rf;
    (void)e;
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
                            const struct tm__wattr *w, struct tm__wfile **out,
                            struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    struct local_wfile *f;
    const char *name;
    int dfd, attempt;

    *out = NULL;
    /* written as it comes; the attributes come with commit */
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
    f->fd = -1;
    f->xattrs = w->xattrs;
    f->xattrs_len = w->xattrs_len;
    f->refused = w->refused;
    /* 0600 while it is written: others never read a partial copy. O_EXCL:
     * never a file, link or FIFO that is there already (a name that is
     * taken, by chance or by someone who saw it, moves to the next) */
    for (attempt = 0; attempt < TM_TMP_TRIES && f->fd < 0; attempt++) {
        int rc = tm__tmp_name(l->key, path, attempt, f->tmp, sizeof f->tmp);
        if (rc) {
            errno = ENAMETOOLONG;
            break;
        }
        f->fd = openat(dfd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                       O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0600);
        if (f->fd < 0 && errno != EEXIST)
            break;
    }
    if (f->fd < 0) {
        int rc = tm__from_errno(errno);
        if (rc == TM_EEXIST)
            tm__aerr_set(e, rc, "cannot create a temporary file beside %s: the "
                         "%d names it may take are taken", path, TM_TMP_TRIES);
        close(dfd);
        free(f->name);
        free(f);
        return rc;
    }
    *out = &f->base;
    return 0;
}

static int64_t local_write(struct tm__wfile *wf, const void *buf, size_t len,
                           struct tm__aerr *e)
{
    struct local_wfile *f = (struct local_wfile *)wf;
    (void)e;
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
    f->written += (int64_t)len;
    kick(f, 0);
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
                               int64_t size, struct tm__aerr *e)
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
        /* KICK_BYTES at a time: the writeback of each starts after it */
        ssize_t n = copy_file_range(src->fd, NULL, f->fd, NULL,
                                    size - done < KICK_BYTES ? (size_t)(size - done)
                                                             : (size_t)KICK_BYTES,
                                    0);
        if (n > 0) {
            done += n;
            f->written = done;
            kick(f, 0);
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
        int64_t n = local_read(rf, buf, 1 << 20, e), w;
        if (n < 0) {
            free(buf);
            return n;
        }
        if (n == 0)
            break;
        w = local_write(wf, buf, (size_t)n, e);
        if (w < 0) {
            free(buf);
            return w;
        }
        done += n;
    }
    free(buf);
    return done;
}

/* ---- extended attributes ---- */

/* 1 for an attribute a copy keeps: user.*, trusted.* (listed only to
 * CAP_SYS_ADMIN), the POSIX ACLs, and as root security.* (file
 * capabilities, SELinux labels: the destination may refuse them, which
 * the copy reports per node; another user could not set them). */
static int xattr_kept(const struct local *l, const char *name)
{
    return strncmp(name, "user.", 5) == 0 || strncmp(name, "trusted.", 8) == 0 ||
           strcmp(name, "system.posix_acl_access") == 0 ||
           strcmp(name, "system.posix_acl_default") == 0 ||
           (l->security && strncmp(name, "security.", 9) == 0);
}

/* 1 for a kept attribute that is also compared (discovery, verify) and
 * removed from a node that should not have it: not security.*, which a
 * destination may set on its own (an SELinux label on every new file) and
 * which is copied, never compared nor removed. */
static int xattr_compared(const struct local *l, const char *name)
{
    return xattr_kept(l, name) && strncmp(name, "security.", 9) != 0;
}

/* The value of the attribute name of fd into *buf (*cap bytes, grown as
 * needed): its length, or an error (TM_ENOENT: removed since listed). */
static ssize_t get_value(int fd, const char *name, char **buf, size_t *cap)
{
    for (;;) {
        ssize_t n = fgetxattr(fd, name, NULL, 0), m;
        char *p;
        if (n < 0)
            return errno == ENODATA ? TM_ENOENT : tm__from_errno(errno);
        if ((size_t)n > *cap) {
            if (!(p = realloc(*buf, (size_t)n)))
                return TM_ENOMEM;
            *buf = p;
            *cap = (size_t)n;
        }
        if (n == 0)
            return 0;
        m = fgetxattr(fd, name, *buf, *cap);
        if (m >= 0)
            return m;
        if (errno != ERANGE) /* grown since: ask again */
            return errno == ENODATA ? TM_ENOENT : tm__from_errno(errno);
    }
}

/* Appends the kept attributes of the open node fd to out. */
static int read_xattrs(const struct local *l, int fd, struct tm__buf *out)
{
    char *names = NULL, *val = NULL;
    size_t vcap = 0;
    ssize_t n;
    int rc = 0;
    for (;;) {
        n = flistxattr(fd, NULL, 0);
        if (n <= 0) {
            /* none, or a file system without them: nothing to copy */
            rc = n < 0 && errno != ENOTSUP ? tm__from_errno(errno) : 0;
            goto out;
        }
        free(names);
        if (!(names = malloc((size_t)n))) {
            rc = TM_ENOMEM;
            goto out;
        }
        n = flistxattr(fd, names, (size_t)n);
        if (n >= 0)
            break;
        if (errno != ERANGE) {
            rc = tm__from_errno(errno);
            goto out;
        }
    }
    for (ssize_t i = 0; i < n && !rc; i += (ssize_t)strnlen(names + i, (size_t)(n - i)) + 1) {
        const char *name = names + i;
        ssize_t v;
        if (!memchr(name, '\0', (size_t)(n - i)) || !xattr_kept(l, name))
            continue;
        v = get_value(fd, name, &val, &vcap);
        if (v == TM_ENOENT)
            continue;
        rc = v < 0 ? (int)v : tm__xattr_add(out, name, val, (uint32_t)v);
    }
out:
    free(names);
    free(val);
    return rc;
}

/* listxattrat(2) of name in the folder dirfd, not following a symlink
 * (where the kernel lacks it: llistxattr through /proc/self/fd). */
static ssize_t list_at(struct local *l, int dirfd, const char *name, char *buf,
                       size_t size)
{
    char p[64 + NAME_MAX];
    if (!atomic_load_explicit(&l->no_xattrat, memory_order_relaxed)) {
        long n = syscall(SYS_listxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, buf,
                         size);
        if (n >= 0 || errno != ENOSYS)
            return n;
        atomic_store(&l->no_xattrat, 1);
    }
    snprintf(p, sizeof p, "/proc/self/fd/%d/%s", dirfd, name);
    return llistxattr(p, buf, size);
}

/* getxattrat(2) of the attribute attr of name in the folder dirfd. */
static ssize_t get_at(struct local *l, int dirfd, const char *name,
                      const char *attr, void *buf, size_t size)
{
    char p[64 + NAME_MAX];
    if (!atomic_load_explicit(&l->no_xattrat, memory_order_relaxed)) {
        struct tm__xattr_args args = { (uint64_t)(uintptr_t)buf, (uint32_t)size, 0 };
        long n = syscall(SYS_getxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, attr,
                         &args, sizeof args);
        if (n >= 0 || errno != ENOSYS)
            return n;
        atomic_store(&l->no_xattrat, 1);
    }
    snprintf(p, sizeof p, "/proc/self/fd/%d/%s", dirfd, name);
    return lgetxattr(p, attr, buf, size);
}

/* The digest (tm__xattr_hash) of the compared attributes of the child name of
 * the folder dirfd, for discovery's and verify's comparisons: one
 * listxattrat where it has none (most files), which is what listing it
 * costs. A child that cannot be read gets a digest no other set has (1:
 * compared as different, so that verify says it and the copy sets them
 * again). */
static uint64_t list_xattrs(struct local *l, int dirfd, const char *name)
{
    char small[512], vsmall[256], *names = small, *val = vsmall;
    size_t vcap = sizeof vsmall, count = 0;
    uint64_t h = 0;
    ssize_t n = list_at(l, dirfd, name, small, sizeof small), i;

    while (n < 0 && errno == ERANGE) {
        /* more names than small holds: ask how many bytes, then again */
        n = list_at(l, dirfd, name, NULL, 0);
        if (n <= 0)
            break;
        if (names != small)
            free(names);
        if (!(names = malloc((size_t)n))) {
            names = small;
            h = 1;
            goto out;
        }
        n = list_at(l, dirfd, name, names, (size_t)n);
    }
    if (n <= 0) {
        /* none, a file system without them, gone since listed */
        h = n < 0 && errno != ENOTSUP && errno != ENOENT ? 1 : 0;
        goto out;
    }
    for (i = 0; i < n; i += (ssize_t)strnlen(names + i, (size_t)(n - i)) + 1) {
        const char *attr = names + i;
        ssize_t v;
        if (!memchr(attr, '\0', (size_t)(n - i)) || !xattr_compared(l, attr))
            continue;
        while ((v = get_at(l, dirfd, name, attr, val, vcap)) < 0 && errno == ERANGE) {
            char *p;
            v = get_at(l, dirfd, name, attr, NULL, 0);
            if (v < 0)
                break;
            if (!(p = malloc((size_t)v + 64))) {
                h = 1;
                goto out;
            }
            if (val != vsmall)
                free(val);
            val = p;
            vcap = (size_t)v + 64;
        }
        if (v < 0 && errno == ENODATA)
            continue; /* removed since listed */
        if (v < 0) {
            h = 1;
            goto out;
        }
        h = tm__xattr_hash_add(h, attr, val, (size_t)v);
        count++;
    }
    h = tm__xattr_hash_end(h, count);
out:
    if (names != small)
        free(names);
    if (val != vsmall)
        free(val);
    return h;
}

/* Sets on the open node fd each attribute of blob; a refusal is appended
 * to refused and the others are still set. An error only for a malformed
 * blob or no memory. */
static int write_xattrs(int fd, const void *blob, size_t len,
                        struct tm__buf *refused)
{
    size_t off = 0;
    const char *name;
    const void *val;
    uint32_t vlen;
    int k;
    while ((k = tm__xattr_next(blob, len, &off, &name, &val, &vlen)) == 1) {
        if (fsetxattr(fd, name, val, vlen, 0) == 0 || !refused)
            continue;
        if (tm__buf_addf(refused, "%s: %s; ", name,
                         tm_strerror(tm__from_errno(errno))))
            return TM_ENOMEM;
    }
    return k < 0 ? TM_EINVAL : 0;
}

/* The file or folder at path, opened to read its attributes: never
 * followed, a FIFO never waited on. */
static int open_node(struct local *l, const char *path, int type)
{
    const char *name;
    int dfd, fd;
    if (type == TM_T_FOLDER)
        return open_dir(l, path);
    fd = open_beneath(l, path, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK |
                      O_CLOEXEC);
    if (fd != TM_EAGAIN)
        return fd;
    dfd = open_parent(l, path, &name);
    if (dfd < 0)
        return dfd;
    fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    close(dfd);
    return fd < 0 ? tm__from_errno(errno) : fd;
}

static int local_get_xattrs(struct tm__adapter *a, const char *path, int type,
                            struct tm__buf *out, struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    struct stat st;
    int fd, rc;
    if (type != TM_T_FILE && type != TM_T_FOLDER)
        return tm__aerr_set(e, TM_EINVAL, "only files and folders have "
                            "attributes copied");
    fd = open_node(l, path, type);
    if (fd < 0)
        return fd;
    if (fstat(fd, &st) != 0)
        rc = tm__from_errno(errno);
    else if (type == TM_T_FILE && !S_ISREG(st.st_mode))
        rc = tm__aerr_set(e, TM_ECHANGED, "not a regular file any more");
    else
        rc = read_xattrs(l, fd, out);
    close(fd);
    return rc;
}

/* 1 when blob (len bytes) holds an attribute called name. */
static int blob_has(const void *blob, size_t len, const char *name)
{
    size_t off = 0;
    const char *n;
    const void *val;
    uint32_t vlen;
    while (tm__xattr_next(blob, len, &off, &n, &val, &vlen) == 1)
        if (strcmp(n, name) == 0)
            return 1;
    return 0;
}

/* Removes from the open node fd each compared attribute blob does not hold
 * (a default ACL inherited from the folder above, one set on the
 * destination); a refusal is appended to refused. */
static int prune_xattrs(const struct local *l, int fd, const void *blob,
                        size_t len, struct tm__buf *refused)
{
    struct tm__buf have = TM__BUF_INIT;
    size_t off = 0;
    const char *name;
    const void *val;
    uint32_t vlen;
    int rc = read_xattrs(l, fd, &have), k;
    while (!rc && (k = tm__xattr_next(have.buf, have.len, &off, &name, &val,
                                      &vlen)) == 1) {
        if (!xattr_compared(l, name) || blob_has(blob, len, name) ||
            fremovexattr(fd, name) == 0 || errno == ENODATA)
            continue;
        if (refused && tm__buf_addf(refused, "%s: removing it: %s; ", name,
                                    tm_strerror(tm__from_errno(errno))))
            rc = TM_ENOMEM;
    }
    tm__buf_release(&have);
    return rc;
}

static int local_set_xattrs(struct tm__adapter *a, const char *path, int type,
                            const void *blob, size_t len, struct tm__buf *refused,
                            struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    struct stat st;
    int fd, rc;
    if (type != TM_T_FILE && type != TM_T_FOLDER)
        return tm__aerr_set(e, TM_EINVAL, "only files and folders have "
                            "attributes copied");
    fd = open_node(l, path, type);
    if (fd < 0)
        return fd;
    if (fstat(fd, &st) != 0)
        rc = tm__from_errno(errno);
    else if (type == TM_T_FILE && !S_ISREG(st.st_mode))
        rc = tm__aerr_set(e, TM_ECHANGED, "not a regular file any more");
    else if ((rc = write_xattrs(fd, blob, len, refused)) == 0)
        rc = prune_xattrs(l, fd, blob, len, refused);
    close(fd);
    return rc;
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

/* 0 when the mtime now on the node (st) is the one asked for (t), give or
 * take what the file system's precision drops (FAT keeps 2 s); else
 * TM_ETIMERANGE: the file system clamped it (a time its format cannot
 * hold), and the copy must not silently carry another time. */
static int mtime_kept(const struct stat *st, const struct timespec *t,
                      struct tm__aerr *e)
{
    int64_t d = (int64_t)st->st_mtim.tv_sec - (int64_t)t->tv_sec;
    if (d > 2 || d < -2)
        return tm__aerr_set(e, TM_ETIMERANGE, "the destination cannot hold the "
                            "mtime %lld.%09ld s since the epoch (it keeps "
                            "%lld.%09ld)", (long long)t->tv_sec, t->tv_nsec,
                            (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    return 0;
}

/* 1 when every file system that can be written holds the time t (1980
 * .. 2038: FAT, HFS+, ext4 with small inodes, ...): reading it back is then
 * not needed (one system call less per file). */
static int time_held_everywhere(const struct timespec *t)
{
    return t->tv_sec >= 315532800 && t->tv_sec < 2147483647;
}

/* rename, or with TM_NOREPLACE renameat2(RENAME_NOREPLACE): what is at the
 * real name is replaced only when the caller says discovery saw the
 * source's twin there. */
static int place(int dfd, const char *tmp, const char *name, unsigned flags)
{
    if (flags & TM_NOREPLACE)
        return renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE);
    return renameat(dfd, tmp, dfd, name);
}

static int local_commit(struct tm__wfile *wf, int64_t mtime, uint32_t mode,
                        unsigned flags, struct tm__aerr *e)
{
    struct local_wfile *f = (struct local_wfile *)wf;
    const struct local *l = (const struct local *)wf->a;
    struct timespec t[2];
    struct stat sb;
    int rc = 0;

    if (tm__mtime_out_of_range(mtime))
        rc = TM_ETIMERANGE;
    ns_to_times(t, mtime);
    /* the owner first: chown clears the set-user-ID and set-group-ID bits */
    if (!rc && f->base.set_owner &&
        fchown(f->fd, (uid_t)f->base.uid, (gid_t)f->base.gid) != 0)
        rc = tm__from_errno(errno);
    /* the attributes (an ACL too) before the mode: chmod then sets the
     * ACL's mask from the mode, as on the source */
    if (!rc && f->xattrs)
        rc = write_xattrs(f->fd, f->xattrs, f->xattrs_len, f->refused);
    if (!rc && f->xattrs)
        rc = prune_xattrs(l, f->fd, f->xattrs, f->xattrs_len, f->refused);
    if (!rc && (fchmod(f->fd, mode & 07777) != 0 || futimens(f->fd, t) != 0))
        rc = tm__from_errno(errno);
    else if (!rc && !time_held_everywhere(&t[1]) && fstat(f->fd, &sb) != 0)
        rc = tm__from_errno(errno);
    else if (!rc && !time_held_everywhere(&t[1]))
        rc = mtime_kept(&sb, &t[1], e);
    if (!rc)
        kick(f, 1);
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

static int local_mkdir(struct tm__adapter *a, const char *path,
                       struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    const char *name;
    struct stat sb;
    int dfd, rc = 0;

    (void)e;
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
                          struct tm__buf *out, struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    const char *name;
    char buf[PATH_MAX + 1];
    ssize_t n;
    int dfd = open_parent(l, path, &name);
    (void)e;
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

/* What make_tmp makes at a temporary name: a symlink, a hard link or a
 * special file; 0, or -1 with errno (EEXIST: the name is taken). */
struct tmp_maker {
    int (*make)(const struct tmp_maker *mk, int dfd, const char *tmp);
    const char *target; /* symlink: its target */
    int tdfd;           /* link: the target's folder */
    const char *tname;  /* link: the target's name in it */
    mode_t mode;        /* mknod: kind and permission bits */
    dev_t rdev;         /* mknod: the device */
};

static int make_symlink(const struct tmp_maker *mk, int dfd, const char *tmp)
{
    return symlinkat(mk->target, dfd, tmp);
}

static int make_link(const struct tmp_maker *mk, int dfd, const char *tmp)
{
    return linkat(mk->tdfd, mk->tname, dfd, tmp, 0);
}

static int make_node(const struct tmp_maker *mk, int dfd, const char *tmp)
{
    return mknodat(dfd, tmp, mk->mode, mk->rdev);
}

/* Makes a node under the first free temporary name beside path (in dfd,
 * its folder) into tmp: symlinkat, linkat and mknodat never follow or
 * replace anything, so a taken name moves to the next. what names the
 * node in the message when every name is taken. */
static int make_tmp(struct local *l, int dfd, const char *path,
                    const struct tmp_maker *mk, const char *what,
                    char tmp[TM_TMP_NAME_MAX], struct tm__aerr *e)
{
    int attempt, rc = 0;
    for (attempt = 0; attempt < TM_TMP_TRIES; attempt++) {
        rc = tm__tmp_name(l->key, path, attempt, tmp, TM_TMP_NAME_MAX);
        if (rc)
            return rc;
        if (mk->make(mk, dfd, tmp) == 0)
            return 0;
        if (errno != EEXIST)
            return tm__from_errno(errno);
    }
    return tm__aerr_set(e, TM_EEXIST, "cannot create a temporary %s beside %s: the "
                        "%d names it may take are taken", what, path, TM_TMP_TRIES);
}

static int local_symlink(struct tm__adapter *a, const char *path,
                         const char *target, int64_t mtime, unsigned flags,
                         struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    struct timespec t[2];
    struct stat sb;
    const char *name;
    char tmp[TM_TMP_NAME_MAX];
    struct tmp_maker mk = { 0 };
    int dfd, rc = 0;

    if (tm__mtime_out_of_range(mtime))
        return TM_ETIMERANGE;
    dfd = open_parent(l, path, &name);
    if (dfd < 0)
        return dfd;
    mk.make = make_symlink;
    mk.target = target;
    rc = make_tmp(l, dfd, path, &mk, "symlink", tmp, e);
    if (rc) {
        close(dfd);
        return rc;
    }
    ns_to_times(t, mtime);
    if (utimensat(dfd, tmp, t, AT_SYMLINK_NOFOLLOW) != 0)
        rc = tm__from_errno(errno);
    else if (!time_held_everywhere(&t[1])) {
        if (fstatat(dfd, tmp, &sb, AT_SYMLINK_NOFOLLOW) != 0)
            rc = tm__from_errno(errno);
        else if (!S_ISLNK(sb.st_mode))
            rc = TM_EINVAL; /* not ours any more */
        else
            rc = mtime_kept(&sb, &t[1], e);
    }
    if (!rc && place(dfd, tmp, name, flags) != 0)
        rc = tm__from_errno(errno);
    if (rc)
        unlinkat(dfd, tmp, 0);
    close(dfd);
    return rc;
}

static int fd_chmod(struct local *l, int fd, mode_t mode);
static int fd_utimes(int fd, const struct timespec t[2]);

/* Another link to the file at target: linkat from its parent's descriptor
 * to a temporary name in path's parent (linkat never follows a symlink
 * without AT_SYMLINK_FOLLOW and never replaces: a taken name moves to the
 * next), checked to be the very inode that target was a file of, then
 * renamed to its real name. Both parents are opened below the root
 * without following anything. */
static int local_link(struct tm__adapter *a, const char *target, const char *path,
                      unsigned flags, struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    const char *tname, *name;
    char tmp[TM_TMP_NAME_MAX];
    struct stat ts, ns;
    struct tmp_maker mk = { 0 };
    int tdfd, dfd = -1, rc = 0;

    tdfd = open_parent(l, target, &tname);
    if (tdfd < 0)
        return tdfd;
    if (fstatat(tdfd, tname, &ts, AT_SYMLINK_NOFOLLOW) != 0) {
        rc = tm__from_errno(errno);
        goto out;
    }
    if (!S_ISREG(ts.st_mode)) {
        rc = tm__aerr_set(e, TM_EINVAL, "%s is not a file on the destination", target);
        goto out;
    }
    dfd = open_parent(l, path, &name);
    if (dfd < 0) {
        rc = dfd;
        dfd = -1;
        goto out;
    }
    mk.make = make_link;
    mk.tdfd = tdfd;
    mk.tname = tname;
    rc = make_tmp(l, dfd, path, &mk, "link", tmp, e);
    if (rc)
        goto out;
    /* what was linked is what was checked (not a node swapped in since) */
    if (fstatat(dfd, tmp, &ns, AT_SYMLINK_NOFOLLOW) != 0)
        rc = tm__from_errno(errno);
    else if (!S_ISREG(ns.st_mode) || ns.st_dev != ts.st_dev || ns.st_ino != ts.st_ino)
        rc = tm__aerr_set(e, TM_ECHANGED, "%s changed on the destination while it "
                          "was linked", target);
    if (!rc && place(dfd, tmp, name, flags) != 0)
        rc = tm__from_errno(errno);
    if (rc)
        unlinkat(dfd, tmp, 0);
out:
    if (dfd >= 0)
        close(dfd);
    close(tdfd);
    return rc;
}

/* A special file: made under a temporary name with mknodat in the parent
 * (which never follows or replaces anything: a taken name moves to the
 * next), then opened O_PATH | O_NOFOLLOW and checked to be the node just
 * made (its kind), its mode and mtime set through that descriptor, and
 * renamed to its real name. */
static int local_mknod(struct tm__adapter *a, const char *path, uint32_t mode,
                       uint64_t rdev, int64_t mtime, unsigned flags,
                       struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    mode_t kind = (mode_t)(mode & S_IFMT);
    struct timespec t[2];
    struct stat sb;
    const char *name;
    char tmp[TM_TMP_NAME_MAX];
    struct tmp_maker mk = { 0 };
    int dfd, fd = -1, rc = 0;

    if (kind != S_IFIFO && kind != S_IFCHR && kind != S_IFBLK && kind != S_IFSOCK)
        return tm__aerr_set(e, TM_EINVAL, "not a FIFO, device or socket");
    if (tm__mtime_out_of_range(mtime))
        return TM_ETIMERANGE;
    dfd = open_parent(l, path, &name);
    if (dfd < 0)
        return dfd;
    mk.make = make_node;
    mk.mode = kind | 0600; /* 0600 until it is complete, as a file's temporary */
    mk.rdev = kind == S_IFCHR || kind == S_IFBLK ? (dev_t)rdev : 0;
    rc = make_tmp(l, dfd, path, &mk, "node", tmp, e);
    if (rc) {
        close(dfd);
        return rc;
    }
    fd = openat(dfd, tmp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        rc = tm__from_errno(errno);
    else if (fstat(fd, &sb) != 0)
        rc = tm__from_errno(errno);
    else if ((sb.st_mode & S_IFMT) != kind)
        rc = tm__aerr_set(e, TM_EINVAL, "the temporary of %s is not ours any more",
                          path);
    if (!rc)
        rc = fd_chmod(l, fd, (mode_t)(mode & 07777));
    ns_to_times(t, mtime);
    if (!rc && fd_utimes(fd, t) != 0)
        rc = tm__from_errno(errno);
    else if (!rc && !time_held_everywhere(&t[1])) {
        if (fstat(fd, &sb) != 0)
            rc = tm__from_errno(errno);
        else
            rc = mtime_kept(&sb, &t[1], e);
    }
    if (fd >= 0)
        close(fd);
    if (!rc && place(dfd, tmp, name, flags) != 0)
        rc = tm__from_errno(errno);
    if (rc)
        unlinkat(dfd, tmp, 0);
    close(dfd);
    return rc;
}

/* chmod of the folder behind the O_PATH descriptor fd: fchmodat2 on the
 * descriptor itself, or through /proc/self/fd where the kernel lacks it
 * (a magic link to the very inode, not a path looked up again). */
static int fd_chmod(struct local *l, int fd, mode_t mode)
{
    char proc[64];
    if (!atomic_load_explicit(&l->no_fchmodat2, memory_order_relaxed)) {
        if (syscall(SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH) == 0)
            return 0;
        if (errno != ENOSYS && errno != EINVAL)
            return tm__from_errno(errno);
        atomic_store(&l->no_fchmodat2, 1);
    }
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return chmod(proc, mode) == 0 ? 0 : tm__from_errno(errno);
}

/* utimensat on the folder behind the O_PATH descriptor fd (AT_EMPTY_PATH,
 * or the /proc/self/fd magic link where that is refused). 0 or -1. */
static int fd_utimes(int fd, const struct timespec t[2])
{
    char proc[64];
    if (utimensat(fd, "", t, AT_EMPTY_PATH) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOENT)
        return -1;
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return utimensat(AT_FDCWD, proc, t, 0);
}

/* The folder is opened (O_PATH: a folder of mode 0 too) without following
 * anything, checked to be a folder, and changed through that descriptor:
 * a symlink put in its place is never followed. What is already as asked
 * is left alone (an immutable folder that already has them is fine). */
static int local_set_attr(struct tm__adapter *a, const char *path, int64_t mtime,
                          uint32_t mode, struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    struct timespec t[2];
    const char *name;
    struct stat sb;
    int dfd, fd, rc = 0;

    if (mtime != TM_MTIME_KEEP && tm__mtime_out_of_range(mtime))
        return TM_ETIMERANGE;
    if (path[1] == '\0') {
        dfd = -1;
        fd = open_walk(l, "/"); /* the root: O_RDONLY is enough here */
        if (fd < 0)
            return fd;
    } else {
        dfd = open_parent(l, path, &name);
        if (dfd < 0)
            return dfd;
        fd = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            rc = errno == ELOOP ? TM_ENOTDIR : tm__from_errno(errno);
            close(dfd);
            return rc;
        }
    }
    ns_to_times(t, mtime);
    if (fstat(fd, &sb) != 0)
        rc = tm__from_errno(errno);
    else if (!S_ISDIR(sb.st_mode))
        rc = TM_ENOTDIR;
    if (!rc && (sb.st_mode & 07777) != (mode & 07777))
        rc = fd_chmod(l, fd, (mode_t)(mode & 07777));
    if (!rc && mtime != TM_MTIME_KEEP &&
        (sb.st_mtim.tv_sec != t[1].tv_sec || sb.st_mtim.tv_nsec != t[1].tv_nsec)) {
        if (fd_utimes(fd, t) != 0)
            rc = tm__from_errno(errno);
        else if (time_held_everywhere(&t[1]))
            rc = 0;
        else if (fstat(fd, &sb) != 0)
            rc = tm__from_errno(errno);
        else
            rc = mtime_kept(&sb, &t[1], e);
    }
    close(fd);
    if (dfd >= 0)
        close(dfd);
    return rc;
}

/* The node is opened with O_PATH | O_NOFOLLOW (a symlink is opened as
 * itself, a file of mode 0 too), checked through that descriptor to be
 * the node the caller compared (type, size, mtime to the ns, one link: a
 * hard link may be shared with a file outside the tree, which must not
 * change), and changed through it (fchownat and fchmodat2 with
 * AT_EMPTY_PATH): what is swapped in at the name afterwards is never
 * touched. The mode is set after the owner, which may clear set-ID bits. */
static int local_set_leaf_attr(struct tm__adapter *a, const char *path,
                               const struct tm__leaf_attr *w, struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    struct tm__entry now;
    const char *name;
    struct stat sb;
    int dfd, fd, rc = 0;

    dfd = open_parent(l, path, &name);
    if (dfd < 0)
        return dfd;
    fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    rc = fd < 0 ? tm__from_errno(errno) : 0;
    close(dfd);
    if (rc)
        return rc;
    if (fstat(fd, &sb) != 0)
        rc = tm__from_errno(errno);
    else if (entry_from_stat(&now, &sb) != 0 || now.type != w->type ||
             now.size != w->size || now.mtime != w->mtime)
        rc = tm__aerr_set(e, TM_ECHANGED, "%s changed on the destination since it "
                          "was compared", path);
    else if (sb.st_nlink != 1)
        rc = tm__aerr_set(e, TM_ECHANGED, "%s has %lu links on the destination: "
                          "its attributes are not changed in place", path,
                          (unsigned long)sb.st_nlink);
    if (!rc && w->set_owner &&
        ((int64_t)sb.st_uid != w->uid || (int64_t)sb.st_gid != w->gid) &&
        fchownat(fd, "", (uid_t)w->uid, (gid_t)w->gid, AT_EMPTY_PATH) != 0)
        rc = tm__from_errno(errno);
    if (!rc && w->type == TM_T_FILE &&
        (w->set_owner || (sb.st_mode & 07777) != (w->mode & 07777)))
        rc = fd_chmod(l, fd, (mode_t)(w->mode & 07777));
    close(fd);
    return rc;
}

static int local_chown(struct tm__adapter *a, const char *path, int64_t uid,
                       int64_t gid, struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    const char *name;
    int dfd = open_parent(l, path, &name), rc = 0;
    (void)e;
    if (dfd < 0)
        return dfd;
    if (fchownat(dfd, name, (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW) != 0)
        rc = tm__from_errno(errno);
    close(dfd);
    return rc;
}

static int local_sync(struct tm__adapter *a, struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    int fd = open_walk(l, "/"), rc = 0;
    (void)e;
    if (fd < 0)
        return fd;
    if (syncfs(fd) != 0)
        rc = tm__from_errno(errno);
    close(fd);
    return rc;
}

/* Opens the folder at the absolute path root with flags (O_PATH or
 * O_RDONLY) without following a symlink on any component: openat2
 * (RESOLVE_NO_SYMLINKS) where the kernel has it, else one component at a
 * time with O_NOFOLLOW. A symlink on the way gives ELOOP or ENOTDIR.
 * Returns the descriptor or -1 with errno set. */
static int open_root_path(const char *root, int flags)
{
    struct open_how how;
    const char *p = root;
    char name[NAME_MAX + 1];
    long fd;
    int e;

    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    fd = syscall(SYS_openat2, AT_FDCWD, root, &how, sizeof how);
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM && errno != ENAMETOOLONG &&
                    errno != EAGAIN))
        return (int)fd;
    if (root[0] != '/') {
        errno = EINVAL;
        return -1;
    }
    fd = open("/", flags | O_DIRECTORY | O_CLOEXEC);
    while (fd >= 0 && *p) {
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
            close((int)fd);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        next = openat((int)fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        e = errno;
        close((int)fd);
        errno = e;
        fd = next;
        p += n;
    }
    if (fd >= 0 && !(flags & O_PATH)) {
        /* the last component was opened O_PATH: now as asked */
        int full = openat((int)fd, ".", flags | O_DIRECTORY | O_CLOEXEC);
        e = errno;
        close((int)fd);
        errno = e;
        fd = full;
    }
    return (int)fd;
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
    /* one stat: a symlink on the way that leads to this very folder is
     * harmless here (everything goes through root_fd), a path that leads
     * to another folder or to none is a root gone */
    if (stat(l->root, &st) != 0)
        return errno == ENOENT || errno == ENOTDIR ? TM_ENOENT : 0;
    if (!S_ISDIR(st.st_mode) || st.st_dev != l->root_dev || st.st_ino != l->root_ino)
        return TM_ENOENT; /* moved away, replaced */
    return 0;
}

/* Pseudo file systems: what they show is made up by the kernel as it is
 * read (sizes of 0 with contents, /proc/self that is whoever reads it),
 * nothing a copy should take as a tree of files. */
static const struct {
    unsigned long magic; /* statfs f_type */
    const char *name;    /* for messages */
} pseudo_fs[] = {
    { PROC_SUPER_MAGIC, "proc" },     { SYSFS_MAGIC, "sysfs" },
    { DEBUGFS_MAGIC, "debugfs" },     { TRACEFS_MAGIC, "tracefs" },
    { CGROUP_SUPER_MAGIC, "cgroup" }, { CGROUP2_SUPER_MAGIC, "cgroup2" },
    { SECURITYFS_MAGIC, "securityfs" }, { BPF_FS_MAGIC, "bpf" },
    { PSTOREFS_MAGIC, "pstore" },     { 0x62656570UL, "configfs" },
    { DEVPTS_SUPER_MAGIC, "devpts" }, { 0x19800202UL, "mqueue" },
    { SELINUX_MAGIC, "selinuxfs" },   { SMACK_MAGIC, "smackfs" },
    { EFIVARFS_MAGIC, "efivarfs" },   { 0x65735543UL, "fusectl" },
    { NSFS_MAGIC, "nsfs" },           { BINFMTFS_MAGIC, "binfmt_misc" },
    { 0x7655821UL, "resctrl" },       { 0x50495045UL, "pipefs" },
    { 0x534f434bUL, "sockfs" },
};

static int local_root_info(struct tm__adapter *a, struct tm__root_info *out)
{
    struct local *l = (struct local *)a;
    struct statfs sf;
    struct statx sx;
    struct stat st;
    unsigned fsid[2];
    size_t i;
    int n;

    memset(out, 0, sizeof *out);
    if (fstat(l->root_fd, &st) != 0 || fstatfs(l->root_fd, &sf) != 0)
        return tm__from_errno(errno);
    out->dev = (uint64_t)st.st_dev;
    out->ino = (uint64_t)st.st_ino;
    memcpy(fsid, &sf.f_fsid, sizeof fsid);
    /* the file system's id (from its UUID on most) outlives a remount,
     * where st_dev may not; where there is none, the device. An inode
     * number is reused once freed (a folder removed and made again often
     * gets it back): the birth time, where the file system keeps one,
     * tells them apart */
    if (fsid[0] || fsid[1])
        n = snprintf(out->id, sizeof out->id, "fsid:%08x%08x:%llu", fsid[0],
                     fsid[1], (unsigned long long)st.st_ino);
    else
        n = snprintf(out->id, sizeof out->id, "dev:%llu:%llu",
                     (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    if (statx(l->root_fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BTIME,
              &sx) == 0 && (sx.stx_mask & STATX_BTIME) && n > 0 &&
        (size_t)n < sizeof out->id)
        snprintf(out->id + n, sizeof out->id - (size_t)n, ":%lld.%09u",
                 (long long)sx.stx_btime.tv_sec, sx.stx_btime.tv_nsec);
    snprintf(out->fstype, sizeof out->fstype, "0x%lx", (unsigned long)sf.f_type);
    for (i = 0; i < sizeof pseudo_fs / sizeof *pseudo_fs; i++)
        if ((unsigned long)sf.f_type == pseudo_fs[i].magic) {
            out->pseudo = 1;
            snprintf(out->fstype, sizeof out->fstype, "%s", pseudo_fs[i].name);
        }
    return 0;
}

static int local_forbid(struct tm__adapter *a, uint64_t dev, uint64_t ino,
                        const char *what)
{
    struct local *l = (struct local *)a;
    struct forbidden *f;
    if (l->n_forbid == MAX_FORBID)
        return TM_ENOMEM;
    f = &l->forbid[l->n_forbid++];
    f->dev = dev;
    f->ino = ino;
    snprintf(f->what, sizeof f->what, "%s", what);
    return 0;
}

static void local_set_tmp_key(struct tm__adapter *a, const unsigned char *key)
{
    memcpy(((struct local *)a)->key, key, TM_KEY_LEN);
}

/* After a crash: the temporaries of the node at path under the run key
 * key, each one only when it is of the node's type (a file, or a symlink)
 * and unlinked by name in its parent, so nothing is ever followed. */
static int local_remove_tmp(struct tm__adapter *a, const char *path, int type,
                            const unsigned char *key, struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    char tmp[TM_TMP_NAME_MAX];
    const char *name;
    struct stat st;
    int dfd, attempt, n = 0;

    (void)e;
    dfd = open_parent(l, path, &name);
    if (dfd < 0)
        return dfd == TM_ENOENT || dfd == TM_ENOTDIR ? 0 : dfd;
    for (attempt = 0; attempt < TM_TMP_TRIES; attempt++) {
        if (tm__tmp_name(key, path, attempt, tmp, sizeof tmp) != 0 ||
            fstatat(dfd, tmp, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (!(type == TM_T_FILE      ? S_ISREG(st.st_mode)
              : type == TM_T_SYMLINK ? S_ISLNK(st.st_mode)
                                     : !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode) &&
                                           !S_ISDIR(st.st_mode)))
            continue;
        if (unlinkat(dfd, tmp, 0) == 0)
            n++;
    }
    close(dfd);
    return n;
}

/* Opens (making what is missing, mode 0700) the folder dir + the folder
 * of path, one component at a time, never following a symlink. */
static int open_backup_dir(struct local *l, const char *dir, const char *path)
{
    struct tm__buf full = TM__BUF_INIT;
    const char *slash = strrchr(path, '/'), *p;
    char name[NAME_MAX + 1];
    int fd, rc = 0;

    if (tm__buf_adds(&full, dir) ||
        tm__buf_add(&full, path, (size_t)(slash - path))) {
        tm__buf_release(&full);
        return TM_ENOMEM;
    }
    fd = openat(l->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        rc = tm__from_errno(errno);
    for (p = full.buf; !rc && *p;) {
        size_t n;
        int next;
        while (*p == '/')
            p++;
        if (!*p)
            break;
        n = strchrnul(p, '/') - p;
        if (n > NAME_MAX) {
            rc = TM_ENAMETOOLONG;
            break;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        p += n;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
            rc = TM_EINVAL;
            break;
        }
        if (mkdirat(fd, name, 0700) != 0 && errno != EEXIST) {
            rc = tm__from_errno(errno);
            break;
        }
        next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            rc = tm__from_errno(errno);
            break;
        }
        close(fd);
        fd = next;
    }
    tm__buf_release(&full);
    if (rc) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    return fd;
}

/* Moves name (in the folder dfd; path is its root-relative path) to
 * dir + path. */
static int move_to_backup(struct local *l, int dfd, const char *name,
                          const char *path, const char *dir)
{
    int bfd = open_backup_dir(l, dir, path), rc = 0;
    if (bfd < 0)
        return bfd;
    if (renameat(dfd, name, bfd, name) != 0)
        rc = tm__from_errno(errno);
    close(bfd);
    return rc;
}

static int local_backup(struct tm__adapter *a, const char *path, const char *dir,
                        struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    const char *name;
    struct stat st;
    int dfd, rc;

    dfd = open_parent(l, path, &name);
    if (dfd < 0)
        return dfd;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        rc = tm__from_errno(errno);
    else if (S_ISDIR(st.st_mode))
        rc = tm__aerr_set(e, TM_EISDIR, "%s is a folder: not moved to the "
                          "backup folder", path);
    else
        rc = move_to_backup(l, dfd, name, path, dir);
    close(dfd);
    return rc;
}

/* The mirror: lstat of the name in its parent (opened without following
 * anything), compared with what discovery recorded, then unlinkat in that
 * same parent (or a rename into the backup folder). */
static int local_remove(struct tm__adapter *a, const char *path,
                        const struct tm__entry *want, const char *backup,
                        struct tm__aerr *e)
{
    struct local *l = (struct local *)a;
    struct tm__entry now;
    const char *name;
    struct stat st;
    int dfd, rc = 0;

    dfd = open_parent(l, path, &name);
    if (dfd == TM_ENOTDIR || dfd == TM_ELOOP)
        return tm__aerr_set(e, TM_ECHANGED, "a folder on the path of %s is no "
                            "longer a folder", path);
    if (dfd < 0)
        return dfd;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        rc = tm__from_errno(errno);
        goto out_close;
    }
    entry_from_stat(&now, &st);
    if (now.type != want->type) {
        rc = tm__aerr_set(e, TM_ECHANGED, "%s is now a %s, not the %s discovery "
                          "recorded", path, tm__type_names[now.type],
                          tm__type_names[want->type]);
        goto out_close;
    }
    if ((now.type == TM_T_FILE || now.type == TM_T_SYMLINK) &&
        (now.size != want->size || now.mtime != want->mtime)) {
        rc = tm__aerr_set(e, TM_ECHANGED, "%s changed since discovery (size "
                          "%lld, mtime %lld; recorded %lld, %lld)", path,
                          (long long)now.size, (long long)now.mtime,
                          (long long)want->size, (long long)want->mtime);
        goto out_close;
    }
    if (now.type == TM_T_OTHER && (want->mode & S_IFMT) &&
        (now.mode & S_IFMT) != (want->mode & S_IFMT)) {
        rc = tm__aerr_set(e, TM_ECHANGED, "%s is another kind of special file "
                          "than discovery recorded", path);
        goto out_close;
    }
    if (backup && now.type != TM_T_FOLDER) {
        rc = move_to_backup(l, dfd, name, path, backup);
        goto out_close;
    }
    if (unlinkat(dfd, name, now.type == TM_T_FOLDER ? AT_REMOVEDIR : 0) != 0) {
        int err = errno;
        if (err == ENOTEMPTY || err == EEXIST)
            rc = tm__aerr_set(e, TM_ECHANGED, "%s is not empty: it holds what "
                              "the plan does not (kept)", path);
        else
            rc = tm__from_errno(err);
    }
out_close:
    close(dfd);
    return rc;
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
    /* no symlink is followed on the way to the root either: one put in
     * the place of a root (or of a folder above it) since discovery would
     * otherwise lead the copy elsewhere */
    fd = open_root_path(root, O_PATH);
    if (fd < 0) {
        int e = errno;
        struct stat lst;
        if ((e == ELOOP || e == ENOTDIR) && lstat(root, &lst) == 0 &&
            S_ISLNK(lst.st_mode))
            snprintf(err, errlen, "%s: a symlink, not a folder (treemig "
                     "follows no symlink to a root)", root);
        else if (e == ELOOP || e == ENOTDIR)
            snprintf(err, errlen, "%s: not a folder, or a symlink is on its path "
                     "(treemig follows no symlink to a root)", root);
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
    if (!l || !(l->root = strdup(root)) || tm__random(l->key, sizeof l->key)) {
        if (l)
            free(l->root);
        free(l);
        close(fd);
        return TM_ENOMEM;
    }
    l->root_dev = st.st_dev;
    l->root_ino = st.st_ino;
    {
        struct statx sx;
        if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID,
                  &sx) == 0 && (sx.stx_mask & STATX_MNT_ID)) {
            l->root_mnt = sx.stx_mnt_id;
            l->have_mnt = 1;
        }
    }
    l->base.version = 2;
    l->base.name = "local";
    l->base.caps = TM_CAP_MODES | TM_CAP_SYMLINKS | TM_CAP_OWNER | TM_CAP_SPECIALS |
                   TM_CAP_MOUNTS | TM_CAP_HARDLINKS | TM_CAP_XATTRS | TM_CAP_FAST_LIST;
    l->base.mtime_precision = 1;
    l->security = geteuid() == 0;
    l->base.list_open = local_list_open;
    l->base.list_next = local_list_next;
    l->base.list_pos = local_list_pos;
    l->base.list_close = local_list_close;
    l->base.stat = local_stat;
    l->base.close = local_close;
    l->base.open_read = local_open_read;
    l->base.read = local_read;
    l->base.read_fd = local_read_fd;
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
    l->base.mknod = local_mknod;
    l->base.link = local_link;
    l->base.get_xattrs = local_get_xattrs;
    l->base.set_xattrs = local_set_xattrs;
    l->base.set_attr = local_set_attr;
    l->base.sync = local_sync;
    l->base.chown = local_chown;
    l->base.set_leaf_attr = local_set_leaf_attr;
    l->base.check_root = local_check_root;
    l->base.root_info = local_root_info;
    l->base.forbid = local_forbid;
    l->base.set_tmp_key = local_set_tmp_key;
    l->base.remove_tmp = local_remove_tmp;
    l->base.remove = local_remove;
    l->base.backup = local_backup;
    l->root_fd = fd;
    *out = &l->base;
    return 0;
}

/* ---- the kind ---- */

/* A local root is recorded absolute and without symlinks (the copy then
 * opens it without following any: local_open). */
static int local_resolve(const char *spec, const struct tm__sopts *o, char **out,
                         char *err, size_t errlen)
{
    struct stat st;
    (void)o;
    *out = realpath(spec, NULL);
    if (!*out) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", spec,
                 e == ENOENT ? "does not exist" : tm_strerror(tm__from_errno(e)));
        return e == ENOMEM ? TM_ENOMEM : TM_EROOT;
    }
    if (stat(*out, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a folder", spec);
        free(*out);
        *out = NULL;
        return TM_EROOT;
    }
    return 0;
}

static int local_kind_open(const char *spec, const struct tm__sopts *o,
                           struct tm__adapter **out, char *err, size_t errlen)
{
    (void)o;
    return tm__local_open(spec, out, err, errlen);
}

const struct tm__kind tm__local_kind = {
    "local", NULL, 4, NULL, local_resolve, local_kind_open,
    NULL, /* overlaps are found by identity once open (migration.c) */
};
