// Attestation results as EAR (draft-ietf-rats-ear-03) JWTs, signed ES256 by the verifier key.
//
// Claims: eat_profile "tag:ietf.org,2026:rats/ear#03", iat, exp, ear_verifier_id
// {developer, build}, ear_status, eat_nonce, submods {"tpm": {ear_status,
// ear_trustworthiness_vector, ear_appraisal_policy_ids, eat_nonce,
// ear_veraison_key_attestation {akpub: base64url DER SPKI of the certified workload key} (only
// when affirming), wimse_reasons [reason codes]}}. One submod labelled "tpm" (the TPM
// evidence of one host).
//
// Trust vector (AR4SI names; rats-tpm §2.6): instance-identity 2 when the AK is the enrolled
// one; hardware 2 when that enrolment validated an EK certificate chain; executables 3 when
// reference PCR values or a replayed UEFI log passed, 2 when an IMA log passed as well;
// storage-opaque 2 when the workload key passed the certify checks. Every failure maps to a
// contraindicated value (99 = cryptographic validation failed) in the claim it concerns, so
// ear_status is "contraindicated" whenever anything failed, and wimse_reasons lists them all.
#ifndef WIMSE_ATTEST_EAR_H_
#define WIMSE_ATTEST_EAR_H_

#include <string>

#include "attest/verifier.h"
#include "crypto/signer.h"
#include "jose/json.h"
#include "util/result.h"

namespace wimse::attest {

inline constexpr char kEarProfile[] = "tag:ietf.org,2026:rats/ear#03";

struct EarOptions {
  std::string developer = "https://github.com/wimse-tpm";
  std::string build = std::string("wimse-tpm ") + WIMSE_TPM_VERSION;
  std::string policy_id = "urn:wimse-tpm:policy:default";
  int64_t iat = 0;  // seconds since the epoch
  int64_t lifetime_seconds = 300;
};

// The EAR claims set for `result` of appraising evidence bound to `nonce`. Pure.
jose::Json BuildEarClaims(const AppraisalResult& result, ByteView nonce, const EarOptions& options);

// The AR4SI tier name of a trust-vector value: "none", "affirming", "warning",
// "contraindicated".
std::string TierOf(int value);

// Signs the claims as a compact JWS (header {"typ": "JWT", "alg": from the key}); one
// SignDigest call on `signer` (a TPM2_Sign for a TPM key).
Result<std::string> SignEar(Signer& signer, const jose::Json& claims);

}  // namespace wimse::attest

#endif  // WIMSE_ATTEST_EAR_H_
