// Test-only: runs a shell command and returns its standard output (trailing newlines removed),
// for tests that drive other tools (ci/swtpm, tpm2_eventlog). Empty when the command cannot be
// started; callers that need the exit status append "; echo rc=$?" or check the output.
#ifndef WIMSE_TESTS_SUPPORT_SHELL_H_
#define WIMSE_TESTS_SUPPORT_SHELL_H_

#include <cstdio>
#include <string>

namespace wimse::testing {

inline std::string Shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    return out;
  }
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
    out.append(buf, n);
  }
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) {
    out.pop_back();
  }
  return out;
}

}  // namespace wimse::testing

#endif  // WIMSE_TESTS_SUPPORT_SHELL_H_
