// MakeServerCredentials: which flag combinations and files are accepted, and
// that every refusal names the flag and the file. The certificates are made by
// openssl at test time (tests/common/make_test_certs.sh); the handshakes
// themselves are tested end to end in tests/server/server_tls_test.cc.
#include "server/server_credentials.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/test_certs.h"

namespace mtla {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using test_support::TestCerts;

class ServerCredentialsTest : public testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestCerts>> certs = TestCerts::Make();
    if (absl::IsUnavailable(certs.status())) GTEST_SKIP() << certs.status().message();
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *std::move(certs);
  }

  ServerTlsOptions Tls(const std::string& cert, const std::string& key,
                       const std::string& client_ca = "") {
    auto path = [&](const std::string& name) { return name.empty() ? "" : certs_->Path(name); };
    return {path(cert), path(key), path(client_ca)};
  }

  std::unique_ptr<TestCerts> certs_;
};

TEST_F(ServerCredentialsTest, NoFlagsIsPlaintext) {
  auto credentials = MakeServerCredentials({});
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  EXPECT_NE(*credentials, nullptr);
}

TEST_F(ServerCredentialsTest, CertificateAndKeyGiveTls) {
  auto credentials = MakeServerCredentials(Tls("server.pem", "server.key"));
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  EXPECT_NE(*credentials, nullptr);
  auto mutual = MakeServerCredentials(Tls("server.pem", "server.key", "ca.pem"));
  ASSERT_TRUE(mutual.ok()) << mutual.status();
  EXPECT_NE(*mutual, nullptr);
}

TEST_F(ServerCredentialsTest, DescribeTlsForTheLog) {
  EXPECT_EQ(DescribeTls({}), "plaintext");
  EXPECT_EQ(DescribeTls({"s.pem", "s.key", ""}), "TLS (certificate s.pem)");
  EXPECT_EQ(DescribeTls({"s.pem", "s.key", "ca.pem"}),
            "mutual TLS (certificate s.pem, clients verified against ca.pem)");
}

TEST_F(ServerCredentialsTest, HalfAKeyPairIsRefused) {
  auto cert_only = MakeServerCredentials(Tls("server.pem", ""));
  EXPECT_EQ(cert_only.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cert_only.status().message(),
              AllOf(HasSubstr("--tls_cert_file is set without --tls_key_file"), HasSubstr("both")));
  auto key_only = MakeServerCredentials(Tls("", "server.key"));
  EXPECT_EQ(key_only.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(key_only.status().message(), HasSubstr("--tls_key_file is set without --tls_cert_file"));
}

TEST_F(ServerCredentialsTest, ClientCaWithoutServerCertificateIsRefused) {
  auto status = MakeServerCredentials(Tls("", "", "ca.pem")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              AllOf(HasSubstr("--tls_client_ca_file needs --tls_cert_file and --tls_key_file")));
}

TEST_F(ServerCredentialsTest, MissingFilesNameTheFlagAndThePath) {
  struct Case {
    ServerTlsOptions options;
    std::string flag, path;
  } cases[] = {
      {Tls("missing.pem", "server.key"), "--tls_cert_file", certs_->Path("missing.pem")},
      {Tls("server.pem", "missing.key"), "--tls_key_file", certs_->Path("missing.key")},
      {Tls("server.pem", "server.key", "missing_ca.pem"), "--tls_client_ca_file",
       certs_->Path("missing_ca.pem")},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.flag);
    auto status = MakeServerCredentials(c.options).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
    EXPECT_THAT(status.message(), AllOf(HasSubstr(c.flag + "=" + c.path), HasSubstr("cannot open")));
  }
}

TEST_F(ServerCredentialsTest, WrongFileContentsAreRefused) {
  struct Case {
    ServerTlsOptions options;
    std::string expected;
  } cases[] = {
      // Not PEM at all, where a certificate, a key or a CA is expected.
      {Tls("not_pem.txt", "server.key"),
       "--tls_cert_file=" + certs_->Path("not_pem.txt") + ": no PEM certificate"},
      {Tls("server.pem", "not_pem.txt"),
       "--tls_key_file=" + certs_->Path("not_pem.txt") + ": no PEM private key"},
      {Tls("server.pem", "server.key", "not_pem.txt"),
       "--tls_client_ca_file=" + certs_->Path("not_pem.txt") + ": no PEM certificate"},
      // A key where the certificate belongs, and the certificate as the key.
      {Tls("server.key", "server.key"), "--tls_cert_file=" + certs_->Path("server.key") +
                                            ": no PEM certificate"},
      {Tls("server.pem", "server.pem"), "--tls_key_file=" + certs_->Path("server.pem") +
                                            ": no PEM private key"},
      // Another certificate's key.
      {Tls("server.pem", "client.key"),
       "--tls_key_file=" + certs_->Path("client.key") +
           ": the private key does not match the certificate in --tls_cert_file=" +
           certs_->Path("server.pem")},
      // A passphrase-protected key (the server must not prompt for it).
      {Tls("client.pem", "encrypted.key"),
       "--tls_key_file=" + certs_->Path("encrypted.key") + ": the private key is encrypted"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expected);
    auto status = MakeServerCredentials(c.options).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(c.expected));
  }
}

TEST_F(ServerCredentialsTest, EmptyAndTruncatedFilesAreRefused) {
  const std::string empty = certs_->Path("empty.pem");
  { std::ofstream(empty).flush(); }
  auto status = MakeServerCredentials({empty, certs_->Path("server.key"), ""}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--tls_cert_file=" + empty + ": empty file"));

  // The certificate cut in the middle of its base64 body.
  const std::string pem = test_support::ReadFileOrEmpty(certs_->Path("server.pem"));
  const std::string cut = certs_->Path("cut.pem");
  { std::ofstream(cut) << pem.substr(0, pem.size() / 2); }
  status = MakeServerCredentials({cut, certs_->Path("server.key"), ""}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--tls_cert_file=" + cut + ": "));
}

TEST_F(ServerCredentialsTest, OnlyRegularFilesOfPemSizeAreRead) {
  const std::string key = certs_->Path("server.key");
  const std::string big = certs_->Path("big.pem");
  { std::ofstream(big) << std::string((4 << 20) + 1, 'x'); }
  struct Case {
    std::string cert, expected;
  } cases[] = {
      {certs_->Path(""), "is a directory, not a file"},
      {"/dev/null", "not a regular file"},
      {big, "larger than 4 MiB, not a PEM file"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.cert);
    auto status = MakeServerCredentials({c.cert, key, ""}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr("--tls_cert_file=" + c.cert + ": " + c.expected));
  }
}

TEST_F(ServerCredentialsTest, SymlinksAreFollowed) {
  // Kubernetes mounts a Secret's keys as symlinks into a ..data directory.
  const std::string link = certs_->Path("tls.crt");
  std::filesystem::create_symlink(certs_->Path("server.pem"), link);
  auto credentials = MakeServerCredentials({link, certs_->Path("server.key"), ""});
  EXPECT_TRUE(credentials.ok()) << credentials.status();
}

}  // namespace
}  // namespace mtla
