#include "engine/streaming/speech_session.h"

#include <chrono>
#include <optional>

#include "absl/strings/str_cat.h"
#include "engine/audio/cmvn.h"
#include "engine/audio/pcm.h"
#include "engine/common/status_macros.h"
#include "engine/streaming/interim_schedule.h"
#include "engine/streaming/interim_stability.h"

namespace mtla {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

constexpr double kSampleRate = 16000.0;

}  // namespace

// `stream` (null until the encoder worker submitted the prefix), `tokens`,
// `first_token_seconds`, `superseded`, an early final's `end_seconds`,
// `provisional`, `discarded` and `held_end`, the timing and the
// detokenizer's state change only under the owning session's mu_; every
// other field is set before the segment is published (active_) and
// read-only afterwards.
struct SpeechSession::Segment {
  int index = 0;
  double start_seconds = 0;
  double end_seconds = 0;  // an early final: when it started, until confirmed
  bool interim = false;
  bool early = false;  // an early final (see the header)
  // Early finals: not confirmed yet (its output is held back) ...
  bool provisional = false;
  // ... or dropped (nothing of it is queued; it ends uncounted as a segment).
  bool discarded = false;
  // Its terminal event, when that came while it was provisional.
  std::optional<GenerationEvent> held_end;
  // Interim only, under the session's mu_: a delta or the final result of
  // its segment is queued, so its own result is dropped.
  bool superseded = false;
  std::shared_ptr<RequestStream> stream;
  std::vector<int32_t> tokens;
  std::unique_ptr<IncrementalDetokenizer> detokenizer;
  Clock::time_point closed_at;     // its features went to the encoder worker
  Clock::time_point submitted_at;  // the prefix reached the engine (encoding done)
  Clock::time_point finished_at;   // its terminal event arrived
  double encode_seconds = 0;
  double first_token_seconds = -1;
};

absl::StatusOr<std::unique_ptr<SpeechSession>> SpeechSession::Create(
    const SpeechFrontEnd& front_end, const SpeechSessionOptions& options,
    std::function<void()> notify) {
  if (front_end.encoder == nullptr || front_end.engine == nullptr || front_end.model == nullptr) {
    return absl::FailedPreconditionError("the speech front end has no encoder worker or engine");
  }
  if (options.beam_size < 1 || options.beam_size > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("beam_size must be in [1, 16], got ", options.beam_size));
  }
  const int limit = front_end.engine->options().max_new_tokens_limit;
  if (options.max_tokens < 1 || options.max_tokens > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be in [1, ", limit, "], got ", options.max_tokens));
  }
  ASSIGN_OR_RETURN(audio::Resampler resampler, audio::Resampler::Create(options.sample_rate_hz));
  return std::unique_ptr<SpeechSession>(
      new SpeechSession(front_end, options, std::move(notify), std::move(resampler)));
}

SpeechSession::SpeechSession(const SpeechFrontEnd& front_end, const SpeechSessionOptions& options,
                             std::function<void()> notify, audio::Resampler resampler)
    : front_end_(front_end),
      options_(options),
      notify_(std::move(notify)),
      resampler_(std::move(resampler)),
      extractor_(front_end.fbank),
      endpointer_(options.endpointing) {
  if (front_end_.metrics) front_end_.metrics->AddSpeechSessions(1);
}

SpeechSession::~SpeechSession() {
  if (early_ != nullptr) DiscardEarlyFinal();  // its segment never closed
  Cancel();
  // Once Forget returns, no encoder callback into this session runs (and no
  // segment gets a stream any more) ...
  front_end_.encoder->Forget(this);
  std::vector<std::shared_ptr<RequestStream>> streams;
  std::vector<bool> dropped;  // interim or not, of each segment the encoder dropped
  absl::Status reason;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& s : active_) {
      if (s->stream) {
        streams.push_back(s->stream);
      } else if (!s->discarded) {
        dropped.push_back(s->interim);  // still waiting for the encoder: dropped there
      }
    }
    reason = cancelled_;
  }
  for (bool interim : dropped) CountUnsubmitted(interim, reason);
  // ... and once SetListener returns, no engine callback either.
  for (const auto& stream : streams) stream->SetListener(nullptr);
  if (front_end_.metrics) front_end_.metrics->AddSpeechSessions(-1);
}

