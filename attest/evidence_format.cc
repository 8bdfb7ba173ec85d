#include "attest/evidence_format.h"

#include <tss2/tss2_tpm2_types.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>

#include "jose/base64url.h"

namespace wimse::attest {

namespace {

using Json = nlohmann::json;

Error ParseError(const std::string& what) { return Error(Layer::kParse, what); }

// --- A strict, bounded JSON reader for untrusted evidence -------------------------------------
//
// RFC 8259 exactly: no comments, no trailing commas, no byte-order mark, no NaN/Infinity,
// strings must be valid UTF-8 (RFC 3629) and escapes must form valid code points (no lone
// surrogates), numbers that overflow a double are refused. Stricter than the RFC where it
// matters to a verifier: duplicate member names are refused at every depth (otherwise a parser
// differential: one reader takes the first member, another the last) and nesting deeper than
// kMaxJsonDepth is refused while parsing (recursion is bounded, a 2 MiB "[[[[..." is refused at
// depth 33 instead of being built). Replaces nlohmann::json on the parse side because its
// character-at-a-time lexer was a quarter of an appraisal (bench/README, issue 5): strings
// without escapes are views into the input, so base64url members are never copied.

// Evidence nests 5 deep (document / quotes / quote / pcrs / values); the cap leaves room for
// future members without letting hostile input recurse.
constexpr int kMaxJsonDepth = kMaxEvidenceJsonDepth;

struct JValue;
struct JMember;

struct JValue {
  enum class Kind : uint8_t { kNull, kFalse, kTrue, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  // kString: the unescaped content; kNumber: the spelling. Points into the parsed text or into
  // the document's arena; valid while the JsonDocument lives.
  std::string_view text;
  std::vector<JValue> items;     // kArray
  std::vector<JMember> members;  // kObject, in document order, names unique

  bool is_string() const { return kind == Kind::kString; }
  bool is_object() const { return kind == Kind::kObject; }
  bool is_array() const { return kind == Kind::kArray; }
  // The member called `name`, or nullptr (objects only).
  const JValue* Find(std::string_view name) const;
};

struct JMember {
  std::string_view name;
  JValue value;
};

const JValue* JValue::Find(std::string_view name) const {
  for (const JMember& m : members) {
    if (m.name == name) {
      return &m.value;
    }
  }
  return nullptr;
}

// A parsed document: the root and the storage of strings that needed unescaping. Holds views
// into the input text, which must outlive it.
struct JsonDocument {
  JValue root;
  std::deque<std::string> arena;  // deque: growing it never moves stored strings
};

// Bytes that may appear in a JSON string as themselves and need no further look: printable
// ASCII except '"' and '\\'.
struct PlainStringTable {
  bool v[256];
  constexpr PlainStringTable() : v() {
    for (int c = 0x20; c < 0x80; ++c) {
      v[c] = c != '"' && c != '\\';
    }
  }
};
constexpr PlainStringTable kPlainStringChar;

class JsonReader {
 public:
  JsonReader(std::string_view text, JsonDocument& doc) : s_(text), doc_(doc) {}

  // Parses the whole text into doc.root. On failure returns false and error() says why.
  bool Parse() {
    SkipWs();
    if (!ParseValue(doc_.root, 0)) {
      return false;
    }
    SkipWs();
    if (pos_ != s_.size()) {
      return Fail("trailing characters");
    }
    return true;
  }
  std::string error() const { return error_ + " at offset " + std::to_string(pos_); }

 private:
  bool Fail(const char* why) {
    if (error_.empty()) {
      error_ = why;
    }
    return false;
  }
  void SkipWs() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) {
      ++pos_;
    }
  }
  bool Literal(std::string_view word, JValue::Kind kind, JValue& out) {
    if (s_.substr(pos_, word.size()) != word) {
      return Fail("invalid literal");
    }
    pos_ += word.size();
    out.kind = kind;
    return true;
  }

