// Certificates for the TLS tests, made at test time by make_test_certs.sh
// (openssl) in a directory of this process's own (UniqueTempPath), removed
// when the TestCerts object is destroyed.
#ifndef MTLA_TESTS_COMMON_TEST_CERTS_H_
#define MTLA_TESTS_COMMON_TEST_CERTS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace mtla::test_support {

class TestCerts {
 public:
  // Runs make_test_certs.sh. Unavailable (with the script's reason) when
  // openssl is not installed: the caller skips; Internal when the script
  // fails.
  static absl::StatusOr<std::unique_ptr<TestCerts>> Make();
  ~TestCerts();
  TestCerts(const TestCerts&) = delete;
  TestCerts& operator=(const TestCerts&) = delete;

  // DIR/name, e.g. Path("server.pem"); the names are listed in make_test_certs.sh.
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  explicit TestCerts(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

// The whole file (empty when it cannot be read).
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace mtla::test_support

#endif  // MTLA_TESTS_COMMON_TEST_CERTS_H_
