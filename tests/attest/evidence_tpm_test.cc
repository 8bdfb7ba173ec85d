// The evidence producer on a real (software) TPM: evidence from swtpm appraises affirming, the
// AK is deterministic, bad inputs are refused before the TPM, and no handle is left behind.
// Runs under tests/with_swtpm.sh (WIMSE_TPM_TCTI).
#include <gtest/gtest.h>
#include <openssl/rand.h>

#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <set>
#include <string>

#include "attest/evidence.h"
#include "attest/verifier.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "keyfile/tss2_key.h"
#include "tests/support/tpm_admin.h"
#include "tpm/attestation.h"
#include "tpm/context.h"
#include "tpm/workload_key.h"
#include "util/file.h"

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
  for (size_t n : {size_t{0}, size_t{2}, size_t{15}, size_t{33}, size_t{64}}) {
    auto e = ProduceEvidence(*ctx_, *key_, Bytes(n, 0x5a));
    ASSERT_FALSE(e.ok()) << n;
    EXPECT_EQ(e.error().layer(), Layer::kUsage) << e.error().ToString();
    EXPECT_EQ(e.error().tss2_rc(), 0u);
  }
}

TEST_F(EvidenceTpmTest, KeyWithAuthValueIsCertifiedWithItsAuth) {
  // TPM2_Certify needs the certified key's authorization: with an auth value it goes in the
  // salted, encrypted session; a wrong one is one dictionary-attack strike and a clear reason;
  // none at all for a file without emptyAuth (as wimse-tpm wrote before it wrote an explicit
  // FALSE) is refused before the TPM.
  SecretBytes auth(AsBytes("certify me"));
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256, auth);
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  Bytes nonce = RandomNonce();
  auto cmw = ProduceEvidenceCmw(*ctx_, **key, nonce);
  ASSERT_TRUE(cmw.ok()) << cmw.error().ToString();
  AppraisalResult r = AppraiseCmw(*cmw, Options(nonce));
  EXPECT_TRUE(r.affirming()) << r.Summary();
  EXPECT_EQ(r.workload_key_spki, *PublicKeyToDer((*key)->public_key()));

  char dir[] = "/tmp/wimse-ev-auth-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/k.pem";
  Tss2KeyFile absent = (*key)->key_file();
  EXPECT_TRUE(absent.empty_auth_present) << "Create writes an explicit emptyAuth FALSE";
  absent.empty_auth_present = false;
  ASSERT_TRUE(WriteTss2KeyFile(path, absent).ok());
  uint32_t before = testing::LockoutCounter(*ctx_);
  auto wrong = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(wrong.ok());
  (*wrong)->SetAuth(SecretBytes(AsBytes("not it")));
  auto refused = ProduceEvidence(*ctx_, **wrong, RandomNonce());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message().find("TPM2_Certify: authorization failed for key " + path),
            std::string::npos)
      << refused.error().ToString();
  EXPECT_EQ(refused.error().message().find("not it"), std::string::npos);
  EXPECT_EQ(testing::LockoutCounter(*ctx_), before + 1) << "exactly one try";

  auto none = tpm::OpenKey(ctx_, path);
  ASSERT_TRUE(none.ok());
  auto missing = ProduceEvidence(*ctx_, **none, RandomNonce());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().layer(), Layer::kUsage) << missing.error().ToString();
  EXPECT_NE(missing.error().message().find("needs an auth value"), std::string::npos);
  EXPECT_EQ(testing::LockoutCounter(*ctx_), before + 1) << "no strike without an auth value";
  ASSERT_TRUE(testing::ResetDictionaryAttack(*ctx_).ok());
  std::remove(path.c_str());
  ::rmdir(dir);
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

// --- TPM2_CertifyCreation (issue 5: "TPM2_CertifyCreation when available") ---------------------

std::set<std::string> Codes(const AppraisalResult& r) {
  std::set<std::string> out;
  for (const Failure& f : r.failures) {
    out.insert(std::string(ReasonCode(f.reason)));
  }
  return out;
}

