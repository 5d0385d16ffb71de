/*
 * worker.c - treemig worker: one of several processes, on any machines
 * that reach both storages, running a migration's discovery, copy or
 * verify together through a
 * PostgreSQL state database (docs/scale-out.md). The caller's thread;
 * the library runs the engine's threads.
 */
#include "treemig.h"

#include "commands.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_DB "treemig.db"

static const char worker_usage[] =
    "usage: treemig worker --db postgresql://... [OPTIONS]\n"
    "\n"
    "Joins the discovery, the copy or the verify in progress on a PostgreSQL\n"
    "state database, started by 'treemig discover', 'treemig copy', 'treemig\n"
    "retry' or 'treemig verify' (which work too), from this or any other\n"
    "machine that reaches both storages: claims batches of folders to list\n"
    "(or nodes to copy, or folders to check) under leases, renews them while\n"
    "it works, and leaves when nothing of the run is left with anyone. A\n"
    "worker that is killed, frozen or cut off loses its leases after --lease\n"
    "seconds and the others take its tasks; what it records after that is\n"
    "dropped. A discovery is joined with the settings it was started with.\n"
    "On an SQLite state file the command is refused: on one machine, give\n"
    "the copy more --workers.\n"
    "\n"
    "options:\n"
    "  --db URI         the state database (postgresql://...; a password\n"
    "                   comes from PGPASSWORD, ~/.pgpass or PGSERVICE)\n"
    "  --workers N      operations in flight (default: as the copy, 1..1024;\n"
    "                   in a discovery, listings per side, default as it)\n"
    "  --lease S        seconds a claimed batch stays this worker's without\n"
    "                   renewal (default 30, 2..86400); renewed every S/3\n"
    "  --follow         after a run, wait for the next one (until Ctrl-C)\n"
    "  --quiet          no progress lines\n"
    "  -h, --help       show this help\n"
    "\n"
    "exit codes: 0 success, 1 fatal error, 2 usage error or nothing in\n"
    "progress to join, 3 done but some nodes failed to copy, 4 interrupted.\n";

/* The migration a signal interrupts. */
static tm_migration *volatile working;

static void on_signal(int sig)
{
    (void)sig;
    if (working)
        tm_migration_interrupt(working);
}

static void on_progress(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

int cmd_worker(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "workers", required_argument, NULL, 'w' },
        { "lease", required_argument, NULL, 'l' },
        { "follow", no_argument, NULL, 'f' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = DEFAULT_DB;
    tm_worker_options o;
    tm_migration *m = NULL;
    struct sigaction sa;
    int ch, quiet = 0, rc, code;

    tm_worker_options_init(&o);
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': db = optarg; break;
        case 'w':
            if (parse_int(optarg, 1, 1024, &o.workers))
                return usage_error("worker", "--workers takes a whole number from "
                                   "1 to 1024, not '%s'", optarg);
            break;
        case 'l':
            if (parse_int(optarg, 2, 86400, &o.lease_s))
                return usage_error("worker", "--lease takes seconds from 2 to "
                                   "86400, not '%s'", optarg);
            break;
        case 'f': o.follow = 1; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(worker_usage, stdout); return EXIT_OK;
        default: return option_error("worker", argc, argv, opts);
        }
    }
    if (optind != argc)
        return usage_error("worker", "unexpected argument '%s'", argv[optind]);
    if (!is_pg_uri(db))
        return usage_error("worker", "%s is not a PostgreSQL database: workers share "
                           "a postgresql:// state database; on one machine, run "
                           "'treemig copy' with more --workers", db);
    if (!quiet) {
        o.progress = on_progress;
        o.progress_ctx = NULL;
    }
    rc = tm_migration_open(&m, db, TM_OPEN_WRITE | TM_OPEN_SHARED);
    if (rc) {
        code = report_error("worker", m, rc);
        tm_migration_free(m);
        return code;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    working = m;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = tm_worker(m, &o);
    working = NULL;
    if (!quiet || rc)
        fprintf(stderr, "treemig worker %ld: %d runs joined, %" PRId64 " nodes "
                "failed here, %" PRId64 " outcomes dropped (lease lost)\n",
                (long)getpid(), o.joined, o.failed, o.lease_lost);
    if (rc) {
        code = report_error("worker", m, rc);
        tm_migration_free(m);
        return code;
    }
    tm_migration_free(m);
    return o.failed ? EXIT_PARTIAL : EXIT_OK;
}
