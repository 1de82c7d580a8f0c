#include "engine/tokenizer/sentencepiece_tokenizer.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/common/plugin_search_path.h"
#include "absl/strings/str_join.h"

namespace mtla {
namespace {

// How the plugin's libraries are kept apart from the host's libprotobuf: the
// plugin is loaded into a link-map namespace of its own (dlmopen
// LM_ID_NEWLM). libsentencepiece, the plugin and their own copies of
// libstdc++ and libc resolve every symbol, GNU-unique ones included, inside
// that namespace, so the protobuf-lite embedded in libsentencepiece never
// meets gRPC's libprotobuf; only the C ABI crosses. Measured alternatives:
// plain dlopen(RTLD_LOCAL) aborts in protobuf's version check (the embedded
// copy's calls bind to the process's libprotobuf 3.21 first); RTLD_DEEPBIND
// works but the sanitizer runtimes refuse it, and one mechanism for every
// build keeps the sanitizer runs testing what ships. The second libc is
// marked multi-threaded by glibc (secondary namespaces never take the
// single-thread shortcuts) and allocates with mmap; memory never crosses the
// boundary (results go through the sinks, processors are freed by the
// plugin).
void* OpenIsolated(const std::string& path) {
  return dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
}

absl::StatusOr<const MtlaSpmPluginV1*> Load() {
  const std::vector<std::string> candidates = SentencePiecePluginSearchPath();
  std::string path;
  for (const std::string& candidate : candidates) {
    std::error_code error;
    if (std::filesystem::is_regular_file(candidate, error)) {
      path = candidate;
      break;
    }
  }
  if (path.empty()) {
    return absl::NotFoundError(absl::StrCat("this installation has no SentencePiece plugin (",
                                            kSentencePiecePluginFile, " not found in ",
                                            absl::StrJoin(candidates, ", "), ")"));
  }
  // Kept for the life of the process: processors may live until exit.
  void* handle = OpenIsolated(path);
  if (handle == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load the SentencePiece plugin ", path, ": ", dlerror()));
  }
  auto entry = reinterpret_cast<MtlaSpmPluginEntry>(dlsym(handle, MTLA_SPM_PLUGIN_ENTRY_SYMBOL));
  const MtlaSpmPluginV1* plugin = entry != nullptr ? entry() : nullptr;
  if (plugin == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": not an MTLA SentencePiece plugin (no ", MTLA_SPM_PLUGIN_ENTRY_SYMBOL, ")"));
  }
  if (plugin->abi_version != MTLA_SPM_PLUGIN_ABI_VERSION ||
      plugin->struct_size < sizeof(MtlaSpmPluginV1)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": SentencePiece plugin ABI ", plugin->abi_version, ", this build ",
                     MTLA_SPM_PLUGIN_ABI_VERSION, "; install the plugin built with this binary"));
  }
  return plugin;
}

absl::StatusCode ToCode(int code) {
  return code > 0 && code <= 16 ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kInternal;
}

void AppendIds(void* context, const int32_t* ids, size_t n) {
  auto* out = static_cast<std::vector<int32_t>*>(context);
  out->insert(out->end(), ids, ids + n);
}

void AppendText(void* context, const char* bytes, size_t n) {
  static_cast<std::string*>(context)->append(bytes, n);
}

}  // namespace

#ifndef MTLA_SENTENCEPIECE_PLUGIN_BUILD_PATH
#define MTLA_SENTENCEPIECE_PLUGIN_BUILD_PATH ""  // not in a build tree
#endif

std::vector<std::string> SentencePiecePluginSearchPath() {
  return PluginSearchPath("MTLA_SENTENCEPIECE_PLUGIN", kSentencePiecePluginFile,
                          MTLA_SENTENCEPIECE_PLUGIN_BUILD_PATH);
}

absl::StatusOr<const MtlaSpmPluginV1*> LoadSentencePiecePlugin() {
  static const absl::StatusOr<const MtlaSpmPluginV1*>* const loaded =
      new absl::StatusOr<const MtlaSpmPluginV1*>(Load());
  return *loaded;
}

SentencePieceTokenizer::SentencePieceTokenizer(const MtlaSpmPluginV1* plugin,
                                               MtlaSpmProcessor* processor)
    : plugin_(plugin), processor_(processor) {
  plugin_->info(processor_, &info_);
}

SentencePieceTokenizer::~SentencePieceTokenizer() { plugin_->destroy(processor_); }

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Load(
    const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat(path, ": cannot open SentencePiece model"));
  std::ostringstream bytes;
  bytes << file.rdbuf();
  if (file.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return FromBytes(bytes.str(), path);
}

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::FromBytes(
    absl::string_view bytes, absl::string_view name) {
  absl::StatusOr<const MtlaSpmPluginV1*> plugin = LoadSentencePiecePlugin();
  if (!plugin.ok()) return plugin.status();
  MtlaSpmProcessor* processor = nullptr;
  char reason[512] = "";
  const int code = (*plugin)->load(bytes.data(), bytes.size(), &processor, reason, sizeof(reason));
  if (code != 0) return absl::Status(ToCode(code), absl::StrCat(name, ": ", reason));
  auto tokenizer =
      std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer(*plugin, processor));
  if (tokenizer->vocab_size() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": the SentencePiece model has no pieces"));
  }
  return tokenizer;
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(absl::string_view text) const {
  std::vector<int32_t> ids;
  char reason[512] = "";
  const int code =
      plugin_->encode(processor_, text.data(), text.size(), &AppendIds, &ids, reason, sizeof(reason));
  if (code != 0) return absl::InvalidArgumentError(absl::StrCat("cannot tokenize the text: ", reason));
  return ids;
}

absl::StatusOr<std::string> SentencePieceTokenizer::DecodeIds(absl::Span<const int32_t> ids) const {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= info_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at index ", i,
                                                     " is outside the vocabulary [0, ",
                                                     info_.vocab_size, ")"));
    }
  }
  std::string text;
  char reason[512] = "";
  const int code =
      plugin_->decode(processor_, ids.data(), ids.size(), &AppendText, &text, reason, sizeof(reason));
  if (code != 0) return absl::Status(ToCode(code), absl::StrCat("cannot detokenize: ", reason));
  return text;
}

std::string SentencePieceTokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::vector<int32_t> known;
  known.reserve(ids.size());
  for (int32_t id : ids) {
    if (id >= 0 && id < info_.vocab_size) known.push_back(id);
  }
  absl::StatusOr<std::string> text = DecodeIds(known);
  return text.ok() ? *std::move(text) : std::string();
}

absl::StatusOr<SentencePieceTokenizer::Piece> SentencePieceTokenizer::GetPiece(int32_t id) const {
  Piece piece;
  if (plugin_->piece(processor_, id, &AppendText, &piece.text, &piece.kind) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                                                   info_.vocab_size, ")"));
  }
  return piece;
}

}  // namespace mtla
