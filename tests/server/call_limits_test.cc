// The server's call limits (server/call_control.h) against an in-process
// server on the default model (models/en-de-synthetic), over loopback:
// --max_streams, the idle-stream timeout, and clients that never read their
// responses. Every call ends with OK or the limit's precise status, and the
// cache blocks used, the speech sessions alive and the calls open (read from
// /metrics) return to their starting values.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/audio/pcm.h"
#include "engine/testing/unique_temp_path.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "server/mtla_server.h"
#include "tests/common/child_server.h"
#include "tests/common/grpc_wait.h"
#include "tests/common/metrics_scrape.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;
using test_support::ChildServer;
using test_support::In;
using test_support::WaitFor;
using Stream = grpc::ClientReaderWriter<v1::StreamingTranslateRequest,
                                        v1::StreamingTranslateResponse>;

const std::string kModelDir = MTLA_DEFAULT_MODEL_DIR;

std::string Pcm16(const std::vector<float>& samples) {
  std::string bytes;
  for (float s : samples) {
    const int16_t v = static_cast<int16_t>(s);
    bytes.append(reinterpret_cast<const char*>(&v), 2);
  }
  return bytes;
}

v1::StreamingTranslateRequest Config() {
  v1::StreamingTranslateRequest request;
  request.mutable_config()->set_encoding(v1::LINEAR_PCM16);
  request.mutable_config()->set_sample_rate_hz(16000);
  return request;
}

v1::StreamingTranslateRequest Audio(std::string bytes) {
  v1::StreamingTranslateRequest request;
  request.set_audio(std::move(bytes));
  return request;
}

// What the limits hold on to, from /metrics.
struct Held {
  double blocks = -1, sessions = -1, open_calls = -1;
  bool operator==(const Held& o) const {
    return blocks == o.blocks && sessions == o.sessions && open_calls == o.open_calls;
  }
};

std::ostream& operator<<(std::ostream& os, const Held& h) {
  return os << "{blocks " << h.blocks << ", sessions " << h.sessions << ", open calls "
            << h.open_calls << "}";
}

// One client call in its own context, kept open.
struct OpenStream {
  grpc::ClientContext context;
  std::unique_ptr<Stream> stream;
};

class CallLimitsTest : public testing::Test {
 protected:
  void Start(const std::function<void(ServerOptions&)>& adjust = nullptr) {
    ServerOptions options;
    options.model_dir = kModelDir;
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "127.0.0.1:0";
    options.device = "cpu";
    options.kv_cache_bytes = 16u << 20;
    options.drain_grace_seconds = 2;
    if (adjust) adjust(options);
    auto server = MtlaServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_TRUE(server_->LoadModel().ok());
    channel_ = Channel();
    auto wav = audio::ReadWavFile(kModelDir + "/sample.wav");
    ASSERT_TRUE(wav.ok()) << wav.status();
    wav_ = *wav;
    start_ = Now();
    ASSERT_EQ(start_.open_calls, 0);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Drain();
  }

