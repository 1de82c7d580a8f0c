// The per-request output channel between the engine thread (producer) and the
// RPC handler (consumer), and the cancellation flag going the other way.
//
// Tokens the consumer has not taken yet are coalesced into one pending
// event, so a slow consumer costs at most the request's generated tokens
// (max_new_tokens) here, never a queue of events.
//
// Thread-safety: all methods are thread-safe.
#ifndef MTLA_ENGINE_SERVING_REQUEST_STREAM_H_
#define MTLA_ENGINE_SERVING_REQUEST_STREAM_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "engine/sampling/sampler.h"

namespace mtla {

struct RequestTiming {
  double queue_seconds = 0;
  double time_to_first_token_seconds = 0;
  double total_seconds = 0;
  int num_preemptions = 0;
};

// One finished hypothesis of a beam search: its tokens (ending with EOS) and
// its normalized score (BeamHypothesis::score).
struct ScoredHypothesis {
  std::vector<int32_t> tokens;
  double score = 0;
};

// What the consumer reads: tokens produced since the last read and, once, the
// end of the request.
struct GenerationEvent {
  std::vector<int32_t> tokens;
  bool finished = false;       // terminal: nothing follows
  absl::Status status;         // non-OK only on a terminal failure
  FinishReason finish_reason = FinishReason::kNone;
  int prompt_tokens = 0;
  int generated_tokens = 0;
  RequestTiming timing;
  // Beam-search requests, on the terminal event of a success: every
  // hypothesis the search finished, best first (the first one's tokens are
  // the request's output).
  std::vector<ScoredHypothesis> hypotheses;
};

class RequestStream {
 public:
  // --- producer (engine thread) ---
  void PushTokens(const std::vector<int32_t>& tokens);
  void Finish(FinishReason reason, int prompt_tokens, int generated_tokens,
              const RequestTiming& timing);
  void Fail(const absl::Status& status);
  // Before Finish: the hypotheses its event carries (see GenerationEvent).
  void SetHypotheses(std::vector<ScoredHypothesis> hypotheses);

  // --- consumer ---
  // Called after new data arrives, from the producer's thread. Replaces any
  // previous listener; an empty function removes it. Once SetListener returns,
  // the previous listener is not running and will not run again, so a consumer
  // may destroy what it captured.
  void SetListener(std::function<void()> listener);
  // Moves everything pending into `event`; false when nothing is pending.
  bool Pop(GenerationEvent* event);
  // Blocks until something is pending or `timeout_seconds` passes; then Pop.
  bool WaitPop(GenerationEvent* event, double timeout_seconds);
  // Asks the engine to stop the request at its next step; the engine ends it
  // with `reason` (Cancelled, or DeadlineExceeded when the client's deadline
  // passed). The first reason given wins.
  void Cancel(absl::Status reason = absl::CancelledError("request cancelled by the client"))
      ABSL_LOCKS_EXCLUDED(mu_);
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }
  // The status the request was cancelled with; OK when it was not.
  absl::Status cancel_reason() const ABSL_LOCKS_EXCLUDED(mu_);
  bool finished() const;

 private:
  void Notify();
  mutable absl::Mutex mu_;
  GenerationEvent pending_ ABSL_GUARDED_BY(mu_);
  bool has_pending_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<ScoredHypothesis> hypotheses_ ABSL_GUARDED_BY(mu_);  // until Finish
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status cancel_reason_ ABSL_GUARDED_BY(mu_);
  // Held while the listener runs, so that replacing it waits for a running call.
  absl::Mutex listener_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::function<void()> listener_ ABSL_GUARDED_BY(listener_mu_);
  std::atomic<bool> cancelled_{false};
};

}  // namespace mtla

#endif  // MTLA_ENGINE_SERVING_REQUEST_STREAM_H_
