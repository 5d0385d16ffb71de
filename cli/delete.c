/*
 * delete.c - the command `treemig delete`: the mirror, an optional pass
 * that removes what exists only on the destination, as discovery recorded
 * it (docs/review.md, "The mirror"). Uses only treemig.h; runs on the main
 * thread.
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

const char delete_usage[] =
    "usage: treemig delete [--db FILE] [--yes] [--plan] [--backup-dir DIR]\n"
    "                      [--quiet]\n"
    "\n"
    "The mirror: removes from the destination what exists only there, so\n"
    "that it holds what the source holds and nothing else. Optional, and\n"
    "never run by any other command. First the plan: the destination-only\n"
    "folders discovery recorded (it does not enter them) are listed and what\n"
    "they hold is recorded too, so that 'treemig review --list extra' shows\n"
    "every item delete would remove. Then the removals: files before their\n"
    "folders, deepest first. Just before each removal the item is looked at\n"
    "again (without following any symlink): one whose type, size or mtime is\n"
    "not what was recorded is kept, so is a folder that is not empty and an\n"
    "item matching an exclusion (discover --exclude, treemig exclude); every\n"
    "item kept is listed with the reason. Nothing that was not recorded as\n"
    "destination-only is ever removed. Running it again resumes an\n"
    "interrupted delete. On a terminal it asks first; otherwise it needs\n"
    "--yes.\n"
    "\n"
    "options:\n"
    "  --db FILE     state file (default ./" DEFAULT_DB ")\n"
    "  --plan        record the plan and print its counts; remove nothing\n"
    "                (then 'treemig review --list extra' lists it)\n"
    "  -y, --yes     remove without asking (needed when not on a terminal)\n"
    "  --backup-dir DIR  move each file and symlink into DIR instead of\n"
    "                removing it, its path kept (DIR inside the destination:\n"
    "                relative to its root, or an absolute path below it)\n"
    "  -q, --quiet   no summary\n"
    "  -h, --help    show this help\n"
    "\n"
    "exit codes: 0 done, 1 fatal error, 2 usage error, not allowed in this\n"
    "phase, or not confirmed, 3 done but some items were kept, 4 interrupted,\n"
    "5 state file in use.\n";

/* The migration a signal interrupts while the delete runs. */
static tm_migration *volatile deleting;

static void on_signal(int sig)
{
    (void)sig;
    if (deleting)
        tm_migration_interrupt(deleting);
}

static void print_plan(const tm_delete_counts *c)
{
    fprintf(stderr, "the mirror's plan: %" PRId64 " files (%" PRId64 " bytes) "
            "and %" PRId64 " folders exist only on the destination; %" PRId64
            " kept\n", c->files, c->bytes, c->folders, c->kept);
}

int cmd_delete(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "yes", no_argument, NULL, 'y' },
        { "plan", no_argument, NULL, 'p' },
        { "backup-dir", required_argument, NULL, 'B' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = DEFAULT_DB, *backup_dir = NULL;
    tm_migration *m = NULL;
    tm_delete_counts c;
    struct sigaction sa;
    int ch, yes = 0, plan_only = 0, quiet = 0, rc, code;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "yqh", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': db = optarg; break;
        case 'y': yes = 1; break;
        case 'p': plan_only = 1; break;
        case 'B': backup_dir = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(delete_usage, stdout); return EXIT_OK;
        default: return option_error("delete", argc, argv, opts);
        }
    }
    if (optind != argc)
        return usage_error("delete", "unexpected argument '%s'", argv[optind]);
    rc = tm_migration_open(&m, db, TM_OPEN_WRITE);
    if (rc) {
        code = report_error("delete", m, rc);
        tm_migration_free(m);
        return code;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    deleting = m;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = plan_only ? 0 : tm_set_backup_dir(m, backup_dir);
    if (!rc)
        rc = tm_delete_plan(m, &c);
    if (rc)
        goto out_report;
    if (plan_only || !quiet)
        print_plan(&c);
    if (plan_only) {
        code = EXIT_OK;
        goto out_free;
    }
    if (!yes) {
        char answer[16];
        if (!isatty(STDIN_FILENO)) {
            fprintf(stderr, "treemig delete: not on a terminal: nothing removed; "
                    "'treemig review --list extra' lists the plan, then run "
                    "treemig delete --yes\n");
            code = EXIT_USAGE;
            goto out_free;
        }
        fprintf(stderr, "Remove these %" PRId64 " items from the destination "
                "('treemig review --list extra' lists them)? [y/N] ",
                c.files + c.folders);
        fflush(stderr);
        if (!fgets(answer, sizeof answer, stdin) ||
            (answer[0] != 'y' && answer[0] != 'Y')) {
            fprintf(stderr, "treemig delete: nothing removed\n");
            code = EXIT_OK;
            goto out_free;
        }
    }
    rc = tm_delete(m, &c);
    if (rc)
        goto out_report;
    if (!quiet)
        fprintf(stderr, "treemig delete: %" PRId64 " items removed, %" PRId64
                " kept\n", c.removed, c.kept);
    if (c.kept || c.files || c.folders) {
        fprintf(stderr, "treemig delete: kept (not removed):\n");
        tm_delete_print_kept(m, stderr);
    }
    code = c.kept || c.files || c.folders ? EXIT_PARTIAL : EXIT_OK;
    goto out_free;
out_report:
    code = report_error("delete", m, rc);
    if (rc == TM_ESTOPPED)
        fprintf(stderr, "treemig delete: interrupted; run it again to resume\n");
out_free:
    deleting = NULL;
    tm_migration_free(m);
    return code;
}
