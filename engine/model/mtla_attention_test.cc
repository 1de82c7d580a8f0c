// Tests of the paged CPU MTLA layer (MtlaAttentionLayer::Forward writing and
// reading the paged temporal-latent cache through block tables) against the
// dense, unabsorbed reference MtlaDenseReference, on random weights and inputs
// with fixed seeds.
//
// Tolerance: relative L2 error ||paged - ref|| / ||ref|| <= 1e-5 (fp32
// kernels against a reference that accumulates dot products in double), for
// every sequence's outputs and for its final cache rows (latent and k_pe).
//
// Cache storage starts as NaN, block tables are shuffled and interleaved with
// never-written blocks, so reading an unused slot, the unused tail of a block
// or another sequence's block poisons the output; writing outside a sequence's
// own rows is caught by counting written rows.
#include "engine/model/mtla_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "engine/kv_cache/kv_cache_manager.h"
#include "engine/model/mtla_attention_reference.h"
#include "gtest/gtest.h"
#include "kernels/cpu/mtla_cpu.h"

namespace mtla {
namespace {

// Relative L2 tolerance for outputs and cache rows (see the file comment).
constexpr double kTolerance = 1e-5;
// Rows of fc_c(PE(k)) precomputed; above every slot index the tests reach.
constexpr int64_t kMaxSlots = 64;

double RelL2(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    diff += d * d;
    norm += static_cast<double>(want[i]) * want[i];
  }
  if (std::isnan(diff)) return NAN;
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

// ---------------------------------------------------------------------------
// Random layers

struct Dims {
  const char* name;
  int embed_dim, num_heads, kv_lora_rank, rope_dim, nope_dim, v_dim, q_lora_rank;
  bool bias;  // bias on wq / wq_a / wq_b / wkv_a / wo
};
constexpr Dims kSmallDims{"E64H4r32", 64, 4, 32, 8, 16, 16, /*q_lora_rank=*/24, /*bias=*/false};
constexpr Dims kWideDims{"E96H6r64", 96, 6, 64, 16, 16, 24, /*q_lora_rank=*/40, /*bias=*/true};

MtlaAttentionConfig MakeConfig(const Dims& d, int down_rate, RopeStyle rope, bool q_lora) {
  MtlaAttentionConfig c;
  c.embed_dim = d.embed_dim;
  c.num_heads = d.num_heads;
  c.q_lora_rank = q_lora ? d.q_lora_rank : 0;
  c.kv_lora_rank = d.kv_lora_rank;
  c.qk_nope_head_dim = d.nope_dim;
  c.qk_rope_head_dim = d.rope_dim;
  c.v_head_dim = d.v_dim;
  c.down_rate = down_rate;
  c.hypernet_rank = d.kv_lora_rank / 4;
  c.rope_style = rope;
  c.rope_theta = 10000.0f;
  c.layer_norm_eps = 1e-5f;
  c.bias = d.bias;
  return c;
}

std::vector<float> Normal(std::mt19937& rng, size_t n, float stddev, float mean = 0.0f) {
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

LinearWeights RandomLinear(std::mt19937& rng, int in, int out, bool bias) {
  LinearWeights w;
  w.in = in;
  w.out = out;
  w.weight = Normal(rng, static_cast<size_t>(in) * out, 0.1f);
  if (bias) w.bias = Normal(rng, out, 0.1f);
  return w;
}

NormWeights RandomNorm(std::mt19937& rng, int d) {
  NormWeights n;
  n.weight = Normal(rng, d, 0.1f, 1.0f);
  n.bias = Normal(rng, d, 0.1f);
  return n;
}

// Weights ~N(0, 0.1), norm weights ~1 + N(0, 0.1), norm biases ~N(0, 0.1);
// hyper_c from a random fc_c through PrecomputeHyperC.
MtlaAttentionWeights RandomWeights(const MtlaAttentionConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  MtlaAttentionWeights w;
  const int q_width = c.num_heads * c.qk_head_dim();
  const int r = c.kv_lora_rank;
  if (c.q_lora_rank == 0) {
    w.wq = RandomLinear(rng, c.embed_dim, q_width, c.bias);
  } else {
    w.wq_a = RandomLinear(rng, c.embed_dim, c.q_lora_rank, c.bias);
    w.q_norm = RandomNorm(rng, c.q_lora_rank);
    w.wq_b = RandomLinear(rng, c.q_lora_rank, q_width, c.bias);
  }
  w.wkv_a = RandomLinear(rng, c.embed_dim, c.slot_width(), c.bias);
  w.kv_norm = RandomNorm(rng, r);
  w.w_uk = Normal(rng, static_cast<size_t>(c.num_heads) * c.qk_nope_head_dim * r, 0.1f);
  w.w_uv = Normal(rng, static_cast<size_t>(c.num_heads) * c.v_head_dim * r, 0.1f);
  w.wo = RandomLinear(rng, c.num_heads * c.v_head_dim, c.embed_dim, c.bias);
  w.fc_p = RandomLinear(rng, r, c.hypernet_rank, /*bias=*/true);
  const LinearWeights fc_c = RandomLinear(rng, r, c.hypernet_rank, /*bias=*/true);
  w.max_slots = kMaxSlots;
  w.hyper_c = PrecomputeHyperC(fc_c, kMaxSlots);
  return w;
}

// One sequence's input: x [T, E] ~N(0, 1) at RoPE positions offset + t.
struct SequenceInput {
  int64_t length = 0;
  std::vector<float> x;
  std::vector<int32_t> positions;
};

std::vector<SequenceInput> RandomInputs(const MtlaAttentionConfig& c,
                                        const std::vector<int64_t>& lengths,
                                        const std::vector<int32_t>& position_offsets,
                                        uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<SequenceInput> inputs;
  for (size_t b = 0; b < lengths.size(); ++b) {
    SequenceInput in;
    in.length = lengths[b];
    in.x = Normal(rng, static_cast<size_t>(lengths[b]) * c.embed_dim, 1.0f);
    for (int64_t t = 0; t < lengths[b]; ++t) {
      in.positions.push_back(position_offsets[b] + static_cast<int32_t>(t));
    }
    inputs.push_back(std::move(in));
  }
  return inputs;
}

struct DenseResult {
  std::vector<float> out, latent, k_pe;
};

DenseResult Dense(const MtlaAttentionConfig& c, const MtlaAttentionWeights& w,
                  const SequenceInput& in) {
  const int64_t slots = (in.length + c.down_rate - 1) / c.down_rate;
  DenseResult r;
  r.out.assign(static_cast<size_t>(in.length) * c.embed_dim, NAN);
  r.latent.assign(static_cast<size_t>(slots) * c.kv_lora_rank, NAN);
  r.k_pe.assign(static_cast<size_t>(slots) * c.qk_rope_head_dim, NAN);
  MtlaDenseReference(c, w, in.x.data(), in.length, in.positions.data(), r.out.data(),
                     r.latent.data(), r.k_pe.data());
  return r;
}

// ---------------------------------------------------------------------------
// Schedules: steps[i][b] = tokens of sequence b in step i (0: not in the step).

enum class Schedule { kOneShot, kTokenByToken, kRandomChunks };

const char* ScheduleName(Schedule s) {
  switch (s) {
    case Schedule::kOneShot:
      return "OneShot";
    case Schedule::kTokenByToken:
      return "TokenByToken";
    case Schedule::kRandomChunks:
      return "RandomChunks";
  }
  return "?";
}

std::vector<std::vector<int>> MakeSchedule(Schedule kind, const std::vector<int64_t>& lengths,
                                           uint32_t seed) {
  const size_t batch = lengths.size();
  std::vector<std::vector<int>> steps;
  std::vector<int64_t> left(lengths);
  auto remaining = [&] {
    return std::any_of(left.begin(), left.end(), [](int64_t n) { return n > 0; });
  };
  switch (kind) {
    case Schedule::kOneShot:
      steps.emplace_back(lengths.begin(), lengths.end());
      break;
    case Schedule::kTokenByToken:
      // Sequence b joins at step 2b, then feeds one token per step.
      for (size_t step = 0; remaining(); ++step) {
        std::vector<int> n(batch, 0);
        for (size_t b = 0; b < batch; ++b) {
          if (step >= 2 * b && left[b] > 0) {
            n[b] = 1;
            --left[b];
          }
        }
        steps.push_back(std::move(n));
      }
      break;
    case Schedule::kRandomChunks: {
      // Chunks of 0..6 tokens (0: the sequence sits the step out), so prefill
      // chunks and single-token decodes of different sequences share steps.
      std::mt19937 rng(seed);
      std::uniform_int_distribution<int> chunk(0, 6);
      while (remaining()) {
        std::vector<int> n(batch, 0);
        bool any = false;
        for (size_t b = 0; b < batch; ++b) {
          n[b] = static_cast<int>(std::min<int64_t>(chunk(rng), left[b]));
          any = any || n[b] > 0;
        }
        if (!any) {
          for (size_t b = 0; b < batch; ++b) {
            if (left[b] > 0) {
              n[b] = 1;
              break;
            }
          }
        }
        for (size_t b = 0; b < batch; ++b) left[b] -= n[b];
        steps.push_back(std::move(n));
      }
      break;
    }
  }
  return steps;
}

// ---------------------------------------------------------------------------
// One layer over a NaN-initialised paged cache with shuffled block tables.

class PagedLayerRun {
 public:
  // Sequence b has id b. Every block of the pool is first handed to a one-block
  // dummy sequence; the dummies are then freed in random order, so that the
  // LIFO free list gives blocks out shuffled. A third of them stay, so
  // never-written blocks sit among the sequences' blocks.
  PagedLayerRun(const MtlaAttentionLayer& layer, int block_slots,
                const std::vector<int64_t>& lengths, uint32_t seed)
      : layer_(layer), lengths_(lengths), rng_(seed) {
    const MtlaAttentionConfig& c = layer.config();
    geometry_.num_layers = 1;
    geometry_.kv_lora_rank = c.kv_lora_rank;
    geometry_.rope_dim = c.qk_rope_head_dim;
    geometry_.down_rate = c.down_rate;
    geometry_.block_slots = block_slots;
    int needed = 0;
    for (int64_t len : lengths) needed += static_cast<int>(geometry_.BlocksForTokens(len));
    // As many never-written dummy blocks as the sequences need, plus spares.
    held_dummies_ = needed;
    num_blocks_ = 3 * needed + 4;
    manager_ = std::make_unique<KvCacheManager>(geometry_, num_blocks_);
    storage_.assign(geometry_.BlockElements() * num_blocks_, NAN);
    view_.rows = storage_.data();
    view_.block_slots = block_slots;
    view_.kv_lora_rank = c.kv_lora_rank;
    view_.rope_dim = c.qk_rope_head_dim;

    std::vector<SequenceId> dummies;
    std::vector<BlockCopy> copies;
    for (int i = 0; i < num_blocks_; ++i) {
      const SequenceId id = kDummyBase + i;
      EXPECT_TRUE(manager_->AddSequence(id).ok());
      EXPECT_TRUE(manager_->Append(id, geometry_.tokens_per_block(), &copies).ok());
      dummies.push_back(id);
    }
    std::shuffle(dummies.begin(), dummies.end(), rng_);
    for (size_t i = held_dummies_; i < dummies.size(); ++i) {
      EXPECT_TRUE(manager_->Free(dummies[i]).ok());
    }
    for (size_t b = 0; b < lengths.size(); ++b) {
      EXPECT_TRUE(manager_->AddSequence(static_cast<SequenceId>(b)).ok());
    }
    outputs_.resize(lengths.size());
    for (size_t b = 0; b < lengths.size(); ++b) {
      outputs_[b].assign(static_cast<size_t>(lengths[b]) * c.embed_dim, NAN);
    }
  }

  // Runs the steps; in each, the participating sequences are appended to the
  // cache and laid out in the step's token arrays in a random order, and the
  // chunk list passed to Forward is in another random order.
  void Run(const std::vector<SequenceInput>& inputs, const std::vector<std::vector<int>>& steps) {
    const int e = layer_.config().embed_dim;
    std::vector<int64_t> done(inputs.size(), 0);
    MtlaAttentionWorkspace ws;
    for (const std::vector<int>& step : steps) {
      std::vector<size_t> order;
      for (size_t b = 0; b < step.size(); ++b) {
        if (step[b] > 0) order.push_back(b);
      }
      std::shuffle(order.begin(), order.end(), rng_);
      std::vector<BlockCopy> copies;
      for (size_t b : order) {
        ASSERT_TRUE(manager_->Append(static_cast<SequenceId>(b), step[b], &copies).ok());
      }
      ASSERT_TRUE(copies.empty());
      std::vector<cpu::SequenceChunk> chunks;
      std::vector<float> x;
      std::vector<int32_t> positions;
      for (size_t b : order) {
        const int n = step[b];
        chunks.push_back({manager_->block_table(static_cast<SequenceId>(b)).data(), done[b], n,
                          static_cast<int64_t>(positions.size())});
        x.insert(x.end(), inputs[b].x.begin() + done[b] * e,
                 inputs[b].x.begin() + (done[b] + n) * e);
        positions.insert(positions.end(), inputs[b].positions.begin() + done[b],
                         inputs[b].positions.begin() + done[b] + n);
      }
      // The chunk list need not follow the token layout: shuffle it as well.
      std::vector<size_t> chunk_order(order.size());
      std::iota(chunk_order.begin(), chunk_order.end(), 0);
      std::shuffle(chunk_order.begin(), chunk_order.end(), rng_);
      std::vector<cpu::SequenceChunk> shuffled_chunks;
      for (size_t i : chunk_order) shuffled_chunks.push_back(chunks[i]);
      const int64_t n_total = static_cast<int64_t>(positions.size());
      std::vector<float> out(static_cast<size_t>(n_total) * e, NAN);
      layer_.Forward(x.data(), positions.data(), shuffled_chunks.data(),
                     static_cast<int>(shuffled_chunks.size()), n_total, view_, &ws, out.data());
      for (size_t i = 0; i < order.size(); ++i) {
        const size_t b = order[i];
        std::copy_n(out.begin() + chunks[i].token_offset * e, chunks[i].num_tokens * e,
                    outputs_[b].begin() + done[b] * e);
        done[b] += step[b];
      }
    }
    for (size_t b = 0; b < inputs.size(); ++b) ASSERT_EQ(done[b], inputs[b].length);
  }

  // Sequence b's outputs [T, E].
  const std::vector<float>& output(size_t b) const { return outputs_[b]; }

  // Sequence b's ceil(T/s) cache rows, read through its block table.
  void ReadCache(size_t b, std::vector<float>* latent, std::vector<float>* k_pe) const {
    const int r = view_.kv_lora_rank, dr = view_.rope_dim;
    latent->clear();
    k_pe->clear();
    const std::vector<BlockId>& table = manager_->block_table(static_cast<SequenceId>(b));
    for (int64_t k = 0; k < geometry_.SlotsForTokens(lengths_[b]); ++k) {
      const float* row = view_.Row(table.data(), k);
      latent->insert(latent->end(), row, row + r);
      k_pe->insert(k_pe->end(), row + r, row + r + dr);
    }
  }

  // Rows of the whole pool with no NaN (written), and rows partly NaN.
  void CountRows(int64_t* written, int64_t* partial) const {
    *written = 0;
    *partial = 0;
    const int width = geometry_.slot_width();
    for (size_t row = 0; row < storage_.size() / width; ++row) {
      int nans = 0;
      for (int j = 0; j < width; ++j) nans += std::isnan(storage_[row * width + j]) ? 1 : 0;
      if (nans == 0) ++*written;
      if (nans > 0 && nans < width) ++*partial;
    }
  }

  const KvCacheManager& manager() const { return *manager_; }
  const KvCacheGeometry& geometry() const { return geometry_; }

 private:
  static constexpr SequenceId kDummyBase = 1000;

  const MtlaAttentionLayer& layer_;
  std::vector<int64_t> lengths_;
  std::mt19937 rng_;
  KvCacheGeometry geometry_;
  int num_blocks_ = 0;
  int held_dummies_ = 0;
  std::unique_ptr<KvCacheManager> manager_;
  std::vector<float> storage_;
  cpu::PagedCacheView view_;
  std::vector<std::vector<float>> outputs_;
};

// Checks every sequence's outputs and final cache rows against the dense
// reference, and that exactly sum_b ceil(T_b / s) rows of the pool were written.
void ExpectMatchesDense(const MtlaAttentionConfig& c, const MtlaAttentionWeights& w,
                        const std::vector<SequenceInput>& inputs, const PagedLayerRun& run) {
  int64_t expected_rows = 0;
  for (size_t b = 0; b < inputs.size(); ++b) {
    SCOPED_TRACE(testing::Message() << "sequence " << b << " (T=" << inputs[b].length << ")");
    const DenseResult ref = Dense(c, w, inputs[b]);
    EXPECT_LE(RelL2(run.output(b), ref.out), kTolerance) << "attention output";
    std::vector<float> latent, k_pe;
    run.ReadCache(b, &latent, &k_pe);
    EXPECT_LE(RelL2(latent, ref.latent), kTolerance) << "cache latent rows";
    EXPECT_LE(RelL2(k_pe, ref.k_pe), kTolerance) << "cache k_pe rows";
    expected_rows += run.geometry().SlotsForTokens(inputs[b].length);
  }
  int64_t written = 0, partial = 0;
  run.CountRows(&written, &partial);
  EXPECT_EQ(written, expected_rows) << "cache rows written outside the sequences' slots";
  EXPECT_EQ(partial, 0) << "cache rows written only in part";
}

// ---------------------------------------------------------------------------
// The sweep.

using SweepParam = std::tuple<Dims, int /*down_rate*/, RopeStyle, bool /*q_lora*/,
                              int /*block_slots*/, Schedule>;

class MtlaPagedVsDenseTest : public testing::TestWithParam<SweepParam> {};

TEST_P(MtlaPagedVsDenseTest, MatchesDenseReference) {
  const auto [dims, s, rope, q_lora, block_slots, schedule] = GetParam();
  const MtlaAttentionConfig c = MakeConfig(dims, s, rope, q_lora);
  ASSERT_TRUE(c.Validate().ok());
  const uint32_t seed = static_cast<uint32_t>(1000 * s + 100 * block_slots + 10 * q_lora +
                                              (rope == RopeStyle::kHalfSplit ? 1 : 0) +
                                              7 * dims.embed_dim);
  const MtlaAttentionWeights w = RandomWeights(c, seed);
  MtlaAttentionLayer layer(c, w);

  // Lengths that are not multiples of s or of a block, plus 24 (a multiple of
  // every s and of several block sizes: a sequence ending on a boundary).
  const std::vector<int64_t> lengths = {13, 1, 29, 7, 24};
  const std::vector<int32_t> offsets = {0, 0, 3, 0, 11};
  const std::vector<SequenceInput> inputs = RandomInputs(c, lengths, offsets, seed + 1);

  PagedLayerRun run(layer, block_slots, lengths, seed + 2);
  ASSERT_NO_FATAL_FAILURE(run.Run(inputs, MakeSchedule(schedule, lengths, seed + 3)));
  ExpectMatchesDense(c, w, inputs, run);

  // The shuffle must have worked: some table is not a consecutive ascending
  // run of ids, or the id ranges of two sequences' tables interleave.
  bool shuffled = false;
  for (size_t b = 0; b < lengths.size(); ++b) {
    const std::vector<BlockId>& t = run.manager().block_table(static_cast<SequenceId>(b));
    for (size_t i = 1; i < t.size(); ++i) shuffled = shuffled || t[i] != t[i - 1] + 1;
    for (size_t a = 0; a < b; ++a) {
      const std::vector<BlockId>& u = run.manager().block_table(static_cast<SequenceId>(a));
      const auto [t_min, t_max] = std::minmax_element(t.begin(), t.end());
      const auto [u_min, u_max] = std::minmax_element(u.begin(), u.end());
      shuffled = shuffled || (*t_min < *u_max && *u_min < *t_max);
    }
  }
  EXPECT_TRUE(shuffled);
}

std::string SweepName(const testing::TestParamInfo<SweepParam>& info) {
  const auto& [dims, s, rope, q_lora, block_slots, schedule] = info.param;
  return std::string(dims.name) + "_s" + std::to_string(s) +
         (rope == RopeStyle::kInterleaved ? "_Interleaved" : "_HalfSplit") +
         (q_lora ? "_QLora" : "_NoQLora") + "_B" + std::to_string(block_slots) + "_" +
         ScheduleName(schedule);
}

INSTANTIATE_TEST_SUITE_P(
    Sweep, MtlaPagedVsDenseTest,
    testing::Combine(testing::Values(kSmallDims, kWideDims), testing::Values(1, 2, 3, 4),
                     testing::Values(RopeStyle::kInterleaved, RopeStyle::kHalfSplit),
                     testing::Bool(), testing::Values(1, 3, 4),
                     testing::Values(Schedule::kOneShot, Schedule::kTokenByToken,
                                     Schedule::kRandomChunks)),
    SweepName);

// ---------------------------------------------------------------------------
// Focused cases.

// With s == 1 every token opens its own slot (the official code's `T % s != 1`
// test would never append): T tokens leave T cache rows, each equal to the
// reference's, and the attention is plain MLA over every previous token.
TEST(MtlaAttentionTest, DownRateOneOpensSlotPerToken) {
  const MtlaAttentionConfig c = MakeConfig(kSmallDims, /*down_rate=*/1, RopeStyle::kInterleaved,
                                           /*q_lora=*/false);
  const MtlaAttentionWeights w = RandomWeights(c, 77);
  MtlaAttentionLayer layer(c, w);
  const std::vector<int64_t> lengths = {13};
  const std::vector<SequenceInput> inputs = RandomInputs(c, lengths, {0}, 78);
  for (Schedule schedule : {Schedule::kOneShot, Schedule::kTokenByToken}) {
    SCOPED_TRACE(ScheduleName(schedule));
    PagedLayerRun run(layer, /*block_slots=*/3, lengths, 79);
    ASSERT_NO_FATAL_FAILURE(run.Run(inputs, MakeSchedule(schedule, lengths, 80)));
    int64_t written = 0, partial = 0;
    run.CountRows(&written, &partial);
    EXPECT_EQ(written, 13);
    EXPECT_EQ(partial, 0);
    EXPECT_EQ(run.manager().block_table(0).size(), 5u);  // ceil(13 / 3)
    std::vector<float> latent, k_pe;
    run.ReadCache(0, &latent, &k_pe);
    ASSERT_EQ(latent.size(), 13u * c.kv_lora_rank);
    ExpectMatchesDense(c, w, inputs, run);
    // Row t is token t's own weighted latent: distinct rows, none merged.
    for (int t = 1; t < 13; ++t) {
      EXPECT_NE(std::memcmp(latent.data() + t * c.kv_lora_rank,
                            latent.data() + (t - 1) * c.kv_lora_rank, sizeof(float) * c.kv_lora_rank),
                0);
    }
  }
}

// Token-by-token decoding leaves the same cache (through different physical
// blocks) and the same outputs as a one-shot prefill, and as a prefill of part
// of the sequence followed by decoding.
TEST(MtlaAttentionTest, DecodeLeavesSameCacheAsPrefill) {
  for (int s : {1, 2, 3, 4}) {
    for (bool q_lora : {false, true}) {
      SCOPED_TRACE(testing::Message() << "s=" << s << " q_lora=" << q_lora);
      const MtlaAttentionConfig c = MakeConfig(kWideDims, s, RopeStyle::kHalfSplit, q_lora);
      const MtlaAttentionWeights w = RandomWeights(c, 300 + s);
      MtlaAttentionLayer layer(c, w);
      const std::vector<int64_t> lengths = {29, 14};
      const std::vector<SequenceInput> inputs = RandomInputs(c, lengths, {0, 0}, 400 + s);

      PagedLayerRun prefill(layer, /*block_slots=*/3, lengths, 500 + s);
      ASSERT_NO_FATAL_FAILURE(prefill.Run(inputs, MakeSchedule(Schedule::kOneShot, lengths, 0)));
      PagedLayerRun decode(layer, /*block_slots=*/3, lengths, 600 + s);
      ASSERT_NO_FATAL_FAILURE(
          decode.Run(inputs, MakeSchedule(Schedule::kTokenByToken, lengths, 0)));
      PagedLayerRun mixed(layer, /*block_slots=*/3, lengths, 700 + s);
      // Prefill 10 and 5 tokens, then decode the rest one at a time.
      std::vector<std::vector<int>> steps = {{10, 5}};
      for (int i = 0; i < 19; ++i) steps.push_back({1, i < 9 ? 1 : 0});
      ASSERT_NO_FATAL_FAILURE(mixed.Run(inputs, steps));

      for (size_t b = 0; b < lengths.size(); ++b) {
        std::vector<float> latent_p, k_pe_p, latent_d, k_pe_d, latent_m, k_pe_m;
        prefill.ReadCache(b, &latent_p, &k_pe_p);
        decode.ReadCache(b, &latent_d, &k_pe_d);
        mixed.ReadCache(b, &latent_m, &k_pe_m);
        EXPECT_LE(RelL2(latent_d, latent_p), kTolerance);
        EXPECT_LE(RelL2(k_pe_d, k_pe_p), kTolerance);
        EXPECT_LE(RelL2(latent_m, latent_p), kTolerance);
        EXPECT_LE(RelL2(k_pe_m, k_pe_p), kTolerance);
        EXPECT_LE(RelL2(decode.output(b), prefill.output(b)), kTolerance);
        EXPECT_LE(RelL2(mixed.output(b), prefill.output(b)), kTolerance);
      }
      ExpectMatchesDense(c, w, inputs, prefill);
    }
  }
}

// AppendOnly (the speech prefix: keys without queries) writes the same cache
// as Forward, so Forward on the tokens after it matches the dense reference.
TEST(MtlaAttentionTest, AppendOnlyPrefixThenForward) {
  for (int s : {1, 2, 3}) {
    for (int prefix : {1, 5, 9}) {
      SCOPED_TRACE(testing::Message() << "s=" << s << " prefix=" << prefix);
      const MtlaAttentionConfig c = MakeConfig(kSmallDims, s, RopeStyle::kInterleaved, false);
      const MtlaAttentionWeights w = RandomWeights(c, 900 + s);
      MtlaAttentionLayer layer(c, w);
      const int64_t T = 17;
      const std::vector<SequenceInput> inputs = RandomInputs(c, {T}, {0}, 910 + s);
      const DenseResult ref = Dense(c, w, inputs[0]);

      KvCacheGeometry g;
      g.num_layers = 1;
      g.kv_lora_rank = c.kv_lora_rank;
      g.rope_dim = c.qk_rope_head_dim;
      g.down_rate = s;
      g.block_slots = 2;
      const int num_blocks = static_cast<int>(g.BlocksForTokens(T)) + 1;
      KvCacheManager manager(g, num_blocks);
      std::vector<float> storage(g.BlockElements() * num_blocks, NAN);
      cpu::PagedCacheView view{storage.data(), g.block_slots, c.kv_lora_rank, c.qk_rope_head_dim};
      ASSERT_TRUE(manager.AddSequence(0).ok());
      std::vector<BlockCopy> copies;
      MtlaAttentionWorkspace ws;
      ASSERT_TRUE(manager.Append(0, prefix, &copies).ok());
      cpu::SequenceChunk head{manager.block_table(0).data(), 0, prefix, 0};
      layer.AppendOnly(inputs[0].x.data(), inputs[0].positions.data(), &head, 1, prefix, view, &ws);
      ASSERT_TRUE(manager.Append(0, static_cast<int>(T - prefix), &copies).ok());
      cpu::SequenceChunk tail{manager.block_table(0).data(), prefix, static_cast<int>(T - prefix), 0};
      std::vector<float> out((T - prefix) * c.embed_dim, NAN);
      layer.Forward(inputs[0].x.data() + prefix * c.embed_dim, inputs[0].positions.data() + prefix,
                    &tail, 1, T - prefix, view, &ws, out.data());
      const std::vector<float> want(ref.out.begin() + prefix * c.embed_dim, ref.out.end());
      EXPECT_LE(RelL2(out, want), kTolerance);
    }
  }
}

}  // namespace
}  // namespace mtla
