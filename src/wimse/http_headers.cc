#include "wimse/http_headers.h"

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
