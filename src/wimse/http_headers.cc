#include "wimse/http_headers.h"

#include "crypto/signer.h"
#include "jose/base64url.h"

namespace wimse {
namespace {

std::string_view TrimOws(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) {
    v.remove_prefix(1);
  }
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) {
    v.remove_suffix(1);
  }
  return v;
}

// JWT = base64url "." base64url "." base64url, each non-empty.
bool IsCompactJwt(std::string_view v) {
  size_t d1 = v.find('.');
  if (d1 == std::string_view::npos) {
    return false;
  }
  size_t d2 = v.find('.', d1 + 1);
  if (d2 == std::string_view::npos || v.find('.', d2 + 1) != std::string_view::npos) {
    return false;
  }
  return jose::IsBase64UrlAlphabet(v.substr(0, d1)) &&
         jose::IsBase64UrlAlphabet(v.substr(d1 + 1, d2 - d1 - 1)) &&
         jose::IsBase64UrlAlphabet(v.substr(d2 + 1));
}

}  // namespace

std::string WitHeaderLine(std::string_view wit) {
  return std::string(kWitHeaderName) + ": " + std::string(wit);
}

std::string WptAuthorizationLine(std::string_view wpt) {
  return "Authorization: " + std::string(kWptAuthScheme) + " " + std::string(wpt);
}

Result<std::string_view> ParseWitFieldValue(std::string_view value) {
  std::string_view v = TrimOws(value);
  if (!IsCompactJwt(v)) {
    return Error(Layer::kParse, "Workload-Identity-Token is not a compact JWT");
  }
  return v;
}

Result<std::string_view> ParseWptAuthorization(std::string_view value) {
  std::string_view v = TrimOws(value);
  if (v.size() < 4) {
    return Error(Layer::kParse, "Authorization is not the WPT scheme");
  }
  std::string_view scheme = v.substr(0, 3);
  bool is_wpt = (scheme[0] == 'W' || scheme[0] == 'w') && (scheme[1] == 'P' || scheme[1] == 'p') &&
                (scheme[2] == 'T' || scheme[2] == 't');
  if (!is_wpt || v[3] != ' ') {
    return Error(Layer::kParse, "Authorization is not the WPT scheme");
  }
  v.remove_prefix(3);
  while (!v.empty() && v.front() == ' ') {
    v.remove_prefix(1);
  }
  if (!IsCompactJwt(v)) {
    return Error(Layer::kParse, "WPT credentials are not a compact JWT");
  }
  return v;
}

}  // namespace wimse

