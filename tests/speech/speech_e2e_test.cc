// End-to-end tests of mtla.v1.SpeechTranslation over gRPC on loopback, against
// an in-process MtlaServer serving the shared speech-translation checkpoint
// MTLA_TESTDATA_DIR/fairseq_st_reference/fairseq_st_s2 (random weights: its
// translations are noise, but deterministic) and the WAV files of
// MTLA_TESTDATA_DIR/audio (16 kHz, and one 8 kHz file that the server
// resamples).
//
// Covered: streaming in 100 ms chunks (progress per chunk, final results per
// segment, timing), determinism under concurrent streams and against the unary
// Translate, beam search, interim hypotheses, endpointing at a pause, the
// error contract (every error leaves the KV cache as it was and the server
// serving), cancellation, release of finished calls' sessions, and the speech
// metrics on /metrics.
//
// Everything listens on 127.0.0.1 with kernel-chosen ports; every RPC has a
// deadline and every wait is bounded. The tests are skipped with a visible
// message when the shared data is absent.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/audio/pcm.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/common/grpc_wait.h"
#include "tests/common/metrics_scrape.h"
#include "mtla/v1/models.grpc.pb.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "server/mtla_server.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;
using test_support::HttpGet;
using test_support::In;
using test_support::WaitFor;
using test_support::MetricValue;
using Request = v1::StreamingTranslateRequest;
using Response = v1::StreamingTranslateResponse;

constexpr int32_t kEos = 2;

std::string ModelDir() {
  return std::string(MTLA_TESTDATA_DIR) + "/fairseq_st_reference/fairseq_st_s2";
}
std::string AudioDir() { return std::string(MTLA_TESTDATA_DIR) + "/audio"; }

bool HaveTestdata() {
  return std::filesystem::exists(ModelDir() + "/model.safetensors") &&
         std::filesystem::exists(ModelDir() + "/config.json") &&
         std::filesystem::is_directory(AudioDir());
}

#define SKIP_WITHOUT_TESTDATA()                                                    \
  do {                                                                             \
    if (!HaveTestdata()) {                                                         \
      GTEST_SKIP() << "shared testdata not found at " << ModelDir() << " and "     \
                   << AudioDir();                                                  \
    }                                                                              \
  } while (0)


std::string Describe(const grpc::Status& status) {
  return absl::StrCat("code ", status.error_code(), ": ", status.error_message());
}

std::string Ids(const std::vector<int32_t>& ids) { return absl::StrJoin(ids, " "); }

std::vector<int32_t> TokenIds(const v1::SegmentResult& r) {
  return std::vector<int32_t>(r.token_ids().begin(), r.token_ids().end());
}

// ---------------------------------------------------------------------------
// Audio.

struct Wav {
  std::string name;
  int rate = 0;
  std::vector<float> samples;  // int16 scale
  double seconds() const { return static_cast<double>(samples.size()) / rate; }
};

// Every WAV of the audio folder, sorted by name.
std::vector<Wav> LoadWavs() {
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(AudioDir())) {
    if (entry.path().extension() == ".wav") paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  std::vector<Wav> wavs;
  for (const std::string& path : paths) {
    absl::StatusOr<audio::WavAudio> wav = audio::ReadWavFile(path);
    EXPECT_TRUE(wav.ok()) << wav.status();
    if (!wav.ok()) continue;
    wavs.push_back(Wav{std::filesystem::path(path).filename().string(), wav->sample_rate_hz,
                       std::move(wav->samples)});
  }
  return wavs;
}

std::optional<Wav> FindWav(const std::string& name) {
  for (Wav& w : LoadWavs()) {
    if (w.name == name) return std::move(w);
  }
  return std::nullopt;
}

v1::TranslationConfig Config(int rate, int beam_size = 0) {
  v1::TranslationConfig config;
  config.set_encoding(v1::LINEAR_PCM16);
  config.set_sample_rate_hz(rate);
  config.set_beam_size(beam_size);
  return config;
}

Request ConfigRequest(const v1::TranslationConfig& config) {
  Request r;
  *r.mutable_config() = config;
  return r;
}

Request AudioRequest(std::string bytes) {
  Request r;
  r.set_audio(std::move(bytes));
  return r;
}

// The audio of `samples` in chunks of `chunk_ms`.
std::vector<Request> AudioChunks(const std::vector<float>& samples, int rate, int chunk_ms = 100) {
  std::vector<Request> out;
  const size_t chunk = static_cast<size_t>(rate) * chunk_ms / 1000;
  for (size_t at = 0; at < samples.size(); at += chunk) {
    const size_t n = std::min(chunk, samples.size() - at);
    out.push_back(AudioRequest(audio::EncodePcm16(std::span<const float>(samples.data() + at, n))));
  }
  return out;
}

// config, then the audio in 100 ms chunks.
std::vector<Request> StreamRequests(const v1::TranslationConfig& config,
                                    const std::vector<float>& samples, int rate) {
  std::vector<Request> requests = {ConfigRequest(config)};
  for (Request& r : AudioChunks(samples, rate)) requests.push_back(std::move(r));
  return requests;
}

// ---------------------------------------------------------------------------
// One StreamingTranslate call.

struct StreamOutcome {
  grpc::Status status;
  std::vector<Response> responses;           // in arrival order
  std::vector<v1::AudioProgress> progress;   // responses with progress
  std::vector<v1::SegmentResult> finals;     // results with is_final
  std::vector<v1::SegmentResult> non_finals; // text deltas and interim hypotheses
  int written = 0;                           // requests the client wrote successfully

  // Final results by segment index (they may arrive out of order).
  std::vector<v1::SegmentResult> SortedFinals() const {
    std::vector<v1::SegmentResult> sorted = finals;
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
      return a.segment_index() < b.segment_index();
    });
    return sorted;
  }
  std::vector<std::vector<int32_t>> FinalIds() const {
    std::vector<std::vector<int32_t>> ids;
    for (const auto& r : SortedFinals()) ids.push_back(TokenIds(r));
    return ids;
  }
};

struct StreamOptions {
  double deadline_seconds = 30;
  bool half_close = true;
  int pace_ms = 0;  // pause between written requests
  // Called on the reader thread for every response (may cancel `context`).
  std::function<void(grpc::ClientContext*, const Response&)> on_response;
  // Called on the writer thread after each successful write (index of the request).
  std::function<void(grpc::ClientContext*, int)> after_write;
};

StreamOutcome Stream(v1::SpeechTranslation::Stub* stub, const std::vector<Request>& requests,
                     const StreamOptions& options = {}) {
  StreamOutcome out;
  grpc::ClientContext context;
  context.set_deadline(In(options.deadline_seconds));
  std::unique_ptr<grpc::ClientReaderWriter<Request, Response>> stream =
      stub->StreamingTranslate(&context);
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (size_t i = 0; i < requests.size(); ++i) {
      if (!stream->Write(requests[i])) return;  // the call ended
      written.store(static_cast<int>(i) + 1);
      if (options.after_write) options.after_write(&context, static_cast<int>(i));
      if (options.pace_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(options.pace_ms));
    }
    if (options.half_close) stream->WritesDone();
  });
  Response response;
  while (stream->Read(&response)) {
    out.responses.push_back(response);
    if (response.has_progress()) out.progress.push_back(response.progress());
    if (response.has_result()) {
      (response.result().is_final() ? out.finals : out.non_finals).push_back(response.result());
    }
    if (options.on_response) options.on_response(&context, response);
  }
  writer.join();
  out.status = stream->Finish();
  out.written = written.load();
  return out;
}

