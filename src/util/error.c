/* error.c - texts and names of the error codes, generated from
 * TM_ERRNO_MAP, and the mapping of errno. Any thread. */
#include "treemig.h"
#include "util/util.h"

#include <errno.h>
#include <unistd.h>

const char *tm_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define TM__ERR_MSG(name, val, msg) \
    case val:                       \
        return msg;
        TM_ERRNO_MAP(TM__ERR_MSG)
#undef TM__ERR_MSG
    default:
        return "unknown error";
    }
}

const char *tm_err_name(int err)
{
    switch (err) {
    case 0:
        return "OK";
#define TM__ERR_NAME(name, val, msg) \
    case val:                        \
        return #name;
        TM_ERRNO_MAP(TM__ERR_NAME)
#undef TM__ERR_NAME
    default:
        return "UNKNOWN";
    }
}

/* Maps an errno value to the engine's code: OS errors are negated. */
int tm__from_errno(int e)
{
    return e > 0 ? -e : TM_EIO;
}

int tm__write_full(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return tm__from_errno(errno);
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}
