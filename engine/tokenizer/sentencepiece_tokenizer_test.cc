// The SentencePiece plugin in a process that also runs gRPC's protobuf: it
// encodes and decodes exactly as python3-sentencepiece does on the generated
// test model (tests/text/make_spm_text_model.py, the spm_text_model fixture),
// its libraries stay out of the process's own namespace, the in-process
// protobuf keeps working next to it, and loading it without the isolation
// would abort (the reason it is isolated).
#include "engine/tokenizer/sentencepiece_tokenizer.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mtla/v1/text_generation.pb.h"
#include "nlohmann/json.hpp"

namespace mtla {
namespace {

const std::string kModelDir = MTLA_SPM_TEXT_MODEL_DIR;

struct Fixture {
  std::unique_ptr<SentencePieceTokenizer> tokenizer;
  nlohmann::json references;
};

// The generated model and its references; skips when the fixture made none.
const Fixture* Load() {
  static const Fixture* fixture = [] {
    auto* f = new Fixture();
    std::ifstream in(kModelDir + "/references.json");
    if (!in) return f;
    f->references = nlohmann::json::parse(in);
    auto tokenizer = SentencePieceTokenizer::Load(kModelDir + "/tokenizer.model");
    EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
    if (tokenizer.ok()) f->tokenizer = std::move(*tokenizer);
    return f;
  }();
  return fixture;
}

#define REQUIRE_MODEL(f)                                                                 \
  const Fixture* f = Load();                                                             \
  if (f->references.is_null()) GTEST_SKIP() << "no test model at " << kModelDir          \
                                            << " (fixture spm_text_model skipped?)";     \
  ASSERT_NE(f->tokenizer, nullptr)

TEST(SentencePieceTokenizerTest, EncodesAsPythonSentencePiece) {
  REQUIRE_MODEL(f);
  for (const auto& e : f->references["encode"]) {
    const std::string text = e["text"];
    absl::StatusOr<std::vector<int32_t>> ids = f->tokenizer->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, e["ids"].get<std::vector<int32_t>>()) << text;
    std::vector<std::string> pieces;
    for (int32_t id : *ids) {
      absl::StatusOr<SentencePieceTokenizer::Piece> piece = f->tokenizer->GetPiece(id);
      ASSERT_TRUE(piece.ok()) << piece.status();
      pieces.push_back(piece->text);
    }
    EXPECT_EQ(pieces, e["pieces"].get<std::vector<std::string>>()) << text;
  }
}

TEST(SentencePieceTokenizerTest, DecodesAsPythonSentencePiece) {
  REQUIRE_MODEL(f);
  for (const auto& d : f->references["decode"]) {
    const std::vector<int32_t> ids = d["ids"];
    absl::StatusOr<std::string> text = f->tokenizer->DecodeIds(ids);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, d["text"].get<std::string>());
    EXPECT_EQ(f->tokenizer->Decode(ids), *text);
  }
}

TEST(SentencePieceTokenizerTest, SpecialIdsAndPieceKinds) {
  REQUIRE_MODEL(f);
  const auto& r = f->references;
  EXPECT_EQ(f->tokenizer->vocab_size(), r["vocab_size"].get<int>());
  EXPECT_EQ(f->tokenizer->bos_id(), r["bos_id"].get<int>());
  EXPECT_EQ(f->tokenizer->eos_id(), r["eos_id"].get<int>());
  EXPECT_EQ(f->tokenizer->unk_id(), r["unk_id"].get<int>());
  EXPECT_EQ(f->tokenizer->pad_id(), r["pad_id"].get<int>());
  EXPECT_EQ(f->tokenizer->GetPiece(f->tokenizer->bos_id())->kind, MTLA_SPM_PIECE_CONTROL);
  EXPECT_EQ(f->tokenizer->GetPiece(f->tokenizer->unk_id())->kind, MTLA_SPM_PIECE_UNKNOWN);
  absl::StatusOr<SentencePieceTokenizer::Piece> byte = f->tokenizer->GetPiece(3);  // <0x00>
  ASSERT_TRUE(byte.ok());
  EXPECT_EQ(byte->text, "<0x00>");
  EXPECT_EQ(byte->kind, MTLA_SPM_PIECE_BYTE);
}

TEST(SentencePieceTokenizerTest, IdsOutsideTheVocabulary) {
  REQUIRE_MODEL(f);
  const int32_t vocab = f->tokenizer->vocab_size();
  absl::StatusOr<std::string> text = f->tokenizer->DecodeIds({5, vocab, 6});
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(text.status().message().find("at index 1"), std::string::npos) << text.status();
  EXPECT_EQ(f->tokenizer->GetPiece(-1).status().code(), absl::StatusCode::kInvalidArgument);
  // The incremental detokenizer's view drops them (a wider output layer).
  EXPECT_EQ(f->tokenizer->Decode({5, vocab, -3, 6}), *f->tokenizer->DecodeIds({5, 6}));
}

TEST(SentencePieceTokenizerTest, BadModelsAreClearErrors) {
  EXPECT_EQ(SentencePieceTokenizer::Load("/nonexistent/tokenizer.model").status().code(),
            absl::StatusCode::kNotFound);
  if (!LoadSentencePiecePlugin().ok()) GTEST_SKIP() << LoadSentencePiecePlugin().status();
  absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> bad =
      SentencePieceTokenizer::FromBytes("not a model", "bytes");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_NE(bad.status().message().find("bytes: "), std::string::npos) << bad.status();
}

