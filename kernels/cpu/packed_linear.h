// A Linear layer's weights packed once into oneDNN's blocked layout, so every
// call runs oneDNN's matmul (JIT AVX2/AVX-512 kernels) without repacking the
// weights. OpenBLAS repacks a weight panel on every sgemm, which dominates at
// the small row counts of decoding (bench/linear_bench.cc measures both).
//
// Only compiled when oneDNN (Debian libdnnl-dev) is found: MTLA_HAVE_ONEDNN.
//
// Thread-safety: Apply may be called concurrently; primitives are created on
// first use of a (row chunk, strides, bias, accumulate) shape and cached: at
// most kMaxChunkShapes per (strides, bias, accumulate), whatever row counts
// the calls have (packed_row_chunks.h).
#ifndef MTLA_KERNELS_CPU_PACKED_LINEAR_H_
#define MTLA_KERNELS_CPU_PACKED_LINEAR_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace mtla::cpu {

class PackedLinear {
 public:
  // Packs `weight`, row-major [out, in] as nn.Linear stores it (copied; the
  // caller's buffer may go away). Errors: InvalidArgument for non-positive
  // dims, Internal when oneDNN rejects the shape.
  static absl::StatusOr<std::shared_ptr<const PackedLinear>> Create(const float* weight, int out,
                                                                     int in);
  ~PackedLinear();
  PackedLinear(const PackedLinear&) = delete;
  PackedLinear& operator=(const PackedLinear&) = delete;

  int in() const { return in_; }
  int out() const { return out_; }

  // y[n, out] = x[n, in] W^T (+ bias[out] when non-null), or y += ... when
  // `accumulate`. Row strides ldx >= in and ldy >= out (0: dense). Returns
  // false (writing nothing) when oneDNN cannot run this shape with an
  // optimized kernel (it would fall back to its slow reference code, e.g. for
  // strided rows); the caller then uses the unpacked weights.
  bool Apply(const float* x, int64_t n, const float* bias, float* y, int64_t ldx = 0,
             int64_t ldy = 0, bool accumulate = false) const;

 private:
  struct State;
  PackedLinear(int out, int in, std::unique_ptr<State> state);

  int out_;
  int in_;
  std::unique_ptr<State> state_;
};

}  // namespace mtla::cpu

#endif  // MTLA_KERNELS_CPU_PACKED_LINEAR_H_
