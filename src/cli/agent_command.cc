// `wimse-tpm agent`: bootstrap (enrol, key, attest), renewal, and delivery (credential
// directory, unix-socket API, --exec environment). See src/agent/agent.h.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "agent/agent.h"
#include "agent/local_api.h"
#include "cli/commands.h"

namespace wimse::cli {

namespace {

struct AgentCliOptions {
  agent::AgentOptions a;
  std::string ek_type = "rsa2048";
  std::string socket;
  bool once = false;
  std::vector<std::string> exec;
  bool exec_flag = false;
};

void RunAgent(GlobalOptions& g, AgentCliOptions& o) {
  o.a.tcti = tpm::ResolveTcti(g.tcti);
  auto ek = tpm::EkTypeFromName(o.ek_type);
  if (!ek.ok()) return Fail(g, "agent", ek.error());
  o.a.ek_type = *ek;
  agent::Agent ag(o.a);
  if (o.once) {
    auto t0 = std::chrono::steady_clock::now();
    Status s = ag.Bootstrap();
    if (!s.ok()) return Fail(g, "agent", s.error());
    auto ms =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count() /
        1000.0;
    auto c = ag.Current();
    std::printf("%s %.1f ms\n", c.ok() ? c->identifier.c_str() : "?", ms);
    return;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::atomic<bool> stop{false};
  std::unique_ptr<agent::LocalApiServer> api;
  if (!o.socket.empty()) {
    api = std::make_unique<agent::LocalApiServer>(&ag, o.socket);
    if (auto s = api->Start(); !s.ok()) return Fail(g, "agent", s.error());
  }
  std::thread loop([&] { ag.Run(stop); });
  pid_t child = -1;
  int child_status = 0;
  if (o.exec_flag && o.exec.empty()) {
    return Fail(g, "agent", Error(Layer::kUsage, "--exec needs a command after --"));
  }
  if (!o.exec.empty()) {
    // Wait for the first credentials, then start the child with them in its environment.
    while (!stop.load() && !ag.Current().ok()) {
      timespec ts{0, 100 * 1000 * 1000};
      siginfo_t info;
      int sig = sigtimedwait(&set, &info, &ts);
      if (sig == SIGTERM || sig == SIGINT) stop = true;
    }
    if (!stop.load()) {
      auto c = ag.Current();
      child = fork();
      if (child == 0) {
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, nullptr);
        const std::string& d = o.a.cred_dir;
        setenv("WIMSE_IDENTIFIER", c->identifier.c_str(), 1);
        setenv("WIMSE_WIT", c->wit.c_str(), 1);
        setenv("WIMSE_CRED_DIR", d.c_str(), 1);
        setenv("WIMSE_WIT_FILE", (d + "/wit.jwt").c_str(), 1);
        setenv("WIMSE_CERT_FILE", (d + "/cert.pem").c_str(), 1);
        setenv("WIMSE_KEY_FILE", (d + "/key.pem").c_str(), 1);
        setenv("WIMSE_BUNDLE_FILE", (d + "/bundle.pem").c_str(), 1);
        setenv("WIMSE_TPM_TCTI", o.a.tcti.c_str(), 1);
        if (!o.socket.empty()) setenv("WIMSE_AGENT_SOCKET", o.socket.c_str(), 1);
        std::vector<char*> argv;
        for (auto& s : o.exec) argv.push_back(s.data());
        argv.push_back(nullptr);
        execvp(argv[0], argv.data());
        std::fprintf(stderr, "wimse-tpm: agent: cannot run %s\n", argv[0]);
        _exit(127);
      }
    }
  }
  while (!stop.load()) {
    siginfo_t info;
    timespec ts{0, 200 * 1000 * 1000};
    int sig = sigtimedwait(&set, &info, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
      stop = true;
      if (child > 0) kill(child, SIGTERM);
    }
    if (child > 0 && waitpid(child, &child_status, WNOHANG) == child) {
      stop = true;
      child = -1;
      g.exit_code = WIFEXITED(child_status) ? WEXITSTATUS(child_status) : 128;
    }
  }
  if (child > 0) waitpid(child, &child_status, 0);
  loop.join();
  api.reset();
}

}  // namespace

void RegisterAgentCommand(CLI::App& app, GlobalOptions& g) {
  auto o = std::make_shared<AgentCliOptions>();
  CLI::App* c = app.add_subcommand("agent", "enrol, attest, renew and deliver credentials");
  c->add_option("--service", o->a.service_url, "credential service URL (https://host:port)")
      ->required();
  c->add_option("--service-ca", o->a.service_ca, "PEM bundle authenticating the service")
      ->required();
  c->add_option("--identity", o->a.identity, "host identity to enrol as")->required();
  c->add_option("--label", o->a.label, "workload label to ask the service for");
  c->add_option("--state-dir", o->a.state_dir, "agent state (enrolment, key file)")->required();
  c->add_option("--cred-dir", o->a.cred_dir, "credential directory to deliver into")->required();
  c->add_option("--socket", o->socket, "unix socket for the local API");
  c->add_option("--ek-type", o->ek_type, "rsa2048 | ecc-p256 | ecc-p384");
  c->add_option("--tpm-lock", o->a.tpm_lock_path, "lock file serialising TPM use across agents");
  c->add_option("--renew-fraction", o->a.renew_fraction, "renew at this fraction of the lifetime");
  c->add_flag("--once", o->once, "bootstrap once, print the identifier and the time, exit");
  c->add_flag("--exec", o->exec_flag,
              "run the command given after -- with the credentials in its environment");
  c->add_option("command", o->exec, "the command for --exec (after --)");
  c->callback([&g, o] { RunAgent(g, *o); });
}

}  // namespace wimse::cli
