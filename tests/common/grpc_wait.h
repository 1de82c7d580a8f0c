// Polling and deadline helpers shared by the integration tests.
#ifndef MTLA_TESTS_COMMON_GRPC_WAIT_H_
#define MTLA_TESTS_COMMON_GRPC_WAIT_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>

#include "engine/testing/wait_for.h"
#include "grpcpp/grpcpp.h"
#include "mtla/v1/models.grpc.pb.h"

namespace mtla::test_support {


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
