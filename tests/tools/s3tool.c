/*
 * s3tool.c - the S3 client (src/adapter/s3/) on the command line, for the
 * integration tests (tests/integration/test_s3_*.py). Not installed.
 *
 *   s3tool [OPTIONS] COMMAND ARGS
 *
 * Credentials and defaults come from the environment and the AWS files as
 * the client resolves them. Every result is one JSON line on stdout (a
 * GET without --out writes the bytes there instead); a failure is one JSON
 * line on stderr {"error":NAME,"class":...,"http":...,"s3code":...,
 * "retry_after_ms":...,"message":...} and exit 1; bad usage exits 2.
 * Single-threaded: it runs one operation (a writer's parts go out in
 * parallel inside the client).
 */
#include "adapter/adapter.h"
#include "adapter/s3/s3.h"
#include "treemig.h"
#include "util/buf.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: s3tool [OPTIONS] COMMAND ARGS\n"
    "options: --endpoint URL --region R --path-style --virtual --storage-class C\n"
    "         --profile P --sign-payload --part-size N --threshold N\n"
    "         --copy-part-size N --inflight N --part-retries N --resolve H:P:A\n"
    "commands:\n"
    "  config                              the resolved settings\n"
    "  ls BUCKET [--prefix P] [--delimiter D] [--max-keys N] [--start-after K]\n"
    "     [--token T] [--pages N] [--cursor FILE]   one JSON line per page\n"
    "  head BUCKET KEY\n"
    "  get BUCKET KEY [--range OFF LEN] [--out FILE] [--reader] [--chunk N]\n"
    "  put BUCKET KEY SRC|- [--size N] [--mtime NS] [--mode OCTAL] [--uid N]\n"
    "     [--gid N] [--md5chksum B64] [--content-type T] [--journal FILE] [--single]\n"
    "  resume BUCKET KEY SRC|- --journal FILE [--size N] [--no-records]\n"
    "  rm BUCKET KEY          mkdir BUCKET KEY/      fill BUCKET PREFIX N\n"
    "  cp SRCBUCKET SRCKEY BUCKET KEY [--size N] [--mtime NS]\n"
    "  mp-create BUCKET KEY   mp-abort BUCKET KEY ID   mp-parts BUCKET KEY ID\n"
    "the adapter interface (adapter.h) on any storage, for the conformance\n"
    "checks (tests/integration/test_s3_conformance.py):\n"
    "  adapter SPEC [-o K=V]... OP ARGS, OP one of\n"
    "     ls PATH [--from HEXPOS] [--pages N]   one JSON line per page\n"
    "     stat PATH    get PATH OUT    mkdir PATH    setattr PATH MTIME MODE\n"
    "     put PATH SRC MTIME MODE [--noreplace]   abort PATH SRC\n"
    "     cannot PATH TYPE    forget PATH STATEFILE\n";

static void print_err(const struct tm__s3_err *e, int rc)
{
    struct tm__buf b = TM__BUF_INIT;
    tm__buf_addf(&b, "{\"error\":\"%s\",\"class\":\"%s\",\"http\":%d,\"s3code\":",
                 tm_err_name(e->code ? e->code : rc), tm__s3_class_name(e->cls),
                 e->http_status);
    tm__buf_add_json(&b, e->s3code, strlen(e->s3code));
    tm__buf_addf(&b, ",\"retry_after_ms\":%lld,\"message\":",
                 (long long)e->retry_after_ms);
    tm__buf_add_json(&b, e->message, strlen(e->message));
    tm__buf_adds(&b, "}\n");
    fputs(b.buf, stderr);
    tm__buf_release(&b);
}

static const char *opt(int argc, char **argv, const char *name)
{
    int i;
    for (i = 0; i < argc - 1; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return NULL;
}

static int flag(int argc, char **argv, const char *name)
{
    int i;
    for (i = 0; i < argc; i++)
        if (!strcmp(argv[i], name))
            return 1;
    return 0;
}

static long long num(const char *s, int base)
{
    char *end;
    long long v;
    if (!s)
        return -1;
    errno = 0;
    v = strtoll(s, &end, base);
    if (errno || *end) {
        fprintf(stderr, "s3tool: bad number %s\n", s);
        exit(2);
    }
    return v;
}

static void add_stat_json(struct tm__buf *b, const struct tm__s3_stat *st)
{
    const struct tm__s3_meta *m = &st->meta;
    tm__buf_addf(b, "{\"size\":%lld,\"mtime_ns\":%lld,\"etag\":\"%s\",\"class\":\"%s\","
                    "\"meta\":{",
                 (long long)st->size, (long long)st->mtime_ns, st->etag,
                 st->storage_class);
    tm__buf_addf(b, "\"md5chksum\":\"%s\"", m->md5_b64);
    if (m->has_mtime)
        tm__buf_addf(b, ",\"mtime_ns\":%lld", (long long)m->mtime_ns);
    if (m->has_mode)
        tm__buf_addf(b, ",\"mode\":%u", m->mode);
    if (m->has_uid)
        tm__buf_addf(b, ",\"uid\":%lld", (long long)m->uid);
    if (m->has_gid)
        tm__buf_addf(b, ",\"gid\":%lld", (long long)m->gid);
    tm__buf_adds(b, "}}");
}

/* Writes data to path atomically (temporary, fsync, rename). */
static int write_atomic(const char *path, const char *data, size_t n)
{
    struct tm__buf tmp = TM__BUF_INIT;
    int fd, rc;
    tm__buf_addf(&tmp, "%s.tmp", path);
    fd = open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        tm__buf_release(&tmp);
        return tm__from_errno(errno);
    }
    rc = tm__write_full(fd, data, n);
    if (!rc && fsync(fd))
        rc = tm__from_errno(errno);
    close(fd);
    if (!rc && rename(tmp.buf, path))
        rc = tm__from_errno(errno);
    tm__buf_release(&tmp);
    return rc;
}

