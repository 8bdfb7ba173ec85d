// Workload Identifiers (draft-ietf-wimse-identifier-03 §4; SPIFFE-ID.md for spiffe:).
//
// Rules enforced for every scheme: an absolute URI, at most 2048 bytes, lower-case scheme,
// a non-empty authority (the trust domain) with no userinfo, port or IP literal, no query and no
// fragment. OUR CHOICES, stricter than the draft so every identifier has one spelling: the trust
// domain is lower-case [a-z0-9.-_] with no percent-encoding, at most 255 bytes, and not an IPv4
// address; the path is non-empty (a workload, not a bare trust domain), with no empty, "." or
// ".." segments and no trailing "/". For spiffe: path segments are [A-Za-z0-9._-]; for other
// schemes (wimse:, ...) they are RFC 3986 pchar with upper-case percent escapes that do not
// encode unreserved characters.
#ifndef WIMSE_WIMSE_IDENTIFIER_H_
#define WIMSE_WIMSE_IDENTIFIER_H_

#include <string>
#include <string_view>

#include "util/result.h"

namespace wimse {

// A validated Workload Identifier, split into its parts.
struct WorkloadIdentifier {
  std::string uri;           // the full identifier, exactly as given
  std::string scheme;        // "spiffe", "wimse", ...
  std::string trust_domain;  // the authority
  std::string path;          // starts with "/"
};

// Validates `uri` against the rules above. Errors are Layer::kPolicy with the rule broken,
// e.g. "workload identifier has a port". Pure and thread-safe.
Result<WorkloadIdentifier> ParseWorkloadIdentifier(std::string_view uri);

}  // namespace wimse

#endif  // WIMSE_WIMSE_IDENTIFIER_H_
