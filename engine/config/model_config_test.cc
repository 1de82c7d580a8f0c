#include "engine/config/model_config.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "engine/testing/unique_temp_path.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace mtla {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

const std::filesystem::path kModelReference =
    std::filesystem::path(MTLA_TESTDATA_DIR) / "model_reference";

// A complete, valid config.json (same values as llama_mtla_s2).
Json BaseConfig() {
  return Json::parse(R"({
    "architectures": ["LlamaMTLAForCausalLM"], "model_type": "llama-mtla",
    "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2, "down_rate": 2,
    "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 160, "kv_lora_rank": 32,
    "max_position_embeddings": 512, "num_attention_heads": 4, "num_hidden_layers": 3,
    "q_lora_rank": 0, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0, "tie_word_embeddings": false, "v_head_dim": 16, "vocab_size": 97
  })");
}

// Expects InvalidArgument naming `field` with the "config.json: " prefix.
void ExpectFieldError(const Json& json, const std::string& field) {
  auto config = ParseLlamaMtlaConfig(json.dump());
  ASSERT_FALSE(config.ok()) << json.dump();
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  EXPECT_THAT(config.status().message(), HasSubstr("config.json: "));
  EXPECT_THAT(config.status().message(), HasSubstr("'" + field + "'"));
}

TEST(ModelConfigTest, LoadsReferenceS2) {
  const auto path = kModelReference / "llama_mtla_s2" / "config.json";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "shared testdata not found at " << path;
  auto config = LoadLlamaMtlaConfig(path.string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->hidden_size, 64);
  EXPECT_EQ(config->intermediate_size, 160);
  EXPECT_EQ(config->num_layers, 3);
  EXPECT_EQ(config->vocab_size, 97);
  EXPECT_EQ(config->max_position_embeddings, 512);
  EXPECT_FLOAT_EQ(config->rms_norm_eps, 1e-6f);
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_EQ(config->bos_token_id, 1);
  EXPECT_EQ(config->eos_token_id, 2);
  const MtlaAttentionConfig& a = config->attention;
  EXPECT_EQ(a.embed_dim, 64);
  EXPECT_EQ(a.num_heads, 4);
  EXPECT_EQ(a.q_lora_rank, 0);
  EXPECT_EQ(a.kv_lora_rank, 32);
  EXPECT_EQ(a.qk_nope_head_dim, 16);
  EXPECT_EQ(a.qk_rope_head_dim, 8);
  EXPECT_EQ(a.v_head_dim, 16);
  EXPECT_EQ(a.down_rate, 2);
  EXPECT_EQ(a.hypernet_rank, 8);
  EXPECT_EQ(a.rope_style, RopeStyle::kHalfSplit);
  EXPECT_FLOAT_EQ(a.rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(a.layer_norm_eps, 1e-5f);
  EXPECT_FALSE(a.bias);
  EXPECT_EQ(a.qk_head_dim(), 24);
  EXPECT_EQ(a.slot_width(), 40);
}

TEST(ModelConfigTest, LoadsReferenceS3QLora) {
  const auto path = kModelReference / "llama_mtla_s3_qlora" / "config.json";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "shared testdata not found at " << path;
  auto config = LoadLlamaMtlaConfig(path.string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->hidden_size, 96);
  EXPECT_EQ(config->num_layers, 2);
  EXPECT_EQ(config->attention.embed_dim, 96);
  EXPECT_EQ(config->attention.num_heads, 6);
  EXPECT_EQ(config->attention.q_lora_rank, 24);
  EXPECT_EQ(config->attention.kv_lora_rank, 48);
  EXPECT_EQ(config->attention.hypernet_rank, 12);
  EXPECT_EQ(config->attention.down_rate, 3);
}

TEST(ModelConfigTest, DefaultsForOptionalFields) {
  Json json = BaseConfig();
  for (const char* field : {"q_lora_rank", "rope_theta", "tie_word_embeddings", "bos_token_id",
                            "eos_token_id", "attention_bias", "hidden_act"}) {
    json.erase(field);
  }
  auto config = ParseLlamaMtlaConfig(json.dump());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->attention.q_lora_rank, 0);
  EXPECT_FLOAT_EQ(config->attention.rope_theta, 10000.0f);
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_EQ(config->bos_token_id, 1);
  EXPECT_EQ(config->eos_token_id, 2);
  EXPECT_FALSE(config->attention.bias);
}

TEST(ModelConfigTest, NullsAndTokenLists) {
  Json json = BaseConfig();
  json["q_lora_rank"] = nullptr;
  json["bos_token_id"] = nullptr;
  json["eos_token_id"] = Json::array({5, 6});
  json["rope_theta"] = 500000;  // an integer is a valid number
  json["tie_word_embeddings"] = true;
  json["attention_bias"] = true;
  json["rope_scaling"] = nullptr;
  auto config = ParseLlamaMtlaConfig(json.dump());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->attention.q_lora_rank, 0);
  EXPECT_EQ(config->bos_token_id, 1);
  EXPECT_EQ(config->eos_token_id, 5);
  EXPECT_FLOAT_EQ(config->attention.rope_theta, 500000.0f);
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_TRUE(config->attention.bias);
}

