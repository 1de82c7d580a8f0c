#include "engine/model/step_plan.h"

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

}  // namespace mtla
