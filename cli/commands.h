/* commands.h - command functions of the treemig CLI that live in their own
 * files; each returns the exit code (docs/exit-codes.md). */
#ifndef TM_CLI_COMMANDS_H
#define TM_CLI_COMMANDS_H

#include "treemig.h"

/* Exit codes (docs/exit-codes.md). */
enum {
    EXIT_OK = 0,
    EXIT_FATAL = 1,
    EXIT_USAGE = 2,
    EXIT_PARTIAL = 3,
    EXIT_INTERRUPTED = 4,
    EXIT_LOCKED = 5,
};

/* Prints "treemig CMD: message" and the help hint; returns EXIT_USAGE.
 * cmd NULL: the top-level command. */
int usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The exit code for an error of the library. */
int exit_code_for(int err);
/* Prints m's message for err (or the error's text); returns its exit code. */
int report_error(const char *cmd, tm_migration *m, int err);
/* Parses a whole decimal number in [lo, hi] into *out: 0, or -1. */
int parse_int(const char *s, long lo, long hi, int *out);

int cmd_review(int argc, char **argv);
int cmd_exclude(int argc, char **argv, int unexclude);
int cmd_log_listen(int argc, char **argv);
int cmd_ui(int argc, char **argv);

#endif
