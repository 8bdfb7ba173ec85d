// Unit tests for src/wimse: identifiers, WIT/WPT issue and verify with software keys, every
// rejection path with its reason, replay cache, audit hook, trust anchors, HTTP header helpers.
#include <gtest/gtest.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>

#include <vector>

#include "crypto/ecdsa.h"
#include "crypto/public_key.h"
#include "jose/base64url.h"
#include "jose/json.h"
#include "jose/jwk.h"
#include "tests/tokens/token_test_util.h"
#include "wimse/http_headers.h"
#include "wimse/identifier.h"
#include "wimse/replay_cache.h"
#include "wimse/trust_anchors.h"
#include "wimse/wit.h"
#include "wimse/wpt.h"

namespace wimse {
namespace {

using jose::Json;
using testing::SignRaw;

constexpr int64_t kNow = 1767225600;
constexpr char kSub[] = "spiffe://example.org/ns/prod/sa/payments";
constexpr char kAud[] = "https://api.example.org/v1/charge";

TEST(WorkloadIdentifier, AcceptsValid) {
  for (const char* ok : {"spiffe://example.org/ns/prod/sa/payments",
                         "wimse://example.com/specific-workload", "wimse://td.example/a/b%20c",
                         "wimse://td/a:b@c/d!$&'()*+,;=", "spiffe://a-b_c.d/x.y_z-1"}) {
    auto id = ParseWorkloadIdentifier(ok);
    EXPECT_TRUE(id.ok()) << ok << ": " << id.error().message();
  }
  auto id = ParseWorkloadIdentifier(kSub);
  EXPECT_EQ(id->scheme, "spiffe");
  EXPECT_EQ(id->trust_domain, "example.org");
  EXPECT_EQ(id->path, "/ns/prod/sa/payments");
}

TEST(WorkloadIdentifier, RejectsInvalid) {
  struct Case {
    std::string uri;
    std::string reason;
  };
  std::vector<Case> cases = {
      {"", "workload identifier is empty"},
      {"example.org/x", "workload identifier has no scheme"},
      {"SPIFFE://example.org/x", "workload identifier scheme must start with a lower-case letter"},
      {"spiffe:/example.org/x", "workload identifier has no authority"},
      {"spiffe:///x", "workload identifier has an empty trust domain"},
      {"spiffe://user@example.org/x", "workload identifier has userinfo"},
      {"spiffe://example.org:8443/x", "workload identifier has a port"},
      {"spiffe://example.org/x?a=b", "workload identifier has a query"},
      {"spiffe://example.org/x#f", "workload identifier has a fragment"},
      {"wimse://[::1]/x", "workload identifier has an IP literal trust domain"},
      {"wimse://10.0.0.1/x", "workload identifier has an IP address trust domain"},
      {"spiffe://Example.org/x",
       "workload identifier trust domain has a character other than [a-z0-9.-_]"},
      {"spiffe://example.org", "workload identifier has no path"},
      {"spiffe://example.org/", "workload identifier has no path"},
      {"spiffe://example.org/x/", "workload identifier has a trailing slash"},
      {"spiffe://example.org/a//b", "workload identifier has an empty path segment"},
      {"spiffe://example.org/a/../b", "workload identifier has a dot path segment"},
      {"spiffe://example.org/a%20b",
       "workload identifier has a character not allowed in a SPIFFE path"},
      {"wimse://example.org/a%2fb",
       "workload identifier has a percent escape that is not upper-case hex"},
      {"wimse://example.org/a%41", "workload identifier percent-encodes an unreserved character"},
      {"wimse://example.org/a%4", "workload identifier has a truncated percent escape"},
      {"wimse://example.org/a b", "workload identifier has a character not allowed in a path"},
      {"wimse://example.org/" + std::string(2040, 'a'),
       "workload identifier is longer than 2048 bytes"},
  };
  for (const Case& c : cases) {
    auto id = ParseWorkloadIdentifier(c.uri);
    ASSERT_FALSE(id.ok()) << c.uri;
    EXPECT_EQ(id.error().message(), c.reason) << c.uri;
  }
  // 2048 bytes exactly is fine.
  std::string max = "wimse://example.org/";
  max += std::string(2048 - max.size(), 'a');
  EXPECT_TRUE(ParseWorkloadIdentifier(max).ok());
}

class TokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    issuer_ = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
    workload_ = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
    ASSERT_TRUE(anchors_.AddKey("example.org", "issuer-1", issuer_->public_key()).ok());
    wit_opts_.anchors = &anchors_;
    wit_opts_.now = kNow;
    wpt_opts_.wit = wit_opts_;
    wpt_opts_.audiences = {kAud};
    WitRequest req;
    req.sub = kSub;
    req.iss = "https://issuer.example.org";
    req.workload_key = workload_->public_key();
    WitIssueOptions io;
    io.kid = "issuer-1";
    io.now = kNow;
    auto wit = IssueWit(*issuer_, req, io);
    ASSERT_TRUE(wit.ok()) << wit.error().ToString();
    wit_ = *wit;
    workload_jwk_ = *jose::PublicKeyToJwk(workload_->public_key(), "ES256");
  }

