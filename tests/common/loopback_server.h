// An in-process mtla-server on a loopback port for the integration tests:
// CPU backend, no metrics endpoint, a small KV cache. The model is not loaded
// (call LoadModel() when the test needs it served).
#ifndef MTLA_TESTS_COMMON_LOOPBACK_SERVER_H_
#define MTLA_TESTS_COMMON_LOOPBACK_SERVER_H_

#include <cstddef>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "server/mtla_server.h"

namespace mtla::test_support {

// Null (with a test failure recorded) when the server does not start.
inline std::unique_ptr<MtlaServer> StartLoopbackServer(const std::string& model_dir,
                                                       size_t kv_cache_bytes = 16u << 20) {
  ServerOptions options;
  options.model_dir = model_dir;
  options.listen_address = "127.0.0.1:0";
  options.metrics_address = "";
  options.device = "cpu";
  options.kv_cache_bytes = kv_cache_bytes;
  auto server = MtlaServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

inline std::shared_ptr<grpc::Channel> ConnectLoopback(const MtlaServer& server) {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", server.port()),
                             grpc::InsecureChannelCredentials());
}

}  // namespace mtla::test_support

#endif  // MTLA_TESTS_COMMON_LOOPBACK_SERVER_H_
