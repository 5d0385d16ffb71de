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

/* ---- secret.c ---- */

/* Bytes of a key of the keyed hash (a copy run's key). */
#define TM_KEY_LEN 16
/* Bytes a temporary name takes at most, NUL included. */
#define TM_TMP_NAME_MAX 48
/* Names a temporary file tries before giving up (each one taken: EEXIST). */
#define TM_TMP_TRIES 4
/* Times are kept as nanoseconds since the epoch in an int64, which holds
 * 1677-09-21 to 2262-04-11. A time outside is recorded as one of these two
 * marks (never wrapped): it cannot be copied exactly, and never compares
 * equal. INT64_MIN itself is TM_MTIME_KEEP (adapter.h). */
#define TM_MTIME_MAX INT64_MAX
#define TM_MTIME_MIN (INT64_MIN + 1)

/* Fills buf with n random bytes (getrandom): 0 or an error. */
int tm__random(void *buf, size_t n);
/* SipHash-2-4 of data under key. */
uint64_t tm__siphash(const unsigned char key[TM_KEY_LEN], const void *data,
                     size_t len);
/* The temporary name (".treemig.<32 hex>.tmp") of attempt attempt (from 0)
 * at writing the node at path under the run key key, into out (outlen >=
 * TM_TMP_NAME_MAX). */
int tm__tmp_name(const unsigned char key[TM_KEY_LEN], const char *path,
                 int attempt, char *out, size_t outlen);
/* 1 when name looks like a temporary file of treemig (this version's
 * names, or an earlier version's ".treemig.<16 hex>.tmp"). */
int tm__tmp_name_like(const char *name, size_t len);
/* sec.nsec as nanoseconds since the epoch, or TM_MTIME_MAX / TM_MTIME_MIN
 * when it does not fit. */
int64_t tm__ts_to_ns(int64_t sec, int64_t nsec);
/* 1 when ns is TM_MTIME_MAX or TM_MTIME_MIN (a time that did not fit). */
int tm__mtime_out_of_range(int64_t ns);

#endif
