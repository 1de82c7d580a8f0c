// Tests for the service's Prometheus metrics: every family is exposed under its
// exact name, with help text, the expected type, labels, buckets and values,
// and the exposition passes `promtool check metrics`.
#include "engine/metrics/serving_metrics.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace mtla {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr char kModel[] = "mtla-test";

// The exposed names and types: the service's contract with dashboards.
const std::map<std::string, std::string>& ExpectedFamilies() {
  static const std::map<std::string, std::string> families = {
      {"mtla_time_to_first_token_seconds", "histogram"},
      {"mtla_inter_token_latency_seconds", "histogram"},
      {"mtla_e2e_request_latency_seconds", "histogram"},
      {"mtla_request_queue_time_seconds", "histogram"},
      {"mtla_step_duration_seconds", "histogram"},
      {"mtla_batch_size", "histogram"},
      {"mtla_real_time_factor", "histogram"},
      {"mtla_chunk_response_latency_seconds", "histogram"},
      {"mtla_num_requests_running", "gauge"},
      {"mtla_num_requests_waiting", "gauge"},
      {"mtla_kv_cache_usage_ratio", "gauge"},
      {"mtla_kv_cache_blocks_total", "counter"},
      {"mtla_kv_cache_blocks_used", "gauge"},
      {"mtla_kv_cache_bytes_per_token", "gauge"},
      {"mtla_prompt_tokens_total", "counter"},
      {"mtla_generation_tokens_total", "counter"},
      {"mtla_num_preemptions_total", "counter"},
      {"mtla_audio_seconds_total", "counter"},
      {"mtla_segments_total", "counter"},
      {"mtla_requests_total", "counter"},
      {"mtla_interim_decodes_total", "counter"},
      {"mtla_early_finals_total", "counter"},
      {"mtla_iteration_tokens", "histogram"},
      {"mtla_request_prompt_tokens", "histogram"},
      {"mtla_request_generation_tokens", "histogram"},
      {"mtla_request_params_max_tokens", "histogram"},
      {"mtla_request_time_per_output_token_seconds", "histogram"},
      {"mtla_request_prefill_time_seconds", "histogram"},
      {"mtla_request_decode_time_seconds", "histogram"},
      {"mtla_request_inference_time_seconds", "histogram"},
      {"mtla_cache_config_info", "gauge"},
      {"mtla_build_info", "gauge"},
      {"mtla_speech_sessions", "gauge"},
      {"mtla_encoder_batch_size", "histogram"},
      {"mtla_encoder_batch_duration_seconds", "histogram"},
      {"mtla_encoder_queue_time_seconds", "histogram"},
      {"mtla_open_calls", "gauge"},
      {"mtla_calls_limited_total", "counter"},
  };
  return families;
}

std::string Expose(const ServingMetrics& m) {
  return prometheus::TextSerializer().Serialize(m.registry()->Collect());
}

// The parsed exposition: family name -> TYPE and HELP, and series (name plus
// label set, as written) -> value.
struct Exposition {
  std::map<std::string, std::string> types;
  std::map<std::string, std::string> helps;
  std::map<std::string, double> samples;
  std::vector<std::string> series_order;

  double Value(const std::string& series) const {
    auto it = samples.find(series);
    EXPECT_NE(it, samples.end()) << "missing series " << series;
    return it == samples.end() ? -1 : it->second;
  }
  // The `le` values of a histogram's buckets, in exposition order.
  std::vector<std::string> BucketBounds(const std::string& family) const {
    std::vector<std::string> bounds;
    const std::string prefix = family + "_bucket{model_name=\"" + kModel + "\",le=\"";
    for (const std::string& s : series_order) {
      if (s.rfind(prefix, 0) == 0) bounds.push_back(s.substr(prefix.size(), s.size() - prefix.size() - 2));
    }
    return bounds;
  }
};

Exposition Parse(const std::string& text) {
  Exposition e;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream fields(line);
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string hash, kw, name, type;
      fields >> hash >> kw >> name >> type;
      e.types[name] = type;
    } else if (line.rfind("# HELP ", 0) == 0) {
      std::string hash, kw, name;
      fields >> hash >> kw >> name;
      std::string help;
      std::getline(fields, help);
      e.helps[name] = help;
    } else if (line[0] != '#') {
      const size_t space = line.rfind(' ');
      const std::string series = line.substr(0, space);
      e.samples[series] = std::stod(line.substr(space + 1));
      e.series_order.push_back(series);
    }
  }
  return e;
}

