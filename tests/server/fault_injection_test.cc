// Faults from the network side, against an in-process server on the default
// model (models/en-de-synthetic): clients killed with SIGKILL in the middle of
// text and speech streams, a client that never reads, 1,000 idle
// connections, oversized and malformed messages, and the KV cache exhausted
// by mixed speech and text load. Every accepted call must end with OK or a
// precise status, and cache blocks and requests in flight must return to
// zero, with the server still serving.
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/audio/pcm.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mtla/v1/models.grpc.pb.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "server/mtla_server.h"
#include "tests/common/child_server.h"
#include "tests/common/grpc_wait.h"
#include "engine/testing/unique_temp_path.h"
#include "tests/common/metrics_scrape.h"

namespace mtla {
namespace {

using ::testing::AnyOf;
using test_support::ChildServer;
using test_support::ConnectLoopback;
using test_support::FetchModelInfo;
using test_support::HttpExchange;
using test_support::In;
using test_support::WaitFor;

const std::string kModelDir = MTLA_DEFAULT_MODEL_DIR;
const std::string kSampleWav = kModelDir + "/sample.wav";

std::string Pcm16(const std::vector<float>& samples) {
  std::string bytes;
  for (float s : samples) {
    const int16_t v = static_cast<int16_t>(s);
    bytes.append(reinterpret_cast<const char*>(&v), 2);
  }
  return bytes;
}

class FaultInjectionTest : public testing::Test {
 protected:
  void Start(int kv_cache_blocks = 0) {
    ServerOptions options;
    options.model_dir = kModelDir;
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "127.0.0.1:0";
    options.device = "cpu";
    options.kv_cache_bytes = 16u << 20;
    options.kv_cache_blocks = kv_cache_blocks;
    options.drain_grace_seconds = 5;
    auto server = MtlaServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_TRUE(server_->LoadModel().ok());
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    auto wav = audio::ReadWavFile(kSampleWav);
    ASSERT_TRUE(wav.ok()) << wav.status();
    wav_ = *wav;
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Drain();
  }

  // Nothing held: no request in flight, no cache block used.
  void ExpectAllReleased(double seconds = 15) {
    std::shared_ptr<Engine> engine = server_->engine();
    EXPECT_TRUE(WaitFor([&] { return engine->stats().in_flight == 0; }, seconds, 20))
        << "in_flight=" << engine->stats().in_flight;
    EXPECT_TRUE(WaitFor([&] { return engine->stats().cache_blocks_used == 0; }, seconds, 20))
        << "cache_blocks_used=" << engine->stats().cache_blocks_used;
  }

  grpc::Status Translate(v1::TranslateResponse* response = nullptr) {
    auto stub = v1::SpeechTranslation::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(In(60));
    v1::TranslateRequest request;
    request.mutable_config()->set_encoding(v1::LINEAR_PCM16);
    request.mutable_config()->set_sample_rate_hz(wav_.sample_rate_hz);
    request.set_audio(Pcm16(wav_.samples));
    v1::TranslateResponse local;
    return stub->Translate(&context, request, response != nullptr ? response : &local);
  }

  grpc::Status Generate(int max_new_tokens, std::vector<int32_t> prompt = {4, 8, 15, 16}) {
    auto stub = v1::TextGeneration::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(In(60));
    v1::GenerateRequest request;
    for (int32_t id : prompt) request.add_prompt_token_ids(id);
    request.set_max_new_tokens(max_new_tokens);
    request.set_ignore_eos(true);
    auto reader = stub->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
    }
    return reader->Finish();
  }

  std::unique_ptr<MtlaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  audio::WavAudio wav_;
};

TEST_F(FaultInjectionTest, ClientsKilledMidStreamFreeEverything) {
  Start();
  std::vector<std::unique_ptr<ChildServer>> clients;
  for (const char* mode : {"speech", "text", "noread", "speech", "text"}) {
    auto child = std::make_unique<ChildServer>();
    ASSERT_TRUE(child->Spawn({FAULT_CLIENT_BINARY, mode, std::to_string(server_->port()), kSampleWav},
                             UniqueTempPath(absl::StrCat("fault_client_", mode, ".log"))));
    clients.push_back(std::move(child));
  }
  for (auto& child : clients) {
    ASSERT_TRUE(WaitFor([&] { return child->Log().find("READY") != std::string::npos; }, 60, 20))
        << child->Log();
  }
  EXPECT_GT(server_->engine()->stats().in_flight + server_->engine()->stats().cache_blocks_used, 0);
  for (auto& child : clients) {
    kill(child->pid(), SIGKILL);
    child->WaitExit(10);
  }
  ExpectAllReleased();
  v1::TranslateResponse response;
  const grpc::Status status = Translate(&response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_FALSE(response.results().empty());
  EXPECT_FALSE(response.results(0).text().empty());
  ExpectAllReleased();
}

TEST_F(FaultInjectionTest, ThousandIdleConnectionsDoNotStopService) {
  Start();
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < 2400) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 4096);
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < 2400) GTEST_SKIP() << "open-file limit " << limit.rlim_cur << " is too low";
  std::vector<int> idle;
  for (int i = 0; i < 1000; ++i) {
    const int fd = ConnectLoopback(server_->port());
    ASSERT_GE(fd, 0) << "connection " << i;
    idle.push_back(fd);
  }
  v1::ModelInfo info;
  EXPECT_TRUE(FetchModelInfo(channel_, &info).ok());
  EXPECT_TRUE(Generate(8).ok());
  // The metrics port holds at most 64 connections; the rest get 503 at once,
  // and scrapes work again once the idle ones are gone.
  std::vector<int> idle_metrics;
  for (int i = 0; i < 100; ++i) idle_metrics.push_back(ConnectLoopback(server_->metrics_port()));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(test_support::HttpStatus(
                HttpExchange(server_->metrics_port(), "GET /metrics HTTP/1.1\r\n\r\n")),
            503);
  for (int fd : idle) close(fd);
  for (int fd : idle_metrics) close(fd);
  std::string body;
  EXPECT_TRUE(WaitFor([&] { return test_support::HttpGet(server_->metrics_port(), "/metrics", &body) == 200; },
                      5, 50));
  EXPECT_TRUE(Generate(8).ok());
  ExpectAllReleased();
}

