// The end of every inference call, accounted once: mtla_requests_total{status,
// finished_reason} and the request log line (request_log.h). Services fill a
// CallReport while the call runs and hand it over from the call's OnDone (or,
// for a call refused before it had a reactor, where it is refused).
//
// Also the call-context rules those reports need: which request id a call
// has, and whether a cancelled call was the client's cancel or its deadline.
//
// Thread-safety: CallReporter is immutable after construction; CallEnded is
// thread-safe. It never runs on the engine thread.
#ifndef MTLA_SERVER_CALL_REPORTER_H_
#define MTLA_SERVER_CALL_REPORTER_H_

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "engine/metrics/serving_metrics.h"
#include "grpcpp/server_context.h"
#include "server/request_log.h"

namespace mtla {

class CallReporter {
 public:
  // `metrics` may be null (no counting).
  CallReporter(std::shared_ptr<ServingMetrics> metrics, std::string model_name,
               RequestLogOptions log_options,
               std::function<void(std::string_view)> log_sink = nullptr);

  // Whether reports should carry content (token ids, text).
  bool wants_content() const { return log_.options().content; }
  // Counts the call and logs its line. `report.finished_reason` is replaced
  // by "abort" when the status is not OK.
  void CallEnded(CallReport report) const;

 private:
  std::shared_ptr<ServingMetrics> metrics_;
  std::string model_name_;
  RequestLog log_;
};

// The call's request id: `from_request` when not empty, else the call's
// `x-request-id` metadata, else a new id unique in this process ("req-" and
// 16 hex digits).
std::string CallRequestId(std::string_view from_request, const grpc::ServerContextBase& context);

// Why a cancelled call ended: DeadlineExceeded when the client's deadline has
// passed, else Cancelled (the client cancelled or went away).
absl::Status CancellationReason(const grpc::ServerContextBase& context);

// The status the client saw: `sent` unless the call was cancelled (then
// CancellationReason's code). Call from OnDone.
grpc::StatusCode CallOutcome(const grpc::ServerContextBase& context, const grpc::Status& sent);

// Seconds since `start` (steady clock).
double SecondsSince(std::chrono::steady_clock::time_point start);

}  // namespace mtla

#endif  // MTLA_SERVER_CALL_REPORTER_H_