  std::shared_ptr<grpc::Channel> Channel(grpc::ChannelArguments args = {}) const {
    args.SetInt("mtla.test.unique_channel", ++channel_count_);  // a connection of its own
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::InsecureChannelCredentials(), args);
  }

  Held Now() const {
    Held held;
    std::string body;
    if (test_support::HttpGet(server_->metrics_port(), "/metrics", &body) != 200) return held;
    held.blocks = test_support::MetricValue(body, "mtla_kv_cache_blocks_used").value_or(-1);
    held.sessions = test_support::MetricValue(body, "mtla_speech_sessions").value_or(-1);
    held.open_calls = test_support::MetricValue(body, "mtla_open_calls").value_or(-1);
    return held;
  }

  double Limited(const std::string& reason) const {
    std::string body;
    test_support::HttpGet(server_->metrics_port(), "/metrics", &body);
    return test_support::MetricValue(body, "mtla_calls_limited_total",
                                     absl::StrCat("reason=\"", reason, "\""))
        .value_or(-1);
  }

  // Everything held comes back to what it was before the test's calls.
  void ExpectReleased(double seconds = 15) {
    Held now;
    EXPECT_TRUE(WaitFor([&] { return (now = Now()) == start_; }, seconds, 20))
        << "now " << now << ", at the start " << start_;
  }

  // A StreamingTranslate call with its config (and one chunk) sent.
  std::unique_ptr<OpenStream> OpenSpeechStream(double deadline_seconds = 60) {
    auto open = std::make_unique<OpenStream>();
    open->context.set_deadline(In(deadline_seconds));
    open->stream = v1::SpeechTranslation::NewStub(channel_)->StreamingTranslate(&open->context);
    open->stream->Write(Config());
    open->stream->Write(Audio(Pcm16(std::vector<float>(1600, 0.0f))));
    return open;
  }

  grpc::Status Generate(int max_new_tokens) {
    auto stub = v1::TextGeneration::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(In(60));
    v1::GenerateRequest request;
    for (int32_t id : {4, 8, 15, 16}) request.add_prompt_token_ids(id);
    request.set_max_new_tokens(max_new_tokens);
    request.set_ignore_eos(true);
    auto reader = stub->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
    }
    return reader->Finish();
  }

  grpc::Status Translate() {
    auto stub = v1::SpeechTranslation::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(In(60));
    v1::TranslateRequest request;
    *request.mutable_config() = Config().config();
    request.mutable_config()->set_sample_rate_hz(wav_.sample_rate_hz);
    request.set_audio(Pcm16(wav_.samples));
    v1::TranslateResponse response;
    return stub->Translate(&context, request, &response);
  }

  static grpc::Status ReadToEnd(Stream& stream, int* responses = nullptr) {
    v1::StreamingTranslateResponse response;
    int n = 0;
    while (stream.Read(&response)) ++n;
    if (responses != nullptr) *responses = n;
    return stream.Finish();
  }

  std::unique_ptr<MtlaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  audio::WavAudio wav_;
  Held start_;
  mutable int channel_count_ = 0;
};

