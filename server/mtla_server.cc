#include "server/mtla_server.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/backend_factory.h"
#include "engine/model/llama_mtla.h"
#include "engine/weights/safetensors.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "server/models_service.h"
#include "server/text_generation_service.h"

namespace mtla {

absl::StatusOr<std::unique_ptr<MtlaServer>> MtlaServer::Start(const ServerOptions& options) {
  if (options.device != "auto" && options.device != "cpu" && options.device != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device must be auto, cpu or cuda, got '", options.device, "'"));
  }
  auto server = std::unique_ptr<MtlaServer>(new MtlaServer());
  server->options_ = options;
  const std::string model_name = std::filesystem::path(options.model_dir).filename().string();
  server->metrics_ = std::make_shared<ServingMetrics>(model_name);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   MakeServerCredentials(options.tls));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, credentials, &server->port_);
  RETURN_IF_ERROR(ApplyConnectionOptions(options.connection, &builder));
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  server->services_.push_back(std::make_unique<TextGenerationService>(server->engine_));
  server->services_.push_back(
      std::make_unique<ModelsService>(server->engine_, model_name));
  SpeechSessionOptions speech_defaults;
  speech_defaults.max_stream_seconds = options.max_stream_seconds;
  speech_defaults.max_chunk_bytes = options.max_audio_chunk_bytes;
  server->services_.push_back(
      std::make_unique<SpeechTranslationService>(server->speech_, speech_defaults));
  for (auto& service : server->services_) builder.RegisterService(service.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  server->server_->GetHealthCheckService()->SetServingStatus(false);  // loading

  if (!options.metrics_address.empty()) {
    try {
      server->exposer_ = std::make_unique<prometheus::Exposer>(options.metrics_address);
    } catch (const std::exception& e) {
      return absl::UnavailableError(
          absl::StrCat("cannot serve metrics on ", options.metrics_address, ": ", e.what()));
    }
    server->exposer_->RegisterCollectable(server->metrics_->registry());
  }
  return server;
}

MtlaServer::~MtlaServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now());
  if (auto engine = engine_->Get()) engine->Stop();
}

int MtlaServer::metrics_port() const {
  if (!exposer_) return 0;
  std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports[0];
}

absl::Status MtlaServer::LoadModel() {
  // Flag errors first; the device choice itself is made (and logged) when the
  // decoder is built.
  RETURN_IF_ERROR(ParseDeviceChoice(options_.device).status());
  RETURN_IF_ERROR(ValidateDtype(options_.dtype));
  ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner, LoadRunner());
  EngineOptions engine_options;
  engine_options.scheduler.max_running = options_.max_running;
  engine_options.scheduler.max_batched_tokens = options_.max_batched_tokens;
  engine_options.scheduler.max_waiting = options_.max_queued;
  engine_options.max_new_tokens_limit = options_.max_new_tokens_limit;
  auto engine = std::make_shared<Engine>(std::move(runner), engine_options, metrics_);
  engine_->Set(engine, speech_model_ ? "s2t-mtla" : "llama-mtla");
  if (speech_model_) {
    auto front_end = std::make_shared<SpeechFrontEnd>();
    ASSIGN_OR_RETURN(front_end->fbank, audio::FbankComputer::Create());
    front_end->model = speech_model_.get();
    front_end->tokenizer = tokenizer_.get();
    front_end->engine = engine;
    front_end->metrics = metrics_;
    front_end->source_language = speech_languages_.first;
    front_end->target_language = speech_languages_.second;
    speech_->Set(front_end);
  }
  server_->GetHealthCheckService()->SetServingStatus(true);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelRunner>> MtlaServer::LoadRunner() {
  CacheOptions cache;
  cache.block_slots = options_.block_slots;
  cache.memory_bytes = options_.kv_cache_bytes;
  cache.num_blocks = options_.kv_cache_blocks;
  cache.max_context_tokens = options_.max_context_tokens;
  BackendChoice choice;
  ASSIGN_OR_RETURN(choice.device, ParseDeviceChoice(options_.device));
  choice.dtype = options_.dtype;
  const std::string dir = options_.model_dir;
  std::ifstream config_file(dir + "/config.json");
  if (!config_file) return absl::NotFoundError(absl::StrCat(dir, "/config.json: cannot open"));
  std::stringstream text;
  text << config_file.rdbuf();
  const bool speech = text.str().find("\"model_type\"") == std::string::npos;
  if (!speech) {
    ASSIGN_OR_RETURN(LoadedModel model, LoadLlamaMtla(dir, cache, choice, "mtla-server"));
    return std::make_unique<ModelRunner>(std::move(model.backend));
  }
  ASSIGN_OR_RETURN(SpeechModel model, LoadSpeechModelCpu(dir, cache));
  if (choice.device == DeviceChoice::kCuda ||
      (choice.device == DeviceChoice::kAuto && CudaBackendAvailable().ok())) {
    // The encoder and projector stay on the CPU; the decoder moves to the
    // chosen backend (CreateModelBackend reports a fallback or an error).
    const std::string weights =
        dir + (model.config.has_encoder ? "/model.safetensors" : "/decoder.safetensors");
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(weights));
    model.decoder.reset();
    ASSIGN_OR_RETURN(model.decoder, CreateModelBackend(SpeechDecoderSpec(model.config), *file,
                                                       cache, choice, "mtla-server"));
  } else {
    std::fprintf(stderr, "mtla-server: device %s -> cpu (%s)\n", options_.device.c_str(),
                 choice.device == DeviceChoice::kCpu
                     ? "requested"
                     : std::string(CudaBackendAvailable().message()).c_str());
  }
  if (!model.encoder.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, ": a decoder-only checkpoint cannot serve speech (no encoder)"));
  }
  for (const char* name : {"spm.model", "sentencepiece.model", "spm_unigram8000.model"}) {
    const std::string path = dir + "/" + name;
    if (std::filesystem::exists(path)) {
      ASSIGN_OR_RETURN(tokenizer_, Tokenizer::Load(path));
      break;
    }
  }
  speech_languages_ = {model.config.source_language, model.config.target_language};
  auto runner = std::make_unique<ModelRunner>(std::move(model.decoder));
  speech_model_ = std::make_unique<SpeechModel>(std::move(model));
  return runner;
}

void MtlaServer::Drain() {
  server_->GetHealthCheckService()->SetServingStatus(false);
  std::shared_ptr<Engine> engine = engine_->Get();
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(options_.drain_grace_seconds);
  if (engine) {
    engine->StartDrain();
    while (engine->stats().in_flight > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    engine->Stop();  // fails whatever outlived the grace period with UNAVAILABLE
  }
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

void MtlaServer::Wait() { server_->Wait(); }

}  // namespace mtla
