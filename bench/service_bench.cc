// Helper for ci/bench-service (issue 6): raw TPM command timings on the TPM the agents use, and
// seeding the credential service's SQLite state through the StateStore interface.
//
//   service_bench tpm N
//       N rounds of the TPM commands an agent bootstrap sends, each timed alone in the same
//       process and connection: TPM2_Create of a P-256 workload key (SRK context-loaded), its
//       TPM2_Load, TPM2_CreatePrimary of the AK, TPM2_PCR_Read, TPM2_Quote, TPM2_Certify,
//       TPM2_Sign; then the whole evidence production (attest::ProduceEvidenceCmw) as the agent
//       runs it. Prints "RAW <name> <median ms> <p90 ms>". Leaves nothing loaded.
//   service_bench burst URL CA_PEM PREFIX N
//       N agents attesting at once, the TPM out of the way: N nonces are fetched for
//       PREFIX-00001.. and N evidence records made first (one workload key, one CSR), then N
//       threads each open their own TLS connection and POST /v1/attest at the same instant.
//       Prints "BURST <ok> <p50 ms> <p99 ms> <max ms>" (client side: connect + TLS + request).
//   service_bench seed DB TEMPLATE_IDENTITY PREFIX N
//       Copies the enrolment of TEMPLATE_IDENTITY (a real one, made by an agent) to N identities
//       PREFIX-00001.. (same AK: they are agents of the same TPM), through
//       SqliteStateStore::PutEnrollment. Prints the count on file.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <httplib.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "agent/agent.h"
#include "attest/evidence.h"
#include "attest/service/csr.h"
#include "attest/service/state_store.h"
#include "crypto/signer.h"
#include "jose/json.h"
#include "tpm/attestation.h"
#include "tpm/context.h"
#include "tpm/workload_key.h"

