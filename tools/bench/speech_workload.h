// The audio of the speech-translation scenario: WAV files cut into chunk
// messages once, before the run, so that sending costs nothing but the write.
//
// Each file must be RIFF/WAVE, 16-bit PCM, mono, with a sample rate the
// server accepts (8000 .. 48000 Hz; the server resamples to the model's
// 16 kHz) and at least one sample. Chunk k of a clip holds samples
// [k * n, (k + 1) * n) with n = sample_rate * chunk_ms / 1000, the last chunk
// possibly shorter. Request i streams clip i mod (number of files).
#ifndef MTLA_TOOLS_BENCH_SPEECH_WORKLOAD_H_
#define MTLA_TOOLS_BENCH_SPEECH_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mtla::bench {

struct AudioClip {
  std::string path;
  int sample_rate_hz = 0;
  double duration_s = 0;
  std::vector<std::string> chunks;  // PCM16 little-endian bytes, one message each
};

class SpeechWorkload {
 public:
  // Reads every file. InvalidArgument naming the file and the problem (cannot
  // be opened, not a WAV file, not PCM16 mono, sample rate out of range, no
  // audio), or naming the flag for an empty list or chunk_ms < 1.
  static absl::StatusOr<SpeechWorkload> FromWavFiles(const std::vector<std::string>& paths,
                                                     int chunk_ms);

  const AudioClip& Get(int64_t index) const { return clips_[index % clips_.size()]; }
  const std::vector<AudioClip>& clips() const { return clips_; }
  int chunk_ms() const { return chunk_ms_; }
  // "committee_en_16k.wav (4.65 s, 16000 Hz); 100 ms chunks".
  std::string Describe() const;

 private:
  SpeechWorkload() = default;
  std::vector<AudioClip> clips_;  // non-empty
  int chunk_ms_ = 0;
};

// Server's accepted sample rates (TranslationConfig.sample_rate_hz).
inline constexpr int kMinSampleRateHz = 8000;
inline constexpr int kMaxSampleRateHz = 48000;

}  // namespace mtla::bench

#endif  // MTLA_TOOLS_BENCH_SPEECH_WORKLOAD_H_
