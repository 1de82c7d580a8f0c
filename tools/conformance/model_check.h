// `mtla-conformance model DIR`: a LlamaMTLA checkpoint directory against its
// expected.safetensors (prompt_ids, prompt_logits, step_logits, generated_ids).
#ifndef MTLA_TOOLS_CONFORMANCE_MODEL_CHECK_H_
#define MTLA_TOOLS_CONFORMANCE_MODEL_CHECK_H_

#include <string>

#include "absl/status/status.h"
#include "tools/conformance/check_report.h"

namespace mtla::conformance {

absl::Status CheckModelDir(const std::string& dir, CheckReport* report);

}  // namespace mtla::conformance

#endif  // MTLA_TOOLS_CONFORMANCE_MODEL_CHECK_H_
