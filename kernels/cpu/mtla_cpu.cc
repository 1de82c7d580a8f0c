#include "kernels/cpu/mtla_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <cstdlib>
#include <string_view>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels/cpu/mtla_attention_avx512.h"

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

namespace {

// The scalar reference: per query token, every score, softmax, weighted sum.
void MtlaAttentionReference(const MtlaAttentionParams& p) {
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

// ---------------------------------------------------------------------------
// Split planning shared by MtlaAttentionScratchFloats and the AVX-512 path.

// A split covers at least this many keys, and split boundaries fall on
// multiples of the kernel's 16-key tiles.
constexpr int64_t kMinSplitKeys = 32;
constexpr int64_t kTileKeys = 16;

// Number of key ranges for a token with `keys` keys in a step of `tokens`
// query tokens: split only when the step has too few tokens to give every
// thread about four work items (decode at small batch), never on one thread,
// and into a count that makes the step's items a multiple of the thread
// count where possible (batch 1 on 2 threads: 2 or 4 ranges, not 3 or 5).
int64_t NumSplits(int64_t keys, int64_t tokens, int threads) {
  if (threads <= 1) return 1;
  const int64_t target = 4 * static_cast<int64_t>(threads);
  int64_t splits = tokens >= target ? 1 : (target + tokens - 1) / tokens;
  splits = std::min(splits, (keys + kMinSplitKeys - 1) / kMinSplitKeys);
  while (splits > 1 && (tokens * splits) % threads != 0) --splits;
  return std::max<int64_t>(1, splits);
}

// Keys [begin, end) of range k of `splits`: whole tiles, as evenly as they go.
void SplitRange(int64_t keys, int64_t splits, int64_t k, int64_t* begin, int64_t* end) {
  const int64_t tiles = (keys + kTileKeys - 1) / kTileKeys;
  *begin = k * tiles / splits * kTileKeys;
  *end = std::min(keys, (k + 1) * tiles / splits * kTileKeys);
}

int64_t TotalTokens(const MtlaAttentionParams& p) {
  int64_t total = 0;
  for (int c = 0; c < p.num_chunks; ++c) total += p.chunks[c].num_tokens;
  return total;
}

int64_t SplitFloats(const MtlaAttentionParams& p) {
  return static_cast<int64_t>(p.num_heads) * (p.cache.kv_lora_rank + 2);
}

struct WorkItem {
  int chunk;
  int64_t local;  // token index inside the chunk
  int64_t key_begin, key_end;
  int64_t scratch;  // offset of this split's [out | max | sum]; -1: writes p.out directly
};
struct CombineItem {
  int64_t row_index;
  int64_t splits;
  int64_t scratch;  // first split's offset; splits are consecutive
};

// Work items and combines of a step (both may be null: only the scratch size
// is wanted).
void PlanSplits(const MtlaAttentionParams& p, int threads, std::vector<WorkItem>* items,
                std::vector<CombineItem>* combines, int64_t* scratch_floats) {
  if (items != nullptr) items->clear();
  if (combines != nullptr) combines->clear();
  const int64_t tokens = TotalTokens(p);
  const int64_t per_split = SplitFloats(p);
  int64_t scratch = 0;
  for (int c = 0; c < p.num_chunks; ++c) {
    const SequenceChunk& chunk = p.chunks[c];
    for (int64_t i = 0; i < chunk.num_tokens; ++i) {
      const int64_t keys = (chunk.start + i) / p.down_rate + 1;
      const int64_t splits = NumSplits(keys, tokens, threads);
      if (splits == 1) {
        if (items != nullptr) items->push_back({c, i, 0, keys, -1});
        continue;
      }
      if (combines != nullptr) combines->push_back({chunk.token_offset + i, splits, scratch});
      for (int64_t k = 0; k < splits; ++k) {
        if (items != nullptr) {
          int64_t begin = 0, end = 0;
          SplitRange(keys, splits, k, &begin, &end);
          items->push_back({c, i, begin, end, scratch});
        }
        scratch += per_split;
      }
    }
  }
  *scratch_floats = scratch;
}

int Threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

bool ReferenceForced() {
  static const bool forced = [] {
    const char* v = std::getenv("MTLA_ATTENTION");
    return v != nullptr && std::string_view(v) == "reference";
  }();
  return forced;
}

// Out rows of split tokens: out = sum_s w_s O_s / sum_s w_s l_s with
// w_s = exp(m_s - max_s m_s), per head.
void CombineSplits(const MtlaAttentionParams& p, const CombineItem& item, int h,
                   const float* scratch) {
  const int r = p.cache.kv_lora_rank;
  const int heads = p.num_heads;
  const int64_t per_split = SplitFloats(p);
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t s = 0; s < item.splits; ++s) {
    m = std::max(m, scratch[item.scratch + s * per_split + heads * r + h]);
  }
  float* out = p.out + (item.row_index * heads + h) * r;
  float denom = 0.0f;
  for (int64_t s = 0; s < item.splits; ++s) {
    const float* split = scratch + item.scratch + s * per_split;
    const float w = std::exp(split[heads * r + h] - m);
    denom += w * split[heads * r + heads + h];
    const float* o = split + h * r;
    if (s == 0) {
#pragma omp simd
      for (int k = 0; k < r; ++k) out[k] = w * o[k];
    } else {
#pragma omp simd
      for (int k = 0; k < r; ++k) out[k] += w * o[k];
    }
  }
  const float inv = 1.0f / denom;
#pragma omp simd
  for (int k = 0; k < r; ++k) out[k] *= inv;
}

void MtlaAttentionAvx512(const MtlaAttentionParams& p) {
  thread_local std::vector<WorkItem> items;
  thread_local std::vector<CombineItem> combines;
  thread_local std::vector<float> own_scratch;
  int64_t scratch_floats = 0;
  PlanSplits(p, Threads(), &items, &combines, &scratch_floats);
  float* scratch = p.scratch;
  if (scratch_floats > 0 && (scratch == nullptr || p.scratch_floats < scratch_floats)) {
    if (static_cast<int64_t>(own_scratch.size()) < scratch_floats) own_scratch.resize(scratch_floats);
    scratch = own_scratch.data();
  }
  const int heads = p.num_heads;
  const int width = p.cache.slot_width();
  const int r = p.cache.kv_lora_rank;
  const int64_t num_items = static_cast<int64_t>(items.size());
  const int64_t num_combines = static_cast<int64_t>(combines.size()) * heads;
  const WorkItem* item_data = items.data();
  const CombineItem* combine_data = combines.data();
#pragma omp parallel if (num_items > 1)
  {
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < num_items; ++i) {
      const WorkItem& item = item_data[i];
      const SequenceChunk& chunk = p.chunks[item.chunk];
      const int64_t row_index = chunk.token_offset + item.local;
      internal::AttentionSplitParams a;
      a.cache = p.cache;
      a.block_table = chunk.block_table;
      a.q = p.q + row_index * heads * width;
      a.own_row = p.partial_rows + row_index * width;
      a.complete = (chunk.start + item.local) / p.down_rate;
      a.key_begin = item.key_begin;
      a.key_end = item.key_end;
      a.num_heads = heads;
      a.scale = p.scale;
      if (item.scratch < 0) {
        a.normalize = true;
        a.out = p.out + row_index * heads * r;
      } else {
        float* split = scratch + item.scratch;
        a.out = split;
        a.max = split + heads * r;
        a.sum = split + heads * r + heads;
      }
#ifdef MTLA_HAVE_AVX512_KERNEL
      internal::AttendSplitAvx512(a);
#endif
    }
    if (num_combines > 0) {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < num_combines; ++i) {
        CombineSplits(p, combine_data[i / heads], static_cast<int>(i % heads), scratch);
      }
    }
  }
}

}  // namespace

