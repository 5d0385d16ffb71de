/*
 * config.c - writing and reading the YAML file of config.h.
 *
 * The file is written as text by hand (every string double-quoted and
 * escaped, so any value round-trips; a string that is not UTF-8 is written
 * as !!binary base64) and read with libyaml's document loader, which
 * reports the line and column of a syntax error.
 */
#include "migration/config.h"

#include "treemig.h"
#include "util/util.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int tm__config_set(char **field, const char *value)
{
    char *v = NULL;
    if (value && !(v = strdup(value)))
        return TM_ENOMEM;
    free(*field);
    *field = v;
    return 0;
}

void tm__config_release(struct tm__config *c)
{
    size_t i;
    free(c->id);
    free(c->created);
    free(c->updated);
    free(c->phase);
    free(c->suspended_from);
    free(c->database);
    free(c->source);
    free(c->destination);
    for (i = 0; i < c->n_excludes; i++)
        free(c->excludes[i]);
    free(c->excludes);
    for (i = 0; i < c->n_storage; i++)
        free(c->storage[i]);
    free(c->storage);
    free(c->log_level);
    free(c->udp_level);
    free(c->udp_addr);
    free(c->compare);
    free(c->pass_started);
    memset(c, 0, sizeof *c);
}

/* 1 when code point cp may stand as itself in a double-quoted scalar and
 * read back as itself: YAML's printable characters (libyaml refuses the
 * others, C1 controls, U+FFFE and U+FFFF among them) but for NEL (libyaml
 * folds it into a space), and LS, PS and the byte order mark, which YAML
 * 1.1 counts as line breaks or a mark that other readers may drop. */
static int yaml_literal(uint32_t cp)
{
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
        return 0;
    return cp != 0x2028 && cp != 0x2029 && cp != 0xfeff && cp != 0xfffe &&
           cp != 0xffff;
}

/* Appends a YAML scalar for s: a double-quoted string (escaping what
 * yaml_literal() refuses), or !!binary when s is not UTF-8. */
static int add_scalar(struct tm__buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), i, k;
    int rc = 0;
    if (!tm__utf8_valid(p, n)) {
        rc = tm__buf_adds(b, "!!binary \"");
        for (i = 0; !rc && i < n; i += 3) {
            uint32_t v = (uint32_t)p[i] << 16;
            char q[4];
            if (i + 1 < n)
                v |= (uint32_t)p[i + 1] << 8;
            if (i + 2 < n)
                v |= p[i + 2];
            q[0] = b64[(v >> 18) & 63];
            q[1] = b64[(v >> 12) & 63];
            q[2] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
            q[3] = i + 2 < n ? b64[v & 63] : '=';
            rc = tm__buf_add(b, q, 4);
        }
        return rc ? rc : tm__buf_addch(b, '"');
    }
    rc = tm__buf_addch(b, '"');
    for (i = 0; !rc && i < n; i += k) {
        uint32_t cp = 0;
        k = tm__utf8_seq(p + i, n - i, &cp);
        if (cp == '"' || cp == '\\')
            rc = tm__buf_addf(b, "\\%c", p[i]);
        else if (!yaml_literal(cp))
            rc = tm__buf_addf(b, cp < 0x100 ? "\\x%02x" : "\\u%04x", (unsigned)cp);
        else
            rc = tm__buf_add(b, p + i, k);
    }
    return rc ? rc : tm__buf_addch(b, '"');
}

static int add_kv(struct tm__buf *b, const char *indent, const char *key,
                  const char *value)
{
    int rc = tm__buf_addf(b, "%s%s: ", indent, key);
    if (!rc)
        rc = value ? add_scalar(b, value) : tm__buf_adds(b, "null");
    return rc ? rc : tm__buf_addch(b, '\n');
}

