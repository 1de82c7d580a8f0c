#!/usr/bin/env bash
# One call on a lent GPU machine (docs/gpu.md has the device `run`
# invocation): pre-flight record, dependencies from the carried Debian
# packages, a build of the CUDA targets only, the CUDA tests, compute-sanitizer
# memcheck on a few kernel cases, the model conformance check on the GPU (fp32
# tokens exact, bf16 within tolerance) over the model directories the CUDA
# backend supports, and the CUDA benchmarks.
#
# One global deadline (MTLA_GPU_BUDGET_SECONDS, default 540 s, inside the
# tool's 10 minutes): every phase gets what is left of it, less a reserve for
# the phases after it. $OUT/summary.md gets one row appended as each phase
# ends, so a run killed half-way still reports what it did.
#
# Needs only nvcc, CMake, ninja (or make) and a C++ compiler there: no Debian
# dev packages, no network. Prerequisite (here, once): bash tools/gpu/fetch_debs.sh
# Environment: OUT (results), MTLA_CUDA_ARCHS (default 90a), JOBS,
# MTLA_GPU_BUDGET_SECONDS, MTLA_GPU_BUILD_SECONDS (the build's cap), MTLA_GPU_BUILD
# (build folder).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
OUT=${OUT:-/tmp/mtla-gpu-out}
mkdir -p "$OUT"
JOBS=${JOBS:-$(nproc)}
DEPS=/tmp/mtla-deps
BUILD=${MTLA_GPU_BUILD:-/tmp/mtla-build-gpu}
ARCHS=${MTLA_CUDA_ARCHS:-90a}
BUDGET=${MTLA_GPU_BUDGET_SECONDS:-540}
BUILD_MAX=${MTLA_GPU_BUILD_SECONDS:-330}  # the build's own cap within the budget
start=$(date +%s)
deadline=$((start + BUDGET))
SUMMARY="$OUT/summary.md"

left() { echo $((deadline - $(date +%s))); }
# Seconds a phase may take: at most $1, and never more than what is left less
# $2 (the reserve for what comes after); 0 when nothing is left for it.
allot() {
  local want=$1 reserve=$2 have
  have=$(($(left) - reserve))
  [ "$have" -lt "$want" ] && want=$have
  [ "$want" -lt 0 ] && want=0
  echo "$want"
}
row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3" >> "$SUMMARY"; }
since() { echo "$(($(date +%s) - $1)) s"; }
verdict() {
  case "$1" in 0) echo PASS ;; 77) echo SKIP ;; 124) echo TIMEOUT ;; *) echo "FAIL (rc $1)" ;; esac
}

device=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
{
  echo "# MTLA CUDA run on ${device:-no GPU visible (nvidia-smi failed)}"
  echo
  echo "Started $(date -u +%FT%TZ); budget ${BUDGET} s; sm ${ARCHS}; $(nproc) CPUs."
  echo
  echo "| phase | result | detail |"
  echo "|---|---|---|"
} > "$SUMMARY"

# 1. Pre-flight: what this machine has, before anything depends on it.
t0=$(date +%s)
cublas_root=""
for dir in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x)")")"; do
  if [ -n "$dir" ] && [ -f "$dir/include/cublas_v2.h" ] && ls "$dir"/lib*/libcublas.so* > /dev/null 2>&1; then
    cublas_root=toolkit:$dir
    break
  fi
done
if [ -z "$cublas_root" ]; then  # a Python wheel's copy (nvidia-cublas)
  wheel=$(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))' 2>/dev/null \
          || python3 -c 'import nvidia.cublas; print(list(nvidia.cublas.__path__)[0])' 2>/dev/null)
  if [ -n "$wheel" ] && [ -f "$wheel/include/cublas_v2.h" ]; then cublas_root=wheel:$wheel; fi
fi
{
  echo "## OS"; cat /etc/os-release 2>/dev/null | head -4; uname -a
  echo "## compiler"; c++ --version 2>&1 | head -1
  echo "## cmake"; cmake --version 2>&1 | head -1
  echo "## generator"; command -v ninja > /dev/null && echo "ninja $(ninja --version)" || echo "make (no ninja)"
  echo "## nvcc"; nvcc --version 2>&1 | tail -2
  echo "## GPU"; nvidia-smi 2>&1 | head -15
  echo "## compute-sanitizer"; command -v compute-sanitizer || echo "not found"
  echo "## cuBLAS headers and libraries"; echo "${cublas_root:-not found}"
  echo "## carried packages"; ls .gpu/debs 2>&1
} > "$OUT/preflight.md" 2>&1
row pre-flight "done" "$(c++ --version 2>&1 | head -1 | cut -c1-40); $(cmake --version | head -1); cuBLAS ${cublas_root:-NOT FOUND}; preflight.md, $(since $t0)"

