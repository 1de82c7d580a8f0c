// Fuzzes both speech-translation config.json formats (engine/speech): the
// fairseq architecture arguments and the decoder-only reference format. An
// accepted config must be valid and its derived lengths (encoder frames,
// prefix rows for the longest input) computable without overflow.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/speech/speech_config.h"

namespace {

void Check(const absl::StatusOr<mtla::SpeechModelConfig>& config) {
  if (!config.ok()) return;
  if (!config->Validate().ok()) __builtin_trap();  // parsers return only valid configs
  volatile int64_t sink = config->MaxPrefixRows() + config->PrefixRows(0) +
                          config->PrefixRows(config->max_source_positions - 1) +
                          config->attention.qk_head_dim() + config->attention.slot_width();
  if (config->has_encoder) sink = sink + config->encoder.OutputFrames(config->encoder.max_source_positions);
  (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Check(mtla::ParseFairseqSpeechConfig(text));
  Check(mtla::ParseStDecoderConfig(text));
  return 0;
}
