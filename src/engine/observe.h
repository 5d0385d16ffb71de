/* observe.h - log records and queue snapshots of the engines (observe.c). */
#ifndef TM_OBSERVE_H
#define TM_OBSERVE_H

#include <stdint.h>

#include "log/log.h"
#include "store/writer.h"

/* Starts the log service with base's thresholds and address, its database
 * side going to w. base NULL: no logging (*out NULL, returns 0). */
int tm__observe_start(struct tm__logger **out, const struct tm__log_cfg *base,
                      struct tm__writer *w, struct tm__buf *err);
/* Queues a queue_stats row: stat = round, pending, in_flight, done, failed,
 * bytes_done, bytes_pending; rate = items/s, bytes/s. */
void tm__observe_snapshot(struct tm__writer *w, const char *queue,
                          const int64_t stat[7], const double rate[2]);

#endif