namespace wimse {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int Die(const std::string& what, const Error& e) {
  std::fprintf(stderr, "service_bench: %s: %s\n", what.c_str(), e.ToString().c_str());
  return 1;
}

int RunTpm(int rounds) {
  const char* tcti = std::getenv("WIMSE_TPM_TCTI");
  if (tcti == nullptr) {
    std::fprintf(stderr, "service_bench: WIMSE_TPM_TCTI unset\n");
    return 1;
  }
  auto ctx = tpm::SharedContext(tcti);
  std::map<std::string, std::vector<double>> t;
  Bytes nonce(32, 0x5a);
  Bytes digest(32, 0x11);
  for (int i = 0; i < rounds; ++i) {
    nonce[0] = static_cast<uint8_t>(i);
    auto t0 = Clock::now();
    auto key = tpm::WorkloadKey::Create(ctx, KeyAlg::kEcP256);
    auto t1 = Clock::now();
    if (!key.ok()) return Die("TPM2_Create", key.error());
    t["create_key (TPM2_Create, SRK context-loaded)"].push_back(Ms(t0, t1));
    ctx->FlushCache();
    Status s = ctx->Run([&](ESYS_CONTEXT* esys) -> Status {
      auto a = Clock::now();
      WIMSE_ASSIGN_OR_RETURN(ESYS_TR key_tr, (*key)->LoadLocked(esys));
      auto b = Clock::now();
      WIMSE_ASSIGN_OR_RETURN(tpm::AttestationKey ak, tpm::CreateAkLocked(esys));
      auto c = Clock::now();
      WIMSE_ASSIGN_OR_RETURN(auto pcrs, tpm::PcrReadLocked(esys, TPM2_ALG_SHA256, 0xff));
      auto d = Clock::now();
      WIMSE_ASSIGN_OR_RETURN(auto q,
                             tpm::QuoteLocked(esys, ak.handle.get(), nonce, TPM2_ALG_SHA256, 0xff));
      auto e = Clock::now();
      WIMSE_ASSIGN_OR_RETURN(auto cert, tpm::CertifyLocked(esys, key_tr, ak.handle.get(), nonce));
      auto f = Clock::now();
      t["load_key (TPM2_Load + SRK ContextLoad)"].push_back(Ms(a, b));
      t["ak_primary (TPM2_CreatePrimary ECC P-256)"].push_back(Ms(b, c));
      t["pcr_read (TPM2_PCR_Read sha256 0-7)"].push_back(Ms(c, d));
      t["quote (TPM2_Quote)"].push_back(Ms(d, e));
      t["certify (TPM2_Certify)"].push_back(Ms(e, f));
      (void)pcrs;
      (void)q;
      (void)cert;
      return OkStatus();
    });
    if (!s.ok()) return Die("quote/certify", s.error());
    auto g = Clock::now();
    auto sig = (*key)->SignDigest(HashAlg::kSha256, digest);  // key still cached: Sign alone
    auto h = Clock::now();
    if (!sig.ok()) return Die("TPM2_Sign", sig.error());
    t["sign (TPM2_Sign, key loaded)"].push_back(Ms(g, h));
    ctx->FlushCache();
    auto k = Clock::now();
    auto ev = attest::ProduceEvidenceCmw(*ctx, **key, nonce);
    auto l = Clock::now();
    if (!ev.ok()) return Die("evidence", ev.error());
    t["evidence (agent: load, AK, 2x PCR_Read, quote, certify)"].push_back(Ms(k, l));
    ctx->FlushCache();
  }
  for (auto& [name, v] : t) {
    std::sort(v.begin(), v.end());
    double med = v[v.size() / 2];
    double p90 = v[std::min(v.size() - 1, v.size() * 9 / 10)];
    std::printf("RAW %-58s %8.2f %8.2f\n", name.c_str(), med, p90);
  }
  return 0;
}

int RunBurst(const std::string& url, const std::string& ca, const std::string& prefix, int n) {
  const char* tcti = std::getenv("WIMSE_TPM_TCTI");
  if (tcti == nullptr) {
    std::fprintf(stderr, "service_bench: WIMSE_TPM_TCTI unset\n");
    return 1;
  }
  auto hp = agent::ParseServiceUrl(url);
  if (!hp.ok()) return Die("url", hp.error());
  auto post = [&](const std::string& path, const std::string& body, int* status) {
    httplib::SSLClient cli(hp->first, hp->second);
    cli.set_ca_cert_path(ca.c_str());
    cli.enable_server_certificate_verification(true);
    cli.set_read_timeout(60, 0);
    auto res = cli.Post(path.c_str(), body, "application/json");
    *status = res ? res->status : 0;
    return res ? res->body : std::string();
  };
  auto ctx = tpm::SharedContext(tcti);
  auto key = tpm::WorkloadKey::Create(ctx, KeyAlg::kEcP256);
  if (!key.ok()) return Die("key", key.error());
  tpm::TpmSigner signer(*key);
  auto csr = service::MakeCsrPem(signer, "w");
  if (!csr.ok()) return Die("csr", csr.error());
  std::vector<std::string> bodies;
  for (int i = 1; i <= n; ++i) {
    char id[64];
    std::snprintf(id, sizeof(id), "%s-%05d", prefix.c_str(), i);
    int status = 0;
    std::string ch = post("/v1/challenge", jose::SerializeJson({{"identity", id}}), &status);
    auto j = jose::ParseJsonObject(ch, {1 << 20, 8});
    if (status != 200 || !j.ok()) {
      std::fprintf(stderr, "service_bench: challenge %d: %s\n", status, ch.c_str());
      return 1;
    }
    auto nonce = HexDecode(j->value("nonce", std::string()));
    if (!nonce.ok()) return Die("nonce", nonce.error());
    auto ev = attest::ProduceEvidenceCmw(*ctx, **key, *nonce);
    if (!ev.ok()) return Die("evidence", ev.error());
    bodies.push_back(jose::SerializeJson({{"identity", id},
                                          {"label", "w"},
                                          {"nonce", HexEncode(*nonce)},
                                          {"evidence", *ev},
                                          {"csr", *csr}}));
  }
  ctx->FlushCache();
  std::vector<double> lat(n, 0);
  std::vector<int> status(n, 0);
  std::mutex mu;
  std::condition_variable cv;
  bool go = false;
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return go; });
      }
      auto a = Clock::now();
      std::string body = post("/v1/attest", bodies[i], &status[i]);
      lat[i] = Ms(a, Clock::now());
      if (status[i] != 200) {
        std::fprintf(stderr, "service_bench: attest %d: %.200s\n", status[i], body.c_str());
      }
    });
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    go = true;
  }
  cv.notify_all();
  for (auto& t : threads) {
    t.join();
  }
  int ok = static_cast<int>(std::count(status.begin(), status.end(), 200));
  std::sort(lat.begin(), lat.end());
  std::printf("BURST %d %.1f %.1f %.1f\n", ok, lat[lat.size() / 2],
              lat[std::min(lat.size() - 1, lat.size() * 99 / 100)], lat.back());
  return ok == n ? 0 : 1;
}

int RunSeed(const std::string& db, const std::string& tmpl, const std::string& prefix, int n) {
  auto store = service::SqliteStateStore::Open(db);
  if (!store.ok()) return Die("open", store.error());
  auto rec = (*store)->GetEnrollment(tmpl);
  if (!rec.ok()) return Die("read template", rec.error());
  if (!rec->has_value()) {
    std::fprintf(stderr, "service_bench: no enrolment for %s\n", tmpl.c_str());
    return 1;
  }
  attest::EnrollmentRecord r = **rec;
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  for (int i = 1; i <= n; ++i) {
    char id[64];
    std::snprintf(id, sizeof(id), "%s-%05d", prefix.c_str(), i);
    r.identity = id;
    if (auto s = (*store)->PutEnrollment(r, now); !s.ok()) return Die("seed", s.error());
  }
  auto count = (*store)->CountEnrollments();
  if (!count.ok()) return Die("count", count.error());
  std::printf("SEEDED %llu\n", static_cast<unsigned long long>(*count));
  return 0;
}

}  // namespace
}  // namespace wimse

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  if (a.size() == 2 && a[0] == "tpm") {
    return wimse::RunTpm(std::max(1, std::atoi(a[1].c_str())));
  }
  if (a.size() == 5 && a[0] == "burst") {
    return wimse::RunBurst(a[1], a[2], a[3], std::atoi(a[4].c_str()));
  }
  if (a.size() == 5 && a[0] == "seed") {
    return wimse::RunSeed(a[1], a[2], a[3], std::atoi(a[4].c_str()));
  }
  std::fprintf(stderr,
               "usage: service_bench tpm N | service_bench burst URL CA PREFIX N | service_bench "
               "seed DB TEMPLATE_IDENTITY PREFIX N\n");
  return 2;
}
