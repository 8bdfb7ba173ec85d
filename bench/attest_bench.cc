// Appraisal throughput (issue 5): evidence with one quote over 24 sha256 PCRs and one certify,
// no event log (target >= 5,000/s on one core), and the same with a 100-event UEFI log. For
// comparison, BM_EcdsaVerifyP256 is one OpenSSL P-256 ECDSA verification on a prepared
// EVP_PKEY_CTX (an appraisal does two: quote and certify), so the appraisal cost can be read
// as a fraction of its floor (verify/s / 2) on the same machine at the same moment.
//
// The evidence is built in software with the exact TPM wire structures (tss2-mu marshalling of
// TPMS_ATTEST / TPMT_SIGNATURE, an AK public area with the AK attributes around a software P-256
// key), so the benchmark needs no TPM and measures only the verifier.
#include <benchmark/benchmark.h>
#include <tss2/tss2_mu.h>
#include <cstring>

#include <cstdio>
#include <cstdlib>

#include "attest/evidence_format.h"
#include "attest/verifier.h"
#include "crypto/ecdsa.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "tests/attest/log_builder.h"

namespace wimse::attest {
namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "attest_bench: %s\n", what);
    std::abort();
  }
}

Bytes MarshalAttest(const TPMS_ATTEST& a) {
  Bytes out(sizeof(TPMS_ATTEST));
  size_t off = 0;
  Check(Tss2_MU_TPMS_ATTEST_Marshal(&a, out.data(), out.size(), &off) == TSS2_RC_SUCCESS, "attest");
  out.resize(off);
  return out;
}

Bytes SignAttest(SoftwareSigner& s, const Bytes& attest) {
  Bytes digest = *Digest(HashAlg::kSha256, attest);
  Bytes raw = *s.SignDigest(HashAlg::kSha256, digest);
  TPMT_SIGNATURE sig{};
  sig.sigAlg = TPM2_ALG_ECDSA;
  sig.signature.ecdsa.hash = TPM2_ALG_SHA256;
  sig.signature.ecdsa.signatureR.size = 32;
  std::copy(raw.begin(), raw.begin() + 32, sig.signature.ecdsa.signatureR.buffer);
  sig.signature.ecdsa.signatureS.size = 32;
  std::copy(raw.begin() + 32, raw.end(), sig.signature.ecdsa.signatureS.buffer);
  Bytes out(sizeof(TPMT_SIGNATURE));
  size_t off = 0;
  Check(Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, out.data(), out.size(), &off) == TSS2_RC_SUCCESS,
        "sig");
  out.resize(off);
  return out;
}

TPM2B_PUBLIC EccPublic(EVP_PKEY* key, uint32_t attrs, bool ak) {
  TPM2B_PUBLIC p{};
  p.publicArea.type = TPM2_ALG_ECC;
  p.publicArea.nameAlg = TPM2_ALG_SHA256;
  p.publicArea.objectAttributes = attrs;
  TPMS_ECC_PARMS& e = p.publicArea.parameters.eccDetail;
  e.symmetric.algorithm = TPM2_ALG_NULL;
  e.scheme.scheme = ak ? TPM2_ALG_ECDSA : TPM2_ALG_NULL;
  e.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  e.curveID = TPM2_ECC_NIST_P256;
  e.kdf.scheme = TPM2_ALG_NULL;
  Bytes point = *EcPublicPoint(key);
  if (point.size() != 65) std::abort();  // uncompressed P-256 point: 04 || X || Y
  p.publicArea.unique.ecc.x.size = 32;
  std::memcpy(p.publicArea.unique.ecc.x.buffer, point.data() + 1, 32);
  p.publicArea.unique.ecc.y.size = 32;
  std::memcpy(p.publicArea.unique.ecc.y.buffer, point.data() + 33, 32);
  return p;
}

struct Fixture {
  std::string cmw;
  AppraisalOptions options;
  AttestationPolicy policy;
};

