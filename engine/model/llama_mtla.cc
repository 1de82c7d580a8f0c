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
  DecoderSpec spec = LlamaMtlaDecoderSpec(model.config);
  if (options.max_context_tokens > 0) spec.max_context_tokens = options.max_context_tokens;
  KvCacheGeometry geometry;
  geometry.num_layers = spec.num_layers;
  geometry.kv_lora_rank = spec.attention.kv_lora_rank;
  geometry.rope_dim = spec.attention.qk_rope_head_dim;
  geometry.down_rate = spec.attention.down_rate;
  geometry.block_slots = options.block_slots;
  const size_t block_bytes = geometry.BlockElements() * sizeof(float);
  const int num_blocks = options.num_blocks > 0
                             ? options.num_blocks
                             : static_cast<int>(options.memory_bytes / block_bytes);
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("cache budget of ", options.memory_bytes,
                                                   " bytes holds no block of ", block_bytes,
                                                   " bytes"));
  }
  ASSIGN_OR_RETURN(model.backend,
                   CpuModelBackend::Create(spec, *file, num_blocks, options.block_slots));
  return model;
}

}  // namespace mtla
