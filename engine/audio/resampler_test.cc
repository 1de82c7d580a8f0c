#include "engine/audio/resampler.h"

#include <cmath>
#include <numbers>
#include <vector>

#include "absl/status/status.h"
#include "engine/audio/audio_test_util.h"
#include "engine/audio/pcm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mtla::audio {
namespace {

using ::testing::HasSubstr;

std::vector<float> Sine(double freq_hz, int rate_hz, int n, double amplitude = 10000.0) {
  std::vector<float> out(n);
  for (int i = 0; i < n; ++i) {
    out[i] = static_cast<float>(amplitude * std::sin(2.0 * std::numbers::pi * freq_hz * i / rate_hz));
  }
  return out;
}

// Magnitude of the DFT of x at `freq_hz` (one bin, any frequency).
double DftMagnitude(const std::vector<float>& x, size_t begin, size_t end, double freq_hz,
                    int rate_hz) {
  double re = 0.0, im = 0.0;
  for (size_t i = begin; i < end; ++i) {
    const double phase = 2.0 * std::numbers::pi * freq_hz * i / rate_hz;
    re += x[i] * std::cos(phase);
    im -= x[i] * std::sin(phase);
  }
  return std::hypot(re, im) / static_cast<double>(end - begin);
}

// Frequency from upward zero crossings over [begin, end), interpolated.
double ZeroCrossingFrequency(const std::vector<float>& x, size_t begin, size_t end, int rate_hz) {
  double first = -1.0, last = -1.0;
  int crossings = 0;
  for (size_t i = begin + 1; i < end; ++i) {
    if (x[i - 1] < 0.0f && x[i] >= 0.0f) {
      const double t = (i - 1) + x[i - 1] / (x[i - 1] - x[i]);
      if (first < 0) first = t;
      last = t;
      ++crossings;
    }
  }
  return (crossings - 1) * rate_hz / (last - first);
}

TEST(ResamplerTest, RejectsRatesOutsideTheSupportedRange) {
  for (int rate : {0, -16000, 7999, 48001, 96000}) {
    absl::StatusOr<Resampler> r = Resampler::Create(rate);
    ASSERT_FALSE(r.ok()) << rate;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("sample_rate_hz"));
  }
  for (int rate : {8000, 11025, 16000, 22050, 44100, 48000}) {
    EXPECT_TRUE(Resampler::Create(rate).ok()) << rate;
  }
}

TEST(ResamplerTest, SixteenKilohertzPassesThroughUnchanged) {
  absl::StatusOr<Resampler> r = Resampler::Create(16000);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->passthrough());
  const std::vector<float> in = {1.0f, -2.5f, 32767.0f, 0.0f};
  absl::StatusOr<std::vector<float>> out = r->Process(in);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, in);
  absl::StatusOr<std::vector<float>> tail = r->Flush();
  ASSERT_TRUE(tail.ok());
  EXPECT_TRUE(tail->empty());
}

// An 8 kHz sine comes out at 16 kHz with the same frequency, amplitude and
// twice the sample count.
TEST(ResamplerTest, EightKilohertzSineKeepsItsFrequencyAndLength) {
  const int n = 8000;  // one second
  const double freq = 437.0;
  absl::StatusOr<std::vector<float>> out = ResampleTo16k(Sine(freq, 8000, n), 8000);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NEAR(static_cast<double>(out->size()), 2.0 * n, 2.0);

  // Away from the edges (filter start-up), the signal is the same sine.
  const size_t begin = 1000, end = out->size() - 1000;
  EXPECT_NEAR(ZeroCrossingFrequency(*out, begin, end, 16000), freq, 0.5);
  const double at_freq = DftMagnitude(*out, begin, end, freq, 16000);
  EXPECT_NEAR(at_freq, 5000.0, 50.0);  // amplitude / 2
  EXPECT_LT(DftMagnitude(*out, begin, end, 2 * freq, 16000), 0.01 * at_freq);
  EXPECT_LT(DftMagnitude(*out, begin, end, 8000.0 - freq, 16000), 0.01 * at_freq);  // image
  // Time alignment: no net delay (soxr compensates its filter latency).
  const std::vector<float> ideal = Sine(freq, 16000, static_cast<int>(out->size()));
  double max_err = 0.0;
  for (size_t i = begin; i < end; ++i) max_err = std::max(max_err, std::abs((*out)[i] - ideal[i] * 1.0));
  EXPECT_LT(max_err, 100.0);  // 1% of the amplitude
}

TEST(ResamplerTest, OutputLengthFollowsTheRateRatio) {
  for (int rate : {8000, 11025, 22050, 24000, 32000, 44100, 48000}) {
    SCOPED_TRACE(rate);
    const int n = rate * 3 / 2 + 17;
    absl::StatusOr<std::vector<float>> out = ResampleTo16k(Sine(300.0, rate, n), rate);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_NEAR(static_cast<double>(out->size()), n * 16000.0 / rate, 2.0);
  }
}

// Feeding the signal in uneven chunks, including empty ones, gives exactly
// the one-shot output; the object is reusable after Flush().
TEST(ResamplerTest, StreamingChunksEqualOneShot) {
  for (int rate : {8000, 44100}) {
    SCOPED_TRACE(rate);
    std::vector<float> in = Sine(523.0, rate, rate * 2);
    for (size_t i = 0; i < in.size(); ++i) in[i] += static_cast<float>((i * 7919) % 201) - 100.0f;
    absl::StatusOr<std::vector<float>> one_shot = ResampleTo16k(in, rate);
    ASSERT_TRUE(one_shot.ok());

    absl::StatusOr<Resampler> r = Resampler::Create(rate);
    ASSERT_TRUE(r.ok());
    for (int round = 0; round < 2; ++round) {
      std::vector<float> streamed;
      const std::vector<size_t> sizes = {1600, 37, 0, 4000, 1, 999, 8191};
      size_t pos = 0, k = 0;
      while (pos < in.size()) {
        const size_t len = std::min(sizes[k++ % sizes.size()], in.size() - pos);
        ASSERT_TRUE(r->Process(std::span<const float>(in).subspan(pos, len), &streamed).ok());
        pos += len;
      }
      ASSERT_TRUE(r->Flush(&streamed).ok());
      ASSERT_EQ(streamed.size(), one_shot->size());
      EXPECT_EQ(streamed, *one_shot) << "round " << round;
    }
  }
}

TEST(ResamplerTest, SharedEightKilohertzSpeech) {
  const auto files = testing::TestdataFiles("audio", ".wav");
  if (files.empty()) {
    GTEST_SKIP() << "shared testdata not found at " << (testing::TestdataDir() / "audio");
  }
  for (const auto& path : files) {
    absl::StatusOr<WavAudio> audio = ReadWavFile(path.string());
    ASSERT_TRUE(audio.ok()) << audio.status();
    absl::StatusOr<std::vector<float>> out = ResampleTo16k(audio->samples, audio->sample_rate_hz);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_NEAR(static_cast<double>(out->size()),
                audio->samples.size() * 16000.0 / audio->sample_rate_hz, 2.0)
        << path;
  }
}

}  // namespace
}  // namespace mtla::audio
