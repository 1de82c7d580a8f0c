#include "engine/testing/random_checkpoint.h"

#include <cstdio>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"

namespace mtla {

absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const size_t bytes = t.values.size() * sizeof(float);
    header[name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot write ", path));
  const uint64_t length = text.size();
  bool ok = std::fwrite(&length, sizeof(length), 1, f) == 1 &&
            std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const auto& [name, t] : tensors) {
    ok = ok && std::fwrite(t.values.data(), sizeof(float), t.values.size(), f) == t.values.size();
  }
  ok = (std::fclose(f) == 0) && ok;
  return ok ? absl::OkStatus() : absl::InternalError(absl::StrCat("short write to ", path));
}

std::map<std::string, NamedTensor> RandomDecoderWeights(const DecoderSpec& spec, uint64_t seed,
                                                        float scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::map<std::string, NamedTensor> out;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float base) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    NamedTensor t{std::move(shape), std::vector<float>(count)};
    for (float& v : t.values) v = base + normal(rng);
    out[name] = std::move(t);
  };
  auto layer = [](const std::string& pattern, int l) {
    return absl::StrReplaceAll(pattern, {{"{}", absl::StrCat(l)}});
  };
  const bool layer_norm = spec.norm == NormKind::kLayerNorm;
  const bool relu = spec.mlp == MlpKind::kRelu;
  auto norm = [&](const std::string& name, int64_t dim, bool with_bias) {
    add(name + ".weight", {dim}, 1.0f);
    if (with_bias) add(name + ".bias", {dim}, 0.0f);
  };
  auto linear = [&](const std::string& name, int64_t in, int64_t o, bool bias) {
    add(name + ".weight", {o, in}, 0.0f);
    if (bias) add(name + ".bias", {o}, 0.0f);
  };
  const MtlaAttentionConfig& a = spec.attention;
  const int64_t e = spec.hidden_size;
  add(spec.names.embed_tokens, {spec.vocab_size, e}, 0.0f);
  if (!spec.names.lm_head.empty()) add(spec.names.lm_head, {spec.vocab_size, e}, 0.0f);
  norm(spec.names.final_norm, e, layer_norm);
  for (int l = 0; l < spec.num_layers; ++l) {
    const std::string p = layer(spec.names.attention, l) + ".";
    const int64_t q_width = static_cast<int64_t>(a.num_heads) * a.qk_head_dim();
    if (a.q_lora_rank == 0) {
      linear(p + "wq", a.embed_dim, q_width, a.bias);
    } else {
      linear(p + "wq_a", a.embed_dim, a.q_lora_rank, a.bias);
      norm(p + "q_norm", a.q_lora_rank, true);
      linear(p + "wq_b", a.q_lora_rank, q_width, a.bias);
    }
    linear(p + "wkv_a", a.embed_dim, a.slot_width(), a.bias);
    norm(p + "kv_norm", a.kv_lora_rank, true);
    linear(p + "wkv_b", a.kv_lora_rank,
           static_cast<int64_t>(a.num_heads) * (a.qk_nope_head_dim + a.v_head_dim), false);
    linear(p + "wo", static_cast<int64_t>(a.num_heads) * a.v_head_dim, a.embed_dim, a.bias);
    linear(p + "hypernet_down.fc_c", a.kv_lora_rank, a.hypernet_rank, true);
    linear(p + "hypernet_down.fc_p", a.kv_lora_rank, a.hypernet_rank, true);
    norm(layer(spec.names.attention_norm, l), e, layer_norm);
    norm(layer(spec.names.mlp_norm, l), e, layer_norm);
    linear(layer(spec.names.mlp_in, l), e, spec.intermediate_size, relu);
    if (!relu) linear(layer(spec.names.mlp_up, l), e, spec.intermediate_size, false);
    linear(layer(spec.names.mlp_out, l), spec.intermediate_size, e, relu);
  }
  return out;
}

MtlaAttentionConfig PaperDecoderAttention(int down_rate) {
  MtlaAttentionConfig a;
  a.embed_dim = 512;
  a.num_heads = 8;
  a.kv_lora_rank = 256;
  a.qk_rope_head_dim = 32;
  a.qk_nope_head_dim = 64;
  a.v_head_dim = 64;
  a.down_rate = down_rate;
  a.hypernet_rank = 64;
  a.rope_style = RopeStyle::kInterleaved;
  return a;
}

}  // namespace mtla
