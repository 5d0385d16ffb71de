/* commands.h - command functions of the treemig CLI that live in their own
 * files; each returns the exit code (docs/exit-codes.md). */
#ifndef TM_CLI_COMMANDS_H
#define TM_CLI_COMMANDS_H

int cmd_review(int argc, char **argv);
int cmd_exclude(int argc, char **argv, int unexclude);
int cmd_log_listen(int argc, char **argv);

#endif
