// Speech translation on the repository's default model (models/en-de-synthetic,
// a trained English->German model whose held-out sample.wav translates to the
// German of sample.txt), over gRPC on loopback:
//
// - silence: digital zeros and -70 dBFS noise give no text; silence before or
//   after sample.wav changes nothing in its translation;
// - timing: encode_seconds and decode_seconds are disjoint parts of the
//   processing time, and the real-time factor counts each once;
// - drain (the real mtla-server binary): a real-time stream that is open when
//   SIGTERM arrives goes on and gets its whole translation, new calls get
//   UNAVAILABLE, the process exits 0 when the stream ends; a stream still
//   open when the grace period ends gets UNAVAILABLE saying so.
//
// Every RPC has a deadline and every wait is bounded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/audio/pcm.h"
#include "engine/testing/unique_temp_path.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mtla/v1/models.grpc.pb.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "server/mtla_server.h"
#include "tests/common/child_server.h"
#include "tests/common/grpc_wait.h"
#include "tests/common/metrics_scrape.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;
using test_support::ChildServer;
using test_support::HttpGet;
using test_support::In;
using test_support::MetricValue;
using test_support::WaitFor;
using Request = v1::StreamingTranslateRequest;
using Response = v1::StreamingTranslateResponse;

constexpr int kRate = 16000;
const std::string kModelDir = MTLA_DEFAULT_MODEL_DIR;

std::string Describe(const grpc::Status& status) {
  return absl::StrCat("code ", status.error_code(), ": ", status.error_message());
}

// sample.wav's samples (16 kHz, int16 scale).
std::vector<float> Sample() {
  absl::StatusOr<audio::WavAudio> wav = audio::ReadWavFile(kModelDir + "/sample.wav");
  EXPECT_TRUE(wav.ok()) << wav.status();
  if (!wav.ok()) return {};
  EXPECT_EQ(wav->sample_rate_hz, kRate);
  return std::move(wav->samples);
}

// The reference German of sample.wav.
std::string SampleGerman() {
  std::ifstream file(kModelDir + "/sample.txt");
  std::string line;
  while (std::getline(file, line)) {
    if (line.rfind("german\t", 0) == 0) return line.substr(7);
  }
  return "";
}

std::vector<float> Zeros(double seconds) { return std::vector<float>(seconds * kRate, 0.0f); }

// Gaussian noise at `dbfs` RMS (0 dBFS = full-scale int16).
std::vector<float> Noise(double seconds, double dbfs) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 32768.0f * std::pow(10.0f, dbfs / 20.0f));
  std::vector<float> out(seconds * kRate);
  for (float& x : out) x = normal(rng);
  return out;
}

