// Integration tests of the gRPC text-generation service, end to end over
// loopback: an in-process MtlaServer (server/mtla_server.h) for most tests and
// the real mtla-server binary, as a child process, for the SIGTERM drain.
//
// Model: the shared LlamaMTLA reference checkpoint
// MTLA_TESTDATA_DIR/model_reference/llama_mtla_s2 (vocab 97, context 512);
// greedy decoding of its reference prompt must give its generated_ids exactly.
// The tests are skipped with a visible message when the shared data is absent.
//
// Everything listens on 127.0.0.1 with kernel-chosen ports; every RPC has a
// deadline and every wait is bounded. Prometheus metrics are read with a small
// HTTP/1.1 GET over a POSIX socket.
//
// The CPU model decodes about 10 000 tokens/s on an idle machine, so one
// request is short (at most ~500 new tokens within the 512-token context,
// ~50 ms). Tests that act on a request "while it runs" check (from the
// server's counters) that it really was running, and repeat the attempt
// otherwise; tests that need several requests in flight use max_running 1 so
// that the later ones wait. Under ctest, OpenMP waits passively (see
// CMakeLists.txt): spinning OpenMP threads on shared cores slow decoding 10-100x.
//
// Tests (about 15-25 s in all when run as one binary):
//   SharedServerTest (one default server): greedy tokens, deltas, usage and
//     timing; client cancel and deadline return the cache blocks; each invalid
//     parameter is INVALID_ARGUMENT naming the field.
//   ServerTest (a server each): 32 concurrent clients with preemption; queue
//     full; health through load and drain (Check and Watch); /metrics names,
//     values and `promtool check metrics`.
//   ServerProcessTest: SIGTERM drains the mtla-server process, which exits 0.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "engine/testing/unique_temp_path.h"
#include "tests/common/child_server.h"
#include "tests/common/grpc_wait.h"
#include "tests/common/metrics_scrape.h"
#include "mtla/v1/models.grpc.pb.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "server/mtla_server.h"

extern char** environ;

namespace mtla {
namespace {

using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;
using test_support::HttpGet;
using test_support::In;
using test_support::WaitFor;
using test_support::MetricValue;

const std::vector<int32_t> kPrompt = {1, 17, 42, 5, 66, 23, 9};
const std::vector<int32_t> kGenerated = {71, 41, 3, 56, 23, 82, 84, 77, 82, 84, 77, 82};
constexpr int kLongTokens = 500;  // 7 + 500 tokens: just within the 512-token context

std::string ModelDir() { return std::string(MTLA_TESTDATA_DIR) + "/model_reference/llama_mtla_s2"; }

#define SKIP_WITHOUT_TESTDATA()                                                   \
  do {                                                                            \
    if (!std::filesystem::exists(ModelDir() + "/model.safetensors")) {            \
      GTEST_SKIP() << "shared testdata not found at " << ModelDir();              \
    }                                                                             \
  } while (0)


// ---------------------------------------------------------------------------
// HTTP and Prometheus text helpers.

std::string ScrapeMetrics(int port) {
  std::string body;
  const int status = HttpGet(port, "/metrics", &body);
  EXPECT_EQ(status, 200) << "GET /metrics on port " << port;
  return body;
}

double MetricOr0(const std::string& text, const std::string& name,
                 const std::string& label_filter = "") {
  return MetricValue(text, name, label_filter).value_or(0.0);
}

// ---------------------------------------------------------------------------
// gRPC helpers.

v1::GenerateRequest MakeRequest(const std::vector<int32_t>& prompt, int max_new_tokens,
                                bool ignore_eos = false) {
  v1::GenerateRequest request;
  for (int32_t id : prompt) request.add_prompt_token_ids(id);
  request.set_max_new_tokens(max_new_tokens);
  request.set_ignore_eos(ignore_eos);
  return request;
}

v1::GenerateRequest ReferenceRequest() { return MakeRequest(kPrompt, 12); }
v1::GenerateRequest LongRequest(int max_new_tokens = kLongTokens) {
  return MakeRequest(kPrompt, max_new_tokens, true);
}

struct GenerateResult {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::vector<v1::GenerateResponse> messages;
};

// Runs one Generate call to the end. `on_message` (optional) sees each message
// and the call's context, e.g. to cancel it.
GenerateResult Generate(
    v1::TextGeneration::Stub* stub, const v1::GenerateRequest& request,
    double deadline_seconds = 30.0,
    const std::function<void(grpc::ClientContext*, const v1::GenerateResponse&)>& on_message =
        nullptr) {
  GenerateResult result;
  grpc::ClientContext context;
  context.set_deadline(In(deadline_seconds));
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub->Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    result.tokens.insert(result.tokens.end(), response.token_ids().begin(),
                         response.token_ids().end());
    result.messages.push_back(response);
    if (on_message) on_message(&context, response);
  }
  result.status = reader->Finish();
  return result;
}

std::string Describe(const grpc::Status& status) {
  return absl::StrCat("code ", status.error_code(), ": ", status.error_message());
}

// Health Check of the whole server; nullopt when the RPC itself failed.
std::optional<HealthCheckResponse::ServingStatus> CheckHealth(
    grpc::health::v1::Health::Stub* stub, grpc::Status* rpc_status = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(In(2.0));
  HealthCheckRequest request;
  HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (rpc_status != nullptr) *rpc_status = status;
  if (!status.ok()) return std::nullopt;
  return response.status();
}

// A channel to 127.0.0.1:port that retries a failed connection within tens of
// milliseconds (gRPC's default reconnect backoff starts at 1 s).
std::shared_ptr<grpc::Channel> LoopbackChannel(int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials(), args);
}