std::string Series(const std::string& name, const std::string& extra_labels = "") {
  return name + "{model_name=\"" + kModel + "\"" + extra_labels + "}";
}

// A series of mtla_requests_total or mtla_segments_total (prometheus-cpp
// writes labels in name order).
std::string Outcome(const std::string& name, const std::string& status,
                    const std::string& finished_reason) {
  return name + "{finished_reason=\"" + finished_reason + "\",model_name=\"" + kModel +
         "\",status=\"" + status + "\"}";
}

// The families whose series carry labels beyond model_name (checked apart).
bool Labelled(const std::string& name) {
  return name == "mtla_requests_total" || name == "mtla_segments_total" ||
         name == "mtla_interim_decodes_total" || name == "mtla_early_finals_total" ||
         name == "mtla_cache_config_info" ||
         name == "mtla_build_info" || name == "mtla_calls_limited_total";
}

std::vector<std::string> ToStrings(const std::vector<double>& values) {
  std::vector<std::string> out;
  for (double v : values) {
    std::ostringstream s;
    s << v;
    out.push_back(s.str());
  }
  out.push_back("+Inf");
  return out;
}

TEST(ServingMetricsTest, FreshRegistryExposesEveryFamilyAtZero) {
  ServingMetrics m(kModel);
  const Exposition e = Parse(Expose(m));
  std::map<std::string, std::string> types(e.types.begin(), e.types.end());
  // The cache's configuration appears once an engine set it.
  std::map<std::string, std::string> expected = ExpectedFamilies();
  expected.erase("mtla_cache_config_info");
  EXPECT_EQ(types, expected);
  for (const auto& [name, type] : expected) {
    ASSERT_TRUE(e.helps.count(name)) << "no HELP for " << name;
    EXPECT_GT(e.helps.at(name).size(), 10u) << name;
    if (type == "histogram") {
      EXPECT_EQ(e.Value(Series(name + "_count")), 0) << name;
      EXPECT_EQ(e.Value(Series(name + "_sum")), 0) << name;
    } else if (!Labelled(name)) {
      EXPECT_EQ(e.Value(Series(name)), 0) << name;
    }
  }
  // Every limit's series exists before it is first hit.
  for (const char* reason : {"max_streams", "idle_timeout", "not_reading"}) {
    EXPECT_EQ(e.Value(Series("mtla_calls_limited_total", std::string(",reason=\"") + reason + "\"")),
              0)
        << reason;
  }
  // The common outcomes exist before the first request: a successful call's
  // finished reasons, and the error statuses with finished_reason "abort".
  for (const char* reason : {"eos", "stop", "length", "end_of_audio"}) {
    EXPECT_EQ(e.Value(Outcome("mtla_requests_total", "ok", reason)), 0) << reason;
  }
  for (const char* reason : {"eos", "length"}) {
    EXPECT_EQ(e.Value(Outcome("mtla_segments_total", "ok", reason)), 0) << reason;
  }
  for (const char* status : {"cancelled", "invalid_argument", "resource_exhausted", "unavailable",
                             "deadline_exceeded", "out_of_range", "internal", "unimplemented"}) {
    EXPECT_EQ(e.Value(Outcome("mtla_requests_total", status, "abort")), 0) << status;
    EXPECT_EQ(e.Value(Outcome("mtla_segments_total", status, "abort")), 0) << status;
  }
  EXPECT_EQ(e.Value(Series("mtla_interim_decodes_total", ",status=\"ok\"")), 0);
  EXPECT_EQ(e.Value(Series("mtla_interim_decodes_total", ",status=\"cancelled\"")), 0);
  EXPECT_EQ(e.Value(Series("mtla_early_finals_total", ",outcome=\"used\"")), 0);
  EXPECT_EQ(e.Value(Series("mtla_early_finals_total", ",outcome=\"discarded\"")), 0);
}

