// TLS and mutual TLS on mtla-server's gRPC port, end to end over loopback: an
// in-process MtlaServer with ServerOptions::tls (server/server_credentials.h)
// and clients made by the tools' own channel code
// (tools/common/channel_credentials.h).
//
// Certificates are made by openssl at test time (tests/common/make_test_certs.sh):
// a CA, a server certificate from it for DNS:localhost and IP:127.0.0.1, a
// client certificate from it, and a second CA with its own client and server
// certificates. Model: the shared LlamaMTLA reference checkpoint, whose greedy
// answer to its reference prompt is known, so a call that succeeds is checked
// to be a real one.
//
// Every refused connection must fail the call (UNAVAILABLE) within its
// deadline, never hang and never succeed. Skipped with a visible message when
// the shared data or openssl is missing.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mtla/v1/models.grpc.pb.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "server/mtla_server.h"
#include "tests/common/grpc_wait.h"
#include "tests/common/test_certs.h"
#include "tools/common/channel_credentials.h"

namespace mtla {
namespace {

using test_support::In;
using test_support::TestCerts;

const std::vector<int32_t> kPrompt = {1, 17, 42, 5, 66, 23, 9};
const std::vector<int32_t> kGenerated = {71, 41, 3, 56, 23, 82, 84, 77, 82, 84, 77, 82};

std::string ModelDir() { return std::string(MTLA_TESTDATA_DIR) + "/model_reference/llama_mtla_s2"; }

std::string Describe(const grpc::Status& status) {
  return absl::StrCat("code ", status.error_code(), ": ", status.error_message());
}

struct CallResult {
  grpc::Status status;
  std::vector<int32_t> tokens;
};

// Greedy generation of the reference prompt, 12 tokens, 10 s deadline.
CallResult GenerateReference(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::TextGeneration::NewStub(channel);
  v1::GenerateRequest request;
  for (int32_t id : kPrompt) request.add_prompt_token_ids(id);
  request.set_max_new_tokens(12);
  grpc::ClientContext context;
  context.set_deadline(In(10.0));
  auto reader = stub->Generate(&context, request);
  CallResult result;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    result.tokens.insert(result.tokens.end(), response.token_ids().begin(),
                         response.token_ids().end());
  }
  result.status = reader->Finish();
  return result;
}

class TlsTest : public testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(ModelDir() + "/model.safetensors")) {
      GTEST_SKIP() << "shared testdata not found at " << ModelDir();
    }
    absl::StatusOr<std::unique_ptr<TestCerts>> certs = TestCerts::Make();
    if (absl::IsUnavailable(certs.status())) GTEST_SKIP() << certs.status().message();
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *std::move(certs);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Drain();
    server_.reset();
  }

  // Starts and loads a server on 127.0.0.1 with `tls`.
  void StartServer(const ServerTlsOptions& tls) {
    ServerOptions options;
    options.model_dir = ModelDir();
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "";
    options.device = "cpu";
    options.kv_cache_bytes = 16u << 20;
    options.drain_grace_seconds = 5;
    options.tls = tls;
    absl::StatusOr<std::unique_ptr<MtlaServer>> server = MtlaServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    absl::Status loaded = server_->LoadModel();
    ASSERT_TRUE(loaded.ok()) << loaded;
    address_ = absl::StrCat("127.0.0.1:", server_->port());
  }

  ServerTlsOptions ServerTls(bool mutual) const {
    return {.cert_file = certs_->Path("server.pem"),
            .key_file = certs_->Path("server.key"),
            .client_ca_file = mutual ? certs_->Path("ca.pem") : ""};
  }

  // Client options: roots `ca` ("" for none), client certificate `client`
  // ("" for none: NAME.pem and NAME.key), `server_name` override.
  ClientTlsOptions ClientTls(const std::string& ca, const std::string& client = "",
                             const std::string& server_name = "") const {
    ClientTlsOptions tls;
    if (!ca.empty()) tls.ca_file = certs_->Path(ca + ".pem");
    if (!client.empty()) {
      tls.cert_file = certs_->Path(client + ".pem");
      tls.key_file = certs_->Path(client + ".key");
    }
    tls.server_name = server_name;
    return tls;
  }

  // A new channel (its own connection) to the server with `tls`.
  std::shared_ptr<grpc::Channel> Channel(const ClientTlsOptions& tls,
                                         const std::string& target = "") {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        CreateClientChannel(target.empty() ? address_ : target, tls, args);
    EXPECT_TRUE(channel.ok()) << channel.status();
    return channel.ok() ? *channel : nullptr;
  }

  void ExpectServed(const std::shared_ptr<grpc::Channel>& channel) {
    ASSERT_NE(channel, nullptr);
    CallResult r = GenerateReference(channel);
    ASSERT_TRUE(r.status.ok()) << Describe(r.status);
    EXPECT_EQ(r.tokens, kGenerated);
    v1::ModelInfo info;
    grpc::Status status = test_support::FetchModelInfo(channel, &info);
    ASSERT_TRUE(status.ok()) << Describe(status);
    EXPECT_EQ(info.architecture(), "llama-mtla");
  }

  // The connection is refused: the call fails with UNAVAILABLE within its
  // deadline (10 s), having produced nothing.
  void ExpectRefused(const std::shared_ptr<grpc::Channel>& channel) {
    ASSERT_NE(channel, nullptr);
    const auto start = std::chrono::steady_clock::now();
    CallResult r = GenerateReference(channel);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(r.status);
    std::printf("refused after %.3f s: %s\n", seconds, Describe(r.status).c_str());
    EXPECT_TRUE(r.tokens.empty());
    EXPECT_LT(seconds, 9.0) << "the refusal should be prompt, not a deadline";
    v1::ModelInfo info;
    grpc::Status status = test_support::FetchModelInfo(channel, &info);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(status);
  }

  std::unique_ptr<TestCerts> certs_;
  std::unique_ptr<MtlaServer> server_;
  std::string address_;
};