// Whether something accepts TCP connections on 127.0.0.1:port.
bool Listening(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// ---------------------------------------------------------------------------
// In-process server fixtures.

ServerOptions DefaultOptions() {
  ServerOptions options;
  options.model_dir = ModelDir();
  options.listen_address = "127.0.0.1:0";
  options.metrics_address = "127.0.0.1:0";
  options.device = "cpu";
  options.kv_cache_bytes = 16u << 20;
  options.drain_grace_seconds = 10;
  return options;
}

// A test with its own server (StartServer), configured for it.
class ServerTest : public testing::Test {
 protected:
  void SetUp() override { SKIP_WITHOUT_TESTDATA(); }

  void TearDown() override {
    if (server_ != nullptr) {
      if (std::shared_ptr<Engine> engine = server_->engine()) {
        // No leak: every request ended and returned its blocks.
        EXPECT_TRUE(WaitFor([&] { return engine->stats().in_flight == 0; }, 10.0))
            << "in_flight=" << engine->stats().in_flight;
        EXPECT_TRUE(WaitFor([&] { return engine->stats().cache_blocks_used == 0; }, 5.0))
            << "cache_blocks_used=" << engine->stats().cache_blocks_used;
      }
    }
    if (owned_ != nullptr) {
      if (!drained_) owned_->Drain();
      owned_.reset();  // up to ~2 s: the metrics exposer's HTTP server stops slowly
    }
  }

  // Starts this test's server and, when `load`, loads the model.
  void StartServer(const ServerOptions& options, bool load = true) {
    absl::StatusOr<std::unique_ptr<MtlaServer>> server = MtlaServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    owned_ = std::move(*server);
    server_ = owned_.get();
    Connect();
    if (load) {
      absl::Status loaded = server_->LoadModel();
      ASSERT_TRUE(loaded.ok()) << loaded;
    }
  }

  void Connect() {
    ASSERT_GT(server_->port(), 0);
    ASSERT_GT(server_->metrics_port(), 0);
    channel_ = LoopbackChannel(server_->port());
    stub_ = v1::TextGeneration::NewStub(channel_);
    health_ = grpc::health::v1::Health::NewStub(channel_);
  }

  std::string Metrics() { return ScrapeMetrics(server_->metrics_port()); }
  double RequestsWithStatus(const std::string& status) {
    return MetricOr0(Metrics(), "mtla_requests_total", absl::StrCat("status=\"", status, "\""));
  }

  void ExpectReferenceServed() {
    GenerateResult r = Generate(stub_.get(), ReferenceRequest());
    ASSERT_TRUE(r.status.ok()) << Describe(r.status);
    EXPECT_EQ(r.tokens, kGenerated);
  }

  MtlaServer* server_ = nullptr;
  std::unique_ptr<MtlaServer> owned_;
  bool drained_ = false;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TextGeneration::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

// Tests that need only the default configuration share one server.
class SharedServerTest : public ServerTest {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(ModelDir() + "/model.safetensors")) return;
    absl::StatusOr<std::unique_ptr<MtlaServer>> server = MtlaServer::Start(DefaultOptions());
    if (!server.ok()) {
      start_error_ = new std::string(server.status().ToString());
      return;
    }
    if (absl::Status loaded = (*server)->LoadModel(); !loaded.ok()) {
      start_error_ = new std::string(loaded.ToString());
      return;
    }
    shared_ = server->release();
  }
  static void TearDownTestSuite() {
    if (shared_ != nullptr) shared_->Drain();
    delete shared_;
    shared_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_NE(shared_, nullptr) << (start_error_ ? *start_error_ : "no server");
    server_ = shared_;
    Connect();
  }

  static MtlaServer* shared_;
  static std::string* start_error_;
};
MtlaServer* SharedServerTest::shared_ = nullptr;
std::string* SharedServerTest::start_error_ = nullptr;

