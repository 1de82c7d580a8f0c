// Runs model steps for a batch of sequences at different positions: extends
// each sequence's block table (copy-on-write included), copies blocks, builds
// the step plan and calls the backend.
//
// Thread-safety: not thread-safe; owned by the engine thread.
#ifndef MTLA_ENGINE_MODEL_MODEL_RUNNER_H_
#define MTLA_ENGINE_MODEL_MODEL_RUNNER_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/kv_cache/kv_cache_manager.h"
#include "engine/model/model_backend.h"

namespace mtla {

// One sequence's share of a step.
struct SequenceWork {
  SequenceId id = 0;
  absl::Span<const int32_t> tokens;  // new tokens, appended after the cached ones
  bool want_logits = true;           // logits of the last new token
  bool want_all_logits = false;      // logits of every new token (prompt scoring)
};

class ModelRunner {
 public:
  explicit ModelRunner(std::unique_ptr<ModelBackend> backend);

  ModelBackend& backend() { return *backend_; }
  KvCacheManager& cache() { return cache_; }
  const KvCacheManager& cache() const { return cache_; }

  // Runs one step. `logits` receives the wanted rows in `work` order,
  // [rows, vocab]. Every sequence must already exist in cache(). Fails with
  // ResourceExhausted (cache too small) or InvalidArgument (token id outside
  // the vocabulary), changing nothing in either case. After any other failure
  // the step's sequences are in an undefined state and must be freed.
  absl::Status Step(absl::Span<const SequenceWork> work, std::vector<float>* logits);
  // Appends `num_rows` keys-only positions (the speech prefix, rows
  // [num_rows, hidden_size]) to sequence `id`. ResourceExhausted, changing
  // nothing, when the cache cannot hold them.
  absl::Status FillPrefix(SequenceId id, const float* rows, int64_t num_rows);

 private:
  std::unique_ptr<ModelBackend> backend_;
  KvCacheManager cache_;
  std::vector<BlockCopy> copies_;
  std::vector<std::pair<SequenceId, int>> appends_;
};

// Index of the largest logit (the first one on ties).
int32_t ArgMax(const float* logits, int vocab);

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_MODEL_RUNNER_H_