void SpeechSession::Notify() {
  if (notify_) notify_();
}

double SpeechSession::processed_seconds() const { return samples_16k_ / kSampleRate; }
int64_t SpeechSession::chunks_received() const { return chunks_; }

absl::Status SpeechSession::AcceptAudio(std::string_view pcm16) {
  if (finished_audio_) return absl::FailedPreconditionError("audio after the end of the stream");
  // A segment that could not be encoded or submitted ends the stream.
  RETURN_IF_ERROR(error());
  if (pcm16.size() > options_.max_chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("audio: chunk of ", pcm16.size(),
                                                   " bytes exceeds the limit of ",
                                                   options_.max_chunk_bytes));
  }
  absl::StatusOr<std::vector<float>> decoded = audio::DecodePcm16(pcm16);
  if (!decoded.ok()) {  // in the request's terms: the call's `audio` field
    return absl::Status(decoded.status().code(),
                        absl::StrCat("audio: ", decoded.status().message()));
  }
  std::vector<float> samples = std::move(*decoded);
  ++chunks_;
  input_samples_ += static_cast<int64_t>(samples.size());
  if (static_cast<double>(input_samples_) / options_.sample_rate_hz > options_.max_stream_seconds) {
    return absl::OutOfRangeError(absl::StrCat("audio: the stream exceeds the maximum of ",
                                              options_.max_stream_seconds, " seconds"));
  }
  std::vector<float> resampled;
  RETURN_IF_ERROR(resampler_.Process(samples, &resampled));
  if (front_end_.metrics) front_end_.metrics->AddAudioSeconds(resampled.size() / kSampleRate);
  RETURN_IF_ERROR(AddSamples(resampled));
  RETURN_IF_ERROR(MaybeEarlyFinal());
  return MaybeInterim();
}

absl::Status SpeechSession::FinishAudio() {
  if (finished_audio_) return absl::OkStatus();
  finished_audio_ = true;
  std::vector<float> tail;
  RETURN_IF_ERROR(resampler_.Flush(&tail));
  if (front_end_.metrics) front_end_.metrics->AddAudioSeconds(tail.size() / kSampleRate);
  RETURN_IF_ERROR(AddSamples(tail));
  absl::Status closed = CloseSegment(endpointer_.Current());
  {
    absl::MutexLock lock(&mu_);
    input_done_ = true;
  }
  Notify();
  return closed;
}

absl::Status SpeechSession::AddSamples(const std::vector<float>& samples) {
  // Cuts are stream positions; `first` is the stream position of samples[0]
  // (samples_16k_ moves to each cut as its segment closes).
  const int64_t first = samples_16k_;
  size_t at = 0;
  for (const SegmentSpan& span : endpointer_.Accept(samples)) {
    const size_t upto = static_cast<size_t>(span.end - first);
    extractor_.AcceptSamples(std::span<const float>(samples.data() + at, upto - at), &features_);
    samples_16k_ = span.end;
    at = upto;
    RETURN_IF_ERROR(CloseSegment(span));
  }
  extractor_.AcceptSamples(std::span<const float>(samples.data() + at, samples.size() - at),
                           &features_);
  samples_16k_ += static_cast<int64_t>(samples.size() - at);
  DropFramesBefore(endpointer_.KeepFrom());
  return absl::OkStatus();
}

int64_t SpeechSession::FirstFrameFrom(int64_t sample) const {
  const int64_t shift = front_end_.fbank->frame_shift();
  return std::max<int64_t>(0, (sample - segment_start_sample_ + shift - 1) / shift);
}

