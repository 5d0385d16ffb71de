/*
 * main.c - the treemig command. Parses the command line, installs the
 * signal handlers, prints progress and results. Uses only treemig.h, and
 * the headers of SQLite, libyaml and xxHash for --version alone.
 * Single-threaded apart from what the engine starts.
 */
#include "treemig.h"

#include "commands.h"

#include <sqlite3.h>
#include <xxhash.h>
#include <yaml.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


#define DEFAULT_DB "treemig.db"

/* Logging options shared by the commands that run a phase. */
#define LOG_OPTIONS                                                  \
    { "log-level", required_argument, NULL, 'L' },                  \
    { "udp-level", required_argument, NULL, 'U' },                  \
    { "log-udp", required_argument, NULL, 'A' },                    \
    { "log-public", no_argument, NULL, 'P' }

#define LOG_USAGE                                                              \
    "  --log-level LVL  records >= LVL go to the logs table (trace, debug,\n"  \
    "                   info, warning, error, critical, off; default info)\n"  \
    "  --udp-level LVL  records >= LVL go out as UDP datagrams (default\n"     \
    "                   warning; see treemig log-listen)\n"                    \
    "  --log-udp ADDR   the listener, HOST:PORT (default 127.0.0.1:8081)\n"    \
    "  --log-public     allow a listener that is not on this machine\n"


/* The migration a signal handler interrupts; set while a command runs. */
static tm_migration *volatile running;
static volatile sig_atomic_t interrupts;

