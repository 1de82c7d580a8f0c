// What each text-generation request of a benchmark asks for.
//
// Two sources:
//   - random: prompts of --prompt_len token ids drawn uniformly from the
//     model's vocabulary [0, vocab_size), asking for --output_len new tokens;
//     with --range_ratio r both lengths are drawn uniformly from
//     [len * (1 - r), len * (1 + r)] per request.
//   - a JSONL file, one request per line (blank lines are skipped):
//       {"prompt_token_ids": [1, 17, 42], "max_new_tokens": 32}
//       {"prompt": "text, needs a tokenizer on the server", "output_len": 16}
//       {"prompt_len": 128, "output_len": 64}       (random ids of that length)
//     "max_new_tokens" and "output_len" are synonyms; without either the
//     request asks for --output_len tokens. Requests cycle through the file.
//
// Request `i` is the same for a given seed whatever the arrival order, so two
// runs with the same flags send the same requests.
#ifndef MTLA_TOOLS_BENCH_WORKLOAD_H_
#define MTLA_TOOLS_BENCH_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mtla::bench {

struct TextRequestSpec {
  std::vector<int32_t> prompt_token_ids;  // empty when `prompt` is used
  std::string prompt;
  int max_new_tokens = 0;
};

struct RandomWorkloadOptions {
  int prompt_len = 128;
  int output_len = 128;
  double range_ratio = 0;  // in [0, 1)
};

struct ModelLimits {
  int vocab_size = 0;
  int max_context_tokens = 0;    // 0: unknown
  int max_new_tokens_limit = 0;  // 0: unknown
};

class TextWorkload {
 public:
  static absl::StatusOr<TextWorkload> Random(const RandomWorkloadOptions& options,
                                             const ModelLimits& limits, uint64_t seed);
  // Parses a JSONL file (see above); `default_output_len` is used where a line
  // gives no output length. Errors name the line.
  static absl::StatusOr<TextWorkload> FromJsonl(const std::string& path, int default_output_len,
                                                const ModelLimits& limits, uint64_t seed);
  static absl::StatusOr<TextWorkload> FromJsonlText(const std::string& text,
                                                    int default_output_len,
                                                    const ModelLimits& limits, uint64_t seed);

  // The spec of request `index` (deterministic).
  TextRequestSpec Get(int64_t index) const;
  std::string Describe() const;

 private:
  struct Entry {
    std::vector<int32_t> ids;
    std::string prompt;
    int random_prompt_len = 0;  // > 0: draw this many random ids
    int max_new_tokens = 0;
  };
  TextWorkload() = default;
  std::vector<int32_t> RandomIds(int n, uint64_t stream) const;

  bool random_ = false;
  RandomWorkloadOptions options_;
  ModelLimits limits_;
  uint64_t seed_ = 0;
  std::vector<Entry> entries_;
  std::string source_;
};

}  // namespace mtla::bench

#endif  // MTLA_TOOLS_BENCH_WORKLOAD_H_
