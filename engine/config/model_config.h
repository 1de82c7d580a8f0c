// Typed model configuration. config.json is parsed once here; nothing past the
// loader looks values up by string.
#ifndef MTLA_ENGINE_CONFIG_MODEL_CONFIG_H_
#define MTLA_ENGINE_CONFIG_MODEL_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/rope_style.h"

namespace mtla {

// One MTLA attention layer (DESIGN.md section 1).
struct MtlaAttentionConfig {
  int embed_dim = 0;         // E
  int num_heads = 0;         // H
  int q_lora_rank = 0;       // 0: q = wq(x); > 0: q = wq_b(LayerNorm(wq_a(x)))
  int kv_lora_rank = 0;      // r
  int qk_nope_head_dim = 0;  // dn
  int qk_rope_head_dim = 0;  // dR
  int v_head_dim = 0;        // dv
  int down_rate = 1;         // s: tokens per cache slot
  int hypernet_rank = 0;     // output width of fc_c / fc_p (r / 4 in the paper)
  RopeStyle rope_style = RopeStyle::kInterleaved;
  float rope_theta = 10000.0f;
  float layer_norm_eps = 1e-5f;  // kv_norm and q_norm (LayerNorm, affine)
  bool bias = false;             // bias on wq/wq_a/wq_b/wkv_a/wkv_b/wo

  int qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Width of one cache slot row: [latent r | k_pe dR].
  int slot_width() const { return kv_lora_rank + qk_rope_head_dim; }
  // Checks every dimension is positive and consistent; names the bad field.
  absl::Status Validate() const;
};

// Transformers-style LlamaMTLA causal LM (DESIGN.md section 2, family 1).
struct LlamaMtlaConfig {
  MtlaAttentionConfig attention;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int vocab_size = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  bool tie_word_embeddings = false;
  int bos_token_id = 1;
  int eos_token_id = 2;

  absl::Status Validate() const;
};

// Parses a LlamaMTLA config.json (model_type "llama-mtla"). Errors name the
// file and the missing or invalid field.
absl::StatusOr<LlamaMtlaConfig> ParseLlamaMtlaConfig(const std::string& json_text);
absl::StatusOr<LlamaMtlaConfig> LoadLlamaMtlaConfig(const std::string& path);

}  // namespace mtla

#endif  // MTLA_ENGINE_CONFIG_MODEL_CONFIG_H_
