// Loading a LlamaMTLA checkpoint directory (config.json + model.safetensors,
// DESIGN.md section 2, family 1) onto a backend.
#ifndef MTLA_ENGINE_MODEL_LLAMA_MTLA_H_
#define MTLA_ENGINE_MODEL_LLAMA_MTLA_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/config/model_config.h"
#include "engine/model/cache_options.h"
#include "engine/model/model_backend.h"

namespace mtla {

struct LoadedModel {
  LlamaMtlaConfig config;
  std::unique_ptr<ModelBackend> backend;
};

// Loads `dir` onto the CPU backend. Errors name the file and the tensor/field.
absl::StatusOr<LoadedModel> LoadLlamaMtlaCpu(const std::string& dir, const CacheOptions& options);

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_LLAMA_MTLA_H_
