/* compare.c - filters and the comparison of two nodes. Pure functions,
 * any thread. */
#include "engine/engine.h"

#include "store/store.h"

#include <fnmatch.h>
#include <string.h>

int tm__filter_match(const char *const *globs, size_t n, const char *path,
                     const char *name)
{
    size_t i;
    for (i = 0; i < n; i++) {
        const char *g = globs[i];
        if (strchr(g, '/')) {
            if (fnmatch(g, path, FNM_PATHNAME) == 0)
                return 1;
        } else if (fnmatch(g, name, 0) == 0) {
            return 1;
        }
    }
    return 0;
}

/* floor(t / prec), also for times before the epoch. */
static int64_t floor_div(int64_t t, int64_t prec)
{
    int64_t q = t / prec;
    if ((t % prec != 0) && (t < 0))
        q--;
    return q;
}

int tm__compare_leaf(int64_t src_size, int64_t src_mtime, int64_t dst_size,
                     int64_t dst_mtime, int64_t prec)
{
    int64_t s, d;
    if (prec < 1)
        prec = 1;
    if (src_size != dst_size)
        return CF_SIZE;
    s = floor_div(src_mtime, prec);
    d = floor_div(dst_mtime, prec);
    if (s == d)
        return CF_NONE;
    return d > s ? CF_DST_NEWER : CF_MTIME;
}
