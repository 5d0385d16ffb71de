#!/usr/bin/env bash
# bench/sim_scale.sh: discovery of a simulated pair of >= 10 million source
# nodes, checked against its ground truth, with wall time, nodes/s, rows/s
# and peak RSS, beside a plain SQLite bulk insert of the same rows into the
# same tables (the floor any SQLite-backed discovery pays).
#
#   bench/sim_scale.sh                     # 12.2 M source + 7.0 M destination nodes
#   SIM_SHAPE=seed=1,depth=6,folders=16,files=12,decay=0.9 MIN_NODES=0 bench/sim_scale.sh
#
# Environment:
#   TREEMIG       binary (default <repo>/build/treemig)
#   BENCH_DIR     work dir (default /tmp/treemig-sim-scale): state file, logs, baseline
#   SIM_SHAPE     shape and seed shared by both sides (docs/sim.md)
#   SIM_DST       destination keys (default world=dst with the defaults of docs/sim.md)
#   WORKERS       listing threads per side (default 4)
#   MIN_NODES     refuse shapes with fewer source nodes (default 10000000)
#   RSS_LIMIT_MB  peak RSS goal (default 256)
#   SKIP_BASELINE 1: no SQLite baseline
#
# Exit 1 when the counts differ from sim-stats or the peak RSS is over the
# goal. Not part of `make test`: it takes minutes and ~5 GB of disk. Timings
# depend on whatever else runs on the machine: the report prints the load.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
TREEMIG=${TREEMIG:-$REPO/build/treemig}
WORK=${BENCH_DIR:-/tmp/treemig-sim-scale}
SHAPE=${SIM_SHAPE:-seed=1,depth=7,folders=16,files=12,decay=0.9}
DSTKEYS=${SIM_DST:-world=dst}
WORKERS=${WORKERS:-4}
MIN_NODES=${MIN_NODES:-10000000}
RSS_LIMIT_MB=${RSS_LIMIT_MB:-256}
SKIP_BASELINE=${SKIP_BASELINE:-0}

die() { printf 'bench/sim_scale.sh: %s\n' "$*" >&2; exit 2; }
say() { printf '[sim_scale] %s\n' "$*" >&2; }

[[ -x $TREEMIG ]] || die "treemig binary not found: $TREEMIG (run make, or set TREEMIG)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
command -v python3 >/dev/null || die "python3 is missing"
case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/) die "BENCH_DIR=$WORK is too broad" ;; esac
mkdir -p "$WORK"

SRC="sim:$SHAPE"
DST="sim:$SHAPE,$DSTKEYS"
DB=$WORK/scale.db

