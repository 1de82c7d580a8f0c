// Beam search inside the scheduler, on a random checkpoint (no shared test
// data): the paper's speech decoder family at toy dims, with and without a
// keys-only prefix. Every beam of every request is a row of its request's
// group: scheduled within the token budget and max_running, preempted and
// recomputed as a whole. Checked here:
//  - requests of beam 1 and 4 sharing a cache that holds only one of them at
//    a time all finish with exactly their solo output;
//  - a beam group preempted mid-search (at many different points) resumes
//    with exactly the output of an undisturbed run;
//  - lengths and finish reasons: at most max_new_tokens tokens, EOS last;
//    beam 1 equals greedy sampling, tokens and finish reason alike;
//  - limits (a group wider than max_running) and cancellation of a group.
#include <algorithm>
#include <chrono>
#include <functional>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/model/cpu_model_backend.h"
#include "engine/model/decoder_spec.h"
#include "engine/scheduler/scheduler.h"
#include "engine/serving/engine.h"
#include "engine/testing/random_checkpoint.h"
#include "engine/testing/unique_temp_path.h"
#include "engine/weights/safetensors.h"
#include "engine/testing/request_outcome.h"
#include "engine/testing/wait_for.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

constexpr int kHidden = 32;
constexpr int kVocab = 50;
constexpr int kBlockSlots = 2;  // 4 tokens per block at down_rate 2
constexpr int32_t kEos = 2;
constexpr int32_t kPad = 1;

using Outcome = test_support::RequestOutcome;
Outcome Drain(RequestStream& stream, double timeout_seconds = 60.0) {
  return test_support::DrainStream(stream, timeout_seconds);
}

bool WaitFor(const std::function<bool()>& pred, double timeout_seconds) {
  return test_support::WaitFor(pred, timeout_seconds, /*poll_ms=*/1);
}

class EngineBeamTest : public testing::Test {
 protected:
  void SetUp() override {
    MtlaAttentionConfig a;
    a.embed_dim = kHidden;
    a.num_heads = 2;
    a.kv_lora_rank = 16;
    a.qk_nope_head_dim = 8;
    a.qk_rope_head_dim = 4;
    a.v_head_dim = 8;
    a.down_rate = 2;
    a.hypernet_rank = 4;
    spec_ = FairseqMtlaDecoderSpec(a, /*ffn_dim=*/48, /*num_layers=*/2, kVocab,
                                   /*max_context_tokens=*/256);
    path_ = UniqueTempPath("engine_beam_test", ".safetensors");
    WriteCheckpoint(/*eos_like=*/-1);
  }

