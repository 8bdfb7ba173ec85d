// AK enrolment (rats-tpm §3.5): the verifier side, pure (OpenSSL and tss2-mu only, no TPM).
//
//   agent                                   verifier
//   EnrollmentRequest{identity, EK public,
//     EK cert (+chain), AK public}  ----->  BeginEnrollment: EK chain to a configured root,
//                                           EK cert key == EK public, EK shape, AK policy
//                                           (A1-A4), takeover check; MakeCredential(EK,
//                                           Name(AK), random 32 bytes)
//                                <-----     EnrollmentChallenge{blob, secret}
//   ActivateCredential (TPM)     ----->     FinishEnrollment: SHA-256(answer) == stored hash
//                                           (constant time), takeover check again
//                                           => EnrollmentRecord (pins identity, Name(AK), EK)
//
// The pending state keeps only SHA-256 of the credential, so the state file is not a secret.
// An identity, once enrolled, stays bound to its EK and AK: enrolling it again from another
// TPM (different EK) or with another AK is refused (CVE-2022-1053, CVE-2023-38201 lessons).
// Thread-safe: no shared state.
#ifndef WIMSE_ATTEST_ENROLLMENT_H_
#define WIMSE_ATTEST_ENROLLMENT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse::attest {

// Media-type-like tags of the JSON documents below.
inline constexpr char kEnrollmentRequestProfile[] =
    "tag:wimse-tpm,2026:attest/ak-enroll-request/v1";
inline constexpr char kEnrollmentChallengeProfile[] = "tag:wimse-tpm,2026:attest/ak-challenge/v1";

// What the agent sends. All TPM objects are the bytes the TPM produced.
struct EnrollmentRequest {
  std::string identity;         // the host/workload identity to bind (e.g. a SPIFFE ID)
  Bytes ek_public;              // TPM2B_PUBLIC of the EK
  Bytes ek_cert;                // DER EK certificate from NV (may be empty: see policy)
  std::vector<Bytes> ek_chain;  // DER intermediates (untrusted)
  Bytes ak_public;              // TPM2B_PUBLIC of the AK
};

// Verifier configuration for enrolment.
struct EnrollmentPolicy {
  std::vector<Bytes> ek_roots;          // DER trust anchors (TPM vendor roots)
  std::vector<Bytes> ek_intermediates;  // DER intermediates known to the verifier (untrusted)
  // Hex SHA-256 of EK TPM2B_PUBLIC accepted without a certificate (fTPMs with no NV cert).
  std::vector<std::string> allowed_ek_sha256;
  // Verification time for certificate validity (seconds since the epoch); 0 = do not check
  // validity periods (EK certs often carry odd ones, rats-tpm §5.4 step 3).
  int64_t now_unix = 0;
};

// What the verifier sends back.
struct EnrollmentChallenge {
  Bytes credential_blob;  // TPM2B_ID_OBJECT
  Bytes secret;           // TPM2B_ENCRYPTED_SECRET
};

// The verifier's state between the two steps. Not secret (hash only).
struct PendingEnrollment {
  EnrollmentRequest request;
  Bytes credential_sha256;
};

// A pinned enrolment: one identity, one EK, one AK.
struct EnrollmentRecord {
  std::string identity;
  Bytes ak_public;         // TPM2B_PUBLIC as received
  Bytes ak_name;           // Name(AK), nameAlg prefix included
  Bytes ek_public_sha256;  // SHA-256 of the EK TPM2B_PUBLIC
  Bytes ek_cert_sha256;    // SHA-256 of the DER EK certificate (empty when certless)
  std::string ek_subject;  // the EK certificate's issuer and SAN summary (informative)
};

// Failures carry a stable code as the first word of the message, e.g. "ek_chain_invalid: ...":
// ek_public_malformed, ek_not_tcg_template, ek_cert_malformed, ek_chain_invalid,
// ek_cert_key_mismatch, ek_not_allowed, ak_public_malformed, ak_attributes, ak_scheme,
// identity_enrolled_to_other_tpm, ak_changed, activation_failed, request_malformed.
//
// Step 1. `existing` is the record already enrolled for request.identity, if any.
Result<std::pair<EnrollmentChallenge, PendingEnrollment>> BeginEnrollment(
    const EnrollmentRequest& request, const EnrollmentPolicy& policy,
    const EnrollmentRecord* existing);

// Step 2. `answer` is the credential the agent's TPM released.
Result<EnrollmentRecord> FinishEnrollment(const PendingEnrollment& pending, ByteView answer,
                                          const EnrollmentRecord* existing);

// Refuses a takeover: `existing` enrolled the same identity with another EK or AK.
Status CheckTakeover(const EnrollmentRecord* existing, std::string_view identity,
                     ByteView ek_public_sha256, ByteView ak_name);

// JSON encodings (compact; strict parsing: duplicates, bad base64url, missing members fail).
std::string EncodeEnrollmentRequest(const EnrollmentRequest& r);
Result<EnrollmentRequest> DecodeEnrollmentRequest(std::string_view json);
std::string EncodeEnrollmentChallenge(const EnrollmentChallenge& c);
Result<EnrollmentChallenge> DecodeEnrollmentChallenge(std::string_view json);
std::string EncodePendingEnrollment(const PendingEnrollment& p);
Result<PendingEnrollment> DecodePendingEnrollment(std::string_view json);

// A registry of enrolments keyed by identity, stored as one JSON object
// {"<identity>": {record}, ...}.
using EnrollmentRegistry = std::map<std::string, EnrollmentRecord>;
std::string EncodeRegistry(const EnrollmentRegistry& registry);
Result<EnrollmentRegistry> DecodeRegistry(std::string_view json);

}  // namespace wimse::attest

#endif  // WIMSE_ATTEST_ENROLLMENT_H_
