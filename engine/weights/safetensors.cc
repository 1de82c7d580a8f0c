// Safetensors reader: POSIX mmap plus a header validator that rejects every
// malformed input with a status (never a crash or an exception).
#include "engine/weights/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "engine/common/status_macros.h"
#include "nlohmann/json.hpp"

namespace mtla {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";

// Every dtype this loader accepts, with its header spelling.
constexpr std::pair<DType, std::string_view> kDTypeNames[] = {
    {DType::kF32, "F32"}, {DType::kF16, "F16"}, {DType::kBF16, "BF16"},
    {DType::kF64, "F64"}, {DType::kI64, "I64"}, {DType::kI32, "I32"},
};

bool ParseDType(std::string_view text, DType* out) {
  for (const auto& [dtype, name] : kDTypeNames) {
    if (name == text) {
      *out = dtype;
      return true;
    }
  }
  return false;
}

// Debian's Abseil keeps absl::string_view distinct from std::string_view.
absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Error helpers: every message starts with the file, then the tensor if any.
absl::Status FileError(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}
absl::Status TensorError(const std::string& path, absl::string_view tensor, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", tensor, "': ", what));
}

// Reads a JSON value as a non-negative integer that fits in uint64_t.
bool AsNonNegative(const Json& value, uint64_t* out) {
  if (value.is_number_unsigned()) {
    *out = value.get<uint64_t>();
    return true;
  }
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(value.get<int64_t>());
    return true;
  }
  return false;
}

// Validates one header entry (everything except the cross-tensor overlap
// check) against a data section of `data_size` bytes.
absl::StatusOr<TensorInfo> ParseTensorEntry(const std::string& path, const std::string& name,
                                            const Json& entry, size_t data_size) {
  if (!entry.is_object()) return TensorError(path, name, "header entry is not a JSON object");

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    return TensorError(path, name, "missing or non-string 'dtype'");
  }
  TensorInfo info;
  info.name = name;
  const std::string& dtype_text = dtype_it->get_ref<const std::string&>();
  if (!ParseDType(dtype_text, &info.dtype)) {
    return TensorError(path, name, absl::StrCat("unsupported dtype '", dtype_text, "'"));
  }

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) {
    return TensorError(path, name, "missing or non-array 'shape'");
  }
  // Product of dims in bytes, with overflow checks: a hostile header must not
  // wrap around to a small size that passes the range check.
  uint64_t nbytes = DTypeSize(info.dtype);
  for (const Json& dim : *shape_it) {
    if (!dim.is_number_integer()) return TensorError(path, name, "shape entries must be integers");
    uint64_t d = 0;
    if (!AsNonNegative(dim, &d)) {
      return TensorError(path, name, absl::StrCat("negative dimension ", dim.get<int64_t>()));
    }
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(nbytes, d, &nbytes)) {
      return TensorError(path, name, "shape is too large");
    }
    info.shape.push_back(static_cast<int64_t>(d));
  }

  auto offsets_it = entry.find("data_offsets");
  uint64_t begin = 0, end = 0;
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !AsNonNegative((*offsets_it)[0], &begin) || !AsNonNegative((*offsets_it)[1], &end)) {
    return TensorError(path, name, "'data_offsets' must be two non-negative integers");
  }
  if (begin > end) {
    return TensorError(path, name, absl::StrCat("data_offsets begin ", begin, " > end ", end));
  }
  if (end > data_size) {
    return TensorError(path, name,
                       absl::StrCat("data_offsets [", begin, ", ", end,
                                    ") extend past the data section (", data_size, " bytes)"));
  }
  if (nbytes != end - begin) {
    return TensorError(path, name,
                       absl::StrCat("shape [", absl::StrJoin(info.shape, ", "), "] of ", dtype_text,
                                    " needs ", nbytes, " bytes but data_offsets span ",
                                    end - begin));
  }
  info.offset = static_cast<size_t>(begin);
  info.nbytes = static_cast<size_t>(nbytes);
  return info;
}

// Converts `count` elements of `dtype` starting at `src` (any alignment).
template <typename T, typename Convert>
void ConvertElements(const uint8_t* src, size_t count, float* dst, Convert convert) {
  for (size_t i = 0; i < count; ++i) {
    T value;
    std::memcpy(&value, src + i * sizeof(T), sizeof(T));
    dst[i] = convert(value);
  }
}

}  // namespace

std::string_view DTypeName(DType dtype) {
  for (const auto& [d, name] : kDTypeNames) {
    if (d == dtype) return name;
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF64:
    case DType::kI64:
      return 8;
  }
  return 0;
}

int64_t TensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // cannot overflow: Open() bounded nbytes.
  return n;
}

float HalfToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  uint32_t out;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    std::memcpy(&out, &magnitude, sizeof(out));
    out |= sign;
  } else if (exponent == 0x1f) {
    out = sign | 0x7f800000u | (mantissa << 13);  // inf, or NaN keeping its payload
  } else {
    out = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float result;
  std::memcpy(&result, &out, sizeof(result));
  return result;
}

