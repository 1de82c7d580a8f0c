#include "tools/conformance/check_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "absl/strings/str_join.h"

namespace mtla::conformance {

double RelativeError(const std::vector<float>& out, const std::vector<float>& ref) {
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (std::isnan(out[i])) return std::numeric_limits<double>::infinity();
    const double d = static_cast<double>(out[i]) - ref[i];
    diff += d * d;
    norm += static_cast<double>(ref[i]) * ref[i];
  }
  if (norm == 0.0) return diff == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(diff / norm);
}

void CheckReport::Compare(const std::string& subject, const std::string& check,
                          const std::vector<float>& out, const std::vector<float>& ref,
                          double tolerance) {
  const double err = RelativeError(out, ref);
  const bool pass = err <= tolerance;
  ++checks_;
  if (!pass) ++failures_;
  std::printf("%-28s %-34s rel_err=%.3e tol=%.0e %s\n", subject.c_str(), check.c_str(), err,
              tolerance, pass ? "PASS" : "FAIL");
}

void CheckReport::CompareMaxAbs(const std::string& subject, const std::string& check,
                                const std::vector<float>& out, const std::vector<float>& ref,
                                double tolerance) {
  double err = out.size() == ref.size() ? 0.0 : std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < out.size() && i < ref.size(); ++i) {
    const double d = std::abs(static_cast<double>(out[i]) - ref[i]);
    err = std::isnan(d) ? std::numeric_limits<double>::infinity() : std::max(err, d);
  }
  const bool pass = err <= tolerance;
  ++checks_;
  if (!pass) ++failures_;
  std::printf("%-28s %-34s max_abs=%.3e tol=%.0e %s\n", subject.c_str(), check.c_str(), err,
              tolerance, pass ? "PASS" : "FAIL");
}

void CheckReport::Exact(const std::string& subject, const std::string& check,
                        const std::vector<int32_t>& out, const std::vector<int32_t>& ref) {
  const bool pass = out == ref;
  ++checks_;
  if (!pass) ++failures_;
  std::printf("%-28s %-34s %s\n", subject.c_str(), check.c_str(), pass ? "exact PASS" : "FAIL");
  if (!pass) {
    std::printf("    got      [%s]\n    expected [%s]\n", absl::StrJoin(out, " ").c_str(),
                absl::StrJoin(ref, " ").c_str());
  }
}

void CheckReport::Error(const std::string& subject, const std::string& message) {
  ++checks_;
  ++failures_;
  std::printf("%-28s ERROR %s FAIL\n", subject.c_str(), message.c_str());
}

}  // namespace mtla::conformance
