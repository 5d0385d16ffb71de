#!/usr/bin/env bash
# bench/log_cost.sh: the cost of logging and metrics (issue 6). The same
# simulated discovery with the default levels (logs table from info, UDP
# datagrams from warning, the observer's snapshots every second) and with
# --log-level off --udp-level off, RUNS times each, the order alternating
# (on/off, off/on, ...); prints the medians, the spreads and the overhead.
#
#   bench/log_cost.sh                      # about 1 M source nodes, RUNS=3
#   SCALE=0.05 bench/log_cost.sh           # a quick check
#   SHAPE=seed=1,depth=7,folders=16,files=12,decay=0.9 bench/log_cost.sh   # 10 M nodes
#
# Environment (besides RUNS, SCALE, TREEMIG: bench/lib.sh):
#   SHAPE    the sim shape of both sides (default seed=1,depth=7,folders=14 x SCALE,
#            files=2,decay=0.9,transient=0.001: 0.1% transient errors, each retry logs
#            a warning)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init log_cost SHAPE
SHAPE=${SHAPE:-seed=1,depth=7,folders=$(scaled_fanout 14 7),files=2,decay=0.9,transient=0.001}
work=$(mktemp -d "${TMPDIR:-/tmp}/treemig-logcost.XXXXXX")
trap 'rm -rf "$work"' EXIT
src="sim:$SHAPE"
dst="sim:$SHAPE,world=dst"
run() { # KEY OPTIONS...
    rm -f "$work"/db*
    measure "$1" "$TREEMIG" discover --quiet --db "$work/db" "${@:2}" "$src" "$dst"
}
HEAD=$(header "treemig logging cost")
nodes=$("$TREEMIG" sim-stats "$dst" | python3 -c 'import json,sys; t=json.load(sys.stdin)["src"]; print("%d folders, %d files" % (t["folders"], t["files"]))')
for ((r = 0; r < RUNS; r++)); do
    say "run $((r + 1))/$RUNS"
    while read -r k; do
        case $k in
        on) run on ;;
        off) run off --log-level off --udp-level off ;;
        esac
    done < <(rotate "$r" on off)
done
FAIL=0
[[ ${RC[on]} -eq 0 && ${RC[off]} -eq 0 ]] || FAIL=1
{
    echo "$HEAD"
    echo "  load at the end: $(load)"
    echo "  shape: $SHAPE ($nodes on the source)"
    echo
    printf '  %-58s %24s %6s\n' setting "wall s: median (min-max)" exit
    printf '  %-58s %24s %6s\n' "default levels (info to the table, warning by UDP, snapshots)" "$(stat_of on)" "${RC[on]}"
    printf '  %-58s %24s %6s\n' "--log-level off --udp-level off" "$(stat_of off)" "${RC[off]}"
    echo "  all walls: default levels${WALLS[on]}; logging off${WALLS[off]}"
    python3 - "$(median on)" "$(median off)" "$(spread on)" "$(spread off)" <<'PY'
import sys
on, off = float(sys.argv[1]), float(sys.argv[2])
pct = 100.0 * (on - off) / off
lo_off, hi_off = map(float, sys.argv[4].split('-'))
noise = 100.0 * (hi_off - lo_off) / off
print("  overhead of logging and metrics: %+.1f%% of the median wall (goal < 5%%): %s;"
      " the spread of the runs with logging off is %.1f%% of their median"
      % (pct, "PASS" if pct < 5 else "MISS", noise))
PY
} | tee "$LOGS/report.txt"
say "report saved: $LOGS/report.txt"
[[ $FAIL -eq 0 ]] || { say "a discovery failed (logs in $LOGS)"; exit 1; }
