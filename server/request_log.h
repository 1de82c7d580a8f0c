// One structured line per finished inference call (Generate, Translate,
// StreamingTranslate): a JSON object on one line (JSON Lines), written to
// stderr by one write(2) from the call's completion (OnDone, a gRPC thread),
// never from the engine thread. docs/observability.md documents the fields:
//
//   {"ts":"2026-12-02T17:05:00.123Z","log":"request","request_id":"r-1",
//    "method":"mtla.v1.TextGeneration/Generate","model":"m","status":"ok",
//    "finished_reason":"eos","prompt_tokens":7,"generated_tokens":12,
//    "audio_seconds":null,"segments":null,"queue_seconds":0.001,
//    "ttft_seconds":0.015,"total_seconds":0.084}
//
// Fields that do not apply to a method are null. Audio is never logged; the
// prompt token ids, output token ids and text are added only with
// RequestLogOptions::content, each bounded (kMaxContentChars).
//
// Thread-safety: FormatRequestLogLine is a pure function; RequestLog is
// immutable after construction and Write is thread-safe (one write(2) per line).
#ifndef MTLA_SERVER_REQUEST_LOG_H_
#define MTLA_SERVER_REQUEST_LOG_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/support/status.h"

namespace mtla {

enum class RequestLogLevel { kOff, kErrors, kAll };

// "off" | "errors" | "all" (the --request_log flag); InvalidArgument otherwise.
absl::StatusOr<RequestLogLevel> ParseRequestLogLevel(std::string_view text);

struct RequestLogOptions {
  RequestLogLevel level = RequestLogLevel::kAll;
  bool content = false;  // --request_log_content: token ids and text
};

// What is known about a call when it ends. Negative numbers: not applicable
// (logged as null).
struct CallReport {
  std::string request_id;
  std::string method;             // "mtla.v1.TextGeneration/Generate", ...
  grpc::StatusCode code = grpc::StatusCode::OK;  // as the client saw it
  std::string error;              // the status message when not OK
  std::string finished_reason;    // eos | stop | length | end_of_audio | abort
  int64_t prompt_tokens = -1;
  int64_t generated_tokens = -1;
  double audio_seconds = -1;
  int64_t segments = -1;          // final results of a speech call
  double queue_seconds = -1;
  double ttft_seconds = -1;
  double total_seconds = -1;      // the call's start to its end
  // Content (RequestLogOptions::content only).
  std::vector<int32_t> prompt_token_ids;
  std::vector<int32_t> output_token_ids;
  std::string text;
};

// Longest text (characters) or token list (ids) logged as content.
inline constexpr size_t kMaxContentChars = 4096;

// The line for `report` (with its trailing newline).
std::string FormatRequestLogLine(const CallReport& report, std::string_view model_name,
                                 bool include_content);

class RequestLog {
 public:
  // `sink` receives each whole line; the default writes it to stderr.
  explicit RequestLog(RequestLogOptions options,
                      std::function<void(std::string_view)> sink = nullptr);

  const RequestLogOptions& options() const { return options_; }
  // Writes `report`'s line when the level asks for it.
  void Write(const CallReport& report, std::string_view model_name) const;

 private:
  const RequestLogOptions options_;
  const std::function<void(std::string_view)> sink_;
};

}  // namespace mtla

#endif  // MTLA_SERVER_REQUEST_LOG_H_
