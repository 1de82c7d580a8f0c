#include "server/speech_translation_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>

#include "absl/strings/str_cat.h"
#include "server/grpc_reaction_order.h"
#include "server/status_conversion.h"

namespace mtla {

v1::LanguagePair ServedLanguagePair(const SpeechFrontEnd& front_end) {
  v1::LanguagePair pair;
  pair.set_source_language(front_end.source_language);
  pair.set_target_language(front_end.target_language);
  return pair;
}

namespace {

// `requested` (config.`field`) against the model's `served` language (empty:
// the model declares none). The result is the call's language.
absl::StatusOr<std::string> ResolveLanguage(const std::string& requested, const std::string& served,
                                            absl::string_view field,
                                            const v1::LanguagePair& pair) {
  if (requested.empty() || requested == served) return served;
  if (served.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.", field, ": '", requested,
        "' is not served: the model declares no language (GetModelInfo lists no "
        "language_pairs); leave config.", field, " empty"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "config.", field, ": '", requested, "' is not served; the model serves ",
      pair.source_language().empty() ? "?" : pair.source_language(), " -> ",
      pair.target_language().empty() ? "?" : pair.target_language(),
      " (GetModelInfo.language_pairs), or leave the field empty for the model's own"));
}

}  // namespace

absl::StatusOr<v1::TranslationMetadata> ResolveTranslation(const v1::TranslationConfig& config,
                                                           const SpeechFrontEnd& front_end,
                                                           const std::string& model_name) {
  const v1::LanguagePair pair = ServedLanguagePair(front_end);
  v1::TranslationMetadata metadata;
  metadata.set_model(model_name);
  absl::StatusOr<std::string> source = ResolveLanguage(
      config.source_language(), front_end.source_language, "source_language", pair);
  if (!source.ok()) return source.status();
  absl::StatusOr<std::string> target = ResolveLanguage(
      config.target_language(), front_end.target_language, "target_language", pair);
  if (!target.ok()) return target.status();
  metadata.set_source_language(*source);
  metadata.set_target_language(*target);
  return metadata;
}

absl::StatusOr<SpeechSessionOptions> ToSessionOptions(const v1::TranslationConfig& config,
                                                      const SpeechFrontEnd& front_end,
                                                      const SpeechSessionOptions& defaults) {
  SpeechSessionOptions options = defaults;
  if (config.encoding() != v1::LINEAR_PCM16) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.encoding: only LINEAR_PCM16 is supported, got ",
                     v1::AudioEncoding_Name(config.encoding())));
  }
  if (config.sample_rate_hz() < 8000 || config.sample_rate_hz() > 48000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.sample_rate_hz must be in [8000, 48000], got ", config.sample_rate_hz()));
  }
  options.sample_rate_hz = config.sample_rate_hz();
  if (absl::StatusOr<v1::TranslationMetadata> languages = ResolveTranslation(config, front_end, "");
      !languages.ok()) {
    return languages.status();
  }
  if (config.beam_size() < 0 || config.beam_size() > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.beam_size must be in [0, 16], got ", config.beam_size()));
  }
  options.beam_size = std::max(1, config.beam_size());
  // The server's limit, and the model's: fairseq's max_len is one less than
  // the decoder's positions, so any segment's result fits the context.
  const int limit = std::min(front_end.engine->options().max_new_tokens_limit,
                             front_end.model->config.max_target_positions - 1);
  if (config.max_tokens() < 0 || config.max_tokens() > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.max_tokens must be in [0, ", limit, "], got ", config.max_tokens()));
  }
  if (config.max_tokens() > 0) options.max_tokens = config.max_tokens();
  options.interim_results = config.interim_results();
  const v1::EndpointingConfig& ep = config.endpointing();
  for (const auto& [field, value] :
       {std::pair<const char*, int>{"silence_ms", ep.silence_ms()},
        {"max_segment_ms", ep.max_segment_ms()},
        {"min_speech_ms", ep.min_speech_ms()},
        {"leading_padding_ms", ep.leading_padding_ms()},
        {"trailing_padding_ms", ep.trailing_padding_ms()}}) {
    if (value < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config.endpointing.", field, " must not be negative (0: the server default), got ", value));
    }
  }
  if (ep.silence_ms() > 0) options.endpointing.silence_ms = ep.silence_ms();
  if (ep.max_segment_ms() > 0) options.endpointing.max_segment_ms = ep.max_segment_ms();
  if (ep.min_speech_ms() > 0) options.endpointing.min_speech_ms = ep.min_speech_ms();
  if (ep.leading_padding_ms() > 0) options.endpointing.leading_padding_ms = ep.leading_padding_ms();
  if (ep.trailing_padding_ms() > 0) {
    options.endpointing.trailing_padding_ms = ep.trailing_padding_ms();
  }
  if (options.endpointing.min_speech_ms > options.endpointing.max_segment_ms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.endpointing.min_speech_ms (", options.endpointing.min_speech_ms,
        ") exceeds max_segment_ms (", options.endpointing.max_segment_ms, ")"));
  }
  // The longest audio a segment hands the encoder, against what it takes.
  const int64_t longest_ms = int64_t{options.endpointing.max_segment_ms} +
                             options.endpointing.leading_padding_ms +
                             options.endpointing.trailing_padding_ms;
  const int64_t encoder_ms = int64_t{front_end.model->config.encoder.max_source_positions} *
                             front_end.fbank->frame_shift() * 1000 / 16000;
  if (longest_ms > encoder_ms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.endpointing.max_segment_ms: segments of up to ", longest_ms,
        " ms (max_segment_ms plus the paddings) exceed the ", encoder_ms,
        " ms of audio the model translates at once"));
  }
  if (ep.silence_threshold_dbfs() != 0) {
    if (ep.silence_threshold_dbfs() > 0 || ep.silence_threshold_dbfs() < -120) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config.endpointing.silence_threshold_dbfs must be in [-120, 0), got ",
          ep.silence_threshold_dbfs()));
    }
    options.endpointing.silence_threshold_dbfs = ep.silence_threshold_dbfs();
  }
  options.endpointing.enabled = !ep.disabled();
  return options;
}

