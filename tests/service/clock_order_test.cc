// The credential service's TPM-clock check against real swtpm quotes (issue 6, clock race):
// several agents share one AK, so quotes reach the service out of TPM-clock order. Freshness is
// the single-use nonce; the clock is compared with the AK's clock state on file when the nonce
// was ISSUED (recorded with the nonce), and the stored state is only ever raised.
//   OutOfOrderAnswersAreAccepted   two nonces, quotes made in order, attested in reverse: both
//                                  200 (before the fix the second was clock_rollback)
//   ConcurrentAttestsAllAccepted   8 quotes attested from 8 threads at once: all 200, the stored
//                                  clock is the highest quote's
//   RollbackBeforeNonceIsRefused   a quote below a clock accepted before its nonce was issued:
//                                  403 clock_rollback; a nonce issued before that clock was on
//                                  file is still accepted; resetCount going back: refused
//   StoreRaisesOnly                RaiseClock never lowers (clock, restart and reset order)
// Runs under tests/with_swtpm.sh (tests/support/tpm_fixture.h checks no object or session is
// left).
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "attest/enrollment.h"
#include "attest/evidence.h"
#include "attest/service/credential_service.h"
#include "attest/service/csr.h"
#include "attest/service/state_store.h"
#include "audit/audit_log.h"
#include "crypto/public_key.h"
#include "jose/base64url.h"
#include "jose/json.h"
#include "support/tpm_fixture.h"
#include "tpm/workload_key.h"
#include "x509/certificate.h"

namespace wimse::service {
namespace {

constexpr jose::JsonLimits kLimits{1 << 20, 8};

class ClockOrderTest : public testing::TpmTest {
 protected:
  void SetUp() override {
    TpmTest::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    dir_ = TempDir();
    auto store = SqliteStateStore::Open(dir_ + "/state.db");
    ASSERT_TRUE(store.ok()) << store.error().ToString();
    store_ = std::move(*store);
    auto audit = audit::AuditLog::Open({dir_ + "/audit.jsonl"});
    ASSERT_TRUE(audit.ok()) << audit.error().ToString();
    audit_ = std::move(*audit);
    ca_key_.reset(EVP_EC_gen("P-256"));
    ASSERT_TRUE(ca_key_);
    x509::CertificateRequest req;
    req.subject_public_key = ca_key_.get();
    req.common_name = "test CA";
    req.is_ca = true;
    auto ca = x509::IssueCertificate(req, ca_key_.get(), nullptr);
    ASSERT_TRUE(ca.ok()) << ca.error().ToString();
    ca_cert_ = std::move(*ca);
    auto signer = SoftwareSigner::Generate(KeyAlg::kEcP256);
    ASSERT_TRUE(signer.ok());
    wit_signer_ = std::move(*signer);

    auto policy = DecodeServicePolicy(R"({"trust_domain": "example.org",
        "enrol": ["host-*"], "allow_uncertified_ek": true, "nonce_ttl_seconds": 120,
        "workloads": [{"identity": "*", "label": "*",
                       "id": "spiffe://example.org/{identity}/{label}"}]})");
    ASSERT_TRUE(policy.ok()) << policy.error().ToString();
    ServiceOptions so;
    so.policy = *policy;
    ServiceKeys keys;
    keys.ca_key = ca_key_.get();
    keys.ca_cert = ca_cert_.get();
    keys.wit_signer = wit_signer_.get();
    keys.wit_kid = "k1";
    keys.ear_signer = wit_signer_.get();
    svc_ = std::make_unique<CredentialService>(so, keys, store_.get(), audit_.get());

    Enrol();
    auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
    ASSERT_TRUE(key.ok()) << key.error().ToString();
    key_ = *key;
    tpm::TpmSigner signer_tpm(key_);
    auto csr = MakeCsrPem(signer_tpm, "w");
    ASSERT_TRUE(csr.ok()) << csr.error().ToString();
    csr_ = *csr;
  }

  void TearDown() override {
    key_.reset();
    svc_.reset();
    TpmTest::TearDown();
    std::system(("rm -rf " + dir_).c_str());
  }

  jose::Json Body(const ServiceResponse& r) {
    auto j = jose::ParseJsonObject(r.body, kLimits);
    EXPECT_TRUE(j.ok()) << r.body;
    return j.ok() ? *j : jose::Json::object();
  }

