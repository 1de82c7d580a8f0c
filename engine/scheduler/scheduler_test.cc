#include "engine/scheduler/scheduler.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

KvCacheGeometry Geometry(int down_rate = 1, int block_slots = 2) {
  KvCacheGeometry g;
  g.num_layers = 1;
  g.kv_lora_rank = 4;
  g.rope_dim = 2;
  g.down_rate = down_rate;
  g.block_slots = block_slots;
  return g;
}

SchedulerConfig Config(int max_running, int max_batched_tokens, int max_waiting = 16) {
  SchedulerConfig c;
  c.max_running = max_running;
  c.max_batched_tokens = max_batched_tokens;
  c.max_waiting = max_waiting;
  return c;
}

// What the model runner does with a plan: append every entry in order (each
// must succeed: that is the scheduler's promise), then report the step done.
SchedulerOutput RunStep(Scheduler* sched, KvCacheManager* cache) {
  SchedulerOutput out = sched->Schedule();
  std::vector<BlockCopy> copies;
  for (const ScheduledWork& w : out.work) {
    EXPECT_EQ(cache->num_tokens(w.id), w.start) << "request " << w.id;
    EXPECT_TRUE(cache->Append(w.id, w.num_tokens, &copies).ok()) << "request " << w.id;
  }
  sched->OnStepDone(out);
  return out;
}

std::vector<std::pair<RequestId, int>> WorkOf(const SchedulerOutput& out) {
  std::vector<std::pair<RequestId, int>> v;
  for (const ScheduledWork& w : out.work) v.emplace_back(w.id, w.num_tokens);
  return v;
}

using P = std::pair<RequestId, int>;

TEST(SchedulerTest, AddErrors) {
  KvCacheManager cache(Geometry(/*down_rate=*/1, /*block_slots=*/2), /*num_blocks=*/10);  // 20 tokens
  Scheduler sched(Config(4, 16, /*max_waiting=*/2), &cache);
  EXPECT_TRUE(sched.Add(1, 5, 20).ok());
  EXPECT_EQ(sched.Add(1, 5, 20).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(sched.Add(2, -1, 5).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sched.Add(2, 5, 4).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sched.Add(2, 5, 21).code(), absl::StatusCode::kResourceExhausted);  // never fits
  ASSERT_TRUE(cache.AddSequence(7).ok());  // someone else's sequence
  EXPECT_EQ(sched.Add(7, 1, 2).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(cache.Free(7).ok());
  EXPECT_TRUE(sched.Add(2, 0, 0).ok());
  EXPECT_EQ(sched.Add(3, 1, 2).code(), absl::StatusCode::kResourceExhausted);  // queue full
  EXPECT_EQ(sched.num_waiting(), 2);
  EXPECT_FALSE(sched.contains(3));

  EXPECT_EQ(sched.AppendTokens(9, 1).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sched.AppendTokens(1, -1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sched.AppendTokens(1, 16).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(sched.num_tokens(1), 5);
  EXPECT_TRUE(sched.AppendTokens(1, 15).ok());
  EXPECT_EQ(sched.num_tokens(1), 20);
  EXPECT_EQ(sched.num_tokens(9), -1);
  EXPECT_EQ(sched.num_computed(9), -1);
  EXPECT_FALSE(sched.is_running(9));
}

TEST(SchedulerTest, ChunkedPrefillSplitsUnderTokenBudget) {
  KvCacheManager cache(Geometry(2, 2), 16);
  Scheduler sched(Config(4, /*max_batched_tokens=*/8), &cache);
  ASSERT_TRUE(sched.Add(1, 20, 30).ok());
  SchedulerOutput out = RunStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(1));
  ASSERT_EQ(out.work.size(), 1u);
  EXPECT_EQ(out.work[0].start, 0);
  EXPECT_EQ(out.work[0].num_tokens, 8);
  out = RunStep(&sched, &cache);
  EXPECT_THAT(out.admitted, IsEmpty());
  ASSERT_EQ(out.work.size(), 1u);
  EXPECT_EQ(out.work[0].start, 8);
  EXPECT_EQ(out.work[0].num_tokens, 8);
  out = RunStep(&sched, &cache);
  ASSERT_EQ(out.work.size(), 1u);
  EXPECT_EQ(out.work[0].start, 16);
  EXPECT_EQ(out.work[0].num_tokens, 4);
  EXPECT_EQ(out.num_tokens(), 4);
  EXPECT_EQ(sched.num_computed(1), 20);
  EXPECT_THAT(RunStep(&sched, &cache).work, IsEmpty());
}

TEST(SchedulerTest, DecodeMixesWithPrefillInOneStep) {
  KvCacheManager cache(Geometry(1, 4), 32);
  Scheduler sched(Config(4, 8), &cache);
  ASSERT_TRUE(sched.Add(1, 4, 40).ok());
  RunStep(&sched, &cache);
  ASSERT_TRUE(sched.AppendTokens(1, 1).ok());  // sampled token
  ASSERT_TRUE(sched.Add(2, 20, 40).ok());
  SchedulerOutput out = RunStep(&sched, &cache);
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 1}, P{2, 7}));
  EXPECT_EQ(out.num_tokens(), 8);
  EXPECT_THAT(out.admitted, ElementsAre(2));
  ASSERT_TRUE(sched.AppendTokens(1, 1).ok());
  out = RunStep(&sched, &cache);
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 1}, P{2, 7}));
  EXPECT_EQ(out.work[1].start, 7);
}

