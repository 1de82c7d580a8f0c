#include "engine/streaming/endpointer.h"

#include <cmath>
#include <cstdint>
#include <random>

#include "gtest/gtest.h"

namespace mtla {
namespace {

// `ms` of a 300 Hz tone at about -12 dBFS, or of very quiet noise.
std::vector<float> Tone(int ms) {
  std::vector<float> out(ms * 16);
  for (size_t i = 0; i < out.size(); ++i) out[i] = 8000.0f * std::sin(2 * M_PI * 300 * i / 16000.0);
  return out;
}
std::vector<float> Quiet(int ms) {
  std::mt19937 rng(3);
  std::normal_distribution<float> noise(0.0f, 30.0f);  // about -60 dBFS
  std::vector<float> out(ms * 16);
  for (float& x : out) x = noise(rng);
  return out;
}
std::vector<float> Concat(std::initializer_list<std::vector<float>> parts) {
  std::vector<float> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(EndpointerTest, CutsAfterSilenceFollowingSpeech) {
  Endpointer ep({});
  const auto audio = Concat({Quiet(300), Tone(1000), Quiet(800), Tone(500), Quiet(100)});
  const auto cuts = ep.Accept(audio);
  ASSERT_EQ(cuts.size(), 1u);
  // Speech ends at 1300 ms; 600 ms of silence later the segment ends.
  EXPECT_EQ(cuts[0], (1300 + 600) * 16);
}

TEST(EndpointerTest, LeadingSilenceAloneNeverCuts) {
  Endpointer ep({});
  EXPECT_TRUE(ep.Accept(Quiet(5000)).empty());
  EXPECT_FALSE(ep.has_speech());
}

TEST(EndpointerTest, MaxSegmentLengthCutsContinuousSpeech) {
  EndpointerOptions options;
  options.max_segment_ms = 2000;
  Endpointer ep(options);
  const auto cuts = ep.Accept(Tone(5000));
  ASSERT_EQ(cuts.size(), 2u);
  EXPECT_EQ(cuts[0], 2000 * 16);
  EXPECT_EQ(cuts[1], 4000 * 16);
}

TEST(EndpointerTest, DisabledOnlyCutsAtMaxLength) {
  EndpointerOptions options;
  options.enabled = false;
  options.max_segment_ms = 3000;
  Endpointer ep(options);
  const auto cuts = ep.Accept(Concat({Tone(500), Quiet(1000), Tone(2000)}));
  ASSERT_EQ(cuts.size(), 1u);
  EXPECT_EQ(cuts[0], 3000 * 16);
}

TEST(EndpointerTest, ChunkingDoesNotChangeCuts) {
  const auto audio = Concat({Tone(700), Quiet(700), Tone(900), Quiet(650), Tone(300)});
  Endpointer whole({});
  const auto expected = whole.Accept(audio);
  Endpointer pieces({});
  std::vector<int64_t> got;
  std::mt19937 rng(1);
  for (size_t at = 0; at < audio.size();) {
    const size_t n = std::min<size_t>(audio.size() - at, 1 + rng() % 3000);
    for (int64_t c : pieces.Accept(std::span<const float>(audio.data() + at, n))) got.push_back(c);
    at += n;
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(expected.size(), 2u);
}

// Found by fuzz_endpointer: a request may set silence_ms up to INT32_MAX, and
// rounding it up to whole frames overflowed int (UBSan).
TEST(EndpointerTest, LargestDurationsARequestCanSet) {
  EndpointerOptions options;
  options.silence_ms = INT32_MAX;
  options.max_segment_ms = INT32_MAX;
  Endpointer ep(options);
  EXPECT_TRUE(ep.Accept(Concat({Tone(500), Quiet(2000), Tone(300)})).empty());
}

}  // namespace
}  // namespace mtla
