// AK enrolment on swtpm (rats-tpm §3.5): EK templates against the EK certificates swtpm_setup
// provisioned, EK chain validation against the swtpm-localca root, software MakeCredential
// against the TPM's ActivateCredential (RSA OAEP and ECC ECDH/KDFe paths), tpm2_makecredential
// output activated by our agent code, and a second swtpm trying to take over an enrolled
// identity. Runs under tests/with_swtpm.sh (WIMSE_TPM_TCTI, WIMSE_TPM_STATE).
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <tss2/tss2_mu.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "attest/credential.h"
#include "attest/enrollment.h"
#include "attest/evidence.h"
#include "crypto/ossl.h"
#include "crypto/tpm_public.h"
#include "tests/support/bus_recorder.h"
#include "tests/support/shell.h"
#include "tpm/attestation.h"
#include "tpm/context.h"
#include "tpm/ek.h"
#include "util/file.h"

namespace wimse::attest {
namespace {

Bytes PemCertToDer(const std::string& path) {
  auto pem = ReadFileString(path, 1 << 20);
  EXPECT_TRUE(pem.ok()) << path;
  if (!pem.ok()) {
    return {};
  }
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  EXPECT_TRUE(cert) << path;
  unsigned char* der = nullptr;
  int len = i2d_X509(cert.get(), &der);
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

using wimse::testing::Shell;

class EnrollTpmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tcti = std::getenv("WIMSE_TPM_TCTI");
    const char* state = std::getenv("WIMSE_TPM_STATE");
    ASSERT_NE(tcti, nullptr) << "run under tests/with_swtpm.sh";
    ASSERT_NE(state, nullptr);
    state_ = state;
    ctx_ = std::make_shared<tpm::TpmContext>(tcti);
    policy_.ek_roots.push_back(PemCertToDer(state_ + "/ca/swtpm-localca-rootca-cert.pem"));
    policy_.ek_intermediates.push_back(PemCertToDer(state_ + "/ca/issuercert.pem"));
  }

  void TearDown() override {
    if (ctx_) {
      auto n = ctx_->CountTransientObjects();
      ASSERT_TRUE(n.ok()) << n.error().ToString();
      EXPECT_EQ(*n, 0u) << "transient objects left in the TPM";
      auto s = ctx_->CountSessions();
      ASSERT_TRUE(s.ok());
      EXPECT_EQ(*s, 0u) << "sessions left in the TPM";
    }
  }

  // Full enrolment of `identity` on `ctx` with `type`; returns the record or the error.
  Result<EnrollmentRecord> Enrol(tpm::TpmContext& ctx, tpm::EkType type,
                                 const std::string& identity, const EnrollmentRecord* existing) {
    WIMSE_ASSIGN_OR_RETURN(EnrollmentRequest req, ProduceEnrollmentRequest(ctx, type, identity));
    // Through the wire format, as the CLI does.
    WIMSE_ASSIGN_OR_RETURN(req, DecodeEnrollmentRequest(EncodeEnrollmentRequest(req)));
    WIMSE_ASSIGN_OR_RETURN(auto begun, BeginEnrollment(req, policy_, existing));
    WIMSE_ASSIGN_OR_RETURN(EnrollmentChallenge ch,
                           DecodeEnrollmentChallenge(EncodeEnrollmentChallenge(begun.first)));
    WIMSE_ASSIGN_OR_RETURN(PendingEnrollment pending,
                           DecodePendingEnrollment(EncodePendingEnrollment(begun.second)));
    WIMSE_ASSIGN_OR_RETURN(SecretBytes answer, ActivateEnrollmentChallenge(ctx, type, ch));
    return FinishEnrollment(pending, answer.view(), existing);
  }

