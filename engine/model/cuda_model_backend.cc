#include "engine/model/cuda_model_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/common/status_macros.h"
#include "engine/model/mtla_attention.h"
#include "engine/model/weight_loading.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/mtla_append.h"

namespace mtla {

using cuda::DeviceBuffer;

struct CudaModelBackend::Linear {
  DeviceBuffer weight;  // [out, in] in the storage dtype
  DeviceBuffer bias;    // [out] float32, empty when absent
  int in = 0;
  int out = 0;
};

struct CudaModelBackend::Norm {
  DeviceBuffer weight;  // float32
  DeviceBuffer bias;    // float32, empty for RMSNorm
};

struct CudaModelBackend::Layer {
  // Attention (names as MtlaAttentionWeights).
  Linear wq, wq_a, wq_b, wkv_a, wo, fc_p;
  Norm q_norm, kv_norm;
  DeviceBuffer w_uk;     // [H, dn, r] storage dtype
  DeviceBuffer w_uv;     // [H, dv, r] storage dtype
  DeviceBuffer hyper_c;  // [max_slots, hyper_rank] float32
  // Decoder layer.
  Norm attention_norm, mlp_norm;
  Linear mlp_in, mlp_up, mlp_out;
};

// Device pointers of one step's uploaded plan (inside step_data_).
struct CudaModelBackend::StepInputs {
  const int32_t* token_ids = nullptr;
  const int32_t* positions = nullptr;
  const int32_t* block_tables = nullptr;
  const cuda::DeviceChunk* chunks = nullptr;
  int num_chunks = 0;
  int max_chunk_slots = 0;
  const int64_t* logit_rows = nullptr;
  cuda::AttentionPlanDevice plan;
};

namespace {

std::string LayerName(const std::string& pattern, int layer) {
  return absl::StrReplaceAll(pattern, {{"{}", absl::StrCat(layer)}});
}

size_t Align(size_t bytes) { return (bytes + 255) & ~size_t{255}; }

// Uploads float values as `dtype` through a float32 staging buffer.
absl::StatusOr<DeviceBuffer> UploadAs(const float* data, size_t count, cuda::DType dtype,
                                      cudaStream_t stream) {
  ASSIGN_OR_RETURN(DeviceBuffer out, DeviceBuffer::Allocate(count * cuda::DTypeBytes(dtype)));
  if (count == 0) return out;
  if (dtype == cuda::DType::kF32) {
    MTLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out.data(), data, count * sizeof(float),
                                              cudaMemcpyHostToDevice, stream));
    MTLA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    return out;
  }
  ASSIGN_OR_RETURN(DeviceBuffer staging, DeviceBuffer::Allocate(count * sizeof(float)));
  MTLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(staging.data(), data, count * sizeof(float),
                                            cudaMemcpyHostToDevice, stream));
  RETURN_IF_ERROR(cuda::ConvertFromFloat(staging.as<float>(), 1, static_cast<int>(count), 0,
                                         out.data(), dtype, 0, stream));
  MTLA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return out;
}

