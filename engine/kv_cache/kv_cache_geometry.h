// Shape of the paged temporal-latent KV cache.
//
// One cache slot holds s = down_rate tokens merged into a single row
// [latent (kv_lora_rank) | k_pe (rope_dim)]. A block holds `block_slots`
// consecutive slots of one sequence, for every layer. Storage is layer-major:
// row (layer, block, slot) lives at float offset
//   ((layer * num_blocks + block) * block_slots + slot) * slot_width.
#ifndef MTLA_ENGINE_KV_CACHE_KV_CACHE_GEOMETRY_H_
#define MTLA_ENGINE_KV_CACHE_KV_CACHE_GEOMETRY_H_

#include <cstddef>
#include <cstdint>

namespace mtla {

using BlockId = int32_t;

struct KvCacheGeometry {
  int num_layers = 0;
  int kv_lora_rank = 0;  // r
  int rope_dim = 0;      // dR
  int down_rate = 1;     // s
  int block_slots = 16;  // slots per block

  int slot_width() const { return kv_lora_rank + rope_dim; }
  int tokens_per_block() const { return block_slots * down_rate; }
  // Slots needed for `num_tokens` tokens: ceil(num_tokens / s).
  int64_t SlotsForTokens(int64_t num_tokens) const {
    return (num_tokens + down_rate - 1) / down_rate;
  }
  // Blocks needed for `num_tokens` tokens.
  int64_t BlocksForTokens(int64_t num_tokens) const {
    return (SlotsForTokens(num_tokens) + block_slots - 1) / block_slots;
  }
  // Elements of one block across all layers.
  size_t BlockElements() const {
    return static_cast<size_t>(num_layers) * block_slots * slot_width();
  }
  // Bytes of cache one token costs in one layer: (r + dR) * bytes / s.
  double BytesPerTokenPerLayer(int element_bytes) const {
    return static_cast<double>(slot_width()) * element_bytes / down_rate;
  }
  // Element offset of a slot row in layer-major storage of `num_blocks` blocks.
  size_t RowOffset(int layer, BlockId block, int slot_in_block, int num_blocks) const {
    return ((static_cast<size_t>(layer) * num_blocks + block) * block_slots + slot_in_block) *
           slot_width();
  }
};

}  // namespace mtla

#endif  // MTLA_ENGINE_KV_CACHE_KV_CACHE_GEOMETRY_H_
