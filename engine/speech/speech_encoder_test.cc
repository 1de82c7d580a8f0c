// Tests of the speech encoder pieces: fairseq's sinusoidal position layout,
// the Conv1d subsampler's output length and values, the GLU, the whole
// encoder and projector against a naive float64 implementation on random
// weights, and (when the shared data is present) the encoder against the
// output of the paper's fairseq code.
//
// Tolerances: float32 engine vs float64 reference, relative L2 <= 1e-5 for
// the random-weight checks; 1e-4 against the fairseq reference (as the
// conformance tool); position table entries within 1e-6 absolute.
#include "engine/speech/speech_encoder.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/speech/speech_model.h"
#include "engine/testing/random_checkpoint.h"
#include "engine/testing/unique_temp_path.h"
#include "engine/weights/safetensors.h"
#include "kernels/cpu/cpu_ops.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

double RelL2(const std::vector<float>& got, const std::vector<double>& want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  return std::sqrt(diff / norm);
}

std::vector<float> RandomVector(size_t n, std::mt19937_64& rng, float scale = 1.0f,
                                float base = 0.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = base + normal(rng);
  return v;
}

TEST(SinusoidalPositionTableTest, HalfSinHalfCosLayoutWithZeroPaddingRow) {
  const int dim = 8, half = 4, padding_idx = 1;
  const std::vector<float> table = SinusoidalPositionTable(6, dim, padding_idx);
  ASSERT_EQ(table.size(), 6u * dim);
  for (int j = 0; j < dim; ++j) EXPECT_EQ(table[padding_idx * dim + j], 0.0f) << j;
  for (int p : {0, 2, 3, 5}) {
    for (int j = 0; j < half; ++j) {
      const double freq = std::exp(-j * std::log(10000.0) / (half - 1));
      EXPECT_NEAR(table[p * dim + j], std::sin(p * freq), 1e-6) << p << " " << j;
      EXPECT_NEAR(table[p * dim + half + j], std::cos(p * freq), 1e-6) << p << " " << j;
    }
  }
  // Position 0: sin = 0 in the first half, cos = 1 in the second.
  EXPECT_EQ(table[0], 0.0f);
  EXPECT_EQ(table[half], 1.0f);
  // The last frequency is 1 / 10000.
  EXPECT_NEAR(table[2 * dim + half - 1], std::sin(2e-4), 1e-9);
}

TEST(SinusoidalPositionTableTest, OddDimensionEndsWithZeroColumn) {
  const std::vector<float> table = SinusoidalPositionTable(5, 9, 1);
  for (int p = 0; p < 5; ++p) EXPECT_EQ(table[p * 9 + 8], 0.0f) << p;
  EXPECT_NEAR(table[3 * 9 + 0], std::sin(3.0), 1e-6);
  EXPECT_NEAR(table[3 * 9 + 4], std::cos(3.0), 1e-6);
}

TEST(ConvSubsamplerTest, OutputLengthMatchesFairseqFormula) {
  // fairseq Conv1dSubsampler.get_out_seq_lens_tensor: floor((T - 1) / 2 + 1)
  // per layer; torch Conv1d gives floor((T + 2 * (k / 2) - k) / 2) + 1, the
  // same for odd kernels.
  for (int k : {3, 5, 7}) {
    for (int64_t t = 1; t <= 200; ++t) {
      EXPECT_EQ(Conv1dStride2OutputFrames(t, k), static_cast<int64_t>(std::floor((t - 1) / 2.0 + 1)))
          << "k=" << k << " T=" << t;
    }
  }
  SpeechEncoderConfig config;
  config.conv_kernel_sizes = {5, 5};
  EXPECT_EQ(config.OutputFrames(358), 90);  // the fairseq reference utterance
  EXPECT_EQ(config.OutputFrames(1), 1);
  EXPECT_EQ(config.OutputFrames(4), 1);
  EXPECT_EQ(config.OutputFrames(5), 2);
  EXPECT_EQ(config.OutputFrames(6000), 1500);
  EXPECT_EQ(config.OutputFrames(0), 0);
}

