#include "crypto/public_key.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "crypto/ecdsa.h"
#include "util/file.h"

namespace wimse {

size_t HashSize(HashAlg alg) {
  switch (alg) {
    case HashAlg::kSha256:
      return 32;
    case HashAlg::kSha384:
      return 48;
    case HashAlg::kSha512:
      return 64;
  }
  return 0;
}

const char* HashName(HashAlg alg) {
  switch (alg) {
    case HashAlg::kSha256:
      return "SHA256";
    case HashAlg::kSha384:
      return "SHA384";
    case HashAlg::kSha512:
      return "SHA512";
  }
  return "";
}

const EVP_MD* SoftwareMd(HashAlg alg) {
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", "provider=default");
  static EVP_MD* const kSha384 = EVP_MD_fetch(nullptr, "SHA384", "provider=default");
  static EVP_MD* const kSha512 = EVP_MD_fetch(nullptr, "SHA512", "provider=default");
  switch (alg) {
    case HashAlg::kSha256:
      return kSha256;
    case HashAlg::kSha384:
      return kSha384;
    case HashAlg::kSha512:
      return kSha512;
  }
  return nullptr;
}

Result<Bytes> Digest(HashAlg alg, ByteView data) {
  Bytes out(HashSize(alg));
  unsigned int len = 0;
  const EVP_MD* md = SoftwareMd(alg);
  if (md == nullptr) return OpenSslError("EVP_MD_fetch");
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1) {
    return OpenSslError("EVP_Digest");
  }
  out.resize(len);
  return out;
}

const char* CurveGroupName(KeyAlg alg) {
  switch (alg) {
    case KeyAlg::kEcP256:
      return "prime256v1";
    case KeyAlg::kEcP384:
      return "secp384r1";
    default:
      return nullptr;
  }
}

size_t CurveFieldSize(KeyAlg alg) {
  switch (alg) {
    case KeyAlg::kEcP256:
      return 32;
    case KeyAlg::kEcP384:
      return 48;
    default:
      return 0;
  }
}

Result<EvpPkeyPtr> EcPublicKeyFromXY(KeyAlg alg, ByteView x, ByteView y) {
  const char* group = CurveGroupName(alg);
  size_t fs = CurveFieldSize(alg);
  if (group == nullptr) return Error(Layer::kUsage, "not an EC key algorithm");
  if (x.size() > fs || y.size() > fs) {
    return Error(Layer::kParse, "EC coordinate wider than the curve field");
  }
  Bytes point(1 + 2 * fs, 0);
  point[0] = 0x04;
  std::copy(x.begin(), x.end(), point.begin() + static_cast<long>(1 + fs - x.size()));
  std::copy(y.begin(), y.end(), point.begin() + static_cast<long>(1 + 2 * fs - y.size()));
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return OpenSslError("OSSL_PARAM_BLD");
  }
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", "provider=default"));
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    return OpenSslError("EVP_PKEY_fromdata_init");
  }
  EVP_PKEY* raw = nullptr;
  // fromdata decodes the point, which fails for points that are not on the curve.
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return OpenSslError("EC public point is not on the curve");
  }
  // EVP_PKEY_fromdata has decoded the point and checked it lies on the curve (and is not the
  // point at infinity). P-256 and P-384 have cofactor 1, so that is the whole public-key
  // validation (SP 800-56A 5.6.2.3.4, partial check suffices); the full check would add a
  // scalar multiplication to every key we parse.
  return EvpPkeyPtr(raw);
}

Result<EvpPkeyPtr> RsaPublicKeyFromNE(ByteView n, uint32_t e) {
  BignumPtr bn(BN_bin2bn(n.data(), static_cast<int>(n.size()), nullptr));
  BignumPtr be(BN_new());
  if (!bn || !be || BN_set_word(be.get(), e) != 1) return OpenSslError("BN");
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, be.get()) != 1) {
    return OpenSslError("OSSL_PARAM_BLD");
  }
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", "provider=default"));
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    return OpenSslError("EVP_PKEY_fromdata_init");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return OpenSslError("RSA public key from n and e");
  }
  return EvpPkeyPtr(raw);
}

Result<KeyAlg> KeyAlgOf(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {0};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &len) != 1) {
      return OpenSslError("EC key has no group");
    }
    std::string g(group, len);
    if (g == "prime256v1" || g == "P-256") return KeyAlg::kEcP256;
    if (g == "secp384r1" || g == "P-384") return KeyAlg::kEcP384;
    return Error(Layer::kPolicy, "unsupported EC curve " + g);
  }
  if (EVP_PKEY_is_a(key, "RSA")) {
    int bits = EVP_PKEY_get_bits(key);
    if (bits == 2048) return KeyAlg::kRsa2048;
    if (bits == 3072) return KeyAlg::kRsa3072;
    return Error(Layer::kPolicy, "unsupported RSA size " + std::to_string(bits));
  }
  return Error(Layer::kPolicy, "unsupported key type");
}

