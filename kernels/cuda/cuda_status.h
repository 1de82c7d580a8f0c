// CUDA and cuBLAS results as absl::Status, and the device query that decides
// whether the CUDA backend can run. No function here exits or throws.
//
// Thread-safety: all functions are thread-safe.
#ifndef MTLA_KERNELS_CUDA_CUDA_STATUS_H_
#define MTLA_KERNELS_CUDA_CUDA_STATUS_H_

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mtla::cuda {

// OK for cudaSuccess; otherwise Internal (ResourceExhausted for out of
// memory) with `what` and CUDA's error name and string.
absl::Status CudaStatus(cudaError_t error, const char* what);
absl::Status CublasStatus(cublasStatus_t status, const char* what);

// The error of the most recent kernel launch on this thread (cudaGetLastError).
absl::Status LaunchStatus(const char* kernel);

// Number of usable CUDA devices, or an error saying why there is none (no
// driver, driver too old, no device). Any failure of cudaGetDeviceCount is
// reported as the error, never as a crash.
absl::StatusOr<int> UsableDeviceCount();

// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)" for device `device`.
absl::StatusOr<std::string> DeviceDescription(int device);

}  // namespace mtla::cuda

#define MTLA_CUDA_RETURN_IF_ERROR(expr)                                           \
  do {                                                                            \
    ::absl::Status mtla_cuda_status_ = ::mtla::cuda::CudaStatus((expr), #expr);   \
    if (!mtla_cuda_status_.ok()) return mtla_cuda_status_;                        \
  } while (0)

#define MTLA_CUBLAS_RETURN_IF_ERROR(expr)                                         \
  do {                                                                            \
    ::absl::Status mtla_cuda_status_ = ::mtla::cuda::CublasStatus((expr), #expr); \
    if (!mtla_cuda_status_.ok()) return mtla_cuda_status_;                        \
  } while (0)

#endif  // MTLA_KERNELS_CUDA_CUDA_STATUS_H_
