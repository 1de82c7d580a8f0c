// Tests for the token sampler: greedy, temperature, top-k, top-p statistics,
// seeding, parameter validation and finish conditions.
#include "engine/sampling/sampler.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;

std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  double mx = -std::numeric_limits<double>::infinity();
  for (float l : logits) mx = std::max(mx, static_cast<double>(l));
  std::vector<double> p(logits.size());
  double z = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    p[i] = std::exp((logits[i] - mx) / temperature);
    z += p[i];
  }
  for (double& v : p) v /= z;
  return p;
}

std::vector<int> Histogram(RequestSampler& sampler, const std::vector<float>& logits, int draws) {
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i) {
    const int32_t t = sampler.Sample(logits.data(), static_cast<int>(logits.size()));
    EXPECT_GE(t, 0);
    EXPECT_LT(t, static_cast<int32_t>(logits.size()));
    if (t >= 0 && t < static_cast<int32_t>(logits.size())) ++counts[t];
  }
  return counts;
}

// Pearson chi-square of `counts` against `probs` over the tokens with
// probability > 0; any draw of a zero-probability token fails the test.
double ChiSquare(const std::vector<int>& counts, const std::vector<double>& probs) {
  const double n = std::accumulate(counts.begin(), counts.end(), 0.0);
  double chi2 = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (probs[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    const double expected = n * probs[i];
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

SamplingParams Seeded(float temperature, uint64_t seed) {
  SamplingParams p;
  p.temperature = temperature;
  p.seed = seed;
  return p;
}

// Chi-square bounds: the 1 - 1e-6 quantiles are 23.9 (1 dof), 27.6 (2 dof),
// 33.4 (4 dof), 35.9 (5 dof), 38.3 (6 dof); a sampler that ignores the
// temperature or the filters is off by thousands with these many draws.
constexpr int kDraws = 200000;

TEST(SamplerTest, GreedyIsArgmaxFirstOnTies) {
  SamplingParams p;  // temperature 0
  RequestSampler s(p);
  std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f, 2.5f};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.Sample(logits.data(), 5), 1);
  std::vector<float> single = {-7.0f};
  EXPECT_EQ(s.Sample(single.data(), 1), 0);
  std::vector<float> masked = {-INFINITY, -INFINITY, 0.5f};
  EXPECT_EQ(s.Sample(masked.data(), 3), 2);
}

TEST(SamplerTest, TemperatureMatchesSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f};
  for (float temperature : {0.5f, 1.0f, 2.0f}) {
    RequestSampler s(Seeded(temperature, 1234));
    const auto probs = Softmax(logits, temperature);
    const auto counts = Histogram(s, logits, kDraws);
    EXPECT_LT(ChiSquare(counts, probs), 33.4) << "temperature " << temperature;
    // And a crude per-token check for a readable failure.
    for (size_t i = 0; i < logits.size(); ++i) {
      EXPECT_NEAR(counts[i] / static_cast<double>(kDraws), probs[i], 0.01)
          << "token " << i << " temperature " << temperature;
    }
  }
}

TEST(SamplerTest, TinyTemperatureIsStableAndNearlyGreedy) {
  const std::vector<float> logits = {1.0f, 2.0f, 1.999f, -50.0f};
  RequestSampler s(Seeded(1e-6f, 7));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s.Sample(logits.data(), 4), 1);
  // Huge logits do not overflow.
  const std::vector<float> big = {3e38f, -3e38f, 3e38f};
  RequestSampler t(Seeded(1.0f, 7));
  std::set<int32_t> seen;
  for (int i = 0; i < 200; ++i) seen.insert(t.Sample(big.data(), 3));
  EXPECT_EQ(seen, (std::set<int32_t>{0, 2}));
}