TEST(ServingMetricsTest, EveryFamilyOnceAnEngineExists) {
  ServingMetrics m(kModel);
  m.SetCacheConfig({.block_slots = 16, .block_tokens = 16, .down_rate = 1, .num_blocks = 8,
                    .element_bytes = 2});
  m.SetBuildInfo("cpu");
  const Exposition e = Parse(Expose(m));
  std::map<std::string, std::string> types(e.types.begin(), e.types.end());
  EXPECT_EQ(types, ExpectedFamilies());
}

TEST(ServingMetricsTest, CallLimitsSessionsAndOpenCalls) {
  ServingMetrics m(kModel);
  m.CountCallLimited("max_streams");
  m.CountCallLimited("max_streams");
  m.CountCallLimited("idle_timeout");
  m.AddSpeechSessions(3);
  m.AddSpeechSessions(-1);
  m.SetOpenCalls(5);
  EXPECT_EQ(m.calls_limited("max_streams"), 2);
  EXPECT_EQ(m.calls_limited("not_reading"), 0);
  EXPECT_EQ(m.speech_sessions(), 2);
  const Exposition e = Parse(Expose(m));
  EXPECT_EQ(e.Value(Series("mtla_calls_limited_total", ",reason=\"max_streams\"")), 2);
  EXPECT_EQ(e.Value(Series("mtla_calls_limited_total", ",reason=\"idle_timeout\"")), 1);
  EXPECT_EQ(e.Value(Series("mtla_speech_sessions")), 2);
  EXPECT_EQ(e.Value(Series("mtla_open_calls")), 5);
}