Result<Bytes> EcPublicPoint(EVP_PKEY* key) {
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0, &len) != 1) {
    return OpenSslError("EC public point");
  }
  Bytes out(len);
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, out.data(), out.size(), &len) !=
      1) {
    return OpenSslError("EC public point");
  }
  out.resize(len);
  if (out.empty() || out[0] != 0x04) {
    return Error(Layer::kParse, "EC public point is not in uncompressed form");
  }
  return out;
}

namespace {
// SubjectPublicKeyInfo prefixes (RFC 5480: id-ecPublicKey with the named curve, then the BIT
// STRING header) for an uncompressed point. i2d_PUBKEY goes through OSSL_ENCODER, whose
// per-call lookup dominated the verifier's profile; for the two curves we use the encoding is
// fixed, so it is written directly (a unit test compares it with i2d_PUBKEY).
constexpr uint8_t kSpkiPrefixP256[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                       0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                       0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
constexpr uint8_t kSpkiPrefixP384[] = {0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86,
                                       0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
                                       0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00};
}  // namespace

Result<std::string> PublicKeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1) return OpenSslError("PEM_write_PUBKEY");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

Result<Bytes> PublicKeyToDer(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "EC")) {
    Result<KeyAlg> alg = KeyAlgOf(key);
    Result<Bytes> point = alg.ok() ? EcPublicPoint(key) : Result<Bytes>(alg.error());
    if (alg.ok() && point.ok()) {
      const uint8_t* prefix = *alg == KeyAlg::kEcP256 ? kSpkiPrefixP256 : kSpkiPrefixP384;
      size_t prefix_len =
          *alg == KeyAlg::kEcP256 ? sizeof(kSpkiPrefixP256) : sizeof(kSpkiPrefixP384);
      if (point->size() == 1 + 2 * CurveFieldSize(*alg)) {
        Bytes out(prefix, prefix + prefix_len);
        out.insert(out.end(), point->begin(), point->end());
        return out;
      }
    }
  }
  int len = i2d_PUBKEY(key, nullptr);
  if (len <= 0) return OpenSslError("i2d_PUBKEY");
  Bytes out(static_cast<size_t>(len));
  uint8_t* p = out.data();
  if (i2d_PUBKEY(key, &p) != len) return OpenSslError("i2d_PUBKEY");
  return out;
}

Result<EvpPkeyPtr> PublicKeyFromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslError("BIO_new_mem_buf");
  EvpPkeyPtr key(
      PEM_read_bio_PUBKEY_ex(bio.get(), nullptr, nullptr, nullptr, nullptr, "provider=default"));
  if (!key) return OpenSslError("not a PEM SubjectPublicKeyInfo");
  return key;
}

Result<EvpPkeyPtr> PublicKeyFromDer(ByteView der) {
  // The two EC encodings we produce are fixed prefixes + point: skip the generic decoder.
  for (KeyAlg alg : {KeyAlg::kEcP256, KeyAlg::kEcP384}) {
    const uint8_t* prefix = alg == KeyAlg::kEcP256 ? kSpkiPrefixP256 : kSpkiPrefixP384;
    size_t prefix_len = alg == KeyAlg::kEcP256 ? sizeof(kSpkiPrefixP256) : sizeof(kSpkiPrefixP384);
    size_t fs = CurveFieldSize(alg);
    if (der.size() == prefix_len + 1 + 2 * fs &&
        std::equal(prefix, prefix + prefix_len, der.begin()) && der[prefix_len] == 0x04) {
      return EcPublicKeyFromXY(alg, der.subspan(prefix_len + 1, fs),
                               der.subspan(prefix_len + 1 + fs, fs));
    }
  }
  const uint8_t* p = der.data();
  EvpPkeyPtr key(
      d2i_PUBKEY_ex(nullptr, &p, static_cast<long>(der.size()), nullptr, "provider=default"));
  if (!key) return OpenSslError("not a DER SubjectPublicKeyInfo");
  if (p != der.data() + der.size()) {
    return Error(Layer::kParse, "trailing bytes after SubjectPublicKeyInfo");
  }
  return key;
}

