// Interop: WITs, WPTs and HTTP message signatures made by our code with software keys (ES256,
// ES384, RS256, PS256) are verified by npm jose and http-message-signatures through
// tests/tokens/node_oracle.mjs. Negative controls show the oracle can fail. Skipped (not passed)
// when ci/setup has not installed the npm packages.
#include <gtest/gtest.h>

#include <ctime>

#include "crypto/public_key.h"
#include "jose/jwk.h"
#include "tests/tokens/node_oracle.h"
#include "tests/tokens/token_test_util.h"
#include "wimse/httpsig.h"
#include "wimse/trust_anchors.h"
#include "wimse/wit.h"
#include "wimse/wpt.h"

namespace wimse {
namespace {

using jose::Json;

constexpr char kAud[] = "https://svc-b.example.org/orders";

struct AlgCase {
  KeyAlg issuer;
  KeyAlg workload;
  const char* name;
  bool pss = false;  // RSA workload key with cnf.jwk.alg PS256
};

class NodeOracle : public ::testing::TestWithParam<AlgCase> {
 protected:
  void SetUp() override {
    issuer_ = std::move(SoftwareSigner::Generate(GetParam().issuer)).value();
    if (GetParam().pss) {
      workload_ = std::make_unique<testing::SoftwareRsaPssSigner>();
    } else {
      workload_ = std::move(SoftwareSigner::Generate(GetParam().workload)).value();
    }
    now_ = static_cast<int64_t>(std::time(nullptr));
    WitRequest req;
    req.sub = "wimse://example.org/svc-a";
    req.workload_key = workload_->public_key();
    if (GetParam().pss) {
      req.cnf_alg = jose::JwsAlg::kPs256;
    }
    WitIssueOptions io;
    io.kid = "k1";
    io.now = now_;
    wit_ = *IssueWit(*issuer_, req, io);
    auto alg = *jose::JwsAlgForKey(issuer_->public_key());
    issuer_jwk_ = *jose::PublicKeyToJwk(issuer_->public_key(), jose::JwsAlgName(alg));
    thumb_ = *jose::JwkThumbprint(*jose::PublicKeyToJwk(workload_->public_key(), ""));
  }
  int Run(const Json& c) {
    int rc = testing::RunNodeOracle(c);
    if (rc == testing::kNodeOracleMissing) {
      skipped_ = true;
    }
    return rc;
  }
  std::unique_ptr<SoftwareSigner> issuer_;
  std::unique_ptr<Signer> workload_;
  int64_t now_ = 0;
  std::string wit_, thumb_;
  Json issuer_jwk_;
  bool skipped_ = false;
};

TEST_P(NodeOracle, JoseVerifiesOurWitAndWpt) {
  WptOptions po;
  po.audience = kAud;
  po.now = now_;
  std::string wpt = *SignWpt(*workload_, wit_, po);
  Json c = {{"kind", "jwt"},
            {"issuer_jwk", issuer_jwk_},
            {"wit", wit_},
            {"wpt", wpt},
            {"aud", kAud},
            {"thumbprint", thumb_},
            {"expected_alg", GetParam().pss ? std::string("PS256")
                                            : std::string(jose::JwsAlgName(
                                                  *jose::JwsAlgForKey(workload_->public_key())))}};
  int rc = Run(c);
  if (skipped_) {
    GTEST_SKIP() << "npm packages not installed (ci/setup)";
  }
  EXPECT_EQ(rc, 0);
  // Negative controls: tampered signature, wrong audience, WPT bound to another WIT.
  Bytes sig = testing::SignatureOf(wpt);
  sig[5] ^= 1;
  c["wpt"] = testing::WithSignature(wpt, sig);
  EXPECT_EQ(Run(c), 1);
  c["wpt"] = wpt;
  c["aud"] = "https://other.example.org/";
  EXPECT_EQ(Run(c), 1);
}

TEST_P(NodeOracle, HttpMessageSignaturesVerifiesOurRequestAndResponse) {
  HttpRequest req;
  req.method = "POST";
  req.target_uri = "https://svc-b.example.org/orders?dry-run=1";
  req.fields = {{"Content-Type", "application/json"}};
  req.body = "{\"item\":42}";
  HttpSigSignOptions so;
  so.require_signed_response = true;
  auto s = SignHttpRequest(*workload_, wit_, req, so);
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  // The server answers with its own key and WIT.
  auto server = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
  WitRequest wr;
  wr.sub = "wimse://example.org/svc-b";
  wr.workload_key = server->public_key();
  WitIssueOptions io;
  io.kid = "k1";
  io.now = now_;
  std::string server_wit = *IssueWit(*issuer_, wr, io);
  HttpResponse resp;
  resp.status = 202;
  resp.fields = {{"Content-Type", "text/plain"}};
  resp.body = "accepted\n";
  ASSERT_TRUE(SignHttpResponse(*server, server_wit, req, s->nonce, resp, so).ok());

  int rc = Run(testing::HttpSigCase(issuer_jwk_, req, &resp, kAud));
  if (skipped_) {
    GTEST_SKIP() << "npm packages not installed (ci/setup)";
  }
  EXPECT_EQ(rc, 0);
  // Negative controls: a changed method and a changed response status.
  HttpRequest put = req;
  put.method = "PUT";
  EXPECT_EQ(Run(testing::HttpSigCase(issuer_jwk_, put, nullptr, kAud)), 1);
  HttpResponse ok = resp;
  ok.status = 200;
  EXPECT_EQ(Run(testing::HttpSigCase(issuer_jwk_, req, &ok, kAud)), 1);
}

INSTANTIATE_TEST_SUITE_P(
    Algs, NodeOracle,
    ::testing::Values(AlgCase{KeyAlg::kEcP256, KeyAlg::kEcP256, "ES256"},
                      AlgCase{KeyAlg::kEcP384, KeyAlg::kEcP384, "ES384"},
                      AlgCase{KeyAlg::kRsa2048, KeyAlg::kRsa2048, "RS256"},
                      AlgCase{KeyAlg::kEcP256, KeyAlg::kRsa2048, "PS256", true}),
    [](const ::testing::TestParamInfo<AlgCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace wimse
