// Paged MTLA attention in absorbed form on the device (DESIGN.md s.1), the
// CUDA counterpart of cpu::MtlaAttention with identical semantics: the query
// token at sequence position t sees the complete slots 0 .. t/s - 1 from the
// cache and its own partial row; score = (q . [latent | k_pe]) * scale; the
// output per head is sum_j p_j * latent_j (width r). Values are the latents,
// so each cache row is read once for keys and values.
//
// One kernel serves decode and the stride-aware causal prefill: a work item is
// a tile of consecutive query tokens of one sequence (1 token for decode, up
// to kPrefillQueries for prefill chunks) x a range of cache slots (a split).
// Long contexts and small batches are split over several CTAs
// (flash-decoding); a combine kernel merges the splits' partial softmax sums.
// The plan is built on the host (MtlaAttentionPlanner), uploaded into buffers
// allocated once, and the kernels allocate nothing.
#ifndef MTLA_KERNELS_CUDA_MTLA_ATTENTION_H_
#define MTLA_KERNELS_CUDA_MTLA_ATTENTION_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cuda/mtla_paged.h"

namespace mtla::cuda {

inline constexpr int kHeadsPerCta = 8;     // one warp per head
inline constexpr int kKvTile = 16;         // cache slots staged in shared memory at once
inline constexpr int kPrefillQueries = 4;  // query tokens per prefill work item
inline constexpr int kMaxSplits = 64;      // splits of one work item

// (r, dR) pairs the attention kernels are compiled for.
bool MtlaAttentionSupports(int kv_lora_rank, int rope_dim);

struct AttentionWorkItem {
  int32_t chunk = 0;        // index into the step's chunks
  int32_t first_query = 0;  // first query token, counted within the chunk
  int32_t num_queries = 0;  // 1 .. kPrefillQueries
  int32_t split = 0;
  int32_t num_splits = 1;
  int32_t slot_begin = 0;  // cache slots [slot_begin, slot_end) of this split
  int32_t slot_end = 0;
  // num_splits > 1: query q's partial for this split is at
  // partial_base + q * num_splits + split.
  int32_t partial_base = 0;
};

struct AttentionCombineItem {
  int64_t row = 0;  // token row of the step
  int32_t partial_base = 0;
  int32_t num_splits = 0;
};

// The host plan of one attention call.
struct AttentionPlan {
  std::vector<AttentionWorkItem> decode_items;   // one query each
  std::vector<AttentionWorkItem> prefill_items;  // up to kPrefillQueries each
  std::vector<AttentionCombineItem> combine_items;
  int num_partials = 0;
};

struct AttentionPlanOptions {
  int num_sms = 132;           // the device's multiprocessors
  int max_partials = 1 << 14;  // capacity of the partial-result workspace
  int min_split_slots = 64;    // no split reads fewer slots than this (unless it is the only one)
  bool force_single_split = false;
};

// Builds the work list for `chunks` (host copies). Deterministic for a given
// input. Splits are sized so that the grid holds about two CTAs per SM and
// the partials fit options.max_partials.
AttentionPlan BuildAttentionPlan(const DeviceChunk* chunks, int num_chunks, int down_rate,
                                 int num_heads, const AttentionPlanOptions& options);

// Device pointers. q, partial_rows, out and the workspaces are float32.
struct MtlaAttentionParams {
  CacheView cache;
  const int32_t* block_tables = nullptr;
  const DeviceChunk* chunks = nullptr;
  int down_rate = 1;
  int num_heads = 0;
  const float* q = nullptr;             // [N, H, r + dR]: [q_nope W_UK | q_pe]
  const float* partial_rows = nullptr;  // [N, r + dR] from MtlaAppend
  float scale = 1.0f;
  float* out = nullptr;            // [N, H, r]
  float* partial_out = nullptr;    // [max_partials, H, r]
  float* partial_stats = nullptr;  // [max_partials, H, 2]: running max, sum
};

// Device copies of a plan's arrays (same order as AttentionPlan).
struct AttentionPlanDevice {
  const AttentionWorkItem* decode_items = nullptr;
  int num_decode = 0;
  const AttentionWorkItem* prefill_items = nullptr;
  int num_prefill = 0;
  const AttentionCombineItem* combine_items = nullptr;
  int num_combine = 0;
};

// Preconditions: MtlaAppend ran for this step (the cache holds every complete
// slot a query sees and partial_rows every token's own row);
// MtlaAttentionSupports(r, dR). Unused cache rows may hold anything (NaN):
// they are never read.
absl::Status MtlaAttention(const MtlaAttentionParams& p, const AttentionPlanDevice& plan,
                           cudaStream_t stream);

// Bytes of dynamic shared memory one CTA of the decode / prefill kernel needs.
size_t MtlaAttentionSharedBytes(int kv_lora_rank, int rope_dim, int queries);

}  // namespace mtla::cuda

#endif  // MTLA_KERNELS_CUDA_MTLA_ATTENTION_H_
