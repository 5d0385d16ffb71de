/*
 * fuzz_sim_spec.c - libFuzzer target of the sim: spec parser and of path
 * resolution in a simulated world (src/adapter/sim_gen.c).
 *
 * Input: a spec (the text after "sim:"), optionally followed by '\n' and a
 * path. Asserts:
 *  - a refused spec returns TM_EBADSPEC or TM_ENOMEM with a message;
 *  - an accepted spec has every field in its documented range, and printed
 *    back as text it parses to the same spec (a round trip);
 *  - tm__sim_lookup() of a path (the part after '\n', or the whole input)
 *    in the fuzzed world and in two fixed small worlds returns 0, TM_ENOENT
 *    or TM_ENOTDIR; a node it finds is the child of that name in its
 *    parent's listing, and tm__sim_resolve() agrees with it;
 *  - a walk down the fixed worlds steered by the input's bytes reaches
 *    nodes whose paths look up to exactly those nodes.
 * Single-threaded; everything is freed (LeakSanitizer checks).
 */
#include "fuzz.h"
#include "adapter/adapter.h"
#include "adapter/sim.h"
#include "treemig.h"
#include "util/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct tm__sim_spec fixed[2]; /* a small source and destination */

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    (void)argc;
    (void)argv;
    CHECK(tm__sim_spec_parse(&fixed[0], "seed=7,depth=4,names=mixed,folders=4,"
                             "files=5", err, sizeof err) == 0);
    CHECK(tm__sim_spec_parse(&fixed[1], "seed=7,depth=4,names=mixed,folders=4,"
                             "files=5,world=dst,keep=0.8,extra=0.3,ctype=0.1,"
                             "csize=0.1,cmtime=0.1", err, sizeof err) == 0);
    return 0;
}

static void check_ranges(const struct tm__sim_spec *s)
{
    CHECK(s->world == TM_SIM_SRC || s->world == TM_SIM_DST);
    CHECK(s->depth >= 0 && s->depth <= TM_SIM_MAX_DEPTH);
    CHECK(s->folders >= 0 && s->folders <= 1e6);
    CHECK(s->files >= 0 && s->files <= 1e6);
    CHECK(s->decay >= 0 && s->decay <= 2);
    CHECK(s->tail > 1 && s->tail <= 100);
    CHECK(s->root_folders >= -1 && s->root_folders <= 10000000);
    CHECK(s->root_files >= -1 && s->root_files <= 10000000);
    CHECK(s->max_folders >= 0 && s->max_folders <= 10000000);
    CHECK(s->max_files >= 0 && s->max_files <= 10000000);
    CHECK(s->size >= 0 && s->size <= 0x1p40);
    CHECK(s->size_tail > 1 && s->size_tail <= 100);
    CHECK(s->max_size >= 0 && s->max_size <= (1LL << 50));
    CHECK(s->empty >= 0 && s->empty <= 1);
    CHECK(s->mixed_names == 0 || s->mixed_names == 1);
    CHECK(s->keep >= 0 && s->keep <= 1);
    CHECK(s->extra >= 0 && s->extra <= 10);
    CHECK(s->extra_folders >= 0 && s->extra_folders <= 1);
    CHECK(s->csize >= 0 && s->cmtime >= 0 && s->ctype >= 0);
    CHECK(s->csize + s->cmtime + s->ctype <= 1.0 + 1e-12);
    CHECK(s->transient >= 0 && s->transient <= 1);
    CHECK(s->permanent >= 0 && s->permanent <= 1);
    CHECK(s->src_permanent >= 0 && s->src_permanent <= 1);
    CHECK(s->latency_ms >= 0 && s->latency_ms <= 600000);
    CHECK(s->jitter_ms >= 0 && s->jitter_ms <= 600000);
    CHECK(s->page >= 1 && s->page <= 10000000);
    CHECK(s->throttle >= 0 && s->throttle <= 10000000);
    CHECK(s->burst >= 1 && s->burst <= 10000000);
    CHECK(s->crash_after >= 0 && s->crash_after <= (1LL << 53));
    CHECK(s->deny.n >= 0 && s->deny.n <= TM_SIM_MAX_PREFIX);
    CHECK(s->src_deny.n >= 0 && s->src_deny.n <= TM_SIM_MAX_PREFIX);
    CHECK(s->badname.n >= 0 && s->badname.n <= TM_SIM_MAX_PREFIX);
    CHECK(s->src_badname.n >= 0 && s->src_badname.n <= TM_SIM_MAX_PREFIX);
    CHECK(!s->overlay || (s->overlay[0] == '/' && !strchr(s->overlay, ',')));
    if (s->world == TM_SIM_SRC)
        CHECK(s->src_deny.n == 0 && s->src_permanent == 0 && s->src_badname.n == 0);
}