TEST(ModelConfigTest, MissingRequiredFieldIsNamed) {
  for (const char* field :
       {"model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size",
        "max_position_embeddings", "rms_norm_eps", "num_attention_heads", "kv_lora_rank",
        "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "down_rate"}) {
    SCOPED_TRACE(field);
    Json json = BaseConfig();
    json.erase(field);
    ExpectFieldError(json, field);
  }
}

TEST(ModelConfigTest, WrongTypeIsNamed) {
  const std::pair<const char*, Json> cases[] = {
      {"hidden_size", "64"},          {"hidden_size", 64.5},
      {"num_hidden_layers", nullptr}, {"kv_lora_rank", Json::array({32})},
      {"q_lora_rank", "0"},           {"rope_theta", "10000"},
      {"rms_norm_eps", true},         {"tie_word_embeddings", 1},
      {"attention_bias", "false"},    {"eos_token_id", "2"},
      {"bos_token_id", Json::array()}, {"eos_token_id", Json::array({"2"})},
      {"model_type", 7},              {"down_rate", 1e12},
      {"vocab_size", 4294967296LL},
  };
  for (const auto& [field, value] : cases) {
    SCOPED_TRACE(std::string(field) + " = " + value.dump());
    Json json = BaseConfig();
    json[field] = value;
    ExpectFieldError(json, field);
  }
}

TEST(ModelConfigTest, WrongModelType) {
  Json json = BaseConfig();
  json["model_type"] = "llama";
  ExpectFieldError(json, "model_type");
}

TEST(ModelConfigTest, OddRopeDim) {
  Json json = BaseConfig();
  json["qk_rope_head_dim"] = 7;
  ExpectFieldError(json, "qk_rope_head_dim");
}

TEST(ModelConfigTest, InvalidValuesAreNamed) {
  const std::pair<const char*, Json> cases[] = {
      {"kv_lora_rank", 30},   {"kv_lora_rank", 0},       {"down_rate", 0},
      {"hidden_size", -64},   {"num_attention_heads", 0}, {"q_lora_rank", -1},
      {"v_head_dim", 0},      {"qk_nope_head_dim", -16}, {"rope_theta", 0.0},
      {"rms_norm_eps", -1.0}, {"vocab_size", 0},         {"eos_token_id", 97},
      {"bos_token_id", -1},   {"intermediate_size", 0},  {"max_position_embeddings", 0},
  };
  for (const auto& [field, value] : cases) {
    SCOPED_TRACE(std::string(field) + " = " + value.dump());
    Json json = BaseConfig();
    json[field] = value;
    ExpectFieldError(json, field);
  }
}

TEST(ModelConfigTest, UnsupportedOptionsAreRejected) {
  Json json = BaseConfig();
  json["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  ExpectFieldError(json, "rope_scaling");
  json = BaseConfig();
  json["hidden_act"] = "gelu";
  ExpectFieldError(json, "hidden_act");
  json = BaseConfig();
  json["mlp_bias"] = true;
  ExpectFieldError(json, "mlp_bias");
}

TEST(ModelConfigTest, InvalidJson) {
  for (const std::string text : {"", "{", "{\"model_type\": }", "[1, 2]", "null", "\"x\""}) {
    auto config = ParseLlamaMtlaConfig(text);
    ASSERT_FALSE(config.ok()) << text;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(config.status().message(), HasSubstr("config.json"));
  }
}

TEST(ModelConfigTest, LoadMissingFileIsNotFound) {
  const std::string path = ::testing::TempDir() + "/no_such_dir/config.json";
  auto config = LoadLlamaMtlaConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(), HasSubstr(path));
}

TEST(ModelConfigTest, LoadPrefixesErrorsWithPath) {
  const std::string path = UniqueTempPath("model_config_test_bad_config", ".json");
  Json json = BaseConfig();
  json["kv_lora_rank"] = 30;
  std::ofstream(path) << json.dump();
  auto config = LoadLlamaMtlaConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr(path + ": "));
  EXPECT_THAT(config.status().message(), HasSubstr("'kv_lora_rank'"));
}

TEST(ModelConfigTest, ValidateChecksEmbedDimMatchesHiddenSize) {
  auto config = ParseLlamaMtlaConfig(BaseConfig().dump());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->Validate().ok());
  LlamaMtlaConfig bad = *config;
  bad.attention.embed_dim = 32;
  absl::Status status = bad.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("hidden_size"));
}

TEST(ModelConfigTest, AttentionValidateNamesFields) {
  MtlaAttentionConfig a;
  a.embed_dim = 64;
  a.num_heads = 4;
  a.kv_lora_rank = 32;
  a.qk_nope_head_dim = 16;
  a.qk_rope_head_dim = 8;
  a.v_head_dim = 16;
  a.down_rate = 1;
  a.hypernet_rank = 8;
  EXPECT_TRUE(a.Validate().ok());
  MtlaAttentionConfig b = a;
  b.hypernet_rank = 0;
  EXPECT_THAT(b.Validate().message(), HasSubstr("'hypernet_rank'"));
  b = a;
  b.num_heads = 0;
  EXPECT_THAT(b.Validate().message(), HasSubstr("'num_heads'"));
}

}  // namespace
}  // namespace mtla