absl::StatusOr<DeviceBuffer> UploadFloat(const std::vector<float>& v, cudaStream_t stream) {
  return UploadAs(v.data(), v.size(), cuda::DType::kF32, stream);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaModelBackend>> CudaModelBackend::Create(
    DecoderSpec spec, const SafetensorsFile& file, const CacheOptions& cache,
    const CudaBackendOptions& options) {
  if (cache.max_context_tokens > 0) spec.max_context_tokens = cache.max_context_tokens;
  RETURN_IF_ERROR(spec.attention.Validate());
  const MtlaAttentionConfig& c = spec.attention;
  if (!cuda::MtlaAttentionSupports(c.kv_lora_rank, c.qk_rope_head_dim)) {
    return absl::UnimplementedError(absl::StrCat(
        "CUDA backend: no attention kernel for kv_lora_rank ", c.kv_lora_rank,
        " with qk_rope_head_dim ", c.qk_rope_head_dim));
  }
  if (cache.block_slots <= 0) return absl::InvalidArgumentError("cache block_slots must be > 0");
  auto b = std::unique_ptr<CudaModelBackend>(new CudaModelBackend());
  b->spec_ = spec;
  b->options_ = options;
  MTLA_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  ASSIGN_OR_RETURN(std::string device, cuda::DeviceDescription(options.device));
  b->name_ = absl::StrCat("cuda:", options.device, " ", cuda::DTypeName(options.dtype), " ", device);
  MTLA_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&b->num_sms_, cudaDevAttrMultiProcessorCount,
                                                   options.device));
  MTLA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&b->stream_, cudaStreamNonBlocking));
  ASSIGN_OR_RETURN(b->blas_, cuda::BlasHandle::Create(b->stream_));
  const cuda::DType dt = options.dtype;
  const int e = spec.hidden_size;
  const bool layer_norm = spec.norm == NormKind::kLayerNorm;
  const bool relu = spec.mlp == MlpKind::kRelu;

  auto linear = [&](const LinearWeights& w) -> absl::StatusOr<Linear> {
    Linear out;
    out.in = w.in;
    out.out = w.out;
    ASSIGN_OR_RETURN(out.weight, UploadAs(w.weight.data(), w.weight.size(), dt, b->stream_));
    if (!w.bias.empty()) {
      ASSIGN_OR_RETURN(out.bias, UploadFloat(w.bias, b->stream_));
    }
    return out;
  };
  auto norm = [&](const NormWeights& w) -> absl::StatusOr<Norm> {
    Norm out;
    ASSIGN_OR_RETURN(out.weight, UploadFloat(w.weight, b->stream_));
    if (!w.bias.empty()) {
      ASSIGN_OR_RETURN(out.bias, UploadFloat(w.bias, b->stream_));
    }
    return out;
  };

  {
    ASSIGN_OR_RETURN(std::vector<float> embed,
                     file.ReadFloat(spec.names.embed_tokens, {spec.vocab_size, e}));
    ASSIGN_OR_RETURN(b->embed_tokens_, UploadAs(embed.data(), embed.size(), dt, b->stream_));
  }
  if (!spec.names.lm_head.empty()) {
    ASSIGN_OR_RETURN(std::vector<float> head,
                     file.ReadFloat(spec.names.lm_head, {spec.vocab_size, e}));
    ASSIGN_OR_RETURN(b->lm_head_, UploadAs(head.data(), head.size(), dt, b->stream_));
  }
  {
    ASSIGN_OR_RETURN(NormWeights fn, LoadNorm(file, spec.names.final_norm, e, layer_norm));
    ASSIGN_OR_RETURN(Norm n, norm(fn));
    b->final_norm_ = std::make_unique<Norm>(std::move(n));
  }
  const int64_t max_slots = (spec.max_context_tokens + c.down_rate - 1) / c.down_rate;
  for (int l = 0; l < spec.num_layers; ++l) {
    auto layer = std::make_unique<Layer>();
    ASSIGN_OR_RETURN(MtlaAttentionWeights w, LoadMtlaAttentionWeights(
                                                 file, LayerName(spec.names.attention, l), c,
                                                 max_slots));
    if (c.q_lora_rank == 0) {
      ASSIGN_OR_RETURN(layer->wq, linear(w.wq));
    } else {
      ASSIGN_OR_RETURN(layer->wq_a, linear(w.wq_a));
      ASSIGN_OR_RETURN(layer->q_norm, norm(w.q_norm));
      ASSIGN_OR_RETURN(layer->wq_b, linear(w.wq_b));
    }
    ASSIGN_OR_RETURN(layer->wkv_a, linear(w.wkv_a));
    ASSIGN_OR_RETURN(layer->kv_norm, norm(w.kv_norm));
    ASSIGN_OR_RETURN(layer->w_uk, UploadAs(w.w_uk.data(), w.w_uk.size(), dt, b->stream_));
    ASSIGN_OR_RETURN(layer->w_uv, UploadAs(w.w_uv.data(), w.w_uv.size(), dt, b->stream_));
    ASSIGN_OR_RETURN(layer->wo, linear(w.wo));
    ASSIGN_OR_RETURN(layer->fc_p, linear(w.fc_p));
    ASSIGN_OR_RETURN(layer->hyper_c, UploadFloat(w.hyper_c, b->stream_));
    ASSIGN_OR_RETURN(NormWeights an, LoadNorm(file, LayerName(spec.names.attention_norm, l), e,
                                              layer_norm));
    ASSIGN_OR_RETURN(layer->attention_norm, norm(an));
    ASSIGN_OR_RETURN(NormWeights mn,
                     LoadNorm(file, LayerName(spec.names.mlp_norm, l), e, layer_norm));
    ASSIGN_OR_RETURN(layer->mlp_norm, norm(mn));
    const BiasMode mlp_bias = relu ? BiasMode::kRequired : BiasMode::kNone;
    ASSIGN_OR_RETURN(LinearWeights in, LoadLinear(file, LayerName(spec.names.mlp_in, l), e,
                                                  spec.intermediate_size, mlp_bias));
    ASSIGN_OR_RETURN(layer->mlp_in, linear(in));
    if (!relu) {
      ASSIGN_OR_RETURN(LinearWeights up, LoadLinear(file, LayerName(spec.names.mlp_up, l), e,
                                                    spec.intermediate_size, mlp_bias));
      ASSIGN_OR_RETURN(layer->mlp_up, linear(up));
    }
    ASSIGN_OR_RETURN(LinearWeights out, LoadLinear(file, LayerName(spec.names.mlp_out, l),
                                                   spec.intermediate_size, e, mlp_bias));
    ASSIGN_OR_RETURN(layer->mlp_out, linear(out));
    b->layers_.push_back(std::move(layer));
  }
  {
    // RoPE frequencies exactly as the CPU table computes them.
    const int dr = c.qk_rope_head_dim;
    std::vector<float> inv_freq(dr / 2);
    for (int j = 0; j < dr / 2; ++j) {
      inv_freq[j] = 1.0f / std::pow(c.rope_theta, static_cast<float>(2 * j) / static_cast<float>(dr));
    }
    ASSIGN_OR_RETURN(b->rope_inv_freq_, UploadFloat(inv_freq, b->stream_));
  }

  // Cache pool, NaN-poisoned so that reading an unwritten row shows.
  KvCacheGeometry& g = b->geometry_;
  g.num_layers = spec.num_layers;
  g.kv_lora_rank = c.kv_lora_rank;
  g.rope_dim = c.qk_rope_head_dim;
  g.down_rate = c.down_rate;
  g.block_slots = cache.block_slots;
  const size_t block_bytes = g.BlockElements() * cuda::DTypeBytes(dt);
  b->num_blocks_ = cache.num_blocks > 0 ? cache.num_blocks
                                        : static_cast<int>(cache.memory_bytes / block_bytes);
  if (b->num_blocks_ < 1) {
    return absl::InvalidArgumentError(absl::StrCat("cache budget of ", cache.memory_bytes,
                                                   " bytes holds no block of ", block_bytes,
                                                   " bytes"));
  }
  ASSIGN_OR_RETURN(b->cache_, DeviceBuffer::Allocate(block_bytes * b->num_blocks_));
  RETURN_IF_ERROR(cuda::FillNaN(b->cache_.data(), dt,
                                static_cast<int64_t>(g.BlockElements()) * b->num_blocks_,
                                b->stream_));

  // Workspace for max_step_tokens tokens.
  const int64_t t = options.max_step_tokens;
  const int64_t h = c.num_heads;
  const int64_t width = c.slot_width();
  const int64_t f = spec.intermediate_size;
  auto alloc = [&](DeviceBuffer& buffer, int64_t floats) -> absl::Status {
    ASSIGN_OR_RETURN(buffer, DeviceBuffer::Allocate(sizeof(float) * std::max<int64_t>(floats, 1)));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(alloc(b->hidden_, t * e));
  RETURN_IF_ERROR(alloc(b->normed_, t * e));
  RETURN_IF_ERROR(alloc(b->attn_out_, t * e));
  RETURN_IF_ERROR(alloc(b->mlp_a_, t * f));
  RETURN_IF_ERROR(alloc(b->mlp_b_, t * f));
  // Storage-dtype copy of any GEMM input (widest: the absorbed query heads or the MLP).
  RETURN_IF_ERROR(alloc(b->cast_, t * std::max({int64_t{e}, f, h * width, h * c.qk_head_dim(),
                                                int64_t{c.q_lora_rank}})));
  RETURN_IF_ERROR(alloc(b->q_, t * (h * c.qk_head_dim() + c.q_lora_rank)));
  RETURN_IF_ERROR(alloc(b->kv_, t * width));
  RETURN_IF_ERROR(alloc(b->hyper_p_, t * c.hypernet_rank));
  RETURN_IF_ERROR(alloc(b->partial_rows_, t * width));
  RETURN_IF_ERROR(alloc(b->q_absorbed_, t * h * width));
  RETURN_IF_ERROR(alloc(b->attn_latent_, t * h * c.kv_lora_rank));
  RETURN_IF_ERROR(alloc(b->attn_heads_, t * h * c.v_head_dim));
  b->max_partials_ = static_cast<int>(std::max<size_t>(
      64, options.split_workspace_bytes / (sizeof(float) * h * (c.kv_lora_rank + 2))));
  RETURN_IF_ERROR(alloc(b->partial_out_, int64_t{b->max_partials_} * h * c.kv_lora_rank));
  RETURN_IF_ERROR(alloc(b->partial_stats_, int64_t{b->max_partials_} * h * 2));
  RETURN_IF_ERROR(alloc(b->selected_, t * e));
  RETURN_IF_ERROR(alloc(b->logits_, t * spec.vocab_size));
  // Step plan upload: tokens, positions, chunks, tables, logit rows, work items.
  const int64_t max_seq_blocks = g.BlocksForTokens(spec.max_context_tokens) + 1;
  b->step_data_bytes_ =
      Align(t * 4) * 2 + Align(t * sizeof(cuda::DeviceChunk)) + Align(t * max_seq_blocks * 4) +
      Align(t * 8) + 2 * Align(t * cuda::kMaxSplits * sizeof(cuda::AttentionWorkItem)) +
      Align(int64_t{b->max_partials_} * sizeof(cuda::AttentionCombineItem)) + 4096;
  ASSIGN_OR_RETURN(b->step_data_, DeviceBuffer::Allocate(b->step_data_bytes_));
  ASSIGN_OR_RETURN(b->staging_, cuda::PinnedBuffer::Allocate(b->step_data_bytes_));
  MTLA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(b->stream_));
  return b;
}

