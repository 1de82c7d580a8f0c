#include "engine/model/backend_plugin_loader.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/common/plugin_search_path.h"
#include "absl/strings/str_join.h"
#include "engine/model/backend_plugin_build_id.h"

namespace mtla {
namespace {

absl::StatusOr<const MtlaBackendPluginV1*> Load() {
  const std::vector<std::string> candidates = CudaBackendPluginSearchPath();
  std::string path;
  for (const std::string& candidate : candidates) {
    std::error_code error;
    if (std::filesystem::is_regular_file(candidate, error)) {
      path = candidate;
      break;
    }
  }
  if (path.empty()) {
    return absl::NotFoundError(absl::StrCat("this installation has no CUDA backend (",
                                            kCudaBackendPluginFile, " not found in ",
                                            absl::StrJoin(candidates, ", "), ")"));
  }
  // RTLD_LOCAL: the plugin's symbols stay its own. The handle is kept for
  // the life of the process (objects and code of the plugin outlive any
  // scope that could close it).
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load the CUDA backend ", path, ": ", dlerror()));
  }
  auto entry =
      reinterpret_cast<MtlaBackendPluginEntry>(dlsym(handle, MTLA_BACKEND_PLUGIN_ENTRY_SYMBOL));
  const MtlaBackendPluginV1* plugin = entry != nullptr ? entry() : nullptr;
  if (plugin == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": not an MTLA backend plugin (no ", MTLA_BACKEND_PLUGIN_ENTRY_SYMBOL, ")"));
  }
  if (plugin->abi_version != MTLA_BACKEND_PLUGIN_ABI_VERSION ||
      plugin->struct_size < sizeof(MtlaBackendPluginV1) || plugin->build_id == nullptr ||
      std::strcmp(plugin->build_id, MTLA_BACKEND_PLUGIN_BUILD_ID) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": the CUDA backend comes from another build (plugin ABI ", plugin->abi_version,
        ", build ", plugin->build_id == nullptr ? "?" : plugin->build_id, "; this server: ABI ",
        MTLA_BACKEND_PLUGIN_ABI_VERSION, ", build ", MTLA_BACKEND_PLUGIN_BUILD_ID,
        "); install the plugin built with this binary"));
  }
  return plugin;
}

}  // namespace

#ifndef MTLA_CUDA_BACKEND_PLUGIN_BUILD_PATH
#define MTLA_CUDA_BACKEND_PLUGIN_BUILD_PATH ""  // not in a build tree
#endif

std::vector<std::string> CudaBackendPluginSearchPath() {
  return PluginSearchPath("MTLA_CUDA_BACKEND_PLUGIN", kCudaBackendPluginFile,
                          MTLA_CUDA_BACKEND_PLUGIN_BUILD_PATH);
}

absl::StatusOr<const MtlaBackendPluginV1*> LoadCudaBackendPlugin() {
  static const absl::StatusOr<const MtlaBackendPluginV1*>* const loaded =
      new absl::StatusOr<const MtlaBackendPluginV1*>(Load());
  return *loaded;
}

}  // namespace mtla
