// Dense CPU operators on row-major float32 matrices. These are the CPU
// backend's building blocks and the reference the CUDA kernels are tested
// against. All functions are thread-compatible: distinct calls on disjoint
// outputs may run concurrently.
#ifndef MTLA_KERNELS_CPU_CPU_OPS_H_
#define MTLA_KERNELS_CPU_CPU_OPS_H_

#include <cstdint>
#include <vector>

#include "kernels/rope_style.h"

namespace mtla::cpu {

// y[n, out] = x[n, in] * W^T (+ bias), W row-major [out, in] as PyTorch stores
// nn.Linear weights; `bias` may be null. `ldx`/`ldy` are row strides (0 means
// in/out). `accumulate` adds to y instead of overwriting it. Uses BLAS.
void Linear(const float* x, int64_t n, int in, const float* weight, const float* bias, int out,
            float* y, int64_t ldx = 0, int64_t ldy = 0, bool accumulate = false);

// General row-major C[m, n] = alpha * A[m, k] * op(B) + beta * C, where op(B) is
// B[k, n] (trans_b false) or B[n, k]^T (trans_b true).
void Gemm(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// RMSNorm over each of `n` rows of width `d`: y = x * rsqrt(mean(x^2) + eps) * w.
// In place allowed (x == y).
void RmsNorm(const float* x, int64_t n, int d, const float* weight, float eps, float* y,
             int64_t ldx = 0, int64_t ldy = 0);

// LayerNorm over each row: y = (x - mean) * rsqrt(var + eps) * w + b (biased
// variance, as torch). `bias` may be null. In place allowed.
void LayerNorm(const float* x, int64_t n, int d, const float* weight, const float* bias, float eps,
               float* y, int64_t ldx = 0, int64_t ldy = 0);

// Rotary embedding tables for one rotary width. Angle for pair j at position p
// is p * theta^(-2j/dim).
class RopeTable {
 public:
  RopeTable(int dim, float theta, RopeStyle style);
  int dim() const { return dim_; }
  // Rotates `n` rows in place; row i (at x + i * ld) holds `heads` vectors of
  // width dim at stride `head_stride`, rotated by position positions[i].
  void Apply(float* x, int64_t n, int64_t ld, int heads, int64_t head_stride,
             const int32_t* positions) const;

 private:
  int dim_;
  RopeStyle style_;
  std::vector<float> inv_freq_;  // dim / 2 entries
};

// out[i, j] = silu(gate[i, j]) * up[i, j] (rows of width d, strides ld*).
void SiluMul(const float* gate, const float* up, int64_t n, int d, float* out, int64_t ld_gate,
             int64_t ld_up, int64_t ld_out);
// exp(x) for each of `count` values in place, branch-free so the loop
// vectorizes (the plain std::exp loop does not): relative error <= 2.5e-7 (2 ulp) for
// x in [-87.3, 88.3] (cpu_ops_test); below that range the result is
// exp(-87.3) (no subnormals), above it exp(88.3); NaN stays NaN.
void ExpInPlace(float* x, int64_t count);
// Softmax over each of `rows` contiguous rows of width n, in place
// (max-subtracted, with ExpInPlace).
void SoftmaxRows(float* x, int64_t rows, int64_t n);
// out[i, j] = x[i, j] * sigmoid(x[i, half + j]) for rows of width 2 * half
// (a GLU over the channels; sigmoid through ExpInPlace's exp).
void GluRows(const float* x, int64_t rows, int half, float* out);
// In-place ReLU over n*d contiguous values.
void Relu(float* x, int64_t count);
// y += x over count values.
void AddInPlace(float* y, const float* x, int64_t count);
// out[i] = table[ids[i]] * scale for rows of width d.
void EmbeddingLookup(const float* table, const int32_t* ids, int64_t n, int d, float scale,
                     float* out);

}  // namespace mtla::cpu

#endif  // MTLA_KERNELS_CPU_CPU_OPS_H_
