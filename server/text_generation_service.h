// mtla.v1.TextGeneration on the gRPC callback API: each Generate call is a
// write reactor fed by the request's RequestStream; Tokenize and Detokenize
// are unary calls on the model's tokenizer (TextFrontEnd). Every Generate
// call is admitted in `control.calls` (RESOURCE_EXHAUSTED over --max_streams,
// UNAVAILABLE once draining) and holds its slot until it ends; a call whose
// client takes no response for control.limits.write_stall_seconds is
// cancelled.
//
// Text: a `prompt` is encoded on the RPC thread (SentencePiece, linear in its
// length); the reactor turns each event's tokens into a text delta with an
// IncrementalDetokenizer of its own, so deltas never end inside a UTF-8
// character and add up to Detokenize of all the call's tokens.
#ifndef MTLA_SERVER_TEXT_GENERATION_SERVICE_H_
#define MTLA_SERVER_TEXT_GENERATION_SERVICE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "engine/serving/engine.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "server/call_reporter.h"
#include "server/call_control.h"
#include "server/engine_holder.h"
#include "server/text_front_end.h"

namespace mtla {

class TextGenerationService final : public v1::TextGeneration::CallbackService {
 public:
  // `text` (may be null): the tokenizer for `prompt` and `text`; `control`:
  // the call limits; `reporter` (may be null) accounts every Generate call
  // when it ends.
  TextGenerationService(std::shared_ptr<EngineHolder> engine,
                        std::shared_ptr<TextFrontEndHolder> text, CallControl control = {},
                        std::shared_ptr<const CallReporter> reporter = nullptr)
      : engine_(std::move(engine)),
        text_(std::move(text)),
        control_(std::move(control)),
        reporter_(std::move(reporter)) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;

 private:
  std::shared_ptr<EngineHolder> engine_;
  std::shared_ptr<TextFrontEndHolder> text_;
  CallControl control_;
  std::shared_ptr<const CallReporter> reporter_;
};

// Maps the wire request onto the engine's; InvalidArgument names the field.
// A `prompt` is encoded with `text`'s tokenizer (BOS first when
// add_bos_token); without one (null, or no tokenizer) it is InvalidArgument.
absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& request,
                                                      const TextFrontEnd* text = nullptr);

// Tokenize / Detokenize on `text` (null or without a tokenizer: Unimplemented).
absl::StatusOr<v1::TokenizeResponse> TokenizeText(const TextFrontEnd* text,
                                                  const v1::TokenizeRequest& request);
absl::StatusOr<v1::DetokenizeResponse> DetokenizeIds(const TextFrontEnd* text,
                                                     const v1::DetokenizeRequest& request);

}  // namespace mtla

#endif  // MTLA_SERVER_TEXT_GENERATION_SERVICE_H_
