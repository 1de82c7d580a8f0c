// How stable an interim hypothesis is: the measure SegmentResult.stability
// reports (proto/mtla/v1/speech_translation.proto).
#ifndef MTLA_ENGINE_STREAMING_INTERIM_STABILITY_H_
#define MTLA_ENGINE_STREAMING_INTERIM_STABILITY_H_

#include <cstdint>
#include <vector>

namespace mtla {

// The fraction, in [0, 1], of `current`'s tokens that form the same prefix as
// `previous` (the segment's interim before it) had, a trailing `eos` excluded
// from both. 0 when `current` has no token but `eos` (nothing to keep) or
// when there is no previous interim (`previous` empty).
float InterimStability(const std::vector<int32_t>& previous, const std::vector<int32_t>& current,
                       int32_t eos);

}  // namespace mtla

#endif  // MTLA_ENGINE_STREAMING_INTERIM_STABILITY_H_
