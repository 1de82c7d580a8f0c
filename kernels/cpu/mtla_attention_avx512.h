// Internal: the AVX-512 paged MTLA attention kernel for one query token over
// a contiguous range of its keys (one split of the key axis). Called only by
// MtlaAttention (mtla_cpu.cc), which plans the splits, runs them on OpenMP
// threads and combines them; this file knows nothing of threads.
//
// The translation unit is compiled with AVX-512 code generation (see
// kernels/cpu/CMakeLists.txt) and must only be entered after
// the CPU reported AVX-512F and AVX-512DQ. It includes no standard-library
// templates, so no AVX-512 copy of a shared inline function can leak into the
// rest of the program.
#ifndef MTLA_KERNELS_CPU_MTLA_ATTENTION_AVX512_H_
#define MTLA_KERNELS_CPU_MTLA_ATTENTION_AVX512_H_

#include <cstdint>

#include "kernels/cpu/mtla_cpu.h"

namespace mtla::cpu::internal {

// Largest head count the kernel handles (stack arrays of [heads][16] scores).
inline constexpr int kAvx512MaxHeads = 256;

// One split: keys [key_begin, key_end) of a query token that sees `complete`
// cache slots plus its own partial row (key index `complete`).
//
// Output contract: out[h, 0:r] = sum_j exp(s_hj - max[h]) * latent_j and
// sum[h] = sum_j exp(s_hj - max[h]), s_hj = scale * q_h . key_j, over the
// split's keys; with `normalize` the kernel instead writes out[h] / sum[h]
// (max and sum may then be null). key_end > key_begin.
struct AttentionSplitParams {
  PagedCacheView cache;
  const int32_t* block_table = nullptr;
  const float* q = nullptr;        // [num_heads, slot_width]
  const float* own_row = nullptr;  // [slot_width]
  int64_t complete = 0;
  int64_t key_begin = 0;
  int64_t key_end = 0;
  int num_heads = 0;
  float scale = 1.0f;
  bool normalize = false;
  float* out = nullptr;  // [num_heads, r]
  float* max = nullptr;  // [num_heads]
  float* sum = nullptr;  // [num_heads]
};

// Shapes the kernel handles: r a multiple of 16, 1 <= num_heads <=
// kAvx512MaxHeads (any slot width). The CPU check is the caller's.
inline bool Avx512KernelSupportsShape(const PagedCacheView& cache, int num_heads) {
  return cache.kv_lora_rank % 16 == 0 && num_heads >= 1 && num_heads <= kAvx512MaxHeads;
}

void AttendSplitAvx512(AttentionSplitParams p);

}  // namespace mtla::cpu::internal

#endif  // MTLA_KERNELS_CPU_MTLA_ATTENTION_AVX512_H_