void SpeechSession::DropFramesBefore(int64_t sample) {
  const int dim = front_end_.fbank->num_bins();
  const int64_t held = static_cast<int64_t>(features_.size()) / dim;
  const int64_t drop = std::min(held, FirstFrameFrom(sample) - first_frame_);
  if (drop <= 0) return;
  features_.erase(features_.begin(), features_.begin() + drop * dim);
  first_frame_ += drop;
}

absl::Status SpeechSession::Encode(const std::shared_ptr<Segment>& segment,
                                  std::vector<float> features) {
  segment->closed_at = Clock::now();
  const SpeechModel& model = *front_end_.model;
  if (model.config.utterance_cmvn) {
    RETURN_IF_ERROR(audio::ApplyUtteranceCmvn(features, front_end_.fbank->num_bins()));
  }
  {
    absl::MutexLock lock(&mu_);
    active_.push_back(segment);
    if (!segment->interim) ++pending_segments_;
  }
  EncodeJob job;
  job.owner = this;
  job.features = std::move(features);
  job.interim = segment->interim;
  job.cancelled = [this, segment] {
    absl::MutexLock lock(&mu_);
    return !cancelled_.ok() || segment->superseded;
  };
  job.done = [this, segment](absl::StatusOr<EncodedSegment> encoded) {
    OnEncoded(segment, std::move(encoded));
  };
  absl::Status queued = front_end_.encoder->Enqueue(std::move(job));
  if (!queued.ok()) {
    absl::MutexLock lock(&mu_);
    std::erase(active_, segment);
    if (!segment->interim) --pending_segments_;
  }
  return queued;
}

void SpeechSession::OnEncoded(const std::shared_ptr<Segment>& segment,
                              absl::StatusOr<EncodedSegment> encoded) {
  {
    absl::MutexLock lock(&mu_);
    if (!cancelled_.ok()) {
      encoded = cancelled_;  // ends as the call was cancelled
    } else if (segment->superseded) {
      encoded = absl::CancelledError("the segment's final result came first");
    } else if (segment->discarded) {
      encoded = absl::CancelledError("speech resumed after the early final started");
    }
  }
  if (!encoded.ok()) {
    FailSegment(segment, encoded.status());
    return;
  }
  const SpeechModel& model = *front_end_.model;
  GenerationRequest request;
  request.kind = segment->interim ? RequestKind::kInterim
                 : segment->early ? RequestKind::kEarlyFinal
                                  : RequestKind::kSpeechSegment;
  request.prefix_rows = encoded->prefix_rows;
  request.prefix = std::move(encoded->prefix);
  request.prompt = {model.config.eos_id};
  request.sampling.max_new_tokens = options_.max_tokens;
  request.use_beam_search = true;
  request.beam_size = segment->interim ? 1 : options_.beam_size;
  request.beam.eos = model.config.eos_id;
  request.beam.pad = model.config.pad_id;
  request.beam.unk = model.config.unk_id;
  // The stream was admitted when it opened: its segments go on while the
  // engine drains.
  request.continues_admitted_call = true;
  const Clock::time_point submitted_at = Clock::now();
  absl::StatusOr<std::shared_ptr<RequestStream>> stream =
      front_end_.engine->Submit(std::move(request));
  if (!stream.ok()) {
    FailSegment(segment, stream.status());
    return;
  }
  absl::Status cancelled;
  bool superseded = false;
  {
    absl::MutexLock lock(&mu_);
    segment->submitted_at = submitted_at;
    segment->encode_seconds = std::chrono::duration<double>(submitted_at - segment->closed_at).count();
    segment->stream = *stream;
    cancelled = cancelled_;  // Cancel, SupersedeInterims or a discard may have run since
    superseded = segment->superseded || segment->discarded;
  }
  if (!cancelled.ok()) {
    (*stream)->Cancel(cancelled);
  } else if (superseded) {
    (*stream)->Cancel();
  }
  Listen(segment);
}

