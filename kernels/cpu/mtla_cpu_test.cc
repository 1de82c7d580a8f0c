// The AVX-512 paged MTLA attention kernel against the scalar reference
// (MtlaAttentionImpl::kReference), on random caches: a sweep of head counts,
// latent / rope widths, down rates s, block sizes and context lengths 1..2048.
//
// Tolerance: per query token, relative L2 error ||avx512 - ref|| / ||ref||
// over its [heads, r] output <= 5e-6 (fp32 both; they differ in summation
// order, the one-pass online softmax and the polynomial exp; the largest
// error seen is 2.1e-6, one head over 2048 keys).
//
// Cache storage starts as NaN and only the slots the queries may read are
// filled; block tables are shuffled across sequences with unused blocks among
// them, and the row of each token's own (still-merging) slot stays NaN in the
// cache, so reading anything but complete slots and the partial row fails.
// Each case runs the decode tokens of all sequences in one step (few splits),
// each decode token alone (batch 1: the key range split across threads) and
// 5-token prefill chunks (no split), with the caller's scratch and without.
#include "kernels/cpu/mtla_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"

namespace mtla::cpu {
namespace {

constexpr double kTolerance = 5e-6;

struct Shape {
  int heads, r, rope_dim;
};

using Param = std::tuple<Shape, int /*down_rate*/, int /*block_slots*/>;

class MtlaAttentionKernelTest : public testing::TestWithParam<Param> {};

double RelL2(const float* got, const float* want, int64_t n) {
  double diff = 0.0, norm = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    diff += d * d;
    norm += static_cast<double>(want[i]) * want[i];
  }
  if (std::isnan(diff)) return NAN;
  return std::sqrt(diff / std::max(norm, 1e-30));
}

TEST_P(MtlaAttentionKernelTest, MatchesReference) {
  const auto [shape, s, block_slots] = GetParam();
  const MtlaAttentionParams probe{PagedCacheView{nullptr, block_slots, shape.r, shape.rope_dim},
                                  nullptr, 0, s, shape.heads};
  if (SelectedMtlaAttentionImpl(probe) != MtlaAttentionImpl::kAvx512) {
    GTEST_SKIP() << "this CPU or shape runs the reference only";
  }
  const int width = shape.r + shape.rope_dim;
  const int heads = shape.heads;
  // Sequence lengths in tokens (the last token is the query): around tile and
  // split boundaries, and long contexts (shorter for the widest shape).
  std::vector<int64_t> lengths = {1, 2, 16 * s, 16 * s + 1, 33, 100, 257, 700};
  lengths.push_back(heads >= 64 ? 1024 : 2048);
  const uint32_t seed = static_cast<uint32_t>(heads * 1000 + shape.r * 10 + s * 3 + block_slots);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);

  // Blocks: each sequence's table, then shuffled ids with as many unused.
  std::vector<int64_t> num_blocks(lengths.size());
  int64_t total_blocks = 0;
  for (size_t b = 0; b < lengths.size(); ++b) {
    const int64_t slots = (lengths[b] + s - 1) / s;
    num_blocks[b] = (slots + block_slots - 1) / block_slots;
    total_blocks += num_blocks[b];
  }
  const int64_t pool = 2 * total_blocks + 3;
  std::vector<int32_t> ids(pool);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<std::vector<int32_t>> tables(lengths.size());
  size_t next = 0;
  for (size_t b = 0; b < lengths.size(); ++b) {
    for (int64_t i = 0; i < num_blocks[b]; ++i) tables[b].push_back(ids[next++]);
  }
  std::vector<float> storage(static_cast<size_t>(pool) * block_slots * width, NAN);
  const PagedCacheView cache{storage.data(), block_slots, shape.r, shape.rope_dim};
  // Complete slots of the longest query of each sequence (its last token).
  for (size_t b = 0; b < lengths.size(); ++b) {
    const int64_t complete = (lengths[b] - 1) / s;
    for (int64_t k = 0; k < complete; ++k) {
      float* row = cache.Row(tables[b].data(), k);
      for (int j = 0; j < width; ++j) row[j] = normal(rng);
    }
  }

