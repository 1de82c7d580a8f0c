// One MTLA attention layer on the CPU backend: weights, loading, and the
// forward pass over a step's tokens through the paged cache (DESIGN.md s.1).
#ifndef MTLA_ENGINE_MODEL_MTLA_ATTENTION_H_
#define MTLA_ENGINE_MODEL_MTLA_ATTENTION_H_

#include <cstdint>
#include <string>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/config/model_config.h"
#include "engine/weights/safetensors.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/mtla_cpu.h"

namespace mtla {
namespace cpu {
class PackedLinear;
class PackedBatchedMatmul;
}  // namespace cpu


// A dense layer: weight [out, in] row-major, optional bias [out].
struct LinearWeights {
  std::vector<float> weight;  // row-major [out, in]
  std::vector<float> bias;    // empty when absent
  int in = 0;
  int out = 0;
  // The same weights pre-packed for oneDNN's matmul (PackLinear); null without
  // oneDNN. Apply prefers it.
  std::shared_ptr<const cpu::PackedLinear> packed;
  const float* bias_or_null() const { return bias.empty() ? nullptr : bias.data(); }
  // y[n, out] = x[n, in] W^T (+ bias), or y += ... when `accumulate`; row
  // strides as cpu::Linear. Packed weights when present, else OpenBLAS.
  void Apply(const float* x, int64_t n, float* y, int64_t ldx = 0, int64_t ldy = 0,
             bool accumulate = false) const;
};

struct NormWeights {
  std::vector<float> weight;
  std::vector<float> bias;  // empty for RMSNorm
};

struct MtlaAttentionWeights {
  LinearWeights wq;    // q_lora_rank == 0
  LinearWeights wq_a;  // q_lora_rank > 0
  NormWeights q_norm;
  LinearWeights wq_b;
  LinearWeights wkv_a;
  NormWeights kv_norm;
  std::vector<float> w_uk;  // [H, dn, r]: first dn rows of each head of wkv_b
  std::vector<float> w_uv;  // [H, dv, r]: last dv rows of each head of wkv_b
  // W_UK / W_UV pre-packed for oneDNN's batched matmul (over heads); set by
  // MtlaAttentionLayer's constructor, null without oneDNN or with
  // MTLA_LINEAR=openblas (then each head runs an OpenBLAS sgemm).
  std::shared_ptr<const cpu::PackedBatchedMatmul> w_uk_packed, w_uv_packed;
  LinearWeights wo;
  LinearWeights fc_p;             // hypernetwork, r -> hyper_rank, with bias
  std::vector<float> hyper_c;     // [max_slots, hyper_rank]: fc_c(PE(k)) precomputed
  int64_t max_slots = 0;
};

// Loads "<prefix>.wq.weight", ... (the official module's state-dict names) and
// precomputes fc_c(PE(k)) for k < max_slots. Errors name the tensor.
absl::StatusOr<MtlaAttentionWeights> LoadMtlaAttentionWeights(const SafetensorsFile& file,
                                                              const std::string& prefix,
                                                              const MtlaAttentionConfig& config,
                                                              int64_t max_slots);

// Reusable scratch buffers; they grow to the largest step seen and are reused.
struct MtlaAttentionWorkspace {
  std::vector<float> q, kv, hyper_p, partial_rows, q_absorbed, attn_latent, attn_heads,
      attn_scratch, latent_rows;
  void Reserve(int64_t tokens, const MtlaAttentionConfig& config);
};

// The layer's forward pass for one step on the CPU.
class MtlaAttentionLayer {
 public:
  MtlaAttentionLayer(const MtlaAttentionConfig& config, MtlaAttentionWeights weights);

  const MtlaAttentionConfig& config() const { return config_; }

  // out[N, E] = attention of the step's N tokens. `x` [N, E] is the layer input
  // (already normalized by the caller), positions[N] their RoPE positions.
  // Writes every token into `cache` (merge into the newest slot or open a new
  // one). Chunks' block tables must already cover the new slots.
  void Forward(const float* x, const int32_t* positions, const cpu::SequenceChunk* chunks,
               int num_chunks, int64_t num_tokens, const cpu::PagedCacheView& cache,
               MtlaAttentionWorkspace* ws, float* out) const;

  // Writes keys without queries into the cache (the speech prefix): the same as
  // Forward's cache update, with no attention computed.
  void AppendOnly(const float* x, const int32_t* positions, const cpu::SequenceChunk* chunks,
                  int num_chunks, int64_t num_tokens, const cpu::PagedCacheView& cache,
                  MtlaAttentionWorkspace* ws) const;

 private:
  // kv projection, kv_norm, k_pe RoPE, fc_p, cache append.
  void ProjectAndAppend(const float* x, const int32_t* positions, const cpu::SequenceChunk* chunks,
                        int num_chunks, int64_t num_tokens, const cpu::PagedCacheView& cache,
                        MtlaAttentionWorkspace* ws, bool keep_partial_rows) const;

  MtlaAttentionConfig config_;
  MtlaAttentionWeights w_;
  cpu::RopeTable rope_;
};

// fc_c(PE(k)) rows for k < num_slots: the sinusoidal encoding of width r
// (pe[2m] = sin(k / 10000^(2m/r)), pe[2m+1] = cos(...)) through fc_c.
std::vector<float> PrecomputeHyperC(const LinearWeights& fc_c, int64_t num_slots);

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_MTLA_ATTENTION_H_