  void Enrol() {
    auto req = attest::ProduceEnrollmentRequest(*ctx_, tpm::EkType::kRsa2048, kIdentity);
    ASSERT_TRUE(req.ok()) << req.error().ToString();
    ServiceResponse start = svc_->EnrolStart(attest::EncodeEnrollmentRequest(*req), "test");
    ASSERT_EQ(start.status, 200) << start.body;
    jose::Json sj = Body(start);
    auto challenge = attest::DecodeEnrollmentChallenge(jose::SerializeJson(sj["challenge"]));
    ASSERT_TRUE(challenge.ok()) << challenge.error().ToString();
    auto answer = attest::ActivateEnrollmentChallenge(*ctx_, tpm::EkType::kRsa2048, *challenge);
    ASSERT_TRUE(answer.ok()) << answer.error().ToString();
    jose::Json fin = {{"enrolment_id", sj["enrolment_id"]},
                      {"credential", jose::Base64UrlEncode(answer->view())}};
    ServiceResponse finish = svc_->EnrolFinish(jose::SerializeJson(fin), "test");
    ASSERT_EQ(finish.status, 200) << finish.body;
    auto ak = HexDecode(Body(finish)["ak_name"].get<std::string>());
    ASSERT_TRUE(ak.ok());
    ak_name_ = *ak;
  }

  std::string Nonce() {
    ServiceResponse r = svc_->Challenge(R"({"identity": "host-1"})", "test");
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r).value("nonce", std::string());
  }

  // Quote + certify for `nonce_hex` now (the TPM clock advances between calls).
  std::string Evidence(const std::string& nonce_hex) {
    auto nonce = HexDecode(nonce_hex);
    EXPECT_TRUE(nonce.ok());
    auto ev = attest::ProduceEvidenceCmw(*ctx_, *key_, *nonce);
    EXPECT_TRUE(ev.ok()) << ev.error().ToString();
    // swtpm's clock has millisecond resolution: keep consecutive quotes apart.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return ev.ok() ? *ev : std::string();
  }

  ServiceResponse Attest(const std::string& nonce_hex, const std::string& evidence) {
    jose::Json req = {{"identity", kIdentity},
                      {"label", "w"},
                      {"nonce", nonce_hex},
                      {"evidence", evidence},
                      {"csr", csr_}};
    return svc_->Attest(jose::SerializeJson(req), "test");
  }

  attest::ClockState StoredClock() {
    auto c = store_->GetClock(ak_name_);
    EXPECT_TRUE(c.ok() && c->has_value());
    return c.ok() && c->has_value() ? **c : attest::ClockState{};
  }

  static constexpr const char* kIdentity = "host-1";
  std::string dir_;
  std::unique_ptr<SqliteStateStore> store_;
  std::unique_ptr<audit::AuditLog> audit_;
  EvpPkeyPtr ca_key_;
  X509Ptr ca_cert_;
  std::unique_ptr<SoftwareSigner> wit_signer_;
  std::unique_ptr<CredentialService> svc_;
  std::shared_ptr<tpm::WorkloadKey> key_;
  std::string csr_;
  Bytes ak_name_;
};

TEST_F(ClockOrderTest, OutOfOrderAnswersAreAccepted) {
  // A first accepted quote puts a clock on file, so both nonces below carry a floor.
  std::string n0 = Nonce();
  ASSERT_EQ(Attest(n0, Evidence(n0)).status, 200);
  attest::ClockState c0 = StoredClock();

  std::string n1 = Nonce();
  std::string n2 = Nonce();
  std::string ev1 = Evidence(n1);  // agent 1 quotes first (lower clock)
  std::string ev2 = Evidence(n2);  // agent 2 quotes later (higher clock)
  ServiceResponse r2 = Attest(n2, ev2);
  ASSERT_EQ(r2.status, 200) << r2.body;
  attest::ClockState c2 = StoredClock();
  EXPECT_GT(c2.clock, c0.clock);
  ServiceResponse r1 = Attest(n1, ev1);  // reaches the service last
  EXPECT_EQ(r1.status, 200) << r1.body;
  // The stored clock was not lowered to agent 1's quote.
  EXPECT_EQ(StoredClock().clock, c2.clock);
  // Replays are still refused: the nonce is the freshness guarantee.
  ServiceResponse again = Attest(n1, ev1);
  EXPECT_EQ(again.status, 401);
  EXPECT_EQ(Body(again).value("error", std::string()), "nonce_replayed");
}

