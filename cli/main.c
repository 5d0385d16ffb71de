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
    "  rescan     a new pass: discover both trees again (the cutover)\n"
    "  worker     join a copy or verify on a PostgreSQL database (many hosts)\n"
    "  delete     remove what exists only on the destination (the mirror)\n"
    "  state-copy copy a migration's state between SQLite and PostgreSQL\n"
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
    "  --exclude GLOB   exclude matching source nodes (repeatable)\n"
    "  --include GLOB   include matching source nodes (repeatable): with\n"
    "                   --exclude, the first rule that matches a node decides,\n"
    "                   in the order given (as rsync); no match: included.\n"
    "                   GLOB as rsync: '/' first anchors it at the root\n"
    "                   ('/logs/*.tmp'); without a '/' it matches the name\n"
    "                   ('*.tmp'), else the end of the path ('cache/*'); '*'\n"
    "                   stops at '/', '**' does not ('/src/**.o'); '?', [abc],\n"
    "                   \\ escapes; a trailing '/' matches folders only;\n"
    "                   'dir/***' the folder and all below it. An excluded\n"
    "                   folder is not entered (docs/filters.md)\n"
    "  --exclude-from FILE  --exclude for each line of FILE ('+ GLOB' and\n"
    "                   '- GLOB' say their own kind; blank lines and lines\n"
    "                   starting with '#' or ';' are skipped; '-': stdin)\n"
    "  --include-from FILE  --include for each line of FILE (the same)\n"
    "  --min-size SIZE  exclude files smaller than SIZE: bytes, or with K, M,\n"
    "                   G, T (powers of 1024) or KB, MB, GB, TB (of 1000)\n"
    "  --max-size SIZE  exclude files larger than SIZE\n"
    "  --max-age AGE    exclude files modified more than AGE ago (from the\n"
    "                   start of the migration): seconds, or with s, m\n"
    "                   (minutes), h, d, w\n"
    "  --min-age AGE    exclude files modified less than AGE ago\n"
    "  --size-only      a file of the same size on both sides is already there,\n"
    "                   whatever its mtime (on S3 whatever its mode too, and a\n"
    "                   folder's: no HEAD, sizes from the listing)\n"
    "  --checksum       a file of the same size but another mtime is compared\n"
    "                   by content (both read, by the listing workers): the same\n"
    "                   content is already there (its hash kept for verify\n"
    "                   --checksum), another is a conflict 'content'\n"
    "  --modify-window N  mtimes that differ by at most N seconds are equal\n"
    "                   (0..86400; 2 for FAT, 1 for some SMB and SFTP servers)\n"
    "                   The filters and the comparison are for a new migration;\n"
    "                   they are recorded and shown by review\n"
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
    "  --shared         share the discovery: its folders are claimed under\n"
    "                   leases, and 'treemig worker --db URI' processes on\n"
    "                   other machines may join it (a PostgreSQL --db only;\n"
    "                   a new migration; recorded). Alone it lists at about\n"
    "                   twice the time of an unshared discovery\n"
    STORAGE_USAGE
    LOG_USAGE
    "  -q, --quiet      no progress lines\n"
    "  -h, --help       show this help\n"
    "\n"
    "A local DST that does not exist is made when its parent folder does.\n"
    "SRC and DST must not overlap by any route (a bind mount counts), nor hold\n"
    "the state file or the YAML file; each root is recorded, and a later\n"
    "command refuses a root that is no longer that folder.\n"
    "\n"
    "exit codes: 0 complete, 1 fatal error, 2 usage error, 3 complete but some\n"
    "folders could not be listed, 4 interrupted, 5 state file in use.\n";

static const char resume_usage[] =
    "usage: treemig resume --config FILE.yaml [--workers N] [STORAGE OPTIONS]\n"
    "                      [LOG OPTIONS] [--quiet]\n"
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
    "  -h, --help      show this help\n"
    "\n"
    "exit codes: 0 complete (or already complete), 1 fatal error, 2 usage\n"
    "error or a YAML file that does not match its state file, 3 complete but\n"
    "some folders could not be listed, 4 interrupted, 5 state file in use.\n";

