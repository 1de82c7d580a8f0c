// Text in, text out over gRPC on loopback, on the generated LlamaMTLA model
// with a SentencePiece tokenizer (make_spm_text_model.py, fixture
// spm_text_model): Generate with a text prompt encodes it as
// python3-sentencepiece does (BOS first) and streams text deltas that never
// split a UTF-8 character and add up to Detokenize of the token ids;
// Tokenize / Detokenize agree with the references and round-trip;
// GetModelInfo reports the tokenizer and the bos/eos conventions; a model
// without a tokenizer refuses `prompt` with INVALID_ARGUMENT.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/testing/forwarding_backend.h"
#include "engine/testing/unique_temp_path.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mtla/v1/models.grpc.pb.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/mtla_server.h"

namespace mtla {
namespace {

namespace fs = std::filesystem;

const std::string kModelDir = MTLA_SPM_TEXT_MODEL_DIR;

// Each step takes at least `delay`: the client reads every token's message
// before the next token exists, so the server has nothing to coalesce (it
// merges a stream's pending deltas into one message when the client lags).
class PacedBackend final : public ForwardingBackend {
 public:
  PacedBackend(std::unique_ptr<ModelBackend> inner, std::chrono::milliseconds delay)
      : ForwardingBackend(std::move(inner)), delay_(delay) {}
  absl::Status Forward(const StepPlan& plan, std::vector<float>* logits) override {
    std::this_thread::sleep_for(delay_);
    return ForwardingBackend::Forward(plan, logits);
  }

 private:
  const std::chrono::milliseconds delay_;
};

std::chrono::system_clock::time_point In(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
}

class TextGenerationTextTest : public testing::Test {
 protected:
  void SetUp() override {
    std::ifstream in(kModelDir + "/references.json");
    if (!in) GTEST_SKIP() << "no test model at " << kModelDir << " (fixture spm_text_model skipped?)";
    references_ = nlohmann::json::parse(in);
  }
  void TearDown() override {
    if (server_) server_->Drain();
    std::error_code ignored;
    if (!scratch_.empty()) fs::remove_all(scratch_, ignored);
  }

  // step_delay > 0: every decoder step takes at least that long (PacedBackend).
  void Start(const std::string& model_dir,
             std::chrono::milliseconds step_delay = std::chrono::milliseconds(0)) {
    ServerOptions options;
    if (step_delay.count() > 0) {
      options.wrap_backend = [step_delay](std::unique_ptr<ModelBackend> inner) {
        return std::make_unique<PacedBackend>(std::move(inner), step_delay);
      };
    }
    options.model_dir = model_dir;
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "";
    options.device = "cpu";
    options.kv_cache_bytes = 8u << 20;
    auto server = MtlaServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    const absl::Status loaded = server_->LoadModel();
    ASSERT_TRUE(loaded.ok()) << loaded;
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    text_ = v1::TextGeneration::NewStub(channel_);
  }

  // The generated model's weights and config, without its tokenizer.
  std::string ModelWithoutTokenizer() {
    scratch_ = UniqueTempPath("mtla_text_no_tokenizer");
    fs::create_directories(scratch_);
    for (const char* name : {"config.json", "model.safetensors"}) {
      fs::create_symlink(fs::path(kModelDir) / name, scratch_ / name);
    }
    return scratch_.string();
  }

  grpc::Status Tokenize(const std::string& text, bool add_bos, bool pieces,
                        v1::TokenizeResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    v1::TokenizeRequest request;
    request.set_text(text);
    request.set_add_bos(add_bos);
    request.set_return_pieces(pieces);
    return text_->Tokenize(&context, request, response);
  }

  grpc::Status Detokenize(const std::vector<int32_t>& ids, std::string* text) {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    v1::DetokenizeRequest request;
    for (int32_t id : ids) request.add_token_ids(id);
    v1::DetokenizeResponse response;
    grpc::Status status = text_->Detokenize(&context, request, &response);
    *text = response.text();
    return status;
  }

  // All messages of one Generate call.
  grpc::Status Generate(const v1::GenerateRequest& request, std::vector<v1::GenerateResponse>* out) {
    grpc::ClientContext context;
    context.set_deadline(In(60));
    auto reader = text_->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) out->push_back(response);
    return reader->Finish();
  }