TEST(SchedulerTest, MaxRunningRespected) {
  KvCacheManager cache(Geometry(1, 2), 64);
  Scheduler sched(Config(/*max_running=*/2, 64), &cache);
  for (RequestId id = 1; id <= 3; ++id) ASSERT_TRUE(sched.Add(id, 3, 10).ok());
  SchedulerOutput out = RunStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(1, 2));
  EXPECT_EQ(sched.num_running(), 2);
  EXPECT_EQ(sched.num_waiting(), 1);
  EXPECT_FALSE(sched.is_running(3));
  EXPECT_THAT(RunStep(&sched, &cache).admitted, IsEmpty());
  ASSERT_TRUE(sched.Remove(1));
  out = RunStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(3));
  EXPECT_THAT(WorkOf(out), ElementsAre(P{3, 3}));
}

TEST(SchedulerTest, StreamingRequestWithoutInputKeepsBlocksAndGetsNoWork) {
  KvCacheManager cache(Geometry(2, 2), 16);
  Scheduler sched(Config(4, 16), &cache);
  ASSERT_TRUE(sched.Add(1, 5, 40).ok());
  ASSERT_TRUE(sched.Add(2, 0, 40).ok());  // no input yet: admitted, no work
  SchedulerOutput out = RunStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(1, 2));
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 5}));
  const int used = cache.num_used_blocks();
  EXPECT_EQ(used, 2);
  out = RunStep(&sched, &cache);
  EXPECT_THAT(out.work, IsEmpty());
  EXPECT_TRUE(sched.is_running(1));
  EXPECT_TRUE(sched.is_running(2));
  EXPECT_EQ(cache.num_used_blocks(), used);
  EXPECT_EQ(cache.num_tokens(1), 5);
  ASSERT_TRUE(sched.AppendTokens(1, 2).ok());
  ASSERT_TRUE(sched.AppendTokens(2, 3).ok());
  out = RunStep(&sched, &cache);
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 2}, P{2, 3}));
  EXPECT_EQ(out.work[0].start, 5);
  EXPECT_EQ(out.work[1].start, 0);
}

TEST(SchedulerTest, PreemptionFreesVictimAndRequeuesItFirst) {
  // 4 blocks of 2 tokens. Requests 1 and 2 fill the cache; 3 waits.
  KvCacheManager cache(Geometry(1, 2), 4);
  Scheduler sched(Config(4, 16), &cache);
  ASSERT_TRUE(sched.Add(1, 4, 8).ok());
  ASSERT_TRUE(sched.Add(2, 4, 8).ok());
  ASSERT_TRUE(sched.Add(3, 2, 8).ok());
  SchedulerOutput out = RunStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(1, 2));
  EXPECT_EQ(cache.num_free_blocks(), 0);

  ASSERT_TRUE(sched.AppendTokens(1, 1).ok());  // needs a fifth block
  ASSERT_TRUE(sched.AppendTokens(2, 1).ok());
  out = RunStep(&sched, &cache);
  EXPECT_THAT(out.preempted, ElementsAre(2));
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 1}));
  EXPECT_THAT(out.admitted, IsEmpty());  // 2 needs 3 blocks, 1 is left
  EXPECT_FALSE(cache.contains(2));
  EXPECT_FALSE(sched.is_running(2));
  EXPECT_EQ(sched.num_computed(2), 0);
  EXPECT_EQ(sched.num_tokens(2), 5);  // tokens kept
  EXPECT_EQ(cache.num_used_blocks(), 3);
  EXPECT_EQ(sched.num_waiting(), 2);

  // When 1 finishes, the preempted request goes before the never-admitted one.
  ASSERT_TRUE(sched.Remove(1));
  EXPECT_EQ(cache.num_used_blocks(), 0);
  out = RunStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(2, 3));
  EXPECT_THAT(WorkOf(out), ElementsAre(P{2, 5}, P{3, 2}));
  EXPECT_EQ(out.work[0].start, 0);
}

