/*
 * review.c - the commands `treemig review`, `treemig exclude` and
 * `treemig unexclude`: what a person checks, and changes, between
 * discovery and copy (docs/review.md). Uses only treemig.h; runs on the
 * main thread.
 */
#include "treemig.h"

#include "commands.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exit codes (docs/exit-codes.md), as in main.c. */

#define DEFAULT_DB "treemig.db"

static const char review_usage[] =
    "usage: treemig review [--db FILE] [--top N]\n"
    "       treemig review [--db FILE] --list KIND [--path PREFIX] [--json]\n"
    "       treemig review [--db FILE] --list conflict --reason REASON [--json]\n"
    "\n"
    "Without --list: a summary of what discovery found, read from the state\n"
    "file: what is to copy (missing, or differing on the destination), what is\n"
    "already there, the conflicts by kind, what exists only on the destination,\n"
    "what failed and what is excluded; then the folders with the most bytes\n"
    "and the most items to copy directly inside them.\n"
    "\n"
    "With --list: one item per line, in discovery order. KIND is one of\n"
    "  missing    source items not on the destination (to copy)\n"
    "  conflict   source items that differ from the destination (size, mtime,\n"
    "             dst_newer, content: to copy over it; type: skipped; attrs:\n"
    "             same content, another mode or owner, set in place)\n"
    "  attrs      the conflicts 'attrs' alone (not repeated by 'all')\n"
    "  extra      destination-only items (never touched)\n"
    "  failed     folders that could not be listed, copies that failed\n"
    "  excluded   excluded source items (reason: discover or review)\n"
    "  skipped    source items never copied: special files (FIFOs, sockets,\n"
    "             devices), type clashes, items the copy passed by\n"
    "  new        source items new since the previous pass (treemig rescan)\n"
    "  changed    source files and symlinks changed since the previous pass\n"
    "  edited     destination files and symlinks changed since the previous\n"
    "             pass copied them\n"
    "  copied     what the copy made; reason created, replaced or attrs\n"
    "             (its attributes set)\n"
    "  all        all of the above but attrs, new, changed, edited and\n"
    "             copied, each line naming its kind\n"
    "A line is KIND, TYPE, SIZE, PATH and, when there is one, the REASON,\n"
    "and for a conflict the source's MTIME and the destination's TYPE, SIZE\n"
    "and MTIME (UTC, ISO 8601 with nanoseconds), separated by tabs; in PATH and REASON a backslash is written \\\\, a tab,\n"
    "newline or carriage return \\t \\n \\r, other control bytes and bytes that\n"
    "are not UTF-8 \\xHH, and Unicode line separators and bidirectional\n"
    "controls \\uHHHH. With --json each line is a JSON object instead (path,\n"
    "type, size, mtime, state, reason, side, dst {type, size, mtime} for a\n"
    "conflict, and path_hex for a path that is not UTF-8).\n"
    "\n"
    "options:\n"
    "  --db FILE       state file (default ./" DEFAULT_DB "),\n"
    "                   or a postgresql:// URI (README: PostgreSQL state)\n"
    "  --top N         show the N folders with the most bytes and the N with\n"
    "                  the most items to copy (default 5, 0: none)\n"
    "  --list KIND     list the items of one kind (see above)\n"
    "  --path PREFIX   only PREFIX and what is below it ('/a' takes '/a' and\n"
    "                  '/a/...', never '/ab')\n"
    "  --reason REASON only the conflicts of REASON: size, mtime, dst_newer,\n"
    "                  type, content (discover --checksum) or attrs\n"
    "  --json          JSON Lines (with --list)\n"
    "  -h, --help      show this help\n"
    "\n"
    "It only reads the state file, so it is safe while another process runs\n"
    "the migration. The same questions in SQL: the review_* views\n"
    "(docs/state-file.md).\n"
    "exit codes: 0 success, 1 fatal error, 2 usage error or no state file.\n";