std::vector<float> Concat(std::initializer_list<std::vector<float>> parts) {
  std::vector<float> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

v1::TranslationConfig Config() {
  v1::TranslationConfig config;
  config.set_encoding(v1::LINEAR_PCM16);
  config.set_sample_rate_hz(kRate);
  return config;
}

// config, then `samples` in chunks of `chunk_ms`.
std::vector<Request> Requests(const v1::TranslationConfig& config, const std::vector<float>& samples,
                              int chunk_ms = 100) {
  std::vector<Request> out(1);
  *out[0].mutable_config() = config;
  const size_t chunk = static_cast<size_t>(kRate) * chunk_ms / 1000;
  for (size_t at = 0; at < samples.size(); at += chunk) {
    const size_t n = std::min(chunk, samples.size() - at);
    out.emplace_back().set_audio(audio::EncodePcm16(std::span<const float>(samples.data() + at, n)));
  }
  return out;
}

struct Outcome {
  grpc::Status status;
  std::vector<Response> responses;  // in arrival order
  std::vector<v1::SegmentResult> finals;
  // Client clock: the half-close was sent -> the last final result arrived.
  double after_half_close_seconds = 0;
  // The final texts, joined with spaces.
  std::string Text() const {
    std::string text;
    for (const auto& f : finals) {
      if (f.text().empty()) continue;
      absl::StrAppend(&text, text.empty() ? "" : " ", f.text());
    }
    return text;
  }
};

struct StreamOptions {
  int pace_ms = 0;              // pause after each audio write (real time: the chunk's length)
  double deadline_seconds = 60;
  std::function<void(int)> after_write;  // index of the request just written
};

Outcome Stream(v1::SpeechTranslation::Stub* stub, const std::vector<Request>& requests,
               const StreamOptions& options = {}) {
  using Clock = std::chrono::steady_clock;
  Outcome out;
  grpc::ClientContext context;
  context.set_deadline(In(options.deadline_seconds));
  auto stream = stub->StreamingTranslate(&context);
  std::atomic<int64_t> half_closed_ns{0};
  std::thread writer([&] {
    for (size_t i = 0; i < requests.size(); ++i) {
      if (!stream->Write(requests[i])) return;
      if (options.after_write) options.after_write(static_cast<int>(i));
      if (i > 0 && options.pace_ms > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(options.pace_ms));
      }
    }
    half_closed_ns.store(Clock::now().time_since_epoch().count());
    stream->WritesDone();
  });
  Response response;
  Clock::time_point last_final;
  while (stream->Read(&response)) {
    out.responses.push_back(response);
    if (response.has_result() && response.result().is_final()) {
      out.finals.push_back(response.result());
      last_final = Clock::now();
    }
  }
  writer.join();
  out.status = stream->Finish();
  if (!out.finals.empty() && half_closed_ns.load() != 0) {
    const Clock::time_point half_closed{Clock::duration(half_closed_ns.load())};
    out.after_half_close_seconds = std::chrono::duration<double>(last_final - half_closed).count();
  }
  return out;
}

// ---------------------------------------------------------------------------
// In process: silence and timing.

class DefaultModelSpeechTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServerOptions options;
    options.model_dir = kModelDir;
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "127.0.0.1:0";
    options.device = "cpu";
    options.kv_cache_bytes = 64u << 20;
    options.drain_grace_seconds = 5;
    auto server = MtlaServer::Start(options);
    if (!server.ok()) {
      error_ = server.status().ToString();
      return;
    }
    if (absl::Status loaded = (*server)->LoadModel(); !loaded.ok()) {
      error_ = loaded.ToString();
      return;
    }
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    if (server_ == nullptr) return;
    server_->Drain();
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr) << "server did not start: " << error_;
    stub_ = v1::SpeechTranslation::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
  }

  // Streams `samples` in chunks of `chunk_ms` and expects success.
  Outcome Translate(const std::vector<float>& samples,
                    const v1::TranslationConfig& config = Config(), int chunk_ms = 100) {
    Outcome r = Stream(stub_.get(), Requests(config, samples, chunk_ms));
    EXPECT_TRUE(r.status.ok()) << Describe(r.status);
    return r;
  }
  // The unary Translate of `samples`.
  v1::TranslateResponse TranslateUnary(const std::vector<float>& samples) {
    v1::TranslateRequest request;
    *request.mutable_config() = Config();
    request.set_audio(audio::EncodePcm16(samples));
    v1::TranslateResponse response;
    grpc::ClientContext context;
    context.set_deadline(In(60));
    grpc::Status status = stub_->Translate(&context, request, &response);
    EXPECT_TRUE(status.ok()) << Describe(status);
    return response;
  }

  // The sum of `name`'s series whose labels contain `filter`, scraped now.
  double Metric(const std::string& name, const std::string& filter = "") const {
    std::string text;
    EXPECT_EQ(HttpGet(server_->metrics_port(), "/metrics", &text), 200);
    return MetricValue(text, name, filter).value_or(0);
  }

  static MtlaServer* server_;
  static std::string error_;
  std::unique_ptr<v1::SpeechTranslation::Stub> stub_;
};
MtlaServer* DefaultModelSpeechTest::server_ = nullptr;
std::string DefaultModelSpeechTest::error_;

TEST_F(DefaultModelSpeechTest, SampleTranslatesToItsReference) {
  Outcome r = Translate(Sample());
  EXPECT_EQ(r.Text(), SampleGerman());
  ASSERT_EQ(r.finals.size(), 1u);
}