void SpeechSession::CountUnsubmitted(bool interim, const absl::Status& status) const {
  if (!front_end_.metrics) return;
  const std::string label = StatusLabel(static_cast<int>(status.code()));
  if (interim) {
    front_end_.metrics->CountInterimDecode(label);
  } else {
    front_end_.metrics->CountSegment(label, "abort");
  }
}

void SpeechSession::FailSegment(const std::shared_ptr<Segment>& segment,
                                const absl::Status& status) {
  bool discarded;
  {
    absl::MutexLock lock(&mu_);
    discarded = segment->discarded;
    std::erase(active_, segment);
    if (!segment->interim) {
      --pending_segments_;
      if (error_.ok() && !discarded) error_ = status;
    }
  }
  if (!discarded) CountUnsubmitted(segment->interim, status);
  Notify();
}

std::vector<float> SpeechSession::SpeechSpanFeatures(std::vector<float> features,
                                                    int64_t first_frame,
                                                    const SegmentSpan& span) const {
  // Keep the frames that start inside the padded speech span.
  const int dim = front_end_.fbank->num_bins();
  const int64_t shift = front_end_.fbank->frame_shift();
  const int64_t held = static_cast<int64_t>(features.size()) / dim;
  const int64_t from = std::max<int64_t>(0, (span.speech_begin - span.begin + shift - 1) / shift);
  const int64_t upto = (span.speech_end - span.begin + shift - 1) / shift;  // exclusive
  const int64_t keep_begin = std::clamp<int64_t>(from - first_frame, 0, held);
  const int64_t keep_end = std::clamp<int64_t>(upto - first_frame, keep_begin, held);
  features.erase(features.begin() + keep_end * dim, features.end());
  features.erase(features.begin(), features.begin() + keep_begin * dim);
  const int64_t frames = keep_end - keep_begin;
  if (frames == 0 ||
      front_end_.model->PrefixRows(front_end_.model->config.encoder.OutputFrames(frames)) < 1) {
    return {};  // too short to encode
  }
  return features;
}

namespace {

bool SameSpeech(const SegmentSpan& a, const SegmentSpan& b) {
  return a.has_speech && b.has_speech && a.begin == b.begin && a.speech_begin == b.speech_begin &&
         a.speech_end == b.speech_end;
}

}  // namespace

absl::Status SpeechSession::CloseSegment(const SegmentSpan& span) {
  std::vector<float> features;
  features.swap(features_);
  extractor_.Finish(&features);
  const int64_t first_frame = first_frame_;
  first_frame_ = 0;
  const double start = span.begin / kSampleRate;
  const double end = span.end / kSampleRate;
  segment_start_sample_ = span.end;
  last_interim_seconds_ = 0;
  if (early_ != nullptr) {
    if (SameSpeech(span, early_span_)) {  // the same features: its decode is the final
      ++next_segment_;
      ConfirmEarlyFinal(end);
      return absl::OkStatus();
    }
    DiscardEarlyFinal();
  }
  if (!span.has_speech) return absl::OkStatus();  // silence: nothing to translate
  features = SpeechSpanFeatures(std::move(features), first_frame, span);
  if (features.empty()) return absl::OkStatus();
  auto segment = std::make_shared<Segment>();
  segment->index = next_segment_++;
  segment->start_seconds = start;
  segment->end_seconds = end;
  if (front_end_.tokenizer) {
    segment->detokenizer = std::make_unique<IncrementalDetokenizer>(front_end_.tokenizer);
  }
  return Encode(segment, std::move(features));
}