  // Runs one step of `chunks` (tokens laid out in chunk order) both ways.
  auto check = [&](const std::vector<SequenceChunk>& chunks, const char* what) {
    int64_t n = 0;
    for (const SequenceChunk& c : chunks) n += c.num_tokens;
    std::vector<float> q(static_cast<size_t>(n) * heads * width);
    std::vector<float> partial(static_cast<size_t>(n) * width);
    for (float& x : q) x = normal(rng);
    for (float& x : partial) x = normal(rng);
    MtlaAttentionParams p;
    p.cache = cache;
    p.chunks = chunks.data();
    p.num_chunks = static_cast<int>(chunks.size());
    p.down_rate = s;
    p.num_heads = heads;
    p.q = q.data();
    p.partial_rows = partial.data();
    p.scale = 1.0f / std::sqrt(static_cast<float>(width / 3));
    std::vector<float> want(static_cast<size_t>(n) * heads * shape.r, NAN);
    p.out = want.data();
    MtlaAttention(p, MtlaAttentionImpl::kReference);
    for (bool own_scratch : {false, true}) {
      std::vector<float> scratch;
      if (own_scratch) {
        scratch.assign(MtlaAttentionScratchFloats(p), NAN);
        p.scratch = scratch.data();
        p.scratch_floats = static_cast<int64_t>(scratch.size());
      }
      std::vector<float> got(want.size(), NAN);
      p.out = got.data();
      MtlaAttention(p, MtlaAttentionImpl::kAvx512);
      for (const SequenceChunk& c : chunks) {
        for (int i = 0; i < c.num_tokens; ++i) {
          const int64_t row = (c.token_offset + i) * heads * shape.r;
          const double err = RelL2(got.data() + row, want.data() + row, heads * shape.r);
          EXPECT_LE(err, kTolerance) << what << ", token at position " << c.start + i
                                     << (own_scratch ? ", caller's scratch" : "");
        }
      }
    }
  };

  // Every sequence's last token, one step.
  std::vector<SequenceChunk> decode;
  for (size_t b = 0; b < lengths.size(); ++b) {
    decode.push_back({tables[b].data(), lengths[b] - 1, 1, static_cast<int64_t>(b)});
  }
  check(decode, "decode batch");
  // Each alone (batch 1: split key ranges).
  for (size_t b = 0; b < lengths.size(); ++b) {
    check({{tables[b].data(), lengths[b] - 1, 1, 0}}, "decode alone");
  }
  // Prefill chunks: the last up-to-5 tokens of each sequence, one step.
  std::vector<SequenceChunk> prefill;
  int64_t offset = 0;
  for (size_t b = 0; b < lengths.size(); ++b) {
    const int n = static_cast<int>(std::min<int64_t>(5, lengths[b]));
    prefill.push_back({tables[b].data(), lengths[b] - n, n, offset});
    offset += n;
  }
  check(prefill, "prefill chunks");
}

std::string Name(const testing::TestParamInfo<Param>& info) {
  const auto& [shape, s, block_slots] = info.param;
  return "H" + std::to_string(shape.heads) + "_r" + std::to_string(shape.r) + "_dR" +
         std::to_string(shape.rope_dim) + "_s" + std::to_string(s) + "_B" +
         std::to_string(block_slots);
}

INSTANTIATE_TEST_SUITE_P(
    Sweep, MtlaAttentionKernelTest,
    testing::Combine(testing::Values(Shape{1, 32, 8}, Shape{3, 32, 8}, Shape{4, 64, 16},
                                     Shape{6, 64, 16}, Shape{8, 256, 32}, Shape{16, 128, 32},
                                     Shape{128, 512, 64}),
                     testing::Values(1, 2, 3, 4), testing::Values(1, 3, 16, 32)),
    Name);

// Shapes the AVX-512 kernel declines run the reference under kAuto.
TEST(MtlaAttentionKernelSelection, OddLatentWidthRunsReference) {
  const MtlaAttentionParams p{PagedCacheView{nullptr, 16, 40, 8}, nullptr, 0, 2, 4};
  EXPECT_EQ(SelectedMtlaAttentionImpl(p), MtlaAttentionImpl::kReference);
}

}  // namespace
}  // namespace mtla::cpu
