// Verifies published and independently generated WIT/WPT vectors (tests/data/tokens/, sources
// named in each file and in README.md) with the vector's own clock, audience and issuer keys.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "jose/json.h"
#include "util/file.h"
#include "wimse/http_headers.h"
#include "wimse/trust_anchors.h"
#include "wimse/wit.h"
#include "wimse/wpt.h"

namespace wimse {
namespace {

using jose::Json;

Json LoadVector(const std::string& name) {
  const char* root = std::getenv("WIMSE_SOURCE_ROOT");
  std::string dir = std::string(root != nullptr ? root : ".") + "/tests/data/tokens/";
  auto text = ReadFileString(dir + name);
  EXPECT_TRUE(text.ok()) << text.error().ToString();
  return Json::parse(text.ok() ? *text : "{}");
}

class VectorTest : public ::testing::TestWithParam<const char*> {};

TEST_P(VectorTest, OursVerifiesTheirs) {
  Json v = LoadVector(GetParam());
  ASSERT_TRUE(v.contains("source"));
  TrustAnchors anchors;
  Status st = anchors.AddJwks(v["trust_domain"].get<std::string>(), v["issuer_jwks"].dump());
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  WptVerifyOptions o;
  o.wit.anchors = &anchors;
  o.wit.now = v["now"].get<int64_t>();
  o.audiences = {v["aud"].get<std::string>()};
  std::string wit = v["wit"], wpt = v["wpt"];

  auto w = VerifyWit(wit, o.wit);
  ASSERT_TRUE(w.ok()) << w.reason();
  EXPECT_EQ(w.claims().sub.uri, v["expected_sub"]);
  auto p = VerifyWpt(wpt, wit, o);
  ASSERT_TRUE(p.ok()) << p.reason();
  EXPECT_EQ(p.claims().jti, v["expected_jti"]);
  EXPECT_EQ(p.claims().aud, v["aud"]);

  // The same vector fails when anything is off: clock past exp, wrong audience, other WIT.
  WptVerifyOptions late = o;
  late.wit.now = *o.wit.now + 4000;
  EXPECT_FALSE(VerifyWpt(wpt, wit, late).ok());
  WptVerifyOptions other_aud = o;
  other_aud.audiences = {"https://workload.example.com/other"};
  EXPECT_EQ(VerifyWpt(wpt, wit, other_aud).reason(), "aud does not match");
  std::string flipped = wit;
  flipped[flipped.size() - 3] = flipped[flipped.size() - 3] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(VerifyWpt(wpt, flipped, o).ok());
}

INSTANTIATE_TEST_SUITE_P(Tokens, VectorTest,
                         ::testing::Values("v1-draft-wit-wpt.json", "v2-wpt02-wit-wpt.json",
                                           "es256-jwcrypto.json"));

TEST(Vectors, V1AndV2WitsDifferOnlyBySignatureSoWthDiffers) {
  Json v1 = LoadVector("v1-draft-wit-wpt.json");
  Json v2 = LoadVector("v2-wpt02-wit-wpt.json");
  std::string w1 = v1["wit"], w2 = v2["wit"];
  EXPECT_EQ(w1.substr(0, w1.rfind('.')), w2.substr(0, w2.rfind('.')));
  EXPECT_EQ(TokenHashB64(w1), "AaYUfC34D1di2FxQLpiIJJ7Sg8VZ6o8OCdwSf9IToLg");
  EXPECT_EQ(TokenHashB64(w2), "X9wiPgq3jlSGzAegHCGhNO1lJgUbDoI1Mjkat5QHJB0");
  // V1's WPT is bound to V1's WIT, not V2's.
  TrustAnchors anchors;
  ASSERT_TRUE(anchors.AddJwks("example.com", v1["issuer_jwks"].dump()).ok());
  WptVerifyOptions o;
  o.wit.anchors = &anchors;
  o.wit.now = v1["now"].get<int64_t>();
  o.audiences = {v1["aud"].get<std::string>()};
  EXPECT_EQ(VerifyWpt(v1["wpt"].get<std::string>(), w2, o).reason(), "wth does not match the WIT");
}

// V1 is the wpt-01 / s2s-protocol-07 request: Authorization: Bearer <access token> plus
// Workload-Proof-Token, with `ath` over the access token (value from the draft's request).
TEST(Vectors, V1RequestInS2s07CompatibilityMode) {
  Json v1 = LoadVector("v1-draft-wit-wpt.json");
  TrustAnchors anchors;
  ASSERT_TRUE(anchors.AddJwks("example.com", v1["issuer_jwks"].dump()).ok());
  WptHttpOptions o;
  o.verify.wit.anchors = &anchors;
  o.verify.wit.now = v1["now"].get<int64_t>();
  o.verify.audiences = {v1["aud"].get<std::string>()};
  std::vector<HttpField> fields = {{"Host", "workload.example.com"},
                                   {"Authorization", "Bearer 16_mAd0GiwaZokU26_0902100"},
                                   {"Workload-Identity-Token", v1["wit"].get<std::string>()},
                                   {"Workload-Proof-Token", v1["wpt"].get<std::string>()}};
  EXPECT_EQ(VerifyWptHttpRequest(fields, o).reason(), "Authorization is not the WPT scheme");
  o.accept_s2s07 = true;
  auto r = VerifyWptHttpRequest(fields, o);
  ASSERT_TRUE(r.ok()) << r.reason();
  EXPECT_EQ(r.claims().jti, "__bwc4ESC3acc2LTC1-_x");
  fields[1].value = "Bearer 16_mAd0GiwaZokU26_0902101";
  EXPECT_EQ(VerifyWptHttpRequest(fields, o).reason(), "ath does not match the access token");
}

}  // namespace
}  // namespace wimse
