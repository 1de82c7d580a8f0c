// The pieces a benchmark scenario plugs into mtla-bench's runner and report.
//
// A scenario turns a request index into one asynchronous RPC and reports what
// it measured as a RequestRecord: a status, token counts and named series of
// samples in seconds (or unitless). The runner (arrivals, concurrency, bounds,
// progress, cancellation) and the report (percentiles, goodput, errors, JSON)
// know nothing about the RPC: they iterate over Metrics().
//
// Two scenarios exist: text generation (text_scenario.h) and streaming
// speech translation (speech_scenario.h, with series "chunk_latency_s",
// "rtf", "ttft_s", "final_after_audio_s" and "e2e_s"); main.cc selects one
// with --scenario. Another RPC plugs in as one more Scenario class.
#ifndef MTLA_TOOLS_BENCH_SCENARIO_H_
#define MTLA_TOOLS_BENCH_SCENARIO_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/support/status.h"
#include "nlohmann/json.hpp"

namespace mtla::bench {

struct RequestRecord {
  int64_t index = 0;
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string error_message;
  // The bench cancelled it because the run ended (duration or drain timeout);
  // such requests are neither successes nor errors.
  bool unfinished = false;
  // Steady-clock seconds (SteadySeconds()); the runner rebases them on the
  // run's start.
  double start_s = 0;
  double end_s = 0;
  int64_t input_tokens = 0;   // prompt tokens (as the server counted them, when it says)
  int64_t output_tokens = 0;  // generated tokens received
  // Named samples, e.g. "ttft_s" (one), "itl_s" (one per gap), "e2e_s" (one).
  std::map<std::string, std::vector<double>> series;
};

// One metric of the report: the samples of `series` across all successful
// requests, multiplied by `scale` and shown with `unit`.
struct MetricDef {
  std::string series;  // key in RequestRecord::series
  std::string name;    // report name, e.g. "ttft"; JSON key is name + "_" + unit
  std::string label;   // table label, e.g. "Time to first token"
  std::string unit;    // "ms", "x", ...
  double scale = 1;    // sample -> unit
};

// An RPC in flight, as the runner sees it.
// Seconds on the steady clock (arbitrary epoch, same for the whole process).
inline double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Call {
 public:
  virtual ~Call() = default;
  // Asks the call to end now (it still reports through its done callback).
  virtual void Cancel() = 0;
};

class Scenario {
 public:
  using Done = std::function<void(RequestRecord)>;
  virtual ~Scenario() = default;

  virtual std::string name() const = 0;
  // One line for the report header (workload, sampling).
  virtual std::string Describe() const = 0;
  virtual std::vector<MetricDef> Metrics() const = 0;
  // Starts request `index`; `done` is called exactly once, from any thread
  // (possibly before Start returns). The returned handle stays valid as long
  // as the caller holds it, even after `done`.
  virtual std::shared_ptr<Call> Start(int64_t index, Done done) = 0;
  // Scenario-specific settings recorded in the JSON report.
  virtual nlohmann::json Config() const = 0;
};

}  // namespace mtla::bench

#endif  // MTLA_TOOLS_BENCH_SCENARIO_H_
