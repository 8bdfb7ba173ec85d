// Helpers for token tests: forge JWS with arbitrary header/payload bytes and signatures, so
// every rejection path can be reached with an otherwise valid token.
#ifndef WIMSE_TESTS_TOKENS_TOKEN_TEST_UTIL_H_
#define WIMSE_TESTS_TOKENS_TOKEN_TEST_UTIL_H_

#include <string>
#include <string_view>

#include "crypto/public_key.h"
#include "crypto/signer.h"
#include "jose/base64url.h"
#include "util/bytes.h"

namespace wimse::testing {

// "<b64(header)>.<b64(payload)>" exactly as given (no re-serialisation).
inline std::string SigningInput(std::string_view header, std::string_view payload) {
  return jose::Base64UrlEncode(header) + "." + jose::Base64UrlEncode(payload);
}

// Signs header/payload bytes as given with `signer` using SHA-256; raw signature as the signer
// returns it (r||s for EC).
inline std::string SignRaw(Signer& signer, std::string_view header, std::string_view payload) {
  std::string input = SigningInput(header, payload);
  auto digest = Digest(HashAlg::kSha256, AsBytes(input));
  auto sig = signer.SignDigest(HashAlg::kSha256, *digest);
  return input + "." + jose::Base64UrlEncode(*sig);
}

// The decoded signature of a compact token.
inline Bytes SignatureOf(std::string_view token) {
  return *jose::Base64UrlDecode(token.substr(token.rfind('.') + 1));
}

// `token` with its signature segment replaced by base64url(sig).
inline std::string WithSignature(std::string_view token, ByteView sig) {
  return std::string(token.substr(0, token.rfind('.') + 1)) + jose::Base64UrlEncode(sig);
}

}  // namespace wimse::testing

#endif  // WIMSE_TESTS_TOKENS_TOKEN_TEST_UTIL_H_
