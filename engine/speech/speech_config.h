// Typed configuration of the paper's speech-translation model (DESIGN.md
// section 2, family 2): fairseq's S2TTransformerModel with arch
// s2t_decoder_only_MTLA_cross_xm. Two config.json formats are read into the
// same struct:
//   - fairseq's architecture arguments (shared/testdata/fairseq_st_reference):
//     encoder and decoder; absent arguments take the arch's defaults.
//   - the decoder-only reference format (shared/testdata/st_reference): the
//     MTLA decoder and projector, no encoder.
// Options this engine does not implement are rejected, never ignored.
#ifndef MTLA_ENGINE_SPEECH_SPEECH_CONFIG_H_
#define MTLA_ENGINE_SPEECH_SPEECH_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/config/model_config.h"

namespace mtla {

// fairseq S2TTransformerEncoder: Conv1dSubsampler -> x * scale + sinusoidal
// positions -> Transformer encoder layers -> final LayerNorm (pre-LN only).
struct SpeechEncoderConfig {
  int input_dim = 80;                  // input_feat_per_channel * input_channels
  std::vector<int> conv_kernel_sizes;  // one Conv1d (stride 2, padding k/2) per entry
  int conv_channels = 0;               // output channels of every Conv1d but the last
  int embed_dim = 0;                   // E; the last Conv1d outputs 2E channels
  int ffn_dim = 0;
  int num_layers = 0;
  int num_heads = 0;
  bool normalize_before = true;  // pre-LN layers and a final LayerNorm
  float embed_scale = 1.0f;      // sqrt(E) unless no_scale_embedding
  int padding_idx = 1;           // sinusoidal positions start at padding_idx + 1
  int max_source_positions = 6000;  // input feature frames accepted
  float layer_norm_eps = 1e-5f;

  absl::Status Validate() const;
  // Encoder frames produced from `input_frames` feature frames (each Conv1d:
  // floor((T + 2 * (k / 2) - k) / 2) + 1; zero input gives zero output).
  int64_t OutputFrames(int64_t input_frames) const;
};

struct SpeechModelConfig {
  bool has_encoder = false;  // false: decoder-only checkpoint (input is encoder output)
  SpeechEncoderConfig encoder;
  int encoder_dim = 0;       // width of an encoder output frame (projector input per frame)
  int projector_ds_rate = 1; // projector concatenates this many frames (drops the remainder)

  // MTLA decoder (fairseq MTLADecoderOnly).
  MtlaAttentionConfig attention;
  int decoder_embed_dim = 0;
  int decoder_ffn_dim = 0;
  int decoder_layers = 0;
  int vocab_size = 0;
  float decoder_embed_scale = 1.0f;   // sqrt(E) unless no_scale_embedding
  bool tie_output_projection = false; // share_decoder_input_output_embed
  float layer_norm_eps = 1e-5f;       // every decoder LayerNorm (attention.layer_norm_eps too)
  int max_target_positions = 1024;    // decoder tokens; SequenceGenerator's max_len is one less
  int max_source_positions = 6000;    // input feature frames (bounds the prefix)

  int bos_id = 0;
  int pad_id = 1;
  int eos_id = 2;
  int unk_id = 3;
  bool utterance_cmvn = true;  // the front-end applies utterance CMVN (fairseq config "cmvn")
  // Optional "source_language" / "target_language" (e.g. "en", "de"); empty
  // when the config does not say, and then requests are not checked.
  std::string source_language;
  std::string target_language;

  absl::Status Validate() const;
  // Prefix rows (projector outputs) produced from `input_frames` feature
  // frames, or from `input_frames` encoder frames when !has_encoder.
  int64_t PrefixRows(int64_t input_frames) const;
  // The longest prefix the model serves: PrefixRows(max_source_positions).
  int64_t MaxPrefixRows() const { return PrefixRows(max_source_positions); }
};

// Parses fairseq architecture arguments (arch s2t_decoder_only_MTLA_cross_xm).
absl::StatusOr<SpeechModelConfig> ParseFairseqSpeechConfig(const std::string& json_text);
// Parses the decoder-only reference format (shared/testdata/st_reference).
absl::StatusOr<SpeechModelConfig> ParseStDecoderConfig(const std::string& json_text);
// Reads `path` and parses it with the parser its contents call for (an "arch"
// field means fairseq arguments). Errors name the file and the field.
absl::StatusOr<SpeechModelConfig> LoadSpeechModelConfig(const std::string& path);

}  // namespace mtla

#endif  // MTLA_ENGINE_SPEECH_SPEECH_CONFIG_H_