  bool ParseValue(JValue& out, int depth) {
    if (pos_ >= s_.size()) {
      return Fail("unexpected end of input");
    }
    switch (s_[pos_]) {
      case '{':
        return ParseObject(out, depth + 1);
      case '[':
        return ParseArray(out, depth + 1);
      case '"':
        out.kind = JValue::Kind::kString;
        return ParseString(out.text);
      case 't':
        return Literal("true", JValue::Kind::kTrue, out);
      case 'f':
        return Literal("false", JValue::Kind::kFalse, out);
      case 'n':
        return Literal("null", JValue::Kind::kNull, out);
      default:
        return ParseNumber(out);
    }
  }

  bool ParseObject(JValue& out, int depth) {
    if (depth > kMaxJsonDepth) {
      return Fail("nesting deeper than 32");
    }
    out.kind = JValue::Kind::kObject;
    ++pos_;  // '{'
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return true;
    }
    while (true) {
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != '"') {
        return Fail("expected a member name");
      }
      JMember m;
      if (!ParseString(m.name)) {
        return false;
      }
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != ':') {
        return Fail("expected ':'");
      }
      ++pos_;
      SkipWs();
      if (!ParseValue(m.value, depth)) {
        return false;
      }
      out.members.push_back(std::move(m));
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        break;
      }
      return Fail("expected ',' or '}'");
    }
    return CheckUniqueNames(out);
  }

  bool CheckUniqueNames(const JValue& obj) {
    const std::vector<JMember>& m = obj.members;
    if (m.size() <= 8) {
      for (size_t i = 0; i < m.size(); ++i) {
        for (size_t j = i + 1; j < m.size(); ++j) {
          if (m[i].name == m[j].name) {
            duplicate_ = std::string(m[i].name);
            return Fail("duplicate member");
          }
        }
      }
      return true;
    }
    // Sorting keeps hostile objects with many members at O(n log n).
    std::vector<std::string_view> names;
    names.reserve(m.size());
    for (const JMember& x : m) {
      names.push_back(x.name);
    }
    std::sort(names.begin(), names.end());
    auto dup = std::adjacent_find(names.begin(), names.end());
    if (dup != names.end()) {
      duplicate_ = std::string(*dup);
      return Fail("duplicate member");
    }
    return true;
  }

  bool ParseArray(JValue& out, int depth) {
    if (depth > kMaxJsonDepth) {
      return Fail("nesting deeper than 32");
    }
    out.kind = JValue::Kind::kArray;
    ++pos_;  // '['
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    while (true) {
      SkipWs();
      out.items.emplace_back();
      if (!ParseValue(out.items.back(), depth)) {
        return false;
      }
      SkipWs();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return true;
      }
      return Fail("expected ',' or ']'");
    }
  }

  // Consumes one UTF-8 encoded code point starting at pos_ (a byte >= 0x80), RFC 3629 table 4.
  bool SkipUtf8() {
    auto at = [&](size_t i) -> unsigned {
      return pos_ + i < s_.size() ? static_cast<unsigned char>(s_[pos_ + i]) : 0u;
    };
    auto cont = [&](size_t i, unsigned lo = 0x80, unsigned hi = 0xBF) {
      unsigned c = at(i);
      return c >= lo && c <= hi;
    };
    unsigned c = at(0);
    size_t len = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = cont(1) ? 2 : 0;
    } else if (c == 0xE0) {
      len = cont(1, 0xA0) && cont(2) ? 3 : 0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      len = cont(1) && cont(2) ? 3 : 0;
    } else if (c == 0xED) {
      len = cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
    } else if (c == 0xF0) {
      len = cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
    } else if (c >= 0xF1 && c <= 0xF3) {
      len = cont(1) && cont(2) && cont(3) ? 4 : 0;
    } else if (c == 0xF4) {
      len = cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
    }
    if (len == 0) {
      return Fail("invalid UTF-8 in string");
    }
    pos_ += len;
    return true;
  }

  bool Hex4(uint32_t& v) {
    if (s_.size() - pos_ < 4) {
      return Fail("truncated \\u escape");
    }
    v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return Fail("invalid \\u escape");
      }
    }
    return true;
  }

  static void AppendUtf8(uint32_t cp, std::string& out) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // pos_ is at the opening quote. Without escapes the result is a view into the input.
  bool ParseString(std::string_view& out) {
    ++pos_;
    const size_t start = pos_;
    while (pos_ < s_.size()) {
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (kPlainStringChar.v[c]) {
        ++pos_;  // the common case: printable ASCII other than '"' and '\\'
        continue;
      }
      if (c == '"') {
        out = s_.substr(start, pos_ - start);
        ++pos_;
        return true;
      }
      if (c == '\\') {
        break;
      }
      if (c < 0x20) {
        return Fail("control character in string");
      }
      if (c >= 0x80) {
        if (!SkipUtf8()) {
          return false;
        }
        continue;
      }
      ++pos_;
    }
    if (pos_ >= s_.size()) {
      return Fail("unterminated string");
    }
    std::string buf(s_.substr(start, pos_ - start));
    while (pos_ < s_.size()) {
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        doc_.arena.push_back(std::move(buf));
        out = doc_.arena.back();
        return true;
      }
      if (c < 0x20) {
        return Fail("control character in string");
      }
      if (c >= 0x80) {
        size_t b = pos_;
        if (!SkipUtf8()) {
          return false;
        }
        buf.append(s_.substr(b, pos_ - b));
        continue;
      }
      ++pos_;
      if (c != '\\') {
        buf.push_back(static_cast<char>(c));
        continue;
      }
      if (pos_ >= s_.size()) {
        break;
      }
      char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          buf.push_back(e);
          break;
        case 'b':
          buf.push_back('\b');
          break;
        case 'f':
          buf.push_back('\f');
          break;
        case 'n':
          buf.push_back('\n');
          break;
        case 'r':
          buf.push_back('\r');
          break;
        case 't':
          buf.push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!Hex4(cp)) {
            return false;
          }
          if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Fail("lone low surrogate");
          }
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo = 0;
            if (s_.substr(pos_, 2) != "\\u") {
              return Fail("high surrogate without a low surrogate");
            }
            pos_ += 2;
            if (!Hex4(lo)) {
              return false;
            }
            if (lo < 0xDC00 || lo > 0xDFFF) {
              return Fail("high surrogate without a low surrogate");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          AppendUtf8(cp, buf);
          break;
        }
        default:
          return Fail("invalid escape");
      }
    }
    return Fail("unterminated string");
  }

  // -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?, and finite as a double.
  bool ParseNumber(JValue& out) {
    const size_t start = pos_;
    auto digit = [&]() { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; };
    bool integer = true;
    if (pos_ < s_.size() && s_[pos_] == '-') {
      ++pos_;
    }
    if (!digit()) {
      return Fail("invalid value");
    }
    if (s_[pos_] == '0') {
      ++pos_;
    } else {
      while (digit()) {
        ++pos_;
      }
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      integer = false;
      if (!digit()) {
        return Fail("invalid number");
      }
      while (digit()) {
        ++pos_;
      }
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      integer = false;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) {
        ++pos_;
      }
      if (!digit()) {
        return Fail("invalid number");
      }
      while (digit()) {
        ++pos_;
      }
    }
    out.kind = JValue::Kind::kNumber;
    out.text = s_.substr(start, pos_ - start);
    if (!integer || out.text.size() > 20) {
      double d = 0;
      auto [end, ec] = std::from_chars(out.text.data(), out.text.data() + out.text.size(), d);
      if (ec != std::errc() || end != out.text.data() + out.text.size() || !std::isfinite(d)) {
        return Fail("number out of range");
      }
    }
    return true;
  }

 public:
  std::string duplicate_;

 private:
  std::string_view s_;
  JsonDocument& doc_;
  size_t pos_ = 0;
  std::string error_;
};

