// Tests for the KV cache geometry, the block pool and the block-table manager.
// The randomized test at the bottom simulates real storage so that a missing or
// misplaced copy-on-write shows up as a corrupted sequence.
#include "engine/kv_cache/kv_cache_manager.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

KvCacheGeometry Geometry(int s, int block_slots) {
  KvCacheGeometry g;
  g.num_layers = 1;
  g.kv_lora_rank = 4;
  g.rope_dim = 2;
  g.down_rate = s;
  g.block_slots = block_slots;
  return g;
}

// ---------------------------------------------------------------------------
// Geometry

TEST(KvCacheGeometryTest, SlotAndBlockCounts) {
  const KvCacheGeometry g = Geometry(/*s=*/2, /*block_slots=*/4);
  EXPECT_EQ(g.SlotsForTokens(0), 0);
  EXPECT_EQ(g.SlotsForTokens(1), 1);
  EXPECT_EQ(g.SlotsForTokens(2), 1);
  EXPECT_EQ(g.SlotsForTokens(3), 2);
  EXPECT_EQ(g.BlocksForTokens(0), 0);
  EXPECT_EQ(g.BlocksForTokens(1), 1);
  EXPECT_EQ(g.BlocksForTokens(8), 1);
  EXPECT_EQ(g.BlocksForTokens(9), 2);
  EXPECT_EQ(g.tokens_per_block(), 8);
}

TEST(KvCacheGeometryTest, BytesPerTokenPerLayer) {
  KvCacheGeometry g;
  g.num_layers = 3;
  g.kv_lora_rank = 256;
  g.rope_dim = 32;
  g.down_rate = 2;
  EXPECT_DOUBLE_EQ(g.BytesPerTokenPerLayer(2), 288.0);  // bf16
  EXPECT_DOUBLE_EQ(g.BytesPerTokenPerLayer(4), 576.0);  // fp32
  g.down_rate = 1;
  EXPECT_DOUBLE_EQ(g.BytesPerTokenPerLayer(2), 576.0);
}

TEST(KvCacheGeometryTest, LayerMajorOffsets) {
  const KvCacheGeometry g = Geometry(2, 4);  // slot_width 6
  EXPECT_EQ(g.BlockElements(), 4u * 6u);
  EXPECT_EQ(g.RowOffset(0, 0, 0, 10), 0u);
  EXPECT_EQ(g.RowOffset(0, 1, 2, 10), (1u * 4 + 2) * 6);
  EXPECT_EQ(g.RowOffset(1, 0, 0, 10), 10u * 4 * 6);
}

// ---------------------------------------------------------------------------
// BlockPool

