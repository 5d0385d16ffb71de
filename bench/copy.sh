#!/usr/bin/env bash
# bench/copy.sh: time `treemig discover` + `treemig copy` against cp -a, rsync -a
# and rclone copy, each copying the same source tree into an empty destination.
#
#   bench/copy.sh                                   # 200,000 files in 100,000 folders
#   BENCH_FILES=20000 BENCH_FOLDERS=10000 bench/copy.sh   # a smaller tree
#
# Environment:
#   BENCH_DIR      work dir (default /tmp/treemig-copybench): src/, dst/, state file, logs/
#   BENCH_FILES    files in the source tree (default 200000; 0-4 KiB, skewed small)
#   BENCH_FOLDERS  folders in the source tree (default 100000)
#   BENCH_SEED     generator seed (default 42)
#   TREEMIG        treemig binary (default <repo>/build/treemig)
#   KEEP_TREE      0: delete the source tree at the end (default 1: reused by the next run)
#
# Each tool copies SRC into an empty DST (the same path for every tool, deleted
# between runs), timed with /usr/bin/time -f '%e %M' (wall seconds, peak RSS KiB).
# Before each run: the previous destination is deleted, `sync`, the page cache is
# dropped when that works (echo 3 > /proc/sys/vm/drop_caches), then a `find` over
# the source warms the metadata caches. Prints a report (also saved in BENCH_DIR).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORK=${BENCH_DIR:-/tmp/treemig-copybench}
FILES=${BENCH_FILES:-200000}
FOLDERS=${BENCH_FOLDERS:-100000}
SEED=${BENCH_SEED:-42}
TREEMIG=${TREEMIG:-$REPO/build/treemig}
KEEP_TREE=${KEEP_TREE:-1}

say() { printf '[bench] %s\n' "$*" >&2; }
die() { printf 'bench/copy.sh: %s\n' "$*" >&2; exit 2; }

