// Event-log parsing and replay on generated logs (no TPM): the replay equals an independent
// fold of the digests, one changed digest changes the result, hostile input is refused within
// the limits, IMA binary and ASCII forms agree. The PCR values are checked against a real TPM in
// eventlog_tpm_test.cc.
#include <gtest/gtest.h>

#include "attest/eventlog.h"
#include "tests/attest/log_builder.h"

namespace wimse::attest {
namespace {

using testing::ImaAscii;
using testing::ImaBinary;
using testing::MakeImaEntry;
using testing::Md;
using testing::TcgLogBuilder;

Bytes Fold(const std::vector<Bytes>& digests, const char* md, size_t size) {
  Bytes pcr(size, 0);
  for (const Bytes& d : digests) {
    Bytes in = pcr;
    in.insert(in.end(), d.begin(), d.end());
    pcr = Md(md, in);
  }
  return pcr;
}

TEST(EventLog, TcgReplayMatchesIndependentFold) {
  TcgLogBuilder b;
  b.Add(0, 0x8, "S-CRTM version");
  b.Add(0, 0x80000008, "firmware blob");
  b.Add(7, 0x80000001, "SecureBoot=1");
  b.Add(4, 0x80000003, "shimx64.efi");
  b.Add(0, kEvSeparator, std::string(4, '\0'));
  auto log = ParseTcgLog(b.bytes());
  ASSERT_TRUE(log.ok()) << log.error().ToString();
  EXPECT_EQ(log->algorithms.size(), 2u);
  EXPECT_EQ(log->events.size(), 5u);
  auto r256 = ReplayLog(*log, TPM2_ALG_SHA256);
  auto r1 = ReplayLog(*log, TPM2_ALG_SHA1);
  ASSERT_TRUE(r256.ok() && r1.ok());
  std::vector<Bytes> pcr0_256, pcr0_1;
  for (const auto& e : b.events()) {
    if (e.pcr == 0) {
      pcr0_256.push_back(e.sha256);
      pcr0_1.push_back(e.sha1);
    }
  }
  EXPECT_EQ(r256->at(0), Fold(pcr0_256, "SHA256", 32));
  EXPECT_EQ(r1->at(0), Fold(pcr0_1, "SHA1", 20));
  EXPECT_EQ(r256->at(7), Fold({b.events()[2].sha256}, "SHA256", 32));
  EXPECT_EQ(r256->count(1), 0u);
  // Changing one digest changes the replay of its PCR only.
  Bytes bad = b.bytes();
  bad[b.Sha256Offset(1)] ^= 0x01;
  auto log2 = ParseTcgLog(bad);
  ASSERT_TRUE(log2.ok());
  auto r2 = ReplayLog(*log2, TPM2_ALG_SHA256);
  EXPECT_NE(r2->at(0), r256->at(0));
  EXPECT_EQ(r2->at(7), r256->at(7));
  // No sha384 digests: cannot replay that bank.
  EXPECT_FALSE(ReplayLog(*log, TPM2_ALG_SHA384).ok());
}

TEST(EventLog, StartupLocalitySetsPcr0InitialValue) {
  TcgLogBuilder b;
  std::string loc("StartupLocality\0\x03", 17);
  b.Add(0, kEvNoAction, loc);
  b.Add(0, 0x8, "crtm");
  auto log = ParseTcgLog(b.bytes());
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->startup_locality, 3);
  Bytes init(32, 0);
  init[31] = 3;
  Bytes in = init;
  in.insert(in.end(), b.events()[1].sha256.begin(), b.events()[1].sha256.end());
  EXPECT_EQ(ReplayLog(*log, TPM2_ALG_SHA256)->at(0), Md("SHA256", in));
}

TEST(EventLog, HostileTcgInputIsRefused) {
  TcgLogBuilder b;
  b.Add(1, 0x1, "x");
  const Bytes& good = b.bytes();
  for (size_t cut = 1; cut < good.size(); cut += 7) {
    EXPECT_FALSE(ParseTcgLog(ByteView(good).subspan(0, cut)).ok()) << cut;
  }
  Bytes no_spec = good;
  no_spec[32] = 'X';
  EXPECT_FALSE(ParseTcgLog(no_spec).ok());
  // New-user trial: a TCG log without the crypto-agile header was detected as IMA and refused
  // as a "truncated IMA entry". It is a TCG log with the wrong header.
  EXPECT_EQ(DetectLogFormat(no_spec), LogFormat::kTcgPcClient);
  auto why = ParseEventLog(DetectLogFormat(no_spec), no_spec);
  ASSERT_FALSE(why.ok());
  EXPECT_NE(why.error().message().find("no Spec ID Event03 header"), std::string::npos)
      << why.error().ToString();
  for (size_t cut : {size_t{8}, size_t{40}}) {
    EXPECT_EQ(DetectLogFormat(ByteView(good).subspan(0, cut)), LogFormat::kTcgPcClient) << cut;
  }
  // Event count over the limit.
  TcgLogBuilder many;
  for (int i = 0; i < 10; ++i) {
    many.Add(2, 0x1, "e");
  }
  LogLimits small;
  small.max_events = 5;
  EXPECT_FALSE(ParseTcgLog(many.bytes(), small).ok());
  small = LogLimits{};
  small.max_bytes = 100;
  EXPECT_FALSE(ParseTcgLog(many.bytes(), small).ok());
  // Huge declared event size.
  Bytes huge = good;
  size_t size_at = good.size() - 1 - 4;
  huge[size_at + 3] = 0x7f;
  EXPECT_FALSE(ParseTcgLog(huge).ok());
  // PCR index out of range.
  Bytes pcr99 = good;
  pcr99[32 + 37] = 99;
  EXPECT_FALSE(ParseTcgLog(pcr99).ok());
}

TEST(EventLog, ImaBinaryAndAsciiAgree) {
  std::vector<testing::ImaEntry> entries = {MakeImaEntry("/usr/bin/bash", "bash"),
                                            MakeImaEntry("/etc/file with spaces", "cfg")};
  auto bin = ParseImaBinary(ImaBinary(entries));
  auto txt = ParseImaAscii(ImaAscii(entries));
  ASSERT_TRUE(bin.ok()) << bin.error().ToString();
  ASSERT_TRUE(txt.ok()) << txt.error().ToString();
  EXPECT_EQ(DetectLogFormat(ImaBinary(entries)), LogFormat::kImaBinary);
  EXPECT_EQ(DetectLogFormat(AsBytes(ImaAscii(entries))), LogFormat::kImaAscii);
  ASSERT_EQ(txt->events.size(), 2u);
  EXPECT_EQ(txt->events[1].path, "/etc/file with spaces");
  EXPECT_EQ(txt->events[0].file_digest, "sha256:" + HexEncode(entries[0].file_sha256));
  for (uint16_t bank : {uint16_t{TPM2_ALG_SHA1}, uint16_t{TPM2_ALG_SHA256}}) {
    auto a = ReplayLog(*bin, bank);
    auto c = ReplayLog(*txt, bank);
    ASSERT_TRUE(a.ok() && c.ok());
    EXPECT_EQ(a->at(10), c->at(10));
  }
  EXPECT_EQ(ReplayLog(*bin, TPM2_ALG_SHA256)->at(10),
            Fold({Md("SHA256", entries[0].template_data), Md("SHA256", entries[1].template_data)},
                 "SHA256", 32));
  // A template hash that does not match its data is refused.
  std::string bad = ImaAscii(entries);
  bad[3] = bad[3] == '0' ? '1' : '0';
  EXPECT_FALSE(ParseImaAscii(bad).ok());
  EXPECT_FALSE(ParseImaAscii("10 abc ima-ng sha256:00 /x\n").ok());
  EXPECT_FALSE(ParseImaAscii("10 " + std::string(40, '0') + " ima-sig sha256:00 /x\n").ok());
}

}  // namespace
}  // namespace wimse::attest
