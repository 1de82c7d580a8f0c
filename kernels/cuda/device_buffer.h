// Owning handles to one CUDA allocation: DeviceBuffer (cudaMalloc) and
// PinnedBuffer (cudaMallocHost, for the per-step plan uploads). Buffers are
// allocated when a backend or test is set up, never inside a step.
//
// Thread-safety: thread-compatible. Move-only.
#ifndef MTLA_KERNELS_CUDA_DEVICE_BUFFER_H_
#define MTLA_KERNELS_CUDA_DEVICE_BUFFER_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_status.h"

namespace mtla::cuda {

// `Memory` provides static Allocate(void**, size_t) -> cudaError_t and Free(void*).
template <typename Memory>
class CudaBuffer {
 public:
  CudaBuffer() = default;
  ~CudaBuffer() { Reset(); }
  CudaBuffer(CudaBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  CudaBuffer& operator=(CudaBuffer&& other) noexcept {
    if (this != &other) {
      Reset();
      data_ = std::exchange(other.data_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;

  // ResourceExhausted when there is no room; a zero-byte buffer is valid and
  // holds no memory.
  static absl::StatusOr<CudaBuffer> Allocate(size_t bytes) {
    CudaBuffer buffer;
    if (bytes == 0) return buffer;
    void* ptr = nullptr;
    MTLA_CUDA_RETURN_IF_ERROR(Memory::Allocate(&ptr, bytes));
    buffer.data_ = ptr;
    buffer.bytes_ = bytes;
    return buffer;
  }

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void Reset() {
    if (data_ != nullptr) Memory::Free(data_);  // errors here have no one to report to
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

struct DeviceMemory {
  static cudaError_t Allocate(void** ptr, size_t bytes) { return cudaMalloc(ptr, bytes); }
  static void Free(void* ptr) { cudaFree(ptr); }
};
struct PinnedHostMemory {
  static cudaError_t Allocate(void** ptr, size_t bytes) { return cudaMallocHost(ptr, bytes); }
  static void Free(void* ptr) { cudaFreeHost(ptr); }
};

using DeviceBuffer = CudaBuffer<DeviceMemory>;
using PinnedBuffer = CudaBuffer<PinnedHostMemory>;

}  // namespace mtla::cuda

#endif  // MTLA_KERNELS_CUDA_DEVICE_BUFFER_H_
