#include "engine/tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/sentencepiece_model.pb.h"

namespace mtla {
namespace {

constexpr char kSpaceSymbol[] = "\xE2\x96\x81";  // U+2581 "▁"
constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// Appends `bytes` as UTF-8, each byte that does not start a valid sequence
// becoming U+FFFD (as SentencePiece treats byte-fallback output).
void AppendUtf8(const std::string& bytes, std::string* out) {
  size_t i = 0;
  while (i < bytes.size()) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    int length = 0;
    uint32_t min = 0;
    if (c < 0x80) length = 1;
    else if ((c & 0xE0) == 0xC0) length = 2, min = 0x80;
    else if ((c & 0xF0) == 0xE0) length = 3, min = 0x800;
    else if ((c & 0xF8) == 0xF0) length = 4, min = 0x10000;
    bool valid = length > 0 && i + length <= bytes.size();
    uint32_t code = length == 1 ? c : (c & (0x7F >> length));
    for (int k = 1; valid && k < length; ++k) {
      const unsigned char cc = static_cast<unsigned char>(bytes[i + k]);
      if ((cc & 0xC0) != 0x80) valid = false;
      code = (code << 6) | (cc & 0x3F);
    }
    if (valid && length > 1 && (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))) {
      valid = false;
    }
    if (valid) {
      out->append(bytes, i, length);
      i += length;
    } else {
      out->append(kReplacement);
      ++i;
    }
  }
}

// The byte of a BYTE piece, spelled "<0xAB>"; -1 for any other spelling.
int ParseBytePiece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  int value = 0;
  for (char c : piece.substr(3, 2)) {
    int digit = -1;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_path) {
  std::ifstream file(model_path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat(model_path, ": cannot open SentencePiece model"));
  std::stringstream bytes;
  bytes << file.rdbuf();
  spm::Model model;
  if (!model.ParseFromString(bytes.str())) {
    return absl::InvalidArgumentError(absl::StrCat(model_path, ": not a SentencePiece model"));
  }
  const spm::TrainerSpec& t = model.trainer_spec();
  if (t.bos_id() != 0 || t.pad_id() != 1 || t.eos_id() != 2 || t.unk_id() != 3) {
    return absl::FailedPreconditionError(absl::StrCat(
        model_path, ": special ids are bos ", t.bos_id(), ", pad ", t.pad_id(), ", eos ",
        t.eos_id(), ", unk ", t.unk_id(), "; fairseq's are 0, 1, 2, 3"));
  }
  auto tokenizer = std::unique_ptr<Tokenizer>(new Tokenizer());
  tokenizer->unk_surface_ = t.unk_surface();
  tokenizer->add_dummy_prefix_ = model.normalizer_spec().add_dummy_prefix();
  for (const spm::ModelPiece& p : model.pieces()) {
    Piece piece;
    piece.type = p.type();
    piece.text = p.piece();
    if (p.type() == spm::ModelPiece::BYTE) {
      piece.byte = ParseBytePiece(p.piece());
      if (piece.byte < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            model_path, ": piece ", tokenizer->pieces_.size(), " is a BYTE piece spelled '",
            p.piece(), "', not <0xHH>"));
      }
    }
    tokenizer->pieces_.push_back(std::move(piece));
  }
  return tokenizer;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string text;
  std::string pending_bytes;
  bool at_start = true;  // the dummy prefix's space is still to be removed
  auto flush_bytes = [&] {
    if (pending_bytes.empty()) return;
    AppendUtf8(pending_bytes, &text);
    pending_bytes.clear();
    at_start = false;
  };
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(pieces_.size())) continue;
    const Piece& p = pieces_[id];
    if (p.type == spm::ModelPiece::BYTE) {
      pending_bytes.push_back(static_cast<char>(p.byte));
      continue;
    }
    flush_bytes();
    if (p.type == spm::ModelPiece::CONTROL) continue;
    if (p.type == spm::ModelPiece::UNKNOWN) {
      text += unk_surface_;
      at_start = false;
      continue;
    }
    absl::string_view piece = p.text;
    if (at_start && add_dummy_prefix_ && piece.substr(0, 3) == kSpaceSymbol) piece.remove_prefix(3);
    text += absl::StrReplaceAll(piece, {{kSpaceSymbol, " "}});
    at_start = false;
  }
  flush_bytes();
  return text;
}

size_t CompleteUtf8Prefix(const std::string& text) {
  // Walk back over at most 3 continuation bytes to the last lead byte.
  const size_t n = text.size();
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
  // Byte pieces that do not (yet) form a character decode as U+FFFD; hold
  // trailing ones back until the following pieces decide them.
  while (stable >= 3 && text.compare(stable - 3, 3, kReplacement) == 0) stable -= 3;
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
