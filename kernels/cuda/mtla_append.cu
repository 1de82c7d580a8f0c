#include "kernels/cuda/mtla_append.h"

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_device.cuh"

namespace mtla::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxPerThread = 8;  // r <= kThreads * kMaxPerThread

template <typename T>
__global__ void __launch_bounds__(kThreads) MtlaAppendKernel(MtlaAppendParams p) {
  __shared__ float scratch[32];
  const DeviceChunk chunk = p.chunks[blockIdx.y];
  if (chunk.num_tokens <= 0) return;
  const int s = p.down_rate;
  const int r = p.cache.kv_lora_rank;
  const int dr = p.cache.rope_dim;
  const int width = r + dr;
  const int32_t* table = p.block_tables + chunk.block_table_offset;
  T* rows = static_cast<T*>(p.cache.rows);
  const int64_t end = chunk.start + chunk.num_tokens;
  const int64_t first_slot = chunk.start / s;
  const int64_t last_slot = (end - 1) / s;
  for (int64_t slot = first_slot + blockIdx.x; slot <= last_slot; slot += gridDim.x) {
    const int64_t t_begin = max(chunk.start, slot * s);
    const int64_t t_end = min(end, slot * s + s);
    T* row = rows + (static_cast<int64_t>(table[slot / p.cache.block_slots]) * p.cache.block_slots +
                     slot % p.cache.block_slots) * width;
    float acc[kMaxPerThread];
#pragma unroll
    for (int i = 0; i < kMaxPerThread; ++i) {
      const int k = threadIdx.x + i * kThreads;
      // A slot continued from an earlier step starts from its cached state.
      acc[i] = (k < r && t_begin % s != 0) ? ToFloat(row[k]) : 0.0f;
    }
    const float* hc = p.hyper_c + slot * p.hyper_rank;
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t token_row = chunk.token_offset + (t - chunk.start);
      const float* hp = p.hyper_p + token_row * p.hyper_rank;
      float part = 0.0f;
      for (int k = threadIdx.x; k < p.hyper_rank; k += kThreads) part += hc[k] * hp[k];
      const float logit = BlockSum(part, scratch);
      const float w = 1.0f / (1.0f + expf(-logit));
      const float* c = p.latent + token_row * p.ld_latent;
      const bool opens = t % s == 0;
#pragma unroll
      for (int i = 0; i < kMaxPerThread; ++i) {
        const int k = threadIdx.x + i * kThreads;
        if (k < r) acc[i] = (opens ? 0.0f : acc[i]) + w * c[k];
      }
      if (p.partial_rows != nullptr) {
        float* out = p.partial_rows + token_row * width;
#pragma unroll
        for (int i = 0; i < kMaxPerThread; ++i) {
          const int k = threadIdx.x + i * kThreads;
          if (k < r) out[k] = acc[i];
        }
        const float* kpe = p.k_pe + token_row * p.ld_k_pe;
        for (int d = threadIdx.x; d < dr; d += kThreads) out[r + d] = kpe[d];
      }
    }
#pragma unroll
    for (int i = 0; i < kMaxPerThread; ++i) {
      const int k = threadIdx.x + i * kThreads;
      if (k < r) row[k] = FromFloat<T>(acc[i]);
    }
    // k_pe of the slot's most recent token overwrites the previous one.
    const float* kpe = p.k_pe + (chunk.token_offset + (t_end - 1 - chunk.start)) * p.ld_k_pe;
    for (int d = threadIdx.x; d < dr; d += kThreads) row[r + d] = FromFloat<T>(kpe[d]);
  }
}

}  // namespace

absl::Status MtlaAppend(const MtlaAppendParams& p, cudaStream_t stream) {
  if (p.num_chunks == 0 || p.max_chunk_slots == 0) return absl::OkStatus();
  if (p.cache.kv_lora_rank > kThreads * kMaxPerThread || p.down_rate < 1) {
    return absl::InvalidArgumentError("MtlaAppend: kv_lora_rank above 1024 or down_rate < 1");
  }
  if (p.num_chunks > 65535) return absl::InvalidArgumentError("MtlaAppend: over 65535 chunks");
  const dim3 grid(static_cast<unsigned>(p.max_chunk_slots < 65536 ? p.max_chunk_slots : 65535),
                  static_cast<unsigned>(p.num_chunks));
  return MTLA_DISPATCH_DTYPE(p.cache.dtype, T, {
    MtlaAppendKernel<T><<<grid, kThreads, 0, stream>>>(p);
    return LaunchStatus("MtlaAppendKernel");
  });
}

}  // namespace mtla::cuda
