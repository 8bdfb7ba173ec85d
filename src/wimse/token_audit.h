// Audit hook for token verification decisions. Records never contain a token, only its
// SHA-256 (wpt-02 §3.1.5: raw WPTs must not be logged).
#ifndef WIMSE_WIMSE_TOKEN_AUDIT_H_
#define WIMSE_WIMSE_TOKEN_AUDIT_H_

#include <cstdint>
#include <string>

namespace wimse {

// One verification decision.
struct TokenAuditRecord {
  int64_t time = 0;  // verifier clock, seconds since the epoch
  std::string kind;  // "wit", "wpt", "httpsig" (request) or "httpsig-response"
  std::string sub;   // the WIT sub, only when the WIT itself was accepted
  std::string aud;   // the audience the verifier expected ("" for WIT-only checks)
  bool accepted = false;
  std::string reason;  // rejection reason, empty when accepted
  // Lower-case hex SHA-256 of the token string as received (for httpsig: of the Signature
  // field value; for a WPT transport failure: of the offending field value, or of "" when the
  // field is missing).
  std::string token_sha256;
};

// Receives one record per Verify* call when configured in the verify options. Implementations
// must be thread-safe if the verifier is shared across threads, and must not block for long.
class TokenAuditSink {
 public:
  virtual ~TokenAuditSink() = default;
  virtual void Record(const TokenAuditRecord& record) = 0;
};

}  // namespace wimse

#endif  // WIMSE_WIMSE_TOKEN_AUDIT_H_
