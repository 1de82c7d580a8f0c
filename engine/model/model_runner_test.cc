// Tests of ModelRunner on the CPU backend with the shared LlamaMTLA reference
// checkpoints (MTLA_TESTDATA_DIR/model_reference/<name>): batch invariance,
// chunked prefill, fork with copy-on-write, block accounting and errors.
//
// Tolerance: logits are compared by relative L2 error ||got - want|| / ||want||
// <= 1e-5 per row (fp32 everywhere; only the batch layout, chunking or block
// placement differs between the two sides). Greedy tokens must match exactly
// (the checkpoints' top-1 margins are at least 2e-3).
//
// Caches are small (2 or 3 slots per block) so that sequences span several
// blocks; the backend initialises cache storage to NaN.
#include "engine/model/model_runner.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/model/llama_mtla.h"
#include "engine/weights/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;

constexpr double kTolerance = 1e-5;

double RelL2(const float* got, const float* want, size_t n) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    diff += d * d;
    norm += static_cast<double>(want[i]) * want[i];
  }
  if (std::isnan(diff)) return NAN;
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

std::vector<int32_t> ToIds(const std::vector<float>& values) {
  return std::vector<int32_t>(values.begin(), values.end());
}

class ModelRunnerTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::string(MTLA_TESTDATA_DIR) + "/model_reference/" + GetParam();
    if (!std::filesystem::exists(dir_ + "/expected.safetensors")) {
      GTEST_SKIP() << "shared testdata not found at " << dir_;
    }
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> expected =
        SafetensorsFile::Open(dir_ + "/expected.safetensors");
    ASSERT_TRUE(expected.ok()) << expected.status();
    absl::StatusOr<std::vector<float>> prompt = (*expected)->ReadFloat("prompt_ids");
    ASSERT_TRUE(prompt.ok()) << prompt.status();
    absl::StatusOr<std::vector<float>> generated = (*expected)->ReadFloat("generated_ids");
    ASSERT_TRUE(generated.ok()) << generated.status();
    prompt_ = ToIds(*prompt);
    generated_ = ToIds(*generated);
    absl::StatusOr<LlamaMtlaConfig> config = LoadLlamaMtlaConfig(dir_ + "/config.json");
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    vocab_ = config_.vocab_size;
  }

  // A runner whose cache has `num_blocks` blocks of `block_slots` slots.
  std::unique_ptr<ModelRunner> MakeRunner(int block_slots, int num_blocks) {
    KvCacheGeometry g;
    g.num_layers = config_.num_layers;
    g.kv_lora_rank = config_.attention.kv_lora_rank;
    g.rope_dim = config_.attention.qk_rope_head_dim;
    g.down_rate = config_.attention.down_rate;
    g.block_slots = block_slots;
    CacheOptions options;
    options.block_slots = block_slots;
    options.memory_bytes = g.BlockElements() * sizeof(float) * num_blocks;
    absl::StatusOr<LoadedModel> model = LoadLlamaMtlaCpu(dir_, options);
    EXPECT_TRUE(model.ok()) << model.status();
    if (!model.ok()) return nullptr;
    auto runner = std::make_unique<ModelRunner>(std::move(model->backend));
    EXPECT_EQ(runner->cache().num_total_blocks(), num_blocks);
    return runner;
  }

  int down_rate() const { return config_.attention.down_rate; }

  // Logits at every position of `history` from a one-shot prefill in a fresh
  // runner: [history.size(), vocab].
  std::vector<float> FreshLogits(const std::vector<int32_t>& history) {
    std::unique_ptr<ModelRunner> runner = MakeRunner(/*block_slots=*/2, /*num_blocks=*/64);
    EXPECT_NE(runner, nullptr);
    if (runner == nullptr) return {};
    EXPECT_TRUE(runner->cache().AddSequence(0).ok());
    std::vector<float> logits;
    const SequenceWork work{0, absl::MakeConstSpan(history), true, true};
    const absl::Status status = runner->Step({work}, &logits);
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(logits.size(), history.size() * vocab_);
    return logits;
  }

  std::string dir_;
  LlamaMtlaConfig config_;
  int vocab_ = 0;
  std::vector<int32_t> prompt_, generated_;
};

// ---------------------------------------------------------------------------
// (a) Batch invariance.