Status VerifyDigest(EVP_PKEY* key, HashAlg hash, ByteView digest, ByteView sig) {
  if (digest.size() != HashSize(hash)) {
    return Error(Layer::kUsage, "digest length does not match the hash algorithm");
  }
  Bytes der_sig;
  ByteView to_verify = sig;
  if (EVP_PKEY_is_a(key, "EC")) {
    WIMSE_ASSIGN_OR_RETURN(KeyAlg alg, KeyAlgOf(key));
    if (sig.size() != 2 * CurveFieldSize(alg)) {
      return Error(Layer::kPolicy,
                   "ECDSA signature has the wrong length " + std::to_string(sig.size()));
    }
    WIMSE_ASSIGN_OR_RETURN(der_sig, EcdsaRawToDer(sig));
    to_verify = der_sig;
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, "provider=default"));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) return OpenSslError("EVP_PKEY_verify_init");
  const EVP_MD* md = SoftwareMd(hash);
  if (md == nullptr || EVP_PKEY_CTX_set_signature_md(ctx.get(), md) != 1) {
    return OpenSslError("EVP_PKEY_CTX_set_signature_md");
  }
  if (EVP_PKEY_is_a(key, "RSA") &&
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1) {
    return OpenSslError("EVP_PKEY_CTX_set_rsa_padding");
  }
  int rc =
      EVP_PKEY_verify(ctx.get(), to_verify.data(), to_verify.size(), digest.data(), digest.size());
  ERR_clear_error();
  if (rc != 1) return Error(Layer::kPolicy, "signature does not verify");
  return OkStatus();
}

Result<std::unique_ptr<SoftwareSigner>> SoftwareSigner::FromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslError("BIO_new_mem_buf");
  EvpPkeyPtr priv(PEM_read_bio_PrivateKey_ex(bio.get(), nullptr, nullptr, nullptr, nullptr,
                                             "provider=default"));
  if (!priv) return OpenSslError("not a PEM private key");
  WIMSE_ASSIGN_OR_RETURN(KeyAlg alg, KeyAlgOf(priv.get()));
  WIMSE_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToDer(priv.get()));
  WIMSE_ASSIGN_OR_RETURN(EvpPkeyPtr pub, PublicKeyFromDer(spki));
  return std::unique_ptr<SoftwareSigner>(new SoftwareSigner(std::move(priv), std::move(pub), alg));
}

Result<std::unique_ptr<SoftwareSigner>> SoftwareSigner::FromPemFile(const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(std::string pem, ReadFileString(path, 64 * 1024));
  auto r = FromPem(pem);
  if (!r.ok()) return r.error().WithContext(path);
  return r;
}

Result<std::unique_ptr<SoftwareSigner>> SoftwareSigner::Generate(KeyAlg alg) {
  EvpPkeyPtr priv;
  if (const char* group = CurveGroupName(alg)) {
    priv.reset(EVP_PKEY_Q_keygen(nullptr, "provider=default", "EC", group));
  } else {
    size_t bits = alg == KeyAlg::kRsa2048 ? 2048 : 3072;
    priv.reset(EVP_PKEY_Q_keygen(nullptr, "provider=default", "RSA", bits));
  }
  if (!priv) return OpenSslError("EVP_PKEY_Q_keygen");
  WIMSE_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToDer(priv.get()));
  WIMSE_ASSIGN_OR_RETURN(EvpPkeyPtr pub, PublicKeyFromDer(spki));
  return std::unique_ptr<SoftwareSigner>(new SoftwareSigner(std::move(priv), std::move(pub), alg));
}

Result<std::string> SoftwareSigner::PrivateKeyPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), private_.get(), nullptr, nullptr, 0, nullptr,
                                       nullptr) != 1) {
    return OpenSslError("PEM_write_bio_PrivateKey");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

Result<Bytes> SoftwareSigner::SignDigest(HashAlg hash, ByteView digest) {
  if (digest.size() != HashSize(hash)) {
    return Error(Layer::kUsage, "digest length does not match the hash algorithm");
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, private_.get(), "provider=default"));
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1) return OpenSslError("EVP_PKEY_sign_init");
  EvpMdPtr md(EVP_MD_fetch(nullptr, HashName(hash), "provider=default"));
  if (!md || EVP_PKEY_CTX_set_signature_md(ctx.get(), md.get()) != 1) {
    return OpenSslError("EVP_PKEY_CTX_set_signature_md");
  }
  if (EVP_PKEY_is_a(private_.get(), "RSA") &&
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1) {
    return OpenSslError("EVP_PKEY_CTX_set_rsa_padding");
  }
  size_t len = 0;
  if (EVP_PKEY_sign(ctx.get(), nullptr, &len, digest.data(), digest.size()) != 1) {
    return OpenSslError("EVP_PKEY_sign");
  }
  Bytes sig(len);
  if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, digest.data(), digest.size()) != 1) {
    return OpenSslError("EVP_PKEY_sign");
  }
  sig.resize(len);
  if (CurveGroupName(alg_) != nullptr) return EcdsaDerToRaw(sig, CurveFieldSize(alg_));
  return sig;
}

}  // namespace wimse