static void on_signal(int sig)
{
    (void)sig;
    if (interrupts++ == 0) {
        static const char msg[] = "\ntreemig: stopping: finishing the tasks "
                                  "under way (press Ctrl-C again to quit at once)\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        if (running)
            tm_migration_interrupt(running);
    } else {
        /* the state file is transactional: quitting now loses at most the
         * uncommitted batch, which the next run redoes */
        _exit(EXIT_INTERRUPTED);
    }
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static const char main_usage[] =
    "usage: treemig COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Migrates a tree of folders and files from a source to a destination,\n"
    "one way, with a state file that survives crashes and can be reviewed.\n"
    "\n"
    "commands:\n"
    "  discover   walk both trees and record every node and what differs\n"
    "  copy       create on the destination what is missing or different\n"
    "  verify     check the destination against the source\n"
    "  review     summarise or list what discovery found\n"
    "  exclude    exclude paths or globs from the copy (after discovery)\n"
    "  unexclude  include them again\n"
    "  retry      list failed folders again and redo failed copies\n"
    "  resume     continue a migration from its YAML file\n"
    "  status     show the phase and the counts of a migration\n"
    "  sim-stats  print the ground truth of a simulated storage pair\n"
    "  log-listen print the log datagrams a running migration sends\n"
    "  ui         review and follow the migration in a web page\n"
    "  help       show the help of a command\n"
    "\n"
    "options:\n"
    "  -h, --help     show this help\n"
    "  -V, --version  show the version, and those of SQLite, libyaml and xxHash\n"
    "\n"
    "'treemig COMMAND --help' shows the options of a command.\n"
    "exit codes: 0 success, 1 fatal error, 2 usage error, 3 done but some items\n"
    "failed, 4 interrupted (resume by running the command again), 5 the state\n"
    "file is in use by another process.\n";

static const char discover_usage[] =
    "usage: treemig discover [OPTIONS] SRC DST\n"
    "       treemig discover [OPTIONS]          (resume the state file's migration)\n"
    "\n"
    "Walks the source and the destination breadth-first and records every node\n"
    "of both in the state file: what is already there, what is missing, what\n"
    "conflicts, and what exists only on the destination. Nothing is written to\n"
    "either tree. Running it again on the same state file continues an\n"
    "interrupted discovery, or says that discovery is complete.\n"
    "\n"
    "options:\n"
    "  --db FILE        state file (default ./" DEFAULT_DB "),\n"
    "                   or a postgresql:// URI (README: PostgreSQL state)\n"
    "  --workers N      listing threads per side (default 4, 1..1024)\n"
    "  --lead N         rounds the source may run ahead of the destination\n"
    "                   (default 3, >= 1)\n"
    "  --retries N      retries of a failure that may pass (default 3)\n"
    "  --config FILE    the migration's YAML file (default: the state file's\n"
    "                   name with .yaml added), rewritten at every milestone\n"
    "  --exclude GLOB   exclude matching source nodes (repeatable); a GLOB with\n"
    "                   a '/' matches the path from the root ('/logs/*.tmp'),\n"
    "                   one without matches the name ('*.tmp')\n"
    "  --allow-pseudo-fs  take a root on a pseudo file system (/proc, /sys,\n"
    "                   cgroup, debugfs, ...), refused otherwise: what such a\n"
    "                   file system shows is made up as it is read\n"
    "  --owner          compare owners and groups too (a new migration only;\n"
    "                   recorded): the copy then sets them (as root) and\n"
    "                   verify compares them\n"
    "  --no-specials    leave special files (FIFOs, sockets, devices) out of\n"
    "                   the copy, skipped as 'other' (a new migration only;\n"
    "                   recorded); by default the copy makes them again on a\n"
    "                   local destination (devices as root only)\n"
    "  -x, --one-file-system  do not enter a source folder on another file\n"
    "                   system than the source root's, nor a bind mount: it\n"
    "                   is skipped with the reason (a new migration only;\n"
    "                   recorded)\n"
    "  --no-xattrs      the copy leaves out extended attributes and POSIX\n"
    "                   ACLs (kept by default: user.*, trusted.* as root,\n"
    "                   system.posix_acl_*; a new migration only; recorded)\n"
    STORAGE_USAGE
    LOG_USAGE
    "  -q, --quiet      no progress lines\n"
    "  -h, --help       show this help\n"
    "\n"
    "SRC and DST must not overlap by any route (a bind mount counts), nor hold\n"
    "the state file or the YAML file; each root is recorded, and a later\n"
    "command refuses a root that is no longer that folder.\n"
    "\n"
    "exit codes: 0 complete, 1 fatal error, 2 usage error, 3 complete but some\n"
    "folders could not be listed, 4 interrupted, 5 state file in use.\n";

static const char resume_usage[] =
    "usage: treemig resume --config FILE.yaml [--workers N] [--quiet]\n"
    "\n"
    "Continues a migration from its YAML file alone: the file names the state\n"
    "file, the source, the destination and the options. Whatever the phase was\n"
    "when it stopped (crash, Ctrl-C, reboot), the work goes on from there; a\n"
    "complete phase is reported and nothing is done. The roots are the state\n"
    "file's: a YAML file whose roots were edited is refused.\n"
    "\n"
    "options:\n"
    "  --config FILE   the migration's YAML file (required; by default it is\n"
    "                  the state file's name with .yaml added)\n"
    "  --workers N     threads per side for this run (default: as stored)\n"
    STORAGE_USAGE
    LOG_USAGE
    "  -q, --quiet     no progress lines\n"
    "  -h, --help      show this help\n";

static const char copy_usage[] =
    "usage: treemig copy [--db FILE] [--yes] [--workers N] [--retries N]\n"
    "                    [--no-overwrite] [--owner] [--force] [--quiet]\n"
    "\n"
    "Creates on the destination what discovery found missing or different:\n"
    "depth by depth, folders before files. Each file is written under a\n"
    "temporary name (mode 0600) and renamed when complete, so a crash never\n"
    "leaves a partial file under a real name; mtimes and modes are kept;\n"
    "symlinks are re-created as symlinks. Files that differ are replaced (the\n"
    "source wins); what differs only in its mode (or owner, discover --owner)\n"
    "gets it set in place, its content kept; nothing else is replaced: what\n"
    "was made at a name after discovery is kept and the node fails.\n"
    "Destination-only items are never touched;\n"
    "file/folder clashes are skipped and reported. A file that changed since\n"
    "discovery is not copied (it fails with 'changed since discovery'), nor\n"
    "is one whose mtime cannot be kept exactly. Running it again resumes an\n"
    "interrupted copy (and removes the temporary files a killed one left);\n"
    "nothing copied is copied twice.\n"
    "\n"
    "options:\n"
    "  --db FILE        state file (default ./" DEFAULT_DB "),\n"
    "                   or a postgresql:// URI (README: PostgreSQL state)\n"
    "  -y, --yes        do not ask for confirmation on a terminal\n"
    "  --workers N      copying threads (default: twice discovery's workers\n"
    "                   per side, 8 unless discover was given --workers)\n"
    "  --retries N      retries of a failure that may pass (default 3)\n"
    "  --no-overwrite   keep every file that exists on the destination, and\n"
    "                   the attributes of what differs only in them\n"
    "  --owner          give each copied node its source's owner and group\n"
    "                   (root only; without it, the copy's user owns them);\n"
    "                   implied when discover was given --owner\n"
    "  --force          copy although some folders failed during discovery\n"
    "                   (they are left out and stay failed: exit 3)\n"
    STORAGE_USAGE
    LOG_USAGE
    "  -q, --quiet      no progress lines\n"
    "  -h, --help       show this help\n"
    "\n"
    "exit codes: 0 copied, 1 fatal error (e.g. the destination is full or\n"
    "read-only, or a root vanished: the phase is suspended; fix it and run copy\n"
    "again), 2 usage error or not allowed in this phase, 3 done but some nodes\n"
    "failed, 4 interrupted, 5 state file in use.\n";

static const char verify_usage[] =
    "usage: treemig verify [--db FILE] [--checksum] [--workers N] [--quiet]\n"
    "\n"
    "Lists the destination again and checks every copied or already-existing\n"
    "node against the source: type, size and mtime, the mode of files and\n"
    "folders, folders' mtimes (set at the end of the copy), owners when\n"
    "discover was given --owner; with --checksum also the contents of both\n"
    "sides (xxHash). Each mismatch is printed with its path,\n"
    "kept in task_errors (phase 'verify') and marked failed, so that 'treemig\n"
    "retry' copies it again. What could not be checked is printed too, with\n"
    "the reason (a source folder that could not be listed, a failed copy, a\n"
    "file --no-overwrite kept), and so are temporary files an interrupted copy\n"
    "left. The phase becomes 'verified' only when every source node that\n"
    "should be on the destination was checked and matches.\n"
    "\n"
    "options:\n"
    "  --db FILE     state file (default ./" DEFAULT_DB "),\n"
    "                   or a postgresql:// URI (README: PostgreSQL state)\n"
    "  --checksum    compare contents too (reads both sides in full)\n"
    "  --workers N   threads (default: twice discovery's workers per side)\n"
    STORAGE_USAGE
    LOG_USAGE
    "  -q, --quiet   no progress lines\n"
    "  -h, --help    show this help\n"
    "\n"
    "exit codes: 0 verified (everything checked and matching), 3 mismatches\n"
    "or nodes not checked (each printed), 1 fatal error, 2 usage error or not\n"
    "allowed in this phase, 4 interrupted, 5 in use.\n";

static const char retry_usage[] =
    "usage: treemig retry [--db FILE] [--workers N] [--retries N] [--owner]\n"
    "                     [--quiet]\n"
    "\n"
    "The retry sweep: lists again every folder whose listing failed (on either\n"
    "side) together with its destination twin, and, when the copy has started,\n"
    "runs every failed copy again (verify's mismatches included). Use it once\n"
    "the cause is fixed (a permission, a mount, a network). Nothing is\n"
    "recorded twice.\n"
    "\n"
    "options:\n"
    "  --db FILE     state file (default ./" DEFAULT_DB "),\n"
    "                   or a postgresql:// URI (README: PostgreSQL state)\n"
    "  --workers N   threads (default: as stored)\n"
    "  --retries N   retries of a failure that may pass (default 3)\n"
    "  --owner       as for copy: the source's owners (root only)\n"
    STORAGE_USAGE
    LOG_USAGE
    "  -q, --quiet   no progress lines\n"
    "  -h, --help    show this help\n"
    "\n"
    "exit codes: 0 everything now succeeded, 3 some items still fail, 1 fatal\n"
    "error, 2 usage error or nothing to retry in this phase, 4 interrupted,\n"
    "5 state file in use.\n";

static const char status_usage[] =
    "usage: treemig status [--db FILE] [--json]\n"
    "\n"
    "Shows the phase of a migration and its exact counts, read from the state\n"
    "file (safe while another process runs the migration).\n"
    "\n"
    "options:\n"
    "  --db FILE   state file (default ./" DEFAULT_DB "),\n"
    "                   or a postgresql:// URI (README: PostgreSQL state)\n"
    "  --json      print one JSON object (fields in docs/state-file.md)\n"
    "  -h, --help  show this help\n";

static const char sim_stats_usage[] =
    "usage: treemig sim-stats SPEC\n"
    "\n"
    "Prints, as one JSON object, the ground truth of a simulated storage pair:\n"
    "the folders, files and bytes of the source and destination worlds, and the\n"
    "counts a discovery of the pair must find. SPEC is the destination's\n"
    "'sim:...' spec, which names its source world too (docs/sim.md).\n"
    "\n"
    "options:\n"
    "  -h, --help  show this help\n";

struct logopts {
    const char *level;     /* --log-level */
    const char *udp_level; /* --udp-level */
    const char *udp_addr;  /* --log-udp */
    int pub;               /* --log-public */
};

/* Takes a logging option; 1 when c was one. */
static int log_opt(int c, const char *arg, struct logopts *lo)
{
    switch (c) {
    case 'L': lo->level = arg; return 1;
    case 'U': lo->udp_level = arg; return 1;
    case 'A': lo->udp_addr = arg; return 1;
    case 'P': lo->pub = 1; return 1;
    default: return 0;
    }
}


struct progress {
    int tty;           /* stderr is a terminal: one live line */
    int64_t last_ns;   /* when the last plain line was printed */
    size_t last_len;   /* length of the live line */
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_progress(void *ctx, const char *line)
{
    struct progress *p = ctx;
    size_t len = strlen(line);
    int final = strncmp(line, "discovered:", 11) == 0 ||
                strncmp(line, "note:", 5) == 0;
    if (p->tty) {
        fprintf(stderr, "\r%s%*s", line,
                p->last_len > len ? (int)(p->last_len - len) : 0, "");
        if (final)
            fputc('\n', stderr);
        p->last_len = len;
    } else {
        int64_t now = mono_ns();
        if (!final && now - p->last_ns < 5000000000LL)
            return;
        p->last_ns = now;
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

static void print_snapshots(const tm_status *st)
{
    int i;
    for (i = 0; i < st->n_queues; i++) {
        const tm_queue_snapshot *q = &st->queues[i];
        time_t t = (time_t)(q->time / 1000000000);
        struct tm tmv;
        char when[32];
        localtime_r(&t, &tmv);
        strftime(when, sizeof when, "%H:%M:%S", &tmv);
        printf("queue %-6s %s: round %" PRId64 ", %" PRId64 " pending, %" PRId64
               " in flight, %" PRId64 " done, %" PRId64 " failed, %.1f/s",
               q->queue, when, q->round, q->pending, q->in_flight, q->done,
               q->failed, q->items_per_s);
        if (q->bytes_per_s > 0)
            printf(", %.1f MiB/s", q->bytes_per_s / 1048576.0);
        putchar('\n');
    }
    if (st->eta_seconds >= 0)
        printf("eta          %" PRId64 "h %02" PRId64 "m %02" PRId64 "s\n",
               st->eta_seconds / 3600, st->eta_seconds / 60 % 60,
               st->eta_seconds % 60);
}

static void print_human_status(const tm_status *st)
{
    const tm_tree_counts *s = &st->src_counts, *d = &st->dst_counts;
    const tm_copy_counts *c = &st->copy;
    printf("phase        %s\n", st->phase);
    printf("source       %s (round %d)\n", st->src, st->src_round);
    printf("destination  %s (round %d)\n", st->dst, st->dst_round);
    printf("source       %" PRId64 " folders, %" PRId64 " files, %" PRId64
           " symlinks, %" PRId64 " other, %" PRId64 " bytes; %" PRId64
           " pending, %" PRId64 " failed, %" PRId64 " excluded\n",
           s->folders, s->files, s->symlinks, s->other, s->bytes, s->pending,
           s->failed, s->excluded);
    printf("destination  %" PRId64 " folders, %" PRId64 " files, %" PRId64
           " symlinks, %" PRId64 " other, %" PRId64 " bytes; %" PRId64
           " pending, %" PRId64 " failed, %" PRId64 " not on source\n",
           d->folders, d->files, d->symlinks, d->other, d->bytes, d->pending,
           d->failed, d->not_on_src);
    printf("copy         %" PRId64 " to copy (%" PRId64 " bytes), %" PRId64
           " already there, %" PRId64 " conflicts, %" PRId64 " skipped, %" PRId64
           " excluded, %" PRId64 " copied, %" PRId64 " failed\n",
           c->pending, c->bytes_pending, c->already_existed, c->conflicts,
           c->skipped, c->excluded, c->successful, c->failed);
    print_snapshots(st);
}

/* Prints s as a JSON string. Paths are UTF-8 in practice; other bytes are
 * written as \u00XX so the output stays valid JSON. */
static void json_str(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    putchar('"');
    for (; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void print_json_status(const tm_status *st)
{
    const tm_tree_counts *s = &st->src_counts, *d = &st->dst_counts;
    const tm_copy_counts *c = &st->copy;
    printf("{\"phase\":");
    json_str(st->phase);
    printf(",\"roots\":{\"src\":");
    json_str(st->src);
    printf(",\"dst\":");
    json_str(st->dst);
    printf("},\"rounds\":{\"src\":%d,\"dst\":%d}", st->src_round, st->dst_round);
    printf(",\"src\":{\"folders\":%" PRId64 ",\"files\":%" PRId64
           ",\"symlinks\":%" PRId64 ",\"other\":%" PRId64 ",\"bytes\":%" PRId64
           ",\"pending\":%" PRId64 ",\"failed\":%" PRId64 ",\"excluded\":%" PRId64
           "}",
           s->folders, s->files, s->symlinks, s->other, s->bytes, s->pending,
           s->failed, s->excluded);
    printf(",\"dst\":{\"folders\":%" PRId64 ",\"files\":%" PRId64
           ",\"symlinks\":%" PRId64 ",\"other\":%" PRId64 ",\"bytes\":%" PRId64
           ",\"pending\":%" PRId64 ",\"failed\":%" PRId64 ",\"not_on_src\":%" PRId64
           "}",
           d->folders, d->files, d->symlinks, d->other, d->bytes, d->pending,
           d->failed, d->not_on_src);
    printf(",\"copy\":{\"pending\":%" PRId64 ",\"in_progress\":%" PRId64
           ",\"successful\":%" PRId64 ",\"already_existed\":%" PRId64
           ",\"failed\":%" PRId64 ",\"skipped\":%" PRId64 ",\"excluded\":%" PRId64
           ",\"conflicts\":%" PRId64 ",\"bytes_pending\":%" PRId64 "}",
           c->pending, c->in_progress, c->successful, c->already_existed,
           c->failed, c->skipped, c->excluded, c->conflicts, c->bytes_pending);
    printf(",\"queues\":[");
    for (int i = 0; i < st->n_queues; i++) {
        const tm_queue_snapshot *q = &st->queues[i];
        printf("%s{\"queue\":\"%s\",\"time\":%" PRId64 ",\"round\":%" PRId64
               ",\"pending\":%" PRId64 ",\"in_flight\":%" PRId64 ",\"done\":%" PRId64
               ",\"failed\":%" PRId64 ",\"bytes_done\":%" PRId64
               ",\"bytes_pending\":%" PRId64 ",\"items_per_s\":%.3f"
               ",\"bytes_per_s\":%.3f}",
               i ? "," : "", q->queue, q->time, q->round, q->pending, q->in_flight,
               q->done, q->failed, q->bytes_done, q->bytes_pending, q->items_per_s,
               q->bytes_per_s);
    }
    printf("],\"eta_seconds\":");
    if (st->eta_seconds >= 0)
        printf("%" PRId64 "}\n", st->eta_seconds);
    else
        printf("null}\n");
}

/* After a phase ran on m with the result rc: on failure reports it (and,
 * when it was interrupted, how to resume), frees m and returns the exit
 * code; on success fills *st and returns -1. */
static int after_run(const char *cmd, tm_migration *m, int rc, tm_status *st)
{
    int code;
    if (!rc)
        rc = tm_status_get(m, st);
    if (!rc)
        return -1;
    code = report_error(cmd, m, rc);
    if (rc == TM_ESTOPPED)
        fprintf(stderr, "treemig %s: interrupted; the state file is consistent: "
                "run the same command to resume\n", cmd);
    tm_migration_free(m);
    return code;
}

/* Runs (or resumes) discovery on m, prints the outcome, frees m and
 * returns the exit code. src/dst NULL: resume with the stored roots. */
static int run_discovery(tm_migration *m, const char *cmd, const char *src,
                         const char *dst, const tm_discover_options *o, int quiet)
{
    int was_complete, rc, code;
    tm_status st;

    /* a complete discovery is reported as such; tm_discover still checks
     * that the arguments match the state file */
    was_complete = tm_status_get(m, &st) == 0 && st.phase[0] &&
                   strcmp(st.phase, "roots-set") != 0 &&
                   strcmp(st.phase, "discovering") != 0 &&
                   strcmp(st.phase, "suspended") != 0;
    running = m;
    install_signals();
    rc = src || dst || strcmp(cmd, "resume") != 0 ? tm_discover(m, src, dst, o)
                                                 : tm_resume(m, o);
    running = NULL;
    if ((code = after_run(cmd, m, rc, &st)) >= 0)
        return code;
    if (was_complete)
        fprintf(stderr, "treemig %s: discovery is already complete (phase %s)\n",
                cmd, st.phase);
    else if (!quiet)
        fprintf(stderr, "treemig %s: discovery is complete\n", cmd);
    if (!quiet)
        print_human_status(&st);
    code = (st.src_counts.failed || st.dst_counts.failed) ? EXIT_PARTIAL : EXIT_OK;
    if (code == EXIT_PARTIAL)
        fprintf(stderr, "treemig %s: %" PRId64 " source and %" PRId64
                " destination items failed; see the task_errors table\n", cmd,
                st.src_counts.failed, st.dst_counts.failed);
    tm_migration_free(m);
    return code;
}

static int cmd_resume(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "workers", required_argument, NULL, 'w' },
        STORAGE_OPTIONS,
        LOG_OPTIONS,
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    tm_discover_options o;
    struct progress prog = { 0, 0, 0 };
    struct logopts lo = { NULL, NULL, NULL, 0 };
    const char *config = NULL;
    struct sopt_list so = { NULL, 0, 0, NULL, 0 };
    tm_migration *m = NULL;
    int quiet = 0, c, rc, code;

    tm_discover_options_init(&o);
    optind = 1;
    while ((c = getopt_long(argc, argv, "qho:", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'o':
            if ((code = sopt_add(&so, "resume", optarg)) != 0) {
                sopt_release(&so);
                return code;
            }
            break;
        case 'w':
            if (parse_int(optarg, 1, 1024, &o.workers))
                return usage_error("resume", "--workers takes a whole number "
                                   "from 1 to 1024, not '%s'", optarg);
            break;
        case 'q':
            quiet = 1;
            break;
        case 'L': case 'U': case 'A': case 'P':
            log_opt(c, optarg, &lo);
            break;
        case 'h':
            sopt_release(&so);
            fputs(resume_usage, stdout);
            return EXIT_OK;
        default:
            if (c > SOPT_BASE && c < SOPT_END &&
                (code = sopt_alias(&so, "resume", c, optarg)) == 0)
                break;
            sopt_release(&so);
            return c > SOPT_BASE && c < SOPT_END
                       ? code
                       : usage_error("resume", "unknown or incomplete option");
        }
    }
    if (!config || optind != argc) {
        sopt_release(&so);
        return !config ? usage_error("resume", "--config FILE.yaml is required")
                       : usage_error("resume", "unexpected argument '%s'",
                                     argv[optind]);
    }
    if (!quiet) {
        prog.tty = isatty(STDERR_FILENO);
        o.progress = on_progress;
        o.progress_ctx = &prog;
    }
    o.log_level = lo.level;
    o.udp_level = lo.udp_level;
    o.udp_addr = lo.udp_addr;
    o.log_public = lo.pub;
    rc = tm_migration_open_config(&m, config);
    if (rc || (code = sopt_apply(m, &so, "resume")) != 0) {
        if (rc)
            code = report_error("resume", m, rc);
        tm_migration_free(m);
        sopt_release(&so);
        return code;
    }
    sopt_release(&so);
    return run_discovery(m, "resume", NULL, NULL, &o, quiet);
}

static int cmd_discover(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "workers", required_argument, NULL, 'w' },
        { "lead", required_argument, NULL, 'l' },
        { "retries", required_argument, NULL, 'r' },
        { "exclude", required_argument, NULL, 'E' },
        { "config", required_argument, NULL, 'c' },
        { "allow-pseudo-fs", no_argument, NULL, 'p' },
        STORAGE_OPTIONS,
        { "owner", no_argument, NULL, 'W' },
        { "no-specials", no_argument, NULL, 'S' },
        { "one-file-system", no_argument, NULL, 'x' },
        { "no-xattrs", no_argument, NULL, 'X' },
        LOG_OPTIONS,
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    tm_discover_options o;
    struct progress prog = { 0, 0, 0 };
    const char *db = DEFAULT_DB;
    const char **excludes = NULL;
    struct sopt_list so = { NULL, 0, 0, NULL, 0 };
    size_t n_ex = 0;
    int quiet = 0, c, rc, code;
    tm_migration *m = NULL;

    tm_discover_options_init(&o);
    excludes = calloc((size_t)argc + 1, sizeof *excludes);
    if (!excludes)
        return EXIT_FATAL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "qho:x", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if ((code = sopt_add(&so, "discover", optarg)) != 0)
                goto out;
            break;
        case 'd':
            db = optarg;
            break;
        case 'w':
            if (parse_int(optarg, 1, 1024, &o.workers)) {
                code = usage_error("discover", "--workers takes a whole number "
                                   "from 1 to 1024, not '%s'", optarg);
                goto out;
            }
            break;
        case 'l':
            if (parse_int(optarg, 1, 1000000, &o.lead)) {
                code = usage_error("discover", "--lead takes a whole number >= 1, "
                                   "not '%s'", optarg);
                goto out;
            }
            break;
        case 'r':
            if (parse_int(optarg, 0, 100, &o.retries)) {
                code = usage_error("discover", "--retries takes a whole number "
                                   "from 0 to 100, not '%s'", optarg);
                goto out;
            }
            break;
        case 'E':
            if (!*optarg || strchr(optarg, '\n')) {
                code = usage_error("discover", "--exclude takes a non-empty glob "
                                   "without newlines");
                goto out;
            }
            excludes[n_ex++] = optarg;
            break;
        case 'c':
            o.config = optarg;
            break;
        case 'p':
            o.allow_pseudo_fs = 1;
            break;
        case 'W':
            o.owner = 1;
            break;
        case 'S':
            o.no_specials = 1;
            break;
        case 'x':
            o.one_file_system = 1;
            break;
        case 'X':
            o.no_xattrs = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'L': o.log_level = optarg; break;
        case 'U': o.udp_level = optarg; break;
        case 'A': o.udp_addr = optarg; break;
        case 'P': o.log_public = 1; break;
        case 'h':
            fputs(discover_usage, stdout);
            code = EXIT_OK;
            goto out;
        default:
            if (c > SOPT_BASE && c < SOPT_END) {
                if ((code = sopt_alias(&so, "discover", c, optarg)) != 0)
                    goto out;
                break;
            }
            code = usage_error("discover", "unknown or incomplete option");
            goto out;
        }
    }
    if (argc - optind != 0 && argc - optind != 2) {
        code = usage_error("discover", "expected SRC and DST (or neither, to "
                           "resume), got %d argument%s", argc - optind,
                           argc - optind == 1 ? "" : "s");
        goto out;
    }
    o.excludes = excludes;
    o.n_excludes = n_ex;
    if (!quiet) {
        prog.tty = isatty(STDERR_FILENO);
        o.progress = on_progress;
        o.progress_ctx = &prog;
    }
    if (argc - optind == 2) {
        /* a new migration: refused before the state file is made (it could
         * be inside a tree) */
        char err[1024];
        struct stat st;
        rc = stat(db, &st) == 0 ? 0 : tm_discover_check(db, argv[optind],
                                                         argv[optind + 1], &o,
                                                         so.kv, so.n, err,
                                                         sizeof err);
        if (rc) {
            fprintf(stderr, "treemig discover: %s\n", err);
            code = exit_code_for(rc);
            goto out;
        }
    }
    rc = tm_migration_open(&m, db, TM_OPEN_WRITE |
                                   (argc - optind == 2 ? TM_OPEN_CREATE : 0));
    if (rc) {
        if (rc == TM_ENODB)
            fprintf(stderr, "treemig discover: no state file at %s; give SRC and "
                    "DST to start a migration\n", db);
        else
            report_error("discover", m, rc);
        tm_migration_free(m);
        code = exit_code_for(rc);
        goto out;
    }
    if ((code = sopt_apply(m, &so, "discover")) != 0) {
        tm_migration_free(m);
        goto out;
    }
    code = run_discovery(m, "discover", argc - optind == 2 ? argv[optind] : NULL,
                         argc - optind == 2 ? argv[optind + 1] : NULL, &o, quiet);
out:
    free(excludes);
    sopt_release(&so);
    return code;
}

/* Asks on a terminal before the copy writes anything. 1: go on. */
static int confirm_copy(tm_migration *m)
{
    tm_status st;
    char answer[16];
    if (tm_status_get(m, &st) != 0)
        return 0;
    fprintf(stderr, "About to copy %" PRId64 " nodes (%" PRId64 " bytes of files) "
            "from\n  %s\nto\n  %s\n(%" PRId64 " conflicts replaced by the "
            "source's version unless --no-overwrite, %" PRId64 " skipped). "
            "Continue? [y/N] ",
            st.copy.pending, st.copy.bytes_pending, st.src, st.dst,
            st.copy.conflicts, st.copy.skipped);
    fflush(stderr);
    if (!fgets(answer, sizeof answer, stdin))
        return 0;
    return answer[0] == 'y' || answer[0] == 'Y';
}

static int parse_exec(int argc, char **argv, const char *cmd, const char *usage,
                      const char **db, tm_exec_options *o, int *quiet, int *yes,
                      struct sopt_list *so)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "workers", required_argument, NULL, 'w' },
        { "retries", required_argument, NULL, 'r' },
        { "no-overwrite", no_argument, NULL, 'n' },
        { "owner", no_argument, NULL, 'W' },
        { "force", no_argument, NULL, 'f' },
        { "checksum", no_argument, NULL, 'c' },
        { "yes", no_argument, NULL, 'y' },
        STORAGE_OPTIONS,
        LOG_OPTIONS,
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c, verify = strcmp(cmd, "verify") == 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "yqho:", opts, NULL)) != -1) {
        if ((verify && (c == 'n' || c == 'W' || c == 'f' || c == 'y' || c == 'r')) ||
            (!verify && c == 'c'))
            c = '?';
        switch (c) {
        case 'd': *db = optarg; break;
        case 'o': {
            int code = sopt_add(so, cmd, optarg);
            if (code)
                return code;
            break;
        }
        case 'w':
            if (parse_int(optarg, 1, 1024, &o->workers))
                return usage_error(cmd, "--workers takes a whole number from 1 "
                                   "to 1024, not '%s'", optarg);
            break;
        case 'r':
            if (parse_int(optarg, 0, 100, &o->retries))
                return usage_error(cmd, "--retries takes a whole number from 0 "
                                   "to 100, not '%s'", optarg);
            break;
        case 'n': o->no_overwrite = 1; break;
        case 'W': o->owner = 1; break;
        case 'f': o->force = 1; break;
        case 'c': o->checksum = 1; break;
        case 'y': *yes = 1; break;
        case 'q': *quiet = 1; break;
        case 'L': o->log_level = optarg; break;
        case 'U': o->udp_level = optarg; break;
        case 'A': o->udp_addr = optarg; break;
        case 'P': o->log_public = 1; break;
        case 'h':
            fputs(usage, stdout);
            return -1;
        default:
            if (c > SOPT_BASE && c < SOPT_END) {
                int code = sopt_alias(so, cmd, c, optarg);
                if (code)
                    return code;
                break;
            }
            return usage_error(cmd, "unknown or incomplete option");
        }
    }
    if (optind != argc)
        return usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    return 0;
}

