// tpm suite: a WPT signed by a key that lives in the TPM (swtpm from WIMSE_TPM_TCTI) is accepted
// by our verifier and by python3-jwcrypto; TPM signatures are always 64-byte raw r||s, including
// those with a leading zero byte in r or s (C16); no transient objects are left behind.
#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

#include "crypto/public_key.h"
#include "jose/jwk.h"
#include "tests/tokens/interop_common.h"
#include "tests/tokens/node_oracle.h"
#include "tests/tokens/token_test_util.h"
#include "tpm/context.h"
#include "tpm/workload_key.h"
#include "wimse/httpsig.h"
#include "wimse/trust_anchors.h"
#include "wimse/wit.h"
#include "wimse/wpt.h"

namespace wimse {
namespace {

constexpr char kAud[] = "https://svc-b.example.org/orders";

class TpmTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tcti = std::getenv("WIMSE_TPM_TCTI");
    ASSERT_NE(tcti, nullptr) << "run under tests/with_swtpm.sh";
    ctx_ = tpm::SharedContext(tpm::ResolveTcti(tcti));
    auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
    ASSERT_TRUE(key.ok()) << key.error().ToString();
    signer_ = std::make_unique<tpm::TpmSigner>(*key);
    issuer_ = std::move(SoftwareSigner::Generate(KeyAlg::kEcP256)).value();
    ASSERT_TRUE(anchors_.AddKey("example.org", "k1", issuer_->public_key()).ok());
    now_ = static_cast<int64_t>(std::time(nullptr));
    WitRequest req;
    req.sub = "spiffe://example.org/ns/prod/sa/orders-client";
    req.workload_key = signer_->public_key();
    WitIssueOptions io;
    io.kid = "k1";
    io.now = now_;
    auto wit = IssueWit(*issuer_, req, io);
    ASSERT_TRUE(wit.ok()) << wit.error().ToString();
    wit_ = *wit;
  }
  void TearDown() override {
    if (ctx_) {
      auto n = ctx_->CountTransientObjects();
      ASSERT_TRUE(n.ok()) << n.error().ToString();
      EXPECT_EQ(*n, 0u);
    }
  }

  WptVerifyOptions VerifyOptions() {
    WptVerifyOptions vo;
    vo.wit.anchors = &anchors_;
    vo.wit.now = now_;
    vo.audiences = {kAud};
    return vo;
  }

  std::shared_ptr<tpm::TpmContext> ctx_;
  std::unique_ptr<tpm::TpmSigner> signer_;
  std::unique_ptr<SoftwareSigner> issuer_;
  TrustAnchors anchors_;
  int64_t now_ = 0;
  std::string wit_;
};

TEST_F(TpmTokenTest, TpmSignedWptVerifiesWithOursAndJwcrypto) {
  WptOptions po;
  po.audience = kAud;
  po.now = now_;
  auto wpt = SignWpt(*signer_, wit_, po);
  ASSERT_TRUE(wpt.ok()) << wpt.error().ToString();
  auto ours = VerifyWpt(*wpt, wit_, VerifyOptions());
  ASSERT_TRUE(ours.ok()) << ours.reason();
  EXPECT_EQ(ours.claims().wit.cnf_thumbprint,
            *jose::JwkThumbprint(*jose::PublicKeyToJwk(signer_->public_key(), "")));
  jose::Json issuer_jwk = *jose::PublicKeyToJwk(issuer_->public_key(), "ES256");
  EXPECT_EQ(
      testing::RunJwcrypto(wit_, *wpt, issuer_jwk, kAud, now_, ours.claims().wit.cnf_thumbprint),
      0);
  // A different TPM key cannot prove possession for this WIT.
  auto other = tpm::WorkloadKey::Create(ctx_, KeyAlg::kEcP256);
  ASSERT_TRUE(other.ok());
  tpm::TpmSigner other_signer(*other);
  EXPECT_EQ(SignWpt(other_signer, wit_, po).error().message(), "the WIT's cnf.jwk is not this key");
  std::string forged = testing::SignRaw(
      other_signer, R"({"alg":"ES256","typ":"wpt+jwt"})",
      jose::SerializeJson(jose::Json{
          {"aud", kAud}, {"exp", now_ + 60}, {"jti", "forged"}, {"wth", TokenHashB64(wit_)}}));
  EXPECT_EQ(VerifyWpt(forged, wit_, VerifyOptions()).reason(), "signature does not verify");
}