v1::TranslateResponse Translate(v1::SpeechTranslation::Stub* stub, const v1::TranslationConfig& config,
                                const std::vector<float>& samples, grpc::Status* status) {
  v1::TranslateRequest request;
  *request.mutable_config() = config;
  request.set_audio(audio::EncodePcm16(samples));
  v1::TranslateResponse response;
  grpc::ClientContext context;
  context.set_deadline(In(30));
  *status = stub->Translate(&context, request, &response);
  return response;
}

// ---------------------------------------------------------------------------
// Metrics over HTTP.


// ---------------------------------------------------------------------------
// Servers.

ServerOptions DefaultOptions() {
  ServerOptions options;
  options.model_dir = ModelDir();
  options.listen_address = "127.0.0.1:0";
  options.metrics_address = "127.0.0.1:0";
  options.device = "cpu";
  options.kv_cache_bytes = 64u << 20;
  options.drain_grace_seconds = 5;
  return options;
}

// Server options of the limits tests: small chunks, short streams.
constexpr size_t kChunkLimit = 64 << 10;
constexpr double kMaxStreamSeconds = 2.0;
ServerOptions LimitedOptions() {
  ServerOptions options = DefaultOptions();
  options.max_audio_chunk_bytes = kChunkLimit;
  options.max_stream_seconds = kMaxStreamSeconds;
  return options;
}

// One server per test suite, started on first use.
class SpeechTest : public testing::Test {
 protected:
  static MtlaServer* StartShared(const ServerOptions& options, std::string* error) {
    absl::StatusOr<std::unique_ptr<MtlaServer>> server = MtlaServer::Start(options);
    if (!server.ok()) {
      *error = server.status().ToString();
      return nullptr;
    }
    if (absl::Status loaded = (*server)->LoadModel(); !loaded.ok()) {
      *error = loaded.ToString();
      return nullptr;
    }
    return server->release();
  }
  static void StopShared(MtlaServer*& server) {
    if (server == nullptr) return;
    server->Drain();
    delete server;  // up to ~2 s: the metrics exposer stops slowly
    server = nullptr;
  }

  void SetUpServer(MtlaServer* server, const std::string& error) {
    ASSERT_NE(server, nullptr) << "server did not start: " << error;
    server_ = server;
    ASSERT_GT(server_->port(), 0);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::SpeechTranslation::NewStub(channel_);
    ASSERT_NE(server_->engine(), nullptr);
  }

  void TearDown() override {
    if (server_ == nullptr || server_->engine() == nullptr) return;
    // No leak: every segment ended and returned its cache blocks.
    std::shared_ptr<Engine> engine = server_->engine();
    EXPECT_TRUE(WaitFor([&] { return engine->stats().in_flight == 0; }, 10.0))
        << "in_flight=" << engine->stats().in_flight;
    EXPECT_TRUE(WaitFor([&] { return engine->stats().cache_blocks_used == 0; }, 5.0))
        << "cache_blocks_used=" << engine->stats().cache_blocks_used;
  }

  // The cache blocks in use once the engine is idle (the engine publishes its
  // counts after each loop iteration, at least every 20 ms when idle, so a
  // value read right after a call ended may still count that call's blocks).
  int CacheBlocksUsed() const {
    std::shared_ptr<Engine> engine = server_->engine();
    EXPECT_TRUE(WaitFor([&] { return engine->stats().in_flight == 0; }, 5.0));
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    return engine->stats().cache_blocks_used;
  }

  // Polls briefly until the cache is back to `blocks` and nothing is in flight.
  void ExpectCacheBackTo(int blocks) {
    std::shared_ptr<Engine> engine = server_->engine();
    EXPECT_TRUE(WaitFor(
        [&] {
          EngineStats s = engine->stats();
          return s.cache_blocks_used == blocks && s.in_flight == 0;
        },
        5.0))
        << "cache_blocks_used=" << engine->stats().cache_blocks_used << " (expected " << blocks
        << "), in_flight=" << engine->stats().in_flight;
  }

  // A normal, short stream succeeds with one final result.
  void ExpectStillServing() {
    std::optional<Wav> wav = FindWav("hello_en_8k.wav");
    ASSERT_TRUE(wav.has_value());
    StreamOutcome r = Stream(stub_.get(), StreamRequests(Config(wav->rate), wav->samples, wav->rate));
    ASSERT_TRUE(r.status.ok()) << "the server no longer serves: " << Describe(r.status);
    ASSERT_EQ(r.finals.size(), 1u);
    EXPECT_FALSE(r.finals[0].token_ids().empty());
  }

  // Runs `requests` and expects the call to fail with `code` and a message
  // naming `field`; then the cache is as before and the server still serves.
  StreamOutcome ExpectRejected(const std::vector<Request>& requests, grpc::StatusCode code,
                               const std::string& field, const StreamOptions& options = {}) {
    const int before = CacheBlocksUsed();
    StreamOutcome r = Stream(stub_.get(), requests, options);
    EXPECT_EQ(r.status.error_code(), code) << Describe(r.status);
    if (!field.empty()) {
      EXPECT_THAT(r.status.error_message(), HasSubstr(field));
    }
    ExpectCacheBackTo(before);
    ExpectStillServing();
    return r;
  }

  MtlaServer* server_ = nullptr;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SpeechTranslation::Stub> stub_;
};

class SpeechServerTest : public SpeechTest {
 protected:
  static void SetUpTestSuite() {
    if (HaveTestdata()) shared_ = StartShared(DefaultOptions(), &error_);
  }
  static void TearDownTestSuite() { StopShared(shared_); }
  void SetUp() override {
    SKIP_WITHOUT_TESTDATA();
    SetUpServer(shared_, error_);
  }
  static MtlaServer* shared_;
  static std::string error_;
};
MtlaServer* SpeechServerTest::shared_ = nullptr;
std::string SpeechServerTest::error_;

class SpeechLimitsTest : public SpeechTest {
 protected:
  static void SetUpTestSuite() {
    if (HaveTestdata()) shared_ = StartShared(LimitedOptions(), &error_);
  }
  static void TearDownTestSuite() { StopShared(shared_); }
  void SetUp() override {
    SKIP_WITHOUT_TESTDATA();
    SetUpServer(shared_, error_);
  }
  static MtlaServer* shared_;
  static std::string error_;
};
MtlaServer* SpeechLimitsTest::shared_ = nullptr;
std::string SpeechLimitsTest::error_;

// ---------------------------------------------------------------------------
// Result checks.

