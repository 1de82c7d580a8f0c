#include "engine/streaming/interim_stability.h"

#include <algorithm>

namespace mtla {
namespace {

size_t WithoutEos(const std::vector<int32_t>& tokens, int32_t eos) {
  return !tokens.empty() && tokens.back() == eos ? tokens.size() - 1 : tokens.size();
}

}  // namespace

float InterimStability(const std::vector<int32_t>& previous, const std::vector<int32_t>& current,
                       int32_t eos) {
  const size_t n = WithoutEos(current, eos);
  if (n == 0) return 0.0f;
  const size_t limit = std::min(n, WithoutEos(previous, eos));
  size_t same = 0;
  while (same < limit && previous[same] == current[same]) ++same;
  return static_cast<float>(same) / static_cast<float>(n);
}

}  // namespace mtla