  nlohmann::json references_;
  std::unique_ptr<MtlaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TextGeneration::Stub> text_;
  fs::path scratch_;
};

TEST_F(TextGenerationTextTest, GetModelInfoReportsTheTokenizerAndConventions) {
  Start(kModelDir);
  auto models = v1::Models::NewStub(channel_);
  grpc::ClientContext context;
  context.set_deadline(In(10));
  v1::ModelInfo info;
  ASSERT_TRUE(models->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.architecture(), "llama-mtla");
  EXPECT_TRUE(info.has_tokenizer());
  ASSERT_TRUE(info.has_bos_token_id() && info.has_eos_token_id());
  EXPECT_EQ(info.bos_token_id(), references_["bos_id"].get<int>());
  EXPECT_EQ(info.eos_token_id(), references_["eos_id"].get<int>());
  EXPECT_TRUE(info.add_bos_token());
  EXPECT_EQ(std::vector<int32_t>(info.default_stop_token_ids().begin(),
                                 info.default_stop_token_ids().end()),
            std::vector<int32_t>{references_["eos_id"].get<int32_t>()});
  EXPECT_EQ(info.tokenizer_vocab_size(), references_["vocab_size"].get<int>());
  EXPECT_EQ(info.chat_template(), "");
}

TEST_F(TextGenerationTextTest, TokenizeEncodesAsSentencePiece) {
  Start(kModelDir);
  for (const auto& e : references_["encode"]) {
    const std::string text = e["text"];
    v1::TokenizeResponse response;
    ASSERT_TRUE(Tokenize(text, false, true, &response).ok()) << text;
    EXPECT_EQ(std::vector<int32_t>(response.token_ids().begin(), response.token_ids().end()),
              e["ids"].get<std::vector<int32_t>>()) << text;
    EXPECT_EQ(std::vector<std::string>(response.pieces().begin(), response.pieces().end()),
              e["pieces"].get<std::vector<std::string>>()) << text;
    v1::TokenizeResponse with_bos;
    ASSERT_TRUE(Tokenize(text, true, false, &with_bos).ok());
    ASSERT_EQ(with_bos.token_ids_size(), response.token_ids_size() + 1);
    EXPECT_EQ(with_bos.token_ids(0), references_["bos_id"].get<int>());
    EXPECT_EQ(with_bos.pieces_size(), 0);
  }
}

TEST_F(TextGenerationTextTest, DetokenizeDecodesAsSentencePieceAndRoundTrips) {
  Start(kModelDir);
  for (const auto& d : references_["decode"]) {
    std::string text;
    ASSERT_TRUE(Detokenize(d["ids"].get<std::vector<int32_t>>(), &text).ok());
    EXPECT_EQ(text, d["text"].get<std::string>());
  }
  for (const char* original : {"Der Zug fährt um neun Uhr ab, schöne Grüße!", "漢字 𝄞 ✓ 🙂 ñ",
                               "le café est très bon", ""}) {
    v1::TokenizeResponse ids;
    ASSERT_TRUE(Tokenize(original, false, false, &ids).ok());
    std::string text;
    ASSERT_TRUE(Detokenize({ids.token_ids().begin(), ids.token_ids().end()}, &text).ok());
    EXPECT_EQ(text, original);
  }
  std::string text;
  grpc::Status status = Detokenize({5, references_["vocab_size"].get<int32_t>()}, &text);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("token_ids[1]"), std::string::npos) << status.error_message();
}

