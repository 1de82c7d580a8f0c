#include "engine/model/backend_factory.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/cpu_model_backend.h"
#include "engine/weights/safetensors.h"

#ifdef MTLA_HAVE_CUDA
#include "engine/model/cuda_model_backend.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/mtla_attention.h"
#endif

namespace mtla {

absl::StatusOr<DeviceChoice> ParseDeviceChoice(std::string_view name) {
  if (name == "auto") return DeviceChoice::kAuto;
  if (name == "cpu") return DeviceChoice::kCpu;
  if (name == "cuda") return DeviceChoice::kCuda;
  return absl::InvalidArgumentError(
      absl::StrCat("--device: expected auto, cpu or cuda, got '", std::string(name), "'"));
}

absl::Status ValidateDtype(std::string_view dtype) {
  if (dtype == "fp32" || dtype == "bf16" || dtype == "fp16") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--dtype: expected fp32, bf16 or fp16, got '", std::string(dtype), "'"));
}

bool CudaBackendCompiled() {
#ifdef MTLA_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

absl::Status CudaBackendAvailable() {
#ifdef MTLA_HAVE_CUDA
  return cuda::UsableDeviceCount().status();
#else
#ifdef MTLA_FACTORY_WITHOUT_CUDA
  return absl::FailedPreconditionError(
      "this mtla-server is built without the CUDA backend (CMake MTLA_SERVER_CUDA=OFF)");
#else
  return absl::FailedPreconditionError("this build has no CUDA backend (built without nvcc)");
#endif
#endif
}

absl::StatusOr<std::unique_ptr<ModelBackend>> CreateModelBackend(const DecoderSpec& spec,
                                                                 const SafetensorsFile& file,
                                                                 const CacheOptions& cache,
                                                                 const BackendChoice& choice,
                                                                 std::string_view log_prefix) {
  RETURN_IF_ERROR(ValidateDtype(choice.dtype));
  if (choice.device != DeviceChoice::kCpu) {
    absl::Status usable = CudaBackendAvailable();
#ifdef MTLA_HAVE_CUDA
    if (usable.ok() && !cuda::MtlaAttentionSupports(spec.attention.kv_lora_rank,
                                                    spec.attention.qk_rope_head_dim)) {
      usable = absl::UnimplementedError(absl::StrCat(
          "no CUDA attention kernel for kv_lora_rank ", spec.attention.kv_lora_rank,
          " with qk_rope_head_dim ", spec.attention.qk_rope_head_dim));
    }
    if (usable.ok()) {
      CudaBackendOptions options;
      options.dtype = *cuda::ParseDType(choice.dtype);
      options.max_step_tokens = choice.max_step_tokens;
      ASSIGN_OR_RETURN(std::unique_ptr<CudaModelBackend> backend,
                       CudaModelBackend::Create(spec, file, cache, options));
      std::fprintf(stderr, "%.*s: device %s -> %.*s\n", static_cast<int>(log_prefix.size()),
                   log_prefix.data(), choice.device == DeviceChoice::kAuto ? "auto" : "cuda",
                   static_cast<int>(backend->name().size()), backend->name().data());
      return std::unique_ptr<ModelBackend>(std::move(backend));
    }
#endif
    if (choice.device == DeviceChoice::kCuda) {
      return absl::FailedPreconditionError(
          absl::StrCat("--device=cuda: ", usable.message(), "; use --device=cpu or auto"));
    }
    std::fprintf(stderr, "%.*s: device auto -> cpu (%.*s)\n", static_cast<int>(log_prefix.size()),
                 log_prefix.data(), static_cast<int>(usable.message().size()),
                 usable.message().data());
  }
  ASSIGN_OR_RETURN(std::unique_ptr<CpuModelBackend> backend,
                   CpuModelBackend::Create(spec, file, cache));
  return std::unique_ptr<ModelBackend>(std::move(backend));
}

absl::StatusOr<LoadedModel> LoadLlamaMtla(const std::string& dir, const CacheOptions& cache,
                                          const BackendChoice& choice,
                                          std::string_view log_prefix) {
  LoadedModel model;
  ASSIGN_OR_RETURN(model.config, LoadLlamaMtlaConfig(dir + "/config.json"));
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                   SafetensorsFile::Open(dir + "/model.safetensors"));
  ASSIGN_OR_RETURN(model.backend, CreateModelBackend(LlamaMtlaDecoderSpec(model.config), *file,
                                                     cache, choice, log_prefix));
  return model;
}

}  // namespace mtla