TEST(ServingMetricsTest, HistogramBucketsAreVllms) {
  ServingMetrics m(kModel);
  const Exposition e = Parse(Expose(m));
  EXPECT_THAT(e.BucketBounds("mtla_time_to_first_token_seconds"),
              ElementsAreArray(ToStrings({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                          0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
                                          80.0, 160.0, 640.0, 2560.0})));
  EXPECT_THAT(e.BucketBounds("mtla_inter_token_latency_seconds"),
              ElementsAreArray(ToStrings({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4,
                                          0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
                                          80.0})));
  const std::vector<double> request = {0.3,  0.5,  0.8,  1.0,   1.5,   2.0,   2.5,
                                       5.0,  10.0, 15.0, 20.0,  30.0,  40.0,  50.0,
                                       60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  EXPECT_THAT(e.BucketBounds("mtla_e2e_request_latency_seconds"),
              ElementsAreArray(ToStrings(request)));
  EXPECT_THAT(e.BucketBounds("mtla_request_queue_time_seconds"),
              ElementsAreArray(ToStrings(request)));
  EXPECT_THAT(e.BucketBounds("mtla_batch_size"),
              ElementsAreArray(ToStrings({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024})));
  EXPECT_THAT(e.BucketBounds("mtla_real_time_factor"),
              ElementsAreArray(ToStrings({0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5,
                                          2, 5})));
  const std::vector<std::string> step = e.BucketBounds("mtla_step_duration_seconds");
  ASSERT_GE(step.size(), 10u);
  EXPECT_EQ(step.front(), "0.0005");
  EXPECT_EQ(step[step.size() - 2], "10");
  for (size_t i = 1; i + 1 < step.size(); ++i) {
    EXPECT_LT(std::stod(step[i - 1]), std::stod(step[i]));
    EXPECT_LE(std::stod(step[i]) / std::stod(step[i - 1]), 2.6) << "gap at " << step[i];
  }
}

TEST(ServingMetricsTest, ObservationsShowUp) {
  ServingMetrics m(kModel);
  m.ObserveTimeToFirstToken(0.03);
  m.ObserveTimeToFirstToken(0.7);
  m.ObserveInterTokenLatency(0.02);
  m.ObserveInterTokenLatency(0.02);
  m.ObserveInterTokenLatency(0.2);
  m.ObserveFinishedRequest({.e2e_seconds = 3.0});
  m.ObserveQueueTime(0.1);
  m.ObserveStep(0.004, 24, 300);
  m.ObserveStep(0.012, 3, 3);
  m.SetRequestsRunning(5);
  m.SetRequestsWaiting(2);
  m.SetKvCache(30, 120, 1152.0);
  m.AddPromptTokens(100);
  m.AddPromptTokens(28);
  m.AddGenerationTokens(7);
  m.AddPreemptions(2);
  m.CountRequest("ok", "eos");
  m.CountRequest("ok", "eos");
  m.CountRequest("ok", "length");
  m.CountRequest("cancelled", "abort");
  m.CountRequest("unknown", "abort");  // statuses beyond the pre-created ones
  m.CountSegment("ok", "eos");
  m.CountSegment("deadline_exceeded", "abort");
  m.CountInterimDecode("ok");
  m.AddAudioSeconds(12.5);
  m.ObserveRealTimeFactor(0.25);

  const Exposition e = Parse(Expose(m));
  auto le = [](const char* bound) { return std::string(",le=\"") + bound + "\""; };

  EXPECT_EQ(e.Value(Series("mtla_time_to_first_token_seconds_count")), 2);
  EXPECT_DOUBLE_EQ(e.Value(Series("mtla_time_to_first_token_seconds_sum")), 0.73);
  EXPECT_EQ(e.Value(Series("mtla_time_to_first_token_seconds_bucket", le("0.02"))), 0);
  EXPECT_EQ(e.Value(Series("mtla_time_to_first_token_seconds_bucket", le("0.04"))), 1);
  EXPECT_EQ(e.Value(Series("mtla_time_to_first_token_seconds_bucket", le("0.75"))), 2);
  EXPECT_EQ(e.Value(Series("mtla_time_to_first_token_seconds_bucket", le("+Inf"))), 2);

  EXPECT_EQ(e.Value(Series("mtla_inter_token_latency_seconds_count")), 3);
  EXPECT_EQ(e.Value(Series("mtla_inter_token_latency_seconds_bucket", le("0.025"))), 2);
  EXPECT_EQ(e.Value(Series("mtla_inter_token_latency_seconds_bucket", le("0.2"))), 3);

  EXPECT_EQ(e.Value(Series("mtla_e2e_request_latency_seconds_count")), 1);
  EXPECT_EQ(e.Value(Series("mtla_e2e_request_latency_seconds_bucket", le("2.5"))), 0);
  EXPECT_EQ(e.Value(Series("mtla_e2e_request_latency_seconds_bucket", le("5"))), 1);
  EXPECT_EQ(e.Value(Series("mtla_request_queue_time_seconds_count")), 1);
  EXPECT_EQ(e.Value(Series("mtla_request_queue_time_seconds_bucket", le("0.3"))), 1);

  EXPECT_EQ(e.Value(Series("mtla_step_duration_seconds_count")), 2);
  EXPECT_DOUBLE_EQ(e.Value(Series("mtla_step_duration_seconds_sum")), 0.016);
  EXPECT_EQ(e.Value(Series("mtla_batch_size_count")), 2);
  EXPECT_EQ(e.Value(Series("mtla_batch_size_sum")), 27);
  EXPECT_EQ(e.Value(Series("mtla_batch_size_bucket", le("2"))), 0);
  EXPECT_EQ(e.Value(Series("mtla_batch_size_bucket", le("4"))), 1);
  EXPECT_EQ(e.Value(Series("mtla_batch_size_bucket", le("32"))), 2);

  EXPECT_EQ(e.Value(Series("mtla_num_requests_running")), 5);
  EXPECT_EQ(e.Value(Series("mtla_num_requests_waiting")), 2);
  EXPECT_EQ(e.Value(Series("mtla_kv_cache_blocks_used")), 30);
  EXPECT_EQ(e.Value(Series("mtla_kv_cache_blocks_total")), 120);
  EXPECT_DOUBLE_EQ(e.Value(Series("mtla_kv_cache_usage_ratio")), 0.25);
  EXPECT_EQ(e.Value(Series("mtla_kv_cache_bytes_per_token")), 1152);

  EXPECT_EQ(e.Value(Series("mtla_prompt_tokens_total")), 128);
  EXPECT_EQ(e.Value(Series("mtla_generation_tokens_total")), 7);
  EXPECT_EQ(e.Value(Series("mtla_num_preemptions_total")), 2);
  EXPECT_DOUBLE_EQ(e.Value(Series("mtla_audio_seconds_total")), 12.5);
  EXPECT_EQ(e.Value(Outcome("mtla_requests_total", "ok", "eos")), 2);
  EXPECT_EQ(e.Value(Outcome("mtla_requests_total", "ok", "length")), 1);
  EXPECT_EQ(e.Value(Outcome("mtla_requests_total", "ok", "stop")), 0);
  EXPECT_EQ(e.Value(Outcome("mtla_requests_total", "cancelled", "abort")), 1);
  EXPECT_EQ(e.Value(Outcome("mtla_requests_total", "unknown", "abort")), 1);
  EXPECT_EQ(e.Value(Outcome("mtla_requests_total", "internal", "abort")), 0);
  EXPECT_EQ(e.Value(Outcome("mtla_requests_total", "deadline_exceeded", "abort")), 0);
  EXPECT_EQ(e.Value(Outcome("mtla_segments_total", "ok", "eos")), 1);
  EXPECT_EQ(e.Value(Outcome("mtla_segments_total", "deadline_exceeded", "abort")), 1);
  EXPECT_EQ(e.Value(Outcome("mtla_segments_total", "cancelled", "abort")), 0);
  EXPECT_EQ(e.Value(Series("mtla_interim_decodes_total", ",status=\"ok\"")), 1);

  EXPECT_EQ(e.Value(Series("mtla_real_time_factor_count")), 1);
  EXPECT_EQ(e.Value(Series("mtla_iteration_tokens_count")), 2);
  EXPECT_EQ(e.Value(Series("mtla_iteration_tokens_sum")), 303);
  EXPECT_EQ(e.Value(Series("mtla_real_time_factor_bucket", le("0.2"))), 0);
  EXPECT_EQ(e.Value(Series("mtla_real_time_factor_bucket", le("0.3"))), 1);

  // Every series carries the model label.
  for (const std::string& s : e.series_order) {
    EXPECT_THAT(s, HasSubstr(std::string("model_name=\"") + kModel + "\"")) << s;
  }
}

TEST(ServingMetricsTest, KvUsageIsZeroWithoutBlocks) {
  ServingMetrics m(kModel);
  m.SetKvCache(0, 0, 64.0);
  const Exposition e = Parse(Expose(m));
  EXPECT_EQ(e.Value(Series("mtla_kv_cache_usage_ratio")), 0);
  EXPECT_EQ(e.Value(Series("mtla_kv_cache_blocks_total")), 0);
}

// mtla_kv_cache_blocks_total is a counter (the `_total` suffix is reserved for
// counters): it counts the blocks provisioned and never goes down.
TEST(ServingMetricsTest, BlocksTotalCountsProvisionedBlocks) {
  ServingMetrics m(kModel);
  m.SetKvCache(10, 40, 64.0);
  m.SetKvCache(12, 40, 64.0);
  EXPECT_EQ(Parse(Expose(m)).Value(Series("mtla_kv_cache_blocks_total")), 40);
  m.SetKvCache(12, 64, 64.0);
  EXPECT_EQ(Parse(Expose(m)).Value(Series("mtla_kv_cache_blocks_total")), 64);
}

TEST(ServingMetricsTest, ConcurrentUpdates) {
  ServingMetrics m(kModel);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < 1000; ++i) {
        m.AddGenerationTokens(1);
        m.ObserveInterTokenLatency(0.01);
        m.CountRequest(t % 2 ? "ok" : "status_" + std::to_string(t), t % 2 ? "eos" : "abort");
      }
    });
  }
  for (auto& th : threads) th.join();
  const Exposition e = Parse(Expose(m));
  EXPECT_EQ(e.Value(Series("mtla_generation_tokens_total")), 8000);
  EXPECT_EQ(e.Value(Series("mtla_inter_token_latency_seconds_count")), 8000);
  EXPECT_EQ(e.Value(Outcome("mtla_requests_total", "ok", "eos")), 4000);
  EXPECT_EQ(e.Value(Outcome("mtla_requests_total", "status_2", "abort")), 1000);
}

