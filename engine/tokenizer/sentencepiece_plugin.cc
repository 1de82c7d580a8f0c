// libmtla_sentencepiece.so: SentencePiece behind the C ABI of
// sentencepiece_plugin_abi.h. Only `mtla_sentencepiece_plugin_v1` is
// exported. This file must not include abseil or protobuf headers: it is
// compiled against SentencePiece's own view of them.
#include <cstring>
#include <string>
#include <vector>

#include "engine/tokenizer/sentencepiece_plugin_abi.h"
#include "sentencepiece_processor.h"

struct MtlaSpmProcessor {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

constexpr int kInvalidArgument = 3;
constexpr int kOutOfRange = 11;
constexpr int kInternal = 13;

void SetReason(const std::string& message, char* reason, size_t reason_size) {
  if (reason == nullptr || reason_size == 0) return;
  const size_t n = message.size() < reason_size - 1 ? message.size() : reason_size - 1;
  std::memcpy(reason, message.data(), n);
  reason[n] = '\0';
}

int Code(const sentencepiece::util::Status& status) {
  const int code = static_cast<int>(status.code());
  return code == 0 ? kInternal : code;  // an error never reads as OK
}

int Load(const char* bytes, size_t size, MtlaSpmProcessor** processor, char* reason,
         size_t reason_size) noexcept {
  try {
    auto* loaded = new MtlaSpmProcessor();
    const sentencepiece::util::Status status =
        loaded->processor.LoadFromSerializedProto(std::string_view(bytes, size));
    if (!status.ok()) {
      delete loaded;
      SetReason(std::string("not a SentencePiece model: ") + status.ToString(), reason,
                reason_size);
      return kInvalidArgument;
    }
    *processor = loaded;
    return 0;
  } catch (const std::exception& e) {
    SetReason(e.what(), reason, reason_size);
    return kInternal;
  }
}

void Destroy(MtlaSpmProcessor* processor) noexcept { delete processor; }

void Info(const MtlaSpmProcessor* processor, MtlaSpmModelInfo* info) noexcept {
  const sentencepiece::SentencePieceProcessor& p = processor->processor;
  info->vocab_size = p.GetPieceSize();
  info->bos_id = p.bos_id();
  info->eos_id = p.eos_id();
  info->unk_id = p.unk_id();
  info->pad_id = p.pad_id();
}

int Encode(const MtlaSpmProcessor* processor, const char* text, size_t size, MtlaSpmIdSink sink,
           void* context, char* reason, size_t reason_size) noexcept {
  try {
    std::vector<int> ids;
    const sentencepiece::util::Status status =
        processor->processor.Encode(std::string_view(text, size), &ids);
    if (!status.ok()) {
      SetReason(status.ToString(), reason, reason_size);
      return Code(status);
    }
    static_assert(sizeof(int) == sizeof(int32_t));
    sink(context, reinterpret_cast<const int32_t*>(ids.data()), ids.size());
    return 0;
  } catch (const std::exception& e) {
    SetReason(e.what(), reason, reason_size);
    return kInternal;
  }
}

int Decode(const MtlaSpmProcessor* processor, const int32_t* ids, size_t n, MtlaSpmTextSink sink,
           void* context, char* reason, size_t reason_size) noexcept {
  try {
    const int vocab = processor->processor.GetPieceSize();
    std::vector<int> values(ids, ids + n);
    for (size_t i = 0; i < n; ++i) {
      if (values[i] < 0 || values[i] >= vocab) {
        SetReason("id " + std::to_string(values[i]) + " at " + std::to_string(i) +
                      " is outside the vocabulary [0, " + std::to_string(vocab) + ")",
                  reason, reason_size);
        return kOutOfRange;
      }
    }
    std::string text;
    const sentencepiece::util::Status status = processor->processor.Decode(values, &text);
    if (!status.ok()) {
      SetReason(status.ToString(), reason, reason_size);
      return Code(status);
    }
    sink(context, text.data(), text.size());
    return 0;
  } catch (const std::exception& e) {
    SetReason(e.what(), reason, reason_size);
    return kInternal;
  }
}

int Piece(const MtlaSpmProcessor* processor, int32_t id, MtlaSpmTextSink sink, void* context,
          int32_t* kind) noexcept {
  const sentencepiece::SentencePieceProcessor& p = processor->processor;
  if (id < 0 || id >= p.GetPieceSize()) return kOutOfRange;
  const std::string& piece = p.IdToPiece(id);
  sink(context, piece.data(), piece.size());
  if (p.IsUnknown(id)) *kind = MTLA_SPM_PIECE_UNKNOWN;
  else if (p.IsControl(id)) *kind = MTLA_SPM_PIECE_CONTROL;
  else if (p.IsUnused(id)) *kind = MTLA_SPM_PIECE_UNUSED;
  else if (p.IsByte(id)) *kind = MTLA_SPM_PIECE_BYTE;
  else *kind = MTLA_SPM_PIECE_NORMAL;
  return 0;
}

const MtlaSpmPluginV1 kPlugin = {
    MTLA_SPM_PLUGIN_ABI_VERSION,
    sizeof(MtlaSpmPluginV1),
    "libsentencepiece.so.0",
    &Load,
    &Destroy,
    &Info,
    &Encode,
    &Decode,
    &Piece,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const MtlaSpmPluginV1*
mtla_sentencepiece_plugin_v1(void) {
  return &kPlugin;
}
