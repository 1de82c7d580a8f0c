// mtla-server: serves an MTLA model over gRPC (mtla.v1 TextGeneration and
// Models, grpc.health.v1, reflection) with Prometheus metrics on a separate
// port. SIGTERM/SIGINT drain: health NOT_SERVING, new requests UNAVAILABLE,
// in-flight requests finish within --drain_grace_seconds, exit 0.
#include <csignal>
#include <cstdio>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "server/mtla_server.h"

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

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("mtla-server --model_dir=DIR [flags]");
  absl::ParseCommandLine(argc, argv);

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
  options.engine_stall_seconds = absl::GetFlag(FLAGS_engine_stall_seconds);
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
  std::fprintf(stderr, "mtla-server: stopped\n");
  return 0;
}