TEST_F(TlsTest, TlsServesClientsThatTrustItsCa) {
  StartServer(ServerTls(/*mutual=*/false));
  // By IP: the certificate carries IP:127.0.0.1.
  ExpectServed(Channel(ClientTls("ca")));
  // By name: the certificate carries DNS:localhost.
  ExpectServed(Channel(ClientTls("ca"), absl::StrCat("localhost:", server_->port())));
  // By IP, checking the name instead (--tls_server_name).
  ExpectServed(Channel(ClientTls("ca", "", "localhost")));
  // A client certificate the server did not ask for does no harm.
  ExpectServed(Channel(ClientTls("ca", "client")));
}

TEST_F(TlsTest, TlsRefusesPlaintextAndUntrustingClients) {
  StartServer(ServerTls(/*mutual=*/false));
  // Plaintext HTTP/2 to the TLS port.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  ExpectRefused(grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args));
  // A client that trusts another CA only.
  ExpectRefused(Channel(ClientTls("other_ca")));
  // A name the certificate does not carry.
  ExpectRefused(Channel(ClientTls("ca", "", "mtla.example.com")));
  // The server still serves the right clients afterwards.
  ExpectServed(Channel(ClientTls("ca")));
}

TEST_F(TlsTest, TlsClientToPlaintextServerFails) {
  StartServer({});
  ExpectRefused(Channel(ClientTls("ca")));
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  ExpectServed(grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args));
}

TEST_F(TlsTest, MutualTlsServesOnlyClientsWithACertificateFromItsCa) {
  StartServer(ServerTls(/*mutual=*/true));
  // No client certificate.
  ExpectRefused(Channel(ClientTls("ca")));
  // A client certificate from another CA.
  ExpectRefused(Channel(ClientTls("ca", "other_client")));
  // Plaintext.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  ExpectRefused(grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args));
  // The right certificate.
  ExpectServed(Channel(ClientTls("ca", "client")));
  ExpectServed(Channel(ClientTls("ca", "client", "localhost")));
}

ServerTlsOptions Tls(std::string cert_file, std::string key_file, std::string client_ca_file) {
  ServerTlsOptions tls;
  tls.cert_file = std::move(cert_file);
  tls.key_file = std::move(key_file);
  tls.client_ca_file = std::move(client_ca_file);
  return tls;
}

TEST_F(TlsTest, BadTlsOptionsStopTheServerAtStart) {
  ServerOptions options;
  options.model_dir = ModelDir();
  options.listen_address = "127.0.0.1:0";
  options.metrics_address = "";
  struct Case {
    ServerTlsOptions tls;
    std::string expected;
  } cases[] = {
      {Tls(certs_->Path("server.pem"), "", ""), "--tls_cert_file is set without --tls_key_file"},
      {Tls("", certs_->Path("server.key"), ""), "--tls_key_file is set without --tls_cert_file"},
      {Tls("", "", certs_->Path("ca.pem")), "--tls_client_ca_file needs --tls_cert_file"},
      {Tls(certs_->Path("server.pem"), certs_->Path("client.key"), ""),
       "does not match the certificate"},
      {Tls(certs_->Path("nowhere.pem"), certs_->Path("server.key"), ""),
       "--tls_cert_file=" + certs_->Path("nowhere.pem") + ": cannot open"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expected);
    options.tls = c.tls;
    absl::StatusOr<std::unique_ptr<MtlaServer>> server = MtlaServer::Start(options);
    ASSERT_FALSE(server.ok());
    EXPECT_THAT(server.status().message(), testing::HasSubstr(c.expected));
  }
}

}  // namespace
}  // namespace mtla
