#!/usr/bin/env bash
# bench/all.sh: every benchmark, one after the other, each report saved in
# OUT (default /tmp/treemig-bench-reports); what docs/BENCHMARKS.md records.
#
#   bench/all.sh                        # full size, RUNS=3: about an hour; on a quiet machine
#   SCALE=0.05 bench/all.sh             # reduced: shows that every script works
#
# RUNS, SCALE and TREEMIG pass through to each script (bench/lib.sh). The
# copy benchmark runs twice: the headline tree, and the 40,000-file tree
# with 4 and 8 copy threads (the thread-count rows). crash_redo.sh keeps
# its full tree below SCALE=0.5 (smaller trees are too small for 20 kills).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-/tmp/treemig-bench-reports}
mkdir -p "$OUT"
SCALE=${SCALE:-1}
export SCALE RUNS TREEMIG
big() { awk -v s="$SCALE" 'BEGIN{exit !(s >= 0.5)}'; }
failed=()
one() { # NAME ENV... SCRIPT: runs it, report in OUT/NAME.txt
    local name=$1
    shift
    echo "== $name: $*" >&2
    if ! env "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err"; then
        failed+=("$name")
        tail -n 5 "$OUT/$name.err" >&2
    fi
    cat "$OUT/$name.txt"
}
one discover "$here/discover.sh"
one discover_floor "$here/discover_floor.sh"
one copy "$here/copy.sh"
one copy-threads BENCH_FILES=$(awk -v s="$SCALE" 'BEGIN{printf "%d", 40000 * s}') \
    BENCH_FOLDERS=$(awk -v s="$SCALE" 'BEGIN{printf "%d", 20000 * s}') COPY_WORKERS="4 8" \
    BENCH_DIR=/tmp/treemig-copybench-threads "$here/copy.sh"
one sim_scale "$here/sim_scale.sh"
one sim_latency "$here/sim_latency.sh"
one sim_flat "$here/sim_flat.sh"
if big; then
    one crash_redo "$here/crash_redo.sh"
else
    one crash_redo SCALE=1 KILLS=$(awk -v s="$SCALE" 'BEGIN{k = int(20 * s + 0.5); print (k < 3 ? 3 : k)}') "$here/crash_redo.sh"
fi
one log_cost "$here/log_cost.sh"
one scaleout "$here/scaleout.sh"
echo "reports in $OUT" >&2
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}" >&2; exit 1; }