static const char copy_usage[] =
    "usage: treemig copy [--db FILE] [--yes] [--workers N] [--retries N]\n"
    "                    [--no-overwrite] [--update] [--backup-dir DIR]\n"
    "                    [--owner] [--force] [--dry-run] [--log-file FILE]\n"
    "                    [--bwlimit RATE] [--tps-limit N]\n"
    "                    [STORAGE OPTIONS] [LOG OPTIONS] [--quiet]\n"
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
    "  --update         keep a file or symlink whose mtime on the destination\n"
    "                   is later than the source's, whatever its size (as\n"
    "                   it is at the copy: edits since discovery count)\n"
    "  --backup-dir DIR move each file or symlink the copy replaces into\n"
    "                   DIR, a folder inside the destination (relative to its\n"
    "                   root, or an absolute path below it), its path kept\n"
    "                   (DIR/a/b for /a/b); treemig delete never removes DIR\n"
    "  --owner          give each copied node its source's owner and group\n"
    "                   (root only; without it, the copy's user owns them);\n"
    "                   implied when discover was given --owner\n"
    "  --dry-run        print what the copy would do, one line per node as\n"
    "                   review --list: create, replace (with the reason) or\n"
    "                   set-attrs; nothing is changed, no storage is opened\n"
    "  --log-file FILE  append one line per node the copy handled to FILE:\n"
    "                   created, replaced, attrs, linked, skipped or failed,\n"
    "                   type, size, path and reason (docs/logging.md)\n"
    "  --bwlimit RATE   bytes per second on each side, read or written: a\n"
    "                   number and a unit, 500K, 1.5M, 1G (1024-based; KB,\n"
    "                   MB: 1000-based; no unit: KiB, as rsync); 0: none\n"
    "  --tps-limit N    requests per second on each side (stat, a listing's\n"
    "                   page, open, commit, mkdir, ...), for storages that\n"
    "                   throttle; 0: none\n"
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
    "usage: treemig verify [--db FILE] [--checksum] [--workers N] [--retries N]\n"
    "                      [--bwlimit RATE] [--tps-limit N]\n"
    "                      [STORAGE OPTIONS] [LOG OPTIONS] [--quiet]\n"
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
    "  --retries N   retries of a read that fails transiently (default 3)\n"
    "  --bwlimit RATE  bytes per second read on each side, as for copy\n"
    "  --tps-limit N   requests per second on each side, as for copy\n"
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
    "                     [--log-file FILE] [STORAGE OPTIONS] [LOG OPTIONS]\n"
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
    "  --log-file FILE  as for copy: the itemized log of the copies redone\n"
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
    "  -h, --help  show this help\n"
    "\n"
    "exit codes: 0 shown, 1 fatal error (a damaged state file), 2 usage error\n"
    "or no state file.\n";

static const char sim_stats_usage[] =
    "usage: treemig sim-stats SPEC\n"
    "\n"
    "Prints, as one JSON object, the ground truth of a simulated storage pair:\n"
    "the folders, files and bytes of the source and destination worlds, and the\n"
    "counts a discovery of the pair must find. SPEC is the destination's\n"
    "'sim:...' spec, which names its source world too (docs/sim.md).\n"
    "\n"
    "options:\n"
    "  -h, --help  show this help\n"
    "\n"
    "exit codes: 0 printed, 1 fatal error, 2 usage error or a bad SPEC.\n";

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