  std::string state_;
  std::shared_ptr<tpm::TpmContext> ctx_;
  EnrollmentPolicy policy_;
};

TEST_F(EnrollTpmTest, EkTemplatesReproduceTheCertifiedEks) {
  for (tpm::EkType type : {tpm::EkType::kRsa2048, tpm::EkType::kEccP384}) {
    auto req = ProduceEnrollmentRequest(*ctx_, type, "spiffe://example.org/host/a");
    ASSERT_TRUE(req.ok()) << req.error().ToString();
    EXPECT_FALSE(req->ek_cert.empty()) << tpm::EkTypeName(type);
    // The certificate file swtpm_setup wrote is the NV content, trimmed.
    std::string file = state_ + (type == tpm::EkType::kRsa2048 ? "/ekcerts/ek-rsa2048.crt"
                                                               : "/ekcerts/ek-secp384r1.crt");
    auto der = ReadFileBytes(file, 1 << 16);
    ASSERT_TRUE(der.ok());
    EXPECT_EQ(req->ek_cert, *der);
    // BeginEnrollment compares the certificate key with the EK public we re-created.
    auto begun = BeginEnrollment(*req, policy_, nullptr);
    EXPECT_TRUE(begun.ok()) << tpm::EkTypeName(type) << ": " << begun.error().ToString();
  }
}

TEST_F(EnrollTpmTest, EnrolsRsaAndEccEks) {
  for (tpm::EkType type : {tpm::EkType::kRsa2048, tpm::EkType::kEccP384}) {
    auto rec = Enrol(*ctx_, type, "spiffe://example.org/host/a", nullptr);
    ASSERT_TRUE(rec.ok()) << tpm::EkTypeName(type) << ": " << rec.error().ToString();
    EXPECT_EQ(rec->identity, "spiffe://example.org/host/a");
    auto ak = ReadAkPublic(*ctx_);
    ASSERT_TRUE(ak.ok());
    EXPECT_EQ(rec->ak_public, *ak);
    auto pub = UnmarshalTpm2bPublic(*ak);
    EXPECT_EQ(rec->ak_name, *TpmName(pub->publicArea));
    EXPECT_EQ(rec->ek_cert_sha256.size(), 32u);
  }
}

TEST_F(EnrollTpmTest, CertlessEccP256NeedsTheAllowlist) {
  auto rec = Enrol(*ctx_, tpm::EkType::kEccP256, "host-b", nullptr);
  ASSERT_FALSE(rec.ok());
  EXPECT_EQ(rec.error().message().rfind("ek_not_allowed", 0), 0u) << rec.error().ToString();
  auto req = ProduceEnrollmentRequest(*ctx_, tpm::EkType::kEccP256, "host-b");
  ASSERT_TRUE(req.ok());
  EXPECT_TRUE(req->ek_cert.empty());  // swtpm provisions no P-256 EK certificate
  policy_.allowed_ek_sha256.push_back(HexEncode(*Digest(HashAlg::kSha256, req->ek_public)));
  rec = Enrol(*ctx_, tpm::EkType::kEccP256, "host-b", nullptr);  // P-256 ECDH + KDFe path
  ASSERT_TRUE(rec.ok()) << rec.error().ToString();
  EXPECT_TRUE(rec->ek_cert_sha256.empty());
}

TEST_F(EnrollTpmTest, EkChainMustReachAConfiguredRoot) {
  auto req = ProduceEnrollmentRequest(*ctx_, tpm::EkType::kRsa2048, "h");
  ASSERT_TRUE(req.ok());
  EnrollmentPolicy p = policy_;
  p.ek_roots = {PemCertToDer(state_ + "/ca/issuercert.pem")};  // intermediate is no anchor
  auto begun = BeginEnrollment(*req, p, nullptr);
  ASSERT_FALSE(begun.ok());
  EXPECT_EQ(begun.error().message().rfind("ek_chain_invalid", 0), 0u) << begun.error().ToString();
  p = policy_;
  p.ek_intermediates.clear();  // the agent sends no chain: the path cannot be built
  begun = BeginEnrollment(*req, p, nullptr);
  ASSERT_FALSE(begun.ok());
  EXPECT_EQ(begun.error().message().rfind("ek_chain_invalid", 0), 0u);
  // ... unless the request carries the intermediate (untrusted).
  EnrollmentRequest with_chain = *req;
  with_chain.ek_chain = {PemCertToDer(state_ + "/ca/issuercert.pem")};
  EXPECT_TRUE(BeginEnrollment(with_chain, p, nullptr).ok());
  // A certificate for another key (the P-384 EK's) with the RSA EK public.
  auto ecc = ProduceEnrollmentRequest(*ctx_, tpm::EkType::kEccP384, "h");
  ASSERT_TRUE(ecc.ok());
  EnrollmentRequest swapped = *req;
  swapped.ek_cert = ecc->ek_cert;
  begun = BeginEnrollment(swapped, policy_, nullptr);
  ASSERT_FALSE(begun.ok());
  EXPECT_EQ(begun.error().message().rfind("ek_cert_key_mismatch", 0), 0u);
}

TEST_F(EnrollTpmTest, WrongAnswerAndTamperedBlobAreRefused) {
  auto req = ProduceEnrollmentRequest(*ctx_, tpm::EkType::kRsa2048, "h");
  ASSERT_TRUE(req.ok());
  auto begun = BeginEnrollment(*req, policy_, nullptr);
  ASSERT_TRUE(begun.ok());
  Bytes wrong(32, 0x5a);
  auto rec = FinishEnrollment(begun->second, wrong, nullptr);
  ASSERT_FALSE(rec.ok());
  EXPECT_EQ(rec.error().message().rfind("activation_failed", 0), 0u);
  // One flipped bit in the encrypted identity: the TPM's HMAC check refuses it.
  EnrollmentChallenge bad = begun->first;
  bad.credential_blob.back() ^= 0x01;
  auto answer = ActivateEnrollmentChallenge(*ctx_, tpm::EkType::kRsa2048, bad);
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.error().layer(), Layer::kTpm);
  // A credential made for another Name (a key this TPM does not hold next to the EK).
  Bytes other_name = *HexDecode("000b" + std::string(64, 'a'));
  auto made = MakeCredential(req->ek_public, other_name, Bytes(32, 1));
  ASSERT_TRUE(made.ok());
  answer = ActivateEnrollmentChallenge(*ctx_, tpm::EkType::kRsa2048,
                                       EnrollmentChallenge{made->credential_blob, made->secret});
  EXPECT_FALSE(answer.ok());
  // The genuine challenge still works afterwards.
  answer = ActivateEnrollmentChallenge(*ctx_, tpm::EkType::kRsa2048, begun->first);
  ASSERT_TRUE(answer.ok()) << answer.error().ToString();
  EXPECT_TRUE(FinishEnrollment(begun->second, answer->view(), nullptr).ok());
}

