// The wimse-tpm agent (WIMSE architecture 3.3.1): enrols the host's AK once, makes the workload
// key in the TPM, attests it to the credential service, receives a WIT and an X.509 workload
// certificate, renews them at about two thirds of their lifetime (with jitter; exponential
// backoff on failure, serving the last valid credentials meanwhile), and delivers them:
//   - a credential directory switched atomically as a whole: wit.jwt, cert.pem (certificate
//     then chain), bundle.pem, jwks.json, key.pem (the TSS2 key file: nothing secret),
//     identity.json live in versions/NNNNNNNNNN/, `current` is a symlink to the newest one
//     (swapped with rename(2)), and the top-level names are symlinks through `current`;
//   - a local API on a unix socket (local_api.h): current WIT and certificate, WPTs for an
//     audience signed in the TPM (the workload never touches the key);
//   - environment variables for a child process (wimse-tpm agent --exec).
//
// TPM use: every TPM operation runs under an exclusive flock on a lock file shared by all agents
// of the TPM (a direct swtpm TCTI has 3 object slots for all processes together) and the key
// cache is flushed before the lock is released, so an idle agent holds no TPM object.
#ifndef WIMSE_AGENT_AGENT_H_
#define WIMSE_AGENT_AGENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "tpm/context.h"
#include "tpm/ek.h"
#include "tpm/workload_key.h"
#include "util/result.h"

namespace wimse::agent {

struct AgentOptions {
  std::string tcti;         // resolved TCTI
  std::string service_url;  // https://host:port
  std::string service_ca;   // PEM bundle that authenticates the service (bootstrap trust)
  std::string identity;     // host identity to enrol as
  std::string label;        // workload label to ask for ("" = the policy's default)
  std::string state_dir;    // enrolment record and the workload key file (0700)
  std::string cred_dir;     // delivered credentials (0755 dir; files 0644, key.pem 0600)
  tpm::EkType ek_type = tpm::EkType::kRsa2048;
  double renew_fraction = 2.0 / 3.0;  // renew at this fraction of the lifetime
  double jitter = 0.1;                // +- this fraction of the renewal delay
  int64_t backoff_initial_ms = 500;
  int64_t backoff_max_ms = 30000;
  std::string tpm_lock_path;  // "" = /tmp/wimse-tpm-<hash of the TCTI>.lock
  // Log sink (one line, no newline); default stderr with a timestamp. Never gets secrets.
  std::function<void(const std::string&)> log;
};

// The credentials currently held (tokens are bearer-like: never log them).
struct Credentials {
  std::string identifier;
  std::string wit;
  std::string certificate_pem;  // leaf
  std::string bundle_pem;       // trust domain CA(s)
  std::string ear;
  std::string jwks;  // the trust domain's WIT issuer keys
  std::string serial;
  int64_t expires_at = 0;  // certificate
  int64_t wit_expires_at = 0;
  int64_t issued_at = 0;  // agent clock
};

class Agent {
 public:
  explicit Agent(AgentOptions options);
  ~Agent();

  // Enrols (if not yet: state_dir/enrolment.json), creates the key (if not yet), attests and
  // writes the credential directory. TPM: EK+AK (enrolment), TPM2_Create (key), quote+certify,
  // TPM2_Sign (CSR); all under the TPM lock, cache flushed after.
  Status Bootstrap();
  // One renewal: a fresh nonce, evidence and CSR for the same key; updates the credentials.
  Status Renew();
  // Bootstrap, then renew until `stop` is set. Returns when stopped.
  void Run(const std::atomic<bool>& stop);

  // The current credentials, or an error when none are valid (never issued, or expired).
  // Thread-safe.
  Result<Credentials> Current() const;
  // Signs a WPT for `audience` with the workload key (TPM2_Sign under the TPM lock).
  // Thread-safe.
  Result<std::string> SignWpt(const std::string& audience, int64_t ttl_seconds);

  std::string key_path() const;
  const AgentOptions& options() const { return options_; }
  // Seconds until the next renewal attempt, as Run() scheduled it (for the status API).
  int64_t next_attempt_at() const { return next_attempt_at_.load(); }
  bool service_reachable() const { return service_ok_.load(); }

 private:
  Status Enrol();
  Status EnsureKey();
  Status AttestAndStore();
  Status WriteCredentialDir(const Credentials& c);
  void Log(const std::string& line) const;
  // Runs `fn` under the inter-process TPM lock, flushing the key cache afterwards.
  template <typename F>
  auto WithTpm(F&& fn) -> decltype(fn());

  AgentOptions options_;
  std::shared_ptr<tpm::TpmContext> ctx_;
  std::shared_ptr<tpm::WorkloadKey> key_;
  mutable std::mutex mu_;
  std::optional<Credentials> current_;
  std::atomic<int64_t> next_attempt_at_{0};
  std::atomic<bool> service_ok_{false};
  int lock_fd_ = -1;
  std::mutex tpm_mu_;
};

// The directory holding one consistent credential set of the agent's credential directory
// `cred_dir`: the target of `cred_dir/current`, resolved once (so later reads of several files
// come from the same renewal even if the agent switches meanwhile), or `cred_dir` itself for
// the flat layout of older agents. No I/O besides one readlink(2).
std::string ResolveCredentialDir(const std::string& cred_dir);

// Parses "https://host:port" into host and port (default 443). Errors are kUsage.
Result<std::pair<std::string, int>> ParseServiceUrl(const std::string& url);

}  // namespace wimse::agent

#endif  // WIMSE_AGENT_AGENT_H_