/* Prints the first max lines of `review --list failed` on stderr, and how
 * many more there are. */
static void print_first_failed(tm_migration *m, int max)
{
    char *buf = NULL, *p, *nl;
    size_t len = 0;
    int64_t more = 0;
    int n = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return;
    if (tm_review_list(m, "failed", NULL, 0, f) != 0)
        len = 0;
    fclose(f);
    for (p = buf; p && len && *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl)
            break;
        if (n++ < max)
            fprintf(stderr, "  %.*s\n", (int)(nl - p), p);
        else
            more++;
    }
    if (more)
        fprintf(stderr, "  ... and %" PRId64 " more\n", more);
    free(buf);
}

/* Warns about the temporary files verify found (task_errors, phase
 * verify-leftover), when there are any. */
static void print_leftovers(tm_migration *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return;
    if (tm_problems_print(m, "verify-leftover", f) != 0)
        len = 0;
    fclose(f);
    if (len)
        fprintf(stderr, "treemig verify: warning: temporary files an interrupted "
                "copy left on the destination (not touched):\n%s", buf);
    free(buf);
}

static int cmd_exec(int argc, char **argv, int verify)
{
    const char *cmd = verify ? "verify" : "copy", *db = DEFAULT_DB;
    struct progress prog = { 0, 0, 0 };
    tm_exec_options o;
    tm_migration *m = NULL;
    tm_status st;
    int64_t mismatches = 0;
    struct sopt_list so = { NULL, 0, 0, NULL, 0 };
    int quiet = 0, yes = 0, rc, code;

    tm_exec_options_init(&o);
    rc = parse_exec(argc, argv, cmd, verify ? verify_usage : copy_usage, &db, &o,
                    &quiet, &yes, &so);
    if (rc) {
        sopt_release(&so);
        return rc < 0 ? EXIT_OK : rc;
    }
    if (!quiet) {
        prog.tty = isatty(STDERR_FILENO);
        o.progress = on_progress;
        o.progress_ctx = &prog;
    }
    rc = tm_migration_open(&m, db, TM_OPEN_WRITE);
    if (rc || (code = sopt_apply(m, &so, cmd)) != 0) {
        if (rc)
            code = report_error(cmd, m, rc);
        tm_migration_free(m);
        sopt_release(&so);
        return code;
    }
    sopt_release(&so);
    if (!verify && !yes && isatty(STDIN_FILENO) && tm_status_get(m, &st) == 0 &&
        (strcmp(st.phase, "discovered") == 0) && !confirm_copy(m)) {
        fprintf(stderr, "treemig copy: nothing done\n");
        tm_migration_free(m);
        return EXIT_OK;
    }
    if (!verify && tm_status_get(m, &st) == 0 &&
        (strcmp(st.phase, "copied") == 0 || strcmp(st.phase, "verified") == 0))
        fprintf(stderr, "treemig copy: the copy is already complete (phase %s); "
                "'treemig retry' redoes failed nodes\n", st.phase);
    running = m;
    install_signals();
    rc = verify ? tm_verify(m, &o, &mismatches) : tm_copy(m, &o);
    running = NULL;
    if ((code = after_run(cmd, m, rc, &st)) >= 0)
        return code;
    if (verify) {
        print_leftovers(m);
        if (mismatches) {
            fprintf(stderr, "treemig verify: not verified: %" PRId64 " nodes do "
                    "not match or could not be checked:\n", mismatches);
            tm_problems_print(m, "verify", stderr);
            fprintf(stderr, "what did not match is marked failed (treemig review "
                    "--list failed): 'treemig retry' copies it again, then run "
                    "verify again\n");
        } else if (!quiet) {
            fprintf(stderr, "treemig verify: every source node was checked and "
                    "matches (phase %s)\n", st.phase);
        }
        code = mismatches ? EXIT_PARTIAL : EXIT_OK;
    } else {
        if (!quiet)
            print_human_status(&st);
        /* with --force, folders that could not be listed are left out:
         * the copy is partial even when every node it had succeeded */
        code = st.copy.failed || st.src_counts.failed ? EXIT_PARTIAL : EXIT_OK;
        if (st.copy.failed) {
            fprintf(stderr, "treemig copy: %" PRId64 " nodes failed:\n",
                    st.copy.failed);
            print_first_failed(m, 10);
            fprintf(stderr, "see 'treemig review --list failed', fix the cause, "
                    "then 'treemig retry'\n");
        } else if (code == EXIT_PARTIAL) {
            fprintf(stderr, "treemig copy: partial: %" PRId64 " source folders "
                    "could not be listed, so what they hold was not copied: fix "
                    "the cause, then 'treemig retry'\n", st.src_counts.failed);
        }
    }
    tm_migration_free(m);
    return code;
}