TEST(SchedulerTest, PreemptedRequestsQueueByArrivalAheadOfNewOnes) {
  // 6 blocks of 1 token: requests 1, 2, 3 hold two each.
  KvCacheManager cache(Geometry(1, 1), 6);
  Scheduler sched(Config(8, 16), &cache);
  for (RequestId id = 1; id <= 3; ++id) ASSERT_TRUE(sched.Add(id, 2, 6).ok());
  RunStep(&sched, &cache);
  ASSERT_TRUE(sched.Add(4, 1, 6).ok());
  // 1 needs 3 more blocks: preempts 3, then 2.
  ASSERT_TRUE(sched.AppendTokens(1, 3).ok());
  SchedulerOutput out = RunStep(&sched, &cache);
  EXPECT_THAT(out.preempted, ElementsAre(3, 2));
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 3}));
  EXPECT_THAT(out.admitted, ElementsAre());  // 1 block free, 2 needs 2
  ASSERT_TRUE(sched.Remove(1));
  out = RunStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(2, 3, 4));
}

TEST(SchedulerTest, RequestPreemptsItselfWhenNewest) {
  KvCacheManager cache(Geometry(1, 1), 4);
  Scheduler sched(Config(4, 16), &cache);
  ASSERT_TRUE(sched.Add(1, 1, 4).ok());
  ASSERT_TRUE(sched.Add(2, 1, 4).ok());
  RunStep(&sched, &cache);
  ASSERT_TRUE(sched.AppendTokens(1, 1).ok());
  ASSERT_TRUE(sched.AppendTokens(2, 1).ok());
  // Pretend all free blocks were promised already: 1 preempts 2, then itself.
  Scheduler::Budget budget;
  budget.tokens = 16;
  budget.reserved_blocks = cache.num_total_blocks();
  SchedulerOutput out;
  sched.ScheduleRunning(&budget, &out);
  EXPECT_THAT(out.preempted, ElementsAre(2, 1));
  EXPECT_THAT(out.work, IsEmpty());
  EXPECT_EQ(sched.num_running(), 0);
  EXPECT_EQ(cache.num_used_blocks(), 0);
  EXPECT_EQ(sched.PreemptNewest(&out), -1);
  // Both go back by arrival.
  out = RunStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(1, 2));
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 2}, P{2, 2}));
}

TEST(SchedulerTest, AdmissionIsFcfsWithoutSkippingAhead) {
  KvCacheManager cache(Geometry(1, 2), 4);
  Scheduler sched(Config(4, 64), &cache);
  ASSERT_TRUE(sched.Add(1, 4, 8).ok());  // 2 blocks
  ASSERT_TRUE(sched.Add(2, 6, 8).ok());  // 3 blocks: does not fit next to 1
  ASSERT_TRUE(sched.Add(3, 1, 2).ok());  // would fit, but must not skip 2
  SchedulerOutput out = RunStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(1));
  EXPECT_THAT(RunStep(&sched, &cache).admitted, IsEmpty());
  ASSERT_TRUE(sched.Remove(1));
  out = RunStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(2, 3));
}

TEST(SchedulerTest, AdmissionStopsWhenTokenBudgetIsSpent) {
  KvCacheManager cache(Geometry(1, 2), 32);
  Scheduler sched(Config(8, 6), &cache);
  ASSERT_TRUE(sched.Add(1, 4, 8).ok());
  ASSERT_TRUE(sched.Add(2, 4, 8).ok());
  ASSERT_TRUE(sched.Add(3, 4, 8).ok());
  SchedulerOutput out = RunStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(1, 2));  // 2 gets a 2-token first chunk
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 4}, P{2, 2}));
  out = RunStep(&sched, &cache);
  EXPECT_THAT(WorkOf(out), ElementsAre(P{2, 2}, P{3, 4}));
}