CudaModelBackend::~CudaModelBackend() {
  if (stream_ != nullptr) {
    cudaStreamSynchronize(stream_);
    // Buffers are freed by their destructors after the stream is idle.
    blas_ = cuda::BlasHandle();
    cudaStreamDestroy(stream_);
  }
}

cuda::CacheView CudaModelBackend::CacheView(int layer) const {
  cuda::CacheView view;
  view.rows = static_cast<char*>(cache_.data()) +
              geometry_.RowOffset(layer, 0, 0, num_blocks_) * cuda::DTypeBytes(options_.dtype);
  view.dtype = options_.dtype;
  view.block_slots = geometry_.block_slots;
  view.kv_lora_rank = geometry_.kv_lora_rank;
  view.rope_dim = geometry_.rope_dim;
  return view;
}

absl::Status CudaModelBackend::CopyBlocks(const std::vector<BlockCopy>& copies) {
  const size_t block_bytes = static_cast<size_t>(geometry_.block_slots) * geometry_.slot_width() *
                             cuda::DTypeBytes(options_.dtype);
  const int bytes = cuda::DTypeBytes(options_.dtype);
  for (const BlockCopy& copy : copies) {
    if (copy.src < 0 || copy.src >= num_blocks_ || copy.dst < 0 || copy.dst >= num_blocks_) {
      return absl::OutOfRangeError(absl::StrCat("block copy ", copy.src, " -> ", copy.dst,
                                                " outside the pool of ", num_blocks_));
    }
    for (int l = 0; l < geometry_.num_layers; ++l) {
      char* base = static_cast<char*>(cache_.data());
      MTLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
          base + geometry_.RowOffset(l, copy.dst, 0, num_blocks_) * bytes,
          base + geometry_.RowOffset(l, copy.src, 0, num_blocks_) * bytes, block_bytes,
          cudaMemcpyDeviceToDevice, stream_));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaModelBackend::Upload(const std::vector<StepSequence>& sequences,
                                      const int32_t* token_ids, const int32_t* positions,
                                      int64_t n, const std::vector<int64_t>& logit_rows,
                                      bool with_attention, StepInputs* in) {
  // The previous step's upload must have been consumed before the staging
  // buffer is rewritten.
  MTLA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  std::vector<cuda::DeviceChunk> chunks;
  std::vector<int32_t> tables;
  int max_chunk_slots = 0;
  for (const StepSequence& seq : sequences) {
    cuda::DeviceChunk chunk;
    chunk.start = seq.start;
    chunk.num_tokens = seq.num_tokens;
    chunk.token_offset = seq.token_offset;
    chunk.block_table_offset = static_cast<int32_t>(tables.size());
    const int64_t blocks = geometry_.BlocksForTokens(seq.start + seq.num_tokens);
    tables.insert(tables.end(), seq.block_table->begin(), seq.block_table->begin() + blocks);
    max_chunk_slots =
        std::max(max_chunk_slots, cuda::ChunkSlots(seq.start, seq.num_tokens, geometry_.down_rate));
    chunks.push_back(chunk);
  }
  cuda::AttentionPlan plan;
  if (with_attention) {
    cuda::AttentionPlanOptions plan_options;
    plan_options.num_sms = num_sms_;
    plan_options.max_partials = max_partials_;
    plan = cuda::BuildAttentionPlan(chunks.data(), static_cast<int>(chunks.size()),
                                    geometry_.down_rate, spec_.attention.num_heads, plan_options);
  }
  char* host = staging_.as<char>();
  char* device = step_data_.as<char>();
  size_t offset = 0;
  bool overflow = false;
  auto put = [&](const void* data, size_t bytes) -> const void* {
    if (offset + bytes > step_data_bytes_) {
      overflow = true;
      return nullptr;
    }
    if (bytes > 0) std::memcpy(host + offset, data, bytes);
    const void* at = device + offset;
    offset += Align(bytes);
    return at;
  };
  in->token_ids = static_cast<const int32_t*>(put(token_ids, token_ids ? n * 4 : 0));
  in->positions = static_cast<const int32_t*>(put(positions, n * 4));
  in->chunks = static_cast<const cuda::DeviceChunk*>(
      put(chunks.data(), chunks.size() * sizeof(cuda::DeviceChunk)));
  in->num_chunks = static_cast<int>(chunks.size());
  in->max_chunk_slots = max_chunk_slots;
  in->block_tables = static_cast<const int32_t*>(put(tables.data(), tables.size() * 4));
  in->logit_rows = static_cast<const int64_t*>(put(logit_rows.data(), logit_rows.size() * 8));
  in->plan.decode_items = static_cast<const cuda::AttentionWorkItem*>(
      put(plan.decode_items.data(), plan.decode_items.size() * sizeof(cuda::AttentionWorkItem)));
  in->plan.num_decode = static_cast<int>(plan.decode_items.size());
  in->plan.prefill_items = static_cast<const cuda::AttentionWorkItem*>(
      put(plan.prefill_items.data(), plan.prefill_items.size() * sizeof(cuda::AttentionWorkItem)));
  in->plan.num_prefill = static_cast<int>(plan.prefill_items.size());
  in->plan.combine_items = static_cast<const cuda::AttentionCombineItem*>(put(
      plan.combine_items.data(), plan.combine_items.size() * sizeof(cuda::AttentionCombineItem)));
  in->plan.num_combine = static_cast<int>(plan.combine_items.size());
  if (overflow) {
    return absl::ResourceExhaustedError("CUDA backend: step plan exceeds its upload buffer");
  }
  MTLA_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(device, host, offset, cudaMemcpyHostToDevice, stream_));
  return absl::OkStatus();
}