absl::StatusOr<std::unique_ptr<SpeechSession>> StartStreamingSession(
    const v1::StreamingTranslateRequest& first, const SpeechFrontEnd& front_end,
    const SpeechSessionOptions& defaults, std::function<void()> notify) {
  if (!first.has_config()) {
    return absl::InvalidArgumentError(
        "audio: sent before config; the first message must carry config");
  }
  absl::StatusOr<SpeechSessionOptions> options =
      ToSessionOptions(first.config(), front_end, defaults);
  if (!options.ok()) return options.status();
  return SpeechSession::Create(front_end, *options, std::move(notify));
}

absl::Status ContinueStreamingSession(const v1::StreamingTranslateRequest& request,
                                      SpeechSession& session) {
  if (request.has_config()) return absl::InvalidArgumentError("config: sent twice");
  return session.AcceptAudio(request.audio());
}

v1::SegmentResult ToWire(const SegmentUpdate& u) {
  v1::SegmentResult r;
  r.set_segment_index(u.segment_index);
  r.set_start_seconds(u.start_seconds);
  r.set_end_seconds(u.end_seconds);
  r.set_text(u.text);
  for (int32_t id : u.token_ids) r.add_token_ids(id);
  r.set_is_final(u.is_final);
  r.set_kind(u.is_final     ? v1::RESULT_KIND_FINAL
             : u.is_interim ? v1::RESULT_KIND_INTERIM
                            : v1::RESULT_KIND_DELTA);
  if (u.is_interim) r.set_stability(u.stability);
  for (const SegmentAlternative& a : u.alternatives) {
    v1::Alternative* out = r.add_alternatives();
    out->set_text(a.text);
    for (int32_t id : a.token_ids) out->add_token_ids(id);
    out->set_score(a.score);
  }
  if (u.is_final || u.is_interim) {
    v1::SegmentTiming* t = r.mutable_timing();
    t->set_encode_seconds(u.timing.encode_seconds);
    t->set_first_token_seconds(u.timing.first_token_seconds);
    t->set_decode_seconds(u.timing.decode_seconds);
    t->set_real_time_factor(u.timing.real_time_factor);
  }
  return r;
}

