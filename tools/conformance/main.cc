// mtla-conformance: checks the engine against reference data in the formats of
// shared/testdata (DESIGN.md section 7). One line per check; exits non-zero on
// any failure.
//
//   mtla-conformance [--device=cpu|cuda|auto] [--dtype=fp32|bf16|fp16] MODE ...
// (absl flags: --flag=value or --flag value, anywhere; --help, --version)
// runs the model / st checks on the chosen backend (default cpu, fp32); see
// backend_option.h for the tolerances below fp32.
//
//   mtla-conformance attention FILE...   one MTLA layer (mtla_reference format)
//   mtla-conformance model DIR...        a LlamaMTLA checkpoint (model_reference format)
//   mtla-conformance fbank FILE...       the audio front-end (fbank_reference or fairseq_st_reference format)
//   mtla-conformance st DIR...           the ST decoder from encoder output (st_reference format)
//   mtla-conformance fairseq-st DIR...   the whole ST model vs fairseq (fairseq_st_reference format)
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"

#include "tools/conformance/attention_check.h"
#include "tools/conformance/backend_option.h"
#include "tools/conformance/check_report.h"
#include "tools/conformance/fbank_check.h"
#include "tools/conformance/model_check.h"
#include "tools/conformance/st_check.h"
#include "tools/common/command_line.h"

ABSL_FLAG(std::string, device, "cpu", "Backend of the model and st checks: cpu | cuda | auto");
ABSL_FLAG(std::string, dtype, "fp32",
          "Storage of the model and st checks: fp32 | bf16 | fp16 (tolerances: backend_option.h)");

namespace {

constexpr char kUsage[] =
    "checks the engine against reference data (shared/testdata formats).\n\n"
    "  mtla-conformance [--device=cpu|cuda|auto] [--dtype=fp32|bf16|fp16] MODE PATH...\n"
    "  MODE: attention FILE... | model DIR... | fbank FILE... | st DIR... | fairseq-st DIR...";

int Usage() {
  std::fprintf(stderr, "usage: mtla-conformance [--device=cpu|cuda|auto] [--dtype=fp32|bf16|fp16] "
                       "attention|model|fbank|st|fairseq-st PATH... (mtla-conformance --help)\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = mtla::ParseCommandLineFlags(argc, argv, "mtla-conformance", kUsage);
  auto device = mtla::ParseDeviceChoice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) {
    std::fprintf(stderr, "%s\n", device.status().ToString().c_str());
    return 2;
  }
  mtla::conformance::ConformanceBackend().device = *device;
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (!mtla::ValidateDtype(dtype).ok()) return Usage();
  mtla::conformance::ConformanceBackend().dtype = dtype;
  argc = static_cast<int>(args.size());
  argv = args.data();
  if (argc < 3) return Usage();
  const std::string mode = argv[1];
  mtla::conformance::CheckReport report;
  for (int i = 2; i < argc; ++i) {
    absl::Status status;
    if (mode == "attention") {
      status = mtla::conformance::CheckAttentionFile(argv[i], &report);
    } else if (mode == "model") {
      status = mtla::conformance::CheckModelDir(argv[i], &report);
    } else if (mode == "fbank") {
      status = mtla::conformance::CheckFbankFile(argv[i], &report);
    } else if (mode == "st") {
      status = mtla::conformance::CheckStDir(argv[i], &report);
    } else if (mode == "fairseq-st") {
      status = mtla::conformance::CheckFairseqStDir(argv[i], &report);
    } else {
      return Usage();
    }
    if (!status.ok()) report.Error(argv[i], status.ToString());
  }
  std::printf("%d checks, %d passed, %d failed\n", report.checks(),
              report.checks() - report.failures(), report.failures());
  return report.failures() == 0 ? 0 : 1;
}
