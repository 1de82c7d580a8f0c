// mtla.v1.SpeechTranslation on the gRPC callback API: StreamingTranslate is a
// bidirectional reactor around a SpeechSession; Translate runs one session
// over a whole request.
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

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/streaming/speech_session.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "server/call_control.h"

namespace mtla {

// The speech front end, set once the model is loaded (empty while loading or
// for a text-only model).
class SpeechFrontEndHolder {
 public:
  void Set(std::shared_ptr<const SpeechFrontEnd> front_end) {
    absl::MutexLock lock(&mu_);
    front_end_ = std::move(front_end);
  }
  std::shared_ptr<const SpeechFrontEnd> Get() const {
    absl::MutexLock lock(&mu_);
    return front_end_;
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const SpeechFrontEnd> front_end_ ABSL_GUARDED_BY(mu_);
};

class SpeechTranslationService final : public v1::SpeechTranslation::CallbackService {
 public:
  SpeechTranslationService(std::shared_ptr<SpeechFrontEndHolder> front_end,
                           SpeechSessionOptions defaults, CallControl control = {})
      : front_end_(std::move(front_end)), defaults_(defaults), control_(std::move(control)) {}

  grpc::ServerBidiReactor<v1::StreamingTranslateRequest, v1::StreamingTranslateResponse>*
  StreamingTranslate(grpc::CallbackServerContext* context) override;

  grpc::ServerUnaryReactor* Translate(grpc::CallbackServerContext* context,
                                      const v1::TranslateRequest* request,
                                      v1::TranslateResponse* response) override;

 private:
  std::shared_ptr<SpeechFrontEndHolder> front_end_;
  SpeechSessionOptions defaults_;
  CallControl control_;
};

// Validates a TranslationConfig against the model and the server's defaults;
// InvalidArgument names the field ("config.sample_rate_hz", ...).
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

// Wire form of a session update.
v1::SegmentResult ToWire(const SegmentUpdate& update);

}  // namespace mtla

#endif  // MTLA_SERVER_SPEECH_TRANSLATION_SERVICE_H_
