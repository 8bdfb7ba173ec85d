// VerifyResult<T>: the outcome of verifying a WIMSE token. Either the accepted claims or a
// rejection (the stage that failed and a precise, printable reason). The claims of a rejected
// token are never available: a rejection holds no T at all.
#ifndef WIMSE_WIMSE_VERIFY_RESULT_H_
#define WIMSE_WIMSE_VERIFY_RESULT_H_

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace wimse {

// Where verification stopped. kAccepted only for accepted tokens.
enum class TokenCheck {
  kAccepted,
  kMalformed,  // size, segments, base64url, JSON (duplicates, depth), claim types
  kHeader,     // typ, alg, crit
  kTrust,      // no trust anchor for the trust domain / kid, issuer not allowed
  kSignature,  // signature length, range, or verification
  kClaims,     // missing or invalid claims (sub, cnf, jti, ...)
  kTime,       // exp, nbf, iat, lifetime
  kBinding,    // wth does not match the WIT, unsupported context-token bindings
  kAudience,   // aud does not match
  kReplay,     // jti seen before
};

// Short lower-case name of a check ("signature", "time", ...).
std::string_view TokenCheckName(TokenCheck check);

template <typename T>
class [[nodiscard]] VerifyResult {
 public:
  static VerifyResult Accept(T claims) {
    VerifyResult r;
    r.check_ = TokenCheck::kAccepted;
    r.claims_.emplace(std::move(claims));
    return r;
  }
  static VerifyResult Reject(TokenCheck check, std::string reason) {
    VerifyResult r;
    r.check_ = check == TokenCheck::kAccepted ? TokenCheck::kMalformed : check;
    r.reason_ = std::move(reason);
    return r;
  }

  bool ok() const { return check_ == TokenCheck::kAccepted; }
  explicit operator bool() const { return ok(); }
  TokenCheck check() const { return check_; }
  // Why the token was rejected; empty when accepted.
  const std::string& reason() const { return reason_; }
  // The accepted claims. Calling this on a rejected result is a bug and aborts.
  const T& claims() const {
    if (!claims_) {
      std::abort();
    }
    return *claims_;
  }
  T&& take_claims() && {
    if (!claims_) {
      std::abort();
    }
    return std::move(*claims_);
  }

 private:
  VerifyResult() = default;
  TokenCheck check_ = TokenCheck::kMalformed;
  std::string reason_;
  std::optional<T> claims_;
};

}  // namespace wimse

#endif  // WIMSE_WIMSE_VERIFY_RESULT_H_
