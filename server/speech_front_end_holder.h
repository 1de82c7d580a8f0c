// The speech front end slot shared by the speech service and the server:
// empty while the model loads; once it is loaded, the speech model's front
// end, or a mark that the loaded model serves no speech.
//
// Thread-safety: thread-safe.
#ifndef MTLA_SERVER_SPEECH_FRONT_END_HOLDER_H_
#define MTLA_SERVER_SPEECH_FRONT_END_HOLDER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/streaming/speech_session.h"

namespace mtla {

class SpeechFrontEndHolder {
 public:
  // The model is loaded: `front_end` serves speech; null for a model that
  // does not (a text model).
  void Set(std::shared_ptr<const SpeechFrontEnd> front_end) {
    absl::MutexLock lock(&mu_);
    front_end_ = std::move(front_end);
    loaded_ = true;
  }
  // Null while loading or for a model without speech.
  std::shared_ptr<const SpeechFrontEnd> Get() const {
    absl::MutexLock lock(&mu_);
    return front_end_;
  }
  // The front end a new speech call uses: Unavailable while the model loads
  // (retrying helps), Unimplemented when the loaded model serves no speech
  // (retrying does not).
  absl::StatusOr<std::shared_ptr<const SpeechFrontEnd>> ForCall() const {
    absl::MutexLock lock(&mu_);
    if (!loaded_) return absl::UnavailableError("the model is still loading; retry shortly");
    if (front_end_ == nullptr) {
      return absl::UnimplementedError(
          "the served model is a text model: it does not translate speech (use "
          "TextGeneration.Generate, or a server with a speech-translation model)");
    }
    return front_end_;
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const SpeechFrontEnd> front_end_ ABSL_GUARDED_BY(mu_);
  bool loaded_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace mtla

#endif  // MTLA_SERVER_SPEECH_FRONT_END_HOLDER_H_
