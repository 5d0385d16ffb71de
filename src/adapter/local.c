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
#include <unistd.h>

struct local {
    struct tm__adapter base; /* must be first */
    int root_fd;             /* O_PATH descriptor of the root folder */
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
    return 0;
}

static int local_list(struct tm__adapter *a, const char *path, tm__list_cb cb,
                      void *ctx)
{
    struct local *l = (struct local *)a;
    enum { BUFSZ = 64 * 1024 };
    char *buf;
    int fd, rc = 0;

    fd = open_dir(l, path);
    if (fd < 0)
        return fd;
    buf = malloc(BUFSZ);
    if (!buf) {
        close(fd);
        return TM_ENOMEM;
    }
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, BUFSZ);
        long off;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = tm__from_errno(errno);
            break;
        }
        if (n == 0)
            break;
        for (off = 0; off < n && !rc;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
            struct tm__entry e;
            struct stat st;
            off += d->d_reclen;
            if (d->d_name[0] == '.' &&
                (d->d_name[1] == '\0' ||
                 (d->d_name[1] == '.' && d->d_name[2] == '\0')))
                continue;
            if (fstatat(fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno == ENOENT)
                    continue; /* vanished since getdents: not a child now */
                rc = tm__from_errno(errno);
                break;
            }
            e.name = d->d_name;
            e.name_len = strlen(d->d_name);
            entry_from_stat(&e, &st);
            rc = cb(ctx, &e);
        }
        if (rc)
            break;
    }
    free(buf);
    close(fd);
    return rc;
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

static void local_close(struct tm__adapter *a)
{
    struct local *l = (struct local *)a;
    if (l->root_fd >= 0)
        close(l->root_fd);
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
    if (!l) {
        close(fd);
        return TM_ENOMEM;
    }
    l->base.version = 1;
    l->base.name = "local";
    l->base.caps = TM_CAP_MODES | TM_CAP_SYMLINKS;
    l->base.mtime_precision = 1;
    l->base.list = local_list;
    l->base.stat = local_stat;
    l->base.close = local_close;
    l->root_fd = fd;
    *out = &l->base;
    return 0;
}
