// Polling and deadline helpers shared by the integration tests.
#ifndef MTLA_TESTS_COMMON_GRPC_WAIT_H_
#define MTLA_TESTS_COMMON_GRPC_WAIT_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>

#include "grpcpp/grpcpp.h"
#include "mtla/v1/models.grpc.pb.h"

namespace mtla::test_support {

// Polls `pred` every `poll_ms` until it holds or `timeout_seconds` pass; the
// last evaluation is the answer.
template <typename Pred>
bool WaitFor(Pred pred, double timeout_seconds, int poll_ms = 2) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
  }
  return pred();
}

// A gRPC deadline `seconds` from now.
inline std::chrono::system_clock::time_point In(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
}

// mtla.v1.Models/GetModelInfo on `channel`, with a 5 s deadline.
inline grpc::Status FetchModelInfo(const std::shared_ptr<grpc::Channel>& channel,
                                   v1::ModelInfo* info) {
  auto models = v1::Models::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(5.0));
  return models->GetModelInfo(&context, v1::GetModelInfoRequest(), info);
}

}  // namespace mtla::test_support

#endif  // MTLA_TESTS_COMMON_GRPC_WAIT_H_