TEST(SchedulerTest, RemoveInEachStateFreesBlocks) {
  KvCacheManager cache(Geometry(1, 2), 6);
  Scheduler sched(Config(4, 16), &cache);
  ASSERT_TRUE(sched.Add(1, 4, 12).ok());
  ASSERT_TRUE(sched.Add(2, 4, 12).ok());
  ASSERT_TRUE(sched.Add(3, 8, 12).ok());  // waits: 4 blocks needed, 2 free
  RunStep(&sched, &cache);
  EXPECT_EQ(cache.num_used_blocks(), 4);
  // Waiting, never admitted.
  EXPECT_TRUE(sched.Remove(3));
  EXPECT_FALSE(sched.contains(3));
  EXPECT_EQ(cache.num_used_blocks(), 4);
  // Preempted (waiting, admitted before): 1 grows by 6 tokens (3 more blocks).
  ASSERT_TRUE(sched.AppendTokens(1, 6).ok());
  SchedulerOutput out = RunStep(&sched, &cache);
  EXPECT_THAT(out.preempted, ElementsAre(2));
  EXPECT_EQ(cache.num_used_blocks(), 5);
  EXPECT_TRUE(sched.Remove(2));
  EXPECT_EQ(cache.num_used_blocks(), 5);
  // Running.
  EXPECT_TRUE(sched.Remove(1));
  EXPECT_FALSE(cache.contains(1));
  EXPECT_EQ(cache.num_used_blocks(), 0);
  EXPECT_EQ(cache.num_sequences(), 0);
  EXPECT_FALSE(sched.Remove(1));
  EXPECT_FALSE(sched.Remove(42));
  EXPECT_EQ(sched.num_running(), 0);
  EXPECT_EQ(sched.num_waiting(), 0);
}

TEST(SchedulerTest, OnStepDoneIgnoresRequestsRemovedOrPreemptedMeanwhile) {
  KvCacheManager cache(Geometry(1, 2), 16);
  Scheduler sched(Config(4, 16), &cache);
  for (RequestId id = 1; id <= 3; ++id) ASSERT_TRUE(sched.Add(id, 3, 8).ok());
  SchedulerOutput out = sched.Schedule();
  ASSERT_EQ(out.work.size(), 3u);
  ASSERT_TRUE(sched.Remove(2));
  SchedulerOutput ignored;
  ASSERT_EQ(sched.PreemptNewest(&ignored), 3);
  sched.OnStepDone(out);
  EXPECT_EQ(sched.num_computed(1), 3);
  EXPECT_EQ(sched.num_computed(3), 0);
  EXPECT_FALSE(sched.contains(2));
}

TEST(SchedulerTest, CountsCopyOnWriteOfAForkedTail) {
  // 3 blocks of 2 tokens. Request 1 holds 3 tokens (2 blocks); an outside fork
  // shares both, so 1's next token copies its tail: the last free block.
  KvCacheManager cache(Geometry(1, 2), 3);
  Scheduler sched(Config(4, 16), &cache);
  ASSERT_TRUE(sched.Add(1, 3, 6).ok());
  RunStep(&sched, &cache);
  ASSERT_TRUE(cache.Fork(1, 100).ok());
  ASSERT_TRUE(sched.AppendTokens(1, 1).ok());
  ASSERT_TRUE(sched.Add(2, 1, 2).ok());  // needs the same block: must wait
  SchedulerOutput out = sched.Schedule();
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 1}));
  EXPECT_THAT(out.admitted, IsEmpty());
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(cache.Append(1, 1, &copies).ok());
  EXPECT_EQ(copies.size(), 1u);
  sched.OnStepDone(out);
  ASSERT_TRUE(cache.Free(100).ok());
  EXPECT_TRUE(sched.Remove(1));
  EXPECT_TRUE(sched.Remove(2));
  EXPECT_EQ(cache.num_used_blocks(), 0);
}

// ---------------------------------------------------------------------------
// Randomized simulation of an engine loop against a tiny cache.

struct SimParams {
  uint32_t seed;
  int num_blocks;
  int down_rate;
  int max_running;
  int max_batched_tokens;
  int max_waiting;
};

struct SimRequest {
  int64_t prompt_total = 0;
  int64_t prompt_known = 0;
  int64_t max_new = 0;
  int64_t generated = 0;
  int64_t arrival_step = 0;
  int64_t arrival_order = 0;
  bool admitted_before = false;
};

struct SimStats {
  int64_t finished = 0;
  int64_t cancelled = 0;
  int64_t rejected = 0;
  int64_t preemptions = 0;
  int64_t readmitted_at_once = 0;
  int64_t computed = 0;
  int64_t max_latency = 0;
};

