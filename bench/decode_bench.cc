// Decode-step throughput of the CPU backend at the paper's speech-translation
// decoder dims (E 512, 9 layers, 8 heads, r 256, dR 32, dn = dv = 64, s 2,
// FFN 2048, vocab 8000; random weights), the paged attention kernel alone at
// the same attention dims, and a table of KV-cache bytes per token for MTLA
// (s = 1..4) next to MLA and MHA of the same dims.
//
// Context is FIXED per run: every timed step decodes the token at position
// `context` of each of `batch` sequences whose cache holds `context` tokens
// (random latents; their values do not change the work). Between steps, with
// the timer paused, each sequence is rewound to `context` tokens.
//
// Roofline columns: the machine's fp32 GEMM peak is measured at start-up and
// its read bandwidth again right after each repetition's timed loop
// (bench/roofline; column read_GBps), or both are given with
// --roofline_read_gbps=X --roofline_gflops=Y. Per step the benchmark counts
// the bytes that must be read (every weight matrix once, fp32, plus each
// visible cache slot once per layer) and the FLOPs (2 per multiply-add of the
// linear layers, the absorbed W_UK / W_UV products and the attention), and
// reports pct_mem_bound = (bytes / bandwidth) / time and pct_compute_bound =
// (FLOPs / GEMM peak) / time.
//
//   build/bin/mtla_decode_bench --benchmark_filter=DecodeStep
//   build/bin/mtla_decode_bench --benchmark_filter=PagedAttention
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/roofline/roofline.h"

#include "engine/model/cpu_model_backend.h"
#include "engine/model/model_runner.h"
#include "engine/testing/random_checkpoint.h"
#include "engine/weights/safetensors.h"
#include "kernels/cpu/mtla_cpu.h"

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

bench::Roofline& MachineRoofline() {
  static bench::Roofline roofline;
  return roofline;
}

// True unless the roofline was given on the command line: then every
// repetition re-measures the read bandwidth right after its timed loop. This
// VM's bandwidth drifts (33 to 65 GB/s within four idle minutes on
// 2026-12-02) while its sgemm peak holds (451-459 GFLOP/s), so a single
// start-up figure made pct_mem_bound move by half for unchanged step times.
bool& RemeasureBandwidth() {
  static bool remeasure = true;
  return remeasure;
}

double Seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// CPU seconds used by every thread of the process (spinning OpenMP workers
// included).
double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Bytes that must be read and FLOPs done by one decode step (see the file
// comment): weights once, fp32; each sequence's visible cache slots once per
// layer.
struct StepCost {
  double weight_bytes = 0.0;
  double cache_bytes = 0.0;
  double flops = 0.0;
};

StepCost DecodeStepCost(const DecoderSpec& spec, int batch, int context) {
  const MtlaAttentionConfig& c = spec.attention;
  const double e = spec.hidden_size, f = spec.intermediate_size, h = c.num_heads;
  const double qk = c.qk_head_dim(), r = c.kv_lora_rank, width = c.slot_width();
  const double q = c.q_lora_rank == 0 ? e * h * qk : e * c.q_lora_rank + c.q_lora_rank * h * qk;
  const double attention = q + e * width + r * c.hypernet_rank + h * c.qk_nope_head_dim * r +
                           h * c.v_head_dim * r + h * c.v_head_dim * e;
  const double mlp = (spec.mlp == MlpKind::kSwiGlu ? 3.0 : 2.0) * e * f;
  const double layer_weights = attention + mlp;
  const double head = static_cast<double>(spec.vocab_size) * e;
  const double weights = spec.num_layers * layer_weights + head;
  const double slots = context / c.down_rate;  // complete slots the new token sees
  StepCost cost;
  cost.weight_bytes = 4.0 * weights;
  cost.cache_bytes = 4.0 * spec.num_layers * batch * slots * width;
  cost.flops = 2.0 * batch * weights +
               spec.num_layers * batch * (slots + 1) * h * (2.0 * width + 2.0 * r);
  return cost;
}

void ReportRoofline(benchmark::State& state, double seconds_per_step, double bytes,
                    double flops) {
  bench::Roofline m = MachineRoofline();
  if (RemeasureBandwidth()) m.read_gb_per_s = bench::MeasureReadBandwidth(int64_t{256} << 20, 4);
  state.counters["read_GBps"] = m.read_gb_per_s;
  state.counters["ms_per_step"] = seconds_per_step * 1e3;
  state.counters["MB_per_step"] = bytes / 1e6;
  state.counters["GFLOP_per_step"] = flops / 1e9;
  state.counters["pct_mem_bound"] = 100.0 * bench::MemoryBoundSeconds(m, bytes) / seconds_per_step;
  state.counters["pct_compute_bound"] =
      100.0 * bench::ComputeBoundSeconds(m, flops) / seconds_per_step;
}

void BM_DecodeStep(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const int context = static_cast<int>(state.range(1));
  const DecoderSpec spec =
      FairseqMtlaDecoderSpec(PaperDecoderAttention(2), 2048, 9, 8000, kMaxContext);
  const KvCacheGeometry probe{spec.num_layers, 256, 32, 2, kBlockSlots};
  const int blocks = static_cast<int>(batch * probe.BlocksForTokens(context + 1)) + 1;
  auto backend = CpuModelBackend::Create(spec, PaperCheckpoint(spec), blocks, kBlockSlots);
  if (!backend.ok()) {
    state.SkipWithError(backend.status().ToString().c_str());
    return;
  }
  CpuModelBackend* cpu = backend->get();
  // Random cache contents for the pre-filled context (uniform in [-1, 1) from
  // a xorshift generator: the values do not change the work, and filling
  // gigabytes through std::normal_distribution took longer than the runs).
  uint64_t bits = 0x9E3779B97F4A7C15ull;
  for (int l = 0; l < spec.num_layers; ++l) {
    float* rows = cpu->CacheView(l).rows;
    const size_t count = static_cast<size_t>(blocks) * kBlockSlots * probe.slot_width();
    for (size_t i = 0; i < count; ++i) {
      bits ^= bits << 13;
      bits ^= bits >> 7;
      bits ^= bits << 17;
      rows[i] = static_cast<float>(static_cast<int64_t>(bits >> 40) - (1 << 23)) * 0x1p-23f;
    }
  }
  ModelRunner runner(std::move(backend).value());
  std::vector<BlockCopy> copies;
  auto rewind = [&] {
    for (int b = 0; b < batch; ++b) {
      (void)runner.cache().Free(b);
      (void)runner.cache().AddSequence(b);
      (void)runner.cache().Append(b, context, &copies);
    }
  };
  for (int b = 0; b < batch; ++b) (void)runner.cache().AddSequence(b);
  for (int b = 0; b < batch; ++b) (void)runner.cache().Append(b, context, &copies);
  std::vector<int32_t> tokens(batch, 5);
  std::vector<SequenceWork> work(batch);
  for (int b = 0; b < batch; ++b) work[b] = {b, absl::MakeConstSpan(&tokens[b], 1), true, false};
  std::vector<float> logits;
  int64_t steps = 0;
  double busy = 0.0, cpu_seconds = 0.0;
  for (auto _ : state) {
    const double c0 = ProcessCpuSeconds();
    const double t0 = Seconds();
    absl::Status status = runner.Step(work, &logits);
    busy += Seconds() - t0;
    cpu_seconds += ProcessCpuSeconds() - c0;
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    state.PauseTiming();
    for (int b = 0; b < batch; ++b) tokens[b] = ArgMax(logits.data() + b * 8000, 8000);
    rewind();
    state.ResumeTiming();
    ++steps;
  }
  if (steps == 0) return;
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(batch) * steps / busy);
  // Cores kept busy during steps (CPU time of all threads / wall time): the
  // thread count when idle workers spin, less when they sleep.
  state.counters["cores_busy"] = cpu_seconds / busy;
  const StepCost cost = DecodeStepCost(spec, batch, context);
  ReportRoofline(state, busy / steps, cost.weight_bytes + cost.cache_bytes, cost.flops);
}

BENCHMARK(BM_DecodeStep)
    ->ArgNames({"batch", "context"})
    ->ArgsProduct({{1, 8, 32}, {256, 2048}})
    // bench/cpu_vs_official.sh: the official run decodes 64 tokens after a
    // 100-frame prefix and EOS, i.e. at contexts 101..164; 133 is their middle.
    ->Args({1, 133})
    ->Args({32, 133})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true)
    ->UseRealTime();

