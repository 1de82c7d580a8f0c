#include "server/mtla_server.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/loading/served_model.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "server/http/net_address.h"
#include "server/models_service.h"
#include "server/reflection_v1_service.h"
#include "server/service_health.h"
#include "server/text_generation_service.h"

namespace mtla {

std::string DefaultServedModelName(const std::string& model_dir) {
  std::filesystem::path path = std::filesystem::path(model_dir).lexically_normal();
  if (!path.has_filename()) path = path.parent_path();  // "dir/" -> "dir"
  if (path.filename() == "." || path.filename() == ".." || path.empty()) {
    std::error_code error;
    std::filesystem::path absolute = std::filesystem::absolute(path, error).lexically_normal();
    if (!absolute.has_filename()) absolute = absolute.parent_path();
    if (!error) path = absolute;
  }
  return path.filename().string();
}

absl::StatusOr<std::unique_ptr<MtlaServer>> MtlaServer::Start(const ServerOptions& options) {
  if (options.device != "auto" && options.device != "cpu" && options.device != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device must be auto, cpu or cuda, got '", options.device, "'"));
  }
  if (options.max_streams < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_streams must be >= 0 (0: no limit), got ", options.max_streams));
  }
  for (const auto& [flag, seconds] :
       {std::pair<const char*, double>{"--stream_idle_timeout_seconds",
                                       options.stream_idle_timeout_seconds},
        {"--stream_write_stall_seconds", options.stream_write_stall_seconds}}) {
    if (!(seconds > 0 && seconds <= 3600)) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, " must be in (0, 3600] seconds, got ", seconds));
    }
  }
  if (!(options.encoder_ms_per_step >= 0 && options.encoder_ms_per_step <= 1000)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--encoder_ms_per_step must be in [0, 1000] milliseconds, got ", options.encoder_ms_per_step));
  }
  if (options.max_pending_responses < 1 || options.max_pending_response_bytes < 1) {
    return absl::InvalidArgumentError("max_pending_responses and _bytes must be >= 1");
  }
  auto server = std::unique_ptr<MtlaServer>(new MtlaServer());
  server->options_ = options;
  const std::string model_name = options.served_model_name.empty()
                                     ? DefaultServedModelName(options.model_dir)
                                     : options.served_model_name;
  server->metrics_ = std::make_shared<ServingMetrics>(model_name);
  server->call_reporter_ =
      std::make_shared<CallReporter>(server->metrics_, model_name, options.request_log);
  server->calls_.calls = std::make_shared<OpenCalls>(options.max_streams, server->metrics_);
  server->calls_.metrics = server->metrics_;
  server->calls_.limits = {.stream_idle_timeout_seconds = options.stream_idle_timeout_seconds,
                           .max_pending_responses = options.max_pending_responses,
                           .max_pending_response_bytes = options.max_pending_response_bytes,
                           .write_stall_seconds = options.stream_write_stall_seconds};

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   MakeServerCredentials(options.tls));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, credentials, &server->port_);
  RETURN_IF_ERROR(ApplyConnectionOptions(options.connection, &builder));
  // gRPC sets SO_REUSEPORT by default, so a second server on a busy port
  // would start and share its calls; refuse instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  server->services_.push_back(std::make_unique<TextGenerationService>(
      server->engine_, server->text_, server->calls_, server->call_reporter_));
  server->services_.push_back(std::make_unique<ModelsService>(server->engine_, server->speech_,
                                                              model_name, server->text_));
  SpeechSessionOptions speech_defaults;
  speech_defaults.max_stream_seconds = options.max_stream_seconds;
  speech_defaults.max_chunk_bytes = options.max_audio_chunk_bytes;
  speech_defaults.early_finals = options.early_finals;
  server->services_.push_back(
      std::make_unique<SpeechTranslationService>(server->speech_, speech_defaults, model_name,
                                                 server->calls_, server->call_reporter_));
  // Reflection: v1alpha from gRPC's plugin, v1 from our own service, both
  // listing the same services (tests/server/grpc_conventions_test.cc checks
  // that the two lists agree, so a service added above must be named here).
  std::vector<std::string> reflected = HealthServiceNames();
  for (const char* name : {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                           grpc::reflection::v1::ServerReflection::service_full_name()}) {
    reflected.push_back(name);
  }
  server->services_.push_back(std::make_unique<ReflectionV1Service>(std::move(reflected)));
  for (auto& service : server->services_) builder.RegisterService(service.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("--listen=", options.listen_address, ": cannot listen (",
                                               ListenFailureReason(options.listen_address), ")"));
  }
  server->SetServing(false);  // loading

  if (!options.metrics_address.empty()) {
    auto metrics_http = http::MetricsHttpServer::Start(options.metrics_address,
                                                       server->metrics_->exposition());
    if (!metrics_http.ok()) {
      return absl::Status(metrics_http.status().code(),
                          absl::StrCat("--metrics_listen: ", metrics_http.status().message()));
    }
    server->metrics_http_ = std::move(*metrics_http);
  }
  return server;
}

