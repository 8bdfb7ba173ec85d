// The evidence producer on a real (software) TPM: evidence from swtpm appraises affirming, the
// AK is deterministic, bad inputs are refused before the TPM, and no handle is left behind.
// Runs under tests/with_swtpm.sh (WIMSE_TPM_TCTI).
#include <gtest/gtest.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <memory>

#include "attest/evidence.h"
#include "attest/verifier.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "tpm/attestation.h"
#include "tpm/context.h"
#include "tpm/workload_key.h"

namespace wimse::attest {
namespace {

class EvidenceTpmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tcti = std::getenv("WIMSE_TPM_TCTI");
    ASSERT_NE(tcti, nullptr) << "run under tests/with_swtpm.sh";
    ctx_ = std::make_shared<tpm::TpmContext>(tcti);
    auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
    ASSERT_TRUE(key.ok()) << key.error().ToString();
    key_ = *key;
  }

  void TearDown() override {
    if (ctx_) {
      auto n = ctx_->CountTransientObjects();
      ASSERT_TRUE(n.ok()) << n.error().ToString();
      EXPECT_EQ(*n, 0u) << "transient objects left in the TPM";
    }
  }

  static Bytes RandomNonce(size_t n = 32) {
    Bytes b(n);
    EXPECT_EQ(RAND_bytes(b.data(), static_cast<int>(b.size())), 1);
    return b;
  }

  AppraisalOptions Options(const Bytes& nonce) {
    AppraisalOptions o;
    o.expected_nonce = nonce;
    auto ak = ReadAkPublic(*ctx_);
    EXPECT_TRUE(ak.ok()) << ak.error().ToString();
    auto pub = UnmarshalTpm2bPublic(*ak);
    auto key = PublicKeyFromTpmPublic(pub->publicArea);
    o.trusted_ak_spki = *PublicKeyToDer(key->get());
    return o;
  }

  std::shared_ptr<tpm::TpmContext> ctx_;
  std::shared_ptr<tpm::WorkloadKey> key_;
};

TEST_F(EvidenceTpmTest, EvidenceFromSwtpmIsAffirming) {
  Bytes nonce = RandomNonce();
  auto cmw = ProduceEvidenceCmw(*ctx_, *key_, nonce);
  ASSERT_TRUE(cmw.ok()) << cmw.error().ToString();
  AppraisalResult r = AppraiseCmw(*cmw, Options(nonce));
  EXPECT_TRUE(r.affirming()) << r.Summary();
  EXPECT_EQ(r.workload_key_spki, *PublicKeyToDer(key_->public_key()));
  EXPECT_EQ(r.workload_key_name, key_->name());
  EXPECT_EQ(r.quoted_pcrs.size(), 8u);
}

TEST_F(EvidenceTpmTest, EvidenceForP384KeyIsAffirming) {
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP384);
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  Bytes nonce = RandomNonce(16);
  auto cmw = ProduceEvidenceCmw(*ctx_, **key, nonce);
  ASSERT_TRUE(cmw.ok()) << cmw.error().ToString();
  AppraisalResult r = AppraiseCmw(*cmw, Options(nonce));
  EXPECT_TRUE(r.affirming()) << r.Summary();
  EXPECT_EQ(r.workload_key_spki, *PublicKeyToDer((*key)->public_key()));
}

TEST_F(EvidenceTpmTest, OldEvidenceFailsForANewNonce) {
  Bytes first = RandomNonce();
  auto cmw = ProduceEvidenceCmw(*ctx_, *key_, first);
  ASSERT_TRUE(cmw.ok()) << cmw.error().ToString();
  AppraisalResult r = AppraiseCmw(*cmw, Options(RandomNonce()));
  EXPECT_TRUE(r.Has(Reason::kQuoteNonceMismatch));
  EXPECT_TRUE(r.Has(Reason::kCertifyNonceMismatch));
  EXPECT_FALSE(r.affirming());
}

TEST_F(EvidenceTpmTest, AkIsDeterministicAndMatchesTemplate) {
  auto a = ReadAkPublic(*ctx_);
  auto b = ReadAkPublic(*ctx_);
  ASSERT_TRUE(a.ok()) << a.error().ToString();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*a, *b);
  auto e = ProduceEvidence(*ctx_, *key_, RandomNonce());
  ASSERT_TRUE(e.ok()) << e.error().ToString();
  EXPECT_EQ(e->ak_public, *a);
  auto pub = UnmarshalTpm2bPublic(*a);
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->publicArea.objectAttributes, tpm::kAkAttributes);
  EXPECT_EQ(pub->publicArea.type, TPM2_ALG_ECC);
  EXPECT_EQ(pub->publicArea.parameters.eccDetail.curveID, TPM2_ECC_NIST_P256);
  EXPECT_EQ(pub->publicArea.parameters.eccDetail.scheme.scheme, TPM2_ALG_ECDSA);
  EXPECT_EQ(pub->publicArea.parameters.eccDetail.scheme.details.ecdsa.hashAlg, TPM2_ALG_SHA256);
}

TEST_F(EvidenceTpmTest, BadNoncesAreRefusedBeforeTheTpm) {
  for (size_t n : {size_t{0}, size_t{33}, size_t{64}}) {
    auto e = ProduceEvidence(*ctx_, *key_, Bytes(n, 0x5a));
    ASSERT_FALSE(e.ok()) << n;
    EXPECT_EQ(e.error().layer(), Layer::kUsage) << e.error().ToString();
    EXPECT_EQ(e.error().tss2_rc(), 0u);
  }
}

TEST_F(EvidenceTpmTest, UnallocatedBankIsAnError) {
  // swtpm here has sha1 and sha256 banks only: a sha384 quote would silently cover nothing
  // (rats-tpm §6 #1), so the producer refuses.
  auto e = ProduceEvidence(*ctx_, *key_, RandomNonce(), PcrBankSelection{TPM2_ALG_SHA384, 0xFF});
  EXPECT_FALSE(e.ok());
}

TEST_F(EvidenceTpmTest, RepeatedRoundsLeaveNoObjects) {
  for (int i = 0; i < 5; ++i) {
    Bytes nonce = RandomNonce();
    auto cmw = ProduceEvidenceCmw(*ctx_, *key_, nonce);
    ASSERT_TRUE(cmw.ok()) << cmw.error().ToString();
  }
  auto n = ctx_->CountTransientObjects();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
}

}  // namespace
}  // namespace wimse::attest
