// Helpers for token tests: forge JWS with arbitrary header/payload bytes and signatures, so
// every rejection path can be reached with an otherwise valid token.
#ifndef WIMSE_TESTS_TOKENS_TOKEN_TEST_UTIL_H_
#define WIMSE_TESTS_TOKENS_TOKEN_TEST_UTIL_H_

#include <string>
#include <string_view>

#include <openssl/rsa.h>

#include <memory>

#include "crypto/ossl.h"
#include "crypto/public_key.h"
#include "crypto/signer.h"
#include "jose/base64url.h"
#include "jose/jws.h"
#include "util/bytes.h"

namespace wimse::testing {

// "<b64(header)>.<b64(payload)>" exactly as given (no re-serialisation).
inline std::string SigningInput(std::string_view header, std::string_view payload) {
  return jose::Base64UrlEncode(header) + "." + jose::Base64UrlEncode(payload);
}

// Signs header/payload bytes as given with `signer` using SHA-256; raw signature as the signer
// returns it (r||s for EC).
inline std::string SignRaw(Signer& signer, std::string_view header, std::string_view payload) {
  std::string input = SigningInput(header, payload);
  auto digest = Digest(HashAlg::kSha256, AsBytes(input));
  auto sig = signer.SignDigest(HashAlg::kSha256, *digest);
  return input + "." + jose::Base64UrlEncode(*sig);
}

// The decoded signature of a compact token.
inline Bytes SignatureOf(std::string_view token) {
  return *jose::Base64UrlDecode(token.substr(token.rfind('.') + 1));
}

// `token` with its signature segment replaced by base64url(sig).
inline std::string WithSignature(std::string_view token, ByteView sig) {
  return std::string(token.substr(0, token.rfind('.') + 1)) + jose::Base64UrlEncode(sig);
}

// A software RSA-2048 key that signs PKCS#1 v1.5 (Signer) and RSASSA-PSS with salt = digest
// length (RsaPssSigner), for PS256 tests.
class SoftwareRsaPssSigner : public Signer, public jose::RsaPssSigner {
 public:
  SoftwareRsaPssSigner() : priv_(EVP_RSA_gen(2048)) {
    unsigned char* der = nullptr;
    int len = i2d_PUBKEY(priv_.get(), &der);
    pub_ = std::move(PublicKeyFromDer(ByteView(der, static_cast<size_t>(len)))).value();
    OPENSSL_free(der);
  }
  Result<Bytes> SignDigest(HashAlg hash, ByteView digest) override {
    return Sign(hash, digest, RSA_PKCS1_PADDING);
  }
  Result<Bytes> SignDigestPss(HashAlg hash, ByteView digest) override {
    return Sign(hash, digest, RSA_PKCS1_PSS_PADDING);
  }
  EVP_PKEY* public_key() const override { return pub_.get(); }
  KeyAlg key_alg() const override { return KeyAlg::kRsa2048; }

 private:
  Result<Bytes> Sign(HashAlg hash, ByteView digest, int padding) {
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, priv_.get(), nullptr));
    EvpMdPtr md(EVP_MD_fetch(nullptr, HashName(hash), nullptr));
    if (!ctx || !md || EVP_PKEY_sign_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx.get(), md.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx.get(), padding) != 1 ||
        (padding == RSA_PKCS1_PSS_PADDING &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST) != 1)) {
      return Error(Layer::kOpenSsl, "RSA sign setup");
    }
    size_t len = 0;
    EVP_PKEY_sign(ctx.get(), nullptr, &len, digest.data(), digest.size());
    Bytes out(len);
    if (EVP_PKEY_sign(ctx.get(), out.data(), &len, digest.data(), digest.size()) != 1) {
      return Error(Layer::kOpenSsl, "RSA sign");
    }
    out.resize(len);
    return out;
  }
  EvpPkeyPtr priv_;
  EvpPkeyPtr pub_;
};

}  // namespace wimse::testing

#endif  // WIMSE_TESTS_TOKENS_TOKEN_TEST_UTIL_H_
