// `wimse-tpm audit verify --log FILE`: checks the hash chain of an audit log (and its head
// file) and names the first bad record.
#include <cstdio>

#include "audit/audit_log.h"
#include "cli/commands.h"

namespace wimse::cli {

void RegisterAuditCommands(CLI::App& app, GlobalOptions& g) {
  CLI::App* a = app.add_subcommand("audit", "audit log tools");
  a->require_subcommand(1);
  auto log = std::make_shared<std::string>();
  CLI::App* v = a->add_subcommand("verify", "verify the hash chain of an audit log");
  v->add_option("--log", *log, "the audit log (JSON lines)")->required();
  auto no_head = std::make_shared<bool>(false);
  v->add_flag("--allow-missing-head", *no_head,
              "check the chain even without LOG.head (truncation at the end goes unnoticed)");
  v->callback([&g, log, no_head] {
    auto r = audit::VerifyAuditLog(*log, !*no_head);
    if (!r.ok()) return Fail(g, "audit verify", r.error());
    if (r->ok) {
      std::printf("ok: %llu records, chain intact, last hash %s\n",
                  static_cast<unsigned long long>(r->records), r->last_hash.c_str());
      return;
    }
    std::printf("bad: line %llu: %s\n", static_cast<unsigned long long>(r->first_bad_line),
                r->reason.c_str());
    g.exit_code = 1;
  });
}

}  // namespace wimse::cli
