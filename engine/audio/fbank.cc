#include "engine/audio/fbank.h"

#include <fftw3.h>
#include <sleef.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <numbers>

#include "absl/strings/str_cat.h"

namespace mtla::audio {
namespace {

// FFTW's planner (and plan destruction) is not thread-safe; execution of an
// existing plan with new arrays is.
std::mutex& FftwPlannerMutex() {
  static std::mutex mu;
  return mu;
}

double MelScale(double hz) { return 1127.0 * std::log(1.0 + hz / 700.0); }

// The FFT runs in double precision on the float32 windowed frame: it adds no
// rounding of its own, so the only differences from the reference left are
// the reference's float32 FFT rounding (see fbank.h).
using FftReal = double;
using FftComplex = fftw_complex;
FftReal* FftAllocReal(size_t n) { return fftw_alloc_real(n); }
FftComplex* FftAllocComplex(size_t n) { return fftw_alloc_complex(n); }
void FftFree(void* p) { fftw_free(p); }
void* FftPlanR2c(int n, FftReal* in, FftComplex* out) {
  return fftw_plan_dft_r2c_1d(n, in, out, FFTW_ESTIMATE);
}
void FftExecute(void* plan, FftReal* in, FftComplex* out) {
  fftw_execute_dft_r2c(static_cast<fftw_plan>(plan), in, out);
}
void FftDestroy(void* plan) { fftw_destroy_plan(static_cast<fftw_plan>(plan)); }

// torchaudio.compliance.kaldi's eps: torch.finfo(torch.float).eps.
constexpr float kLogFloor = std::numeric_limits<float>::epsilon();

}  // namespace

absl::Status FbankOptions::Validate() const {
  if (sample_rate_hz <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("sample_rate_hz must be positive; got ", sample_rate_hz));
  }
  if (num_mel_bins <= 3) {
    return absl::InvalidArgumentError(absl::StrCat("num_mel_bins must be > 3; got ", num_mel_bins));
  }
  if (!(frame_length_ms > 0) || !(frame_shift_ms > 0)) {
    return absl::InvalidArgumentError("frame_length_ms and frame_shift_ms must be positive");
  }
  const double frame_length = sample_rate_hz * frame_length_ms * 0.001;
  const double frame_shift = sample_rate_hz * frame_shift_ms * 0.001;
  if (frame_length < 2 || frame_shift < 1 || frame_length > (1 << 20) ||
      static_cast<int>(frame_shift) > static_cast<int>(frame_length)) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame of ", frame_length, " samples and shift of ", frame_shift,
                     " samples are out of range (need 1 <= shift <= length)"));
  }
  if (!(preemphasis >= 0.0 && preemphasis <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("preemphasis must be in [0, 1]; got ", preemphasis));
  }
  const double nyquist = 0.5 * sample_rate_hz;
  const double high = high_freq_hz <= 0.0 ? high_freq_hz + nyquist : high_freq_hz;
  if (!(low_freq_hz >= 0.0 && low_freq_hz < nyquist) || !(high > low_freq_hz && high <= nyquist)) {
    return absl::InvalidArgumentError(absl::StrCat("need 0 <= low_freq_hz < high_freq_hz <= Nyquist (",
                                                   nyquist, "); got low_freq_hz ", low_freq_hz,
                                                   ", high_freq_hz ", high_freq_hz));
  }
  return absl::OkStatus();
}

struct FbankComputer::Workspace::Buffers {
  explicit Buffers(int fft_size)
      : time(FftAllocReal(fft_size)), freq(FftAllocComplex(fft_size / 2 + 1)) {
    std::fill(time, time + fft_size, FftReal{0});
  }
  ~Buffers() {
    FftFree(time);
    FftFree(freq);
  }
  FftReal* time;
  FftComplex* freq;
};

FbankComputer::Workspace::Workspace(const FbankComputer& computer)
    : buffers_(std::make_unique<Buffers>(computer.fft_size())) {
  frame_.resize(computer.frame_length());
}

FbankComputer::Workspace::~Workspace() = default;

