// wimse-tpm: workload identity with a TPM-held key (keys, tokens, evidence, demo).
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli/commands.h"

namespace wimse::cli {

void Fail(GlobalOptions& g, const std::string& context, const Error& error) {
  std::fprintf(stderr, "wimse-tpm: %s: %s\n", context.c_str(), error.ToString().c_str());
  if (g.exit_code == 0) g.exit_code = 1;
}

}  // namespace wimse::cli

int main(int argc, char** argv) {
  // tpm2-tss logs WARNING/ERROR lines to stderr on every failed command; our errors already
  // carry the decoded response code, so keep the one-line-error promise unless the user asks.
  setenv("TSS2_LOG", "all+none", /*overwrite=*/0);

  CLI::App app{
      "wimse-tpm: a workload identity whose private key never leaves the TPM.\n"
      "TPM selection: --tcti, else $WIMSE_TPM_TCTI, else device:/dev/tpmrm0.",
      "wimse-tpm"};
  app.set_version_flag("--version", std::string("wimse-tpm ") + WIMSE_TPM_VERSION);
  app.require_subcommand(1);
  // Subcommands (made after this, which inherit it) pass options they do not know to their
  // parent: `wimse-tpm sign --key k --tcti S` works like `wimse-tpm --tcti S sign --key k`.
  app.fallthrough();
  wimse::cli::GlobalOptions g;
  app.add_option("--tcti", g.tcti,
                 "TPM transport, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321")
      ->envname("WIMSE_TPM_TCTI");

  wimse::cli::RegisterKeyCommands(app, g);
#ifdef WIMSE_HAVE_TOKEN_COMMANDS
  wimse::cli::RegisterTokenCommands(app, g);
#endif
#ifdef WIMSE_HAVE_HTTPSIG_COMMANDS
  wimse::cli::RegisterHttpSigCommands(app, g);
#endif
#ifdef WIMSE_HAVE_ATTEST_COMMANDS
  wimse::cli::RegisterAttestCommands(app, g);
#endif
#ifdef WIMSE_HAVE_DEMO_COMMAND
  wimse::cli::RegisterDemoCommand(app, g);
#endif
#ifdef WIMSE_HAVE_AUDIT_COMMANDS
  wimse::cli::RegisterAuditCommands(app, g);
#endif
#ifdef WIMSE_HAVE_SERVE_COMMAND
  wimse::cli::RegisterServeCommand(app, g);
#endif
#ifdef WIMSE_HAVE_AGENT_COMMAND
  wimse::cli::RegisterAgentCommand(app, g);
#endif
#ifdef WIMSE_HAVE_WORKLOAD_COMMANDS
  wimse::cli::RegisterWorkloadCommands(app, g);
#endif

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return g.exit_code;
}
