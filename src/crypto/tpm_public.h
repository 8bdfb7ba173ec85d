// TPM public areas without a TPM: unmarshal TPM2B_PUBLIC / TPMT_PUBLIC (tss2-mu), turn them
// into software EVP_PKEYs, and compute TPM Names. Used by the key layer, the provider and the
// verifier (which must not link tss2-esys).
#ifndef WIMSE_CRYPTO_TPM_PUBLIC_H_
#define WIMSE_CRYPTO_TPM_PUBLIC_H_

#include <tss2/tss2_tpm2_types.h>

#include "crypto/ossl.h"
#include "crypto/signer.h"
#include "util/bytes.h"
#include "util/result.h"

namespace wimse {

// Unmarshals a TPM2B_PUBLIC (with its size prefix); the whole buffer must be consumed and the
// inner size must match.
Result<TPM2B_PUBLIC> UnmarshalTpm2bPublic(ByteView blob);
// Marshals TPMT_PUBLIC (no size prefix): the bytes the Name is computed over.
Result<Bytes> MarshalTpmtPublic(const TPMT_PUBLIC& pub);
// Marshals TPM2B_PUBLIC (with size prefix).
Result<Bytes> MarshalTpm2bPublic(const TPM2B_PUBLIC& pub);

// The key algorithm of an ECC (P-256/P-384) or RSA (2048/3072) public area.
Result<KeyAlg> KeyAlgOfTpmPublic(const TPMT_PUBLIC& pub);
// Software public key for the public area (EC point checked to be on the curve).
Result<EvpPkeyPtr> PublicKeyFromTpmPublic(const TPMT_PUBLIC& pub);
// TPM Name: nameAlg (2 bytes, big-endian) || H_nameAlg(TPMT_PUBLIC). Supports sha1/256/384/512.
Result<Bytes> TpmName(const TPMT_PUBLIC& pub);
// Hash algorithm for a TPM_ALG_ID (sha256/384/512), or an error.
Result<HashAlg> HashAlgFromTpm(TPM2_ALG_ID alg);
TPM2_ALG_ID TpmAlgFromHash(HashAlg alg);

// Checks in software that `sig` is an RSA-PSS signature over `digest` with salt length equal
// to the digest length (RFC 8446 4.2.3 for rsa_pss_rsae_*; OpenSSL verifies TLS 1.2 PSS the
// same way). TPMs differ: libtpms uses the digest length, some chips the maximum (tpm2-openssl
// #114). A signature that verifies only with another salt length is a Layer::kTpm error saying
// so; one that does not verify at all is a Layer::kTpm error too. Public key only; thread-safe.
Status CheckRsaPssSaltIsDigestLength(EVP_PKEY* public_key, HashAlg hash, ByteView digest,
                                     ByteView sig);

}  // namespace wimse

#endif  // WIMSE_CRYPTO_TPM_PUBLIC_H_