TEST(ConvSubsamplerTest, GluGatesFirstHalfBySecond) {
  const std::vector<float> x = {1.0f, -2.0f, 0.0f, 100.0f, /*row 2*/ 3.0f, 4.0f, -100.0f, 2.0f};
  std::vector<float> out(4);
  cpu::GluRows(x.data(), 2, 2, out.data());
  EXPECT_FLOAT_EQ(out[0], 0.5f);
  EXPECT_FLOAT_EQ(out[1], -2.0f);
  EXPECT_NEAR(out[2], 0.0f, 1e-30);
  EXPECT_FLOAT_EQ(out[3], 4.0f / (1.0f + std::exp(-2.0f)));
}

// Direct Conv1d (stride 2, padding k/2) + GLU in float64 on torch's [out, in, k] layout.
std::vector<double> NaiveConvGlu(const std::vector<double>& in, int64_t frames, int cin, int cout,
                                 int k, const std::vector<float>& w, const std::vector<float>& b) {
  const int64_t out_frames = (frames + 2 * (k / 2) - k) / 2 + 1;
  std::vector<double> conv(out_frames * cout);
  for (int64_t t = 0; t < out_frames; ++t) {
    for (int o = 0; o < cout; ++o) {
      double acc = b[o];
      for (int j = 0; j < k; ++j) {
        const int64_t src = 2 * t - k / 2 + j;
        if (src < 0 || src >= frames) continue;
        for (int c = 0; c < cin; ++c) acc += w[(o * cin + c) * k + j] * in[src * cin + c];
      }
      conv[t * cout + o] = acc;
    }
  }
  const int half = cout / 2;
  std::vector<double> out(out_frames * half);
  for (int64_t t = 0; t < out_frames; ++t) {
    for (int j = 0; j < half; ++j) {
      out[t * half + j] = conv[t * cout + j] / (1.0 + std::exp(-conv[t * cout + half + j]));
    }
  }
  return out;
}

TEST(ConvSubsamplerTest, MatchesDirectConvolution) {
  std::mt19937_64 rng(7);
  const int cin = 3, cout = 6;
  for (int k : {5, 3, 4}) {
    for (int64_t frames : {1, 2, 5, 11, 12}) {
      const std::vector<float> w = RandomVector(cout * cin * k, rng);
      const std::vector<float> b = RandomVector(cout, rng);
      const std::vector<float> x = RandomVector(frames * cin, rng);
      const Conv1dGluLayer layer = Conv1dGluLayer::FromTorch(cin, cout, k, w, b);
      const std::vector<float> got = layer.Forward(x.data(), frames);
      const std::vector<double> want = NaiveConvGlu(std::vector<double>(x.begin(), x.end()), frames,
                                                    cin, cout, k, w, b);
      EXPECT_EQ(static_cast<int64_t>(got.size()),
                Conv1dStride2OutputFrames(frames, k) * (cout / 2));
      EXPECT_LE(RelL2(got, want), 1e-6) << "k=" << k << " frames=" << frames;
    }
  }
}

// ---- Whole encoder and projector on random weights ------------------------

std::vector<double> Apply(const std::vector<double>& x, int64_t n, int in, int out,
                          const std::vector<float>& w, const std::vector<float>& b) {
  std::vector<double> y(n * out);
  for (int64_t i = 0; i < n; ++i) {
    for (int o = 0; o < out; ++o) {
      double acc = b[o];
      for (int c = 0; c < in; ++c) acc += w[o * in + c] * x[i * in + c];
      y[i * out + o] = acc;
    }
  }
  return y;
}

