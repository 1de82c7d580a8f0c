#include "engine/config/json_fields.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mtla {

using Json = nlohmann::json;

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("field '", field, "' ", what));
}

absl::Status RequirePositive(absl::string_view field, int value) {
  if (value > 0) return absl::OkStatus();
  return FieldError(field, absl::StrCat("must be > 0 (got ", value, ")"));
}

absl::Status RequirePositive(absl::string_view field, float value) {
  if (std::isfinite(value) && value > 0.0f) return absl::OkStatus();
  return FieldError(field, absl::StrCat("must be a finite value > 0 (got ", value, ")"));
}

absl::StatusOr<Json> ParseJson(const std::string& text, absl::string_view source) {
  Json json;
  try {
    json = Json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": cannot parse JSON: ", e.what()));
  }
  if (json.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(source, ": invalid JSON"));
  return json;
}

absl::Status WithSource(absl::string_view source, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(source, ": ", status.message()));
}

const Json* JsonFields::Find(absl::string_view name, bool null_is_absent) const {
  auto it = object_.find(std::string(name));
  if (it == object_.end()) return nullptr;
  if (it->is_null() && (null_is_absent || null_ == Null::kAbsent)) return nullptr;
  return &*it;
}

absl::StatusOr<int> JsonFields::ToInt(absl::string_view name, const Json& value) {
  if (!value.is_number_integer()) return FieldError(name, "must be an integer");
  if (value.is_number_unsigned()) {
    if (value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
      return FieldError(name, "is out of range");
    }
    return static_cast<int>(value.get<uint64_t>());
  }
  const int64_t v = value.get<int64_t>();
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
    return FieldError(name, "is out of range");
  }
  return static_cast<int>(v);
}

absl::StatusOr<int> JsonFields::Int(absl::string_view name, std::optional<int> fallback,
                                    bool null_is_default) const {
  const Json* value = Find(name, null_is_default);
  if (value == nullptr) {
    if (fallback.has_value()) return *fallback;
    return FieldError(name, "is required");
  }
  return ToInt(name, *value);
}

absl::StatusOr<float> JsonFields::Float(absl::string_view name,
                                        std::optional<float> fallback) const {
  const Json* value = Find(name);
  if (value == nullptr) {
    if (fallback.has_value()) return *fallback;
    return FieldError(name, "is required");
  }
  if (!value->is_number()) return FieldError(name, "must be a number");
  return static_cast<float>(value->get<double>());
}

absl::StatusOr<bool> JsonFields::Bool(absl::string_view name, bool fallback) const {
  const Json* value = Find(name);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) return FieldError(name, "must be a boolean");
  return value->get<bool>();
}

absl::StatusOr<std::string> JsonFields::String(absl::string_view name,
                                               std::optional<std::string> fallback) const {
  const Json* value = Find(name);
  if (value == nullptr) {
    if (fallback.has_value()) return *fallback;
    return FieldError(name, "is required");
  }
  if (!value->is_string()) return FieldError(name, "must be a string");
  return value->get<std::string>();
}

absl::StatusOr<int> JsonFields::TokenId(absl::string_view name, int fallback) const {
  const Json* value = Find(name, /*null_is_absent=*/true);
  if (value == nullptr) return fallback;
  if (value->is_array()) {
    if (value->empty()) return FieldError(name, "must not be an empty list");
    return ToInt(name, value->front());
  }
  return ToInt(name, *value);
}

absl::StatusOr<std::vector<int>> JsonFields::IntList(absl::string_view name,
                                                     const std::string& fallback) const {
  const Json* value = Find(name);
  std::vector<int> out;
  if (value != nullptr && value->is_array()) {
    for (const Json& item : *value) {
      if (!item.is_number_integer()) return FieldError(name, "must hold integers");
      out.push_back(item.get<int>());
    }
  } else {
    std::string text = fallback;
    if (value != nullptr) {
      if (!value->is_string()) return FieldError(name, "must be a string like \"5,5\"");
      text = value->get<std::string>();
    }
    for (absl::string_view part : absl::StrSplit(text, ',')) {
      int k = 0;
      if (!absl::SimpleAtoi(part, &k)) {
        return FieldError(name, absl::StrCat("holds a non-integer entry \"", part, "\""));
      }
      out.push_back(k);
    }
  }
  if (out.empty()) return FieldError(name, "must not be empty");
  return out;
}

}  // namespace mtla
