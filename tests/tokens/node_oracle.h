// Runs tests/tokens/node_oracle.mjs (npm jose + http-message-signatures, installed by ci/setup
// under tests/interop/node_modules) on one case written to a fresh temporary file. Shared by the
// interop and tpm suites. node is /usr/bin/node or the first `node` on PATH.
#ifndef WIMSE_TESTS_TOKENS_NODE_ORACLE_H_
#define WIMSE_TESTS_TOKENS_NODE_ORACLE_H_

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "jose/json.h"
#include "util/file.h"
#include "wimse/httpsig.h"

namespace wimse::testing {

inline constexpr int kNodeOracleMissing = 77;

// Exit status of the oracle: 0 accepted, 1 rejected, 77 packages missing, -1 setup error.
inline int RunNodeOracle(const jose::Json& c) {
  char tmpl[] = "/tmp/wimse-node.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    return -1;
  }
  std::string dir = tmpl;
  if (!WriteFileAtomic(dir + "/case.json", c.dump()).ok()) {
    return -1;
  }
  const char* root = std::getenv("WIMSE_SOURCE_ROOT");
  std::string node = access("/usr/bin/node", X_OK) == 0 ? "/usr/bin/node" : "node";
  std::string cmd = node + " " + std::string(root != nullptr ? root : ".") +
                    "/tests/tokens/node_oracle.mjs " + dir + "/case.json";
  int rc = std::system(cmd.c_str());
  std::filesystem::remove_all(dir);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

inline jose::Json FieldsJson(const std::vector<HttpField>& fields) {
  jose::Json out = jose::Json::array();
  for (const HttpField& f : fields) {
    out.push_back({f.name, f.value});
  }
  return out;
}

// An "httpsig" oracle case for a signed request (and optionally its signed response).
inline jose::Json HttpSigCase(const jose::Json& issuer_jwk, const HttpRequest& req,
                              const HttpResponse* resp, const std::string& aud) {
  jose::Json c = {{"kind", "httpsig"}, {"issuer_jwk", issuer_jwk}, {"aud", aud}};
  c["request"] = {{"method", req.method},
                  {"url", req.target_uri},
                  {"headers", FieldsJson(req.fields)},
                  {"body", req.body.value_or("")}};
  if (resp != nullptr) {
    c["response"] = {{"status", resp->status},
                     {"headers", FieldsJson(resp->fields)},
                     {"body", resp->body.value_or("")}};
  }
  return c;
}

}  // namespace wimse::testing

#endif  // WIMSE_TESTS_TOKENS_NODE_ORACLE_H_