absl::Status CudaModelBackend::ApplyLinear(const Linear& w, const float* x, int64_t n, int64_t ldx,
                                           float* y, int64_t ldy) {
  // GEMM operands share the storage dtype: cast the activations first.
  const void* xin = x;
  int64_t ld_in = ldx ? ldx : w.in;
  if (options_.dtype != cuda::DType::kF32) {
    RETURN_IF_ERROR(cuda::ConvertFromFloat(x, n, w.in, ld_in, cast_.data(), options_.dtype, w.in,
                                           stream_));
    xin = cast_.data();
    ld_in = w.in;
  }
  RETURN_IF_ERROR(cuda::Linear(blas_, options_.dtype, xin, n, w.in, w.weight.data(), w.out, y,
                               ld_in, ldy));
  if (w.bias.data() != nullptr) {
    RETURN_IF_ERROR(cuda::AddBias(y, w.bias.as<float>(), n, w.out, ldy, stream_));
  }
  return absl::OkStatus();
}

absl::Status CudaModelBackend::ApplyNorm(const Norm& w, bool layer_norm, float eps, const float* x,
                                         int64_t n, int d, float* y, int64_t ldx, int64_t ldy) {
  if (layer_norm) {
    return cuda::LayerNorm(x, n, d, w.weight.as<float>(), w.bias.as<float>(), eps, y, ldx, ldy,
                           stream_);
  }
  return cuda::RmsNorm(x, n, d, w.weight.as<float>(), eps, y, ldx, ldy, stream_);
}

