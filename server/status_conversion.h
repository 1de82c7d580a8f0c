// absl::Status -> grpc::Status, used only at the service boundary.
#ifndef MTLA_SERVER_STATUS_CONVERSION_H_
#define MTLA_SERVER_STATUS_CONVERSION_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace mtla {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

}  // namespace mtla

#endif  // MTLA_SERVER_STATUS_CONVERSION_H_
