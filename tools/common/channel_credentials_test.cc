// The tools' TLS flags: which combinations are accepted and that refusals
// name the flag and the file. Handshakes against a real server are tested in
// tests/server/server_tls_test.cc and tests/deploy/tls_tools_test.py.
#include "tools/common/channel_credentials.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/test_certs.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;
using test_support::TestCerts;

class ChannelCredentialsTest : public testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestCerts>> certs = TestCerts::Make();
    if (absl::IsUnavailable(certs.status())) GTEST_SKIP() << certs.status().message();
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *std::move(certs);
  }
  std::unique_ptr<TestCerts> certs_;
};

TEST_F(ChannelCredentialsTest, AnyFlagTurnsTlsOn) {
  EXPECT_FALSE(ClientTlsOptions().enabled());
  ClientTlsOptions name_only;
  name_only.server_name = "localhost";
  EXPECT_TRUE(name_only.enabled());
  ClientTlsOptions ca_only;
  ca_only.ca_file = certs_->Path("ca.pem");
  EXPECT_TRUE(ca_only.enabled());
  for (const ClientTlsOptions& options : {ClientTlsOptions(), name_only, ca_only}) {
    auto credentials = MakeChannelCredentials(options);
    ASSERT_TRUE(credentials.ok()) << credentials.status();
    EXPECT_NE(*credentials, nullptr);
  }
  ClientTlsOptions mutual = ca_only;
  mutual.cert_file = certs_->Path("client.pem");
  mutual.key_file = certs_->Path("client.key");
  auto channel = CreateClientChannel("127.0.0.1:1", mutual);
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_NE(*channel, nullptr);
}

TEST_F(ChannelCredentialsTest, HalfAKeyPairIsRefused) {
  ClientTlsOptions cert_only;
  cert_only.cert_file = certs_->Path("client.pem");
  auto status = MakeChannelCredentials(cert_only).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--tls_cert_file is set without --tls_key_file"));
  ClientTlsOptions key_only;
  key_only.key_file = certs_->Path("client.key");
  status = CreateClientChannel("127.0.0.1:1", key_only).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--tls_key_file is set without --tls_cert_file"));
}

TEST_F(ChannelCredentialsTest, UnreadableFilesNameTheFlagAndThePath) {
  const std::string missing = certs_->Path("missing.pem");
  ClientTlsOptions ca;
  ca.ca_file = missing;
  ClientTlsOptions cert;
  cert.cert_file = missing;
  cert.key_file = certs_->Path("client.key");
  ClientTlsOptions key;
  key.cert_file = certs_->Path("client.pem");
  key.key_file = missing;
  for (const auto& [options, flag] : {std::pair{ca, "--tls_ca_file"}, std::pair{cert, "--tls_cert_file"},
                                      std::pair{key, "--tls_key_file"}}) {
    SCOPED_TRACE(flag);
    auto status = MakeChannelCredentials(options).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
    EXPECT_THAT(status.message(), HasSubstr(std::string(flag) + "=" + missing + ": cannot open"));
  }
}

}  // namespace
}  // namespace mtla
