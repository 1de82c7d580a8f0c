// Prints this machine's roofline (bench/roofline/roofline.h): read bandwidth
// and fp32 GEMM peak with OMP_NUM_THREADS threads (default: all cores), and
// the ridge point in FLOP per byte.
//
//   build/bin/mtla_roofline
#include <cstdio>

#include "bench/roofline/roofline.h"

int main() {
  const mtla::bench::Roofline r = mtla::bench::MeasureRoofline();
  std::printf("threads                 %d\n", r.threads);
  std::printf("read bandwidth          %.1f GB/s (256 MiB buffer, best of 8)\n", r.read_gb_per_s);
  std::printf("sgemm peak              %.1f GFLOP/s (2048^3, %s, best of 6)\n", r.sgemm_gflops,
              r.sgemm_library);
  std::printf("ridge point             %.2f FLOP/byte\n", r.sgemm_gflops / r.read_gb_per_s);
  return 0;
}
