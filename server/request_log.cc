#include "server/request_log.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/metrics/serving_metrics.h"

namespace mtla {
namespace {

// `text` as a JSON string, cut at kMaxContentChars (a cut never splits a
// UTF-8 sequence: it backs up to a lead byte).
void AppendJsonString(std::string* out, std::string_view text) {
  if (text.size() > kMaxContentChars) {
    size_t cut = kMaxContentChars;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text = text.substr(0, cut);
  }
  out->push_back('"');
  for (const char c : text) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", static_cast<unsigned char>(c));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void AppendField(std::string* out, std::string_view name) {
  out->append(",\"").append(name).append("\":");
}

void AppendCount(std::string* out, std::string_view name, int64_t value) {
  AppendField(out, name);
  if (value < 0) {
    out->append("null");
  } else {
    absl::StrAppend(out, value);
  }
}

void AppendSeconds(std::string* out, std::string_view name, double value) {
  AppendField(out, name);
  if (value < 0 || !std::isfinite(value)) {
    out->append("null");
  } else {
    absl::StrAppendFormat(out, "%.6f", value);
  }
}

void AppendIds(std::string* out, std::string_view name, const std::vector<int32_t>& ids) {
  AppendField(out, name);
  out->push_back('[');
  const size_t n = std::min(ids.size(), kMaxContentChars);
  for (size_t i = 0; i < n; ++i) absl::StrAppend(out, i ? "," : "", ids[i]);
  out->push_back(']');
}

void WriteToStderr(std::string_view line) {
  // One write per line, so that lines of concurrent calls do not interleave.
  while (!line.empty()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to log: drop the line
    line.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

absl::StatusOr<RequestLogLevel> ParseRequestLogLevel(std::string_view text) {
  if (text == "off") return RequestLogLevel::kOff;
  if (text == "errors") return RequestLogLevel::kErrors;
  if (text == "all") return RequestLogLevel::kAll;
  return absl::InvalidArgumentError(
      absl::StrCat("--request_log must be off, errors or all, got '", std::string(text), "'"));
}

std::string FormatRequestLogLine(const CallReport& r, std::string_view model_name,
                                 bool include_content) {
  std::string out = "{\"ts\":";
  AppendJsonString(&out, absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                          absl::UTCTimeZone()));
  out.append(",\"log\":\"request\"");
  AppendField(&out, "request_id");
  AppendJsonString(&out, r.request_id);
  AppendField(&out, "method");
  AppendJsonString(&out, r.method);
  AppendField(&out, "model");
  AppendJsonString(&out, model_name);
  AppendField(&out, "status");
  AppendJsonString(&out, StatusLabel(static_cast<int>(r.code)));
  AppendField(&out, "finished_reason");
  AppendJsonString(&out, r.finished_reason);
  AppendCount(&out, "prompt_tokens", r.prompt_tokens);
  AppendCount(&out, "generated_tokens", r.generated_tokens);
  AppendSeconds(&out, "audio_seconds", r.audio_seconds);
  AppendCount(&out, "segments", r.segments);
  AppendSeconds(&out, "queue_seconds", r.queue_seconds);
  AppendSeconds(&out, "ttft_seconds", r.ttft_seconds);
  AppendSeconds(&out, "total_seconds", r.total_seconds);
  if (r.code != grpc::StatusCode::OK) {
    AppendField(&out, "error");
    AppendJsonString(&out, r.error);
  }
  if (include_content) {
    AppendIds(&out, "prompt_token_ids", r.prompt_token_ids);
    AppendIds(&out, "output_token_ids", r.output_token_ids);
    AppendField(&out, "text");
    AppendJsonString(&out, r.text);
  }
  out.append("}\n");
  return out;
}

RequestLog::RequestLog(RequestLogOptions options, std::function<void(std::string_view)> sink)
    : options_(options), sink_(sink ? std::move(sink) : WriteToStderr) {}

void RequestLog::Write(const CallReport& report, std::string_view model_name) const {
  switch (options_.level) {
    case RequestLogLevel::kOff:
      return;
    case RequestLogLevel::kErrors:
      if (report.code == grpc::StatusCode::OK) return;
      break;
    case RequestLogLevel::kAll:
      break;
  }
  sink_(FormatRequestLogLine(report, model_name, options_.content));
}

}  // namespace mtla
