// The CUDA backend (built only when MTLA_HAVE_CUDA): weights and the paged
// cache in device memory in the storage dtype (fp32 for conformance, bf16 or
// fp16 for serving), activations and accumulation in float32, projections
// through cuBLAS, MTLA append / attention and the dense operators from
// kernels/cuda. Same semantics as CpuModelBackend (the reference it is tested
// against).
//
// Memory: the cache pool, the weights, the workspace (sized for
// `max_step_tokens` tokens) and the pinned staging buffer are allocated once
// in Create(); Forward(), FillPrefix() and CopyBlocks() allocate no device
// memory. Every CUDA error becomes a Status; nothing exits.
//
// Thread-safety: not thread-safe (engine thread only, like every backend).
#ifndef MTLA_ENGINE_MODEL_CUDA_MODEL_BACKEND_H_
#define MTLA_ENGINE_MODEL_CUDA_MODEL_BACKEND_H_

#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/cache_options.h"
#include "engine/model/decoder_spec.h"
#include "engine/model/model_backend.h"
#include "engine/weights/safetensors.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/dtype.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/mtla_attention.h"

namespace mtla {

struct CudaBackendOptions {
  cuda::DType dtype = cuda::DType::kBF16;
  int device = 0;
  int max_step_tokens = 4096;  // most tokens one Forward() may carry
  // Bytes for split-KV partial results (flash-decoding combine workspace).
  size_t split_workspace_bytes = 64u << 20;
};

class CudaModelBackend : public ModelBackend {
 public:
  // Loads every weight named by spec.names and allocates the cache (block
  // count from `cache`, as the CPU backend) and the workspace on the device.
  // Unimplemented when the attention dims have no compiled kernel;
  // ResourceExhausted when the device memory does not suffice.
  static absl::StatusOr<std::unique_ptr<CudaModelBackend>> Create(
      DecoderSpec spec, const SafetensorsFile& file, const CacheOptions& cache,
      const CudaBackendOptions& options);
  ~CudaModelBackend() override;

  std::string_view name() const override { return name_; }
  const DecoderSpec& spec() const override { return spec_; }
  const KvCacheGeometry& cache_geometry() const override { return geometry_; }
  int num_cache_blocks() const override { return num_blocks_; }
  int cache_element_bytes() const override { return cuda::DTypeBytes(options_.dtype); }
  absl::Status CopyBlocks(const std::vector<BlockCopy>& copies) override;
  absl::Status Forward(const StepPlan& plan, std::vector<float>* logits) override;
  absl::Status FillPrefix(const std::vector<BlockId>& block_table, int64_t start, const float* rows,
                          int64_t num_rows) override;
  // Not OK once the device context is corrupted (a sticky error such as an
  // illegal address or a device-side assert: CUDA then fails every call), as
  // reported by querying the backend's stream.
  absl::Status Health() const override;

  // Layer `layer`'s cache view (for tests and conformance).
  cuda::CacheView CacheView(int layer) const;
  cudaStream_t stream() const { return stream_; }

  struct Linear;  // device weights of one dense layer
  struct Norm;
  struct Layer;

 private:
  CudaModelBackend() = default;
  struct StepInputs;
  absl::Status Upload(const std::vector<StepSequence>& sequences, const int32_t* token_ids,
                      const int32_t* positions, int64_t n, const std::vector<int64_t>& logit_rows,
                      bool with_attention, StepInputs* inputs);
  absl::Status ApplyLinear(const Linear& w, const float* x, int64_t n, int64_t ldx, float* y,
                           int64_t ldy);
  absl::Status ApplyNorm(const Norm& w, bool layer_norm, float eps, const float* x, int64_t n,
                         int d, float* y, int64_t ldx, int64_t ldy);
  absl::Status ProjectAndAppend(int layer, const float* x, int64_t n, const StepInputs& in,
                                bool keep_partial_rows);
  absl::Status Attention(int layer, const float* x, int64_t n, const StepInputs& in, float* out);
  absl::Status DecoderLayer(int layer, int64_t n, const StepInputs& in);
  absl::Status Mlp(int layer, const float* in, int64_t n, float* out);

  std::string name_;
  DecoderSpec spec_;
  CudaBackendOptions options_;
  KvCacheGeometry geometry_;
  int num_blocks_ = 0;
  int num_sms_ = 0;
  cudaStream_t stream_ = nullptr;
  cuda::BlasHandle blas_;
  cuda::DeviceBuffer cache_;
  std::vector<std::unique_ptr<Layer>> layers_;
  cuda::DeviceBuffer embed_tokens_, lm_head_, rope_inv_freq_;
  std::unique_ptr<Norm> final_norm_;
  // Workspace (float32 unless noted), sized for max_step_tokens.
  cuda::DeviceBuffer hidden_, normed_, attn_out_, mlp_a_, mlp_b_, cast_, q_, kv_, hyper_p_,
      partial_rows_, q_absorbed_, attn_latent_, attn_heads_, partial_out_, partial_stats_,
      selected_, logits_, step_data_;
  int max_partials_ = 0;
  size_t step_data_bytes_ = 0;
  cuda::PinnedBuffer staging_;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_CUDA_MODEL_BACKEND_H_
