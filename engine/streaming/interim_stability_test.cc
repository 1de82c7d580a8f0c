#include "engine/streaming/interim_stability.h"

#include "gtest/gtest.h"

namespace mtla {
namespace {

constexpr int32_t kEos = 2;

TEST(InterimStabilityTest, FractionOfTheCommonPrefixWithoutEos) {
  EXPECT_FLOAT_EQ(InterimStability({}, {5, 6, 7, kEos}, kEos), 0.0f);  // first interim
  EXPECT_FLOAT_EQ(InterimStability({5, 6, kEos}, {5, 6, 7, 8, kEos}, kEos), 0.5f);
  EXPECT_FLOAT_EQ(InterimStability({5, 6, 7, 8, kEos}, {5, 6, 7, 8, kEos}, kEos), 1.0f);
  EXPECT_FLOAT_EQ(InterimStability({5, 9, 7, kEos}, {5, 6, 7, kEos}, kEos), 1.0f / 3.0f);
  EXPECT_FLOAT_EQ(InterimStability({9, kEos}, {5, 6, kEos}, kEos), 0.0f);
  // A shorter hypothesis than before: all of it may still be the same.
  EXPECT_FLOAT_EQ(InterimStability({5, 6, 7, kEos}, {5, 6, kEos}, kEos), 1.0f);
  // Only EOS: nothing to keep.
  EXPECT_FLOAT_EQ(InterimStability({5, kEos}, {kEos}, kEos), 0.0f);
  // EOS is not a token of the text: a previous EOS never matches a word.
  EXPECT_FLOAT_EQ(InterimStability({kEos}, {5, kEos}, kEos), 0.0f);
  // Without a trailing EOS (cut at max_tokens) every token counts.
  EXPECT_FLOAT_EQ(InterimStability({5, 6}, {5, 6, 7, 8}, kEos), 0.5f);
}

TEST(InterimStabilityTest, AlwaysInTheUnitInterval) {
  for (int a = 0; a < 6; ++a) {
    for (int b = 0; b < 6; ++b) {
      std::vector<int32_t> previous(a, 4), current(b, 4);
      if (b > 1) current[1] = 5;
      const float s = InterimStability(previous, current, kEos);
      EXPECT_GE(s, 0.0f);
      EXPECT_LE(s, 1.0f);
    }
  }
}

}  // namespace
}  // namespace mtla
