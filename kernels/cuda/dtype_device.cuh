// Device-side conversions between storage types and float32, and the
// dispatch macro that turns a runtime DType into a template argument.
#ifndef MTLA_KERNELS_CUDA_DTYPE_DEVICE_CUH_
#define MTLA_KERNELS_CUDA_DTYPE_DEVICE_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/dtype.h"

namespace mtla::cuda {

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

}  // namespace mtla::cuda

// MTLA_DISPATCH_DTYPE(dtype, T, ...): runs the body with T bound to the
// storage type; an unknown dtype returns InvalidArgument.
#define MTLA_DISPATCH_DTYPE(dtype, T, ...)                                  \
  [&]() -> ::absl::Status {                                                 \
    switch (dtype) {                                                        \
      case ::mtla::cuda::DType::kF32: { using T = float; __VA_ARGS__ }      \
      case ::mtla::cuda::DType::kF16: { using T = __half; __VA_ARGS__ }     \
      case ::mtla::cuda::DType::kBF16: { using T = __nv_bfloat16; __VA_ARGS__ } \
    }                                                                       \
    return ::absl::InvalidArgumentError("unsupported storage dtype");       \
  }()

#endif  // MTLA_KERNELS_CUDA_DTYPE_DEVICE_CUH_
