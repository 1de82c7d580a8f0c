#include "engine/loading/served_model.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/config/json_fields.h"
#include "engine/config/model_config.h"
#include "engine/model/llama_mtla.h"

namespace mtla {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return text.str();
}

// The first of kTokenizerFileNames in `dir`; "" when there is none.
std::string FindTokenizerFile(const std::string& dir) {
  for (const char* name : kTokenizerFileNames) {
    const std::string path = absl::StrCat(dir, "/", name);
    std::error_code error;
    if (std::filesystem::is_regular_file(path, error)) return path;
  }
  return "";
}

absl::StatusOr<std::unique_ptr<Tokenizer>> FindTokenizer(const std::string& dir) {
  const std::string path = FindTokenizerFile(dir);
  if (path.empty()) return std::unique_ptr<Tokenizer>();
  return Tokenizer::Load(path);
}

// LlamaMTLA's tokenizer, checked against the config: its pieces must fit the
// output layer, and its bos/eos (when it has them) must be the config's.
absl::Status LoadTextTokenizer(const std::string& dir, const LlamaMtlaConfig& config,
                               ServedModel* model) {
  const std::string path = FindTokenizerFile(dir);
  if (path.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(model->text_tokenizer, SentencePieceTokenizer::Load(path));
  const SentencePieceTokenizer& t = *model->text_tokenizer;
  if (t.vocab_size() > config.vocab_size) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": ", t.vocab_size(), " pieces, more than config.json's vocab_size ",
                     config.vocab_size));
  }
  if ((t.bos_id() >= 0 && t.bos_id() != config.bos_token_id) ||
      (t.eos_id() >= 0 && t.eos_id() != config.eos_token_id)) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": bos/eos ids ", t.bos_id(), "/", t.eos_id(), " differ from config.json's ",
        "bos_token_id/eos_token_id ", config.bos_token_id, "/", config.eos_token_id));
  }
  model->add_bos_token = t.bos_id() >= 0;  // the LLaMA convention
  // Hugging Face's tokenizer_config.json may override it and add a chat template.
  const std::string hf_path = dir + "/tokenizer_config.json";
  std::error_code error;
  if (!std::filesystem::is_regular_file(hf_path, error)) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string text, ReadFile(hf_path));
  ASSIGN_OR_RETURN(nlohmann::json json, ParseJson(text, hf_path));
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(hf_path, ": expected a JSON object"));
  }
  if (auto it = json.find("add_bos_token"); it != json.end()) {
    if (!it->is_boolean()) {
      return absl::InvalidArgumentError(absl::StrCat(hf_path, ": add_bos_token: expected a boolean"));
    }
    model->add_bos_token = it->get<bool>() && t.bos_id() >= 0;
  }
  if (auto it = json.find("chat_template"); it != json.end() && !it->is_null()) {
    if (!it->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(hf_path, ": chat_template: expected a string"));
    }
    model->chat_template = it->get<std::string>();
  }
  return absl::OkStatus();
}

std::unique_ptr<ModelBackend> Wrapped(const ServedModelOptions& options,
                                      std::unique_ptr<ModelBackend> backend) {
  return options.wrap_backend ? options.wrap_backend(std::move(backend)) : std::move(backend);
}

absl::Status LoadLlama(const std::string& dir, const ServedModelOptions& options,
                       ServedModel* model) {
  ASSIGN_OR_RETURN(LoadedModel loaded,
                   LoadLlamaMtla(dir, options.cache, options.backend, options.log_prefix));
  model->runner = std::make_unique<ModelRunner>(Wrapped(options, std::move(loaded.backend)));
  model->bos_token_id = loaded.config.bos_token_id;
  model->eos_token_id = loaded.config.eos_token_id;
  return LoadTextTokenizer(dir, loaded.config, model);
}

absl::Status LoadSpeech(const std::string& dir, const ServedModelOptions& options,
                        ServedModel* model) {
  std::unique_ptr<SafetensorsFile> weights;
  ASSIGN_OR_RETURN(SpeechModel speech, LoadSpeechModelWithoutDecoder(dir, &weights));
  if (!speech.encoder.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, ": a decoder-only checkpoint cannot serve speech (no encoder)"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ModelBackend> decoder,
                   CreateModelBackend(SpeechDecoderSpec(speech.config), *weights, options.cache,
                                      options.backend, options.log_prefix));
  model->runner = std::make_unique<ModelRunner>(Wrapped(options, std::move(decoder)));
  model->bos_token_id = 0;  // fairseq's <s> (the decoder starts from </s>)
  model->eos_token_id = 2;
  model->source_language = speech.config.source_language;
  model->target_language = speech.config.target_language;
  model->speech = std::make_unique<SpeechModel>(std::move(speech));
  return absl::OkStatus();
}

}  // namespace

std::string_view ModelArchitecture(ModelFamily family) {
  return family == ModelFamily::kLlamaMtla ? "llama-mtla" : "s2t-mtla";
}

absl::StatusOr<ModelFamily> DetectModelFamily(std::string_view config_json,
                                              const std::string& path) {
  ASSIGN_OR_RETURN(nlohmann::json json, ParseJson(std::string(config_json), path));
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected a JSON object"));
  }
  const auto model_type = json.find("model_type");
  if (model_type == json.end()) return ModelFamily::kSpeechTranslation;  // fairseq arguments
  if (!model_type->is_string() || model_type->get<std::string>() != "llama-mtla") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": model_type: expected \"llama-mtla\" (or no model_type for the "
                           "paper's speech-translation model), got ",
                     model_type->dump()));
  }
  return ModelFamily::kLlamaMtla;
}

namespace {

absl::StatusOr<ServedModel> LoadOnThisThread(const std::string& dir,
                                             const ServedModelOptions& options) {
  const std::string config_path = dir + "/config.json";
  ASSIGN_OR_RETURN(std::string config, ReadFile(config_path));
  ServedModel model;
  ASSIGN_OR_RETURN(model.family, DetectModelFamily(config, config_path));
  if (model.family == ModelFamily::kLlamaMtla) {
    RETURN_IF_ERROR(LoadLlama(dir, options, &model));
  } else {
    RETURN_IF_ERROR(LoadSpeech(dir, options, &model));
    ASSIGN_OR_RETURN(model.tokenizer, FindTokenizer(dir));
  }
  return model;
}

}  // namespace

absl::StatusOr<ServedModel> LoadServedModel(const std::string& dir,
                                            const ServedModelOptions& options) {
  // See the header: the loader's OpenMP pool must leave with its thread.
  absl::StatusOr<ServedModel> loaded = absl::InternalError("the loading thread did not run");
  std::thread([&] { loaded = LoadOnThisThread(dir, options); }).join();
  return loaded;
}

}  // namespace mtla
