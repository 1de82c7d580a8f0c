#include "server/call_reporter.h"

#include <unistd.h>

#include <atomic>
#include <random>

#include "absl/strings/str_format.h"

namespace mtla {

CallReporter::CallReporter(std::shared_ptr<ServingMetrics> metrics, std::string model_name,
                           RequestLogOptions log_options,
                           std::function<void(std::string_view)> log_sink)
    : metrics_(std::move(metrics)),
      model_name_(std::move(model_name)),
      log_(log_options, std::move(log_sink)) {}

void CallReporter::CallEnded(CallReport report) const {
  if (report.code != grpc::StatusCode::OK) report.finished_reason = "abort";
  if (metrics_) {
    metrics_->CountRequest(StatusLabel(static_cast<int>(report.code)), report.finished_reason);
  }
  log_.Write(report, model_name_);
}

std::string CallRequestId(std::string_view from_request, const grpc::ServerContextBase& context) {
  if (!from_request.empty()) return std::string(from_request);
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("x-request-id"); it != metadata.end() && !it->second.empty()) {
    return std::string(it->second.data(), it->second.size());
  }
  // A random per-process base plus a counter: unique here, unlikely to repeat
  // across replicas.
  static const uint64_t base = [] {
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) ^ device() ^ static_cast<uint64_t>(getpid());
  }();
  static std::atomic<uint64_t> next{0};
  return absl::StrFormat("req-%016x", base + next.fetch_add(1));
}

absl::Status CancellationReason(const grpc::ServerContextBase& context) {
  // The server's deadline timer cancels the call when it passes; a small
  // margin covers the time between the timer and this check.
  if (std::chrono::system_clock::now() + std::chrono::milliseconds(5) >= context.deadline()) {
    return absl::DeadlineExceededError("the client's deadline passed");
  }
  return absl::CancelledError("the call was cancelled");
}

grpc::StatusCode CallOutcome(const grpc::ServerContextBase& context, const grpc::Status& sent) {
  if (context.IsCancelled()) {
    return static_cast<grpc::StatusCode>(CancellationReason(context).code());
  }
  return sent.error_code();
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace mtla
