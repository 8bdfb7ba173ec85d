#include "agent/agent.h"

#include <dirent.h>
#include <fcntl.h>
#include <httplib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <thread>

#include "attest/enrollment.h"
#include "attest/evidence.h"
#include "attest/service/csr.h"
#include "audit/audit_log.h"
#include "jose/base64url.h"
#include "jose/json.h"
#include "util/file.h"
#include "wimse/wpt.h"

namespace wimse::agent {

namespace {

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

std::string Short(const std::string& hex) { return hex.substr(0, 12); }

struct HttpAnswer {
  int status = 0;
  jose::Json body;
};

// One JSON request to the service over HTTPS, authenticating the service with the CA bundle.
Result<HttpAnswer> Call(const AgentOptions& o, const char* method, const std::string& path,
                        const std::string& body) {
  WIMSE_ASSIGN_OR_RETURN(auto hp, ParseServiceUrl(o.service_url));
  httplib::SSLClient cli(hp.first, hp.second);
  cli.set_ca_cert_path(o.service_ca.c_str());
  cli.enable_server_certificate_verification(true);
  cli.set_connection_timeout(3, 0);
  cli.set_read_timeout(30, 0);
  cli.set_write_timeout(10, 0);
  httplib::Result res = std::string(method) == "GET"
                            ? cli.Get(path.c_str())
                            : cli.Post(path.c_str(), body, "application/json");
  if (!res) {
    return Error(Layer::kIo, "credential service " + o.service_url + " unreachable (" +
                                 httplib::to_string(res.error()) + ")");
  }
  HttpAnswer a;
  a.status = res->status;
  auto j = jose::ParseJsonObject(res->body, {1 << 20, 8});
  if (!j.ok()) {
    return Error(Layer::kParse, "credential service answered " + std::to_string(res->status) +
                                    " with a body that is not JSON");
  }
  a.body = std::move(*j);
  return a;
}

Error Refused(const std::string& what, const HttpAnswer& a) {
  std::string code = a.body.value("error", std::string("error"));
  std::string reason = a.body.value("reason", std::string());
  return Error(a.status >= 500 ? Layer::kIo : Layer::kPolicy,
               what + " refused (" + std::to_string(a.status) + " " + code + "): " + reason);
}

}  // namespace

Result<std::pair<std::string, int>> ParseServiceUrl(const std::string& url) {
  const std::string prefix = "https://";
  if (url.rfind(prefix, 0) != 0) {
    return Error(Layer::kUsage, "service URL must start with https://: " + url);
  }
  std::string rest = url.substr(prefix.size());
  if (size_t slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  int port = 443;
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos) {
    port = std::atoi(rest.substr(colon + 1).c_str());
    rest.resize(colon);
  }
  if (rest.empty() || port <= 0 || port > 65535) {
    return Error(Layer::kUsage, "bad service URL: " + url);
  }
  return std::make_pair(rest, port);
}

Agent::Agent(AgentOptions options) : options_(std::move(options)) {
  ctx_ = tpm::SharedContext(options_.tcti);
  if (options_.tpm_lock_path.empty()) {
    options_.tpm_lock_path =
        "/tmp/wimse-tpm-" + audit::TokenSha256Hex(options_.tcti).substr(0, 16) + ".lock";
  }
}

Agent::~Agent() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void Agent::Log(const std::string& line) const {
  if (options_.log) {
    options_.log(line);
    return;
  }
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[32];
  std::strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::fprintf(stderr, "%s wimse-agent[%s]: %s\n", ts, options_.identity.c_str(), line.c_str());
  std::fflush(stderr);
}

template <typename F>
auto Agent::WithTpm(F&& fn) -> decltype(fn()) {
  std::lock_guard<std::mutex> guard(tpm_mu_);
  if (lock_fd_ < 0) {
    lock_fd_ = ::open(options_.tpm_lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lock_fd_ < 0) return Error(Layer::kIo, "cannot open TPM lock " + options_.tpm_lock_path);
  }
  while (::flock(lock_fd_, LOCK_EX) != 0) {
    if (errno != EINTR) return Error(Layer::kIo, "cannot lock " + options_.tpm_lock_path);
  }
  auto result = fn();
  ctx_->FlushCache();
  ::flock(lock_fd_, LOCK_UN);
  return result;
}

std::string Agent::key_path() const { return options_.state_dir + "/workload.key.pem"; }

Status Agent::Enrol() {
  std::string marker = options_.state_dir + "/enrolment.json";
  if (::access(marker.c_str(), R_OK) == 0) return OkStatus();
  Log("enrolling " + options_.identity + " (EK " + std::string(tpm::EkTypeName(options_.ek_type)) +
      ", AK under the endorsement hierarchy)");
  WIMSE_ASSIGN_OR_RETURN(attest::EnrollmentRequest req, WithTpm([&] {
                           return attest::ProduceEnrollmentRequest(*ctx_, options_.ek_type,
                                                                   options_.identity);
                         }));
  WIMSE_ASSIGN_OR_RETURN(HttpAnswer start, Call(options_, "POST", "/v1/enrol/start",
                                                attest::EncodeEnrollmentRequest(req)));
  if (start.status != 200) return Refused("enrolment start", start);
  if (!start.body.contains("challenge") || !start.body["enrolment_id"].is_string()) {
    return Error(Layer::kParse, "enrolment start: malformed answer");
  }
  WIMSE_ASSIGN_OR_RETURN(
      attest::EnrollmentChallenge challenge,
      attest::DecodeEnrollmentChallenge(jose::SerializeJson(start.body["challenge"])));
  WIMSE_ASSIGN_OR_RETURN(SecretBytes answer, WithTpm([&] {
                           return attest::ActivateEnrollmentChallenge(*ctx_, options_.ek_type,
                                                                      challenge);
                         }));
  jose::Json finish_req = {{"enrolment_id", start.body["enrolment_id"]},
                           {"credential", jose::Base64UrlEncode(answer.view())}};
  WIMSE_ASSIGN_OR_RETURN(HttpAnswer finish, Call(options_, "POST", "/v1/enrol/finish",
                                                 jose::SerializeJson(finish_req)));
  if (finish.status != 200) return Refused("enrolment finish", finish);
  std::string ak = finish.body.value("ak_name", std::string());
  WIMSE_RETURN_IF_ERROR(WriteFileAtomic(
      marker, jose::SerializeJson({{"identity", options_.identity}, {"ak_name", ak}}) + "\n",
      0600));
  Log("enrolled: AK " + Short(ak) + "... bound to the EK by ActivateCredential" +
      (finish.body.value("ek_certified", false) ? " (EK certificate verified)" : " (no EK chain)"));
  return OkStatus();
}

Status Agent::EnsureKey() {
  if (key_) return OkStatus();
  if (::access(key_path().c_str(), R_OK) == 0) {
    WIMSE_ASSIGN_OR_RETURN(key_, tpm::WorkloadKey::Open(ctx_, key_path()));
    return OkStatus();
  }
  auto t0 = std::chrono::steady_clock::now();
  WIMSE_ASSIGN_OR_RETURN(key_,
                         WithTpm([&] { return tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256); }));
  WIMSE_RETURN_IF_ERROR(key_->Save(key_path()));
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  Log("workload key made in the TPM (ECC P-256, fixedTPM|fixedParent, sign only), name " +
      Short(HexEncode(key_->name())) + "... in " + std::to_string(ms) + " ms");
  return OkStatus();
}

