#include "tests/common/test_certs.h"

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/testing/unique_temp_path.h"

namespace mtla::test_support {

absl::StatusOr<std::unique_ptr<TestCerts>> TestCerts::Make() {
  const std::string dir = UniqueTempPath("mtla_test_certs");
  const std::string log = dir + ".log";
  const std::string command =
      absl::StrCat("bash '", MTLA_MAKE_TEST_CERTS, "' '", dir, "' > '", log, "' 2>&1");
  const int status = std::system(command.c_str());
  const std::string output = ReadFileOrEmpty(log);
  std::filesystem::remove(log);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    return std::unique_ptr<TestCerts>(new TestCerts(dir));
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) return absl::UnavailableError(output);
  return absl::InternalError(absl::StrCat(command, " failed (status ", status, "): ", output));
}

TestCerts::~TestCerts() {
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace mtla::test_support
