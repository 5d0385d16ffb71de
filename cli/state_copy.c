/*
 * state_copy.c - the command `treemig state-copy FROM TO`: a migration's
 * whole state copied between an SQLite state file and a PostgreSQL
 * database, either way (docs/scale-out.md, "treemig state-copy"). Uses
 * only treemig.h; runs on the main thread.
 */
#include "treemig.h"

#include "commands.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const char state_copy_usage[] =
    "usage: treemig state-copy [--config FILE] [--quiet] FROM TO\n"
    "\n"
    "Copies the whole state of a migration from FROM to TO, each a state\n"
    "file or a PostgreSQL database (postgresql://...): to move a growing\n"
    "migration onto a server, or to archive a finished one in one file.\n"
    "Every table is copied in one transaction on TO; the migration keeps its\n"
    "id, phase and everything recorded, and continues from TO with any\n"
    "command (--db TO, or resume with TO's YAML file). FROM is locked while\n"
    "it is read (no command may run on it). TO must not hold a migration: a\n"
    "state file that does not exist yet, or a database without tables;\n"
    "anything else is refused and left untouched. The YAML file of the copy\n"
    "is written at --config, or beside a state file TO (TO.yaml); a\n"
    "database TO gets one only with --config. An existing YAML file is never\n"
    "overwritten. The password of a URI is never written anywhere (libpq's\n"
    "PGPASSWORD, ~/.pgpass and PGSERVICE supply it).\n"
    "\n"
    "options:\n"
    "  --config FILE  the YAML file to write for TO\n"
    "  -q, --quiet    no summary\n"
    "  -h, --help     show this help\n"
    "\n"
    "exit codes: 0 copied, 1 fatal error, 2 usage error or TO not empty,\n"
    "5 FROM in use by another process.\n";

int cmd_state_copy(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config = NULL;
    tm_migration *m = NULL;
    int64_t rows = 0;
    int ch, quiet = 0, rc, code;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': config = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(state_copy_usage, stdout); return EXIT_OK;
        default: return option_error("state-copy", argc, argv, opts);
        }
    }
    if (argc - optind != 2)
        return usage_error("state-copy", "expected FROM and TO, got %d argument%s",
                           argc - optind, argc - optind == 1 ? "" : "s");
    if (!strcmp(argv[optind], argv[optind + 1]))
        return usage_error("state-copy", "FROM and TO are the same");
    rc = tm_migration_open(&m, argv[optind], TM_OPEN_WRITE);
    if (!rc)
        rc = tm_state_copy(m, argv[optind + 1], config, &rows);
    if (rc) {
        code = report_error("state-copy", m, rc);
        if (rc == TM_EEXIST) /* TO holds something: refused, untouched */
            code = EXIT_USAGE;
        tm_migration_free(m);
        return code;
    }
    if (!quiet)
        fprintf(stderr, "treemig state-copy: %" PRId64 " rows copied\n", rows);
    tm_migration_free(m);
    return EXIT_OK;
}
