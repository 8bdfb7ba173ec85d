// Workload Identity Token (draft-ietf-wimse-workload-creds-02 §3, typ "wit+jwt").
//
// Issue: an identity server (any Signer: a software issuer key or a TPM key) binds a workload's
// public key (cnf.jwk, with "alg") to a Workload Identifier (sub).
// Verify: the order of workload-creds §5.1 as digested in wimse-tokens.md §2.6: strict parse,
// typ, crit, alg allowlist, sub is a valid identifier, key chosen from the trust anchors of
// sub's trust domain by kid, signature with the algorithm the anchor key allows, exp/nbf/iat,
// cnf.jwk public-only with an allowed alg that matches the key.
#ifndef WIMSE_WIMSE_WIT_H_
#define WIMSE_WIMSE_WIT_H_

#include <openssl/evp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/ossl.h"
#include "crypto/signer.h"
#include "jose/json.h"
#include "jose/jws.h"
#include "util/result.h"
#include "wimse/identifier.h"
#include "wimse/token_audit.h"
#include "wimse/trust_anchors.h"
#include "wimse/verify_result.h"

namespace wimse {

// What the issuer asserts.
struct WitRequest {
  std::string sub;                   // Workload Identifier (validated)
  std::string iss;                   // optional issuer URI; omitted when empty
  EVP_PKEY* workload_key = nullptr;  // borrowed; its public key becomes cnf.jwk
  std::string jti;                   // empty: 128 random bits, base64url
  // cnf.jwk.alg, the algorithm the proofs must use; unset: the key's default (JwsAlgForKey).
  // Set PS256 for an RSA workload key that signs RSASSA-PSS.
  std::optional<jose::JwsAlg> cnf_alg;
};

struct WitIssueOptions {
  std::string kid;                  // header kid; omitted when empty
  std::optional<jose::JwsAlg> alg;  // issuer's algorithm; unset: the issuer key's default
  int64_t ttl_seconds = 3600;       // (0, 86400]
  std::optional<int64_t> now;       // seconds since the epoch; system clock when unset
};

// Issues a WIT signed by `issuer` (alg from the issuer's key: ES256 for P-256). Claims: cnf
// (jwk with alg), exp, iat, iss (if set), jti, sub. One SignDigest call on `issuer` (a TPM2_Sign
// if it is a TpmSigner). Errors: invalid sub, unsupported keys, bad ttl, signer errors.
Result<std::string> IssueWit(Signer& issuer, const WitRequest& request,
                             const WitIssueOptions& options = {});

struct WitVerifyOptions {
  const TrustAnchors* anchors = nullptr;  // required; borrowed
  std::optional<int64_t> now;             // seconds since the epoch; system clock when unset
  int64_t leeway_seconds = 30;            // applied to exp, nbf and iat
  jose::JwsLimits limits;                 // token size and JSON bounds
  TokenAuditSink* audit = nullptr;        // optional; borrowed; one record per call
};

// The claims of an accepted WIT.
struct VerifiedWit {
  WorkloadIdentifier sub;
  std::optional<std::string> iss;
  std::optional<std::string> jti;
  std::string kid;  // header kid, empty when absent
  std::optional<int64_t> iat;
  int64_t exp = 0;                              // rounded down
  jose::JwsAlg cnf_alg = jose::JwsAlg::kEs256;  // cnf.jwk.alg
  std::shared_ptr<EVP_PKEY> cnf_key;            // the workload's public key
  std::string cnf_thumbprint;                   // RFC 7638 of cnf.jwk
  std::string token_sha256_b64url;              // base64url SHA-256 of the WIT (= a WPT's wth)
};

// Verifies `wit` (the exact header value). Never throws; a rejection carries no claims.
// Pure apart from the optional audit sink: thread-safe if the anchors are not being modified.
VerifyResult<VerifiedWit> VerifyWit(std::string_view wit, const WitVerifyOptions& options);

// base64url(SHA-256(ASCII(token))), the `wth` of a WPT for this WIT.
std::string TokenHashB64(std::string_view token);

// Seconds since the epoch, from `now` when set.
int64_t NowOr(const std::optional<int64_t>& now);

// RFC 7515 §4.1.9 typ comparison: case-insensitive, optional "application/" prefix.
bool TypMatches(const jose::Json& header, std::string_view expected);

// 128 random bits, base64url (22 characters), for jti. Errors if the RNG fails.
Result<std::string> RandomJti();

// Signer-side sanity check before a proof is made for `wit`: `wit` is a well-formed WIT whose
// cnf.jwk is `key` (same RFC 7638 thumbprint) and whose cnf.jwk.alg is the key's algorithm.
// The WIT's signature is not checked (that is the recipient's job). Errors are Layer::kUsage.
Status CheckWitBindsKey(std::string_view wit, EVP_PKEY* key);
// The same check, returning the WIT's cnf.jwk.alg (the algorithm proofs must use), which must be
// allowed for `key` (JwsAlgAllowedForKey).
Result<jose::JwsAlg> WitCnfAlgForKey(std::string_view wit, EVP_PKEY* key);

}  // namespace wimse

#endif  // WIMSE_WIMSE_WIT_H_
