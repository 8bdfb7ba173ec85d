// Event logs against real PCRs (swtpm): the test extends PCRs 0-7 (a UEFI-like boot) and 10 (IMA)
// in the sha1 and sha256 banks with TPM2_PCR_Extend, builds the matching crypto-agile log and
// ima-ng log (log_builder.h), and checks that
//   - our replay equals the values the TPM reports (TPM2_PCR_Read), in both banks;
//   - evidence (quote over 0-7,10 + certify) with both logs attached appraises affirming, with
//     both logs checked, in the sha256 bank and in the sha1 bank (policy allows sha1);
//   - one changed event digest (UEFI) or one changed IMA entry gives event_log_replay_mismatch;
//   - tpm2_eventlog (tpm2-tools) parses our log the same way: event count, every digest, and
//     the PCR values it replays to.
// Runs under tests/with_swtpm.sh (WIMSE_TPM_TCTI); leaves no handle behind.
#include <gtest/gtest.h>
#include <openssl/rand.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "attest/eventlog.h"
#include "attest/evidence.h"
#include "attest/verifier.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "tests/attest/log_builder.h"
#include "tests/support/shell.h"
#include "tpm/attestation.h"
#include "tpm/context.h"
#include "tpm/workload_key.h"
#include "util/file.h"

namespace wimse::attest {
namespace {

using testing::ImaEntry;
using testing::MakeImaEntry;
using testing::Md;
using testing::TcgLogBuilder;

constexpr uint32_t kBootMask = 0xFF;                // PCRs 0-7
constexpr uint32_t kQuoteMask = 0xFF | (1u << 10);  // and IMA's PCR 10

using wimse::testing::Shell;

class EventLogTpmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tcti = std::getenv("WIMSE_TPM_TCTI");
    ASSERT_NE(tcti, nullptr) << "run under tests/with_swtpm.sh";
    ctx_ = std::make_shared<tpm::TpmContext>(tcti);
    char tmpl[] = "/tmp/wimse-evlog.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    (void)!std::system(("rm -rf " + dir_).c_str());
    if (ctx_) {
      auto n = ctx_->CountTransientObjects();
      ASSERT_TRUE(n.ok()) << n.error().ToString();
      EXPECT_EQ(*n, 0u) << "transient objects left in the TPM";
      auto s = ctx_->CountSessions();
      ASSERT_TRUE(s.ok());
      EXPECT_EQ(*s, 0u) << "sessions left in the TPM";
    }
  }

  // TPM2_PCR_Extend(pcr, {sha1: d1, sha256: d256}).
  void Extend(uint32_t pcr, const Bytes& d1, const Bytes& d256) {
    Status s = ctx_->Run([&](ESYS_CONTEXT* esys) -> Status {
      TPML_DIGEST_VALUES v{};
      v.count = 2;
      v.digests[0].hashAlg = TPM2_ALG_SHA1;
      std::copy(d1.begin(), d1.end(), v.digests[0].digest.sha1);
      v.digests[1].hashAlg = TPM2_ALG_SHA256;
      std::copy(d256.begin(), d256.end(), v.digests[1].digest.sha256);
      TSS2_RC rc = Esys_PCR_Extend(esys, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                   ESYS_TR_NONE, &v);
      if (rc != TSS2_RC_SUCCESS) {
        return tpm::TpmError("TPM2_PCR_Extend", rc);
      }
      return OkStatus();
    });
    ASSERT_TRUE(s.ok()) << s.error().ToString();
  }

  std::map<uint32_t, Bytes> ReadPcrs(uint16_t bank, uint32_t mask) {
    auto r = ctx_->Run([&](ESYS_CONTEXT* esys) { return tpm::PcrReadLocked(esys, bank, mask); });
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? *r : std::map<uint32_t, Bytes>{};
  }

  // The boot: events on PCRs 0-7 with types tpm2_eventlog can print (post code, action,
  // EFI action, separator), each extended into the TPM as it is logged. Once per process (all
  // tests share one swtpm): later calls only check that it happened.
  void Boot() {
    if (booted_) {
      return;
    }
    booted_ = true;
    for (uint32_t pcr = 0; pcr < 8; ++pcr) {
      log_.Add(pcr, 0x1, "wimse-tpm post code " + std::to_string(pcr));
      log_.Add(pcr, 0x5, "wimse-tpm action " + std::to_string(pcr));
      if (pcr == 4 || pcr == 5) {
        log_.Add(pcr, 0x80000007, "wimse-tpm efi action " + std::to_string(pcr));
      }
      log_.Add(pcr, kEvSeparator, std::string(4, '\0'));
    }
    for (const auto& e : log_.events()) {
      Extend(e.pcr, e.sha1, e.sha256);
    }
    // IMA: PCR 10 is extended with the template data's hash in each bank (per-bank template
    // digests, rats-tpm §4.4).
    for (const char* path : {"boot_aggregate", "/usr/bin/agent", "/etc/wimse/policy.json"}) {
      ImaEntry e = MakeImaEntry(path, std::string("content of ") + path);
      Extend(10, e.template_sha1, Md("SHA256", e.template_data));
      ima_.push_back(e);
    }
  }