  std::string Wpt(const std::string& wit, int64_t ttl = 60) {
    WptOptions o;
    o.audience = kAud;
    o.now = kNow;
    o.ttl_seconds = ttl;
    auto wpt = SignWpt(*workload_, wit, o);
    EXPECT_TRUE(wpt.ok()) << wpt.error().ToString();
    return wpt.ok() ? *wpt : "";
  }

  Json DefaultWitClaims() {
    return Json{{"cnf", {{"jwk", workload_jwk_}}},
                {"exp", kNow + 3600},
                {"iat", kNow},
                {"jti", "j1"},
                {"sub", kSub}};
  }
  std::string ForgeWit(const std::string& header, const Json& claims) {
    return SignRaw(*issuer_, header, jose::SerializeJson(claims));
  }
  std::string ForgeWitClaims(const Json& claims) {
    return ForgeWit(R"({"alg":"ES256","kid":"issuer-1","typ":"wit+jwt"})", claims);
  }
  Json DefaultWptClaims(const std::string& wit) {
    return Json{{"aud", kAud}, {"exp", kNow + 60}, {"jti", "p1"}, {"wth", TokenHashB64(wit)}};
  }
  std::string ForgeWpt(const std::string& header, const Json& claims) {
    return SignRaw(*workload_, header, jose::SerializeJson(claims));
  }
  std::string ForgeWptClaims(const Json& claims) {
    return ForgeWpt(R"({"alg":"ES256","typ":"wpt+jwt"})", claims);
  }
  std::string WitReason(const std::string& wit) {
    auto r = VerifyWit(wit, wit_opts_);
    return r.ok() ? "accepted" : r.reason();
  }
  std::string WptReason(const std::string& wpt, const std::string& wit) {
    auto r = VerifyWpt(wpt, wit, wpt_opts_);
    return r.ok() ? "accepted" : r.reason();
  }

  std::unique_ptr<SoftwareSigner> issuer_;
  std::unique_ptr<SoftwareSigner> workload_;
  TrustAnchors anchors_;
  WitVerifyOptions wit_opts_;
  WptVerifyOptions wpt_opts_;
  std::string wit_;
  Json workload_jwk_;
};

TEST_F(TokenTest, WitRoundTrip) {
  auto r = VerifyWit(wit_, wit_opts_);
  ASSERT_TRUE(r.ok()) << r.reason();
  EXPECT_EQ(r.claims().sub.uri, kSub);
  EXPECT_EQ(r.claims().iss.value(), "https://issuer.example.org");
  EXPECT_EQ(r.claims().kid, "issuer-1");
  EXPECT_EQ(r.claims().exp, kNow + 3600);
  EXPECT_EQ(r.claims().iat.value(), kNow);
  EXPECT_EQ(r.claims().jti->size(), 22u);
  EXPECT_EQ(r.claims().cnf_alg, jose::JwsAlg::kEs256);
  EXPECT_EQ(EVP_PKEY_eq(r.claims().cnf_key.get(), workload_->public_key()), 1);
  EXPECT_EQ(r.claims().cnf_thumbprint, *jose::JwkThumbprint(workload_jwk_));
  // Exact header and claims layout.
  auto jws = jose::ParseCompactJwsUnverified(wit_);
  EXPECT_EQ(jose::SerializeJson(jws->header),
            R"({"alg":"ES256","kid":"issuer-1","typ":"wit+jwt"})");
  auto claims = jose::ParseJsonObject(jws->payload);
  EXPECT_EQ((*claims)["cnf"]["jwk"]["alg"], "ES256");
  EXPECT_FALSE(claims->contains("aud"));
}

TEST_F(TokenTest, WptRoundTrip) {
  std::string wpt = Wpt(wit_);
  auto r = VerifyWpt(wpt, wit_, wpt_opts_);
  ASSERT_TRUE(r.ok()) << r.reason();
  EXPECT_EQ(r.claims().aud, kAud);
  EXPECT_EQ(r.claims().exp, kNow + 60);
  EXPECT_EQ(r.claims().jti.size(), 22u);
  EXPECT_EQ(r.claims().wit.sub.uri, kSub);
  auto jws = jose::ParseCompactJwsUnverified(wpt);
  EXPECT_EQ(jose::SerializeJson(jws->header), R"({"alg":"ES256","typ":"wpt+jwt"})");
  auto claims = jose::ParseJsonObject(jws->payload);
  EXPECT_EQ((*claims)["wth"], TokenHashB64(wit_));
  EXPECT_EQ((*claims)["wth"].get<std::string>().size(), 43u);
  // Two WPTs never share a jti.
  EXPECT_NE(jose::ParseJsonObject(jose::ParseCompactJwsUnverified(Wpt(wit_))->payload)->at("jti"),
            (*claims)["jti"]);
}

