#include "tools/bench/speech_scenario.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace mtla::bench {
namespace {

using Request = mtla::v1::StreamingTranslateRequest;
using Response = mtla::v1::StreamingTranslateResponse;

// One stream. Writes (config, then chunks, then half-close) are started from
// OnWriteDone or from the timer thread, one in flight at a time; a hold keeps
// gRPC from calling OnDone while a write may still be started from outside a
// reaction, and is removed once writing has stopped for good (all chunks
// written, a write failed, the stream ended or Cancel) and no write is in
// flight. The object lives until OnDone and as long as the runner or a
// pending timer callback holds it.
class StreamCall final : public grpc::ClientBidiReactor<Request, Response>,
                         public Call,
                         public std::enable_shared_from_this<StreamCall> {
 public:
  StreamCall(int64_t index, Request config, const AudioClip& clip, const SpeechScenarioOptions& o,
             int chunk_ms, TimerThread* timer, Scenario::Done done)
      : config_(std::move(config)),
        clip_(clip),
        pace_(o.pace),
        chunk_s_(chunk_ms / 1e3),
        timer_(timer),
        done_(std::move(done)),
        sent_s_(clip.chunks.size(), 0.0) {
    record_.index = index;
    if (o.request_timeout_s > 0) {
      context_.set_deadline(
          std::chrono::system_clock::now() +
          std::chrono::microseconds(static_cast<int64_t>(o.request_timeout_s * 1e6)));
    }
  }

  void Go(mtla::v1::SpeechTranslation::Stub* stub) {
    self_ = shared_from_this();  // released in OnDone
    record_.start_s = SteadySeconds();
    stub->async()->StreamingTranslate(&context_, this);
    StartWrite(&config_);  // write_in_flight_ starts true
    StartRead(&response_);
    AddHold();
    StartCall();
  }

  void Cancel() override {
    context_.TryCancel();
    StopWriting();
  }

  void OnWriteDone(bool ok) override {
    enum class Next { kNothing, kWriteNow, kSchedule, kHalfClose } next = Next::kNothing;
    double due = 0;
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok) writes_stopped_ = true;
      if (!writes_stopped_) {
        if (audio_t0_ < 0) audio_t0_ = SteadySeconds();  // the config write completed
        if (next_chunk_ < clip_.chunks.size()) {
          due = audio_t0_ + static_cast<double>(next_chunk_) * chunk_s_;
          next = pace_ == Pace::kFast || due <= SteadySeconds() ? Next::kWriteNow : Next::kSchedule;
        } else {
          next = Next::kHalfClose;
          writes_stopped_ = true;
          hold_released_ = true;  // removed below, after the last operation starts
        }
      }
      release = TakeHoldLocked();
    }
    switch (next) {
      case Next::kWriteNow:
        WriteChunk();
        break;
      case Next::kSchedule:
        timer_->At(due, [self = shared_from_this()] { self->WriteChunk(); });
        break;
      case Next::kHalfClose:
        StartWritesDone();
        RemoveHold();
        break;
      case Next::kNothing:
        break;
    }
    if (release) RemoveHold();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the stream ended; OnDone follows once writing has stopped
      StopWriting();
      return;
    }
    const double now = SteadySeconds();
    {
      absl::MutexLock lock(&mu_);
      if (response_.has_progress()) {
        const size_t covered = std::min<size_t>(
            clip_.chunks.size(),
            static_cast<size_t>(std::max<int64_t>(0, response_.progress().chunks_received())));
        for (; acked_ < covered && acked_ < next_chunk_; ++acked_) {
          chunk_latency_.push_back(now - sent_s_[acked_]);
        }
      }
      if (response_.has_result()) {
        const mtla::v1::SegmentResult& r = response_.result();
        if (first_text_s_ < 0 && (!r.text().empty() || r.token_ids_size() > 0)) {
          first_text_s_ = now;
        }
        if (r.is_final()) {
          record_.output_tokens += r.token_ids_size();
          processing_s_ += r.timing().encode_seconds() + r.timing().decode_seconds();
        }
      }
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    std::shared_ptr<StreamCall> keep = std::move(self_);  // `this` lives to the end of OnDone
    RequestRecord record;
    {
      absl::MutexLock lock(&mu_);
      record = std::move(record_);
      record.end_s = SteadySeconds();
      record.code = status.error_code();
      if (!status.ok()) record.error_message = status.error_message();
      if (status.ok()) {
        record.series["e2e_s"] = {record.end_s - record.start_s};
        if (first_text_s_ >= 0) record.series["ttft_s"] = {first_text_s_ - record.start_s};
        record.series["rtf"] = {processing_s_ / clip_.duration_s};
        if (next_chunk_ == clip_.chunks.size()) {
          record.series["final_after_audio_s"] = {record.end_s - sent_s_.back()};
        }
        record.series["chunk_latency_s"] = std::move(chunk_latency_);
      }
    }
    Scenario::Done done = std::move(done_);
    done(std::move(record));
  }

 private:
  // Writes the next chunk unless writing has stopped (timer thread or a reaction).
  void WriteChunk() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (writes_stopped_) return;
      const size_t k = next_chunk_++;
      write_.set_audio(clip_.chunks[k]);
      sent_s_[k] = SteadySeconds();
      write_in_flight_ = true;
    }
    StartWrite(&write_);
  }

  void StopWriting() ABSL_LOCKS_EXCLUDED(mu_) {
    bool release;
    {
      absl::MutexLock lock(&mu_);
      writes_stopped_ = true;
      release = TakeHoldLocked();
    }
    if (release) RemoveHold();
  }

  // True exactly once: when writing has stopped and no write is in flight.
  bool TakeHoldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (hold_released_ || !writes_stopped_ || write_in_flight_) return false;
    hold_released_ = true;
    return true;
  }

  grpc::ClientContext context_;
  Request config_;
  const AudioClip& clip_;  // owned by the scenario's workload, which outlives the call
  const Pace pace_;
  const double chunk_s_;
  TimerThread* const timer_;  // non-null for Pace::kRealtime
  Scenario::Done done_;
  Response response_;  // reads: one at a time, reactions only

  absl::Mutex mu_;
  Request write_ ABSL_GUARDED_BY(mu_);  // until handed to StartWrite
  // Time chunk k was handed to gRPC.
  std::vector<double> sent_s_ ABSL_GUARDED_BY(mu_);
  size_t next_chunk_ ABSL_GUARDED_BY(mu_) = 0;
  // Chunks covered by a progress response so far.
  size_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  double audio_t0_ ABSL_GUARDED_BY(mu_) = -1;
  // The config write is in flight from Go on.
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = true;
  bool writes_stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  double first_text_s_ ABSL_GUARDED_BY(mu_) = -1;
  double processing_s_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<double> chunk_latency_ ABSL_GUARDED_BY(mu_);
  RequestRecord record_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<StreamCall> self_;
};

}  // namespace