namespace wimse {
namespace {

std::string LowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

std::vector<std::string_view> ValuesOf(const std::vector<HttpField>& fields,
                                       std::string_view name) {
  std::vector<std::string_view> out;
  std::string want = LowerAscii(name);
  for (const HttpField& f : fields) {
    if (LowerAscii(f.name) == want) {
      out.push_back(f.value);
    }
  }
  return out;
}

// Printable ASCII only, with '"' and '\' escaped: safe inside a quoted-string and JSON string.
std::string EscapeReason(std::string_view reason) {
  std::string out;
  for (char c : reason.substr(0, 300)) {
    if (c < 0x20 || c > 0x7e) {
      continue;
    }
    if (c == '"' || c == '\\') {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

std::string ProblemJson(int status, std::string_view title, std::string_view detail) {
  return "{\"type\":\"about:blank\",\"title\":\"" + std::string(title) +
         "\",\"status\":" + std::to_string(status) + ",\"detail\":\"" + EscapeReason(detail) +
         "\"}";
}

void AuditTransportFailure(const WptHttpOptions& options, std::string_view reason,
                           std::string_view credentials) {
  if (options.verify.audit == nullptr) {
    return;
  }
  TokenAuditRecord rec;
  rec.time = NowOr(options.verify.wit.now);
  rec.kind = "wpt";
  rec.aud = options.verify.audiences.empty() ? "" : options.verify.audiences.front();
  rec.accepted = false;
  rec.reason = std::string(reason);
  auto digest = Digest(HashAlg::kSha256, AsBytes(credentials));
  rec.token_sha256 = digest.ok() ? HexEncode(*digest) : "";
  options.verify.audit->Record(rec);
}

}  // namespace

std::string WptLegacyHeaderLine(std::string_view wpt) {
  return std::string(kWptLegacyHeaderName) + ": " + std::string(wpt);
}

VerifyResult<VerifiedWpt> VerifyWptHttpRequest(const std::vector<HttpField>& fields,
                                               const WptHttpOptions& options) {
  using R = VerifyResult<VerifiedWpt>;
  auto reject = [&](std::string reason, std::string_view credentials) {
    AuditTransportFailure(options, reason, credentials);
    return R::Reject(TokenCheck::kMalformed, std::move(reason));
  };
  std::vector<std::string_view> wits = ValuesOf(fields, kWitHeaderName);
  std::vector<std::string_view> auths = ValuesOf(fields, "authorization");
  std::vector<std::string_view> legacy = ValuesOf(fields, kWptLegacyHeaderName);
  if (wits.size() != 1) {
    return reject(
        wits.empty() ? "no Workload-Identity-Token" : "more than one Workload-Identity-Token", "");
  }
  auto wit = ParseWitFieldValue(wits[0]);
  if (!wit.ok()) {
    return reject(wit.error().message(), wits[0]);
  }
  if (auths.size() > 1) {
    return reject("more than one Authorization field", "");
  }
  if (legacy.size() > 1) {
    return reject("more than one Workload-Proof-Token field", "");
  }
  std::optional<std::string_view> wpt;
  std::optional<std::string> bearer;
  if (!auths.empty()) {
    auto parsed = ParseWptAuthorization(auths[0]);
    if (parsed.ok()) {
      wpt = *parsed;
    } else if (!options.accept_s2s07 || legacy.empty()) {
      return reject(parsed.error().message(), auths[0]);
    } else {
      // s2s-07: "Authorization: Bearer <access token>" beside Workload-Proof-Token.
      std::string_view v = auths[0];
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) {
        v.remove_prefix(1);
      }
      if (v.size() < 8 || LowerAscii(v.substr(0, 7)) != "bearer ") {
        return reject("Authorization is neither WPT nor Bearer", auths[0]);
      }
      v.remove_prefix(7);
      while (!v.empty() && v.front() == ' ') {
        v.remove_prefix(1);
      }
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) {
        v.remove_suffix(1);
      }
      bearer = std::string(v);
    }
  }
  if (wpt && !legacy.empty()) {
    return reject("both Authorization: WPT and Workload-Proof-Token", "");
  }
  if (!wpt) {
    if (legacy.empty()) {
      return reject("no Authorization: WPT", "");
    }
    if (!options.accept_s2s07) {
      return reject("Workload-Proof-Token (s2s-protocol-07) not accepted; use Authorization: WPT",
                    legacy[0]);
    }
    auto parsed = ParseWitFieldValue(legacy[0]);  // same JWT grammar
    if (!parsed.ok()) {
      return reject("Workload-Proof-Token is not a compact JWT", legacy[0]);
    }
    wpt = *parsed;
  }
  WptVerifyOptions vo = options.verify;
  if (bearer) {
    vo.access_token = *bearer;
  }
  return VerifyWpt(*wpt, *wit, vo);
}

HttpErrorResponse WptFailureResponse(TokenCheck check, std::string_view reason) {
  HttpErrorResponse r;
  r.status = 401;
  std::string detail = std::string(TokenCheckName(check)) + ": " + std::string(reason);
  r.headers.push_back({"WWW-Authenticate", "WPT error=\"invalid_token\", error_description=\"" +
                                               EscapeReason(detail) + "\""});
  r.headers.push_back({"Content-Type", "application/problem+json"});
  r.body = ProblemJson(401, "Unauthorized", detail);
  return r;
}

HttpErrorResponse HttpSigFailureResponse(TokenCheck check, std::string_view reason) {
  HttpErrorResponse r;
  r.status = 400;
  std::string detail = std::string(TokenCheckName(check)) + ": " + std::string(reason);
  r.headers.push_back({"Content-Type", "application/problem+json"});
  r.body = ProblemJson(400, "Bad Request", detail);
  return r;
}

}  // namespace wimse
