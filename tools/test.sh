#!/usr/bin/env bash
# The README's test command: install, build, run the whole test suite (ctest).
# GPU tests skip with a visible reason where no device is present; tests that
# need ../shared/testdata skip visibly where it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh "$@"
ctest --preset release -j "$(nproc)" --timeout 600
