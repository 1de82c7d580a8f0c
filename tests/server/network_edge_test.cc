// The server's network edges, tried as a load balancer, a browser, a scanner
// and a second pod on the same node would: the metrics port answers anything
// without dying, a busy port stops the server at start, and the model is
// reported under its served name. Uses the repository's default model and
// the real mtla-server binary where the process itself is under test.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "engine/model/backend_factory.h"
#include "engine/model/backend_plugin_loader.h"
#include "engine/testing/unique_temp_path.h"
#include "engine/metrics/serving_metrics.h"
#include "mtla/v1/models.grpc.pb.h"
#include "server/http/metrics_http_server.h"
#include "server/mtla_server.h"
#include "tests/common/child_server.h"
#include "tests/common/grpc_wait.h"
#include "tests/common/metrics_scrape.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;
using test_support::ChildServer;
using test_support::FetchModelInfo;
using test_support::ConnectLoopback;
using test_support::HttpExchange;
using test_support::HttpGet;
using test_support::HttpStatus;
using test_support::MetricValue;
using test_support::WaitFor;

const std::string kModelDir = MTLA_DEFAULT_MODEL_DIR;

// A TCP socket listening on 127.0.0.1 (an ephemeral port), closed on scope exit.
class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 && listen(fd_, 4) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~Listener() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

std::optional<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(int port) {
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(test_support::In(5));
  grpc::health::v1::HealthCheckResponse response;
  if (!stub->Check(&context, grpc::health::v1::HealthCheckRequest(), &response).ok()) {
    return std::nullopt;
  }
  return response.status();
}

std::unique_ptr<ChildServer> Spawn(const std::vector<std::string>& args) {
  auto child = std::make_unique<ChildServer>();
  std::vector<std::string> argv = {MTLA_SERVER_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  if (!child->Spawn(argv, UniqueTempPath("network_edge_server.log"))) return nullptr;
  return child;
}

int FreePort() {
  Listener probe;
  return probe.port();
}

TEST(NetworkEdgeTest, MetricsPortAnswersEveryRequestAndTheServerKeepsServing) {
  const int port = FreePort(), metrics_port = FreePort();
  std::unique_ptr<ChildServer> child =
      Spawn({"--model_dir=" + kModelDir, absl::StrCat("--listen=127.0.0.1:", port),
             absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port)});
  ASSERT_NE(child, nullptr);
  ASSERT_TRUE(WaitFor([&] { return Health(port) == grpc::health::v1::HealthCheckResponse::SERVING; },
                      60, 50))
      << child->Log();

  // A request left half-sent stays open while the others are answered.
  const int half_sent = ConnectLoopback(metrics_port);
  ASSERT_GE(half_sent, 0);
  ASSERT_EQ(send(half_sent, "GET /metr", 9, MSG_NOSIGNAL), 9);

  struct Case {
    std::string what, request;
    int status;
  };
  const std::vector<Case> cases = {
      {"curl /", "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/7.88\r\nAccept: */*\r\n\r\n", 404},
      {"health probe path", "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 404},
      {"HEAD /metrics", "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200},
      {"POST /metrics", "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405},
      {"browser favicon", "GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n", 404},
      {"TLS to a plaintext port", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),
       400},
      {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
      {"garbage", "\x01\x02\x03 garbage\r\n\r\n", 400},
      {"oversized header",
       "GET /metrics HTTP/1.1\r\nCookie: " + std::string(64 << 10, 'c') + "\r\n\r\n", 431},
      {"overlong path", "GET /" + std::string(16 << 10, 'p') + " HTTP/1.1\r\n\r\n", 414},
  };
  for (const Case& c : cases) {
    const std::string response = HttpExchange(metrics_port, c.request);
    EXPECT_EQ(HttpStatus(response), c.status) << c.what << ": " << response.substr(0, 200);
    ASSERT_FALSE(child->Poll().has_value()) << c.what << " killed the server:\n" << child->Log();
  }
  // A connect-and-leave and a reset connection.
  close(ConnectLoopback(metrics_port));
  const int reset = ConnectLoopback(metrics_port);
  linger hard{1, 0};
  setsockopt(reset, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
  send(reset, "GET /metrics HTTP/1.1\r\n", 23, MSG_NOSIGNAL);
  close(reset);

  std::string body;
  EXPECT_EQ(HttpGet(metrics_port, "/metrics", &body), 200);
  EXPECT_THAT(body, HasSubstr("mtla_kv_cache_blocks_total"));
  EXPECT_EQ(Health(port), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_FALSE(child->Poll().has_value()) << child->Log();
  close(half_sent);
  kill(child->pid(), SIGTERM);
  std::optional<int> exit_status = child->WaitExit(30);
  ASSERT_TRUE(exit_status.has_value());
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << child->Log();
}

TEST(NetworkEdgeTest, BusyPortsStopTheServerAtStartWithAClearMessage) {
  Listener busy;
  ASSERT_GT(busy.port(), 0);
  {
    std::unique_ptr<ChildServer> child =
        Spawn({"--model_dir=" + kModelDir, absl::StrCat("--listen=127.0.0.1:", busy.port()),
               "--metrics_listen=127.0.0.1:0"});
    ASSERT_NE(child, nullptr);
    std::optional<int> exit_status = child->WaitExit(30);
    ASSERT_TRUE(exit_status.has_value()) << "a second server started on a busy port";
    EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) != 0);
    EXPECT_THAT(child->Log(), HasSubstr(absl::StrCat("--listen=127.0.0.1:", busy.port())));
    EXPECT_THAT(child->Log(), HasSubstr("Address already in use"));
  }
  {
    std::unique_ptr<ChildServer> child =
        Spawn({"--model_dir=" + kModelDir, "--listen=127.0.0.1:0",
               absl::StrCat("--metrics_listen=127.0.0.1:", busy.port())});
    ASSERT_NE(child, nullptr);
    std::optional<int> exit_status = child->WaitExit(30);
    ASSERT_TRUE(exit_status.has_value());
    EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) != 0);
    EXPECT_THAT(child->Log(), HasSubstr("--metrics_listen"));
    EXPECT_THAT(child->Log(), HasSubstr("Address already in use"));
  }
  // In process too: the second server's Start() fails, the first keeps its port.
  ServerOptions options;
  options.model_dir = kModelDir;
  options.listen_address = "127.0.0.1:0";
  options.metrics_address = "";
  auto first = MtlaServer::Start(options);
  ASSERT_TRUE(first.ok()) << first.status();
  options.listen_address = absl::StrCat("127.0.0.1:", (*first)->port());
  auto second = MtlaServer::Start(options);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().ToString(), HasSubstr("Address already in use"));
  (*first)->Drain();
}

