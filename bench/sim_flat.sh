#!/usr/bin/env bash
# bench/sim_flat.sh: a flat folder of millions of children on both sides
# (issue 12, goal 2). A folder is listed page by page and each page is
# committed with the listing's position, so memory does not grow with the
# folder and a kill -9 inside it loses only the pages not yet committed.
#
#   bench/sim_flat.sh                 # 10,000,000 children per side
#   SCALE=0.02 bench/sim_flat.sh      # 200,000: a quick check
#
# Two parts, RUNS times each (RUNS=1 is enough for the kills: they are
# counted, not timed):
#   1. a clean discovery: wall, peak RSS (goal < 300 MB), counts equal to
#      sim-stats;
#   2. the same discovery killed by the sim itself (crash_after=, SIGKILL)
#      KILLS times inside the source folder's listing, then completed: the
#      pages listed in all minus the pages the folder has are the pages
#      redone (goal < 1% of its pages), and the result equals sim-stats.
# Environment (besides RUNS, SCALE, TREEMIG: bench/lib.sh):
#   FILES      children per side (default 10,000,000 x SCALE)
#   PAGE       children per listing page (default 1000)
#   KILLS      kills in part 2 (default 3)
#   RSS_GOAL   MB (default 300); REDO_GOAL percent (default 1)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init sim_flat FILES PAGE KILLS RSS_GOAL REDO_GOAL
FILES=${FILES:-$(scaled 10000000 1000)}
PAGE=${PAGE:-1000}
KILLS=${KILLS:-3}
RSS_GOAL=${RSS_GOAL:-300}
REDO_GOAL=${REDO_GOAL:-1}
work=$(mktemp -d "${TMPDIR:-/tmp}/treemig-flat.XXXXXX")
trap 'rm -rf "$work"' EXIT
SHAPE="depth=1,root_folders=0,root_files=$FILES,page=$PAGE"
SRC="sim:$SHAPE"
DST="sim:$SHAPE,world=dst,keep=0.9,csize=0.01"
PAGES=$(((FILES + PAGE - 1) / PAGE))
"$TREEMIG" sim-stats "$DST" >"$work/truth.json"
same() {
    python3 -c '
import json, sys
t, s = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print("yes" if all(s[k] == t[k] for k in ("src", "dst", "copy")) else "no")' "$work/truth.json" "$1"
}

HEAD=$(header "treemig flat folder benchmark: $FILES children per side, $PAGE per page")
FAIL=0
for ((r = 1; r <= RUNS; r++)); do
    db=$work/clean.db
    rm -f "$db"*
    measure clean "$TREEMIG" discover --db "$db" --quiet "$SRC" "$DST"
    [[ ${RC[clean]} -eq 0 ]] || { FAIL=1; continue; }
    "$TREEMIG" status --db "$db" --json >"$work/status.json"
    [[ $(same "$work/status.json") == yes ]] || FAIL=1
done

# part 2: kills inside the source folder; each killed run lists exactly K
# pages of the source (crash_after counts them), the last run's count
# comes from the fault layer's report
K=$((PAGES / (KILLS + 1)))
[[ $K -ge 1 ]] || die "too few pages ($PAGES) for $KILLS kills"
db=$work/kill.db
rm -f "$db"*
kills=0
final=""
for ((i = 0; i < KILLS + 10; i++)); do
    args=(discover --db "$db" --quiet)
    ((i == 0)) && args+=("$SRC,crash_after=$K" "$DST")
    set +e
    TREEMIG_FAULT_REPORT=1 "$TREEMIG" "${args[@]}" 2>"$work/err.txt"
    rc=$?
    set -e
    [[ $rc -eq 0 ]] && { final=$(grep -o 'counts sim:[^ ]*crash_after[^ ]*: list=[0-9]*' "$work/err.txt" | grep -o '[0-9]*$' || true); break; }
    [[ $rc -eq 137 ]] || die "run $i: expected a SIGKILL or success, got exit $rc: $(cat "$work/err.txt")"
    kills=$((kills + 1))
done
[[ -n $final ]] || die "the completing run printed no fault counts"
listed=$((kills * K + final))
redone=$((listed - PAGES))
"$TREEMIG" status --db "$db" --json >"$work/status.json"
kill_same=$(same "$work/status.json")
[[ $kill_same == yes ]] || FAIL=1
{
    echo "$HEAD"
    echo "  load at the end: $(load)"
    echo "  source: $SRC; destination: $DST ($PAGES pages per side)"
    echo
    echo "  1. clean discovery: wall s median $(stat_of clean), peak RSS $(awk -v m="${RSS[clean]}" 'BEGIN{printf "%.1f", m/1024}') MiB"
    echo "     goal: peak RSS < $RSS_GOAL MB: $(awk -v m="${RSS[clean]}" -v g="$RSS_GOAL" 'BEGIN{print m / 1024 < g ? "PASS" : "MISS"}')"
    echo "     counts equal sim-stats: $([[ $FAIL == 0 ]] && echo yes || echo NO)"
    echo "  2. $kills kills inside the source folder (after every $K pages): $listed pages listed for $PAGES,"
    echo "     $redone redone = $(awk -v r="$redone" -v p="$PAGES" 'BEGIN{printf "%.2f", 100 * r / p}')% of the folder's pages"
    echo "     goal: < $REDO_GOAL%: $(awk -v r="$redone" -v p="$PAGES" -v g="$REDO_GOAL" 'BEGIN{print 100 * r / p < g ? "PASS" : "MISS"}')"
    echo "     counts equal sim-stats after the kills: $kill_same"
} | tee "$LOGS/report.txt"
say "report saved: $LOGS/report.txt"
[[ $FAIL -eq 0 ]] || exit 1