std::vector<double> Norm(const std::vector<double>& x, int64_t n, int d,
                         const std::vector<float>& w, const std::vector<float>& b) {
  std::vector<double> y(n * d);
  for (int64_t i = 0; i < n; ++i) {
    double mean = 0.0, var = 0.0;
    for (int j = 0; j < d; ++j) mean += x[i * d + j];
    mean /= d;
    for (int j = 0; j < d; ++j) var += (x[i * d + j] - mean) * (x[i * d + j] - mean);
    var /= d;
    for (int j = 0; j < d; ++j) {
      y[i * d + j] = (x[i * d + j] - mean) / std::sqrt(var + 1e-5) * w[j] + b[j];
    }
  }
  return y;
}

class RandomEncoderTest : public testing::Test {
 protected:
  void SetUp() override {
    config_.has_encoder = true;
    SpeechEncoderConfig& e = config_.encoder;
    e.input_dim = 10;
    e.conv_kernel_sizes = {5, 5};
    e.conv_channels = 12;
    e.embed_dim = 16;
    e.ffn_dim = 24;
    e.num_layers = 2;
    e.num_heads = 4;
    e.embed_scale = 4.0f;
    config_.encoder_dim = 16;
    config_.projector_ds_rate = 2;
    config_.decoder_embed_dim = 8;
    std::mt19937_64 rng(11);
    auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float base) {
      int64_t count = 1;
      for (int64_t d : shape) count *= d;
      tensors_[name] = NamedTensor{shape, RandomVector(count, rng, scale, base)};
    };
    add("encoder.subsample.conv_layers.0.weight", {12, 10, 5}, 0.2f, 0.0f);
    add("encoder.subsample.conv_layers.0.bias", {12}, 0.1f, 0.0f);
    add("encoder.subsample.conv_layers.1.weight", {32, 6, 5}, 0.2f, 0.0f);
    add("encoder.subsample.conv_layers.1.bias", {32}, 0.1f, 0.0f);
    for (int l = 0; l < 2; ++l) {
      const std::string p = absl::StrCat("encoder.transformer_layers.", l, ".");
      for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
        add(p + "self_attn." + proj + ".weight", {16, 16}, 0.25f, 0.0f);
        add(p + "self_attn." + proj + ".bias", {16}, 0.1f, 0.0f);
      }
      for (const char* norm : {"self_attn_layer_norm", "final_layer_norm"}) {
        add(p + norm + ".weight", {16}, 0.1f, 1.0f);
        add(p + norm + ".bias", {16}, 0.1f, 0.0f);
      }
      add(p + "fc1.weight", {24, 16}, 0.25f, 0.0f);
      add(p + "fc1.bias", {24}, 0.1f, 0.0f);
      add(p + "fc2.weight", {16, 24}, 0.2f, 0.0f);
      add(p + "fc2.bias", {16}, 0.1f, 0.0f);
    }
    add("encoder.layer_norm.weight", {16}, 0.1f, 1.0f);
    add("encoder.layer_norm.bias", {16}, 0.1f, 0.0f);
    add("decoder.projector.linear1.weight", {4, 32}, 0.2f, 0.0f);
    add("decoder.projector.linear1.bias", {4}, 0.1f, 0.0f);
    add("decoder.projector.linear2.weight", {8, 4}, 0.3f, 0.0f);
    add("decoder.projector.linear2.bias", {8}, 0.1f, 0.0f);
    path_ = UniqueTempPath("speech_encoder_test_random", ".safetensors");
    ASSERT_TRUE(WriteSafetensors(path_, tensors_).ok());
  }
  void TearDown() override { std::filesystem::remove(path_); }

  const std::vector<float>& T(const std::string& name) { return tensors_.at(name).values; }

  // fairseq S2TTransformerEncoder in float64.
  std::vector<double> NaiveEncode(const std::vector<float>& features, int64_t frames) {
    std::vector<double> x(features.begin(), features.end());
    x = NaiveConvGlu(x, frames, 10, 12, 5, T("encoder.subsample.conv_layers.0.weight"),
                     T("encoder.subsample.conv_layers.0.bias"));
    frames = (frames - 1) / 2 + 1;
    x = NaiveConvGlu(x, frames, 6, 32, 5, T("encoder.subsample.conv_layers.1.weight"),
                     T("encoder.subsample.conv_layers.1.bias"));
    const int64_t n = (frames - 1) / 2 + 1;
    const int e = 16, heads = 4, d = 4;
    for (int64_t i = 0; i < n; ++i) {
      for (int j = 0; j < 8; ++j) {
        const double angle = (i + 2) * std::exp(-j * std::log(10000.0) / 7);
        x[i * e + j] = 4.0 * x[i * e + j] + std::sin(angle);
        x[i * e + 8 + j] = 4.0 * x[i * e + 8 + j] + std::cos(angle);
      }
    }
    for (int l = 0; l < 2; ++l) {
      const std::string p = absl::StrCat("encoder.transformer_layers.", l, ".");
      auto w = [&](const std::string& s) { return T(p + s + ".weight"); };
      auto b = [&](const std::string& s) { return T(p + s + ".bias"); };
      std::vector<double> h = Norm(x, n, e, w("self_attn_layer_norm"), b("self_attn_layer_norm"));
      const std::vector<double> q = Apply(h, n, e, e, w("self_attn.q_proj"), b("self_attn.q_proj"));
      const std::vector<double> k = Apply(h, n, e, e, w("self_attn.k_proj"), b("self_attn.k_proj"));
      const std::vector<double> v = Apply(h, n, e, e, w("self_attn.v_proj"), b("self_attn.v_proj"));
      std::vector<double> ctx(n * e, 0.0);
      for (int hd = 0; hd < heads; ++hd) {
        for (int64_t i = 0; i < n; ++i) {
          std::vector<double> s(n);
          double mx = -INFINITY, sum = 0.0;
          for (int64_t j = 0; j < n; ++j) {
            double dot = 0.0;
            for (int c = 0; c < d; ++c) dot += q[i * e + hd * d + c] * k[j * e + hd * d + c];
            s[j] = dot / std::sqrt(static_cast<double>(d));
            mx = std::max(mx, s[j]);
          }
          for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - mx));
          for (int64_t j = 0; j < n; ++j) {
            for (int c = 0; c < d; ++c) ctx[i * e + hd * d + c] += s[j] / sum * v[j * e + hd * d + c];
          }
        }
      }
      h = Apply(ctx, n, e, e, w("self_attn.out_proj"), b("self_attn.out_proj"));
      for (size_t i = 0; i < x.size(); ++i) x[i] += h[i];
      h = Norm(x, n, e, w("final_layer_norm"), b("final_layer_norm"));
      std::vector<double> a = Apply(h, n, e, 24, w("fc1"), b("fc1"));
      for (double& z : a) z = std::max(z, 0.0);
      h = Apply(a, n, 24, e, w("fc2"), b("fc2"));
      for (size_t i = 0; i < x.size(); ++i) x[i] += h[i];
    }
    return Norm(x, n, e, T("encoder.layer_norm.weight"), T("encoder.layer_norm.bias"));
  }

  SpeechModelConfig config_;
  std::map<std::string, NamedTensor> tensors_;
  std::string path_;
};

