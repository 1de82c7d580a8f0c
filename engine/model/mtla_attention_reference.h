// A dense, unabsorbed implementation of one MTLA layer over a whole sequence
// (the official module's parallel path: chunk-merged keys and the stride-aware
// causal mask). Deliberately simple and independent of the paged kernels, it is
// the reference they are tested against. O(T^2) time; tests and tools only.
#ifndef MTLA_ENGINE_MODEL_MTLA_ATTENTION_REFERENCE_H_
#define MTLA_ENGINE_MODEL_MTLA_ATTENTION_REFERENCE_H_

#include <cstdint>

#include "engine/model/mtla_attention.h"

namespace mtla {

// out[T, E] for input x[T, E] at RoPE positions[T]. If `latent_out` /
// `k_pe_out` are not null they receive the final cache, ceil(T/s) rows of r
// and dR values.
void MtlaDenseReference(const MtlaAttentionConfig& config, const MtlaAttentionWeights& weights,
                        const float* x, int64_t num_tokens, const int32_t* positions, float* out,
                        float* latent_out = nullptr, float* k_pe_out = nullptr);

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_MTLA_ATTENTION_REFERENCE_H_
