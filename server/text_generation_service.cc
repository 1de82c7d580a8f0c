#include "server/text_generation_service.h"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/grpc_reaction_order.h"
#include "server/status_conversion.h"

namespace mtla {
namespace {

v1::FinishReason ToWire(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case FinishReason::kEos: return v1::FINISH_REASON_EOS;
    case FinishReason::kNone: break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

// Writes the request's events in order, one write in flight at a time;
// reports the call (CallReporter) from OnDone. The engine's RequestStream
// coalesces what the reactor has not taken yet into one pending event, so
// what waits for a slow client is at most the request's max_new_tokens token
// ids. A write (or the final status) the client has not taken for
// limits.write_stall_seconds cancels the call.
class GenerateReactor final : public OrderedReactor<grpc::ServerWriteReactor<v1::GenerateResponse>> {
 public:
  GenerateReactor(grpc::CallbackServerContext* context, std::shared_ptr<Engine> engine,
                  std::shared_ptr<const TextFrontEnd> text, const v1::GenerateRequest& wire,
                  const CallControl& control, std::shared_ptr<const CallReporter> reporter)
      : context_(context),
        control_(control),
        reporter_(std::move(reporter)),
        text_(std::move(text)) {
    {
      absl::MutexLock lock(&mu_);
      report_.request_id = CallRequestId(wire.request_id(), *context_);
      report_.method = "mtla.v1.TextGeneration/Generate";
      report_.prompt_tokens = wire.prompt_token_ids_size();
      report_.generated_tokens = 0;
      if (reporter_ && reporter_->wants_content()) {
        report_.prompt_token_ids.assign(wire.prompt_token_ids().begin(),
                                        wire.prompt_token_ids().end());
      }
    }
    // The request is in the engine, whose Stop ends it after the drain's
    // grace period: the drain has nothing to end itself.
    absl::StatusOr<std::shared_ptr<OpenCalls::Entry>> admitted =
        control_.calls->Admit([](const absl::Status&) {});
    if (!admitted.ok()) {
      FinishCall(ToGrpcStatus(admitted.status()));
      return;
    }
    admitted_ = std::move(*admitted);
    if (engine == nullptr) {
      FinishCall(grpc::Status(grpc::StatusCode::UNAVAILABLE, "model is loading"));
      return;
    }
    absl::StatusOr<GenerationRequest> request = ToGenerationRequest(wire, text_.get());
    if (!request.ok()) {
      FinishCall(ToGrpcStatus(request.status()));
      return;
    }
    absl::StatusOr<std::shared_ptr<RequestStream>> stream = engine->Submit(std::move(*request));
    if (!stream.ok()) {
      FinishCall(ToGrpcStatus(stream.status()));
      return;
    }
    stream_ = std::move(*stream);
    {
      absl::MutexLock lock(&mu_);
      if (text_ != nullptr && text_->tokenizer != nullptr) {
        detokenizer_.emplace(text_->tokenizer.get());
      }
      control_.timer->Schedule(this, absl::Now() + StallLimit(), [this] { CheckWriteStall(); });
    }
    stream_->SetListener([this] { MaybeWrite(); });
    MaybeWrite();
  }

  void OnWriteDone(bool ok) override {
    EnterReaction();
    // !ok: the client went away. OnDone only follows Finish(), so cancel the
    // request and still Finish once the engine has ended it (MaybeWrite).
    if (!ok && stream_) stream_->Cancel();
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) write_failed_ = true;
    }
    MaybeWrite();
  }

  void OnCancel() override {
    EnterReaction();
    if (stream_) stream_->Cancel(CancellationReason(*context_));
  }

  void OnDone() override {
    EnterReaction();
    control_.timer->Cancel(this);  // waits for a check in progress
    if (admitted_) admitted_->Release();
    if (stream_) {
      stream_->Cancel();  // no-op when already finished
      stream_->SetListener(nullptr);
    }
    if (reporter_) {
      CallReport report;
      grpc::Status sent;
      {
        absl::MutexLock lock(&mu_);
        report = std::move(report_);
        sent = sent_;
      }
      report.code = CallOutcome(*context_, sent);
      if (report.code != sent.error_code()) {
        report.error = std::string(CancellationReason(*context_).message());
      }
      report.total_seconds = SecondsSince(start_);
      reporter_->CallEnded(std::move(report));
    }
    delete this;
  }

 private:
  // Finish(), remembering what was sent for the report. Called once.
  void FinishCall(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    FinishLocked(status);
  }

