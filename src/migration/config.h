/*
 * config.h - the YAML file beside the state file (docs/state-file.md, "The
 * YAML file"): the phase, roots, rounds and options of a migration, written
 * atomically at every milestone, enough to resume the migration from it
 * alone. Read and written on the thread that owns the migration handle.
 */
#ifndef TM_CONFIG_H
#define TM_CONFIG_H

#include <stddef.h>

#include "util/buf.h"

#define TM_CONFIG_VERSION 1

struct tm__config {
    int version;          /* format version of the file */
    char *id;             /* migration id (32 hex digits) */
    char *created;        /* creation time, ISO 8601 */
    char *updated;        /* time of this write, ISO 8601 */
    char *phase;          /* phase, as in the state file */
    char *suspended_from; /* the running phase a suspension interrupted */
    char *database;       /* absolute path of the state file */
    char *source;         /* source spec */
    char *destination;    /* destination spec */
    int src_round;        /* last round the source started */
    int dst_round;        /* last round the destination started */
    int workers;          /* options */
    int lead;
    int retries;
    char **excludes;      /* exclude globs (each malloc'd) */
    size_t n_excludes;    /* their count */
    char **storage;       /* storage options, "key=value" (each malloc'd) */
    size_t n_storage;     /* their count */
    char *log_level;      /* logs table threshold, or NULL */
    char *udp_level;      /* UDP threshold, or NULL */
    char *udp_addr;       /* UDP listener, or NULL */
    int owner;            /* discover --owner: owners are compared */
    int no_specials;      /* discover --no-specials */
    int one_fs;           /* discover --one-file-system */
    int no_xattrs;        /* discover --no-xattrs */
    char *compare;        /* "size-mtime", "size-only", "checksum", or NULL */
    int modify_window;    /* discover --modify-window, seconds */
    int64_t min_size, max_size; /* discover --min-size, --max-size (0: none) */
    int64_t min_age, max_age;   /* discover --min-age, --max-age, s (0: none) */
    int pass;             /* the pass (treemig rescan), from 1; written,
                             not read back (the state file has it) */
    char *pass_started;   /* when it started, ISO 8601, or NULL */
};

/* Writes c to path atomically: a temporary file beside it, fsync, rename,
 * fsync of the folder. On error err says why; path is untouched. */
int tm__config_write(const char *path, const struct tm__config *c,
                     struct tm__buf *err);
/* Reads path into c (released first). A file that does not parse, is not a
 * treemig file, lacks a field or comes from a newer version is refused with
 * a message in err naming the problem. */
int tm__config_read(const char *path, struct tm__config *c, struct tm__buf *err);
/* Parses the YAML text data (len bytes, NUL bytes included) into c
 * (released first), as tm__config_read() does with a file's content; name
 * stands for the file in messages. */
int tm__config_parse(const char *data, size_t len, const char *name,
                     struct tm__config *c, struct tm__buf *err);
/* Appends the text tm__config_write() would write for c to b. */
int tm__config_render(struct tm__buf *b, const struct tm__config *c);
/* Frees what c holds; c is zeroed. */
void tm__config_release(struct tm__config *c);
/* Replaces *field with a copy of value (NULL clears). */
int tm__config_set(char **field, const char *value);

#endif
