#include "attest/ear.h"

#include <algorithm>
#include <map>

#include "jose/base64url.h"
#include "jose/jws.h"

namespace wimse::attest {

namespace {

using jose::Json;

// The trust-vector claim and contraindicated value each failure sets.
std::pair<const char*, int> VectorEntryFor(Reason r) {
  switch (r) {
    case Reason::kQuoteNotTpmGenerated:
    case Reason::kQuoteWrongType:
    case Reason::kQuoteSignatureInvalid:
    case Reason::kQuoteMalformed:
    case Reason::kCmwMalformed:
    case Reason::kEvidenceMalformed:
      return {"instance-identity", 99};
    case Reason::kAkPublicMalformed:
    case Reason::kAkNotTrusted:
    case Reason::kAkNotEnrolled:
      return {"instance-identity", 97};
    case Reason::kAkAttributes:
    case Reason::kAkScheme:
    case Reason::kNoncePolicy:
    case Reason::kQuoteNonceMismatch:
    case Reason::kCertifyNonceMismatch:
    case Reason::kEvidenceTooOld:
    case Reason::kClockNotSafe:
    case Reason::kClockRollback:
    case Reason::kBootMismatch:
      return {"instance-identity", 96};
    case Reason::kPcrDigestMismatch:
    case Reason::kEventLogReplayMismatch:
      return {"executables", 99};
    case Reason::kQuoteMissing:
    case Reason::kPcrSelectionMismatch:
    case Reason::kPcrValuesMismatch:
    case Reason::kBankNotAllowed:
    case Reason::kPcrReferenceMismatch:
    case Reason::kEventLogMalformed:
    case Reason::kEventDenied:
    case Reason::kEventNotAllowed:
      return {"executables", 96};
    case Reason::kCertifySignatureInvalid:
    case Reason::kCertifyMalformed:
    case Reason::kCertifyNotTpmGenerated:
    case Reason::kCertifyWrongType:
    case Reason::kCertifyNameMismatch:
    case Reason::kCreationMalformed:
    case Reason::kCreationNotTpmGenerated:
    case Reason::kCreationWrongType:
    case Reason::kCreationSignatureInvalid:
    case Reason::kCreationNameMismatch:
    case Reason::kCreationHashMismatch:
      return {"storage-opaque", 99};
    case Reason::kCreationMissing:
    case Reason::kCreationNonceMismatch:
    case Reason::kCreationParentMismatch:
    case Reason::kCreationPcrMismatch:
      return {"storage-opaque", 96};
    case Reason::kKeyMissing:
    case Reason::kKeyPublicMalformed:
    case Reason::kKeyAttributes:
    case Reason::kCertifyQualifiedNameMissing:
    case Reason::kCertifySignerMismatch:
      return {"storage-opaque", 96};
  }
  return {"instance-identity", 96};
}

int TierRank(int v) {
  if (v >= 96 || v <= -97) {
    return 3;
  }
  if (v >= 32 || v <= -33) {
    return 2;
  }
  if (v >= 2 || v <= -2) {
    return 1;
  }
  return 0;
}

}  // namespace

std::string TierOf(int value) {
  switch (TierRank(value)) {
    case 3:
      return "contraindicated";
    case 2:
      return "warning";
    case 1:
      return "affirming";
    default:
      return "none";
  }
}

Json BuildEarClaims(const AppraisalResult& result, ByteView nonce, const EarOptions& options) {
  std::map<std::string, int> vector;
  if (result.affirming()) {
    vector["instance-identity"] = result.ak_enrolled ? 2 : 0;
    vector["hardware"] = result.ek_certified ? 2 : 0;
    // "Approved" needs an approval, not only a replay: the boot chain by reference values or
    // an allow-listed UEFI log, the run time by an allow-listed IMA log without violations.
    // A log that merely replays makes no executables claim (0).
    bool boot_approved =
        result.references_checked || (result.uefi_log_checked && result.events_allow_listed);
    bool runtime_approved =
        result.ima_log_checked && result.events_allow_listed && result.ima_violations == 0;
    vector["executables"] = boot_approved && runtime_approved ? 2 : boot_approved ? 3 : 0;
    vector["storage-opaque"] = 2;
  } else {
    for (const Failure& f : result.failures) {
      auto [claim, value] = VectorEntryFor(f.reason);
      int& slot = vector[claim];
      slot = std::max(slot, value);
    }
  }
  int worst = 0;
  for (const auto& [claim, value] : vector) {
    worst = std::max(worst, TierRank(value));
  }
  // Anything failed => contraindicated, whatever the vector says.
  std::string status = result.affirming() ? (worst == 0 ? "none"
                                                        : TierOf(worst == 3   ? 96
                                                                 : worst == 2 ? 32
                                                                              : 2))
                                          : "contraindicated";
  Json tv = Json::object();
  for (const auto& [claim, value] : vector) {
    tv[claim] = value;
  }
  Json reasons = Json::array();
  for (const Failure& f : result.failures) {
    reasons.push_back(std::string(ReasonCode(f.reason)));
  }
  std::string nonce_b64 = jose::Base64UrlEncode(nonce);
  Json tpm{{"ear_status", status},
           {"ear_trustworthiness_vector", tv},
           {"ear_appraisal_policy_ids", Json::array({options.policy_id})},
           {"eat_nonce", nonce_b64},
           {"wimse_reasons", reasons}};
  if (result.affirming()) {
    tpm["ear_veraison_key_attestation"] =
        Json{{"akpub", jose::Base64UrlEncode(result.workload_key_spki)}};
    // Whether TPM2_CertifyCreation vouched for the key's creation (issue 5, docs/attestation.md).
    tpm["wimse_creation_certified"] = result.creation_certified;
  }
  return Json{{"eat_profile", kEarProfile},
              {"iat", options.iat},
              {"exp", options.iat + options.lifetime_seconds},
              {"ear_verifier_id", Json{{"developer", options.developer}, {"build", options.build}}},
              {"ear_status", status},
              {"eat_nonce", nonce_b64},
              {"submods", Json{{"tpm", tpm}}}};
}

Result<std::string> SignEar(Signer& signer, const Json& claims) {
  return jose::SignCompactJws(signer, Json{{"typ", "JWT"}}, jose::SerializeJson(claims));
}

}  // namespace wimse::attest