TEST_F(SharedServerTest, GreedyGenerateStreamsReferenceTokens) {
  GenerateResult r = Generate(stub_.get(), ReferenceRequest());
  ASSERT_TRUE(r.status.ok()) << Describe(r.status);
  EXPECT_EQ(r.tokens, kGenerated);
  ASSERT_FALSE(r.messages.empty());
  // Deltas: each message carries only new tokens; only the last one ends the call.
  for (size_t i = 0; i + 1 < r.messages.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("message ", i));
    EXPECT_GT(r.messages[i].token_ids_size(), 0);
    EXPECT_EQ(r.messages[i].finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
    EXPECT_FALSE(r.messages[i].has_usage());
    EXPECT_FALSE(r.messages[i].has_timing());
  }
  const v1::GenerateResponse& last = r.messages.back();
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
  ASSERT_TRUE(last.has_usage());
  EXPECT_EQ(last.usage().prompt_tokens(), 7);
  EXPECT_EQ(last.usage().generated_tokens(), 12);
  ASSERT_TRUE(last.has_timing());
  EXPECT_GE(last.timing().queue_seconds(), 0.0);
  EXPECT_GT(last.timing().time_to_first_token_seconds(), 0.0);
  EXPECT_GE(last.timing().time_to_first_token_seconds(), last.timing().queue_seconds());
  EXPECT_GE(last.timing().total_seconds(), last.timing().time_to_first_token_seconds());
  EXPECT_LT(last.timing().total_seconds(), 30.0);
  EXPECT_EQ(last.timing().num_preemptions(), 0);

  // A long request arrives as several deltas that add up to all its tokens.
  GenerateResult long_result = Generate(stub_.get(), LongRequest());
  ASSERT_TRUE(long_result.status.ok()) << Describe(long_result.status);
  EXPECT_EQ(long_result.tokens.size(), static_cast<size_t>(kLongTokens));
  EXPECT_EQ(long_result.messages.back().usage().generated_tokens(), kLongTokens);
  EXPECT_EQ(std::vector<int32_t>(long_result.tokens.begin(), long_result.tokens.begin() + 12),
            kGenerated);

  // The Models service describes the checkpoint.
  v1::ModelInfo info;
  grpc::Status status = test_support::FetchModelInfo(channel_, &info);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(info.architecture(), "llama-mtla");
  EXPECT_EQ(info.vocab_size(), 97);
  EXPECT_EQ(info.max_context_tokens(), 512);
  EXPECT_EQ(info.down_rate(), 2);
}

// 32 clients at once, mixed requests, over a cache far too small for all of
// them (block_slots 2: 4 tokens a block): every call succeeds, the requests
// whose greedy answer is known give it exactly, and the server preempted.
TEST_F(ServerTest, ConcurrentClientsWithPreemption) {
  ServerOptions options = DefaultOptions();
  options.block_slots = 2;
  options.kv_cache_blocks = 24;  // 96 tokens; the largest request below needs 60
  StartServer(options);

  struct Case {
    v1::GenerateRequest request;
    std::vector<int32_t> expected;  // empty: only the length is checked
    GenerateResult result;
  };
  std::vector<Case> cases(32);
  std::mt19937 rng(42);
  for (int i = 0; i < 32; ++i) {
    Case& c = cases[i];
    if (i % 8 == 0) {
      c.request = ReferenceRequest();
      c.expected = kGenerated;
    } else if (i % 8 == 3) {
      // The reference continued from inside its own answer.
      const int k = 1 + (i / 8) * 3;  // 1, 4, 7, 10
      std::vector<int32_t> prompt = kPrompt;
      prompt.insert(prompt.end(), kGenerated.begin(), kGenerated.begin() + k);
      c.request = MakeRequest(prompt, 12 - k);
      c.expected.assign(kGenerated.begin() + k, kGenerated.end());
    } else if (i % 8 == 5) {
      c.request = MakeRequest(std::vector<int32_t>(kPrompt.begin(), kPrompt.begin() + 1 + i % 6),
                              10 + i, /*ignore_eos=*/true);
    } else {
      std::uniform_int_distribution<int> len(1, 30), max_new(1, 30), tok(0, 96);
      std::vector<int32_t> prompt(len(rng));
      for (int32_t& t : prompt) t = tok(rng);
      c.request = MakeRequest(prompt, max_new(rng), /*ignore_eos=*/true);
      if (i % 4 == 1) {
        c.request.mutable_sampling()->set_temperature(0.7f);
        c.request.mutable_sampling()->set_top_k(10);
        c.request.mutable_sampling()->set_top_p(0.9f);
        c.request.mutable_sampling()->set_seed(1000 + i);
      }
    }
  }
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (Case& c : cases) {
    threads.emplace_back([&] {
      // Start together, to overload the cache at once.
      ready.fetch_add(1);
      WaitFor([&] { return ready.load() == 32; }, 5.0, 1);
      c.result = Generate(stub_.get(), c.request);
    });
  }
  for (std::thread& t : threads) t.join();

  int preempted_requests = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("client ", i));
    const GenerateResult& r = cases[i].result;
    ASSERT_TRUE(r.status.ok()) << Describe(r.status);
    if (!cases[i].expected.empty()) {
      EXPECT_EQ(r.tokens, cases[i].expected);
    } else {
      EXPECT_EQ(static_cast<int>(r.tokens.size()), cases[i].request.max_new_tokens());
    }
    ASSERT_FALSE(r.messages.empty());
    EXPECT_EQ(r.messages.back().usage().generated_tokens(), static_cast<int>(r.tokens.size()));
    EXPECT_EQ(r.messages.back().usage().prompt_tokens(),
              cases[i].request.prompt_token_ids_size());
    if (r.messages.back().timing().num_preemptions() > 0) ++preempted_requests;
  }
  const std::string metrics = Metrics();
  const std::optional<double> preemptions = MetricValue(metrics, "mtla_num_preemptions_total");
  ASSERT_TRUE(preemptions.has_value()) << metrics;
  EXPECT_GT(*preemptions, 0) << "the cache was meant to force preemption";
  EXPECT_EQ(*preemptions, static_cast<double>(server_->engine()->stats().preemptions));
  EXPECT_GT(preempted_requests, 0);
  // A call is counted when it ends on the server (its OnDone), just after
  // its client saw the status.
  EXPECT_TRUE(WaitFor(
      [&] { return MetricOr0(Metrics(), "mtla_requests_total", "status=\"ok\"") >= 32.0; }, 5.0,
      5));
  EXPECT_EQ(MetricOr0(Metrics(), "mtla_requests_total", "status=\"ok\""), 32.0);
}

