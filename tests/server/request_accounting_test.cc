// Calls counted as what they were (issue 17, points 4 and 5), on loopback with
// the text model (shared testdata model_reference/llama_mtla_s2):
// - mtla_requests_total{status, finished_reason}: one per call, a client
//   deadline as deadline_exceeded (never cancelled), a client cancel as
//   cancelled, an invalid request as invalid_argument; vLLM's request-level
//   histograms observe finished requests only; build, cache-config and
//   process metrics are served.
// - The request log of the real mtla-server binary: one JSON line per
//   finished call with the request id echoed (request field, else
//   x-request-id metadata, else generated), no content unless
//   --request_log_content, and --request_log=errors leaves OK calls out.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "server/mtla_server.h"
#include "tests/common/child_server.h"
#include "tests/common/grpc_wait.h"
#include "tests/common/metrics_scrape.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using test_support::ChildServer;
using test_support::HttpGet;
using test_support::In;
using test_support::MetricValue;
using test_support::WaitFor;

const std::vector<int32_t> kPrompt = {1, 17, 42, 5, 66, 23, 9};

std::string ModelDir() { return std::string(MTLA_TESTDATA_DIR) + "/model_reference/llama_mtla_s2"; }
bool HaveTestdata() { return std::filesystem::exists(ModelDir() + "/model.safetensors"); }

v1::GenerateRequest MakeRequest(const std::vector<int32_t>& prompt, int max_new_tokens,
                                bool ignore_eos) {
  v1::GenerateRequest request;
  for (int32_t id : prompt) request.add_prompt_token_ids(id);
  request.set_max_new_tokens(max_new_tokens);
  request.set_ignore_eos(ignore_eos);
  return request;
}

// Runs one Generate call to the end: its status. `cancel_after_first` cancels
// the call once the first message arrived; `metadata` goes with the call.
grpc::Status Generate(v1::TextGeneration::Stub* stub, const v1::GenerateRequest& request,
                      double deadline_seconds, bool cancel_after_first = false,
                      const std::map<std::string, std::string>& metadata = {}) {
  grpc::ClientContext context;
  context.set_deadline(In(deadline_seconds));
  for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (cancel_after_first) context.TryCancel();
  }
  return reader->Finish();
}

// ---------------------------------------------------------------------------
// Metrics, on an in-process server.

class RequestAccountingTest : public testing::Test {
 protected:
  void SetUp() override {
    if (!HaveTestdata()) GTEST_SKIP() << "shared testdata not found at " << ModelDir();
    ServerOptions options;
    options.model_dir = ModelDir();
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "127.0.0.1:0";
    options.device = "cpu";
    options.kv_cache_bytes = 16u << 20;
    options.drain_grace_seconds = 10;
    options.request_log.level = RequestLogLevel::kOff;
    absl::StatusOr<std::unique_ptr<MtlaServer>> server = MtlaServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_TRUE(server_->LoadModel().ok());
    stub_ = v1::TextGeneration::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_ == nullptr) return;
    std::shared_ptr<Engine> engine = server_->engine();
    EXPECT_TRUE(WaitFor([&] { return engine->stats().in_flight == 0; }, 10.0));
    EXPECT_TRUE(WaitFor([&] { return engine->stats().cache_blocks_used == 0; }, 5.0));
    server_->Drain();
    server_.reset();
  }

  std::string Metrics() {
    std::string body;
    EXPECT_EQ(HttpGet(server_->metrics_port(), "/metrics", &body), 200);
    return body;
  }
  // mtla_requests_total summed over the series whose labels contain `filter`.
  double Requests(const std::string& filter = "") {
    return MetricValue(Metrics(), "mtla_requests_total", filter).value_or(0);
  }
  double Value(const std::string& name, const std::string& filter = "") {
    return MetricValue(Metrics(), name, filter).value_or(-1);
  }
  // Waits until `n` calls have been counted in all (a call is counted when
  // it ends on the server, just after its client saw the status).
  void WaitForCalls(double n) {
    EXPECT_TRUE(WaitFor([&] { return Requests() >= n; }, 5.0, 5)) << Metrics();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(Requests(), n) << "more calls counted than made";
  }

  std::unique_ptr<MtlaServer> server_;
  std::unique_ptr<v1::TextGeneration::Stub> stub_;
};