  // Evidence over `bank` PCRs 0-7,10 with the logs attached, appraised with the AK pinned.
  AppraisalResult ProduceAndAppraise(uint16_t bank, const Bytes& uefi, const Bytes& ima) {
    EXPECT_TRUE(WriteFileAtomic(dir_ + "/uefi.bin", AsString(uefi), 0600).ok());
    EXPECT_TRUE(WriteFileAtomic(dir_ + "/ima.bin", AsString(ima), 0600).ok());
    auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
    EXPECT_TRUE(key.ok());
    if (!key.ok()) {
      return {};
    }
    Bytes nonce(32);
    EXPECT_EQ(RAND_bytes(nonce.data(), 32), 1);
    EvidenceOptions eo;
    eo.pcrs = PcrBankSelection{bank, kQuoteMask};
    eo.uefi_log_path = dir_ + "/uefi.bin";
    eo.ima_log_path = dir_ + "/ima.bin";
    auto ev = ProduceEvidence(*ctx_, **key, nonce, eo);
    EXPECT_TRUE(ev.ok()) << ev.error().ToString();
    if (!ev.ok()) {
      return {};
    }
    EXPECT_TRUE(ev->uefi_log.has_value() && ev->ima_log.has_value());
    AttestationPolicy policy;
    policy.pcrs = PcrBankSelection{bank, kQuoteMask};
    policy.allow_sha1 = bank == TPM2_ALG_SHA1;
    AppraisalOptions o;
    o.expected_nonce = nonce;
    o.policy = &policy;
    auto ak = ReadAkPublic(*ctx_);
    EXPECT_TRUE(ak.ok());
    auto pub = UnmarshalTpm2bPublic(*ak);
    auto ak_key = PublicKeyFromTpmPublic(pub->publicArea);
    o.trusted_ak_spki = *PublicKeyToDer(ak_key->get());
    AppraisalResult r = AppraiseEvidence(*ev, o);
    ctx_->FlushCache();
    return r;
  }

  std::shared_ptr<tpm::TpmContext> ctx_;
  std::string dir_;
  static inline bool booted_ = false;
  static inline TcgLogBuilder log_;
  static inline std::vector<ImaEntry> ima_;
};

TEST_F(EventLogTpmTest, ReplayEqualsTheTpmPcrsInBothBanks) {
  Boot();
  auto uefi = ParseTcgLog(log_.bytes());
  ASSERT_TRUE(uefi.ok()) << uefi.error().ToString();
  auto ima = ParseImaBinary(testing::ImaBinary(ima_));
  ASSERT_TRUE(ima.ok()) << ima.error().ToString();
  auto ima_ascii = ParseImaAscii(testing::ImaAscii(ima_));
  ASSERT_TRUE(ima_ascii.ok()) << ima_ascii.error().ToString();
  for (uint16_t bank : {uint16_t{TPM2_ALG_SHA1}, uint16_t{TPM2_ALG_SHA256}}) {
    std::map<uint32_t, Bytes> tpm_pcrs = ReadPcrs(bank, kQuoteMask);
    auto replay = ReplayLog(*uefi, bank);
    ASSERT_TRUE(replay.ok()) << replay.error().ToString();
    ASSERT_EQ(replay->size(), 8u);
    for (uint32_t pcr = 0; pcr < 8; ++pcr) {
      EXPECT_EQ(HexEncode(replay->at(pcr)), HexEncode(tpm_pcrs.at(pcr)))
          << "bank " << bank << " PCR " << pcr;
      EXPECT_NE(tpm_pcrs.at(pcr), InitialPcrValue(pcr, bank));  // really extended
    }
    for (const EventLog* l : {&*ima, &*ima_ascii}) {
      auto r10 = ReplayLog(*l, bank);
      ASSERT_TRUE(r10.ok()) << r10.error().ToString();
      EXPECT_EQ(HexEncode(r10->at(10)), HexEncode(tpm_pcrs.at(10))) << "IMA, bank " << bank;
    }
  }
}

TEST_F(EventLogTpmTest, QuoteWithMatchingLogsIsAffirmingInBothBanks) {
  Boot();
  for (uint16_t bank : {uint16_t{TPM2_ALG_SHA256}, uint16_t{TPM2_ALG_SHA1}}) {
    AppraisalResult r = ProduceAndAppraise(bank, log_.bytes(), testing::ImaBinary(ima_));
    EXPECT_TRUE(r.affirming()) << "bank " << bank << ": " << r.Summary();
    EXPECT_TRUE(r.uefi_log_checked) << bank;
    EXPECT_TRUE(r.ima_log_checked) << bank;
    EXPECT_EQ(r.quoted_pcrs.size(), 9u);
  }
}

