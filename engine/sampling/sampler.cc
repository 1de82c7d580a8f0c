// Token sampling. See sampler.h for the contracts.
//
// Numerics: the softmax is taken relative to the largest logit,
// exp((x - max) / temperature), with the scaled difference formed in double
// (a tiny temperature cannot overflow or produce inf * 0) and the exponential
// in float; weights lie in [0, 1] and are summed in double.
//
// Cost: O(vocab) per token for every combination of filters. top_k uses a
// heap scan (small k) or nth_element; top_p a quickselect on probability mass,
// so no full sort of the vocabulary is needed.
//
// Determinism: a request's tokens depend only on its seed and the logits it
// is given. Every non-greedy Sample() consumes exactly one 64-bit draw from
// the request's own std::mt19937_64, turned into a uniform number in [0, 1)
// by bit manipulation (not std::uniform_real_distribution, whose algorithm
// differs between standard libraries).
#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace mtla {
namespace {

using Entry = std::pair<float, int32_t>;

// Larger value first; on equal values the lower token id first, so that every
// selection below is a strict, reproducible order.
bool Before(const Entry& a, const Entry& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

// First index of the maximum; NaN never wins. 0 when every value is NaN.
int32_t ArgMax(const float* logits, int vocab) {
  int32_t best = 0;
  float best_value = -std::numeric_limits<float>::infinity();
  bool found = false;
  for (int i = 0; i < vocab; ++i) {
    const float v = logits[i];
    if (std::isnan(v)) continue;
    if (!found || v > best_value) {
      best = i;
      best_value = v;
      found = true;
    }
  }
  return best;
}

// Reorders `entries` (weights in .first) so that its first N elements are the
// N first in the Before order, for the smallest N whose weights sum to at least
// `target`; returns N (at least 1; all of them if rounding keeps the sum below
// target). Quickselect on mass: partition around a pivot, then continue in the
// part that holds the boundary.
size_t NucleusSize(std::vector<Entry>& entries, double target) {
  const size_t n = entries.size();
  size_t lo = 0, hi = n;  // [0, lo) kept for sure; the boundary lies in [lo, hi)
  double need = target;   // mass still needed beyond [0, lo)
  constexpr size_t kSmall = 32;
  while (hi - lo > kSmall) {
    // Median of three, by value, as the pivot.
    Entry a = entries[lo], b = entries[lo + (hi - lo) / 2], c = entries[hi - 1];
    if (Before(b, a)) std::swap(a, b);
    if (Before(c, b)) std::swap(b, c);
    if (Before(b, a)) std::swap(a, b);
    const Entry pivot = b;
    auto first = entries.begin() + lo, last = entries.begin() + hi;
    auto mid = std::partition(first, last, [&](const Entry& e) { return Before(e, pivot); });
    // The pivot itself is the first element of [mid, last) in the Before order.
    auto pivot_it = std::find(mid, last, pivot);
    std::iter_swap(mid, pivot_it);
    double upper = 0.0;
    for (auto it = first; it != mid; ++it) upper += it->first;
    const size_t m = static_cast<size_t>(mid - entries.begin());
    if (upper >= need) {
      hi = m;  // strictly above the pivot
    } else if (upper + mid->first >= need) {
      return m + 1;  // up to and including the pivot
    } else {
      need -= upper + mid->first;
      lo = m + 1;
    }
  }
  std::sort(entries.begin() + lo, entries.begin() + hi, Before);
  double mass = 0.0;
  for (size_t j = lo; j < hi; ++j) {
    mass += entries[j].first;
    if (mass >= need) return j + 1;
  }
  return std::max<size_t>(hi, 1);
}

uint64_t NondeterministicSeed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ static_cast<uint64_t>(rd());
}

}  // namespace

absl::Status SamplingParams::Validate(int vocab_size, int max_new_tokens_limit) const {
  if (!(std::isfinite(temperature) && temperature >= 0.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.temperature must be finite and >= 0, got ", temperature));
  }
  if (top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_k must be >= 0 (0 for no limit), got ", top_k));
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.top_p must be in (0, 1], got ", top_p));
  }
  if (max_new_tokens < 1 || max_new_tokens > max_new_tokens_limit) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens must be in [1, ",
                                                   max_new_tokens_limit, "], got ",
                                                   max_new_tokens));
  }
  for (size_t i = 0; i < stop_token_ids.size(); ++i) {
    const int32_t id = stop_token_ids[i];
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("stop_token_ids[", i, "] must be in [0, ",
                                                     vocab_size, "), got ", id));
    }
  }
  return absl::OkStatus();
}

