// `wimse-tpm workload serve` and `wimse-tpm workload call`: a reference HTTPS workload that
// authenticates callers by mutual TLS with a trust-domain certificate and WIT + WPT, authorizes
// them by identifier, method and path, and audits every decision; and a client that calls it
// with the agent's credentials (TLS client key in the TPM through wimsetpm; WPT from the agent's
// socket, so the workload never touches the key, or signed in-process without a socket).
#include <fcntl.h>
#include <httplib.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <set>
#include <thread>

#include "agent/local_api.h"
#include "audit/audit_log.h"
#include "cli/commands.h"
#include "tpm/workload_key.h"
#include "util/file.h"
#include "wimse/wit.h"
#include "wimse/wpt.h"
#include "x509/certificate.h"

namespace wimse::cli {

namespace {

// Loads wimsetpm (and default, first for everything else) into the default library context,
// so libssl (and cpp-httplib) sign with TPM keys decoded from TSS2 key files.
Status LoadProviders(const std::string& provider_dir) {
  if (!provider_dir.empty()) OSSL_PROVIDER_set_default_search_path(nullptr, provider_dir.c_str());
  if (OSSL_PROVIDER_load(nullptr, "default") == nullptr ||
      OSSL_PROVIDER_load(nullptr, "wimsetpm") == nullptr) {
    return OpenSslError(
        "cannot load the wimsetpm provider " +
        (provider_dir.empty()
             ? std::string("from OpenSSL's modules directory (not installed? from a build tree "
                           "give --provider-dir build/provider or set WIMSE_PROVIDER_DIR)")
             : "from " + provider_dir + " (is wimsetpm.so there?)"));
  }
  EVP_set_default_properties(nullptr, "?provider=default");
  return OkStatus();
}

Result<EvpPkeyPtr> LoadKey(const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(std::string pem, ReadFileString(path));
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return OpenSslError("cannot load " + path + " through the provider");
  return key;
}

// The inter-process TPM lock the agents use (agent.h): held while this process uses the TPM.
class TpmLock {
 public:
  explicit TpmLock(const std::string& tcti) {
    std::string path = "/tmp/wimse-tpm-" + audit::TokenSha256Hex(tcti).substr(0, 16) + ".lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);
  }
  ~TpmLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  int fd_ = -1;
};

// Authorization policy: {"rules": [{"id": "spiffe://...", "methods": ["GET"],
// "paths": ["/orders*"]}]}; ids and paths use "*" / "prefix*" patterns.

struct AuthzRule {
  std::string id;
  std::vector<std::string> methods;
  std::vector<std::string> paths;
};

bool Match(std::string_view pattern, std::string_view value) {
  if (pattern == "*") return true;
  if (!pattern.empty() && pattern.back() == '*') {
    return value.substr(0, pattern.size() - 1) == pattern.substr(0, pattern.size() - 1);
  }
  return pattern == value;
}

Result<std::vector<AuthzRule>> LoadAuthz(const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(std::string text, ReadFileString(path));
  WIMSE_ASSIGN_OR_RETURN(jose::Json j, jose::ParseJsonObject(text, {1 << 20, 6}));
  std::vector<AuthzRule> rules;
  if (!j.contains("rules") || !j["rules"].is_array()) {
    return Error(Layer::kParse, path + ": \"rules\" must be an array");
  }
  for (const auto& r : j["rules"]) {
    AuthzRule rule;
    if (!r.is_object() || !r.contains("id") || !r["id"].is_string()) {
      return Error(Layer::kParse, path + ": every rule needs an \"id\"");
    }
    rule.id = r["id"].get<std::string>();
    for (const char* member : {"methods", "paths"}) {
      auto& out = std::string(member) == "methods" ? rule.methods : rule.paths;
      if (r.contains(member)) {
        for (const auto& m : r[member]) {
          if (m.is_string()) out.push_back(m.get<std::string>());
        }
      } else {
        out.push_back("*");
      }
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

struct ServeOptions {
  std::string cred_dir;
  std::string listen = "127.0.0.1:8444";
  std::string authz;
  std::string audit_path;
  std::string audience_base;      // e.g. https://localhost:8444 (default from --listen)
  std::string mode = "mtls+wpt";  // mtls | wpt | mtls+wpt
  std::string provider_dir;
  std::string name = "workload";
};

void RunServe(GlobalOptions& g, const ServeOptions& o) {
  auto fail = [&](const Error& e) { Fail(g, "workload serve", e); };
  std::string tcti = tpm::ResolveTcti(g.tcti);
  setenv("WIMSE_TPM_TCTI", tcti.c_str(), 1);
  auto rules = LoadAuthz(o.authz);
  if (!rules.ok()) return fail(rules.error());
  if (auto s = LoadProviders(o.provider_dir); !s.ok()) return fail(s.error());
  // One consistent credential set (the agent switches versions atomically; resolve once).
  const std::string dir = agent::ResolveCredentialDir(o.cred_dir);
  auto cert_pem = ReadFileString(dir + "/cert.pem");
  auto jwks = ReadFileString(dir + "/jwks.json");
  if (!cert_pem.ok()) return fail(cert_pem.error());
  if (!jwks.ok()) return fail(jwks.error());
  auto cert = x509::CertificateFromPem(*cert_pem);
  if (!cert.ok()) return fail(cert.error());
  auto self_id = x509::SingleUriSan(cert->get());
  if (!self_id.ok()) return fail(self_id.error());
  auto trust_domain = ParseWorkloadIdentifier(*self_id);
  if (!trust_domain.ok()) return fail(trust_domain.error());
  TrustAnchors anchors;
  if (auto s = anchors.AddJwks(trust_domain->trust_domain, *jwks); !s.ok()) return fail(s.error());
  audit::AuditLogOptions ao;
  ao.path = o.audit_path;
  auto audit = audit::AuditLog::Open(ao);
  if (!audit.ok()) return fail(audit.error());
  audit::TokenAuditLogSink token_sink(audit->get(), *self_id);
  InMemoryReplayCache replay(100000);

  EvpPkeyPtr key;
  {
    // Load the TPM key and make one signature now, under the agents' TPM lock, so the provider
    // has the key loaded (its one cached object) before clients arrive.
    TpmLock lock(tcti);
    auto k = LoadKey(dir + "/key.pem");
    if (!k.ok()) return fail(k.error());
    key = std::move(*k);
    EvpMdCtxPtr md(EVP_MD_CTX_new());
    unsigned char sig[256];
    size_t sig_len = sizeof(sig);
    const unsigned char msg[] = "warm-up";
    if (!md || EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
        EVP_DigestSign(md.get(), sig, &sig_len, msg, sizeof(msg)) != 1) {
      return fail(OpenSslError("signing with the TPM key"));
    }
  }
  std::string bundle_path = dir + "/bundle.pem";
  X509* leaf = cert->get();
  EVP_PKEY* pkey = key.get();
  auto srv_ptr = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
    SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate(&ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(&ctx, pkey) != 1 ||
        SSL_CTX_load_verify_locations(&ctx, bundle_path.c_str(), nullptr) != 1) {
      return false;
    }
    // Ask for a client certificate but decide in the handler, so a caller without one gets a
    // 401 with the reason instead of a failed handshake.
    SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
    return true;
  });
  httplib::SSLServer& srv = *srv_ptr;
  if (!srv.is_valid()) return fail(OpenSslError("TLS server setup"));
  size_t colon = o.listen.rfind(':');
  std::string host = o.listen.substr(0, colon);
  int port = std::atoi(o.listen.substr(colon + 1).c_str());
  std::string base =
      o.audience_base.empty() ? "https://localhost:" + std::to_string(port) : o.audience_base;
  bool need_mtls = o.mode.find("mtls") != std::string::npos;
  bool need_wpt = o.mode.find("wpt") != std::string::npos;

  auto handler = [&](const httplib::Request& req, httplib::Response& res) {
    audit::AuditEvent ev;
    ev.event = "call";
    ev.target = req.method + " " + base + req.path;
    ev.method = o.mode;
    ev.source = req.remote_addr;
    auto deny = [&](int status, const std::string& reason) {
      ev.decision = "deny";
      ev.reason = reason;
      (void)(*audit)->Append(ev);
      res.status = status;
      if (status == 401) res.set_header("WWW-Authenticate", "WPT");
      res.set_content(
          jose::SerializeJson(
              {{"error", status == 401 ? "unauthenticated" : "forbidden"}, {"reason", reason}}) +
              "\n",
          "application/json");
      std::fprintf(stderr, "%s: %s %s from %s -> %d %s\n", o.name.c_str(), req.method.c_str(),
                   req.path.c_str(), ev.source.c_str(), status, reason.c_str());
    };
    std::string cert_id;
    X509* peer = req.ssl ? SSL_get0_peer_certificate(req.ssl) : nullptr;
    if (peer != nullptr) {
      if (SSL_get_verify_result(req.ssl) != X509_V_OK) {
        return deny(401, std::string("client certificate not from the trust domain CA: ") +
                             X509_verify_cert_error_string(SSL_get_verify_result(req.ssl)));
      }
      auto id = x509::SingleUriSan(peer);
      if (!id.ok()) return deny(401, "client certificate: " + id.error().message());
      cert_id = *id;
      ev.source = cert_id;
    } else if (need_mtls) {
      return deny(401, "no client certificate (mutual TLS required)");
    }
    std::string caller = cert_id;
    if (need_wpt || req.has_header("Authorization")) {
      std::string wit = req.get_header_value("Workload-Identity-Token");
      std::string auth = req.get_header_value("Authorization");
      std::string wpt = auth.rfind("WPT ", 0) == 0 ? auth.substr(4) : "";
      if (wit.empty() || wpt.empty()) return deny(401, "WIT and WPT required");
      ev.token_sha256["wit"] = audit::TokenSha256Hex(wit);
      ev.token_sha256["wpt"] = audit::TokenSha256Hex(wpt);
      WptVerifyOptions vo;
      vo.wit.anchors = &anchors;
      vo.audiences = {base + req.path};
      vo.replay_cache = &replay;
      vo.audit = &token_sink;
      auto v = VerifyWpt(wpt, wit, vo);
      if (!v.ok()) {
        return deny(401, std::string(TokenCheckName(v.check())) + ": " + v.reason());
      }
      const std::string& sub = v.claims().wit.sub.uri;
      if (peer != nullptr) {
        if (sub != cert_id) {
          return deny(401, "WIT sub " + sub + " differs from the certificate's " + cert_id);
        }
        if (EVP_PKEY_eq(X509_get0_pubkey(peer), v.claims().wit.cnf_key.get()) != 1) {
          return deny(401, "WIT cnf key is not the TLS client key");
        }
      }
      caller = sub;
      ev.source = sub;
      ev.claims = {{"wit_sub", sub},
                   {"wpt_aud", v.claims().aud},
                   {"wpt_jti", v.claims().jti},
                   {"cnf_thumbprint", v.claims().wit.cnf_thumbprint}};
    }
    if (!cert_id.empty()) ev.claims["tls_client"] = cert_id;
    ev.claims["tls_version"] = req.ssl ? SSL_get_version(req.ssl) : "";
    bool allowed = false;
    for (const auto& r : *rules) {
      if (!Match(r.id, caller)) continue;
      bool m = false, p = false;
      for (const auto& x : r.methods) m = m || Match(x, req.method);
      for (const auto& x : r.paths) p = p || Match(x, req.path);
      allowed = allowed || (m && p);
    }
    if (!allowed) {
      return deny(403, caller + " may not " + req.method + " " + req.path + " by policy");
    }
    ev.decision = "allow";
    ev.reason = "authenticated (" + o.mode + ") and authorized by policy";
    (void)(*audit)->Append(ev);
    res.set_content(
        jose::SerializeJson({{"hello", caller}, {"served_by", *self_id}, {"path", req.path}}) +
            "\n",
        "application/json");
    std::fprintf(stderr, "%s: %s %s from %s -> 200\n", o.name.c_str(), req.method.c_str(),
                 req.path.c_str(), caller.c_str());
  };
  srv.Get(".*", handler);
  srv.Post(".*", handler);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (!srv.bind_to_port(host.c_str(), port)) {
    return fail(Error(Layer::kIo, "cannot bind " + o.listen));
  }
  std::fprintf(stderr, "%s: %s listening on %s (%s)\n", o.name.c_str(), self_id->c_str(),
               base.c_str(), o.mode.c_str());
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&set, &sig);
    srv.stop();
  });
  srv.listen_after_bind();
  watcher.join();
  // Free every reference to the TPM key; at exit every TPM context (ours and the provider's)
  // flushes what it still has loaded, so a stopped workload leaves no object in the TPM.
  srv_ptr.reset();
  key.reset();
}

