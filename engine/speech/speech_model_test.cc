// Tests of the speech model: config parsing, the decoder spec it builds, the
// ST decoder's prefix fill (one FillPrefix call vs several, on random weights),
// and, when the shared data is present, decoding against the paper's code.
//
// Tolerances: the prefix-split comparison is fp32 against fp32 with the same
// arithmetic, so logits must agree to 1e-6 relative L2 and tokens exactly;
// against the reference data, logits within 1e-4 relative L2 (as the
// conformance tool) and tokens exactly.
#include "engine/speech/speech_model.h"

#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/cpu_model_backend.h"
#include "engine/model/model_runner.h"
#include "engine/speech/speech_config.h"
#include "engine/speech/speech_decoding.h"
#include "engine/testing/random_checkpoint.h"
#include "engine/testing/unique_temp_path.h"
#include "engine/weights/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;

double RelL2(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i])) return INFINITY;
    diff += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    norm += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(diff / norm);
}

std::vector<int32_t> ToIds(const std::vector<float>& v) {
  return std::vector<int32_t>(v.begin(), v.end());
}

// ---- Config ----------------------------------------------------------------

TEST(SpeechConfigTest, FairseqArgumentsWithArchDefaults) {
  absl::StatusOr<SpeechModelConfig> c = ParseFairseqSpeechConfig(
      R"({"arch": "s2t_decoder_only_MTLA_cross_xm", "vocab_size": 8000})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->has_encoder);
  EXPECT_EQ(c->encoder.conv_kernel_sizes, (std::vector<int>{5, 5}));
  EXPECT_EQ(c->encoder.conv_channels, 1024);
  EXPECT_EQ(c->encoder.embed_dim, 512);
  EXPECT_EQ(c->encoder.num_layers, 12);
  EXPECT_FLOAT_EQ(c->encoder.embed_scale, std::sqrt(512.0f));
  EXPECT_EQ(c->decoder_layers, 9);
  EXPECT_EQ(c->decoder_ffn_dim, 2048);
  EXPECT_EQ(c->attention.kv_lora_rank, 256);
  EXPECT_EQ(c->attention.hypernet_rank, 64);
  EXPECT_EQ(c->attention.qk_rope_head_dim, 32);
  EXPECT_EQ(c->attention.down_rate, 2);
  EXPECT_EQ(c->attention.rope_style, RopeStyle::kInterleaved);
  EXPECT_EQ(c->eos_id, 2);
  EXPECT_EQ(c->pad_id, 1);
  EXPECT_EQ(c->MaxPrefixRows(), 1500);
  const DecoderSpec spec = SpeechDecoderSpec(*c);
  EXPECT_EQ(spec.max_context_tokens, 1500 + 1024);
  EXPECT_FLOAT_EQ(spec.embed_scale, std::sqrt(512.0f));
  EXPECT_EQ(spec.names.lm_head, "decoder.output_projection.weight");
}

TEST(SpeechConfigTest, FairseqOptions) {
  absl::StatusOr<SpeechModelConfig> c = ParseFairseqSpeechConfig(
      R"({"arch": "s2t_decoder_only_MTLA_cross_xm", "vocab_size": 100, "no_scale_embedding": true,
          "encoder_projector_ds_rate": 2, "conv_kernel_sizes": "5", "share_decoder_input_output_embed": true})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FLOAT_EQ(c->encoder.embed_scale, 1.0f);
  EXPECT_FLOAT_EQ(c->decoder_embed_scale, 1.0f);
  EXPECT_EQ(c->PrefixRows(100), 25);  // 50 encoder frames, pairs joined
  EXPECT_EQ(c->PrefixRows(101), 25);
  EXPECT_TRUE(SpeechDecoderSpec(*c).names.lm_head.empty());
}

TEST(SpeechConfigTest, RejectsWhatItDoesNotImplement) {
  struct Case {
    const char* json;
    const char* field;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"arch": "s2t_transformer_s", "vocab_size": 10})", "arch"},
           {R"({"arch": "s2t_decoder_only_MTLA_cross_xm"})", "vocab_size"},
           {R"({"arch": "s2t_decoder_only_MTLA_cross_xm", "vocab_size": 10, "activation_fn": "gelu"})",
            "activation_fn"},
           {R"({"arch": "s2t_decoder_only_MTLA_cross_xm", "vocab_size": 10, "encoder_normalize_before": false})",
            "encoder_normalize_before"},
           {R"({"arch": "s2t_decoder_only_MTLA_cross_xm", "vocab_size": 10, "conv_kernel_sizes": "5,x"})",
            "conv_kernel_sizes"},
           {R"({"arch": "s2t_decoder_only_MTLA_cross_xm", "vocab_size": 10, "decoder_kv_lora_rank": 30})",
            "kv_lora_rank"},
       }) {
    absl::StatusOr<SpeechModelConfig> config = ParseFairseqSpeechConfig(c.json);
    ASSERT_FALSE(config.ok()) << c.json;
    EXPECT_THAT(config.status().message(), HasSubstr(c.field)) << config.status();
  }
}

