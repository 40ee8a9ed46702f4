#!/usr/bin/env bash
# Builds the cargo-fuzz targets under fuzz/ and runs each for SECONDS (default 60), one
# after the other, then prints the executions per target and the total.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install --locked cargo-fuzz`). Each
# target starts from the committed seeds (fuzz/seeds/TARGET) plus what earlier runs
# found (fuzz/corpus/TARGET, not committed); new inputs go to the latter. A crash, timeout
# or out-of-memory input is written to fuzz/artifacts/TARGET/ and makes the script exit 1
# after the remaining targets have run. The libFuzzer output of the last run of a target
# is in fuzz/artifacts/TARGET/last-run.log.
#
# FUZZ_JOBS=N runs N targets at a time (default 1: the other core stays free).
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
all=(admission_review manifests_compile annotations router_lookup normalize_path forwarded edge_prelude upstream_response request_head)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
jobs="${FUZZ_JOBS:-1}"

# No sanitizer: the crate forbids unsafe code, so what fuzzing finds here is panics,
# overflows (debug assertions stay on), hangs and memory blow-ups; without ASan's
# instrumentation the same time buys about twice the executions.
fuzz=(cargo +nightly fuzz)
build_flags=(-s none)

if ! "${fuzz[@]}" build "${build_flags[@]}"; then
    echo "fuzz: building the targets failed" >&2
    exit 1
fi

# Largest input per target: reviews and manifests need room for a whole object.
max_len() {
    case "$1" in
        admission_review | manifests_compile) echo 16384 ;;
        annotations) echo 4096 ;;
        *) echo 1024 ;;
    esac
}

run_one() {
    local t="$1"
    local artifacts="fuzz/artifacts/$t"
    mkdir -p "fuzz/corpus/$t" "$artifacts"
    local args=(
        -max_total_time="$seconds"
        -print_final_stats=1
        -max_len="$(max_len "$t")"
        # A single input slower than this is a hang (a regex or YAML blow-up), not load.
        -timeout=10
        -rss_limit_mb=2048
    )
    if [ -f "fuzz/dicts/$t.dict" ]; then args+=(-dict="fuzz/dicts/$t.dict"); fi
    local seeds=()
    if [ -d "fuzz/seeds/$t" ]; then seeds=("fuzz/seeds/$t"); fi
    "${fuzz[@]}" run "${build_flags[@]}" "$t" "fuzz/corpus/$t" "${seeds[@]}" -- "${args[@]}" \
        >"$artifacts/last-run.log" 2>&1
    echo $? >"$artifacts/last-run.rc"
}

running=0
for t in "${targets[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

# libFuzzer ends with `stat::number_of_executed_units: N`; older builds only print
# `#N DONE` (or `Done N runs`), so fall back to those.
executions() {
    local log="$1" n
    n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
    if [ -z "$n" ]; then
        n=$(grep -oE '^#[0-9]+[[:space:]]+DONE' "$log" | grep -oE '[0-9]+' | tail -n 1)
    fi
    if [ -z "$n" ]; then
        n=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -n 1)
    fi
    echo "${n:-0}"
}

total=0
failed=()
printf '%-20s %14s  %s\n' target executions result
for t in "${targets[@]}"; do
    log="fuzz/artifacts/$t/last-run.log"
    rc=$(cat "fuzz/artifacts/$t/last-run.rc" 2>/dev/null || echo 1)
    n=$(executions "$log")
    total=$((total + n))
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        result="FAILED (exit $rc, see $log)"
        failed+=("$t")
    fi
    printf '%-20s %14d  %s\n' "$t" "$n" "$result"
done
printf '%-20s %14d\n' total "$total"

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: ${failed[*]} found a crash, timeout or OOM; inputs in fuzz/artifacts/" >&2
    for t in "${failed[@]}"; do
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' \
            "fuzz/artifacts/$t/last-run.log" | head -n 6 >&2
    done
    exit 1
fi
