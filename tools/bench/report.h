// mtla-bench's report: throughput, per-metric summaries, goodput against SLOs
// and errors by status code, as a table (stdout) and as JSON (--json FILE).
//
// Throughputs divide by the run's duration (start to the last request's end)
// and count successful requests only. Goodput counts the successful requests
// that meet every SLO given (an SLO on a series holds when the request's
// largest sample of it is within the limit); with no SLO it equals the
// request throughput.
#ifndef MTLA_TOOLS_BENCH_REPORT_H_
#define MTLA_TOOLS_BENCH_REPORT_H_

#include <map>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tools/bench/runner.h"
#include "tools/bench/scenario.h"
#include "tools/bench/stats.h"

namespace mtla::bench {

struct Slo {
  std::string series;  // e.g. "ttft_s"
  std::string name;    // e.g. "ttft_ms"
  double limit = 0;    // in the series' unit (seconds)
  double scale = 1e3;  // limit -> the unit shown in `name` (ms)
};

struct ReportInput {
  std::string scenario;
  std::string target;       // address
  nlohmann::json model;     // from Models.GetModelInfo
  std::string load;         // "closed loop, concurrency 8" / "open loop, poisson 4 req/s"
  std::string workload;
  nlohmann::json config;    // every setting, for the JSON
  std::vector<MetricDef> metrics;
  std::vector<Slo> slos;
};

struct Report {
  int64_t issued = 0, completed = 0, failed = 0, unfinished = 0, good = 0;
  double duration_s = 0;
  int64_t input_tokens = 0, output_tokens = 0;
  std::map<std::string, int64_t> errors;  // status code name -> count
  std::map<std::string, std::string> first_error_message;  // status name -> example message
  std::vector<std::pair<MetricDef, Summary>> metrics;
};

// "OK", "CANCELLED", ..., "UNAUTHENTICATED" (gRPC's canonical names).
std::string StatusCodeName(int code);

Report BuildReport(const ReportInput& input, const RunResult& run);
std::string FormatTable(const ReportInput& input, const Report& report);
nlohmann::json ToJson(const ReportInput& input, const Report& report);

}  // namespace mtla::bench

#endif  // MTLA_TOOLS_BENCH_REPORT_H_
