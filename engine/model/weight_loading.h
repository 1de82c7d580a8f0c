// Shape-checked loading of dense layers and norms from a safetensors file.
#ifndef MTLA_ENGINE_MODEL_WEIGHT_LOADING_H_
#define MTLA_ENGINE_MODEL_WEIGHT_LOADING_H_

#include <string>

#include "absl/status/statusor.h"
#include "engine/model/mtla_attention.h"
#include "engine/weights/safetensors.h"

namespace mtla {

enum class BiasMode { kNone, kOptional, kRequired };

// "<name>.weight" of shape [out, in], and "<name>.bias" [out] per `bias`.
absl::StatusOr<LinearWeights> LoadLinear(const SafetensorsFile& file, const std::string& name,
                                         int in, int out, BiasMode bias);
// "<name>.weight" [dim], and "<name>.bias" [dim] when `with_bias`.
absl::StatusOr<NormWeights> LoadNorm(const SafetensorsFile& file, const std::string& name, int dim,
                                     bool with_bias);

}  // namespace mtla

#endif  // MTLA_ENGINE_MODEL_WEIGHT_LOADING_H_
