#include "tools/conformance/backend_option.h"

namespace mtla::conformance {

BackendChoice& ConformanceBackend() {
  static BackendChoice* choice = [] {
    auto* c = new BackendChoice();
    c->device = DeviceChoice::kCpu;
    c->dtype = "fp32";
    return c;
  }();
  return *choice;
}

double LogitTolerance(double fp32_tolerance) {
  const BackendChoice& c = ConformanceBackend();
  if (c.device == DeviceChoice::kCpu || c.dtype == "fp32") return fp32_tolerance;
  return c.dtype == "bf16" ? kBf16LogitTolerance : kFp16LogitTolerance;
}

bool ExactTokens() {
  const BackendChoice& c = ConformanceBackend();
  return c.device == DeviceChoice::kCpu || c.dtype == "fp32";
}

}  // namespace mtla::conformance
