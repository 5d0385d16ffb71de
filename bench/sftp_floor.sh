#!/usr/bin/env bash
# bench/sftp_floor.sh: the least CPU any SFTP client spends to move set (b)
# of bench/sftp.sh (8 files of 256 MiB) over a loopback ssh connection, in
# its parts, each measured alone (issue 13; docs/BENCHMARKS.md "The floor of
# large files over loopback"):
#   - AES-128-GCM (what both treemig's ssh and rclone negotiate) of every
#     byte: `openssl speed -evp aes-128-gcm -bytes 16384`, encrypt (up) and
#     decrypt (down), as seconds for the set's bytes;
#   - the files: reading them from the page cache (up; `dd`, 256 KiB
#     reads) or writing them into it (down; `dd` 256 KiB writes from
#     /dev/zero, whose reads cost next to nothing), CPU by GNU time;
#   - the TCP socket on 127.0.0.1: sending the bytes (up) or receiving them
#     (down), 256 KiB per call, CPU of the sending and of the receiving
#     process apart (Python, getrusage).
# The server's CPU per copy (sshd and its sessions) is measured by
# bench/sftp.sh itself (the report's "CPU s" line). The floor on 2 cores:
# wall >= (server + least client) / 2.
#
#   RUNS=3 bench/sftp_floor.sh          # BENCH_BIG_FILES, BENCH_BIG_MB, SCALE as bench/sftp.sh
set -euo pipefail
BENCH_NEEDS_TREEMIG=0
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=${BENCH_DIR:-/tmp/treemig-sftpfloor}
case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/|"") die "BENCH_DIR=$WORK is too broad: name a dedicated folder" ;; esac
mkdir -p "$WORK/logs"
LOGS=$WORK/logs
bench_init sftp_floor BENCH_DIR BENCH_BIG_FILES BENCH_BIG_MB
BIG_FILES=${BENCH_BIG_FILES:-8}
BIG_MB=${BENCH_BIG_MB:-$(scaled 256 1)}
for v in BIG_FILES BIG_MB; do [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number"; done
BYTES=$((BIG_FILES * BIG_MB * 1048576))
command -v openssl >/dev/null || die "openssl is not installed"
HEAD=$(header "the least client CPU for $BIG_FILES files of $BIG_MB MiB over loopback SFTP")

# AES-128-GCM: openssl's bytes per second in 16 KiB calls (the last column)
aes() { # -decrypt or nothing: seconds for BYTES
    local rate
    rate=$(openssl speed -seconds 2 -bytes 16384 -evp aes-128-gcm $1 2>/dev/null |
        awk '/^AES-128-GCM|^aes-128-gcm/ {v = $NF} END {sub(/k$/, "", v); print v * 1000}')
    awk -v r="$rate" -v b="$BYTES" 'BEGIN{printf "%.2f", b / r}'
}
cpu_of() { # COMMAND...: user + system seconds (GNU time)
    local tf=$LOGS/cpu.time u s
    /usr/bin/time -f '%U %S' -o "$tf" "$@" >/dev/null
    read -r u s <"$tf"
    awk -v u="$u" -v s="$s" 'BEGIN{printf "%.2f", u + s}'
}
FILES=$WORK/files
mkdir -p "$FILES"
for ((i = 0; i < BIG_FILES; i++)); do
    [[ $(stat -c %s "$FILES/f$i" 2>/dev/null || echo 0) -eq $((BIG_MB * 1048576)) ]] ||
        head -c "$((BIG_MB * 1048576))" /dev/urandom >"$FILES/f$i"
done
TCP=$WORK/tcp.py
cat >"$TCP" <<'EOF'
# python3 tcp.py BYTES: sends BYTES over 127.0.0.1 in 256 KiB calls from one
# process to another; prints "send_cpu recv_cpu" (user + system seconds)
import os, resource, socket, sys
n = int(sys.argv[1])
ls = socket.socket()
ls.bind(('127.0.0.1', 0))
ls.listen(1)
r, w = os.pipe()
if os.fork() == 0:
    c, _ = ls.accept()
    buf = bytearray(262144)
    mv = memoryview(buf)
    got = 0
    t0 = resource.getrusage(resource.RUSAGE_SELF)
    while got < n:
        k = c.recv_into(mv)
        if not k:
            break
        got += k
    t1 = resource.getrusage(resource.RUSAGE_SELF)
    os.write(w, b'%.3f' % (t1.ru_utime - t0.ru_utime + t1.ru_stime - t0.ru_stime))
    os._exit(0)
s = socket.create_connection(ls.getsockname())
data = os.urandom(262144)
t0 = resource.getrusage(resource.RUSAGE_SELF)
left = n
while left > 0:
    left -= s.send(data[:min(left, len(data))])
t1 = resource.getrusage(resource.RUSAGE_SELF)
s.close()
os.wait()
print('%.3f %s' % (t1.ru_utime - t0.ru_utime + t1.ru_stime - t0.ru_stime,
                   os.read(r, 64).decode()))
EOF
declare -A L
add() { L[$1]="${L[$1]:-} $2"; }
for ((r = 0; r < RUNS; r++)); do
    say "run $((r + 1))/$RUNS"
    add aes_enc "$(aes '')"
    add aes_dec "$(aes -decrypt)"
    cat "$FILES"/f* >/dev/null # into the page cache
    add read "$(cpu_of sh -c 'for f in "$@"; do dd if="$f" bs=256k of=/dev/null status=none; done' sh "$FILES"/f*)"
    # as in bench/sftp.sh, where each copy follows the removal of the one
    # before (rm, sync): its pages are free again, none is reclaimed from
    # the cache (a write that must reclaim costs 2-4 times as much here)
    write_set=(sh -c 'for i in $(seq "$1"); do dd if=/dev/zero of="$2/out$i" bs=256k count="$3" status=none; done'
        sh "$BIG_FILES" "$WORK" "$((BIG_MB * 4))")
    "${write_set[@]}"
    rm -f "$WORK"/out*
    sync
    add write "$(cpu_of "${write_set[@]}")"
    rm -f "$WORK"/out*
    sync
    read -r s rv < <(python3 "$TCP" "$BYTES")
    add tcp_send "$s"
    add tcp_recv "$rv"
done
m() { median_of "${L[$1]}"; }
UP=$(awk -v a="$(m aes_enc)" -v b="$(m read)" -v c="$(m tcp_send)" 'BEGIN{printf "%.2f", a + b + c}')
DOWN=$(awk -v a="$(m aes_dec)" -v b="$(m write)" -v c="$(m tcp_recv)" 'BEGIN{printf "%.2f", a + b + c}')
REPORT=$WORK/report-$(date -u +%Y%m%dT%H%M%SZ).txt
{
    echo "$HEAD"
    echo "  load at the end: $(load)"
    echo "  $BIG_FILES files of $BIG_MB MiB ($BYTES bytes); CPU s, medians of $RUNS (all values)"
    for k in aes_enc aes_dec read write tcp_send tcp_recv; do
        printf '    %-9s %6s  (%s)\n' "$k" "$(m "$k")" "${L[$k]# }"
    done
    echo "  least client, up (local -> SFTP):   aes_enc + read + tcp_send = $UP s"
    echo "  least client, down (SFTP -> local): aes_dec + write + tcp_recv = $DOWN s"
    echo "  (no SFTP framing, no MAC beyond GCM's, no process start, no key exchange)"
} | tee "$REPORT"
say "report saved: $REPORT"
