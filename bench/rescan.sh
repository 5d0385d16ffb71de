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
# The 1% case changes the source (then the pair is built again at the next
# run: its mark is removed first); ONE_PCT=0 leaves it out.
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
# the pair of bench/discover.sh (bench/lib.sh's tree_pair: either reuses it)
BENCH_NAME=rescan
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
tree_pair "$WORK" "$ENTRIES" "$SEED"
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

[[ ${ONE_PCT:-1} == 1 ]] || { rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.yaml" "$DB.lock"; exit 0; }
# A pass after 1% of the source files changed: every 100th file (sorted)
# in turn rewritten (longer), touched (mtime + 10 s), deleted, or given a
# new file beside it. The oracle is rsync -ani --delete: what it would send
# after the change and not before must be what the pass left to copy after
# and not before, and the other way round (the pair's own differences, the
# same before and after, cancel out).
rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.yaml" "$DB.lock"
"$TREEMIG" discover --db "$DB" --quiet "$SRC" "$DST" || { echo "bench/rescan: discover failed" >&2; exit 1; }
n1=$(written)
rsync_send() { rsync -ani8 --delete "$SRC/" "$DST/" | sed -n "s|^>f......... |/|p" | LC_ALL=C sort; }
pending() { sqlite3 "$DB" "SELECT path FROM src_nodes WHERE type = 'file' AND copy_status = 'pending'" | LC_ALL=C sort; }
rsync_send >"$WORK/rsync.before"
pending >"$WORK/pending.before"
rm -f "$WORK/tree.ok"   # the source changes: built again next time
changed=$(cd "$SRC" && find . -type f | LC_ALL=C sort | awk 'NR % 100 == 0' | python3 -c '
import os, sys
n = 0
for i, line in enumerate(sys.stdin):
    p = line.rstrip("\n")
    k = i % 4
    if k == 0:
        with open(p, "ab") as f:
            f.write(b"one percent")
    elif k == 1:
        st = os.lstat(p)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10 * 10**9))
    elif k == 2:
        os.unlink(p)
    else:
        with open(p + ".new", "wb") as f:
            f.write(b"new")
    n += 1
print(n)')
read -r t3 w3 < <(timed "$TREEMIG" rescan --db "$DB" --quiet)
n3=$(written)
rsync_send >"$WORK/rsync.after"
pending >"$WORK/pending.after"
files=$(sqlite3 "$DB" "SELECT count(*) FROM src_nodes WHERE type = 'file'")
add_r=$(LC_ALL=C comm -13 "$WORK/rsync.before" "$WORK/rsync.after")
del_r=$(LC_ALL=C comm -23 "$WORK/rsync.before" "$WORK/rsync.after")
add_t=$(LC_ALL=C comm -13 "$WORK/pending.before" "$WORK/pending.after")
del_t=$(LC_ALL=C comm -23 "$WORK/pending.before" "$WORK/pending.after")
printf '%-28s %10s %14s %12s %10s\n' "rescan, 1% changed" "$t3" "$w3" "$n3" "$changed"
awk -v a="$n3" -v b="$n1" -v c="$changed" -v f="$files" 'BEGIN {
    printf "  %d of %d source files changed (%.2f%%); rows written %.2f%% of the discovery\n",
           c, f, 100 * c / f, 100 * a / b }'
if [[ $add_r == "$add_t" && $del_r == "$del_t" ]]; then
    echo "  to copy after the pass: $(printf '%s' "$add_t" | grep -c .) more, $(printf '%s' "$del_t" | grep -c .) fewer: the same files as rsync -ani --delete"
else
    echo "bench/rescan: the pass and rsync -ani disagree on what changed:" >&2
    diff <(printf '%s\n' "$add_r") <(printf '%s\n' "$add_t") | head -20 >&2
    diff <(printf '%s\n' "$del_r") <(printf '%s\n' "$del_t") | head -20 >&2
    exit 1
fi
rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.yaml" "$DB.lock" "$WORK"/rsync.* "$WORK"/pending.*