/* Writes n bytes for people: "1.6 GiB", "512 B". */
static void human_size(int64_t n, char *out, size_t len)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, len, "%" PRId64 " B", n);
    else
        snprintf(out, len, "%.1f %s", v, unit[u]);
}

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
                strncmp(line, "copied:", 7) == 0 ||
                strncmp(line, "verified:", 9) == 0 ||
                strncmp(line, "note:", 5) == 0;
    if (p->tty) {
        fprintf(stderr, "\r%s%*s", line,
                p->last_len > len ? (int)(p->last_len - len) : 0, "");
        if (final)
            fputc('\n', stderr);
        p->last_len = final ? 0 : len;
    } else {
        int64_t now = mono_ns();
        if (!final && now - p->last_ns < 5000000000LL)
            return;
        p->last_ns = now;
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

/* On a terminal, clears the live line a run left (interrupted, or before
 * a summary), so that what follows starts on a clean line. */
static void progress_clear(struct progress *p)
{
    if (p->tty && p->last_len) {
        fprintf(stderr, "\r%*s\r", (int)p->last_len, "");
        fflush(stderr);
        p->last_len = 0;
    }
}

/* Writes an ETA as the live line does: "ETA 1:02:03", "ETA \u2014" when
 * it is not known yet. */
static void fmt_eta(int64_t s, char *out, size_t len)
{
    if (s < 0)
        snprintf(out, len, "ETA \u2014");
    else
        snprintf(out, len, "ETA %" PRId64 ":%02" PRId64 ":%02" PRId64, s / 3600,
                 s / 60 % 60, s % 60);
}

static void print_snapshots(const tm_status *st, int active)
{
    int i;
    for (i = 0; i < st->n_queues; i++) {
        const tm_queue_snapshot *q = &st->queues[i];
        time_t t = (time_t)(q->time / 1000000000);
        struct tm tmv;
        char when[32];
        localtime_r(&t, &tmv);
        strftime(when, sizeof when, "%H:%M:%S", &tmv);
        /* a copy goes depth by depth; discovery's lists go in rounds */
        int by_depth = !strcmp(q->queue, "copy") || !strcmp(q->queue, "verify");
        printf("queue %-6s %s: %s %" PRId64 ", %" PRId64 " pending, %" PRId64
               " in flight, %" PRId64 " done, %" PRId64 " failed, %.1f/s",
               q->queue, when, by_depth ? "depth" : "round", q->round, q->pending,
               q->in_flight, q->done, q->failed, q->items_per_s);
        if (q->bytes_per_s > 0) {
            char rate[32];
            human_size((int64_t)q->bytes_per_s, rate, sizeof rate);
            printf(", %s/s", rate);
        }
        putchar('\n');
    }
    if (!strcmp(st->phase, "copying")) {
        char eta[32];
        fmt_eta(st->eta_seconds, eta, sizeof eta);
        printf("copy         %s\n", eta);
    }
    if (active == 0 && (!strcmp(st->phase, "copying") ||
                            !strcmp(st->phase, "discovering")))
        printf("workers      none: no process holds a lease or reported in the "
               "last 10 s (killed?); 'treemig resume' (or %s) continues the "
               "phase, and workers may join it\n",
               !strcmp(st->phase, "copying") ? "'treemig copy'" : "'treemig discover'");
}

/* m: for the processes at work (tm_status_active), or NULL */
static void print_human_status(const tm_status *st, tm_migration *m)
{
    int active = -1;
    const tm_tree_counts *s = &st->src_counts, *d = &st->dst_counts;
    const tm_copy_counts *c = &st->copy;
    char sb[32], db[32], cb[32];
    human_size(s->bytes, sb, sizeof sb);
    human_size(d->bytes, db, sizeof db);
    human_size(c->bytes_pending, cb, sizeof cb);
    printf("phase        %s\n", st->phase);
    printf("source       %s (round %d)\n", st->src, st->src_round);
    printf("destination  %s (round %d)\n", st->dst, st->dst_round);
    printf("source       %" PRId64 " folders, %" PRId64 " files, %" PRId64
           " symlinks, %" PRId64 " other, %s; %" PRId64
           " pending, %" PRId64 " failed, %" PRId64 " excluded\n",
           s->folders, s->files, s->symlinks, s->other, sb, s->pending,
           s->failed, s->excluded);
    printf("destination  %" PRId64 " folders, %" PRId64 " files, %" PRId64
           " symlinks, %" PRId64 " other, %s; %" PRId64
           " pending, %" PRId64 " failed, %" PRId64 " not on source\n",
           d->folders, d->files, d->symlinks, d->other, db, d->pending,
           d->failed, d->not_on_src);
    printf("copy         %" PRId64 " to copy (%s), %" PRId64
           " already there, %" PRId64 " conflicts, %" PRId64 " skipped, %" PRId64
           " excluded, %" PRId64 " copied, %" PRId64 " failed\n",
           c->pending, cb, c->already_existed, c->conflicts,
           c->skipped, c->excluded, c->successful, c->failed);
    if (m && tm_status_active(m, &active) != 0)
        active = -1; /* the status above stands without it */
    print_snapshots(st, active);
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
    if (o->progress_ctx)
        progress_clear(o->progress_ctx);
    if ((code = after_run(cmd, m, rc, &st)) >= 0)
        return code;
    if (was_complete)
        fprintf(stderr, "treemig %s: discovery is already complete (phase %s); "
                "'treemig rescan' starts a new pass\n", cmd, st.phase);
    else if (!quiet)
        fprintf(stderr, "treemig %s: discovery is complete\n", cmd);
    if (!quiet)
        print_human_status(&st, m);
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
                       : option_error("resume", argc, argv, opts);
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
        { "include", required_argument, NULL, 'I' },
        { "exclude-from", required_argument, NULL, 0x80 },
        { "include-from", required_argument, NULL, 0x81 },
        { "min-size", required_argument, NULL, 0x82 },
        { "max-size", required_argument, NULL, 0x83 },
        { "min-age", required_argument, NULL, 0x84 },
        { "max-age", required_argument, NULL, 0x85 },
        { "size-only", no_argument, NULL, 0x86 },
        { "checksum", no_argument, NULL, 0x87 },
        { "modify-window", required_argument, NULL, 0x88 },
        { "config", required_argument, NULL, 'c' },
        { "allow-pseudo-fs", no_argument, NULL, 'p' },
        STORAGE_OPTIONS,
        { "owner", no_argument, NULL, 'W' },
        { "no-specials", no_argument, NULL, 'S' },
        { "one-file-system", no_argument, NULL, 'x' },
        { "no-xattrs", no_argument, NULL, 'X' },
        { "shared", no_argument, NULL, 0x89 },
        LOG_OPTIONS,
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    tm_discover_options o;
    struct progress prog = { 0, 0, 0 };
    const char *db = DEFAULT_DB;
    struct rule_list rules = { NULL, 0, 0 };
    struct sopt_list so = { NULL, 0, 0, NULL, 0 };
    int quiet = 0, c, rc, code, made = 0;
    tm_migration *m = NULL;

    tm_discover_options_init(&o);
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
        case 'I':
            if ((code = rules_add(&rules, "discover", c == 'I' ? "--include"
                                  : "--exclude", optarg, c == 'I')) != 0)
                goto out;
            break;
        case 0x80:
        case 0x81:
            if ((code = rules_read(&rules, "discover", c == 0x81 ? "--include-from"
                                   : "--exclude-from", optarg, c == 0x81)) != 0)
                goto out;
            break;
        case 0x82:
        case 0x83: {
            int64_t *v = c == 0x82 ? &o.min_size : &o.max_size;
            if (parse_size(optarg, v) || (c == 0x83 && *v == 0)) {
                code = usage_error("discover", "--%s takes a size in bytes with an "
                                   "optional unit (K, M, G, T: powers of 1024; KB, "
                                   "MB, GB, TB: of 1000)%s, not '%s'",
                                   c == 0x82 ? "min-size" : "max-size",
                                   c == 0x83 ? ", above 0" : "", optarg);
                goto out;
            }
            break;
        }
        case 0x84:
        case 0x85: {
            int64_t *v = c == 0x84 ? &o.min_age : &o.max_age;
            if (parse_age(optarg, v) || (c == 0x85 && *v == 0) ||
                *v > 100LL * 366 * 86400) {
                code = usage_error("discover", "--%s takes an age with an optional "
                                   "unit (s, m minutes, h, d, w; seconds without "
                                   "one)%s, up to 100 years, not '%s'",
                                   c == 0x84 ? "min-age" : "max-age",
                                   c == 0x85 ? ", above 0" : "", optarg);
                goto out;
            }
            break;
        }
        case 0x86:
        case 0x87: {
            int want = c == 0x86 ? TM_COMPARE_SIZE_ONLY : TM_COMPARE_CHECKSUM;
            if (o.compare && o.compare != want) {
                code = usage_error("discover", "--size-only and --checksum exclude "
                                   "each other");
                goto out;
            }
            o.compare = want;
            break;
        }
        case 0x88:
            if (parse_int(optarg, 0, 86400, &o.modify_window)) {
                code = usage_error("discover", "--modify-window takes a whole number "
                                   "of seconds from 0 to 86400, not '%s'", optarg);
                goto out;
            }
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
        case 0x89:
            o.shared = 1;
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
            code = option_error("discover", argc, argv, opts);
            goto out;
        }
    }
    if (argc - optind != 0 && argc - optind != 2) {
        code = usage_error("discover", "expected SRC and DST (or neither, to "
                           "resume), got %d argument%s", argc - optind,
                           argc - optind == 1 ? "" : "s");
        goto out;
    }
    if (o.shared && !is_pg_uri(db)) {
        /* before anything is made (tm_discover says the same) */
        code = usage_error("discover", "--shared: workers share a discovery through "
                           "a PostgreSQL state database (--db postgresql://...), not "
                           "the state file %s", db);
        goto out;
    }
    o.excludes = (const char *const *)rules.v;
    o.n_excludes = rules.n;
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
        rc = stat(db, &st) == 0 ? 0 : tm_dst_root_create(argv[optind],
                                                         argv[optind + 1], &made,
                                                         err, sizeof err);
        if (made)
            fprintf(stderr, "treemig discover: the destination root %s did not "
                    "exist: created it (its parent folder exists)\n",
                    argv[optind + 1]);
        if (!rc)
            rc = stat(db, &st) == 0 ? 0 : tm_discover_check(db, argv[optind],
                                                            argv[optind + 1], &o,
                                                            so.kv, so.n, err,
                                                            sizeof err);
        if (rc) {
            fprintf(stderr, "treemig discover: %s\n", err);
            /* refused: the folder made a moment ago goes again */
            if (made && rmdir(argv[optind + 1]) == 0)
                fprintf(stderr, "treemig discover: removed %s again\n",
                        argv[optind + 1]);
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
    if (code && made && !is_pg_uri(db)) {
        /* refused before anything was recorded (an option's check): the
         * state file was not kept, and the folder made for it goes again
         * if it is still empty (a migration recorded keeps its root) */
        struct stat st;
        if (stat(db, &st) != 0 && errno == ENOENT && rmdir(argv[optind + 1]) == 0)
            fprintf(stderr, "treemig discover: removed %s again\n", argv[optind + 1]);
    }
out:
    rules_release(&rules);
    sopt_release(&so);
    return code;
}

