#!/usr/bin/env bash
# Runs the fuzz targets (cargo-fuzz, libFuzzer) from the repository root:
#   tests/fuzz/run.sh SECONDS [TARGET...]       each target for SECONDS
#   FUZZ_RUNS=N tests/fuzz/run.sh 0 [TARGET...]  each target for N executions
# (FUZZ_MAX_LEN sets the longest input tried; default 4096 bytes.)
# Seeds come from tests/fuzz/seeds/<target> (committed); what the fuzzer
# learns goes to tests/fuzz/corpus/<target> (not committed). A crash stops
# the run, non-zero, with the input in tests/fuzz/artifacts/<target>/ (add
# it as a regression test). Needs cargo-fuzz (`cargo install cargo-fuzz`);
# RUSTC_BOOTSTRAP=1 lets it pass its flags to the stable compiler.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(parse_metric parse_event event_batch collectd emetrics session_api ws_request block_roundtrip)
fi
export RUSTC_BOOTSTRAP=1
# No sanitizer: Cubed has no unsafe code; panics, overflows (debug
# assertions are on) and stack exhaustion are what is looked for.
cargo fuzz build --fuzz-dir tests/fuzz -s none
mkdir -p target/fuzz-logs
for t in "${targets[@]}"; do
    mkdir -p "tests/fuzz/corpus/$t"
    args=(-rss_limit_mb=4096 "-max_len=${FUZZ_MAX_LEN:-4096}" -print_final_stats=1)
    if [ "$seconds" != 0 ]; then args+=("-max_total_time=$seconds"); fi
    if [ -n "${FUZZ_RUNS:-}" ]; then args+=("-runs=$FUZZ_RUNS"); fi
    log="target/fuzz-logs/$t.log"
    status=0
    cargo fuzz run --fuzz-dir tests/fuzz -s none "$t" \
        "tests/fuzz/corpus/$t" "tests/fuzz/seeds/$t" -- "${args[@]}" >"$log" 2>&1 || status=$?
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz $t: ${runs:-?} executions, exit $status"
    if [ "$status" -ne 0 ]; then
        grep -E "panicked|deadly|ERROR|SUMMARY|artifact|overflow" "$log" | head -n 20
        exit "$status"
    fi
done