// Greedy decoding of the reference prompt alone: the logits before each
// generated token, [G, vocab], and the tokens.
void DecodeAlone(ModelRunner& runner, const std::vector<int32_t>& prompt, int steps, int vocab,
                 std::vector<float>* step_logits, std::vector<int32_t>* tokens) {
  ASSERT_TRUE(runner.cache().AddSequence(7).ok());
  std::vector<float> logits;
  ASSERT_TRUE(runner.Step({SequenceWork{7, absl::MakeConstSpan(prompt), true, false}}, &logits).ok());
  for (int i = 0; i < steps; ++i) {
    ASSERT_EQ(logits.size(), static_cast<size_t>(vocab));
    step_logits->insert(step_logits->end(), logits.begin(), logits.end());
    tokens->push_back(ArgMax(logits.data(), vocab));
    if (i + 1 == steps) break;
    ASSERT_TRUE(
        runner.Step({SequenceWork{7, absl::MakeConstSpan(&tokens->back(), 1), true, false}}, &logits)
            .ok());
  }
  ASSERT_TRUE(runner.cache().Free(7).ok());
  EXPECT_EQ(runner.cache().num_used_blocks(), 0);
}

TEST_P(ModelRunnerTest, GreedyDecodeIsBatchInvariant) {
  const int g = static_cast<int>(generated_.size());
  std::vector<float> alone_logits;
  std::vector<int32_t> alone_tokens;
  {
    std::unique_ptr<ModelRunner> runner = MakeRunner(/*block_slots=*/2, /*num_blocks=*/64);
    ASSERT_NE(runner, nullptr);
    ASSERT_NO_FATAL_FAILURE(DecodeAlone(*runner, prompt_, g, vocab_, &alone_logits, &alone_tokens));
  }
  // Anchors the comparison to the reference implementation.
  EXPECT_EQ(alone_tokens, generated_);

  for (uint32_t seed : {1u, 2u, 3u, 4u}) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937 rng(seed);
    std::unique_ptr<ModelRunner> runner = MakeRunner(/*block_slots=*/3, /*num_blocks=*/128);
    ASSERT_NE(runner, nullptr);

    // Three lanes of other sequences of random tokens. Each lane runs one
    // sequence after another: it joins after a random pause, prefills a random
    // prompt in chunks of 1..5 tokens, decodes random tokens for a while, leaves.
    struct Other {
      SequenceId id = -1;
      std::vector<int32_t> pending;  // prompt tokens not yet fed
      int decode_steps_left = 0;
      int pause = 0;
    };
    std::uniform_int_distribution<int32_t> token(0, vocab_ - 1);
    SequenceId next_id = 100;
    auto start_other = [&](Other& o) {
      o.id = next_id++;
      ASSERT_TRUE(runner->cache().AddSequence(o.id).ok());
      o.pending.resize(std::uniform_int_distribution<int>(1, 20)(rng));
      for (int32_t& t : o.pending) t = token(rng);
      o.decode_steps_left = std::uniform_int_distribution<int>(1, 8)(rng);
    };
    std::vector<Other> others(3);
    for (Other& o : others) o.pause = std::uniform_int_distribution<int>(0, 4)(rng);

    const SequenceId main_id = 0;
    const int main_join = std::uniform_int_distribution<int>(0, 3)(rng);
    std::vector<float> batch_logits;
    std::vector<int32_t> batch_tokens;
    bool main_started = false;
    std::vector<std::vector<int32_t>> storage;  // keeps each step's token arrays alive
    for (int step = 0; static_cast<int>(batch_tokens.size()) < g; ++step) {
      storage.clear();
      storage.reserve(8);
      std::vector<SequenceWork> work;
      for (Other& o : others) {
        if (o.id < 0) {
          if (o.pause-- > 0) continue;
          ASSERT_NO_FATAL_FAILURE(start_other(o));
        }
        if (!o.pending.empty()) {
          const int n = std::min<int>(std::uniform_int_distribution<int>(1, 5)(rng),
                                      static_cast<int>(o.pending.size()));
          storage.emplace_back(o.pending.begin(), o.pending.begin() + n);
          o.pending.erase(o.pending.begin(), o.pending.begin() + n);
        } else {
          storage.push_back({token(rng)});
          --o.decode_steps_left;
        }
        work.push_back({o.id, absl::MakeConstSpan(storage.back()),
                        std::bernoulli_distribution(0.5)(rng), false});
      }
      if (step >= main_join) {
        if (!main_started) {
          ASSERT_TRUE(runner->cache().AddSequence(main_id).ok());
          storage.push_back(prompt_);
          main_started = true;
        } else {
          storage.push_back({batch_tokens.back()});
        }
        work.push_back({main_id, absl::MakeConstSpan(storage.back()), true, false});
      }
      std::shuffle(work.begin(), work.end(), rng);
      std::vector<float> logits;
      const absl::Status status = runner->Step(work, &logits);
      ASSERT_TRUE(status.ok()) << status;
      // Finished lanes leave; they rejoin with a new sequence after a pause.
      for (Other& o : others) {
        if (o.id >= 0 && o.pending.empty() && o.decode_steps_left <= 0) {
          ASSERT_TRUE(runner->cache().Free(o.id).ok());
          o.id = -1;
          o.pause = std::uniform_int_distribution<int>(0, 3)(rng);
        }
      }
      if (!main_started) continue;
      size_t row = 0;
      for (const SequenceWork& w : work) {
        if (w.id == main_id) break;
        if (w.want_logits) ++row;
      }
      ASSERT_LE((row + 1) * vocab_, logits.size());
      const float* main_logits = logits.data() + row * vocab_;
      const int i = static_cast<int>(batch_tokens.size());
      EXPECT_LE(RelL2(main_logits, alone_logits.data() + i * vocab_, vocab_), kTolerance)
          << "generated token " << i;
      batch_tokens.push_back(ArgMax(main_logits, vocab_));
    }
    EXPECT_EQ(batch_tokens, alone_tokens);
    ASSERT_TRUE(runner->cache().Free(main_id).ok());
    for (Other& o : others) {
      if (o.id >= 0) {
        ASSERT_TRUE(runner->cache().Free(o.id).ok());
      }
    }
    EXPECT_EQ(runner->cache().num_used_blocks(), 0);
  }
}

