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
// Groups of rows (beam search).

// Forks `id`'s root into `width` rows (the root stays row 0) and hands them to
// the scheduler, as the engine does after a beam search's first step.
std::vector<SequenceId> ForkRoot(Scheduler* sched, KvCacheManager* cache, RequestId id, int width,
                                 SequenceId first_new) {
  std::vector<SequenceId> rows = {id};
  for (int i = 1; i < width; ++i) {
    rows.push_back(first_new + i);
    EXPECT_TRUE(cache->Fork(id, rows.back()).ok());
  }
  EXPECT_TRUE(sched->SetRows(id, rows).ok());
  return rows;
}

// Appends every row of every entry (the model runner's part) and reports the
// step done.
SchedulerOutput RunGroupStep(Scheduler* sched, KvCacheManager* cache) {
  SchedulerOutput out = sched->Schedule();
  std::vector<BlockCopy> copies;
  for (const ScheduledWork& w : out.work) {
    const std::vector<SequenceId>& rows = sched->rows(w.id);
    EXPECT_EQ(static_cast<int>(rows.size()), w.num_rows) << "request " << w.id;
    for (SequenceId row : rows) {
      EXPECT_EQ(cache->num_tokens(row), w.start) << "row " << row;
      EXPECT_TRUE(cache->Append(row, w.num_tokens, &copies).ok()) << "row " << row;
    }
  }
  sched->OnStepDone(out);
  return out;
}

TEST(SchedulerGroupTest, MaxGroupBlocks) {
  const KvCacheGeometry g = Geometry(/*down_rate=*/2, /*block_slots=*/2);  // 4 tokens per block
  EXPECT_EQ(MaxGroupBlocks(g, 10, 22, 1), 6);
  // 2 complete blocks shared, the rest (4 blocks per row) private.
  EXPECT_EQ(MaxGroupBlocks(g, 10, 22, 4), 2 + 4 * 4);
  EXPECT_EQ(MaxGroupBlocks(g, 3, 22, 4), 4 * 6);
  EXPECT_EQ(MaxGroupBlocks(g, 8, 8, 3), 2);
}

TEST(SchedulerGroupTest, AddAndRowErrors) {
  KvCacheManager cache(Geometry(1, 2), 10);  // 20 tokens
  Scheduler sched(Config(/*max_running=*/4, /*max_batched_tokens=*/3), &cache);
  EXPECT_EQ(sched.Add(1, 2, 4, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sched.Add(1, 2, 4, 5).code(), absl::StatusCode::kResourceExhausted);  // > max_running
  EXPECT_EQ(sched.Add(1, 2, 4, 4).code(), absl::StatusCode::kResourceExhausted);  // > budget
  // 1 shared block + 3 x 4 private ones > 10.
  EXPECT_EQ(sched.Add(1, 2, 10, 3).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(sched.Add(1, 2, 8, 3).ok());  // 1 + 3 x 3
  EXPECT_EQ(sched.SetRows(1, {1}).code(), absl::StatusCode::kFailedPrecondition);  // waiting
  EXPECT_EQ(sched.SetRows(9, {1}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sched.Truncate(9, 0).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sched.Truncate(1, 3).code(), absl::StatusCode::kInvalidArgument);
  RunGroupStep(&sched, &cache);
  EXPECT_THAT(sched.rows(1), ElementsAre(1));
  EXPECT_EQ(sched.Truncate(1, 1).code(), absl::StatusCode::kFailedPrecondition);  // running
  ASSERT_TRUE(cache.Fork(1, 100).ok());
  ASSERT_TRUE(cache.AddSequence(200).ok());
  EXPECT_EQ(sched.SetRows(1, {1, 200}).code(), absl::StatusCode::kInvalidArgument);  // 0 tokens
  EXPECT_EQ(sched.SetRows(1, {1, 300}).code(), absl::StatusCode::kInvalidArgument);  // absent
  EXPECT_EQ(sched.SetRows(1, {1, 1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sched.SetRows(1, {1, 100, 100, 1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sched.rows(1), ElementsAre(1));  // unchanged by the failures
  ASSERT_TRUE(sched.SetRows(1, {100, 1}).ok());
  EXPECT_THAT(sched.rows(1), ElementsAre(100, 1));
  ASSERT_TRUE(cache.Free(200).ok());
  EXPECT_TRUE(sched.Remove(1));
  EXPECT_EQ(cache.num_sequences(), 0);
  EXPECT_EQ(cache.num_used_blocks(), 0);
}

// A group reserves its maximum width of max_running from admission on, and
// all its rows share one step's budget.
TEST(SchedulerGroupTest, RowsCountAgainstMaxRunningAndTheBudget) {
  KvCacheManager cache(Geometry(1, 4), 64);
  Scheduler sched(Config(/*max_running=*/5, /*max_batched_tokens=*/4), &cache);
  ASSERT_TRUE(sched.Add(1, 2, 20, 3).ok());
  ASSERT_TRUE(sched.Add(2, 1, 20, 1).ok());
  ASSERT_TRUE(sched.Add(3, 1, 20, 2).ok());
  SchedulerOutput out = RunGroupStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(1, 2));  // 3 + 1 rows reserved; 3 needs 2 more
  EXPECT_EQ(sched.num_running_rows(), 4);
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 2}, P{2, 1}));
  ForkRoot(&sched, &cache, 1, 3, 100);
  ASSERT_TRUE(sched.AppendTokens(1, 1).ok());
  ASSERT_TRUE(sched.AppendTokens(2, 1).ok());
  out = RunGroupStep(&sched, &cache);
  ASSERT_EQ(out.work.size(), 2u);
  EXPECT_EQ(out.work[0].num_rows, 3);
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 1}, P{2, 1}));
  EXPECT_EQ(out.num_tokens(), 4);
  // Request 2 has 3 tokens pending: the older group takes its 3 rows' tokens
  // first, and 2 gets the one left.
  ASSERT_TRUE(sched.AppendTokens(1, 1).ok());
  ASSERT_TRUE(sched.AppendTokens(2, 3).ok());
  out = RunGroupStep(&sched, &cache);
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 1}, P{2, 1}));
  EXPECT_EQ(out.num_tokens(), 4);
  ASSERT_TRUE(sched.Remove(2));  // room for 3's two rows now
  EXPECT_EQ(sched.num_running_rows(), 3);
  ASSERT_TRUE(sched.AppendTokens(1, 2).ok());
  out = RunGroupStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(3));
  // 4 tokens: the group takes 1 per row (2 would be 6), 3 gets the last one.
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 1}, P{3, 1}));
  EXPECT_TRUE(sched.Remove(1));
  EXPECT_TRUE(sched.Remove(3));
  EXPECT_EQ(cache.num_sequences(), 0);
  EXPECT_EQ(cache.num_used_blocks(), 0);
}

