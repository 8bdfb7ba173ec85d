// `wimse-tpm demo`: the main job end to end on one TPM, one line per step.
//
// On the TPM: make a workload key; the verifier issues a nonce; the agent returns evidence
// (quote + certify); the verifier appraises it; an issuer mints a WIT bound to the attested key;
// workload A calls workload B over mutual TLS on loopback with the client key loaded through the
// wimsetpm provider, sending the WIT and a WPT; B checks the client certificate, the WIT and the
// WPT and prints its decision. A replayed WPT must then be refused. Exit 0 only if every step
// behaved as expected.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "attest/evidence.h"
#include "attest/verifier.h"
#include "cli/commands.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "tpm/workload_key.h"
#include "util/file.h"
#include "wimse/wit.h"
#include "wimse/wpt.h"
#include "x509/certificate.h"

namespace wimse::cli {

namespace {

constexpr char kWorkloadA[] = "spiffe://example.org/workload/a";
constexpr char kWorkloadB[] = "spiffe://example.org/workload/b";

using SslCtxPtr = std::unique_ptr<SSL_CTX, OsslDeleter<SSL_CTX, SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, OsslDeleter<SSL, SSL_free>>;
using LibCtxPtr = std::unique_ptr<OSSL_LIB_CTX, OsslDeleter<OSSL_LIB_CTX, OSSL_LIB_CTX_free>>;

struct DemoOptions {
  std::string provider_dir;
  std::string workdir;
};

// Prints one narrative line per step and remembers whether every step went as expected.
class Narrative {
 public:
  void Step(const std::string& who, const std::string& what) {
    std::printf("[%2d] %-11s %s\n", ++n_, (who + ":").c_str(), what.c_str());
    std::fflush(stdout);
  }
  void Failed(const std::string& who, const std::string& what) {
    std::printf("[%2d] %-11s FAILED: %s\n", ++n_, (who + ":").c_str(), what.c_str());
    std::fflush(stdout);
    ok_ = false;
  }
  bool ok() const { return ok_; }

 private:
  int n_ = 0;
  bool ok_ = true;
};

std::string Short(const std::string& s, size_t n = 16) {
  return s.size() <= n ? s : s.substr(0, n) + "...";
}

std::string SslErrors() {
  std::string out;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

// Reads an HTTP/1.1 request head (bounded) from `ssl` into header map (lower-case names).
bool ReadRequest(SSL* ssl, std::string& request_line, std::map<std::string, std::string>& headers) {
  std::string data;
  char buf[2048];
  while (data.find("\r\n\r\n") == std::string::npos) {
    if (data.size() > 32 * 1024) return false;
    int n = SSL_read(ssl, buf, sizeof(buf));
    if (n <= 0) return false;
    data.append(buf, static_cast<size_t>(n));
  }
  size_t pos = data.find("\r\n");
  request_line = data.substr(0, pos);
  size_t end = data.find("\r\n\r\n");
  while (pos < end) {
    size_t next = data.find("\r\n", pos + 2);
    std::string line = data.substr(pos + 2, next - pos - 2);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      size_t v = colon + 1;
      while (v < line.size() && line[v] == ' ') ++v;
      headers[name] = line.substr(v);
    }
    pos = next;
  }
  return true;
}

// Workload B: a mutual-TLS HTTPS endpoint that checks the client certificate, WIT and WPT.
class WorkloadB {
 public:
  WorkloadB(SSL_CTX* ctx, const TrustAnchors* anchors, Narrative* story)
      : ctx_(ctx), anchors_(anchors), story_(story) {}

  // The one audience B accepts (configured, never derived from the request's Host header).
  void set_audience(std::string audience) { audience_ = std::move(audience); }

