// base64url without padding (RFC 4648 §5), as CMW (draft-ietf-rats-msg-wrap) and the
// tpm2-evidence v1 document use it. Decoding is strict: alphabet only, no padding, no
// whitespace, and the unused low bits of the last character must be zero (canonical form), so
// one byte string has exactly one accepted encoding.
//
// Local to attest/ until src/jose provides the project-wide codec; same rules.
#ifndef WIMSE_ATTEST_B64URL_H_
#define WIMSE_ATTEST_B64URL_H_

#include <string>
#include <string_view>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse::attest {

// Encodes `data` as unpadded base64url.
std::string B64UrlEncode(ByteView data);

// Decodes strict unpadded base64url. Errors (Layer::kParse) say what was wrong.
Result<Bytes> B64UrlDecode(std::string_view text);

}  // namespace wimse::attest

#endif  // WIMSE_ATTEST_B64URL_H_
