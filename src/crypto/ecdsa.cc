#include "crypto/ecdsa.h"

#include "crypto/ossl.h"

namespace wimse {

namespace {

// Appends a DER length (short form below 128, else long form).
void AppendDerLength(Bytes* out, size_t len) {
  if (len < 0x80) {
    out->push_back(static_cast<uint8_t>(len));
    return;
  }
  uint8_t tmp[sizeof(size_t)];
  size_t n = 0;
  for (size_t v = len; v != 0; v >>= 8) tmp[n++] = static_cast<uint8_t>(v);
  out->push_back(static_cast<uint8_t>(0x80 | n));
  while (n > 0) out->push_back(tmp[--n]);
}

size_t DerLengthSize(size_t len) {
  size_t n = 1;
  if (len >= 0x80) {
    for (size_t v = len; v != 0; v >>= 8) ++n;
  }
  return n;
}

// The minimal two's-complement content of the non-negative big-endian integer `v`: leading
// zero bytes dropped (one kept for zero), a 0x00 added where the top bit would read as a sign.
struct DerUnsigned {
  ByteView digits;
  bool pad;
  size_t size() const { return digits.size() + (pad ? 1 : 0); }
};
DerUnsigned MinimalUnsigned(ByteView v) {
  size_t i = 0;
  while (i + 1 < v.size() && v[i] == 0) ++i;
  ByteView digits = v.subspan(i);
  return {digits, digits.empty() || (digits[0] & 0x80) != 0};
}

void AppendDerInteger(Bytes* out, const DerUnsigned& n) {
  out->push_back(0x02);
  AppendDerLength(out, n.size());
  if (n.pad) out->push_back(0x00);
  out->insert(out->end(), n.digits.begin(), n.digits.end());
}

}  // namespace

// Encoded directly (SEQUENCE { INTEGER r, INTEGER s }, X9.62 / RFC 3279): the BIGNUM and
// i2d_ECDSA_SIG round trip cost more client CPU than the rest of a provider signature.
Result<Bytes> EcdsaRsToDer(ByteView r, ByteView s) {
  if (r.empty() || s.empty()) return Error(Layer::kParse, "ECDSA r or s is empty");
  DerUnsigned dr = MinimalUnsigned(r);
  DerUnsigned ds = MinimalUnsigned(s);
  size_t body = 1 + DerLengthSize(dr.size()) + dr.size() + 1 + DerLengthSize(ds.size()) + ds.size();
  Bytes out;
  out.reserve(1 + DerLengthSize(body) + body);
  out.push_back(0x30);
  AppendDerLength(&out, body);
  AppendDerInteger(&out, dr);
  AppendDerInteger(&out, ds);
  return out;
}

Result<Bytes> EcdsaRawToDer(ByteView raw) {
  if (raw.empty() || raw.size() % 2 != 0) {
    return Error(Layer::kParse,
                 "raw ECDSA signature has odd or zero length " + std::to_string(raw.size()));
  }
  size_t half = raw.size() / 2;
  return EcdsaRsToDer(raw.subspan(0, half), raw.subspan(half));
}

Result<Bytes> EcdsaRsToRaw(ByteView r, ByteView s, size_t field_size) {
  // Strip leading zeros, then left-pad.
  auto strip = [](ByteView v) {
    size_t i = 0;
    while (i < v.size() && v[i] == 0) ++i;
    return v.subspan(i);
  };
  ByteView rs = strip(r), ss = strip(s);
  if (rs.size() > field_size || ss.size() > field_size) {
    return Error(Layer::kParse, "ECDSA r or s wider than the curve field");
  }
  Bytes out(2 * field_size, 0);
  std::copy(rs.begin(), rs.end(), out.begin() + static_cast<long>(field_size - rs.size()));
  std::copy(ss.begin(), ss.end(), out.begin() + static_cast<long>(2 * field_size - ss.size()));
  return out;
}

Result<Bytes> EcdsaDerToRaw(ByteView der, size_t field_size) {
  const uint8_t* p = der.data();
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return OpenSslError("malformed DER ECDSA signature");
  if (p != der.data() + der.size()) {
    return Error(Layer::kParse, "trailing bytes after DER ECDSA signature");
  }
  // Re-encode and compare: rejects BER and non-minimal integers.
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  Bytes again(static_cast<size_t>(len > 0 ? len : 0));
  uint8_t* q = again.data();
  if (len <= 0 || i2d_ECDSA_SIG(sig.get(), &q) != len || again.size() != der.size() ||
      !std::equal(again.begin(), again.end(), der.begin())) {
    return Error(Layer::kParse, "DER ECDSA signature is not minimally encoded");
  }
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  if (BN_num_bytes(r) > static_cast<int>(field_size) ||
      BN_num_bytes(s) > static_cast<int>(field_size)) {
    return Error(Layer::kParse, "ECDSA r or s wider than the curve field");
  }
  Bytes out(2 * field_size);
  if (BN_bn2binpad(r, out.data(), static_cast<int>(field_size)) < 0 ||
      BN_bn2binpad(s, out.data() + field_size, static_cast<int>(field_size)) < 0) {
    return OpenSslError("BN_bn2binpad");
  }
  return out;
}

}  // namespace wimse
