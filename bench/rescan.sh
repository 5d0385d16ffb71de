#!/usr/bin/env bash
# bench/rescan.sh: a pass (`treemig rescan`) over the tree pair of
# bench/discover.sh where nothing changed, against the first discovery of
# the same pair: wall time, bytes written (write(2) bytes: to the state file, its WAL
# and the YAML file: /proc/PID/io wchar of the command) and rows written
# (inserted, updated or deleted: SQLite's total_changes() of the command,
# which treemig records as the setting rows_written), and the rows of the
# node tables. Then a pass after 1% of the source changed (touched,
# rewritten, added, deleted, see change_1pct), against rsync's itemized
# list of what differs (the independent oracle): what the pass leaves to
# copy must be exactly that.
#
#   bench/rescan.sh                  # the 300,000-entry pair of discover.sh
#   SCALE=0.05 bench/rescan.sh       # 15,000 entries: a quick check
#
# Environment: BENCH_DIR (default /tmp/treemig-bench, shared with
# discover.sh, which builds the pair when it is missing), RUNS (default 3),
# SCALE, TREEMIG.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=${BENCH_DIR:-/tmp/treemig-bench}
RUNS=${RUNS:-3}
TREEMIG=${TREEMIG:-$HERE/../build/treemig}
[[ -x $TREEMIG ]] || { echo "bench/rescan: no treemig at $TREEMIG (make first)" >&2; exit 2; }
ENTRIES=${BENCH_ENTRIES:-$(awk -v s="${SCALE:-1}" 'BEGIN { n = int(300000 * s); print n < 100 ? 100 : n }')}
SEED=${BENCH_SEED:-42}
# the pair of bench/discover.sh (same generator, same mark: either reuses it)
MARK="gentree=$(sha256sum "$HERE/gentree.c" | cut -c1-16) entries=$ENTRIES seed=$SEED"
if [[ ! -f $WORK/tree.ok || $(cat "$WORK/tree.ok") != "$MARK" ]]; then
    echo "[rescan] building a tree pair of $ENTRIES entries per side in $WORK" >&2
    mkdir -p "$WORK"
    rm -rf "$WORK/src" "$WORK/dst" "$WORK/tree.ok"
    "${CC:-cc}" -O2 -std=c11 -o "$WORK/gentree" "$HERE/gentree.c" -lm
    "$WORK/gentree" "$WORK" "$ENTRIES" "$SEED" >"$WORK/tree.stats"
    printf '%s\n' "$MARK" >"$WORK/tree.ok"
fi
find "$WORK/src" "$WORK/dst" -printf '%s %T@\n' >/dev/null   # warm the caches
SRC=$WORK/src DST=$WORK/dst DB=$WORK/rescan.db

# Runs a treemig command; prints "SECONDS BYTES_WRITTEN".
timed() {
    local t0 t1 wb
    t0=$(date +%s.%N)
    wb=$(sh -c '"$@" >/dev/null 2>&1 || exit 1; sed -n "s/^wchar: //p" /proc/$$/io' sh "$@") ||
        { echo "bench/rescan: $* failed" >&2; exit 1; }
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v w="$wb" 'BEGIN { printf "%.2f %d\n", b - a, w }'
}

written() { sqlite3 "$DB" "SELECT value FROM migration WHERE key = 'rows_written'"; }

printf '%-28s %10s %14s %12s %10s\n' "run" "seconds" "bytes written" "rows written" "rows"
for r in $(seq 1 "$RUNS"); do
    rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.yaml" "$DB.lock"
    read -r t1 w1 < <(timed "$TREEMIG" discover --db "$DB" --quiet "$SRC" "$DST")
    n1=$(written)
    rows=$(sqlite3 "$DB" "SELECT (SELECT count(*) FROM src_nodes) + (SELECT count(*) FROM dst_nodes)")
    printf '%-28s %10s %14s %12s %10s\n' "discover (pass 1) #$r" "$t1" "$w1" "$n1" "$rows"
    read -r t2 w2 < <(timed "$TREEMIG" rescan --db "$DB" --quiet)
    n2=$(written)
    printf '%-28s %10s %14s %12s %10s\n' "rescan, nothing changed #$r" "$t2" "$w2" "$n2" "$rows"
    awk -v a="$t2" -v b="$t1" -v x="$w2" -v y="$w1" -v m="$n2" -v n="$n1" 'BEGIN {
        printf "  rescan/discover: time %.2f, bytes written %.1f%%, rows written %.2f%%\n",
               a / b, 100 * x / y, 100 * m / n }'
done

