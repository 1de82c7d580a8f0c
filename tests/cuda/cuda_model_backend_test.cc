// The CUDA backend against the CPU backend on random checkpoints of both
// model families: a prefix (keys without queries, speech family), a prompt
// prefill, then greedy decode steps for several sequences at once, comparing
// the logits of every step.
//
// Tolerances (||logits_cuda - logits_cpu|| / ||logits_cpu|| per step): fp32
// storage 1e-4 (summation order through 2 layers); bf16 5e-2 and fp16 1e-2
// (weights and cache rounded to the storage dtype). In fp32 the greedy
// tokens must be equal.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/backend_factory.h"
#include "engine/model/cpu_model_backend.h"
#include "engine/model/cuda_model_backend.h"
#include "engine/model/decoder_spec.h"
#include "engine/model/model_runner.h"
#include "engine/testing/random_checkpoint.h"
#include "engine/testing/unique_temp_path.h"
#include "engine/weights/safetensors.h"
#include "tests/cuda/cuda_test_util.h"

namespace mtla {
namespace {

MtlaAttentionConfig SmallAttention(int down_rate, RopeStyle style) {
  MtlaAttentionConfig a;
  a.embed_dim = 128;
  a.num_heads = 4;
  a.kv_lora_rank = 64;
  a.qk_rope_head_dim = 8;
  a.qk_nope_head_dim = 16;
  a.v_head_dim = 16;
  a.down_rate = down_rate;
  a.hypernet_rank = 16;
  a.rope_style = style;
  return a;
}

struct Family {
  const char* name;
  DecoderSpec spec;
};

std::vector<Family> Families(int down_rate) {
  DecoderSpec st = FairseqMtlaDecoderSpec(SmallAttention(down_rate, RopeStyle::kInterleaved), 256,
                                          2, 300, 1024);
  DecoderSpec llama = st;
  llama.attention.rope_style = RopeStyle::kHalfSplit;
  llama.norm = NormKind::kRmsNorm;
  llama.norm_eps = 1e-6f;
  llama.mlp = MlpKind::kSwiGlu;
  llama.residual = ResidualStyle::kPreNorm;
  llama.embed_scale = 1.0f;
  llama.names.embed_tokens = "model.embed_tokens";
  llama.names.final_norm = "model.norm";
  llama.names.lm_head = "";
  llama.names.attention = "model.layers.{}.self_attn";
  llama.names.attention_norm = "model.layers.{}.input_layernorm";
  llama.names.mlp_norm = "model.layers.{}.post_attention_layernorm";
  llama.names.mlp_in = "model.layers.{}.mlp.gate_proj";
  llama.names.mlp_up = "model.layers.{}.mlp.up_proj";
  llama.names.mlp_out = "model.layers.{}.mlp.down_proj";
  // The q-LoRA query path (wq_a -> q_norm -> wq_b), as in llama_mtla_s3_qlora.
  DecoderSpec llama_qlora = llama;
  llama_qlora.attention.q_lora_rank = 48;
  return {{"st", st}, {"llama", llama}, {"llama_qlora", llama_qlora}};
}

// A random checkpoint of `family` in a per-process temp file, opened.
absl::StatusOr<std::unique_ptr<SafetensorsFile>> RandomCheckpoint(const Family& family,
                                                                  uint64_t seed) {
  const std::string path = UniqueTempPath(
      absl::StrCat("mtla_cuda_backend_", family.name, "_", seed), ".safetensors");
  if (absl::Status written = WriteSafetensors(path, RandomDecoderWeights(family.spec, seed, 0.1f));
      !written.ok()) {
    return written;
  }
  return SafetensorsFile::Open(path);
}

CacheOptions SmallCache() {
  CacheOptions cache;
  cache.num_blocks = 64;
  cache.block_slots = 4;
  return cache;
}

double Tolerance(cuda::DType dtype) {
  switch (dtype) {
    case cuda::DType::kF32: return 1e-4;
    case cuda::DType::kF16: return 1e-2;
    case cuda::DType::kBF16: return 5e-2;
  }
  return 0.0;
}

// Runs the same steps on both runners and compares every step's logits.
void CompareRunners(ModelRunner& cpu, ModelRunner& gpu, const DecoderSpec& spec,
                    cuda::DType dtype) {
  const int sequences = 3;
  std::mt19937 rng(11);
  std::vector<std::vector<int32_t>> prompts = {{5, 7, 9, 11, 13}, {2}, {3, 4, 5, 6, 7, 8, 9, 10, 11}};
  const std::vector<int64_t> prefix_rows = {0, 37, 6};
  for (int s = 0; s < sequences; ++s) {
    ASSERT_TRUE(cpu.cache().AddSequence(s).ok());
    ASSERT_TRUE(gpu.cache().AddSequence(s).ok());
    if (prefix_rows[s] > 0) {
      const std::vector<float> rows =
          cuda::testing::RandomVector(prefix_rows[s] * spec.hidden_size, rng);
      MTLA_ASSERT_OK(cpu.FillPrefix(s, rows.data(), prefix_rows[s]));
      MTLA_ASSERT_OK(gpu.FillPrefix(s, rows.data(), prefix_rows[s]));
    }
  }
  std::vector<std::vector<int32_t>> next = prompts;
  for (int step = 0; step < 12; ++step) {
    SCOPED_TRACE(::testing::Message() << "step " << step);
    std::vector<SequenceWork> work;
    for (int s = 0; s < sequences; ++s) work.push_back({s, next[s], true, false});
    std::vector<float> cpu_logits, gpu_logits;
    MTLA_ASSERT_OK(cpu.Step(work, &cpu_logits));
    MTLA_ASSERT_OK(gpu.Step(work, &gpu_logits));
    ASSERT_EQ(cpu_logits.size(), gpu_logits.size());
    EXPECT_LE(cuda::testing::RelativeError(gpu_logits, cpu_logits), Tolerance(dtype));
    for (int s = 0; s < sequences; ++s) {
      const int32_t token = ArgMax(&cpu_logits[s * spec.vocab_size], spec.vocab_size);
      if (dtype == cuda::DType::kF32) {
        EXPECT_EQ(ArgMax(&gpu_logits[s * spec.vocab_size], spec.vocab_size), token);
      }
      next[s] = {token};
    }
  }
}

class CudaModelBackendTest : public ::testing::TestWithParam<std::tuple<int, cuda::DType>> {};

TEST_P(CudaModelBackendTest, MatchesCpuBackend) {
  MTLA_SKIP_WITHOUT_CUDA();
  const auto [down_rate, dtype] = GetParam();
  for (Family& family : Families(down_rate)) {
    SCOPED_TRACE(family.name);
    auto file = RandomCheckpoint(family, /*seed=*/3);
    ASSERT_TRUE(file.ok()) << file.status();
    const CacheOptions cache = SmallCache();
    auto cpu = CpuModelBackend::Create(family.spec, **file, cache);
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    CudaBackendOptions options;
    options.dtype = dtype;
    options.max_step_tokens = 64;
    auto gpu = CudaModelBackend::Create(family.spec, **file, cache, options);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    ModelRunner cpu_runner(std::move(cpu).value());
    ModelRunner gpu_runner(std::move(gpu).value());
    CompareRunners(cpu_runner, gpu_runner, family.spec, dtype);
  }
}

INSTANTIATE_TEST_SUITE_P(
    DownRates, CudaModelBackendTest,
    ::testing::Combine(::testing::Values(1, 2, 3, 4),
                       ::testing::Values(cuda::DType::kF32, cuda::DType::kBF16,
                                         cuda::DType::kF16)),
    [](const auto& info) {
      return "s" + std::to_string(std::get<0>(info.param)) + "_" +
             cuda::DTypeName(std::get<1>(info.param));
    });

// The server's path: the CUDA backend from the dlopen'ed plugin, through the
// factory, gives the CPU backend's logits (fp32: tokens equal).
TEST(BackendFactory, PluginBackendMatchesCpu) {
  MTLA_SKIP_WITHOUT_CUDA();
  for (Family& family : Families(2)) {
    SCOPED_TRACE(family.name);
    auto file = RandomCheckpoint(family, /*seed=*/5);
    ASSERT_TRUE(file.ok()) << file.status();
    const CacheOptions cache = SmallCache();
    BackendChoice choice;
    choice.device = DeviceChoice::kCuda;
    choice.dtype = "fp32";
    choice.max_step_tokens = 64;
    auto gpu = CreateModelBackend(family.spec, **file, cache, choice, "test");
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    EXPECT_EQ((*gpu)->name().substr(0, 4), "cuda");
    auto cpu = CpuModelBackend::Create(family.spec, **file, cache);
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    ModelRunner cpu_runner(std::move(cpu).value());
    ModelRunner gpu_runner(std::move(gpu).value());
    CompareRunners(cpu_runner, gpu_runner, family.spec, cuda::DType::kF32);
  }
}

TEST(BackendFactory, DeviceChoiceParsing) {
  EXPECT_TRUE(ParseDeviceChoice("auto").ok());
  EXPECT_TRUE(ParseDeviceChoice("cpu").ok());
  EXPECT_TRUE(ParseDeviceChoice("cuda").ok());
  EXPECT_EQ(ParseDeviceChoice("gpu").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateDtype("int8").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CudaBackendInstalled()) << CudaBackendAvailable();
}

TEST(BackendFactory, ExplicitCudaWithoutDeviceIsAClearError) {
  if (CudaBackendAvailable().ok()) GTEST_SKIP() << "a CUDA device is present";
  const DecoderSpec spec = Families(2)[0].spec;
  const std::string path = UniqueTempPath("mtla_factory_probe", ".safetensors");
  MTLA_ASSERT_OK(WriteSafetensors(path, RandomDecoderWeights(spec, 3)));
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  CacheOptions cache;
  cache.num_blocks = 8;
  BackendChoice choice;
  choice.device = DeviceChoice::kCuda;
  auto backend = CreateModelBackend(spec, **file, cache, choice, "test");
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(backend.status().message().find("--device=cuda"), std::string::npos);
  // auto falls back to the CPU backend.
  choice.device = DeviceChoice::kAuto;
  auto fallback = CreateModelBackend(spec, **file, cache, choice, "test");
  ASSERT_TRUE(fallback.ok()) << fallback.status();
  EXPECT_EQ((*fallback)->name(), "cpu");
}

}  // namespace
}  // namespace mtla