// The newest group is preempted whole: all its rows are freed, it keeps its
// tokens, and it comes back with one row (its root) to recompute them.
TEST(SchedulerGroupTest, PreemptionFreesEveryRowOfTheGroup) {
  KvCacheManager cache(Geometry(1, 2), 8);
  Scheduler sched(Config(8, 16), &cache);
  ASSERT_TRUE(sched.Add(1, 4, 12, 1).ok());
  ASSERT_TRUE(sched.Add(2, 2, 6, 3).ok());  // 1 shared block + 3 x 2
  RunGroupStep(&sched, &cache);
  ForkRoot(&sched, &cache, 2, 3, 100);
  ASSERT_TRUE(sched.AppendTokens(2, 1).ok());  // each row opens a block of its own
  SchedulerOutput out = RunGroupStep(&sched, &cache);
  EXPECT_EQ(out.num_tokens(), 3);
  EXPECT_EQ(cache.num_sequences(), 4);
  // 1 grows by 6 tokens (3 blocks): the group must go.
  ASSERT_TRUE(sched.AppendTokens(1, 6).ok());
  ASSERT_TRUE(sched.AppendTokens(2, 1).ok());
  out = RunGroupStep(&sched, &cache);
  EXPECT_THAT(out.preempted, ElementsAre(2));
  EXPECT_THAT(WorkOf(out), ElementsAre(P{1, 6}));
  EXPECT_EQ(cache.num_sequences(), 1);
  EXPECT_TRUE(sched.rows(2).empty());
  EXPECT_EQ(sched.num_tokens(2), 4);
  EXPECT_EQ(sched.num_running_rows(), 1);
  // The owner recomputes the rows' shared prefix as one row first.
  ASSERT_TRUE(sched.Truncate(2, 3).ok());
  ASSERT_TRUE(sched.Remove(1));
  out = RunGroupStep(&sched, &cache);
  EXPECT_THAT(out.admitted, ElementsAre(2));
  EXPECT_THAT(WorkOf(out), ElementsAre(P{2, 3}));
  EXPECT_THAT(sched.rows(2), ElementsAre(2));
  ForkRoot(&sched, &cache, 2, 3, 200);
  ASSERT_TRUE(sched.AppendTokens(2, 1).ok());
  out = RunGroupStep(&sched, &cache);
  EXPECT_THAT(WorkOf(out), ElementsAre(P{2, 1}));
  EXPECT_EQ(out.num_tokens(), 3);
  EXPECT_TRUE(sched.Remove(2));
  EXPECT_EQ(cache.num_sequences(), 0);
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
  int width = 1;  // > 1: a beam group (its rows fork after the prompt)
  int64_t fork_at = -1;        // >= 0: recomputing the shared prefix as one row
  int64_t resume_tokens = 0;   // the tokens per row to restore after that fork
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
  int64_t group_preemptions = 0;
  int64_t groups_finished = 0;
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
  SequenceId next_row = SequenceId{1} << 40;
  const int max_width = std::min({4, p.max_running, p.max_batched_tokens});
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
      r.width = max_width >= 2 && chance(0.3) ? static_cast<int>(uniform(2, max_width)) : 1;
      r.prompt_total = uniform(r.width > 1 ? 1 : 0, cache_tokens / 2);
      r.max_new = uniform(1, cache_tokens / 3);
      bool too_big = chance(0.03);
      int64_t max_total = r.prompt_total + r.max_new;
      if (too_big) {
        max_total = cache_tokens + uniform(1, 5);
      } else {
        // Shrink to what the whole cache can hold (a group may still not fit).
        while (r.max_new > 1 && MaxGroupBlocks(geometry, r.prompt_total, r.prompt_total + r.max_new,
                                               r.width) > p.num_blocks) {
          --r.max_new;
        }
        max_total = r.prompt_total + r.max_new;
        too_big = MaxGroupBlocks(geometry, r.prompt_total, max_total, r.width) > p.num_blocks;
      }
      // Beam groups know their prompt (the engine's are whole); others stream.
      r.prompt_known =
          r.width == 1 && chance(0.3) ? uniform(0, r.prompt_total) : r.prompt_total;
      r.arrival_step = step;
      const RequestId id = next_id++;
      const bool queue_full = sched.num_waiting() >= p.max_waiting;
      const absl::Status s = sched.Add(id, r.prompt_known, max_total, r.width);
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
      const std::vector<SequenceId> rows = sched.rows(it->first);
      ASSERT_TRUE(sched.Remove(it->first));
      for (SequenceId row : rows) ASSERT_FALSE(cache.contains(row));
      live.erase(it);
      ++stats->cancelled;
    }

    // One engine step.
    const SchedulerOutput out = sched.Schedule();
    stats->preemptions += static_cast<int64_t>(out.preempted.size());
    ASSERT_LE(out.num_tokens(), p.max_batched_tokens);
    ASSERT_LE(sched.num_running_rows(), p.max_running);
    int64_t rows_held = 0;
    for (const auto& [id, r] : live) {
      const size_t rows = sched.rows(id).size();
      ASSERT_LE(static_cast<int>(rows), r.width);
      ASSERT_EQ(rows > 0, sched.is_running(id));
      rows_held += static_cast<int64_t>(rows);
    }
    ASSERT_LE(rows_held, sched.num_running_rows());
    ASSERT_EQ(cache.num_sequences(), rows_held);
    std::set<RequestId> seen;
    for (const ScheduledWork& w : out.work) {
      ASSERT_TRUE(seen.insert(w.id).second) << "request " << w.id << " twice";
      ASSERT_TRUE(sched.is_running(w.id));
      ASSERT_GT(w.num_tokens, 0);
      ASSERT_EQ(w.num_rows, static_cast<int>(sched.rows(w.id).size()));
      ASSERT_EQ(w.start, sched.num_computed(w.id));
      ASSERT_LE(w.start + w.num_tokens, sched.num_tokens(w.id));
    }
    // A victim is out of the cache, unless room was left to re-admit it at
    // once (it leads the queue): then it starts over from an empty sequence.
    for (RequestId id : out.preempted) {
      // The owner of a group that had forked recomputes the rows' shared
      // prefix (at least the prompt) as one row, then forks it again.
      SimRequest& victim = live.at(id);
      if (victim.width > 1 && (victim.generated > 0 || victim.fork_at >= 0)) {
        ++stats->group_preemptions;
        if (victim.fork_at < 0) victim.resume_tokens = sched.num_tokens(id);
        victim.fork_at = uniform(victim.prompt_total, victim.resume_tokens - 1);
        victim.fork_at = std::min(victim.fork_at, sched.num_tokens(id));
        ASSERT_TRUE(sched.Truncate(id, victim.fork_at).ok());
      }
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
      for (SequenceId row : sched.rows(w.id)) {
        ASSERT_EQ(cache.num_tokens(row), w.start);
        const absl::Status s = cache.Append(row, w.num_tokens, &copies);
        ASSERT_TRUE(s.ok()) << "step " << step << ": " << s;
      }
    }
    sched.OnStepDone(out);
    stats->computed += out.num_tokens();

    // Sampling: finished prompts generate one token per computed step.
    for (auto it = live.begin(); it != live.end();) {
      const RequestId id = it->first;
      SimRequest& r = it->second;
      for (SequenceId row : sched.rows(id)) {
        ASSERT_EQ(cache.num_tokens(row), sched.num_computed(id));
      }
      const bool done_computing = sched.is_running(id) &&
                                  sched.num_computed(id) == sched.num_tokens(id) &&
                                  r.prompt_known == r.prompt_total;
      if (done_computing && r.fork_at >= 0) {
        // The shared prefix is back: fork it into the group's rows.
        ASSERT_EQ(sched.rows(id).size(), 1u);
        std::vector<SequenceId> rows = {id};
        for (int i = 1; i < r.width; ++i) {
          rows.push_back(next_row++);
          ASSERT_TRUE(cache.Fork(id, rows.back()).ok());
        }
        ASSERT_TRUE(sched.SetRows(id, rows).ok());
        ASSERT_TRUE(sched.AppendTokens(id, r.resume_tokens - r.fork_at).ok());
        r.fork_at = -1;
      } else if (done_computing) {
        if (r.width > 1 && r.generated < r.max_new) {
          // A beam step: each next row continues a random current row; a
          // parent's first child keeps its sequence, others fork it, and
          // parents without children are freed.
          const std::vector<SequenceId> parents = sched.rows(id);
          std::vector<bool> kept(parents.size(), false);
          std::vector<SequenceId> rows;
          for (int i = 0; i < r.width; ++i) {
            const size_t p = static_cast<size_t>(uniform(0, static_cast<int64_t>(parents.size()) - 1));
            if (kept[p]) {
              rows.push_back(next_row++);
              ASSERT_TRUE(cache.Fork(parents[p], rows.back()).ok());
            } else {
              kept[p] = true;
              rows.push_back(parents[p]);
            }
          }
          for (size_t p = 0; p < parents.size(); ++p) {
            if (!kept[p]) ASSERT_TRUE(cache.Free(parents[p]).ok());
          }
          ASSERT_TRUE(sched.SetRows(id, rows).ok());
        }
        if (r.generated < r.max_new) {
          ASSERT_TRUE(sched.AppendTokens(id, 1).ok());
          ++r.generated;
        } else {
          stats->max_latency = std::max(stats->max_latency, step - r.arrival_step);
          ASSERT_LE(step - r.arrival_step, kMaxLatencySteps) << "request " << id << " starved";
          ASSERT_TRUE(sched.Remove(id));
          ++stats->finished;
          stats->groups_finished += r.width > 1;
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

TEST(SchedulerSimulationTest, RandomTrafficWithBeamGroupsKeepsPromisesWithoutLeaksOrStarvation) {
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
    total.group_preemptions += stats.group_preemptions;
    total.groups_finished += stats.groups_finished;
    total.readmitted_at_once += stats.readmitted_at_once;
    total.computed += stats.computed;

    total.max_latency = std::max(total.max_latency, stats.max_latency);
  }
  // The traffic must exercise the interesting paths.
  EXPECT_GT(total.preemptions, 100);
  EXPECT_GT(total.cancelled, 50);
  EXPECT_GT(total.rejected, 50);
  EXPECT_GT(total.groups_finished, 100);
  EXPECT_GT(total.group_preemptions, 50);
  std::printf(
      "finished %lld (%lld groups), group preemptions %lld, cancelled %lld, rejected %lld, preemptions %lld (%lld re-admitted at once), "
      "tokens computed %lld, max latency %lld steps\n",
      static_cast<long long>(total.finished), static_cast<long long>(total.groups_finished),
      static_cast<long long>(total.group_preemptions), static_cast<long long>(total.cancelled),
      static_cast<long long>(total.rejected), static_cast<long long>(total.preemptions),
      static_cast<long long>(total.readmitted_at_once), static_cast<long long>(total.computed),
      static_cast<long long>(total.max_latency));
}

}  // namespace
}  // namespace mtla