TEST_F(EnrollTpmTest, ActivatesTpm2MakecredentialOutput) {
  for (tpm::EkType type : {tpm::EkType::kRsa2048, tpm::EkType::kEccP384}) {
    auto req = ProduceEnrollmentRequest(*ctx_, type, "h");
    ASSERT_TRUE(req.ok());
    auto ak = UnmarshalTpm2bPublic(req->ak_public);
    std::string name_hex = HexEncode(*TpmName(ak->publicArea));
    char tmpl[] = "/tmp/wimse-mkcred.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    std::string dir = tmpl;
    ASSERT_TRUE(WriteFileAtomic(dir + "/ek.pub", AsString(req->ek_public), 0600).ok());
    Bytes secret(32);
    ASSERT_EQ(RAND_bytes(secret.data(), 32), 1);
    ASSERT_TRUE(WriteFileAtomic(dir + "/secret", AsString(secret), 0600).ok());
    std::string cmd = "tpm2_makecredential -T none -u " + dir + "/ek.pub -s " + dir +
                      "/secret -n " + name_hex + " -o " + dir + "/cred 2>&1; echo rc=$?";
    std::string out = Shell(cmd);
    ASSERT_NE(out.find("rc=0"), std::string::npos) << out;
    auto cred = ReadFileBytes(dir + "/cred", 1 << 16);
    ASSERT_TRUE(cred.ok());
    // tpm2-tools credential file: magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT,
    // TPM2B_ENCRYPTED_SECRET (rats-tpm §1.1 step 4).
    ASSERT_GT(cred->size(), 12u);
    EXPECT_EQ(HexEncode(ByteView(*cred).subspan(0, 8)), "badcc0de00000001");
    size_t id_len = (size_t{(*cred)[8]} << 8) | (*cred)[9];
    ASSERT_LE(10 + id_len, cred->size());
    EnrollmentChallenge ch;
    ch.credential_blob.assign(cred->begin() + 8, cred->begin() + 10 + static_cast<long>(id_len));
    ch.secret.assign(cred->begin() + 10 + static_cast<long>(id_len), cred->end());
    auto answer = ActivateEnrollmentChallenge(*ctx_, type, ch);
    ASSERT_TRUE(answer.ok()) << tpm::EkTypeName(type) << ": " << answer.error().ToString();
    EXPECT_EQ(Bytes(answer->view().begin(), answer->view().end()), secret);
    (void)!std::system(("rm -rf " + dir).c_str());
  }
}

