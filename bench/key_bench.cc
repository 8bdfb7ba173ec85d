// Signing and mutual-TLS throughput against one TPM (ci/bench runs it; never a timed test).
//
//   key_bench raw KEY            Esys_Sign of the loaded P-256 key, password session: the limit
//                                (on our TCTI: for swtpm, the persistent transport, src/tpm/tcti.h)
//   key_bench raw-tss KEY        the same Esys_Sign on tpm2-tss's own TCTI for the same string
//                                (Tss2_TctiLdr; for swtpm: a new connection per command), as
//                                tpm2-openssl and tpm2-tools talk to the TPM
//   key_bench ours KEY           WorkloadKey::SignDigest (empty auth: password session)
//   key_bench sparse KEY         mean SignDigest latency with 15 ms pauses (the key is released
//                                to other clients in each pause and reloaded)
//   key_bench salted KEY AUTHENV WorkloadKey::SignDigest with an auth value: salted HMAC session
//                                with AES-128-CFB parameter encryption, kept open (our own
//                                session arithmetic, src/tpm/hmac_session.h)
//   key_bench salted-esys KEY AUTHENV  the same command in ESAPI's salted session (tpm2-tss
//                                computes the session crypto): the path the above replaced
//   key_bench provider SO KEY    EVP_DigestSign(SHA-256) through a provider module (path or
//                                name, e.g. build/provider/wimsetpm.so or "tpm2")
//   key_bench tls software KEY SO  the same with a software client key in a library context that
//                                also has the provider loaded (what its presence alone costs)
//   key_bench tls SO|software KEY  TLS 1.3 mutual-TLS handshakes/s, client key from the provider
//                                (or a software P-256 key), in-process client and server over
//                                127.0.0.1; the server has its own library context (default
//                                provider only), as a remote server would;
//                                WIMSE_BENCH_TLS_CONNS=N runs N handshakes at a time (mode name
//                                gets the suffix _Nconn)
// Every mode runs for WIMSE_BENCH_SECONDS (default 2) after a short warm-up and prints one line
// "RESULT <mode> <ops/s> <ops> <seconds>". Signatures are verified (a few) so a broken path
// cannot look fast. The TPM comes from WIMSE_TPM_TCTI (and TPM2OPENSSL_TCTI for tpm2-openssl).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <tss2/tss2_tctildr.h>

#include "bench/raw_sign.h"
#include "crypto/ecdsa.h"
#include "crypto/public_key.h"
#include "tpm/workload_key.h"

namespace {

using wimse::Bytes;
using wimse::HashAlg;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "key_bench: %s\n", what.c_str());
  ERR_print_errors_fp(stderr);
  std::exit(1);
}

double Seconds() {
  const char* s = std::getenv("WIMSE_BENCH_SECONDS");
  return s != nullptr ? std::atof(s) : 2.0;
}

// Runs op() for the configured time after a warm-up; prints and returns ops/s.
void Measure(const char* name, const std::function<bool()>& op) {
  for (int i = 0; i < 5; ++i) {
    if (!op()) Die(std::string(name) + ": warm-up operation failed");
  }
  double limit = Seconds();
  auto start = Clock::now();
  long n = 0;
  double elapsed = 0;
  do {
    if (!op()) Die(std::string(name) + ": operation failed");
    ++n;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < limit);
  std::printf("RESULT %s %.1f %ld %.2f\n", name, n / elapsed, n, elapsed);
  std::fflush(stdout);
}

// The same with `threads` callers running op() concurrently (each its own warm-up); prints the
// combined ops/s.
void MeasureParallel(const std::string& name, int threads, const std::function<bool()>& op) {
  for (int i = 0; i < 5; ++i) {
    if (!op()) Die(name + ": warm-up operation failed");
  }
  double limit = Seconds();
  std::atomic<long> total{0};
  std::atomic<bool> failed{false};
  auto start = Clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      long n = 0;
      while (!failed && std::chrono::duration<double>(Clock::now() - start).count() < limit) {
        if (!op()) {
          failed = true;
          break;
        }
        ++n;
      }
      total += n;
    });
  }
  for (auto& w : workers) w.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  if (failed) Die(name + ": operation failed");
  std::printf("RESULT %s %.1f %ld %.2f\n", name.c_str(), total / elapsed, total.load(), elapsed);
  std::fflush(stdout);
}