// ---------------------------------------------------------------------------
// (b) Chunked prefill.

TEST_P(ModelRunnerTest, ChunkedPrefillMatchesOneShot) {
  const std::vector<float> one_shot = FreshLogits(prompt_);
  ASSERT_EQ(one_shot.size(), prompt_.size() * vocab_);
  const float* one_shot_last = one_shot.data() + (prompt_.size() - 1) * vocab_;
  for (uint32_t seed : {0u, 1u, 2u, 3u, 4u, 5u}) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937 rng(seed);
    std::unique_ptr<ModelRunner> runner = MakeRunner(/*block_slots=*/seed % 2 ? 2 : 3, 32);
    ASSERT_NE(runner, nullptr);
    ASSERT_TRUE(runner->cache().AddSequence(1).ok());
    std::vector<float> all, last;
    std::string split;
    for (size_t done = 0; done < prompt_.size();) {
      // Seed 0: one token at a time; otherwise chunks of 1..3 tokens.
      const int n = std::min<int>(seed == 0 ? 1 : std::uniform_int_distribution<int>(1, 3)(rng),
                                  static_cast<int>(prompt_.size() - done));
      absl::StrAppend(&split, n, " ");
      std::vector<float> logits;
      const absl::Status status = runner->Step(
          {SequenceWork{1, absl::MakeConstSpan(prompt_.data() + done, n), true, true}}, &logits);
      ASSERT_TRUE(status.ok()) << status;
      ASSERT_EQ(logits.size(), static_cast<size_t>(n) * vocab_);
      all.insert(all.end(), logits.begin(), logits.end());
      last.assign(logits.end() - vocab_, logits.end());
      done += n;
    }
    SCOPED_TRACE("chunks " + split);
    EXPECT_LE(RelL2(last.data(), one_shot_last, vocab_), kTolerance) << "last prompt logits";
    for (size_t i = 0; i < prompt_.size(); ++i) {
      EXPECT_LE(RelL2(all.data() + i * vocab_, one_shot.data() + i * vocab_, vocab_), kTolerance)
          << "prompt position " << i;
    }
    ASSERT_TRUE(runner->cache().Free(1).ok());
    EXPECT_EQ(runner->cache().num_used_blocks(), 0);
  }
}

// ---------------------------------------------------------------------------
// (c) Fork and copy-on-write.

