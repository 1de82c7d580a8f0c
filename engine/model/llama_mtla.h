// Loading a LlamaMTLA checkpoint directory (config.json + model.safetensors,
// DESIGN.md section 2, family 1) onto a backend.
#ifndef MTLA_ENGINE_MODEL_LLAMA_MTLA_H_
#define MTLA_ENGINE_MODEL_LLAMA_MTLA_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/config/model_config.h"
#include "engine/model/model_backend.h"

namespace mtla {

struct CacheOptions {
  int block_slots = 16;                  // slots per block
  size_t memory_bytes = 256u << 20;      // cache budget; sets the number of blocks
  int num_blocks = 0;                    // > 0: exactly this many blocks (overrides memory_bytes)
  int max_context_tokens = 0;            // 0: the model's max_position_embeddings
};

struct LoadedModel {
  LlamaMtlaConfig config;
  std::unique_ptr<ModelBackend> backend;
};

// Loads `dir` onto the CPU backend. Errors name the file and the tensor/field.
absl::StatusOr<LoadedModel> LoadLlamaMtlaCpu(const std::string& dir, const CacheOptions& options);

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_LLAMA_MTLA_H_
