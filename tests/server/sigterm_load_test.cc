// SIGTERM to the real mtla-server (default model) under mixed load: speech
// streams that half-close, one that never does, Generate and Translate calls
// in loops. Every call the server accepted must end with OK or a precise
// UNAVAILABLE (draining, or the grace period over), no call may be dropped
// without its status, and the server must exit 0 with no call, speech session
// or cache block left (its last log line says so).
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
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
#include "tests/common/child_server.h"
#include "tests/common/grpc_wait.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;
using test_support::ChildServer;
using test_support::In;
using test_support::WaitFor;

const std::string kModelDir = MTLA_DEFAULT_MODEL_DIR;

std::string Pcm16(const std::vector<float>& samples, size_t begin, size_t end) {
  std::string bytes;
  for (size_t i = begin; i < end; ++i) {
    const int16_t v = static_cast<int16_t>(samples[i]);
    bytes.append(reinterpret_cast<const char*>(&v), 2);
  }
  return bytes;
}

// Every call's end, by kind.
class Outcomes {
 public:
  void Add(const std::string& kind, const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back({kind, status});
  }
  std::vector<std::pair<std::string, grpc::Status>> calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, grpc::Status>> calls_;
};

// A StreamingTranslate of `wav` at real-time pace, `loops` times over, then
// a half-close (loops < 0: never).
grpc::Status SpeechStream(v1::SpeechTranslation::Stub& stub, const audio::WavAudio& wav,
                          int loops) {
  grpc::ClientContext context;
  context.set_deadline(In(60));
  auto stream = stub.StreamingTranslate(&context);
  v1::StreamingTranslateRequest config;
  config.mutable_config()->set_encoding(v1::LINEAR_PCM16);
  config.mutable_config()->set_sample_rate_hz(wav.sample_rate_hz);
  if (stream->Write(config)) {
    std::thread reader([&] {
      v1::StreamingTranslateResponse response;
      while (stream->Read(&response)) {
      }
    });
    const size_t chunk = static_cast<size_t>(wav.sample_rate_hz) / 10;
    bool open = true;
    for (int loop = 0; open && (loops < 0 || loop < loops); ++loop) {
      for (size_t i = 0; open && i < wav.samples.size(); i += chunk) {
        v1::StreamingTranslateRequest audio;
        audio.set_audio(Pcm16(wav.samples, i, std::min(i + chunk, wav.samples.size())));
        open = stream->Write(audio);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    if (open) stream->WritesDone();
    reader.join();
  }
  return stream->Finish();
}

grpc::Status Generate(v1::TextGeneration::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(In(60));
  v1::GenerateRequest request;
  for (int32_t id : {4, 8, 15, 16, 23, 42}) request.add_prompt_token_ids(id);
  request.set_max_new_tokens(200);
  request.set_ignore_eos(true);
  auto reader = stub.Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  return reader->Finish();
}

grpc::Status Translate(v1::SpeechTranslation::Stub& stub, const audio::WavAudio& wav) {
  grpc::ClientContext context;
  context.set_deadline(In(60));
  v1::TranslateRequest request;
  request.mutable_config()->set_encoding(v1::LINEAR_PCM16);
  request.mutable_config()->set_sample_rate_hz(wav.sample_rate_hz);
  request.set_audio(Pcm16(wav.samples, 0, wav.samples.size()));
  v1::TranslateResponse response;
  return stub.Translate(&context, request, &response);
}

bool ParsePort(const std::string& log, int* port) {
  const size_t at = log.find("listening on port ");
  return at != std::string::npos &&
         std::sscanf(log.c_str() + at, "listening on port %d", port) == 1;
}

TEST(SigtermLoadTest, EveryAcceptedCallEndsWithAStatusAndTheServerExitsClean) {
  auto wav = audio::ReadWavFile(kModelDir + "/sample.wav");
  ASSERT_TRUE(wav.ok()) << wav.status();
  ChildServer server;
  const std::string log = UniqueTempPath("sigterm_load_server.log");
  ASSERT_TRUE(server.Spawn({MTLA_SERVER_BINARY, absl::StrCat("--model_dir=", kModelDir),
                            "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                            "--device=cpu", "--kv_cache_mb=16", "--drain_grace_seconds=3"},
                           log));
  int port = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        return server.Poll().has_value() ||
               (ParsePort(server.Log(), &port) &&
                server.Log().find("mtla-server: serving") != std::string::npos);
      },
      60, 20))
      << server.Log();
  ASSERT_GT(port, 0) << server.Log();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  auto speech = v1::SpeechTranslation::NewStub(channel);
  auto text = v1::TextGeneration::NewStub(channel);

  // Each client loops until its first non-OK status (the drain's), for 60 s
  // at most.
  Outcomes outcomes;
  std::vector<std::thread> clients;
  auto loop = [&](const std::string& kind, std::function<grpc::Status()> call) {
    clients.emplace_back([&outcomes, kind, call] {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (std::chrono::steady_clock::now() < give_up) {
        const grpc::Status status = call();
        outcomes.Add(kind, status);
        if (!status.ok()) return;
      }
    });
  };
  for (int i = 0; i < 2; ++i) {
    loop("speech", [&] { return SpeechStream(*speech, *wav, 1); });
    loop("generate", [&] { return Generate(*text); });
  }
  loop("translate", [&] { return Translate(*speech, *wav); });
  loop("endless speech", [&] { return SpeechStream(*speech, *wav, -1); });

  // Let every kind complete calls, then SIGTERM in the middle of the load.
  ASSERT_TRUE(WaitFor(
      [&] {
        std::map<std::string, int> ok;
        for (const auto& [kind, status] : outcomes.calls()) ok[kind] += status.ok();
        return ok["speech"] > 0 && ok["generate"] > 0 && ok["translate"] > 0;
      },
      60, 20));
  kill(server.pid(), SIGTERM);
  const std::optional<int> exit_status = server.WaitExit(30);
  for (std::thread& t : clients) t.join();

  ASSERT_TRUE(exit_status.has_value());
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << server.Log();
  EXPECT_THAT(server.Log(),
              HasSubstr("mtla-server: stopped (open calls 0, speech sessions 0, cache blocks used 0)"))
      << server.Log();
  std::map<std::string, int> ok, unavailable;
  for (const auto& [kind, status] : outcomes.calls()) {
    if (status.ok()) {
      ++ok[kind];
      continue;
    }
    ASSERT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << kind << ": " << status.error_message();
    ++unavailable[kind];
    const std::string& message = status.error_message();
    if (kind == "endless speech") {
      // Still sending when the grace period ended.
      EXPECT_THAT(message, HasSubstr("drain grace period")) << message;
      continue;
    }
    // Refused as a new call while draining, or not accepted at all once the
    // server had closed its port; never a call cut off without its status.
    const bool precise = message.find("draining") != std::string::npos ||
                         message.find("shutting down") != std::string::npos ||
                         message.find("failed to connect") != std::string::npos ||
                         message.find("Connection refused") != std::string::npos;
    EXPECT_TRUE(precise) << kind << ": " << message;
  }
  EXPECT_EQ(unavailable["endless speech"], 1);
  EXPECT_EQ(ok["endless speech"], 0);
  for (const char* kind : {"speech", "generate", "translate"}) {
    EXPECT_GT(ok[kind], 0) << kind;
    EXPECT_EQ(unavailable[kind], kind == std::string("translate") ? 1 : 2) << kind;
  }
}

}  // namespace
}  // namespace mtla