absl::Status CudaModelBackend::ProjectAndAppend(int l, const float* x, int64_t n,
                                                const StepInputs& in, bool keep_partial_rows) {
  const MtlaAttentionConfig& c = spec_.attention;
  const Layer& w = *layers_[l];
  const int r = c.kv_lora_rank;
  const int width = c.slot_width();
  float* kv = kv_.as<float>();
  RETURN_IF_ERROR(ApplyLinear(w.wkv_a, x, n, 0, kv, width));
  RETURN_IF_ERROR(ApplyNorm(w.kv_norm, true, c.layer_norm_eps, kv, n, r, kv, width, width));
  RETURN_IF_ERROR(cuda::Rope(kv + r, n, width, 1, 0, c.qk_rope_head_dim,
                             rope_inv_freq_.as<float>(), in.positions,
                             c.rope_style == RopeStyle::kInterleaved, stream_));
  RETURN_IF_ERROR(ApplyLinear(w.fc_p, kv, n, width, hyper_p_.as<float>(), c.hypernet_rank));
  cuda::MtlaAppendParams p;
  p.cache = CacheView(l);
  p.block_tables = in.block_tables;
  p.chunks = in.chunks;
  p.num_chunks = in.num_chunks;
  p.max_chunk_slots = in.max_chunk_slots;
  p.down_rate = c.down_rate;
  p.latent = kv;
  p.ld_latent = width;
  p.k_pe = kv + r;
  p.ld_k_pe = width;
  p.hyper_p = hyper_p_.as<float>();
  p.hyper_c = w.hyper_c.as<float>();
  p.hyper_rank = c.hypernet_rank;
  p.partial_rows = keep_partial_rows ? partial_rows_.as<float>() : nullptr;
  return cuda::MtlaAppend(p, stream_);
}