# 2. Dependencies from the carried packages, never unpacked into /.
t0=$(date +%s)
mkdir -p "$DEPS"
ndebs=0
for f in .gpu/debs/*.deb; do [ -f "$f" ] && dpkg -x "$f" "$DEPS" && ndebs=$((ndebs + 1)); done
export LD_LIBRARY_PATH="$DEPS/usr/lib/x86_64-linux-gnu:$DEPS/usr/lib/x86_64-linux-gnu/openblas-openmp:${LD_LIBRARY_PATH:-}"
if [ "$ndebs" = 0 ]; then
  row dependencies "FAIL" "no .gpu/debs/*.deb (run tools/gpu/fetch_debs.sh here, carry .gpu)"
  exit 1
fi
row dependencies "done" "$ndebs packages unpacked into $DEPS, $(since $t0)"

# 3. Configure and build the CUDA targets only. Packages are looked up only
# under $DEPS (CMAKE_FIND_ROOT_PATH ... ONLY), as they would be on a bare
# machine, so a rehearsal elsewhere proves the same lookup.
t0=$(date +%s)
targets="mtla_cuda_backend mtla_attention_cuda_test mtla_append_cuda_test ops_cuda_test
         cuda_model_backend_test mtla-conformance-model cuda_decode_attention_bench cuda_decode_step_bench"
generator=$(command -v ninja > /dev/null && echo Ninja || echo "Unix Makefiles")
extra=()
case "$cublas_root" in wheel:*) extra+=(-DMTLA_CUBLAS_ROOT="${cublas_root#wheel:}") ;; esac
if timeout "$(allot "$BUILD_MAX" 120)" cmake -S tools/gpu -B "$BUILD" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
     -DMTLA_DEPS_PREFIX="$DEPS" -DMTLA_TESTDATA_DIR="$root/.gpu/testdata" \
     -DCMAKE_FIND_ROOT_PATH="$DEPS" -DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=ONLY \
     -DMTLA_DNNL_LIBRARY=OFF -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" "${extra[@]}" > "$OUT/build.log" 2>&1 &&
   timeout "$(allot "$BUILD_MAX" 120)" cmake --build "$BUILD" -j "$JOBS" --target $targets >> "$OUT/build.log" 2>&1; then
  row build "PASS" "sm ${ARCHS}, $(since $t0)"
else
  rc=$?
  row build "$(verdict $rc)" "build.log: $(grep -m1 -E 'error|Error' "$OUT/build.log" | cut -c1-160)"
  echo "total $(since $start)" >> "$SUMMARY"
  cat "$SUMMARY"
  exit 1
fi

# 4. CUDA tests (GoogleTest through ctest).
t0=$(date +%s)
timeout "$(allot 200 150)" ctest --test-dir "$BUILD" -j 4 --output-on-failure \
  -R 'Cuda|cuda|BackendFactory|MtlaAttentionPlan' > "$OUT/ctest.log" 2>&1
rc=$?
line=$(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1)
skipped=$(grep -c '\*\*\*Skipped' "$OUT/ctest.log")
row "CUDA tests" "$(verdict $rc)" "${line:-no summary}, ${skipped} skipped, $(since $t0)"

# 5. compute-sanitizer memcheck on a few kernel cases (attention decode and
# prefill, append, the q-LoRA model path and the plugin).
t0=$(date +%s)
if command -v compute-sanitizer > /dev/null; then
  : > "$OUT/memcheck.log"
  rc=0
  while read -r binary filter; do
    timeout "$(allot 60 100)" compute-sanitizer --tool memcheck --error-exitcode 99 \
      "$BUILD/tests/$binary" --gtest_filter="$filter" >> "$OUT/memcheck.log" 2>&1 || rc=$?
  done <<'CASES'
mtla_attention_cuda_test Sweep/MtlaAttentionCudaTest.MatchesCpuReference/decode_r256_dr32_h8_s2_*:Sweep/MtlaAttentionCudaTest.MatchesCpuReference/prefill_r512_dr64_*
mtla_append_cuda_test Sweep/MtlaAppendCudaTest.MatchesCpuReference/*s3*:MtlaPrefixPipelineCuda.*
cuda_model_backend_test DownRates/CudaModelBackendTest.MatchesCpuBackend/s2_bf16:BackendFactory.PluginBackendMatchesCpu
CASES
  errors=$(grep -E 'ERROR SUMMARY: [0-9]+' "$OUT/memcheck.log" | awk '{s += $4} END {print s + 0}')
  row "memcheck" "$([ "$rc" = 0 ] && [ "$errors" = 0 ] && echo PASS || echo "FAIL (rc $rc)")" \
    "$errors errors reported; memcheck.log, $(since $t0)"
else
  row "memcheck" "SKIP" "compute-sanitizer not on PATH"
fi

# 6. Conformance on the GPU over every carried model directory; directories
# whose dims have no CUDA kernel are reported SKIP by the tool, not FAIL.
: > "$OUT/conformance.log"
for dtype in fp32 bf16; do
  t0=$(date +%s)
  if ls -d .gpu/testdata/model_reference/*/ > /dev/null 2>&1; then
    timeout "$(allot 90 60)" "$BUILD/bin/mtla-conformance-model" --device=cuda --dtype=$dtype \
      .gpu/testdata/model_reference/*/ >> "$OUT/conformance.log" 2>&1
    rc=$?
    row "conformance model $dtype" "$(verdict $rc)" \
      "$(grep -E '^[0-9]+ checks' "$OUT/conformance.log" | tail -1), $(since $t0)"
  else
    row "conformance model $dtype" "SKIP" "no .gpu/testdata (run tools/gpu/fetch_debs.sh)"
  fi
done

# 7. Benchmarks (Markdown tables) with what is left.
t0=$(date +%s)
limit=$(allot 150 40)
if [ "$limit" -gt 20 ]; then
  timeout "$limit" "$BUILD/bin/cuda_decode_attention_bench" > "$OUT/attention_bench.md" 2>&1
  row "decode attention bench" "$(verdict $?)" "attention_bench.md, $(since $t0)"
else
  row "decode attention bench" "SKIP" "no time left"
fi
t0=$(date +%s)
limit=$(allot 200 10)
if [ "$limit" -gt 20 ]; then
  timeout "$limit" "$BUILD/bin/cuda_decode_step_bench" > "$OUT/step_bench.md" 2>&1
  row "decode step bench" "$(verdict $?)" "step_bench.md, $(since $t0)"
else
  row "decode step bench" "SKIP" "no time left"
fi

echo >> "$SUMMARY"
echo "total $(since $start)" >> "$SUMMARY"
cat "$SUMMARY"