int tm__config_render(struct tm__buf *b, const struct tm__config *c)
{
    size_t i;
    int rc = tm__buf_addf(b,
                          "# treemig migration file: the phase, roots and options "
                          "of a migration.\n"
                          "# Resume it with: treemig resume --config THIS_FILE\n"
                          "# Written by treemig at every milestone; edit with "
                          "care.\n"
                          "treemig: %d\n",
                          TM_CONFIG_VERSION);
    if (!rc) rc = tm__buf_adds(b, "migration:\n");
    if (!rc) rc = add_kv(b, "  ", "id", c->id);
    if (!rc) rc = add_kv(b, "  ", "created", c->created);
    if (!rc) rc = add_kv(b, "  ", "updated", c->updated);
    if (!rc) rc = add_kv(b, "", "phase", c->phase);
    if (!rc && c->suspended_from)
        rc = add_kv(b, "", "suspended_from", c->suspended_from);
    if (!rc) rc = add_kv(b, "", "database", c->database);
    if (!rc) rc = add_kv(b, "", "source", c->source);
    if (!rc) rc = add_kv(b, "", "destination", c->destination);
    if (!rc && c->pass > 0)
        rc = tm__buf_addf(b, "pass: %d\n", c->pass);
    if (!rc && c->pass_started)
        rc = add_kv(b, "", "pass_started", c->pass_started);
    if (!rc)
        rc = tm__buf_addf(b, "rounds:\n  src: %d\n  dst: %d\n", c->src_round,
                          c->dst_round);
    if (!rc)
        rc = tm__buf_addf(b, "options:\n  workers: %d\n  lead: %d\n  retries: %d\n"
                          "%s%s%s%s  excludes:%s\n",
                          c->workers, c->lead, c->retries,
                          c->owner ? "  owner: true\n" : "",
                          c->no_specials ? "  no_specials: true\n" : "",
                          c->one_fs ? "  one_file_system: true\n" : "",
                          c->no_xattrs ? "  no_xattrs: true\n" : "",
                          c->n_excludes ? "" : " []");
    for (i = 0; !rc && i < c->n_excludes; i++) {
        rc = tm__buf_adds(b, "    - ");
        if (!rc) rc = add_scalar(b, c->excludes[i]);
        if (!rc) rc = tm__buf_addch(b, '\n');
    }
    if (!rc && c->compare)
        rc = add_kv(b, "  ", "compare", c->compare);
    if (!rc && c->modify_window)
        rc = tm__buf_addf(b, "  modify_window: %d\n", c->modify_window);
    if (!rc && c->min_size)
        rc = tm__buf_addf(b, "  min_size: %" PRId64 "\n", c->min_size);
    if (!rc && c->max_size)
        rc = tm__buf_addf(b, "  max_size: %" PRId64 "\n", c->max_size);
    if (!rc && c->min_age)
        rc = tm__buf_addf(b, "  min_age: %" PRId64 "\n", c->min_age);
    if (!rc && c->max_age)
        rc = tm__buf_addf(b, "  max_age: %" PRId64 "\n", c->max_age);
    if (!rc && c->n_storage)
        rc = tm__buf_adds(b, "  storage:\n");
    for (i = 0; !rc && i < c->n_storage; i++) {
        rc = tm__buf_adds(b, "    - ");
        if (!rc) rc = add_scalar(b, c->storage[i]);
        if (!rc) rc = tm__buf_addch(b, '\n');
    }
    if (!rc && (c->log_level || c->udp_level || c->udp_addr)) {
        rc = tm__buf_adds(b, "logging:\n");
        if (!rc && c->log_level) rc = add_kv(b, "  ", "db_level", c->log_level);
        if (!rc && c->udp_level) rc = add_kv(b, "  ", "udp_level", c->udp_level);
        if (!rc && c->udp_addr) rc = add_kv(b, "  ", "udp_addr", c->udp_addr);
    }
    return rc;
}

int tm__config_write(const char *path, const struct tm__config *c,
                     struct tm__buf *err)
{
    struct tm__buf text = TM__BUF_INIT, tmp = TM__BUF_INIT;
    char *dir_copy = NULL;
    int fd = -1, rc;

    rc = tm__config_render(&text, c);
    if (!rc)
        rc = tm__buf_addf(&tmp, "%s.tmp.%ld", path, (long)getpid());
    if (rc)
        goto out;
    fd = open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = tm__from_errno(errno);
        tm__buf_addf(err, "cannot write %s: %s", tmp.buf, tm_strerror(rc));
        goto out;
    }
    rc = tm__write_full(fd, text.buf, text.len);
    if (!rc && fsync(fd) != 0)
        rc = tm__from_errno(errno);
    if (close(fd) != 0 && !rc)
        rc = tm__from_errno(errno);
    fd = -1;
    if (!rc && rename(tmp.buf, path) != 0)
        rc = tm__from_errno(errno);
    if (rc) {
        tm__buf_addf(err, "cannot write %s: %s", path, tm_strerror(rc));
        unlink(tmp.buf);
        goto out;
    }
    /* make the rename itself durable */
    dir_copy = strdup(path);
    if (dir_copy) {
        int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
out:
    if (fd >= 0)
        close(fd);
    free(dir_copy);
    tm__buf_release(&text);
    tm__buf_release(&tmp);
    return rc;
}

/* ---- reading ---- */

struct reader {
    yaml_document_t *doc;  /* the loaded document */
    const char *path;      /* for messages */
    struct tm__buf *err;   /* message of the first problem */
};

static int bad(struct reader *r, const yaml_node_t *n, const char *what)
{
    if (n)
        tm__buf_addf(r->err, "%s: %s (line %lu); the file was left untouched",
                     r->path, what, (unsigned long)n->start_mark.line + 1);
    else
        tm__buf_addf(r->err, "%s: %s; the file was left untouched", r->path, what);
    return TM_ECORRUPT;
}

