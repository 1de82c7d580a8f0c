#include "server/text_generation_service.h"

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

// Writes the request's events in order, one write in flight at a time. The
// engine's RequestStream coalesces what the reactor has not taken yet into
// one pending event, so what waits for a slow client is at most the request's
// max_new_tokens token ids. A write (or the final status) the client has not
// taken for limits.write_stall_seconds cancels the call.
class GenerateReactor final : public OrderedReactor<grpc::ServerWriteReactor<v1::GenerateResponse>> {
 public:
  GenerateReactor(grpc::CallbackServerContext* context, std::shared_ptr<Engine> engine,
                  const v1::GenerateRequest& wire, const CallControl& control)
      : context_(context), control_(control) {
    // The request is in the engine, whose Stop ends it after the drain's
    // grace period: the drain has nothing to end itself.
    absl::StatusOr<std::shared_ptr<OpenCalls::Entry>> admitted =
        control_.calls->Admit([](const absl::Status&) {});
    if (!admitted.ok()) {
      Finish(ToGrpcStatus(admitted.status()));
      return;
    }
    admitted_ = std::move(*admitted);
    if (engine == nullptr) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "model is loading"));
      return;
    }
    absl::StatusOr<GenerationRequest> request = ToGenerationRequest(wire);
    if (!request.ok()) {
      engine->CountRejected(request.status());
      Finish(ToGrpcStatus(request.status()));
      return;
    }
    absl::StatusOr<std::shared_ptr<RequestStream>> stream = engine->Submit(std::move(*request));
    if (!stream.ok()) {
      Finish(ToGrpcStatus(stream.status()));
      return;
    }
    stream_ = std::move(*stream);
    {
      absl::MutexLock lock(&mu_);
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
    if (stream_) stream_->Cancel();
  }

  void OnDone() override {
    EnterReaction();
    control_.timer->Cancel(this);  // waits for a check in progress
    if (admitted_) admitted_->Release();
    if (stream_) {
      stream_->Cancel();  // no-op when already finished
      stream_->SetListener(nullptr);
    }
    delete this;
  }

 private:
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
    if (write_failed_) {  // nobody reads any more: wait for the end, then Finish
      if (!event.finished) return;
      finished_ = true;
      op_started_ = absl::Now();
      Finish(event.status.ok() ? grpc::Status(grpc::StatusCode::CANCELLED, "write failed")
                               : ToGrpcStatus(event.status));
      return;
    }
    if (event.finished && !event.status.ok()) {
      finished_ = true;
      op_started_ = absl::Now();
      Finish(ToGrpcStatus(event.status));
      return;
    }
    response_.Clear();
    for (int32_t id : event.tokens) response_.add_token_ids(id);
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
      op_started_ = absl::Now();
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
      return;
    }
    writing_ = true;
    op_started_ = absl::Now();
    StartWrite(&response_);
  }

  grpc::CallbackServerContext* const context_;
  const CallControl control_;
  std::shared_ptr<OpenCalls::Entry> admitted_;  // null: refused (limit or draining)
  std::shared_ptr<RequestStream> stream_;
  absl::Mutex mu_;
  // When the write in flight, or the final status, was handed to gRPC.
  absl::Time op_started_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  v1::GenerateResponse response_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& wire) {
  GenerationRequest request;
  if (!wire.prompt().empty() && wire.prompt_token_ids().empty()) {
    return absl::InvalidArgumentError(
        "prompt: this model has no tokenizer; send prompt_token_ids");
  }
  request.prompt.assign(wire.prompt_token_ids().begin(), wire.prompt_token_ids().end());
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

grpc::ServerWriteReactor<v1::GenerateResponse>* TextGenerationService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  return new GenerateReactor(context, engine_->Get(), *request, control_);
}

}  // namespace mtla
