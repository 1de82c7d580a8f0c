// Tests of the serving Engine driven directly (no gRPC) on the CPU backend with
// the shared LlamaMTLA reference checkpoint (MTLA_TESTDATA_DIR/model_reference/
// llama_mtla_s2): exact greedy tokens, many concurrent requests under cache
// pressure (preemption by recompute), cancellation, admission errors, Stop()
// with work in flight, and block accounting.
//
// Caches use 2 slots per block (4 tokens per block with the checkpoint's
// down_rate 2) so that sequences span many blocks and a small pool forces
// preemption. Every wait is bounded.
#include "engine/serving/engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/model/llama_mtla.h"
#include "engine/weights/safetensors.h"
#include "gmock/gmock.h"
#include "engine/testing/request_outcome.h"
#include "engine/testing/wait_for.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;

constexpr int kBlockSlots = 2;

std::vector<int32_t> ToIds(const std::vector<float>& values) {
  return std::vector<int32_t>(values.begin(), values.end());
}

using Outcome = test_support::RequestOutcome;
Outcome Drain(RequestStream& stream, double timeout_seconds = 20.0) {
  return test_support::DrainStream(stream, timeout_seconds);
}

bool WaitFor(const std::function<bool()>& pred, double timeout_seconds) {
  return test_support::WaitFor(pred, timeout_seconds, /*poll_ms=*/1);
}

class EngineTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(MTLA_TESTDATA_DIR) + "/model_reference/llama_mtla_s2";
    if (!std::filesystem::exists(dir_ + "/expected.safetensors")) {
      GTEST_SKIP() << "shared testdata not found at " << dir_;
    }
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> expected =
        SafetensorsFile::Open(dir_ + "/expected.safetensors");
    ASSERT_TRUE(expected.ok()) << expected.status();
    absl::StatusOr<std::vector<float>> prompt = (*expected)->ReadFloat("prompt_ids");
    ASSERT_TRUE(prompt.ok()) << prompt.status();
    absl::StatusOr<std::vector<float>> generated = (*expected)->ReadFloat("generated_ids");
    ASSERT_TRUE(generated.ok()) << generated.status();
    prompt_ = ToIds(*prompt);
    generated_ = ToIds(*generated);
    ASSERT_EQ(prompt_, (std::vector<int32_t>{1, 17, 42, 5, 66, 23, 9}));
    ASSERT_EQ(generated_.size(), 12u);
  }

  void TearDown() override {
    if (engine_ == nullptr) return;
    // No leak: once every request has ended, the engine holds no cache block.
    EXPECT_TRUE(WaitFor([&] { return engine_->stats().in_flight == 0; }, 10.0))
        << "in_flight=" << engine_->stats().in_flight;
    EXPECT_TRUE(WaitFor([&] { return engine_->stats().cache_blocks_used == 0; }, 5.0))
        << "cache_blocks_used=" << engine_->stats().cache_blocks_used;
    engine_->Stop();
    EXPECT_EQ(engine_->stats().cache_blocks_used, 0);
    engine_.reset();
  }

  // Builds engine_ over a cache of `num_blocks` blocks of kBlockSlots slots.
  void MakeEngine(int num_blocks, SchedulerConfig scheduler = {}, int max_new_tokens_limit = 4096,
                  double side_work_ms_per_step = 0) {
    CacheOptions cache;
    cache.block_slots = kBlockSlots;
    cache.num_blocks = num_blocks;
    absl::StatusOr<LoadedModel> model = LoadLlamaMtlaCpu(dir_, cache);
    ASSERT_TRUE(model.ok()) << model.status();
    vocab_ = model->config.vocab_size;
    EngineOptions options;
    options.scheduler = scheduler;
    options.max_new_tokens_limit = max_new_tokens_limit;
    options.side_work_ms_per_step = side_work_ms_per_step;
    engine_ = std::make_shared<Engine>(std::make_unique<ModelRunner>(std::move(model->backend)),
                                       options, /*metrics=*/nullptr);
    ASSERT_EQ(engine_->cache_blocks_total(), num_blocks);
  }

  GenerationRequest Greedy(std::vector<int32_t> prompt, int max_new_tokens,
                           bool ignore_eos = false) const {
    GenerationRequest r;
    r.prompt = std::move(prompt);
    r.sampling.max_new_tokens = max_new_tokens;
    r.sampling.ignore_eos = ignore_eos;
    return r;
  }

  GenerationRequest Reference() const { return Greedy(prompt_, 12); }

  // A long request (about 50 ms of decoding alone on an idle machine) that is
  // still running when the test acts on it.
  GenerationRequest Long(int max_new_tokens = 500) const {
    return Greedy(prompt_, max_new_tokens, /*ignore_eos=*/true);
  }

  std::shared_ptr<RequestStream> MustSubmit(GenerationRequest request) {
    absl::StatusOr<std::shared_ptr<RequestStream>> stream = engine_->Submit(std::move(request));
    EXPECT_TRUE(stream.ok()) << stream.status();
    return stream.ok() ? *stream : nullptr;
  }

  void ExpectInvalid(GenerationRequest request, const std::string& field) {
    SCOPED_TRACE(field);
    absl::StatusOr<std::shared_ptr<RequestStream>> stream = engine_->Submit(std::move(request));
    ASSERT_FALSE(stream.ok());
    EXPECT_EQ(stream.status().code(), absl::StatusCode::kInvalidArgument) << stream.status();
    EXPECT_THAT(std::string(stream.status().message()), HasSubstr(field));
  }

  std::string dir_;
  std::vector<int32_t> prompt_, generated_;
  int vocab_ = 0;
  std::shared_ptr<Engine> engine_;
};

