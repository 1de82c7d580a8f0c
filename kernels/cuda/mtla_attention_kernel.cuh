// Kernels behind mtla_attention.h. Included by one .cu file per storage dtype
// (mtla_attention_{f32,f16,bf16}.cu) so that the instantiations compile in
// parallel.
//
// CTA = one work item x kHeadsPerCta heads; warp w owns head h = group * 8 + w
// for every query of the item. Per kKvTile cache slots:
//   1. the CTA stages the slots (converted to float32) in shared memory;
//   2. each warp scores its head's queries against them (lane = slot x half
//      of the row, one shuffle to finish the dot product) and updates the
//      online softmax (running max m, sum l, unnormalized output o);
//   3. o += p_j * latent_j with lane owning columns lane + 32 i.
// The last split also scores each query's own partial row. One split writes
// the normalized output; several write (o, m, l) for the combine kernel.
#ifndef MTLA_KERNELS_CUDA_MTLA_ATTENTION_KERNEL_CUH_
#define MTLA_KERNELS_CUDA_MTLA_ATTENTION_KERNEL_CUH_

#include <cstdint>

#include "absl/strings/str_cat.h"

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_device.cuh"
#include "kernels/cuda/mtla_attention.h"

namespace mtla::cuda {

template <typename T>
absl::Status LaunchMtlaAttentionTyped(const MtlaAttentionParams& p, const AttentionPlanDevice& plan,
                                      cudaStream_t stream);

namespace attention_internal {

constexpr int kThreads = kHeadsPerCta * 32;

// Loads cache slots [slot0, slot0 + count) of a sequence into kv_s (row
// stride W + 1 floats) with 16-byte loads.
template <typename T, int W>
__device__ __forceinline__ void StageSlots(const T* rows, const int32_t* table, int block_slots,
                                           int slot0, int count, float* kv_s) {
  constexpr int kVec = 16 / sizeof(T);
  static_assert(W % kVec == 0, "row width must be a multiple of 16 bytes");
  constexpr int kVecsPerRow = W / kVec;
  for (int idx = threadIdx.x; idx < count * kVecsPerRow; idx += kThreads) {
    const int j = idx / kVecsPerRow;
    const int v = idx % kVecsPerRow;
    const int slot = slot0 + j;
    const T* row = rows + (static_cast<int64_t>(table[slot / block_slots]) * block_slots +
                           slot % block_slots) * W;
    const uint4 raw = reinterpret_cast<const uint4*>(row)[v];
    const T* vals = reinterpret_cast<const T*>(&raw);
    float* dst = kv_s + j * (W + 1) + v * kVec;
#pragma unroll
    for (int e = 0; e < kVec; ++e) dst[e] = ToFloat(vals[e]);
  }
}

template <typename T, int R, int DR, int QT>
__global__ void __launch_bounds__(kThreads)
    MtlaAttentionKernel(MtlaAttentionParams p, const AttentionWorkItem* items) {
  constexpr int W = R + DR;
  constexpr int WP = W + 1;
  constexpr int kCols = R / 32;  // output columns per lane
  static_assert(R % 32 == 0 && W % 2 == 0, "unsupported dims");
  extern __shared__ float smem[];
  float* q_s = smem;                                 // [QT][kHeadsPerCta][W]
  float* kv_s = q_s + QT * kHeadsPerCta * W;         // [kKvTile][WP]
  float* p_s = kv_s + kKvTile * WP;                  // [kHeadsPerCta][QT][kKvTile]

  const AttentionWorkItem item = items[blockIdx.x];
  const DeviceChunk chunk = p.chunks[item.chunk];
  const int32_t* table = p.block_tables + chunk.block_table_offset;
  const T* rows = static_cast<const T*>(p.cache.rows);
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int head = blockIdx.y * kHeadsPerCta + warp;
  const bool head_valid = head < p.num_heads;
  const int64_t row0 = chunk.token_offset + item.first_query;

  // Stage the queries of all heads of this CTA.
  for (int idx = threadIdx.x; idx < QT * kHeadsPerCta * W; idx += kThreads) {
    const int q = idx / (kHeadsPerCta * W);
    const int hw = (idx / W) % kHeadsPerCta;
    const int k = idx % W;
    const int h = blockIdx.y * kHeadsPerCta + hw;
    q_s[idx] = (q < item.num_queries && h < p.num_heads)
                   ? p.q[((row0 + q) * p.num_heads + h) * W + k]
                   : 0.0f;
  }
  __syncthreads();  // queries visible to every warp, also when no slot is staged

  int64_t visible[QT];  // complete slots each query sees
  float m[QT], l[QT], o[QT][kCols];
#pragma unroll
  for (int q = 0; q < QT; ++q) {
    visible[q] = q < item.num_queries ? (chunk.start + item.first_query + q) / p.down_rate : 0;
    m[q] = -INFINITY;
    l[q] = 0.0f;
#pragma unroll
    for (int i = 0; i < kCols; ++i) o[q][i] = 0.0f;
  }

  const int jj = lane & (kKvTile - 1);
  const int half = lane / kKvTile;
  for (int tile0 = item.slot_begin; tile0 < item.slot_end; tile0 += kKvTile) {
    const int count = min(kKvTile, item.slot_end - tile0);
    __syncthreads();  // the previous tile (and at first the queries) are done with
    StageSlots<T, W>(rows, table, p.cache.block_slots, tile0, count, kv_s);
    __syncthreads();
    if (!head_valid) continue;
#pragma unroll
    for (int q = 0; q < QT; ++q) {
      const float* qv = q_s + (q * kHeadsPerCta + warp) * W + half * (W / 2);
      const float* kv = kv_s + jj * WP + half * (W / 2);
      float dot = 0.0f;
      if (jj < count) {
#pragma unroll 8
        for (int k = 0; k < W / 2; ++k) dot += qv[k] * kv[k];
      }
      dot += __shfl_xor_sync(0xffffffffu, dot, kKvTile);
      const bool ok = jj < count && tile0 + jj < visible[q];
      const float score = ok ? dot * p.scale : -INFINITY;
      const float m_new = fmaxf(m[q], WarpMax(score));
      float prob = 0.0f, alpha = 1.0f;
      if (m_new != -INFINITY) {
        prob = ok ? __expf(score - m_new) : 0.0f;
        alpha = __expf(m[q] - m_new);  // 0 when m[q] is -inf
      }
      // Lanes j and j + 16 hold the same prob: sum one half.
      float sum = prob;
#pragma unroll
      for (int offset = kKvTile / 2; offset > 0; offset >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, offset);
      l[q] = l[q] * alpha + sum;
      m[q] = m_new;
      if (half == 0) p_s[(warp * QT + q) * kKvTile + jj] = prob;
#pragma unroll
      for (int i = 0; i < kCols; ++i) o[q][i] *= alpha;
    }
    __syncwarp();
    for (int j = 0; j < count; ++j) {
      const float* kv = kv_s + j * WP + lane;
#pragma unroll
      for (int q = 0; q < QT; ++q) {
        const float pj = p_s[(warp * QT + q) * kKvTile + j];
#pragma unroll
        for (int i = 0; i < kCols; ++i) o[q][i] += pj * kv[32 * i];
      }
    }
    __syncwarp();  // p_s is rewritten by the next tile
  }
  if (!head_valid) return;

  // The query's own key: its slot right after merging it (stride-aware mask).
  if (item.split == item.num_splits - 1) {
#pragma unroll
    for (int q = 0; q < QT; ++q) {
      if (q >= item.num_queries) continue;
      const float* own = p.partial_rows + (row0 + q) * W;
      const float* qv = q_s + (q * kHeadsPerCta + warp) * W;
      float dot = 0.0f;
      for (int k = lane; k < W; k += 32) dot += qv[k] * own[k];
      const float score = WarpSum(dot) * p.scale;
      const float m_new = fmaxf(m[q], score);
      const float alpha = __expf(m[q] - m_new);
      const float prob = __expf(score - m_new);
      l[q] = l[q] * alpha + prob;
      m[q] = m_new;
#pragma unroll
      for (int i = 0; i < kCols; ++i) o[q][i] = o[q][i] * alpha + prob * own[lane + 32 * i];
    }
  }

#pragma unroll
  for (int q = 0; q < QT; ++q) {
    if (q >= item.num_queries) continue;
    if (item.num_splits == 1) {
      const float inv = 1.0f / l[q];
      float* out = p.out + ((row0 + q) * p.num_heads + head) * R;
#pragma unroll
      for (int i = 0; i < kCols; ++i) out[lane + 32 * i] = o[q][i] * inv;
    } else {
      const int64_t partial = item.partial_base + q * item.num_splits + item.split;
      float* out = p.partial_out + (partial * p.num_heads + head) * R;
#pragma unroll
      for (int i = 0; i < kCols; ++i) out[lane + 32 * i] = o[q][i];
      if (lane == 0) {
        p.partial_stats[(partial * p.num_heads + head) * 2] = m[q];
        p.partial_stats[(partial * p.num_heads + head) * 2 + 1] = l[q];
      }
    }
  }
}

// grid (num_combine, H); out = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s.
template <int R>
__global__ void __launch_bounds__(128)
    MtlaCombineKernel(MtlaAttentionParams p, const AttentionCombineItem* items) {
  const AttentionCombineItem item = items[blockIdx.x];
  const int head = blockIdx.y;
  float max_m = -INFINITY;
  for (int s = 0; s < item.num_splits; ++s) {
    max_m = fmaxf(max_m, p.partial_stats[(static_cast<int64_t>(item.partial_base + s) * p.num_heads + head) * 2]);
  }
  float denom = 0.0f;
  for (int s = 0; s < item.num_splits; ++s) {
    const float* st = p.partial_stats + (static_cast<int64_t>(item.partial_base + s) * p.num_heads + head) * 2;
    if (st[0] != -INFINITY) denom += __expf(st[0] - max_m) * st[1];
  }
  const float inv = 1.0f / denom;
  float* out = p.out + (item.row * p.num_heads + head) * R;
  for (int k = threadIdx.x; k < R; k += blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s < item.num_splits; ++s) {
      const int64_t partial = item.partial_base + s;
      const float ms = p.partial_stats[(partial * p.num_heads + head) * 2];
      if (ms == -INFINITY) continue;
      acc += __expf(ms - max_m) * p.partial_out[(partial * p.num_heads + head) * R + k];
    }
    out[k] = acc * inv;
  }
}

template <typename T, int R, int DR, int QT>
absl::Status LaunchItems(const MtlaAttentionParams& p, const AttentionWorkItem* items, int count,
                         cudaStream_t stream) {
  if (count == 0) return absl::OkStatus();
  const size_t smem = MtlaAttentionSharedBytes(R, DR, QT);
  auto kernel = MtlaAttentionKernel<T, R, DR, QT>;
  if (smem > 48 * 1024) {
    MTLA_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)));
  }
  const dim3 grid(static_cast<unsigned>(count),
                  static_cast<unsigned>((p.num_heads + kHeadsPerCta - 1) / kHeadsPerCta));
  kernel<<<grid, kThreads, smem, stream>>>(p, items);
  return LaunchStatus("MtlaAttentionKernel");
}