  // Random weights; with eos_like >= 0, EOS's output row is 1.1 x that
  // token's, so that EOS wins wherever that token would (the random model
  // never ends on its own otherwise).
  void WriteCheckpoint(int eos_like) {
    std::map<std::string, NamedTensor> weights = RandomDecoderWeights(spec_, /*seed=*/11, 0.3f);
    if (eos_like >= 0) {
      std::vector<float>& w = weights.at(spec_.names.lm_head).values;
      for (int c = 0; c < kHidden; ++c) {
        w[static_cast<size_t>(kEos) * kHidden + c] = 1.1f * w[static_cast<size_t>(eos_like) * kHidden + c];
      }
    }
    file_.reset();
    ASSERT_TRUE(WriteSafetensors(path_, weights).ok());
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path_);
    ASSERT_TRUE(file.ok()) << file.status();
    file_ = std::move(*file);
  }

  void TearDown() override {
    std::filesystem::remove(path_);
  }

  std::unique_ptr<Engine> MakeEngine(int num_blocks, SchedulerConfig scheduler = {}) {
    absl::StatusOr<std::unique_ptr<CpuModelBackend>> backend =
        CpuModelBackend::Create(spec_, *file_, num_blocks, kBlockSlots);
    EXPECT_TRUE(backend.ok()) << backend.status();
    if (!backend.ok()) return nullptr;
    EngineOptions options;
    options.scheduler = scheduler;
    return std::make_unique<Engine>(std::make_unique<ModelRunner>(std::move(*backend)), options,
                                    /*metrics=*/nullptr);
  }

  // A speech-like request: `prefix_rows` random prefix rows, prompt [EOS].
  // prefix_rows == 0 gives a text request with a random prompt instead.
  static GenerationRequest Request(uint64_t seed, int prefix_rows, int beam, int max_new,
                                   int prompt_len = 0) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    GenerationRequest r;
    r.prefix_rows = prefix_rows;
    r.prefix.resize(static_cast<size_t>(prefix_rows) * kHidden);
    for (float& v : r.prefix) v = normal(rng);
    if (prefix_rows > 0) {
      r.prompt = {kEos};
    } else {
      std::uniform_int_distribution<int32_t> token(4, kVocab - 1);
      r.prompt.resize(prompt_len > 0 ? prompt_len : 3 + seed % 5);
      for (int32_t& t : r.prompt) t = token(rng);
    }
    r.sampling.max_new_tokens = max_new;
    r.use_beam_search = beam > 0;
    r.beam_size = std::max(beam, 1);
    return r;
  }

  // The most cache blocks `r` can hold (what "fits alone" means).
  int64_t Bound(const GenerationRequest& r) const {
    KvCacheGeometry g;
    g.down_rate = 2;
    g.block_slots = kBlockSlots;
    const int64_t context = r.prefix_rows + static_cast<int64_t>(r.prompt.size());
    return MaxGroupBlocks(g, context, context + r.sampling.max_new_tokens,
                          r.use_beam_search ? r.beam_size : 1);
  }

  // `r` on an idle engine with room to spare.
  Outcome Alone(const GenerationRequest& r) {
    std::unique_ptr<Engine> engine = MakeEngine(512);
    absl::StatusOr<std::shared_ptr<RequestStream>> stream = engine->Submit(r);
    EXPECT_TRUE(stream.ok()) << stream.status();
    if (!stream.ok()) return {};
    Outcome out = Drain(**stream);
    EXPECT_TRUE(out.finished);
    EXPECT_TRUE(out.status.ok()) << out.status;
    EXPECT_EQ(out.timing.num_preemptions, 0);
    return out;
  }

  // Submits all of `requests` at once to `engine` and reads their outcomes.
  static std::vector<Outcome> Together(Engine& engine, const std::vector<GenerationRequest>& requests) {
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (const GenerationRequest& r : requests) {
      absl::StatusOr<std::shared_ptr<RequestStream>> s = engine.Submit(r);
      EXPECT_TRUE(s.ok()) << s.status();
      if (!s.ok()) return {};
      streams.push_back(*s);
    }
    std::vector<Outcome> outcomes;
    for (auto& s : streams) outcomes.push_back(Drain(*s));
    return outcomes;
  }

  static void ExpectWellFormed(const Outcome& out, const GenerationRequest& r) {
    ASSERT_TRUE(out.finished);
    ASSERT_TRUE(out.status.ok()) << out.status;
    ASSERT_FALSE(out.tokens.empty());
    EXPECT_LE(static_cast<int>(out.tokens.size()), r.sampling.max_new_tokens);
    EXPECT_EQ(out.generated_tokens, static_cast<int>(out.tokens.size()));
    if (r.use_beam_search) {
      EXPECT_EQ(out.tokens.back(), kEos);
      for (size_t i = 0; i + 1 < out.tokens.size(); ++i) EXPECT_NE(out.tokens[i], kEos);
      // Shorter than the limit: the search chose EOS.
      if (static_cast<int>(out.tokens.size()) < r.sampling.max_new_tokens) {
        EXPECT_EQ(out.finish_reason, FinishReason::kEos);
      }
    }
  }

  static void ExpectCacheEmpty(Engine& engine) {
    EXPECT_TRUE(WaitFor([&] { return engine.stats().in_flight == 0; }, 10.0));
    EXPECT_TRUE(WaitFor([&] { return engine.stats().cache_blocks_used == 0; }, 5.0))
        << "cache_blocks_used=" << engine.stats().cache_blocks_used;
  }

  DecoderSpec spec_;
  std::string path_;
  std::unique_ptr<SafetensorsFile> file_;
};