TEST_F(FaultInjectionTest, OversizedAndMalformedMessagesGetPreciseStatuses) {
  Start();
  // Larger than --max_message_bytes (4 MiB).
  std::vector<int32_t> huge(1 << 21, 1000000);  // 3-byte varints: 6 MiB
  const grpc::Status oversized = Generate(4, huge);
  EXPECT_EQ(oversized.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << oversized.error_message();
  {
    auto stub = v1::SpeechTranslation::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(In(30));
    v1::TranslateRequest request;
    request.mutable_config()->set_encoding(v1::LINEAR_PCM16);
    request.mutable_config()->set_sample_rate_hz(16000);
    request.set_audio(std::string(5 << 20, '\0'));
    v1::TranslateResponse response;
    EXPECT_EQ(stub->Translate(&context, request, &response).error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  // Bytes that are not the method's message.
  grpc::GenericStub generic(channel_);
  for (const auto& [method, garbage] : std::vector<std::pair<std::string, std::string>>{
           {"/mtla.v1.Models/GetModelInfo", ""},  // valid (empty message): routing works
           {"/mtla.v1.Models/GetModelInfo", "\xff\xff\xff\xff\x0f not a protobuf message"},
           {"/mtla.v1.SpeechTranslation/Translate", "\x0a\xff\xff\xff\xff\x0f"}}) {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    grpc::Slice slice(garbage);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    std::atomic<bool> done{false};
    grpc::Status status;
    generic.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                      [&](grpc::Status s) {
                        status = s;
                        done = true;
                      });
    ASSERT_TRUE(WaitFor([&] { return done.load(); }, 15, 10)) << method;
    if (garbage.empty()) {
      EXPECT_TRUE(status.ok()) << status.error_message();
    } else {
      // gRPC 1.51's callback API answers a request it cannot parse with
      // UNIMPLEMENTED and no message, before the service sees it (recorded
      // in docs/reliability.md as a known limit); never OK, never a crash.
      EXPECT_THAT(status.error_code(), AnyOf(grpc::StatusCode::INTERNAL,
                                             grpc::StatusCode::INVALID_ARGUMENT,
                                             grpc::StatusCode::UNIMPLEMENTED))
          << method << ": " << status.error_message();
    }
  }
  // Not gRPC at all on the gRPC port.
  for (const std::string& bytes :
       {std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), std::string(4096, '\x00'),
        std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + std::string(64, '\xff')}) {
    HttpExchange(server_->port(), bytes, 1.0);
  }
  v1::ModelInfo info;
  EXPECT_TRUE(FetchModelInfo(channel_, &info).ok());
  EXPECT_TRUE(Translate().ok());
  ExpectAllReleased();
}

TEST_F(FaultInjectionTest, CacheExhaustionUnderMixedSpeechAndTextLoad) {
  Start(/*kv_cache_blocks=*/12);
  std::atomic<int> ok{0}, exhausted{0}, other{0};
  std::string others;
  std::mutex others_mu;
  auto count = [&](const grpc::Status& s) {
    if (s.ok()) {
      ++ok;
    } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++exhausted;
    } else {
      ++other;
      std::lock_guard<std::mutex> lock(others_mu);
      others += absl::StrCat(s.error_code(), ": ", s.error_message(), "\n");
    }
  };
  std::vector<std::thread> calls;
  for (int i = 0; i < 6; ++i) {
    calls.emplace_back([&] { count(Translate()); });
    calls.emplace_back([&, i] { count(Generate(60 + 40 * i)); });
  }
  for (std::thread& t : calls) t.join();
  EXPECT_EQ(other.load(), 0) << others;
  EXPECT_EQ(ok + exhausted, 12);
  EXPECT_GT(ok.load(), 0);
  ExpectAllReleased();
  EXPECT_TRUE(Translate().ok());
}

}  // namespace
}  // namespace mtla
