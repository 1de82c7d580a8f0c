// One thread that runs the calls' timed actions: the idle-stream timeout and
// the cancel of a finished call whose client does not take its last
// responses. One thread for the whole server, no polling: it sleeps until the
// earliest deadline or until an earlier one is scheduled.
//
// Each call has at most one pending action, under a key (the reactor's
// address). The number of pending actions is bounded by the calls open
// (--max_streams).
//
// Thread-safety: thread-safe. An action runs on the timer's thread with no
// lock of the timer held; it may Schedule or Postpone (any key, its own
// included) but must not Cancel its own key (that waits for it) nor wait for
// anything that waits in Cancel.
#ifndef MTLA_SERVER_CALL_TIMER_H_
#define MTLA_SERVER_CALL_TIMER_H_

#include <functional>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace mtla {

class CallTimer {
 public:
  CallTimer();
  // Stops the thread; pending actions never run.
  ~CallTimer();
  CallTimer(const CallTimer&) = delete;
  CallTimer& operator=(const CallTimer&) = delete;

  // `key`'s action becomes `action`, due at `when` (replacing any pending one).
  void Schedule(const void* key, absl::Time when, std::function<void()> action);
  // Moves `key`'s pending action to `when`; nothing when none is pending.
  // Cheap (no allocation): a stream calls it for every message it receives.
  void Postpone(const void* key, absl::Time when);
  // Drops `key`'s pending action and waits for it if it is running: once
  // Cancel returns, no action of `key` runs or will run (until the next
  // Schedule).
  void Cancel(const void* key);
  // Actions pending (tests).
  int pending() const;

 private:
  struct Pending {
    absl::Time when;
    std::function<void()> action;
  };
  void Run();

  mutable absl::Mutex mu_;
  std::map<const void*, Pending> pending_ ABSL_GUARDED_BY(mu_);
  const void* running_ ABSL_GUARDED_BY(mu_) = nullptr;  // key whose action runs now
  // The deadline the thread sleeps until; a Schedule earlier than it wakes it.
  absl::Time wake_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace mtla

#endif  // MTLA_SERVER_CALL_TIMER_H_
