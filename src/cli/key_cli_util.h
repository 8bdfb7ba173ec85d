// Helpers shared by every subcommand that signs with a TPM key (key_commands.cc, wpt sign,
// httpsig sign, attest): the auth-value options and opening --key with its auth value.
#ifndef WIMSE_CLI_KEY_CLI_UTIL_H_
#define WIMSE_CLI_KEY_CLI_UTIL_H_

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "cli/commands.h"
#include "keyfile/auth_source.h"
#include "tpm/workload_key.h"
#include "util/result.h"

namespace wimse::cli {

// Adds --auth-file, --auth-env and --auth-prompt to `cmd`, filling `src` (which must outlive
// the parse). Never an option that takes the value itself (it would show in `ps` and shell
// history).
void AddAuthOptions(CLI::App* cmd, AuthSource& src);

// Opens `ref` (a TSS2 key file or handle:0x81...) on the TPM of `g` (no TPM I/O for a file)
// and attaches the auth value from `auth` when one is given (read once; errors never contain
// it). A key whose file demands an auth value that was not given fails when it signs, before
// any TPM command (WorkloadKey::SignDigestRsa).
Result<std::shared_ptr<tpm::WorkloadKey>> OpenCliKey(GlobalOptions& g, const std::string& ref,
                                                     const AuthSource& auth);

}  // namespace wimse::cli

#endif  // WIMSE_CLI_KEY_CLI_UTIL_H_
