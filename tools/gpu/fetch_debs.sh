#!/usr/bin/env bash
# Fetches the Debian packages the GPU-only build needs on the device machine
# (which has nvcc, CMake, ninja and a compiler but no Debian dev packages and
# no network) into .gpu/debs (ignored by git; carried by the device tool).
# Run here, once, from the repository root: bash tools/gpu/fetch_debs.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
mkdir -p .gpu/debs
cd .gpu/debs
# abseil (headers, CMake config, shared libs), GoogleTest/GoogleMock,
# nlohmann-json, OpenBLAS built on OpenMP (and its Fortran runtime).
apt-get download libabsl-dev libabsl20220623 libgtest-dev libgmock-dev nlohmann-json3-dev \
  libopenblas-openmp-dev libopenblas0-openmp libopenblas-dev libgfortran5 >/dev/null
cd ../..
# The shared reference data the conformance run needs (small).
rm -rf .gpu/testdata && mkdir -p .gpu/testdata
for d in model_reference st_reference; do
  [ -d ../shared/testdata/$d ] && cp -r ../shared/testdata/$d .gpu/testdata/
done
du -sh .gpu
