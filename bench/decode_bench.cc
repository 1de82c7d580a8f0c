// Decode-step throughput of the CPU backend at the paper's speech-translation
// decoder dims (E 512, 9 layers, 8 heads, r 256, dR 32, dn = dv = 64, s 2,
// FFN 2048, vocab 8000; random weights), and a table of KV-cache bytes per
// token for MTLA (s = 1..4) next to MLA and MHA of the same dims.
//
// Each benchmark fills `context` tokens of cache per sequence with random
// latents (decode reads the cache; its values do not change the work), then
// times steps that decode one token for each of `batch` sequences.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <vector>

#include "engine/model/cpu_model_backend.h"
#include "engine/model/model_runner.h"
#include "engine/testing/random_checkpoint.h"
#include "engine/weights/safetensors.h"

namespace mtla {
namespace {

constexpr int kMaxContext = 8192;
constexpr int kBlockSlots = 16;

// The paper-dims model, written once to a temporary checkpoint and loaded.
const SafetensorsFile& PaperCheckpoint(const DecoderSpec& spec) {
  static std::unique_ptr<SafetensorsFile> file = [&] {
    const std::string path =
        (std::filesystem::temp_directory_path() / "mtla_bench_paper_decoder.safetensors").string();
    absl::Status written = WriteSafetensors(path, RandomDecoderWeights(spec, /*seed=*/7));
    if (!written.ok()) std::fprintf(stderr, "%s\n", written.ToString().c_str());
    auto opened = SafetensorsFile::Open(path);
    if (!opened.ok()) std::fprintf(stderr, "%s\n", opened.status().ToString().c_str());
    return std::move(opened).value();
  }();
  return *file;
}

void BM_DecodeStep(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const int context = static_cast<int>(state.range(1));
  const DecoderSpec spec =
      FairseqMtlaDecoderSpec(PaperDecoderAttention(2), 2048, 9, 8000, kMaxContext);
  const KvCacheGeometry probe{spec.num_layers, 256, 32, 2, kBlockSlots};
  // Room for the context plus every timed step.
  const int blocks = static_cast<int>(batch * probe.BlocksForTokens(context + 2048));
  auto backend = CpuModelBackend::Create(spec, PaperCheckpoint(spec), blocks, kBlockSlots);
  if (!backend.ok()) {
    state.SkipWithError(backend.status().ToString().c_str());
    return;
  }
  CpuModelBackend* cpu = backend->get();
  // Random cache contents for the pre-filled context.
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (int l = 0; l < spec.num_layers; ++l) {
    float* rows = cpu->CacheView(l).rows;
    const size_t count = static_cast<size_t>(blocks) * kBlockSlots * probe.slot_width();
    for (size_t i = 0; i < count; ++i) rows[i] = normal(rng);
  }
  ModelRunner runner(std::move(backend).value());
  std::vector<BlockCopy> copies;
  for (int b = 0; b < batch; ++b) {
    (void)runner.cache().AddSequence(b);
    (void)runner.cache().Append(b, context, &copies);
  }
  std::vector<int32_t> tokens(batch, 5);
  std::vector<SequenceWork> work(batch);
  for (int b = 0; b < batch; ++b) work[b] = {b, absl::MakeConstSpan(&tokens[b], 1), true, false};
  std::vector<float> logits;
  int64_t steps = 0;
  for (auto _ : state) {
    if (context + steps + 1 >= kMaxContext - 1 ||
        runner.cache().num_tokens(0) >= context + 2047) {
      state.SkipWithError("benchmark ran past its cache reservation");
      break;
    }
    absl::Status status = runner.Step(work, &logits);
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    for (int b = 0; b < batch; ++b) tokens[b] = ArgMax(logits.data() + b * 8000, 8000);
    ++steps;
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(batch) * steps, benchmark::Counter::kIsRate);
}

BENCHMARK(BM_DecodeStep)
    ->ArgNames({"batch", "context"})
    ->ArgsProduct({{1, 8, 32}, {256, 2048}})
    ->Args({1, 100})
    ->Args({32, 100})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true)
    ->UseRealTime();

// KV-cache bytes per token across all layers, fp16/bf16 storage (2 bytes).
void PrintCacheTable() {
  const int layers = 9, heads = 8, r = 256, dr = 32, dv = 64, bytes = 2;
  std::printf("KV cache bytes per token (paper dims, %d layers, 2-byte elements)\n", layers);
  std::printf("%-22s %14s %14s\n", "attention", "bytes/token", "vs MHA");
  // Standard MHA of the same model width: K and V of width E = heads * 64.
  const double mha = static_cast<double>(layers) * 2 * heads * dv * bytes;
  auto row = [&](const char* name, double per_token) {
    std::printf("%-22s %14.1f %13.1fx\n", name, per_token, mha / per_token);
  };
  row("MHA (K, V width 512)", mha);
  row("MLA = MTLA s=1", static_cast<double>(layers) * (r + dr) * bytes);
  for (int s = 2; s <= 4; ++s) {
    KvCacheGeometry g{layers, r, dr, s, kBlockSlots};
    char name[32];
    std::snprintf(name, sizeof(name), "MTLA s=%d", s);
    row(name, layers * g.BytesPerTokenPerLayer(bytes));
  }
  std::printf("\n");
}

}  // namespace
}  // namespace mtla

int main(int argc, char** argv) {
  mtla::PrintCacheTable();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