TEST(SpeechConfigTest, DecoderOnlyReferenceFormat) {
  absl::StatusOr<SpeechModelConfig> c = ParseStDecoderConfig(
      R"({"embed_dim": 64, "embed_scale": 8.0, "ffn_dim": 128, "kv_lora_rank": 32, "layers": 3,
          "num_heads": 4, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
          "down_rate": 3, "vocab_size": 211, "rope_style": "interleaved", "eos_id": 2})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->has_encoder);
  EXPECT_EQ(c->encoder_dim, 64);
  EXPECT_EQ(c->attention.down_rate, 3);
  EXPECT_EQ(c->attention.hypernet_rank, 8);
  EXPECT_FLOAT_EQ(c->decoder_embed_scale, 8.0f);
  EXPECT_EQ(c->PrefixRows(23), 23);
  EXPECT_FALSE(ParseStDecoderConfig(R"({"embed_dim": 64, "rope_style": "half_split"})").ok());
}

// ---- Prefix fill: one call vs several ---------------------------------------

struct DecodeTrace {
  std::vector<float> logits;  // every step's row
  std::vector<int32_t> tokens;
};

class PrefixFillTest : public testing::TestWithParam<int> {  // param: down_rate
 protected:
  void SetUp() override {
    MtlaAttentionConfig a;
    a.embed_dim = 32;
    a.num_heads = 2;
    a.kv_lora_rank = 16;
    a.qk_nope_head_dim = 8;
    a.qk_rope_head_dim = 4;
    a.v_head_dim = 8;
    a.down_rate = GetParam();
    a.hypernet_rank = 4;
    spec_ = FairseqMtlaDecoderSpec(a, /*ffn_dim=*/48, /*num_layers=*/3, /*vocab_size=*/50,
                                   /*max_context_tokens=*/128);
    path_ = UniqueTempPath(absl::StrCat("speech_prefix_fill_", GetParam()), ".safetensors");
    ASSERT_TRUE(WriteSafetensors(path_, RandomDecoderWeights(spec_, 100 + GetParam(), 0.2f)).ok());
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path_);
    ASSERT_TRUE(file.ok()) << file.status();
    file_ = std::move(*file);
    std::mt19937_64 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    prefix_.resize(kPrefixRows * 32);
    for (float& v : prefix_) v = normal(rng);
  }
  void TearDown() override { std::filesystem::remove(path_); }

  // Fills the prefix in chunks of `chunks` rows (summing to kPrefixRows), then
  // decodes greedily from EOS for kSteps steps.
  DecodeTrace Run(const std::vector<int>& chunks, int block_slots) {
    DecodeTrace trace;
    absl::StatusOr<std::unique_ptr<CpuModelBackend>> backend =
        CpuModelBackend::Create(spec_, *file_, /*num_blocks=*/64, block_slots);
    EXPECT_TRUE(backend.ok()) << backend.status();
    if (!backend.ok()) return trace;
    ModelRunner runner(std::move(*backend));
    EXPECT_TRUE(runner.cache().AddSequence(7).ok());
    int64_t done = 0;
    for (int rows : chunks) {
      const absl::Status s = runner.FillPrefix(7, prefix_.data() + done * 32, rows);
      EXPECT_TRUE(s.ok()) << s;
      done += rows;
    }
    EXPECT_EQ(done, kPrefixRows);
    int32_t input = spec_.eos_token_id;
    std::vector<float> logits;
    for (int step = 0; step < kSteps; ++step) {
      const absl::Status s = runner.Step({SequenceWork{7, absl::MakeConstSpan(&input, 1)}}, &logits);
      EXPECT_TRUE(s.ok()) << s;
      if (!s.ok()) return trace;
      trace.logits.insert(trace.logits.end(), logits.begin(), logits.end());
      input = ArgMax(logits.data(), spec_.vocab_size);
      trace.tokens.push_back(input);
    }
    EXPECT_TRUE(runner.cache().Free(7).ok());
    EXPECT_EQ(runner.cache().num_used_blocks(), 0);
    return trace;
  }

  static constexpr int kPrefixRows = 13;
  static constexpr int kSteps = 7;
  DecoderSpec spec_;
  std::string path_;
  std::unique_ptr<SafetensorsFile> file_;
  std::vector<float> prefix_;
};