static int cmd_retry(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "workers", required_argument, NULL, 'w' },
        { "retries", required_argument, NULL, 'r' },
        { "owner", no_argument, NULL, 'W' },
        STORAGE_OPTIONS,
        LOG_OPTIONS,
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = DEFAULT_DB;
    struct progress prog = { 0, 0, 0 };
    struct logopts lo = { NULL, NULL, NULL, 0 };
    tm_discover_options d;
    tm_exec_options e;
    tm_migration *m = NULL;
    tm_status st;
    int64_t retried = 0;
    struct sopt_list so = { NULL, 0, 0, NULL, 0 };
    int quiet = 0, c, rc, code;

    tm_discover_options_init(&d);
    tm_exec_options_init(&e);
    optind = 1;
    while ((c = getopt_long(argc, argv, "qho:", opts, NULL)) != -1) {
        switch (c) {
        case 'd': db = optarg; break;
        case 'o':
            if ((code = sopt_add(&so, "retry", optarg)) != 0) {
                sopt_release(&so);
                return code;
            }
            break;
        case 'w':
            if (parse_int(optarg, 1, 1024, &d.workers)) {
                sopt_release(&so);
                return usage_error("retry", "--workers takes a whole number from "
                                   "1 to 1024, not '%s'", optarg);
            }
            e.workers = d.workers;
            break;
        case 'r':
            if (parse_int(optarg, 0, 100, &d.retries)) {
                sopt_release(&so);
                return usage_error("retry", "--retries takes a whole number from "
                                   "0 to 100, not '%s'", optarg);
            }
            e.retries = d.retries;
            break;
        case 'W': e.owner = 1; break;
        case 'q': quiet = 1; break;
        case 'L': case 'U': case 'A': case 'P':
            log_opt(c, optarg, &lo);
            break;
        case 'h':
            sopt_release(&so);
            fputs(retry_usage, stdout);
            return EXIT_OK;
        default:
            if (c > SOPT_BASE && c < SOPT_END &&
                (code = sopt_alias(&so, "retry", c, optarg)) == 0)
                break;
            sopt_release(&so);
            return c > SOPT_BASE && c < SOPT_END
                       ? code
                       : usage_error("retry", "unknown or incomplete option");
        }
    }
    if (optind != argc)
        return sopt_release(&so), usage_error("retry", "unexpected argument '%s'", argv[optind]);
    if (!quiet) {
        prog.tty = isatty(STDERR_FILENO);
        d.progress = e.progress = on_progress;
        d.progress_ctx = e.progress_ctx = &prog;
    }
    d.log_level = e.log_level = lo.level;
    d.udp_level = e.udp_level = lo.udp_level;
    d.udp_addr = e.udp_addr = lo.udp_addr;
    d.log_public = e.log_public = lo.pub;
    rc = tm_migration_open(&m, db, TM_OPEN_WRITE);
    if (!rc && so.n)
        rc = tm_migration_set_storage_options(m, so.kv, so.n);
    sopt_release(&so);
    if (!rc) {
        running = m;
        install_signals();
        rc = tm_retry(m, &d, &e, &retried);
        running = NULL;
    }
    if (!rc)
        rc = tm_status_get(m, &st);
    if (rc) {
        code = report_error("retry", m, rc);
        tm_migration_free(m);
        return code;
    }
    if (!quiet) {
        fprintf(stderr, "treemig retry: %" PRId64 " items retried\n", retried);
        print_human_status(&st);
    }
    code = (st.src_counts.failed || st.dst_counts.failed || st.copy.failed)
               ? EXIT_PARTIAL : EXIT_OK;
    tm_migration_free(m);
    return code;
}

