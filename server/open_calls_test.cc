#include "server/open_calls.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace mtla {
namespace {

TEST(OpenCallsTest, CountsAdmittedCallsUntilReleased) {
  OpenCalls calls;
  auto a = *calls.Admit([](const absl::Status&) {});
  auto b = *calls.Admit([](const absl::Status&) {});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(calls.open(), 2);
  a->Release();
  a->Release();  // idempotent
  EXPECT_EQ(calls.open(), 1);
  b->Release();
  EXPECT_EQ(calls.open(), 0);
}

TEST(OpenCallsTest, RefusesNewCallsOnceDrainingAndKeepsOpenOnes) {
  OpenCalls calls;
  auto open = *calls.Admit([](const absl::Status&) {});
  calls.StopAdmitting();
  const absl::StatusOr<std::shared_ptr<OpenCalls::Entry>> refused =
      calls.Admit([](const absl::Status&) {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(calls.open(), 1);
  open->Release();
  EXPECT_EQ(calls.open(), 0);
}

TEST(OpenCallsTest, EndAllEndsOpenCallsOnceAndNeverReleasedOnes) {
  OpenCalls calls;
  int ended = 0, released_ended = 0;
  absl::Status seen;
  auto a = *calls.Admit([&](const absl::Status& s) {
    ++ended;
    seen = s;
  });
  auto b = *calls.Admit([&](const absl::Status&) { ++released_ended; });
  b->Release();
  calls.EndAll(absl::UnavailableError("grace period over"));
  calls.EndAll(absl::UnavailableError("again"));
  EXPECT_EQ(ended, 1);
  EXPECT_EQ(released_ended, 0);
  EXPECT_EQ(seen.message(), "grace period over");
  a->Release();
  EXPECT_EQ(calls.open(), 0);
}

TEST(OpenCallsTest, ReleaseWaitsForAnEndInProgress) {
  OpenCalls calls;
  std::atomic<bool> in_end{false}, end_returned{false};
  auto entry = *calls.Admit([&](const absl::Status&) {
    in_end.store(true);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    end_returned.store(true);
  });
  std::thread drain([&] { calls.EndAll(absl::UnavailableError("over")); });
  while (!in_end.load()) std::this_thread::yield();
  entry->Release();  // the call's cleanup, on another thread
  EXPECT_TRUE(end_returned.load());
  drain.join();
}

TEST(OpenCallsTest, RefusesCallsOverTheLimitAndCountsThem) {
  auto metrics = std::make_shared<ServingMetrics>("m");
  OpenCalls calls(/*max_open=*/2, metrics);
  auto a = *calls.Admit([](const absl::Status&) {});
  auto b = *calls.Admit([](const absl::Status&) {});
  const absl::StatusOr<std::shared_ptr<OpenCalls::Entry>> refused =
      calls.Admit([](const absl::Status&) {});
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("at most 2"), std::string::npos);
  EXPECT_NE(refused.status().message().find("--max_streams"), std::string::npos);
  EXPECT_EQ(calls.open(), 2);
  EXPECT_EQ(metrics->calls_limited("max_streams"), 1);
  a->Release();  // the slot comes back
  auto c = calls.Admit([](const absl::Status&) {});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(calls.open(), 2);
  b->Release();
  (*c)->Release();
  EXPECT_EQ(calls.open(), 0);
}

TEST(OpenCallsTest, ZeroMeansNoLimit) {
  OpenCalls calls(0);
  std::vector<std::shared_ptr<OpenCalls::Entry>> entries;
  for (int i = 0; i < 1000; ++i) entries.push_back(*calls.Admit([](const absl::Status&) {}));
  EXPECT_EQ(calls.open(), 1000);
  for (auto& e : entries) e->Release();
  EXPECT_EQ(calls.open(), 0);
}

}  // namespace
}  // namespace mtla