[[ $FILES =~ ^[0-9]+$ && $FILES -ge 10 ]] || die "BENCH_FILES must be an integer >= 10 (got '$FILES')"
[[ $FOLDERS =~ ^[0-9]+$ && $FOLDERS -ge 1 ]] || die "BENCH_FOLDERS must be an integer >= 1 (got '$FOLDERS')"
[[ $SEED =~ ^[0-9]+$ ]] || die "BENCH_SEED must be an integer (got '$SEED')"
case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/|"") die "BENCH_DIR=$WORK is too broad: name a dedicated folder" ;; esac
[[ $WORK = /* ]] || WORK=$PWD/$WORK

# ---------------------------------------------------------------- 1. tools
install_missing() {
    local need=()
    command -v rclone >/dev/null 2>&1 || need+=(rclone)
    command -v rsync >/dev/null 2>&1 || need+=(rsync)
    [[ -x /usr/bin/time ]] || need+=(time)
    command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
    command -v diff >/dev/null 2>&1 || need+=(diffutils)
    command -v find >/dev/null 2>&1 || need+=(findutils)
    ((${#need[@]})) || return 0
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing ${need[*]}, not root and no sudo"
        sudo=(sudo)
    fi
    say "installing: ${need[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
}
install_missing
CC=${CC:-$(command -v cc || command -v gcc)}
[[ -x $TREEMIG ]] || die "treemig binary not found or not executable: $TREEMIG
  build it first:   (cd $REPO && make)
  or point at one:  TREEMIG=/path/to/treemig $0"
TREEMIG=$(cd "$(dirname "$TREEMIG")" && pwd)/$(basename "$TREEMIG")

mkdir -p "$WORK/logs"
SRC=$WORK/src
DST=$WORK/dst
DB=$WORK/copy.db

# ---------------------------------------------------------------- 2. the source tree
# A small generator in C (bench/gentree.c builds a discover *pair* with a fixed
# folder/file ratio; this one builds one tree with the counts asked for).
cat >"$WORK/gencopy.c" <<'EOF'
/* gencopy OUTDIR FILES FOLDERS SEED: OUTDIR/src with FOLDERS folders (a random
 * recursive tree: parents drawn among the earlier folders with a skew towards
 * recent ones, so depths vary up to a few dozen) and FILES files spread over
 * them with a skew (a few crowded folders), 0-4096 bytes (skewed small),
 * random mtimes with nanoseconds, mostly 0644 (some 0600 and 0755); 0.5% of
 * the files are symlinks to a sibling; 1% of the names hold spaces, 0.5%
 * UTF-8. Deterministic for given arguments. Prints key=value statistics. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t s;
static uint64_t rnd(void) { s ^= s >> 12; s ^= s << 25; s ^= s >> 27; return s * 2685821657736338717ULL; }
static double urand(void) { return (rnd() >> 11) * (1.0 / 9007199254740992.0); }
static void die(const char *w, const char *p) { fprintf(stderr, "gencopy: %s %s: %s\n", w, p, strerror(errno)); exit(1); }
static struct timespec rtime(void) {
    struct timespec t = {1546300800 + (int64_t)(rnd() % (5LL * 365 * 86400)), (long)(rnd() % 1000000000)};
    return t;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: gencopy OUTDIR FILES FOLDERS SEED\n"); return 2; }
    long nfiles = atol(argv[2]), nfold = atol(argv[3]) + 1; /* + the root */
    s = strtoull(argv[4], NULL, 10) * 0x9E3779B97F4A7C15ULL + 1;
    char **path = calloc((size_t)nfold, sizeof *path);
    int *depth = calloc((size_t)nfold, sizeof *depth);
    char *p = malloc(16384), data[8192];
    for (int i = 0; i < (int)sizeof data; i++) data[i] = "abcdefghijklmnopqrstuvwxyz0123456789 \n"[i % 38];
    if (!path || !depth || !p) die("calloc", "");
    snprintf(p, 16384, "%s/src", argv[1]);
    if (mkdir(p, 0755) != 0) die("mkdir", p);
    path[0] = strdup(p);
    int maxd = 0;
    for (long i = 1; i < nfold; i++) {
        double u = urand();
        long par = (long)(i * (1.0 - u * u * u)); /* skew towards recent: deeper trees */
        if (par >= i) par = i - 1;
        uint64_t r = rnd() % 1000;
        char name[64];
        if (r < 10) snprintf(name, sizeof name, "dir %ld copy", i);
        else if (r < 15) snprintf(name, sizeof name, "r\xc3\xa9pertoire_%ld", i);
        else snprintf(name, sizeof name, "dir_%ld", i);
        if (depth[par] >= 40) par = 0; /* keep paths well below PATH_MAX */
        snprintf(p, 16384, "%s/%s", path[par], name);
        if (mkdir(p, 0755) != 0) die("mkdir", p);
        path[i] = strdup(p);
        depth[i] = depth[par] + 1;
        if (depth[i] > maxd) maxd = depth[i];
    }
    long links = 0;
    long long bytes = 0;
    for (long k = 0; k < nfiles; k++) {
        double u = urand();
        long f = (long)(nfold * u * sqrt(u)); /* skewed: early folders get more */
        if (f >= nfold) f = nfold - 1;
        uint64_t r = rnd() % 1000;
        char name[64];
        if (r < 10) snprintf(name, sizeof name, "file %ld (1).txt", k);
        else if (r < 15) snprintf(name, sizeof name, "\xc3\xa9t\xc3\xa9_%ld.dat", k);
        else snprintf(name, sizeof name, "file_%ld.txt", k);
        snprintf(p, 16384, "%s/%s", path[f], name);
        struct timespec ts[2];
        ts[0] = ts[1] = rtime();
        if (rnd() % 1000 < 5 && k > 0) {
            char target[64];
            snprintf(target, sizeof target, "file_%ld.txt", k - 1);
            if (symlink(target, p) != 0) die("symlink", p);
            if (utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW) != 0) die("utimensat", p);
            links++;
            continue;
        }
        double v = urand();
        size_t size = (size_t)(v * v * 4097);
        if (size > 4096) size = 4096;
        uint64_t m = rnd() % 100;
        mode_t mode = m < 2 ? 0600 : m < 3 ? 0755 : 0644;
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd < 0) die("open", p);
        if (size && write(fd, data + (k % 64), size) != (ssize_t)size) die("write", p);
        if (fchmod(fd, mode) != 0 || futimens(fd, ts) != 0) die("futimens", p);
        if (close(fd) != 0) die("close", p);
        bytes += (long long)size;
    }
    for (long i = nfold - 1; i >= 1; i--) { /* children before parents */
        struct timespec ts[2];
        ts[0] = ts[1] = rtime();
        if (utimensat(AT_FDCWD, path[i], ts, 0) != 0) die("utimensat", path[i]);
    }
    printf("folders=%ld\nfiles=%ld\nsymlinks=%ld\nbytes=%lld\nmax_depth=%d\n", nfold - 1,
           nfiles - links, links, bytes, maxd);
    return 0;
}
EOF
GEN_HASH=$(sha256sum "$WORK/gencopy.c" | cut -c1-16)
MARK="gencopy=$GEN_HASH files=$FILES folders=$FOLDERS seed=$SEED"
GEN_SECONDS=reused
if [[ -f $WORK/tree.ok && $(cat "$WORK/tree.ok") == "$MARK" && -d $SRC && -f $WORK/tree.stats ]]; then
    say "reusing the source tree in $WORK ($MARK)"
