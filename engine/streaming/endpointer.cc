#include "engine/streaming/endpointer.h"

#include <algorithm>
#include <cmath>

namespace mtla {

Endpointer::Endpointer(const EndpointerOptions& options) : options_(options) {
  frame_samples_ = options.sample_rate_hz / 100;
  // 64-bit arithmetic: any int32 millisecond value a request may carry.
  min_speech_frames_ = static_cast<int>(
      std::max<int64_t>(1, (static_cast<int64_t>(options.min_speech_ms) + 9) / 10));
  silence_frames_needed_ = static_cast<int>((static_cast<int64_t>(options.silence_ms) + 9) / 10);
  max_segment_samples_ = static_cast<int64_t>(options.max_segment_ms) * options.sample_rate_hz / 1000;
  leading_padding_ = static_cast<int64_t>(std::max(0, options.leading_padding_ms)) * options.sample_rate_hz / 1000;
  trailing_padding_ = static_cast<int64_t>(std::max(0, options.trailing_padding_ms)) * options.sample_rate_hz / 1000;
  const double full_scale = 32768.0;
  energy_threshold_ =
      full_scale * full_scale * std::pow(10.0, options.silence_threshold_dbfs / 10.0);
}

bool Endpointer::has_speech() const {
  return !options_.enabled || speech_frames_ >= min_speech_frames_;
}

SegmentSpan Endpointer::Span(int64_t end) const {
  SegmentSpan span;
  span.begin = segment_start_;
  span.end = end;
  span.has_speech = has_speech();
  if (!options_.enabled) {
    span.speech_begin = segment_start_;
    span.speech_end = end;
  } else if (span.has_speech) {
    span.speech_begin = std::max(segment_start_, first_speech_ - leading_padding_);
    span.speech_end = std::min(end, last_speech_end_ + trailing_padding_);
  } else {
    span.speech_begin = span.speech_end = end;
  }
  return span;
}

SegmentSpan Endpointer::Current() const { return Span(samples_seen_); }

int64_t Endpointer::KeepFrom() const {
  if (!options_.enabled) return segment_start_;
  // Without speech yet, the earliest frame that may still be speech is the
  // one being filled.
  const int64_t from = first_speech_ >= 0 ? first_speech_ : samples_seen_ - frame_fill_;
  return std::max(segment_start_, from - leading_padding_);
}

void Endpointer::EndFrame(std::vector<SegmentSpan>* done) {
  const bool silent =
      options_.enabled && frame_energy_ / frame_samples_ < energy_threshold_;
  frame_fill_ = 0;
  frame_energy_ = 0.0;
  if (silent) {
    ++trailing_silence_;
  } else {
    if (first_speech_ < 0) first_speech_ = samples_seen_ - frame_samples_;
    last_speech_end_ = samples_seen_;
    ++speech_frames_;
    trailing_silence_ = 0;
  }
  const bool pause = trailing_silence_ >= silence_frames_needed_;
  if (options_.enabled && pause && !has_speech()) {
    // A burst too short to be speech, then a pause: forget it.
    speech_frames_ = 0;
    first_speech_ = -1;
  }
  // Length counts from the start of the speech span (the whole segment when
  // endpointing is off); silence before speech does not count.
  const int64_t length = samples_seen_ - KeepFrom();
  const bool too_long = first_speech_ >= 0 && length >= max_segment_samples_;
  if ((options_.enabled && pause && has_speech()) || too_long) {
    done->push_back(Span(samples_seen_));
    segment_start_ = samples_seen_;
    speech_frames_ = 0;
    first_speech_ = -1;
    trailing_silence_ = 0;
  }
}

std::vector<SegmentSpan> Endpointer::Accept(std::span<const float> samples) {
  std::vector<SegmentSpan> done;
  for (float x : samples) {
    frame_energy_ += static_cast<double>(x) * x;
    ++samples_seen_;
    if (++frame_fill_ == frame_samples_) EndFrame(&done);
  }
  return done;
}

}  // namespace mtla