TEST_F(EvidenceTpmTest, CertifiedCreationIsAffirming) {
  ASSERT_TRUE(key_->creation().has_value()) << "WorkloadKey::Create keeps TPM2_Create's outputs";
  Bytes nonce = RandomNonce();
  auto e = ProduceEvidence(*ctx_, *key_, nonce);
  ASSERT_TRUE(e.ok()) << e.error().ToString();
  ASSERT_EQ(e->keys.size(), 1u);
  ASSERT_TRUE(e->keys[0].creation.has_value());
  EXPECT_EQ(e->keys[0].creation->creation_data, key_->creation()->creation_data);
  // Through the wire format: the creation member survives encode/decode.
  AppraisalResult r = AppraiseCmw(WrapCmw(EncodeEvidenceJson(*e)), Options(nonce));
  EXPECT_TRUE(r.affirming()) << r.Summary();
  EXPECT_TRUE(r.creation_certified);
  EXPECT_FALSE(r.creation_pcrs_checked);  // keygen selects no creation PCRs
  // The parent is the SRK: a SHA-256 Name (alg id + 32 bytes).
  ASSERT_EQ(r.creation_parent_name.size(), 34u);
  EXPECT_EQ(r.creation_parent_name[0], 0x00);
  EXPECT_EQ(r.creation_parent_name[1], 0x0b);
  // Pinning that parent affirms; pinning another refuses with the named reason.
  AppraisalOptions pinned = Options(nonce);
  pinned.expected_creation_parent_name = r.creation_parent_name;
  pinned.require_creation = true;
  EXPECT_TRUE(AppraiseEvidence(*e, pinned).affirming());
  Bytes other = r.creation_parent_name;
  other.back() ^= 1;
  pinned.expected_creation_parent_name = other;
  EXPECT_EQ(Codes(AppraiseEvidence(*e, pinned)), std::set<std::string>{"creation_parent_mismatch"});
}

TEST_F(EvidenceTpmTest, EvidenceWithoutCreationStillAffirms) {
  // The same key opened from its file has no creation record: no creation member, no error.
  auto plain = tpm::WorkloadKey::FromKeyFile(ctx_, key_->key_file());
  ASSERT_TRUE(plain.ok()) << plain.error().ToString();
  ASSERT_FALSE((*plain)->creation().has_value());
  Bytes nonce = RandomNonce();
  auto e = ProduceEvidence(*ctx_, **plain, nonce);
  ASSERT_TRUE(e.ok()) << e.error().ToString();
  EXPECT_FALSE(e->keys[0].creation.has_value());
  std::string json = EncodeEvidenceJson(*e);
  EXPECT_EQ(json.find("\"creation\""), std::string::npos);
  AppraisalResult r = AppraiseEvidenceJson(json, Options(nonce));
  EXPECT_TRUE(r.affirming()) << r.Summary();
  EXPECT_FALSE(r.creation_certified);
  // Unless the verifier requires it.
  AppraisalOptions o = Options(nonce);
  o.require_creation = true;
  EXPECT_EQ(Codes(AppraiseEvidence(*e, o)), std::set<std::string>{"creation_missing"});
}

TEST_F(EvidenceTpmTest, TamperedCreationDataIsRefused) {
  Bytes nonce = RandomNonce();
  auto e = ProduceEvidence(*ctx_, *key_, nonce);
  ASSERT_TRUE(e.ok()) << e.error().ToString();
  // The data ends with parentQualifiedName then the empty outsideInfo (2 size bytes): change
  // the last byte of parentQualifiedName, which still parses.
  Bytes& data = e->keys[0].creation->creation_data;
  ASSERT_EQ(data[data.size() - 2], 0);
  ASSERT_EQ(data[data.size() - 1], 0);
  data[data.size() - 3] ^= 1;
  EXPECT_EQ(Codes(AppraiseEvidence(*e, Options(nonce))),
            std::set<std::string>{"creation_hash_mismatch"});
  // A creation data that does not parse.
  e->keys[0].creation->creation_data.resize(5);
  EXPECT_EQ(Codes(AppraiseEvidence(*e, Options(nonce))),
            std::set<std::string>{"creation_malformed"});
}

TEST_F(EvidenceTpmTest, CreationAttestationChecks) {
  Bytes nonce = RandomNonce();
  auto e = ProduceEvidence(*ctx_, *key_, nonce);
  ASSERT_TRUE(e.ok()) << e.error().ToString();
  Tpm2Evidence sig = *e;
  sig.keys[0].creation->certify.signature.back() ^= 1;
  EXPECT_EQ(Codes(AppraiseEvidence(sig, Options(nonce))),
            std::set<std::string>{"creation_signature_invalid"});
  // The certify attestation in place of the creation attestation: wrong type (and its
  // signature still verifies: it is the AK's).
  Tpm2Evidence type = *e;
  type.keys[0].creation->certify = type.keys[0].certify;
  EXPECT_EQ(Codes(AppraiseEvidence(type, Options(nonce))),
            std::set<std::string>{"creation_wrong_type"});
  Tpm2Evidence magic = *e;
  magic.keys[0].creation->certify.attest[0] ^= 1;
  EXPECT_EQ(Codes(AppraiseEvidence(magic, Options(nonce))),
            (std::set<std::string>{"creation_not_tpm_generated", "creation_signature_invalid"}));
}