RequestSampler::RequestSampler(const SamplingParams& params)
    : params_(params), rng_(params.seed.has_value() ? *params.seed : NondeterministicSeed()) {}

int32_t RequestSampler::Sample(const float* logits, int vocab) {
  if (vocab <= 0) return 0;
  if (params_.temperature <= 0.0f) return ArgMax(logits, vocab);

  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  constexpr float kPosInf = std::numeric_limits<float>::infinity();
  auto sanitized = [](float v) { return std::isnan(v) ? kNegInf : v; };  // NaN: masked

  float max_logit = kNegInf;
  for (int i = 0; i < vocab; ++i) max_logit = std::max(max_logit, sanitized(logits[i]));
  // Degenerate inputs: everything masked, or an infinite logit (the limit of
  // the softmax puts all the mass there). Deterministic, no draw consumed.
  if (max_logit == kNegInf || max_logit == kPosInf) return ArgMax(logits, vocab);

  // Candidates as (logit, id), restricted to the top_k largest logits (the
  // order of the scaled logits is the same).
  const size_t k = params_.top_k > 0 ? static_cast<size_t>(params_.top_k) : 0;
  scratch_.clear();
  if (k > 0 && k * 8 <= static_cast<size_t>(vocab)) {
    // Small k: one pass keeping a heap of the best k, its worst on top; most
    // logits are rejected by a single comparison.
    scratch_.reserve(k);
    for (int i = 0; i < vocab; ++i) {
      const Entry e{sanitized(logits[i]), static_cast<int32_t>(i)};
      if (scratch_.size() < k) {
        scratch_.push_back(e);
        std::push_heap(scratch_.begin(), scratch_.end(), Before);
      } else if (Before(e, scratch_.front())) {
        std::pop_heap(scratch_.begin(), scratch_.end(), Before);
        scratch_.back() = e;
        std::push_heap(scratch_.begin(), scratch_.end(), Before);
      }
    }
  } else {
    scratch_.resize(vocab);
    for (int i = 0; i < vocab; ++i) scratch_[i] = {sanitized(logits[i]), static_cast<int32_t>(i)};
    if (k > 0 && k < scratch_.size()) {
      std::nth_element(scratch_.begin(), scratch_.begin() + k, scratch_.end(), Before);
      scratch_.resize(k);
    }
  }

  // Softmax weights relative to the maximum (always a candidate), in (0, 1].
  // The scaled difference is formed in double so that a tiny temperature
  // gives -inf (weight 0), never inf * 0.
  const double inv_temperature = 1.0 / static_cast<double>(params_.temperature);
  double total = 0.0;
  for (Entry& e : scratch_) {
    const float scaled = static_cast<float>(static_cast<double>(e.first - max_logit) * inv_temperature);
    e.first = std::exp(scaled);
    total += e.first;
  }

  // top_p: the smallest set of most probable candidates whose mass reaches
  // top_p of the total, found by a quickselect on mass (expected O(n), no
  // full sort): scratch_[0, keep) becomes that set, in no particular order.
  if (params_.top_p < 1.0f) {
    const size_t keep = NucleusSize(scratch_, static_cast<double>(params_.top_p) * total);
    scratch_.resize(keep);
    total = 0.0;  // recomputed over the nucleus, in the same order as the draw
    for (const Entry& e : scratch_) total += e.first;
  }

  // One uniform draw in [0, 1) with 53 random bits.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  const double threshold = u * total;
  double cumulative = 0.0;
  int32_t last_positive = scratch_.front().second;
  for (const Entry& e : scratch_) {
    if (e.first <= 0.0f) continue;
    cumulative += e.first;
    last_positive = e.second;
    if (threshold < cumulative) return e.second;
  }
  return last_positive;  // threshold rounded up to the total
}

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kNone:
      break;
  }
  return "";
}

FinishReason CheckFinish(const SamplingParams& params, int32_t token, int generated,
                         int eos_token_id) {
  if (std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(), token) !=
      params.stop_token_ids.end()) {
    return FinishReason::kStop;
  }
  if (token == eos_token_id && !params.ignore_eos) return FinishReason::kEos;
  if (generated >= params.max_new_tokens) return FinishReason::kLength;
  return FinishReason::kNone;
}

}  // namespace mtla
