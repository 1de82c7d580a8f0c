#include "engine/model/llama_mtla.h"

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/cpu_model_backend.h"
#include "engine/weights/safetensors.h"

namespace mtla {

absl::StatusOr<LoadedModel> LoadLlamaMtlaCpu(const std::string& dir, const CacheOptions& options) {
  LoadedModel model;
  ASSIGN_OR_RETURN(model.config, LoadLlamaMtlaConfig(dir + "/config.json"));
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                   SafetensorsFile::Open(dir + "/model.safetensors"));
  ASSIGN_OR_RETURN(model.backend,
                   CpuModelBackend::Create(LlamaMtlaDecoderSpec(model.config), *file, options));
  return model;
}

}  // namespace mtla
