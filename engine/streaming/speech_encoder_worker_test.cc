// The speech encoder worker on a small random encoder (no host engine: it
// encodes on its own thread): batching of what waits, finals before
// interims, results equal to encoding alone, Forget, cancellation, the queue
// bound and shutdown. A first job whose `cancelled` check blocks keeps the
// worker inside a batch while the test queues more.
#include "engine/streaming/speech_encoder_worker.h"

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/testing/random_speech_weights.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace mtla {
namespace {

SpeechModelConfig SmallConfig() {
  SpeechModelConfig c;
  c.has_encoder = true;
  c.encoder.input_dim = 10;
  c.encoder.conv_kernel_sizes = {5, 5};
  c.encoder.conv_channels = 12;
  c.encoder.embed_dim = 16;
  c.encoder.ffn_dim = 24;
  c.encoder.num_layers = 2;
  c.encoder.num_heads = 4;
  c.encoder.embed_scale = 4.0f;
  c.encoder_dim = 16;
  c.projector_ds_rate = 2;
  c.decoder_embed_dim = 8;
  return c;
}

std::vector<float> RandomFeatures(int64_t frames, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> f(frames * 10);
  for (float& v : f) v = normal(rng);
  return f;
}

double RelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (a[i] - b[i]) * static_cast<double>(a[i] - b[i]);
    norm += b[i] * static_cast<double>(b[i]);
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

// What the callbacks saw, in order.
class Results {
 public:
  std::function<void(absl::StatusOr<EncodedSegment>)> Callback(std::string name) {
    return [this, name](absl::StatusOr<EncodedSegment> r) {
      absl::MutexLock lock(&mu_);
      order_.push_back(name);
      results_.emplace(name, std::move(r));
    };
  }
  void WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return order_.size() >= n; };
    ASSERT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30)));
  }
  std::vector<std::string> order() {
    absl::MutexLock lock(&mu_);
    return order_;
  }
  absl::StatusOr<EncodedSegment> Get(const std::string& name) {
    absl::MutexLock lock(&mu_);
    auto it = results_.find(name);
    if (it == results_.end()) return absl::NotFoundError(name + " never completed");
    return it->second;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::StatusOr<EncodedSegment>> results_ ABSL_GUARDED_BY(mu_);
};

// Holds the worker inside the batch of the job it is attached to.
class Latch {
 public:
  // A `cancelled` check that waits for Open() (and cancels nothing).
  std::function<bool()> Blocker() {
    return [this] {
      absl::MutexLock lock(&mu_);
      entered_ = true;
      mu_.Await(absl::Condition(&open_));
      return false;
    };
  }
  void WaitEntered() {
    absl::MutexLock lock(&mu_);
    ASSERT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&entered_), absl::Seconds(30)));
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }

 private:
  absl::Mutex mu_;
  bool entered_ ABSL_GUARDED_BY(mu_) = false;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
};

class SpeechEncoderWorkerTest : public testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<SpeechModel> model = RandomSpeechFrontModel(SmallConfig(), 7);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::make_unique<SpeechModel>(std::move(*model));
    metrics_ = std::make_shared<ServingMetrics>("m");
  }
  std::unique_ptr<SpeechEncoderWorker> MakeWorker(EncoderWorkerOptions options = {}) {
    return std::make_unique<SpeechEncoderWorker>(model_.get(), options, metrics_,
                                                 /*host=*/nullptr);
  }
  EncodeJob Job(const void* owner, int64_t frames, uint64_t seed, bool interim,
                std::function<void(absl::StatusOr<EncodedSegment>)> done) {
    EncodeJob job;
    job.owner = owner;
    job.features = RandomFeatures(frames, seed);
    job.interim = interim;
    job.done = std::move(done);
    return job;
  }
  // The prefix of `frames` random frames (seed) encoded and projected alone.
  std::vector<float> Alone(int64_t frames, uint64_t seed) {
    const std::vector<float> f = RandomFeatures(frames, seed);
    absl::StatusOr<std::vector<float>> enc = model_->Encode(f.data(), frames);
    EXPECT_TRUE(enc.ok()) << enc.status();
    absl::StatusOr<std::vector<float>> prefix =
        model_->Project(enc->data(), static_cast<int64_t>(enc->size()) / 16);
    EXPECT_TRUE(prefix.ok()) << prefix.status();
    return *prefix;
  }
  // Queues a first job that holds the worker inside its batch until
  // latch_.Open().
  void EnqueueBlocking(SpeechEncoderWorker& worker, const void* owner,
                       std::function<void(absl::StatusOr<EncodedSegment>)> done,
                       int64_t frames = 40) {
    EncodeJob job = Job(owner, frames, 1, false, std::move(done));
    job.cancelled = latch_.Blocker();
    ASSERT_TRUE(worker.Enqueue(std::move(job)).ok());
    latch_.WaitEntered();
    ASSERT_EQ(worker.queued(), 0u);
  }

  std::unique_ptr<SpeechModel> model_;
  std::shared_ptr<ServingMetrics> metrics_;
  Latch latch_;
};

