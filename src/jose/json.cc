#include "jose/json.h"

#include <cmath>
#include <set>
#include <utility>
#include <vector>

namespace wimse::jose {
namespace {

constexpr double kMaxNumericDate = 253402300799.0;  // 9999-12-31T23:59:59Z

// Builds a Json DOM from SAX events, rejecting duplicate members and excess depth. Returning
// false from any event stops the parser; the first error is kept in `error`.
class StrictDomBuilder : public nlohmann::json_sax<Json> {
 public:
  explicit StrictDomBuilder(size_t max_depth) : max_depth_(max_depth) {}

  bool null() override { return Value(Json(nullptr)); }
  bool boolean(bool val) override { return Value(Json(val)); }
  bool number_integer(number_integer_t val) override { return Value(Json(val)); }
  bool number_unsigned(number_unsigned_t val) override { return Value(Json(val)); }
  bool number_float(number_float_t val, const string_t& /*s*/) override {
    if (!std::isfinite(val)) {
      return Fail("JSON number out of range");
    }
    return Value(Json(val));
  }
  bool string(string_t& val) override { return Value(Json(std::move(val))); }
  bool binary(binary_t& /*val*/) override { return Fail("unexpected binary value"); }

  bool start_object(std::size_t /*elements*/) override {
    if (stack_.size() + 1 > max_depth_) {
      return Fail("JSON nested too deeply");
    }
    Json* obj = Place(Json::object());
    if (obj == nullptr) {
      return false;
    }
    stack_.push_back(obj);
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& val) override {
    if (!keys_.back().insert(val).second) {
      return Fail("duplicate member \"" + Printable(val) + "\"");
    }
    pending_ = &(*stack_.back())[val];
    return true;
  }
  bool end_object() override {
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t /*elements*/) override {
    if (stack_.size() + 1 > max_depth_) {
      return Fail("JSON nested too deeply");
    }
    Json* arr = Place(Json::array());
    if (arr == nullptr) {
      return false;
    }
    stack_.push_back(arr);
    keys_.emplace_back();  // unused for arrays; keeps the stacks aligned
    return true;
  }
  bool end_array() override {
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& /*ex*/) override {
    if (error_.empty()) {
      error_ = "invalid JSON at byte " + std::to_string(position);
    }
    return false;
  }

  Json& root() { return root_; }
  const std::string& error() const { return error_; }

 private:
  static std::string Printable(const std::string& s) {
    std::string out;
    for (char c : s.substr(0, 64)) {
      out.push_back((c >= 0x20 && c < 0x7f) ? c : '?');
    }
    return out;
  }
  bool Fail(std::string message) {
    if (error_.empty()) {
      error_ = std::move(message);
    }
    return false;
  }
  // Stores `v` at the current position; returns where it went.
  Json* Place(Json v) {
    if (stack_.empty()) {
      if (placed_root_) {
        Fail("trailing JSON value");
        return nullptr;
      }
      placed_root_ = true;
      root_ = std::move(v);
      return &root_;
    }
    Json* top = stack_.back();
    if (top->is_array()) {
      top->push_back(std::move(v));
      return &top->back();
    }
    *pending_ = std::move(v);
    return pending_;
  }
  bool Value(Json v) { return Place(std::move(v)) != nullptr; }

  size_t max_depth_;
  Json root_;
  bool placed_root_ = false;
  std::vector<Json*> stack_;
  std::vector<std::set<std::string>> keys_;
  Json* pending_ = nullptr;
  std::string error_;
};

}  // namespace

Result<Json> ParseJsonObject(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return Error(Layer::kParse, "JSON too large");
  }
  StrictDomBuilder builder(limits.max_depth);
  bool ok = Json::sax_parse(text.begin(), text.end(), &builder, Json::input_format_t::json,
                            /*strict=*/true, /*ignore_comments=*/false);
  if (!ok || !builder.error().empty()) {
    return Error(Layer::kParse,
                 builder.error().empty() ? std::string("invalid JSON") : builder.error());
  }
  if (!builder.root().is_object()) {
    return Error(Layer::kParse, "JSON is not an object");
  }
  return std::move(builder.root());
}

std::string SerializeJson(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Result<std::optional<std::string>> OptionalStringMember(const Json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end()) {
    return std::optional<std::string>();
  }
  if (!it->is_string()) {
    return Error(Layer::kParse, std::string(name) + " is not a string");
  }
  return std::optional<std::string>(it->get_ref<const std::string&>());
}

int64_t NumericDate::Floor() const { return static_cast<int64_t>(std::floor(value)); }
int64_t NumericDate::Ceil() const { return static_cast<int64_t>(std::ceil(value)); }

Result<std::optional<NumericDate>> OptionalNumericDate(const Json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end()) {
    return std::optional<NumericDate>();
  }
  double v = 0;
  if (it->is_number_integer() && !it->is_number_unsigned()) {
    int64_t i = it->get<int64_t>();
    if (i < 0) {
      return Error(Layer::kPolicy, std::string("invalid ") + name + ": negative");
    }
    v = static_cast<double>(i);
  } else if (it->is_number_unsigned()) {
    uint64_t u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(kMaxNumericDate)) {
      return Error(Layer::kPolicy, std::string("invalid ") + name + ": out of range");
    }
    v = static_cast<double>(u);
  } else if (it->is_number_float()) {
    v = it->get<double>();
    if (!std::isfinite(v) || v < 0) {
      return Error(Layer::kPolicy,
                   std::string("invalid ") + name + ": not a finite positive number");
    }
  } else {
    return Error(Layer::kPolicy, std::string("invalid ") + name + ": not a number");
  }
  if (v > kMaxNumericDate) {
    return Error(Layer::kPolicy, std::string("invalid ") + name + ": out of range");
  }
  return std::optional<NumericDate>(NumericDate{v});
}

}  // namespace wimse::jose
