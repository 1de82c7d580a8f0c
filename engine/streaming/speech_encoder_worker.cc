#include "engine/streaming/speech_encoder_worker.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace mtla {
namespace {

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

SpeechEncoderWorker::SpeechEncoderWorker(const SpeechModel* model, EncoderWorkerOptions options,
                                         std::shared_ptr<ServingMetrics> metrics,
                                         std::shared_ptr<Engine> host)
    : model_(model),
      options_(options),
      metrics_(std::move(metrics)),
      host_(std::move(host)),
      input_dim_(model->config.encoder.input_dim) {
  thread_ = std::thread([this] { Loop(); });
}

SpeechEncoderWorker::~SpeechEncoderWorker() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

absl::Status SpeechEncoderWorker::Enqueue(EncodeJob job) {
  if (input_dim_ <= 0 || job.features.size() % input_dim_ != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "speech features of ", job.features.size(), " values are not whole frames of ", input_dim_));
  }
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::UnavailableError("server shutting down");
  if (queue_.size() >= options_.max_queued_segments) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the speech encoder has ", queue_.size(), " segments waiting (the limit); try again later"));
  }
  queue_.push_back({std::move(job), Clock::now()});
  return absl::OkStatus();
}

void SpeechEncoderWorker::Forget(const void* owner) {
  std::vector<Waiting> dropped;  // destroyed outside mu_: callbacks own captures
  absl::MutexLock lock(&mu_);
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->job.owner == owner) {
      dropped.push_back(std::move(*it));
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  auto idle = [this, owner]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return std::find(in_flight_.begin(), in_flight_.end(), owner) == in_flight_.end();
  };
  mu_.Await(absl::Condition(&idle));
}

size_t SpeechEncoderWorker::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

std::vector<SpeechEncoderWorker::Waiting> SpeechEncoderWorker::TakeBatch() {
  std::vector<Waiting> batch;
  int64_t frames = 0;
  for (bool interim : {false, true}) {
    for (auto it = queue_.begin(); it != queue_.end();) {
      const int64_t f = static_cast<int64_t>(it->job.features.size()) / input_dim_;
      if (it->job.interim != interim || (!batch.empty() && frames + f > options_.max_batch_frames)) {
        ++it;
        continue;
      }
      frames += f;
      in_flight_.push_back(it->job.owner);
      batch.push_back(std::move(*it));
      it = queue_.erase(it);
    }
  }
  return batch;
}

void SpeechEncoderWorker::Loop() {
  while (true) {
    std::vector<Waiting> batch;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stop_) break;
      batch = TakeBatch();
    }
    RunBatch(std::move(batch));
  }
  std::deque<Waiting> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(queue_);
    for (const Waiting& w : left) in_flight_.push_back(w.job.owner);
  }
  for (Waiting& w : left) Complete(w, absl::UnavailableError("server shutting down"));
}

void SpeechEncoderWorker::RunBatch(std::vector<Waiting> batch) {
  const Clock::time_point start = Clock::now();
  std::vector<size_t> encoded;  // indices into batch
  std::vector<SpeechEncoder::Input> inputs;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].job.cancelled && batch[i].job.cancelled()) continue;
    encoded.push_back(i);
    inputs.push_back({batch[i].job.features.data(),
                      static_cast<int64_t>(batch[i].job.features.size()) / input_dim_});
  }
  std::vector<absl::StatusOr<EncodedSegment>> encoded_results = Encode(inputs);
  std::vector<absl::StatusOr<EncodedSegment>> results(
      batch.size(), absl::CancelledError("the segment was cancelled before it was encoded"));
  for (size_t j = 0; j < encoded.size(); ++j) results[encoded[j]] = std::move(encoded_results[j]);
  const double seconds = Seconds(Clock::now() - start);
  if (metrics_ && !encoded.empty()) {
    metrics_->ObserveEncoderBatch(static_cast<int>(encoded.size()), seconds);
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    if (results[i].ok()) {
      results[i]->queue_seconds = Seconds(start - batch[i].enqueued);
      results[i]->encode_seconds = seconds;
      results[i]->batch_size = static_cast<int>(encoded.size());
      if (metrics_) metrics_->ObserveEncoderQueueTime(results[i]->queue_seconds);
    }
    Complete(batch[i], std::move(results[i]));
  }
}

std::vector<absl::StatusOr<EncodedSegment>> SpeechEncoderWorker::Encode(
    const std::vector<SpeechEncoder::Input>& inputs) {
  std::vector<absl::StatusOr<EncodedSegment>> results(inputs.size());
  if (inputs.empty()) return results;
  SpeechEncoder::BatchRun run(&*model_->encoder, inputs, &scratch_);
  // The last stage: the encoder's outputs through the projector.
  auto project = [&] {
    std::vector<absl::StatusOr<std::vector<float>>> outputs = run.TakeResults();
    for (size_t j = 0; j < outputs.size(); ++j) {
      if (!outputs[j].ok()) {
        results[j] = outputs[j].status();
        continue;
      }
      const int64_t frames = static_cast<int64_t>(outputs[j]->size()) / model_->config.encoder_dim;
      absl::StatusOr<std::vector<float>> prefix = model_->Project(outputs[j]->data(), frames);
      if (!prefix.ok()) {
        results[j] = prefix.status();
        continue;
      }
      EncodedSegment segment;
      segment.prefix = std::move(*prefix);
      segment.prefix_rows = model_->PrefixRows(frames);
      results[j] = std::move(segment);
    }
  };
  if (host_ == nullptr) {
    while (run.RunStage()) {
    }
    project();
    return results;
  }
  absl::Notification finished;
  absl::Status stopped;  // set by the host's stop call, read after `finished`
  const bool posted = host_->PostSideWork([&](bool stop) {
    if (stop) {
      stopped = absl::UnavailableError("server shutting down");
    } else if (run.RunStage()) {
      return true;
    } else {
      project();
    }
    finished.Notify();
    return false;
  });
  if (!posted) stopped = absl::UnavailableError("server shutting down");
  if (posted) finished.WaitForNotification();
  if (!stopped.ok()) {
    for (auto& r : results) r = stopped;
  }
  return results;
}

void SpeechEncoderWorker::Complete(Waiting& waiting, absl::StatusOr<EncodedSegment> result) {
  if (waiting.job.done) waiting.job.done(std::move(result));
  waiting.job.done = nullptr;  // its captures go before the owner is released
  waiting.job.cancelled = nullptr;
  absl::MutexLock lock(&mu_);
  in_flight_.erase(std::find(in_flight_.begin(), in_flight_.end(), waiting.job.owner));
}

}  // namespace mtla
