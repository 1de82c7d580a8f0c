// The service's Prometheus metrics, prefixed `mtla_`, with the meanings and
// histogram buckets of vLLM's well-known set. Owns a prometheus::Registry; the
// server exposes exposition() (the registry plus the process_* metrics) over
// HTTP at /metrics. docs/observability.md lists every name and label.
//
// What is counted where (one owner per count):
// - mtla_requests_total{status, finished_reason}: one per finished RPC
//   (Generate, Translate, StreamingTranslate), by the server when the call
//   ends (CountRequest); a client deadline is deadline_exceeded.
// - mtla_segments_total{status, finished_reason}: one per speech segment the
//   session submitted, by the engine when the segment ends or is refused.
// - mtla_interim_decodes_total{status}: one per interim-hypothesis decode, by
//   the engine; interim decodes stay out of every request-level histogram.
// - mtla_early_finals_total{outcome}: one per early final a speech session
//   started (speech_session.h), by the session when its segment closes with
//   the same speech ("used"; it is then also a segment of
//   mtla_segments_total, counted by the session) or speech resumes or the
//   call ends first ("discarded").
//
// Thread-safety: all methods are thread-safe (prometheus-cpp metrics are).
#ifndef MTLA_ENGINE_METRICS_SERVING_METRICS_H_
#define MTLA_ENGINE_METRICS_SERVING_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace mtla {

// One finished (not interim) engine request, for vLLM's request-level
// histograms. Durations in seconds; a phase that did not happen is 0.
struct FinishedRequestStats {
  int64_t prompt_tokens = 0;      // prompt (+ keys-only prefix rows not counted)
  int64_t generation_tokens = 0;  // tokens of the result
  int64_t max_tokens = 0;         // max_new_tokens the request asked for
  double e2e_seconds = 0;         // arrival -> last token
  double queue_seconds = 0;       // arrival -> first scheduled
  double prefill_seconds = 0;     // first scheduled -> first token
  double decode_seconds = 0;      // first token -> last token
  double inference_seconds = 0;   // first scheduled -> last token
};

// The KV cache as configured, for mtla_cache_config_info.
struct CacheConfigInfo {
  int block_slots = 0;       // slots per block
  int block_tokens = 0;      // tokens per block (block_slots * down_rate)
  int down_rate = 1;         // tokens per slot
  int num_blocks = 0;        // blocks in the pool
  int element_bytes = 0;     // bytes per cached value (4 fp32, 2 bf16/fp16)
};

class ServingMetrics {
 public:
  // `model_name` becomes the label model_name="..." on every metric.
  explicit ServingMetrics(const std::string& model_name);

  // The service's own families (each with model_name).
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // What /metrics serves: registry() and the process_* families
  // (process_collector.h), which carry no model label.
  std::shared_ptr<prometheus::Collectable> exposition() const { return exposition_; }

  // Latencies in seconds, of requests that are not interim decodes.
  void ObserveTimeToFirstToken(double seconds);
  void ObserveInterTokenLatency(double seconds);
  void ObserveQueueTime(double seconds);
  // The end of a request that is not an interim decode: e2e latency and
  // vLLM's request-level histograms.
  void ObserveFinishedRequest(const FinishedRequestStats& stats);
  // One engine step: its duration, sequences and scheduled tokens.
  void ObserveStep(double seconds, int batch_size, int num_tokens);

  void SetRequestsRunning(int n);
  void SetRequestsWaiting(int n);
  void SetKvCache(int blocks_used, int blocks_total, double bytes_per_token);
  // mtla_cache_config_info{...} = 1 (the latest call's labels only; the
  // family is absent until the first call, when the engine is built).
  void SetCacheConfig(const CacheConfigInfo& info);
  // mtla_build_info{version, build_type, backend} = 1, the version and build
  // type of this build; `backend` is the engine's ("cpu", "cuda"), "none"
  // until an engine exists.
  void SetBuildInfo(std::string_view backend);

  void AddPromptTokens(int64_t n);
  void AddGenerationTokens(int64_t n);
  void AddPreemptions(int64_t n);

