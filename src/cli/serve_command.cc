// `wimse-tpm serve`: the credential service over HTTPS (attest/service).
//
// State directory (created 0700): state.db (SQLite: enrolments, nonces, issued credentials),
// audit.jsonl (+ .head), ca.key.pem / ca.cert.pem (the trust domain CA, made on first start
// unless --ca-key/--ca-cert are given; --ca-key may be a TSS2 key file: it is then loaded
// through the wimsetpm provider and signs in the TPM), wit.key.pem (WIT and EAR issuer key),
// bundle.pem (what agents need to trust the service and the trust domain), port (the bound port).
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "attest/policy.h"
#include "attest/service/credential_service.h"
#include "attest/service/https_server.h"
#include "audit/audit_log.h"
#include "cli/commands.h"
#include "crypto/public_key.h"
#include "jose/jwk.h"
#include "util/file.h"
#include "x509/certificate.h"

namespace wimse::cli {

namespace {

struct ServeOptions {
  std::string state_dir;
  std::string policy;
  std::string listen = "127.0.0.1:8443";
  std::string ek_roots;
  std::string ek_intermediates;
  std::string attestation_policy;
  std::string ca_key;
  std::string ca_cert;
  std::string provider_dir;
  bool audit_stdout = false;
  bool access_log = false;
};

Result<std::vector<Bytes>> ReadPemCerts(const std::string& path) {
  std::vector<Bytes> out;
  if (path.empty()) return out;
  WIMSE_ASSIGN_OR_RETURN(std::string pem, ReadFileString(path));
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    unsigned char* der = nullptr;
    int len = i2d_X509(cert.get(), &der);
    if (len > 0) out.emplace_back(der, der + len);
    OPENSSL_free(der);
  }
  ERR_clear_error();
  if (out.empty()) return Error(Layer::kParse, "no PEM certificate in " + path);
  return out;
}

// Loads a private key from PEM: a software key, or a TSS2 key file through wimsetpm (loaded
// into the default library context on demand).
Result<EvpPkeyPtr> LoadPrivateKey(const std::string& path, const std::string& provider_dir) {
  WIMSE_ASSIGN_OR_RETURN(std::string pem, ReadFileString(path));
  if (pem.find("TSS2 PRIVATE KEY") != std::string::npos) {
    if (!provider_dir.empty()) OSSL_PROVIDER_set_default_search_path(nullptr, provider_dir.c_str());
    if (OSSL_PROVIDER_load(nullptr, "default") == nullptr ||
        OSSL_PROVIDER_load(nullptr, "wimsetpm") == nullptr) {
      return OpenSslError("cannot load the wimsetpm provider for " + path);
    }
    EVP_set_default_properties(nullptr, "?provider=default");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return OpenSslError("cannot load the private key " + path);
  return key;
}

Status EnsureSoftwareKey(const std::string& path) {
  if (::access(path.c_str(), R_OK) == 0) return OkStatus();
  WIMSE_ASSIGN_OR_RETURN(auto signer, SoftwareSigner::Generate(KeyAlg::kEcP256));
  WIMSE_ASSIGN_OR_RETURN(std::string pem, signer->PrivateKeyPem());
  return WriteFileAtomic(path, pem, 0600);
}

void RunServe(GlobalOptions& g, const ServeOptions& o) {
  auto fail = [&](const Error& e) { Fail(g, "serve", e); };
  ::mkdir(o.state_dir.c_str(), 0700);
  auto policy_text = ReadFileString(o.policy);
  if (!policy_text.ok()) return fail(policy_text.error());
  auto policy = service::DecodeServicePolicy(*policy_text);
  if (!policy.ok()) return fail(policy.error().WithContext(o.policy));
  service::ServiceOptions so;
  so.policy = *policy;
  auto roots = ReadPemCerts(o.ek_roots);
  if (!roots.ok()) return fail(roots.error());
  so.ek_roots = *roots;
  auto inter = ReadPemCerts(o.ek_intermediates);
  if (!inter.ok()) return fail(inter.error());
  so.ek_intermediates = *inter;
  if (!o.attestation_policy.empty()) {
    auto text = ReadFileString(o.attestation_policy);
    if (!text.ok()) return fail(text.error());
    auto ap = attest::DecodePolicy(*text);
    if (!ap.ok()) return fail(ap.error().WithContext(o.attestation_policy));
    so.attestation_policy = *ap;
  }

  // Keys: the CA (PEM or TPM), the WIT/EAR issuer (PEM), and a fresh TLS key per start.
  std::string ca_key_path = o.ca_key.empty() ? o.state_dir + "/ca.key.pem" : o.ca_key;
  std::string ca_cert_path = o.ca_cert.empty() ? o.state_dir + "/ca.cert.pem" : o.ca_cert;
  if (o.ca_key.empty()) {
    if (auto s = EnsureSoftwareKey(ca_key_path); !s.ok()) return fail(s.error());
  }
  auto ca_key = LoadPrivateKey(ca_key_path, o.provider_dir);
  if (!ca_key.ok()) return fail(ca_key.error());
  if (::access(ca_cert_path.c_str(), R_OK) != 0) {
    x509::CertificateRequest req;
    req.subject_public_key = ca_key->get();
    req.common_name = so.policy.trust_domain + " workload CA";
    req.is_ca = true;
    req.lifetime = std::chrono::hours(24 * 365);
    auto cert = x509::IssueCertificate(req, ca_key->get(), nullptr);
    if (!cert.ok()) return fail(cert.error());
    auto pem = x509::CertificateToPem(cert->get());
    if (!pem.ok()) return fail(pem.error());
    if (auto s = WriteFileAtomic(ca_cert_path, *pem, 0644); !s.ok()) return fail(s.error());
  }
  auto ca_pem = ReadFileString(ca_cert_path);
  if (!ca_pem.ok()) return fail(ca_pem.error());
  auto ca_cert = x509::CertificateFromPem(*ca_pem);
  if (!ca_cert.ok()) return fail(ca_cert.error());
  if (auto s = WriteFileAtomic(o.state_dir + "/bundle.pem", *ca_pem, 0644); !s.ok()) {
    return fail(s.error());
  }
  std::string wit_key_path = o.state_dir + "/wit.key.pem";
  if (auto s = EnsureSoftwareKey(wit_key_path); !s.ok()) return fail(s.error());
  auto wit_signer = SoftwareSigner::FromPemFile(wit_key_path);
  if (!wit_signer.ok()) return fail(wit_signer.error());
  auto jwk = jose::PublicKeyToJwk((*wit_signer)->public_key(), "ES256");
  std::string kid = "wit-1";
  if (jwk.ok()) {
    auto t = jose::JwkThumbprint(*jwk);
    if (t.ok()) kid = t->substr(0, 16);
  }
  EvpPkeyPtr tls_key(EVP_PKEY_Q_keygen(nullptr, "provider=default", "EC", "prime256v1"));
  if (!tls_key) return fail(OpenSslError("TLS key generation"));
  size_t colon = o.listen.rfind(':');
  if (colon == std::string::npos) {
    return fail(Error(Layer::kUsage, "--listen must be HOST:PORT, got " + o.listen));
  }
  std::string host = o.listen.substr(0, colon);
  int port = std::atoi(o.listen.substr(colon + 1).c_str());
  x509::CertificateRequest treq;
  treq.subject_public_key = tls_key.get();
  treq.common_name = "wimse-tpm credential service";
  treq.server_auth = true;
  treq.dns_san = "localhost";
  treq.ip_san = host;
  treq.lifetime = std::chrono::hours(24 * 30);
  auto tls_cert = x509::IssueCertificate(treq, ca_key->get(), ca_cert->get());
  if (!tls_cert.ok()) return fail(tls_cert.error());

  auto store = service::SqliteStateStore::Open(o.state_dir + "/state.db");
  if (!store.ok()) return fail(store.error());
  audit::AuditLogOptions ao;
  ao.path = o.state_dir + "/audit.jsonl";
  ao.siem = o.audit_stdout ? stdout : nullptr;
  auto audit = audit::AuditLog::Open(ao);
  if (!audit.ok()) return fail(audit.error());

  service::ServiceKeys keys;
  keys.ca_key = ca_key->get();
  keys.ca_cert = ca_cert->get();
  keys.wit_signer = wit_signer->get();
  keys.wit_kid = kid;
  keys.ear_signer = wit_signer->get();
  service::CredentialService svc(std::move(so), keys, store->get(), audit->get());

  // SIGTERM/SIGINT stop the server cleanly (blocked here, taken by a watcher thread).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  service::HttpsServerOptions hso;
  hso.host = host;
  hso.port = port;
  hso.tls_cert = tls_cert->get();
  hso.tls_key = tls_key.get();
  std::string state_dir = o.state_dir;
  hso.on_listening = [&](int bound) {
    (void)WriteFileAtomic(state_dir + "/port", std::to_string(bound) + "\n", 0644);
    auto n = (*store)->CountEnrollments();
    std::fprintf(stderr,
                 "wimse-tpm serve: listening on https://%s:%d (trust domain %s, %llu "
                 "enrolments on file, state %s)\n",
                 host.c_str(), bound, svc.policy().trust_domain.c_str(),
                 static_cast<unsigned long long>(n.ok() ? *n : 0), state_dir.c_str());
  };
  if (o.access_log) {
    hso.on_request = [](const std::string& method, const std::string& path, int status, double ms) {
      std::fprintf(stderr, "wimse-tpm serve: %s %s %d %.2f ms\n", method.c_str(), path.c_str(),
                   status, ms);
    };
  }
  service::CredentialHttpsServer server(&svc, hso);
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&set, &sig);
    if (!done.load()) server.Stop();
  });
  Status s = server.Run();
  done = true;
  if (!s.ok()) {
    Fail(g, "serve", s.error());
    pthread_kill(watcher.native_handle(), SIGTERM);
  }
  watcher.join();
  std::fprintf(stderr, "wimse-tpm serve: stopped\n");
}

}  // namespace

