// Block pool and per-sequence block tables for the paged temporal-latent KV
// cache. See kv_cache_manager.h for the contracts.
#include "engine/kv_cache/kv_cache_manager.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace mtla {
namespace {

// Bookkeeping invariants whose violation would silently corrupt the free list
// or another sequence's cache (double release, out-of-range id). Always on: the
// checks are a compare each and run once per block operation.
void CheckOrDie(bool ok, const char* what, int64_t value) {
  if (ok) return;
  std::fprintf(stderr, "KV cache invariant violated: %s (%lld)\n", what,
               static_cast<long long>(value));
  std::abort();
}

}  // namespace

// ---------------------------------------------------------------------------
// BlockPool

BlockPool::BlockPool(int num_blocks) {
  CheckOrDie(num_blocks >= 0, "negative num_blocks", num_blocks);
  ref_counts_.assign(num_blocks, 0);
  // Pushed in reverse so that a fresh pool hands out 0, 1, 2, ...
  free_list_.reserve(num_blocks);
  for (BlockId b = num_blocks - 1; b >= 0; --b) free_list_.push_back(b);
}

absl::StatusOr<BlockId> BlockPool::Allocate() {
  if (free_list_.empty()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no free KV cache block (", num_total(), " in use)"));
  }
  const BlockId block = free_list_.back();
  free_list_.pop_back();
  ref_counts_[block] = 1;
  return block;
}

void BlockPool::AddRef(BlockId block) {
  CheckOrDie(block >= 0 && block < num_total(), "AddRef: block out of range", block);
  CheckOrDie(ref_counts_[block] > 0, "AddRef: block is free", block);
  ++ref_counts_[block];
}

void BlockPool::Release(BlockId block) {
  CheckOrDie(block >= 0 && block < num_total(), "Release: block out of range", block);
  CheckOrDie(ref_counts_[block] > 0, "Release: block is already free", block);
  if (--ref_counts_[block] == 0) free_list_.push_back(block);
}

// ---------------------------------------------------------------------------
// KvCacheManager

KvCacheManager::KvCacheManager(const KvCacheGeometry& geometry, int num_blocks)
    : geometry_(geometry), pool_(num_blocks) {
  CheckOrDie(geometry.down_rate >= 1, "down_rate must be >= 1", geometry.down_rate);
  CheckOrDie(geometry.block_slots >= 1, "block_slots must be >= 1", geometry.block_slots);
}

absl::Status KvCacheManager::AddSequence(SequenceId id) {
  if (!sequences_.try_emplace(id).second) {
    return absl::AlreadyExistsError(absl::StrCat("sequence ", id, " already exists"));
  }
  return absl::OkStatus();
}

absl::Status KvCacheManager::Fork(SequenceId parent, SequenceId child) {
  auto it = sequences_.find(parent);
  if (it == sequences_.end()) {
    return absl::NotFoundError(absl::StrCat("fork: parent sequence ", parent, " not found"));
  }
  if (sequences_.contains(child)) {
    return absl::AlreadyExistsError(absl::StrCat("fork: child sequence ", child, " already exists"));
  }
  // Copy before inserting: the insert may rehash and invalidate `it`.
  Sequence copy = it->second;
  for (BlockId block : copy.blocks) pool_.AddRef(block);
  sequences_.emplace(child, std::move(copy));
  return absl::OkStatus();
}

absl::Status KvCacheManager::Free(SequenceId id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) {
    return absl::NotFoundError(absl::StrCat("free: sequence ", id, " not found"));
  }
  for (BlockId block : it->second.blocks) pool_.Release(block);
  sequences_.erase(it);
  return absl::OkStatus();
}

KvCacheManager::AppendPlan KvCacheManager::PlanAppend(const Sequence& seq,
                                                      int num_new_tokens) const {
  AppendPlan plan;
  if (num_new_tokens <= 0) return plan;
  const int64_t table_size = static_cast<int64_t>(seq.blocks.size());
  // The first written slot is floor(n / s); it lies in an existing block only
  // when that block is the (partially filled or still merging) tail.
  const int64_t first_block = seq.num_tokens / geometry_.down_rate / geometry_.block_slots;
  plan.cow = first_block < table_size && pool_.ref_count(seq.blocks[first_block]) > 1;
  plan.new_blocks = geometry_.BlocksForTokens(seq.num_tokens + num_new_tokens) - table_size;
  return plan;
}

int KvCacheManager::BlocksNeededToAppend(SequenceId id, int num_new_tokens) const {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return 0;
  return static_cast<int>(PlanAppend(it->second, num_new_tokens).total());
}

int KvCacheManager::BlocksNeededToAppendAll(
    const std::vector<std::pair<SequenceId, int>>& appends) const {
  std::unordered_map<BlockId, int> owners_left;  // shared tail block -> owners still sharing it
  int64_t total = 0;
  for (const auto& [id, count] : appends) {
    auto it = sequences_.find(id);
    if (it == sequences_.end()) continue;
    AppendPlan plan = PlanAppend(it->second, count);
    if (plan.cow) {
      const BlockId tail = it->second.blocks.back();
      auto [entry, inserted] = owners_left.try_emplace(tail, pool_.ref_count(tail));
      if (entry->second > 1) {
        --entry->second;  // this owner takes a private copy
      } else {
        plan.cow = false;  // every other owner copied already: write in place
      }
    }
    total += plan.total();
  }
  return static_cast<int>(total);
}

absl::Status KvCacheManager::Append(SequenceId id, int num_new_tokens,
                                    std::vector<BlockCopy>* copies) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) {
    return absl::NotFoundError(absl::StrCat("append: sequence ", id, " not found"));
  }
  if (num_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("append: sequence ", id, " got negative token count ", num_new_tokens));
  }
  if (copies == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("append: sequence ", id, " copies is null"));
  }
  if (num_new_tokens == 0) return absl::OkStatus();

  Sequence& seq = it->second;
  const AppendPlan plan = PlanAppend(seq, num_new_tokens);
  if (plan.total() > pool_.num_free()) {
    return absl::ResourceExhaustedError(absl::StrCat("sequence ", id, " needs ", plan.total(),
                                                     " blocks, ", pool_.num_free(), " free"));
  }
  // From here on every Allocate succeeds (checked above).
  if (plan.cow) {
    BlockId& tail = seq.blocks.back();  // the first written slot's block is the tail
    const BlockId dst = *pool_.Allocate();
    copies->push_back({tail, dst});
    pool_.Release(tail);  // ref count was > 1: stays alive for the other owners
    tail = dst;
  }
  for (int64_t i = 0; i < plan.new_blocks; ++i) seq.blocks.push_back(*pool_.Allocate());
  seq.num_tokens += num_new_tokens;
  return absl::OkStatus();
}

const std::vector<BlockId>& KvCacheManager::block_table(SequenceId id) const {
  auto it = sequences_.find(id);
  CheckOrDie(it != sequences_.end(), "block_table: unknown sequence", id);
  return it->second.blocks;
}

int64_t KvCacheManager::num_tokens(SequenceId id) const {
  auto it = sequences_.find(id);
  CheckOrDie(it != sequences_.end(), "num_tokens: unknown sequence", id);
  return it->second.num_tokens;
}

}  // namespace mtla
