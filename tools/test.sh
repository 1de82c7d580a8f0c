#!/usr/bin/env bash
# The README's test command: install, build, run the whole test suite (ctest),
# then the sanitizer phases (tools/sanitize.sh: the suite under ASan + UBSan,
# the threaded tests under TSan, clang's thread-safety analysis, the fuzzers
# briefly). GPU tests skip with a visible reason where no device is present;
# tests that need ../shared/testdata skip visibly where it is absent.
# MTLA_SKIP_SANITIZERS=1 stops after the Release suite.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash tools/build.sh "$@"
ctest --preset release -j "$(nproc)" --timeout 600
echo "=== release build and suite passed in $(( $(date +%s) - start )) s"
[ -n "${MTLA_SKIP_SANITIZERS:-}" ] && exit 0
bash tools/sanitize.sh
echo "=== all phases passed in $(( $(date +%s) - start )) s"
