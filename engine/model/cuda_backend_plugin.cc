// libmtla_cuda_backend.so: the CUDA backend behind the plugin entry point of
// backend_plugin_abi.h. Everything but the entry point is hidden.
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/model/backend_plugin_abi.h"
#include "engine/model/backend_plugin_build_id.h"
#include "engine/model/cuda_model_backend.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/mtla_attention.h"

namespace mtla {
namespace {

int Report(const absl::Status& status, char* reason, size_t reason_size) {
  if (reason != nullptr && reason_size > 0) {
    std::snprintf(reason, reason_size, "%s", std::string(status.message()).c_str());
  }
  return static_cast<int>(status.code());
}

int Probe(char* reason, size_t reason_size) {
  try {
    absl::StatusOr<int> devices = cuda::UsableDeviceCount();
    return devices.ok() ? 0 : Report(devices.status(), reason, reason_size);
  } catch (const std::exception& e) {
    return Report(absl::InternalError(e.what()), reason, reason_size);
  }
}

int Create(const MtlaBackendCreateArgs* args, void** backend, char* reason, size_t reason_size) {
  try {
    const auto& spec = *static_cast<const DecoderSpec*>(args->spec);
    const auto& weights = *static_cast<const SafetensorsFile*>(args->weights);
    const auto& cache = *static_cast<const CacheOptions*>(args->cache);
    if (!cuda::MtlaAttentionSupports(spec.attention.kv_lora_rank,
                                     spec.attention.qk_rope_head_dim)) {
      return Report(absl::UnimplementedError(absl::StrCat(
                        "no CUDA attention kernel for kv_lora_rank ", spec.attention.kv_lora_rank,
                        " with qk_rope_head_dim ", spec.attention.qk_rope_head_dim)),
                    reason, reason_size);
    }
    std::optional<cuda::DType> dtype = cuda::ParseDType(args->dtype);
    if (!dtype.has_value()) {
      return Report(absl::InvalidArgumentError(absl::StrCat("--dtype: unknown '", args->dtype, "'")),
                    reason, reason_size);
    }
    CudaBackendOptions options;
    options.dtype = *dtype;
    options.max_step_tokens = args->max_step_tokens;
    absl::StatusOr<std::unique_ptr<CudaModelBackend>> created =
        CudaModelBackend::Create(spec, weights, cache, options);
    if (!created.ok()) return Report(created.status(), reason, reason_size);
    *backend = static_cast<ModelBackend*>(created->release());
    return 0;
  } catch (const std::exception& e) {
    return Report(absl::InternalError(absl::StrCat("CUDA backend: ", e.what())), reason,
                  reason_size);
  }
}

const MtlaBackendPluginV1 kPlugin = {
    MTLA_BACKEND_PLUGIN_ABI_VERSION, sizeof(MtlaBackendPluginV1), MTLA_BACKEND_PLUGIN_BUILD_ID,
    "cuda", &Probe, &Create,
};

}  // namespace
}  // namespace mtla

extern "C" __attribute__((visibility("default"))) const MtlaBackendPluginV1*
mtla_backend_plugin_v1(void) {
  return &mtla::kPlugin;
}
