# bench/lib.sh: what every benchmark script shares; sourced, not run.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_init NAME VAR...   checks and installs what the benches need
#                            (scripts/deps.sh bench), reads RUNS and SCALE,
#                            finds the treemig binary; VAR... are the
#                            script's own settings, printed in its command
#   scaled N [MIN]           N x SCALE, rounded, at least MIN (default 1)
#   scaled_fanout F DEPTH    the folders= of a smaller sim shape (SCALE < 1)
#   measure KEY CMD...       runs CMD once under /usr/bin/time: appends the
#                            wall seconds to WALLS[KEY]; keeps the largest
#                            peak RSS (RSS[KEY], KiB), the last exit code
#                            (RC[KEY]), CPU seconds (CPU[KEY]) and the CPU
#                            seconds other processes used meanwhile
#                            (OTHER[KEY]); output in $LOGS/KEY.log
#   rotate ROUND KEY...      the keys in the order of round ROUND (rotated
#                            by ROUND: over RUNS rounds each tool takes each
#                            place, so that a warm cache or a busy minute
#                            does not favour one tool)
#   median|spread|stat KEY   of WALLS[KEY]: the median; "min-max"; both
#   ratio A B                A / B with 2 decimals ("-" when B is 0)
#   header TITLE             the report's head: title, the exact command,
#                            machine (nproc, RAM, CPU, kernel, OS), date,
#                            git commit, load average
#   load                     the load average now (1, 5, 15 min)
#   tree_pair WORK ENTRIES SEED  the local tree pair of discover.sh in
#                            WORK/src and WORK/dst (bench/gentree.c), made
#                            or reused (WORK/tree.ok marks what it holds);
#                            WORK/tree.stats has gentree's counts
#
# Every script runs each tool RUNS times (default 3) and reports the median
# and the spread (min-max) of the walls and the ratios of the medians.
# SCALE (default 1) multiplies the sizes of every script's default data
# (SCALE=0.05 for a quick run that only shows the scripts work).
# shellcheck shell=bash

BENCH_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_LIB_DIR/.." && pwd)
declare -A WALLS RSS RC CPU OTHER

say() { printf '[%s] %s\n' "${BENCH_NAME:-bench}" "$*" >&2; }
die() { printf 'bench/%s: %s\n' "${BENCH_NAME:-bench}" "$*" >&2; exit 2; }