TEST_F(CallLimitsTest, MaxStreamsRefusesTheExcessAtOnceAndEveryEndingReturnsItsSlot) {
  Start([](ServerOptions& o) { o.max_streams = 3; });
  std::vector<std::unique_ptr<OpenStream>> open;
  for (int i = 0; i < 3; ++i) open.push_back(OpenSpeechStream());
  ASSERT_TRUE(WaitFor([&] { return server_->open_calls() == 3; }, 10, 10));

  // The excess, on every call kind: RESOURCE_EXHAUSTED at once, naming the
  // limit and the flag.
  const auto refused_at = std::chrono::steady_clock::now();
  auto excess = OpenSpeechStream();
  const grpc::Status stream_refused = ReadToEnd(*excess->stream);
  const grpc::Status generate_refused = Generate(8);
  const grpc::Status translate_refused = Translate();
  EXPECT_LT(std::chrono::steady_clock::now() - refused_at, std::chrono::seconds(2));
  for (const grpc::Status& s : {stream_refused, generate_refused, translate_refused}) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("at most 3"));
    EXPECT_THAT(s.error_message(), HasSubstr("--max_streams"));
  }
  EXPECT_EQ(Limited("max_streams"), 3);
  EXPECT_EQ(server_->open_calls(), 3);

  // OK: a half-close returns the slot, which a Generate then takes and returns.
  open[0]->stream->WritesDone();
  EXPECT_TRUE(ReadToEnd(*open[0]->stream).ok());
  ASSERT_TRUE(WaitFor([&] { return server_->open_calls() == 2; }, 10, 10));
  const grpc::Status generated = Generate(8);
  EXPECT_TRUE(generated.ok()) << generated.error_message();
  // A slot comes back once the server has cleaned the call up (OnDone), a
  // moment after the client has its status.
  ASSERT_TRUE(WaitFor([&] { return server_->open_calls() == 2; }, 10, 10));
  const grpc::Status translated = Translate();
  EXPECT_TRUE(translated.ok()) << translated.error_message();
  ASSERT_TRUE(WaitFor([&] { return server_->open_calls() == 2; }, 10, 10));

  // Error: a second config.
  open[1]->stream->Write(Config());
  EXPECT_EQ(ReadToEnd(*open[1]->stream).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(WaitFor([&] { return server_->open_calls() == 1; }, 10, 10));

  // Cancel.
  open[2]->context.TryCancel();
  EXPECT_EQ(ReadToEnd(*open[2]->stream).error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(WaitFor([&] { return server_->open_calls() == 0; }, 10, 10));

  // A client killed mid-stream (SIGKILL of a client process).
  ChildServer client;
  ASSERT_TRUE(client.Spawn({FAULT_CLIENT_BINARY, "speech", std::to_string(server_->port()),
                            kModelDir + "/sample.wav"},
                           UniqueTempPath("call_limits_fault_client.log")));
  ASSERT_TRUE(WaitFor([&] { return client.Log().find("READY") != std::string::npos; }, 60, 20))
      << client.Log();
  EXPECT_EQ(server_->open_calls(), 1);
  kill(client.pid(), SIGKILL);
  client.WaitExit(10);
  ASSERT_TRUE(WaitFor([&] { return server_->open_calls() == 0; }, 10, 10));

  // Drain: a stream still open when the grace period ends gets UNAVAILABLE,
  // and its slot comes back.
  auto last = OpenSpeechStream();
  ASSERT_TRUE(WaitFor([&] { return server_->open_calls() == 1; }, 10, 10));
  std::thread drain([&] { server_->Drain(); });
  const grpc::Status drained = ReadToEnd(*last->stream);
  drain.join();
  EXPECT_EQ(drained.error_code(), grpc::StatusCode::UNAVAILABLE) << drained.error_message();
  EXPECT_EQ(server_->open_calls(), 0);
  ExpectReleased();
}

TEST_F(CallLimitsTest, IdleStreamEndsWithOutOfRangeAndFreesItsSession) {
  Start([](ServerOptions& o) { o.stream_idle_timeout_seconds = 1; });
  // Audio every 300 ms for 2.5 s: never idle for 1 s, so it completes.
  auto active = OpenSpeechStream();
  // Config and one chunk, then nothing; and a stream that never sends at all.
  auto idle = OpenSpeechStream();
  grpc::ClientContext silent_context;
  silent_context.set_deadline(In(30));
  auto silent = v1::SpeechTranslation::NewStub(channel_)->StreamingTranslate(&silent_context);
  ASSERT_TRUE(WaitFor([&] { return Now().sessions == 2; }, 10, 10));

  const auto started = std::chrono::steady_clock::now();
  std::thread feeder([&] {
    for (int i = 0; i < 8; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      active->stream->Write(Audio(Pcm16(std::vector<float>(1600, 0.0f))));
    }
    active->stream->WritesDone();
  });
  for (Stream* stream : {idle->stream.get(), silent.get()}) {
    const grpc::Status status = ReadToEnd(*stream);
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("no message received for 1 s"));
    EXPECT_THAT(status.error_message(), HasSubstr("--stream_idle_timeout_seconds"));
    EXPECT_LT(waited, 5.0);
  }
  feeder.join();
  const grpc::Status completed = ReadToEnd(*active->stream);
  EXPECT_TRUE(completed.ok()) << completed.error_message();
  EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(2400));
  EXPECT_EQ(Limited("idle_timeout"), 2);
  ExpectReleased();
}

// The client reads nothing while it streams audio as fast as it can, each
// chunk earning a progress response; its receive window is small, so the
// transport soon stops taking responses and they wait in the server.
class NeverReadingClient {
 public:
  NeverReadingClient(std::shared_ptr<grpc::Channel> channel, double deadline_seconds)
      : stub_(v1::SpeechTranslation::NewStub(std::move(channel))) {
    context_.set_deadline(In(deadline_seconds));
    stream_ = stub_->StreamingTranslate(&context_);
    stream_->Write(Config());
    writer_ = std::thread([this] {
      const std::string chunk(320, '\0');  // 10 ms of silence
      while (stream_->Write(Audio(chunk))) ++chunks_;
    });
  }
  ~NeverReadingClient() {
    context_.TryCancel();
    writer_.join();
  }
  Stream& stream() { return *stream_; }
  int chunks() const { return chunks_.load(); }

 private:
  std::unique_ptr<v1::SpeechTranslation::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<Stream> stream_;
  std::atomic<int> chunks_{0};
  std::thread writer_;
};

grpc::ChannelArguments SmallWindow() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  return args;
}

