#include "engine/speech/speech_model.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/cpu_model_backend.h"
#include "engine/weights/safetensors.h"

namespace mtla {

DecoderSpec SpeechDecoderSpec(const SpeechModelConfig& config) {
  const int64_t max_context = config.MaxPrefixRows() + config.max_target_positions;
  DecoderSpec spec =
      FairseqMtlaDecoderSpec(config.attention, config.decoder_ffn_dim, config.decoder_layers,
                             config.vocab_size, static_cast<int>(max_context));
  spec.embed_scale = config.decoder_embed_scale;
  spec.norm_eps = config.layer_norm_eps;
  spec.eos_token_id = config.eos_id;
  if (config.tie_output_projection) spec.names.lm_head.clear();
  return spec;
}

absl::StatusOr<std::vector<float>> SpeechModel::Encode(const float* features,
                                                       int64_t frames) const {
  if (!encoder.has_value()) {
    return absl::FailedPreconditionError("this speech checkpoint has no encoder");
  }
  return encoder->Encode(features, frames);
}

absl::StatusOr<std::vector<float>> SpeechModel::Project(const float* encoder_out,
                                                        int64_t frames) const {
  const int64_t rows = PrefixRows(frames);
  if (rows < 1 || rows > config.MaxPrefixRows()) {
    return absl::InvalidArgumentError(
        absl::StrCat(frames, " encoder frames make a prefix of ", rows,
                     " rows; the model takes 1 to ", config.MaxPrefixRows()));
  }
  return projector.Forward(encoder_out, frames);
}

absl::StatusOr<SpeechModel> LoadSpeechModelWithoutDecoder(
    const std::string& dir, std::unique_ptr<SafetensorsFile>* weights) {
  SpeechModel model;
  ASSIGN_OR_RETURN(model.config, LoadSpeechModelConfig(dir + "/config.json"));
  const std::string path =
      dir + (model.config.has_encoder ? "/model.safetensors" : "/decoder.safetensors");
  ASSIGN_OR_RETURN(*weights, SafetensorsFile::Open(path));
  // Tensor errors from the safetensors reader name the file and the tensor.
  if (model.config.has_encoder) {
    ASSIGN_OR_RETURN(model.encoder, SpeechEncoder::Load(model.config.encoder, **weights));
  }
  ASSIGN_OR_RETURN(model.projector, SpeechProjector::Load(model.config, **weights));
  return model;
}

absl::StatusOr<SpeechModel> LoadSpeechModelCpu(const std::string& dir,
                                               const CacheOptions& options) {
  std::unique_ptr<SafetensorsFile> file;
  ASSIGN_OR_RETURN(SpeechModel model, LoadSpeechModelWithoutDecoder(dir, &file));
  ASSIGN_OR_RETURN(model.decoder,
                   CpuModelBackend::Create(SpeechDecoderSpec(model.config), *file, options));
  return model;
}

}  // namespace mtla
