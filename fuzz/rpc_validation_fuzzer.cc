// Fuzzes request validation for every RPC, with the server's own code from
// the wire message up to the engine's queue: ToGenerationRequest +
// Engine::Submit (Generate); StartStreamingSession / ContinueStreamingSession
// and the session's audio path (StreamingTranslate); ToSessionOptions +
// SpeechSession (Translate); FillModelInfo (GetModelInfo). The model is the
// bundled default speech model (models/en-de-synthetic) on a small cache.
//
// The input is an mtla.fuzz.RpcCall (fuzz/rpc_fuzz_input.proto) in protobuf
// text format or, failing that, binary. Whatever a request does, it is then
// cancelled, and the engine must come back to no request in flight and no
// cache block in use (no leak after any error).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "engine/audio/fbank.h"
#include "engine/model/model_runner.h"
#include "engine/serving/engine.h"
#include "engine/speech/speech_model.h"
#include "engine/streaming/speech_session.h"
#include "engine/tokenizer/tokenizer.h"
#include "fuzz/rpc_fuzz_input.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/text_format.h"
#include "server/engine_holder.h"
#include "server/models_service.h"
#include "server/speech_translation_service.h"
#include "server/text_generation_service.h"

namespace mtla {
namespace {

struct Served {
  std::unique_ptr<SpeechModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::shared_ptr<EngineHolder> holder = std::make_shared<EngineHolder>();
  std::shared_ptr<Engine> engine;
  SpeechFrontEnd front_end;
  SpeechSessionOptions defaults;
};

void Die(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "fuzz_rpc_validation: %s: %s\n", what, std::string(status.message()).c_str());
  std::abort();
}

// Loads the default model as mtla-server does (server/mtla_server.cc), with
// the server's default limits and a cache of 4 MB.
Served* Load() {
  const std::string dir = std::string(MTLA_SOURCE_DIR) + "/models/en-de-synthetic";
  auto* s = new Served();
  CacheOptions cache;
  cache.memory_bytes = 4u << 20;
  absl::StatusOr<SpeechModel> model = LoadSpeechModelCpu(dir, cache);
  if (!model.ok()) Die("loading the default model", model.status());
  auto tokenizer = Tokenizer::Load(dir + "/spm.model");
  if (!tokenizer.ok()) Die("loading its tokenizer", tokenizer.status());
  s->tokenizer = std::move(*tokenizer);
  s->front_end.source_language = model->config.source_language;
  s->front_end.target_language = model->config.target_language;
  auto runner = std::make_unique<ModelRunner>(std::move(model->decoder));
  s->model = std::make_unique<SpeechModel>(std::move(*model));
  EngineOptions options;  // mtla-server's flag defaults
  options.scheduler.max_running = 64;
  options.scheduler.max_batched_tokens = 512;
  options.scheduler.max_waiting = 256;
  options.max_new_tokens_limit = 2048;
  s->engine = std::make_shared<Engine>(std::move(runner), options, nullptr);
  s->holder->Set(s->engine, "s2t-mtla");
  auto fbank = audio::FbankComputer::Create();
  if (!fbank.ok()) Die("fbank", fbank.status());
  s->front_end.fbank = *fbank;
  s->front_end.model = s->model.get();
  s->front_end.tokenizer = s->tokenizer.get();
  s->front_end.engine = s->engine;
  // As mtla-server on the CPU: the encoder worker runs its stages as the
  // engine's side work.
  s->front_end.encoder = std::make_shared<SpeechEncoderWorker>(
      s->model.get(), EncoderWorkerOptions{}, /*metrics=*/nullptr, s->engine);
  return s;
}

// Cancels `stream` and waits until the engine has ended it.
void CancelAndDrain(RequestStream& stream) {
  stream.Cancel();
  GenerationEvent event;
  while (!event.finished) {
    if (!stream.WaitPop(&event, 10.0)) {
      std::fprintf(stderr, "fuzz_rpc_validation: a cancelled request did not end in 10 s\n");
      std::abort();
    }
  }
}

// Ends `session` as a cancelled call would, then checks the engine is idle
// and its cache empty again.
void EndSession(std::unique_ptr<SpeechSession> session) {
  if (session) {
    session->Cancel();
    session.reset();  // waits for engine callbacks into the session
  }
}

void ExpectEngineIdle(const Engine& engine) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (true) {
    const EngineStats stats = engine.stats();
    if (stats.in_flight == 0 && stats.cache_blocks_used == 0) return;
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr,
                   "fuzz_rpc_validation: engine not idle 10 s after the call: %d in flight, "
                   "%d cache blocks used\n",
                   stats.in_flight, stats.cache_blocks_used);
      std::abort();
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void Generate(Served& s, const v1::GenerateRequest& wire) {
  absl::StatusOr<GenerationRequest> request = ToGenerationRequest(wire);
  if (!request.ok()) return;
  absl::StatusOr<std::shared_ptr<RequestStream>> stream = s.engine->Submit(std::move(*request));
  if (stream.ok()) CancelAndDrain(**stream);
}

void StreamingTranslate(Served& s, const fuzz::StreamingCall& call) {
  std::unique_ptr<SpeechSession> session;
  for (const v1::StreamingTranslateRequest& request : call.requests()) {
    if (session == nullptr) {
      auto created = StartStreamingSession(request, s.front_end, s.defaults, [] {});
      // FailedPrecondition: the front end above is incomplete, not the input.
      if (absl::IsFailedPrecondition(created.status())) Die("session", created.status());
      if (!created.ok()) return;
      session = std::move(*created);
    } else if (!ContinueStreamingSession(request, *session).ok()) {
      return EndSession(std::move(session));
    }
    (void)session->TakeUpdates();
  }
  if (session != nullptr && call.half_close()) (void)session->FinishAudio();
  EndSession(std::move(session));
}

void Translate(Served& s, const v1::TranslateRequest& request) {
  absl::StatusOr<SpeechSessionOptions> options =
      ToSessionOptions(request.config(), s.front_end, s.defaults);
  if (!options.ok()) return;
  auto session = SpeechSession::Create(s.front_end, *options, [] {});
  if (absl::IsFailedPrecondition(session.status())) Die("session", session.status());
  if (!session.ok()) return;
  if ((*session)->AcceptAudio(request.audio()).ok()) (void)(*session)->FinishAudio();
  EndSession(std::move(*session));
}

}  // namespace
}  // namespace mtla

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // One compute thread, as on a shared CI core; passive OpenMP waiting.
  setenv("OMP_NUM_THREADS", "1", 0);
  setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
  // Rejected inputs (invalid UTF-8 in proto3 strings, text-format syntax
  // errors) would log a line each.
  google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*, int,
                                     const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static mtla::Served* served = mtla::Load();
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  mtla::fuzz::RpcCall call;
  google::protobuf::TextFormat::Parser parser;
  parser.AllowPartialMessage(false);
  if (!parser.ParseFromString(bytes, &call) && !call.ParseFromString(bytes)) return 0;
  switch (call.call_case()) {
    case mtla::fuzz::RpcCall::kGenerate:
      mtla::Generate(*served, call.generate());
      break;
    case mtla::fuzz::RpcCall::kStreamingTranslate:
      mtla::StreamingTranslate(*served, call.streaming_translate());
      break;
    case mtla::fuzz::RpcCall::kTranslate:
      mtla::Translate(*served, call.translate());
      break;
    case mtla::fuzz::RpcCall::kGetModelInfo: {
      mtla::v1::ModelInfo info;
      if (!mtla::FillModelInfo(*served->holder, "en-de-synthetic", &info).ok()) __builtin_trap();
      break;
    }
    case mtla::fuzz::RpcCall::CALL_NOT_SET:
      break;
  }
  mtla::ExpectEngineIdle(*served->engine);
  return 0;
}
