#include "engine/speech/speech_encoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/weight_loading.h"
#include "kernels/cpu/cpu_ops.h"

namespace mtla {
std::vector<float> SinusoidalPositionTable(int64_t num_positions, int dim, int padding_idx) {
  const int half = dim / 2;
  std::vector<float> table(static_cast<size_t>(num_positions) * dim, 0.0f);
  // Float32 arithmetic in the order torch evaluates get_embedding():
  // freq_j = exp(j * -(ln(10000) / (half - 1))), angle = p * freq_j.
  const float step = static_cast<float>(-(std::log(10000.0) / (half - 1)));
  std::vector<float> freq(half);
  for (int j = 0; j < half; ++j) freq[j] = std::exp(static_cast<float>(j) * step);
  for (int64_t p = 0; p < num_positions; ++p) {
    if (p == padding_idx) continue;
    float* row = table.data() + p * dim;
    for (int j = 0; j < half; ++j) {
      const float angle = static_cast<float>(p) * freq[j];
      row[j] = std::sin(angle);
      row[half + j] = std::cos(angle);
    }
  }
  return table;
}

int64_t Conv1dStride2OutputFrames(int64_t input_frames, int kernel) {
  const int64_t padded = input_frames + 2 * (kernel / 2) - kernel;
  if (input_frames <= 0 || padded < 0) return 0;
  return padded / 2 + 1;
}

Conv1dGluLayer Conv1dGluLayer::FromTorch(int in_channels, int out_channels, int kernel,
                                         const std::vector<float>& weight_oik,
                                         std::vector<float> bias) {
  Conv1dGluLayer layer;
  layer.in_channels = in_channels;
  layer.out_channels = out_channels;
  layer.kernel = kernel;
  LinearWeights& linear = layer.linear;
  linear.in = kernel * in_channels;
  linear.out = out_channels;
  linear.bias = std::move(bias);
  linear.weight.resize(static_cast<size_t>(out_channels) * kernel * in_channels);
  for (int o = 0; o < out_channels; ++o) {
    for (int c = 0; c < in_channels; ++c) {
      for (int j = 0; j < kernel; ++j) {
        linear.weight[(static_cast<size_t>(o) * kernel + j) * in_channels + c] =
            weight_oik[(static_cast<size_t>(o) * in_channels + c) * kernel + j];
      }
    }
  }
  linear.packed = PackWeights(linear.weight.data(), linear.out, linear.in);
  return layer;
}

std::vector<float> Conv1dGluLayer::Forward(const float* in, int64_t frames) const {
  const int64_t out_frames = Conv1dStride2OutputFrames(frames, kernel);
  const int64_t pad = kernel / 2;
  const int64_t window = static_cast<int64_t>(kernel) * in_channels;
  // im2col: row t holds input rows 2t - pad .. 2t - pad + kernel - 1 (zeros
  // outside the input), so the convolution is one GEMM against [out, k * in].
  std::vector<float> cols(static_cast<size_t>(out_frames) * window, 0.0f);
  for (int64_t t = 0; t < out_frames; ++t) {
    const int64_t first = 2 * t - pad;
    const int64_t lo = std::max<int64_t>(first, 0);
    const int64_t hi = std::min<int64_t>(first + kernel, frames);
    if (hi > lo) {
      std::memcpy(cols.data() + t * window + (lo - first) * in_channels, in + lo * in_channels,
                  sizeof(float) * (hi - lo) * in_channels);
    }
  }
  std::vector<float> conv(static_cast<size_t>(out_frames) * out_channels);
  linear.Apply(cols.data(), out_frames, conv.data());
  std::vector<float> out(static_cast<size_t>(out_frames) * (out_channels / 2));
  cpu::GluRows(conv.data(), out_frames, out_channels / 2, out.data());
  return out;
}

absl::StatusOr<SpeechEncoder> SpeechEncoder::Load(const SpeechEncoderConfig& config,
                                                  const SafetensorsFile& file) {
  RETURN_IF_ERROR(config.Validate());
  SpeechEncoder enc;
  enc.config_ = config;
  const int e = config.embed_dim;
  const int n_conv = static_cast<int>(config.conv_kernel_sizes.size());
  int in = config.input_dim;
  for (int i = 0; i < n_conv; ++i) {
    const int k = config.conv_kernel_sizes[i];
    const int out = i + 1 < n_conv ? config.conv_channels : 2 * e;
    const std::string name = absl::StrCat("encoder.subsample.conv_layers.", i);
    ASSIGN_OR_RETURN(std::vector<float> w, file.ReadFloat(name + ".weight", {out, in, k}));
    ASSIGN_OR_RETURN(std::vector<float> b, file.ReadFloat(name + ".bias", {out}));
    enc.conv_.push_back(Conv1dGluLayer::FromTorch(in, out, k, w, std::move(b)));
    in = out / 2;
  }
  for (int l = 0; l < config.num_layers; ++l) {
    const std::string p = absl::StrCat("encoder.transformer_layers.", l, ".");
    SpeechEncoderLayerWeights w;
    ASSIGN_OR_RETURN(w.self_attn_layer_norm, LoadNorm(file, p + "self_attn_layer_norm", e, true));
    LinearWeights& qkv = w.qkv_proj;
    qkv.in = e;
    qkv.out = 3 * e;
    for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
      const std::string name = p + "self_attn." + proj;
      ASSIGN_OR_RETURN(std::vector<float> weight, file.ReadFloat(name + ".weight", {e, e}));
      ASSIGN_OR_RETURN(std::vector<float> bias, file.ReadFloat(name + ".bias", {e}));
      qkv.weight.insert(qkv.weight.end(), weight.begin(), weight.end());
      qkv.bias.insert(qkv.bias.end(), bias.begin(), bias.end());
    }
    qkv.packed = PackWeights(qkv.weight.data(), qkv.out, qkv.in);
    ASSIGN_OR_RETURN(w.out_proj,
                     LoadLinear(file, p + "self_attn.out_proj", e, e, BiasMode::kRequired));
    ASSIGN_OR_RETURN(w.final_layer_norm, LoadNorm(file, p + "final_layer_norm", e, true));
    ASSIGN_OR_RETURN(w.fc1, LoadLinear(file, p + "fc1", e, config.ffn_dim, BiasMode::kRequired));
    ASSIGN_OR_RETURN(w.fc2, LoadLinear(file, p + "fc2", config.ffn_dim, e, BiasMode::kRequired));
    enc.layers_.push_back(std::move(w));
  }
  ASSIGN_OR_RETURN(enc.final_norm_, LoadNorm(file, "encoder.layer_norm", e, true));
  return enc;
}

