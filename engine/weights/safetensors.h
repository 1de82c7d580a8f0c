// Read-only access to a .safetensors file (8-byte little-endian header length,
// JSON header, raw tensor bytes), memory-mapped.
//
// Open() validates the whole header before returning: header length within the
// file, well-formed JSON, known dtypes, shape-product x dtype-size equal to each
// byte range, every range inside the data section, and no two ranges
// overlapping. Errors name the file and the offending tensor.
//
// Thread-safety: a SafetensorsFile is immutable after Open(); concurrent reads
// are safe.
#ifndef MTLA_ENGINE_WEIGHTS_SAFETENSORS_H_
#define MTLA_ENGINE_WEIGHTS_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mtla {

enum class DType { kF32, kF16, kBF16, kF64, kI64, kI32 };

// "F32", "F16", ... as written in safetensors headers.
std::string_view DTypeName(DType dtype);
size_t DTypeSize(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  size_t offset = 0;  // byte offset inside the data section
  size_t nbytes = 0;
  int64_t num_elements() const;
};

class SafetensorsFile {
 public:
  // Maps `path` and validates its header. The mapping lives as long as the
  // returned object.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // The header's "__metadata__" (string -> string); empty when absent.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Tensor names in sorted order.
  std::vector<std::string> names() const;
  bool contains(std::string_view name) const;
  // nullptr when absent.
  const TensorInfo* find(std::string_view name) const;

  // Reads tensor `name` converted to float32 (F32, F16, BF16, F64 and integer
  // dtypes are converted). When `expected_shape` is non-empty the tensor's
  // shape must equal it exactly. NotFound names a missing tensor;
  // InvalidArgument names a tensor of the wrong shape.
  absl::StatusOr<std::vector<float>> ReadFloat(std::string_view name,
                                               const std::vector<int64_t>& expected_shape = {}) const;
  // Raw bytes of tensor `name` (valid while this object lives).
  absl::StatusOr<const uint8_t*> RawData(std::string_view name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo, std::less<>> tensors_;
};

// Half-precision conversions used by the loader (and tests).
float HalfToFloat(uint16_t bits);
float BFloat16ToFloat(uint16_t bits);

}  // namespace mtla

#endif  // MTLA_ENGINE_WEIGHTS_SAFETENSORS_H_
