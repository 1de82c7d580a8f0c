// mtla.v1.TextGeneration on the gRPC callback API: each Generate call is a
// write reactor fed by the request's RequestStream.
#ifndef MTLA_SERVER_TEXT_GENERATION_SERVICE_H_
#define MTLA_SERVER_TEXT_GENERATION_SERVICE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "engine/serving/engine.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "server/call_reporter.h"
#include "server/engine_holder.h"

namespace mtla {

class TextGenerationService final : public v1::TextGeneration::CallbackService {
 public:
  // `reporter` (may be null) accounts every Generate call when it ends.
  explicit TextGenerationService(std::shared_ptr<EngineHolder> engine,
                                 std::shared_ptr<const CallReporter> reporter = nullptr)
      : engine_(std::move(engine)), reporter_(std::move(reporter)) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;

 private:
  std::shared_ptr<EngineHolder> engine_;
  std::shared_ptr<const CallReporter> reporter_;
};

// Maps the wire request onto the engine's; InvalidArgument names the field.
absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& request);

}  // namespace mtla

#endif  // MTLA_SERVER_TEXT_GENERATION_SERVICE_H_
