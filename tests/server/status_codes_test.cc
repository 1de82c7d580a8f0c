// Status codes that follow Google's error model (docs/api.md, "Status codes"),
// on in-process servers over loopback:
//
// - a method the loaded model does not serve is UNIMPLEMENTED (speech calls
//   on a text model), not UNAVAILABLE, which clients retry;
// - UNAVAILABLE only where retrying helps: every method while the model loads;
// - beam search over Generate: at most max_new_tokens tokens, EOS as its
//   finish reason when the search ended on EOS by itself, LENGTH when the
//   limit ended it.
//
// Models: the shared LlamaMTLA reference checkpoint (text) and the bundled
// default speech model. Every RPC has a deadline.
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mtla/v1/models.grpc.pb.h"
#include "mtla/v1/speech_translation.grpc.pb.h"
#include "mtla/v1/text_generation.grpc.pb.h"
#include "server/mtla_server.h"
#include "tests/common/loopback_server.h"
#include "tests/common/grpc_wait.h"

namespace mtla {
namespace {

using ::testing::HasSubstr;
using test_support::In;

const std::string kTextModelDir =
    std::string(MTLA_TESTDATA_DIR) + "/model_reference/llama_mtla_s2";
const std::string kSpeechModelDir = MTLA_DEFAULT_MODEL_DIR;
constexpr int32_t kTextEos = 2;   // llama_mtla_s2's eos_token_id
constexpr int kTextVocab = 97;

std::string Describe(const grpc::Status& status) {
  return absl::StrCat("code ", status.error_code(), ": ", status.error_message());
}


v1::TranslationConfig SpeechConfig() {
  v1::TranslationConfig config;
  config.set_encoding(v1::LINEAR_PCM16);
  config.set_sample_rate_hz(16000);
  return config;
}

// A StreamingTranslate call sending config and 0.1 s of silence: its status.
grpc::Status StreamingStatus(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::SpeechTranslation::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(10));
  auto stream = stub->StreamingTranslate(&context);
  v1::StreamingTranslateRequest request;
  *request.mutable_config() = SpeechConfig();
  if (stream->Write(request)) {
    request.set_audio(std::string(3200, '\0'));
    if (stream->Write(request)) stream->WritesDone();
  }
  v1::StreamingTranslateResponse response;
  while (stream->Read(&response)) {
  }
  return stream->Finish();
}

grpc::Status TranslateStatus(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::SpeechTranslation::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(10));
  v1::TranslateRequest request;
  *request.mutable_config() = SpeechConfig();
  request.set_audio(std::string(3200, '\0'));
  v1::TranslateResponse response;
  return stub->Translate(&context, request, &response);
}

struct GenerateOutcome {
  grpc::Status status;
  std::vector<int32_t> tokens;
  v1::GenerateResponse last;
};

GenerateOutcome Generate(const std::shared_ptr<grpc::Channel>& channel,
                         const v1::GenerateRequest& request) {
  auto stub = v1::TextGeneration::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(30));
  auto reader = stub->Generate(&context, request);
  GenerateOutcome out;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    out.tokens.insert(out.tokens.end(), response.token_ids().begin(), response.token_ids().end());
    out.last = response;
  }
  out.status = reader->Finish();
  return out;
}

class StatusCodesTest : public testing::Test {
 protected:
  void TearDown() override {
    if (server_) server_->Drain();
  }
  std::unique_ptr<MtlaServer> server_;
};

TEST_F(StatusCodesTest, SpeechCallsOnATextModelAreUnimplemented) {
  if (!std::filesystem::exists(kTextModelDir + "/model.safetensors")) {
    GTEST_SKIP() << "shared testdata text model not found at " << kTextModelDir;
  }
  server_ = test_support::StartLoopbackServer(kTextModelDir);
  ASSERT_NE(server_, nullptr);
  ASSERT_TRUE(server_->LoadModel().ok());
  auto channel = test_support::ConnectLoopback(*server_);
  for (const auto& [method, status] :
       {std::pair{"StreamingTranslate", StreamingStatus(channel)},
        std::pair{"Translate", TranslateStatus(channel)}}) {
    SCOPED_TRACE(method);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << Describe(status);
    EXPECT_THAT(status.error_message(), HasSubstr("text model"));
  }
  // What the model does serve works, and lists no language pair.
  v1::ModelInfo info;
  ASSERT_TRUE(test_support::FetchModelInfo(channel, &info).ok());
  EXPECT_EQ(info.language_pairs_size(), 0);
  v1::GenerateRequest request;
  request.add_prompt_token_ids(5);
  request.set_max_new_tokens(2);
  EXPECT_TRUE(Generate(channel, request).status.ok());
}

