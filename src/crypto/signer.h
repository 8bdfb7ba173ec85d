// Signer: one interface for "sign a digest with this key", so JOSE, X.509 and TLS code treat a
// TPM key and a software key alike (DESIGN: dependencies point one way; verifiers and tests
// never need a TPM to check what a TPM signed).
#ifndef WIMSE_CRYPTO_SIGNER_H_
#define WIMSE_CRYPTO_SIGNER_H_

#include <openssl/evp.h>

#include <string>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse {

enum class HashAlg { kSha256, kSha384, kSha512 };

// Digest size in bytes.
size_t HashSize(HashAlg alg);
// OpenSSL name ("SHA256", ...).
const char* HashName(HashAlg alg);
// One-shot software digest (default provider).
Result<Bytes> Digest(HashAlg alg, ByteView data);
// The digest's EVP_MD from the default provider, fetched once per process (a fetch is a locked
// name lookup in OpenSSL 3; the object is immutable and shared between threads). Never a TPM
// provider's, whatever else is active. Not owned by the caller; null only if the fetch failed.
const EVP_MD* SoftwareMd(HashAlg alg);

// Key algorithms wimse-tpm handles.
enum class KeyAlg { kEcP256, kEcP384, kRsa2048, kRsa3072 };

class Signer {
 public:
  virtual ~Signer() = default;

  // Signs `digest` (already hashed with `hash`; its length must equal HashSize(hash)).
  // EC keys return the raw fixed-width r||s (2 x field size, the JOSE form); convert with
  // EcdsaRawToDer for X.509/TLS. RSA keys return PKCS#1 v1.5 signatures of the modulus size.
  // Thread-safe if the implementation says so (TpmSigner is; it serialises on the TPM lock).
  virtual Result<Bytes> SignDigest(HashAlg hash, ByteView digest) = 0;

  // The public key as a software EVP_PKEY (public part only). Borrowed: valid while the Signer
  // lives. Never carries private material.
  virtual EVP_PKEY* public_key() const = 0;

  // The key algorithm.
  virtual KeyAlg key_alg() const = 0;
};

}  // namespace wimse

#endif  // WIMSE_CRYPTO_SIGNER_H_