// Tracks what each live sequence was fed and the logits it returned, so each
// can be compared with a fresh sequence fed the same history.
class ForkScript {
 public:
  ForkScript(ModelRunner* runner, int vocab) : runner_(runner), vocab_(vocab) {}

  void Add(SequenceId id) {
    ASSERT_TRUE(runner_->cache().AddSequence(id).ok());
    seqs_[id];
  }
  void Fork(SequenceId parent, SequenceId child) {
    const int used = runner_->cache().num_used_blocks();
    ASSERT_TRUE(runner_->cache().Fork(parent, child).ok());
    EXPECT_EQ(runner_->cache().num_used_blocks(), used) << "a fork must not take blocks";
    Tracked t;
    t.history = seqs_[parent].history;
    seqs_[child] = std::move(t);
  }
  void Free(SequenceId id) {
    ASSERT_TRUE(runner_->cache().Free(id).ok());
    finished_.push_back(std::move(seqs_[id]));
    seqs_.erase(id);
  }
  // One step; every fed token's logits are kept.
  void Step(const std::vector<std::pair<SequenceId, std::vector<int32_t>>>& feeds) {
    std::vector<SequenceWork> work;
    for (const auto& [id, tokens] : feeds) work.push_back({id, absl::MakeConstSpan(tokens), true, true});
    std::vector<float> logits;
    const absl::Status status = runner_->Step(work, &logits);
    ASSERT_TRUE(status.ok()) << status;
    size_t row = 0;
    for (const auto& [id, tokens] : feeds) {
      Tracked& t = seqs_.at(id);
      for (int32_t token : tokens) {
        t.history.push_back(token);
        t.observed.push_back({t.history.size() - 1,
                              std::vector<float>(logits.begin() + row * vocab_,
                                                 logits.begin() + (row + 1) * vocab_)});
        ++row;
      }
    }
    ASSERT_EQ(row * vocab_, logits.size());
  }
  const std::vector<int32_t>& history(SequenceId id) { return seqs_.at(id).history; }
  std::vector<SequenceId> live() const {
    std::vector<SequenceId> ids;
    for (const auto& [id, t] : seqs_) ids.push_back(id);
    return ids;
  }

  // Frees what is still live, checks no block leaked, then compares every
  // observed logits row with a fresh one-shot prefill of the same history.
  template <typename FreshFn>
  void FinishAndCheck(FreshFn fresh) {
    for (SequenceId id : live()) {
      ASSERT_NO_FATAL_FAILURE(Free(id));
    }
    EXPECT_EQ(runner_->cache().num_used_blocks(), 0);
    for (size_t i = 0; i < finished_.size(); ++i) {
      const Tracked& t = finished_[i];
      if (t.observed.empty()) continue;
      const std::vector<float> want = fresh(t.history);
      ASSERT_EQ(want.size(), t.history.size() * vocab_);
      for (const auto& [pos, logits] : t.observed) {
        EXPECT_LE(RelL2(logits.data(), want.data() + pos * vocab_, vocab_), kTolerance)
            << "sequence #" << i << " (history length " << t.history.size() << ") position "
            << pos;
      }
    }
  }

 private:
  struct Tracked {
    std::vector<int32_t> history;
    std::vector<std::pair<size_t, std::vector<float>>> observed;  // position, logits
  };
  ModelRunner* runner_;
  int vocab_;
  std::map<SequenceId, Tracked> seqs_;
  std::vector<Tracked> finished_;
};

