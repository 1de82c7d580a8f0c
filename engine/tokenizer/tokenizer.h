// Detokenization for SentencePiece models with fairseq's special ids (<s>=0,
// <pad>=1, </s>=2, <unk>=3), and an incremental detokenizer whose text deltas
// never split a UTF-8 character.
//
// The model file is read with the process's protobuf runtime and decoded here
// (the speech models' text). Debian's libsentencepiece embeds protobuf 3.14
// with exported symbols and cannot be linked into a process with the
// libprotobuf 3.21 that gRPC uses; where text must also be encoded (LlamaMTLA
// prompts), the real library runs in its plugin: sentencepiece_tokenizer.h.
// Tests check Decode against spm_decode on random id sequences.
//
// Thread-safety: Tokenizer is immutable after Load (safe to share);
// IncrementalDetokenizer is thread-compatible.
#ifndef MTLA_ENGINE_TOKENIZER_TOKENIZER_H_
#define MTLA_ENGINE_TOKENIZER_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mtla {

// Ids -> text, as the incremental detokenizer needs it. Implementations are
// immutable and thread-safe.
class TextDecoder {
 public:
  virtual ~TextDecoder() = default;
  // The text of `ids`; ids the decoder does not know are dropped.
  virtual std::string Decode(const std::vector<int32_t>& ids) const = 0;
};

class Tokenizer final : public TextDecoder {
 public:
  // Loads a SentencePiece model file. NotFound when unreadable;
  // InvalidArgument when it does not parse; FailedPrecondition when its
  // special ids are not fairseq's (train with --bos_id=0 --pad_id=1
  // --eos_id=2 --unk_id=3).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_path);

  // Text of `ids` as SentencePiece decodes it: control ids (<s>, <pad>, </s>)
  // are dropped, <unk> becomes the model's unk surface, byte pieces are joined
  // into UTF-8 (invalid bytes become U+FFFD), "▁" becomes a space and the
  // leading space of the dummy prefix is removed. Out-of-range ids are dropped.
  std::string Decode(const std::vector<int32_t>& ids) const override;
  int vocab_size() const { return static_cast<int>(pieces_.size()); }

 private:
  struct Piece {
    std::string text;   // with "▁" already turned into spaces
    int type = 1;       // mtla.spm.ModelPiece.Type
    int byte = -1;      // BYTE pieces: the byte value
  };
  Tokenizer() = default;
  std::vector<Piece> pieces_;
  std::string unk_surface_;
  bool add_dummy_prefix_ = true;
};

// Turns a growing token sequence into text deltas. Each delta ends on a UTF-8
// character boundary; bytes of a character still incomplete (which decode as
// U+FFFD) are held back until the tokens that complete it arrive, or Flush.
class IncrementalDetokenizer {
 public:
  // `decoder` must outlive this object.
  explicit IncrementalDetokenizer(const TextDecoder* decoder) : tokenizer_(decoder) {}
  // Appends tokens and returns the text they add.
  std::string Add(const std::vector<int32_t>& tokens);
  // The rest of the text, complete or not (end of the sequence).
  std::string Flush();
  const std::string& text() const { return emitted_; }

 private:
  const TextDecoder* tokenizer_;
  std::vector<int32_t> ids_;
  std::string emitted_;
};

// Length of the longest prefix of `text` that does not end inside a UTF-8
// character.
size_t CompleteUtf8Prefix(const std::string& text);

}  // namespace mtla

#endif  // MTLA_ENGINE_TOKENIZER_TOKENIZER_H_