TEST_F(TokenTest, P384WorkloadKeyUsesEs384) {
  // C16 case 3: a P-384 workload key gives cnf.jwk.alg ES384 and 96-byte WPT signatures.
  auto p384 = std::move(SoftwareSigner::Generate(KeyAlg::kEcP384)).value();
  WitRequest req;
  req.sub = kSub;
  req.workload_key = p384->public_key();
  WitIssueOptions io;
  io.kid = "issuer-1";
  io.now = kNow;
  std::string wit = *IssueWit(*issuer_, req, io);
  WptOptions o;
  o.audience = kAud;
  o.now = kNow;
  std::string wpt = *SignWpt(*p384, wit, o);
  EXPECT_EQ(testing::SignatureOf(wpt).size(), 96u);
  auto r = VerifyWpt(wpt, wit, wpt_opts_);
  ASSERT_TRUE(r.ok()) << r.reason();
  EXPECT_EQ(r.claims().wit.cnf_alg, jose::JwsAlg::kEs384);
  // An ES256 proof from some P-256 key is refused by the alg pin before any signature check.
  std::string es256 = SignRaw(*workload_, R"({"alg":"ES256","typ":"wpt+jwt"})",
                              jose::SerializeJson(DefaultWptClaims(wit)));
  EXPECT_EQ(WptReason(es256, wit), "alg does not match cnf.jwk.alg");
  // A JWE-shaped (five segment) token where a WPT is expected (C17 case 4).
  EXPECT_EQ(WptReason("a.b.c.d.e", wit), "not a compact JWS: expected exactly three segments");
}

TEST_F(TokenTest, SignWptChecksKeyAndOptions) {
  auto other = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
  WptOptions o;
  o.audience = kAud;
  EXPECT_EQ(SignWpt(*other, wit_, o).error().message(), "the WIT's cnf.jwk is not this key");
  o.audience = "https://api.example.org/x?y=1";
  EXPECT_FALSE(SignWpt(*workload_, wit_, o).ok());
  o.audience = kAud;
  o.ttl_seconds = 301;
  EXPECT_FALSE(SignWpt(*workload_, wit_, o).ok());
  o.ttl_seconds = 60;
  EXPECT_FALSE(SignWpt(*workload_, "not.a.wit", o).ok());
}

TEST_F(TokenTest, IssueWitRejectsBadSub) {
  WitRequest req;
  req.sub = "spiffe://example.org:443/x";
  req.workload_key = workload_->public_key();
  EXPECT_EQ(IssueWit(*issuer_, req).error().message(), "workload identifier has a port");
}

