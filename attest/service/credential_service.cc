#include "attest/service/credential_service.h"

#include <openssl/bn.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <ctime>

#include "attest/ear.h"
#include "attest/enrollment.h"
#include "attest/service/csr.h"
#include "crypto/public_key.h"
#include "jose/base64url.h"
#include "jose/jwk.h"
#include "wimse/identifier.h"
#include "wimse/wit.h"
#include "x509/certificate.h"

namespace wimse::service {

namespace {

constexpr jose::JsonLimits kBodyLimits{256 * 1024, 8};

ServiceResponse Json(int status, const jose::Json& body) {
  return ServiceResponse{status, "application/json", jose::SerializeJson(body)};
}

Result<std::string> StringMember(const jose::Json& obj, const char* name, bool required = true) {
  auto it = obj.find(name);
  if (it == obj.end()) {
    if (!required) return std::string();
    return Error(Layer::kParse, std::string("missing member \"") + name + "\"");
  }
  if (!it->is_string())
    return Error(Layer::kParse, std::string("\"") + name + "\" is not a string");
  return it->get<std::string>();
}

Result<Bytes> RandomBytes(size_t n) {
  Bytes b(n);
  if (RAND_bytes(b.data(), static_cast<int>(n)) != 1) return OpenSslError("RAND_bytes");
  return b;
}

std::string SerialHex(X509* cert) {
  BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) return "";
  char* hex = BN_bn2hex(bn.get());
  std::string out = hex ? hex : "";
  OPENSSL_free(hex);
  return out;
}

Result<int64_t> IntMember(const jose::Json& obj, const char* name, int64_t def) {
  auto it = obj.find(name);
  if (it == obj.end()) return def;
  if (!it->is_number_integer() || it->get<int64_t>() <= 0) {
    return Error(Layer::kParse, std::string("policy: \"") + name + "\" must be a positive integer");
  }
  return it->get<int64_t>();
}

}  // namespace

bool PatternMatches(std::string_view pattern, std::string_view value) {
  if (pattern == "*") return true;
  if (!pattern.empty() && pattern.back() == '*') {
    std::string_view prefix = pattern.substr(0, pattern.size() - 1);
    return value.substr(0, prefix.size()) == prefix;
  }
  return pattern == value;
}

Result<ServicePolicy> DecodeServicePolicy(std::string_view json) {
  WIMSE_ASSIGN_OR_RETURN(jose::Json j, jose::ParseJsonObject(json, {1 << 20, 8}));
  ServicePolicy p;
  WIMSE_ASSIGN_OR_RETURN(p.trust_domain, StringMember(j, "trust_domain"));
  WIMSE_ASSIGN_OR_RETURN(p.issuer, StringMember(j, "issuer", false));
  if (j.contains("enrol")) {
    if (!j["enrol"].is_array()) return Error(Layer::kParse, "policy: \"enrol\" is not an array");
    for (const auto& e : j["enrol"]) {
      if (!e.is_string()) return Error(Layer::kParse, "policy: \"enrol\" holds a non-string");
      p.enrol.push_back(e.get<std::string>());
    }
  }
  if (!j.contains("workloads") || !j["workloads"].is_array()) {
    return Error(Layer::kParse, "policy: \"workloads\" must be an array");
  }
  for (const auto& w : j["workloads"]) {
    if (!w.is_object()) return Error(Layer::kParse, "policy: a workload rule is not an object");
    WorkloadRule r;
    WIMSE_ASSIGN_OR_RETURN(r.identity, StringMember(w, "identity"));
    WIMSE_ASSIGN_OR_RETURN(r.label, StringMember(w, "label", false));
    WIMSE_ASSIGN_OR_RETURN(r.id, StringMember(w, "id"));
    p.workloads.push_back(std::move(r));
  }
  WIMSE_ASSIGN_OR_RETURN(p.certificate_lifetime_seconds,
                         IntMember(j, "certificate_lifetime_seconds", 300));
  WIMSE_ASSIGN_OR_RETURN(p.wit_lifetime_seconds, IntMember(j, "wit_lifetime_seconds", 300));
  WIMSE_ASSIGN_OR_RETURN(p.nonce_ttl_seconds, IntMember(j, "nonce_ttl_seconds", 60));
  WIMSE_ASSIGN_OR_RETURN(p.enrolment_ttl_seconds, IntMember(j, "enrolment_ttl_seconds", 300));
  if (p.wit_lifetime_seconds > 86400 || p.certificate_lifetime_seconds > 86400) {
    return Error(Layer::kParse, "policy: lifetimes are limited to 86400 seconds");
  }
  if (j.contains("allow_uncertified_ek")) {
    if (!j["allow_uncertified_ek"].is_boolean()) {
      return Error(Layer::kParse, "policy: \"allow_uncertified_ek\" is not a boolean");
    }
    p.allow_uncertified_ek = j["allow_uncertified_ek"].get<bool>();
  }
  return p;
}