TEST_F(EngineTest, GreedyTokensMatchReference) {
  MakeEngine(/*num_blocks=*/64);
  std::shared_ptr<RequestStream> stream = MustSubmit(Reference());
  ASSERT_NE(stream, nullptr);
  Outcome out = Drain(*stream);
  ASSERT_TRUE(out.finished);
  // The engine lets go of a request before its stream ends, so a client can
  // send its next request at once without finding the queue still full.
  EXPECT_EQ(engine_->stats().in_flight, 0);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, generated_);
  EXPECT_EQ(out.finish_reason, FinishReason::kLength);
  EXPECT_EQ(out.prompt_tokens, 7);
  EXPECT_EQ(out.generated_tokens, 12);
  EXPECT_GE(out.timing.time_to_first_token_seconds, out.timing.queue_seconds);
  EXPECT_GE(out.timing.total_seconds, out.timing.time_to_first_token_seconds);
  EXPECT_EQ(out.timing.num_preemptions, 0);
  EXPECT_EQ(engine_->stats().preemptions, 0);

  // The same request again gives the same tokens (no state leaks between requests).
  stream = MustSubmit(Reference());
  ASSERT_NE(stream, nullptr);
  out = Drain(*stream);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, generated_);
}

// Side work (the speech encoder's stages) runs on the engine thread,
// alternating with the steps of a running request: with no time budget
// (side_work_ms_per_step 0), one slice per step.
TEST_F(EngineTest, SideWorkRunsOnTheEngineThreadBetweenSteps) {
  MakeEngine(/*num_blocks=*/256);
  std::shared_ptr<RequestStream> stream = MustSubmit(Long(300));
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(WaitFor([&] { return engine_->stats().steps > 2; }, 10.0));
  absl::Mutex mu;
  std::vector<int64_t> steps_seen;
  std::set<std::thread::id> threads;
  bool done = false;
  ASSERT_TRUE(engine_->PostSideWork([&](bool stop) {
    absl::MutexLock lock(&mu);
    EXPECT_FALSE(stop);
    threads.insert(std::this_thread::get_id());
    steps_seen.push_back(engine_->stats().steps);
    if (steps_seen.size() < 5) return true;
    done = true;
    return false;
  }));
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30)));
    EXPECT_EQ(threads.size(), 1u);
    EXPECT_EQ(threads.count(std::this_thread::get_id()), 0u);
    for (size_t i = 1; i < steps_seen.size(); ++i) {
      EXPECT_GT(steps_seen[i], steps_seen[i - 1]) << "no step between slices " << i - 1 << " and " << i;
    }
  }
  Outcome out = Drain(*stream);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.generated_tokens, 300);
}

