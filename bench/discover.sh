#!/usr/bin/env bash
# bench/discover.sh: time `treemig discover` against its peers on a local tree pair.
#
#   bench/discover.sh                       # 300,000 entries per side, in /tmp/treemig-bench
#   BENCH_ENTRIES=30000 bench/discover.sh   # smaller pair
#   SKIP_TREEMIG=1 bench/discover.sh        # peers only (no treemig binary needed)
#
# Environment:
#   BENCH_DIR      work dir (default /tmp/treemig-bench): src/, dst/, bench.db, logs/, reports
#   BENCH_ENTRIES  entries (folders + files) per source tree (default 300000)
#   BENCH_SEED     generator seed (default 42)
#   TREEMIG        treemig binary (default <repo>/build/treemig)
#   WORKERS        passed as `--workers N` to treemig discover when set
#   RUNS           timed runs per tool, interleaved; the median wall is reported (default 1)
#   SKIP_TREEMIG   1: run the peers only
#   KEEP_TREE      0: delete the tree pair at the end (default 1: keep it for the next run)
#   BENCH_TIMEOUT  seconds one timed run may take before it is killed (default 1800)
#
# See bench/README.md. Prints a report (also saved as $BENCH_DIR/report-*.txt).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORK=${BENCH_DIR:-/tmp/treemig-bench}
ENTRIES=${BENCH_ENTRIES:-300000}
SEED=${BENCH_SEED:-42}
TREEMIG=${TREEMIG:-$REPO/build/treemig}
WORKERS=${WORKERS:-}
RUNS=${RUNS:-1}
SKIP_TREEMIG=${SKIP_TREEMIG:-0}
KEEP_TREE=${KEEP_TREE:-1}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}

say() { printf '[bench] %s\n' "$*" >&2; }
die() { printf 'bench/discover.sh: %s\n' "$*" >&2; exit 2; }

