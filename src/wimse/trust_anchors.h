// Trust anchors for WIT verification (workload-creds-02 §3): trust domain -> issuer keys.
//
// The WIT signature is checked with the keys of the trust domain named in `sub`, selected by the
// header `kid`; `iss` is never used to find keys. The signing algorithm is the one the anchor
// key allows (jose::JwsAlgForKey), never the token header's choice.
#ifndef WIMSE_WIMSE_TRUST_ANCHORS_H_
#define WIMSE_WIMSE_TRUST_ANCHORS_H_

#include <openssl/evp.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/ossl.h"
#include "util/result.h"

namespace wimse {

// Wildcard trust domain for a single pinned issuer key (the CLI's --issuer-pub without
// --trust-domain): the key is used for any trust domain that has no keys of its own.
inline constexpr std::string_view kAnyTrustDomain = "*";

// Configure once (Add*), then share: the const methods may run concurrently; Add* may not run
// concurrently with anything else.
class TrustAnchors {
 public:
  // Adds a public key for `trust_domain` (or kAnyTrustDomain). `kid` may be empty. The key is
  // copied (reference counted); only its public part is used. Errors: unsupported key type,
  // duplicate kid within the trust domain.
  Status AddKey(std::string_view trust_domain, std::string_view kid, EVP_PKEY* key);

  // Adds every key of a JWKS document ({"keys":[...]}) for `trust_domain`. Each key must be a
  // public JWK with a unique non-empty "kid"; "use", if present, must be "sig" or "wit-svid";
  // "alg", if present, must match the key. Parsed strictly (duplicate members rejected).
  Status AddJwks(std::string_view trust_domain, std::string_view jwks_json);

  // Restricts `iss` for `trust_domain`: once any issuer is added, WITs of that trust domain must
  // carry an `iss` equal to one of them.
  void AddIssuer(std::string_view trust_domain, std::string_view iss);

  // Selects the key for a WIT of `trust_domain` with header `kid` ("" when absent):
  //   kid present: the key with that kid; if none has it but the domain holds exactly one key
  //   without a kid (a pinned key), that key.
  //   kid absent: the domain's only key; several keys are ambiguous and rejected.
  // Falls back to kAnyTrustDomain only when `trust_domain` has no keys. The returned key is
  // borrowed from this object. Errors are Layer::kPolicy with the reason.
  Result<EVP_PKEY*> Select(std::string_view trust_domain, std::string_view kid) const;

  // Checks `iss` (nullptr when absent) against the issuer allowlist of `trust_domain` (or, if
  // that trust domain has none, the allowlist of kAnyTrustDomain). No allowlist: any iss.
  Status CheckIssuer(std::string_view trust_domain, const std::string* iss) const;

  bool empty() const { return keys_.empty(); }

 private:
  struct AnchorKey {
    std::string kid;
    EvpPkeyPtr key;
  };
  std::map<std::string, std::vector<AnchorKey>, std::less<>> keys_;
  std::map<std::string, std::vector<std::string>, std::less<>> issuers_;
};

}  // namespace wimse

#endif  // WIMSE_WIMSE_TRUST_ANCHORS_H_
