#!/usr/bin/env bash
# The cost of logging and metrics (issue 6): the same simulated discovery
# with the default levels (logs table from info, UDP from warning, the
# observer's snapshots every second) and with logging off, alternated
# RUNS times; prints the medians and the overhead.
#   bench/log_cost.sh                 (about 2M nodes; SHAPE=... for others)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${TREEMIG:-$here/build/treemig}
SHAPE=${SHAPE:-seed=1,depth=7,folders=14,files=2,decay=0.9,transient=0.001}
RUNS=${RUNS:-3}
work=$(mktemp -d /tmp/treemig-logcost.XXXXXX)
trap 'rm -rf "$work"' EXIT
[ -x "$bin" ] || { echo "no treemig binary at $bin" >&2; exit 2; }
src="sim:$SHAPE"
dst="sim:$SHAPE,world=dst"
run() { # $1: label, rest: options; prints wall seconds
  rm -f "$work"/db*
  /usr/bin/time -f '%e' -o "$work/t" "$bin" discover --quiet --db "$work/db" "${@:2}" "$src" "$dst"
  cat "$work/t"
}
echo "treemig logging cost ($(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cpus, $RUNS runs each)"
"$bin" sim-stats "$dst" | sed -n 's/.*"src":{"folders":\([0-9]*\),"files":\([0-9]*\).*/source: \1 folders, \2 files/p'
on=() off=()
for i in $(seq "$RUNS"); do
  on+=("$(run on)")
  off+=("$(run off --log-level off --udp-level off)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mon=$(median "${on[@]}"); moff=$(median "${off[@]}")
echo "default levels (info to the table, warning by UDP, snapshots): ${on[*]} s, median $mon s"
echo "logging off:                                                  ${off[*]} s, median $moff s"
python3 - "$mon" "$moff" <<'PY'
import sys
on, off = map(float, sys.argv[1:3])
pct = 100.0 * (on - off) / off
print("overhead of logging and metrics: %.1f%% of the wall time (goal < 5%%): %s"
      % (pct, "PASS" if pct < 5 else "MISS"))
PY
