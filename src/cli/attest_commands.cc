// attest, appraise: TPM evidence (quote + certify) for a workload key, and its appraisal.
#include <cstdio>
#include <ctime>
#include <memory>

#include "attest/evidence.h"
#include "attest/verifier.h"
#include "cli/commands.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "tpm/workload_key.h"
#include "util/file.h"

namespace wimse::cli {

namespace {

Result<Bytes> ParseNonce(const std::string& hex) {
  Result<Bytes> nonce = HexDecode(hex);
  if (!nonce.ok()) {
    return Error(Layer::kUsage, "--nonce is not hex: " + nonce.error().message());
  }
  return nonce;
}

// The AK public area as a PEM SubjectPublicKeyInfo.
Result<std::string> AkPublicPem(ByteView ak_public) {
  WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC pub, UnmarshalTpm2bPublic(ak_public));
  WIMSE_ASSIGN_OR_RETURN(EvpPkeyPtr key, PublicKeyFromTpmPublic(pub.publicArea));
  return PublicKeyToPem(key.get());
}

struct AttestOptions {
  std::string key;
  std::string nonce;
  std::string out;
  std::string ak_out;
};

void RunAttest(GlobalOptions& g, const AttestOptions& o) {
  auto nonce = ParseNonce(o.nonce);
  if (!nonce.ok()) return Fail(g, "attest", nonce.error());
  auto ctx = tpm::SharedContext(tpm::ResolveTcti(g.tcti));
  auto key = tpm::WorkloadKey::Open(ctx, o.key);
  if (!key.ok()) return Fail(g, "attest", key.error());
  auto evidence = attest::ProduceEvidence(*ctx, **key, *nonce);
  if (!evidence.ok()) return Fail(g, "attest", evidence.error());
  std::string ak_pem;
  if (!o.ak_out.empty()) {
    auto pem = AkPublicPem(evidence->ak_public);
    if (!pem.ok()) return Fail(g, "attest", pem.error());
    ak_pem = *pem;
  }
  std::string cmw = attest::WrapCmw(attest::EncodeEvidenceJson(*evidence)) + "\n";
  auto s = WriteFileAtomic(o.out, cmw, 0644);
  if (!s.ok()) return Fail(g, "attest", s.error());
  if (!o.ak_out.empty()) {
    s = WriteFileAtomic(o.ak_out, ak_pem, 0644);
    if (!s.ok()) return Fail(g, "attest", s.error());
  }
  std::printf("wrote %s (%zu bytes, %s)\n", o.out.c_str(), cmw.size(), attest::kCmwMediaType);
}

struct AppraiseOptions {
  std::string evidence;
  std::string nonce;
  std::string ak_pub;
  std::string key_out;
};

void RunAppraise(GlobalOptions& g, const AppraiseOptions& o) {
  attest::AppraisalOptions opts;
  auto nonce = ParseNonce(o.nonce);
  if (!nonce.ok()) return Fail(g, "appraise", nonce.error());
  opts.expected_nonce = *nonce;
  opts.now_unix = static_cast<int64_t>(std::time(nullptr));
  if (!o.ak_pub.empty()) {
    auto pem = ReadFileString(o.ak_pub, 64 << 10);
    if (!pem.ok()) return Fail(g, "appraise", pem.error());
    auto key = PublicKeyFromPem(*pem);
    if (!key.ok()) return Fail(g, "appraise", key.error().WithContext(o.ak_pub));
    auto der = PublicKeyToDer(key->get());
    if (!der.ok()) return Fail(g, "appraise", der.error());
    opts.trusted_ak_spki = *der;
  }
  auto text = ReadFileString(o.evidence, attest::kMaxEvidenceSize);
  if (!text.ok()) return Fail(g, "appraise", text.error());
  attest::AppraisalResult r = attest::AppraiseCmw(*text, opts);
  std::printf("%s\n", r.Summary().c_str());
  if (!r.affirming()) {
    g.exit_code = 1;
    return;
  }
  if (!o.key_out.empty()) {
    auto key = PublicKeyFromDer(r.workload_key_spki);
    if (!key.ok()) return Fail(g, "appraise", key.error());
    auto pem = PublicKeyToPem(key->get());
    if (!pem.ok()) return Fail(g, "appraise", pem.error());
    auto s = WriteFileAtomic(o.key_out, *pem, 0644);
    if (!s.ok()) return Fail(g, "appraise", s.error());
  }
}

}  // namespace

void RegisterAttestCommands(CLI::App& app, GlobalOptions& g) {
  auto* attest_cmd = app.add_subcommand(
      "attest",
      "Collect TPM evidence for a workload key: TPM2_Quote (sha256 PCRs 0-7) and TPM2_Certify "
      "by the endorsement-hierarchy AK, bound to the verifier's nonce, as a CMW record");
  auto ao = std::make_shared<AttestOptions>();
  attest_cmd->add_option("--key", ao->key, "TSS2 key file of the workload key")->required();
  attest_cmd->add_option("--nonce", ao->nonce, "verifier nonce, hex (16..32 bytes)")->required();
  attest_cmd->add_option("--out", ao->out, "evidence file to write (CMW JSON record)")->required();
  attest_cmd->add_option("--ak-out", ao->ak_out, "also write the AK public key (PEM SPKI) here");
  attest_cmd->callback([&g, ao] { RunAttest(g, *ao); });

  auto* appraise =
      app.add_subcommand("appraise",
                         "Appraise TPM evidence (no TPM needed). Prints \"affirming\" (exit 0) or "
                         "\"contraindicated: <reason>; ...\" (exit 1)");
  auto po = std::make_shared<AppraiseOptions>();
  appraise->add_option("--evidence", po->evidence, "evidence file (CMW JSON record)")->required();
  appraise->add_option("--nonce", po->nonce, "the nonce issued for this round, hex")->required();
  appraise->add_option("--ak-pub", po->ak_pub,
                       "trusted AK public key (PEM SPKI); without it the evidence's AK is "
                       "accepted if its attributes pass");
  appraise->add_option("--key-out", po->key_out,
                       "when affirming, write the certified workload key (PEM SPKI) here");
  appraise->callback([&g, po] { RunAppraise(g, *po); });
}

}  // namespace wimse::cli