// vLLM's request-level histograms: one observation per finished request;
// time per output token is the decode time over the tokens after the first.
TEST(ServingMetricsTest, FinishedRequestHistograms) {
  ServingMetrics m(kModel);
  m.ObserveFinishedRequest({.prompt_tokens = 7, .generation_tokens = 11, .max_tokens = 16,
                            .e2e_seconds = 1.2, .queue_seconds = 0.1, .prefill_seconds = 0.2,
                            .decode_seconds = 0.9, .inference_seconds = 1.1});
  // One token: no time per output token.
  m.ObserveFinishedRequest({.prompt_tokens = 3, .generation_tokens = 1, .max_tokens = 1,
                            .e2e_seconds = 0.4, .prefill_seconds = 0.3, .inference_seconds = 0.3});
  const Exposition e = Parse(Expose(m));
  auto le = [](const char* bound) { return std::string(",le=\"") + bound + "\""; };
  EXPECT_EQ(e.Value(Series("mtla_e2e_request_latency_seconds_count")), 2);
  EXPECT_EQ(e.Value(Series("mtla_request_prompt_tokens_count")), 2);
  EXPECT_EQ(e.Value(Series("mtla_request_prompt_tokens_sum")), 10);
  EXPECT_EQ(e.Value(Series("mtla_request_prompt_tokens_bucket", le("5"))), 1);
  EXPECT_EQ(e.Value(Series("mtla_request_prompt_tokens_bucket", le("10"))), 2);
  EXPECT_EQ(e.Value(Series("mtla_request_generation_tokens_sum")), 12);
  EXPECT_EQ(e.Value(Series("mtla_request_params_max_tokens_sum")), 17);
  EXPECT_EQ(e.Value(Series("mtla_request_time_per_output_token_seconds_count")), 1);
  EXPECT_DOUBLE_EQ(e.Value(Series("mtla_request_time_per_output_token_seconds_sum")), 0.09);
  EXPECT_DOUBLE_EQ(e.Value(Series("mtla_request_prefill_time_seconds_sum")), 0.5);
  EXPECT_DOUBLE_EQ(e.Value(Series("mtla_request_decode_time_seconds_sum")), 0.9);
  EXPECT_DOUBLE_EQ(e.Value(Series("mtla_request_inference_time_seconds_sum")), 1.4);
  // Queue time has its own observer (ObserveQueueTime, at first scheduling).
  EXPECT_EQ(e.Value(Series("mtla_request_queue_time_seconds_count")), 0);
  EXPECT_THAT(e.BucketBounds("mtla_request_prompt_tokens"),
              ElementsAreArray(ToStrings({1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
                                          10000, 20000, 50000})));
  EXPECT_THAT(e.BucketBounds("mtla_iteration_tokens"),
              ElementsAreArray(ToStrings({1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
                                          8192, 16384})));
}