namespace {

// A Translate call's report before anything happened.
CallReport TranslateReport(const grpc::ServerContextBase& context) {
  CallReport report;
  report.request_id = CallRequestId("", context);
  report.method = "mtla.v1.SpeechTranslation/Translate";
  report.finished_reason = "end_of_audio";
  report.generated_tokens = 0;
  report.segments = 0;
  report.audio_seconds = 0;
  return report;
}

// A session update of a call started at `start`, into its report: the first
// translated token (interim hypotheses aside), and each final result.
void RecordUpdate(const SegmentUpdate& update, std::chrono::steady_clock::time_point start,
                  bool content, CallReport* report) {
  if (!update.token_ids.empty() && report->ttft_seconds < 0 && !update.is_interim) {
    report->ttft_seconds = SecondsSince(start);
  }
  if (!update.is_final) return;
  ++report->segments;
  report->generated_tokens += static_cast<int64_t>(update.token_ids.size());
  if (!content) return;
  report->output_token_ids.insert(report->output_token_ids.end(), update.token_ids.begin(),
                                  update.token_ids.end());
  if (!report->text.empty() && !update.text.empty()) report->text.push_back(' ');
  report->text += update.text;
}

// At a speech call's OnDone: its report completed (audio received, outcome,
// error in the caller's terms, duration) and handed to `reporter`. `session`
// may be null (the call ended before its config).
void ReportSpeechCall(const CallReporter& reporter, const grpc::ServerContextBase& context,
                      const grpc::Status& sent, const SpeechSession* session,
                      std::chrono::steady_clock::time_point start, CallReport report) {
  if (session) report.audio_seconds = session->processed_seconds();
  report.code = CallOutcome(context, sent);
  report.error = report.code == sent.error_code()
                     ? sent.error_message()
                     : std::string(CancellationReason(context).message());
  report.total_seconds = SecondsSince(start);
  reporter.CallEnded(std::move(report));
}

using StreamRequest = v1::StreamingTranslateRequest;
using StreamResponse = v1::StreamingTranslateResponse;

// Reads config then audio; writes progress for every chunk and the session's
// updates, one write in flight at a time; finishes once the client half-closed
// and every segment has its final result, or at the first error, the idle
// timeout or the pending-response bound (see the header).
class StreamingTranslateReactor final : public OrderedReactor<grpc::ServerBidiReactor<StreamRequest, StreamResponse>> {
 public:
  // `front_end`: the holder's ForCall(), whose error ends the call.
  StreamingTranslateReactor(grpc::CallbackServerContext* context,
                            absl::StatusOr<std::shared_ptr<const SpeechFrontEnd>> front_end,
                            const SpeechSessionOptions& defaults, std::string model_name,
                            const CallControl& control, std::shared_ptr<const CallReporter> reporter)
      : context_(context),
        reporter_(std::move(reporter)),
        defaults_(defaults),
        model_name_(std::move(model_name)),
        control_(control) {
    {
      absl::MutexLock lock(&mu_);
      report_.request_id = CallRequestId("", *context_);
      report_.method = "mtla.v1.SpeechTranslation/StreamingTranslate";
      report_.finished_reason = "end_of_audio";
      report_.generated_tokens = 0;
      report_.segments = 0;
      report_.audio_seconds = 0;
    }
    absl::StatusOr<std::shared_ptr<OpenCalls::Entry>> admitted =
        control_.calls->Admit([this](const absl::Status& status) { End(ToGrpcStatus(status)); });
    if (!admitted.ok()) {
      Fail(ToGrpcStatus(admitted.status()));
      return;
    }
    admitted_ = std::move(*admitted);
    if (!front_end.ok()) {
      Fail(ToGrpcStatus(front_end.status()));
      return;
    }
    front_end_ = std::move(*front_end);
    {
      absl::MutexLock lock(&mu_);
      // The drain may have ended the call since it was admitted.
      if (finishing_) return;
      control_.timer->Schedule(this, IdleDeadline(), [this] { IdleTimeout(); });
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    EnterReaction();
    if (ended_.load()) return;  // End() finished the call: read no more
    {
      absl::MutexLock lock(&mu_);
      // Finished (an error, the idle timeout, the pending bound) or the
      // client gone: a read that completes now is not a half-close.
      if (finishing_) return;
    }
    // Only this reader creates the session and only OnDone, which follows
    // every other reaction, destroys it: the pointer stays valid here.
    SpeechSession* session = CurrentSession();
    if (!ok) {  // the client half-closed, or the call was cancelled
      // A cancelled call is not a half-close: its pending audio must not be
      // encoded and decoded as a last segment.
      if (cancelled_.load() || context_->IsCancelled()) {
        // Its segments end as the call did: cancelled, or deadline_exceeded.
        if (session != nullptr) session->Cancel(CancellationReason(*context_));
        Fail(grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled"));
        return;
      }
      if (session == nullptr) {
        Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "empty stream: the first message must carry config"));
        return;
      }
      absl::Status s = session->FinishAudio();
      if (!s.ok()) {
        Fail(ToGrpcStatus(s));
        return;
      }
      if (cancelled_.load()) {  // OnCancel ran during FinishAudio: stop its last segment
        session->Cancel(CancellationReason(*context_));
        Fail(grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled"));
        return;
      }
      {
        absl::MutexLock lock(&mu_);
        reads_done_ = true;
        // The idle timeout no longer applies; the results still to come must
        // be taken by the client within the write-stall bound.
        if (!finishing_) {
          control_.timer->Schedule(this, absl::Now() + StallLimit(), [this] { CheckWriteStall(); });
        }
      }
      MaybeWrite();
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      // A message arrived: the idle deadline moves (not once the call is
      // finishing, when the timer holds its write-stall cancel instead).
      if (!finishing_) control_.timer->Postpone(this, IdleDeadline());
    }
    if (session == nullptr) {
      absl::StatusOr<std::unique_ptr<SpeechSession>> created =
          StartStreamingSession(request_, *front_end_, defaults_, [this] { MaybeWrite(); });
      if (!created.ok()) {
        Fail(ToGrpcStatus(created.status()));
        return;
      }
      session = created->get();
      StreamResponse metadata;  // the call's first response
      absl::StatusOr<v1::TranslationMetadata> resolved =
          ResolveTranslation(request_.config(), *front_end_, model_name_);
      if (resolved.ok()) *metadata.mutable_metadata() = std::move(*resolved);  // validated above
      {
        absl::MutexLock lock(&mu_);
        session_ = std::move(*created);
        // First in line, past the pending bound (one message); counted in
        // outbox_bytes_ like every queued response.
        outbox_bytes_ += metadata.ByteSizeLong();
        outbox_.push_front(std::move(metadata));
      }
      MaybeWrite();
      // An OnCancel that ran before the session existed had nothing to stop.
      if (cancelled_.load()) session->Cancel(CancellationReason(*context_));
    } else {
      const auto received = std::chrono::steady_clock::now();
      absl::Status s = ContinueStreamingSession(request_, *session);
      if (!s.ok()) {
        Fail(ToGrpcStatus(s));
        return;
      }
      if (front_end_->metrics) {
        front_end_->metrics->ObserveChunkLatency(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - received).count());
      }
      StreamResponse progress;
      progress.mutable_progress()->set_processed_seconds(session->processed_seconds());
      progress.mutable_progress()->set_chunks_received(session->chunks_received());
      bool over = false;
      {
        absl::MutexLock lock(&mu_);
        if (!finishing_) over = !Enqueue(std::move(progress));
      }
      if (over) {
        FailNotReading();
        return;
      }
      MaybeWrite();
    }
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    EnterReaction();
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) finishing_ = true;  // the client is gone; OnDone follows
    }
    MaybeWrite();
  }

  void OnCancel() override {
    EnterReaction();
    cancelled_.store(true);
    // OnDone (the only place the session is destroyed) runs after OnCancel.
    if (SpeechSession* session = CurrentSession()) session->Cancel(CancellationReason(*context_));
  }

  void OnDone() override {
    EnterReaction();
    control_.timer->Cancel(this);  // waits for a timer action in progress
    if (admitted_) admitted_->Release();  // waits for an End() in progress
    std::unique_ptr<SpeechSession> session;
    CallReport report;
    grpc::Status sent;
    {
      absl::MutexLock lock(&mu_);
      session = std::move(session_);
      report = std::move(report_);
      sent = final_status_;
    }
    // Every reaction is over: the reader's state is stable.
    if (reporter_) {
      ReportSpeechCall(*reporter_, *context_, sent, session.get(), start_, std::move(report));
    }
    // Outside mu_: the destructor detaches the session from the engine's
    // streams and waits for engine callbacks still running, which take mu_
    // (MaybeWrite) and now find no session.
    session.reset();
    delete this;
  }

 private:
  absl::Duration StallLimit() const { return absl::Seconds(control_.limits.write_stall_seconds); }

  // On the timer's thread, after the half-close: a write the client has not
  // taken within the stall bound ends the call (the client no longer reads);
  // else checks again when that could first be the case.
  void CheckWriteStall() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      const absl::Time now = absl::Now();
      const absl::Time due = writing_ ? write_started_ + StallLimit() : now + StallLimit();
      if (!writing_ || now < due) {
        control_.timer->Schedule(this, due, [this] { CheckWriteStall(); });
        return;
      }
    }
    FailNotReading();
  }

  absl::Time IdleDeadline() const {
    return absl::Now() + absl::Seconds(control_.limits.stream_idle_timeout_seconds);
  }

  // On the timer's thread, once nothing arrived for the idle timeout.
  void IdleTimeout() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (reads_done_ || finishing_) return;
    }
    if (control_.metrics) control_.metrics->CountCallLimited("idle_timeout");
    const double timeout = control_.limits.stream_idle_timeout_seconds;
    Fail(grpc::Status(
        grpc::StatusCode::OUT_OF_RANGE,
        absl::StrCat("stream idle: no message received for ", timeout,
                     " s (--stream_idle_timeout_seconds); send audio at least every ", timeout,
                     " s (silence counts), or half-close the stream to get its final results")));
  }

  // Queues a response for the client; false (nothing queued) when the
  // pending bound would be exceeded.
  bool Enqueue(StreamResponse response) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const size_t bytes = response.ByteSizeLong();
    if (static_cast<int>(outbox_.size()) + 1 > control_.limits.max_pending_responses ||
        outbox_bytes_ + bytes > control_.limits.max_pending_response_bytes) {
      return false;
    }
    outbox_bytes_ += bytes;
    outbox_.push_back(std::move(response));
    return true;
  }

  // Ends a call whose client does not read: the pending bound was exceeded,
  // or (after the half-close) a write waited past the stall bound.
  void FailNotReading() ABSL_LOCKS_EXCLUDED(mu_) {
    if (control_.metrics) control_.metrics->CountCallLimited("not_reading");
    Fail(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("the client is not reading its responses: more than ",
                     control_.limits.max_pending_responses, " responses or ",
                     control_.limits.max_pending_response_bytes,
                     " bytes were waiting to be sent on this stream, or a response waited ",
                     control_.limits.write_stall_seconds,
                     " s (--stream_write_stall_seconds); read the response stream while "
                     "sending audio")));
  }

  // From the drain, on its thread: finishes the call with `status`. Leaves
  // the session alone (the reader's); OnDone releases it, which stops its
  // segments.
  void End(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    ended_.store(true);
    FinishOnce(status);
  }

  // The call's session, or null before config arrived. Cancel() and the
  // reader's calls run without mu_ (they may call back into MaybeWrite).
  SpeechSession* CurrentSession() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return session_.get();
  }

  // Finishes with an error; stops the session.
  void Fail(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    if (SpeechSession* session = CurrentSession()) session->Cancel();
    FinishOnce(status);
  }

  // Finishes the call with `status` (the first one asked for wins) and drops
  // the results not yet written. A write may still be in flight: the status
  // follows it, and if the client takes neither within the write-stall bound
  // the timer cancels the call.
  void FinishOnce(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      finishing_ = true;
      outbox_.clear();
      outbox_bytes_ = 0;
      finished_ = true;
      final_status_ = status;
      // Before Finish: OnDone, which cancels this, may follow Finish at once.
      control_.timer->Schedule(
          this, absl::Now() + absl::Seconds(control_.limits.write_stall_seconds),
          [this] { context_->TryCancel(); });
    }
    Finish(status);
  }

  void MaybeWrite() ABSL_LOCKS_EXCLUDED(mu_) {
    bool over = false;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (finishing_) {  // a failed write: the client is gone
        finished_ = true;
        final_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
        Finish(final_status_);
        return;
      }
      // Updates move to the outbox even while a write is in flight, so that
      // the pending bound sees them.
      if (session_) {
        for (SegmentUpdate& update : session_->TakeUpdates()) {
          RecordUpdate(update, start_, reporter_ && reporter_->wants_content(), &report_);
          StreamResponse response;
          *response.mutable_result() = ToWire(update);
          if (!Enqueue(std::move(response))) {
            over = true;
            break;
          }
        }
      }
      if (!over) {
        if (writing_) return;
        if (outbox_.empty()) {
          if (reads_done_ && session_ && session_->done()) {
            finished_ = true;
            final_status_ = ToGrpcStatus(session_->error());
            Finish(final_status_);
          }
          return;
        }
        response_ = std::move(outbox_.front());
        outbox_.pop_front();
        outbox_bytes_ -= response_.ByteSizeLong();
        writing_ = true;
        write_started_ = absl::Now();
        StartWrite(&response_);
        return;
      }
    }
    FailNotReading();
  }

  grpc::CallbackServerContext* const context_;
  const std::shared_ptr<const CallReporter> reporter_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::shared_ptr<OpenCalls::Entry> admitted_;  // null: refused (limit or draining)
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> ended_{false};
  std::shared_ptr<const SpeechFrontEnd> front_end_;  // set before the first read
  SpeechSessionOptions defaults_;
  const std::string model_name_;
  const CallControl control_;
  StreamRequest request_;
  absl::Mutex mu_;
  // Set by the reader on config, read by every reaction and by the engine
  // thread (MaybeWrite through the session's notify), released in OnDone.
  std::unique_ptr<SpeechSession> session_ ABSL_GUARDED_BY(mu_);
  // Responses not yet handed to gRPC; bounded by control_.limits.
  std::deque<StreamResponse> outbox_ ABSL_GUARDED_BY(mu_);
  size_t outbox_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  StreamResponse response_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time write_started_ ABSL_GUARDED_BY(mu_);  // of the write in flight
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);  // what Finish() sent
  CallReport report_ ABSL_GUARDED_BY(mu_);
};