constexpr int kArrivalSteps = 3000;
constexpr int kMaxLatencySteps = 2000;  // bound on arrival -> finish (observed max: ~1200)
constexpr int kMaxDrainSteps = 3000;

void Simulate(const SimParams& p, SimStats* stats) {
  SCOPED_TRACE(::testing::Message() << "seed " << p.seed);
  std::mt19937 rng(p.seed);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  auto chance = [&](double prob) { return std::bernoulli_distribution(prob)(rng); };

  const KvCacheGeometry geometry = Geometry(p.down_rate, 2);
  KvCacheManager cache(geometry, p.num_blocks);
  Scheduler sched(Config(p.max_running, p.max_batched_tokens, p.max_waiting), &cache);
  const int64_t cache_tokens = static_cast<int64_t>(p.num_blocks) * geometry.tokens_per_block();

  std::map<RequestId, SimRequest> live;
  RequestId next_id = 0;
  int64_t next_order = 0;
  int64_t last_first_admission = -1;

  for (int64_t step = 0;; ++step) {
    const bool arriving = step < kArrivalSteps;
    if (!arriving && live.empty()) break;
    ASSERT_LT(step, kArrivalSteps + kMaxDrainSteps) << "drain did not finish";

    // Arrivals, in alternating heavy (queue fills up) and light phases.
    const double arrival_rate = (step / 250) % 2 == 0 ? 0.6 : 0.08;
    if (arriving && chance(arrival_rate)) {
      SimRequest r;
      r.prompt_total = uniform(0, cache_tokens / 2);
      r.max_new = uniform(1, cache_tokens / 3);
      const bool too_big = chance(0.03);
      int64_t max_total = r.prompt_total + r.max_new;
      if (too_big) {
        max_total = cache_tokens + uniform(1, 5);
      } else if (max_total > cache_tokens) {
        r.max_new = std::max<int64_t>(1, cache_tokens - r.prompt_total);
        max_total = r.prompt_total + r.max_new;
      }
      r.prompt_known = chance(0.3) ? uniform(0, r.prompt_total) : r.prompt_total;
      r.arrival_step = step;
      const RequestId id = next_id++;
      const bool queue_full = sched.num_waiting() >= p.max_waiting;
      const absl::Status s = sched.Add(id, r.prompt_known, max_total);
      if (too_big || queue_full) {
        ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
        ++stats->rejected;
      } else {
        ASSERT_TRUE(s.ok()) << s;
        r.arrival_order = next_order++;
        live.emplace(id, r);
      }
    }
    // Streamed input.
    for (auto& [id, r] : live) {
      if (r.prompt_known < r.prompt_total && chance(0.2)) {
        const int64_t n = uniform(1, r.prompt_total - r.prompt_known);
        ASSERT_TRUE(sched.AppendTokens(id, n).ok());
        r.prompt_known += n;
      }
    }
    // Cancellations, in any state.
    if (!live.empty() && chance(0.03)) {
      auto it = live.begin();
      std::advance(it, uniform(0, static_cast<int64_t>(live.size()) - 1));
      ASSERT_TRUE(sched.Remove(it->first));
      ASSERT_FALSE(cache.contains(it->first));
      live.erase(it);
      ++stats->cancelled;
    }

    // One engine step.
    const SchedulerOutput out = sched.Schedule();
    stats->preemptions += static_cast<int64_t>(out.preempted.size());
    ASSERT_LE(out.num_tokens(), p.max_batched_tokens);
    ASSERT_LE(sched.num_running(), p.max_running);
    ASSERT_EQ(cache.num_sequences(), sched.num_running());
    std::set<RequestId> seen;
    for (const ScheduledWork& w : out.work) {
      ASSERT_TRUE(seen.insert(w.id).second) << "request " << w.id << " twice";
      ASSERT_TRUE(sched.is_running(w.id));
      ASSERT_GT(w.num_tokens, 0);
      ASSERT_EQ(w.start, sched.num_computed(w.id));
      ASSERT_LE(w.start + w.num_tokens, sched.num_tokens(w.id));
    }
    // A victim is out of the cache, unless room was left to re-admit it at
    // once (it leads the queue): then it starts over from an empty sequence.
    for (RequestId id : out.preempted) {
      const bool readmitted =
          std::find(out.admitted.begin(), out.admitted.end(), id) != out.admitted.end();
      ASSERT_EQ(cache.contains(id), readmitted);
      if (readmitted) {
        ASSERT_EQ(cache.num_tokens(id), 0);
        ++stats->readmitted_at_once;
      }
    }
    // FCFS: re-admissions (by arrival) precede first admissions (by arrival).
    bool first_admissions = false;
    int64_t last_readmission = -1;
    for (RequestId id : out.admitted) {
      SimRequest& r = live.at(id);
      if (r.admitted_before) {
        ASSERT_FALSE(first_admissions) << "new request admitted before a preempted one";
        ASSERT_GT(r.arrival_order, last_readmission);
        last_readmission = r.arrival_order;
      } else {
        first_admissions = true;
        ASSERT_GT(r.arrival_order, last_first_admission) << "admission out of FCFS order";
        last_first_admission = r.arrival_order;
        r.admitted_before = true;
      }
    }
    // The model runner appends in order; every append must succeed.
    std::vector<BlockCopy> copies;
    for (const ScheduledWork& w : out.work) {
      ASSERT_EQ(cache.num_tokens(w.id), w.start);
      const absl::Status s = cache.Append(w.id, w.num_tokens, &copies);
      ASSERT_TRUE(s.ok()) << "step " << step << ": " << s;
    }
    sched.OnStepDone(out);
    stats->computed += out.num_tokens();

    // Sampling: finished prompts generate one token per computed step.
    for (auto it = live.begin(); it != live.end();) {
      const RequestId id = it->first;
      SimRequest& r = it->second;
      if (sched.is_running(id)) {
        ASSERT_EQ(cache.num_tokens(id), sched.num_computed(id));
      }
      const bool done_computing = sched.is_running(id) &&
                                  sched.num_computed(id) == sched.num_tokens(id) &&
                                  r.prompt_known == r.prompt_total;
      if (done_computing) {
        if (r.generated < r.max_new) {
          ASSERT_TRUE(sched.AppendTokens(id, 1).ok());
          ++r.generated;
        } else {
          stats->max_latency = std::max(stats->max_latency, step - r.arrival_step);
          ASSERT_LE(step - r.arrival_step, kMaxLatencySteps) << "request " << id << " starved";
          ASSERT_TRUE(sched.Remove(id));
          ++stats->finished;
          it = live.erase(it);
          continue;
        }
      }
      ++it;
    }
  }
  EXPECT_EQ(sched.num_running(), 0);
  EXPECT_EQ(sched.num_waiting(), 0);
  EXPECT_EQ(cache.num_used_blocks(), 0);
  EXPECT_EQ(cache.num_sequences(), 0);
}