Fixture Build(int uefi_events) {
  Fixture fx;
  auto ak = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
  auto wk = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
  TPM2B_PUBLIC ak_pub = EccPublic(ak->public_key(), 0x00050072, true);
  TPM2B_PUBLIC wk_pub = EccPublic(wk->public_key(), 0x00040072, false);
  Bytes nonce(32, 0x42);

  // PCRs: 0-7 from the log (if any), the rest zero; all 24 quoted.
  testing::TcgLogBuilder log;
  for (int i = 0; i < uefi_events; ++i) {
    log.Add(static_cast<uint32_t>(i % 8), 0x80000001,
            "event " + std::to_string(i) + std::string(40, 'x'));
  }
  std::map<uint32_t, Bytes> pcrs;
  for (uint32_t i = 0; i < 24; ++i) {
    pcrs[i] = Bytes(32, (i >= 17 && i <= 22) ? 0xFF : 0x00);
  }
  for (const auto& e : log.events()) {
    Bytes in = pcrs[e.pcr];
    in.insert(in.end(), e.sha256.begin(), e.sha256.end());
    pcrs[e.pcr] = *Digest(HashAlg::kSha256, in);
  }
  Bytes concat;
  for (const auto& [i, v] : pcrs) {
    concat.insert(concat.end(), v.begin(), v.end());
  }
  Bytes pcr_digest = *Digest(HashAlg::kSha256, concat);

  Bytes ak_name = *TpmName(ak_pub.publicArea);
  Bytes wk_name = *TpmName(wk_pub.publicArea);
  TPMS_ATTEST q{};
  q.magic = TPM2_GENERATED_VALUE;
  q.type = TPM2_ST_ATTEST_QUOTE;
  q.qualifiedSigner.size = static_cast<uint16_t>(ak_name.size());
  std::copy(ak_name.begin(), ak_name.end(), q.qualifiedSigner.name);
  q.extraData.size = 32;
  std::copy(nonce.begin(), nonce.end(), q.extraData.buffer);
  q.clockInfo.clock = 1000;
  q.clockInfo.safe = TPM2_YES;
  q.attested.quote.pcrSelect.count = 1;
  q.attested.quote.pcrSelect.pcrSelections[0] = {TPM2_ALG_SHA256, 3, {0xFF, 0xFF, 0xFF, 0}};
  q.attested.quote.pcrDigest.size = 32;
  std::copy(pcr_digest.begin(), pcr_digest.end(), q.attested.quote.pcrDigest.buffer);
  TPMS_ATTEST c = q;
  c.type = TPM2_ST_ATTEST_CERTIFY;
  c.attested.certify = {};
  c.attested.certify.name.size = static_cast<uint16_t>(wk_name.size());
  std::copy(wk_name.begin(), wk_name.end(), c.attested.certify.name.name);
  c.attested.certify.qualifiedName = c.attested.certify.name;

  Tpm2Evidence e;
  e.nonce = nonce;
  e.ak_public = *MarshalTpm2bPublic(ak_pub);
  QuoteEvidence qe;
  qe.quote.attest = MarshalAttest(q);
  qe.quote.signature = SignAttest(*ak, qe.quote.attest);
  qe.bank = "sha256";
  qe.pcrs = pcrs;
  e.quotes.push_back(qe);
  KeyEvidence ke;
  ke.public_blob = *MarshalTpm2bPublic(wk_pub);
  ke.certify.attest = MarshalAttest(c);
  ke.certify.signature = SignAttest(*ak, ke.certify.attest);
  e.keys.push_back(ke);
  if (uefi_events > 0) {
    e.uefi_log = LogEvidence{"tcg-pc-client-crypto-agile", log.bytes()};
  }
  fx.cmw = WrapCmw(EncodeEvidenceJson(e));
  fx.policy.pcrs = {TPM2_ALG_SHA256, 0xFFFFFF};
  fx.options.expected_nonce = nonce;
  fx.options.enrolled_ak_name = ak_name;
  fx.options.policy = nullptr;
  return fx;
}

void Appraise(benchmark::State& state, int uefi_events) {
  Fixture fx = Build(uefi_events);
  fx.options.policy = &fx.policy;
  AppraisalResult first = AppraiseCmw(fx.cmw, fx.options);
  Check(first.affirming(), first.Summary().c_str());
  Check(uefi_events == 0 || first.uefi_log_checked, "log not checked");
  for (auto _ : state) {
    AppraisalResult r = AppraiseCmw(fx.cmw, fx.options);
    benchmark::DoNotOptimize(r);
    if (!r.affirming()) {
      state.SkipWithError("not affirming");
      break;
    }
  }
  state.counters["appraisals/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// One ECDSA P-256 verification of a 32-byte digest: EVP_PKEY_verify on a context initialised
// once, the floor of what an appraisal's signature checks cost.
void BM_EcdsaVerifyP256(benchmark::State& state) {
  auto signer = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
  Bytes digest = *Digest(HashAlg::kSha256, AsBytes("attest_bench"));
  Bytes raw = *signer->SignDigest(HashAlg::kSha256, digest);
  Bytes der = *EcdsaRawToDer(raw);
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, signer->public_key(), "provider=default"));
  Check(ctx && EVP_PKEY_verify_init(ctx.get()) == 1, "verify_init");
  for (auto _ : state) {
    int rc = EVP_PKEY_verify(ctx.get(), der.data(), der.size(), digest.data(), digest.size());
    if (rc != 1) {
      state.SkipWithError("does not verify");
      break;
    }
  }
  state.counters["verifies/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_AppraiseQuote24CertifyNoLog(benchmark::State& s) { Appraise(s, 0); }
void BM_AppraiseQuote24CertifyUefi100(benchmark::State& s) { Appraise(s, 100); }
BENCHMARK(BM_EcdsaVerifyP256)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AppraiseQuote24CertifyNoLog)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AppraiseQuote24CertifyUefi100)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace wimse::attest

BENCHMARK_MAIN();
