// AVX-512 paged MTLA attention for one query token over one split of its keys
// (contract in mtla_attention_avx512.h).
//
// Keys are visited in tiles of 16 (any mix of cache blocks and the own
// partial row, through a table of row pointers). Per tile:
//   1. scores S[h][0:16] = q_h . key_j as small GEMM micro-kernels: HG heads x
//      16/HG keys of 16-lane accumulators over the slot width, reduced by one
//      transposing add tree (16 accumulators -> one vector of 16 scores);
//   2. online softmax per head on that vector (vectorized exp), rescaling
//      the running output by exp(m_old - m_new);
//   3. out[h] += P[h][0:16] x latent[0:16] as HG heads x CG column vectors.
// Each key row is read from memory once per split; the second and later uses
// (other head groups, step 3) hit L1.
//
// No standard-library headers here: see the note in the header.
#include "kernels/cpu/mtla_attention_avx512.h"

#include <immintrin.h>

namespace mtla::cpu::internal {
namespace {

constexpr int kTile = 16;
// On key ranges of kFarMinKeys or more, the rows of the tile kFarTiles ahead
// are requested into L2 during the current tile (and the next tile's into
// L1): cache blocks are scattered, so the hardware prefetcher cannot run
// ahead across them, and one tile ahead did not cover DRAM latency (batch 32,
// context 2048: 1.72-1.84 ms per layer with the next tile only, 1.54-1.56 ms
// with this). On short ranges it cost 8% of a batch-32, context-256 step
// (docs/benchmarks.md).
constexpr int kFarTiles = 3;
constexpr int64_t kFarMinKeys = 512;

inline float MaxF(float a, float b) { return a > b ? a : b; }

// e^x on every lane; x above 88 overflows to +inf, below -87 gives about
// e^-87 (callers zero the lanes that must be 0). NaN propagates. Range
// reduction x = n ln2 + f, |f| <= ln2 / 2, then Taylor to degree 7 (relative
// error below 2e-7) and 2^n by scalef.
inline __m512 Exp(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);  // second operand: NaN stays NaN
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  f = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), f);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Lane i of the result = sum of the 16 lanes of a[i].
inline __m512 Reduce16(const __m512* a) {
  __m512 b[8], c[4], d[2];
  for (int i = 0; i < 8; ++i) {
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                         _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d u = _mm512_castps_pd(b[2 * i]);
    const __m512d v = _mm512_castps_pd(b[2 * i + 1]);
    c[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(u, v)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(u, v)));
  }
  for (int i = 0; i < 2; ++i) {
    d[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0xDD));
  }
  return _mm512_add_ps(_mm512_shuffle_f32x4(d[0], d[1], 0x88),
                       _mm512_shuffle_f32x4(d[0], d[1], 0xDD));
}

// s[hh * 16 + j] = q_hh . rows[j] for HG heads (q rows at stride `width`) and
// the tile's keys j < nk (rounded up to a multiple of 16 / HG; the padding
// rows are valid rows whose scores the caller ignores). When `prefetch` is
// not null, the same lines of the next tile's rows prefetch[j] are requested
// into L1 as rows[j] is read, spreading the next tile's loads over this one;
// `far` (when not null) likewise into L2.
template <int HG>
inline void ScoreTile(const float* q, int width, const float* const* rows, int nk,
                      const float* const* prefetch, const float* const* far, float* s) {
  constexpr int KG = kTile / HG;
  const int full = width & ~15;
  const __mmask16 tail = static_cast<__mmask16>((1u << (width & 15)) - 1u);
  for (int k0 = 0; k0 < nk; k0 += KG) {
    __m512 acc[HG * KG];
    for (int i = 0; i < HG * KG; ++i) acc[i] = _mm512_setzero_ps();
    const float* kr[KG];
    for (int kk = 0; kk < KG; ++kk) kr[kk] = rows[k0 + kk];
    const float* pf[KG];
    for (int kk = 0; kk < KG; ++kk) pf[kk] = prefetch != nullptr ? prefetch[k0 + kk] : nullptr;
    const float* ff[KG];
    for (int kk = 0; kk < KG; ++kk) ff[kk] = far != nullptr ? far[k0 + kk] : nullptr;
    for (int d = 0; d < full; d += 16) {
      __m512 kv[KG];
      for (int kk = 0; kk < KG; ++kk) kv[kk] = _mm512_loadu_ps(kr[kk] + d);
      if (prefetch != nullptr) {
        for (int kk = 0; kk < KG; ++kk) {
          _mm_prefetch(reinterpret_cast<const char*>(pf[kk] + d), _MM_HINT_T0);
        }
      }
      if (far != nullptr) {
        for (int kk = 0; kk < KG; ++kk) {
          _mm_prefetch(reinterpret_cast<const char*>(ff[kk] + d), _MM_HINT_T1);
        }
      }
      for (int hh = 0; hh < HG; ++hh) {
        __m512 qv = _mm512_loadu_ps(q + hh * width + d);
        // Keep qv in a register: GCC otherwise folds the load into each of
        // the KG FMAs, and the loop becomes bound by load ports.
        __asm__("" : "+v"(qv));
        for (int kk = 0; kk < KG; ++kk) acc[hh * KG + kk] = _mm512_fmadd_ps(qv, kv[kk], acc[hh * KG + kk]);
      }
    }
    if (tail != 0) {
      if (prefetch != nullptr) {
        for (int kk = 0; kk < KG; ++kk) {
          _mm_prefetch(reinterpret_cast<const char*>(pf[kk] + full), _MM_HINT_T0);
        }
      }
      if (far != nullptr) {
        for (int kk = 0; kk < KG; ++kk) {
          _mm_prefetch(reinterpret_cast<const char*>(ff[kk] + full), _MM_HINT_T1);
        }
      }
      __m512 kv[KG];
      for (int kk = 0; kk < KG; ++kk) kv[kk] = _mm512_maskz_loadu_ps(tail, kr[kk] + full);
      for (int hh = 0; hh < HG; ++hh) {
        const __m512 qv = _mm512_maskz_loadu_ps(tail, q + hh * width + full);
        for (int kk = 0; kk < KG; ++kk) acc[hh * KG + kk] = _mm512_fmadd_ps(qv, kv[kk], acc[hh * KG + kk]);
      }
    }
    alignas(64) float sums[kTile];
    _mm512_store_ps(sums, Reduce16(acc));
    for (int hh = 0; hh < HG; ++hh) {
      for (int kk = 0; kk < KG; ++kk) s[hh * kTile + k0 + kk] = sums[hh * KG + kk];
    }
  }
}

