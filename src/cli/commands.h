// The wimse-tpm command: each group of subcommands registers itself on the CLI11 app.
//
// Conventions for every subcommand: failures print exactly one line "wimse-tpm: <what>: <why>"
// to stderr and set a non-zero exit code (1: operation failed or input rejected; 2: usage);
// nothing is written on failure (files are written atomically, at the end). Secrets (auth
// values, private blobs, bearer tokens) are never printed; log SHA-256 hashes instead.
#ifndef WIMSE_CLI_COMMANDS_H_
#define WIMSE_CLI_COMMANDS_H_

#include <CLI/CLI.hpp>

#include <string>

#include "util/result.h"

namespace wimse::cli {

struct GlobalOptions {
  std::string tcti;  // --tcti; resolve with tpm::ResolveTcti()
  int exit_code = 0;
};

// Prints "wimse-tpm: <context>: <error>" to stderr and sets exit code 1.
void Fail(GlobalOptions& g, const std::string& context, const Error& error);

void RegisterKeyCommands(CLI::App& app, GlobalOptions& g);       // keygen, pubkey, sign
void RegisterTokenCommands(CLI::App& app, GlobalOptions& g);     // wit, wpt
void RegisterHttpSigCommands(CLI::App& app, GlobalOptions& g);   // httpsig
void RegisterAttestCommands(CLI::App& app, GlobalOptions& g);    // attest, appraise
void RegisterDemoCommand(CLI::App& app, GlobalOptions& g);       // demo
void RegisterAuditCommands(CLI::App& app, GlobalOptions& g);     // audit verify
void RegisterServeCommand(CLI::App& app, GlobalOptions& g);      // serve (credential service)
void RegisterAgentCommand(CLI::App& app, GlobalOptions& g);      // agent
void RegisterWorkloadCommands(CLI::App& app, GlobalOptions& g);  // workload serve|call

}  // namespace wimse::cli

#endif  // WIMSE_CLI_COMMANDS_H_
