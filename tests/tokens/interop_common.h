// Runs tests/tokens/verify_with_jwcrypto.py (python3-jwcrypto under /usr/bin/python3) on a WIT
// and WPT written to a fresh temporary directory. Shared by the interop and tpm suites.
#ifndef WIMSE_TESTS_TOKENS_INTEROP_COMMON_H_
#define WIMSE_TESTS_TOKENS_INTEROP_COMMON_H_

#include <stdlib.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "jose/json.h"
#include "util/file.h"

namespace wimse::testing {

// Returns the script's exit status (0 = jwcrypto accepted both tokens), or -1 on setup errors.
inline int RunJwcrypto(const std::string& wit, const std::string& wpt, const jose::Json& issuer_jwk,
                       const std::string& aud, int64_t now, const std::string& thumbprint) {
  char tmpl[] = "/tmp/wimse-jwcrypto.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    return -1;
  }
  std::string dir = tmpl;
  jose::Json params = {{"aud", aud}, {"now", now}, {"thumbprint", thumbprint}};
  if (!WriteFileAtomic(dir + "/wit", wit).ok() || !WriteFileAtomic(dir + "/wpt", wpt).ok() ||
      !WriteFileAtomic(dir + "/issuer.jwk", issuer_jwk.dump()).ok() ||
      !WriteFileAtomic(dir + "/params.json", params.dump()).ok()) {
    return -1;
  }
  const char* root = std::getenv("WIMSE_SOURCE_ROOT");
  std::string cmd = "/usr/bin/python3 " + std::string(root != nullptr ? root : ".") +
                    "/tests/tokens/verify_with_jwcrypto.py " + dir;
  int rc = std::system(cmd.c_str());
  std::filesystem::remove_all(dir);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace wimse::testing

#endif  // WIMSE_TESTS_TOKENS_INTEROP_COMMON_H_
