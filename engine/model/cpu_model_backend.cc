#include "engine/model/cpu_model_backend.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/common/status_macros.h"
#include "engine/model/weight_loading.h"
#include "kernels/cpu/cpu_ops.h"
#ifdef MTLA_HAVE_ONEDNN
#include "kernels/cpu/packed_linear.h"
#endif

namespace mtla {
namespace {

std::string LayerName(const std::string& pattern, int layer) {
  return absl::StrReplaceAll(pattern, {{"{}", absl::StrCat(layer)}});
}

void Grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CpuModelBackend>> CpuModelBackend::Create(
    const DecoderSpec& spec, const SafetensorsFile& file, int num_blocks, int block_slots) {
  RETURN_IF_ERROR(spec.attention.Validate());
  if (num_blocks <= 0 || block_slots <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cache needs positive num_blocks and block_slots, got ", num_blocks, " and ",
                     block_slots));
  }
  auto backend = std::unique_ptr<CpuModelBackend>(new CpuModelBackend());
  backend->spec_ = spec;
  const int e = spec.hidden_size;
  const bool layer_norm = spec.norm == NormKind::kLayerNorm;
  const bool relu = spec.mlp == MlpKind::kRelu;
  ASSIGN_OR_RETURN(backend->embed_tokens_,
                   file.ReadFloat(spec.names.embed_tokens, {spec.vocab_size, e}));
  if (!spec.names.lm_head.empty()) {
    ASSIGN_OR_RETURN(backend->lm_head_, file.ReadFloat(spec.names.lm_head, {spec.vocab_size, e}));
  }
  backend->packed_head_ = PackWeights(
      backend->lm_head_.empty() ? backend->embed_tokens_.data() : backend->lm_head_.data(),
      spec.vocab_size, e);
  ASSIGN_OR_RETURN(backend->final_norm_, LoadNorm(file, spec.names.final_norm, e, layer_norm));
  const int64_t max_slots =
      (spec.max_context_tokens + spec.attention.down_rate - 1) / spec.attention.down_rate;
  for (int l = 0; l < spec.num_layers; ++l) {
    ASSIGN_OR_RETURN(MtlaAttentionWeights attn,
                     LoadMtlaAttentionWeights(file, LayerName(spec.names.attention, l),
                                              spec.attention, max_slots));
    backend->attention_.emplace_back(spec.attention, std::move(attn));
    DecoderLayerWeights layer;
    ASSIGN_OR_RETURN(layer.attention_norm,
                     LoadNorm(file, LayerName(spec.names.attention_norm, l), e, layer_norm));
    ASSIGN_OR_RETURN(layer.mlp_norm, LoadNorm(file, LayerName(spec.names.mlp_norm, l), e, layer_norm));
    const BiasMode mlp_bias = relu ? BiasMode::kRequired : BiasMode::kNone;
    ASSIGN_OR_RETURN(layer.mlp_in, LoadLinear(file, LayerName(spec.names.mlp_in, l), e,
                                              spec.intermediate_size, mlp_bias));
    if (!relu) {
      ASSIGN_OR_RETURN(layer.mlp_up, LoadLinear(file, LayerName(spec.names.mlp_up, l), e,
                                                spec.intermediate_size, mlp_bias));
    }
    ASSIGN_OR_RETURN(layer.mlp_out, LoadLinear(file, LayerName(spec.names.mlp_out, l),
                                               spec.intermediate_size, e, mlp_bias));
    backend->layers_.push_back(std::move(layer));
  }
  backend->geometry_.num_layers = spec.num_layers;
  backend->geometry_.kv_lora_rank = spec.attention.kv_lora_rank;
  backend->geometry_.rope_dim = spec.attention.qk_rope_head_dim;
  backend->geometry_.down_rate = spec.attention.down_rate;
  backend->geometry_.block_slots = block_slots;
  backend->num_blocks_ = num_blocks;
  // Unused cache rows hold NaN so that reading one is caught by the tests.
  backend->cache_.assign(backend->geometry_.BlockElements() * num_blocks, std::nanf(""));
  return backend;
}