bool CpuHasAvx512() {
  static const bool has = [] {
#if defined(MTLA_HAVE_AVX512_KERNEL)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#else
    return false;
#endif
  }();
  return has;
}

MtlaAttentionImpl SelectedMtlaAttentionImpl(const MtlaAttentionParams& p) {
  if (!ReferenceForced() && CpuHasAvx512() &&
      internal::Avx512KernelSupportsShape(p.cache, p.num_heads)) {
    return MtlaAttentionImpl::kAvx512;
  }
  return MtlaAttentionImpl::kReference;
}

int64_t MtlaAttentionScratchFloats(const MtlaAttentionParams& p) {
  int64_t floats = 0;
  PlanSplits(p, Threads(), nullptr, nullptr, &floats);
  return floats;
}

void MtlaAttention(const MtlaAttentionParams& p, MtlaAttentionImpl impl) {
  const bool avx512_ok =
      CpuHasAvx512() && internal::Avx512KernelSupportsShape(p.cache, p.num_heads);
  if (impl == MtlaAttentionImpl::kAuto) impl = SelectedMtlaAttentionImpl(p);
  if (impl == MtlaAttentionImpl::kAvx512 && avx512_ok) {
    MtlaAttentionAvx512(p);
  } else {
    MtlaAttentionReference(p);
  }
}

}  // namespace mtla::cpu
