#include "engine/model/decoder_spec.h"

#include <cmath>

namespace mtla {

DecoderSpec LlamaMtlaDecoderSpec(const LlamaMtlaConfig& config) {
  DecoderSpec spec;
  spec.attention = config.attention;
  spec.hidden_size = config.hidden_size;
  spec.intermediate_size = config.intermediate_size;
  spec.num_layers = config.num_layers;
  spec.vocab_size = config.vocab_size;
  spec.max_context_tokens = config.max_position_embeddings;
  spec.norm = NormKind::kRmsNorm;
  spec.norm_eps = config.rms_norm_eps;
  spec.mlp = MlpKind::kSwiGlu;
  spec.residual = ResidualStyle::kPreNorm;
  spec.embed_scale = 1.0f;
  spec.eos_token_id = config.eos_token_id;
  spec.names.embed_tokens = "model.embed_tokens.weight";
  spec.names.final_norm = "model.norm";
  spec.names.lm_head = config.tie_word_embeddings ? "" : "lm_head.weight";
  spec.names.attention = "model.layers.{}.self_attn";
  spec.names.attention_norm = "model.layers.{}.input_layernorm";
  spec.names.mlp_norm = "model.layers.{}.post_attention_layernorm";
  spec.names.mlp_in = "model.layers.{}.mlp.gate_proj";
  spec.names.mlp_up = "model.layers.{}.mlp.up_proj";
  spec.names.mlp_out = "model.layers.{}.mlp.down_proj";
  return spec;
}

DecoderSpec FairseqMtlaDecoderSpec(const MtlaAttentionConfig& attention, int ffn_dim,
                                   int num_layers, int vocab_size, int max_context_tokens) {
  DecoderSpec spec;
  spec.attention = attention;
  spec.attention.rope_style = RopeStyle::kInterleaved;
  spec.hidden_size = attention.embed_dim;
  spec.intermediate_size = ffn_dim;
  spec.num_layers = num_layers;
  spec.vocab_size = vocab_size;
  spec.max_context_tokens = max_context_tokens;
  spec.norm = NormKind::kLayerNorm;
  spec.norm_eps = 1e-5f;
  spec.mlp = MlpKind::kRelu;
  spec.residual = ResidualStyle::kSharedAttnNorm;
  spec.embed_scale = std::sqrt(static_cast<float>(attention.embed_dim));
  spec.eos_token_id = 2;
  spec.names.embed_tokens = "decoder.embed_tokens.weight";
  spec.names.final_norm = "decoder.layer_norm";
  spec.names.lm_head = "decoder.output_projection.weight";
  spec.names.attention = "decoder.layers.{}.self_attn";
  spec.names.attention_norm = "decoder.layers.{}.self_attn_layer_norm";
  spec.names.mlp_norm = "decoder.layers.{}.final_layer_norm";
  spec.names.mlp_in = "decoder.layers.{}.fc1";
  spec.names.mlp_out = "decoder.layers.{}.fc2";
  return spec;
}

}  // namespace mtla
