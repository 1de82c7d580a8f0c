#include "server/call_timer.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace mtla {
namespace {

bool WaitUntil(const std::function<bool()>& done, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

TEST(CallTimerTest, RunsActionsAtTheirDeadlinesInOrder) {
  CallTimer timer;
  std::atomic<int> order{0}, first{0}, second{0};
  int a = 0, b = 0;
  const absl::Time start = absl::Now();
  timer.Schedule(&b, start + absl::Milliseconds(120), [&] { second = ++order; });
  timer.Schedule(&a, start + absl::Milliseconds(40), [&] { first = ++order; });  // earlier: wakes it
  ASSERT_TRUE(WaitUntil([&] { return second.load() != 0; }, 5));
  EXPECT_EQ(first.load(), 1);
  EXPECT_EQ(second.load(), 2);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(120));
  EXPECT_EQ(timer.pending(), 0);
}

TEST(CallTimerTest, PostponeMovesTheDeadlineAndCancelDropsIt) {
  CallTimer timer;
  std::atomic<bool> fired{false}, cancelled_fired{false};
  int a = 0, b = 0;
  const absl::Time start = absl::Now();
  timer.Schedule(&a, start + absl::Milliseconds(50), [&] { fired = true; });
  timer.Schedule(&b, start + absl::Milliseconds(50), [&] { cancelled_fired = true; });
  timer.Cancel(&b);
  for (int i = 0; i < 5; ++i) {  // a stream receiving a message every 20 ms
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    timer.Postpone(&a, absl::Now() + absl::Milliseconds(50));
  }
  EXPECT_FALSE(fired.load());
  ASSERT_TRUE(WaitUntil([&] { return fired.load(); }, 5));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(140));
  EXPECT_FALSE(cancelled_fired.load());
  timer.Postpone(&a, absl::Now());  // nothing pending: no effect
  EXPECT_EQ(timer.pending(), 0);
}

TEST(CallTimerTest, CancelWaitsForARunningActionAndActionsMayReschedule) {
  CallTimer timer;
  std::atomic<bool> running{false}, returned{false};
  std::atomic<int> runs{0};
  int a = 0;
  timer.Schedule(&a, absl::Now(), [&] {
    running = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ++runs;
    // An action may schedule its own key again (the cancel after a grace).
    timer.Schedule(&a, absl::Now() + absl::Hours(1), [&] { ++runs; });
    returned = true;
  });
  ASSERT_TRUE(WaitUntil([&] { return running.load(); }, 5));
  timer.Cancel(&a);  // also drops what the running action scheduled
  EXPECT_TRUE(returned.load());
  EXPECT_EQ(timer.pending(), 0);
  EXPECT_EQ(runs.load(), 1);
}

TEST(CallTimerTest, DestroyingDropsPendingActions) {
  std::atomic<bool> fired{false};
  int a = 0;
  {
    CallTimer timer;
    timer.Schedule(&a, absl::Now() + absl::Hours(1), [&] { fired = true; });
  }
  EXPECT_FALSE(fired.load());
}

}  // namespace
}  // namespace mtla
