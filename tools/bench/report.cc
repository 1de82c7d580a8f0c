#include "tools/bench/report.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mtla::bench {
namespace {

double PerSecond(double n, double seconds) { return seconds > 0 ? n / seconds : 0; }

nlohmann::json SummaryJson(const Summary& s, double scale) {
  return {{"count", s.count},         {"mean", s.mean * scale}, {"stddev", s.stddev * scale},
          {"min", s.min * scale},     {"p50", s.p50 * scale},   {"p90", s.p90 * scale},
          {"p95", s.p95 * scale},     {"p99", s.p99 * scale},   {"max", s.max * scale}};
}

}  // namespace

std::string StatusCodeName(int code) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  if (code >= 0 && code < static_cast<int>(std::size(kNames))) return kNames[code];
  return absl::StrCat("CODE_", code);
}

Report BuildReport(const ReportInput& input, const RunResult& run) {
  Report r;
  r.issued = run.issued;
  r.duration_s = run.duration_s;
  std::map<std::string, std::vector<double>> samples;
  for (const RequestRecord& rec : run.records) {
    if (rec.unfinished) {
      ++r.unfinished;
      continue;
    }
    if (rec.code != grpc::StatusCode::OK) {
      ++r.failed;
      const std::string name = StatusCodeName(rec.code);
      ++r.errors[name];
      r.first_error_message.emplace(name, rec.error_message);
      continue;
    }
    ++r.completed;
    r.input_tokens += rec.input_tokens;
    r.output_tokens += rec.output_tokens;
    bool good = true;
    for (const Slo& slo : input.slos) {
      auto it = rec.series.find(slo.series);
      if (it == rec.series.end() || it->second.empty()) {
        // No sample (e.g. TPOT of a one-token request): nothing to violate,
        // unless the series is TTFT/E2E, which every good request has.
        if (slo.series == "ttft_s" || slo.series == "e2e_s") good = false;
        continue;
      }
      if (*std::max_element(it->second.begin(), it->second.end()) > slo.limit) good = false;
    }
    if (good) ++r.good;
    for (const auto& [name, values] : rec.series) {
      auto& all = samples[name];
      all.insert(all.end(), values.begin(), values.end());
    }
  }
  for (const MetricDef& m : input.metrics) r.metrics.emplace_back(m, Summarize(samples[m.series]));
  return r;
}

std::string FormatTable(const ReportInput& input, const Report& r) {
  std::string out;
  auto line = [&](const std::string& label, const std::string& value) {
    absl::StrAppend(&out, absl::StrFormat("%-44s %s\n", label, value));
  };
  const std::string title = absl::StrCat(" mtla-bench: ", input.scenario, " ");
  const int pad = std::max(0, 72 - static_cast<int>(title.size())) / 2;
  absl::StrAppend(&out, std::string(pad, '='), title, std::string(pad, '='), "\n");
  std::string model = input.model.is_object() ? input.model.value("name", std::string("?")) : "?";
  if (input.model.is_object() && input.model.contains("backend")) {
    absl::StrAppend(&model, " (", input.model["backend"].get<std::string>(), ")");
  }
  line("Target", absl::StrCat(input.target, ", model ", model));
  line("Load", input.load);
  line("Workload", input.workload);
  line("Requests issued / ok / failed / unfinished",
       absl::StrCat(r.issued, " / ", r.completed, " / ", r.failed, " / ", r.unfinished));
  line("Duration (s)", absl::StrFormat("%.3f", r.duration_s));
  line("Request throughput (req/s)", absl::StrFormat("%.3f", PerSecond(r.completed, r.duration_s)));
  line("Input tokens / output tokens", absl::StrCat(r.input_tokens, " / ", r.output_tokens));
  line("Output token throughput (tok/s)",
       absl::StrFormat("%.2f", PerSecond(r.output_tokens, r.duration_s)));
  line("Total token throughput (tok/s)",
       absl::StrFormat("%.2f", PerSecond(r.input_tokens + r.output_tokens, r.duration_s)));
  std::string slos;
  for (const Slo& s : input.slos) {
    absl::StrAppend(&slos, slos.empty() ? "" : ", ", s.name, " <= ",
                    absl::StrFormat("%g", s.limit * s.scale));
  }
  line("Goodput (req/s)",
       absl::StrFormat("%.3f (%lld of %lld ok requests; SLO: %s)",
                       PerSecond(r.good, r.duration_s), static_cast<long long>(r.good),
                       static_cast<long long>(r.completed), slos.empty() ? "none" : slos));
  absl::StrAppend(&out, std::string(72, '-'), "\n");
  absl::StrAppend(&out, absl::StrFormat("%-26s %9s %9s %9s %9s %9s %9s\n", "Metric", "mean", "p50",
                                        "p90", "p95", "p99", "max"));
  for (const auto& [m, s] : r.metrics) {
    if (s.count == 0) {
      absl::StrAppend(&out, absl::StrFormat("%-26s %9s\n", absl::StrCat(m.label, " (", m.unit, ")"),
                                            "n/a"));
      continue;
    }
    absl::StrAppend(&out, absl::StrFormat("%-26s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n",
                                          absl::StrCat(m.label, " (", m.unit, ")"),
                                          s.mean * m.scale, s.p50 * m.scale, s.p90 * m.scale,
                                          s.p95 * m.scale, s.p99 * m.scale, s.max * m.scale));
  }
  if (!r.errors.empty()) {
    absl::StrAppend(&out, std::string(72, '-'), "\nErrors by status code\n");
    for (const auto& [name, count] : r.errors) {
      absl::StrAppend(&out, absl::StrFormat("  %-22s %8lld  e.g. \"%s\"\n", name,
                                            static_cast<long long>(count),
                                            r.first_error_message.at(name)));
    }
  }
  absl::StrAppend(&out, std::string(72, '='), "\n");
  return out;
}

nlohmann::json ToJson(const ReportInput& input, const Report& r) {
  nlohmann::json metrics = nlohmann::json::object();
  for (const auto& [m, s] : r.metrics) metrics[m.name + "_" + m.unit] = SummaryJson(s, m.scale);
  nlohmann::json slo = nlohmann::json::object();
  for (const Slo& s : input.slos) slo[s.name] = s.limit * s.scale;
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [name, count] : r.errors) errors[name] = count;
  return {
      {"scenario", input.scenario},
      {"target", input.target},
      {"model", input.model},
      {"load", input.load},
      {"workload", input.workload},
      {"config", input.config},
      {"duration_seconds", r.duration_s},
      {"requests",
       {{"issued", r.issued},
        {"completed", r.completed},
        {"failed", r.failed},
        {"unfinished", r.unfinished}}},
      {"tokens", {{"input", r.input_tokens}, {"output", r.output_tokens}}},
      {"throughput",
       {{"requests_per_second", PerSecond(r.completed, r.duration_s)},
        {"output_tokens_per_second", PerSecond(r.output_tokens, r.duration_s)},
        {"input_tokens_per_second", PerSecond(r.input_tokens, r.duration_s)},
        {"total_tokens_per_second", PerSecond(r.input_tokens + r.output_tokens, r.duration_s)}}},
      {"goodput",
       {{"slo", slo},
        {"good_requests", r.good},
        {"requests_per_second", PerSecond(r.good, r.duration_s)},
        {"fraction", r.completed > 0 ? static_cast<double>(r.good) / r.completed : 0.0}}},
      {"metrics", metrics},
      {"errors", errors},
  };
}

}  // namespace mtla::bench
