// TPM2_MakeCredential in software (verifier side, no TPM): TPM 2.0 Library Part 1 §24
// "Credential Protection" and Part 3 §12.6, as rats-tpm §3.5 M1 summarises it.
//
//   RSA EK: seed = random(digest size of EK nameAlg);
//           secret = RSA-OAEP(EK, seed, hash = EK nameAlg, label = "IDENTITY\0")
//   ECC EK: ephemeral ECDH key on the EK curve; Z = x-coordinate of the shared point;
//           seed = KDFe(nameAlg, Z, "IDENTITY", ephemeral.x, EK.x, digest bits);
//           secret = TPMS_ECC_POINT(ephemeral public)
//   symKey  = KDFa(nameAlg, seed, "STORAGE", Name(AK), "", EK symmetric key bits)
//   encId   = AES-CFB(symKey, IV = 0, TPM2B_DIGEST(credential))
//   hmacKey = KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)
//   blob    = TPM2B_ID_OBJECT(TPM2B_DIGEST(HMAC(hmacKey, encId || Name(AK))) || encId)
//
// Only the TPM holding the EK's private part can recover the seed, and it releases the
// credential only when an object with exactly Name(AK) is loaded beside the EK (ActivateCredential
// checks the HMAC over the Name). Pure (OpenSSL only), thread-safe. KDFa/KDFe live in
// crypto/kdf.h.
#ifndef WIMSE_ATTEST_CREDENTIAL_H_
#define WIMSE_ATTEST_CREDENTIAL_H_

#include <string_view>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse::attest {

// TPM2_MakeCredential output, both marshalled as the TPM marshals them.
struct MadeCredential {
  Bytes credential_blob;  // TPM2B_ID_OBJECT
  Bytes secret;           // TPM2B_ENCRYPTED_SECRET
};

// Makes a credential for `credential` (1..32 bytes; a secret) bound to `ak_name` (the AK's
// TPM Name, nameAlg prefix included) and encrypted to the EK `ek_public` (marshalled
// TPM2B_PUBLIC: RSA 2048+ or ECC P-256/P-384, a restricted decryption key with an AES-CFB
// symmetric definition). Errors: Layer::kParse for an unusable EK public, kUsage for bad sizes,
// kOpenSsl when libcrypto fails.
Result<MadeCredential> MakeCredential(ByteView ek_public, ByteView ak_name, ByteView credential);

}  // namespace wimse::attest

#endif  // WIMSE_ATTEST_CREDENTIAL_H_
