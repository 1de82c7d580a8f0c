// What the text services need besides the engine: the LlamaMTLA model's
// tokenizer (text <-> ids through the SentencePiece plugin) and its
// conventions. Set once the model is loaded, before the engine is published,
// so a service that sees the engine also sees this; empty while loading and
// for speech models.
//
// Thread-safety: TextFrontEndHolder is thread-safe; a TextFrontEnd is
// immutable once set (its tokenizer is thread-safe).
#ifndef MTLA_SERVER_TEXT_FRONT_END_H_
#define MTLA_SERVER_TEXT_FRONT_END_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "engine/tokenizer/sentencepiece_tokenizer.h"

namespace mtla {

struct TextFrontEnd {
  std::shared_ptr<const SentencePieceTokenizer> tokenizer;  // null: token ids only
  int32_t bos_token_id = -1;  // -1: none
  int32_t eos_token_id = -1;
  bool add_bos_token = false;  // a text prompt starts with bos_token_id
  std::string chat_template;   // "" when the model has none
};

class TextFrontEndHolder {
 public:
  void Set(std::shared_ptr<const TextFrontEnd> front_end) {
    absl::MutexLock lock(&mu_);
    front_end_ = std::move(front_end);
  }
  // Null while loading.
  std::shared_ptr<const TextFrontEnd> Get() const {
    absl::MutexLock lock(&mu_);
    return front_end_;
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const TextFrontEnd> front_end_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mtla

#endif  // MTLA_SERVER_TEXT_FRONT_END_H_
