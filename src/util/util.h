/* util.h - small helpers shared by every module: time, errno mapping. */
#ifndef TM_UTIL_H
#define TM_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Maps an errno value to the engine's code: OS errors are negated. */
int tm__from_errno(int e);
/* Writes all n bytes (again after EINTR and short writes): 0 or an error. */
int tm__write_full(int fd, const void *buf, size_t n);
/* Monotonic clock in nanoseconds. */
int64_t tm__now_ns(void);
/* Wall clock in nanoseconds since the epoch. */
int64_t tm__wall_ns(void);
/* Sleeps for ms milliseconds (restarted after EINTR up to the end). */
void tm__sleep_ms(int64_t ms);
/* Writes the UTC time as ISO 8601 into out (at least 32 bytes). */
void tm__iso_time(char *out, int64_t wall_ns);

#endif
