/*
 * pool.h - the one task pool and the one retry policy of every phase
 * (discovery, copy, verify, retry).
 *
 * The pool is a fixed set of threads that run jobs handed to it; it knows
 * nothing of what a job does, and never blocks the submitter: the phase
 * that submits bounds what it has in flight (an operation in flight costs
 * a job, never an SQLite connection). The retry policy decides, after a
 * failed storage call, whether to try again and how long to wait first:
 * the storage's retry-after for throttling (not counted as a try), else
 * full-jitter exponential backoff, every wait cut short by a stop request.
 *
 * Lock order: the pool's mutex only; a job runs without it held.
 */
#ifndef TM_POOL_H
#define TM_POOL_H

#include <stdatomic.h>
#include <stdint.h>

#include "adapter/adapter.h"

struct tm__pool;

/* A unit of work: embedded in the submitter's own task struct. */
struct tm__job {
    struct tm__job *next;             /* queue link (the pool's) */
    void (*run)(struct tm__job *job); /* called once on a pool thread */
};

/* Starts threads pool threads (>= 1) with stacks of stack_kib KiB (0: the
 * system's default). */
int tm__pool_start(struct tm__pool **out, int threads, int stack_kib);
/* The same, each thread raising its own nice value by nice (0-19, clamped
 * at 19) before it runs a job: a phase whose jobs compete for the cores
 * with a thread they feed (discovery's listings and the writer) lets that
 * thread have a core. Other threads of the process keep theirs (Linux: a
 * nice value is per thread). Best effort: a refusal is ignored. */
int tm__pool_start_niced(struct tm__pool **out, int threads, int stack_kib, int nice);
/* Queues job; it runs once on some pool thread. Any thread; never waits. */
void tm__pool_submit(struct tm__pool *p, struct tm__job *job);
/* Runs what is queued, then stops and joins the threads and frees p.
 * NULL is ok. */
void tm__pool_stop(struct tm__pool *p);

/* The retry state of one operation. */
struct tm__retry {
    int tries;          /* failed tries so far (throttling not counted) */
    int max;            /* retries allowed after the first try */
    int64_t cap_ms;     /* backoff ceiling */
    int64_t base_ms;    /* first backoff ceiling */
    int64_t last_wait;  /* the last wait, ms */
    uint64_t rng;       /* jitter state */
    atomic_int *stop;   /* a stop request cuts a wait short; may be NULL */
};

/* Prepares r for an operation that may be retried max times. */
void tm__retry_init(struct tm__retry *r, int max, atomic_int *stop);
/* After a failed try whose detail is e: 1 once the wait before the next
 * try is done, 0 when the failure is not to be retried (a node or fatal
 * error, or no retries left), TM_ESTOPPED when a stop was asked. A
 * throttled call waits e->retry_ms (default 1 s) and is not counted. */
int tm__retry_again(struct tm__retry *r, const struct tm__aerr *e);
/* How long the last wait of r was, ms (for the log). */
int64_t tm__retry_last_wait(const struct tm__retry *r);
/* Sleeps ms, waking early when *stop is set (stop may be NULL). Returns 1
 * when stopping. */
int tm__nap(atomic_int *stop, int64_t ms);

#endif
