#include "engine/audio/pcm.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/audio/audio_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mtla::audio {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Pcm16Test, DecodesLittleEndianInInt16Scale) {
  const std::vector<uint8_t> bytes = {0x00, 0x00, 0xd2, 0x04, 0xff, 0xff,
                                      0x00, 0x80, 0xff, 0x7f};  // 0, 1234, -1, -32768, 32767
  absl::StatusOr<std::vector<float>> samples = DecodePcm16(bytes);
  ASSERT_TRUE(samples.ok()) << samples.status();
  EXPECT_THAT(*samples, ElementsAre(0.0f, 1234.0f, -1.0f, -32768.0f, 32767.0f));
}

TEST(Pcm16Test, EmptyInputGivesNoSamples) {
  absl::StatusOr<std::vector<float>> samples = DecodePcm16(std::string_view());
  ASSERT_TRUE(samples.ok());
  EXPECT_TRUE(samples->empty());
}

TEST(Pcm16Test, OddByteCountIsInvalidArgument) {
  absl::StatusOr<std::vector<float>> samples = DecodePcm16(std::string("\x01\x02\x03", 3));
  ASSERT_FALSE(samples.ok());
  EXPECT_EQ(samples.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(samples.status().message(), HasSubstr("even number of bytes"));

  std::vector<float> out = {7.0f};
  const std::vector<uint8_t> odd = {1};
  EXPECT_EQ(AppendPcm16(odd, &out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out, ElementsAre(7.0f));  // unchanged on error
}

TEST(Pcm16Test, EncodeRoundsClampsAndRoundTrips) {
  const std::vector<float> in = {0.0f, 1234.0f, -1.4f, -40000.0f, 40000.0f, 2.6f};
  absl::StatusOr<std::vector<float>> back = DecodePcm16(EncodePcm16(in));
  ASSERT_TRUE(back.ok());
  EXPECT_THAT(*back, ElementsAre(0.0f, 1234.0f, -1.0f, -32768.0f, 32767.0f, 3.0f));
}

TEST(WavTest, RoundTripsThroughEncodeWav) {
  const std::vector<float> in = {1.0f, -2.0f, 300.0f, -32768.0f};
  const std::string wav = EncodeWav(in, 8000);
  EXPECT_EQ(wav.size(), 44u + 8u);
  absl::StatusOr<WavAudio> audio = ParseWav(AsBytes(wav));
  ASSERT_TRUE(audio.ok()) << audio.status();
  EXPECT_EQ(audio->sample_rate_hz, 8000);
  EXPECT_EQ(audio->samples, in);
}

// A WAV file with a custom fmt chunk body, an extra chunk before the data.
std::string BuildWav(const std::string& fmt_body, const std::string& data,
                     const std::string& extra_chunk = "") {
  auto le32 = [](uint32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
  };
  std::string body = "WAVE";
  body += "fmt " + le32(static_cast<uint32_t>(fmt_body.size())) + fmt_body;
  body += extra_chunk;
  body += "data" + le32(static_cast<uint32_t>(data.size())) + data;
  return "RIFF" + le32(static_cast<uint32_t>(body.size())) + body;
}

std::string FmtBody(uint16_t format, uint16_t channels, uint32_t rate, uint16_t bits) {
  std::string s;
  auto put16 = [&](uint16_t v) { s += static_cast<char>(v & 0xff); s += static_cast<char>(v >> 8); };
  auto put32 = [&](uint32_t v) { put16(v & 0xffff); put16(v >> 16); };
  put16(format);
  put16(channels);
  put32(rate);
  put32(rate * channels * bits / 8);
  put16(static_cast<uint16_t>(channels * bits / 8));
  put16(bits);
  return s;
}

TEST(WavTest, SkipsUnknownChunksIncludingOddPadding) {
  const std::string extra = std::string("LIST") + std::string("\x03\x00\x00\x00", 4) + "abc" + '\0';
  const std::string wav = BuildWav(FmtBody(1, 1, 16000, 16), std::string("\x10\x00\xf0\xff", 4), extra);
  absl::StatusOr<WavAudio> audio = ParseWav(AsBytes(wav));
  ASSERT_TRUE(audio.ok()) << audio.status();
  EXPECT_THAT(audio->samples, ElementsAre(16.0f, -16.0f));
}

TEST(WavTest, AcceptsExtensiblePcm) {
  std::string fmt = FmtBody(0xFFFE, 1, 22050, 16);
  fmt += std::string("\x16\x00\x10\x00\x04\x00\x00\x00", 8);  // cbSize 22, valid bits, mask
  fmt += std::string("\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71", 16);
  absl::StatusOr<WavAudio> audio = ParseWav(AsBytes(BuildWav(fmt, std::string("\x05\x00", 2))));
  ASSERT_TRUE(audio.ok()) << audio.status();
  EXPECT_EQ(audio->sample_rate_hz, 22050);
  EXPECT_THAT(audio->samples, ElementsAre(5.0f));
}

TEST(WavTest, RejectsUnsupportedAndMalformedFiles) {
  struct Case {
    std::string bytes;
    std::string message;
  };
  const std::string pcm(4, '\0');
  const std::vector<Case> cases = {
      {"not a wav file at all", "RIFF"},
      {BuildWav(FmtBody(1, 2, 16000, 16), pcm), "channel count 2"},
      {BuildWav(FmtBody(1, 1, 16000, 8), pcm), "8 bits"},
      {BuildWav(FmtBody(1, 1, 16000, 24), std::string(6, '\0')), "24 bits"},
      {BuildWav(FmtBody(3, 1, 16000, 32), pcm), "format tag 3"},
      {BuildWav(FmtBody(6, 1, 8000, 8), pcm), "format tag 6"},
      {BuildWav(FmtBody(1, 1, 16000, 16), std::string(3, '\0')), "odd number of bytes"},
      {BuildWav(FmtBody(1, 1, 16000, 16), pcm).substr(0, 44 + 2), "truncated"},
      {BuildWav(FmtBody(1, 1, 16000, 16), pcm).substr(0, 36), "no 'data' chunk"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<WavAudio> audio = ParseWav(AsBytes(c.bytes));
    ASSERT_FALSE(audio.ok()) << c.message;
    EXPECT_EQ(audio.status().code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(audio.status().message(), HasSubstr(c.message));
  }
}

TEST(WavTest, MissingFileIsNotFound) {
  absl::StatusOr<WavAudio> audio = ReadWavFile("/nonexistent/file.wav");
  ASSERT_FALSE(audio.ok());
  EXPECT_EQ(audio.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(audio.status().message(), HasSubstr("/nonexistent/file.wav"));
}

// Every WAV in shared/testdata/audio parses; the rate matches the file name
// (*_16k.wav, *_8k.wav) and the sample count matches the data chunk.
TEST(WavTest, ParsesSharedAudio) {
  const auto files = testing::TestdataFiles("audio", ".wav");
  if (files.empty()) {
    GTEST_SKIP() << "shared testdata not found at " << (testing::TestdataDir() / "audio");
  }
  int seen_16k = 0, seen_8k = 0;
  for (const auto& path : files) {
    SCOPED_TRACE(path.string());
    absl::StatusOr<WavAudio> audio = ReadWavFile(path.string());
    ASSERT_TRUE(audio.ok()) << audio.status();
    const std::string stem = path.stem().string();
    if (stem.ends_with("_16k")) {
      EXPECT_EQ(audio->sample_rate_hz, 16000);
      ++seen_16k;
    } else if (stem.ends_with("_8k")) {
      EXPECT_EQ(audio->sample_rate_hz, 8000);
      ++seen_8k;
    }
    const auto bytes = std::filesystem::file_size(path);
    EXPECT_EQ(audio->samples.size(), (bytes - 44) / 2);  // canonical 44-byte headers
    EXPECT_GT(audio->samples.size(), static_cast<size_t>(audio->sample_rate_hz / 2));
    float peak = 0.0f;
    for (float s : audio->samples) {
      EXPECT_EQ(s, std::nearbyint(s));
      peak = std::max(peak, std::abs(s));
    }
    EXPECT_GT(peak, 1000.0f) << "speech should use a good part of the int16 range";
    EXPECT_LE(peak, 32768.0f);
  }
  EXPECT_GT(seen_16k, 0);
  EXPECT_GT(seen_8k, 0);
}

}  // namespace
}  // namespace mtla::audio