Status Agent::AttestAndStore() {
  using SteadyClock = std::chrono::steady_clock;
  auto ms_since = [](SteadyClock::time_point t) {
    return std::to_string(
        std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t).count());
  };
  auto t_challenge = SteadyClock::now();
  WIMSE_ASSIGN_OR_RETURN(HttpAnswer ch,
                         Call(options_, "POST", "/v1/challenge",
                              jose::SerializeJson({{"identity", options_.identity}})));
  if (ch.status != 200) return Refused("challenge", ch);
  WIMSE_ASSIGN_OR_RETURN(Bytes nonce, HexDecode(ch.body.value("nonce", std::string())));
  std::string evidence, csr;
  std::string timing = "challenge " + ms_since(t_challenge) + " ms";
  auto t_tpm = SteadyClock::now();
  WIMSE_RETURN_IF_ERROR(WithTpm([&]() -> Status {
    WIMSE_ASSIGN_OR_RETURN(evidence, attest::ProduceEvidenceCmw(*ctx_, *key_, nonce));
    tpm::TpmSigner signer(key_);
    WIMSE_ASSIGN_OR_RETURN(
        csr,
        service::MakeCsrPem(signer, options_.label.empty() ? options_.identity : options_.label));
    return OkStatus();
  }));
  timing += ", TPM lock + quote/certify + CSR " + ms_since(t_tpm) + " ms";
  auto t_attest = SteadyClock::now();
  jose::Json req = {{"identity", options_.identity},
                    {"label", options_.label},
                    {"nonce", HexEncode(nonce)},
                    {"evidence", evidence},
                    {"csr", csr}};
  WIMSE_ASSIGN_OR_RETURN(HttpAnswer at,
                         Call(options_, "POST", "/v1/attest", jose::SerializeJson(req)));
  if (at.status != 200) return Refused("attestation", at);
  Credentials c;
  c.identifier = at.body.value("identifier", std::string());
  c.wit = at.body.value("wit", std::string());
  c.certificate_pem = at.body.value("certificate", std::string());
  c.bundle_pem = at.body.value("bundle", std::string());
  c.ear = at.body.value("ear", std::string());
  c.serial = at.body.value("serial", std::string());
  c.expires_at = at.body.value("expires_at", int64_t{0});
  c.wit_expires_at = at.body.value("wit_expires_at", int64_t{0});
  c.issued_at = Now();
  if (c.wit.empty() || c.certificate_pem.empty() || c.identifier.empty()) {
    return Error(Layer::kParse, "attestation: the answer lacks a WIT, certificate or identifier");
  }
  timing += ", attest " + ms_since(t_attest) + " ms";
  auto t_rest = SteadyClock::now();
  WIMSE_ASSIGN_OR_RETURN(HttpAnswer jwks, Call(options_, "GET", "/v1/jwks", ""));
  if (jwks.status != 200) return Refused("JWKS", jwks);
  c.jwks = jose::SerializeJson(jwks.body);
  // The WIT must bind our key (a wrong binding would make every WPT fail later).
  WIMSE_RETURN_IF_ERROR(CheckWitBindsKey(c.wit, key_->public_key()));
  WIMSE_RETURN_IF_ERROR(WriteCredentialDir(c));
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = c;
  }
  Log("credentials for " + c.identifier + ": certificate serial " + Short(c.serial) +
      "... and WIT sha256 " + Short(audit::TokenSha256Hex(c.wit)) + "..., valid " +
      std::to_string(std::min(c.expires_at, c.wit_expires_at) - Now()) + " s; written to " +
      options_.cred_dir + " (" + timing + ", JWKS + write " + ms_since(t_rest) + " ms)");
  return OkStatus();
}

