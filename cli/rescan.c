/*
 * rescan.c - the command `treemig rescan`: a new pass of a migration whose
 * discovery was complete (the cutover: catch up with what changed since).
 * Uses only treemig.h; runs on the main thread.
 */
#include "treemig.h"

#include "commands.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_DB "treemig.db"

const char rescan_usage[] =
    "usage: treemig rescan [--db FILE] [--workers N] [STORAGE OPTIONS] [--quiet]\n"
    "\n"
    "Starts a new pass of a migration whose discovery is complete (phase\n"
    "discovered, copied or verified): both trees are discovered again into\n"
    "the same state file, with the same roots, excludes and options, and the\n"
    "exclusions made with 'treemig exclude' are made again. The source nodes\n"
    "of the previous pass are kept to compare with: the new pass says what is\n"
    "new, changed and deleted on the source since, and what changed on the\n"
    "destination since the previous pass copied it. Then 'treemig review'\n"
    "shows what differs now, and 'treemig copy' copies only that (what is\n"
    "already on the destination as on the source is left alone), 'treemig\n"
    "verify' checks it, and 'treemig delete' removes what was deleted on the\n"
    "source. An interrupted pass resumes with 'treemig rescan' again.\n"
    "The storages are opened as the earlier commands recorded them (the\n"
    "state file and its YAML file); storage options given here (as to\n"
    "discover) replace the recorded ones, a password or key coming from\n"
    "where discover took it (the environment, a file), never the state file.\n"
    "\n"
    "options:\n"
    "  --db FILE     state file (default ./" DEFAULT_DB ")\n"
    "  --workers N   threads per side (default: as stored)\n"
    STORAGE_USAGE
    "  -q, --quiet   no summary\n"
    "  -h, --help    show this help\n"
    "\n"
    "exit codes: 0 done, 1 fatal error, 2 usage error or not allowed in this\n"
    "phase, 3 done but some folders could not be listed, 4 interrupted, 5\n"
    "state file in use.\n";

/* The migration a signal interrupts while the pass runs. */
static tm_migration *volatile scanning;

static void on_signal(int sig)
{
    (void)sig;
    if (scanning)
        tm_migration_interrupt(scanning);
}

int cmd_rescan(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "workers", required_argument, NULL, 'w' },
        STORAGE_OPTIONS,
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = DEFAULT_DB;
    tm_discover_options o;
    tm_migration *m = NULL;
    tm_pass_changes c;
    tm_status st;
    struct sigaction sa;
    struct sopt_list so = { NULL, 0, 0, NULL, 0 };
    int ch, quiet = 0, rc, code;

    tm_discover_options_init(&o);
    optind = 1;
    while ((ch = getopt_long(argc, argv, "qho:", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': db = optarg; break;
        case 'o':
            if ((code = sopt_add(&so, "rescan", optarg)) != 0) {
                sopt_release(&so);
                return code;
            }
            break;
        case 'w':
            if (parse_int(optarg, 1, 1024, &o.workers)) {
                sopt_release(&so);
                return usage_error("rescan", "--workers takes a whole number from "
                                   "1 to 1024, not '%s'", optarg);
            }
            break;
        case 'q': quiet = 1; break;
        case 'h':
            sopt_release(&so);
            fputs(rescan_usage, stdout);
            return EXIT_OK;
        default:
            if (ch > SOPT_BASE && ch < SOPT_END &&
                (code = sopt_alias(&so, "rescan", ch, optarg)) == 0)
                break;
            sopt_release(&so);
            return ch > SOPT_BASE && ch < SOPT_END
                       ? code
                       : option_error("rescan", argc, argv, opts);
        }
    }
    if (optind != argc) {
        sopt_release(&so);
        return usage_error("rescan", "unexpected argument '%s'", argv[optind]);
    }
    rc = tm_migration_open(&m, db, TM_OPEN_WRITE);
    if (rc || (code = sopt_apply(m, &so, "rescan")) != 0) {
        if (rc)
            code = report_error("rescan", m, rc);
        tm_migration_free(m);
        sopt_release(&so);
        return code;
    }
    sopt_release(&so);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    scanning = m;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = tm_rescan(m, &o);
    scanning = NULL;
    if (rc) {
        code = report_error("rescan", m, rc);
        if (rc == TM_ESTOPPED)
            fprintf(stderr, "treemig rescan: interrupted; run it again to resume\n");
        tm_migration_free(m);
        return code;
    }
    code = EXIT_OK;
    if (tm_status_get(m, &st) == 0 && (st.src_counts.failed || st.dst_counts.failed))
        code = EXIT_PARTIAL;
    if (!quiet && tm_pass_changes_get(m, &c) == 0)
        fprintf(stderr, "treemig rescan: pass %d (started %s, discovered %s): "
                "since the previous pass, on the source %" PRId64 " new, %" PRId64
                " changed, %" PRId64 " deleted; on the destination %" PRId64
                " changed since copied. 'treemig review' shows what to copy.\n",
                c.pass, c.started, c.ended, c.src_new, c.src_changed,
                c.src_deleted, c.dst_changed);
    tm_migration_free(m);
    return code;
}