// Parses JSON strictly (see JsonReader) within kMaxEvidenceSize.
Result<std::unique_ptr<JsonDocument>> ParseStrictJson(std::string_view text, const char* what) {
  if (text.size() > kMaxEvidenceSize) {
    return ParseError(std::string(what) + " larger than " + std::to_string(kMaxEvidenceSize) +
                      " bytes");
  }
  auto doc = std::make_unique<JsonDocument>();
  JsonReader reader(text, *doc);
  if (!reader.Parse()) {
    if (!reader.duplicate_.empty()) {
      return ParseError(std::string(what) + " has a duplicate member \"" +
                        reader.duplicate_.substr(0, 64) + "\"");
    }
    return ParseError(std::string(what) + " is not valid JSON (" + reader.error() + ")");
  }
  return doc;
}

// A non-negative integer without fraction or exponent that fits in 64 bits.
std::optional<uint64_t> UnsignedNumber(const JValue& v) {
  if (v.kind != JValue::Kind::kNumber || v.text.empty() || v.text[0] == '-') {
    return std::nullopt;
  }
  uint64_t out = 0;
  auto [end, ec] = std::from_chars(v.text.data(), v.text.data() + v.text.size(), out);
  if (ec != std::errc() || end != v.text.data() + v.text.size()) {
    return std::nullopt;
  }
  return out;
}

