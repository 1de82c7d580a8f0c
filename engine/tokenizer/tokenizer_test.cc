#include "engine/tokenizer/tokenizer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/testing/unique_temp_path.h"
#include "engine/tokenizer/sentencepiece_model.pb.h"
#include "gtest/gtest.h"

namespace mtla {
namespace {

namespace fs = std::filesystem;

// This process's scratch directory: ctest runs the cases as parallel processes,
// which must not train or read each other's models.
const fs::path& ScratchDir() {
  static const fs::path dir = [] {
    fs::path d = UniqueTempPath("mtla_tokenizer_test");
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

bool HaveSpmTools() {
  return fs::exists("/usr/bin/spm_train") && fs::exists("/usr/bin/spm_decode") &&
         fs::exists("/usr/bin/spm_encode");
}

std::string RunCommand(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  pclose(pipe);
  return out;
}

// Trains a small model with Debian's spm_train: byte fallback on, so that rare
// characters decode through byte pieces.
std::string TrainModel(const std::string& name, bool fairseq_ids) {
  const fs::path& dir = ScratchDir();
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
  std::string command = "spm_train --input=" + corpus + " --model_prefix=" + prefix +
                        " --vocab_size=310 --hard_vocab_limit=false --model_type=unigram"
                        " --byte_fallback=true --character_coverage=0.98 --minloglevel=2";
  if (fairseq_ids) command += " --bos_id=0 --pad_id=1 --eos_id=2 --unk_id=3";
  RunCommand(command + " > /dev/null 2>&1");
  return prefix + ".model";
}

class TokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveSpmTools()) {
      GTEST_SKIP() << "Debian's sentencepiece tools (spm_train, spm_decode) not installed";
    }
  }
};

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

TEST_F(TokenizerTest, RejectsNonFairseqSpecialIdsAndBadFiles) {
  EXPECT_EQ(Tokenizer::Load(TrainModel("default_ids", false)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Tokenizer::Load("/nonexistent/spm.model").status().code(),
            absl::StatusCode::kNotFound);
  const std::string garbage = (ScratchDir() / "garbage.model").string();
  std::ofstream(garbage) << "\xff\xff\xff not a model";
  EXPECT_EQ(Tokenizer::Load(garbage).status().code(), absl::StatusCode::kInvalidArgument);
}

// Found by fuzz_tokenizer: a BYTE piece not spelled <0xHH> (here "<0") threw
// std::out_of_range out of Load.
TEST(TokenizerLoadTest, RejectsMalformedBytePieces) {
  for (const std::string spelling : {"<0", "", "<0xZZ>", "<0x4142>", "<0x41]"}) {
    spm::Model model;
    model.mutable_trainer_spec()->set_bos_id(0);
    model.mutable_trainer_spec()->set_pad_id(1);
    model.mutable_trainer_spec()->set_eos_id(2);
    model.mutable_trainer_spec()->set_unk_id(3);
    for (const char* control : {"<s>", "<pad>", "</s>"}) {
      spm::ModelPiece* p = model.add_pieces();
      p->set_piece(control);
      p->set_type(spm::ModelPiece::CONTROL);
    }
    spm::ModelPiece* unk = model.add_pieces();
    unk->set_piece("<unk>");
    unk->set_type(spm::ModelPiece::UNKNOWN);
    spm::ModelPiece* byte = model.add_pieces();
    byte->set_piece(spelling);
    byte->set_type(spm::ModelPiece::BYTE);
    const std::string path = (ScratchDir() / "bad_byte_piece.model").string();
    std::ofstream(path, std::ios::binary) << model.SerializeAsString();
    absl::StatusOr<std::unique_ptr<Tokenizer>> loaded = Tokenizer::Load(path);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << spelling;
    // The well-formed spelling loads and decodes to its byte.
    byte->set_piece("<0x41>");
    std::ofstream(path, std::ios::binary | std::ios::trunc) << model.SerializeAsString();
    loaded = Tokenizer::Load(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ((*loaded)->Decode({4}), "A");
  }
}

// Decode equals spm_decode on encoded sentences and on random id sequences
// (control, unknown, byte and normal pieces mixed).
TEST_F(TokenizerTest, DecodeMatchesSpmDecode) {
  const std::string model_path = TrainModel("fairseq", true);
  auto tokenizer = Tokenizer::Load(model_path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const int vocab = (*tokenizer)->vocab_size();

  std::vector<std::vector<int32_t>> cases;
  const std::vector<std::string> texts = {"Die Züge fahren um 7 Uhr ab.",
                                          "ça coûte 5 € 😀 – naïve façade", "Leerzeichen am Ende "};
  const std::string text_file = (ScratchDir() / "texts.txt").string();
  {
    std::ofstream out(text_file);
    for (const auto& t : texts) out << t << "\n";
  }
  for (absl::string_view line : absl::StrSplit(
           RunCommand("spm_encode --model=" + model_path + " --output_format=id < " + text_file),
           '\n', absl::SkipEmpty())) {
    std::vector<int32_t> ids;
    for (absl::string_view id : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      ids.push_back(std::stoi(std::string(id)));
    }
    cases.push_back(ids);
  }
  ASSERT_EQ(cases.size(), texts.size());
  std::mt19937 rng(7);
  while (cases.size() < texts.size() + 200) {
    std::vector<int32_t> ids(1 + rng() % 12);
    for (int32_t& id : ids) id = static_cast<int32_t>(rng() % vocab);
    // spm_decode prints one line per sequence: skip those that decode to a line break.
    const std::string text = (*tokenizer)->Decode(ids);
    if (text.find_first_of("\r\n") != std::string::npos) continue;
    cases.push_back(ids);
  }
  const std::string id_file = (ScratchDir() / "ids.txt").string();
  {
    std::ofstream out(id_file);
    for (const auto& ids : cases) out << absl::StrJoin(ids, " ") << "\n";
  }
  const std::vector<std::string> want = absl::StrSplit(
      RunCommand("spm_decode --model=" + model_path + " --input_format=id < " + id_file), '\n');
  ASSERT_GE(want.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ((*tokenizer)->Decode(cases[i]), want[i]) << "ids: " << absl::StrJoin(cases[i], " ");
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    // SentencePiece drops the trailing space while normalizing.
    EXPECT_EQ((*tokenizer)->Decode(cases[i]), texts[i].substr(0, texts[i].find_last_not_of(' ') + 1))
        << "round trip of text " << i;
  }
}

TEST_F(TokenizerTest, IncrementalDeltasNeverSplitCharacters) {
  auto tokenizer = Tokenizer::Load(TrainModel("fairseq", true));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::string model_path = (ScratchDir() / "fairseq.model").string();
  const std::string text = "Die Züge fahren um 7 Uhr ab – ça coûte 5 € 😀.";
  const std::string text_file = (ScratchDir() / "one.txt").string();
  std::ofstream(text_file) << text << "\n";
  std::vector<int32_t> ids;
  for (absl::string_view id : absl::StrSplit(
           RunCommand("spm_encode --model=" + model_path + " --output_format=id < " + text_file), ' ',
           absl::SkipEmpty())) {
    ids.push_back(std::stoi(std::string(id)));
  }
  ASSERT_FALSE(ids.empty());
  IncrementalDetokenizer detok(tokenizer->get());
  std::string joined;
  bool held_back = false;
  for (int32_t id : ids) {
    const std::string delta = detok.Add({id});
    EXPECT_EQ(CompleteUtf8Prefix(delta), delta.size()) << "delta ends inside a character";
    if (!delta.empty()) {
      EXPECT_NE(static_cast<unsigned char>(delta[0]) & 0xC0, 0x80) << "delta starts mid-character";
      EXPECT_EQ(delta.find("\xEF\xBF\xBD"), std::string::npos) << "a replacement char leaked";
    }
    if (delta.empty()) held_back = true;
    joined += delta;
  }
  joined += detok.Flush();
  EXPECT_EQ(joined, text);
  EXPECT_TRUE(held_back) << "byte-fallback pieces should have held text back at least once";
  EXPECT_EQ((*tokenizer)->Decode({0, 1, 2}), "");
}

}  // namespace
}  // namespace mtla