TEST_P(PrefixFillTest, SeveralFillsEqualOne) {
  const DecodeTrace one = Run({kPrefixRows}, /*block_slots=*/2);
  ASSERT_EQ(one.tokens.size(), static_cast<size_t>(kSteps));
  for (const std::vector<int>& chunks : std::vector<std::vector<int>>{
           {1, 12}, {5, 8}, {3, 1, 4, 5}, {2, 2, 2, 2, 2, 3}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}}) {
    for (int block_slots : {1, 2, 5}) {
      const DecodeTrace split = Run(chunks, block_slots);
      EXPECT_LE(RelL2(split.logits, one.logits), 1e-6)
          << "chunks " << chunks.size() << " block_slots " << block_slots;
      EXPECT_EQ(split.tokens, one.tokens) << "chunks " << chunks.size();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DownRates, PrefixFillTest, testing::Values(1, 2, 3));

// ---- Shared reference data ----------------------------------------------------

// st_reference: the decoder from a given encoder output, greedy from EOS.
class StReferenceTest : public testing::TestWithParam<std::string> {};

TEST_P(StReferenceTest, GreedyDecodingMatchesReference) {
  const std::string dir = std::string(MTLA_TESTDATA_DIR) + "/st_reference/" + GetParam();
  if (!std::filesystem::exists(dir + "/expected.safetensors")) {
    GTEST_SKIP() << "shared testdata not found at " << dir;
  }
  CacheOptions options;
  options.block_slots = 3;
  options.num_blocks = 64;
  absl::StatusOr<SpeechModel> model = LoadSpeechModelCpu(dir, options);
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> expected =
      SafetensorsFile::Open(dir + "/expected.safetensors");
  ASSERT_TRUE(expected.ok()) << expected.status();
  absl::StatusOr<std::vector<float>> encoder_out = (*expected)->ReadFloat("encoder_out");
  ASSERT_TRUE(encoder_out.ok());
  absl::StatusOr<std::vector<float>> want_ids = (*expected)->ReadFloat("generated_ids");
  ASSERT_TRUE(want_ids.ok());
  absl::StatusOr<std::vector<float>> want_logits = (*expected)->ReadFloat("step_logits");
  ASSERT_TRUE(want_logits.ok());
  const int64_t frames = (*expected)->find("encoder_out")->shape[0];
  absl::StatusOr<std::vector<float>> prefix = model->Project(encoder_out->data(), frames);
  ASSERT_TRUE(prefix.ok()) << prefix.status();

  ModelRunner runner(std::move(model->decoder));
  ASSERT_TRUE(runner.cache().AddSequence(0).ok());
  ASSERT_TRUE(runner.FillPrefix(0, prefix->data(), model->PrefixRows(frames)).ok());
  const int vocab = model->config.vocab_size;
  int32_t input = model->config.eos_id;
  std::vector<float> logits, all;
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < want_ids->size(); ++i) {
    ASSERT_TRUE(runner.Step({SequenceWork{0, absl::MakeConstSpan(&input, 1)}}, &logits).ok());
    all.insert(all.end(), logits.begin(), logits.end());
    input = ArgMax(logits.data(), vocab);
    tokens.push_back(input);
  }
  EXPECT_LE(RelL2(all, *want_logits), 1e-4);
  EXPECT_EQ(tokens, ToIds(*want_ids));
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, StReferenceTest,
                         testing::Values("st_decoder_s2", "st_decoder_s3"));

// fairseq_st_reference: features -> tokens and score through GreedyDecode.
TEST(FairseqStReferenceTest, GreedyDecodeMatchesSequenceGenerator) {
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
  absl::StatusOr<std::vector<float>> features = (*expected)->ReadFloat("input.fbank_cmvn");
  ASSERT_TRUE(features.ok());
  const int64_t frames = (*expected)->find("input.fbank_cmvn")->shape[0];
  absl::StatusOr<std::vector<float>> want_tokens = (*expected)->ReadFloat("greedy.tokens");
  ASSERT_TRUE(want_tokens.ok());
  absl::StatusOr<std::vector<float>> want_score = (*expected)->ReadFloat("greedy.score");
  ASSERT_TRUE(want_score.ok());

  absl::StatusOr<std::vector<float>> encoder_out = model->Encode(features->data(), frames);
  ASSERT_TRUE(encoder_out.ok()) << encoder_out.status();
  const int64_t enc_frames = model->config.encoder.OutputFrames(frames);
  absl::StatusOr<std::vector<float>> prefix = model->Project(encoder_out->data(), enc_frames);
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  ModelRunner runner(std::move(model->decoder));
  ASSERT_TRUE(runner.cache().AddSequence(0).ok());
  ASSERT_TRUE(runner.FillPrefix(0, prefix->data(), model->PrefixRows(enc_frames)).ok());
  GreedyDecodeOptions generator;
  generator.max_len_b = std::stoi((*expected)->metadata().at("max_len_b"));
  generator.max_positions = model->config.max_target_positions;
  absl::StatusOr<GreedyDecodeResult> result = GreedyDecode(runner, 0, frames, generator);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->tokens, ToIds(*want_tokens));
  EXPECT_NEAR(result->score, (*want_score)[0], 1e-4 * std::abs((*want_score)[0]));
  ASSERT_TRUE(runner.cache().Free(0).ok());
  EXPECT_EQ(runner.cache().num_used_blocks(), 0);
}

}  // namespace
}  // namespace mtla
