// Text <-> token ids with the real SentencePiece library, which runs inside
// the plugin libmtla_sentencepiece.so (sentencepiece_plugin_abi.h says why).
//
// The plugin is looked for, in order, at $MTLA_SENTENCEPIECE_PLUGIN (a file,
// the only candidate when set), next to the executable, in ../lib/mtla/
// beside it, and where this build tree puts it; it is loaded once per process
// and never unloaded.
//
// Thread-safety: a SentencePieceTokenizer is immutable after Load (every
// method is safe to call from several threads at once);
// LoadSentencePiecePlugin is thread-safe.
#ifndef MTLA_ENGINE_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
#define MTLA_ENGINE_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/tokenizer/sentencepiece_plugin_abi.h"
#include "engine/tokenizer/tokenizer.h"

namespace mtla {

inline constexpr char kSentencePiecePluginFile[] = "libmtla_sentencepiece.so";

// The candidate paths of the plugin, in search order.
std::vector<std::string> SentencePiecePluginSearchPath();

// The loaded plugin. NotFound when no candidate exists; FailedPrecondition
// when one exists but cannot be loaded (libsentencepiece0 missing: the
// dlopen error says so) or speaks another ABI.
absl::StatusOr<const MtlaSpmPluginV1*> LoadSentencePiecePlugin();

class SentencePieceTokenizer final : public TextDecoder {
 public:
  struct Piece {
    std::string text;  // SentencePiece's spelling ("\xE2\x96\x81" for a space)
    int32_t kind = MTLA_SPM_PIECE_NORMAL;
  };

  // Loads the model file at `path` (NotFound when unreadable) or the bytes of
  // one (`name` is used in messages); InvalidArgument when SentencePiece
  // cannot parse it; the plugin's errors as LoadSentencePiecePlugin.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(const std::string& path);
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> FromBytes(absl::string_view bytes,
                                                                           absl::string_view name);
  ~SentencePieceTokenizer() override;
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  // SentencePiece's encoding of `text` (UTF-8), without BOS/EOS.
  // InvalidArgument when SentencePiece refuses the text.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const;

  // SentencePiece's decoding of `ids`. InvalidArgument naming the index of
  // the first id outside [0, vocab_size()).
  absl::StatusOr<std::string> DecodeIds(absl::Span<const int32_t> ids) const;

  // TextDecoder (the incremental detokenizer): as DecodeIds, with ids outside
  // the vocabulary dropped (a model's output layer may be wider than its
  // tokenizer's vocabulary).
  std::string Decode(const std::vector<int32_t>& ids) const override;

  // The piece of `id`; InvalidArgument outside the vocabulary.
  absl::StatusOr<Piece> GetPiece(int32_t id) const;

  int32_t vocab_size() const { return info_.vocab_size; }
  int32_t bos_id() const { return info_.bos_id; }  // -1: none
  int32_t eos_id() const { return info_.eos_id; }  // -1: none
  int32_t unk_id() const { return info_.unk_id; }
  int32_t pad_id() const { return info_.pad_id; }  // -1: none

 private:
  SentencePieceTokenizer(const MtlaSpmPluginV1* plugin, MtlaSpmProcessor* processor);

  const MtlaSpmPluginV1* plugin_;   // lives as long as the process
  MtlaSpmProcessor* processor_;     // owned; destroyed through plugin_
  MtlaSpmModelInfo info_{};
};

}  // namespace mtla

#endif  // MTLA_ENGINE_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
