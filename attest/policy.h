// The appraisal policy (JSON, documented in docs/attestation.md "Policy"):
//
//   {
//     "profile": "tag:wimse-tpm,2026:attest/policy/v1",
//     "id": "urn:example:policy:web-hosts:3",        // goes into ear_appraisal_policy_ids
//     "pcr_bank": "sha256",                           // sha256 | sha384 | sha512 | sha1
//     "allow_sha1": false,                            // sha1 bank only with this set
//     "pcrs": [0, 1, 2, 3, 4, 5, 6, 7],               // the exact selection quoted
//     "reference_values": { "0": "<hex>", ... },      // optional; PCR -> expected value
//     "events": { "allowed": ["<hex digest>"],        // optional; when non-empty every
//                 "denied":  ["<hex digest>"] },      //   replayed event must be listed
//     "ek_roots": ["-----BEGIN CERTIFICATE-----..."], // enrolment trust anchors (PEM)
//     "max_evidence_age_seconds": 300                 // nonce issue -> appraisal
//   }
//
// Unknown members are ignored; wrong types, duplicate members, PCR indices outside 0..23,
// digests of the wrong size for the bank, and a sha1 bank without allow_sha1 are errors.
// Pure, thread-compatible.
#ifndef WIMSE_ATTEST_POLICY_H_
#define WIMSE_ATTEST_POLICY_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "attest/verifier.h"
#include "util/bytes.h"
#include "util/result.h"

namespace wimse::attest {

inline constexpr char kPolicyProfile[] = "tag:wimse-tpm,2026:attest/policy/v1";

// Parses a policy document. Errors are Layer::kParse naming the member.
Result<AttestationPolicy> DecodePolicy(std::string_view json);
// Serialises a policy (pretty-printed, stable member order).
std::string EncodePolicy(const AttestationPolicy& policy);

// `wimse-tpm policy capture`: a policy whose selection is the quote's and whose reference
// values are the quoted PCRs and whose allowed events are every digest of the replayed logs, from
// evidence that appraised affirming (`result.quoted_pcrs`, `result.event_digests`).
AttestationPolicy CapturePolicy(const AppraisalResult& result, const PcrBankSelection& selection,
                                std::string id);

}  // namespace wimse::attest

#endif  // WIMSE_ATTEST_POLICY_H_
