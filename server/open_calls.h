// The open calls of a streaming service, for the drain: counts them, refuses
// new ones once the drain begins, and ends those still open when the grace
// period is over.
//
// A call Admit()s itself when it starts, with a function that ends it, and
// Release()s its entry before it is destroyed. Once Release() returns, that
// function is neither running nor ever called again.
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
#include "absl/synchronization/mutex.h"

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

  // Registers a call; null (nothing registered) once StopAdmitting() ran.
  std::shared_ptr<Entry> Admit(std::function<void(const absl::Status&)> end);
  // From now on Admit() refuses.
  void StopAdmitting();
  // Calls admitted and not yet released.
  int open() const;
  // Ends every call still open with `status` (each at most once).
  void EndAll(const absl::Status& status);

 private:
  mutable absl::Mutex mu_;
  bool admitting_ ABSL_GUARDED_BY(mu_) = true;
  std::set<std::shared_ptr<Entry>> open_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mtla

#endif  // MTLA_SERVER_OPEN_CALLS_H_