static int cmd_ls(struct tm__s3 *s, int argc, char **argv)
{
    struct tm__s3_list_req q;
    struct tm__s3_page pg;
    struct tm__s3_err err;
    struct tm__buf out = TM__BUF_INIT, cur = TM__BUF_INIT;
    const char *cursor = opt(argc, argv, "--cursor");
    char *token = NULL;
    long long pages = opt(argc, argv, "--pages") ? num(opt(argc, argv, "--pages"), 10) : 0;
    long long i;
    size_t k;
    int rc = 0;

    if (argc < 1)
        return 2;
    memset(&q, 0, sizeof(q));
    q.prefix = opt(argc, argv, "--prefix");
    q.delimiter = opt(argc, argv, "--delimiter");
    q.max_keys = opt(argc, argv, "--max-keys") ? (int)num(opt(argc, argv, "--max-keys"), 10) : 0;
    q.start_after = opt(argc, argv, "--start-after");
    if (opt(argc, argv, "--token"))
        token = strdup(opt(argc, argv, "--token"));
    if (cursor) {
        /* a stored cursor: resume after the last durable key */
        FILE *f = fopen(cursor, "re");
        if (f) {
            char line[4096];
            size_t n = fread(line, 1, sizeof(line) - 1, f);
            line[n] = '\0';
            fclose(f);
            if (n)
                tm__buf_add(&cur, line, n);
        }
        if (cur.len)
            q.start_after = cur.buf;
    }
    for (i = 0; pages <= 0 || i < pages; i++) {
        q.continuation = token;
        rc = tm__s3_list(s, argv[0], &q, &pg, &err);
        if (rc) {
            print_err(&err, rc);
            break;
        }
        tm__buf_reset(&out);
        tm__buf_addf(&out, "{\"page\":%lld,\"truncated\":%s,\"objects\":[", i,
                     pg.truncated ? "true" : "false");
        for (k = 0; k < pg.n_objects; k++) {
            const struct tm__s3_object *o = &pg.objects[k];
            tm__buf_adds(&out, k ? ",{\"key\":" : "{\"key\":");
            tm__buf_add_json(&out, o->key, o->key_len);
            tm__buf_addf(&out, ",\"size\":%lld,\"mtime_ns\":%lld,\"etag\":\"%s\",\"class\":\"%s\"}",
                         (long long)o->size, (long long)o->mtime_ns, o->etag,
                         o->storage_class);
        }
        tm__buf_adds(&out, "],\"prefixes\":[");
        for (k = 0; k < pg.n_prefixes; k++) {
            if (k)
                tm__buf_addch(&out, ',');
            tm__buf_add_json(&out, pg.prefixes[k], pg.prefix_lens[k]);
        }
        tm__buf_adds(&out, "],\"last\":");
        if (pg.last)
            tm__buf_add_json(&out, pg.last, strlen(pg.last));
        else
            tm__buf_adds(&out, "null");
        tm__buf_addf(&out, ",\"requests\":%lld}\n", (long long)tm__s3_requests(s));
        fputs(out.buf, stdout);
        fflush(stdout);
        if (cursor && pg.last && (rc = write_atomic(cursor, pg.last, strlen(pg.last)))) {
            fprintf(stderr, "s3tool: cannot store the cursor: %s\n", tm_strerror(rc));
            tm__s3_page_release(&pg);
            break;
        }
        free(token);
        token = pg.next_token ? strdup(pg.next_token) : NULL;
        tm__s3_page_release(&pg);
        if (!token)
            break;
    }
    free(token);
    tm__buf_release(&out);
    tm__buf_release(&cur);
    return rc ? 1 : 0;
}

