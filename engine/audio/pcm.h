// PCM16 decoding and a minimal WAV reader for the audio front-end.
//
// Samples are returned as float in int16 scale (-32768.0 .. 32767.0), NOT
// normalised to [-1, 1): this is the scale torchaudio's Kaldi-compatible fbank
// sees in fairseq's speech pipeline (and Kaldi's own), so the fbank front-end
// (fbank.h) consumes these values directly.
#ifndef MTLA_ENGINE_AUDIO_PCM_H_
#define MTLA_ENGINE_AUDIO_PCM_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mtla::audio {

// Decodes little-endian signed 16-bit mono PCM. InvalidArgument when the byte
// count is odd (a sample split in half).
absl::StatusOr<std::vector<float>> DecodePcm16(std::span<const uint8_t> bytes);
absl::StatusOr<std::vector<float>> DecodePcm16(std::string_view bytes);

// Appends the decoded samples of `bytes` to `*out`; same contract as above.
// On error `*out` is left unchanged.
absl::Status AppendPcm16(std::span<const uint8_t> bytes, std::vector<float>* out);

// Encodes samples (int16 scale, rounded and clamped) as little-endian PCM16.
std::string EncodePcm16(std::span<const float> samples);

struct WavAudio {
  int sample_rate_hz = 0;
  std::vector<float> samples;  // mono, int16 scale
};

// Parses a RIFF/WAVE file holding 16-bit integer PCM, mono (format tag 1, or
// WAVE_FORMAT_EXTENSIBLE with the PCM sub-format). Other encodings, channel
// counts or sample widths, and malformed or truncated files, give
// InvalidArgument naming the problem. Unknown chunks are skipped.
absl::StatusOr<WavAudio> ParseWav(std::span<const uint8_t> bytes);
// Reads and parses `path`; NotFound when it cannot be opened. Errors name the file.
absl::StatusOr<WavAudio> ReadWavFile(const std::string& path);

// A canonical 44-byte-header PCM16 mono WAV file of `samples` (int16 scale).
std::string EncodeWav(std::span<const float> samples, int sample_rate_hz);

}  // namespace mtla::audio

#endif  // MTLA_ENGINE_AUDIO_PCM_H_