[[ $ENTRIES =~ ^[0-9]+$ && $ENTRIES -ge 100 ]] || die "BENCH_ENTRIES must be an integer >= 100 (got '$ENTRIES')"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer (got '$RUNS')"
[[ -z $WORKERS || $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer (got '$WORKERS')"
[[ $BENCH_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "BENCH_TIMEOUT must be a positive integer (got '$BENCH_TIMEOUT')"
case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/) die "BENCH_DIR=$WORK is too broad: name a dedicated folder" ;; esac
[[ $WORK = /* ]] || WORK=$PWD/$WORK

# ---------------------------------------------------------------- 1. tools
install_missing() {
    local need=()
    command -v rclone >/dev/null 2>&1 || need+=(rclone)
    command -v rsync >/dev/null 2>&1 || need+=(rsync)
    [[ -x /usr/bin/time ]] || need+=(time)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
    command -v find >/dev/null 2>&1 || need+=(findutils)
    ((${#need[@]})) || return 0
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing ${need[*]} and not root (no sudo either)"
        sudo=(sudo)
    fi
    say "installing: ${need[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
}
install_missing
CC=${CC:-$(command -v cc || command -v gcc)}

if [[ $SKIP_TREEMIG != 1 ]]; then
    if [[ ! -x $TREEMIG ]]; then
        die "treemig binary not found or not executable: $TREEMIG
  build it first:        (cd $REPO && make)
  or point at one:       TREEMIG=/path/to/treemig $0
  or bench peers only:   SKIP_TREEMIG=1 $0"
    fi
    TREEMIG=$(cd "$(dirname "$TREEMIG")" && pwd)/$(basename "$TREEMIG")
fi

mkdir -p "$WORK/logs"
SRC=$WORK/src
DST=$WORK/dst
DB=$WORK/bench.db

# ---------------------------------------------------------------- 2. tree pair
GEN_HASH=$(sha256sum "$HERE/gentree.c" | cut -c1-16)
MARK="gentree=$GEN_HASH entries=$ENTRIES seed=$SEED"
GEN_SECONDS=reused
if [[ -f $WORK/tree.ok && $(cat "$WORK/tree.ok") == "$MARK" && -d $SRC && -d $DST && -f $WORK/tree.stats ]]; then
    say "reusing the tree pair in $WORK ($MARK)"
else
    say "building a tree pair of $ENTRIES entries per side in $WORK"
    rm -f "$WORK/tree.ok" "$WORK/tree.stats"
    rm -rf "$SRC" "$DST"
    "$CC" -O2 -std=c11 -o "$WORK/gentree" "$HERE/gentree.c" -lm
    t0=$(date +%s.%N)
    "$WORK/gentree" "$WORK" "$ENTRIES" "$SEED" >"$WORK/tree.stats.tmp"
    t1=$(date +%s.%N)
    GEN_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
    mv "$WORK/tree.stats.tmp" "$WORK/tree.stats"
    printf '%s\n' "$MARK" >"$WORK/tree.ok"
    say "tree pair built in ${GEN_SECONDS} s"
fi
declare -A G
while IFS='=' read -r k v; do G[$k]=$v; done <"$WORK/tree.stats"

# ---------------------------------------------------------------- 3. warm caches
# cpu_idle SECONDS: percentage of idle CPU time over the next SECONDS (all cpus)
cpu_idle() {
    local a b
    a=$(awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat)
    sleep "$1"
    b=$(awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN{split(a, x, " "); split(b, y, " "); t = y[1]-x[1];
        printf "%.0f", (t > 0 ? 100*(y[2]-x[2])/t : 100)}'
}
# Metadata (dentries, inodes) stays cached once read; only rclone check with
# hashes reads file contents, and it cannot be given warm contents: rclone's
# local backend calls posix_fadvise(POSIX_FADV_DONTNEED) on every file it has
# read, dropping it from the page cache (and some VMs also reclaim page cache
# idle for a minute, e.g. DAMON). The %I column of the report (file system
# input, MiB) shows what each run read from disk.
say "warm-up: find -printf (lstat of every node) over both trees"
t0=$(date +%s.%N)
find "$SRC" "$DST" -printf '%s %T@\n' >/dev/null
FIND_SRC=$(find "$SRC" -mindepth 1 | wc -l)
FIND_DST=$(find "$DST" -mindepth 1 | wc -l)
t1=$(date +%s.%N)
WARM_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
IDLE_START=$(cpu_idle 3)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- 4. timed runs
# measure KEY CMD... : runs CMD under /usr/bin/time, output to logs/KEY.log;
# appends the wall seconds to WALLS[KEY]; keeps the max RSS, and of the last run
# the CPU seconds (user+sys), the CPU seconds other processes used meanwhile
# (all busy time on the machine minus the tool's own) and the exit code.
declare -A WALLS RSS RC CPU OTHER INMIB
busy_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9}' /proc/stat; }
measure() {
    local key=$1; shift
    local tf=$WORK/logs/$key.time rc=0 w m u s i b0 b1
    b0=$(busy_ticks)
    # timeout: a hung run (exit 124, or 137 if it ignored SIGTERM) must not hang the bench
    /usr/bin/time -f '%e %M %U %S %I' -o "$tf" \
        timeout -k 10 "$BENCH_TIMEOUT" "$@" >"$WORK/logs/$key.log" 2>&1 </dev/null || rc=$?
    b1=$(busy_ticks)
    # GNU time writes "Command exited with non-zero status N" before the numbers
    read -r w m u s i < <(tail -n 1 "$tf")
    INMIB[$key]=$(awk -v i="$i" 'BEGIN{printf "%.1f", i*512/1048576}')
    WALLS[$key]="${WALLS[$key]:-} $w"
    if [[ -z ${RSS[$key]:-} || $m -gt ${RSS[$key]} ]]; then RSS[$key]=$m; fi
    CPU[$key]=$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.2f", u+s}')
    OTHER[$key]=$(awk -v b0="$b0" -v b1="$b1" -v c="${CPU[$key]}" -v hz="$(getconf CLK_TCK)" \
        'BEGIN{o = (b1-b0)/hz - c; if (o < 0) o = 0; printf "%.1f", o}')
    RC[$key]=$rc
    say "  $key: ${w} s wall, ${CPU[$key]} s cpu, ${m} KiB, ${INMIB[$key]} MiB read from disk, exit $rc; other processes: ${OTHER[$key]} cpu s"
}
reset_db() { rm -f "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"; }

TREEMIG_CMD=()
if [[ $SKIP_TREEMIG != 1 ]]; then
    TREEMIG_CMD=("$TREEMIG" discover --quiet --db "$DB")
    [[ -n $WORKERS ]] && TREEMIG_CMD+=(--workers "$WORKERS")
    TREEMIG_CMD+=("$SRC" "$DST")
fi
# rclone: no config file is needed for local paths; an empty one keeps it quiet
RCLONE=(rclone --config "$WORK/rclone.conf")
: >"$WORK/rclone.conf"

KEYS=()
[[ $SKIP_TREEMIG != 1 ]] && KEYS+=(treemig)
KEYS+=(rclone_hash rclone_size rsync rsync_i find_names find_stat)
declare -A LABEL=(
    [treemig]="treemig discover${WORKERS:+ --workers $WORKERS}"
    [rclone_hash]="rclone check --one-way"
    [rclone_size]="rclone check --one-way --size-only"
    [rsync]="rsync -an --delete"
    [rsync_i]="rsync -ani --delete"
    [find_names]="find SRC DST | wc -l"
    [find_stat]="find SRC DST -printf %s%T@ | wc -l"
)

for ((r = 1; r <= RUNS; r++)); do
    say "run $r/$RUNS"
    if [[ $SKIP_TREEMIG != 1 ]]; then
        reset_db
        measure treemig "${TREEMIG_CMD[@]}"
    fi
    measure rclone_hash "${RCLONE[@]}" check --one-way "$SRC" "$DST"
    measure rclone_size "${RCLONE[@]}" check --one-way --size-only "$SRC" "$DST"
    measure rsync rsync -an --delete "$SRC/" "$DST/"
    measure rsync_i rsync -ani --delete "$SRC/" "$DST/"
    measure find_names bash -c 'find "$1" "$2" | wc -l' _ "$SRC" "$DST"
    measure find_stat bash -c 'find "$1" "$2" -printf "%s %T@\n" | wc -l' _ "$SRC" "$DST"
done

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END{if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }
declare -A WALL
for k in "${KEYS[@]}"; do WALL[$k]=$(median <<<"${WALLS[$k]}"); done

IDLE_END=$(cpu_idle 3)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- 5. sanity
FAIL=0
declare -A ST
if [[ $SKIP_TREEMIG != 1 ]]; then
    if [[ ${RC[treemig]} -ne 0 ]]; then
        FAIL=1
    fi
    if "$TREEMIG" status --json --db "$DB" >"$WORK/logs/status.json" 2>"$WORK/logs/status.err"; then
        while IFS='=' read -r k v; do ST[$k]=$v; done < <(python3 - "$WORK/logs/status.json" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except ValueError as e:
    print("phase=unreadable status --json output (%s)" % e)
    sys.exit(0)
print("phase=%s" % s.get("phase", "?"))
for side in ("src", "dst"):
    d = s.get(side, {})
    print("%s_entries=%d" % (side, d.get("files", 0) + d.get("folders", 0)))
    for k in ("files", "folders", "symlinks", "other", "failed", "pending"):
        print("%s_%s=%s" % (side, k, d.get(k, "?")))
print("not_on_src=%s" % s.get("dst", {}).get("not_on_src", "?"))
c = s.get("copy", {})
for k in ("pending", "conflicts", "already_existed", "skipped"):
    print("copy_%s=%s" % (k, c.get(k, "?")))
PY
        )
    else
        FAIL=1
        ST[phase]="status failed: $(head -c 300 "$WORK/logs/status.err")"
    fi
fi

# what the peers found
rclone_summary() { # prints "N differences, M missing on dst, K matching"
    local log=$WORK/logs/$1.log
    local d m ok
    d=$(grep -oE '[0-9]+ differences found' "$log" | head -1 | cut -d' ' -f1 || true)
    m=$(grep -oE '[0-9]+ files missing' "$log" | head -1 | cut -d' ' -f1 || true)
    ok=$(grep -oE '[0-9]+ matching files' "$log" | head -1 | cut -d' ' -f1 || true)
    printf '%s differences, %s missing on dst, %s matching' "${d:-?}" "${m:-?}" "${ok:-?}"
}
RSYNC_NEW_FILES=$(grep -c '^>f+++++++' "$WORK/logs/rsync_i.log" || true)
RSYNC_NEW_DIRS=$(grep -c '^cd+++++++' "$WORK/logs/rsync_i.log" || true)
RSYNC_CHANGED=$(grep -E '^>f' "$WORK/logs/rsync_i.log" | grep -vc '^>f+++++++' || true)
RSYNC_DELETE=$(grep -c '^\*deleting' "$WORK/logs/rsync_i.log" || true)
RSYNC_ATTR=$(grep -Ec '^\.[fd]' "$WORK/logs/rsync_i.log" || true)

# ---------------------------------------------------------------- 6. report
REPORT=$WORK/report-$(date -u +%Y%m%dT%H%M%SZ).txt
{
    echo "treemig discover benchmark ($(date -u '+%Y-%m-%d %H:%M:%S UTC'))"
    echo
    echo "Machine"
    echo "  cpus:        $(nproc) x$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2)"
    echo "  memory:      $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "  kernel:      $(uname -sr)"
    echo "  work dir:    $WORK on $(df -T "$WORK" | awk 'NR==2 {print $2 " (" $1 ")"}')"
    echo "  os:          $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}")"
    echo "  idle:        ${IDLE_START}% CPU idle in the 3 s before the runs, ${IDLE_END}% in the 3 s after"
    echo "               (load avg $LOAD_START before, $LOAD_END after)"
    if ((IDLE_START < 90 || IDLE_END < 90)); then
        echo "  WARNING: something else was using the CPUs around the runs; the walls include that contention"
    fi
    echo "Versions"
    if [[ $SKIP_TREEMIG != 1 ]]; then
        tv=$("$TREEMIG" --version 2>/dev/null | head -1 || true)
        tc=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
        td=$(git -C "$REPO" status --porcelain 2>/dev/null | grep -q . && echo ", dirty tree" || true)
        echo "  treemig:     ${tv:-?} (git $tc$td) $TREEMIG"
    else
        echo "  treemig:     skipped (SKIP_TREEMIG=1)"
    fi
    echo "  rclone:      $(rclone version 2>/dev/null | head -1)"
    echo "  rsync:       $(rsync --version | head -1 | sed 's/  */ /g')"
    echo "  find:        $(find --version | head -1)"
    echo "Tree pair (bench/gentree.c, seed $SEED; generation: ${GEN_SECONDS}$([[ $GEN_SECONDS != reused ]] && echo ' s'))"
    printf '  src: %s entries = %s folders + %s files, %s MiB, depth <= %s, <= %s files in one folder\n' \
        "${G[src_entries]}" "${G[src_folders]}" "${G[src_files]}" "$((G[src_bytes] / 1048576))" "${G[max_depth]}" "${G[max_files_in_folder]}"
    printf '  dst: %s entries = %s folders + %s files, %s MiB\n' \
        "${G[dst_entries]}" "${G[dst_folders]}" "${G[dst_files]}" "$((G[dst_bytes] / 1048576))"
    printf '  dst vs src: %s files missing (%s%%; %s whole subtrees missing, %s folders), %s changed size (%s%%), %s dst-only files (%s%%)\n' \
        "${G[files_missing]}" "$(awk -v a="${G[files_missing]}" -v b="${G[src_files]}" 'BEGIN{printf "%.1f", 100*a/b}')" \
        "${G[missing_folders]}" "${G[missing_folder_nodes]}" "${G[files_changed]}" "$(awk -v a="${G[files_changed]}" -v b="${G[src_files]}" 'BEGIN{printf "%.1f", 100*a/b}')" \
        "${G[dst_only]}" "$(awk -v a="${G[dst_only]}" -v b="${G[src_files]}" 'BEGIN{printf "%.1f", 100*a/b}')"
    echo "  file sizes 0-4096 B (skewed small); same-named files have equal mtimes (ns) unless changed"
    echo "Caches"
    echo "  not dropped (not reliably possible here). A warm-up find -printf over both trees"
    echo "  (lstat of every node, ${WARM_SECONDS} s) ran first, so every tool walked warm dentry and"
    echo "  inode caches. File contents are another matter: rclone check (with hashes) is the only"
    echo "  tool that reads them, and rclone's local backend drops every file it has read from the"
    echo "  page cache (posix_fadvise DONTNEED), so its contents come from disk whatever one warms."
    echo "  'disk MiB' is what each run read from the file system (/usr/bin/time %I), its binary too."
    echo
    if [[ $RUNS -gt 1 ]]; then
        echo "Results (median wall of $RUNS interleaved runs; peak RSS = max over runs)"
    else
        echo "Results (one run each)"
    fi
    has_t=0
    [[ $SKIP_TREEMIG != 1 && ${RC[treemig]:-1} -eq 0 ]] && has_t=1
    T=${WALL[treemig]:-}
    printf '  %-36s %7s %7s %8s %5s %11s %11s %8s %6s\n' "tool" "wall s" "cpu s" "RSS MiB" "exit" "treemig/it" "it/treemig" "disk MiB" "other"
    printf '  %-36s %7s %7s %8s %5s %11s %11s %8s %6s\n' "------------------------------------" "------" "-----" "-------" "----" "----------" "----------" "--------" "-----"
    for k in "${KEYS[@]}"; do
        w=${WALL[$k]}
        mib=$(awk -v m="${RSS[$k]}" 'BEGIN{printf "%.1f", m/1024}')
        if [[ $has_t == 1 && $k != treemig ]]; then
            r1=$(awk -v t="$T" -v p="$w" 'BEGIN{ if (p > 0) printf "%.2f", t/p; else print "-" }')
            r2=$(awk -v t="$T" -v p="$w" 'BEGIN{ if (t > 0) printf "%.2f", p/t; else print "-" }')
        else
            r1=-; r2=-
        fi
        printf '  %-36s %7s %7s %8s %5s %11s %11s %8s %6s\n' "${LABEL[$k]}" "$w" "${CPU[$k]}" "$mib" "${RC[$k]}" "$r1" "$r2" "${INMIB[$k]}" "${OTHER[$k]}"
    done
    echo "  cpu s: user+sys of the tool; disk MiB: file system input; other: CPU seconds used by"
    echo "  every other process on the machine meanwhile (~0 when idle; more means contention)."
    echo "  cpu s, disk MiB and other are from the last run."
    if [[ $RUNS -gt 1 ]]; then
        echo "  all walls:"
        for k in "${KEYS[@]}"; do printf '    %-36s%s\n' "${LABEL[$k]}" "${WALLS[$k]}"; done
    fi
    echo
    if [[ $has_t == 1 ]]; then
        goal=$(awk -v t="$T" -v r="${WALL[rclone_hash]}" 'BEGIN{ print ((t <= 0.5*r) ? "PASS" : "MISS") }')
        printf 'Goal: treemig <= 0.5 x rclone check wall: %s (treemig %s s, 0.5 x %s s = %s s)\n' \
            "$goal" "$T" "${WALL[rclone_hash]}" "$(awk -v r="${WALL[rclone_hash]}" 'BEGIN{printf "%.2f", r/2}')"
        goal2=$(awk -v t="$T" -v r="${WALL[rclone_size]}" 'BEGIN{ print ((t <= 0.5*r) ? "PASS" : "MISS") }')
        printf '  (for reference, against rclone check --size-only: %s, 0.5 x %s s = %s s)\n' \
            "$goal2" "${WALL[rclone_size]}" "$(awk -v r="${WALL[rclone_size]}" 'BEGIN{printf "%.2f", r/2}')"
    elif [[ $SKIP_TREEMIG == 1 ]]; then
        echo "Goal: treemig <= 0.5 x rclone check wall: not measured (SKIP_TREEMIG=1)"
    else
        echo "Goal: treemig <= 0.5 x rclone check wall: MISS (treemig exited ${RC[treemig]}; see $WORK/logs/treemig.log)"
    fi
    echo
    echo "Sanity"
    if [[ $SKIP_TREEMIG != 1 ]]; then
        chk() { [[ $1 == "$2" ]] && echo ok || { FAIL=1; echo MISMATCH; }; }
        echo "  treemig phase: ${ST[phase]:-?}"
        printf '  src entries: treemig %s (files %s + folders %s), find -mindepth 1: %s  %s\n' \
            "${ST[src_entries]:-?}" "${ST[src_files]:-?}" "${ST[src_folders]:-?}" "$FIND_SRC" "$(chk "${ST[src_entries]:-?}" "$FIND_SRC")"
        printf '  dst entries: treemig %s (files %s + folders %s), find -mindepth 1: %s  %s\n' \
            "${ST[dst_entries]:-?}" "${ST[dst_files]:-?}" "${ST[dst_folders]:-?}" "$FIND_DST" "$(chk "${ST[dst_entries]:-?}" "$FIND_DST")"
        printf '  copy.pending: treemig %s, expected %s  %s\n' \
            "${ST[copy_pending]:-?}" "${G[expect_copy_pending]}" "$(chk "${ST[copy_pending]:-?}" "${G[expect_copy_pending]}")"
        printf '  copy.conflicts: treemig %s, expected %s  %s\n' \
            "${ST[copy_conflicts]:-?}" "${G[expect_conflicts]}" "$(chk "${ST[copy_conflicts]:-?}" "${G[expect_conflicts]}")"
        printf '  dst.not_on_src: treemig %s, expected %s  %s\n' \
            "${ST[not_on_src]:-?}" "${G[expect_not_on_src]}" "$(chk "${ST[not_on_src]:-?}" "${G[expect_not_on_src]}")"
        printf '  failed: src %s, dst %s; pending folders: src %s, dst %s\n' \
            "${ST[src_failed]:-?}" "${ST[dst_failed]:-?}" "${ST[src_pending]:-?}" "${ST[dst_pending]:-?}"
    else
        echo "  treemig: skipped"
    fi
    printf '  find: src %s, dst %s entries (roots excluded)\n' "$FIND_SRC" "$FIND_DST"
    echo "  rclone check --one-way:             $(rclone_summary rclone_hash)"
    echo "  rclone check --one-way --size-only: $(rclone_summary rclone_size)"
    echo "  rsync -ani: $RSYNC_NEW_FILES new files, $RSYNC_NEW_DIRS new folders, $RSYNC_CHANGED changed files, $RSYNC_DELETE deletions, $RSYNC_ATTR attribute-only"
    echo "  expected:   ${G[files_missing]} files missing, ${G[files_changed]} changed, ${G[dst_only]} dst-only"
    echo "Notes"
    echo "  rclone check hashes (MD5) both files of every pair whose sizes are equal, so it reads"
    echo "  their bytes; --size-only compares sizes only. Neither looks at mtimes; --one-way ignores"
    echo "  destination-only files. rsync -an compares size and mtime (its quick check), as treemig"
    echo "  does; a local rsync runs as 2-3 processes and the RSS shown is the largest one's."
    echo "  find: names only (d_type, no stat) and with an lstat of every node: floors, not peers."
    echo "Logs: $WORK/logs/"
} | tee "$REPORT"
# FAIL was set in a subshell of the pipe above: recompute
if [[ $SKIP_TREEMIG != 1 ]]; then
    [[ ${RC[treemig]} -eq 0 && ${ST[src_entries]:-x} == "$FIND_SRC" && ${ST[dst_entries]:-x} == "$FIND_DST" \
        && ${ST[copy_pending]:-x} == "${G[expect_copy_pending]}" && ${ST[copy_conflicts]:-x} == "${G[expect_conflicts]}" \
        && ${ST[not_on_src]:-x} == "${G[expect_not_on_src]}" ]] || FAIL=1
fi
say "report saved: $REPORT"
if [[ $KEEP_TREE == 0 ]]; then
    say "KEEP_TREE=0: removing the tree pair"
    rm -rf "$SRC" "$DST" "$WORK/tree.ok"
fi
if [[ $FAIL -ne 0 ]]; then
    say "treemig failed or its result does not match the tree (see Sanity above)"
    exit 1
fi