// TryCancel mid-stream: the server cancels the request and its cache blocks
// come back. An attempt where the request ended before the cancellation
// reached the engine (no "cancelled" count) is repeated.
TEST_F(SharedServerTest, ClientCancelReturnsCacheBlocks) {
  std::shared_ptr<Engine> engine = server_->engine();
  const int before = engine->stats().cache_blocks_used;
  ASSERT_EQ(MetricOr0(Metrics(), "mtla_kv_cache_blocks_used"), before);
  bool cancelled_midway = false;
  for (int attempt = 0; attempt < 5 && !cancelled_midway; ++attempt) {
    const double cancelled_before = RequestsWithStatus("cancelled");
    bool saw_blocks = false;
    GenerateResult r = Generate(
        stub_.get(), LongRequest(), 30.0,
        [&](grpc::ClientContext* context, const v1::GenerateResponse&) {
          // The running request holds blocks (the engine publishes its
          // stats after each step, so give it a moment).
          saw_blocks = saw_blocks ||
                       WaitFor([&] { return engine->stats().cache_blocks_used > before; }, 0.5, 1);
          context->TryCancel();
        });
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED) << Describe(r.status);
    EXPECT_LT(r.tokens.size(), static_cast<size_t>(kLongTokens));
    // Blocks back to their previous value, seen by the engine and on /metrics.
    EXPECT_TRUE(WaitFor([&] { return engine->stats().cache_blocks_used == before; }, 3.0))
        << "cache_blocks_used=" << engine->stats().cache_blocks_used << " before=" << before;
    EXPECT_TRUE(WaitFor([&] { return MetricOr0(Metrics(), "mtla_kv_cache_blocks_used") == before; },
                        3.0, 5));
    EXPECT_TRUE(WaitFor([&] { return engine->stats().in_flight == 0; }, 3.0));
    // Counted when the call ends on the server (OnDone), just after the client saw it.
    cancelled_midway =
        saw_blocks &&
        WaitFor([&] { return RequestsWithStatus("cancelled") == cancelled_before + 1; }, 1.0, 5);
  }
  EXPECT_TRUE(cancelled_midway) << "the request always ended before the cancellation took effect";
  ExpectReferenceServed();
}

// A deadline that expires mid-request: DEADLINE_EXCEEDED at the client, the
// server cancels the request and its blocks come back.
TEST_F(SharedServerTest, DeadlineReturnsCacheBlocks) {
  std::shared_ptr<Engine> engine = server_->engine();
  const int before = engine->stats().cache_blocks_used;
  bool expired_midway = false;
  const double deadlines[] = {0.02, 0.01, 0.03, 0.005, 0.015, 0.04};
  for (double deadline : deadlines) {
    const double cancelled_before = RequestsWithStatus("cancelled");
    const double late_before = RequestsWithStatus("deadline_exceeded");
    const double prompt_before = MetricOr0(Metrics(), "mtla_prompt_tokens_total");
    GenerateResult r = Generate(stub_.get(), LongRequest(), deadline);
    if (r.status.ok()) {  // finished within the deadline: try a shorter one
      EXPECT_EQ(r.tokens.size(), static_cast<size_t>(kLongTokens));
      continue;
    }
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << Describe(r.status);
    EXPECT_TRUE(WaitFor([&] { return engine->stats().in_flight == 0; }, 3.0));
    EXPECT_TRUE(WaitFor([&] { return engine->stats().cache_blocks_used == before; }, 3.0))
        << "cache_blocks_used=" << engine->stats().cache_blocks_used << " before=" << before;
    EXPECT_TRUE(WaitFor([&] { return MetricOr0(Metrics(), "mtla_kv_cache_blocks_used") == before; },
                        3.0, 5));
    // Genuine when the engine had the request (its prompt was counted on
    // admission) and dropped it. The call is counted once, as
    // deadline_exceeded: a client deadline is not a cancellation.
    if (MetricOr0(Metrics(), "mtla_prompt_tokens_total") == prompt_before + kPrompt.size()) {
      EXPECT_TRUE(WaitFor(
          [&] { return RequestsWithStatus("deadline_exceeded") == late_before + 1; }, 3.0, 5));
      EXPECT_EQ(RequestsWithStatus("cancelled"), cancelled_before);
      expired_midway = true;
      break;
    }
  }
  EXPECT_TRUE(expired_midway) << "no deadline expired while the request was in the engine";
  ExpectReferenceServed();
}

