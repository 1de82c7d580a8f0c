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
std::vector<int64_t> Ends(const std::vector<SegmentSpan>& spans) {
  std::vector<int64_t> ends;
  for (const SegmentSpan& s : spans) ends.push_back(s.end);
  return ends;
}

TEST(EndpointerTest, CutsAfterSilenceFollowingSpeech) {
  Endpointer ep({});
  const auto audio = Concat({Quiet(300), Tone(1000), Quiet(800), Tone(500), Quiet(100)});
  const auto cuts = ep.Accept(audio);
  ASSERT_EQ(cuts.size(), 1u);
  // Speech ends at 1300 ms; 600 ms of silence later the segment ends.
  EXPECT_EQ(cuts[0].begin, 0);
  EXPECT_EQ(cuts[0].end, (1300 + 600) * 16);
  // Its speech: 300 .. 1300 ms, padded by 150 ms after.
  EXPECT_TRUE(cuts[0].has_speech);
  EXPECT_EQ(cuts[0].speech_begin, 300 * 16);
  EXPECT_EQ(cuts[0].speech_end, (1300 + 150) * 16);
  // The unfinished segment: 1900 .. 2700 ms, speech 2100 .. 2600 ms.
  const SegmentSpan current = ep.Current();
  EXPECT_EQ(current.begin, 1900 * 16);
  EXPECT_EQ(current.end, 2700 * 16);
  EXPECT_TRUE(current.has_speech);
  EXPECT_EQ(current.speech_begin, 2100 * 16);
  EXPECT_EQ(current.speech_end, 2700 * 16);  // padding clamped to the segment
}

TEST(EndpointerTest, SilenceAloneHasNoSpeechAndNeedsNoAudioKept) {
  Endpointer ep({});
  std::vector<float> zeros(16000 * 3, 0.0f);
  EXPECT_TRUE(ep.Accept(zeros).empty());
  const SegmentSpan current = ep.Current();
  EXPECT_FALSE(current.has_speech);
  EXPECT_EQ(current.speech_begin, current.speech_end);
  // Nothing before "now" may become speech.
  EXPECT_EQ(ep.KeepFrom(), 3000 * 16);
}

TEST(EndpointerTest, PaddingWidensTheSpeechSpanInsideTheSegment) {
  EndpointerOptions options;
  options.leading_padding_ms = 100;
  options.trailing_padding_ms = 200;
  Endpointer ep(options);
  const auto cuts = ep.Accept(Concat({Quiet(50), Tone(1000), Quiet(700)}));
  ASSERT_EQ(cuts.size(), 1u);
  EXPECT_EQ(cuts[0].speech_begin, 0);  // clamped to the segment
  EXPECT_EQ(cuts[0].speech_end, (1050 + 200) * 16);
  ep.Accept(Quiet(1000));  // the next segment: silence from 1650 to 2750 ms
  EXPECT_EQ(ep.KeepFrom(), (2750 - 100) * 16);
  ep.Accept(Tone(300));
  EXPECT_EQ(ep.Current().speech_begin, (2750 - 100) * 16);
  EXPECT_EQ(ep.Current().speech_end, 3050 * 16);
}

TEST(EndpointerTest, KeepFromNeverPassesTheFrameBeingFilled) {
  Endpointer ep({});
  ep.Accept(Quiet(1000));
  ep.Accept(std::vector<float>(50, 0.0f));  // mid-frame
  EXPECT_EQ(ep.KeepFrom(), 1000 * 16);
  // That frame turns out to be speech: its start is still kept.
  ep.Accept(Tone(300));
  EXPECT_EQ(ep.Current().speech_begin, 1000 * 16);
}

TEST(EndpointerTest, ShortBurstIsForgottenAfterAPause) {
  Endpointer ep({});
  // 100 ms (< min_speech_ms) of tone, a pause, then real speech.
  EXPECT_TRUE(ep.Accept(Concat({Quiet(500), Tone(100), Quiet(1000)})).empty());
  EXPECT_FALSE(ep.has_speech());
  EXPECT_EQ(ep.KeepFrom(), 1600 * 16);
  ep.Accept(Tone(500));
  const SegmentSpan current = ep.Current();
  EXPECT_TRUE(current.has_speech);
  EXPECT_EQ(current.begin, 0);
  EXPECT_EQ(current.speech_begin, 1600 * 16);
}

TEST(EndpointerTest, SilenceBeforeSpeechDoesNotCountTowardsTheMaximumLength) {
  EndpointerOptions options;
  options.max_segment_ms = 2000;
  Endpointer ep(options);
  const auto cuts = ep.Accept(Concat({Quiet(5000), Tone(2500)}));
  ASSERT_EQ(cuts.size(), 1u);
  // The speech span (from 5000 ms) reaches 2000 ms at 7000 ms.
  EXPECT_EQ(cuts[0].end, 7000 * 16);
  EXPECT_EQ(cuts[0].speech_begin, 5000 * 16);
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
  EXPECT_EQ(cuts[0].end, 2000 * 16);
  EXPECT_EQ(cuts[1].end, 4000 * 16);
}

TEST(EndpointerTest, DisabledOnlyCutsAtMaxLength) {
  EndpointerOptions options;
  options.enabled = false;
  options.max_segment_ms = 3000;
  Endpointer ep(options);
  const auto cuts = ep.Accept(Concat({Tone(500), Quiet(1000), Tone(2000)}));
  ASSERT_EQ(cuts.size(), 1u);
  EXPECT_EQ(cuts[0].end, 3000 * 16);
  // Nothing is trimmed: the whole segment is speech.
  EXPECT_TRUE(cuts[0].has_speech);
  EXPECT_EQ(cuts[0].speech_begin, 0);
  EXPECT_EQ(cuts[0].speech_end, 3000 * 16);
}

TEST(EndpointerTest, ChunkingDoesNotChangeCuts) {
  const auto audio = Concat({Tone(700), Quiet(700), Tone(900), Quiet(650), Tone(300)});
  Endpointer whole({});
  const auto expected = Ends(whole.Accept(audio));
  Endpointer pieces({});
  std::vector<int64_t> got;
  std::mt19937 rng(1);
  for (size_t at = 0; at < audio.size();) {
    const size_t n = std::min<size_t>(audio.size() - at, 1 + rng() % 3000);
    for (int64_t c : Ends(pieces.Accept(std::span<const float>(audio.data() + at, n)))) {
      got.push_back(c);
    }
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
