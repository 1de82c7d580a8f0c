// The speech encoder and projector of the paper's ST model on the CPU
// (fairseq S2TTransformerEncoder and MTLADecoderOnly.projector), fp32. Every
// linear layer and convolution runs on weights pre-packed for oneDNN at load
// (LinearWeights::Apply; OpenBLAS only without oneDNN), the attention scores
// through BLAS, softmax and GLU vectorized (kernels/cpu/cpu_ops). All matrices are row-major with one row per frame.
//
// Thread-safety: the classes are immutable after loading; Encode()/Project()
// may run concurrently (they allocate their own scratch).
#ifndef MTLA_ENGINE_SPEECH_SPEECH_ENCODER_H_
#define MTLA_ENGINE_SPEECH_SPEECH_ENCODER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/mtla_attention.h"
#include "engine/speech/speech_config.h"
#include "engine/weights/safetensors.h"

namespace mtla {

// ---- Building blocks (exposed for tests) ----------------------------------

// fairseq SinusoidalPositionalEmbedding.get_embedding: rows [num_positions, dim];
// with half = dim / 2 and f_j = exp(-j * ln(10000) / (half - 1)), row p is
// [sin(p f_0) .. sin(p f_{half-1}), cos(p f_0) .. cos(p f_{half-1})] (a zero
// column appended when dim is odd) and row `padding_idx` is all zeros.
// Computed in float32 as torch does. Requires dim >= 4.
std::vector<float> SinusoidalPositionTable(int64_t num_positions, int dim, int padding_idx);

// Output frames of one Conv1d with stride 2 and padding kernel / 2.
int64_t Conv1dStride2OutputFrames(int64_t input_frames, int kernel);

// One Conv1d layer (stride 2, padding kernel / 2) followed by a GLU over the
// channels: out = a * sigmoid(b) with [a | b] the conv's two channel halves.
// in [frames, in_channels] -> out [Conv1dStride2OutputFrames(frames), out_channels / 2].
struct Conv1dGluLayer {
  int in_channels = 0;
  int out_channels = 0;  // before the GLU
  int kernel = 0;
  // The convolution as a linear layer [out_channels, kernel * in_channels]
  // over windows of `kernel` consecutive input rows (weights reordered from
  // torch's [out, in, k] to [out, k, in]), pre-packed for oneDNN like every
  // other linear layer.
  LinearWeights linear;

  // `weight_oik` is torch's Conv1d weight [out, in, k].
  static Conv1dGluLayer FromTorch(int in_channels, int out_channels, int kernel,
                                  const std::vector<float>& weight_oik, std::vector<float> bias);
  std::vector<float> Forward(const float* in, int64_t frames) const;
};

// ---- Encoder --------------------------------------------------------------

struct SpeechEncoderLayerWeights {
  NormWeights self_attn_layer_norm;
  // q_proj, k_proj and v_proj stacked into one layer [3E, E] (rows q, then k,
  // then v; biases likewise), so the three projections are one GEMM.
  LinearWeights qkv_proj;
  LinearWeights out_proj;  // with bias
  NormWeights final_layer_norm;
  LinearWeights fc1, fc2;  // with bias
};

class SpeechEncoder {
 public:
  // Loads fairseq's state-dict names: encoder.subsample.conv_layers.{i},
  // encoder.transformer_layers.{i}.{self_attn.{q,k,v,out}_proj,
  // self_attn_layer_norm, fc1, fc2, final_layer_norm}, encoder.layer_norm.
  static absl::StatusOr<SpeechEncoder> Load(const SpeechEncoderConfig& config,
                                            const SafetensorsFile& file);

  const SpeechEncoderConfig& config() const { return config_; }

  // features [frames, input_dim] (fbank after CMVN) -> encoder output
  // [config().OutputFrames(frames), embed_dim]. InvalidArgument when frames
  // is not positive or exceeds max_source_positions, or yields no output frame.
  absl::StatusOr<std::vector<float>> Encode(const float* features, int64_t frames) const;

