// Continuous-batching scheduler over groups of rows. See scheduler.h for the
// policy and contracts.
#include "engine/scheduler/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace mtla {
namespace {

const std::vector<SequenceId>& NoRows() {
  static const std::vector<SequenceId>* const empty = new std::vector<SequenceId>();
  return *empty;
}

}  // namespace

int64_t MaxGroupBlocks(const KvCacheGeometry& geometry, int64_t shared_tokens,
                       int64_t max_total_tokens, int width) {
  const int64_t per_row = geometry.BlocksForTokens(max_total_tokens);
  // Only complete blocks stay shared: the block holding a partial slot or a
  // partly filled block is copied by the first row that writes to it.
  const int64_t shared = std::min(shared_tokens / geometry.tokens_per_block(), per_row);
  return shared + static_cast<int64_t>(width) * (per_row - shared);
}

int64_t SchedulerOutput::num_tokens() const {
  int64_t total = 0;
  for (const ScheduledWork& w : work) total += static_cast<int64_t>(w.num_tokens) * w.num_rows;
  return total;
}

Scheduler::Scheduler(const SchedulerConfig& config, KvCacheManager* cache)
    : config_(config), cache_(cache) {
  running_.reserve(std::max(config.max_running, 0));
}

absl::Status Scheduler::Add(RequestId id, int64_t num_tokens, int64_t max_total_tokens,
                            int max_width) {
  if (num_tokens < 0 || max_total_tokens < num_tokens || max_width < 1) {
    return absl::InvalidArgumentError(absl::StrCat("request ", id, ": num_tokens ", num_tokens,
                                                   ", max_total_tokens ", max_total_tokens,
                                                   ", max_width ", max_width));
  }
  if (requests_.contains(id) || cache_->contains(id)) {
    return absl::AlreadyExistsError(absl::StrCat("request ", id, " already exists"));
  }
  const int64_t blocks =
      MaxGroupBlocks(cache_->geometry(), num_tokens, max_total_tokens, max_width);
  if (blocks > cache_->num_total_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request ", id, " may need ", blocks, " KV cache blocks (", max_width, " x ",
        max_total_tokens, " tokens); the cache has ", cache_->num_total_blocks()));
  }
  if (max_width > config_.max_running || max_width > config_.max_batched_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request ", id, " needs ", max_width, " sequences at once; the engine runs at most ",
        std::min(config_.max_running, config_.max_batched_tokens)));
  }
  if (num_waiting() >= config_.max_waiting) {
    return absl::ResourceExhaustedError(
        absl::StrCat("waiting queue is full (", config_.max_waiting, " requests)"));
  }
  Entry& e = requests_[id];
  e.id = id;
  e.num_tokens = num_tokens;
  e.max_total_tokens = max_total_tokens;
  e.max_width = max_width;
  e.arrival = next_arrival_++;
  waiting_.push_back(&e);
  return absl::OkStatus();
}

absl::Status Scheduler::AppendTokens(RequestId id, int64_t count) {
  auto it = requests_.find(id);
  if (it == requests_.end()) {
    return absl::NotFoundError(absl::StrCat("request ", id, " not found"));
  }
  if (count < 0) {
    return absl::InvalidArgumentError(absl::StrCat("request ", id, ": negative count ", count));
  }
  Entry& e = it->second;
  if (count > e.max_total_tokens - e.num_tokens) {
    return absl::OutOfRangeError(absl::StrCat("request ", id, ": ", e.num_tokens, " + ", count,
                                              " tokens exceed its maximum ", e.max_total_tokens));
  }
  e.num_tokens += count;
  return absl::OkStatus();
}

