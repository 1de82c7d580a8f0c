// mtla.v1.SpeechTranslation on the gRPC callback API: StreamingTranslate is a
// bidirectional reactor around a SpeechSession; Translate runs one session
// over a whole request. The message sequence is the proto's (metadata first,
// then progress and results; see proto/mtla/v1/speech_translation.proto).
// A call while the model loads is UNAVAILABLE; on a model without speech it
// is UNIMPLEMENTED.
//
// Limits and drain: every StreamingTranslate and Translate call is admitted
// in `control.calls` when it starts. Over --max_streams a call ends at once
// with RESOURCE_EXHAUSTED; once the drain stops admission, new calls end with
// UNAVAILABLE, while the admitted ones go on until they half-close and get
// their last result, or until the drain's EndAll ends them with its status.
// A stream that receives nothing for limits.stream_idle_timeout_seconds
// before half-closing ends with OUT_OF_RANGE; one whose client leaves more
// than limits.max_pending_responses (or _bytes) responses unread ends with
// RESOURCE_EXHAUSTED; both free the session at once, and a finished call
// whose client takes nothing for limits.write_stall_seconds is cancelled.
#ifndef MTLA_SERVER_SPEECH_TRANSLATION_SERVICE_H_
#define MTLA_SERVER_SPEECH_TRANSLATION_SERVICE_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/streaming/speech_session.h"
#include "mtla/v1/models.pb.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "server/call_control.h"
#include "server/call_reporter.h"
#include "server/speech_front_end_holder.h"

namespace mtla {

class SpeechTranslationService final : public v1::SpeechTranslation::CallbackService {
 public:
  // `model_name`: the served name TranslationMetadata.model reports;
  // `reporter` (may be null) accounts every call when it ends.
  SpeechTranslationService(std::shared_ptr<SpeechFrontEndHolder> front_end,
                           SpeechSessionOptions defaults, std::string model_name,
                           CallControl control = {},
                           std::shared_ptr<const CallReporter> reporter = nullptr)
      : front_end_(std::move(front_end)),
        defaults_(defaults),
        model_name_(std::move(model_name)),
        control_(std::move(control)),
        reporter_(std::move(reporter)) {}

  grpc::ServerBidiReactor<v1::StreamingTranslateRequest, v1::StreamingTranslateResponse>*
  StreamingTranslate(grpc::CallbackServerContext* context) override;

  grpc::ServerUnaryReactor* Translate(grpc::CallbackServerContext* context,
                                      const v1::TranslateRequest* request,
                                      v1::TranslateResponse* response) override;

 private:
  std::shared_ptr<SpeechFrontEndHolder> front_end_;
  SpeechSessionOptions defaults_;
  const std::string model_name_;
  CallControl control_;
  std::shared_ptr<const CallReporter> reporter_;
};

// The language pair `front_end` serves (empty when its model declares none).
v1::LanguagePair ServedLanguagePair(const SpeechFrontEnd& front_end);

// The call's metadata: `model_name` and the config's languages, or the
// model's own where the config leaves them empty. InvalidArgument naming the
// field ("config.source_language") and listing what the model serves when
// the config names a language the model does not serve (a model that
// declares none accepts only empty languages).
absl::StatusOr<v1::TranslationMetadata> ResolveTranslation(const v1::TranslationConfig& config,
                                                           const SpeechFrontEnd& front_end,
                                                           const std::string& model_name);

// Validates a TranslationConfig against the model (ResolveTranslation's
// language check included) and the server's defaults; InvalidArgument names
// the field ("config.sample_rate_hz", ...).
absl::StatusOr<SpeechSessionOptions> ToSessionOptions(const v1::TranslationConfig& config,
                                                      const SpeechFrontEnd& front_end,
                                                      const SpeechSessionOptions& defaults);

// The first client message of a StreamingTranslate call, as the service
// applies it: it must carry config, which is validated (ToSessionOptions) and
// opens the call's session (`notify` as in SpeechSession::Create). The error
// is the status the call fails with.
absl::StatusOr<std::unique_ptr<SpeechSession>> StartStreamingSession(
    const v1::StreamingTranslateRequest& first, const SpeechFrontEnd& front_end,
    const SpeechSessionOptions& defaults, std::function<void()> notify);

// Every later client message: an audio chunk for `session` (a second config
// is an error). The error is the status the call fails with.
absl::Status ContinueStreamingSession(const v1::StreamingTranslateRequest& request,
                                      SpeechSession& session);

// Wire form of a session update: kind, stability (interim) and alternatives
// (final) included.
v1::SegmentResult ToWire(const SegmentUpdate& update);

}  // namespace mtla

#endif  // MTLA_SERVER_SPEECH_TRANSLATION_SERVICE_H_
