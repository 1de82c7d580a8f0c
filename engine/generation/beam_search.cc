#include "engine/generation/beam_search.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/model_runner.h"

namespace mtla {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// log_softmax of one row, with NaN read as -inf.
void LogSoftmax(const float* logits, int vocab, double* out) {
  double max_logit = kNegInf;
  for (int v = 0; v < vocab; ++v) {
    if (!std::isnan(logits[v])) max_logit = std::max(max_logit, static_cast<double>(logits[v]));
  }
  double sum = 0.0;
  for (int v = 0; v < vocab; ++v) {
    if (!std::isnan(logits[v])) sum += std::exp(logits[v] - max_logit);
  }
  const double log_sum = max_logit + std::log(sum);
  for (int v = 0; v < vocab; ++v) {
    out[v] = std::isnan(logits[v]) ? kNegInf : logits[v] - log_sum;
  }
}

}  // namespace

BeamSearch::BeamSearch(const BeamSearchOptions& options, int vocab_size, int64_t src_len,
                       SequenceId root, int32_t first_token, std::function<SequenceId()> new_id)
    : options_(options), vocab_(vocab_size), new_id_(std::move(new_id)) {
  max_len_ = std::min(static_cast<int>(options.max_len_a * src_len + options.max_len_b),
                      options.max_positions - 1);
  beams_.push_back({root, {}, {}});
  inputs_.push_back({root, first_token});
  ignore_.assign(options.beam_size, false);
}

std::vector<SequenceId> BeamSearch::sequences() const {
  std::vector<SequenceId> out;
  out.reserve(beams_.size());
  for (const Beam& beam : beams_) out.push_back(beam.sequence);
  return out;
}

absl::Status BeamSearch::Rebind(const std::vector<SequenceId>& sequences) {
  if (sequences.size() != beams_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("rebind: ", sequences.size(),
                                                   " sequences for ", beams_.size(), " beams"));
  }
  for (size_t i = 0; i < beams_.size(); ++i) {
    beams_[i].sequence = sequences[i];
    inputs_[i].first = sequences[i];
  }
  return absl::OkStatus();
}

void BeamSearch::Release(KvCacheManager* cache) {
  for (const Beam& beam : beams_) (void)cache->Free(beam.sequence);
  beams_.clear();
  inputs_.clear();
}

