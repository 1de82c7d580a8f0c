// Keepalive and connection age on mtla-server's gRPC port, end to end over
// loopback: an in-process MtlaServer with ServerOptions::connection
// (server/connection_options.h).
//
// What is observed is the client channel's connectivity state: READY while
// its connection is up; when the server sends GOAWAY (maximum age reached, or
// too many pings) the channel leaves READY at once, even while calls are still
// running on the old connection, and the next call opens a new connection.
//
// - An idle connection is closed after about --max_connection_age_seconds
//   (gRPC adds +-10% jitter); without the flag it stays up.
// - A call in flight when the age is reached goes on over the old connection
//   and completes normally within the grace period (a speech stream, paced by
//   the client so that it outlives the age; the shared speech checkpoint).
// - A call that outlives age + grace is cut with UNAVAILABLE (a health Watch,
//   which never ends by itself).
// - With --keepalive_time_seconds the server pings idle connections and drops
//   one whose peer does not answer (a raw HTTP/2 peer that never writes)
//   after about time + timeout; without it, such a peer stays connected.
// - Client keepalive pings every second without calls: gRPC's default policy
//   answers GOAWAY (too_many_pings); --keepalive_min_client_ping_interval_seconds
//   admits them.
//
// Every wait is bounded; the tests take about 20 s in all.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/audio/pcm.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "server/mtla_server.h"
#include "tests/common/grpc_wait.h"

namespace mtla {
namespace {

using test_support::In;
using Clock = std::chrono::steady_clock;

std::string SpeechModelDir() {
  return std::string(MTLA_TESTDATA_DIR) + "/fairseq_st_reference/fairseq_st_s2";
}
std::string WavPath() { return std::string(MTLA_TESTDATA_DIR) + "/audio/committee_en_16k.wav"; }

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string Describe(const grpc::Status& status) {
  return absl::StrCat("code ", status.error_code(), ": ", status.error_message());
}

const char* StateName(grpc_connectivity_state state) {
  switch (state) {
    case GRPC_CHANNEL_IDLE: return "IDLE";
    case GRPC_CHANNEL_CONNECTING: return "CONNECTING";
    case GRPC_CHANNEL_READY: return "READY";
    case GRPC_CHANNEL_TRANSIENT_FAILURE: return "TRANSIENT_FAILURE";
    case GRPC_CHANNEL_SHUTDOWN: return "SHUTDOWN";
  }
  return "?";
}

class ConnectionTest : public testing::Test {
 protected:
  void TearDown() override {
    if (server_ != nullptr) server_->Drain();
    server_.reset();
  }

  // Starts a server with `connection`; loads `model_dir` when not empty (the
  // health service answers without a model).
  void StartServer(const ConnectionOptions& connection, const std::string& model_dir = "") {
    ServerOptions options;
    options.model_dir = model_dir;
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "";
    options.device = "cpu";
    options.kv_cache_bytes = 64u << 20;
    options.drain_grace_seconds = 5;
    options.connection = connection;
    absl::StatusOr<std::unique_ptr<MtlaServer>> server = MtlaServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    if (!model_dir.empty()) {
      absl::Status loaded = server_->LoadModel();
      ASSERT_TRUE(loaded.ok()) << loaded;
    }
  }

  // A channel with its own connection; `args` added.
  std::shared_ptr<grpc::Channel> Channel(grpc::ChannelArguments args = {}) {
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::InsecureChannelCredentials(), args);
  }

  // One health Check; leaves the channel READY.
  void Connect(const std::shared_ptr<grpc::Channel>& channel) {
    auto health = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(In(5.0));
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status =
        health->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
    ASSERT_TRUE(status.ok()) << Describe(status);
    ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  }

  // Seconds until the channel leaves READY, or a negative number when it is
  // still READY after `timeout` seconds.
  static double SecondsUntilNotReady(const std::shared_ptr<grpc::Channel>& channel,
                                     double timeout) {
    const Clock::time_point start = Clock::now();
    if (!channel->WaitForStateChange(GRPC_CHANNEL_READY, In(timeout))) return -1;
    const double seconds = SecondsSince(start);
    std::printf("channel left READY after %.3f s (now %s)\n", seconds,
                StateName(channel->GetState(false)));
    return seconds;
  }