// Canonical unpadded base64url with the rules and messages of jose::Base64UrlDecode (one
// accepted spelling per byte string), decoded four characters at a time into `out`.
struct B64Table {
  int8_t v[256];
  constexpr B64Table() : v() {
    for (int i = 0; i < 256; ++i) {
      v[i] = -1;
    }
    for (int i = 0; i < 26; ++i) {
      v['A' + i] = static_cast<int8_t>(i);
      v['a' + i] = static_cast<int8_t>(26 + i);
    }
    for (int i = 0; i < 10; ++i) {
      v['0' + i] = static_cast<int8_t>(52 + i);
    }
    v[static_cast<int>('-')] = 62;
    v[static_cast<int>('_')] = 63;
  }
};
constexpr B64Table kB64;

template <typename Out>
Status DecodeB64Url(std::string_view text, Out& out) {
  const size_t n = text.size();
  auto val = [&](size_t i) { return kB64.v[static_cast<unsigned char>(text[i])]; };
  if (n % 4 == 1) {
    for (size_t i = 0; i < n; ++i) {
      if (val(i) < 0) {
        return ParseError(text[i] == '=' ? "base64url has padding" : "invalid base64url character");
      }
    }
    return ParseError("invalid base64url length");
  }
  out.resize(n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1));
  auto* o = out.data();
  size_t i = 0;
  int bad = 0;  // ORs every table value: negative once any character was invalid
  for (; i + 4 <= n; i += 4) {
    int a = val(i), b = val(i + 1), c = val(i + 2), d = val(i + 3);
    bad |= a | b | c | d;
    uint32_t w = (uint32_t(a & 63) << 18) | (uint32_t(b & 63) << 12) | (uint32_t(c & 63) << 6) |
                 uint32_t(d & 63);
    *o++ = static_cast<typename Out::value_type>(w >> 16);
    *o++ = static_cast<typename Out::value_type>(w >> 8);
    *o++ = static_cast<typename Out::value_type>(w);
  }
  for (size_t j = i; j < n; ++j) {
    bad |= val(j);
  }
  if (bad < 0) {
    for (size_t j = 0; j < n; ++j) {
      if (val(j) < 0) {
        out.clear();
        return ParseError(text[j] == '=' ? "base64url has padding" : "invalid base64url character");
      }
    }
  }
  if (n - i == 2) {
    uint32_t w = (uint32_t(val(i)) << 6) | uint32_t(val(i + 1));
    if ((w & 0xF) != 0) {
      return ParseError("base64url has non-zero trailing bits");
    }
    *o++ = static_cast<typename Out::value_type>(w >> 4);
  } else if (n - i == 3) {
    uint32_t w = (uint32_t(val(i)) << 12) | (uint32_t(val(i + 1)) << 6) | uint32_t(val(i + 2));
    if ((w & 0x3) != 0) {
      return ParseError("base64url has non-zero trailing bits");
    }
    *o++ = static_cast<typename Out::value_type>(w >> 10);
    *o++ = static_cast<typename Out::value_type>(w >> 2);
  }
  return OkStatus();
}