TEST_F(TokenTest, WitRejections) {
  Json c = DefaultWitClaims();
  EXPECT_EQ(WitReason(ForgeWitClaims(c)), "accepted");
  // Time.
  Json expired = c;
  expired["exp"] = kNow - 31;
  EXPECT_EQ(WitReason(ForgeWitClaims(expired)), "expired");
  Json in_leeway = c;
  in_leeway["exp"] = kNow - 29;
  EXPECT_EQ(WitReason(ForgeWitClaims(in_leeway)), "accepted");
  Json no_exp = c;
  no_exp.erase("exp");
  EXPECT_EQ(WitReason(ForgeWitClaims(no_exp)), "missing exp");
  Json string_exp = c;
  string_exp["exp"] = "1999999999";
  EXPECT_EQ(WitReason(ForgeWitClaims(string_exp)), "invalid exp: not a number");
  Json future_iat = c;
  future_iat["iat"] = kNow + 3600;
  EXPECT_EQ(WitReason(ForgeWitClaims(future_iat)), "iat in the future");
  Json future_nbf = c;
  future_nbf["nbf"] = kNow + 3600;
  EXPECT_EQ(WitReason(ForgeWitClaims(future_nbf)), "not yet valid");
  // sub.
  Json bad_sub = c;
  bad_sub["sub"] = "spiffe://example.org/x?q=1";
  EXPECT_EQ(WitReason(ForgeWitClaims(bad_sub)), "invalid sub: workload identifier has a query");
  Json no_sub = c;
  no_sub.erase("sub");
  EXPECT_EQ(WitReason(ForgeWitClaims(no_sub)), "sub missing or not a string");
  Json other_td = c;
  other_td["sub"] = "spiffe://evil.example/x";
  EXPECT_EQ(WitReason(ForgeWitClaims(other_td)), "no trust anchor for trust domain");
  // cnf.
  Json no_cnf = c;
  no_cnf.erase("cnf");
  EXPECT_EQ(WitReason(ForgeWitClaims(no_cnf)), "cnf missing or not an object");
  Json no_alg = c;
  no_alg["cnf"]["jwk"].erase("alg");
  EXPECT_EQ(WitReason(ForgeWitClaims(no_alg)), "cnf.jwk has no alg");
  Json hs = c;
  hs["cnf"]["jwk"]["alg"] = "HS256";
  EXPECT_EQ(WitReason(ForgeWitClaims(hs)), "cnf.jwk algorithm not allowed: \"HS256\"");
  Json none = c;
  none["cnf"]["jwk"]["alg"] = "none";
  EXPECT_EQ(WitReason(ForgeWitClaims(none)), "cnf.jwk algorithm not allowed: \"none\"");
  Json es384 = c;
  es384["cnf"]["jwk"]["alg"] = "ES384";
  EXPECT_EQ(WitReason(ForgeWitClaims(es384)), "cnf.jwk: jwk alg does not match the key");
  Json with_d = c;
  with_d["cnf"]["jwk"]["d"] = jose::Base64UrlEncode(Bytes(32, 7));
  EXPECT_EQ(WitReason(ForgeWitClaims(with_d)), "cnf.jwk: jwk contains private member \"d\"");
  // Header.
  EXPECT_EQ(WitReason(ForgeWit(R"({"alg":"ES256","kid":"issuer-1","typ":"JWT"})", c)),
            "typ is not wit+jwt");
  EXPECT_EQ(WitReason(ForgeWit(R"({"alg":"ES256","kid":"issuer-1","typ":"wpt+jwt"})", c)),
            "typ is not wit+jwt");
  EXPECT_EQ(WitReason(ForgeWit(R"({"alg":"ES256","kid":"issuer-1"})", c)), "typ is not wit+jwt");
  EXPECT_EQ(
      WitReason(ForgeWit(R"({"alg":"ES256","kid":"issuer-1","typ":"application/WIT+JWT"})", c)),
      "accepted");
  EXPECT_EQ(WitReason(ForgeWit(R"({"alg":"ES384","kid":"issuer-1","typ":"wit+jwt"})", c)),
            "algorithm not allowed for key");
  EXPECT_EQ(WitReason(ForgeWit(R"({"alg":"none","kid":"issuer-1","typ":"wit+jwt"})", c)),
            "algorithm not allowed: \"none\"");
  EXPECT_EQ(WitReason(ForgeWit(R"({"alg":"ES256","kid":"nope","typ":"wit+jwt"})", c)),
            "no trust anchor key with that kid");
  EXPECT_EQ(WitReason(ForgeWit(
                R"({"alg":"ES256","kid":"issuer-1","typ":"wit+jwt","crit":["x"],"x":1})", c)),
            "unsupported critical header parameter");
  EXPECT_EQ(
      WitReason(ForgeWit(R"({"alg":"none","alg":"ES256","kid":"issuer-1","typ":"wit+jwt"})", c)),
      "header: duplicate member \"alg\"");
  // Duplicate claims: two cnf members (C22), and cnf with two jwk members.
  std::string attacker_jwk = jose::SerializeJson(
      *jose::PublicKeyToJwk((*SoftwareSigner::Generate(KeyAlg::kEcP256))->public_key(), "ES256"));
  std::string good_jwk = jose::SerializeJson(workload_jwk_);
  std::string dup_cnf = R"({"cnf":{"jwk":)" + attacker_jwk + R"(},"cnf":{"jwk":)" + good_jwk +
                        R"(},"exp":)" + std::to_string(kNow + 60) + R"(,"sub":")" + kSub + "\"}";
  EXPECT_EQ(
      WitReason(SignRaw(*issuer_, R"({"alg":"ES256","kid":"issuer-1","typ":"wit+jwt"})", dup_cnf)),
      "claims: duplicate member \"cnf\"");
  std::string dup_jwk = R"({"cnf":{"jwk":)" + attacker_jwk + R"(,"jwk":)" + good_jwk +
                        R"(},"exp":)" + std::to_string(kNow + 60) + R"(,"sub":")" + kSub + "\"}";
  EXPECT_EQ(
      WitReason(SignRaw(*issuer_, R"({"alg":"ES256","kid":"issuer-1","typ":"wit+jwt"})", dup_jwk)),
      "claims: duplicate member \"jwk\"");
  // Signed by someone else.
  auto rogue = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
  EXPECT_EQ(WitReason(SignRaw(*rogue, R"({"alg":"ES256","kid":"issuer-1","typ":"wit+jwt"})",
                              jose::SerializeJson(c))),
            "signature does not verify");
  // Malformed transport.
  EXPECT_EQ(WitReason(wit_ + "="), "signature: base64url has padding");
  EXPECT_EQ(WitReason("a.b.c.d.e"), "not a compact JWS: expected exactly three segments");
}