std::shared_ptr<wimse::tpm::WorkloadKey> OpenKey(const std::string& path) {
  auto ctx = wimse::tpm::SharedContext(wimse::tpm::ResolveTcti(""));
  auto key = wimse::tpm::OpenKey(ctx, path);
  if (!key.ok()) Die(key.error().ToString());
  return *key;
}

Bytes BenchDigest() {
  auto d = wimse::Digest(HashAlg::kSha256, wimse::AsBytes("wimse-tpm bench"));
  return *d;
}

// Nothing but Esys_Sign of the loaded key `k` with a password session, on `esys`.
void MeasurePasswordSign(const char* name, ESYS_CONTEXT* esys, ESYS_TR k,
                         const wimse::bench::RawSignInputs& raw) {
  Measure(name, [&] {
    TPMT_SIGNATURE* sig = nullptr;
    TSS2_RC rc = Esys_Sign(esys, k, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &raw.digest,
                           &raw.scheme, &raw.ticket, &sig);
    Esys_Free(sig);
    return rc == TSS2_RC_SUCCESS;
  });
}

void RunRaw(const std::string& path) {
  auto key = OpenKey(path);
  Bytes digest = BenchDigest();
  wimse::bench::RawSignInputs raw(digest);
  auto ctx = key->context();
  // Load once; then nothing but Esys_Sign with a password session.
  auto s = ctx->Run([&](ESYS_CONTEXT* esys) -> wimse::Status {
    auto tr = key->LoadLocked(esys);
    if (!tr.ok()) return tr.error();
    MeasurePasswordSign("raw_esys_sign_password", esys, *tr, raw);
    return wimse::OkStatus();
  });
  if (!s.ok()) Die(s.error().ToString());
  ctx->FlushCache();
}

// The key is loaded through our context and handed over as a saved context to a second ESYS
// context on tpm2-tss's own TCTI, which loads it and signs with it.
void RunRawTss(const std::string& path) {
  // Our context hands its objects back when its Run ends (idle 0) or its connection goes idle:
  // the key is passed to the other connection as a saved context, which that connection loads
  // itself. Idle 0: our transport closes after every response, so the other one gets swtpm.
  setenv("WIMSE_SWTPM_IDLE_MS", "0", 1);
  auto key = OpenKey(path);
  Bytes digest = BenchDigest();
  wimse::bench::RawSignInputs raw(digest);
  auto ctx = key->context();
  auto saved = ctx->Run([&](ESYS_CONTEXT* esys) -> wimse::Result<TPMS_CONTEXT> {
    auto tr = key->LoadLocked(esys);
    if (!tr.ok()) return tr.error();
    TPMS_CONTEXT* out = nullptr;
    TSS2_RC rc = Esys_ContextSave(esys, *tr, &out);
    if (rc != TSS2_RC_SUCCESS) return wimse::tpm::TpmError("Esys_ContextSave", rc);
    TPMS_CONTEXT copy = *out;
    Esys_Free(out);
    return copy;
  });
  if (!saved.ok()) Die(saved.error().ToString());
  TSS2_TCTI_CONTEXT* tcti = nullptr;
  ESYS_CONTEXT* esys = nullptr;
  ESYS_TR k = ESYS_TR_NONE;
  if (Tss2_TctiLdr_Initialize(ctx->tcti().c_str(), &tcti) != TSS2_RC_SUCCESS ||
      Esys_Initialize(&esys, tcti, nullptr) != TSS2_RC_SUCCESS ||
      Esys_ContextLoad(esys, &*saved, &k) != TSS2_RC_SUCCESS) {
    Die("tpm2-tss TCTI \"" + ctx->tcti() + "\": cannot load the saved key context");
  }
  MeasurePasswordSign("raw_esys_sign_password_tss_tcti", esys, k, raw);
  Esys_FlushContext(esys, k);
  Esys_Finalize(&esys);
  Tss2_TctiLdr_Finalize(&tcti);
  ctx->FlushCache();
}

