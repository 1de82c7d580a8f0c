// Random paged-cache layouts for the MTLA kernel tests: each sequence gets
// the blocks its tokens need, taken from a shuffled pool that also holds
// unused blocks, so that a kernel following the wrong block or reading past
// a sequence's slots meets NaN.
#ifndef MTLA_TESTS_CUDA_PAGED_TEST_LAYOUT_H_
#define MTLA_TESTS_CUDA_PAGED_TEST_LAYOUT_H_

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/mtla_cpu.h"
#include "kernels/cuda/mtla_paged.h"

namespace mtla::cuda::testing {

struct SequenceSpec {
  int64_t start = 0;   // tokens already cached
  int num_tokens = 0;  // new tokens of the step
};

struct PagedLayout {
  int num_blocks = 0;
  int64_t num_tokens = 0;               // N: rows of the step
  std::vector<int32_t> block_tables;    // flat, per sequence at chunks[i].block_table_offset
  std::vector<DeviceChunk> chunks;
  std::vector<cpu::SequenceChunk> cpu_chunks;  // point into block_tables
};

inline PagedLayout MakePagedLayout(const std::vector<SequenceSpec>& seqs, int down_rate,
                                   int block_slots, int spare_blocks, std::mt19937& rng) {
  PagedLayout layout;
  std::vector<int> blocks_per_seq;
  int total = 0;
  for (const SequenceSpec& seq : seqs) {
    const int64_t slots = (seq.start + seq.num_tokens + down_rate - 1) / down_rate;
    const int blocks = static_cast<int>((slots + block_slots - 1) / block_slots);
    blocks_per_seq.push_back(blocks);
    total += blocks;
  }
  layout.num_blocks = total + spare_blocks;
  std::vector<int32_t> ids(layout.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  int next = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    DeviceChunk chunk;
    chunk.start = seqs[i].start;
    chunk.num_tokens = seqs[i].num_tokens;
    chunk.token_offset = layout.num_tokens;
    chunk.block_table_offset = static_cast<int32_t>(layout.block_tables.size());
    for (int b = 0; b < blocks_per_seq[i]; ++b) layout.block_tables.push_back(ids[next++]);
    layout.chunks.push_back(chunk);
    layout.num_tokens += seqs[i].num_tokens;
  }
  for (const DeviceChunk& chunk : layout.chunks) {
    layout.cpu_chunks.push_back({layout.block_tables.data() + chunk.block_table_offset, chunk.start,
                                 chunk.num_tokens, chunk.token_offset});
  }
  return layout;
}

// Element offset of a sequence's slot in one layer's pool.
inline int64_t SlotOffset(const PagedLayout& layout, size_t seq, int64_t slot, int block_slots,
                          int width) {
  const int32_t block = layout.block_tables[layout.chunks[seq].block_table_offset +
                                            slot / block_slots];
  return (static_cast<int64_t>(block) * block_slots + slot % block_slots) * width;
}

}  // namespace mtla::cuda::testing

#endif  // MTLA_TESTS_CUDA_PAGED_TEST_LAYOUT_H_