static yaml_node_t *lookup(struct reader *r, yaml_node_t *map, const char *key)
{
    yaml_node_pair_t *p;
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(r->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE &&
            k->data.scalar.length == strlen(key) &&
            memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
            return yaml_document_get_node(r->doc, p->value);
    }
    return NULL;
}

static int b64_value(int ch)
{
    const char *p = ch ? strchr(b64, ch) : NULL;
    return p ? (int)(p - b64) : -1;
}

/* Copies the scalar n into *out, decoding !!binary; on failure *out is
 * NULL. */
static int node_str(struct reader *r, yaml_node_t *n, const char *key, char **out)
{
    const char *tag;
    size_t len, i, o = 0;
    char msg[128];
    if (n->type != YAML_SCALAR_NODE) {
        snprintf(msg, sizeof msg, "'%s' must be a string", key);
        return bad(r, n, msg);
    }
    len = n->data.scalar.length;
    tag = (const char *)n->tag;
    free(*out);
    *out = malloc(len + 1);
    if (!*out)
        return TM_ENOMEM;
    if (tag && strcmp(tag, "tag:yaml.org,2002:binary") == 0) {
        uint32_t acc = 0;
        int bits = 0;
        for (i = 0; i < len; i++) {
            int v = b64_value(n->data.scalar.value[i]);
            if (n->data.scalar.value[i] == '=' || n->data.scalar.value[i] == '\n' ||
                n->data.scalar.value[i] == ' ')
                continue;
            if (v < 0) {
                snprintf(msg, sizeof msg, "'%s' is not valid base64", key);
                goto refuse;
            }
            acc = (acc << 6) | (uint32_t)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                (*out)[o++] = (char)((acc >> bits) & 0xFF);
            }
        }
    } else {
        memcpy(*out, n->data.scalar.value, len);
        o = len;
    }
    (*out)[o] = '\0';
    if (strlen(*out) != o) {
        snprintf(msg, sizeof msg, "'%s' holds a NUL byte", key);
        goto refuse;
    }
    return 0;
refuse:
    free(*out); /* a slot of excludes is not counted yet: free it here */
    *out = NULL;
    return bad(r, n, msg);
}

/* Copies the scalar at key of map into *out; absent or null is an error
 * only when required. */
static int get_str(struct reader *r, yaml_node_t *map, const char *key, char **out,
                   int required)
{
    yaml_node_t *n = lookup(r, map, key);
    char msg[128];
    if (!n || (n->type == YAML_SCALAR_NODE &&
               n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
               n->data.scalar.length == 4 &&
               memcmp(n->data.scalar.value, "null", 4) == 0)) {
        if (!required)
            return 0;
        snprintf(msg, sizeof msg, "missing '%s'", key);
        return bad(r, map, msg);
    }
    return node_str(r, n, key, out);
}

static int get_int(struct reader *r, yaml_node_t *map, const char *key, int *out,
                   int lo, int hi)
{
    yaml_node_t *n = lookup(r, map, key);
    char buf[32], msg[128], *end;
    long v;
    if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.length == 0 ||
        n->data.scalar.length >= sizeof buf) {
        snprintf(msg, sizeof msg, "missing or bad number '%s'", key);
        return bad(r, n ? n : map, msg);
    }
    memcpy(buf, n->data.scalar.value, n->data.scalar.length);
    buf[n->data.scalar.length] = '\0';
    errno = 0;
    v = strtol(buf, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        snprintf(msg, sizeof msg, "'%s' must be a whole number from %d to %d", key,
                 lo, hi);
        return bad(r, n, msg);
    }
    *out = (int)v;
    return 0;
}

/* The optional list of non-empty strings key of opts into *out (*n). */
static int get_list(struct reader *r, yaml_node_t *opts, const char *key,
                    const char *what, char ***out, size_t *n)
{
    yaml_node_t *seq = lookup(r, opts, key);
    yaml_node_item_t *it;
    char msg[96];
    size_t cap;
    if (!seq)
        return 0;
    if (seq->type != YAML_SEQUENCE_NODE) {
        snprintf(msg, sizeof msg, "'%s' must be a list", key);
        return bad(r, seq, msg);
    }
    snprintf(msg, sizeof msg, "%s must be a non-empty string", what);
    cap = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    *out = calloc(cap ? cap : 1, sizeof **out);
    if (!*out)
        return TM_ENOMEM;
    for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *x = yaml_document_get_node(r->doc, *it);
        int rc;
        if (!x || x->type != YAML_SCALAR_NODE || x->data.scalar.length == 0)
            return bad(r, x ? x : seq, msg);
        rc = node_str(r, x, key, &(*out)[*n]);
        if (rc)
            return rc;
        if (!(*out)[(*n)++][0]) /* !!binary "" */
            return bad(r, x, msg);
    }
    return 0;
}