TEST(SchedulerSimulationTest, RandomTrafficKeepsPromisesWithoutLeaksOrStarvation) {
  const SimParams params[] = {
      // seed, blocks, down_rate, max_running, max_batched_tokens, max_waiting
      {1, 12, 1, 4, 8, 16},  {2, 20, 2, 6, 16, 32}, {3, 40, 3, 8, 32, 64},
      {4, 16, 1, 3, 4, 8},   {5, 24, 2, 16, 12, 32}, {6, 32, 3, 2, 64, 16},
      {7, 12, 3, 8, 6, 24},  {8, 40, 1, 5, 20, 48},
  };
  SimStats total;
  for (const SimParams& p : params) {
    SimStats stats;
    Simulate(p, &stats);
    if (HasFatalFailure()) return;
    EXPECT_GT(stats.finished, 0);
    total.finished += stats.finished;
    total.cancelled += stats.cancelled;
    total.rejected += stats.rejected;
    total.preemptions += stats.preemptions;
    total.readmitted_at_once += stats.readmitted_at_once;
    total.computed += stats.computed;

    total.max_latency = std::max(total.max_latency, stats.max_latency);
  }
  // The traffic must exercise the interesting paths.
  EXPECT_GT(total.preemptions, 100);
  EXPECT_GT(total.cancelled, 50);
  EXPECT_GT(total.rejected, 50);
  std::printf(
      "finished %lld, cancelled %lld, rejected %lld, preemptions %lld (%lld re-admitted at once), "
      "tokens computed %lld, max latency %lld steps\n",
      static_cast<long long>(total.finished), static_cast<long long>(total.cancelled),
      static_cast<long long>(total.rejected), static_cast<long long>(total.preemptions),
      static_cast<long long>(total.readmitted_at_once), static_cast<long long>(total.computed),
      static_cast<long long>(total.max_latency));
}

}  // namespace
}  // namespace mtla