TEST_F(SpeechEncoderWorkerTest, BatchesWhatWaitsFinalsFirstAndEqualsEncodingAlone) {
  auto worker = MakeWorker();
  Results results;
  int owner = 0;
  EnqueueBlocking(*worker, &owner, results.Callback("a"));
  ASSERT_TRUE(worker->Enqueue(Job(&owner, 33, 2, /*interim=*/true, results.Callback("b"))).ok());
  ASSERT_TRUE(worker->Enqueue(Job(&owner, 57, 3, false, results.Callback("c"))).ok());
  ASSERT_TRUE(worker->Enqueue(Job(&owner, 12, 4, false, results.Callback("d"))).ok());
  latch_.Open();
  results.WaitFor(4);
  EXPECT_EQ(results.order(), (std::vector<std::string>{"a", "c", "d", "b"}));
  const std::map<std::string, std::pair<int64_t, uint64_t>> inputs = {
      {"a", {40, 1}}, {"b", {33, 2}}, {"c", {57, 3}}, {"d", {12, 4}}};
  for (const auto& [name, input] : inputs) {
    absl::StatusOr<EncodedSegment> r = results.Get(name);
    ASSERT_TRUE(r.ok()) << name << ": " << r.status();
    EXPECT_EQ(r->batch_size, name == "a" ? 1 : 3) << name;
    const std::vector<float> want = Alone(input.first, input.second);
    ASSERT_EQ(r->prefix.size(), want.size()) << name;
    EXPECT_EQ(r->prefix_rows * 8, static_cast<int64_t>(want.size())) << name;
    EXPECT_LE(RelDiff(r->prefix, want), 1e-5) << name;
    EXPECT_GE(r->queue_seconds, 0.0);
    EXPECT_GT(r->encode_seconds, 0.0);
  }
  const std::string text = prometheus::TextSerializer().Serialize(metrics_->registry()->Collect());
  EXPECT_NE(text.find("mtla_encoder_batch_size_count{model_name=\"m\"} 2"), std::string::npos)
      << text;
  EXPECT_NE(text.find("mtla_encoder_queue_time_seconds_count{model_name=\"m\"} 4"),
            std::string::npos);
}

TEST_F(SpeechEncoderWorkerTest, BatchStaysWithinTheFrameBudget) {
  auto worker = MakeWorker({.max_batch_frames = 100});
  Results results;
  int owner = 0;
  EnqueueBlocking(*worker, &owner, results.Callback("alone"), /*frames=*/150);
  for (int i = 0; i < 4; ++i) {  // 60 + 60 > 100: one per batch
    ASSERT_TRUE(worker->Enqueue(Job(&owner, 60, 10 + i, false, results.Callback(std::to_string(i))))
                    .ok());
  }
  latch_.Open();
  results.WaitFor(5);
  ASSERT_TRUE(results.Get("alone").ok());
  EXPECT_EQ(results.Get("alone")->batch_size, 1);  // over the budget on its own: still encoded
  for (int i = 0; i < 4; ++i) EXPECT_EQ(results.Get(std::to_string(i))->batch_size, 1);
}