void RunOurs(const char* name, const std::string& path, const char* auth_env) {
  auto key = OpenKey(path);
  if (auth_env != nullptr) {
    const char* v = std::getenv(auth_env);
    if (v == nullptr) Die(std::string(auth_env) + " unset");
    key->SetAuth(wimse::SecretBytes(wimse::AsBytes(v)));
  }
  Bytes digest = BenchDigest();
  auto first = key->SignDigest(HashAlg::kSha256, digest);
  if (!first.ok()) Die(first.error().ToString());
  if (!wimse::VerifyDigest(key->public_key(), HashAlg::kSha256, digest, *first).ok()) {
    Die("signature does not verify");
  }
  Measure(name, [&] { return key->SignDigest(HashAlg::kSha256, digest).ok(); });
  key->context()->FlushCache();
}

// Signatures with pauses longer than the swtpm idle period: each one finds its key released
// to other clients (TpmContext) and reloads it. Prints the mean latency of SignDigest in
// microseconds as "RESULT sparse_sign_us <mean> <n> <seconds>"; compare with
// WIMSE_SWTPM_IDLE_MS above the pause (nothing released, the key stays loaded).
void RunSparse(const std::string& path) {
  auto key = OpenKey(path);
  Bytes digest = BenchDigest();
  constexpr int kSignatures = 100;
  constexpr auto kPause = std::chrono::milliseconds(15);
  if (!key->SignDigest(HashAlg::kSha256, digest).ok()) Die("sparse: first signature failed");
  double total = 0;
  auto begin = Clock::now();
  for (int i = 0; i < kSignatures; ++i) {
    std::this_thread::sleep_for(kPause);
    auto start = Clock::now();
    if (!key->SignDigest(HashAlg::kSha256, digest).ok()) Die("sparse: signature failed");
    total += std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  }
  double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  std::printf("RESULT sparse_sign_us %.1f %d %.2f\n", total / kSignatures, kSignatures, elapsed);
  std::printf("RESULT sparse_idle_releases %llu %d %.2f\n",
              static_cast<unsigned long long>(key->context()->idle_releases()), kSignatures,
              elapsed);
  key->context()->FlushCache();
}

// The path this replaced (kept for comparison): Esys_Sign of the loaded key with an auth value in
// ESAPI's own salted HMAC session with AES-128-CFB parameter encryption (TpmContext::
// SecureSessionLocked); tpm2-tss computes the session hashes and HMACs itself.
void RunSaltedEsys(const std::string& path, const char* auth_env) {
  auto key = OpenKey(path);
  const char* v = std::getenv(auth_env);
  if (v == nullptr) Die(std::string(auth_env) + " unset");
  Bytes digest = BenchDigest();
  wimse::bench::RawSignInputs raw(digest);
  auto ctx = key->context();
  auto s = ctx->Run([&](ESYS_CONTEXT* esys) -> wimse::Status {
    auto tr = key->LoadLocked(esys);
    if (!tr.ok()) return tr.error();
    auto session = ctx->SecureSessionLocked(esys);
    if (!session.ok()) return session.error();
    TPM2B_AUTH auth{};
    auth.size = static_cast<UINT16>(std::strlen(v));
    std::memcpy(auth.buffer, v, auth.size);
    Esys_TR_SetAuth(esys, *tr, &auth);
    Esys_TRSess_SetAttributes(esys, *session, TPMA_SESSION_CONTINUESESSION | TPMA_SESSION_DECRYPT,
                              0xff);
    Measure("esys_salted_encrypted", [&] {
      TPMT_SIGNATURE* sig = nullptr;
      TSS2_RC rc = Esys_Sign(esys, *tr, *session, ESYS_TR_NONE, ESYS_TR_NONE, &raw.digest,
                             &raw.scheme, &raw.ticket, &sig);
      Esys_Free(sig);
      return rc == TSS2_RC_SUCCESS;
    });
    TPM2B_AUTH empty{};
    Esys_TR_SetAuth(esys, *tr, &empty);
    return wimse::OkStatus();
  });
  if (!s.ok()) Die(s.error().ToString());
  ctx->FlushCache();
}