// Runs a session over the whole request; finishes when every segment is final.
// Owns itself: OnDone, which follows Finish, releases the session and deletes
// the reactor, so Finish is the last thing any thread does with `this`.
class TranslateReactor final : public OrderedReactor<grpc::ServerUnaryReactor> {
 public:
  // `admitted` holds the call's --max_streams slot until OnDone.
  TranslateReactor(grpc::CallbackServerContext* context, v1::TranslateResponse* response,
                   std::shared_ptr<const CallReporter> reporter,
                   std::shared_ptr<OpenCalls::Entry> admitted)
      : context_(context),
        response_(response),
        reporter_(std::move(reporter)),
        admitted_(std::move(admitted)) {}

  void Start(std::shared_ptr<const SpeechFrontEnd> front_end, const v1::TranslateRequest& request,
             const SpeechSessionOptions& defaults, const std::string& model_name) {
    front_end_ = std::move(front_end);
    {
      absl::MutexLock lock(&mu_);
      report_ = TranslateReport(*context_);
    }
    absl::StatusOr<SpeechSessionOptions> options =
        ToSessionOptions(request.config(), *front_end_, defaults);
    if (!options.ok()) return Done(ToGrpcStatus(options.status()));
    absl::StatusOr<v1::TranslationMetadata> metadata =
        ResolveTranslation(request.config(), *front_end_, model_name);
    if (!metadata.ok()) return Done(ToGrpcStatus(metadata.status()));
    {
      absl::MutexLock lock(&mu_);  // Poll writes the response under mu_ too
      *response_->mutable_metadata() = std::move(*metadata);
    }
    auto session = SpeechSession::Create(*front_end_, *options, [this] { Poll(); });
    if (!session.ok()) return Done(ToGrpcStatus(session.status()));
    SpeechSession* started = session->get();
    {
      absl::MutexLock lock(&mu_);
      session_ = std::move(*session);
    }
    // Nothing finishes the call while starting_, so the session stays.
    absl::Status s = started->AcceptAudio(request.audio());
    if (s.ok()) s = started->FinishAudio();
    if (!s.ok()) return Done(ToGrpcStatus(s));
    {
      absl::MutexLock lock(&mu_);
      starting_ = false;
    }
    Poll();
  }

