// This machine's roofline: sustained read bandwidth and fp32 GEMM peak,
// measured with the process's OpenMP threads (OMP_NUM_THREADS), so decode
// benchmarks can report their achieved share of the bound next to the time.
//
// Thread-compatible: call from one thread; each call runs its own OpenMP
// parallel regions and takes about one second.
#ifndef MTLA_BENCH_ROOFLINE_ROOFLINE_H_
#define MTLA_BENCH_ROOFLINE_ROOFLINE_H_

#include <cstdint>

namespace mtla::bench {

struct Roofline {
  int threads = 0;
  double read_gb_per_s = 0.0;  // best of several passes summing a buffer far larger than L3
  double sgemm_gflops = 0.0;   // best of several n x n x n fp32 GEMMs (oneDNN, packed weights)
  const char* sgemm_library = "";
};

// Reads `bytes` (rounded down to 256-byte multiples) `passes` times after a
// first-touch pass by the same threads; returns the best pass in GB/s (1e9).
double MeasureReadBandwidth(int64_t bytes, int passes);

// C[n, n] = A[n, n] B[n, n]^T through the CPU backend's linear-layer path
// (oneDNN matmul on pre-packed weights when built with oneDNN, else OpenBLAS
// sgemm); returns the best of `repeats` in GFLOP/s (2 n^3 flops each).
double MeasureSgemmGflops(int n, int repeats, const char** library);

// Both, with sizes fit for this project's machines (256 MiB buffer, n = 2048).
Roofline MeasureRoofline();

// Time of a step bound by memory or by arithmetic, in seconds.
inline double MemoryBoundSeconds(const Roofline& r, double bytes) {
  return bytes / (r.read_gb_per_s * 1e9);
}
inline double ComputeBoundSeconds(const Roofline& r, double flops) {
  return flops / (r.sgemm_gflops * 1e9);
}

}  // namespace mtla::bench

#endif  // MTLA_BENCH_ROOFLINE_ROOFLINE_H_