// max_running 1 + max_queued 1: with two long requests in flight a third is
// refused with RESOURCE_EXHAUSTED; the server then serves normally.
TEST_F(ServerTest, QueueFullIsResourceExhausted) {
  ServerOptions options = DefaultOptions();
  options.max_running = 1;
  options.max_queued = 1;
  StartServer(options);
  std::shared_ptr<Engine> engine = server_->engine();
  ExpectReferenceServed();  // connects the channel
  bool refused = false;
  for (int attempt = 0; attempt < 5 && !refused; ++attempt) {
    GenerateResult a, b;
    std::atomic<int> done{0};
    std::thread ta([&] {
      a = Generate(stub_.get(), LongRequest());
      done.fetch_add(1);
    });
    std::thread tb([&] {
      b = Generate(stub_.get(), LongRequest());
      done.fetch_add(1);
    });
    const bool both_in = WaitFor([&] { return engine->stats().in_flight == 2 || done > 0; }, 10.0,
                                 1) && done == 0;
    GenerateResult c = both_in ? Generate(stub_.get(), ReferenceRequest()) : GenerateResult{};
    ta.join();
    tb.join();
    ASSERT_TRUE(a.status.ok()) << Describe(a.status);
    ASSERT_TRUE(b.status.ok()) << Describe(b.status);
    EXPECT_EQ(a.tokens.size(), static_cast<size_t>(kLongTokens));
    EXPECT_EQ(b.tokens.size(), static_cast<size_t>(kLongTokens));
    if (!both_in || c.status.ok()) continue;  // a long one ended first: try again
    EXPECT_EQ(c.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << Describe(c.status);
    EXPECT_THAT(c.status.error_message(), HasSubstr("queue is full"));
    EXPECT_TRUE(c.tokens.empty());
    refused = true;
  }
  EXPECT_TRUE(refused) << "never had two requests in flight when the third arrived";
  EXPECT_TRUE(WaitFor([&] { return RequestsWithStatus("resource_exhausted") >= 1.0; }, 3.0, 5));
  ExpectReferenceServed();
}

TEST_F(SharedServerTest, InvalidParametersAreInvalidArgumentNamingTheField) {
  const int limit = DefaultOptions().max_new_tokens_limit;
  const double invalid_before = RequestsWithStatus("invalid_argument");
  struct Case {
    std::string what;
    std::string field;
    v1::GenerateRequest request;
  };
  std::vector<Case> cases;
  cases.push_back({"empty prompt", "prompt_token_ids", MakeRequest({}, 4)});
  cases.push_back({"token id 97", "prompt_token_ids", MakeRequest({1, 17, 97}, 4)});
  cases.push_back({"token id -1", "prompt_token_ids", MakeRequest({-1, 17}, 4)});
  cases.push_back({"max_new_tokens 0", "max_new_tokens", MakeRequest(kPrompt, 0)});
  cases.push_back({"max_new_tokens over the limit", "max_new_tokens", MakeRequest(kPrompt, limit + 1)});
  cases.push_back({"temperature < 0", "sampling.temperature", ReferenceRequest()});
  cases.back().request.mutable_sampling()->set_temperature(-0.5f);
  cases.push_back({"top_p 1.5", "sampling.top_p", ReferenceRequest()});
  cases.back().request.mutable_sampling()->set_top_p(1.5f);
  cases.push_back({"top_p < 0", "sampling.top_p", ReferenceRequest()});
  cases.back().request.mutable_sampling()->set_top_p(-0.1f);
  cases.push_back({"top_k < 0", "sampling.top_k", ReferenceRequest()});
  cases.back().request.mutable_sampling()->set_top_k(-1);
  cases.push_back({"stop id 97", "stop_token_ids", ReferenceRequest()});
  cases.back().request.add_stop_token_ids(97);
  cases.push_back({"text prompt without a tokenizer", "prompt", MakeRequest({}, 4)});
  cases.back().request.set_prompt("hello");

  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    GenerateResult r = Generate(stub_.get(), c.request, 10.0);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(r.status);
    EXPECT_THAT(r.status.error_message(), HasSubstr(c.field));
    EXPECT_TRUE(r.messages.empty());
    // The server keeps serving after each refusal.
    ExpectReferenceServed();
  }
  EXPECT_EQ(RequestsWithStatus("invalid_argument") - invalid_before,
            static_cast<double>(cases.size()));

  // top_p 0 is read as 1 (documented), not an error.
  v1::GenerateRequest zero_top_p = ReferenceRequest();
  zero_top_p.mutable_sampling()->set_top_p(0.0f);
  GenerateResult r = Generate(stub_.get(), zero_top_p);
  ASSERT_TRUE(r.status.ok()) << Describe(r.status);
  EXPECT_EQ(r.tokens, kGenerated);
  // Prompt plus max_new_tokens beyond the context is OUT_OF_RANGE.
  std::vector<int32_t> long_prompt(300, 5);
  r = Generate(stub_.get(), MakeRequest(long_prompt, 256, true), 10.0);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::OUT_OF_RANGE) << Describe(r.status);
  // In the request's terms: no engine term such as "prefix (0 rows)".
  EXPECT_THAT(r.status.error_message(), HasSubstr("prompt_token_ids (300 tokens)"));
  EXPECT_THAT(r.status.error_message(), HasSubstr("max_new_tokens (256)"));
  EXPECT_THAT(r.status.error_message(), testing::Not(HasSubstr("prefix")));
}

