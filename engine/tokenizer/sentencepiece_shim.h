// A thin wrapper that keeps SentencePiece's headers out of every other
// translation unit: Debian's sentencepiece_processor.h declares its own
// absl::string_view, which clashes with Abseil's. Only plain C++ types cross
// this boundary.
#ifndef MTLA_ENGINE_TOKENIZER_SENTENCEPIECE_SHIM_H_
#define MTLA_ENGINE_TOKENIZER_SENTENCEPIECE_SHIM_H_

#include <memory>
#include <string>
#include <vector>

namespace mtla::spm {

class Model {
 public:
  // Null on failure, with the reason in *error.
  static std::unique_ptr<Model> Load(const std::string& path, std::string* error);
  ~Model();
  bool Encode(const std::string& text, std::vector<int>* ids, std::string* error) const;
  std::string Decode(const std::vector<int>& ids) const;
  int bos_id() const;
  int pad_id() const;
  int eos_id() const;
  int unk_id() const;
  int size() const;

 private:
  Model();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Trains a model with SentencePieceTrainer's command-line style arguments
// (tests and tools). False with the reason in *error on failure.
bool Train(const std::string& args, std::string* error);

}  // namespace mtla::spm

#endif  // MTLA_ENGINE_TOKENIZER_SENTENCEPIECE_SHIM_H_
