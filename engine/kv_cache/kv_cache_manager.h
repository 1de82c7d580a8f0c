// Paged temporal-latent KV cache bookkeeping: a block pool with a free list and
// reference counts, and per-sequence block tables (slot k of a sequence lives in
// block table[k / block_slots] at row k % block_slots).
//
// The manager only tracks indices; tensor storage belongs to the backend. When
// an append must write into a block that other sequences share (the block
// holding the newest, still-merging slot after a fork), the manager allocates a
// private copy and reports {src, dst} in `copies`; the caller copies those
// blocks (all layers) before running the step that writes.
//
// Thread-safety: not thread-safe; owned by the engine thread.
#ifndef MTLA_ENGINE_KV_CACHE_KV_CACHE_MANAGER_H_
#define MTLA_ENGINE_KV_CACHE_KV_CACHE_MANAGER_H_

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/kv_cache/kv_cache_geometry.h"

namespace mtla {

using SequenceId = int64_t;

struct BlockCopy {
  BlockId src;
  BlockId dst;
};

// Free list + reference counts over `num_blocks` blocks.
class BlockPool {
 public:
  explicit BlockPool(int num_blocks);
  // A block with reference count 1; ResourceExhausted when none is free. The
  // most recently released block is handed out first (a fresh pool: 0, 1, ...).
  absl::StatusOr<BlockId> Allocate();
  // Precondition (checked, aborts): `block` is allocated (ref count > 0).
  void AddRef(BlockId block);
  // Drops one reference; the block returns to the free list at zero.
  // Precondition (checked, aborts): `block` is allocated (ref count > 0).
  void Release(BlockId block);
  int ref_count(BlockId block) const { return ref_counts_[block]; }
  int num_total() const { return static_cast<int>(ref_counts_.size()); }
  int num_free() const { return static_cast<int>(free_list_.size()); }
  int num_used() const { return num_total() - num_free(); }

 private:
  std::vector<int> ref_counts_;
  std::vector<BlockId> free_list_;  // LIFO
};

class KvCacheManager {
 public:
  KvCacheManager(const KvCacheGeometry& geometry, int num_blocks);

  const KvCacheGeometry& geometry() const { return geometry_; }

  // Registers an empty sequence. AlreadyExists if `id` is in use.
  absl::Status AddSequence(SequenceId id);
  // `child` gets the parent's token count and shares all its blocks (each
  // block's reference count +1). No data is copied.
  absl::Status Fork(SequenceId parent, SequenceId child);
  // Releases every block of `id` and forgets it. NotFound if unknown.
  absl::Status Free(SequenceId id);
  bool contains(SequenceId id) const { return sequences_.contains(id); }

  // Blocks that Append(id, num_new_tokens) would take from the pool (new
  // blocks plus a copy-on-write of a shared tail block). 0 for an unknown `id`
  // or num_new_tokens <= 0.
  int BlocksNeededToAppend(SequenceId id, int num_new_tokens) const;
  // Blocks that appending appends[i].second tokens to sequence appends[i].first,
  // in order, would take from the pool. Unlike summing BlocksNeededToAppend, it
  // sees that once all but one owner of a shared tail block have copied it,
  // the last owner writes in place. Unknown ids count 0.
  int BlocksNeededToAppendAll(const std::vector<std::pair<SequenceId, int>>& appends) const;
  // Extends `id` by `num_new_tokens` tokens: copy-on-write of the shared block
  // that holds the newest slot when new tokens merge into it or open a slot in
  // it, then new blocks for new slots. All-or-nothing: on ResourceExhausted
  // nothing changes. Appends required block copies to `copies` (at most one:
  // the tail block; must not be null, else InvalidArgument). NotFound for an
  // unknown `id`, InvalidArgument for num_new_tokens < 0; 0 is a no-op.
  absl::Status Append(SequenceId id, int num_new_tokens, std::vector<BlockCopy>* copies);

  // Preconditions for the accessors below: contains(id).
  const std::vector<BlockId>& block_table(SequenceId id) const;
  int64_t num_tokens(SequenceId id) const;

  int num_total_blocks() const { return pool_.num_total(); }
  int num_free_blocks() const { return pool_.num_free(); }
  int num_used_blocks() const { return pool_.num_used(); }
  int ref_count(BlockId block) const { return pool_.ref_count(block); }
  double usage() const {
    return num_total_blocks() == 0 ? 0.0 : static_cast<double>(num_used_blocks()) / num_total_blocks();
  }
  int num_sequences() const { return static_cast<int>(sequences_.size()); }

 private:
  struct Sequence {
    std::vector<BlockId> blocks;
    int64_t num_tokens = 0;
  };
  // What Append(seq, num_new_tokens) would take from the pool.
  struct AppendPlan {
    bool cow = false;         // the tail block is shared and gets written: copy it
    int64_t new_blocks = 0;   // blocks for slots beyond the table
    int64_t total() const { return new_blocks + (cow ? 1 : 0); }
  };
  AppendPlan PlanAppend(const Sequence& seq, int num_new_tokens) const;

  KvCacheGeometry geometry_;
  BlockPool pool_;
  std::unordered_map<SequenceId, Sequence> sequences_;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_KV_CACHE_KV_CACHE_MANAGER_H_