absl::Status CudaModelBackend::Attention(int l, const float* x, int64_t n, const StepInputs& in,
                                         float* out) {
  const MtlaAttentionConfig& c = spec_.attention;
  const Layer& w = *layers_[l];
  const int heads = c.num_heads;
  const int r = c.kv_lora_rank;
  const int dn = c.qk_nope_head_dim;
  const int dr = c.qk_rope_head_dim;
  const int dv = c.v_head_dim;
  const int qk = c.qk_head_dim();
  const int width = c.slot_width();
  const cuda::DType dt = options_.dtype;
  float* q = q_.as<float>();
  if (c.q_lora_rank == 0) {
    RETURN_IF_ERROR(ApplyLinear(w.wq, x, n, 0, q, heads * qk));
  } else {
    float* q_low = q + n * heads * qk;
    RETURN_IF_ERROR(ApplyLinear(w.wq_a, x, n, 0, q_low, c.q_lora_rank));
    RETURN_IF_ERROR(ApplyNorm(w.q_norm, true, c.layer_norm_eps, q_low, n, c.q_lora_rank, q_low, 0,
                              0));
    RETURN_IF_ERROR(ApplyLinear(w.wq_b, q_low, n, 0, q, heads * qk));
  }
  RETURN_IF_ERROR(cuda::Rope(q + dn, n, int64_t{heads} * qk, heads, qk, dr,
                             rope_inv_freq_.as<float>(), in.positions,
                             c.rope_style == RopeStyle::kInterleaved, stream_));
  RETURN_IF_ERROR(ProjectAndAppend(l, x, n, in, /*keep_partial_rows=*/true));

  // Absorbed queries [N, H, r + dR] = [q_nope W_UK[h] | q_pe].
  float* qa = q_absorbed_.as<float>();
  const void* q_in = q;
  if (dt != cuda::DType::kF32) {
    RETURN_IF_ERROR(cuda::ConvertFromFloat(q, n, heads * qk, 0, cast_.data(), dt, 0, stream_));
    q_in = cast_.data();
  }
  cuda::GemmArgs g;
  g.m = n;
  g.n = r;
  g.k = dn;
  g.a = q_in;
  g.lda = int64_t{heads} * qk;
  g.stride_a = qk;
  g.b = w.w_uk.data();
  g.ldb = r;
  g.stride_b = int64_t{dn} * r;
  g.c = qa;
  g.ldc = int64_t{heads} * width;
  g.stride_c = width;
  g.batch = heads;
  RETURN_IF_ERROR(cuda::Gemm(blas_, dt, g));
  MTLA_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(qa + r, sizeof(float) * width, q + dn,
                                              sizeof(float) * qk, sizeof(float) * dr, n * heads,
                                              cudaMemcpyDeviceToDevice, stream_));
  cuda::MtlaAttentionParams p;
  p.cache = CacheView(l);
  p.block_tables = in.block_tables;
  p.chunks = in.chunks;
  p.down_rate = c.down_rate;
  p.num_heads = heads;
  p.q = qa;
  p.partial_rows = partial_rows_.as<float>();
  p.scale = 1.0f / std::sqrt(static_cast<float>(qk));
  p.out = attn_latent_.as<float>();
  p.partial_out = partial_out_.as<float>();
  p.partial_stats = partial_stats_.as<float>();
  RETURN_IF_ERROR(cuda::MtlaAttention(p, in.plan, stream_));

  // o_h = W_UV[h] latent_h; out = wo(concat_h o_h).
  const void* lat = attn_latent_.data();
  if (dt != cuda::DType::kF32) {
    RETURN_IF_ERROR(cuda::ConvertFromFloat(attn_latent_.as<float>(), n, heads * r, 0,
                                           cast_.data(), dt, 0, stream_));
    lat = cast_.data();
  }
  cuda::GemmArgs v;
  v.trans_b = true;
  v.m = n;
  v.n = dv;
  v.k = r;
  v.a = lat;
  v.lda = int64_t{heads} * r;
  v.stride_a = r;
  v.b = w.w_uv.data();
  v.ldb = r;
  v.stride_b = int64_t{dv} * r;
  v.c = attn_heads_.as<float>();
  v.ldc = int64_t{heads} * dv;
  v.stride_c = dv;
  v.batch = heads;
  RETURN_IF_ERROR(cuda::Gemm(blas_, dt, v));
  return ApplyLinear(w.wo, attn_heads_.as<float>(), n, 0, out, 0);
}

