#!/usr/bin/env bash
# bench/discover.sh: `treemig discover` against the peers that do the same
# work on a local tree pair: list both trees, stat every node, compare.
#
#   bench/discover.sh                      # 300,000 entries per side, RUNS=3
#   SCALE=0.05 bench/discover.sh           # 15,000 entries: a quick check
#   SKIP_TREEMIG=1 bench/discover.sh       # the peers only
#
# The rows (bench/README.md says why these are the same work):
#   treemig discover --no-xattrs      both trees, every node recorded in a fresh state file;
#                                     no extended attributes read (rsync -an and rclone check
#                                     read none)
#   treemig discover (xattrs)         the default: also one listxattrat per node, compared
#   rsync -anX --delete               the same dry run reading and comparing xattrs: the peer
#                                     of the default (its ratio is treemig (xattrs) / it)
#   rsync -an --delete                dry run of a mirror: lists both trees, lstat of every
#                                     node, size + mtime compared, destination-only found;
#                                     prints nothing (no -i)
#   rclone check --size-only          lists both trees (its local backend stats every
#                                     entry), compares sizes, reports both sides' extras;
#                                     reads no content
#   find SRC DST -printf size,mtime   the floor: an lstat of every node, no comparison
#
# Environment (besides RUNS, SCALE, TREEMIG: bench/lib.sh):
#   BENCH_DIR      work dir (default /tmp/treemig-bench): src/, dst/, bench.db, logs/, reports
#   BENCH_ENTRIES  entries (folders + files) per source tree (default 300000 x SCALE)
#   BENCH_SEED     generator seed (default 42)
#   WORKERS        passed as `--workers N` to treemig discover when set
#   SKIP_TREEMIG   1: run the peers only
#   KEEP_TREE      0: delete the tree pair at the end (default 1: kept for the next run)
#   BENCH_TIMEOUT  seconds one timed run may take before it is killed (default 3600)
#
# Prints a report (also saved as $BENCH_DIR/report-*.txt); exits 1 when
# treemig fails or its counts differ from the generator's ground truth.
set -euo pipefail
SKIP_TREEMIG=${SKIP_TREEMIG:-0}
BENCH_NEEDS_TREEMIG=$((SKIP_TREEMIG == 1 ? 0 : 1))
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=${BENCH_DIR:-/tmp/treemig-bench}
case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/) die "BENCH_DIR=$WORK is too broad: name a dedicated folder" ;; esac
[[ $WORK = /* ]] || WORK=$PWD/$WORK
mkdir -p "$WORK/logs"
LOGS=$WORK/logs
bench_init discover BENCH_DIR BENCH_ENTRIES BENCH_SEED WORKERS SKIP_TREEMIG
ENTRIES=${BENCH_ENTRIES:-$(scaled 300000 100)}
SEED=${BENCH_SEED:-42}
WORKERS=${WORKERS:-}
KEEP_TREE=${KEEP_TREE:-1}
[[ $ENTRIES =~ ^[0-9]+$ && $ENTRIES -ge 100 ]] || die "BENCH_ENTRIES must be an integer >= 100 (got '$ENTRIES')"
[[ -z $WORKERS || $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer (got '$WORKERS')"
SRC=$WORK/src
DST=$WORK/dst
DB=$WORK/bench.db

# ---------------------------------------------------------------- the tree pair
tree_pair "$WORK" "$ENTRIES" "$SEED"
declare -A G
while IFS='=' read -r k v; do G[$k]=$v; done <"$WORK/tree.stats"

# Warm caches: dentries and inodes stay cached once read, and no row reads
# file contents, so one walk makes every run start alike.
say "warm-up: find -printf over both trees"
find "$SRC" "$DST" -printf '%s %T@\n' >/dev/null
FIND_SRC=$(find "$SRC" -mindepth 1 | wc -l)
FIND_DST=$(find "$DST" -mindepth 1 | wc -l)

# ---------------------------------------------------------------- timed runs
RCLONE=(rclone --config "$WORK/rclone.conf")   # no remotes needed for local paths
: >"$WORK/rclone.conf"
KEYS=()
[[ $SKIP_TREEMIG != 1 ]] && KEYS+=(treemig treemig_x)
KEYS+=(rsync rsync_x rclone find)
declare -A LABEL=(
    [treemig]="treemig discover --no-xattrs${WORKERS:+ --workers $WORKERS}"
    [treemig_x]="treemig discover (xattrs)${WORKERS:+ --workers $WORKERS}"
    [rsync]="rsync -an --delete"
    [rsync_x]="rsync -anX --delete"
    [rclone]="rclone check --size-only"
    [find]="find -printf (lstat floor)"
)
run_tool() {
    case $1 in
    treemig)
        rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"
        measure treemig "$TREEMIG" discover --quiet --no-xattrs --db "$DB" ${WORKERS:+--workers "$WORKERS"} "$SRC" "$DST" ;;
    treemig_x)
        rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"
        measure treemig_x "$TREEMIG" discover --quiet --db "$DB" ${WORKERS:+--workers "$WORKERS"} "$SRC" "$DST" ;;
    rsync) measure rsync rsync -an --delete "$SRC/" "$DST/" ;;
    rsync_x) measure rsync_x rsync -anX --delete "$SRC/" "$DST/" ;;
    rclone) measure rclone "${RCLONE[@]}" check --size-only "$SRC" "$DST" ;;
    find) measure find bash -c 'find "$1" "$2" -printf "%s %T@\n" | wc -l' _ "$SRC" "$DST" ;;
    esac
}
REPORT=$WORK/report-$(date -u +%Y%m%dT%H%M%SZ).txt
HEAD=$(header "treemig discover benchmark: $ENTRIES entries per source tree")
for ((r = 0; r < RUNS; r++)); do
    say "run $((r + 1))/$RUNS"
    while read -r k; do run_tool "$k"; done < <(rotate "$r" "${KEYS[@]}")
done
LOAD_END=$(load)

# ---------------------------------------------------------------- sanity
FAIL=0
declare -A ST
if [[ $SKIP_TREEMIG != 1 ]]; then
    [[ ${RC[treemig]} -eq 0 ]] || FAIL=1
    "$TREEMIG" status --json --db "$DB" >"$LOGS/status.json"
    while IFS='=' read -r k v; do ST[$k]=$v; done < <(python3 - "$LOGS/status.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for side in ("src", "dst"):
    print("%s_entries=%d" % (side, s[side]["files"] + s[side]["folders"]))
print("not_on_src=%d" % s["dst"]["not_on_src"])
print("copy_pending=%d" % s["copy"]["pending"])
print("copy_conflicts=%d" % s["copy"]["conflicts"])
PY
    )
    for pair in "src_entries:$FIND_SRC" "dst_entries:$FIND_DST" "copy_pending:${G[expect_copy_pending]}" \
                "copy_conflicts:${G[expect_conflicts]}" "not_on_src:${G[expect_not_on_src]}"; do
        [[ ${ST[${pair%%:*}]:-x} == "${pair#*:}" ]] || FAIL=1
    done
fi
rclone_found() { # its NOTICE lines: "Local file system at DIR: N files missing", "N differences found"
    local log=$LOGS/rclone.log
    printf '%s differences (sizes differ, or missing on one side), %s files missing on the destination, %s on the source' \
        "$(grep -oE '[0-9]+ differences found' "$log" | head -1 | cut -d' ' -f1 || true)" \
        "$(grep -F "at $DST: " "$log" | grep -oE '[0-9]+ files missing' | head -1 | cut -d' ' -f1 || true)" \
        "$(grep -F "at $SRC: " "$log" | grep -oE '[0-9]+ files missing' | head -1 | cut -d' ' -f1 || true)"
}

# ---------------------------------------------------------------- report
{
    echo "$HEAD"
    echo "  load at the end: $LOAD_END"
    echo "  tree pair: bench/gentree.c, seed $SEED: source ${G[src_entries]} entries (${G[src_folders]} folders," \
        "${G[src_files]} files of 0-4 KiB, depth <= ${G[max_depth]}); destination ${G[dst_entries]} entries:"
    echo "    ${G[files_missing]} files missing, ${G[files_changed]} changed, ${G[dst_only]} destination-only; warm caches"
    echo
    printf '  %-30s %24s %8s %8s %5s %13s\n' tool "wall s: median (min-max)" "cpu s" "RSS MiB" exit "treemig / it"
    for k in "${KEYS[@]}"; do
        r=-
        base=treemig
        [[ $k == rsync_x ]] && base=treemig_x
        [[ $SKIP_TREEMIG != 1 && $k != treemig* ]] && r=$(ratio "$(median "$base")" "$(median "$k")")
        printf '  %-30s %24s %8s %8s %5s %13s\n' "${LABEL[$k]}" "$(stat_of "$k")" "${CPU[$k]}" \
            "$(awk -v m="${RSS[$k]}" 'BEGIN{printf "%.1f", m/1024}')" "${RC[$k]}" "$r"
    done
    echo "  treemig / it: ratio of the median walls (below 1: treemig is faster; rsync -anX against"
    echo "  treemig (xattrs), the others against treemig --no-xattrs). cpu s: user+sys of"
    echo "  the last run; RSS: the largest of the runs (of the largest process: rsync runs as 2-3)."
    echo "  all walls:"
    for k in "${KEYS[@]}"; do printf '    %-30s%s\n' "${LABEL[$k]}" "${WALLS[$k]}"; done
    echo "  other: CPU seconds other processes used during the last run of each:" \
        "$(for k in "${KEYS[@]}"; do printf '%s %s; ' "$k" "${OTHER[$k]}"; done)"
    echo
    echo "Sanity"
    if [[ $SKIP_TREEMIG != 1 ]]; then
        echo "  treemig: src ${ST[src_entries]:-?} entries (find: $FIND_SRC), dst ${ST[dst_entries]:-?} (find: $FIND_DST)," \
            "to copy ${ST[copy_pending]:-?} (generator: ${G[expect_copy_pending]}), conflicts ${ST[copy_conflicts]:-?}" \
            "(${G[expect_conflicts]}), destination-only ${ST[not_on_src]:-?} (${G[expect_not_on_src]}): $([[ $FAIL == 0 ]] && echo ok || echo MISMATCH)"
    fi
    echo "  rclone check --size-only: $(rclone_found); exit ${RC[rclone]} (1: differences found, as expected)"
    echo "  generator: ${G[files_missing]} files missing on the destination, ${G[files_changed]} changed, ${G[dst_only]} destination-only"
    echo "Logs: $LOGS"
} | tee "$REPORT"
say "report saved: $REPORT"
if [[ $KEEP_TREE == 0 ]]; then
    rm -rf "$SRC" "$DST" "$WORK/tree.ok"
fi
[[ $FAIL -eq 0 ]] || { say "treemig failed or its counts differ from the tree's (see Sanity)"; exit 1; }
