#include "server/http/metrics_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "tests/common/metrics_scrape.h"

namespace mtla::http {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using test_support::ConnectLoopback;
using test_support::HttpExchange;
using test_support::HttpGet;
using test_support::HttpStatus;

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void StartServer(MetricsHttpOptions options = {}) {
    registry_ = std::make_shared<prometheus::Registry>();
    prometheus::BuildCounter().Name("mtla_test_total").Help("a test counter").Register(*registry_)
        .Add({})
        .Increment(3);
    auto server = MetricsHttpServer::Start("127.0.0.1:0", registry_, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
  }
  void ExpectMetricsServed() {
    std::string body;
    ASSERT_EQ(HttpGet(server_->port(), "/metrics", &body), 200);
    EXPECT_THAT(body, HasSubstr("mtla_test_total 3"));
  }

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsHttpServerTest, ServesMetricsToGetAndHead) {
  StartServer();
  ExpectMetricsServed();
  const std::string head = HttpExchange(server_->port(), "HEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(HttpStatus(head), 200);
  EXPECT_THAT(head, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(head, Not(HasSubstr("mtla_test_total")));
  const std::string http10 = HttpExchange(server_->port(), "GET /metrics?debug=1 HTTP/1.0\r\n\r\n");
  EXPECT_EQ(HttpStatus(http10), 200);
  EXPECT_THAT(http10, HasSubstr("mtla_test_total 3"));
}

TEST_F(MetricsHttpServerTest, AnswersEveryOtherRequestAndKeepsServing) {
  StartServer();
  const int port = server_->port();
  struct Case {
    std::string request;
    int status;
  };
  const std::string big_header =
      "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(20000, 'x') + "\r\n\r\n";
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 404},
      {"GET /health HTTP/1.1\r\n\r\n", 404},
      {"GET /metrics/ HTTP/1.1\r\n\r\n", 404},
      {"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 405},
      {"PUT /metrics HTTP/1.1\r\n\r\n", 405},
      {"DELETE / HTTP/1.1\r\n\r\n", 404},
      {"OPTIONS * HTTP/1.1\r\n\r\n", 404},
      {"GET /metrics HTTP/2.0\r\n\r\n", 505},
      {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
      {std::string("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 11), 400},  // TLS
      {"\x16\x03\x01", 400},
      {"hello\r\n\r\n", 400},
      {big_header, 431},
      {"GET /" + std::string(10000, 'a') + " HTTP/1.1\r\n\r\n", 414},
  };
  for (const Case& c : cases) {
    const std::string response = HttpExchange(port, c.request);
    EXPECT_EQ(HttpStatus(response), c.status) << c.request.substr(0, 60) << "\n-> " << response;
    EXPECT_THAT(response, HasSubstr("Connection: close"));
  }
  EXPECT_THAT(HttpExchange(port, "POST /metrics HTTP/1.1\r\n\r\n"), HasSubstr("Allow: GET, HEAD"));
  // A client that connects and leaves, and one that sends half a line.
  int fd = ConnectLoopback(port);
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_EQ(HttpExchange(port, "GET /met", /*wait_seconds=*/0.2), "");
  ExpectMetricsServed();
}

TEST_F(MetricsHttpServerTest, HalfSentRequestTimesOut) {
  MetricsHttpOptions options;
  options.read_timeout_seconds = 0.3;
  StartServer(options);
  const auto start = std::chrono::steady_clock::now();
  const std::string response = HttpExchange(server_->port(), "GET /metrics HTTP/1.1\r\nHost:", 5);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(HttpStatus(response), 408) << response;
  EXPECT_GE(seconds, 0.25);
  EXPECT_LT(seconds, 4);
  ExpectMetricsServed();
}

TEST_F(MetricsHttpServerTest, RefusesConnectionsBeyondTheLimit) {
  MetricsHttpOptions options;
  options.max_connections = 2;
  options.read_timeout_seconds = 2;
  StartServer(options);
  std::vector<int> idle;
  for (int i = 0; i < 2; ++i) {
    idle.push_back(ConnectLoopback(server_->port()));
    ASSERT_GE(idle.back(), 0);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // accepted
  EXPECT_EQ(HttpStatus(HttpExchange(server_->port(), "GET /metrics HTTP/1.1\r\n\r\n")), 503);
  for (int fd : idle) close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // closed
  ExpectMetricsServed();
}

TEST_F(MetricsHttpServerTest, BusyPortIsAnErrorNamingTheAddress) {
  StartServer();
  const std::string address = "127.0.0.1:" + std::to_string(server_->port());
  auto second = MetricsHttpServer::Start(address, registry_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(address));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("in use"));
  for (const char* bad : {"9090", "[::1", "host:port", "127.0.0.1:70000"}) {
    EXPECT_EQ(MetricsHttpServer::Start(bad, registry_).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  ExpectMetricsServed();
}

// civetweb gave its threads 100 KiB of stack, which static TLS could eat up;
// the endpoint must work on such a small stack too.
TEST_F(MetricsHttpServerTest, ServesOnA100KiBStack) {
  MetricsHttpOptions options;
  options.thread_stack_bytes = 100 << 10;
  StartServer(options);
  EXPECT_EQ(HttpStatus(HttpExchange(server_->port(), "GET / HTTP/1.1\r\n\r\n")), 404);
  ExpectMetricsServed();
}

}  // namespace
}  // namespace mtla::http
