// The service's Prometheus metrics. See serving_metrics.h.
//
// Names: prometheus-cpp 1.0 exposes a family under exactly the name it was
// registered with (its text serializer adds no `_total` suffix to counters),
// so the counter families below are registered with their `_total` names.
#include "engine/metrics/serving_metrics.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "engine/metrics/process_collector.h"

#ifndef MTLA_VERSION
#define MTLA_VERSION "unknown"
#endif
#ifndef MTLA_BUILD_TYPE
#define MTLA_BUILD_TYPE "unknown"
#endif

namespace mtla {
namespace {

using Buckets = prometheus::Histogram::BucketBoundaries;

// vLLM's buckets (vllm/engine/metrics.py) for the request-level latencies.
const Buckets& TimeToFirstTokenBuckets() {
  static const Buckets b = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
                            1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
  return b;
}

const Buckets& InterTokenLatencyBuckets() {
  static const Buckets b = {0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,  0.3,  0.4, 0.5,
                            0.75, 1.0,   2.5,  5.0,   7.5,  10.0, 20.0, 40.0, 80.0};
  return b;
}

const Buckets& RequestLatencyBuckets() {
  static const Buckets b = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
                            30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  return b;
}

// Engine step (one batched forward + sampling): 1-2.5-5 steps per decade from
// 0.5 ms to 10 s.
const Buckets& StepDurationBuckets() {
  static const Buckets b = {0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
                            0.04,   0.05,  0.075,  0.1,   0.15,   0.2,  0.3,   0.5,  0.75,
                            1.0,    1.5,   2.5,    5.0,   10.0};
  return b;
}

const Buckets& BatchSizeBuckets() {
  static const Buckets b = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
  return b;
}

const Buckets& RealTimeFactorBuckets() {
  static const Buckets b = {0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5};
  return b;
}

// vLLM's 1-2-5 buckets for token counts per request (prompt, generation,
// max_tokens), here up to 50000 tokens.
const Buckets& TokenCountBuckets() {
  static const Buckets b = {1,    2,    5,    10,   20,    50,    100,   200,  500,
                            1000, 2000, 5000, 10000, 20000, 50000};
  return b;
}

// vLLM's buckets for the tokens scheduled in one engine step.
const Buckets& IterationTokenBuckets() {
  static const Buckets b = {1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
  return b;
}

// Series pre-created (at 0) so that ratios and alerts have them before the
// first call: the finished reasons of a successful call, and the common
// error statuses (finished_reason "abort").
constexpr const char* kOkReasons[] = {"eos", "stop", "length", "end_of_audio"};
constexpr const char* kSegmentOkReasons[] = {"eos", "length"};
constexpr const char* kErrorStatuses[] = {
    "cancelled",         "invalid_argument", "resource_exhausted", "unavailable",
    "deadline_exceeded", "out_of_range",     "internal",           "unimplemented",
};

// The registry and the process metrics, collected together.
class Exposition final : public prometheus::Collectable {
 public:
  explicit Exposition(std::shared_ptr<prometheus::Registry> registry)
      : registry_(std::move(registry)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> families = registry_->Collect();
    for (prometheus::MetricFamily& f : process_.Collect()) families.push_back(std::move(f));
    return families;
  }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  ProcessCollector process_;
};

}  // namespace

ServingMetrics::ServingMetrics(const std::string& model_name)
    : registry_(std::make_shared<prometheus::Registry>()),
      exposition_(std::make_shared<Exposition>(registry_)),
      model_name_(model_name) {
  const prometheus::Labels labels = {{"model_name", model_name_}};
  auto& reg = *registry_;

  auto histogram = [&](const char* name, const char* help, const Buckets& buckets) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Register(reg).Add(labels, buckets);
  };
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(reg).Add(labels);
  };
  auto counter = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(reg).Add(labels);
  };

  ttft_ = histogram("mtla_time_to_first_token_seconds",
                    "Time from a request's arrival to its first generated token (interim decodes "
                    "excluded), in seconds.",
                    TimeToFirstTokenBuckets());
  itl_ = histogram("mtla_inter_token_latency_seconds",
                   "Time between consecutive generated tokens of a request, in seconds.",
                   InterTokenLatencyBuckets());
  e2e_ = histogram("mtla_e2e_request_latency_seconds",
                   "Time from the request's arrival to its last token, in seconds.",
                   RequestLatencyBuckets());
  queue_ = histogram("mtla_request_queue_time_seconds",
                     "Time a request waited before it was first scheduled, in seconds.",
                     RequestLatencyBuckets());
  step_ = histogram("mtla_step_duration_seconds",
                    "Duration of one engine step (batched forward pass and sampling), in seconds.",
                    StepDurationBuckets());
  batch_size_ = histogram("mtla_batch_size", "Number of sequences in each engine step.",
                          BatchSizeBuckets());
  rtf_ = histogram("mtla_real_time_factor",
                   "Processing time divided by audio duration, per speech segment.",
                   RealTimeFactorBuckets());
  iteration_tokens_ = histogram("mtla_iteration_tokens",
                                "Number of tokens scheduled in each engine step (vLLM's "
                                "iteration_tokens_total).",
                                IterationTokenBuckets());
  request_prompt_tokens_ = histogram("mtla_request_prompt_tokens",
                                     "Number of prompt tokens per finished request.",
                                     TokenCountBuckets());
  request_generation_tokens_ = histogram("mtla_request_generation_tokens",
                                         "Number of generated tokens per finished request.",
                                         TokenCountBuckets());
  request_max_tokens_ = histogram("mtla_request_params_max_tokens",
                                  "The max_new_tokens each finished request asked for.",
                                  TokenCountBuckets());
  time_per_output_token_ =
      histogram("mtla_request_time_per_output_token_seconds",
                "Mean time per generated token after the first, per finished request, in seconds.",
                InterTokenLatencyBuckets());
  prefill_time_ =
      histogram("mtla_request_prefill_time_seconds",
                "Time from a request's first scheduling to its first token, in seconds.",
                RequestLatencyBuckets());
  decode_time_ = histogram("mtla_request_decode_time_seconds",
                           "Time from a request's first token to its last, in seconds.",
                           RequestLatencyBuckets());
  inference_time_ =
      histogram("mtla_request_inference_time_seconds",
                "Time from a request's first scheduling to its last token, in seconds.",
                RequestLatencyBuckets());
  encoder_batch_size_ = histogram("mtla_encoder_batch_size",
                                  "Number of speech segments in each speech-encoder batch.",
                                  BatchSizeBuckets());
  encoder_batch_seconds_ =
      histogram("mtla_encoder_batch_duration_seconds",
                "Duration of one speech-encoder batch (encoder and projector), in seconds.",
                StepDurationBuckets());
  encoder_queue_ = histogram("mtla_encoder_queue_time_seconds",
                             "Time a speech segment waited for the encoder, in seconds.",
                             StepDurationBuckets());
  chunk_latency_ = histogram("mtla_chunk_response_latency_seconds",
                             "Time from receiving an audio chunk to queuing its response, in seconds.",
                             StepDurationBuckets());

  running_ = gauge("mtla_num_requests_running", "Number of requests currently being generated.");
  waiting_ = gauge("mtla_num_requests_waiting", "Number of requests waiting to be scheduled.");
  kv_usage_ = gauge("mtla_kv_cache_usage_ratio",
                    "Fraction of KV cache blocks in use (0 to 1; 0 when there are none).");
  kv_blocks_used_ = gauge("mtla_kv_cache_blocks_used", "Number of KV cache blocks in use.");
  kv_bytes_per_token_ =
      gauge("mtla_kv_cache_bytes_per_token",
            "KV cache bytes per token of context (temporal-latent compression included).");

  // A counter, not a gauge: the `_total` suffix is reserved for counters. It
  // counts the blocks provisioned since start, which is the pool size.
  kv_blocks_total_ = counter("mtla_kv_cache_blocks_total",
                             "Number of KV cache blocks provisioned in the pool.");
  prompt_tokens_ = counter("mtla_prompt_tokens_total", "Number of prompt tokens processed.");
  generation_tokens_ = counter("mtla_generation_tokens_total", "Number of tokens generated.");
  preemptions_ = counter("mtla_num_preemptions_total",
                         "Number of times a running request was preempted to free KV cache.");
  audio_seconds_ = counter("mtla_audio_seconds_total",
                           "Seconds of input audio processed by the speech service.");

  auto labelled_counter = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(reg);
  };
  requests_ = labelled_counter(
      "mtla_requests_total",
      "Number of finished RPCs, by gRPC status code and finished reason.");
  segments_ = labelled_counter(
      "mtla_segments_total",
      "Number of speech segments submitted for translation, by outcome (status, finished "
      "reason).");
  interim_decodes_ = labelled_counter(
      "mtla_interim_decodes_total",
      "Number of interim-hypothesis decodes of speech streams, by gRPC status code.");
  for (const char* reason : kOkReasons) CountRequestSeries(*requests_, "ok", reason);
  for (const char* reason : kSegmentOkReasons) CountRequestSeries(*segments_, "ok", reason);
  for (const char* status : kErrorStatuses) {
    CountRequestSeries(*requests_, status, "abort");
    CountRequestSeries(*segments_, status, "abort");
  }
  for (const char* status : {"ok", "cancelled"}) {
    interim_decodes_->Add({{"model_name", model_name_}, {"status", status}});
  }
  early_finals_ = labelled_counter(
      "mtla_early_finals_total",
      "Number of speech segments decoded early, once their speech had settled, by outcome: used "
      "as the final result, or discarded because speech resumed.");
  for (const char* outcome : {"used", "discarded"}) {
    early_finals_->Add({{"model_name", model_name_}, {"outcome", outcome}});
  }
  speech_sessions_ = gauge("mtla_speech_sessions",
                           "Number of speech-translation sessions alive (open streams and "
                           "Translate calls past their config).");
  open_calls_ = gauge("mtla_open_calls",
                      "Number of Generate, StreamingTranslate and Translate calls open "
                      "(the ones --max_streams counts).");
  calls_limited_ = &prometheus::BuildCounter()
                        .Name("mtla_calls_limited_total")
                        .Help("Number of calls refused or ended by a server limit, by reason "
                              "(max_streams, idle_timeout, not_reading).")
                        .Register(reg);
  for (const char* reason : {"max_streams", "idle_timeout", "not_reading"}) {
    calls_limited_->Add({{"model_name", model_name_}, {"reason", reason}});
  }
  cache_config_ = &prometheus::BuildGauge()
                       .Name("mtla_cache_config_info")
                       .Help("The KV cache's configuration in labels; the value is 1.")
                       .Register(reg);
  build_info_ = &prometheus::BuildGauge()
                     .Name("mtla_build_info")
                     .Help("The server's version, build type and backend in labels; the value "
                           "is 1.")
                     .Register(reg);
  SetBuildInfo("none");  // until an engine says which backend serves
}