  void OnCancel() override {
    EnterReaction();
    absl::MutexLock lock(&mu_);
    if (session_) session_->Cancel(CancellationReason(*context_));
  }

  void OnDone() override {
    EnterReaction();
    admitted_->Release();
    std::unique_ptr<SpeechSession> session;
    CallReport report;
    grpc::Status sent;
    {
      absl::MutexLock lock(&mu_);
      session = std::move(session_);
      report = std::move(report_);
      sent = sent_;
    }
    if (reporter_) {
      ReportSpeechCall(*reporter_, *context_, sent, session.get(), start_, std::move(report));
    }
    session.reset();  // waits for engine callbacks still running into the session
    delete this;
  }

 private:
  void Poll() ABSL_LOCKS_EXCLUDED(mu_) {
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (session_ == nullptr || starting_ || finished_) return;
      for (const SegmentUpdate& u : session_->TakeUpdates()) {
        RecordUpdate(u, start_, reporter_ && reporter_->wants_content(), &report_);
        if (u.is_final) *response_->add_results() = ToWire(u);
      }
      if (!session_->done()) return;
      finished_ = true;
      status = ToGrpcStatus(session_->error());
      // Segments decode concurrently: their finals arrive in any order.
      std::stable_sort(response_->mutable_results()->begin(), response_->mutable_results()->end(),
                       [](const v1::SegmentResult& a, const v1::SegmentResult& b) {
                         return a.segment_index() < b.segment_index();
                       });
      sent_ = status;
    }
    Finish(status);  // OnDone may follow at once: nothing touches `this` after
  }

  void Done(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      sent_ = status;
      if (session_) session_->Cancel();
    }
    Finish(status);
  }

  grpc::CallbackServerContext* const context_;
  v1::TranslateResponse* const response_;
  const std::shared_ptr<const CallReporter> reporter_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  const std::shared_ptr<OpenCalls::Entry> admitted_;
  std::shared_ptr<const SpeechFrontEnd> front_end_;
  absl::Mutex mu_;
  std::unique_ptr<SpeechSession> session_ ABSL_GUARDED_BY(mu_);
  bool starting_ ABSL_GUARDED_BY(mu_) = true;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status sent_ ABSL_GUARDED_BY(mu_);  // what Finish() sent
  CallReport report_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerBidiReactor<v1::StreamingTranslateRequest, v1::StreamingTranslateResponse>*
