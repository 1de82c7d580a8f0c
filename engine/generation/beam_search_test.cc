#include "engine/generation/beam_search.h"

#include <cmath>
#include <filesystem>

#include "engine/model/llama_mtla.h"
#include "engine/model/model_runner.h"
#include "engine/weights/safetensors.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

const std::string kModelDir = std::string(MTLA_TESTDATA_DIR) + "/model_reference/llama_mtla_s2";

class BeamSearchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kModelDir)) {
      GTEST_SKIP() << "shared testdata not found at " << kModelDir;
    }
    CacheOptions cache;
    cache.block_slots = 2;
    cache.num_blocks = 256;
    auto model = LoadLlamaMtlaCpu(kModelDir, cache);
    ASSERT_TRUE(model.ok()) << model.status();
    runner_ = std::make_unique<ModelRunner>(std::move(model->backend));
    auto expected = SafetensorsFile::Open(kModelDir + "/expected.safetensors");
    ASSERT_TRUE(expected.ok());
    auto prompt = (*expected)->ReadFloat("prompt_ids");
    auto generated = (*expected)->ReadFloat("generated_ids");
    prompt_.assign(prompt->begin(), prompt->end());
    generated_.assign(generated->begin(), generated->end());
  }

  // Sequence 1000 holding all but the last prompt token; the last is the
  // first decoder input.
  SequenceId Root() {
    const SequenceId root = 1000;
    EXPECT_TRUE(runner_->cache().AddSequence(root).ok());
    std::vector<float> logits;
    SequenceWork w{root, absl::MakeConstSpan(prompt_.data(), prompt_.size() - 1), false, false};
    EXPECT_TRUE(runner_->Step({w}, &logits).ok());
    return root;
  }

  // Log-probabilities of `tokens` after the prompt, by teacher forcing.
  std::vector<double> TeacherForcedLogProbs(const std::vector<int32_t>& tokens) {
    const SequenceId id = 1;
    EXPECT_TRUE(runner_->cache().AddSequence(id).ok());
    std::vector<int32_t> input = prompt_;
    input.insert(input.end(), tokens.begin(), tokens.end() - 1);
    std::vector<float> logits;
    EXPECT_TRUE(runner_->Step({{id, absl::MakeConstSpan(input), true, true}}, &logits).ok());
    EXPECT_TRUE(runner_->cache().Free(id).ok());
    const int vocab = runner_->backend().spec().vocab_size;
    std::vector<double> out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const float* row = logits.data() + (prompt_.size() - 1 + i) * vocab;
      double m = row[0];
      for (int v = 1; v < vocab; ++v) m = std::max(m, static_cast<double>(row[v]));
      double sum = 0;
      for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - m);
      out.push_back(row[tokens[i]] - m - std::log(sum));
    }
    return out;
  }

  std::unique_ptr<ModelRunner> runner_;
  std::vector<int32_t> prompt_, generated_;
};

TEST_F(BeamSearchTest, BeamOneEqualsGreedyAndForcesEosAtMaxLen) {
  BeamSearchOptions options;
  options.beam_size = 1;
  options.max_len_b = static_cast<int>(generated_.size());
  auto hyps = RunBeamSearch(runner_.get(), Root(), prompt_.back(), 0, options);
  ASSERT_TRUE(hyps.ok()) << hyps.status();
  ASSERT_EQ(hyps->size(), 1u);
  std::vector<int32_t> want = generated_;
  want.push_back(2);  // forced at max_len
  EXPECT_EQ((*hyps)[0].tokens, want);
  EXPECT_TRUE((*hyps)[0].eos_forced);  // EOS forced at max_len: the model would go on
  EXPECT_EQ(runner_->cache().num_used_blocks(), 0);
  EXPECT_EQ(runner_->cache().num_sequences(), 0);
}

TEST_F(BeamSearchTest, HypothesesAreSortedAndScoresMatchTeacherForcing) {
  for (int beam : {2, 4, 7}) {
    BeamSearchOptions options;
    options.beam_size = beam;
    options.max_len_b = 10;
    auto hyps = RunBeamSearch(runner_.get(), Root(), prompt_.back(), 0, options);
    ASSERT_TRUE(hyps.ok()) << hyps.status();
    ASSERT_EQ(static_cast<int>(hyps->size()), beam);
    for (size_t i = 0; i + 1 < hyps->size(); ++i) {
      EXPECT_GE((*hyps)[i].score, (*hyps)[i + 1].score);
    }
    for (const BeamHypothesis& h : *hyps) {
      ASSERT_EQ(h.tokens.back(), 2);
      std::vector<double> lp = TeacherForcedLogProbs(h.tokens);
      double sum = 0;
      for (size_t t = 0; t < lp.size(); ++t) {
        sum += lp[t];
        // A forced EOS at max_len keeps its model log-prob, like any other token.
        EXPECT_NEAR(h.positional_scores[t], lp[t], 1e-4) << "beam " << beam << " t " << t;
      }
      EXPECT_NEAR(h.score, sum / h.tokens.size(), 1e-4);
    }
    EXPECT_EQ(runner_->cache().num_used_blocks(), 0) << "beam " << beam;
  }
}

