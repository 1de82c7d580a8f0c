#include "kernels/cuda/elementwise.h"

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_device.cuh"

namespace mtla::cuda {
namespace {

constexpr int kNormThreads = 256;
constexpr int kThreads = 256;

unsigned Blocks(int64_t count) {
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

// One CTA per row. Sums in float32 in a fixed order per thread count, so the
// result differs from the CPU's sequential sum only by rounding.
__global__ void RmsNormKernel(const float* x, int d, const float* w, float eps, float* y,
                              int64_t ldx, int64_t ldy) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * ldx;
  float* yr = y + blockIdx.x * ldy;
  float sum_sq = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) sum_sq += xr[j] * xr[j];
  sum_sq = BlockSum(sum_sq, scratch);
  const float inv = 1.0f / sqrtf(sum_sq / d + eps);
  for (int j = threadIdx.x; j < d; j += blockDim.x) yr[j] = xr[j] * inv * w[j];
}

__global__ void LayerNormKernel(const float* x, int d, const float* w, const float* b, float eps,
                                float* y, int64_t ldx, int64_t ldy) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * ldx;
  float* yr = y + blockIdx.x * ldy;
  float sum = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) sum += xr[j];
  const float mean = BlockSum(sum, scratch) / d;
  float var = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const float c = xr[j] - mean;
    var += c * c;
  }
  const float inv = 1.0f / sqrtf(BlockSum(var, scratch) / d + eps);
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const float v = (xr[j] - mean) * inv * w[j];
    yr[j] = b != nullptr ? v + b[j] : v;
  }
}

// One thread per (row, pair); loops over heads.
__global__ void RopeKernel(float* x, int64_t n, int64_t ld, int heads, int64_t head_stride,
                           int dim, const float* inv_freq, const int32_t* positions,
                           bool interleaved) {
  const int half = dim / 2;
  const int64_t total = n * half;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx / half;
    const int j = static_cast<int>(idx % half);
    const float angle = static_cast<float>(positions[i]) * inv_freq[j];
    float s, c;
    sincosf(angle, &s, &c);
    const int a = interleaved ? 2 * j : j;
    const int b = interleaved ? 2 * j + 1 : j + half;
    for (int h = 0; h < heads; ++h) {
      float* v = x + i * ld + h * head_stride;
      const float va = v[a];
      const float vb = v[b];
      v[a] = va * c - vb * s;
      v[b] = vb * c + va * s;
    }
  }
}

__global__ void SiluMulKernel(const float* gate, const float* up, int64_t n, int d, float* out,
                              int64_t ld_gate, int64_t ld_up, int64_t ld_out) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n * d;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx / d;
    const int j = static_cast<int>(idx % d);
    const float g = gate[i * ld_gate + j];
    out[i * ld_out + j] = g / (1.0f + expf(-g)) * up[i * ld_up + j];
  }
}

__global__ void ReluKernel(float* x, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = x[i] > 0.0f ? x[i] : 0.0f;
  }
}

__global__ void AddKernel(float* y, const float* x, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] += x[i];
  }
}

__global__ void AddBiasKernel(float* y, const float* bias, int64_t n, int d, int64_t ldy) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n * d;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[(idx / d) * ldy + idx % d] += bias[idx % d];
  }
}

template <typename T>
__global__ void EmbeddingKernel(const T* table, const int32_t* ids, int64_t n, int d, float scale,
                                float* out) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n * d;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx / d;
    out[idx] = ToFloat(table[static_cast<int64_t>(ids[i]) * d + idx % d]) * scale;
  }
}

template <typename T>
__global__ void FromFloatKernel(const float* src, int64_t n, int d, int64_t ld_src, T* dst,
                                int64_t ld_dst) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n * d;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx / d;
    const int64_t j = idx % d;
    dst[i * ld_dst + j] = FromFloat<T>(src[i * ld_src + j]);
  }
}

template <typename T>
__global__ void ToFloatKernel(const T* src, int64_t count, float* dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = ToFloat(src[i]);
  }
}

template <typename T>
__global__ void FillNaNKernel(T* data, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    data[i] = FromFloat<T>(__int_as_float(0x7fc00000));
  }
}

__global__ void GatherRowsKernel(const float* rows, const int64_t* index, int64_t n, int d,
                                 float* out) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n * d;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[idx] = rows[index[idx / d] * d + idx % d];
  }
}

}  // namespace

absl::Status RmsNorm(const float* x, int64_t n, int d, const float* weight, float eps, float* y,
                     int64_t ldx, int64_t ldy, cudaStream_t stream) {
  if (n == 0) return absl::OkStatus();
  RmsNormKernel<<<static_cast<unsigned>(n), kNormThreads, 0, stream>>>(
      x, d, weight, eps, y, ldx ? ldx : d, ldy ? ldy : d);
  return LaunchStatus("RmsNormKernel");
}