// A call whose client deadline passes is deadline_exceeded, never cancelled.
// The deadline shrinks until one call runs out of it; every call is counted
// as its client saw it.
TEST_F(RequestAccountingTest, ClientDeadlineIsDeadlineExceededNotCancelled) {
  int ok = 0, late = 0;
  for (double deadline = 0.4; deadline > 0.004 && late == 0; deadline /= 2) {
    const grpc::Status status = Generate(stub_.get(), MakeRequest(kPrompt, 500, true), deadline);
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      ++late;
    } else {
      ASSERT_TRUE(status.ok()) << status.error_message();
      ++ok;
    }
  }
  ASSERT_EQ(late, 1) << "no call ran out of its deadline";
  WaitForCalls(ok + late);
  EXPECT_EQ(Requests("status=\"deadline_exceeded\""), 1);
  EXPECT_EQ(
      Requests(
          "finished_reason=\"abort\",model_name=\"llama_mtla_s2\",status=\"deadline_exceeded\""),
      1);
  EXPECT_EQ(Requests("status=\"cancelled\""), 0);
  EXPECT_EQ(Requests("status=\"ok\""), ok);
}

TEST_F(RequestAccountingTest, ClientCancelIsCancelled) {
  const grpc::Status status = Generate(stub_.get(), MakeRequest(kPrompt, 500, true), 30.0,
                                       /*cancel_after_first=*/true);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  WaitForCalls(1);
  EXPECT_EQ(Requests("status=\"cancelled\""), 1);
  EXPECT_EQ(Requests("status=\"deadline_exceeded\""), 0);
  // A request that did not finish enters no request-level histogram.
  EXPECT_EQ(Value("mtla_request_generation_tokens_count"), 0);
}

