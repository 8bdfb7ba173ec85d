// The agent's local API on a unix socket (mode 0600: the agent's user only; deploy workloads
// under that user or a group and chmod accordingly). One JSON request line per connection, one
// JSON answer line:
//   {"op": "credentials"}              -> {"identifier", "wit", "certificate", "bundle",
//                                          "expires_at", "wit_expires_at"}
//   {"op": "wpt", "aud": URL, "ttl": N} -> {"wpt"}       (signed in the TPM by the agent)
//   {"op": "status"}                   -> {"identifier", "expires_at", "service_reachable",
//                                          "next_attempt_at"}
//   errors                             -> {"error": "<reason>"}
#ifndef WIMSE_AGENT_LOCAL_API_H_
#define WIMSE_AGENT_LOCAL_API_H_

#include <atomic>
#include <string>
#include <thread>

#include "agent/agent.h"
#include "jose/json.h"
#include "util/result.h"

namespace wimse::agent {

// Serves the API for `agent` (borrowed) on `path` in a background thread until destroyed.
class LocalApiServer {
 public:
  LocalApiServer(Agent* agent, std::string path) : agent_(agent), path_(std::move(path)) {}
  ~LocalApiServer();
  // Binds (replacing a stale socket file) and starts the thread.
  Status Start();

 private:
  void Serve();
  jose::Json Handle(const std::string& line);
  Agent* agent_;
  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Client side: sends `request` to the agent at `path` and returns its answer. An answer with
// "error" is returned as a kPolicy error.
Result<jose::Json> CallLocalApi(const std::string& path, const jose::Json& request);

}  // namespace wimse::agent

#endif  // WIMSE_AGENT_LOCAL_API_H_
