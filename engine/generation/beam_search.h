// Beam search with fairseq SequenceGenerator semantics (BeamSearch search,
// one sentence): 2 x beam candidates per step from cumulative log-probs, EOS
// candidates among the top `beam` finalized with score / len^len_penalty,
// the first `beam` non-EOS candidates continue, pad never chosen, EOS masked
// before min_len and forced at max_len = min(max_len_a * src_len + max_len_b,
// max_positions - 1); results sorted by score, best first.
//
// Beams are cache sequences. The search decides only which sequences to keep,
// fork or free and which token each appends: a chosen parent's first child
// keeps its sequence, further children fork it (sharing every block; the
// newest, still-merging block is copied when next written), and parents left
// without children are freed. It never allocates blocks.
//
// The search is a state machine so that an engine can batch its inputs with
// other work: feed inputs(), pass the logits rows to Advance(), until done().
// Its state is the beams' tokens and scores, not the cache: an engine that
// dropped the beams' sequences (preemption) recomputes them from
// beam_tokens() and hands them back with Rebind().
//
// Thread-safety: not thread-safe.
#ifndef MTLA_ENGINE_GENERATION_BEAM_SEARCH_H_
#define MTLA_ENGINE_GENERATION_BEAM_SEARCH_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/kv_cache/kv_cache_manager.h"

namespace mtla {

class ModelRunner;

struct BeamSearchOptions {
  int beam_size = 4;          // 1..16
  double max_len_a = 0.0;     // max_len = max_len_a * src_len + max_len_b
  int max_len_b = 200;
  int max_positions = 1024;   // the decoder's limit; max_len <= max_positions - 1
  int min_len = 1;
  double len_penalty = 1.0;
  bool normalize_scores = true;
  double unk_penalty = 0.0;
  int32_t eos = 2;
  int32_t pad = 1;
  int32_t unk = 3;
};

struct BeamHypothesis {
  std::vector<int32_t> tokens;  // generated tokens, ending with EOS
  double score = 0.0;           // normalized as configured
  std::vector<float> positional_scores;  // log-prob of each token
  // Ended at max_len with EOS forced: EOS was not the beam's own best token.
  bool eos_forced = false;
};

class BeamSearch {
 public:
  // `root` holds the decoder's context (e.g. the speech prefix) and nothing
  // after it; `first_token` is the first decoder input (fairseq: EOS).
  // `new_id` returns unused sequence ids for the beams.
  BeamSearch(const BeamSearchOptions& options, int vocab_size, int64_t src_len, SequenceId root,
             int32_t first_token, std::function<SequenceId()> new_id);

  // The (sequence, token) pairs to run this step, one per live beam. A live
  // beam's sequence holds the context and the beam's tokens but the last one,
  // which is its input.
  const std::vector<std::pair<SequenceId, int32_t>>& inputs() const { return inputs_; }
  // `logits` holds one row of `vocab_size` per input, in order. Chooses the
  // next beams, keeping, forking and freeing sequences in `cache` (never
  // allocating a block); once done(), every live sequence has been freed.
  absl::Status Advance(const float* logits, KvCacheManager* cache);
  bool done() const { return done_; }
  // Tokens chosen so far by live beam `i` (i < inputs().size()). With one beam
  // they are final as soon as chosen, so they can be streamed.
  const std::vector<int32_t>& beam_tokens(size_t i) const { return beams_[i].tokens; }
  // Live beams (== inputs().size()), and their sequences in beam order.
  size_t num_live() const { return beams_.size(); }
  std::vector<SequenceId> sequences() const;
  // Beam i now lives in sequences[i] (a recomputed copy holding the same
  // tokens). InvalidArgument unless there is one sequence per live beam.
  absl::Status Rebind(const std::vector<SequenceId>& sequences);
  // Finished hypotheses, best first (valid once done()).
  const std::vector<BeamHypothesis>& results() const { return finalized_; }
  // Frees every live beam sequence (after done(), or to abandon the search).
  void Release(KvCacheManager* cache);
  int max_len() const { return max_len_; }

 private:
  struct Beam {
    SequenceId sequence;
    std::vector<int32_t> tokens;   // generated so far
    std::vector<double> cumulative;  // cumulative score after each token
  };
  BeamSearchOptions options_;
  int vocab_;
  int max_len_;
  int step_ = 0;
  bool done_ = false;
  std::function<SequenceId()> new_id_;
  std::vector<Beam> beams_;
  std::vector<bool> ignore_;  // fairseq's cands_to_ignore, by candidate position
  std::vector<std::pair<SequenceId, int32_t>> inputs_;
  std::vector<BeamHypothesis> finalized_;
  std::vector<double> lprobs_;
};

// Runs a whole search on `runner` (one beam-search request, no other work).
// `root` is consumed: every sequence the search created or received is freed.
absl::StatusOr<std::vector<BeamHypothesis>> RunBeamSearch(ModelRunner* runner, SequenceId root,
                                                          int32_t first_token, int64_t src_len,
                                                          const BeamSearchOptions& options);

}  // namespace mtla

#endif  // MTLA_ENGINE_GENERATION_BEAM_SEARCH_H_
