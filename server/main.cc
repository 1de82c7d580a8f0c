// mtla-server: serves an MTLA model over gRPC (mtla.v1 TextGeneration and
// Models, grpc.health.v1, reflection) with Prometheus metrics on a separate
// port. SIGTERM/SIGINT drain: health NOT_SERVING, new requests UNAVAILABLE,
// in-flight requests finish within --drain_grace_seconds, exit 0.
#include <csignal>
#include <cstdio>
#include <thread>

#include "absl/flags/flag.h"
#include "server/mtla_server.h"
#include "tools/common/command_line.h"

ABSL_FLAG(std::string, model_dir, "", "Model directory (config.json + model.safetensors)");
ABSL_FLAG(std::string, served_model_name, "",
          "Model name in GetModelInfo and the model_name metric label (default: the model "
          "directory's name)");
ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "gRPC listen address");
ABSL_FLAG(std::string, metrics_listen, "0.0.0.0:9090",
          "Prometheus /metrics listen address (empty: off)");
ABSL_FLAG(std::string, device, "auto",
          "auto | cpu | cuda (auto: CUDA when built with it and a device is found, else CPU)");
ABSL_FLAG(std::string, dtype, "bf16", "CUDA weight and KV cache storage: bf16 | fp16 | fp32");
ABSL_FLAG(int64_t, kv_cache_mb, 512, "KV cache memory budget in MiB");
ABSL_FLAG(int, kv_cache_blocks, 0, "Exact number of KV cache blocks (overrides --kv_cache_mb)");
ABSL_FLAG(int, block_slots, 16, "Cache slots per block (a slot holds down_rate tokens)");
ABSL_FLAG(int, max_running, 64, "Requests decoding at once");
ABSL_FLAG(int, max_batched_tokens, 512, "Tokens per engine step");
ABSL_FLAG(int, max_queued, 256, "Requests waiting beyond the running ones");
ABSL_FLAG(int, max_message_bytes, 4 << 20, "Largest gRPC message accepted or sent");
ABSL_FLAG(int, max_new_tokens_limit, 2048, "Largest max_new_tokens a request may ask for");
ABSL_FLAG(int, max_context_tokens, 0, "Longest sequence served (0: the model's limit)");
ABSL_FLAG(double, engine_stall_seconds, 60,
          "Health turns NOT_SERVING when requests are in flight and the engine has made no "
          "progress for this long (a hung step); a backend failure turns it NOT_SERVING for good");
ABSL_FLAG(double, drain_grace_seconds, 30, "How long in-flight requests may run after SIGTERM");
// Per-call logging (server/request_log.h, docs/observability.md).
ABSL_FLAG(std::string, request_log, "all",
          "One JSON line on stderr per finished inference call: off | errors (non-OK calls "
          "only) | all");
ABSL_FLAG(bool, request_log_content, false,
          "Add prompt and output token ids and the output text to --request_log lines (audio "
          "is never logged)");
// Call limits (server/call_control.h); docs/deployment.md, docs/reliability.md.
ABSL_FLAG(int, max_streams, 256,
          "Generate, StreamingTranslate and Translate calls open at once; more get "
          "RESOURCE_EXHAUSTED at once (0: no limit)");
ABSL_FLAG(double, stream_idle_timeout_seconds, 30,
          "A StreamingTranslate stream that sends nothing for this long before half-closing ends "
          "with OUT_OF_RANGE, freeing its session (in (0, 3600])");
ABSL_FLAG(double, stream_write_stall_seconds, 10,
          "A call whose client takes no response (or final status) for this long is cancelled "
          "(in (0, 3600])");
// Speech sessions (engine/streaming/speech_session.h); docs/api.md.
ABSL_FLAG(bool, early_finals, true,
          "Decode a speech segment as soon as its speech has settled (its trailing padding passed "
          "in silence), before the endpointer closes it, and use that decode as its final result "
          "when the segment closes with the same speech: finals come up to the endpointer's "
          "silence_ms sooner; speech that resumes discards the early decode");
ABSL_FLAG(double, encoder_ms_per_step, 100,
          "CPU decoder: while speech segments wait for the encoder, the engine encodes for up to "
          "this many milliseconds (one encoder stage at least) between two decode steps; larger "
          "ends bursts of segments sooner, smaller keeps decoding steadier during them (0: one "
          "stage per step)");
// Transport security (server/server_credentials.h) and connection management
// (server/connection_options.h); docs/deployment.md.
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain: TLS on --listen (with --tls_key_file; neither: plaintext)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file (unencrypted)");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificates: mutual TLS, clients must present a certificate signed by one");
ABSL_FLAG(double, keepalive_time_seconds, 0,
          "Ping a connection idle this long, calls or not (0: gRPC default, 2 h with calls only)");
ABSL_FLAG(double, keepalive_timeout_seconds, 0,
          "Close a connection whose ping is unanswered this long (0: gRPC default, 20 s)");
ABSL_FLAG(double, keepalive_min_client_ping_interval_seconds, 0,
          "Accept client keepalive pings this often, calls or not (0: gRPC default, 5 min with "
          "calls, 2 h without)");
