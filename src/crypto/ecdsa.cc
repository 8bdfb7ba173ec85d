#include "crypto/ecdsa.h"

#include "crypto/ossl.h"

namespace wimse {

Result<Bytes> EcdsaRsToDer(ByteView r, ByteView s) {
  BignumPtr br(BN_bin2bn(r.data(), static_cast<int>(r.size()), nullptr));
  BignumPtr bs(BN_bin2bn(s.data(), static_cast<int>(s.size()), nullptr));
  if (!br || !bs) return OpenSslError("BN_bin2bn");
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (!sig) return OpenSslError("ECDSA_SIG_new");
  if (ECDSA_SIG_set0(sig.get(), br.get(), bs.get()) != 1) return OpenSslError("ECDSA_SIG_set0");
  br.release();
  bs.release();
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return OpenSslError("i2d_ECDSA_SIG");
  Bytes out(static_cast<size_t>(len));
  uint8_t* p = out.data();
  if (i2d_ECDSA_SIG(sig.get(), &p) != len) return OpenSslError("i2d_ECDSA_SIG");
  return out;
}

Result<Bytes> EcdsaRawToDer(ByteView raw) {
  if (raw.empty() || raw.size() % 2 != 0) {
    return Error(Layer::kParse, "raw ECDSA signature has odd or zero length " +
                                    std::to_string(raw.size()));
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
