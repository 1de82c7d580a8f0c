#include "engine/model/weight_loading.h"

#include <cstdlib>
#include <iostream>
#include <string_view>
#include <mutex>

#include "engine/common/status_macros.h"
#include "kernels/cpu/cpu_ops.h"
#ifdef MTLA_HAVE_ONEDNN
#include "kernels/cpu/packed_linear.h"
#endif

namespace mtla {

std::shared_ptr<const cpu::PackedLinear> PackWeights(const float* weight, int out, int in) {
#ifdef MTLA_HAVE_ONEDNN
  // MTLA_LINEAR=openblas keeps every layer on OpenBLAS (side-by-side benchmarks).
  if (const char* choice = std::getenv("MTLA_LINEAR"); choice != nullptr &&
                                                       std::string_view(choice) == "openblas") {
    return nullptr;
  }
  absl::StatusOr<std::shared_ptr<const cpu::PackedLinear>> packed =
      cpu::PackedLinear::Create(weight, out, in);
  if (packed.ok()) return *std::move(packed);
  static std::once_flag logged;
  std::call_once(logged, [&] {
    std::cerr << "mtla: using OpenBLAS for linear layers: " << packed.status() << "\n";
  });
#else
  (void)weight, (void)out, (void)in;
#endif
  return nullptr;
}

void LinearWeights::Apply(const float* x, int64_t n, float* y, int64_t ldx, int64_t ldy,
                          bool accumulate) const {
#ifdef MTLA_HAVE_ONEDNN
  if (packed != nullptr && packed->Apply(x, n, bias_or_null(), y, ldx, ldy, accumulate)) return;
#endif
  cpu::Linear(x, n, in, weight.data(), bias_or_null(), out, y, ldx, ldy, accumulate);
}

absl::StatusOr<LinearWeights> LoadLinear(const SafetensorsFile& file, const std::string& name,
                                         int in, int out, BiasMode bias) {
  LinearWeights linear;
  linear.in = in;
  linear.out = out;
  ASSIGN_OR_RETURN(linear.weight, file.ReadFloat(name + ".weight", {out, in}));
  linear.packed = PackWeights(linear.weight.data(), out, in);
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