TEST_F(StatusCodesTest, EveryMethodIsUnavailableWhileTheModelLoads) {
  server_ = test_support::StartLoopbackServer(kSpeechModelDir);
  ASSERT_NE(server_, nullptr);
  auto channel = test_support::ConnectLoopback(*server_);  // LoadModel not called: loading
  v1::GenerateRequest request;
  request.add_prompt_token_ids(5);
  request.set_max_new_tokens(2);
  v1::ModelInfo info;
  for (const auto& [method, status] :
       {std::pair{"StreamingTranslate", StreamingStatus(channel)},
        std::pair{"Translate", TranslateStatus(channel)},
        std::pair{"Generate", Generate(channel, request).status},
        std::pair{"GetModelInfo", test_support::FetchModelInfo(channel, &info)}}) {
    SCOPED_TRACE(method);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(status);
    EXPECT_THAT(status.error_message(), HasSubstr("loading"));
  }
  // Once loaded, the speech model serves the speech calls.
  ASSERT_TRUE(server_->LoadModel().ok());
  EXPECT_TRUE(StreamingStatus(channel).ok());
  EXPECT_TRUE(TranslateStatus(channel).ok());
}

// Beam search (fairseq's semantics, EOS forced as the max_new_tokens-th
// token) never returns more than max_new_tokens tokens; it reports EOS when a
// hypothesis ended on EOS by itself and LENGTH when the limit ended it. Random
// prompts on the random-weight reference model give both endings.
TEST_F(StatusCodesTest, BeamSearchReturnsAtMostMaxNewTokensWithItsFinishReason) {
  if (!std::filesystem::exists(kTextModelDir + "/model.safetensors")) {
    GTEST_SKIP() << "shared testdata text model not found at " << kTextModelDir;
  }
  server_ = test_support::StartLoopbackServer(kTextModelDir);
  ASSERT_NE(server_, nullptr);
  ASSERT_TRUE(server_->LoadModel().ok());
  auto channel = test_support::ConnectLoopback(*server_);
  std::mt19937 rng(17);
  std::uniform_int_distribution<int32_t> token(3, kTextVocab - 1);
  int eos_endings = 0;
  int length_endings = 0;
  for (int trial = 0; trial < 24; ++trial) {
    v1::GenerateRequest request;
    for (int i = 0; i < 6; ++i) request.add_prompt_token_ids(token(rng));
    const int max_new_tokens = 1 + trial % 12;
    request.set_max_new_tokens(max_new_tokens);
    request.set_beam_size(1 + trial % 4);
    SCOPED_TRACE(request.ShortDebugString());
    GenerateOutcome r = Generate(channel, request);
    ASSERT_TRUE(r.status.ok()) << Describe(r.status);
    SCOPED_TRACE(absl::StrCat("tokens ", absl::StrJoin(r.tokens, " ")));
    ASSERT_FALSE(r.tokens.empty());
    EXPECT_LE(static_cast<int>(r.tokens.size()), max_new_tokens);
    EXPECT_EQ(r.last.usage().generated_tokens(), static_cast<int>(r.tokens.size()));
    // Every hypothesis ends with EOS (chosen or forced), and only there.
    EXPECT_EQ(r.tokens.back(), kTextEos);
    for (size_t i = 0; i + 1 < r.tokens.size(); ++i) EXPECT_NE(r.tokens[i], kTextEos);
    if (r.last.finish_reason() == v1::FINISH_REASON_EOS) {
      ++eos_endings;
    } else {
      ASSERT_EQ(r.last.finish_reason(), v1::FINISH_REASON_LENGTH);
      ++length_endings;
      // The limit ended it: the forced EOS is the max_new_tokens-th token.
      EXPECT_EQ(static_cast<int>(r.tokens.size()), max_new_tokens);
    }
    // Shorter than the limit: only EOS can have ended it.
    if (static_cast<int>(r.tokens.size()) < max_new_tokens) {
      EXPECT_EQ(r.last.finish_reason(), v1::FINISH_REASON_EOS);
    }
  }
  EXPECT_GT(eos_endings, 0) << "no search ended on EOS by itself";
  EXPECT_GT(length_endings, 0) << "no search reached max_new_tokens";
}

}  // namespace
}  // namespace mtla
