// TPM-side attestation commands (TPM 2.0 Library Part 3): the attestation key, PCR reads,
// TPM2_Quote, TPM2_Certify and TPM2_CertifyCreation. Every function here runs inside
// TpmContext::Run() ("Locked") and returns the TPM's output bytes unchanged, for the evidence
// producer in attest/.
//
// Slots: the AK takes one transient slot while its TpmHandle lives; nothing else here loads
// objects. Sessions: the AK and workload keys have empty auth values and the commands carry no
// secrets, so password sessions are used (CONVENTIONS rule 8).
#ifndef WIMSE_TPM_ATTESTATION_H_
#define WIMSE_TPM_ATTESTATION_H_

#include <tss2/tss2_esys.h>

#include <cstdint>
#include <map>

#include "tpm/context.h"
#include "tpm/workload_key.h"
#include "util/bytes.h"
#include "util/result.h"

namespace wimse::tpm {

// The AK public template: ECC NIST P-256, nameAlg SHA-256, scheme ECDSA/SHA-256, null
// symmetric (a restricted signing key must have one: TPM_RC 0x2d6 otherwise), empty unique,
// empty authPolicy, attributes fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|
// restricted|sign (0x00050072). This is the attribute set of tpm2-tools' tpm2_createak and the
// restricted-signing shape of the attestation keys in TCG "TPM 2.0 Keys for Device Identity and
// Attestation" (IAK/LAK: restricted, sign, fixedTPM, fixedParent, sensitiveDataOrigin), without
// the IAK's adminWithPolicy/authPolicy. As a primary key created from a fixed template under
// the endorsement hierarchy it is the same key on every call on the same TPM (until the EPS
// changes with TPM2_ChangeEPS / TPM2_Clear of the endorsement hierarchy).
TPM2B_PUBLIC AkTemplateEccP256();

// TPMA_OBJECT value of the AK template.
inline constexpr uint32_t kAkAttributes = 0x00050072;

// Where the AK lives: the endorsement hierarchy (TPM 2.0 Part 2 §7.4, TPM_RH_ENDORSEMENT), so the
// TPM does not obfuscate clockInfo/firmwareVersion in its attestations (rats-tpm §3.6).
inline constexpr uint32_t kAkHierarchy = TPM2_RH_ENDORSEMENT;

// A loaded AK: the handle (flushed when it dies) and its public area as marshalled TPM2B_PUBLIC.
struct AttestationKey {
  TpmHandle handle;
  Bytes public_blob;
};

// Within Run(): TPM2_CreatePrimary(TPM_RH_ENDORSEMENT, AkTemplateEccP256()) with the
// endorsement hierarchy's auth (empty by default). Uses one transient slot until the returned
// handle is destroyed.
Result<AttestationKey> CreateAkLocked(ESYS_CONTEXT* esys);

// Within Run(): TPM2_PCR_Read of every PCR in `mask` (bit i = PCR i) in `bank`, looping because
// the TPM returns at most 8 digests per call. Errors if the TPM does not return a selected PCR
// (for example an unallocated bank). No objects loaded.
Result<std::map<uint32_t, Bytes>> PcrReadLocked(ESYS_CONTEXT* esys, TPM2_ALG_ID bank,
                                                uint32_t mask);

// A TPM attestation: the TPMS_ATTEST bytes exactly as returned inside TPM2B_ATTEST, and the
// TPMT_SIGNATURE marshalled with tss2-mu.
struct TpmAttestation {
  Bytes attest;
  Bytes signature;
};

// Largest qualifying data we pass to the TPM: the SHA-256 digest size, which every TPM 2.0
// accepts (TPM2B_DATA is bounded by the largest implemented digest; a longer value fails with
// TPM_RC_SIZE — field case C01 #6). Checked before any TPM command.
inline constexpr size_t kMaxQualifyingData = 32;

// Within Run(): TPM2_Quote(signHandle = `ak`, qualifyingData = `nonce`, scheme = the key's
// (NULL in the command), PCRselect = `bank`/`mask`).
Result<TpmAttestation> QuoteLocked(ESYS_CONTEXT* esys, ESYS_TR ak, ByteView nonce, TPM2_ALG_ID bank,
                                   uint32_t mask);

// Within Run(): TPM2_Certify(objectHandle = `object`, signHandle = `ak`, qualifyingData =
// `nonce`). objectHandle needs the object's ADMIN authorization: `object_session` is the session
// for it (ESYS_TR_PASSWORD for an empty auth value; for a key with an auth value the session
// that WorkloadKey::AuthorizeLocked returns, with the auth value set on `object`). The AK's
// (empty) auth goes in a password session. A failure carries the response code (the caller
// classifies authorization failures).
Result<TpmAttestation> CertifyLocked(ESYS_CONTEXT* esys, ESYS_TR object, ESYS_TR ak, ByteView nonce,
                                     ESYS_TR object_session = ESYS_TR_PASSWORD);

// Within Run(): TPM2_CertifyCreation (Part 3 §18.3) of the loaded `object` by `ak`
// (signHandle, password session, empty auth), qualifyingData = `nonce`, with the creationHash
// and creationTicket TPM2_Create returned for that object (`creation`, as KeyCreation holds
// them). The TPM checks the ticket (an HMAC with its proof value over the object's Name and
// creationHash) before signing: a ticket from another key, another TPM, or a modified hash is
// refused (TPM_RC_TICKET), reported as a Layer::kTpm error saying so. The object needs no
// authorization. No objects loaded.
Result<TpmAttestation> CertifyCreationLocked(ESYS_CONTEXT* esys, ESYS_TR object, ESYS_TR ak,
                                             ByteView nonce, const KeyCreation& creation);

// Marshals TPM2_Create's creation outputs (tss2-mu) into a KeyCreation. Errors: Layer::kInternal
// when tss2-mu refuses a structure.
Result<KeyCreation> MarshalKeyCreation(const TPM2B_CREATION_DATA& data, const TPM2B_DIGEST& hash,
                                       const TPMT_TK_CREATION& ticket);

}  // namespace wimse::tpm

#endif  // WIMSE_TPM_ATTESTATION_H_
