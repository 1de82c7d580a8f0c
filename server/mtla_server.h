// The server process's parts put together: gRPC services (text generation,
// models, speech translation, grpc.health.v1 per service name, reflection v1
// and v1alpha), the engine, and the Prometheus endpoint.
//
// Lifecycle: Start() binds the ports with health NOT_SERVING (loading);
// LoadModel() builds the engine and turns health SERVING; Drain() turns health
// NOT_SERVING, refuses new calls with UNAVAILABLE, lets in-flight requests and
// open StreamingTranslate streams (which keep sending audio and receiving its
// results until they half-close) finish within the grace period, ends those
// still open with UNAVAILABLE when it is over, then shuts down.
#ifndef MTLA_SERVER_MTLA_SERVER_H_
#define MTLA_SERVER_MTLA_SERVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <thread>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "engine/speech/speech_model.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/call_reporter.h"
#include "server/call_control.h"
#include "server/connection_options.h"
#include "server/engine_holder.h"
#include "server/http/metrics_http_server.h"
#include "server/server_credentials.h"
#include "server/speech_translation_service.h"
#include "server/text_front_end.h"

namespace mtla {

struct ServerOptions {
  std::string model_dir;
  // The name GetModelInfo reports and the model_name metric label carry;
  // empty: the model directory's name.
  std::string served_model_name;
  std::string listen_address = "0.0.0.0:50051";
  std::string metrics_address = "0.0.0.0:9090";  // empty: no metrics endpoint
  std::string device = "auto";                    // auto | cpu | cuda
  std::string dtype = "bf16";                     // CUDA storage: bf16 | fp16 | fp32
  size_t kv_cache_bytes = 512u << 20;
  int kv_cache_blocks = 0;  // > 0: exactly this many cache blocks (overrides kv_cache_bytes)
  int block_slots = 16;
  int max_running = 64;
  int max_batched_tokens = 512;
  int max_queued = 256;
  int max_message_bytes = 4 << 20;
  int max_new_tokens_limit = 2048;
  int max_context_tokens = 0;  // 0: the model's own limit
  double drain_grace_seconds = 30;
  // Health: how often the engine is asked, and how long it may go without
  // progress while requests are in flight before health says NOT_SERVING.
  double health_check_interval_seconds = 1;
  double engine_stall_seconds = 60;
  // Fault-injection tests only (see ServedModelOptions::wrap_backend).
  std::function<std::unique_ptr<ModelBackend>(std::unique_ptr<ModelBackend>)> wrap_backend;
  // Calls (server/call_control.h): at most max_streams Generate,
  // StreamingTranslate and Translate calls open at once (0: no limit); a
  // stream idle this long ends with OUT_OF_RANGE; a write or final status the
  // client does not take this long cancels the call; a StreamingTranslate
  // call may leave this many responses / bytes unread.
  int max_streams = 256;
  double stream_idle_timeout_seconds = 30;
  double stream_write_stall_seconds = 10;
  int max_pending_responses = 256;
  size_t max_pending_response_bytes = 1u << 20;
  // Speech sessions.
  double max_stream_seconds = 3600;
  size_t max_audio_chunk_bytes = 1 << 20;
  bool early_finals = true;  // SpeechSessionOptions::early_finals
  double encoder_ms_per_step = 100;  // EngineOptions::side_work_ms_per_step
  // Transport: TLS / mutual TLS (plaintext when empty), keepalive and connection age.
  ServerTlsOptions tls;
  ConnectionOptions connection;
  // One log line per finished inference call (server/request_log.h).
  RequestLogOptions request_log;
};

// The model name a server reports when --served_model_name is not given: the
// model directory's own name ("models/en-de/" -> "en-de").
std::string DefaultServedModelName(const std::string& model_dir);

class MtlaServer {
 public:
  static absl::StatusOr<std::unique_ptr<MtlaServer>> Start(const ServerOptions& options);
  ~MtlaServer();

  // Loads the model and starts serving. Errors name the file/field.
  absl::Status LoadModel();
  // Graceful stop (see above). Safe to call once from any thread.
  void Drain();
  // Blocks until the gRPC server has shut down.
  void Wait();

  int port() const { return port_; }
  // Whether grpc.health.v1 currently answers SERVING.
  bool serving() const;
  int metrics_port() const;
  // Calls open (Generate, StreamingTranslate, Translate): what --max_streams counts.
  int open_calls() const { return calls_.calls->open(); }
  // What the calls hold, for the last log line after a drain: "open calls N,
  // speech sessions S, cache blocks used B" (all 0 after a clean drain).
  std::string HeldByCalls() const;
  std::shared_ptr<Engine> engine() const { return engine_->Get(); }

 private:
  MtlaServer() = default;
  ServerOptions options_;

  std::shared_ptr<EngineHolder> engine_ = std::make_shared<EngineHolder>();
  std::shared_ptr<TextFrontEndHolder> text_ = std::make_shared<TextFrontEndHolder>();
  std::shared_ptr<SpeechFrontEndHolder> speech_ = std::make_shared<SpeechFrontEndHolder>();
  // The open calls (--max_streams, drain) and the timer of idle and stalled
  // calls, shared by the services; set by Start().
  CallControl calls_;
  // Watches the engine's Health() and turns gRPC health NOT_SERVING while it
  // fails (for good after a backend failure), so a liveness probe restarts
  // the pod instead of every request failing behind SERVING.
  void MonitorHealth();
  void StopHealthMonitor();
  void SetServing(bool serving);

  mutable absl::Mutex health_mu_;
  bool serving_ ABSL_GUARDED_BY(health_mu_) = false;
  bool stop_monitor_ ABSL_GUARDED_BY(health_mu_) = false;
  bool draining_ ABSL_GUARDED_BY(health_mu_) = false;
  std::thread health_monitor_;

  std::unique_ptr<SpeechModel> speech_model_;  // encoder + projector (decoder moved to the engine)
  std::unique_ptr<Tokenizer> tokenizer_;
  std::shared_ptr<ServingMetrics> metrics_;
  std::shared_ptr<const CallReporter> call_reporter_;  // counts and logs every call's end
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<http::MetricsHttpServer> metrics_http_;
  int port_ = 0;
};

}  // namespace mtla

#endif  // MTLA_SERVER_MTLA_SERVER_H_
