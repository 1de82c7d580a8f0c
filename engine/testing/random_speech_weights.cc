#include "engine/testing/random_speech_weights.h"

#include <cmath>
#include <filesystem>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/testing/unique_temp_path.h"
#include "engine/weights/safetensors.h"

namespace mtla {

std::map<std::string, NamedTensor> RandomSpeechEncoderWeights(const SpeechModelConfig& config,
                                                              uint64_t seed) {
  const SpeechEncoderConfig& c = config.encoder;
  std::mt19937_64 rng(seed);
  std::map<std::string, NamedTensor> t;
  auto random = [&](const std::string& name, std::vector<int64_t> shape, int64_t fan_in) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(fan_in)));
    NamedTensor& x = t[name];
    x.shape = std::move(shape);
    x.values.resize(count);
    for (float& v : x.values) v = normal(rng);
  };
  auto constant = [&](const std::string& name, int64_t n, float value) {
    t[name] = NamedTensor{{n}, std::vector<float>(n, value)};
  };
  auto linear = [&](const std::string& name, int in, int out) {
    random(name + ".weight", {out, in}, in);
    constant(name + ".bias", out, 0.0f);
  };
  auto norm = [&](const std::string& name, int dim) {
    constant(name + ".weight", dim, 1.0f);
    constant(name + ".bias", dim, 0.0f);
  };
  int in = c.input_dim;
  for (size_t i = 0; i < c.conv_kernel_sizes.size(); ++i) {
    const int k = c.conv_kernel_sizes[i];
    const int out = i + 1 < c.conv_kernel_sizes.size() ? c.conv_channels : 2 * c.embed_dim;
    const std::string p = absl::StrCat("encoder.subsample.conv_layers.", i);
    random(p + ".weight", {out, in, k}, in * k);
    constant(p + ".bias", out, 0.0f);
    in = out / 2;
  }
  const int e = c.embed_dim;
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = absl::StrCat("encoder.transformer_layers.", l, ".");
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      linear(p + "self_attn." + proj, e, e);
    }
    norm(p + "self_attn_layer_norm", e);
    norm(p + "final_layer_norm", e);
    linear(p + "fc1", e, c.ffn_dim);
    linear(p + "fc2", c.ffn_dim, e);
  }
  norm("encoder.layer_norm", e);
  const int hidden = config.decoder_embed_dim / 2;  // the projector's int(llm_dim / 2)
  if (hidden > 0) {
    linear("decoder.projector.linear1", config.encoder_dim * config.projector_ds_rate, hidden);
    linear("decoder.projector.linear2", hidden, config.decoder_embed_dim);
  }
  return t;
}

absl::StatusOr<SpeechModel> RandomSpeechFrontModel(const SpeechModelConfig& config,
                                                   uint64_t seed) {
  const std::string path = UniqueTempPath("mtla_random_speech", ".safetensors");
  RETURN_IF_ERROR(WriteSafetensors(path, RandomSpeechEncoderWeights(config, seed)));
  absl::StatusOr<SpeechModel> model = [&]() -> absl::StatusOr<SpeechModel> {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
    SpeechModel m;
    m.config = config;
    ASSIGN_OR_RETURN(m.encoder, SpeechEncoder::Load(config.encoder, *file));
    ASSIGN_OR_RETURN(m.projector, SpeechProjector::Load(config, *file));
    return m;
  }();
  std::filesystem::remove(path);
  return model;
}

}  // namespace mtla
