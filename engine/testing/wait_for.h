// Polling for tests: WaitFor(pred, seconds) re-evaluates `pred` every
// `poll_ms` until it holds or the time is up; the last evaluation is the
// answer. Header-only.
#ifndef MTLA_ENGINE_TESTING_WAIT_FOR_H_
#define MTLA_ENGINE_TESTING_WAIT_FOR_H_

#include <chrono>
#include <thread>

namespace mtla::test_support {

template <typename Pred>
bool WaitFor(Pred pred, double timeout_seconds, int poll_ms = 2) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
  }
  return pred();
}

}  // namespace mtla::test_support

#endif  // MTLA_ENGINE_TESTING_WAIT_FOR_H_
