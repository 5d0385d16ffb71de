/*
 * to_copy.c - reads a finished discovery's state file through libtreemig
 * and prints what a copy would do: how many items and bytes, then each
 * item to copy.
 *
 *   cc to_copy.c $(pkg-config --cflags --libs treemig) -o to_copy
 *   ./to_copy STATE.db
 *
 * The state file is opened read-only and without its lock, so this is
 * safe while another process runs the migration. The listing is the one
 * of `treemig review --list missing` and `--list conflict` (one item a
 * line: kind, type, size, path, reason, then for a conflict the two
 * sides' details, separated by tabs); conflicts of
 * reason "type" (a file against a folder) are never copied, and are left
 * out. Single-threaded.
 */
#define _POSIX_C_SOURCE 200809L

#include <treemig.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 when the line (len bytes) has the reason "type" (a type clash): its
 * fifth field; a conflict's line goes on with the two sides' details. */
static int is_type_clash(const char *line, size_t len)
{
    const char *p = line, *end = line + len, *r;
    int tabs = 0;
    while (p < end && tabs < 4)
        if (*p++ == '\t')
            tabs++;
    if (tabs < 4)
        return 0;
    r = memchr(p, '\t', (size_t)(end - p));
    return (r ? r : end) - p == 4 && memcmp(p, "type", 4) == 0;
}

/* Prints the lines of text that are not type clashes; returns how many it
 * printed. */
static int64_t print_copied(const char *text)
{
    const char *line = text, *nl;
    int64_t n = 0;
    for (; *line; line = nl + 1) {
        size_t len;
        nl = strchr(line, '\n');
        if (!nl)
            break;
        len = (size_t)(nl - line);
        if (is_type_clash(line, len))
            continue;
        printf("%.*s\n", (int)len, line);
        n++;
    }
    return n;
}

/* Lists the items of one kind into a string (the caller frees it). */
static int list_kind(tm_migration *m, const char *kind, char **text)
{
    size_t len = 0;
    FILE *f = open_memstream(text, &len);
    int rc;
    if (!f)
        return TM_ENOMEM;
    rc = tm_review_list(m, kind, NULL, 0, f);
    if (fclose(f) != 0 && rc == 0)
        rc = TM_ENOMEM;
    return rc;
}

int main(int argc, char **argv)
{
    tm_migration *m = NULL;
    tm_status st;
    char *missing = NULL, *conflicts = NULL;
    int64_t listed;
    int rc, code = 1;

    if (argc != 2) {
        fprintf(stderr, "usage: %s STATE.db\n", argv[0]);
        return 2;
    }
    rc = tm_migration_open(&m, argv[1], TM_OPEN_READONLY);
    if (!rc)
        rc = tm_status_get(m, &st);
    if (rc) {
        fprintf(stderr, "%s: %s\n", argv[1],
                m && *tm_migration_errmsg(m) ? tm_migration_errmsg(m)
                                             : tm_strerror(rc));
        goto out;
    }
    if (!strcmp(st.phase, "roots-set") || !strcmp(st.phase, "discovering")) {
        fprintf(stderr, "%s: discovery is not complete (phase %s)\n", argv[1],
                st.phase);
        goto out;
    }
    printf("phase %s\n", st.phase);
    printf("to copy: %" PRId64 " items, %" PRId64 " bytes\n", st.copy.pending,
           st.copy.bytes_pending);

    rc = list_kind(m, "missing", &missing);
    if (!rc)
        rc = list_kind(m, "conflict", &conflicts);
    if (rc) {
        fprintf(stderr, "list: %s\n", tm_migration_errmsg(m));
        goto out;
    }
    listed = print_copied(missing) + print_copied(conflicts);
    printf("listed %" PRId64 " items\n", listed);
    code = 0;
out:
    free(missing);
    free(conflicts);
    tm_migration_free(m);
    return code;
}
