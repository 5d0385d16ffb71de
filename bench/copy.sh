#!/usr/bin/env bash
# bench/copy.sh: `treemig discover` + `treemig copy` against cp -a, rsync -a
# and rclone copy, each copying the same source tree into an empty
# destination, RUNS times each in rotated order.
#
#   bench/copy.sh                              # 200,000 files in 100,000 folders, RUNS=3
#   SCALE=0.05 bench/copy.sh                   # 10,000 files in 5,000 folders: a quick check
#   BENCH_FILES=40000 BENCH_FOLDERS=20000 COPY_WORKERS="4 8" bench/copy.sh
#                                              # the thread-count rows: treemig with 4 and 8
#                                              # copy threads beside the peers
#
# Environment (besides RUNS, SCALE, TREEMIG: bench/lib.sh):
#   BENCH_DIR      work dir (default /tmp/treemig-copybench): src/, dst/, state file, logs/
#   BENCH_FILES    files in the source tree (default 200000 x SCALE; 0-4 KiB, skewed small)
#   BENCH_FOLDERS  folders in the source tree (default 100000 x SCALE)
#   BENCH_SEED     generator seed (default 42)
#   COPY_WORKERS   treemig copy --workers values, one row each (default: treemig's default, 8)
#   KEEP_TREE      0: delete the source tree at the end (default 1: reused by the next run)
#
# Before each timed run: the destination is deleted, `sync`, the page cache
# dropped when that works (echo 3 > /proc/sys/vm/drop_caches, as root),
# then a `find` over the source warms the metadata caches. Each run is timed
# with /usr/bin/time, and a `sync` right after it is timed too (treemig
# syncs before it records the copy complete; the peers leave it to the
# kernel). The first treemig copy is checked: diff -r, and the type, mode,
# mtime, size and target of every node (find -printf), and treemig verify.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=${BENCH_DIR:-/tmp/treemig-copybench}
case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/|"") die "BENCH_DIR=$WORK is too broad: name a dedicated folder" ;; esac
[[ $WORK = /* ]] || WORK=$PWD/$WORK
mkdir -p "$WORK/logs"
LOGS=$WORK/logs
bench_init copy BENCH_DIR BENCH_FILES BENCH_FOLDERS BENCH_SEED COPY_WORKERS
FILES=${BENCH_FILES:-$(scaled 200000 10)}
FOLDERS=${BENCH_FOLDERS:-$(scaled 100000 1)}
SEED=${BENCH_SEED:-42}
KEEP_TREE=${KEEP_TREE:-1}
read -r -a WORKER_LIST <<<"${COPY_WORKERS:-default}"
[[ $FILES =~ ^[0-9]+$ && $FILES -ge 10 ]] || die "BENCH_FILES must be an integer >= 10 (got '$FILES')"
[[ $FOLDERS =~ ^[0-9]+$ && $FOLDERS -ge 1 ]] || die "BENCH_FOLDERS must be an integer >= 1 (got '$FOLDERS')"
for w in "${WORKER_LIST[@]}"; do
    [[ $w == default || $w =~ ^[1-9][0-9]*$ ]] || die "COPY_WORKERS holds '$w', not a positive integer"
done
CC=${CC:-$(command -v cc || command -v gcc)}
SRC=$WORK/src
DST=$WORK/dst
DB=$WORK/copy.db

# ---------------------------------------------------------------- the source tree
GEN_HASH=$(sha256sum "$BENCH_LIB_DIR/gencopy.c" | cut -c1-16)
MARK="gencopy=$GEN_HASH files=$FILES folders=$FOLDERS seed=$SEED"
if [[ -f $WORK/tree.ok && $(cat "$WORK/tree.ok") == "$MARK" && -d $SRC && -f $WORK/tree.stats ]]; then
    say "reusing the source tree in $WORK ($MARK)"
else
    say "building a source tree of $FILES files in $FOLDERS folders in $WORK"
    rm -f "$WORK/tree.ok" "$WORK/tree.stats"
    rm -rf "$SRC"
    "$CC" -O2 -std=c11 -o "$WORK/gencopy" "$BENCH_LIB_DIR/gencopy.c" -lm
    "$WORK/gencopy" "$WORK" "$FILES" "$FOLDERS" "$SEED" >"$WORK/tree.stats.tmp"
    mv "$WORK/tree.stats.tmp" "$WORK/tree.stats"
    printf '%s\n' "$MARK" >"$WORK/tree.ok"
fi
declare -A G
while IFS='=' read -r k v; do G[$k]=$v; done <"$WORK/tree.stats"
SRC_ENTRIES=$(find "$SRC" -mindepth 1 | wc -l)

# ---------------------------------------------------------------- timed runs
CACHES=warm
trap trash_empty EXIT
prepare() { # an empty destination, the page cache dropped when possible, warm metadata
    discard "$DST" # the last run's tree put aside (lib.sh: deleted, it slows this run)
    rm -rf "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"
    sync
    if { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then CACHES=dropped; fi
    find "$SRC" -printf '%s %T@\n' >/dev/null
}
declare -A SYNCS DSTN
after_run() { # KEY: times a sync, counts the destination
    local t0 t1
    t0=$(date +%s.%N); sync; t1=$(date +%s.%N)
    SYNCS[$1]="${SYNCS[$1]:-} $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')"
    DSTN[$1]=$(find "$DST" -mindepth 1 | wc -l)
}
RCLONE=(rclone --config "$WORK/rclone.conf")
: >"$WORK/rclone.conf"
KEYS=()
declare -A LABEL
for w in "${WORKER_LIST[@]}"; do
    KEYS+=("treemig_$w")
    LABEL[treemig_$w]="treemig discover + copy"
    [[ $w == default ]] || LABEL[treemig_$w]+=" --workers $w"
done
KEYS+=(cp rsync rclone)
LABEL[cp]="cp -a"
LABEL[rsync]="rsync -a"
LABEL[rclone]="rclone copy --links"
CHECKED=
check_copy() { # the first treemig copy, against the source (not timed)
    local d m v
    d=ok; m=ok
    diff -r --no-dereference -q "$SRC" "$DST" >"$LOGS/diff.log" 2>&1 || d="DIFFERENT (see $LOGS/diff.log)"
    listing() { (cd "$1" && find . -mindepth 1 -printf '%P\t%y\t%m\t%T@\t%s\t%l\n' | LC_ALL=C sort); }
    listing "$SRC" >"$LOGS/src.list"
    listing "$DST" >"$LOGS/dst.list"
    cmp -s "$LOGS/src.list" "$LOGS/dst.list" || m="DIFFERENT (see $LOGS/*.list)"
    v=0
    "$TREEMIG" verify --quiet --db "$DB" >"$LOGS/verify.log" 2>&1 || v=$?
    CHECKED="diff -r: $d; type, mode, mtime (ns), size, target of every node: $m; treemig verify: exit $v"
    [[ $d == ok && $m == ok && $v == 0 ]]
}
FAIL=0
run_tool() {
    local k=$1 w wopt
    prepare
    case $k in
    treemig_*)
        w=${k#treemig_}
        mkdir "$DST"
        measure "$k.discover" "$TREEMIG" discover --quiet --db "$DB" "$SRC" "$DST"
        wopt=()
        [[ $w == default ]] || wopt=(--workers "$w")
        measure "$k.copy" "$TREEMIG" copy --yes --quiet --db "$DB" "${wopt[@]}"
        WALLS[$k]="${WALLS[$k]:-} $(awk -v a="${WALLS[$k.discover]##* }" -v b="${WALLS[$k.copy]##* }" 'BEGIN{printf "%.2f", a+b}')"
        RC[$k]=$((RC[$k.discover] | RC[$k.copy]))
        RSS[$k]=$((RSS[$k.discover] > RSS[$k.copy] ? RSS[$k.discover] : RSS[$k.copy]))
        if [[ -z $CHECKED ]]; then check_copy || FAIL=1; fi ;;
    cp) measure cp cp -a "$SRC" "$DST" ;;
    rsync) measure rsync rsync -a "$SRC/" "$DST/" ;;
    rclone) mkdir "$DST"; measure rclone "${RCLONE[@]}" copy --links "$SRC" "$DST" ;;
    esac
    after_run "$k"
    [[ ${RC[$k]} -eq 0 ]] || FAIL=1
}
HEAD=$(header "treemig copy benchmark: $FILES files in $FOLDERS folders into an empty destination")
for ((r = 0; r < RUNS; r++)); do
    say "run $((r + 1))/$RUNS"
    while read -r k; do run_tool "$k"; done < <(rotate "$r" "${KEYS[@]}")
done
rm -rf "$DST" "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"
trash_empty
LOAD_END=$(load)

# ---------------------------------------------------------------- report
sync_median() { tr ' ' '\n' <<<"${SYNCS[$1]}" | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
REPORT=$WORK/report-$(date -u +%Y%m%dT%H%M%SZ).txt
T=${KEYS[0]}
{
    echo "$HEAD"
    echo "  load at the end: $LOAD_END"
    echo "  source: bench/gencopy.c, seed $SEED: ${G[files]} files + ${G[symlinks]} symlinks in ${G[folders]} folders," \
        "$SRC_ENTRIES entries, depth <= ${G[max_depth]}, $((G[bytes] / 1048576)) MiB in files"
    if [[ $CACHES == dropped ]]; then
        echo "  caches: page cache dropped before each run (file contents read cold), metadata warm"
    else
        echo "  caches: WARM (dropping the page cache needs root); metadata warm"
    fi
    echo
    printf '  %-36s %24s %9s %8s %5s %9s %12s\n' tool "wall s: median (min-max)" "sync s" "RSS MiB" exit "dst nodes" "${LABEL[$T]%% *} / it"
    for k in "${KEYS[@]}"; do
        r=-
        [[ $k != treemig_* ]] && r=$(ratio "$(median "$T")" "$(median "$k")")
        printf '  %-36s %24s %9s %8s %5s %9s %12s\n' "${LABEL[$k]}" "$(stat_of "$k")" "$(sync_median "$k")" \
            "$(awk -v m="${RSS[$k]}" 'BEGIN{printf "%.1f", m/1024}')" "${RC[$k]}" "${DSTN[$k]}" "$r"
    done
    for k in "${KEYS[@]}"; do
        [[ $k == treemig_* ]] || continue
        echo "  ${LABEL[$k]}: discover $(stat_of "$k.discover"), copy $(stat_of "$k.copy")"
    done
    echo "  treemig / it: the median wall of ${LABEL[$T]} (a migration cannot copy without"
    echo "  discovering) divided by the peer's. sync s: median time of a sync right after the run:"
    echo "  treemig syncs before it records the copy complete, the peers leave it to the kernel, so"
    echo "  wall + sync is the fairer sum. rclone keeps no modes nor folder mtimes and makes no"
    echo "  empty folder (its lower node count). RSS: the largest process (rsync runs as 2-3)."
    echo "  all walls:"
    for k in "${KEYS[@]}"; do printf '    %-36s%s\n' "${LABEL[$k]}" "${WALLS[$k]}"; done
    echo "Result of the first treemig copy: ${CHECKED:-not checked}"
    echo "Logs: $LOGS"
} | tee "$REPORT"
say "report saved: $REPORT"
if [[ $KEEP_TREE == 0 ]]; then rm -rf "$SRC" "$WORK/tree.ok"; fi
[[ $FAIL -eq 0 ]] || { say "a tool failed or treemig's copy differs from the source (see the report)"; exit 1; }