  // status: a gRPC status code name in lower case ("ok", "deadline_exceeded",
  // see StatusLabel); finished_reason: "eos", "stop", "length" (engine
  // requests), "end_of_audio" (speech calls), "abort" (status not ok).
  void CountRequest(std::string_view status, std::string_view finished_reason);
  void CountSegment(std::string_view status, std::string_view finished_reason);
  void CountInterimDecode(std::string_view status);
  void CountEarlyFinal(std::string_view outcome);  // "used" or "discarded"

  // Speech (used by the speech-translation service).
  void AddAudioSeconds(double seconds);
  // One translated segment's real-time factor (final results only).
  void ObserveRealTimeFactor(double rtf);
  void ObserveChunkLatency(double seconds);
  // The speech encoder worker (engine/streaming/speech_encoder_worker.h): one
  // batch of `segments` segments encoded and projected in `seconds`, and one
  // segment's wait in its queue.
  void ObserveEncoderBatch(int segments, double seconds);
  void ObserveEncoderQueueTime(double seconds);
  // Speech sessions alive (SpeechSession objects: created at a stream's
  // config or a Translate call, destroyed when the call ends).
  void AddSpeechSessions(int delta);
  int speech_sessions() const;

  // Calls holding a --max_streams slot (server/open_calls.h).
  void SetOpenCalls(int n);
  // A call refused or ended by a server limit. reason: "max_streams" (refused
  // over --max_streams), "idle_timeout" (a stream that sent nothing for
  // --stream_idle_timeout_seconds), "not_reading" (a client that does not
  // read its responses).
  void CountCallLimited(const std::string& reason);
  // The count of CountCallLimited(reason) so far (tests).
  double calls_limited(const std::string& reason) const;

 private:
  prometheus::Counter& CountRequestSeries(prometheus::Family<prometheus::Counter>& family,
                                          std::string_view status,
                                          std::string_view finished_reason);

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> exposition_;
  std::string model_name_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* e2e_;
  prometheus::Histogram* queue_;
  prometheus::Histogram* step_;
  prometheus::Histogram* batch_size_;
  prometheus::Histogram* encoder_batch_size_;
  prometheus::Histogram* encoder_batch_seconds_;
  prometheus::Histogram* encoder_queue_;
  prometheus::Histogram* iteration_tokens_;
  prometheus::Histogram* request_prompt_tokens_;
  prometheus::Histogram* request_generation_tokens_;
  prometheus::Histogram* request_max_tokens_;
  prometheus::Histogram* time_per_output_token_;
  prometheus::Histogram* prefill_time_;
  prometheus::Histogram* decode_time_;
  prometheus::Histogram* inference_time_;
  prometheus::Histogram* rtf_;
  prometheus::Histogram* chunk_latency_;
  prometheus::Gauge* running_;
  prometheus::Gauge* waiting_;
  prometheus::Gauge* kv_usage_;
  prometheus::Counter* kv_blocks_total_;
  prometheus::Gauge* kv_blocks_used_;
  prometheus::Gauge* kv_bytes_per_token_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Counter* preemptions_;
  prometheus::Counter* audio_seconds_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* segments_;
  prometheus::Family<prometheus::Counter>* interim_decodes_;
  prometheus::Family<prometheus::Counter>* early_finals_;
  prometheus::Family<prometheus::Gauge>* cache_config_;
  prometheus::Family<prometheus::Gauge>* build_info_;
  // The info series in use: replaced whole when their labels change.
  absl::Mutex info_mu_;
  prometheus::Gauge* cache_config_series_ ABSL_GUARDED_BY(info_mu_) = nullptr;
  prometheus::Gauge* build_info_series_ ABSL_GUARDED_BY(info_mu_) = nullptr;
  prometheus::Gauge* speech_sessions_;
  prometheus::Gauge* open_calls_;
  prometheus::Family<prometheus::Counter>* calls_limited_;
};

// The status label of an absl / gRPC status code: its canonical name in lower
// case ("ok", "cancelled", "deadline_exceeded", ...).
std::string StatusLabel(int code);

}  // namespace mtla

#endif  // MTLA_ENGINE_METRICS_SERVING_METRICS_H_