void RegisterServeCommand(CLI::App& app, GlobalOptions& g) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* c = app.add_subcommand("serve", "run the credential service (HTTPS)");
  c->add_option("--state-dir", o->state_dir, "state directory (database, audit log, keys)")
      ->required();
  c->add_option("--policy", o->policy, "service policy JSON (identifiers, lifetimes)")->required();
  c->add_option("--listen", o->listen, "HOST:PORT (port 0: any free port, written to DIR/port)");
  c->add_option("--ek-roots", o->ek_roots, "PEM file of trusted EK root certificates");
  c->add_option("--ek-intermediates", o->ek_intermediates, "PEM file of EK intermediate CAs");
  c->add_option("--attestation-policy", o->attestation_policy, "appraisal policy JSON");
  c->add_option("--ca-key", o->ca_key, "trust domain CA key: PEM, or a TSS2 key file (TPM)");
  c->add_option("--ca-cert", o->ca_cert, "trust domain CA certificate (PEM)");
  c->add_option("--provider-dir", o->provider_dir, "directory holding wimsetpm.so")
      ->envname("WIMSE_PROVIDER_DIR");
  c->add_flag("--audit-stdout", o->audit_stdout, "also write audit records to stdout (SIEM)");
  c->add_flag("--access-log", o->access_log,
              "log every request to stderr: method, path, status, service-side milliseconds");
  c->callback([&g, o] { RunServe(g, *o); });
}

}  // namespace wimse::cli
