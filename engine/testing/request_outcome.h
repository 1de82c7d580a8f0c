// For engine tests: everything one request produced, read from its
// RequestStream until the terminal event. Header-only; the test links the
// serving library.
#ifndef MTLA_ENGINE_TESTING_REQUEST_OUTCOME_H_
#define MTLA_ENGINE_TESTING_REQUEST_OUTCOME_H_

#include <chrono>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/serving/request_stream.h"

namespace mtla::test_support {

struct RequestOutcome {
  std::vector<int32_t> tokens;
  absl::Status status;
  bool finished = false;  // a terminal event arrived within the time limit
  FinishReason finish_reason = FinishReason::kNone;
  int prompt_tokens = 0;
  int generated_tokens = 0;
  int events = 0;
  RequestTiming timing;
};

// Reads `stream` until its terminal event or `timeout_seconds` in all.
inline RequestOutcome DrainStream(RequestStream& stream, double timeout_seconds = 20.0) {
  RequestOutcome out;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  while (!out.finished && std::chrono::steady_clock::now() < deadline) {
    GenerationEvent event;
    if (!stream.WaitPop(&event, 0.05)) continue;
    ++out.events;
    out.tokens.insert(out.tokens.end(), event.tokens.begin(), event.tokens.end());
    if (event.finished) {
      out.finished = true;
      out.status = event.status;
      out.finish_reason = event.finish_reason;
      out.prompt_tokens = event.prompt_tokens;
      out.generated_tokens = event.generated_tokens;
      out.timing = event.timing;
    }
  }
  return out;
}

}  // namespace mtla::test_support

#endif  // MTLA_ENGINE_TESTING_REQUEST_OUTCOME_H_
