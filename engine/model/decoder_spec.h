// Data-driven description of an MTLA decoder stack. Both model families
// (LlamaMTLA and the paper's speech-translation decoder) are instances of this
// one description: they differ in norms, residual placement, MLP and weight
// names, not in code.
#ifndef MTLA_ENGINE_MODEL_DECODER_SPEC_H_
#define MTLA_ENGINE_MODEL_DECODER_SPEC_H_

#include <string>

#include "engine/config/model_config.h"

namespace mtla {

enum class NormKind { kRmsNorm, kLayerNorm };
enum class MlpKind {
  kSwiGlu,  // down(silu(gate(x)) * up(x)), no bias
  kRelu,    // fc2(relu(fc1(x))), with bias
};
enum class ResidualStyle {
  // x = x + Attn(N1(x)); x = x + Mlp(N2(x))            (Llama)
  kPreNorm,
  // h = N1(x); x = N1(x + Attn(h)); x = N2(x + Mlp(x))  (paper's MTLA decoder)
  kSharedAttnNorm,
};

// Weight names, with "{}" standing for the layer index in per-layer names.
struct DecoderWeightNames {
  std::string embed_tokens;
  std::string final_norm;       // prefix: ".weight" (and ".bias" for LayerNorm) appended
  std::string lm_head;          // empty when tied to embed_tokens
  std::string attention;        // per layer, e.g. "model.layers.{}.self_attn"
  std::string attention_norm;   // per layer
  std::string mlp_norm;         // per layer
  std::string mlp_in;           // gate_proj / fc1 (per layer, full name without ".weight")
  std::string mlp_up;           // up_proj (SwiGLU only)
  std::string mlp_out;          // down_proj / fc2
};

struct DecoderSpec {
  MtlaAttentionConfig attention;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int vocab_size = 0;
  int max_context_tokens = 0;  // longest sequence (prefix + tokens) served
  NormKind norm = NormKind::kRmsNorm;
  float norm_eps = 1e-6f;
  MlpKind mlp = MlpKind::kSwiGlu;
  ResidualStyle residual = ResidualStyle::kPreNorm;
  float embed_scale = 1.0f;
  int eos_token_id = 2;
  DecoderWeightNames names;
};

// The LlamaMTLA family's spec (half-split RoPE, RMSNorm, SwiGLU, pre-norm).
DecoderSpec LlamaMtlaDecoderSpec(const LlamaMtlaConfig& config);

// The paper's speech-translation MTLA decoder with fairseq weight names
// (interleaved RoPE, LayerNorm eps 1e-5, shared attention LayerNorm, ReLU FFN,
// embeddings scaled by sqrt(E), untied output projection).
DecoderSpec FairseqMtlaDecoderSpec(const MtlaAttentionConfig& attention, int ffn_dim,
                                   int num_layers, int vocab_size, int max_context_tokens);

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_DECODER_SPEC_H_
