// gRPC status codes by name, for error messages people and scripts read:
// "INVALID_ARGUMENT: max_new_tokens must be positive".
#ifndef MTLA_TOOLS_COMMON_GRPC_STATUS_TEXT_H_
#define MTLA_TOOLS_COMMON_GRPC_STATUS_TEXT_H_

#include <string>

#include "grpcpp/support/status.h"

namespace mtla {

// The canonical name of `code` ("OK", "DEADLINE_EXCEEDED", ...); a code outside
// the canonical ones is "CODE_<number>".
std::string GrpcStatusCodeName(grpc::StatusCode code);

// "NAME: message", or "NAME" when the message is empty.
std::string GrpcStatusText(const grpc::Status& status);

}  // namespace mtla

#endif  // MTLA_TOOLS_COMMON_GRPC_STATUS_TEXT_H_