std::vector<float> SpeechEncoder::Embed(const float* features, int64_t frames) const {
  std::vector<float> x(features, features + frames * config_.input_dim);
  int64_t t = frames;
  for (const Conv1dGluLayer& conv : conv_) {
    x = conv.Forward(x.data(), t);
    t = Conv1dStride2OutputFrames(t, conv.kernel);
  }
  // Frame i takes position padding_idx + 1 + i (fairseq make_positions over an
  // unpadded utterance).
  const int e = config_.embed_dim;
  const int64_t first = config_.padding_idx + 1;
  const std::vector<float> table = SinusoidalPositionTable(first + t, e, config_.padding_idx);
  for (int64_t i = 0; i < t; ++i) {
    float* row = x.data() + i * e;
    const float* pos = table.data() + (first + i) * e;
    for (int j = 0; j < e; ++j) row[j] = row[j] * config_.embed_scale + pos[j];
  }
  return x;
}

void SpeechEncoder::Layer(int layer, float* x, int64_t frames) const {
  LayerScratch scratch;
  Layer(layer, x, std::vector<int64_t>{frames}, &scratch);
}

void SpeechEncoder::Layer(int layer, float* x, const std::vector<int64_t>& lengths,
                          LayerScratch* scratch) const {
  const SpeechEncoderLayerWeights& w = layers_[layer];
  const int e = config_.embed_dim;
  const int heads = config_.num_heads;
  const int d = e / heads;
  const float eps = config_.layer_norm_eps;
  const int64_t n = std::accumulate(lengths.begin(), lengths.end(), int64_t{0});
  std::vector<int64_t> first_row(lengths.size());
  std::exclusive_scan(lengths.begin(), lengths.end(), first_row.begin(), int64_t{0});
  const int f = config_.ffn_dim;
  auto grow = [](std::vector<float>& v, int64_t size) {
    if (static_cast<int64_t>(v.size()) < size) v.resize(size);
    return v.data();
  };
  float* h = grow(scratch->normed, n * e);
  float* qkv = grow(scratch->qkv, n * 3 * e);
  float* ctx = grow(scratch->context, n * e);
  float* a = grow(scratch->hidden, n * f);
  cpu::LayerNorm(x, n, e, w.self_attn_layer_norm.weight.data(),
                 w.self_attn_layer_norm.bias.data(), eps, h);
  w.qkv_proj.Apply(h, n, qkv);
  const int64_t ld = 3 * e;
  const float scaling = 1.0f / std::sqrt(static_cast<float>(d));
  const int64_t tasks = static_cast<int64_t>(lengths.size()) * heads;
  // One parallel region for every (utterance, head); BLAS runs
  // single-threaded inside it. Longer utterances cost more: dynamic.
#pragma omp parallel for schedule(dynamic)
  for (int64_t task = 0; task < tasks; ++task) {
    const size_t u = static_cast<size_t>(task / heads);
    const int hd = static_cast<int>(task % heads);
    const int64_t m = lengths[u];
    const float* q = qkv + first_row[u] * ld + hd * d;
    const float* k = q + e;
    const float* v = q + 2 * e;
    // scores = (q_h * scaling) k_h^T; ctx_h = softmax(scores) v_h.
    std::vector<float> scores(m * m);
    cpu::Gemm(/*trans_b=*/true, m, m, d, scaling, q, ld, k, ld, 0.0f, scores.data(), m);
    cpu::SoftmaxRows(scores.data(), m, m);
    cpu::Gemm(/*trans_b=*/false, m, d, m, 1.0f, scores.data(), m, v, ld, 0.0f,
              ctx + first_row[u] * e + hd * d, e);
  }
  w.out_proj.Apply(ctx, n, h);
  cpu::AddInPlace(x, h, n * e);

  cpu::LayerNorm(x, n, e, w.final_layer_norm.weight.data(), w.final_layer_norm.bias.data(), eps,
                 h);
  w.fc1.Apply(h, n, a);
  cpu::Relu(a, n * f);
  w.fc2.Apply(a, n, h);
  cpu::AddInPlace(x, h, n * e);
}