// Deltas of byte-fallback characters fed one token at a time never end inside
// a character, and add up to the whole decode.
TEST(SentencePieceTokenizerTest, IncrementalDeltasNeverSplitACharacter) {
  REQUIRE_MODEL(f);
  int byte_texts = 0;
  for (const auto& e : f->references["encode"]) {
    const std::vector<int32_t> ids = e["ids"];
    bool has_bytes = false;
    for (int32_t id : ids) has_bytes |= f->tokenizer->GetPiece(id)->kind == MTLA_SPM_PIECE_BYTE;
    byte_texts += has_bytes;
    IncrementalDetokenizer detokenizer(f->tokenizer.get());
    std::string streamed;
    for (int32_t id : ids) {
      const std::string delta = detokenizer.Add({id});
      EXPECT_EQ(CompleteUtf8Prefix(delta), delta.size()) << e["text"];
      EXPECT_EQ(delta.find("\xEF\xBF\xBD"), std::string::npos) << "U+FFFD in a delta";
      streamed += delta;
    }
    streamed += detokenizer.Flush();
    EXPECT_EQ(streamed, *f->tokenizer->DecodeIds(ids));
    EXPECT_EQ(streamed, e["text"].get<std::string>().empty() ? "" : streamed);
  }
  EXPECT_GT(byte_texts, 0) << "the references have no byte-fallback text";
}

TEST(SentencePieceTokenizerTest, ManyThreadsShareOneTokenizer) {
  REQUIRE_MODEL(f);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < 25; ++round) {
        for (const auto& e : f->references["encode"]) {
          absl::StatusOr<std::vector<int32_t>> ids = f->tokenizer->Encode(e["text"].get<std::string>());
          if (!ids.ok() || *ids != e["ids"].get<std::vector<int32_t>>()) ++mismatches;
          if (f->tokenizer->Decode(*ids) != *f->tokenizer->DecodeIds(*ids)) ++mismatches;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// The isolation: gRPC's protobuf works before and after, the in-process
// decoder (which parses the model with that protobuf) agrees with the plugin
// on the same model file, and neither the plugin nor libsentencepiece is
// visible in the process's own namespace.
TEST(SentencePieceTokenizerTest, SharesTheProcessWithGrpcProtobuf) {
  v1::GenerateRequest before;
  before.set_prompt("protobuf before");
  before.add_prompt_token_ids(7);
  const std::string wire = before.SerializeAsString();

  const std::string speech_model = std::string(MTLA_DEFAULT_MODEL_DIR) + "/spm.model";
  absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> spm = SentencePieceTokenizer::Load(speech_model);
  if (absl::IsNotFound(spm.status()) && !LoadSentencePiecePlugin().ok()) {
    GTEST_SKIP() << LoadSentencePiecePlugin().status();
  }
  ASSERT_TRUE(spm.ok()) << spm.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> in_process = Tokenizer::Load(speech_model);
  ASSERT_TRUE(in_process.ok()) << in_process.status();
  absl::StatusOr<std::vector<int32_t>> ids = (*spm)->Encode("Die Züge fahren um neun Uhr ab.");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_FALSE(ids->empty());
  EXPECT_EQ((*in_process)->Decode(*ids), *(*spm)->DecodeIds(*ids));
  EXPECT_EQ(*(*spm)->DecodeIds(*ids), "Die Züge fahren um neun Uhr ab.");

  v1::GenerateRequest after;
  ASSERT_TRUE(after.ParseFromString(wire));
  EXPECT_EQ(after.prompt(), "protobuf before");
  EXPECT_EQ(after.DebugString(), before.DebugString());

  EXPECT_EQ(dlsym(RTLD_DEFAULT, MTLA_SPM_PLUGIN_ENTRY_SYMBOL), nullptr)
      << "the plugin's symbols leaked into the process's namespace";
  EXPECT_EQ(dlopen("libsentencepiece.so.0", RTLD_NOW | RTLD_NOLOAD), nullptr)
      << "libsentencepiece is loaded in the process's own namespace";
}

#ifdef MTLA_SENTENCEPIECE_PLUGIN_PATH
// Why the isolation exists: the same plugin loaded into the process's own
// namespace (plain dlopen, RTLD_LOCAL) fails protobuf's version check when it
// parses a model (a FATAL log, thrown and caught by the plugin's guard, which
// this test turns into an abort), since libsentencepiece's embedded protobuf
// binds to gRPC's libprotobuf.
TEST(SentencePieceTokenizerDeathTest, WithoutIsolationTheTwoProtobufsClash) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::ifstream in(std::string(MTLA_DEFAULT_MODEL_DIR) + "/spm.model", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(bytes.empty());
  v1::GenerateRequest request;  // gRPC's libprotobuf is in use in this process
  request.set_prompt("x");
  ASSERT_FALSE(request.SerializeAsString().empty());
  EXPECT_DEATH(
      {
        void* handle = dlopen(MTLA_SENTENCEPIECE_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
        if (handle == nullptr) std::abort();
        auto entry = reinterpret_cast<MtlaSpmPluginEntry>(dlsym(handle, MTLA_SPM_PLUGIN_ENTRY_SYMBOL));
        MtlaSpmProcessor* processor = nullptr;
        char reason[256];
        if (entry()->load(bytes.data(), bytes.size(), &processor, reason, sizeof(reason)) != 0) {
          std::fprintf(stderr, "%s\n", reason);  // protobuf's FATAL, caught by the plugin's guard
          std::abort();
        }
        std::exit(0);  // survived: the clash is gone, and so is the reason for the plugin
      },
      "Protocol Buffer|protobuf");
}
#endif

}  // namespace
}  // namespace mtla