TEST_F(TokenTest, WitWithoutAnchorsIsRejected) {
  WitVerifyOptions o;
  o.now = kNow;
  auto r = VerifyWit(wit_, o);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.check(), TokenCheck::kTrust);
}

TEST_F(TokenTest, WptRejections) {
  const std::string& wit = wit_;
  Json c = DefaultWptClaims(wit);
  EXPECT_EQ(WptReason(ForgeWptClaims(c), wit), "accepted");
  Json expired = c;
  expired["exp"] = kNow - 31;
  EXPECT_EQ(WptReason(ForgeWptClaims(expired), wit), "expired");
  Json far = c;
  far["exp"] = kNow + 3600;
  EXPECT_EQ(WptReason(ForgeWptClaims(far), wit), "exp too far in the future");
  Json long_life = c;
  long_life["iat"] = kNow - 400;
  EXPECT_EQ(WptReason(ForgeWptClaims(long_life), wit), "lifetime too long");
  Json half = c;
  half["exp"] = kNow + 60.5;
  EXPECT_EQ(WptReason(ForgeWptClaims(half), wit), "accepted");
  Json no_exp = c;
  no_exp.erase("exp");
  EXPECT_EQ(WptReason(ForgeWptClaims(no_exp), wit), "missing exp");
  Json wrong_aud = c;
  wrong_aud["aud"] = "https://api.example.org/v1/refund";
  EXPECT_EQ(WptReason(ForgeWptClaims(wrong_aud), wit), "aud does not match");
  Json query_aud = c;
  query_aud["aud"] = std::string(kAud) + "?flavor=vanilla";
  EXPECT_EQ(WptReason(ForgeWptClaims(query_aud), wit), "aud does not match");
  Json array_aud = c;
  array_aud["aud"] = Json::array({kAud});
  EXPECT_EQ(WptReason(ForgeWptClaims(array_aud), wit), "accepted");
  Json two_aud = c;
  two_aud["aud"] = Json::array({kAud, "https://other"});
  EXPECT_EQ(WptReason(ForgeWptClaims(two_aud), wit), "aud is not a string");
  Json no_aud = c;
  no_aud.erase("aud");
  EXPECT_EQ(WptReason(ForgeWptClaims(no_aud), wit), "missing aud");
  Json wrong_wth = c;
  wrong_wth["wth"] = TokenHashB64(wit + "x");
  EXPECT_EQ(WptReason(ForgeWptClaims(wrong_wth), wit), "wth does not match the WIT");
  Json no_wth = c;
  no_wth.erase("wth");
  EXPECT_EQ(WptReason(ForgeWptClaims(no_wth), wit), "wth missing or not a string");
  Json oth = c;
  oth["oth"] = Json{{"x-token", "abc"}};
  EXPECT_EQ(WptReason(ForgeWptClaims(oth), wit), "oth bindings are not supported");
  Json no_jti = c;
  no_jti.erase("jti");
  EXPECT_EQ(WptReason(ForgeWptClaims(no_jti), wit), "jti missing or invalid");
  // Header: typ, alg pinned to cnf.jwk.alg.
  EXPECT_EQ(WptReason(ForgeWpt(R"({"alg":"ES256","typ":"wit+jwt"})", c), wit),
            "typ is not wpt+jwt");
  EXPECT_EQ(WptReason(ForgeWpt(R"({"alg":"ES256","typ":"application/wpt+jwt"})", c), wit),
            "accepted");
  EXPECT_EQ(WptReason(ForgeWpt(R"({"alg":"ES256"})", c), wit), "typ is not wpt+jwt");
  for (const char* alg : {"none", "None", "HS256", "ES384", "ES512", "RS256", "es256", "ES256 "}) {
    std::string header = std::string(R"({"alg":")") + alg + R"(","typ":"wpt+jwt"})";
    EXPECT_EQ(WptReason(ForgeWpt(header, c), wit), "alg does not match cnf.jwk.alg") << alg;
  }
  // alg none with an empty signature: structurally rejected before anything else.
  std::string unsigned_wpt =
      testing::SigningInput(R"({"alg":"none","typ":"wpt+jwt"})", jose::SerializeJson(c)) + ".";
  EXPECT_EQ(WptReason(unsigned_wpt, wit), "not a compact JWS: empty segment");
  EXPECT_EQ(WptReason(ForgeWpt(R"({"typ":"wpt+jwt"})", c), wit),
            "header alg missing or not a string");
  EXPECT_EQ(WptReason(ForgeWpt(R"({"alg":"ES256","typ":"wpt+jwt","crit":[]})", c), wit),
            "malformed crit: not a non-empty array");
  // WIT used as WPT and vice versa.
  // (The WIT is signed by the issuer, so it fails as a proof under cnf.jwk.)
  EXPECT_EQ(WptReason(wit, wit), "signature does not verify");
  EXPECT_EQ(WptReason(ForgeWptClaims(c), ForgeWptClaims(c)), "WIT: typ is not wit+jwt");
  // Signed by the issuer instead of the workload key.
  EXPECT_EQ(
      WptReason(SignRaw(*issuer_, R"({"alg":"ES256","typ":"wpt+jwt"})", jose::SerializeJson(c)),
                wit),
      "signature does not verify");
  // A WIT failure is reported as such.
  Json expired_wit = DefaultWitClaims();
  expired_wit["exp"] = kNow - 100;
  std::string bad_wit = ForgeWitClaims(expired_wit);
  EXPECT_EQ(WptReason(ForgeWptClaims(DefaultWptClaims(bad_wit)), bad_wit), "WIT: expired");
  // Duplicate exp / aud (C22 case 5).
  std::string dup = R"({"aud":")" + std::string(kAud) + R"(","exp":)" + std::to_string(kNow + 60) +
                    R"(,"exp":)" + std::to_string(kNow + 60) + R"(,"jti":"x","wth":")" +
                    TokenHashB64(wit) + "\"}";
  EXPECT_EQ(WptReason(SignRaw(*workload_, R"({"alg":"ES256","typ":"wpt+jwt"})", dup), wit),
            "claims: duplicate member \"exp\"");
}