static int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = DEFAULT_DB;
    int json = 0, c, rc;
    tm_migration *m = NULL;
    tm_status st;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(status_usage, stdout);
            return EXIT_OK;
        default:
            return usage_error("status", "unknown or incomplete option");
        }
    }
    if (optind != argc)
        return usage_error("status", "unexpected argument '%s'", argv[optind]);
    rc = tm_migration_open(&m, db, TM_OPEN_READONLY);
    if (!rc)
        rc = tm_status_get(m, &st);
    if (rc) {
        int code = report_error("status", m, rc);
        tm_migration_free(m);
        return code;
    }
    if (json)
        print_json_status(&st);
    else
        print_human_status(&st);
    tm_migration_free(m);
    return EXIT_OK;
}

static int cmd_sim_stats(int argc, char **argv)
{
    static const struct option opts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    char err[512], *json = NULL;
    int c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(sim_stats_usage, stdout);
            return EXIT_OK;
        }
        return usage_error("sim-stats", "unknown option");
    }
    if (argc - optind != 1)
        return usage_error("sim-stats", "expected one SPEC");
    err[0] = '\0';
    rc = tm_sim_stats(argv[optind], &json, err, sizeof err);
    if (rc) {
        fprintf(stderr, "treemig sim-stats: %s\n", err[0] ? err : tm_strerror(rc));
        return rc == TM_EBADSPEC || rc == TM_EINVAL ? EXIT_USAGE : EXIT_FATAL;
    }
    printf("%s\n", json);
    free(json);
    return EXIT_OK;
}