  std::unique_ptr<MtlaServer> server_;
};

TEST_F(ConnectionTest, IdleConnectionIsClosedAfterMaxAge) {
  StartServer({.max_connection_age_seconds = 1, .max_connection_age_grace_seconds = 1});
  std::shared_ptr<grpc::Channel> channel = Channel();
  const Clock::time_point connected = Clock::now();
  Connect(channel);
  ASSERT_GT(SecondsUntilNotReady(channel, 6.0), 0)
      << "the server did not close the connection within 6 s";
  // 1 s +- 10% jitter from the server's accept, which came after
  // `connected`; an idle connection needs no grace.
  const double age = SecondsSince(connected);
  EXPECT_GE(age, 0.85);
  EXPECT_LE(age, 3.0);
  // The next call connects again.
  Connect(channel);
}

TEST_F(ConnectionTest, WithoutMaxAgeTheConnectionStays) {
  StartServer({});
  std::shared_ptr<grpc::Channel> channel = Channel();
  Connect(channel);
  EXPECT_LT(SecondsUntilNotReady(channel, 2.0), 0) << "the connection was closed";
}

TEST_F(ConnectionTest, CallInFlightAtMaxAgeCompletesWithinGrace) {
  if (!std::filesystem::exists(SpeechModelDir() + "/model.safetensors") ||
      !std::filesystem::exists(WavPath())) {
    GTEST_SKIP() << "shared testdata not found at " << SpeechModelDir() << " / " << WavPath();
  }
  constexpr double kAge = 1, kGrace = 10;
  StartServer({.max_connection_age_seconds = kAge, .max_connection_age_grace_seconds = kGrace},
              SpeechModelDir());
  absl::StatusOr<audio::WavAudio> wav = audio::ReadWavFile(WavPath());
  ASSERT_TRUE(wav.ok()) << wav.status();
  const size_t chunk = static_cast<size_t>(wav->sample_rate_hz) / 10;  // 100 ms

  std::shared_ptr<grpc::Channel> channel = Channel();
  auto stub = v1::SpeechTranslation::NewStub(channel);
  const Clock::time_point start = Clock::now();
  grpc::ClientContext context;
  context.set_deadline(In(kAge + kGrace + 5));
  auto stream = stub->StreamingTranslate(&context);
  v1::StreamingTranslateRequest config;
  config.mutable_config()->set_encoding(v1::LINEAR_PCM16);
  config.mutable_config()->set_sample_rate_hz(wav->sample_rate_hz);
  config.mutable_config()->set_max_tokens(8);
  ASSERT_TRUE(stream->Write(config));
  ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);

  // Responses arrive on their own thread; the ones that come after GOAWAY
  // prove that the old connection still carries the call.
  std::atomic<bool> goaway{false};
  std::atomic<int> after_goaway{0}, responses{0};
  std::thread reader([&] {
    v1::StreamingTranslateResponse response;
    while (stream->Read(&response)) {
      responses.fetch_add(1);
      if (goaway.load()) after_goaway.fetch_add(1);
    }
  });
  // Audio in real time until the server has sent GOAWAY (the channel leaves
  // READY) and a little more, at most 5 s.
  double goaway_at = -1;
  for (size_t at = 0; SecondsSince(start) < 5.0; at = (at + chunk) % wav->samples.size()) {
    const size_t n = std::min(chunk, wav->samples.size() - at);
    v1::StreamingTranslateRequest audio;
    audio.set_audio(audio::EncodePcm16(std::span<const float>(wav->samples.data() + at, n)));
    ASSERT_TRUE(stream->Write(audio)) << "the call ended while audio was being sent";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (goaway_at < 0 && channel->GetState(false) != GRPC_CHANNEL_READY) {
      goaway_at = SecondsSince(start);
      goaway.store(true);
    }
    if (goaway_at > 0 && SecondsSince(start) > goaway_at + 0.5) break;
  }
  ASSERT_GT(goaway_at, 0) << "no GOAWAY within 5 s of a " << kAge << " s connection age";
  EXPECT_GE(goaway_at, 0.8 * kAge);
  stream->WritesDone();
  reader.join();
  grpc::Status status = stream->Finish();
  const double total = SecondsSince(start);
  std::printf("GOAWAY after %.3f s; call finished after %.3f s with %s; %d responses, %d after GOAWAY\n",
              goaway_at, total, Describe(status).c_str(), responses.load(), after_goaway.load());
  EXPECT_TRUE(status.ok()) << Describe(status);
  EXPECT_GT(after_goaway.load(), 0) << "no response arrived after GOAWAY";
  EXPECT_LT(total, 1.1 * kAge + kGrace);

  // The next call uses a new connection.
  v1::TranslateRequest request;
  *request.mutable_config() = config.config();
  request.set_audio(audio::EncodePcm16(std::span<const float>(wav->samples.data(), chunk * 5)));
  v1::TranslateResponse response;
  grpc::ClientContext again;
  again.set_deadline(In(10.0));
  status = stub->Translate(&again, request, &response);
  EXPECT_TRUE(status.ok()) << Describe(status);
}

