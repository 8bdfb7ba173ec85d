#include "wimse/trust_anchors.h"

#include <algorithm>

#include "jose/jwk.h"
#include "jose/jws.h"

namespace wimse {

Status TrustAnchors::AddKey(std::string_view trust_domain, std::string_view kid, EVP_PKEY* key) {
  if (key == nullptr || trust_domain.empty()) {
    return Error(Layer::kUsage, "trust anchor needs a key and a trust domain");
  }
  WIMSE_RETURN_IF_ERROR(jose::JwsAlgForKey(key));
  auto& list = keys_[std::string(trust_domain)];
  for (const AnchorKey& k : list) {
    if (k.kid == kid) {
      return Error(Layer::kUsage, "duplicate kid in trust domain " + std::string(trust_domain));
    }
  }
  if (EVP_PKEY_up_ref(key) != 1) {
    return OpenSslError("EVP_PKEY_up_ref");
  }
  list.push_back(AnchorKey{std::string(kid), EvpPkeyPtr(key)});
  return OkStatus();
}

Status TrustAnchors::AddJwks(std::string_view trust_domain, std::string_view jwks_json) {
  jose::JsonLimits limits;
  limits.max_bytes = 256 * 1024;
  WIMSE_ASSIGN_OR_RETURN(jose::Json doc, jose::ParseJsonObject(jwks_json, limits));
  auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array() || keys->empty()) {
    return Error(Layer::kParse, "JWKS has no keys array");
  }
  for (const jose::Json& entry : *keys) {
    WIMSE_ASSIGN_OR_RETURN(jose::PublicJwk jwk, jose::ParsePublicJwk(entry));
    if (jwk.kid.empty()) {
      return Error(Layer::kPolicy, "JWKS key has no kid");
    }
    if (!jwk.use.empty() && jwk.use != "sig" && jwk.use != "wit-svid") {
      return Error(Layer::kPolicy, "JWKS key use is not sig or wit-svid");
    }
    WIMSE_RETURN_IF_ERROR(AddKey(trust_domain, jwk.kid, jwk.key.get()));
  }
  return OkStatus();
}

void TrustAnchors::AddIssuer(std::string_view trust_domain, std::string_view iss) {
  issuers_[std::string(trust_domain)].emplace_back(iss);
}

Result<EVP_PKEY*> TrustAnchors::Select(std::string_view trust_domain, std::string_view kid) const {
  auto it = keys_.find(trust_domain);
  if (it == keys_.end() || it->second.empty()) {
    it = keys_.find(kAnyTrustDomain);
  }
  if (it == keys_.end() || it->second.empty()) {
    return Error(Layer::kPolicy, "no trust anchor for trust domain");
  }
  const auto& list = it->second;
  if (!kid.empty()) {
    for (const AnchorKey& k : list) {
      if (k.kid == kid) {
        return k.key.get();
      }
    }
    if (list.size() == 1 && list[0].kid.empty()) {
      return list[0].key.get();
    }
    return Error(Layer::kPolicy, "no trust anchor key with that kid");
  }
  if (list.size() != 1) {
    return Error(Layer::kPolicy, "WIT has no kid and the trust domain has several keys");
  }
  return list[0].key.get();
}

Status TrustAnchors::CheckIssuer(std::string_view trust_domain, const std::string* iss) const {
  auto it = issuers_.find(trust_domain);
  if (it == issuers_.end() || it->second.empty()) {
    it = issuers_.find(kAnyTrustDomain);
  }
  if (it == issuers_.end() || it->second.empty()) {
    return OkStatus();
  }
  if (iss == nullptr) {
    return Error(Layer::kPolicy, "iss missing but the trust domain has an issuer allowlist");
  }
  if (std::find(it->second.begin(), it->second.end(), *iss) == it->second.end()) {
    return Error(Layer::kPolicy, "iss not allowed for the trust domain");
  }
  return OkStatus();
}

}  // namespace wimse
