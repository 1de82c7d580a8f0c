#include "engine/model/weight_loading.h"

#include "engine/common/status_macros.h"

namespace mtla {

absl::StatusOr<LinearWeights> LoadLinear(const SafetensorsFile& file, const std::string& name,
                                         int in, int out, BiasMode bias) {
  LinearWeights linear;
  linear.in = in;
  linear.out = out;
  ASSIGN_OR_RETURN(linear.weight, file.ReadFloat(name + ".weight", {out, in}));
  const std::string bias_name = name + ".bias";
  if (bias == BiasMode::kRequired || (bias == BiasMode::kOptional && file.contains(bias_name))) {
    ASSIGN_OR_RETURN(linear.bias, file.ReadFloat(bias_name, {out}));
  }
  return linear;
}

absl::StatusOr<NormWeights> LoadNorm(const SafetensorsFile& file, const std::string& name, int dim,
                                     bool with_bias) {
  NormWeights norm;
  ASSIGN_OR_RETURN(norm.weight, file.ReadFloat(name + ".weight", {dim}));
  if (with_bias) {
    ASSIGN_OR_RETURN(norm.bias, file.ReadFloat(name + ".bias", {dim}));
  }
  return norm;
}

}  // namespace mtla
