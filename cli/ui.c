/*
 * ui.c - the command `treemig ui`: serves a state file to a web page on
 * this machine (docs/ui.md) until Ctrl-C. Uses only treemig.h. The main
 * thread waits for SIGINT or SIGTERM (blocked before the server's threads
 * start, so that they never receive them) and then stops the server.
 */
#include "treemig.h"

#include "commands.h"

#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_DB "treemig.db"

extern char **environ;

static const char ui_usage[] =
    "usage: treemig ui [--db FILE] [--listen ADDR:PORT] [--read-only] [--no-open]\n"
    "\n"
    "Serves the state file to a web page in your browser: the summary with the\n"
    "live progress of a running discovery or copy and a plot of its throughput,\n"
    "both trees side by side folder by folder (folders first, with what is to\n"
    "copy below each one), a search by glob and kind, the problems (failed\n"
    "items, task errors, logs), and exclude/unexclude with the counts shown\n"
    "before you confirm (the same rules as 'treemig exclude'). It reads the\n"
    "state file without locking it, so it runs beside discover or copy.\n"
    "\n"
    "It prints one line, the URL to open, with a random access token that\n"
    "every request needs; with a display it opens it in your browser.\n"
    "Ctrl-C stops it.\n"
    "\n"
    "options:\n"
    "  --db FILE            state file (default ./" DEFAULT_DB "),\n"
    "                   or a postgresql:// URI (README: PostgreSQL state)\n"
    "  --listen ADDR:PORT   where to listen (default 127.0.0.1, port 8080 or\n"
    "                       the next free one; PORT 0: any free port). An\n"
    "                       address that is not loopback is allowed with a\n"
    "                       warning: the traffic is not encrypted\n"
    "  --read-only          the page changes nothing (no exclude, unexclude)\n"
    "  --no-open            do not open a browser, only print the URL\n"
    "  -h, --help           show this help\n"
    "\n"
    "The JSON API the page uses is documented in docs/ui.md.\n"
    "exit codes: 0 stopped by Ctrl-C or SIGTERM, 1 fatal error (cannot\n"
    "listen), 2 usage error or no state file.\n";

static void print_warning(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "treemig ui: %s\n", line);
}

/* Opens url in the user's browser when there is a display; returns the
 * pid of xdg-open or 0. */
static pid_t open_browser(const char *url)
{
    posix_spawn_file_actions_t fa;
    char *argv[] = { (char *)"xdg-open", (char *)url, NULL };
    pid_t pid = 0;
    if (!getenv("DISPLAY") && !getenv("WAYLAND_DISPLAY"))
        return 0;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return 0;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    if (posix_spawnp(&pid, "xdg-open", &fa, NULL, argv, environ) != 0)
        pid = 0;
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

int cmd_ui(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "listen", required_argument, NULL, 'l' },
        { "read-only", no_argument, NULL, 'r' },
        { "no-open", no_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = DEFAULT_DB;
    tm_ui_options o;
    tm_ui *ui = NULL;
    sigset_t set, old;
    pid_t browser = 0;
    int no_open = 0, c, rc, sig;

    tm_ui_options_init(&o);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': db = optarg; break;
        case 'l': o.listen = optarg; break;
        case 'r': o.read_only = 1; break;
        case 'n': no_open = 1; break;
        case 'h':
            fputs(ui_usage, stdout);
            return EXIT_OK;
        default:
            return option_error("ui", argc, argv, opts);
        }
    }
    if (optind != argc)
        return usage_error("ui", "unexpected argument '%s'", argv[optind]);
    o.warn = print_warning;

    /* the server's threads inherit this mask: the signals come here */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    rc = tm_ui_start(&ui, db, &o);
    if (rc) {
        const char *msg = tm_ui_errmsg(ui);
        fprintf(stderr, "treemig ui: %s\n", msg && *msg ? msg : tm_strerror(rc));
        tm_ui_free(ui);
        return rc == TM_EINVAL || rc == TM_ENODB ? EXIT_USAGE : exit_code_for(rc);
    }
    printf("%s\n", tm_ui_url(ui));
    fflush(stdout);
    fprintf(stderr, "treemig ui: serving %s%s; Ctrl-C stops\n", db,
            o.read_only ? " read-only" : "");
    if (!no_open)
        browser = open_browser(tm_ui_url(ui));
    sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "treemig ui: stopping\n");
    tm_ui_free(ui);
    if (browser > 0)
        waitpid(browser, NULL, WNOHANG);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return EXIT_OK;
}
