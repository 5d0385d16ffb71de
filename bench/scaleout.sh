#!/usr/bin/env bash
# bench/scaleout.sh: the discovery and the copy of a simulated pair (both
# sides at 20 ms a call, as storages across a WAN) by 1 process against 4
# processes sharing one PostgreSQL state database: `treemig discover` (or
# `copy`) alone, then with 3 `treemig worker` (docs/scale-out.md) joining,
# each process with 64 operations in flight (a discovery: --workers 32 a
# side). Medians of RUNS; the goal is 4 processes >= 3.2x the listing rate
# and the copy rate of one (scale-out efficiency >= 80%).
#
#   bench/scaleout.sh                 # about 9,400 nodes to copy, RUNS=3
#   SCALE=0.2 bench/scaleout.sh       # a quick check
#
# Environment (besides RUNS, SCALE, TREEMIG: bench/lib.sh):
#   BENCH_DIR       work dir (default /tmp/treemig-scaleout)
#   BENCH_SHAPE     the sim shape (default seed=7,depth=4,folders=12,
#                   files=30 x SCALE,size=2000; the destination keeps 10%)
#   BENCH_LATENCY   ms per storage call on each side (default 20)
#   BENCH_INFLIGHT  operations in flight per process (default 64)
#   BENCH_PROCS     the process counts compared (default "1 4")
#   BENCH_PHASES    what is measured (default "list copy")
#   BENCH_LIST_SHAPE the sim shape of the listing runs (default
#                   seed=7,depth=4,folders=30,files=2: about 11,000 source
#                   and 2,250 destination folders x SCALE, wide enough per
#                   depth that the chain of depths is not the bound; a
#                   listing costs a call per folder)
#   BENCH_PG_STATEMENTS=1 the server's statements of each run, most time
#                   first (pg_stat_statements: calls, plans, planning and
#                   execution ms, rows), in $LOGS/KEY.statements; for a
#                   listing run also the rows each index and table gave,
#                   in $LOGS/dN.scans
#   PG_BIN          PostgreSQL's programs (default: the newest
#                   /usr/lib/postgresql/N/bin)
# The listing rate: each run discovers into a fresh database (nodes of
# both sides recorded / wall time). The copy: discovery runs once more
# into a template database; each run copies from a fresh clone of it
# (CREATE DATABASE ... TEMPLATE) into an empty overlay. The listing runs
# ask for discovery by workers (TREEMIG_SHARED_DISCOVERY=1). Each row
# also gives the CPU seconds of the PostgreSQL server during the run (its
# processes' utime + stime, those ended included), and the CPU per folder
# listed or node copied of treemig and the server together: on a machine
# of C cores, C / that is the highest rate any number of processes
# reaches. The server runs as nobody when run as root, and is
# stopped on exit. Exits 1 when a run fails or leaves a node pending.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=${BENCH_DIR:-/tmp/treemig-scaleout}
case $WORK in /|/tmp|/tmp/|"$HOME"|"$HOME"/) die "BENCH_DIR=$WORK is too broad: name a dedicated folder" ;; esac
[[ $WORK = /* ]] || WORK=$PWD/$WORK
mkdir -p "$WORK"
bench_init scaleout BENCH_DIR BENCH_SHAPE BENCH_LATENCY BENCH_INFLIGHT BENCH_PROCS BENCH_PHASES BENCH_LIST_SHAPE
SHAPE=${BENCH_SHAPE:-seed=7,depth=4,folders=12,files=$(scaled 30 2),size=2000}
LAT=${BENCH_LATENCY:-20}
INF=${BENCH_INFLIGHT:-64}
PROCS=${BENCH_PROCS:-1 4}
PHASES=${BENCH_PHASES:-list copy}
LSHAPE=${BENCH_LIST_SHAPE:-seed=7,depth=4,folders=$(scaled_fanout 30 4),files=2}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[[ -x $PG_BIN/initdb ]] || die "no PostgreSQL server programs (apt-get install postgresql)"
OVL=$WORK/dst.ovl
SRC="sim:$SHAPE,latency=$LAT"
DST="sim:$SHAPE,world=dst,keep=0.1,overlay=$OVL,latency=$LAT"

# the server
PGD=$(mktemp -d "$WORK/pg.XXXXXX")
chmod 755 "$PGD"
AS=()
if [[ $(id -u) == 0 ]]; then
    chown 65534:65534 "$PGD"
    AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
stop_pg() {
    "${AS[@]}" "$PG_BIN/pg_ctl" -D "$PGD/data" -w -s -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PGD"
}
trap stop_pg EXIT
(cd "$PGD" && "${AS[@]}" "$PG_BIN/initdb" -D "$PGD/data" -U tm -A trust -E UTF8 \
    --locale=C.UTF-8 >"$LOGS/initdb.log" 2>&1) || die "initdb failed: $LOGS/initdb.log"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >>"$PGD/data/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$PGD'
synchronous_commit = off
CONF
[[ ${BENCH_PG_STATEMENTS:-0} == 1 ]] &&
    printf '%s\n' "shared_preload_libraries = 'pg_stat_statements'" \
        'pg_stat_statements.track_planning = on' >>"$PGD/data/postgresql.conf"
(cd "$PGD" && "${AS[@]}" "$PG_BIN/pg_ctl" -D "$PGD/data" -w -s -l "$PGD/log" start) ||
    die "the server did not start: $PGD/log"
PSQL=("$PG_BIN/psql" -X -q -A -t -h "$PGD" -p "$PORT" -U tm)
uri() { echo "postgresql:///$1?host=$PGD&port=$PORT&user=tm"; }
# the server's CPU seconds so far: the postmaster's own and its ended
# children's (utime, stime, cutime, cstime), and its live children's
pg_cpu() {
    local pm
    pm=$(head -1 "$PGD/data/postmaster.pid")
    { cut -d' ' -f14-17 "/proc/$pm/stat"
      for c in $(cat "/proc/$pm/task/$pm/children"); do cut -d' ' -f14-15 "/proc/$c/stat" 2>/dev/null || true; done
    } | awk -v hz="$(getconf CLK_TCK)" '{for (i = 1; i <= NF; i++) t += $i} END{printf "%.2f", t / hz}'
}
declare -A SRV
# measure_pg KEY CMD...: measure (bench/lib.sh), and the server's CPU
# seconds meanwhile in SRV[KEY] (the last run's)
measure_pg() {
    local a b
    [[ ${BENCH_PG_STATEMENTS:-0} == 1 ]] && "${PSQL[@]}" -d postgres \
        -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' -c 'SELECT pg_stat_statements_reset()' >/dev/null
    a=$(pg_cpu)
    measure "$@"
    b=$(pg_cpu)
    [[ ${BENCH_PG_STATEMENTS:-0} == 1 ]] && "${PSQL[@]}" -d postgres -F ' | ' -c "SELECT calls, plans,
        round(total_plan_time::numeric, 1) AS plan_ms, round(total_exec_time::numeric, 1) AS exec_ms, rows,
        left(regexp_replace(query, '\s+', ' ', 'g'), 400)
        FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 30" >"$LOGS/$1.statements"
    SRV[$1]=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", b - a}')
    say "  $1: server cpu ${SRV[$1]} s"
}

NODES=0
if [[ " $PHASES " == *" copy "* ]]; then # the listing runs need no template
    say "discovering the pair once into the template database"
    "${PSQL[@]}" -d postgres -c 'CREATE DATABASE base' >/dev/null
    rm -f "$OVL" "$WORK/base.yaml"
    "$TREEMIG" discover --quiet --workers "$INF" --db "$(uri base)" --config "$WORK/base.yaml" \
        "$SRC" "$DST" >"$LOGS/discover.log" 2>&1 || die "discovery failed: $LOGS/discover.log"
    NODES=$("${PSQL[@]}" -d base -c "SELECT sum(count) FROM copy_stats WHERE copy_status = 'pending'")
    say "$NODES nodes to copy"
fi

# one process, or the copy and N-1 workers that join it once it runs
cat >"$WORK/together.sh" <<'RUN'
#!/usr/bin/env bash
# together.sh N URI INFLIGHT TREEMIG PSQL...: the copy with N processes
n=$1 uri=$2 inf=$3 tm=$4
shift 4
"$tm" copy --db "$uri" --yes --quiet --workers "$inf" &
pids=($!)
if ((n > 1)); then
    for ((i = 0; i < 400; i++)); do
        [[ $("$@" -c "SELECT count(*) FROM migration WHERE key = 'worker_run' AND
              (SELECT value FROM migration WHERE key = 'phase') = 'copying'") == 1 ]] && break
        sleep 0.025
    done
    for ((i = 1; i < n; i++)); do
        "$tm" worker --db "$uri" --quiet --workers "$inf" &
        pids+=($!)
    done
fi
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
RUN
chmod +x "$WORK/together.sh"

# the discovery with N processes: discover, and N-1 workers once it runs
cat >"$WORK/together-disc.sh" <<'RUN'
#!/usr/bin/env bash
# together-disc.sh N URI PER_SIDE TREEMIG YAML SRC DST PSQL...
n=$1 uri=$2 inf=$3 tm=$4 yaml=$5 src=$6 dst=$7
shift 7
export TREEMIG_SHARED_DISCOVERY=1 # the folders leased, so workers can join
"$tm" discover --db "$uri" --quiet --workers "$inf" --config "$yaml" "$src" "$dst" &
pids=($!)
if ((n > 1)); then
    for ((i = 0; i < 400; i++)); do
        [[ $("$@" -c "SELECT value FROM migration WHERE key = 'phase'" 2>/dev/null) == discovering ]] && break
        sleep 0.025
    done
    for ((i = 1; i < n; i++)); do
        "$tm" worker --db "$uri" --quiet --workers "$inf" &
        pids+=($!)
    done
fi
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
RUN
chmod +x "$WORK/together-disc.sh"

FAIL=0
cd "$WORK" # the copy's YAML file: run.yaml here
LISTED=0 FOLDERS=0
list_n() {
    local n=$1 left
    "${PSQL[@]}" -d postgres -c 'DROP DATABASE IF EXISTS disc' -c 'CREATE DATABASE disc' >/dev/null 2>&1
    rm -f "$OVL" "$WORK/disc.yaml"
    measure_pg "d$n" "$WORK/together-disc.sh" "$n" "$(uri disc)" "$((INF / 2))" "$TREEMIG" \
        "$WORK/disc.yaml" "sim:$LSHAPE,latency=$LAT" \
        "sim:$LSHAPE,world=dst,keep=0.5,overlay=$OVL,latency=$LAT" "${PSQL[@]}" -d disc
    left=$("${PSQL[@]}" -d disc -c "SELECT (SELECT count(*) FROM src_nodes WHERE traversal_status = 'pending') + (SELECT count(*) FROM dst_nodes WHERE traversal_status = 'pending')")
    LISTED=$("${PSQL[@]}" -d disc -c "SELECT (SELECT count(*) FROM src_nodes) + (SELECT count(*) FROM dst_nodes)")
    FOLDERS=$("${PSQL[@]}" -d disc -c "SELECT (SELECT count(*) FROM src_nodes WHERE type = 'folder') + (SELECT count(*) FROM dst_nodes WHERE type = 'folder')")
    [[ ${RC[d$n]} == 0 && $left == 0 ]] || { say "  d$n: exit ${RC[d$n]}, $left folders pending"; FAIL=1; }
    [[ ${BENCH_PG_STATEMENTS:-0} == 1 ]] && "${PSQL[@]}" -d disc -F ' | ' -c "SELECT 'index', indexrelname,
        idx_scan, idx_tup_read, idx_tup_fetch FROM pg_stat_user_indexes UNION ALL SELECT 'table', relname,
        seq_scan, seq_tup_read, n_tup_hot_upd FROM pg_stat_user_tables ORDER BY 4 DESC NULLS LAST LIMIT 25" \
        >"$LOGS/d$n.scans" # the rows each index and table gave (tables: seq scans, reads, HOT updates)
    say "  d$n: folders listed per process: $("${PSQL[@]}" -d disc -c "SELECT string_agg(d::text, ' ' ORDER BY d DESC) FROM (SELECT pid, sum(done) AS d FROM (SELECT DISTINCT ON (pid, queue) pid, queue, done FROM queue_stats WHERE queue IN ('src', 'dst') ORDER BY pid, queue, id DESC) l GROUP BY pid) x")"
}
run_n() {
    local n=$1 left
    "${PSQL[@]}" -d postgres -c 'DROP DATABASE IF EXISTS run' -c 'CREATE DATABASE run TEMPLATE base' >/dev/null 2>&1
    rm -f "$OVL" "$WORK/run.yaml"
    measure_pg "p$n" "$WORK/together.sh" "$n" "$(uri run)" "$INF" "$TREEMIG" "${PSQL[@]}" -d run
    left=$("${PSQL[@]}" -d run -c "SELECT count(*) FROM src_nodes WHERE copy_status = 'pending'")
    [[ ${RC[p$n]} == 0 && $left == 0 ]] || { say "  p$n: exit ${RC[p$n]}, $left nodes pending"; FAIL=1; }
    say "  p$n: nodes copied per process: $("${PSQL[@]}" -d run -c "SELECT string_agg(c::text, ' ' ORDER BY c DESC) FROM (SELECT count(*) AS c FROM src_nodes s JOIN leases l ON l.id = s.lease_id WHERE l.stage LIKE 'copy:%' GROUP BY l.pid) x")"
}
keys=()
for n in $PROCS; do keys+=("$n"); done
for ((r = 0; r < RUNS; r++)); do
    say "run $((r + 1))/$RUNS (load $(load))"
    if [[ " $PHASES " == *" list "* ]]; then
        while read -r n; do list_n "$n"; done < <(rotate "$r" "${keys[@]}")
    fi
    if [[ " $PHASES " == *" copy "* ]]; then
        while read -r n; do run_n "$n"; done < <(rotate "$r" "${keys[@]}")
    fi
done

# per_ms KEY N: the last run's CPU of treemig and the server, ms per item
per_ms() { awk -v c="${CPU[$1]}" -v s="${SRV[$1]}" -v n="$2" 'BEGIN{ if (n + 0 > 0) printf "%.3f", (c + s) * 1000 / n; else print "-" }'; }
rate() { awk -v n="$2" -v w="$(median "$1")" 'BEGIN{ if (w + 0 > 0) printf "%.0f", n / w; else print "-" }'; }
{
    if [[ " $PHASES " == *" list "* ]]; then
        header "treemig discover with workers (PostgreSQL state): sim pair at $LAT ms a call, $((INF / 2)) listings in flight per side per process, $LISTED nodes recorded, $FOLDERS folders listed"
        printf '  %-12s %-26s %12s %8s %12s %18s\n' processes "wall s, median (range)" "nodes/s" "cpu s" "server cpu s" "cpu ms per folder"
        for n in $PROCS; do
            printf '  %-12s %-26s %12s %8s %12s %18s\n' "$n" "$(stat_of "d$n")" "$(rate "d$n" "$LISTED")" "${CPU[d$n]}" "${SRV[d$n]}" "$(per_ms "d$n" "$FOLDERS")"
        done
        set -- $PROCS
        if [[ $# -ge 2 ]]; then
            echo "  listing rate, ${!#} processes / $1: $(ratio "$(median "d$1")" "$(median "d${!#}")")  (goal: >= 3.2)"
        fi
    fi
    if [[ " $PHASES " == *" copy "* ]]; then
    header "treemig copy with workers (PostgreSQL state): sim pair at $LAT ms a call, $INF in flight per process, $NODES nodes to copy"
    printf '  %-12s %-26s %12s %8s %12s %18s\n' processes "wall s, median (range)" "nodes/s" "cpu s" "server cpu s" "cpu ms per node"
    for n in $PROCS; do
        printf '  %-12s %-26s %12s %8s %12s %18s\n' "$n" "$(stat_of "p$n")" "$(rate "p$n" "$NODES")" "${CPU[p$n]}" "${SRV[p$n]}" "$(per_ms "p$n" "$NODES")"
    done
    set -- $PROCS
    if [[ $# -ge 2 ]]; then
        echo "  copy rate, ${!#} processes / $1: $(ratio "$(median "p$1")" "$(median "p${!#}")")  (goal: >= 3.2)"
    fi
    fi
    echo "  load average at the end: $(load)"
    echo "  every run complete: $([[ $FAIL == 0 ]] && echo yes || echo NO)"
} | tee "$WORK/report-scaleout-$(date -u +%Y%m%dT%H%M%SZ).txt"
exit $FAIL
