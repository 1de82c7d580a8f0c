// Summary statistics for mtla-bench: mean, percentiles (linear interpolation
// between closest ranks, as numpy.percentile's default), min, max.
#ifndef MTLA_TOOLS_BENCH_STATS_H_
#define MTLA_TOOLS_BENCH_STATS_H_

#include <cstdint>
#include <vector>

namespace mtla::bench {

struct Summary {
  int64_t count = 0;
  double mean = 0, stddev = 0, min = 0, max = 0;
  double p50 = 0, p90 = 0, p95 = 0, p99 = 0;
};

// p in [0, 100]. `sorted` must be sorted ascending and non-empty.
double Percentile(const std::vector<double>& sorted, double p);

// Summary of `values` (any order). All zero with count 0 when empty.
Summary Summarize(std::vector<double> values);

}  // namespace mtla::bench

#endif  // MTLA_TOOLS_BENCH_STATS_H_
