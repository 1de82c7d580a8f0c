// Dense device operators of the CUDA backend on row-major float32
// activations; the CUDA counterparts of kernels/cpu/cpu_ops.h with the same
// contracts (strides ld* are row strides in elements; 0 means dense). Tables
// and weights named `T`-typed live in the storage dtype.
//
// All functions enqueue on `stream`, allocate nothing and return the launch
// status.
#ifndef MTLA_KERNELS_CUDA_ELEMENTWISE_H_
#define MTLA_KERNELS_CUDA_ELEMENTWISE_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/dtype.h"

namespace mtla::cuda {

// y = x * rsqrt(mean(x^2) + eps) * w. In place allowed.
absl::Status RmsNorm(const float* x, int64_t n, int d, const float* weight, float eps, float* y,
                     int64_t ldx, int64_t ldy, cudaStream_t stream);
// y = (x - mean) * rsqrt(var + eps) * w + b (biased variance; bias may be null).
absl::Status LayerNorm(const float* x, int64_t n, int d, const float* weight, const float* bias,
                       float eps, float* y, int64_t ldx, int64_t ldy, cudaStream_t stream);

// Rotates in place: row i (x + i * ld) holds `heads` vectors of width `dim` at
// stride head_stride, rotated by angle positions[i] * inv_freq[j] for pair j.
// interleaved: pairs (2j, 2j + 1); otherwise half-split pairs (j, j + dim/2).
// inv_freq [dim / 2] is a device table (1 / theta^(2j/dim), float32).
absl::Status Rope(float* x, int64_t n, int64_t ld, int heads, int64_t head_stride, int dim,
                  const float* inv_freq, const int32_t* positions, bool interleaved,
                  cudaStream_t stream);

// out = silu(gate) * up, rows of width d.
absl::Status SiluMul(const float* gate, const float* up, int64_t n, int d, float* out,
                     int64_t ld_gate, int64_t ld_up, int64_t ld_out, cudaStream_t stream);
// In place over count contiguous values.
absl::Status Relu(float* x, int64_t count, cudaStream_t stream);
// y += x over count contiguous values.
absl::Status AddInPlace(float* y, const float* x, int64_t count, cudaStream_t stream);
// y[i, j] += bias[j] for n rows of width d (row stride ldy).
absl::Status AddBias(float* y, const float* bias, int64_t n, int d, int64_t ldy,
                     cudaStream_t stream);
// out[i] = float(table[ids[i]]) * scale, table [vocab, d] in `dtype`.
absl::Status EmbeddingLookup(const void* table, DType dtype, const int32_t* ids, int64_t n, int d,
                             float scale, float* out, cudaStream_t stream);
// dst (dtype, rows of width d, stride ld_dst) = src (float32, stride ld_src).
absl::Status ConvertFromFloat(const float* src, int64_t n, int d, int64_t ld_src, void* dst,
                              DType dtype, int64_t ld_dst, cudaStream_t stream);
// dst float32 = src (dtype), count contiguous values.
absl::Status ConvertToFloat(const void* src, DType dtype, int64_t count, float* dst,
                            cudaStream_t stream);
// out[i] = rows[index[i]] for rows of width d.
absl::Status GatherRows(const float* rows, const int64_t* index, int64_t n, int d, float* out,
                        cudaStream_t stream);
// Fills count values of dtype with NaN (cache poisoning in tests and at start).
absl::Status FillNaN(void* data, DType dtype, int64_t count, cudaStream_t stream);

}  // namespace mtla::cuda

#endif  // MTLA_KERNELS_CUDA_ELEMENTWISE_H_