static int load(struct reader *r, struct tm__config *c)
{
    yaml_node_t *root = yaml_document_get_root_node(r->doc), *mig, *rounds, *opts;
    yaml_node_t *logging;
    int rc;
    if (!root)
        return bad(r, NULL, "empty file, not a treemig migration file");
    if (root->type != YAML_MAPPING_NODE || !lookup(r, root, "treemig"))
        return bad(r, root, "not a treemig migration file (no 'treemig' key)");
    rc = get_int(r, root, "treemig", &c->version, 1, 1000000);
    if (rc)
        return rc;
    if (c->version > TM_CONFIG_VERSION) {
        tm__buf_addf(r->err, "%s was written by a newer treemig (format %d, this "
                     "one reads %d); use a newer treemig", r->path, c->version,
                     TM_CONFIG_VERSION);
        return TM_ESCHEMA;
    }
    mig = lookup(r, root, "migration");
    rounds = lookup(r, root, "rounds");
    opts = lookup(r, root, "options");
    if (!mig || !rounds || !opts)
        return bad(r, root, "missing 'migration', 'rounds' or 'options'");
    if ((rc = get_str(r, mig, "id", &c->id, 1)) ||
        (rc = get_str(r, mig, "created", &c->created, 0)) ||
        (rc = get_str(r, mig, "updated", &c->updated, 0)) ||
        (rc = get_str(r, root, "phase", &c->phase, 1)) ||
        (rc = get_str(r, root, "suspended_from", &c->suspended_from, 0)) ||
        (rc = get_str(r, root, "database", &c->database, 1)) ||
        (rc = get_str(r, root, "source", &c->source, 1)) ||
        (rc = get_str(r, root, "destination", &c->destination, 1)) ||
        (rc = get_int(r, rounds, "src", &c->src_round, 0, 1000000000)) ||
        (rc = get_int(r, rounds, "dst", &c->dst_round, 0, 1000000000)) ||
        (rc = get_int(r, opts, "workers", &c->workers, 1, 1024)) ||
        (rc = get_int(r, opts, "lead", &c->lead, 1, 1000000)) ||
        (rc = get_int(r, opts, "retries", &c->retries, 0, 100)))
        return rc;
    rc = get_list(r, opts, "excludes", "an exclude", &c->excludes, &c->n_excludes);
    if (!rc)
        rc = get_list(r, opts, "storage", "a storage option", &c->storage,
                      &c->n_storage);
    if (!rc && (logging = lookup(r, root, "logging")) != NULL) {
        if ((rc = get_str(r, logging, "db_level", &c->log_level, 0)) ||
            (rc = get_str(r, logging, "udp_level", &c->udp_level, 0)))
            return rc;
        rc = get_str(r, logging, "udp_addr", &c->udp_addr, 0);
    }
    return rc;
}

int tm__config_parse(const char *data, size_t len, const char *name,
                     struct tm__config *c, struct tm__buf *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    struct reader r = { &doc, name, err };
    int rc;

    tm__config_release(c);
    if (!yaml_parser_initialize(&parser))
        return TM_ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    if (!yaml_parser_load(&parser, &doc)) {
        tm__buf_addf(err, "%s is not valid YAML: %s at line %lu column %lu; the "
                     "file was left untouched", name,
                     parser.problem ? parser.problem : "syntax error",
                     (unsigned long)parser.problem_mark.line + 1,
                     (unsigned long)parser.problem_mark.column + 1);
        yaml_parser_delete(&parser);
        return TM_ECORRUPT;
    }
    rc = load(&r, c);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc)
        tm__config_release(c);
    return rc;
}

/* Reads the whole file at path into *out. */
static int slurp(const char *path, struct tm__buf *out, struct tm__buf *err)
{
    char chunk[8192];
    FILE *f = fopen(path, "rbe");
    size_t n;
    int rc = 0;
    if (!f) {
        rc = tm__from_errno(errno);
        tm__buf_addf(err, "cannot open %s: %s", path, tm_strerror(rc));
        return rc == TM_ENOENT ? TM_ENODB : rc;
    }
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = tm__buf_add(out, chunk, n);
    if (!rc && ferror(f)) {
        rc = TM_EIO;
        tm__buf_addf(err, "cannot read %s: %s", path, tm_strerror(rc));
    }
    fclose(f);
    return rc;
}

int tm__config_read(const char *path, struct tm__config *c, struct tm__buf *err)
{
    struct tm__buf text = TM__BUF_INIT;
    int rc;

    tm__config_release(c);
    rc = slurp(path, &text, err);
    if (!rc)
        rc = tm__config_parse(text.buf, text.len, path, c, err);
    tm__buf_release(&text);
    return rc;
}
