#include "engine/model/step_plan.h"

#include "absl/strings/str_cat.h"

namespace mtla {

void StepPlan::Add(const std::vector<BlockId>* block_table, int64_t start, const int32_t* ids,
                   int count, bool want_last_logits, bool want_all_logits) {
  StepSequence seq;
  seq.block_table = block_table;
  seq.start = start;
  seq.num_tokens = count;
  seq.token_offset = num_tokens();
  for (int i = 0; i < count; ++i) {
    token_ids.push_back(ids[i]);
    positions.push_back(static_cast<int32_t>(start + i));
    if (want_all_logits || (want_last_logits && i == count - 1)) {
      logit_rows.push_back(seq.token_offset + i);
    }
  }
  sequences.push_back(seq);
}

absl::Status CheckPrefixFill(const KvCacheGeometry& geometry, int64_t max_context_tokens,
                             size_t block_table_size, int64_t start, int64_t num_rows) {
  if (start + num_rows > max_context_tokens) {
    return absl::OutOfRangeError(absl::StrCat("prefix reaches ", start + num_rows,
                                              " tokens; the model serves at most ",
                                              max_context_tokens));
  }
  if (static_cast<int64_t>(block_table_size) * geometry.block_slots <
      geometry.SlotsForTokens(start + num_rows)) {
    return absl::InternalError("prefix: block table does not cover the prefix");
  }
  return absl::OkStatus();
}

}  // namespace mtla