TEST(SamplerTest, MaskedAndNanLogitsAreNeverDrawn) {
  const std::vector<float> logits = {-INFINITY, 0.0f, NAN, 0.0f, -INFINITY};
  RequestSampler s(Seeded(1.0f, 99));
  const auto counts = Histogram(s, logits, 10000);
  EXPECT_EQ(counts[0] + counts[2] + counts[4], 0);
  EXPECT_GT(counts[1], 4000);
  EXPECT_GT(counts[3], 4000);
}

TEST(SamplerTest, TopKOneEqualsGreedy) {
  std::vector<float> logits(1000);
  std::mt19937 gen(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (float& l : logits) l = normal(gen);
  logits[17] = 20.0f;
  logits[640] = 20.0f;  // tie: the first one wins, as in greedy
  SamplingParams p = Seeded(1.5f, 3);
  p.top_k = 1;
  RequestSampler s(p);
  SamplingParams g;
  RequestSampler greedy(g);
  EXPECT_EQ(greedy.Sample(logits.data(), 1000), 17);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s.Sample(logits.data(), 1000), 17);
}

TEST(SamplerTest, TopKRestrictsSupportAndRenormalizes) {
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.5f, 1.0f, 0.0f, 1.2f};
  SamplingParams p = Seeded(1.0f, 42);
  p.top_k = 3;  // tokens 1 (2.0), 3 (1.5), 6 (1.2)
  RequestSampler s(p);
  const auto counts = Histogram(s, logits, kDraws);
  auto probs = Softmax(logits, 1.0);
  double kept = probs[1] + probs[3] + probs[6];
  for (size_t i = 0; i < probs.size(); ++i) {
    probs[i] = (i == 1 || i == 3 || i == 6) ? probs[i] / kept : 0.0;
  }
  EXPECT_LT(ChiSquare(counts, probs), 27.6);  // 2 dof at 1e-6
  EXPECT_GT(counts[1], 0);
  EXPECT_GT(counts[3], 0);
  EXPECT_GT(counts[6], 0);

  // Small k against a larger vocabulary (the one-pass selection), with a tie
  // at the boundary resolved toward the lower ids: 1.0 at ids 10, 40, 70, 90
  // and 0.5 at ids 20, 30, 80; top_k 6 keeps the four 1.0s and ids 20, 30.
  std::vector<float> wide(100, -1.0f);
  for (int id : {10, 40, 70, 90}) wide[id] = 1.0f;
  for (int id : {20, 30, 80}) wide[id] = 0.5f;
  p.top_k = 6;
  RequestSampler heap(p);
  const auto wide_counts = Histogram(heap, wide, kDraws);
  std::vector<double> wide_probs(100, 0.0);
  const double z = 4 * std::exp(1.0) + 2 * std::exp(0.5);
  for (int id : {10, 40, 70, 90}) wide_probs[id] = std::exp(1.0) / z;
  for (int id : {20, 30}) wide_probs[id] = std::exp(0.5) / z;
  EXPECT_LT(ChiSquare(wide_counts, wide_probs), 35.9);  // 5 dof at 1e-6

  // top_k >= vocab is no limit.
  p.top_k = 100;
  RequestSampler all(p);
  const auto all_counts = Histogram(all, logits, kDraws);
  EXPECT_LT(ChiSquare(all_counts, Softmax(logits, 1.0)), 38.3);  // 6 dof
}

TEST(SamplerTest, TopPRestrictsToNucleus) {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};

  SamplingParams p = Seeded(1.0f, 11);
  p.top_p = 0.6f;  // 0.5 < 0.6 <= 0.8: tokens 0 and 1
  RequestSampler s(p);
  const auto counts = Histogram(s, logits, kDraws);
  EXPECT_EQ(counts[2], 0);
  EXPECT_LT(ChiSquare(counts, {0.625, 0.375, 0.0}), 23.9);

  p.top_p = 0.4f;  // 0.5 >= 0.4: token 0 only
  RequestSampler only(p);
  const auto only_counts = Histogram(only, logits, 10000);
  EXPECT_EQ(only_counts[0], 10000);

  p.top_p = 1.0f;  // everything
  RequestSampler all(p);
  const auto all_counts = Histogram(all, logits, kDraws);
  EXPECT_LT(ChiSquare(all_counts, {0.5, 0.3, 0.2}), 27.6);
}

