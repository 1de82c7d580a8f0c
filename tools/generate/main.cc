// mtla-generate: greedy generation from a LlamaMTLA checkpoint directory on the
// CPU backend, printing token ids as they are produced and the decode speed.
//
//   mtla-generate --model=DIR [--prompt="1 17 42"] [--max_new_tokens=N]
//   mtla-generate --write_random_model=DIR [--random_model_config=FILE]
//                 (writes a random-weight checkpoint, of FILE's dims if given)
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/model/llama_mtla.h"
#include "engine/model/model_runner.h"
#include "engine/testing/random_checkpoint.h"
#include "tools/common/command_line.h"

ABSL_FLAG(std::string, model, "", "LlamaMTLA checkpoint directory (config.json + model.safetensors)");
ABSL_FLAG(std::string, prompt, "1", "Prompt token ids, space separated");
ABSL_FLAG(int, max_new_tokens, 16, "Tokens to generate at most");
ABSL_FLAG(std::string, write_random_model, "",
          "Write a random-weight checkpoint to this directory and exit");
ABSL_FLAG(std::string, random_model_config, "",
          "--write_random_model: a LlamaMTLA config.json to use (default: a built-in small one)");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "mtla-generate: %s\n", message.c_str());
  return 1;
}

// A small LlamaMTLA checkpoint with random weights, for trying the tool where no
// trained model is at hand.
int WriteRandomModel(const std::string& dir, const std::string& config_path) {
  std::string config = R"({
  "model_type": "llama-mtla", "hidden_size": 128, "num_attention_heads": 4,
  "num_hidden_layers": 4, "intermediate_size": 256, "vocab_size": 256,
  "q_lora_rank": 0, "kv_lora_rank": 64, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16,
  "v_head_dim": 32, "down_rate": 2, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
  "max_position_embeddings": 1024, "tie_word_embeddings": false,
  "bos_token_id": 1, "eos_token_id": 2
})";
  if (!config_path.empty()) {
    std::ifstream in(config_path);
    if (!in) return Fail("--random_model_config=" + config_path + ": cannot open");
    config.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::ofstream(dir + "/config.json") << config;
  auto parsed = mtla::ParseLlamaMtlaConfig(config);
  if (!parsed.ok()) return Fail(parsed.status().ToString());
  const mtla::DecoderSpec spec = mtla::LlamaMtlaDecoderSpec(*parsed);
  absl::Status status = mtla::WriteSafetensors(dir + "/model.safetensors",
                                               mtla::RandomDecoderWeights(spec, /*seed=*/1, 0.2f));
  if (!status.ok()) return Fail(status.ToString());
  std::printf("wrote a random-weight LlamaMTLA checkpoint to %s\n", dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = mtla::ParseCommandLineFlags(
      argc, argv, "mtla-generate",
      "greedy generation from a LlamaMTLA checkpoint on the CPU backend.\n\n"
      "  mtla-generate --model=DIR [--prompt=\"1 17 42\"] [--max_new_tokens=N]\n"
      "  mtla-generate --write_random_model=DIR [--random_model_config=FILE]");
  if (rest.size() > 1) return Fail(std::string("unexpected argument ") + rest[1]);
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  const std::string prompt_text = absl::GetFlag(FLAGS_prompt);
  const std::string random_dir = absl::GetFlag(FLAGS_write_random_model);
  const int max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  if (max_new_tokens < 1) return Fail("--max_new_tokens must be a positive integer");
  if (!random_dir.empty()) {
    return WriteRandomModel(random_dir, absl::GetFlag(FLAGS_random_model_config));
  }
  if (model_dir.empty()) return Fail("--model=DIR is required");

  std::vector<int32_t> prompt;
  for (absl::string_view piece : absl::StrSplit(prompt_text, ' ', absl::SkipEmpty())) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(piece, &id)) return Fail("--prompt holds a non-integer token id");
    prompt.push_back(id);
  }
  if (prompt.empty()) return Fail("--prompt is empty");

  auto model = mtla::LoadLlamaMtlaCpu(model_dir, mtla::CacheOptions{});
  if (!model.ok()) return Fail(model.status().ToString());
  const int vocab = model->config.vocab_size;
  const int eos = model->config.eos_token_id;
  mtla::ModelRunner runner(std::move(model->backend));
  if (absl::Status s = runner.cache().AddSequence(0); !s.ok()) return Fail(s.ToString());

  std::vector<float> logits;
  std::vector<int32_t> next(1);
  std::printf("prompt:");
  for (int32_t id : prompt) std::printf(" %d", id);
  std::printf("\ngenerated:");
  std::fflush(stdout);
  auto start = std::chrono::steady_clock::now();
  absl::Status status = runner.Step({{0, absl::MakeConstSpan(prompt), true, false}}, &logits);
  int produced = 0;
  while (status.ok() && produced < max_new_tokens) {
    next[0] = mtla::ArgMax(logits.data(), vocab);
    ++produced;
    std::printf(" %d", next[0]);
    std::fflush(stdout);
    if (next[0] == eos) break;
    if (produced < max_new_tokens) {
      status = runner.Step({{0, absl::MakeConstSpan(next), true, false}}, &logits);
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\n");
  if (!status.ok()) return Fail(status.ToString());
  std::printf("%d tokens in %.3f s (%.1f tokens/s, CPU backend); cache blocks in use: %d of %d\n",
              produced, seconds, produced / seconds, runner.cache().num_used_blocks(),
              runner.cache().num_total_blocks());
  return 0;
}
