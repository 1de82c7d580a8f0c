// The backend mtla-conformance runs the model checks on (`--device`,
// `--dtype`), and the tolerances that follow from it. Default: the CPU
// backend (fp32). On CUDA in fp32 the checks are the CPU's (logits within the
// check's own tolerance, tokens exactly equal); in bf16 / fp16 the logits must
// be within kBf16LogitTolerance / kFp16LogitTolerance (||out - ref|| / ||ref||)
// and the greedy tokens' agreement is reported, not required.
#ifndef MTLA_TOOLS_CONFORMANCE_BACKEND_OPTION_H_
#define MTLA_TOOLS_CONFORMANCE_BACKEND_OPTION_H_

#include "engine/model/backend_factory.h"

namespace mtla::conformance {

inline constexpr double kBf16LogitTolerance = 5e-2;
inline constexpr double kFp16LogitTolerance = 1e-2;

// Process-wide choice, set once by main() before any check runs.
BackendChoice& ConformanceBackend();
// The logits tolerance for a check whose fp32 tolerance is `fp32_tolerance`.
double LogitTolerance(double fp32_tolerance);
// Whether greedy tokens must match exactly (fp32 storage).
bool ExactTokens();

}  // namespace mtla::conformance

#endif  // MTLA_TOOLS_CONFORMANCE_BACKEND_OPTION_H_