TEST(NetworkEdgeTest, ModelIsServedUnderItsServedName) {
  for (const auto& [dir, flag, expected] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {kModelDir + "/", "", "en-de-synthetic"},
           {kModelDir, "", "en-de-synthetic"},
           {kModelDir, "prod-en-de", "prod-en-de"}}) {
    ServerOptions options;
    options.model_dir = dir;
    options.served_model_name = flag;
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "127.0.0.1:0";
    options.device = "cpu";
    options.kv_cache_bytes = 8u << 20;
    auto server = MtlaServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    ASSERT_TRUE((*server)->LoadModel().ok());
    v1::ModelInfo info;
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                       grpc::InsecureChannelCredentials());
    ASSERT_TRUE(FetchModelInfo(channel, &info).ok());
    EXPECT_EQ(info.name(), expected) << dir << " / " << flag;
    std::string metrics;
    ASSERT_EQ(HttpGet((*server)->metrics_port(), "/metrics", &metrics), 200);
    EXPECT_TRUE(MetricValue(metrics, "mtla_kv_cache_blocks_total",
                            absl::StrCat("model_name=\"", expected, "\""))
                    .has_value())
        << metrics.substr(0, 2000);
    (*server)->Drain();
  }
  EXPECT_EQ(DefaultServedModelName("/models/en-de///"), "en-de");
  EXPECT_EQ(DefaultServedModelName("relative/dir"), "dir");
}

// The CUDA backend comes as a plugin: with it loaded, a thread with the
// 100 KiB stack civetweb used to give its workers still serves /metrics
// (the CUDA libraries' TLS is not carved out of every thread's stack).
TEST(CudaPluginTest, MetricsServeOnA100KiBStackWithThePluginLoaded) {
  absl::StatusOr<const MtlaBackendPluginV1*> plugin = LoadCudaBackendPlugin();
  if (plugin.status().code() == absl::StatusCode::kNotFound) {
    GTEST_SKIP() << "this build has no CUDA backend plugin (built without nvcc): "
                 << plugin.status();
  }
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  EXPECT_STREQ((*plugin)->name, "cuda");
  ServingMetrics metrics("plugin-test");
  http::MetricsHttpOptions options;
  options.thread_stack_bytes = 100 << 10;
  auto server = http::MetricsHttpServer::Start("127.0.0.1:0", metrics.registry(), options);
  ASSERT_TRUE(server.ok()) << server.status();
  std::string body;
  EXPECT_EQ(HttpGet((*server)->port(), "/metrics", &body), 200);
  EXPECT_THAT(body, HasSubstr("model_name=\"plugin-test\""));
  EXPECT_EQ(HttpStatus(HttpExchange((*server)->port(), "GET / HTTP/1.1\r\n\r\n")), 404);
}

// One binary for both devices: without a usable GPU, auto serves on the CPU
// and says why, cuda stops at start with a clear message.
TEST(CudaPluginTest, DeviceChoiceWithoutAGpu) {
  if (CudaBackendAvailable().ok()) GTEST_SKIP() << "a CUDA device is usable here";
  const int port = FreePort(), metrics_port = FreePort();
  {
    std::unique_ptr<ChildServer> child =
        Spawn({"--model_dir=" + kModelDir, "--device=auto", absl::StrCat("--listen=127.0.0.1:", port),
               absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port)});
    ASSERT_NE(child, nullptr);
    ASSERT_TRUE(WaitFor([&] { return Health(port) == grpc::health::v1::HealthCheckResponse::SERVING; },
                        60, 50))
        << child->Log();
    EXPECT_THAT(child->Log(), HasSubstr("device auto -> cpu ("));
    std::string body;
    EXPECT_EQ(HttpGet(metrics_port, "/metrics", &body), 200);
    EXPECT_EQ(HttpStatus(HttpExchange(metrics_port, "GET / HTTP/1.1\r\n\r\n")), 404);
    kill(child->pid(), SIGTERM);
    std::optional<int> exit_status = child->WaitExit(30);
    ASSERT_TRUE(exit_status.has_value());
    EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << child->Log();
  }
  {
    std::unique_ptr<ChildServer> child =
        Spawn({"--model_dir=" + kModelDir, "--device=cuda", absl::StrCat("--listen=127.0.0.1:", port),
               absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port)});
    ASSERT_NE(child, nullptr);
    std::optional<int> exit_status = child->WaitExit(60);
    ASSERT_TRUE(exit_status.has_value()) << child->Log();
    EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) != 0);
    EXPECT_THAT(child->Log(), HasSubstr("--device=cuda: "));
    EXPECT_THAT(child->Log(), HasSubstr("use --device=cpu or auto"));
  }
}

}  // namespace
}  // namespace mtla
