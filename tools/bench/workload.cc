#include "tools/bench/workload.h"

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace mtla::bench {
namespace {

// splitmix64: decorrelates the per-request random streams.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

int Lower(int len, double ratio) {
  return std::max(1, static_cast<int>(std::floor(len * (1.0 - ratio))));
}
int Upper(int len, double ratio) { return static_cast<int>(std::ceil(len * (1.0 + ratio))); }

absl::Status CheckLengths(int prompt_len, int output_len, const ModelLimits& limits,
                          const std::string& where) {
  if (prompt_len < 1) return absl::InvalidArgumentError(where + ": prompt length must be >= 1");
  if (output_len < 1) return absl::InvalidArgumentError(where + ": output length must be >= 1");
  if (limits.max_new_tokens_limit > 0 && output_len > limits.max_new_tokens_limit) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": output length ", output_len,
                                                   " exceeds the server's max_new_tokens limit ",
                                                   limits.max_new_tokens_limit));
  }
  if (limits.max_context_tokens > 0 && prompt_len + output_len > limits.max_context_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": prompt + output = ", prompt_len + output_len,
        " tokens exceeds the model's context of ", limits.max_context_tokens));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TextWorkload> TextWorkload::Random(const RandomWorkloadOptions& options,
                                                  const ModelLimits& limits, uint64_t seed) {
  if (limits.vocab_size <= 0) return absl::FailedPreconditionError("vocab_size unknown");
  if (options.range_ratio < 0 || options.range_ratio >= 1) {
    return absl::InvalidArgumentError("--range_ratio must be in [0, 1)");
  }
  if (absl::Status s = CheckLengths(Upper(options.prompt_len, options.range_ratio),
                                    Upper(options.output_len, options.range_ratio), limits,
                                    "--prompt_len/--output_len/--range_ratio");
      !s.ok()) {
    return s;
  }
  if (options.prompt_len < 1 || options.output_len < 1) {
    return absl::InvalidArgumentError("--prompt_len and --output_len must be >= 1");
  }
  TextWorkload w;
  w.random_ = true;
  w.options_ = options;
  w.limits_ = limits;
  w.seed_ = seed;
  w.source_ = absl::StrCat("random ids in [0, ", limits.vocab_size, "), prompt ",
                           options.prompt_len, ", output ", options.output_len,
                           options.range_ratio > 0
                               ? absl::StrCat(" (+/- ", options.range_ratio * 100, "%)")
                               : std::string());
  return w;
}

absl::StatusOr<TextWorkload> TextWorkload::FromJsonl(const std::string& path,
                                                     int default_output_len,
                                                     const ModelLimits& limits, uint64_t seed) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  absl::StatusOr<TextWorkload> w = FromJsonlText(buffer.str(), default_output_len, limits, seed);
  if (!w.ok()) {
    return absl::Status(w.status().code(), absl::StrCat(path, ":", w.status().message()));
  }
  w->source_ = absl::StrCat(path, " (", w->entries_.size(), " requests)");
  return w;
}

absl::StatusOr<TextWorkload> TextWorkload::FromJsonlText(const std::string& text,
                                                         int default_output_len,
                                                         const ModelLimits& limits,
                                                         uint64_t seed) {
  TextWorkload w;
  w.limits_ = limits;
  w.seed_ = seed;
  std::istringstream lines(text);
  std::string line;
  int line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = absl::StrCat("line ", line_no);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(where + ": not a JSON object");
    }
    Entry e;
    e.max_new_tokens = default_output_len;
    int given = 0;
    try {
      if (j.contains("prompt_token_ids")) {
        ++given;
        for (const auto& id : j.at("prompt_token_ids")) {
          const int v = id.get<int>();
          if (limits.vocab_size > 0 && (v < 0 || v >= limits.vocab_size)) {
            return absl::InvalidArgumentError(absl::StrCat(
                where, ": token id ", v, " outside the vocabulary [0, ", limits.vocab_size, ")"));
          }
          e.ids.push_back(v);
        }
      }
      if (j.contains("prompt")) {
        ++given;
        e.prompt = j.at("prompt").get<std::string>();
        if (e.prompt.empty()) return absl::InvalidArgumentError(where + ": empty \"prompt\"");
      }
      if (j.contains("prompt_len")) {
        ++given;
        e.random_prompt_len = j.at("prompt_len").get<int>();
      }
      if (j.contains("max_new_tokens")) e.max_new_tokens = j.at("max_new_tokens").get<int>();
      if (j.contains("output_len")) e.max_new_tokens = j.at("output_len").get<int>();
    } catch (const nlohmann::json::exception& ex) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", ex.what()));
    }
    if (given != 1) {
      return absl::InvalidArgumentError(
          where + ": give exactly one of \"prompt_token_ids\", \"prompt\", \"prompt_len\"");
    }
    if (e.random_prompt_len > 0 && limits.vocab_size <= 0) {
      return absl::FailedPreconditionError(where + ": \"prompt_len\" needs the model's vocab size");
    }
    // Text prompts have an unknown token count here; the server checks them.
    const int prompt_len = e.prompt.empty() ? static_cast<int>(e.ids.size()) + e.random_prompt_len
                                            : 1;
    if (absl::Status s = CheckLengths(prompt_len, e.max_new_tokens, limits, where); !s.ok()) {
      return s;
    }
    w.entries_.push_back(std::move(e));
  }
  if (w.entries_.empty()) return absl::InvalidArgumentError("no requests in the file");
  w.source_ = absl::StrCat("jsonl (", w.entries_.size(), " requests)");
  return w;
}

std::vector<int32_t> TextWorkload::RandomIds(int n, uint64_t stream) const {
  std::mt19937_64 rng(Mix(seed_ ^ Mix(stream)));
  std::uniform_int_distribution<int32_t> token(0, limits_.vocab_size - 1);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = token(rng);
  return ids;
}

TextRequestSpec TextWorkload::Get(int64_t index) const {
  TextRequestSpec spec;
  if (random_) {
    std::mt19937_64 rng(Mix(seed_ + 0x5151 + Mix(static_cast<uint64_t>(index))));
    int prompt_len = options_.prompt_len, output_len = options_.output_len;
    if (options_.range_ratio > 0) {
      prompt_len = std::uniform_int_distribution<int>(
          Lower(options_.prompt_len, options_.range_ratio),
          Upper(options_.prompt_len, options_.range_ratio))(rng);
      output_len = std::uniform_int_distribution<int>(
          Lower(options_.output_len, options_.range_ratio),
          Upper(options_.output_len, options_.range_ratio))(rng);
    }
    spec.prompt_token_ids = RandomIds(prompt_len, static_cast<uint64_t>(index));
    spec.max_new_tokens = output_len;
    return spec;
  }
  const Entry& e = entries_[static_cast<size_t>(index) % entries_.size()];
  spec.prompt = e.prompt;
  spec.prompt_token_ids = e.ids;
  if (e.random_prompt_len > 0) {
    spec.prompt_token_ids = RandomIds(e.random_prompt_len, static_cast<uint64_t>(index));
  }
  spec.max_new_tokens = e.max_new_tokens;
  return spec;
}

std::string TextWorkload::Describe() const { return source_; }

}  // namespace mtla::bench
