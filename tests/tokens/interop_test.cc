// Interop: WITs and WPTs issued by our code with software keys are verified by
// python3-jwcrypto, an independent JOSE implementation (signature, typ, alg, RFC 7638
// thumbprint, wth, aud, exp). A tampered WPT must make jwcrypto fail, so the oracle can fail.
#include <gtest/gtest.h>

#include <ctime>

#include "crypto/public_key.h"
#include "jose/jwk.h"
#include "tests/tokens/interop_common.h"
#include "tests/tokens/token_test_util.h"
#include "wimse/trust_anchors.h"
#include "wimse/wit.h"
#include "wimse/wpt.h"

namespace wimse {
namespace {

constexpr char kAud[] = "https://svc-b.example.org/orders";

TEST(JwcryptoInterop, VerifiesOurWitAndWpt) {
  auto issuer = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
  auto workload = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  // Several rounds so signatures with leading-zero r or s (C16) are likely exercised.
  for (int i = 0; i < 8; ++i) {
    WitRequest req;
    req.sub = "wimse://example.org/svc-a";
    req.workload_key = workload->public_key();
    WitIssueOptions io;
    io.kid = "k1";
    io.now = now;
    std::string wit = *IssueWit(*issuer, req, io);
    WptOptions po;
    po.audience = kAud;
    po.now = now;
    std::string wpt = *SignWpt(*workload, wit, po);

    // Ours accepts.
    TrustAnchors anchors;
    ASSERT_TRUE(anchors.AddKey("example.org", "k1", issuer->public_key()).ok());
    WptVerifyOptions vo;
    vo.wit.anchors = &anchors;
    vo.wit.now = now;
    vo.audiences = {kAud};
    auto ours = VerifyWpt(wpt, wit, vo);
    ASSERT_TRUE(ours.ok()) << ours.reason();

    jose::Json issuer_jwk = *jose::PublicKeyToJwk(issuer->public_key(), "ES256");
    EXPECT_EQ(
        testing::RunJwcrypto(wit, wpt, issuer_jwk, kAud, now, ours.claims().wit.cnf_thumbprint), 0);
    if (i == 0) {
      // Negative controls: the oracle rejects a tampered signature and a wrong audience.
      Bytes sig = testing::SignatureOf(wpt);
      sig[3] ^= 1;
      EXPECT_EQ(testing::RunJwcrypto(wit, testing::WithSignature(wpt, sig), issuer_jwk, kAud, now,
                                     ours.claims().wit.cnf_thumbprint),
                1);
      EXPECT_EQ(testing::RunJwcrypto(wit, wpt, issuer_jwk, "https://other.example.org/", now,
                                     ours.claims().wit.cnf_thumbprint),
                1);
    }
  }
}

}  // namespace
}  // namespace wimse
