// Finds and loads the CUDA backend plugin (backend_plugin_abi.h) once per
// process. The module is looked for, in order, at $MTLA_CUDA_BACKEND_PLUGIN
// (a file), next to the executable, in ../lib/mtla/ beside the executable,
// and where this build tree puts it. It is never unloaded.
//
// Thread-safety: thread-safe (the first call loads; later calls return the
// same answer).
#ifndef MTLA_ENGINE_MODEL_BACKEND_PLUGIN_LOADER_H_
#define MTLA_ENGINE_MODEL_BACKEND_PLUGIN_LOADER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/backend_plugin_abi.h"

namespace mtla {

inline constexpr char kCudaBackendPluginFile[] = "libmtla_cuda_backend.so";

// The candidate paths, in search order.
std::vector<std::string> CudaBackendPluginSearchPath();

// The loaded plugin. NotFound when no candidate exists ("this installation
// has no CUDA backend"); FailedPrecondition when one exists but cannot be
// loaded (a CUDA runtime library missing: the dlopen error says which) or is
// from another build.
absl::StatusOr<const MtlaBackendPluginV1*> LoadCudaBackendPlugin();

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_BACKEND_PLUGIN_LOADER_H_
