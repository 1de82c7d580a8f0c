// Storage types of the CUDA backend. Weights and the KV cache are stored in
// one of these; activations and accumulation are always float32. The header
// is plain C++ so that host code and flags can name a dtype without CUDA.
#ifndef MTLA_KERNELS_CUDA_DTYPE_H_
#define MTLA_KERNELS_CUDA_DTYPE_H_

#include <optional>
#include <string_view>

namespace mtla::cuda {

enum class DType {
  kF32,   // conformance mode: bit-for-bit float32 storage
  kF16,   // IEEE half
  kBF16,  // bfloat16
};

inline int DTypeBytes(DType t) { return t == DType::kF32 ? 4 : 2; }
inline const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "fp32";
    case DType::kF16: return "fp16";
    case DType::kBF16: return "bf16";
  }
  return "?";
}
// "fp32" | "fp16" | "bf16"; nullopt otherwise.
inline std::optional<DType> ParseDType(std::string_view name) {
  if (name == "fp32" || name == "float32") return DType::kF32;
  if (name == "fp16" || name == "float16") return DType::kF16;
  if (name == "bf16" || name == "bfloat16") return DType::kBF16;
  return std::nullopt;
}

}  // namespace mtla::cuda

#endif  // MTLA_KERNELS_CUDA_DTYPE_H_
