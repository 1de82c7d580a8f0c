#include "engine/tokenizer/tokenizer.h"

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/sentencepiece_shim.h"

namespace mtla {

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_path) {
  auto tokenizer = std::unique_ptr<Tokenizer>(new Tokenizer());
  std::string error;
  tokenizer->model_ = spm::Model::Load(model_path, &error);
  if (tokenizer->model_ == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(model_path, ": cannot load SentencePiece model: ", error));
  }
  const spm::Model& p = *tokenizer->model_;
  if (p.bos_id() != 0 || p.pad_id() != 1 || p.eos_id() != 2 || p.unk_id() != 3) {
    return absl::FailedPreconditionError(absl::StrCat(
        model_path, ": special ids are bos ", p.bos_id(), ", pad ", p.pad_id(), ", eos ",
        p.eos_id(), ", unk ", p.unk_id(), "; fairseq's are 0, 1, 2, 3"));
  }
  return tokenizer;
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(const std::string& text) const {
  std::vector<int> ids;
  std::string error;
  if (!model_->Encode(text, &ids, &error)) return absl::InvalidArgumentError(error);
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::vector<int> kept;
  for (int32_t id : ids) {
    if (id > 3 && id < model_->size()) kept.push_back(id);
  }
  return model_->Decode(kept);
}

int Tokenizer::vocab_size() const { return model_->size(); }

size_t CompleteUtf8Prefix(const std::string& text) {
  // Walk back over at most 3 continuation bytes to the last lead byte.
  size_t n = text.size();
  size_t i = n;
  int continuation = 0;
  while (i > 0 && continuation < 4) {
    const unsigned char c = static_cast<unsigned char>(text[i - 1]);
    if ((c & 0xC0) != 0x80) break;  // not a continuation byte
    --i;
    ++continuation;
  }
  if (i == 0) return continuation > 0 ? 0 : n;
  const unsigned char lead = static_cast<unsigned char>(text[i - 1]);
  int length = 1;
  if ((lead & 0x80) == 0) length = 1;
  else if ((lead & 0xE0) == 0xC0) length = 2;
  else if ((lead & 0xF0) == 0xE0) length = 3;
  else if ((lead & 0xF8) == 0xF0) length = 4;
  else return n;  // invalid lead byte: nothing to wait for
  return continuation + 1 >= length ? n : i - 1;
}

std::string IncrementalDetokenizer::Add(const std::vector<int32_t>& tokens) {
  ids_.insert(ids_.end(), tokens.begin(), tokens.end());
  const std::string text = tokenizer_->Decode(ids_);
  size_t stable = CompleteUtf8Prefix(text);
  // SentencePiece renders byte pieces that do not (yet) form a character as
  // U+FFFD; hold trailing ones back until the following pieces decide them.
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";
  while (stable >= 3 && text.compare(stable - 3, 3, kReplacement) == 0) stable -= 3;
  // Decoding a longer sequence only appends to the text of a shorter one, except
  // where SentencePiece drops a leading space; guard against shrinking.
  if (stable <= emitted_.size() || text.compare(0, emitted_.size(), emitted_) != 0) return "";
  std::string delta = text.substr(emitted_.size(), stable - emitted_.size());
  emitted_ += delta;
  return delta;
}

std::string IncrementalDetokenizer::Flush() {
  const std::string text = tokenizer_->Decode(ids_);
  if (text.size() <= emitted_.size() || text.compare(0, emitted_.size(), emitted_) != 0) return "";
  std::string delta = text.substr(emitted_.size());
  emitted_ += delta;
  return delta;
}

}  // namespace mtla