absl::Status SpeechSession::MaybeEarlyFinal() {
  if (!options_.early_finals) return absl::OkStatus();
  const SegmentSpan span = endpointer_.Current();
  if (early_ != nullptr) {
    if (SameSpeech(span, early_span_)) return absl::OkStatus();
    DiscardEarlyFinal();  // speech resumed: the span moved
  }
  // Settled: the trailing padding has passed (the span is not cut at the
  // newest sample) and every frame that starts inside the span is complete.
  if (!span.has_speech || span.speech_end >= samples_16k_) return absl::OkStatus();
  const int dim = front_end_.fbank->num_bins();
  const int64_t shift = front_end_.fbank->frame_shift();
  const int64_t upto = (span.speech_end - span.begin + shift - 1) / shift;
  if (first_frame_ + static_cast<int64_t>(features_.size()) / dim < upto) return absl::OkStatus();
  std::vector<float> features = SpeechSpanFeatures(features_, first_frame_, span);
  if (features.empty()) return absl::OkStatus();
  auto segment = std::make_shared<Segment>();
  segment->index = next_segment_;  // the segment still being received
  segment->start_seconds = span.begin / kSampleRate;
  segment->end_seconds = samples_16k_ / kSampleRate;
  segment->early = true;
  segment->provisional = true;
  if (front_end_.tokenizer) {
    segment->detokenizer = std::make_unique<IncrementalDetokenizer>(front_end_.tokenizer);
  }
  early_ = segment;
  early_span_ = span;
  if (!Encode(segment, std::move(features)).ok()) {
    // Not encoded (a full encoder queue): the segment's close tries again
    // and reports what fails then.
    early_ = nullptr;
  }
  return absl::OkStatus();
}

void SpeechSession::DiscardEarlyFinal() {
  std::shared_ptr<Segment> s = std::move(early_);
  early_ = nullptr;
  std::shared_ptr<RequestStream> stream;
  bool ended = false;
  {
    absl::MutexLock lock(&mu_);
    s->discarded = true;
    stream = s->stream;
    if (s->held_end.has_value()) {  // it ended while provisional: nothing more comes
      s->held_end.reset();
      --pending_segments_;
      ended = true;
    }
  }
  if (front_end_.metrics) front_end_.metrics->CountEarlyFinal("discarded");
  if (ended) {
    Notify();
    absl::MutexLock lock(&mu_);
    std::erase(active_, s);
  } else if (stream != nullptr) {
    stream->Cancel();  // ends (uncounted) at the engine's next step; see OnEngineOutput
  }
  // Else it still waits for the encoder: skipped there, or dropped in OnEncoded.
}

void SpeechSession::ConfirmEarlyFinal(double end_seconds) {
  std::shared_ptr<Segment> s = std::move(early_);
  early_ = nullptr;
  bool notify = false;
  bool ended = false;
  {
    absl::MutexLock lock(&mu_);
    s->provisional = false;
    s->end_seconds = end_seconds;
    if (!s->tokens.empty() && options_.beam_size == 1) {
      QueueDelta(s, s->tokens);  // everything held back so far, as one delta
      notify = true;
    }
    if (s->held_end.has_value()) {
      GenerationEvent event = std::move(*s->held_end);
      s->held_end.reset();
      QueueEnd(s, event);
      notify = ended = true;
    }
  }
  if (front_end_.metrics) front_end_.metrics->CountEarlyFinal("used");
  if (notify) Notify();
  if (ended) {
    absl::MutexLock lock(&mu_);
    std::erase(active_, s);
  }
}