MtlaServer::~MtlaServer() {
  StopHealthMonitor();
  if (server_) server_->Shutdown(std::chrono::system_clock::now());
  // Every call is over: the speech front end's last owner joins its encoder
  // worker here, before speech_model_ (which the worker reads) goes.
  speech_->Set(nullptr);
  if (auto engine = engine_->Get()) engine->Stop();
}

int MtlaServer::metrics_port() const { return metrics_http_ ? metrics_http_->port() : 0; }

absl::Status MtlaServer::LoadModel() {
  ServedModelOptions load;
  load.cache.block_slots = options_.block_slots;
  load.cache.memory_bytes = options_.kv_cache_bytes;
  load.cache.num_blocks = options_.kv_cache_blocks;
  load.cache.max_context_tokens = options_.max_context_tokens;
  ASSIGN_OR_RETURN(load.backend.device, ParseDeviceChoice(options_.device));
  RETURN_IF_ERROR(ValidateDtype(options_.dtype));
  load.backend.dtype = options_.dtype;
  load.log_prefix = "mtla-server";
  load.wrap_backend = options_.wrap_backend;
  ASSIGN_OR_RETURN(ServedModel model, LoadServedModel(options_.model_dir, load));

  EngineOptions engine_options;
  engine_options.scheduler.max_running = options_.max_running;
  engine_options.scheduler.max_batched_tokens = options_.max_batched_tokens;
  engine_options.scheduler.max_waiting = options_.max_queued;
  engine_options.max_new_tokens_limit = options_.max_new_tokens_limit;
  engine_options.stall_timeout_seconds = options_.engine_stall_seconds;
  engine_options.side_work_ms_per_step = options_.encoder_ms_per_step;
  // On the CPU the speech encoder runs as the engine's side work, in its one
  // OpenMP team, alternating with decode steps; a GPU step leaves the cores
  // to the encoder worker's own thread.
  const bool cpu_decoder = model.runner->backend().name() == "cpu";
  auto engine = std::make_shared<Engine>(std::move(model.runner), engine_options, metrics_);
  auto text = std::make_shared<TextFrontEnd>();
  text->tokenizer = std::move(model.text_tokenizer);
  text->bos_token_id = model.bos_token_id;
  text->eos_token_id = model.eos_token_id;
  text->add_bos_token = model.add_bos_token;
  text->chat_template = model.chat_template;
  text_->Set(std::move(text));  // before the engine: services that see it see this
  engine_->Set(engine, std::string(ModelArchitecture(model.family)));
  speech_model_ = std::move(model.speech);
  tokenizer_ = std::move(model.tokenizer);
  if (speech_model_) {
    auto front_end = std::make_shared<SpeechFrontEnd>();
    ASSIGN_OR_RETURN(front_end->fbank, audio::FbankComputer::Create());
    front_end->model = speech_model_.get();
    front_end->tokenizer = tokenizer_.get();
    front_end->engine = engine;
    front_end->encoder = std::make_shared<SpeechEncoderWorker>(
        speech_model_.get(), EncoderWorkerOptions{}, metrics_,
        cpu_decoder ? engine : nullptr);
    front_end->metrics = metrics_;
    front_end->source_language = model.source_language;
    front_end->target_language = model.target_language;
    speech_->Set(front_end);
  } else {
    speech_->Set(nullptr);  // loaded, and serving no speech: speech calls are UNIMPLEMENTED
  }
  SetServing(true);
  health_monitor_ = std::thread([this] { MonitorHealth(); });
  return absl::OkStatus();
}

