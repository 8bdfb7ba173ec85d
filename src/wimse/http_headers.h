// HTTP carriage of WIMSE tokens (workload-creds-02 §4.1, wpt-02 §2):
//   Workload-Identity-Token: <WIT>
//   Authorization: WPT <WPT>
// Field names are case-insensitive; the WPT auth-scheme name is case-insensitive; token values
// are case-sensitive and must be JWS compact (three non-empty base64url segments).
#ifndef WIMSE_WIMSE_HTTP_HEADERS_H_
#define WIMSE_WIMSE_HTTP_HEADERS_H_

#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"
#include "wimse/verify_result.h"
#include "wimse/wpt.h"

namespace wimse {

// One header field line. Names compare case-insensitively; values are kept as received.
struct HttpField {
  std::string name;
  std::string value;
};

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

// The pre-wpt-02 header (s2s-protocol-07, wpt-00/01): "Workload-Proof-Token: <WPT>".
inline constexpr std::string_view kWptLegacyHeaderName = "Workload-Proof-Token";

// "Workload-Proof-Token: <wpt>" for peers on s2s-protocol-07 (no line terminator).
std::string WptLegacyHeaderLine(std::string_view wpt);

struct WptHttpOptions {
  WptVerifyOptions verify;  // audiences, anchors, replay cache, audit sink
  // Opt-in compatibility with s2s-protocol-07 / wpt-01 senders: accept the WPT from a single
  // Workload-Proof-Token field when there is no "Authorization: WPT"; an "Authorization:
  // Bearer" access token may then accompany it, and a WPT `ath` claim must match that token.
  bool accept_s2s07 = false;
};

// Verifies the WIT and WPT carried by request `fields` (wpt-02 §2): exactly one
// Workload-Identity-Token field and exactly one Authorization field with the WPT scheme (or, in
// compatibility mode, one Workload-Proof-Token field). Transport failures (missing, duplicated
// or conflicting fields) are rejections like any other and are audited (kind "wpt") through
// options.verify.audit, as is every VerifyWpt decision: one record per call.
VerifyResult<VerifiedWpt> VerifyWptHttpRequest(const std::vector<HttpField>& fields,
                                               const WptHttpOptions& options);

// An HTTP error answer for a rejected credential.
struct HttpErrorResponse {
  int status = 0;
  std::vector<HttpField> headers;  // WWW-Authenticate (WPT), Content-Type
  std::string body;                // RFC 9457 problem details (application/problem+json)
};

// wpt-02 §2: a WPT (or its WIT) failure is 401 with `WWW-Authenticate: WPT
// error="invalid_token", error_description="<reason>"` and a problem-details body whose detail
// is the reason. The reason is one of the verifier's fixed strings, never token content; quotes
// and control characters are escaped or dropped.
HttpErrorResponse WptFailureResponse(TokenCheck check, std::string_view reason);
template <typename T>
HttpErrorResponse WptFailureResponse(const VerifyResult<T>& result) {
  return WptFailureResponse(result.check(), result.reason());
}

// draft-ietf-wimse-http-signature §error-conditions: signature failures are 400 with a problem
// details body (401 is NOT RECOMMENDED there, so no WWW-Authenticate).
HttpErrorResponse HttpSigFailureResponse(TokenCheck check, std::string_view reason);

}  // namespace wimse

#endif  // WIMSE_WIMSE_HTTP_HEADERS_H_
