/*
 * sim.c - the simulated storage (docs/sim.md). Placeholder until the
 * generator lands: every spec is refused with a clear message.
 */
#include "adapter/adapter.h"

#include "treemig.h"

#include <stdio.h>
#include <stdlib.h>

int tm__sim_open(const char *params, struct tm__adapter **out, char *err,
                 size_t errlen)
{
    (void)params;
    *out = NULL;
    snprintf(err, errlen, "the sim adapter is not built yet");
    return TM_EBADSPEC;
}

int tm_sim_stats(const char *spec, char **json, char *err, size_t errlen)
{
    (void)spec;
    *json = NULL;
    snprintf(err, errlen, "the sim adapter is not built yet");
    return TM_EBADSPEC;
}