absl::Status LayerNorm(const float* x, int64_t n, int d, const float* weight, const float* bias,
                       float eps, float* y, int64_t ldx, int64_t ldy, cudaStream_t stream) {
  if (n == 0) return absl::OkStatus();
  LayerNormKernel<<<static_cast<unsigned>(n), kNormThreads, 0, stream>>>(
      x, d, weight, bias, eps, y, ldx ? ldx : d, ldy ? ldy : d);
  return LaunchStatus("LayerNormKernel");
}

absl::Status Rope(float* x, int64_t n, int64_t ld, int heads, int64_t head_stride, int dim,
                  const float* inv_freq, const int32_t* positions, bool interleaved,
                  cudaStream_t stream) {
  if (n == 0 || dim == 0) return absl::OkStatus();
  RopeKernel<<<Blocks(n * (dim / 2)), kThreads, 0, stream>>>(x, n, ld, heads, head_stride, dim,
                                                             inv_freq, positions, interleaved);
  return LaunchStatus("RopeKernel");
}

absl::Status SiluMul(const float* gate, const float* up, int64_t n, int d, float* out,
                     int64_t ld_gate, int64_t ld_up, int64_t ld_out, cudaStream_t stream) {
  if (n == 0) return absl::OkStatus();
  SiluMulKernel<<<Blocks(n * d), kThreads, 0, stream>>>(gate, up, n, d, out, ld_gate, ld_up,
                                                        ld_out);
  return LaunchStatus("SiluMulKernel");
}

absl::Status Relu(float* x, int64_t count, cudaStream_t stream) {
  if (count == 0) return absl::OkStatus();
  ReluKernel<<<Blocks(count), kThreads, 0, stream>>>(x, count);
  return LaunchStatus("ReluKernel");
}

absl::Status AddInPlace(float* y, const float* x, int64_t count, cudaStream_t stream) {
  if (count == 0) return absl::OkStatus();
  AddKernel<<<Blocks(count), kThreads, 0, stream>>>(y, x, count);
  return LaunchStatus("AddKernel");
}

absl::Status AddBias(float* y, const float* bias, int64_t n, int d, int64_t ldy,
                     cudaStream_t stream) {
  if (n == 0) return absl::OkStatus();
  AddBiasKernel<<<Blocks(n * d), kThreads, 0, stream>>>(y, bias, n, d, ldy ? ldy : d);
  return LaunchStatus("AddBiasKernel");
}

absl::Status EmbeddingLookup(const void* table, DType dtype, const int32_t* ids, int64_t n, int d,
                             float scale, float* out, cudaStream_t stream) {
  if (n == 0) return absl::OkStatus();
  return MTLA_DISPATCH_DTYPE(dtype, T, {
    EmbeddingKernel<T><<<Blocks(n * d), kThreads, 0, stream>>>(static_cast<const T*>(table), ids,
                                                               n, d, scale, out);
    return LaunchStatus("EmbeddingKernel");
  });
}

absl::Status ConvertFromFloat(const float* src, int64_t n, int d, int64_t ld_src, void* dst,
                              DType dtype, int64_t ld_dst, cudaStream_t stream) {
  if (n == 0) return absl::OkStatus();
  return MTLA_DISPATCH_DTYPE(dtype, T, {
    FromFloatKernel<T><<<Blocks(n * d), kThreads, 0, stream>>>(
        src, n, d, ld_src ? ld_src : d, static_cast<T*>(dst), ld_dst ? ld_dst : d);
    return LaunchStatus("FromFloatKernel");
  });
}

absl::Status ConvertToFloat(const void* src, DType dtype, int64_t count, float* dst,
                            cudaStream_t stream) {
  if (count == 0) return absl::OkStatus();
  return MTLA_DISPATCH_DTYPE(dtype, T, {
    ToFloatKernel<T><<<Blocks(count), kThreads, 0, stream>>>(static_cast<const T*>(src), count,
                                                             dst);
    return LaunchStatus("ToFloatKernel");
  });
}

absl::Status GatherRows(const float* rows, const int64_t* index, int64_t n, int d, float* out,
                        cudaStream_t stream) {
  if (n == 0) return absl::OkStatus();
  GatherRowsKernel<<<Blocks(n * d), kThreads, 0, stream>>>(rows, index, n, d, out);
  return LaunchStatus("GatherRowsKernel");
}

absl::Status FillNaN(void* data, DType dtype, int64_t count, cudaStream_t stream) {
  if (count == 0) return absl::OkStatus();
  return MTLA_DISPATCH_DTYPE(dtype, T, {
    FillNaNKernel<T><<<Blocks(count), kThreads, 0, stream>>>(static_cast<T*>(data), count);
    return LaunchStatus("FillNaNKernel");
  });
}

}  // namespace mtla::cuda
