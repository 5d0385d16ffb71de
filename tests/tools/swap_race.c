/*
 * swap_race.c - a test helper of tests/integration/test_race.py: exchanges
 * pairs of paths (a folder and a symlink to somewhere outside the trees) as
 * fast as it can with renameat2(RENAME_EXCHANGE), so that whatever treemig
 * does to one of those names may find either behind it. Single-threaded.
 *
 *     swap_race STOPFILE A1 B1 [A2 B2 ...]
 *
 * Runs until STOPFILE exists (checked every 256 rounds) or SIGTERM/SIGINT,
 * then leaves every pair as it found it (an even number of exchanges) and
 * prints "swaps N" on stdout. Exit 0, or 1 when an exchange failed (the
 * message says which) or the arguments are wrong.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_asked;

static void on_signal(int sig)
{
    (void)sig;
    stop_asked = 1;
}

static int exchange(const char *a, const char *b)
{
    if (renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0)
        return 0;
    fprintf(stderr, "swap_race: renameat2(%s, %s, RENAME_EXCHANGE): %m\n", a, b);
    return -1;
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    unsigned long long swaps = 0, round = 0;
    int i, pass, npairs;

    if (argc < 4 || (argc - 2) % 2 != 0) {
        fprintf(stderr, "usage: swap_race STOPFILE A1 B1 [A2 B2 ...]\n");
        return 1;
    }
    npairs = (argc - 2) / 2;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    for (;;) {
        if ((++round & 255) == 0 && access(argv[1], F_OK) == 0)
            stop_asked = 1;
        if (stop_asked)
            break;
        /* every pair once, then every pair back: each name spends about
         * half of the time swapped, and between rounds all are in place */
        for (pass = 0; pass < 2; pass++)
            for (i = 0; i < npairs; i++) {
                if (exchange(argv[2 + 2 * i], argv[3 + 2 * i]) != 0)
                    return 1;
                swaps++;
            }
    }
    printf("swaps %llu\n", swaps);
    return 0;
}
