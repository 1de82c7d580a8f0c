// Cepstral mean and variance normalisation of feature matrices (row-major
// [frames, dim]), as fairseq's speech-to-text feature transforms compute it.
#ifndef MTLA_ENGINE_AUDIO_CMVN_H_
#define MTLA_ENGINE_AUDIO_CMVN_H_

#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mtla::audio {

// fairseq's UtteranceCMVN (norm_means and norm_vars): per dimension, over the
// utterance's frames, mean = E[x], std = sqrt(max(E[x^2] - mean^2, 1e-10)),
// x <- (x - mean) / std. In place. InvalidArgument when dim <= 0 or the size
// is not a multiple of dim; zero frames is a no-op.
absl::Status ApplyUtteranceCmvn(std::span<float> features, int dim);

// fairseq's GlobalCMVN: x <- (x - mean) / stddev with fixed per-dimension
// statistics (the stats file's "mean" and "std").
//
// Immutable after Create(); thread-safe.
class GlobalCmvn {
 public:
  // InvalidArgument when the vectors are empty, differ in length, or a stddev
  // is not a positive finite number.
  static absl::StatusOr<GlobalCmvn> Create(std::vector<float> mean, std::vector<float> stddev);

  int dim() const { return static_cast<int>(mean_.size()); }
  // In place; InvalidArgument when the size is not a multiple of dim().
  absl::Status Apply(std::span<float> features) const;

 private:
  GlobalCmvn(std::vector<float> mean, std::vector<float> stddev)
      : mean_(std::move(mean)), stddev_(std::move(stddev)) {}
  std::vector<float> mean_;
  std::vector<float> stddev_;
};

}  // namespace mtla::audio

#endif  // MTLA_ENGINE_AUDIO_CMVN_H_
