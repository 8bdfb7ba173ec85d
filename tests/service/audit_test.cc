// The hash-chained audit log: records chain, and every kind of tampering (edit, delete, insert,
// reorder, truncate) is detected at the first bad record. No TPM.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "audit/audit_log.h"
#include "util/file.h"

namespace wimse::audit {
namespace {

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wimse-audit-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/audit.jsonl";
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  void WriteRecords(int n) {
    auto log = AuditLog::Open({path_});
    ASSERT_TRUE(log.ok()) << log.error().ToString();
    for (int i = 0; i < n; ++i) {
      AuditEvent e;
      e.event = "issuance";
      e.source = "host-" + std::to_string(i);
      e.target = "spiffe://example.org/w/" + std::to_string(i);
      e.method = "tpm-ak";
      e.decision = i % 2 ? "deny" : "allow";
      e.reason = i % 2 ? "nonce_replayed" : "";
      e.token_sha256["wit"] = TokenSha256Hex("token" + std::to_string(i));
      ASSERT_TRUE((*log)->Append(e, 1700000000 + i).ok());
    }
  }
  std::vector<std::string> Lines() {
    std::ifstream in(path_);
    std::vector<std::string> lines;
    std::string l;
    while (std::getline(in, l)) lines.push_back(l);
    return lines;
  }
  void WriteLines(const std::vector<std::string>& lines) {
    std::ofstream out(path_, std::ios::trunc);
    for (const auto& l : lines) out << l << "\n";
  }
  AuditVerifyResult Verify() {
    auto r = VerifyAuditLog(path_);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : AuditVerifyResult{};
  }

  std::string dir_, path_;
};

TEST_F(AuditLogTest, IntactLogVerifies) {
  WriteRecords(5);
  auto r = Verify();
  EXPECT_TRUE(r.ok) << r.reason;
  EXPECT_EQ(r.records, 5u);
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 5u);
  auto first = jose::ParseJsonObject(lines[0]);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ((*first)["seq"], 1);
  EXPECT_EQ((*first)["prev"], std::string(64, '0'));
  EXPECT_EQ((*first)["time"], "2023-11-14T22:13:20Z");
  auto second = jose::ParseJsonObject(lines[1]);
  EXPECT_EQ((*second)["prev"], (*first)["hash"]);
}

TEST_F(AuditLogTest, TruncationIsCaughtEvenWithTheHeadFileDeleted) {
  // Hostile review: cutting the last record and deleting LOG.head verified "ok".
  WriteRecords(4);
  auto lines = Lines();
  lines.pop_back();
  WriteLines(lines);
  ASSERT_EQ(std::remove((path_ + ".head").c_str()), 0);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_line, 4u);
  EXPECT_NE(r.reason.find(".head is missing"), std::string::npos) << r.reason;
  // Asked for explicitly, the chain alone still verifies (and says nothing about the end).
  auto chain_only = VerifyAuditLog(path_, /*require_head=*/false);
  ASSERT_TRUE(chain_only.ok());
  EXPECT_TRUE(chain_only->ok) << chain_only->reason;
  EXPECT_EQ(chain_only->records, 3u);
}

TEST_F(AuditLogTest, ReopenContinuesTheChain) {
  WriteRecords(3);
  WriteRecords(2);  // a restarted process
  auto r = Verify();
  EXPECT_TRUE(r.ok) << r.reason;
  EXPECT_EQ(r.records, 5u);
}

TEST_F(AuditLogTest, TwoWritersInterleaveWithoutBreakingTheChain) {
  auto a = AuditLog::Open({path_});
  auto b = AuditLog::Open({path_});
  ASSERT_TRUE(a.ok() && b.ok());
  for (int i = 0; i < 4; ++i) {
    AuditEvent e;
    e.event = "validation";
    ASSERT_TRUE((*a)->Append(e).ok());
    ASSERT_TRUE((*b)->Append(e).ok());
  }
  auto r = Verify();
  EXPECT_TRUE(r.ok) << r.reason;
  EXPECT_EQ(r.records, 8u);
}

TEST_F(AuditLogTest, EditedRecordIsNamed) {
  WriteRecords(5);
  auto lines = Lines();
  size_t p = lines[2].find("\"deny\"");
  if (p == std::string::npos) p = lines[2].find("\"allow\"");
  ASSERT_NE(p, std::string::npos);
  lines[2].replace(p, lines[2].find('"', p + 1) - p + 1, "\"allowX\"");
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_line, 3u);
  EXPECT_NE(r.reason.find("edited"), std::string::npos) << r.reason;
}

TEST_F(AuditLogTest, EditedRecordWithRecomputedHashBreaksTheNextLink) {
  WriteRecords(5);
  auto lines = Lines();
  auto rec = jose::ParseJsonObject(lines[1]);
  ASSERT_TRUE(rec.ok());
  (*rec)["decision"] = "allow";
  (*rec)["reason"] = "forged";
  (*rec)["hash"] = RecordHash(*rec);
  lines[1] = jose::SerializeJson(*rec);
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_line, 3u) << r.reason;
}

TEST_F(AuditLogTest, DeletedRecordIsNamed) {
  WriteRecords(5);
  auto lines = Lines();
  lines.erase(lines.begin() + 1);
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_line, 2u);
}

TEST_F(AuditLogTest, InsertedRecordIsNamed) {
  WriteRecords(5);
  auto lines = Lines();
  lines.insert(lines.begin() + 3, lines[1]);
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_line, 4u);
}

TEST_F(AuditLogTest, ReorderedRecordsAreNamed) {
  WriteRecords(5);
  auto lines = Lines();
  std::swap(lines[2], lines[3]);
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_line, 3u);
}

TEST_F(AuditLogTest, TruncationIsCaughtByTheHeadFile) {
  WriteRecords(5);
  auto lines = Lines();
  lines.pop_back();
  WriteLines(lines);
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_line, 5u);
  EXPECT_NE(r.reason.find("head"), std::string::npos);
}

TEST_F(AuditLogTest, TokensAreNeverWritten) {
  const std::string jwt =
      "eyJhbGciOiJFUzI1NiIsInR5cCI6IndpdCtqd3QifQ.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9hIn0."
      "c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl";
  {
    auto log = AuditLog::Open({path_});
    ASSERT_TRUE(log.ok());
    AuditEvent e;
    e.event = "validation";
    e.reason = "bad token " + jwt;
    e.claims = {{"wit", jwt}};
    ASSERT_TRUE((*log)->Append(e).ok());
  }
  auto text = ReadFileString(path_);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->find(jwt), std::string::npos);
  EXPECT_EQ(text->find("eyJzdWIi"), std::string::npos);
  EXPECT_NE(text->find("sha256:"), std::string::npos);
  EXPECT_TRUE(Verify().ok);
}

TEST_F(AuditLogTest, SiemStreamGetsTheSameLines) {
  std::string siem_path = dir_ + "/siem.jsonl";
  FILE* siem = std::fopen(siem_path.c_str(), "w");
  ASSERT_NE(siem, nullptr);
  {
    AuditLogOptions o;
    o.path = path_;
    o.siem = siem;
    auto log = AuditLog::Open(o);
    ASSERT_TRUE(log.ok());
    AuditEvent e;
    e.event = "issuance";
    ASSERT_TRUE((*log)->Append(e).ok());
  }
  std::fclose(siem);
  EXPECT_EQ(*ReadFileString(siem_path), *ReadFileString(path_));
}

}  // namespace
}  // namespace wimse::audit
