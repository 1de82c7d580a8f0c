// Iteration-level (continuous-batching) scheduler, after vLLM v1. The unit is
// a *group*: one request's 1..k cache sequences (*rows*; k > 1 for beam
// search). All rows of a group hold the same number of tokens: the group has
// `num_tokens` (tokens known so far per row: prompt, generated, streamed
// input) and `num_computed` (tokens per row whose KV is in the cache). Each
// step assigns {group: n tokens for each of its rows} within a token budget,
// mixing chunked prefill and decode.
//
// One invariant for every sequence:
//  - every row of every group is scheduled inside the step's token budget (a
//    group of w rows given n tokens costs w * n), and a running group counts
//    its maximum width toward max_running from admission on;
//  - a group is preempted as a whole (all its rows freed) and recomputed later
//    from its known tokens; nothing runs outside the scheduler.
//
// Policy:
//  - Running groups are served first, in admission order; each gets
//    n = min(num_tokens - num_computed, remaining budget / rows) tokens per
//    row. A group with nothing to compute (streaming input not arrived yet),
//    or whose rows do not all fit the remaining budget, gets no work this step
//    and keeps its blocks.
//  - When the cache cannot hold a running group's tokens, the most recently
//    admitted running group is preempted by recompute: its rows are freed,
//    num_computed returns to 0 and it goes back to the front of the waiting
//    queue (it keeps its tokens, so its output continues seamlessly later). A
//    group may preempt itself when it is the newest.
//  - Waiting groups are admitted in FCFS order (preempted ones first, by
//    arrival) while max_running has room for their maximum width and the
//    token budget and the cache have room for their first chunk; admission
//    stops at the first that does not fit. A group is (re)admitted with one
//    row, a new cache sequence whose id is the request id. A group with no
//    tokens yet (streaming input) is admitted with no work. A step that
//    preempted admits nothing (as vLLM v1): re-admitting a victim at once
//    would only waste its recompute while the cache is under pressure.
//
// Rows: the scheduler adds a group's first row on admission and frees all its
// rows on preemption and removal. The group's owner (the engine, for beam
// search) may replace the rows of a running group between steps with
// SetRows(): it forks and frees cache sequences itself (forks take no blocks;
// the copy-on-write of a shared tail happens at the next append, which the
// scheduler counts).
//
// The scheduler decides; it does not allocate. Its promise: the blocks that
// ModelRunner::Step needs for the returned work are free (it counts
// KvCacheManager::BlocksNeededToAppendAll over each scheduled group's rows).
// Progress: a group admitted alone always fits the whole cache, because Add()
// refuses groups whose worst case (MaxGroupBlocks) exceeds it.
//
// Thread-safety: not thread-safe; owned by the engine thread.
#ifndef MTLA_ENGINE_SCHEDULER_SCHEDULER_H_
#define MTLA_ENGINE_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "engine/kv_cache/kv_cache_manager.h"

namespace mtla {

using RequestId = int64_t;  // also the id of a group's first row in the cache

struct SchedulerConfig {
  int max_running = 64;          // rows holding cache at once (a group counts its max width)
  int max_batched_tokens = 512;  // tokens per step, over all rows
  int max_waiting = 256;         // bound of the waiting queue
};

// The most blocks a group can hold: `width` rows of at most `max_total_tokens`
// tokens each that share the complete blocks of their first `shared_tokens`
// tokens (beam search forks every beam from one root holding the context).
int64_t MaxGroupBlocks(const KvCacheGeometry& geometry, int64_t shared_tokens,
                       int64_t max_total_tokens, int width);

struct ScheduledWork {
  RequestId id = 0;
  int64_t start = 0;   // == num_computed when scheduled
  int num_tokens = 0;  // every row computes tokens [start, start + num_tokens)
  int num_rows = 1;    // the group's rows (Scheduler::rows(id)) when scheduled
};

struct SchedulerOutput {
  std::vector<ScheduledWork> work;      // in running order
  std::vector<RequestId> preempted;     // preempted during this call
  std::vector<RequestId> admitted;      // admitted during this call
  // Tokens the step computes: sum of num_tokens * num_rows.
  int64_t num_tokens() const;
};

class Scheduler {
 public:
  // `cache` must outlive the scheduler.
  Scheduler(const SchedulerConfig& config, KvCacheManager* cache);

