// The C entry point of the SentencePiece plugin, libmtla_sentencepiece.so:
// the real SentencePiece library (Debian libsentencepiece0) behind a C ABI,
// loaded at run time by sentencepiece_tokenizer.cc and never unloaded.
//
// Why a plugin: Debian's libsentencepiece embeds its own protobuf-lite (3.14)
// and exports those symbols; linked into a process that also has gRPC's
// libprotobuf (3.21), one of the two copies' calls land in the other (a
// crash at start-up, or protobuf's version check aborting). The plugin is
// loaded so that its dependencies resolve their symbols among themselves
// first (see sentencepiece_tokenizer.cc for how, and the test that checks
// it); nothing of SentencePiece or its protobuf is visible to the host.
//
// Contract: only C types cross the boundary. Results are handed to
// caller-supplied sinks during the call (the plugin owns nothing the caller
// must free but the processor). Functions never throw. A processor is
// immutable after `load`: every function but `destroy` may be called on it
// from several threads at once. Status codes are absl::StatusCode values
// (0: OK); on error, `reason` gets a NUL-terminated message truncated to
// `reason_size`.
#ifndef MTLA_ENGINE_TOKENIZER_SENTENCEPIECE_PLUGIN_ABI_H_
#define MTLA_ENGINE_TOKENIZER_SENTENCEPIECE_PLUGIN_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MTLA_SPM_PLUGIN_ABI_VERSION 1u
#define MTLA_SPM_PLUGIN_ENTRY_SYMBOL "mtla_sentencepiece_plugin_v1"

typedef struct MtlaSpmProcessor MtlaSpmProcessor;  // opaque, owned by the plugin

// Piece kinds (SentencePiece's ModelProto.SentencePiece.Type).
enum {
  MTLA_SPM_PIECE_NORMAL = 1,
  MTLA_SPM_PIECE_UNKNOWN = 2,
  MTLA_SPM_PIECE_CONTROL = 3,
  MTLA_SPM_PIECE_USER_DEFINED = 4,
  MTLA_SPM_PIECE_UNUSED = 5,
  MTLA_SPM_PIECE_BYTE = 6,
};

// The model's vocabulary size and special ids (-1: the model has none).
typedef struct MtlaSpmModelInfo {
  int32_t vocab_size;
  int32_t bos_id;
  int32_t eos_id;
  int32_t unk_id;
  int32_t pad_id;
} MtlaSpmModelInfo;

// Receives `n` ids (encode) or `n` bytes of UTF-8 (decode, piece).
typedef void (*MtlaSpmIdSink)(void* context, const int32_t* ids, size_t n);
typedef void (*MtlaSpmTextSink)(void* context, const char* bytes, size_t n);

typedef struct MtlaSpmPluginV1 {
  uint32_t abi_version;  // MTLA_SPM_PLUGIN_ABI_VERSION
  uint32_t struct_size;  // sizeof(MtlaSpmPluginV1)
  const char* library;   // what does the work, e.g. "libsentencepiece.so.0"
  // Parses a serialized SentencePiece model (the bytes of a .model file).
  // 0 and a new processor in `*processor`; INVALID_ARGUMENT (3) when the
  // bytes are not a model.
  int (*load)(const char* bytes, size_t size, MtlaSpmProcessor** processor, char* reason,
              size_t reason_size);
  void (*destroy)(MtlaSpmProcessor* processor);
  void (*info)(const MtlaSpmProcessor* processor, MtlaSpmModelInfo* info);
  // SentencePiece's Encode of `size` bytes of `text` into ids (no BOS/EOS
  // added), handed to `sink` once. INVALID_ARGUMENT for text SentencePiece
  // refuses.
  int (*encode)(const MtlaSpmProcessor* processor, const char* text, size_t size,
                MtlaSpmIdSink sink, void* context, char* reason, size_t reason_size);
  // SentencePiece's Decode of `n` ids (each in [0, vocab_size)), handed to
  // `sink` once. OUT_OF_RANGE (11) for an id outside the vocabulary.
  int (*decode)(const MtlaSpmProcessor* processor, const int32_t* ids, size_t n,
                MtlaSpmTextSink sink, void* context, char* reason, size_t reason_size);
  // The piece of `id` (its spelling, e.g. "\xE2\x96\x81the" or "<0x0A>") to
  // `sink`, and its kind (MTLA_SPM_PIECE_*). OUT_OF_RANGE outside the vocabulary.
  int (*piece)(const MtlaSpmProcessor* processor, int32_t id, MtlaSpmTextSink sink,
               void* context, int32_t* kind);
} MtlaSpmPluginV1;

typedef const MtlaSpmPluginV1* (*MtlaSpmPluginEntry)(void);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // MTLA_ENGINE_TOKENIZER_SENTENCEPIECE_PLUGIN_ABI_H_
