// Slot merge/append on the device (DESIGN.md s.1), the CUDA counterpart of
// cpu::MtlaAppend with identical semantics: token t opens slot t / s when
// t % s == 0 (latent = w_t * c_t) and otherwise adds w_t * c_t to it; the
// slot's k_pe becomes the token's k_pe; w_t = sigmoid(dot(hyper_c[t / s],
// hyper_p[row])). Writes go through the block tables.
#ifndef MTLA_KERNELS_CUDA_MTLA_APPEND_H_
#define MTLA_KERNELS_CUDA_MTLA_APPEND_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/mtla_paged.h"

namespace mtla::cuda {

// All pointers are device pointers. Activations are float32; the cache is in
// cache.dtype (merging happens in float32, the slot is rounded once per step).
struct MtlaAppendParams {
  CacheView cache;
  const int32_t* block_tables = nullptr;
  const DeviceChunk* chunks = nullptr;  // device copy of the step's chunks
  int num_chunks = 0;
  int max_chunk_slots = 0;  // host-computed: most slots any one chunk touches
  int down_rate = 1;
  const float* latent = nullptr;  // [N, ld_latent]: kv_norm(c), width r
  int64_t ld_latent = 0;
  const float* k_pe = nullptr;  // [N, ld_k_pe]: rotated k_pe, width dR
  int64_t ld_k_pe = 0;
  const float* hyper_p = nullptr;  // [N, hyper_rank]
  const float* hyper_c = nullptr;  // [max_slots, hyper_rank]
  int hyper_rank = 0;
  // Optional [N, r + dR] float32: each token's key row (its slot right after
  // merging it), read by the attention kernels as the query's own key.
  float* partial_rows = nullptr;
};

// Slots of different chunks and different slots of one chunk are merged in
// parallel (one CTA per slot); tokens of one slot merge in order.
// Preconditions: r <= 1024; chunks of one call write disjoint slots.
absl::Status MtlaAppend(const MtlaAppendParams& p, cudaStream_t stream);

// Slots that a chunk of `num_tokens` tokens starting at `start` touches.
inline int ChunkSlots(int64_t start, int num_tokens, int down_rate) {
  if (num_tokens <= 0) return 0;
  return static_cast<int>((start + num_tokens - 1) / down_rate - start / down_rate + 1);
}

}  // namespace mtla::cuda

#endif  // MTLA_KERNELS_CUDA_MTLA_APPEND_H_