// out[hh, 0:r] = out[hh, 0:r] * corr[hh] + sum_{j < nk} p[hh * 16 + j] * rows[j][0:r]
// for HG heads (out rows at stride r); `first`: out holds no value yet.
template <int HG, int CG>
inline void AccumulateTile(const float* p, const float* corr, const float* const* rows, int nk,
                           int r, bool first, float* out) {
  for (int c0 = 0; c0 < r; c0 += 16 * CG) {
    __m512 acc[HG][CG];
    for (int hh = 0; hh < HG; ++hh) {
      const __m512 cv = _mm512_set1_ps(corr[hh]);
      for (int c = 0; c < CG; ++c) {
        acc[hh][c] = first ? _mm512_setzero_ps()
                           : _mm512_mul_ps(_mm512_loadu_ps(out + hh * r + c0 + 16 * c), cv);
      }
    }
    for (int j = 0; j < nk; ++j) {
      __m512 kv[CG];
      for (int c = 0; c < CG; ++c) kv[c] = _mm512_loadu_ps(rows[j] + c0 + 16 * c);
      for (int hh = 0; hh < HG; ++hh) {
        const __m512 pb = _mm512_set1_ps(p[hh * kTile + j]);
        for (int c = 0; c < CG; ++c) acc[hh][c] = _mm512_fmadd_ps(pb, kv[c], acc[hh][c]);
      }
    }
    for (int hh = 0; hh < HG; ++hh) {
      for (int c = 0; c < CG; ++c) _mm512_storeu_ps(out + hh * r + c0 + 16 * c, acc[hh][c]);
    }
  }
}