// The result sequence the proto documents: per segment INTERIM* then DELTA*
// then one FINAL, and nothing of a segment after its FINAL; is_final agrees
// with the kind; stability only on interims, in [0, 1]; timing on interims
// and finals only; a final's alternatives best first, the first one being
// the result itself.
void CheckResultKinds(const StreamOutcome& r) {
  std::map<int, v1::ResultKind> last;  // the latest kind seen per segment
  for (const Response& response : r.responses) {
    if (!response.has_result()) continue;
    const v1::SegmentResult& result = response.result();
    SCOPED_TRACE(result.ShortDebugString());
    const v1::ResultKind kind = result.kind();
    ASSERT_NE(kind, v1::RESULT_KIND_UNSPECIFIED);
    EXPECT_EQ(result.is_final(), kind == v1::RESULT_KIND_FINAL);
    const auto seen = last.find(result.segment_index());
    if (seen != last.end()) {
      EXPECT_NE(seen->second, v1::RESULT_KIND_FINAL) << "a result after the segment's final";
      EXPECT_LE(static_cast<int>(seen->second), static_cast<int>(kind))
          << "kinds out of order: " << v1::ResultKind_Name(seen->second) << " then "
          << v1::ResultKind_Name(kind);
    }
    last[result.segment_index()] = kind;
    EXPECT_EQ(result.has_timing(), kind != v1::RESULT_KIND_DELTA);
    EXPECT_GE(result.stability(), 0.0f);
    EXPECT_LE(result.stability(), 1.0f);
    if (kind != v1::RESULT_KIND_INTERIM) EXPECT_EQ(result.stability(), 0.0f);
    if (kind != v1::RESULT_KIND_FINAL) {
      EXPECT_EQ(result.alternatives_size(), 0);
      continue;
    }
    ASSERT_GE(result.alternatives_size(), 1);
    EXPECT_EQ(Ids(std::vector<int32_t>(result.alternatives(0).token_ids().begin(),
                                       result.alternatives(0).token_ids().end())),
              Ids(TokenIds(result)));
    EXPECT_EQ(result.alternatives(0).text(), result.text());
    for (int i = 0; i < result.alternatives_size(); ++i) {
      EXPECT_LE(result.alternatives(i).score(), 0.0);
      if (i > 0) EXPECT_LE(result.alternatives(i).score(), result.alternatives(i - 1).score());
    }
  }
}

// The checks every successful stream of `wav` in 100 ms chunks must pass.
void CheckStream(const StreamOutcome& r, const Wav& wav, bool greedy) {
  SCOPED_TRACE(wav.name);
  ASSERT_TRUE(r.status.ok()) << Describe(r.status);
  const int chunks = static_cast<int>(AudioChunks(wav.samples, wav.rate).size());
  // Exactly one progress response per audio chunk, counting up.
  ASSERT_EQ(static_cast<int>(r.progress.size()), chunks);
  double last_processed = 0;
  for (int i = 0; i < chunks; ++i) {
    EXPECT_EQ(r.progress[i].chunks_received(), i + 1) << "progress " << i;
    EXPECT_GE(r.progress[i].processed_seconds(), last_processed) << "progress " << i;
    last_processed = r.progress[i].processed_seconds();
  }
  // The first response is the call's metadata alone; every later one holds
  // either progress or a result.
  ASSERT_FALSE(r.responses.empty());
  EXPECT_TRUE(r.responses[0].has_metadata()) << r.responses[0].ShortDebugString();
  EXPECT_FALSE(r.responses[0].has_progress() || r.responses[0].has_result());
  for (size_t i = 1; i < r.responses.size(); ++i) {
    const Response& response = r.responses[i];
    EXPECT_FALSE(response.has_metadata()) << i << ": " << response.ShortDebugString();
    EXPECT_NE(response.has_progress(), response.has_result()) << response.ShortDebugString();
  }
  CheckResultKinds(r);
  // The 16 kHz audio processed: the file's duration (at other rates the
  // resampler holds back its filter delay, ~30 ms, until the half-close).
  EXPECT_NEAR(last_processed, wav.seconds(), wav.rate == 16000 ? 1e-9 : 0.05);
  EXPECT_LE(last_processed, wav.seconds() + 1e-9);

  // One final result per segment (segments decode concurrently, so their
  // results may arrive out of order), each inside the audio, after the previous.
  ASSERT_FALSE(r.finals.empty());
  const std::vector<v1::SegmentResult> finals = r.SortedFinals();
  double previous_end = 0;
  for (size_t i = 0; i < finals.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("segment ", i));
    const v1::SegmentResult& f = finals[i];
    EXPECT_TRUE(f.is_final());
    EXPECT_EQ(f.segment_index(), static_cast<int>(i));
    EXPECT_GE(f.start_seconds(), previous_end - 1e-9);
    EXPECT_LT(f.start_seconds(), f.end_seconds());
    EXPECT_LE(f.end_seconds(), wav.seconds() + 0.002);
    previous_end = f.end_seconds();
    ASSERT_FALSE(f.token_ids().empty());
    EXPECT_EQ(f.token_ids(f.token_ids_size() - 1), kEos) << Ids(TokenIds(f));
    for (int j = 0; j + 1 < f.token_ids_size(); ++j) EXPECT_NE(f.token_ids(j), kEos) << Ids(TokenIds(f));
    ASSERT_TRUE(f.has_timing());
    EXPECT_GT(f.timing().encode_seconds(), 0);
    EXPECT_GE(f.timing().first_token_seconds(), 0);
    EXPECT_GT(f.timing().decode_seconds(), 0);
    EXPECT_GE(f.timing().decode_seconds(), f.timing().first_token_seconds());
    EXPECT_GT(f.timing().real_time_factor(), 0);
    const double duration = f.end_seconds() - f.start_seconds();
    EXPECT_NEAR(f.timing().real_time_factor(),
                (f.timing().encode_seconds() + f.timing().decode_seconds()) / duration,
                1e-6 + 1e-6 * f.timing().real_time_factor());
  }
  // The last segment ends with the audio.
  EXPECT_NEAR(finals.back().end_seconds(), wav.seconds(), 0.002);
  if (greedy) {
    // Greedy decoding streams its tokens as deltas before the final result.
    std::map<int, std::vector<int32_t>> deltas;
    for (const v1::SegmentResult& d : r.non_finals) {
      EXPECT_FALSE(d.has_timing());
      auto& ids = deltas[d.segment_index()];
      ids.insert(ids.end(), d.token_ids().begin(), d.token_ids().end());
    }
    for (const v1::SegmentResult& f : r.finals) {
      EXPECT_EQ(Ids(deltas[f.segment_index()]), Ids(TokenIds(f)))
          << "deltas of segment " << f.segment_index();
    }
  }
}

// ---------------------------------------------------------------------------
// 1. Streaming every file; determinism.

