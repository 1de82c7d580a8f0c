#!/usr/bin/env bash
# Installs missing Debian packages (tools/setup.sh) and builds everything into
# build/ (CUDA parts too when nvcc is found). Extra arguments go to CMake's
# configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cmake --preset release "$@" >/dev/null
cmake --build --preset release -j "$(nproc)"
