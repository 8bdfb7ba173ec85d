// Token throughput (Google Benchmark), with the two ratios of issue 4 computed in the same run:
//
//   wpt_mint_tpm / raw_esys_sign          >= 0.9   WPT minting costs little beyond the TPM sign
//   wit_wpt_verify / openssl_p256_verify  >= 0.4   one core, WIT + WPT (two ECDSA verifies)
//
// raw_esys_sign is nothing but Esys_Sign of the same loaded P-256 key with a password session
// (the honest limit); tpm_sign_digest is WorkloadKey::SignDigest (the key layer);
// openssl_p256_verify is EVP_PKEY_verify of a P-256 ECDSA signature over a SHA-256 digest, the
// operation `openssl speed ecdsap256` counts, measured in this process. The TPM comes from
// WIMSE_TPM_TCTI (run under tests/with_swtpm.sh or ci/swtpm); without it the TPM benchmarks are
// skipped and only the verify ratio is printed. TPM benchmarks are timed in real time (the TPM
// round trip is the cost); verify benchmarks in CPU time of the one thread that runs them (so a
// loaded machine does not distort "per second on one core"), the reference included. Every
// benchmark checks its first result, so a broken path cannot look fast. Output: Google Benchmark's
// table, then "RATIO ..." lines.
#include <benchmark/benchmark.h>

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/raw_sign.h"
#include "crypto/ecdsa.h"
#include "crypto/public_key.h"
#include "tpm/workload_key.h"
#include "wimse/httpsig.h"
#include "wimse/trust_anchors.h"
#include "wimse/wit.h"
#include "wimse/wpt.h"

namespace {

using wimse::Bytes;
using wimse::HashAlg;

constexpr char kAud[] = "https://svc-b.example.org/orders";

// Shared fixtures, built once.
struct Fixture {
  std::shared_ptr<wimse::tpm::TpmContext> ctx;
  std::shared_ptr<wimse::tpm::WorkloadKey> tpm_key;  // null without a TPM
  std::unique_ptr<wimse::tpm::TpmSigner> tpm_signer;
  std::unique_ptr<wimse::SoftwareSigner> issuer;
  std::unique_ptr<wimse::SoftwareSigner> sw_workload;
  wimse::TrustAnchors anchors;
  std::string tpm_wit;
  std::string sw_wit;
  std::string sw_wpt;
};

Fixture& F() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    fx->issuer = std::move(wimse::SoftwareSigner::Generate(wimse::KeyAlg::kEcP256)).value();
    fx->sw_workload = std::move(wimse::SoftwareSigner::Generate(wimse::KeyAlg::kEcP256)).value();
    if (!fx->anchors.AddKey("example.org", "k1", fx->issuer->public_key()).ok()) {
      std::abort();
    }
    auto wit_for = [&](EVP_PKEY* key) {
      wimse::WitRequest req;
      req.sub = "spiffe://example.org/ns/bench/sa/client";
      req.workload_key = key;
      wimse::WitIssueOptions io;
      io.kid = "k1";
      io.ttl_seconds = 86400;
      return std::move(wimse::IssueWit(*fx->issuer, req, io)).value();
    };
    fx->sw_wit = wit_for(fx->sw_workload->public_key());
    wimse::WptOptions po;
    po.audience = kAud;
    po.ttl_seconds = 300;
    fx->sw_wpt = std::move(wimse::SignWpt(*fx->sw_workload, fx->sw_wit, po)).value();
    const char* tcti = std::getenv("WIMSE_TPM_TCTI");
    if (tcti != nullptr && *tcti != '\0') {
      fx->ctx = wimse::tpm::SharedContext(wimse::tpm::ResolveTcti(tcti));
      auto key = wimse::tpm::WorkloadKey::Create(fx->ctx, wimse::KeyAlg::kEcP256);
      if (!key.ok()) {
        std::fprintf(stderr, "tokens_bench: %s\n", key.error().ToString().c_str());
        std::exit(1);
      }
      fx->tpm_key = *key;
      fx->tpm_signer = std::make_unique<wimse::tpm::TpmSigner>(fx->tpm_key);
      fx->tpm_wit = wit_for(fx->tpm_key->public_key());
    }
    return fx;
  }();
  return *f;
}

Bytes BenchDigest() { return *wimse::Digest(HashAlg::kSha256, wimse::AsBytes("tokens_bench")); }