absl::StatusOr<std::shared_ptr<const FbankComputer>> FbankComputer::Create(
    const FbankOptions& options) {
  if (absl::Status status = options.Validate(); !status.ok()) return status;
  std::shared_ptr<FbankComputer> c(new FbankComputer());
  c->options_ = options;
  // The same expressions (and truncation) as torchaudio's
  // _get_waveform_and_window_properties.
  c->frame_length_ = static_cast<int>(options.sample_rate_hz * options.frame_length_ms * 0.001);
  c->frame_shift_ = static_cast<int>(options.sample_rate_hz * options.frame_shift_ms * 0.001);
  c->fft_size_ = 1;
  while (c->fft_size_ < c->frame_length_) c->fft_size_ *= 2;

  // Povey window: the symmetric Hann window raised to 0.85, evaluated as
  // torch.hann_window(n, periodic=False).pow(0.85) does: float32, in this
  // operation order, with SLEEF's 1-ulp cosf/powf (PyTorch's vectorised math).
  // glibc's cosf/powf differ from them in the last bit of 15 of the 400
  // values, which moves low-energy mel bins of loud frames by up to 2e-3.
  const int n = c->frame_length_;
  c->window_.resize(n);
  const float step = static_cast<float>(2.0 * std::numbers::pi / (n - 1));
  for (int i = 0; i < n; ++i) {
    const float hann = Sleef_cosf_u10(static_cast<float>(i) * step) * -0.5f + 0.5f;
    c->window_[i] = Sleef_powf_u10(hann, 0.85f);
  }

  // Triangular banks, equally spaced on the mel scale (torchaudio get_mel_banks
  // without VTLN). FFT bins 0 .. fft_size/2 - 1 carry weights; the Nyquist bin
  // has none.
  const int num_fft_bins = c->fft_size_ / 2;
  const double nyquist = 0.5 * options.sample_rate_hz;
  const double high_freq =
      options.high_freq_hz <= 0.0 ? options.high_freq_hz + nyquist : options.high_freq_hz;
  const double fft_bin_width = static_cast<double>(options.sample_rate_hz) / c->fft_size_;
  const double mel_low = MelScale(options.low_freq_hz);
  const double mel_high = MelScale(high_freq);
  const double mel_delta = (mel_high - mel_low) / (options.num_mel_bins + 1);
  c->banks_.resize(options.num_mel_bins);
  for (int m = 0; m < options.num_mel_bins; ++m) {
    const double left = mel_low + m * mel_delta;
    const double center = mel_low + (m + 1.0) * mel_delta;
    const double right = mel_low + (m + 2.0) * mel_delta;
    MelBank& bank = c->banks_[m];
    std::vector<double> weights(num_fft_bins, 0.0);
    int first = -1, last = -1;
    for (int k = 0; k < num_fft_bins; ++k) {
      const double mel = MelScale(fft_bin_width * k);
      const double up = (mel - left) / (center - left);
      const double down = (right - mel) / (right - center);
      const double w = std::max(0.0, std::min(up, down));
      weights[k] = w;
      if (w > 0.0) {
        if (first < 0) first = k;
        last = k;
      }
    }
    if (first < 0) first = last = 0;  // an empty bank (only possible for tiny FFTs)
    bank.first_bin = first;
    bank.weights.assign(weights.begin() + first, weights.begin() + last + 1);
  }

  {
    std::lock_guard<std::mutex> lock(FftwPlannerMutex());
    FftReal* in = FftAllocReal(c->fft_size_);
    FftComplex* out = FftAllocComplex(c->fft_size_ / 2 + 1);
    c->plan_ = FftPlanR2c(c->fft_size_, in, out);
    FftFree(in);
    FftFree(out);
  }
  if (c->plan_ == nullptr) return absl::InternalError("FFTW could not plan the fbank FFT");
  return std::shared_ptr<const FbankComputer>(std::move(c));
}

FbankComputer::~FbankComputer() {
  if (plan_ != nullptr) {
    std::lock_guard<std::mutex> lock(FftwPlannerMutex());
    FftDestroy(plan_);
  }
}

int64_t FbankComputer::NumFrames(int64_t num_samples) const {
  if (num_samples < frame_length_) return 0;
  return 1 + (num_samples - frame_length_) / frame_shift_;
}