TEST_F(ConnectionTest, CallOutlivingTheGraceIsCut) {
  constexpr double kAge = 1, kGrace = 1;
  StartServer({.max_connection_age_seconds = kAge, .max_connection_age_grace_seconds = kGrace});
  std::shared_ptr<grpc::Channel> channel = Channel();
  auto health = grpc::health::v1::Health::NewStub(channel);
  const Clock::time_point start = Clock::now();
  grpc::ClientContext context;
  context.set_deadline(In(15.0));
  auto watch = health->Watch(&context, grpc::health::v1::HealthCheckRequest());
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(watch->Read(&response));  // the current status, at once
  while (watch->Read(&response)) {
  }
  grpc::Status status = watch->Finish();
  const double seconds = SecondsSince(start);
  std::printf("Watch ended after %.3f s: %s\n", seconds, Describe(status).c_str());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(status);
  EXPECT_GE(seconds, 0.9 * kAge + kGrace - 0.2);
  EXPECT_LE(seconds, 1.1 * kAge + kGrace + 2.0);
}

// A client that sends keepalive pings as often as gRPC lets it (asked for
// every 100 ms; gRPC 1.51 spaces pings without data at least 1 s apart), with
// no call in flight.
grpc::ChannelArguments EagerPinger() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 100);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS, 100);
  return args;
}

TEST_F(ConnectionTest, FrequentClientPingsNeedThePingIntervalFlag) {
  // gRPC's default policy: pings on a connection without calls count as
  // strikes; the third one gets GOAWAY (too_many_pings), about 3 s in.
  StartServer({});
  std::shared_ptr<grpc::Channel> refused = Channel(EagerPinger());
  Connect(refused);
  EXPECT_GT(SecondsUntilNotReady(refused, 8.0), 0)
      << "gRPC's default policy should have answered GOAWAY (too_many_pings)";
  server_->Drain();
  server_.reset();

  // Pings 1 s apart are within a 0.5 s minimum interval: no strikes, over
  // more pings than the default policy tolerated.
  StartServer({.keepalive_min_client_ping_interval_seconds = 0.5});
  std::shared_ptr<grpc::Channel> admitted = Channel(EagerPinger());
  Connect(admitted);
  EXPECT_LT(SecondsUntilNotReady(admitted, 4.5), 0) << "the pinging client was disconnected";
}

// A peer that opens an HTTP/2 connection to 127.0.0.1:port (client preface
// and an empty SETTINGS frame) and then never writes again, so it answers no
// ping. Seconds until the server closed the connection, or -1 when it is still
// open after `timeout` seconds.
double SecondsUntilSilentPeerIsClosed(int port, double timeout) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -2;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const Clock::time_point start = Clock::now();
  static constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  static constexpr char kEmptySettings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      write(fd, kPreface, sizeof(kPreface) - 1) != static_cast<ssize_t>(sizeof(kPreface) - 1) ||
      write(fd, kEmptySettings, sizeof(kEmptySettings)) != sizeof(kEmptySettings)) {
    close(fd);
    return -2;
  }
  double closed_at = -1;
  char buffer[4096];
  while (SecondsSince(start) < timeout) {
    pollfd p{fd, POLLIN, 0};
    const int left_ms = static_cast<int>((timeout - SecondsSince(start)) * 1e3) + 1;
    if (poll(&p, 1, left_ms) <= 0) continue;
    if (read(fd, buffer, sizeof(buffer)) <= 0) {  // EOF or reset: the server closed it
      closed_at = SecondsSince(start);
      break;
    }
  }
  close(fd);
  return closed_at;
}

TEST_F(ConnectionTest, ServerKeepaliveClosesConnectionsWhosePeerIsGone) {
  StartServer({.keepalive_time_seconds = 0.2, .keepalive_timeout_seconds = 0.5});
  // A live client answers the server's pings and keeps its connection.
  std::shared_ptr<grpc::Channel> channel = Channel();
  Connect(channel);
  EXPECT_LT(SecondsUntilNotReady(channel, 2.0), 0) << "a live client's connection was closed";
  Connect(channel);
  // A peer that answers nothing is dropped after about keepalive time +
  // timeout (gRPC spaces pings at least 1 s apart).
  const double seconds = SecondsUntilSilentPeerIsClosed(server_->port(), 10.0);
  std::printf("silent peer closed by the server after %.3f s\n", seconds);
  EXPECT_GE(seconds, 0.5);
  EXPECT_LE(seconds, 5.0);
}

TEST_F(ConnectionTest, WithoutKeepaliveASilentPeerStays) {
  StartServer({});
  EXPECT_LT(SecondsUntilSilentPeerIsClosed(server_->port(), 3.0), 0);
}

}  // namespace
}  // namespace mtla
