// Unit tests of mtla-bench's speech parts that need no server: WAV files cut
// into chunk messages, their checks, the pacing timer, and the config message.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/audio/pcm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/bench/scenario.h"
#include "tools/bench/speech_scenario.h"
#include "tools/bench/speech_workload.h"
#include "tools/bench/timer_thread.h"

namespace mtla::bench {
namespace {

using ::testing::HasSubstr;

// A WAV file of n samples (value i % 1000) in a fresh temporary directory.
std::string WriteWav(const std::string& name, int n, int rate) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("mtla_bench_speech_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::vector<float> samples(n);
  for (int i = 0; i < n; ++i) samples[i] = static_cast<float>(i % 1000);
  const std::string path = (dir / name).string();
  std::ofstream(path, std::ios::binary) << audio::EncodeWav(samples, rate);
  return path;
}

TEST(BenchSpeechWorkload, CutsFilesIntoChunks) {
  const std::string a = WriteWav("a.wav", 16000 + 800, 16000);  // 1.05 s
  const std::string b = WriteWav("b.wav", 4000, 8000);          // 0.5 s
  absl::StatusOr<SpeechWorkload> w = SpeechWorkload::FromWavFiles({a, b}, 100);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->clips().size(), 2u);
  const AudioClip& ca = w->clips()[0];
  EXPECT_EQ(ca.sample_rate_hz, 16000);
  EXPECT_DOUBLE_EQ(ca.duration_s, 1.05);
  ASSERT_EQ(ca.chunks.size(), 11u);  // ten of 1600 samples, one of 800
  for (size_t k = 0; k < 10; ++k) EXPECT_EQ(ca.chunks[k].size(), 3200u);
  EXPECT_EQ(ca.chunks[10].size(), 1600u);
  // The chunks put back together are the file's samples.
  std::string all;
  for (const std::string& c : ca.chunks) all += c;
  absl::StatusOr<std::vector<float>> decoded = audio::DecodePcm16(all);
  ASSERT_TRUE(decoded.ok());
  ASSERT_EQ(decoded->size(), 16800u);
  EXPECT_EQ((*decoded)[1234], 234.0f);
  EXPECT_EQ(w->clips()[1].chunks.size(), 5u);  // 800 samples per 100 ms at 8 kHz
  // Request i streams file i mod 2.
  EXPECT_EQ(&w->Get(0), &w->clips()[0]);
  EXPECT_EQ(&w->Get(3), &w->clips()[1]);
  EXPECT_THAT(w->Describe(), HasSubstr("a.wav (1.05 s, 16000 Hz), b.wav (0.50 s, 8000 Hz)"));
  EXPECT_THAT(w->Describe(), HasSubstr("100 ms chunks"));
}

TEST(BenchSpeechWorkload, ErrorsNameTheFileAndTheProblem) {
  const std::string good = WriteWav("good.wav", 1600, 16000);
  auto error = [&](const std::vector<std::string>& paths, int chunk_ms = 100) {
    absl::StatusOr<SpeechWorkload> w = SpeechWorkload::FromWavFiles(paths, chunk_ms);
    EXPECT_FALSE(w.ok());
    return w.ok() ? std::string() : std::string(w.status().message());
  };
  EXPECT_THAT(error({good, "/nonexistent/x.wav"}),
              HasSubstr("--wav /nonexistent/x.wav: no such file"));
  EXPECT_THAT(error({WriteWav("r.wav", 100, 96000)}), HasSubstr("r.wav: sample rate 96000 Hz"));
  EXPECT_THAT(error({WriteWav("e.wav", 0, 16000)}), HasSubstr("e.wav: holds no audio samples"));
  const std::string text = std::filesystem::path(good).parent_path() / "t.wav";
  std::ofstream(text) << "not audio";
  EXPECT_THAT(error({text}), HasSubstr("t.wav: not a RIFF/WAVE file"));
  EXPECT_THAT(error({}), HasSubstr("needs --wav"));
  EXPECT_THAT(error({good}, 0), HasSubstr("--chunk_ms must be >= 1"));
}

TEST(BenchSpeechScenario, PaceAndConfig) {
  EXPECT_EQ(*ParsePace("realtime"), Pace::kRealtime);
  EXPECT_EQ(*ParsePace("fast"), Pace::kFast);
  EXPECT_THAT(std::string(ParsePace("slow").status().message()), HasSubstr("--pace"));

  const std::string a = WriteWav("c16.wav", 1600, 16000);
  const std::string b = WriteWav("c8.wav", 800, 8000);
  SpeechScenarioOptions options;
  options.pace = Pace::kFast;
  options.max_tokens = 7;
  options.beam_size = 4;
  auto channel = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  SpeechTranslationScenario scenario({channel}, *SpeechWorkload::FromWavFiles({a, b}, 20), options);
  const mtla::v1::StreamingTranslateRequest c1 = scenario.MakeConfig(1);
  ASSERT_TRUE(c1.has_config());
  EXPECT_EQ(c1.config().encoding(), mtla::v1::LINEAR_PCM16);
  EXPECT_EQ(c1.config().sample_rate_hz(), 8000);
  EXPECT_EQ(c1.config().max_tokens(), 7);
  EXPECT_EQ(c1.config().beam_size(), 4);
  EXPECT_EQ(scenario.MakeConfig(2).config().sample_rate_hz(), 16000);
  std::vector<std::string> series;
  for (const MetricDef& m : scenario.Metrics()) series.push_back(m.series);
  EXPECT_THAT(series, ::testing::UnorderedElementsAre("chunk_latency_s", "rtf", "ttft_s",
                                                      "final_after_audio_s", "e2e_s"));
  EXPECT_EQ(scenario.Config()["pace"], "fast");
  EXPECT_EQ(scenario.Config()["chunk_ms"], 20);
}

TEST(BenchTimerThread, RunsCallbacksInDueOrderNotBefore) {
  TimerThread timer;
  std::mutex mu;
  std::vector<int> order;
  std::vector<double> late;
  std::atomic<int> ran{0};
  const double t0 = SteadySeconds();
  for (int i : {3, 0, 2, 1}) {
    const double due = t0 + 0.02 * (i + 1);
    timer.At(due, [&, i, due] {
      std::lock_guard lock(mu);
      order.push_back(i);
      late.push_back(SteadySeconds() - due);
      ++ran;
    });
  }
  timer.At(t0 - 1, [&] { ++ran; });  // already due: runs at once
  const double give_up = t0 + 10;
  while (ran.load() < 5 && SteadySeconds() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::lock_guard lock(mu);
  EXPECT_THAT(order, ::testing::ElementsAre(0, 1, 2, 3));
  for (double l : late) EXPECT_GE(l, 0.0);
}

TEST(BenchTimerThread, DestroyingDropsPendingCallbacks) {
  std::atomic<bool> ran{false};
  auto held = std::make_shared<int>(1);
  {
    TimerThread timer;
    timer.At(SteadySeconds() + 3600, [&ran, held] { ran = true; });
  }
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(held.use_count(), 1);  // the callback, and what it held, are gone
}

}  // namespace
}  // namespace mtla::bench