TEST_F(BeamSearchTest, RejectsBeamSizeOutOfRangeAndFreesRoot) {
  BeamSearchOptions options;
  options.beam_size = 17;
  auto hyps = RunBeamSearch(runner_.get(), Root(), prompt_.back(), 0, options);
  EXPECT_EQ(hyps.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(runner_->cache().num_used_blocks(), 0);
}


// Advance() only keeps, forks and frees sequences: it never takes a block
// from the pool, and live beams are exactly the live sequences.
TEST_F(BeamSearchTest, AdvanceNeverAllocatesBlocks) {
  BeamSearchOptions options;
  options.beam_size = 4;
  options.max_len_b = 12;
  SequenceId next = 5000;
  BeamSearch search(options, runner_->backend().spec().vocab_size, 0, Root(), prompt_.back(),
                    [&] { return next++; });
  std::vector<float> logits;
  std::vector<SequenceWork> work;
  while (!search.done()) {
    work.clear();
    for (const auto& [sequence, token] : search.inputs()) {
      work.push_back({sequence, absl::MakeConstSpan(&token, 1), true, false});
    }
    ASSERT_TRUE(runner_->Step(work, &logits).ok());
    const int used = runner_->cache().num_used_blocks();
    ASSERT_TRUE(search.Advance(logits.data(), &runner_->cache()).ok());
    EXPECT_LE(runner_->cache().num_used_blocks(), used);
    EXPECT_EQ(static_cast<size_t>(runner_->cache().num_sequences()), search.num_live());
    EXPECT_EQ(search.sequences().size(), search.num_live());
  }
  EXPECT_EQ(runner_->cache().num_used_blocks(), 0);
}

// The search's state is its beams' tokens: recomputing every beam into a new
// sequence mid-search (as after a preemption) and rebinding gives the
// undisturbed hypotheses.
TEST_F(BeamSearchTest, RebindToRecomputedSequencesGivesTheSameHypotheses) {
  BeamSearchOptions options;
  options.beam_size = 3;
  options.max_len_b = 10;
  auto undisturbed = RunBeamSearch(runner_.get(), Root(), prompt_.back(), 0, options);
  ASSERT_TRUE(undisturbed.ok()) << undisturbed.status();

  SequenceId next = 7000;
  BeamSearch search(options, runner_->backend().spec().vocab_size, 0, Root(), prompt_.back(),
                    [&] { return next++; });
  std::vector<float> logits;
  std::vector<SequenceWork> work;
  for (int step = 0; !search.done(); ++step) {
    if (step == 4) {
      // Drop every beam's cache and recompute it from the tokens alone.
      for (SequenceId id : search.sequences()) ASSERT_TRUE(runner_->cache().Free(id).ok());
      std::vector<SequenceId> fresh;
      std::vector<std::vector<int32_t>> inputs;
      for (size_t b = 0; b < search.num_live(); ++b) {
        const std::vector<int32_t>& own = search.beam_tokens(b);
        std::vector<int32_t> tokens(prompt_.begin(), prompt_.end());
        tokens.insert(tokens.end(), own.begin(), own.end() - 1);  // the last one is pending
        fresh.push_back(next++);
        ASSERT_TRUE(runner_->cache().AddSequence(fresh.back()).ok());
        inputs.push_back(std::move(tokens));
      }
      work.clear();
      for (size_t b = 0; b < fresh.size(); ++b) {
        work.push_back({fresh[b], absl::MakeConstSpan(inputs[b]), false, false});
      }
      ASSERT_TRUE(runner_->Step(work, &logits).ok());
      ASSERT_TRUE(search.Rebind(fresh).ok());
      EXPECT_FALSE(search.Rebind({fresh[0]}).ok());  // one sequence per live beam
    }
    work.clear();
    for (const auto& [sequence, token] : search.inputs()) {
      work.push_back({sequence, absl::MakeConstSpan(&token, 1), true, false});
    }
    ASSERT_TRUE(runner_->Step(work, &logits).ok());
    ASSERT_TRUE(search.Advance(logits.data(), &runner_->cache()).ok());
  }
  ASSERT_EQ(search.results().size(), undisturbed->size());
  for (size_t i = 0; i < undisturbed->size(); ++i) {
    EXPECT_EQ(search.results()[i].tokens, (*undisturbed)[i].tokens) << i;
    EXPECT_NEAR(search.results()[i].score, (*undisturbed)[i].score, 1e-5) << i;
  }
  EXPECT_EQ(runner_->cache().num_used_blocks(), 0);
}

}  // namespace
}  // namespace mtla
