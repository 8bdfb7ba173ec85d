// Byte buffers, hex, constant-time compare, and SecretBytes (a buffer that wipes itself).
#ifndef WIMSE_UTIL_BYTES_H_
#define WIMSE_UTIL_BYTES_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace wimse {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

inline ByteView AsBytes(std::string_view s) {
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string AsString(ByteView b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Lower-case hex of `data`.
std::string HexEncode(ByteView data);
// Strict hex decode: even length, [0-9a-fA-F] only. Errors are Layer::kParse.
Result<Bytes> HexDecode(std::string_view hex);

// Constant-time equality (length is not secret).
bool ConstantTimeEqual(ByteView a, ByteView b);

// Secret bytes (auth values, HMAC keys): wiped on destruction and on move-from, never printed.
// There is deliberately no operator<< and no conversion to string.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(ByteView data) : data_(data.begin(), data.end()) {}
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  ~SecretBytes();

  ByteView view() const { return data_; }
  size_t size() const { return data_.size(); }
  bool empty() const { return data_.empty(); }

 private:
  void Wipe();
  Bytes data_;
};

}  // namespace wimse

#endif  // WIMSE_UTIL_BYTES_H_