TEST_F(EnrollTpmTest, SecondTpmCannotTakeOverAnEnrolledIdentity) {
  const char* root = std::getenv("WIMSE_SOURCE_ROOT");
  ASSERT_NE(root, nullptr);
  char tmpl[] = "/tmp/wimse-swtpm-b.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir_b = tmpl;
  std::string swtpm = std::string(root) + "/ci/swtpm";
  std::string tcti_b = Shell(swtpm + " start " + dir_b + " 2>/dev/null");
  ASSERT_EQ(tcti_b.rfind("swtpm:", 0), 0u) << tcti_b;
  {
    tpm::TpmContext ctx_b(tcti_b);
    // TPM B has its own localca CA unless WIMSE_SWTPM_CA_DIR is shared: trust both roots.
    policy_.ek_roots.push_back(PemCertToDer(dir_b + "/ca/swtpm-localca-rootca-cert.pem"));
    policy_.ek_intermediates.push_back(PemCertToDer(dir_b + "/ca/issuercert.pem"));

    const std::string id = "spiffe://example.org/host/a";
    auto rec_a = Enrol(*ctx_, tpm::EkType::kRsa2048, id, nullptr);
    ASSERT_TRUE(rec_a.ok()) << rec_a.error().ToString();
    // B, a genuine TPM with a valid EK certificate, asks for A's identity.
    auto rec_b = Enrol(ctx_b, tpm::EkType::kRsa2048, id, &*rec_a);
    ASSERT_FALSE(rec_b.ok());
    EXPECT_EQ(rec_b.error().message().rfind("identity_enrolled_to_other_tpm", 0), 0u)
        << rec_b.error().ToString();
    // B presents A's EK (public + certificate) with its own AK: refused as an AK change when
    // A is enrolled, and B cannot answer the challenge when it is not.
    auto req_a = ProduceEnrollmentRequest(*ctx_, tpm::EkType::kRsa2048, id);
    auto req_b = ProduceEnrollmentRequest(ctx_b, tpm::EkType::kRsa2048, id);
    ASSERT_TRUE(req_a.ok() && req_b.ok());
    EXPECT_NE(req_a->ak_public, req_b->ak_public);
    EnrollmentRequest forged = *req_a;
    forged.ak_public = req_b->ak_public;
    auto begun = BeginEnrollment(forged, policy_, &*rec_a);
    ASSERT_FALSE(begun.ok());
    EXPECT_EQ(begun.error().message().rfind("ak_changed", 0), 0u) << begun.error().ToString();
    begun = BeginEnrollment(forged, policy_, nullptr);
    ASSERT_TRUE(begun.ok()) << begun.error().ToString();
    auto answer = ActivateEnrollmentChallenge(ctx_b, tpm::EkType::kRsa2048, begun->first);
    EXPECT_FALSE(answer.ok());  // B's EK cannot decrypt a seed sealed to A's EK
    // Same identity from A again is idempotent.
    auto again = Enrol(*ctx_, tpm::EkType::kRsa2048, id, &*rec_a);
    EXPECT_TRUE(again.ok()) << again.error().ToString();
    auto nb = ctx_b.CountTransientObjects();
    ASSERT_TRUE(nb.ok());
    EXPECT_EQ(*nb, 0u);
  }
  Shell(swtpm + " stop " + dir_b);
  (void)!std::system(("rm -rf " + dir_b).c_str());
}

