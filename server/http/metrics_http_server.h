// The Prometheus scrape endpoint: a small HTTP/1.x server that answers
// `GET /metrics` (and HEAD) with the registry in the text exposition format,
// and gives every other request a proper answer: 404 for other paths, 405 for
// other methods on /metrics, 400/414/431/505 for malformed requests, 408 for
// a request that is not complete within the read timeout, 503 when the
// connection limit is reached. Every response closes its connection.
//
// It replaces prometheus-cpp's civetweb exposer, whose worker threads get a
// hard-coded 100 KiB stack from which glibc also carves every library's
// static TLS: with OpenBLAS loaded, a 404 overflowed it and killed the
// process. This server runs on one thread (default stack size unless
// `thread_stack_bytes` says otherwise) with non-blocking sockets and a
// bounded number of connections, each with bounded buffers and deadlines.
//
// Thread-safety: Start() and the destructor from one thread; port() anywhere.
#ifndef MTLA_SERVER_HTTP_METRICS_HTTP_SERVER_H_
#define MTLA_SERVER_HTTP_METRICS_HTTP_SERVER_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include <pthread.h>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"
#include "prometheus/registry.h"

namespace mtla::http {

struct MetricsHttpOptions {
  size_t max_head_bytes = 8192;    // request line + header fields
  int max_connections = 64;        // open at once; beyond that 503
  double read_timeout_seconds = 10;   // until the request head is complete
  double write_timeout_seconds = 10;  // until the response is sent
  size_t thread_stack_bytes = 0;      // 0: the system default
};

class MetricsHttpServer {
 public:
  // Binds `address` ("host:port", "[v6]:port" or ":port"; port 0 picks a free
  // one) and starts serving `registry` (any Collectable). Fails with the reason (address in
  // use, no such address, ...) naming `address`.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, std::shared_ptr<prometheus::Collectable> registry,
      const MetricsHttpOptions& options = {});
  // Stops serving and closes every connection.
  ~MetricsHttpServer();

  int port() const { return port_; }

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

 private:
  MetricsHttpServer() = default;
  static void* ThreadMain(void* self);
  void Serve();

  MetricsHttpOptions options_;
  std::shared_ptr<prometheus::Collectable> registry_;  // a Registry, or several together
  int listen_fd_ = -1;
  int wake_fds_[2] = {-1, -1};  // a pipe: the destructor writes to stop Serve()
  int port_ = 0;
  pthread_t thread_{};
  bool thread_started_ = false;
};

}  // namespace mtla::http

#endif  // MTLA_SERVER_HTTP_METRICS_HTTP_SERVER_H_
