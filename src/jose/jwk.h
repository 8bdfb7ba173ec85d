// Public JSON Web Keys (RFC 7517/7518) and RFC 7638 thumbprints.
//
// Only public keys are accepted: a JWK carrying any private or symmetric member ("d", "p", "q",
// "dp", "dq", "qi", "oth", "k") or kty "oct" is rejected, because a `cnf.jwk` or trust anchor
// that leaks a private key is a configuration bug we refuse to paper over. Supported: EC P-256,
// P-384 (fixed-width x/y), RSA (>= 2048 bits), OKP Ed25519.
#ifndef WIMSE_JOSE_JWK_H_
#define WIMSE_JOSE_JWK_H_

#include <openssl/evp.h>

#include <string>

#include "crypto/ossl.h"
#include "jose/json.h"
#include "jose/jws.h"
#include "util/result.h"

namespace wimse::jose {

// A parsed public JWK. `key` is a software public key owned by this struct.
struct PublicJwk {
  EvpPkeyPtr key;
  std::string kty;
  std::string alg;  // the "alg" member, empty when absent
  std::string kid;  // the "kid" member, empty when absent
  std::string use;  // the "use" member, empty when absent
};

// Parses a JWK object holding a public key. Errors (Layer::kParse / kPolicy) name the rule:
// "jwk contains private member \"d\"", "jwk kty oct not allowed", "jwk x has the wrong length",
// "unsupported jwk kty", "jwk alg does not match the key" (when alg is present it must be an
// algorithm the key allows, see JwsAlgAllowedForKey: RS256 or PS256 for RSA).
Result<PublicJwk> ParsePublicJwk(const Json& jwk);

// The public JWK of `key` (EC P-256/P-384, RSA, Ed25519) with members kty, crv, x, y / n, e and,
// when `alg` is not empty, "alg". EC coordinates are always the full field width.
Result<Json> PublicKeyToJwk(EVP_PKEY* key, std::string_view alg);

// RFC 7638 thumbprint: base64url(SHA-256) over the required members in lexicographic order
// without whitespace. Works on a JWK as parsed (extra members are ignored).
Result<std::string> JwkThumbprint(const Json& jwk);

}  // namespace wimse::jose

#endif  // WIMSE_JOSE_JWK_H_