template <int HG, int CG>
void AttendSplit(const AttentionSplitParams& p) {
  const int heads = p.num_heads;
  const int r = p.cache.kv_lora_rank;
  const int width = r + p.cache.rope_dim;
  const int64_t block_slots = p.cache.block_slots;
  alignas(64) float scores[kAvx512MaxHeads * kTile];
  float local_max[kAvx512MaxHeads];
  float local_sum[kAvx512MaxHeads];
  float corr[kAvx512MaxHeads];
  float* m = p.max != nullptr ? p.max : local_max;
  float* l = p.sum != nullptr ? p.sum : local_sum;
  const float neg_inf = -__builtin_inff();
  for (int h = 0; h < heads; ++h) {
    m[h] = neg_inf;
    l[h] = 0.0f;
  }
  const __m512 scale = _mm512_set1_ps(p.scale);
  // Row pointers of the tile starting at key t0 (nk keys; the rest repeat
  // the first row so that the micro-kernels may read them).
  auto tile_rows = [&](int64_t t0, int nk, const float** rows) {
    int64_t block = t0 / block_slots;
    int64_t slot = t0 - block * block_slots;
    for (int i = 0; i < nk; ++i) {
      rows[i] = t0 + i < p.complete
                    ? p.cache.rows + (static_cast<int64_t>(p.block_table[block]) * block_slots +
                                      slot) * width
                    : p.own_row;
      if (++slot == block_slots) {
        slot = 0;
        ++block;
      }
    }
    for (int i = nk; i < kTile; ++i) rows[i] = rows[0];
  };
  const float* rows[kTile];
  const float* next_rows[kTile];
  const float* far_rows[kTile];
  auto tile_size = [&](int64_t t0) {
    return static_cast<int>(p.key_end - t0 < kTile ? p.key_end - t0 : kTile);
  };
  tile_rows(p.key_begin, tile_size(p.key_begin), rows);
  bool first = true;
  for (int64_t t0 = p.key_begin; t0 < p.key_end; t0 += kTile) {
    const int nk = tile_size(t0);
    // The next tile's rows (into L1) and those kFarTiles ahead (into L2)
    // stream in while this one computes: the first head group's score pass
    // requests them line by line.
    const bool has_next = t0 + kTile < p.key_end;
    if (has_next) tile_rows(t0 + kTile, tile_size(t0 + kTile), next_rows);
    const int64_t far0 = t0 + kFarTiles * kTile;
    const bool has_far = p.key_end - p.key_begin >= kFarMinKeys && far0 < p.key_end;
    if (has_far) tile_rows(far0, tile_size(far0), far_rows);

    for (int g = 0; g < heads; g += HG) {
      ScoreTile<HG>(p.q + g * width, width, rows, nk, has_next && g == 0 ? next_rows : nullptr,
                    has_far && g == 0 ? far_rows : nullptr, scores + g * kTile);
    }

    const __mmask16 valid = static_cast<__mmask16>((1u << nk) - 1u);
    for (int h = 0; h < heads; ++h) {
      __m512 v = _mm512_mul_ps(_mm512_load_ps(scores + h * kTile), scale);
      v = _mm512_mask_mov_ps(_mm512_set1_ps(neg_inf), valid, v);
      const float m_new = MaxF(m[h], _mm512_reduce_max_ps(v));
      corr[h] = m[h] == neg_inf ? 0.0f
                                : _mm512_cvtss_f32(Exp(_mm512_set1_ps(m[h] - m_new)));
      const __m512 e = _mm512_maskz_mov_ps(valid, Exp(_mm512_sub_ps(v, _mm512_set1_ps(m_new))));
      l[h] = l[h] * corr[h] + _mm512_reduce_add_ps(e);
      m[h] = m_new;
      _mm512_store_ps(scores + h * kTile, e);
    }

    for (int g = 0; g < heads; g += HG) {
      AccumulateTile<HG, CG>(scores + g * kTile, corr + g, rows, nk, r, first, p.out + g * r);
    }
    first = false;
    if (has_next) {
      for (int i = 0; i < kTile; ++i) rows[i] = next_rows[i];
    }
  }
  if (p.normalize) {
    for (int h = 0; h < heads; ++h) {
      const __m512 inv = _mm512_set1_ps(1.0f / l[h]);
      float* o = p.out + static_cast<int64_t>(h) * r;
      for (int c = 0; c < r; c += 16) _mm512_storeu_ps(o + c, _mm512_mul_ps(_mm512_loadu_ps(o + c), inv));
    }
  }
}

// Column vectors per pass: the largest power of two <= 16 / HG dividing r / 16.
template <int HG>
void DispatchColumns(const AttentionSplitParams& p) {
  const int vectors = p.cache.kv_lora_rank / 16;
  constexpr int kMax = kTile / HG;
  if (kMax >= 16 && vectors % 16 == 0) return AttendSplit<HG, (kMax >= 16 ? 16 : 1)>(p);
  if (kMax >= 8 && vectors % 8 == 0) return AttendSplit<HG, (kMax >= 8 ? 8 : 1)>(p);
  if (kMax >= 4 && vectors % 4 == 0) return AttendSplit<HG, (kMax >= 4 ? 4 : 1)>(p);
  if (kMax >= 2 && vectors % 2 == 0) return AttendSplit<HG, (kMax >= 2 ? 2 : 1)>(p);
  return AttendSplit<HG, 1>(p);
}

}  // namespace

void AttendSplitAvx512(AttentionSplitParams p) {
  // Head group: the largest power of two <= 4 dividing the head count. Four
  // heads x four keys need 8 vector loads per 16 FMAs in the score pass
  // (eight heads x two keys: 18), at the price of reading the tile's rows
  // from L1 once per head group.
  const int h = p.num_heads;
  if (h % 4 == 0) return DispatchColumns<4>(p);
  if (h % 2 == 0) return DispatchColumns<2>(p);
  return DispatchColumns<1>(p);
}

}  // namespace mtla::cpu::internal
