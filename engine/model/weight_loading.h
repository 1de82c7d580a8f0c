// Shape-checked loading of dense layers and norms from a safetensors file.
#ifndef MTLA_ENGINE_MODEL_WEIGHT_LOADING_H_
#define MTLA_ENGINE_MODEL_WEIGHT_LOADING_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/mtla_attention.h"
#include "engine/weights/safetensors.h"

namespace mtla {

enum class BiasMode { kNone, kOptional, kRequired };

// Pre-packs row-major [out, in] weights for oneDNN's matmul; null when oneDNN
// is not compiled in, rejects the shape, or the environment sets
// MTLA_LINEAR=openblas (callers then use OpenBLAS).
std::shared_ptr<const cpu::PackedLinear> PackWeights(const float* weight, int out, int in);

// "<name>.weight" of shape [out, in], and "<name>.bias" [out] per `bias`;
// the weights are also packed (PackWeights).
absl::StatusOr<LinearWeights> LoadLinear(const SafetensorsFile& file, const std::string& name,
                                         int in, int out, BiasMode bias);
// "<name>.weight" [dim], and "<name>.bias" [dim] when `with_bias`.
absl::StatusOr<NormWeights> LoadNorm(const SafetensorsFile& file, const std::string& name, int dim,
                                     bool with_bias);

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_WEIGHT_LOADING_H_
