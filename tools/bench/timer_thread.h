// One background thread that runs callbacks at given times, for pacing
// many concurrent streams without a thread per stream.
//
// Thread-safe. Callbacks run one at a time on the timer's own thread, in the
// order of their due times (ties in order of scheduling), and must not block:
// they start asynchronous work and return. Destroying the timer joins its
// thread; callbacks not yet run are destroyed without running.
#ifndef MTLA_TOOLS_BENCH_TIMER_THREAD_H_
#define MTLA_TOOLS_BENCH_TIMER_THREAD_H_

#include <functional>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace mtla::bench {

class TimerThread {
 public:
  TimerThread();
  ~TimerThread();
  TimerThread(const TimerThread&) = delete;
  TimerThread& operator=(const TimerThread&) = delete;

  // Runs `fn` at `steady_s` (SteadySeconds() clock), or as soon as possible
  // when that time has passed.
  void At(double steady_s, std::function<void()> fn);

 private:
  void Loop();

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::multimap<double, std::function<void()>> due_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace mtla::bench

#endif  // MTLA_TOOLS_BENCH_TIMER_THREAD_H_
