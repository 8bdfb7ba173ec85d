// Unit tests for the WPT HTTP layer (src/wimse/http_headers): field extraction per wpt-02 §2,
// the opt-in s2s-protocol-07 compatibility mode (Workload-Proof-Token, ath), the 401 /
// WWW-Authenticate: WPT mapping, and that every decision, including transport failures, is
// audited exactly once without the token.
#include <gtest/gtest.h>

#include <vector>

#include "crypto/public_key.h"
#include "jose/json.h"
#include "tests/tokens/token_test_util.h"
#include "wimse/http_headers.h"
#include "wimse/httpsig.h"
#include "wimse/trust_anchors.h"
#include "wimse/wit.h"
#include "wimse/wpt.h"

namespace wimse {
namespace {

constexpr int64_t kNow = 1767225600;
constexpr char kAud[] = "https://api.example.org/v1/charge";

class RecordingSink : public TokenAuditSink {
 public:
  void Record(const TokenAuditRecord& r) override { records.push_back(r); }
  std::vector<TokenAuditRecord> records;
};

class WptHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    issuer_ = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
    workload_ = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
    ASSERT_TRUE(anchors_.AddKey("example.org", "k1", issuer_->public_key()).ok());
    WitRequest req;
    req.sub = "spiffe://example.org/client";
    req.workload_key = workload_->public_key();
    WitIssueOptions io;
    io.kid = "k1";
    io.now = kNow;
    wit_ = *IssueWit(*issuer_, req, io);
    WptOptions po;
    po.audience = kAud;
    po.now = kNow;
    wpt_ = *SignWpt(*workload_, wit_, po);
    opts_.verify.wit.anchors = &anchors_;
    opts_.verify.wit.now = kNow;
    opts_.verify.audiences = {kAud};
    opts_.verify.audit = &sink_;
  }
  std::string Reject(const std::vector<HttpField>& fields) {
    auto r = VerifyWptHttpRequest(fields, opts_);
    EXPECT_FALSE(r.ok());
    return r.reason();
  }
  // A WPT in the s2s-07 shape: ath over an access token, signed by the workload key.
  std::string LegacyWpt(const std::string& access_token) {
    jose::Json claims = {{"aud", kAud},
                         {"exp", kNow + 60},
                         {"jti", "legacy-jti-1"},
                         {"wth", TokenHashB64(wit_)},
                         {"ath", TokenHashB64(access_token)}};
    return testing::SignRaw(*workload_, R"({"alg":"ES256","typ":"wpt+jwt"})",
                            jose::SerializeJson(claims));
  }
  std::unique_ptr<SoftwareSigner> issuer_, workload_;
  TrustAnchors anchors_;
  std::string wit_, wpt_;
  WptHttpOptions opts_;
  RecordingSink sink_;
};

TEST_F(WptHttpTest, Wpt02FieldsVerifyAndAreAudited) {
  std::vector<HttpField> f = {{"workload-identity-token", wit_}, {"AUTHORIZATION", "wpt  " + wpt_}};
  auto r = VerifyWptHttpRequest(f, opts_);
  ASSERT_TRUE(r.ok()) << r.reason();
  EXPECT_EQ(r.claims().wit.sub.uri, "spiffe://example.org/client");
  ASSERT_EQ(sink_.records.size(), 1u);
  EXPECT_TRUE(sink_.records[0].accepted);
  EXPECT_EQ(sink_.records[0].kind, "wpt");
  EXPECT_EQ(sink_.records[0].token_sha256, HexEncode(*Digest(HashAlg::kSha256, AsBytes(wpt_))));
}

TEST_F(WptHttpTest, TransportRejections) {
  HttpField wit{"Workload-Identity-Token", wit_};
  HttpField auth{"Authorization", "WPT " + wpt_};
  HttpField legacy{"Workload-Proof-Token", wpt_};
  EXPECT_EQ(Reject({auth}), "no Workload-Identity-Token");
  EXPECT_EQ(Reject({wit, wit, auth}), "more than one Workload-Identity-Token");
  EXPECT_EQ(Reject({wit}), "no Authorization: WPT");
  EXPECT_EQ(Reject({wit, auth, auth}), "more than one Authorization field");
  EXPECT_EQ(Reject({wit, {"Authorization", "Bearer abc"}}), "Authorization is not the WPT scheme");
  EXPECT_EQ(Reject({wit, legacy}),
            "Workload-Proof-Token (s2s-protocol-07) not accepted; use Authorization: WPT");
  EXPECT_EQ(Reject({wit, {"Authorization", "WPT a.b"}}), "WPT credentials are not a compact JWT");
  // Every rejection was audited once, as a rejection, without the token.
  ASSERT_EQ(sink_.records.size(), 7u);
  for (const TokenAuditRecord& rec : sink_.records) {
    EXPECT_FALSE(rec.accepted);
    EXPECT_FALSE(rec.reason.empty());
    EXPECT_EQ(rec.reason.find(wpt_.substr(0, 20)), std::string::npos);
  }
}

