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
/* 1 when the --db value names a PostgreSQL database (postgresql:// or
 * postgres://), not a state file. */
int is_pg_uri(const char *db);
/* Prints m's message for err (or the error's text); returns its exit code. */
int report_error(const char *cmd, tm_migration *m, int err);
/* The name among names[0..n) nearest to word (a misspelling), or NULL. */
const char *suggest(const char *word, const char *const *names, size_t n);
struct option;
/* After getopt_long returned '?' (opterr 0): says which option of argv was
 * unknown (with the nearest of opts), lacked its value or had one it does
 * not take, in one line; returns EXIT_USAGE. */
int option_error(const char *cmd, int argc, char **argv,
                 const struct option *opts);
/* An option of opts (value c) that this command does not take. */
int option_refused(const char *cmd, const struct option *opts, int c);
/* Parses a transfer rate as rsync and rclone take it: a number and a unit
 * B, K, M, G, T, P (1024-based; KB, MB...: 1000-based; KiB...: 1024),
 * "/s" allowed; no unit: KiB. 0: no limit. Into *out (bytes per second):
 * 0, or -1. */
int parse_rate(const char *s, double *out);
/* Parses operations per second (a decimal number >= 0; 0: no limit). */
int parse_tps(const char *s, double *out);
/* Parses a whole decimal number in [lo, hi] into *out: 0, or -1. */
int parse_int(const char *s, long lo, long hi, int *out);

/* The filter rules of discover (filters.c), in the order given: "- GLOB"
 * or a bare GLOB excludes, "+ GLOB" includes (tm_discover_options). */
struct rule_list {
    char **v;       /* the rules (owned) */
    size_t n, cap;  /* used, allocated */
};
/* Adds the pattern of option opt as an include or exclude rule (a pattern
 * that starts with "+ " or "- " keeps its own kind): 0, or an exit code. */
int rules_add(struct rule_list *l, const char *cmd, const char *opt,
              const char *pat, int include);
/* Adds the rules of a file (one pattern a line; blank lines and lines
 * that start with '#' or ';' are skipped; "-" is standard input): 0, or
 * an exit code after the message. */
int rules_read(struct rule_list *l, const char *cmd, const char *opt,
               const char *path, int include);
void rules_release(struct rule_list *l);
/* A size with an optional unit (B, K/KiB, M/MiB, G/GiB, T/TiB powers of
 * 1024; KB, MB, GB, TB powers of 1000; any case): 0, or -1. */
int parse_size(const char *s, int64_t *out);
/* An age in seconds with an optional unit (s, m minutes, h, d, w): 0, or
 * -1. */
int parse_age(const char *s, int64_t *out);

/* The storage options a command was given ("-o KEY=VALUE", repeatable,
 * and the long options below that stand for one), handed to
 * tm_migration_set_storage_options() (docs/adapters.md). */
struct sopt_list {
    const char **kv;  /* the options (into argv, or in owned) */
    size_t n, cap;    /* used, allocated */
    char **owned;     /* "key=value" strings made from a long option */
    size_t n_owned;   /* their count */
};

/* The long options that stand for "-o KEY=VALUE", one X per storage
 * option: X(ID, "long-name", has_arg, "key", "help lines"). A storage's
 * options are documented in docs/adapters.md, its man pages and the bash
 * completion too (tests/install checks them against --help). */
