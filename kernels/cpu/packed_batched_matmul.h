// Batched small matrix products on weights pre-packed once for oneDNN's
// matmul: Y_b = X_b W_b for b < batch, one primitive for all b. The MTLA
// layer's absorbed per-head products (q_nope W_UK[h], latent W_UV[h]^T) run
// here, batched over heads, instead of one OpenBLAS sgemm per head (which
// repacks its weights on every call).
//
// Only compiled with oneDNN (MTLA_HAVE_ONEDNN).
//
// Thread-safety: Apply may be called concurrently; primitives are created on
// first use of a (row chunk, strides) shape and cached: at most
// kMaxChunkShapes per stride combination (packed_row_chunks.h).
#ifndef MTLA_KERNELS_CPU_PACKED_BATCHED_MATMUL_H_
#define MTLA_KERNELS_CPU_PACKED_BATCHED_MATMUL_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace mtla::cpu {

// Strides (in floats) of a [batch, rows, cols] operand whose columns are
// contiguous.
struct BatchedStrides {
  int64_t batch = 0;
  int64_t row = 0;
};

class PackedBatchedMatmul {
 public:
  // W_b [k, n] with element (b, i, j) at weights[b * k * n + i * n + j]
  // (`transposed` false), or at weights[b * k * n + j * k + i] (`transposed`
  // true: each W_b stored as its transpose [n, k]). Copied and packed.
  // Errors: InvalidArgument for non-positive dims, Internal when oneDNN
  // rejects the shape.
  static absl::StatusOr<std::shared_ptr<const PackedBatchedMatmul>> Create(const float* weights,
                                                                           int batch, int k, int n,
                                                                           bool transposed);
  ~PackedBatchedMatmul();
  PackedBatchedMatmul(const PackedBatchedMatmul&) = delete;
  PackedBatchedMatmul& operator=(const PackedBatchedMatmul&) = delete;

  int batch() const { return batch_; }
  int k() const { return k_; }
  int n() const { return n_; }

  // y_b[rows, n] = x_b[rows, k] W_b for every b. Returns false (writing
  // nothing) when oneDNN has only its reference kernel for these strides;
  // the caller then computes the product another way.
  bool Apply(const float* x, int64_t rows, BatchedStrides x_strides, float* y,
             BatchedStrides y_strides) const;

 private:
  struct State;
  PackedBatchedMatmul(int batch, int k, int n, std::unique_ptr<State> state);
  int batch_;
  int k_;
  int n_;
  std::unique_ptr<State> state_;
};

}  // namespace mtla::cpu

#endif  // MTLA_KERNELS_CPU_PACKED_BATCHED_MATMUL_H_
