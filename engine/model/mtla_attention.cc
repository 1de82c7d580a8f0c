#include "engine/model/mtla_attention.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/weight_loading.h"
#ifdef MTLA_HAVE_ONEDNN
#include "kernels/cpu/packed_batched_matmul.h"
#endif

namespace mtla {
namespace {

// W_b [k, n] for b < batch packed for oneDNN (see MtlaAttentionWeights); null
// when oneDNN is absent, declines, or MTLA_LINEAR=openblas.
std::shared_ptr<const cpu::PackedBatchedMatmul> PackPerHead(const std::vector<float>& w,
                                                            int batch, int k, int n,
                                                            bool transposed) {
#ifdef MTLA_HAVE_ONEDNN
  if (const char* choice = std::getenv("MTLA_LINEAR");
      choice != nullptr && std::string_view(choice) == "openblas") {
    return nullptr;
  }
  auto packed = cpu::PackedBatchedMatmul::Create(w.data(), batch, k, n, transposed);
  if (packed.ok()) return *std::move(packed);
#else
  (void)w, (void)batch, (void)k, (void)n, (void)transposed;
#endif
  return nullptr;
}

}  // namespace

std::vector<float> PrecomputeHyperC(const LinearWeights& fc_c, int64_t num_slots) {
  const int d = fc_c.in;
  // Float32 arithmetic in the order torch evaluates HyperNetwork.positional_encoding.
  const float log_base = -std::log(10000.0f) / static_cast<float>(d);
  std::vector<float> pe(static_cast<size_t>(num_slots) * d);
  for (int64_t k = 0; k < num_slots; ++k) {
    for (int m = 0; 2 * m < d; ++m) {
      const float div_term = std::exp(static_cast<float>(2 * m) * log_base);
      const float angle = static_cast<float>(k) * div_term;
      pe[k * d + 2 * m] = std::sin(angle);
      if (2 * m + 1 < d) pe[k * d + 2 * m + 1] = std::cos(angle);
    }
  }
  std::vector<float> table(static_cast<size_t>(num_slots) * fc_c.out);
  cpu::Linear(pe.data(), num_slots, d, fc_c.weight.data(), fc_c.bias_or_null(), fc_c.out,
              table.data());
  return table;
}

absl::StatusOr<MtlaAttentionWeights> LoadMtlaAttentionWeights(const SafetensorsFile& file,
                                                              const std::string& prefix,
                                                              const MtlaAttentionConfig& c,
                                                              int64_t max_slots) {
  RETURN_IF_ERROR(c.Validate());
  const BiasMode proj_bias = c.bias ? BiasMode::kRequired : BiasMode::kNone;
  const int q_width = c.num_heads * c.qk_head_dim();
  const int r = c.kv_lora_rank;
  MtlaAttentionWeights w;
  const std::string p = prefix + ".";
  if (c.q_lora_rank == 0) {
    ASSIGN_OR_RETURN(w.wq, LoadLinear(file, p + "wq", c.embed_dim, q_width, proj_bias));
  } else {
    ASSIGN_OR_RETURN(w.wq_a, LoadLinear(file, p + "wq_a", c.embed_dim, c.q_lora_rank, proj_bias));
    ASSIGN_OR_RETURN(w.q_norm, LoadNorm(file, p + "q_norm", c.q_lora_rank, /*with_bias=*/true));
    ASSIGN_OR_RETURN(w.wq_b, LoadLinear(file, p + "wq_b", c.q_lora_rank, q_width, proj_bias));
  }
  ASSIGN_OR_RETURN(w.wkv_a, LoadLinear(file, p + "wkv_a", c.embed_dim, c.slot_width(), proj_bias));
  ASSIGN_OR_RETURN(w.kv_norm, LoadNorm(file, p + "kv_norm", r, /*with_bias=*/true));
  const int per_head = c.qk_nope_head_dim + c.v_head_dim;
  ASSIGN_OR_RETURN(LinearWeights wkv_b,
                   LoadLinear(file, p + "wkv_b", r, c.num_heads * per_head, proj_bias));
  if (!wkv_b.bias.empty()) {
    return absl::UnimplementedError(
        absl::StrCat(file.path(), ": tensor '", p, "wkv_b.bias': a bias on wkv_b cannot be absorbed"));
  }
  // wkv_b viewed as (H, dn + dv, r): per head, dn rows of W_UK then dv rows of W_UV.
  w.w_uk.resize(static_cast<size_t>(c.num_heads) * c.qk_nope_head_dim * r);
  w.w_uv.resize(static_cast<size_t>(c.num_heads) * c.v_head_dim * r);
  for (int h = 0; h < c.num_heads; ++h) {
    const float* head = wkv_b.weight.data() + static_cast<size_t>(h) * per_head * r;
    std::memcpy(w.w_uk.data() + static_cast<size_t>(h) * c.qk_nope_head_dim * r, head,
                sizeof(float) * c.qk_nope_head_dim * r);
    std::memcpy(w.w_uv.data() + static_cast<size_t>(h) * c.v_head_dim * r,
                head + static_cast<size_t>(c.qk_nope_head_dim) * r,
                sizeof(float) * c.v_head_dim * r);
  }
  ASSIGN_OR_RETURN(w.wo, LoadLinear(file, p + "wo", c.num_heads * c.v_head_dim, c.embed_dim,
                                    proj_bias));
  ASSIGN_OR_RETURN(w.fc_p, LoadLinear(file, p + "hypernet_down.fc_p", r, c.hypernet_rank,
                                      BiasMode::kRequired));
  ASSIGN_OR_RETURN(LinearWeights fc_c, LoadLinear(file, p + "hypernet_down.fc_c", r,
                                                  c.hypernet_rank, BiasMode::kRequired));
  w.max_slots = max_slots;
  w.hyper_c = PrecomputeHyperC(fc_c, max_slots);
  return w;
}

void MtlaAttentionWorkspace::Reserve(int64_t tokens, const MtlaAttentionConfig& c) {
  auto grow = [](std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  };
  const int64_t width = c.slot_width();
  grow(q, tokens * c.num_heads * c.qk_head_dim() + tokens * c.q_lora_rank);
  grow(kv, tokens * width);
  grow(hyper_p, tokens * c.hypernet_rank);
  grow(latent_rows, tokens * c.kv_lora_rank);
  grow(partial_rows, tokens * width);
  grow(q_absorbed, tokens * c.num_heads * width);
  grow(attn_latent, tokens * c.num_heads * c.kv_lora_rank);
  grow(attn_heads, tokens * c.num_heads * c.v_head_dim);
}

MtlaAttentionLayer::MtlaAttentionLayer(const MtlaAttentionConfig& config,
                                       MtlaAttentionWeights weights)
    : config_(config),
      w_(std::move(weights)),
      rope_(config.qk_rope_head_dim, config.rope_theta, config.rope_style) {
  const MtlaAttentionConfig& c = config_;
  // q~_h = q_nope_h W_UK[h]: W_UK[h] is [dn, r] as stored. o_h = latent_h
  // W_UV[h]^T: W_UV[h] is stored [dv, r], i.e. the transpose of [r, dv].
  if (w_.w_uk_packed == nullptr) {
    w_.w_uk_packed = PackPerHead(w_.w_uk, c.num_heads, c.qk_nope_head_dim, c.kv_lora_rank, false);
  }
  if (w_.w_uv_packed == nullptr) {
    w_.w_uv_packed = PackPerHead(w_.w_uv, c.num_heads, c.kv_lora_rank, c.v_head_dim, true);
  }
}

void MtlaAttentionLayer::ProjectAndAppend(const float* x, const int32_t* positions,
                                          const cpu::SequenceChunk* chunks, int num_chunks,
                                          int64_t n, const cpu::PagedCacheView& cache,
                                          MtlaAttentionWorkspace* ws,
                                          bool keep_partial_rows) const {
  const MtlaAttentionConfig& c = config_;
  const int r = c.kv_lora_rank;
  const int width = c.slot_width();
  float* kv = ws->kv.data();
  w_.wkv_a.Apply(x, n, kv);
  cpu::LayerNorm(kv, n, r, w_.kv_norm.weight.data(), w_.kv_norm.bias.data(), c.layer_norm_eps, kv,
                 width, width);
  rope_.Apply(kv + r, n, width, /*heads=*/1, 0, positions);
  if (w_.fc_p.packed != nullptr) {
    // oneDNN runs only its reference kernel on strided rows: hand it the
    // latents as a dense [n, r] copy (n * r floats) rather than OpenBLAS.
    float* latent = ws->latent_rows.data();
    for (int64_t i = 0; i < n; ++i) std::memcpy(latent + i * r, kv + i * width, sizeof(float) * r);
    w_.fc_p.Apply(latent, n, ws->hyper_p.data());
  } else {
    w_.fc_p.Apply(kv, n, ws->hyper_p.data(), /*ldx=*/width);
  }
  cpu::MtlaAppendParams append;
  append.cache = cache;
  append.chunks = chunks;
  append.num_chunks = num_chunks;
  append.down_rate = c.down_rate;
  append.latent = kv;
  append.ld_latent = width;
  append.k_pe = kv + r;
  append.ld_k_pe = width;
  append.hyper_p = ws->hyper_p.data();
  append.hyper_c = w_.hyper_c.data();
  append.hyper_c_rows = w_.max_slots;
  append.hyper_rank = c.hypernet_rank;
  append.partial_rows = keep_partial_rows ? ws->partial_rows.data() : nullptr;
  cpu::MtlaAppend(append);
}

void MtlaAttentionLayer::AppendOnly(const float* x, const int32_t* positions,
                                    const cpu::SequenceChunk* chunks, int num_chunks, int64_t n,
                                    const cpu::PagedCacheView& cache,
                                    MtlaAttentionWorkspace* ws) const {
  ws->Reserve(n, config_);
  ProjectAndAppend(x, positions, chunks, num_chunks, n, cache, ws, /*keep_partial_rows=*/false);
}

void MtlaAttentionLayer::Forward(const float* x, const int32_t* positions,
                                 const cpu::SequenceChunk* chunks, int num_chunks, int64_t n,
                                 const cpu::PagedCacheView& cache, MtlaAttentionWorkspace* ws,
                                 float* out) const {
  const MtlaAttentionConfig& c = config_;
  const int heads = c.num_heads;
  const int r = c.kv_lora_rank;
  const int dn = c.qk_nope_head_dim;
  const int dr = c.qk_rope_head_dim;
  const int qk = c.qk_head_dim();
  const int width = c.slot_width();
  ws->Reserve(n, c);

  // Queries [N, H, dn + dR].
  float* q = ws->q.data();
  if (c.q_lora_rank == 0) {
    w_.wq.Apply(x, n, q);
  } else {
    float* q_low = q + n * heads * qk;
    w_.wq_a.Apply(x, n, q_low);
    cpu::LayerNorm(q_low, n, c.q_lora_rank, w_.q_norm.weight.data(), w_.q_norm.bias.data(),
                   c.layer_norm_eps, q_low);
    w_.wq_b.Apply(q_low, n, q);
  }
  rope_.Apply(q + dn, n, heads * qk, heads, qk, positions);

  ProjectAndAppend(x, positions, chunks, num_chunks, n, cache, ws, /*keep_partial_rows=*/true);

  // Absorbed queries [N, H, r + dR] = [q_nope W_UK[h] | q_pe].
  float* qa = ws->q_absorbed.data();
  // One oneDNN matmul batched over heads on pre-packed weights, reading the
  // heads where they lie in q and writing them where they go in qa. Else the
  // per-head GEMMs run in parallel (BLAS runs each one single-threaded inside
  // the region) rather than one threaded call each.
  bool absorbed = false;
#ifdef MTLA_HAVE_ONEDNN
  absorbed = w_.w_uk_packed != nullptr &&
             w_.w_uk_packed->Apply(q, n, {qk, int64_t{heads} * qk}, qa,
                                   {width, int64_t{heads} * width});
#endif
  if (!absorbed) {
#pragma omp parallel for schedule(static)
    for (int h = 0; h < heads; ++h) {
      cpu::Gemm(/*trans_b=*/false, n, r, dn, 1.0f, q + h * qk, heads * qk,
                w_.w_uk.data() + static_cast<size_t>(h) * dn * r, r, 0.0f, qa + h * width,
                heads * width);
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int h = 0; h < heads; ++h) {
      std::memcpy(qa + (i * heads + h) * width + r, q + i * heads * qk + h * qk + dn,
                  sizeof(float) * dr);
    }
  }

  cpu::MtlaAttentionParams attn;
  attn.cache = cache;
  attn.chunks = chunks;
  attn.num_chunks = num_chunks;
  attn.down_rate = c.down_rate;
  attn.num_heads = heads;
  attn.q = qa;
  attn.partial_rows = ws->partial_rows.data();
  attn.scale = 1.0f / std::sqrt(static_cast<float>(qk));
  attn.out = ws->attn_latent.data();
  const int64_t scratch = cpu::MtlaAttentionScratchFloats(attn);
  if (static_cast<int64_t>(ws->attn_scratch.size()) < scratch) ws->attn_scratch.resize(scratch);
  attn.scratch = ws->attn_scratch.data();
  attn.scratch_floats = static_cast<int64_t>(ws->attn_scratch.size());
  cpu::MtlaAttention(attn);

  // o_h = W_UV[h] (attn latent of head h); out = wo(concat_h o_h).
  const int dv = c.v_head_dim;
  float* heads_out = ws->attn_heads.data();
  bool projected = false;
#ifdef MTLA_HAVE_ONEDNN
  projected = w_.w_uv_packed != nullptr &&
              w_.w_uv_packed->Apply(ws->attn_latent.data(), n, {r, int64_t{heads} * r}, heads_out,
                                    {dv, int64_t{heads} * dv});
#endif
  if (!projected) {
#pragma omp parallel for schedule(static)
    for (int h = 0; h < heads; ++h) {
      cpu::Gemm(/*trans_b=*/true, n, dv, r, 1.0f, ws->attn_latent.data() + h * r, heads * r,
                w_.w_uv.data() + static_cast<size_t>(h) * dv * r, r, 0.0f, heads_out + h * dv,
                heads * dv);
    }
  }
  w_.wo.Apply(heads_out, n, out);
}

}  // namespace mtla
