// Instantiations of the MTLA attention kernels for __half storage.
#include "kernels/cuda/mtla_attention_kernel.cuh"

namespace mtla::cuda {
template absl::Status LaunchMtlaAttentionTyped<__half>(const MtlaAttentionParams&,
                                                    const AttentionPlanDevice&, cudaStream_t);
}  // namespace mtla::cuda