TEST_F(RandomEncoderTest, EncoderAndProjectorMatchFloat64Reference) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<SpeechEncoder> encoder = SpeechEncoder::Load(config_.encoder, **file);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  absl::StatusOr<SpeechProjector> projector = SpeechProjector::Load(config_, **file);
  ASSERT_TRUE(projector.ok()) << projector.status();
  std::mt19937_64 rng(3);
  for (int64_t frames : {1, 7, 29, 40}) {
    const std::vector<float> features = RandomVector(frames * 10, rng);
    absl::StatusOr<std::vector<float>> out = encoder->Encode(features.data(), frames);
    ASSERT_TRUE(out.ok()) << out.status();
    const std::vector<double> want = NaiveEncode(features, frames);
    const int64_t n = config_.encoder.OutputFrames(frames);
    ASSERT_EQ(static_cast<int64_t>(out->size()), n * 16);
    EXPECT_LE(RelL2(*out, want), 1e-5) << "frames=" << frames;

    // Projector with ds_rate 2: the odd last frame is dropped.
    const std::vector<float> prefix = projector->Forward(out->data(), n);
    ASSERT_EQ(static_cast<int64_t>(prefix.size()), (n / 2) * 8);
    if (n / 2 == 0) continue;
    std::vector<double> joined(want.begin(), want.begin() + (n / 2) * 32);
    std::vector<double> h = Apply(joined, n / 2, 32, 4, T("decoder.projector.linear1.weight"),
                                  T("decoder.projector.linear1.bias"));
    for (double& z : h) z = std::max(z, 0.0);
    const std::vector<double> want_prefix = Apply(h, n / 2, 4, 8,
                                                  T("decoder.projector.linear2.weight"),
                                                  T("decoder.projector.linear2.bias"));
    EXPECT_LE(RelL2(prefix, want_prefix), 1e-5) << "frames=" << frames;
  }
}