TEST(SamplerTest, TopPWithLargeVocabularyAndTopK) {
  // A large vocabulary whose nucleus spans more than the first selection
  // round, to exercise the growing partial sort.
  const int vocab = 50000;
  std::vector<float> logits(vocab, 0.0f);
  for (int i = 0; i < vocab; ++i) logits[i] = -1e-4f * static_cast<float>((i * 7919) % vocab);
  SamplingParams p = Seeded(1.0f, 2024);
  p.top_p = 0.5f;
  RequestSampler s(p);
  // Probabilities decrease with r = (i*7919) % vocab, so the nucleus is the
  // tokens with the smallest r; find its size with the reference softmax.
  auto probs = Softmax(logits, 1.0);
  std::vector<std::pair<double, int>> order;
  for (int i = 0; i < vocab; ++i) order.push_back({probs[i], i});
  std::sort(order.begin(), order.end(), [](auto& a, auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  std::set<int> nucleus;
  double mass = 0;
  for (auto& [prob, id] : order) {
    nucleus.insert(id);
    mass += prob;
    if (mass >= 0.5) break;
  }
  ASSERT_GT(nucleus.size(), 1000u);
  const auto last = order[nucleus.size() - 1].second;  // boundary token, may round either way
  for (int i = 0; i < 2000; ++i) {
    const int32_t t = s.Sample(logits.data(), vocab);
    if (t == last || nucleus.count(t)) continue;
    // One past the boundary is tolerated (float vs double mass rounding).
    ASSERT_EQ(t, order[nucleus.size()].second) << "token outside the nucleus";
  }

  // top_k then top_p: top_p applies to the renormalized top-k distribution.
  const std::vector<float> small = {std::log(0.4f), std::log(0.1f), std::log(0.3f),
                                    std::log(0.2f)};
  SamplingParams q = Seeded(1.0f, 77);
  q.top_k = 2;    // tokens 0 (0.4) and 2 (0.3): renormalized 4/7, 3/7
  q.top_p = 0.5f; // 4/7 >= 0.5: token 0 only
  RequestSampler kp(q);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(kp.Sample(small.data(), 4), 0);
  q.top_p = 0.6f;  // 4/7 < 0.6: tokens 0 and 2
  RequestSampler kp2(q);
  const auto counts = Histogram(kp2, small, kDraws);
  EXPECT_LT(ChiSquare(counts, {4.0 / 7, 0.0, 3.0 / 7, 0.0}), 23.9);
}

TEST(SamplerTest, TopPMatchesReferenceNucleusDistribution) {
  // 300 tokens (beyond the selection's small-range cutoff), random logits.
  const int vocab = 300;
  std::vector<float> logits(vocab);
  std::mt19937 gen(31);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  for (float& l : logits) l = normal(gen);
  const float top_p = 0.7f;
  const auto probs = Softmax(logits, 1.0);
  std::vector<int> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return probs[a] > probs[b]; });
  std::vector<double> expected(vocab, 0.0);
  double mass = 0;
  size_t size = 0;
  while (mass < top_p) mass += probs[order[size++]];
  // The boundary is not within rounding of top_p, so the nucleus is unambiguous.
  ASSERT_GT(mass - top_p, 1e-6);
  ASSERT_GT(top_p - (mass - probs[order[size - 1]]), 1e-6);
  for (size_t j = 0; j < size; ++j) expected[order[j]] = probs[order[j]] / mass;

  SamplingParams p = Seeded(1.0f, 8);
  p.top_p = top_p;
  RequestSampler s(p);
  const auto counts = Histogram(s, logits, kDraws);
  const double dof = static_cast<double>(size) - 1;
  EXPECT_LT(ChiSquare(counts, expected), dof + 6 * std::sqrt(2 * dof)) << size << " tokens";
}

