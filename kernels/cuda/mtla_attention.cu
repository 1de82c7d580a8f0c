#include "kernels/cuda/mtla_attention.h"

#include "kernels/cuda/dtype_device.cuh"

namespace mtla::cuda {

template <typename T>
absl::Status LaunchMtlaAttentionTyped(const MtlaAttentionParams& p, const AttentionPlanDevice& plan,
                                      cudaStream_t stream);

absl::Status MtlaAttention(const MtlaAttentionParams& p, const AttentionPlanDevice& plan,
                           cudaStream_t stream) {
  if (p.num_heads <= 0) return absl::InvalidArgumentError("MtlaAttention: num_heads must be > 0");
  if (plan.num_combine > 0 && (p.partial_out == nullptr || p.partial_stats == nullptr)) {
    return absl::InvalidArgumentError("MtlaAttention: split plan without a partial workspace");
  }
  return MTLA_DISPATCH_DTYPE(p.cache.dtype, T, { return LaunchMtlaAttentionTyped<T>(p, plan, stream); });
}

}  // namespace mtla::cuda