TEST_F(ClockOrderTest, ConcurrentAttestsAllAccepted) {
  std::string n0 = Nonce();
  ASSERT_EQ(Attest(n0, Evidence(n0)).status, 200);
  constexpr int kN = 8;
  std::vector<std::string> nonces, evidence;
  for (int i = 0; i < kN; ++i) {
    nonces.push_back(Nonce());
  }
  for (int i = 0; i < kN; ++i) {
    evidence.push_back(Evidence(nonces[i]));
  }
  std::vector<int> status(kN, 0);
  std::vector<std::string> bodies(kN);
  std::vector<std::thread> threads;
  // Reverse submission order on top of the scheduler's own shuffling.
  for (int i = kN - 1; i >= 0; --i) {
    threads.emplace_back([&, i] {
      ServiceResponse r = Attest(nonces[i], evidence[i]);
      status[i] = r.status;
      bodies[i] = r.body;
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(status[i], 200) << i << ": " << bodies[i];
  }
  // The highest quote's clock is on file: evidence[kN-1] was made last. A nonce issued now
  // makes a quote that must pass, and the stored clock is below the TPM's current clock.
  attest::ClockState top = StoredClock();
  std::string n = Nonce();
  std::string ev = Evidence(n);
  ServiceResponse r = Attest(n, ev);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_GT(StoredClock().clock, top.clock);
}

TEST_F(ClockOrderTest, RollbackBeforeNonceIsRefused) {
  std::string n0 = Nonce();
  ASSERT_EQ(Attest(n0, Evidence(n0)).status, 200);
  attest::ClockState c0 = StoredClock();

  // Nonce A is issued while c0 is on file. Then a quote far ahead of this TPM's clock is
  // accepted (as if the TPM's state had been restored to an older copy since). Nonce B is
  // issued after it.
  std::string na = Nonce();
  attest::ClockState ahead = c0;
  ahead.clock += 1000000000;  // about 11.5 days of TPM clock
  ASSERT_TRUE(store_->RaiseClock(ak_name_, ahead).ok());
  std::string nb = Nonce();
  std::string eva = Evidence(na);
  std::string evb = Evidence(nb);

  ServiceResponse rb = Attest(nb, evb);
  EXPECT_EQ(rb.status, 403) << rb.body;
  EXPECT_NE(Body(rb).value("reason", std::string()).find("clock_rollback"), std::string::npos)
      << rb.body;
  // A's floor predates the quote "ahead": A's quote is judged against c0 and passes.
  ServiceResponse ra = Attest(na, eva);
  EXPECT_EQ(ra.status, 200) << ra.body;
  // And did not lower the stored clock.
  EXPECT_EQ(StoredClock().clock, ahead.clock);

  // A reset counted on file that this TPM's quotes do not have: resetCount went back.
  attest::ClockState rebooted = c0;
  rebooted.reset_count += 1;
  rebooted.restart_count = 0;
  rebooted.clock = 0;
  ASSERT_TRUE(store_->RaiseClock(ak_name_, rebooted).ok());
  std::string nc = Nonce();
  ServiceResponse rc = Attest(nc, Evidence(nc));
  EXPECT_EQ(rc.status, 403) << rc.body;
  EXPECT_NE(Body(rc).value("reason", std::string()).find("resetCount went back"), std::string::npos)
      << rc.body;
}

TEST_F(ClockOrderTest, StoreRaisesOnly) {
  Bytes ak = {0x00, 0x0b, 0x01, 0x02};
  ASSERT_TRUE(store_->RaiseClock(ak, {100, 2, 3}).ok());
  ASSERT_TRUE(store_->RaiseClock(ak, {90, 2, 3}).ok());   // lower clock: ignored
  ASSERT_TRUE(store_->RaiseClock(ak, {500, 2, 2}).ok());  // lower restart: ignored
  ASSERT_TRUE(store_->RaiseClock(ak, {900, 1, 9}).ok());  // lower reset: ignored
  auto c = store_->GetClock(ak);
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ((*c)->clock, 100u);
  EXPECT_EQ((*c)->reset_count, 2u);
  EXPECT_EQ((*c)->restart_count, 3u);
  ASSERT_TRUE(store_->RaiseClock(ak, {5, 3, 0}).ok());  // a reboot: raised
  c = store_->GetClock(ak);
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ((*c)->clock, 5u);
  EXPECT_EQ((*c)->reset_count, 3u);
  EXPECT_EQ((*c)->restart_count, 0u);
}

}  // namespace
}  // namespace wimse::service
