// The TPM evidence verifier: a pure function from (evidence, options) to an appraisal that lists
// every reason the evidence is not acceptable (CONVENTIONS rule 4; rats-tpm §3.3, §3.4).
//
// It parses TPM structures with tss2-mu (bounds-checked, whole buffer consumed), checks
// signatures with OpenSSL, and links neither tss2-esys nor the TPM library, so it runs on hosts
// without a TPM. No globals, no I/O, no clock reads (the caller passes the time). Thread-safe:
// calls share nothing.
//
// Fail closed: any parse error or failed check makes the verdict contraindicated; checks keep
// running after a failure so the caller sees every reason, not only the first.
#ifndef WIMSE_ATTEST_VERIFIER_H_
#define WIMSE_ATTEST_VERIFIER_H_

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "attest/evidence_format.h"
#include "util/bytes.h"

namespace wimse::attest {

// Why evidence was rejected. Each has a stable snake_case code (ReasonCode) that tests, logs and
// the CLI use.
enum class Reason {
  kCmwMalformed,                 // CMW record unparsable, wrong type or ind
  kEvidenceMalformed,            // evidence JSON unparsable or missing members
  kNoncePolicy,                  // the expected nonce itself violates policy (too short)
  kAkPublicMalformed,            // AK TPM2B_PUBLIC unparsable or unusable key
  kAkNotTrusted,                 // AK differs from the trusted AK given in the options
  kAkAttributes,                 // AK not restricted|sign|fixedTPM|fixedParent|sensitiveDataOrigin
  kAkScheme,                     // AK has no signing scheme or an unsupported one
  kQuoteMissing,                 // no quote for the expected bank
  kQuoteMalformed,               // TPMS_ATTEST / TPMT_SIGNATURE unparsable, trailing bytes
  kQuoteNotTpmGenerated,         // magic != TPM_GENERATED_VALUE
  kQuoteWrongType,               // type != TPM_ST_ATTEST_QUOTE
  kQuoteSignatureInvalid,        // signature does not verify with the AK (or scheme mismatch)
  kQuoteNonceMismatch,           // extraData != expected nonce
  kPcrSelectionMismatch,         // quoted selection != expected selection
  kPcrValuesMismatch,            // presented values do not match the quoted selection (set/sizes)
  kPcrDigestMismatch,            // recomputed pcrDigest != quoted pcrDigest
  kClockNotSafe,                 // clockInfo.safe == NO
  kKeyMissing,                   // not exactly one certified key
  kKeyPublicMalformed,           // workload key TPM2B_PUBLIC unparsable or unusable
  kKeyAttributes,                // workload key may leave the TPM or has the wrong role
  kCertifyMalformed,             // certify TPMS_ATTEST / TPMT_SIGNATURE unparsable
  kCertifyNotTpmGenerated,       // magic
  kCertifyWrongType,             // type != TPM_ST_ATTEST_CERTIFY
  kCertifySignatureInvalid,      // certify signature does not verify with the AK
  kCertifyNonceMismatch,         // certify extraData != expected nonce
  kCertifyNameMismatch,          // certified Name != Name(presented public area)
  kCertifyQualifiedNameMissing,  // qualifiedName empty
  kCertifySignerMismatch,        // certify qualifiedSigner differs from the quote's
  kBootMismatch,                 // certify and quote from different boots (reset/restart counts)
  kBankNotAllowed,               // sha1 bank without allow_sha1, or an unknown bank
  kAkNotEnrolled,                // AK Name differs from the enrolled AK Name
  kEvidenceTooOld,               // nonce issued longer ago than the policy's maximum age
  kClockRollback,                // resetCount/restartCount/clock went back for this AK
  kPcrReferenceMismatch,         // a quoted PCR differs from the policy's reference value
  kEventLogMalformed,            // event log unparsable or over the limits
  kEventLogReplayMismatch,       // the log does not replay to the quoted PCR values
  kEventDenied,                  // a replayed event digest is on the policy's deny list
  kEventNotAllowed,              // a replayed event digest is not on the policy's allow list
  // TPM2_CertifyCreation (keys[0].creation; optional unless AppraisalOptions::require_creation).
  kCreationMissing,           // require_creation and the evidence has no creation attestation
  kCreationMalformed,         // creation TPMS_ATTEST / TPMT_SIGNATURE / TPM2B_CREATION_DATA bad
  kCreationNotTpmGenerated,   // magic
  kCreationWrongType,         // type != TPM_ST_ATTEST_CREATION
  kCreationSignatureInvalid,  // creation signature does not verify with the AK
  kCreationNonceMismatch,     // creation extraData != expected nonce
  kCreationNameMismatch,      // objectName != Name(presented public area)
  kCreationHashMismatch,      // creationHash != H_nameAlg(presented creation data)
  kCreationParentMismatch,    // creation parent is not the certified key's parent, not a
                              // storage-hierarchy primary, or not the expected parent
  kCreationPcrMismatch,       // creation PCR digest differs from the policy's reference values
};

// Stable code for a reason, e.g. "quote_nonce_mismatch".
std::string_view ReasonCode(Reason reason);

struct Failure {
  Reason reason;
  std::string detail;  // human-readable, no secrets
  // "<code>: <detail>" (or just the code when there is no detail).
  std::string ToString() const;
};

// A PCR bank and the PCRs selected in it (bit i = PCR i, i < 24).
struct PcrBankSelection {
  uint16_t bank = TPM2_ALG_SHA256;
  uint32_t mask = 0xFF;  // PCRs 0-7
};

// The appraisal policy (JSON form and documentation: attest/policy.h, docs/attestation.md).
struct AttestationPolicy {
  std::string id = "urn:wimse-tpm:policy:default";
  PcrBankSelection pcrs;
  bool allow_sha1 = false;
  std::map<uint32_t, Bytes> reference_values;  // PCR -> expected value (bank size)
  std::set<Bytes> allowed_event_digests;       // empty: no allow list
  std::set<Bytes> denied_event_digests;
  std::vector<std::string> ek_roots_pem;  // enrolment trust anchors
  int64_t max_evidence_age_seconds = 0;   // 0: not checked
};

// TPM clock state of one AK (TPMS_CLOCK_INFO without `safe`), kept by the caller between
// appraisals for reboot and rollback detection (rats-tpm §3.6).
struct ClockState {
  uint64_t clock = 0;
  uint32_t reset_count = 0;
  uint32_t restart_count = 0;
};

struct AppraisalOptions {
  // The nonce this verifier issued for this round (compared with both extraData fields).
  Bytes expected_nonce;
  // The selection the quote must cover exactly (default: sha256, PCRs 0-7).
  PcrBankSelection expected_pcrs;
  // DER SubjectPublicKeyInfo of the enrolled AK. Absent: the evidence's AK is accepted if its
  // attributes pass (no enrolment yet), which proves nothing about TPM residency by itself.
  std::optional<Bytes> trusted_ak_spki;
  // Verifier time (seconds since the epoch), for results; the TPM clock is not wall time.
  int64_t now_unix = 0;
  // Nonces shorter than this are refused by policy (field case C01).
  size_t min_nonce_size = kMinNonceSize;
  // The policy (not owned; must outlive the call). When set, its selection replaces
  // `expected_pcrs` and its reference values, event lists and maximum age apply.
  const AttestationPolicy* policy = nullptr;
  // Without a policy: whether a sha1 `expected_pcrs.bank` is acceptable.
  bool allow_sha1 = false;
  // Name(AK) pinned at enrolment (EnrollmentRecord::ak_name); the evidence AK must have it.
  std::optional<Bytes> enrolled_ak_name;
  // Without trusted_ak_spki or enrolled_ak_name the AK is only what the evidence says it is:
  // its attributes are bytes the attester chose, so anyone can forge a "restricted" AK in
  // software. Appraisal then fails closed (ak_not_trusted) unless this is set, which a caller
  // may do only where the AK's TPM residency is established some other way (tests, a demo
  // that reads the AK from the TPM it is talking to).
  bool allow_unenrolled_ak = false;
  // Whether that enrolment validated an EK certificate chain (EAR `hardware` claim).
  bool enrolled_ek_certified = false;
  // When the nonce was issued (seconds since the epoch); with policy.max_evidence_age_seconds.
  int64_t nonce_issued_unix = 0;
  // The clock floor for this AK, if any: the highest clock state accepted before
  // `expected_nonce` was issued (not the latest on file at appraisal: quotes of one TPM may be
  // appraised out of clock order). The quote must be strictly later (same reset/restart: higher
  // clock), or carry a higher resetCount/restartCount (rebooted/resumed); else kClockRollback.
  std::optional<ClockState> last_clock;
  // Fail (creation_missing) when the key's creation is not certified (TPM2_CertifyCreation).
  bool require_creation = false;
  // Name of the parent the workload key must have been created under (for example the SRK's
  // Name recorded at enrolment). Checked only when the evidence certifies the creation.
  std::optional<Bytes> expected_creation_parent_name;
};

enum class Verdict { kAffirming, kContraindicated };

struct AppraisalResult {
  Verdict verdict = Verdict::kContraindicated;
  std::vector<Failure> failures;
  // Set only when affirming: DER SubjectPublicKeyInfo of the certified workload key, its TPM
  // Name, and the AK's Name.
  Bytes workload_key_spki;
  Bytes workload_key_name;
  Bytes ak_name;
  // Quoted PCR values (bank = expected bank), set only when the pcrDigest matched.
  std::map<uint32_t, Bytes> quoted_pcrs;
  // The quote's clock information (valid when the quote parsed).
  TPMS_CLOCK_INFO quote_clock{};
  // Set only when affirming: the clock state to store for the next appraisal of this AK, and
  // whether the TPM was reset (rebooted) or restarted (resumed) since `last_clock`.
  std::optional<ClockState> new_clock;
  bool rebooted = false;
  bool resumed = false;
  // Facts for the EAR trust vector.
  bool ak_enrolled = false;         // enrolled_ak_name or trusted_ak_spki matched
  bool ek_certified = false;        // ak_enrolled and options.enrolled_ek_certified
  bool references_checked = false;  // policy reference values compared (and matched)
  bool uefi_log_checked = false;    // UEFI log replayed to the quote
  bool ima_log_checked = false;     // IMA log (prefix) replayed to the quote
  // The policy's allow list of event digests was applied to the replayed logs (replay alone
  // proves integrity, not approval: only this makes "approved executables" claimable).
  bool events_allow_listed = false;
  size_t ima_violations = 0;  // IMA violation entries in the appraised prefix
  // TPM2_CertifyCreation verified: the key was created by TPM2_Create under the parent named
  // in its creation data, a primary key of the storage hierarchy (set only when affirming).
  bool creation_certified = false;
  Bytes creation_parent_name;  // that parent's Name (when creation_certified)
  // The creation data selected PCRs and their digest matched the policy's reference values.
  // False when no PCRs were selected at creation or the policy has no values for them.
  bool creation_pcrs_checked = false;
  // Digests of the replayed, quote-verified events (TCG: bank digest; IMA: file digest), for
  // policy capture.
  std::set<Bytes> event_digests;

  bool affirming() const { return verdict == Verdict::kAffirming; }
  bool Has(Reason reason) const;
  // "affirming", or "contraindicated: <reason>; <reason>".
  std::string Summary() const;
};

// The AK policy of rats-tpm §3.5 A1-A4: restricted|sign|fixedTPM|fixedParent|
// sensitiveDataOrigin, no decrypt, a signing scheme with SHA-256/384/512, nameAlg SHA-256+.
// Returns "" when `pub` passes, else "<code>: <what>" with code ak_attributes or ak_scheme.
std::string AkPolicyProblems(const TPMT_PUBLIC& pub);

// Appraises a CMW JSON record carrying tpm2-evidence v1.
AppraisalResult AppraiseCmw(std::string_view cmw_json, const AppraisalOptions& options);
// Appraises a tpm2-evidence v1 JSON document (no CMW wrapper).
AppraisalResult AppraiseEvidenceJson(std::string_view json, const AppraisalOptions& options);
// Appraises an already-decoded document.
AppraisalResult AppraiseEvidence(const Tpm2Evidence& evidence, const AppraisalOptions& options);

}  // namespace wimse::attest

#endif  // WIMSE_ATTEST_VERIFIER_H_