TEST_F(DefaultModelSpeechTest, DigitalSilenceGivesNoText) {
  Outcome r = Translate(Zeros(3));
  EXPECT_EQ(r.Text(), "") << "3 s of zeros were translated";
  EXPECT_TRUE(r.finals.empty());
  EXPECT_EQ(TranslateUnary(Zeros(3)).results_size(), 0);
}

TEST_F(DefaultModelSpeechTest, QuietNoiseGivesNoText) {
  const std::vector<float> noise = Noise(3, -70);
  Outcome r = Translate(noise);
  EXPECT_EQ(r.Text(), "") << "3 s of -70 dBFS noise were translated";
  EXPECT_TRUE(r.finals.empty());
  EXPECT_EQ(TranslateUnary(noise).results_size(), 0);
}

TEST_F(DefaultModelSpeechTest, SilenceAroundSpeechChangesNothing) {
  const std::vector<float> sample = Sample();
  const std::string alone = Translate(sample).Text();
  ASSERT_EQ(alone, SampleGerman());
  struct Case {
    std::string name;
    std::vector<float> audio;
  };
  const std::vector<Case> cases = {
      {"1 s of zeros before", Concat({Zeros(1), sample})},
      {"1 s of -70 dBFS noise before", Concat({Noise(1, -70), sample})},
      {"2 s of zeros after", Concat({sample, Zeros(2)})},
      {"5 s of zeros before, 1 s after", Concat({Zeros(5), sample, Zeros(1)})},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Outcome r = Translate(c.audio);
    EXPECT_EQ(r.Text(), alone);
    // Chunks that do not line up with the 10 ms frames change nothing.
    EXPECT_EQ(Translate(c.audio, Config(), /*chunk_ms=*/37).Text(), alone) << "37 ms chunks";
    ASSERT_EQ(r.finals.size(), 1u);
    // The segment spans the audio it was cut from (silence included).
    EXPECT_GE(r.finals[0].end_seconds() - r.finals[0].start_seconds(),
              static_cast<double>(sample.size()) / kRate);
    ASSERT_EQ(TranslateUnary(c.audio).results_size(), 1);
  }
}

// A stream with one segment: its text deltas, all of segment 0, carry
// exactly the final result's tokens, in order.
void ExpectDeltasMakeTheOnlyFinal(const Outcome& r) {
  ASSERT_EQ(r.finals.size(), 1u);
  std::vector<int32_t> delta_tokens;
  for (const Response& response : r.responses) {
    if (!response.has_result() || response.result().kind() != v1::RESULT_KIND_DELTA) continue;
    EXPECT_EQ(response.result().segment_index(), 0);
    delta_tokens.insert(delta_tokens.end(), response.result().token_ids().begin(),
                        response.result().token_ids().end());
  }
  EXPECT_EQ(delta_tokens, std::vector<int32_t>(r.finals[0].token_ids().begin(),
                                               r.finals[0].token_ids().end()));
}

// Early finals (engine/streaming/speech_session.h): 150 ms of silence after
// the speech settles the segment's span, so it is encoded and decoded before
// the endpointer's 600 ms close it, and that decode becomes the final result.
// The deltas carry exactly the final's tokens, and the segment is counted
// once.
TEST_F(DefaultModelSpeechTest, EarlyFinalBecomesTheFinalResult) {
  const double used = Metric("mtla_early_finals_total", "outcome=\"used\"");
  const double discarded = Metric("mtla_early_finals_total", "outcome=\"discarded\"");
  const double segments = Metric("mtla_segments_total");
  // Real-time pace over the pause, so that the early final runs before the
  // close rather than only being started.
  StreamOptions paced;
  paced.pace_ms = 20;
  Outcome r = Stream(stub_.get(), Requests(Config(), Concat({Sample(), Zeros(1)})), paced);
  ASSERT_TRUE(r.status.ok()) << Describe(r.status);
  ASSERT_EQ(r.finals.size(), 1u);
  EXPECT_EQ(r.finals[0].text(), SampleGerman());
  ExpectDeltasMakeTheOnlyFinal(r);
  // The session counts (the call has returned its final status by now).
  EXPECT_TRUE(WaitFor([&] { return Metric("mtla_segments_total") == segments + 1; }, 5.0, 10));
  EXPECT_EQ(Metric("mtla_early_finals_total", "outcome=\"used\""), used + 1);
  EXPECT_EQ(Metric("mtla_early_finals_total", "outcome=\"discarded\""), discarded);
}