absl::Status SpeechEncoder::CheckInput(int64_t frames) const {
  if (frames <= 0 || frames > config_.max_source_positions) {
    return absl::InvalidArgumentError(absl::StrCat("speech input has ", frames,
                                                   " feature frames; the model accepts 1 to ",
                                                   config_.max_source_positions));
  }
  if (config_.OutputFrames(frames) <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("speech input of ", frames, " frames is too short for the subsampler"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> SpeechEncoder::Encode(const float* features,
                                                         int64_t frames) const {
  std::vector<absl::StatusOr<std::vector<float>>> out = EncodeBatch({{features, frames}});
  return std::move(out[0]);
}

std::vector<absl::StatusOr<std::vector<float>>> SpeechEncoder::EncodeBatch(
    const std::vector<Input>& inputs) const {
  BatchRun run(this, inputs);
  while (run.RunStage()) {
  }
  return run.TakeResults();
}

SpeechEncoder::BatchRun::BatchRun(const SpeechEncoder* encoder, std::vector<Input> inputs,
                                  LayerScratch* scratch)
    : encoder_(encoder),
      inputs_(std::move(inputs)),
      out_(inputs_.size()),
      scratch_(scratch != nullptr ? scratch : &own_scratch_) {
  for (size_t i = 0; i < inputs_.size(); ++i) {
    if (absl::Status s = encoder_->CheckInput(inputs_[i].frames); !s.ok()) {
      out_[i] = std::move(s);
      continue;
    }
    valid_.push_back(i);
    lengths_.push_back(encoder_->config_.OutputFrames(inputs_[i].frames));
  }
}

bool SpeechEncoder::BatchRun::RunStage() {
  const SpeechEncoderConfig& c = encoder_->config_;
  if (valid_.empty()) return false;
  const int e = c.embed_dim;
  const int64_t rows = std::accumulate(lengths_.begin(), lengths_.end(), int64_t{0});
  const int stage = next_stage_++;
  if (stage == 0) {
    x_.resize(rows * e);
    int64_t at = 0;
    for (size_t j = 0; j < valid_.size(); ++j) {
      const Input& in = inputs_[valid_[j]];
      const std::vector<float> embedded = encoder_->Embed(in.features, in.frames);
      std::copy(embedded.begin(), embedded.end(), x_.begin() + at * e);
      at += lengths_[j];
    }
    return true;
  }
  if (stage <= c.num_layers) {
    encoder_->Layer(stage - 1, x_.data(), lengths_, scratch_);
    return true;
  }
  cpu::LayerNorm(x_.data(), rows, e, encoder_->final_norm_.weight.data(),
                 encoder_->final_norm_.bias.data(), c.layer_norm_eps, x_.data());
  int64_t at = 0;
  for (size_t j = 0; j < valid_.size(); ++j) {
    out_[valid_[j]] = std::vector<float>(x_.begin() + at * e, x_.begin() + (at + lengths_[j]) * e);
    at += lengths_[j];
  }
  valid_.clear();
  x_ = {};
  return false;
}

std::vector<absl::StatusOr<std::vector<float>>> SpeechEncoder::BatchRun::TakeResults() {
  return std::move(out_);
}

absl::StatusOr<SpeechProjector> SpeechProjector::Load(const SpeechModelConfig& config,
                                                      const SafetensorsFile& file) {
  SpeechProjector p;
  p.ds_rate_ = config.projector_ds_rate;
  p.encoder_dim_ = config.encoder_dim;
  const int hidden = config.decoder_embed_dim / 2;  // int(llm_dim / 2)
  ASSIGN_OR_RETURN(p.linear1_, LoadLinear(file, "decoder.projector.linear1",
                                          config.encoder_dim * config.projector_ds_rate, hidden,
                                          BiasMode::kRequired));
  ASSIGN_OR_RETURN(p.linear2_, LoadLinear(file, "decoder.projector.linear2", hidden,
                                          config.decoder_embed_dim, BiasMode::kRequired));
  return p;
}

std::vector<float> SpeechProjector::Forward(const float* encoder_out, int64_t frames) const {
  const int64_t rows = OutputRows(frames);
  std::vector<float> hidden(rows * linear1_.out);
  std::vector<float> out(rows * linear2_.out);
  // Frames are contiguous rows, so k consecutive frames are one row of k * E.
  linear1_.Apply(encoder_out, rows, hidden.data());
  cpu::Relu(hidden.data(), rows * linear1_.out);
  linear2_.Apply(hidden.data(), rows, out.data());
  return out;
}

}  // namespace mtla
