#!/usr/bin/env bash
# bench/sim_scale.sh: discovery of a simulated pair of >= 10 million source
# nodes, checked against its ground truth, with wall time, nodes/s, rows/s
# and peak RSS, beside a plain SQLite bulk insert of the same rows into the
# same tables (bench/bulk.c: the floor any SQLite-backed discovery pays).
# RUNS runs of each, alternating; medians, spreads and the ratio.
#
#   bench/sim_scale.sh                     # 12.2 M source + 6.6 M destination nodes
#   SCALE=0.01 bench/sim_scale.sh          # folders=16 x SCALE^(1/7) = 8: 13,289 source nodes
#   SIM_SHAPE=seed=1,depth=6,folders=16,files=12,decay=0.9 bench/sim_scale.sh
#
# Environment (besides RUNS, SCALE, TREEMIG: bench/lib.sh):
#   BENCH_DIR     work dir (default /tmp/treemig-sim-scale): state file, logs, baseline
#   SIM_SHAPE     shape and seed shared by both sides (docs/sim.md)
#   SIM_DST       destination keys (default world=dst with the defaults of docs/sim.md)
#   WORKERS       listing threads per side (default 4)
#   MIN_NODES     refuse shapes with fewer source nodes (default 10000000 when SCALE=1, else 0)
#   RSS_LIMIT_MB  peak RSS goal (default 256)
#
# Exit 1 when a discovery fails or its counts differ from sim-stats; the
# goals are verdict lines. Not part of `make test`: at full size it takes
# minutes a run and ~5 GB of disk.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=${BENCH_DIR:-/tmp/treemig-sim-scale}
case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/) die "BENCH_DIR=$WORK is too broad" ;; esac
mkdir -p "$WORK/logs"
LOGS=$WORK/logs
bench_init sim_scale BENCH_DIR SIM_SHAPE SIM_DST WORKERS MIN_NODES RSS_LIMIT_MB
SHAPE=${SIM_SHAPE:-seed=1,depth=7,folders=$(scaled_fanout 16 7),files=12,decay=0.9}
DSTKEYS=${SIM_DST:-world=dst}
WORKERS=${WORKERS:-4}
MIN_NODES=${MIN_NODES:-$(awk -v s="$SCALE" 'BEGIN{print (s == 1 ? 10000000 : 0)}')}
RSS_LIMIT_MB=${RSS_LIMIT_MB:-256}
SRC="sim:$SHAPE"
DST="sim:$SHAPE,$DSTKEYS"
DB=$WORK/scale.db

say "sim-stats $DST"
"$TREEMIG" sim-stats "$DST" >"$WORK/truth.json"
read -r SRC_NODES DST_NODES < <(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
print(t["src"]["folders"] + t["src"]["files"], t["dst"]["folders"] + t["dst"]["files"])
' "$WORK/truth.json")
((SRC_NODES >= MIN_NODES)) || die "the shape has $SRC_NODES source nodes, fewer than MIN_NODES=$MIN_NODES"
ROWS=$((SRC_NODES + DST_NODES + 2))
CC=${CC:-$(command -v cc || command -v gcc)}
# shellcheck disable=SC2046
"$CC" -O2 -o "$WORK/bulk" "$BENCH_LIB_DIR/bulk.c" $(pkg-config --cflags --libs sqlite3 2>/dev/null || echo -lsqlite3)

# the node tables and indexes of a state file, for the bulk insert
rm -f "$WORK/schema.db"*
"$TREEMIG" discover --db "$WORK/schema.db" --quiet sim:depth=1,root_files=1 \
    "sim:depth=1,root_files=1,world=dst" >/dev/null
python3 -c '
import sqlite3, sys
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
for (s,) in c.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name IN (?, ?)", ("src_nodes", "dst_nodes")):
    print(s + ";")
' "$WORK/schema.db" >"$WORK/schema.sql"
rm -f "$WORK/schema.db"*

HEAD=$(header "treemig discovery at scale: $SRC_NODES source + $DST_NODES destination nodes")
FAIL=0 COUNTS=
for ((r = 0; r < RUNS; r++)); do
    say "run $((r + 1))/$RUNS"
    while read -r k; do
        case $k in
        treemig)
            rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"
            measure treemig "$TREEMIG" discover --db "$DB" --workers "$WORKERS" --quiet "$SRC" "$DST"
            [[ ${RC[treemig]} -eq 0 ]] || { FAIL=1; continue; }
            "$TREEMIG" status --db "$DB" --json >"$WORK/status.json"
            DB_BYTES=$(du -cb "$DB" "$DB-wal" 2>/dev/null | tail -1 | cut -f1)
            c=$(python3 -c '
import json, sys
t = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
bad = ["%s: status %s, sim-stats %s" % (k, s[k], t[k]) for k in ("src", "dst", "copy") if s[k] != t[k]]
print("equal" if not bad else "DIFFERENT: " + "; ".join(bad))
' "$WORK/truth.json" "$WORK/status.json")
            [[ $c == equal ]] || FAIL=1
            COUNTS="$COUNTS $c" ;;
        bulk)
            rm -f "$WORK/bulk.db" "$WORK/bulk.db-wal" "$WORK/bulk.db-shm"
            measure bulk bash -c '"$1" "$2" "$3" "$4" <"$5"' _ "$WORK/bulk" "$WORK/bulk.db" \
                $((SRC_NODES + 1)) $((DST_NODES + 1)) "$WORK/schema.sql"
            rm -f "$WORK/bulk.db" "$WORK/bulk.db-wal" "$WORK/bulk.db-shm" ;;
        esac
    done < <(rotate "$r" treemig bulk)
done

{
    echo "$HEAD"
    echo "  load at the end: $(load)"
    echo "  shape: $SRC -> $DST, $WORKERS workers per side"
    echo
    T=$(median treemig)
    B=$(median bulk)
    echo "  treemig discover:          wall $(stat_of treemig) s, median $(awk -v n="$SRC_NODES" -v t="$T" 'BEGIN{printf "%.0f", n/t}') source nodes/s, $(awk -v n="$ROWS" -v t="$T" 'BEGIN{printf "%.0f", n/t}') rows/s"
    echo "  plain SQLite bulk insert:  wall $(stat_of bulk) s, median $(awk -v n="$ROWS" -v t="$B" 'BEGIN{printf "%.0f", n/t}') rows/s (same tables and indexes, one thread, bench/bulk.c)"
    echo "  treemig / bulk insert:     $(ratio "$B" "$T") (rows/s ratio of the medians; goal 0.70)"
    echo "  peak RSS:                  $(awk -v m="${RSS[treemig]:-0}" 'BEGIN{printf "%.1f", m/1024}') MB, the largest of the runs (goal < $RSS_LIMIT_MB MB): $( ((${RSS[treemig]:-0} < RSS_LIMIT_MB * 1024)) && echo PASS || echo MISS)"
    echo "  state file:                $(awk -v b="${DB_BYTES:-0}" 'BEGIN{printf "%.2f", b/1e9}') GB"
    echo "  counts vs sim-stats:      $COUNTS"
} | tee "$LOGS/report.txt"
say "report saved: $LOGS/report.txt"
[[ $FAIL -eq 0 ]] || exit 1
