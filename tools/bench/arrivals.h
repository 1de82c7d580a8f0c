// Inter-arrival times for mtla-bench's open-loop mode.
//
//   poisson:  exponential gaps with mean 1/rate.
//   gamma:    gamma gaps with shape k = burstiness and scale 1/(rate * k), so
//             the mean stays 1/rate; k < 1 is burstier than Poisson, k > 1 is
//             smoother, k = 1 is Poisson (vLLM's --burstiness).
//   constant: every gap is exactly 1/rate.
#ifndef MTLA_TOOLS_BENCH_ARRIVALS_H_
#define MTLA_TOOLS_BENCH_ARRIVALS_H_

#include <cstdint>
#include <random>
#include <string>

#include "absl/status/statusor.h"

namespace mtla::bench {

enum class ArrivalKind { kPoisson, kGamma, kConstant };

absl::StatusOr<ArrivalKind> ParseArrivalKind(const std::string& name);
std::string ArrivalKindName(ArrivalKind kind);

class ArrivalProcess {
 public:
  // rate > 0 requests per second; burstiness > 0 (used by kGamma only).
  ArrivalProcess(ArrivalKind kind, double rate, double burstiness, uint64_t seed);
  // Seconds until the next arrival.
  double NextGap();

 private:
  ArrivalKind kind_;
  double rate_;
  std::mt19937_64 rng_;
  std::exponential_distribution<double> exponential_;
  std::gamma_distribution<double> gamma_;
};

}  // namespace mtla::bench

#endif  // MTLA_TOOLS_BENCH_ARRIVALS_H_
