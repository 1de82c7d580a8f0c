// `mtla-conformance attention FILE`: one MTLA layer against a file in the
// format of shared/testdata/mtla_reference/ (DESIGN.md section 7).
#ifndef MTLA_TOOLS_CONFORMANCE_ATTENTION_CHECK_H_
#define MTLA_TOOLS_CONFORMANCE_ATTENTION_CHECK_H_

#include <string>

#include "absl/status/status.h"
#include "tools/conformance/check_report.h"

namespace mtla::conformance {

// Runs every check the file supports and reports each; returns an error only
// when the file cannot be used at all.
absl::Status CheckAttentionFile(const std::string& path, CheckReport* report);

}  // namespace mtla::conformance

#endif  // MTLA_TOOLS_CONFORMANCE_ATTENTION_CHECK_H_
