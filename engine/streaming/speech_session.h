// One streaming speech-translation call: PCM chunks in; per-segment
// translations out. Audio is resampled to 16 kHz and turned into fbank
// features as it arrives; the endpointer cuts segments at pauses and at the
// maximum length and says where each segment's speech lies. As soon as a
// segment ends, the features of its (padded) speech span, and only those, are
// normalized (utterance CMVN), encoded, projected into the decoder prefix and
// submitted to the engine, whose tokens come back as text deltas and a final
// result. A segment without speech is not translated and yields no result;
// features of silence before any speech are dropped as they arrive, so
// silence costs no memory.
//
// Early finals: once the segment's speech span is settled (its trailing
// padding has passed in silence and the fbank frames inside it are complete)
// the segment is encoded and decoded at once, before the endpointer closes
// it, with its output held back. When the segment closes with that same
// span, the held output is released and the decode goes on as the final
// (the features, hence the tokens, are exactly those the close would have
// encoded); when speech resumes first, the early final is dropped and the
// engine stops it. So the final result comes up to the endpointer's
// silence_ms sooner, and a dropped one costs only work.
//
// Threads: AcceptAudio/FinishAudio/Cancel come from the RPC's reader (one at a
// time); a closed segment's features go to the server's encoder worker
// (speech_encoder_worker.h), whose thread submits the prefix to the engine;
// results arrive from the engine thread. Updates are queued and `notify` is
// called (from any of these threads, no lock held) when some are ready;
// TakeUpdates drains them. No RPC thread runs the encoder.
//
// Thread-safety: thread-safe as described.
#ifndef MTLA_ENGINE_STREAMING_SPEECH_SESSION_H_
#define MTLA_ENGINE_STREAMING_SPEECH_SESSION_H_

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/audio/fbank.h"
#include "engine/audio/resampler.h"
#include "engine/serving/engine.h"
#include "engine/speech/speech_model.h"
#include "engine/streaming/endpointer.h"
#include "engine/streaming/speech_encoder_worker.h"
#include "engine/tokenizer/tokenizer.h"

namespace mtla {

// What every session of one server shares (all immutable / thread-safe).
struct SpeechFrontEnd {
  std::shared_ptr<const audio::FbankComputer> fbank;
  const SpeechModel* model = nullptr;        // Encode/Project only
  const Tokenizer* tokenizer = nullptr;      // null: token ids only, no text
  std::shared_ptr<Engine> engine;
  std::shared_ptr<SpeechEncoderWorker> encoder;  // encodes for every session
  std::shared_ptr<ServingMetrics> metrics;   // may be null
  std::string source_language;               // empty: not checked
  std::string target_language;
};

struct SpeechSessionOptions {
  int sample_rate_hz = 16000;
  int beam_size = 1;
  int max_tokens = 200;
  bool interim_results = false;
  // Early finals (above); false: a segment is encoded only when it closes.
  bool early_finals = true;
  // The first interim's length and the least gap between two; their spacing
  // and the spare-capacity rule are in interim_schedule.h.
  double interim_interval_seconds = 1.0;
  EndpointerOptions endpointing;
  double max_stream_seconds = 3600;
  size_t max_chunk_bytes = 1 << 20;
};

// A segment's processing time, in two disjoint parts that together cover the
// segment's close to its final result (see the SegmentTiming proto):
// encode_seconds = CMVN + the wait for the encoder worker + its batch's
// encoder and projector; decode_seconds = prefix
// submitted to the engine -> final result (queueing, prefill, every token);
// first_token_seconds = prefix submitted -> first token (a part of decode);
// real_time_factor = (encode_seconds + decode_seconds) / segment duration.
struct SegmentTimingInfo {
  double encode_seconds = 0;
  double first_token_seconds = 0;
  double decode_seconds = 0;
  double real_time_factor = 0;
};

// One hypothesis of a segment's beam search.
struct SegmentAlternative {
  std::string text;                // empty without a tokenizer
  std::vector<int32_t> token_ids;  // ends with EOS
  double score = 0;                // length-normalized log-probability
};

// One message for the client: a text delta of a segment being decoded, an
// interim hypothesis (greedy on the audio so far), or a segment's final result.
// Per segment, updates come as interims, then deltas, then the final, and
// nothing of a segment follows its final (an interim still decoding when a
// delta or the final of its segment is queued is dropped).
struct SegmentUpdate {
  int segment_index = 0;
  double start_seconds = 0;
  double end_seconds = 0;
  std::string text;               // final/interim: whole text; delta: new text
  std::vector<int32_t> token_ids; // final/interim: all tokens; delta: new tokens
  bool is_final = false;
  bool is_interim = false;        // neither: a delta
  SegmentTimingInfo timing;
  // Interim only: InterimStability against the segment's previous interim.
  float stability = 0;
  // Final only: the beam's hypotheses, best first (alternatives[0] is the
  // result); at most the session's beam_size.
  std::vector<SegmentAlternative> alternatives;
};

class SpeechSession {
 public:
  // InvalidArgument naming the field for a bad sample rate, beam size or
  // max_tokens.
  static absl::StatusOr<std::unique_ptr<SpeechSession>> Create(const SpeechFrontEnd& front_end,
                                                               const SpeechSessionOptions& options,
                                                               std::function<void()> notify);
  ~SpeechSession();