TEST_F(TokenTest, WptExpEdgeCases) {
  // C23: only a finite number in the window passes; everything else is a precise rejection.
  struct Case {
    std::string exp;
    std::string reason;
  };
  std::vector<Case> cases = {
      {"-386380800", "invalid exp: negative"},
      {"0", "expired"},
      {"1", "expired"},
      {"1.5", "expired"},
      {std::to_string(kNow) + ".5", "accepted"},
      {std::to_string(kNow + 60) + ".5", "accepted"},
      {"9223372036854775807", "invalid exp: out of range"},
      {"9223372036854775808", "invalid exp: out of range"},
      {"18446744073709551615", "invalid exp: out of range"},
      {"1e30", "invalid exp: out of range"},
      {"15393024000", "exp too far in the future"},
      {"\"1999999999\"", "invalid exp: not a number"},
      {"true", "invalid exp: not a number"},
      {"null", "invalid exp: not a number"},
      {"{}", "invalid exp: not a number"},
  };
  for (const Case& c : cases) {
    std::string claims = R"({"aud":")" + std::string(kAud) + R"(","exp":)" + c.exp +
                         R"(,"jti":"x","wth":")" + TokenHashB64(wit_) + "\"}";
    std::string wpt = SignRaw(*workload_, R"({"alg":"ES256","typ":"wpt+jwt"})", claims);
    EXPECT_EQ(WptReason(wpt, wit_), c.reason) << c.exp;
  }
  // Leeway 0: a token expired by one second is rejected; with 60 s it passes.
  Json c = DefaultWptClaims(wit_);
  c["exp"] = kNow - 1;
  std::string wpt = ForgeWptClaims(c);
  wpt_opts_.wit.leeway_seconds = 0;
  EXPECT_EQ(WptReason(wpt, wit_), "expired");
  wpt_opts_.wit.leeway_seconds = 60;
  EXPECT_EQ(WptReason(wpt, wit_), "accepted");
}

TEST_F(TokenTest, WptSignatureTampering) {
  std::string wpt = Wpt(wit_);
  Bytes sig = testing::SignatureOf(wpt);
  Bytes zero_r = sig;
  std::fill(zero_r.begin(), zero_r.begin() + 32, 0);
  EXPECT_EQ(WptReason(testing::WithSignature(wpt, zero_r), wit_),
            "ECDSA signature r or s out of range");
  Bytes zero_s = sig;
  std::fill(zero_s.begin() + 32, zero_s.end(), 0);
  EXPECT_EQ(WptReason(testing::WithSignature(wpt, zero_s), wit_),
            "ECDSA signature r or s out of range");
  EcGroupPtr group(EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1));
  Bytes big_r = sig;
  BN_bn2binpad(EC_GROUP_get0_order(group.get()), big_r.data(), 32);
  EXPECT_EQ(WptReason(testing::WithSignature(wpt, big_r), wit_),
            "ECDSA signature r or s out of range");
  EXPECT_EQ(WptReason(testing::WithSignature(wpt, *EcdsaRawToDer(sig)), wit_),
            "ECDSA signature has the wrong length");
  Bytes flipped = sig;
  flipped[5] ^= 0x80;
  EXPECT_EQ(WptReason(testing::WithSignature(wpt, flipped), wit_), "signature does not verify");
  // Payload tampering keeps the signature but changes the signing input.
  std::string tampered = wpt;
  size_t dot = tampered.find('.');
  tampered[dot + 5] = tampered[dot + 5] == 'A' ? 'B' : 'A';
  EXPECT_NE(WptReason(tampered, wit_), "accepted");
}