#define TM_STORAGE_ALIASES(X) /* S3: */                                        \
    X(S3_ENDPOINT, "s3-endpoint", required_argument, "s3-endpoint",            \
      "  --s3-endpoint URL  the S3 endpoint of s3:// storages (default:\n"     \
      "                   AWS_ENDPOINT_URL, the AWS files, else AWS's own)\n")  \
    X(S3_REGION, "s3-region", required_argument, "s3-region",                  \
      "  --s3-region R    the region requests are signed for (default:\n"      \
      "                   AWS_REGION, the AWS files, else us-east-1)\n")        \
    X(S3_PATH_STYLE, "s3-path-style", no_argument, "s3-path-style",            \
      "  --s3-path-style  address buckets as ENDPOINT/BUCKET (the default for\n"\
      "                   an endpoint that is not AWS's)\n")                     \
    X(S3_STORAGE_CLASS, "s3-storage-class", required_argument,                 \
      "s3-storage-class",                                                      \
      "  --s3-storage-class C  the storage class of the objects written\n"      \
      "                   (STANDARD_IA, ...; default: the bucket's)\n")         \
    /* SFTP: */                                                              \
    X(SSH_IDENTITY, "ssh-identity", required_argument, "ssh-identity",        \
      "  --ssh-identity FILE  SFTP: a private key to log in with (repeatable;\n" \
      "                   default: the agent, then ssh_config's IdentityFile,\n" \
      "                   then ~/.ssh/id_*)\n")                                 \
    X(SSH_KNOWN_HOSTS, "ssh-known-hosts", required_argument, "ssh-known-hosts", \
      "  --ssh-known-hosts FILE  SFTP: the known_hosts file that host keys\n"  \
      "                   are checked against (default ~/.ssh/known_hosts)\n") \
    X(SSH_ACCEPT_NEW, "ssh-accept-new", no_argument, "ssh-accept-new",        \
      "  --ssh-accept-new  SFTP: record the key of a host not known yet (as\n" \
      "                   ssh's accept-new); a changed key is always refused\n") \
    X(SSH_PASSWORD_ENV, "ssh-password-env", required_argument,                \
      "ssh-password-env",                                                     \
      "  --ssh-password-env VAR  SFTP: also log in with the password that\n"   \
      "                   the environment variable VAR holds\n")              \
    X(SSH_CONFIG, "ssh-config", required_argument, "ssh-config",              \
      "  --ssh-config FILE  SFTP: the ssh_config file read for Host aliases\n" \
      "                   (default ~/.ssh/config; none: no file)\n")

#define SOPT_ENUM(id, name, arg, key, help) SOPT_##id,
enum { SOPT_BASE = 0x100, TM_STORAGE_ALIASES(SOPT_ENUM) SOPT_END };
#define SOPT_LONGOPT(id, name, arg, key, help) , { name, arg, NULL, SOPT_##id }
#define SOPT_HELP(id, name, arg, key, help) help

#define STORAGE_OPTIONS                                                        \
    { "option", required_argument, NULL, 'o' } TM_STORAGE_ALIASES(SOPT_LONGOPT)
#define STORAGE_USAGE                                                          \
    "  -o, --option KEY=VALUE  an option of the source's or destination's\n"   \
    "                   storage (repeatable; docs/adapters.md lists each\n"     \
    "                   storage's); recorded for the later commands\n"          \
    TM_STORAGE_ALIASES(SOPT_HELP)

/* Adds one -o argument; EXIT_USAGE (said) when it is malformed, else 0. */
int sopt_add(struct sopt_list *l, const char *cmd, const char *kv);
/* Adds the option a long option code c stands for (c in SOPT_BASE ..
 * SOPT_END) with its argument arg (NULL for a flag): 0, or an exit code. */
int sopt_alias(struct sopt_list *l, const char *cmd, int c, const char *arg);
void sopt_release(struct sopt_list *l);
/* Hands l to m when it holds any (else the recorded ones apply): 0, or the
 * exit code after saying why. */
int sopt_apply(tm_migration *m, const struct sopt_list *l, const char *cmd);

int cmd_review(int argc, char **argv);
int cmd_exclude(int argc, char **argv, int unexclude);
int cmd_log_listen(int argc, char **argv);
int cmd_ui(int argc, char **argv);
/* delete.c: the mirror */
int cmd_delete(int argc, char **argv);
extern const char delete_usage[];
/* rescan.c: a new pass */
int cmd_rescan(int argc, char **argv);
/* treemig worker (worker.c). */
int cmd_worker(int argc, char **argv);
extern const char rescan_usage[];
/* state_copy.c: a migration's state between SQLite and PostgreSQL */
int cmd_state_copy(int argc, char **argv);
extern const char state_copy_usage[];

#endif
