// What the services share to bound their calls: the open-call count
// (--max_streams and the drain), the timer of idle streams and stalled
// writes, the per-call limits, and the metrics that count each limit hit.
#ifndef MTLA_SERVER_CALL_CONTROL_H_
#define MTLA_SERVER_CALL_CONTROL_H_

#include <cstddef>
#include <memory>

#include "engine/metrics/serving_metrics.h"
#include "server/call_timer.h"
#include "server/open_calls.h"

namespace mtla {

struct CallLimits {
  // A StreamingTranslate stream that receives no message for this long
  // (before it half-closes) ends with OUT_OF_RANGE
  // (--stream_idle_timeout_seconds).
  double stream_idle_timeout_seconds = 30;
  // Responses a StreamingTranslate call may have waiting for its client
  // (progress and results the transport has not taken because the client
  // does not read); beyond either bound the call ends with
  // RESOURCE_EXHAUSTED and its session is cancelled.
  int max_pending_responses = 256;
  size_t max_pending_response_bytes = 1u << 20;
  // A call whose write (or final status) the client has not taken this long
  // is cancelled, which frees its slot: the status of a call the server has
  // finished cannot reach a client that does not read.
  double write_stall_seconds = 10;
};

struct CallControl {
  std::shared_ptr<OpenCalls> calls = std::make_shared<OpenCalls>();
  std::shared_ptr<CallTimer> timer = std::make_shared<CallTimer>();
  std::shared_ptr<ServingMetrics> metrics;  // may be null
  CallLimits limits;
};

}  // namespace mtla

#endif  // MTLA_SERVER_CALL_CONTROL_H_