TEST_F(EventLogTpmTest, OneChangedDigestIsAReplayMismatch) {
  Boot();
  // UEFI: the sha256 digest of event 5 (PCR 1) changed by one bit.
  Bytes bad = log_.bytes();
  bad[log_.Sha256Offset(5)] ^= 0x01;
  AppraisalResult r = ProduceAndAppraise(TPM2_ALG_SHA256, bad, testing::ImaBinary(ima_));
  EXPECT_FALSE(r.affirming());
  EXPECT_TRUE(r.Has(Reason::kEventLogReplayMismatch)) << r.Summary();
  EXPECT_NE(r.Summary().find("PCR 1"), std::string::npos) << r.Summary();
  EXPECT_FALSE(r.uefi_log_checked);
  EXPECT_TRUE(r.ima_log_checked);  // the other log still replays
  // IMA: one entry replaced by a well-formed entry for other content (a consistent template
  // hash, a different digest): no prefix replays to PCR 10.
  std::vector<ImaEntry> ima = ima_;
  ima[1] = MakeImaEntry(ima[1].path, "tampered content");
  r = ProduceAndAppraise(TPM2_ALG_SHA256, log_.bytes(), testing::ImaBinary(ima));
  EXPECT_FALSE(r.affirming());
  EXPECT_TRUE(r.Has(Reason::kEventLogReplayMismatch)) << r.Summary();
  EXPECT_TRUE(r.uefi_log_checked);
  EXPECT_FALSE(r.ima_log_checked);
}

TEST_F(EventLogTpmTest, Tpm2EventlogAgreesWithOurParser) {
  Boot();
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/uefi.bin", AsString(log_.bytes()), 0600).ok());
  std::string yaml = Shell("tpm2_eventlog " + dir_ + "/uefi.bin 2>/dev/null; echo rc=$?");
  ASSERT_NE(yaml.find("rc=0"), std::string::npos) << yaml;
  auto log = ParseTcgLog(log_.bytes());
  ASSERT_TRUE(log.ok());
  // Event count: tpm2_eventlog numbers the Spec ID event too.
  std::regex event_num("- EventNum: ([0-9]+)");
  size_t events = std::distance(std::sregex_iterator(yaml.begin(), yaml.end(), event_num),
                                std::sregex_iterator());
  EXPECT_EQ(events, log->events.size() + 1);
  // Every digest, in log order (the Spec ID event's 20 zero bytes first).
  std::regex digest_re("AlgorithmId: (sha1|sha256)\\s+Digest: \"([0-9a-f]+)\"");
  std::vector<std::string> theirs;
  for (auto it = std::sregex_iterator(yaml.begin(), yaml.end(), digest_re);
       it != std::sregex_iterator(); ++it) {
    theirs.push_back((*it)[1].str() + ":" + (*it)[2].str());
  }
  std::vector<std::string> ours;
  for (const LogEvent& e : log->events) {
    ours.push_back("sha1:" + HexEncode(e.digests.at(TPM2_ALG_SHA1)));
    ours.push_back("sha256:" + HexEncode(e.digests.at(TPM2_ALG_SHA256)));
  }
  EXPECT_EQ(theirs, ours);
  // The PCR values tpm2_eventlog replays to (the "pcrs:" section) = ours = the TPM's.
  size_t pcrs_at = yaml.find("\npcrs:");
  ASSERT_NE(pcrs_at, std::string::npos) << yaml;
  std::string tail = yaml.substr(pcrs_at);
  for (uint16_t bank : {uint16_t{TPM2_ALG_SHA1}, uint16_t{TPM2_ALG_SHA256}}) {
    std::string name = bank == TPM2_ALG_SHA1 ? "sha1" : "sha256";
    size_t at = tail.find("  " + name + ":\n");
    ASSERT_NE(at, std::string::npos) << tail;
    auto replay = ReplayLog(*log, bank);
    ASSERT_TRUE(replay.ok());
    std::map<uint32_t, Bytes> tpm_pcrs = ReadPcrs(bank, kBootMask);
    std::regex pcr_re("^    ([0-9]+) *: 0x([0-9a-fA-F]+)$");
    std::map<uint32_t, std::string> listed;
    std::string section = tail.substr(at + name.size() + 4);
    std::istringstream lines(section);
    std::string line;
    while (std::getline(lines, line) && line.rfind("    ", 0) == 0) {
      std::smatch m;
      if (std::regex_match(line, m, pcr_re)) {
        std::string v = m[2].str();
        for (char& c : v) {
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        listed[static_cast<uint32_t>(std::stoul(m[1].str()))] = v;
      }
    }
    ASSERT_EQ(listed.size(), 8u) << name << "\n" << tail;
    for (uint32_t pcr = 0; pcr < 8; ++pcr) {
      EXPECT_EQ(listed[pcr], HexEncode(replay->at(pcr))) << name << " PCR " << pcr;
      EXPECT_EQ(listed[pcr], HexEncode(tpm_pcrs.at(pcr))) << name << " PCR " << pcr;
    }
  }
}

}  // namespace
}  // namespace wimse::attest