prometheus::Counter& ServingMetrics::CountRequestSeries(
    prometheus::Family<prometheus::Counter>& family, std::string_view status,
    std::string_view finished_reason) {
  // Family::Add returns the existing series for labels already added (under
  // the family's lock), so this is thread-safe.
  return family.Add({{"model_name", model_name_},
                     {"status", std::string(status)},
                     {"finished_reason", std::string(finished_reason)}});
}

void ServingMetrics::ObserveTimeToFirstToken(double seconds) { ttft_->Observe(seconds); }
void ServingMetrics::ObserveInterTokenLatency(double seconds) { itl_->Observe(seconds); }
void ServingMetrics::ObserveQueueTime(double seconds) { queue_->Observe(seconds); }

void ServingMetrics::ObserveStep(double seconds, int batch_size, int num_tokens) {
  step_->Observe(seconds);
  batch_size_->Observe(batch_size);
  iteration_tokens_->Observe(num_tokens);
}

void ServingMetrics::ObserveFinishedRequest(const FinishedRequestStats& s) {
  e2e_->Observe(s.e2e_seconds);
  request_prompt_tokens_->Observe(static_cast<double>(s.prompt_tokens));
  request_generation_tokens_->Observe(static_cast<double>(s.generation_tokens));
  request_max_tokens_->Observe(static_cast<double>(s.max_tokens));
  prefill_time_->Observe(s.prefill_seconds);
  decode_time_->Observe(s.decode_seconds);
  inference_time_->Observe(s.inference_seconds);
  // vLLM: decode time over the tokens after the first, when there are any.
  if (s.generation_tokens > 1) {
    time_per_output_token_->Observe(s.decode_seconds /
                                    static_cast<double>(s.generation_tokens - 1));
  }
}