void RawEsysSign(benchmark::State& state) {
  Fixture& f = F();
  if (!f.tpm_key) {
    state.SkipWithError("no TPM (WIMSE_TPM_TCTI)");
    return;
  }
  Bytes digest = BenchDigest();
  wimse::bench::RawSignInputs raw(digest);
  // Load once, then nothing but Esys_Sign, under the context lock for the whole run.
  auto st = f.ctx->Run([&](ESYS_CONTEXT* esys) -> wimse::Status {
    auto tr = f.tpm_key->LoadLocked(esys);
    if (!tr.ok()) {
      return tr.error();
    }
    for (auto _ : state) {
      TPMT_SIGNATURE* sig = nullptr;
      TSS2_RC rc = Esys_Sign(esys, *tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &raw.digest,
                             &raw.scheme, &raw.ticket, &sig);
      Esys_Free(sig);
      if (rc != TSS2_RC_SUCCESS) {
        state.SkipWithError("Esys_Sign failed");
        break;
      }
    }
    return wimse::OkStatus();
  });
  if (!st.ok()) {
    state.SkipWithError(st.error().ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations());
}

void TpmSignDigest(benchmark::State& state) {
  Fixture& f = F();
  if (!f.tpm_key) {
    state.SkipWithError("no TPM (WIMSE_TPM_TCTI)");
    return;
  }
  Bytes digest = BenchDigest();
  auto first = f.tpm_key->SignDigest(HashAlg::kSha256, digest);
  if (!first.ok() ||
      !wimse::VerifyDigest(f.tpm_key->public_key(), HashAlg::kSha256, digest, *first).ok()) {
    state.SkipWithError("TPM signature does not verify");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.tpm_key->SignDigest(HashAlg::kSha256, digest));
  }
  state.SetItemsProcessed(state.iterations());
}

