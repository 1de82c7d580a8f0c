// The service's Prometheus metrics. See serving_metrics.h.
//
// Names: prometheus-cpp 1.0 exposes a family under exactly the name it was
// registered with (its text serializer adds no `_total` suffix to counters),
// so the counter families below are registered with their `_total` names.
#include "engine/metrics/serving_metrics.h"

#include <algorithm>
#include <cmath>
#include <vector>

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

// gRPC status codes pre-created on mtla_requests_total so that the series
// exist (at 0) before the first request.
constexpr const char* kCommonStatuses[] = {
    "ok",          "cancelled",         "invalid_argument", "resource_exhausted",
    "unavailable", "deadline_exceeded", "out_of_range",     "internal",
};

// Family::Add returns the existing series for labels already added (under the
// family's lock), so this is thread-safe and creates a status on first use.
prometheus::Counter& RequestCounter(prometheus::Family<prometheus::Counter>& family,
                                    const std::string& model_name, const std::string& status) {
  return family.Add({{"model_name", model_name}, {"status", status}});
}

}  // namespace

ServingMetrics::ServingMetrics(const std::string& model_name)
    : registry_(std::make_shared<prometheus::Registry>()), model_name_(model_name) {
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
                    "Time from the request's arrival to its first generated token, in seconds.",
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
  segments_ = counter("mtla_segments_total",
                      "Number of speech segments translated (final results sent).");

  requests_ = &prometheus::BuildCounter()
                   .Name("mtla_requests_total")
                   .Help("Number of finished requests, by gRPC status code.")
                   .Register(reg);
  for (const char* status : kCommonStatuses) RequestCounter(*requests_, model_name_, status);

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
}

void ServingMetrics::ObserveTimeToFirstToken(double seconds) { ttft_->Observe(seconds); }
void ServingMetrics::ObserveInterTokenLatency(double seconds) { itl_->Observe(seconds); }
void ServingMetrics::ObserveEndToEndLatency(double seconds) { e2e_->Observe(seconds); }
void ServingMetrics::ObserveQueueTime(double seconds) { queue_->Observe(seconds); }

void ServingMetrics::ObserveStep(double seconds, int batch_size, int num_tokens) {
  // num_tokens is accounted by AddPromptTokens / AddGenerationTokens.
  step_->Observe(seconds);
  batch_size_->Observe(batch_size);
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

void ServingMetrics::CountRequest(const std::string& status) {
  RequestCounter(*requests_, model_name_, status).Increment();
}

void ServingMetrics::AddAudioSeconds(double seconds) { audio_seconds_->Increment(seconds); }
void ServingMetrics::ObserveRealTimeFactor(double rtf) {
  rtf_->Observe(rtf);
  segments_->Increment();
}
void ServingMetrics::ObserveChunkLatency(double seconds) { chunk_latency_->Observe(seconds); }

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