Result<const JValue*> Member(const JValue& obj, const char* name, const std::string& path) {
  const JValue* v = obj.Find(name);
  if (v == nullptr) {
    return ParseError(path + "." + name + " is missing");
  }
  return v;
}

Result<std::string_view> StringMember(const JValue& obj, const char* name,
                                      const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(const JValue* v, Member(obj, name, path));
  if (!v->is_string()) {
    return ParseError(path + "." + name + " is not a string");
  }
  return v->text;
}

Result<Bytes> BytesMember(const JValue& obj, const char* name, const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(std::string_view text, StringMember(obj, name, path));
  Bytes out;
  Status s = DecodeB64Url(text, out);
  if (!s.ok()) {
    return ParseError(path + "." + name + ": " + s.error().message());
  }
  return out;
}

Result<const JValue*> ObjectMember(const JValue& obj, const char* name, const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(const JValue* v, Member(obj, name, path));
  if (!v->is_object()) {
    return ParseError(path + "." + name + " is not an object");
  }
  return v;
}

Result<const JValue*> ArrayMember(const JValue& obj, const char* name, const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(const JValue* v, Member(obj, name, path));
  if (!v->is_array()) {
    return ParseError(path + "." + name + " is not an array");
  }
  return v;
}

Result<SignedAttest> DecodeSigned(const JValue& obj, const std::string& path) {
  if (!obj.is_object()) {
    return ParseError(path + " is not an object");
  }
  SignedAttest s;
  WIMSE_ASSIGN_OR_RETURN(s.attest, BytesMember(obj, "attest", path));
  WIMSE_ASSIGN_OR_RETURN(s.signature, BytesMember(obj, "signature", path));
  return s;
}

// PCR indices are decimal strings "0".."23" with no sign, no leading zeros.
Result<uint32_t> PcrIndex(std::string_view s, const std::string& path) {
  auto bad = [&]() {
    return ParseError(path + ".pcrs.values has an invalid PCR index \"" +
                      std::string(s.substr(0, 16)) + "\"");
  };
  if (s.empty() || s.size() > 2 || (s.size() == 2 && s[0] == '0')) {
    return bad();
  }
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return bad();
    }
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v >= TPM2_MAX_PCRS) {
    return ParseError(path + ".pcrs.values has PCR index " + std::string(s) + " out of range");
  }
  return v;
}

Json Signed(const SignedAttest& s) {
  return Json{{"attest", jose::Base64UrlEncode(s.attest)},
              {"signature", jose::Base64UrlEncode(s.signature)}};
}

}  // namespace

Result<uint16_t> BankAlgFromName(std::string_view name) {
  if (name == "sha1") {
    return uint16_t{TPM2_ALG_SHA1};
  }
  if (name == "sha256") {
    return uint16_t{TPM2_ALG_SHA256};
  }
  if (name == "sha384") {
    return uint16_t{TPM2_ALG_SHA384};
  }
  if (name == "sha512") {
    return uint16_t{TPM2_ALG_SHA512};
  }
  return ParseError("unknown PCR bank \"" + std::string(name) + "\"");
}

std::string BankNameFromAlg(uint16_t alg) {
  switch (alg) {
    case TPM2_ALG_SHA1:
      return "sha1";
    case TPM2_ALG_SHA256:
      return "sha256";
    case TPM2_ALG_SHA384:
      return "sha384";
    case TPM2_ALG_SHA512:
      return "sha512";
    default:
      return "alg-" + std::to_string(alg);
  }
}

