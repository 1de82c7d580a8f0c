// grpc.reflection.v1.ServerReflection, for clients (grpcurl, grpc_cli,
// Postman, grpcio-reflection) that ask the v1 name. gRPC 1.51's reflection
// plugin serves only grpc.reflection.v1alpha, whose messages are the same; the
// server registers both. Answers come from the process's generated descriptor
// pool, as the v1alpha plugin's do.
//
// Thread-safety: thread-safe (immutable after construction).
#ifndef MTLA_SERVER_REFLECTION_V1_SERVICE_H_
#define MTLA_SERVER_REFLECTION_V1_SERVICE_H_

#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace mtla {

class ReflectionV1Service final : public grpc::reflection::v1::ServerReflection::Service {
 public:
  // `service_names`: the fully qualified names list_services answers (the
  // server's services, this one included).
  explicit ReflectionV1Service(std::vector<std::string> service_names)
      : service_names_(std::move(service_names)) {}

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                               grpc::reflection::v1::ServerReflectionRequest>* stream) override;

  // One answer, without the stream (an unknown file, symbol or type is an
  // error_response with NOT_FOUND, as in v1alpha).
  grpc::reflection::v1::ServerReflectionResponse Answer(
      const grpc::reflection::v1::ServerReflectionRequest& request) const;

 private:
  const std::vector<std::string> service_names_;
};

}  // namespace mtla

#endif  // MTLA_SERVER_REFLECTION_V1_SERVICE_H_
