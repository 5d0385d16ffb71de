#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (ASan + UBSan) and runs
# them; docs/fuzzing.md describes what each one checks.
#
#   scripts/fuzz.sh [-B DIR] smoke [SECONDS] [FUZZER...]
#       each fuzzer SECONDS (default 5) on a scratch copy of its seed corpus;
#       the source tree is left as it is (what make test runs)
#   scripts/fuzz.sh [-B DIR] long [SECONDS] [FUZZER...]
#       each fuzzer SECONDS (default 600), one after the other, on a corpus
#       kept in DIR/corpus/NAME (seeded from fuzz/corpus/NAME, grows from run
#       to run); prints executions and coverage from libFuzzer's final stats
#
# DIR is the build folder (default build-fuzz; FUZZ_BUILD also sets it).
# FUZZER is a name like fuzz_config or config; all four by default. A crash,
# a failed check, a leak, a timeout (-timeout, default 25 s, FUZZ_TIMEOUT)
# or running out of memory is a finding: the input is saved as
# DIR/artifacts/NAME-crash-... and the script exits 1. Exits 77 (a skip for
# ctest) when clang or its libFuzzer runtime is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD:-build-fuzz}
if [ "${1:-}" = "-B" ]; then
    build=$2
    shift 2
fi
mode=${1:-}
shift || true
case "$mode" in
    smoke) secs=5 ;;
    long) secs=600 ;;
    *) echo "usage: $0 [-B DIR] smoke|long [SECONDS] [FUZZER...]" >&2; exit 2 ;;
esac
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
    secs=$1
    shift
fi
all=(fuzz_sim_spec fuzz_config fuzz_glob fuzz_path)
fuzzers=()
for f in "$@"; do
    f=fuzz_${f#fuzz_}
    [[ " ${all[*]} " == *" $f "* ]] || { echo "fuzz.sh: no fuzzer $f (${all[*]})" >&2; exit 2; }
    fuzzers+=("$f")
done
[ ${#fuzzers[@]} -gt 0 ] || fuzzers=("${all[@]}")
case "$build" in /*) ;; *) build=$here/$build ;; esac

# clang and its libFuzzer runtime (Debian: clang, libclang-rt-NN-dev)
cc=${CC:-clang}
case "$cc" in *clang*) ;; *) cc=clang ;; esac
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz.sh: skipped: no $cc (scripts/deps.sh test installs it)" >&2
    exit 77
fi
rt=$("$cc" -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)
if [ "$(uname -m)" = x86_64 ] && [ ! -f "$rt" ]; then
    rt=$("$cc" --print-runtime-dir 2>/dev/null)/libclang_rt.fuzzer-x86_64.a
    if [ ! -f "$rt" ]; then
        echo "fuzz.sh: skipped: $cc has no libFuzzer runtime (Debian: libclang-rt-dev)" >&2
        exit 77
    fi
fi

echo "== building the fuzzers in $build"
CC=$cc cmake -S "$here" -B "$build" -DTREEMIG_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build.configure.log" 2>&1 ||
    { cat "$build.configure.log" >&2; exit 1; }
rm -f "$build.configure.log"
cmake --build "$build" -j "${FUZZ_JOBS:-2}" --target "${fuzzers[@]}" >/dev/null

artifacts=$build/artifacts
mkdir -p "$artifacts"
scratch=
if [ "$mode" = smoke ]; then
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/treemig-fuzz.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
fi

failed=()
printf '%-14s %8s %12s %10s %6s %8s %s\n' fuzzer seconds executions exec/s cov ft corpus
for f in "${fuzzers[@]}"; do
    name=${f#fuzz_}
    seeds=$here/fuzz/corpus/$name
    if [ "$mode" = smoke ]; then
        corpus=$scratch/$name
    else
        corpus=$build/corpus/$name
    fi
    mkdir -p "$corpus"
    cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
    dict=()
    [ -f "$here/fuzz/$name.dict" ] && dict=(-dict="$here/fuzz/$name.dict")
    log=$build/$f.log
    set +e
    "$build/fuzz/$f" "${dict[@]}" -max_total_time="$secs" \
        -timeout="${FUZZ_TIMEOUT:-25}" -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$name-" "$corpus" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    files=$(find "$corpus" -type f | wc -l)
    bytes=$(du -sb "$corpus" | cut -f1)
    printf '%-14s %8s %12s %10s %6s %8s %s\n' "$f" "$secs" "${execs:-?}" \
        "${speed:-?}" "${cov:-?}" "${ft:-?}" "$files files, $bytes bytes"
    if [ $rc -ne 0 ]; then
        failed+=("$f")
        echo "!! $f found a problem (exit $rc); the end of $log:" >&2
        grep -E 'ERROR|SUMMARY|check failed|round trip|Test unit written|runtime error' \
            "$log" | head -20 >&2 || true
        tail -5 "$log" >&2
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: findings in: ${failed[*]} (inputs in $artifacts)" >&2
    exit 1
fi
echo "fuzz.sh: no findings"
