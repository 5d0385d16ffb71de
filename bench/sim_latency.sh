#!/usr/bin/env bash
# bench/sim_latency.sh: how close discovery gets to the ideal listing rate
# of a high-latency storage. Both sides are sim storages answering every
# listing after LATENCY ms; with WORKERS threads per side the ideal is
# WORKERS / LATENCY listings per second per side. The goal is >= 70% of it.
# RUNS discoveries; prints the median and spread of each side's rate.
#
#   bench/sim_latency.sh                   # 20 ms, 64 workers per side, RUNS=3
#   SCALE=0.1 bench/sim_latency.sh         # rounds of 200 folders: a quick check
#   LATENCY=50 WORKERS=128 bench/sim_latency.sh
#
# Environment (besides RUNS, SCALE, TREEMIG: bench/lib.sh):
#   LATENCY    ms per listing (default 20); JITTER: +- ms (default 0)
#   WORKERS    threads per side (default 64)
#   SIM_SHAPE  shape shared by both sides. The default has 9 rounds of ~2000
#              folders each (root_folders=2000 x SCALE, then one subfolder per
#              folder on average) and fewer than page= (1000) children per
#              folder, so that a listing costs one latency. Why constant
#              width: the destination lists round d only once the source
#              finished round d (DESIGN.md), so when the last round holds
#              most folders (any tree with a fan-out of 10) the two sides
#              list it one after the other and no engine can pass ~50%.
#   LEAD       --lead (default 3), also used by the schedule bound
#   SIM_DST    destination keys (default keep=1, ctype=0: the same folders on
#              both sides, so that both do the same number of listings)
#   GOAL       fraction of the ideal (default 0.70)
#
# Prints the listings per second each side achieved over the whole run
# (wall clock, so the destination's start one round late and the narrow
# first rounds count against it), the ideal, and the best wall that the
# rounds of this tree allow (source round r after r-1 and at most LEAD
# rounds ahead of the destination; destination round d after its d-1 and
# after source round d; a round of n folders takes ceil(n/WORKERS)
# latencies), so that the engine's own overhead shows apart from the
# shape. Exit 1 when a discovery fails or its counts differ from sim-stats;
# the goal is a verdict line.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init sim_latency LATENCY JITTER WORKERS SIM_SHAPE LEAD SIM_DST GOAL
LATENCY=${LATENCY:-20}
JITTER=${JITTER:-0}
WORKERS=${WORKERS:-64}
SHAPE=${SIM_SHAPE:-seed=1,depth=10,root_folders=$(scaled 2000 8),folders=1,decay=1,tail=100,files=4,max_files=900}
DSTKEYS=${SIM_DST:-world=dst,keep=1,ctype=0,extra=0.01,csize=0.02,cmtime=0.02}
GOAL=${GOAL:-0.70}
LEAD=${LEAD:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/treemig-latency.XXXXXX")
trap 'rm -rf "$work"' EXIT
FAULTS="latency=$LATENCY,jitter=$JITTER"
SRC="sim:$SHAPE,$FAULTS"
DST="sim:$SHAPE,$DSTKEYS,$FAULTS"
DB=$work/latency.db
"$TREEMIG" sim-stats "$DST" >"$work/truth.json"

HEAD=$(header "treemig latency benchmark: $LATENCY ms per listing, $WORKERS workers per side")
FAIL=0
for ((r = 1; r <= RUNS; r++)); do
    rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"
    measure discover "$TREEMIG" discover --db "$DB" --workers "$WORKERS" --lead "$LEAD" --quiet "$SRC" "$DST"
    [[ ${RC[discover]} -eq 0 ]] || { FAIL=1; continue; }
    "$TREEMIG" status --db "$DB" --json >"$work/status.json"
    read -r src_rate dst_rate best same < <(python3 - "$work/truth.json" "$work/status.json" "$DB" \
        "${WALLS[discover]##* }" "$LATENCY" "$WORKERS" "$LEAD" <<'EOF'
import json, math, sqlite3, sys
truth, status, db, wall, lat, workers, lead = sys.argv[1:]
t, s = json.load(open(truth)), json.load(open(status))
wall, lat, workers, lead = float(wall), float(lat), int(workers), int(lead)
c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
levels = {side: dict(c.execute("SELECT depth, count(*) FROM %s WHERE type='folder' AND attempts > 0 "
                               "GROUP BY depth" % table).fetchall())
          for side, table in (("src", "src_nodes"), ("dst", "dst_nodes"))}
dur = {side: {d: math.ceil(n / workers) * lat / 1000.0 for d, n in lv.items()}
       for side, lv in levels.items()}
top = max(max(levels["src"]), max(levels["dst"] or {0: 0}))
s_end, d_start = {}, {}
prev_s = prev_d = 0.0
for r in range(top + 1):
    start = prev_s
    if r - lead in d_start:
        start = max(start, d_start[r - lead])
    s_end[r] = start + dur["src"].get(r, 0.0)
    prev_s = s_end[r]
    d_start[r] = max(prev_d, s_end[r])
    prev_d = d_start[r] + dur["dst"].get(r, 0.0)
same = all(s[k] == t[k] for k in ("src", "dst", "copy"))
print("%.0f %.0f %.2f %s" % (t["listings"]["src"] / wall, t["listings"]["dst"] / wall,
                             max(prev_s, prev_d), "yes" if same else "no"))
EOF
    )
    WALLS[src_rate]="${WALLS[src_rate]:-} $src_rate"
    WALLS[dst_rate]="${WALLS[dst_rate]:-} $dst_rate"
    WALLS[best]="${WALLS[best]:-} $best"
    [[ $same == yes ]] || FAIL=1
    say "run $r: source $src_rate, destination $dst_rate listings/s; counts equal sim-stats: $same"
done
ideal=$(awk -v w="$WORKERS" -v l="$LATENCY" 'BEGIN{printf "%.0f", w / (l / 1000)}')
listings=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["listings"]; print(t["src"], t["dst"])' "$work/truth.json")
{
    echo "$HEAD"
    echo "  load at the end: $(load)"
    echo "  shape: $SHAPE; listings per side (src dst): $listings"
    echo "  ideal per side: $WORKERS / $LATENCY ms = $ideal listings/s"
    echo
    echo "  wall s:                  median $(stat_of discover), peak RSS $(awk -v m="${RSS[discover]}" 'BEGIN{printf "%.1f", m/1024}') MiB"
    echo "  best wall the rounds allow: $(median best) s (what a perfect engine would take on this shape)"
    for side in src dst; do
        m=$(median ${side}_rate)
        echo "  $side: $(stat_of ${side}_rate) listings/s = $(awk -v m="$m" -v i="$ideal" 'BEGIN{printf "%.1f", 100 * m / i}')% of ideal (median)"
    done
    ok=$(awk -v a="$(median src_rate)" -v b="$(median dst_rate)" -v i="$ideal" -v g="$GOAL" \
        'BEGIN{print (a >= g * i && b >= g * i) ? "PASS" : "MISS"}')
    echo "  goal: each side >= $(awk -v g="$GOAL" 'BEGIN{print 100 * g}')% of ideal (medians): $ok"
    echo "  counts equal sim-stats in every run: $([[ $FAIL == 0 ]] && echo yes || echo NO)"
} | tee "$LOGS/report.txt"
say "report saved: $LOGS/report.txt"
[[ $FAIL -eq 0 ]] || exit 1
