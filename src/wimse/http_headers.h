// HTTP carriage of WIMSE tokens (workload-creds-02 §4.1, wpt-02 §2):
//   Workload-Identity-Token: <WIT>
//   Authorization: WPT <WPT>
// Field names are case-insensitive; the WPT auth-scheme name is case-insensitive; token values
// are case-sensitive and must be JWS compact (three non-empty base64url segments).
#ifndef WIMSE_WIMSE_HTTP_HEADERS_H_
#define WIMSE_WIMSE_HTTP_HEADERS_H_

#include <string>
#include <string_view>

#include "util/result.h"

namespace wimse {

inline constexpr std::string_view kWitHeaderName = "Workload-Identity-Token";
inline constexpr std::string_view kWptAuthScheme = "WPT";

// "Workload-Identity-Token: <wit>" (no line terminator), usable with `curl -H @file`.
std::string WitHeaderLine(std::string_view wit);
// "Authorization: WPT <wpt>" (no line terminator).
std::string WptAuthorizationLine(std::string_view wpt);

// Extracts the WIT from a Workload-Identity-Token field value (surrounding spaces/tabs removed).
// Errors (Layer::kParse) if the value is not JWS compact form.
Result<std::string_view> ParseWitFieldValue(std::string_view value);
// Extracts the WPT from an Authorization field value "WPT" 1*SP token68. Errors if the scheme is
// not WPT (e.g. Bearer) or the credentials are not JWS compact form.
Result<std::string_view> ParseWptAuthorization(std::string_view value);

}  // namespace wimse

#endif  // WIMSE_WIMSE_HTTP_HEADERS_H_