bool MtlaServer::serving() const {
  absl::MutexLock lock(&health_mu_);
  return serving_;
}

void MtlaServer::SetServing(bool serving) {
  absl::MutexLock lock(&health_mu_);
  serving_ = serving;
  PublishServingStatus(server_->GetHealthCheckService(), serving, speech_->Get() != nullptr);
}

void MtlaServer::MonitorHealth() {
  std::string reported;  // the failure last logged
  while (true) {
    {
      absl::MutexLock lock(&health_mu_);
      auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(health_mu_) { return stop_monitor_; };
      health_mu_.AwaitWithTimeout(absl::Condition(&stop),
                                  absl::Seconds(options_.health_check_interval_seconds));
      if (stop_monitor_ || draining_) return;
    }
    std::shared_ptr<Engine> engine = engine_->Get();
    if (engine == nullptr) continue;
    const absl::Status health = engine->Health();
    absl::MutexLock lock(&health_mu_);
    if (draining_) return;
    if (!health.ok() && serving_) {
      std::fprintf(stderr, "mtla-server: NOT_SERVING: %s\n", std::string(health.message()).c_str());
      reported = std::string(health.message());
    } else if (health.ok() && !serving_) {
      std::fprintf(stderr, "mtla-server: SERVING again (was: %s)\n", reported.c_str());
    }
    if (health.ok() != serving_) {
      serving_ = health.ok();
      PublishServingStatus(server_->GetHealthCheckService(), serving_, speech_->Get() != nullptr);
    }
  }
}

void MtlaServer::StopHealthMonitor() {
  {
    absl::MutexLock lock(&health_mu_);
    stop_monitor_ = true;
  }
  if (health_monitor_.joinable()) health_monitor_.join();
}

void MtlaServer::Drain() {
  {
    absl::MutexLock lock(&health_mu_);
    draining_ = true;
  }
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(options_.drain_grace_seconds);
  // New calls are refused from here on: streams by the admission, every other
  // request by the engine; health says so only once they are (a client that
  // sees NOT_SERVING never gets a new call through). Open streams go on
  // sending audio, and their next segments are not in the engine yet, so both
  // are waited for.
  calls_.calls->StopAdmitting();
  std::shared_ptr<Engine> engine = engine_->Get();
  if (engine) engine->StartDrain();
  StopHealthMonitor();
  SetServing(false);
  auto busy = [&] {
    return calls_.calls->open() > 0 || (engine && engine->stats().in_flight > 0);
  };
  while (busy() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (const int open = calls_.calls->open(); open > 0) {
    std::fprintf(stderr, "mtla-server: drain grace period over; ending %d open call(s)\n", open);
    calls_.calls->EndAll(absl::UnavailableError(absl::StrCat(
        "the server is shutting down: its drain grace period (", options_.drain_grace_seconds,
        " s) ended before the stream half-closed; retry on another replica")));
  }
  if (engine) engine->Stop();  // fails whatever outlived the grace period with UNAVAILABLE
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

void MtlaServer::Wait() { server_->Wait(); }

std::string MtlaServer::HeldByCalls() const {
  std::shared_ptr<Engine> engine = engine_->Get();
  return absl::StrCat("open calls ", open_calls(), ", speech sessions ", metrics_->speech_sessions(),
                      ", cache blocks used ", engine ? engine->stats().cache_blocks_used : 0);
}

}  // namespace mtla