// With a budget of 30 ms, slices of 4 ms run back to back between two steps
// until the budget has passed (so a step waits at most 30 ms plus one
// slice), and steps still run while side work is left.
TEST_F(EngineTest, SideWorkRunsUpToItsBudgetBetweenSteps) {
  MakeEngine(/*num_blocks=*/256, {}, 4096, /*side_work_ms_per_step=*/30);
  std::shared_ptr<RequestStream> stream = MustSubmit(Long(300));
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(WaitFor([&] { return engine_->stats().steps > 2; }, 10.0));
  absl::Mutex mu;
  std::vector<int64_t> steps_seen;
  bool done = false;
  ASSERT_TRUE(engine_->PostSideWork([&](bool stop) {
    EXPECT_FALSE(stop);
    std::this_thread::sleep_for(std::chrono::milliseconds(4));
    absl::MutexLock lock(&mu);
    steps_seen.push_back(engine_->stats().steps);
    if (steps_seen.size() < 60) return true;
    done = true;
    return false;
  }));
  absl::MutexLock lock(&mu);
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30)));
  // Runs of slices without a step between them: more than one slice, and
  // never more than the budget allows (30 ms / 4 ms, + 1 started in time).
  int longest = 0, run = 1, runs = 1;
  for (size_t i = 1; i < steps_seen.size(); ++i) {
    if (steps_seen[i] == steps_seen[i - 1]) {
      ++run;
    } else {
      ++runs;
      run = 1;
    }
    longest = std::max(longest, run);
  }
  EXPECT_GE(longest, 2) << "the budget let no slices run back to back";
  EXPECT_LE(longest, 9) << "slices ran past the budget";
  EXPECT_GE(runs, 60 / 9) << "steps stopped while side work was left";
}

// At Stop, side work still posted is called once with stop = true, and no
// more is accepted.
TEST_F(EngineTest, SideWorkStillPostedIsStoppedAtShutdown) {
  MakeEngine(/*num_blocks=*/64);
  std::atomic<int> first_slices{0}, first_stops{0}, second_slices{0}, second_stops{0};
  ASSERT_TRUE(engine_->PostSideWork([&](bool stop) {
    if (stop) {
      ++first_stops;
      return false;
    }
    ++first_slices;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return true;  // never ends on its own
  }));
  ASSERT_TRUE(engine_->PostSideWork([&](bool stop) {
    (stop ? second_stops : second_slices)++;
    return false;
  }));
  ASSERT_TRUE(WaitFor([&] { return first_slices.load() > 3; }, 10.0));
  engine_->Stop();
  EXPECT_EQ(first_stops.load(), 1);
  EXPECT_EQ(second_slices.load(), 0) << "tasks run one at a time, in order";
  EXPECT_EQ(second_stops.load(), 1);
  EXPECT_FALSE(engine_->PostSideWork([](bool) { return false; }));
}

TEST_F(EngineTest, StopTokenEndsGeneration) {
  MakeEngine(/*num_blocks=*/64);
  GenerationRequest r = Reference();
  r.sampling.stop_token_ids = {generated_[3]};  // 56, first produced as the 4th token
  std::shared_ptr<RequestStream> stream = MustSubmit(std::move(r));
  ASSERT_NE(stream, nullptr);
  Outcome out = Drain(*stream);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.finish_reason, FinishReason::kStop);
  EXPECT_EQ(out.tokens, std::vector<int32_t>(generated_.begin(), generated_.begin() + 4));
}