static int add_prefixes(struct tm__buf *b, const char *key,
                        const struct tm__sim_prefixes *l)
{
    int i, rc = 0;
    if (!l->n)
        return 0;
    rc = tm__buf_addf(b, ",%s=", key);
    for (i = 0; !rc && i < l->n; i++) {
        CHECK(strlen(l->p[i]) == l->len[i]);
        rc = tm__buf_addf(b, "%s%s", i ? ":" : "", l->p[i]);
    }
    return rc;
}

/* Prints a parsed spec back as text that names every parameter. */
static int format_spec(struct tm__buf *b, const struct tm__sim_spec *s)
{
    int rc = tm__buf_addf(
        b, "seed=%llu,world=%s,depth=%d,folders=%.17g,files=%.17g,decay=%.17g,"
        "tail=%.17g,max_folders=%lld,max_files=%lld,size=%.0f,size_tail=%.17g,"
        "max_size=%lld,empty=%.17g,names=%s,dst_seed=%llu,keep=%.17g,extra=%.17g,"
        "extra_folders=%.17g,csize=%.17g,cmtime=%.17g,ctype=%.17g,"
        "transient=%.17g,permanent=%.17g,src_permanent=%.17g,latency=%.17g,"
        "jitter=%.17g,page=%lld,throttle=%lld,burst=%lld,crash_after=%lld",
        (unsigned long long)s->seed, s->world == TM_SIM_DST ? "dst" : "src",
        s->depth, s->folders, s->files, s->decay, s->tail,
        (long long)s->max_folders, (long long)s->max_files, s->size, s->size_tail,
        (long long)s->max_size, s->empty, s->mixed_names ? "mixed" : "simple",
        (unsigned long long)s->dst_seed, s->keep, s->extra, s->extra_folders,
        s->csize, s->cmtime, s->ctype, s->transient, s->permanent,
        s->src_permanent, s->latency_ms, s->jitter_ms, (long long)s->page,
        (long long)s->throttle, (long long)s->burst, (long long)s->crash_after);
    if (!rc && s->root_folders >= 0)
        rc = tm__buf_addf(b, ",root_folders=%lld", (long long)s->root_folders);
    if (!rc && s->root_files >= 0)
        rc = tm__buf_addf(b, ",root_files=%lld", (long long)s->root_files);
    if (!rc)
        rc = add_prefixes(b, "deny", &s->deny);
    if (!rc)
        rc = add_prefixes(b, "src_deny", &s->src_deny);
    if (!rc)
        rc = add_prefixes(b, "badname", &s->badname);
    if (!rc)
        rc = add_prefixes(b, "src_badname", &s->src_badname);
    if (!rc && s->overlay)
        rc = tm__buf_addf(b, ",overlay=%s", s->overlay);
    return rc;
}

static int same_prefixes(const struct tm__sim_prefixes *a,
                         const struct tm__sim_prefixes *b)
{
    int i;
    if (a->n != b->n)
        return 0;
    for (i = 0; i < a->n; i++)
        if (a->len[i] != b->len[i] || memcmp(a->p[i], b->p[i], a->len[i]))
            return 0;
    return 1;
}

static int same_spec(const struct tm__sim_spec *a, const struct tm__sim_spec *b)
{
    return a->seed == b->seed && a->world == b->world && a->depth == b->depth &&
           a->folders == b->folders && a->files == b->files &&
           a->decay == b->decay && a->tail == b->tail &&
           a->root_folders == b->root_folders && a->root_files == b->root_files &&
           a->max_folders == b->max_folders && a->max_files == b->max_files &&
           a->size == b->size && a->size_tail == b->size_tail &&
           a->max_size == b->max_size && a->empty == b->empty &&
           a->mixed_names == b->mixed_names && a->dst_seed == b->dst_seed &&
           a->keep == b->keep && a->extra == b->extra &&
           a->extra_folders == b->extra_folders && a->csize == b->csize &&
           a->cmtime == b->cmtime && a->ctype == b->ctype &&
           a->transient == b->transient && a->permanent == b->permanent &&
           same_prefixes(&a->deny, &b->deny) &&
           a->src_permanent == b->src_permanent &&
           same_prefixes(&a->src_deny, &b->src_deny) &&
           same_prefixes(&a->badname, &b->badname) &&
           same_prefixes(&a->src_badname, &b->src_badname) &&
           !a->overlay == !b->overlay &&
           (!a->overlay || strcmp(a->overlay, b->overlay) == 0) &&
           a->latency_ms == b->latency_ms && a->jitter_ms == b->jitter_ms &&
           a->page == b->page && a->throttle == b->throttle &&
           a->burst == b->burst && a->crash_after == b->crash_after &&
           a->dsalt == b->dsalt;
}

static void same_ent(const struct tm__sim_ent *a, const struct tm__sim_ent *b)
{
    CHECK(a->name_len == b->name_len && !memcmp(a->name, b->name, a->name_len));
    CHECK(a->type == b->type && a->size == b->size && a->mtime == b->mtime);
    CHECK(a->mode == b->mode && a->fate == b->fate);
    if (a->type == TM_T_FOLDER)
        CHECK(a->sub.key == b->sub.key && a->sub.depth == b->sub.depth &&
              a->sub.gen == b->sub.gen);
}

