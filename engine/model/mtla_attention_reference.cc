#include "engine/model/mtla_attention_reference.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace mtla {

void MtlaDenseReference(const MtlaAttentionConfig& c, const MtlaAttentionWeights& w,
                        const float* x, int64_t T, const int32_t* positions, float* out,
                        float* latent_out, float* k_pe_out) {
  const int H = c.num_heads, r = c.kv_lora_rank, dn = c.qk_nope_head_dim;
  const int dr = c.qk_rope_head_dim, dv = c.v_head_dim, qk = c.qk_head_dim(), s = c.down_rate;
  const int R = c.hypernet_rank;
  cpu::RopeTable rope(dr, c.rope_theta, c.rope_style);

  std::vector<float> q(T * H * qk);
  if (c.q_lora_rank == 0) {
    cpu::Linear(x, T, c.embed_dim, w.wq.weight.data(), w.wq.bias_or_null(), H * qk, q.data());
  } else {
    std::vector<float> low(T * c.q_lora_rank);
    cpu::Linear(x, T, c.embed_dim, w.wq_a.weight.data(), w.wq_a.bias_or_null(), c.q_lora_rank,
                low.data());
    cpu::LayerNorm(low.data(), T, c.q_lora_rank, w.q_norm.weight.data(), w.q_norm.bias.data(),
                   c.layer_norm_eps, low.data());
    cpu::Linear(low.data(), T, c.q_lora_rank, w.wq_b.weight.data(), w.wq_b.bias_or_null(), H * qk,
                q.data());
  }
  rope.Apply(q.data() + dn, T, H * qk, H, qk, positions);

  std::vector<float> kv(T * (r + dr));
  cpu::Linear(x, T, c.embed_dim, w.wkv_a.weight.data(), w.wkv_a.bias_or_null(), r + dr, kv.data());
  std::vector<float> latent(T * r), k_pe(T * dr);
  for (int64_t t = 0; t < T; ++t) {
    std::copy_n(kv.data() + t * (r + dr), r, latent.data() + t * r);
    std::copy_n(kv.data() + t * (r + dr) + r, dr, k_pe.data() + t * dr);
  }
  cpu::LayerNorm(latent.data(), T, r, w.kv_norm.weight.data(), w.kv_norm.bias.data(),
                 c.layer_norm_eps, latent.data());
  rope.Apply(k_pe.data(), T, dr, 1, 0, positions);

  // Merge weights and the running partial merge of each position's slot.
  std::vector<float> p(T * R);
  cpu::Linear(latent.data(), T, r, w.fc_p.weight.data(), w.fc_p.bias_or_null(), R, p.data());
  std::vector<float> merged(T * r, 0.0f);
  std::vector<float> weight(T);
  for (int64_t i = 0; i < T; ++i) {
    double logit = 0.0;
    for (int k = 0; k < R; ++k) logit += double(w.hyper_c[(i / s) * R + k]) * p[i * R + k];
    weight[i] = static_cast<float>(1.0 / (1.0 + std::exp(-logit)));
  }
  for (int64_t j = 0; j < T; ++j) {
    for (int64_t i = (j / s) * s; i <= j; ++i) {
      for (int k = 0; k < r; ++k) merged[j * r + k] += weight[i] * latent[i * r + k];
    }
  }

  // Unabsorbed keys and values per head: k_nope = W_UK[h] merged, v = W_UV[h] merged.
  std::vector<float> k_nope(T * H * dn), v(T * H * dv);
  for (int64_t j = 0; j < T; ++j) {
    for (int h = 0; h < H; ++h) {
      for (int d = 0; d < dn; ++d) {
        double acc = 0.0;
        for (int k = 0; k < r; ++k) acc += double(w.w_uk[(h * dn + d) * r + k]) * merged[j * r + k];
        k_nope[(j * H + h) * dn + d] = static_cast<float>(acc);
      }
      for (int d = 0; d < dv; ++d) {
        double acc = 0.0;
        for (int k = 0; k < r; ++k) acc += double(w.w_uv[(h * dv + d) * r + k]) * merged[j * r + k];
        v[(j * H + h) * dv + d] = static_cast<float>(acc);
      }
    }
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(qk));
  std::vector<float> heads(T * H * dv);
  std::vector<double> scores(T);
  for (int64_t i = 0; i < T; ++i) {
    for (int h = 0; h < H; ++h) {
      const float* qi = q.data() + (i * H + h) * qk;
      double max_score = -1e300;
      for (int64_t j = 0; j <= i; ++j) {
        const bool visible = ((j + 1) % s == 0) || j == i;
        if (!visible) {
          scores[j] = -1e300;
          continue;
        }
        double acc = 0.0;
        for (int d = 0; d < dn; ++d) acc += double(qi[d]) * k_nope[(j * H + h) * dn + d];
        for (int d = 0; d < dr; ++d) acc += double(qi[dn + d]) * k_pe[j * dr + d];
        scores[j] = acc * scale;
        max_score = std::max(max_score, scores[j]);
      }
      double denom = 0.0;
      for (int64_t j = 0; j <= i; ++j) {
        scores[j] = scores[j] <= -1e299 ? 0.0 : std::exp(scores[j] - max_score);
        denom += scores[j];
      }
      for (int d = 0; d < dv; ++d) {
        double acc = 0.0;
        for (int64_t j = 0; j <= i; ++j) acc += scores[j] * v[(j * H + h) * dv + d];
        heads[(i * H + h) * dv + d] = static_cast<float>(acc / denom);
      }
    }
  }
  cpu::Linear(heads.data(), T, H * dv, w.wo.weight.data(), w.wo.bias_or_null(), c.embed_dim, out);

  // The cache keeps each slot's latest partial merge and its latest k_pe.
  const int64_t slots = (T + s - 1) / s;
  for (int64_t k = 0; k < slots; ++k) {
    const int64_t last = std::min<int64_t>(T - 1, (k + 1) * s - 1);
    if (latent_out) std::copy_n(merged.data() + last * r, r, latent_out + k * r);
    if (k_pe_out) std::copy_n(k_pe.data() + last * dr, dr, k_pe_out + k * dr);
  }
}

}  // namespace mtla