absl::StatusOr<std::unique_ptr<CpuModelBackend>> CpuModelBackend::Create(
    DecoderSpec spec, const SafetensorsFile& file, const CacheOptions& options) {
  if (options.max_context_tokens > 0) spec.max_context_tokens = options.max_context_tokens;
  if (options.block_slots <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cache block_slots must be > 0 (got ", options.block_slots, ")"));
  }
  KvCacheGeometry geometry;
  geometry.num_layers = spec.num_layers;
  geometry.kv_lora_rank = spec.attention.kv_lora_rank;
  geometry.rope_dim = spec.attention.qk_rope_head_dim;
  geometry.down_rate = spec.attention.down_rate;
  geometry.block_slots = options.block_slots;
  const size_t block_bytes = geometry.BlockElements() * sizeof(float);
  const int num_blocks = options.num_blocks > 0
                             ? options.num_blocks
                             : static_cast<int>(options.memory_bytes / block_bytes);
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("cache budget of ", options.memory_bytes,
                                                   " bytes holds no block of ", block_bytes,
                                                   " bytes"));
  }
  return Create(spec, file, num_blocks, options.block_slots);
}

cpu::PagedCacheView CpuModelBackend::CacheView(int layer) {
  cpu::PagedCacheView view;
  view.rows = cache_.data() + geometry_.RowOffset(layer, 0, 0, num_blocks_);
  view.block_slots = geometry_.block_slots;
  view.kv_lora_rank = geometry_.kv_lora_rank;
  view.rope_dim = geometry_.rope_dim;
  return view;
}

absl::Status CpuModelBackend::CopyBlocks(const std::vector<BlockCopy>& copies) {
  const size_t block_floats = static_cast<size_t>(geometry_.block_slots) * geometry_.slot_width();
  for (const BlockCopy& copy : copies) {
    if (copy.src < 0 || copy.src >= num_blocks_ || copy.dst < 0 || copy.dst >= num_blocks_) {
      return absl::OutOfRangeError(absl::StrCat("block copy ", copy.src, " -> ", copy.dst,
                                                " outside the pool of ", num_blocks_));
    }
    for (int l = 0; l < geometry_.num_layers; ++l) {
      std::memcpy(cache_.data() + geometry_.RowOffset(l, copy.dst, 0, num_blocks_),
                  cache_.data() + geometry_.RowOffset(l, copy.src, 0, num_blocks_),
                  sizeof(float) * block_floats);
    }
  }
  return absl::OkStatus();
}

void CpuModelBackend::DecoderLayer(int l, const std::vector<cpu::SequenceChunk>& chunks,
                                   const StepPlan& plan, int64_t n) {
  const DecoderSpec& s = spec_;
  const int e = s.hidden_size;
  const DecoderLayerWeights& w = layers_[l];
  auto norm = [&](const NormWeights& nw, const float* in, float* out) {
    if (s.norm == NormKind::kRmsNorm) {
      cpu::RmsNorm(in, n, e, nw.weight.data(), s.norm_eps, out);
    } else {
      cpu::LayerNorm(in, n, e, nw.weight.data(), nw.bias.data(), s.norm_eps, out);
    }
  };
  auto mlp = [&](const float* in, float* out) {
    const int f = s.intermediate_size;
    w.mlp_in.Apply(in, n, mlp_a_.data());
    if (s.mlp == MlpKind::kSwiGlu) {
      w.mlp_up.Apply(in, n, mlp_b_.data());
      cpu::SiluMul(mlp_a_.data(), mlp_b_.data(), n, f, mlp_a_.data(), f, f, f);
    } else {
      cpu::Relu(mlp_a_.data(), n * f);
    }
    w.mlp_out.Apply(mlp_a_.data(), n, out);
  };
  float* x = hidden_.data();
  const cpu::PagedCacheView cache = CacheView(l);
  norm(w.attention_norm, x, normed_.data());
  attention_[l].Forward(normed_.data(), plan.positions.data(), chunks.data(),
                        static_cast<int>(chunks.size()), n, cache, &attention_ws_,
                        attn_out_.data());
  if (s.residual == ResidualStyle::kPreNorm) {
    cpu::AddInPlace(x, attn_out_.data(), n * e);
    norm(w.mlp_norm, x, normed_.data());
    mlp(normed_.data(), attn_out_.data());
    cpu::AddInPlace(x, attn_out_.data(), n * e);
  } else {
    cpu::AddInPlace(x, attn_out_.data(), n * e);
    norm(w.attention_norm, x, x);
    mlp(x, attn_out_.data());
    cpu::AddInPlace(x, attn_out_.data(), n * e);
    norm(w.mlp_norm, x, x);
  }
}

