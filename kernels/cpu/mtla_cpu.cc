#include "kernels/cpu/mtla_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace mtla::cpu {
namespace {

float Dot(const float* a, const float* b, int n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

void Axpy(float alpha, const float* x, float* y, int n) {
#pragma omp simd
  for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace

void MtlaAppend(const MtlaAppendParams& p) {
  const int r = p.cache.kv_lora_rank;
  const int dr = p.cache.rope_dim;
  const int width = p.cache.slot_width();
  // Sequences are independent; tokens of one sequence merge in order.
#pragma omp parallel for schedule(dynamic) if (p.num_chunks > 1)
  for (int c = 0; c < p.num_chunks; ++c) {
    const SequenceChunk& chunk = p.chunks[c];
    for (int i = 0; i < chunk.num_tokens; ++i) {
      const int64_t row_index = chunk.token_offset + i;
      const int64_t t = chunk.start + i;
      const int64_t slot = t / p.down_rate;
      const float* hc = p.hyper_c + slot * p.hyper_rank;
      const float logit = Dot(hc, p.hyper_p + row_index * p.hyper_rank, p.hyper_rank);
      const float w = 1.0f / (1.0f + std::exp(-logit));
      const float* c_t = p.latent + row_index * p.ld_latent;
      float* row = p.cache.Row(chunk.block_table, slot);
      if (t % p.down_rate == 0) {
        for (int j = 0; j < r; ++j) row[j] = w * c_t[j];
      } else {
        Axpy(w, c_t, row, r);
      }
      std::memcpy(row + r, p.k_pe + row_index * p.ld_k_pe, sizeof(float) * dr);
      if (p.partial_rows != nullptr) {
        std::memcpy(p.partial_rows + row_index * width, row, sizeof(float) * width);
      }
    }
  }
}

void MtlaAttention(const MtlaAttentionParams& p) {
  const int r = p.cache.kv_lora_rank;
  const int width = p.cache.slot_width();
  const int heads = p.num_heads;
  // Flatten (chunk, token) pairs so threads balance decode and prefill rows.
  int64_t total = 0;
  for (int c = 0; c < p.num_chunks; ++c) total += p.chunks[c].num_tokens;

#pragma omp parallel
  {
    thread_local std::vector<float> scores;
    int chunk_index = 0;
    int64_t chunk_begin = 0;  // flat index of the current chunk's first token
#pragma omp for schedule(dynamic, 1)
    for (int64_t flat = 0; flat < total; ++flat) {
      // Locate the chunk (flat indices are visited in increasing order per thread).
      if (flat < chunk_begin) {
        chunk_index = 0;
        chunk_begin = 0;
      }
      while (flat >= chunk_begin + p.chunks[chunk_index].num_tokens) {
        chunk_begin += p.chunks[chunk_index].num_tokens;
        ++chunk_index;
      }
      const SequenceChunk& chunk = p.chunks[chunk_index];
      const int64_t local = flat - chunk_begin;
      const int64_t row_index = chunk.token_offset + local;
      const int64_t t = chunk.start + local;
      const int64_t complete = t / p.down_rate;  // cache slots visible
      const int64_t keys = complete + 1;
      if (static_cast<int64_t>(scores.size()) < keys * heads) scores.resize(keys * heads);

      const float* q = p.q + row_index * heads * width;
      const float* own = p.partial_rows + row_index * width;
      // Scores [keys][heads].
      for (int64_t j = 0; j < keys; ++j) {
        const float* key = j < complete ? p.cache.Row(chunk.block_table, j) : own;
        float* s = scores.data() + j * heads;
        for (int h = 0; h < heads; ++h) s[h] = Dot(q + h * width, key, width) * p.scale;
      }
      // Softmax per head.
      float maxv[1024];
      float denom[1024];
      for (int h = 0; h < heads; ++h) {
        maxv[h] = -std::numeric_limits<float>::infinity();
        denom[h] = 0.0f;
      }
      for (int64_t j = 0; j < keys; ++j)
        for (int h = 0; h < heads; ++h) maxv[h] = std::max(maxv[h], scores[j * heads + h]);
      for (int64_t j = 0; j < keys; ++j) {
        for (int h = 0; h < heads; ++h) {
          const float e = std::exp(scores[j * heads + h] - maxv[h]);
          scores[j * heads + h] = e;
          denom[h] += e;
        }
      }
      // Weighted sum of latents.
      float* out = p.out + row_index * heads * r;
      std::memset(out, 0, sizeof(float) * heads * r);
      for (int64_t j = 0; j < keys; ++j) {
        const float* key = j < complete ? p.cache.Row(chunk.block_table, j) : own;
        for (int h = 0; h < heads; ++h) Axpy(scores[j * heads + h], key, out + h * r, r);
      }
      for (int h = 0; h < heads; ++h) {
        const float inv = 1.0f / denom[h];
        for (int k = 0; k < r; ++k) out[h * r + k] *= inv;
      }
    }
  }
}

}  // namespace mtla::cpu
