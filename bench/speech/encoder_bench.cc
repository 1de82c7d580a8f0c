// The speech encoder alone at the paper's dims (12 layers, E 512, 8 heads,
// FFN 2048, two Conv1d of kernel 5 with 1024 channels, 80 fbank inputs;
// random weights), one segment or a ragged batch of segments per call, against
// this machine's sgemm peak.
//
//   build/bin/mtla_encoder_bench [--benchmark_filter=...]
//
// Per segment length (seconds of audio, 100 fbank frames a second) and batch
// it reports ms per batch, GFLOP per batch (2 per multiply-add of the convolutions,
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
#include "engine/testing/random_speech_weights.h"

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
    SpeechModelConfig config;
    config.has_encoder = true;
    config.encoder = PaperEncoderConfig();
    config.encoder_dim = 512;  // the paper model's projector (not benchmarked here)
    config.decoder_embed_dim = 512;
    absl::StatusOr<SpeechModel> model = RandomSpeechFrontModel(config, /*seed=*/17);
    if (!model.ok()) {
      std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
      std::abort();
    }
    return new SpeechEncoder(std::move(*model->encoder));
  }();
  return *encoder;
}

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// state.range(0): tenths of a second of audio per segment; state.range(1):
// segments encoded together (one ragged batch, as the server's encoder
// worker does).
void BM_SpeechEncoder(benchmark::State& state) {
  const SpeechEncoder& encoder = Encoder();
  const double seconds_of_audio = static_cast<double>(state.range(0)) / 10.0;
  const int64_t frames = static_cast<int64_t>(seconds_of_audio * 100);
  const int segments = static_cast<int>(state.range(1));
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> features(segments);
  std::vector<SpeechEncoder::Input> inputs;
  for (std::vector<float>& f : features) {
    f.resize(frames * encoder.config().input_dim);
    for (float& v : f) v = normal(rng);
    inputs.push_back({f.data(), frames});
  }
  double cpu = 0.0;
  for (auto _ : state) {
    const double c0 = ProcessCpuSeconds();
    auto out = encoder.EncodeBatch(inputs);
    cpu += ProcessCpuSeconds() - c0;
    for (const auto& o : out) {
      if (!o.ok()) {
        state.SkipWithError(o.status().ToString().c_str());
        return;
      }
      benchmark::DoNotOptimize(o->data());
    }
  }
  const double flops = segments * EncoderFlops(encoder.config(), frames);
  const double per_call = 1.0 / static_cast<double>(state.iterations());
  state.counters["GFLOP_per_batch"] = flops / 1e9;
  state.counters["GFLOP_per_s"] =
      benchmark::Counter(flops / 1e9 * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["pct_of_sgemm_peak"] = benchmark::Counter(
      100.0 * flops / 1e9 / Peak().sgemm_gflops * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["audio_s_per_cpu_s"] = segments * seconds_of_audio / (cpu * per_call);
}

// One segment of 1, 2.5, 5 and 10 s of audio; then batches of 4 and 16
// segments of 2.5 s (what the encoder worker sees with many live streams).
BENCHMARK(BM_SpeechEncoder)
    ->ArgNames({"tenths_of_s", "segments"})
    ->Args({10, 1})
    ->Args({25, 1})
    ->Args({50, 1})
    ->Args({100, 1})
    ->Args({25, 4})
    ->Args({25, 16})
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