  // Several utterances at once, as a ragged batch without padding: the
  // row-wise layers (LayerNorm, the projections, the feed-forward network)
  // run as one GEMM over the rows of all of them, self-attention within each
  // utterance, and the subsampler per utterance. Result i is Encode(inputs[i])
  // up to the GEMMs' summation order; an invalid input gets Encode's error
  // and does not affect the others.
  struct Input {
    const float* features = nullptr;  // [frames, input_dim]
    int64_t frames = 0;
  };
  std::vector<absl::StatusOr<std::vector<float>>> EncodeBatch(
      const std::vector<Input>& inputs) const;

  // Layer's activations, reused from layer to layer and batch to batch: they
  // only grow (to the largest batch seen), so a layer neither zero-fills
  // nor page-faults fresh memory (25 MB a layer for a batch of 12 segments
  // of 4.5 s).
  struct LayerScratch {
    std::vector<float> normed, qkv, context, hidden;
  };

  // EncodeBatch in stages, for a caller that interleaves them with other
  // work on the same cores: each RunStage() runs the subsampler of every
  // input, then one Transformer layer per call, then the final LayerNorm, and
  // returns whether stages remain; TakeResults() then gives EncodeBatch's
  // result. The inputs' features must stay valid until the last stage.
  class BatchRun {
   public:
    // `scratch` (may be null: the run keeps its own) must outlive the run
    // and serve one run at a time.
    BatchRun(const SpeechEncoder* encoder, std::vector<Input> inputs,
             LayerScratch* scratch = nullptr);
    bool RunStage();
    std::vector<absl::StatusOr<std::vector<float>>> TakeResults();

   private:
    const SpeechEncoder* encoder_;
    std::vector<Input> inputs_;
    std::vector<absl::StatusOr<std::vector<float>>> out_;
    std::vector<size_t> valid_;     // indices of the inputs that passed CheckInput
    std::vector<int64_t> lengths_;  // their encoder frames
    std::vector<float> x_;          // [sum(lengths_), E]
    LayerScratch own_scratch_;      // used when the caller gave none
    LayerScratch* scratch_;
    int next_stage_ = 0;            // 0: subsampler, 1..L: layers, L + 1: final norm
  };

  // Stages of Encode, for tests: the subsampler output scaled and with
  // positions added [T', E] ...
  std::vector<float> Embed(const float* features, int64_t frames) const;
  // ... and one Transformer layer in place on x [frames, E] ...
  void Layer(int layer, float* x, int64_t frames) const;
  // ... or on the rows of several utterances stacked in x [sum(lengths), E]
  // (attention within each utterance).
  void Layer(int layer, float* x, const std::vector<int64_t>& lengths,
             LayerScratch* scratch) const;
  // Encode's input check: InvalidArgument naming the frame count.
  absl::Status CheckInput(int64_t frames) const;

 private:
  SpeechEncoderConfig config_;
  std::vector<Conv1dGluLayer> conv_;
  std::vector<SpeechEncoderLayerWeights> layers_;
  NormWeights final_norm_;
};

// fairseq EncoderProjectorConcat: drops the last frames % k frames, joins each
// k consecutive frames into one row [k * encoder_dim], then
// linear2(relu(linear1(row))) -> [rows, decoder_dim].
class SpeechProjector {
 public:
  // Loads decoder.projector.linear1 / linear2 (with bias).
  static absl::StatusOr<SpeechProjector> Load(const SpeechModelConfig& config,
                                              const SafetensorsFile& file);
  int ds_rate() const { return ds_rate_; }
  int encoder_dim() const { return encoder_dim_; }
  int output_dim() const { return linear2_.out; }
  // Rows the projector makes of `frames` encoder frames.
  int64_t OutputRows(int64_t frames) const { return frames / ds_rate_; }
  // encoder_out [frames, encoder_dim] -> prefix [OutputRows(frames), output_dim].
  std::vector<float> Forward(const float* encoder_out, int64_t frames) const;

 private:
  int ds_rate_ = 1;
  int encoder_dim_ = 0;
  LinearWeights linear1_, linear2_;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_SPEECH_SPEECH_ENCODER_H_