absl::Status SpeechSession::MaybeInterim() {
  // Once an early final runs, the segment's speech is settled: no interims.
  if (!options_.interim_results || !endpointer_.has_speech() || early_ != nullptr) {
    return absl::OkStatus();
  }
  const double segment_seconds = (samples_16k_ - segment_start_sample_) / kSampleRate;
  if (segment_seconds < NextInterimDueSeconds(last_interim_seconds_,
                                              options_.interim_interval_seconds)) {
    return absl::OkStatus();
  }
  // Only on spare capacity (interim_schedule.h): skipped, not postponed; a
  // later chunk asks again.
  // Segments waiting for the encoder are load too: an interim would delay them.
  const EngineStats load = front_end_.engine->stats();
  if (front_end_.encoder->queued() > 0 ||
      !EngineHasSpareCapacity(load.running, load.waiting,
                              front_end_.engine->options().scheduler.max_running)) {
    return absl::OkStatus();
  }
  {
    absl::MutexLock lock(&mu_);
    for (const auto& s : active_) {
      if (s->interim) return absl::OkStatus();  // one interim hypothesis in flight at a time
    }
  }
  const int64_t frames = static_cast<int64_t>(features_.size()) / front_end_.fbank->num_bins();
  if (front_end_.model->PrefixRows(front_end_.model->config.encoder.OutputFrames(frames)) < 1) {
    return absl::OkStatus();
  }
  last_interim_seconds_ = segment_seconds;
  auto segment = std::make_shared<Segment>();
  segment->index = next_segment_;  // the segment still being received
  segment->start_seconds = segment_start_sample_ / kSampleRate;
  segment->end_seconds = samples_16k_ / kSampleRate;
  segment->interim = true;
  absl::Status queued = Encode(segment, features_);
  // A full encoder queue is load: the interim is skipped, the stream goes on.
  return absl::IsResourceExhausted(queued) ? absl::OkStatus() : queued;
}

void SpeechSession::Listen(const std::shared_ptr<Segment>& segment) {
  // A weak reference: the stream must not keep its own segment alive.
  std::weak_ptr<Segment> weak = segment;
  segment->stream->SetListener([this, weak] {
    if (std::shared_ptr<Segment> s = weak.lock()) OnEngineOutput(s);
  });
  OnEngineOutput(segment);  // in case output arrived before the listener
}

void SpeechSession::OnEngineOutput(const std::shared_ptr<Segment>& s) {
  GenerationEvent event;
  bool notify = false;
  bool finished = false;
  {
    // Pop under the session lock so that events of one segment are queued in
    // the order the engine produced them, whichever thread gets here first.
    absl::MutexLock lock(&mu_);
    if (!s->stream->Pop(&event)) return;
    if (!event.tokens.empty()) {
      if (s->first_token_seconds < 0) s->first_token_seconds = Since(s->submitted_at);
      s->tokens.insert(s->tokens.end(), event.tokens.begin(), event.tokens.end());
      // Deltas stream greedy decoding only: a wider beam's tokens arrive all
      // at once with its end, and its final result carries them. A
      // provisional early final's wait for its confirmation.
      if (!s->interim && !s->provisional && !s->discarded && options_.beam_size == 1) {
        QueueDelta(s, event.tokens);
        notify = true;
      }
    }
    if (event.finished) {
      s->finished_at = Clock::now();
      if (s->provisional && !s->discarded) {
        s->held_end = std::move(event);  // queued when confirmed; stays in active_
        return;
      }
      // `s` leaves active_ only after Notify() below: ~SpeechSession waits
      // (SetListener) for the callbacks of the segments in active_, and the
      // notified consumer may destroy the session as soon as it sees the end.
      if (s->discarded) {
        --pending_segments_;  // dropped: nothing queued, not counted
      } else {
        QueueEnd(s, event);
      }
      notify = true;
    }
    finished = event.finished;
  }
  if (notify) Notify();
  if (finished) {
    absl::MutexLock lock(&mu_);
    std::erase(active_, s);
  }
}

void SpeechSession::QueueDelta(const std::shared_ptr<Segment>& s,
                               const std::vector<int32_t>& tokens) {
  SegmentUpdate delta;
  delta.segment_index = s->index;
  delta.start_seconds = s->start_seconds;
  delta.end_seconds = s->end_seconds;
  delta.token_ids = tokens;
  if (s->detokenizer) delta.text = s->detokenizer->Add(tokens);
  SupersedeInterims(s->index);
  updates_.push_back(std::move(delta));
}

