// Where a key's auth value comes from: a file, an environment variable, or the terminal with
// echo off. Never a command-line argument value (it would show in `ps` and shell history).
#ifndef WIMSE_KEYFILE_AUTH_SOURCE_H_
#define WIMSE_KEYFILE_AUTH_SOURCE_H_

#include <cstddef>
#include <string>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse {

struct AuthSource {
  std::string file;     // --auth-file PATH: the file's bytes, one trailing "\n" cut (CR LF refused)
  std::string env;      // --auth-env NAME: the variable's value
  bool prompt = false;  // --auth-prompt: one line read from /dev/tty with echo off
  bool confirm = false;  // with prompt: ask twice and require the same value (a new key's)
  // --empty-auth (CLI only, not a source): the key has no auth value although its file says
  // emptyAuth FALSE, as tpm2_encodeobject 5.4 writes for every key (tpm2-tools #3458).
  bool empty = false;
  // True when any source is set.
  bool any() const { return !file.empty() || !env.empty() || prompt; }
};

// The longest auth value a key may have: the TPM accepts at most the digest size of the key's
// nameAlg (TPM 2.0 Part 1, 19.6.4), SHA-256 for every key we make.
inline constexpr size_t kMaxAuthValueSize = 32;

// The one check of an auth value's length, shared by every path that takes one (the CLI's
// --auth-* options, the provider's pass-phrase callback through WorkloadKey::SetAuth): longer
// than kMaxAuthValueSize is a usage error "the auth value is N bytes; the TPM accepts at most
// 32", raised before any TPM command (a value the TPM cannot accept would only cost a
// dictionary-attack strike). The error never contains the value.
Status CheckAuthValueSize(size_t size);

// Reads the auth value from the one source set in `src` (more than one is a usage error).
// `what` names the key in the prompt. An empty value is an error (use no source for no auth).
// The value is at most 32 bytes (a SHA-256 nameAlg's digest size, the TPM's limit). Errors
// never contain the value.
Result<SecretBytes> ReadAuthValue(const AuthSource& src, const std::string& what);

}  // namespace wimse

#endif  // WIMSE_KEYFILE_AUTH_SOURCE_H_