else
    say "building a source tree of $FILES files in $FOLDERS folders in $WORK"
    rm -f "$WORK/tree.ok" "$WORK/tree.stats"
    rm -rf "$SRC"
    "$CC" -O2 -std=c11 -o "$WORK/gencopy" "$WORK/gencopy.c" -lm
    t0=$(date +%s.%N)
    "$WORK/gencopy" "$WORK" "$FILES" "$FOLDERS" "$SEED" >"$WORK/tree.stats.tmp"
    t1=$(date +%s.%N)
    GEN_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
    mv "$WORK/tree.stats.tmp" "$WORK/tree.stats"
    printf '%s\n' "$MARK" >"$WORK/tree.ok"
    say "source tree built in ${GEN_SECONDS} s"
fi
declare -A G
while IFS='=' read -r k v; do G[$k]=$v; done <"$WORK/tree.stats"
SRC_BYTES=$(du -sb "$SRC" | cut -f1)
SRC_ENTRIES=$(find "$SRC" -mindepth 1 | wc -l)
SRC_EMPTY=$(find "$SRC" -mindepth 1 -type d -empty | wc -l)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- 3. timed runs
CACHES=unknown
prepare() { # empty destination, flushed and (when possible) cold page cache, warm metadata
    rm -rf "$DST" "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"
    sync
    if { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        CACHES=dropped
    else
        CACHES=warm
    fi
    find "$SRC" -printf '%s %T@\n' >/dev/null
}
declare -A WALL RSS RC SYNC
measure() { # KEY CMD...: /usr/bin/time -f '%e %M'; then the time a `sync` takes afterwards
    local key=$1; shift
    local tf=$WORK/logs/$key.time rc=0 w m t0 t1
    /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$WORK/logs/$key.log" 2>&1 || rc=$?
    read -r w m < <(tail -n 1 "$tf")
    t0=$(date +%s.%N); sync; t1=$(date +%s.%N)
    WALL[$key]=$w; RSS[$key]=$m; RC[$key]=$rc
    SYNC[$key]=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
    say "  $key: $w s wall, $m KiB peak RSS, exit $rc; a sync afterwards took ${SYNC[$key]} s"
}
count_dst() { find "$DST" -mindepth 1 | wc -l; }
declare -A DSTN

RCLONE=(rclone --config "$WORK/rclone.conf")
: >"$WORK/rclone.conf"

say "treemig: discover + copy"
prepare
mkdir "$DST"
measure tm_discover "$TREEMIG" discover --quiet --db "$DB" "$SRC" "$DST"
measure tm_copy "$TREEMIG" copy --yes --quiet --db "$DB"
DSTN[treemig]=$(count_dst)
# check the result (not timed): contents, then type/mode/mtime/size of every node
VERIFY_DIFF=ok
diff -r --no-dereference -q "$SRC" "$DST" >"$WORK/logs/diff.log" 2>&1 || VERIFY_DIFF="DIFFERENT ($(wc -l <"$WORK/logs/diff.log") lines, see logs/diff.log)"
listing() { (cd "$1" && find . -mindepth 1 -printf '%P\t%y\t%m\t%T@\t%s\t%l\n' | LC_ALL=C sort); }
listing "$SRC" >"$WORK/logs/src.list"
listing "$DST" >"$WORK/logs/dst.list"
VERIFY_META=ok
cmp -s "$WORK/logs/src.list" "$WORK/logs/dst.list" || VERIFY_META="DIFFERENT ($(diff "$WORK/logs/src.list" "$WORK/logs/dst.list" | grep -c '^[<>]') lines differ, see logs/*.list)"
DST_BYTES=$(du -sb "$DST" | cut -f1)
TM_VERIFY_RC=0
"$TREEMIG" verify --quiet --db "$DB" >"$WORK/logs/tm_verify.log" 2>&1 || TM_VERIFY_RC=$?
TM_STATUS=$("$TREEMIG" status --json --db "$DB" 2>&1 | tr -d '\n' | grep -oE '"phase":"[a-z-]*"|"copy":\{[^}]*\}' | tr '\n' ' ' || true)

say "cp -a"
prepare
measure cp cp -a "$SRC" "$DST"
DSTN[cp]=$(count_dst)

say "rsync -a"
prepare
measure rsync rsync -a "$SRC/" "$DST/"
DSTN[rsync]=$(count_dst)

say "rclone copy --links (defaults: --checkers 8 --transfers 4)"
prepare
mkdir "$DST"
measure rclone "${RCLONE[@]}" copy --links "$SRC" "$DST"
DSTN[rclone]=$(count_dst)
rm -rf "$DST" "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"

# ---------------------------------------------------------------- 4. report
r2() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "-" }'; }
add() { awk -v a="$1" -v b="$2" 'BEGIN{ printf "%.2f", a+b }'; }
TOTAL=$(add "${WALL[tm_discover]}" "${WALL[tm_copy]}")
TM_RSS=$((RSS[tm_discover] > RSS[tm_copy] ? RSS[tm_discover] : RSS[tm_copy]))
REPORT=$WORK/report-$(date -u +%Y%m%dT%H%M%SZ).txt
{
    echo "treemig copy benchmark ($(date -u '+%Y-%m-%d %H:%M:%S UTC'))"
    echo
    echo "Machine"
    echo "  cpus:      $(nproc) x$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2)"
    echo "  memory:    $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "  kernel:    $(uname -sr)"
    echo "  load avg:  $LOAD_START before the runs, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
    echo "  work dir:  $WORK"
    df -T "$WORK" | sed 's/^/    /'
    echo "Versions"
    echo "  treemig:   $("$TREEMIG" --version 2>/dev/null | head -1) (git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" status --porcelain 2>/dev/null | grep -q . && echo ', dirty tree')) $TREEMIG"
    echo "  cp:        $(cp --version | head -1)"
    echo "  rsync:     $(rsync --version | head -1 | sed 's/  */ /g')"
    echo "  rclone:    $(rclone version 2>/dev/null | head -1)"
    echo "Source tree (generated by gencopy.c, seed $SEED; generation: ${GEN_SECONDS}$([[ $GEN_SECONDS != reused ]] && echo ' s'))"
    echo "  ${G[files]} files + ${G[symlinks]} symlinks in ${G[folders]} folders ($SRC_EMPTY empty), $SRC_ENTRIES entries, depth <= ${G[max_depth]}"
    echo "  files 0-4096 B: $((G[bytes] / 1048576)) MiB in files; du -sb $((SRC_BYTES / 1048576)) MiB (folders count 4 KiB each)"
    echo "Caches"
    if [[ $CACHES == dropped ]]; then
        echo "  before each run: destination deleted, sync, page cache dropped (echo 3 > drop_caches),"
        echo "  then find over the source: metadata warm, file contents read cold from disk by every tool."
    else
        echo "  before each run: destination deleted, sync; dropping the page cache did not work here,"
        echo "  so caches are WARM (a find over the source ran first)."
    fi
    echo
    echo "Results (one run each, into an empty destination)"
    printf '  %-34s %8s %10s %6s %8s %12s %12s %9s\n' tool "wall s" "RSS MiB" exit "sync s" "tm/it wall" "tm/it RSS" "dst nodes"
    printf '  %-34s %8s %10s %6s %8s %12s %12s %9s\n' ---------------------------------- ------ ------- ---- ------ ---------- --------- ---------
    row() { # label wall rss rc sync ratio_wall ratio_rss nodes
        printf '  %-34s %8s %10s %6s %8s %12s %12s %9s\n' "$1" "$2" "$(awk -v m="$3" 'BEGIN{printf "%.1f", m/1024}')" "$4" "$5" "$6" "$7" "$8"
    }
    row "treemig discover" "${WALL[tm_discover]}" "${RSS[tm_discover]}" "${RC[tm_discover]}" "${SYNC[tm_discover]}" - - -
    row "treemig copy --yes --quiet" "${WALL[tm_copy]}" "${RSS[tm_copy]}" "${RC[tm_copy]}" "${SYNC[tm_copy]}" - - "${DSTN[treemig]}"
    row "treemig discover + copy" "$TOTAL" "$TM_RSS" - - - - "${DSTN[treemig]}"
    row "cp -a" "${WALL[cp]}" "${RSS[cp]}" "${RC[cp]}" "${SYNC[cp]}" "$(r2 "$TOTAL" "${WALL[cp]}")" "$(r2 "$TM_RSS" "${RSS[cp]}")" "${DSTN[cp]}"
    row "rsync -a" "${WALL[rsync]}" "${RSS[rsync]}" "${RC[rsync]}" "${SYNC[rsync]}" "$(r2 "$TOTAL" "${WALL[rsync]}")" "$(r2 "$TM_RSS" "${RSS[rsync]}")" "${DSTN[rsync]}"
    row "rclone copy --links" "${WALL[rclone]}" "${RSS[rclone]}" "${RC[rclone]}" "${SYNC[rclone]}" "$(r2 "$TOTAL" "${WALL[rclone]}")" "$(r2 "$TM_RSS" "${RSS[rclone]}")" "${DSTN[rclone]}"
    echo "  tm/it: treemig (discover + copy; RSS: the larger of the two) divided by the peer."
    echo "  The same ratios for the copy alone (treemig copy ${WALL[tm_copy]} s):"
    echo "    cp -a $(r2 "${WALL[tm_copy]}" "${WALL[cp]}"), rsync -a $(r2 "${WALL[tm_copy]}" "${WALL[rsync]}"), rclone copy $(r2 "${WALL[tm_copy]}" "${WALL[rclone]}")"
    echo "  sync s: how long a sync right after the run took. treemig copy syncs the destination"
    echo "  (syncfs) before it records the copy complete, so its wall includes writing the data to"
    echo "  disk; the peers leave that to the kernel: wall + sync is the fairer comparison:"
    echo "    treemig $(add "$TOTAL" "${SYNC[tm_copy]}"), cp -a $(add "${WALL[cp]}" "${SYNC[cp]}"), rsync -a $(add "${WALL[rsync]}" "${SYNC[rsync]}"), rclone $(add "${WALL[rclone]}" "${SYNC[rclone]}")"
    echo "  RSS: /usr/bin/time %M, the largest single process (rsync runs as 2-3 processes)."
    echo
    echo "Goals (treemig = discover + copy, $TOTAL s; the copy alone: ${WALL[tm_copy]} s)"
    g() { awk -v t="$1" -v p="$2" -v op="$3" 'BEGIN{ ok = (op == "lt") ? (t < p) : (t <= p); print (ok ? "PASS" : "MISS") }'; }
    printf '  treemig copy faster than rsync:   %s (%s s vs %s s; copy alone: %s)\n' "$(g "$TOTAL" "${WALL[rsync]}" lt)" "$TOTAL" "${WALL[rsync]}" "$(g "${WALL[tm_copy]}" "${WALL[rsync]}" lt)"
    printf '  treemig copy faster than rclone:  %s (%s s vs %s s; copy alone: %s)\n' "$(g "$TOTAL" "${WALL[rclone]}" lt)" "$TOTAL" "${WALL[rclone]}" "$(g "${WALL[tm_copy]}" "${WALL[rclone]}" lt)"
    printf '  treemig copy no slower than cp -a: %s (%s s vs %s s; copy alone: %s)\n' "$(g "$TOTAL" "${WALL[cp]}" le)" "$TOTAL" "${WALL[cp]}" "$(g "${WALL[tm_copy]}" "${WALL[cp]}" le)"
    echo "  The goal lines use discover + copy: a migration cannot copy without discovering."
    echo
    echo "Result of the treemig copy"
    echo "  diff -r --no-dereference -q SRC DST:                 $VERIFY_DIFF"
    echo "  find -printf 'path type mode mtime size target':  $VERIFY_META"
    echo "  entries: source $SRC_ENTRIES, destination ${DSTN[treemig]}; bytes (du -sb): source $SRC_BYTES, destination $DST_BYTES"
    echo "  treemig verify: exit $TM_VERIFY_RC"
    echo "  treemig status --json: $TM_STATUS"
    echo "Notes"
    echo "  treemig runs with its defaults: discover 4 workers per side, copy 8 threads (twice that)."
    echo "  rclone runs with its defaults (--checkers 8 --transfers 4); --links copies symlinks as"
    echo "  symlinks. rclone keeps file mtimes but not permission bits nor folder mtimes, and"
    echo "  creates no empty folder without --create-empty-src-dirs (hence its lower node count)."
    echo "  cp -a and rsync -a keep modes, mtimes (ns for cp; rsync too on Linux) and symlinks."
    echo "  Each tool's destination was counted (find -mindepth 1) right after its run."
    echo "Logs: $WORK/logs/"
} | tee "$REPORT"
say "report saved: $REPORT"
if [[ $KEEP_TREE == 0 ]]; then
    say "KEEP_TREE=0: removing the source tree"
    rm -rf "$SRC" "$WORK/tree.ok"
fi
FAIL=0
[[ ${RC[tm_discover]} -eq 0 && ${RC[tm_copy]} -eq 0 && $VERIFY_DIFF == ok && $VERIFY_META == ok ]] || FAIL=1
if [[ $FAIL -ne 0 ]]; then
    say "treemig failed or its copy differs from the source (see the report)"
    exit 1
fi
