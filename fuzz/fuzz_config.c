/*
 * fuzz_config.c - libFuzzer target of the YAML file beside the state file
 * (src/migration/config.c).
 *
 * Input: the text of a YAML file, given to tm__config_parse() (the body of
 * tm__config_read()). Asserts:
 *  - a refused file returns TM_ECORRUPT, TM_ESCHEMA or TM_ENOMEM with a
 *    message naming the file, and leaves the config empty;
 *  - an accepted file has every required field and numbers in range;
 *  - a round trip: the text tm__config_render() makes of it (what
 *    tm__config_write() writes) parses again to an equal config, and
 *    renders to the same bytes.
 * The round trip stays in memory: tm__config_write() is that rendering
 * plus an atomic file replacement, and an fsync per input would slow the
 * fuzzer a hundredfold. Single-threaded; LeakSanitizer checks the frees.
 */
#include "fuzz.h"
#include "migration/config.h"
#include "treemig.h"
#include "util/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int same_str(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static const char *field_diff(const struct tm__config *a, const struct tm__config *b)
{
    size_t i;
    if (a->version != b->version) return "version";
    if (!same_str(a->id, b->id)) return "id";
    if (!same_str(a->created, b->created)) return "created";
    if (!same_str(a->updated, b->updated)) return "updated";
    if (!same_str(a->phase, b->phase)) return "phase";
    if (!same_str(a->suspended_from, b->suspended_from)) return "suspended_from";
    if (!same_str(a->database, b->database)) return "database";
    if (!same_str(a->source, b->source)) return "source";
    if (!same_str(a->destination, b->destination)) return "destination";
    if (a->src_round != b->src_round) return "src_round";
    if (a->dst_round != b->dst_round) return "dst_round";
    if (a->workers != b->workers) return "workers";
    if (a->lead != b->lead) return "lead";
    if (a->retries != b->retries) return "retries";
    if (a->n_excludes != b->n_excludes) return "n_excludes";
    for (i = 0; i < a->n_excludes; i++)
        if (!same_str(a->excludes[i], b->excludes[i])) return "excludes";
    if (!same_str(a->log_level, b->log_level)) return "log_level";
    if (!same_str(a->udp_level, b->udp_level)) return "udp_level";
    if (!same_str(a->udp_addr, b->udp_addr)) return "udp_addr";
    return NULL;
}

static void check_empty(const struct tm__config *c)
{
    static const struct tm__config zero;
    CHECK(memcmp(c, &zero, sizeof zero) == 0);
}

static void check_valid(const struct tm__config *c)
{
    size_t i;
    CHECK(c->version == TM_CONFIG_VERSION);
    CHECK(c->id && c->phase && c->database && c->source && c->destination);
    CHECK(c->src_round >= 0 && c->src_round <= 1000000000);
    CHECK(c->dst_round >= 0 && c->dst_round <= 1000000000);
    CHECK(c->workers >= 1 && c->workers <= 1024);
    CHECK(c->lead >= 1 && c->lead <= 1000000);
    CHECK(c->retries >= 0 && c->retries <= 100);
    CHECK(c->n_excludes == 0 || c->excludes);
    for (i = 0; i < c->n_excludes; i++)
        CHECK(c->excludes[i] && c->excludes[i][0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tm__config c = { 0 }, again = { 0 };
    struct tm__buf err = TM__BUF_INIT, text = TM__BUF_INIT, text2 = TM__BUF_INIT;
    const char *diff;
    int rc;

    if (size > 65536)
        return 0;
    rc = tm__config_parse((const char *)data, size, "fuzz.yaml", &c, &err);
    if (rc) {
        CHECK(rc == TM_ECORRUPT || rc == TM_ESCHEMA || rc == TM_ENOMEM);
        CHECK(rc == TM_ENOMEM || strstr(err.buf, "fuzz.yaml"));
        check_empty(&c);
        goto out;
    }
    check_valid(&c);
    CHECK(tm__config_render(&text, &c) == 0);
    tm__buf_reset(&err);
    rc = tm__config_parse(text.buf, text.len, "rendered.yaml", &again, &err);
    diff = rc ? "(does not parse)" : field_diff(&c, &again);
    if (diff) {
        fprintf(stderr, "round trip of the YAML file failed: %s %s\n--- "
                "rendered:\n%s---\n", diff, err.buf, text.buf);
        abort();
    }
    CHECK(tm__config_render(&text2, &again) == 0);
    CHECK(text.len == text2.len && !memcmp(text.buf, text2.buf, text.len));
out:
    tm__config_release(&c);
    tm__config_release(&again);
    tm__buf_release(&err);
    tm__buf_release(&text);
    tm__buf_release(&text2);
    return 0;
}
