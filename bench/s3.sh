#!/usr/bin/env bash
# bench/s3.sh: a local tree into an S3 bucket, treemig (discover + copy)
# against `rclone copy` (its s3 backend configured by environment
# variables, with its defaults and with treemig's concurrency) and
# `aws s3 sync`, same server, same credentials, RUNS times each in rotated
# order; then the discovery of the bucket against the local tree, treemig
# against `rclone check --size-only` (treemig with its defaults, which
# read rclone's metadata: mtime, mode; with `--size-only`, the same work as
# rclone's; and with `-o s3-server-modtime`). Each case directly and
# through bench/latency_proxy (20 ms each way). The first run of each row
# also reports the requests fake_s3 counted and the CPU seconds it used.
#
#   bench/s3.sh                       # (a) 20,000 files in 2,000 folders, (b) 4 x 256 MiB
#   SCALE=0.05 bench/s3.sh            # 1,000 files in 100 folders, 4 x 16 MiB: a quick run
#   S3_CASES=big LATENCY_MS=0 bench/s3.sh
#
# Environment (besides RUNS, SCALE, TREEMIG: bench/lib.sh):
#   BENCH_DIR     work dir (default /tmp/treemig-s3bench): trees, server data, logs, reports
#   S3_SERVER     fake (default: tests/servers/fake_s3.py, in memory) or s3rver (npm's
#                 s3rver 3.7.1, installed into BENCH_DIR/npm on first use; on disk)
#   S3_CASES      which of small, big, discover to run (default "small big discover";
#                 with s3rver "small big")
#   LATENCY_MS    delays one way through latency_proxy, one series each (default "0 20";
#                 0: the server directly)
#   S3_WORKERS    the concurrency of rclone's second row (--transfers and --checkers);
#                 default 64, what treemig's copy runs with (twice discovery's 32)
#   S3_DISC_FILES the objects of the discover case's bucket (default: the small set's
#                 files, 20,000 x SCALE), in a tenth as many folders (a tree of its own
#                 when it is not the small set's count; S3_DISC_FILES=200000: issue 14's goal)
#   S3_DISC_TOOLS the rows of the discover case (default "tm_disc tm_disc_so tm_disc_smt
#                 rc_check", and tm_disc_b with TREEMIG_B); a large bucket's HEADs take
#                 fake_s3 minutes, so S3_DISC_TOOLS="tm_disc_smt rc_check" compares like with like
#   TREEMIG_B     another treemig binary (an older build, say): rows treemig_b and
#                 tm_disc_b run it beside TREEMIG, in the same rotation
#
# The server is started afresh (empty) before each timed run and stopped
# after it, on 127.0.0.1 on a free port. The default is fake_s3 (Python,
# objects in memory, every signature and Content-MD5 checked): s3rver
# 3.7.1 lists nested prefixes wrongly (a prefix that holds only deeper
# prefixes, d/sub/f, is left out of its parent's CommonPrefixes: its
# directory walk prunes below a delimiter), which breaks any per-folder
# walk of the bucket (treemig's verify and discovery, rclone check); with
# S3_SERVER=s3rver the copies run (into an empty bucket no tool lists
# deep), counted by awscli, without the discover case and treemig verify.
# The first treemig run of each case is checked otherwise: the object
# count by awscli, and treemig verify (--checksum for the big files).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=${BENCH_DIR:-/tmp/treemig-s3bench}
case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/|"") die "BENCH_DIR=$WORK is too broad: name a dedicated folder" ;; esac
[[ $WORK = /* ]] || WORK=$PWD/$WORK
mkdir -p "$WORK/logs"
LOGS=$WORK/logs
bench_init s3 BENCH_DIR S3_SERVER S3_CASES LATENCY_MS S3_WORKERS TREEMIG_B S3_DISC_TOOLS S3_DISC_FILES
SERVER=${S3_SERVER:-fake}
DEFAULT_CASES="small big discover"
[[ $SERVER == s3rver ]] && DEFAULT_CASES="small big"
read -r -a CASES <<<"${S3_CASES:-$DEFAULT_CASES}"
read -r -a LATS <<<"${LATENCY_MS-0 20}"
W=${S3_WORKERS:-64}
NFILES=$(scaled 20000 10)
NFOLDERS=$(scaled 2000 1)
BIG_MIB=$(scaled 256 16)
DFILES=${S3_DISC_FILES:-$NFILES}
[[ $DFILES =~ ^[1-9][0-9]*$ ]] || die "S3_DISC_FILES must be a positive integer (got '$DFILES')"
DFOLDERS=$NFOLDERS
[[ $DFILES == "$NFILES" ]] || DFOLDERS=$(((DFILES + 9) / 10))
PROXY=$REPO/build/latency_proxy
AWSCLI=/usr/bin/aws
[[ -x $PROXY ]] || die "build/latency_proxy is missing: run make first"
[[ -x $AWSCLI ]] || die "Debian's awscli ($AWSCLI) is missing: apt-get install awscli"
command -v rclone >/dev/null || die "rclone is missing"
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_SESSION_TOKEN AWS_CA_BUNDLE # (rclone 1.60 fails on AWS_CA_BUNDLE over http)
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=S3RVER RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=S3RVER
export RCLONE_CONFIG_BENCH_REGION=us-east-1 RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
RCLONE=(rclone --config /dev/null)

# ---------------------------------------------------------------- the server
case $SERVER in
s3rver)
    S3RVER=$WORK/npm/node_modules/.bin/s3rver
    if [[ ! -x $S3RVER ]]; then
        say "installing s3rver 3.7.1 into $WORK/npm"
        npm install --prefix "$WORK/npm" --no-audit --no-fund --no-save s3rver@3.7.1 \
            >"$LOGS/npm.log" 2>&1 || die "npm install s3rver failed (see $LOGS/npm.log)"
    fi ;;
fake) ;;
*) die "S3_SERVER must be s3rver or fake (got '$SERVER')" ;;
esac
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SRV_PID= PROXY_PID=
stop_server() {
    local p
    for p in $PROXY_PID $SRV_PID; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    SRV_PID= PROXY_PID=
}
trap stop_server EXIT
start_server() { # LATENCY: a fresh, empty server; sets EP
    local lat=$1 port i
    stop_server
    rm -rf "$WORK/s3data"
    mkdir -p "$WORK/s3data"
    port=$(free_port)
    if [[ $SERVER == s3rver ]]; then
        NODE_OPTIONS=--openssl-legacy-provider "$S3RVER" -d "$WORK/s3data" -a 127.0.0.1 -p "$port" \
            --silent --configure-bucket bench </dev/null >"$LOGS/server.log" 2>&1 &
        SRV_PID=$!
    else
        python3 "$REPO/tests/servers/fake_s3.py" --port "$port" --access-key S3RVER \
            --secret-key S3RVER --bucket bench </dev/null >"$LOGS/server.log" 2>&1 &
        SRV_PID=$!
    fi
    for ((i = 0; i < 300; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    ((i < 300)) || die "the $SERVER server did not start (see $LOGS/server.log)"
    EP=http://127.0.0.1:$port
    if ((lat > 0)); then
        rm -f "$WORK/proxy.port"
        "$PROXY" -p 0 "127.0.0.1:$port" "$lat" </dev/null >"$WORK/proxy.port" 2>>"$LOGS/proxy.log" &
        PROXY_PID=$!
        for ((i = 0; i < 100; i++)); do [[ -s $WORK/proxy.port ]] && break; sleep 0.05; done
        EP=http://127.0.0.1:$(head -n1 "$WORK/proxy.port")
    fi
}
ctl() { # WHAT: fake_s3's control request; prints its JSON answer
    python3 -c 'import sys, urllib.request as u
r = u.Request(sys.argv[1] + "/__ctl/" + sys.argv[2], data=b"{}", method="POST")
print(u.urlopen(r, timeout=30).read().decode())' "$EP" "$1"
}
requests() { # what fake_s3 counted since it started or since reset_stats: "op n ..."
    ctl stats 2>/dev/null | python3 -c 'import json, sys
s = json.load(sys.stdin)["stats"]
r = dict(s["requests"])
r.pop("bucket", None)
print(" ".join("%s %d" % kv for kv in sorted(r.items())) +
      (" (conditional %d)" % s["conditional_puts"] if s.get("conditional_puts") else ""))' || echo "?"
}
server_cpu() { # fake_s3's CPU seconds so far
    ctl stats 2>/dev/null | python3 -c 'import json, sys; print("%.2f" % json.load(sys.stdin)["cpu_s"])' || echo 0
}
count_objects() { "$AWSCLI" --endpoint-url "$EP" s3 ls "s3://bench/$1/" --recursive </dev/null 2>/dev/null | wc -l; }

# ---------------------------------------------------------------- the trees
SMALL=$WORK/small-$NFILES-$NFOLDERS
DISC=$WORK/small-$DFILES-$DFOLDERS
BIG=$WORK/big-$BIG_MIB
make_tree() { # DIR FILES FOLDERS: files of 1-4 KiB, two levels of folders
    [[ -f $1.ok ]] && return 0
    say "writing $2 files (1-4 KiB) in $3 folders"
    rm -rf "$1"
    python3 - "$1" "$2" "$3" <<'EOF'
import os, random, sys
root, n, nf = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(42)
dirs = []
for i in range(nf):   # two levels: 1/10 of the folders at the top
    d = os.path.join(root, 'd%03d' % (i % max(1, nf // 10)), 'sub%05d' % i)
    os.makedirs(d, exist_ok=True)
    dirs.append(d)
for i in range(n):
    with open(os.path.join(dirs[i % nf], 'f%06d.dat' % i), 'wb') as f:
        f.write(rnd.randbytes(rnd.randint(1024, 4096)))
EOF
    touch "$1.ok"
}
if [[ " ${CASES[*]} " == *" small "* ]]; then make_tree "$SMALL" "$NFILES" "$NFOLDERS"; fi
if [[ " ${CASES[*]} " == *" discover "* ]]; then make_tree "$DISC" "$DFILES" "$DFOLDERS"; fi
if [[ ! -f $BIG.ok ]]; then
    say "writing 4 files of $BIG_MIB MiB"
    rm -rf "$BIG"
    mkdir -p "$BIG"
    for i in 1 2 3 4; do head -c $((BIG_MIB * 1048576)) /dev/urandom >"$BIG/big$i.bin"; done
    touch "$BIG.ok"
fi

# ---------------------------------------------------------------- runs
declare -A LABEL CHECKS
LABEL[treemig]="treemig discover + copy"
LABEL[treemig_b]="the same, TREEMIG_B"
LABEL[rclone]="rclone copy (defaults: 4 transfers)"
LABEL[rclone_w]="rclone copy --transfers $W --checkers $W"
LABEL[aws]="aws s3 sync (defaults: 10 requests)"
LABEL[tm_disc]="treemig discover"
LABEL[tm_disc_smt]="treemig discover -o s3-server-modtime"
LABEL[tm_disc_so]="treemig discover --size-only"
LABEL[tm_disc_b]="treemig discover, TREEMIG_B"
LABEL[rc_check]="rclone check --size-only"
FAIL=0
run_copy() { # KEY TREE CASE LATENCY
    local k=$1 src=$2 c=$3 lat=$4 key=$1.$3.$4 n db
    db=$WORK/tm.db
    start_server "$lat"
    rm -f "$db" "$db-wal" "$db-shm" "$db.lock" "$db.yaml"
    case $k in
    treemig | treemig_b)
        local bin=$TREEMIG
        [[ $k == treemig_b ]] && bin=$TREEMIG_B
        measure "$key" sh -c '"$1" discover -q --db "$2" "$3" s3://bench/t --s3-endpoint "$4" &&
                              "$1" copy -y -q --db "$2"' sh "$bin" "$db" "$src" "$EP" ;;
    rclone) measure "$key" env RCLONE_CONFIG_BENCH_ENDPOINT="$EP" "${RCLONE[@]}" copy "$src" bench:bench/t ;;
    rclone_w) measure "$key" env RCLONE_CONFIG_BENCH_ENDPOINT="$EP" "${RCLONE[@]}" copy \
        --transfers "$W" --checkers "$W" "$src" bench:bench/t ;;
    aws) measure "$key" "$AWSCLI" --endpoint-url "$EP" s3 sync --only-show-errors "$src" s3://bench/t ;;
    esac
    [[ ${RC[$key]} -eq 0 ]] || FAIL=1
    if [[ -z ${CHECKS[$key]:-} ]]; then
        n=$(count_objects t)
        CHECKS[$key]="$n objects"
        [[ $SERVER == fake ]] && CHECKS[$key]+=", requests $(requests), server CPU $(server_cpu) s"
        if [[ $k == treemig* && $SERVER != s3rver ]]; then
            local v=0 sum=()
            [[ $c == big ]] && sum=(--checksum)
            "$TREEMIG" verify -q --db "$db" "${sum[@]}" </dev/null >"$LOGS/verify.$key.log" 2>&1 || v=$?
            CHECKS[$key]+=", treemig verify ${sum[*]}: exit $v"
            [[ $v -eq 0 ]] || FAIL=1
        fi
    fi
    stop_server
}
run_discover() { # KEY LATENCY: the bucket holds treemig's copy of the discover tree
    local k=$1 lat=$2 key=$1.discover.$2 db=$WORK/disc.db c0=0
    rm -f "$db" "$db-wal" "$db-shm" "$db.lock" "$db.yaml"
    [[ $SERVER == fake ]] && c0=$(server_cpu)
    case $k in
    tm_disc) measure "$key" "$TREEMIG" discover -q --db "$db" "$DISC" s3://bench/t --s3-endpoint "$EP" ;;
    tm_disc_smt) measure "$key" "$TREEMIG" discover -q --db "$db" "$DISC" s3://bench/t \
        --s3-endpoint "$EP" -o s3-server-modtime ;;
    tm_disc_so) measure "$key" "$TREEMIG" discover -q --db "$db" "$DISC" s3://bench/t \
        --s3-endpoint "$EP" --size-only ;;
    tm_disc_b) measure "$key" "$TREEMIG_B" discover -q --db "$db" "$DISC" s3://bench/t \
        --s3-endpoint "$EP" ;;
    rc_check) measure "$key" env RCLONE_CONFIG_BENCH_ENDPOINT="$EP" "${RCLONE[@]}" check \
        --size-only "$DISC" bench:bench/t ;;
    esac
    [[ ${RC[$key]} -eq 0 ]] || FAIL=1
    if [[ -z ${CHECKS[$key]:-} && $SERVER == fake ]]; then
        CHECKS[$key]="requests $(requests), server CPU $(awk -v a="$c0" -v b="$(server_cpu)" 'BEGIN{printf "%.2f", b - a}') s"
    fi
    [[ $SERVER == fake ]] && ctl reset_stats >/dev/null
}
HEAD=$(header "treemig S3 benchmark: local -> S3 ($SERVER), treemig against rclone and awscli")
COPY_KEYS=(treemig rclone rclone_w aws)
DISC_KEYS=(tm_disc tm_disc_so tm_disc_smt rc_check)
if [[ -n ${TREEMIG_B:-} ]]; then
    [[ -x $TREEMIG_B ]] || die "TREEMIG_B=$TREEMIG_B is not an executable"
    COPY_KEYS+=(treemig_b)
    DISC_KEYS+=(tm_disc_b)
fi
if [[ -n ${S3_DISC_TOOLS:-} ]]; then
    read -r -a DISC_KEYS <<<"$S3_DISC_TOOLS"
    for k in "${DISC_KEYS[@]}"; do
        [[ -n ${LABEL[$k]:-} && $k == @(tm_disc*|rc_check) ]] || die "unknown S3_DISC_TOOLS row '$k'"
    done
fi
for lat in "${LATS[@]}"; do
    for c in "${CASES[@]}"; do
        case $c in
        small | big)
            src=$SMALL
            [[ $c == big ]] && src=$BIG
            for ((r = 0; r < RUNS; r++)); do
                say "$c, ${lat} ms each way: run $((r + 1))/$RUNS"
                while read -r k; do run_copy "$k" "$src" "$c" "$lat"; done < <(rotate "$r" "${COPY_KEYS[@]}")
            done ;;
        discover)
            start_server "$lat"
            say "discover, ${lat} ms: filling the bucket with treemig"
            rm -f "$WORK/fill.db"*
            { "$TREEMIG" discover -q --db "$WORK/fill.db" "$DISC" s3://bench/t --s3-endpoint "$EP" &&
                "$TREEMIG" copy -y -q --db "$WORK/fill.db"; } </dev/null >"$LOGS/fill.log" 2>&1 ||
                die "filling the bucket failed"
            [[ $SERVER == fake ]] && ctl reset_stats >/dev/null
            for ((r = 0; r < RUNS; r++)); do
                say "discover, ${lat} ms each way: run $((r + 1))/$RUNS"
                while read -r k; do run_discover "$k" "$lat"; done < <(rotate "$r" "${DISC_KEYS[@]}")
            done
            stop_server ;;
        *) die "unknown case '$c' (small, big, discover)" ;;
        esac
    done
done
LOAD_END=$(load)

# ---------------------------------------------------------------- report
REPORT=$WORK/report-$(date -u +%Y%m%dT%H%M%SZ).txt
{
    echo "$HEAD"
    echo "  load at the end: $LOAD_END"
    echo "  server: $SERVER on 127.0.0.1, started empty before each copy run; latency_proxy for the"
    echo "  rows at more than 0 ms (each way). small: $NFILES files of 1-4 KiB in $NFOLDERS folders;"
    echo "  big: 4 files of $BIG_MIB MiB (multipart: treemig above 8 MiB, aws above 8 MiB, rclone"
    echo "  above 200 MiB); discover: the bucket holds treemig's copy of $DFILES files in $DFOLDERS"
    echo "  folders (the small set's shape)."
    for lat in "${LATS[@]}"; do
        for c in "${CASES[@]}"; do
            echo
            if [[ $c == discover ]]; then
                echo "  discover, $lat ms each way: wall s median (min-max), RSS MiB, exit, treemig / rclone check"
                for k in "${DISC_KEYS[@]}"; do
                    key=$k.discover.$lat
                    printf '    %-44s %22s %6s %4s %8s  %s\n' "${LABEL[$k]}" "$(stat_of "$key")" \
                        "$(awk -v m="${RSS[$key]:-0}" 'BEGIN{printf "%.0f", m/1024}')" "${RC[$key]:--}" \
                        "$(ratio "$(median "$key")" "$(median rc_check.discover.$lat)")" "${CHECKS[$key]:-}"
                done
                continue
            fi
            echo "  $c, $lat ms each way: wall s median (min-max), RSS MiB, exit, treemig / it, checks"
            for k in "${COPY_KEYS[@]}"; do
                key=$k.$c.$lat
                printf '    %-44s %22s %6s %4s %8s  %s\n' "${LABEL[$k]}" "$(stat_of "$key")" \
                    "$(awk -v m="${RSS[$key]:-0}" 'BEGIN{printf "%.0f", m/1024}')" "${RC[$key]:--}" \
                    "$([[ $k == treemig ]] && echo - || ratio "$(median "treemig.$c.$lat")" "$(median "$key")")" \
                    "${CHECKS[$key]:-}"
            done
        done
    done
    echo
    echo "  treemig / it: treemig's median wall divided by the tool's (below 1: treemig is faster)."
    echo "  treemig runs with its defaults: 32 operations per side in discovery, 64 in the copy."
    echo "  all walls:"
    for k in "${!WALLS[@]}"; do printf '    %-28s%s\n' "$k" "${WALLS[$k]}"; done | sort
    echo "Logs: $LOGS"
} | tee "$REPORT"
say "report saved: $REPORT"
[[ $FAIL -eq 0 ]] || { say "a tool failed or treemig's check failed (see the report)"; exit 1; }
