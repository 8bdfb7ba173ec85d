// Base64url without padding (RFC 7515 §2, RFC 4648 §5), decoded strictly.
//
// Strict means canonical: only [A-Za-z0-9_-], no '=' padding, no whitespace, no length that is
// 1 mod 4, and the unused low bits of the last character must be zero. A token therefore has
// exactly one accepted spelling, so nothing keyed on the token string (denylists, hashes like
// the WPT `wth`) can be bypassed by re-encoding it (field case C21).
#ifndef WIMSE_JOSE_BASE64URL_H_
#define WIMSE_JOSE_BASE64URL_H_

#include <string>
#include <string_view>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse::jose {

// Encodes `data` as unpadded base64url. Never fails.
std::string Base64UrlEncode(ByteView data);
inline std::string Base64UrlEncode(std::string_view data) { return Base64UrlEncode(AsBytes(data)); }

// Decodes canonical unpadded base64url. Errors (Layer::kParse) say which rule was broken:
// "invalid base64url character", "base64url has padding", "invalid base64url length",
// "base64url has non-zero trailing bits".
Result<Bytes> Base64UrlDecode(std::string_view text);

// True if `text` is non-empty and consists only of base64url alphabet characters.
bool IsBase64UrlAlphabet(std::string_view text);

}  // namespace wimse::jose

#endif  // WIMSE_JOSE_BASE64URL_H_