ABSL_FLAG(double, max_connection_age_seconds, 0,
          "GOAWAY after this long (+-10% jitter) so clients reconnect and rebalance (0: never)");
ABSL_FLAG(double, max_connection_age_grace_seconds, 0,
          "Calls in flight at GOAWAY may run this long before the connection closes (0: no limit)");

int main(int argc, char** argv) {
  mtla::ParseCommandLineFlags(
      argc, argv, "mtla-server",
      "serves an MTLA model (text generation or speech translation) over gRPC.\n\n"
      "  mtla-server --model_dir=DIR [--listen=HOST:PORT] [--metrics_listen=HOST:PORT]\n"
      "              [--device=auto|cpu|cuda] [--tls_cert_file=F --tls_key_file=F] ...\n\n"
      "Services: mtla.v1.TextGeneration, mtla.v1.Models, mtla.v1.SpeechTranslation,\n"
      "grpc.health.v1.Health (per service name), grpc.reflection.v1 and v1alpha.\n"
      "SIGTERM drains: health NOT_SERVING, in-flight requests finish within\n"
      "--drain_grace_seconds. Flags take --flag=value or --flag value; docs/deployment.md.");

  // Signals are taken by one thread with sigwait; block them everywhere first.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  mtla::ServerOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model_dir);
  options.served_model_name = absl::GetFlag(FLAGS_served_model_name);
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_listen);
  options.device = absl::GetFlag(FLAGS_device);
  options.dtype = absl::GetFlag(FLAGS_dtype);
  options.kv_cache_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_kv_cache_mb)) << 20;
  options.kv_cache_blocks = absl::GetFlag(FLAGS_kv_cache_blocks);
  options.block_slots = absl::GetFlag(FLAGS_block_slots);
  options.max_running = absl::GetFlag(FLAGS_max_running);
  options.max_batched_tokens = absl::GetFlag(FLAGS_max_batched_tokens);
  options.max_queued = absl::GetFlag(FLAGS_max_queued);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.max_new_tokens_limit = absl::GetFlag(FLAGS_max_new_tokens_limit);
  options.max_context_tokens = absl::GetFlag(FLAGS_max_context_tokens);
  options.drain_grace_seconds = absl::GetFlag(FLAGS_drain_grace_seconds);
  options.max_streams = absl::GetFlag(FLAGS_max_streams);
  options.stream_idle_timeout_seconds = absl::GetFlag(FLAGS_stream_idle_timeout_seconds);
  options.stream_write_stall_seconds = absl::GetFlag(FLAGS_stream_write_stall_seconds);
  options.early_finals = absl::GetFlag(FLAGS_early_finals);
  options.encoder_ms_per_step = absl::GetFlag(FLAGS_encoder_ms_per_step);
  options.engine_stall_seconds = absl::GetFlag(FLAGS_engine_stall_seconds);
  options.tls = {.cert_file = absl::GetFlag(FLAGS_tls_cert_file),
                 .key_file = absl::GetFlag(FLAGS_tls_key_file),
                 .client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file)};
  options.connection = {
      .keepalive_time_seconds = absl::GetFlag(FLAGS_keepalive_time_seconds),
      .keepalive_timeout_seconds = absl::GetFlag(FLAGS_keepalive_timeout_seconds),
      .max_connection_age_seconds = absl::GetFlag(FLAGS_max_connection_age_seconds),
      .max_connection_age_grace_seconds = absl::GetFlag(FLAGS_max_connection_age_grace_seconds),
      .keepalive_min_client_ping_interval_seconds =
          absl::GetFlag(FLAGS_keepalive_min_client_ping_interval_seconds)};
  absl::StatusOr<mtla::RequestLogLevel> request_log =
      mtla::ParseRequestLogLevel(absl::GetFlag(FLAGS_request_log));
  if (!request_log.ok()) {
    std::fprintf(stderr, "mtla-server: %s\n", std::string(request_log.status().message()).c_str());
    return 2;
  }
  options.request_log = {.level = *request_log,
                         .content = absl::GetFlag(FLAGS_request_log_content)};
  if (options.model_dir.empty()) {
    std::fprintf(stderr, "mtla-server: --model_dir is required\n");
    return 2;
  }

  auto server = mtla::MtlaServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "mtla-server: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "mtla-server: listening on port %d, metrics on port %d; loading %s\n",
               (*server)->port(), (*server)->metrics_port(), options.model_dir.c_str());
  std::fprintf(stderr, "mtla-server: gRPC over %s\n", mtla::DescribeTls(options.tls).c_str());
  std::thread signal_thread([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    std::fprintf(stderr, "mtla-server: signal %d, draining (grace %.0f s)\n", signal,
                 options.drain_grace_seconds);
    (*server)->Drain();
  });
  if (absl::Status loaded = (*server)->LoadModel(); !loaded.ok()) {
    std::fprintf(stderr, "mtla-server: %s\n", loaded.ToString().c_str());
    std::_Exit(1);
  }
  std::fprintf(stderr, "mtla-server: serving\n");
  (*server)->Wait();
  signal_thread.join();
  std::fprintf(stderr, "mtla-server: stopped (%s)\n", (*server)->HeldByCalls().c_str());
  return 0;
}
