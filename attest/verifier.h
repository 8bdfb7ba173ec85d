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
  size_t min_nonce_size = 16;
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

  bool affirming() const { return verdict == Verdict::kAffirming; }
  bool Has(Reason reason) const;
  // "affirming", or "contraindicated: <reason>; <reason>".
  std::string Summary() const;
};

// Appraises a CMW JSON record carrying tpm2-evidence v1.
AppraisalResult AppraiseCmw(std::string_view cmw_json, const AppraisalOptions& options);
// Appraises a tpm2-evidence v1 JSON document (no CMW wrapper).
AppraisalResult AppraiseEvidenceJson(std::string_view json, const AppraisalOptions& options);
// Appraises an already-decoded document.
AppraisalResult AppraiseEvidence(const Tpm2Evidence& evidence, const AppraisalOptions& options);

}  // namespace wimse::attest

#endif  // WIMSE_ATTEST_VERIFIER_H_
