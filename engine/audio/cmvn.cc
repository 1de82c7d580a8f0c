#include "engine/audio/cmvn.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace mtla::audio {
namespace {

absl::Status CheckShape(size_t size, int dim) {
  if (dim <= 0) return absl::InvalidArgumentError(absl::StrCat("CMVN dim must be positive; got ", dim));
  if (size % static_cast<size_t>(dim) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("CMVN input of ", size,
                                                   " values is not a whole number of ", dim,
                                                   "-dim frames"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyUtteranceCmvn(std::span<float> features, int dim) {
  if (absl::Status status = CheckShape(features.size(), dim); !status.ok()) return status;
  const size_t frames = features.size() / dim;
  if (frames == 0) return absl::OkStatus();
  std::vector<double> sum(dim, 0.0), sum_sq(dim, 0.0);
  for (size_t t = 0; t < frames; ++t) {
    const float* row = features.data() + t * dim;
    for (int d = 0; d < dim; ++d) {
      sum[d] += row[d];
      sum_sq[d] += static_cast<double>(row[d]) * row[d];
    }
  }
  std::vector<double> mean(dim), inv_std(dim);
  for (int d = 0; d < dim; ++d) {
    mean[d] = sum[d] / frames;
    const double var = sum_sq[d] / frames - mean[d] * mean[d];
    inv_std[d] = 1.0 / std::sqrt(std::max(var, 1e-10));
  }
  for (size_t t = 0; t < frames; ++t) {
    float* row = features.data() + t * dim;
    for (int d = 0; d < dim; ++d) row[d] = static_cast<float>((row[d] - mean[d]) * inv_std[d]);
  }
  return absl::OkStatus();
}

absl::StatusOr<GlobalCmvn> GlobalCmvn::Create(std::vector<float> mean, std::vector<float> stddev) {
  if (mean.empty() || mean.size() != stddev.size()) {
    return absl::InvalidArgumentError(absl::StrCat("global CMVN needs equal, non-empty mean and std; got ",
                                                   mean.size(), " and ", stddev.size(), " values"));
  }
  for (size_t d = 0; d < stddev.size(); ++d) {
    if (!(stddev[d] > 0.0f) || !std::isfinite(stddev[d]) || !std::isfinite(mean[d])) {
      return absl::InvalidArgumentError(absl::StrCat("global CMVN dimension ", d, ": mean ", mean[d],
                                                     ", std ", stddev[d],
                                                     " (std must be positive and finite)"));
    }
  }
  return GlobalCmvn(std::move(mean), std::move(stddev));
}

absl::Status GlobalCmvn::Apply(std::span<float> features) const {
  const int d = dim();
  if (absl::Status status = CheckShape(features.size(), d); !status.ok()) return status;
  for (size_t i = 0; i < features.size(); ++i) {
    const size_t k = i % d;
    features[i] = (features[i] - mean_[k]) / stddev_[k];
  }
  return absl::OkStatus();
}

}  // namespace mtla::audio
