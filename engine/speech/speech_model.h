// The paper's speech-translation model (DESIGN.md section 2, family 2) on the
// CPU backend: speech encoder + projector (engine/speech) in front of the MTLA
// decoder, which is a CpuModelBackend built from FairseqMtlaDecoderSpec.
//
// Decoding an utterance (see speech_decoding.h for fairseq's greedy rules):
//   features --Encode--> encoder_out --Project--> prefix
//   runner.cache().AddSequence(id); runner.FillPrefix(id, prefix, rows);
//   runner.Step({id, {eos}}) ... one token per step.
#ifndef MTLA_ENGINE_SPEECH_SPEECH_MODEL_H_
#define MTLA_ENGINE_SPEECH_SPEECH_MODEL_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/decoder_spec.h"
#include "engine/model/cache_options.h"
#include "engine/model/model_backend.h"
#include "engine/speech/speech_config.h"
#include "engine/speech/speech_encoder.h"
#include "engine/weights/safetensors.h"

namespace mtla {

// The decoder description of a speech model: FairseqMtlaDecoderSpec with the
// config's dimensions, embed scale, token ids and output tying;
// max_context_tokens = MaxPrefixRows() + max_target_positions.
DecoderSpec SpeechDecoderSpec(const SpeechModelConfig& config);

// Thread-safety: Encode() and Project() are const and may run concurrently;
// `decoder` is engine-thread only (see ModelBackend). Move-only.
struct SpeechModel {
  SpeechModelConfig config;
  std::optional<SpeechEncoder> encoder;  // absent for decoder-only checkpoints
  SpeechProjector projector;
  std::unique_ptr<ModelBackend> decoder;  // hand it to a ModelRunner

  // features [frames, input_dim] -> encoder output [T', encoder_dim].
  // FailedPrecondition for a decoder-only checkpoint.
  absl::StatusOr<std::vector<float>> Encode(const float* features, int64_t frames) const;
  // encoder output [frames, encoder_dim] -> prefix [PrefixRows(frames),
  // decoder_embed_dim]. InvalidArgument when that is no row or more than
  // config.MaxPrefixRows().
  absl::StatusOr<std::vector<float>> Project(const float* encoder_out, int64_t frames) const;
  // Rows of a prefix returned by Project().
  int64_t PrefixRows(int64_t encoder_frames) const {
    return projector.OutputRows(encoder_frames);
  }
};

// Loads a speech checkpoint directory: config.json (either format of
// speech_config.h) and model.safetensors (encoder.* and decoder.*) or, for a
// decoder-only checkpoint, decoder.safetensors. options.max_context_tokens
// > 0 overrides the decoder's context limit. Errors name the file and tensor.
absl::StatusOr<SpeechModel> LoadSpeechModelCpu(const std::string& dir, const CacheOptions& options);

// The same without the decoder (`decoder` stays null): config, encoder and
// projector, for a caller that builds the decoder on a backend of its choice
// from `*weights`, the opened weights file.
absl::StatusOr<SpeechModel> LoadSpeechModelWithoutDecoder(
    const std::string& dir, std::unique_ptr<SafetensorsFile>* weights);

}  // namespace mtla

#endif  // MTLA_ENGINE_SPEECH_SPEECH_MODEL_H_