bench_init() {
    BENCH_NAME=$1
    shift
    BENCH_VARS=(SCALE RUNS "$@")
    RUNS=${RUNS:-3}
    SCALE=${SCALE:-1}
    [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer (got '$RUNS')"
    [[ $SCALE =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] && awk -v s="$SCALE" 'BEGIN{exit !(s > 0)}' ||
        die "SCALE must be a positive number (got '$SCALE')"
    "$REPO/scripts/deps.sh" bench || die "cannot install the packages the benchmarks need"
    [[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian package time)"
    TREEMIG=${TREEMIG:-$REPO/build/treemig}
    if [[ ${BENCH_NEEDS_TREEMIG:-1} == 1 ]]; then
        [[ -x $TREEMIG ]] || die "treemig binary not found: $TREEMIG
  build it first:   (cd $REPO && make)
  or point at one:  TREEMIG=/path/to/treemig $0"
        TREEMIG=$(cd "$(dirname "$TREEMIG")" && pwd)/$(basename "$TREEMIG")
    fi
    LOGS=${LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/treemig-$BENCH_NAME-logs.XXXXXX")}
    mkdir -p "$LOGS"
}

scaled() {
    awk -v n="$1" -v s="$SCALE" -v m="${2:-1}" 'BEGIN{v = int(n * s + 0.5); print (v < m ? m : v)}'
}

# scaled_fanout F DEPTH: folders=F x SCALE^(1/DEPTH) (at least 2), the
# fan-out of a smaller sim shape of DEPTH levels; the node count of a shape
# with decay= and tail= falls faster than SCALE: the reports print it
scaled_fanout() {
    awk -v f="$1" -v d="$2" -v s="$SCALE" 'BEGIN{v = int(f * exp(log(s) / d) + 0.5); print (v < 2 ? 2 : v)}'
}

load() { cut -d' ' -f1-3 /proc/loadavg; }

busy_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9}' /proc/stat; }

measure() {
    local key=$1 tf rc=0 w m u s b0 b1
    shift
    tf=$LOGS/$key.time
    b0=$(busy_ticks)
    /usr/bin/time -f '%e %M %U %S' -o "$tf" \
        timeout -k 10 "${BENCH_TIMEOUT:-3600}" "$@" >"$LOGS/$key.log" 2>&1 </dev/null || rc=$?
    b1=$(busy_ticks)
    # GNU time writes "Command exited with non-zero status N" before the numbers
    read -r w m u s < <(tail -n 1 "$tf")
    WALLS[$key]="${WALLS[$key]:-} $w"
    if [[ -z ${RSS[$key]:-} || $m -gt ${RSS[$key]} ]]; then RSS[$key]=$m; fi
    CPU[$key]=$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.2f", u+s}')
    OTHER[$key]=$(awk -v b0="$b0" -v b1="$b1" -v c="${CPU[$key]}" -v hz="$(getconf CLK_TCK)" \
        'BEGIN{o = (b1-b0)/hz - c; if (o < 0) o = 0; printf "%.1f", o}')
    RC[$key]=$rc
    say "  $key: $w s wall, ${CPU[$key]} s cpu, $m KiB peak RSS, exit $rc; other processes: ${OTHER[$key]} cpu s"
    return 0
}

# discard DIR...: a run's output put out of the way before the next run:
# renamed into .bench-trash beside it, which trash_empty deletes once the
# runs are over. A tree deleted just before a run slows that run's file
# creations: ext4 passes over every inode deleted in the last 60 s (6
# minutes while its table block is dirty), reading that block for each
# (fs/ext4/ialloc.c, recently_deleted). 20,000 small files deleted between
# two uploads of them took sshd's CPU for the second from 4.5 s to 15 s
# (perf: find_inode_bit and recently_deleted), whatever the tool.
BENCH_TRASH=()
discard() {
    local d t
    for d in "$@"; do
        [[ -e $d || -L $d ]] || continue
        t=$(dirname "$d")/.bench-trash
        mkdir -p "$t" || die "cannot make $t"
        mv "$d" "$(mktemp -d "$t/run.XXXXXX")/" || die "cannot move $d into $t"
        [[ " ${BENCH_TRASH[*]} " == *" $t "* ]] || BENCH_TRASH+=("$t")
    done
}
# Deletes what discard put aside, syncs (the inode tables clean: 60 s,
# not 6 minutes), and waits those 60 s (BENCH_TRASH_WAIT), so that a
# script run right after this one does not pay for them in its first run
# (seen: 9.3 s against 4.8-5.0 s for the next three).
trash_empty() {
    local t
    [[ ${#BENCH_TRASH[@]} -gt 0 ]] || return 0
    for t in "${BENCH_TRASH[@]}"; do rm -rf "$t"; done
    BENCH_TRASH=()
    sync
    say "waiting ${BENCH_TRASH_WAIT:-60} s: ext4 passes over the inodes just deleted for that long"
    sleep "${BENCH_TRASH_WAIT:-60}"
}

rotate() {
    local r=$1
    shift
    local n=$# i
    local keys=("$@")
    for ((i = 0; i < n; i++)); do
        printf '%s\n' "${keys[$(((i + r) % n))]}"
    done
}

_sorted() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g; }
median() { median_of "${WALLS[$1]:-}"; }
median_of() { # the median of a list of numbers (one string, blanks between)
    _sorted "$1" | awk '{a[NR]=$1} END{if (!NR) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'
}
spread() { _sorted "${WALLS[$1]:-}" | awk 'NR==1{lo=$1} {hi=$1} END{if (NR) print lo "-" hi; else print "-"}'; }
stat_of() { printf '%s (%s)' "$(median "$1")" "$(spread "$1")"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b + 0 > 0 && a != "-") printf "%.2f", a/b; else print "-" }'; }

bench_command() {
    local v out=()
    for v in "${BENCH_VARS[@]}"; do
        if [[ -n ${!v+x} && -n ${!v} ]]; then
            if [[ ${!v} =~ [[:space:]] ]]; then out+=("$v='${!v}'"); else out+=("$v=${!v}"); fi
        fi
    done
    printf '%s%s' "${out:+${out[*]} }" "bench/$BENCH_NAME.sh"
}

header() {
    echo "$1"
    echo "  command:  $(bench_command)"
    echo "  date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "  machine:  nproc $(nproc),$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/  */ /g'), RAM $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}")"
    echo "  treemig:  git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" status --porcelain 2>/dev/null | grep -q . && echo ' (dirty tree)'), binary ${TREEMIG:-none}"
    echo "  load:     $(load) (1, 5, 15 min) at the start; runs per tool: $RUNS, order rotated each run"
}

tree_pair() {
    local work=$1 entries=$2 seed=$3 mark cc
    mark="gentree=$(sha256sum "$BENCH_LIB_DIR/gentree.c" | cut -c1-16) entries=$entries seed=$seed"
    if [[ -f $work/tree.ok && $(cat "$work/tree.ok") == "$mark" && -d $work/src &&
          -d $work/dst && -f $work/tree.stats ]]; then
        say "reusing the tree pair in $work ($mark)"
        return 0
    fi
    say "building a tree pair of $entries entries per side in $work"
    mkdir -p "$work"
    rm -f "$work/tree.ok" "$work/tree.stats"
    rm -rf "$work/src" "$work/dst"
    cc=${CC:-$(command -v cc || command -v gcc)}
    "$cc" -O2 -std=c11 -o "$work/gentree" "$BENCH_LIB_DIR/gentree.c" -lm
    "$work/gentree" "$work" "$entries" "$seed" >"$work/tree.stats.tmp"
    mv "$work/tree.stats.tmp" "$work/tree.stats"
    printf '%s\n' "$mark" >"$work/tree.ok"
}