absl::Status BeamSearch::Advance(const float* logits, KvCacheManager* cache) {
  if (done_) return absl::FailedPreconditionError("beam search already finished");
  const int beam = options_.beam_size;
  const int rows = static_cast<int>(beams_.size());
  lprobs_.resize(static_cast<size_t>(rows) * vocab_);
  std::vector<bool> eos_forced(rows, false);
  for (int b = 0; b < rows; ++b) {
    double* lp = lprobs_.data() + static_cast<size_t>(b) * vocab_;
    LogSoftmax(logits + static_cast<size_t>(b) * vocab_, vocab_, lp);
    lp[options_.pad] = kNegInf;
    lp[options_.unk] -= options_.unk_penalty;
    if (step_ >= max_len_) {
      // Would this beam have ended here on its own? (EOS is its best token.)
      for (int v = 0; v < vocab_; ++v) {
        if (lp[v] > lp[options_.eos]) {
          eos_forced[b] = true;
          break;
        }
      }
      for (int v = 0; v < vocab_; ++v) {
        if (v != options_.eos) lp[v] = kNegInf;
      }
    } else if (step_ < options_.min_len) {
      lp[options_.eos] = kNegInf;
    }
    // Cumulative scores: candidates extend their beam's running total.
    const double base = beams_[b].cumulative.empty() ? 0.0 : beams_[b].cumulative.back();
    for (int v = 0; v < vocab_; ++v) lp[v] += base;
  }

  // The top 2 x beam candidates over (beam, token), best first (ties: lower index).
  const int64_t flat = static_cast<int64_t>(rows) * vocab_;
  const int k = static_cast<int>(std::min<int64_t>(2 * beam, flat - 1));
  std::vector<int64_t> order(flat);
  for (int64_t i = 0; i < flat; ++i) order[i] = i;
  auto better = [&](int64_t a, int64_t b) {
    return lprobs_[a] > lprobs_[b] || (lprobs_[a] == lprobs_[b] && a < b);
  };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), better);
  std::vector<int> cand_beam(k), cand_token(k);
  std::vector<double> cand_score(k);
  std::vector<bool> eos(k);
  for (int i = 0; i < k; ++i) {
    cand_beam[i] = static_cast<int>(order[i] / vocab_);
    cand_token[i] = static_cast<int>(order[i] % vocab_);
    cand_score[i] = lprobs_[order[i]];
    eos[i] = cand_token[i] == options_.eos && cand_score[i] != kNegInf;
  }
  for (int i = 0; i < std::min(beam, k); ++i) {
    if (ignore_[i]) eos[i] = false;
  }

  // Finalize EOS candidates among the top `beam`.
  for (int i = 0; i < std::min(beam, k); ++i) {
    if (!eos[i] || static_cast<int>(finalized_.size()) >= beam) continue;
    const Beam& parent = beams_[cand_beam[i]];
    BeamHypothesis h;
    h.tokens = parent.tokens;
    h.tokens.push_back(options_.eos);
    double previous = 0.0;
    for (double c : parent.cumulative) {
      h.positional_scores.push_back(static_cast<float>(c - previous));
      previous = c;
    }
    h.positional_scores.push_back(static_cast<float>(cand_score[i] - previous));
    h.score = cand_score[i];
    h.eos_forced = eos_forced[cand_beam[i]];
    if (options_.normalize_scores) h.score /= std::pow(step_ + 1, options_.len_penalty);
    finalized_.push_back(std::move(h));
  }
  if (static_cast<int>(finalized_.size()) == beam || step_ >= max_len_) {
    done_ = true;
    std::stable_sort(finalized_.begin(), finalized_.end(),
                     [](const BeamHypothesis& a, const BeamHypothesis& b) { return a.score > b.score; });
    Release(cache);
    return absl::OkStatus();
  }

  // The first `beam` candidates that are neither EOS nor ignored continue.
  const int cand_size = 2 * beam;
  std::vector<std::pair<int, int>> keyed(k);  // (key, candidate position)
  for (int i = 0; i < k; ++i) {
    const bool masked = i < beam ? (ignore_[i] || eos[i]) : eos[i];
    keyed[i] = {masked ? cand_size + i : i, i};
  }
  std::sort(keyed.begin(), keyed.end());
  // Each parent's first child keeps the parent's sequence; further children
  // fork it. Forks first, while every parent still holds its sequence.
  std::vector<Beam> next;
  std::vector<bool> kept(beams_.size(), false);
  inputs_.clear();
  for (int j = 0; j < beam && j < k; ++j) {
    const int pos = keyed[j].second;
    ignore_[j] = keyed[j].first >= cand_size;
    const int p = cand_beam[pos];
    const Beam& parent = beams_[p];
    Beam child;
    if (kept[p]) {
      child.sequence = new_id_();
      RETURN_IF_ERROR(cache->Fork(parent.sequence, child.sequence));
    } else {
      child.sequence = parent.sequence;
      kept[p] = true;
    }
    child.tokens = parent.tokens;
    child.tokens.push_back(cand_token[pos]);
    child.cumulative = parent.cumulative;
    child.cumulative.push_back(cand_score[pos]);
    inputs_.push_back({child.sequence, cand_token[pos]});
    next.push_back(std::move(child));
  }
  for (size_t b = 0; b < beams_.size(); ++b) {
    if (!kept[b]) RETURN_IF_ERROR(cache->Free(beams_[b].sequence));
  }
  beams_ = std::move(next);
  ++step_;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<BeamHypothesis>> RunBeamSearch(ModelRunner* runner, SequenceId root,
                                                          int32_t first_token, int64_t src_len,
                                                          const BeamSearchOptions& options) {
  if (options.beam_size < 1 || options.beam_size > 16) {
    (void)runner->cache().Free(root);
    return absl::InvalidArgumentError(
        absl::StrCat("beam_size must be in [1, 16], got ", options.beam_size));
  }
  SequenceId next_id = root;
  auto new_id = [&]() {
    do {
      ++next_id;
    } while (runner->cache().contains(next_id));
    return next_id;
  };
  const int vocab = runner->backend().spec().vocab_size;
  BeamSearch search(options, vocab, src_len, root, first_token, new_id);
  std::vector<float> logits;
  std::vector<SequenceWork> work;
  while (!search.done()) {
    work.clear();
    for (const auto& [sequence, token] : search.inputs()) {
      work.push_back({sequence, absl::MakeConstSpan(&token, 1), true, false});
    }
    absl::Status status = runner->Step(work, &logits);
    if (status.ok()) status = search.Advance(logits.data(), &runner->cache());
    if (!status.ok()) {
      search.Release(&runner->cache());
      return status;
    }
  }
  return search.results();
}

}  // namespace mtla