  Status Listen() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return Error(Layer::kIo, "socket() failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd_, 4) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return Error(Layer::kIo, "cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
    return OkStatus();
  }
  int port() const { return port_; }
  ~WorkloadB() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Serves one connection; returns the HTTP status it answered with (0 on TLS failure).
  int ServeOne() {
    int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) return 0;
    SslPtr ssl(SSL_new(ctx_));
    SSL_set_fd(ssl.get(), conn);
    int status = 0;
    std::string body;
    if (SSL_accept(ssl.get()) != 1) {
      story_->Failed("workload B", "TLS handshake failed: " + SslErrors());
      ::close(conn);
      return 0;
    }
    status = Decide(ssl.get(), body);
    std::string resp = "HTTP/1.1 " + std::to_string(status) +
                       (status == 200 ? " OK" : " Unauthorized") +
                       "\r\nContent-Type: text/plain\r\nConnection: close\r\n";
    if (status == 401) resp += "WWW-Authenticate: WPT\r\n";
    resp += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    SSL_write(ssl.get(), resp.data(), static_cast<int>(resp.size()));
    SSL_shutdown(ssl.get());
    ::close(conn);
    return status;
  }

 private:
  int Decide(SSL* ssl, std::string& body) {
    X509* peer = SSL_get0_peer_certificate(ssl);
    if (peer == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) {
      body = "client certificate missing or not from the trust domain CA";
      story_->Step("workload B", "deny: " + body);
      return 401;
    }
    auto cert_id = x509::SingleUriSan(peer);
    if (!cert_id.ok()) {
      body = cert_id.error().message();
      story_->Step("workload B", "deny: " + body);
      return 401;
    }
    std::string line;
    std::map<std::string, std::string> headers;
    if (!ReadRequest(ssl, line, headers)) {
      body = "malformed HTTP request";
      return 400;
    }
    std::string wit = headers["workload-identity-token"];
    std::string auth = headers["authorization"];
    std::string wpt = auth.rfind("WPT ", 0) == 0 ? auth.substr(4) : "";
    WptVerifyOptions opts;
    opts.wit.anchors = anchors_;
    opts.audiences = {audience_};
    opts.replay_cache = &replay_;
    auto result = VerifyWpt(wpt, wit, opts);
    std::string who = "TLS " + std::string(SSL_get_version(ssl)) + " client " + *cert_id;
    if (!result.ok()) {
      body = std::string(TokenCheckName(result.check())) + ": " + result.reason();
      story_->Step("workload B", who + "; deny (" + body + ")");
      return 401;
    }
    const VerifiedWpt& v = result.claims();
    if (v.wit.sub.uri != *cert_id) {
      body = "WIT sub " + v.wit.sub.uri + " differs from the certificate's " + *cert_id;
      story_->Step("workload B", who + "; deny (" + body + ")");
      return 401;
    }
    // The WPT key must be the TLS client key: both are the same TPM key.
    EVP_PKEY* tls_key = X509_get0_pubkey(peer);
    if (tls_key == nullptr || EVP_PKEY_eq(tls_key, v.wit.cnf_key.get()) != 1) {
      body = "WIT cnf key is not the TLS client key";
      story_->Step("workload B", who + "; deny (" + body + ")");
      return 401;
    }
    story_->Step("workload B", who + " (chain ok); WIT ok (sub " + v.wit.sub.uri +
                                   "); WPT ok (aud " + v.aud + ", jti " + Short(v.jti, 8) +
                                   "); cnf key = TLS key; decision: allow");
    body = "hello " + v.wit.sub.uri + "\n";
    return 200;
  }

