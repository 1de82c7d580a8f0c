#include "server/call_timer.h"

#include <utility>

namespace mtla {

CallTimer::CallTimer() : thread_([this] { Run(); }) {}

CallTimer::~CallTimer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void CallTimer::Schedule(const void* key, absl::Time when, std::function<void()> action) {
  absl::MutexLock lock(&mu_);
  pending_[key] = Pending{when, std::move(action)};
  if (when < wake_at_) wake_ = true;
}

void CallTimer::Postpone(const void* key, absl::Time when) {
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(key);
  if (it == pending_.end()) return;
  it->second.when = when;
  if (when < wake_at_) wake_ = true;
}

void CallTimer::Cancel(const void* key) {
  absl::MutexLock lock(&mu_);
  // First wait for a running action (it may schedule its key again), then
  // drop what is pending.
  auto not_running = [this, key]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ != key; };
  mu_.Await(absl::Condition(&not_running));
  pending_.erase(key);
}

int CallTimer::pending() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(pending_.size());
}

void CallTimer::Run() {
  absl::MutexLock lock(&mu_);
  auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || wake_; };
  while (!stop_) {
    // The earliest deadline: a scan, the map holding at most one entry per
    // open call, done once per wake-up (not per Postpone).
    auto earliest = pending_.end();
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if (earliest == pending_.end() || it->second.when < earliest->second.when) earliest = it;
    }
    const absl::Time now = absl::Now();
    if (earliest != pending_.end() && earliest->second.when <= now) {
      const void* key = earliest->first;
      std::function<void()> action = std::move(earliest->second.action);
      pending_.erase(earliest);
      running_ = key;
      mu_.Unlock();
      action();
      action = nullptr;  // destroy what it captured before Cancel may return
      mu_.Lock();
      running_ = nullptr;
      continue;
    }
    wake_at_ = earliest == pending_.end() ? absl::InfiniteFuture() : earliest->second.when;
    wake_ = false;
    mu_.AwaitWithDeadline(absl::Condition(&woken), wake_at_);
  }
}

}  // namespace mtla