absl::Status Scheduler::Truncate(RequestId id, int64_t num_tokens) {
  auto it = requests_.find(id);
  if (it == requests_.end()) {
    return absl::NotFoundError(absl::StrCat("request ", id, " not found"));
  }
  Entry& e = it->second;
  if (e.running) {
    return absl::FailedPreconditionError(absl::StrCat("request ", id, " is running"));
  }
  if (num_tokens < 0 || num_tokens > e.num_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("request ", id, ": cannot truncate ",
                                                   e.num_tokens, " tokens to ", num_tokens));
  }
  e.num_tokens = num_tokens;
  return absl::OkStatus();
}

absl::Status Scheduler::SetRows(RequestId id, std::vector<SequenceId> rows) {
  auto it = requests_.find(id);
  if (it == requests_.end()) {
    return absl::NotFoundError(absl::StrCat("request ", id, " not found"));
  }
  Entry& e = it->second;
  if (!e.running) {
    return absl::FailedPreconditionError(absl::StrCat("request ", id, " is not running"));
  }
  if (static_cast<int>(rows.size()) > e.max_width) {
    return absl::InvalidArgumentError(absl::StrCat("request ", id, ": ", rows.size(),
                                                   " rows, at most ", e.max_width));
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!cache_->contains(rows[i]) || cache_->num_tokens(rows[i]) != e.num_computed) {
      return absl::InvalidArgumentError(
          absl::StrCat("request ", id, ": row ", rows[i], " is not a cache sequence of ",
                       e.num_computed, " tokens"));
    }
    if (std::find(rows.begin(), rows.begin() + static_cast<ptrdiff_t>(i), rows[i]) !=
        rows.begin() + static_cast<ptrdiff_t>(i)) {
      return absl::InvalidArgumentError(absl::StrCat("request ", id, ": row ", rows[i], " twice"));
    }
  }
  e.rows = std::move(rows);
  return absl::OkStatus();
}

void Scheduler::OnStepDone(const SchedulerOutput& output) {
  // `work` follows running order, which between Schedule() and here only
  // loses elements or grows at the back, so a merge walk over running_ finds
  // most entries without hashing; a miss falls back to a lookup.
  constexpr size_t kLookahead = 8;
  size_t j = 0;
  for (const ScheduledWork& w : output.work) {
    Entry* e = nullptr;
    for (size_t k = j; k < running_.size() && k < j + kLookahead; ++k) {
      if (running_[k]->id == w.id) {
        e = running_[k];
        break;
      }
    }
    if (e == nullptr) {
      auto it = requests_.find(w.id);
      if (it == requests_.end()) continue;
      e = &it->second;
    }
    if (!e->running || e->num_computed != w.start) continue;  // removed or preempted since
    j = e->slot + 1;
    e->num_computed = std::min(e->num_computed + w.num_tokens, e->num_tokens);
  }
}

void Scheduler::FreeRows(Entry* e) {
  for (SequenceId row : e->rows) (void)cache_->Free(row);  // present while running
  e->rows.clear();
}

bool Scheduler::Remove(RequestId id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  Entry* e = &it->second;
  if (e->running) {
    running_.erase(running_.begin() + static_cast<ptrdiff_t>(e->slot));
    for (size_t k = e->slot; k < running_.size(); ++k) running_[k]->slot = k;
    running_rows_ -= e->max_width;
    FreeRows(e);
  } else {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), e));
  }
  requests_.erase(it);
  return true;
}

SchedulerOutput Scheduler::Schedule() {
  SchedulerOutput out;
  out.work.reserve(running_.size() + 8);
  Budget budget;
  budget.tokens = config_.max_batched_tokens;
  ScheduleRunning(&budget, &out);
  // A step that had to preempt admits nothing: the cache is under pressure,
  // and re-admitting the victim at once only wastes the recompute (vLLM v1).
  if (out.preempted.empty()) AdmitWaiting(&budget, &out);
  return out;
}

int64_t Scheduler::BlocksNeeded(const Entry& e, int n) {
  // The manager's count includes the copy-on-write of a tail block shared
  // after a fork (and sees that its last owner writes in place).
  if (e.rows.size() == 1) return cache_->BlocksNeededToAppend(e.rows[0], n);
  appends_.clear();
  for (SequenceId row : e.rows) appends_.emplace_back(row, n);
  return cache_->BlocksNeededToAppendAll(appends_);
}