namespace {

constexpr const char* kCredentialFiles[] = {"key.pem",  "bundle.pem", "jwks.json",
                                            "cert.pem", "wit.jwt",    "identity.json"};
// Versions kept besides the current one, for readers that resolved `current` just before a
// switch (a reader holding a version longer than two renewals loses it).
constexpr int kOldVersionsKept = 2;

// Replaces `link` by a symlink to `target` atomically (symlink at a temporary name, rename(2)).
Status SwapSymlink(const std::string& target, const std::string& link) {
  std::string tmp = link + ".tmp." + std::to_string(::getpid());
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0) {
    return Error(Layer::kIo, "cannot make symlink " + tmp + ": " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), link.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Error(Layer::kIo, "cannot switch " + link + ": " + std::strerror(err));
  }
  return OkStatus();
}

// The numeric version directories under `versions`, ascending.
std::vector<uint64_t> ListVersions(const std::string& versions) {
  std::vector<uint64_t> out;
  DIR* dir = ::opendir(versions.c_str());
  if (dir == nullptr) return out;
  while (const dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    out.push_back(std::strtoull(name.c_str(), nullptr, 10));
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::string ResolveCredentialDir(const std::string& cred_dir) {
  std::string current = cred_dir + "/current";
  char buf[PATH_MAX];
  ssize_t n = ::readlink(current.c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return cred_dir;  // the flat layout of older agents, or not written yet
  buf[n] = '\0';
  std::string target(buf);
  return target.front() == '/' ? target : cred_dir + "/" + target;
}

Status Agent::WriteCredentialDir(const Credentials& c) {
  // The whole set switches at once: a new version directory is filled (each file atomically),
  // then `current` is re-pointed to it with one rename(2). The top-level names are symlinks
  // through `current`; see docs/agent-and-service.md for the reader's side.
  const std::string& d = options_.cred_dir;
  std::string versions = d + "/versions";
  WIMSE_RETURN_IF_ERROR(MakeDirectories(versions, 0755));
  std::vector<uint64_t> existing = ListVersions(versions);
  uint64_t seq = existing.empty() ? 1 : existing.back() + 1;
  char name[32];
  std::snprintf(name, sizeof(name), "%010llu", static_cast<unsigned long long>(seq));
  std::string rel = std::string("versions/") + name;
  std::string vdir = d + "/" + rel;
  if (::mkdir(vdir.c_str(), 0755) != 0) {
    return Error(Layer::kIo, "cannot make " + vdir + ": " + std::strerror(errno));
  }
  WIMSE_ASSIGN_OR_RETURN(std::string key_pem, ReadFileString(key_path()));
  WIMSE_RETURN_IF_ERROR(WriteFileAtomic(vdir + "/key.pem", key_pem, 0600));
  WIMSE_RETURN_IF_ERROR(WriteFileAtomic(vdir + "/bundle.pem", c.bundle_pem, 0644));
  WIMSE_RETURN_IF_ERROR(WriteFileAtomic(vdir + "/jwks.json", c.jwks + "\n", 0644));
  WIMSE_RETURN_IF_ERROR(
      WriteFileAtomic(vdir + "/cert.pem", c.certificate_pem + c.bundle_pem, 0644));
  WIMSE_RETURN_IF_ERROR(WriteFileAtomic(vdir + "/wit.jwt", c.wit + "\n", 0644));
  jose::Json id = {{"identifier", c.identifier},
                   {"serial", c.serial},
                   {"expires_at", c.expires_at},
                   {"wit_expires_at", c.wit_expires_at},
                   {"issued_at", c.issued_at},
                   {"version", seq},
                   {"wit_sha256", audit::TokenSha256Hex(c.wit)}};
  WIMSE_RETURN_IF_ERROR(
      WriteFileAtomic(vdir + "/identity.json", jose::SerializeJson(id) + "\n", 0644));
  // The switch: one rename of the `current` symlink.
  WIMSE_RETURN_IF_ERROR(SwapSymlink(rel, d + "/current"));
  // The old names, as symlinks through `current` (made once; replaces the regular files of
  // the flat layout atomically, each).
  for (const char* f : kCredentialFiles) {
    std::string link = d + "/" + f;
    std::string want = std::string("current/") + f;
    char buf[PATH_MAX];
    ssize_t n = ::readlink(link.c_str(), buf, sizeof(buf) - 1);
    if (n > 0 && std::string(buf, static_cast<size_t>(n)) == want) continue;
    WIMSE_RETURN_IF_ERROR(SwapSymlink(want, link));
  }
  // Old versions beyond the few kept.
  for (size_t i = 0; i + kOldVersionsKept < existing.size(); ++i) {
    std::snprintf(name, sizeof(name), "%010llu", static_cast<unsigned long long>(existing[i]));
    std::string old = versions + "/" + name;
    for (const char* f : kCredentialFiles) ::unlink((old + "/" + f).c_str());
    ::rmdir(old.c_str());
  }
  return OkStatus();
}

Status Agent::Bootstrap() {
  WIMSE_RETURN_IF_ERROR(MakeDirectories(options_.state_dir, 0700));
  WIMSE_RETURN_IF_ERROR(Enrol());
  WIMSE_RETURN_IF_ERROR(EnsureKey());
  return AttestAndStore();
}

Status Agent::Renew() {
  WIMSE_RETURN_IF_ERROR(EnsureKey());
  Status s = AttestAndStore();
  if (!s.ok() && s.error().message().find("not_enrolled") != std::string::npos) {
    // The service lost or revoked our enrolment: enrol again, once.
    Log("the service does not know our AK; enrolling again");
    std::remove((options_.state_dir + "/enrolment.json").c_str());
    WIMSE_RETURN_IF_ERROR(Enrol());
    s = AttestAndStore();
  }
  return s;
}

void Agent::Run(const std::atomic<bool>& stop) {
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  int failures = 0;
  bool have = false;
  auto sleep_until = [&](int64_t deadline_ms) {
    while (!stop.load()) {
      int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
      if (now_ms >= deadline_ms) return;
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::min<int64_t>(100, deadline_ms - now_ms)));
    }
  };
  while (!stop.load()) {
    Status s = have ? Renew() : Bootstrap();
    int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    int64_t delay_ms;
    if (s.ok()) {
      have = true;
      failures = 0;
      service_ok_ = true;
      auto c = Current();
      int64_t lifetime = c.ok() ? std::min(c->expires_at, c->wit_expires_at) - c->issued_at : 60;
      double base = static_cast<double>(lifetime) * 1000.0 * options_.renew_fraction;
      delay_ms = static_cast<int64_t>(base * (1.0 + options_.jitter * unit(rng)));
      Log("next renewal in " + std::to_string(delay_ms / 1000) + " s (2/3 of " +
          std::to_string(lifetime) + " s, with jitter)");
    } else {
      service_ok_ = false;
      ++failures;
      double back = static_cast<double>(options_.backoff_initial_ms) *
                    static_cast<double>(1LL << std::min(failures - 1, 16));
      back = std::min(back, static_cast<double>(options_.backoff_max_ms));
      delay_ms = static_cast<int64_t>(back * (1.0 + 0.2 * unit(rng)));
      auto c = Current();
      std::string serving =
          c.ok() ? "serving the last valid credentials (expire in " +
                       std::to_string(std::min(c->expires_at, c->wit_expires_at) - Now()) + " s)"
                 : "no valid credentials to serve";
      Log((have ? "renewal failed: " : "bootstrap failed: ") + s.error().ToString() + "; " +
          serving + "; retry " + std::to_string(failures) + " in " + std::to_string(delay_ms) +
          " ms");
    }
    next_attempt_at_ = (now_ms + delay_ms) / 1000;
    sleep_until(now_ms + delay_ms);
  }
}

Result<Credentials> Agent::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!current_) return Error(Layer::kPolicy, "no credentials yet");
  if (std::min(current_->expires_at, current_->wit_expires_at) <= Now()) {
    return Error(Layer::kPolicy, "credentials expired and could not be renewed");
  }
  return *current_;
}

Result<std::string> Agent::SignWpt(const std::string& audience, int64_t ttl_seconds) {
  WIMSE_ASSIGN_OR_RETURN(Credentials c, Current());
  WIMSE_RETURN_IF_ERROR(EnsureKey());
  WptOptions o;
  o.audience = audience;
  o.ttl_seconds = ttl_seconds;
  return WithTpm([&]() -> Result<std::string> {
    tpm::TpmSigner signer(key_);
    return wimse::SignWpt(signer, c.wit, o);
  });
}

}  // namespace wimse::agent