// A ragged batch (no padding) gives each utterance what it gets alone and
// what the float64 reference gives; an invalid member gets its own error.
TEST_F(RandomEncoderTest, BatchOfDifferentLengthsEqualsEachAlone) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  config_.encoder.max_source_positions = 100;
  absl::StatusOr<SpeechEncoder> encoder = SpeechEncoder::Load(config_.encoder, **file);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  std::mt19937_64 rng(5);
  const std::vector<int64_t> lengths = {40, 1, 101, 29, 7, 64};  // 101: over the limit
  std::vector<std::vector<float>> features;
  std::vector<SpeechEncoder::Input> inputs;
  for (int64_t frames : lengths) features.push_back(RandomVector(frames * 10, rng));
  for (size_t i = 0; i < lengths.size(); ++i) inputs.push_back({features[i].data(), lengths[i]});
  const std::vector<absl::StatusOr<std::vector<float>>> batch = encoder->EncodeBatch(inputs);
  ASSERT_EQ(batch.size(), lengths.size());
  for (size_t i = 0; i < lengths.size(); ++i) {
    absl::StatusOr<std::vector<float>> alone = encoder->Encode(features[i].data(), lengths[i]);
    if (lengths[i] > 100) {
      EXPECT_EQ(batch[i].status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(batch[i].status(), alone.status());
      continue;
    }
    ASSERT_TRUE(batch[i].ok()) << batch[i].status();
    ASSERT_TRUE(alone.ok()) << alone.status();
    ASSERT_EQ(batch[i]->size(), alone->size()) << "utterance " << i;
    const std::vector<double> alone_d(alone->begin(), alone->end());
    EXPECT_LE(RelL2(*batch[i], alone_d), 1e-5) << "utterance " << i;
    EXPECT_LE(RelL2(*batch[i], NaiveEncode(features[i], lengths[i])), 1e-5) << "utterance " << i;
  }
  // In stages: 1 subsampler + 2 layers + the final norm, then the same result.
  SpeechEncoder::BatchRun run(&*encoder, inputs);
  int stages = 1;
  while (run.RunStage()) ++stages;
  EXPECT_EQ(stages, 4);
  EXPECT_FALSE(run.RunStage());
  const std::vector<absl::StatusOr<std::vector<float>>> staged = run.TakeResults();
  for (size_t i = 0; i < lengths.size(); ++i) {
    ASSERT_EQ(staged[i].ok(), batch[i].ok());
    if (staged[i].ok()) EXPECT_EQ(*staged[i], *batch[i]) << "utterance " << i;
  }
}

