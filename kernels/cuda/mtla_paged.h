// Shared descriptions of the paged temporal-latent cache and of a step's
// sequences for the CUDA MTLA kernels. Same layout and semantics as the CPU
// kernels (kernels/cpu/mtla_cpu.h): row (block b, slot-in-block k) of one
// layer is at rows + (b * block_slots + k) * (r + dR) elements, holding
// [latent (r) | k_pe (dR)] in the storage dtype; token t belongs to slot t / s.
#ifndef MTLA_KERNELS_CUDA_MTLA_PAGED_H_
#define MTLA_KERNELS_CUDA_MTLA_PAGED_H_

#include <cstdint>

#include "kernels/cuda/dtype.h"

namespace mtla::cuda {

// One layer's view of the device cache.
struct CacheView {
  void* rows = nullptr;  // device, storage dtype
  DType dtype = DType::kF32;
  int block_slots = 0;
  int kv_lora_rank = 0;  // r
  int rope_dim = 0;      // dR
  int slot_width() const { return kv_lora_rank + rope_dim; }
};

// One sequence's part of a step (plain data; lives in host and device memory).
// Its new tokens are rows [token_offset, token_offset + num_tokens) of the
// step's token arrays, at sequence positions [start, start + num_tokens). Its
// block table is block_tables[block_table_offset ...] and covers every slot up
// to start + num_tokens.
struct DeviceChunk {
  int64_t start = 0;
  int64_t token_offset = 0;
  int32_t num_tokens = 0;
  int32_t block_table_offset = 0;
};

}  // namespace mtla::cuda

#endif  // MTLA_KERNELS_CUDA_MTLA_PAGED_H_
