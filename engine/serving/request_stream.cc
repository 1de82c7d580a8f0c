#include "engine/serving/request_stream.h"

namespace mtla {

void RequestStream::Notify() {
  absl::MutexLock lock(&listener_mu_);
  if (listener_) listener_();
}

void RequestStream::PushTokens(const std::vector<int32_t>& tokens) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    pending_.tokens.insert(pending_.tokens.end(), tokens.begin(), tokens.end());
    has_pending_ = true;
  }
  Notify();
}

void RequestStream::Finish(FinishReason reason, int prompt_tokens, int generated_tokens,
                           const RequestTiming& timing) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    pending_.finished = true;
    pending_.finish_reason = reason;
    pending_.prompt_tokens = prompt_tokens;
    pending_.generated_tokens = generated_tokens;
    pending_.timing = timing;
    pending_.hypotheses = std::move(hypotheses_);
    has_pending_ = true;
  }
  Notify();
}

void RequestStream::SetHypotheses(std::vector<ScoredHypothesis> hypotheses) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  hypotheses_ = std::move(hypotheses);  // Finish hands them over
}

void RequestStream::Fail(const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    pending_.finished = true;
    pending_.status = status;
    has_pending_ = true;
  }
  Notify();
}

void RequestStream::SetListener(std::function<void()> listener) {
  absl::MutexLock lock(&listener_mu_);
  listener_ = std::move(listener);
}

bool RequestStream::Pop(GenerationEvent* event) {
  absl::MutexLock lock(&mu_);
  if (!has_pending_) return false;
  *event = std::move(pending_);
  pending_ = GenerationEvent();
  has_pending_ = false;
  return true;
}

bool RequestStream::WaitPop(GenerationEvent* event, double timeout_seconds) {
  {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&has_pending_), absl::Seconds(timeout_seconds));
  }
  return Pop(event);
}

void RequestStream::Cancel(absl::Status reason) {
  {
    absl::MutexLock lock(&mu_);
    if (cancel_reason_.ok()) {
      cancel_reason_ = reason.ok() ? absl::CancelledError("request cancelled") : std::move(reason);
    }
  }
  cancelled_.store(true, std::memory_order_release);
}

absl::Status RequestStream::cancel_reason() const {
  absl::MutexLock lock(&mu_);
  return cancel_reason_;
}

bool RequestStream::finished() const {
  absl::MutexLock lock(&mu_);
  return finished_;
}

}  // namespace mtla
