#include "tools/conformance/model_check.h"

#include <cstdio>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/llama_mtla.h"
#include "tools/conformance/backend_option.h"
#include "engine/model/model_runner.h"
#include "engine/weights/safetensors.h"

namespace mtla::conformance {
namespace {

constexpr double kLogitTolerance = 1e-4;

std::vector<int32_t> ToIds(const std::vector<float>& values) {
  return std::vector<int32_t>(values.begin(), values.end());
}

}  // namespace

absl::Status CheckModelDir(const std::string& dir, CheckReport* report) {
  const std::string subject = std::filesystem::path(dir).filename().string();
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> expected,
                   SafetensorsFile::Open(dir + "/expected.safetensors"));
  ASSIGN_OR_RETURN(std::vector<float> prompt_f, expected->ReadFloat("prompt_ids"));
  ASSIGN_OR_RETURN(std::vector<float> generated_f, expected->ReadFloat("generated_ids"));
  const std::vector<int32_t> prompt = ToIds(prompt_f);
  const std::vector<int32_t> generated = ToIds(generated_f);
  const int64_t p = static_cast<int64_t>(prompt.size());
  const int64_t g = static_cast<int64_t>(generated.size());

  CacheOptions options;
  options.block_slots = 2;
  options.memory_bytes = 64u << 20;
  ASSIGN_OR_RETURN(LoadedModel model, LoadLlamaMtla(dir, options, ConformanceBackend(), "mtla-conformance"));
  const int vocab = model.config.vocab_size;
  ASSIGN_OR_RETURN(std::vector<float> prompt_logits,
                   expected->ReadFloat("prompt_logits", {p, vocab}));
  ASSIGN_OR_RETURN(std::vector<float> step_logits, expected->ReadFloat("step_logits", {g, vocab}));
  ModelRunner runner(std::move(model.backend));

  // Prompt scored token by token through the cache.
  {
    RETURN_IF_ERROR(runner.cache().AddSequence(1));
    std::vector<float> all, logits;
    for (int64_t i = 0; i < p; ++i) {
      SequenceWork work{1, absl::MakeConstSpan(&prompt[i], 1), true, false};
      RETURN_IF_ERROR(runner.Step({work}, &logits));
      all.insert(all.end(), logits.begin(), logits.end());
    }
    report->Compare(subject, "prompt_logits (token by token)", all, prompt_logits, LogitTolerance(kLogitTolerance));
    RETURN_IF_ERROR(runner.cache().Free(1));
  }

  // Prefill of the whole prompt, then greedy decoding through the cache.
  RETURN_IF_ERROR(runner.cache().AddSequence(0));
  std::vector<float> logits;
  SequenceWork prefill{0, absl::MakeConstSpan(prompt), true, true};
  RETURN_IF_ERROR(runner.Step({prefill}, &logits));
  report->Compare(subject, "prompt_logits (prefill)", logits, prompt_logits, LogitTolerance(kLogitTolerance));

  std::vector<float> last(logits.end() - vocab, logits.end());
  std::vector<float> steps;
  std::vector<int32_t> tokens;
  for (int64_t i = 0; i < g; ++i) {
    steps.insert(steps.end(), last.begin(), last.end());
    const int32_t token = ArgMax(last.data(), vocab);
    tokens.push_back(token);
    if (i + 1 == g) break;
    SequenceWork decode{0, absl::MakeConstSpan(&tokens.back(), 1), true, false};
    RETURN_IF_ERROR(runner.Step({decode}, &last));
  }
  report->Compare(subject, "step_logits", steps, step_logits, LogitTolerance(kLogitTolerance));
  if (ExactTokens()) {
    report->Exact(subject, "generated_ids (greedy)", tokens, generated);
  } else {
    int same = 0;
    for (size_t i = 0; i < tokens.size() && i < generated.size(); ++i) same += tokens[i] == generated[i];
    std::printf("%s generated_ids (greedy) %d/%zu equal (reported, not required below fp32)\n",
                subject.c_str(), same, generated.size());
  }
  RETURN_IF_ERROR(runner.cache().Free(0));
  if (runner.cache().num_used_blocks() != 0) {
    report->Error(subject, absl::StrCat(runner.cache().num_used_blocks(), " cache blocks leaked"));
  }
  return absl::OkStatus();
}

}  // namespace mtla::conformance
