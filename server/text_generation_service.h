// mtla.v1.TextGeneration on the gRPC callback API: each Generate call is a
// write reactor fed by the request's RequestStream. Every call is admitted in
// `control.calls` (RESOURCE_EXHAUSTED over --max_streams, UNAVAILABLE once
// draining) and holds its slot until it ends; a call whose client takes no
// response for control.limits.write_stall_seconds is cancelled.
#ifndef MTLA_SERVER_TEXT_GENERATION_SERVICE_H_
#define MTLA_SERVER_TEXT_GENERATION_SERVICE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "engine/serving/engine.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "server/call_control.h"
#include "server/engine_holder.h"

namespace mtla {

class TextGenerationService final : public v1::TextGeneration::CallbackService {
 public:
  explicit TextGenerationService(std::shared_ptr<EngineHolder> engine, CallControl control = {})
      : engine_(std::move(engine)), control_(std::move(control)) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;

 private:
  std::shared_ptr<EngineHolder> engine_;
  CallControl control_;
};

// Maps the wire request onto the engine's; InvalidArgument names the field.
absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& request);

}  // namespace mtla

#endif  // MTLA_SERVER_TEXT_GENERATION_SERVICE_H_