  SSL_CTX* ctx_;
  const TrustAnchors* anchors_;
  std::string audience_;
  Narrative* story_;
  InMemoryReplayCache replay_{1024};
  int fd_ = -1;
  int port_ = 0;
};

// Workload A's side of one call: mutual TLS with the TPM key via the provider, WIT + WPT headers.
Result<int> CallB(SSL_CTX* ctx, int port, const std::string& path, const std::string& wit,
                  const std::string& wpt, std::string* tls_version) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (fd >= 0) ::close(fd);
    return Error(Layer::kIo, "cannot connect to workload B");
  }
  SslPtr ssl(SSL_new(ctx));
  SSL_set_fd(ssl.get(), fd);
  SSL_set_tlsext_host_name(ssl.get(), "localhost");
  SSL_set1_host(ssl.get(), "localhost");
  if (SSL_connect(ssl.get()) != 1) {
    std::string err = SslErrors();
    ::close(fd);
    return Error(Layer::kOpenSsl, "TLS handshake with workload B failed: " + err);
  }
  *tls_version = SSL_get_version(ssl.get());
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost:" + std::to_string(port) +
                    "\r\nWorkload-Identity-Token: " + wit + "\r\nAuthorization: WPT " + wpt +
                    "\r\nConnection: close\r\n\r\n";
  SSL_write(ssl.get(), req.data(), static_cast<int>(req.size()));
  std::string resp;
  char buf[4096];
  int n;
  while ((n = SSL_read(ssl.get(), buf, sizeof(buf))) > 0) resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (resp.rfind("HTTP/1.1 ", 0) != 0 || resp.size() < 12) {
    return Error(Layer::kParse, "no HTTP response from workload B");
  }
  return std::atoi(resp.substr(9, 3).c_str());
}

std::string DefaultProviderDir() {
  if (const char* env = std::getenv("WIMSE_PROVIDER_DIR")) return env;
  return "";  // OpenSSL's MODULESDIR (where `meson install` puts wimsetpm.so)
}

