#!/usr/bin/env bash
# bench/crash_redo.sh: how much work a resume repeats after kill -9
# (issue 4). A simulated source kills the process itself after exactly N
# listings (crash_after=N), so each killed run did exactly N source
# listings; what it committed is read back from the state file; the
# difference was lost and is listed again by the next run. The whole
# sequence (KILLS kills, then a run to the end) is repeated RUNS times on a
# fresh state file; prints the median and spread of the share redone.
#
#   bench/crash_redo.sh                    # KILLS=20, ~26,000 source folders, RUNS=3
#   SCALE=0.5 KILLS=3 bench/crash_redo.sh  # a quick check (1,863 source folders)
#   SHAPE=seed=1,depth=7,folders=12,files=2,decay=0.9,latency=1 bench/crash_redo.sh
#
# Environment (besides RUNS, SCALE, TREEMIG: bench/lib.sh):
#   KILLS    kills per sequence (default 20; each run must list >= 400 folders)
#   SHAPE    the sim shape (default seed=1,depth=6,folders=12 x SCALE,files=12,decay=0.9,
#            latency=1: each listing answers after 1 ms, as a fast local disk would;
#            without it a run of N listings is over before the first commit)
#   WORKERS  listing threads per side (default 4)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init crash_redo KILLS SHAPE WORKERS
KILLS=${KILLS:-20}
SHAPE=${SHAPE:-seed=1,depth=6,folders=$(scaled_fanout 12 6),files=12,decay=0.9,latency=1}
WORKERS=${WORKERS:-4}
work=$(mktemp -d "${TMPDIR:-/tmp}/treemig-redo.XXXXXX")
trap 'rm -rf "$work"' EXIT

truth=$("$TREEMIG" sim-stats "sim:$SHAPE,world=dst")
total=$(printf '%s' "$truth" | python3 -c 'import json,sys; print(json.load(sys.stdin)["listings"]["src"])')
n=$((total / (KILLS + 1)))
# a run must outlast a few of the writer's 50 ms commits, or it is killed
# before it commits anything and the sequence makes no progress
[[ $n -ge 400 ]] || die "the tree ($total source folders) is too small for $KILLS kills: each run must list 400 folders or more (fewer KILLS, or a larger SCALE)"
src="sim:$SHAPE,crash_after=$n"
dst="sim:$SHAPE,world=dst"
db=$work/redo.db
listed() { sqlite3 "$db" "SELECT coalesce(sum(count),0) FROM src_stats WHERE type='folder' AND traversal_status != 'pending'" 2>/dev/null || echo 0; }
same_as_truth() {
    "$TREEMIG" status --db "$db" --json | python3 -c '
import json, sys
t, s = json.loads(sys.argv[1]), json.load(sys.stdin)
print("yes" if all(t[k] == s[k] for k in ("src", "dst", "copy")) else "no")' "$truth"
}

HEAD=$(header "treemig crash redo benchmark")
declare -a SHARES PERKILL OK
FAIL=0
for ((r = 1; r <= RUNS; r++)); do
    rm -f "$db"*
    runs=0 kills=0 lost=0 before=0
    while :; do
        runs=$((runs + 1))
        rc=0
        "$TREEMIG" discover --quiet --workers "$WORKERS" --db "$db" "$src" "$dst" 2>/dev/null || rc=$?
        after=$(listed)
        if [[ $rc -eq 137 ]]; then
            kills=$((kills + 1))
            lost=$((lost + n - (after - before)))
        elif [[ $rc -eq 0 ]]; then
            break
        else
            say "treemig exited $rc"; FAIL=1; break
        fi
        before=$after
        [[ $runs -lt $((KILLS * 3)) ]] || { say "no progress"; FAIL=1; break; }
    done
    ok=$(same_as_truth)
    [[ $ok == yes ]] || FAIL=1
    SHARES+=("$(awk -v l="$lost" -v t="$total" 'BEGIN{printf "%.3f", 100 * l / t}')")
    PERKILL+=("$(awk -v l="$lost" -v k="$kills" 'BEGIN{printf "%.0f", (k ? l / k : 0)}')")
    OK+=("$ok")
    say "sequence $r: $kills kills, $lost of $total listings redone (${SHARES[-1]}%), final state = ground truth: $ok"
done
WALLS[share]=${SHARES[*]}
WALLS[perkill]=${PERKILL[*]}
{
    echo "$HEAD"
    echo "  load at the end: $(load)"
    echo "  shape $SHAPE: $total source folders to list; a crash after $n listings, $KILLS kills per"
    echo "  sequence, $WORKERS workers per side; $RUNS sequences on fresh state files"
    echo
    echo "  listings lost and redone, % of all: median $(median share) (spread $(spread share)); each: ${SHARES[*]}"
    echo "  per kill: median $(median perkill) (spread $(spread perkill))"
    echo "  final state equals sim-stats' ground truth: ${OK[*]}"
    echo "  goal: redone < 1% of all listings: $(awk -v m="$(median share)" 'BEGIN{print (m < 1 ? "PASS" : "MISS")}') (median)"
} | tee "$LOGS/report.txt"
say "report saved: $LOGS/report.txt"
[[ $FAIL -eq 0 ]] || exit 1