/* One line for a library: the version loaded at run time, and the one the
 * binary was compiled against when they differ. */
static void print_lib_version(const char *name, const char *run, const char *built)
{
    if (strcmp(run, built) != 0)
        printf("%-8s %s (built with %s)\n", name, run, built);
    else
        printf("%-8s %s\n", name, run);
}

/* treemig --version: the version of treemig (CMake's project version,
 * through treemig_version.h) and of the libraries it runs with. */
static int print_version(void)
{
    char xxh_run[32], xxh_built[32];
    unsigned n = XXH_versionNumber();

    printf("treemig %s\n", TM_VERSION_STRING);
    print_lib_version("SQLite", sqlite3_libversion(), SQLITE_VERSION);
    /* yaml.h has no version macro: only the run-time one is known */
    printf("%-8s %s\n", "libyaml", yaml_get_version_string());
    snprintf(xxh_run, sizeof xxh_run, "%u.%u.%u", n / 10000, n / 100 % 100, n % 100);
    snprintf(xxh_built, sizeof xxh_built, "%d.%d.%d", XXH_VERSION_MAJOR,
             XXH_VERSION_MINOR, XXH_VERSION_RELEASE);
    print_lib_version("xxHash", xxh_run, xxh_built);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    const char *cmd;
    if (argc < 2) {
        fputs(main_usage, stderr);
        return EXIT_USAGE;
    }
    cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        fputs(main_usage, stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version"))
        return print_version();
    if (!strcmp(cmd, "help")) {
        const char *what = argc > 2 ? argv[2] : NULL;
        if (!what)
            fputs(main_usage, stdout);
        else if (!strcmp(what, "discover"))
            fputs(discover_usage, stdout);
        else if (!strcmp(what, "status"))
            fputs(status_usage, stdout);
        else if (!strcmp(what, "resume"))
            fputs(resume_usage, stdout);
        else if (!strcmp(what, "copy"))
            fputs(copy_usage, stdout);
        else if (!strcmp(what, "retry"))
            fputs(retry_usage, stdout);
        else if (!strcmp(what, "log-listen")) {
            char *args[] = { (char *)what, (char *)"--help", NULL };
            return cmd_log_listen(2, args);
        }
        else if (!strcmp(what, "verify"))
            fputs(verify_usage, stdout);
        else if (!strcmp(what, "review") || !strcmp(what, "exclude") ||
                 !strcmp(what, "unexclude")) {
            char *args[] = { (char *)what, (char *)"--help", NULL };
            return !strcmp(what, "review") ? cmd_review(2, args)
                                           : cmd_exclude(2, args, what[0] == 'u');
        }
        else if (!strcmp(what, "sim-stats"))
            fputs(sim_stats_usage, stdout);
        else if (!strcmp(what, "ui")) {
            char *args[] = { (char *)what, (char *)"--help", NULL };
            return cmd_ui(2, args);
        }
        else
            return usage_error(NULL, "no such command '%s'", what);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "discover"))
        return cmd_discover(argc - 1, argv + 1);
    if (!strcmp(cmd, "status"))
        return cmd_status(argc - 1, argv + 1);
    if (!strcmp(cmd, "resume"))
        return cmd_resume(argc - 1, argv + 1);
    if (!strcmp(cmd, "copy"))
        return cmd_exec(argc - 1, argv + 1, 0);
    if (!strcmp(cmd, "retry"))
        return cmd_retry(argc - 1, argv + 1);
    if (!strcmp(cmd, "verify"))
        return cmd_exec(argc - 1, argv + 1, 1);
    if (!strcmp(cmd, "review"))
        return cmd_review(argc - 1, argv + 1);
    if (!strcmp(cmd, "exclude") || !strcmp(cmd, "unexclude"))
        return cmd_exclude(argc - 1, argv + 1, cmd[0] == 'u');
    if (!strcmp(cmd, "sim-stats"))
        return cmd_sim_stats(argc - 1, argv + 1);
    if (!strcmp(cmd, "log-listen"))
        return cmd_log_listen(argc - 1, argv + 1);
    if (!strcmp(cmd, "ui"))
        return cmd_ui(argc - 1, argv + 1);
    return usage_error(NULL, "no such command '%s'", cmd);
}