TEST(SamplerTest, TopPSupportIsExactlyTheNucleus) {
  // Nearly flat distributions, so that a token one past the nucleus boundary
  // (or the boundary token itself, if dropped) would be drawn often. Many
  // shapes and top_p values, to land the boundary in every branch of the
  // selection.
  std::mt19937 gen(77);
  std::uniform_real_distribution<float> uniform(0.05f, 0.95f);
  int checked = 0;
  for (int c = 0; c < 30; ++c) {
    const int vocab = 64 + 5 * c;
    std::vector<int> rank(vocab);
    std::iota(rank.begin(), rank.end(), 0);
    std::shuffle(rank.begin(), rank.end(), gen);
    std::vector<float> logits(vocab);
    for (int i = 0; i < vocab; ++i) logits[i] = -0.003f * static_cast<float>(rank[i]);
    const float top_p = uniform(gen);
    const auto probs = Softmax(logits, 1.0);
    std::vector<int> order(vocab);
    for (int i = 0; i < vocab; ++i) order[rank[i]] = i;  // most probable first
    double mass = 0;
    int size = 0;
    while (mass < top_p) mass += probs[order[size++]];
    if (mass - top_p < 1e-6 || top_p - (mass - probs[order[size - 1]]) < 1e-6) continue;
    ++checked;

    SamplingParams p = Seeded(1.0f, 1000 + c);
    p.top_p = top_p;
    RequestSampler s(p);
    const auto counts = Histogram(s, logits, 20000);
    for (int j = size; j < vocab; ++j) {
      ASSERT_EQ(counts[order[j]], 0) << "case " << c << ": rank " << j << " is outside the nucleus of "
                                     << size;
    }
    ASSERT_GT(counts[order[size - 1]], 0) << "case " << c << ": the boundary token is never drawn";
  }
  EXPECT_GE(checked, 25);
}

TEST(SamplerTest, TopPBreaksTiesByLowerId) {
  // 1000 equal logits: the nucleus of mass 0.5 is exactly tokens 0..499.
  const std::vector<float> logits(1000, 0.25f);
  SamplingParams p = Seeded(1.0f, 5);
  p.top_p = 0.5f;
  RequestSampler s(p);
  const auto counts = Histogram(s, logits, 50000);
  for (int i = 500; i < 1000; ++i) ASSERT_EQ(counts[i], 0) << i;
  for (int i = 0; i < 500; ++i) ASSERT_GT(counts[i], 40) << i;  // expected 100 each
}

std::vector<int32_t> Draw(RequestSampler& s, const std::vector<float>& logits, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(s.Sample(logits.data(), static_cast<int>(logits.size())));
  return out;
}

TEST(SamplerTest, SameSeedSameSequenceDifferentSeedsDiffer) {
  std::vector<float> logits(1000, 0.0f);  // uniform over 1000 tokens
  for (int i = 0; i < 1000; ++i) logits[i] = 0.001f * static_cast<float>(i % 13);
  SamplingParams p = Seeded(1.0f, 123);
  p.top_p = 0.9f;
  p.top_k = 500;
  RequestSampler a(p), b(p);
  const auto seq_a = Draw(a, logits, 200);
  // Interleaving another request's sampling does not change b's tokens.
  SamplingParams other = Seeded(0.8f, 9);
  RequestSampler c(other);
  std::vector<int32_t> seq_b;
  for (int i = 0; i < 200; ++i) {
    Draw(c, logits, 3);
    seq_b.push_back(b.Sample(logits.data(), 1000));
  }
  EXPECT_EQ(seq_a, seq_b);

  p.seed = 124;
  RequestSampler d(p);
  EXPECT_NE(Draw(d, logits, 200), seq_a);

  // Unseeded requests get independent streams.
  SamplingParams u;
  u.temperature = 1.0f;
  RequestSampler e(u), f(u);
  EXPECT_NE(Draw(e, logits, 200), Draw(f, logits, 200));
}

