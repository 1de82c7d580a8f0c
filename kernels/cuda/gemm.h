// Projections through cuBLAS: row-major GEMMs with operands in the storage
// dtype, float32 output and float32 accumulation (CUBLAS_COMPUTE_32F; no
// TF32, so fp32 mode matches the CPU backend up to summation order).
#ifndef MTLA_KERNELS_CUDA_GEMM_H_
#define MTLA_KERNELS_CUDA_GEMM_H_

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kernels/cuda/dtype.h"

namespace mtla::cuda {

// Owns a cuBLAS handle bound to one stream. Thread-compatible; move-only.
class BlasHandle {
 public:
  static absl::StatusOr<BlasHandle> Create(cudaStream_t stream);
  BlasHandle() = default;
  ~BlasHandle();
  BlasHandle(BlasHandle&& other) noexcept;
  BlasHandle& operator=(BlasHandle&& other) noexcept;
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

// Row-major, `batch` independent products (strides in elements):
//   C_b[m, n] = alpha * A_b[m, k] * op(B_b) + beta * C_b
// op(B) = B[k, n] (trans_b false) or B[n, k]^T (trans_b true). A and B are in
// `dtype`, C is float32.
struct GemmArgs {
  bool trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f, beta = 0.0f;
  const void* a = nullptr;
  int64_t lda = 0, stride_a = 0;
  const void* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  float* c = nullptr;
  int64_t ldc = 0, stride_c = 0;
  int batch = 1;
};
absl::Status Gemm(const BlasHandle& blas, DType dtype, const GemmArgs& args);

// y[n, out] = x[n, in] * W^T (+ beta * y), W row-major [out, in] (nn.Linear).
// x and W in `dtype`, y float32. Row strides ldx / ldy (0: dense).
absl::Status Linear(const BlasHandle& blas, DType dtype, const void* x, int64_t n, int in,
                    const void* weight, int out, float* y, int64_t ldx = 0, int64_t ldy = 0,
                    float beta = 0.0f);

}  // namespace mtla::cuda

#endif  // MTLA_KERNELS_CUDA_GEMM_H_
