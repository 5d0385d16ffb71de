#!/usr/bin/env bash
# bench/sftp.sh: treemig with an SFTP side against rclone copy (its sftp
# backend, configured by environment variables, the same key), OpenSSH's
# sftp and scp -r, on one OpenSSH sshd on 127.0.0.1 (tests/servers/sshd.py,
# unprivileged), directly and through bench/latency_proxy (20 ms each way),
# RUNS times each in rotated order.
#
#   bench/sftp.sh                      # (a) 20,000 files in 2,000 folders, (b) 8 files of
#                                      # 256 MiB; up and down; direct and through the proxy
#   SCALE=0.05 bench/sftp.sh           # a quick check (1,000 files; 8 files of 13 MiB)
#   BENCH_SETS=big BENCH_LINKS=proxy BENCH_DIRS=up bench/sftp.sh
#
# Environment (besides RUNS, SCALE, TREEMIG: bench/lib.sh):
#   BENCH_DIR        work dir (default /tmp/treemig-sftpbench): data/, srv/ (served), logs/
#   BENCH_SETS       "small big" (default): which data sets
#   BENCH_DIRS       "up down" (default): local -> SFTP, SFTP -> local
#   BENCH_LINKS      "direct proxy" (default): loopback, or through the latency proxy
#   BENCH_DELAY_MS   the proxy's delay each way (default 20)
#   BENCH_TOOLS      the rows (default "treemig rclone rclone_same sftp scp"; sftp and scp
#                    copy one file at a time: at full size through the proxy, set (a) takes
#                    them over an hour per run)
#   BENCH_SMALL_FILES, BENCH_SMALL_FOLDERS   set (a): 20000 and 2000 x SCALE (0-4 KiB files,
#                    bench/gencopy.c, seed 42)
#   BENCH_BIG_FILES, BENCH_BIG_MB            set (b): 8 files of 256 MiB x SCALE
#   TREEMIG_WORKERS  treemig copy --workers (default: treemig's own, 16 with an SFTP side)
#   (rows treemig_ossh, treemig_libssh2: treemig as the row treemig, with
#   -o sftp-transport=openssh (the default), or =libssh2)
#   TREEMIG_B        another treemig binary (an older build, say): the row treemig_b runs
#                    it exactly as the row treemig, rotated with the others, so that a
#                    before/after comparison sees the same load
#   RCLONE_SAME      rclone --transfers for the "same number" row (default: treemig's copy
#                    workers, 16)
#
# Rows: treemig discover + copy (defaults); rclone copy with its defaults
# (--transfers 4 --checkers 8); rclone copy --transfers N --checkers N
# (N = treemig's copy workers); rclone_sync (not a default; down only): rclone
# copy with its defaults, then sync -f of the destination, the durable end
# treemig's copy has (its syncfs); sftp -b (put -rp / get -rp, OpenSSH's
# defaults: 64 requests of 32 KiB in flight); scp -rp (SFTP protocol, one
# file at a time). Every row starts from an empty destination. The first
# treemig copy of each case is checked with rsync -rlptn --itemize-changes
# --checksum (no difference allowed). The report prints each row's median
# wall and spread, the ratios to treemig, and MB/s for set (b).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=${BENCH_DIR:-/tmp/treemig-sftpbench}
case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/|"") die "BENCH_DIR=$WORK is too broad: name a dedicated folder" ;; esac
[[ $WORK = /* ]] || WORK=$PWD/$WORK
mkdir -p "$WORK/logs"
LOGS=$WORK/logs
bench_init sftp BENCH_DIR BENCH_SETS BENCH_DIRS BENCH_LINKS BENCH_TOOLS BENCH_DELAY_MS BENCH_SMALL_FILES \
    BENCH_SMALL_FOLDERS BENCH_BIG_FILES BENCH_BIG_MB TREEMIG_WORKERS RCLONE_SAME TREEMIG_B
read -r -a SETS <<<"${BENCH_SETS:-small big}"
read -r -a DIRS <<<"${BENCH_DIRS:-up down}"
read -r -a LINKS <<<"${BENCH_LINKS:-direct proxy}"
DELAY=${BENCH_DELAY_MS:-20}
SMALL_FILES=${BENCH_SMALL_FILES:-$(scaled 20000 10)}
SMALL_FOLDERS=${BENCH_SMALL_FOLDERS:-$(scaled 2000 1)}
BIG_FILES=${BENCH_BIG_FILES:-8}
BIG_MB=${BENCH_BIG_MB:-$(scaled 256 1)}
TW=${TREEMIG_WORKERS:-}
SAME=${RCLONE_SAME:-${TW:-16}}
for v in DELAY SMALL_FILES SMALL_FOLDERS BIG_FILES BIG_MB SAME; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
done
[[ -z $TW || $TW =~ ^[1-9][0-9]*$ ]] || die "TREEMIG_WORKERS must be a positive number"
PROXY_BIN=${LATENCY_PROXY:-$REPO/build/latency_proxy}
[[ -x $PROXY_BIN ]] || die "the latency proxy is not built: $PROXY_BIN (make builds it)"
for t in rclone sftp scp rsync; do command -v "$t" >/dev/null || die "$t is not installed"; done
CC=${CC:-$(command -v cc || command -v gcc)}

# ---------------------------------------------------------------- data
DATA=$WORK/data
SRV=$WORK/srv
mkdir -p "$DATA" "$SRV"
MARK="gencopy=$(sha256sum "$BENCH_LIB_DIR/gencopy.c" | cut -c1-16) small=$SMALL_FILES/$SMALL_FOLDERS big=${BIG_FILES}x${BIG_MB}"
if [[ -f $DATA/ok && $(cat "$DATA/ok") == "$MARK" ]]; then
    say "reusing the data in $DATA ($MARK)"
else
    say "making the data: $SMALL_FILES files in $SMALL_FOLDERS folders; $BIG_FILES files of $BIG_MB MiB"
    rm -rf "$DATA" "$SRV"
    mkdir -p "$DATA" "$SRV"
    "$CC" -O2 -std=c11 -o "$DATA/gencopy" "$BENCH_LIB_DIR/gencopy.c" -lm
    "$DATA/gencopy" "$DATA" "$SMALL_FILES" "$SMALL_FOLDERS" 42 >"$DATA/small.stats"
    mv "$DATA/src" "$DATA/small"
    find "$DATA/small" -type l -delete # files and folders only: scp and sftp copy no symlinks
    mkdir -p "$DATA/big"
    for ((i = 0; i < BIG_FILES; i++)); do
        head -c "$((BIG_MB * 1048576))" /dev/urandom >"$DATA/big/f$i.bin"
        touch -d "2021-01-0$((i % 9 + 1)) 12:00:0$((i % 10))" "$DATA/big/f$i.bin"
    done
    # the served copies, the sources of the "down" rows
    cp -a "$DATA/small" "$SRV/small"
    cp -a "$DATA/big" "$SRV/big"
    printf '%s\n' "$MARK" >"$DATA/ok"
fi
SMALL_BYTES=$(du -sb --apparent-size "$DATA/small" | cut -f1)
BIG_BYTES=$((BIG_FILES * BIG_MB * 1048576))

# ---------------------------------------------------------------- the server, the proxy
INFO=$WORK/sshd.json
rm -f "$INFO"
python3 "$REPO/tests/servers/sshd.py" --serve "$SRV" "$INFO" >"$LOGS/sshd.log" 2>&1 &
SSHD_PID=$!
PROXY_PID=
SCG=
cleanup() {
    trash_empty
    [[ -n $PROXY_PID ]] && kill "$PROXY_PID" 2>/dev/null || true
    kill "$SSHD_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do [[ -z $SCG ]] || rmdir "$SCG" 2>/dev/null && break; sleep 0.1; done
}
trap cleanup EXIT
for ((i = 0; i < 300; i++)); do [[ -f $INFO ]] && break; sleep 0.1; done
[[ -f $INFO ]] || die "sshd did not start (see $LOGS/sshd.log)"
j() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$INFO" "$1"; }
PORT=$(j port); SUSER=$(j user); KEY=$(j key); SUID=$(j uid); SGID=$(j gid); SPID=$(j pid)
[[ $(cat "/proc/$SPID/comm" 2>/dev/null) == sshd ]] || die "sshd's pid $SPID is not sshd"
# The server's CPU: sshd and every process it starts, ended ones included,
# from a cgroup of its own (cpuacct of cgroup v1, or cgroup v2's cpu.stat);
# without one (not root), the listening sshd's own CPU and that of the
# sessions it reaped, which misses much: a session's monitor does not wait
# for its unprivileged child, where the cipher and internal-sftp run.
for base in /sys/fs/cgroup/cpuacct /sys/fs/cgroup/unified /sys/fs/cgroup; do
    [[ -w $base/cgroup.procs && ( -f $base/cpuacct.usage || -f $base/cgroup.controllers ) ]] || continue
    if mkdir "$base/treemig-sftpbench-$$" 2>/dev/null; then
        if echo "$SPID" >"$base/treemig-sftpbench-$$/cgroup.procs" 2>/dev/null; then
            SCG=$base/treemig-sftpbench-$$; break
        fi
        rmdir "$base/treemig-sftpbench-$$"
    fi
done
srv_cpu() { # seconds
    if [[ -f $SCG/cpuacct.usage ]]; then awk '{printf "%.3f", $1 / 1e9}' "$SCG/cpuacct.usage"
    elif [[ -n $SCG ]]; then awk '$1 == "usage_usec" {printf "%.3f", $2 / 1e6}' "$SCG/cpu.stat"
    else sed 's/.*) //' "/proc/$SPID/stat" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($12 + $13 + $14 + $15) / hz}'
    fi
}
SRV_HOW=${SCG:+cgroup $SCG}
SRV_HOW=${SRV_HOW:-"no cgroup: the listener and the sessions it reaped only (an undercount)"}
say "server CPU from: $SRV_HOW"
srv_idle() { # waits (up to 10 s) until the sessions of the last command have ended
    local i
    for ((i = 0; i < 200; i++)); do
        [[ -z $(cat "/proc/$SPID/task/$SPID/children" 2>/dev/null) ]] && return 0
        sleep 0.05
    done
    say "  sshd still has sessions after 10 s: its CPU figure is short"
}
declare -A CPUL SCPUL
smeasure() { # KEY ROW COMMAND...: measure, plus the server's CPU; ROW's lists get both
    local key=$1 row=$2 t0 t1
    shift 2
    t0=$(srv_cpu)
    measure "$key" "$@"
    srv_idle
    t1=$(srv_cpu)
    SCPU[$key]=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')
    say "  $key: server (sshd) ${SCPU[$key]} cpu s"
    [[ $key == "$row" ]] || { CPUL[$key]="${CPUL[$key]:-} ${CPU[$key]}"; SCPUL[$key]="${SCPUL[$key]:-} ${SCPU[$key]}"; }
    ROWC[$row]=$(awk -v a="${ROWC[$row]:-0}" -v b="${CPU[$key]}" 'BEGIN{printf "%.2f", a + b}')
    ROWS[$row]=$(awk -v a="${ROWS[$row]:-0}" -v b="${SCPU[$key]}" 'BEGIN{printf "%.2f", a + b}')
}
declare -A SCPU ROWC ROWS
coproc PROXY { exec "$PROXY_BIN" -p 0 "127.0.0.1:$PORT" "$DELAY"; }
read -r PPORT <&"${PROXY[0]}"
KH=$WORK/known_hosts
HK=$(cut -d' ' -f1-2 "$(j host_key_pub)")
printf '[127.0.0.1]:%s %s\n[127.0.0.1]:%s %s\n' "$PORT" "$HK" "$PPORT" "$HK" >"$KH"
port_of() { [[ $1 == direct ]] && echo "$PORT" || echo "$PPORT"; }
SSHO=(-F /dev/null -i "$KEY" -o IdentitiesOnly=yes -o BatchMode=yes -o "UserKnownHostsFile=$KH"
      -o StrictHostKeyChecking=yes)
export RCLONE_CONFIG_BENCH_TYPE=sftp RCLONE_CONFIG_BENCH_HOST=127.0.0.1 \
    RCLONE_CONFIG_BENCH_USER=$SUSER RCLONE_CONFIG_BENCH_KEY_FILE=$KEY \
    RCLONE_CONFIG_BENCH_KNOWN_HOSTS_FILE=$KH RCLONE_CONFIG_BENCH_SHELL_TYPE=none
RCLONE=(rclone --config /dev/null)
unset SSH_AUTH_SOCK
TOPT=(--ssh-identity "$KEY" --ssh-known-hosts "$KH")

# ---------------------------------------------------------------- one case
read -r -a KEYS <<<"${BENCH_TOOLS:-treemig rclone rclone_same sftp scp}"
for t in "${KEYS[@]}"; do
    case $t in treemig | treemig_ossh | treemig_libssh2 | rclone | rclone_same | rclone_sync | sftp | scp) ;;
    treemig_b) [[ -x ${TREEMIG_B:-} ]] || die "the row treemig_b needs TREEMIG_B, a treemig binary" ;;
    *) die "BENCH_TOOLS: unknown row '$t'" ;;
    esac
done
declare -A LABEL=([treemig]="treemig discover + copy${TW:+ --workers $TW}"
    [treemig_b]="the same, TREEMIG_B"
    [treemig_ossh]="the same, -o sftp-transport=openssh"
    [treemig_libssh2]="the same, -o sftp-transport=libssh2"
    [rclone]="rclone copy (defaults: 4 transfers)" [rclone_same]="rclone copy --transfers $SAME"
    [rclone_sync]="rclone copy, then sync -f (durable)"
    [sftp]="sftp -b (put/get -rp)" [scp]="scp -rp")
DB=$WORK/bench.db
FAIL=0
declare -A CHECKED NFILES
src_of() { # SET DIR: the source path (local or served)
    [[ $2 == up ]] && echo "$DATA/$1" || echo "$SRV/$1"
}
dst_of() { [[ $2 == up ]] && echo "$SRV/up-$1" || echo "$WORK/down-$1"; }
prepare() { # SET DIR: an empty destination folder (the server's user owns a served one)
    local d
    d=$(dst_of "$1" "$2")
    # many small files go aside (lib.sh, discard); 8 large ones would fill the disk
    if [[ $1 == small ]]; then discard "$d"; else rm -rf "$d"; fi
    rm -rf "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"
    sync
}
run_tool() { # CASE SET DIR LINK TOOL
    local c=$1 set=$2 dir=$3 link=$4 tool=$5 port src dst url k=$1.$5 wopt=()
    # rclone_sync is the down copy's durable end only (treemig's up copy
    # leaves the server's cache to the server, as rclone does)
    [[ $tool == rclone_sync && $dir == up ]] && return 0
    port=$(port_of "$link")
    src=$(src_of "$set" "$dir")
    dst=$(dst_of "$set" "$dir")
    prepare "$set" "$dir"
    surl() { echo "sftp://$SUSER@127.0.0.1:$port$1"; }
    case $tool in
    treemig | treemig_b | treemig_ossh | treemig_libssh2)
        local bin=$TREEMIG topt=("${TOPT[@]}")
        [[ $tool == treemig_b ]] && bin=$TREEMIG_B
        [[ $tool == treemig_ossh ]] && topt+=(-o sftp-transport=openssh)
        [[ $tool == treemig_libssh2 ]] && topt+=(-o sftp-transport=libssh2)
        mkdir -p "$dst"
        [[ $dir == up ]] && chown "$SUID:$SGID" "$dst"
        [[ -n $TW ]] && wopt=(--workers "$TW")
        if [[ $dir == up ]]; then a=$src; b=$(surl "$dst"); else a=$(surl "$src"); b=$dst; fi
        smeasure "$k.discover" "$k" "$bin" discover --quiet --db "$DB" "${topt[@]}" "$a" "$b"
        smeasure "$k.copy" "$k" "$bin" copy --yes --quiet --db "$DB" "${wopt[@]}"
        WALLS[$k]="${WALLS[$k]:-} $(awk -v a="${WALLS[$k.discover]##* }" -v b="${WALLS[$k.copy]##* }" 'BEGIN{printf "%.2f", a+b}')"
        RC[$k]=$((RC[$k.discover] | RC[$k.copy]))
        local ck=$c${tool#treemig}
        if [[ -z ${CHECKED[$ck]:-} ]]; then
            local diff
            diff=$(rsync -rlptn --itemize-changes --checksum "$src/" "$dst/" | grep -v ' \./$' || true)
            if [[ -z $diff ]]; then CHECKED[$ck]="rsync -rlptn --checksum: no difference"
            else CHECKED[$ck]="DIFFERENT: $(head -3 <<<"$diff" | tr '\n' ' ')"; FAIL=1; fi
        fi ;;
    rclone | rclone_same)
        local ro=()
        [[ $tool == rclone_same ]] && ro=(--transfers "$SAME" --checkers "$SAME")
        if [[ $dir == up ]]; then a=$src; b="bench:$dst"; else a="bench:$src"; b=$dst; fi
        RCLONE_CONFIG_BENCH_PORT=$port smeasure "$k" "$k" "${RCLONE[@]}" copy --links "${ro[@]}" "$a" "$b" ;;
    rclone_sync) # down: the copy, then its files flushed to disk (sync -f of the destination's
        # file system), the durable end treemig's copy has (its syncfs)
        RCLONE_CONFIG_BENCH_PORT=$port smeasure "$k" "$k" sh -c '"$@" && sync -f "$0"' "$dst" \
            "${RCLONE[@]}" copy --links "bench:$src" "$dst" ;;
    sftp)
        if [[ $dir == up ]]; then cmd="put -rp $src $dst"; else cmd="get -rp $src $dst"; fi
        smeasure "$k" "$k" sftp "${SSHO[@]}" -P "$port" -b <(echo "$cmd") "$SUSER@127.0.0.1" ;;
    scp)
        if [[ $dir == up ]]; then a=$src; b="$SUSER@127.0.0.1:$dst"; else a="$SUSER@127.0.0.1:$src"; b=$dst; fi
        smeasure "$k" "$k" scp "${SSHO[@]}" -P "$port" -rpq "$a" "$b" ;;
    esac
    CPUL[$k]="${CPUL[$k]:-} ${ROWC[$k]}"
    SCPUL[$k]="${SCPUL[$k]:-} ${ROWS[$k]}"
    unset "ROWC[$k]" "ROWS[$k]"
    [[ ${RC[$k]} -eq 0 ]] || { say "  $k failed: see $LOGS/$k*.log"; FAIL=1; }
    NFILES[$k]=$(find "$dst" -type f 2>/dev/null | wc -l)
}

HEAD=$(header "treemig with an SFTP side: against rclone copy (sftp backend), sftp -b, scp -r on OpenSSH's sshd (loopback)")
CASES=()
for set in "${SETS[@]}"; do
    [[ $set == small || $set == big ]] || die "BENCH_SETS: small or big, not '$set'"
    for dir in "${DIRS[@]}"; do
        [[ $dir == up || $dir == down ]] || die "BENCH_DIRS: up or down, not '$dir'"
        for link in "${LINKS[@]}"; do
            [[ $link == direct || $link == proxy ]] || die "BENCH_LINKS: direct or proxy, not '$link'"
            CASES+=("$set.$dir.$link")
        done
    done
done
for c in "${CASES[@]}"; do
    IFS=. read -r set dir link <<<"$c"
    for ((r = 0; r < RUNS; r++)); do
        say "$c: run $((r + 1))/$RUNS"
        while read -r t; do run_tool "$c" "$set" "$dir" "$link" "$t"; done < <(rotate "$r" "${KEYS[@]}")
    done
    rm -rf "$(dst_of "$set" "$dir")" "$DB" "$DB-wal" "$DB-shm" "$DB.lock" "$DB.yaml"
done
trash_empty
LOAD_END=$(load)

# ---------------------------------------------------------------- report
REPORT=$WORK/report-$(date -u +%Y%m%dT%H%M%SZ).txt
{
    echo "$HEAD"
    echo "  load at the end: $LOAD_END"
    echo "  (a) small: $SMALL_FILES files in $SMALL_FOLDERS folders (bench/gencopy.c, 0-4 KiB," \
        "its symlinks removed), $((SMALL_BYTES / 1048576)) MiB; (b) big: $BIG_FILES files of $BIG_MB MiB"
    echo "  server CPU: $SRV_HOW"
    echo "  direct: 127.0.0.1; proxy: bench/latency_proxy, $DELAY ms each way"
    echo "  treemig copy workers: ${TW:-default (16)}; rclone_same: --transfers $SAME --checkers $SAME"
    [[ -n ${TREEMIG_B:-} ]] && echo "  treemig_b: $TREEMIG_B ($("$TREEMIG_B" --version 2>/dev/null | head -1))"
    for c in "${CASES[@]}"; do
        IFS=. read -r set dir link <<<"$c"
        bytes=$SMALL_BYTES
        [[ $set == big ]] && bytes=$BIG_BYTES
        echo
        echo "  $set, $( [[ $dir == up ]] && echo 'local -> SFTP' || echo 'SFTP -> local'), $link:"
        printf '    %-38s %24s %8s %5s %7s %12s\n' tool "wall s: median (min-max)" "MB/s" exit files "treemig / it"
        for t in "${KEYS[@]}"; do
            k=$c.$t
            [[ -n ${RC[$k]:-} ]] || continue # a row this case does not run (rclone_sync up)
            m=$(median "$k")
            printf '    %-38s %24s %8s %5s %7s %12s\n' "${LABEL[$t]}" "$(stat_of "$k")" \
                "$(awk -v b="$bytes" -v m="$m" 'BEGIN{ if (m > 0) printf "%.1f", b/m/1e6; else print "-" }')" \
                "${RC[$k]}" "${NFILES[$k]}" "$( [[ $t == treemig ]] && echo - || ratio "$(median "$c.treemig")" "$m")"
        done
        printf '    CPU s, medians, client + server (the tool with its children; sshd and its sessions):'
        for t in "${KEYS[@]}"; do
            [[ -n ${RC[$c.$t]:-} ]] || continue
            printf ' %s %s + %s;' "$t" "$(median_of "${CPUL[$c.$t]:-}")" "$(median_of "${SCPUL[$c.$t]:-}")"
        done
        echo
        echo "    treemig: discover $(stat_of "$c.treemig.discover"), copy $(stat_of "$c.treemig.copy")" \
            "(CPU $(median_of "${CPUL[$c.treemig.copy]:-}") + $(median_of "${SCPUL[$c.treemig.copy]:-}"));" \
            "${CHECKED[$c]:-not checked}"
        for b in b ossh; do
            [[ -n ${WALLS[$c.treemig_$b]:-} ]] || continue
            echo "    treemig_$b: discover $(stat_of "$c.treemig_$b.discover"), copy" \
                "$(stat_of "$c.treemig_$b.copy") (CPU $(median_of "${CPUL[$c.treemig_$b.copy]:-}") +" \
                "$(median_of "${SCPUL[$c.treemig_$b.copy]:-}")); ${CHECKED[${c}_$b]:-not checked}"
        done
    done
    echo
    echo "  treemig / it: treemig's median wall (discover + copy: a migration cannot copy"
    echo "  without discovering) divided by the row's. rclone, sftp and scp keep mtimes (rclone"
    echo "  folder mtimes not), and write directly to the real names; treemig writes each file"
    echo "  to a temporary and renames it (atomic), and records every node in its state file."
    echo "Logs: $LOGS"
} | tee "$REPORT"
say "report saved: $REPORT"
[[ $FAIL -eq 0 ]] || { say "a tool failed or treemig's copy differs (see the report)"; exit 1; }