template <typename T, int R, int DR>
absl::Status LaunchAll(const MtlaAttentionParams& p, const AttentionPlanDevice& plan,
                       cudaStream_t stream) {
  const absl::Status decode = LaunchItems<T, R, DR, 1>(p, plan.decode_items, plan.num_decode, stream);
  if (!decode.ok()) return decode;
  const absl::Status prefill =
      LaunchItems<T, R, DR, kPrefillQueries>(p, plan.prefill_items, plan.num_prefill, stream);
  if (!prefill.ok()) return prefill;
  if (plan.num_combine == 0) return absl::OkStatus();
  MtlaCombineKernel<R><<<dim3(plan.num_combine, p.num_heads), 128, 0, stream>>>(
      p, plan.combine_items);
  return LaunchStatus("MtlaCombineKernel");
}

}  // namespace attention_internal

// Dispatch of the supported (r, dR) pairs to template arguments.
template <typename T>
absl::Status LaunchMtlaAttentionTyped(const MtlaAttentionParams& p, const AttentionPlanDevice& plan,
                                      cudaStream_t stream) {
  using namespace attention_internal;
  const int r = p.cache.kv_lora_rank;
  const int dr = p.cache.rope_dim;
  if (r == 256 && dr == 32) return LaunchAll<T, 256, 32>(p, plan, stream);
  if (r == 512 && dr == 64) return LaunchAll<T, 512, 64>(p, plan, stream);
  if (r == 128 && dr == 16) return LaunchAll<T, 128, 16>(p, plan, stream);
  if (r == 64 && dr == 8) return LaunchAll<T, 64, 8>(p, plan, stream);
  if (r == 32 && dr == 8) return LaunchAll<T, 32, 8>(p, plan, stream);
  return absl::InvalidArgumentError(
      absl::StrCat("MtlaAttention: unsupported (kv_lora_rank, rope_dim) = (", r, ", ", dr,
                   "); compiled for (256, 32), (512, 64), (128, 16), (64, 8), (32, 8)"));
}

}  // namespace mtla::cuda

#endif  // MTLA_KERNELS_CUDA_MTLA_ATTENTION_KERNEL_CUH_
