// Chooses and builds the compute backend for a decoder: `--device
// auto|cpu|cuda` and `--dtype fp32|bf16|fp16` (CUDA storage dtype).
//
//   cpu   the CPU backend.
//   cuda  the CUDA backend (the plugin of backend_plugin_abi.h, loaded on
//         first use); FailedPrecondition when the plugin is not installed or
//         cannot load, or no device can be used; Unimplemented when the
//         model's dims have no CUDA kernel (the reason is in the message).
//   auto  CUDA when the plugin loads, a device is found and the model's dims
//         have compiled kernels; otherwise CPU, with the reason logged to
//         stderr. The CPU choice never loads the plugin.
#ifndef MTLA_ENGINE_MODEL_BACKEND_FACTORY_H_
#define MTLA_ENGINE_MODEL_BACKEND_FACTORY_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/model/cache_options.h"
#include "engine/model/decoder_spec.h"
#include "engine/model/llama_mtla.h"
#include "engine/model/model_backend.h"
#include "engine/weights/safetensors.h"

namespace mtla {

enum class DeviceChoice { kAuto, kCpu, kCuda };

struct BackendChoice {
  DeviceChoice device = DeviceChoice::kAuto;
  std::string dtype = "bf16";  // CUDA storage: fp32 | bf16 | fp16 (the CPU is always fp32)
  int max_step_tokens = 4096;  // CUDA workspace size, in tokens per step
};

// "auto" | "cpu" | "cuda"; InvalidArgument naming the flag otherwise.
absl::StatusOr<DeviceChoice> ParseDeviceChoice(std::string_view name);
// InvalidArgument naming the flag when `dtype` is not fp32, bf16 or fp16.
absl::Status ValidateDtype(std::string_view dtype);

// Whether the CUDA backend plugin is installed and loads (it is then loaded;
// see backend_plugin_loader.h).
bool CudaBackendInstalled();
// OK when the CUDA backend can run here; otherwise why not ("this
// installation has no CUDA backend ...", "cudaGetDeviceCount: ...").
absl::Status CudaBackendAvailable();

// Builds the chosen backend for `spec` from `file`. `log_prefix` starts the
// stderr line that reports an automatic fallback to the CPU.
absl::StatusOr<std::unique_ptr<ModelBackend>> CreateModelBackend(const DecoderSpec& spec,
                                                                 const SafetensorsFile& file,
                                                                 const CacheOptions& cache,
                                                                 const BackendChoice& choice,
                                                                 std::string_view log_prefix);

// LoadLlamaMtlaCpu on the chosen backend.
absl::StatusOr<LoadedModel> LoadLlamaMtla(const std::string& dir, const CacheOptions& cache,
                                          const BackendChoice& choice,
                                          std::string_view log_prefix);

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_BACKEND_FACTORY_H_
