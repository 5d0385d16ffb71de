/*
 * pool.c - the task pool and the retry policy of pool.h.
 *
 * Threads: the pool's own threads run jobs; tm__pool_submit() and
 * tm__pool_stop() are called by the phase's coordinator. One queue, one
 * mutex, one condition variable (libuv's threadpool.c is the model).
 *
 * Lock order: p->mu only, never held while a job runs.
 */
#include "engine/pool.h"

#include "treemig.h"
#include "util/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>

struct tm__pool {
    pthread_mutex_t mu;         /* guards head, tail, quit */
    pthread_cond_t cv;          /* a job was queued, or quit */
    struct tm__job *head, *tail; /* queued jobs */
    int quit;                   /* exit once the queue is empty */
    int nice;                   /* added to each thread's nice value */
    int n;                      /* threads started */
    pthread_t *th;              /* the threads */
};

static void *pool_main(void *arg)
{
    struct tm__pool *p = arg;
    if (p->nice > 0) {
        /* this thread's nice value only: Linux keeps one per thread */
        pid_t tid = (pid_t)syscall(SYS_gettid);
        int now;
        errno = 0;
        now = getpriority(PRIO_PROCESS, (id_t)tid);
        if (errno == 0)
            (void)setpriority(PRIO_PROCESS, (id_t)tid,
                              now + p->nice > 19 ? 19 : now + p->nice);
    }
    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct tm__job *j;
        while (!p->head && !p->quit)
            pthread_cond_wait(&p->cv, &p->mu);
        if (!p->head)
            break; /* quit, and nothing left */
        j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        j->next = NULL;
        j->run(j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int tm__pool_start(struct tm__pool **out, int threads, int stack_kib)
{
    return tm__pool_start_niced(out, threads, stack_kib, 0);
}

int tm__pool_start_niced(struct tm__pool **out, int threads, int stack_kib, int nice)
{
    struct tm__pool *p = calloc(1, sizeof *p);
    pthread_attr_t attr;
    int i, rc = 0;

    *out = NULL;
    if (!p || threads < 1 || !(p->th = calloc((size_t)threads, sizeof *p->th))) {
        free(p);
        return threads < 1 ? TM_EINVAL : TM_ENOMEM;
    }
    p->nice = nice < 0 ? 0 : nice > 19 ? 19 : nice;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_attr_init(&attr);
    if (stack_kib > 0)
        pthread_attr_setstacksize(&attr, (size_t)stack_kib * 1024);
    for (i = 0; i < threads; i++) {
        if (pthread_create(&p->th[i], &attr, pool_main, p) != 0) {
            rc = TM_ENOMEM;
            break;
        }
        p->n++;
    }
    pthread_attr_destroy(&attr);
    if (rc) {
        tm__pool_stop(p);
        return rc;
    }
    *out = p;
    return 0;
}

void tm__pool_submit(struct tm__pool *p, struct tm__job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void tm__pool_stop(struct tm__pool *p)
{
    int i;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < p->n; i++)
        pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->th);
    free(p);
}

/* ---- the retry policy ---- */

void tm__retry_init(struct tm__retry *r, int max, atomic_int *stop)
{
    static atomic_uint_fast64_t seq;
    r->tries = 0;
    r->max = max < 0 ? 0 : max;
    r->base_ms = 50;
    r->cap_ms = 5000;
    /* jitter need not be good randomness, only differ between callers */
    r->last_wait = 0;
    r->rng = (uint64_t)tm__now_ns() ^ (atomic_fetch_add(&seq, 1) * 0x9e3779b97f4a7c15ULL);
    r->stop = stop;
}

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int tm__nap(atomic_int *stop, int64_t ms)
{
    while (ms > 0) {
        int64_t step = ms > 50 ? 50 : ms;
        if (stop && atomic_load(stop))
            return 1;
        tm__sleep_ms(step);
        ms -= step;
    }
    return stop && atomic_load(stop) ? 1 : 0;
}

int tm__retry_again(struct tm__retry *r, const struct tm__aerr *e)
{
    int64_t ceil, wait;
    if (r->stop && atomic_load(r->stop))
        return TM_ESTOPPED;
    if (e->cls == TM_ERR_THROTTLE) {
        wait = e->retry_ms > 0 ? e->retry_ms : 1000;
    } else if (e->cls == TM_ERR_RETRY && r->tries < r->max) {
        /* full jitter: a uniform wait below a doubling ceiling, so that
         * many workers failing at once do not retry at once */
        ceil = r->base_ms << (r->tries < 16 ? r->tries : 16);
        if (ceil > r->cap_ms || ceil <= 0)
            ceil = r->cap_ms;
        wait = 1 + (int64_t)(next_rand(&r->rng) % (uint64_t)ceil);
        r->tries++;
    } else {
        return 0;
    }
    r->last_wait = wait;
    if (tm__nap(r->stop, wait))
        return TM_ESTOPPED;
    return 1;
}

int64_t tm__retry_last_wait(const struct tm__retry *r)
{
    return r->last_wait;
}
