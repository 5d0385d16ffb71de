/* Unit tests of the task pool (src/engine/pool.c): every job runs once, and
 * a niced pool's threads run their jobs at the raised nice value while the
 * thread that started the pool keeps its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/pool.h"

/* A job that records the nice value of the thread that ran it. */
struct nice_job {
    struct tm__job job; /* must be first */
    pthread_mutex_t *mu; /* guards done */
    pthread_cond_t *cv;  /* signalled when done */
    int *done;           /* jobs finished */
    int nice;            /* the running thread's nice value */
};

static int thread_nice(void)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int v;
    errno = 0;
    v = getpriority(PRIO_PROCESS, (id_t)tid);
    assert_int_equal(errno, 0);
    return v;
}

static void run_nice_job(struct tm__job *j)
{
    struct nice_job *n = (struct nice_job *)j;
    n->nice = thread_nice();
    pthread_mutex_lock(n->mu);
    (*n->done)++;
    pthread_cond_signal(n->cv);
    pthread_mutex_unlock(n->mu);
}

/* Runs 8 jobs on a pool of 3 threads started with nice; returns after all
 * ran, their nice values in out[]. */
static void run_jobs(int nice, int out[8])
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    struct nice_job jobs[8];
    struct tm__pool *p = NULL;
    int done = 0, i;

    assert_int_equal(nice ? tm__pool_start_niced(&p, 3, 0, nice) : tm__pool_start(&p, 3, 0), 0);
    for (i = 0; i < 8; i++) {
        jobs[i] = (struct nice_job){ .job.run = run_nice_job, .mu = &mu, .cv = &cv,
                                     .done = &done, .nice = -100 };
        tm__pool_submit(p, &jobs[i].job);
    }
    pthread_mutex_lock(&mu);
    while (done < 8)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    tm__pool_stop(p);
    for (i = 0; i < 8; i++)
        out[i] = jobs[i].nice;
}

static void test_pool_threads_keep_nice(void **state)
{
    int base = thread_nice(), got[8], i;
    (void)state;
    run_jobs(0, got);
    for (i = 0; i < 8; i++)
        assert_int_equal(got[i], base);
}

static void test_pool_niced_threads(void **state)
{
    int base = thread_nice(), got[8], i;
    (void)state;
    run_jobs(3, got);
    for (i = 0; i < 8; i++)
        assert_int_equal(got[i], base + 3 > 19 ? 19 : base + 3);
    /* the starting thread's own value is untouched (per thread) */
    assert_int_equal(thread_nice(), base);
    /* clamped at 19 */
    run_jobs(40, got);
    for (i = 0; i < 8; i++)
        assert_int_equal(got[i], 19);
    assert_int_equal(thread_nice(), base);
}

int main(void)
{
    if (thread_nice() >= 19) {
        puts("test_pool: this process runs at nice 19: no value above to see; skipped");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_threads_keep_nice),
        cmocka_unit_test(test_pool_niced_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