// grpc.health.v1: NOT_SERVING while loading, SERVING once loaded, NOT_SERVING
// as soon as Drain starts (while in-flight requests finish); Watch sees the
// transitions. During Drain new requests are UNAVAILABLE and running ones end OK.
TEST_F(ServerTest, HealthFollowsLoadAndDrain) {
  ServerOptions options = DefaultOptions();
  options.max_running = 1;  // the long requests below run one after another
  options.drain_grace_seconds = 25;  // they must finish, even on a slow machine
  StartServer(options, /*load=*/false);

  EXPECT_EQ(CheckHealth(health_.get()), HealthCheckResponse::NOT_SERVING);
  GenerateResult loading = Generate(stub_.get(), ReferenceRequest(), 10.0);
  EXPECT_EQ(loading.status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(loading.status);

  // Watch from before the load.
  grpc::ClientContext watch_context;
  watch_context.set_deadline(In(30.0));
  absl::Mutex watch_mu;
  std::vector<HealthCheckResponse::ServingStatus> seen;
  std::thread watcher([&] {
    HealthCheckRequest request;
    auto reader = health_->Watch(&watch_context, request);
    HealthCheckResponse response;
    while (reader->Read(&response)) {
      absl::MutexLock lock(&watch_mu);
      seen.push_back(response.status());
    }
    reader->Finish();
  });
  auto seen_last = [&]() -> std::optional<HealthCheckResponse::ServingStatus> {
    absl::MutexLock lock(&watch_mu);
    if (seen.empty()) return std::nullopt;
    return seen.back();
  };
  EXPECT_TRUE(WaitFor([&] { return seen_last() == HealthCheckResponse::NOT_SERVING; }, 5.0));

  absl::Status loaded = server_->LoadModel();
  ASSERT_TRUE(loaded.ok()) << loaded;
  EXPECT_EQ(CheckHealth(health_.get()), HealthCheckResponse::SERVING);
  EXPECT_TRUE(WaitFor([&] { return seen_last() == HealthCheckResponse::SERVING; }, 5.0));
  ExpectReferenceServed();

  // Three long requests, one at a time, keep Drain busy.
  constexpr int kTokens = 300;
  std::shared_ptr<Engine> engine = server_->engine();
  std::vector<GenerateResult> results(3);
  std::vector<std::thread> clients;
  for (GenerateResult& result : results) {
    clients.emplace_back([&] { result = Generate(stub_.get(), LongRequest(kTokens)); });
  }
  ASSERT_TRUE(WaitFor([&] { return engine->stats().in_flight == 3; }, 10.0, 1));
  std::thread drainer([&] { server_->Drain(); });
  drained_ = true;

  grpc::Status check_status;
  std::optional<HealthCheckResponse::ServingStatus> during;
  WaitFor([&] {
    during = CheckHealth(health_.get(), &check_status);
    return during != HealthCheckResponse::SERVING;
  }, 5.0, 1);
  EXPECT_EQ(during, HealthCheckResponse::NOT_SERVING) << Describe(check_status);
  const bool still_draining = engine->stats().in_flight > 0;
  GenerateResult refused = Generate(stub_.get(), ReferenceRequest(), 5.0);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(refused.status);
  if (still_draining) {
    EXPECT_THAT(refused.status.error_message(), HasSubstr("draining"));
  }
  EXPECT_TRUE(WaitFor([&] { return seen_last() == HealthCheckResponse::NOT_SERVING; }, 5.0));
  watch_context.TryCancel();
  watcher.join();
  {
    absl::MutexLock lock(&watch_mu);
    // NOT_SERVING (loading) -> SERVING -> NOT_SERVING (draining), possibly
    // with repeats of a status.
    std::vector<HealthCheckResponse::ServingStatus> transitions;
    for (auto s : seen) {
      if (transitions.empty() || transitions.back() != s) transitions.push_back(s);
    }
    EXPECT_EQ(transitions, (std::vector<HealthCheckResponse::ServingStatus>{
                               HealthCheckResponse::NOT_SERVING, HealthCheckResponse::SERVING,
                               HealthCheckResponse::NOT_SERVING}));
  }
  for (std::thread& t : clients) t.join();
  drainer.join();
  for (const GenerateResult& r : results) {
    ASSERT_TRUE(r.status.ok()) << Describe(r.status);
    EXPECT_EQ(r.tokens.size(), static_cast<size_t>(kTokens));
  }
}

TEST_F(ServerTest, MetricsAreExposedAndValid) {
  ServerOptions options = DefaultOptions();
  options.kv_cache_blocks = 300;
  StartServer(options);
  // Some traffic: greedy, sampled, a cancelled one and a refused one.
  for (int i = 0; i < 3; ++i) ExpectReferenceServed();
  v1::GenerateRequest sampled = MakeRequest(kPrompt, 40, true);
  sampled.mutable_sampling()->set_temperature(1.0f);
  sampled.mutable_sampling()->set_seed(7);
  GenerateResult r = Generate(stub_.get(), sampled);
  ASSERT_TRUE(r.status.ok()) << Describe(r.status);
  Generate(stub_.get(), LongRequest(), 30.0,
           [](grpc::ClientContext* context, const v1::GenerateResponse&) { context->TryCancel(); });
  Generate(stub_.get(), MakeRequest({}, 4));
  ASSERT_TRUE(WaitFor([&] { return server_->engine()->stats().in_flight == 0; }, 5.0));

  std::string text;
  ASSERT_TRUE(WaitFor([&] {
    text = Metrics();
    // The six calls are counted when they end on the server (OnDone).
    return MetricOr0(text, "mtla_kv_cache_blocks_used") == 0 &&
           MetricOr0(text, "mtla_num_requests_running") == 0 &&
           MetricOr0(text, "mtla_requests_total") == 6;
  }, 3.0, 5)) << text;
  const char* names[] = {
      "mtla_time_to_first_token_seconds", "mtla_inter_token_latency_seconds",
      "mtla_e2e_request_latency_seconds", "mtla_request_queue_time_seconds",
      "mtla_num_requests_running",        "mtla_num_requests_waiting",
      "mtla_kv_cache_usage_ratio",        "mtla_kv_cache_blocks_total",
      "mtla_kv_cache_blocks_used",        "mtla_kv_cache_bytes_per_token",
      "mtla_prompt_tokens_total",         "mtla_generation_tokens_total",
      "mtla_num_preemptions_total",       "mtla_requests_total",
      "mtla_batch_size",                  "mtla_step_duration_seconds"};
  for (const char* name : names) {
    SCOPED_TRACE(name);
    EXPECT_THAT(text, HasSubstr(absl::StrCat("\n# TYPE ", name, " ")));
    const bool sampled_directly = MetricValue(text, name).has_value();
    const bool histogram = MetricValue(text, absl::StrCat(name, "_count")).has_value();
    EXPECT_TRUE(sampled_directly || histogram) << "no sample of " << name;
  }
  // Values consistent with the traffic above.
  // (The cancelled request may, rarely, have finished before its cancellation.)
  const double ok = MetricOr0(text, "mtla_requests_total", "status=\"ok\"");
  EXPECT_GE(ok, 4.0);
  EXPECT_EQ(ok + MetricOr0(text, "mtla_requests_total", "status=\"cancelled\""), 5.0);
  EXPECT_EQ(MetricOr0(text, "mtla_requests_total", "status=\"invalid_argument\""), 1.0);
  EXPECT_EQ(MetricOr0(text, "mtla_prompt_tokens_total"), 5.0 * 7);
  const double generated = MetricOr0(text, "mtla_generation_tokens_total");
  EXPECT_GT(generated, 3.0 * 12 + 40);
  EXPECT_LE(generated, 3.0 * 12 + 40 + kLongTokens);
  EXPECT_EQ(MetricOr0(text, "mtla_kv_cache_blocks_total"), 300.0);
  EXPECT_EQ(MetricOr0(text, "mtla_kv_cache_usage_ratio"), 0.0);
  EXPECT_GT(MetricOr0(text, "mtla_kv_cache_bytes_per_token"), 0.0);
  EXPECT_EQ(MetricOr0(text, "mtla_time_to_first_token_seconds_count"), 5.0);
  EXPECT_EQ(MetricOr0(text, "mtla_e2e_request_latency_seconds_count"), ok);
  EXPECT_GT(MetricOr0(text, "mtla_step_duration_seconds_count"), 0.0);
  EXPECT_EQ(MetricOr0(text, "mtla_num_preemptions_total"), 0.0);

  // promtool's linter accepts the exposition as it is.
  const char* promtool = "/usr/bin/promtool";
  if (access(promtool, X_OK) != 0) {
    std::printf("[  SKIPPED ] promtool check metrics: %s not found (Debian package prometheus)\n",
                promtool);
    return;
  }
  const std::string in = UniqueTempPath("mtla_metrics", ".txt");
  const std::string out = UniqueTempPath("mtla_promtool", ".txt");
  std::ofstream(in) << text;
  const std::string command =
      absl::StrCat("timeout 20 ", promtool, " check metrics < '", in, "' > '", out, "' 2>&1");
  const int rc = std::system(command.c_str());
  std::ifstream output_file(out);
  std::stringstream output;
  output << output_file.rdbuf();
  EXPECT_EQ(rc, 0) << output.str();
  EXPECT_EQ(output.str(), "") << "promtool check metrics complained";
  std::filesystem::remove(in);
  std::filesystem::remove(out);
}

// ---------------------------------------------------------------------------
// The real binary: SIGTERM drains.

using test_support::ChildServer;

TEST(ServerProcessTest, SigtermDrainsInFlightRequestsAndExitsZero) {
  SKIP_WITHOUT_TESTDATA();
  ASSERT_TRUE(std::filesystem::exists(MTLA_SERVER_BINARY)) << MTLA_SERVER_BINARY;

  std::unique_ptr<ChildServer> child;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::health::v1::Health::Stub> health;
  int metrics_port = 0;
  // A port picked by binding port 0 could be taken again before the child
  // binds it; try a few times.
  for (int attempt = 0; attempt < 3 && child == nullptr; ++attempt) {
    const int port = FreePort(), mport = FreePort();
    ASSERT_GT(port, 0);
    ASSERT_GT(mport, 0);
    auto candidate = std::make_unique<ChildServer>();
    ASSERT_TRUE(candidate->Spawn(
        {MTLA_SERVER_BINARY, "--model_dir=" + ModelDir(), absl::StrCat("--listen=127.0.0.1:", port),
         absl::StrCat("--metrics_listen=127.0.0.1:", mport), "--drain_grace_seconds=20",
         "--kv_cache_mb=16", "--device=cpu",
         "--max_running=1"},  // the four long requests below run one after another
        absl::StrCat(testing::TempDir(), "/mtla_server_", getpid(), "_", attempt, ".log")));
    // The port is bound before the model loads; connect once it listens.
    WaitFor([&] { return candidate->Poll().has_value() || Listening(port); }, 20.0, 10);
    channel = LoopbackChannel(port);
    health = grpc::health::v1::Health::NewStub(channel);
    const bool serving = WaitFor([&] {
      return candidate->Poll().has_value() ||
             CheckHealth(health.get()) == HealthCheckResponse::SERVING;
    }, 20.0, 20);
    if (serving && !candidate->Poll().has_value()) {
      child = std::move(candidate);
      metrics_port = mport;
    } else {
      std::printf("mtla-server attempt %d did not come up:\n%s\n", attempt,
                  candidate->Log().c_str());
    }
  }
  ASSERT_NE(child, nullptr) << "mtla-server never reported SERVING";
  auto stub = v1::TextGeneration::NewStub(channel);
  GenerateResult warm = Generate(stub.get(), ReferenceRequest());
  ASSERT_TRUE(warm.status.ok()) << Describe(warm.status);
  EXPECT_EQ(warm.tokens, kGenerated);

  // Four long streams; wait until the server has admitted all four (their
  // prompts are counted on admission).
  constexpr int kTokens = 300;
  const double prompt_tokens_before =
      MetricOr0(ScrapeMetrics(metrics_port), "mtla_prompt_tokens_total");
  std::vector<GenerateResult> results(4);
  std::vector<std::atomic<int>> received(4);
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      results[i] = Generate(stub.get(), LongRequest(kTokens), 40.0,
                            [&](grpc::ClientContext*, const v1::GenerateResponse& m) {
                              received[i].fetch_add(m.token_ids_size());
                            });
    });
  }
  ASSERT_TRUE(WaitFor([&] {
    return MetricOr0(ScrapeMetrics(metrics_port), "mtla_prompt_tokens_total") ==
           prompt_tokens_before + 4 * 7;
  }, 10.0, 1)) << "the server did not admit the four requests";

  ASSERT_EQ(kill(child->pid(), SIGTERM), 0);
  std::vector<int> at_sigterm;
  for (auto& r : received) at_sigterm.push_back(r.load());

  // The drain starts: health turns NOT_SERVING while the streams go on.
  grpc::Status check_status;
  std::optional<HealthCheckResponse::ServingStatus> during;
  WaitFor([&] {
    during = CheckHealth(health.get(), &check_status);
    return during != HealthCheckResponse::SERVING;
  }, 10.0, 1);
  EXPECT_EQ(during, HealthCheckResponse::NOT_SERVING) << Describe(check_status);
  // A new request is refused with UNAVAILABLE (retried briefly, in case the
  // engine's drain flag trails the health status).
  grpc::Status probe_status;
  bool still_streaming = false;
  const bool refused = WaitFor([&] {
    GenerateResult probe = Generate(stub.get(), MakeRequest(kPrompt, 1), 5.0);
    probe_status = probe.status;
    still_streaming = false;
    for (auto& r : received) still_streaming = still_streaming || r.load() < kTokens;
    return probe.status.error_code() == grpc::StatusCode::UNAVAILABLE;
  }, 5.0, 5);
  EXPECT_TRUE(refused) << Describe(probe_status);
  if (still_streaming) {  // the server was still up, so the refusal is the drain's
    EXPECT_THAT(probe_status.error_message(), HasSubstr("draining")) << Describe(probe_status);
  }

  for (std::thread& t : clients) t.join();
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(absl::StrCat("stream ", i));
    ASSERT_TRUE(results[i].status.ok()) << Describe(results[i].status);
    EXPECT_EQ(results[i].tokens.size(), static_cast<size_t>(kTokens));
    ASSERT_FALSE(results[i].messages.empty());
    EXPECT_EQ(results[i].messages.back().finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(results[i].messages.back().usage().generated_tokens(), kTokens);
  }
  // With one request running at a time, the last ones were still waiting when
  // SIGTERM was sent: the drain really finished in-flight work.
  int unfinished_at_sigterm = 0;
  for (int n : at_sigterm) unfinished_at_sigterm += n < kTokens;
  EXPECT_GE(unfinished_at_sigterm, 1);

  const std::optional<int> status = child->WaitExit(30.0);
  ASSERT_TRUE(status.has_value()) << "mtla-server did not exit within 30 s of SIGTERM (killed)\n"
                                  << child->Log();
  EXPECT_TRUE(WIFEXITED(*status)) << "raw wait status " << *status << "\n" << child->Log();
  if (WIFEXITED(*status)) {
    EXPECT_EQ(WEXITSTATUS(*status), 0) << child->Log();
  }
  EXPECT_THAT(child->Log(), HasSubstr("draining"));
}

}  // namespace
}  // namespace mtla