std::string EncodeEvidenceJson(const Tpm2Evidence& e) {
  Json quotes = Json::array();
  for (const QuoteEvidence& q : e.quotes) {
    Json values = Json::object();
    for (const auto& [index, value] : q.pcrs) {
      values[std::to_string(index)] = jose::Base64UrlEncode(value);
    }
    Json jq = Signed(q.quote);
    jq["pcrs"] = Json{{"bank", q.bank}, {"values", values}};
    quotes.push_back(jq);
  }
  Json keys = Json::array();
  for (const KeyEvidence& k : e.keys) {
    Json jk{{"public", jose::Base64UrlEncode(k.public_blob)}, {"certify", Signed(k.certify)}};
    if (k.creation) {
      Json jc = Signed(k.creation->certify);
      jc["data"] = jose::Base64UrlEncode(k.creation->creation_data);
      jk["creation"] = jc;
    }
    keys.push_back(jk);
  }
  Json doc{
      {"profile", e.profile},
      {"nonce", jose::Base64UrlEncode(e.nonce)},
      {"ak", Json{{"public", jose::Base64UrlEncode(e.ak_public)}}},
      {"quotes", quotes},
      {"keys", keys},
  };
  Json logs = Json::object();
  if (e.uefi_log) {
    logs["uefi"] =
        Json{{"format", e.uefi_log->format}, {"data", jose::Base64UrlEncode(e.uefi_log->data)}};
  }
  if (e.ima_log) {
    logs["ima"] =
        Json{{"format", e.ima_log->format}, {"data", jose::Base64UrlEncode(e.ima_log->data)}};
  }
  if (!logs.empty()) {
    doc["logs"] = logs;
  }
  if (!e.swname.empty() || !e.swversion.empty()) {
    doc["attester"] = Json{{"swname", e.swname}, {"swversion", e.swversion}};
  }
  return doc.dump();
}

Result<Tpm2Evidence> DecodeEvidenceJson(std::string_view json) {
  WIMSE_ASSIGN_OR_RETURN(std::unique_ptr<JsonDocument> parsed, ParseStrictJson(json, "evidence"));
  const JValue& doc = parsed->root;
  if (!doc.is_object()) {
    return ParseError("evidence is not a JSON object");
  }
  const std::string root = "evidence";
  Tpm2Evidence e;
  WIMSE_ASSIGN_OR_RETURN(std::string_view profile, StringMember(doc, "profile", root));
  if (profile != kEvidenceProfile) {
    return ParseError("evidence.profile \"" + std::string(profile.substr(0, 80)) + "\" is not " +
                      kEvidenceProfile);
  }
  e.profile = std::string(profile);
  WIMSE_ASSIGN_OR_RETURN(e.nonce, BytesMember(doc, "nonce", root));
  WIMSE_ASSIGN_OR_RETURN(const JValue* ak, ObjectMember(doc, "ak", root));
  WIMSE_ASSIGN_OR_RETURN(e.ak_public, BytesMember(*ak, "public", root + ".ak"));

  WIMSE_ASSIGN_OR_RETURN(const JValue* quotes, ArrayMember(doc, "quotes", root));
  e.quotes.reserve(quotes->items.size());
  for (size_t i = 0; i < quotes->items.size(); ++i) {
    const std::string path = root + ".quotes[" + std::to_string(i) + "]";
    const JValue& jq = quotes->items[i];
    QuoteEvidence q;
    WIMSE_ASSIGN_OR_RETURN(q.quote, DecodeSigned(jq, path));
    WIMSE_ASSIGN_OR_RETURN(const JValue* pcrs, ObjectMember(jq, "pcrs", path));
    WIMSE_ASSIGN_OR_RETURN(std::string_view bank, StringMember(*pcrs, "bank", path + ".pcrs"));
    q.bank = std::string(bank);
    WIMSE_ASSIGN_OR_RETURN(const JValue* values, ObjectMember(*pcrs, "values", path + ".pcrs"));
    for (const JMember& m : values->members) {
      WIMSE_ASSIGN_OR_RETURN(uint32_t index, PcrIndex(m.name, path));
      if (!m.value.is_string()) {
        return ParseError(path + ".pcrs.values." + std::string(m.name) + " is not a string");
      }
      Bytes v;
      Status s = DecodeB64Url(m.value.text, v);
      if (!s.ok()) {
        return ParseError(path + ".pcrs.values." + std::string(m.name) + ": " +
                          s.error().message());
      }
      q.pcrs.emplace(index, std::move(v));
    }
    e.quotes.push_back(std::move(q));
  }

  WIMSE_ASSIGN_OR_RETURN(const JValue* keys, ArrayMember(doc, "keys", root));
  e.keys.reserve(keys->items.size());
  for (size_t i = 0; i < keys->items.size(); ++i) {
    const std::string path = root + ".keys[" + std::to_string(i) + "]";
    const JValue& jk = keys->items[i];
    if (!jk.is_object()) {
      return ParseError(path + " is not an object");
    }
    KeyEvidence k;
    WIMSE_ASSIGN_OR_RETURN(k.public_blob, BytesMember(jk, "public", path));
    WIMSE_ASSIGN_OR_RETURN(const JValue* certify, ObjectMember(jk, "certify", path));
    WIMSE_ASSIGN_OR_RETURN(k.certify, DecodeSigned(*certify, path + ".certify"));
    if (const JValue* jc = jk.Find("creation"); jc != nullptr) {
      CreationEvidence c;
      WIMSE_ASSIGN_OR_RETURN(c.certify, DecodeSigned(*jc, path + ".creation"));
      WIMSE_ASSIGN_OR_RETURN(c.creation_data, BytesMember(*jc, "data", path + ".creation"));
      k.creation = std::move(c);
    }
    e.keys.push_back(std::move(k));
  }

  if (const JValue* logs = doc.Find("logs"); logs != nullptr) {
    if (!logs->is_object()) {
      return ParseError("evidence.logs is not an object");
    }
    for (const char* name : {"uefi", "ima"}) {
      const JValue* l = logs->Find(name);
      if (l == nullptr) {
        continue;
      }
      const std::string path = root + ".logs." + name;
      if (!l->is_object()) {
        return ParseError(path + " is not an object");
      }
      LogEvidence le;
      WIMSE_ASSIGN_OR_RETURN(std::string_view format, StringMember(*l, "format", path));
      le.format = std::string(format);
      WIMSE_ASSIGN_OR_RETURN(le.data, BytesMember(*l, "data", path));
      (std::string_view(name) == "uefi" ? e.uefi_log : e.ima_log) = std::move(le);
    }
  }

  if (const JValue* attester = doc.Find("attester"); attester != nullptr && attester->is_object()) {
    const JValue* n = attester->Find("swname");
    if (n != nullptr && n->is_string()) {
      e.swname = std::string(n->text);
    }
    const JValue* v = attester->Find("swversion");
    if (v != nullptr && v->is_string()) {
      e.swversion = std::string(v->text);
    }
  }
  return e;
}

