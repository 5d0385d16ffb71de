#!/usr/bin/env bash
# bench/sim_latency.sh: how close discovery gets to the ideal listing rate
# of a high-latency storage. Both sides are sim storages answering every
# listing after LATENCY ms; with WORKERS threads per side the ideal is
# WORKERS / LATENCY listings per second per side. The goal is >= 70% of it.
#
#   bench/sim_latency.sh                    # 20 ms, 64 workers per side
#   LATENCY=50 WORKERS=128 bench/sim_latency.sh
#
# Environment:
#   TREEMIG    binary (default <repo>/build/treemig)
#   BENCH_DIR  work dir (default /tmp/treemig-sim-latency)
#   LATENCY    ms per listing (default 20); JITTER: +- ms (default 0)
#   WORKERS    threads per side (default 64)
#   SIM_SHAPE  shape shared by both sides. The default has 9 rounds of ~2000
#              folders each (a root of 2000 folders, then one subfolder per
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
# latencies), so that the engine's own overhead shows apart from the shape. Exit 1 when the counts differ from sim-stats or the rate is
# under the goal. Timings are noisy when other work runs on the machine.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
TREEMIG=${TREEMIG:-$REPO/build/treemig}
WORK=${BENCH_DIR:-/tmp/treemig-sim-latency}
LATENCY=${LATENCY:-20}
JITTER=${JITTER:-0}
WORKERS=${WORKERS:-64}
SHAPE=${SIM_SHAPE:-seed=1,depth=10,root_folders=2000,folders=1,decay=1,tail=100,files=4,max_files=900}
DSTKEYS=${SIM_DST:-world=dst,keep=1,ctype=0,extra=0.01,csize=0.02,cmtime=0.02}
GOAL=${GOAL:-0.70}
LEAD=${LEAD:-3}

die() { printf 'bench/sim_latency.sh: %s\n' "$*" >&2; exit 2; }
[[ -x $TREEMIG ]] || die "treemig binary not found: $TREEMIG (run make, or set TREEMIG)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/) die "BENCH_DIR=$WORK is too broad" ;; esac
mkdir -p "$WORK"

FAULTS="latency=$LATENCY,jitter=$JITTER"
SRC="sim:$SHAPE,$FAULTS"
DST="sim:$SHAPE,$DSTKEYS,$FAULTS"
DB=$WORK/latency.db
rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"

"$TREEMIG" sim-stats "$DST" >"$WORK/truth.json"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
printf '[sim_latency] discover, %s ms per listing, %s workers per side\n' "$LATENCY" "$WORKERS" >&2
set +e
/usr/bin/time -f '%e %M %U %S' -o "$WORK/time.txt" \
    "$TREEMIG" discover --db "$DB" --workers "$WORKERS" --lead "$LEAD" --quiet "$SRC" "$DST" >"$WORK/log.txt" 2>&1
RC=$?
set -e
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
[[ $RC -eq 0 ]] || { cat "$WORK/log.txt" >&2; die "discover exited $RC"; }
read -r WALL RSS USR SYS <"$WORK/time.txt"
"$TREEMIG" status --db "$DB" --json >"$WORK/status.json"

python3 - "$WORK/truth.json" "$WORK/status.json" "$DB" "$WALL" "$RSS" "$USR" "$SYS" \
    "$LATENCY" "$WORKERS" "$GOAL" "$LOAD_BEFORE" "$LOAD_AFTER" "$LEAD" <<'EOF'
import json, math, sqlite3, sys
truth, status, db, wall, rss, usr, sys_, lat, workers, goal, lb, la, lead = sys.argv[1:]
lead = int(lead)
t, s = json.load(open(truth)), json.load(open(status))
wall, usr, sys_, lat, goal = float(wall), float(usr), float(sys_), float(lat), float(goal)
workers = int(workers)
ideal = workers / (lat / 1000.0)
c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
ok = True
print("sim latency bench: %g ms per listing, %d workers per side" % (lat, workers))
print("  load average before %s, after %s (2 cores; timings are noisy when other work runs)" % (lb, la))
print("  wall %.2f s, user %.1f s, sys %.1f s, peak RSS %.1f MB" % (wall, usr, sys_, int(rss) / 1024))
print("  ideal per side: %d / %g ms = %.0f listings/s" % (workers, lat, ideal))
levels = {}
for side, table in (("src", "src_nodes"), ("dst", "dst_nodes")):
    levels[side] = dict(c.execute("SELECT depth, count(*) FROM %s WHERE type='folder' "
                                  "AND attempts > 0 GROUP BY depth" % table).fetchall())


def schedule():
    """The earliest end of the discovery given the rounds."""
    dur = {side: {d: math.ceil(n / workers) * lat / 1000.0 for d, n in lv.items()}
           for side, lv in levels.items()}
    top = max(max(levels["src"]), max(levels["dst"] or {0: 0}))
    s_end, d_start, d_end = {}, {}, {}
    prev_s = prev_d = 0.0
    for r in range(top + 1):
        start = prev_s
        if r - lead in d_start:
            start = max(start, d_start[r - lead])
        s_end[r] = start + dur["src"].get(r, 0.0)
        prev_s = s_end[r]
        d_start[r] = max(prev_d, s_end[r])
        d_end[r] = d_start[r] + dur["dst"].get(r, 0.0)
        prev_d = d_end[r]
    return max(prev_s, prev_d)


best = schedule()
for side in ("src", "dst"):
    n = t["listings"][side]
    rate = n / wall
    print("  %s: %6d listings in %.2f s = %6.0f listings/s = %5.1f%% of ideal (rounds: %s)"
          % (side, n, wall, rate, 100 * rate / ideal,
             " ".join(str(levels[side][d]) for d in sorted(levels[side]))))
    if rate < goal * ideal:
        ok = False
print("  best wall the rounds allow: %.2f s (%.1f%% of ideal for the source);"
      " achieved %.1f%% of that" % (best, 100 * t["listings"]["src"] / best / ideal,
                                    100 * best / wall))
both = (t["listings"]["src"] + t["listings"]["dst"]) / wall
print("  both sides: %.0f listings/s = %.1f%% of 2 x ideal" % (both, 100 * both / (2 * ideal)))
same = all(s[k] == t[k] for k in ("src", "dst", "copy"))
print("  counts vs sim-stats: %s" % ("equal" if same else "DIFFERENT"))
print("  goal: each side >= %.0f%% of ideal: %s" % (100 * goal, "met" if ok else "NOT met"))
sys.exit(0 if ok and same else 1)
EOF