absl::Status ValidateWith(void (*edit)(SamplingParams&)) {
  SamplingParams p;
  edit(p);
  return p.Validate(/*vocab_size=*/100, /*max_new_tokens_limit=*/512);
}

TEST(SamplerTest, ValidateAcceptsDefaultsAndEdges) {
  SamplingParams p;
  EXPECT_TRUE(p.Validate(100, 512).ok());
  p.temperature = 2.0f;
  p.top_k = 1000;  // larger than the vocabulary: no limit
  p.top_p = 1.0f;
  p.max_new_tokens = 512;
  p.stop_token_ids = {0, 99};
  EXPECT_TRUE(p.Validate(100, 512).ok());
  p.max_new_tokens = 1;
  p.top_p = 1e-6f;
  EXPECT_TRUE(p.Validate(100, 512).ok());
}

TEST(SamplerTest, ValidateNamesTheField) {
  struct Case {
    void (*edit)(SamplingParams&);
    std::string field;
  };
  const Case cases[] = {
      {[](SamplingParams& p) { p.temperature = -0.1f; }, "temperature"},
      {[](SamplingParams& p) { p.temperature = NAN; }, "temperature"},
      {[](SamplingParams& p) { p.temperature = INFINITY; }, "temperature"},
      {[](SamplingParams& p) { p.top_k = -1; }, "top_k"},
      {[](SamplingParams& p) { p.top_p = 0.0f; }, "top_p"},
      {[](SamplingParams& p) { p.top_p = 1.5f; }, "top_p"},
      {[](SamplingParams& p) { p.top_p = NAN; }, "top_p"},
      {[](SamplingParams& p) { p.max_new_tokens = 0; }, "max_new_tokens"},
      {[](SamplingParams& p) { p.max_new_tokens = 513; }, "max_new_tokens"},
      {[](SamplingParams& p) { p.stop_token_ids = {5, 100}; }, "stop_token_ids"},
      {[](SamplingParams& p) { p.stop_token_ids = {-1}; }, "stop_token_ids"},
  };
  for (const Case& c : cases) {
    const absl::Status s = ValidateWith(c.edit);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.field)) << s;
  }
  EXPECT_EQ(ValidateWith([](SamplingParams& p) { p.top_p = 1.5f; }).message(),
            "sampling.top_p must be in (0, 1], got 1.5");
}

TEST(SamplerTest, CheckFinish) {
  SamplingParams p;
  p.max_new_tokens = 4;
  p.stop_token_ids = {7, 8};
  const int eos = 2;
  EXPECT_EQ(CheckFinish(p, 5, 1, eos), FinishReason::kNone);
  EXPECT_EQ(CheckFinish(p, 7, 1, eos), FinishReason::kStop);
  EXPECT_EQ(CheckFinish(p, 8, 4, eos), FinishReason::kStop);  // stop beats length
  EXPECT_EQ(CheckFinish(p, eos, 1, eos), FinishReason::kEos);
  EXPECT_EQ(CheckFinish(p, eos, 4, eos), FinishReason::kEos);  // eos beats length
  EXPECT_EQ(CheckFinish(p, 5, 4, eos), FinishReason::kLength);
  EXPECT_EQ(CheckFinish(p, 5, 3, eos), FinishReason::kNone);
  p.ignore_eos = true;
  EXPECT_EQ(CheckFinish(p, eos, 1, eos), FinishReason::kNone);
  EXPECT_EQ(CheckFinish(p, eos, 4, eos), FinishReason::kLength);
  p.stop_token_ids.push_back(eos);  // an explicit stop id still stops
  EXPECT_EQ(CheckFinish(p, eos, 1, eos), FinishReason::kStop);

  EXPECT_STREQ(FinishReasonName(FinishReason::kLength), "length");
  EXPECT_STREQ(FinishReasonName(FinishReason::kStop), "stop");
  EXPECT_STREQ(FinishReasonName(FinishReason::kEos), "eos");
  EXPECT_STREQ(FinishReasonName(FinishReason::kNone), "");
}

}  // namespace
}  // namespace mtla
