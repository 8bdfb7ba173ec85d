// A minimal strict DER reader and writer for the few ASN.1 structures wimse-tpm parses itself
// (the TSS2 PRIVATE KEY). Reader: definite lengths only, minimal length encoding, bounds
// checked on every step. Writer: definite minimal lengths.
#ifndef WIMSE_KEYFILE_DER_H_
#define WIMSE_KEYFILE_DER_H_

#include <cstdint>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse::der {

// One element: tag byte (single-byte tags only) and its contents.
struct Element {
  uint8_t tag = 0;
  ByteView contents;
};

// Reads consecutive elements from a buffer.
class Reader {
 public:
  explicit Reader(ByteView data) : data_(data) {}
  bool empty() const { return pos_ >= data_.size(); }
  // Tag of the next element without consuming it (0 when empty).
  uint8_t PeekTag() const { return empty() ? 0 : data_[pos_]; }
  Result<Element> Next();

 private:
  ByteView data_;
  size_t pos_ = 0;
};

// Appends tag + length + contents.
void AppendElement(Bytes& out, uint8_t tag, ByteView contents);
// Contents of a DER INTEGER for a non-negative value (minimal, with 0x00 when the top bit is set).
Bytes UnsignedIntegerContents(uint64_t value);

inline constexpr uint8_t kBoolean = 0x01;
inline constexpr uint8_t kInteger = 0x02;
inline constexpr uint8_t kOctetString = 0x04;
inline constexpr uint8_t kOid = 0x06;
inline constexpr uint8_t kUtf8String = 0x0c;
inline constexpr uint8_t kSequence = 0x30;
inline constexpr uint8_t ContextTag(int n) { return static_cast<uint8_t>(0xa0 | n); }

}  // namespace wimse::der

#endif  // WIMSE_KEYFILE_DER_H_