// Speech that resumes after a pause shorter than the endpointer's silence_ms
// discards the early final of the first phrase: nothing of it reaches the
// client, the segment (both phrases) translates as the unary call does, and
// the discarded decode is counted as such, not as a segment.
TEST_F(DefaultModelSpeechTest, SpeechResumingDiscardsTheEarlyFinal) {
  const std::vector<float> sample = Sample();
  // sample.wav ends in 270 ms of silence: with 150 ms more the pause (420 ms)
  // settles the first phrase but does not end the segment.
  const std::vector<float> audio = Concat({sample, Zeros(0.15), sample, Zeros(1)});
  const double used = Metric("mtla_early_finals_total", "outcome=\"used\"");
  const double discarded = Metric("mtla_early_finals_total", "outcome=\"discarded\"");
  const double segments = Metric("mtla_segments_total");
  StreamOptions paced;
  paced.pace_ms = 20;
  Outcome r = Stream(stub_.get(), Requests(Config(), audio), paced);
  ASSERT_TRUE(r.status.ok()) << Describe(r.status);
  ASSERT_EQ(r.finals.size(), 1u) << "a 420 ms pause does not end the segment";
  const v1::TranslateResponse unary = TranslateUnary(audio);
  ASSERT_EQ(unary.results_size(), 1);
  EXPECT_EQ(r.finals[0].text(), unary.results(0).text());
  ExpectDeltasMakeTheOnlyFinal(r);
  // Two early finals: the first phrase's (discarded) and the whole
  // segment's (used). The unary call has none: its audio comes in one piece,
  // in which the endpointer closes the segment. Two segments: this call's and
  // the unary call's.
  EXPECT_TRUE(WaitFor([&] { return Metric("mtla_segments_total") == segments + 2; }, 5.0, 10));
  EXPECT_EQ(Metric("mtla_early_finals_total", "outcome=\"discarded\""), discarded + 1);
  EXPECT_EQ(Metric("mtla_early_finals_total", "outcome=\"used\""), used + 1);
}

// The encoder's share of the engine thread is checked at start-up.
TEST(SpeechServerOptionsTest, EncoderMsPerStepOutOfRangeIsRefused) {
  for (double ms : {-1.0, 1000.5}) {
    ServerOptions options;
    options.model_dir = kModelDir;
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "";
    options.encoder_ms_per_step = ms;
    auto server = MtlaServer::Start(options);
    ASSERT_FALSE(server.ok()) << ms;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(server.status().message()), HasSubstr("--encoder_ms_per_step"));
  }
}

