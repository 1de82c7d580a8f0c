// The CPU backend: fp32 weights and cache in host memory, projections through
// BLAS, MTLA kernels from kernels/cpu. Production code and the reference the
// other backends are checked against.
#ifndef MTLA_ENGINE_MODEL_CPU_MODEL_BACKEND_H_
#define MTLA_ENGINE_MODEL_CPU_MODEL_BACKEND_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/cache_options.h"
#include "engine/model/decoder_spec.h"
#include "engine/model/model_backend.h"
#include "engine/model/mtla_attention.h"
#include "engine/weights/safetensors.h"

namespace mtla {

struct DecoderLayerWeights {
  NormWeights attention_norm;
  NormWeights mlp_norm;
  LinearWeights mlp_in;   // gate_proj or fc1
  LinearWeights mlp_up;   // up_proj (SwiGLU)
  LinearWeights mlp_out;  // down_proj or fc2
};

class CpuModelBackend : public ModelBackend {
 public:
  // Loads every weight named by `spec.names` from `file` and allocates a cache
  // of `num_blocks` blocks of `block_slots` slots.
  static absl::StatusOr<std::unique_ptr<CpuModelBackend>> Create(const DecoderSpec& spec,
                                                                 const SafetensorsFile& file,
                                                                 int num_blocks, int block_slots);

  // The same, with the block count from `options` (num_blocks, else as many
  // blocks as memory_bytes holds) and its context limit override.
  static absl::StatusOr<std::unique_ptr<CpuModelBackend>> Create(DecoderSpec spec,
                                                                 const SafetensorsFile& file,
                                                                 const CacheOptions& options);

  std::string_view name() const override { return "cpu"; }
  const DecoderSpec& spec() const override { return spec_; }
  const KvCacheGeometry& cache_geometry() const override { return geometry_; }
  int num_cache_blocks() const override { return num_blocks_; }
  int cache_element_bytes() const override { return sizeof(float); }
  absl::Status CopyBlocks(const std::vector<BlockCopy>& copies) override;
  absl::Status Forward(const StepPlan& plan, std::vector<float>* logits) override;
  absl::Status FillPrefix(const std::vector<BlockId>& block_table, int64_t start, const float* rows,
                          int64_t num_rows) override;

  // Layer `layer`'s cache view (for tests and conformance).
  cpu::PagedCacheView CacheView(int layer);

 private:
  CpuModelBackend() = default;
  void DecoderLayer(int layer, const std::vector<cpu::SequenceChunk>& chunks, const StepPlan& plan,
                    int64_t n);

  DecoderSpec spec_;
  KvCacheGeometry geometry_;
  int num_blocks_ = 0;
  std::vector<float> cache_;
  std::vector<float> embed_tokens_;  // [vocab, E]
  std::vector<float> lm_head_;       // [vocab, E]; empty when tied
  std::shared_ptr<const cpu::PackedLinear> packed_head_;  // the output projection; may be null
  NormWeights final_norm_;
  std::vector<MtlaAttentionLayer> attention_;
  std::vector<DecoderLayerWeights> layers_;
  // Step scratch, grown to the largest step seen.
  std::vector<float> hidden_, normed_, attn_out_, mlp_a_, mlp_b_, selected_;
  MtlaAttentionWorkspace attention_ws_;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_CPU_MODEL_BACKEND_H_
