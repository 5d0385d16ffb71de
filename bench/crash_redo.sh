#!/usr/bin/env bash
# How much work a resume repeats after kill -9 (issue 4). A simulated source
# kills the process itself after exactly N listings (crash_after=N), so run
# i did exactly N source listings; what it committed is read back from the
# state file; the difference was lost and is listed again by the next run.
#   bench/crash_redo.sh            (KILLS=20, the shape below, ~200k nodes)
#   KILLS=40 SHAPE=... bench/crash_redo.sh
# The source answers each listing after 1 ms (latency=1), as a fast local
# disk would; without it a run of N listings is over before the first
# commit and the measure says nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${TREEMIG:-$here/build/treemig}
KILLS=${KILLS:-20}
SHAPE=${SHAPE:-seed=1,depth=6,folders=12,files=12,decay=0.9,latency=1}
WORKERS=${WORKERS:-4}
work=$(mktemp -d /tmp/treemig-redo.XXXXXX)
trap 'rm -rf "$work"' EXIT
[ -x "$bin" ] || { echo "no treemig binary at $bin (make first, or set TREEMIG)" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "needs sqlite3 (scripts/deps.sh build)" >&2; exit 2; }

truth=$("$bin" sim-stats "sim:$SHAPE,world=dst")
total=$(printf '%s' "$truth" | sed -n 's/.*"listings":{"src":\([0-9]*\).*/\1/p')
n=$(( total / (KILLS + 1) ))
[ "$n" -ge 1 ] || { echo "tree too small for $KILLS kills" >&2; exit 2; }
src="sim:$SHAPE,crash_after=$n"
dst="sim:$SHAPE,world=dst"
db=$work/redo.db
listed() { sqlite3 "$db" "SELECT coalesce(sum(count),0) FROM src_stats WHERE type='folder' AND traversal_status != 'pending'" 2>/dev/null || echo 0; }

echo "treemig crash redo benchmark ($(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cpus)"
echo "shape $SHAPE: $total source folders to list; crash after $n listings per run, $WORKERS workers per side"
runs=0 kills=0 lost=0 before=0
while :; do
  runs=$((runs + 1))
  set +e
  "$bin" discover --quiet --workers "$WORKERS" --db "$db" "$src" "$dst" 2>/dev/null
  rc=$?
  set -e
  after=$(listed)
  if [ "$rc" -eq 137 ]; then
    kills=$((kills + 1))
    got=$((after - before))
    lost=$((lost + n - got))
    printf '  run %2d: killed after %d listings, %d committed, %d lost\n' "$runs" "$n" "$got" "$((n - got))"
  elif [ "$rc" -eq 0 ]; then
    printf '  run %2d: completed (%d listings committed)\n' "$runs" "$((after - before))"
    break
  else
    echo "treemig exited $rc" >&2; exit 1
  fi
  before=$after
  [ "$runs" -lt $((KILLS * 3)) ] || { echo "no progress" >&2; exit 1; }
done
status=$("$bin" status --db "$db" --json)
ok=yes
for k in src dst copy; do
  a=$(printf '%s' "$truth" | python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)['$k'], sort_keys=True))")
  b=$(printf '%s' "$status" | python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)['$k'], sort_keys=True))")
  [ "$a" = "$b" ] || ok=no
done
pct=$(python3 -c "print('%.3f' % (100.0 * $lost / $total))")
echo "kills: $kills, source listings lost and redone: $lost of $total ($pct%), $(python3 -c "print('%.0f' % ($lost / max($kills,1)))") per kill"
echo "final state equals sim-stats ground truth: $ok"
echo "goal: redone < 1% of all listings: $(python3 -c "print('PASS' if $lost < $total / 100 else 'MISS')")"
[ "$ok" = yes ]