TEST(ServingMetricsTest, CacheConfigAndBuildInfo) {
  ServingMetrics m(kModel);
  m.SetCacheConfig({.block_slots = 16, .block_tokens = 32, .down_rate = 2, .num_blocks = 300,
                    .element_bytes = 4});
  m.SetBuildInfo("cpu");
  m.SetBuildInfo("cuda");  // replaces the series, does not add one
  const Exposition e = Parse(Expose(m));
  EXPECT_EQ(e.Value("mtla_cache_config_info{block_size=\"32\",block_slots=\"16\","
                    "cache_element_bytes=\"4\",down_rate=\"2\",model_name=\"mtla-test\","
                    "num_blocks=\"300\"}"),
            1);
  int build_series = 0;
  for (const auto& [series, value] : e.samples) {
    if (series.rfind("mtla_build_info{", 0) != 0) continue;
    ++build_series;
    EXPECT_EQ(value, 1);
    EXPECT_THAT(series, HasSubstr("backend=\"cuda\""));
    EXPECT_THAT(series, HasSubstr("version=\""));
    EXPECT_THAT(series, HasSubstr("build_type=\""));
    EXPECT_THAT(series, ::testing::Not(HasSubstr("build_type=\"\"")));
  }
  EXPECT_EQ(build_series, 1);
}