TEST_F(TpmTokenTest, TpmSignaturesAreFixedWidth) {
  // C16: every TPM signature is exactly 64 bytes and verifies, including those whose r or s has
  // a leading zero byte (about 1 in 128 signatures has one).
  WptOptions po;
  po.audience = kAud;
  po.now = now_;
  InMemoryReplayCache cache;
  WptVerifyOptions vo = VerifyOptions();
  vo.replay_cache = &cache;
  int leading_zero = 0;
  const int kRounds = 400;
  for (int i = 0; i < kRounds; ++i) {
    auto wpt = SignWpt(*signer_, wit_, po);
    ASSERT_TRUE(wpt.ok()) << wpt.error().ToString();
    Bytes sig = testing::SignatureOf(*wpt);
    ASSERT_EQ(sig.size(), 64u);
    if (sig[0] == 0 || sig[32] == 0) {
      ++leading_zero;
    }
    auto r = VerifyWpt(*wpt, wit_, vo);
    ASSERT_TRUE(r.ok()) << r.reason();
  }
  EXPECT_EQ(cache.size(), static_cast<size_t>(kRounds));  // every jti distinct
  std::printf("signatures with a leading zero in r or s: %d of %d\n", leading_zero, kRounds);
}

// An RSA key in the TPM as a JWS signer: RS256 through TPM2_Sign RSASSA, PS256 through
// TPM2_Sign RSAPSS (the key layer's salt = digest length, which PS256 requires).
class TpmRsaJwsSigner : public Signer, public jose::RsaPssSigner {
 public:
  explicit TpmRsaJwsSigner(std::shared_ptr<tpm::WorkloadKey> key) : key_(std::move(key)) {}
  Result<Bytes> SignDigest(HashAlg hash, ByteView digest) override {
    return key_->SignDigestRsa(hash, digest, tpm::WorkloadKey::RsaScheme::kPkcs1v15);
  }
  Result<Bytes> SignDigestPss(HashAlg hash, ByteView digest) override {
    return key_->SignDigestRsa(hash, digest, tpm::WorkloadKey::RsaScheme::kPss);
  }
  EVP_PKEY* public_key() const override { return key_->public_key(); }
  KeyAlg key_alg() const override { return key_->alg(); }

 private:
  std::shared_ptr<tpm::WorkloadKey> key_;
};

TEST_F(TpmTokenTest, TpmRsaKeySignsRs256AndPs256) {
  auto key = tpm::WorkloadKey::Create(ctx_, KeyAlg::kRsa2048);
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  TpmRsaJwsSigner rsa(*key);
  jose::Json issuer_jwk = *jose::PublicKeyToJwk(issuer_->public_key(), "ES256");
  std::string thumb = *jose::JwkThumbprint(*jose::PublicKeyToJwk(rsa.public_key(), ""));
  for (jose::JwsAlg alg : {jose::JwsAlg::kRs256, jose::JwsAlg::kPs256}) {
    SCOPED_TRACE(std::string(jose::JwsAlgName(alg)));
    WitRequest req;
    req.sub = "spiffe://example.org/ns/prod/sa/rsa-client";
    req.workload_key = rsa.public_key();
    req.cnf_alg = alg;
    WitIssueOptions io;
    io.kid = "k1";
    io.now = now_;
    std::string wit = *IssueWit(*issuer_, req, io);
    WptOptions po;
    po.audience = kAud;
    po.now = now_;
    auto wpt = SignWpt(rsa, wit, po);
    ASSERT_TRUE(wpt.ok()) << wpt.error().ToString();
    EXPECT_EQ(testing::SignatureOf(*wpt).size(), 256u);
    auto ours = VerifyWpt(*wpt, wit, VerifyOptions());
    ASSERT_TRUE(ours.ok()) << ours.reason();
    EXPECT_EQ(ours.claims().wit.cnf_alg, alg);
    int rc = testing::RunNodeOracle({{"kind", "jwt"},
                                     {"issuer_jwk", issuer_jwk},
                                     {"wit", wit},
                                     {"wpt", *wpt},
                                     {"aud", kAud},
                                     {"thumbprint", thumb},
                                     {"expected_alg", jose::JwsAlgName(alg)}});
    if (rc != testing::kNodeOracleMissing) {
      EXPECT_EQ(rc, 0);
    }
  }
}