  absl::Duration StallLimit() const { return absl::Seconds(control_.limits.write_stall_seconds); }

  // On the timer's thread: cancels the call when its write in flight (or its
  // final status) has waited longer than the stall limit; else checks again
  // when that could first be the case.
  void CheckWriteStall() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      const absl::Time now = absl::Now();
      const bool waiting_on_client = writing_ || finished_;
      const absl::Time due = waiting_on_client ? op_started_ + StallLimit() : now + StallLimit();
      if (!waiting_on_client || now < due) {
        control_.timer->Schedule(this, due, [this] { CheckWriteStall(); });
        return;
      }
    }
    if (control_.metrics) control_.metrics->CountCallLimited("not_reading");
    if (stream_) stream_->Cancel();
    context_->TryCancel();
  }

  void MaybeWrite() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (writing_ || finished_) return;
    GenerationEvent event;
    if (!stream_->Pop(&event)) return;
    Record(event);
    if (write_failed_) {  // nobody reads any more: wait for the end, then Finish
      if (!event.finished) return;
      finished_ = true;
      op_started_ = absl::Now();
      FinishLocked(event.status.ok() ? grpc::Status(grpc::StatusCode::CANCELLED, "write failed")
                                     : ToGrpcStatus(event.status));
      return;
    }
    if (event.finished && !event.status.ok()) {
      finished_ = true;
      op_started_ = absl::Now();
      FinishLocked(ToGrpcStatus(event.status));
      return;
    }
    response_.Clear();
    for (int32_t id : event.tokens) response_.add_token_ids(id);
    if (detokenizer_.has_value()) {
      std::string text = detokenizer_->Add(event.tokens);
      if (event.finished) text += detokenizer_->Flush();
      response_.set_text(std::move(text));
    }
    if (event.finished) {
      finished_ = true;
      response_.set_finish_reason(ToWire(event.finish_reason));
      response_.mutable_usage()->set_prompt_tokens(event.prompt_tokens);
      response_.mutable_usage()->set_generated_tokens(event.generated_tokens);
      v1::Timing* timing = response_.mutable_timing();
      timing->set_queue_seconds(event.timing.queue_seconds);
      timing->set_time_to_first_token_seconds(event.timing.time_to_first_token_seconds);
      timing->set_total_seconds(event.timing.total_seconds);
      timing->set_num_preemptions(event.timing.num_preemptions);
      sent_ = grpc::Status::OK;
      report_.error.clear();
      op_started_ = absl::Now();
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
      return;
    }
    writing_ = true;
    op_started_ = absl::Now();
    StartWrite(&response_);
  }

  // The engine's output, into the call's report.
  void Record(const GenerationEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    report_.generated_tokens += static_cast<int64_t>(event.tokens.size());
    if (reporter_ && reporter_->wants_content()) {
      report_.output_token_ids.insert(report_.output_token_ids.end(), event.tokens.begin(),
                                      event.tokens.end());
    }
    if (!event.finished || !event.status.ok()) return;
    report_.finished_reason = FinishReasonName(event.finish_reason);
    report_.prompt_tokens = event.prompt_tokens;
    report_.generated_tokens = event.generated_tokens;
    report_.queue_seconds = event.timing.queue_seconds;
    report_.ttft_seconds = event.timing.time_to_first_token_seconds;
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    sent_ = status;
    report_.error = status.error_message();
    Finish(status);
  }

  grpc::CallbackServerContext* const context_;
  const CallControl control_;
  const std::shared_ptr<const CallReporter> reporter_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  const std::shared_ptr<const TextFrontEnd> text_;  // keeps the tokenizer alive
  std::shared_ptr<OpenCalls::Entry> admitted_;  // null: refused (limit or draining)
  std::shared_ptr<RequestStream> stream_;
  absl::Mutex mu_;
  // Set when the model has a tokenizer: the call's text so far.
  std::optional<IncrementalDetokenizer> detokenizer_ ABSL_GUARDED_BY(mu_);
  CallReport report_ ABSL_GUARDED_BY(mu_);
  grpc::Status sent_ ABSL_GUARDED_BY(mu_);  // what Finish() sent
  // When the write in flight, or the final status, was handed to gRPC.
  absl::Time op_started_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  v1::GenerateResponse response_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& wire,
                                                      const TextFrontEnd* text) {
  GenerationRequest request;
  if (!wire.prompt().empty()) {
    if (!wire.prompt_token_ids().empty()) {
      return absl::InvalidArgumentError(
          "prompt: set either prompt or prompt_token_ids, not both");
    }
    if (text == nullptr || text->tokenizer == nullptr) {
      return absl::InvalidArgumentError(
          "prompt: this model has no tokenizer; send prompt_token_ids");
    }
    absl::StatusOr<std::vector<int32_t>> ids = text->tokenizer->Encode(wire.prompt());
    if (!ids.ok()) return absl::InvalidArgumentError(absl::StrCat("prompt: ", ids.status().message()));
    if (text->add_bos_token) request.prompt.push_back(text->bos_token_id);
    request.prompt.insert(request.prompt.end(), ids->begin(), ids->end());
  } else {
    request.prompt.assign(wire.prompt_token_ids().begin(), wire.prompt_token_ids().end());
  }
  SamplingParams& p = request.sampling;
  p.max_new_tokens = wire.max_new_tokens();  // checked by SamplingParams::Validate
  p.temperature = wire.sampling().temperature();
  p.top_k = wire.sampling().top_k();
  p.top_p = wire.sampling().top_p() == 0.0f ? 1.0f : wire.sampling().top_p();
  if (wire.sampling().has_seed()) p.seed = wire.sampling().seed();
  p.stop_token_ids.assign(wire.stop_token_ids().begin(), wire.stop_token_ids().end());
  p.ignore_eos = wire.ignore_eos();
  if (wire.beam_size() < 0 || wire.beam_size() > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("beam_size must be in [0, 16], got ", wire.beam_size()));
  }
  if (wire.beam_size() > 0) {
    request.use_beam_search = true;
    request.beam_size = wire.beam_size();
  }
  return request;
}

