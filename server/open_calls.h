// The calls open on the server (Generate, StreamingTranslate, Translate), for
// the --max_streams limit and for the drain: counts them, refuses a call over
// the limit or once the drain begins, and ends those still open when the
// drain's grace period is over. It is the only owner of that count.
//
// A call Admit()s itself when it starts, with a function that ends it, and
// Release()s its entry on every ending path (the reactors do it in OnDone,
// which follows every other reaction). Once Release() returns, that function
// is neither running nor ever called again.
//
// Thread-safety: thread-safe. `end` runs on the thread that calls EndAll,
// holding its entry's lock: it must not call Release() itself (it may finish
// the call, whose cleanup then releases from another thread).
#ifndef MTLA_SERVER_OPEN_CALLS_H_
#define MTLA_SERVER_OPEN_CALLS_H_

#include <functional>
#include <memory>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/metrics/serving_metrics.h"

namespace mtla {

class OpenCalls {
 public:
  class Entry {
   public:
    // Idempotent; waits for an `end` in progress.
    void Release();

   private:
    friend class OpenCalls;
    Entry(OpenCalls* owner, std::function<void(const absl::Status&)> end)
        : owner_(owner), end_(std::move(end)) {}
    OpenCalls* const owner_;
    absl::Mutex mu_;
    std::function<void(const absl::Status&)> end_ ABSL_GUARDED_BY(mu_);  // null once released
  };

  // `max_open` > 0: at most that many calls open at once (--max_streams);
  // 0: no limit. `metrics` (may be null) gets the open count
  // (mtla_open_calls) and each refusal over the limit
  // (mtla_calls_limited_total{reason="max_streams"}).
  explicit OpenCalls(int max_open = 0, std::shared_ptr<ServingMetrics> metrics = nullptr)
      : max_open_(max_open), metrics_(std::move(metrics)) {}
  // Entries still held by calls must not outlive this object.
  OpenCalls(const OpenCalls&) = delete;
  OpenCalls& operator=(const OpenCalls&) = delete;

  // Registers a call. Unavailable once StopAdmitting() ran; ResourceExhausted,
  // naming the limit and --max_streams, while `max_open` calls are open.
  // Nothing is registered on error.
  absl::StatusOr<std::shared_ptr<Entry>> Admit(std::function<void(const absl::Status&)> end);
  // From now on Admit() refuses.
  void StopAdmitting();
  // Calls admitted and not yet released.
  int open() const;
  int max_open() const { return max_open_; }
  // Ends every call still open with `status` (each at most once).
  void EndAll(const absl::Status& status);

 private:
  void PublishOpen() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int max_open_;
  const std::shared_ptr<ServingMetrics> metrics_;
  mutable absl::Mutex mu_;
  bool admitting_ ABSL_GUARDED_BY(mu_) = true;
  std::set<std::shared_ptr<Entry>> open_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mtla

#endif  // MTLA_SERVER_OPEN_CALLS_H_