TEST(BlockPoolTest, AllocateToExhaustion) {
  BlockPool pool(3);
  EXPECT_EQ(pool.num_total(), 3);
  EXPECT_EQ(pool.num_free(), 3);
  std::set<BlockId> got;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<BlockId> b = pool.Allocate();
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(pool.ref_count(*b), 1);
    got.insert(*b);
  }
  EXPECT_EQ(got, (std::set<BlockId>{0, 1, 2}));
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_EQ(pool.num_used(), 3);
  EXPECT_EQ(pool.Allocate().status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(BlockPoolTest, RefCounts) {
  BlockPool pool(2);
  const BlockId b = *pool.Allocate();
  pool.AddRef(b);
  pool.AddRef(b);
  EXPECT_EQ(pool.ref_count(b), 3);
  pool.Release(b);
  pool.Release(b);
  EXPECT_EQ(pool.ref_count(b), 1);
  EXPECT_EQ(pool.num_used(), 1);
  pool.Release(b);
  EXPECT_EQ(pool.ref_count(b), 0);
  EXPECT_EQ(pool.num_used(), 0);
  EXPECT_EQ(pool.num_free(), 2);
}

TEST(BlockPoolTest, LifoReuse) {
  BlockPool pool(4);
  const BlockId a = *pool.Allocate();
  const BlockId b = *pool.Allocate();
  const BlockId c = *pool.Allocate();
  pool.Release(a);
  pool.Release(c);
  EXPECT_EQ(*pool.Allocate(), c);  // last released comes back first
  EXPECT_EQ(*pool.Allocate(), a);
  pool.Release(b);
  EXPECT_EQ(*pool.Allocate(), b);
}

TEST(BlockPoolTest, EmptyPool) {
  BlockPool pool(0);
  EXPECT_EQ(pool.num_total(), 0);
  EXPECT_EQ(pool.Allocate().status().code(), absl::StatusCode::kResourceExhausted);
}

// ---------------------------------------------------------------------------
// Append without sharing

TEST(KvCacheManagerTest, AppendAcrossBlockBoundaries) {
  for (int s = 1; s <= 4; ++s) {
    for (int bs = 1; bs <= 4; ++bs) {
      for (int chunk = 1; chunk <= 9; ++chunk) {
        SCOPED_TRACE(testing::Message() << "s=" << s << " block_slots=" << bs
                                        << " chunk=" << chunk);
        const KvCacheGeometry g = Geometry(s, bs);
        KvCacheManager m(g, 64);
        ASSERT_TRUE(m.AddSequence(1).ok());
        int64_t n = 0;
        std::vector<BlockId> prev;
        while (n + chunk <= 60) {
          const int need = m.BlocksNeededToAppend(1, chunk);
          EXPECT_EQ(need, g.BlocksForTokens(n + chunk) - g.BlocksForTokens(n));
          const int used_before = m.num_used_blocks();
          std::vector<BlockCopy> copies;
          ASSERT_TRUE(m.Append(1, chunk, &copies).ok());
          n += chunk;
          EXPECT_THAT(copies, IsEmpty());
          EXPECT_EQ(m.num_used_blocks() - used_before, need);
          EXPECT_EQ(m.num_tokens(1), n);
          const std::vector<BlockId>& table = m.block_table(1);
          EXPECT_EQ(static_cast<int64_t>(table.size()), g.BlocksForTokens(n));
          // Existing entries never move; all entries are distinct.
          ASSERT_GE(table.size(), prev.size());
          EXPECT_TRUE(std::equal(prev.begin(), prev.end(), table.begin()));
          EXPECT_EQ(std::set<BlockId>(table.begin(), table.end()).size(), table.size());
          prev = table;
        }
      }
    }
  }
}

TEST(KvCacheManagerTest, ZeroTokenAppendIsNoOp) {
  KvCacheManager m(Geometry(2, 2), 4);
  ASSERT_TRUE(m.AddSequence(1).ok());
  EXPECT_EQ(m.BlocksNeededToAppend(1, 0), 0);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(m.Append(1, 0, &copies).ok());
  EXPECT_EQ(m.num_tokens(1), 0);
  EXPECT_THAT(m.block_table(1), IsEmpty());
  EXPECT_EQ(m.num_used_blocks(), 0);
}

// ---------------------------------------------------------------------------
// Copy-on-write

struct CowCase {
  int s;
  int block_slots;
  int prefix_tokens;
  bool expect_copy;
};

// Fork after `prefix_tokens`, then append one token to `writer` (the parent or
// the child); returns the copies reported.
std::vector<BlockCopy> ForkThenAppend(KvCacheManager& m, const CowCase& c, SequenceId writer) {
  EXPECT_TRUE(m.AddSequence(1).ok());
  std::vector<BlockCopy> copies;
  EXPECT_TRUE(m.Append(1, c.prefix_tokens, &copies).ok());
  EXPECT_THAT(copies, IsEmpty());
  EXPECT_TRUE(m.Fork(1, 2).ok());
  EXPECT_EQ(m.BlocksNeededToAppend(writer, 1),
            (c.expect_copy ? 1 : 0) + (c.prefix_tokens % (c.s * c.block_slots) == 0 ? 1 : 0));
  EXPECT_TRUE(m.Append(writer, 1, &copies).ok());
  return copies;
}

TEST(KvCacheManagerTest, CopyOnWriteCases) {
  const CowCase cases[] = {
      {2, 4, 4, true},   // tail block partially filled, new slot opens in it
      {2, 4, 3, true},   // last slot still merging
      {2, 2, 3, true},   // tail block full of slots but its last slot merging
      {3, 2, 5, true},   // merging, s=3
      {1, 4, 2, true},   // s=1, partial tail
      {2, 2, 4, false},  // tail block full and closed: append opens a fresh block
      {1, 1, 3, false},  // every block full at s=1, block_slots=1
      {3, 2, 6, false},
  };
  for (const CowCase& c : cases) {
    for (SequenceId writer : {SequenceId{1}, SequenceId{2}}) {
      SCOPED_TRACE(testing::Message() << "s=" << c.s << " bs=" << c.block_slots
                                      << " prefix=" << c.prefix_tokens << " writer=" << writer);
      KvCacheManager m(Geometry(c.s, c.block_slots), 16);
      const std::vector<BlockCopy> copies = ForkThenAppend(m, c, writer);
      const SequenceId other = writer == 1 ? 2 : 1;
      const std::vector<BlockId>& wt = m.block_table(writer);
      const std::vector<BlockId>& ot = m.block_table(other);
      if (c.expect_copy) {
        ASSERT_EQ(copies.size(), 1u);
        EXPECT_EQ(copies[0].src, ot.back());
        EXPECT_EQ(copies[0].dst, wt.back());
        EXPECT_NE(copies[0].src, copies[0].dst);
        EXPECT_EQ(m.ref_count(copies[0].dst), 1);
        EXPECT_EQ(m.ref_count(copies[0].src), 1);  // now owned by `other` only
        // The other sequence is the sole owner now: its append needs no copy.
        std::vector<BlockCopy> second;
        ASSERT_TRUE(m.Append(other, 1, &second).ok());
        EXPECT_THAT(second, IsEmpty());
      } else {
        EXPECT_THAT(copies, IsEmpty());
        ASSERT_EQ(wt.size(), ot.size() + 1);
        EXPECT_TRUE(std::equal(ot.begin(), ot.end(), wt.begin()));
        for (BlockId b : ot) EXPECT_EQ(m.ref_count(b), 2);
        EXPECT_EQ(m.ref_count(wt.back()), 1);
      }
    }
  }
}

TEST(KvCacheManagerTest, CopyOnWriteOncePerSharer) {
  // Three owners of a merging tail: the first two writers copy, the last one
  // is the sole owner by then and writes in place.
  KvCacheManager m(Geometry(2, 4), 16);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(m.AddSequence(1).ok());
  ASSERT_TRUE(m.Append(1, 5, &copies).ok());
  ASSERT_TRUE(m.Fork(1, 2).ok());
  ASSERT_TRUE(m.Fork(1, 3).ok());
  const BlockId shared = m.block_table(1)[0];
  EXPECT_EQ(m.ref_count(shared), 3);
  for (SequenceId id : {1, 2, 3}) {
    copies.clear();
    ASSERT_TRUE(m.Append(id, 1, &copies).ok());
    if (id < 3) {
      ASSERT_EQ(copies.size(), 1u);
      EXPECT_EQ(copies[0].src, shared);
    } else {
      EXPECT_THAT(copies, IsEmpty());
      EXPECT_EQ(m.block_table(3)[0], shared);
    }
  }
  EXPECT_EQ(m.num_used_blocks(), 3);
}

TEST(KvCacheManagerTest, CopyOnWriteOnlyTouchesTail) {
  // Fork at 2.5 blocks; appending 10 tokens copies the tail and adds blocks,
  // the full shared blocks stay shared.
  KvCacheManager m(Geometry(2, 2), 16);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(m.AddSequence(1).ok());
  ASSERT_TRUE(m.Append(1, 9, &copies).ok());  // 5 slots, 3 blocks
  ASSERT_TRUE(m.Fork(1, 2).ok());
  EXPECT_EQ(m.BlocksNeededToAppend(2, 10), 1 + 2);  // 19 tokens -> 10 slots -> 5 blocks
  ASSERT_TRUE(m.Append(2, 10, &copies).ok());
  ASSERT_EQ(copies.size(), 1u);
  const std::vector<BlockId>& p = m.block_table(1);
  const std::vector<BlockId>& c = m.block_table(2);
  ASSERT_EQ(c.size(), 5u);
  EXPECT_EQ(c[0], p[0]);
  EXPECT_EQ(c[1], p[1]);
  EXPECT_NE(c[2], p[2]);
  EXPECT_EQ(copies[0].src, p[2]);
  EXPECT_EQ(copies[0].dst, c[2]);
  EXPECT_EQ(m.ref_count(p[0]), 2);
  EXPECT_EQ(m.ref_count(p[2]), 1);
}

// ---------------------------------------------------------------------------
// Exhaustion and errors

TEST(KvCacheManagerTest, AppendIsAllOrNothing) {
  KvCacheManager m(Geometry(2, 2), 3);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(m.AddSequence(7).ok());
  ASSERT_TRUE(m.Append(7, 3, &copies).ok());  // 1 block, merging slot
  ASSERT_TRUE(m.Fork(7, 8).ok());
  ASSERT_TRUE(m.AddSequence(9).ok());
  ASSERT_TRUE(m.Append(9, 1, &copies).ok());
  ASSERT_EQ(m.num_free_blocks(), 1);
  const std::vector<BlockId> table_before = m.block_table(7);
  const BlockId shared = table_before[0];

  // 3 -> 6 tokens: copy of the shared tail + 1 new block = 2 blocks, 1 free.
  EXPECT_EQ(m.BlocksNeededToAppend(7, 3), 2);
  copies.assign({{42, 43}});
  const absl::Status st = m.Append(7, 3, &copies);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(st.message(), HasSubstr("sequence 7 needs 2 blocks, 1 free"));
  EXPECT_EQ(copies.size(), 1u);  // untouched
  EXPECT_EQ(m.block_table(7), table_before);
  EXPECT_EQ(m.num_tokens(7), 3);
  EXPECT_EQ(m.ref_count(shared), 2);
  EXPECT_EQ(m.num_free_blocks(), 1);

  // One token fits: copy only.
  copies.clear();
  ASSERT_TRUE(m.Append(7, 1, &copies).ok());
  EXPECT_EQ(copies.size(), 1u);
  EXPECT_EQ(m.num_free_blocks(), 0);
  EXPECT_EQ(m.Append(8, 2, &copies).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(m.Append(8, 1, &copies).ok());  // sole owner now, merges in place
}

TEST(KvCacheManagerTest, Errors) {
  KvCacheManager m(Geometry(1, 2), 4);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(m.AddSequence(1).ok());

  absl::Status st = m.AddSequence(1);
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(st.message(), HasSubstr("1"));

  st = m.Fork(5, 6);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(st.message(), HasSubstr("5"));
  EXPECT_FALSE(m.contains(6));
  EXPECT_EQ(m.Fork(1, 1).code(), absl::StatusCode::kAlreadyExists);

  st = m.Free(3);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(st.message(), HasSubstr("3"));

  st = m.Append(4, 1, &copies);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(st.message(), HasSubstr("4"));

  st = m.Append(1, -2, &copies);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("-2"));
  EXPECT_EQ(m.Append(1, 1, nullptr).code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(m.BlocksNeededToAppend(4, 3), 0);   // unknown
  EXPECT_EQ(m.BlocksNeededToAppend(1, -1), 0);  // negative
  EXPECT_EQ(m.num_sequences(), 1);
  EXPECT_EQ(m.num_used_blocks(), 0);
}

TEST(KvCacheManagerTest, ForkAndFreeRefCounts) {
  KvCacheManager m(Geometry(1, 2), 8);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(m.AddSequence(1).ok());
  ASSERT_TRUE(m.Append(1, 4, &copies).ok());
  ASSERT_TRUE(m.Fork(1, 2).ok());
  EXPECT_EQ(m.num_tokens(2), 4);
  EXPECT_EQ(m.block_table(2), m.block_table(1));
  EXPECT_THAT(m.block_table(1), ElementsAre(0, 1));
  EXPECT_EQ(m.ref_count(0), 2);
  EXPECT_EQ(m.num_used_blocks(), 2);
  EXPECT_DOUBLE_EQ(m.usage(), 0.25);
  ASSERT_TRUE(m.Free(1).ok());
  EXPECT_FALSE(m.contains(1));
  EXPECT_EQ(m.ref_count(0), 1);
  EXPECT_EQ(m.num_used_blocks(), 2);
  ASSERT_TRUE(m.Free(2).ok());
  EXPECT_EQ(m.num_used_blocks(), 0);
  EXPECT_EQ(m.num_sequences(), 0);
}

// ---------------------------------------------------------------------------
// Randomized simulation with real storage

// One float per slot row, single layer. Values are integers below 2^24 so that
// float storage is exact.
class Simulation {
 public:
  Simulation(const KvCacheGeometry& g, int num_blocks, uint32_t seed)
      : g_(g), m_(g, num_blocks), storage_(static_cast<size_t>(num_blocks) * g.block_slots, -1.0f),
        rng_(seed) {}

  void Run(int num_ops) {
    for (int op = 0; op < num_ops; ++op) {
      Step();
      Verify();
      if (HasFatalFailure() || failures_ > 0) return;
    }
    for (auto& [id, ref] : ref_) ASSERT_TRUE(m_.Free(id).ok());
    ref_.clear();
    Verify();
    EXPECT_EQ(m_.num_used_blocks(), 0);
    EXPECT_EQ(m_.num_free_blocks(), m_.num_total_blocks());
    // The run must exercise the interesting paths its geometry allows.
    if (g_.tokens_per_block() > 1) {
      EXPECT_GT(stats_.copies, 0);
    }
    if (g_.down_rate > 1) {
      EXPECT_GT(stats_.merges, 0);
    }
    EXPECT_GT(stats_.exhausted, 0);
  }

 private:
  static bool HasFatalFailure() { return ::testing::Test::HasFatalFailure(); }

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  SequenceId RandomLive() {
    auto it = ref_.begin();
    std::advance(it, Uniform(0, static_cast<int>(ref_.size()) - 1));
    return it->first;
  }

  float& Row(SequenceId id, int64_t slot) {
    const std::vector<BlockId>& table = m_.block_table(id);
    const BlockId block = table[slot / g_.block_slots];
    return storage_[static_cast<size_t>(block) * g_.block_slots + slot % g_.block_slots];
  }

  void Step() {
    const int choice = Uniform(0, 99);
    if (ref_.empty() || (choice < 10 && ref_.size() < 8)) {
      const SequenceId id = next_id_++;
      ASSERT_TRUE(m_.AddSequence(id).ok());
      ref_[id] = {};
      tokens_[id] = 0;
    } else if (choice < 70) {
      Append(RandomLive(), Uniform(0, g_.tokens_per_block() * 2 + 1));
    } else if (choice < 85) {
      if (ref_.size() >= 8) return;
      const SequenceId parent = RandomLive();
      const SequenceId child = next_id_++;
      ASSERT_TRUE(m_.Fork(parent, child).ok());
      ref_[child] = ref_[parent];
      tokens_[child] = tokens_[parent];
    } else {
      const SequenceId id = RandomLive();
      ASSERT_TRUE(m_.Free(id).ok());
      ref_.erase(id);
      tokens_.erase(id);
    }
  }

  void Append(SequenceId id, int k) {
    const int need = m_.BlocksNeededToAppend(id, k);
    const int free_before = m_.num_free_blocks();
    const std::vector<BlockId> table_before = m_.block_table(id);
    std::vector<BlockCopy> copies;
    const absl::Status st = m_.Append(id, k, &copies);
    if (need > free_before) {
      ASSERT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
      ASSERT_THAT(copies, IsEmpty());
      ASSERT_EQ(m_.block_table(id), table_before);
      ASSERT_EQ(m_.num_free_blocks(), free_before);
      ++stats_.exhausted;
      return;
    }
    ASSERT_TRUE(st.ok()) << st;
    ASSERT_EQ(free_before - m_.num_free_blocks(), need);
    ASSERT_LE(copies.size(), 1u);
    stats_.copies += static_cast<int>(copies.size());
    // The caller copies blocks before writing.
    for (const BlockCopy& c : copies) {
      std::copy_n(storage_.begin() + static_cast<size_t>(c.src) * g_.block_slots, g_.block_slots,
                  storage_.begin() + static_cast<size_t>(c.dst) * g_.block_slots);
    }
    std::vector<float>& ref = ref_[id];
    int64_t& n = tokens_[id];
    for (int i = 0; i < k; ++i, ++n) {
      const uint32_t token = static_cast<uint32_t>(Uniform(0, 1 << 20));
      const int64_t slot = n / g_.down_rate;
      float& row = Row(id, slot);
      if (n % g_.down_rate == 0) {  // opens a slot: fresh value
        ASSERT_EQ(static_cast<int64_t>(ref.size()), slot);
        row = static_cast<float>(token);
        ref.push_back(row);
      } else {  // merges into the newest slot
        const uint32_t merged = (static_cast<uint32_t>(row) * 31u + token) % 16777213u;
        row = static_cast<float>(merged);
        ref[slot] = static_cast<float>((static_cast<uint32_t>(ref[slot]) * 31u + token) % 16777213u);
        ++stats_.merges;
      }
    }
    ASSERT_EQ(m_.num_tokens(id), n);
  }

  void Verify() {
    std::map<BlockId, int> refs;
    for (const auto& [id, ref] : ref_) {
      ASSERT_TRUE(m_.contains(id));
      ASSERT_EQ(m_.num_tokens(id), tokens_[id]);
      const std::vector<BlockId>& table = m_.block_table(id);
      ASSERT_EQ(static_cast<int64_t>(table.size()), g_.BlocksForTokens(tokens_[id]));
      ASSERT_EQ(static_cast<int64_t>(ref.size()), g_.SlotsForTokens(tokens_[id]));
      for (BlockId b : table) ++refs[b];
      for (int64_t slot = 0; slot < static_cast<int64_t>(ref.size()); ++slot) {
        if (Row(id, slot) != ref[slot]) {
          ++failures_;
          FAIL() << "sequence " << id << " slot " << slot << ": storage " << Row(id, slot)
                 << " != reference " << ref[slot];
        }
      }
    }
    ASSERT_EQ(m_.num_sequences(), static_cast<int>(ref_.size()));
    int free_count = 0;
    for (BlockId b = 0; b < m_.num_total_blocks(); ++b) {
      const auto it = refs.find(b);
      const int expected = it == refs.end() ? 0 : it->second;
      ASSERT_EQ(m_.ref_count(b), expected) << "block " << b;
      if (expected == 0) ++free_count;
    }
    ASSERT_EQ(m_.num_free_blocks(), free_count);
    ASSERT_EQ(m_.num_used_blocks(), static_cast<int>(refs.size()));
    ASSERT_EQ(m_.num_free_blocks() + m_.num_used_blocks(), m_.num_total_blocks());
  }

  struct Stats {
    int copies = 0;
    int exhausted = 0;
    int merges = 0;
  };

  KvCacheGeometry g_;
  KvCacheManager m_;
  std::vector<float> storage_;
  std::mt19937 rng_;
  std::map<SequenceId, std::vector<float>> ref_;
  std::map<SequenceId, int64_t> tokens_;
  SequenceId next_id_ = 100;
  Stats stats_;
  int failures_ = 0;
};

TEST(KvCacheManagerRandomTest, MatchesReferenceWithRealStorage) {
  struct Config {
    int s;
    int block_slots;
    int num_blocks;
    uint32_t seed;
  };
  const Config configs[] = {
      {1, 1, 12, 1}, {2, 2, 16, 2}, {2, 4, 10, 3}, {3, 2, 24, 4},
      {4, 3, 20, 5}, {4, 1, 32, 6}, {1, 4, 8, 7},  {3, 4, 16, 8},
  };
  for (const Config& c : configs) {
    SCOPED_TRACE(testing::Message() << "s=" << c.s << " block_slots=" << c.block_slots
                                    << " num_blocks=" << c.num_blocks << " seed=" << c.seed);
    Simulation sim(Geometry(c.s, c.block_slots), c.num_blocks, c.seed);
    sim.Run(6000);
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace mtla
