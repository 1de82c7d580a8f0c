#include "engine/model/backend_factory.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/backend_plugin_loader.h"
#include "engine/model/cpu_model_backend.h"
#include "engine/weights/safetensors.h"

namespace mtla {
namespace {

constexpr size_t kReasonBytes = 1024;

void LogChoice(std::string_view log_prefix, std::string_view line) {
  std::fprintf(stderr, "%.*s: %.*s\n", static_cast<int>(log_prefix.size()), log_prefix.data(),
               static_cast<int>(line.size()), line.data());
}

// The CUDA backend from the plugin, or why there is none.
absl::StatusOr<std::unique_ptr<ModelBackend>> CreateCudaBackend(const DecoderSpec& spec,
                                                                const SafetensorsFile& file,
                                                                const CacheOptions& cache,
                                                                const BackendChoice& choice) {
  ASSIGN_OR_RETURN(const MtlaBackendPluginV1* plugin, LoadCudaBackendPlugin());
  char reason[kReasonBytes] = {};
  if (int code = plugin->probe(reason, sizeof(reason)); code != 0) {
    return absl::FailedPreconditionError(reason);
  }
  MtlaBackendCreateArgs args{&spec, &file, &cache, choice.dtype.c_str(), choice.max_step_tokens};
  void* backend = nullptr;
  if (int code = plugin->create(&args, &backend, reason, sizeof(reason)); code != 0) {
    return absl::Status(static_cast<absl::StatusCode>(code), reason);
  }
  return std::unique_ptr<ModelBackend>(static_cast<ModelBackend*>(backend));
}

}  // namespace

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

bool CudaBackendInstalled() { return LoadCudaBackendPlugin().ok(); }

absl::Status CudaBackendAvailable() {
  ASSIGN_OR_RETURN(const MtlaBackendPluginV1* plugin, LoadCudaBackendPlugin());
  char reason[kReasonBytes] = {};
  if (plugin->probe(reason, sizeof(reason)) != 0) return absl::FailedPreconditionError(reason);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelBackend>> CreateModelBackend(const DecoderSpec& spec,
                                                                 const SafetensorsFile& file,
                                                                 const CacheOptions& cache,
                                                                 const BackendChoice& choice,
                                                                 std::string_view log_prefix) {
  RETURN_IF_ERROR(ValidateDtype(choice.dtype));
  if (choice.device != DeviceChoice::kCpu) {
    absl::StatusOr<std::unique_ptr<ModelBackend>> cuda =
        CreateCudaBackend(spec, file, cache, choice);
    if (cuda.ok()) {
      LogChoice(log_prefix, absl::StrCat("device ", choice.device == DeviceChoice::kAuto ? "auto" : "cuda",
                                         " -> ", std::string((*cuda)->name()), " (", choice.dtype, ")"));
      return cuda;
    }
    // Without a plugin, a device or a kernel for these dims, auto falls back
    // to the CPU and cuda is an error; any other failure (out of device
    // memory, a bad weight) is reported as it is.
    const absl::StatusCode code = cuda.status().code();
    const bool unusable = code == absl::StatusCode::kNotFound ||
                          code == absl::StatusCode::kFailedPrecondition ||
                          code == absl::StatusCode::kUnimplemented;
    if (!unusable) return cuda.status();
    if (choice.device == DeviceChoice::kCuda) {
      // UNIMPLEMENTED stays as it is: this model's dims have no CUDA kernel.
      return absl::Status(code == absl::StatusCode::kUnimplemented
                              ? code
                              : absl::StatusCode::kFailedPrecondition,
                          absl::StrCat("--device=cuda: ", cuda.status().message(),
                                       "; use --device=cpu or auto"));
    }
    LogChoice(log_prefix, absl::StrCat("device auto -> cpu (", cuda.status().message(), ")"));
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
