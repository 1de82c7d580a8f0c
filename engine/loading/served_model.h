// Everything a server needs from a model directory, loaded once: the family
// (from config.json, typed), the decoder on the chosen device, the speech
// encoder and projector for speech models, and the tokenizer.
//
//   LlamaMTLA  config.json with "model_type": "llama-mtla", model.safetensors
//   speech     the paper's speech-translation model: fairseq arguments
//              (config.json with "arch") and model.safetensors, or the
//              decoder-only reference layout (decoder.safetensors), which
//              cannot serve (no encoder)
//   tokenizer  the first of kTokenizerFileNames in the directory: for speech,
//              the in-process decoder (fairseq ids, text out only); for
//              LlamaMTLA, the real SentencePiece library in its plugin
//              (text in and out), checked against config.json's vocabulary
//              and bos/eos ids; tokenizer_config.json, when present, may add
//              "chat_template" and "add_bos_token" (Hugging Face's names)
//
// The device and storage dtype are chosen once (BackendChoice; the factory
// logs an automatic fallback); the decoder is loaded once, on that device.
//
// Thread-compatible: a plain loader. The returned parts follow their own
// contracts (the runner is engine-thread only once handed to an Engine).
#ifndef MTLA_ENGINE_LOADING_SERVED_MODEL_H_
#define MTLA_ENGINE_LOADING_SERVED_MODEL_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/model/backend_factory.h"
#include "engine/model/cache_options.h"
#include "engine/model/model_runner.h"
#include "engine/speech/speech_model.h"
#include "engine/tokenizer/sentencepiece_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace mtla {

enum class ModelFamily { kLlamaMtla, kSpeechTranslation };

// "llama-mtla" or "s2t-mtla" (GetModelInfo.architecture).
std::string_view ModelArchitecture(ModelFamily family);

// The family a config.json describes. InvalidArgument naming `path` and the
// field when the text is not a JSON object or names an unknown model_type.
absl::StatusOr<ModelFamily> DetectModelFamily(std::string_view config_json, const std::string& path);

inline constexpr const char* kTokenizerFileNames[] = {"tokenizer.model", "spm.model",
                                                      "sentencepiece.model",
                                                      "spm_unigram8000.model"};

struct ServedModelOptions {
  CacheOptions cache;
  BackendChoice backend;
  std::string log_prefix = "mtla-server";  // starts the device-choice log line
  // Fault-injection tests only: wraps the decoder backend before it is handed
  // to the runner (null: used as built).
  std::function<std::unique_ptr<ModelBackend>(std::unique_ptr<ModelBackend>)> wrap_backend;
};

struct ServedModel {
  ModelFamily family = ModelFamily::kLlamaMtla;
  std::unique_ptr<ModelRunner> runner;   // the decoder, on the chosen device
  std::unique_ptr<SpeechModel> speech;   // speech only: encoder + projector (no decoder)
  std::unique_ptr<Tokenizer> tokenizer;  // speech only; null when the directory has none
  // LlamaMTLA only: text <-> ids; null when the directory has no tokenizer.
  std::unique_ptr<SentencePieceTokenizer> text_tokenizer;
  // The model's conventions (GetModelInfo): begin/end-of-sequence ids, whether
  // a text prompt starts with BOS, the chat template ("" when none).
  int32_t bos_token_id = -1;
  int32_t eos_token_id = -1;
  bool add_bos_token = false;
  std::string chat_template;
  // Speech only: the language pair the config declares (empty: not declared).
  std::string source_language;
  std::string target_language;
};

// Loads `dir`. Errors name the file and field (or tensor); FailedPrecondition
// for a speech checkpoint without an encoder and for --device=cuda where the
// CUDA backend cannot run.
//
// Threads: the loading (weight packing runs OpenMP parallel regions) happens on
// a thread of its own that has exited when this returns, and the OpenMP worker
// threads it started have exited with it. libgomp gives every thread that
// starts a parallel region a pool of workers and counts the workers of all
// pools; when they outnumber the CPUs it cuts every team's spin-wait to 100
// iterations, so the decoding thread's worker sleeps between parallel regions
// and each of a step's ~80 regions pays a futex wake-up. A loader pool left on
// the caller's thread made mtla-server's batch-1 step about 2x the benchmark's
// (docs/benchmarks.md, "The decode step inside the server").
absl::StatusOr<ServedModel> LoadServedModel(const std::string& dir,
                                            const ServedModelOptions& options);

}  // namespace mtla

#endif  // MTLA_ENGINE_LOADING_SERVED_MODEL_H_
