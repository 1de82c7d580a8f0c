// The speech encoder alone at the paper's dims (12 layers, E 512, 8 heads,
// FFN 2048, two Conv1d of kernel 5 with 1024 channels, 80 fbank inputs;
// random weights), one segment per call, against this machine's sgemm peak.
//
//   build/bin/mtla_encoder_bench [--benchmark_filter=...]
//
// Per segment length (seconds of audio, 100 fbank frames a second) it reports
// ms per segment, GFLOP per segment (2 per multiply-add of the convolutions,
// the projections, the attention scores and the weighted sums, and the FFN),
// GFLOP/s and pct_of_sgemm_peak against oneDNN's packed sgemm measured at
// start-up (bench/roofline), and audio seconds encoded per CPU second.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/roofline/roofline.h"
#include "engine/speech/speech_encoder.h"
#include "engine/testing/random_checkpoint.h"
#include "engine/testing/unique_temp_path.h"
#include "engine/weights/safetensors.h"

namespace mtla {
namespace {

SpeechEncoderConfig PaperEncoderConfig() {
  SpeechEncoderConfig c;
  c.input_dim = 80;
  c.conv_kernel_sizes = {5, 5};
  c.conv_channels = 1024;
  c.embed_dim = 512;
  c.ffn_dim = 2048;
  c.num_layers = 12;
  c.num_heads = 8;
  c.embed_scale = 22.627417f;  // sqrt(512)
  return c;
}

// Random weights under fairseq's names, N(0, 1/fan_in) like
// bench/speech/make_random_st_model.py; norms 1 and 0.
std::map<std::string, NamedTensor> RandomEncoderWeights(const SpeechEncoderConfig& c) {
  std::mt19937_64 rng(17);
  std::map<std::string, NamedTensor> t;
  auto random = [&](const std::string& name, std::vector<int64_t> shape, int64_t fan_in) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(fan_in)));
    NamedTensor& x = t[name];
    x.shape = std::move(shape);
    x.values.resize(count);
    for (float& v : x.values) v = normal(rng);
  };
  auto constant = [&](const std::string& name, int64_t n, float value) {
    t[name] = NamedTensor{{n}, std::vector<float>(n, value)};
  };
  auto linear = [&](const std::string& name, int in, int out) {
    random(name + ".weight", {out, in}, in);
    constant(name + ".bias", out, 0.0f);
  };
  auto norm = [&](const std::string& name, int dim) {
    constant(name + ".weight", dim, 1.0f);
    constant(name + ".bias", dim, 0.0f);
  };
  int in = c.input_dim;
  for (size_t i = 0; i < c.conv_kernel_sizes.size(); ++i) {
    const int k = c.conv_kernel_sizes[i];
    const int out = i + 1 < c.conv_kernel_sizes.size() ? c.conv_channels : 2 * c.embed_dim;
    const std::string p = absl::StrCat("encoder.subsample.conv_layers.", i);
    random(p + ".weight", {out, in, k}, in * k);
    constant(p + ".bias", out, 0.0f);
    in = out / 2;
  }
  const int e = c.embed_dim;
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = absl::StrCat("encoder.transformer_layers.", l, ".");
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      linear(p + "self_attn." + proj, e, e);
    }
    norm(p + "self_attn_layer_norm", e);
    norm(p + "final_layer_norm", e);
    linear(p + "fc1", e, c.ffn_dim);
    linear(p + "fc2", c.ffn_dim, e);
  }
  norm("encoder.layer_norm", e);
  return t;
}

double EncoderFlops(const SpeechEncoderConfig& c, int64_t frames) {
  double flops = 0.0;
  int64_t t = frames;
  int in = c.input_dim;
  for (size_t i = 0; i < c.conv_kernel_sizes.size(); ++i) {
    const int k = c.conv_kernel_sizes[i];
    const int out = i + 1 < c.conv_kernel_sizes.size() ? c.conv_channels : 2 * c.embed_dim;
    t = Conv1dStride2OutputFrames(t, k);
    flops += 2.0 * t * k * in * out;
    in = out / 2;
  }
  const double n = static_cast<double>(t), e = c.embed_dim, f = c.ffn_dim;
  const double layer = 2.0 * n * e * e * 4 + 2.0 * n * n * e * 2 + 2.0 * n * e * f * 2;
  return flops + c.num_layers * layer;
}

bench::Roofline& Peak() {
  static bench::Roofline roofline;
  return roofline;
}

const SpeechEncoder& Encoder() {
  static const SpeechEncoder* encoder = [] {
    const SpeechEncoderConfig config = PaperEncoderConfig();
    const std::string path = UniqueTempPath("mtla_encoder_bench", ".safetensors");
    if (!WriteSafetensors(path, RandomEncoderWeights(config)).ok()) std::abort();
    auto file = SafetensorsFile::Open(path);
    if (!file.ok()) std::abort();
    auto loaded = SpeechEncoder::Load(config, **file);
    std::filesystem::remove(path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      std::abort();
    }
    return new SpeechEncoder(std::move(loaded).value());
  }();
  return *encoder;
}

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

void BM_SpeechEncoder(benchmark::State& state) {
  const SpeechEncoder& encoder = Encoder();
  const double seconds_of_audio = static_cast<double>(state.range(0)) / 10.0;
  const int64_t frames = static_cast<int64_t>(seconds_of_audio * 100);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> features(frames * encoder.config().input_dim);
  for (float& v : features) v = normal(rng);
  double cpu = 0.0;
  for (auto _ : state) {
    const double c0 = ProcessCpuSeconds();
    auto out = encoder.Encode(features.data(), frames);
    cpu += ProcessCpuSeconds() - c0;
    if (!out.ok()) {
      state.SkipWithError(out.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(out->data());
  }
  const double flops = EncoderFlops(encoder.config(), frames);
  const double per_call = 1.0 / static_cast<double>(state.iterations());
  state.counters["GFLOP_per_segment"] = flops / 1e9;
  state.counters["GFLOP_per_s"] =
      benchmark::Counter(flops / 1e9 * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["pct_of_sgemm_peak"] = benchmark::Counter(
      100.0 * flops / 1e9 / Peak().sgemm_gflops * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["audio_s_per_cpu_s"] = seconds_of_audio / (cpu * per_call);
}

// Segment lengths in tenths of a second: 1, 2.5, 5 and 10 s of audio.
BENCHMARK(BM_SpeechEncoder)
    ->ArgName("tenths_of_s")
    ->Arg(10)
    ->Arg(25)
    ->Arg(50)
    ->Arg(100)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0)
    ->Repetitions(3)
    ->ReportAggregatesOnly(true);

}  // namespace
}  // namespace mtla

int main(int argc, char** argv) {
  mtla::bench::Roofline& peak = mtla::Peak();
  const char* library = "";
  peak.sgemm_gflops = mtla::bench::MeasureSgemmGflops(2048, 6, &library);
  std::printf("sgemm peak %.1f GFLOP/s (%s, 2048^3, best of 6)\n\n", peak.sgemm_gflops, library);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