// Four concurrent calls, beam 1 and 4, in a cache that holds any one of them
// but not two: every call succeeds with its solo output.
TEST_F(EngineBeamTest, BeamGroupsShareACacheThatFitsOneAtATime) {
  const std::vector<GenerationRequest> requests = {
      Request(1, 9, 1, 16), Request(2, 6, 4, 16), Request(3, 11, 1, 16), Request(4, 7, 4, 16)};
  int64_t blocks = 0;
  std::vector<Outcome> solo;
  for (const GenerationRequest& r : requests) {
    blocks = std::max(blocks, Bound(r));
    solo.push_back(Alone(r));
    ExpectWellFormed(solo.back(), r);
  }
  std::unique_ptr<Engine> engine = MakeEngine(static_cast<int>(blocks));
  const std::vector<Outcome> together = Together(*engine, requests);
  ASSERT_EQ(together.size(), requests.size());
  int preemptions = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("request ", i, " beam ", requests[i].beam_size));
    ExpectWellFormed(together[i], requests[i]);
    EXPECT_EQ(together[i].tokens, solo[i].tokens);
    EXPECT_EQ(together[i].finish_reason, solo[i].finish_reason);
    preemptions += together[i].timing.num_preemptions;
  }
  EXPECT_GT(engine->stats().preemptions, 0) << "the cache was meant to force preemption";
  EXPECT_EQ(preemptions, engine->stats().preemptions);
  ExpectCacheEmpty(*engine);
}

// A beam-4 group newer than a long greedy request is preempted when its beams
// outgrow the cache left to it, waits, recomputes (shared prefix, fork, each
// beam's own tokens) and resumes. Cache sizes from "each fits alone" upwards
// move the preemption to different points of the search; the output is
// always the undisturbed one.
TEST_F(EngineBeamTest, PreemptedGroupResumesWithTheUndisturbedOutput) {
  for (int prefix_rows : {9, 0}) {
    SCOPED_TRACE(absl::StrCat("prefix rows ", prefix_rows));
    // Older, and holding most of the cache while the beams grow.
    GenerationRequest greedy = Request(21, 0, 0, 40, /*prompt_len=*/60);
    greedy.sampling.ignore_eos = true;
    const GenerationRequest beam = Request(22, prefix_rows, 4, 24);
    const Outcome greedy_solo = Alone(greedy);
    const Outcome beam_solo = Alone(beam);
    ExpectWellFormed(beam_solo, beam);
    const int64_t fits = std::max(Bound(greedy), Bound(beam));
    int preempted_runs = 0;
    for (int64_t blocks = fits; blocks <= fits + 8; ++blocks) {
      SCOPED_TRACE(absl::StrCat(blocks, " blocks"));
      std::unique_ptr<Engine> engine = MakeEngine(static_cast<int>(blocks));
      const std::vector<Outcome> out = Together(*engine, {greedy, beam});
      ASSERT_EQ(out.size(), 2u);
      ASSERT_TRUE(out[0].status.ok()) << out[0].status;
      ASSERT_TRUE(out[1].status.ok()) << out[1].status;
      EXPECT_EQ(out[0].tokens, greedy_solo.tokens);
      EXPECT_EQ(out[1].tokens, beam_solo.tokens);
      EXPECT_EQ(out[1].finish_reason, beam_solo.finish_reason);
      EXPECT_EQ(out[0].timing.num_preemptions, 0) << "the older request was preempted";
      preempted_runs += out[1].timing.num_preemptions > 0;
      ExpectCacheEmpty(*engine);
    }
    EXPECT_GE(preempted_runs, 4) << "the beam group was meant to be preempted";
  }
}

// A small token budget splits the recompute of a preempted group into
// chunks, and the beams of a group never run partially.
TEST_F(EngineBeamTest, TightTokenBudget) {
  SchedulerConfig scheduler;
  scheduler.max_batched_tokens = 5;  // a beam-4 group decodes 4 rows of 1 token
  const std::vector<GenerationRequest> requests = {Request(31, 13, 4, 20), Request(32, 0, 4, 20),
                                                   Request(33, 5, 1, 20)};
  int64_t blocks = 0;
  std::vector<Outcome> solo;
  for (const GenerationRequest& r : requests) {
    blocks = std::max(blocks, Bound(r));
    solo.push_back(Alone(r));
  }
  std::unique_ptr<Engine> engine = MakeEngine(static_cast<int>(blocks), scheduler);
  const std::vector<Outcome> together = Together(*engine, requests);
  ASSERT_EQ(together.size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("request ", i));
    ExpectWellFormed(together[i], requests[i]);
    EXPECT_EQ(together[i].tokens, solo[i].tokens);
  }
  ExpectCacheEmpty(*engine);
}

