#include "tools/bench/timer_thread.h"

#include <utility>

#include "absl/time/time.h"
#include "tools/bench/scenario.h"

namespace mtla::bench {

TimerThread::TimerThread() : thread_([this] { Loop(); }) {}

TimerThread::~TimerThread() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  thread_.join();
}

void TimerThread::At(double steady_s, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  due_.emplace(steady_s, std::move(fn));
  cv_.SignalAll();
}

void TimerThread::Loop() {
  mu_.Lock();
  while (!stop_) {
    if (due_.empty()) {
      cv_.Wait(&mu_);
      continue;
    }
    const double wait_s = due_.begin()->first - SteadySeconds();
    if (wait_s > 0) {
      cv_.WaitWithTimeout(&mu_, absl::Seconds(wait_s));
      continue;  // re-check: an earlier callback may have been added
    }
    std::function<void()> fn = std::move(due_.begin()->second);
    due_.erase(due_.begin());
    mu_.Unlock();
    fn();
    fn = nullptr;  // release what the callback holds before taking the lock
    mu_.Lock();
  }
  mu_.Unlock();
}

}  // namespace mtla::bench
