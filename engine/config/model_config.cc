// config.json -> typed config. Field lookups by string happen only in this file.
#include "engine/config/model_config.h"

#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/common/status_macros.h"
#include "engine/config/json_fields.h"
#include "nlohmann/json.hpp"

namespace mtla {
namespace {

using Json = nlohmann::json;


// Fills a LlamaMtlaConfig from a parsed config.json object. Errors name the
// field but not the file (the caller prefixes it).
absl::StatusOr<LlamaMtlaConfig> FromJson(const Json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("top level is not a JSON object");
  JsonFields f(json, JsonFields::Null::kInvalid);
  ASSIGN_OR_RETURN(std::string model_type, f.String("model_type"));
  if (model_type != "llama-mtla") {
    return FieldError("model_type", absl::StrCat("must be \"llama-mtla\" (got \"", model_type, "\")"));
  }
  // Options this engine does not implement are rejected rather than ignored,
  // so a checkpoint never runs with silently different math.
  if (const Json* act = f.Find("hidden_act", /*null_is_absent=*/true);
      act != nullptr && !(act->is_string() && act->get<std::string>() == "silu")) {
    return FieldError("hidden_act", "must be \"silu\" (SwiGLU MLP)");
  }
  if (f.Find("rope_scaling", /*null_is_absent=*/true) != nullptr) {
    return FieldError("rope_scaling", "is not supported (must be absent or null)");
  }
  ASSIGN_OR_RETURN(bool mlp_bias, f.Bool("mlp_bias", false));
  if (mlp_bias) return FieldError("mlp_bias", "is not supported (must be false)");

  LlamaMtlaConfig c;
  MtlaAttentionConfig& a = c.attention;
  ASSIGN_OR_RETURN(c.hidden_size, f.Int("hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, f.Int("intermediate_size"));
  ASSIGN_OR_RETURN(c.num_layers, f.Int("num_hidden_layers"));
  ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size"));
  ASSIGN_OR_RETURN(c.max_position_embeddings, f.Int("max_position_embeddings"));
  ASSIGN_OR_RETURN(c.rms_norm_eps, f.Float("rms_norm_eps"));
  ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  ASSIGN_OR_RETURN(c.bos_token_id, f.TokenId("bos_token_id", 1));
  ASSIGN_OR_RETURN(c.eos_token_id, f.TokenId("eos_token_id", 2));

  a.embed_dim = c.hidden_size;
  ASSIGN_OR_RETURN(a.num_heads, f.Int("num_attention_heads"));
  ASSIGN_OR_RETURN(a.q_lora_rank, f.Int("q_lora_rank", 0, /*null_is_default=*/true));
  ASSIGN_OR_RETURN(a.kv_lora_rank, f.Int("kv_lora_rank"));
  ASSIGN_OR_RETURN(a.qk_nope_head_dim, f.Int("qk_nope_head_dim"));
  ASSIGN_OR_RETURN(a.qk_rope_head_dim, f.Int("qk_rope_head_dim"));
  ASSIGN_OR_RETURN(a.v_head_dim, f.Int("v_head_dim"));
  ASSIGN_OR_RETURN(a.down_rate, f.Int("down_rate"));
  ASSIGN_OR_RETURN(a.rope_theta, f.Float("rope_theta", 10000.0f));
  ASSIGN_OR_RETURN(a.bias, f.Bool("attention_bias", false));
  // Fixed by the LlamaMTLA architecture rather than by config.json.
  a.rope_style = RopeStyle::kHalfSplit;
  a.layer_norm_eps = 1e-5f;  // nn.LayerNorm default for kv_norm / q_norm
  a.hypernet_rank = a.kv_lora_rank / 4;

  RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<LlamaMtlaConfig> ParseFrom(const std::string& json_text, absl::string_view source) {
  ASSIGN_OR_RETURN(Json json, ParseJson(json_text, source));
  absl::StatusOr<LlamaMtlaConfig> config = FromJson(json);
  if (!config.ok()) return WithSource(source, config.status());
  return config;
}

}  // namespace

absl::Status MtlaAttentionConfig::Validate() const {
  RETURN_IF_ERROR(RequirePositive("embed_dim", embed_dim));
  RETURN_IF_ERROR(RequirePositive("num_heads", num_heads));
  if (q_lora_rank < 0) {
    return FieldError("q_lora_rank", absl::StrCat("must be >= 0 (got ", q_lora_rank, ")"));
  }
  RETURN_IF_ERROR(RequirePositive("kv_lora_rank", kv_lora_rank));
  if (kv_lora_rank % 4 != 0) {
    return FieldError("kv_lora_rank", absl::StrCat("must be divisible by 4 (got ", kv_lora_rank, ")"));
  }
  RETURN_IF_ERROR(RequirePositive("qk_nope_head_dim", qk_nope_head_dim));
  RETURN_IF_ERROR(RequirePositive("qk_rope_head_dim", qk_rope_head_dim));
  if (qk_rope_head_dim % 2 != 0) {
    return FieldError("qk_rope_head_dim", absl::StrCat("must be even (got ", qk_rope_head_dim, ")"));
  }
  RETURN_IF_ERROR(RequirePositive("v_head_dim", v_head_dim));
  if (down_rate < 1) {
    return FieldError("down_rate", absl::StrCat("must be >= 1 (got ", down_rate, ")"));
  }
  RETURN_IF_ERROR(RequirePositive("hypernet_rank", hypernet_rank));
  RETURN_IF_ERROR(RequirePositive("rope_theta", rope_theta));
  RETURN_IF_ERROR(RequirePositive("layer_norm_eps", layer_norm_eps));
  return absl::OkStatus();
}

absl::Status LlamaMtlaConfig::Validate() const {
  // Checked under their config.json names before attention.Validate(), so
  // errors name the field a user would edit.
  RETURN_IF_ERROR(RequirePositive("hidden_size", hidden_size));
  RETURN_IF_ERROR(RequirePositive("num_attention_heads", attention.num_heads));
  RETURN_IF_ERROR(RequirePositive("intermediate_size", intermediate_size));
  RETURN_IF_ERROR(RequirePositive("num_hidden_layers", num_layers));
  RETURN_IF_ERROR(RequirePositive("vocab_size", vocab_size));
  RETURN_IF_ERROR(RequirePositive("max_position_embeddings", max_position_embeddings));
  RETURN_IF_ERROR(RequirePositive("rms_norm_eps", rms_norm_eps));
  if (hidden_size != attention.embed_dim) {
    return FieldError("hidden_size", absl::StrCat("(", hidden_size,
                                                  ") must equal attention.embed_dim (",
                                                  attention.embed_dim, ")"));
  }
  for (const auto& [field, id] : {std::pair<absl::string_view, int>{"bos_token_id", bos_token_id},
                                  {"eos_token_id", eos_token_id}}) {
    if (id < 0 || id >= vocab_size) {
      return FieldError(field, absl::StrCat("must be in [0, vocab_size=", vocab_size, ") (got ",
                                            id, ")"));
    }
  }
  return attention.Validate();
}

absl::StatusOr<LlamaMtlaConfig> ParseLlamaMtlaConfig(const std::string& json_text) {
  return ParseFrom(json_text, "config.json");
}

absl::StatusOr<LlamaMtlaConfig> LoadLlamaMtlaConfig(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": config file not found"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open config file"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return ParseFrom(text.str(), path);
}

}  // namespace mtla