static int cmd_head(struct tm__s3 *s, int argc, char **argv)
{
    struct tm__s3_stat st;
    struct tm__s3_err err;
    struct tm__buf out = TM__BUF_INIT;
    int rc;
    if (argc < 2)
        return 2;
    rc = tm__s3_head(s, argv[0], argv[1], &st, &err);
    if (rc) {
        print_err(&err, rc);
        return 1;
    }
    add_stat_json(&out, &st);
    tm__buf_addch(&out, '\n');
    fputs(out.buf, stdout);
    tm__buf_release(&out);
    return 0;
}

struct sink {
    int fd;        /* where the bytes go */
    int64_t bytes; /* how many went */
};

static int sink_fd(void *ctx, const void *data, size_t n)
{
    struct sink *k = ctx;
    k->bytes += (int64_t)n;
    return tm__write_full(k->fd, data, n);
}

static int cmd_get(struct tm__s3 *s, int argc, char **argv)
{
    struct tm__s3_stat st;
    struct tm__s3_err err;
    struct sink k = {1, 0};
    const char *out = opt(argc, argv, "--out");
    int64_t off = 0, len = -1;
    int rc, i;

    if (argc < 2)
        return 2;
    for (i = 2; i < argc - 2; i++)
        if (!strcmp(argv[i], "--range")) {
            off = num(argv[i + 1], 10);
            len = num(argv[i + 2], 10);
        }
    if (out) {
        k.fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (k.fd < 0) {
            perror("s3tool: open");
            return 1;
        }
    }
    if (flag(argc, argv, "--reader")) {
        struct tm__s3_reader *r = NULL;
        size_t chunk = opt(argc, argv, "--chunk") ? (size_t)num(opt(argc, argv, "--chunk"), 10)
                                                  : 65536;
        char *buf = malloc(chunk);
        rc = buf ? tm__s3_reader_open(s, argv[0], argv[1], off, len, &r, &st, &err)
                 : TM_ENOMEM;
        while (!rc) {
            int64_t n = tm__s3_reader_read(r, buf, chunk, &err);
            if (n <= 0) {
                rc = (int)n;
                break;
            }
            rc = sink_fd(&k, buf, (size_t)n);
        }
        tm__s3_reader_close(r);
        free(buf);
    } else {
        rc = tm__s3_get(s, argv[0], argv[1], off, len, sink_fd, &k, &st, &err);
    }
    if (out)
        close(k.fd);
    if (rc) {
        print_err(&err, rc);
        return 1;
    }
    if (out) {
        struct tm__buf o = TM__BUF_INIT;
        tm__buf_addf(&o, "{\"bytes\":%lld,\"stat\":", (long long)k.bytes);
        add_stat_json(&o, &st);
        tm__buf_adds(&o, "}\n");
        fputs(o.buf, stdout);
        tm__buf_release(&o);
    }
    return 0;
}

/* The journal: "upload ID" then one "part N SIZE ETAG" per part, each
 * line fsync'ed, as the adapter records parts in the state file. */
struct journal {
    int fd;            /* the journal, -1: none */
    int said_upload;   /* the upload line is written */
};

static int on_part(void *ctx, const char *upload_id, const struct tm__s3_part *p)
{
    struct journal *j = ctx;
    struct tm__buf b = TM__BUF_INIT;
    int rc;
    if (j->fd < 0)
        return 0;
    if (!j->said_upload)
        tm__buf_addf(&b, "upload %s\n", upload_id);
    tm__buf_addf(&b, "part %d %lld %s\n", p->number, (long long)p->size, p->etag);
    rc = tm__write_full(j->fd, b.buf, b.len);
    if (!rc && fsync(j->fd))
        rc = tm__from_errno(errno);
    j->said_upload = 1;
    tm__buf_release(&b);
    return rc;
}

static int open_src(const char *src, int64_t *size)
{
    struct stat sb;
    int fd = strcmp(src, "-") ? open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : 0;
    if (fd < 0) {
        perror("s3tool: open source");
        return -1;
    }
    if (*size < 0) {
        if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
            fprintf(stderr, "s3tool: give --size for a source that is not a file\n");
            return -1;
        }
        *size = sb.st_size;
    }
    return fd;
}

/* Streams the source into the writer; commits; prints the result. */
static int pump(struct tm__s3_writer *w, int fd, struct tm__s3_err *err)
{
    char *buf = malloc(1 << 20);
    char md5[33];
    int rc = buf ? 0 : TM_ENOMEM;
    while (!rc) {
        ssize_t n = read(fd, buf, 1 << 20);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = tm__from_errno(errno);
            break;
        }
        if (n == 0)
            break;
        rc = tm__s3_writer_write(w, buf, (size_t)n, err);
    }
    free(buf);
    if (rc) {
        struct tm__s3_err e2;
        tm__s3_writer_abort(w, &e2);
        return rc;
    }
    rc = tm__s3_writer_commit(w, md5, err);
    if (!rc)
        printf("{\"md5\":\"%s\"}\n", md5);
    return rc;
}

