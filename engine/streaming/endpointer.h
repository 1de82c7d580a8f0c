// Energy-based endpointing over 16 kHz int16-scale samples: decides where a
// speech segment ends and where its speech lies. The stream is cut into 10 ms
// frames; a frame is silent when its RMS level is below
// `silence_threshold_dbfs` (0 dBFS = full-scale int16), speech otherwise.
//
// - A segment holds speech once it has `min_speech_ms` of speech frames. A
//   burst shorter than that followed by `silence_ms` of silence (a click, a
//   cough) is forgotten: it neither starts speech nor ends a segment.
// - A segment ends after `silence_ms` of consecutive silence that follows its
//   speech, or when the audio from its first speech frame (less the padding,
//   below) reaches `max_segment_ms` (then it may hold no speech, if that was
//   sparse bursts);
//   the cut is placed at the end of the frame that decided it. Silence before
//   any speech never ends a segment and never counts towards its length.
// - A segment's speech span runs from the start of its first speech frame to
//   the end of its last one, widened by `leading_padding_ms` before and
//   `trailing_padding_ms` after, and clamped to the segment. Only this span
//   needs translating: audio outside it is silence.
//
// With `enabled` false every frame is speech: segments end only at
// max_segment_ms, and a segment's speech span is the whole segment.
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
  // Audio kept around the speech: before its first speech frame, after its
  // last. The default model was trained on utterances that begin with their
  // first phoneme, and silence before the speech shifts its utterance CMVN
  // (30 ms of it already changes a translation): nothing is kept before.
  int leading_padding_ms = 0;
  int trailing_padding_ms = 150;
  float silence_threshold_dbfs = -40.0f;
  bool enabled = true;  // false: only max_segment_ms cuts; nothing is trimmed
};

// A segment, in absolute sample indices counted from the start of the stream.
struct SegmentSpan {
  int64_t begin = 0;  // the segment: [begin, end)
  int64_t end = 0;
  bool has_speech = false;
  // The padded speech span, inside the segment; empty when !has_speech.
  int64_t speech_begin = 0;
  int64_t speech_end = 0;
};

class Endpointer {
 public:
  explicit Endpointer(const EndpointerOptions& options);

  // Consumes samples; returns the segments that end inside them, in order.
  std::vector<SegmentSpan> Accept(std::span<const float> samples);
  // The unfinished segment as if it ended now (at samples_seen()).
  SegmentSpan Current() const;
  // The first sample of the unfinished segment that may still be part of its
  // speech span: audio before it can be dropped.
  int64_t KeepFrom() const;
  int64_t samples_seen() const { return samples_seen_; }
  // Whether the unfinished segment holds speech yet.
  bool has_speech() const;

 private:
  void EndFrame(std::vector<SegmentSpan>* done);
  SegmentSpan Span(int64_t end) const;

  EndpointerOptions options_;
  int frame_samples_;
  int64_t min_speech_frames_;
  int64_t silence_frames_needed_;
  int64_t max_segment_samples_;
  int64_t leading_padding_;   // samples
  int64_t trailing_padding_;  // samples
  double energy_threshold_;  // mean square below this is silence
  int64_t samples_seen_ = 0;
  int frame_fill_ = 0;
  double frame_energy_ = 0.0;
  // The unfinished segment.
  int64_t segment_start_ = 0;
  int64_t speech_frames_ = 0;
  int64_t first_speech_ = -1;  // start of its first speech frame; -1: none yet
  int64_t last_speech_end_ = 0;
  int64_t trailing_silence_ = 0;  // frames
};

}  // namespace mtla

#endif  // MTLA_ENGINE_STREAMING_ENDPOINTER_H_
