// mtla-conformance-model [--device=cpu|cuda|auto] [--dtype=fp32|bf16|fp16] DIR...
// The `model` mode of mtla-conformance for the GPU-only build (tools/gpu),
// which leaves out the speech and audio checks' dependencies.
#include <cstdio>
#include <cstring>
#include <string>

#include "tools/conformance/backend_option.h"
#include "tools/conformance/check_report.h"
#include "tools/conformance/model_check.h"

int main(int argc, char** argv) {
  mtla::conformance::CheckReport report;
  int dirs = 0;
  int skipped = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--device=", 0) == 0) {
      auto device = mtla::ParseDeviceChoice(arg.substr(9));
      if (!device.ok()) return 2;
      mtla::conformance::ConformanceBackend().device = *device;
    } else if (arg.rfind("--dtype=", 0) == 0) {
      if (!mtla::ValidateDtype(arg.substr(8)).ok()) return 2;
      mtla::conformance::ConformanceBackend().dtype = arg.substr(8);
    } else {
      ++dirs;
      const absl::Status status = mtla::conformance::CheckModelDir(arg, &report);
      if (status.code() == absl::StatusCode::kUnimplemented) {
        // Dims this backend has no kernel for: said, not counted as a failure.
        std::printf("SKIP %s: %s\n", arg.c_str(), std::string(status.message()).c_str());
        ++skipped;
      } else if (!status.ok()) {
        report.Error(arg, status.ToString());
      }
    }
  }
  if (dirs == 0) {
    std::fprintf(stderr, "usage: mtla-conformance-model [--device=D] [--dtype=T] DIR...\n");
    return 2;
  }
  std::printf("%d checks, %d passed, %d failed, %d model dirs skipped (unsupported dims)\n",
              report.checks(), report.checks() - report.failures(), report.failures(), skipped);
  return report.failures() == 0 ? 0 : 1;
}
