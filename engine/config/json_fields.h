// Typed, error-naming reads of one JSON object's fields: the only place config
// loaders look values up by string. Errors are InvalidArgument "field 'NAME' ...".
#ifndef MTLA_ENGINE_CONFIG_JSON_FIELDS_H_
#define MTLA_ENGINE_CONFIG_JSON_FIELDS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace mtla {

absl::Status FieldError(absl::string_view field, absl::string_view what);
absl::Status RequirePositive(absl::string_view field, int value);
absl::Status RequirePositive(absl::string_view field, float value);

// Parses `text` without exceptions; errors are InvalidArgument prefixed with
// `source` (a path, or "config.json").
absl::StatusOr<nlohmann::json> ParseJson(const std::string& text, absl::string_view source);
// `status` with "`source`: " in front of its message (OK stays OK).
absl::Status WithSource(absl::string_view source, const absl::Status& status);

class JsonFields {
 public:
  // What a JSON null means: the field's default (kAbsent), or a wrong type
  // (kInvalid; individual reads may still accept it, see Int).
  enum class Null { kAbsent, kInvalid };
  // `object` must outlive this.
  JsonFields(const nlohmann::json& object, Null null) : object_(object), null_(null) {}

  // nullptr when the field is absent, or null where null means absent.
  const nlohmann::json* Find(absl::string_view name, bool null_is_absent = false) const;

  // A required field when `fallback` is empty. `null_is_default` treats null
  // as absent for this field whatever the object's policy.
  absl::StatusOr<int> Int(absl::string_view name, std::optional<int> fallback = std::nullopt,
                          bool null_is_default = false) const;
  absl::StatusOr<float> Float(absl::string_view name,
                              std::optional<float> fallback = std::nullopt) const;
  absl::StatusOr<bool> Bool(absl::string_view name, bool fallback) const;
  absl::StatusOr<std::string> String(absl::string_view name,
                                     std::optional<std::string> fallback = std::nullopt) const;
  // A token id: an integer, null (-> fallback) or a non-empty list of integers
  // (-> its first element; transformers allows several EOS ids).
  absl::StatusOr<int> TokenId(absl::string_view name, int fallback) const;
  // A list of integers, as a JSON list or as fairseq's "5,5" string.
  absl::StatusOr<std::vector<int>> IntList(absl::string_view name,
                                           const std::string& fallback) const;

 private:
  static absl::StatusOr<int> ToInt(absl::string_view name, const nlohmann::json& value);
  const nlohmann::json& object_;
  Null null_;
};

}  // namespace mtla

#endif  // MTLA_ENGINE_CONFIG_JSON_FIELDS_H_
