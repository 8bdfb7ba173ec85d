// Software public keys: build EVP_PKEYs from raw TPM coordinates, and encode/decode
// SubjectPublicKeyInfo (PEM/DER). Public material only; nothing here can hold a private key
// except LoadPrivateKeyPem, used for software issuer keys (never for TPM workload keys).
#ifndef WIMSE_CRYPTO_PUBLIC_KEY_H_
#define WIMSE_CRYPTO_PUBLIC_KEY_H_

#include <string>

#include "crypto/ossl.h"
#include "crypto/signer.h"
#include "util/bytes.h"
#include "util/result.h"

namespace wimse {

// Curve helpers. `group_name` is the OpenSSL name ("prime256v1", "secp384r1").
const char* CurveGroupName(KeyAlg alg);
size_t CurveFieldSize(KeyAlg alg);

// Builds an EC public key from big-endian affine coordinates (each may be shorter than the
// field; it is left-padded). Rejects points not on the curve.
Result<EvpPkeyPtr> EcPublicKeyFromXY(KeyAlg alg, ByteView x, ByteView y);
// Builds an RSA public key from a big-endian modulus and exponent.
Result<EvpPkeyPtr> RsaPublicKeyFromNE(ByteView n, uint32_t e);

// The key algorithm of a software key (P-256, P-384, RSA 2048/3072); other keys are an error.
Result<KeyAlg> KeyAlgOf(EVP_PKEY* key);

// Uncompressed EC point 04||X||Y, or x and y separately, each padded to the field size.
Result<Bytes> EcPublicPoint(EVP_PKEY* key);

// SubjectPublicKeyInfo encodings.
Result<std::string> PublicKeyToPem(EVP_PKEY* key);
Result<Bytes> PublicKeyToDer(EVP_PKEY* key);
Result<EvpPkeyPtr> PublicKeyFromPem(std::string_view pem);
Result<EvpPkeyPtr> PublicKeyFromDer(ByteView der);

// Verifies a signature in software. `sig` is raw r||s for EC keys, PKCS#1 v1.5 for RSA.
Status VerifyDigest(EVP_PKEY* key, HashAlg hash, ByteView digest, ByteView sig);

// A Signer over a software private key loaded from PEM (PKCS#8 or traditional). For issuer
// and verifier keys that are deliberately kept in software; workload keys live in the TPM.
class SoftwareSigner : public Signer {
 public:
  static Result<std::unique_ptr<SoftwareSigner>> FromPem(std::string_view pem);
  static Result<std::unique_ptr<SoftwareSigner>> FromPemFile(const std::string& path);
  // Generates a fresh software key (tests, demo issuer).
  static Result<std::unique_ptr<SoftwareSigner>> Generate(KeyAlg alg);

  Result<Bytes> SignDigest(HashAlg hash, ByteView digest) override;
  EVP_PKEY* public_key() const override { return public_.get(); }
  KeyAlg key_alg() const override { return alg_; }
  // PEM PKCS#8 of the private key (for tests and the demo's throwaway issuer only).
  Result<std::string> PrivateKeyPem() const;

 private:
  SoftwareSigner(EvpPkeyPtr priv, EvpPkeyPtr pub, KeyAlg alg)
      : private_(std::move(priv)), public_(std::move(pub)), alg_(alg) {}
  EvpPkeyPtr private_;
  EvpPkeyPtr public_;
  KeyAlg alg_;
};

}  // namespace wimse

#endif  // WIMSE_CRYPTO_PUBLIC_KEY_H_