Result<std::string> MapIdentifier(const ServicePolicy& policy, const std::string& identity,
                                  const std::string& label) {
  for (const WorkloadRule& r : policy.workloads) {
    if (!PatternMatches(r.identity, identity)) continue;
    if (!(r.label.empty() ? label.empty() : PatternMatches(r.label, label))) continue;
    std::string id = r.id;
    for (const auto& [var, val] :
         {std::pair<std::string, std::string>{"{identity}", identity}, {"{label}", label}}) {
      for (size_t p = id.find(var); p != std::string::npos; p = id.find(var, p + val.size())) {
        id.replace(p, var.size(), val);
      }
    }
    auto parsed = ParseWorkloadIdentifier(id);
    if (!parsed.ok()) {
      return Error(Layer::kPolicy, "identifier_invalid: " + parsed.error().message());
    }
    if (parsed->trust_domain != policy.trust_domain) {
      return Error(Layer::kPolicy,
                   "identifier_invalid: " + id + " is outside trust domain " + policy.trust_domain);
    }
    return parsed->uri;
  }
  return Error(Layer::kPolicy, "identifier_not_allowed: no workload rule for identity \"" +
                                   identity + "\" and label \"" + label + "\"");
}

CredentialService::CredentialService(ServiceOptions options, ServiceKeys keys, StateStore* store,
                                     audit::AuditLog* audit)
    : options_(std::move(options)), keys_(std::move(keys)), store_(store), audit_(audit) {
  auto pem = x509::CertificateToPem(keys_.ca_cert);
  if (pem.ok()) bundle_pem_ = *pem;
}

int64_t CredentialService::Now() const { return static_cast<int64_t>(std::time(nullptr)); }

void CredentialService::MaybePurge(int64_t now) {
  int64_t last = last_purge_.load();
  if (now - last < kPurgeIntervalSeconds || !last_purge_.compare_exchange_strong(last, now)) {
    return;
  }
  (void)store_->PurgeExpired(now);
}

ServiceResponse CredentialService::Deny(int status, const std::string& code,
                                        const std::string& reason, audit::AuditEvent event) {
  event.decision = "deny";
  event.reason = code + ": " + reason;
  (void)audit_->Append(event);
  return Json(status, {{"error", code}, {"reason", reason}});
}

ServiceResponse CredentialService::EnrolStart(std::string_view body, const std::string& peer) {
  audit::AuditEvent ev;
  ev.event = "enrolment-start";
  ev.source = peer;
  ev.method = "tpm-ek";
  auto req = attest::DecodeEnrollmentRequest(body);
  if (!req.ok()) return Deny(400, "request_malformed", req.error().message(), ev);
  ev.source = req->identity + " (" + peer + ")";
  ev.target = req->identity;
  bool allowed = false;
  for (const auto& p : options_.policy.enrol) allowed = allowed || PatternMatches(p, req->identity);
  if (!allowed) {
    return Deny(403, "enrolment_not_allowed",
                "identity \"" + req->identity + "\" may not enrol by policy", ev);
  }
  attest::EnrollmentPolicy ep;
  ep.ek_roots = options_.ek_roots;
  ep.ek_intermediates = options_.ek_intermediates;
  bool tofu = false;
  if (options_.policy.allow_uncertified_ek && (req->ek_cert.empty() || ep.ek_roots.empty())) {
    auto h = Digest(HashAlg::kSha256, req->ek_public);
    if (h.ok()) ep.allowed_ek_sha256.push_back(HexEncode(*h));
    req->ek_cert.clear();  // enrol by the EK public key alone
    req->ek_chain.clear();
    tofu = true;
  }
  auto existing = store_->GetEnrollment(req->identity);
  if (!existing.ok()) return Deny(500, "state_error", existing.error().message(), ev);
  auto begun = attest::BeginEnrollment(*req, ep, existing->has_value() ? &**existing : nullptr);
  if (!begun.ok()) return Deny(403, "enrolment_refused", begun.error().message(), ev);
  auto id = RandomBytes(16);
  if (!id.ok()) return Deny(500, "internal", id.error().message(), ev);
  std::string enrol_id = HexEncode(*id);
  MaybePurge(Now());
  auto s = store_->PutPendingEnrollment(enrol_id, attest::EncodePendingEnrollment(begun->second),
                                        Now() + options_.policy.enrolment_ttl_seconds);
  if (!s.ok()) return Deny(500, "state_error", s.error().message(), ev);
  ev.decision = "allow";
  ev.reason = tofu ? "challenge issued (tofu: EK accepted without a certificate chain)"
                   : "challenge issued (EK certificate chain verified)";
  ev.claims = {{"enrolment_id", enrol_id}};
  (void)audit_->Append(ev);
  auto challenge =
      jose::ParseJsonObject(attest::EncodeEnrollmentChallenge(begun->first), kBodyLimits);
  return Json(200, {{"enrolment_id", enrol_id}, {"challenge", *challenge}});
}

