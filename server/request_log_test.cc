// The request log's line format and levels (server/request_log.h), and the
// call reporter's counting (server/call_reporter.h).
#include "server/request_log.h"

#include <string>
#include <vector>

#include "engine/metrics/serving_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "server/call_reporter.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

CallReport GenerateReport() {
  CallReport r;
  r.request_id = "abc-1";
  r.method = "mtla.v1.TextGeneration/Generate";
  r.finished_reason = "eos";
  r.prompt_tokens = 7;
  r.generated_tokens = 3;
  r.queue_seconds = 0.001;
  r.ttft_seconds = 0.02;
  r.total_seconds = 0.5;
  r.prompt_token_ids = {1, 2, 3};
  r.output_token_ids = {4, 5, 2};
  r.text = "Hallo \"Welt\"\n";
  return r;
}

TEST(RequestLogTest, LineHasEveryFieldAndNoContentByDefault) {
  const std::string line = FormatRequestLogLine(GenerateReport(), "m", /*include_content=*/false);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line";
  EXPECT_EQ(line.rfind("{\"ts\":\"", 0), 0u) << line;
  for (const char* field :
       {"\"log\":\"request\"", "\"request_id\":\"abc-1\"",
        "\"method\":\"mtla.v1.TextGeneration/Generate\"", "\"model\":\"m\"", "\"status\":\"ok\"",
        "\"finished_reason\":\"eos\"", "\"prompt_tokens\":7", "\"generated_tokens\":3",
        "\"audio_seconds\":null", "\"segments\":null", "\"queue_seconds\":0.001000",
        "\"ttft_seconds\":0.020000", "\"total_seconds\":0.500000"}) {
    EXPECT_THAT(line, HasSubstr(field));
  }
  EXPECT_THAT(line, Not(HasSubstr("Hallo")));
  EXPECT_THAT(line, Not(HasSubstr("token_ids")));
  EXPECT_THAT(line, Not(HasSubstr("\"error\"")));
}

TEST(RequestLogTest, ContentOnlyWhenAskedAndEscaped) {
  const std::string line = FormatRequestLogLine(GenerateReport(), "m", /*include_content=*/true);
  EXPECT_THAT(line, HasSubstr("\"prompt_token_ids\":[1,2,3]"));
  EXPECT_THAT(line, HasSubstr("\"output_token_ids\":[4,5,2]"));
  EXPECT_THAT(line, HasSubstr("\"text\":\"Hallo \\\"Welt\\\"\\n\""));
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "escaped newline";
}

TEST(RequestLogTest, ContentIsBounded) {
  CallReport r = GenerateReport();
  r.text = std::string(3 * kMaxContentChars, 'x');
  r.output_token_ids.assign(3 * kMaxContentChars, 9);
  const std::string line = FormatRequestLogLine(r, "m", true);
  EXPECT_LT(line.size(), 4 * kMaxContentChars);
}

TEST(RequestLogTest, ErrorsCarryTheirMessage) {
  CallReport r = GenerateReport();
  r.code = grpc::StatusCode::DEADLINE_EXCEEDED;
  r.error = "the client's deadline passed";
  const std::string line = FormatRequestLogLine(r, "m", false);
  EXPECT_THAT(line, HasSubstr("\"status\":\"deadline_exceeded\""));
  EXPECT_THAT(line, HasSubstr("\"error\":\"the client's deadline passed\""));
}

TEST(RequestLogTest, Levels) {
  ASSERT_TRUE(ParseRequestLogLevel("off").ok());
  EXPECT_EQ(*ParseRequestLogLevel("errors"), RequestLogLevel::kErrors);
  EXPECT_EQ(*ParseRequestLogLevel("all"), RequestLogLevel::kAll);
  EXPECT_FALSE(ParseRequestLogLevel("verbose").ok());
  EXPECT_FALSE(ParseRequestLogLevel("").ok());

  CallReport ok = GenerateReport();
  CallReport failed = GenerateReport();
  failed.code = grpc::StatusCode::INVALID_ARGUMENT;
  for (auto [level, expected] : std::vector<std::pair<RequestLogLevel, int>>{
           {RequestLogLevel::kOff, 0}, {RequestLogLevel::kErrors, 1}, {RequestLogLevel::kAll, 2}}) {
    std::vector<std::string> lines;
    RequestLog log({.level = level}, [&](std::string_view line) { lines.emplace_back(line); });
    log.Write(ok, "m");
    log.Write(failed, "m");
    EXPECT_EQ(static_cast<int>(lines.size()), expected);
    if (expected == 1) EXPECT_THAT(lines[0], HasSubstr("invalid_argument"));
  }
}

// The reporter counts every call once, by status and finished reason; a
// failed call's finished reason is "abort".
TEST(CallReporterTest, CountsByStatusAndFinishedReason) {
  auto metrics = std::make_shared<ServingMetrics>("m");
  std::vector<std::string> lines;
  CallReporter reporter(metrics, "m", {.level = RequestLogLevel::kAll},
                        [&](std::string_view line) { lines.emplace_back(line); });
  reporter.CallEnded(GenerateReport());
  CallReport late = GenerateReport();
  late.code = grpc::StatusCode::DEADLINE_EXCEEDED;
  reporter.CallEnded(late);
  const std::string text = prometheus::TextSerializer().Serialize(metrics->registry()->Collect());
  // prometheus-cpp writes labels in name order.
  EXPECT_THAT(text, HasSubstr(
      "mtla_requests_total{finished_reason=\"eos\",model_name=\"m\",status=\"ok\"} 1"));
  EXPECT_THAT(text, HasSubstr("mtla_requests_total{finished_reason=\"abort\",model_name=\"m\","
                              "status=\"deadline_exceeded\"} 1"));
  EXPECT_THAT(text, HasSubstr("mtla_requests_total{finished_reason=\"abort\",model_name=\"m\","
                              "status=\"cancelled\"} 0"));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[1], HasSubstr("\"finished_reason\":\"abort\""));
}

}  // namespace
}  // namespace mtla