TEST_F(DefaultModelSpeechTest, EndpointingFieldsTuneWhatCountsAsSpeech) {
  {
    SCOPED_TRACE("a threshold below the noise: the noise is speech");
    v1::TranslationConfig config = Config();
    config.mutable_endpointing()->set_silence_threshold_dbfs(-80);
    EXPECT_EQ(Translate(Noise(3, -70), config).finals.size(), 1u);
  }
  {
    SCOPED_TRACE("more speech needed than the sample holds");
    v1::TranslationConfig config = Config();
    config.mutable_endpointing()->set_min_speech_ms(5000);
    EXPECT_TRUE(Translate(Sample(), config).finals.empty());
  }
  {
    SCOPED_TRACE("trailing padding: the sample keeps its translation");
    v1::TranslationConfig config = Config();
    config.mutable_endpointing()->set_trailing_padding_ms(200);
    EXPECT_EQ(Translate(Concat({Zeros(1), Sample(), Zeros(1)}), config).Text(), SampleGerman());
  }
  struct Bad {
    std::string field;
    std::function<void(v1::EndpointingConfig*)> set;
  };
  const std::vector<Bad> bad = {
      {"config.endpointing.trailing_padding_ms", [](auto* ep) { ep->set_trailing_padding_ms(-1); }},
      {"config.endpointing.leading_padding_ms", [](auto* ep) { ep->set_leading_padding_ms(-5); }},
      {"config.endpointing.min_speech_ms", [](auto* ep) { ep->set_min_speech_ms(-200); }},
      {"config.endpointing.silence_ms", [](auto* ep) { ep->set_silence_ms(-1); }},
      {"config.endpointing.max_segment_ms", [](auto* ep) { ep->set_max_segment_ms(-1); }},
      // Longer than the 60 s (6000 frames) the model's encoder takes at once.
      {"config.endpointing.max_segment_ms", [](auto* ep) { ep->set_max_segment_ms(120000); }},
      {"config.endpointing.min_speech_ms", [](auto* ep) {
         ep->set_min_speech_ms(500);
         ep->set_max_segment_ms(300);
       }},
  };
  for (const Bad& b : bad) {
    v1::TranslationConfig config = Config();
    b.set(config.mutable_endpointing());
    SCOPED_TRACE(config.endpointing().ShortDebugString());
    Outcome r = Stream(stub_.get(), Requests(config, Sample()));
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(r.status);
    EXPECT_THAT(r.status.error_message(), HasSubstr(b.field));
  }
}

// The model's config declares en -> de: GetModelInfo lists it, every call is
// checked against it, and the first response of a call names the model and
// the languages (the model's own where the config leaves them empty).
TEST_F(DefaultModelSpeechTest, LanguagePairIsListedCheckedAndReportedFirst) {
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                     grpc::InsecureChannelCredentials());
  v1::ModelInfo info;
  ASSERT_TRUE(test_support::FetchModelInfo(channel, &info).ok());
  ASSERT_EQ(info.language_pairs_size(), 1);
  EXPECT_EQ(info.language_pairs(0).source_language(), "en");
  EXPECT_EQ(info.language_pairs(0).target_language(), "de");

  for (const auto& [source, target] : {std::pair{"", ""}, std::pair{"en", "de"},
                                       std::pair{"en", ""}, std::pair{"", "de"}}) {
    v1::TranslationConfig config = Config();
    config.set_source_language(source);
    config.set_target_language(target);
    SCOPED_TRACE(config.ShortDebugString());
    Outcome r = Stream(stub_.get(), Requests(config, Sample()));
    ASSERT_TRUE(r.status.ok()) << Describe(r.status);
    ASSERT_FALSE(r.responses.empty());
    const Response& first = r.responses.front();
    ASSERT_TRUE(first.has_metadata()) << first.ShortDebugString();
    EXPECT_FALSE(first.has_progress() || first.has_result());
    EXPECT_EQ(first.metadata().model(), "en-de-synthetic");
    EXPECT_EQ(first.metadata().source_language(), "en");
    EXPECT_EQ(first.metadata().target_language(), "de");
    for (size_t i = 1; i < r.responses.size(); ++i) EXPECT_FALSE(r.responses[i].has_metadata());
    EXPECT_EQ(r.Text(), SampleGerman());
  }
  {
    SCOPED_TRACE("Translate");
    v1::TranslateResponse response = TranslateUnary(Sample());
    EXPECT_EQ(response.metadata().model(), "en-de-synthetic");
    EXPECT_EQ(response.metadata().source_language(), "en");
    EXPECT_EQ(response.metadata().target_language(), "de");
  }
  struct Bad {
    std::string field;
    std::string source, target;
  };
  for (const Bad& b : {Bad{"config.source_language", "fr", "de"},
                       Bad{"config.target_language", "en", "fr"},
                       Bad{"config.source_language", "de", "en"},  // the pair reversed
                       Bad{"config.source_language", "EN", ""}}) {
    v1::TranslationConfig config = Config();
    config.set_source_language(b.source);
    config.set_target_language(b.target);
    SCOPED_TRACE(config.ShortDebugString());
    Outcome r = Stream(stub_.get(), Requests(config, Sample()));
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(r.status);
    EXPECT_THAT(r.status.error_message(), HasSubstr(b.field));
    EXPECT_THAT(r.status.error_message(), HasSubstr("en -> de"));  // what is served
    EXPECT_TRUE(r.responses.empty()) << "a refused call sends no metadata";
    v1::TranslateRequest request;
    *request.mutable_config() = config;
    request.set_audio(audio::EncodePcm16(Sample()));
    v1::TranslateResponse response;
    grpc::ClientContext context;
    context.set_deadline(In(60));
    grpc::Status status = stub_->Translate(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(status);
    EXPECT_THAT(status.error_message(), HasSubstr(b.field));
  }
}