static void meta_from_args(int argc, char **argv, struct tm__s3_meta *m)
{
    memset(m, 0, sizeof(*m));
    if ((m->has_mtime = opt(argc, argv, "--mtime") != NULL))
        m->mtime_ns = num(opt(argc, argv, "--mtime"), 10);
    if ((m->has_mode = opt(argc, argv, "--mode") != NULL))
        m->mode = (uint32_t)num(opt(argc, argv, "--mode"), 8);
    if ((m->has_uid = opt(argc, argv, "--uid") != NULL))
        m->uid = num(opt(argc, argv, "--uid"), 10);
    if ((m->has_gid = opt(argc, argv, "--gid") != NULL))
        m->gid = num(opt(argc, argv, "--gid"), 10);
    if (opt(argc, argv, "--md5chksum"))
        snprintf(m->md5_b64, sizeof(m->md5_b64), "%s", opt(argc, argv, "--md5chksum"));
}

static int cmd_put(struct tm__s3 *s, int argc, char **argv)
{
    struct tm__s3_meta m;
    struct tm__s3_put_opts o;
    struct tm__s3_err err;
    struct tm__s3_writer *w;
    struct journal j = {-1, 0};
    int64_t size = opt(argc, argv, "--size") ? num(opt(argc, argv, "--size"), 10) : -1;
    const char *jpath = opt(argc, argv, "--journal");
    int fd, rc;

    if (argc < 3)
        return 2;
    meta_from_args(argc, argv, &m);
    memset(&o, 0, sizeof(o));
    o.meta = &m;
    o.content_type = opt(argc, argv, "--content-type");
    o.whole_md5 = 1; /* put prints it: the test compares it with its own */
    fd = open_src(argv[2], &size);
    if (fd < 0)
        return 1;
    if (jpath) {
        j.fd = open(jpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (j.fd < 0) {
            perror("s3tool: journal");
            return 1;
        }
    }
    if (flag(argc, argv, "--single")) {
        char *buf = malloc(size ? (size_t)size : 1);
        ssize_t got = 0, n;
        char etag[72];
        while (buf && got < size && (n = read(fd, buf + got, (size_t)(size - got))) > 0)
            got += n;
        rc = buf && got == size ? tm__s3_put(s, argv[0], argv[1], buf, (size_t)size, &o,
                                             etag, &err)
                                : TM_EIO;
        if (!rc)
            printf("{\"etag\":\"%s\"}\n", etag);
        free(buf);
    } else {
        rc = tm__s3_writer_open(s, argv[0], argv[1], size, &o, on_part, &j, &w, &err);
        if (!rc) {
            if (tm__s3_writer_upload_id(w) && j.fd >= 0) {
                struct tm__buf b = TM__BUF_INIT;
                tm__buf_addf(&b, "upload %s\n", tm__s3_writer_upload_id(w));
                tm__write_full(j.fd, b.buf, b.len);
                fsync(j.fd);
                j.said_upload = 1;
                tm__buf_release(&b);
            }
            rc = pump(w, fd, &err);
        }
    }
    if (fd > 0)
        close(fd);
    if (j.fd >= 0)
        close(j.fd);
    if (rc) {
        print_err(&err, rc);
        return 1;
    }
    return 0;
}

static int cmd_resume(struct tm__s3 *s, int argc, char **argv)
{
    struct tm__s3_part parts[10000];
    struct tm__s3_err err;
    struct tm__s3_writer *w;
    struct journal j = {-1, 1};
    const char *jpath = opt(argc, argv, "--journal");
    int64_t size = opt(argc, argv, "--size") ? num(opt(argc, argv, "--size"), 10) : -1;
    int64_t offset = 0, skipped = 0;
    char upload[1024] = "", line[1200];
    size_t n = 0;
    FILE *f;
    int fd, rc;

    if (argc < 3 || !jpath)
        return 2;
    f = fopen(jpath, "re");
    if (!f) {
        perror("s3tool: journal");
        return 1;
    }
    while (fgets(line, sizeof(line), f)) {
        int num_;
        long long sz;
        char etag[72];
        if (sscanf(line, "upload %1000s", upload) == 1)
            continue;
        if (n < 10000 && sscanf(line, "part %d %lld %71s", &num_, &sz, etag) == 3) {
            parts[n].number = num_;
            parts[n].size = sz;
            snprintf(parts[n].etag, sizeof(parts[n].etag), "%s", etag);
            n++;
        }
    }
    fclose(f);
    if (!upload[0]) {
        fprintf(stderr, "s3tool: no upload in the journal\n");
        return 1;
    }
    fd = open_src(argv[2], &size);
    if (fd < 0)
        return 1;
    j.fd = open(jpath, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    rc = tm__s3_writer_resume(s, argv[0], argv[1], size, upload, parts,
                              flag(argc, argv, "--no-records") ? 0 : n, on_part, &j,
                              &w, &offset, &err);
    if (!rc) {
        /* skip what is already on the server */
        if (fd > 0 && lseek(fd, offset, SEEK_SET) == offset) {
            skipped = offset;
        } else {
            char buf[65536];
            while (skipped < offset) {
                ssize_t k = read(fd, buf, (size_t)(offset - skipped) < sizeof(buf)
                                              ? (size_t)(offset - skipped) : sizeof(buf));
                if (k <= 0)
                    break;
                skipped += k;
            }
        }
        fprintf(stderr, "s3tool: resuming %s at %lld\n", upload, (long long)offset);
        if (skipped != offset) {
            struct tm__s3_err e2;
            tm__s3_writer_abort(w, &e2);
            rc = TM_EIO;
            err.code = rc;
        } else {
            rc = pump(w, fd, &err);
        }
    }
    if (fd > 0)
        close(fd);
    if (j.fd >= 0)
        close(j.fd);
    if (rc) {
        print_err(&err, rc);
        return 1;
    }
    return 0;
}

static int cmd_cp(struct tm__s3 *s, int argc, char **argv)
{
    struct tm__s3_err err;
    struct tm__s3_meta m;
    struct tm__s3_put_opts o;
    struct tm__s3_stat st;
    int64_t size = opt(argc, argv, "--size") ? num(opt(argc, argv, "--size"), 10) : -1;
    int rc;
    if (argc < 4)
        return 2;
    if (size < 0) {
        rc = tm__s3_head(s, argv[0], argv[1], &st, &err);
        if (rc) {
            print_err(&err, rc);
            return 1;
        }
        size = st.size;
    }
    meta_from_args(argc, argv, &m);
    memset(&o, 0, sizeof(o));
    o.meta = &m;
    rc = tm__s3_copy(s, argv[2], argv[3], argv[0], argv[1], size,
                     m.has_mtime ? &o : NULL, &err);
    if (rc) {
        print_err(&err, rc);
        return 1;
    }
    printf("{\"copied\":%lld}\n", (long long)size);
    return 0;
}

static int cmd_simple(struct tm__s3 *s, const char *cmd, int argc, char **argv)
{
    struct tm__s3_err err;
    int rc;
    if (argc < 2)
        return 2;
    if (!strcmp(cmd, "rm")) {
        rc = tm__s3_delete(s, argv[0], argv[1], &err);
    } else if (!strcmp(cmd, "mkdir")) {
        rc = tm__s3_put(s, argv[0], argv[1], "", 0, NULL, NULL, &err);
    } else if (!strcmp(cmd, "mp-create")) {
        char *id = NULL;
        rc = tm__s3_mp_create(s, argv[0], argv[1], NULL, &id, &err);
        if (!rc)
            printf("{\"upload_id\":\"%s\"}\n", id);
        free(id);
    } else if (!strcmp(cmd, "fill")) {
        /* N small objects PREFIX00000.. through the client's PUT */
        long long n = argc > 2 ? num(argv[2], 10) : -1, i;
        char key[2048];
        rc = n < 0 ? TM_EINVAL : 0;
        for (i = 0; i < n && !rc; i++) {
            snprintf(key, sizeof(key), "%s%05lld", argv[1], i);
            rc = tm__s3_put(s, argv[0], key, key, strlen(key), NULL, NULL, &err);
        }
        if (!rc)
            printf("{\"filled\":%lld,\"requests\":%lld}\n", n,
                   (long long)tm__s3_requests(s));
    } else if (argc < 3) {
        return 2;
    } else if (!strcmp(cmd, "mp-abort")) {
        rc = tm__s3_mp_abort(s, argv[0], argv[1], argv[2], &err);
    } else if (!strcmp(cmd, "mp-parts")) {
        struct tm__s3_part *p = NULL;
        size_t n = 0, i;
        rc = tm__s3_mp_list_parts(s, argv[0], argv[1], argv[2], &p, &n, &err);
        if (!rc) {
            printf("{\"parts\":[");
            for (i = 0; i < n; i++)
                printf("%s{\"number\":%d,\"size\":%lld,\"etag\":\"%s\"}", i ? "," : "",
                       p[i].number, (long long)p[i].size, p[i].etag);
            printf("],\"requests\":%lld}\n", (long long)tm__s3_requests(s));
        }
        free(p);
    } else {
        return 2;
    }
    if (rc) {
        print_err(&err, rc);
        return 1;
    }
    if (!strcmp(cmd, "rm") || !strcmp(cmd, "mkdir") || !strcmp(cmd, "mp-abort"))
        printf("{\"ok\":true}\n");
    return 0;
}

/* ---- the adapter interface, for the conformance checks ---- */

static void aerr_json(const char *op, const struct tm__aerr *e, int rc)
{
    struct tm__buf b = TM__BUF_INIT;
    tm__buf_addf(&b, "{\"error\":\"%s\",\"op\":\"%s\",\"class\":%d,\"message\":",
                 tm_err_name(rc), op, e->cls);
    tm__buf_add_json(&b, e->msg, strlen(e->msg));
    tm__buf_adds(&b, "}\n");
    fputs(b.buf, stderr);
    tm__buf_release(&b);
}

static void entry_json(struct tm__buf *b, const struct tm__entry *e)
{
    tm__buf_adds(b, "{\"name\":");
    tm__buf_add_json(b, e->name ? e->name : "", e->name ? e->name_len : 0);
    tm__buf_addf(b, ",\"type\":\"%s\",\"size\":%lld,\"mtime\":%lld,\"mode\":%u}",
                 tm__type_names[e->type], (long long)e->size, (long long)e->mtime,
                 (unsigned)e->mode);
}

struct page {
    struct tm__buf b; /* the JSON of the page's entries */
    int n;            /* entries */
};

static int page_add(void *ctx, const struct tm__entry *e)
{
    struct page *p = ctx;
    if (p->n++)
        tm__buf_addch(&p->b, ',');
    entry_json(&p->b, e);
    return 0;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int ad_ls(struct tm__adapter *a, int argc, char **argv)
{
    const char *from = opt(argc, argv, "--from");
    long long pages = opt(argc, argv, "--pages") ? num(opt(argc, argv, "--pages"), 10) : 0;
    struct tm__buf pos = TM__BUF_INIT, out = TM__BUF_INIT;
    struct tm__lister *l;
    struct tm__aerr e;
    int rc, more = 1;
    long long i;
    size_t k;

    for (k = 0; from && from[k] && from[k + 1]; k += 2) {
        char c = (char)(hexval(from[k]) * 16 + hexval(from[k + 1]));
        tm__buf_add(&pos, &c, 1);
    }
    rc = tm__adapter_list_open(a, argv[0], pos.buf, pos.len, &l, &e);
    if (rc) {
        aerr_json("list_open", &e, rc);
        tm__buf_release(&pos);
        return 1;
    }
    for (i = 0; more && (pages <= 0 || i < pages); i++) {
        struct page p = {TM__BUF_INIT, 0};
        rc = tm__adapter_list_next(l, page_add, &p, &more, &e);
        if (rc) {
            aerr_json("list_next", &e, rc);
            tm__buf_release(&p.b);
            break;
        }
        tm__buf_reset(&pos);
        tm__adapter_list_pos(l, &pos);
        tm__buf_reset(&out);
        tm__buf_addf(&out, "{\"page\":%lld,\"more\":%d,\"entries\":[%s],\"pos\":\"", i, more,
                     p.b.buf);
        for (k = 0; k < pos.len; k++)
            tm__buf_addf(&out, "%02x", (unsigned char)pos.buf[k]);
        tm__buf_adds(&out, "\"}\n");
        fputs(out.buf, stdout);
        tm__buf_release(&p.b);
    }
    tm__adapter_list_close(l);
    tm__buf_release(&pos);
    tm__buf_release(&out);
    return rc ? 1 : 0;
}

static int ad_put(struct tm__adapter *a, const char *path, const char *src, int64_t mtime,
                  uint32_t mode, int noreplace, int abort_half)
{
    struct tm__wattr w;
    struct tm__wfile *f;
    struct tm__aerr e;
    struct stat st;
    char *buf;
    int fd = open(src, O_RDONLY | O_CLOEXEC), rc;
    ssize_t n;
    int64_t done = 0;

    if (fd < 0 || fstat(fd, &st)) {
        fprintf(stderr, "s3tool: cannot open %s\n", src);
        return 2;
    }
    memset(&w, 0, sizeof w);
    w.size = st.st_size;
    w.mtime = mtime;
    w.mode = mode;
    w.uid = w.gid = -1;
    rc = tm__adapter_open_write(a, path, &w, &f, &e);
    if (rc) {
        close(fd);
        aerr_json("open_write", &e, rc);
        return 1;
    }
    buf = malloc(1 << 20);
    while (buf && (n = read(fd, buf, 1 << 20)) > 0) {
        int64_t put = tm__adapter_write(f, buf, (size_t)n, &e);
        if (put < 0) {
            rc = (int)put;
            aerr_json("write", &e, rc);
            break;
        }
        done += n;
        if (abort_half && done >= st.st_size / 2)
            break;
    }
    free(buf);
    close(fd);
    if (rc || abort_half) {
        tm__adapter_abort(f);
        if (!rc)
            printf("{\"aborted\":%lld}\n", (long long)done);
        return rc ? 1 : 0;
    }
    rc = tm__adapter_commit(f, mtime, mode, noreplace ? TM_NOREPLACE : 0, &e);
    if (rc) {
        aerr_json("commit", &e, rc);
        return 1;
    }
    printf("{\"written\":%lld}\n", (long long)done);
    return 0;
}

static int ad_get(struct tm__adapter *a, const char *path, const char *out)
{
    struct tm__rfile *f;
    struct tm__entry st, st2;
    struct tm__aerr e;
    struct tm__buf b = TM__BUF_INIT;
    char *buf = malloc(1 << 20);
    int fd, rc;
    int64_t n, total = 0;

    rc = buf ? tm__adapter_open_read(a, path, &f, &st, &e) : TM_ENOMEM;
    if (rc) {
        free(buf);
        aerr_json("open_read", &e, rc);
        return 1;
    }
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    while (fd >= 0 && (n = tm__adapter_read(f, buf, 1 << 20, &e)) > 0) {
        tm__write_full(fd, buf, (size_t)n);
        total += n;
    }
    if (fd >= 0)
        close(fd);
    rc = tm__adapter_fstat(f, &st2, &e);
    tm__adapter_close_read(f);
    free(buf);
    if (rc) {
        aerr_json("fstat", &e, rc);
        return 1;
    }
    tm__buf_addf(&b, "{\"read\":%lld,\"st\":", (long long)total);
    entry_json(&b, &st);
    tm__buf_adds(&b, ",\"fstat\":");
    entry_json(&b, &st2);
    tm__buf_adds(&b, "}\n");
    fputs(b.buf, stdout);
    tm__buf_release(&b);
    return 0;
}

static int adapter_main(int argc, char **argv)
{
    const char *kv[16];
    struct tm__sopts o = {kv, 0};
    struct tm__adapter *a = NULL;
    struct tm__aerr e;
    struct tm__entry st;
    char err[512], *spec;
    const char *op;
    int rc = 0, i = 1;

    if (argc < 3)
        return 2;
    while (i + 1 < argc && !strcmp(argv[i], "-o") && o.n < 16) {
        kv[o.n++] = argv[i + 1];
        i += 2;
    }
    rc = tm__spec_resolve(argv[0], &o, &spec, err, sizeof err);
    if (!rc) {
        rc = tm__adapter_open(spec, &o, &a, err, sizeof err);
        free(spec);
    }
    if (rc) {
        fprintf(stderr, "{\"error\":\"%s\",\"op\":\"open\",\"message\":\"%s\"}\n",
                tm_err_name(rc), err);
        return 1;
    }
    op = argv[i++];
    argc -= i;
    argv += i;
    rc = 2;
    if (!strcmp(op, "ls") && argc >= 1) {
        rc = ad_ls(a, argc, argv);
    } else if (!strcmp(op, "stat") && argc >= 1) {
        rc = tm__adapter_stat(a, argv[0], &st, &e);
        if (rc) {
            aerr_json("stat", &e, rc);
        } else {
            struct tm__buf b = TM__BUF_INIT;
            entry_json(&b, &st);
            tm__buf_addch(&b, '\n');
            fputs(b.buf, stdout);
            tm__buf_release(&b);
        }
        rc = rc ? 1 : 0;
    } else if (!strcmp(op, "get") && argc >= 2) {
        rc = ad_get(a, argv[0], argv[1]);
    } else if (!strcmp(op, "put") && argc >= 4) {
        rc = ad_put(a, argv[0], argv[1], num(argv[2], 10), (uint32_t)num(argv[3], 8),
                    flag(argc, argv, "--noreplace"), 0);
    } else if (!strcmp(op, "abort") && argc >= 2) {
        rc = ad_put(a, argv[0], argv[1], 0, 0644, 0, 1);
    } else if (!strcmp(op, "mkdir") && argc >= 1) {
        rc = tm__adapter_mkdir(a, argv[0], &e);
        if (rc)
            aerr_json("mkdir", &e, rc);
        rc = rc ? 1 : 0;
    } else if (!strcmp(op, "setattr") && argc >= 3) {
        rc = tm__adapter_set_attr(a, argv[0], num(argv[1], 10), (uint32_t)num(argv[2], 8), &e);
        if (rc)
            aerr_json("set_attr", &e, rc);
        rc = rc ? 1 : 0;
    } else if (!strcmp(op, "cannot") && argc >= 2) {
        char why[256];
        int type;
        for (type = 0; type < TM_T_COUNT && strcmp(tm__type_names[type], argv[1]); type++)
            ;
        if (type < TM_T_COUNT) {
            int c = tm__adapter_cannot_hold(a, argv[0], strlen(argv[0]), type, why,
                                            sizeof why);
            struct tm__buf b = TM__BUF_INIT;
            tm__buf_addf(&b, "{\"cannot\":%d,\"why\":", c);
            tm__buf_add_json(&b, c ? why : "", c ? strlen(why) : 0);
            tm__buf_adds(&b, "}\n");
            fputs(b.buf, stdout);
            tm__buf_release(&b);
            rc = 0;
        }
    } else if (!strcmp(op, "forget") && argc >= 2) {
        struct tm__buf state = TM__BUF_INIT;
        char chunk[4096];
        ssize_t n;
        int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
        while (fd >= 0 && (n = read(fd, chunk, sizeof chunk)) > 0)
            tm__buf_add(&state, chunk, (size_t)n);
        if (fd >= 0)
            close(fd);
        rc = tm__adapter_forget_write(a, argv[0], state.buf, state.len, &e);
        if (rc)
            aerr_json("forget_write", &e, rc);
        else
            printf("{\"forgot\":true}\n");
        tm__buf_release(&state);
        rc = rc ? 1 : 0;
    }
    tm__adapter_close(a);
    return rc;
}

int main(int argc, char **argv)
{
    struct tm__s3_config cfg;
    struct tm__s3 *s = NULL;
    struct tm__s3_err err;
    const char *resolve[2] = {NULL, NULL};
    const char *cmd;
    int i, rc;

    if (argc > 1 && !strcmp(argv[1], "adapter")) {
        rc = adapter_main(argc - 2, argv + 2);
        if (rc == 2)
            fputs(usage, stderr);
        return rc;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.path_style = -1;
    cfg.part_retries = -1;
    for (i = 1; i < argc && !strncmp(argv[i], "--", 2); i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--path-style")) {
            cfg.path_style = 1;
        } else if (!strcmp(a, "--virtual")) {
            cfg.path_style = 0;
        } else if (!strcmp(a, "--sign-payload")) {
            cfg.sign_payload = 1;
        } else if (!v) {
            fputs(usage, stderr);
            return 2;
        } else {
            i++;
            if (!strcmp(a, "--endpoint"))
                cfg.endpoint = v;
            else if (!strcmp(a, "--region"))
                cfg.region = v;
            else if (!strcmp(a, "--storage-class"))
                cfg.storage_class = v;
            else if (!strcmp(a, "--profile"))
                cfg.profile = v;
            else if (!strcmp(a, "--part-size"))
                cfg.part_size = num(v, 10);
            else if (!strcmp(a, "--threshold"))
                cfg.multipart_threshold = num(v, 10);
            else if (!strcmp(a, "--copy-part-size"))
                cfg.copy_part_size = num(v, 10);
            else if (!strcmp(a, "--inflight"))
                cfg.parts_in_flight = (int)num(v, 10);
            else if (!strcmp(a, "--part-retries"))
                cfg.part_retries = (int)num(v, 10);
            else if (!strcmp(a, "--resolve"))
                resolve[0] = v, cfg.resolve = resolve;
            else {
                fputs(usage, stderr);
                return 2;
            }
        }
    }
    if (i >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    cmd = argv[i++];
    rc = tm__s3_open(&cfg, &s, &err);
    if (rc) {
        print_err(&err, rc);
        return 1;
    }
    argc -= i;
    argv += i;
    if (!strcmp(cmd, "config")) {
        const struct tm__s3_settings *st = tm__s3_settings(s);
        struct tm__buf b = TM__BUF_INIT;
        tm__buf_addf(&b, "{\"endpoint\":\"%s\",\"region\":\"%s\",\"path_style\":%d,"
                         "\"custom\":%d,\"credentials\":",
                     st->endpoint, st->region, st->path_style, st->custom);
        tm__buf_add_json(&b, st->cred_source, strlen(st->cred_source));
        tm__buf_adds(&b, ",\"ca_bundle\":");
        if (st->ca_bundle)
            tm__buf_add_json(&b, st->ca_bundle, strlen(st->ca_bundle));
        else
            tm__buf_adds(&b, "null");
        tm__buf_adds(&b, "}\n");
        fputs(b.buf, stdout);
        tm__buf_release(&b);
        rc = 0;
    } else if (!strcmp(cmd, "ls")) {
        rc = cmd_ls(s, argc, argv);
    } else if (!strcmp(cmd, "head")) {
        rc = cmd_head(s, argc, argv);
    } else if (!strcmp(cmd, "get")) {
        rc = cmd_get(s, argc, argv);
    } else if (!strcmp(cmd, "put")) {
        rc = cmd_put(s, argc, argv);
    } else if (!strcmp(cmd, "resume")) {
        rc = cmd_resume(s, argc, argv);
    } else if (!strcmp(cmd, "cp")) {
        rc = cmd_cp(s, argc, argv);
    } else {
        rc = cmd_simple(s, cmd, argc, argv);
    }
    if (rc == 2)
        fputs(usage, stderr);
    tm__s3_free(s);
    return rc;
}