TEST_F(SpeechServerTest, StreamsEveryWavAndMatchesConcurrentAndUnaryResults) {
  const std::vector<Wav> wavs = LoadWavs();
  ASSERT_GE(wavs.size(), 3u);
  bool have_8k = false;
  std::vector<std::vector<std::vector<int32_t>>> solo(wavs.size());
  for (size_t i = 0; i < wavs.size(); ++i) {
    const Wav& wav = wavs[i];
    have_8k |= wav.rate == 8000;
    StreamOutcome r = Stream(stub_.get(), StreamRequests(Config(wav.rate), wav.samples, wav.rate));
    CheckStream(r, wav, /*greedy=*/true);
    solo[i] = r.FinalIds();
  }
  EXPECT_TRUE(have_8k) << "the audio folder should hold an 8 kHz file";

  // The same files, twice each, all at once: batching (in the encoder worker
  // and in the engine) changes nothing.
  auto encoder_batches = [&] {  // {batches, segments in them}
    std::string body;
    EXPECT_EQ(HttpGet(server_->metrics_port(), "/metrics", &body), 200);
    return std::make_pair(MetricValue(body, "mtla_encoder_batch_size_count").value_or(0),
                          MetricValue(body, "mtla_encoder_batch_size_sum").value_or(0));
  };
  const auto batches_before = encoder_batches();
  constexpr int kCopies = 2;
  std::vector<StreamOutcome> outcomes(wavs.size() * kCopies);
  std::atomic<bool> streaming{true};
  std::atomic<int> max_in_flight{0};  // segments in the engine at once
  std::thread sampler([&] {
    std::shared_ptr<Engine> engine = server_->engine();
    while (streaming.load()) {
      max_in_flight.store(std::max(max_in_flight.load(), engine->stats().in_flight));
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  });
  std::vector<std::thread> threads;
  for (size_t k = 0; k < outcomes.size(); ++k) {
    threads.emplace_back([&, k] {
      const Wav& wav = wavs[k % wavs.size()];
      outcomes[k] = Stream(stub_.get(), StreamRequests(Config(wav.rate), wav.samples, wav.rate));
    });
  }
  for (std::thread& t : threads) t.join();
  streaming.store(false);
  sampler.join();
  EXPECT_GT(max_in_flight.load(), 1) << "the concurrent streams were never decoded together";
  const auto batches_after = encoder_batches();
  EXPECT_GT(batches_after.second - batches_before.second,
            batches_after.first - batches_before.first)
      << "no encoder batch held two segments of the concurrent streams";
  for (size_t k = 0; k < outcomes.size(); ++k) {
    const size_t i = k % wavs.size();
    SCOPED_TRACE(absl::StrCat("concurrent stream ", k, " of ", wavs[i].name));
    CheckStream(outcomes[k], wavs[i], /*greedy=*/true);
    const std::vector<std::vector<int32_t>> ids = outcomes[k].FinalIds();
    ASSERT_EQ(ids.size(), solo[i].size());
    for (size_t s = 0; s < solo[i].size(); ++s) {
      EXPECT_EQ(Ids(ids[s]), Ids(solo[i][s])) << "segment " << s;
    }
  }

  // The unary Translate of the same audio gives the same segments.
  for (size_t i = 0; i < wavs.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("Translate ", wavs[i].name));
    grpc::Status status;
    v1::TranslateResponse response = Translate(stub_.get(), Config(wavs[i].rate), wavs[i].samples, &status);
    ASSERT_TRUE(status.ok()) << Describe(status);
    ASSERT_EQ(static_cast<size_t>(response.results_size()), solo[i].size());
    EXPECT_EQ(response.metadata().model(), "fairseq_st_s2");
    for (int s = 0; s < response.results_size(); ++s) {
      const v1::SegmentResult& r = response.results(s);
      EXPECT_TRUE(r.is_final());
      EXPECT_EQ(r.kind(), v1::RESULT_KIND_FINAL);
      EXPECT_EQ(r.alternatives_size(), 1);
      EXPECT_EQ(r.segment_index(), s);
      EXPECT_EQ(Ids(TokenIds(r)), Ids(solo[i][s])) << "segment " << s;
      EXPECT_GT(r.timing().real_time_factor(), 0);
    }
  }
}

// ---------------------------------------------------------------------------
// 2. Beam search.

