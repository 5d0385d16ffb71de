#!/usr/bin/env bash
# bench/sim_latency.sh: how well discovery hides the latency of a slow
# storage (issue 12, goal 1). Both sides are sim storages that answer every
# listing after LATENCY ms; with WORKERS listings in flight per side, no
# engine can finish faster than the lower bound
#
#     max(source listings, destination listings) x LATENCY / WORKERS
#     + one LATENCY per level (the deepest folder is listed after its parent)
#
# The goal is a wall time <= 1.25 x that bound (GOAL) at 256 in flight per
# side, on the default heavy-tailed tree whose widest level is the last
# one (the shape a real share has), with peak RSS < 300 MB also at 1024.
# RUNS discoveries; prints the median and spread of the wall time and the
# ratio to the bound.
#
#   bench/sim_latency.sh                       # 20 ms, 256 per side, RUNS=3
#   WORKERS=1024 bench/sim_latency.sh          # the memory goal
#   CASE=wide bench/sim_latency.sh             # the constant-width tree
#   SCALE=0.1 bench/sim_latency.sh             # a quick check (fewer folders)
#
# Environment (besides RUNS, SCALE, TREEMIG: bench/lib.sh):
#   LATENCY    ms per listing (default 20); JITTER: +- ms (default 0)
#   WORKERS    listings in flight per side (default 256)
#   CASE       heavy (default): seed=3,depth=7,folders=10,files=4,decay=0.9,
#              destination keep=0.95 (~45k source and ~38k destination
#              listings, the widest level last); wide: 9 rounds of ~2000
#              folders each (root_folders=2000, one subfolder per folder)
#   SIM_SHAPE  another shape shared by both sides (overrides CASE)
#   SIM_DST    destination keys (default world=dst,keep=0.95 for heavy)
#   GOAL       wall / bound at most (default 1.25); RSS_GOAL MB (default 300)
# Exit 1 when a discovery fails or its counts differ from sim-stats; the
# goal is a verdict line.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init sim_latency LATENCY JITTER WORKERS CASE SIM_SHAPE SIM_DST GOAL RSS_GOAL
LATENCY=${LATENCY:-20}
JITTER=${JITTER:-0}
WORKERS=${WORKERS:-256}
CASE=${CASE:-heavy}
GOAL=${GOAL:-1.25}
RSS_GOAL=${RSS_GOAL:-300}
case $CASE in
heavy)
    SHAPE=${SIM_SHAPE:-seed=3,depth=7,folders=$(scaled_fanout 10 7),files=4,decay=0.9}
    DSTKEYS=${SIM_DST:-world=dst,keep=0.95} ;;
wide)
    SHAPE=${SIM_SHAPE:-seed=1,depth=10,root_folders=$(scaled 2000 8),folders=1,decay=1,tail=100,files=4,max_files=900}
    DSTKEYS=${SIM_DST:-world=dst,keep=1,ctype=0,extra=0.01,csize=0.02,cmtime=0.02} ;;
*) die "CASE is heavy or wide, not '$CASE'" ;;
esac
work=$(mktemp -d "${TMPDIR:-/tmp}/treemig-latency.XXXXXX")
trap 'rm -rf "$work"' EXIT
FAULTS="latency=$LATENCY,jitter=$JITTER"
SRC="sim:$SHAPE,$FAULTS"
DST="sim:$SHAPE,$DSTKEYS,$FAULTS"
DB=$work/latency.db
"$TREEMIG" sim-stats "$DST" >"$work/truth.json"
read -r LS LD < <(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
print(t["listings"]["src"], t["listings"]["dst"])' "$work/truth.json")
# the levels that hold folders to list: depth 0 .. depth-1 of the sim
LEVELS=$(python3 -c 'import re,sys; m=re.search(r"depth=(\d+)", sys.argv[1]); print(int(m.group(1)) if m else 5)' "$SHAPE")
BOUND=$(awk -v s="$LS" -v d="$LD" -v l="$LATENCY" -v w="$WORKERS" -v lv="$LEVELS" \
    'BEGIN{m = s > d ? s : d; printf "%.3f", m * l / 1000 / w + lv * l / 1000}')

HEAD=$(header "treemig latency benchmark: $LATENCY ms per listing, $WORKERS in flight per side, $CASE tree")
FAIL=0
for ((r = 1; r <= RUNS; r++)); do
    rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"
    measure discover "$TREEMIG" discover --db "$DB" --workers "$WORKERS" --quiet "$SRC" "$DST"
    [[ ${RC[discover]} -eq 0 ]] || { FAIL=1; continue; }
    "$TREEMIG" status --db "$DB" --json >"$work/status.json"
    same=$(python3 -c '
import json, sys
t, s = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print("yes" if all(s[k] == t[k] for k in ("src", "dst", "copy")) else "no")' "$work/truth.json" "$work/status.json")
    [[ $same == yes ]] || FAIL=1
    say "run $r: wall ${WALLS[discover]##* } s; counts equal sim-stats: $same"
done
{
    echo "$HEAD"
    echo "  load at the end: $(load)"
    echo "  shape: $SHAPE; destination: $DSTKEYS"
    echo "  listings (source, destination): $LS, $LD; levels: $LEVELS"
    echo "  lower bound: max($LS, $LD) x $LATENCY ms / $WORKERS + $LEVELS x $LATENCY ms = $BOUND s"
    echo
    echo "  wall s:  median $(stat_of discover), peak RSS $(awk -v m="${RSS[discover]}" 'BEGIN{printf "%.1f", m/1024}') MiB"
    ratio=$(awk -v m="$(median discover)" -v b="$BOUND" 'BEGIN{printf "%.2f", m / b}')
    echo "  wall / bound (median): $ratio"
    echo "  goal: wall <= $GOAL x bound: $(awk -v r="$ratio" -v g="$GOAL" 'BEGIN{print r <= g ? "PASS" : "MISS"}')"
    echo "  goal: peak RSS < $RSS_GOAL MB: $(awk -v m="${RSS[discover]}" -v g="$RSS_GOAL" 'BEGIN{print m / 1024 < g ? "PASS" : "MISS"}')"
    echo "  counts equal sim-stats in every run: $([[ $FAIL == 0 ]] && echo yes || echo NO)"
} | tee "$LOGS/report.txt"
say "report saved: $LOGS/report.txt"
[[ $FAIL -eq 0 ]] || exit 1