// With interim results at real-time pace: interims (stability in [0, 1], 0
// for a segment's first), then the deltas of the final decode, then the final
// with its one alternative; beam 4: no deltas, a final with 4 alternatives,
// best first, the first being the result.
TEST_F(DefaultModelSpeechTest, ResultKindsStabilityAndNBest) {
  v1::TranslationConfig config = Config();
  config.set_interim_results(true);
  StreamOptions paced;
  paced.pace_ms = 100;  // real time: interim decodes keep up
  Outcome r = Stream(stub_.get(), Requests(config, Sample()), paced);
  ASSERT_TRUE(r.status.ok()) << Describe(r.status);
  std::vector<v1::ResultKind> kinds;
  int interims = 0;
  std::string deltas;
  for (const Response& response : r.responses) {
    if (!response.has_result()) continue;
    const v1::SegmentResult& result = response.result();
    SCOPED_TRACE(result.ShortDebugString());
    EXPECT_EQ(result.segment_index(), 0);
    if (!kinds.empty()) {
      EXPECT_LE(static_cast<int>(kinds.back()), static_cast<int>(result.kind()))
          << "after " << v1::ResultKind_Name(kinds.back());
      EXPECT_NE(kinds.back(), v1::RESULT_KIND_FINAL);
    }
    kinds.push_back(result.kind());
    EXPECT_EQ(result.is_final(), result.kind() == v1::RESULT_KIND_FINAL);
    switch (result.kind()) {
      case v1::RESULT_KIND_INTERIM:
        EXPECT_GE(result.stability(), 0.0f);
        EXPECT_LE(result.stability(), 1.0f);
        if (interims++ == 0) EXPECT_EQ(result.stability(), 0.0f);
        EXPECT_TRUE(result.has_timing());
        EXPECT_EQ(result.alternatives_size(), 0);
        break;
      case v1::RESULT_KIND_DELTA:
        deltas += result.text();
        EXPECT_EQ(result.stability(), 0.0f);
        EXPECT_FALSE(result.has_timing());
        break;
      case v1::RESULT_KIND_FINAL:
        EXPECT_EQ(result.text(), SampleGerman());
        EXPECT_EQ(deltas, result.text()) << "the deltas add up to the final text";
        ASSERT_EQ(result.alternatives_size(), 1);
        EXPECT_EQ(result.alternatives(0).text(), result.text());
        EXPECT_LT(result.alternatives(0).score(), 0.0);
        EXPECT_EQ(result.stability(), 0.0f);
        break;
      default:
        ADD_FAILURE() << "unexpected kind";
    }
  }
  EXPECT_GT(interims, 0) << "no interim hypothesis at real-time pace";
  ASSERT_FALSE(kinds.empty());
  EXPECT_EQ(kinds.back(), v1::RESULT_KIND_FINAL);

  config.set_interim_results(false);
  config.set_beam_size(4);
  Outcome beam = Translate(Sample(), config);
  std::vector<v1::SegmentResult> results;
  for (const Response& response : beam.responses) {
    if (response.has_result()) results.push_back(response.result());
  }
  ASSERT_EQ(results.size(), 1u) << "beam 4: the final result only";
  const v1::SegmentResult& final_result = results[0];
  EXPECT_EQ(final_result.kind(), v1::RESULT_KIND_FINAL);
  ASSERT_EQ(final_result.alternatives_size(), 4);
  EXPECT_EQ(final_result.alternatives(0).text(), final_result.text());
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(final_result.alternatives(i).ShortDebugString());
    EXPECT_FALSE(final_result.alternatives(i).text().empty());
    EXPECT_LT(final_result.alternatives(i).score(), 0.0);
    if (i > 0) {
      EXPECT_LE(final_result.alternatives(i).score(), final_result.alternatives(i - 1).score());
      EXPECT_NE(final_result.alternatives(i).ShortDebugString(),
                final_result.alternatives(i - 1).ShortDebugString());
    }
  }
  // A segment's tokens never exceed config.max_tokens, EOS included.
  config.set_max_tokens(3);
  Outcome short_beam = Translate(Sample(), config);
  ASSERT_EQ(short_beam.finals.size(), 1u);
  EXPECT_LE(short_beam.finals[0].token_ids_size(), 3);
  for (const v1::Alternative& a : short_beam.finals[0].alternatives()) {
    EXPECT_LE(a.token_ids_size(), 3);
    EXPECT_EQ(a.token_ids(a.token_ids_size() - 1), 2) << "EOS last";
  }
}

