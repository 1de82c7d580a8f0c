// Full decode steps of the paper's speech-translation decoder dims (E 512,
// 9 layers, 8 heads, r 256, dR 32, dn = dv = 64, FFN 2048, vocab 8000; random
// weights) on the CUDA backend: tokens/s at batch 1..256 for s = 1..4, each
// sequence holding `--context` tokens (default 1024, filled as keys without
// queries), then the largest batch a fixed cache budget (`--budget_mib`,
// default 4096) holds at that context for MTLA s = 2, 3, 4 against s = 1
// (MLA) and an MHA cache of the same dims (K and V, 8 heads x 64, per token).
//
// The budget table is arithmetic and is printed with or without a device;
// the timing table needs one (without it: the reason, exit 77 after the table).
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "engine/model/backend_factory.h"
#include "engine/model/cuda_model_backend.h"
#include "engine/model/model_runner.h"
#include "engine/testing/random_checkpoint.h"
#include "engine/weights/safetensors.h"
#include "kernels/cuda/cuda_status.h"

namespace mtla {
namespace {

constexpr int kBlockSlots = 16;
constexpr int kLayers = 9;

void BudgetTable(int context, double budget_mib, int element_bytes) {
  std::printf("## Largest batch in a %.0f MiB cache at context %d (%d-byte elements, %d layers)\n\n",
              budget_mib, context, element_bytes, kLayers);
  std::printf("| cache | bytes / token / layer | largest batch | vs MHA |\n|---|---|---|---|\n");
  const double budget = budget_mib * (1 << 20);
  const double mha = 2.0 * 8 * 64 * element_bytes;  // K and V of 8 heads x 64
  const int64_t mha_batch = static_cast<int64_t>(budget / (mha * kLayers * context));
  for (int s = 0; s <= 4; ++s) {
    if (s == 0) {
      std::printf("| MHA (8 x 64, K+V) | %.0f | %lld | 1.00x |\n", mha,
                  static_cast<long long>(mha_batch));
      continue;
    }
    const KvCacheGeometry g{kLayers, 256, 32, s, kBlockSlots};
    // Whole blocks per sequence, as the paged cache allocates them.
    const double seq_bytes = static_cast<double>(g.BlocksForTokens(context)) * g.BlockElements() *
                             element_bytes;
    const int64_t batch = static_cast<int64_t>(budget / seq_bytes);
    std::printf("| %s s=%d | %.0f | %lld | %.2fx |\n", s == 1 ? "MLA" : "MTLA", s,
                g.BytesPerTokenPerLayer(element_bytes), static_cast<long long>(batch),
                mha_batch > 0 ? static_cast<double>(batch) / mha_batch : 0.0);
  }
  std::printf("\n");
}

int Run(int context, double budget_mib, const std::string& dtype) {
  BudgetTable(context, budget_mib, dtype == "fp32" ? 4 : 2);
  if (absl::Status usable = CudaBackendAvailable(); !usable.ok()) {
    std::printf("SKIPPED timing: no CUDA device: %s\n", std::string(usable.message()).c_str());
    return 77;
  }
  std::printf("## Decode step tokens/s, paper ST decoder dims, context %d, %s, %s\n\n", context,
              dtype.c_str(), cuda::DeviceDescription(0).value_or("?").c_str());
  std::printf("| s | batch | step (ms) | tokens/s |\n|---|---|---|---|\n");
  const int batches[] = {1, 8, 32, 64, 128, 256};
  for (int s = 1; s <= 4; ++s) {
    const DecoderSpec spec =
        FairseqMtlaDecoderSpec(PaperDecoderAttention(s), 2048, kLayers, 8000, context + 64);
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("mtla_cuda_step_bench_s" + std::to_string(s) + ".safetensors"))
                                 .string();
    if (absl::Status w = WriteSafetensors(path, RandomDecoderWeights(spec, 7)); !w.ok()) {
      std::fprintf(stderr, "%s\n", w.ToString().c_str());
      return 1;
    }
    auto file = SafetensorsFile::Open(path);
    if (!file.ok()) return 1;
    for (int batch : batches) {
      const KvCacheGeometry g{kLayers, 256, 32, s, kBlockSlots};
      CacheOptions cache;
      cache.block_slots = kBlockSlots;
      cache.num_blocks = static_cast<int>(batch * g.BlocksForTokens(context + 64));
      CudaBackendOptions options;
      options.dtype = *cuda::ParseDType(dtype);
      options.max_step_tokens = std::max(batch, 1024);
      auto backend = CudaModelBackend::Create(spec, **file, cache, options);
      if (!backend.ok()) {
        std::printf("| %d | %d | %s | |\n", s, batch, backend.status().ToString().c_str());
        continue;
      }
      ModelRunner runner(std::move(backend).value());
      std::mt19937 rng(1);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      std::vector<float> prefix(static_cast<size_t>(context) * 512);
      for (float& v : prefix) v = normal(rng);
      bool ok = true;
      for (int b = 0; b < batch && ok; ++b) {
        ok = runner.cache().AddSequence(b).ok() && runner.FillPrefix(b, prefix.data(), context).ok();
      }
      std::vector<int32_t> tokens(batch, 2);
      std::vector<SequenceWork> work;
      for (int b = 0; b < batch; ++b) work.push_back({b, absl::MakeConstSpan(&tokens[b], 1), true, false});
      std::vector<float> logits;
      for (int i = 0; i < 3 && ok; ++i) ok = runner.Step(work, &logits).ok();
      const int steps = 20;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < steps && ok; ++i) ok = runner.Step(work, &logits).ok();
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
      if (!ok) {
        std::printf("| %d | %d | failed | |\n", s, batch);
        continue;
      }
      std::printf("| %d | %d | %.3f | %.0f |\n", s, batch, seconds * 1e3, batch / seconds);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace mtla

int main(int argc, char** argv) {
  int context = 1024;
  double budget = 4096;
  std::string dtype = "bf16";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--context=", 10) == 0) context = std::atoi(argv[i] + 10);
    if (std::strncmp(argv[i], "--budget_mib=", 13) == 0) budget = std::atof(argv[i] + 13);
    if (std::strncmp(argv[i], "--dtype=", 8) == 0) dtype = argv[i] + 8;
  }
  return mtla::Run(context, budget, dtype);
}
