// Workload Proof Token (draft-ietf-wimse-wpt-02, typ "wpt+jwt").
//
// Sign: the workload proves possession of the WIT's cnf key for one request: claims aud, exp,
// jti (128 random bits), wth (base64url SHA-256 of the exact WIT string). The header alg is the
// key's algorithm and must equal the WIT's cnf.jwk.alg.
// Verify (wpt-02 §2): the WIT first (VerifyWit), then: alg string-equals cnf.jwk.alg, signature
// under cnf.jwk, typ wpt+jwt (application/ prefix and case tolerated), aud is a configured
// audience, exp present, not passed, not beyond the maximum lifetime, wth matches the WIT,
// jti present and (with a replay cache) not seen before. `oth` is rejected (we understand no
// other-token bindings); `tth` is ignored (no Txn-Token support); `ath` is checked only when an
// access token is given (the s2s-protocol-07 compatibility mode of VerifyWptHttpRequest).
// The header alg may be any algorithm cnf.jwk.alg names and the key allows (ES256, ES384,
// RS256, PS256); SignWpt uses the WIT's cnf.jwk.alg.
#ifndef WIMSE_WIMSE_WPT_H_
#define WIMSE_WIMSE_WPT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/signer.h"
#include "util/result.h"
#include "wimse/replay_cache.h"
#include "wimse/wit.h"

namespace wimse {

struct WptOptions {
  std::string audience;        // the target URI without query or fragment (required)
  int64_t ttl_seconds = 60;    // (0, 300]
  std::optional<int64_t> now;  // seconds since the epoch; system clock when unset
  std::string jti;             // empty: 128 random bits
};

// Signs a WPT for `wit` with `key` (the workload key: a TpmSigner in production; one TPM2_Sign).
// Checks first that `wit` is a well-formed WIT whose cnf.jwk is this key with this key's alg, so
// a wrong key is caught before anything is sent (the WIT's signature is not checked here).
// Errors: Layer::kUsage for bad options or a key/WIT mismatch; signer errors.
Result<std::string> SignWpt(Signer& key, std::string_view wit, const WptOptions& options);

struct WptVerifyOptions {
  WitVerifyOptions wit;                 // trust anchors, clock, leeway, limits (shared)
  std::vector<std::string> audiences;   // accepted aud values, from configuration, never Host
  int64_t max_lifetime_seconds = 300;   // exp - now (and exp - iat) may not exceed this
  ReplayCache* replay_cache = nullptr;  // optional; borrowed; keyed on (cnf thumbprint, jti)
  TokenAuditSink* audit = nullptr;      // optional; borrowed; one record per call
  // s2s-protocol-07 compatibility only: the access token sent as "Authorization: Bearer"
  // beside the WPT. When set, the WPT must carry `ath` = base64url(SHA-256(token)). wpt-02
  // removed `ath` and forbids using such a token, so this is empty by default.
  std::optional<std::string> access_token;
};

// The accepted WPT and the WIT it was bound to.
struct VerifiedWpt {
  VerifiedWit wit;
  std::string aud;
  std::string jti;
  int64_t exp = 0;
};

// Verifies `wpt` against `wit` (both exactly as received). Never throws; a rejection carries no
// claims. A WIT rejection is reported with the reason prefixed by "WIT: ". Thread-safe if the
// anchors are not being modified (the replay cache and audit sink must be thread-safe).
VerifyResult<VerifiedWpt> VerifyWpt(std::string_view wpt, std::string_view wit,
                                    const WptVerifyOptions& options);

}  // namespace wimse

#endif  // WIMSE_WIMSE_WPT_H_
