#include "engine/model/model_runner.h"

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace mtla {

ModelRunner::ModelRunner(std::unique_ptr<ModelBackend> backend)
    : backend_(std::move(backend)),
      cache_(backend_->cache_geometry(), backend_->num_cache_blocks()) {}

absl::Status ModelRunner::Step(absl::Span<const SequenceWork> work, std::vector<float>* logits) {
  const int vocab = backend_->spec().vocab_size;
  appends_.clear();
  for (const SequenceWork& w : work) {
    if (!cache_.contains(w.id)) {
      return absl::NotFoundError(absl::StrCat("sequence ", w.id, " is not in the cache"));
    }
    for (int32_t id : w.tokens) {
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", w.id, ": token id ", id,
                                                       " outside the vocabulary [0, ", vocab, ")"));
      }
    }
    appends_.emplace_back(w.id, static_cast<int>(w.tokens.size()));
  }
  const int needed = cache_.BlocksNeededToAppendAll(appends_);
  if (needed > cache_.num_free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat("step needs ", needed, " cache blocks, ",
                                                     cache_.num_free_blocks(), " free"));
  }
  StepPlan plan;
  copies_.clear();
  for (const SequenceWork& w : work) {
    const int64_t start = cache_.num_tokens(w.id);
    RETURN_IF_ERROR(cache_.Append(w.id, static_cast<int>(w.tokens.size()), &copies_));
    plan.Add(&cache_.block_table(w.id), start, w.tokens.data(), static_cast<int>(w.tokens.size()),
             w.want_logits, w.want_all_logits);
  }
  RETURN_IF_ERROR(backend_->CopyBlocks(copies_));
  return backend_->Forward(plan, logits);
}

absl::Status ModelRunner::FillPrefix(SequenceId id, const float* rows, int64_t num_rows) {
  if (!cache_.contains(id)) {
    return absl::NotFoundError(absl::StrCat("sequence ", id, " is not in the cache"));
  }
  const int64_t start = cache_.num_tokens(id);
  copies_.clear();
  RETURN_IF_ERROR(cache_.Append(id, static_cast<int>(num_rows), &copies_));
  RETURN_IF_ERROR(backend_->CopyBlocks(copies_));
  return backend_->FillPrefix(cache_.block_table(id), start, rows, num_rows);
}

int32_t ArgMax(const float* logits, int vocab) {
  int32_t best = 0;
  for (int i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

}  // namespace mtla