ServiceResponse CredentialService::EnrolFinish(std::string_view body, const std::string& peer) {
  audit::AuditEvent ev;
  ev.event = "enrolment-finish";
  ev.source = peer;
  ev.method = "tpm-activate-credential";
  auto j = jose::ParseJsonObject(body, kBodyLimits);
  if (!j.ok()) return Deny(400, "request_malformed", j.error().message(), ev);
  auto id = StringMember(*j, "enrolment_id");
  auto cred = StringMember(*j, "credential");
  if (!id.ok() || !cred.ok()) {
    return Deny(400, "request_malformed", "enrolment_id and credential are required", ev);
  }
  auto answer = jose::Base64UrlDecode(*cred);
  if (!answer.ok()) return Deny(400, "request_malformed", "credential is not base64url", ev);
  auto pending_json = store_->TakePendingEnrollment(*id, Now());
  if (!pending_json.ok()) return Deny(500, "state_error", pending_json.error().message(), ev);
  if (!pending_json->has_value()) {
    return Deny(403, "enrolment_unknown",
                "no pending enrolment " + *id + " (unknown, used or expired)", ev);
  }
  auto pending = attest::DecodePendingEnrollment(**pending_json);
  if (!pending.ok()) return Deny(500, "state_error", pending.error().message(), ev);
  ev.source = pending->request.identity + " (" + peer + ")";
  ev.target = pending->request.identity;
  auto existing = store_->GetEnrollment(pending->request.identity);
  if (!existing.ok()) return Deny(500, "state_error", existing.error().message(), ev);
  auto record =
      attest::FinishEnrollment(*pending, *answer, existing->has_value() ? &**existing : nullptr);
  if (!record.ok()) return Deny(403, "activation_failed", record.error().message(), ev);
  auto s = store_->PutEnrollment(*record, Now());
  if (!s.ok()) return Deny(500, "state_error", s.error().message(), ev);
  ev.decision = "allow";
  ev.reason = "AK bound to the EK by credential activation";
  ev.claims = {{"ak_name", HexEncode(record->ak_name)},
               {"ek_sha256", HexEncode(record->ek_public_sha256)},
               {"ek_certified", !record->ek_cert_sha256.empty()}};
  (void)audit_->Append(ev);
  return Json(200, {{"identity", record->identity},
                    {"ak_name", HexEncode(record->ak_name)},
                    {"ek_certified", !record->ek_cert_sha256.empty()}});
}

ServiceResponse CredentialService::Challenge(std::string_view body, const std::string& peer) {
  audit::AuditEvent ev;
  ev.event = "challenge";
  ev.source = peer;
  auto j = jose::ParseJsonObject(body, kBodyLimits);
  if (!j.ok()) return Deny(400, "request_malformed", j.error().message(), ev);
  auto identity = StringMember(*j, "identity");
  if (!identity.ok()) return Deny(400, "request_malformed", identity.error().message(), ev);
  ev.source = *identity + " (" + peer + ")";
  auto nonce = RandomBytes(32);
  if (!nonce.ok()) return Deny(500, "internal", nonce.error().message(), ev);
  int64_t now = Now();
  MaybePurge(now);
  int64_t expires = now + options_.policy.nonce_ttl_seconds;
  auto s = store_->PutNonce(*nonce, *identity, now, expires);
  if (!s.ok()) return Deny(500, "state_error", s.error().message(), ev);
  // Nonces are not secrets, but one record per nonce would double the log; the attest record
  // names the nonce it consumed.
  return Json(200, {{"nonce", HexEncode(*nonce)}, {"expires_at", expires}});
}