  // Queues a group with `num_tokens` known tokens per row that may grow to at
  // most `max_total_tokens`, and to at most `max_width` rows sharing their
  // first `num_tokens` tokens. ResourceExhausted when the waiting queue is
  // full, or the group can never run: MaxGroupBlocks exceeds the whole cache,
  // or max_width exceeds max_running or max_batched_tokens; AlreadyExists for a
  // duplicate id (or one the cache already holds); InvalidArgument when
  // num_tokens < 0, max_total_tokens < num_tokens or max_width < 1.
  absl::Status Add(RequestId id, int64_t num_tokens, int64_t max_total_tokens, int max_width = 1);
  // `count` more tokens per row became known (a sampled token, streamed input).
  // NotFound for an unknown id, InvalidArgument for count < 0, OutOfRange when
  // the group would exceed its max_total_tokens (nothing changes then).
  absl::Status AppendTokens(RequestId id, int64_t count);
  // A waiting group forgets its known tokens beyond `num_tokens` (the owner of
  // a preempted beam group recomputes the beams' shared prefix as one row,
  // forks it, then appends the rest). NotFound for an unknown id;
  // FailedPrecondition while running; InvalidArgument unless
  // 0 <= num_tokens <= num_tokens(id).
  absl::Status Truncate(RequestId id, int64_t num_tokens);
  // Replaces the rows of a running group (see the class comment). Every row
  // must be in the cache holding num_computed(id) tokens; at most max_width
  // rows, no duplicates. An empty list leaves the group nothing to compute.
  // Sequences dropped from the list are the caller's (it has freed them).
  // NotFound for an unknown id, FailedPrecondition when not running,
  // InvalidArgument for a row that breaks the rules (nothing changes then).
  absl::Status SetRows(RequestId id, std::vector<SequenceId> rows);
  // Marks the work of `output` as computed (num_computed += n for each entry
  // still present). Call after the step ran. Entries whose group was removed
  // or preempted since (num_computed != start, or not running) are ignored.
  void OnStepDone(const SchedulerOutput& output);
  // Forgets a group wherever it is (waiting or running) and frees its rows.
  // Returns false when unknown.
  bool Remove(RequestId id);

  // Plans the next step (see the policy above).
  SchedulerOutput Schedule();

  // Policy pieces, public so they can be tested on their own; Schedule() is
  // ScheduleRunning() then, when nothing was preempted, AdmitWaiting() with the
  // same budget.
  struct Budget {
    int64_t tokens = 0;           // tokens left in this step
    int64_t reserved_blocks = 0;  // blocks promised to work already planned
  };
  void ScheduleRunning(Budget* budget, SchedulerOutput* out);
  void AdmitWaiting(Budget* budget, SchedulerOutput* out);
  // Preempts the newest running group; returns its id, or -1 if none runs.
  // If that group has the last entry of `out->work` (planned earlier in this
  // call), the entry is dropped; the caller's Budget is not refunded. Schedule()
  // only preempts groups it has not planned yet.
  RequestId PreemptNewest(SchedulerOutput* out);

  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  // Rows reserved by running groups (the sum of their max widths) <= max_running.
  int num_running_rows() const { return running_rows_; }
  bool contains(RequestId id) const { return requests_.contains(id); }
  // -1 for an unknown id.
  int64_t num_tokens(RequestId id) const;
  int64_t num_computed(RequestId id) const;
  // false for an unknown id.
  bool is_running(RequestId id) const;
  // The group's rows, in the owner's order; empty while waiting or unknown.
  const std::vector<SequenceId>& rows(RequestId id) const;
  const SchedulerConfig& config() const { return config_; }

 private:
  struct Entry {
    RequestId id = 0;
    int64_t num_tokens = 0;
    int64_t num_computed = 0;  // == the cache's num_tokens(row) for every row while running
    int64_t max_total_tokens = 0;
    int max_width = 1;
    std::vector<SequenceId> rows;  // while running
    int64_t arrival = 0;     // FCFS order
    size_t slot = 0;         // index in running_ while running
    bool running = false;
    bool preempted = false;  // has been admitted before (queued ahead of new ones)
  };
  // Blocks the cache still needs for `n` more tokens on every row of running `e`.
  int64_t BlocksNeeded(const Entry& e, int n);
  int64_t available_blocks(const Budget& budget) const {
    return cache_->num_free_blocks() - budget.reserved_blocks;
  }
  void RequeuePreempted(Entry* e);
  void FreeRows(Entry* e);

  SchedulerConfig config_;
  KvCacheManager* cache_;
  // Node-based: Entry addresses stay valid until the entry is erased, so the
  // queues below hold pointers and the hot loops do no hash lookups.
  std::unordered_map<RequestId, Entry> requests_;
  std::vector<Entry*> running_;  // admission order
  std::deque<Entry*> waiting_;   // front = next to admit
  int running_rows_ = 0;         // sum of max_width over running_
  int64_t next_arrival_ = 0;
  std::vector<std::pair<SequenceId, int>> appends_;  // scratch for BlocksNeeded
};

}  // namespace mtla

#endif  // MTLA_ENGINE_SCHEDULER_SCHEDULER_H_
