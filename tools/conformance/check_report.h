// Conformance result lines: "<subject> <check> rel_err=<e> tol=<t> PASS|FAIL".
#ifndef MTLA_TOOLS_CONFORMANCE_CHECK_REPORT_H_
#define MTLA_TOOLS_CONFORMANCE_CHECK_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

namespace mtla::conformance {

// ||out - ref|| / ||ref|| (L2 over all elements). Infinity when sizes differ or
// `out` holds a NaN.
double RelativeError(const std::vector<float>& out, const std::vector<float>& ref);

class CheckReport {
 public:
  // Prints one line and records the outcome.
  void Compare(const std::string& subject, const std::string& check, const std::vector<float>& out,
               const std::vector<float>& ref, double tolerance);
  // Passes when max |out - ref| <= tolerance (absolute, e.g. for scores).
  void CompareMaxAbs(const std::string& subject, const std::string& check,
                     const std::vector<float>& out, const std::vector<float>& ref,
                     double tolerance);
  void Exact(const std::string& subject, const std::string& check, const std::vector<int32_t>& out,
             const std::vector<int32_t>& ref);
  // A check that could not run (bad input): always a failure.
  void Error(const std::string& subject, const std::string& message);
  int failures() const { return failures_; }
  int checks() const { return checks_; }

 private:
  int failures_ = 0;
  int checks_ = 0;
};

}  // namespace mtla::conformance

#endif  // MTLA_TOOLS_CONFORMANCE_CHECK_REPORT_H_