// One LayerScratch serves batch after batch (the encoder worker's): a large
// batch (more than 64 encoder rows, so its GEMMs run in row chunks), then a
// smaller one over the larger scratch; each utterance still matches the
// float64 reference.
TEST_F(RandomEncoderTest, ReusedScratchAndRowChunksKeepResults) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  config_.encoder.max_source_positions = 400;
  absl::StatusOr<SpeechEncoder> encoder = SpeechEncoder::Load(config_.encoder, **file);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  std::mt19937_64 rng(9);
  SpeechEncoder::LayerScratch scratch;
  for (const std::vector<int64_t>& lengths :
       {std::vector<int64_t>{300, 203, 90}, std::vector<int64_t>{61, 33}}) {
    std::vector<std::vector<float>> features;
    std::vector<SpeechEncoder::Input> inputs;
    for (int64_t frames : lengths) features.push_back(RandomVector(frames * 10, rng));
    for (size_t i = 0; i < lengths.size(); ++i) inputs.push_back({features[i].data(), lengths[i]});
    SpeechEncoder::BatchRun run(&*encoder, inputs, &scratch);
    while (run.RunStage()) {
    }
    const std::vector<absl::StatusOr<std::vector<float>>> out = run.TakeResults();
    for (size_t i = 0; i < lengths.size(); ++i) {
      SCOPED_TRACE(testing::Message() << "frames " << lengths[i]);
      ASSERT_TRUE(out[i].ok()) << out[i].status();
      EXPECT_LE(RelL2(*out[i], NaiveEncode(features[i], lengths[i])), 1e-5);
    }
  }
}

TEST_F(RandomEncoderTest, RejectsEmptyAndOverlongInput) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  config_.encoder.max_source_positions = 50;
  absl::StatusOr<SpeechEncoder> encoder = SpeechEncoder::Load(config_.encoder, **file);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  std::vector<float> features(51 * 10, 0.5f);
  EXPECT_EQ(encoder->Encode(features.data(), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(encoder->Encode(features.data(), 51).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(encoder->Encode(features.data(), 50).ok());
}

TEST_F(RandomEncoderTest, MissingTensorIsNamed) {
  tensors_.erase("encoder.transformer_layers.1.fc2.bias");
  ASSERT_TRUE(WriteSafetensors(path_, tensors_).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<SpeechEncoder> encoder = SpeechEncoder::Load(config_.encoder, **file);
  ASSERT_FALSE(encoder.ok());
  EXPECT_NE(encoder.status().message().find("encoder.transformer_layers.1.fc2.bias"),
            std::string::npos)
      << encoder.status();
}

// ---- The paper's fairseq model (shared reference data) --------------------

TEST(FairseqReferenceTest, EncoderMatchesFairseq) {
  const std::string dir = std::string(MTLA_TESTDATA_DIR) + "/fairseq_st_reference/fairseq_st_s2";
  if (!std::filesystem::exists(dir + "/expected.safetensors")) {
    GTEST_SKIP() << "shared testdata not found at " << dir;
  }
  CacheOptions options;
  options.block_slots = 4;
  options.num_blocks = 256;  // a small cache: this test decodes one utterance
  absl::StatusOr<SpeechModel> model = LoadSpeechModelCpu(dir, options);
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> expected =
      SafetensorsFile::Open(dir + "/expected.safetensors");
  ASSERT_TRUE(expected.ok()) << expected.status();
  const TensorInfo* info = (*expected)->find("input.fbank_cmvn");
  ASSERT_NE(info, nullptr);
  absl::StatusOr<std::vector<float>> features = (*expected)->ReadFloat("input.fbank_cmvn");
  ASSERT_TRUE(features.ok()) << features.status();
  absl::StatusOr<std::vector<float>> want = (*expected)->ReadFloat("encoder_out");
  ASSERT_TRUE(want.ok()) << want.status();
  absl::StatusOr<std::vector<float>> got = model->Encode(features->data(), info->shape[0]);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_LE(RelL2(*got, std::vector<double>(want->begin(), want->end())), 1e-4);
}

}  // namespace
}  // namespace mtla