// The credential ActivateCredential releases is a secret (whoever sees it can finish the
// enrolment): the response is parameter-encrypted by a salted session, so the credential never
// appears in clear on the recorded TPM bus, for the RSA (OAEP) and the P-384 (ECDH) EK. Baseline
// on the same bus: the same command without the encryption session shows it, so the probe works.
TEST_F(EnrollTpmTest, ActivatedCredentialNeverCrossesTheBusInClear) {
  const char* tcti = std::getenv("WIMSE_TPM_TCTI");
  std::string t = tcti;
  size_t pos = t.find("port=");
  ASSERT_NE(pos, std::string::npos) << t;
  int port = std::stoi(t.substr(pos + 5));
  ctx_->Disconnect();  // swtpm serves one connection at a time
  testing::BusRecorder recorder(port);
  {
    tpm::TpmContext bus(recorder.tcti());
    for (tpm::EkType type : {tpm::EkType::kRsa2048, tpm::EkType::kEccP384}) {
      auto req = ProduceEnrollmentRequest(bus, type, "h");
      ASSERT_TRUE(req.ok()) << req.error().ToString();
      auto ak = UnmarshalTpm2bPublic(req->ak_public);
      ASSERT_TRUE(ak.ok());
      Bytes secret(32);
      ASSERT_EQ(RAND_bytes(secret.data(), 32), 1);
      auto made = MakeCredential(req->ek_public, *TpmName(ak->publicArea), secret);
      ASSERT_TRUE(made.ok()) << made.error().ToString();
      auto answer = ActivateEnrollmentChallenge(
          bus, type, EnrollmentChallenge{made->credential_blob, made->secret});
      ASSERT_TRUE(answer.ok()) << tpm::EkTypeName(type) << ": " << answer.error().ToString();
      EXPECT_EQ(Bytes(answer->view().begin(), answer->view().end()), secret);
      Bytes seen = recorder.captured();
      EXPECT_GT(seen.size(), 1000u);  // the relay really carried the traffic
      EXPECT_FALSE(testing::Contains(seen, secret))
          << tpm::EkTypeName(type) << ": the credential crossed the bus in clear";
    }
    // Baseline: TPM2_ActivateCredential with password sessions only (the P-384 EK has
    // userWithAuth) returns certInfo in clear.
    auto req = ProduceEnrollmentRequest(bus, tpm::EkType::kEccP384, "h");
    ASSERT_TRUE(req.ok());
    auto ak_pub = UnmarshalTpm2bPublic(req->ak_public);
    Bytes secret(32);
    ASSERT_EQ(RAND_bytes(secret.data(), 32), 1);
    auto made = MakeCredential(req->ek_public, *TpmName(ak_pub->publicArea), secret);
    ASSERT_TRUE(made.ok());
    Status clear = bus.Run([&](ESYS_CONTEXT* esys) -> Status {
      WIMSE_ASSIGN_OR_RETURN(tpm::AttestationKey ak, tpm::CreateAkLocked(esys));
      WIMSE_ASSIGN_OR_RETURN(tpm::EndorsementKey ek,
                             tpm::CreateEkLocked(esys, tpm::EkType::kEccP384));
      TPM2B_ID_OBJECT blob{};
      TPM2B_ENCRYPTED_SECRET enc{};
      size_t off = 0;
      Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(made->credential_blob.data(), made->credential_blob.size(),
                                        &off, &blob);
      off = 0;
      Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(made->secret.data(), made->secret.size(), &off,
                                               &enc);
      TPM2B_DIGEST* info = nullptr;
      TSS2_RC rc = Esys_ActivateCredential(esys, ak.handle.get(), ek.handle.get(), ESYS_TR_PASSWORD,
                                           ESYS_TR_PASSWORD, ESYS_TR_NONE, &blob, &enc, &info);
      Esys_Free(info);
      if (rc != TSS2_RC_SUCCESS) {
        return tpm::TpmError("baseline ActivateCredential", rc);
      }
      return OkStatus();
    });
    ASSERT_TRUE(clear.ok()) << clear.error().ToString();
    EXPECT_TRUE(testing::Contains(recorder.captured(), secret))
        << "baseline: an unencrypted response should show the credential";
    bus.Disconnect();
  }
  // TearDown's counts reconnect the fixture's own context (swtpm is free again).
}

}  // namespace
}  // namespace wimse::attest
