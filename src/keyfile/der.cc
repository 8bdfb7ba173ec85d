#include "keyfile/der.h"

namespace wimse::der {

Result<Element> Reader::Next() {
  if (pos_ + 2 > data_.size()) return Error(Layer::kParse, "DER: truncated element header");
  Element e;
  e.tag = data_[pos_];
  if ((e.tag & 0x1f) == 0x1f) return Error(Layer::kParse, "DER: multi-byte tags not supported");
  size_t p = pos_ + 1;
  size_t len = data_[p++];
  if (len & 0x80) {
    size_t n = len & 0x7f;
    if (n == 0) return Error(Layer::kParse, "DER: indefinite length not allowed");
    if (n > 4) return Error(Layer::kParse, "DER: length field too long");
    if (p + n > data_.size()) return Error(Layer::kParse, "DER: truncated length");
    if (data_[p] == 0) return Error(Layer::kParse, "DER: non-minimal length");
    len = 0;
    for (size_t i = 0; i < n; ++i) len = (len << 8) | data_[p++];
    if (len < 0x80) return Error(Layer::kParse, "DER: non-minimal length");
  }
  if (len > data_.size() - p) return Error(Layer::kParse, "DER: element runs past the end");
  e.contents = data_.subspan(p, len);
  pos_ = p + len;
  return e;
}

void AppendElement(Bytes& out, uint8_t tag, ByteView contents) {
  out.push_back(tag);
  size_t len = contents.size();
  if (len < 0x80) {
    out.push_back(static_cast<uint8_t>(len));
  } else {
    uint8_t buf[8];
    int n = 0;
    for (size_t l = len; l > 0; l >>= 8) buf[n++] = static_cast<uint8_t>(l);
    out.push_back(static_cast<uint8_t>(0x80 | n));
    while (n > 0) out.push_back(buf[--n]);
  }
  out.insert(out.end(), contents.begin(), contents.end());
}

Bytes UnsignedIntegerContents(uint64_t value) {
  Bytes be;
  for (int shift = 56; shift >= 0; shift -= 8) be.push_back(static_cast<uint8_t>(value >> shift));
  size_t i = 0;
  while (i + 1 < be.size() && be[i] == 0) ++i;
  Bytes out(be.begin() + static_cast<long>(i), be.end());
  if (out[0] & 0x80) out.insert(out.begin(), 0x00);
  return out;
}

}  // namespace wimse::der
