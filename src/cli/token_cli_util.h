// Helpers shared by the token command groups (token_commands.cc, httpsig_commands.cc):
// reading token files and loading WIT trust anchors from the command line.
#ifndef WIMSE_CLI_TOKEN_CLI_UTIL_H_
#define WIMSE_CLI_TOKEN_CLI_UTIL_H_

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "util/result.h"
#include "wimse/trust_anchors.h"

namespace wimse::cli {

// Largest token file accepted.
inline constexpr size_t kMaxTokenFile = 16 * 1024;

// Reads a token file, dropping surrounding whitespace (files often end in a newline).
Result<std::string> ReadToken(const std::string& path);

// Trust anchors from --issuer-pub (PEM SPKI, pinned, optionally bound to --trust-domain and
// --issuer-kid) and/or --jwks (requires --trust-domain); --iss adds an issuer allowlist of one.
struct AnchorOptions {
  std::string issuer_pub;
  std::string jwks;
  std::string trust_domain;
  std::string issuer_kid;
  std::string iss;
};

// Adds --issuer-pub, --jwks, --trust-domain, --issuer-kid, --iss to `cmd`.
void AddAnchorOptions(CLI::App* cmd, AnchorOptions& a);
// Builds the trust anchors; errors name the file or the missing option.
Result<std::unique_ptr<TrustAnchors>> LoadAnchors(const AnchorOptions& a);
// Writes `text` atomically (mode 0600: it carries tokens) to `out`, or to stdout when `out` is
// empty; a write failure is reported through Fail(g, what, ...).
void WriteOrPrint(GlobalOptions& g, const std::string& what, const std::string& out,
                  const std::string& text);

}  // namespace wimse::cli

#endif  // WIMSE_CLI_TOKEN_CLI_UTIL_H_
