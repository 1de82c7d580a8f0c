// Drives a Scenario: closed loop (a fixed number of requests in flight) or
// open loop (requests arrive at a target rate, Poisson/gamma/constant gaps,
// optionally capped in flight), bounded by a request count and/or a duration
// so that it always stops by itself. Prints a progress line to stderr.
//
// Stopping: no request starts after `num_requests` have started or after
// `duration_s`. Requests still in flight then get `drain_timeout_s` to finish;
// whatever is left is cancelled and reported as unfinished.
#ifndef MTLA_TOOLS_BENCH_RUNNER_H_
#define MTLA_TOOLS_BENCH_RUNNER_H_

#include <cstdint>
#include <cstdio>
#include <vector>

#include "absl/status/status.h"
#include "tools/bench/arrivals.h"
#include "tools/bench/scenario.h"

namespace mtla::bench {

struct RunOptions {
  int64_t num_requests = 0;  // 0: no count bound
  double duration_s = 0;     // 0: no time bound
  int concurrency = 1;       // closed loop: requests in flight
  // Closed loop: the first `concurrency` requests start evenly spread over
  // this many seconds (request i at i * ramp_up_s / concurrency) instead of
  // all at once; each then is replaced as soon as it ends, as usual.
  double ramp_up_s = 0;
  double request_rate = 0;   // > 0: open loop at this many requests per second
  ArrivalKind arrival = ArrivalKind::kPoisson;
  double burstiness = 1;     // gamma shape
  int max_concurrency = 0;   // open loop: cap on requests in flight (0: none)
  double drain_timeout_s = 60;
  double progress_interval_s = 1;  // 0: no progress line
  uint64_t seed = 0;
  std::FILE* progress_out = stderr;
};

absl::Status ValidateRunOptions(const RunOptions& options);

struct RunResult {
  std::vector<RequestRecord> records;  // in completion order; times rebased on the run start
  double duration_s = 0;  // run start to the last request's end
  int64_t issued = 0;
};

RunResult Run(Scenario& scenario, const RunOptions& options);

}  // namespace mtla::bench

#endif  // MTLA_TOOLS_BENCH_RUNNER_H_
