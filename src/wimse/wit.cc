#include "wimse/wit.h"

#include <openssl/rand.h>

#include <chrono>

#include "crypto/public_key.h"
#include "jose/base64url.h"
#include "jose/jwk.h"

namespace wimse {
namespace {

using jose::Json;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

VerifyResult<VerifiedWit> VerifyWitImpl(std::string_view wit, const WitVerifyOptions& options,
                                        int64_t now) {
  using R = VerifyResult<VerifiedWit>;
  if (options.anchors == nullptr) {
    return R::Reject(TokenCheck::kTrust, "no trust anchors configured");
  }
  auto jws = jose::ParseCompactJwsUnverified(wit, options.limits);
  if (!jws.ok()) {
    bool header_rule = jws.error().layer() == Layer::kPolicy;
    return R::Reject(header_rule ? TokenCheck::kHeader : TokenCheck::kMalformed,
                     jws.error().message());
  }
  if (!TypMatches(jws->header, "wit+jwt")) {
    return R::Reject(TokenCheck::kHeader, "typ is not wit+jwt");
  }
  auto alg = jose::JwsAlgFromName(jws->header["alg"].get_ref<const std::string&>());
  if (!alg.ok()) {
    return R::Reject(TokenCheck::kHeader, alg.error().message());
  }
  auto kid = jose::OptionalStringMember(jws->header, "kid");
  if (!kid.ok()) {
    return R::Reject(TokenCheck::kHeader, "header " + kid.error().message());
  }
  // The claims are parsed before the signature is checked only to find the trust domain that
  // selects the key (creds §3); nothing else is read until the signature verifies.
  auto claims = jose::ParseJsonObject(jws->payload, options.limits.json);
  if (!claims.ok()) {
    return R::Reject(TokenCheck::kMalformed, "claims: " + claims.error().message());
  }
  auto sub_member = jose::OptionalStringMember(*claims, "sub");
  if (!sub_member.ok() || !sub_member->has_value()) {
    return R::Reject(TokenCheck::kClaims, "sub missing or not a string");
  }
  auto sub = ParseWorkloadIdentifier(**sub_member);
  if (!sub.ok()) {
    return R::Reject(TokenCheck::kClaims, "invalid sub: " + sub.error().message());
  }
  auto key = options.anchors->Select(sub->trust_domain, kid->value_or(""));
  if (!key.ok()) {
    return R::Reject(TokenCheck::kTrust, key.error().message());
  }
  Status sig = jose::VerifyJwsSignature(*key, *alg, jws->signing_input, jws->signature);
  if (!sig.ok()) {
    return R::Reject(TokenCheck::kSignature, sig.error().message());
  }

  VerifiedWit out;
  out.sub = std::move(sub).value();
  out.kid = kid->value_or("");
  auto iss = jose::OptionalStringMember(*claims, "iss");
  if (!iss.ok()) {
    return R::Reject(TokenCheck::kClaims, iss.error().message());
  }
  out.iss = *iss;
  Status iss_ok = options.anchors->CheckIssuer(out.sub.trust_domain, out.iss ? &*out.iss : nullptr);
  if (!iss_ok.ok()) {
    return R::Reject(TokenCheck::kTrust, iss_ok.error().message());
  }
  auto jti = jose::OptionalStringMember(*claims, "jti");
  if (!jti.ok()) {
    return R::Reject(TokenCheck::kClaims, jti.error().message());
  }
  out.jti = *jti;

  auto exp = jose::OptionalNumericDate(*claims, "exp");
  if (!exp.ok()) {
    return R::Reject(TokenCheck::kTime, exp.error().message());
  }
  if (!exp->has_value()) {
    return R::Reject(TokenCheck::kTime, "missing exp");
  }
  if (static_cast<double>(now) >= (*exp)->value + static_cast<double>(options.leeway_seconds)) {
    return R::Reject(TokenCheck::kTime, "expired");
  }
  out.exp = (*exp)->Floor();
  auto nbf = jose::OptionalNumericDate(*claims, "nbf");
  if (!nbf.ok()) {
    return R::Reject(TokenCheck::kTime, nbf.error().message());
  }
  if (nbf->has_value() && (*nbf)->value > static_cast<double>(now + options.leeway_seconds)) {
    return R::Reject(TokenCheck::kTime, "not yet valid");
  }
  auto iat = jose::OptionalNumericDate(*claims, "iat");
  if (!iat.ok()) {
    return R::Reject(TokenCheck::kTime, iat.error().message());
  }
  if (iat->has_value()) {
    if ((*iat)->value > static_cast<double>(now + options.leeway_seconds)) {
      return R::Reject(TokenCheck::kTime, "iat in the future");
    }
    out.iat = (*iat)->Floor();
  }

  auto cnf = claims->find("cnf");
  if (cnf == claims->end() || !cnf->is_object()) {
    return R::Reject(TokenCheck::kClaims, "cnf missing or not an object");
  }
  auto jwk_member = cnf->find("jwk");
  if (jwk_member == cnf->end() || !jwk_member->is_object()) {
    return R::Reject(TokenCheck::kClaims, "cnf.jwk missing or not an object");
  }
  auto cnf_alg_name = jose::OptionalStringMember(*jwk_member, "alg");
  if (!cnf_alg_name.ok() || !cnf_alg_name->has_value()) {
    return R::Reject(TokenCheck::kClaims, "cnf.jwk has no alg");
  }
  auto cnf_alg = jose::JwsAlgFromName(**cnf_alg_name);
  if (!cnf_alg.ok()) {
    return R::Reject(TokenCheck::kClaims, "cnf.jwk " + cnf_alg.error().message());
  }
  auto jwk = jose::ParsePublicJwk(*jwk_member);
  if (!jwk.ok()) {
    return R::Reject(TokenCheck::kClaims, "cnf.jwk: " + jwk.error().message());
  }
  auto thumb = jose::JwkThumbprint(*jwk_member);
  if (!thumb.ok()) {
    return R::Reject(TokenCheck::kClaims, "cnf.jwk: " + thumb.error().message());
  }
  out.cnf_alg = *cnf_alg;
  out.cnf_key = std::shared_ptr<EVP_PKEY>(jwk->key.release(), EVP_PKEY_free);
  out.cnf_thumbprint = std::move(thumb).value();
  out.token_sha256_b64url = TokenHashB64(wit);
  return R::Accept(std::move(out));
}

}  // namespace

int64_t NowOr(const std::optional<int64_t>& now) {
  if (now) {
    return *now;
  }
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string TokenHashB64(std::string_view token) {
  auto digest = Digest(HashAlg::kSha256, AsBytes(token));
  return digest.ok() ? jose::Base64UrlEncode(*digest) : std::string();
}

bool TypMatches(const Json& header, std::string_view expected) {
  auto it = header.find("typ");
  if (it == header.end() || !it->is_string()) {
    return false;
  }
  std::string typ = Lower(it->get_ref<const std::string&>());
  if (typ.rfind("application/", 0) == 0) {
    typ.erase(0, 12);
  }
  return typ == expected;
}

Result<std::string> RandomJti() {
  uint8_t buf[16];
  if (RAND_bytes(buf, sizeof(buf)) != 1) {
    return OpenSslError("RAND_bytes");
  }
  return jose::Base64UrlEncode(ByteView(buf, sizeof(buf)));
}

Status CheckWitBindsKey(std::string_view wit, EVP_PKEY* key) {
  WIMSE_RETURN_IF_ERROR(WitCnfAlgForKey(wit, key));
  return OkStatus();
}

Result<jose::JwsAlg> WitCnfAlgForKey(std::string_view wit, EVP_PKEY* key) {
  auto jws = jose::ParseCompactJwsUnverified(wit);
  if (!jws.ok()) {
    return Error(Layer::kUsage, "not a WIT: " + jws.error().message());
  }
  auto claims = jose::ParseJsonObject(jws->payload);
  if (!claims.ok()) {
    return Error(Layer::kUsage, "not a WIT: " + claims.error().message());
  }
  auto cnf = claims->find("cnf");
  if (cnf == claims->end() || !cnf->is_object() || !cnf->contains("jwk")) {
    return Error(Layer::kUsage, "WIT has no cnf.jwk");
  }
  WIMSE_ASSIGN_OR_RETURN(Json own_jwk, jose::PublicKeyToJwk(key, ""));
  WIMSE_ASSIGN_OR_RETURN(std::string own_thumb, jose::JwkThumbprint(own_jwk));
  auto wit_thumb = jose::JwkThumbprint((*cnf)["jwk"]);
  if (!wit_thumb.ok() || *wit_thumb != own_thumb) {
    return Error(Layer::kUsage, "the WIT's cnf.jwk is not this key");
  }
  auto cnf_alg = jose::OptionalStringMember((*cnf)["jwk"], "alg");
  if (!cnf_alg.ok() || !cnf_alg->has_value()) {
    return Error(Layer::kUsage, "the WIT's cnf.jwk.alg is not this key's algorithm");
  }
  auto alg = jose::JwsAlgFromName(**cnf_alg);
  if (!alg.ok() || !jose::JwsAlgAllowedForKey(key, *alg)) {
    return Error(Layer::kUsage, "the WIT's cnf.jwk.alg is not this key's algorithm");
  }
  return *alg;
}

Result<std::string> IssueWit(Signer& issuer, const WitRequest& request,
                             const WitIssueOptions& options) {
  WIMSE_RETURN_IF_ERROR(ParseWorkloadIdentifier(request.sub));
  if (request.workload_key == nullptr) {
    return Error(Layer::kUsage, "no workload key");
  }
  if (options.ttl_seconds <= 0 || options.ttl_seconds > 86400) {
    return Error(Layer::kUsage, "WIT ttl must be in (0, 86400] seconds");
  }
  WIMSE_ASSIGN_OR_RETURN(jose::JwsAlg workload_alg, jose::JwsAlgForKey(request.workload_key));
  if (request.cnf_alg) {
    if (!jose::JwsAlgAllowedForKey(request.workload_key, *request.cnf_alg)) {
      return Error(Layer::kUsage, "cnf alg not allowed for the workload key");
    }
    workload_alg = *request.cnf_alg;
  }
  WIMSE_ASSIGN_OR_RETURN(
      Json jwk, jose::PublicKeyToJwk(request.workload_key, jose::JwsAlgName(workload_alg)));
  std::string jti = request.jti;
  if (jti.empty()) {
    WIMSE_ASSIGN_OR_RETURN(jti, RandomJti());
  }
  int64_t now = NowOr(options.now);
  Json claims = Json::object();
  claims["cnf"] = Json::object({{"jwk", jwk}});
  claims["exp"] = now + options.ttl_seconds;
  claims["iat"] = now;
  if (!request.iss.empty()) {
    claims["iss"] = request.iss;
  }
  claims["jti"] = jti;
  claims["sub"] = request.sub;
  Json header = Json::object();
  header["typ"] = "wit+jwt";
  if (!options.kid.empty()) {
    header["kid"] = options.kid;
  }
  if (options.alg) {
    return jose::SignCompactJws(issuer, *options.alg, std::move(header),
                                jose::SerializeJson(claims));
  }
  return jose::SignCompactJws(issuer, std::move(header), jose::SerializeJson(claims));
}

VerifyResult<VerifiedWit> VerifyWit(std::string_view wit, const WitVerifyOptions& options) {
  int64_t now = NowOr(options.now);
  auto result = VerifyWitImpl(wit, options, now);
  if (options.audit != nullptr) {
    TokenAuditRecord rec;
    rec.time = now;
    rec.kind = "wit";
    rec.accepted = result.ok();
    rec.sub = result.ok() ? result.claims().sub.uri : "";
    rec.reason = result.reason();
    auto digest = Digest(HashAlg::kSha256, AsBytes(wit));
    rec.token_sha256 = digest.ok() ? HexEncode(*digest) : "";
    options.audit->Record(rec);
  }
  return result;
}

std::string_view TokenCheckName(TokenCheck check) {
  switch (check) {
    case TokenCheck::kAccepted:
      return "accepted";
    case TokenCheck::kMalformed:
      return "malformed";
    case TokenCheck::kHeader:
      return "header";
    case TokenCheck::kTrust:
      return "trust";
    case TokenCheck::kSignature:
      return "signature";
    case TokenCheck::kClaims:
      return "claims";
    case TokenCheck::kTime:
      return "time";
    case TokenCheck::kBinding:
      return "binding";
    case TokenCheck::kAudience:
      return "audience";
    case TokenCheck::kReplay:
      return "replay";
  }
  return "";
}

}  // namespace wimse