  // One chunk of PCM16 LE mono. InvalidArgument (odd byte count, chunk over
  // max_chunk_bytes), OutOfRange (stream longer than max_stream_seconds), or
  // the error of an earlier segment that could not be encoded or submitted
  // (error()), or the encoder's queue bound (ResourceExhausted).
  absl::Status AcceptAudio(std::string_view pcm16);
  // The client half-closed: the last segment ends here.
  absl::Status FinishAudio();
  // Stops every segment still decoding (their cache is freed at the engine's
  // next step); they end, and are counted, with `reason` (Cancelled, or
  // DeadlineExceeded when the client's deadline passed).
  void Cancel(absl::Status reason = absl::CancelledError("the call was cancelled"))
      ABSL_LOCKS_EXCLUDED(mu_);

  double processed_seconds() const;
  int64_t chunks_received() const;
  std::vector<SegmentUpdate> TakeUpdates() ABSL_LOCKS_EXCLUDED(mu_);
  // After FinishAudio: every segment has produced its final result (or failed).
  bool done() const ABSL_LOCKS_EXCLUDED(mu_);
  // The first failure of a segment's decoding, if any.
  absl::Status error() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Segment;
  SpeechSession(const SpeechFrontEnd& front_end, const SpeechSessionOptions& options,
                std::function<void()> notify, audio::Resampler resampler);
  // Adds 16 kHz samples to the current segment, cutting where the endpointer says.
  absl::Status AddSamples(const std::vector<float>& samples);
  // Ends the current segment (`span` from the endpointer): submits the
  // features of its speech span, or nothing when it holds no speech.
  absl::Status CloseSegment(const SegmentSpan& span);
  absl::Status MaybeInterim();
  // Starts the current segment's early final when its speech span has
  // settled, or drops the one in flight when the span moved (speech resumed).
  absl::Status MaybeEarlyFinal();
  // Drops early_: its output is never queued and the engine stops it.
  void DiscardEarlyFinal() ABSL_LOCKS_EXCLUDED(mu_);
  // The current segment closed with early_span_: early_ becomes its final,
  // ending at `end_seconds`; what it already produced is queued.
  void ConfirmEarlyFinal(double end_seconds) ABSL_LOCKS_EXCLUDED(mu_);
  // The frames of `frames` (the segment's, from frame `first_frame` on) that
  // start inside the padded speech span of `span`; empty when too few to
  // encode.
  std::vector<float> SpeechSpanFeatures(std::vector<float> frames, int64_t first_frame,
                                        const SegmentSpan& span) const;
  // The index (in the current segment) of the first fbank frame that starts
  // at or after `sample`.
  int64_t FirstFrameFrom(int64_t sample) const;
  // Drops the held frames of the current segment that start before `sample`.
  void DropFramesBefore(int64_t sample);
  // Publishes `segment` (active_; a final counts as pending) and hands its
  // features to the encoder worker; OnEncoded continues on the worker thread.
  absl::Status Encode(const std::shared_ptr<Segment>& segment, std::vector<float> features)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Worker thread: submits the prefix to the engine and listens to its
  // stream, or ends the segment with the failure.
  void OnEncoded(const std::shared_ptr<Segment>& segment, absl::StatusOr<EncodedSegment> encoded)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Ends a segment that never reached the engine (counted as the engine
  // counts a refused one); queues nothing for the client.
  void FailSegment(const std::shared_ptr<Segment>& segment, const absl::Status& status)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Counts a segment that ended before reaching the engine, as the engine
  // counts one it refused or the call's end stopped: a final in
  // mtla_segments_total (finish reason "abort"), an interim in
  // mtla_interim_decodes_total, both labelled with `status`.
  void CountUnsubmitted(bool interim, const absl::Status& status) const;
  void Listen(const std::shared_ptr<Segment>& segment) ABSL_LOCKS_EXCLUDED(mu_);
  // Engine thread or reader; takes mu_ and calls `notify` after releasing it.
  void OnEngineOutput(const std::shared_ptr<Segment>& segment) ABSL_LOCKS_EXCLUDED(mu_);
  // A delta or the final of segment `segment_index` is being queued: drops
  // (and cancels) its interim hypotheses still decoding, so that no interim
  // follows them.
  void SupersedeInterims(int segment_index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a text delta of `s` carrying `tokens`.
  void QueueDelta(const std::shared_ptr<Segment>& s, const std::vector<int32_t>& tokens)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues what a finished segment leaves for the client (its final or
  // interim result, or its error) and counts it; `s` is not provisional.
  void QueueEnd(const std::shared_ptr<Segment>& s, GenerationEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Never with mu_ held: the callback re-enters TakeUpdates/done/error.
  void Notify() ABSL_LOCKS_EXCLUDED(mu_);

  const SpeechFrontEnd front_end_;
  const SpeechSessionOptions options_;
  const std::function<void()> notify_;
  audio::Resampler resampler_;
  audio::FbankExtractor extractor_;
  Endpointer endpointer_;

  // Reader-side state (one caller at a time).
  std::vector<float> features_;  // current segment's frames from first_frame_ on
  int64_t first_frame_ = 0;      // index in the segment of features_'s first frame
  int64_t segment_start_sample_ = 0;
  int64_t samples_16k_ = 0;
  int64_t input_samples_ = 0;
  int64_t chunks_ = 0;
  int next_segment_ = 0;
  double last_interim_seconds_ = 0;
  bool finished_audio_ = false;
  // The current segment's early final, if one is in flight, and the span it
  // encoded.
  std::shared_ptr<Segment> early_;
  SegmentSpan early_span_;

  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Segment>> active_ ABSL_GUARDED_BY(mu_);
  std::deque<SegmentUpdate> updates_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  int pending_segments_ ABSL_GUARDED_BY(mu_) = 0;
  // The last interim hypothesis queued and its segment (stability).
  int last_interim_segment_ ABSL_GUARDED_BY(mu_) = -1;
  std::vector<int32_t> last_interim_tokens_ ABSL_GUARDED_BY(mu_);
  bool input_done_ ABSL_GUARDED_BY(mu_) = false;
  // Cancel's reason once it ran: segments still waiting for the encoder end
  // with it.
  absl::Status cancelled_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mtla

#endif  // MTLA_ENGINE_STREAMING_SPEECH_SESSION_H_
