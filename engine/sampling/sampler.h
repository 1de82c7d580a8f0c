// Token sampling: greedy, temperature, top-k, top-p, with a per-request random
// stream so that a request with a given seed yields the same tokens whatever
// else shares its batch.
#ifndef MTLA_ENGINE_SAMPLING_SAMPLER_H_
#define MTLA_ENGINE_SAMPLING_SAMPLER_H_

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace mtla {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy (argmax)
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // (0, 1]
  std::optional<uint64_t> seed;  // unset: drawn from a nondeterministic source
  int max_new_tokens = 16;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;

  // InvalidArgument naming the field ("temperature", "top_k", "top_p",
  // "max_new_tokens", "stop_token_ids") when out of range for a model with
  // `vocab_size` tokens that can generate at most `max_new_tokens_limit`.
  absl::Status Validate(int vocab_size, int max_new_tokens_limit) const;
};

// Per-request sampling state. Thread-compatible.
class RequestSampler {
 public:
  explicit RequestSampler(const SamplingParams& params);
  // Chooses the next token from `logits` [vocab]. Greedy picks the first
  // maximum. Otherwise: logits / temperature, keep the top_k largest (if set),
  // keep the smallest prefix of the sorted distribution whose mass reaches
  // top_p (always at least one token), renormalize, draw one token.
  int32_t Sample(const float* logits, int vocab);
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> scratch_;
};

enum class FinishReason { kNone, kLength, kStop, kEos };
const char* FinishReasonName(FinishReason reason);  // "length", "stop", "eos", ""

// Whether generation ends after `token` was produced as the `generated`-th new token.
FinishReason CheckFinish(const SamplingParams& params, int32_t token, int generated, int eos_token_id);

}  // namespace mtla

#endif  // MTLA_ENGINE_SAMPLING_SAMPLER_H_