absl::Status CpuModelBackend::FillPrefix(const std::vector<BlockId>& block_table, int64_t start,
                                         const float* rows, int64_t num_rows) {
  RETURN_IF_ERROR(CheckPrefixFill(geometry_, spec_.max_context_tokens, block_table.size(), start,
                                  num_rows));
  std::vector<int32_t> positions(num_rows);
  for (int64_t i = 0; i < num_rows; ++i) positions[i] = static_cast<int32_t>(start + i);
  const cpu::SequenceChunk chunk{block_table.data(), start, static_cast<int>(num_rows), 0};
  for (int l = 0; l < spec_.num_layers; ++l) {
    attention_[l].AppendOnly(rows, positions.data(), &chunk, 1, num_rows, CacheView(l),
                             &attention_ws_);
  }
  return absl::OkStatus();
}

absl::Status CpuModelBackend::Forward(const StepPlan& plan, std::vector<float>* logits) {
  const DecoderSpec& s = spec_;
  const int64_t n = plan.num_tokens();
  const int e = s.hidden_size;
  if (static_cast<int64_t>(plan.positions.size()) != n) {
    return absl::InvalidArgumentError("step plan: positions and token_ids differ in length");
  }
  std::vector<cpu::SequenceChunk> chunks;
  chunks.reserve(plan.sequences.size());
  for (const StepSequence& seq : plan.sequences) {
    if (seq.start + seq.num_tokens > s.max_context_tokens) {
      return absl::OutOfRangeError(absl::StrCat("sequence reaches ", seq.start + seq.num_tokens,
                                                " tokens; the model serves at most ",
                                                s.max_context_tokens));
    }
    const int64_t slots = geometry_.SlotsForTokens(seq.start + seq.num_tokens);
    if (seq.block_table == nullptr ||
        static_cast<int64_t>(seq.block_table->size()) * geometry_.block_slots < slots) {
      return absl::InternalError("step plan: block table does not cover the new tokens");
    }
    chunks.push_back({seq.block_table->data(), seq.start, seq.num_tokens, seq.token_offset});
  }
  for (int32_t id : plan.token_ids) {
    if (id < 0 || id >= s.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " outside the vocabulary [0, ", s.vocab_size, ")"));
    }
  }
  Grow(hidden_, n * e);
  Grow(normed_, n * e);
  Grow(attn_out_, n * e);
  Grow(mlp_a_, n * s.intermediate_size);
  Grow(mlp_b_, n * s.intermediate_size);

  cpu::EmbeddingLookup(embed_tokens_.data(), plan.token_ids.data(), n, e, s.embed_scale,
                       hidden_.data());
  for (int l = 0; l < s.num_layers; ++l) DecoderLayer(l, chunks, plan, n);

  // Final norm and output projection, only for the rows that need logits.
  const int64_t rows = static_cast<int64_t>(plan.logit_rows.size());
  Grow(selected_, rows * e);
  for (int64_t i = 0; i < rows; ++i) {
    std::memcpy(selected_.data() + i * e, hidden_.data() + plan.logit_rows[i] * e,
                sizeof(float) * e);
  }
  if (s.norm == NormKind::kRmsNorm) {
    cpu::RmsNorm(selected_.data(), rows, e, final_norm_.weight.data(), s.norm_eps, selected_.data());
  } else {
    cpu::LayerNorm(selected_.data(), rows, e, final_norm_.weight.data(), final_norm_.bias.data(),
                   s.norm_eps, selected_.data());
  }
  logits->resize(rows * s.vocab_size);
  const float* head = lm_head_.empty() ? embed_tokens_.data() : lm_head_.data();
#ifdef MTLA_HAVE_ONEDNN
  if (packed_head_ != nullptr &&
      packed_head_->Apply(selected_.data(), rows, nullptr, logits->data())) {
    return absl::OkStatus();
  }
#endif
  cpu::Linear(selected_.data(), rows, e, head, nullptr, s.vocab_size, logits->data());
  return absl::OkStatus();
}

}  // namespace mtla