void FbankComputer::ComputeFrame(const float* samples, Workspace* ws, float* out) const {
  // The time-domain steps run in float32 in torchaudio's operation order: the
  // reference rounds at every step, and in low-energy mel bins of loud frames
  // (far below the frame's peak after pre-emphasis) that rounding is visible.
  const int n = frame_length_;
  float* x = ws->frame_.data();
  float mean = 0.0f;
  if (options_.remove_dc_offset) {
    // The sum of int16-scale samples is exact in double and (below 2^24) in
    // float, whatever the order; torch then divides in float.
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += samples[i];
    mean = static_cast<float>(sum) / static_cast<float>(n);
  }
  for (int i = 0; i < n; ++i) x[i] = samples[i] - mean;
  // Pre-emphasis with the first sample replicated (x[-1] = x[0]); runs
  // backwards so every step reads the un-emphasised previous sample.
  const float k = static_cast<float>(options_.preemphasis);
  if (k != 0.0f) {
    for (int i = n - 1; i > 0; --i) {
      const float scaled = k * x[i - 1];
      x[i] = x[i] - scaled;
    }
    const float scaled = k * x[0];
    x[0] = x[0] - scaled;
  }
  FftReal* time = ws->buffers_->time;
  for (int i = 0; i < n; ++i) time[i] = x[i] * window_[i];  // float product
  std::fill(time + n, time + fft_size_, FftReal{0});       // zero padding
  FftExecute(plan_, time, ws->buffers_->freq);
  const FftReal* spectrum = reinterpret_cast<const FftReal*>(ws->buffers_->freq);
  for (size_t m = 0; m < banks_.size(); ++m) {
    const MelBank& bank = banks_[m];
    double energy = 0.0;
    for (size_t j = 0; j < bank.weights.size(); ++j) {
      const size_t bin = bank.first_bin + j;
      const double re = spectrum[2 * bin], im = spectrum[2 * bin + 1];
      energy += bank.weights[j] * (re * re + im * im);
    }
    out[m] = std::log(std::max(static_cast<float>(energy), kLogFloor));
  }
}

std::vector<float> FbankComputer::MelBanks() const {
  const int cols = fft_size_ / 2 + 1;
  std::vector<float> out(banks_.size() * cols, 0.0f);
  for (size_t m = 0; m < banks_.size(); ++m) {
    for (size_t j = 0; j < banks_[m].weights.size(); ++j) {
      out[m * cols + banks_[m].first_bin + j] = static_cast<float>(banks_[m].weights[j]);
    }
  }
  return out;
}

FbankExtractor::FbankExtractor(std::shared_ptr<const FbankComputer> computer)
    : computer_(std::move(computer)),
      workspace_(std::make_unique<FbankComputer::Workspace>(*computer_)) {}

int64_t FbankExtractor::AcceptSamples(std::span<const float> samples, std::vector<float>* frames) {
  samples_accepted_ += static_cast<int64_t>(samples.size());
  pending_.insert(pending_.end(), samples.begin(), samples.end());
  const int length = computer_->frame_length();
  const int shift = computer_->frame_shift();
  const int bins = computer_->num_bins();
  size_t start = 0;
  int64_t emitted = 0;
  while (pending_.size() - start >= static_cast<size_t>(length)) {
    const size_t base = frames->size();
    frames->resize(base + bins);
    computer_->ComputeFrame(pending_.data() + start, workspace_.get(), frames->data() + base);
    start += shift;
    ++emitted;
  }
  // Drop what no future frame can reach (start <= size since shift <= length).
  pending_.erase(pending_.begin(), pending_.begin() + start);
  frames_emitted_ += emitted;
  return emitted;
}

int64_t FbankExtractor::Finish(std::vector<float>* frames) {
  Reset();
  return 0;
}

void FbankExtractor::Reset() {
  pending_.clear();
  frames_emitted_ = 0;
  samples_accepted_ = 0;
}

std::vector<float> ComputeFbank(const FbankComputer& computer, std::span<const float> samples) {
  const int64_t frames = computer.NumFrames(static_cast<int64_t>(samples.size()));
  std::vector<float> out(static_cast<size_t>(frames) * computer.num_bins());
  FbankComputer::Workspace workspace(computer);
  for (int64_t f = 0; f < frames; ++f) {
    computer.ComputeFrame(samples.data() + f * computer.frame_shift(), &workspace,
                          out.data() + f * computer.num_bins());
  }
  return out;
}

absl::StatusOr<std::vector<float>> ComputeFbank(std::span<const float> samples,
                                                const FbankOptions& options) {
  absl::StatusOr<std::shared_ptr<const FbankComputer>> computer = FbankComputer::Create(options);
  if (!computer.ok()) return computer.status();
  return ComputeFbank(**computer, samples);
}

}  // namespace mtla::audio
