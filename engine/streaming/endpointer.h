// Energy-based endpointing over 16 kHz int16-scale samples: decides where a
// speech segment ends. The stream is cut into 10 ms frames; a frame is silent
// when its RMS level is below `silence_threshold_dbfs` (0 dBFS = full-scale
// int16). A segment ends after `silence_ms` of consecutive silence that
// follows at least `min_speech_ms` of speech, or when it reaches
// `max_segment_ms`; the cut is placed at the end of the frame that decided it.
//
// Thread-compatible.
#ifndef MTLA_ENGINE_STREAMING_ENDPOINTER_H_
#define MTLA_ENGINE_STREAMING_ENDPOINTER_H_

#include <cstdint>
#include <span>
#include <vector>

namespace mtla {

struct EndpointerOptions {
  int sample_rate_hz = 16000;
  int silence_ms = 600;
  int max_segment_ms = 20000;
  int min_speech_ms = 200;
  float silence_threshold_dbfs = -40.0f;
  bool enabled = true;  // false: only max_segment_ms cuts
};

class Endpointer {
 public:
  explicit Endpointer(const EndpointerOptions& options);

  // Consumes samples; returns the absolute sample indices (counted from the
  // start of the stream) where segments end inside them, in order.
  std::vector<int64_t> Accept(std::span<const float> samples);
  int64_t samples_seen() const { return samples_seen_; }
  // Whether the current (unfinished) segment holds any speech frame yet.
  bool has_speech() const { return speech_frames_ * frame_samples_ >= min_speech_samples_; }

 private:
  void EndFrame(std::vector<int64_t>* cuts);

  EndpointerOptions options_;
  int frame_samples_;
  int64_t min_speech_samples_;
  int64_t silence_frames_needed_;
  int64_t max_segment_samples_;
  double energy_threshold_;  // mean square below this is silence
  int64_t samples_seen_ = 0;
  int64_t segment_start_ = 0;
  int frame_fill_ = 0;
  double frame_energy_ = 0.0;
  int64_t speech_frames_ = 0;
  int64_t trailing_silence_ = 0;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_STREAMING_ENDPOINTER_H_