// 32 requests at once over a cache far too small for all of them: the
// scheduler preempts, every request still finishes with all its tokens, and
// the greedy requests whose answer is known give exactly that answer.
TEST_F(EngineTest, ConcurrentRequestsWithPreemption) {
  // Largest request below: 30 + 30 tokens = 15 blocks; the reference needs 5.
  MakeEngine(/*num_blocks=*/24);
  struct Case {
    GenerationRequest request;
    std::vector<int32_t> expected;  // empty: unknown, only the length is checked
    int length = 0;
    std::shared_ptr<RequestStream> stream;
  };
  std::vector<Case> cases;
  std::mt19937 rng(1234);
  for (int i = 0; i < 32; ++i) {
    Case c;
    if (i % 8 == 0) {
      c.request = Reference();
      c.expected = generated_;
    } else if (i % 8 == 3) {
      // The reference continued from inside its own answer: prompt + the first
      // k generated tokens must yield the remaining 12 - k.
      const int k = 1 + (i / 8) * 3;  // 1, 4, 7, 10
      std::vector<int32_t> prompt = prompt_;
      prompt.insert(prompt.end(), generated_.begin(), generated_.begin() + k);
      c.request = Greedy(prompt, 12 - k);
      c.expected.assign(generated_.begin() + k, generated_.end());
    } else if (i % 8 == 5) {
      // A prefix of the reference prompt.
      const int len = 1 + i % 6;
      c.request = Greedy(std::vector<int32_t>(prompt_.begin(), prompt_.begin() + len), 10 + i,
                         /*ignore_eos=*/true);
    } else {
      std::uniform_int_distribution<int> len_dist(1, 30), new_dist(1, 30), tok(0, 96);
      std::vector<int32_t> prompt(len_dist(rng));
      for (int32_t& t : prompt) t = tok(rng);
      c.request = Greedy(prompt, new_dist(rng), /*ignore_eos=*/true);
      if (i % 4 == 1) {  // some sampled ones too
        c.request.sampling.temperature = 0.8f;
        c.request.sampling.top_p = 0.9f;
        c.request.sampling.top_k = 20;
        c.request.sampling.seed = 100 + i;
      }
    }
    c.length = c.request.sampling.max_new_tokens;
    cases.push_back(std::move(c));
  }
  for (Case& c : cases) {
    c.stream = MustSubmit(c.request);
    ASSERT_NE(c.stream, nullptr);
  }
  int total_preemptions = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("request ", i));
    Outcome out = Drain(*cases[i].stream);
    ASSERT_TRUE(out.finished) << "request did not finish in time";
    ASSERT_TRUE(out.status.ok()) << out.status;
    if (!cases[i].expected.empty()) {
      EXPECT_EQ(out.tokens, cases[i].expected);
    } else {
      EXPECT_EQ(static_cast<int>(out.tokens.size()), cases[i].length);
    }
    EXPECT_EQ(out.generated_tokens, static_cast<int>(out.tokens.size()));
    EXPECT_EQ(out.prompt_tokens, static_cast<int>(cases[i].request.prompt.size()));
    for (int32_t t : out.tokens) {
      EXPECT_GE(t, 0);
      EXPECT_LT(t, vocab_);
    }
    total_preemptions += out.timing.num_preemptions;
  }
  EXPECT_GT(engine_->stats().preemptions, 0) << "the cache was meant to force preemption";
  EXPECT_EQ(total_preemptions, engine_->stats().preemptions);

  // A seeded sampled request gives the same tokens alone as in the crowd.
  for (size_t i = 0; i < cases.size(); ++i) {
    if (!cases[i].request.sampling.seed.has_value()) continue;
    std::shared_ptr<RequestStream> again = MustSubmit(cases[i].request);
    ASSERT_NE(again, nullptr);
    Outcome alone = Drain(*again);
    ASSERT_TRUE(alone.status.ok()) << alone.status;
    EXPECT_EQ(static_cast<int>(alone.tokens.size()), cases[i].length);
    break;
  }
}