TEST_F(WptHttpTest, S2s07CompatibilityIsOptIn) {
  HttpField wit{"Workload-Identity-Token", wit_};
  opts_.accept_s2s07 = true;
  auto r = VerifyWptHttpRequest({wit, {"Workload-Proof-Token", wpt_}}, opts_);
  ASSERT_TRUE(r.ok()) << r.reason();
  // Both carriers at once are ambiguous.
  EXPECT_EQ(Reject({wit, {"Authorization", "WPT " + wpt_}, {"Workload-Proof-Token", wpt_}}),
            "both Authorization: WPT and Workload-Proof-Token");
  EXPECT_EQ(Reject({wit, {"Workload-Proof-Token", wpt_}, {"Workload-Proof-Token", wpt_}}),
            "more than one Workload-Proof-Token field");
  // s2s-07 bearer + ath: the ath must match the bearer token.
  std::string legacy = LegacyWpt("16_mAd0GiwaZokU26_0902100");
  auto ok = VerifyWptHttpRequest({wit,
                                  {"Authorization", "Bearer 16_mAd0GiwaZokU26_0902100"},
                                  {"Workload-Proof-Token", legacy}},
                                 opts_);
  EXPECT_TRUE(ok.ok()) << ok.reason();
  EXPECT_EQ(
      Reject({wit, {"Authorization", "Bearer other-token"}, {"Workload-Proof-Token", legacy}}),
      "ath does not match the access token");
  EXPECT_EQ(Reject({wit, {"Authorization", "Bearer x"}, {"Workload-Proof-Token", wpt_}}),
            "ath missing for the access token");
  EXPECT_EQ(Reject({wit, {"Authorization", "Basic x"}, {"Workload-Proof-Token", wpt_}}),
            "Authorization is neither WPT nor Bearer");
  // Without the compatibility switch a bearer token next to a WPT is refused (wpt-02).
  opts_.accept_s2s07 = false;
  EXPECT_EQ(Reject({wit, {"Authorization", "Bearer x"}, {"Workload-Proof-Token", legacy}}),
            "Authorization is not the WPT scheme");
}

TEST_F(WptHttpTest, FailuresMapTo401WithWwwAuthenticateWpt) {
  HttpField wit{"Workload-Identity-Token", wit_};
  opts_.verify.audiences = {"https://other.example.org/"};
  auto r = VerifyWptHttpRequest({wit, {"Authorization", "WPT " + wpt_}}, opts_);
  ASSERT_FALSE(r.ok());
  HttpErrorResponse e = WptFailureResponse(r);
  EXPECT_EQ(e.status, 401);
  ASSERT_EQ(e.headers.size(), 2u);
  EXPECT_EQ(e.headers[0].name, "WWW-Authenticate");
  EXPECT_EQ(e.headers[0].value,
            "WPT error=\"invalid_token\", error_description=\"audience: aud does not match\"");
  EXPECT_EQ(e.headers[1].value, "application/problem+json");
  auto body = jose::ParseJsonObject(e.body);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ((*body)["status"], 401);
  EXPECT_EQ((*body)["detail"], "audience: aud does not match");
  // Quotes and control characters cannot break out of the quoted-string.
  HttpErrorResponse q = WptFailureResponse(TokenCheck::kClaims, "a\"b\\c\r\nd");
  EXPECT_EQ(q.headers[0].value,
            "WPT error=\"invalid_token\", error_description=\"claims: a\\\"b\\\\cd\"");
  HttpErrorResponse s = HttpSigFailureResponse(TokenCheck::kSignature, "signature does not verify");
  EXPECT_EQ(s.status, 400);
  EXPECT_EQ(s.headers.size(), 1u);
}

TEST_F(WptHttpTest, WitAndHttpSigVerifiersAuditEveryDecision) {
  RecordingSink sink;
  WitVerifyOptions wo;
  wo.anchors = &anchors_;
  wo.now = kNow;
  wo.audit = &sink;
  EXPECT_TRUE(VerifyWit(wit_, wo).ok());
  EXPECT_FALSE(VerifyWit(wit_ + "x", wo).ok());
  ASSERT_EQ(sink.records.size(), 2u);
  EXPECT_EQ(sink.records[0].kind, "wit");
  EXPECT_TRUE(sink.records[0].accepted);
  EXPECT_FALSE(sink.records[1].accepted);
  EXPECT_EQ(sink.records[1].sub, "");
  HttpRequest req;
  req.method = "GET";
  req.target_uri = kAud;
  HttpSigSignOptions so;
  so.now = kNow;
  ASSERT_TRUE(SignHttpRequest(*workload_, wit_, req, so).ok());
  HttpSigVerifyOptions ho;
  ho.wit = wo;
  ho.audiences = {kAud};
  ho.audit = &sink;
  EXPECT_TRUE(VerifyHttpRequestSignature(req, ho).ok());
  req.method = "POST";
  EXPECT_FALSE(VerifyHttpRequestSignature(req, ho).ok());
  // One record per call: the inner WIT check does not add its own.
  ASSERT_EQ(sink.records.size(), 4u);
  EXPECT_EQ(sink.records[2].kind, "httpsig");
  EXPECT_TRUE(sink.records[2].accepted);
  EXPECT_EQ(sink.records[3].reason, "signature does not verify");
  EXPECT_EQ(sink.records[3].aud, kAud);
}

}  // namespace
}  // namespace wimse