// npm jose verifies a TPM-signed WPT (and its WIT); npm http-message-signatures verifies a
// TPM-signed request and a TPM-signed response. Skipped when ci/setup did not install them.
TEST_F(TpmTokenTest, TpmSignedTokensAndMessagesVerifyInNpmOracles) {
  WptOptions po;
  po.audience = kAud;
  auto wpt = SignWpt(*signer_, wit_, po);
  ASSERT_TRUE(wpt.ok()) << wpt.error().ToString();
  jose::Json issuer_jwk = *jose::PublicKeyToJwk(issuer_->public_key(), "ES256");
  std::string thumb = *jose::JwkThumbprint(*jose::PublicKeyToJwk(signer_->public_key(), ""));
  jose::Json c = {{"kind", "jwt"},
                  {"issuer_jwk", issuer_jwk},
                  {"wit", wit_},
                  {"wpt", *wpt},
                  {"aud", kAud},
                  {"thumbprint", thumb},
                  {"expected_alg", "ES256"}};
  int rc = testing::RunNodeOracle(c);
  if (rc == testing::kNodeOracleMissing) {
    GTEST_SKIP() << "npm packages not installed (ci/setup)";
  }
  EXPECT_EQ(rc, 0);

  HttpRequest req;
  req.method = "PUT";
  req.target_uri = std::string(kAud) + "/17?sync=true";
  req.fields = {{"Content-Type", "application/json"}, {"Txn-Token", "txn-abc"}};
  req.body = "{\"qty\":3}";
  HttpSigSignOptions so;
  so.require_signed_response = true;
  auto s = SignHttpRequest(*signer_, wit_, req, so);
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  HttpResponse resp;
  resp.status = 200;
  resp.fields = {{"Content-Type", "application/json"}};
  resp.body = "{\"ok\":true}";
  // The TPM key answers too (a server that is also a TPM-backed workload).
  ASSERT_TRUE(SignHttpResponse(*signer_, wit_, req, s->nonce, resp, so).ok());
  HttpSigVerifyOptions vo;
  vo.wit.anchors = &anchors_;
  vo.audiences = {std::string(kAud) + "/17"};
  auto ours = VerifyHttpRequestSignature(req, vo);
  ASSERT_TRUE(ours.ok()) << ours.reason();
  EXPECT_TRUE(VerifyHttpResponseSignature(req, s->nonce, resp, vo).ok());
  EXPECT_EQ(testing::RunNodeOracle(
                testing::HttpSigCase(issuer_jwk, req, &resp, std::string(kAud) + "/17")),
            0);
  HttpRequest other = req;
  other.target_uri = std::string(kAud) + "/18?sync=true";
  EXPECT_EQ(testing::RunNodeOracle(
                testing::HttpSigCase(issuer_jwk, other, nullptr, std::string(kAud) + "/17")),
            1);
}

}  // namespace
}  // namespace wimse
