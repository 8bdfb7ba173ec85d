// The credential service (WIMSE architecture 3.3.1 bootstrapping): AK enrolment with
// MakeCredential/ActivateCredential, single-use nonces, appraisal of TPM evidence, and issuance
// of an EAR, a WIT and an X.509 workload certificate for the attested key.
//
// Transport-free: every endpoint is a method from a request body to a ServiceResponse, so the
// HTTPS server (https_server.h) is a thin adapter and tests call the methods directly. Every
// decision leaves an audit record (who, what, decision, reason, token hashes).
//
// Wire format (JSON bodies; errors are {"error": "<code>", "reason": "<text>"}):
//   POST /v1/enrol/start   EnrollmentRequest JSON (attest/enrollment.h)
//                          -> {"enrolment_id", "challenge": EnrollmentChallenge JSON}
//   POST /v1/enrol/finish  {"enrolment_id", "credential": base64url}
//                          -> {"identity", "ak_name": hex, "ek_certified": bool}
//   POST /v1/challenge     {"identity"} -> {"nonce": hex, "expires_at"}
//   POST /v1/attest        {"identity", "label", "nonce": hex, "evidence": CMW JSON text,
//                           "csr": PEM}
//                          -> {"identifier", "ear", "wit", "certificate", "bundle",
//                              "expires_at", "wit_expires_at", "serial"}
//   GET  /v1/bundle        the trust domain CA certificate(s), PEM
//   GET  /v1/jwks          {"keys": [WIT issuer key]}
//   GET  /v1/health        {"status": "ok", "enrolments": N, "issued": N}
#ifndef WIMSE_ATTEST_SERVICE_CREDENTIAL_SERVICE_H_
#define WIMSE_ATTEST_SERVICE_CREDENTIAL_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "attest/service/state_store.h"
#include "attest/verifier.h"
#include "audit/audit_log.h"
#include "crypto/ossl.h"
#include "crypto/signer.h"
#include "jose/json.h"

namespace wimse::service {

// Maps an enrolled host identity (and a label the agent asks for) to a workload identifier.
struct WorkloadRule {
  std::string identity;  // host identity; "*" matches any, "prefix*" a prefix
  std::string label;     // requested label; same matching ("" matches only an empty label)
  std::string id;        // identifier template: {identity} and {label} are substituted
};

// The service policy (JSON, see docs/agent-and-service.md):
//   {"trust_domain": "example.org",
//    "issuer": "https://credentials.example.org",            (WIT iss; optional)
//    "enrol": ["host-*"],                                   (identities that may enrol)
//    "workloads": [{"identity": "host-a", "label": "a",
//                   "id": "spiffe://example.org/workload/a"}, ...],
//    "certificate_lifetime_seconds": 300, "wit_lifetime_seconds": 300,
//    "nonce_ttl_seconds": 60, "allow_uncertified_ek": false}
struct ServicePolicy {
  std::string trust_domain;
  std::string issuer;
  std::vector<std::string> enrol;
  std::vector<WorkloadRule> workloads;
  int64_t certificate_lifetime_seconds = 300;
  int64_t wit_lifetime_seconds = 300;
  int64_t nonce_ttl_seconds = 60;
  int64_t enrolment_ttl_seconds = 300;
  // Trust on first use: an EK without a certificate chaining to a configured root is accepted
  // (and the audit record says "tofu"). For test rigs only.
  bool allow_uncertified_ek = false;
};

// Parses the policy JSON. Errors are Layer::kParse naming the member.
Result<ServicePolicy> DecodeServicePolicy(std::string_view json);

// "*" / "prefix*" / exact matching used by the policy.
bool PatternMatches(std::string_view pattern, std::string_view value);

// The identifier for (identity, label), or a kPolicy error "identifier_not_allowed".
Result<std::string> MapIdentifier(const ServicePolicy& policy, const std::string& identity,
                                  const std::string& label);

// What the service needs besides its policy. Keys are borrowed and must outlive the service.
struct ServiceKeys {
  EVP_PKEY* ca_key = nullptr;    // trust domain CA private key (any provider: PEM or TPM)
  X509* ca_cert = nullptr;       // its certificate (the trust bundle)
  Signer* wit_signer = nullptr;  // WIT issuer key
  std::string wit_kid;           // its kid in the JWKS
  Signer* ear_signer = nullptr;  // EAR signing key (may equal wit_signer)
};

struct ServiceOptions {
  ServicePolicy policy;
  std::vector<Bytes> ek_roots;          // DER
  std::vector<Bytes> ek_intermediates;  // DER
  std::optional<attest::AttestationPolicy> attestation_policy;
};

// An HTTP-level answer.
struct ServiceResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// The service. Thread-safe: state lives in the StateStore, the audit log locks itself, the
// signers must be thread-safe (software signers are).
class CredentialService {
 public:
  // `store` and `audit` are borrowed and must outlive the service.
  CredentialService(ServiceOptions options, ServiceKeys keys, StateStore* store,
                    audit::AuditLog* audit);

  ServiceResponse EnrolStart(std::string_view body, const std::string& peer);
  ServiceResponse EnrolFinish(std::string_view body, const std::string& peer);
  ServiceResponse Challenge(std::string_view body, const std::string& peer);
  ServiceResponse Attest(std::string_view body, const std::string& peer);
  ServiceResponse Bundle() const;
  ServiceResponse Jwks() const;
  ServiceResponse Health();

  // The JWKS document (also what Jwks() returns).
  std::string JwksJson() const;
  const ServicePolicy& policy() const { return options_.policy; }

 private:
  ServiceResponse Deny(int status, const std::string& code, const std::string& reason,
                       audit::AuditEvent event);
  int64_t Now() const;
  // Purges expired nonces and pending enrolments at most once per kPurgeIntervalSeconds
  // (called on the paths that add them, so the tables stay bounded by rate x TTL).
  void MaybePurge(int64_t now);
  static constexpr int64_t kPurgeIntervalSeconds = 30;
  std::atomic<int64_t> last_purge_{0};

  ServiceOptions options_;
  ServiceKeys keys_;
  StateStore* store_;
  audit::AuditLog* audit_;
  std::string bundle_pem_;
};

}  // namespace wimse::service

#endif  // WIMSE_ATTEST_SERVICE_CREDENTIAL_SERVICE_H_
