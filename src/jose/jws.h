// JWS compact serialization (RFC 7515) over the Signer interface, with the algorithm always
// taken from the key (RFC 8725 §3.1): the header "alg" must string-equal the one algorithm the
// verification key allows, so "none", HS*, case variants and algorithm confusion cannot pass
// (field case C17). ECDSA signatures are raw fixed-width r||s; r and s are range-checked
// (0 < r, s < n) before OpenSSL sees them (C18, psychic signatures), and DER or wrong-length
// signatures are rejected (C16). High-S signatures are accepted: TPMs emit them and JWS does
// not require low-S; replay protection is keyed on `jti`, never on the token string (C21).
#ifndef WIMSE_JOSE_JWS_H_
#define WIMSE_JOSE_JWS_H_

#include <openssl/evp.h>

#include <string>
#include <string_view>

#include "crypto/signer.h"
#include "jose/json.h"
#include "util/bytes.h"
#include "util/result.h"

namespace wimse::jose {

// JWS algorithms wimse-tpm signs or verifies. PS256 is RSASSA-PSS with SHA-256, MGF1-SHA-256
// and a 32-byte salt (RFC 7518 §3.5).
enum class JwsAlg { kEs256, kEs384, kRs256, kPs256, kEdDsa };

// "ES256", "ES384", "RS256", "PS256", "EdDSA".
std::string_view JwsAlgName(JwsAlg alg);
// Exact, case-sensitive lookup; anything else (none, HS256, es256, "ES256 ") is an error
// "algorithm not allowed: <alg>".
Result<JwsAlg> JwsAlgFromName(std::string_view name);
// The default algorithm of a public key: P-256 -> ES256, P-384 -> ES384, RSA >= 2048 bits ->
// RS256, Ed25519 -> EdDSA. Other keys are an error.
Result<JwsAlg> JwsAlgForKey(EVP_PKEY* key);
// Whether `alg` may be used with `key`: EC and Ed25519 keys allow exactly their JwsAlgForKey
// algorithm; RSA keys (>= 2048 bits) allow RS256 and PS256. Never an algorithm of another
// family, so no header can switch the key type (C17).
bool JwsAlgAllowedForKey(EVP_PKEY* key, JwsAlg alg);

// Implemented by signers that can also produce RSASSA-PSS signatures (salt length = digest
// length, MGF1 with the same hash), as PS256 requires. A Signer that does not implement it
// cannot sign PS256.
class RsaPssSigner {
 public:
  virtual ~RsaPssSigner() = default;
  // Like Signer::SignDigest, but RSASSA-PSS. Errors come from the key's implementation.
  virtual Result<Bytes> SignDigestPss(HashAlg hash, ByteView digest) = 0;
};

// Signs `input` with `signer` under `alg` (which must be allowed for the signer's key; PS256
// needs a signer that implements RsaPssSigner). Returns the JWS signature bytes (raw r||s for
// ECDSA) after checking their length. One SignDigest/SignDigestPss call.
Result<Bytes> SignWithJwsAlg(Signer& signer, JwsAlg alg, std::string_view input);

// Bounds on untrusted compact tokens.
struct JwsLimits {
  size_t max_token_bytes = 8192;
  JsonLimits json;
};

// A compact JWS split and decoded but NOT verified. Nothing in it may be trusted until
// VerifyJwsSignature succeeds over `signing_input` with a key chosen by the caller.
struct UnverifiedJws {
  std::string signing_input;  // the exact "<header>.<payload>" bytes received
  Json header;                // strictly parsed protected header (an object)
  std::string payload;        // decoded payload bytes
  Bytes signature;            // decoded signature bytes
};

// Splits `token` into exactly three non-empty segments (so a five-segment JWE is rejected),
// decodes each with strict base64url and parses the header as a strict JSON object. Checks
// the header's "crit" (see CheckCrit) and that "alg" is a string. Does not look at the
// payload beyond decoding it. Errors are Layer::kParse / kPolicy with the rule broken.
Result<UnverifiedJws> ParseCompactJwsUnverified(std::string_view token,
                                                const JwsLimits& limits = {});

// RFC 7515 §4.1.11: we implement no extensions, so a "crit" member is always rejected; the
// message says whether it was malformed (not an array, empty, non-string or duplicate entries,
// a registered header name, a name absent from the header) or named an unknown extension.
Status CheckCrit(const Json& header);

// Verifies `signature` over `signing_input` with `key`, which must allow `alg` (see
// JwsAlgAllowedForKey). ECDSA: raw r||s of exactly 2 x field size, 0 < r, s < n. Errors are
// Layer::kPolicy: "algorithm not allowed for key", "ECDSA signature has the wrong length",
// "ECDSA signature r or s out of range", "signature does not verify". Thread-safe.
Status VerifyJwsSignature(EVP_PKEY* key, JwsAlg alg, std::string_view signing_input,
                          ByteView signature);

// Signs: header = `header` plus "alg" (from the signer's key), payload = `payload` bytes as
// given. Returns the compact serialization. One SignDigest call on `signer` (a TPM2_Sign for a
// TpmSigner); checks the returned signature length. Errors come from the signer.
Result<std::string> SignCompactJws(Signer& signer, Json header, std::string_view payload);
// The same with an explicit algorithm (e.g. PS256 for an RSA key); `alg` must be allowed for
// the signer's key.
Result<std::string> SignCompactJws(Signer& signer, JwsAlg alg, Json header,
                                   std::string_view payload);

}  // namespace wimse::jose

#endif  // WIMSE_JOSE_JWS_H_
