#include "engine/streaming/endpointer.h"

#include <cmath>

namespace mtla {

Endpointer::Endpointer(const EndpointerOptions& options) : options_(options) {
  frame_samples_ = options.sample_rate_hz / 100;
  min_speech_samples_ = static_cast<int64_t>(options.min_speech_ms) * options.sample_rate_hz / 1000;
  silence_frames_needed_ = (static_cast<int64_t>(options.silence_ms) + 9) / 10;  // any int32 ms
  max_segment_samples_ = static_cast<int64_t>(options.max_segment_ms) * options.sample_rate_hz / 1000;
  const double full_scale = 32768.0;
  energy_threshold_ =
      full_scale * full_scale * std::pow(10.0, options.silence_threshold_dbfs / 10.0);
}

void Endpointer::EndFrame(std::vector<int64_t>* cuts) {
  const bool silent = frame_energy_ / frame_samples_ < energy_threshold_;
  frame_fill_ = 0;
  frame_energy_ = 0.0;
  if (silent) {
    ++trailing_silence_;
  } else {
    ++speech_frames_;
    trailing_silence_ = 0;
  }
  const int64_t length = samples_seen_ - segment_start_;
  const bool pause = options_.enabled && has_speech() && trailing_silence_ >= silence_frames_needed_;
  if (pause || length >= max_segment_samples_) {
    cuts->push_back(samples_seen_);
    segment_start_ = samples_seen_;
    speech_frames_ = 0;
    trailing_silence_ = 0;
  }
}

std::vector<int64_t> Endpointer::Accept(std::span<const float> samples) {
  std::vector<int64_t> cuts;
  for (float x : samples) {
    frame_energy_ += static_cast<double>(x) * x;
    ++samples_seen_;
    if (++frame_fill_ == frame_samples_) EndFrame(&cuts);
  }
  return cuts;
}

}  // namespace mtla
