#include <algorithm>
#include <cstdint>

#include "kernels/cuda/mtla_attention.h"

namespace mtla::cuda {

bool MtlaAttentionSupports(int r, int dr) {
  return (r == 256 && dr == 32) || (r == 512 && dr == 64) || (r == 128 && dr == 16) ||
         (r == 64 && dr == 8) || (r == 32 && dr == 8);
}

size_t MtlaAttentionSharedBytes(int r, int dr, int queries) {
  const size_t width = static_cast<size_t>(r + dr);
  return sizeof(float) * (static_cast<size_t>(queries) * kHeadsPerCta * width +
                          kKvTile * (width + 1) + kHeadsPerCta * queries * kKvTile);
}

namespace {

struct Tile {
  int32_t chunk;
  int32_t first_query;
  int32_t num_queries;
  int64_t visible_slots;  // cache slots the tile's last query sees
};

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

AttentionPlan BuildAttentionPlan(const DeviceChunk* chunks, int num_chunks, int down_rate,
                                 int num_heads, const AttentionPlanOptions& options) {
  std::vector<Tile> tiles;
  int64_t total_slots = 0;
  for (int c = 0; c < num_chunks; ++c) {
    const DeviceChunk& chunk = chunks[c];
    const int per_tile = chunk.num_tokens == 1 ? 1 : kPrefillQueries;
    for (int q = 0; q < chunk.num_tokens; q += per_tile) {
      const int n = std::min(per_tile, chunk.num_tokens - q);
      const int64_t last = chunk.start + q + n - 1;
      tiles.push_back({c, q, n, last / down_rate});
      total_slots += last / down_rate;
    }
  }
  const int64_t head_groups = CeilDiv(num_heads, kHeadsPerCta);
  // Slots per split: enough CTAs for about two per SM, never fewer than
  // min_split_slots per split, a multiple of the shared-memory tile.
  const int64_t target_ctas = 2LL * std::max(1, options.num_sms);
  int64_t split_slots = std::max<int64_t>(
      options.min_split_slots, CeilDiv(total_slots * head_groups, target_ctas));
  split_slots = CeilDiv(split_slots, kKvTile) * kKvTile;

  AttentionPlan plan;
  for (;;) {
    plan = AttentionPlan();
    bool fits = true;
    for (const Tile& tile : tiles) {
      int64_t splits = options.force_single_split
                           ? 1
                           : std::clamp<int64_t>(CeilDiv(tile.visible_slots, split_slots), 1,
                                                 kMaxSplits);
      int64_t len = splits == 1 ? tile.visible_slots
                                : CeilDiv(CeilDiv(tile.visible_slots, splits), kKvTile) * kKvTile;
      if (splits > 1) splits = CeilDiv(tile.visible_slots, len);
      AttentionWorkItem item;
      item.chunk = tile.chunk;
      item.first_query = tile.first_query;
      item.num_queries = tile.num_queries;
      item.num_splits = static_cast<int32_t>(splits);
      if (splits > 1) {
        item.partial_base = plan.num_partials;
        for (int q = 0; q < tile.num_queries; ++q) {
          plan.combine_items.push_back(
              {chunks[tile.chunk].token_offset + tile.first_query + q,
               static_cast<int32_t>(plan.num_partials + q * splits),
               static_cast<int32_t>(splits)});
        }
        plan.num_partials += static_cast<int>(tile.num_queries * splits);
        if (plan.num_partials > options.max_partials) {
          fits = false;
          break;
        }
      }
      auto& items = tile.num_queries == 1 && chunks[tile.chunk].num_tokens == 1
                        ? plan.decode_items
                        : plan.prefill_items;
      for (int64_t s = 0; s < splits; ++s) {
        item.split = static_cast<int32_t>(s);
        item.slot_begin = static_cast<int32_t>(s * len);
        item.slot_end = static_cast<int32_t>(std::min(tile.visible_slots, (s + 1) * len));
        if (splits == 1) {
          item.slot_begin = 0;
          item.slot_end = static_cast<int32_t>(tile.visible_slots);
        }
        items.push_back(item);
      }
    }
    if (fits) return plan;
    split_slots *= 2;  // fewer, longer splits until the partials fit
  }
}

}  // namespace mtla::cuda