TEST_F(TokenTest, MalleabilityAndReplay) {
  // C21: non-canonical spellings of one valid WPT are rejected; the high-S twin verifies but the
  // replay cache (keyed on key thumbprint + jti) stops it after the original.
  InMemoryReplayCache cache;
  wpt_opts_.replay_cache = &cache;
  std::string t = Wpt(wit_);
  // 64-byte signature = 86 chars; the last char carries 4 unused bits.
  std::string low_bits = t;
  char& last = low_bits.back();
  last = last == 'A' ? 'B' : static_cast<char>(last ^ 1);
  std::string padded = t + "==";
  std::string std_alphabet = t;
  for (size_t i = t.rfind('.'); i < std_alphabet.size(); ++i) {
    if (std_alphabet[i] == '-') {
      std_alphabet[i] = '+';
    }
    if (std_alphabet[i] == '_') {
      std_alphabet[i] = '/';
    }
  }
  std::string with_space = t;
  with_space.insert(t.rfind('.') + 10, " ");
  std::string with_newline = t + "\n";
  EXPECT_EQ(WptReason(low_bits, wit_), "signature: base64url has non-zero trailing bits");
  EXPECT_EQ(WptReason(padded, wit_), "signature: base64url has padding");
  if (std_alphabet != t) {
    EXPECT_EQ(WptReason(std_alphabet, wit_), "signature: invalid base64url character");
  }
  EXPECT_EQ(WptReason(with_space, wit_), "signature: invalid base64url character");
  EXPECT_EQ(WptReason(with_newline, wit_), "signature: invalid base64url character");

  Bytes sig = testing::SignatureOf(t);
  EcGroupPtr group(EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1));
  BignumPtr s(BN_bin2bn(sig.data() + 32, 32, nullptr));
  BN_sub(s.get(), EC_GROUP_get0_order(group.get()), s.get());
  Bytes high = sig;
  BN_bn2binpad(s.get(), high.data() + 32, 32);
  std::string twin = testing::WithSignature(t, high);

  EXPECT_EQ(WptReason(t, wit_), "accepted");
  EXPECT_EQ(WptReason(t, wit_), "jti replayed");
  EXPECT_EQ(WptReason(twin, wit_), "jti replayed");
  EXPECT_EQ(cache.size(), 1u);
  // A fresh WPT (new jti) still passes.
  EXPECT_EQ(WptReason(Wpt(wit_), wit_), "accepted");
}

TEST(InMemoryReplayCache, ExpiresAndBounds) {
  InMemoryReplayCache cache(2);
  EXPECT_TRUE(cache.CheckAndInsert("a", 100, 10));
  EXPECT_FALSE(cache.CheckAndInsert("a", 100, 50));
  EXPECT_TRUE(cache.CheckAndInsert("b", 100, 50));
  EXPECT_FALSE(cache.CheckAndInsert("c", 100, 50));  // full of live entries: fail closed
  EXPECT_TRUE(cache.CheckAndInsert("c", 200, 100));  // a and b expired at 100
  EXPECT_TRUE(cache.CheckAndInsert("a", 300, 150));
}

class RecordingSink : public TokenAuditSink {
 public:
  void Record(const TokenAuditRecord& r) override { records.push_back(r); }
  std::vector<TokenAuditRecord> records;
};

TEST_F(TokenTest, AuditRecordsDecisionsWithoutTokens) {
  RecordingSink sink;
  wpt_opts_.audit = &sink;
  std::string wpt = Wpt(wit_);
  ASSERT_TRUE(VerifyWpt(wpt, wit_, wpt_opts_).ok());
  wpt_opts_.audiences = {"https://elsewhere.example.org/"};
  ASSERT_FALSE(VerifyWpt(wpt, wit_, wpt_opts_).ok());
  ASSERT_EQ(sink.records.size(), 2u);
  const TokenAuditRecord& ok = sink.records[0];
  EXPECT_TRUE(ok.accepted);
  EXPECT_EQ(ok.kind, "wpt");
  EXPECT_EQ(ok.sub, kSub);
  EXPECT_EQ(ok.aud, kAud);
  EXPECT_EQ(ok.time, kNow);
  EXPECT_EQ(ok.token_sha256, HexEncode(*Digest(HashAlg::kSha256, AsBytes(wpt))));
  const TokenAuditRecord& bad = sink.records[1];
  EXPECT_FALSE(bad.accepted);
  EXPECT_EQ(bad.reason, "aud does not match");
  EXPECT_EQ(bad.sub, "");
  // WIT verification records too.
  wit_opts_.audit = &sink;
  ASSERT_TRUE(VerifyWit(wit_, wit_opts_).ok());
  EXPECT_EQ(sink.records.back().kind, "wit");
  EXPECT_EQ(sink.records.back().sub, kSub);
}

