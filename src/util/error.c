/* error.c - texts and names of the error codes, generated from
 * TM_ERRNO_MAP. Pure functions, any thread. */
#include "treemig.h"

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