void SpeechSession::QueueEnd(const std::shared_ptr<Segment>& s, GenerationEvent& event) {
  if (!s->interim) --pending_segments_;
  if (s->early && front_end_.metrics) {  // the engine leaves early finals to the session
    front_end_.metrics->CountSegment(
        StatusLabel(static_cast<int>(event.status.code())),
        event.status.ok() ? FinishReasonName(event.finish_reason) : "abort");
  }
  if (!event.status.ok()) {
    if (error_.ok() && !s->interim) error_ = event.status;
    return;
  }
  if (s->interim && s->superseded) return;  // its segment's final result is queued
  SegmentUpdate result;
  result.segment_index = s->index;
  result.start_seconds = s->start_seconds;
  result.end_seconds = s->end_seconds;
  result.token_ids = s->tokens;
  if (front_end_.tokenizer) result.text = front_end_.tokenizer->Decode(s->tokens);
  result.is_final = !s->interim;
  result.is_interim = s->interim;
  result.timing.encode_seconds = s->encode_seconds;
  result.timing.first_token_seconds = std::max(0.0, s->first_token_seconds);
  // Disjoint: encoding ended when the prefix was submitted, where decoding
  // (and the time to the first token) starts. It ended with its terminal
  // event, not when a held early final was confirmed.
  result.timing.decode_seconds =
      std::chrono::duration<double>(s->finished_at - s->submitted_at).count();
  const double duration = s->end_seconds - s->start_seconds;
  result.timing.real_time_factor =
      duration > 0 ? (s->encode_seconds + result.timing.decode_seconds) / duration : 0;
  if (front_end_.metrics && !s->interim) {
    front_end_.metrics->ObserveRealTimeFactor(result.timing.real_time_factor);
  }
  const int32_t eos = front_end_.model->config.eos_id;
  if (s->interim) {
    result.stability = InterimStability(
        last_interim_segment_ == s->index ? last_interim_tokens_ : std::vector<int32_t>{},
        s->tokens, eos);
    last_interim_segment_ = s->index;
    last_interim_tokens_ = s->tokens;
  } else {
    for (ScoredHypothesis& h : event.hypotheses) {
      SegmentAlternative& a = result.alternatives.emplace_back();
      if (front_end_.tokenizer) a.text = front_end_.tokenizer->Decode(h.tokens);
      a.token_ids = std::move(h.tokens);
      a.score = h.score;
    }
    SupersedeInterims(s->index);
  }
  updates_.push_back(std::move(result));
}

void SpeechSession::SupersedeInterims(int segment_index) {
  for (const auto& other : active_) {
    if (other->interim && other->index == segment_index && !other->superseded) {
      other->superseded = true;
      // Its result would be dropped: stop computing it (one still waiting for
      // the encoder is skipped there).
      if (other->stream) other->stream->Cancel();
    }
  }
}

void SpeechSession::Cancel(absl::Status reason) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_.ok()) cancelled_ = reason;
    // Segments still waiting for the encoder are skipped there and end with
    // cancelled_ (OnEncoded).
    for (const auto& s : active_) {
      if (s->stream) streams.push_back(s->stream);
    }
  }
  for (const auto& stream : streams) stream->Cancel(reason);
}

std::vector<SegmentUpdate> SpeechSession::TakeUpdates() {
  absl::MutexLock lock(&mu_);
  std::vector<SegmentUpdate> out(std::make_move_iterator(updates_.begin()),
                                 std::make_move_iterator(updates_.end()));
  updates_.clear();
  return out;
}

bool SpeechSession::done() const {
  absl::MutexLock lock(&mu_);
  return input_done_ && pending_segments_ == 0 && updates_.empty();
}

absl::Status SpeechSession::error() const {
  absl::MutexLock lock(&mu_);
  return error_;
}

}  // namespace mtla