// process_* from /proc, with Prometheus' standard names, in what /metrics
// serves (exposition()) and not in the model-labelled registry.
TEST(ServingMetricsTest, ProcessMetrics) {
  ServingMetrics m(kModel);
  const Exposition e =
      Parse(prometheus::TextSerializer().Serialize(m.exposition()->Collect()));
  EXPECT_EQ(e.types.at("process_cpu_seconds_total"), "counter");
  for (const char* gauge : {"process_resident_memory_bytes", "process_virtual_memory_bytes",
                            "process_open_fds", "process_max_fds", "process_start_time_seconds"}) {
    EXPECT_EQ(e.types.at(gauge), "gauge") << gauge;
  }
  EXPECT_GT(e.Value("process_resident_memory_bytes"), 1 << 20);
  EXPECT_GE(e.Value("process_virtual_memory_bytes"), e.Value("process_resident_memory_bytes"));
  EXPECT_GE(e.Value("process_cpu_seconds_total"), 0);
  EXPECT_GE(e.Value("process_open_fds"), 3);  // stdin, stdout, stderr
  EXPECT_GE(e.Value("process_max_fds"), e.Value("process_open_fds"));
  const double now = static_cast<double>(::time(nullptr));
  EXPECT_LE(e.Value("process_start_time_seconds"), now + 1);
  EXPECT_GT(e.Value("process_start_time_seconds"), now - 3600);
  EXPECT_EQ(Parse(Expose(m)).types.count("process_open_fds"), 0u);
}

TEST(ServingMetricsTest, StatusLabels) {
  EXPECT_EQ(StatusLabel(0), "ok");
  EXPECT_EQ(StatusLabel(1), "cancelled");
  EXPECT_EQ(StatusLabel(4), "deadline_exceeded");
  EXPECT_EQ(StatusLabel(8), "resource_exhausted");
  EXPECT_EQ(StatusLabel(12), "unimplemented");
}

// ---------------------------------------------------------------------------
// promtool

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

CommandResult RunWithStdin(const std::string& command, const std::filesystem::path& input) {
  CommandResult r;
  const std::string full = command + " < '" + input.string() + "' 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) r.output.append(buf, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string FindPromtool() {
  const char* path = std::getenv("PATH");
  std::vector<std::string> dirs = {"/usr/bin", "/usr/local/bin"};
  if (path != nullptr) {
    std::istringstream in(path);
    std::string dir;
    while (std::getline(in, dir, ':')) dirs.insert(dirs.end() - 2, dir);
  }
  for (const std::string& dir : dirs) {
    const std::filesystem::path p = std::filesystem::path(dir) / "promtool";
    if (!dir.empty() && ::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return "";
}

TEST(ServingMetricsTest, PromtoolCheckMetrics) {
  const std::string promtool = FindPromtool();
  if (promtool.empty()) {
    GTEST_SKIP() << "promtool not found on PATH (Debian package `prometheus`); "
                    "skipping the exposition lint";
  }
  ServingMetrics m(kModel);
  m.ObserveTimeToFirstToken(0.03);
  m.ObserveInterTokenLatency(0.02);
  m.ObserveFinishedRequest({.prompt_tokens = 7, .generation_tokens = 12, .max_tokens = 16,
                            .e2e_seconds = 3.0, .prefill_seconds = 0.1, .decode_seconds = 2.0,
                            .inference_seconds = 2.1});
  m.ObserveQueueTime(0.1);
  m.ObserveStep(0.004, 24, 300);
  m.SetKvCache(30, 120, 1152.0);
  m.SetCacheConfig({.block_slots = 16, .block_tokens = 32, .down_rate = 2, .num_blocks = 120,
                    .element_bytes = 4});
  m.SetBuildInfo("cpu");
  m.AddPromptTokens(128);
  m.CountRequest("ok", "eos");
  m.CountSegment("ok", "length");
  m.CountInterimDecode("ok");
  m.AddAudioSeconds(1.5);
  m.ObserveRealTimeFactor(0.25);
  // What /metrics serves: the process metrics too.
  const std::string text = prometheus::TextSerializer().Serialize(m.exposition()->Collect());
  ASSERT_THAT(text, HasSubstr("process_resident_memory_bytes"));

  const std::filesystem::path full = std::filesystem::temp_directory_path() /
                                     ("mtla_metrics_" + std::to_string(::getpid()) + ".prom");
  std::ofstream(full) << text;
  const CommandResult result = RunWithStdin("'" + promtool + "' check metrics", full);
  EXPECT_EQ(result.output, "") << "exposition written to " << full;
  EXPECT_EQ(result.exit_code, 0) << result.output;

  if (!HasFailure()) {
    std::filesystem::remove(full);
  }
}

}  // namespace
}  // namespace mtla