SpeechTranslationService::StreamingTranslate(grpc::CallbackServerContext* context) {
  return new StreamingTranslateReactor(context, front_end_->ForCall(), defaults_, model_name_,
                                       control_, reporter_);
}

grpc::ServerUnaryReactor* SpeechTranslationService::Translate(grpc::CallbackServerContext* context,
                                                              const v1::TranslateRequest* request,
                                                              v1::TranslateResponse* response) {
  // A call refused here has no reactor of ours: it is reported as refused.
  auto refuse = [&](const grpc::Status& status) {
    if (reporter_) {
      CallReport report = TranslateReport(*context);
      report.code = status.error_code();
      report.error = status.error_message();
      report.total_seconds = 0;
      reporter_->CallEnded(std::move(report));
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(status);
    return reactor;
  };
  absl::StatusOr<std::shared_ptr<const SpeechFrontEnd>> acquired = front_end_->ForCall();
  if (!acquired.ok()) return refuse(ToGrpcStatus(acquired.status()));
  std::shared_ptr<const SpeechFrontEnd> front_end = std::move(*acquired);
  if (front_end->engine->draining()) {  // a new call: refused (see the header)
    return refuse(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                               "server is draining; retry on another replica"));
  }
  // Translate's session and its segments are in the engine, which the drain
  // stops: the drain has nothing to end itself.
  absl::StatusOr<std::shared_ptr<OpenCalls::Entry>> admitted =
      control_.calls->Admit([](const absl::Status&) {});
  if (!admitted.ok()) return refuse(ToGrpcStatus(admitted.status()));
  auto* translate = new TranslateReactor(context, response, reporter_, std::move(*admitted));
  translate->Start(std::move(front_end), *request, defaults_, model_name_);
  return translate;
}

}  // namespace mtla