// Beam 1 is greedy decoding with pad excluded, EOS barred as the first token
// (min_len 1) and forced as the max_new_tokens-th: where greedy sampling
// picks neither, both give the same tokens and the same finish reason, for
// every max_new_tokens.
TEST_F(EngineBeamTest, BeamOneMatchesGreedyTokensAndFinishReason) {
  WriteCheckpoint(/*eos_like=*/13);
  std::unique_ptr<Engine> engine = MakeEngine(512);
  int length = 0;
  int natural_eos = 0;
  for (uint64_t seed = 100; seed < 140; ++seed) {
    const int prefix_rows = static_cast<int>(seed % 3) * 4;
    GenerationRequest greedy = Request(seed, prefix_rows, 0, 60);
    const std::vector<Outcome> g = Together(*engine, {greedy});
    ASSERT_EQ(g.size(), 1u);
    ASSERT_TRUE(g[0].status.ok()) << g[0].status;
    if (std::find(g[0].tokens.begin(), g[0].tokens.end(), kPad) != g[0].tokens.end()) continue;
    const int n = static_cast<int>(g[0].tokens.size());
    if (g[0].tokens[0] == kEos) continue;  // fairseq's min_len 1 bars EOS as the first token
    natural_eos += g[0].finish_reason == FinishReason::kEos;
    length += g[0].finish_reason == FinishReason::kLength;
    for (int max_new : {1, n - 1, n, n + 3, 60}) {
      if (max_new < 1 || max_new > 60) continue;
      SCOPED_TRACE(absl::StrCat("seed ", seed, " max_new_tokens ", max_new));
      GenerationRequest beam = Request(seed, prefix_rows, 1, max_new);
      const std::vector<Outcome> b = Together(*engine, {beam});
      ASSERT_EQ(b.size(), 1u);
      ExpectWellFormed(b[0], beam);
      if (max_new < n || g[0].finish_reason != FinishReason::kEos) {
        // Greedy would go on: beam 1 stops with EOS forced at the limit.
        ASSERT_EQ(static_cast<int>(b[0].tokens.size()), max_new);
        EXPECT_EQ(std::vector<int32_t>(b[0].tokens.begin(), b[0].tokens.end() - 1),
                  std::vector<int32_t>(g[0].tokens.begin(), g[0].tokens.begin() + max_new - 1));
        EXPECT_EQ(b[0].finish_reason, FinishReason::kLength);
      } else {
        EXPECT_EQ(b[0].tokens, g[0].tokens);
        EXPECT_EQ(b[0].finish_reason, FinishReason::kEos);
      }
    }
  }
  EXPECT_GT(natural_eos, 3) << "too few greedy runs ended with EOS";
  EXPECT_GT(length, 3) << "too few greedy runs reached max_new_tokens";
  ExpectCacheEmpty(*engine);
}

TEST_F(EngineBeamTest, GroupWiderThanTheEngineIsResourceExhausted) {
  SchedulerConfig scheduler;
  scheduler.max_running = 3;
  std::unique_ptr<Engine> engine = MakeEngine(512, scheduler);
  absl::StatusOr<std::shared_ptr<RequestStream>> s = engine->Submit(Request(41, 4, 4, 8));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted) << s.status();
  // A group whose beams can never fit the cache together, though one would.
  std::unique_ptr<Engine> small = MakeEngine(12);
  s = small->Submit(Request(42, 4, 4, 30));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted) << s.status();
  s = small->Submit(Request(42, 4, 1, 30));
  ASSERT_TRUE(s.ok()) << s.status();
  Outcome out = Drain(**s);
  EXPECT_TRUE(out.status.ok()) << out.status;
  ExpectCacheEmpty(*small);
}

TEST_F(EngineBeamTest, CancelledGroupFreesItsBlocks) {
  std::unique_ptr<Engine> engine = MakeEngine(512);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::shared_ptr<RequestStream>> s = engine->Submit(Request(50 + i, 8, 4, 200));
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  ASSERT_TRUE(WaitFor([&] { return engine->stats().cache_blocks_used > 0; }, 10.0));
  for (auto& s : streams) s->Cancel();
  for (auto& s : streams) {
    Outcome out = Drain(*s, 10.0);
    ASSERT_TRUE(out.finished);
    if (!out.status.ok()) EXPECT_EQ(out.status.code(), absl::StatusCode::kCancelled);
  }
  ExpectCacheEmpty(*engine);
}

}  // namespace
}  // namespace mtla