std::string WrapCmw(std::string_view evidence_json) {
  Json record = Json::array(
      {kEvidenceMediaType, jose::Base64UrlEncode(AsBytes(evidence_json)), kCmwIndEvidence});
  return record.dump();
}

Result<std::string> UnwrapCmw(std::string_view cmw_json) {
  WIMSE_ASSIGN_OR_RETURN(std::unique_ptr<JsonDocument> parsed,
                         ParseStrictJson(cmw_json, "CMW record"));
  const JValue& record = parsed->root;
  if (!record.is_array() || record.items.size() < 2 || record.items.size() > 3) {
    return ParseError("CMW record is not a JSON array of 2 or 3 elements");
  }
  if (!record.items[0].is_string() || record.items[0].text != kEvidenceMediaType) {
    return ParseError(std::string("CMW type is not ") + kEvidenceMediaType);
  }
  if (!record.items[1].is_string()) {
    return ParseError("CMW value is not a string");
  }
  if (record.items.size() == 3) {
    // ind: uint bitmap; reference-values 1, endorsements 2, evidence 4, attestation-results 8,
    // appraisal-policy 16 (draft-ietf-rats-msg-wrap-23).
    std::optional<uint64_t> ind = UnsignedNumber(record.items[2]);
    if (!ind) {
      return ParseError("CMW ind is not an unsigned integer");
    }
    if ((*ind & kCmwIndEvidence) == 0 || (*ind & ~uint64_t{0x1F}) != 0) {
      return ParseError("CMW ind " + std::to_string(*ind) + " does not mark evidence");
    }
  }
  std::string value;
  Status s = DecodeB64Url(record.items[1].text, value);
  if (!s.ok()) {
    return ParseError("CMW value: " + s.error().message());
  }
  return value;
}

}  // namespace wimse::attest