// OK calls by finished reason; vLLM's request-level histograms observe each
// finished request once; a refused request is counted as a call only.
TEST_F(RequestAccountingTest, FinishedReasonsAndRequestHistograms) {
  ASSERT_TRUE(Generate(stub_.get(), MakeRequest(kPrompt, 4, true), 30.0).ok());
  ASSERT_TRUE(Generate(stub_.get(), MakeRequest(kPrompt, 6, true), 30.0).ok());
  ASSERT_EQ(Generate(stub_.get(), MakeRequest({}, 4, true), 30.0).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  WaitForCalls(3);
  EXPECT_EQ(Requests("finished_reason=\"length\",model_name=\"llama_mtla_s2\",status=\"ok\""), 2);
  EXPECT_EQ(Requests("finished_reason=\"abort\",model_name=\"llama_mtla_s2\",status=\"invalid_argument\""), 1);
  EXPECT_EQ(Value("mtla_request_prompt_tokens_count"), 2);
  EXPECT_EQ(Value("mtla_request_prompt_tokens_sum"), 2 * 7);
  EXPECT_EQ(Value("mtla_request_generation_tokens_sum"), 4 + 6);
  EXPECT_EQ(Value("mtla_request_params_max_tokens_sum"), 4 + 6);
  EXPECT_EQ(Value("mtla_request_time_per_output_token_seconds_count"), 2);
  EXPECT_EQ(Value("mtla_request_prefill_time_seconds_count"), 2);
  EXPECT_EQ(Value("mtla_request_decode_time_seconds_count"), 2);
  EXPECT_EQ(Value("mtla_request_inference_time_seconds_count"), 2);
  EXPECT_EQ(Value("mtla_e2e_request_latency_seconds_count"), 2);
  EXPECT_EQ(Value("mtla_time_to_first_token_seconds_count"), 2);
  EXPECT_GE(Value("mtla_iteration_tokens_sum"), 2 * 7 + 4 + 6 - 2);
  // Text calls have no segments.
  EXPECT_EQ(MetricValue(Metrics(), "mtla_segments_total").value_or(0), 0);
}

TEST_F(RequestAccountingTest, BuildCacheConfigAndProcessMetrics) {
  const std::string text = Metrics();
  EXPECT_EQ(MetricValue(text, "mtla_build_info", "backend=\"cpu\"").value_or(0), 1) << text;
  EXPECT_EQ(MetricValue(text, "mtla_build_info").value_or(0), 1) << "one build_info series";
  const std::vector<std::string> config =
      absl::StrSplit(text.substr(text.find("\nmtla_cache_config_info{")), '\n');
  ASSERT_GE(config.size(), 2u);
  EXPECT_THAT(config[1], HasSubstr(absl::StrCat(
                             "num_blocks=\"", server_->engine()->cache_blocks_total(), "\"")));
  EXPECT_THAT(config[1], HasSubstr(absl::StrCat(
      "block_size=\"", server_->engine()->cache_geometry().tokens_per_block(), "\"")));
  EXPECT_GT(MetricValue(text, "process_resident_memory_bytes").value_or(0), 1 << 20);
  EXPECT_GT(MetricValue(text, "process_start_time_seconds").value_or(0), 1e9);
  EXPECT_GT(MetricValue(text, "process_open_fds").value_or(0), 3);
  EXPECT_TRUE(MetricValue(text, "process_cpu_seconds_total").has_value());
}

// ---------------------------------------------------------------------------
// The request log, from the real binary's stderr.

// A running mtla-server with `flags`; its ports are read from its log.
class LoggingServer {
 public:
  bool Start(const std::vector<std::string>& flags) {
    std::vector<std::string> args = {MTLA_SERVER_BINARY, "--model_dir=" + ModelDir(),
                                     "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                                     "--device=cpu", "--kv_cache_mb=16"};
    args.insert(args.end(), flags.begin(), flags.end());
    static int serial = 0;
    if (!child_.Spawn(args, absl::StrCat(testing::TempDir(), "/mtla_request_log_", getpid(), "_",
                                         serial++, ".log"))) {
      return false;
    }
    if (!WaitFor([&] { return child_.Poll().has_value() || child_.Log().find("mtla-server: serving") != std::string::npos; }, 30.0, 20)) {
      return false;
    }
    std::smatch m;
    const std::string log = child_.Log();
    if (!std::regex_search(log, m, std::regex("listening on port ([0-9]+)"))) return false;
    stub_ = v1::TextGeneration::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", m[1].str()), grpc::InsecureChannelCredentials()));
    return !child_.Poll().has_value();
  }
  v1::TextGeneration::Stub* stub() { return stub_.get(); }
  // The request log lines so far.
  std::vector<std::string> Lines() {
    std::vector<std::string> lines;
    for (absl::string_view line : absl::StrSplit(child_.Log(), '\n')) {
      if (absl::StartsWith(line, "{\"ts\":")) lines.emplace_back(line);
    }
    return lines;
  }
  std::vector<std::string> WaitForLines(size_t n) {
    WaitFor([&] { return Lines().size() >= n; }, 5.0, 10);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return Lines();
  }
  std::string Log() { return child_.Log(); }

 private:
  ChildServer child_;
  std::unique_ptr<v1::TextGeneration::Stub> stub_;
};

const char* const kFields[] = {
    "\"log\":\"request\"", "\"request_id\":", "\"method\":\"mtla.v1.TextGeneration/Generate\"",
    "\"model\":\"llama_mtla_s2\"", "\"status\":", "\"finished_reason\":", "\"prompt_tokens\":",
    "\"generated_tokens\":", "\"audio_seconds\":null", "\"segments\":null", "\"queue_seconds\":",
    "\"ttft_seconds\":", "\"total_seconds\":"};

TEST(RequestLogServerTest, OneLinePerCallWithTheRequestIdAndNoContent) {
  if (!HaveTestdata()) GTEST_SKIP() << "shared testdata not found";
  LoggingServer server;
  ASSERT_TRUE(server.Start({})) << server.Log();  // the default: --request_log=all
  v1::GenerateRequest ok = MakeRequest(kPrompt, 5, true);
  ok.set_request_id("from-the-request-1");
  ASSERT_TRUE(Generate(server.stub(), ok, 30.0, false, {{"x-request-id", "not-this-one"}}).ok());
  ASSERT_EQ(Generate(server.stub(), MakeRequest({}, 4, true), 30.0, false,
                     {{"x-request-id", "from-metadata-2"}})
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_EQ(Generate(server.stub(), MakeRequest(kPrompt, 500, true), 30.0, true).error_code(),
            grpc::StatusCode::CANCELLED);

  const std::vector<std::string> lines = server.WaitForLines(3);
  ASSERT_EQ(lines.size(), 3u) << server.Log();
  for (const std::string& line : lines) {
    for (const char* field : kFields) EXPECT_THAT(line, HasSubstr(field));
    EXPECT_EQ(line.back(), '}');
    EXPECT_THAT(line, Not(HasSubstr("\"prompt_token_ids\":"))) << "content logged by default";
    EXPECT_THAT(line, Not(HasSubstr("\"output_token_ids\":"))) << "content logged by default";
    EXPECT_THAT(line, Not(HasSubstr("\"text\""))) << "content logged by default";
  }
  // A line is written when the server has finished with the call (OnDone), which
  // may be after the client already saw the status of the next call: the lines
  // are matched by request id, not by their order.
  auto line_with = [&](absl::string_view needle) -> std::string {
    std::string found;
    for (const std::string& line : lines) {
      if (absl::StrContains(line, needle)) {
        EXPECT_TRUE(found.empty()) << "two lines contain " << needle;
        found = line;
      }
    }
    EXPECT_FALSE(found.empty()) << "no line contains " << needle << "\n" << server.Log();
    return found;
  };
  const std::string first = line_with("\"request_id\":\"from-the-request-1\"");
  EXPECT_THAT(first, HasSubstr("\"status\":\"ok\",\"finished_reason\":\"length\""));
  EXPECT_THAT(first, HasSubstr("\"prompt_tokens\":7,\"generated_tokens\":5"));
  EXPECT_THAT(first, Not(HasSubstr("\"error\"")));
  const std::string second = line_with("\"request_id\":\"from-metadata-2\"");
  EXPECT_THAT(second, HasSubstr("\"status\":\"invalid_argument\",\"finished_reason\":\"abort\""));
  EXPECT_THAT(second, HasSubstr("\"error\":\"prompt"));
  const std::string third = line_with("\"status\":\"cancelled\"");
  EXPECT_THAT(third, testing::ContainsRegex("\"request_id\":\"req-[0-9a-f]{16}\""));
}

TEST(RequestLogServerTest, ErrorsLevelAndContent) {
  if (!HaveTestdata()) GTEST_SKIP() << "shared testdata not found";
  LoggingServer server;
  ASSERT_TRUE(server.Start({"--request_log=errors", "--request_log_content"})) << server.Log();
  ASSERT_TRUE(Generate(server.stub(), MakeRequest(kPrompt, 5, true), 30.0).ok());
  v1::GenerateRequest bad = MakeRequest({1, 2, 1000}, 4, true);  // id outside the vocabulary
  bad.set_request_id("bad-3");
  ASSERT_EQ(Generate(server.stub(), bad, 30.0).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  const std::vector<std::string> lines = server.WaitForLines(1);
  ASSERT_EQ(lines.size(), 1u) << "an OK call was logged at --request_log=errors:\n" << server.Log();
  EXPECT_THAT(lines[0], HasSubstr("\"request_id\":\"bad-3\""));
  EXPECT_THAT(lines[0], HasSubstr("\"prompt_token_ids\":[1,2,1000]"));
  EXPECT_THAT(lines[0], HasSubstr("\"output_token_ids\":[]"));
}

TEST(RequestLogServerTest, BadLevelIsAUsageError) {
  ChildServer child;
  ASSERT_TRUE(child.Spawn({MTLA_SERVER_BINARY, "--model_dir=x", "--request_log=some"},
                          absl::StrCat(testing::TempDir(), "/mtla_request_log_bad_", getpid(),
                                       ".log")));
  const std::optional<int> exit = child.WaitExit(10.0);
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(WIFEXITED(*exit));
  EXPECT_EQ(WEXITSTATUS(*exit), 2);
  EXPECT_THAT(child.Log(), HasSubstr("--request_log must be off, errors or all"));
}

}  // namespace
}  // namespace mtla