void ServingMetrics::SetCacheConfig(const CacheConfigInfo& info) {
  absl::MutexLock lock(&info_mu_);
  if (cache_config_series_ != nullptr) cache_config_->Remove(cache_config_series_);
  cache_config_series_ = &cache_config_->Add({{"model_name", model_name_},
                                              {"block_slots", std::to_string(info.block_slots)},
                                              {"block_size", std::to_string(info.block_tokens)},
                                              {"down_rate", std::to_string(info.down_rate)},
                                              {"num_blocks", std::to_string(info.num_blocks)},
                                              {"cache_element_bytes",
                                               std::to_string(info.element_bytes)}});
  cache_config_series_->Set(1);
}

void ServingMetrics::SetBuildInfo(std::string_view backend) {
  absl::MutexLock lock(&info_mu_);
  if (build_info_series_ != nullptr) build_info_->Remove(build_info_series_);
  build_info_series_ = &build_info_->Add({{"model_name", model_name_},
                                          {"version", MTLA_VERSION},
                                          {"build_type", MTLA_BUILD_TYPE},
                                          {"backend", std::string(backend)}});
  build_info_series_->Set(1);
}

void ServingMetrics::SetRequestsRunning(int n) { running_->Set(n); }
void ServingMetrics::SetRequestsWaiting(int n) { waiting_->Set(n); }