void Scheduler::ScheduleRunning(Budget* budget, SchedulerOutput* out) {
  // running_ shrinks from the back while preempting, so re-read its size.
  for (size_t i = 0; i < running_.size() && budget->tokens > 0; ++i) {
    Entry* e = running_[i];
    const int64_t pending = e->num_tokens - e->num_computed;
    const int64_t width = static_cast<int64_t>(e->rows.size());
    if (pending <= 0 || width == 0) continue;  // nothing known to compute: keeps its blocks
    const int n = static_cast<int>(std::min(pending, budget->tokens / width));
    if (n <= 0) continue;  // not every row fits the budget left: the whole group waits
    int64_t blocks = BlocksNeeded(*e, n);
    bool self_preempted = false;
    while (blocks > available_blocks(*budget)) {
      // Only groups after `e` (not planned yet) can be the newest.
      if (PreemptNewest(out) == e->id) {
        self_preempted = true;
        break;
      }
      blocks = BlocksNeeded(*e, n);
    }
    if (self_preempted) break;  // e was the newest: nothing runs after it
    out->work.push_back({e->id, e->num_computed, n, static_cast<int>(width)});
    budget->tokens -= n * width;
    budget->reserved_blocks += blocks;
  }
}

void Scheduler::AdmitWaiting(Budget* budget, SchedulerOutput* out) {
  const KvCacheGeometry& geometry = cache_->geometry();
  while (!waiting_.empty()) {
    Entry* e = waiting_.front();
    if (running_rows_ + e->max_width > config_.max_running) break;  // FCFS: no skipping ahead
    const int64_t pending = e->num_tokens;  // num_computed is 0 while waiting
    const int n = static_cast<int>(std::min(pending, budget->tokens));
    if (pending > 0 && n <= 0) break;  // no token budget left
    const int64_t blocks = geometry.BlocksForTokens(n);  // fresh sequence: no sharing
    if (blocks > available_blocks(*budget)) break;
    if (!cache_->AddSequence(e->id).ok()) break;  // id taken in the cache by others
    waiting_.pop_front();
    e->running = true;
    e->num_computed = 0;
    e->rows.assign(1, e->id);
    e->slot = running_.size();
    running_.push_back(e);
    running_rows_ += e->max_width;
    out->admitted.push_back(e->id);
    if (n > 0) {
      out->work.push_back({e->id, 0, n, 1});
      budget->tokens -= n;
      budget->reserved_blocks += blocks;
    }
  }
}

RequestId Scheduler::PreemptNewest(SchedulerOutput* out) {
  if (running_.empty()) return -1;
  Entry* e = running_.back();
  running_.pop_back();
  running_rows_ -= e->max_width;
  FreeRows(e);
  if (!out->work.empty() && out->work.back().id == e->id) out->work.pop_back();
  e->running = false;
  e->num_computed = 0;
  RequeuePreempted(e);
  out->preempted.push_back(e->id);
  return e->id;
}

void Scheduler::RequeuePreempted(Entry* e) {
  // Preempted groups lead the queue, by arrival; then never-admitted ones.
  e->preempted = true;
  auto pos = waiting_.begin();
  while (pos != waiting_.end() && (*pos)->preempted && (*pos)->arrival < e->arrival) ++pos;
  waiting_.insert(pos, e);
}

int64_t Scheduler::num_tokens(RequestId id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? -1 : it->second.num_tokens;
}

int64_t Scheduler::num_computed(RequestId id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? -1 : it->second.num_computed;
}

bool Scheduler::is_running(RequestId id) const {
  auto it = requests_.find(id);
  return it != requests_.end() && it->second.running;
}

const std::vector<SequenceId>& Scheduler::rows(RequestId id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? NoRows() : it->second.rows;
}

}  // namespace mtla