TEST_F(DefaultModelSpeechTest, TimingPartsAreDisjointAndCountedOnce) {
  // Endpointing off: the one segment closes at the half-close, so the client
  // sees the whole processing between its half-close and the final result.
  v1::TranslationConfig config = Config();
  config.mutable_endpointing()->set_disabled(true);
  const std::vector<float> sample = Sample();
  for (int run = 0; run < 3; ++run) {
    SCOPED_TRACE(absl::StrCat("run ", run));
    Outcome r = Translate(sample, config);
    ASSERT_EQ(r.finals.size(), 1u);
    const v1::SegmentTiming& t = r.finals[0].timing();
    EXPECT_GT(t.encode_seconds(), 0);
    EXPECT_GT(t.decode_seconds(), 0);
    EXPECT_GT(t.first_token_seconds(), 0);
    EXPECT_LE(t.first_token_seconds(), t.decode_seconds());
    // Disjoint: together no longer than the wall time they fall within.
    EXPECT_LE(t.encode_seconds() + t.decode_seconds(), r.after_half_close_seconds)
        << "encode " << t.encode_seconds() << " s, decode " << t.decode_seconds() << " s";
    const double audio_seconds = r.finals[0].end_seconds() - r.finals[0].start_seconds();
    EXPECT_NEAR(audio_seconds, static_cast<double>(sample.size()) / kRate, 1e-6);
    EXPECT_NEAR(t.real_time_factor(), (t.encode_seconds() + t.decode_seconds()) / audio_seconds,
                1e-9 + 1e-9 * t.real_time_factor());
  }
}

// ---------------------------------------------------------------------------
// The real binary: SIGTERM.

std::optional<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(int port) {
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(2));
  grpc::health::v1::HealthCheckResponse response;
  if (!stub->Check(&context, grpc::health::v1::HealthCheckRequest(), &response).ok()) {
    return std::nullopt;
  }
  return response.status();
}

// A loopback port that was free a moment ago.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

