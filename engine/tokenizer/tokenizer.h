// SentencePiece tokenizer with fairseq's special ids (<s>=0, <pad>=1, </s>=2,
// <unk>=3), and an incremental detokenizer whose text deltas never split a
// UTF-8 character.
//
// Thread-safety: Tokenizer is immutable after Load (safe to share);
// IncrementalDetokenizer is thread-compatible.
#ifndef MTLA_ENGINE_TOKENIZER_TOKENIZER_H_
#define MTLA_ENGINE_TOKENIZER_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mtla::spm {
class Model;
}

namespace mtla {

class Tokenizer {
 public:
  // Loads a SentencePiece model. FailedPrecondition when its special ids are
  // not fairseq's (the model must be trained with bos 0, pad 1, eos 2, unk 3).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_path);
  ~Tokenizer();

  absl::StatusOr<std::vector<int32_t>> Encode(const std::string& text) const;
  // Special ids are skipped.
  std::string Decode(const std::vector<int32_t>& ids) const;
  int vocab_size() const;

 private:
  Tokenizer();
  std::unique_ptr<spm::Model> model_;
};

// Turns a growing token sequence into text deltas. Each delta ends on a UTF-8
// character boundary; bytes of a character still incomplete (which
// SentencePiece shows as U+FFFD) are held back until the tokens that complete
// it arrive, or until Flush.
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}
  // Appends tokens and returns the text they add.
  std::string Add(const std::vector<int32_t>& tokens);
  // The rest of the text, complete or not (end of the sequence).
  std::string Flush();
  const std::string& text() const { return emitted_; }

 private:
  const Tokenizer* tokenizer_;
  std::vector<int32_t> ids_;
  std::string emitted_;
};

// Length of the longest prefix of `text` that does not end inside a UTF-8
// character.
size_t CompleteUtf8Prefix(const std::string& text);

}  // namespace mtla

#endif  // MTLA_ENGINE_TOKENIZER_TOKENIZER_H_
