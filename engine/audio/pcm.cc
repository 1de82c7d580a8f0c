#include "engine/audio/pcm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"

namespace mtla::audio {
namespace {

uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t Le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
void PutLe16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v & 0xff));
  out->push_back(static_cast<char>(v >> 8));
}
void PutLe32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

constexpr uint16_t kFormatPcm = 1;
constexpr uint16_t kFormatExtensible = 0xFFFE;

}  // namespace

absl::Status AppendPcm16(std::span<const uint8_t> bytes, std::vector<float>* out) {
  if (bytes.size() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PCM16 audio must hold an even number of bytes (2 per sample); got ", bytes.size()));
  }
  const size_t n = bytes.size() / 2;
  const size_t base = out->size();
  out->resize(base + n);
  for (size_t i = 0; i < n; ++i) {
    (*out)[base + i] = static_cast<float>(static_cast<int16_t>(Le16(bytes.data() + 2 * i)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> DecodePcm16(std::span<const uint8_t> bytes) {
  std::vector<float> out;
  absl::Status status = AppendPcm16(bytes, &out);
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<float>> DecodePcm16(std::string_view bytes) {
  return DecodePcm16(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

std::string EncodePcm16(std::span<const float> samples) {
  std::string out;
  out.reserve(samples.size() * 2);
  for (float s : samples) {
    const float r = std::clamp(std::nearbyint(s), -32768.0f, 32767.0f);
    PutLe16(&out, static_cast<uint16_t>(static_cast<int16_t>(r)));
  }
  return out;
}

absl::StatusOr<WavAudio> ParseWav(std::span<const uint8_t> bytes) {
  if (bytes.size() < 12 || std::memcmp(bytes.data(), "RIFF", 4) != 0 ||
      std::memcmp(bytes.data() + 8, "WAVE", 4) != 0) {
    return absl::InvalidArgumentError("not a RIFF/WAVE file (missing 'RIFF'...'WAVE' header)");
  }
  bool have_fmt = false;
  WavAudio audio;
  size_t pos = 12;
  while (pos + 8 <= bytes.size()) {
    const uint8_t* chunk = bytes.data() + pos;
    const std::string id(reinterpret_cast<const char*>(chunk), 4);
    const uint32_t size = Le32(chunk + 4);
    const size_t body = pos + 8;
    const size_t remaining = bytes.size() - body;
    if (id == "fmt ") {
      if (size < 16 || size > remaining) {
        return absl::InvalidArgumentError(
            absl::StrCat("WAV 'fmt ' chunk has invalid size ", size));
      }
      const uint8_t* f = bytes.data() + body;
      uint16_t format = Le16(f);
      const uint16_t channels = Le16(f + 2);
      const uint32_t rate = Le32(f + 4);
      const uint16_t bits = Le16(f + 14);
      if (format == kFormatExtensible) {
        // cbSize (2), valid bits (2), channel mask (4), sub-format GUID (16):
        // its first two bytes are the format tag.
        if (size < 40) {
          return absl::InvalidArgumentError("WAV WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk is too short");
        }
        format = Le16(f + 24);
      }
      if (format != kFormatPcm) {
        return absl::InvalidArgumentError(absl::StrCat(
            "unsupported WAV encoding (format tag ", format, "); only integer PCM is supported"));
      }
      if (channels != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported WAV channel count ", channels, "; only mono is supported"));
      }
      if (bits != 16) {
        return absl::InvalidArgumentError(absl::StrCat(
            "unsupported WAV sample width of ", bits, " bits; only 16-bit PCM is supported"));
      }
      if (rate == 0 || rate > 1'000'000) {
        return absl::InvalidArgumentError(absl::StrCat("invalid WAV sample rate ", rate));
      }
      audio.sample_rate_hz = static_cast<int>(rate);
      have_fmt = true;
    } else if (id == "data") {
      if (!have_fmt) {
        return absl::InvalidArgumentError("WAV 'data' chunk precedes the 'fmt ' chunk");
      }
      size_t data_size = size;
      // 0xFFFFFFFF is written by streaming encoders that never patched the
      // header: the data runs to the end of the file.
      if (size == 0xFFFFFFFFu) data_size = remaining & ~size_t{1};
      if (data_size > remaining) {
        return absl::InvalidArgumentError(absl::StrCat("WAV 'data' chunk declares ", data_size,
                                                       " bytes but only ", remaining,
                                                       " remain (truncated file)"));
      }
      if (data_size % 2 != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("WAV 'data' chunk holds an odd number of bytes (", data_size, ")"));
      }
      absl::Status status = AppendPcm16(bytes.subspan(body, data_size), &audio.samples);
      if (!status.ok()) return status;
      return audio;
    }
    // Chunks are padded to an even size.
    const size_t advance = 8 + static_cast<size_t>(size) + (size & 1);
    if (advance > bytes.size() - pos) break;
    pos += advance;
  }
  return absl::InvalidArgumentError(have_fmt ? "WAV file has no 'data' chunk"
                                             : "WAV file has no 'fmt ' chunk");
}

absl::StatusOr<WavAudio> ReadWavFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  absl::StatusOr<WavAudio> audio = ParseWav(bytes);
  if (!audio.ok()) {
    return absl::Status(audio.status().code(), absl::StrCat(path, ": ", audio.status().message()));
  }
  return audio;
}

std::string EncodeWav(std::span<const float> samples, int sample_rate_hz) {
  const std::string data = EncodePcm16(samples);
  std::string out = "RIFF";
  PutLe32(&out, static_cast<uint32_t>(36 + data.size()));
  out += "WAVEfmt ";
  PutLe32(&out, 16);
  PutLe16(&out, kFormatPcm);
  PutLe16(&out, 1);
  PutLe32(&out, static_cast<uint32_t>(sample_rate_hz));
  PutLe32(&out, static_cast<uint32_t>(sample_rate_hz) * 2);
  PutLe16(&out, 2);
  PutLe16(&out, 16);
  out += "data";
  PutLe32(&out, static_cast<uint32_t>(data.size()));
  out += data;
  return out;
}

}  // namespace mtla::audio