// Fork at every alignment of the history against slots and blocks, then feed
// the parent and the child different tokens in the same or separate steps;
// each must equal a fresh sequence fed the same history.
TEST_P(ModelRunnerTest, ForkedSequencesMatchFreshOnes) {
  const int block_slots = 2;
  const int tokens_per_block = block_slots * down_rate();
  auto fresh = [this](const std::vector<int32_t>& h) { return FreshLogits(h); };
  enum Mode { kSameStepParentFirst, kSameStepChildFirst, kChildStepsFirst, kChunks, kFreeParent };
  for (int extra = 0; extra <= tokens_per_block; ++extra) {
    for (Mode mode : {kSameStepParentFirst, kSameStepChildFirst, kChildStepsFirst, kChunks,
                      kFreeParent}) {
      SCOPED_TRACE(testing::Message() << "fork after prompt + " << extra << " tokens, mode " << mode);
      std::mt19937 rng(1000 * extra + mode);
      std::uniform_int_distribution<int32_t> token(0, vocab_ - 1);
      std::unique_ptr<ModelRunner> runner = MakeRunner(block_slots, /*num_blocks=*/48);
      ASSERT_NE(runner, nullptr);
      ForkScript script(runner.get(), vocab_);
      ASSERT_NO_FATAL_FAILURE(script.Add(0));
      ASSERT_NO_FATAL_FAILURE(script.Step({{0, prompt_}}));
      for (int i = 0; i < extra; ++i) {
        ASSERT_NO_FATAL_FAILURE(script.Step({{0, {token(rng)}}}));
      }
      ASSERT_NO_FATAL_FAILURE(script.Fork(0, 1));
      // Enough steps to cross slot and block boundaries on both sides.
      for (int i = 0; i < tokens_per_block + 2; ++i) {
        int32_t a = token(rng), b = token(rng);
        if (a == b) b = (b + 1) % vocab_;
        switch (mode) {
          case kSameStepParentFirst:
            ASSERT_NO_FATAL_FAILURE(script.Step({{0, {a}}, {1, {b}}}));
            break;
          case kSameStepChildFirst:
            ASSERT_NO_FATAL_FAILURE(script.Step({{1, {b}}, {0, {a}}}));
            break;
          case kChildStepsFirst:
            ASSERT_NO_FATAL_FAILURE(script.Step({{1, {b}}}));
            ASSERT_NO_FATAL_FAILURE(script.Step({{0, {a}}}));
            break;
          case kChunks:
            // Multi-token appends after the fork; the child forks again.
            ASSERT_NO_FATAL_FAILURE(script.Step({{1, {b, a, b}}, {0, {a, b}}}));
            if (i == 0) {
              ASSERT_NO_FATAL_FAILURE(script.Fork(1, 2));
            }
            if (i == 1) {
              ASSERT_NO_FATAL_FAILURE(script.Step({{2, {a}}}));
            }
            break;
          case kFreeParent:
            // The parent leaves early: the child then owns the blocks alone.
            if (i == 0) {
              ASSERT_NO_FATAL_FAILURE(script.Step({{0, {a}}}));
            }
            if (i == 1) {
              ASSERT_NO_FATAL_FAILURE(script.Free(0));
            }
            ASSERT_NO_FATAL_FAILURE(script.Step({{1, {b}}}));
            break;
        }
      }
      ASSERT_NO_FATAL_FAILURE(script.FinishAndCheck(fresh));
    }
  }
}

// Random forks, frees and steps of 1..3 tokens over many sequences sharing
// blocks; every sequence must match a fresh one with its history.
TEST_P(ModelRunnerTest, RandomForkTreeMatchesFreshSequences) {
  auto fresh = [this](const std::vector<int32_t>& h) { return FreshLogits(h); };
  for (uint32_t seed : {11u, 12u, 13u}) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> token(0, vocab_ - 1);
    std::unique_ptr<ModelRunner> runner = MakeRunner(/*block_slots=*/seed % 2 ? 2 : 3, 96);
    ASSERT_NE(runner, nullptr);
    ForkScript script(runner.get(), vocab_);
    ASSERT_NO_FATAL_FAILURE(script.Add(0));
    ASSERT_NO_FATAL_FAILURE(script.Step({{0, prompt_}}));
    SequenceId next_id = 1;
    for (int step = 0; step < 24; ++step) {
      std::vector<SequenceId> live = script.live();
      if (live.size() < 5 && std::bernoulli_distribution(0.4)(rng)) {
        const SequenceId parent = live[rng() % live.size()];
        ASSERT_NO_FATAL_FAILURE(script.Fork(parent, next_id++));
        live = script.live();
      }
      if (live.size() > 1 && std::bernoulli_distribution(0.15)(rng)) {
        ASSERT_NO_FATAL_FAILURE(script.Free(live[rng() % live.size()]));
        live = script.live();
      }
      std::shuffle(live.begin(), live.end(), rng);
      std::vector<std::pair<SequenceId, std::vector<int32_t>>> feeds;
      for (SequenceId id : live) {
        if (script.history(id).size() > 40 || std::bernoulli_distribution(0.3)(rng)) continue;
        std::vector<int32_t> tokens(std::uniform_int_distribution<int>(1, 3)(rng));
        for (int32_t& t : tokens) t = token(rng);
        feeds.emplace_back(id, std::move(tokens));
      }
      if (!feeds.empty()) {
        ASSERT_NO_FATAL_FAILURE(script.Step(feeds));
      }
    }
    ASSERT_NO_FATAL_FAILURE(script.FinishAndCheck(fresh));
  }
}