TEST_F(SpeechServerTest, BeamSearch) {
  std::optional<Wav> wav = FindWav("passengers_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  StreamOutcome beam4 = Stream(stub_.get(), StreamRequests(Config(wav->rate, 4), wav->samples, wav->rate));
  CheckStream(beam4, *wav, /*greedy=*/false);
  // The n-best: beam_size hypotheses (fairseq finalizes exactly that many),
  // distinct, best first; no deltas with several beams.
  for (const v1::SegmentResult& f : beam4.finals) {
    SCOPED_TRACE(f.ShortDebugString());
    ASSERT_EQ(f.alternatives_size(), 4);
    for (int i = 1; i < 4; ++i) {
      EXPECT_NE(f.alternatives(i).ShortDebugString(), f.alternatives(0).ShortDebugString());
      EXPECT_LE(f.alternatives(i).score(), f.alternatives(i - 1).score());
      EXPECT_EQ(f.alternatives(i).token_ids(f.alternatives(i).token_ids_size() - 1), kEos);
    }
  }
  EXPECT_TRUE(beam4.non_finals.empty());

  StreamOutcome greedy = Stream(stub_.get(), StreamRequests(Config(wav->rate, 0), wav->samples, wav->rate));
  CheckStream(greedy, *wav, /*greedy=*/true);
  StreamOutcome beam1 = Stream(stub_.get(), StreamRequests(Config(wav->rate, 1), wav->samples, wav->rate));
  CheckStream(beam1, *wav, /*greedy=*/true);
  for (const StreamOutcome* one : {&greedy, &beam1}) {
    for (const v1::SegmentResult& f : one->finals) EXPECT_EQ(f.alternatives_size(), 1);
  }
  ASSERT_EQ(beam1.FinalIds().size(), greedy.FinalIds().size());
  for (size_t s = 0; s < greedy.FinalIds().size(); ++s) {
    EXPECT_EQ(Ids(beam1.FinalIds()[s]), Ids(greedy.FinalIds()[s])) << "segment " << s;
  }
}

// ---------------------------------------------------------------------------
// Interim hypotheses.

TEST_F(SpeechServerTest, InterimResultsLeaveFinalResultsUnchanged) {
  std::optional<Wav> wav = FindWav("committee_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  StreamOutcome plain = Stream(stub_.get(), StreamRequests(Config(wav->rate), wav->samples, wav->rate));
  ASSERT_TRUE(plain.status.ok()) << Describe(plain.status);
  v1::TranslationConfig config = Config(wav->rate);
  config.set_interim_results(true);
  // Paced like live audio, faster: interim decodes (encoded apart, on the
  // encoder worker, while the stream goes on) have time to finish before the
  // segment's final result supersedes them, also on a loaded machine.
  StreamOptions options;
  options.pace_ms = 40;
  StreamOutcome r = Stream(stub_.get(), StreamRequests(config, wav->samples, wav->rate), options);
  ASSERT_TRUE(r.status.ok()) << Describe(r.status);
  ASSERT_EQ(r.FinalIds().size(), plain.FinalIds().size());
  for (size_t i = 0; i < r.FinalIds().size(); ++i) {
    EXPECT_EQ(Ids(r.FinalIds()[i]), Ids(plain.FinalIds()[i])) << "segment " << i;
  }
  // Interim hypotheses: not final, with timing, over a prefix of the segment
  // still being received (at most all of it: an interim may start after the
  // last chunk arrived and before the half-close did).
  CheckResultKinds(r);
  int interims = 0;
  std::map<int, int> interims_of_segment;
  for (const v1::SegmentResult& n : r.non_finals) {
    if (n.kind() == v1::RESULT_KIND_DELTA) continue;  // a text delta of a final decode
    ASSERT_EQ(n.kind(), v1::RESULT_KIND_INTERIM);
    EXPECT_TRUE(n.has_timing());
    // The first interim of a segment has nothing to be stable against.
    if (interims_of_segment[n.segment_index()]++ == 0) EXPECT_EQ(n.stability(), 0.0f);
    ++interims;
    SCOPED_TRACE(n.ShortDebugString());
    EXPECT_FALSE(n.is_final());
    EXPECT_EQ(n.segment_index(), 0);
    EXPECT_DOUBLE_EQ(n.start_seconds(), 0);
    EXPECT_GE(n.end_seconds(), 1.0 - 1e-9);
    EXPECT_LE(n.end_seconds(), wav->seconds() + 1e-9);
    EXPECT_FALSE(n.token_ids().empty());
  }
  EXPECT_GT(interims, 0) << "no interim hypothesis over " << wav->seconds() << " s of audio";
}

// ---------------------------------------------------------------------------
// 3. Endpointing.

TEST_F(SpeechServerTest, EndpointingCutsAtThePause) {
  std::optional<Wav> first = FindWav("committee_en_16k.wav");
  std::optional<Wav> second = FindWav("passengers_en_16k.wav");
  ASSERT_TRUE(first.has_value() && second.has_value());
  ASSERT_EQ(first->rate, 16000);
  ASSERT_EQ(second->rate, 16000);
  Wav both{"committee + 1 s silence + passengers", 16000, first->samples};
  both.samples.insert(both.samples.end(), 16000, 0.0f);
  both.samples.insert(both.samples.end(), second->samples.begin(), second->samples.end());
  const double silence_start = first->seconds();
  const double silence_end = first->seconds() + 1.0;

  {
    SCOPED_TRACE("default endpointing");
    StreamOutcome r = Stream(stub_.get(), StreamRequests(Config(16000), both.samples, 16000));
    CheckStream(r, both, /*greedy=*/true);
    const std::vector<v1::SegmentResult> finals = r.SortedFinals();
    ASSERT_EQ(finals.size(), 2u);
    EXPECT_EQ(finals[0].segment_index(), 0);
    EXPECT_EQ(finals[1].segment_index(), 1);
    const double cut = finals[0].end_seconds();
    EXPECT_DOUBLE_EQ(finals[0].start_seconds(), 0);
    EXPECT_GT(cut, silence_start);
    EXPECT_LT(cut, silence_end);
    EXPECT_DOUBLE_EQ(finals[1].start_seconds(), cut);
    EXPECT_NEAR(finals[1].end_seconds(), both.seconds(), 1e-6);
  }
  {
    SCOPED_TRACE("endpointing disabled");
    v1::TranslationConfig config = Config(16000);
    config.mutable_endpointing()->set_disabled(true);
    StreamOutcome r = Stream(stub_.get(), StreamRequests(config, both.samples, 16000));
    CheckStream(r, both, /*greedy=*/true);
    ASSERT_EQ(r.finals.size(), 1u);
    EXPECT_EQ(r.finals[0].segment_index(), 0);
    EXPECT_DOUBLE_EQ(r.finals[0].start_seconds(), 0);
    EXPECT_NEAR(r.finals[0].end_seconds(), both.seconds(), 1e-6);
  }
}

// Found by fuzz_rpc_validation: when one chunk held several cuts, every cut
// after the first was taken relative to the previous cut instead of the
// chunk's start (a negative span: undefined behaviour, then garbled segments).
TEST_F(SpeechServerTest, OneChunkSpanningSeveralSegments) {
  std::optional<Wav> wav = FindWav("committee_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  ASSERT_GE(wav->samples.size(), 16000u);
  v1::TranslationConfig config = Config(16000);
  config.mutable_endpointing()->set_max_segment_ms(300);
  const std::vector<float> second(wav->samples.begin(), wav->samples.begin() + 16000);
  StreamOutcome r = Stream(stub_.get(), {ConfigRequest(config),
                                         AudioRequest(audio::EncodePcm16(second))});
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const std::vector<v1::SegmentResult> finals = r.SortedFinals();
  // Cuts every 0.3 s of speech (max_segment_ms counts from a segment's first
  // speech frame, so each cut may land up to one 10 ms frame later); the
  // segments tile the second without gaps, overlaps or negative spans.
  ASSERT_GE(finals.size(), 3u);
  for (size_t i = 0; i < finals.size(); ++i) {
    EXPECT_EQ(finals[i].segment_index(), static_cast<int>(i));
    EXPECT_NEAR(finals[i].start_seconds(), i == 0 ? 0.0 : finals[i - 1].end_seconds(), 1e-9);
    const double span = finals[i].end_seconds() - finals[i].start_seconds();
    EXPECT_GT(span, 0);
    EXPECT_LE(span, 0.3 + 0.0101);
    if (i + 1 < finals.size()) EXPECT_GE(span, 0.3 - 1e-9);
    EXPECT_LE(finals[i].end_seconds(), 1.0 + 1e-9);
  }
}

// ---------------------------------------------------------------------------
// 4. Errors.

// Config with short segments, so that segments are being decoded when the
// error arrives, then one second of speech.
std::vector<Request> BusyPrefix(const Wav& wav) {
  v1::TranslationConfig config = Config(wav.rate);
  config.mutable_endpointing()->set_max_segment_ms(300);
  std::vector<float> second(wav.samples.begin(),
                            wav.samples.begin() + std::min<size_t>(wav.samples.size(), wav.rate));
  return StreamRequests(config, second, wav.rate);
}

TEST_F(SpeechServerTest, AudioBeforeConfigIsInvalid) {
  std::optional<Wav> wav = FindWav("committee_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  std::vector<Request> requests = AudioChunks(wav->samples, wav->rate);
  requests.resize(3);
  ExpectRejected(requests, grpc::StatusCode::INVALID_ARGUMENT, "config");
}

TEST_F(SpeechServerTest, ConfigTwiceIsInvalid) {
  std::optional<Wav> wav = FindWav("committee_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  std::vector<Request> requests = BusyPrefix(*wav);
  requests.push_back(ConfigRequest(Config(wav->rate)));
  ExpectRejected(requests, grpc::StatusCode::INVALID_ARGUMENT, "config");
  // Also right after the first config.
  ExpectRejected({ConfigRequest(Config(16000)), ConfigRequest(Config(16000))},
                 grpc::StatusCode::INVALID_ARGUMENT, "config");
}

TEST_F(SpeechServerTest, UnspecifiedEncodingIsInvalid) {
  v1::TranslationConfig config = Config(16000);
  config.set_encoding(v1::AUDIO_ENCODING_UNSPECIFIED);
  std::vector<Request> requests = {ConfigRequest(config),
                                   AudioRequest(std::string(3200, '\0'))};
  ExpectRejected(requests, grpc::StatusCode::INVALID_ARGUMENT, "config.encoding");
}

TEST_F(SpeechServerTest, SampleRateOutOfRangeIsInvalid) {
  for (int rate : {4000, 96000}) {
    SCOPED_TRACE(absl::StrCat("sample_rate_hz ", rate));
    std::vector<Request> requests = {ConfigRequest(Config(rate)),
                                     AudioRequest(std::string(rate / 5, '\0'))};
    ExpectRejected(requests, grpc::StatusCode::INVALID_ARGUMENT, "config.sample_rate_hz");
  }
}

TEST_F(SpeechServerTest, OddPcm16ByteCountIsInvalid) {
  std::optional<Wav> wav = FindWav("committee_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  std::vector<Request> requests = BusyPrefix(*wav);
  requests.push_back(AudioRequest(std::string(3201, '\0')));
  requests.push_back(AudioRequest(std::string(3200, '\0')));  // not reached
  StreamOutcome r = ExpectRejected(requests, grpc::StatusCode::INVALID_ARGUMENT, "audio");
  EXPECT_THAT(r.status.error_message(), HasSubstr("3201"));
}

TEST_F(SpeechServerTest, EmptyStreamIsInvalid) {
  ExpectRejected({}, grpc::StatusCode::INVALID_ARGUMENT, "config");
}

TEST_F(SpeechLimitsTest, ChunkOverTheLimitIsInvalid) {
  std::optional<Wav> wav = FindWav("committee_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  std::vector<Request> requests = BusyPrefix(*wav);
  // Just over the limit (an even byte count, so only the size is wrong).
  requests.push_back(AudioRequest(
      audio::EncodePcm16(std::span<const float>(wav->samples.data(), kChunkLimit / 2 + 1))));
  StreamOutcome r = ExpectRejected(requests, grpc::StatusCode::INVALID_ARGUMENT, "audio");
  EXPECT_THAT(r.status.error_message(), HasSubstr(absl::StrCat(kChunkLimit)));
  // Exactly at the limit is fine (at 32 kHz: 1.024 s, within the maximum duration).
  std::vector<Request> at_limit = {ConfigRequest(Config(32000)),
                                   AudioRequest(audio::EncodePcm16(std::span<const float>(
                                       wav->samples.data(), kChunkLimit / 2)))};
  StreamOutcome ok = Stream(stub_.get(), at_limit);
  EXPECT_TRUE(ok.status.ok()) << Describe(ok.status);
  EXPECT_EQ(ok.progress.size(), 1u);
  EXPECT_EQ(ok.finals.size(), 1u);
}

TEST_F(SpeechLimitsTest, StreamOverTheMaximumDurationIsOutOfRange) {
  std::optional<Wav> wav = FindWav("passengers_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  ASSERT_GT(wav->seconds(), kMaxStreamSeconds + 0.5);
  v1::TranslationConfig config = Config(wav->rate);
  config.mutable_endpointing()->set_max_segment_ms(500);  // segments decode meanwhile
  StreamOutcome r = ExpectRejected(StreamRequests(config, wav->samples, wav->rate),
                                   grpc::StatusCode::OUT_OF_RANGE, "");
  // Accepted up to the limit: never a progress beyond it.
  for (const v1::AudioProgress& p : r.progress) {
    EXPECT_LE(p.chunks_received(), static_cast<int64_t>(kMaxStreamSeconds * 10 + 1e-6));
    EXPECT_LE(p.processed_seconds(), kMaxStreamSeconds + 1e-9);
  }
  // A stream of exactly the maximum is accepted.
  std::vector<float> two(wav->samples.begin(), wav->samples.begin() + 32000);
  StreamOutcome ok = Stream(stub_.get(), StreamRequests(Config(16000), two, 16000));
  EXPECT_TRUE(ok.status.ok()) << Describe(ok.status);
  EXPECT_EQ(ok.progress.size(), 20u);
}

TEST_F(SpeechServerTest, CancellationMidSegmentFreesTheCache) {
  std::optional<Wav> wav = FindWav("committee_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  std::shared_ptr<Engine> engine = server_->engine();
  const int before = CacheBlocksUsed();
  // Long segments decoding while the stream goes on: a segment cut every
  // 500 ms, beam search over up to 900 tokens (the random model rarely ends
  // early, so a segment decodes for hundreds of milliseconds).
  v1::TranslationConfig config = Config(wav->rate, 4);
  config.set_max_tokens(900);
  config.mutable_endpointing()->set_max_segment_ms(500);
  std::atomic<bool> cancelled{false};
  std::atomic<int> finals_at_cancel{-1};
  std::atomic<int> finals_seen{0};
  StreamOptions options;
  options.pace_ms = 20;
  options.on_response = [&](grpc::ClientContext*, const Response& r) {
    if (r.has_result() && r.result().is_final()) finals_seen.fetch_add(1);
  };
  options.after_write = [&](grpc::ClientContext* context, int index) {
    // After a few chunks, once the first segment is decoding (it holds cache
    // blocks), cancel.
    if (index < 6 || cancelled.load()) return;
    const EngineStats s = engine->stats();
    if (s.cache_blocks_used <= before || s.in_flight == 0) return;
    finals_at_cancel.store(finals_seen.load());
    cancelled.store(true);
    context->TryCancel();
  };
  const int chunks = static_cast<int>(AudioChunks(wav->samples, wav->rate).size());
  StreamOutcome r = Stream(stub_.get(), StreamRequests(config, wav->samples, wav->rate), options);
  ASSERT_TRUE(cancelled.load()) << "no segment was ever seen decoding";
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED) << Describe(r.status);
  EXPECT_EQ(finals_at_cancel.load(), 0) << "the first segment had already finished";
  EXPECT_LT(r.written, 1 + chunks) << "the cancelled call accepted every chunk";
  ExpectCacheBackTo(before);
  ExpectStillServing();
}

// A cancelled call is not a half-close: the audio received since the last
// cut must not be encoded and decoded as a last segment. The client streams
// 0.9 s (one 500 ms segment cut and decoding, 400 ms pending), waits until the
// server has taken every chunk, and cancels: the engine then sees exactly one
// request of this call (the first segment, cancelled), and the cache is freed.
TEST_F(SpeechServerTest, CancellationDecodesNoFurtherSegment) {
  std::optional<Wav> wav = FindWav("committee_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  std::shared_ptr<Engine> engine = server_->engine();
  const int before = CacheBlocksUsed();
  // The engine counts every segment of a call once when it ends
  // (mtla_segments_total); the server counts the call (mtla_requests_total).
  auto segments_total = [&] {
    std::string body;
    EXPECT_EQ(HttpGet(server_->metrics_port(), "/metrics", &body), 200);
    return MetricValue(body, "mtla_segments_total").value_or(0);
  };
  auto cancelled_calls = [&] {
    std::string body;
    EXPECT_EQ(HttpGet(server_->metrics_port(), "/metrics", &body), 200);
    return MetricValue(body, "mtla_requests_total", "status=\"cancelled\"").value_or(0);
  };
  const double segments_before = segments_total();
  const double cancelled_before = cancelled_calls();

  v1::TranslationConfig config = Config(wav->rate, 4);
  config.set_max_tokens(900);
  config.mutable_endpointing()->set_max_segment_ms(500);
  std::vector<Request> requests = StreamRequests(config, wav->samples, wav->rate);
  requests.resize(1 + 9);
  grpc::ClientContext context;
  context.set_deadline(In(30));
  auto stream = stub_->StreamingTranslate(&context);
  for (const Request& r : requests) ASSERT_TRUE(stream->Write(r));
  Response response;
  int progress = 0;
  int finals = 0;
  while (progress < 9 && stream->Read(&response)) {
    progress += response.has_progress();
    finals += response.has_result() && response.result().is_final();
  }
  ASSERT_EQ(progress, 9);
  ASSERT_EQ(finals, 0) << "the first segment finished before the cancellation";
  // The first segment went to the encoder worker when its 500 ms were in; it
  // reaches the engine once encoded.
  ASSERT_TRUE(WaitFor([&] { return engine->stats().in_flight > 0; }, 5.0))
      << "the first segment is not decoding";
  context.TryCancel();
  while (stream->Read(&response)) finals += response.has_result() && response.result().is_final();
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << Describe(status);
  EXPECT_EQ(finals, 0);
  ExpectCacheBackTo(before);
  // One engine request ended for this call: the first segment. A second one
  // means the server decoded the pending 400 ms after the client had gone.
  EXPECT_TRUE(WaitFor([&] { return segments_total() >= segments_before + 1; }, 5.0, 20));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(segments_total(), segments_before + 1)
      << "the server submitted a further segment for the cancelled call";
  EXPECT_TRUE(WaitFor([&] { return cancelled_calls() == cancelled_before + 1; }, 5.0, 20))
      << "the cancelled call was not counted once as cancelled";
  ExpectStillServing();
}

// This model's config declares no language: GetModelInfo lists no pair, the
// metadata reports none, and a call naming any language is refused, naming
// the field (a model that declares none accepts none but its own).
TEST_F(SpeechServerTest, ModelWithoutLanguagesAcceptsOnlyEmptyLanguages) {
  v1::ModelInfo info;
  ASSERT_TRUE(test_support::FetchModelInfo(channel_, &info).ok());
  EXPECT_EQ(info.language_pairs_size(), 0);
  std::optional<Wav> wav = FindWav("hello_en_8k.wav");
  ASSERT_TRUE(wav.has_value());
  StreamOutcome ok = Stream(stub_.get(), StreamRequests(Config(wav->rate), wav->samples, wav->rate));
  ASSERT_TRUE(ok.status.ok()) << Describe(ok.status);
  ASSERT_TRUE(ok.responses[0].has_metadata());
  EXPECT_EQ(ok.responses[0].metadata().model(), "fairseq_st_s2");
  EXPECT_EQ(ok.responses[0].metadata().source_language(), "");
  EXPECT_EQ(ok.responses[0].metadata().target_language(), "");
  for (const auto& [field, source, target] :
       {std::tuple{"config.source_language", "en", ""}, std::tuple{"config.target_language", "", "de"}}) {
    v1::TranslationConfig config = Config(wav->rate);
    config.set_source_language(source);
    config.set_target_language(target);
    SCOPED_TRACE(config.ShortDebugString());
    StreamOutcome r = ExpectRejected(StreamRequests(config, wav->samples, wav->rate),
                                     grpc::StatusCode::INVALID_ARGUMENT, field);
    EXPECT_THAT(r.status.error_message(), HasSubstr("declares no language"));
    grpc::Status status;
    Translate(stub_.get(), config, wav->samples, &status);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(status);
    EXPECT_THAT(status.error_message(), HasSubstr(field));
  }
}

TEST_F(SpeechServerTest, TranslateErrors) {
  std::optional<Wav> wav = FindWav("hello_en_8k.wav");
  ASSERT_TRUE(wav.has_value());
  const int before = CacheBlocksUsed();
  {
    SCOPED_TRACE("sample_rate_hz 4000");
    grpc::Status status;
    Translate(stub_.get(), Config(4000), wav->samples, &status);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(status);
    EXPECT_THAT(status.error_message(), HasSubstr("config.sample_rate_hz"));
  }
  {
    SCOPED_TRACE("odd byte count");
    v1::TranslateRequest request;
    *request.mutable_config() = Config(wav->rate);
    request.set_audio(audio::EncodePcm16(wav->samples) + '\x01');
    v1::TranslateResponse response;
    grpc::ClientContext context;
    context.set_deadline(In(30));
    grpc::Status status = stub_->Translate(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(status);
    EXPECT_THAT(status.error_message(), HasSubstr("audio"));
    EXPECT_EQ(response.results_size(), 0);
  }
  {
    // Interim hypotheses do not apply to a unary call: still one final result,
    // the same as without them.
    SCOPED_TRACE("interim_results");
    grpc::Status status;
    v1::TranslateResponse plain = Translate(stub_.get(), Config(wav->rate), wav->samples, &status);
    ASSERT_TRUE(status.ok()) << Describe(status);
    v1::TranslationConfig config = Config(wav->rate);
    config.set_interim_results(true);
    v1::TranslateResponse interim = Translate(stub_.get(), config, wav->samples, &status);
    ASSERT_TRUE(status.ok()) << Describe(status);
    ASSERT_EQ(interim.results_size(), plain.results_size());
    for (int i = 0; i < plain.results_size(); ++i) {
      EXPECT_TRUE(interim.results(i).is_final());
      EXPECT_EQ(Ids(TokenIds(interim.results(i))), Ids(TokenIds(plain.results(i))));
    }
  }
  ExpectCacheBackTo(before);
  ExpectStillServing();
}

// ---------------------------------------------------------------------------
// Resources of finished calls.

// Every speech session holds a reference to the engine (through its copy of
// the front end); once a call has ended its session must be gone. A count
// that only grows means sessions are leaked (with their audio buffers).
TEST_F(SpeechServerTest, FinishedCallsReleaseTheirSessions) {
  std::optional<Wav> wav = FindWav("hello_en_8k.wav");
  ASSERT_TRUE(wav.has_value());
  std::weak_ptr<Engine> engine = server_->engine();
  ExpectStillServing();  // warm up
  ASSERT_TRUE(WaitFor([&] { return server_->engine()->stats().in_flight == 0; }, 5.0));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the warm-up call's OnDone
  // At most the warm-up's session may still be held here; 3 leaked sessions
  // would stay above this baseline.
  const long baseline = engine.use_count();
  {
    SCOPED_TRACE("StreamingTranslate");
    for (int i = 0; i < 3; ++i) ExpectStillServing();
    EXPECT_TRUE(WaitFor([&] { return engine.use_count() <= baseline; }, 5.0, 5))
        << "engine references: " << engine.use_count() << ", before the calls " << baseline;
  }
  {
    SCOPED_TRACE("Translate");
    for (int i = 0; i < 3; ++i) {
      grpc::Status status;
      v1::TranslateResponse response = Translate(stub_.get(), Config(wav->rate), wav->samples, &status);
      ASSERT_TRUE(status.ok()) << Describe(status);
      EXPECT_EQ(response.results_size(), 1);
    }
    EXPECT_TRUE(WaitFor([&] { return engine.use_count() <= baseline; }, 5.0, 5))
        << "engine references: " << engine.use_count() << ", before the calls " << baseline
        << " (3 Translate calls)";
  }
}

// ---------------------------------------------------------------------------
// 5. Metrics.

TEST_F(SpeechServerTest, MetricsCountAudioAndRealTimeFactor) {
  std::optional<Wav> wav = FindWav("passengers_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  StreamOutcome r = Stream(stub_.get(), StreamRequests(Config(wav->rate), wav->samples, wav->rate));
  ASSERT_TRUE(r.status.ok()) << Describe(r.status);
  ASSERT_GT(server_->metrics_port(), 0);
  std::string body;
  ASSERT_EQ(HttpGet(server_->metrics_port(), "/metrics", &body), 200);
  const std::optional<double> audio_seconds = MetricValue(body, "mtla_audio_seconds_total");
  const std::optional<double> rtf_count = MetricValue(body, "mtla_real_time_factor_count");
  ASSERT_TRUE(audio_seconds.has_value()) << "mtla_audio_seconds_total is not exported";
  ASSERT_TRUE(rtf_count.has_value()) << "mtla_real_time_factor is not exported";
  EXPECT_GT(*audio_seconds, 0) << "the speech service does not count processed audio";
  EXPECT_GE(*audio_seconds, wav->seconds() - 0.01);
  EXPECT_GT(*rtf_count, 0) << "the speech service does not observe real-time factors";
}

// Every stream is counted once with its outcome, every segment once with its
// own, and interim decodes apart: they change neither the request counts nor
// TTFT nor the segment counts.
class SpeechCounts {
 public:
  explicit SpeechCounts(int metrics_port) {
    EXPECT_EQ(HttpGet(metrics_port, "/metrics", &text_), 200);
  }
  double operator()(const std::string& name, const std::string& filter = "") const {
    return MetricValue(text_, name, filter).value_or(0);
  }

 private:
  std::string text_;
};

TEST_F(SpeechServerTest, InterimDecodesAreCountedApart) {
  std::optional<Wav> wav = FindWav("committee_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  const SpeechCounts before(server_->metrics_port());
  v1::TranslationConfig config = Config(wav->rate);
  config.set_interim_results(true);
  StreamOptions options;
  options.pace_ms = 10;
  StreamOutcome r = Stream(stub_.get(), StreamRequests(config, wav->samples, wav->rate), options);
  ASSERT_TRUE(r.status.ok()) << Describe(r.status);
  int interims = 0;
  for (const v1::SegmentResult& n : r.non_finals) interims += n.has_timing();
  ASSERT_GT(interims, 0) << "no interim hypothesis to count";
  const double finals = static_cast<double>(r.finals.size());
  ASSERT_TRUE(WaitFor([&] {
    return SpeechCounts(server_->metrics_port())("mtla_requests_total") ==
           before("mtla_requests_total") + 1;
  }, 5.0, 10));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const SpeechCounts after(server_->metrics_port());
  EXPECT_EQ(after("mtla_requests_total"), before("mtla_requests_total") + 1);
  EXPECT_EQ(after("mtla_requests_total", "finished_reason=\"end_of_audio\""),
            before("mtla_requests_total", "finished_reason=\"end_of_audio\"") + 1);
  EXPECT_EQ(after("mtla_segments_total"), before("mtla_segments_total") + finals);
  EXPECT_EQ(after("mtla_segments_total", "status=\"ok\""),
            before("mtla_segments_total", "status=\"ok\"") + finals);
  // TTFT, end-to-end latency and the request-level histograms: the final
  // decodes only.
  EXPECT_EQ(after("mtla_time_to_first_token_seconds_count"),
            before("mtla_time_to_first_token_seconds_count") + finals);
  EXPECT_EQ(after("mtla_e2e_request_latency_seconds_count"),
            before("mtla_e2e_request_latency_seconds_count") + finals);
  EXPECT_EQ(after("mtla_request_generation_tokens_count"),
            before("mtla_request_generation_tokens_count") + finals);
  EXPECT_EQ(after("mtla_real_time_factor_count"), before("mtla_real_time_factor_count") + finals);
  // Every interim decode that sent a hypothesis finished OK; others may have
  // been cancelled at the half-close.
  EXPECT_GE(after("mtla_interim_decodes_total", "status=\"ok\""),
            before("mtla_interim_decodes_total", "status=\"ok\"") + interims);
}

TEST_F(SpeechServerTest, FailedStreamsAreCountedOnce) {
  std::optional<Wav> wav = FindWav("committee_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  const int blocks = CacheBlocksUsed();
  const SpeechCounts before(server_->metrics_port());
  // Fails validation before a session exists.
  std::vector<Request> audio_first = AudioChunks(wav->samples, wav->rate);
  audio_first.resize(3);
  EXPECT_EQ(Stream(stub_.get(), audio_first).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // A bad config.
  EXPECT_EQ(Stream(stub_.get(), {ConfigRequest(Config(4000))}).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Fails with segments decoding (a second config after 1 s in 300 ms segments).
  std::vector<Request> busy = BusyPrefix(*wav);
  busy.push_back(ConfigRequest(Config(wav->rate)));
  EXPECT_EQ(Stream(stub_.get(), busy).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(WaitFor([&] {
    return SpeechCounts(server_->metrics_port())("mtla_requests_total") ==
           before("mtla_requests_total") + 3;
  }, 5.0, 10)) << "three failed streams, not counted three times";
  ExpectCacheBackTo(blocks);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const SpeechCounts after(server_->metrics_port());
  EXPECT_EQ(after("mtla_requests_total"), before("mtla_requests_total") + 3);
  EXPECT_EQ(after("mtla_requests_total", "status=\"invalid_argument\""),
            before("mtla_requests_total", "status=\"invalid_argument\"") + 3);
  EXPECT_EQ(after("mtla_requests_total", "finished_reason=\"abort\""),
            before("mtla_requests_total", "finished_reason=\"abort\"") + 3);
  // Every segment the third stream submitted ended once: finished before the
  // failure, or stopped by it (cancelled); none is left uncounted.
  const double segments = after("mtla_segments_total") - before("mtla_segments_total");
  EXPECT_GE(segments, 1) << "the third stream's segments were not counted";
  EXPECT_EQ(after("mtla_segments_total", "status=\"ok\"") +
                after("mtla_segments_total", "status=\"cancelled\""),
            before("mtla_segments_total", "status=\"ok\"") +
                before("mtla_segments_total", "status=\"cancelled\"") + segments);
}

// A stream whose client deadline passes is deadline_exceeded, and so are the
// segments it stopped; nothing is counted as cancelled.
TEST_F(SpeechServerTest, DeadlineIsCountedAsDeadlineExceeded) {
  std::optional<Wav> wav = FindWav("committee_en_16k.wav");
  ASSERT_TRUE(wav.has_value());
  const int blocks = CacheBlocksUsed();
  const SpeechCounts before(server_->metrics_port());
  v1::TranslationConfig config = Config(wav->rate, 4);
  config.set_max_tokens(900);
  config.mutable_endpointing()->set_max_segment_ms(500);
  StreamOptions options;
  options.deadline_seconds = 1.0;
  options.pace_ms = 100;  // about 10 s of writing: the deadline comes first
  StreamOutcome r = Stream(stub_.get(), StreamRequests(config, wav->samples, wav->rate), options);
  ASSERT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << Describe(r.status);
  ASSERT_TRUE(WaitFor([&] {
    return SpeechCounts(server_->metrics_port())("mtla_requests_total") ==
           before("mtla_requests_total") + 1;
  }, 5.0, 10));
  ExpectCacheBackTo(blocks);
  const SpeechCounts after(server_->metrics_port());
  EXPECT_EQ(after("mtla_requests_total", "status=\"deadline_exceeded\""),
            before("mtla_requests_total", "status=\"deadline_exceeded\"") + 1);
  EXPECT_EQ(after("mtla_requests_total", "status=\"cancelled\""),
            before("mtla_requests_total", "status=\"cancelled\""));
  EXPECT_EQ(after("mtla_segments_total", "status=\"cancelled\""),
            before("mtla_segments_total", "status=\"cancelled\""));
}

// GetModelInfo names the speech architecture (not the text-generation one) and
// the MTLA decoder's temporal compression.
TEST_F(SpeechServerTest, ModelInfoDescribesTheSpeechModel) {
  v1::ModelInfo info;
  grpc::Status status = test_support::FetchModelInfo(channel_, &info);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(info.architecture(), "s2t-mtla");
  EXPECT_GE(info.down_rate(), 2);
  EXPECT_GT(info.vocab_size(), 4);
}

}  // namespace
}  // namespace mtla