absl::StatusOr<v1::TokenizeResponse> TokenizeText(const TextFrontEnd* text,
                                                  const v1::TokenizeRequest& request) {
  if (text == nullptr || text->tokenizer == nullptr) {
    return absl::UnimplementedError("Tokenize: the loaded model has no text tokenizer");
  }
  absl::StatusOr<std::vector<int32_t>> ids = text->tokenizer->Encode(request.text());
  if (!ids.ok()) return absl::InvalidArgumentError(absl::StrCat("text: ", ids.status().message()));
  v1::TokenizeResponse response;
  if (request.add_bos() && text->bos_token_id >= 0) response.add_token_ids(text->bos_token_id);
  for (int32_t id : *ids) response.add_token_ids(id);
  if (request.return_pieces()) {
    for (int32_t id : response.token_ids()) {
      absl::StatusOr<SentencePieceTokenizer::Piece> piece = text->tokenizer->GetPiece(id);
      if (!piece.ok()) return piece.status();
      response.add_pieces(std::move(piece->text));
    }
  }
  return response;
}

absl::StatusOr<v1::DetokenizeResponse> DetokenizeIds(const TextFrontEnd* text,
                                                     const v1::DetokenizeRequest& request) {
  if (text == nullptr || text->tokenizer == nullptr) {
    return absl::UnimplementedError("Detokenize: the loaded model has no text tokenizer");
  }
  const int vocab = text->tokenizer->vocab_size();
  for (int i = 0; i < request.token_ids_size(); ++i) {
    const int32_t id = request.token_ids(i);
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("token_ids[", i, "]: ", id,
                                                     " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  absl::StatusOr<std::string> decoded = text->tokenizer->DecodeIds(request.token_ids());
  if (!decoded.ok()) return decoded.status();
  v1::DetokenizeResponse response;
  response.set_text(*std::move(decoded));
  return response;
}

grpc::ServerWriteReactor<v1::GenerateResponse>* TextGenerationService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  // The front end is published before the engine: seeing the engine implies it.
  std::shared_ptr<Engine> engine = engine_->Get();
  return new GenerateReactor(context, std::move(engine), text_->Get(), *request, control_,
                             reporter_);
}

grpc::ServerUnaryReactor* TextGenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                          const v1::TokenizeRequest* request,
                                                          v1::TokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<v1::TokenizeResponse> result = absl::UnavailableError("model is loading");
  if (engine_->Get() != nullptr) result = TokenizeText(text_->Get().get(), *request);
  if (result.ok()) *response = *std::move(result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

grpc::ServerUnaryReactor* TextGenerationService::Detokenize(grpc::CallbackServerContext* context,
                                                            const v1::DetokenizeRequest* request,
                                                            v1::DetokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<v1::DetokenizeResponse> result = absl::UnavailableError("model is loading");
  if (engine_->Get() != nullptr) result = DetokenizeIds(text_->Get().get(), *request);
  if (result.ok()) *response = *std::move(result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

}  // namespace mtla