// The paged attention kernel alone (MtlaAttention) at the paper's attention
// dims (8 heads, r 256, dR 32, s 2), block tables shuffled over the pool;
// impl 0 = the kernel kAuto selects (AVX-512 here), 1 = the scalar reference.
// Bytes: each visible slot once plus queries, own rows and outputs; FLOPs:
// 2 * heads * (width + r) per key.
void BM_PagedAttention(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const int context = static_cast<int>(state.range(1));
  const auto impl = state.range(2) == 0 ? cpu::MtlaAttentionImpl::kAuto
                                        : cpu::MtlaAttentionImpl::kReference;
  constexpr int kHeads = 8, kR = 256, kRope = 32, kS = 2, kWidth = kR + kRope;
  const int complete = context / kS;
  const int blocks_per_seq = complete / kBlockSlots + 1;
  const int pool = batch * blocks_per_seq;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> storage(static_cast<size_t>(pool) * kBlockSlots * kWidth);
  for (float& x : storage) x = normal(rng);
  std::vector<int32_t> ids(pool);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<cpu::SequenceChunk> chunks(batch);
  for (int b = 0; b < batch; ++b) chunks[b] = {ids.data() + b * blocks_per_seq, context, 1, b};
  std::vector<float> q(static_cast<size_t>(batch) * kHeads * kWidth), own(batch * kWidth),
      out(static_cast<size_t>(batch) * kHeads * kR);
  for (float& x : q) x = normal(rng) * 0.1f;
  for (float& x : own) x = normal(rng);
  cpu::MtlaAttentionParams p;
  p.cache = {storage.data(), kBlockSlots, kR, kRope};
  p.chunks = chunks.data();
  p.num_chunks = batch;
  p.down_rate = kS;
  p.num_heads = kHeads;
  p.q = q.data();
  p.partial_rows = own.data();
  p.scale = 1.0f / std::sqrt(96.0f);
  p.out = out.data();
  std::vector<float> scratch(cpu::MtlaAttentionScratchFloats(p));
  p.scratch = scratch.data();
  p.scratch_floats = static_cast<int64_t>(scratch.size());
  int64_t calls = 0;
  const double t0 = Seconds();
  for (auto _ : state) {
    cpu::MtlaAttention(p, impl);
    ++calls;
  }
  const double seconds = (Seconds() - t0) / std::max<int64_t>(calls, 1);
  const double keys = static_cast<double>(batch) * (complete + 1);
  const double bytes = 4.0 * (static_cast<double>(batch) * complete * kWidth +
                              batch * (kHeads * kWidth + kWidth + kHeads * kR));
  const double flops = keys * kHeads * 2.0 * (kWidth + kR);
  state.counters["GB_per_s"] = bytes / seconds / 1e9;
  state.counters["GFLOP_per_s"] = flops / seconds / 1e9;
  ReportRoofline(state, seconds, bytes, flops);
}

BENCHMARK(BM_PagedAttention)
    ->ArgNames({"batch", "context", "reference"})
    ->ArgsProduct({{1, 8, 32}, {256, 2048}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(0.5)
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
  // --roofline_read_gbps=X / --roofline_gflops=Y skip the start-up measurement.
  double read_gbps = 0.0, gflops = 0.0;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--roofline_read_gbps=", 21) == 0) {
      read_gbps = std::atof(argv[i] + 21);
    } else if (std::strncmp(argv[i], "--roofline_gflops=", 18) == 0) {
      gflops = std::atof(argv[i] + 18);
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  mtla::PrintCacheTable();
  mtla::bench::Roofline& roofline = mtla::MachineRoofline();
  if (read_gbps > 0.0 && gflops > 0.0) {
    roofline.read_gb_per_s = read_gbps;
    roofline.sgemm_gflops = gflops;
    roofline.sgemm_library = "given";
    mtla::RemeasureBandwidth() = false;
  } else {
    roofline = mtla::bench::MeasureRoofline();
  }
  std::printf("Roofline: read %.1f GB/s, sgemm %.1f GFLOP/s (%s)\n\n", roofline.read_gb_per_s,
              roofline.sgemm_gflops, roofline.sgemm_library);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
