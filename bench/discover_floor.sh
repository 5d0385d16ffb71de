#!/usr/bin/env bash
# bench/discover_floor.sh: the floor of a local discovery (issue 12, goal 3):
# the least CPU any discovery that follows docs/internals.md spends on
# bench/discover.sh's tree pair, against the goal (0.6 x `rsync -an`) and
# treemig, in one run.
#
#   bench/discover_floor.sh                # the 300,000-entry pair, RUNS=3
#   SCALE=0.05 bench/discover_floor.sh     # 15,000 entries: a quick check
#
# bench/discover_floor.c (compiled into the work dir) does, timed apart:
#   (a) the walk of both trees in two threads with the system calls of
#       src/adapter/local.c (openat2 per folder, getdents64 32 KiB,
#       one statx per entry), rows kept in memory;
#   (b) the insert of those rows into the state file's node tables and
#       indexes (schema taken from a state file this treemig makes) on one
#       thread: prepared statements of 32 rows, each listed folder set from
#       pending to successful, WAL, synchronous=NORMAL, 8 KiB pages, a
#       commit every 4,096 rows; no update of a source row by a verdict;
#   (b') row floor_v: the same and, as src/store/writer.c did before the
#       pair listing, an update of each source row that has a destination twin
#       (its verdict);
#   (b0) row floor_bare: a bound below any design that keeps one row per
#       node: the rows into the node tables without any index, no folder
#       updates, then the two (parent_id, name) unique indexes built in
#       bulk after the last row (timed with the rows); no discovery could
#       run on such a state file (no frontier, no lookup), nothing is cheaper.
#   The best wall of (a) and (b) on NCORES cores is max(b, (a + b) / NCORES):
#   b runs on one thread, and nothing is faster than all the CPU spread evenly.
# Rows timed beside it, order rotated: `rsync -an --delete` (the goal's
# reference: goal = 0.6 x its median) and `treemig discover --no-xattrs`.
#
# Environment (besides RUNS, SCALE, TREEMIG: bench/lib.sh):
#   BENCH_DIR      work dir shared with bench/discover.sh (default /tmp/treemig-bench):
#                  the tree pair is built there as discover.sh builds it when missing
#   BENCH_ENTRIES  entries per source tree (default 300000 x SCALE)
#   BENCH_SEED     generator seed (default 42)
#   TXN            rows per transaction of (b) (default 4096, treemig's writer)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=${BENCH_DIR:-/tmp/treemig-bench}
case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/) die "BENCH_DIR=$WORK is too broad: name a dedicated folder" ;; esac
[[ $WORK = /* ]] || WORK=$PWD/$WORK
mkdir -p "$WORK/logs"
LOGS=$WORK/logs
bench_init discover_floor BENCH_DIR BENCH_ENTRIES BENCH_SEED TXN
ENTRIES=${BENCH_ENTRIES:-$(scaled 300000 100)}
SEED=${BENCH_SEED:-42}
TXN=${TXN:-4096}
NCORES=$(nproc)
[[ $ENTRIES =~ ^[0-9]+$ && $ENTRIES -ge 100 ]] || die "BENCH_ENTRIES must be an integer >= 100 (got '$ENTRIES')"
[[ $TXN =~ ^[1-9][0-9]*$ ]] || die "TXN must be a positive integer (got '$TXN')"
CC=${CC:-$(command -v cc || command -v gcc)}
SRC=$WORK/src
DST=$WORK/dst
DB=$WORK/floor-treemig.db

# the tree pair, as bench/discover.sh makes it (same marker: either script reuses it)
tree_pair "$WORK" "$ENTRIES" "$SEED"

# shellcheck disable=SC2046
"$CC" -O2 -o "$WORK/discover_floor" "$BENCH_LIB_DIR/discover_floor.c" \
    $(pkg-config --cflags --libs sqlite3 2>/dev/null || echo -lsqlite3) -lpthread
# the node tables and indexes of a new state file of this treemig
rm -rf "$WORK/schema.db"* "$WORK/empty"
mkdir -p "$WORK/empty/s" "$WORK/empty/d"
"$TREEMIG" discover --quiet --db "$WORK/schema.db" "$WORK/empty/s" "$WORK/empty/d" >/dev/null
python3 -c '
import sqlite3, sys
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
for (s,) in c.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name IN (?, ?)", ("src_nodes", "dst_nodes")):
    print(s + ";")
' "$WORK/schema.db" >"$WORK/schema.sql"
rm -rf "$WORK/schema.db"* "$WORK/empty"

say "warm-up: find -printf over both trees"
find "$SRC" "$DST" -printf '%s %T@\n' >/dev/null

declare -A F  # F[key] = the values of one floor figure over the runs (key_v: floor_v's)
run_tool() {
    case $1 in
    floor|floor_v|floor_bare)
        local mode=1 sfx=
        [[ $1 == floor_v ]] && mode=2 sfx=_v
        [[ $1 == floor_bare ]] && mode=3 sfx=_bare
        rm -f "$WORK/floor.db" "$WORK/floor.db-wal" "$WORK/floor.db-shm"
        measure "$1" "$WORK/discover_floor" "$SRC" "$DST" "$WORK/floor.db" "$WORK/schema.sql" "$mode" "$TXN"
        [[ ${RC[$1]} == 0 ]] || die "discover_floor failed: $(tail -3 "$LOGS/$1.log")"
        while IFS='=' read -r k v; do F[$k$sfx]="${F[$k$sfx]:-} $v"; done <"$LOGS/$1.log"
        rm -f "$WORK/floor.db" "$WORK/floor.db-wal" "$WORK/floor.db-shm" ;;
    rsync) measure rsync rsync -an --delete "$SRC/" "$DST/" ;;
    treemig)
        rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"
        measure treemig "$TREEMIG" discover --quiet --no-xattrs --db "$DB" "$SRC" "$DST"
        rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml" ;;
    esac
}
REPORT=$WORK/report-floor-$(date -u +%Y%m%dT%H%M%SZ).txt
HEAD=$(header "discovery floor: $ENTRIES entries per source tree")
for ((r = 0; r < RUNS; r++)); do
    say "run $((r + 1))/$RUNS"
    while read -r k; do run_tool "$k"; done < <(rotate "$r" floor floor_v floor_bare rsync treemig)
done
LOAD_END=$(load)

fmed() { _sorted "${F[$1]:-}" | awk '{a[NR]=$1} END{if (!NR) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
A=$(fmed walk_cpu)
B=$(fmed insert_cpu)
best() { awk -v a="$1" -v b="$2" -v n="$NCORES" 'BEGIN{w = (a + b) / n; printf "%.2f", (b > w ? b : w)}'; }
BEST=$(best "$A" "$B")
AV=$(fmed walk_cpu_v)
BV=$(fmed insert_cpu_v)
BEST_V=$(best "$AV" "$BV")
A0=$(fmed walk_cpu_bare)
B0=$(fmed insert_cpu_bare)
BEST_0=$(best "$A0" "$B0")
B0H=$(awk -v b="$B0" 'BEGIN{printf "%.3f", b / 2}')
BEST_0H=$(best "$A0" "$B0H")
GOAL=$(awk -v r="$(median rsync)" 'BEGIN{printf "%.2f", 0.6 * r}')
{
    echo "$HEAD"
    echo "  load at the end: $LOAD_END"
    echo "  tree pair: $(fmed rows_src) + $(fmed rows_dst) rows (roots included), $(fmed listings) listings"
    echo
    echo "  floor, medians over $RUNS runs (CPU seconds of the threads, CLOCK_THREAD_CPUTIME_ID):"
    echo "    (a) walk, 2 threads:   $A cpu s (source $(fmed walk_cpu_src), destination $(fmed walk_cpu_dst)); wall $(fmed walk_wall) s"
    echo "    (b) insert, 1 thread:  $B cpu s; wall $(fmed insert_wall) s (commits every $TXN rows)"
    echo "    best wall on $NCORES cores = max(b, (a + b) / $NCORES) = $BEST s"
    echo "  floor_v: the same and the update of each of the $(fmed twins) source rows with a twin by its verdict:"
    echo "    (a) $AV cpu s; (b') $BV cpu s; best wall on $NCORES cores = $BEST_V s"
    echo "  floor_bare: the rows into tables without indexes, then the child indexes built in bulk:"
    echo "    (a) $A0 cpu s; (b0) $B0 cpu s; best wall on $NCORES cores = $BEST_0 s;"
    echo "    were (b0) split evenly over two writers (two state files): $BEST_0H s"
    echo
    printf '  %-32s %24s %8s %8s\n' row "wall s: median (min-max)" "cpu s" "RSS MiB"
    for k in floor floor_v floor_bare rsync treemig; do
        printf '  %-32s %24s %8s %8s\n' "$k" "$(stat_of "$k")" "${CPU[$k]}" \
            "$(awk -v m="${RSS[$k]}" 'BEGIN{printf "%.1f", m/1024}')"
    done
    echo "  (floor's wall: (a) then (b) one after the other, and the rows held in memory: not a design)"
    echo
    echo "  goal = 0.6 x rsync -an = $GOAL s; best wall / goal: floor $(ratio "$BEST" "$GOAL")," \
        "floor_v $(ratio "$BEST_V" "$GOAL"), floor_bare $(ratio "$BEST_0" "$GOAL") (two writers $(ratio "$BEST_0H" "$GOAL"));"\
        "treemig / goal = $(ratio "$(median treemig)" "$GOAL")"
    echo "  under load the walls stretch; rsync -an's wall on an idle machine is about its CPU (it runs as"
    echo "  a pipeline of processes that mostly wait on each other): goal by its CPU = 0.6 x ${CPU[rsync]} ="\
        "$(awk -v c="${CPU[rsync]}" 'BEGIN{printf "%.2f", 0.6 * c}') s"
    echo "  other: CPU seconds other processes used during the last run of each:" \
        "$(for k in floor floor_v floor_bare rsync treemig; do printf '%s %s; ' "$k" "${OTHER[$k]}"; done)"
} | tee "$REPORT"
say "report saved: $REPORT"
