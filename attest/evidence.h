// The evidence producer (attester side): TPM2_Quote over the selected PCRs and TPM2_Certify of
// a workload key, both by the AK and both carrying the verifier's nonce, packed as
// tpm2-evidence v1 inside a CMW record (rats-tpm §2.5, §7).
#ifndef WIMSE_ATTEST_EVIDENCE_H_
#define WIMSE_ATTEST_EVIDENCE_H_

#include <optional>
#include <string>

#include "attest/enrollment.h"
#include "attest/evidence_format.h"
#include "attest/verifier.h"
#include "tpm/context.h"
#include "tpm/ek.h"
#include "tpm/workload_key.h"
#include "util/bytes.h"
#include "util/result.h"

namespace wimse::attest {

// Collects evidence for `key` bound to `nonce` (1..32 bytes; longer nonces are refused before
// any TPM command, field case C01 #6).
//
// TPM side effects, all within one TpmContext::Run() (one lock hold): the workload key is
// loaded through the context cache (WorkloadKey::LoadLocked: SRK context-loaded and flushed,
// key left in the cache), the AK is created as an endorsement-hierarchy primary
// (TPM2_CreatePrimary) and flushed before returning on every path; PCRs are read, quoted and
// read again, retried up to 3 times if an extend raced the quote (rats-tpm §6 #3). At most 3
// transient slots are used at once (cache + SRK during the key load, then cache + AK).
// Thread-safe (serialised on the context lock).
Result<Tpm2Evidence> ProduceEvidence(tpm::TpmContext& ctx, const tpm::WorkloadKey& key,
                                     ByteView nonce,
                                     const PcrBankSelection& pcrs = PcrBankSelection{});

// Default event-log locations (Linux securityfs, rats-tpm §4.3).
inline constexpr char kDefaultUefiLogPath[] = "/sys/kernel/security/tpm0/binary_bios_measurements";
inline constexpr char kDefaultImaLogPath[] = "/sys/kernel/security/ima/binary_runtime_measurements";

struct EvidenceOptions {
  PcrBankSelection pcrs;
  // Event logs to attach. Empty: none. A default path that cannot be read (not root, no
  // securityfs) is skipped; any other path that cannot be read is an error. An IMA path ending
  // in "ascii_runtime_measurements" is sent as "ima-ascii", otherwise as "ima-binary".
  std::string uefi_log_path = kDefaultUefiLogPath;
  std::string ima_log_path = kDefaultImaLogPath;
  // The key's creation record (LoadKeyCreation). When set, or when the key itself carries one
  // (made by WorkloadKey::Create in this process), the evidence also holds TPM2_CertifyCreation
  // of the key by the AK with the same nonce (keys[0].creation). Absent: no creation member.
  std::optional<tpm::KeyCreation> creation;
};

// --- The key creation record: KEY.creation beside the key file -------------------------------
//
// `wimse-tpm keygen --out KEY` writes KEY.creation; `wimse-tpm attest --key KEY` reads it when
// present. A small JSON object (docs/attestation.md "Key creation record"):
//   {"format": "wimse-tpm/key-creation/v1", "name": b64url(Name of the key),
//    "creation_data": b64url(TPM2B_CREATION_DATA), "creation_hash": b64url(TPM2B_DIGEST),
//    "creation_ticket": b64url(TPMT_TK_CREATION)}
// holding the exact tss2-mu bytes of TPM2_Create's outputs. Nothing in it is secret (the ticket
// is an HMAC only the TPM that made it can check), so it is written 0644.
inline constexpr char kKeyCreationSuffix[] = ".creation";
inline constexpr char kKeyCreationFormat[] = "wimse-tpm/key-creation/v1";

// The record's JSON text for `creation` of the key named `key_name`.
std::string EncodeKeyCreation(const tpm::KeyCreation& creation, ByteView key_name);
// Parses a record; it must name `key_name` (else a Layer::kUsage error saying the record belongs
// to another key). Errors: Layer::kParse for a malformed record.
Result<tpm::KeyCreation> DecodeKeyCreation(std::string_view json, ByteView key_name);
// Writes `key_path` + kKeyCreationSuffix atomically (0644) when the key has a creation record;
// does nothing otherwise.
Status SaveKeyCreation(const std::string& key_path, const tpm::WorkloadKey& key);
// Reads `key_path` + kKeyCreationSuffix for `key`; nullopt when the file does not exist.
Result<std::optional<tpm::KeyCreation>> LoadKeyCreation(const std::string& key_path,
                                                        const tpm::WorkloadKey& key);

// ProduceEvidence with event logs (and, when `creation` or the key has one, TPM2_CertifyCreation).
// The logs are read after the quote, so they may run ahead of it (the verifier accepts an IMA
// prefix; rats-tpm §4.4).
Result<Tpm2Evidence> ProduceEvidence(tpm::TpmContext& ctx, const tpm::WorkloadKey& key,
                                     ByteView nonce, const EvidenceOptions& options);

// ProduceEvidence, encoded and wrapped: returns the CMW JSON record text.
Result<std::string> ProduceEvidenceCmw(tpm::TpmContext& ctx, const tpm::WorkloadKey& key,
                                       ByteView nonce,
                                       const PcrBankSelection& pcrs = PcrBankSelection{});

// The AK's public area (marshalled TPM2B_PUBLIC) on this TPM: creates the AK primary, reads its
// public area, flushes it. For enrolment and for exporting the AK public key.
Result<Bytes> ReadAkPublic(tpm::TpmContext& ctx);

// Enrolment, agent side (rats-tpm §3.5, §7 step 1): the EK of `ek_type` (TPM2_CreatePrimary
// from the TCG template), its certificate from NV (left empty when the index does not exist),
// and the AK public, as a request binding `identity`. TPM side effects, within one Run(): EK
// and AK primaries created and flushed (2 transient slots at most), NV index read.
Result<EnrollmentRequest> ProduceEnrollmentRequest(tpm::TpmContext& ctx, tpm::EkType ek_type,
                                                   const std::string& identity);

// Enrolment, agent side, step 2: TPM2_ActivateCredential of `challenge` with the AK and the EK
// of `ek_type` (both re-created, then flushed; the EK's policy session is flushed). Returns the
// released credential (a secret: send it to the verifier, never log it).
Result<SecretBytes> ActivateEnrollmentChallenge(tpm::TpmContext& ctx, tpm::EkType ek_type,
                                                const EnrollmentChallenge& challenge);

}  // namespace wimse::attest

#endif  // WIMSE_ATTEST_EVIDENCE_H_
