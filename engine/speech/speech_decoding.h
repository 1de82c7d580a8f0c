// Greedy decoding with the rules of fairseq's SequenceGenerator at beam 1
// (the paper's decoder; beam search proper lives in engine/generation):
//   - the first decoder input is EOS; positions continue after the prefix;
//   - log-probs = log_softmax(logits); pad is never chosen; unk_penalty is
//     subtracted from unk; EOS is masked while step < min_len;
//   - max_len = min(int(max_len_a * src_len + max_len_b), max_positions - 1);
//     at step max_len only EOS is allowed, so the tokens always end with EOS;
//   - score = sum of the chosen tokens' log-probs (from the unmasked
//     log_softmax) / len ^ len_penalty when normalize_scores, len counting EOS.
#ifndef MTLA_ENGINE_SPEECH_SPEECH_DECODING_H_
#define MTLA_ENGINE_SPEECH_SPEECH_DECODING_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kv_cache/kv_cache_manager.h"
#include "engine/model/model_runner.h"

namespace mtla {

struct GreedyDecodeOptions {
  double max_len_a = 0.0;  // max_len = max_len_a * src_len + max_len_b
  int max_len_b = 200;
  int max_positions = 1024;  // decoder max_target_positions
  int min_len = 1;
  double len_penalty = 1.0;
  bool normalize_scores = true;
  double unk_penalty = 0.0;
  int32_t eos = 2;
  int32_t pad = 1;
  int32_t unk = 3;
  bool keep_step_logits = false;  // return the raw logits of every step
};

struct GreedyDecodeResult {
  std::vector<int32_t> tokens;            // ends with EOS
  double score = 0.0;                     // normalized per the options
  std::vector<float> positional_scores;   // log-prob of each token
  std::vector<float> step_logits;         // [tokens.size(), vocab] raw logits, when kept
};

// fairseq's max_len for a source of `src_len` frames (feature frames for speech).
int GreedyMaxLen(const GreedyDecodeOptions& options, int64_t src_len);

// Decodes sequence `id` of `runner`, which must hold the decoder's context
// (the speech prefix) and nothing after it. The sequence stays in the cache;
// the caller frees it. `src_len` sets max_len (see above).
absl::StatusOr<GreedyDecodeResult> GreedyDecode(ModelRunner& runner, SequenceId id,
                                                int64_t src_len,
                                                const GreedyDecodeOptions& options);

}  // namespace mtla

#endif  // MTLA_ENGINE_SPEECH_SPEECH_DECODING_H_