// ---------------------------------------------------------------------------
// (d) No leak.

TEST_P(ModelRunnerTest, FreeingEverySequenceReturnsEveryBlock) {
  std::unique_ptr<ModelRunner> runner = MakeRunner(/*block_slots=*/2, /*num_blocks=*/64);
  ASSERT_NE(runner, nullptr);
  KvCacheManager& cache = runner->cache();
  std::vector<float> logits;
  ASSERT_TRUE(cache.AddSequence(0).ok());
  ASSERT_TRUE(runner->Step({SequenceWork{0, absl::MakeConstSpan(prompt_)}}, &logits).ok());
  ASSERT_TRUE(cache.Fork(0, 1).ok());
  ASSERT_TRUE(cache.Fork(0, 2).ok());
  ASSERT_TRUE(cache.AddSequence(3).ok());
  const std::vector<int32_t> one = {5}, three = {4, 6, 8};
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(runner
                    ->Step({SequenceWork{0, absl::MakeConstSpan(one)},
                            SequenceWork{1, absl::MakeConstSpan(three)},
                            SequenceWork{2, absl::MakeConstSpan(one)},
                            SequenceWork{3, absl::MakeConstSpan(three)}},
                           &logits)
                    .ok());
  }
  ASSERT_TRUE(cache.Fork(2, 4).ok());
  EXPECT_GT(cache.num_used_blocks(), 0);
  for (SequenceId id : {2, 0, 4, 3, 1}) ASSERT_TRUE(cache.Free(id).ok());
  EXPECT_EQ(cache.num_used_blocks(), 0);
  EXPECT_EQ(cache.num_free_blocks(), cache.num_total_blocks());
  EXPECT_EQ(cache.num_sequences(), 0);
}

// ---------------------------------------------------------------------------
// (e) Cache exhaustion.

TEST_P(ModelRunnerTest, StepBeyondCacheIsResourceExhaustedAndChangesNothing) {
  const int block_slots = 2;
  const int tokens_per_block = block_slots * down_rate();
  const int num_blocks = 8;
  std::unique_ptr<ModelRunner> runner = MakeRunner(block_slots, num_blocks);
  ASSERT_NE(runner, nullptr);
  KvCacheManager& cache = runner->cache();
  std::vector<float> logits;
  ASSERT_TRUE(cache.AddSequence(0).ok());
  ASSERT_TRUE(cache.AddSequence(1).ok());
  ASSERT_TRUE(runner->Step({SequenceWork{0, absl::MakeConstSpan(prompt_)}}, &logits).ok());
  const int used = cache.num_used_blocks();
  const int free = cache.num_free_blocks();
  ASSERT_GT(free, 2);
  const std::vector<BlockId> table0 = cache.block_table(0);

  auto expect_unchanged = [&](const absl::Status& status) {
    EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
    EXPECT_EQ(cache.num_used_blocks(), used);
    EXPECT_EQ(cache.num_tokens(0), static_cast<int64_t>(prompt_.size()));
    EXPECT_EQ(cache.num_tokens(1), 0);
    EXPECT_EQ(cache.block_table(0), table0);
    EXPECT_TRUE(cache.block_table(1).empty());
  };
  // One sequence needing one block more than is free.
  const std::vector<int32_t> too_many((free + 1) * tokens_per_block, 3);
  expect_unchanged(runner->Step({SequenceWork{1, absl::MakeConstSpan(too_many)}}, &logits));
  // Two sequences that fit alone but need one block more than is free
  // together: neither is extended.
  const std::vector<int32_t> half((free - free / 2 + 1) * tokens_per_block, 4);
  // Fills sequence 0's tail block, then takes free / 2 new blocks.
  const int tail_room = (tokens_per_block - cache.num_tokens(0) % tokens_per_block) % tokens_per_block;
  const std::vector<int32_t> rest((free / 2) * tokens_per_block + tail_room, 5);
  ASSERT_EQ(cache.BlocksNeededToAppend(0, static_cast<int>(rest.size())), free / 2);
  ASSERT_EQ(cache.BlocksNeededToAppend(1, static_cast<int>(half.size())), free - free / 2 + 1);
  expect_unchanged(runner->Step(
      {SequenceWork{0, absl::MakeConstSpan(rest)}, SequenceWork{1, absl::MakeConstSpan(half)}},
      &logits));
  expect_unchanged(runner->Step(
      {SequenceWork{1, absl::MakeConstSpan(half)}, SequenceWork{0, absl::MakeConstSpan(rest)}},
      &logits));

  // The cache still works: sequence 0 continues exactly like a fresh sequence.
  const std::vector<int32_t> next = {9, 10};
  ASSERT_TRUE(runner->Step({SequenceWork{0, absl::MakeConstSpan(next), true, true}}, &logits).ok());
  std::vector<int32_t> history = prompt_;
  history.insert(history.end(), next.begin(), next.end());
  const std::vector<float> want = FreshLogits(history);
  ASSERT_EQ(logits.size(), 2u * vocab_);
  for (int i = 0; i < 2; ++i) {
    EXPECT_LE(RelL2(logits.data() + i * vocab_, want.data() + (prompt_.size() + i) * vocab_, vocab_),
              kTolerance);
  }
  // Exactly the free blocks: succeeds and fills the cache.
  const std::vector<int32_t> exact(cache.num_free_blocks() * tokens_per_block, 6);
  EXPECT_TRUE(runner->Step({SequenceWork{1, absl::MakeConstSpan(exact)}}, &logits).ok());
  EXPECT_EQ(cache.num_free_blocks(), 0);
  ASSERT_TRUE(cache.Free(0).ok());
  ASSERT_TRUE(cache.Free(1).ok());
  EXPECT_EQ(cache.num_used_blocks(), 0);
}

