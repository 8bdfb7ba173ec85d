// The endorsement key (EK) and its certificate (TCG EK Credential Profile for TPM Family 2.0,
// templates L-1, L-2 and H-3; NV indices as swtpm_setup provisions them, rats-tpm §5.1), and
// TPM2_ActivateCredential for AK enrolment (TPM 2.0 Part 3 §12.5; rats-tpm §3.5 M2).
//
// Every function runs inside TpmContext::Run() ("Locked"). Slots: an EK takes one transient
// slot while its TpmHandle lives. Sessions: the ActivateCredential of an L-range EK (no
// userWithAuth) uses one policy session with PolicySecret(TPM_RH_ENDORSEMENT), and every
// ActivateCredential one salted HMAC session (salt to the EK, AES-128-CFB) that encrypts the
// response, so the recovered credential never crosses the TPM bus in clear; both are flushed
// before returning on every path (at most two session slots).
#ifndef WIMSE_TPM_EK_H_
#define WIMSE_TPM_EK_H_

#include <tss2/tss2_esys.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "tpm/context.h"
#include "util/bytes.h"
#include "util/result.h"

namespace wimse::tpm {

// The EK templates we support.
enum class EkType {
  kRsa2048,  // L-1: RSA 2048, SHA-256, AES-128-CFB, unique = 256 zero bytes, cert 0x01C00002
  kEccP256,  // L-2: NIST P-256, SHA-256, AES-128-CFB, unique = 2x32 zero bytes, cert 0x01C0000A
  kEccP384,  // H-3: NIST P-384, SHA-384, AES-256-CFB, empty unique, userWithAuth, cert 0x01C00016
};

// "rsa2048", "ecc-p256", "ecc-p384" and back. Unknown names are a kUsage error.
std::string_view EkTypeName(EkType type);
Result<EkType> EkTypeFromName(std::string_view name);

// The TCG default EK template of `type` (TPM2B_PUBLIC for TPM2_CreatePrimary).
TPM2B_PUBLIC EkTemplate(EkType type);

// NV index holding the EK certificate for `type`.
uint32_t EkCertNvIndex(EkType type);

// TPM2_PolicySecret(TPM_RH_ENDORSEMENT) policy digests (TCG EK Credential Profile "PolicyA"),
// the authPolicy of the L-range templates.
inline constexpr char kEkPolicyASha256Hex[] =
    "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa";

// A loaded EK: handle (flushed when it dies) and its public area as marshalled TPM2B_PUBLIC.
struct EndorsementKey {
  EkType type = EkType::kRsa2048;
  TpmHandle handle;
  Bytes public_blob;
};

// Within Run(): TPM2_CreatePrimary(TPM_RH_ENDORSEMENT, EkTemplate(type)) with the endorsement
// hierarchy's (empty) auth. The same key on every call until the EPS changes. One slot.
Result<EndorsementKey> CreateEkLocked(ESYS_CONTEXT* esys, EkType type);

// Within Run(): reads the whole NV index `nv_index` (TPM2_NV_ReadPublic, then TPM2_NV_Read in
// chunks with the index's own empty auth) and returns the DER certificate in it, trimmed to the
// outer DER SEQUENCE (some TPMs pad the index; rats-tpm §5.2 step 3). Errors: Layer::kTpm when
// the index does not exist, kParse when its content does not start with a DER SEQUENCE.
Result<Bytes> ReadNvCertificateLocked(ESYS_CONTEXT* esys, uint32_t nv_index);

// Within Run(): TPM2_ActivateCredential(activateHandle = `ak` (password, ADMIN role),
// keyHandle = `ek` (policy session with PolicySecret(endorsement) for L-range EKs, password for
// H-range EKs, which have userWithAuth), credentialBlob = `credential_blob` (marshalled
// TPM2B_ID_OBJECT), secret = `secret` (marshalled TPM2B_ENCRYPTED_SECRET)),
// with the response parameter encrypted by a salted session (salt to the EK). Returns the
// recovered credential: a secret, never log it. TPM_RC_INTEGRITY / TPM_RC_VALUE mean the blob
// was not made for this AK Name and this EK.
Result<SecretBytes> ActivateCredentialLocked(ESYS_CONTEXT* esys, ESYS_TR ak,
                                             const EndorsementKey& ek, ByteView credential_blob,
                                             ByteView secret);

}  // namespace wimse::tpm

#endif  // WIMSE_TPM_EK_H_