TEST_F(SpeechEncoderWorkerTest, ForgetDropsWaitingJobsAndWaitsForTheRunningOne) {
  auto worker = MakeWorker();
  Results results;
  int gone = 0, other = 0;
  EnqueueBlocking(*worker, &gone, results.Callback("running"));
  ASSERT_TRUE(worker->Enqueue(Job(&gone, 40, 2, false, results.Callback("dropped"))).ok());
  ASSERT_TRUE(worker->Enqueue(Job(&other, 40, 3, false, results.Callback("other"))).ok());
  std::atomic<bool> forgotten{false};
  std::thread forget([&] {
    worker->Forget(&gone);
    forgotten = true;
  });
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(forgotten.load()) << "Forget returned while its job's batch was running";
  latch_.Open();
  forget.join();
  EXPECT_TRUE(results.Get("running").ok());  // its callback ran before Forget returned
  results.WaitFor(2);
  EXPECT_TRUE(results.Get("other").ok());
  worker.reset();
  EXPECT_EQ(results.order().size(), 2u);
  EXPECT_FALSE(results.Get("dropped").ok()) << "a forgotten job's callback ran";
}

TEST_F(SpeechEncoderWorkerTest, CancelledJobIsSkippedAndEndsCancelled) {
  auto worker = MakeWorker();
  Results results;
  int owner = 0;
  EnqueueBlocking(*worker, &owner, results.Callback("first"));
  EncodeJob skipped = Job(&owner, 40, 2, false, results.Callback("skipped"));
  skipped.cancelled = [] { return true; };
  ASSERT_TRUE(worker->Enqueue(std::move(skipped)).ok());
  ASSERT_TRUE(worker->Enqueue(Job(&owner, 40, 3, false, results.Callback("kept"))).ok());
  latch_.Open();
  results.WaitFor(3);
  EXPECT_EQ(results.Get("skipped").status().code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(results.Get("kept").ok());
  EXPECT_EQ(results.Get("kept")->batch_size, 1);  // the skipped job was not encoded
}

TEST_F(SpeechEncoderWorkerTest, QueueBoundAndMalformedFeaturesAreRefused) {
  auto worker = MakeWorker({.max_queued_segments = 2});
  Results results;
  int owner = 0;
  EnqueueBlocking(*worker, &owner, results.Callback("a"));
  ASSERT_TRUE(worker->Enqueue(Job(&owner, 40, 2, false, results.Callback("b"))).ok());
  ASSERT_TRUE(worker->Enqueue(Job(&owner, 40, 3, false, results.Callback("c"))).ok());
  EXPECT_EQ(worker->Enqueue(Job(&owner, 40, 4, false, results.Callback("d"))).code(),
            absl::StatusCode::kResourceExhausted);
  EncodeJob ragged = Job(&owner, 40, 5, false, results.Callback("e"));
  ragged.features.pop_back();  // not whole frames
  EXPECT_EQ(worker->Enqueue(std::move(ragged)).code(), absl::StatusCode::kInvalidArgument);
  latch_.Open();
  results.WaitFor(3);
  EXPECT_EQ(results.order().size(), 3u);
}

TEST_F(SpeechEncoderWorkerTest, ShutdownEndsWaitingJobsWithUnavailable) {
  auto worker = MakeWorker();
  Results results;
  int owner = 0;
  EnqueueBlocking(*worker, &owner, results.Callback("running"));
  ASSERT_TRUE(worker->Enqueue(Job(&owner, 40, 2, false, results.Callback("waiting"))).ok());
  std::thread stop([&] { worker.reset(); });
  absl::SleepFor(absl::Milliseconds(50));
  latch_.Open();
  stop.join();
  EXPECT_TRUE(results.Get("running").ok());
  EXPECT_EQ(results.Get("waiting").status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace mtla