struct CallOptions {
  std::string url;
  std::string cred_dir;
  std::string socket;
  std::string provider_dir;
  std::string method = "GET";
  bool no_wpt = false;
};

void RunCall(GlobalOptions& g, const CallOptions& o) {
  auto fail = [&](const Error& e) { Fail(g, "workload call", e); };
  std::string tcti = tpm::ResolveTcti(g.tcti);
  setenv("WIMSE_TPM_TCTI", tcti.c_str(), 1);
  // https://host:port/path
  if (o.url.rfind("https://", 0) != 0) return fail(Error(Layer::kUsage, "URL must be https://"));
  std::string rest = o.url.substr(8);
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  std::string audience = "https://" + hostport + path.substr(0, path.find_first_of("?#"));
  size_t colon = hostport.rfind(':');
  std::string host = hostport.substr(0, colon);
  int port = colon == std::string::npos ? 443 : std::atoi(hostport.substr(colon + 1).c_str());

  // One consistent credential set (the agent switches versions atomically; resolve once).
  const std::string dir = agent::ResolveCredentialDir(o.cred_dir);
  auto wit = ReadFileString(dir + "/wit.jwt");
  if (!wit.ok()) return fail(wit.error());
  std::string wit_s = *wit;
  while (!wit_s.empty() && (wit_s.back() == '\n' || wit_s.back() == '\r')) wit_s.pop_back();
  std::string wpt;
  if (!o.no_wpt) {
    if (!o.socket.empty()) {
      // The agent signs: this process never uses the key for the WPT.
      auto creds = agent::CallLocalApi(o.socket, {{"op", "credentials"}});
      if (!creds.ok()) return fail(creds.error());
      wit_s = (*creds)["wit"].get<std::string>();
      auto a = agent::CallLocalApi(o.socket, {{"op", "wpt"}, {"aud", audience}, {"ttl", 60}});
      if (!a.ok()) return fail(a.error());
      wpt = (*a)["wpt"].get<std::string>();
    } else {
      TpmLock lock(tcti);
      auto signer = tpm::OpenTpmSigner(tcti, dir + "/key.pem");
      if (!signer.ok()) return fail(signer.error());
      WptOptions wo;
      wo.audience = audience;
      auto w = SignWpt(**signer, wit_s, wo);
      (*signer)->key()->context()->FlushCache();
      if (!w.ok()) return fail(w.error());
      wpt = *w;
    }
  }
  int status = 0;
  std::string body;
  {
    // The TLS client key signs in the TPM (provider): hold the TPM lock for the connection and
    // unload the provider (which flushes its key) before releasing it.
    TpmLock lock(tcti);
    if (auto s = LoadProviders(o.provider_dir); !s.ok()) return fail(s.error());
    {
      auto cert_pem = ReadFileString(dir + "/cert.pem");
      if (!cert_pem.ok()) return fail(cert_pem.error());
      auto cert = x509::CertificateFromPem(*cert_pem);
      if (!cert.ok()) return fail(cert.error());
      auto key = LoadKey(dir + "/key.pem");
      if (!key.ok()) return fail(key.error());
      httplib::SSLClient cli(host, port, cert->get(), key->get());
      cli.set_ca_cert_path((dir + "/bundle.pem").c_str());
      cli.enable_server_certificate_verification(true);
      cli.set_connection_timeout(5, 0);
      cli.set_read_timeout(30, 0);
      httplib::Headers h;
      h.emplace("Workload-Identity-Token", wit_s);
      if (!wpt.empty()) h.emplace("Authorization", "WPT " + wpt);
      auto res = o.method == "POST" ? cli.Post(path.c_str(), h, "", "text/plain")
                                    : cli.Get(path.c_str(), h);
      if (!res) {
        return fail(
            Error(Layer::kIo, "cannot call " + o.url + ": " + httplib::to_string(res.error())));
      }
      status = res->status;
      body = res->body;
    }
  }
  std::printf("%d %s", status, body.c_str());
  if (status != 200) g.exit_code = status == 403 ? 3 : 4;
}

}  // namespace

