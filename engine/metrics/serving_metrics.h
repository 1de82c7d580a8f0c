// The service's Prometheus metrics, prefixed `mtla_`, with the meanings and
// histogram buckets of vLLM's well-known set. Owns a prometheus::Registry that
// the server exposes over HTTP (prometheus::Exposer) at /metrics.
//
// Thread-safety: all methods are thread-safe (prometheus-cpp metrics are).
#ifndef MTLA_ENGINE_METRICS_SERVING_METRICS_H_
#define MTLA_ENGINE_METRICS_SERVING_METRICS_H_

#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace mtla {

class ServingMetrics {
 public:
  // `model_name` becomes the label model_name="..." on every metric.
  explicit ServingMetrics(const std::string& model_name);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // Latencies in seconds.
  void ObserveTimeToFirstToken(double seconds);
  void ObserveInterTokenLatency(double seconds);
  void ObserveEndToEndLatency(double seconds);
  void ObserveQueueTime(double seconds);
  void ObserveStep(double seconds, int batch_size, int num_tokens);

  void SetRequestsRunning(int n);
  void SetRequestsWaiting(int n);
  void SetKvCache(int blocks_used, int blocks_total, double bytes_per_token);

  void AddPromptTokens(int64_t n);
  void AddGenerationTokens(int64_t n);
  void AddPreemptions(int64_t n);
  // status: the gRPC status code name in lower case ("ok", "cancelled", ...).
  void CountRequest(const std::string& status);

  // Speech (used by the speech-translation service).
  void AddAudioSeconds(double seconds);
  // One translated segment: its real-time factor (also counts the segment).
  void ObserveRealTimeFactor(double rtf);
  void ObserveChunkLatency(double seconds);
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
  std::shared_ptr<prometheus::Registry> registry_;
  std::string model_name_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* e2e_;
  prometheus::Histogram* queue_;
  prometheus::Histogram* step_;
  prometheus::Histogram* batch_size_;
  prometheus::Histogram* rtf_;
  prometheus::Histogram* chunk_latency_;
  prometheus::Counter* segments_;
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
  prometheus::Gauge* speech_sessions_;
  prometheus::Gauge* open_calls_;
  prometheus::Family<prometheus::Counter>* calls_limited_;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_METRICS_SERVING_METRICS_H_
