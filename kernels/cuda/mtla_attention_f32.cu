// Instantiations of the MTLA attention kernels for float storage.
#include "kernels/cuda/mtla_attention_kernel.cuh"

namespace mtla::cuda {
template absl::Status LaunchMtlaAttentionTyped<float>(const MtlaAttentionParams&,
                                                    const AttentionPlanDevice&, cudaStream_t);
}  // namespace mtla::cuda
