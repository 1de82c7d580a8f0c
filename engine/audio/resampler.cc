#include "engine/audio/resampler.h"

#include <soxr.h>

#include "absl/strings/str_cat.h"

namespace mtla::audio {
namespace {

// Output block handed to soxr per call; input is consumed in proportion.
constexpr size_t kBlockSamples = 4096;

absl::Status SoxrError(const char* what, soxr_error_t error) {
  return absl::InternalError(absl::StrCat("libsoxr ", what, ": ", error));
}

}  // namespace

void Resampler::SoxrDeleter::operator()(soxr* s) const { soxr_delete(s); }

Resampler::Resampler(int input_rate_hz, soxr* state)
    : input_rate_hz_(input_rate_hz), state_(state) {}
Resampler::Resampler(Resampler&&) noexcept = default;
Resampler& Resampler::operator=(Resampler&&) noexcept = default;
Resampler::~Resampler() = default;

absl::StatusOr<Resampler> Resampler::Create(int input_rate_hz) {
  if (input_rate_hz < kMinInputSampleRateHz || input_rate_hz > kMaxInputSampleRateHz) {
    return absl::InvalidArgumentError(absl::StrCat("sample_rate_hz must be in [",
                                                   kMinInputSampleRateHz, ", ",
                                                   kMaxInputSampleRateHz, "]; got ", input_rate_hz));
  }
  if (input_rate_hz == kModelSampleRateHz) return Resampler(input_rate_hz, nullptr);
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
  const soxr_runtime_spec_t runtime = soxr_runtime_spec(1);
  soxr_error_t error = nullptr;
  soxr_t state = soxr_create(input_rate_hz, kModelSampleRateHz, 1, &error, &io, &quality, &runtime);
  if (error != nullptr || state == nullptr) {
    if (state != nullptr) soxr_delete(state);
    return SoxrError("soxr_create", error != nullptr ? error : "no resampler");
  }
  return Resampler(input_rate_hz, state);
}

absl::Status Resampler::Process(std::span<const float> chunk, std::vector<float>* out) {
  if (!state_) {
    out->insert(out->end(), chunk.begin(), chunk.end());
    return absl::OkStatus();
  }
  scratch_.resize(kBlockSamples);
  // soxr reads a null input pointer as end-of-input; an empty chunk must not.
  static const float kNothing = 0.0f;
  size_t offset = 0;
  for (;;) {
    const size_t left = chunk.size() - offset;
    const float* in = left > 0 ? chunk.data() + offset : &kNothing;
    size_t idone = 0, odone = 0;
    soxr_error_t error =
        soxr_process(state_.get(), in, left, &idone, scratch_.data(), scratch_.size(), &odone);
    if (error != nullptr) return SoxrError("soxr_process", error);
    out->insert(out->end(), scratch_.begin(), scratch_.begin() + odone);
    offset += idone;
    if (offset == chunk.size() && odone < scratch_.size()) break;
  }
  return absl::OkStatus();
}

absl::Status Resampler::Flush(std::vector<float>* out) {
  if (!state_) return absl::OkStatus();
  scratch_.resize(kBlockSamples);
  for (;;) {
    size_t odone = 0;
    soxr_error_t error =
        soxr_process(state_.get(), nullptr, 0, nullptr, scratch_.data(), scratch_.size(), &odone);
    if (error != nullptr) return SoxrError("soxr_process (flush)", error);
    out->insert(out->end(), scratch_.begin(), scratch_.begin() + odone);
    if (odone == 0) break;
  }
  soxr_error_t error = soxr_clear(state_.get());
  if (error != nullptr) return SoxrError("soxr_clear", error);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> Resampler::Process(std::span<const float> chunk) {
  std::vector<float> out;
  absl::Status status = Process(chunk, &out);
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<float>> Resampler::Flush() {
  std::vector<float> out;
  absl::Status status = Flush(&out);
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<float>> ResampleTo16k(std::span<const float> samples,
                                                 int input_rate_hz) {
  absl::StatusOr<Resampler> resampler = Resampler::Create(input_rate_hz);
  if (!resampler.ok()) return resampler.status();
  std::vector<float> out;
  absl::Status status = resampler->Process(samples, &out);
  if (status.ok()) status = resampler->Flush(&out);
  if (!status.ok()) return status;
  return out;
}

}  // namespace mtla::audio
