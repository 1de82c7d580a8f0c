#!/usr/bin/env bash
# One call on the lent GPU machine (see docs/gpu.md for the device `run`
# invocation): unpack the carried Debian packages, build the GPU-only tree
# (tools/gpu/CMakeLists.txt), run the CUDA tests, the model conformance check
# on the GPU in fp32 and bf16, and the CUDA benchmarks; write logs and, last,
# summary.md into $OUT. Each phase has its own time limit so that the whole
# call ends inside the tool's 10 minutes and the summary is always written.
#
# Prerequisite (here, once): bash tools/gpu/fetch_debs.sh   (fills .gpu/)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mtla-gpu-out}
mkdir -p "$OUT"
JOBS=${JOBS:-$(nproc)}
DEPS=/tmp/mtla-deps
BUILD=/tmp/mtla-build-gpu
ARCHS=${MTLA_CUDA_ARCHS:-80;90a}
start=$(date +%s)
summary=()
row() { summary+=("| $1 | $2 | $3 |"); }

# 1. Dependencies from the carried packages (never unpacked into /).
mkdir -p "$DEPS"
for f in .gpu/debs/*.deb; do dpkg -x "$f" "$DEPS"; done
export LD_LIBRARY_PATH="$DEPS/usr/lib/x86_64-linux-gnu:$DEPS/usr/lib/x86_64-linux-gnu/openblas-openmp:${LD_LIBRARY_PATH:-}"
device=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)
{ nvidia-smi; nvcc --version; cmake --version | head -1; } > "$OUT/device.txt" 2>&1

# 2. Build.
t0=$(date +%s)
if timeout 330 cmake -S tools/gpu -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
     -DMTLA_DEPS_PREFIX="$DEPS" -DMTLA_TESTDATA_DIR="$PWD/.gpu/testdata" \
     -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" > "$OUT/build.log" 2>&1 &&
   timeout 330 cmake --build "$BUILD" -j "$JOBS" >> "$OUT/build.log" 2>&1; then
  row build "PASS" "sm ${ARCHS}, $(( $(date +%s) - t0 )) s"
  built=1
else
  row build "FAIL" "see build.log (tail: $(tail -1 "$OUT/build.log" | cut -c1-120))"
  built=0
fi

if [ "$built" = 1 ]; then
  # 3. CUDA tests (GoogleTest through ctest).
  t0=$(date +%s)
  timeout 200 ctest --test-dir "$BUILD" -j 4 --output-on-failure \
    -R 'Cuda|cuda|BackendFactory|MtlaAttentionPlan' > "$OUT/ctest.log" 2>&1
  rc=$?
  line=$(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1)
  row "CUDA tests" "$([ $rc = 0 ] && echo PASS || echo FAIL)" "${line:-rc $rc}, $(( $(date +%s) - t0 )) s"

  # 4. Conformance on the GPU: fp32 (tokens exact) and bf16 (stated tolerance).
  : > "$OUT/conformance.log"
  for dtype in fp32 bf16; do
    if ls -d .gpu/testdata/model_reference/*/ > /dev/null 2>&1; then
      timeout 60 "$BUILD/bin/mtla-conformance-model" --device=cuda --dtype=$dtype \
        .gpu/testdata/model_reference/*/ >> "$OUT/conformance.log" 2>&1
      rc=$?
      row "conformance model $dtype" "$([ $rc = 0 ] && echo PASS || echo FAIL)" \
        "$(grep -E '^[0-9]+ checks' "$OUT/conformance.log" | tail -1)"
    else
      row "conformance model $dtype" "SKIP" "no .gpu/testdata (run tools/gpu/fetch_debs.sh)"
    fi
  done

  # 5. Benchmarks (Markdown tables).
  remaining=$(( 570 - ($(date +%s) - start) ))
  if [ $remaining -gt 60 ]; then
    timeout $(( remaining / 2 )) "$BUILD/bin/cuda_decode_attention_bench" > "$OUT/attention_bench.md" 2>&1
    row "decode attention bench" "rc $?" "attention_bench.md"
  fi
  remaining=$(( 570 - ($(date +%s) - start) ))
  if [ $remaining -gt 30 ]; then
    timeout $(( remaining - 10 )) "$BUILD/bin/cuda_decode_step_bench" > "$OUT/step_bench.md" 2>&1
    row "decode step bench" "rc $?" "step_bench.md"
  fi
fi

# 6. Summary, last.
{
  echo "# MTLA CUDA run on ${device}"
  echo
  echo "| phase | result | detail |"
  echo "|---|---|---|"
  printf '%s\n' "${summary[@]}"
  echo
  echo "total $(( $(date +%s) - start )) s"
} > "$OUT/summary.md"
cat "$OUT/summary.md"