// Cancel() on a running request frees its blocks promptly and ends its stream
// with Cancelled. The request is long; an attempt in which it finished before
// the cancellation reached the engine is repeated.
TEST_F(EngineTest, CancelReturnsCacheBlocks) {
  MakeEngine(/*num_blocks=*/256);
  const int before = engine_->stats().cache_blocks_used;
  bool cancelled_midway = false;
  for (int attempt = 0; attempt < 5 && !cancelled_midway; ++attempt) {
    std::shared_ptr<RequestStream> stream = MustSubmit(Long());
    ASSERT_NE(stream, nullptr);
    GenerationEvent first;
    ASSERT_TRUE(stream->WaitPop(&first, 10.0)) << "no token within 10 s";
    stream->Cancel();
    Outcome out = Drain(*stream, 10.0);
    ASSERT_TRUE(out.finished);
    EXPECT_EQ(engine_->stats().in_flight, 0);
    if (out.status.ok()) continue;  // finished before the cancellation; try again
    EXPECT_EQ(out.status.code(), absl::StatusCode::kCancelled) << out.status;
    EXPECT_LT(first.tokens.size() + out.tokens.size(), 500u);
    cancelled_midway = true;
    EXPECT_TRUE(WaitFor([&] { return engine_->stats().cache_blocks_used == before; }, 2.0))
        << "cache_blocks_used=" << engine_->stats().cache_blocks_used << " before=" << before;
    EXPECT_EQ(engine_->stats().in_flight, 0);
  }
  EXPECT_TRUE(cancelled_midway) << "the request always finished before Cancel() took effect";

  // Cancelling right after Submit (before the request is scheduled) also works.
  std::shared_ptr<RequestStream> early = MustSubmit(Long());
  ASSERT_NE(early, nullptr);
  early->Cancel();
  Outcome out = Drain(*early, 10.0);
  ASSERT_TRUE(out.finished);
  EXPECT_TRUE(WaitFor([&] { return engine_->stats().cache_blocks_used == before; }, 2.0));
}

TEST_F(EngineTest, QueueFullIsResourceExhausted) {
  SchedulerConfig scheduler;
  scheduler.max_running = 1;
  scheduler.max_waiting = 1;
  MakeEngine(/*num_blocks=*/256, scheduler);
  // Capacity is max_running + max_waiting requests in flight; the count is
  // taken at Submit(), so the third is refused whatever the engine thread does.
  std::shared_ptr<RequestStream> a = MustSubmit(Long(60));
  std::shared_ptr<RequestStream> b = MustSubmit(Long(60));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  absl::StatusOr<std::shared_ptr<RequestStream>> c = engine_->Submit(Reference());
  ASSERT_FALSE(c.ok()) << "third request accepted with 2 long ones in flight";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("queue is full"));
  // The two accepted requests are served in full: the engine's capacity is
  // max_running + max_waiting, even when both arrive before either is admitted.
  for (std::shared_ptr<RequestStream>* s : {&a, &b}) {
    Outcome out = Drain(**s);
    ASSERT_TRUE(out.finished);
    EXPECT_TRUE(out.status.ok()) << out.status;
    EXPECT_EQ(out.tokens.size(), 60u);
  }
  ASSERT_TRUE(WaitFor([&] { return engine_->stats().in_flight == 0; }, 5.0));
  // Room again: a normal request is served.
  std::shared_ptr<RequestStream> d = MustSubmit(Reference());
  ASSERT_NE(d, nullptr);
  Outcome out = Drain(*d);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, generated_);
}

TEST_F(EngineTest, RequestThatCanNeverFitIsResourceExhausted) {
  MakeEngine(/*num_blocks=*/8);  // 32 tokens
  absl::StatusOr<std::shared_ptr<RequestStream>> s =
      engine_->Submit(Greedy(prompt_, 100, /*ignore_eos=*/true));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted) << s.status();
}

TEST_F(EngineTest, TooLongForContextIsOutOfRange) {
  MakeEngine(/*num_blocks=*/256);
  absl::StatusOr<std::shared_ptr<RequestStream>> s =
      engine_->Submit(Greedy(prompt_, 512, /*ignore_eos=*/true));  // 7 + 512 > 512
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kOutOfRange) << s.status();
}

