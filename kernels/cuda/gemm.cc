#include "kernels/cuda/gemm.h"

#include <utility>

#include "kernels/cuda/cuda_status.h"

namespace mtla::cuda {
namespace {

cudaDataType_t CudaType(DType dtype) {
  switch (dtype) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

}  // namespace

absl::StatusOr<BlasHandle> BlasHandle::Create(cudaStream_t stream) {
  BlasHandle blas;
  MTLA_CUBLAS_RETURN_IF_ERROR(cublasCreate(&blas.handle_));
  MTLA_CUBLAS_RETURN_IF_ERROR(cublasSetStream(blas.handle_, stream));
  // Pure float32 math: no TF32 down-conversion in fp32 mode.
  MTLA_CUBLAS_RETURN_IF_ERROR(cublasSetMathMode(blas.handle_, CUBLAS_DEFAULT_MATH));
  return blas;
}

BlasHandle::~BlasHandle() {
  if (handle_ != nullptr) cublasDestroy(handle_);
}

BlasHandle::BlasHandle(BlasHandle&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)) {}

BlasHandle& BlasHandle::operator=(BlasHandle&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) cublasDestroy(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

absl::Status Gemm(const BlasHandle& blas, DType dtype, const GemmArgs& g) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return absl::OkStatus();
  // Row-major C = A op(B) is column-major C^T = op(B)^T A^T: swap the operands.
  const cudaDataType_t type = CudaType(dtype);
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (g.batch == 1) {
    MTLA_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(
        blas.get(), op_b, CUBLAS_OP_N, static_cast<int>(g.n), static_cast<int>(g.m),
        static_cast<int>(g.k), &g.alpha, g.b, type, static_cast<int>(g.ldb), g.a, type,
        static_cast<int>(g.lda), &g.beta, g.c, CUDA_R_32F, static_cast<int>(g.ldc),
        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return absl::OkStatus();
  }
  MTLA_CUBLAS_RETURN_IF_ERROR(cublasGemmStridedBatchedEx(
      blas.get(), op_b, CUBLAS_OP_N, static_cast<int>(g.n), static_cast<int>(g.m),
      static_cast<int>(g.k), &g.alpha, g.b, type, static_cast<int>(g.ldb), g.stride_b, g.a, type,
      static_cast<int>(g.lda), g.stride_a, &g.beta, g.c, CUDA_R_32F, static_cast<int>(g.ldc),
      g.stride_c, g.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

absl::Status Linear(const BlasHandle& blas, DType dtype, const void* x, int64_t n, int in,
                    const void* weight, int out, float* y, int64_t ldx, int64_t ldy, float beta) {
  GemmArgs g;
  g.trans_b = true;
  g.m = n;
  g.n = out;
  g.k = in;
  g.beta = beta;
  g.a = x;
  g.lda = ldx ? ldx : in;
  g.b = weight;
  g.ldb = in;
  g.c = y;
  g.ldc = ldy ? ldy : out;
  return Gemm(blas, dtype, g);
}

}  // namespace mtla::cuda