struct Provided {
  OSSL_LIB_CTX* libctx = nullptr;
  EVP_PKEY* key = nullptr;
};

Provided LoadProviderKey(const std::string& module, const std::string& path) {
  Provided p;
  p.libctx = OSSL_LIB_CTX_new();
  if (OSSL_PROVIDER_load(p.libctx, "default") == nullptr) Die("default provider");
  // A module given as a path is loaded by name from its directory, so the provider's name (and
  // every "provider=..." property query) is "wimsetpm", not the path.
  std::string name = module;
  size_t slash = module.rfind('/');
  if (slash != std::string::npos) {
    OSSL_PROVIDER_set_default_search_path(p.libctx, module.substr(0, slash).c_str());
    name = module.substr(slash + 1);
    if (name.size() > 3 && name.compare(name.size() - 3, 3, ".so") == 0)
      name.resize(name.size() - 3);
  }
  if (OSSL_PROVIDER_load(p.libctx, name.c_str()) == nullptr) Die("cannot load provider " + module);
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) Die("cannot open " + path);
  std::string pem;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) pem.append(buf, n);
  std::fclose(f);
  OSSL_DECODER_CTX* dctx = OSSL_DECODER_CTX_new_for_pkey(
      &p.key, "PEM", nullptr, "EC", OSSL_KEYMGMT_SELECT_KEYPAIR, p.libctx, nullptr);
  const unsigned char* data = reinterpret_cast<const unsigned char*>(pem.data());
  size_t len = pem.size();
  if (dctx == nullptr || OSSL_DECODER_from_data(dctx, &data, &len) != 1 || p.key == nullptr) {
    Die("provider " + module + " cannot decode " + path);
  }
  OSSL_DECODER_CTX_free(dctx);
  return p;
}

void RunProvider(const char* name, const std::string& module, const std::string& path) {
  Provided p = LoadProviderKey(module, path);
  const char* propq = module == "tpm2" ? "?provider=tpm2" : nullptr;
  std::string msg = "wimse-tpm bench message";
  auto sign = [&](Bytes* out) {
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    // tpm2-openssl needs its own signature implementation preferred (OpenSSL 3.0 otherwise
    // picks the default provider's, which has only the exported public half).
    bool ok = EVP_DigestSignInit_ex(md, nullptr, "SHA256", p.libctx, propq, p.key, nullptr) == 1;
    size_t len = 0;
    ok = ok && EVP_DigestSign(md, nullptr, &len, reinterpret_cast<const unsigned char*>(msg.data()),
                              msg.size()) == 1;
    Bytes sig(len);
    ok = ok && EVP_DigestSign(md, sig.data(), &len,
                              reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1;
    EVP_MD_CTX_free(md);
    sig.resize(len);
    if (out != nullptr) *out = sig;
    return ok;
  };
  Bytes sig;
  if (!sign(&sig)) Die(std::string(name) + ": EVP_DigestSign failed");
  // Verify in software against the key file's public area (no TPM, no provider).
  auto file_key =
      wimse::tpm::WorkloadKey::Open(std::make_shared<wimse::tpm::TpmContext>("none"), path);
  if (!file_key.ok()) Die(file_key.error().ToString());
  auto raw = wimse::EcdsaDerToRaw(sig, 32);
  auto digest = wimse::Digest(HashAlg::kSha256, wimse::AsBytes(msg));
  if (!raw.ok() ||
      !wimse::VerifyDigest((*file_key)->public_key(), HashAlg::kSha256, *digest, *raw).ok()) {
    Die(std::string(name) + ": signature does not verify");
  }
  Measure(name, [&] { return sign(nullptr); });
  EVP_PKEY_free(p.key);
  OSSL_LIB_CTX_free(p.libctx);
}

// ---- TLS 1.3 mutual TLS ----------------------------------------------------------------------

EVP_PKEY* SoftwareP256(OSSL_LIB_CTX* libctx) {
  EVP_PKEY_CTX* c = EVP_PKEY_CTX_new_from_name(libctx, "EC", "provider=default");
  EVP_PKEY* k = nullptr;
  if (c == nullptr || EVP_PKEY_keygen_init(c) != 1 ||
      EVP_PKEY_CTX_set_group_name(c, "prime256v1") != 1 || EVP_PKEY_generate(c, &k) != 1) {
    Die("software keygen");
  }
  EVP_PKEY_CTX_free(c);
  return k;
}

X509* MakeCert(OSSL_LIB_CTX* libctx, EVP_PKEY* subject_key, const char* cn, EVP_PKEY* ca_key,
               X509* ca_cert, long serial) {
  X509* x = X509_new_ex(libctx, nullptr);
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_NAME* name = X509_NAME_new();
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509_set_subject_name(x, name);
  X509_set_issuer_name(x, ca_cert != nullptr ? X509_get_subject_name(ca_cert) : name);
  X509_NAME_free(name);
  if (X509_set_pubkey(x, subject_key) != 1) Die("X509_set_pubkey");
  BASIC_CONSTRAINTS* bc = BASIC_CONSTRAINTS_new();
  bc->ca = ca_cert == nullptr ? 0xff : 0;
  X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT);
  BASIC_CONSTRAINTS_free(bc);
  if (X509_sign(x, ca_key, EVP_sha256()) <= 0) Die("X509_sign");
  return x;
}