absl::StatusOr<Pace> ParsePace(const std::string& name) {
  if (name == "realtime") return Pace::kRealtime;
  if (name == "fast") return Pace::kFast;
  return absl::InvalidArgumentError(
      absl::StrCat("--pace must be realtime or fast, got '", name, "'"));
}

std::string PaceName(Pace pace) { return pace == Pace::kRealtime ? "realtime" : "fast"; }

SpeechTranslationScenario::SpeechTranslationScenario(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels, SpeechWorkload workload,
    SpeechScenarioOptions options)
    : workload_(std::move(workload)), options_(options) {
  for (const auto& channel : channels) {
    stubs_.push_back(mtla::v1::SpeechTranslation::NewStub(channel));
  }
  if (options_.pace == Pace::kRealtime) timer_ = std::make_unique<TimerThread>();
}

SpeechTranslationScenario::~SpeechTranslationScenario() = default;

std::string SpeechTranslationScenario::Describe() const {
  return absl::StrCat(
      workload_.Describe(),
      options_.pace == Pace::kRealtime ? " at real-time pace" : " as fast as possible",
      options_.beam_size > 1 ? absl::StrCat("; beam ", options_.beam_size)
                             : std::string("; greedy"),
      options_.max_tokens > 0
          ? absl::StrCat(", at most ", options_.max_tokens, " tokens per segment")
          : std::string());
}

std::vector<MetricDef> SpeechTranslationScenario::Metrics() const {
  return {
      {"chunk_latency_s", "chunk_latency", "Chunk latency", "ms", 1e3},
      {"rtf", "rtf", "Real-time factor", "x", 1},
      {"ttft_s", "ttft", "Time to first text", "ms", 1e3},
      {"final_after_audio_s", "final_after_audio", "Final after audio end", "ms", 1e3},
      {"e2e_s", "e2e", "End-to-end latency", "ms", 1e3},
  };
}

mtla::v1::StreamingTranslateRequest SpeechTranslationScenario::MakeConfig(int64_t index) const {
  mtla::v1::StreamingTranslateRequest request;
  mtla::v1::TranslationConfig* config = request.mutable_config();
  config->set_encoding(mtla::v1::LINEAR_PCM16);
  config->set_sample_rate_hz(workload_.Get(index).sample_rate_hz);
  config->set_beam_size(options_.beam_size);
  config->set_max_tokens(options_.max_tokens);
  return request;
}

std::shared_ptr<Call> SpeechTranslationScenario::Start(int64_t index, Done done) {
  auto call = std::make_shared<StreamCall>(index, MakeConfig(index), workload_.Get(index), options_,
                                           workload_.chunk_ms(), timer_.get(), std::move(done));
  call->Go(stubs_[static_cast<size_t>(index) % stubs_.size()].get());
  return call;
}

nlohmann::json SpeechTranslationScenario::Config() const {
  nlohmann::json files = nlohmann::json::array();
  for (const AudioClip& c : workload_.clips()) {
    files.push_back({{"path", c.path},
                     {"sample_rate_hz", c.sample_rate_hz},
                     {"duration_seconds", c.duration_s},
                     {"chunks", c.chunks.size()}});
  }
  return {{"workload", workload_.Describe()},
          {"wav", files},
          {"chunk_ms", workload_.chunk_ms()},
          {"pace", PaceName(options_.pace)},
          {"beam_size", options_.beam_size},
          {"max_tokens", options_.max_tokens},
          {"request_timeout_seconds", options_.request_timeout_s}};
}

}  // namespace mtla::bench
