#include "engine/speech/speech_decoding.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace mtla {

int GreedyMaxLen(const GreedyDecodeOptions& options, int64_t src_len) {
  const int64_t by_source =
      static_cast<int64_t>(options.max_len_a * static_cast<double>(src_len) + options.max_len_b);
  return static_cast<int>(std::min<int64_t>(by_source, options.max_positions - 1));
}

absl::StatusOr<GreedyDecodeResult> GreedyDecode(ModelRunner& runner, SequenceId id,
                                                int64_t src_len,
                                                const GreedyDecodeOptions& options) {
  const int vocab = runner.backend().spec().vocab_size;
  for (int32_t special : {options.eos, options.pad, options.unk}) {
    if (special < 0 || special >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("special token id ", special, " outside the vocabulary of ", vocab));
    }
  }
  const int max_len = GreedyMaxLen(options, src_len);
  if (max_len < 0 || options.min_len > max_len) {
    return absl::InvalidArgumentError(absl::StrCat("max_len ", max_len, " is below min_len ",
                                                   options.min_len));
  }
  GreedyDecodeResult result;
  std::vector<float> logits;
  std::vector<double> lprobs(vocab);
  int32_t input = options.eos;
  double total = 0.0;
  for (int step = 0; step <= max_len; ++step) {
    SequenceWork work{id, absl::MakeConstSpan(&input, 1), true, false};
    RETURN_IF_ERROR(runner.Step({work}, &logits));
    if (options.keep_step_logits) {
      result.step_logits.insert(result.step_logits.end(), logits.begin(), logits.begin() + vocab);
    }
    // log_softmax, then the generator's masks.
    const float mx = *std::max_element(logits.begin(), logits.begin() + vocab);
    double sum = 0.0;
    for (int v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - mx);
    const double lse = mx + std::log(sum);
    for (int v = 0; v < vocab; ++v) lprobs[v] = logits[v] - lse;
    const double ninf = -std::numeric_limits<double>::infinity();
    lprobs[options.pad] = ninf;
    lprobs[options.unk] -= options.unk_penalty;
    if (step >= max_len) {
      for (int v = 0; v < vocab; ++v) {
        if (v != options.eos) lprobs[v] = ninf;
      }
    } else if (step < options.min_len) {
      lprobs[options.eos] = ninf;
    }
    int32_t best = 0;
    for (int v = 1; v < vocab; ++v) {
      if (lprobs[v] > lprobs[best]) best = v;
    }
    result.tokens.push_back(best);
    result.positional_scores.push_back(static_cast<float>(lprobs[best]));
    total += lprobs[best];
    if (best == options.eos) break;
    input = best;
  }
  const double len = static_cast<double>(result.tokens.size());
  result.score = options.normalize_scores ? total / std::pow(len, options.len_penalty) : total;
  return result;
}

}  // namespace mtla
