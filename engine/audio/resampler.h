// Streaming sample-rate conversion of client audio to the model's 16 kHz,
// wrapping libsoxr (high quality, single-threaded, float32 mono).
#ifndef MTLA_ENGINE_AUDIO_RESAMPLER_H_
#define MTLA_ENGINE_AUDIO_RESAMPLER_H_

#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct soxr;  // libsoxr's opaque stream state

namespace mtla::audio {

// The sample rate every feature extractor downstream expects.
inline constexpr int kModelSampleRateHz = 16000;
// Accepted client sample rates.
inline constexpr int kMinInputSampleRateHz = 8000;
inline constexpr int kMaxInputSampleRateHz = 48000;

// Converts one mono stream from `input_rate_hz` to 16 kHz as chunks arrive.
// Samples keep their scale (int16-scale floats stay int16-scale; no clipping).
// At 16 kHz input the samples pass through unchanged and without delay.
// Otherwise output lags input by the filter's delay until Flush().
//
// Chunking does not change the result: feeding a signal in any split yields
// the same samples as feeding it at once. The total output length after
// Flush() is round(n * 16000 / input_rate_hz).
//
// Thread-compatible: one stream per object; distinct objects may be used
// concurrently.
class Resampler {
 public:
  // InvalidArgument naming sample_rate_hz unless it lies in [8000, 48000].
  static absl::StatusOr<Resampler> Create(int input_rate_hz);

  Resampler(Resampler&&) noexcept;
  Resampler& operator=(Resampler&&) noexcept;
  ~Resampler();

  int input_rate_hz() const { return input_rate_hz_; }
  bool passthrough() const { return input_rate_hz_ == kModelSampleRateHz; }

  // Consumes `chunk` (may be empty) and appends every 16 kHz sample that is
  // now available to `*out`.
  absl::Status Process(std::span<const float> chunk, std::vector<float>* out);
  // Ends the stream: appends the samples still held back by the filter, then
  // resets the object for a new stream at the same rate.
  absl::Status Flush(std::vector<float>* out);

  // Convenience forms returning the new samples.
  absl::StatusOr<std::vector<float>> Process(std::span<const float> chunk);
  absl::StatusOr<std::vector<float>> Flush();

 private:
  struct SoxrDeleter {
    void operator()(soxr* s) const;
  };
  Resampler(int input_rate_hz, soxr* state);

  int input_rate_hz_;
  std::unique_ptr<soxr, SoxrDeleter> state_;  // null when passing through
  std::vector<float> scratch_;
};

// Resamples a whole signal (Process + Flush).
absl::StatusOr<std::vector<float>> ResampleTo16k(std::span<const float> samples, int input_rate_hz);

}  // namespace mtla::audio

#endif  // MTLA_ENGINE_AUDIO_RESAMPLER_H_
