// The interface every compute backend implements for a decoder model: it owns
// the weights and the cache storage; the engine owns the block tables.
//
// Thread-safety: not thread-safe; called from the engine thread only.
#ifndef MTLA_ENGINE_MODEL_MODEL_BACKEND_H_
#define MTLA_ENGINE_MODEL_MODEL_BACKEND_H_

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/kv_cache/kv_cache_manager.h"
#include "engine/model/decoder_spec.h"
#include "engine/model/step_plan.h"

namespace mtla {

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  virtual std::string_view name() const = 0;
  virtual const DecoderSpec& spec() const = 0;
  virtual const KvCacheGeometry& cache_geometry() const = 0;
  virtual int num_cache_blocks() const = 0;
  // Bytes one cache element takes in this backend's storage.
  virtual int cache_element_bytes() const = 0;
  // OK while the backend can run steps. Not OK, for good, once it cannot (a
  // sticky device error: every later call would fail too); the process must
  // then be restarted. Cheap enough to ask after every step.
  virtual absl::Status Health() const { return absl::OkStatus(); }

  // Copies whole blocks (all layers), in order. Run before a step that writes them.
  virtual absl::Status CopyBlocks(const std::vector<BlockCopy>& copies) = 0;
  // Runs the decoder for every token of `plan`, writing the tokens into the
  // cache, and returns logits [plan.logit_rows.size(), vocab] in `logits`.
  virtual absl::Status Forward(const StepPlan& plan, std::vector<float>* logits) = 0;
  // Writes keys without queries (the speech prefix) for sequence positions
  // [start, start + num_rows) into every layer's cache; each layer's wkv_a sees
  // the same rows [num_rows, hidden_size]. RoPE positions are the sequence
  // positions. `block_table` must cover start + num_rows tokens.
  virtual absl::Status FillPrefix(const std::vector<BlockId>& block_table, int64_t start,
                                  const float* rows, int64_t num_rows) = 0;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_MODEL_BACKEND_H_
