// The host-side plan of one model step: which sequences take part, where their
// new tokens sit in the flat token arrays, and which rows need logits.
#ifndef MTLA_ENGINE_MODEL_STEP_PLAN_H_
#define MTLA_ENGINE_MODEL_STEP_PLAN_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/kv_cache/kv_cache_geometry.h"

namespace mtla {

struct StepSequence {
  const std::vector<BlockId>* block_table = nullptr;  // covers start + num_tokens tokens
  int64_t start = 0;        // tokens of this sequence already in the cache
  int num_tokens = 0;       // new tokens this step
  int64_t token_offset = 0; // first row in StepPlan::token_ids
};

struct StepPlan {
  std::vector<StepSequence> sequences;
  std::vector<int32_t> token_ids;   // [N]
  std::vector<int32_t> positions;   // [N] RoPE positions
  std::vector<int64_t> logit_rows;  // rows of [0, N) whose logits are wanted, in output order

  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  // Appends a sequence's new tokens with positions start, start + 1, ...
  void Add(const std::vector<BlockId>* block_table, int64_t start, const int32_t* ids, int count,
           bool want_last_logits, bool want_all_logits = false);
};

// What every backend checks before FillPrefix(block_table, start, rows): the
// prefix ends within `max_context_tokens` (OutOfRange) and the block table
// covers it (Internal: a scheduler bug).
absl::Status CheckPrefixFill(const KvCacheGeometry& geometry, int64_t max_context_tokens,
                             size_t block_table_size, int64_t start, int64_t num_rows);

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_STEP_PLAN_H_