TEST_F(EvidenceTpmTest, WrongCreationTicketIsRefusedByTheTpm) {
  tpm::KeyCreation bad = *key_->creation();
  bad.creation_ticket.back() ^= 1;  // last byte of the ticket's HMAC
  EvidenceOptions o;
  o.uefi_log_path.clear();
  o.ima_log_path.clear();
  o.creation = bad;
  auto e = ProduceEvidence(*ctx_, *key_, RandomNonce(), o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().layer(), Layer::kTpm);
  EXPECT_NE(e.error().ToString().find("refused the creation ticket"), std::string::npos)
      << e.error().ToString();
  // A creationHash that is not the one the ticket covers is refused the same way.
  tpm::KeyCreation hash = *key_->creation();
  hash.creation_hash.back() ^= 1;
  o.creation = hash;
  e = ProduceEvidence(*ctx_, *key_, RandomNonce(), o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().ToString().find("refused the creation ticket"), std::string::npos)
      << e.error().ToString();
}

TEST_F(EvidenceTpmTest, OtherKeysCreationIsRefused) {
  auto other = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(other.ok()) << other.error().ToString();
  // At the TPM: another key's ticket does not cover this key's Name.
  EvidenceOptions o;
  o.uefi_log_path.clear();
  o.ima_log_path.clear();
  o.creation = *(*other)->creation();
  auto refused = ProduceEvidence(*ctx_, *key_, RandomNonce(), o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().ToString().find("refused the creation ticket"), std::string::npos)
      << refused.error().ToString();
  // At the verifier: both keys' evidence with one nonce, creation members swapped.
  Bytes nonce = RandomNonce();
  auto a = ProduceEvidence(*ctx_, *key_, nonce);
  auto b = ProduceEvidence(*ctx_, **other, nonce);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(AppraiseEvidence(*b, Options(nonce)).affirming());
  a->keys[0].creation = b->keys[0].creation;
  EXPECT_EQ(Codes(AppraiseEvidence(*a, Options(nonce))),
            std::set<std::string>{"creation_name_mismatch"});
}

TEST_F(EvidenceTpmTest, CreationRecordFileRoundTrip) {
  char dir[] = "/tmp/wimse-creation-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/key.pem";
  ASSERT_TRUE(key_->Save(path).ok());
  ASSERT_TRUE(SaveKeyCreation(path, *key_).ok());
  auto opened = tpm::WorkloadKey::Open(ctx_, path);
  ASSERT_TRUE(opened.ok()) << opened.error().ToString();
  auto loaded = LoadKeyCreation(path, **opened);
  ASSERT_TRUE(loaded.ok()) << loaded.error().ToString();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->creation_data, key_->creation()->creation_data);
  EXPECT_EQ((*loaded)->creation_hash, key_->creation()->creation_hash);
  EXPECT_EQ((*loaded)->creation_ticket, key_->creation()->creation_ticket);
  // The loaded record certifies the file-opened key: affirming with creation.
  EvidenceOptions o;
  o.uefi_log_path.clear();
  o.ima_log_path.clear();
  o.creation = **loaded;
  Bytes nonce = RandomNonce();
  auto e = ProduceEvidence(*ctx_, **opened, nonce, o);
  ASSERT_TRUE(e.ok()) << e.error().ToString();
  AppraisalResult r = AppraiseEvidence(*e, Options(nonce));
  EXPECT_TRUE(r.affirming()) << r.Summary();
  EXPECT_TRUE(r.creation_certified);
  // Another key's record beside this key file is refused by name, before the TPM.
  auto other = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(other.ok());
  const std::string other_path = std::string(dir) + "/other.pem";
  ASSERT_TRUE(SaveKeyCreation(other_path, **other).ok());
  auto text = ReadFileString(other_path + kKeyCreationSuffix);
  ASSERT_TRUE(text.ok());
  auto wrong = DecodeKeyCreation(*text, key_->name());
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().layer(), Layer::kUsage);
  // No record: nullopt, not an error.
  auto none = LoadKeyCreation(std::string(dir) + "/absent.pem", **opened);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  for (const char* f : {"/key.pem", "/key.pem.creation", "/other.pem.creation"}) {
    unlink((std::string(dir) + f).c_str());
  }
  rmdir(dir);
}

}  // namespace
}  // namespace wimse::attest