# ------------------------------------------------------------ ground truth
say "sim-stats $DST"
/usr/bin/time -f '%e %M' -o "$WORK/stats.time" "$TREEMIG" sim-stats "$DST" >"$WORK/truth.json"
read -r STATS_WALL STATS_RSS <"$WORK/stats.time"
read -r SRC_NODES DST_NODES < <(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
print(t["src"]["folders"] + t["src"]["files"], t["dst"]["folders"] + t["dst"]["files"])
' "$WORK/truth.json")
((SRC_NODES >= MIN_NODES)) || die "the shape has $SRC_NODES source nodes, fewer than MIN_NODES=$MIN_NODES"

# ------------------------------------------------------------ discovery
rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "treemig discover --workers $WORKERS ($SRC_NODES + $DST_NODES nodes)"
set +e
/usr/bin/time -f '%e %M %U %S' -o "$WORK/discover.time" \
    "$TREEMIG" discover --db "$DB" --workers "$WORKERS" --quiet "$SRC" "$DST" \
    >"$WORK/discover.log" 2>&1
RC=$?
set -e
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
[[ $RC -eq 0 ]] || { cat "$WORK/discover.log" >&2; die "discover exited $RC"; }
read -r WALL RSS_KB USR SYS <"$WORK/discover.time"
"$TREEMIG" status --db "$DB" --json >"$WORK/status.json"
DB_BYTES=$(du -cb "$DB" "$DB-wal" 2>/dev/null | tail -1 | cut -f1)

COUNTS=$(python3 -c '
import json, sys
t = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
bad = ["%s: status %s, sim-stats %s" % (k, s[k], t[k]) for k in ("src", "dst", "copy") if s[k] != t[k]]
print("equal" if not bad else "DIFFERENT\n  " + "\n  ".join(bad))
' "$WORK/truth.json" "$WORK/status.json")

# ------------------------------------------------------------ SQLite floor
BASE_WALL=""
if [[ $SKIP_BASELINE != 1 ]]; then
    CC=${CC:-$(command -v cc || command -v gcc)}
    cat >"$WORK/bulk.c" <<'EOF'
/* bulk.c: inserts n_src + n_dst rows into the state file's own node tables
 * (schema read from stdin), BFS-ordered ids, in transactions of 8192 rows,
 * WAL and synchronous=NORMAL like treemig: the floor of the same work. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static void ck(int rc, sqlite3 *db, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "bulk: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}
static void fill(sqlite3 *db, const char *table, long long n, int dst)
{
    char sql[512], path[256], name[32];
    sqlite3_stmt *st;
    long long id;
    snprintf(sql, sizeof sql, "INSERT INTO %s(id, parent_id, path, name, type, size, "
             "mtime, mode, depth, traversal_status,%s conflict, attempts, error) "
             "VALUES(?,?,?,?,?,?,?,420,?,'successful',%s NULL, 0, NULL)",
             table, dst ? "" : " copy_status,", dst ? "" : " 'pending',");
    ck(sqlite3_prepare_v2(db, sql, -1, &st, NULL), db, "prepare");
    ck(sqlite3_exec(db, "BEGIN", 0, 0, 0), db, "begin");
    for (id = 1; id <= n; id++) {
        long long parent = id == 1 ? 0 : (id - 2) / 12 + 1, p = parent;
        int depth = 0, len;
        while (p > 1) { p = (p - 2) / 12 + 1; depth++; }
        snprintf(name, sizeof name, "%s%lld", id % 8 ? "f" : "d", (id - 2) % 12);
        len = snprintf(path, sizeof path, "/d%lld/d%lld/d%lld/%s", parent % 16,
                       parent % 7, parent, name);
        sqlite3_bind_int64(st, 1, id);
        if (id == 1) sqlite3_bind_null(st, 2); else sqlite3_bind_int64(st, 2, parent);
        sqlite3_bind_text(st, 3, path, len, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, id == 1 ? "" : name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, id % 8 ? "file" : "folder", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, id * 7919 % 100000);
        sqlite3_bind_int64(st, 7, 1500000000000000000LL + id * 104729);
        sqlite3_bind_int(st, 8, id == 1 ? 0 : depth + 1);
        ck(sqlite3_step(st), db, "insert");
        sqlite3_reset(st);
        if (id % 8192 == 0) {
            ck(sqlite3_exec(db, "COMMIT", 0, 0, 0), db, "commit");
            ck(sqlite3_exec(db, "BEGIN", 0, 0, 0), db, "begin");
        }
    }
    ck(sqlite3_exec(db, "COMMIT", 0, 0, 0), db, "commit");
    sqlite3_finalize(st);
}
int main(int argc, char **argv)
{
    static char schema[1 << 16];
    size_t n = fread(schema, 1, sizeof schema - 1, stdin);
    struct timespec a, b;
    sqlite3 *db;
    if (argc != 4) return 2;
    schema[n] = '\0';
    remove(argv[1]);
    ck(sqlite3_open(argv[1], &db), db, "open");
    ck(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", 0, 0, 0), db, "pragma");
    ck(sqlite3_exec(db, schema, 0, 0, 0), db, "schema");
    clock_gettime(CLOCK_MONOTONIC, &a);
    fill(db, "src_nodes", atoll(argv[2]), 0);
    fill(db, "dst_nodes", atoll(argv[3]), 1);
    clock_gettime(CLOCK_MONOTONIC, &b);
    sqlite3_close(db);
    printf("%.2f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
EOF
    # shellcheck disable=SC2046
    "$CC" -O2 -o "$WORK/bulk" "$WORK/bulk.c" $(pkg-config --cflags --libs sqlite3 2>/dev/null || echo -lsqlite3)
    sqlite3_schema() {
        python3 -c '
import sqlite3, sys
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
for (s,) in c.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name IN (?, ?)", ("src_nodes", "dst_nodes")):
    print(s + ";")
' "$DB"
    }
    say "plain SQLite bulk insert of the same $((SRC_NODES + DST_NODES + 2)) rows"
    BASE_WALL=$(sqlite3_schema | "$WORK/bulk" "$WORK/bulk.db" $((SRC_NODES + 1)) $((DST_NODES + 1)))
    rm -f "$WORK/bulk.db" "$WORK/bulk.db-wal" "$WORK/bulk.db-shm"
fi

# ------------------------------------------------------------ report
ROWS=$((SRC_NODES + DST_NODES + 2))
python3 - "$WALL" "$RSS_KB" "$USR" "$SYS" "$SRC_NODES" "$DST_NODES" "$ROWS" \
    "${BASE_WALL:-0}" "$STATS_WALL" "$STATS_RSS" "$DB_BYTES" "$RSS_LIMIT_MB" <<EOF
import sys
wall, rss, usr, sys_, src, dst, rows, base, swall, srss, dbb, lim = sys.argv[1:]
wall, usr, sys_, base, swall = map(float, (wall, usr, sys_, base, swall))
rss, src, dst, rows, srss, dbb, lim = map(int, (rss, src, dst, rows, srss, dbb, lim))
print("sim scale bench: $SRC -> $DST, $WORKERS workers per side")
print("  load average before %s, after %s (2 cores; other work may run: timings are noisy)"
      % ("$LOAD_BEFORE", "$LOAD_AFTER"))
print("  sim-stats (ground truth):   %8.2f s, peak RSS %6.1f MB" % (swall, srss / 1024))
print("  nodes:                      %d source + %d destination" % (src, dst))
print("  treemig discover wall:      %8.2f s (user %.1f s, sys %.1f s)" % (wall, usr, sys_))
print("  source nodes/s:             %8.0f" % (src / wall))
print("  all nodes/s:                %8.0f" % ((src + dst) / wall))
print("  rows/s written:             %8.0f" % (rows / wall))
if base > 0:
    print("  plain SQLite bulk insert:   %8.2f s, %8.0f rows/s (same tables and indexes, one thread)"
          % (base, rows / base))
    print("  treemig / bulk insert:      %8.2f (rows/s ratio)" % ((rows / wall) / (rows / base)))
print("  peak RSS:                   %8.1f MB (goal < %d MB): %s"
      % (rss / 1024, lim, "ok" if rss < lim * 1024 else "OVER"))
print("  state file:                 %8.2f GB" % (dbb / 1e9))
print("  counts vs sim-stats:        $COUNTS")
EOF
[[ $COUNTS == equal ]] || exit 1
((RSS_KB < RSS_LIMIT_MB * 1024)) || exit 1
