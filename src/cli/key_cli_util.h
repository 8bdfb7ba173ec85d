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
// the parse), and, for commands that use an existing key, --empty-auth. Never an option that
// takes the value itself (it would show in `ps` and shell history).
void AddAuthOptions(CLI::App* cmd, AuthSource& src, bool existing_key = true);

// Opens `ref` (a TSS2 key file or handle:0x81...) on the TPM of `g` (no TPM I/O for a file)
// and attaches the auth value from `auth` when one is given (read once; errors never contain
// it). A key file with emptyAuth FALSE and no auth option is a usage error unless
// `auth.empty` (--empty-auth): wimse-tpm and tpm2-openssl write FALSE for keys with an auth
// value, tpm2_encodeobject 5.4 for every key, and a guess would cost a dictionary-attack
// strike. A file without the field, and no auth value, fails when it signs, before any TPM
// command (WorkloadKey::SignDigestRsa).
Result<std::shared_ptr<tpm::WorkloadKey>> OpenCliKey(GlobalOptions& g, const std::string& ref,
                                                     const AuthSource& auth);

}  // namespace wimse::cli

#endif  // WIMSE_CLI_KEY_CLI_UTIL_H_
