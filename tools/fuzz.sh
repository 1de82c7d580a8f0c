#!/usr/bin/env bash
# Builds the libFuzzer targets (preset `fuzz`: clang, ASan + UBSan) and runs
# each for SECONDS (default 20) over its seeds: the hand-made corpus in
# fuzz/corpus/<target>/, plus files of ../shared/testdata (and the bundled
# default model) in the target's format when present. Fails on the first
# finding (crash, leak, timeout, sanitizer report); the reproducer is left in
# build-fuzz/fuzz-run/<target>/ and its path printed.
#
#   bash tools/fuzz.sh [SECONDS] [TARGET...]
#
# Environment: FUZZ_RUNS=N also stops each target after N executions (the long
# runs of docs/reliability.md: FUZZ_RUNS=1000000 bash tools/fuzz.sh 600);
# FUZZ_NO_BUILD=1 uses the fuzzers already in build-fuzz/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors model_config speech_config audio_decode fbank
                                     tokenizer endpointer rpc_validation http_request_head)

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$(nproc)"
fi

testdata="${MTLA_TESTDATA_DIR:-../shared/testdata}"
# Extra seeds per target: globs under the shared test data (skipped when
# absent) and files of this repository; files over 1 MB are left out.
extra_seeds() {
  case "$1" in
    safetensors) echo "$testdata/mtla_reference/*.safetensors $testdata/fbank_reference/*.safetensors
                       $testdata/*/*/*.safetensors" ;;
    model_config) echo "$testdata/model_reference/*/config.json" ;;
    speech_config) echo "$testdata/st_reference/*/config.json $testdata/fairseq_st_reference/*/config.json
                         models/en-de-synthetic/config.json" ;;
    audio_decode|fbank|endpointer) echo "$testdata/audio/*.wav models/en-de-synthetic/sample.wav" ;;
    tokenizer) echo "$testdata/*/*/*.model models/en-de-synthetic/spm.model" ;;
    *) echo "" ;;
  esac
}

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
status=0
for t in "${targets[@]}"; do
  run="build-fuzz/fuzz-run/$t"
  rm -rf "$run"
  mkdir -p "$run/corpus" "$run/seeds"
  for f in $(extra_seeds "$t"); do
    [ -f "$f" ] && [ "$(stat -c %s "$f")" -le 1048576 ] && cp "$f" "$run/seeds/$(echo "$f" | tr '/' '_')"
  done
  log="$run/fuzz.log"
  # Whole files for the file formats; RPCs stay small (audio is encoded).
  max_len=1048576
  [ "$t" = rpc_validation ] && max_len=65536
  limits=(-max_total_time="$seconds")
  [ -n "${FUZZ_RUNS:-}" ] && limits+=(-runs="$FUZZ_RUNS")
  set +e
  nice -n 10 "build-fuzz/bin/fuzz_$t" "${limits[@]}" -timeout=30 -rss_limit_mb=4096 \
    -max_len="$max_len" -print_final_stats=1 -artifact_prefix="$run/" \
    "$run/corpus" "fuzz/corpus/$t" "$run/seeds" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  if [ $rc -ne 0 ]; then
    echo "fuzz_$t: FAILED (exit $rc) after ${runs} executions; log $log"
    grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" | head -20
    status=1
  else
    took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o '[0-9]* second' || echo "?")
    echo "fuzz_$t: ${runs} executions in ${took}s, no finding"
  fi
done
exit $status
