// Helpers shared by the CUDA kernel tests: the visible skip when no device is
// present, host<->device copies, dtype rounding, and the error measure
// ||out - ref|| / ||ref|| the tolerances are stated in.
#ifndef MTLA_TESTS_CUDA_CUDA_TEST_UTIL_H_
#define MTLA_TESTS_CUDA_CUDA_TEST_UTIL_H_

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/dtype.h"
#include "kernels/cuda/elementwise.h"

// Skips the test, naming the reason, when no CUDA device can be used.
#define MTLA_SKIP_WITHOUT_CUDA()                                                       \
  do {                                                                                 \
    auto mtla_devices_ = ::mtla::cuda::UsableDeviceCount();                            \
    if (!mtla_devices_.ok()) {                                                         \
      GTEST_SKIP() << "no CUDA device: " << mtla_devices_.status().message();          \
    }                                                                                  \
  } while (0)

#define MTLA_ASSERT_OK(expr)                      \
  do {                                            \
    const ::absl::Status mtla_s_ = (expr);        \
    ASSERT_TRUE(mtla_s_.ok()) << mtla_s_.ToString(); \
  } while (0)

namespace mtla::cuda::testing {

// Device allocation that fails the test (returns an empty buffer) on error.
inline DeviceBuffer Alloc(size_t bytes) {
  auto buffer = DeviceBuffer::Allocate(bytes);
  EXPECT_TRUE(buffer.ok()) << buffer.status().ToString();
  return buffer.ok() ? std::move(*buffer) : DeviceBuffer();
}

template <typename T>
DeviceBuffer Upload(const std::vector<T>& host) {
  DeviceBuffer buffer = Alloc(host.size() * sizeof(T));
  if (!host.empty()) {
    EXPECT_EQ(cudaMemcpy(buffer.data(), host.data(), host.size() * sizeof(T),
                         cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  return buffer;
}

template <typename T>
std::vector<T> Download(const void* device, size_t count) {
  std::vector<T> host(count);
  if (count > 0) {
    EXPECT_EQ(cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost),
              cudaSuccess);
  }
  return host;
}

// Float values stored in `dtype` on the device (rounded there).
inline DeviceBuffer UploadAs(const std::vector<float>& host, DType dtype) {
  DeviceBuffer staging = Upload(host);
  DeviceBuffer out = Alloc(host.size() * DTypeBytes(dtype));
  EXPECT_TRUE(ConvertFromFloat(staging.as<float>(), 1, static_cast<int>(host.size()), 0,
                               out.data(), dtype, 0, nullptr)
                  .ok());
  return out;
}

// Device values of `dtype`, widened to float on the host (NaN preserved).
inline std::vector<float> DownloadAsFloat(const void* device, DType dtype, size_t count) {
  DeviceBuffer staging = Alloc(count * sizeof(float));
  EXPECT_TRUE(ConvertToFloat(device, dtype, static_cast<int64_t>(count), staging.as<float>(),
                             nullptr)
                  .ok());
  return Download<float>(staging.data(), count);
}

// `values` rounded through `dtype` and back.
inline std::vector<float> RoundThrough(const std::vector<float>& values, DType dtype) {
  DeviceBuffer stored = UploadAs(values, dtype);
  return DownloadAsFloat(stored.data(), dtype, values.size());
}

inline std::vector<float> RandomVector(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// ||out - ref|| / ||ref|| over the entries selected by `mask` (all when empty);
// NaN or inf anywhere in out gives +inf.
inline double RelativeError(const std::vector<float>& out, const std::vector<float>& ref,
                            const std::vector<bool>& mask = {}) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!mask.empty() && !mask[i]) continue;
    if (!std::isfinite(out[i])) return INFINITY;
    diff += (static_cast<double>(out[i]) - ref[i]) * (static_cast<double>(out[i]) - ref[i]);
    norm += static_cast<double>(ref[i]) * ref[i];
  }
  return norm == 0.0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

// Storage rounding a float32 computation can add, per dtype, stated as
// ||out - ref|| / ||ref||: unit roundoff of the dtype times a small factor.
inline double StorageTolerance(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 1e-5;
    case DType::kF16: return 2e-3;   // 2^-11 roundoff
    case DType::kBF16: return 1.6e-2;  // 2^-8 roundoff
  }
  return 0.0;
}


}  // namespace mtla::cuda::testing

#endif  // MTLA_TESTS_CUDA_CUDA_TEST_UTIL_H_
