#include "jose/base64url.h"

#include <array>
#include <cstdint>

namespace wimse::jose {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// Value of a base64url character, or -1.
constexpr int DecodeCharSlow(char c) {
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  if (c == '-') {
    return 62;
  }
  if (c == '_') {
    return 63;
  }
  return -1;
}

constexpr std::array<int8_t, 256> MakeDecodeTable() {
  std::array<int8_t, 256> t{};
  for (int i = 0; i < 256; ++i) {
    t[static_cast<size_t>(i)] = static_cast<int8_t>(DecodeCharSlow(static_cast<char>(i)));
  }
  return t;
}
constexpr std::array<int8_t, 256> kDecodeTable = MakeDecodeTable();

inline int DecodeChar(char c) { return kDecodeTable[static_cast<uint8_t>(c)]; }

}  // namespace

std::string Base64UrlEncode(ByteView data) {
  std::string out;
  out.reserve((data.size() * 4 + 2) / 3);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8) | data[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t v = uint32_t{data[i]} << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
  } else if (rest == 2) {
    uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

bool IsBase64UrlAlphabet(std::string_view text) {
  if (text.empty()) {
    return false;
  }
  for (char c : text) {
    if (DecodeChar(c) < 0) {
      return false;
    }
  }
  return true;
}

Result<Bytes> Base64UrlDecode(std::string_view text) {
  for (char c : text) {
    if (DecodeChar(c) < 0) {
      return Error(Layer::kParse,
                   c == '=' ? "base64url has padding" : "invalid base64url character");
    }
  }
  if (text.size() % 4 == 1) {
    return Error(Layer::kParse, "invalid base64url length");
  }
  Bytes out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    acc = (acc << 6) | static_cast<uint32_t>(DecodeChar(c));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits (2 or 4) must be zero, otherwise several spellings decode to the same bytes.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return Error(Layer::kParse, "base64url has non-zero trailing bits");
  }
  return out;
}

}  // namespace wimse::jose