// A forked sequence whose next token needs a private copy of the shared tail
// block cannot run when no block is free.
TEST_P(ModelRunnerTest, CopyOnWriteWithoutFreeBlockIsResourceExhausted) {
  const int block_slots = 3;
  const int tokens_per_block = block_slots * down_rate();
  std::unique_ptr<ModelRunner> runner = MakeRunner(block_slots, /*num_blocks=*/4);
  ASSERT_NE(runner, nullptr);
  KvCacheManager& cache = runner->cache();
  std::vector<float> logits;
  // Sequence 0 ends inside its only block, so its tail block takes new tokens.
  const std::vector<int32_t> head(tokens_per_block - 1, 7);
  ASSERT_TRUE(cache.AddSequence(0).ok());
  ASSERT_TRUE(runner->Step({SequenceWork{0, absl::MakeConstSpan(head)}}, &logits).ok());
  ASSERT_TRUE(cache.Fork(0, 1).ok());
  ASSERT_TRUE(cache.AddSequence(2).ok());
  const std::vector<int32_t> filler(3 * tokens_per_block, 8);
  ASSERT_TRUE(runner->Step({SequenceWork{2, absl::MakeConstSpan(filler)}}, &logits).ok());
  ASSERT_EQ(cache.num_free_blocks(), 0);
  const std::vector<int32_t> one = {9};
  const absl::Status status = runner->Step({SequenceWork{1, absl::MakeConstSpan(one)}}, &logits);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_EQ(cache.num_tokens(1), tokens_per_block - 1);
  EXPECT_EQ(cache.block_table(1), cache.block_table(0));
  EXPECT_EQ(cache.num_free_blocks(), 0);
  // Once the parent leaves, the child owns the block and extends it in place.
  ASSERT_TRUE(cache.Free(0).ok());
  ASSERT_TRUE(runner->Step({SequenceWork{1, absl::MakeConstSpan(one), true, false}}, &logits).ok());
  std::vector<int32_t> history = head;
  history.push_back(9);
  const std::vector<float> want = FreshLogits(history);
  EXPECT_LE(RelL2(logits.data(), want.data() + (history.size() - 1) * vocab_, vocab_), kTolerance);
  ASSERT_TRUE(cache.Free(1).ok());
  ASSERT_TRUE(cache.Free(2).ok());
  EXPECT_EQ(cache.num_used_blocks(), 0);
}

