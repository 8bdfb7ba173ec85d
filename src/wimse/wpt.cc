#include "wimse/wpt.h"

#include "crypto/public_key.h"
#include "jose/jwk.h"

namespace wimse {
namespace {

using jose::Json;

constexpr size_t kMaxJtiBytes = 256;

VerifyResult<VerifiedWpt> VerifyWptImpl(std::string_view wpt, std::string_view wit,
                                        const WptVerifyOptions& options, int64_t now) {
  using R = VerifyResult<VerifiedWpt>;
  WitVerifyOptions wit_options = options.wit;
  wit_options.now = now;
  wit_options.audit = nullptr;
  auto verified_wit = VerifyWit(wit, wit_options);
  if (!verified_wit.ok()) {
    return R::Reject(verified_wit.check(), "WIT: " + verified_wit.reason());
  }
  const VerifiedWit& w = verified_wit.claims();

  auto jws = jose::ParseCompactJwsUnverified(wpt, options.wit.limits);
  if (!jws.ok()) {
    bool header_rule = jws.error().layer() == Layer::kPolicy;
    return R::Reject(header_rule ? TokenCheck::kHeader : TokenCheck::kMalformed,
                     jws.error().message());
  }
  const std::string& alg_name = jws->header["alg"].get_ref<const std::string&>();
  if (alg_name != jose::JwsAlgName(w.cnf_alg)) {
    return R::Reject(TokenCheck::kHeader, "alg does not match cnf.jwk.alg");
  }
  Status sig =
      jose::VerifyJwsSignature(w.cnf_key.get(), w.cnf_alg, jws->signing_input, jws->signature);
  if (!sig.ok()) {
    return R::Reject(TokenCheck::kSignature, sig.error().message());
  }
  if (!TypMatches(jws->header, "wpt+jwt")) {
    return R::Reject(TokenCheck::kHeader, "typ is not wpt+jwt");
  }
  auto claims = jose::ParseJsonObject(jws->payload, options.wit.limits.json);
  if (!claims.ok()) {
    return R::Reject(TokenCheck::kMalformed, "claims: " + claims.error().message());
  }

  VerifiedWpt out;
  auto aud = claims->find("aud");
  if (aud == claims->end()) {
    return R::Reject(TokenCheck::kAudience, "missing aud");
  }
  if (aud->is_string()) {
    out.aud = aud->get<std::string>();
  } else if (aud->is_array() && aud->size() == 1 && (*aud)[0].is_string()) {
    out.aud = (*aud)[0].get<std::string>();
  } else {
    return R::Reject(TokenCheck::kAudience, "aud is not a string");
  }
  bool aud_ok = false;
  for (const std::string& a : options.audiences) {
    aud_ok = aud_ok || a == out.aud;
  }
  if (!aud_ok) {
    return R::Reject(TokenCheck::kAudience, "aud does not match");
  }

  auto exp = jose::OptionalNumericDate(*claims, "exp");
  if (!exp.ok()) {
    return R::Reject(TokenCheck::kTime, exp.error().message());
  }
  if (!exp->has_value()) {
    return R::Reject(TokenCheck::kTime, "missing exp");
  }
  double exp_v = (*exp)->value;
  int64_t leeway = options.wit.leeway_seconds;
  if (static_cast<double>(now) >= exp_v + static_cast<double>(leeway)) {
    return R::Reject(TokenCheck::kTime, "expired");
  }
  // Without iat the lifetime can only be bounded from our clock: a signer whose clock runs
  // `leeway` ahead legitimately sets exp = its now + max lifetime, so one leeway window is
  // allowed on top (deliberate; with iat the bound below is exact).
  if (exp_v > static_cast<double>(now + options.max_lifetime_seconds + leeway)) {
    return R::Reject(TokenCheck::kTime, "exp too far in the future");
  }
  auto nbf = jose::OptionalNumericDate(*claims, "nbf");
  if (!nbf.ok()) {
    return R::Reject(TokenCheck::kTime, nbf.error().message());
  }
  if (nbf->has_value() && (*nbf)->value > static_cast<double>(now + leeway)) {
    return R::Reject(TokenCheck::kTime, "not yet valid");
  }
  auto iat = jose::OptionalNumericDate(*claims, "iat");
  if (!iat.ok()) {
    return R::Reject(TokenCheck::kTime, iat.error().message());
  }
  if (iat->has_value()) {
    if ((*iat)->value > static_cast<double>(now + leeway)) {
      return R::Reject(TokenCheck::kTime, "iat in the future");
    }
    if (exp_v - (*iat)->value > static_cast<double>(options.max_lifetime_seconds)) {
      return R::Reject(TokenCheck::kTime, "lifetime too long");
    }
  }
  out.exp = (*exp)->Floor();

  auto wth = jose::OptionalStringMember(*claims, "wth");
  if (!wth.ok() || !wth->has_value()) {
    return R::Reject(TokenCheck::kBinding, "wth missing or not a string");
  }
  if (!ConstantTimeEqual(AsBytes(**wth), AsBytes(w.token_sha256_b64url))) {
    return R::Reject(TokenCheck::kBinding, "wth does not match the WIT");
  }
  if (options.access_token) {
    auto ath = jose::OptionalStringMember(*claims, "ath");
    if (!ath.ok() || !ath->has_value()) {
      return R::Reject(TokenCheck::kBinding, "ath missing for the access token");
    }
    if (!ConstantTimeEqual(AsBytes(**ath), AsBytes(TokenHashB64(*options.access_token)))) {
      return R::Reject(TokenCheck::kBinding, "ath does not match the access token");
    }
  }
  if (claims->contains("oth")) {
    return R::Reject(TokenCheck::kBinding, "oth bindings are not supported");
  }
  auto jti = jose::OptionalStringMember(*claims, "jti");
  if (!jti.ok() || !jti->has_value() || (*jti)->empty() || (*jti)->size() > kMaxJtiBytes) {
    return R::Reject(TokenCheck::kClaims, "jti missing or invalid");
  }
  out.jti = **jti;
  if (options.replay_cache != nullptr &&
      !options.replay_cache->CheckAndInsert(w.cnf_thumbprint + "." + out.jti, out.exp + leeway + 1,
                                            now)) {
    return R::Reject(TokenCheck::kReplay, "jti replayed");
  }
  out.wit = std::move(verified_wit).take_claims();
  return R::Accept(std::move(out));
}

}  // namespace

Result<std::string> SignWpt(Signer& key, std::string_view wit, const WptOptions& options) {
  if (options.audience.empty() || options.audience.find_first_of("?#") != std::string::npos) {
    return Error(Layer::kUsage, "WPT audience must be a target URI without query or fragment");
  }
  if (options.ttl_seconds <= 0 || options.ttl_seconds > 300) {
    return Error(Layer::kUsage, "WPT ttl must be in (0, 300] seconds");
  }
  // The WIT we bind to must name this key (its signature is the recipient's business). A
  // workload mints many WPTs for one WIT, so the last successful check is remembered per thread
  // (the WIT string and a reference on the key: the same inputs give the same answer).
  thread_local std::string checked_wit;
  thread_local EvpPkeyPtr checked_key;
  thread_local jose::JwsAlg checked_alg = jose::JwsAlg::kEs256;
  if (checked_key.get() != key.public_key() || checked_wit != wit) {
    checked_key.reset();
    WIMSE_ASSIGN_OR_RETURN(jose::JwsAlg alg, WitCnfAlgForKey(wit, key.public_key()));
    if (EVP_PKEY_up_ref(key.public_key()) == 1) {
      checked_key.reset(key.public_key());
      checked_wit = std::string(wit);
      checked_alg = alg;
    }
  }
  const jose::JwsAlg alg = checked_alg;
  std::string jti = options.jti;
  if (jti.empty()) {
    WIMSE_ASSIGN_OR_RETURN(jti, RandomJti());
  }
  Json payload = Json::object();
  payload["aud"] = options.audience;
  payload["exp"] = NowOr(options.now) + options.ttl_seconds;
  payload["jti"] = jti;
  payload["wth"] = TokenHashB64(wit);
  Json header = Json::object({{"typ", "wpt+jwt"}});
  return jose::SignCompactJws(key, alg, std::move(header), jose::SerializeJson(payload));
}

VerifyResult<VerifiedWpt> VerifyWpt(std::string_view wpt, std::string_view wit,
                                    const WptVerifyOptions& options) {
  int64_t now = NowOr(options.wit.now);
  auto result = VerifyWptImpl(wpt, wit, options, now);
  if (options.audit != nullptr) {
    TokenAuditRecord rec;
    rec.time = now;
    rec.kind = "wpt";
    rec.accepted = result.ok();
    rec.sub = result.ok() ? result.claims().wit.sub.uri : "";
    rec.aud = options.audiences.empty() ? "" : options.audiences.front();
    rec.reason = result.reason();
    auto digest = Digest(HashAlg::kSha256, AsBytes(wpt));
    rec.token_sha256 = digest.ok() ? HexEncode(*digest) : "";
    options.audit->Record(rec);
  }
  return result;
}

}  // namespace wimse
