#include "kernels/cuda/cuda_status.h"

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mtla::cuda {

absl::Status CudaStatus(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return absl::OkStatus();
  std::string message =
      absl::StrCat(what, ": ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ")");
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

absl::Status CublasStatus(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  std::string message = absl::StrCat(what, ": ", cublasGetStatusName(status), " (",
                                     cublasGetStatusString(status), ")");
  if (status == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

absl::Status LaunchStatus(const char* kernel) {
  return CudaStatus(cudaGetLastError(), kernel);
}

absl::StatusOr<int> UsableDeviceCount() {
  // Without the NVIDIA kernel driver the runtime can spend seconds failing;
  // answer at once (tests skip per case, hundreds of processes).
  if (!std::filesystem::exists("/dev/nvidiactl") &&
      !std::filesystem::exists("/proc/driver/nvidia/version")) {
    return absl::UnavailableError(
        "no NVIDIA driver (neither /dev/nvidiactl nor /proc/driver/nvidia/version exists)");
  }
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    // Clear the sticky error so that later calls on this thread do not see it.
    cudaGetLastError();
    return absl::UnavailableError(absl::StrCat("cudaGetDeviceCount: ", cudaGetErrorName(error),
                                               " (", cudaGetErrorString(error), ")"));
  }
  if (count == 0) return absl::UnavailableError("cudaGetDeviceCount: no CUDA device");
  return count;
}

absl::StatusOr<std::string> DeviceDescription(int device) {
  cudaDeviceProp prop;
  MTLA_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device));
  return absl::StrFormat("%s (sm_%d%d, %d SMs, %.1f GiB)", prop.name, prop.major, prop.minor,
                         prop.multiProcessorCount,
                         static_cast<double>(prop.totalGlobalMem) / (1u << 30));
}

}  // namespace mtla::cuda
