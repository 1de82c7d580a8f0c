#!/usr/bin/env bash
# The sanitizer phases of CI (tools/test.sh runs them all after the Release
# suite; docs/reliability.md says what each covers and costs):
#   asan  the whole ctest suite built with ASan + UBSan (build-asan/); UBSan
#         halts on the first report (-fno-sanitize-recover=undefined)
#   tsan  the `threaded` tests (engine, scheduler, request streams, server
#         integration, speech end to end, call limits and timer, network
#         faults, SIGTERM under load) under ThreadSanitizer (build-tsan/),
#         with absl::Mutex instrumented (tools/tsan_absl.sh)
#   tsa   clang -Wthread-safety -Werror=thread-safety build of engine/ and
#         server/ (build-tsa/)
#   fuzz  every fuzzer for FUZZ_SECONDS (default 20) over its seeds (tools/fuzz.sh)
#
#   bash tools/sanitize.sh [PHASE...]     (default: asan tsan tsa fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(asan tsan tsa fuzz)
jobs="$(nproc)"

# Sanitizer reports fail the test that produced them. Tests run with passive
# OpenMP waiting (see mtla_test in CMakeLists.txt).
export OMP_WAIT_POLICY=PASSIVE
asan() {
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$jobs"
  ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1" \
  LSAN_OPTIONS="suppressions=$PWD/tools/lsan.supp" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --preset asan -j "$jobs" --timeout 1200
}
tsan() {
  bash tools/tsan_absl.sh
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan -j "$jobs"
  # OpenMP (libgomp) and OpenBLAS are not instrumented: one OpenMP thread,
  # and TSan ignores what their modules do.
  OMP_NUM_THREADS=1 \
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$PWD/tools/tsan.supp" \
    ctest --preset tsan -L threaded -j "$jobs" --timeout 1200
}
tsa() {
  cmake --preset tsa >/dev/null
  cmake --build --preset tsa -j "$jobs"
  echo "thread-safety analysis: engine/ and server/ build clean with -Werror=thread-safety"
}
fuzz() {
  bash tools/fuzz.sh "${FUZZ_SECONDS:-20}"
}

for p in "${phases[@]}"; do
  start=$(date +%s)
  echo "=== sanitize: $p"
  "$p"
  echo "=== sanitize: $p passed in $(( $(date +%s) - start )) s"
done