static const char exclude_usage[] =
    "usage: treemig exclude [--db FILE] [--quiet] PATTERN...\n"
    "       treemig exclude [--db FILE] [--quiet] --from FILE [PATTERN...]\n"
    "       treemig exclude [--db FILE] --list\n"
    "\n"
    "Excludes from the copy, after discovery, the source items that match a\n"
    "PATTERN, with everything below them: they become 'excluded' (and so do\n"
    "their destination twins), and every count is updated at once. A PATTERN\n"
    "with a '/' is a path or glob from the root ('/tmp', '/logs/*.old'); one\n"
    "without matches names anywhere ('node_modules', '*.tmp'), as for\n"
    "'discover --exclude'; escape * ? [ with a backslash to match them\n"
    "literally. Use -- before a PATTERN that starts with '-'.\n"
    "\n"
    "Allowed once discovery is complete and until the copy is; refused for an\n"
    "item where the copy has started (in progress, copied or failed) anywhere\n"
    "below it. 'treemig unexclude' undoes it exactly.\n"
    "\n"
    "options:\n"
    "  --db FILE    state file (default ./" DEFAULT_DB "),\n"
    "               or a postgresql:// URI (README: PostgreSQL state)\n"
    "  --list       print the exclusions in force, one PATTERN a line, in a\n"
    "               form --from reads back (into another state file, say);\n"
    "               discover's filter rules follow as '#' comments\n"
    "  --from FILE  exclude the PATTERNs of FILE too, one a line (blank lines\n"
    "               and lines starting with '#' or ';' are skipped; '-':\n"
    "               standard input)\n"
    "  -q, --quiet  print nothing on success\n"
    "  -h, --help   show this help\n"
    "\n"
    "exit codes: 0 done (also when everything matched was excluded already),\n"
    "1 fatal error, 2 usage error, nothing matches, or refused in this phase\n"
    "or for this item, 5 state file in use.\n";

static const char unexclude_usage[] =
    "usage: treemig unexclude [--db FILE] [--quiet] PATTERN...\n"
    "\n"
    "Includes again what 'treemig exclude' excluded: every item excluded with\n"
    "a matching item gets back exactly the statuses it had, and every count is\n"
    "updated. PATTERN is as for 'treemig exclude' and names the excluded item\n"
    "itself (the one the exclude matched), not something below it.\n"
    "\n"
    "Items excluded by 'discover --exclude' cannot be included here: their\n"
    "contents were never listed. Run a new discovery without that --exclude.\n"
    "Allowed once discovery is complete and until the copy is.\n"
    "\n"
    "options:\n"
    "  --db FILE    state file (default ./" DEFAULT_DB "),\n"
    "                   or a postgresql:// URI (README: PostgreSQL state)\n"
    "  -q, --quiet  print nothing on success\n"
    "  -h, --help   show this help\n"
    "\n"
    "exit codes: 0 done (also when nothing matched was excluded), 1 fatal\n"
    "error, 2 usage error, nothing matches, or refused, 5 state file in use.\n";

static int known_kind(const char *k)
{
    static const char *const kinds[] = { "missing", "conflict", "attrs", "extra",
                                         "failed", "excluded", "skipped", "new",
                                         "changed", "edited", "copied", "all" };
    size_t i;
    for (i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strcmp(k, kinds[i]))
            return 1;
    return 0;
}

int cmd_review(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "top", required_argument, NULL, 't' },
        { "list", required_argument, NULL, 'l' },
        { "path", required_argument, NULL, 'p' },
        { "reason", required_argument, NULL, 'r' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = DEFAULT_DB, *kind = NULL, *prefix = NULL, *reason = NULL;
    int json = 0, top = 5, top_given = 0, c, rc, code;
    tm_migration *m = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 't':
            if (parse_int(optarg, 0, 100000, &top))
                return usage_error("review", "--top takes a whole number from 0 "
                                   "to 100000, not '%s'", optarg);
            top_given = 1;
            break;
        case 'l':
            if (!known_kind(optarg))
                return usage_error("review", "--list takes missing, conflict, "
                                   "attrs, extra, failed, excluded, skipped, "
                                   "new, changed, edited, copied or all, "
                                   "not '%s'",
                                   optarg);
            kind = optarg;
            break;
        case 'p':
            prefix = optarg;
            break;
        case 'r':
            if (strcmp(optarg, "size") && strcmp(optarg, "mtime") &&
                strcmp(optarg, "dst_newer") && strcmp(optarg, "type") &&
                strcmp(optarg, "content") && strcmp(optarg, "attrs"))
                return usage_error("review", "--reason takes size, mtime, dst_newer, "
                                   "type, content or attrs, not '%s'", optarg);
            reason = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(review_usage, stdout);
            return EXIT_OK;
        default:
            return option_error("review", argc, argv, opts);
        }
    }
    if (optind != argc)
        return usage_error("review", "unexpected argument '%s'", argv[optind]);
    if (!kind && (json || prefix))
        return usage_error("review", "--json and --path go with --list KIND");
    if (reason && (!kind || (strcmp(kind, "conflict") && strcmp(kind, "attrs"))))
        return usage_error("review", "--reason goes with --list conflict");
    if (kind && top_given)
        return usage_error("review", "--top goes with the summary, not with --list");
    rc = tm_migration_open(&m, db, TM_OPEN_READONLY);
    if (!rc)
        rc = kind ? tm_review_list_reason(m, kind, reason, prefix, json, stdout)
                  : tm_review_print(m, stdout, top);
    code = rc ? report_error("review", m, rc) : EXIT_OK;
    tm_migration_free(m);
    return code;
}

