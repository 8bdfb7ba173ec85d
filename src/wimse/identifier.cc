#include "wimse/identifier.h"

namespace wimse {
namespace {

constexpr size_t kMaxIdentifierBytes = 2048;
constexpr size_t kMaxTrustDomainBytes = 255;

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHexUpper(char c) { return IsDigit(c) || (c >= 'A' && c <= 'F'); }
bool IsUnreserved(char c) {
  return IsAlpha(c) || IsDigit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}
bool IsSubDelim(char c) {
  return c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' ||
         c == '+' || c == ',' || c == ';' || c == '=';
}

Error Reject(const std::string& why) { return Error(Layer::kPolicy, "workload identifier " + why); }

bool IsIpv4(std::string_view td) {
  int dots = 0;
  for (char c : td) {
    if (c == '.') {
      ++dots;
    } else if (!IsDigit(c)) {
      return false;
    }
  }
  return dots == 3;
}

int HexVal(char c) { return IsDigit(c) ? c - '0' : c - 'A' + 10; }

Status CheckSegment(std::string_view seg, bool spiffe) {
  if (seg.empty()) {
    return Reject("has an empty path segment");
  }
  if (seg == "." || seg == "..") {
    return Reject("has a dot path segment");
  }
  for (size_t i = 0; i < seg.size(); ++i) {
    char c = seg[i];
    if (spiffe) {
      if (!(IsAlpha(c) || IsDigit(c) || c == '.' || c == '_' || c == '-')) {
        return Reject("has a character not allowed in a SPIFFE path");
      }
      continue;
    }
    if (c == '%') {
      if (i + 2 >= seg.size()) {
        return Reject("has a truncated percent escape");
      }
      if (!IsHexUpper(seg[i + 1]) || !IsHexUpper(seg[i + 2])) {
        return Reject("has a percent escape that is not upper-case hex");
      }
      char decoded = static_cast<char>(HexVal(seg[i + 1]) * 16 + HexVal(seg[i + 2]));
      if (IsUnreserved(decoded)) {
        return Reject("percent-encodes an unreserved character");
      }
      i += 2;
      continue;
    }
    if (!(IsUnreserved(c) || IsSubDelim(c) || c == ':' || c == '@')) {
      return Reject("has a character not allowed in a path");
    }
  }
  return OkStatus();
}

}  // namespace

Result<WorkloadIdentifier> ParseWorkloadIdentifier(std::string_view uri) {
  if (uri.empty()) {
    return Reject("is empty");
  }
  if (uri.size() > kMaxIdentifierBytes) {
    return Reject("is longer than 2048 bytes");
  }
  size_t colon = uri.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Reject("has no scheme");
  }
  std::string_view scheme = uri.substr(0, colon);
  if (!(scheme[0] >= 'a' && scheme[0] <= 'z')) {
    return Reject("scheme must start with a lower-case letter");
  }
  for (char c : scheme) {
    if (!((c >= 'a' && c <= 'z') || IsDigit(c) || c == '+' || c == '-' || c == '.')) {
      return Reject("scheme must be lower-case");
    }
  }
  if (uri.find('?') != std::string_view::npos) {
    return Reject("has a query");
  }
  if (uri.find('#') != std::string_view::npos) {
    return Reject("has a fragment");
  }
  std::string_view rest = uri.substr(colon + 1);
  if (rest.substr(0, 2) != "//") {
    return Reject("has no authority");
  }
  rest.remove_prefix(2);
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (authority.empty()) {
    return Reject("has an empty trust domain");
  }
  if (authority.find('@') != std::string_view::npos) {
    return Reject("has userinfo");
  }
  if (authority.front() == '[') {
    return Reject("has an IP literal trust domain");
  }
  if (authority.find(':') != std::string_view::npos) {
    return Reject("has a port");
  }
  if (authority.size() > kMaxTrustDomainBytes) {
    return Reject("trust domain is longer than 255 bytes");
  }
  for (char c : authority) {
    if (!((c >= 'a' && c <= 'z') || IsDigit(c) || c == '.' || c == '-' || c == '_')) {
      return Reject("trust domain has a character other than [a-z0-9.-_]");
    }
  }
  if (IsIpv4(authority)) {
    return Reject("has an IP address trust domain");
  }
  if (path.empty() || path == "/") {
    return Reject("has no path");
  }
  if (path.back() == '/') {
    return Reject("has a trailing slash");
  }
  bool spiffe = scheme == "spiffe";
  size_t pos = 1;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    std::string_view seg = path.substr(pos, next == std::string_view::npos ? next : next - pos);
    WIMSE_RETURN_IF_ERROR(CheckSegment(seg, spiffe));
    if (next == std::string_view::npos) {
      break;
    }
    pos = next + 1;
  }
  return WorkloadIdentifier{std::string(uri), std::string(scheme), std::string(authority),
                            std::string(path)};
}

}  // namespace wimse