absl::Status CudaModelBackend::Mlp(int l, const float* x, int64_t n, float* out) {
  const Layer& w = *layers_[l];
  const int f = spec_.intermediate_size;
  float* a = mlp_a_.as<float>();
  RETURN_IF_ERROR(ApplyLinear(w.mlp_in, x, n, 0, a, 0));
  if (spec_.mlp == MlpKind::kSwiGlu) {
    RETURN_IF_ERROR(ApplyLinear(w.mlp_up, x, n, 0, mlp_b_.as<float>(), 0));
    RETURN_IF_ERROR(cuda::SiluMul(a, mlp_b_.as<float>(), n, f, a, f, f, f, stream_));
  } else {
    RETURN_IF_ERROR(cuda::Relu(a, n * f, stream_));
  }
  return ApplyLinear(w.mlp_out, a, n, 0, out, 0);
}

absl::Status CudaModelBackend::DecoderLayer(int l, int64_t n, const StepInputs& in) {
  const DecoderSpec& s = spec_;
  const int e = s.hidden_size;
  const bool ln = s.norm == NormKind::kLayerNorm;
  const Layer& w = *layers_[l];
  float* x = hidden_.as<float>();
  float* normed = normed_.as<float>();
  float* attn = attn_out_.as<float>();
  RETURN_IF_ERROR(ApplyNorm(w.attention_norm, ln, s.norm_eps, x, n, e, normed, 0, 0));
  RETURN_IF_ERROR(Attention(l, normed, n, in, attn));
  RETURN_IF_ERROR(cuda::AddInPlace(x, attn, n * e, stream_));
  if (s.residual == ResidualStyle::kPreNorm) {
    RETURN_IF_ERROR(ApplyNorm(w.mlp_norm, ln, s.norm_eps, x, n, e, normed, 0, 0));
    RETURN_IF_ERROR(Mlp(l, normed, n, attn));
    return cuda::AddInPlace(x, attn, n * e, stream_);
  }
  RETURN_IF_ERROR(ApplyNorm(w.attention_norm, ln, s.norm_eps, x, n, e, x, 0, 0));
  RETURN_IF_ERROR(Mlp(l, x, n, attn));
  RETURN_IF_ERROR(cuda::AddInPlace(x, attn, n * e, stream_));
  return ApplyNorm(w.mlp_norm, ln, s.norm_eps, x, n, e, x, 0, 0);
}