TEST_F(TokenTest, TrustAnchorSelection) {
  // A JWKS with two keys for the trust domain: selection by kid; no kid is ambiguous.
  auto second = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
  Json k1 = *jose::PublicKeyToJwk(issuer_->public_key(), "ES256");
  k1["kid"] = "issuer-1";
  k1["use"] = "sig";
  Json k2 = *jose::PublicKeyToJwk(second->public_key(), "");
  k2["kid"] = "issuer-2";
  TrustAnchors jwks;
  Status st = jwks.AddJwks("example.org", jose::SerializeJson(Json{{"keys", {k1, k2}}}));
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  wit_opts_.anchors = &jwks;
  EXPECT_EQ(WitReason(wit_), "accepted");
  Json c = DefaultWitClaims();
  std::string by_second = SignRaw(*second, R"({"alg":"ES256","kid":"issuer-2","typ":"wit+jwt"})",
                                  jose::SerializeJson(c));
  EXPECT_EQ(WitReason(by_second), "accepted");
  std::string wrong_kid = SignRaw(*second, R"({"alg":"ES256","kid":"issuer-1","typ":"wit+jwt"})",
                                  jose::SerializeJson(c));
  EXPECT_EQ(WitReason(wrong_kid), "signature does not verify");
  EXPECT_EQ(WitReason(ForgeWit(R"({"alg":"ES256","typ":"wit+jwt"})", c)),
            "WIT has no kid and the trust domain has several keys");
  // Issuer allowlist.
  jwks.AddIssuer("example.org", "https://issuer.example.org");
  EXPECT_EQ(WitReason(wit_), "accepted");
  EXPECT_EQ(WitReason(by_second), "iss missing but the trust domain has an issuer allowlist");
  c["iss"] = "https://evil.example";
  EXPECT_EQ(WitReason(SignRaw(*second, R"({"alg":"ES256","kid":"issuer-2","typ":"wit+jwt"})",
                              jose::SerializeJson(c))),
            "iss not allowed for the trust domain");
  // JWKS hygiene.
  Json priv = k1;
  priv["d"] = "AAAA";
  EXPECT_FALSE(TrustAnchors().AddJwks("x", jose::SerializeJson(Json{{"keys", {priv}}})).ok());
  Json no_kid = k1;
  no_kid.erase("kid");
  EXPECT_FALSE(TrustAnchors().AddJwks("x", jose::SerializeJson(Json{{"keys", {no_kid}}})).ok());
  Json enc = k1;
  enc["use"] = "enc";
  EXPECT_FALSE(TrustAnchors().AddJwks("x", jose::SerializeJson(Json{{"keys", {enc}}})).ok());
  // Wildcard pinned key applies to any trust domain without its own keys.
  TrustAnchors pinned;
  ASSERT_TRUE(pinned.AddKey(kAnyTrustDomain, "", issuer_->public_key()).ok());
  wit_opts_.anchors = &pinned;
  EXPECT_EQ(WitReason(wit_), "accepted");
}

TEST(HttpHeaders, FormatAndParse) {
  EXPECT_EQ(WitHeaderLine("a.b.c"), "Workload-Identity-Token: a.b.c");
  EXPECT_EQ(WptAuthorizationLine("a.b.c"), "Authorization: WPT a.b.c");
  EXPECT_EQ(*ParseWptAuthorization("WPT a.b.c"), "a.b.c");
  EXPECT_EQ(*ParseWptAuthorization("wpt   a.b.c "), "a.b.c");
  EXPECT_FALSE(ParseWptAuthorization("Bearer a.b.c").ok());
  EXPECT_FALSE(ParseWptAuthorization("WPTa.b.c").ok());
  EXPECT_FALSE(ParseWptAuthorization("WPT a.b").ok());
  EXPECT_FALSE(ParseWptAuthorization("WPT a.b.c=").ok());
  EXPECT_EQ(*ParseWitFieldValue(" a.b.c\t"), "a.b.c");
  EXPECT_FALSE(ParseWitFieldValue("a.b.c.d.e").ok());
  EXPECT_FALSE(ParseWitFieldValue("a..c").ok());
}

}  // namespace
}  // namespace wimse
