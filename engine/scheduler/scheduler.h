// Iteration-level (continuous-batching) scheduler, after vLLM v1: every request
// has `num_tokens` (tokens known so far: prompt, generated, streamed input) and
// `num_computed` (tokens whose KV is in the cache). Each step assigns
// {request: n_tokens} within a token budget, mixing chunked prefill and decode.
//
// Policy:
//  - Running requests are served first, in admission order; each gets
//    min(num_tokens - num_computed, remaining budget) tokens. A request with
//    nothing to compute (streaming input not arrived yet) keeps its blocks and
//    gets no work.
//  - When the cache cannot hold a running request's tokens, the most recently
//    admitted running request is preempted by recompute: its blocks are freed,
//    num_computed returns to 0 and it goes back to the front of the waiting
//    queue (it keeps its tokens, so its output continues seamlessly later). A
//    request may preempt itself when it is the newest.
//  - Waiting requests are admitted in FCFS order (preempted ones first, by
//    arrival) while there is a running slot, token budget and cache room for
//    their first chunk; admission stops at the first that does not fit. A
//    request with no tokens yet (streaming input) is admitted with no work.
//    A step that preempted admits nothing (as vLLM v1): re-admitting a victim
//    at once would only waste its recompute while the cache is under pressure.
//
// The scheduler decides; it does not allocate. Its promise: the blocks that
// ModelRunner::Step needs for the returned work are free (it counts
// KvCacheManager::BlocksNeededToAppend per scheduled request). It adds a
// request's sequence to the cache on admission and frees it on preemption and
// removal.
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

using RequestId = int64_t;  // also the request's SequenceId in the cache

struct SchedulerConfig {
  int max_running = 64;          // requests holding cache at once
  int max_batched_tokens = 512;  // tokens per step
  int max_waiting = 256;         // bound of the waiting queue
};

struct ScheduledWork {
  RequestId id = 0;
  int64_t start = 0;   // == num_computed when scheduled
  int num_tokens = 0;  // compute tokens [start, start + num_tokens)
};

struct SchedulerOutput {
  std::vector<ScheduledWork> work;      // in running order
  std::vector<RequestId> preempted;     // preempted during this call
  std::vector<RequestId> admitted;      // admitted during this call
  int64_t num_tokens() const;
};

class Scheduler {
 public:
  // `cache` must outlive the scheduler.
  Scheduler(const SchedulerConfig& config, KvCacheManager* cache);

  // Queues a request with `num_tokens` known tokens that may grow to at most
  // `max_total_tokens`. ResourceExhausted when the waiting queue is full or
  // max_total_tokens can never fit the whole cache; AlreadyExists for a
  // duplicate id (or one the cache already holds); InvalidArgument when
  // num_tokens < 0 or max_total_tokens < num_tokens.
  absl::Status Add(RequestId id, int64_t num_tokens, int64_t max_total_tokens);
  // `count` more tokens became known (a sampled token, streamed input).
  // NotFound for an unknown id, InvalidArgument for count < 0, OutOfRange when
  // the request would exceed its max_total_tokens (nothing changes then).
  absl::Status AppendTokens(RequestId id, int64_t count);
  // Marks the work of `output` as computed (num_computed += n for each entry
  // still present). Call after the step ran. Entries whose request was removed
  // or preempted since (num_computed != start, or not running) are ignored.
  void OnStepDone(const SchedulerOutput& output);
  // Forgets a request wherever it is (waiting or running) and frees its blocks.
  // Returns false when unknown.
  bool Remove(RequestId id);
  // Forgets a running request but keeps its cache sequence, whose ownership
  // passes to the caller (a beam search taking over a prefilled request).
  // Returns false when unknown.
  bool Release(RequestId id);

  // Plans the next step (see the policy above). `reserved_blocks` are free
  // blocks promised to work outside the scheduler in the same step (beam
  // searches); the plan leaves them free, preempting if it must.
  SchedulerOutput Schedule(int64_t reserved_blocks = 0);

  // Policy pieces, public so they can be tested on their own; Schedule() is
  // ScheduleRunning() then, when nothing was preempted, AdmitWaiting() with the
  // same budget.
  struct Budget {
    int64_t tokens = 0;           // tokens left in this step
    int64_t reserved_blocks = 0;  // blocks promised to work already planned
  };
  void ScheduleRunning(Budget* budget, SchedulerOutput* out);
  void AdmitWaiting(Budget* budget, SchedulerOutput* out);
  // Preempts the newest running request; returns its id, or -1 if none runs.
  // If that request has the last entry of `out->work` (planned earlier in this
  // call), the entry is dropped; the caller's Budget is not refunded. Schedule()
  // only preempts requests it has not planned yet.
  RequestId PreemptNewest(SchedulerOutput* out);

  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  bool contains(RequestId id) const { return requests_.contains(id); }
  // -1 for an unknown id.
  int64_t num_tokens(RequestId id) const;
  int64_t num_computed(RequestId id) const;
  // false for an unknown id.
  bool is_running(RequestId id) const;
  const SchedulerConfig& config() const { return config_; }

 private:
  struct Entry {
    RequestId id = 0;
    int64_t num_tokens = 0;
    int64_t num_computed = 0;  // == the cache's num_tokens(id) while running
    int64_t max_total_tokens = 0;
    int64_t arrival = 0;     // FCFS order
    size_t slot = 0;         // index in running_ while running
    bool running = false;
    bool preempted = false;  // has been admitted before (queued ahead of new ones)
  };
  // Blocks the cache still needs for `n` more tokens of running `e`.
  int64_t BlocksNeeded(const Entry& e, int n) const;
  int64_t available_blocks(const Budget& budget) const {
    return cache_->num_free_blocks() - budget.reserved_blocks;
  }
  void RequeuePreempted(Entry* e);

  bool Forget(RequestId id, bool free_cache);

  SchedulerConfig config_;
  KvCacheManager* cache_;
  // Node-based: Entry addresses stay valid until the entry is erased, so the
  // queues below hold pointers and the hot loops do no hash lookups.
  std::unordered_map<RequestId, Entry> requests_;
  std::vector<Entry*> running_;  // admission order
  std::deque<Entry*> waiting_;   // front = next to admit
  int64_t next_arrival_ = 0;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_SCHEDULER_SCHEDULER_H_