namespace wimse {
namespace {

// PS256 (RSASSA-PSS) for RSA workload keys: the WIT pins cnf.jwk.alg PS256, the WPT and the
// HTTP signature follow it, and the verifier holds the proof to exactly that algorithm.
TEST(Ps256, WitPinsPs256AndProofsFollowIt) {
  auto issuer = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
  testing::SoftwareRsaPssSigner workload;
  TrustAnchors anchors;
  ASSERT_TRUE(anchors.AddKey("example.org", "k1", issuer->public_key()).ok());
  WitRequest req;
  req.sub = "spiffe://example.org/rsa";
  req.workload_key = workload.public_key();
  req.cnf_alg = jose::JwsAlg::kPs256;
  WitIssueOptions io;
  io.kid = "k1";
  io.now = kNow;
  auto wit = IssueWit(*issuer, req, io);
  ASSERT_TRUE(wit.ok()) << wit.error().ToString();
  WptOptions po;
  po.audience = kAud;
  po.now = kNow;
  auto wpt = SignWpt(workload, *wit, po);
  ASSERT_TRUE(wpt.ok()) << wpt.error().ToString();
  auto header = jose::ParseCompactJwsUnverified(*wpt);
  EXPECT_EQ(header->header["alg"], "PS256");
  EXPECT_EQ(header->signature.size(), 256u);
  WptVerifyOptions vo;
  vo.wit.anchors = &anchors;
  vo.wit.now = kNow;
  vo.audiences = {kAud};
  auto r = VerifyWpt(*wpt, *wit, vo);
  ASSERT_TRUE(r.ok()) << r.reason();
  EXPECT_EQ(r.claims().wit.cnf_alg, jose::JwsAlg::kPs256);
  // The same claims signed RS256 with the same key: rejected, cnf.jwk.alg pins PS256.
  jose::Json claims = {
      {"aud", kAud}, {"exp", kNow + 60}, {"jti", "j-rs"}, {"wth", TokenHashB64(*wit)}};
  auto rs = jose::SignCompactJws(workload, jose::JwsAlg::kRs256, {{"typ", "wpt+jwt"}},
                                 jose::SerializeJson(claims));
  ASSERT_TRUE(rs.ok());
  EXPECT_EQ(VerifyWpt(*rs, *wit, vo).reason(), "alg does not match cnf.jwk.alg");
  // A PSS signature relabelled RS256 (and the reverse) does not verify.
  std::string relabel =
      testing::SigningInput(R"({"alg":"PS256","typ":"wpt+jwt"})", jose::SerializeJson(claims)) +
      "." + rs->substr(rs->rfind('.') + 1);
  EXPECT_EQ(VerifyWpt(relabel, *wit, vo).reason(), "signature does not verify");
  // No PS256 from a signer that cannot do PSS, no ES256 from an RSA key.
  auto plain = std::move(SoftwareSigner::Generate(KeyAlg::kRsa2048)).value();
  EXPECT_EQ(jose::SignCompactJws(*plain, jose::JwsAlg::kPs256, jose::Json::object(), "{}")
                .error()
                .message(),
            "this signer cannot produce RSASSA-PSS (PS256) signatures");
  EXPECT_FALSE(jose::JwsAlgAllowedForKey(workload.public_key(), jose::JwsAlg::kEs256));
  EXPECT_FALSE(jose::JwsAlgAllowedForKey(issuer->public_key(), jose::JwsAlg::kPs256));
  // HTTP message signature with the PS256 key.
  HttpRequest hr;
  hr.method = "GET";
  hr.target_uri = kAud;
  HttpSigSignOptions so;
  so.now = kNow;
  ASSERT_TRUE(SignHttpRequest(workload, *wit, hr, so).ok());
  HttpSigVerifyOptions ho;
  ho.wit = vo.wit;
  ho.audiences = {kAud};
  auto hv = VerifyHttpRequestSignature(hr, ho);
  EXPECT_TRUE(hv.ok()) << hv.reason();
}

}  // namespace
}  // namespace wimse
