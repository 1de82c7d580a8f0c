// Instantiations of the MTLA attention kernels for __nv_bfloat16 storage.
#include "kernels/cuda/mtla_attention_kernel.cuh"

namespace mtla::cuda {
template absl::Status LaunchMtlaAttentionTyped<__nv_bfloat16>(const MtlaAttentionParams&,
                                                    const AttentionPlanDevice&, cudaStream_t);
}  // namespace mtla::cuda