// Parent and child sharing a still-merging tail block both decode in one step:
// only the first needs a copy (the second then owns the original), so one free
// block is enough.
TEST_P(ModelRunnerTest, ForkedPairDecodingTogetherNeedsOneCopy) {
  const int block_slots = 3;
  const int tokens_per_block = block_slots * down_rate();
  std::unique_ptr<ModelRunner> runner = MakeRunner(block_slots, /*num_blocks=*/4);
  ASSERT_NE(runner, nullptr);
  KvCacheManager& cache = runner->cache();
  std::vector<float> logits;
  const std::vector<int32_t> head(tokens_per_block - 1, 7);
  ASSERT_TRUE(cache.AddSequence(0).ok());
  ASSERT_TRUE(runner->Step({SequenceWork{0, absl::MakeConstSpan(head)}}, &logits).ok());
  ASSERT_TRUE(cache.Fork(0, 1).ok());
  ASSERT_TRUE(cache.AddSequence(2).ok());
  const std::vector<int32_t> filler(2 * tokens_per_block, 8);
  ASSERT_TRUE(runner->Step({SequenceWork{2, absl::MakeConstSpan(filler)}}, &logits).ok());
  ASSERT_EQ(cache.num_free_blocks(), 1);
  const std::vector<int32_t> a = {9}, b = {10};
  const absl::Status status = runner->Step(
      {SequenceWork{0, absl::MakeConstSpan(a)}, SequenceWork{1, absl::MakeConstSpan(b)}}, &logits);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(logits.size(), 2u * vocab_);
  for (int i = 0; i < 2; ++i) {
    std::vector<int32_t> history = head;
    history.push_back(i == 0 ? a[0] : b[0]);
    const std::vector<float> want = FreshLogits(history);
    EXPECT_LE(RelL2(logits.data() + i * vocab_, want.data() + (history.size() - 1) * vocab_, vocab_),
              kTolerance)
        << (i == 0 ? "parent" : "child");
  }
  ASSERT_TRUE(cache.Free(0).ok());
  ASSERT_TRUE(cache.Free(1).ok());
  ASSERT_TRUE(cache.Free(2).ok());
  EXPECT_EQ(cache.num_used_blocks(), 0);
}

// ---------------------------------------------------------------------------
// (f) Token ids outside the vocabulary.

TEST_P(ModelRunnerTest, TokenOutsideVocabularyIsInvalidArgumentNamingIt) {
  for (int32_t bad : {vocab_, 1234, -5}) {
    SCOPED_TRACE(testing::Message() << "token " << bad);
    std::unique_ptr<ModelRunner> runner = MakeRunner(/*block_slots=*/2, /*num_blocks=*/32);
    ASSERT_NE(runner, nullptr);
    KvCacheManager& cache = runner->cache();
    ASSERT_TRUE(cache.AddSequence(0).ok());
    ASSERT_TRUE(cache.AddSequence(1).ok());
    const std::vector<int32_t> tokens = {3, 4, bad, 5};
    std::vector<float> logits;
    const absl::Status status = runner->Step(
        {SequenceWork{0, absl::MakeConstSpan(prompt_)}, SequenceWork{1, absl::MakeConstSpan(tokens)}},
        &logits);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(absl::StrCat(bad)));
    // The step's sequences are undefined after the error and are freed.
    ASSERT_TRUE(cache.Free(0).ok());
    ASSERT_TRUE(cache.Free(1).ok());
    EXPECT_EQ(cache.num_used_blocks(), 0);
    // The runner still serves: a new sequence matches a fresh one.
    ASSERT_TRUE(cache.AddSequence(2).ok());
    ASSERT_TRUE(runner->Step({SequenceWork{2, absl::MakeConstSpan(prompt_), true, true}}, &logits).ok());
    const std::vector<float> want = FreshLogits(prompt_);
    ASSERT_EQ(logits.size(), want.size());
    for (size_t i = 0; i < prompt_.size(); ++i) {
      EXPECT_LE(RelL2(logits.data() + i * vocab_, want.data() + i * vocab_, vocab_), kTolerance);
    }
    ASSERT_TRUE(cache.Free(2).ok());
  }
}

INSTANTIATE_TEST_SUITE_P(SharedCheckpoints, ModelRunnerTest,
                         testing::Values("llama_mtla_s2", "llama_mtla_s3_qlora"),
                         [](const testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace mtla
