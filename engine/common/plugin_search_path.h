// Where the project's plugins (shared libraries the process loads at run time:
// the CUDA backend, the SentencePiece tokenizer) are looked for.
#ifndef MTLA_ENGINE_COMMON_PLUGIN_SEARCH_PATH_H_
#define MTLA_ENGINE_COMMON_PLUGIN_SEARCH_PATH_H_

#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace mtla {

// The candidates, in order: only `$env_var` when it is set and non-empty (an
// explicit choice is the only candidate); else `file_name` next to the
// executable, then in <executable dir>/../lib/mtla/ (an installed tree), then
// `build_path` when non-empty (the build tree). The caller takes the first
// that exists.
inline std::vector<std::string> PluginSearchPath(const char* env_var, std::string_view file_name,
                                                 std::string_view build_path) {
  std::vector<std::string> paths;
  if (const char* env = std::getenv(env_var); env != nullptr && *env != '\0') {
    paths.push_back(env);
    return paths;
  }
  std::error_code error;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    const std::string dir = exe.parent_path().string();
    paths.push_back(dir + "/" + std::string(file_name));
    paths.push_back(dir + "/../lib/mtla/" + std::string(file_name));
  }
  if (!build_path.empty()) paths.emplace_back(build_path);
  return paths;
}

}  // namespace mtla

#endif  // MTLA_ENGINE_COMMON_PLUGIN_SEARCH_PATH_H_
