#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/sentencepiece_shim.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace mtla {
namespace {

// Trains a small SentencePiece model with fairseq's special ids and byte
// fallback, so that rare characters decode through partial UTF-8 bytes.
std::string TrainModel(const std::string& name, bool fairseq_ids) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path();
  const std::string corpus = (dir / (name + ".txt")).string();
  {
    std::ofstream out(corpus);
    for (int i = 0; i < 200; ++i) {
      out << "Die Züge nach München fahren um " << i << " Uhr ab.\n";
      out << "Wir treffen uns am Montag um halb neun im Büro.\n";
      out << "Das Gepäck wiegt " << i % 17 << " Kilogramm und kostet " << i << " Euro.\n";
    }
  }
  const std::string prefix = (dir / name).string();
  std::string args = "--input=" + corpus + " --model_prefix=" + prefix +
                     " --vocab_size=310 --hard_vocab_limit=false --model_type=unigram --byte_fallback=true"
                     " --character_coverage=0.98 --minloglevel=2";
  if (fairseq_ids) args += " --bos_id=0 --pad_id=1 --eos_id=2 --unk_id=3";
  std::string error;
  EXPECT_TRUE(spm::Train(args, &error)) << error;
  return prefix + ".model";
}

TEST(Utf8Test, CompletePrefix) {
  EXPECT_EQ(CompleteUtf8Prefix(""), 0u);
  EXPECT_EQ(CompleteUtf8Prefix("abc"), 3u);
  const std::string u = "\xC3\xBC";  // ü
  EXPECT_EQ(CompleteUtf8Prefix("a" + u), 3u);
  EXPECT_EQ(CompleteUtf8Prefix("a" + u.substr(0, 1)), 1u);
  const std::string euro = "\xE2\x82\xAC";  // €
  EXPECT_EQ(CompleteUtf8Prefix("x" + euro.substr(0, 2)), 1u);
  EXPECT_EQ(CompleteUtf8Prefix("x" + euro), 4u);
  const std::string emoji = "\xF0\x9F\x98\x80";
  EXPECT_EQ(CompleteUtf8Prefix(emoji.substr(0, 3)), 0u);
  EXPECT_EQ(CompleteUtf8Prefix(emoji), 4u);
}

TEST(TokenizerTest, RejectsNonFairseqSpecialIds) {
  auto tokenizer = Tokenizer::Load(TrainModel("mtla_tok_default_ids", false));
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(TokenizerTest, MissingModelIsNotFound) {
  EXPECT_EQ(Tokenizer::Load("/nonexistent/spm.model").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(TokenizerTest, RoundTripAndUtf8SafeDeltas) {
  auto tokenizer = Tokenizer::Load(TrainModel("mtla_tok_fairseq", true));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // Includes characters outside the training data: they go through byte pieces.
  const std::string text = "Die Züge fahren um 7 Uhr ab – ça coûte 5 € 😀.";
  auto ids = (*tokenizer)->Encode(text);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ((*tokenizer)->Decode(*ids), text);

  IncrementalDetokenizer detok(tokenizer->get());
  std::string joined;
  bool held_back = false;
  for (int32_t id : *ids) {
    const std::string delta = detok.Add({id});
    EXPECT_EQ(CompleteUtf8Prefix(delta), delta.size()) << "delta ends inside a character";
    if (!delta.empty()) {
      EXPECT_NE(static_cast<unsigned char>(delta[0]) & 0xC0, 0x80) << "delta starts mid-character";
    }
    if (delta.empty()) held_back = true;
    joined += delta;
  }
  joined += detok.Flush();
  EXPECT_EQ(joined, text);
  EXPECT_TRUE(held_back) << "byte-fallback pieces should have held text back at least once";
  // Special ids decode to nothing.
  EXPECT_EQ((*tokenizer)->Decode({0, 1, 2, 3}), "");
}

}  // namespace
}  // namespace mtla