class DrainTest : public testing::Test {
 protected:
  // Starts mtla-server with `grace_seconds` and waits until it serves.
  void StartServer(double grace_seconds) {
    port_ = FreePort();
    ASSERT_GT(port_, 0);
    child_ = std::make_unique<ChildServer>();
    ASSERT_TRUE(child_->Spawn({MTLA_SERVER_BINARY, "--model_dir=" + kModelDir,
                               absl::StrCat("--listen=127.0.0.1:", port_), "--metrics_listen=",
                               "--device=cpu", "--kv_cache_mb=64",
                               absl::StrCat("--drain_grace_seconds=", grace_seconds)},
                              UniqueTempPath("drain_test_server.log")));
    ASSERT_TRUE(WaitFor(
        [&] { return Health(port_) == grpc::health::v1::HealthCheckResponse::SERVING; }, 60, 50))
        << child_->Log();
    stub_ = v1::SpeechTranslation::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials()));
  }

  // A new call, made while the server drains, is refused.
  void ExpectNewCallsRefused() {
    Outcome fresh = Stream(stub_.get(), Requests(Config(), Sample()), {.deadline_seconds = 10});
    EXPECT_EQ(fresh.status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(fresh.status);
    EXPECT_THAT(fresh.status.error_message(), HasSubstr("draining"));
    EXPECT_TRUE(fresh.finals.empty());
    v1::TranslateRequest request;
    *request.mutable_config() = Config();
    request.set_audio(audio::EncodePcm16(Sample()));
    v1::TranslateResponse response;
    grpc::ClientContext context;
    context.set_deadline(In(10));
    grpc::Status status = stub_->Translate(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(status);
    EXPECT_THAT(status.error_message(), HasSubstr("draining"));
  }

  void ExpectExitZero(double timeout_seconds) {
    std::optional<int> status = child_->WaitExit(timeout_seconds);
    ASSERT_TRUE(status.has_value()) << "mtla-server did not exit\n" << child_->Log();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << "exit status " << *status << "\n" << child_->Log();
  }

  int port_ = 0;
  std::unique_ptr<ChildServer> child_;
  std::unique_ptr<v1::SpeechTranslation::Stub> stub_;
};

TEST_F(DrainTest, RealTimeStreamCompletesAcrossSigtermAndNewCallsAreRefused) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*grace_seconds=*/20));
  // 1 s of silence, then the sample, then a pause, live: 100 ms chunks every 100 ms.
  const std::vector<float> audio = Concat({Zeros(1), Sample(), Zeros(0.5)});
  const int chunks = static_cast<int>(Requests(Config(), audio).size()) - 1;
  std::atomic<bool> signalled{false};
  std::atomic<bool> refused_checked{false};
  std::thread checker;
  StreamOptions options;
  options.pace_ms = 100;
  options.after_write = [&](int i) {
    // SIGTERM after 0.5 s of audio, while most of it is still to come.
    if (i == 5) {
      ASSERT_EQ(kill(child_->pid(), SIGTERM), 0);
      signalled.store(true);
      checker = std::thread([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        ExpectNewCallsRefused();
        refused_checked.store(true);
      });
    }
  };
  const auto start = std::chrono::steady_clock::now();
  Outcome r = Stream(stub_.get(), Requests(Config(), audio), options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (checker.joinable()) checker.join();
  ASSERT_TRUE(signalled.load());
  EXPECT_TRUE(refused_checked.load());
  EXPECT_GT(chunks, 20);
  EXPECT_GT(seconds, chunks * 0.1 - 0.05) << "the stream was not live";
  EXPECT_TRUE(r.status.ok()) << Describe(r.status) << "\n" << child_->Log();
  EXPECT_EQ(r.Text(), SampleGerman());
  ExpectExitZero(20);
}

TEST_F(DrainTest, GracePeriodEndsStreamsStillOpenWithAClearStatus) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*grace_seconds=*/1));
  // 8 s of live audio: far longer than the grace period.
  const std::vector<float> audio = Concat({Sample(), Zeros(1), Sample(), Zeros(1), Sample()});
  std::atomic<bool> signalled{false};
  StreamOptions options;
  options.pace_ms = 100;
  // SIGTERM after 3.5 s, once the first sentence (cut at its pause) is final.
  options.after_write = [&](int i) {
    if (i == 35) {
      ASSERT_EQ(kill(child_->pid(), SIGTERM), 0);
      signalled.store(true);
    }
  };
  const auto start = std::chrono::steady_clock::now();
  Outcome r = Stream(stub_.get(), Requests(Config(), audio), options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(signalled.load());
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(r.status);
  EXPECT_THAT(r.status.error_message(), HasSubstr("grace period"));
  // Ended at the end of the grace period, not at the signal nor with the audio.
  EXPECT_GT(seconds, 3.5 + 1.0 - 0.1);
  EXPECT_LT(seconds, static_cast<double>(audio.size()) / kRate - 0.5);
  // The speech before the end of the grace period was translated.
  EXPECT_FALSE(r.finals.empty()) << child_->Log();
  ExpectExitZero(20);
}

}  // namespace
}  // namespace mtla
