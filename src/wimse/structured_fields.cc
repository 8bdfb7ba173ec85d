#include "wimse/structured_fields.h"

#include <openssl/evp.h>

namespace wimse::sf {
namespace {

constexpr int64_t kMaxInteger = 999999999999999;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLcAlpha(char c) { return c >= 'a' && c <= 'z'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
// tchar (RFC 9110 §5.6.2)
bool IsTchar(char c) {
  return IsAlpha(c) || IsDigit(c) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
bool IsKeyChar(char c) {
  return IsLcAlpha(c) || IsDigit(c) || c == '_' || c == '-' || c == '.' || c == '*';
}

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  Result<sf::Dictionary> ParseDict() {
    sf::Dictionary out;
    SkipSp();
    if (Done()) {
      return out;
    }
    while (true) {
      WIMSE_ASSIGN_OR_RETURN(std::string key, Key());
      for (const Member& m : out) {
        if (m.key == key) {
          return Err("duplicate dictionary key \"" + key + "\"");
        }
      }
      Member m;
      m.key = key;
      if (Peek() == '=') {
        ++pos_;
        if (Peek() == '(') {
          m.is_inner_list = true;
          WIMSE_ASSIGN_OR_RETURN(m.list, ParseInnerList());
        } else {
          WIMSE_ASSIGN_OR_RETURN(m.item, ParseItem());
        }
      } else {
        m.item.value = BareItem::Boolean(true);
        WIMSE_ASSIGN_OR_RETURN(m.item.params, Params());
      }
      out.push_back(std::move(m));
      SkipOws();
      if (Done()) {
        return out;
      }
      if (Peek() != ',') {
        return Err("expected ',' between dictionary members");
      }
      ++pos_;
      SkipOws();
      if (Done()) {
        return Err("trailing ',' in dictionary");
      }
    }
  }

 private:
  Error Err(std::string what) const {
    return Error(Layer::kParse, "structured field: " + what + " at byte " + std::to_string(pos_));
  }
  bool Done() const { return pos_ >= s_.size(); }
  char Peek() const { return Done() ? '\0' : s_[pos_]; }
  void SkipSp() {
    while (!Done() && s_[pos_] == ' ') {
      ++pos_;
    }
  }
  void SkipOws() {
    while (!Done() && (s_[pos_] == ' ' || s_[pos_] == '\t')) {
      ++pos_;
    }
  }

  Result<std::string> Key() {
    if (!(IsLcAlpha(Peek()) || Peek() == '*')) {
      return Err("invalid key");
    }
    size_t start = pos_;
    while (!Done() && IsKeyChar(s_[pos_])) {
      ++pos_;
    }
    return std::string(s_.substr(start, pos_ - start));
  }

  Result<Parameters> Params() {
    Parameters out;
    while (Peek() == ';') {
      ++pos_;
      SkipSp();
      WIMSE_ASSIGN_OR_RETURN(std::string key, Key());
      for (const auto& p : out) {
        if (p.first == key) {
          return Err("duplicate parameter \"" + key + "\"");
        }
      }
      BareItem value = BareItem::Boolean(true);
      if (Peek() == '=') {
        ++pos_;
        WIMSE_ASSIGN_OR_RETURN(value, Bare());
      }
      out.emplace_back(std::move(key), std::move(value));
    }
    return out;
  }

  Result<Item> ParseItem() {
    Item item;
    WIMSE_ASSIGN_OR_RETURN(item.value, Bare());
    WIMSE_ASSIGN_OR_RETURN(item.params, Params());
    return item;
  }

  Result<InnerList> ParseInnerList() {
    ++pos_;  // '('
    InnerList out;
    while (!Done()) {
      SkipSp();
      if (Peek() == ')') {
        ++pos_;
        WIMSE_ASSIGN_OR_RETURN(out.params, Params());
        return out;
      }
      WIMSE_ASSIGN_OR_RETURN(Item item, ParseItem());
      out.items.push_back(std::move(item));
      if (Peek() != ' ' && Peek() != ')') {
        return Err("expected ' ' or ')' in inner list");
      }
    }
    return Err("unterminated inner list");
  }

  Result<BareItem> Bare() {
    char c = Peek();
    if (c == '-' || IsDigit(c)) {
      return Number();
    }
    if (c == '"') {
      return String();
    }
    if (c == ':') {
      return ByteSeq();
    }
    if (c == '?') {
      ++pos_;
      if (Peek() == '1' || Peek() == '0') {
        return BareItem::Boolean(s_[pos_++] == '1');
      }
      return Err("invalid boolean");
    }
    if (IsAlpha(c) || c == '*') {
      size_t start = pos_;
      while (!Done() && (IsTchar(s_[pos_]) || s_[pos_] == ':' || s_[pos_] == '/')) {
        ++pos_;
      }
      return BareItem::Token(std::string(s_.substr(start, pos_ - start)));
    }
    return Err("invalid bare item");
  }

  Result<BareItem> Number() {
    bool neg = false;
    if (Peek() == '-') {
      neg = true;
      ++pos_;
    }
    if (!IsDigit(Peek())) {
      return Err("invalid number");
    }
    int64_t int_part = 0;
    size_t digits = 0;
    while (IsDigit(Peek())) {
      if (++digits > 15) {
        return Err("integer too long");
      }
      int_part = int_part * 10 + (s_[pos_++] - '0');
    }
    if (Peek() != '.') {
      return BareItem::Integer(neg ? -int_part : int_part);
    }
    if (digits > 12) {
      return Err("decimal too long");
    }
    ++pos_;
    int64_t frac = 0;
    size_t frac_digits = 0;
    while (IsDigit(Peek())) {
      if (++frac_digits > 3) {
        return Err("decimal has more than 3 fractional digits");
      }
      frac = frac * 10 + (s_[pos_++] - '0');
    }
    if (frac_digits == 0) {
      return Err("decimal ends with '.'");
    }
    for (size_t i = frac_digits; i < 3; ++i) {
      frac *= 10;
    }
    BareItem b;
    b.type = Type::kDecimal;
    b.decimal_thousandths = (neg ? -1 : 1) * (int_part * 1000 + frac);
    return b;
  }

  Result<BareItem> String() {
    ++pos_;
    std::string out;
    while (!Done()) {
      char c = s_[pos_++];
      if (c == '\\') {
        if (Done() || (s_[pos_] != '"' && s_[pos_] != '\\')) {
          return Err("invalid escape in string");
        }
        out.push_back(s_[pos_++]);
      } else if (c == '"') {
        return BareItem::String(std::move(out));
      } else if (c < 0x20 || c > 0x7e) {
        return Err("non-printable character in string");
      } else {
        out.push_back(c);
      }
    }
    return Err("unterminated string");
  }

  Result<BareItem> ByteSeq() {
    ++pos_;
    size_t end = s_.find(':', pos_);
    if (end == std::string_view::npos) {
      return Err("unterminated byte sequence");
    }
    auto bytes = Base64DecodeStrict(s_.substr(pos_, end - pos_));
    if (!bytes.ok()) {
      return Err("byte sequence: " + bytes.error().message());
    }
    pos_ = end + 1;
    return BareItem::ByteSequence(std::move(bytes).value());
  }

  std::string_view s_;
  size_t pos_ = 0;
};

Status CheckKey(std::string_view key) {
  if (key.empty() || !(IsLcAlpha(key[0]) || key[0] == '*')) {
    return Error(Layer::kUsage, "invalid structured field key");
  }
  for (char c : key) {
    if (!IsKeyChar(c)) {
      return Error(Layer::kUsage, "invalid structured field key");
    }
  }
  return OkStatus();
}

}  // namespace

BareItem BareItem::Integer(int64_t v) {
  BareItem b;
  b.type = Type::kInteger;
  b.integer = v;
  return b;
}
BareItem BareItem::String(std::string v) {
  BareItem b;
  b.type = Type::kString;
  b.string = std::move(v);
  return b;
}
BareItem BareItem::Token(std::string v) {
  BareItem b;
  b.type = Type::kToken;
  b.string = std::move(v);
  return b;
}
BareItem BareItem::ByteSequence(Bytes v) {
  BareItem b;
  b.type = Type::kByteSequence;
  b.bytes = std::move(v);
  return b;
}
BareItem BareItem::Boolean(bool v) {
  BareItem b;
  b.type = Type::kBoolean;
  b.boolean = v;
  return b;
}

Result<Dictionary> ParseDictionary(std::string_view text) {
  // Leading and trailing SP are discarded (RFC 8941 §4.2); anything else is the parser's.
  while (!text.empty() && text.back() == ' ') {
    text.remove_suffix(1);
  }
  return Parser(text).ParseDict();
}

const BareItem* FindParam(const Parameters& params, std::string_view key) {
  for (const auto& p : params) {
    if (p.first == key) {
      return &p.second;
    }
  }
  return nullptr;
}

Result<std::string> SerializeBareItem(const BareItem& item) {
  switch (item.type) {
    case Type::kInteger:
      if (item.integer > kMaxInteger || item.integer < -kMaxInteger) {
        return Error(Layer::kUsage, "integer out of range");
      }
      return std::to_string(item.integer);
    case Type::kDecimal: {
      int64_t v = item.decimal_thousandths;
      std::string out = v < 0 ? "-" : "";
      int64_t a = v < 0 ? -v : v;
      out += std::to_string(a / 1000) + ".";
      int64_t frac = a % 1000;
      std::string f = std::to_string(1000 + frac).substr(1);
      while (f.size() > 1 && f.back() == '0') {
        f.pop_back();
      }
      return out + f;
    }
    case Type::kString: {
      std::string out = "\"";
      for (char c : item.string) {
        if (c < 0x20 || c > 0x7e) {
          return Error(Layer::kUsage, "non-printable character in string");
        }
        if (c == '"' || c == '\\') {
          out.push_back('\\');
        }
        out.push_back(c);
      }
      return out + "\"";
    }
    case Type::kToken:
      if (item.string.empty() || !(IsAlpha(item.string[0]) || item.string[0] == '*')) {
        return Error(Layer::kUsage, "invalid token");
      }
      for (char c : item.string) {
        if (!(IsTchar(c) || c == ':' || c == '/')) {
          return Error(Layer::kUsage, "invalid token");
        }
      }
      return item.string;
    case Type::kByteSequence:
      return ":" + Base64Encode(item.bytes) + ":";
    case Type::kBoolean:
      return std::string(item.boolean ? "?1" : "?0");
  }
  return Error(Layer::kInternal, "bad item type");
}

Result<std::string> SerializeParams(const Parameters& params) {
  std::string out;
  for (const auto& [key, value] : params) {
    WIMSE_RETURN_IF_ERROR(CheckKey(key));
    out += ";" + key;
    if (value.type == Type::kBoolean && value.boolean) {
      continue;  // a true Boolean serializes as the bare key
    }
    WIMSE_ASSIGN_OR_RETURN(std::string v, SerializeBareItem(value));
    out += "=" + v;
  }
  return out;
}

Result<std::string> SerializeItem(const Item& item) {
  WIMSE_ASSIGN_OR_RETURN(std::string v, SerializeBareItem(item.value));
  WIMSE_ASSIGN_OR_RETURN(std::string p, SerializeParams(item.params));
  return v + p;
}

Result<std::string> SerializeInnerList(const InnerList& list) {
  std::string out = "(";
  for (size_t i = 0; i < list.items.size(); ++i) {
    if (i != 0) {
      out += " ";
    }
    WIMSE_ASSIGN_OR_RETURN(std::string v, SerializeItem(list.items[i]));
    out += v;
  }
  WIMSE_ASSIGN_OR_RETURN(std::string p, SerializeParams(list.params));
  return out + ")" + p;
}

std::string Base64Encode(ByteView data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data.data(),
                          static_cast<int>(data.size()));
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

Result<Bytes> Base64DecodeStrict(std::string_view text) {
  if (text.size() % 4 != 0) {
    return Error(Layer::kParse, "invalid base64 length");
  }
  for (char c : text) {
    if (!(IsAlpha(c) || IsDigit(c) || c == '+' || c == '/' || c == '=')) {
      return Error(Layer::kParse, "invalid base64 character");
    }
  }
  Bytes out(text.size() / 4 * 3);
  int n = text.empty()
              ? 0
              : EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) {
    return Error(Layer::kParse, "invalid base64");
  }
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') {
    pad = text.size() >= 2 && text[text.size() - 2] == '=' ? 2 : 1;
  }
  out.resize(static_cast<size_t>(n) - pad);
  if (Base64Encode(out) != text) {
    return Error(Layer::kParse, "non-canonical base64");
  }
  return out;
}

}  // namespace wimse::sf