absl::Status CudaModelBackend::Forward(const StepPlan& plan, std::vector<float>* logits) {
  const DecoderSpec& s = spec_;
  const int64_t n = plan.num_tokens();
  const int e = s.hidden_size;
  if (static_cast<int64_t>(plan.positions.size()) != n) {
    return absl::InvalidArgumentError("step plan: positions and token_ids differ in length");
  }
  if (n > options_.max_step_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("step of ", n, " tokens exceeds the CUDA "
                                                   "backend's max_step_tokens ",
                                                   options_.max_step_tokens));
  }
  for (const StepSequence& seq : plan.sequences) {
    if (seq.start + seq.num_tokens > s.max_context_tokens) {
      return absl::OutOfRangeError(absl::StrCat("sequence reaches ", seq.start + seq.num_tokens,
                                                " tokens; the model serves at most ",
                                                s.max_context_tokens));
    }
    if (seq.block_table == nullptr ||
        static_cast<int64_t>(seq.block_table->size()) * geometry_.block_slots <
            geometry_.SlotsForTokens(seq.start + seq.num_tokens)) {
      return absl::InternalError("step plan: block table does not cover the new tokens");
    }
  }
  for (int32_t id : plan.token_ids) {
    if (id < 0 || id >= s.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " outside the vocabulary [0, ", s.vocab_size, ")"));
    }
  }
  StepInputs in;
  RETURN_IF_ERROR(Upload(plan.sequences, plan.token_ids.data(), plan.positions.data(), n,
                         plan.logit_rows, /*with_attention=*/true, &in));
  RETURN_IF_ERROR(cuda::EmbeddingLookup(embed_tokens_.data(), options_.dtype, in.token_ids, n, e,
                                        s.embed_scale, hidden_.as<float>(), stream_));
  for (int l = 0; l < s.num_layers; ++l) RETURN_IF_ERROR(DecoderLayer(l, n, in));

  const int64_t rows = static_cast<int64_t>(plan.logit_rows.size());
  float* selected = selected_.as<float>();
  RETURN_IF_ERROR(cuda::GatherRows(hidden_.as<float>(), in.logit_rows, rows, e, selected, stream_));
  RETURN_IF_ERROR(ApplyNorm(*final_norm_, s.norm == NormKind::kLayerNorm, s.norm_eps, selected,
                            rows, e, selected, 0, 0));
  const DeviceBuffer& head_weight = lm_head_.data() != nullptr ? lm_head_ : embed_tokens_;
  const void* x_in = selected;
  if (options_.dtype != cuda::DType::kF32) {
    RETURN_IF_ERROR(
        cuda::ConvertFromFloat(selected, rows, e, 0, cast_.data(), options_.dtype, 0, stream_));
    x_in = cast_.data();
  }
  RETURN_IF_ERROR(cuda::Linear(blas_, options_.dtype, x_in, rows, e, head_weight.data(),
                               s.vocab_size, logits_.as<float>()));
  logits->resize(rows * s.vocab_size);
  MTLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logits->data(), logits_.data(),
                                            sizeof(float) * rows * s.vocab_size,
                                            cudaMemcpyDeviceToHost, stream_));
  MTLA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaModelBackend::FillPrefix(const std::vector<BlockId>& block_table, int64_t start,
                                          const float* rows, int64_t num_rows) {
  RETURN_IF_ERROR(CheckPrefixFill(geometry_, spec_.max_context_tokens, block_table.size(), start,
                                  num_rows));
  const int e = spec_.hidden_size;
  // Pieces of at most max_step_tokens rows; slots merge in order across pieces.
  for (int64_t done = 0; done < num_rows; done += options_.max_step_tokens) {
    const int64_t count = std::min<int64_t>(options_.max_step_tokens, num_rows - done);
    std::vector<int32_t> positions(count);
    for (int64_t i = 0; i < count; ++i) positions[i] = static_cast<int32_t>(start + done + i);
    StepSequence seq;
    seq.block_table = &block_table;
    seq.start = start + done;
    seq.num_tokens = static_cast<int>(count);
    seq.token_offset = 0;
    StepInputs in;
    RETURN_IF_ERROR(Upload({seq}, nullptr, positions.data(), count, {}, /*with_attention=*/false,
                           &in));
    MTLA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(normed_.data(), rows + done * e,
                                              sizeof(float) * count * e, cudaMemcpyHostToDevice,
                                              stream_));
    for (int l = 0; l < spec_.num_layers; ++l) {
      RETURN_IF_ERROR(ProjectAndAppend(l, normed_.as<float>(), count, in,
                                       /*keep_partial_rows=*/false));
    }
  }
  MTLA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaModelBackend::Health() const {
  // cudaErrorNotReady only says work is still queued. A sticky error is
  // returned by every call from then on, this one included; a non-sticky one
  // (a bad argument) was returned by the call that made it and is not seen
  // here.
  const cudaError_t error = cudaStreamQuery(stream_);
  if (error == cudaSuccess || error == cudaErrorNotReady) return absl::OkStatus();
  return cuda::CudaStatus(error, "the CUDA device (cudaStreamQuery)");
}

}  // namespace mtla
