#include "engine/audio/fbank.h"

#include <cmath>
#include <limits>
#include <numbers>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "engine/audio/audio_test_util.h"
#include "engine/audio/pcm.h"
#include "engine/weights/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mtla::audio {
namespace {

using ::testing::HasSubstr;

// torchaudio.compliance.kaldi.fbank against which fbank_reference was made;
// the metric is max|out - ref| / max|ref| over the utterance.
constexpr double kReferenceTolerance = 1e-4;

std::shared_ptr<const FbankComputer> DefaultComputer() {
  absl::StatusOr<std::shared_ptr<const FbankComputer>> c = FbankComputer::Create();
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

std::vector<float> Noise(size_t n, uint32_t seed) {
  std::vector<float> out(n);
  uint32_t s = seed;
  for (float& v : out) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<float>(static_cast<int>(s >> 16) % 4001 - 2000);
  }
  return out;
}

// Feeds `samples` through a streaming extractor in chunks cycling over `sizes`.
std::vector<float> Streamed(FbankExtractor* extractor, const std::vector<float>& samples,
                            const std::vector<size_t>& sizes) {
  std::vector<float> frames;
  size_t pos = 0, k = 0;
  while (pos < samples.size()) {
    const size_t len = std::min(sizes[k++ % sizes.size()], samples.size() - pos);
    const size_t before = frames.size();
    const int64_t emitted =
        extractor->AcceptSamples(std::span<const float>(samples).subspan(pos, len), &frames);
    EXPECT_EQ(static_cast<size_t>(emitted) * extractor->num_bins(), frames.size() - before);
    pos += len;
    // Frames are produced as audio arrives: all complete frames are out.
    EXPECT_EQ(extractor->frames_emitted(), extractor->computer().NumFrames(pos));
  }
  EXPECT_EQ(extractor->Finish(&frames), 0);
  return frames;
}

TEST(FbankTest, GeometryMatchesKaldiDefaults) {
  auto c = DefaultComputer();
  EXPECT_EQ(c->frame_length(), 400);
  EXPECT_EQ(c->frame_shift(), 160);
  EXPECT_EQ(c->fft_size(), 512);
  EXPECT_EQ(c->num_bins(), 80);
  EXPECT_EQ(c->NumFrames(0), 0);
  EXPECT_EQ(c->NumFrames(399), 0);
  EXPECT_EQ(c->NumFrames(400), 1);
  EXPECT_EQ(c->NumFrames(559), 1);
  EXPECT_EQ(c->NumFrames(560), 2);
  EXPECT_EQ(c->NumFrames(57592), 358);
  EXPECT_EQ(c->NumFrames(74384), 463);
}

TEST(FbankTest, MelBanksAreTrianglesInsideTheBand) {
  auto c = DefaultComputer();
  const std::vector<float> banks = c->MelBanks();
  const int cols = c->fft_size() / 2 + 1;
  ASSERT_EQ(banks.size(), static_cast<size_t>(80 * cols));
  const double bin_hz = 16000.0 / 512;
  int prev_peak = -1;
  for (int m = 0; m < 80; ++m) {
    int peak = 0;
    for (int k = 0; k < cols; ++k) {
      const float w = banks[m * cols + k];
      EXPECT_GE(w, 0.0f);
      EXPECT_LE(w, 1.0f);
      if (w > banks[m * cols + peak]) peak = k;
      if (w > 0.0f) {
        EXPECT_GT(k * bin_hz, 20.0) << "bank " << m;  // low_freq 20 Hz
      }
    }
    EXPECT_EQ(banks[m * cols + cols - 1], 0.0f);  // Nyquist bin unused
    EXPECT_GE(peak, prev_peak);
    prev_peak = peak;
  }
}

TEST(FbankTest, RejectsBadOptions) {
  FbankOptions o;
  o.num_mel_bins = 3;
  EXPECT_THAT(FbankComputer::Create(o).status().message(), HasSubstr("num_mel_bins"));
  o = {};
  o.high_freq_hz = 9000;
  EXPECT_EQ(FbankComputer::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.frame_shift_ms = 30;
  EXPECT_EQ(FbankComputer::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.sample_rate_hz = 0;
  EXPECT_THAT(FbankComputer::Create(o).status().message(), HasSubstr("sample_rate_hz"));
}

TEST(FbankTest, SilenceHitsTheLogFloor) {
  auto c = DefaultComputer();
  const std::vector<float> frames = ComputeFbank(*c, std::vector<float>(560, 0.0f));
  ASSERT_EQ(frames.size(), 160u);
  for (float v : frames) EXPECT_FLOAT_EQ(v, std::log(std::numeric_limits<float>::epsilon()));
  // A constant (pure DC) signal is removed by the DC offset step.
  const std::vector<float> dc = ComputeFbank(*c, std::vector<float>(400, 1234.0f));
  for (float v : dc) EXPECT_FLOAT_EQ(v, std::log(std::numeric_limits<float>::epsilon()));
}

TEST(FbankTest, SinePeaksInTheBankCenteredOnItsFrequency) {
  auto c = DefaultComputer();
  const double freq = 1000.0;
  std::vector<float> x(4000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 8000.0f * std::sin(2 * std::numbers::pi * freq * i / 16000);
  const std::vector<float> frames = ComputeFbank(*c, x);
  // Center of bank m on the mel scale.
  auto mel = [](double f) { return 1127.0 * std::log(1.0 + f / 700.0); };
  const double delta = (mel(8000.0) - mel(20.0)) / 81;
  int expected = 0;
  double best = 1e9;
  for (int m = 0; m < 80; ++m) {
    const double center = mel(20.0) + (m + 1) * delta;
    if (std::abs(center - mel(freq)) < best) best = std::abs(center - mel(freq)), expected = m;
  }
  const float* frame = frames.data() + 5 * 80;
  const int peak = static_cast<int>(std::max_element(frame, frame + 80) - frame);
  EXPECT_NEAR(peak, expected, 1);
}

TEST(FbankTest, StreamingEqualsOneShotExactly) {
  auto c = DefaultComputer();
  const std::vector<float> x = Noise(16000 + 123, 7);
  const std::vector<float> one_shot = ComputeFbank(*c, x);
  ASSERT_EQ(one_shot.size(), static_cast<size_t>(c->NumFrames(x.size())) * 80);
  FbankExtractor extractor(c);
  for (const std::vector<size_t>& sizes :
       std::vector<std::vector<size_t>>{{1600, 37, 4000, 1, 0, 399, 161}, {1}, {160}, {100000}}) {
    EXPECT_EQ(Streamed(&extractor, x, sizes), one_shot);
    EXPECT_EQ(extractor.frames_emitted(), 0);  // Finish() reset it
  }
}

// One computer serves extractors on several threads at once.
TEST(FbankTest, SharedComputerAcrossThreads) {
  auto c = DefaultComputer();
  const std::vector<float> x = Noise(8000, 11);
  const std::vector<float> expected = ComputeFbank(*c, x);
  std::vector<std::vector<float>> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      FbankExtractor extractor(c);
      for (int round = 0; round < 5; ++round) results[t] = Streamed(&extractor, x, {t * 97 + 1});
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& r : results) EXPECT_EQ(r, expected);
}

TEST(FbankTest, ShortInputGivesNoFrames) {
  auto c = DefaultComputer();
  FbankExtractor extractor(c);
  std::vector<float> frames;
  EXPECT_EQ(extractor.AcceptSamples(Noise(399, 1), &frames), 0);
  EXPECT_TRUE(frames.empty());
  EXPECT_EQ(extractor.AcceptSamples(Noise(1, 2), &frames), 1);
  EXPECT_EQ(frames.size(), 80u);
  EXPECT_TRUE(ComputeFbank(*c, Noise(100, 3)).empty());
}

// shared/testdata/fbank_reference: torchaudio.compliance.kaldi.fbank output.
TEST(FbankTest, MatchesTorchaudioReference) {
  const auto files = testing::TestdataFiles("fbank_reference", ".safetensors");
  if (files.empty()) {
    GTEST_SKIP() << "shared testdata not found at " << (testing::TestdataDir() / "fbank_reference");
  }
  auto c = DefaultComputer();
  for (const auto& path : files) {
    SCOPED_TRACE(path.string());
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path.string());
    ASSERT_TRUE(file.ok()) << file.status();
    const auto& meta = (*file)->metadata();
    EXPECT_EQ(meta.at("sample_rate"), "16000");
    EXPECT_EQ(meta.at("num_mel_bins"), "80");
    EXPECT_EQ(meta.at("window"), "povey");
    absl::StatusOr<std::vector<float>> pcm = (*file)->ReadFloat("input.pcm16");
    ASSERT_TRUE(pcm.ok()) << pcm.status();
    const int64_t frames = c->NumFrames(static_cast<int64_t>(pcm->size()));
    absl::StatusOr<std::vector<float>> ref = (*file)->ReadFloat("output.fbank", {frames, 80});
    ASSERT_TRUE(ref.ok()) << ref.status();

    const std::vector<float> out = ComputeFbank(*c, *pcm);
    const double err = testing::MaxRelativeError(out, *ref);
    EXPECT_LE(err, kReferenceTolerance);
    RecordProperty(path.stem().string() + "_max_rel_err", std::to_string(err));
    std::printf("%s: max|out-ref|/max|ref| = %.3e\n", path.stem().string().c_str(), err);

    FbankExtractor extractor(c);
    EXPECT_EQ(Streamed(&extractor, *pcm, {1600, 37, 4000, 1, 523, 160}), out);

    // The input is the matching WAV's samples in int16 scale.
    const auto wav = testing::TestdataDir() / "audio" / (path.stem().string() + ".wav");
    if (std::filesystem::exists(wav)) {
      absl::StatusOr<WavAudio> audio = ReadWavFile(wav.string());
      ASSERT_TRUE(audio.ok()) << audio.status();
      EXPECT_EQ(audio->samples, *pcm);
    }
  }
}

}  // namespace
}  // namespace mtla::audio
