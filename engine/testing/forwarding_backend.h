// A ModelBackend that forwards every call to another one. Tests derive from it
// and override the calls they interfere with (a failure, a hang, a delay),
// then hand it to the server through ServerOptions::wrap_backend.
//
// Thread-safety: as the wrapped backend (engine thread only).
#ifndef MTLA_ENGINE_TESTING_FORWARDING_BACKEND_H_
#define MTLA_ENGINE_TESTING_FORWARDING_BACKEND_H_

#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/model/model_backend.h"

namespace mtla {

class ForwardingBackend : public ModelBackend {
 public:
  explicit ForwardingBackend(std::unique_ptr<ModelBackend> inner) : inner_(std::move(inner)) {}

  std::string_view name() const override { return inner_->name(); }
  const DecoderSpec& spec() const override { return inner_->spec(); }
  const KvCacheGeometry& cache_geometry() const override { return inner_->cache_geometry(); }
  int num_cache_blocks() const override { return inner_->num_cache_blocks(); }
  int cache_element_bytes() const override { return inner_->cache_element_bytes(); }
  absl::Status Health() const override { return inner_->Health(); }
  absl::Status CopyBlocks(const std::vector<BlockCopy>& copies) override {
    return inner_->CopyBlocks(copies);
  }
  absl::Status Forward(const StepPlan& plan, std::vector<float>* logits) override {
    return inner_->Forward(plan, logits);
  }
  absl::Status FillPrefix(const std::vector<BlockId>& block_table, int64_t start,
                          const float* rows, int64_t num_rows) override {
    return inner_->FillPrefix(block_table, start, rows, num_rows);
  }

 private:
  std::unique_ptr<ModelBackend> inner_;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_TESTING_FORWARDING_BACKEND_H_