TEST_F(EngineTest, InvalidParametersNameTheField) {
  MakeEngine(/*num_blocks=*/64, SchedulerConfig{}, /*max_new_tokens_limit=*/256);
  ExpectInvalid(Greedy({}, 4), "prompt_token_ids");
  ExpectInvalid(Greedy({1, 2, 97}, 4), "prompt_token_ids");
  ExpectInvalid(Greedy({1, -1}, 4), "prompt_token_ids");
  ExpectInvalid(Greedy(prompt_, 0), "max_new_tokens");
  ExpectInvalid(Greedy(prompt_, -3), "max_new_tokens");
  ExpectInvalid(Greedy(prompt_, 257), "max_new_tokens");
  {
    GenerationRequest r = Reference();
    r.sampling.temperature = -0.5f;
    ExpectInvalid(std::move(r), "temperature");
  }
  {
    GenerationRequest r = Reference();
    r.sampling.temperature = std::numeric_limits<float>::quiet_NaN();
    ExpectInvalid(std::move(r), "temperature");
  }
  for (float top_p : {1.5f, -0.1f, 0.0f}) {
    GenerationRequest r = Reference();
    r.sampling.top_p = top_p;
    ExpectInvalid(std::move(r), "top_p");
  }
  {
    GenerationRequest r = Reference();
    r.sampling.top_k = -1;
    ExpectInvalid(std::move(r), "top_k");
  }
  for (int32_t stop : {97, -1}) {
    GenerationRequest r = Reference();
    r.sampling.stop_token_ids = {2, stop};
    ExpectInvalid(std::move(r), "stop_token_ids");
  }
  EXPECT_EQ(engine_->stats().in_flight, 0);
  // The engine keeps serving.
  std::shared_ptr<RequestStream> s = MustSubmit(Reference());
  ASSERT_NE(s, nullptr);
  Outcome out = Drain(*s);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, generated_);
}

TEST_F(EngineTest, DrainRefusesNewRequestsAndFinishesRunningOnes) {
  MakeEngine(/*num_blocks=*/256);
  std::shared_ptr<RequestStream> running = MustSubmit(Long(100));
  ASSERT_NE(running, nullptr);
  engine_->StartDrain();
  absl::StatusOr<std::shared_ptr<RequestStream>> refused = engine_->Submit(Reference());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  Outcome out = Drain(*running);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens.size(), 100u);
}

TEST_F(EngineTest, DrainAcceptsRequestsThatContinueAnAdmittedCall) {
  MakeEngine(/*num_blocks=*/256);
  engine_->StartDrain();
  GenerationRequest next = Reference();  // e.g. an open speech stream's next segment
  next.continues_admitted_call = true;
  absl::StatusOr<std::shared_ptr<RequestStream>> accepted = engine_->Submit(std::move(next));
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  Outcome out = Drain(**accepted);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, generated_);
  // Stop() still ends such requests: refused once the engine has stopped.
  engine_->Stop();
  GenerationRequest late = Reference();
  late.continues_admitted_call = true;
  absl::StatusOr<std::shared_ptr<RequestStream>> refused = engine_->Submit(std::move(late));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
}

TEST_F(EngineTest, StopFailsRequestsInFlightWithUnavailable) {
  SchedulerConfig scheduler;
  scheduler.max_running = 2;  // the others wait in the queue
  MakeEngine(/*num_blocks=*/512, scheduler);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 4; ++i) {
    streams.push_back(MustSubmit(Long()));
    ASSERT_NE(streams.back(), nullptr);
  }
  GenerationEvent first;
  ASSERT_TRUE(streams[0]->WaitPop(&first, 10.0));
  engine_->Stop();
  int unavailable = 0;
  for (auto& s : streams) {
    Outcome out = Drain(*s, 5.0);
    ASSERT_TRUE(out.finished) << "Stop() left a stream unfinished";
    if (out.status.ok()) {  // finished before Stop(); must then be complete
      EXPECT_EQ(out.tokens.size() + (s == streams[0] ? first.tokens.size() : 0), 500u);
      continue;
    }
    EXPECT_EQ(out.status.code(), absl::StatusCode::kUnavailable) << out.status;
    ++unavailable;
  }
  // 4 x 500 tokens with two running at once cannot all have finished by the
  // time the first token was read.
  EXPECT_GE(unavailable, 2);
  EXPECT_EQ(engine_->stats().in_flight, 0);
  EXPECT_EQ(engine_->stats().cache_blocks_used, 0);
  // After Stop() nothing is accepted.
  absl::StatusOr<std::shared_ptr<RequestStream>> late = engine_->Submit(Reference());
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable) << late.status();
  engine_->Stop();  // a second Stop() is harmless
}

}  // namespace
}  // namespace mtla