void RunDemo(GlobalOptions& g, const DemoOptions& o) {
  Narrative story;
  std::string tcti = tpm::ResolveTcti(g.tcti);
  // The provider loaded below reads the TPM from the same variable.
  setenv("WIMSE_TPM_TCTI", tcti.c_str(), 1);
  auto ctx = tpm::SharedContext(tcti);
  auto fail = [&](const std::string& who, const Error& e) {
    story.Failed(who, e.ToString());
    g.exit_code = 1;
  };
  if (auto s = ctx->Connect(); !s.ok()) return fail("tpm", s.error());
  story.Step("tpm", "connected to " + tcti);

  std::string dir = o.workdir;
  if (dir.empty()) {
    char tmpl[] = "/tmp/wimse-demo-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return fail("demo", Error(Layer::kIo, "mkdtemp failed"));
    dir = tmpl;
  }

  // 1. Workload key in the TPM.
  auto key = tpm::WorkloadKey::Create(ctx, KeyAlg::kEcP256);
  if (!key.ok()) return fail("agent", key.error());
  std::string key_path = dir + "/workload-a.key.pem";
  if (auto s = (*key)->Save(key_path); !s.ok()) return fail("agent", s.error());
  story.Step("agent",
             "workload key made in the TPM (ECC P-256, fixedTPM|fixedParent, sign only),"
             " TPM name " +
                 Short(HexEncode((*key)->name()), 20) + ", saved " + key_path);

  // 2. Verifier nonce.
  Bytes nonce(32);
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1) {
    return fail("verifier", OpenSslError("RAND_bytes"));
  }
  story.Step("verifier", "challenge nonce " + Short(HexEncode(nonce)));

  // 3. Evidence.
  auto evidence = attest::ProduceEvidenceCmw(*ctx, **key, nonce);
  if (!evidence.ok()) return fail("agent", evidence.error());
  story.Step("agent",
             "evidence: quote over sha256 PCRs 0-7 + TPM2_Certify of the workload key by"
             " the AK, same nonce (" +
                 std::to_string(evidence->size()) + " bytes CMW)");

  // 4. Appraisal.
  // The verifier pins the AK of the TPM it is talking to (this demo runs on one host; the
  // EK-bound enrolment with credential activation is what ci/demo-flow's service does).
  auto ak_public = attest::ReadAkPublic(*ctx);
  if (!ak_public.ok()) return fail("verifier", ak_public.error());
  auto ak_area = UnmarshalTpm2bPublic(*ak_public);
  if (!ak_area.ok()) return fail("verifier", ak_area.error());
  auto ak_key = PublicKeyFromTpmPublic(ak_area->publicArea);
  if (!ak_key.ok()) return fail("verifier", ak_key.error());
  auto ak_spki = PublicKeyToDer(ak_key->get());
  if (!ak_spki.ok()) return fail("verifier", ak_spki.error());
  attest::AppraisalOptions aopts;
  aopts.trusted_ak_spki = *ak_spki;
  aopts.expected_nonce = nonce;
  aopts.now_unix = static_cast<int64_t>(std::time(nullptr));
  auto appraisal = attest::AppraiseCmw(*evidence, aopts);
  if (!appraisal.affirming()) {
    story.Failed("verifier", appraisal.Summary());
    g.exit_code = 1;
    return;
  }
  auto attested_key = PublicKeyFromDer(appraisal.workload_key_spki);
  if (!attested_key.ok()) return fail("verifier", attested_key.error());
  story.Step("verifier",
             "affirming: pinned AK, magic, type, nonce, PCR selection and digest,"
             " signatures, AK and key attributes, certified name all check out");

  // 5. WIT from the issuer, bound to the key taken from the appraisal result.
  auto issuer = SoftwareSigner::Generate(KeyAlg::kEcP256);
  if (!issuer.ok()) return fail("issuer", issuer.error());
  WitRequest wreq;
  wreq.sub = kWorkloadA;
  wreq.iss = "https://issuer.example.org";
  wreq.workload_key = attested_key->get();
  WitIssueOptions wopts;
  wopts.kid = "demo-issuer-1";
  wopts.ttl_seconds = 600;
  auto wit = IssueWit(**issuer, wreq, wopts);
  if (!wit.ok()) return fail("issuer", wit.error());
  story.Step("issuer", std::string("WIT for ") + kWorkloadA + ", cnf.jwk = attested key, sha256 " +
                           Short(TokenHashB64(*wit)));

  // 6. Trust domain CA: client certificate for A (the TPM key), server certificate for B.
  EvpPkeyPtr ca_key(EVP_PKEY_Q_keygen(nullptr, "provider=default", "EC", "prime256v1"));
  EvpPkeyPtr b_key(EVP_PKEY_Q_keygen(nullptr, "provider=default", "EC", "prime256v1"));
  if (!ca_key || !b_key) return fail("ca", OpenSslError("keygen"));
  x509::CertificateRequest ca_req;
  ca_req.subject_public_key = ca_key.get();
  ca_req.common_name = "example.org demo CA";
  ca_req.is_ca = true;
  auto ca_cert = x509::IssueCertificate(ca_req, ca_key.get(), nullptr);
  if (!ca_cert.ok()) return fail("ca", ca_cert.error());
  x509::CertificateRequest a_req;
  a_req.subject_public_key = attested_key->get();
  a_req.common_name = "workload a";
  a_req.uri_san = kWorkloadA;
  a_req.lifetime = std::chrono::seconds(600);
  auto a_cert = x509::IssueCertificate(a_req, ca_key.get(), ca_cert->get());
  x509::CertificateRequest b_req;
  b_req.subject_public_key = b_key.get();
  b_req.common_name = "workload b";
  b_req.uri_san = kWorkloadB;
  b_req.dns_san = "localhost";
  b_req.server_auth = true;
  auto b_cert = x509::IssueCertificate(b_req, ca_key.get(), ca_cert->get());
  if (!a_cert.ok()) return fail("ca", a_cert.error());
  if (!b_cert.ok()) return fail("ca", b_cert.error());
  auto a_pem = x509::CertificateToPem(a_cert->get());
  auto ca_pem = x509::CertificateToPem(ca_cert->get());
  if (!a_pem.ok() || !ca_pem.ok()) return fail("ca", Error(Layer::kOpenSsl, "PEM encoding"));
  if (auto s = WriteFileAtomic(dir + "/workload-a.cert.pem", *a_pem); !s.ok()) {
    return fail("ca", s.error());
  }
  if (auto s = WriteFileAtomic(dir + "/bundle.pem", *ca_pem); !s.ok()) return fail("ca", s.error());
  story.Step("ca", std::string("certificate for workload A (URI SAN ") + kWorkloadA +
                       ", TPM public key) and for workload B, signed by the trust-domain CA");

  // 7. Workload B listens (software server key; requires a client certificate from the CA).
  SslCtxPtr server_ctx(SSL_CTX_new(TLS_server_method()));
  X509_STORE* server_store = server_ctx ? SSL_CTX_get_cert_store(server_ctx.get()) : nullptr;
  if (!server_ctx || SSL_CTX_use_certificate(server_ctx.get(), b_cert->get()) != 1 ||
      SSL_CTX_use_PrivateKey(server_ctx.get(), b_key.get()) != 1 ||
      X509_STORE_add_cert(server_store, ca_cert->get()) != 1) {
    return fail("workload B", Error(Layer::kOpenSsl, SslErrors()));
  }
  SSL_CTX_set_verify(server_ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  TrustAnchors anchors;
  if (auto s = anchors.AddKey("example.org", "demo-issuer-1", (*issuer)->public_key()); !s.ok()) {
    return fail("workload B", s.error());
  }
  std::string path = "/orders";
  WorkloadB server(server_ctx.get(), &anchors, &story);
  if (auto s = server.Listen(); !s.ok()) return fail("workload B", s.error());
  std::string audience = "https://localhost:" + std::to_string(server.port()) + path;
  server.set_audience(audience);
  story.Step("workload B", "listening on " + audience + " (mutual TLS required)");

  // 8. Workload A: a library context with the wimsetpm provider (and default) loads the TPM key
  // file through the provider's decoder; libssl signs CertificateVerify in the TPM.
  ctx->FlushCache();  // the provider has its own TPM context; leave it the object slots
  LibCtxPtr libctx(OSSL_LIB_CTX_new());
  if (!libctx) return fail("workload A", OpenSslError("OSSL_LIB_CTX_new"));
  if (!o.provider_dir.empty() &&
      OSSL_PROVIDER_set_default_search_path(libctx.get(), o.provider_dir.c_str()) != 1) {
    return fail("workload A", OpenSslError("provider search path"));
  }
  OSSL_PROVIDER* tpm_prov = OSSL_PROVIDER_load(libctx.get(), "wimsetpm");
  OSSL_PROVIDER* def_prov = OSSL_PROVIDER_load(libctx.get(), "default");
  if (tpm_prov == nullptr || def_prov == nullptr) {
    return fail(
        "workload A",
        OpenSslError("cannot load the wimsetpm provider from \"" +
                     (o.provider_dir.empty() ? std::string("MODULESDIR") : o.provider_dir) + "\""));
  }
  // Hashing, ECDHE and verification stay in the default provider; only the key's own
  // operations go to wimsetpm (they follow the key).
  EVP_set_default_properties(libctx.get(), "?provider=default");
  EvpPkeyPtr tls_key;
  {
    auto pem = ReadFileString(key_path);
    if (!pem.ok()) return fail("workload A", pem.error());
    BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
    tls_key.reset(
        PEM_read_bio_PrivateKey_ex(bio.get(), nullptr, nullptr, nullptr, libctx.get(), nullptr));
    if (!tls_key) return fail("workload A", OpenSslError("provider could not load " + key_path));
  }
  const char* key_provider = OSSL_PROVIDER_get0_name(EVP_PKEY_get0_provider(tls_key.get()));
  SslCtxPtr client_ctx(SSL_CTX_new_ex(libctx.get(), nullptr, TLS_client_method()));
  if (!client_ctx || SSL_CTX_use_certificate(client_ctx.get(), a_cert->get()) != 1 ||
      SSL_CTX_use_PrivateKey(client_ctx.get(), tls_key.get()) != 1 ||
      SSL_CTX_check_private_key(client_ctx.get()) != 1 ||
      X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx.get()), ca_cert->get()) != 1) {
    return fail("workload A", Error(Layer::kOpenSsl, SslErrors()));
  }
  SSL_CTX_set_verify(client_ctx.get(), SSL_VERIFY_PEER, nullptr);
  story.Step("workload A", std::string("TLS client key loaded from ") + key_path +
                               " by provider \"" + (key_provider ? key_provider : "?") +
                               "\" (private key stays in the TPM)");

  // 9. WPT for this request, signed in the TPM.
  tpm::TpmSigner signer(*key);
  WptOptions popts;
  popts.audience = audience;
  auto wpt = SignWpt(signer, *wit, popts);
  if (!wpt.ok()) return fail("workload A", wpt.error());
  ctx->FlushCache();
  story.Step("workload A", "WPT signed in the TPM: aud " + audience +
                               ", wth = sha256(WIT), sha256 " + Short(TokenHashB64(*wpt)));

  // 10. The calls: TLS 1.3 with fresh tokens (allow), then the same WPT replayed (deny).
  struct Call {
    const char* what;
    int tls_version;
    std::string wpt;
    int expect;
  };
  auto wpt2 = SignWpt(signer, *wit, popts);
  if (!wpt2.ok()) return fail("workload A", wpt2.error());
  ctx->FlushCache();
  std::vector<Call> calls = {
      {"call over TLS 1.3", TLS1_3_VERSION, *wpt, 200},
      {"call over TLS 1.2 with a new WPT", TLS1_2_VERSION, *wpt2, 200},
      {"replay of the first WPT", TLS1_3_VERSION, *wpt, 401},
  };
  for (const Call& c : calls) {
    SSL_CTX_set_min_proto_version(client_ctx.get(), c.tls_version);
    SSL_CTX_set_max_proto_version(client_ctx.get(), c.tls_version);
    int served = 0;
    std::thread t([&] { served = server.ServeOne(); });
    std::string version;
    auto status = CallB(client_ctx.get(), server.port(), path, *wit, c.wpt, &version);
    t.join();
    if (!status.ok()) {
      story.Failed("workload A", std::string(c.what) + ": " + status.error().ToString());
      g.exit_code = 1;
      continue;
    }
    std::string line = std::string(c.what) + " (" + version + "): HTTP " + std::to_string(*status) +
                       ", expected " + std::to_string(c.expect);
    if (*status == c.expect && served == c.expect) {
      story.Step("workload A", line);
    } else {
      story.Failed("workload A", line);
      g.exit_code = 1;
    }
  }
  tls_key.reset();
  client_ctx.reset();
  if (story.ok()) {
    std::printf("demo: every step behaved as expected (files in %s)\n", dir.c_str());
  } else {
    g.exit_code = 1;
    std::printf("demo: FAILED\n");
  }
}

}  // namespace

void RegisterDemoCommand(CLI::App& app, GlobalOptions& g) {
  auto* demo = app.add_subcommand("demo", "Run the main job end to end on the TPM");
  auto o = std::make_shared<DemoOptions>();
  demo->add_option("--provider-dir", o->provider_dir,
                   "directory holding wimsetpm.so (default: $WIMSE_PROVIDER_DIR, else OpenSSL's "
                   "modules directory)");
  demo->add_option("--workdir", o->workdir,
                   "directory for the demo's files (default: a new "
                   "/tmp/wimse-demo-* directory)");
  demo->callback([&g, o] {
    if (o->provider_dir.empty()) o->provider_dir = DefaultProviderDir();
    RunDemo(g, *o);
  });
}

}  // namespace wimse::cli
