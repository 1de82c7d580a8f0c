#include "kernels/cpu/cpu_ops.h"

#include <cblas.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace mtla::cpu {
namespace {

// exp(x) = 2^k * exp(r), k = round(x / ln 2), r = x - k ln 2 in [-ln2/2, ln2/2]
// (ln 2 split in two parts so k ln 2 is exact), exp(r) by its degree-6 Taylor
// polynomial (truncation error below 1e-8 relative there), 2^k built in the
// exponent bits (k in [-126, 127]: normal numbers only). No branches, no
// table: GCC vectorizes loops calling it. NaN is clamped like -inf (the
// comparison is false), so the integer conversion below is always defined.
inline float ExpNoBranch(float x) {
  x = x > -87.3f ? x : -87.3f;
  x = x < 88.3f ? x : 88.3f;
  const float k = std::nearbyint(x * 1.44269504088896341f);
  float r = x - k * 0.693359375f;  // ln 2 high part (exact in 9 bits)
  r = r - k * -2.12194440e-4f;     // ln 2 low part
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}

}  // namespace

void Gemm(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
              lda, b, ldb, beta, c, ldc);
}

void Linear(const float* x, int64_t n, int in, const float* weight, const float* bias, int out,
            float* y, int64_t ldx, int64_t ldy, bool accumulate) {
  if (ldx == 0) ldx = in;
  if (ldy == 0) ldy = out;
  if (n == 0) return;
  float beta = accumulate ? 1.0f : 0.0f;
  if (bias != nullptr) {
    if (!accumulate) {
      for (int64_t i = 0; i < n; ++i) std::memcpy(y + i * ldy, bias, sizeof(float) * out);
    } else {
      for (int64_t i = 0; i < n; ++i) AddInPlace(y + i * ldy, bias, out);
    }
    beta = 1.0f;
  }
  if (n == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, weight, in, x, 1, beta, y, 1);
    return;
  }
  Gemm(/*trans_b=*/true, n, out, in, 1.0f, x, ldx, weight, in, beta, y, ldy);
}

void RmsNorm(const float* x, int64_t n, int d, const float* weight, float eps, float* y,
             int64_t ldx, int64_t ldy) {
  if (ldx == 0) ldx = d;
  if (ldy == 0) ldy = d;
  for (int64_t i = 0; i < n; ++i) {
    const float* xr = x + i * ldx;
    float* yr = y + i * ldy;
    float sum_sq = 0.0f;
    // Vector partial sums (a serial float sum is one add latency per element).
#pragma omp simd reduction(+ : sum_sq)
    for (int j = 0; j < d; ++j) sum_sq += xr[j] * xr[j];
    const float inv = 1.0f / std::sqrt(sum_sq / d + eps);
    for (int j = 0; j < d; ++j) yr[j] = xr[j] * inv * weight[j];
  }
}

void LayerNorm(const float* x, int64_t n, int d, const float* weight, const float* bias, float eps,
               float* y, int64_t ldx, int64_t ldy) {
  if (ldx == 0) ldx = d;
  if (ldy == 0) ldy = d;
  for (int64_t i = 0; i < n; ++i) {
    const float* xr = x + i * ldx;
    float* yr = y + i * ldy;
    // Vector partial sums (a serial float sum is one add latency per element).
    float mean = 0.0f;
#pragma omp simd reduction(+ : mean)
    for (int j = 0; j < d; ++j) mean += xr[j];
    mean /= d;
    float var = 0.0f;
#pragma omp simd reduction(+ : var)
    for (int j = 0; j < d; ++j) {
      const float c = xr[j] - mean;
      var += c * c;
    }
    var /= d;
    const float inv = 1.0f / std::sqrt(var + eps);
    for (int j = 0; j < d; ++j) {
      const float v = (xr[j] - mean) * inv * weight[j];
      yr[j] = bias ? v + bias[j] : v;
    }
  }
}

RopeTable::RopeTable(int dim, float theta, RopeStyle style)
    : dim_(dim), style_(style), inv_freq_(dim / 2) {
  // Matches torch: 1 / theta ** (arange(0, dim, 2).float() / dim), in float32.
  for (int j = 0; j < dim / 2; ++j) {
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(dim);
    inv_freq_[j] = 1.0f / std::pow(theta, exponent);
  }
}

void RopeTable::Apply(float* x, int64_t n, int64_t ld, int heads, int64_t head_stride,
                      const int32_t* positions) const {
  const int half = dim_ / 2;
  for (int64_t i = 0; i < n; ++i) {
    const float pos = static_cast<float>(positions[i]);
    for (int j = 0; j < half; ++j) {
      const float angle = pos * inv_freq_[j];  // float32 product, as the references
      const float c = std::cos(angle);
      const float s = std::sin(angle);
      for (int h = 0; h < heads; ++h) {
        float* v = x + i * ld + h * head_stride;
        const int a = style_ == RopeStyle::kInterleaved ? 2 * j : j;
        const int b = style_ == RopeStyle::kInterleaved ? 2 * j + 1 : j + half;
        const float va = v[a];
        const float vb = v[b];
        v[a] = va * c - vb * s;
        v[b] = vb * c + va * s;
      }
    }
  }
}

void SiluMul(const float* gate, const float* up, int64_t n, int d, float* out, int64_t ld_gate,
             int64_t ld_up, int64_t ld_out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* g = gate + i * ld_gate;
    const float* u = up + i * ld_up;
    float* o = out + i * ld_out;
    for (int j = 0; j < d; ++j) o[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];
  }
}

void ExpInPlace(float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    x[i] = std::isnan(x[i]) ? x[i] : ExpNoBranch(x[i]);
  }
}

void SoftmaxRows(float* x, int64_t rows, int64_t n) {
  for (int64_t i = 0; i < rows; ++i) {
    float* r = x + i * n;
    float mx = r[0];
    for (int64_t j = 1; j < n; ++j) mx = std::max(mx, r[j]);
    float sum = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      r[j] = ExpNoBranch(r[j] - mx);
      sum += r[j];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < n; ++j) r[j] *= inv;
  }
}

void GluRows(const float* x, int64_t rows, int half, float* out) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* a = x + i * 2 * half;
    const float* b = a + half;
    float* o = out + i * half;
    for (int j = 0; j < half; ++j) o[j] = a[j] / (1.0f + ExpNoBranch(-b[j]));
  }
}

void Relu(float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void AddInPlace(float* y, const float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] += x[i];
}

void EmbeddingLookup(const float* table, const int32_t* ids, int64_t n, int d, float scale,
                     float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* src = table + static_cast<int64_t>(ids[i]) * d;
    float* dst = out + i * d;
    for (int j = 0; j < d; ++j) dst[j] = src[j] * scale;
  }
}

}  // namespace mtla::cpu
