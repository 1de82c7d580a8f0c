// config.json -> SpeechModelConfig. Field lookups by string happen only here.
#include "engine/speech/speech_config.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/common/status_macros.h"
#include "engine/config/json_fields.h"
#include "nlohmann/json.hpp"

namespace mtla {
namespace {

using Json = nlohmann::json;


absl::Status RequireValue(const JsonFields& f, absl::string_view name, bool expected,
                          absl::string_view why) {
  ASSIGN_OR_RETURN(bool value, f.Bool(name, expected));
  if (value != expected) return FieldError(name, absl::StrCat("must be ", expected, ": ", why));
  return absl::OkStatus();
}

absl::Status ReadTokenIds(const JsonFields& f, const char* bos, const char* pad, const char* eos,
                          const char* unk, SpeechModelConfig* c) {
  ASSIGN_OR_RETURN(c->bos_id, f.Int(bos, 0));
  ASSIGN_OR_RETURN(c->pad_id, f.Int(pad, 1));
  ASSIGN_OR_RETURN(c->eos_id, f.Int(eos, 2));
  ASSIGN_OR_RETURN(c->unk_id, f.Int(unk, 3));
  return absl::OkStatus();
}

// Fairseq arguments; defaults are those of s2t_decoder_only_MTLA_xm() followed
// by base_architecture() in fairseq/models/speech_to_text/s2t_transformer.py.
absl::StatusOr<SpeechModelConfig> FairseqFromJson(const Json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("top level is not a JSON object");
  JsonFields f(json, JsonFields::Null::kAbsent);
  ASSIGN_OR_RETURN(std::string arch, f.String("arch"));
  if (arch != "s2t_decoder_only_MTLA_cross_xm") {
    return FieldError("arch", absl::StrCat("must be \"s2t_decoder_only_MTLA_cross_xm\" (got \"",
                                           arch, "\")"));
  }
  ASSIGN_OR_RETURN(std::string decoder_type, f.String("decoder_type", "MTLA"));
  if (decoder_type != "MTLA") return FieldError("decoder_type", "must be \"MTLA\"");
  ASSIGN_OR_RETURN(std::string conv_version, f.String("conv_version", "s2t_transformer"));
  if (conv_version != "s2t_transformer") {
    return FieldError("conv_version", "must be \"s2t_transformer\" (Conv1dSubsampler)");
  }
  ASSIGN_OR_RETURN(std::string activation, f.String("activation_fn", "relu"));
  if (activation != "relu") return FieldError("activation_fn", "must be \"relu\"");
  RETURN_IF_ERROR(RequireValue(f, "use_audio_input", false, "the WavLM front-end is not served"));
  RETURN_IF_ERROR(RequireValue(f, "layernorm_embedding", false, "not supported"));
  RETURN_IF_ERROR(RequireValue(f, "decoder_normalize_before", true,
                               "the MTLA decoder ends with a LayerNorm"));
  RETURN_IF_ERROR(RequireValue(f, "no_decoder_final_norm", false,
                               "the MTLA decoder ends with a LayerNorm"));
  ASSIGN_OR_RETURN(std::string cmvn, f.String("cmvn", "utterance"));
  if (cmvn != "utterance" && cmvn != "none") {
    return FieldError("cmvn", absl::StrCat("must be \"utterance\" or \"none\" (got \"", cmvn, "\")"));
  }

  SpeechModelConfig c;
  c.has_encoder = true;
  c.utterance_cmvn = cmvn == "utterance";
  ASSIGN_OR_RETURN(c.source_language, f.String("source_language", ""));
  ASSIGN_OR_RETURN(c.target_language, f.String("target_language", ""));
  ASSIGN_OR_RETURN(bool no_scale, f.Bool("no_scale_embedding", false));

  SpeechEncoderConfig& e = c.encoder;
  ASSIGN_OR_RETURN(int feat, f.Int("input_feat_per_channel", 80));
  ASSIGN_OR_RETURN(int channels, f.Int("input_channels", 1));
  RETURN_IF_ERROR(RequirePositive("input_feat_per_channel", feat));
  RETURN_IF_ERROR(RequirePositive("input_channels", channels));
  e.input_dim = feat * channels;
  ASSIGN_OR_RETURN(e.conv_kernel_sizes, f.IntList("conv_kernel_sizes", "5,5"));
  ASSIGN_OR_RETURN(e.conv_channels, f.Int("conv_channels", 1024));
  ASSIGN_OR_RETURN(e.embed_dim, f.Int("encoder_embed_dim", 512));
  ASSIGN_OR_RETURN(e.ffn_dim, f.Int("encoder_ffn_embed_dim", 2048));
  ASSIGN_OR_RETURN(e.num_layers, f.Int("encoder_layers", 12));
  ASSIGN_OR_RETURN(e.num_heads, f.Int("encoder_attention_heads", 8));
  ASSIGN_OR_RETURN(e.normalize_before, f.Bool("encoder_normalize_before", true));
  ASSIGN_OR_RETURN(c.max_source_positions, f.Int("max_source_positions", 6000));
  ASSIGN_OR_RETURN(c.max_target_positions, f.Int("max_target_positions", 1024));
  e.max_source_positions = c.max_source_positions;
  e.embed_scale = no_scale ? 1.0f : std::sqrt(static_cast<float>(e.embed_dim));
  e.padding_idx = 1;  // S2TTransformerEncoder fixes it
  c.encoder_dim = e.embed_dim;
  ASSIGN_OR_RETURN(c.projector_ds_rate, f.Int("encoder_projector_ds_rate", 1));

  MtlaAttentionConfig& a = c.attention;
  ASSIGN_OR_RETURN(c.decoder_embed_dim, f.Int("decoder_embed_dim", 512));
  ASSIGN_OR_RETURN(c.decoder_ffn_dim, f.Int("decoder_ffn_embed_dim", e.ffn_dim));
  ASSIGN_OR_RETURN(c.decoder_layers, f.Int("decoder_layers", 9));
  ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size"));
  ASSIGN_OR_RETURN(c.tie_output_projection, f.Bool("share_decoder_input_output_embed", false));
  c.decoder_embed_scale = no_scale ? 1.0f : std::sqrt(static_cast<float>(c.decoder_embed_dim));
  a.embed_dim = c.decoder_embed_dim;
  ASSIGN_OR_RETURN(a.num_heads, f.Int("decoder_attention_heads", 8));
  ASSIGN_OR_RETURN(a.q_lora_rank, f.Int("decoder_q_lora_rank", 0));
  ASSIGN_OR_RETURN(a.kv_lora_rank, f.Int("decoder_kv_lora_rank", 256));
  ASSIGN_OR_RETURN(a.qk_nope_head_dim, f.Int("decoder_qk_nope_head_dim", 64));
  ASSIGN_OR_RETURN(a.qk_rope_head_dim, f.Int("decoder_qk_rope_head_dim", 32));
  ASSIGN_OR_RETURN(a.v_head_dim, f.Int("decoder_v_head_dim", 64));
  ASSIGN_OR_RETURN(a.down_rate, f.Int("decoder_down_rate", 2));
  // Fixed by fairseq's MultiheadTemporalLatentAttention.
  a.rope_style = RopeStyle::kInterleaved;
  a.rope_theta = 10000.0f;
  a.layer_norm_eps = 1e-5f;
  a.bias = false;
  a.hypernet_rank = a.kv_lora_rank / 4;
  c.layer_norm_eps = 1e-5f;
  RETURN_IF_ERROR(ReadTokenIds(f, "bos", "pad", "eos", "unk", &c));
  RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<SpeechModelConfig> StDecoderFromJson(const Json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("top level is not a JSON object");
  JsonFields f(json, JsonFields::Null::kAbsent);
  ASSIGN_OR_RETURN(std::string rope_style, f.String("rope_style", "interleaved"));
  if (rope_style != "interleaved") {
    return FieldError("rope_style", "must be \"interleaved\" (the paper's fairseq decoder)");
  }
  SpeechModelConfig c;
  c.has_encoder = false;
  MtlaAttentionConfig& a = c.attention;
  ASSIGN_OR_RETURN(c.decoder_embed_dim, f.Int("embed_dim"));
  ASSIGN_OR_RETURN(c.decoder_ffn_dim, f.Int("ffn_dim"));
  ASSIGN_OR_RETURN(c.decoder_layers, f.Int("layers"));
  ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size"));
  ASSIGN_OR_RETURN(c.decoder_embed_scale,
                   f.Float("embed_scale", std::sqrt(static_cast<float>(c.decoder_embed_dim))));
  ASSIGN_OR_RETURN(c.layer_norm_eps, f.Float("layer_norm_eps", 1e-5f));
  ASSIGN_OR_RETURN(c.tie_output_projection, f.Bool("tie_output_projection", false));
  ASSIGN_OR_RETURN(c.max_source_positions, f.Int("max_source_positions", 6000));
  ASSIGN_OR_RETURN(c.max_target_positions, f.Int("max_target_positions", 1024));
  ASSIGN_OR_RETURN(c.projector_ds_rate, f.Int("projector_ds_rate", 1));
  ASSIGN_OR_RETURN(c.encoder_dim, f.Int("encoder_dim", c.decoder_embed_dim));
  a.embed_dim = c.decoder_embed_dim;
  ASSIGN_OR_RETURN(a.num_heads, f.Int("num_heads"));
  ASSIGN_OR_RETURN(a.q_lora_rank, f.Int("q_lora_rank", 0));
  ASSIGN_OR_RETURN(a.kv_lora_rank, f.Int("kv_lora_rank"));
  ASSIGN_OR_RETURN(a.qk_nope_head_dim, f.Int("qk_nope_head_dim"));
  ASSIGN_OR_RETURN(a.qk_rope_head_dim, f.Int("qk_rope_head_dim"));
  ASSIGN_OR_RETURN(a.v_head_dim, f.Int("v_head_dim"));
  ASSIGN_OR_RETURN(a.down_rate, f.Int("down_rate"));
  ASSIGN_OR_RETURN(a.rope_theta, f.Float("rope_theta", 10000.0f));
  a.rope_style = RopeStyle::kInterleaved;
  a.layer_norm_eps = c.layer_norm_eps;
  a.bias = false;
  a.hypernet_rank = a.kv_lora_rank / 4;
  RETURN_IF_ERROR(ReadTokenIds(f, "bos_id", "pad_id", "eos_id", "unk_id", &c));
  RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<SpeechModelConfig> Sourced(absl::StatusOr<SpeechModelConfig> config,
                                             absl::string_view source) {
  if (!config.ok()) return WithSource(source, config.status());
  return config;
}

}  // namespace

absl::Status SpeechEncoderConfig::Validate() const {
  RETURN_IF_ERROR(RequirePositive("input_feat_per_channel", input_dim));
  if (conv_kernel_sizes.empty()) return FieldError("conv_kernel_sizes", "must not be empty");
  for (int k : conv_kernel_sizes) RETURN_IF_ERROR(RequirePositive("conv_kernel_sizes", k));
  if (conv_kernel_sizes.size() > 1) {
    RETURN_IF_ERROR(RequirePositive("conv_channels", conv_channels));
    if (conv_channels % 2 != 0) {
      return FieldError("conv_channels", absl::StrCat("must be even for the GLU (got ",
                                                      conv_channels, ")"));
    }
  }
  RETURN_IF_ERROR(RequirePositive("encoder_embed_dim", embed_dim));
  RETURN_IF_ERROR(RequirePositive("encoder_ffn_embed_dim", ffn_dim));
  RETURN_IF_ERROR(RequirePositive("encoder_layers", num_layers));
  RETURN_IF_ERROR(RequirePositive("encoder_attention_heads", num_heads));
  if (embed_dim % num_heads != 0) {
    return FieldError("encoder_attention_heads",
                      absl::StrCat("(", num_heads, ") must divide encoder_embed_dim (", embed_dim,
                                   ")"));
  }
  if (!normalize_before) {
    return FieldError("encoder_normalize_before",
                      "must be true (pre-LN encoder with a final LayerNorm)");
  }
  RETURN_IF_ERROR(RequirePositive("embed_scale", embed_scale));
  RETURN_IF_ERROR(RequirePositive("max_source_positions", max_source_positions));
  if (padding_idx < 0) return FieldError("padding_idx", "must be >= 0");
  return absl::OkStatus();
}

int64_t SpeechEncoderConfig::OutputFrames(int64_t input_frames) const {
  int64_t t = input_frames;
  for (int k : conv_kernel_sizes) {
    if (t <= 0) return 0;
    const int64_t padded = t + 2 * (k / 2) - k;
    if (padded < 0) return 0;
    t = padded / 2 + 1;
  }
  return t;
}

absl::Status SpeechModelConfig::Validate() const {
  if (has_encoder) {
    RETURN_IF_ERROR(encoder.Validate());
    if (encoder_dim != encoder.embed_dim) {
      return FieldError("encoder_embed_dim", "must equal the projector's input width");
    }
  }
  RETURN_IF_ERROR(RequirePositive("encoder_dim", encoder_dim));
  RETURN_IF_ERROR(RequirePositive("encoder_projector_ds_rate", projector_ds_rate));
  RETURN_IF_ERROR(RequirePositive("decoder_embed_dim", decoder_embed_dim));
  if (decoder_embed_dim % 2 != 0) {
    return FieldError("decoder_embed_dim", "must be even (the projector's hidden width is E/2)");
  }
  RETURN_IF_ERROR(RequirePositive("decoder_ffn_embed_dim", decoder_ffn_dim));
  RETURN_IF_ERROR(RequirePositive("decoder_layers", decoder_layers));
  RETURN_IF_ERROR(RequirePositive("vocab_size", vocab_size));
  RETURN_IF_ERROR(RequirePositive("embed_scale", decoder_embed_scale));
  RETURN_IF_ERROR(RequirePositive("layer_norm_eps", layer_norm_eps));
  RETURN_IF_ERROR(RequirePositive("max_target_positions", max_target_positions));
  RETURN_IF_ERROR(RequirePositive("max_source_positions", max_source_positions));
  for (const auto& [field, id] :
       {std::pair<absl::string_view, int>{"bos", bos_id}, {"pad", pad_id}, {"eos", eos_id},
        {"unk", unk_id}}) {
    if (id < 0 || id >= vocab_size) {
      return FieldError(field, absl::StrCat("must be in [0, vocab_size=", vocab_size, ") (got ",
                                            id, ")"));
    }
  }
  if (attention.embed_dim != decoder_embed_dim) {
    return FieldError("decoder_embed_dim", "must equal the attention width");
  }
  return attention.Validate();
}

int64_t SpeechModelConfig::PrefixRows(int64_t input_frames) const {
  const int64_t frames = has_encoder ? encoder.OutputFrames(input_frames) : input_frames;
  return frames / projector_ds_rate;
}

absl::StatusOr<SpeechModelConfig> ParseFairseqSpeechConfig(const std::string& json_text) {
  ASSIGN_OR_RETURN(Json json, ParseJson(json_text, "config.json"));
  return Sourced(FairseqFromJson(json), "config.json");
}

absl::StatusOr<SpeechModelConfig> ParseStDecoderConfig(const std::string& json_text) {
  ASSIGN_OR_RETURN(Json json, ParseJson(json_text, "config.json"));
  return Sourced(StDecoderFromJson(json), "config.json");
}

absl::StatusOr<SpeechModelConfig> LoadSpeechModelConfig(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": config file not found"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open config file"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  ASSIGN_OR_RETURN(Json json, ParseJson(text.str(), path));
  if (json.is_object() && json.contains("arch")) return Sourced(FairseqFromJson(json), path);
  return Sourced(StDecoderFromJson(json), path);
}

}  // namespace mtla
