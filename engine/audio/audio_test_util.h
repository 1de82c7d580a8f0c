// Helpers shared by the audio front-end tests (test-only header).
#ifndef MTLA_ENGINE_AUDIO_AUDIO_TEST_UTIL_H_
#define MTLA_ENGINE_AUDIO_AUDIO_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

namespace mtla::audio::testing {

inline std::filesystem::path TestdataDir() { return std::filesystem::path(MTLA_TESTDATA_DIR); }

// Sorted files with extension `ext` directly under TestdataDir()/sub; empty
// when the folder is absent.
inline std::vector<std::filesystem::path> TestdataFiles(const std::string& sub,
                                                        const std::string& ext) {
  std::vector<std::filesystem::path> files;
  const std::filesystem::path dir = TestdataDir() / sub;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ext) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// max|out - ref| / max|ref|; infinity on a size mismatch or NaN.
inline double MaxRelativeError(const std::vector<float>& out, const std::vector<float>& ref) {
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (std::isnan(out[i])) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, std::abs(static_cast<double>(out[i]) - ref[i]));
    scale = std::max(scale, std::abs(static_cast<double>(ref[i])));
  }
  if (scale == 0.0) return diff == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return diff / scale;
}

}  // namespace mtla::audio::testing

#endif  // MTLA_ENGINE_AUDIO_AUDIO_TEST_UTIL_H_