void ServingMetrics::SetKvCache(int blocks_used, int blocks_total, double bytes_per_token) {
  kv_blocks_used_->Set(blocks_used);
  if (blocks_total > kv_blocks_total_->Value()) {
    kv_blocks_total_->Increment(blocks_total - kv_blocks_total_->Value());
  }
  kv_usage_->Set(blocks_total > 0 ? static_cast<double>(blocks_used) / blocks_total : 0.0);
  kv_bytes_per_token_->Set(bytes_per_token);
}

// Counter::Increment ignores negative amounts in prometheus-cpp; so do these.
void ServingMetrics::AddPromptTokens(int64_t n) {
  prompt_tokens_->Increment(static_cast<double>(n));
}
void ServingMetrics::AddGenerationTokens(int64_t n) {
  generation_tokens_->Increment(static_cast<double>(n));
}
void ServingMetrics::AddPreemptions(int64_t n) { preemptions_->Increment(static_cast<double>(n)); }

void ServingMetrics::CountRequest(std::string_view status, std::string_view finished_reason) {
  CountRequestSeries(*requests_, status, finished_reason).Increment();
}

void ServingMetrics::CountSegment(std::string_view status, std::string_view finished_reason) {
  CountRequestSeries(*segments_, status, finished_reason).Increment();
}

void ServingMetrics::CountEarlyFinal(std::string_view outcome) {
  early_finals_->Add({{"model_name", model_name_}, {"outcome", std::string(outcome)}}).Increment();
}

void ServingMetrics::CountInterimDecode(std::string_view status) {
  interim_decodes_->Add({{"model_name", model_name_}, {"status", std::string(status)}})
      .Increment();
}

void ServingMetrics::AddAudioSeconds(double seconds) { audio_seconds_->Increment(seconds); }
void ServingMetrics::ObserveRealTimeFactor(double rtf) { rtf_->Observe(rtf); }
void ServingMetrics::ObserveChunkLatency(double seconds) { chunk_latency_->Observe(seconds); }
void ServingMetrics::ObserveEncoderBatch(int segments, double seconds) {
  encoder_batch_size_->Observe(segments);
  encoder_batch_seconds_->Observe(seconds);
}
void ServingMetrics::ObserveEncoderQueueTime(double seconds) { encoder_queue_->Observe(seconds); }

std::string StatusLabel(int code) {
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name.empty() ? "unknown" : name;
}

void ServingMetrics::AddSpeechSessions(int delta) {
  if (delta >= 0) {
    speech_sessions_->Increment(delta);
  } else {
    speech_sessions_->Decrement(-delta);
  }
}
int ServingMetrics::speech_sessions() const {
  return static_cast<int>(speech_sessions_->Value());
}
void ServingMetrics::SetOpenCalls(int n) { open_calls_->Set(n); }
void ServingMetrics::CountCallLimited(const std::string& reason) {
  calls_limited_->Add({{"model_name", model_name_}, {"reason", reason}}).Increment();
}
double ServingMetrics::calls_limited(const std::string& reason) const {
  return calls_limited_->Add({{"model_name", model_name_}, {"reason", reason}}).Value();
}

}  // namespace mtla
