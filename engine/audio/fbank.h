// Kaldi-compatible log-mel filterbank features, computed exactly as
// torchaudio.compliance.kaldi.fbank with the settings fairseq's speech-to-text
// pipeline uses (shared/testdata/fbank_reference metadata):
//
//   dither 0, remove_dc_offset, preemphasis 0.97 (x[-1] = x[0]), povey window
//   (hann^0.85, symmetric), snip_edges, round_to_power_of_two (FFT 512 at
//   16 kHz), power spectrum, triangular mel banks on Kaldi's mel scale
//   (1127 ln(1 + f / 700)) between low_freq and high_freq (<= 0: Nyquist +
//   high_freq), natural log floored at float epsilon (2^-23), no energy term.
//
// Numerics: torchaudio computes in float32, and in low-energy mel bins of
// loud frames (power ~1e-9 of the frame's peak after pre-emphasis) its
// rounding shows in the third decimal of the log energy. To land on the
// reference rather than merely near the exact value, the time-domain steps
// (DC removal, pre-emphasis, window, and the window itself via SLEEF, as
// PyTorch evaluates it) round in float32 exactly as torchaudio does; the FFT,
// mel sums and log then run in double. What remains is the reference's own
// float32 FFT rounding: max |out - ref| / max |ref| = 8.8e-5 and 2.8e-5 on
// shared/testdata/fbank_reference (an exact double-precision fbank is at
// least 1.7e-4 from it).
//
// Input samples are int16-scale floats (pcm.h) at options.sample_rate_hz.
// Output is row-major [frames, num_mel_bins]; for n samples there are
// 1 + (n - frame_length) / frame_shift frames when n >= frame_length, else 0.
#ifndef MTLA_ENGINE_AUDIO_FBANK_H_
#define MTLA_ENGINE_AUDIO_FBANK_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mtla::audio {

struct FbankOptions {
  int sample_rate_hz = 16000;
  int num_mel_bins = 80;
  double frame_length_ms = 25.0;
  double frame_shift_ms = 10.0;
  double preemphasis = 0.97;
  bool remove_dc_offset = true;
  double low_freq_hz = 20.0;
  double high_freq_hz = 0.0;  // <= 0 means Nyquist + high_freq_hz

  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// The immutable part of the extractor: window, mel banks and the FFT plan for
// one FbankOptions. Thread-safe: one computer may serve any number of
// extractors on any threads.
class FbankComputer {
 public:
  // Per-caller FFT buffers. Not thread-safe; use one per thread or stream.
  class Workspace {
   public:
    explicit Workspace(const FbankComputer& computer);
    ~Workspace();
    Workspace(const Workspace&) = delete;
    Workspace& operator=(const Workspace&) = delete;

   private:
    friend class FbankComputer;
    struct Buffers;  // FFTW-aligned FFT input and output
    std::unique_ptr<Buffers> buffers_;
    std::vector<float> frame_;
  };

  static absl::StatusOr<std::shared_ptr<const FbankComputer>> Create(
      const FbankOptions& options = {});
  ~FbankComputer();
  FbankComputer(const FbankComputer&) = delete;
  FbankComputer& operator=(const FbankComputer&) = delete;

  const FbankOptions& options() const { return options_; }
  int frame_length() const { return frame_length_; }  // samples per frame (400 at 16 kHz)
  int frame_shift() const { return frame_shift_; }    // samples between frames (160)
  int fft_size() const { return fft_size_; }          // 512
  int num_bins() const { return options_.num_mel_bins; }
  // Frames produced by `num_samples` samples (snip_edges).
  int64_t NumFrames(int64_t num_samples) const;

  // Writes num_bins() log-mel energies of the frame starting at `samples`
  // (frame_length() values) to `out`.
  void ComputeFrame(const float* samples, Workspace* workspace, float* out) const;

  // Mel filter weights over FFT bins (num_bins() x (fft_size() / 2 + 1),
  // row-major, the Nyquist column zero), for inspection and tests.
  std::vector<float> MelBanks() const;

 private:
  struct MelBank {
    int first_bin = 0;
    std::vector<double> weights;
  };
  FbankComputer() = default;

  FbankOptions options_;
  int frame_length_ = 0;
  int frame_shift_ = 0;
  int fft_size_ = 0;
  std::vector<float> window_;
  std::vector<MelBank> banks_;
  void* plan_ = nullptr;  // fftwf_plan (r2c, fft_size_), executed with new arrays
};

// Streaming extractor for one utterance: samples are appended as they arrive
// and every frame is computed as soon as its last sample is in, so features
// are ready with at most one frame of delay. Feeding a signal in any split
// gives bit-identical features to feeding it at once (and to ComputeFbank).
//
// Thread-compatible: one stream per object.
class FbankExtractor {
 public:
  explicit FbankExtractor(std::shared_ptr<const FbankComputer> computer);

  const FbankComputer& computer() const { return *computer_; }
  int num_bins() const { return computer_->num_bins(); }

  // Appends `samples` and appends every newly complete frame to `*frames`
  // (num_bins() floats per frame). Returns the number of frames appended.
  int64_t AcceptSamples(std::span<const float> samples, std::vector<float>* frames);
  // Ends the utterance. With snip_edges a trailing partial frame is dropped,
  // so nothing is appended; returns the number of frames appended (0). The
  // extractor is then reset for a new utterance.
  int64_t Finish(std::vector<float>* frames);
  void Reset();

  int64_t frames_emitted() const { return frames_emitted_; }
  int64_t samples_accepted() const { return samples_accepted_; }

 private:
  std::shared_ptr<const FbankComputer> computer_;
  std::unique_ptr<FbankComputer::Workspace> workspace_;
  std::vector<float> pending_;  // samples not yet consumed by a frame shift
  int64_t frames_emitted_ = 0;
  int64_t samples_accepted_ = 0;
};

// Whole-utterance features: [NumFrames(n), num_bins()] row-major.
std::vector<float> ComputeFbank(const FbankComputer& computer, std::span<const float> samples);
absl::StatusOr<std::vector<float>> ComputeFbank(std::span<const float> samples,
                                                const FbankOptions& options = {});

}  // namespace mtla::audio

#endif  // MTLA_ENGINE_AUDIO_FBANK_H_