void WptMintTpm(benchmark::State& state) {
  Fixture& f = F();
  if (!f.tpm_key) {
    state.SkipWithError("no TPM (WIMSE_TPM_TCTI)");
    return;
  }
  wimse::WptOptions po;
  po.audience = kAud;
  // The first WPT must verify.
  auto first = wimse::SignWpt(*f.tpm_signer, f.tpm_wit, po);
  wimse::WptVerifyOptions vo;
  vo.wit.anchors = &f.anchors;
  vo.audiences = {kAud};
  if (!first.ok() || !wimse::VerifyWpt(*first, f.tpm_wit, vo).ok()) {
    state.SkipWithError("TPM-minted WPT does not verify");
    return;
  }
  for (auto _ : state) {
    auto wpt = wimse::SignWpt(*f.tpm_signer, f.tpm_wit, po);
    if (!wpt.ok()) {
      state.SkipWithError("SignWpt failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void HttpSigSignTpm(benchmark::State& state) {
  Fixture& f = F();
  if (!f.tpm_key) {
    state.SkipWithError("no TPM (WIMSE_TPM_TCTI)");
    return;
  }
  wimse::HttpSigSignOptions so;
  for (auto _ : state) {
    wimse::HttpRequest req;
    req.method = "POST";
    req.target_uri = kAud;
    req.fields = {{"Content-Type", "application/json"}};
    req.body = "{\"item\":42}";
    if (!wimse::SignHttpRequest(*f.tpm_signer, f.tpm_wit, req, so).ok()) {
      state.SkipWithError("SignHttpRequest failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void OpensslP256Verify(benchmark::State& state) {
  Fixture& f = F();
  Bytes digest = BenchDigest();
  Bytes raw = *f.sw_workload->SignDigest(HashAlg::kSha256, digest);
  wimse::EvpPkeyCtxPtr ctx(
      EVP_PKEY_CTX_new_from_pkey(nullptr, f.sw_workload->public_key(), "provider=default"));
  Bytes der;
  {
    auto d = wimse::VerifyDigest(f.sw_workload->public_key(), HashAlg::kSha256, digest, raw);
    if (!d.ok() || !ctx || EVP_PKEY_verify_init(ctx.get()) != 1) {
      state.SkipWithError("setup failed");
      return;
    }
  }
  der = *wimse::EcdsaRawToDer(raw);  // EVP_PKEY_verify wants the DER ECDSA-Sig-Value
  if (EVP_PKEY_verify(ctx.get(), der.data(), der.size(), digest.data(), digest.size()) != 1) {
    state.SkipWithError("reference signature does not verify");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        EVP_PKEY_verify(ctx.get(), der.data(), der.size(), digest.data(), digest.size()));
  }
  state.SetItemsProcessed(state.iterations());
}

void WitWptVerify(benchmark::State& state) {
  Fixture& f = F();
  wimse::WptVerifyOptions vo;
  vo.wit.anchors = &f.anchors;
  vo.audiences = {kAud};
  if (!wimse::VerifyWpt(f.sw_wpt, f.sw_wit, vo).ok()) {
    state.SkipWithError("WPT does not verify");
    return;
  }
  // No replay cache: the same WPT is verified each time (a replay cache would reject it);
  // InMemoryReplayCache adds one map insert per call.
  for (auto _ : state) {
    auto r = wimse::VerifyWpt(f.sw_wpt, f.sw_wit, vo);
    benchmark::DoNotOptimize(r.ok());
  }
  state.SetItemsProcessed(state.iterations());
}

void HttpSigVerify(benchmark::State& state) {
  Fixture& f = F();
  wimse::HttpRequest req;
  req.method = "POST";
  req.target_uri = kAud;
  req.fields = {{"Content-Type", "application/json"}};
  req.body = "{\"item\":42}";
  wimse::HttpSigSignOptions so;
  so.ttl_seconds = 300;
  if (!wimse::SignHttpRequest(*f.sw_workload, f.sw_wit, req, so).ok()) {
    state.SkipWithError("sign failed");
    return;
  }
  wimse::HttpSigVerifyOptions vo;
  vo.wit.anchors = &f.anchors;
  vo.audiences = {kAud};
  if (!wimse::VerifyHttpRequestSignature(req, vo).ok()) {
    state.SkipWithError("signature does not verify");
    return;
  }
  for (auto _ : state) {
    auto r = wimse::VerifyHttpRequestSignature(req, vo);
    benchmark::DoNotOptimize(r.ok());
  }
  state.SetItemsProcessed(state.iterations());
}

// Console output plus items/s per benchmark for the ratio lines.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      auto it = r.counters.find("items_per_second");
      if (!r.error_occurred && it != r.counters.end()) {
        rates[r.run_name.function_name] = it->second.value;
      }
    }
  }
  std::map<std::string, double> rates;
};

constexpr int kRounds = 3;

// Median over the rounds of numerator/denominator, each pair measured back to back (the
// benchmarks are registered interleaved round by round, so load drift on a shared machine hits
// both sides of a ratio alike).
void PrintRatio(const RatioReporter& rep, const char* num, const char* den, double target) {
  std::vector<double> ratios;
  double num_sum = 0;
  double den_sum = 0;
  for (int r = 1; r <= kRounds; ++r) {
    auto n = rep.rates.find(std::string(num) + "/round" + std::to_string(r));
    auto d = rep.rates.find(std::string(den) + "/round" + std::to_string(r));
    if (n == rep.rates.end() || d == rep.rates.end() || d->second <= 0) {
      continue;
    }
    ratios.push_back(n->second / d->second);
    num_sum += n->second;
    den_sum += d->second;
  }
  if (ratios.empty()) {
    std::printf("RATIO %s/%s unavailable\n", num, den);
    return;
  }
  std::sort(ratios.begin(), ratios.end());
  double median = ratios[ratios.size() / 2];
  std::printf(
      "RATIO %s/%s = %.3f median of %zu rounds (mean %.1f / %.1f per s; target >= %.1f: %s)\n", num,
      den, median, ratios.size(), num_sum / ratios.size(), den_sum / ratios.size(), target,
      median >= target ? "met" : "NOT met");
}

void Register() {
  struct B {
    const char* name;
    void (*fn)(benchmark::State&);
    bool real_time;
  };
  const B kBenches[] = {
      {"raw_esys_sign", RawEsysSign, true},
      {"wpt_mint_tpm", WptMintTpm, true},
      {"tpm_sign_digest", TpmSignDigest, true},
      {"httpsig_sign_tpm", HttpSigSignTpm, true},
      {"openssl_p256_verify", OpensslP256Verify, false},
      {"wit_wpt_verify", WitWptVerify, false},
      {"httpsig_verify", HttpSigVerify, false},
  };
  for (int r = 1; r <= kRounds; ++r) {
    for (const B& b : kBenches) {
      auto* bm = benchmark::RegisterBenchmark(
          (std::string(b.name) + "/round" + std::to_string(r)).c_str(), b.fn);
      bm->MinTime(1.0);
      if (b.real_time) {
        bm->UseRealTime();
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Register();
  benchmark::Initialize(&argc, argv);
  RatioReporter rep;
  benchmark::RunSpecifiedBenchmarks(&rep);
  PrintRatio(rep, "wpt_mint_tpm", "raw_esys_sign", 0.9);
  PrintRatio(rep, "wpt_mint_tpm", "tpm_sign_digest", 0.9);
  PrintRatio(rep, "wit_wpt_verify", "openssl_p256_verify", 0.4);
  PrintRatio(rep, "httpsig_verify", "openssl_p256_verify", 0.4);
  if (F().ctx) {
    F().ctx->FlushCache();
  }
  benchmark::Shutdown();
  return 0;
}