void RegisterWorkloadCommands(CLI::App& app, GlobalOptions& g) {
  CLI::App* w = app.add_subcommand("workload", "reference workload server and client");
  w->require_subcommand(1);
  auto so = std::make_shared<ServeOptions>();
  CLI::App* s = w->add_subcommand("serve", "HTTPS workload: mutual TLS and/or WIT+WPT, authz");
  s->add_option("--cred-dir", so->cred_dir, "the agent's credential directory")->required();
  s->add_option("--listen", so->listen, "HOST:PORT");
  s->add_option("--authz", so->authz, "authorization policy JSON")->required();
  s->add_option("--audit", so->audit_path, "audit log (JSON lines, hash-chained)")->required();
  s->add_option("--audience", so->audience_base,
                "base URL callers use (default https://localhost:PORT)");
  s->add_option("--mode", so->mode, "mtls | wpt | mtls+wpt");
  s->add_option("--name", so->name, "name used in log lines");
  s->add_option("--provider-dir", so->provider_dir, "directory holding wimsetpm.so")
      ->envname("WIMSE_PROVIDER_DIR");
  s->callback([&g, so] { RunServe(g, *so); });
  auto co = std::make_shared<CallOptions>();
  CLI::App* c = w->add_subcommand("call", "call a workload with the agent's credentials");
  c->add_option("url", co->url, "https://host:port/path")->required();
  c->add_option("--cred-dir", co->cred_dir, "the agent's credential directory")->required();
  c->add_option("--agent-socket", co->socket, "ask the agent for the WPT (key never touched)");
  c->add_option("--method", co->method, "GET or POST");
  c->add_flag("--no-wpt", co->no_wpt, "mutual TLS only");
  c->add_option("--provider-dir", co->provider_dir, "directory holding wimsetpm.so")
      ->envname("WIMSE_PROVIDER_DIR");
  c->callback([&g, co] { RunCall(g, *co); });
}

}  // namespace wimse::cli
