#include "bench/roofline/roofline.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#ifdef MTLA_HAVE_ONEDNN
#include "kernels/cpu/packed_linear.h"
#endif

namespace mtla::bench {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

double MeasureReadBandwidth(int64_t bytes, int passes) {
  constexpr int64_t kLine = 64;  // floats per unrolled step (4 AVX-512 vectors)
  const int64_t n = bytes / sizeof(float) / kLine * kLine;
  float* data = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  // First touch by the threads that read it later (static schedule).
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += kLine) {
    for (int64_t j = 0; j < kLine; ++j) data[i + j] = 1.0f;
  }
  double best = 0.0;
  volatile float sink = 0.0f;
  for (int p = 0; p < passes; ++p) {
    const double t0 = Now();
    float total = 0.0f;
#pragma omp parallel reduction(+ : total)
    {
      float acc[kLine] = {};
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; i += kLine) {
#pragma omp simd
        for (int64_t j = 0; j < kLine; ++j) acc[j] += data[i + j];
      }
      for (int64_t j = 0; j < kLine; ++j) total += acc[j];
    }
    const double t = Now() - t0;
    sink = sink + total;
    best = std::max(best, static_cast<double>(n * sizeof(float)) / t / 1e9);
  }
  std::free(data);
  return best;
}

double MeasureSgemmGflops(int n, int repeats, const char** library) {
  std::vector<float> a(static_cast<size_t>(n) * n), b(a.size()), c(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(i % 7) * 0.01f;
    b[i] = static_cast<float>(i % 5) * 0.01f;
  }
  std::function<void()> run;
#ifdef MTLA_HAVE_ONEDNN
  auto packed = cpu::PackedLinear::Create(b.data(), n, n);
  if (packed.ok() && (*packed)->Apply(a.data(), n, nullptr, c.data())) {
    *library = "oneDNN matmul, packed weights";
    const cpu::PackedLinear* w = packed->get();
    run = [&, w] { w->Apply(a.data(), n, nullptr, c.data()); };
  }
#endif
  if (!run) {
    *library = "OpenBLAS sgemm";
    run = [&] { cpu::Linear(a.data(), n, n, b.data(), nullptr, n, c.data()); };
  }
  run();  // warm-up
  double best = 0.0;
  for (int i = 0; i < repeats; ++i) {
    const double t0 = Now();
    run();
    best = std::max(best, 2.0 * n * n * static_cast<double>(n) / (Now() - t0) / 1e9);
  }
  return best;
}

Roofline MeasureRoofline() {
  Roofline r;
  r.threads = omp_get_max_threads();
  r.read_gb_per_s = MeasureReadBandwidth(int64_t{256} << 20, 8);
  r.sgemm_gflops = MeasureSgemmGflops(2048, 6, &r.sgemm_library);
  return r;
}

}  // namespace mtla::bench
