// Temporary file names that no two test processes share.
//
// ctest runs every discovered gtest case as its own process, several at once,
// so a fixed name under the temp directory is written by one case while another
// has it mapped (SIGBUS) or open. UniqueTempPath names a path that is unique
// per process and per call; the caller creates and removes the file.
#ifndef MTLA_ENGINE_TESTING_UNIQUE_TEMP_PATH_H_
#define MTLA_ENGINE_TESTING_UNIQUE_TEMP_PATH_H_

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <string_view>

namespace mtla {

// <temp dir>/<stem>_<pid>_<n><suffix>; n counts calls in this process.
inline std::string UniqueTempPath(std::string_view stem, std::string_view suffix = "") {
  static std::atomic<int> counter{0};
  std::string name(stem);
  name += "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  name += suffix;
  return (std::filesystem::temp_directory_path() / name).string();
}

}  // namespace mtla

#endif  // MTLA_ENGINE_TESTING_UNIQUE_TEMP_PATH_H_