TEST_F(CallLimitsTest, ClientThatStopsReadingIsEndedWithResourceExhausted) {
  constexpr int kMaxPending = 32;
  Start([](ServerOptions& o) {
    o.max_pending_responses = kMaxPending;
    o.stream_write_stall_seconds = 30;  // long: this client reads again, and gets the status
  });
  NeverReadingClient client(Channel(SmallWindow()), 60);
  ASSERT_TRUE(WaitFor([&] { return Limited("not_reading") == 1; }, 30, 10))
      << client.chunks() << " chunks sent";
  // The session's segments were cancelled at once (the session object goes
  // with the call, once the client takes its status or the write-stall bound
  // cancels it).
  EXPECT_TRUE(WaitFor([&] { return Now().blocks == 0; }, 10, 10));
  int responses = 0;
  const grpc::Status status = ReadToEnd(client.stream(), &responses);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("not reading its responses"));
  EXPECT_THAT(status.error_message(), HasSubstr(absl::StrCat(kMaxPending, " responses")));
  // What reached the client is what the transport held plus the bounded
  // outbox, far fewer than the chunks the server received and answered.
  EXPECT_LT(responses, client.chunks() / 2) << client.chunks() << " chunks sent";
  std::printf("chunks sent %d, responses received %d\n", client.chunks(), responses);
  ExpectReleased();
}

TEST_F(CallLimitsTest, ClientThatNeverReadsIsCancelledAfterTheWriteStallBound) {
  Start([](ServerOptions& o) {
    o.max_pending_responses = 32;
    o.stream_write_stall_seconds = 1;
  });
  {
    NeverReadingClient client(Channel(SmallWindow()), 60);
    ASSERT_TRUE(WaitFor([&] { return Limited("not_reading") == 1; }, 30, 10));
    // The client still reads nothing: the call is cancelled, its slot freed.
    ExpectReleased(10);
  }
  // A Generate whose client never reads: its responses stop at the window,
  // and the call is cancelled once its write has waited for the bound.
  auto stub = v1::TextGeneration::NewStub(Channel(SmallWindow()));
  grpc::ClientContext context;
  context.set_deadline(In(60));
  v1::GenerateRequest request;
  for (int32_t id : {4, 8, 15, 16}) request.add_prompt_token_ids(id);
  request.set_max_new_tokens(1500);  // within the model's 1774-token context
  request.set_ignore_eos(true);
  auto reader = stub->Generate(&context, request);
  EXPECT_TRUE(WaitFor([&] { return Limited("not_reading") == 2; }, 30, 10));
  ExpectReleased(10);
  // What the client finds once it reads: the responses the window held,
  // then the cancellation (gRPC gives a client its status after its reads).
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  EXPECT_TRUE(Generate(8).ok());
}

TEST_F(CallLimitsTest, HalfClosedStreamWhoseClientNeverReadsIsEnded) {
  Start([](ServerOptions& o) {
    o.max_pending_responses = 100000;  // only the write-stall bound applies
    o.stream_write_stall_seconds = 1;
  });
  auto stub = v1::SpeechTranslation::NewStub(Channel(SmallWindow()));
  grpc::ClientContext context;
  context.set_deadline(In(60));
  auto stream = stub->StreamingTranslate(&context);
  v1::StreamingTranslateRequest config = Config();
  config.mutable_config()->set_sample_rate_hz(wav_.sample_rate_hz);
  ASSERT_TRUE(stream->Write(config));
  // 10 ms chunks: far more progress responses than the 1 KiB window holds.
  const size_t chunk = static_cast<size_t>(wav_.sample_rate_hz) / 100;
  for (size_t i = 0; i < wav_.samples.size(); i += chunk) {
    std::vector<float> part(wav_.samples.begin() + i,
                            wav_.samples.begin() + std::min(i + chunk, wav_.samples.size()));
    ASSERT_TRUE(stream->Write(Audio(Pcm16(part))));
  }
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_TRUE(WaitFor([&] { return Limited("not_reading") == 1; }, 20, 10));
  ExpectReleased(10);
  int responses = 0;
  const grpc::Status status = ReadToEnd(*stream, &responses);
  EXPECT_THAT(status.error_code(), testing::AnyOf(grpc::StatusCode::CANCELLED,
                                                  grpc::StatusCode::RESOURCE_EXHAUSTED))
      << status.error_message();
}

}  // namespace
}  // namespace mtla