ServiceResponse CredentialService::Attest(std::string_view body, const std::string& peer) {
  audit::AuditEvent ev;
  ev.event = "issuance";
  ev.source = peer;
  ev.method = "tpm-evidence+csr";
  auto j = jose::ParseJsonObject(body, kBodyLimits);
  if (!j.ok()) return Deny(400, "request_malformed", j.error().message(), ev);
  auto identity = StringMember(*j, "identity");
  auto label = StringMember(*j, "label", false);
  auto nonce_hex = StringMember(*j, "nonce");
  auto evidence = StringMember(*j, "evidence");
  auto csr_pem = StringMember(*j, "csr");
  if (!identity.ok() || !label.ok() || !nonce_hex.ok() || !evidence.ok() || !csr_pem.ok()) {
    return Deny(400, "request_malformed", "identity, nonce, evidence and csr are required", ev);
  }
  ev.source = *identity + " (" + peer + ")";
  auto nonce = HexDecode(*nonce_hex);
  if (!nonce.ok()) return Deny(400, "request_malformed", "nonce is not hex", ev);
  ev.claims["nonce"] = *nonce_hex;
  ev.claims["label"] = *label;
  int64_t now = Now();

  // 1. The nonce: issued by us, to this identity, unexpired, and used only now.
  NonceRecord issued;
  auto use = store_->ConsumeNonce(*nonce, *identity, now, &issued);
  if (!use.ok()) return Deny(500, "state_error", use.error().message(), ev);
  if (*use != NonceUse::kOk) {
    return Deny(401, std::string(NonceUseCode(*use)),
                "the nonce was not issued to this identity, or was already used, or expired", ev);
  }

  // 2. The enrolment: the AK this identity bound to its EK.
  auto enrolment = store_->GetEnrollment(*identity);
  if (!enrolment.ok()) return Deny(500, "state_error", enrolment.error().message(), ev);
  if (!enrolment->has_value()) {
    return Deny(403, "not_enrolled", "identity \"" + *identity + "\" has no enrolled AK", ev);
  }
  const attest::EnrollmentRecord& rec = **enrolment;
  if (issued.ak_name != rec.ak_name) {
    // Re-enrolled (another AK) since the nonce was issued: its clock floor is of another AK.
    return Deny(401, "nonce_stale",
                "the identity enrolled another AK after this nonce was issued; ask again", ev);
  }

  // 3. Appraisal.
  attest::AppraisalOptions ao;
  ao.expected_nonce = *nonce;
  ao.now_unix = now;
  ao.enrolled_ak_name = rec.ak_name;
  ao.enrolled_ek_certified = !rec.ek_cert_sha256.empty();
  ao.nonce_issued_unix = issued.issued_at;
  if (options_.attestation_policy) ao.policy = &*options_.attestation_policy;
  // The floor recorded with the nonce, not the clock on file now: agents sharing this AK quote
  // concurrently and may reach us out of TPM-clock order (see NonceRecord).
  ao.last_clock = issued.clock_floor;
  attest::AppraisalResult result = attest::AppraiseCmw(*evidence, ao);
  attest::EarOptions eo;
  eo.iat = now;
  if (options_.attestation_policy) eo.policy_id = options_.attestation_policy->id;
  auto ear = attest::SignEar(*keys_.ear_signer, attest::BuildEarClaims(result, *nonce, eo));
  if (!ear.ok()) return Deny(500, "internal", ear.error().message(), ev);
  ev.token_sha256["ear"] = audit::TokenSha256Hex(*ear);
  ev.claims["ak_name"] = HexEncode(rec.ak_name);
  if (!result.affirming()) {
    std::string code =
        result.Has(attest::Reason::kAkNotEnrolled) ? "ak_not_enrolled" : "evidence_rejected";
    ServiceResponse r = Deny(403, code, result.Summary(), ev);
    // The EAR explains the verdict to the agent.
    auto body_json = jose::ParseJsonObject(r.body, kBodyLimits);
    if (body_json.ok()) {
      (*body_json)["ear"] = *ear;
      r.body = jose::SerializeJson(*body_json);
    }
    return r;
  }
  if (result.new_clock) {
    if (auto raised = store_->RaiseClock(rec.ak_name, *result.new_clock); !raised.ok()) {
      return Deny(500, "state_error", raised.error().message(), ev);
    }
  }

  // 4. The attested key comes from the appraisal result only; the CSR must be for it.
  auto attested = PublicKeyFromDer(result.workload_key_spki);
  if (!attested.ok()) return Deny(500, "internal", attested.error().message(), ev);
  auto csr = ParseAndVerifyCsr(*csr_pem);
  if (!csr.ok()) return Deny(400, "csr_invalid", csr.error().message(), ev);
  if (EVP_PKEY_eq(X509_REQ_get0_pubkey(csr->get()), attested->get()) != 1) {
    return Deny(400, "csr_key_mismatch",
                "the CSR is for a key other than the one the TPM certified", ev);
  }
  auto jwk = jose::PublicKeyToJwk(attested->get(), "");
  std::string thumb;
  if (jwk.ok()) {
    auto t = jose::JwkThumbprint(*jwk);
    if (t.ok()) thumb = *t;
  }
  ev.claims["key_thumbprint"] = thumb;

  // 5. The identifier from the policy.
  auto identifier = MapIdentifier(options_.policy, *identity, *label);
  if (!identifier.ok()) {
    std::string msg = identifier.error().message();
    std::string code = msg.substr(0, msg.find(':'));
    return Deny(403, code, msg.substr(msg.find(':') + 2), ev);
  }
  ev.target = *identifier;

  // 6. Issue: certificate (one URI SAN, short lifetime) and WIT (cnf = the attested key).
  x509::CertificateRequest creq;
  creq.subject_public_key = attested->get();
  creq.common_name = label->empty() ? *identity : *label;
  creq.uri_san = *identifier;
  creq.lifetime = std::chrono::seconds(options_.policy.certificate_lifetime_seconds);
  creq.server_auth = true;  // workloads serve as well as call
  creq.dns_san = "localhost";
  auto cert = x509::IssueCertificate(creq, keys_.ca_key, keys_.ca_cert);
  if (!cert.ok()) return Deny(500, "internal", cert.error().message(), ev);
  auto cert_pem = x509::CertificateToPem(cert->get());
  if (!cert_pem.ok()) return Deny(500, "internal", cert_pem.error().message(), ev);
  WitRequest wr;
  wr.sub = *identifier;
  wr.iss = options_.policy.issuer;
  wr.workload_key = attested->get();
  WitIssueOptions wo;
  wo.kid = keys_.wit_kid;
  wo.ttl_seconds = options_.policy.wit_lifetime_seconds;
  wo.now = now;
  auto wit = IssueWit(*keys_.wit_signer, wr, wo);
  if (!wit.ok()) return Deny(500, "internal", wit.error().message(), ev);

  IssuedCredential ic;
  ic.serial_hex = SerialHex(cert->get());
  ic.identity = *identity;
  ic.identifier = *identifier;
  ic.key_thumbprint = thumb;
  ic.wit_sha256 = audit::TokenSha256Hex(*wit);
  ic.issued_at = now;
  ic.expires_at = now + options_.policy.certificate_lifetime_seconds;
  if (auto s = store_->RecordIssued(ic); !s.ok()) {
    return Deny(500, "state_error", s.error().message(), ev);
  }
  ev.decision = "allow";
  ev.reason = "affirming evidence; certificate and WIT issued";
  ev.claims["serial"] = ic.serial_hex;
  ev.claims["ear_status"] = "affirming";
  ev.claims["expires_at"] = ic.expires_at;
  ev.token_sha256["wit"] = ic.wit_sha256;
  (void)audit_->Append(ev, now);
  return Json(200, {{"identifier", *identifier},
                    {"ear", *ear},
                    {"wit", *wit},
                    {"certificate", *cert_pem},
                    {"bundle", bundle_pem_},
                    {"serial", ic.serial_hex},
                    {"expires_at", ic.expires_at},
                    {"wit_expires_at", now + options_.policy.wit_lifetime_seconds}});
}

ServiceResponse CredentialService::Bundle() const {
  return ServiceResponse{200, "application/x-pem-file", bundle_pem_};
}

std::string CredentialService::JwksJson() const {
  auto jwk = jose::PublicKeyToJwk(keys_.wit_signer->public_key(), "ES256");
  jose::Json keys = jose::Json::array();
  if (jwk.ok()) {
    (*jwk)["kid"] = keys_.wit_kid;
    (*jwk)["use"] = "sig";
    keys.push_back(*jwk);
  }
  return jose::SerializeJson(jose::Json{{"keys", keys}});
}

ServiceResponse CredentialService::Jwks() const {
  return ServiceResponse{200, "application/json", JwksJson()};
}

ServiceResponse CredentialService::Health() {
  auto e = store_->CountEnrollments();
  auto i = store_->CountIssued();
  (void)store_->PurgeExpired(Now());
  return Json(200,
              {{"status", "ok"}, {"enrolments", e.ok() ? *e : 0}, {"issued", i.ok() ? *i : 0}});
}

}  // namespace wimse::service
