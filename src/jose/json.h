// Strict JSON for JOSE headers, JWT claim sets and JWKs.
//
// RFC 7519 §4 lets a parser either reject duplicate member names or take the last one; parsers
// that disagree on that are a known bypass (field case C22), so we reject duplicates at every
// depth, including names that only differ in how they are escaped ("a" vs "\u0061"). Input is
// bounded in size and nesting depth. Parsing never throws: nlohmann::json is driven through its
// SAX interface and every failure becomes an Error.
#ifndef WIMSE_JOSE_JSON_H_
#define WIMSE_JOSE_JSON_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/result.h"

namespace wimse::jose {

using Json = nlohmann::json;

// Bounds applied before and during parsing.
struct JsonLimits {
  size_t max_bytes = 8192;  // larger input is rejected without being parsed
  size_t max_depth = 8;     // nesting of objects and arrays; the top-level object is depth 1
};

// Parses `text` as one JSON object (nothing before or after it but whitespace). Errors are
// Layer::kParse: "JSON too large", "JSON nested too deeply", "duplicate member \"<name>\"",
// "invalid JSON at byte N", "JSON is not an object". Thread-safe.
Result<Json> ParseJsonObject(std::string_view text, const JsonLimits& limits = {});

// Serialises `value` compactly (no whitespace, members in sorted order). Invalid UTF-8 in
// strings is replaced rather than thrown on. Never fails.
std::string SerializeJson(const Json& value);

// Reads an optional string member: nullopt when absent, an error when present but not a string.
Result<std::optional<std::string>> OptionalStringMember(const Json& object, const char* name);

// A NumericDate (RFC 7519 §2) read strictly: a finite JSON number, integer or fraction, in
// [0, 253402300799] (year 9999). Strings, booleans, null, objects, negative numbers and values
// that overflow 64-bit integers are errors (field case C23). Fractions are kept as the float;
// callers compare with RoundDown/RoundUp as fits the check.
struct NumericDate {
  double value = 0;
  int64_t Floor() const;
  int64_t Ceil() const;
};
// Reads member `name`: nullopt when absent, an error "invalid <name>" when present but unusable.
Result<std::optional<NumericDate>> OptionalNumericDate(const Json& object, const char* name);

}  // namespace wimse::jose

#endif  // WIMSE_JOSE_JSON_H_