float BFloat16ToFloat(uint16_t bits) {
  const uint32_t out = static_cast<uint32_t>(bits) << 16;
  float result;
  std::memcpy(&result, &out, sizeof(result));
  return result;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) munmap(mapping_, mapping_size_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string message = absl::StrCat(path, ": cannot open: ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(message) : absl::UnavailableError(message);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return FileError(path, "not a regular file");
  }
  const size_t file_size = static_cast<size_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    return FileError(path, absl::StrCat("file is ", file_size,
                                        " bytes, shorter than the 8-byte header length"));
  }
  void* mapping = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping keeps its own reference to the file
  if (mapping == MAP_FAILED) {
    return absl::UnavailableError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
  }
  file->mapping_ = mapping;  // from here on the destructor unmaps
  file->mapping_size_ = file_size;
  const auto* bytes = static_cast<const uint8_t*>(mapping);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > file_size - 8) {
    return FileError(path, absl::StrCat("header length ", header_len, " exceeds the ",
                                        file_size - 8, " bytes after the length field"));
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  file->data_ = bytes + 8 + header_len;
  const size_t data_size = file_size - 8 - static_cast<size_t>(header_len);

  // Parse without exceptions; the callback records duplicate top-level keys,
  // which the DOM would otherwise collapse silently.
  std::set<std::string> seen_keys;
  std::string duplicate_key;
  Json header;
  try {
    auto on_event = [&](int depth, Json::parse_event_t event, Json& parsed) {
      if (depth == 1 && event == Json::parse_event_t::key && parsed.is_string()) {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!seen_keys.insert(key).second && duplicate_key.empty()) duplicate_key = key;
      }
      return true;
    };
    header = Json::parse(header_begin, header_begin + header_len, on_event,
                         /*allow_exceptions=*/false);
  } catch (const std::exception& e) {  // e.g. std::bad_alloc on a huge header
    return FileError(path, absl::StrCat("cannot parse header: ", e.what()));
  }
  if (header.is_discarded()) return FileError(path, "header is not valid JSON");
  if (!header.is_object()) return FileError(path, "header is not a JSON object");
  if (!duplicate_key.empty()) return TensorError(path, duplicate_key, "appears twice in the header");

  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      if (!value.is_object()) return FileError(path, "'__metadata__' is not a JSON object");
      for (const auto& [meta_key, meta_value] : value.items()) {
        if (!meta_value.is_string()) {
          return FileError(path, absl::StrCat("'__metadata__' entry '", meta_key,
                                              "' is not a string"));
        }
        file->metadata_[meta_key] = meta_value.get<std::string>();
      }
      continue;
    }
    ASSIGN_OR_RETURN(TensorInfo info, ParseTensorEntry(path, key, value, data_size));
    file->tensors_.emplace(key, std::move(info));
  }

  // Overlap check: sort non-empty ranges by start; each must begin at or after
  // the furthest end seen so far. Empty tensors occupy no bytes.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& [name, info] : file->tensors_) {
    if (info.nbytes > 0) by_offset.push_back(&info);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->offset != b->offset ? a->offset < b->offset : a->name < b->name;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& prev = *by_offset[i - 1];
    const TensorInfo& cur = *by_offset[i];
    if (cur.offset < prev.offset + prev.nbytes) {
      return TensorError(path, cur.name,
                         absl::StrCat("data_offsets [", cur.offset, ", ", cur.offset + cur.nbytes,
                                      ") overlap tensor '", prev.name, "' [", prev.offset, ", ",
                                      prev.offset + prev.nbytes, ")"));
    }
  }
  return file;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, info] : tensors_) out.push_back(name);
  return out;
}

bool SafetensorsFile::contains(std::string_view name) const { return find(name) != nullptr; }

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

absl::StatusOr<const uint8_t*> SafetensorsFile::RawData(std::string_view name) const {
  const TensorInfo* info = find(name);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor named '", AsAbsl(name), "'"));
  }
  return data_ + info->offset;
}

absl::StatusOr<std::vector<float>> SafetensorsFile::ReadFloat(
    std::string_view name, const std::vector<int64_t>& expected_shape) const {
  ASSIGN_OR_RETURN(const uint8_t* src, RawData(name));
  const TensorInfo& info = *find(name);
  if (!expected_shape.empty() && info.shape != expected_shape) {
    return TensorError(path_, AsAbsl(name),
                       absl::StrCat("shape [", absl::StrJoin(info.shape, ", "),
                                    "] differs from the expected [",
                                    absl::StrJoin(expected_shape, ", "), "]"));
  }
  const size_t count = static_cast<size_t>(info.num_elements());
  std::vector<float> out(count);
  switch (info.dtype) {
    case DType::kF32:
      if (count > 0) std::memcpy(out.data(), src, count * sizeof(float));
      break;
    case DType::kF16:
      ConvertElements<uint16_t>(src, count, out.data(), HalfToFloat);
      break;
    case DType::kBF16:
      ConvertElements<uint16_t>(src, count, out.data(), BFloat16ToFloat);
      break;
    case DType::kF64:
      ConvertElements<double>(src, count, out.data(), [](double v) { return static_cast<float>(v); });
      break;
    case DType::kI32:
      ConvertElements<int32_t>(src, count, out.data(), [](int32_t v) { return static_cast<float>(v); });
      break;
    case DType::kI64:
      ConvertElements<int64_t>(src, count, out.data(), [](int64_t v) { return static_cast<float>(v); });
      break;
  }
  return out;
}

}  // namespace mtla