int ListenLoopback(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 16) != 0)
    Die("listen");
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// `with_module`: a software client key, but in a library context that has the provider module
// loaded as well (it separates what the provider's mere presence costs from the TPM signature).
void RunTls(const std::string& module, const std::string& path, const std::string& with_module) {
  bool software = module == "software";
  OSSL_LIB_CTX* libctx = nullptr;
  EVP_PKEY* client_key = nullptr;
  if (software && !with_module.empty()) {
    Provided p = LoadProviderKey(with_module, path);
    EVP_PKEY_free(p.key);
    libctx = p.libctx;
    client_key = SoftwareP256(libctx);
  } else if (software) {
    libctx = OSSL_LIB_CTX_new();
    OSSL_PROVIDER_load(libctx, "default");
    client_key = SoftwareP256(libctx);
  } else {
    Provided p = LoadProviderKey(module, path);
    libctx = p.libctx;
    client_key = p.key;
  }
  // The server is what a remote TLS server would be: its own library context with the default
  // provider only (it does not load wimsetpm), the same in every mode. The CA lives there too.
  OSSL_LIB_CTX* server_libctx = OSSL_LIB_CTX_new();
  if (OSSL_PROVIDER_load(server_libctx, "default") == nullptr) Die("default provider (server)");
  EVP_PKEY* ca_key = SoftwareP256(server_libctx);
  X509* ca = MakeCert(server_libctx, ca_key, "bench CA", ca_key, nullptr, 1);
  EVP_PKEY* server_key = SoftwareP256(server_libctx);
  X509* server_cert = MakeCert(server_libctx, server_key, "localhost", ca_key, ca, 2);
  // The client certificate carries the client key's public part (for the TPM key: exported
  // from the provider's keymgmt, public only).
  X509* client_cert = MakeCert(libctx, client_key, "bench client", ca_key, ca, 3);

  SSL_CTX* sctx = SSL_CTX_new_ex(server_libctx, nullptr, TLS_server_method());
  SSL_CTX* cctx = SSL_CTX_new_ex(libctx, nullptr, TLS_client_method());
  for (SSL_CTX* c : {sctx, cctx}) {
    SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(c), ca);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  if (SSL_CTX_use_certificate(sctx, server_cert) != 1 ||
      SSL_CTX_use_PrivateKey(sctx, server_key) != 1 ||
      SSL_CTX_use_certificate(cctx, client_cert) != 1 ||
      SSL_CTX_use_PrivateKey(cctx, client_key) != 1) {
    Die("SSL_CTX_use_*");
  }
  int port = 0;
  int listener = ListenLoopback(&port);
  // WIMSE_BENCH_TLS_CONNS (default 1): handshakes in flight at once, each with its own client
  // thread and server thread. With more than one, one handshake's TPM signature overlaps the
  // others' CPU work, as for an agent or proxy that opens connections concurrently.
  const char* conns_env = std::getenv("WIMSE_BENCH_TLS_CONNS");
  int conns = conns_env != nullptr ? std::atoi(conns_env) : 1;
  if (conns < 1 || conns > 64) Die("WIMSE_BENCH_TLS_CONNS must be 1..64");
  std::atomic<bool> stop{false};
  auto serve = [&] {
    while (!stop) {
      int fd = accept(listener, nullptr, nullptr);
      if (fd < 0) continue;
      if (stop) {  // the connection that unblocks accept() at the end
        close(fd);
        break;
      }
      SSL* s = SSL_new(sctx);
      SSL_set_fd(s, fd);
      if (SSL_accept(s) != 1) {
        std::fprintf(stderr, "server: handshake failed\n");
        ERR_print_errors_fp(stderr);
      } else {
        char b;
        SSL_read(s, &b, 1);  // the client's one byte: the handshake is complete on both sides
      }
      SSL_free(s);
      close(fd);
    }
  };
  std::vector<std::thread> servers;
  for (int i = 0; i < conns; ++i) servers.emplace_back(serve);
  auto handshake = [&] {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      close(fd);
      return false;
    }
    SSL* c = SSL_new(cctx);
    SSL_set_fd(c, fd);
    bool ok = SSL_connect(c) == 1 && SSL_write(c, "x", 1) == 1;
    if (!ok) ERR_print_errors_fp(stderr);
    SSL_free(c);
    close(fd);
    return ok;
  };
  std::string label = !software             ? "tls13_mtls_tpm_key"
                      : with_module.empty() ? "tls13_mtls_software_key"
                                            : "tls13_mtls_software_key_provider_loaded";
  if (conns == 1) {
    Measure(label.c_str(), handshake);
  } else {
    MeasureParallel(label + "_" + std::to_string(conns) + "conn", conns, handshake);
  }
  stop = true;
  // Unblock every server thread's accept().
  for (int i = 0; i < conns; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    close(fd);
  }
  for (auto& t : servers) t.join();
  close(listener);
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
  X509_free(ca);
  X509_free(server_cert);
  X509_free(client_cert);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(server_key);
  EVP_PKEY_free(client_key);
  OSSL_LIB_CTX_free(libctx);
  OSSL_LIB_CTX_free(server_libctx);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: key_bench raw|raw-tss|ours|salted|salted-esys|provider|tls ...\n");
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);  // a peer that closes early must be an error, not a kill
  std::string mode = argv[1];
  if (mode == "raw") {
    RunRaw(argv[2]);
  } else if (mode == "raw-tss") {
    RunRawTss(argv[2]);
  } else if (mode == "sparse") {
    RunSparse(argv[2]);
  } else if (mode == "ours") {
    RunOurs("ours_password", argv[2], nullptr);
  } else if (mode == "salted" && argc >= 4) {
    RunOurs("ours_salted_encrypted", argv[2], argv[3]);
  } else if (mode == "salted-esys" && argc >= 4) {
    RunSaltedEsys(argv[2], argv[3]);
  } else if (mode == "provider" && argc >= 4) {
    std::string module = argv[2];
    std::string label =
        module.find("wimsetpm") != std::string::npos ? "provider_wimsetpm" : "provider_" + module;
    RunProvider(label.c_str(), module, argv[3]);
  } else if (mode == "tls" && argc >= 4) {
    RunTls(argv[2], argv[3], argc >= 5 ? argv[4] : "");
  } else {
    std::fprintf(stderr, "key_bench: bad arguments\n");
    return 2;
  }
  return 0;
}