/* Asks on a terminal before the copy writes anything. 1: go on. */
static int confirm_copy(tm_migration *m)
{
    tm_status st;
    char answer[16], size[32];
    if (tm_status_get(m, &st) != 0)
        return 0;
    human_size(st.copy.bytes_pending, size, sizeof size);
    fprintf(stderr, "About to copy %" PRId64 " nodes (%s of files) "
            "from\n  %s\nto\n  %s\n(%" PRId64 " conflicts replaced by the "
            "source's version unless --no-overwrite, %" PRId64 " skipped). "
            "Continue? [y/N] ",
            st.copy.pending, size, st.src, st.dst,
            st.copy.conflicts, st.copy.skipped);
    fflush(stderr);
    if (!fgets(answer, sizeof answer, stdin))
        return 0;
    return answer[0] == 'y' || answer[0] == 'Y';
}

static int parse_exec(int argc, char **argv, const char *cmd, const char *usage,
                      const char **db, tm_exec_options *o, int *quiet, int *yes,
                      int *dry_run, const char **log_file, double limits[2],
                      struct sopt_list *so, const char **backup_dir)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "workers", required_argument, NULL, 'w' },
        { "retries", required_argument, NULL, 'r' },
        { "no-overwrite", no_argument, NULL, 'n' },
        { "update", no_argument, NULL, 'u' },
        { "backup-dir", required_argument, NULL, 'b' },
        { "owner", no_argument, NULL, 'W' },
        { "force", no_argument, NULL, 'f' },
        { "checksum", no_argument, NULL, 'c' },
        { "yes", no_argument, NULL, 'y' },
        { "dry-run", no_argument, NULL, 'D' },
        { "log-file", required_argument, NULL, 'F' },
        { "bwlimit", required_argument, NULL, 'B' },
        { "tps-limit", required_argument, NULL, 'T' },
        STORAGE_OPTIONS,
        LOG_OPTIONS,
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c, verify = strcmp(cmd, "verify") == 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "yqho:", opts, NULL)) != -1) {
        if ((verify && (c == 'n' || c == 'u' || c == 'b' || c == 'W' || c == 'f' ||
                        c == 'y' || c == 'D' || c == 'F')) ||
            (!verify && c == 'c'))
            return option_refused(cmd, opts, c);
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
        case 'u': o->update = 1; break;
        case 'b': *backup_dir = optarg; break;
        case 'W': o->owner = 1; break;
        case 'f': o->force = 1; break;
        case 'c': o->checksum = 1; break;
        case 'y': *yes = 1; break;
        case 'D': *dry_run = 1; break;
        case 'B':
            if (parse_rate(optarg, &limits[0]))
                return usage_error(cmd, "--bwlimit takes a rate with a unit (B, "
                                   "K, M, G, T; KiB without one), e.g. 500K or "
                                   "1.5M, not '%s'", optarg);
            break;
        case 'T':
            if (parse_tps(optarg, &limits[1]))
                return usage_error(cmd, "--tps-limit takes a number of operations "
                                   "per second >= 0, not '%s'", optarg);
            break;
        case 'F':
            if (!*optarg)
                return usage_error(cmd, "--log-file takes a file name");
            *log_file = optarg;
            break;
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
            return option_error(cmd, argc, argv, opts);
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

/* copy --dry-run: prints the copy's plan from the state file, opened
 * read-only (no lock, no phase change, no storage opened). */
static int copy_dry_run(const char *db, int no_overwrite)
{
    tm_migration *m = NULL;
    tm_status st;
    int64_t counts[3], bytes = 0;
    char human[32];
    int rc, code;

    rc = tm_migration_open(&m, db, TM_OPEN_READONLY);
    if (!rc)
        rc = tm_status_get(m, &st);
    if (rc) {
        code = report_error("copy", m, rc);
        tm_migration_free(m);
        return code;
    }
    if (!strcmp(st.phase, "roots-set") || !strcmp(st.phase, "discovering") ||
        st.src_counts.pending || st.dst_counts.pending) {
        fprintf(stderr, "treemig copy: the copy needs a complete discovery (phase "
                "%s): run 'treemig discover' first\n", st.phase);
        tm_migration_free(m);
        return EXIT_USAGE;
    }
    rc = tm_copy_plan(m, no_overwrite, 0, stdout, counts, &bytes);
    if (rc) {
        code = report_error("copy", m, rc);
        tm_migration_free(m);
        return code;
    }
    human_size(bytes, human, sizeof human);
    fprintf(stderr, "treemig copy: dry run: would create %" PRId64 ", replace %"
            PRId64 " and set the attributes of %" PRId64 " nodes (%s of files to "
            "write%s); nothing was changed\n", counts[0], counts[1], counts[2],
            human, no_overwrite ? "; --no-overwrite keeps what differs" : "");
    tm_migration_free(m);
    return EXIT_OK;
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
    const char *backup_dir = NULL;
    const char *log_file = NULL;
    double limits[2] = { 0, 0 };
    int quiet = 0, yes = 0, dry_run = 0, rc, code;

    tm_exec_options_init(&o);
    rc = parse_exec(argc, argv, cmd, verify ? verify_usage : copy_usage, &db, &o,
                    &quiet, &yes, &dry_run, &log_file, limits, &so, &backup_dir);
    if (rc) {
        sopt_release(&so);
        return rc < 0 ? EXIT_OK : rc;
    }
    if (dry_run) {
        sopt_release(&so);
        return copy_dry_run(db, o.no_overwrite);
    }
    if (!quiet) {
        prog.tty = isatty(STDERR_FILENO);
        o.progress = on_progress;
        o.progress_ctx = &prog;
    }
    rc = tm_migration_open(&m, db, TM_OPEN_WRITE);
    if (!rc && log_file)
        rc = tm_migration_set_item_log(m, log_file);
    if (!rc)
        rc = tm_migration_set_limits(m, limits[0], limits[1]);
    if (rc || (code = sopt_apply(m, &so, cmd)) != 0) {
        if (rc)
            code = report_error(cmd, m, rc);
        tm_migration_free(m);
        sopt_release(&so);
        return code;
    }
    sopt_release(&so);
    if (!verify && (rc = tm_set_backup_dir(m, backup_dir)) != 0) {
        code = report_error(cmd, m, rc);
        tm_migration_free(m);
        return code;
    }
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
    progress_clear(&prog);
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
            print_human_status(&st, m);
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
        { "log-file", required_argument, NULL, 'F' },
        STORAGE_OPTIONS,
        LOG_OPTIONS,
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = DEFAULT_DB, *log_file = NULL;
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
        case 'F':
            if (!*optarg) {
                sopt_release(&so);
                return usage_error("retry", "--log-file takes a file name");
            }
            log_file = optarg;
            break;
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
                       : option_error("retry", argc, argv, opts);
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
    if (!rc && log_file)
        rc = tm_migration_set_item_log(m, log_file);
    if (!rc && so.n)
        rc = tm_migration_set_storage_options(m, so.kv, so.n);
    sopt_release(&so);
    if (!rc) {
        running = m;
        install_signals();
        rc = tm_retry(m, &d, &e, &retried);
        running = NULL;
        progress_clear(&prog);
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
        print_human_status(&st, m);
    }
    code = (st.src_counts.failed || st.dst_counts.failed || st.copy.failed)
               ? EXIT_PARTIAL : EXIT_OK;
    if (code == EXIT_PARTIAL) {
        fprintf(stderr, "treemig retry: %" PRId64 " items still fail:\n",
                st.src_counts.failed + st.dst_counts.failed + st.copy.failed);
        print_first_failed(m, 10);
        fprintf(stderr, "see 'treemig review --list failed', fix the cause, "
                "then 'treemig retry'\n");
    }
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
            return option_error("status", argc, argv, opts);
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
    if (json) {
        print_json_status(&st);
    } else {
        tm_pass_changes pc;
        print_human_status(&st, m);
        /* the passes (treemig rescan); a state file older than them has
         * none to show */
        if (tm_pass_changes_get(m, &pc) == 0 && pc.pass > 1)
            printf("pass         %d, started %s%s%s; since pass %d: source %" PRId64
                   " new, %" PRId64 " changed, %" PRId64 " deleted; destination %"
                   PRId64 " changed since copied\n", pc.pass, pc.started,
                   pc.ended[0] ? ", discovered " : "", pc.ended, pc.pass - 1,
                   pc.src_new, pc.src_changed, pc.src_deleted, pc.dst_changed);
    }
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
        return option_error("sim-stats", argc, argv, opts);
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

static int cmd_copy(int argc, char **argv) { return cmd_exec(argc, argv, 0); }
static int cmd_verify(int argc, char **argv) { return cmd_exec(argc, argv, 1); }
static int cmd_exclude_(int argc, char **argv) { return cmd_exclude(argc, argv, 0); }
static int cmd_unexclude(int argc, char **argv) { return cmd_exclude(argc, argv, 1); }
static int cmd_help(int argc, char **argv);

/* The commands, as main_usage lists them: name and function (argv[0] is
 * the command's name). */
static const struct command {
    const char *name;                  /* as typed */
    int (*fn)(int argc, char **argv);  /* runs it; returns the exit code */
} commands[] = {
    { "discover", cmd_discover },
    { "copy", cmd_copy },
    { "verify", cmd_verify },
    { "review", cmd_review },
    { "exclude", cmd_exclude_ },
    { "unexclude", cmd_unexclude },
    { "retry", cmd_retry },
    { "rescan", cmd_rescan },
    { "worker", cmd_worker },
    { "delete", cmd_delete },
    { "state-copy", cmd_state_copy },
    { "resume", cmd_resume },
    { "status", cmd_status },
    { "sim-stats", cmd_sim_stats },
    { "log-listen", cmd_log_listen },
    { "ui", cmd_ui },
    { "help", cmd_help },
};
#define N_COMMANDS (sizeof commands / sizeof *commands)

static const char help_usage[] =
    "usage: treemig help [COMMAND]\n"
    "\n"
    "Shows the help of COMMAND (the same as 'treemig COMMAND --help'), or\n"
    "without one the list of commands.\n"
    "\n"
    "options:\n"
    "  -h, --help  show this help\n"
    "\n"
    "exit codes: 0 success, 2 no such command.\n";

/* The command named name, or NULL. */
static const struct command *find_command(const char *name)
{
    size_t i;
    for (i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* Refuses a command name that is not one, with the nearest one. */
static int no_such_command(const char *name)
{
    const char *names[N_COMMANDS];
    const char *near;
    size_t i;
    for (i = 0; i < N_COMMANDS; i++)
        names[i] = commands[i].name;
    near = suggest(name, names, N_COMMANDS);
    if (near)
        return usage_error(NULL, "no such command '%s'; did you mean '%s'?",
                           name, near);
    return usage_error(NULL, "no such command '%s'", name);
}

static int cmd_help(int argc, char **argv)
{
    const struct command *c;
    char *args[3];
    if (argc < 2) {
        fputs(main_usage, stdout);
        return EXIT_OK;
    }
    if (argc > 2)
        return usage_error("help", "expected at most one COMMAND, got %d",
                           argc - 1);
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "--help")) {
        fputs(help_usage, stdout);
        return EXIT_OK;
    }
    if (!(c = find_command(argv[1])))
        return no_such_command(argv[1]);
    args[0] = argv[1];
    args[1] = (char *)"--help";
    args[2] = NULL;
    return c->fn(2, args);
}

int main(int argc, char **argv)
{
    const struct command *c;
    const char *cmd;
    /* option errors are said by option_error(), in one line */
    opterr = 0;
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
    if (cmd[0] == '-')
        return usage_error(NULL, "unrecognized option '%s' (options go after "
                           "the COMMAND)", cmd);
    if (!(c = find_command(cmd)))
        return no_such_command(cmd);
    return c->fn(argc - 1, argv + 1);
}