/* The PATTERNs of a file (exclude --from): one a line; blank lines and
 * lines that start with '#' or ';' are skipped. 0, or an exit code. */
static int read_patterns(struct rule_list *l, const char *path)
{
    size_t before = l->n, i;
    int code = rules_read(l, "exclude", "--from", path, 0);
    /* rules_read keeps "+ " and "- " prefixes, which are no part of a
     * PATTERN here: a "+ " rule cannot be an exclusion */
    for (i = before; !code && i < l->n; i++)
        if (l->v[i][0] == '+' && l->v[i][1] == ' ')
            code = usage_error("exclude", "--from %s: '%s' is an include rule; "
                               "exclude takes PATTERNs to exclude", path, l->v[i]);
        else if (l->v[i][0] == '-' && l->v[i][1] == ' ')
            memmove(l->v[i], l->v[i] + 2, strlen(l->v[i] + 2) + 1);
    return code;
}

int cmd_exclude(int argc, char **argv, int unexclude)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "list", no_argument, NULL, 'l' },
        { "from", required_argument, NULL, 'f' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *cmd = unexclude ? "unexclude" : "exclude";
    const char *db = DEFAULT_DB;
    int quiet = 0, list = 0, c, rc, code;
    struct rule_list pats = { NULL, 0, 0 };
    int64_t changed = 0;
    tm_migration *m = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'l':
            if (unexclude)
                return usage_error(cmd, "unknown or incomplete option");
            list = 1;
            break;
        case 'f':
            if (unexclude)
                return usage_error(cmd, "unknown or incomplete option");
            if ((code = read_patterns(&pats, optarg)) != 0) {
                rules_release(&pats);
                return code;
            }
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            rules_release(&pats);
            fputs(unexclude ? unexclude_usage : exclude_usage, stdout);
            return EXIT_OK;
        default:
            rules_release(&pats);
            return option_error(cmd, argc, argv, opts);
        }
    }
    if (list) {
        rules_release(&pats);
        if (optind != argc)
            return usage_error(cmd, "--list takes no PATTERN");
        rc = tm_migration_open(&m, db, TM_OPEN_READONLY);
        if (!rc)
            rc = tm_exclude_list(m, stdout);
        code = rc ? report_error(cmd, m, rc) : EXIT_OK;
        tm_migration_free(m);
        return code;
    }
    for (c = optind; c < argc; c++)
        if (!argv[c][0] || strchr(argv[c], '\n')) {
            rules_release(&pats);
            return usage_error(cmd, "a PATTERN must be non-empty and hold no "
                               "newline");
        }
    for (c = optind; c < argc; c++)
        if ((code = rules_add(&pats, cmd, "a PATTERN", argv[c], 0)) != 0) {
            rules_release(&pats);
            return code;
        }
    if (!pats.n) {
        rules_release(&pats);
        return usage_error(cmd, "expected at least one PATTERN");
    }
    rc = tm_migration_open(&m, db, TM_OPEN_WRITE);
    if (!rc)
        rc = tm_exclude(m, (const char *const *)pats.v, pats.n, unexclude, &changed);
    rules_release(&pats);
    if (rc) {
        code = report_error(cmd, m, rc);
        tm_migration_free(m);
        return code;
    }
    tm_migration_free(m);
    if (!quiet) {
        if (changed)
            printf("treemig %s: %" PRId64 " source item%s %s; see 'treemig "
                   "review'\n", cmd, changed, changed == 1 ? "" : "s",
                   unexclude ? "included again" : "excluded");
        else
            printf("treemig %s: nothing changed: everything that matches is "
                   "%s already\n", cmd, unexclude ? "included" : "excluded");
    }
    return EXIT_OK;
}
