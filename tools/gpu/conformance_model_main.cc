// mtla-conformance-model [--device=cpu|cuda|auto] [--dtype=fp32|bf16|fp16] DIR...
// The `model` mode of mtla-conformance for the GPU-only build (tools/gpu),
// which leaves out the speech and audio checks' dependencies. Flags as in
// every tool (tools/common/command_line.h): --help, --version.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "tools/common/command_line.h"
#include "tools/conformance/backend_option.h"
#include "tools/conformance/check_report.h"
#include "tools/conformance/model_check.h"

ABSL_FLAG(std::string, device, "cpu", "Backend of the checks: cpu | cuda | auto");
ABSL_FLAG(std::string, dtype, "fp32",
          "Storage of the checks: fp32 | bf16 | fp16 (tolerances: backend_option.h)");

int main(int argc, char** argv) {
  std::vector<char*> dirs = mtla::ParseCommandLineFlags(
      argc, argv, "mtla-conformance-model",
      "the model conformance check (LlamaMTLA checkpoints in model_reference format).\n\n"
      "  mtla-conformance-model [--device=cpu|cuda|auto] [--dtype=fp32|bf16|fp16] DIR...");
  auto device = mtla::ParseDeviceChoice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) {
    std::fprintf(stderr, "%s\n", device.status().ToString().c_str());
    return 2;
  }
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (!mtla::ValidateDtype(dtype).ok() || dirs.size() < 2) {
    std::fprintf(stderr, "usage: mtla-conformance-model [--device=D] [--dtype=T] DIR... "
                         "(mtla-conformance-model --help)\n");
    return 2;
  }
  mtla::conformance::ConformanceBackend().device = *device;
  mtla::conformance::ConformanceBackend().dtype = dtype;
  mtla::conformance::CheckReport report;
  int skipped = 0;
  for (size_t i = 1; i < dirs.size(); ++i) {
    const absl::Status status = mtla::conformance::CheckModelDir(dirs[i], &report);
    if (status.code() == absl::StatusCode::kUnimplemented) {
      // Dims this backend has no kernel for: said, not counted as a failure.
      std::printf("SKIP %s: %s\n", dirs[i], std::string(status.message()).c_str());
      ++skipped;
    } else if (!status.ok()) {
      report.Error(dirs[i], status.ToString());
    }
  }
  std::printf("%d checks, %d passed, %d failed, %d model dirs skipped (unsupported dims)\n",
              report.checks(), report.checks() - report.failures(), report.failures(), skipped);
  return report.failures() == 0 ? 0 : 1;
}