/* Looks path up in the world of sp and checks what it finds. */
static void check_lookup(const struct tm__sim_spec *sp, const char *path)
{
    struct tm__sim_ent e, c;
    struct tm__sim_folder f;
    struct tm__sim_dir d;
    const char *last;
    char *parent;
    int rc = tm__sim_lookup(sp, path, &e), rr;
    CHECK(rc == 0 || rc == TM_ENOENT || rc == TM_ENOTDIR);
    rr = tm__sim_resolve(sp, path, &f);
    if (rc) {
        CHECK(rr == rc);
        return;
    }
    CHECK(rr == (e.type == TM_T_FOLDER ? 0 : TM_ENOTDIR));
    if (!rr)
        CHECK(f.key == e.sub.key && f.depth == e.sub.depth && f.gen == e.sub.gen);
    /* what was found has a canonical path */
    CHECK(path[0] == '/' && !strstr(path, "//"));
    if (!strcmp(path, "/")) {
        CHECK(e.type == TM_T_FOLDER && e.sub.depth == 0);
        return;
    }
    CHECK(path[strlen(path) - 1] != '/');
    CHECK(e.sub.depth >= 1 && e.sub.depth <= sp->depth);
    CHECK(tm__name_valid(e.name, e.name_len));
    last = strrchr(path, '/') + 1;
    CHECK(strlen(last) == e.name_len && !memcmp(last, e.name, e.name_len));
    /* ... and is the child of that name in its parent's listing */
    parent = strndup(path, last - path > 1 ? (size_t)(last - path - 1) : 1);
    CHECK(parent);
    CHECK(tm__sim_resolve(sp, parent, &f) == 0);
    CHECK(f.depth + 1 == e.sub.depth);
    free(parent);
    tm__sim_dir_init(sp, &f, &d);
    if (d.slots <= 4096) {
        int64_t i, hits = 0;
        for (i = 0; i < d.slots; i++) {
            if (!tm__sim_child(sp, &d, i, &c) || c.name_len != e.name_len ||
                memcmp(c.name, e.name, e.name_len))
                continue;
            same_ent(&c, &e);
            hits++;
        }
        CHECK(hits == 1);
    }
}

/* Walks down the world of sp, choosing each child with a byte of steer,
 * and checks that the path of every node reached looks up to that node. */
static void check_walk(const struct tm__sim_spec *sp, const uint8_t *steer,
                       size_t n)
{
    struct tm__buf path = TM__BUF_INIT;
    struct tm__sim_folder f = tm__sim_root(sp);
    struct tm__sim_ent c, e;
    struct tm__sim_dir d;
    size_t k;
    for (k = 0; k < n && k < TM_SIM_MAX_DEPTH; k++) {
        int64_t slot;
        tm__sim_dir_init(sp, &f, &d);
        if (d.slots <= 0)
            break;
        slot = (int64_t)((steer[k] * 2654435761u) % (uint64_t)d.slots);
        if (!tm__sim_child(sp, &d, slot, &c))
            break; /* a source node the destination did not keep */
        CHECK(tm__buf_addch(&path, '/') == 0);
        CHECK(tm__buf_add(&path, c.name, c.name_len) == 0);
        CHECK(tm__sim_lookup(sp, path.buf, &e) == 0);
        same_ent(&c, &e);
        if (c.type != TM_T_FOLDER)
            break;
        f = c.sub;
    }
    tm__buf_release(&path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tm__sim_spec sp, again;
    struct tm__buf text = TM__BUF_INIT;
    char err[512], *in, *path, *nl;
    int rc, i;

    if (size > 8192)
        return 0;
    in = malloc(size + 1);
    CHECK(in);
    memcpy(in, data, size);
    in[size] = '\0';
    nl = strchr(in, '\n');
    path = in;
    if (nl) {
        *nl = '\0';
        path = nl + 1;
    }

    rc = tm__sim_spec_parse(&sp, in, err, sizeof err);
    if (rc) {
        CHECK(rc == TM_EBADSPEC || rc == TM_ENOMEM);
        CHECK(err[0] != '\0');
    } else {
        check_ranges(&sp);
        CHECK(format_spec(&text, &sp) == 0);
        rc = tm__sim_spec_parse(&again, text.buf, err, sizeof err);
        if (rc || !same_spec(&sp, &again)) {
            fprintf(stderr, "round trip of a spec failed (%d: %s)\n  in:  %s\n"
                    "  out: %s\n", rc, rc ? err : "", in, text.buf);
            abort();
        }
        tm__sim_spec_release(&again);
        if (nl) {
            check_lookup(&sp, path);
            check_walk(&sp, (const uint8_t *)path, strlen(path));
        }
    }
    tm__sim_spec_release(&sp);

    for (i = 0; i < 2; i++) {
        check_lookup(&fixed[i], path);
        check_walk(&fixed[i], data, size);
    }
    tm__buf_release(&text);
    free(in);
    return 0;
}
