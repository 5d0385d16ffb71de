/*
 * observe.c - what the engines tell the outside: log records (through the
 * log service into the writer and out by UDP) and the queue snapshots of
 * the observer. Called from the coordinator, the workers, and (the sink)
 * the logger thread.
 */
#include "engine/observe.h"

#include "util/util.h"

#include <stdlib.h>
#include <string.h>

/* The queue names a record may carry, as static strings for the writer. */
static const char *static_queue(const char *q)
{
    static const char *const known[] = { "src", "dst", "copy", "verify", "engine",
                                         "log" };
    size_t i;
    for (i = 0; q && i < sizeof known / sizeof *known; i++)
        if (strcmp(q, known[i]) == 0)
            return known[i];
    return NULL;
}

/* Runs on the logger thread: a record for the logs table. */
static void log_sink(void *ctx, const struct tm__log_record *rec)
{
    struct tm__writer *w = ctx;
    struct tm__result *r = calloc(1, sizeof *r);
    if (!r)
        return;
    tm__buf_init(&r->arena);
    r->kind = TM_R_LOG;
    r->phase = tm__level_names[rec->level];
    r->queue = static_queue(rec->queue);
    r->folder_id = rec->node_id;
    r->stat[7] = rec->time;
    r->value = strdup(rec->message ? rec->message : "");
    r->path = rec->path ? strdup(rec->path) : NULL;
    if (!r->value || (rec->path && !r->path)) {
        tm__result_free(r);
        return;
    }
    tm__writer_submit(w, r); /* frees r on error */
}

int tm__observe_start(struct tm__logger **out, const struct tm__log_cfg *base,
                      struct tm__writer *w, struct tm__buf *err)
{
    struct tm__log_cfg c;
    *out = NULL;
    if (!base)
        return 0;
    c = *base;
    c.sink = log_sink;
    c.sink_ctx = w;
    return tm__logger_start(out, &c, err);
}

void tm__observe_snapshot(struct tm__writer *w, const char *queue,
                          const int64_t stat[7], const double rate[2])
{
    struct tm__result *r = calloc(1, sizeof *r);
    if (!r)
        return;
    tm__buf_init(&r->arena);
    r->kind = TM_R_QSTAT;
    r->queue = static_queue(queue);
    memcpy(r->stat, stat, 7 * sizeof *stat);
    r->stat[7] = tm__wall_ns();
    r->rate[0] = rate[0];
    r->rate[1] = rate[1];
    if (!r->queue) {
        tm__result_free(r);
        return;
    }
    tm__writer_submit(w, r);
}