// The scripted model writes a text whose rare characters are several byte
// tokens each, one token per message: no delta ends inside a character, and
// the deltas add up to Detokenize of the ids.
TEST_F(TextGenerationTextTest, GenerateWithAPromptStreamsUtf8SafeTextDeltas) {
  // Paced (20 ms a step) so that the count of messages below does not depend
  // on how fast this client reads on a loaded machine.
  Start(kModelDir, std::chrono::milliseconds(20));
  const auto& scripted = references_["scripted"];
  const std::vector<int32_t> expected_ids = scripted["generated_ids"];
  v1::GenerateRequest request;
  request.set_prompt(scripted["prompt"].get<std::string>());
  request.set_max_new_tokens(static_cast<int>(expected_ids.size()) + 5);
  std::vector<v1::GenerateResponse> responses;
  grpc::Status status = Generate(request, &responses);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_FALSE(responses.empty());

  std::vector<int32_t> ids;
  std::string text;
  int held_back = 0;  // messages with tokens but no text: a character still incomplete
  for (const v1::GenerateResponse& r : responses) {
    ids.insert(ids.end(), r.token_ids().begin(), r.token_ids().end());
    EXPECT_EQ(CompleteUtf8Prefix(r.text()), r.text().size()) << "a delta ends inside a character";
    EXPECT_EQ(r.text().find("\xEF\xBF\xBD"), std::string::npos) << "U+FFFD in a delta";
    if (r.token_ids_size() > 0 && r.text().empty()) ++held_back;
    text += r.text();
  }
  EXPECT_EQ(ids, expected_ids);
  EXPECT_EQ(responses.back().finish_reason(), v1::FINISH_REASON_EOS);
  // BOS + the prompt's SentencePiece ids.
  EXPECT_EQ(responses.back().usage().prompt_tokens(),
            static_cast<int>(scripted["prompt_ids"].size()) + 1);
  EXPECT_EQ(text, scripted["generated_text"].get<std::string>());
  std::string detokenized;
  ASSERT_TRUE(Detokenize(ids, &detokenized).ok());
  EXPECT_EQ(text, detokenized);
  EXPECT_GT(held_back, 0) << "no multi-byte character spanned several messages";
  EXPECT_GT(responses.size(), 5u) << "tokens were not streamed one by one";
}

// The same prompt as ids (BOS + Tokenize) generates the same tokens and text.
TEST_F(TextGenerationTextTest, PromptIdsAlsoGetText) {
  Start(kModelDir);
  const auto& scripted = references_["scripted"];
  v1::TokenizeResponse prompt;
  ASSERT_TRUE(Tokenize(scripted["prompt"].get<std::string>(), true, false, &prompt).ok());
  v1::GenerateRequest request;
  *request.mutable_prompt_token_ids() = prompt.token_ids();
  request.set_max_new_tokens(40);
  std::vector<v1::GenerateResponse> responses;
  ASSERT_TRUE(Generate(request, &responses).ok());
  std::vector<int32_t> ids;
  std::string text;
  for (const v1::GenerateResponse& r : responses) {
    ids.insert(ids.end(), r.token_ids().begin(), r.token_ids().end());
    text += r.text();
  }
  EXPECT_EQ(ids, scripted["generated_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(text, scripted["generated_text"].get<std::string>());
}

TEST_F(TextGenerationTextTest, PromptAndPromptIdsTogetherAreInvalid) {
  Start(kModelDir);
  v1::GenerateRequest request;
  request.set_prompt("the train");
  request.add_prompt_token_ids(1);
  request.set_max_new_tokens(2);
  std::vector<v1::GenerateResponse> responses;
  grpc::Status status = Generate(request, &responses);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("prompt"), std::string::npos) << status.error_message();
}

TEST_F(TextGenerationTextTest, AModelWithoutATokenizerRefusesTextClearly) {
  Start(ModelWithoutTokenizer());
  v1::GenerateRequest request;
  request.set_prompt("the train leaves at nine");
  request.set_max_new_tokens(4);
  std::vector<v1::GenerateResponse> responses;
  grpc::Status status = Generate(request, &responses);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "prompt: this model has no tokenizer; send prompt_token_ids");

  v1::TokenizeResponse tokens;
  EXPECT_EQ(Tokenize("x", false, false, &tokens).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  std::string text;
  EXPECT_EQ(Detokenize({5}, &text).error_code(), grpc::StatusCode::UNIMPLEMENTED);

  // Ids still work, without text; GetModelInfo says why and keeps bos/eos.
  v1::GenerateRequest ids;
  ids.add_prompt_token_ids(1);
  ids.set_max_new_tokens(3);
  ids.set_ignore_eos(true);
  responses.clear();
  ASSERT_TRUE(Generate(ids, &responses).ok());
  for (const v1::GenerateResponse& r : responses) EXPECT_EQ(r.text(), "");
  auto models = v1::Models::NewStub(channel_);
  grpc::ClientContext context;
  v1::ModelInfo info;
  ASSERT_TRUE(models->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_FALSE(info.has_tokenizer());
  EXPECT_FALSE(info.add_bos_token());
  EXPECT_EQ(info.bos_token_id(), references_["bos_id"].get<int>());
  EXPECT_EQ(info.eos_token_id(), references_["eos_id"].get<int>());
}

}  // namespace
}  // namespace mtla
